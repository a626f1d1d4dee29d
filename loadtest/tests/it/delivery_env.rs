//! The world a delivery scenario runs in: MX hosts on distinct loopback addresses
//! sharing one port number (`delivery.smtp_port`), a DNS server on loopback serving
//! a test zone, the engine configured to use both, and readers for what the sinks
//! recorded and what the delivery log says.
//!
//! Scenarios run in parallel, so each owns its MX addresses: 127.0.10.x
//! `delivery_basic` and `delivery_postfix`, 127.0.11.x `delivery_faults`,
//! 127.0.12.x `delivery_policy`, 127.0.13.x `delivery_recovery` (127.0.0.x is the
//! older suites'). A failing scenario prints the end of its delivery log.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use volley::config::Config;
use volley::delivery::{Engine, EngineHandle, EngineStats, Injection};
use volley::dns::TestDnsServer;
use volley::model::MessageId;
use volley::queue::SystemClock;
use volley::spool::memory::MemorySpool;
use volley::spool::Spool;

use crate::harness::{read_jsonl, Sink, TempDir};

/// Every scenario's whole body runs under this bound: a hang fails, it never blocks
/// the suite.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs a scenario's future with [`SCENARIO_TIMEOUT`].
pub async fn bounded<F: std::future::Future<Output = ()>>(name: &str, f: F) {
    if tokio::time::timeout(SCENARIO_TIMEOUT, f).await.is_err() {
        panic!("scenario {name} did not finish within {SCENARIO_TIMEOUT:?}");
    }
}

/// Runs blocking test code (starting and stopping child processes, polling files)
/// from async test code, telling tokio so; the engine's tasks keep running on the
/// runtime's workers meanwhile.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A port number free on every one of `ips` a moment ago.
pub fn shared_port(ips: &[Ipv4Addr]) -> u16 {
    for _ in 0..100 {
        let first = TcpListener::bind((ips[0], 0)).expect("bind to find a port");
        let port = first.local_addr().unwrap().port();
        let held: Vec<_> = ips[1..]
            .iter()
            .map_while(|ip| TcpListener::bind((*ip, port)).ok())
            .collect();
        if held.len() == ips.len() - 1 {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// Zone-file text: a root SOA (negative answers cached 1 s) and `records`.
pub fn zone(records: &str) -> String {
    format!("$TTL 60\n@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 1\n{records}\n")
}

/// Knobs of the engine configuration a scenario may turn.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// `delivery.retry_schedule`.
    pub retry: &'static str,
    /// `delivery.tls`.
    pub tls: &'static str,
    /// `delivery.message_lifetime`.
    pub lifetime: &'static str,
    /// Extra lines in `[shaping.default]`.
    pub shaping_default: String,
    /// Extra TOML appended at the end (e.g. `[[shaping.rule]]` tables).
    pub tail: String,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            retry: r#"["1s"]"#,
            tls: "opportunistic",
            lifetime: "1h",
            shaping_default: String::new(),
            tail: String::new(),
        }
    }
}

/// A sink child at an MX address, with its record file.
pub struct MxSink {
    /// The sink process.
    pub sink: Sink,
    /// Its `--record` JSON lines.
    pub record: PathBuf,
}

impl MxSink {
    /// Stops the sink; returns its summary and its records.
    pub fn stop(self) -> (Value, Vec<Value>) {
        let record = self.record.clone();
        let summary = blocking(|| self.sink.stop());
        (summary, read_jsonl(&record))
    }
}

/// One scenario's environment.
pub struct World {
    /// The port every MX host listens on.
    pub port: u16,
    /// The DNS server the engine asks.
    pub dns: TestDnsServer,
    /// Where the delivery log is written.
    pub log: PathBuf,
    /// Holds the log and record files.
    pub dir: TempDir,
}

impl World {
    /// Picks a port free on every one of `ips` and serves `records` (see [`zone`]).
    pub async fn new(name: &str, ips: &[Ipv4Addr], records: &str) -> World {
        let port = shared_port(ips);
        let dns = TestDnsServer::start(&zone(records), "127.0.0.1:0".parse().unwrap())
            .await
            .expect("test DNS server starts");
        let dir = TempDir::new(name);
        World {
            port,
            dns,
            log: dir.0.join("delivery.jsonl"),
            dir,
        }
    }

    /// The MX address `ip` with the shared port.
    pub fn at(&self, ip: Ipv4Addr) -> SocketAddr {
        SocketAddr::from((ip, self.port))
    }

    /// Starts a `volley-load sink` on `ip` with `--record` and `extra` flags.
    pub fn sink(&self, ip: Ipv4Addr, extra: &[&str]) -> MxSink {
        let record = self.dir.0.join(format!("record-{ip}.jsonl"));
        let mut args = vec!["--record", record.to_str().unwrap()];
        args.extend_from_slice(extra);
        let sink = blocking(|| Sink::start_at(self.at(ip), &args));
        MxSink { sink, record }
    }

