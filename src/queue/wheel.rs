//! A hierarchical timer wheel over whole seconds. Pure: time only moves when the
//! caller says so with [`Wheel::advance`], so tests need no runtime and no sleeping.
//!
//! Six levels of 64 slots: level 0 holds items due within the current 64 s block, one
//! slot per second; level 1 items due within the current 4,096 s block, one slot per 64
//! s; and so on up to 2^36 s (later items wait in a side list). An item sits at the
//! level where its due time first differs from "now"; when time reaches its slot it
//! moves down (cascades) or, once due, comes out. Insert is O(1); advancing costs
//! O(items that come out or move down) plus at most 6 bit scans per occupied slot
//! visited.

/// Slot index bits per level.
const BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << BITS;
/// Levels: 6 x 6 bits cover 2^36 seconds (over 2,000 years).
const LEVELS: usize = 6;
/// Low bits of a time that lie within one top-level block.
const RANGE_MASK: u64 = (1 << (BITS as usize * LEVELS)) - 1;

/// Items of type `T` keyed by due time in seconds.
#[derive(Debug)]
pub struct Wheel<T> {
    /// The time the wheel has advanced to.
    now: u64,
    /// `levels[l]` holds items due in the current block of `64^(l+1)` seconds.
    levels: Vec<Level<T>>,
    /// Items inserted already due, handed out by the next advance.
    overdue: Vec<(u64, T)>,
    /// Items due beyond the current top-level block (after the year 4000 for Unix
    /// seconds): placed when time enters their block.
    far: Vec<(u64, T)>,
    /// Number of items held.
    len: usize,
}

#[derive(Debug)]
struct Level<T> {
    /// One list per slot.
    slots: Vec<Vec<(u64, T)>>,
    /// Bit `i` set when `slots[i]` is not empty.
    occupied: u64,
}

impl<T> Wheel<T> {
    /// An empty wheel whose time is `now`.
    pub fn new(now: u64) -> Wheel<T> {
        let levels = (0..LEVELS)
            .map(|_| Level {
                slots: (0..SLOTS).map(|_| Vec::new()).collect(),
                occupied: 0,
            })
            .collect();
        Wheel {
            now,
            levels,
            overdue: Vec::new(),
            far: Vec::new(),
            len: 0,
        }
    }

    /// The time the wheel has advanced to.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Number of items held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no item is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `item`, due at `due` (seconds); an item due now or earlier comes out on
    /// the next [`Wheel::advance`].
    pub fn insert(&mut self, due: u64, item: T) {
        self.len += 1;
        self.place(due, item);
    }

    /// A lower bound of the earliest due time held (exact for items within the
    /// next 64 s): how long a driver may sleep.
    pub fn next_due(&self) -> Option<u64> {
        if !self.overdue.is_empty() {
            return Some(self.now);
        }
        match self.next_slot() {
            Some((_, _, at)) => Some(at),
            None => self.far.iter().map(|(d, _)| *d).min(),
        }
    }

    /// Moves time to `now` (never backwards) and appends every item due at or before
    /// it to `out`, as `(due, item)`.
    pub fn advance(&mut self, now: u64, out: &mut Vec<(u64, T)>) {
        let target = now.max(self.now);
        let before = out.len();
        out.append(&mut self.overdue);
        loop {
            while let Some((level, slot, at)) = self.next_slot() {
                if at > target {
                    break;
                }
                self.now = at;
                let lvl = &mut self.levels[level];
                lvl.occupied &= !(1 << slot);
                for (due, item) in std::mem::take(&mut lvl.slots[slot]) {
                    if due <= self.now {
                        out.push((due, item));
                    } else {
                        self.place(due, item);
                    }
                }
            }
            let block_end = self.now | RANGE_MASK;
            if target <= block_end {
                break;
            }
            // The levels are empty now; jump to the next block holding a far item.
            match self.far.iter().map(|(d, _)| d & !RANGE_MASK).min() {
                Some(start) if start <= target => {
                    self.now = start.max(block_end + 1);
                    self.replace_far(out);
                }
                _ => break,
            }
        }
        if (self.now ^ target) > RANGE_MASK {
            self.now = target;
            self.replace_far(out);
        }
        self.now = target;
        self.len -= out.len() - before;
    }

    /// Places far items again after time entered a new top-level block.
    fn replace_far(&mut self, out: &mut Vec<(u64, T)>) {
        for (due, item) in std::mem::take(&mut self.far) {
            if due <= self.now {
                out.push((due, item));
            } else {
                self.place(due, item);
            }
        }
    }

