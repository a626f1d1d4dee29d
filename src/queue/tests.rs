//! Scheduler behaviour under a manual clock.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::model::message::tests::sample;
use crate::model::{CampaignId, MessageId, MessageMeta, Timestamp};
use crate::model::{RecipientStatus, StoredReply};
use crate::spool::memory::MemorySpool;
use crate::spool::{NewMessage, Spool, StateUpdate};

const T0: u64 = 1_700_000_000;
const MIN: u64 = 60;

fn setup() -> (Arc<ManualClock>, Scheduler) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(T0)));
    let config = SchedulerConfig {
        retry: RetryPolicy::new(
            [1, 5, 15, 30, 60, 120]
                .iter()
                .map(|m| Duration::from_secs(m * MIN))
                .collect(),
            0.0,
        )
        .unwrap(),
        jitter_seed: Some(1),
        ..Default::default()
    };
    (clock.clone(), Scheduler::new(config, clock))
}

/// A message created now (at the clock), with the given lifetime in seconds.
fn message(
    clock: &ManualClock,
    id: u128,
    campaign: Option<&str>,
    rcpts: &[String],
    life: u64,
) -> MessageMeta {
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let mut m = sample(MessageId(id), campaign, &refs);
    m.created = clock.now();
    m.expires = clock.now().saturating_add(Duration::from_secs(life));
    m
}

fn rcpts(domain: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i}@{domain}")).collect()
}

const DAY: u64 = 86_400;

#[test]
fn a_message_to_250_recipients_leaves_in_batches_of_100_100_50() {
    let (clock, s) = setup();
    let m = message(&clock, 1, None, &rcpts("big.example", 250), 5 * DAY);
    assert_eq!(s.enqueue(&m.pending()), 250);
    let sizes: Vec<usize> = std::iter::from_fn(|| s.take_batch("big.example"))
        .map(|b| {
            assert_eq!(b.id, MessageId(1));
            b.recipients.len()
        })
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
    assert_eq!(s.stats().in_flight, 250);
}

#[test]
fn batches_never_mix_messages_or_domains_and_keep_envelope_order() {
    let (clock, s) = setup();
    let mut list = rcpts("a.example", 3);
    list.extend(rcpts("b.example", 2));
    list.push("x@A.example".into());
    s.enqueue(&message(&clock, 1, None, &list, DAY).pending());
    s.enqueue(&message(&clock, 2, None, &rcpts("a.example", 2), DAY).pending());
    let b = s.take_batch("a.example").unwrap();
    assert_eq!(
        (
            b.id,
            b.recipients.iter().map(|r| r.rcpt).collect::<Vec<_>>()
        ),
        (MessageId(1), vec![0, 1, 2, 5])
    );
    let b2 = s.take_batch("a.example").unwrap();
    assert_eq!((b2.id, b2.recipients.len()), (MessageId(2), 2));
    assert!(s.take_batch("a.example").is_none());
    assert_eq!(
        s.take_batch_max("b.example", 1).unwrap().recipients.len(),
        1
    );
    // The limit per call overrides the default.
}

#[test]
fn take_next_lets_domains_take_turns() {
    let (clock, s) = setup();
    s.enqueue(&message(&clock, 1, None, &rcpts("a.example", 1), DAY).pending());
    s.enqueue(&message(&clock, 2, None, &rcpts("a.example", 1), DAY).pending());
    s.enqueue(&message(&clock, 3, None, &rcpts("b.example", 1), DAY).pending());
    let order: Vec<String> = std::iter::from_fn(|| s.take_next())
        .map(|b| b.domain.to_string())
        .collect();
    assert_eq!(order, ["a.example", "b.example", "a.example"]);
}

