//! `volley-load vs-postfix`: the measuring half of `loadtest/vs-postfix.sh`, which
//! sets up and starts a private Postfix relay and then calls `vs-postfix run`.
//!
//! - `run a|b|c --postfix ADDR --sink-port PORT --dir DIR`: starts the sinks (10
//!   loopback addresses, one port, in this process), a DNS zone of the test
//!   domains (`volley::dns::TestDnsServer`) and Volley (a child process, relay
//!   listener for 127.0.0.0/8, durable spool in DIR); blasts the workload at
//!   Volley and times it to the last delivery; stops Volley; blasts the same
//!   workload at the Postfix smtpd at ADDR and times it the same way; prints both
//!   delivered rates and a last line `ratio=<volley/postfix>`. Exit 1 when either
//!   side does not deliver every recipient in time.
//! - `routes --sink-port PORT`: the Postfix `transport_maps` table giving every
//!   test domain the same MX host as the DNS zone does.
//! - `volley --config FILE`: `volley serve --config FILE` in this binary (hidden;
//!   used when no `volley` binary is given).
//!
//! - [`world`]: workloads, domains, zone, routes, Volley's configuration.
//! - [`phase`]: one side, injected and timed.
//! - [`volley_proc`]: Volley as a child process.
//! - [`cpu`]: CPU time from `/proc`.

pub mod cpu;
pub mod phase;
pub mod volley_proc;
pub mod world;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use volley::dns::TestDnsServer;
use volley::sink::{Sink, SinkOptions};

use phase::{Limits, Load, Outcome};
use volley_proc::VolleyProc;
use world::Workload;

/// `vs-postfix` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Measure Volley (started here) and an already running Postfix on the same
    /// workload, sinks and routes; print both delivered rates and their ratio.
    Run(RunArgs),
    /// Print Postfix's transport table (texthash): each test domain to its sink.
    Routes(RoutesArgs),
    /// `volley serve --config FILE`, in this binary.
    #[command(hide = true)]
    Volley {
        /// Volley's configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// Where the sinks are and how many domains route to them.
#[derive(clap::Args, Debug, Clone)]
struct SinkArgs {
    /// The port every sink listens on (Postfix's routes name it).
    #[arg(long, value_name = "PORT")]
    sink_port: u16,
    /// The first sink's address; the others follow it.
    #[arg(long, value_name = "IP", default_value_t = world::DEFAULT_SINK_BASE)]
    sink_base: Ipv4Addr,
    /// Sinks (MX hosts), each its own site.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=200))]
    sinks: u32,
    /// Test domains `d0.vsp.volley.test` .. spread over the sinks.
    #[arg(long, value_name = "N", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    domains: u64,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// a: 4 KB x 1 recipient; b: 4 KB x 1,000 recipients (one per domain);
    /// c: 100 KB x 1 recipient.
    #[arg(value_enum)]
    workload: Workload,
    /// Postfix's smtpd (the relay to measure), already running.
    #[arg(long, value_name = "ADDR")]
    postfix: SocketAddr,
    /// Postfix's `master.pid` (in its queue directory's `pid/`), to count the CPU
    /// time of the instance's processes.
    #[arg(long, value_name = "FILE")]
    postfix_pid_file: Option<PathBuf>,
    #[command(flatten)]
    sinks: SinkArgs,
    /// Scratch directory for Volley (config, spool, logs); created if missing.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Transactions per side (default: a 50,000, b 300, c 20,000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    messages: Option<u64>,
    /// Blaster connections, the same for both sides.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    connections: u32,
    /// Inject with DATA instead of BDAT (both MTAs offer CHUNKING).
    #[arg(long)]
    no_chunking: bool,
    /// The `volley` binary to run as `BIN serve --config FILE` (default: the same
    /// code in this binary).
    #[arg(long, value_name = "BIN")]
    volley_bin: Option<PathBuf>,
    /// Seconds each side may take in all.
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    timeout: u64,
    /// Seconds without a new delivery (after injection ended) that fail a side.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    stall: u64,
}

#[derive(clap::Args, Debug)]
struct RoutesArgs {
    #[command(flatten)]
    sinks: SinkArgs,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Cmd::Run(a) => run_both(a),
        Cmd::Routes(a) => {
            let s = a.sinks;
            print!(
                "{}",
                world::transport_table(s.domains, s.sinks, s.sink_base, s.sink_port)
            );
            Ok(())
        }
        Cmd::Volley { config } => {
            volley::cli::serve::run(&config).map_err(|e| anyhow!("{}", e.message))
        }
    }
}

