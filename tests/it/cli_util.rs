//! Helpers shared by the command-line tests: the binary, temp dirs, a `volley
//! serve` child process that reports its HTTP address, and a loopback world of
//! sinks and DNS.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use volley::dns::TestDnsServer;
use volley::sink::{Sink, SinkOptions};

/// The `volley` binary cargo built for these tests.
pub fn volley() -> Command {
    Command::new(env!("CARGO_BIN_EXE_volley"))
}

/// A fresh directory under the temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "volley-it-{}-{name}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `volley serve` child process.
pub struct Serve {
    pub child: Child,
    /// The HTTP API's address, from the ready line.
    pub http: SocketAddr,
    /// The ready line.
    pub ready: String,
    /// Its stderr lines (kept so the reading thread keeps draining the pipe).
    _stderr: mpsc::Receiver<String>,
}

impl Serve {
    /// Starts `volley serve --config path` and waits for its ready line.
    pub fn start(path: &Path) -> Serve {
        let mut child = volley()
            .arg("serve")
            .arg("--config")
            .arg(path)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[serve] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("volley serve reports ready");
            if line.contains("ready") {
                break line;
            }
        };
        let http = ready
            .split("http://")
            .nth(1)
            .and_then(|s| s.split([',', ' ']).next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP address in {ready:?}"));
        Serve {
            child,
            http,
            ready,
            _stderr: rx,
        }
    }

    /// SIGTERM, then the exit code.
    pub fn stop(mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "volley serve did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET over a socket: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Sinks on 127.0.0.2 and 127.0.0.3 (one port) and a DNS zone: `one.test` and
/// `two.test` have their MX on them. Keeps the runtime the DNS server runs on.
pub struct World {
    /// The runtime the DNS server's tasks run on.
    _rt: tokio::runtime::Runtime,
    pub dns: TestDnsServer,
    pub sink: Sink,
}

impl World {
    pub fn start() -> World {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sink = loop {
            let port = std::net::TcpListener::bind("127.0.0.2:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let listen = vec![
                SocketAddr::from(([127, 0, 0, 2], port)),
                SocketAddr::from(([127, 0, 0, 3], port)),
            ];
            if let Ok(s) = Sink::start(SinkOptions {
                listen,
                ..SinkOptions::default()
            }) {
                break s;
            }
        };
        let zone = "$TTL 300\n\
            test. IN SOA ns.test. hostmaster.test. 1 3600 600 86400 1\n\
            one.test. IN MX 10 mx1.test.\n\
            two.test. IN MX 10 mx2.test.\n\
            mx1.test. IN A 127.0.0.2\n\
            mx2.test. IN A 127.0.0.3\n";
        let dns = rt
            .block_on(TestDnsServer::start(zone, "127.0.0.1:0".parse().unwrap()))
            .unwrap();
        World { _rt: rt, dns, sink }
    }

    /// The port every MX listens on.
    pub fn smtp_port(&self) -> u16 {
        self.sink.local_addrs()[0].port()
    }

    /// Waits until the sinks have accepted `n` recipients (or panics after 60 s).
    pub fn wait_recipients(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.sink.stats();
            if s.recipients >= n {
                assert_eq!(s.recipients, n, "no more than sent");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} recipients arrived",
                s.recipients
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
