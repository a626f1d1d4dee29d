//! Per-recipient outcomes: replies, routing failures, dead sites, lost
//! connections, retries and expiry.

use super::*;
use crate::model::{RecipientStatus, Timestamp};
use crate::queue::ManualClock;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_map_to_delivered_bounced_and_deferred() {
    let w = World::start(Setup::default()).await;
    let engine = w.engine().await;
    let rcpts = ["ok@a.test", "bounce1@a.test", "defer1@a.test"];
    let id = engine
        .inject(Injection::new("s@src.test", rcpts, body(1)))
        .await
        .unwrap();
    let stats = engine.wait_idle(WAIT).await.unwrap();
    assert_eq!((stats.delivered, stats.bounced), (1, 1), "{stats:?}");
    assert!(stats.deferred >= 1);
    assert_eq!(
        w.spool.status("a.test", id, 0),
        Some(RecipientStatus::Delivered)
    );
    match w.spool.status("a.test", id, 1) {
        Some(RecipientStatus::Bounced(r)) => {
            assert_eq!(r.code, 550);
            assert!(r.text.starts_with("5.1.1"), "{r:?}");
        }
        other => panic!("bounce not recorded: {other:?}"),
    }
    match w.spool.status("a.test", id, 2) {
        Some(RecipientStatus::Deferred {
            attempts,
            last_reply,
            ..
        }) => {
            assert!(attempts >= 1);
            assert_eq!(last_reply.code, 450);
        }
        other => panic!("deferral not recorded: {other:?}"),
    }
    assert_eq!(w.spool.message_count(), 1, "unfinished message stays");
    let deferred = w.events("deferred");
    let d = &deferred[0];
    assert_eq!(
        (d["recipient"].as_str(), d["code"].as_u64()),
        (Some("defer1@a.test"), Some(450))
    );
    assert_eq!(d["enhanced"], "4.2.0");
    assert!(d["next_retry"].is_string());
    let b = &w.events("bounced")[0];
    assert_eq!(
        (b["recipient"].as_str(), b["reply"].as_str()),
        (Some("bounce1@a.test"), Some("no such user"))
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_data_refusal_and_lost_connection_are_not_delivered() {
    let w = World::start(Setup::default()).await;
    let engine = w.engine().await;
    engine
        .inject(Injection::new(
            "s@src.test",
            ["data-fail@a.test", "x@a.test"],
            body(1),
        ))
        .await
        .unwrap();
    engine
        // Another site: a connection dropped with pipelined replies unread may lose
        // them (RST), which would hide the first message's 554.
        .inject(Injection::new(
            "s@src.test",
            ["disconnect-data@other.test"],
            body(2),
        ))
        .await
        .unwrap();
    let stats = engine
        .wait_until(WAIT, |s| s.bounced == 2 && s.deferred >= 1)
        .await
        .unwrap();
    assert_eq!(
        stats.delivered, 0,
        "no 2xx at end of data, nothing delivered"
    );
    assert_eq!(w.sink.state.recipients() + w.other.state.recipients(), 0);
    let lost = &w.events("deferred")[0];
    assert_eq!(lost["recipient"], "disconnect-data@other.test");
    assert_eq!(lost["enhanced"], "4.4.2");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_failures_bounce_or_defer() {
    let w = World::start(Setup::default()).await;
    w.dns.servfail("broken.test");
    let engine = w.engine().await;
    let rcpts = ["a@nowhere.test", "b@nullmx.test", "c@broken.test"];
    engine
        .inject(Injection::new("s@src.test", rcpts, body(1)))
        .await
        .unwrap();
    let stats = engine
        .wait_until(WAIT, |s| s.bounced == 2 && s.deferred >= 1)
        .await
        .unwrap();
    assert_eq!(stats.delivered, 0);
    let bounced = w.events("bounced");
    let by = |d: &str| bounced.iter().find(|v| v["domain"] == d).cloned().unwrap();
    assert_eq!(by("nowhere.test")["enhanced"], "5.1.2");
    assert_eq!(by("nullmx.test")["enhanced"], "5.1.10");
    assert_eq!(by("nullmx.test")["code"], 556);
    let d = &w.events("deferred")[0];
    assert_eq!(
        (d["domain"].as_str(), d["enhanced"].as_str()),
        (Some("broken.test"), Some("4.4.3"))
    );
    assert!(d["site"].is_null());
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_site_defers_its_backlog_without_hammering() {
    let w = World::start(Setup::default()).await;
    let engine = w.engine().await;
    for i in 0..5 {
        engine
            .inject(Injection::new(
                "s@src.test",
                [format!("r{i}@dead.test")],
                body(i),
            ))
            .await
            .unwrap();
    }
    let stats = engine.wait_until(WAIT, |s| s.deferred >= 5).await.unwrap();
    assert_eq!((stats.delivered, stats.connections), (0, 0));
    let d = &w.events("deferred")[0];
    assert_eq!(d["enhanced"], "4.4.1", "connect failure: {d}");
    assert_eq!(d["site"], "mx.dead.test");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_recipient_is_retried_and_delivered() {
    let w = World::start(Setup::default()).await;
    let engine = w.engine().await;
    engine
        .inject(Injection::new(
            "s@src.test",
            ["tempfail-once-1@a.test"],
            body(1),
        ))
        .await
        .unwrap();
    let stats = engine.wait_until(WAIT, |s| s.delivered == 1).await.unwrap();
    assert_eq!(stats.deferred, 1);
    let d = &w.events("delivered")[0];
    assert_eq!(d["attempt"], 2);
    assert_eq!(w.spool.message_count(), 0);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_expire_at_the_message_lifetime() {
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let w = World::start(Setup {
        delivery: r#"message_lifetime = "1h""#,
        clock: Some(clock.clone()),
        ..Setup::default()
    })
    .await;
    let engine = w.engine().await;
    let id = engine
        .inject(Injection::new("s@src.test", ["defer-x@a.test"], body(1)))
        .await
        .unwrap();
    engine.wait_until(WAIT, |s| s.deferred == 1).await.unwrap();
    clock.advance(Duration::from_secs(2 * 3600));
    let stats = engine.wait_until(WAIT, |s| s.expired == 1).await.unwrap();
    assert_eq!(stats.delivered, 0);
    engine.wait_idle(WAIT).await.unwrap();
    assert_eq!(w.spool.message_count(), 0, "expired message removed");
    assert_eq!(w.spool.status("a.test", id, 0), None);
    let e = &w.events("expired")[0];
    assert_eq!(e["recipient"], "defer-x@a.test");
    assert_eq!(
        (e["attempt"].as_u64(), e["code"].as_u64()),
        (Some(1), Some(450)),
        "{e}"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_requiring_tls_is_deferred_over_a_plaintext_session() {
    let w = World::start(Setup {
        extra: "[[shaping.rule]]\ndomain = \"b.test\"\ntls = \"required\"\n",
        ..Setup::default()
    })
    .await;
    let engine = w.engine().await;
    engine
        .inject(Injection::new(
            "s@src.test",
            ["x@a.test", "y@b.test"],
            body(1),
        ))
        .await
        .unwrap();
    let stats = engine
        .wait_until(WAIT, |s| s.delivered == 1 && s.deferred >= 1)
        .await
        .unwrap();
    assert_eq!(stats.bounced, 0);
    let rcpts: Vec<String> = w
        .sink
        .state
        .messages
        .lock()
        .unwrap()
        .iter()
        .flat_map(|m| m.rcpts.clone())
        .collect();
    assert_eq!(rcpts, ["x@a.test"], "never in clear");
    let d = &w.events("deferred")[0];
    assert_eq!(
        (d["recipient"].as_str(), d["enhanced"].as_str()),
        (Some("y@b.test"), Some("4.7.10"))
    );
    engine.shutdown().await;
}
