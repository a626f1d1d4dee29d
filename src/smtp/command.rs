//! Client commands (RFC 5321 section 4.1.1 and extensions): parsed by servers,
//! rendered by clients.
//!
//! A server frames input into lines with [`next_line`] and parses each with
//! [`Command::parse`]; a client builds typed values and calls
//! [`Command::write_to`].

use std::io::Write as _;

use memchr::{memchr, memchr3, memchr_iter};
use thiserror::Error;

use super::address::{AddressError, Domain, Mailbox, Path};
use super::reply::Reply;
use super::status::{EnhancedStatus, ReplyCode};

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
    /// The forward-path. `<>` is never a forward-path, so [`Path::NULL`] here stands
    /// for `<Postmaster>` without a domain (RFC 5321 4.1.1.3), which the server
    /// resolves to its own postmaster: see [`RcptTo::is_postmaster`].
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
    /// A bad forward-path (RCPT), or `<>` as one.
    #[error("bad address: {0}")]
    Address(#[from] AddressError),
    /// A bad reverse-path (MAIL): RFC 3463 has its own code for senders.
    #[error("bad sender address: {0}")]
    SenderAddress(AddressError),
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
    /// More than `max` bytes without a CRLF: the caller replies
    /// [`CommandError::LineTooLong`] (500 5.5.2) and discards up to the next CRLF
    /// (or closes the connection).
    TooLong,
}

/// Finds the first CRLF-terminated line in `buf`, at most `max` bytes long (CRLF
/// included). A bare LF does not end a line. Looks at no more than `max` bytes, so
/// a caller that keeps appending to `buf` pays at most `max` per call.
pub fn next_line(buf: &[u8], max: usize) -> Line {
    let window = buf.get(..max).unwrap_or(buf);
    for lf in memchr_iter(b'\n', window) {
        if lf.checked_sub(1).and_then(|cr| window.get(cr)) == Some(&b'\r') {
            return Line::Complete(lf + 1);
        }
    }
    if buf.len() >= max {
        Line::TooLong
    } else {
        Line::Incomplete
    }
}

