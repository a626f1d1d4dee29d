//! One behavioural test suite for every [`Spool`] implementation.
//!
//! Each case takes a [`Harness`]: the spool under test, a way to close and reopen
//! it (a no-op for the in-memory spool, a real reopen for RocksDB, so every case
//! that reopens also tests persistence), and a way to plant a corrupt record.
//! [`spool_suite!`] turns every case into a `#[test]` for one implementation.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{NewMessage, RecoveryStats, Spool, SpoolError, StateUpdate};
use crate::model::message::tests::sample;
use crate::model::{
    CampaignCounters, CampaignId, MessageId, MessageMeta, RecipientStatus, StoredReply, Timestamp,
};

/// The spool under test and what the suite needs around it.
pub(crate) trait Harness {
    /// The spool.
    fn spool(&self) -> &dyn Spool;
    /// Closes and reopens the spool from its storage (no-op when nothing persists).
    fn reopen(&mut self);
    /// Overwrites the meta record of `id` with raw bytes.
    fn put_raw_meta(&self, id: MessageId, bytes: &[u8]);
}

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty directory named after `tag`.
    pub(crate) fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("volley-{tag}-{}-{nanos}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A body that differs per message.
pub(crate) fn body_of(id: MessageId, len: usize) -> Vec<u8> {
    let seed = id.0 as u8;
    (0..len)
        .map(|i| seed.wrapping_add(i as u8) | 0x20)
        .collect()
}

fn store(h: &dyn Harness, id: u128, campaign: Option<&str>, rcpts: &[&str]) -> MessageMeta {
    let meta = sample(MessageId(id), campaign, rcpts);
    h.spool()
        .store(NewMessage {
            meta: meta.clone(),
            body: Arc::from(body_of(meta.id, 100 + id as usize)),
        })
        .wait()
        .expect("store");
    meta
}

/// (message, rcpt, domain, attempts, due) of a recovered recipient.
type Recovered = (MessageId, u32, String, u16, Timestamp);

fn recover_all(spool: &dyn Spool) -> (Vec<Recovered>, RecoveryStats) {
    let mut out = Vec::new();
    let stats = spool
        .recover(&mut |m| {
            for r in &m.recipients {
                out.push((m.id, r.rcpt, r.domain.to_string(), r.attempts, r.due));
            }
        })
        .expect("recover");
    (out, stats)
}

fn update(domain: &str, id: u128, rcpt: u32, status: RecipientStatus) -> StateUpdate {
    StateUpdate {
        domain: domain.into(),
        id: MessageId(id),
        rcpt,
        status,
    }
}

pub(crate) fn store_load_remove(h: &mut dyn Harness) {
    let meta = store(h, 1, Some("c"), &["a@x.org", "b@y.org"]);
    h.reopen();
    let s = h.spool();
    assert_eq!(s.load_meta(MessageId(1)).unwrap(), meta);
    assert_eq!(
        &s.load_body(MessageId(1)).unwrap()[..],
        &body_of(meta.id, 101)[..]
    );
    assert!(matches!(
        s.load_body(MessageId(2)),
        Err(SpoolError::NotFound(_))
    ));
    s.remove(MessageId(1)).unwrap();
    s.remove(MessageId(1)).unwrap(); // idempotent
    s.remove(MessageId(77)).unwrap(); // never stored
    h.reopen();
    let s = h.spool();
    assert!(matches!(
        s.load_meta(MessageId(1)),
        Err(SpoolError::NotFound(_))
    ));
    assert!(matches!(
        s.load_body(MessageId(1)),
        Err(SpoolError::NotFound(_))
    ));
    let (pending, stats) = recover_all(s);
    assert!(pending.is_empty());
    assert_eq!(stats, RecoveryStats::default());
    // The campaign index entry went too: purging the campaign finds nothing.
    assert_eq!(s.purge_campaign(&CampaignId("c".into())).unwrap(), 0);
}

pub(crate) fn updates_survive_reopen_and_recovery_is_exact(h: &mut dyn Harness) {
    let m1 = store(
        h,
        1,
        Some("c"),
        &["a@x.org", "b@y.org", "c@x.org", "d@z.org"],
    );
    let m2 = store(h, 2, None, &["e@z.org"]);
    let m3 = store(h, 3, None, &["f@x.org", "g@y.org"]);
    let reply = StoredReply {
        code: 451,
        text: "4.2.0 try later".into(),
    };
    let due = Timestamp::from_secs(5_000);
    h.spool()
        .update(&[
            update("x.org", 1, 0, RecipientStatus::Delivered),
            update(
                "y.org",
                1,
                1,
                RecipientStatus::Deferred {
                    attempts: 2,
                    next_due: due,
                    last_reply: reply.clone(),
                },
            ),
            update("z.org", 1, 3, RecipientStatus::Bounced(reply.clone())),
            update("z.org", 2, 0, RecipientStatus::Expired),
            update("x.org", 3, 0, RecipientStatus::Delivered),
        ])
        .unwrap();
    h.spool().update(&[]).unwrap();
    h.reopen();
    let (pending, stats) = recover_all(h.spool());
    assert_eq!(
        pending,
        vec![
            (m1.id, 1, "y.org".into(), 2, due),
            (m1.id, 2, "x.org".into(), 0, m1.created),
            (m3.id, 1, "y.org".into(), 0, m3.created),
        ]
    );
    assert_eq!(
        stats,
        RecoveryStats {
            messages: 2,
            recipients: 3,
            removed: 1,
            corrupt: 0
        }
    );
    // Message 2 was entirely final: recovery removed it, and it stays removed.
    assert!(matches!(
        h.spool().load_meta(m2.id),
        Err(SpoolError::NotFound(_))
    ));
    h.reopen();
    let (again, stats) = recover_all(h.spool());
    assert_eq!(again, pending);
    assert_eq!(stats.removed, 0);
}

pub(crate) fn recovery_skips_and_counts_corrupt_records(h: &mut dyn Harness) {
    store(h, 1, None, &["a@x.org"]);
    store(h, 2, None, &["a@x.org"]);
    store(h, 3, None, &["a@x.org"]);
    h.put_raw_meta(MessageId(2), &[1, 2, 3]);
    // A well-formed meta filed under another message's key is corrupt too.
    let mut other = Vec::new();
    crate::model::codec::encode_meta(&sample(MessageId(9), None, &["z@q.org"]), &mut other);
    h.put_raw_meta(MessageId(3), &other);
    h.reopen();
    let (pending, stats) = recover_all(h.spool());
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].0, MessageId(1));
    assert_eq!((stats.messages, stats.corrupt), (1, 2));
    assert!(matches!(h.spool().load_meta(MessageId(2)),
            Err(e @ SpoolError::Corrupt { .. }) if e.is_permanent()));
    assert!(h.spool().remove(MessageId(2)).is_err());
}

