//! `volley-load spool-bench`: durable store throughput and recovery time of the
//! RocksDB spool.
//!
//! Store phase: `--writers` tokio tasks store `--messages` messages of `--size`
//! bytes and `--rcpts` recipients, each task awaiting its store before the next
//! (closed loop: this measures the spool, not an arrival schedule). It reports
//! throughput, the latency of the store call up to durability (HDR histogram), and
//! how many messages each WAL sync served (group commit).
//!
//! Recovery phase (`--recover-recipients M`): bulk-loads M recipients (messages of
//! `--recover-batch` recipients over 1,000 domains, unsynced), closes the spool,
//! then times reopening it and recovering every recipient into a fresh
//! [`Scheduler`], and reports the count, seconds and resident memory.
//!
//! The spool lives in a temporary directory removed at the end, unless `--path`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use volley::model::{
    DsnRequest, Envelope, IdGenerator, MessageMeta, Recipient, TenantId, Timestamp,
};
use volley::queue::{Scheduler, SchedulerConfig, SystemClock};
use volley::spool::{Body, NewMessage, RocksSpool, Spool, SpoolError, SpoolOptions};

/// Command-line arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Messages to store in the store phase (0 skips it).
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// Concurrent writers (tokio tasks), each awaiting its store before the next.
    #[arg(long, default_value_t = 64)]
    pub writers: u32,
    /// Body size in bytes.
    #[arg(long, default_value_t = 4096)]
    pub size: usize,
    /// Recipients per message in the store phase.
    #[arg(long, default_value_t = 1)]
    pub rcpts: u32,
    /// Recipients to bulk-load and then recover (0 skips the recovery phase).
    #[arg(long, default_value_t = 0)]
    pub recover_recipients: u64,
    /// Recipients per message in the recovery phase.
    #[arg(long, default_value_t = 100)]
    pub recover_batch: u32,
    /// Spool directory (created; left in place). Default: a temporary directory,
    /// removed at the end.
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Acknowledge stores without fsync (`sync = false`: risky, for comparison).
    #[arg(long)]
    pub no_sync: bool,
    /// Store bodies without LZ4 compression in SST files.
    #[arg(long)]
    pub no_compression: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Domains the generated recipients spread over.
const DOMAINS: u64 = 1_000;

/// Runs the benchmark.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.writers == 0 || args.rcpts == 0 || args.recover_batch == 0 {
        bail!("--writers, --rcpts and --recover-batch must be at least 1");
    }
    let dir = BenchDir::new(args.path.clone())?;
    let mut options = SpoolOptions::default();
    options.sync = !args.no_sync;
    options.compress_bodies = !args.no_compression;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut report = serde_json::Map::new();
    report.insert("sync".into(), options.sync.into());
    report.insert("compress_bodies".into(), options.compress_bodies.into());
    if args.messages > 0 {
        let spool = Arc::new(RocksSpool::open(dir.path().join("store"), options.clone())?);
        let store = runtime.block_on(store_phase(&args, spool))?;
        report.insert("store".into(), store);
    }
    if args.recover_recipients > 0 {
        let recovery = recovery_phase(&args, &options, &dir.path().join("recover"))?;
        report.insert("recovery".into(), recovery);
    }
    let report = serde_json::Value::Object(report);
    if args.json {
        println!("{report}");
    } else {
        print_text(&args, &report);
    }
    Ok(())
}

/// A spool directory: the user's, or a temporary one removed on drop.
struct BenchDir {
    path: PathBuf,
    remove: bool,
}

impl BenchDir {
    fn new(path: Option<PathBuf>) -> anyhow::Result<BenchDir> {
        let (path, remove) = match path {
            Some(p) => (p, false),
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let p = std::env::temp_dir()
                    .join(format!("volley-spool-bench-{}-{nanos}", std::process::id()));
                (p, true)
            }
        };
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(BenchDir { path, remove })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Text-like body material: each message takes a different window of it.
fn corpus() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "offer",
        "ends",
        "soon",
        "your",
        "account",
        "weekly",
        "digest",
        "news",
        "click",
        "here",
        "to",
        "unsubscribe",
        "deal",
        "of",
        "day",
        "shipping",
        "free",
        "order",
        "confirmed",
        "thanks",
        "for",
        "reading",
        "we",
        "miss",
        "you",
        "sale",
    ];
    let mut out = Vec::with_capacity(1 << 20);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while out.len() < 1 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        out.push(if x % 13 == 0 { b'\n' } else { b' ' });
    }
    out
}

/// The meta of generated message `n` with `rcpts` recipients.
fn meta(ids: &IdGenerator, n: u64, rcpts: u32, body_len: usize) -> MessageMeta {
    let created = Timestamp::now();
    let recipients = (0..rcpts as u64)
        .map(|i| {
            let domain = (n * rcpts as u64 + i) % DOMAINS;
            Recipient::new(format!("user{n}.{i}@d{domain}.example"))
        })
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_default();
    MessageMeta {
        id: ids.generate(created),
        tenant: Some(TenantId("bench".into())),
        campaign: None,
        created,
        expires: created.saturating_add(Duration::from_secs(5 * 86_400)),
        envelope: Envelope {
            reverse_path: "bounces@sender.example".into(),
            recipients,
            body_type: None,
            smtputf8: false,
            dsn: DsnRequest::default(),
        },
        body_len: body_len as u64,
        tags: Vec::new(),
    }
}

fn body(corpus: &[u8], n: u64, size: usize) -> Body {
    let size = size.min(corpus.len());
    let start = (n as usize).wrapping_mul(7919) % (corpus.len() - size + 1);
    Body::from(&corpus[start..start + size])
}

