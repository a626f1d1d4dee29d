//! The server's fixed replies, rendered once, each with its RFC 3463 enhanced
//! status code (RFC 2034). Replies with variable text are built in the session.

/// `250` to RSET and NOOP.
pub const OK: &[u8] = b"250 2.0.0 Ok\r\n";
/// `250` to MAIL.
pub const SENDER_OK: &[u8] = b"250 2.1.0 Sender ok\r\n";
/// `250` to RCPT.
pub const RCPT_OK: &[u8] = b"250 2.1.5 Recipient ok\r\n";
/// `354` to DATA.
pub const DATA_GO: &[u8] = b"354 End data with <CR><LF>.<CR><LF>\r\n";
/// `221` to QUIT.
pub const BYE: &[u8] = b"221 2.0.0 Bye\r\n";
/// `220` to STARTTLS (RFC 3207).
pub const TLS_GO: &[u8] = b"220 2.0.0 Ready to start TLS\r\n";
/// `235` after a successful AUTH (RFC 4954).
pub const AUTH_OK: &[u8] = b"235 2.7.0 Authentication successful\r\n";
/// `334` with an empty challenge: AUTH PLAIN without an initial response.
pub const AUTH_PLAIN_GO: &[u8] = b"334 \r\n";
/// `334 Username:` (base64) for AUTH LOGIN.
pub const LOGIN_USERNAME: &[u8] = b"334 VXNlcm5hbWU6\r\n";
/// `334 Password:` (base64) for AUTH LOGIN.
pub const LOGIN_PASSWORD: &[u8] = b"334 UGFzc3dvcmQ6\r\n";
/// `252` to VRFY: we do not verify addresses.
pub const VRFY: &[u8] = b"252 2.5.0 Cannot VRFY user; try RCPT\r\n";
/// `214` to HELP.
pub const HELP: &[u8] = b"214 2.0.0 See RFC 5321\r\n";

/// A command before EHLO/HELO.
pub const NEED_HELO: &[u8] = b"503 5.5.1 Send EHLO or HELO first\r\n";
/// MAIL inside a transaction.
pub const NESTED_MAIL: &[u8] = b"503 5.5.1 Sender already given\r\n";
/// RCPT, DATA or BDAT without MAIL.
pub const NEED_MAIL: &[u8] = b"503 5.5.1 Need MAIL command first\r\n";
/// DATA or BDAT without an accepted recipient.
pub const NEED_RCPT: &[u8] = b"554 5.5.1 No valid recipients\r\n";
/// DATA or RCPT after a BDAT chunk (RFC 3030 2).
pub const AFTER_BDAT: &[u8] = b"503 5.5.1 Not allowed after BDAT\r\n";
/// MAIL on the submission listener before AUTH (RFC 4954 6).
pub const AUTH_REQUIRED: &[u8] = b"530 5.7.0 Authentication required\r\n";
/// AUTH before STARTTLS where TLS is available (RFC 4954 6).
pub const ENCRYPTION_REQUIRED: &[u8] =
    b"538 5.7.11 Encryption required for requested authentication mechanism\r\n";
/// AUTH where no mechanism is offered at all.
pub const AUTH_UNAVAILABLE: &[u8] = b"502 5.5.1 AUTH not available\r\n";
/// AUTH with a mechanism we do not offer.
pub const AUTH_UNKNOWN_MECHANISM: &[u8] = b"504 5.5.4 Unrecognized authentication type\r\n";
/// A second AUTH.
pub const ALREADY_AUTHENTICATED: &[u8] = b"503 5.5.1 Already authenticated\r\n";
/// AUTH inside a transaction (RFC 4954 4).
pub const AUTH_IN_TRANSACTION: &[u8] = b"503 5.5.1 AUTH not allowed during a mail transaction\r\n";
/// Wrong user name or password (RFC 4954 6).
pub const AUTH_FAILED: &[u8] = b"535 5.7.8 Authentication credentials invalid\r\n";
/// The client answered a challenge with `*` (RFC 4954 4).
pub const AUTH_CANCELLED: &[u8] = b"501 5.0.0 Authentication cancelled\r\n";
/// A SASL response that is not base64 or not a well-formed message.
pub const AUTH_UNDECODABLE: &[u8] = b"501 5.5.2 Cannot decode response\r\n";
/// AUTH from an address with too many recent failures.
pub const AUTH_LOCKED: &[u8] =
    b"454 4.7.0 Too many failed authentications from your address; try later\r\n";
