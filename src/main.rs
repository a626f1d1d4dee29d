//! The `volley` command line; each subcommand lives in `volley::cli`.
//!
//! - `volley serve --config FILE`: the transmitter until SIGINT/SIGTERM.
//! - `volley send ...`: a campaign from files to a running server over HTTP.
//! - `volley demo`: everything on loopback, no set-up; prints what it sent and how fast.
//! - `volley hash-token` / `volley hash-password`: credentials for the config file.
//!
//! Exit codes: 0 ok, 1 a runtime failure (spool cannot be opened, server down, ...),
//! 2 bad usage, configuration or input (the message names the key, flag or file).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use volley::cli;

/// Volley: a high-throughput bulk SMTP transmitter.
#[derive(Parser, Debug)]
#[command(
    name = "volley",
    version,
    about,
    long_about = "Volley: a high-throughput bulk SMTP transmitter.\n\n\
        `volley demo` shows it working with no set-up. `volley serve --config FILE` \
        runs the transmitter; `volley send` submits a campaign to it. The load-test \
        kit is `volley-load` (sink, blast, wire-limit, spool-bench)."
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
    /// Submit a campaign (recipient list + template) to a running server over HTTP.
    Send(Box<cli::send::Args>),
    /// Run everything on loopback (server, DNS zone, sinks), inject a campaign over
    /// HTTP, deliver it, and print the figures.
    Demo(cli::demo::Args),
    /// Print a new random API token and the SHA-256 hash for `[[tenant]] api_tokens`.
    HashToken,
    /// Read a password from stdin; print its argon2id hash for `smtp.submission.users`.
    HashPassword,
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
    let result = match cli.command {
        Some(Command::Serve { config }) => cli::serve::run(&config),
        Some(Command::Send(args)) => cli::send::run(*args),
        Some(Command::Demo(args)) => cli::demo::run(args),
        Some(Command::HashToken) => cli::hash::hash_token(),
        Some(Command::HashPassword) => cli::hash::hash_password(),
        None => {
            // Nothing to run: show what there is, as for a usage error.
            let _ = <Cli as clap::CommandFactory>::command().print_help();
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("volley: {e}");
            ExitCode::from(e.code)
        }
    }
}
