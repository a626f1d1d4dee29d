//! The `volley` command line's subcommands (the binary's `main.rs` only parses and
//! dispatches):
//!
//! - [`serve`]: `volley serve --config FILE`, the transmitter until SIGINT/SIGTERM.
//! - [`send`]: `volley send`, a campaign from files to a running server over HTTP.
//! - [`demo`]: `volley demo`, everything on loopback with no set-up.
//! - [`hash`]: `volley hash-token` and `volley hash-password`, credentials for the
//!   configuration file.
//!
//! Every subcommand returns a [`CliError`] that knows its exit code: 0 ok, 1 a
//! runtime failure, 2 bad usage or configuration (the message names the key, flag
//! or file).

pub mod demo;
pub mod hash;
pub mod send;
pub mod serve;

use std::fmt;

/// A failed subcommand: what to print and the exit code.
#[derive(Debug)]
pub struct CliError {
    /// 1 (runtime) or 2 (usage, configuration, input files).
    pub code: u8,
    /// One or more lines for stderr, without the `volley: ` prefix.
    pub message: String,
}

impl CliError {
    /// Bad usage, configuration or input: exit code 2.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: 2,
            message: message.into(),
        }
    }

    /// Something failed at run time: exit code 1.
    pub fn runtime(message: impl Into<String>) -> CliError {
        CliError {
            code: 1,
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// A multi-threaded tokio runtime for a subcommand.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::runtime(format!("cannot start the async runtime: {e}")))
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
