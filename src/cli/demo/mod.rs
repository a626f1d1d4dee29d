//! `volley demo`: Volley end to end on loopback with no set-up. It starts the
//! transmitter in process with an embedded configuration (spool and delivery log in
//! a fresh temporary directory, HTTP on 127.0.0.1:0), a DNS zone of N domains
//! (`volley::dns::TestDnsServer`) whose MX hosts are sinks on 127.0.0.2,
//! 127.0.0.3, ... sharing one port (`volley::sink`), injects a campaign over HTTP
//! through `POST /api/v1/campaigns` (what `volley send` uses), waits until every
//! recipient is delivered, and prints what it did and how fast.
//!
//! - [`world`]: the temp dir, sinks, DNS zone and configuration.
//! - [`inject`]: the campaign, posted in batches with their ack latencies.
//! - [`report`]: the figures, as text or one JSON object.
//!
//! It stops by itself: when everything is delivered, or with exit 1 when delivery
//! makes no progress for `--stall-timeout` seconds.

pub mod inject;
pub mod report;
pub mod world;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::send::api::Api;
use super::CliError;
use crate::server::Server;
use inject::{ContentKind, Plan};
use report::Report;

/// `volley demo` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Recipients in the campaign.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub recipients: u64,
    /// Domains they are spread over (each an MX record in the local zone).
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    pub domains: u64,
    /// Sinks (MX hosts) on 127.0.0.2, 127.0.0.3, ... (at most 250).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub sinks: u32,
    /// personalised: `Hello {{ name }}`, one message per recipient; static: one
    /// body shared by up to 1,000 recipients, many recipients per transaction.
    #[arg(long, value_enum, default_value_t = ContentKind::Personalised)]
    pub content: ContentKind,
    /// Keep the spool (the delivery log is always kept).
    #[arg(long)]
    pub keep: bool,
    /// Print one JSON object instead of the text report (and no progress bars).
    #[arg(long)]
    pub json: bool,
    /// Give up (exit 1) when delivery makes no progress for this many seconds.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub stall_timeout: u64,
}

/// Recipients per POST.
const BATCH: u64 = 1_000;
/// POSTs in flight.
const CONCURRENCY: usize = 4;

/// Runs the demo.
pub fn run(args: Args) -> Result<(), CliError> {
    if args.recipients == 0 || args.domains == 0 {
        return Err(CliError::usage(
            "--recipients and --domains must be at least 1",
        ));
    }
    if !(1..=250).contains(&args.sinks) {
        return Err(CliError::usage(
            "--sinks must be 1 to 250 (127.0.0.2 .. 127.0.0.251)",
        ));
    }
    let dir = world::temp_dir()?;
    let mut interrupted = false;
    let result = super::runtime()?.block_on(async {
        // Ctrl-C stops the demo early; the temp dir is still cleaned up.
        tokio::select! {
            r = demo(&args, &dir) => r,
            _ = tokio::signal::ctrl_c() => {
                interrupted = true;
                Err(CliError::runtime("interrupted"))
            }
        }
    });
    if interrupted {
        let _ = std::fs::remove_dir_all(&dir);
    } else if !args.keep {
        // The delivery log stays (the report points to it); the spool goes.
        let _ = std::fs::remove_dir_all(dir.join("spool"));
    }
    let result = result.map_err(|mut e| {
        if !interrupted {
            let log = dir.join("delivery.jsonl");
            e.message = format!("{}\ndelivery log: {}", e.message, log.display());
        }
        e
    });
    let report = result?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    report.check()
}

