//! The scheduler's table of queued messages: one small slot per message with queued
//! or in-flight recipients, found by a 32-bit [`MsgRef`] so per-recipient entries
//! need not carry a 16-byte id, a campaign or an expiry.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::model::MessageId;

/// Shards of the table: enqueues and results on different messages rarely contend.
const SHARD_BITS: u32 = 4;
const SHARDS: usize = 1 << SHARD_BITS;

/// A message's slot: shard in the low bits, index in the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct MsgRef(u32);

impl MsgRef {
    /// A stable order among refs, to group a message's entries by sorting.
    pub fn sort_key(self) -> u32 {
        self.0
    }
}

/// What the scheduler knows about a queued message (32 bytes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// The message id, for batches and spool calls.
    pub id: MessageId,
    /// Interned campaign (0: none).
    pub campaign: u32,
    /// Expiry, Unix seconds (rounded down: never late).
    pub expires: u32,
    /// Recipients not yet final (queued or in flight); the slot is freed at 0.
    pub remaining: u32,
    /// Whether an expiry sweep already removed its queued recipients.
    pub swept: bool,
}

#[derive(Debug, Default)]
struct Slab {
    /// Slots; a free slot has `remaining == 0`.
    slots: Vec<Slot>,
    /// Indices of free slots, reused before growing.
    free: Vec<u32>,
}

/// The sharded table.
#[derive(Debug)]
pub(crate) struct MessageTable {
    /// Slabs, each under its own lock.
    shards: Box<[Mutex<Slab>]>,
    /// Round-robin shard choice for new messages.
    next: AtomicUsize,
}

impl MessageTable {
    pub fn new() -> MessageTable {
        MessageTable {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            next: AtomicUsize::new(0),
        }
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Slab> {
        self.shards[shard].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn split(r: MsgRef) -> (usize, usize) {
        ((r.0 as usize) & (SHARDS - 1), (r.0 >> SHARD_BITS) as usize)
    }

    /// A slot for a message with `remaining` unfinished recipients (at least 1).
    pub fn insert(&self, id: MessageId, campaign: u32, expires: u32, remaining: u32) -> MsgRef {
        let shard = self.next.fetch_add(1, Ordering::Relaxed) % SHARDS;
        let mut slab = self.lock(shard);
        let slot = Slot {
            id,
            campaign,
            expires,
            remaining,
            swept: false,
        };
        let index = match slab.free.pop() {
            Some(i) => {
                slab.slots[i as usize] = slot;
                i
            }
            None => {
                slab.slots.push(slot);
                (slab.slots.len() - 1) as u32
            }
        };
        MsgRef(index << SHARD_BITS | shard as u32)
    }

    /// A copy of the slot of a live message.
    pub fn get(&self, r: MsgRef) -> Slot {
        let (shard, index) = Self::split(r);
        self.lock(shard).slots[index]
    }

    /// Marks `n` recipients final. Returns the message id, and whether that was its
    /// last one (the slot is then freed and the message can leave the spool).
    pub fn finish(&self, r: MsgRef, n: u32) -> (MessageId, bool) {
        let (shard, index) = Self::split(r);
        let mut slab = self.lock(shard);
        let slot = &mut slab.slots[index];
        slot.remaining = slot.remaining.saturating_sub(n);
        let (id, done) = (slot.id, slot.remaining == 0);
        if done {
            slab.free.push(index as u32);
        }
        (id, done)
    }

    /// Refs of messages expired at `now` that no sweep has handled yet, marking
    /// them handled. A scan of every slot: called once per sweep interval.
    pub fn take_newly_expired(&self, now: u32) -> HashSet<MsgRef> {
        let mut out = HashSet::new();
        for shard in 0..SHARDS {
            let mut slab = self.lock(shard);
            for (i, s) in slab.slots.iter_mut().enumerate() {
                if s.remaining > 0 && !s.swept && s.expires <= now {
                    s.swept = true;
                    out.insert(MsgRef((i as u32) << SHARD_BITS | shard as u32));
                }
            }
        }
        out
    }

    /// Refs of the live messages of a campaign.
    pub fn of_campaign(&self, campaign: u32) -> HashSet<MsgRef> {
        let mut out = HashSet::new();
        for shard in 0..SHARDS {
            let slab = self.lock(shard);
            for (i, s) in slab.slots.iter().enumerate() {
                if s.remaining > 0 && s.campaign == campaign {
                    out.insert(MsgRef((i as u32) << SHARD_BITS | shard as u32));
                }
            }
        }
        out
    }

    /// The ref of live message `id`, if the table holds it. A scan of every slot:
    /// for the status API.
    pub fn find(&self, id: MessageId) -> Option<MsgRef> {
        for shard in 0..SHARDS {
            let slab = self.lock(shard);
            if let Some(i) = slab
                .slots
                .iter()
                .position(|s| s.remaining > 0 && s.id == id)
            {
                return Some(MsgRef((i as u32) << SHARD_BITS | shard as u32));
            }
        }
        None
    }

    /// Refs of the live messages of a campaign and their unfinished recipients
    /// in total.
    pub fn of_campaign_remaining(&self, campaign: u32) -> (HashSet<MsgRef>, u64) {
        let mut out = HashSet::new();
        let mut remaining = 0u64;
        for shard in 0..SHARDS {
            let slab = self.lock(shard);
            for (i, s) in slab.slots.iter().enumerate() {
                if s.remaining > 0 && s.campaign == campaign {
                    out.insert(MsgRef((i as u32) << SHARD_BITS | shard as u32));
                    remaining += s.remaining as u64;
                }
            }
        }
        (out, remaining)
    }

    /// Number of live messages.
    pub fn len(&self) -> usize {
        (0..SHARDS)
            .map(|s| {
                let slab = self.lock(s);
                slab.slots.len() - slab.free.len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_small_and_reused() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        let t = MessageTable::new();
        let a = t.insert(MessageId(1), 0, 100, 2);
        assert_eq!(t.finish(a, 1), (MessageId(1), false));
        assert_eq!(t.finish(a, 1), (MessageId(1), true));
        assert_eq!(t.len(), 0);
        let refs: Vec<_> = (0..SHARDS as u128 + 1)
            .map(|i| t.insert(MessageId(i), 3, 50, 1))
            .collect();
        assert!(refs.contains(&a), "freed slot reused");
        assert_eq!(t.len(), SHARDS + 1);
        assert_eq!(t.of_campaign(3).len(), SHARDS + 1);
        assert_eq!(t.take_newly_expired(49).len(), 0);
        assert_eq!(t.take_newly_expired(50).len(), SHARDS + 1);
        assert_eq!(
            t.take_newly_expired(50).len(),
            0,
            "each expiry handled once"
        );
    }
}