pub(crate) fn purge_domain_and_campaign(h: &mut dyn Harness) {
    store(h, 1, Some("spring"), &["a@x.org", "b@y.org"]);
    store(h, 2, Some("summer"), &["a@x.org", "c@x.org.evil"]);
    store(h, 3, Some("spring"), &["c@z.org"]);
    store(h, 4, Some("spring2"), &["d@z.org"]);
    let s = h.spool();
    assert_eq!(s.purge_domain("x.org").unwrap(), 2);
    assert_eq!(s.purge_domain("nowhere.example").unwrap(), 0);
    assert_eq!(s.purge_campaign(&CampaignId("spring".into())).unwrap(), 2);
    h.reopen();
    let (pending, stats) = recover_all(h.spool());
    assert_eq!(
        pending
            .iter()
            .map(|p| (p.0, p.2.as_str()))
            .collect::<Vec<_>>(),
        vec![(MessageId(2), "x.org.evil"), (MessageId(4), "z.org")]
    );
    assert_eq!(stats.removed, 0);
    assert!(matches!(
        h.spool().load_meta(MessageId(1)),
        Err(SpoolError::NotFound(_))
    ));
    assert!(matches!(
        h.spool().load_body(MessageId(3)),
        Err(SpoolError::NotFound(_))
    ));
    assert_eq!(h.spool().purge_domain("x.org.evil").unwrap(), 1);
    let (_, stats) = recover_all(h.spool());
    assert_eq!(
        stats.removed, 1,
        "message 2 lost its last recipient to the purge"
    );
}

