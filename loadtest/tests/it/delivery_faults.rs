//! The engine against receivers that misbehave: a dead primary MX, a 421 greeting,
//! a connection dropped after the body, a one-time 451, recipients refused, and a
//! receiver that takes only three recipients per transaction.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::delivery_env::{
    blocking, bounded, idle, inject, message, rcpts, recorded_rcpts, sha256_hex, strs, wait_for,
    Knobs, World,
};

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_the_secondary_mx_when_the_primary_refuses() {
    bounded("mx_fallback", async {
        let (dead, live) = (Ipv4Addr::new(127, 0, 11, 1), Ipv4Addr::new(127, 0, 11, 2));
        let world = World::new(
            "mx-fallback",
            &[dead, live],
            "fallback.test. IN MX 10 mx1.fallback.test.\n\
             fallback.test. IN MX 20 mx2.fallback.test.\n\
             mx1.fallback.test. IN A 127.0.11.1\n\
             mx2.fallback.test. IN A 127.0.11.2\n",
        )
        .await;
        // Nothing listens on the primary: connections are refused at once.
        let sink = world.sink(live, &[]);
        let engine = world.engine(&Knobs::default()).await;
        let body = message("fallback", 4_000);
        for i in 0..3 {
            inject(
                &engine,
                "s@volley.test",
                &[&format!("u{i}@fallback.test")],
                &body,
            )
            .await;
        }
        wait_for(&engine, WAIT, "3 delivered", |s| s.delivered == 3).await;
        idle(&engine, WAIT).await;
        engine.shutdown().await;

        let (summary, records) = sink.stop();
        assert_eq!(summary["messages"], 3, "{summary}");
        assert!(records
            .iter()
            .all(|r| r["sha256"] == sha256_hex(&body).as_str()));
        for e in world.events_of("delivered") {
            assert_eq!(e["mx_ip"], "127.0.11.2", "{e}");
            assert_eq!(e["mx_host"], "mx2.fallback.test", "{e}");
        }
        assert_eq!(world.events_of("bounced").len(), 0);
    })
    .await;
}

/// A receiver that greets every connection with `421` and closes it, until
/// stopped: its listener is then closed, so a real receiver can take the address.
struct Busy421 {
    /// Tells the accept loop to end.
    stop: Arc<AtomicBool>,
    /// The accept loop; returns how many connections it greeted.
    thread: std::thread::JoinHandle<usize>,
}

impl Busy421 {
    fn start(addr: SocketAddr) -> Busy421 {
        let listener = TcpListener::bind(addr).expect("bind the 421 receiver");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut greeted = 0;
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        greeted += 1;
                        std::thread::spawn(move || greet_421(conn));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
            greeted
        });
        Busy421 { stop, thread }
    }

    /// Closes the listener; returns the connections greeted.
    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("421 receiver thread")
    }
}

/// Says 421, closes our side, and reads (a QUIT, perhaps) until the client closes
/// too, so the client sees the reply and a clean end rather than a reset.
fn greet_421(mut conn: TcpStream) {
    conn.set_nonblocking(false).unwrap();
    let _ = conn.write_all(b"421 4.3.2 test receiver busy, try again later\r\n");
    let _ = conn.shutdown(Shutdown::Write);
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 512];
    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
}

