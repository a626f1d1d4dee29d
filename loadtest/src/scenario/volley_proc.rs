//! Volley as a child process, so its CPU time and peak memory are its own: the
//! hidden `volley-load scenario-volley --config FILE` runs the transmitter through
//! the library (`volley::server::Server`; the `volley` binary need not be built),
//! prints one JSON line when it is up and one with the engine's counters every
//! 100 ms, and shuts down gracefully when its stdin closes (so it also stops when
//! its parent dies), printing a last line with `"final": true`.
//!
//! [`VolleyProc`] is the parent's side.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::json;
use volley::config::Config;
use volley::delivery::EngineStats;
use volley::server::Server;

use super::procfs;

/// How long Volley may take to start (open the spool, bind).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful shutdown may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Counter lines per second.
const TICK: Duration = Duration::from_millis(100);

/// `scenario-volley` arguments.
#[derive(clap::Args, Debug)]
pub struct ChildArgs {
    /// Volley's configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// The engine counters a line carries.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize)]
pub struct Counters {
    /// Recipients delivered.
    #[serde(default)]
    pub delivered: u64,
    /// Deferral events.
    #[serde(default)]
    pub deferred: u64,
    /// Recipients bounced.
    #[serde(default)]
    pub bounced: u64,
    /// Recipients expired.
    #[serde(default)]
    pub expired: u64,
    /// Recipients queued (gauge).
    #[serde(default)]
    pub queued: u64,
    /// Recipients in flight (gauge).
    #[serde(default)]
    pub in_flight: u64,
    /// Messages injected.
    #[serde(default)]
    pub injected: u64,
    /// SMTP connections made.
    #[serde(default)]
    pub connections: u64,
}

impl Counters {
    fn of(s: &EngineStats) -> Counters {
        Counters {
            delivered: s.delivered,
            deferred: s.deferred,
            bounced: s.bounced,
            expired: s.expired,
            queued: s.queued,
            in_flight: s.in_flight,
            injected: s.injected,
            connections: s.connections,
        }
    }

    /// Recipients with a final outcome.
    pub fn finished(&self) -> u64 {
        self.delivered + self.bounced + self.expired
    }
}

/// The child: runs Volley until stdin closes.
pub fn run_child(args: ChildArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let server = Server::start(config).await.context("starting Volley")?;
        say(&json!({"ready": true, "http": server.http_addr().to_string()}));
        let (eof_tx, mut eof) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            let _ = eof_tx.send(());
        });
        let engine = server.engine().clone();
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = tick.tick() => say(&json!(Counters::of(&engine.stats()))),
                _ = &mut eof => break,
            }
        }
        let stats = server.shutdown().await;
        let mut last = json!(Counters::of(&stats));
        last["final"] = true.into();
        say(&last);
        Ok(())
    })
}

fn say(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// The parent's handle on a Volley child process. Dropping it kills the child.
pub struct VolleyProc {
    child: Child,
    /// Closing it asks for a graceful shutdown.
    stdin: Option<ChildStdin>,
    /// The HTTP API.
    http: SocketAddr,
    /// The latest counters.
    latest: Arc<Mutex<Counters>>,
    /// The final counters, once the child prints them.
    last: mpsc::Receiver<Counters>,
}

impl VolleyProc {
    /// Starts `exe scenario-volley --config config` and waits until it is up.
    pub fn start(exe: &Path, config: &Path) -> anyhow::Result<VolleyProc> {
        let mut child = Command::new(exe)
            .arg("scenario-volley")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting Volley")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("Volley's stdout")?;
        let latest = Arc::new(Mutex::new(Counters::default()));
        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        let (last_tx, last) = mpsc::channel();
        let shared = latest.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    eprintln!("[volley] {line}");
                    continue;
                };
                if v["ready"] == true {
                    let _ = ready_tx.send(v["http"].as_str().unwrap_or("").to_string());
                } else if let Ok(c) = serde_json::from_value::<Counters>(v.clone()) {
                    if let Ok(mut l) = shared.lock() {
                        *l = c;
                    }
                    if v["final"] == true {
                        let _ = last_tx.send(c);
                    }
                }
            }
        });
        let mut proc = VolleyProc {
            child,
            stdin,
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            latest,
            last,
        };
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => {
                proc.http = addr
                    .parse()
                    .with_context(|| format!("Volley's HTTP address {addr:?}"))?;
                Ok(proc)
            }
            Err(_) => {
                let status = proc.child.try_wait().ok().flatten();
                bail!(
                    "Volley did not start within {}s ({})",
                    START_TIMEOUT.as_secs(),
                    status.map_or("still running".to_string(), |s| s.to_string())
                )
            }
        }
    }

    /// Its HTTP API.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The latest counters (at most 100 ms old).
    pub fn counters(&self) -> Counters {
        self.latest.lock().map(|c| *c).unwrap_or_default()
    }

    /// CPU seconds it has used.
    pub fn cpu_seconds(&self) -> Option<f64> {
        procfs::cpu_seconds(self.pid())
    }

    /// Its peak RSS, MB.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        procfs::peak_rss_mb(self.pid())
    }

    /// Graceful shutdown; returns the final counters.
    pub fn stop(mut self) -> anyhow::Result<Counters> {
        drop(self.stdin.take());
        let last = self.last.recv_timeout(STOP_TIMEOUT);
        if last.is_err() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        last.map_err(|_| {
            anyhow::anyhow!(
                "Volley did not shut down within {}s",
                STOP_TIMEOUT.as_secs()
            )
        })
    }
}

impl Drop for VolleyProc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
