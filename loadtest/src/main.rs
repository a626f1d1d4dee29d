//! `volley-load`: Volley's load-testing kit.
//!
//! - `sink`: an ESMTP server (`volley::sink`) that accepts and discards as fast as the machine
//!   allows, with fault injection and an optional record of what arrived.
//! - `blast`: an open-loop SMTP load generator with HDR latency percentiles.
//! - `wire-limit`: both together on loopback, printing the wire-limit table.
//! - `spool-bench`: durable store throughput and recovery time of the spool.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use volley::sink;

mod blast;
mod spool_bench;
mod wire_limit;

/// Volley's load-testing kit: a fast SMTP sink and an open-loop blaster.
#[derive(Parser, Debug)]
#[command(name = "volley-load", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an ESMTP sink that accepts and discards mail (with fault injection).
    Sink(sink::cli::Args),
    /// Send SMTP load at a target (open loop, HDR latency percentiles).
    Blast(blast::Args),
    /// Start a sink, blast standard workloads at it, print the wire-limit table.
    WireLimit(wire_limit::Args),
    /// Measure the spool: durable store throughput and latency, recovery time.
    SpoolBench(spool_bench::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Sink(args) => sink::cli::run(args),
        Command::Blast(args) => blast::run(args),
        Command::WireLimit(args) => wire_limit::run(args),
        Command::SpoolBench(args) => spool_bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("volley-load: {e:#}");
            ExitCode::from(1)
        }
    }
}