pub(crate) fn completion_records_and_counters(h: &mut dyn Harness) {
    let spring = CampaignId("spring".into());
    let m1 = store(h, 1, Some("spring"), &["a@x.org", "b@y.org", "c@y.org"]);
    store(h, 2, Some("spring"), &["d@x.org"]);
    store(h, 3, None, &["e@z.org"]);
    let bounce = StoredReply {
        code: 550,
        text: "5.1.1 no such user".into(),
    };
    let outcome = |s: &RecipientStatus| (spring.clone(), CampaignCounters::outcome(s));
    h.spool()
        .update_counted(
            &[
                update("x.org", 1, 0, RecipientStatus::Delivered),
                update("y.org", 1, 1, RecipientStatus::Bounced(bounce.clone())),
                update("y.org", 1, 2, RecipientStatus::Purged),
            ],
            &[
                outcome(&RecipientStatus::Delivered),
                outcome(&RecipientStatus::Bounced(bounce.clone())),
                outcome(&RecipientStatus::Purged),
            ],
        )
        .unwrap();
    assert_eq!(
        h.spool().load_statuses(&m1).unwrap(),
        vec![
            Some(RecipientStatus::Delivered),
            Some(RecipientStatus::Bounced(bounce.clone())),
            Some(RecipientStatus::Purged),
        ]
    );
    h.spool().remove(m1.id).unwrap();
    assert!(h
        .spool()
        .load_statuses(&m1)
        .unwrap()
        .iter()
        .all(Option::is_none));
    h.spool()
        .update(&[update("z.org", 3, 0, RecipientStatus::Expired)])
        .unwrap();
    h.reopen();
    let s = h.spool();
    // Counters: injections from the store batches, outcomes from the updates.
    let c = s.load_counters(&spring).unwrap().unwrap();
    assert_eq!(
        c,
        CampaignCounters {
            tenant: Some(crate::model::TenantId("acme".into())),
            messages: 2,
            recipients: 4,
            delivered: 1,
            bounced: 1,
            purged: 1,
            expired: 0,
        }
    );
    assert_eq!(s.load_counters(&CampaignId("other".into())).unwrap(), None);
    // The removed message left its completion record.
    let done = s.load_completed(m1.id).unwrap().unwrap();
    assert_eq!(
        (done.tenant.clone(), done.campaign.clone(), done.created),
        (m1.tenant.clone(), Some(spring.clone()), m1.created)
    );
    assert_eq!(
        done.recipients,
        vec![
            ("a@x.org".into(), "x.org".into(), RecipientStatus::Delivered),
            (
                "b@y.org".into(),
                "y.org".into(),
                RecipientStatus::Bounced(bounce)
            ),
            ("c@y.org".into(), "y.org".into(), RecipientStatus::Purged),
        ]
    );
    assert_eq!(
        s.load_completed(MessageId(2)).unwrap(),
        None,
        "still queued"
    );
    // Recovery removes message 3 (its only recipient expired) and keeps its record.
    let (pending, stats) = recover_all(s);
    assert_eq!((pending.len(), stats.removed), (1, 1));
    let three = s.load_completed(MessageId(3)).unwrap().unwrap();
    assert_eq!(three.recipients[0].2, RecipientStatus::Expired);
    // A purged recipient is final: message 2 with its only recipient purged is
    // not recovered, and leaves as purged.
    s.update(&[update("x.org", 2, 0, RecipientStatus::Purged)])
        .unwrap();
    h.reopen();
    let (pending, stats) = recover_all(h.spool());
    assert!(pending.is_empty());
    assert_eq!(stats.removed, 1);
    let two = h.spool().load_completed(MessageId(2)).unwrap().unwrap();
    assert_eq!(two.recipients[0].2, RecipientStatus::Purged);
}

