//! Counting and reporting: per-connection [`Stats`] (no sharing on the hot path),
//! merged at the end into a [`Summary`] printed as JSON or as a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest latency recorded, in microseconds (an hour); longer ones saturate.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// How a session talked to its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// PIPELINING + CHUNKING: whole transactions back to back.
    Chunking,
    /// PIPELINING with DATA: one round trip per message.
    Pipelining,
    /// One command per round trip.
    Lockstep,
}

/// What one connection task counted.
#[derive(Debug)]
pub struct Stats {
    /// Transaction latency in microseconds (from due time, or from the write).
    pub latency: Histogram<u64>,
    /// Transactions that got their final reply.
    pub messages: u64,
    /// RCPT commands written.
    pub recipients: u64,
    /// Accepted RCPTs of transactions whose final reply was 2xx.
    pub accepted_recipients: u64,
    /// Transactions written whose replies never came (disconnect, timeout, drain).
    pub lost: u64,
    /// Messages claimed but never written (no connection until the end).
    pub unsent: u64,
    /// Failed connection attempts (refused, timeout, bad greeting, TLS).
    pub connect_errors: u64,
    /// Established sessions that ended early (EOF, reset, 421, timeout).
    pub disconnects: u64,
    /// Sessions established, by [`Mode`] (chunking, pipelining, lockstep).
    pub sessions: [u64; 3],
    /// Final reply code of each completed transaction.
    pub codes: BTreeMap<u16, u64>,
    /// When the last transaction completed.
    pub last_done: Option<Instant>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("valid histogram bounds"),
            messages: 0,
            recipients: 0,
            accepted_recipients: 0,
            lost: 0,
            unsent: 0,
            connect_errors: 0,
            disconnects: 0,
            sessions: [0; 3],
            codes: BTreeMap::new(),
            last_done: None,
        }
    }
}

impl Stats {
    /// Records one completed transaction.
    pub fn record(&mut self, code: u16, accepted_rcpts: u64, latency: Duration, now: Instant) {
        self.messages += 1;
        if (200..300).contains(&code) {
            self.accepted_recipients += accepted_rcpts;
        }
        *self.codes.entry(code).or_default() += 1;
        self.latency
            .saturating_record((latency.as_micros() as u64).max(1));
        self.last_done = Some(now);
    }

    /// Counts a session in `mode`.
    pub fn session(&mut self, mode: Mode) {
        self.sessions[mode as usize] += 1;
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        self.latency
            .add(&other.latency)
            .expect("same histogram bounds");
        self.messages += other.messages;
        self.recipients += other.recipients;
        self.accepted_recipients += other.accepted_recipients;
        self.lost += other.lost;
        self.unsent += other.unsent;
        self.connect_errors += other.connect_errors;
        self.disconnects += other.disconnects;
        for (a, b) in self.sessions.iter_mut().zip(other.sessions) {
            *a += b;
        }
        for (code, n) in &other.codes {
            *self.codes.entry(*code).or_default() += n;
        }
        self.last_done = self.last_done.max(other.last_done);
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// Reads the percentiles from a microsecond histogram (zeros when empty).
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
        if h.is_empty() {
            return Latency {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
                mean: 0.0,
            };
        }
        Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
        }
    }
}

/// Final reply classes of completed transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Classes {
    #[serde(rename = "2xx")]
    pub ok: u64,
    #[serde(rename = "4xx")]
    pub transient: u64,
    #[serde(rename = "5xx")]
    pub permanent: u64,
}

/// Sessions by mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sessions {
    pub chunking: u64,
    pub pipelining: u64,
    pub lockstep: u64,
}

/// The run's result: the JSON object printed with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub targets: Vec<String>,
    pub connections: usize,
    pub message_bytes: usize,
    pub rcpts_per_msg: u32,
    pub rate: Option<f64>,
    pub messages: u64,
    pub recipients: u64,
    pub accepted_recipients: u64,
    pub lost: u64,
    pub unsent: u64,
    pub elapsed_s: f64,
    pub msgs_per_s: f64,
    pub rcpts_per_s: f64,
    pub latency_ms: Latency,
    pub replies: Classes,
    pub reply_codes: BTreeMap<String, u64>,
    pub connect_errors: u64,
    pub disconnects: u64,
    pub sessions: Sessions,
}

/// What the summary needs besides the counts.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub targets: Vec<String>,
    pub connections: usize,
    pub message_bytes: usize,
    pub rcpts_per_msg: u32,
    pub rate: Option<f64>,
}