fn run_both(a: RunArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating volley-load")?;
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let s = &a.sinks;
    let load = Load {
        messages: a.messages.unwrap_or(a.workload.default_messages()),
        rcpts_per_msg: a.workload.rcpts_per_msg(),
        size: a.workload.size(),
        domains: s.domains,
        connections: a.connections,
        chunking: !a.no_chunking,
    };
    let limits = Limits {
        timeout: Duration::from_secs(a.timeout),
        stall: Duration::from_secs(a.stall),
    };

    let listen: Vec<SocketAddr> = (0..s.sinks)
        .map(|j| SocketAddr::new(IpAddr::V4(world::sink_ip(s.sink_base, j)), s.sink_port))
        .collect();
    let sink = Sink::start(SinkOptions {
        listen,
        hostname: format!("sink.{}", world::SUFFIX),
        ..SinkOptions::default()
    })
    .context("starting the sinks")?;

    // The DNS server's tasks run on this runtime's worker while the rest of the
    // run blocks this thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // Volley's relay and the DNS server sit on the address just below the sinks.
    let mta_ip = IpAddr::V4(Ipv4Addr::from(u32::from(s.sink_base).saturating_sub(1)));
    let dns = rt
        .block_on(TestDnsServer::start(
            &world::zone_text(s.domains, s.sinks, s.sink_base),
            SocketAddr::new(mta_ip, 0),
        ))
        .context("starting the DNS server")?;

    let relay = free_addr(mta_ip)?;
    let config = a.dir.join("volley.toml");
    std::fs::write(
        &config,
        world::volley_config(&a.dir, relay, dns.addr(), s.sink_port),
    )?;

    eprintln!(
        "vs-postfix {}: {} messages x {} rcpt, {} bytes, over {} domains -> {} sinks {}..{} port {}; \
         blast: {} connections, {}; Volley relay {relay}, Postfix {}",
        a.workload.name(),
        load.messages,
        load.rcpts_per_msg,
        load.size,
        s.domains,
        s.sinks,
        world::sink_ip(s.sink_base, 0),
        world::sink_ip(s.sink_base, s.sinks - 1),
        s.sink_port,
        load.connections,
        if load.chunking { "BDAT" } else { "DATA" },
        a.postfix,
    );

    let volley = VolleyProc::start(
        a.volley_bin.as_deref(),
        &exe,
        &config,
        relay,
        &a.dir.join("volley.log"),
    )?;
    let vpid = volley.pid();
    // For the script's clean-up, should this process be killed mid-run.
    let pid_file = a.dir.join("volley.pid");
    std::fs::write(&pid_file, format!("{vpid}\n"))?;
    eprintln!("vs-postfix: Volley is up (pid {vpid}); injecting");
    let v = phase::measure(
        &exe,
        relay,
        &load,
        &sink,
        &|| cpu::process_seconds(vpid),
        limits,
    )
    .map_err(|e| anyhow!("Volley: {e:#}\n{}", tail(&volley.log_text(), 20)))?;
    // Stopped before Postfix's side so its background work (RocksDB flushes and
    // compactions) does not run during it.
    volley.stop()?;
    let _ = std::fs::remove_file(&pid_file);
    eprintln!("{}", line("volley", &v, &load));

    let master = a.postfix_pid_file.as_deref().and_then(read_pid);
    eprintln!("vs-postfix: injecting into Postfix at {}", a.postfix);
    let p = phase::measure(
        &exe,
        a.postfix,
        &load,
        &sink,
        &|| master.and_then(cpu::tree_seconds),
        limits,
    )
    .map_err(|e| anyhow!("Postfix: {e:#}"))?;
    eprintln!("{}", line("postfix", &p, &load));
    drop(dns);
    let _ = sink.shutdown();

    print!("{}", report(a.workload, &load, &v, &p));
    let expected = load.recipients();
    if v.delivered < expected || p.delivered < expected {
        bail!("not every recipient was delivered");
    }
    Ok(())
}