#[test]
fn deferred_recipients_follow_the_retry_schedule() {
    let (clock, s) = setup();
    s.enqueue(&message(&clock, 1, None, &rcpts("slow.example", 2), 5 * DAY).pending());
    for (tried, delay) in [1, 5, 15].into_iter().enumerate() {
        let expected_attempts = tried as u16;
        let b = s.take_batch("slow.example").unwrap();
        assert!(b.recipients.iter().all(|r| r.attempts == expected_attempts));
        let settled = s.settle(b, &[Outcome::Deferred, Outcome::Deferred]);
        let due = clock.now().saturating_add(Duration::from_secs(delay * MIN));
        assert_eq!(
            settled.decisions,
            vec![
                Decision::Retry {
                    attempts: expected_attempts + 1,
                    due
                };
                2
            ]
        );
        assert!(!settled.finished);
        assert_eq!(s.domain_stats("slow.example").unwrap().deferred, 2);
        clock.advance(Duration::from_secs(delay * MIN - 1));
        assert_eq!(s.tick().promoted, 0);
        assert!(
            s.take_batch("slow.example").is_none(),
            "not before its time"
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(s.tick().promoted, 2);
    }
    let b = s.take_batch("slow.example").unwrap();
    let settled = s.settle(b, &[Outcome::Delivered, Outcome::Bounced]);
    assert_eq!(settled.decisions, vec![Decision::Final; 2]);
    assert!(settled.finished);
    assert_eq!(
        s.stats(),
        QueueStats {
            domains: 1,
            ..Default::default()
        }
    );
}

/// With jitter on, recipients that failed together still retry together: one
/// batch (one transaction) again, not one per recipient.
#[test]
fn a_deferred_batch_retries_as_one_batch_despite_jitter() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(T0)));
    let config = SchedulerConfig {
        retry: RetryPolicy::new(vec![Duration::from_secs(10 * MIN)], 0.5).unwrap(),
        jitter_seed: Some(7),
        ..Default::default()
    };
    let s = Scheduler::new(config, clock.clone());
    s.enqueue(&message(&clock, 1, None, &rcpts("slow.example", 5), DAY).pending());
    let b = s.take_batch("slow.example").unwrap();
    let settled = s.settle(b, &[Outcome::Deferred; 5]);
    let dues: Vec<_> = settled
        .decisions
        .iter()
        .map(|d| match d {
            Decision::Retry { due, .. } => *due,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(dues.iter().all(|d| *d == dues[0]), "{dues:?}");
    clock.advance(Duration::from_secs(15 * MIN));
    assert_eq!(s.tick().promoted, 5);
    assert_eq!(s.take_batch("slow.example").unwrap().recipients.len(), 5);
}

#[test]
fn not_attempted_recipients_go_back_first_without_an_attempt() {
    let (clock, s) = setup();
    s.enqueue(&message(&clock, 1, None, &rcpts("d.example", 3), DAY).pending());
    s.enqueue(&message(&clock, 2, None, &rcpts("d.example", 1), DAY).pending());
    let b = s.take_batch("d.example").unwrap();
    let settled = s.settle(
        b,
        &[
            Outcome::Delivered,
            Outcome::NotAttempted,
            Outcome::NotAttempted,
        ],
    );
    assert_eq!(
        settled.decisions[1..],
        [Decision::Requeued, Decision::Requeued]
    );
    let b = s.take_batch("d.example").unwrap();
    assert_eq!(b.id, MessageId(1));
    assert_eq!(
        b.recipients,
        vec![
            BatchRecipient {
                rcpt: 1,
                attempts: 0
            },
            BatchRecipient {
                rcpt: 2,
                attempts: 0
            }
        ]
    );
    // Missing outcomes (connection lost mid-batch) count as deferred.
    let settled = s.settle(b, &[Outcome::Delivered]);
    assert!(matches!(
        settled.decisions[1],
        Decision::Retry { attempts: 1, .. }
    ));
}

#[test]
fn ready_recipients_expire_and_are_never_handed_out_late() {
    let (clock, s) = setup();
    s.enqueue(&message(&clock, 1, None, &rcpts("r.example", 2), 100).pending());
    s.enqueue(&message(&clock, 2, None, &rcpts("held.example", 1), 100).pending());
    s.suspend_domain("held.example");
    clock.advance(Duration::from_secs(100));
    assert!(s.take_batch("r.example").is_none(), "expired at take");
    // The suspended domain's recipient is found by the sweep.
    clock.advance(Duration::from_secs(10));
    let tick = s.tick();
    let mut got: Vec<_> = tick
        .expired
        .iter()
        .map(|e| (e.id, e.rcpt, e.finished))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (MessageId(1), 0, false),
            (MessageId(1), 1, true),
            (MessageId(2), 0, true)
        ]
    );
    assert_eq!(s.stats().messages, 0);
    assert_eq!(s.stats().ready, 0);
}

