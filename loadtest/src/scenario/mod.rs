//! `volley-load scenario a|b|c|d`: Volley end to end on loopback, one command per
//! workload, measured against the wire limit in the same run.
//!
//! One run: a temp dir; 10 `volley-load sink` processes on 127.0.40.1..10 (one
//! port) as the MX hosts of N test domains served by a loopback DNS server; the
//! wire limit (`volley-load blast` at those sinks, the scenario's message size and
//! recipients per transaction); then Volley with its durable RocksDB spool as a
//! child process (`volley-load scenario-volley`, the library's `Server`, so its
//! CPU and peak RSS are its own), injection over its HTTP API from this process
//! (closed loop, ack latency per request), a wait until every recipient is
//! delivered, a graceful stop, the delivery log read for inject-to-delivery
//! latency, and the sinks' counts to check that every recipient arrived.
//! Everything stops and the temp dir goes, also on failure or Ctrl-C.
//!
//! - [`world`]: temp dir, DNS zone and sink processes (reusable: the world any
//!   load test against "N domains whose MX hosts are local sinks" needs).
//! - [`sinks`]: the sink processes. [`volley_proc`]: Volley as a child.
//! - [`shape`]: the scenarios' defaults and targets. [`content`]: the templates.
//! - [`inject`] over [`http`]: the injector. [`wire`]: the blaster run.
//! - [`latency`]: the delivery log. [`report`]: table and JSON. [`procfs`]: CPU, RSS.

pub mod content;
pub mod http;
pub mod inject;
pub mod latency;
pub mod procfs;
pub mod report;
pub mod shape;
pub mod sinks;
pub mod volley_proc;
pub mod wire;
pub mod world;

use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use self::inject::{Injected, Plan};
use self::report::{Measured, Report};
use self::shape::{Overrides, Shape, Which};
use self::volley_proc::{Counters, VolleyProc};
use self::wire::WireSpec;
use self::world::{World, WorldSpec, SUFFIX};

/// `volley-load scenario` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// a: 4 KB x 1 rcpt personalised, HTTP (200k); b: one campaign body, 1M
    /// recipients over 1,000 domains; c: 100 KB x 1 rcpt (120k); d: 100,000
    /// domains, 1 recipient each.
    #[arg(value_enum)]
    pub scenario: Which,
    /// Messages to inject (b: recipients).
    #[arg(long, value_name = "N")]
    pub messages: Option<u64>,
    /// Test domains (default 1,000; d: one per message).
    #[arg(long, value_name = "N")]
    pub domains: Option<u64>,
    /// Message size in bytes (default 4096; c: 102400).
    #[arg(long, value_name = "BYTES")]
    pub size: Option<usize>,
    /// Recipients per HTTP request (a, c, d: per POST /api/v1/messages, default
    /// 10, c: 4; b: per POST /api/v1/campaigns, default 10,000).
    #[arg(long, value_name = "N")]
    pub batch: Option<u64>,
    /// HTTP requests in flight (default 4; c: 8).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Sink processes (MX hosts), on consecutive addresses from --sink-base.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub sinks: u32,
    /// The first sink's address.
    #[arg(long, default_value_t = world::DEFAULT_SINK_BASE, value_name = "IP")]
    pub sink_base: Ipv4Addr,
    /// Seconds the blaster sends for the wire limit.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub wire_seconds: f64,
    /// Connections the blaster opens.
    #[arg(long, default_value_t = 40, value_name = "N")]
    pub wire_connections: u32,
    /// Give up (exit 1) when delivery makes no progress for this many seconds.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub stall_timeout: u64,
    /// Print one JSON object instead of the table (and no progress lines).
    #[arg(long)]
    pub json: bool,
}