async fn demo(args: &Args, dir: &Path) -> Result<Report, CliError> {
    let (token, token_hash) = super::hash::new_token();
    let sink = world::start_sinks(args.sinks)?;
    let port = sink.local_addrs()[0].port();
    let dns = world::start_dns(args.domains, args.sinks).await?;
    let config = world::config(dir, dns.addr(), port, &token_hash)?;
    let server = Server::start(config)
        .await
        .map_err(|e| CliError::runtime(format!("starting Volley: {e}")))?;
    let api = Api::new(&format!("http://{}", server.http_addr()), &token)?;
    if !args.json {
        eprintln!(
            "volley demo: HTTP API on http://{}, DNS on {}, {} sinks on {}..{} port {}, {} recipients over {} domains ({})",
            server.http_addr(),
            dns.addr(),
            args.sinks,
            world::sink_ip(0),
            world::sink_ip(args.sinks - 1),
            port,
            args.recipients,
            args.domains,
            match args.content {
                ContentKind::Personalised => "personalised",
                ContentKind::Static => "static content",
            }
        );
    }

    let bars = Bars::new(args.recipients, args.json);
    let injected = Arc::new(AtomicU64::new(0));
    let engine = server.engine().clone();
    let ticker = {
        let (bars, injected, engine) = (bars.clone(), injected.clone(), engine.clone());
        tokio::spawn(async move {
            loop {
                bars.update(injected.load(Relaxed), engine.stats().delivered);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let started = Instant::now();
    let plan = Plan {
        recipients: args.recipients,
        domains: args.domains,
        batch: BATCH,
        concurrency: CONCURRENCY,
        content: args.content,
    };
    let outcome = match inject::inject(&api, plan, injected.clone()).await {
        Ok(i) => wait_delivered(&engine, i.accepted, args.stall_timeout)
            .await
            .map(|done| (i, done)),
        Err(e) => Err(e),
    };
    let delivery_elapsed = started.elapsed();
    ticker.abort();
    bars.update(injected.load(Relaxed), engine.stats().delivered);
    bars.finish();
    let stats = server.shutdown().await;
    let sink_summary = tokio::task::spawn_blocking(move || sink.shutdown())
        .await
        .map_err(|e| CliError::runtime(format!("stopping the sinks: {e}")))?;
    drop(dns);
    let (injected, ()) = outcome?;
    let log = dir.join("delivery.jsonl");
    let latencies = report::read_log(&log)?;
    Ok(Report {
        recipients: args.recipients,
        domains: args.domains,
        sinks: args.sinks,
        content: args.content,
        batch: BATCH,
        injected,
        engine: stats,
        sink: sink_summary,
        delivery_elapsed,
        log_latencies: latencies,
        delivery_log: log,
        spool: args.keep.then(|| dir.join("spool")),
    })
}

/// Waits until `expected` recipients have a final outcome; fails when nothing
/// moves for `stall_secs`.
async fn wait_delivered(
    engine: &crate::delivery::EngineHandle,
    expected: u64,
    stall_secs: u64,
) -> Result<(), CliError> {
    let stall = Duration::from_secs(stall_secs.max(1));
    let mut last = (u64::MAX, Instant::now());
    loop {
        let s = engine.stats();
        let done = s.delivered + s.bounced + s.expired;
        if done >= expected {
            return Ok(());
        }
        if done != last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > stall {
            return Err(CliError::runtime(format!(
                "delivery stalled: {} of {expected} recipients delivered, {} bounced, {} deferred \
                 so far, and nothing moved for {}s (see the delivery log)",
                s.delivered, s.bounced, s.deferred, stall_secs
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The two progress bars: injected (acknowledged) and delivered.
#[derive(Clone)]
struct Bars {
    multi: MultiProgress,
    injected: ProgressBar,
    delivered: ProgressBar,
}

impl Bars {
    fn new(total: u64, hidden: bool) -> Bars {
        let multi = MultiProgress::new();
        if hidden {
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        let style = ProgressStyle::with_template(
            "{prefix:>9} [{elapsed_precise}] {wide_bar} {pos:>9}/{len} {per_sec:>12}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let injected = multi.add(ProgressBar::new(total).with_style(style.clone()));
        injected.set_prefix("injected");
        let delivered = multi.add(ProgressBar::new(total).with_style(style));
        delivered.set_prefix("delivered");
        Bars {
            multi,
            injected,
            delivered,
        }
    }

    fn update(&self, injected: u64, delivered: u64) {
        self.injected.set_position(injected);
        self.delivered.set_position(delivered);
    }

    fn finish(&self) {
        self.injected.finish();
        self.delivered.finish();
        let _ = self.multi.clear();
    }
}