#[test]
fn deferred_recipients_expire_exactly_at_expiry_not_at_their_retry() {
    let (clock, s) = setup();
    s.enqueue(&message(&clock, 1, None, &rcpts("d.example", 1), 30 * MIN).pending());
    clock.advance(Duration::from_secs(29 * MIN));
    let b = s.take_batch("d.example").unwrap();
    let expires = b.expires;
    // A first failure would retry in 1 minute: exactly at expiry, so it is capped there.
    let settled = s.settle(b, &[Outcome::Deferred]);
    assert_eq!(
        settled.decisions,
        [Decision::Retry {
            attempts: 1,
            due: expires
        }]
    );
    clock.advance(Duration::from_secs(MIN - 1));
    assert!(s.tick().expired.is_empty());
    clock.advance(Duration::from_secs(1));
    let tick = s.tick();
    assert_eq!(tick.expired.len(), 1);
    assert!(tick.expired[0].finished);
    assert_eq!(tick.promoted, 0);
    assert!(s.take_batch("d.example").is_none());
}

#[test]
fn results_arriving_after_expiry_expire_the_recipient() {
    let (clock, s) = setup();
    s.enqueue(&message(&clock, 1, None, &rcpts("d.example", 2), 60).pending());
    let b = s.take_batch("d.example").unwrap();
    clock.advance(Duration::from_secs(61));
    let settled = s.settle(b, &[Outcome::Deferred, Outcome::Delivered]);
    assert_eq!(settled.decisions, [Decision::Expired, Decision::Final]);
    assert!(settled.finished);
    // Recovering a message already past its expiry reports every recipient expired.
    let late = message(&clock, 2, None, &rcpts("d.example", 2), 0);
    assert_eq!(s.enqueue(&late.pending()), 0);
    assert_eq!(s.tick().expired.iter().filter(|e| e.finished).count(), 1);
}

#[test]
fn suspend_resume_and_purge_a_domain() {
    let (clock, s) = setup();
    s.enqueue(
        &message(
            &clock,
            1,
            None,
            &["a@p.example".into(), "b@q.example".into()],
            DAY,
        )
        .pending(),
    );
    s.enqueue(&message(&clock, 2, None, &rcpts("p.example", 3), DAY).pending());
    s.suspend_domain("p.example");
    assert!(s.take_batch("p.example").is_none());
    assert_eq!(s.take_next().unwrap().domain.as_ref(), "q.example");
    assert!(s.take_next().is_none());
    assert!(s.resume_domain("p.example"));
    assert_eq!(s.take_next().unwrap().id, MessageId(1));
    let report = s.purge_domain("p.example");
    assert_eq!(
        (report.recipients, report.finished),
        (3, vec![MessageId(2)])
    );
    assert_eq!(
        report
            .purged
            .iter()
            .map(|p| (p.id, p.rcpt, &*p.domain, p.finished))
            .collect::<Vec<_>>(),
        [
            (MessageId(2), 0, "p.example", false),
            (MessageId(2), 1, "p.example", false),
            (MessageId(2), 2, "p.example", true)
        ]
    );
    assert!(s.take_batch("p.example").is_none());
}

