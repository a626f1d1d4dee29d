//! Status and operator controls through the handle: message status while queued,
//! after removal and for unknown ids; campaign counters, across a restart of a
//! RocksDB spool; purges that do not come back; suspend and resume; the queue
//! listing; pruning of old completion records.

use super::*;
use crate::model::{CampaignId, MessageId, RecipientStatus, TenantId, Timestamp};
use crate::queue::ManualClock;
use crate::spool::{RocksSpool, Spool, SpoolOptions};

/// A message from `s@src.test` to `rcpts`, in `campaign` of tenant acme.
fn campaign_msg(rcpts: &[&str], campaign: Option<&str>, n: usize) -> Injection {
    let mut m = Injection::new("s@src.test", rcpts.iter().copied(), body(n));
    m.campaign = campaign.map(|c| CampaignId(c.into()));
    m.tenant = Some(TenantId("acme".into()));
    m
}

/// The state of `address` in a status.
fn state_of<'a>(s: &'a MessageStatus, address: &str) -> &'a RecipientView {
    s.recipients
        .iter()
        .find(|r| r.recipient == address)
        .unwrap_or_else(|| panic!("{address} not in {s:?}"))
}

/// A RocksDB spool in the world's directory.
fn rocks(w: &World) -> Arc<RocksSpool> {
    let dir = w.log.parent().unwrap().join("rocks");
    Arc::new(RocksSpool::open(dir, SpoolOptions::default()).unwrap())
}

