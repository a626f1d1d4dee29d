//! Injection over Volley's HTTP API, closed loop: `concurrency` tasks, each with
//! its own keep-alive connection, each posting its next request as soon as the
//! previous one is acknowledged. Every 202's latency (request written to answer
//! read: the composer, the spool's durable group commit and the JSON answer) goes
//! into an HDR histogram.
//!
//! - [`Plan::Messages`]: `POST /api/v1/messages` with `batch` recipients per
//!   request, each recipient's message rendered from one template (A, C, D).
//! - [`Plan::Campaign`]: `POST /api/v1/campaigns` NDJSON with `batch` recipients
//!   per request, one static body (B). Recipients come sorted by domain, as a
//!   list exported from a database usually is, so one stored message holds
//!   recipients of few domains and many share each SMTP transaction.
//!
//! A 503 (`spool_busy`) answer is counted and the same request sent again after
//! a short pause, so every recipient gets in.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::json;

use super::content;
use super::http::Client;
use super::world::domain;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause after a 503 before sending the request again.
const BUSY_PAUSE: Duration = Duration::from_millis(20);

/// What to inject.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Single-recipient messages: message `j` goes to `u{j}@d{j % domains}`.
    Messages {
        /// Messages (= recipients).
        count: u64,
        /// Template size, bytes.
        size: usize,
        /// Domains they are spread over, round robin.
        domains: u64,
    },
    /// One static body for `count` recipients, in blocks of consecutive
    /// recipients per domain.
    Campaign {
        /// Recipients.
        count: u64,
        /// Body size, bytes.
        size: usize,
        /// Domains.
        domains: u64,
    },
}

impl Plan {
    /// Recipients in all.
    pub fn recipients(&self) -> u64 {
        match self {
            Plan::Messages { count, .. } | Plan::Campaign { count, .. } => *count,
        }
    }
}

/// How to send it.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Recipients per request.
    pub batch: u64,
    /// Requests in flight.
    pub concurrency: usize,
}

/// What came back.
#[derive(Debug)]
pub struct Injected {
    /// Recipients accepted (durably stored).
    pub accepted: u64,
    /// Recipients refused.
    pub rejected: u64,
    /// Requests answered 202.
    pub requests: u64,
    /// 503 answers (each followed by a resend).
    pub busy: u64,
    /// Request bodies' bytes, over all 202 requests.
    pub request_bytes: u64,
    /// Latency of each 202, microseconds.
    pub ack_us: Histogram<u64>,
    /// First POST to last answer.
    pub elapsed: Duration,
    /// The first refusal, if any.
    pub first_rejection: Option<String>,
}

/// The fields of either answer the injector needs.
#[derive(Debug, Default, Deserialize)]
struct Answer {
    /// On 422 and 503: `rejected`, `spool_busy`, or a composer code.
    #[serde(default)]
    code: Option<String>,
    /// Inject: recipients accepted.
    #[serde(default)]
    success_count: Option<u64>,
    /// Inject: recipients refused.
    #[serde(default)]
    fail_count: Option<u64>,
    /// Inject: `address: reason` per refusal.
    #[serde(default)]
    errors: Vec<String>,
    /// Campaign: recipients accepted.
    #[serde(default)]
    accepted: Option<serde_json::Value>,
    /// Campaign: recipients refused.
    #[serde(default)]
    rejected: Option<serde_json::Value>,
    /// Campaign: the first refusals.
    #[serde(default)]
    rejected_samples: Vec<serde_json::Value>,
}

impl Answer {
    /// (accepted, rejected, first refusal) whichever endpoint answered.
    fn counts(&self) -> (u64, u64, Option<String>) {
        if let Some(ok) = self.success_count {
            (
                ok,
                self.fail_count.unwrap_or(0),
                self.errors.first().cloned(),
            )
        } else {
            let n =
                |v: &Option<serde_json::Value>| v.as_ref().and_then(|v| v.as_u64()).unwrap_or(0);
            (
                n(&self.accepted),
                n(&self.rejected),
                self.rejected_samples.first().map(|s| s.to_string()),
            )
        }
    }
}

/// Microseconds up to an hour, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant, valid bounds")
}

/// Request bodies, built on demand from a fixed prefix.
struct Bodies {
    plan: Plan,
    /// Messages: `{"envelope_sender":..,"content":..,"campaign_id":..,"recipients":[`;
    /// campaign: the template line and its newline.
    prefix: Vec<u8>,
}

impl Bodies {
    fn new(plan: &Plan, campaign_id: &str) -> Bodies {
        let prefix = match plan {
            Plan::Messages { size, .. } => {
                let head = json!({
                    "envelope_sender": content::sender(),
                    "content": content::template(*size, true),
                    "campaign_id": campaign_id,
                })
                .to_string();
                // Reopen the object to append the recipients array.
                let mut p = head.into_bytes();
                p.pop();
                p.extend_from_slice(b",\"recipients\":[");
                p
            }
            Plan::Campaign { size, .. } => {
                let mut p = json!({
                    "envelope_sender": content::sender(),
                    "content": content::template(*size, false),
                    "campaign_id": campaign_id,
                    "template_dialect": "Static",
                })
                .to_string()
                .into_bytes();
                p.push(b'\n');
                p
            }
        };
        Bodies {
            plan: plan.clone(),
            prefix,
        }
    }

    fn path(&self) -> (&'static str, &'static str) {
        match self.plan {
            Plan::Messages { .. } => ("/api/v1/messages", "application/json"),
            Plan::Campaign { .. } => ("/api/v1/campaigns", "application/x-ndjson"),
        }
    }