#[test]
fn suspend_resume_and_purge_a_campaign() {
    let (clock, s) = setup();
    s.enqueue(&message(&clock, 1, Some("spring"), &rcpts("x.example", 2), DAY).pending());
    s.enqueue(&message(&clock, 2, Some("summer"), &rcpts("x.example", 1), DAY).pending());
    s.enqueue(&message(&clock, 3, Some("spring"), &rcpts("y.example", 1), DAY).pending());
    let spring = CampaignId("spring".into());
    s.suspend_campaign(&spring);
    let taken: Vec<MessageId> = std::iter::from_fn(|| s.take_next()).map(|b| b.id).collect();
    assert_eq!(taken, [MessageId(2)]);
    assert_eq!(s.stats().held, 3);
    // New arrivals of a suspended campaign are held too.
    s.enqueue(&message(&clock, 4, Some("spring"), &rcpts("z.example", 1), DAY).pending());
    assert!(s.take_batch("z.example").is_none());
    assert_eq!(s.resume_campaign(&spring), 4);
    let mut taken: Vec<MessageId> = std::iter::from_fn(|| s.take_next()).map(|b| b.id).collect();
    taken.sort();
    assert_eq!(taken, [MessageId(1), MessageId(3), MessageId(4)]);

    let (clock, s) = setup();
    s.enqueue(&message(&clock, 1, Some("spring"), &rcpts("x.example", 2), DAY).pending());
    s.enqueue(&message(&clock, 2, Some("summer"), &rcpts("x.example", 1), DAY).pending());
    let b = s.take_batch("x.example").unwrap(); // message 1 in flight
    s.enqueue(&message(&clock, 3, Some("spring"), &rcpts("y.example", 1), DAY).pending());
    let report = s.purge_campaign(&spring);
    assert_eq!(
        (report.recipients, &report.finished),
        (1, &vec![MessageId(3)])
    );
    assert_eq!(
        (
            &*report.purged[0].domain,
            report.purged[0].id,
            report.purged[0].finished
        ),
        ("y.example", MessageId(3), true)
    );
    assert!(s.settle(b, &[Outcome::Delivered; 2]).finished);
    assert_eq!(
        s.purge_campaign(&CampaignId("none".into())),
        PurgeReport::default()
    );
    assert_eq!(s.stats().messages, 1);
}

#[test]
fn where_a_message_and_a_campaign_stand() {
    let (clock, s) = setup();
    let spring = CampaignId("spring".into());
    let m1 = message(
        &clock,
        1,
        Some("spring"),
        &[
            "a@x.example".into(),
            "b@x.example".into(),
            "c@y.example".into(),
        ],
        DAY,
    );
    s.enqueue(&m1.pending());
    s.enqueue(&message(&clock, 2, Some("spring"), &rcpts("y.example", 2), DAY).pending());
    assert_eq!(s.message_queue(MessageId(9), &["x.example"]), None);
    // Take x.example's batch (2 in flight), defer one of them.
    let b = s.take_batch("x.example").unwrap();
    let settled = s.settle(b, &[Outcome::Deferred, Outcome::Delivered]);
    let Decision::Retry { due, .. } = settled.decisions[0] else {
        panic!("{settled:?}");
    };
    let view = s
        .message_queue(MessageId(1), &["x.example", "y.example"])
        .unwrap();
    assert_eq!(view.remaining, 2);
    let mut queued = view.queued.clone();
    queued.sort_by_key(|q| q.0);
    assert_eq!(
        queued,
        vec![
            (
                0,
                QueuedAs::Deferred(Timestamp::from_secs(due.as_secs_ceil()))
            ),
            (2, QueuedAs::Ready)
        ]
    );
    // y.example's first batch (message 1's c) goes in flight.
    let b = s.take_batch("y.example").unwrap();
    assert_eq!(b.id, MessageId(1));
    let view = s
        .message_queue(MessageId(1), &["x.example", "y.example"])
        .unwrap();
    assert_eq!((view.remaining, view.queued.len()), (2, 1), "c in flight");
    assert_eq!(
        s.campaign_queue(&spring),
        Some(CampaignQueue {
            queued: 2,
            deferred: 1,
            in_flight: 1,
            suspended: false
        })
    );
    s.suspend_campaign(&spring);
    assert!(s.campaign_queue(&spring).unwrap().suspended);
    assert!(s.is_campaign_suspended(&spring));
    assert_eq!(s.campaign_queue(&CampaignId("none".into())), None);
    let mut listing = s.domain_queues(None);
    listing.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(listing.len(), 2);
    assert_eq!((listing[1].1.ready, listing[1].1.in_flight), (2, 1));
    assert_eq!(s.domain_queues(Some("x.")).len(), 1);
    assert!(s.domain_queues(Some("z.")).is_empty());
    s.settle(b, &[Outcome::Delivered]);
}