impl Command {
    /// Parses one command line (with or without its trailing CRLF). Verbs and
    /// parameter keywords are case-insensitive. MAIL accepts a UTF-8 address only
    /// with the SMTPUTF8 parameter; RCPT accepts UTF-8 and the server checks it
    /// against its transaction ([`super::address::Mailbox::needs_smtputf8`]).
    ///
    /// Leniency, all of it: trailing spaces are ignored, arguments and parameters
    /// may be separated by more than one space, and one space may follow
    /// `FROM:`/`TO:`. The line length is the framing's business ([`next_line`]).
    pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
        let line = line.strip_suffix(b"\r\n").unwrap_or(line);
        if memchr3(0, b'\r', b'\n', line).is_some() {
            return Err(CommandError::BadLineEnding);
        }
        let line = trim_end_spaces(line);
        let (verb, args) = match memchr(b' ', line) {
            Some(sp) => (&line[..sp], skip_spaces(&line[sp + 1..])),
            None => (line, &line[line.len()..]),
        };
        if verb.len() == 8 && verb.eq_ignore_ascii_case(b"STARTTLS") {
            return no_args(args, Command::StartTls);
        }
        let Ok(verb) = <[u8; 4]>::try_from(verb) else {
            return Err(CommandError::Unrecognized);
        };
        // Letters only in the verbs, so clearing bit 5 uppercases without false hits.
        match u32::from_le_bytes(verb) & 0xDFDF_DFDF {
            MAIL => parse_mail(args).map(Command::Mail),
            RCPT => parse_rcpt(args).map(Command::Rcpt),
            DATA => no_args(args, Command::Data),
            BDAT => parse_bdat(args),
            EHLO => parse_hello(args).map(Command::Ehlo),
            HELO => parse_hello(args).map(Command::Helo),
            RSET => no_args(args, Command::Rset),
            NOOP => Ok(Command::Noop),
            QUIT => no_args(args, Command::Quit),
            AUTH => parse_auth(args).map(Command::Auth),
            VRFY => parse_vrfy(args).map(Command::Vrfy),
            HELP => Ok(Command::Help),
            _ => Err(CommandError::Unrecognized),
        }
    }

    /// Appends the command's wire form, CRLF included, to `out`.
    ///
    /// Canonical form: uppercase verbs and keywords, single spaces, parameters in a
    /// fixed order, xtext re-encoded. A path keeps a source route it was parsed
    /// with (so parse and render round-trip); clients never build one. A RCPT to
    /// [`Path::NULL`] renders `<Postmaster>`; an empty `NOTIFY` set is omitted.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Command::Ehlo(domain) => simple(out, b"EHLO ", domain.as_bytes()),
            Command::Helo(domain) => simple(out, b"HELO ", domain.as_bytes()),
            Command::Mail(mail) => mail.write_to(out),
            Command::Rcpt(rcpt) => rcpt.write_to(out),
            Command::Data => out.extend_from_slice(b"DATA\r\n"),
            Command::Bdat { size, last } => {
                out.extend_from_slice(b"BDAT ");
                push_u64(out, *size);
                if *last {
                    out.extend_from_slice(b" LAST");
                }
                out.extend_from_slice(b"\r\n");
            }
            Command::Rset => out.extend_from_slice(b"RSET\r\n"),
            Command::Noop => out.extend_from_slice(b"NOOP\r\n"),
            Command::Quit => out.extend_from_slice(b"QUIT\r\n"),
            Command::StartTls => out.extend_from_slice(b"STARTTLS\r\n"),
            Command::Auth(auth) => {
                out.extend_from_slice(b"AUTH ");
                out.extend_from_slice(auth.mechanism.as_str().as_bytes());
                match auth.initial_response.as_deref() {
                    None => {}
                    Some("") => out.extend_from_slice(b" ="),
                    Some(response) => {
                        out.push(b' ');
                        out.extend_from_slice(response.as_bytes());
                    }
                }
                out.extend_from_slice(b"\r\n");
            }
            Command::Vrfy(what) => simple(out, b"VRFY ", what.as_bytes()),
            Command::Help => out.extend_from_slice(b"HELP\r\n"),
        }
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
    /// The reply a server sends for this error (500/501/553/555 with an enhanced
    /// status code).
    pub fn reply(&self) -> Reply {
        let (code, status, text) = match self {
            CommandError::LineTooLong => (
                ReplyCode::SYNTAX_ERROR,
                EnhancedStatus::SYNTAX_ERROR,
                "Line too long".into(),
            ),
            CommandError::Unrecognized => (
                ReplyCode::SYNTAX_ERROR,
                EnhancedStatus::INVALID_COMMAND,
                "Command unrecognized".into(),
            ),
            CommandError::Syntax(why) => (
                ReplyCode::PARAM_SYNTAX_ERROR,
                EnhancedStatus::INVALID_ARGUMENTS,
                format!("Syntax error: {why}"),
            ),
            // RFC 6531 3.5: X.6.7, non-ASCII address without SMTPUTF8.
            CommandError::Address(AddressError::NeedsSmtpUtf8)
            | CommandError::SenderAddress(AddressError::NeedsSmtpUtf8) => (
                ReplyCode::MAILBOX_NAME_INVALID,
                EnhancedStatus::new(5, 6, 7),
                "Non-ASCII address requires SMTPUTF8".into(),
            ),
            CommandError::Address(e) => (
                ReplyCode::MAILBOX_NAME_INVALID,
                EnhancedStatus::BAD_ADDRESS_SYNTAX,
                format!("Bad recipient address syntax: {e}"),
            ),
            CommandError::SenderAddress(e) => (
                ReplyCode::PARAM_SYNTAX_ERROR,
                EnhancedStatus::BAD_SENDER_SYNTAX,
                format!("Bad sender address syntax: {e}"),
            ),
            CommandError::UnknownParameter(name) => (
                ReplyCode::PARAMS_NOT_RECOGNIZED,
                EnhancedStatus::INVALID_ARGUMENTS,
                format!("Unsupported parameter {name}"),
            ),
            CommandError::BadLineEnding => (
                ReplyCode::SYNTAX_ERROR,
                EnhancedStatus::SYNTAX_ERROR,
                "Bare CR, LF or NUL in command line".into(),
            ),
        };
        Reply::new(code, Some(status), text)
    }
}

