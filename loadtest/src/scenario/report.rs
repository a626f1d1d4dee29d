//! A scenario's figures: one JSON object, or a table.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::inject::Injected;
use super::latency::LogLatencies;
use super::shape::Shape;
use super::sinks::SinkTotals;
use super::volley_proc::Counters;
use super::wire::WireResult;

/// What the load phase measured.
#[derive(Debug)]
pub struct Measured {
    /// The injector's results.
    pub injected: Injected,
    /// Volley's counters when the last recipient finished.
    pub counters: Counters,
    /// Its counters after the graceful stop.
    pub final_counters: Counters,
    /// First request to last recipient finished.
    pub elapsed: Duration,
    /// Volley's CPU seconds over `elapsed`.
    pub volley_cpu_s: f64,
    /// The sinks' CPU seconds over `elapsed`.
    pub sinks_cpu_s: f64,
    /// This process's (injector, DNS) CPU seconds over `elapsed`.
    pub injector_cpu_s: f64,
    /// Volley's peak RSS (VmHWM), MB.
    pub peak_rss_mb: f64,
    /// The largest sink's peak RSS, MB.
    pub sinks_peak_rss_mb: f64,
}

/// Everything a run produced.
pub struct Report {
    /// The scenario.
    pub shape: Shape,
    /// Sink processes.
    pub sinks_n: u32,
    /// The open-files limit in force.
    pub nofile: u64,
    /// The blaster's figures.
    pub wire: WireResult,
    /// The load phase.
    pub measured: Measured,
    /// The delivery log.
    pub log: LogLatencies,
    /// What the sinks received (blaster and Volley together).
    pub sink_totals: SinkTotals,
    /// DNS queries the zone's server answered.
    pub dns_queries: u64,
}

fn round(v: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (v * m).round() / m
}

fn ms(h: &Histogram<u64>, q: f64) -> Value {
    if h.is_empty() {
        Value::Null
    } else {
        json!(round(h.value_at_quantile(q) as f64 / 1000.0, 2))
    }
}

impl Report {
    /// Recipients Volley delivered to the sinks: the sinks' count less the
    /// blaster's accepted recipients.
    fn sink_recipients_from_volley(&self) -> u64 {
        self.sink_totals
            .recipients
            .saturating_sub(self.wire.accepted_recipients)
    }

    fn sink_transactions_from_volley(&self) -> u64 {
        self.sink_totals.messages.saturating_sub(self.wire.messages)
    }