async fn store_phase(args: &Args, spool: Arc<RocksSpool>) -> anyhow::Result<serde_json::Value> {
    let corpus = Arc::new(corpus());
    let ids = Arc::new(IdGenerator::new());
    let next = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let before = spool.writer_stats();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.writers {
        let (spool, corpus, ids, next, busy) = (
            spool.clone(),
            corpus.clone(),
            ids.clone(),
            next.clone(),
            busy.clone(),
        );
        let (total, size, rcpts) = (args.messages, args.size, args.rcpts);
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok::<_, anyhow::Error>(hist);
                }
                let t0 = Instant::now();
                loop {
                    // Building the message is part of the measured cost, as it is
                    // for ingest; a refused store is retried with a fresh id.
                    let msg = NewMessage {
                        meta: meta(&ids, n, rcpts, size),
                        body: body(&corpus, n, size),
                    };
                    match spool.store(msg).await {
                        Ok(()) => break,
                        Err(SpoolError::Busy) => {
                            busy.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                hist.saturating_record(t0.elapsed().as_micros() as u64);
            }
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        hist.add(t.await??)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let after = spool.writer_stats();
    let rounds = after.rounds - before.rounds;
    let messages = after.messages - before.messages;
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(serde_json::json!({
        "messages": args.messages,
        "writers": args.writers,
        "size": args.size,
        "rcpts": args.rcpts,
        "seconds": secs,
        "msgs_per_s": args.messages as f64 / secs,
        "mb_per_s": (after.bytes - before.bytes) as f64 / secs / 1e6,
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "p999_ms": ms(0.999),
        "max_ms": hist.max() as f64 / 1000.0,
        "syncs": rounds,
        "msgs_per_sync": messages as f64 / rounds.max(1) as f64,
        "busy_retries": busy.load(Ordering::Relaxed),
        "rss_mb": rss_mb("VmRSS"),
    }))
}

fn recovery_phase(
    args: &Args,
    options: &SpoolOptions,
    path: &Path,
) -> anyhow::Result<serde_json::Value> {
    // Setup: bulk load without syncs, many stores in flight.
    let load_start = Instant::now();
    let per_msg = args.recover_batch;
    let messages = args.recover_recipients.div_ceil(per_msg as u64);
    {
        let mut bulk = options.clone();
        bulk.sync = false;
        let spool = RocksSpool::open(path, bulk)?;
        let corpus = corpus();
        let ids = IdGenerator::new();
        let mut inflight = Vec::with_capacity(1024);
        for n in 0..messages {
            let msg = NewMessage {
                meta: meta(&ids, n, per_msg, args.size),
                body: body(&corpus, n, args.size),
            };
            inflight.push(spool.store(msg));
            if inflight.len() == 1024 || n + 1 == messages {
                for d in inflight.drain(..) {
                    d.wait()?;
                }
            }
        }
        spool.sync_wal()?;
    }
    let load_secs = load_start.elapsed().as_secs_f64();

    let rss_before = rss_mb("VmRSS");
    let start = Instant::now();
    let spool = RocksSpool::open(path, options.clone())?;
    let opened = start.elapsed().as_secs_f64();
    let scheduler = Scheduler::new(SchedulerConfig::default(), Arc::new(SystemClock));
    let mut queued = 0u64;
    let stats = spool.recover(&mut |m| queued += scheduler.enqueue(&m) as u64)?;
    let secs = start.elapsed().as_secs_f64();
    let rss_after = rss_mb("VmRSS");
    if stats.recipients != messages * per_msg as u64 {
        bail!(
            "recovered {} recipients, expected {}",
            stats.recipients,
            messages * per_msg as u64
        );
    }
    Ok(serde_json::json!({
        "messages": stats.messages,
        "recipients": stats.recipients,
        "queued": queued,
        "corrupt": stats.corrupt,
        "load_seconds": load_secs,
        "open_seconds": opened,
        "seconds": secs,
        "recipients_per_s": stats.recipients as f64 / secs,
        "rss_mb_before": rss_before,
        "rss_mb_after": rss_after,
        "peak_rss_mb": rss_mb("VmHWM"),
    }))
}

/// A memory figure of this process from /proc/self/status, in MiB (0 if unknown).
fn rss_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn print_text(args: &Args, report: &serde_json::Value) {
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let sync = if args.no_sync {
        "no fsync (risky)"
    } else {
        "fsync per round"
    };
    if let Some(s) = report.get("store") {
        println!(
            "store: {} msgs x {} B x {} rcpt, {} writers, {sync}",
            args.messages, args.size, args.rcpts, args.writers
        );
        println!(
            "  {:.0} msgs/s ({:.1} MB/s)  p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
            f(s, "msgs_per_s"),
            f(s, "mb_per_s"),
            f(s, "p50_ms"),
            f(s, "p99_ms"),
            f(s, "p999_ms"),
            f(s, "max_ms"),
        );
        println!(
            "  {} syncs, {:.1} msgs per sync, {} busy retries, RSS {:.0} MiB",
            s["syncs"],
            f(s, "msgs_per_sync"),
            s["busy_retries"],
            f(s, "rss_mb"),
        );
    }
    if let Some(r) = report.get("recovery") {
        println!(
            "recovery: {} recipients in {} messages (loaded in {:.1} s)",
            r["recipients"],
            r["messages"],
            f(r, "load_seconds")
        );
        println!(
            "  open + recover into the scheduler: {:.2} s (open {:.2} s), {:.0} recipients/s",
            f(r, "seconds"),
            f(r, "open_seconds"),
            f(r, "recipients_per_s"),
        );
        println!(
            "  RSS {:.0} -> {:.0} MiB (peak {:.0} MiB)",
            f(r, "rss_mb_before"),
            f(r, "rss_mb_after"),
            f(r, "peak_rss_mb"),
        );
    }
}
