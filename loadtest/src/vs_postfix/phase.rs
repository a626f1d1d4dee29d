//! One measured side: inject a workload into an MTA by SMTP with `volley-load
//! blast` (a child process), and time it from the first injection to the moment
//! the sinks have received every recipient.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use volley::sink::Sink;

use super::cpu;
use super::world::SUFFIX;

/// How often the sinks' counters are read. Each read also asks idle sink
/// connections to publish their counts, so the end is seen within two periods.
const POLL: Duration = Duration::from_millis(10);
/// How long to watch for extra (duplicate) deliveries once all have arrived.
const SETTLE: Duration = Duration::from_millis(300);

/// The same SMTP load for both sides.
#[derive(Debug, Clone)]
pub struct Load {
    /// Transactions.
    pub messages: u64,
    /// RCPTs per transaction.
    pub rcpts_per_msg: u32,
    /// Message size in bytes.
    pub size: usize,
    /// Recipient domains (`d0.SUFFIX` ..).
    pub domains: u64,
    /// Concurrent SMTP connections of the blaster.
    pub connections: u32,
    /// BDAT (both MTAs offer CHUNKING) rather than DATA.
    pub chunking: bool,
}

impl Load {
    /// Recipients in the whole load.
    pub fn recipients(&self) -> u64 {
        self.messages * u64::from(self.rcpts_per_msg)
    }
}

/// Time bounds of one side.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The whole side, injection and delivery.
    pub timeout: Duration,
    /// No new delivery for this long (after injection ended) is a failure.
    pub stall: Duration,
}

/// What one side did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Recipients that arrived at the sinks (duplicates included).
    pub delivered: u64,
    /// Messages (transactions) that arrived at the sinks.
    pub transactions: u64,
    /// First injection to last delivery.
    pub elapsed: Duration,
    /// The blaster's JSON report (ingest rate and ack latency).
    pub blast: serde_json::Value,
    /// CPU seconds the MTA used during the side, if it could be read.
    pub mta_cpu_s: Option<f64>,
    /// The machine's busy CPU seconds during the side (both cores).
    pub machine_busy_s: f64,
    /// The machine's iowait seconds during the side.
    pub machine_iowait_s: f64,
}

impl Outcome {
    /// Delivered recipients per second.
    pub fn per_s(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Blasts `load` at `target` and waits until the sinks have counted every
/// recipient. `mta_cpu` reads the MTA's CPU seconds (before and after).
pub fn measure(
    exe: &Path,
    target: SocketAddr,
    load: &Load,
    sink: &Sink,
    mta_cpu: &dyn Fn() -> Option<f64>,
    limits: Limits,
) -> anyhow::Result<Outcome> {
    let expected = load.recipients();
    let base = sink.stats();
    let cpu0 = mta_cpu();
    let machine0 = cpu::machine_seconds();
    let t0 = Instant::now();
    let mut cmd = blast_command(exe, target, load);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let blast_pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });

    let mut blast: Option<serde_json::Value> = None;
    let mut last = 0;
    let mut last_change = t0;
    let done_at = loop {
        let got = sink.stats().recipients - base.recipients;
        let now = Instant::now();
        if got != last {
            last = got;
            last_change = now;
        }
        if got >= expected && blast.is_some() {
            break last_change;
        }
        if blast.is_none() {
            match rx.try_recv() {
                Ok(out) => {
                    let report = blast_report(out)?;
                    let accepted = report["accepted_recipients"].as_u64().unwrap_or(0);
                    if accepted != expected {
                        bail!(
                            "{target} accepted {accepted} of {expected} recipients: {}",
                            report
                        );
                    }
                    blast = Some(report);
                }
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => bail!("the blaster's waiter ended"),
            }
        }
        if now - t0 > limits.timeout {
            kill(blast_pid);
            bail!(
                "{target}: {got} of {expected} recipients delivered after {:?} (--timeout)",
                limits.timeout
            );
        }
        if blast.is_some() && now - last_change > limits.stall {
            bail!(
                "{target}: delivery stalled at {got} of {expected} recipients for {:?} (--stall)",
                limits.stall
            );
        }
        std::thread::sleep(POLL);
    };
    let cpu1 = mta_cpu();
    let machine1 = cpu::machine_seconds();
    // Anything arriving now would be a duplicate: count it, do not time it.
    std::thread::sleep(SETTLE);
    let end = sink.stats();
    let (busy, iowait) = match (machine0, machine1) {
        (Some(a), Some(b)) => (b.0 - a.0, b.2 - a.2),
        _ => (0.0, 0.0),
    };
    Ok(Outcome {
        delivered: end.recipients - base.recipients,
        transactions: end.messages - base.messages,
        elapsed: done_at - t0,
        blast: blast.unwrap_or_default(),
        mta_cpu_s: cpu0.zip(cpu1).map(|(a, b)| b - a),
        machine_busy_s: busy,
        machine_iowait_s: iowait,
    })
}

/// `volley-load blast` with the load's flags; the same for both sides.
fn blast_command(exe: &Path, target: SocketAddr, load: &Load) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("blast")
        .arg("--target")
        .arg(target.to_string())
        .args(["--messages", &load.messages.to_string()])
        .args(["--connections", &load.connections.to_string()])
        .args(["--size", &load.size.to_string()])
        .args(["--rcpts-per-msg", &load.rcpts_per_msg.to_string()])
        .args(["--domains", &load.domains.to_string()])
        .args(["--domain-suffix", SUFFIX])
        // Generous: a queue manager that lags must show as time, not as loss.
        .args(["--timeout", "300", "--drain", "300"])
        .args(["--json", "--quiet"]);
    if load.chunking {
        cmd.arg("--chunking");
    }
    cmd
}

/// The blaster's JSON report, or why there is none.
fn blast_report(out: std::io::Result<Output>) -> anyhow::Result<serde_json::Value> {
    let out = out.context("waiting for the blaster")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("the blaster exited with {}: {}", out.status, stderr.trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .with_context(|| format!("the blaster's report {text:?} ({})", stderr.trim()))
}

/// Stops a runaway blaster (SIGKILL by pid; the waiter thread reaps it).
fn kill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}
