//! The binary encoding of spool records: hand-written, versioned, compact.
//!
//! Every record starts with a format version byte. Integers are LEB128 varints,
//! strings are a varint length then UTF-8 bytes, options a 0/1 byte then the value.
//! Decoding never panics: truncated, overlong, non-UTF-8, unknown-tag or trailing
//! bytes are a [`DecodeError`], so a corrupt record is reported, not a crash.
//!
//! Formats (version 1):
//! - meta: `1, id[16], tenant?, campaign?, created, expires, reverse_path,
//!   body_type?, smtputf8, ret?, envid?, body_len, n_tags, (key, value)*, n_rcpts,
//!   (address, domain, notify_bits, orcpt?(type, address))*`
//! - status: `1, tag, ...` with tag 0 Scheduled, 1 Delivered,
//!   2 Deferred(attempts, next_due, code, text), 3 Bounced(code, text), 4 Expired,
//!   5 Purged.
//! - completed: `1, id[16], tenant?, campaign?, created, expires, n_rcpts,
//!   (address, domain, status without its version byte)*`
//! - counters: `1, messages, recipients, delivered, bounced, expired, purged` as
//!   u64 little-endian words, then the tenant's UTF-8 bytes to the end (none: no
//!   tenant). Fixed words so the merge operator adds records without re-encoding.

use thiserror::Error;

use super::completion::{CampaignCounters, CompletedMessage};
use super::id::MessageId;
use super::message::{
    BodyType, CampaignId, DsnNotify, DsnRequest, DsnReturn, Envelope, MessageMeta,
    OriginalRecipient, Recipient, TenantId,
};
use super::status::{RecipientStatus, StoredReply};
use super::time::Timestamp;

/// The record format this code writes.
const VERSION: u8 = 1;

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("record truncated")]
    Truncated,
    #[error("unknown record format version {0}")]
    UnknownVersion(u8),
    #[error("varint too long")]
    VarintOverflow,
    #[error("{0} out of range")]
    OutOfRange(&'static str),
    #[error("invalid UTF-8 in {0}")]
    BadUtf8(&'static str),
    #[error("unknown {what} tag {tag}")]
    BadTag { what: &'static str, tag: u8 },
    #[error("{0} trailing bytes after record")]
    TrailingBytes(usize),
}

/// Appends encoded values to a buffer.
struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
            None => self.u8(0),
        }
    }
}

