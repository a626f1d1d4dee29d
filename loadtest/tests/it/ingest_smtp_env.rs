//! What the SMTP ingest scenarios share: listener configurations, a certificate
//! made for the test, and a raw SMTP client that can connect from any loopback
//! address.
//!
//! Address plan: 127.0.14.x submission scenarios, 127.0.15.x relay scenarios,
//! 127.0.16.x the Postfix client scenario (other suites use other ranges; see
//! `delivery_env`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use volley::config::Config;
use volley::delivery::EngineHandle;
use volley::ingest::smtp::{ListenerKind, SmtpListener};

use crate::harness::TempDir;

/// `correct horse` (argon2id, the default parameters of `volley hash-password`).
pub const ALICE_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$polqWMbBOel29m+CX3dvqA$9IKQ4c1qM5rKJnmmNT9yCxJypNcM39bXeH/YIA37SrI";
/// `sekrit-bob`.
pub const BOB_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$72aZj1wKCHDU1kjg5V42wg$kgmcJk7TwbvB5I+/KhdIvCWEKIo2D8HrkqqoTrcgrpU";

/// Generous bound on any one reply: a hang fails, a slow box does not.
pub const REPLY_WAIT: Duration = Duration::from_secs(20);

/// A self-signed certificate for `127.0.0.1` and `mx.ingest.test`, as PEM files.
pub struct Certs {
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: TempDir,
}

impl Certs {
    pub fn new(name: &str) -> Certs {
        let dir = TempDir::new(&format!("certs-{name}"));
        let ck = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "mx.ingest.test".to_string(),
        ])
        .expect("rcgen");
        let cert = dir.0.join("cert.pem");
        let key = dir.0.join("key.pem");
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        Certs {
            cert,
            key,
            _dir: dir,
        }
    }
}

/// Parses listener configuration text (only `[smtp]` matters to the listener).
pub fn config(text: &str) -> Config {
    Config::from_toml_str(text).unwrap_or_else(|e| panic!("test config refused: {e}\n{text}"))
}

/// Starts a listener of `kind` on `config`, feeding `engine`.
pub async fn listen(kind: ListenerKind, config: &Config, engine: &EngineHandle) -> SmtpListener {
    SmtpListener::start(kind, config, engine.clone())
        .await
        .unwrap_or_else(|e| panic!("listener refused to start: {e}"))
}

/// A plain-text SMTP client over a real socket, bound to a chosen source address.
pub struct Client {
    stream: TcpStream,
    /// Bytes read and not yet returned.
    buf: Vec<u8>,
}

impl Client {
    /// Connects from `from` (any loopback address) to `to`.
    pub async fn connect_from(from: IpAddr, to: SocketAddr) -> Client {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(from, 0))
            .expect("bind client address");
        let stream = tokio::time::timeout(REPLY_WAIT, socket.connect(to))
            .await
            .expect("connect timed out")
            .unwrap_or_else(|e| panic!("connect {from} -> {to}: {e}"));
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects and reads the banner, which must be 220.
    pub async fn greeted(from: IpAddr, to: SocketAddr) -> Client {
        let mut c = Client::connect_from(from, to).await;
        let banner = c.reply().await;
        assert!(banner.starts_with("220 "), "banner {banner:?}");
        c
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream
            .write_all(bytes.as_ref())
            .await
            .expect("write to server");
    }

    /// Sends one command line and returns its reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n")).await;
        self.reply().await
    }

    /// The next complete reply (all its lines); panics on EOF or after
    /// [`REPLY_WAIT`].
    pub async fn reply(&mut self) -> String {
        match self.try_reply(REPLY_WAIT).await {
            Some(r) => r,
            None => panic!(
                "no reply within {REPLY_WAIT:?}; buffered {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// The next complete reply, or `None` on EOF or when `wait` passes first.
    pub async fn try_reply(&mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = reply_end(&self.buf) {
                let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end);
                return Some(text);
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    /// `n` replies, in order.
    pub async fn replies(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.reply().await);
        }
        out
    }

    /// Whether the server closed the connection (EOF or reset) within
    /// [`REPLY_WAIT`], discarding anything else it sends.
    pub async fn closed(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + REPLY_WAIT;
        loop {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

/// The length of the first complete reply in `buf` (through the CRLF of its last
/// line: the line whose code is followed by a space, or by nothing).
fn reply_end(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(lf) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + lf + 1];
        start += lf + 1;
        if line.get(3) != Some(&b'-') {
            return Some(start);
        }
    }
    None
}

/// The `NNN X.Y.Z` head of a reply (code and enhanced code).
pub fn head(reply: &str) -> String {
    let last = reply.lines().last().unwrap_or("");
    last.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

/// The id in a `250 2.0.0 Ok: queued as ID` reply.
pub fn queued_id(reply: &str) -> String {
    reply
        .trim_end()
        .rsplit(' ')
        .next()
        .filter(|_| reply.starts_with("250 2.0.0 Ok: queued as "))
        .unwrap_or_else(|| panic!("not a queued reply: {reply:?}"))
        .to_string()
}

/// Splits a stored body into its first header (our `Received:`, with its
/// continuation lines) and the rest.
pub fn split_received(body: &[u8]) -> (String, Vec<u8>) {
    let mut end = 0;
    loop {
        let lf = body[end..]
            .iter()
            .position(|&b| b == b'\n')
            .expect("header line ends");
        end += lf + 1;
        if !matches!(body.get(end), Some(b' ' | b'\t')) {
            break;
        }
    }
    (
        String::from_utf8_lossy(&body[..end]).into_owned(),
        body[end..].to_vec(),
    )
}

/// Runs a Python 3 script with arguments; returns its stdout, panicking with its
/// stderr when it fails.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3 failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