impl MailFrom {
    /// `MAIL FROM:<path>` with no parameters.
    pub fn new(path: Path) -> Self {
        MailFrom {
            path,
            size: None,
            body: None,
            smtputf8: false,
            ret: None,
            envid: None,
            auth: None,
        }
    }
}

impl RcptTo {
    /// `RCPT TO:<path>` with no parameters.
    pub fn new(path: Path) -> Self {
        RcptTo {
            path,
            notify: None,
            orcpt: None,
        }
    }

    /// `RCPT TO:<Postmaster>`, the one forward-path without a domain.
    pub fn postmaster() -> Self {
        RcptTo::new(Path::NULL)
    }

    /// Whether this is `RCPT TO:<Postmaster>` (any case, no domain): the server
    /// delivers it to its own postmaster (RFC 5321 4.1.1.3). Represented by
    /// [`Path::NULL`], since `<>` is never a forward-path.
    pub fn is_postmaster(&self) -> bool {
        self.path.mailbox.is_none()
    }
}

/// Encodes `s` as RFC 3461 xtext (`+XX` for `+`, `=`, and bytes outside 33..=126).
pub fn xtext_encode(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'+', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// Decodes RFC 3461 xtext; `None` on a malformed `+XX`, a character outside
/// xchar (33..=126 but `+` and `=`), or a result that is not UTF-8. Lowercase hex
/// digits are accepted (RFC 3461 asks senders for uppercase).
pub fn xtext_decode(s: &[u8]) -> Option<String> {
    let xchar = |b: u8| (33..=126).contains(&b) && b != b'=';
    if memchr(b'+', s).is_none() {
        // The common case: nothing encoded, a plain copy.
        return s
            .iter()
            .all(|&b| xchar(b))
            .then(|| String::from_utf8(s.to_vec()).ok())?;
    }
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s;
    while let Some((&b, tail)) = rest.split_first() {
        match (b, tail) {
            (b'+', [hi, lo, tail @ ..]) => {
                out.push(hex_value(*hi)? << 4 | hex_value(*lo)?);
                rest = tail;
            }
            (b'+', _) => return None,
            _ if xchar(b) => {
                out.push(b);
                rest = tail;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

impl AuthMechanism {
    /// Recognises a SASL mechanism name (RFC 4422: 1-20 of letters, digits, `-`,
    /// `_`), case-insensitively; `None` if it is not a valid name.
    pub fn from_name(name: &[u8]) -> Option<AuthMechanism> {
        let valid = (1..=20).contains(&name.len())
            && name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return None;
        }
        let known = [
            (&b"PLAIN"[..], AuthMechanism::Plain),
            (b"LOGIN", AuthMechanism::Login),
            (b"CRAM-MD5", AuthMechanism::CramMd5),
            (b"XOAUTH2", AuthMechanism::XOAuth2),
        ];
        for (known_name, mechanism) in known {
            if name.eq_ignore_ascii_case(known_name) {
                return Some(mechanism);
            }
        }
        // Checked ASCII above.
        let upper = String::from_utf8_lossy(name).to_ascii_uppercase();
        Some(AuthMechanism::Other(upper))
    }

    /// The mechanism's name as on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            AuthMechanism::Plain => "PLAIN",
            AuthMechanism::Login => "LOGIN",
            AuthMechanism::CramMd5 => "CRAM-MD5",
            AuthMechanism::XOAuth2 => "XOAUTH2",
            AuthMechanism::Other(name) => name,
        }
    }
}

/// A four-letter verb, uppercase, as a little-endian `u32` for one-compare matching.
const fn verb(v: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*v)
}

const MAIL: u32 = verb(b"MAIL");
const RCPT: u32 = verb(b"RCPT");
const DATA: u32 = verb(b"DATA");
const BDAT: u32 = verb(b"BDAT");
const EHLO: u32 = verb(b"EHLO");
const HELO: u32 = verb(b"HELO");
const RSET: u32 = verb(b"RSET");
const NOOP: u32 = verb(b"NOOP");
const QUIT: u32 = verb(b"QUIT");
const AUTH: u32 = verb(b"AUTH");
const VRFY: u32 = verb(b"VRFY");
const HELP: u32 = verb(b"HELP");

fn trim_end_spaces(mut s: &[u8]) -> &[u8] {
    while let [head @ .., b' '] = s {
        s = head;
    }
    s
}

fn skip_spaces(mut s: &[u8]) -> &[u8] {
    while let [b' ', tail @ ..] = s {
        s = tail;
    }
    s
}

/// The space-separated words of `s` (runs of spaces count as one).
fn words(mut rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        rest = skip_spaces(rest);
        if rest.is_empty() {
            return None;
        }
        let (word, tail) = rest.split_at(memchr(b' ', rest).unwrap_or(rest.len()));
        rest = tail;
        Some(word)
    })
}

