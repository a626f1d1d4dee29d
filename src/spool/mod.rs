//! The durable spool: messages from acceptance until every recipient is final.
//!
//! [`Spool`] is the trait; [`memory::MemorySpool`] is the in-memory implementation
//! for tests and benchmarks; [`rocks::RocksSpool`] is the RocksDB implementation, behind
//! the same trait with the layout below, which [`keys`] and [`crate::model::codec`]
//! implement. One behavioural test suite (`suite.rs`, tests only) runs against both.
//!
//! # Key layout (RocksDB column families)
//!
//! | CF           | key                                          | value                     |
//! |--------------|----------------------------------------------|---------------------------|
//! | `bodies`     | message id (16 bytes, big-endian)            | body bytes, as sent       |
//! | `meta`       | message id                                   | [`codec::encode_meta`]    |
//! | `recipients` | domain, `0x00`, id, rcpt index (u32 BE)      | [`codec::encode_status`]  |
//! | `campaigns`  | campaign id, `0x00`, message id              | empty                     |
//! | `completed`  | message id                                   | [`codec::encode_completed`] |
//! | `counters`   | campaign id                                  | [`codec::encode_counters`], merged |
//!
//! Ids lead with their creation time, so `bodies` and `meta` are append-mostly and a
//! scan visits the oldest messages first. One domain's recipients are one contiguous
//! range of `recipients` ([`keys::domain_range`]): purging a domain is a range
//! delete. `campaigns` is an index so purging a campaign walks its own range. A
//! message's meta lists its recipients with their domains, so every key of a message
//! can be computed from its meta record.
//!
//! `completed` keeps a finished message's status after its other records are gone
//! (tenant, campaign, times, each recipient's address, domain and final state):
//! written in the batch that removes the message, pruned by creation time (one
//! range delete of the ids older than `[spool] status_retention`). `counters`
//! holds each campaign's cumulative counts (messages and recipients injected;
//! recipients delivered, bounced, expired, purged) as deltas a merge operator adds
//! up: injections in the store batch, outcomes in the results batches, so they
//! survive restarts and cost no read on the hot path.
//!
//! # Write rules
//!
//! - [`Spool::store`] writes body, meta, one `Scheduled` record per recipient and the
//!   campaign key in one atomic batch, and its [`Durable`] resolves only after the
//!   WAL holding it is synced. Concurrent stores share syncs (group commit).
//! - [`Spool::store`] also merges `messages + 1, recipients + n` into the
//!   campaign's counters, in the same batch.
//! - [`Spool::update`] / [`Spool::update_counted`] write status records (and
//!   counter deltas) without waiting for a sync: a crash may lose a result and
//!   deliver a recipient twice, never lose a message.
//! - A missing recipient record, or a `Purged` one, means the recipient was
//!   purged: final.
//! - [`Spool::remove`] deletes every record of a message once all its recipients
//!   are final, and writes its completion record in the same batch. Callers never
//!   update a recipient after removing its message.
//!
//! # The RocksDB spool ([`rocks`])
//!
//! - Group commit: `store` encodes the batch on the caller's thread and sends
//!   `(WriteBatch, Completer)` over a bounded channel; a full channel or byte budget
//!   returns `Durable::ready(Err(SpoolError::Busy))` at once (backpressure). A writer
//!   thread writes each batch unsynced into RocksDB's WAL buffer (`manual_wal_flush`);
//!   a syncer thread takes every batch written so far, syncs the WAL once
//!   (`flush_wal(true)`), then completes every [`Completer`] of that round with the
//!   same result (errors map to [`SpoolError::Write`], never a panic). The next
//!   round's writes overlap the current sync (see `rocks/writer.rs` for the
//!   measurements behind this shape).
//! - `update` and `remove` write with `sync = false` directly from the caller.
//! - `counters` has an associative merge operator adding the six words; a record
//!   that fails to decode is skipped by the merge (logged once per merge), never a
//!   panic.
//! - `recover` iterates `meta` in key order and multi-gets the recipient keys each
//!   meta implies (see [`memory`] for the reference algorithm); only one message's
//!   records are in memory at a time.
//! - `purge_domain` is `delete_range` over [`keys::domain_range`];
//!   `purge_campaign` walks [`keys::campaign_range`] removing messages in batches.
//!
//! [`codec::encode_meta`]: crate::model::codec::encode_meta
//! [`codec::encode_status`]: crate::model::codec::encode_status
//! [`codec::encode_completed`]: crate::model::codec::encode_completed
//! [`codec::encode_counters`]: crate::model::codec::encode_counters