    /// The engine configuration text for this world.
    pub fn config_text(&self, knobs: &Knobs) -> String {
        format!(
            r#"
[dns]
nameservers = ["{dns}"]
timeout = "1s"
attempts = 2
min_ttl = "0s"
failure_ttl = "1s"

[delivery]
smtp_port = {port}
ehlo_name = "volley.test"
tls = "{tls}"
retry_schedule = {retry}
message_lifetime = "{lifetime}"

[delivery.timeouts]
connect = "3s"
banner = "10s"
command = "10s"
tls_handshake = "10s"
mail = "10s"
rcpt = "10s"
data_init = "10s"
data_block = "10s"
data_end = "10s"
quit = "2s"

[shaping.default]
idle_timeout = "5s"
{shaping}

[log]
delivery = "{log}"
{tail}
"#,
            dns = self.dns.addr(),
            port = self.port,
            tls = knobs.tls,
            lifetime = knobs.lifetime,
            retry = knobs.retry,
            shaping = knobs.shaping_default,
            log = self.log.display(),
            tail = knobs.tail,
        )
    }

    /// Starts an engine on an in-memory spool with this world's configuration.
    pub async fn engine(&self, knobs: &Knobs) -> EngineHandle {
        self.engine_on(knobs, Arc::new(MemorySpool::default()))
            .await
    }

    /// Starts an engine on `spool` (e.g. a RocksDB spool reopened after a restart).
    pub async fn engine_on(&self, knobs: &Knobs, spool: Arc<dyn Spool>) -> EngineHandle {
        let text = self.config_text(knobs);
        let config = Config::from_toml_str(&text)
            .unwrap_or_else(|e| panic!("test config refused: {e}\n{text}"));
        Engine::start(&config, spool, Arc::new(SystemClock))
            .await
            .expect("engine starts")
    }

    /// The delivery log's events so far.
    pub fn events(&self) -> Vec<Value> {
        read_jsonl(&self.log)
    }

    /// Waits until the delivery log's events satisfy `done`; fails after `timeout`
    /// showing them.
    pub async fn wait_events(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let events = self.events();
            if done(&events) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("waited {timeout:?} for {what}; delivery log: {events:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Events of one kind (`delivered`, `deferred`, `bounced`, `expired`).
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }
}

impl Drop for World {
    /// A failing scenario shows the end of its delivery log (test output is shown
    /// for failures only).
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- delivery log (last {} lines):\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

/// Injects one message.
pub async fn inject(engine: &EngineHandle, from: &str, rcpts: &[&str], body: &[u8]) -> MessageId {
    let rcpts: Vec<String> = rcpts.iter().map(|r| r.to_string()).collect();
    engine
        .inject(Injection::new(from, rcpts, body.to_vec()))
        .await
        .expect("inject")
}

/// Waits until `done` holds for the engine's stats, failing with the last stats
/// after `timeout`.
pub async fn wait_for(
    engine: &EngineHandle,
    timeout: Duration,
    what: &str,
    done: impl Fn(&EngineStats) -> bool,
) -> EngineStats {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let stats = engine.stats();
        if done(&stats) {
            return stats;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("waited {timeout:?} for {what}; stats: {stats:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the engine is idle (nothing ready or in flight, log flushed).
pub async fn idle(engine: &EngineHandle, timeout: Duration) -> EngineStats {
    match engine.wait_idle(timeout).await {
        Ok(stats) => stats,
        Err(e) => panic!(
            "engine not idle after {timeout:?}: {e:?}; stats {:?}",
            engine.stats()
        ),
    }
}

/// A test message: headers naming `tag`, then `size` bytes or so of body lines,
/// one starting with a dot (exercises dot-stuffing on the wire).
pub fn message(tag: &str, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: <sender@volley.test>\r\nTo: <undisclosed@volley.test>\r\n\
         Subject: scenario {tag}\r\nMessage-ID: <{tag}@volley.test>\r\n\
         Date: Mon, 23 Nov 2026 07:00:00 +0000\r\n\r\n.leading dot line\r\n"
    )
    .into_bytes();
    let mut i = 0;
    while m.len() < size {
        m.extend_from_slice(
            format!("line {i:06} of {tag} abcdefghijklmnopqrstuvwxyz\r\n").as_bytes(),
        );
        i += 1;
    }
    m
}

/// Lower-case hex SHA-256, as the sink records it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The recipients of every record, flattened and sorted.
pub fn recorded_rcpts(records: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .flat_map(|r| r["rcpts"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

/// `n` recipients `prefix-0@domain` ...
pub fn rcpts(prefix: &str, domain: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}@{domain}")).collect()
}

/// `&str` views of owned strings.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
