//! The four scenarios: what each injects, how, and what it is held to.

use super::inject::{Pace, Plan};

/// Which scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Which {
    /// 4 KB single-recipient personalised messages over HTTP (200k).
    A,
    /// One static campaign body, 1M recipients over 1,000 domains (multi-RCPT).
    B,
    /// 100 KB single-recipient personalised messages.
    C,
    /// 100,000 distinct domains, one 4 KB message each.
    D,
}

/// A scenario, resolved from its defaults and the overrides given.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Which.
    pub which: Which,
    /// One line saying what it is.
    pub title: String,
    /// What to inject.
    pub plan: Plan,
    /// How.
    pub pace: Pace,
    /// Domains in the zone.
    pub domains: u64,
    /// Message (template) size, bytes.
    pub size: usize,
    /// Recipients per transaction the blaster sends for the wire limit.
    pub wire_rcpts: u32,
    /// Targets: (name, what is compared, bound, higher is better).
    pub targets: Vec<Target>,
}

/// A target from issue 6.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Short name (`delivered_per_s`, `ratio_to_wire`, `ack_p99_ms`).
    pub metric: &'static str,
    /// The bound.
    pub bound: f64,
    /// `true`: the figure must be at least `bound`; `false`: at most.
    pub at_least: bool,
}

/// Overrides from the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    /// Messages (B: recipients).
    pub messages: Option<u64>,
    /// Domains.
    pub domains: Option<u64>,
    /// Template size.
    pub size: Option<usize>,
    /// Recipients per request.
    pub batch: Option<u64>,
    /// Requests in flight.
    pub concurrency: Option<usize>,
}

impl Shape {
    /// The scenario with its defaults, then the overrides.
    pub fn new(which: Which, o: Overrides) -> Shape {
        let t = |metric, bound, at_least| Target {
            metric,
            bound,
            at_least,
        };
        // (messages, domains, size, batch, concurrency)
        let (messages, domains, size, batch, concurrency) = match which {
            // 40 messages in flight: Volley is CPU-bound here, so more in flight
            // buys a little throughput with much longer acks (loadtest/README.md).
            Which::A => (200_000, 1_000, 4096, 10, 4),
            Which::B => (1_000_000, 1_000, 4096, 10_000, 4),
            // About a minute end to end at ~3,000 msg/s.
            Which::C => (120_000, 1_000, 102_400, 4, 8),
            // A's pace, so the two compare.
            Which::D => (100_000, 0, 4096, 10, 4),
        };
        let messages = o.messages.unwrap_or(messages).max(1);
        // D: one recipient per domain unless told otherwise.
        let domains = o
            .domains
            .unwrap_or(if which == Which::D { messages } else { domains })
            .max(1);
        let size = o.size.unwrap_or(size).max(512);
        let pace = Pace {
            batch: o.batch.unwrap_or(batch).max(1),
            concurrency: o.concurrency.unwrap_or(concurrency).max(1),
        };
        let (plan, wire_rcpts) = match which {
            Which::B => (
                Plan::Campaign {
                    count: messages,
                    size,
                    domains,
                },
                100,
            ),
            _ => (
                Plan::Messages {
                    count: messages,
                    size,
                    domains,
                },
                1,
            ),
        };
        let kb = |s: usize| {
            if s >= 10_240 {
                format!("{} KB", s / 1024)
            } else {
                format!("{:.0} KB", s as f64 / 1024.0)
            }
        };
        let title = match which {
            Which::A => format!(
                "A: {} single-recipient personalised {} messages over {} domains, HTTP inject",
                messages,
                kb(size),
                domains
            ),
            Which::B => format!(
                "B: one static {} campaign body, {} recipients over {} domains (multi-RCPT)",
                kb(size),
                messages,
                domains
            ),
            Which::C => format!(
                "C: {} single-recipient personalised {} messages over {} domains",
                messages,
                kb(size),
                domains
            ),
            Which::D => format!(
                "D: {} personalised {} messages to {} distinct domains",
                messages,
                kb(size),
                domains
            ),
        };
        let targets = match which {
            Which::A => vec![
                t("delivered_per_s", 10_000.0, true),
                t("ratio_to_wire", 0.5, true),
                t("ack_p99_ms", 10.0, false),
            ],
            Which::B => vec![t("delivered_per_s", 100_000.0, true)],
            Which::C => vec![t("delivered_per_s", 2_000.0, true)],
            // Within 20% of A's: compared by the reader (A runs separately);
            // the absolute floor is A's own target less 20%.
            Which::D => vec![t("delivered_per_s", 8_000.0, true)],
        };
        Shape {
            which,
            title,
            plan,
            pace,
            domains,
            size,
            wire_rcpts,
            targets,
        }
    }

    /// The campaign id the injected mail carries.
    pub fn campaign_id(&self) -> String {
        format!("scenario-{:?}", self.which).to_lowercase()
    }
}