pub mod cache;
pub mod keys;
pub mod memory;
pub mod rocks;
#[cfg(test)]
mod suite;
pub mod ticket;

use std::sync::Arc;

use thiserror::Error;

use crate::model::{
    CampaignCounters, CampaignId, CompletedMessage, DecodeError, MessageId, MessageMeta,
    ModelError, PendingMessage, RecipientStatus, Timestamp,
};
pub use cache::BodyCache;
pub use rocks::{RocksSpool, SpoolOptions};
pub use ticket::{durable_pair, Completer, Durable};

/// A message body, shared read-only by the cache and every batch sending it.
pub type Body = Arc<[u8]>;

/// A message to store: its meta record and body.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The meta record (envelope, ids, lifetime); must pass [`MessageMeta::validate`].
    pub meta: MessageMeta,
    /// The body exactly as it will be sent.
    pub body: Body,
}

/// One recipient's new state, written by [`Spool::update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateUpdate {
    /// The recipient's domain (part of its key).
    pub domain: Arc<str>,
    /// The message.
    pub id: MessageId,
    /// The recipient's index in the envelope.
    pub rcpt: u32,
    /// The new state.
    pub status: RecipientStatus,
}

/// What a recovery scan found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Messages with at least one unfinished recipient, handed to the visitor.
    pub messages: u64,
    /// Unfinished recipients handed to the visitor.
    pub recipients: u64,
    /// Messages found with every recipient final (a crash between the last update
    /// and the removal, or a purge), removed during the scan.
    pub removed: u64,
    /// Records that failed to decode; skipped and left in place for inspection.
    pub corrupt: u64,
}

/// Why a spool operation failed. Ingestion maps [`SpoolError::is_transient`] to
/// "try later" (SMTP 451 4.3.0, HTTP 503); the process never panics on these.
#[derive(Debug, Clone, Error)]
pub enum SpoolError {
    /// Too much data is waiting for a sync (backpressure): refuse, do not buffer.
    #[error("spool busy: too much data waiting to be written; try later")]
    Busy,
    /// The storage refused a write (disk full, I/O error).
    #[error("spool write failed: {0}")]
    Write(String),
    /// The storage failed a read.
    #[error("spool read failed: {0}")]
    Read(String),
    /// The spool is shutting down or its writer stopped.
    #[error("spool closed")]
    Closed,
    /// No such message (already finished and removed, or never stored).
    #[error("message {0} not in the spool")]
    NotFound(MessageId),
    /// A record failed to decode: that record is unusable, the spool is not.
    #[error("corrupt spool record {key}: {source}")]
    Corrupt {
        /// Which record, for the operator (hex key or id).
        key: String,
        /// What was wrong with it.
        source: DecodeError,
    },
    /// The message cannot be stored as given.
    #[error("invalid message: {0}")]
    Invalid(#[from] ModelError),
    /// The spool could not be opened (bad path, locked by another process, a
    /// database RocksDB cannot read).
    #[error("cannot open spool: {0}")]
    Open(String),
}

impl SpoolError {
    /// Retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SpoolError::Busy | SpoolError::Write(_) | SpoolError::Read(_) | SpoolError::Closed => {
                true
            }
            SpoolError::NotFound(_)
            | SpoolError::Corrupt { .. }
            | SpoolError::Invalid(_)
            | SpoolError::Open(_) => false,
        }
    }

    /// Retrying will not help: the message or record itself is the problem.
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }
}

/// Durable message storage. Implementations are shared (`Arc<dyn Spool>`) by the
/// ingest servers, the egress sessions and the result writer.
///
/// Cost contracts: no method may panic on bad data or failed I/O. Methods other than
/// [`Spool::store`] may block on I/O for the time of one point read or one unsynced
/// batch write (microseconds when cached, one disk read otherwise): call them from a
/// blocking-capable context (`spawn_blocking` or a spool worker thread), never while
/// holding a scheduler or dashmap guard.
pub trait Spool: Send + Sync {
    /// Queues `msg` for writing and returns at once; the [`Durable`] resolves once
    /// the message is synced, or with [`SpoolError::Busy`] immediately when the
    /// write queue is full. Acknowledge the client only after `Ok`.
    fn store(&self, msg: NewMessage) -> Durable;

