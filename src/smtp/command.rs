//! Client commands (RFC 5321 section 4.1.1 and extensions): parsed by servers,
//! rendered by clients.
//!
//! A server frames input into lines with [`next_line`] and parses each with
//! [`Command::parse`]; a client builds typed values and calls
//! [`Command::write_to`].

use thiserror::Error;

use super::address::{AddressError, Path};
use super::reply::Reply;

/// One client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain-or-literal` (kept as sent, checked for syntax).
    Ehlo(String),
    /// `HELO domain`
    Helo(String),
    /// `MAIL FROM:<path> [params]`
    Mail(MailFrom),
    /// `RCPT TO:<path> [params]`
    Rcpt(RcptTo),
    /// `DATA`
    Data,
    /// `BDAT size [LAST]` (RFC 3030). The chunk's bytes follow the line.
    Bdat { size: u64, last: bool },
    /// `RSET`
    Rset,
    /// `NOOP [string]`
    Noop,
    /// `QUIT`
    Quit,
    /// `STARTTLS` (RFC 3207)
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954)
    Auth(AuthStart),
    /// `VRFY string`
    Vrfy(String),
    /// `HELP [string]`
    Help,
}

/// `MAIL FROM` with its ESMTP parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFrom {
    /// The reverse-path; `<>` for bounces.
    pub path: Path,
    /// `SIZE=n` (RFC 1870): the client's estimate of the message size.
    pub size: Option<u64>,
    /// `BODY=7BIT|8BITMIME|BINARYMIME` (RFC 6152, RFC 3030).
    pub body: Option<BodyType>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `RET=FULL|HDRS` (RFC 3461).
    pub ret: Option<DsnReturn>,
    /// `ENVID=xtext` (RFC 3461), decoded.
    pub envid: Option<String>,
    /// `AUTH=<mailbox>|<>` (RFC 4954 5), decoded, kept for relays.
    pub auth: Option<String>,
}

/// `BODY=` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
    BinaryMime,
}

/// `RET=` values (RFC 3461 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnReturn {
    Full,
    Headers,
}

/// `RCPT TO` with its ESMTP parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptTo {
    /// The forward-path (never `<>`; `<Postmaster>` is allowed without a domain and
    /// parsed as a mailbox in the server's own domain by the caller).
    pub path: Path,
    /// `NOTIFY=` (RFC 3461 4.1).
    pub notify: Option<DsnNotify>,
    /// `ORCPT=addr-type;xtext` (RFC 3461 4.2), decoded.
    pub orcpt: Option<OriginalRecipient>,
}

/// `NOTIFY=NEVER` or any of SUCCESS, FAILURE, DELAY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DsnNotify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

/// `ORCPT=addr-type;address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRecipient {
    /// Usually `rfc822` (or `utf-8`, RFC 6533).
    pub addr_type: String,
    /// The original address, xtext-decoded.
    pub address: String,
}

/// SASL mechanisms we speak or recognise.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuthMechanism {
    Plain,
    Login,
    CramMd5,
    XOAuth2,
    /// Any other mechanism name, uppercase.
    Other(String),
}

/// `AUTH mechanism [initial-response]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthStart {
    pub mechanism: AuthMechanism,
    /// The base64 initial response as sent; `Some("")` for `=` (an empty response).
    pub initial_response: Option<String>,
}

/// How a command line failed to parse. [`CommandError::reply`] gives the reply a
/// server should send.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    #[error("line too long")]
    LineTooLong,
    #[error("unrecognized command")]
    Unrecognized,
    #[error("syntax error in parameters: {0}")]
    Syntax(&'static str),
    #[error("bad address: {0}")]
    Address(#[from] AddressError),
    #[error("unsupported parameter {0}")]
    UnknownParameter(String),
    #[error("line contains a bare CR or LF, or a NUL")]
    BadLineEnding,
}

/// What [`next_line`] found at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// A complete line of this many bytes, including its CRLF.
    Complete(usize),
    /// No CRLF yet; read more.
    Incomplete,
    /// More than `max` bytes without a CRLF: the caller replies 500 5.5.6 and
    /// discards up to the next CRLF (or closes the connection).
    TooLong,
}

/// Finds the first CRLF-terminated line in `buf`, at most `max` bytes long (CRLF
/// included). A bare LF does not end a line.
pub fn next_line(buf: &[u8], max: usize) -> Line {
    todo!("helper: command")
}

impl Command {
    /// Parses one command line (with or without its trailing CRLF). Verbs and
    /// parameter keywords are case-insensitive. MAIL accepts a UTF-8 address only
    /// with the SMTPUTF8 parameter; RCPT accepts UTF-8 and the server checks it
    /// against its transaction ([`super::address::Mailbox::needs_smtputf8`]).
    pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
        todo!("helper: command")
    }

    /// Appends the command's wire form, CRLF included, to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        todo!("helper: command")
    }

    /// The verb, uppercase (`"MAIL"`, `"BDAT"`, ...), for logs and counters.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Mail(_) => "MAIL",
            Command::Rcpt(_) => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::StartTls => "STARTTLS",
            Command::Auth(_) => "AUTH",
            Command::Vrfy(_) => "VRFY",
            Command::Help => "HELP",
        }
    }
}

impl CommandError {
    /// The reply a server sends for this error (500/501/504/553 with an enhanced
    /// status code).
    pub fn reply(&self) -> Reply {
        todo!("helper: command")
    }
}

impl MailFrom {
    /// `MAIL FROM:<path>` with no parameters.
    pub fn new(path: Path) -> Self {
        MailFrom { path, size: None, body: None, smtputf8: false, ret: None, envid: None, auth: None }
    }
}

impl RcptTo {
    /// `RCPT TO:<path>` with no parameters.
    pub fn new(path: Path) -> Self {
        RcptTo { path, notify: None, orcpt: None }
    }
}

/// Encodes `s` as RFC 3461 xtext (`+XX` for `+`, `=`, and bytes outside 33..=126).
pub fn xtext_encode(s: &str, out: &mut Vec<u8>) {
    todo!("helper: command")
}

/// Decodes RFC 3461 xtext; `None` on a malformed `+XX`.
pub fn xtext_decode(s: &[u8]) -> Option<String> {
    todo!("helper: command")
}
