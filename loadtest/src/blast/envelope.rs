//! Envelopes: `MAIL FROM` (the same for every message) and `RCPT TO` (unique
//! recipients `u{i}` spread over domains `d{j}.{suffix}`), rendered with
//! `volley::smtp::command`.

use std::fmt::Write as _;

use volley::smtp::address::{AddressError, Domain, Mailbox, Path};
use volley::smtp::command::{Command, MailFrom, RcptTo};
use volley::smtp::ehlo::Capabilities;

/// What every connection needs to render envelopes; shared, read-only.
#[derive(Debug, Clone)]
pub struct EnvelopeSpec {
    /// The reverse-path of every message.
    pub from: Mailbox,
    /// Recipient domains; recipient `r` goes to `domains[r % len]`.
    pub domains: Vec<Domain>,
    /// RCPTs per transaction (at least 1).
    pub rcpts_per_msg: u32,
}

impl EnvelopeSpec {
    /// `count` domains named `d{j}.{suffix}`.
    pub fn new(
        from: Mailbox,
        count: u32,
        suffix: &str,
        rcpts_per_msg: u32,
    ) -> Result<Self, AddressError> {
        let domains = (0..count.max(1))
            .map(|j| Domain::parse(&format!("d{j}.{suffix}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EnvelopeSpec {
            from,
            domains,
            rcpts_per_msg: rcpts_per_msg.max(1),
        })
    }
}

/// Recipient `k` of message `msg` with `per_msg` recipients per message over
/// `domains` domains: its run-wide number (the local part's `i`) and its domain's
/// index.
pub fn recipient(msg: u64, k: u32, per_msg: u32, domains: usize) -> (u64, usize) {
    let r = msg * u64::from(per_msg) + u64::from(k);
    (r, (r % domains as u64) as usize)
}

/// A connection's renderer. Reuses its templates, so a transaction's commands cost
/// no allocation beyond the output buffer's growth.
#[derive(Debug)]
pub struct EnvelopeWriter {
    /// `MAIL FROM:<...> [SIZE=n]\r\n`, rendered once for this server.
    mail: Vec<u8>,
    /// `BDAT n LAST\r\n` for the shared message.
    bdat: Vec<u8>,
    /// One `RCPT` per domain; the local part is rewritten before each use.
    rcpts: Vec<Command>,
    /// Copied from the spec.
    per_msg: u32,
}

impl EnvelopeWriter {
    /// Renders the fixed lines for a server with `caps`; `body_len` is the raw
    /// message size (SIZE= and BDAT's count).
    pub fn new(spec: &EnvelopeSpec, caps: &Capabilities, body_len: u64) -> Self {
        let mut from = MailFrom::new(Path::mailbox(spec.from.clone()));
        if caps.size.is_some() {
            from.size = Some(body_len);
        }
        let mut mail = Vec::new();
        Command::Mail(from).write_to(&mut mail);
        let mut bdat = Vec::new();
        Command::Bdat {
            size: body_len,
            last: true,
        }
        .write_to(&mut bdat);
        let rcpts = spec
            .domains
            .iter()
            .map(|d| {
                let mbox = Mailbox {
                    local: String::with_capacity(24),
                    domain: d.clone(),
                };
                Command::Rcpt(RcptTo::new(Path::mailbox(mbox)))
            })
            .collect();
        EnvelopeWriter {
            mail,
            bdat,
            rcpts,
            per_msg: spec.rcpts_per_msg,
        }
    }

    /// RCPTs per transaction.
    pub fn rcpts_per_msg(&self) -> u32 {
        self.per_msg
    }

    /// Appends `MAIL FROM`.
    pub fn write_mail(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.mail);
    }

    /// Appends `BDAT n LAST`.
    pub fn write_bdat(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bdat);
    }

    /// Appends `RCPT TO` for recipient `k` of message `msg`.
    pub fn write_rcpt(&mut self, msg: u64, k: u32, out: &mut Vec<u8>) {
        let (r, j) = recipient(msg, k, self.per_msg, self.rcpts.len());
        let cmd = &mut self.rcpts[j];
        if let Command::Rcpt(rcpt) = cmd {
            if let Some(m) = rcpt.path.mailbox.as_mut() {
                m.local.clear();
                let _ = write!(m.local, "u{r}");
            }
        }
        cmd.write_to(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(domains: u32, per: u32) -> EnvelopeSpec {
        let from = Mailbox {
            local: "load".into(),
            domain: Domain::Name("volley.test".into()),
        };
        let domains = (0..domains)
            .map(|j| Domain::Name(format!("d{j}.example")))
            .collect();
        EnvelopeSpec {
            from,
            domains,
            rcpts_per_msg: per,
        }
    }

    #[test]
    fn recipients_are_unique_and_spread() {
        assert_eq!(recipient(0, 0, 2, 3), (0, 0));
        assert_eq!(recipient(0, 1, 2, 3), (1, 1));
        assert_eq!(recipient(1, 0, 2, 3), (2, 2));
        assert_eq!(recipient(5, 1, 2, 3), (11, 2));
    }

    /// Needs `Command::write_to` (src/smtp/command.rs).
    #[test]
    fn renders_envelope_lines() {
        let s = spec(2, 2);
        let caps = Capabilities {
            size: Some(0),
            ..Capabilities::default()
        };
        let mut w = EnvelopeWriter::new(&s, &caps, 4096);
        let mut out = Vec::new();
        w.write_mail(&mut out);
        w.write_rcpt(3, 0, &mut out);
        w.write_rcpt(3, 1, &mut out);
        w.write_bdat(&mut out);
        let text = String::from_utf8(out).unwrap().to_ascii_uppercase();
        assert_eq!(
            text,
            "MAIL FROM:<LOAD@VOLLEY.TEST> SIZE=4096\r\nRCPT TO:<U6@D0.EXAMPLE>\r\n\
             RCPT TO:<U7@D1.EXAMPLE>\r\nBDAT 4096 LAST\r\n"
        );
    }
}