pub(crate) fn settle_group_writes_results_and_retires_finished(h: &mut dyn Harness) {
    let spring = CampaignId("spring".into());
    // 1 finishes in this group with part of its results written earlier; 2
    // finishes with every result in the group, meta given; 3 stays queued.
    let m1 = store(h, 1, Some("spring"), &["a@x.org", "b@y.org"]);
    let m2 = store(h, 2, Some("spring"), &["c@x.org"]);
    let m3 = store(h, 3, None, &["d@z.org", "e@z.org"]);
    let bounce = StoredReply {
        code: 550,
        text: "5.1.1 no such user".into(),
    };
    h.spool()
        .update(&[update("x.org", 1, 0, RecipientStatus::Delivered)])
        .unwrap();
    let deferred = RecipientStatus::Deferred {
        attempts: 1,
        next_due: Timestamp::from_secs(2_000_000_000),
        last_reply: StoredReply {
            code: 451,
            text: "4.3.0 try later".into(),
        },
    };
    h.spool()
        .settle_group(
            &[
                update("y.org", 1, 1, RecipientStatus::Bounced(bounce.clone())),
                update("x.org", 2, 0, RecipientStatus::Delivered),
                update("z.org", 3, 0, RecipientStatus::Delivered),
                update("z.org", 3, 1, deferred.clone()),
            ],
            &[(
                spring.clone(),
                CampaignCounters::outcome(&RecipientStatus::Delivered),
            )],
            &[(m1.id, None), (m2.id, Some(Arc::new(m2.clone())))],
        )
        .unwrap();
    h.reopen();
    let s = h.spool();
    for id in [m1.id, m2.id] {
        assert!(matches!(s.load_meta(id), Err(SpoolError::NotFound(_))));
        assert!(matches!(s.load_body(id), Err(SpoolError::NotFound(_))));
    }
    assert!(s.load_statuses(&m1).unwrap().iter().all(Option::is_none));
    let one = s.load_completed(m1.id).unwrap().unwrap();
    assert_eq!(
        one.recipients,
        vec![
            ("a@x.org".into(), "x.org".into(), RecipientStatus::Delivered),
            (
                "b@y.org".into(),
                "y.org".into(),
                RecipientStatus::Bounced(bounce)
            ),
        ]
    );
    let two = s.load_completed(m2.id).unwrap().unwrap();
    assert_eq!(two.recipients[0].2, RecipientStatus::Delivered);
    assert_eq!(
        s.load_statuses(&m3).unwrap(),
        vec![Some(RecipientStatus::Delivered), Some(deferred)]
    );
    assert_eq!(s.load_counters(&spring).unwrap().unwrap().delivered, 1);
    let (pending, _) = recover_all(s);
    assert_eq!(pending.len(), 1, "only 3's deferred recipient is left");
    assert_eq!((pending[0].0, pending[0].1), (m3.id, 1));
}

pub(crate) fn pruning_drops_old_completion_records(h: &mut dyn Harness) {
    // Ids lead with their creation time: 1000 s, 2000 s, 3000 s.
    let at = |secs: u64| MessageId::from_parts(secs * 1000, 7, 9);
    for secs in [1000, 2000, 3000] {
        let id = at(secs);
        let meta = sample(id, None, &["a@x.org"]);
        h.spool()
            .store(NewMessage {
                body: Arc::from(body_of(id, 10)),
                meta,
            })
            .wait()
            .unwrap();
        h.spool().remove(id).unwrap();
        assert!(h.spool().load_completed(id).unwrap().is_some());
    }
    h.spool()
        .prune_completed(Timestamp::from_secs(2000))
        .unwrap();
    h.reopen();
    let s = h.spool();
    assert_eq!(s.load_completed(at(1000)).unwrap(), None);
    assert!(s.load_completed(at(2000)).unwrap().is_some(), "not older");
    assert!(s.load_completed(at(3000)).unwrap().is_some());
    s.prune_completed(Timestamp::from_secs(10_000)).unwrap();
    assert_eq!(s.load_completed(at(3000)).unwrap(), None);
}