    /// Puts an item in its slot relative to `self.now` (without counting it).
    fn place(&mut self, due: u64, item: T) {
        if due <= self.now {
            self.overdue.push((due, item));
            return;
        }
        if (self.now ^ due) > RANGE_MASK {
            self.far.push((due, item));
            return;
        }
        let masked = (self.now ^ due) | (SLOTS as u64 - 1);
        let level = ((63 - masked.leading_zeros()) / BITS) as usize;
        let slot = ((due >> (level as u32 * BITS)) as usize) & (SLOTS - 1);
        let lvl = &mut self.levels[level];
        lvl.slots[slot].push((due, item));
        lvl.occupied |= 1 << slot;
    }

    /// The earliest occupied slot: `(level, slot, start time)`. Lower levels hold
    /// earlier items, so the first level with an occupied slot at or after the
    /// current position wins.
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        for (level, lvl) in self.levels.iter().enumerate() {
            let shift = level as u32 * BITS;
            let pos = ((self.now >> shift) as usize) & (SLOTS - 1);
            let ahead = lvl.occupied & (u64::MAX << pos);
            if ahead != 0 {
                let slot = ahead.trailing_zeros() as usize;
                let block = self.now & !((1u64 << (shift + BITS)) - 1);
                let start = block + ((slot as u64) << shift);
                return Some((level, slot, start.max(self.now)));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::retry::SplitMix64;

    fn drain(w: &mut Wheel<u32>, now: u64) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        w.advance(now, &mut out);
        out.sort();
        out
    }

    #[test]
    fn items_come_out_when_due_and_not_before() {
        let mut w = Wheel::new(1_000);
        w.insert(1_005, 1);
        w.insert(1_064, 2);
        w.insert(1_000 + 5_000, 3);
        w.insert(999, 4); // already due
        w.insert(1_000 + 400 * 86_400, 5);
        assert_eq!(w.len(), 5);
        assert_eq!(drain(&mut w, 1_000), vec![(999, 4)]);
        assert_eq!(w.next_due(), Some(1_005));
        assert_eq!(drain(&mut w, 1_004), vec![]);
        assert_eq!(drain(&mut w, 1_005), vec![(1_005, 1)]);
        assert_eq!(drain(&mut w, 1_063), vec![]);
        assert_eq!(drain(&mut w, 7_000), vec![(1_064, 2), (6_000, 3)]);
        assert_eq!(
            drain(&mut w, 7_000 + 400 * 86_400),
            vec![(1_000 + 400 * 86_400, 5)]
        );
        assert!(w.is_empty());
        assert_eq!(w.next_due(), None);
        // Time never goes backwards.
        w.advance(5, &mut Vec::new());
        assert_eq!(w.now(), 7_000 + 400 * 86_400);
    }

    #[test]
    fn far_future_items_park_and_still_come_out() {
        let mut w = Wheel::new(0);
        w.insert(u64::MAX, 1);
        w.insert(1 << 40, 2);
        assert_eq!(drain(&mut w, (1 << 40) - 1), vec![]);
        assert_eq!(drain(&mut w, 1 << 40), vec![(1 << 40, 2)]);
        assert_eq!(drain(&mut w, u64::MAX), vec![(u64::MAX, 1)]);
    }

    #[test]
    fn matches_a_sorted_list_under_random_steps() {
        let mut rng = SplitMix64::new(99);
        for round in 0..20 {
            let start = rng.next_u64() % 1_000_000;
            let mut w = Wheel::new(start);
            let mut model: Vec<(u64, u32)> = Vec::new();
            let mut now = start;
            for i in 0..3_000u32 {
                if rng.next_u64() % 3 == 0 {
                    let horizon = [10, 100, 5_000, 1_000_000][(rng.next_u64() % 4) as usize];
                    let due = now + rng.next_u64() % horizon;
                    w.insert(due, i);
                    model.push((due, i));
                } else {
                    now += rng.next_u64() % [1, 50, 3_000][(rng.next_u64() % 3) as usize];
                    let got = drain(&mut w, now);
                    let mut want: Vec<_> =
                        model.iter().filter(|(d, _)| *d <= now).copied().collect();
                    want.sort();
                    model.retain(|(d, _)| *d > now);
                    assert_eq!(got, want, "round {round} at {now}");
                    assert_eq!(w.len(), model.len());
                    if let (Some(lb), Some(min)) = (w.next_due(), model.iter().map(|m| m.0).min()) {
                        assert!(lb <= min);
                    }
                }
            }
        }
    }
}
