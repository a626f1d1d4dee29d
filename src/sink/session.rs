//! One SMTP session's state machine, without I/O.
//!
//! [`Session::process`] consumes every complete command (and body bytes) in the
//! input buffer and appends the replies to one output buffer; the connection
//! (`conn.rs`) writes that buffer once per batch. It stops early only when the
//! connection has to do something first: wait out an injected delay, close, drop, or
//! start TLS ([`Step`]).
//!
//! Hot-path replies are static byte strings; a MAIL/RCPT costs `Command::parse`'s
//! allocations and nothing else unless `--record` is on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::smtp::command::{next_line, Command, Line, MailFrom, RcptTo};
use crate::smtp::data::{DataError, DataProgress, DataReader};
use crate::smtp::limits::MAX_COMMAND_LINE_WITH_PARAMS;
use sha2::{Digest, Sha256};

use super::faults::{self, Point, Rng};
use super::inbuf::InBuf;
use super::magic::{self, Magic};
use super::record::{hex, now_ts, Entry};
use super::replies::*;
use super::server::{Config, Shared};
use super::stats::Local;

/// Errors (bad commands, bad sequence) tolerated per connection before 421.
const MAX_ERRORS: u32 = 25;

/// What the connection does after [`Session::process`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Go on: process more input (and read when there is none).
    More,
    /// Write what is pending, then close.
    Close,
    /// Write what is pending (earlier replies), then close without the reply the
    /// client is waiting for.
    Drop,
    /// Write what is pending (the 220), discard buffered input, then TLS handshake.
    StartTls,
}

/// [`Next`] with an optional injected delay before the last reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Write `out[..at]`, sleep, then carry on with the rest of `out`.
    pub delay: Option<(usize, Duration)>,
    pub next: Next,
}

impl Step {
    pub const MORE: Step = Step {
        delay: None,
        next: Next::More,
    };

    pub fn is_more(&self) -> bool {
        self.delay.is_none() && self.next == Next::More
    }
}

/// What the session is reading.
#[derive(Debug)]
enum Mode {
    Command,
    /// After a too-long line: skipping to the next CRLF.
    Discard,
    /// DATA content up to the terminator.
    Data(DataReader),
    /// A BDAT chunk: `remaining` bytes still to take; `reject` is the reply to send
    /// once they are in, if the chunk is refused.
    Bdat {
        remaining: u64,
        last: bool,
        reject: Option<&'static [u8]>,
    },
}

/// The mail transaction in progress (reused, not reallocated).
#[derive(Debug, Default)]
struct Txn {
    /// A MAIL was accepted.
    active: bool,
    /// MAIL carried SMTPUTF8.
    smtputf8: bool,
    /// RCPT commands seen (for `--max-rcpts`).
    rcpts_seen: u32,
    /// RCPT commands accepted.
    accepted: u32,
    /// A BDAT chunk was taken: DATA and RCPT are refused now.
    bdat: bool,
    /// BDAT bytes so far.
    size: u64,
    /// End-of-data reply chosen by a `data-NNN@` recipient (highest wins).
    data_code: Option<u16>,
    /// Extra end-of-data delay from `data-delay-MS@`.
    data_delay: u32,
    /// A `disconnect-data@` recipient was accepted.
    disconnect: bool,
    /// Recording only: the reverse-path, accepted recipients and content digest.
    mail_from: String,
    rcpts: Vec<String>,
    hasher: Option<Sha256>,
}

impl Txn {
    fn reset(&mut self) {
        self.active = false;
        self.smtputf8 = false;
        self.rcpts_seen = 0;
        self.accepted = 0;
        self.bdat = false;
        self.size = 0;
        self.data_code = None;
        self.data_delay = 0;
        self.disconnect = false;
        self.mail_from.clear();
        self.rcpts.clear();
        self.hasher = None;
    }
}

