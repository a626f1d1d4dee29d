//! The message model: what the spool stores and the scheduler queues.
//!
//! - [`id`]: time-ordered [`MessageId`]s that double as spool keys.
//! - [`time`]: [`Timestamp`], wall-clock milliseconds, the one time type persisted.
//! - [`message`]: the envelope, tenant/campaign ids, tags and the per-message record.
//! - [`status`]: per-recipient delivery state ([`RecipientStatus`]).
//! - [`completion`]: what is kept after a message leaves the spool
//!   ([`CompletedMessage`]) and per-campaign counters ([`CampaignCounters`]).
//! - [`codec`]: the compact, versioned binary encoding of the records the spool keeps.
//!
//! A body is not part of any record here: it is stored once, under the message id,
//! however many recipients the message has.

pub mod codec;
pub mod completion;
pub mod id;
pub mod message;
pub mod status;
pub mod time;

pub use codec::DecodeError;
pub use completion::{CampaignCounters, CompletedMessage};
pub use id::{IdGenerator, MessageId, ParseIdError};
pub use message::{
    CampaignId, DsnRequest, Envelope, MessageMeta, ModelError, PendingMessage, PendingRecipient,
    Recipient, TenantId,
};
pub use status::{RecipientStatus, StoredReply};
pub use time::Timestamp;
