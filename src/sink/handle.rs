//! [`Sink`]: a sink running in this process, on a thread of its own (its own tokio
//! runtime, so it neither needs nor disturbs the caller's), for the demo and tests.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use super::options::SinkOptions;
use super::record::Recorder;
use super::server::{self, Shared};
use super::stats::Summary;
use super::SinkError;

/// Live totals of a running sink (accepted messages only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct SinkStats {
    /// Messages accepted (2xx at end of data).
    pub messages: u64,
    /// Accepted recipients of accepted messages.
    pub recipients: u64,
    /// Content bytes of accepted messages.
    pub bytes: u64,
    /// Connections accepted since start.
    pub connections: u64,
}

/// A running sink. Dropping it stops it without waiting; [`Sink::shutdown`] waits
/// and returns the exact totals.
pub struct Sink {
    /// The bound addresses, in the order of `SinkOptions::listen`.
    addrs: Vec<SocketAddr>,
    /// Counters and the flush request.
    shared: Arc<Shared>,
    /// Completes the server's shutdown future.
    stop: Option<oneshot::Sender<()>>,
    /// The sink's runtime thread; returns the final summary.
    thread: Option<JoinHandle<Summary>>,
}

impl Sink {
    /// Binds every `opts.listen` address and starts serving. Errors name what
    /// failed (the address that could not be bound, the record file, TLS).
    /// Callable from inside or outside a tokio runtime.
    pub fn start(opts: SinkOptions) -> Result<Sink, SinkError> {
        let cfg = Arc::new(server::Config::from_options(&opts)?);
        let recorder = opts.record.as_deref().map(Recorder::create).transpose()?;
        let shared = Arc::new(Shared::new(recorder));
        let rt = if opts.threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(opts.threads)
                .enable_all()
                .build()
        }
        .map_err(SinkError::Runtime)?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let listen = opts.listen.clone();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("volley-sink".into())
            .spawn(move || {
                rt.block_on(async move {
                    let mut listeners = Vec::with_capacity(listen.len());
                    for addr in listen {
                        match server::bind(addr) {
                            Ok(l) => listeners.push(l),
                            Err(source) => {
                                let _ = ready_tx.send(Err(SinkError::Bind { addr, source }));
                                return thread_shared.stats.summary(Duration::ZERO);
                            }
                        }
                    }
                    let addrs = listeners.iter().filter_map(|l| l.local_addr().ok());
                    let _ = ready_tx.send(Ok(addrs.collect::<Vec<_>>()));
                    server::serve(cfg, thread_shared, listeners, async {
                        let _ = stopped.await;
                    })
                    .await
                })
            })
            .map_err(SinkError::Runtime)?;
        let addrs = match ready_rx.recv() {
            Ok(r) => r?,
            Err(_) => {
                let _ = thread.join();
                return Err(SinkError::Runtime(std::io::Error::other(
                    "the sink thread ended before listening",
                )));
            }
        };
        Ok(Sink {
            addrs,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The bound addresses (with the ports picked for port 0), in `listen` order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The totals so far. A busy connection adds its counts every 100 ms, an idle
    /// one when asked by this call; so a count may trail by a moment: poll.
    pub fn stats(&self) -> SinkStats {
        self.shared.flush.notify_waiters();
        let s = &self.shared.stats;
        SinkStats {
            messages: s.messages.load(Relaxed),
            recipients: s.recipients.load(Relaxed),
            bytes: s.bytes.load(Relaxed),
            connections: s.connections.load(Relaxed),
        }
    }

    /// Stops accepting, closes every connection with `421` (waiting up to 2 s for
    /// them), and returns the exact totals. Blocks the calling thread that long.
    pub fn shutdown(mut self) -> Summary {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let summary = self.thread.take().and_then(|t| t.join().ok());
        summary.unwrap_or_else(|| self.shared.stats.summary(Duration::ZERO))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Stop without joining: a drop inside an async task must not block.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
