//! `volley-load`: Volley's load-testing kit.
//!
//! - `sink`: an ESMTP server (`volley::sink`) that accepts and discards as fast as the machine
//!   allows, with fault injection and an optional record of what arrived.
//! - `blast`: an open-loop SMTP load generator with HDR latency percentiles.
//! - `wire-limit`: both together on loopback, printing the wire-limit table.
//! - `spool-bench`: durable store throughput and recovery time of the spool.
//! - `scenario a|b|c|d`: Volley end to end on loopback (HTTP inject, durable spool,
//!   DNS, sinks), measured against the wire limit in the same run.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use volley::sink;

mod blast;
mod scenario;
mod spool_bench;
mod vs_postfix;
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
    /// Volley vs a private Postfix relay on one workload (see loadtest/vs-postfix.sh).
    VsPostfix(vs_postfix::Args),
    /// Run a load scenario end to end: Volley, its durable spool, DNS and sinks on
    /// loopback; delivered rate, latencies, CPU and memory, and the wire limit.
    Scenario(scenario::Args),
    /// Volley in this process from a config file, counters on stdout, stopped by
    /// closing stdin (the `scenario` command's child).
    #[command(hide = true)]
    ScenarioVolley(scenario::volley_proc::ChildArgs),
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
        Command::VsPostfix(args) => vs_postfix::run(args),
        Command::Scenario(args) => scenario::run(args),
        Command::ScenarioVolley(args) => scenario::volley_proc::run_child(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("volley-load: {e:#}");
            ExitCode::from(1)
        }
    }
}
