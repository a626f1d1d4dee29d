//! [`SinkOptions`]: every setting of a sink, shared by the `volley-load sink` command
//! line (`cli.rs`) and the in-process [`Sink`](super::Sink) API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::faults::{LatencySpec, Percent};

/// How a sink listens and behaves. `Default` is a quiet, fault-free sink with the
/// command line's defaults and no listen address (set `listen`).
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Addresses to listen on (port 0 picks one). Default: none.
    pub listen: Vec<SocketAddr>,
    /// Name in the banner, the EHLO reply and the TLS certificate. Default
    /// "sink.volley.test".
    pub hostname: String,
    /// Tokio worker threads; 1 is a single-threaded runtime. Default 1.
    pub threads: usize,
    /// SIZE limit in bytes, advertised and enforced. Default 50 MiB.
    pub max_size: u64,
    /// Recipients per transaction before `452 4.5.3`. Default 1000.
    pub max_rcpts: u32,
    /// Open connections at most (more wait in the listen backlog). Default 10,000.
    pub max_conns: usize,
    /// Silence before `421` and close. Default 300 s.
    pub idle_timeout: Duration,
    /// Offer STARTTLS with a self-signed certificate made at start. Default false.
    pub tls: bool,
    /// Write one JSON line per accepted message to this file. Default: none.
    pub record: Option<PathBuf>,
    /// No counters on stderr. Default true (the command line's default is false).
    pub quiet: bool,
    /// Reply delays per protocol point. Default: none.
    pub latency: Vec<LatencySpec>,
    /// Share of RCPTs answered `451 4.3.0`. Default 0.
    pub rcpt_tempfail: Percent,
    /// Share of RCPTs answered `550 5.1.1`. Default 0.
    pub rcpt_permfail: Percent,
    /// Share of messages answered `451 4.3.0` at end of data. Default 0.
    pub data_tempfail: Percent,
    /// Share of messages answered `554 5.3.0` at end of data. Default 0.
    pub data_permfail: Percent,
    /// Share of transactions dropped without a reply after the body. Default 0.
    pub disconnect: Percent,
    /// Seed for the fault rolls. Default 1.
    pub seed: u64,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            listen: Vec::new(),
            hostname: "sink.volley.test".to_string(),
            threads: 1,
            max_size: 50 * 1024 * 1024,
            max_rcpts: 1000,
            max_conns: 10_000,
            idle_timeout: Duration::from_secs(300),
            tls: false,
            record: None,
            quiet: true,
            latency: Vec::new(),
            rcpt_tempfail: Percent::default(),
            rcpt_permfail: Percent::default(),
            data_tempfail: Percent::default(),
            data_permfail: Percent::default(),
            disconnect: Percent::default(),
            seed: 1,
        }
    }
}