/// Runs the scenario; fails (exit 1) unless every recipient was delivered.
pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.sink_base.is_loopback() {
        bail!("--sink-base {} is not a loopback address", args.sink_base);
    }
    if !(args.wire_seconds > 0.0 && args.wire_seconds < 3600.0) {
        bail!("--wire-seconds must be between 0 and 3600");
    }
    let nofile = procfs::raise_nofile_limit().context("raising the open-files limit")?;
    let exe = std::env::current_exe().context("locating volley-load")?;
    let shape = Shape::new(
        args.scenario,
        Overrides {
            messages: args.messages,
            domains: args.domains,
            size: args.size,
            batch: args.batch,
            concurrency: args.concurrency,
        },
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = rt.block_on(async {
        tokio::select! {
            r = scenario(&exe, &shape, &args, nofile) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    })?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    report.check()
}

/// Says what is happening on stderr (not with --json).
struct Say(bool);

impl Say {
    fn line(&self, s: impl AsRef<str>) {
        if self.0 {
            eprintln!("scenario: {}", s.as_ref());
        }
    }
}

async fn scenario(exe: &Path, shape: &Shape, args: &Args, nofile: u64) -> anyhow::Result<Report> {
    let say = Say(!args.json);
    say.line(&shape.title);
    let world = World::start(&WorldSpec {
        sinks: args.sinks,
        sink_base: args.sink_base,
        ..WorldSpec::new(exe.to_path_buf(), shape.domains)
    })
    .await?;
    let sink_addrs: Vec<SocketAddr> = world.sinks().addrs().to_vec();
    say.line(format!(
        "{} sinks on {}..{} port {}, DNS on {} ({} domains under {SUFFIX}), dir {}",
        sink_addrs.len(),
        sink_addrs[0].ip(),
        sink_addrs[sink_addrs.len() - 1].ip(),
        world.sinks().port(),
        world.dns_addr(),
        shape.domains,
        world.dir().display()
    ));

    // The wire limit first, while nothing else runs.
    let spec = WireSpec {
        size: shape.size,
        rcpts_per_msg: shape.wire_rcpts,
        domains: shape.domains,
        seconds: args.wire_seconds,
        connections: args.wire_connections,
    };
    say.line(format!(
        "wire limit: blast {} B x {} rcpt(s), {} connections, {}s",
        spec.size, spec.rcpts_per_msg, spec.connections, spec.seconds
    ));
    let (exe2, addrs2) = (exe.to_path_buf(), sink_addrs.clone());
    let wire = tokio::task::spawn_blocking(move || wire::measure(&exe2, &addrs2, spec))
        .await
        .context("the blaster task")??;
    say.line(format!(
        "wire limit: {:.0} msgs/s, {:.0} rcpts/s",
        wire.msgs_per_s, wire.rcpts_per_s
    ));

    let (token, token_hash) = volley::cli::hash::new_token();
    let config = world.dir().join("volley.toml");
    std::fs::write(&config, config_text(&world, shape, &token_hash))
        .with_context(|| format!("writing {}", config.display()))?;
    let volley = {
        let (exe, config) = (exe.to_path_buf(), config.clone());
        tokio::task::spawn_blocking(move || VolleyProc::start(&exe, &config))
            .await
            .context("starting Volley")??
    };
    say.line(format!(
        "Volley (pid {}) on http://{}; injecting {} recipients, {} per request, {} in flight",
        volley.pid(),
        volley.http_addr(),
        shape.plan.recipients(),
        shape.pace.batch,
        shape.pace.concurrency
    ));

    let measured = run_load(&volley, shape, &token, &world, &say, args.stall_timeout).await;
    let sinks_peak_rss_mb = world.sinks().peak_rss_mb();
    let peak_rss_mb = volley.peak_rss_mb().unwrap_or(0.0);
    let final_counters = tokio::task::spawn_blocking(move || volley.stop())
        .await
        .context("stopping Volley")?;
    let mut measured = measured?;
    measured.peak_rss_mb = peak_rss_mb;
    measured.sinks_peak_rss_mb = sinks_peak_rss_mb;
    measured.final_counters = final_counters?;
    let log = latency::read_log(&world.dir().join("delivery.jsonl"))?;
    let dns_queries = world.dns_queries();
    let sinks = tokio::task::spawn_blocking(move || world.stop())
        .await
        .context("stopping the sinks")??;
    Ok(Report {
        shape: shape.clone(),
        sinks_n: args.sinks,
        nofile,
        wire,
        measured,
        log,
        sink_totals: sinks,
        dns_queries,
    })
}

/// Injects and waits until every accepted recipient has a final outcome.
async fn run_load(
    volley: &VolleyProc,
    shape: &Shape,
    token: &str,
    world: &World,
    say: &Say,
    stall_timeout: u64,
) -> anyhow::Result<Measured> {
    let me = std::process::id();
    let cpu0 = (
        volley.cpu_seconds().unwrap_or(0.0),
        world.sinks().cpu_seconds(),
        procfs::cpu_seconds(me).unwrap_or(0.0),
    );
    let progress = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let injector = {
        let (http, token, plan, pace, id, progress) = (
            volley.http_addr(),
            token.to_string(),
            shape.plan.clone(),
            shape.pace,
            shape.campaign_id(),
            progress.clone(),
        );
        tokio::spawn(async move { inject::inject(http, &token, &plan, pace, &id, progress).await })
    };
    let expected = shape.plan.recipients();
    let stall = Duration::from_secs(stall_timeout.max(1));
    let mut injected: Option<Injected> = None;
    let mut injector = Some(injector);
    let mut last_move = (u64::MAX, Instant::now());
    let mut last_say = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let done_at = loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if injector.as_ref().is_some_and(|j| j.is_finished()) {
            if let Some(j) = injector.take() {
                let i = j.await.context("the injector task")??;
                say.line(format!(
                    "injected {} recipients ({} refused) in {:.2}s",
                    i.accepted,
                    i.rejected,
                    i.elapsed.as_secs_f64()
                ));
                injected = Some(i);
            }
        }
        let c = volley.counters();
        if let Some(i) = &injected {
            if c.finished() >= i.accepted {
                break started.elapsed();
            }
        }
        if c.finished() != last_move.0 {
            last_move = (c.finished(), Instant::now());
        } else if last_move.1.elapsed() > stall {
            bail!(
                "delivery stalled: {} of {expected} recipients finished ({} delivered, {} bounced, {} deferrals), \
                 {} accepted so far; nothing moved for {}s",
                c.finished(),
                c.delivered,
                c.bounced,
                c.deferred,
                progress.load(Relaxed),
                stall.as_secs()
            );
        }
        if tty && last_say.elapsed() > Duration::from_secs(2) {
            last_say = Instant::now();
            say.line(format!(
                "{:>5.1}s: accepted {} delivered {}",
                started.elapsed().as_secs_f64(),
                progress.load(Relaxed),
                c.delivered
            ));
        }
    };
    let injected = injected.context("the injector did not finish")?;
    let counters = volley.counters();
    let cpu1 = (
        volley.cpu_seconds().unwrap_or(0.0),
        world.sinks().cpu_seconds(),
        procfs::cpu_seconds(me).unwrap_or(0.0),
    );
    Ok(Measured {
        injected,
        counters,
        final_counters: Counters::default(),
        elapsed: done_at,
        volley_cpu_s: cpu1.0 - cpu0.0,
        sinks_cpu_s: cpu1.1 - cpu0.1,
        injector_cpu_s: cpu1.2 - cpu0.2,
        peak_rss_mb: 0.0,
        sinks_peak_rss_mb: 0.0,
    })
}