/// Reads encoded values from a byte slice, failing on anything malformed.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.buf.split_first().ok_or(DecodeError::Truncated)?;
        self.buf = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = (b & 0x7f) as u64;
            if shift == 63 && bits > 1 {
                return Err(DecodeError::VarintOverflow);
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::VarintOverflow)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        u16::try_from(self.varint()?).map_err(|_| DecodeError::OutOfRange(what))
    }

    fn len(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        // A length can never exceed the bytes left: refuse before allocating.
        if n > self.buf.len() as u64 {
            return Err(if n > u32::MAX as u64 {
                DecodeError::OutOfRange(what)
            } else {
                DecodeError::Truncated
            });
        }
        Ok(n as usize)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn str(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let n = self.len(what)?;
        let b = self.bytes(n)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError::BadUtf8(what))
    }

    fn flag(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::BadTag { what, tag }),
        }
    }

    fn opt_str(&mut self, what: &'static str) -> Result<Option<String>, DecodeError> {
        if self.flag(what)? {
            self.str(what).map(Some)
        } else {
            Ok(None)
        }
    }

    fn version(&mut self) -> Result<(), DecodeError> {
        match self.u8()? {
            VERSION => Ok(()),
            v => Err(DecodeError::UnknownVersion(v)),
        }
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

fn body_type_tag(b: Option<BodyType>) -> u8 {
    match b {
        None => 0,
        Some(BodyType::SevenBit) => 1,
        Some(BodyType::EightBitMime) => 2,
        Some(BodyType::BinaryMime) => 3,
    }
}

fn ret_tag(r: Option<DsnReturn>) -> u8 {
    match r {
        None => 0,
        Some(DsnReturn::Full) => 1,
        Some(DsnReturn::Headers) => 2,
    }
}

fn notify_bits(n: DsnNotify) -> u8 {
    n.never as u8 | (n.success as u8) << 1 | (n.failure as u8) << 2 | (n.delay as u8) << 3
}

/// Appends the meta record of `m` to `out`.
pub fn encode_meta(m: &MessageMeta, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.u8(VERSION);
    w.0.extend_from_slice(&m.id.to_bytes());
    w.opt_str(m.tenant.as_ref().map(|t| t.0.as_str()));
    w.opt_str(m.campaign.as_ref().map(|c| c.0.as_str()));
    w.varint(m.created.0);
    w.varint(m.expires.0);
    let e = &m.envelope;
    w.str(&e.reverse_path);
    w.u8(body_type_tag(e.body_type));
    w.u8(e.smtputf8 as u8);
    w.u8(ret_tag(e.dsn.ret));
    w.opt_str(e.dsn.envid.as_deref());
    w.varint(m.body_len);
    w.varint(m.tags.len() as u64);
    for (k, v) in &m.tags {
        w.str(k);
        w.str(v);
    }
    w.varint(e.recipients.len() as u64);
    for r in &e.recipients {
        w.str(&r.address);
        w.str(&r.domain);
        w.u8(notify_bits(r.notify));
        match &r.orcpt {
            Some(o) => {
                w.u8(1);
                w.str(&o.addr_type);
                w.str(&o.address);
            }
            None => w.u8(0),
        }
    }
}

/// Decodes a meta record written by [`encode_meta`].
pub fn decode_meta(bytes: &[u8]) -> Result<MessageMeta, DecodeError> {
    let mut r = Reader { buf: bytes };
    r.version()?;
    let id = MessageId::from_bytes(
        r.bytes(16)?
            .try_into()
            .map_err(|_| DecodeError::Truncated)?,
    );
    let tenant = r.opt_str("tenant")?.map(TenantId);
    let campaign = r.opt_str("campaign")?.map(CampaignId);
    let created = Timestamp(r.varint()?);
    let expires = Timestamp(r.varint()?);
    let reverse_path = r.str("reverse path")?;
    let body_type = match r.u8()? {
        0 => None,
        1 => Some(BodyType::SevenBit),
        2 => Some(BodyType::EightBitMime),
        3 => Some(BodyType::BinaryMime),
        tag => {
            return Err(DecodeError::BadTag {
                what: "body type",
                tag,
            })
        }
    };
    let smtputf8 = r.flag("smtputf8")?;
    let ret = match r.u8()? {
        0 => None,
        1 => Some(DsnReturn::Full),
        2 => Some(DsnReturn::Headers),
        tag => return Err(DecodeError::BadTag { what: "ret", tag }),
    };
    let envid = r.opt_str("envid")?;
    let body_len = r.varint()?;
    // Each tag takes at least 2 bytes, each recipient at least 4: bound the
    // capacity by what is left so a corrupt count cannot allocate gigabytes.
    let n_tags = r.len("tag count")?;
    let mut tags = Vec::with_capacity(n_tags.min(r.buf.len() / 2));
    for _ in 0..n_tags {
        tags.push((r.str("tag key")?, r.str("tag value")?));
    }
    let n_rcpts = r.len("recipient count")?;
    if n_rcpts > u32::MAX as usize {
        return Err(DecodeError::OutOfRange("recipient count"));
    }
    let mut recipients = Vec::with_capacity(n_rcpts.min(r.buf.len() / 4));
    for _ in 0..n_rcpts {
        let address = r.str("recipient")?;
        let domain = r.str("domain")?;
        let bits = r.u8()?;
        if bits > 0x0f {
            return Err(DecodeError::BadTag {
                what: "notify",
                tag: bits,
            });
        }
        let notify = DsnNotify {
            never: bits & 1 != 0,
            success: bits & 2 != 0,
            failure: bits & 4 != 0,
            delay: bits & 8 != 0,
        };
        let orcpt = if r.flag("orcpt")? {
            Some(OriginalRecipient {
                addr_type: r.str("orcpt type")?,
                address: r.str("orcpt")?,
            })
        } else {
            None
        };
        recipients.push(Recipient {
            address,
            domain,
            notify,
            orcpt,
        });
    }
    r.finish()?;
    Ok(MessageMeta {
        id,
        tenant,
        campaign,
        created,
        expires,
        envelope: Envelope {
            reverse_path,
            recipients,
            body_type,
            smtputf8,
            dsn: DsnRequest { ret, envid },
        },
        body_len,
        tags,
    })
}

/// Appends the status record of `s` to `out`.
pub fn encode_status(s: &RecipientStatus, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.u8(VERSION);
    write_status(&mut w, s);
}

fn write_status(w: &mut Writer<'_>, s: &RecipientStatus) {
    match s {
        RecipientStatus::Scheduled => w.u8(0),
        RecipientStatus::Delivered => w.u8(1),
        RecipientStatus::Deferred {
            attempts,
            next_due,
            last_reply,
        } => {
            w.u8(2);
            w.varint(*attempts as u64);
            w.varint(next_due.0);
            w.varint(last_reply.code as u64);
            w.str(&last_reply.text);
        }
        RecipientStatus::Bounced(reply) => {
            w.u8(3);
            w.varint(reply.code as u64);
            w.str(&reply.text);
        }
        RecipientStatus::Expired => w.u8(4),
        RecipientStatus::Purged => w.u8(5),
    }
}

/// Decodes a status record written by [`encode_status`].
pub fn decode_status(bytes: &[u8]) -> Result<RecipientStatus, DecodeError> {
    let mut r = Reader { buf: bytes };
    r.version()?;
    let status = read_status(&mut r)?;
    r.finish()?;
    Ok(status)
}

fn read_status(r: &mut Reader<'_>) -> Result<RecipientStatus, DecodeError> {
    Ok(match r.u8()? {
        0 => RecipientStatus::Scheduled,
        1 => RecipientStatus::Delivered,
        2 => {
            let attempts = r.u16("attempts")?;
            let next_due = Timestamp(r.varint()?);
            let code = r.u16("reply code")?;
            let text = r.str("reply")?;
            RecipientStatus::Deferred {
                attempts,
                next_due,
                last_reply: StoredReply { code, text },
            }
        }
        3 => {
            let code = r.u16("reply code")?;
            RecipientStatus::Bounced(StoredReply {
                code,
                text: r.str("reply")?,
            })
        }
        4 => RecipientStatus::Expired,
        5 => RecipientStatus::Purged,
        tag => {
            return Err(DecodeError::BadTag {
                what: "status",
                tag,
            })
        }
    })
}

/// Appends the completion record of `c` to `out`.
pub fn encode_completed(c: &CompletedMessage, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.u8(VERSION);
    w.0.extend_from_slice(&c.id.to_bytes());
    w.opt_str(c.tenant.as_ref().map(|t| t.0.as_str()));
    w.opt_str(c.campaign.as_ref().map(|c| c.0.as_str()));
    w.varint(c.created.0);
    w.varint(c.expires.0);
    w.varint(c.recipients.len() as u64);
    for (address, domain, status) in &c.recipients {
        w.str(address);
        w.str(domain);
        write_status(&mut w, status);
    }
}

/// Decodes a completion record written by [`encode_completed`].
pub fn decode_completed(bytes: &[u8]) -> Result<CompletedMessage, DecodeError> {
    let mut r = Reader { buf: bytes };
    r.version()?;
    let id = MessageId::from_bytes(
        r.bytes(16)?
            .try_into()
            .map_err(|_| DecodeError::Truncated)?,
    );
    let tenant = r.opt_str("tenant")?.map(TenantId);
    let campaign = r.opt_str("campaign")?.map(CampaignId);
    let created = Timestamp(r.varint()?);
    let expires = Timestamp(r.varint()?);
    let n = r.len("recipient count")?;
    // Each recipient takes at least 3 bytes: bound the capacity by what is left.
    let mut recipients = Vec::with_capacity(n.min(r.buf.len() / 3));
    for _ in 0..n {
        let address = r.str("recipient")?;
        let domain = r.str("domain")?;
        recipients.push((address, domain, read_status(&mut r)?));
    }
    r.finish()?;
    Ok(CompletedMessage {
        id,
        tenant,
        campaign,
        created,
        expires,
        recipients,
    })
}

/// Appends the counters record (or delta) `c` to `out`: version, the six counts
/// as fixed 8-byte little-endian words (so adding two records needs no varint
/// work), then the tenant's bytes (possibly none).
pub fn encode_counters(c: &CampaignCounters, out: &mut Vec<u8>) {
    out.push(VERSION);
    for v in c.fields() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    if let Some(t) = &c.tenant {
        out.extend_from_slice(t.0.as_bytes());
    }
}

/// Decodes a counters record written by [`encode_counters`].
pub fn decode_counters(bytes: &[u8]) -> Result<CampaignCounters, DecodeError> {
    let mut r = Reader { buf: bytes };
    r.version()?;
    let mut f = [0u64; 6];
    for v in &mut f {
        let word: [u8; 8] = r.bytes(8)?.try_into().map_err(|_| DecodeError::Truncated)?;
        *v = u64::from_le_bytes(word);
    }
    let tenant = match r.buf {
        [] => None,
        rest => Some(TenantId(
            std::str::from_utf8(rest)
                .map_err(|_| DecodeError::BadUtf8("tenant"))?
                .to_owned(),
        )),
    };
    Ok(CampaignCounters::from_fields(tenant, f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::message::tests::sample;

    fn meta() -> MessageMeta {
        let mut m = sample(
            MessageId(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
            Some("spring"),
            &["a@x.org", "ünï@例え.jp", "c@y.org"],
        );
        m.envelope.recipients[0].notify = DsnNotify {
            failure: true,
            delay: true,
            ..Default::default()
        };
        m.envelope.recipients[2].orcpt = Some(OriginalRecipient {
            addr_type: "rfc822".into(),
            address: "old@y.org".into(),
        });
        m
    }

    fn statuses() -> Vec<RecipientStatus> {
        let reply = StoredReply {
            code: 451,
            text: "4.7.1 greylisted\nline 2".into(),
        };
        vec![
            RecipientStatus::Scheduled,
            RecipientStatus::Delivered,
            RecipientStatus::Deferred {
                attempts: 7,
                next_due: Timestamp(u64::MAX),
                last_reply: reply.clone(),
            },
            RecipientStatus::Bounced(StoredReply {
                code: 550,
                text: String::new(),
            }),
            RecipientStatus::Expired,
            RecipientStatus::Purged,
        ]
    }

    #[test]
    fn meta_round_trips() {
        for m in [meta(), sample(MessageId(1), None, &["only@one.example"])] {
            let mut buf = Vec::new();
            encode_meta(&m, &mut buf);
            assert_eq!(decode_meta(&buf), Ok(m));
        }
    }

    #[test]
    fn status_round_trips_compactly() {
        for s in statuses() {
            let mut buf = Vec::new();
            encode_status(&s, &mut buf);
            assert_eq!(decode_status(&buf), Ok(s.clone()));
            if !matches!(
                s,
                RecipientStatus::Deferred { .. } | RecipientStatus::Bounced(_)
            ) {
                assert_eq!(buf.len(), 2);
            }
        }
    }

    #[test]
    fn completion_and_counters_round_trip() {
        let m = meta();
        let done = CompletedMessage::new(&m, statuses().into_iter().map(Some).collect());
        let mut buf = Vec::new();
        encode_completed(&done, &mut buf);
        assert_eq!(decode_completed(&buf), Ok(done));
        for cut in 0..buf.len() {
            assert!(decode_completed(&buf[..cut]).is_err(), "cut at {cut}");
        }
        for tenant in [None, Some(TenantId("acme".into()))] {
            let c = CampaignCounters {
                tenant,
                messages: 1,
                recipients: u64::MAX,
                purged: 7,
                ..Default::default()
            };
            let mut buf = Vec::new();
            encode_counters(&c, &mut buf);
            assert_eq!(decode_counters(&buf), Ok(c));
            assert!(decode_counters(&buf[..40]).is_err());
        }
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        let mut records = Vec::new();
        let mut buf = Vec::new();
        encode_meta(&meta(), &mut buf);
        records.push((buf, true));
        for s in statuses() {
            let mut buf = Vec::new();
            encode_status(&s, &mut buf);
            records.push((buf, false));
        }
        for (buf, is_meta) in records {
            let decode = |b: &[u8]| {
                if is_meta {
                    decode_meta(b).map(drop)
                } else {
                    decode_status(b).map(drop)
                }
            };
            for cut in 0..buf.len() {
                assert!(decode(&buf[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = buf.clone();
            longer.push(0);
            assert_eq!(decode(&longer), Err(DecodeError::TrailingBytes(1)));
        }
    }

    #[test]
    fn corrupt_bytes_never_panic() {
        let mut buf = Vec::new();
        encode_meta(&meta(), &mut buf);
        // Flip every byte to every interesting value: decoding returns, never panics.
        for i in 0..buf.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut b = buf.clone();
                b[i] = v;
                let _ = decode_meta(&b);
                let _ = decode_status(&b[i..]);
            }
        }
        assert_eq!(decode_status(&[2, 0]), Err(DecodeError::UnknownVersion(2)));
        assert_eq!(
            decode_status(&[1, 9]),
            Err(DecodeError::BadTag {
                what: "status",
                tag: 9
            })
        );
        assert_eq!(
            decode_status(&[1, 2, 0xff, 0xff, 0x7f]),
            Err(DecodeError::OutOfRange("attempts"))
        );
        let overlong = [
            1, 2, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
        ];
        assert_eq!(decode_status(&overlong), Err(DecodeError::VarintOverflow));
        // A huge recipient count with few bytes left is refused before allocating.
        let mut huge = vec![1];
        huge.extend_from_slice(&[0; 16]);
        huge.extend_from_slice(&[0; 11]); // empty fields up to the tag count
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode_meta(&huge).is_err());
    }
}