/// One client's session.
pub struct Session {
    /// Settings and pre-rendered replies.
    cfg: Arc<Config>,
    /// Process-wide state: tempfail-once memory.
    shared: Arc<Shared>,
    /// Rolls the percentage faults.
    rng: Rng,
    /// The client's address (for the record).
    peer: SocketAddr,
    /// Our address the client connected to (for the record).
    listen: SocketAddr,
    /// STARTTLS completed.
    tls: bool,
    /// The EHLO/HELO argument; `None` until the client greeted.
    helo: Option<String>,
    txn: Txn,
    mode: Mode,
    /// Bad commands so far.
    errors: u32,
    /// Extra delay for the reply being built (from `delay-MS@`).
    extra_ms: u32,
    /// Counts not yet added to the process totals.
    pub counts: Local,
    /// Record lines not yet appended to the record file.
    pub records: Vec<u8>,
}

impl Session {
    pub fn new(
        cfg: Arc<Config>,
        shared: Arc<Shared>,
        rng: Rng,
        peer: SocketAddr,
        listen: SocketAddr,
    ) -> Session {
        Session {
            cfg,
            shared,
            rng,
            peer,
            listen,
            tls: false,
            helo: None,
            txn: Txn::default(),
            mode: Mode::Command,
            errors: 0,
            extra_ms: 0,
            counts: Local::default(),
            records: Vec::new(),
        }
    }

    /// Appends the banner; its delay comes from `--latency banner=MS`.
    pub fn banner(&mut self, out: &mut Vec<u8>) -> Step {
        put(out, &mut self.counts, &self.cfg.banner);
        self.timed(Some(Point::Banner), 0, 0, Next::More)
    }

    /// Appends a 421 for an idle timeout or shutdown.
    pub fn closing(&mut self, out: &mut Vec<u8>, reply: &'static [u8]) {
        put(out, &mut self.counts, reply);
    }

