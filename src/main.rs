//! The `volley` command line.
//!
//! - `volley serve --config FILE`: runs the transmitter (spool, scheduler, delivery
//!   engine) until SIGINT or SIGTERM, then shuts down gracefully.
//!
//! Exit codes: 0 ok, 1 a runtime failure (spool cannot be opened, ...), 2 bad usage
//! or configuration (the message names the offending key).

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use volley::config::Config;
use volley::delivery::{Engine, StartError};
use volley::queue::SystemClock;
use volley::spool::{RocksSpool, Spool};

/// Volley: a high-throughput bulk SMTP transmitter.
#[derive(Parser, Debug)]
#[command(
    name = "volley",
    version,
    about,
    long_about = "Volley: a high-throughput bulk SMTP transmitter.\n\n\
        `volley serve --config FILE` runs the transmitter. The load-test kit is \
        `volley-load` (sink, blast, demo)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the transmitter until SIGINT/SIGTERM.
    Serve {
        /// The TOML configuration file (see config/volley.toml).
        #[arg(long, value_name = "FILE")]
        config: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout with exit 0; usage errors exit 2.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Some(Command::Serve { config }) => serve(&config),
        None => {
            // Nothing to run: show what there is, as for a usage error.
            let _ = <Cli as clap::CommandFactory>::command().print_help();
            ExitCode::from(2)
        }
    }
}

/// `volley serve`.
fn serve(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("volley: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("volley: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    let spool = match RocksSpool::open(&config.spool.path, config.spool.options()) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("volley: spool.path: {e}");
            return ExitCode::from(1);
        }
    };
    let dyn_spool: Arc<dyn Spool> = spool.clone();
    let engine = match Engine::start(&config, dyn_spool, Arc::new(SystemClock)).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("volley: {e}");
            let code = match e {
                StartError::Router(_) | StartError::Tls(_) => 2,
                StartError::Recover(_) | StartError::Log { .. } | StartError::Thread(_) => 1,
            };
            return ExitCode::from(code);
        }
    };
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("volley: cannot catch SIGINT/SIGTERM: {e}");
            engine.shutdown().await;
            return ExitCode::from(1);
        }
    };
    let s = engine.stats();
    eprintln!(
        "volley: ready: spool {} ({} messages, {} recipients queued), smtp port {}",
        config.spool.path.display(),
        s.recovered,
        s.queued,
        config.delivery.smtp_port
    );
    let signal = signals.wait().await;
    eprintln!("volley: {signal}: shutting down");
    let s = engine.shutdown().await;
    spool.close();
    if let Err(e) = spool.sync_wal() {
        eprintln!("volley: syncing the spool at shutdown: {e}");
    }
    eprintln!(
        "volley: stopped: {} delivered, {} deferred, {} bounced, {} expired; {} recipients queued",
        s.delivered, s.deferred, s.bounced, s.expired, s.queued
    );
    ExitCode::SUCCESS
}

/// SIGINT and SIGTERM, caught from the moment this is made (before "ready" is
/// printed, so a supervisor's early signal is not fatal).
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for either; returns its name.
    async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}