fn no_args(args: &[u8], command: Command) -> Result<Command, CommandError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(CommandError::Syntax("no parameters allowed"))
    }
}

/// `FROM:` / `TO:` (any case), then at most one space before the path.
fn strip_keyword<'a>(args: &'a [u8], keyword: &[u8]) -> Option<&'a [u8]> {
    let rest = args.get(keyword.len()..)?;
    if !args[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return None;
    }
    Some(rest.strip_prefix(b" ").unwrap_or(rest))
}

/// What follows a path: nothing, or a space and parameters.
fn param_tail(rest: &[u8]) -> Result<&[u8], CommandError> {
    match rest.first() {
        None | Some(b' ') => Ok(rest),
        Some(_) => Err(CommandError::Syntax("expected a space after the address")),
    }
}

/// Splits `KEYWORD[=value]` and checks both (RFC 5321 4.1.2 esmtp-param, with
/// RFC 6531 UTF-8 values).
fn split_param(param: &[u8]) -> Result<(&[u8], Option<&[u8]>), CommandError> {
    let (key, value) = match memchr(b'=', param) {
        Some(eq) => (&param[..eq], Some(&param[eq + 1..])),
        None => (param, None),
    };
    let key_ok = key.first().is_some_and(u8::is_ascii_alphanumeric)
        && key.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-');
    if !key_ok {
        return Err(CommandError::Syntax("invalid parameter keyword"));
    }
    if let Some(v) = value {
        // esmtp-value: any octet above SP but DEL and `=` (UTF-8 per RFC 6531).
        // Folded without short-circuit so it vectorises.
        let ok = v
            .iter()
            .fold(true, |ok, &b| ok & (b > b' ') & (b != 127) & (b != b'='));
        if v.is_empty() || !ok {
            return Err(CommandError::Syntax("invalid parameter value"));
        }
    }
    Ok((key, value))
}

/// Longer than any keyword or keyword value we match.
const KEYWORD_MAX: usize = 12;

/// `s` uppercased into `buf`, for matching against keywords in one comparison;
/// empty (which matches none) if `s` is longer than `buf`.
fn upper<'a>(s: &[u8], buf: &'a mut [u8; KEYWORD_MAX]) -> &'a [u8] {
    let Some(dst) = buf.get_mut(..s.len()) else {
        return &[];
    };
    for (d, &b) in dst.iter_mut().zip(s) {
        *d = b.to_ascii_uppercase();
    }
    dst
}

fn unknown(key: &[u8]) -> CommandError {
    // `split_param` has checked the keyword is ASCII.
    CommandError::UnknownParameter(String::from_utf8_lossy(key).to_ascii_uppercase())
}

fn required<'a>(value: Option<&'a [u8]>, why: &'static str) -> Result<&'a [u8], CommandError> {
    value.ok_or(CommandError::Syntax(why))
}

/// Sets a parameter's slot, refusing a second occurrence.
fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), CommandError> {
    if slot.is_some() {
        return Err(CommandError::Syntax("parameter given twice"));
    }
    *slot = Some(value);
    Ok(())
}

