//! Injection: the demo's campaign, posted to its own server's
//! `POST /api/v1/campaigns` (the endpoint `volley send` uses) in batches, several
//! at once, timing each acknowledgement.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::world::domain;
use crate::cli::send::api::Api;
use crate::cli::CliError;

/// What each recipient gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentKind {
    /// `Hello {{ name }}`: every message distinct, one recipient per message.
    Personalised,
    /// The same body for everyone: one stored message per up to 1,000 recipients,
    /// up to 100 recipients of a domain per SMTP transaction.
    Static,
}

/// The campaign's name (the tenant sees it without its `demo:` prefix).
pub const CAMPAIGN: &str = "demo";

/// What to inject.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Recipients in all.
    pub recipients: u64,
    /// Domains they are spread over (contiguous blocks: recipients of one domain
    /// are neighbours, as in a list sorted by domain).
    pub domains: u64,
    /// Recipients per POST.
    pub batch: u64,
    /// POSTs in flight at once.
    pub concurrency: usize,
    /// Content.
    pub content: ContentKind,
}

/// What came back.
pub struct Injected {
    /// Recipients accepted (durably stored).
    pub accepted: u64,
    /// Recipients refused.
    pub rejected: u64,
    /// Messages stored.
    pub messages: u64,
    /// Per-POST acknowledgement latency, microseconds.
    pub ack_us: Histogram<u64>,
    /// From the first POST to the last acknowledgement.
    pub elapsed: Duration,
    /// The first refusal's reason, if any.
    pub first_rejection: Option<String>,
}

/// The template line.
fn template(content: ContentKind) -> Value {
    let raw = match content {
        ContentKind::Personalised => {
            "From: Volley demo <demo@volley.demo.volley.test>\n\
             To: undisclosed-recipients:;\n\
             Subject: Hello {{ name }}\n\
             \n\
             Hello {{ name }},\n\
             \n\
             this message was injected over HTTP, spooled, and delivered over SMTP\n\
             by Volley, all on this machine's loopback interface.\n"
        }
        ContentKind::Static => {
            "From: Volley demo <demo@volley.demo.volley.test>\n\
             To: undisclosed-recipients:;\n\
             Subject: Hello from Volley\n\
             \n\
             Hello,\n\
             \n\
             this message was injected over HTTP, spooled, and delivered over SMTP\n\
             by Volley, all on this machine's loopback interface.\n"
        }
    };
    json!({
        "envelope_sender": "bounces@volley.demo.volley.test",
        "content": raw,
        "campaign_id": CAMPAIGN,
    })
}

/// The request body for recipients `range`: the template line, then one line each.
fn body(plan: &Plan, template: &[u8], range: std::ops::Range<u64>) -> Vec<u8> {
    let per_domain = plan.recipients.div_ceil(plan.domains.max(1)).max(1);
    let mut out = Vec::with_capacity(template.len() + 80 * (range.end - range.start) as usize);
    out.extend_from_slice(template);
    for j in range {
        let d = domain((j / per_domain).min(plan.domains - 1));
        let line = json!({"email": format!("user{j}@{d}"), "name": format!("Recipient {j}")});
        let _ = serde_json::to_writer(&mut out, &line);
        out.push(b'\n');
    }
    out
}

/// Posts every batch (`plan.concurrency` at once); `injected` counts accepted
/// recipients as acknowledgements arrive (for the progress bar).
pub async fn inject(api: &Api, plan: Plan, injected: Arc<AtomicU64>) -> Result<Injected, CliError> {
    let mut template = serde_json::to_vec(&template(plan.content)).unwrap_or_default();
    template.push(b'\n');
    let template = Arc::new(template);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(plan.concurrency);
    for _ in 0..plan.concurrency.max(1) {
        let (api, next, template, injected) = (
            api.clone(),
            next.clone(),
            template.clone(),
            injected.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut mine = Injected {
                accepted: 0,
                rejected: 0,
                messages: 0,
                ack_us: histogram(),
                elapsed: Duration::ZERO,
                first_rejection: None,
            };
            loop {
                let start = next.fetch_add(plan.batch, Relaxed);
                if start >= plan.recipients {
                    return Ok::<_, CliError>(mine);
                }
                let end = (start + plan.batch).min(plan.recipients);
                let b = body(&plan, &template, start..end);
                let t = Instant::now();
                let resp = api.post_campaign(reqwest::Body::from(b)).await?;
                let _ = mine.ack_us.record(t.elapsed().as_micros() as u64);
                mine.accepted += resp.accepted;
                mine.rejected += resp.rejected;
                mine.messages += resp.messages;
                injected.fetch_add(resp.accepted, Relaxed);
                if mine.first_rejection.is_none() {
                    mine.first_rejection = resp
                        .rejected_samples
                        .first()
                        .map(|r| format!("{} <{}>: {}: {}", r.line, r.email, r.code, r.reason));
                }
            }
        }));
    }
    let mut total = Injected {
        accepted: 0,
        rejected: 0,
        messages: 0,
        ack_us: histogram(),
        elapsed: Duration::ZERO,
        first_rejection: None,
    };
    for w in workers {
        let part = w
            .await
            .map_err(|e| CliError::runtime(format!("an injection task failed: {e}")))??;
        total.accepted += part.accepted;
        total.rejected += part.rejected;
        total.messages += part.messages;
        let _ = total.ack_us.add(&part.ack_us);
        total.first_rejection = total.first_rejection.or(part.first_rejection);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// Microseconds up to an hour, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant, valid bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_spread_recipients_over_domains_in_blocks() {
        let plan = Plan {
            recipients: 10,
            domains: 3,
            batch: 5,
            concurrency: 1,
            content: ContentKind::Personalised,
        };
        let b = body(&plan, b"T\n", 0..10);
        let lines: Vec<&[u8]> = b.split(|&c| c == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 11);
        let v: Value = serde_json::from_slice(lines[10]).unwrap();
        assert_eq!(v["email"], "user9@d2.demo.volley.test");
        let v: Value = serde_json::from_slice(lines[4]).unwrap();
        assert_eq!(v["email"], "user3@d0.demo.volley.test");
    }
}
