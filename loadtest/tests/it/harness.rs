//! Starting and stopping `volley-load` and Postfix's tools as child processes.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `volley-load` binary cargo built for these tests.
pub fn volley_load() -> Command {
    Command::new(env!("CARGO_BIN_EXE_volley-load"))
}

/// Path to a Postfix tool; panics with an install hint when Postfix is missing, since
/// the interop tests are part of the suite (`.ci/run` installs it).
pub fn postfix_tool(name: &str) -> PathBuf {
    let path = Path::new("/usr/sbin").join(name);
    assert!(
        path.exists(),
        "{} not found: install Debian's `postfix` package (.ci/run does)",
        path.display()
    );
    path
}

/// A loopback port that was free a moment ago. Postfix's smtp-sink binds a port that
/// is already taken without complaint, so tests pick ports the kernel says are free.
pub fn free_port(ip: &str) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).expect("bind to find a free port");
    l.local_addr().unwrap()
}

/// Waits until something accepts TCP connections at `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listening at {addr} after {timeout:?}");
}

/// A `volley-load sink` child process.
pub struct Sink {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    stdout: Option<std::process::ChildStdout>,
}

impl Sink {
    /// Starts a sink on a free port of `ip` with extra flags, and waits until it
    /// accepts connections.
    pub fn start(ip: &str, extra: &[&str]) -> Sink {
        Sink::start_at(free_port(ip), extra)
    }

    /// Starts a sink on exactly `addr` (e.g. an MX host's 127.0.0.x address with
    /// the port every MX of a test shares), and waits until it accepts connections.
    /// The readiness probe is one connection: the summary's `connections` counts it.
    pub fn start_at(addr: SocketAddr, extra: &[&str]) -> Sink {
        let mut child = volley_load()
            .arg("sink")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--quiet")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn volley-load sink");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
                eprintln!("[sink] {line}");
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("sink did not report listening");
        wait_for_port(addr, Duration::from_secs(10));
        let stdout = child.stdout.take();
        Sink {
            child,
            addr,
            stdout,
        }
    }

    /// Stops the sink with SIGTERM and returns its final JSON summary.
    pub fn stop(mut self) -> serde_json::Value {
        terminate(&self.child);
        let mut out = String::new();
        self.stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = wait_timeout(&mut self.child, Duration::from_secs(20));
        assert!(status.success(), "sink exited with {status}");
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("sink summary {out:?}: {e}"))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Postfix's `smtp-sink` as a child process.
pub struct SmtpSink {
    child: Child,
    pub addr: SocketAddr,
}

impl SmtpSink {
    pub fn start(ip: &str) -> SmtpSink {
        let addr = free_port(ip);
        let child = Command::new(postfix_tool("smtp-sink"))
            .args(["-u", "nobody", &addr.to_string(), "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn smtp-sink");
        wait_for_port(addr, Duration::from_secs(10));
        SmtpSink { child, addr }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `volley-load blast --json` with these flags and returns its JSON report.
pub fn blast(target: SocketAddr, extra: &[&str]) -> serde_json::Value {
    let out = volley_load()
        .arg("blast")
        .arg("--target")
        .arg(target.to_string())
        .arg("--json")
        .arg("--quiet")
        .args(extra)
        .stderr(Stdio::inherit())
        .output()
        .expect("run volley-load blast");
    assert!(out.status.success(), "blast exited with {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("blast report {text:?}: {e}"))
}

/// Reads a JSON-lines file.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("record line {l:?}: {e}")))
        .collect()
}

/// A fresh temporary directory under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "volley-it-{name}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn terminate(child: &Child) {
    // kill(1) rather than libc: the test crate stays free of unsafe code.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
