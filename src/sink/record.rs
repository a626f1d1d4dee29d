//! `--record FILE`: one JSON line per accepted transaction.
//!
//! A connection renders its lines into its own buffer while it handles a batch of
//! input, and appends the buffer to the file (one `write` under a mutex) just before
//! it writes the batch's replies. So when a client has read a `250` for a message,
//! that message's line is already in the file: tests can read it while the sink runs.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::SinkError;

/// One accepted transaction, as written.
#[derive(Debug, serde::Serialize)]
pub struct Entry<'a> {
    /// Reverse-path without brackets; `""` for the null path `<>`.
    pub mail_from: &'a str,
    /// The recipients that were accepted, in order.
    pub rcpts: &'a [String],
    /// Content bytes (after unstuffing, or all BDAT chunks together).
    pub size: u64,
    /// SHA-256 of exactly those bytes, lowercase hex.
    pub sha256: &'a str,
    /// Whether the transaction came over STARTTLS.
    pub tls: bool,
    /// The EHLO/HELO argument.
    pub helo: &'a str,
    /// The client's address.
    pub peer: SocketAddr,
    /// Our address the client connected to.
    pub listen: SocketAddr,
    /// When the message was accepted: Unix time in seconds, millisecond precision.
    pub ts: f64,
}

impl Entry<'_> {
    /// Appends the entry as a JSON line to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        // Serialising plain strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, self);
        out.push(b'\n');
    }
}

/// Seconds since the Unix epoch, millisecond precision.
pub fn now_ts() -> f64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_millis() as f64) / 1000.0
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// The record file, shared by every connection.
pub struct Recorder {
    /// Unbuffered: each connection hands over whole lines in one write.
    file: Mutex<File>,
}

impl Recorder {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> Result<Recorder, SinkError> {
        let file = File::create(path).map_err(|source| SinkError::Record {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Recorder {
            file: Mutex::new(file),
        })
    }

    /// Appends complete lines; the caller clears its buffer afterwards.
    pub fn append(&self, lines: &[u8]) {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = file.write_all(lines) {
            eprintln!("sink: writing the record: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_render_as_one_json_line() {
        let rcpts = vec!["a@b.example".to_string()];
        let e = Entry {
            mail_from: "",
            rcpts: &rcpts,
            size: 3,
            sha256: &hex(&[0xab, 0x01]),
            tls: false,
            helo: "client",
            peer: "127.0.0.1:5000".parse().unwrap(),
            listen: "127.0.0.2:25".parse().unwrap(),
            ts: 1.5,
        };
        let mut out = Vec::new();
        e.write_line(&mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["sha256"], "ab01");
        assert_eq!(v["rcpts"][0], "a@b.example");
        assert_eq!(v["peer"], "127.0.0.1:5000");
        assert_eq!(v["tls"], false);
    }
}