/// The harness was built with a queue (or store) bound of about 64 KiB.
pub(crate) fn oversized_store_is_busy_and_bad_messages_invalid(h: &mut dyn Harness) {
    let s = h.spool();
    let big = sample(MessageId(1), None, &["a@x.org"]);
    let err = s
        .store(NewMessage {
            meta: big,
            body: Arc::from(vec![b'x'; 1 << 20]),
        })
        .wait()
        .unwrap_err();
    assert!(
        matches!(err, SpoolError::Busy) && err.is_transient(),
        "{err}"
    );
    let mut empty = sample(MessageId(2), None, &[]);
    empty.envelope.recipients.clear();
    let err = s
        .store(NewMessage {
            meta: empty,
            body: Arc::from(vec![]),
        })
        .wait()
        .unwrap_err();
    assert!(matches!(err, SpoolError::Invalid(_)) && err.is_permanent());
    store(h, 3, None, &["ok@x.org"]);
}

pub(crate) fn concurrent_stores_all_land(h: &mut dyn Harness) {
    let spool = h.spool();
    std::thread::scope(|scope| {
        for t in 0..8u128 {
            scope.spawn(move || {
                let tickets: Vec<_> = (0..50u128)
                    .map(|k| {
                        let id = 1000 + t * 100 + k;
                        let meta = sample(MessageId(id), None, &["a@x.org", "b@y.org"]);
                        spool.store(NewMessage {
                            body: Arc::from(body_of(meta.id, 300)),
                            meta,
                        })
                    })
                    .collect();
                for t in tickets {
                    t.wait().expect("store");
                }
            });
        }
    });
    h.reopen();
    let (pending, stats) = recover_all(h.spool());
    assert_eq!((stats.messages, stats.recipients), (400, 800));
    let ids: Vec<MessageId> = pending.iter().step_by(2).map(|p| p.0).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "oldest message first");
    for id in ids {
        assert_eq!(&h.spool().load_body(id).unwrap()[..], &body_of(id, 300)[..]);
    }
}

/// Declares one `#[test]` per suite case for the harness `$make` builds
/// (`$make: fn(max_queued_bytes: usize) -> impl Harness`).
macro_rules! spool_suite {
    ($make:expr) => {
        #[test]
        fn suite_store_load_remove() {
            $crate::spool::suite::store_load_remove(&mut $make(64 << 20));
        }
        #[test]
        fn suite_updates_survive_reopen_and_recovery_is_exact() {
            $crate::spool::suite::updates_survive_reopen_and_recovery_is_exact(&mut $make(
                64 << 20,
            ));
        }
        #[test]
        fn suite_recovery_skips_and_counts_corrupt_records() {
            $crate::spool::suite::recovery_skips_and_counts_corrupt_records(&mut $make(64 << 20));
        }
        #[test]
        fn suite_purge_domain_and_campaign() {
            $crate::spool::suite::purge_domain_and_campaign(&mut $make(64 << 20));
        }
        #[test]
        fn suite_completion_records_and_counters() {
            $crate::spool::suite::completion_records_and_counters(&mut $make(64 << 20));
        }
        #[test]
        fn suite_settle_group_writes_results_and_retires_finished() {
            $crate::spool::suite::settle_group_writes_results_and_retires_finished(&mut $make(
                64 << 20,
            ));
        }

        #[test]
        fn suite_pruning_drops_old_completion_records() {
            $crate::spool::suite::pruning_drops_old_completion_records(&mut $make(64 << 20));
        }
        #[test]
        fn suite_oversized_store_is_busy_and_bad_messages_invalid() {
            $crate::spool::suite::oversized_store_is_busy_and_bad_messages_invalid(&mut $make(
                64 << 10,
            ));
        }
        #[test]
        fn suite_concurrent_stores_all_land() {
            $crate::spool::suite::concurrent_stores_all_land(&mut $make(64 << 20));
        }
    };
}
pub(crate) use spool_suite;

/// The in-memory spool under the suite.
mod memory {
    use super::*;
    use crate::spool::memory::{MemorySpool, MemorySpoolConfig};

    struct Mem(MemorySpool);

    impl Harness for Mem {
        fn spool(&self) -> &dyn Spool {
            &self.0
        }
        fn reopen(&mut self) {}
        fn put_raw_meta(&self, id: MessageId, bytes: &[u8]) {
            self.0.put_raw_meta(id, bytes.to_vec());
        }
    }

    fn make(max_bytes: usize) -> Mem {
        Mem(MemorySpool::new(MemorySpoolConfig { max_bytes }))
    }

    spool_suite!(make);
}