    /// The body of `id`: one point read. Wrap in a [`BodyCache`] on the send path.
    fn load_body(&self, id: MessageId) -> Result<Body, SpoolError>;

    /// The meta record of `id`: one point read and a decode.
    fn load_meta(&self, id: MessageId) -> Result<MessageMeta, SpoolError>;

    /// Writes recipient states as one batch, without waiting for a sync. Blind
    /// writes: no read, so it does not check the records exist.
    fn update(&self, updates: &[StateUpdate]) -> Result<(), SpoolError> {
        self.update_counted(updates, &[])
    }

    /// [`Spool::update`], adding `counters` (deltas) to campaigns' counters in
    /// the same batch: the results path's one write per drained group.
    fn update_counted(
        &self,
        updates: &[StateUpdate],
        counters: &[(CampaignId, CampaignCounters)],
    ) -> Result<(), SpoolError>;

    /// Deletes every record of `id` and writes its completion record (from its
    /// meta and recipient records; a missing or unfinished recipient is recorded
    /// as purged) in the same unsynced batch: a meta read, a multi-get of its
    /// recipient records, one write. Idempotent: removing an absent message is
    /// `Ok` and writes nothing.
    fn remove(&self, id: MessageId) -> Result<(), SpoolError>;

    /// The results path's write for one drained group: `updates` and `counters`
    /// as [`Spool::update_counted`], then each message of `finished` removed as
    /// [`Spool::remove`]. A meta given with an id spares its read, and a status in
    /// `updates` spares the read of that recipient's record. Each message of
    /// `finished` must still be stored (removal is not idempotent here when a
    /// meta is given). The default makes those calls one after another (every
    /// one, even after a failure) and returns the first error; a spool that can
    /// writes it all as one unsynced batch.
    fn settle_group(
        &self,
        updates: &[StateUpdate],
        counters: &[(CampaignId, CampaignCounters)],
        finished: &[(MessageId, Option<Arc<MessageMeta>>)],
    ) -> Result<(), SpoolError> {
        let mut result = self.update_counted(updates, counters);
        for (id, _) in finished {
            let removed = self.remove(*id);
            if result.is_ok() {
                result = removed;
            }
        }
        result
    }

    /// The recipient records of `meta`'s message, one per envelope recipient in
    /// order (`None`: no record, i.e. purged or the message is gone): one
    /// multi-get.
    fn load_statuses(&self, meta: &MessageMeta)
        -> Result<Vec<Option<RecipientStatus>>, SpoolError>;

    /// The completion record of a removed message, if it is still kept.
    fn load_completed(&self, id: MessageId) -> Result<Option<CompletedMessage>, SpoolError>;

    /// A campaign's counters, `None` if nothing was ever counted for it.
    fn load_counters(&self, campaign: &CampaignId) -> Result<Option<CampaignCounters>, SpoolError>;

    /// Deletes the completion records of messages created before `created_before`
    /// (ids lead with their creation time: one range delete).
    fn prune_completed(&self, created_before: Timestamp) -> Result<(), SpoolError>;

    /// Startup scan: calls `visit` once per message with unfinished recipients,
    /// with each such recipient's attempts and due time, oldest message first.
    /// Streams (memory use independent of the spool's size); removes messages that
    /// are entirely final; skips and counts corrupt records. `visit` must not call
    /// back into the spool.
    fn recover(
        &self,
        visit: &mut dyn FnMut(PendingMessage<'_>),
    ) -> Result<RecoveryStats, SpoolError>;

    /// Deletes every recipient record of `domain` (a range delete); returns how many
    /// there were, or an estimate where counting would cost a scan. Messages left
    /// with no recipients are removed by the caller (the scheduler reports them) or
    /// by the next recovery. A low-level tool: campaign counters do not see it; the
    /// engine's purge marks exactly the recipients it took from the scheduler
    /// [`RecipientStatus::Purged`] instead (so nothing injected meanwhile is lost).
    fn purge_domain(&self, domain: &str) -> Result<u64, SpoolError>;

    /// Removes every message of `campaign`, walking the campaign index in bounded
    /// batches; returns how many messages were removed. Low-level like
    /// [`Spool::purge_domain`] (completion records are written, counters are not).
    fn purge_campaign(&self, campaign: &CampaignId) -> Result<u64, SpoolError>;
}