/// A loopback address with a port nothing listens on a moment ago.
fn free_addr(ip: IpAddr) -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind((ip, 0)).with_context(|| format!("binding {ip}"))?;
    Ok(l.local_addr()?)
}

/// A pid file's number (Postfix right-aligns it).
fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One side's progress line on stderr.
fn line(side: &str, o: &Outcome, load: &Load) -> String {
    format!(
        "vs-postfix: {side}: {} of {} recipients in {:.3} s = {:.0}/s",
        o.delivered,
        load.recipients(),
        o.elapsed.as_secs_f64(),
        o.per_s()
    )
}

/// The table and the key=value lines, `ratio=` last.
fn report(w: Workload, load: &Load, v: &Outcome, p: &Outcome) -> String {
    let unit = if load.rcpts_per_msg > 1 {
        "rcpts"
    } else {
        "msgs"
    };
    let mut out = format!(
        "workload {}: {} messages x {} recipient(s), {} bytes, {} domains; {} connections ({})\n",
        w.name(),
        load.messages,
        load.rcpts_per_msg,
        load.size,
        load.domains,
        load.connections,
        if load.chunking { "BDAT" } else { "DATA" },
    );
    out += &format!(
        "{:<8} {:>13} {:>10} {:>9} {:>11} {:>12} {:>9} {:>12} {:>10} {:>9}\n",
        "side",
        "delivered",
        "sink txns",
        "seconds",
        format!("{unit}/s"),
        "ingest msg/s",
        "ack p99",
        "mta cpu s",
        "box busy",
        "iowait s"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    for (name, o) in [("volley", v), ("postfix", p)] {
        let busy = o.machine_busy_s / (cores * o.elapsed.as_secs_f64()).max(1e-9);
        out += &format!(
            "{:<8} {:>13} {:>10} {:>9.3} {:>11.0} {:>12.0} {:>9} {:>12} {:>9.0}% {:>9.1}\n",
            name,
            format!("{}/{}", o.delivered, load.recipients()),
            o.transactions,
            o.elapsed.as_secs_f64(),
            o.per_s(),
            o.blast["msgs_per_s"].as_f64().unwrap_or(0.0),
            format!("{}ms", o.blast["latency_ms"]["p99"].as_f64().unwrap_or(0.0)),
            o.mta_cpu_s.map_or("-".to_string(), |c| format!("{c:.2}")),
            busy.min(1.0) * 100.0,
            o.machine_iowait_s,
        );
    }
    out += &format!("volley_delivered={}\n", v.delivered);
    out += &format!("postfix_delivered={}\n", p.delivered);
    out += &format!("expected={}\n", load.recipients());
    out += &format!("volley_per_s={:.1}\n", v.per_s());
    out += &format!("postfix_per_s={:.1}\n", p.per_s());
    // MTA CPU per delivered recipient, Postfix's over Volley's: the
    // machine-independent half of the comparison (the box is shared and noisy).
    if let (Some(vc), Some(pc)) = (v.mta_cpu_s, p.mta_cpu_s) {
        let per = |c: f64, o: &Outcome| c * 1e6 / o.delivered.max(1) as f64;
        out += &format!("volley_cpu_us_per_rcpt={:.1}\n", per(vc, v));
        out += &format!("postfix_cpu_us_per_rcpt={:.1}\n", per(pc, p));
        if vc > 0.0 {
            out += &format!("cpu_ratio={:.2}\n", per(pc, p) / per(vc, v));
        }
    }
    out += &format!("ratio={:.2}\n", v.per_s() / p.per_s().max(1e-9));
    out
}
