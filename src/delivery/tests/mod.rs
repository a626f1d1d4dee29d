//! Engine tests: a [`MemorySpool`], a [`TestDnsServer`] zone and in-process SMTP
//! sinks on loopback (127.0.0.1 and 127.0.0.2, one port), through the public
//! [`EngineHandle`] API. Each test asserts counts of outcomes, what the sinks
//! received, the spool's records and the delivery log's lines.

mod admin;
mod cost;
mod outcomes;
mod sink;
mod throughput;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::config::Config;
use crate::dns::TestDnsServer;
use crate::queue::{Clock, SystemClock};
use crate::spool::memory::MemorySpool;
use sink::{Sink, SinkOptions};

/// Every test domain: a.test, b.test and c.test share the site of mx.sink.test
/// (127.0.0.1); other.test is another site (127.0.0.2); dead.test's MX listens
/// nowhere; nullmx.test refuses mail; nowhere.test does not exist.
const ZONE: &str = r#"
$TTL 300
@                IN SOA ns.test. hostmaster.test. 1 3600 600 86400 1
a.test.          IN MX 10 mx.sink.test.
b.test.          IN MX 10 mx.sink.test.
c.test.          IN MX 10 mx.sink.test.
other.test.      IN MX 10 mx.other.test.
dead.test.       IN MX 10 mx.dead.test.
broken.test.     IN MX 10 mx.sink.test.
nullmx.test.     IN MX 0 .
mx.sink.test.    IN A 127.0.0.1
mx.other.test.   IN A 127.0.0.2
mx.dead.test.    IN A 127.0.0.3
"#;

/// What a test changes in the world.
#[derive(Default)]
struct Setup {
    /// Lines added to `[shaping.default]`.
    shaping: &'static str,
    /// TOML appended at the end (rules).
    extra: &'static str,
    /// Lines added to `[delivery]`.
    delivery: &'static str,
    /// The main sink's behaviour.
    sink: SinkOptions,
    /// The scheduler's clock (system clock if `None`).
    clock: Option<Arc<dyn Clock>>,
}

/// DNS, two sinks, a spool, a log file and an engine.
struct World {
    dns: TestDnsServer,
    sink: Sink,
    other: Sink,
    spool: Arc<MemorySpool>,
    log: PathBuf,
    config: Config,
    clock: Arc<dyn Clock>,
}

/// `[shaping.default]`: the test's lines, with 4 connections and a 500 ms idle
/// timeout unless it sets them.
fn shaping_lines(lines: &str) -> String {
    let mut out = lines.to_string();
    if !lines.contains("max_connections") {
        out.push_str("\nmax_connections = 4");
    }
    if !lines.contains("idle_timeout") {
        out.push_str("\nidle_timeout = \"500ms\"");
    }
    out
}

static DIRS: AtomicU64 = AtomicU64::new(0);