/// The verifier could not decide (RFC 4954 6).
pub const AUTH_TEMPORARY: &[u8] = b"454 4.7.0 Temporary authentication failure\r\n";
/// Too many failed AUTH attempts on this connection.
pub const AUTH_TOO_MANY: &[u8] =
    b"421 4.7.0 Too many failed authentications; closing connection\r\n";
/// STARTTLS where no certificate is configured.
pub const TLS_UNAVAILABLE: &[u8] = b"502 5.5.1 STARTTLS not available\r\n";
/// STARTTLS inside TLS.
pub const TLS_ACTIVE: &[u8] = b"503 5.5.1 TLS already active\r\n";
/// STARTTLS inside a transaction.
pub const TLS_IN_TRANSACTION: &[u8] =
    b"503 5.5.1 STARTTLS not allowed during a mail transaction\r\n";
/// More RCPTs than `max_recipients` (RFC 5321 4.5.3.1.10).
pub const TOO_MANY_RECIPIENTS: &[u8] = b"452 4.5.3 Too many recipients\r\n";
/// Over `max_message_size` (SIZE at MAIL, or while reading).
pub const TOO_BIG: &[u8] = b"552 5.3.4 Message size exceeds fixed limit\r\n";
/// A data line over `max_line_length`.
pub const DATA_LINE_TOO_LONG: &[u8] = b"552 5.3.4 Message line too long\r\n";
/// A command line over the command line limit.
pub const COMMAND_TOO_LONG: &[u8] = b"500 5.5.2 Line too long\r\n";
/// Bare CR/LF or a smuggling-shaped end of data in DATA: where the client meant
/// the data to end is unknown, so the connection closes.
pub const BAD_DATA_CLOSE: &[u8] =
    b"554 5.6.0 Bare CR or LF in message data; closing connection\r\n";
/// Bare CR/LF in BDAT content (framing by size is unambiguous: the connection
/// stays usable).
pub const BAD_CHUNK_DATA: &[u8] = b"554 5.6.0 Bare CR or LF in message data\r\n";
/// `BODY=BINARYMIME`, which is not offered.
pub const NO_BINARYMIME: &[u8] = b"555 5.5.4 BODY=BINARYMIME not supported\r\n";
/// A recipient this client may not send to.
pub const RELAY_DENIED: &[u8] = b"554 5.7.1 Relay access denied\r\n";
/// `<Postmaster>` without a domain: there are no local mailboxes.
pub const NO_LOCAL_MAILBOX: &[u8] = b"550 5.1.1 No local mailboxes here\r\n";
/// A general address literal (`[tag:...]`), which cannot be routed.
pub const BAD_LITERAL: &[u8] = b"550 5.1.2 Unsupported address literal\r\n";
/// Too many bad or useless commands.
pub const TOO_MANY_ERRORS: &[u8] = b"421 4.7.0 Too many errors; closing connection\r\n";
/// The listener is stopping.
pub const SHUTTING_DOWN: &[u8] = b"421 4.3.2 Service shutting down; closing connection\r\n";
/// `command_timeout` or `data_timeout` ran out.
pub const TIMEOUT: &[u8] = b"421 4.4.2 Timeout exceeded; closing connection\r\n";
/// Over `max_connections`.
pub const TOO_MANY_CONNECTIONS: &[u8] = b"421 4.3.2 Too many connections; try later\r\n";
/// Over `max_connections_per_ip`.
pub const TOO_MANY_CONNECTIONS_FROM_IP: &[u8] =
    b"421 4.7.0 Too many connections from your address; try later\r\n";
/// The spool could not store the message now.
pub const STORE_TRY_LATER: &[u8] =
    b"451 4.3.0 Temporary failure storing the message; try later\r\n";
/// The spool refused the message for good.
pub const STORE_REFUSED: &[u8] = b"554 5.3.0 Message could not be stored\r\n";
