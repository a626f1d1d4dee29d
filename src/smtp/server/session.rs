//! One client's ESMTP session, without I/O.
//!
//! [`Session::feed`] takes the bytes buffered from the client, consumes every
//! complete command (and message data) it can, appends the replies to `out` and
//! says what the connection must do next ([`Action`]). An action other than
//! [`Action::Read`] stops it early, with the rest of the input unconsumed: the
//! connection does what was asked, reports the result with the matching method
//! (which may append a reply) and feeds the remaining input again. Replies to a
//! pipelined batch accumulate in `out` until the connection needs to read, so
//! the whole batch is answered in one write.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use super::chunk::{ChunkCheck, ChunkError};
use super::config::{Role, SessionConfig};
use super::policy::{check_recipient, Refusal};
use super::received::{self, ReceivedInfo};
use super::replies::*;
use super::sasl::{self, Credentials, SaslError};
use crate::smtp::address::AddressError;
use crate::smtp::command::{
    next_line, AuthMechanism, AuthStart, BodyType, Command, CommandError, Line, MailFrom, RcptTo,
};
use crate::smtp::data::{BareLineEndings, DataError, DataLimits, DataProgress, DataReader};
use crate::smtp::ehlo::Capabilities;
use crate::smtp::limits::MAX_COMMAND_LINE_WITH_PARAMS;

/// Bad commands (syntax, sequence, refused recipients) before 421.
const MAX_ERRORS: u32 = 20;
/// Commands that move nothing forward (NOOP, RSET, VRFY, HELP) before 421: a
/// client cannot keep a connection by chatting.
const MAX_JUNK: u32 = 100;

/// What the connection does after [`Session::feed`] returns.
#[derive(Debug)]
pub enum Action {
    /// Everything complete was handled: write `out`, then read more (with the
    /// timeout of [`Session::phase`]).
    Read,
    /// Write `out`, then close the connection.
    Close,
    /// Write `out` (the 220), discard any input buffered after the STARTTLS line
    /// (RFC 3207 5: it was sent in clear), do the TLS handshake, then call
    /// [`Session::tls_started`] (or close if it fails).
    StartTls,
    /// Check whether the client's address is locked out of AUTH, then call
    /// [`Session::auth_gate`].
    AuthGate,
    /// Verify these credentials, then call [`Session::auth_verified`].
    Verify(Credentials),
    /// Store the message durably, then call [`Session::stored`]: its reply waits
    /// for that.
    Store(Box<Transaction>),
}

/// Which timeout applies to the next read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Between commands or inside one: `command_timeout` for the whole line.
    Command,
    /// Inside DATA or a BDAT chunk: `data_timeout` of silence.
    Data,
}

/// The TLS parameters of a session, for the `Received:` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// E.g. `TLSv1.3`.
    pub version: String,
    /// E.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The AUTH user name.
    pub username: String,
    /// The user's tenant.
    pub tenant: Option<String>,
}

/// The result of [`Action::Verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Right password; the user's tenant.
    Accepted { tenant: Option<String> },
    /// Unknown user or wrong password.
    Rejected,
    /// The client's address has failed too often lately.
    Locked,
    /// The verifier could not decide (e.g. a blocking pool gone).
    Unavailable,
}

/// The result of [`Action::Store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Durable, with this id.
    Queued(String),
    /// A transient spool problem: 451.
    TryLater,
    /// The spool refused the message for good: 554.
    Refused,
}

/// A complete message and everything known about how it arrived.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// MAIL FROM with its parameters.
    pub mail: MailFrom,
    /// The accepted recipients, in order, with their parameters.
    pub rcpts: Vec<RcptTo>,
    /// The content, unstuffed (DATA) or the chunks joined (BDAT).
    pub body: Vec<u8>,
    /// The EHLO/HELO argument.
    pub helo: String,
    /// Whether the client greeted with EHLO.
    pub ehlo: bool,
    /// The client's address.
    pub peer: IpAddr,
    /// TLS, if the session used it.
    pub tls: Option<TlsInfo>,
    /// The authenticated user, if any.
    pub identity: Option<Identity>,
    /// Whose message this is: the user's tenant, or the relay tenant for a
    /// trusted network.
    pub tenant: Option<String>,
}

