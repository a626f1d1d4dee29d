//! The sink's replies as static bytes: the hot path appends them without formatting.

use super::stats::Local;

pub const MAIL_OK: &[u8] = b"250 2.1.0 Sender OK\r\n";
pub const RCPT_OK: &[u8] = b"250 2.1.5 Recipient OK\r\n";
pub const DATA_GO: &[u8] = b"354 End data with <CR><LF>.<CR><LF>\r\n";
pub const MESSAGE_OK: &[u8] = b"250 2.6.0 Message accepted\r\n";
pub const CHUNK_OK: &[u8] = b"250 2.0.0 Chunk received\r\n";
pub const OK: &[u8] = b"250 2.0.0 OK\r\n";
pub const BYE: &[u8] = b"221 2.0.0 Bye\r\n";
pub const NEED_HELO: &[u8] = b"503 5.5.1 Send EHLO or HELO first\r\n";
pub const NESTED_MAIL: &[u8] = b"503 5.5.1 Sender already specified\r\n";
pub const NEED_MAIL: &[u8] = b"503 5.5.1 Need MAIL command first\r\n";
pub const NEED_RCPT: &[u8] = b"554 5.5.1 No valid recipients\r\n";
pub const AFTER_BDAT: &[u8] = b"503 5.5.1 Not allowed after BDAT\r\n";
pub const NO_RCPT_PATH: &[u8] = b"501 5.1.3 Null recipient\r\n";
pub const TOO_BIG: &[u8] = b"552 5.3.4 Message size exceeds fixed limit\r\n";
pub const TOO_MANY_RCPTS: &[u8] = b"452 4.5.3 Too many recipients\r\n";
pub const NEEDS_UTF8: &[u8] = b"553 5.6.7 SMTPUTF8 required for this address\r\n";
pub const BAD_DATA: &[u8] = b"554 5.6.0 Bare CR or LF, or ambiguous end of data; closing\r\n";
pub const LINE_TOO_LONG: &[u8] = b"500 5.5.2 Line too long\r\n";
pub const TLS_GO: &[u8] = b"220 2.0.0 Ready to start TLS\r\n";
pub const NO_TLS: &[u8] = b"502 5.5.1 STARTTLS not offered\r\n";
pub const TLS_AGAIN: &[u8] = b"503 5.5.1 TLS already active\r\n";
pub const NO_AUTH: &[u8] = b"502 5.5.1 AUTH not offered\r\n";
pub const VRFY: &[u8] = b"252 2.5.0 Cannot VRFY user, but will accept message\r\n";
pub const HELP: &[u8] =
    b"214 2.0.0 volley-load sink; see volley-load sink --help for magic recipients\r\n";
pub const TOO_MANY_ERRORS: &[u8] = b"421 4.7.0 Too many errors; closing\r\n";
pub const RCPT_TEMPFAIL: &[u8] = b"451 4.3.0 Temporary failure (injected)\r\n";
pub const RCPT_PERMFAIL: &[u8] = b"550 5.1.1 Mailbox unavailable (injected)\r\n";
pub const RCPT_TEMPFAIL_ONCE: &[u8] = b"451 4.3.0 Try again later (tempfail-once)\r\n";
pub const DISCONNECT_421: &[u8] = b"421 4.4.2 Closing connection (magic recipient)\r\n";
pub const DATA_TEMPFAIL: &[u8] = b"451 4.3.0 Temporary failure (injected)\r\n";
pub const DATA_PERMFAIL: &[u8] = b"554 5.3.0 Transaction failed (injected)\r\n";
pub const IDLE_TIMEOUT: &[u8] = b"421 4.4.2 Idle timeout; closing\r\n";
pub const SHUTTING_DOWN: &[u8] = b"421 4.3.2 Shutting down\r\n";

/// Appends a static reply and counts its code.
#[inline]
pub fn put(out: &mut Vec<u8>, counts: &mut Local, reply: &[u8]) {
    out.extend_from_slice(reply);
    let d = |i: usize| (reply[i] - b'0') as u16;
    counts.reply(d(0) * 100 + d(1) * 10 + d(2));
}
