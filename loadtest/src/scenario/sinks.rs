//! The MX hosts of a scenario: `volley-load sink` child processes, one per
//! loopback address, all on one port (the port Volley reaches MX hosts on). Each
//! is its own process so that the transmitter's CPU and memory are measured apart
//! from the receivers'.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Deserialize;

use super::procfs;

/// How long a sink may take to say it listens.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a sink may take to print its summary after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// What the sinks received (sums of their SIGTERM summaries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct SinkTotals {
    /// Accepted transactions.
    #[serde(default)]
    pub messages: u64,
    /// Accepted recipients of accepted transactions.
    #[serde(default)]
    pub recipients: u64,
    /// Content bytes of accepted transactions.
    #[serde(default)]
    pub bytes: u64,
    /// Connections accepted.
    #[serde(default)]
    pub connections: u64,
}

impl SinkTotals {
    fn add(&mut self, o: &SinkTotals) {
        self.messages += o.messages;
        self.recipients += o.recipients;
        self.bytes += o.bytes;
        self.connections += o.connections;
    }
}

/// Running sink processes. Dropping it kills any still running.
pub struct SinkFleet {
    /// One per address, in address order.
    procs: Vec<Child>,
    /// Where they listen.
    addrs: Vec<SocketAddr>,
}

impl SinkFleet {
    /// Starts `n` sinks on `base`, `base + 1`, ... with one free port, using the
    /// `volley-load` binary `exe`. Retries with another port when one is taken on
    /// any of the addresses.
    pub fn start(exe: &Path, base: Ipv4Addr, n: u32, hostname: &str) -> anyhow::Result<SinkFleet> {
        let ips: Vec<Ipv4Addr> = (0..n).map(|i| nth_ip(base, i)).collect();
        let mut last = None;
        for _ in 0..10 {
            let port = TcpListener::bind((ips[0], 0))
                .and_then(|l| l.local_addr())
                .with_context(|| format!("binding {}:0", ips[0]))?
                .port();
            let addrs: Vec<SocketAddr> =
                ips.iter().map(|ip| SocketAddr::from((*ip, port))).collect();
            let mut fleet = SinkFleet {
                procs: Vec::with_capacity(addrs.len()),
                addrs: addrs.clone(),
            };
            let mut ok = true;
            for addr in &addrs {
                match spawn_one(exe, *addr, hostname) {
                    Ok(child) => fleet.procs.push(child),
                    Err(e) => {
                        last = Some(e);
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                return Ok(fleet);
            }
            // `fleet` drops here, killing the sinks that did start.
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no sink started")))
            .context("no port was free on every sink address")
    }

    /// Where they listen (same port on every address).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The port they share.
    pub fn port(&self) -> u16 {
        self.addrs.first().map_or(0, |a| a.port())
    }

    /// CPU seconds all of them have used so far.
    pub fn cpu_seconds(&self) -> f64 {
        self.procs
            .iter()
            .filter_map(|c| procfs::cpu_seconds(c.id()))
            .sum()
    }

    /// Largest peak RSS of any of them, MB.
    pub fn peak_rss_mb(&self) -> f64 {
        self.procs
            .iter()
            .filter_map(|c| procfs::peak_rss_mb(c.id()))
            .fold(0.0, f64::max)
    }

    /// Stops them (SIGTERM) and sums their summaries.
    pub fn stop(mut self) -> anyhow::Result<SinkTotals> {
        for c in &self.procs {
            let _ = procfs::terminate(c.id());
        }
        let mut total = SinkTotals::default();
        let mut errors = Vec::new();
        for (mut child, addr) in std::mem::take(&mut self.procs).into_iter().zip(&self.addrs) {
            match summary_of(&mut child) {
                Ok(s) => total.add(&s),
                Err(e) => errors.push(format!("sink {addr}: {e:#}")),
            }
        }
        if !errors.is_empty() {
            bail!("{}", errors.join("; "));
        }
        Ok(total)
    }
}

impl Drop for SinkFleet {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Address `i` after `base` (127.0.40.1 + 2 = 127.0.40.3).
pub fn nth_ip(base: Ipv4Addr, i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base).wrapping_add(i))
}

/// Starts one sink and waits until it listens (or fails).
fn spawn_one(exe: &Path, addr: SocketAddr, hostname: &str) -> anyhow::Result<Child> {
    let mut child = Command::new(exe)
        .args(["sink", "--quiet", "--listen", &addr.to_string()])
        .args(["--hostname", hostname])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} sink", exe.display()))?;
    let stderr = child.stderr.take().context("sink stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut said = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !said && line.contains("listening on") {
                said = true;
                let _ = tx.send(Ok(()));
            } else if !said {
                let _ = tx.send(Err(line));
            } else {
                eprintln!("[sink {addr}] {line}");
            }
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let mut said = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(())) => return Ok(child),
            Ok(Err(line)) => said.push(line),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("sink on {addr} did not start: {}", said.join(" / "));
            }
        }
    }
}

/// Reads the JSON summary a sink prints on SIGTERM, and reaps it.
fn summary_of(child: &mut Child) -> anyhow::Result<SinkTotals> {
    let mut out = child.stdout.take().context("sink stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    let text = match rx.recv_timeout(STOP_TIMEOUT) {
        Ok(t) => t,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("no summary within {}s of SIGTERM", STOP_TIMEOUT.as_secs());
        }
    };
    let _ = child.wait();
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line).with_context(|| format!("sink summary {text:?}"))
}
