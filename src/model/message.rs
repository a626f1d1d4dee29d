//! The per-message record: envelope, ownership, lifetime and tags.

use thiserror::Error;

use super::id::MessageId;
use super::time::Timestamp;
pub use crate::smtp::command::{BodyType, DsnNotify, DsnReturn, OriginalRecipient};

/// The customer a message belongs to (an ESP relaying through Volley, an API key's
/// owner). Shaping and accounting group by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub String);

/// The campaign a message belongs to, so an operator can suspend, resume or purge a
/// whole send at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CampaignId(pub String);

/// Why a model value could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    #[error("recipient {0:?} has no domain")]
    NoDomain(String),
    #[error("a message needs at least one recipient")]
    NoRecipients,
    #[error("a message has at most {max} recipients", max = u32::MAX)]
    TooManyRecipients,
}

/// One recipient and its DSN parameters. Addresses are validated by ingest (with
/// `smtp::address`) and stored in wire form, so the model does not re-parse them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// `local@domain` as written in `RCPT TO:<...>` (no brackets).
    pub address: String,
    /// The domain, ASCII-lowercased: the key of the scheduler queue and of the
    /// recipient's spool record.
    pub domain: String,
    /// `NOTIFY=` (RFC 3461 4.1); all false when the client gave none.
    pub notify: DsnNotify,
    /// `ORCPT=` (RFC 3461 4.2), passed on to the next hop and into DSNs.
    pub orcpt: Option<OriginalRecipient>,
}

impl Recipient {
    /// A recipient without DSN parameters; the domain is what follows the last `@`,
    /// lowercased.
    pub fn new(address: impl Into<String>) -> Result<Recipient, ModelError> {
        let address = address.into();
        let domain = match address.rsplit_once('@') {
            Some((_, d)) if !d.is_empty() => d.to_ascii_lowercase(),
            _ => return Err(ModelError::NoDomain(address)),
        };
        Ok(Recipient {
            address,
            domain,
            notify: DsnNotify::default(),
            orcpt: None,
        })
    }
}

/// Message-wide DSN parameters from `MAIL FROM` (RFC 3461 4.3, 4.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DsnRequest {
    /// `RET=FULL|HDRS`.
    pub ret: Option<DsnReturn>,
    /// `ENVID=`, decoded.
    pub envid: Option<String>,
}

/// The SMTP envelope, as the egress session will replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse-path in wire form without brackets; empty for the null path `<>`.
    pub reverse_path: String,
    /// Every recipient; a recipient's index here is its number in spool keys and
    /// scheduler entries, so the list never changes once stored.
    pub recipients: Vec<Recipient>,
    /// `BODY=` to announce, if the content needs it.
    pub body_type: Option<BodyType>,
    /// Whether the message needs `SMTPUTF8`.
    pub smtputf8: bool,
    /// DSN parameters.
    pub dsn: DsnRequest,
}

/// Everything about a message except its body and per-recipient state: the spool's
/// meta record. Written once at injection, read when a batch is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// The message id (also the record's key).
    pub id: MessageId,
    /// Owner, for shaping and accounting.
    pub tenant: Option<TenantId>,
    /// Campaign, for suspend/resume/purge.
    pub campaign: Option<CampaignId>,
    /// When the message was accepted.
    pub created: Timestamp,
    /// When undelivered recipients expire (created + message lifetime).
    pub expires: Timestamp,
    /// The envelope.
    pub envelope: Envelope,
    /// The body's length in bytes (for `SIZE=` and cache accounting).
    pub body_len: u64,
    /// Free-form key/value metadata echoed into the delivery log and webhooks.
    pub tags: Vec<(String, String)>,
}

impl MessageMeta {
    /// Checks what the spool and scheduler rely on: at least one recipient, and
    /// recipient indices that fit in a `u32`.
    pub fn validate(&self) -> Result<(), ModelError> {
        match self.envelope.recipients.len() {
            0 => Err(ModelError::NoRecipients),
            n if n > u32::MAX as usize => Err(ModelError::TooManyRecipients),
            _ => Ok(()),
        }
    }

    /// The message as the scheduler first queues it: every recipient due now, no
    /// attempts yet.
    pub fn pending(&self) -> PendingMessage<'_> {
        let recipients = self
            .envelope
            .recipients
            .iter()
            .enumerate()
            .map(|(i, r)| PendingRecipient {
                rcpt: i as u32,
                domain: &r.domain,
                attempts: 0,
                due: self.created,
            })
            .collect();
        PendingMessage {
            id: self.id,
            campaign: self.campaign.as_ref(),
            expires: self.expires,
            recipients,
        }
    }
}

/// A message's unfinished recipients, as handed to the scheduler: at injection (from
/// [`MessageMeta::pending`]) and by spool recovery. Borrows from the meta record so
/// recovering a million recipients does not allocate a million strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMessage<'a> {
    /// The message.
    pub id: MessageId,
    /// Its campaign, if any.
    pub campaign: Option<&'a CampaignId>,
    /// When its recipients expire.
    pub expires: Timestamp,
    /// The unfinished recipients only.
    pub recipients: Vec<PendingRecipient<'a>>,
}

/// One unfinished recipient: where it queues, how often it was tried, when next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingRecipient<'a> {
    /// Index in the envelope's recipient list.
    pub rcpt: u32,
    /// Its domain (lowercase).
    pub domain: &'a str,
    /// Failed attempts so far.
    pub attempts: u16,
    /// When it may be tried next.
    pub due: Timestamp,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A message with the given recipients, for tests across the crate.
    pub(crate) fn sample(id: MessageId, campaign: Option<&str>, rcpts: &[&str]) -> MessageMeta {
        MessageMeta {
            id,
            tenant: Some(TenantId("acme".into())),
            campaign: campaign.map(|c| CampaignId(c.into())),
            created: Timestamp::from_secs(1_000),
            expires: Timestamp::from_secs(1_000 + 5 * 86_400),
            envelope: Envelope {
                reverse_path: "bounces@acme.example".into(),
                recipients: rcpts.iter().map(|r| Recipient::new(*r).unwrap()).collect(),
                body_type: Some(BodyType::EightBitMime),
                smtputf8: false,
                dsn: DsnRequest {
                    ret: Some(DsnReturn::Headers),
                    envid: Some("env-1".into()),
                },
            },
            body_len: 12,
            tags: vec![("list".into(), "weekly".into())],
        }
    }

    #[test]
    fn recipient_domain_is_lowercased_last_at() {
        let r = Recipient::new("\"a@b\"@Example.COM").unwrap();
        assert_eq!(r.domain, "example.com");
        assert_eq!(r.address, "\"a@b\"@Example.COM");
        assert!(matches!(
            Recipient::new("nobody"),
            Err(ModelError::NoDomain(_))
        ));
        assert!(matches!(Recipient::new("x@"), Err(ModelError::NoDomain(_))));
    }

    #[test]
    fn pending_lists_every_recipient_due_at_creation() {
        let m = sample(MessageId(1), Some("c"), &["a@x.org", "b@Y.org"]);
        m.validate().unwrap();
        let p = m.pending();
        assert_eq!(p.recipients.len(), 2);
        assert_eq!(p.recipients[1].domain, "y.org");
        assert_eq!(p.recipients[1].rcpt, 1);
        assert_eq!(p.recipients[0].due, m.created);
        assert_eq!(p.campaign.map(|c| c.0.as_str()), Some("c"));
        let mut empty = m.clone();
        empty.envelope.recipients.clear();
        assert_eq!(empty.validate(), Err(ModelError::NoRecipients));
    }
}