/// Shuts the engine down and waits until it let go of the spool, so the RocksDB
/// directory can be opened again.
async fn stop(engine: EngineHandle, spool: Arc<RocksSpool>) {
    engine.shutdown().await;
    drop(engine);
    let deadline = std::time::Instant::now() + WAIT;
    let mut spool = spool;
    loop {
        match Arc::try_unwrap(spool) {
            Ok(s) => {
                drop(s);
                return;
            }
            Err(s) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "engine kept the spool"
                );
                spool = s;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_status_while_queued_after_removal_and_unknown() {
    let w = World::start(Setup::default()).await;
    let engine = w.engine().await;
    engine.suspend_domain("a.test");
    let rcpts = ["x@a.test", "y@b.test", "bounce1@b.test", "defer1@c.test"];
    let id = engine
        .inject(campaign_msg(&rcpts, Some("acme:spring"), 1))
        .await
        .unwrap();
    engine
        .wait_until(WAIT, |s| {
            s.delivered == 1 && s.bounced == 1 && s.deferred >= 1
        })
        .await
        .unwrap();
    let s = engine
        .message_status(id)
        .await
        .unwrap()
        .expect("queued message");
    assert_eq!(s.id, id.to_string());
    assert_eq!(s.state, "queued");
    assert_eq!(
        (s.tenant.as_deref(), s.campaign.as_deref()),
        (Some("acme"), Some("acme:spring"))
    );
    assert!(s.created.ends_with('Z') && s.expires > s.created);
    assert_eq!(state_of(&s, "x@a.test").state, "queued");
    assert_eq!(state_of(&s, "y@b.test").state, "delivered");
    let bounced = state_of(&s, "bounce1@b.test");
    assert_eq!(bounced.state, "bounced");
    assert!(
        bounced
            .last_reply
            .as_deref()
            .unwrap()
            .starts_with("550 5.1.1"),
        "{bounced:?}"
    );
    let deferred = state_of(&s, "defer1@c.test");
    assert!(
        matches!(deferred.state, "deferred" | "in_flight" | "queued"),
        "{deferred:?}"
    );
    assert!(deferred.attempts >= 1, "{deferred:?}");
    assert!(deferred.last_reply.as_deref().unwrap().starts_with("450"));
    assert_eq!(
        (s.counts.queued, s.counts.delivered, s.counts.bounced),
        (1, 1, 1),
        "{:?}",
        s.counts
    );
    assert_eq!(
        s.counts.deferred + s.counts.in_flight + s.counts.queued,
        2,
        "{:?}",
        s.counts
    );

    // Let a.test go; purge the deferred recipient's domain so the message can end.
    assert!(engine.resume_domain("a.test"));
    engine.wait_until(WAIT, |s| s.delivered == 2).await.unwrap();
    let purged = engine.purge_domain("c.test").await.unwrap();
    // The deferred recipient may be in flight (retried every second): then it
    // settles normally and a later purge takes it.
    let mut purged_total = purged.recipients;
    while purged_total == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        purged_total += engine.purge_domain("c.test").await.unwrap().recipients;
    }
    engine.wait_idle(WAIT).await.unwrap();
    assert_eq!(w.spool.message_count(), 0, "finished message removed");
    let s = engine
        .message_status(id)
        .await
        .unwrap()
        .expect("completion record");
    assert_eq!(s.state, "completed");
    assert_eq!(s.campaign.as_deref(), Some("acme:spring"));
    assert_eq!(
        (
            s.counts.delivered,
            s.counts.bounced,
            s.counts.purged,
            s.counts.queued + s.counts.deferred + s.counts.in_flight
        ),
        (2, 1, 1, 0),
        "{:?}",
        s.counts
    );
    assert_eq!(state_of(&s, "x@a.test").state, "delivered");
    assert_eq!(state_of(&s, "defer1@c.test").state, "purged");
    assert!(state_of(&s, "bounce1@b.test")
        .last_reply
        .as_deref()
        .unwrap()
        .contains("5.1.1"));
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["recipients"][0]["state"], "delivered");
    assert_eq!(json["counts"]["purged"], 1);

    assert!(engine
        .message_status(MessageId(12345))
        .await
        .unwrap()
        .is_none());
    let c = engine
        .campaign_status(&CampaignId("acme:spring".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.messages, c.recipients, c.tenant.as_deref(), c.suspended),
        (1, 4, Some("acme"), false)
    );
    assert_eq!(
        (
            c.counts.delivered,
            c.counts.bounced,
            c.counts.purged,
            c.counts.queued
        ),
        (2, 1, 1, 0)
    );
    assert!(engine
        .campaign_status(&CampaignId("nope".into()))
        .await
        .unwrap()
        .is_none());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_counters_and_completions_survive_a_restart() {
    let w = World::start(Setup::default()).await;
    let spool = rocks(&w);
    let engine = w.engine_on(spool.clone()).await;
    let spring = CampaignId("spring".into());
    let mut ids = Vec::new();
    for i in 0..3 {
        let rcpts = [format!("r{i}@a.test"), format!("bounce{i}@b.test")];
        let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        ids.push(
            engine
                .inject(campaign_msg(&rcpts, Some("spring"), i))
                .await
                .unwrap(),
        );
    }
    let stats = engine.wait_idle(WAIT).await.unwrap();
    assert_eq!((stats.delivered, stats.bounced), (3, 3), "{stats:?}");
    let before = engine.campaign_status(&spring).await.unwrap().unwrap();
    assert_eq!((before.messages, before.recipients), (3, 6), "{before:?}");
    assert_eq!((before.counts.delivered, before.counts.bounced), (3, 3));
    stop(engine, spool).await;

    let spool = rocks(&w);
    let engine = w.engine_on(spool.clone()).await;
    let after = engine.campaign_status(&spring).await.unwrap().unwrap();
    assert_eq!(
        (
            after.messages,
            after.recipients,
            after.counts.delivered,
            after.counts.bounced,
            after.counts.queued
        ),
        (3, 6, 3, 3, 0),
        "{after:?}"
    );
    assert_eq!(after.tenant.as_deref(), Some("acme"));
    for id in &ids {
        let s = engine.message_status(*id).await.unwrap().unwrap();
        assert_eq!(s.state, "completed");
        assert_eq!((s.counts.delivered, s.counts.bounced), (1, 1));
    }
    // More of the campaign after the restart adds to the same counters.
    engine
        .inject(campaign_msg(&["late@a.test"], Some("spring"), 9))
        .await
        .unwrap();
    engine.wait_idle(WAIT).await.unwrap();
    let more = engine.campaign_status(&spring).await.unwrap().unwrap();
    assert_eq!(
        (more.messages, more.recipients, more.counts.delivered),
        (4, 7, 4)
    );
    stop(engine, spool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_leave_the_spool_and_do_not_come_back_after_a_restart() {
    let w = World::start(Setup::default()).await;
    let spool = rocks(&w);
    let engine = w.engine_on(spool.clone()).await;
    engine.suspend_domain("a.test");
    engine.suspend_domain("other.test");
    let fall = CampaignId("fall".into());
    let inject = |rcpts: &'static [&'static str], campaign: Option<&'static str>, n| {
        let engine = engine.clone();
        async move {
            engine
                .inject(campaign_msg(rcpts, campaign, n))
                .await
                .unwrap()
        }
    };
    let m1 = inject(&["r1@a.test", "r2@a.test"], None, 1).await;
    let m2 = inject(&["r3@a.test", "r4@other.test"], Some("fall"), 2).await;
    let m3 = inject(&["r5@other.test"], Some("fall"), 3).await;
    let m4 = inject(&["r6@other.test"], Some("winter"), 4).await;
    let m5 = inject(&["r7@a.test", "r8@other.test"], None, 5).await;

    let by_domain = engine.purge_domain("a.test").await.unwrap();
    assert_eq!(
        (by_domain.recipients, by_domain.messages_removed),
        (4, 1),
        "r1, r2 (m1 removed), r3, r7"
    );
    let by_campaign = engine.purge_campaign(&fall).await.unwrap();
    assert_eq!(
        (by_campaign.recipients, by_campaign.messages_removed),
        (2, 2),
        "r4, r5: m2 and m3 removed"
    );
    assert_eq!(engine.purge_campaign(&fall).await.unwrap().recipients, 0);
    engine.wait_idle(WAIT).await.unwrap();

    let s = engine.message_status(m2).await.unwrap().unwrap();
    assert_eq!((s.state, s.counts.purged), ("completed", 2));
    let s = engine.message_status(m5).await.unwrap().unwrap();
    assert_eq!(s.state, "queued");
    assert_eq!(state_of(&s, "r7@a.test").state, "purged");
    assert_eq!(state_of(&s, "r8@other.test").state, "queued");
    let c = engine.campaign_status(&fall).await.unwrap().unwrap();
    assert_eq!(
        (c.messages, c.recipients, c.counts.purged, c.counts.queued),
        (2, 3, 3, 0)
    );
    assert!(matches!(
        spool.load_meta(m1),
        Err(crate::spool::SpoolError::NotFound(_))
    ));
    assert_eq!(
        spool.load_statuses(&spool.load_meta(m5).unwrap()).unwrap()[0],
        Some(RecipientStatus::Purged)
    );
    // One log line per purged recipient, with the usual fields.
    let purged = w.events("purged");
    let mut who: Vec<&str> = purged
        .iter()
        .map(|v| v["recipient"].as_str().unwrap())
        .collect();
    who.sort();
    assert_eq!(
        who,
        [
            "r1@a.test",
            "r2@a.test",
            "r3@a.test",
            "r4@other.test",
            "r5@other.test",
            "r7@a.test"
        ]
    );
    let e = purged
        .iter()
        .find(|v| v["recipient"] == "r4@other.test")
        .unwrap();
    assert_eq!(
        (e["domain"].as_str(), e["message_id"].as_str()),
        (Some("other.test"), Some(m2.to_string().as_str()))
    );
    assert_eq!(e["attempt"], 0);
    assert!(e["ts"].is_string() && e["site"].is_null() && e["queue_time_ms"].is_u64());
    stop(engine, spool).await;

    // After a restart (suspensions are not kept) only m4 and m5's r8 remain.
    let spool = rocks(&w);
    let engine = w.engine_on(spool.clone()).await;
    let stats = engine.wait_idle(WAIT).await.unwrap();
    assert_eq!((stats.recovered, stats.delivered), (2, 2), "{stats:?}");
    assert_eq!(
        w.sink.state.recipients(),
        0,
        "nothing purged from a.test went"
    );
    let mut got: Vec<String> = w
        .other
        .state
        .messages
        .lock()
        .unwrap()
        .iter()
        .flat_map(|m| m.rcpts.clone())
        .collect();
    got.sort();
    assert_eq!(got, ["r6@other.test", "r8@other.test"]);
    for id in [m1, m2, m3, m4, m5] {
        let s = engine.message_status(id).await.unwrap().unwrap();
        assert_eq!(s.state, "completed", "{s:?}");
    }
    let s = engine.message_status(m5).await.unwrap().unwrap();
    assert_eq!((s.counts.purged, s.counts.delivered), (1, 1));
    stop(engine, spool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_holds_and_resume_releases() {
    let w = World::start(Setup::default()).await;
    let engine = w.engine().await;
    let summer = CampaignId("summer".into());
    engine.suspend_campaign(&summer);
    engine.suspend_domain("B.test");
    engine
        .inject(campaign_msg(&["h1@a.test", "h2@c.test"], Some("summer"), 1))
        .await
        .unwrap();
    engine
        .inject(campaign_msg(&["free@a.test"], None, 2))
        .await
        .unwrap();
    engine
        .inject(campaign_msg(&["d1@b.test"], None, 3))
        .await
        .unwrap();
    engine.wait_until(WAIT, |s| s.delivered == 1).await.unwrap();
    // Give the dispatcher passes to (not) take the held ones.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(engine.stats().delivered, 1);
    let c = engine.campaign_status(&summer).await.unwrap().unwrap();
    assert!(c.suspended);
    assert_eq!((c.counts.queued, c.counts.delivered), (2, 0), "{c:?}");
    let listing = engine.queue_listing(None, 10);
    let b = listing
        .domains
        .iter()
        .find(|d| d.domain == "b.test")
        .unwrap();
    assert!(b.suspended && b.ready == 1, "{b:?}");
    assert_eq!(listing.held, 2);

    assert_eq!(engine.resume_campaign(&summer), 2);
    assert!(engine.resume_domain("b.test"));
    assert!(!engine.resume_domain("b.test"), "already resumed");
    let stats = engine.wait_idle(WAIT).await.unwrap();
    assert_eq!(stats.delivered, 4, "{stats:?}");
    let c = engine.campaign_status(&summer).await.unwrap().unwrap();
    assert!(!c.suspended);
    assert_eq!((c.counts.queued, c.counts.delivered), (0, 2));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_listing_shows_domains_with_their_sites() {
    let w = World::start(Setup::default()).await;
    let engine = w.engine().await;
    // b.test gets routed (and so has a site) by a first delivery; c.test never is.
    engine
        .inject(campaign_msg(&["first@b.test"], None, 1))
        .await
        .unwrap();
    engine.wait_idle(WAIT).await.unwrap();
    engine.suspend_domain("b.test");
    engine.suspend_domain("c.test");
    for i in 0..3 {
        let rcpt = format!("q{i}@b.test");
        engine
            .inject(campaign_msg(&[rcpt.as_str()], None, i))
            .await
            .unwrap();
    }
    engine
        .inject(campaign_msg(&["q@c.test"], None, 9))
        .await
        .unwrap();
    let listing = engine.queue_listing(None, 100);
    assert_eq!((listing.ready, listing.messages), (4, 4), "{listing:?}");
    assert!(listing.domains_total >= 2);
    let names: Vec<&str> = listing
        .domains
        .iter()
        .filter(|d| d.ready > 0)
        .map(|d| d.domain.as_str())
        .collect();
    assert_eq!(names, ["b.test", "c.test"], "largest first");
    let b = &listing.domains[0];
    assert_eq!(
        (b.site.as_deref(), b.ready, b.suspended),
        (Some("mx.sink.test"), 3, true)
    );
    let c = &listing.domains[1];
    assert_eq!((c.site.as_deref(), c.ready), (None, 1));
    let site = listing
        .sites
        .iter()
        .find(|s| s.site == "mx.sink.test")
        .unwrap();
    assert_eq!((site.domains, site.ready), (1, 3), "{site:?}");
    assert!(!listing.sites.iter().any(|s| s.site.is_empty()));

    let only_c = engine.queue_listing(Some("c."), 100);
    assert_eq!(only_c.domains_total, 1);
    assert_eq!(only_c.domains[0].domain, "c.test");
    assert_eq!(only_c.ready, 1);
    assert!(only_c.sites.is_empty(), "c.test is not routed");
    let top = engine.queue_listing(None, 1);
    assert_eq!(top.domains.len(), 1);
    assert_eq!(top.domains[0].domain, "b.test");
    let json = serde_json::to_value(&top).unwrap();
    assert_eq!(json["domains"][0]["site"], "mx.sink.test");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_completion_records_are_pruned() {
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let w = World::start(Setup {
        clock: Some(clock.clone()),
        ..Setup::default()
    })
    .await;
    let engine = w.engine().await;
    let old = engine
        .inject(campaign_msg(&["old@a.test"], Some("c"), 1))
        .await
        .unwrap();
    engine.wait_idle(WAIT).await.unwrap();
    assert!(engine.message_status(old).await.unwrap().is_some());
    // Six days on, a new message; then two more days: only the old one is past
    // the default retention of 7 days.
    clock.advance(Duration::from_secs(6 * 86_400));
    let new = engine
        .inject(campaign_msg(&["new@a.test"], Some("c"), 2))
        .await
        .unwrap();
    engine.wait_idle(WAIT).await.unwrap();
    clock.advance(Duration::from_secs(2 * 86_400));
    let deadline = std::time::Instant::now() + WAIT;
    while engine.message_status(old).await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "never pruned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kept = engine.message_status(new).await.unwrap().unwrap();
    assert_eq!(kept.state, "completed");
    // Counters are not pruned with the records.
    let c = engine
        .campaign_status(&CampaignId("c".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.messages, c.counts.delivered), (2, 2));
    engine.shutdown().await;
}

/// `volley serve` shuts the engine down at once when a listener fails to start:
/// that must return promptly on a fresh RocksDB spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_right_after_start_returns() {
    let w = World::start(Setup::default()).await;
    let spool = rocks(&w);
    let engine = w.engine_on(spool.clone()).await;
    tokio::time::timeout(WAIT, stop(engine, spool))
        .await
        .expect("shutdown right after start hung");
}
