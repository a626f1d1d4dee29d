//! `volley-load sink`: the command line ([`Args`]) and [`run`], which serves until
//! SIGINT/SIGTERM and then prints the JSON summary on stdout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::faults::{LatencySpec, Percent};
use super::options::SinkOptions;
use super::{record, server};

const MAGIC_HELP: &str = "\
Magic recipients (the local part decides; any domain):
  NNN@...              that RCPT gets 4xx/5xx code NNN with a fitting enhanced status
                       (452 -> 4.5.3, 450 -> 4.2.0, 451 -> 4.3.0, 550 -> 5.1.1,
                       551 -> 5.1.6, 552 -> 5.2.2, 553 -> 5.1.3, 554 -> 5.7.1);
                       421@ also closes the connection
  421-disconnect@...   421 4.4.2 at RCPT, then close
  disconnect-rcpt@...  drop the connection at that RCPT, no reply
  delay-MS@...         that RCPT's reply comes MS milliseconds late
  data-NNN@...         accepted; the end-of-data reply is NNN (2xx/4xx/5xx)
  data-delay-MS@...    accepted; the end-of-data reply comes MS milliseconds late
  disconnect-data@...  accepted; drop the connection after the body, no reply
  tempfail-once-TAG@...
                       451 4.3.0 the first time this address is seen, 250 after

Counters go to stderr once a second (unless --quiet). On SIGINT/SIGTERM one JSON
object goes to stdout: {\"messages\", \"recipients\", \"bytes\", \"connections\",
\"elapsed_s\", \"replies\": {\"250\": n, ...}}; messages/recipients/bytes count
accepted messages only. --record writes one JSON line per accepted message:
{\"mail_from\", \"rcpts\", \"size\", \"sha256\", \"tls\", \"helo\", \"peer\", \"listen\", \"ts\"}.";

/// Command-line arguments.
#[derive(clap::Args, Debug)]
#[command(after_long_help = MAGIC_HELP)]
pub struct Args {
    /// Address to listen on (repeatable), e.g. 127.0.0.2:2525.
    #[arg(long, required = true, value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,
    /// Name in the banner and the EHLO reply (and the TLS certificate).
    #[arg(long, default_value = "sink.volley.test", value_name = "NAME")]
    pub hostname: String,
    /// Tokio worker threads; 1 runs a single-threaded runtime (the fastest when the
    /// sink shares two cores with a client).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub threads: usize,
    /// SIZE limit in bytes, advertised and enforced (552 5.3.4).
    #[arg(long, default_value_t = 50 * 1024 * 1024, value_name = "BYTES")]
    pub max_size: u64,
    /// Recipients per transaction before 452 4.5.3.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub max_rcpts: u32,
    /// Open connections at most (more wait in the listen backlog).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_conns: usize,
    /// Seconds a connection may stay silent before 421 and close.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub idle_timeout: u64,
    /// Offer STARTTLS with a self-signed certificate made at start.
    #[arg(long)]
    pub tls: bool,
    /// Write one JSON line per accepted message to FILE.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// No counters on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Delay a reply: CMD=MS, CMD one of banner, ehlo, mail, rcpt, data, bdat, dot
    /// (end of message), rset, quit. Repeatable.
    #[arg(long, value_name = "CMD=MS")]
    pub latency: Vec<LatencySpec>,
    /// Percent of RCPTs answered 451 4.3.0.
    #[arg(long, default_value = "0", value_name = "PCT")]
    pub rcpt_tempfail: Percent,
    /// Percent of RCPTs answered 550 5.1.1.
    #[arg(long, default_value = "0", value_name = "PCT")]
    pub rcpt_permfail: Percent,
    /// Percent of messages answered 451 4.3.0 at end of data.
    #[arg(long, default_value = "0", value_name = "PCT")]
    pub data_tempfail: Percent,
    /// Percent of messages answered 554 5.3.0 at end of data.
    #[arg(long, default_value = "0", value_name = "PCT")]
    pub data_permfail: Percent,
    /// Percent of transactions whose connection is dropped, without a reply, after
    /// the body has arrived.
    #[arg(long, default_value = "0", value_name = "PCT")]
    pub disconnect: Percent,
    /// Seed for the fault rolls (each connection draws its own stream from it).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl Args {
    /// The same settings as [`SinkOptions`].
    pub fn to_options(&self) -> SinkOptions {
        SinkOptions {
            listen: self.listen.clone(),
            hostname: self.hostname.clone(),
            threads: self.threads,
            max_size: self.max_size,
            max_rcpts: self.max_rcpts,
            max_conns: self.max_conns,
            idle_timeout: Duration::from_secs(self.idle_timeout),
            tls: self.tls,
            record: self.record.clone(),
            quiet: self.quiet,
            latency: self.latency.clone(),
            rcpt_tempfail: self.rcpt_tempfail,
            rcpt_permfail: self.rcpt_permfail,
            data_tempfail: self.data_tempfail,
            data_permfail: self.data_permfail,
            disconnect: self.disconnect,
            seed: self.seed,
        }
    }
}

/// Runs the sink until SIGINT or SIGTERM, then prints the JSON summary.
pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = args.to_options();
    let rt = if opts.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(async {
        let shutdown = shutdown_signal()?;
        let cfg = Arc::new(server::Config::from_options(&opts)?);
        let recorder = opts
            .record
            .as_deref()
            .map(record::Recorder::create)
            .transpose()?;
        let shared = Arc::new(server::Shared::new(recorder));
        let mut listeners = Vec::new();
        for addr in &opts.listen {
            listeners.push(server::bind(*addr).with_context(|| format!("listening on {addr}"))?);
        }
        for l in &listeners {
            eprintln!("listening on {}", l.local_addr()?);
        }
        let summary = server::serve(cfg, shared, listeners, shutdown).await;
        println!("{}", serde_json::to_string(&summary)?);
        Ok(())
    })
}

/// Completes on the first SIGINT or SIGTERM (handlers installed before it returns).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