/// Mail to a receiver that greets with 421 until both recipients are deferred,
/// then is replaced by a working one: checks the retry delivers, and returns the
/// deferrals logged while the 421 receiver was up.
async fn retry_after_421_greeting(name: &str, mx: Ipv4Addr) -> Vec<serde_json::Value> {
    let world = World::new(
        name,
        &[mx],
        &format!("busy.test. IN MX 10 mx.busy.test.\nmx.busy.test. IN A {mx}\n"),
    )
    .await;
    let busy = Busy421::start(world.at(mx));
    let engine = world.engine(&Knobs::default()).await;
    let body = message("busy", 5_000);
    let to = ["a@busy.test", "b@busy.test"];
    inject(&engine, "s@volley.test", &to, &body).await;
    world
        .wait_events(WAIT, "both recipients deferred", |events| {
            events.iter().filter(|e| e["event"] == "deferred").count() >= 2
        })
        .await;
    assert!(blocking(|| busy.stop()) >= 1);
    let early = world.events_of("deferred");
    let sink = world.sink(mx, &[]);
    let stats = wait_for(&engine, WAIT, "2 delivered", |s| s.delivered == 2).await;
    assert_eq!(stats.bounced, 0, "{stats:?}");
    idle(&engine, WAIT).await;
    engine.shutdown().await;

    let (_, records) = sink.stop();
    assert_eq!(recorded_rcpts(&records), to);
    assert!(records
        .iter()
        .all(|r| r["sha256"] == sha256_hex(&body).as_str()));
    // Every attempt before the switch met the 421: each deferral says so.
    assert!(
        early
            .iter()
            .all(|e| e["code"] == 421 && e["enhanced"] == "4.3.2"),
        "deferrals while the receiver said 421: {early:#?}"
    );
    for e in world.events_of("delivered") {
        assert!(e["attempt"].as_u64().unwrap() >= 2, "{e}");
    }
    early
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_421_greeting_is_retried_and_delivered() {
    bounded("retry_421", async {
        retry_after_421_greeting("retry-421", Ipv4Addr::new(127, 0, 11, 3)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_421_greeting_is_logged_with_the_mx_that_sent_it() {
    // The log's mx_host/mx_ip are "the host and address connected to": a 421
    // greeting comes from a host the engine connected to.
    bounded("retry_421_logged", async {
        let mx = Ipv4Addr::new(127, 0, 11, 9);
        let early = retry_after_421_greeting("retry-421-log", mx).await;
        for e in &early {
            assert_eq!(e["mx_ip"], mx.to_string(), "{e}");
            assert_eq!(e["mx_host"], "mx.busy.test", "{e}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_after_the_body_is_retried_and_delivered() {
    bounded("retry_disconnect_data", async {
        let mx = Ipv4Addr::new(127, 0, 11, 4);
        let world = World::new(
            "retry-drop",
            &[mx],
            "drop.test. IN MX 10 mx.drop.test.\nmx.drop.test. IN A 127.0.11.4\n",
        )
        .await;
        // Every transaction's connection is dropped once the body has arrived.
        let dropper = world.sink(mx, &["--disconnect", "100"]);
        let engine = world.engine(&Knobs::default()).await;
        let body = message("drop", 50_000);
        inject(
            &engine,
            "s@volley.test",
            &["x@drop.test", "y@drop.test"],
            &body,
        )
        .await;
        wait_for(&engine, WAIT, "a deferral", |s| s.deferred >= 2).await;
        let (summary, _) = dropper.stop();
        assert_eq!(
            summary["messages"], 0,
            "the dropping sink accepted mail: {summary}"
        );
        let sink = world.sink(mx, &[]);
        let stats = wait_for(&engine, WAIT, "2 delivered", |s| s.delivered == 2).await;
        assert_eq!(stats.bounced, 0, "{stats:?}");
        idle(&engine, WAIT).await;
        engine.shutdown().await;

        // One transaction or two (the recipients' retries may come apart while no
        // receiver listens between the two sinks); each recipient exactly once.
        let (_, records) = sink.stop();
        assert_eq!(recorded_rcpts(&records), ["x@drop.test", "y@drop.test"]);
        assert!(records
            .iter()
            .all(|r| r["sha256"] == sha256_hex(&body).as_str()));
        assert_eq!(world.events_of("bounced").len(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tempfail_once_recipients_are_retried_and_delivered() {
    bounded("tempfail_once", async {
        let mx = Ipv4Addr::new(127, 0, 11, 5);
        let world = World::new(
            "tempfail-once",
            &[mx],
            "once.test. IN MX 10 mx.once.test.\nmx.once.test. IN A 127.0.11.5\n",
        )
        .await;
        let sink = world.sink(mx, &[]);
        let engine = world.engine(&Knobs::default()).await;
        let body = message("once", 1_000);
        let to = [
            "tempfail-once-a@once.test",
            "plain@once.test",
            "tempfail-once-b@once.test",
        ];
        inject(&engine, "s@volley.test", &to, &body).await;
        let stats = wait_for(&engine, WAIT, "3 delivered", |s| s.delivered == 3).await;
        assert_eq!(stats.bounced, 0, "{stats:?}");
        idle(&engine, WAIT).await;
        engine.shutdown().await;

        let (_, records) = sink.stop();
        let mut want: Vec<String> = to.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(
            recorded_rcpts(&records),
            want,
            "each recipient exactly once"
        );
        let deferred = world.events_of("deferred");
        let mut who: Vec<&str> = deferred
            .iter()
            .map(|e| e["recipient"].as_str().unwrap())
            .collect();
        who.sort();
        assert_eq!(
            who,
            ["tempfail-once-a@once.test", "tempfail-once-b@once.test"],
            "{deferred:?}"
        );
        assert!(deferred
            .iter()
            .all(|e| e["code"] == 451 && e["enhanced"] == "4.3.0"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_rcpt_rejection_bounces_some_and_delivers_the_rest() {
    bounded("partial_rejection", async {
        let mx = Ipv4Addr::new(127, 0, 11, 6);
        let world = World::new(
            "partial",
            &[mx],
            "partial.test. IN MX 10 mx.partial.test.\nmx.partial.test. IN A 127.0.11.6\n",
        )
        .await;
        let sink = world.sink(mx, &[]);
        let engine = world.engine(&Knobs::default()).await;
        let body = message("partial", 2_000);
        let to = [
            "good1@partial.test",
            "550@partial.test",
            "good2@partial.test",
            "554@partial.test",
        ];
        inject(&engine, "s@volley.test", &to, &body).await;
        let stats = wait_for(&engine, WAIT, "2 delivered 2 bounced", |s| {
            s.delivered == 2 && s.bounced == 2
        })
        .await;
        assert_eq!(stats.deferred, 0, "{stats:?}");
        idle(&engine, WAIT).await;
        engine.shutdown().await;

        let (_, records) = sink.stop();
        assert_eq!(records.len(), 1);
        assert_eq!(
            recorded_rcpts(&records),
            ["good1@partial.test", "good2@partial.test"]
        );
        assert_eq!(records[0]["sha256"], sha256_hex(&body));
        let mut bounced: Vec<(String, u64, String)> = world
            .events_of("bounced")
            .iter()
            .map(|e| {
                (
                    e["recipient"].as_str().unwrap().to_string(),
                    e["code"].as_u64().unwrap(),
                    e["enhanced"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        bounced.sort();
        assert_eq!(
            bounced,
            [
                ("550@partial.test".to_string(), 550, "5.1.1".to_string()),
                ("554@partial.test".to_string(), 554, "5.7.1".to_string()),
            ]
        );
        assert_eq!(world.events_of("delivered").len(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_452_beyond_three_recipients_splits_the_message() {
    bounded("split_452", async {
        let mx = Ipv4Addr::new(127, 0, 11, 7);
        let world = World::new(
            "split",
            &[mx],
            "split.test. IN MX 10 mx.split.test.\nmx.split.test. IN A 127.0.11.7\n",
        )
        .await;
        let sink = world.sink(mx, &["--max-rcpts", "3"]);
        let engine = world.engine(&Knobs::default()).await;
        let body = message("split", 8_000);
        let to = rcpts("r", "split.test", 7);
        inject(&engine, "s@volley.test", &strs(&to), &body).await;
        let stats = wait_for(&engine, WAIT, "7 delivered", |s| s.delivered == 7).await;
        assert_eq!(stats.bounced, 0, "{stats:?}");
        idle(&engine, WAIT).await;
        engine.shutdown().await;

        let (summary, records) = sink.stop();
        assert!(
            records.len() >= 3,
            "7 recipients in {} transactions",
            records.len()
        );
        assert!(records
            .iter()
            .all(|r| r["rcpts"].as_array().unwrap().len() <= 3));
        assert!(records
            .iter()
            .all(|r| r["sha256"] == sha256_hex(&body).as_str()));
        let mut want = to.clone();
        want.sort();
        assert_eq!(
            recorded_rcpts(&records),
            want,
            "each recipient exactly once"
        );
        assert_eq!(summary["recipients"], 7, "{summary}");
        assert_eq!(world.events_of("bounced").len(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_421_that_closes_the_connection_loses_no_other_message() {
    bounded("421_rcpt", async {
        let mx = Ipv4Addr::new(127, 0, 11, 8);
        let world = World::new(
            "421-rcpt",
            &[mx],
            "closing.test. IN MX 10 mx.closing.test.\nmx.closing.test. IN A 127.0.11.8\n",
        )
        .await;
        let sink = world.sink(mx, &[]);
        let knobs = Knobs {
            shaping_default: "max_connections = 1".into(),
            ..Knobs::default()
        };
        let engine = world.engine(&knobs).await;
        let body = message("closing", 2_000);
        // One connection carries everything; a message in the middle of the queue
        // gets 421 at RCPT and the connection is closed under the others.
        for i in 0..5 {
            inject(
                &engine,
                "s@volley.test",
                &[&format!("a{i}@closing.test")],
                &body,
            )
            .await;
        }
        inject(
            &engine,
            "s@volley.test",
            &["421-disconnect@closing.test"],
            &body,
        )
        .await;
        for i in 0..5 {
            inject(
                &engine,
                "s@volley.test",
                &[&format!("b{i}@closing.test")],
                &body,
            )
            .await;
        }
        let stats = wait_for(&engine, Duration::from_secs(15), "10 delivered", |s| {
            s.delivered == 10
        })
        .await;
        assert_eq!(stats.bounced, 0, "a 421 is never a bounce: {stats:?}");
        world
            .wait_events(WAIT, "the 421 recipient deferred", |events| {
                events
                    .iter()
                    .any(|e| e["recipient"] == "421-disconnect@closing.test")
            })
            .await;
        engine.shutdown().await;

        let (_, records) = sink.stop();
        let want: Vec<String> = {
            let mut v: Vec<String> = (0..5)
                .flat_map(|i| [format!("a{i}@closing.test"), format!("b{i}@closing.test")])
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            recorded_rcpts(&records),
            want,
            "each good recipient exactly once"
        );
        let events = world.events();
        let closing: Vec<_> = events
            .iter()
            .filter(|e| e["recipient"] == "421-disconnect@closing.test")
            .collect();
        assert!(
            closing
                .iter()
                .all(|e| e["event"] == "deferred" && e["code"] == 421),
            "{closing:?}"
        );
    })
    .await;
}
