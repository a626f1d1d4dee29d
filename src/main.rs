//! The `volley` command line. Subcommands arrive with the parts they run: `serve`
//! with the delivery engine, `demo` and `send` with ingest. Until then the load-test
//! kit is `volley-load` (see README.md).

use std::process::ExitCode;

use clap::Parser;

/// Volley: a high-throughput bulk SMTP transmitter.
#[derive(Parser, Debug)]
#[command(
    name = "volley",
    version,
    about,
    long_about = "Volley: a high-throughput bulk SMTP transmitter.\n\n\
        The transmitter's subcommands (serve, demo, send) are being built; the \
        load-test kit is available now as `volley-load` (sink, blast, demo)."
)]
struct Cli {}

fn main() -> ExitCode {
    match Cli::try_parse() {
        Ok(Cli {}) => {
            // Nothing to run yet: show what there is, as for a usage error.
            let _ = <Cli as clap::CommandFactory>::command().print_help();
            ExitCode::from(2)
        }
        Err(e) => {
            // clap prints help/version to stdout with exit 0; usage errors exit 2.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            ExitCode::from(code)
        }
    }
}