/// Volley's configuration: durable spool and delivery log in the world's dir,
/// HTTP on an ephemeral port, the world's DNS and sink port, no TLS (the sinks
/// offer none), shaping at its defaults. The DNS cache holds every domain.
fn config_text(world: &World, shape: &Shape, token_hash: &str) -> String {
    let dir = world.dir();
    let cache = (shape.domains + 1_000).max(50_000);
    format!(
        r#"[spool]
path = "{spool}"
sync = true
[http]
listen = "127.0.0.1:0"
[smtp]
hostname = "volley.{SUFFIX}"
[dns]
nameservers = ["{dns}"]
cache_size = {cache}
[delivery]
smtp_port = {port}
tls = "disabled"
retry_schedule = ["1s", "5s"]
[log]
delivery = "{log}"
[[tenant]]
name = "scenario"
api_tokens = ["{token_hash}"]
"#,
        spool = toml_path(&dir.join("spool")),
        log = toml_path(&dir.join("delivery.jsonl")),
        dns = world.dns_addr(),
        port = world.sinks().port(),
    )
}

/// A path as a TOML basic string's content.
fn toml_path(p: &Path) -> String {
    p.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

/// Which of [`Plan`]'s shapes: for the report.
pub fn is_campaign(plan: &Plan) -> bool {
    matches!(plan, Plan::Campaign { .. })
}
