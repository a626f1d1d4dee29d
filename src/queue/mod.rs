//! The scheduler: per-domain queues, retries, expiry, operator controls.
//!
//! - [`scheduler`]: [`Scheduler`], the sharded map of domain queues and its
//!   enqueue / take / settle / tick cycle.
//! - [`admin`]: suspend, resume and purge a domain or campaign; sweeps; stats.
//! - [`retry`]: the pure [`RetryPolicy`].
//! - [`wheel`]: a pure hierarchical timer wheel ([`Wheel`]).
//! - [`clock`]: the [`Clock`] trait, with a manual clock for tests.
//!
//! # Memory layout
//!
//! A queued recipient is a 16-byte entry (message slot `u32`, recipient index `u32`,
//! due second `u32`, attempts `u16`) in its domain's ready deque, deferred heap or
//! held list. Per message there is one 32-byte slot (id, interned campaign, expiry,
//! unfinished count). Per domain there is a [`DashMap`](dashmap::DashMap) entry:
//! the name (`Arc<str>`, shared with wheel and ready list) and a ~100-byte queue
//! whose empty collections do not allocate. Deferred entries stay in their domain's
//! heap; only the domain's next wake-up sits on the wheel, so purging or suspending a
//! domain never walks the wheel. Addresses, envelopes and bodies stay in the spool.

pub mod admin;
pub mod clock;
mod domain;
mod messages;
pub mod retry;
pub mod scheduler;
pub mod wheel;

#[cfg(test)]
mod tests;

pub use admin::{
    CampaignQueue, DomainStats, MessageQueue, PurgeReport, PurgedRecipient, QueueStats, QueuedAs,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use retry::{RetryConfigError, RetryPolicy, SplitMix64};
pub use scheduler::{
    Batch, BatchRecipient, Decision, ExpiredRecipient, Outcome, Scheduler, SchedulerConfig,
    Settled, Tick,
};
pub use wheel::Wheel;
