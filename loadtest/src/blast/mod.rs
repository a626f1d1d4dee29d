//! `volley-load blast`: an open-loop SMTP load generator.
//!
//! Layout:
//! - [`schedule`]: which message is next and when it is due (open loop).
//! - [`message`]: the one message every transaction sends, built once.
//! - [`envelope`]: MAIL FROM / RCPT TO rendering (unique recipients over N domains).
//! - [`conn`]: transport (TCP/TLS), reply reading, greeting/EHLO/STARTTLS.
//! - [`session`]: a connection's transactions, pipelined, replies matched FIFO.
//! - [`worker`]: a connection task (reconnects) and the state tasks share.
//! - [`tls`]: a rustls client that accepts any certificate.
//! - [`report`]: counters, HDR latency percentiles, JSON and table output.
//!
//! The SMTP itself (rendering commands, parsing replies and EHLO, dot-stuffing) is
//! `volley::smtp`.

mod conn;
mod envelope;
mod message;
mod report;
mod schedule;
mod session;
mod tls;
mod worker;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use volley::smtp::address::{Domain, Mailbox};

use self::conn::OpenOptions;
use self::envelope::EnvelopeSpec;
use self::message::{Message, MessageSpec};
use self::report::{RunInfo, Stats, Summary};
use self::schedule::Schedule;
use self::worker::Shared;

/// Command-line arguments.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("limit").args(["messages", "duration"]).required(true).multiple(true)))]
pub struct Args {
    /// Server to send to, HOST:PORT (port 25 if omitted). Repeat to spread the
    /// connections over several servers, round-robin.
    #[arg(long = "target", value_name = "ADDR", required = true)]
    pub targets: Vec<String>,
    /// Concurrent SMTP connections, each reused for many messages.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,
    /// Messages (transactions) to send. With --duration: whichever ends first.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: Option<u64>,
    /// Send for this many seconds. With --messages: whichever ends first.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Messages per second over all connections, on a fixed schedule (open loop;
    /// latency counts from each message's due time). Omit for as fast as possible.
    #[arg(long, value_name = "PER_SEC", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Message size in bytes, headers included.
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    pub size: usize,
    /// Recipients per message (RCPT TO commands per transaction).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rcpts_per_msg: u32,
    /// Spread recipients over N domains, `d0.SUFFIX` .. `d{N-1}.SUFFIX`.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub domains: u32,
    /// Parent domain of the recipient domains (e.g. a test DNS zone).
    #[arg(long, value_name = "DOMAIN", default_value = "example", value_parser = parse_suffix)]
    pub domain_suffix: String,
    /// Envelope sender (and From: header).
    #[arg(long, value_name = "ADDR", default_value = "load@volley.test", value_parser = parse_mailbox)]
    pub from: Mailbox,
    /// Do not pipeline even when the server offers PIPELINING.
    #[arg(long)]
    pub no_pipelining: bool,
    /// Use BDAT when the server offers CHUNKING: whole transactions back to back.
    #[arg(long)]
    pub chunking: bool,
    /// Upgrade each connection with STARTTLS (any certificate is accepted).
    #[arg(long)]
    pub starttls: bool,
    /// Most transactions in flight per connection when pipelining.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub window: u32,
    /// EHLO name.
    #[arg(long, value_name = "NAME", default_value = "volley-load.localdomain")]
    pub ehlo: String,
    /// Print the result as one JSON object on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// No progress bar, no table on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Tokio worker threads (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Seconds to wait for each reply (and for connect, TLS, each write).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    pub timeout: Duration,
    /// Seconds to wait for outstanding replies once sending has stopped.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub drain: Duration,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(v > 0.0 && v.is_finite() && v < 1e9) {
        return Err(format!("`{s}` must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if !(v > 0.0 && v.is_finite()) {
        return Err(format!("`{s}` must be a positive rate"));
    }
    Ok(v)
}

fn parse_mailbox(s: &str) -> Result<Mailbox, String> {
    Mailbox::parse(s, false).map_err(|e| format!("`{s}`: {e}"))
}

fn parse_suffix(s: &str) -> Result<String, String> {
    Domain::parse(&format!("d0.{s}")).map_err(|e| format!("`{s}`: {e}"))?;
    Ok(s.to_string())
}

/// Runs the subcommand until done.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        builder.worker_threads(n as usize);
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let progress = !args.quiet && std::io::stderr().is_terminal();
    let summary = runtime.block_on(blast(&args, progress))?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
        if !args.quiet {
            eprint!("{}", summary.table());
        }
    } else {
        print!("{}", summary.table());
    }
    Ok(())
}

