//! Shaping and the send path: transaction sizes, 452 requeues, rate limits, one
//! connection carrying everything back to back, DATA with dot-stuffing.

use std::time::Instant;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_respect_recipient_limits_of_site_and_domain() {
    let w = World::start(Setup {
        shaping: "max_recipients_per_transaction = 3",
        extra: "[[shaping.rule]]\ndomain = \"b.test\"\nmax_recipients_per_transaction = 2\n",
        ..Setup::default()
    })
    .await;
    let engine = w.engine().await;
    let a: Vec<String> = (0..7).map(|i| format!("r{i}@a.test")).collect();
    let b: Vec<String> = (0..5).map(|i| format!("r{i}@b.test")).collect();
    engine
        .inject(Injection::new("s@src.test", a, body(1)))
        .await
        .unwrap();
    engine
        .inject(Injection::new("s@src.test", b, body(2)))
        .await
        .unwrap();
    let stats = engine.wait_idle(WAIT).await.unwrap();
    assert_eq!((stats.delivered, stats.deferred), (12, 0), "{stats:?}");
    let received = w.sink.state.messages.lock().unwrap().clone();
    let sizes = |d: &str| {
        let mut v: Vec<usize> = received
            .iter()
            .filter(|m| m.rcpts[0].ends_with(d))
            .map(|m| m.rcpts.len())
            .collect();
        v.sort();
        v
    };
    assert_eq!(sizes("@a.test"), [1, 3, 3]);
    assert_eq!(sizes("@b.test"), [1, 2, 2]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_recipients_requeues_without_an_attempt() {
    let w = World::start(Setup {
        sink: SinkOptions {
            max_rcpts: 2,
            ..SinkOptions::default()
        },
        ..Setup::default()
    })
    .await;
    let engine = w.engine().await;
    let rcpts: Vec<String> = (0..5).map(|i| format!("r{i}@a.test")).collect();
    engine
        .inject(Injection::new("s@src.test", rcpts, body(1)))
        .await
        .unwrap();
    let stats = engine.wait_idle(WAIT).await.unwrap();
    assert_eq!((stats.delivered, stats.deferred, stats.bounced), (5, 0, 0));
    assert!(stats.requeued >= 3, "{stats:?}");
    assert!(w.events("delivered").iter().all(|v| v["attempt"] == 1));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_rate_is_enforced_without_blocking_other_sites() {
    let w = World::start(Setup {
        extra: "[[shaping.rule]]\nsite = \"mx.sink.test\"\nmax_message_rate = \"10/s\"\n",
        ..Setup::default()
    })
    .await;
    let engine = w.engine().await;
    let start = Instant::now();
    for i in 0..12 {
        engine
            .inject(Injection::new(
                "s@src.test",
                [format!("r{i}@a.test")],
                body(i),
            ))
            .await
            .unwrap();
    }
    for i in 0..12 {
        engine
            .inject(Injection::new(
                "s@src.test",
                [format!("r{i}@other.test")],
                body(i),
            ))
            .await
            .unwrap();
    }
    engine
        .wait_until(WAIT, |_| w.other.state.recipients() == 12)
        .await
        .unwrap();
    let other_done = start.elapsed();
    engine
        .wait_until(WAIT, |s| s.delivered == 24)
        .await
        .unwrap();
    let all_done = start.elapsed();
    // 12 at 10/s with a burst of 1: at least 11 intervals of 100 ms.
    assert!(all_done >= Duration::from_millis(1000), "{all_done:?}");
    // Held up behind the slow site, the other site would finish with it.
    assert!(
        other_done + Duration::from_millis(300) < all_done,
        "other site held up: {other_done:?} vs {all_done:?}"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_carries_a_backlog_back_to_back() {
    let w = World::start(Setup {
        shaping: "max_connections = 1\nidle_timeout = \"5s\"",
        ..Setup::default()
    })
    .await;
    let engine = w.engine().await;
    for i in 0..200 {
        let domain = ["a.test", "b.test", "c.test"][i % 3];
        engine
            .inject(Injection::new(
                "s@src.test",
                [format!("r{i}@{domain}")],
                body(i),
            ))
            .await
            .unwrap();
    }
    let stats = engine.wait_idle(WAIT).await.unwrap();
    assert_eq!(stats.delivered, 200);
    assert_eq!(w.sink.state.connections.load(Ordering::SeqCst), 1);
    assert_eq!(stats.connections, 1);
    engine.shutdown().await;
    // Shutdown said QUIT: the sink saw the connection close.
    assert_eq!(w.sink.state.open.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_without_chunking_dot_stuffs_the_body() {
    let w = World::start(Setup {
        sink: SinkOptions {
            chunking: false,
            ..SinkOptions::default()
        },
        ..Setup::default()
    })
    .await;
    let engine = w.engine().await;
    let text = b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\nplain\r\n.\r\nend\r\n".to_vec();
    engine
        .inject(Injection::new(
            "s@src.test",
            ["x@a.test", "y@b.test"],
            text.clone(),
        ))
        .await
        .unwrap();
    let stats = engine.wait_idle(WAIT).await.unwrap();
    assert_eq!(stats.delivered, 2);
    let received = w.sink.state.messages.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    for m in received {
        assert!(!m.bdat);
        assert_eq!(m.body, text, "body arrives unchanged after unstuffing");
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_recipients_for_the_first_rcpt_counts_as_a_deferral() {
    let w = World::start(Setup {
        sink: SinkOptions {
            max_rcpts: 0,
            ..SinkOptions::default()
        },
        ..Setup::default()
    })
    .await;
    let engine = w.engine().await;
    engine
        .inject(Injection::new(
            "s@src.test",
            ["r1@a.test", "r2@a.test"],
            body(1),
        ))
        .await
        .unwrap();
    let stats = engine.wait_until(WAIT, |s| s.deferred >= 2).await.unwrap();
    assert_eq!(
        (stats.delivered, stats.requeued),
        (0, 0),
        "no hot requeue loop: {stats:?}"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_refusing_extra_connections_is_not_taken_for_down() {
    let w = World::start(Setup {
        sink: SinkOptions {
            max_conns: 1,
            ..SinkOptions::default()
        },
        ..Setup::default()
    })
    .await;
    let engine = w.engine().await;
    for i in 0..100 {
        engine
            .inject(Injection::new(
                "s@src.test",
                [format!("r{i}@a.test")],
                body(i),
            ))
            .await
            .unwrap();
    }
    let stats = engine
        .wait_until(WAIT, |s| s.delivered == 100)
        .await
        .unwrap();
    assert_eq!((stats.deferred, stats.bounced), (0, 0), "{stats:?}");
    engine.shutdown().await;
}