/// 1-20 ASCII digits that fit a `u64`; no sign, no spaces.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn parse_mail(args: &[u8]) -> Result<MailFrom, CommandError> {
    let rest =
        strip_keyword(args, b"FROM:").ok_or(CommandError::Syntax("expected FROM:<address>"))?;
    let (path, used) = Path::parse(rest, true).map_err(CommandError::SenderAddress)?;
    let params = param_tail(rest.get(used..).unwrap_or_default())?;
    let mut mail = MailFrom::new(path);
    for param in words(params) {
        let (key, value) = split_param(param)?;
        let mut buf = [0; KEYWORD_MAX];
        match upper(key, &mut buf) {
            b"SIZE" => {
                let n = parse_u64(required(value, "SIZE requires a value")?)
                    .ok_or(CommandError::Syntax("invalid SIZE value"))?;
                set_once(&mut mail.size, n)?;
            }
            b"BODY" => {
                let body = match upper(required(value, "BODY requires a value")?, &mut buf) {
                    b"7BIT" => BodyType::SevenBit,
                    b"8BITMIME" => BodyType::EightBitMime,
                    b"BINARYMIME" => BodyType::BinaryMime,
                    _ => return Err(CommandError::Syntax("invalid BODY value")),
                };
                set_once(&mut mail.body, body)?;
            }
            b"SMTPUTF8" => {
                if value.is_some() {
                    return Err(CommandError::Syntax("SMTPUTF8 takes no value"));
                }
                if mail.smtputf8 {
                    return Err(CommandError::Syntax("parameter given twice"));
                }
                mail.smtputf8 = true;
            }
            b"RET" => {
                let ret = match upper(required(value, "RET requires a value")?, &mut buf) {
                    b"FULL" => DsnReturn::Full,
                    b"HDRS" => DsnReturn::Headers,
                    _ => return Err(CommandError::Syntax("invalid RET value")),
                };
                set_once(&mut mail.ret, ret)?;
            }
            b"ENVID" => {
                let v = required(value, "ENVID requires a value")?;
                let envid =
                    xtext_decode(v).ok_or(CommandError::Syntax("invalid xtext in ENVID"))?;
                set_once(&mut mail.envid, envid)?;
            }
            b"AUTH" => {
                let v = required(value, "AUTH requires a value")?;
                let auth = xtext_decode(v).ok_or(CommandError::Syntax("invalid xtext in AUTH"))?;
                set_once(&mut mail.auth, auth)?;
            }
            _ => return Err(unknown(key)),
        }
    }
    if !mail.smtputf8
        && mail
            .path
            .mailbox
            .as_ref()
            .is_some_and(Mailbox::needs_smtputf8)
    {
        return Err(CommandError::SenderAddress(AddressError::NeedsSmtpUtf8));
    }
    Ok(mail)
}

fn parse_rcpt(args: &[u8]) -> Result<RcptTo, CommandError> {
    let rest = strip_keyword(args, b"TO:").ok_or(CommandError::Syntax("expected TO:<address>"))?;
    const POSTMASTER: &[u8] = b"<Postmaster>";
    let (path, used) = match rest.get(..POSTMASTER.len()) {
        Some(head) if head.eq_ignore_ascii_case(POSTMASTER) => (Path::NULL, POSTMASTER.len()),
        _ => match Path::parse(rest, true)? {
            (Path { mailbox: None, .. }, _) => return Err(AddressError::Empty.into()),
            parsed => parsed,
        },
    };
    let params = param_tail(rest.get(used..).unwrap_or_default())?;
    let mut rcpt = RcptTo::new(path);
    for param in words(params) {
        let (key, value) = split_param(param)?;
        let mut buf = [0; KEYWORD_MAX];
        match upper(key, &mut buf) {
            b"NOTIFY" => {
                let notify = parse_notify(required(value, "NOTIFY requires a value")?)?;
                set_once(&mut rcpt.notify, notify)?;
            }
            b"ORCPT" => {
                let orcpt = parse_orcpt(required(value, "ORCPT requires a value")?)?;
                set_once(&mut rcpt.orcpt, orcpt)?;
            }
            _ => return Err(unknown(key)),
        }
    }
    Ok(rcpt)
}