impl Transaction {
    /// The RFC 3848 protocol name for the `Received:` header.
    pub fn protocol(&self) -> &'static str {
        received::protocol(
            self.ehlo,
            self.mail.smtputf8,
            self.tls.is_some(),
            self.identity.is_some(),
        )
    }

    /// The `Received:` header for this message, stored as `id` at `unix_secs`.
    pub fn received_header(&self, hostname: &str, id: &str, unix_secs: u64) -> String {
        let rcpt = match self.rcpts.as_slice() {
            [one] => one.path.mailbox.as_ref().map(ToString::to_string),
            _ => None,
        };
        received::render(&ReceivedInfo {
            helo: &self.helo,
            peer: self.peer,
            hostname,
            protocol: self.protocol(),
            tls: self
                .tls
                .as_ref()
                .map(|t| (t.version.as_str(), t.cipher.as_str())),
            id,
            rcpt: rcpt.as_deref(),
            unix_secs,
        })
    }

    /// `BODY=` as given, or 8BITMIME when the content has 8-bit bytes and the
    /// client said nothing (so the next hop is told).
    pub fn body_type(&self) -> Option<BodyType> {
        self.mail
            .body
            .or_else(|| (!self.body.is_ascii()).then_some(BodyType::EightBitMime))
    }
}

/// What the session is reading.
#[derive(Debug)]
enum Mode {
    /// Command lines.
    Command,
    /// After a too-long command line: skipping to its CRLF.
    Discard,
    /// DATA content, up to the terminator.
    Data(DataReader),
    /// A BDAT chunk: `remaining` bytes still to take; `refuse` is the reply once
    /// they are in, when the chunk is refused.
    Bdat {
        size: u64,
        remaining: u64,
        last: bool,
        refuse: Option<&'static [u8]>,
    },
    /// AUTH PLAIN: waiting for the response line.
    AuthPlain,
    /// AUTH LOGIN: waiting for the user name.
    AuthLoginUser,
    /// AUTH LOGIN: waiting for the password.
    AuthLoginPassword { username: String },
}

/// What the session waits for the connection to report.
#[derive(Debug)]
enum Wait {
    /// The TLS handshake.
    Tls,
    /// The lockout check for this AUTH command.
    Gate(AuthStart),
    /// The verification of this user's password.
    Verify(String),
    /// The spool.
    Store,
}

/// The greeting the client gave.
#[derive(Debug, Clone)]
struct Greeting {
    name: String,
    ehlo: bool,
}

/// The mail transaction in progress.
#[derive(Debug, Default)]
struct Txn {
    /// MAIL was accepted.
    mail: Option<MailFrom>,
    /// Accepted recipients.
    rcpts: Vec<RcptTo>,
    /// Content so far.
    body: Vec<u8>,
    /// Set by the first accepted BDAT chunk: checks the chunks' lines; DATA and
    /// RCPT are refused from then on.
    chunks: Option<ChunkCheck>,
}

impl Txn {
    fn reset(&mut self) {
        self.mail = None;
        self.rcpts.clear();
        self.body = Vec::new();
        self.chunks = None;
    }
}

/// One client's session.
#[derive(Debug)]
pub struct Session {
    /// The listener's settings.
    cfg: Arc<SessionConfig>,
    /// The client's address.
    peer: IpAddr,
    /// The client is in a network allowed to relay (relay listener).
    trusted_network: bool,
    /// TLS parameters once STARTTLS completed.
    tls: Option<TlsInfo>,
    /// EHLO/HELO, once given.
    helo: Option<Greeting>,
    /// The user, once AUTH succeeded.
    auth: Option<Identity>,
    /// The transaction in progress.
    txn: Txn,
    /// What the input is.
    mode: Mode,
    /// Set while an action is out; `feed` refuses to run meanwhile.
    waiting: Option<Wait>,
    /// An action decided in a report method, returned by the next `feed`.
    queued: Option<Action>,
    /// Bad commands so far.
    errors: u32,
    /// Commands that moved nothing forward.
    junk: u32,
    /// Failed AUTH attempts on this connection.
    auth_failures: u32,
    /// Counts complete command lines and message ends: the connection restarts
    /// its whole-line timer when it moves.
    progress: u64,
    /// The listener is stopping: 421 at the next command.
    shutting_down: bool,
    /// Close was returned; nothing more happens.
    closed: bool,
}

