//! The demo's figures: rates, latency percentiles (hdrhistogram), connections,
//! printed as text or as one JSON object.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::inject::{histogram, ContentKind, Injected};
use crate::cli::CliError;
use crate::delivery::EngineStats;
use crate::sink::Summary;

/// Everything the demo measured.
pub struct Report {
    /// Recipients asked for.
    pub recipients: u64,
    /// Domains.
    pub domains: u64,
    /// Sinks.
    pub sinks: u32,
    /// Content kind.
    pub content: ContentKind,
    /// Recipients per POST.
    pub batch: u64,
    /// The injection's results and ack latencies.
    pub injected: Injected,
    /// The engine's final counters.
    pub engine: EngineStats,
    /// What the sinks received.
    pub sink: Summary,
    /// From the first POST until the last recipient was delivered.
    pub delivery_elapsed: Duration,
    /// From the delivery log.
    pub log_latencies: LogLatencies,
    /// The delivery log file.
    pub delivery_log: PathBuf,
    /// The spool, when kept.
    pub spool: Option<PathBuf>,
}

/// Inject-to-delivery latencies from the delivery log's `queue_time_ms`.
pub struct LogLatencies {
    /// `delivered` events in the log.
    pub delivered: u64,
    /// Their `queue_time_ms`, in microseconds (to share the histogram shape).
    pub queue_us: Histogram<u64>,
}

/// Reads the delivery log's `delivered` events.
pub fn read_log(path: &Path) -> Result<LogLatencies, CliError> {
    let file = std::fs::File::open(path)
        .map_err(|e| CliError::runtime(format!("reading {}: {e}", path.display())))?;
    let mut out = LogLatencies {
        delivered: 0,
        queue_us: histogram(),
    };
    for line in BufReader::new(file).lines() {
        let line =
            line.map_err(|e| CliError::runtime(format!("reading {}: {e}", path.display())))?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v["event"] == "delivered" {
            out.delivered += 1;
            if let Some(ms) = v["queue_time_ms"].as_u64() {
                let _ = out.queue_us.record((ms * 1000).max(1));
            }
        }
    }
    Ok(out)
}

/// p50/p90/p99/max of a microsecond histogram, in milliseconds.
fn percentiles(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| (us as f64 / 10.0).round() / 100.0;
    if h.is_empty() {
        return json!({"p50": null, "p90": null, "p99": null, "max": null, "count": 0});
    }
    json!({
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "max": ms(h.max()),
        "count": h.len(),
    })
}

fn rate(n: u64, d: Duration) -> u64 {
    (n as f64 / d.as_secs_f64().max(1e-9)).round() as u64
}

impl Report {
    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        let i = &self.injected;
        let e = &self.engine;
        json!({
            "recipients": self.recipients,
            "domains": self.domains,
            "sinks": self.sinks,
            "content": self.content,
            "injected": i.accepted,
            "rejected": i.rejected,
            "messages_stored": i.messages,
            "delivered": e.delivered,
            "deferred_events": e.deferred,
            "bounced": e.bounced,
            "expired": e.expired,
            "elapsed_s": (self.delivery_elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "inject_elapsed_s": (i.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "ingest_recipients_per_s": rate(i.accepted, i.elapsed),
            "delivered_recipients_per_s": rate(e.delivered, self.delivery_elapsed),
            "delivered_messages_per_s": rate(self.sink.messages, self.delivery_elapsed),
            "http_batch_recipients": self.batch,
            "http_ack_latency_ms": percentiles(&i.ack_us),
            "inject_to_delivery_ms": percentiles(&self.log_latencies.queue_us),
            "smtp_connections": e.connections,
            "sink_connections": self.sink.connections,
            "sink_transactions": self.sink.messages,
            "sink_recipients": self.sink.recipients,
            "sink_bytes": self.sink.bytes,
            "recipients_per_transaction": if self.sink.messages == 0 { 0.0 } else {
                (self.sink.recipients as f64 / self.sink.messages as f64 * 100.0).round() / 100.0
            },
            "delivery_log": self.delivery_log,
            "delivery_log_delivered": self.log_latencies.delivered,
            "spool": self.spool,
        })
    }

    /// The report as text.
    pub fn to_text(&self) -> String {
        let j = self.to_json();
        let pct = |v: &Value| {
            format!(
                "p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
                v["p50"], v["p90"], v["p99"], v["max"]
            )
        };
        let mut s = String::new();
        let mut line = |t: String| {
            s.push_str(&t);
            s.push('\n');
        };
        line(format!(
            "volley demo: {} recipients over {} domains, {} sinks, {} content",
            self.recipients,
            self.domains,
            self.sinks,
            match self.content {
                ContentKind::Personalised => "personalised",
                ContentKind::Static => "static",
            }
        ));
        line(format!(
            "  injected   {} recipients ({} rejected) as {} messages over HTTP in {:.2}s: {} recipients/s",
            self.injected.accepted, self.injected.rejected, self.injected.messages,
            self.injected.elapsed.as_secs_f64(), j["ingest_recipients_per_s"]
        ));
        line(format!(
            "  delivered  {} recipients ({} bounced, {} deferrals) in {:.2}s: {} recipients/s, {} messages/s",
            self.engine.delivered, self.engine.bounced, self.engine.deferred,
            self.delivery_elapsed.as_secs_f64(), j["delivered_recipients_per_s"],
            j["delivered_messages_per_s"]
        ));
        line(format!(
            "  HTTP ack latency (per POST of {} recipients): {}",
            self.batch,
            pct(&j["http_ack_latency_ms"])
        ));
        line(format!(
            "  inject-to-delivery latency: {}",
            pct(&j["inject_to_delivery_ms"])
        ));
        line(format!(
            "  SMTP: {} connections, {} transactions, {} recipients per transaction, {:.1} MB",
            self.engine.connections,
            self.sink.messages,
            j["recipients_per_transaction"],
            self.sink.bytes as f64 / 1e6
        ));
        line(format!(
            "  delivery log: {} (one JSON line per recipient; remove its directory when done)",
            self.delivery_log.display()
        ));
        if let Some(p) = &self.spool {
            line(format!("  spool: {}", p.display()));
        }
        if self.content == ContentKind::Personalised {
            line(
                "  (every message was distinct; `--content static` shows one body shared by \
                 many recipients, 100 per SMTP transaction)"
                    .to_string(),
            );
        }
        s
    }

    /// Fails (exit 1) unless every recipient was accepted and delivered.
    pub fn check(&self) -> Result<(), CliError> {
        let i = &self.injected;
        if i.rejected > 0 {
            return Err(CliError::runtime(format!(
                "{} recipients were rejected at injection (first: {})",
                i.rejected,
                i.first_rejection.as_deref().unwrap_or("?")
            )));
        }
        if self.engine.delivered < self.recipients {
            return Err(CliError::runtime(format!(
                "only {} of {} recipients were delivered ({} bounced); see {}",
                self.engine.delivered,
                self.recipients,
                self.engine.bounced,
                self.delivery_log.display()
            )));
        }
        Ok(())
    }
}