/// `NEVER`, or a comma list of `SUCCESS`, `FAILURE`, `DELAY` (RFC 3461 4.1).
fn parse_notify(value: &[u8]) -> Result<DsnNotify, CommandError> {
    const BAD: CommandError = CommandError::Syntax("invalid NOTIFY value");
    let mut notify = DsnNotify::default();
    let mut count = 0;
    let mut buf = [0; KEYWORD_MAX];
    for item in value.split(|&b| b == b',') {
        let flag = match upper(item, &mut buf) {
            b"NEVER" => &mut notify.never,
            b"SUCCESS" => &mut notify.success,
            b"FAILURE" => &mut notify.failure,
            b"DELAY" => &mut notify.delay,
            _ => return Err(BAD),
        };
        if *flag {
            return Err(BAD);
        }
        *flag = true;
        count += 1;
    }
    if notify.never && count > 1 {
        return Err(CommandError::Syntax("NOTIFY=NEVER excludes other values"));
    }
    Ok(notify)
}

/// `addr-type;xtext` (RFC 3461 4.2). The type is kept as sent; it must be letters,
/// digits and hyphens (`rfc822`, `utf-8`, `x400`...).
fn parse_orcpt(value: &[u8]) -> Result<OriginalRecipient, CommandError> {
    const BAD: CommandError = CommandError::Syntax("invalid ORCPT value");
    let semi = memchr(b';', value).ok_or(BAD)?;
    let (addr_type, address) = (&value[..semi], &value[semi + 1..]);
    let type_ok = !addr_type.is_empty()
        && addr_type
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-');
    if !type_ok || address.is_empty() {
        return Err(BAD);
    }
    let address = xtext_decode(address).ok_or(BAD)?;
    let addr_type = String::from_utf8_lossy(addr_type).into_owned();
    Ok(OriginalRecipient { addr_type, address })
}

fn parse_bdat(args: &[u8]) -> Result<Command, CommandError> {
    let mut words = words(args);
    let size = words
        .next()
        .and_then(parse_u64)
        .ok_or(CommandError::Syntax("BDAT requires a size in digits"))?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case(b"LAST") => true,
        Some(_) => return Err(CommandError::Syntax("expected LAST after the size")),
    };
    if words.next().is_some() {
        return Err(CommandError::Syntax("too many parameters"));
    }
    Ok(Command::Bdat { size, last })
}

/// EHLO/HELO argument: one domain or address literal, kept as sent.
fn parse_hello(args: &[u8]) -> Result<String, CommandError> {
    if args.is_empty() {
        return Err(CommandError::Syntax(
            "domain name or address literal required",
        ));
    }
    if memchr(b' ', args).is_some() {
        return Err(CommandError::Syntax(
            "one domain name or address literal expected",
        ));
    }
    let invalid = CommandError::Syntax("invalid domain name or address literal");
    let s = std::str::from_utf8(args).map_err(|_| invalid.clone())?;
    Domain::parse(s).map_err(|_| invalid)?;
    Ok(s.to_owned())
}

fn parse_auth(args: &[u8]) -> Result<AuthStart, CommandError> {
    let mut words = words(args);
    let mechanism = words
        .next()
        .and_then(AuthMechanism::from_name)
        .ok_or(CommandError::Syntax("invalid or missing SASL mechanism"))?;
    let initial_response = match words.next() {
        None => None,
        Some(b"=") => Some(String::new()),
        Some(response) if is_base64(response) => {
            Some(String::from_utf8_lossy(response).into_owned())
        }
        Some(_) => return Err(CommandError::Syntax("initial response is not base64")),
    };
    if words.next().is_some() {
        return Err(CommandError::Syntax("too many parameters"));
    }
    Ok(AuthStart {
        mechanism,
        initial_response,
    })
}