/// `HOST[:PORT]`, `IP`, `[IPv6]` or `[IPv6]:PORT` with port 25 filled in where
/// missing; returns (host for SNI, lookup string).
fn with_port(t: &str) -> (String, String) {
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return (sa.ip().to_string(), t.to_string());
    }
    if let Ok(ip) = t
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        return (ip.to_string(), SocketAddr::new(ip, 25).to_string());
    }
    match t.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => (host.to_string(), t.to_string()),
        _ => (t.to_string(), format!("{t}:25")),
    }
}

/// Resolves the targets; keeps each host for SNI.
async fn resolve(targets: &[String]) -> anyhow::Result<Vec<(String, SocketAddr)>> {
    let mut out = Vec::new();
    for t in targets {
        let (host, lookup) = with_port(t);
        let addr = tokio::net::lookup_host(&lookup)
            .await
            .with_context(|| format!("cannot resolve target {t}"))?
            .next()
            .with_context(|| format!("target {t} has no address"))?;
        out.push((host, addr));
    }
    Ok(out)
}

/// Runs the load and returns its summary. `Err` only when the target cannot be
/// reached at all (or a run-wide requirement like STARTTLS is unmet).
pub async fn blast(args: &Args, progress: bool) -> anyhow::Result<Summary> {
    let targets = resolve(&args.targets).await?;
    let envelope = EnvelopeSpec::new(
        args.from.clone(),
        args.domains,
        &args.domain_suffix,
        args.rcpts_per_msg,
    )
    .context("recipient domains")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let from = args.from.to_string();
    let to = format!("u0@{}", envelope.domains[0]);
    let bytes = message::build(&MessageSpec {
        size: args.size,
        from: &from,
        to: &to,
        unix_secs: now.as_secs(),
        id: now.as_nanos() as u64 ^ u64::from(std::process::id()),
    });
    let message = Message::new(bytes);
    let connector = if args.starttls {
        Some(tls::connector().context("TLS configuration")?)
    } else {
        None
    };
    let connections = args.connections as usize;
    let shared = Arc::new(Shared {
        schedule: Schedule::new(args.rate, args.messages, args.duration).with_grace(args.drain),
        targets: targets
            .iter()
            .map(|(host, addr)| {
                let tls = connector
                    .as_ref()
                    .map(|c| (c.clone(), tls::server_name(host)));
                (
                    *addr,
                    OpenOptions {
                        ehlo: args.ehlo.clone(),
                        timeout: args.timeout,
                        tls,
                    },
                )
            })
            .collect(),
        message,
        envelope,
        window: args.window as usize,
        pipelining: !args.no_pipelining,
        chunking: args.chunking,
        drain: args.drain,
        connections,
        completed: AtomicU64::new(0),
        connected_once: AtomicBool::new(false),
        first_failures: AtomicUsize::new(0),
        fatal: Mutex::new(None),
        ready: tokio::sync::Barrier::new(connections),
    });

    let stop_on_ctrl_c = {
        let shared = shared.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                shared.schedule.stop();
            }
        })
    };
    let bar = progress.then(|| progress_bar(shared.clone()));

    let tasks: Vec<_> = (0..connections)
        .map(|c| tokio::spawn(worker::connection(shared.clone(), c % targets.len())))
        .collect();
    let mut stats = Stats::default();
    for task in tasks {
        stats.merge(&task.await.context("connection task panicked")?);
    }
    stats.unsent += shared.schedule.never_sent();
    stop_on_ctrl_c.abort();
    if let Some((task, bar)) = bar {
        task.abort();
        bar.finish_and_clear();
    }
    if let Some(why) = shared
        .fatal
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        anyhow::bail!(why);
    }
    let elapsed = match (shared.schedule.started(), stats.last_done) {
        (Some(start), Some(last)) => last.saturating_duration_since(start),
        (Some(start), None) => start.elapsed(),
        _ => Duration::ZERO,
    };
    let info = RunInfo {
        targets: args.targets.clone(),
        connections,
        message_bytes: shared.message.bytes.len(),
        rcpts_per_msg: args.rcpts_per_msg,
        rate: args.rate,
    };
    Ok(Summary::new(info, &stats, elapsed))
}

/// A progress bar on stderr, updated five times a second from the shared counter.
fn progress_bar(shared: Arc<Shared>) -> (tokio::task::JoinHandle<()>, indicatif::ProgressBar) {
    let (bar, template) = match shared.schedule.planned() {
        Some(n) => (
            indicatif::ProgressBar::new(n),
            "{elapsed_precise} [{bar:30}] {pos}/{len} msgs {msg} eta {eta}",
        ),
        None => (
            indicatif::ProgressBar::new_spinner(),
            "{elapsed_precise} {spinner} {pos} msgs {msg}",
        ),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let handle = {
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let done = shared.completed.load(Ordering::Relaxed);
                bar.set_position(done);
                if let Some(start) = shared.schedule.started() {
                    let secs = start.elapsed().as_secs_f64().max(1e-3);
                    bar.set_message(format!("{:.0}/s", done as f64 / secs));
                }
            }
        })
    };
    (handle, bar)
}