    /// The body for recipients `range`.
    fn body(&self, range: std::ops::Range<u64>) -> Vec<u8> {
        use std::io::Write as _;
        let mut out =
            Vec::with_capacity(self.prefix.len() + 64 * (range.end - range.start) as usize);
        out.extend_from_slice(&self.prefix);
        match self.plan {
            Plan::Messages { domains, .. } => {
                for (k, j) in range.enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    let _ = write!(
                        out,
                        "{{\"email\":\"u{j}@{}\",\"name\":\"Recipient {j}\"}}",
                        domain(j % domains.max(1))
                    );
                }
                out.extend_from_slice(b"]}");
            }
            Plan::Campaign { count, domains, .. } => {
                let per_domain = count.div_ceil(domains.max(1)).max(1);
                for j in range {
                    let d = (j / per_domain).min(domains.max(1) - 1);
                    let _ = writeln!(out, "{{\"email\":\"u{j}@{}\"}}", domain(d));
                }
            }
        }
        out
    }
}

/// Injects the plan; `progress` counts accepted recipients as answers arrive.
pub async fn inject(
    http: SocketAddr,
    token: &str,
    plan: &Plan,
    pace: Pace,
    campaign_id: &str,
    progress: Arc<AtomicU64>,
) -> anyhow::Result<Injected> {
    let bodies = Arc::new(Bodies::new(plan, campaign_id));
    let total = plan.recipients();
    let batch = pace.batch.max(1);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..pace.concurrency.max(1) {
        let (bodies, next, progress) = (bodies.clone(), next.clone(), progress.clone());
        let mut client = Client::new(http, token, REQUEST_TIMEOUT);
        tasks.push(tokio::spawn(async move {
            let mut mine = empty();
            let (path, ctype) = bodies.path();
            loop {
                let start = next.fetch_add(batch, Relaxed);
                if start >= total {
                    return Ok::<_, anyhow::Error>(mine);
                }
                let body = bodies.body(start..(start + batch).min(total));
                loop {
                    let t = Instant::now();
                    let resp = client.post(path, ctype, &body).await?;
                    let us = t.elapsed().as_micros() as u64;
                    match resp.status {
                        202 | 422 => {
                            let a: Answer =
                                serde_json::from_slice(&resp.body).with_context(|| {
                                    format!(
                                        "answer {}: {}",
                                        resp.status,
                                        String::from_utf8_lossy(&resp.body)
                                    )
                                })?;
                            if resp.status == 422 && a.code.as_deref() != Some("rejected") {
                                bail!(
                                    "{path} answered 422: {}",
                                    String::from_utf8_lossy(&resp.body)
                                );
                            }
                            let (ok, refused, first) = a.counts();
                            if resp.status == 202 {
                                let _ = mine.ack_us.record(us.max(1));
                                mine.requests += 1;
                                mine.request_bytes += body.len() as u64;
                            }
                            mine.accepted += ok;
                            mine.rejected += refused;
                            progress.fetch_add(ok, Relaxed);
                            if mine.first_rejection.is_none() {
                                mine.first_rejection = first;
                            }
                            break;
                        }
                        503 => {
                            mine.busy += 1;
                            tokio::time::sleep(BUSY_PAUSE).await;
                        }
                        s => bail!(
                            "{path} answered {s}: {}",
                            String::from_utf8_lossy(&resp.body)
                        ),
                    }
                }
            }
        }));
    }
    let mut all = empty();
    for t in tasks {
        let part = t.await.context("an injection task panicked")??;
        all.accepted += part.accepted;
        all.rejected += part.rejected;
        all.requests += part.requests;
        all.busy += part.busy;
        all.request_bytes += part.request_bytes;
        let _ = all.ack_us.add(&part.ack_us);
        all.first_rejection = all.first_rejection.or(part.first_rejection);
    }
    all.elapsed = started.elapsed();
    Ok(all)
}

fn empty() -> Injected {
    Injected {
        accepted: 0,
        rejected: 0,
        requests: 0,
        busy: 0,
        request_bytes: 0,
        ack_us: histogram(),
        elapsed: Duration::ZERO,
        first_rejection: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_bodies_are_inject_requests() {
        let plan = Plan::Messages {
            count: 10,
            size: 4096,
            domains: 3,
        };
        let b = Bodies::new(&plan, "a");
        let v: serde_json::Value = serde_json::from_slice(&b.body(4..7)).unwrap();
        assert_eq!(v["recipients"].as_array().unwrap().len(), 3);
        assert_eq!(v["recipients"][0]["email"], "u4@d1.scn.volley.test");
        assert_eq!(v["recipients"][2]["name"], "Recipient 6");
        assert_eq!(v["campaign_id"], "a");
    }

    #[test]
    fn campaign_bodies_keep_domains_together() {
        let plan = Plan::Campaign {
            count: 10,
            size: 1000,
            domains: 3,
        };
        let b = Bodies::new(&plan, "b");
        let body = b.body(0..10);
        let lines: Vec<serde_json::Value> = body
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 11);
        assert_eq!(lines[0]["template_dialect"], "Static");
        assert_eq!(lines[1]["email"], "u0@d0.scn.volley.test");
        assert_eq!(lines[4]["email"], "u3@d0.scn.volley.test");
        assert_eq!(lines[5]["email"], "u4@d1.scn.volley.test");
        assert_eq!(lines[10]["email"], "u9@d2.scn.volley.test");
    }
}
