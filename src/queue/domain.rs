//! One destination domain's queue: ready entries in arrival order (a message's
//! recipients side by side, so they leave as one batch), deferred entries in a heap
//! by due time, and entries held back while their campaign is suspended.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use super::messages::MsgRef;

/// One queued recipient: 16 bytes. Everything else about it is in its message's slot
/// (id, campaign, expiry) or in the spool (address, DSN parameters, body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Its message.
    pub msg: MsgRef,
    /// Index in the message's recipient list.
    pub rcpt: u32,
    /// Not to be tried before this, Unix seconds.
    pub due: u32,
    /// Failed attempts so far.
    pub attempts: u16,
}

/// An entry ordered for the deferred heap: earliest due on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByDue(pub Entry);

impl Ord for ByDue {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .0
            .due
            .cmp(&self.0.due)
            .then_with(|| other.0.rcpt.cmp(&self.0.rcpt))
    }
}

impl PartialOrd for ByDue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The per-domain queue. Empty collections do not allocate, so an idle domain costs
/// the struct and its map entry only, until it is reaped.
#[derive(Debug, Default)]
pub(crate) struct DomainQueue {
    /// Entries that may be sent now, oldest first.
    pub ready: VecDeque<Entry>,
    /// Entries waiting for their retry time.
    pub deferred: BinaryHeap<ByDue>,
    /// Entries of suspended campaigns, until resumed or purged.
    pub held: Vec<Entry>,
    /// The earliest wake-up registered on the scheduler's wheel (0: none).
    pub wake_at: u32,
    /// Recipients taken in batches and not yet settled.
    pub in_flight: u32,
    /// Last enqueue, take or settle, Unix seconds (for reaping).
    pub last_active: u32,
    /// Operator suspended the domain: nothing is taken until resumed.
    pub suspended: bool,
    /// Whether the domain is in the scheduler's ready list.
    pub listed: bool,
}

impl DomainQueue {
    /// Queues a deferred entry. Returns the time to register on the wheel when it is
    /// earlier than the wake-up already registered.
    pub fn defer(&mut self, e: Entry) -> Option<u32> {
        self.deferred.push(ByDue(e));
        if self.wake_at == 0 || e.due < self.wake_at {
            self.wake_at = e.due;
            return Some(e.due);
        }
        None
    }

    /// Moves deferred entries due at `now` into `moved`, sorted so a message's
    /// entries are together. Returns the earliest remaining due time, which becomes
    /// `wake_at`.
    pub fn promote_due(&mut self, now: u32, moved: &mut Vec<Entry>) -> Option<u32> {
        let start = moved.len();
        while self.deferred.peek().is_some_and(|top| top.0.due <= now) {
            if let Some(ByDue(e)) = self.deferred.pop() {
                moved.push(e);
            }
        }
        moved[start..].sort_unstable_by_key(|e| (e.msg.sort_key(), e.rcpt));
        self.wake_at = 0;
        let next = self.deferred.peek().map(|b| b.0.due)?;
        self.wake_at = next;
        Some(next)
    }

    /// Takes the first ready entry and the entries of the same message right behind
    /// it, up to `max` in all.
    pub fn take_run(&mut self, max: usize, out: &mut Vec<Entry>) {
        let Some(first) = self.ready.pop_front() else {
            return;
        };
        out.push(first);
        while out.len() < max {
            match self.ready.front() {
                Some(e) if e.msg == first.msg => {
                    out.push(*e);
                    self.ready.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Number of queued entries (ready, deferred, held).
    pub fn queued(&self) -> usize {
        self.ready.len() + self.deferred.len() + self.held.len()
    }

    /// Nothing queued and nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.queued() == 0 && self.in_flight == 0
    }

    /// Whether a batch could be taken now.
    pub fn has_ready(&self) -> bool {
        !self.suspended && !self.ready.is_empty()
    }

    /// Removes every queued entry `doomed` selects, passing each to `removed`.
    pub fn remove_where(
        &mut self,
        mut doomed: impl FnMut(&Entry) -> bool,
        removed: &mut Vec<Entry>,
    ) {
        self.ready.retain(|e| {
            if doomed(e) {
                removed.push(*e);
                false
            } else {
                true
            }
        });
        self.held.retain(|e| {
            if doomed(e) {
                removed.push(*e);
                false
            } else {
                true
            }
        });
        if self.deferred.iter().any(|b| doomed(&b.0)) {
            self.deferred.retain(|b| {
                if doomed(&b.0) {
                    removed.push(b.0);
                    false
                } else {
                    true
                }
            });
        }
        if self.ready.is_empty() && self.ready.capacity() > 64 {
            self.ready.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageId;
    use crate::queue::messages::MessageTable;

    #[test]
    fn entries_are_16_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    #[test]
    fn take_run_groups_one_message_up_to_max() {
        let t = MessageTable::new();
        let (a, b) = (
            t.insert(MessageId(1), 0, 9, 3),
            t.insert(MessageId(2), 0, 9, 1),
        );
        let mut q = DomainQueue::default();
        for (msg, rcpt) in [(a, 0), (a, 1), (a, 2), (b, 0)] {
            q.ready.push_back(Entry {
                msg,
                rcpt,
                due: 0,
                attempts: 0,
            });
        }
        let mut out = Vec::new();
        q.take_run(2, &mut out);
        assert_eq!(out.iter().map(|e| e.rcpt).collect::<Vec<_>>(), [0, 1]);
        out.clear();
        q.take_run(100, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].msg, a);
        out.clear();
        q.take_run(100, &mut out);
        assert_eq!(out[0].msg, b);
    }

    #[test]
    fn deferred_wake_ups_track_the_earliest_due() {
        let t = MessageTable::new();
        let m = t.insert(MessageId(1), 0, 9, 3);
        let mut q = DomainQueue::default();
        let e = |due, rcpt| Entry {
            msg: m,
            rcpt,
            due,
            attempts: 1,
        };
        assert_eq!(q.defer(e(50, 0)), Some(50));
        assert_eq!(q.defer(e(70, 1)), None);
        assert_eq!(q.defer(e(40, 2)), Some(40));
        let mut moved = Vec::new();
        assert_eq!(q.promote_due(50, &mut moved), Some(70));
        assert_eq!(moved.iter().map(|e| e.rcpt).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(q.promote_due(100, &mut moved), None);
        assert_eq!(q.wake_at, 0);
        assert_eq!(moved.len(), 3);
    }
}