    /// After the TLS handshake: back to the state before EHLO (RFC 3207 4.2).
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.helo = None;
        self.txn.reset();
        self.mode = Mode::Command;
    }

    /// Handles everything complete in `buf`, appending replies to `out`.
    pub fn process(&mut self, buf: &mut InBuf, out: &mut Vec<u8>) -> Step {
        loop {
            let input = &buf.data[buf.pos..];
            let step = match &mut self.mode {
                Mode::Command => {
                    if input.is_empty() {
                        return Step::MORE;
                    }
                    match next_line(input, MAX_COMMAND_LINE_WITH_PARAMS) {
                        Line::Complete(n) => {
                            buf.pos += n;
                            self.on_line(&input[..n], out)
                        }
                        Line::Incomplete => return Step::MORE,
                        Line::TooLong => {
                            put(out, &mut self.counts, LINE_TOO_LONG);
                            self.mode = Mode::Discard;
                            self.error(out)
                        }
                    }
                }
                Mode::Discard => match memchr::memmem::find(input, b"\r\n") {
                    Some(i) => {
                        buf.pos += i + 2;
                        self.mode = Mode::Command;
                        Step::MORE
                    }
                    None => {
                        // Keep a trailing CR: it may pair with the next read's LF.
                        buf.pos += input.len() - usize::from(input.last() == Some(&b'\r'));
                        return Step::MORE;
                    }
                },
                Mode::Data(reader) => {
                    if input.is_empty() {
                        return Step::MORE;
                    }
                    let hasher = &mut self.txn.hasher;
                    let fed = reader.feed(input, |content| {
                        if let Some(h) = hasher.as_mut() {
                            h.update(content);
                        }
                    });
                    match fed {
                        Ok(DataProgress::NeedMore) => {
                            buf.pos += input.len();
                            return Step::MORE;
                        }
                        Ok(DataProgress::Done { consumed, result }) => {
                            buf.pos += consumed;
                            let size = reader.size();
                            self.mode = Mode::Command;
                            self.end_of_message(result, size, 0, out)
                        }
                        Err(_) => {
                            self.mode = Mode::Command;
                            self.txn.reset();
                            put(out, &mut self.counts, BAD_DATA);
                            return Step {
                                delay: None,
                                next: Next::Close,
                            };
                        }
                    }
                }
                Mode::Bdat {
                    remaining,
                    last,
                    reject,
                } => {
                    let take = (*remaining).min(input.len() as u64) as usize;
                    if reject.is_none() {
                        if let Some(h) = self.txn.hasher.as_mut() {
                            h.update(&input[..take]);
                        }
                        self.txn.size += take as u64;
                    }
                    buf.pos += take;
                    *remaining -= take as u64;
                    if *remaining > 0 {
                        return Step::MORE;
                    }
                    let (last, reject) = (*last, *reject);
                    self.mode = Mode::Command;
                    self.end_of_chunk(last, reject, out)
                }
            };
            if !step.is_more() {
                return step;
            }
        }
    }

    /// The delay for a reply to `point` starting at `out[at]`.
    fn timed(&self, point: Option<Point>, extra_ms: u32, at: usize, next: Next) -> Step {
        let ms = point
            .map_or(0, |p| self.cfg.faults.latency.ms(p))
            .saturating_add(extra_ms);
        Step {
            delay: (ms > 0).then(|| (at, faults::ms(ms))),
            next,
        }
    }

    /// Counts a client error; too many close the connection.
    fn error(&mut self, out: &mut Vec<u8>) -> Step {
        self.errors += 1;
        if self.errors > MAX_ERRORS {
            put(out, &mut self.counts, TOO_MANY_ERRORS);
            return Step {
                delay: None,
                next: Next::Close,
            };
        }
        Step::MORE
    }

    fn on_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Step {
        let at = out.len();
        let cmd = match Command::parse(line) {
            Ok(cmd) => cmd,
            Err(e) => {
                let reply = e.reply();
                reply.write_to(out);
                self.counts.reply(reply.code.get());
                return self.error(out);
            }
        };
        let (point, next) = match cmd {
            Command::Ehlo(name) => (Some(Point::Ehlo), self.greet(name, true, out)),
            Command::Helo(name) => (Some(Point::Ehlo), self.greet(name, false, out)),
            Command::Mail(mail) => (Some(Point::Mail), self.mail(mail, out)),
            Command::Rcpt(rcpt) => (Some(Point::Rcpt), self.rcpt(rcpt, out)),
            Command::Data => (Some(Point::Data), self.data(out)),
            Command::Bdat { size, last } => {
                self.bdat(size, last);
                return Step::MORE;
            }
            Command::Rset => {
                self.txn.reset();
                put(out, &mut self.counts, OK);
                (Some(Point::Rset), Next::More)
            }
            Command::Noop => (None, self.put(out, OK)),
            Command::Quit => {
                put(out, &mut self.counts, BYE);
                (Some(Point::Quit), Next::Close)
            }
            Command::StartTls => (None, self.starttls(out)),
            Command::Auth(_) => {
                put(out, &mut self.counts, NO_AUTH);
                return self.error(out);
            }
            Command::Vrfy(_) => (None, self.put(out, VRFY)),
            Command::Help => (None, self.put(out, HELP)),
        };
        let extra = std::mem::take(&mut self.extra_ms);
        self.timed(point, extra, at, next)
    }

    fn put(&mut self, out: &mut Vec<u8>, reply: &[u8]) -> Next {
        put(out, &mut self.counts, reply);
        Next::More
    }

    /// A refusal for a command out of sequence (counts as an error).
    fn refuse(&mut self, out: &mut Vec<u8>, reply: &[u8]) -> Next {
        put(out, &mut self.counts, reply);
        self.error(out).next
    }

    fn greet(&mut self, name: String, ehlo: bool, out: &mut Vec<u8>) -> Next {
        self.txn.reset();
        self.helo = Some(name);
        let cfg = &self.cfg;
        let reply = match (ehlo, cfg.tls.is_some() && !self.tls) {
            (false, _) => &cfg.helo,
            (true, false) => &cfg.ehlo,
            (true, true) => &cfg.ehlo_starttls,
        };
        put(out, &mut self.counts, reply);
        Next::More
    }

    fn mail(&mut self, mail: MailFrom, out: &mut Vec<u8>) -> Next {
        if self.helo.is_none() {
            return self.refuse(out, NEED_HELO);
        }
        if self.txn.active {
            return self.refuse(out, NESTED_MAIL);
        }
        if mail.size.is_some_and(|s| s > self.cfg.max_size) {
            return self.put(out, TOO_BIG);
        }
        self.txn.reset();
        self.txn.active = true;
        self.txn.smtputf8 = mail.smtputf8;
        if self.cfg.record {
            if let Some(m) = &mail.path.mailbox {
                use std::fmt::Write;
                let _ = write!(self.txn.mail_from, "{m}");
            }
        }
        self.put(out, MAIL_OK)
    }

    fn rcpt(&mut self, rcpt: RcptTo, out: &mut Vec<u8>) -> Next {
        if !self.txn.active {
            return self.refuse(out, NEED_MAIL);
        }
        if self.txn.bdat {
            return self.refuse(out, AFTER_BDAT);
        }
        let Some(mailbox) = rcpt.path.mailbox else {
            return self.refuse(out, NO_RCPT_PATH);
        };
        if self.txn.rcpts_seen >= self.cfg.max_rcpts {
            return self.put(out, TOO_MANY_RCPTS);
        }
        self.txn.rcpts_seen += 1;
        if mailbox.needs_smtputf8() && !self.txn.smtputf8 {
            return self.put(out, NEEDS_UTF8);
        }
        match Magic::parse(&mailbox.local) {
            Magic::None => {
                let f = &self.cfg.faults;
                if self.rng.roll(f.rcpt_permfail) {
                    return self.put(out, RCPT_PERMFAIL);
                }
                if self.rng.roll(f.rcpt_tempfail) {
                    return self.put(out, RCPT_TEMPFAIL);
                }
            }
            Magic::Code(code) => {
                magic::write_reply(code, "Recipient refused", out);
                self.counts.reply(code);
                return if code == 421 { Next::Close } else { Next::More };
            }
            Magic::Disconnect421 => {
                put(out, &mut self.counts, DISCONNECT_421);
                return Next::Close;
            }
            Magic::DisconnectRcpt => return Next::Drop,
            Magic::Delay(ms) => self.extra_ms = ms,
            Magic::DataCode(code) => {
                self.txn.data_code = Some(self.txn.data_code.map_or(code, |c| c.max(code)));
            }
            Magic::DataDelay(ms) => self.txn.data_delay = self.txn.data_delay.max(ms),
            Magic::DisconnectData => self.txn.disconnect = true,
            Magic::TempfailOnce => {
                let key = mailbox.to_string().to_ascii_lowercase();
                let first = self
                    .shared
                    .tempfail_seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key);
                if first {
                    return self.put(out, RCPT_TEMPFAIL_ONCE);
                }
            }
        }
        self.txn.accepted += 1;
        if self.cfg.record {
            self.txn.rcpts.push(mailbox.to_string());
        }
        self.put(out, RCPT_OK)
    }

    fn data(&mut self, out: &mut Vec<u8>) -> Next {
        if !self.txn.active {
            return self.refuse(out, NEED_MAIL);
        }
        if self.txn.bdat {
            return self.refuse(out, AFTER_BDAT);
        }
        if self.txn.accepted == 0 {
            return self.put(out, NEED_RCPT);
        }
        if self.cfg.record {
            self.txn.hasher = Some(Sha256::new());
        }
        self.mode = Mode::Data(DataReader::new(self.cfg.data_limits));
        self.put(out, DATA_GO)
    }

    /// `BDAT size [LAST]`: the chunk is always read (to stay in sync); whether it
    /// is refused is decided now and said once it is in.
    fn bdat(&mut self, size: u64, last: bool) {
        let t = &mut self.txn;
        let reject = if !t.active {
            Some(NEED_MAIL)
        } else if t.accepted == 0 {
            Some(NEED_RCPT)
        } else if t.size.saturating_add(size) > self.cfg.max_size {
            Some(TOO_BIG)
        } else {
            None
        };
        if reject.is_none() && !t.bdat {
            t.bdat = true;
            if self.cfg.record {
                t.hasher = Some(Sha256::new());
            }
        }
        self.mode = Mode::Bdat {
            remaining: size,
            last,
            reject,
        };
    }

    fn end_of_chunk(
        &mut self,
        last: bool,
        reject: Option<&'static [u8]>,
        out: &mut Vec<u8>,
    ) -> Step {
        let at = out.len();
        if let Some(reply) = reject {
            self.txn.reset();
            put(out, &mut self.counts, reply);
            return self.timed(Some(Point::Bdat), 0, at, Next::More);
        }
        if !last {
            put(out, &mut self.counts, CHUNK_OK);
            return self.timed(Some(Point::Bdat), 0, at, Next::More);
        }
        let size = self.txn.size;
        self.end_of_message(Ok(()), size, self.cfg.faults.latency.ms(Point::Bdat), out)
    }

    /// The message is in (DATA terminator or last BDAT chunk): accept it or apply
    /// the faults asked for.
    fn end_of_message(
        &mut self,
        result: Result<(), DataError>,
        size: u64,
        extra_ms: u32,
        out: &mut Vec<u8>,
    ) -> Step {
        let at = out.len();
        let extra_ms = extra_ms.saturating_add(self.txn.data_delay);
        if result.is_err() {
            // Only TooBig/LineTooLong arrive here; the others stop the reader at once.
            self.txn.reset();
            put(out, &mut self.counts, TOO_BIG);
            return self.timed(Some(Point::Dot), extra_ms, at, Next::More);
        }
        let f = &self.cfg.faults;
        if self.txn.disconnect || self.rng.roll(f.disconnect) {
            self.txn.reset();
            return Step {
                delay: None,
                next: Next::Drop,
            };
        }
        let code = match self.txn.data_code {
            Some(code) => code,
            None if self.rng.roll(f.data_permfail) => 554,
            None if self.rng.roll(f.data_tempfail) => 451,
            None => 250,
        };
        let mut next = Next::More;
        match code {
            250 if self.txn.data_code.is_none() => put(out, &mut self.counts, MESSAGE_OK),
            554 if self.txn.data_code.is_none() => put(out, &mut self.counts, DATA_PERMFAIL),
            451 if self.txn.data_code.is_none() => put(out, &mut self.counts, DATA_TEMPFAIL),
            c => {
                magic::write_reply(c, "End of data", out);
                self.counts.reply(c);
                if c == 421 {
                    next = Next::Close;
                }
            }
        }
        if code / 100 == 2 {
            self.accept(size);
        }
        self.txn.reset();
        self.timed(Some(Point::Dot), extra_ms, at, next)
    }

    fn accept(&mut self, size: u64) {
        self.counts.messages += 1;
        self.counts.recipients += self.txn.accepted as u64;
        self.counts.bytes += size;
        if let Some(h) = self.txn.hasher.take() {
            let digest = hex(&h.finalize());
            Entry {
                mail_from: &self.txn.mail_from,
                rcpts: &self.txn.rcpts,
                size,
                sha256: &digest,
                tls: self.tls,
                helo: self.helo.as_deref().unwrap_or(""),
                peer: self.peer,
                listen: self.listen,
                ts: now_ts(),
            }
            .write_line(&mut self.records);
        }
    }

    fn starttls(&mut self, out: &mut Vec<u8>) -> Next {
        if self.cfg.tls.is_none() {
            return self.refuse(out, NO_TLS);
        }
        if self.tls {
            return self.refuse(out, TLS_AGAIN);
        }
        put(out, &mut self.counts, TLS_GO);
        Next::StartTls
    }
}
