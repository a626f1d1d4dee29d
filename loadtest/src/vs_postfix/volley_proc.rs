//! Volley as a child process (`volley serve --config FILE`, or the same code in
//! this binary: `volley-load vs-postfix volley --config FILE` calls
//! `volley::cli::serve::run`), so its CPU time is its own and it stops like a
//! deployed server, on SIGTERM.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long Volley may take to open its spool and bind.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful shutdown may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Volley; killed on drop if not stopped.
pub struct VolleyProc {
    /// The process.
    child: Child,
    /// Its stdout and stderr, shown when it fails.
    log: PathBuf,
}

impl VolleyProc {
    /// Starts `volley serve --config CONFIG` (with `bin`), or this binary's
    /// `vs-postfix volley --config CONFIG`, and waits until `relay` accepts
    /// connections.
    pub fn start(
        bin: Option<&Path>,
        exe: &Path,
        config: &Path,
        relay: SocketAddr,
        log: &Path,
    ) -> anyhow::Result<VolleyProc> {
        let mut cmd = match bin {
            Some(b) => {
                let mut c = Command::new(b);
                c.arg("serve");
                c
            }
            None => {
                let mut c = Command::new(exe);
                c.args(["vs-postfix", "volley"]);
                c
            }
        };
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting Volley")?;
        let mut v = VolleyProc {
            child,
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = v.child.try_wait()? {
                bail!("Volley exited with {status} at start:\n{}", v.log_text());
            }
            if TcpStream::connect_timeout(&relay, Duration::from_millis(200)).is_ok() {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!(
                    "Volley's relay listener {relay} was not up after {START_TIMEOUT:?}:\n{}",
                    v.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for the graceful shutdown (SIGKILL after a minute).
    pub fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("Volley exited with {status}:\n{}", self.log_text());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("Volley did not stop within {STOP_TIMEOUT:?}: killed");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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
