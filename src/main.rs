//! The `volley` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Volley: a high-throughput bulk SMTP transmitter.
#[derive(Parser, Debug)]
#[command(name = "volley", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the transmitter with a configuration file.
    Serve {
        /// Path to the TOML configuration.
        #[arg(long, short)]
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
        Command::Serve { config } => {
            eprintln!(
                "volley serve: the transmitter is not built yet (config {}); \
                 see the load-test kit `volley-load` in the meantime",
                config.display()
            );
            ExitCode::from(2)
        }
    }
}
