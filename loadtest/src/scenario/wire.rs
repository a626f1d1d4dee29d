//! The wire limit: `volley-load blast` (a child process, flat out, PIPELINING +
//! CHUNKING as Volley uses them) at the scenario's sinks, with its message size
//! and recipients per transaction: what a client with nothing to do but send
//! gets through the same receivers on the same cores.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use serde::Deserialize;

use super::world::SUFFIX;

/// The blaster's settings.
#[derive(Debug, Clone, Copy)]
pub struct WireSpec {
    /// Message size, bytes.
    pub size: usize,
    /// Recipients per transaction.
    pub rcpts_per_msg: u32,
    /// Recipient domains (`d0..` under the scenario suffix).
    pub domains: u64,
    /// How long to send.
    pub seconds: f64,
    /// Connections, spread over the sinks.
    pub connections: u32,
}

/// What the blaster reported.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize)]
pub struct WireResult {
    /// Transactions completed.
    pub messages: u64,
    /// Recipients accepted.
    pub accepted_recipients: u64,
    /// Transactions per second.
    pub msgs_per_s: f64,
    /// Recipients per second.
    pub rcpts_per_s: f64,
    /// Sending time.
    pub elapsed_s: f64,
}

/// Runs the blaster (`exe blast ...`) against `targets`.
pub fn measure(exe: &Path, targets: &[SocketAddr], spec: WireSpec) -> anyhow::Result<WireResult> {
    let mut cmd = Command::new(exe);
    cmd.arg("blast");
    for t in targets {
        cmd.arg("--target").arg(t.to_string());
    }
    cmd.args(["--json", "--quiet", "--chunking"])
        .args(["--duration", &format!("{:.3}", spec.seconds.max(0.1))])
        .args(["--messages", "1000000000"])
        .args(["--connections", &spec.connections.max(1).to_string()])
        .args(["--size", &spec.size.to_string()])
        .args(["--rcpts-per-msg", &spec.rcpts_per_msg.max(1).to_string()])
        .args([
            "--domains",
            &spec.domains.clamp(1, u64::from(u32::MAX)).to_string(),
        ])
        .args(["--domain-suffix", SUFFIX])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let out = cmd.output().context("running the blaster")?;
    if !out.status.success() {
        bail!("the blaster failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "the blaster's report: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