    /// Whether every recipient was accepted, delivered (engine, log) and received.
    pub fn all_delivered(&self) -> bool {
        let n = self.shape.plan.recipients();
        let m = &self.measured;
        m.injected.accepted == n
            && m.injected.rejected == 0
            && m.final_counters.delivered >= n
            && self.log.delivered >= n
            && self.sink_recipients_from_volley() >= n
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        let m = &self.measured;
        let i = &m.injected;
        let secs = m.elapsed.as_secs_f64().max(1e-9);
        let delivered = m.counters.delivered;
        let tx = self.sink_transactions_from_volley();
        let delivered_per_s = delivered as f64 / secs;
        let campaign = super::is_campaign(&self.shape.plan);
        // The wire limit in the unit of `delivered_per_s`: recipients.
        let wire_per_s = self.wire.rcpts_per_s;
        let ratio = if wire_per_s > 0.0 {
            delivered_per_s / wire_per_s
        } else {
            0.0
        };
        let ack_p99 = ms(&i.ack_us, 0.99);
        let mut targets = serde_json::Map::new();
        for t in &self.shape.targets {
            let measured = match t.metric {
                "delivered_per_s" => delivered_per_s,
                "ratio_to_wire" => ratio,
                "ack_p99_ms" => ack_p99.as_f64().unwrap_or(f64::INFINITY),
                _ => f64::NAN,
            };
            let met = if t.at_least {
                measured >= t.bound
            } else {
                measured <= t.bound
            };
            targets.insert(
                t.metric.to_string(),
                json!({
                    "bound": t.bound,
                    "at_least": t.at_least,
                    "measured": round(measured, 3),
                    "met": met,
                }),
            );
        }
        // The blaster's transactions carry exactly `size` bytes each.
        let volley_bytes = self
            .sink_totals
            .bytes
            .saturating_sub(self.wire.messages * self.shape.size as u64);
        let bytes_per_tx = volley_bytes.checked_div(tx).unwrap_or(0);
        let mut out = json!({
            "scenario": self.shape.which,
            "title": self.shape.title,
            "recipients": self.shape.plan.recipients(),
            "domains": self.shape.domains,
            "sinks": self.sinks_n,
            "message_bytes": self.shape.size,
            "sink_bytes_per_transaction": bytes_per_tx,
            "campaign": campaign,
            "elapsed_s": round(secs, 3),
            "delivered": delivered,
            "delivered_per_s": delivered_per_s.round() as u64,
            "transactions_per_s": (tx as f64 / secs).round() as u64,
            "recipients_per_transaction": if tx > 0 { round(self.sink_recipients_from_volley() as f64 / tx as f64, 2) } else { 0.0 },
            "delivered_mb_per_s": round(volley_bytes as f64 / 1e6 / secs, 1),
            "wire_limit_per_s": wire_per_s.round() as u64,
            "wire_limit_msgs_per_s": (self.wire.msgs_per_s).round() as u64,
            "wire_seconds": round(self.wire.elapsed_s, 2),
            "ratio_to_wire": round(ratio, 3),
        });
        let more = json!({
            "inject_elapsed_s": round(i.elapsed.as_secs_f64(), 3),
            "ingest_per_s": (i.accepted as f64 / i.elapsed.as_secs_f64().max(1e-9)).round() as u64,
            "http_endpoint": if campaign { "/api/v1/campaigns" } else { "/api/v1/messages" },
            "http_requests": i.requests,
            "http_recipients_per_request": self.shape.pace.batch,
            "http_request_bytes": i.request_bytes.checked_div(i.requests).unwrap_or(0),
            "http_concurrency": self.shape.pace.concurrency,
            "http_busy_503": i.busy,
            "ack_p50_ms": ms(&i.ack_us, 0.5),
            "ack_p99_ms": ack_p99,
            "ack_max_ms": ms(&i.ack_us, 1.0),
            "latency_p50_ms": ms(&self.log.queue_us, 0.5),
            "latency_p99_ms": ms(&self.log.queue_us, 0.99),
            "latency_max_ms": ms(&self.log.queue_us, 1.0),
            "peak_rss_mb": round(m.peak_rss_mb, 1),
            "cpu_s": round(m.volley_cpu_s, 2),
            "cpu_s_per_1000": if delivered > 0 { round(m.volley_cpu_s * 1000.0 / delivered as f64, 4) } else { 0.0 },
            "sinks_cpu_s": round(m.sinks_cpu_s, 2),
            "sinks_peak_rss_mb": round(m.sinks_peak_rss_mb, 1),
            "injector_cpu_s": round(m.injector_cpu_s, 2),
            "accepted": i.accepted,
            "rejected": i.rejected,
            "first_rejection": i.first_rejection,
            "bounced": m.final_counters.bounced,
            "deferrals": m.final_counters.deferred,
            "expired": m.final_counters.expired,
            "final_delivered": m.final_counters.delivered,
            "log_delivered": self.log.delivered,
            "log_other_events": self.log.other,
            "sink_recipients": self.sink_recipients_from_volley(),
            "sink_transactions": tx,
            "smtp_connections": m.final_counters.connections,
            "dns_queries": self.dns_queries,
            "open_files_limit": self.nofile,
            "all_delivered": self.all_delivered(),
            "targets": targets,
        });
        if let (Value::Object(o), Value::Object(m)) = (&mut out, more) {
            o.extend(m);
        }
        out
    }

