//! The HTTP API's accept loop: hyper's HTTP/1 connections around the axum router,
//! with what `axum::serve` does not offer — a cap on open connections and a
//! deadline for each request head (a client dribbling header bytes, slowloris,
//! is cut off instead of holding a connection for ever).

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};

/// Answer to a connection over the cap: a complete response, then close, so the
/// client sees why instead of a reset.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 64\r\n\r\n\
{\"code\":\"too_many_connections\",\"message\":\"try again shortly\"}\n";

/// How long the busy answer may take before the connection is just dropped.
const BUSY_WRITE: Duration = Duration::from_secs(1);

/// Limits of the accept loop (from `[http]`).
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// `http.max_connections`.
    pub max_connections: usize,
    /// `http.header_timeout`.
    pub header_timeout: Duration,
    /// Longest wait for open requests at shutdown.
    pub grace: Duration,
}

/// Serves `app` on `listener` until `stop` fires, then lets open requests finish
/// (up to `limits.grace`).
pub async fn run(
    listener: TcpListener,
    app: axum::Router,
    limits: ServeLimits,
    mut stop: oneshot::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("http: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(BUSY_WRITE, stream.write_all(BUSY)).await;
            });
            continue;
        };
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Errors here are the client's (reset, timeout, bad request line):
            // hyper has answered what could be answered.
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(limits.grace, graceful.shutdown()).await;
}