#[test]
fn idle_domains_are_reaped_busy_or_suspended_ones_are_not() {
    let (clock, s) = setup();
    s.enqueue(&message(&clock, 1, None, &rcpts("idle.example", 1), DAY).pending());
    s.enqueue(&message(&clock, 2, None, &rcpts("busy.example", 1), DAY).pending());
    s.suspend_domain("paused.example");
    let b = s.take_batch("idle.example").unwrap();
    s.settle(b, &[Outcome::Delivered]);
    let _in_flight = s.take_batch("busy.example").unwrap();
    assert_eq!(s.reap_idle(), 0, "not idle long enough");
    clock.advance(Duration::from_secs(600));
    assert_eq!(s.tick().reaped, 1);
    assert!(s.domain_stats("idle.example").is_none());
    assert!(s.domain_stats("busy.example").is_some());
    assert!(s.domain_stats("paused.example").unwrap().suspended);
    // A reaped domain comes back on demand.
    s.enqueue(&message(&clock, 3, None, &rcpts("idle.example", 1), DAY).pending());
    assert!(s.take_batch("idle.example").is_some());
}

#[test]
fn recovery_from_the_spool_restores_attempts_and_due_times() {
    let (clock, s) = setup();
    let spool = MemorySpool::default();
    let mut list = rcpts("a.example", 2);
    list.push("c@b.example".into());
    let meta = message(&clock, 1, Some("spring"), &list, DAY);
    spool
        .store(NewMessage {
            meta: meta.clone(),
            body: Arc::from(&b"hi"[..]),
        })
        .wait()
        .unwrap();
    let due = clock.now().saturating_add(Duration::from_secs(300));
    let reply = StoredReply {
        code: 451,
        text: "4.3.0 later".into(),
    };
    spool
        .update(&[
            StateUpdate {
                domain: "a.example".into(),
                id: MessageId(1),
                rcpt: 0,
                status: RecipientStatus::Delivered,
            },
            StateUpdate {
                domain: "a.example".into(),
                id: MessageId(1),
                rcpt: 1,
                status: RecipientStatus::Deferred {
                    attempts: 3,
                    next_due: due,
                    last_reply: reply,
                },
            },
        ])
        .unwrap();
    let stats = spool
        .recover(&mut |m| {
            s.enqueue(&m);
        })
        .unwrap();
    assert_eq!((stats.messages, stats.recipients), (1, 2));
    assert_eq!(s.stats().ready, 1);
    assert_eq!(s.stats().deferred, 1);
    assert_eq!(
        s.take_batch("b.example").unwrap().recipients,
        [BatchRecipient {
            rcpt: 2,
            attempts: 0
        }]
    );
    clock.advance(Duration::from_secs(300));
    s.tick();
    assert_eq!(
        s.take_batch("a.example").unwrap().recipients,
        [BatchRecipient {
            rcpt: 1,
            attempts: 3
        }]
    );
}

#[test]
fn concurrent_enqueue_take_and_settle_finish_every_message() {
    let (clock, s) = setup();
    let s = Arc::new(s);
    let producers: Vec<_> = (0..4u128)
        .map(|t| {
            let (s, clock) = (s.clone(), clock.clone());
            std::thread::spawn(move || {
                for i in 0..500u128 {
                    let list = vec![
                        format!("a@d{}.example", i % 7),
                        format!("b@d{}.example", i % 5),
                    ];
                    s.enqueue(&message(&clock, t << 32 | i, None, &list, DAY).pending());
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                let (mut finished, mut idle) = (0, 0);
                while idle < 10_000 {
                    match s.take_next() {
                        Some(b) => {
                            let n = b.recipients.len();
                            finished += s.settle(b, &vec![Outcome::Delivered; n]).finished as usize;
                            idle = 0;
                        }
                        None => idle += 1,
                    }
                }
                finished
            })
        })
        .collect();
    producers.into_iter().for_each(|p| p.join().unwrap());
    let finished: usize = consumers.into_iter().map(|c| c.join().unwrap()).sum();
    while let Some(b) = s.take_next() {
        let n = b.recipients.len();
        s.settle(b, &vec![Outcome::Delivered; n]);
    }
    let stats = s.stats();
    assert_eq!((stats.messages, stats.ready, stats.in_flight), (0, 0, 0));
    assert!(finished <= 2_000);
}