    /// The report as a table.
    pub fn to_text(&self) -> String {
        let j = self.to_json();
        let mut s = String::new();
        let mut row = |k: &str, v: String| {
            s.push_str(&format!("  {k:<34} {v}\n"));
        };
        let f = |k: &str| match &j[k] {
            Value::Null => "-".to_string(),
            v => v.to_string(),
        };
        row("scenario", self.shape.title.clone());
        row(
            "delivered",
            format!(
                "{} recipients in {} s: {} rcpts/s, {} SMTP transactions/s ({} rcpts each), {} MB/s",
                f("delivered"),
                f("elapsed_s"),
                f("delivered_per_s"),
                f("transactions_per_s"),
                f("recipients_per_transaction"),
                f("delivered_mb_per_s")
            ),
        );
        row(
            "wire limit (blast -> same sinks)",
            format!(
                "{} rcpts/s ({} msgs/s); delivered/wire = {}",
                f("wire_limit_per_s"),
                f("wire_limit_msgs_per_s"),
                f("ratio_to_wire")
            ),
        );
        row(
            "ingest",
            format!(
                "{} rcpts/s; {} requests to {}, {} recipients and {} bytes each, {} in flight, {} busy (503)",
                f("ingest_per_s"),
                f("http_requests"),
                f("http_endpoint").trim_matches('"'),
                f("http_recipients_per_request"),
                f("http_request_bytes"),
                f("http_concurrency"),
                f("http_busy_503")
            ),
        );
        row(
            "ack latency (per request)",
            format!(
                "p50 {} ms, p99 {} ms, max {} ms",
                f("ack_p50_ms"),
                f("ack_p99_ms"),
                f("ack_max_ms")
            ),
        );
        row(
            "inject-to-delivery latency",
            format!(
                "p50 {} ms, p99 {} ms, max {} ms",
                f("latency_p50_ms"),
                f("latency_p99_ms"),
                f("latency_max_ms")
            ),
        );
        row(
            "Volley process",
            format!(
                "peak RSS {} MB, {} CPU s ({} CPU s per 1,000 deliveries)",
                f("peak_rss_mb"),
                f("cpu_s"),
                f("cpu_s_per_1000")
            ),
        );
        row(
            "sinks / injector CPU",
            format!("{} s / {} s", f("sinks_cpu_s"), f("injector_cpu_s")),
        );
        row(
            "check",
            format!(
                "accepted {}, delivered {} (log {}, sinks {}), bounced {}, deferrals {}: {}",
                f("accepted"),
                f("final_delivered"),
                f("log_delivered"),
                f("sink_recipients"),
                f("bounced"),
                f("deferrals"),
                if self.all_delivered() {
                    "all delivered"
                } else {
                    "NOT all delivered"
                }
            ),
        );
        if let Value::Object(t) = &j["targets"] {
            for (name, v) in t {
                row(
                    &format!("target {name}"),
                    format!(
                        "{} {} {}: {}",
                        v["measured"],
                        if v["at_least"] == true { ">=" } else { "<=" },
                        v["bound"],
                        if v["met"] == true { "met" } else { "MISSED" }
                    ),
                );
            }
        }
        s
    }

    /// Fails unless every recipient was delivered (targets are reported, not
    /// enforced: the machine is shared).
    pub fn check(&self) -> anyhow::Result<()> {
        if self.all_delivered() {
            return Ok(());
        }
        let m = &self.measured;
        anyhow::bail!(
            "not every recipient was delivered: {} of {} accepted ({} refused; first: {}), engine delivered {}, \
             delivery log {}, sinks {}",
            m.injected.accepted,
            self.shape.plan.recipients(),
            m.injected.rejected,
            m.injected.first_rejection.as_deref().unwrap_or("-"),
            m.final_counters.delivered,
            self.log.delivered,
            self.sink_recipients_from_volley()
        )
    }
}