/// Base64 alphabet with at most two `=` of padding at the end (length not
/// checked: the SASL layer decodes it).
fn is_base64(s: &[u8]) -> bool {
    let body = s.strip_suffix(b"=").unwrap_or(s);
    let body = body.strip_suffix(b"=").unwrap_or(body);
    !body.is_empty()
        && body
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn parse_vrfy(args: &[u8]) -> Result<String, CommandError> {
    if args.is_empty() {
        return Err(CommandError::Syntax("VRFY requires an argument"));
    }
    let s = std::str::from_utf8(args).map_err(|_| CommandError::Syntax("invalid UTF-8"))?;
    Ok(s.to_owned())
}

/// `prefix` `arg` CRLF.
fn simple(out: &mut Vec<u8>, prefix: &[u8], arg: &[u8]) {
    out.extend_from_slice(prefix);
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        start -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[start..]);
}

/// `<@a,@b:local@domain>`: the path with its source route, if it has one.
fn write_path(out: &mut Vec<u8>, path: &Path) {
    out.push(b'<');
    let mut hosts = path.source_route.iter().peekable();
    while let Some(host) = hosts.next() {
        out.push(b'@');
        out.extend_from_slice(host.as_bytes());
        out.push(if hosts.peek().is_some() { b',' } else { b':' });
    }
    if let Some(mailbox) = &path.mailbox {
        out.extend_from_slice(mailbox.local.as_bytes());
        out.push(b'@');
        match &mailbox.domain {
            Domain::Name(name) => out.extend_from_slice(name.as_bytes()),
            // Writing to a Vec cannot fail.
            literal => {
                let _ = write!(out, "{literal}");
            }
        }
    }
    out.push(b'>');
}

impl MailFrom {
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"MAIL FROM:");
        write_path(out, &self.path);
        if let Some(size) = self.size {
            out.extend_from_slice(b" SIZE=");
            push_u64(out, size);
        }
        if let Some(body) = self.body {
            out.extend_from_slice(match body {
                BodyType::SevenBit => b" BODY=7BIT",
                BodyType::EightBitMime => b" BODY=8BITMIME",
                BodyType::BinaryMime => b" BODY=BINARYMIME",
            });
        }
        if self.smtputf8 {
            out.extend_from_slice(b" SMTPUTF8");
        }
        if let Some(ret) = self.ret {
            out.extend_from_slice(match ret {
                DsnReturn::Full => b" RET=FULL",
                DsnReturn::Headers => b" RET=HDRS",
            });
        }
        if let Some(envid) = &self.envid {
            out.extend_from_slice(b" ENVID=");
            xtext_encode(envid, out);
        }
        if let Some(auth) = &self.auth {
            out.extend_from_slice(b" AUTH=");
            xtext_encode(auth, out);
        }
        out.extend_from_slice(b"\r\n");
    }
}

impl RcptTo {
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"RCPT TO:");
        if self.is_postmaster() {
            out.extend_from_slice(b"<Postmaster>");
        } else {
            write_path(out, &self.path);
        }
        if let Some(notify) = self.notify {
            notify.write_to(out);
        }
        if let Some(orcpt) = &self.orcpt {
            out.extend_from_slice(b" ORCPT=");
            out.extend_from_slice(orcpt.addr_type.as_bytes());
            out.push(b';');
            xtext_encode(&orcpt.address, out);
        }
        out.extend_from_slice(b"\r\n");
    }
}

impl DsnNotify {
    /// ` NOTIFY=...`; `NEVER` wins over the others; nothing for an empty set.
    fn write_to(self, out: &mut Vec<u8>) {
        if self.never {
            out.extend_from_slice(b" NOTIFY=NEVER");
            return;
        }
        let mut sep: &[u8] = b" NOTIFY=";
        for (on, name) in [
            (self.success, &b"SUCCESS"[..]),
            (self.failure, b"FAILURE"),
            (self.delay, b"DELAY"),
        ] {
            if on {
                out.extend_from_slice(sep);
                out.extend_from_slice(name);
                sep = b",";
            }
        }
    }
}

#[cfg(test)]
mod tests;