impl Summary {
    /// Builds the summary; `elapsed` runs from the first claim to the last
    /// completion.
    pub fn new(info: RunInfo, stats: &Stats, elapsed: Duration) -> Summary {
        let secs = elapsed.as_secs_f64();
        let per_s = |n: u64| {
            if secs > 0.0 {
                (n as f64 / secs * 10.0).round() / 10.0
            } else {
                0.0
            }
        };
        let class = |c: u16| {
            stats
                .codes
                .iter()
                .filter(|(k, _)| **k / 100 == c)
                .map(|(_, n)| n)
                .sum()
        };
        Summary {
            targets: info.targets,
            connections: info.connections,
            message_bytes: info.message_bytes,
            rcpts_per_msg: info.rcpts_per_msg,
            rate: info.rate,
            messages: stats.messages,
            recipients: stats.recipients,
            accepted_recipients: stats.accepted_recipients,
            lost: stats.lost,
            unsent: stats.unsent,
            elapsed_s: (secs * 1000.0).round() / 1000.0,
            msgs_per_s: per_s(stats.messages),
            rcpts_per_s: per_s(stats.recipients),
            latency_ms: Latency::from_histogram(&stats.latency),
            replies: Classes {
                ok: class(2),
                transient: class(4),
                permanent: class(5),
            },
            reply_codes: stats
                .codes
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            connect_errors: stats.connect_errors,
            disconnects: stats.disconnects,
            sessions: Sessions {
                chunking: stats.sessions[Mode::Chunking as usize],
                pipelining: stats.sessions[Mode::Pipelining as usize],
                lockstep: stats.sessions[Mode::Lockstep as usize],
            },
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let rate = self
            .rate
            .map_or("unlimited".to_string(), |r| format!("{r}/s"));
        let _ = writeln!(t, "volley-load blast -> {}", self.targets.join(", "));
        let _ = writeln!(
            t,
            "  load          {} connections, {} bytes x {} rcpt, rate {}",
            self.connections, self.message_bytes, self.rcpts_per_msg, rate
        );
        let s = &self.sessions;
        let _ = writeln!(
            t,
            "  sessions      {} chunking, {} pipelining, {} lockstep",
            s.chunking, s.pipelining, s.lockstep
        );
        let _ = writeln!(
            t,
            "  messages      {:<12} {:>12.1} msg/s",
            self.messages, self.msgs_per_s
        );
        let _ = writeln!(
            t,
            "  recipients    {:<12} {:>12.1} rcpt/s",
            self.recipients, self.rcpts_per_s
        );
        let _ = writeln!(t, "  accepted      {} recipients", self.accepted_recipients);
        let _ = writeln!(t, "  lost/unsent   {} / {}", self.lost, self.unsent);
        let _ = writeln!(t, "  elapsed       {:.3} s", self.elapsed_s);
        let l = &self.latency_ms;
        let _ = writeln!(
            t,
            "  latency ms    p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
        let codes: Vec<String> = self
            .reply_codes
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        let r = &self.replies;
        let _ = writeln!(
            t,
            "  replies       2xx {}  4xx {}  5xx {}  [{}]",
            r.ok,
            r.transient,
            r.permanent,
            codes.join(" ")
        );
        let _ = writeln!(
            t,
            "  errors        {} connect errors, {} disconnects",
            self.connect_errors, self.disconnects
        );
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RunInfo {
        RunInfo {
            targets: vec!["127.0.0.1:25".into()],
            connections: 2,
            message_bytes: 4096,
            rcpts_per_msg: 1,
            rate: None,
        }
    }

    #[test]
    fn percentiles_come_out_in_ms() {
        let mut s = Stats::default();
        let now = Instant::now();
        for us in 1..=1000u64 {
            s.record(250, 1, Duration::from_micros(us * 10), now);
        }
        let l = Latency::from_histogram(&s.latency);
        assert!((l.p50 - 5.0).abs() < 0.01, "{l:?}");
        assert!((l.p90 - 9.0).abs() < 0.01, "{l:?}");
        assert!((l.p99 - 9.9).abs() < 0.01, "{l:?}");
        assert!((l.max - 10.0).abs() < 0.01, "{l:?}");
        assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max);
    }

    #[test]
    fn json_has_the_contract_fields() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        let now = Instant::now();
        a.record(250, 3, Duration::from_millis(2), now);
        b.record(451, 2, Duration::from_millis(4), now);
        b.record(550, 0, Duration::from_millis(1), now);
        a.recipients = 3;
        b.recipients = 4;
        a.merge(&b);
        let v = serde_json::to_value(Summary::new(info(), &a, Duration::from_secs(2))).unwrap();
        assert_eq!(v["messages"], 3);
        assert_eq!(v["recipients"], 7);
        assert_eq!(v["accepted_recipients"], 3);
        assert_eq!(v["msgs_per_s"], 1.5);
        assert_eq!(v["rcpts_per_s"], 3.5);
        assert_eq!(v["elapsed_s"], 2.0);
        for k in ["p50", "p90", "p99", "p999", "max"] {
            assert!(v["latency_ms"][k].is_f64(), "{k}");
        }
        assert_eq!(
            v["replies"],
            serde_json::json!({"2xx": 1, "4xx": 1, "5xx": 1})
        );
        assert_eq!(
            v["reply_codes"],
            serde_json::json!({"250": 1, "451": 1, "550": 1})
        );
        assert_eq!(v["connect_errors"], 0);
        assert_eq!(v["disconnects"], 0);
    }

    #[test]
    fn empty_run_reports_zeros() {
        let v =
            serde_json::to_value(Summary::new(info(), &Stats::default(), Duration::ZERO)).unwrap();
        assert_eq!(v["messages"], 0);
        assert_eq!(v["msgs_per_s"], 0.0);
        assert_eq!(v["latency_ms"]["p99"], 0.0);
        assert!(Summary::new(info(), &Stats::default(), Duration::ZERO)
            .table()
            .contains("messages"));
    }
}
