//! Mail is never lost: not when DNS fails for a while, not when the engine stops
//! with mail still queued (the RocksDB spool brings it back on the next start).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use volley::spool::{RocksSpool, Spool, SpoolOptions};

use crate::delivery_env::{
    bounded, idle, inject, message, recorded_rcpts, sha256_hex, wait_for, Knobs, World,
};

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_defers_and_mail_goes_once_dns_heals() {
    bounded("servfail", async {
        let mx = Ipv4Addr::new(127, 0, 13, 1);
        let world = World::new(
            "servfail",
            &[mx],
            "flaky.test. IN MX 10 mx.flaky.test.\nmx.flaky.test. IN A 127.0.13.1\n",
        )
        .await;
        world.dns.servfail("flaky.test");
        let sink = world.sink(mx, &[]);
        let engine = world.engine(&Knobs::default()).await;
        let body = message("servfail", 2_000);
        inject(
            &engine,
            "s@volley.test",
            &["a@flaky.test", "b@flaky.test"],
            &body,
        )
        .await;
        world
            .wait_events(WAIT, "a transient DNS deferral", |events| {
                events.iter().any(|e| e["event"] == "deferred")
            })
            .await;
        let stats = engine.stats();
        assert_eq!((stats.delivered, stats.bounced), (0, 0), "{stats:?}");
        world.dns.heal("flaky.test");
        let stats = wait_for(&engine, WAIT, "2 delivered", |s| s.delivered == 2).await;
        assert_eq!(stats.bounced, 0, "SERVFAIL is transient: {stats:?}");
        idle(&engine, WAIT).await;
        engine.shutdown().await;

        let (_, records) = sink.stop();
        assert_eq!(recorded_rcpts(&records), ["a@flaky.test", "b@flaky.test"]);
        let deferred = world.events_of("deferred");
        for e in &deferred {
            assert_eq!(e["code"], 451, "{e}");
            assert!(e["mx_ip"].is_null(), "no MX was reached: {e}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_mail_is_delivered_after_an_engine_restart() {
    bounded("restart", async {
        const MESSAGES: usize = 5;
        let mx = Ipv4Addr::new(127, 0, 13, 2);
        let world = World::new(
            "restart",
            &[mx],
            "later.test. IN MX 10 mx.later.test.\nmx.later.test. IN A 127.0.13.2\n",
        )
        .await;
        let spool_dir = world.dir.0.join("spool");
        let body = message("restart", 5_000);
        {
            // First life: the receiver is down, so everything is deferred.
            let spool: Arc<dyn Spool> =
                Arc::new(RocksSpool::open(&spool_dir, SpoolOptions::default()).expect("open"));
            let engine = world.engine_on(&Knobs::default(), spool).await;
            for i in 0..MESSAGES {
                let to = [format!("x{i}@later.test"), format!("y{i}@later.test")];
                inject(&engine, "s@volley.test", &[&to[0], &to[1]], &body).await;
            }
            let n = 2 * MESSAGES as u64;
            wait_for(&engine, WAIT, "every recipient deferred", |s| {
                s.deferred >= n
            })
            .await;
            let stats = engine.shutdown().await;
            assert_eq!(stats.delivered, 0, "{stats:?}");
        }
        // The handle and spool are dropped; RocksDB's lock is released with them,
        // though the engine's threads may take a moment to let go.
        let spool = reopen(&spool_dir).await;
        let sink = world.sink(mx, &[]);
        let engine = world.engine_on(&Knobs::default(), spool).await;
        let n = 2 * MESSAGES as u64;
        let stats = wait_for(&engine, WAIT, "all delivered after restart", |s| {
            s.delivered == n
        })
        .await;
        assert_eq!(stats.recovered, MESSAGES as u64, "{stats:?}");
        assert_eq!(stats.injected, 0, "{stats:?}");
        idle(&engine, WAIT).await;
        let stats = engine.shutdown().await;
        assert_eq!(
            stats.messages, 0,
            "finished messages leave the spool: {stats:?}"
        );

        let (_, records) = sink.stop();
        let mut want: Vec<String> = (0..MESSAGES)
            .flat_map(|i| [format!("x{i}@later.test"), format!("y{i}@later.test")])
            .collect();
        want.sort();
        assert_eq!(
            recorded_rcpts(&records),
            want,
            "each recipient exactly once"
        );
        let digest = sha256_hex(&body);
        assert!(records.iter().all(|r| r["sha256"] == digest.as_str()));
    })
    .await;
}

/// Opens the spool again, retrying while the previous instance still holds the
/// RocksDB lock (its last references are dropped by engine threads winding down).
async fn reopen(dir: &std::path::Path) -> Arc<dyn Spool> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match RocksSpool::open(dir, SpoolOptions::default()) {
            Ok(spool) => return Arc::new(spool),
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("reopening the spool: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("spool not released 10 s after shutdown: {e}"),
        }
    }
}
