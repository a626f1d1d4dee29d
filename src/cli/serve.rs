//! `volley serve --config FILE`: the transmitter ([`Server`]) until SIGINT or
//! SIGTERM, then a graceful shutdown.

use std::path::Path;

use super::CliError;
use crate::config::Config;
use crate::server::{Server, ServerHandle};

/// Loads the configuration, runs until a signal, shuts down.
pub fn run(path: &Path) -> Result<(), CliError> {
    let config =
        Config::load(path).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
    super::runtime()?.block_on(serve(config))
}

async fn serve(config: Config) -> Result<(), CliError> {
    // Caught before start, so a supervisor's early signal is not fatal.
    let mut signals = Signals::install()
        .map_err(|e| CliError::runtime(format!("cannot catch SIGINT/SIGTERM: {e}")))?;
    let spool_path = config.spool.path.clone();
    let server = Server::start(config).await.map_err(|e| CliError {
        code: e.exit_code(),
        message: e.to_string(),
    })?;
    eprintln!("volley: ready: {}", ready_line(&server, &spool_path));
    let signal = signals.wait().await;
    eprintln!("volley: {signal}: shutting down");
    let s = server.shutdown().await;
    eprintln!(
        "volley: stopped: {} delivered, {} deferred, {} bounced, {} expired; {} recipients queued",
        s.delivered, s.deferred, s.bounced, s.expired, s.queued
    );
    Ok(())
}

/// `http http://127.0.0.1:8025, submission 0.0.0.0:587, relay ..., spool DIR (N
/// messages, M recipients queued)`.
pub fn ready_line(server: &ServerHandle, spool: &Path) -> String {
    let mut line = format!("http http://{}", server.http_addr());
    if let Some(a) = server.submission_addr() {
        line.push_str(&format!(", submission smtp://{a}"));
    }
    if let Some(a) = server.relay_addr() {
        line.push_str(&format!(", relay smtp://{a}"));
    }
    let s = server.engine().stats();
    line.push_str(&format!(
        ", spool {} ({} messages, {} recipients queued)",
        spool.display(),
        s.recovered,
        s.queued
    ));
    line
}

/// SIGINT and SIGTERM, caught from the moment this is made.
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs both handlers.
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for either; returns its name.
    pub async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}