impl Session {
    /// A session for a client at `peer`; `trusted_network`: the client may relay
    /// without AUTH (relay listener, allowed network).
    pub fn new(cfg: Arc<SessionConfig>, peer: IpAddr, trusted_network: bool) -> Session {
        Session {
            cfg,
            peer,
            trusted_network,
            tls: None,
            helo: None,
            auth: None,
            txn: Txn::default(),
            mode: Mode::Command,
            waiting: None,
            queued: None,
            errors: 0,
            junk: 0,
            auth_failures: 0,
            progress: 0,
            shutting_down: false,
            closed: false,
        }
    }

    /// Appends the 220 banner.
    pub fn banner(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "220 {} ESMTP Volley\r\n", self.cfg.hostname);
    }

    /// Which timeout applies to the next read.
    pub fn phase(&self) -> Phase {
        match self.mode {
            Mode::Data(_) | Mode::Bdat { .. } => Phase::Data,
            _ => Phase::Command,
        }
    }

    /// Moves whenever a command line or a message end was consumed.
    pub fn progress(&self) -> u64 {
        self.progress
    }

    /// The authenticated user, if any.
    pub fn identity(&self) -> Option<&Identity> {
        self.auth.as_ref()
    }

    /// Whether TLS is active.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The listener is stopping: the next command (or the current wait for one)
    /// gets 421 4.3.2 and the connection closes; message data being read is
    /// finished first.
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// Whether [`Session::feed`] would now answer 421 and close (the listener is
    /// stopping and no message is in the middle of arriving).
    pub fn at_shutdown_point(&self) -> bool {
        self.shutting_down && self.phase() == Phase::Command && self.waiting.is_none()
    }

    /// A timeout ran out: appends 421 4.4.2; the connection closes.
    pub fn timed_out(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(TIMEOUT);
        self.closed = true;
    }

    /// Consumes what it can of `input`, appending replies to `out`. Returns how
    /// many bytes were consumed and what to do next.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Action) {
        if let Some(action) = self.queued.take() {
            return (0, action);
        }
        if self.closed || self.waiting.is_some() {
            // The connection did not report back: nothing safe to do but close.
            self.closed = true;
            return (0, Action::Close);
        }
        let mut pos = 0;
        loop {
            if self.at_shutdown_point() {
                out.extend_from_slice(SHUTTING_DOWN);
                return (pos, self.close());
            }
            let rest = &input[pos..];
            let action = match &mut self.mode {
                Mode::Command
                | Mode::AuthPlain
                | Mode::AuthLoginUser
                | Mode::AuthLoginPassword { .. } => {
                    match next_line(rest, MAX_COMMAND_LINE_WITH_PARAMS) {
                        Line::Complete(n) => {
                            pos += n;
                            self.progress += 1;
                            let line = &rest[..n];
                            self.on_line(line, out)
                        }
                        Line::Incomplete => return (pos, Action::Read),
                        Line::TooLong => {
                            out.extend_from_slice(COMMAND_TOO_LONG);
                            // An AUTH exchange ends with it.
                            self.mode = Mode::Discard;
                            self.error(out)
                        }
                    }
                }
                Mode::Discard => match memchr::memmem::find(rest, b"\r\n") {
                    Some(i) => {
                        pos += i + 2;
                        self.progress += 1;
                        self.mode = Mode::Command;
                        None
                    }
                    None => {
                        // Keep a trailing CR: it may pair with the next read's LF.
                        pos += rest.len() - usize::from(rest.last() == Some(&b'\r'));
                        return (pos, Action::Read);
                    }
                },
                Mode::Data(reader) => {
                    if rest.is_empty() {
                        return (pos, Action::Read);
                    }
                    let body = &mut self.txn.body;
                    match reader.feed(rest, |content| body.extend_from_slice(content)) {
                        Ok(DataProgress::NeedMore) => return (input.len(), Action::Read),
                        Ok(DataProgress::Done { consumed, result }) => {
                            pos += consumed;
                            self.progress += 1;
                            self.mode = Mode::Command;
                            self.end_of_data(result, out)
                        }
                        Err(_) => {
                            // Bare line endings or a smuggling-shaped end: where the
                            // client meant the data to end is unknowable.
                            self.txn.reset();
                            self.mode = Mode::Command;
                            out.extend_from_slice(BAD_DATA_CLOSE);
                            return (input.len(), self.close());
                        }
                    }
                }
                Mode::Bdat {
                    size,
                    remaining,
                    last,
                    refuse,
                } => {
                    let take = (*remaining).min(rest.len() as u64) as usize;
                    if refuse.is_none() {
                        let piece = &rest[..take];
                        self.txn.body.extend_from_slice(piece);
                        if let Some(check) = self.txn.chunks.as_mut() {
                            check.feed(piece);
                        }
                    }
                    pos += take;
                    *remaining -= take as u64;
                    if *remaining > 0 {
                        return (pos, Action::Read);
                    }
                    let (size, last, refuse) = (*size, *last, *refuse);
                    self.progress += 1;
                    self.mode = Mode::Command;
                    self.end_of_chunk(size, last, refuse, out)
                }
            };
            if let Some(action) = action {
                return (pos, action);
            }
        }
    }

    /// Reports the TLS handshake done: the session starts over (RFC 3207 4.2: no
    /// EHLO, no AUTH, no transaction carried across).
    pub fn tls_started(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.helo = None;
        self.auth = None;
        self.txn.reset();
        self.mode = Mode::Command;
        self.waiting = None;
    }

    /// Reports the lockout check for the pending AUTH.
    pub fn auth_gate(&mut self, locked: bool, out: &mut Vec<u8>) {
        let Some(Wait::Gate(start)) = self.waiting.take() else {
            return;
        };
        if locked {
            out.extend_from_slice(AUTH_LOCKED);
            return;
        }
        let response = start.initial_response.as_deref().map(str::as_bytes);
        self.queued = match (&start.mechanism, response) {
            (AuthMechanism::Plain, None) => {
                out.extend_from_slice(AUTH_PLAIN_GO);
                self.mode = Mode::AuthPlain;
                None
            }
            (AuthMechanism::Plain, Some(r)) => self.plain_response(r, out),
            (AuthMechanism::Login, None) => {
                out.extend_from_slice(LOGIN_USERNAME);
                self.mode = Mode::AuthLoginUser;
                None
            }
            (AuthMechanism::Login, Some(r)) => self.login_username(r, out),
            // Refused before the gate.
            _ => {
                out.extend_from_slice(AUTH_UNKNOWN_MECHANISM);
                None
            }
        };
    }

    /// Reports the password verification.
    pub fn auth_verified(&mut self, outcome: AuthOutcome, out: &mut Vec<u8>) {
        let Some(Wait::Verify(username)) = self.waiting.take() else {
            return;
        };
        match outcome {
            AuthOutcome::Accepted { tenant } => {
                self.auth = Some(Identity { username, tenant });
                out.extend_from_slice(AUTH_OK);
            }
            AuthOutcome::Rejected => self.queued = self.auth_rejected(out),
            AuthOutcome::Locked => out.extend_from_slice(AUTH_LOCKED),
            AuthOutcome::Unavailable => out.extend_from_slice(AUTH_TEMPORARY),
        }
    }

    /// Reports the spool's answer for the message of [`Action::Store`].
    pub fn stored(&mut self, outcome: StoreOutcome, out: &mut Vec<u8>) {
        if !matches!(self.waiting.take(), Some(Wait::Store)) {
            return;
        }
        match outcome {
            StoreOutcome::Queued(id) => {
                let _ = write!(out, "250 2.0.0 Ok: queued as {id}\r\n");
            }
            StoreOutcome::TryLater => out.extend_from_slice(STORE_TRY_LATER),
            StoreOutcome::Refused => out.extend_from_slice(STORE_REFUSED),
        }
    }

    fn close(&mut self) -> Action {
        self.closed = true;
        Action::Close
    }

    /// Counts a bad command; too many close the connection.
    fn error(&mut self, out: &mut Vec<u8>) -> Option<Action> {
        self.errors += 1;
        if self.errors > MAX_ERRORS {
            out.extend_from_slice(TOO_MANY_ERRORS);
            return Some(self.close());
        }
        None
    }

    /// Writes a refusal that counts as an error.
    fn refuse(&mut self, out: &mut Vec<u8>, reply: &[u8]) -> Option<Action> {
        out.extend_from_slice(reply);
        self.error(out)
    }

    /// Writes the reply to a command that moves nothing forward.
    fn junk(&mut self, out: &mut Vec<u8>, reply: &[u8]) -> Option<Action> {
        out.extend_from_slice(reply);
        self.junk += 1;
        if self.junk > MAX_JUNK {
            out.extend_from_slice(TOO_MANY_ERRORS);
            return Some(self.close());
        }
        None
    }

    fn on_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Option<Action> {
        let line = line.strip_suffix(b"\r\n").unwrap_or(line);
        match std::mem::replace(&mut self.mode, Mode::Command) {
            Mode::AuthPlain => return self.plain_response(line, out),
            Mode::AuthLoginUser => return self.login_username(line, out),
            Mode::AuthLoginPassword { username } => {
                return self.login_password(username, line, out)
            }
            _ => {}
        }
        let cmd = match Command::parse(line) {
            Ok(cmd) => cmd,
            Err(e) => {
                e.reply().write_to(out);
                return self.error(out);
            }
        };
        match cmd {
            Command::Ehlo(name) => self.greet(name, true, out),
            Command::Helo(name) => self.greet(name, false, out),
            Command::Mail(mail) => self.mail(mail, out),
            Command::Rcpt(rcpt) => self.rcpt(rcpt, out),
            Command::Data => self.data(out),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                self.txn.reset();
                self.junk(out, OK)
            }
            Command::Noop => self.junk(out, OK),
            Command::Vrfy(_) => self.junk(out, VRFY),
            Command::Help => self.junk(out, HELP),
            Command::Quit => {
                out.extend_from_slice(BYE);
                Some(self.close())
            }
            Command::StartTls => self.starttls(out),
            Command::Auth(start) => self.auth(start, out),
        }
    }

    /// Whether AUTH is offered now.
    fn auth_offered(&self) -> bool {
        match self.cfg.role {
            Role::Submission {
                allow_plaintext_auth,
            } => self.tls.is_some() || allow_plaintext_auth,
            Role::Relay => false,
        }
    }

    fn greet(&mut self, name: String, ehlo: bool, out: &mut Vec<u8>) -> Option<Action> {
        self.txn.reset();
        self.helo = Some(Greeting { name, ehlo });
        if !ehlo {
            let _ = write!(out, "250 {}\r\n", self.cfg.hostname);
            return None;
        }
        let caps = Capabilities {
            greeting: self.cfg.hostname.clone(),
            pipelining: true,
            chunking: true,
            binary_mime: false,
            size: Some(self.cfg.max_message_size as u64),
            eight_bit_mime: true,
            smtputf8: true,
            starttls: self.cfg.starttls && self.tls.is_none(),
            enhanced_status_codes: true,
            // Not advertised: Volley passes NOTIFY/ORCPT/RET/ENVID on when a client
            // sends them, but does not yet write delivery status notifications
            // itself, and DSN would promise that.
            dsn: false,
            auth: if self.auth_offered() {
                vec![AuthMechanism::Plain, AuthMechanism::Login]
            } else {
                Vec::new()
            },
        };
        caps.to_ehlo_reply().write_to(out);
        None
    }

    fn mail(&mut self, mail: MailFrom, out: &mut Vec<u8>) -> Option<Action> {
        if self.helo.is_none() {
            return self.refuse(out, NEED_HELO);
        }
        if matches!(self.cfg.role, Role::Submission { .. }) && self.auth.is_none() {
            return self.refuse(out, AUTH_REQUIRED);
        }
        if self.txn.mail.is_some() {
            return self.refuse(out, NESTED_MAIL);
        }
        if mail.body == Some(BodyType::BinaryMime) {
            return self.refuse(out, NO_BINARYMIME);
        }
        if mail
            .size
            .is_some_and(|s| s > self.cfg.max_message_size as u64)
        {
            out.extend_from_slice(TOO_BIG);
            return None;
        }
        self.txn.reset();
        self.txn.mail = Some(mail);
        out.extend_from_slice(SENDER_OK);
        None
    }

    fn rcpt(&mut self, rcpt: RcptTo, out: &mut Vec<u8>) -> Option<Action> {
        let Some(mail) = &self.txn.mail else {
            return self.refuse(out, NEED_MAIL);
        };
        if self.txn.chunks.is_some() {
            return self.refuse(out, AFTER_BDAT);
        }
        if !mail.smtputf8
            && rcpt
                .path
                .mailbox
                .as_ref()
                .is_some_and(|m| m.needs_smtputf8())
        {
            CommandError::Address(AddressError::NeedsSmtpUtf8)
                .reply()
                .write_to(out);
            return self.error(out);
        }
        if self.txn.rcpts.len() >= self.cfg.max_recipients {
            out.extend_from_slice(TOO_MANY_RECIPIENTS);
            return None;
        }
        let may_relay = self.trusted_network || self.auth.is_some();
        if let Err(Refusal(reply)) = check_recipient(&rcpt.path, may_relay, &self.cfg.relay_domains)
        {
            return self.refuse(out, reply);
        }
        self.txn.rcpts.push(rcpt);
        out.extend_from_slice(RCPT_OK);
        None
    }

    fn data(&mut self, out: &mut Vec<u8>) -> Option<Action> {
        if self.txn.mail.is_none() {
            return self.refuse(out, NEED_MAIL);
        }
        if self.txn.chunks.is_some() {
            return self.refuse(out, AFTER_BDAT);
        }
        if self.txn.rcpts.is_empty() {
            return self.refuse(out, NEED_RCPT);
        }
        self.mode = Mode::Data(DataReader::new(DataLimits {
            max_size: self.cfg.max_message_size,
            max_line: Some(self.cfg.max_line_length),
            bare_line_endings: BareLineEndings::Reject,
        }));
        out.extend_from_slice(DATA_GO);
        None
    }

    /// `BDAT size [LAST]`: the chunk is read in any case (to stay in step with the
    /// client); whether it is refused is decided now and said once it is in.
    fn bdat(&mut self, size: u64, last: bool) -> Option<Action> {
        let t = &mut self.txn;
        let refuse = if t.mail.is_none() {
            Some(NEED_MAIL)
        } else if t.rcpts.is_empty() {
            Some(NEED_RCPT)
        } else if (t.body.len() as u64).saturating_add(size) > self.cfg.max_message_size as u64 {
            Some(TOO_BIG)
        } else {
            None
        };
        if refuse.is_none() && t.chunks.is_none() {
            t.chunks = Some(ChunkCheck::new(self.cfg.max_line_length));
        }
        self.mode = Mode::Bdat {
            size,
            remaining: size,
            last,
            refuse,
        };
        None
    }

    fn end_of_chunk(
        &mut self,
        size: u64,
        last: bool,
        refuse: Option<&'static [u8]>,
        out: &mut Vec<u8>,
    ) -> Option<Action> {
        if let Some(reply) = refuse {
            // Later chunks of the same message get 503 (no MAIL): not counted as
            // errors, a pipelining client sends them before it sees this.
            self.txn.reset();
            out.extend_from_slice(reply);
            return None;
        }
        if !last {
            let _ = write!(out, "250 2.0.0 {size} octets received\r\n");
            return None;
        }
        let verdict = self.txn.chunks.as_ref().map_or(Ok(()), ChunkCheck::finish);
        match verdict {
            Ok(()) => Some(self.deliver()),
            Err(e) => {
                self.txn.reset();
                out.extend_from_slice(match e {
                    ChunkError::LineTooLong => DATA_LINE_TOO_LONG,
                    ChunkError::BareLineEnding => BAD_CHUNK_DATA,
                });
                None
            }
        }
    }

    fn end_of_data(&mut self, result: Result<(), DataError>, out: &mut Vec<u8>) -> Option<Action> {
        match result {
            Ok(()) => Some(self.deliver()),
            Err(e) => {
                self.txn.reset();
                out.extend_from_slice(match e {
                    DataError::TooBig => TOO_BIG,
                    DataError::LineTooLong => DATA_LINE_TOO_LONG,
                    // The reader reports these at once, not here.
                    DataError::BareLineEnding | DataError::SmugglingTerminator => BAD_CHUNK_DATA,
                });
                None
            }
        }
    }

    /// Hands the complete message over for storing.
    fn deliver(&mut self) -> Action {
        let rcpts = std::mem::take(&mut self.txn.rcpts);
        let body = std::mem::take(&mut self.txn.body);
        let Some(mail) = self.txn.mail.take() else {
            // Unreachable: DATA and BDAT need MAIL. Refuse rather than panic.
            self.txn.reset();
            return self.close();
        };
        self.txn.reset();
        let greeting = self.helo.clone().unwrap_or(Greeting {
            name: String::new(),
            ehlo: false,
        });
        let tenant = match &self.auth {
            Some(identity) => identity.tenant.clone(),
            None if self.trusted_network => self.cfg.relay_tenant.clone(),
            None => None,
        };
        self.waiting = Some(Wait::Store);
        Action::Store(Box::new(Transaction {
            mail,
            rcpts,
            body,
            helo: greeting.name,
            ehlo: greeting.ehlo,
            peer: self.peer,
            tls: self.tls.clone(),
            identity: self.auth.clone(),
            tenant,
        }))
    }

    fn starttls(&mut self, out: &mut Vec<u8>) -> Option<Action> {
        if !self.cfg.starttls {
            return self.refuse(out, TLS_UNAVAILABLE);
        }
        if self.tls.is_some() {
            return self.refuse(out, TLS_ACTIVE);
        }
        if self.txn.mail.is_some() {
            return self.refuse(out, TLS_IN_TRANSACTION);
        }
        out.extend_from_slice(TLS_GO);
        self.waiting = Some(Wait::Tls);
        Some(Action::StartTls)
    }

    fn auth(&mut self, start: AuthStart, out: &mut Vec<u8>) -> Option<Action> {
        let Role::Submission {
            allow_plaintext_auth,
        } = self.cfg.role
        else {
            return self.refuse(out, AUTH_UNAVAILABLE);
        };
        if self.helo.is_none() {
            return self.refuse(out, NEED_HELO);
        }
        if self.auth.is_some() {
            return self.refuse(out, ALREADY_AUTHENTICATED);
        }
        if self.txn.mail.is_some() {
            return self.refuse(out, AUTH_IN_TRANSACTION);
        }
        if self.tls.is_none() && !allow_plaintext_auth {
            let reply = if self.cfg.starttls {
                ENCRYPTION_REQUIRED
            } else {
                AUTH_UNAVAILABLE
            };
            return self.refuse(out, reply);
        }
        if !matches!(start.mechanism, AuthMechanism::Plain | AuthMechanism::Login) {
            return self.refuse(out, AUTH_UNKNOWN_MECHANISM);
        }
        self.waiting = Some(Wait::Gate(start));
        Some(Action::AuthGate)
    }

    fn plain_response(&mut self, line: &[u8], out: &mut Vec<u8>) -> Option<Action> {
        match sasl::decode_plain(line) {
            Ok(credentials) => Some(self.verify(credentials)),
            Err(e) => self.sasl_error(e, out),
        }
    }

    fn login_username(&mut self, line: &[u8], out: &mut Vec<u8>) -> Option<Action> {
        match sasl::decode_text(line) {
            Ok(username) if !username.is_empty() => {
                out.extend_from_slice(LOGIN_PASSWORD);
                self.mode = Mode::AuthLoginPassword { username };
                None
            }
            Ok(_) => self.sasl_error(SaslError::Undecodable, out),
            Err(e) => self.sasl_error(e, out),
        }
    }

    fn login_password(
        &mut self,
        username: String,
        line: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<Action> {
        match sasl::decode_text(line) {
            Ok(password) => Some(self.verify(Credentials { username, password })),
            Err(e) => self.sasl_error(e, out),
        }
    }

    fn verify(&mut self, credentials: Credentials) -> Action {
        self.waiting = Some(Wait::Verify(credentials.username.clone()));
        Action::Verify(credentials)
    }

    fn sasl_error(&mut self, e: SaslError, out: &mut Vec<u8>) -> Option<Action> {
        match e {
            SaslError::Cancelled => {
                out.extend_from_slice(AUTH_CANCELLED);
                None
            }
            SaslError::Undecodable => self.refuse(out, AUTH_UNDECODABLE),
            SaslError::ForeignAuthzid => self.auth_rejected(out),
        }
    }

    /// A failed AUTH: 535, and after `max_auth_failures` of them 421 and close.
    fn auth_rejected(&mut self, out: &mut Vec<u8>) -> Option<Action> {
        self.auth_failures += 1;
        out.extend_from_slice(AUTH_FAILED);
        if self.auth_failures >= self.cfg.max_auth_failures {
            out.extend_from_slice(AUTH_TOO_MANY);
            return Some(self.close());
        }
        None
    }
}