impl World {
    async fn start(setup: Setup) -> World {
        let dns = TestDnsServer::start(ZONE, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (sink, other) = loop {
            let sink = Sink::start("127.0.0.1", 0, setup.sink).await.unwrap();
            if let Ok(other) =
                Sink::start("127.0.0.2", sink.addr.port(), SinkOptions::default()).await
            {
                break (sink, other);
            }
        };
        let dir = std::env::temp_dir().join(format!(
            "volley-delivery-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let log = dir.join("delivery.jsonl");
        let text = format!(
            r#"
[spool]
path = "{dir}/spool"
[dns]
nameservers = ["{dns}"]
timeout = "500ms"
attempts = 1
min_ttl = "0s"
failure_ttl = "1s"
[delivery]
smtp_port = {port}
ehlo_name = "volley.test"
tls = "disabled"
retry_schedule = ["1s"]
{delivery}
[shaping.default]
{shaping}
[log]
delivery = "{log}"
{extra}
"#,
            dir = dir.display(),
            dns = dns.addr(),
            port = sink.addr.port(),
            log = log.display(),
            delivery = setup.delivery,
            shaping = shaping_lines(setup.shaping),
            extra = setup.extra,
        );
        let config = Config::from_toml_str(&text).unwrap();
        World {
            dns,
            sink,
            other,
            spool: Arc::new(MemorySpool::default()),
            log,
            config,
            clock: setup.clock.unwrap_or_else(|| Arc::new(SystemClock)),
        }
    }

    async fn engine(&self) -> EngineHandle {
        self.engine_on(self.spool.clone()).await
    }

    /// An engine on another spool (a RocksDB one, to test persistence).
    async fn engine_on(&self, spool: Arc<dyn crate::spool::Spool>) -> EngineHandle {
        let options = EngineOptions {
            tick_interval: Duration::from_millis(50),
            jitter_seed: Some(7),
            status_prune_interval: Duration::from_millis(100),
            ..EngineOptions::default()
        };
        Engine::start_with(&self.config, spool, self.clock.clone(), options)
            .await
            .unwrap()
    }

    /// The delivery log's lines, parsed.
    fn log_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each log line is JSON"))
            .collect()
    }

    /// Log lines of one event kind.
    fn events(&self, kind: &str) -> Vec<Value> {
        self.log_lines()
            .into_iter()
            .filter(|v| v["event"] == kind)
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(dir) = self.log.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

const WAIT: Duration = Duration::from_secs(20);

/// A small message whose body names `n`.
fn body(n: usize) -> Vec<u8> {
    format!("From: s@src.test\r\nSubject: test {n}\r\n\r\nHello {n}.\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_each_recipient_once_and_domains_share_a_site() {
    let w = World::start(Setup::default()).await;
    let engine = w.engine().await;
    for i in 0..40 {
        let rcpts = [
            format!("u{i}@a.test"),
            format!("u{i}@b.test"),
            format!("v{i}@a.test"),
        ];
        engine
            .inject(Injection::new("sender@src.test", rcpts, body(i)))
            .await
            .unwrap();
    }
    engine
        .inject(Injection::new("s@src.test", ["x@other.test"], body(99)))
        .await
        .unwrap();
    let stats = engine.wait_idle(WAIT).await.unwrap();
    assert_eq!(
        (
            stats.delivered,
            stats.deferred,
            stats.bounced,
            stats.expired
        ),
        (121, 0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.queued + stats.in_flight, 0);
    // One transaction per message and domain: a.test's two recipients together.
    let received = w.sink.state.messages.lock().unwrap().clone();
    assert_eq!(received.len(), 80);
    assert_eq!(w.sink.state.recipients(), 120);
    let a_test = received
        .iter()
        .filter(|m| m.rcpts[0].ends_with("@a.test"))
        .count();
    assert_eq!(a_test, 40);
    assert!(received
        .iter()
        .all(|m| m.bdat && m.from == "sender@src.test"));
    for m in &received {
        let n: usize = m.rcpts[0][1..m.rcpts[0].find('@').unwrap()]
            .parse()
            .unwrap();
        assert_eq!(m.body, body(n), "body sent unchanged");
    }
    assert_eq!(w.other.state.recipients(), 1);
    assert!(
        w.sink.state.max_open.load(Ordering::SeqCst) <= 4,
        "max_connections"
    );
    assert_eq!(w.spool.message_count(), 0, "finished messages are removed");
    // The log: one delivered line per recipient, with where it went.
    let lines = w.events("delivered");
    assert_eq!(lines.len(), 121);
    let site_of = |domain: &str| -> Vec<String> {
        let mut s: Vec<String> = lines
            .iter()
            .filter(|v| v["domain"] == domain)
            .map(|v| v["site"].as_str().unwrap().to_string())
            .collect();
        s.dedup();
        s
    };
    assert_eq!(site_of("a.test"), ["mx.sink.test"]);
    assert_eq!(
        site_of("b.test"),
        ["mx.sink.test"],
        "same MX set, same site"
    );
    assert_eq!(site_of("other.test"), ["mx.other.test"]);
    let v = lines.iter().find(|v| v["domain"] == "other.test").unwrap();
    assert_eq!(v["mx_host"], "mx.other.test");
    assert_eq!(v["mx_ip"], "127.0.0.2");
    assert_eq!(v["code"], 250);
    assert_eq!(v["enhanced"], "2.0.0");
    assert_eq!(v["attempt"], 1);
    assert_eq!(v["recipient"], "x@other.test");
    assert!(v["tls"].is_null());
    assert!(v["next_retry"].is_null());
    assert!(v["queue_time_ms"].is_u64() && v["delivery_time_ms"].is_u64());
    assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    let done = engine.shutdown().await;
    assert_eq!(done.sessions, 0);
    assert!(matches!(
        engine
            .inject(Injection::new("s@src.test", ["y@a.test"], body(1)))
            .await,
        Err(crate::spool::SpoolError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_the_spool_at_start() {
    let w = World::start(Setup::default()).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now();
    let msg = Injection::new("s@src.test", ["r1@a.test", "r2@c.test"], body(5))
        .into_message(
            crate::model::IdGenerator::new().generate(now),
            now,
            now.saturating_add(Duration::from_secs(3600)),
        )
        .unwrap();
    use crate::spool::Spool;
    w.spool.store(msg).await.unwrap();
    let engine = w.engine().await;
    let stats = engine.wait_idle(WAIT).await.unwrap();
    assert_eq!((stats.recovered, stats.delivered), (1, 2), "{stats:?}");
    assert_eq!(w.spool.message_count(), 0);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_what_is_in_flight_then_quits() {
    let w = World::start(Setup {
        shaping: "max_connections = 1",
        ..Setup::default()
    })
    .await;
    let engine = w.engine().await;
    for i in 0..3 {
        engine
            .inject(Injection::new(
                "s@src.test",
                [format!("slow{i}@a.test")],
                body(i),
            ))
            .await
            .unwrap();
    }
    // The sink holds the replies of the transactions it has read.
    engine
        .wait_until(WAIT, |_| {
            w.sink.state.rcpts_seen.load(Ordering::SeqCst) == 3
        })
        .await
        .unwrap();
    let stats = engine.shutdown().await;
    assert_eq!(
        (stats.delivered, stats.in_flight, stats.sessions),
        (3, 0, 0),
        "{stats:?}"
    );
    assert_eq!(w.events("delivered").len(), 3, "log flushed at shutdown");
    assert_eq!(w.spool.message_count(), 0);
    assert_eq!(w.sink.state.open.load(Ordering::SeqCst), 0, "QUIT said");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_messages_are_sent_from_the_buffer_ingest_stored() {
    let w = World::start(Setup::default()).await;
    let engine = w.engine().await;
    engine.suspend_domain("a.test");
    let mut ids = Vec::new();
    for i in 0..20 {
        let id = engine
            .inject(Injection::new(
                "s@src.test",
                [format!("u{i}@a.test")],
                body(i),
            ))
            .await
            .unwrap();
        ids.push(id);
    }
    // Queued, not yet taken: the prepared message is already in the cache, so
    // the first delivery never reads the spool back (no blocking load).
    for id in &ids {
        let p = engine.shared.cache.cached(*id).expect("cached at inject");
        assert_eq!(
            &p.body.bytes()[..],
            &body(ids.iter().position(|x| x == id).unwrap())[..]
        );
    }
    assert!(engine.resume_domain("a.test"));
    let stats = engine.wait_idle(WAIT).await.unwrap();
    assert_eq!(stats.delivered, 20, "{stats:?}");
    for id in &ids {
        assert!(
            engine.shared.cache.cached(*id).is_none(),
            "dropped once finished"
        );
    }
}
