//! [`Durable`]: the answer to a store, ready once the data is synced.
//!
//! The spool's writer (a group-commit thread in the RocksDB implementation) holds the
//! [`Completer`]; the injecting task holds the [`Durable`] and either awaits it (it
//! is a `Future`) or blocks on [`Durable::wait`]. No runtime dependency: a mutex, a
//! condvar and a waker.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};

use super::SpoolError;

/// Resolves to `Ok(())` once the stored message is durable, or to why it is not.
#[derive(Debug)]
#[must_use = "a store is only acknowledged once its Durable resolves"]
pub struct Durable {
    /// Shared with the completer.
    shared: Arc<Shared>,
}

/// The writer's end: completes the paired [`Durable`] exactly once. Dropped without
/// completing (the writer died or shut down), it resolves to [`SpoolError::Closed`].
#[derive(Debug)]
pub struct Completer {
    /// Shared with the ticket; `None` once completed.
    shared: Option<Arc<Shared>>,
}

#[derive(Debug, Default)]
struct Shared {
    /// The outcome once known, and the waker of the task awaiting it.
    state: Mutex<State>,
    /// Wakes a thread blocked in [`Durable::wait`].
    cond: Condvar,
}

#[derive(Debug, Default)]
struct State {
    result: Option<Result<(), SpoolError>>,
    waker: Option<Waker>,
}

/// A new ticket and the completer that resolves it.
pub fn durable_pair() -> (Completer, Durable) {
    let shared = Arc::new(Shared::default());
    (
        Completer {
            shared: Some(shared.clone()),
        },
        Durable { shared },
    )
}

impl Durable {
    /// A ticket that is already resolved (e.g. refused at once for backpressure, or
    /// an in-memory spool that has nothing to sync).
    pub fn ready(result: Result<(), SpoolError>) -> Durable {
        let (c, d) = durable_pair();
        c.complete(result);
        d
    }

    /// Blocks the calling thread until resolved (for sync callers and
    /// `spawn_blocking`).
    pub fn wait(self) -> Result<(), SpoolError> {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = st.result.take() {
                return r;
            }
            st = self.shared.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Future for Durable {
    type Output = Result<(), SpoolError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        match st.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Completer {
    /// Resolves the ticket.
    pub fn complete(mut self, result: Result<(), SpoolError>) {
        if let Some(shared) = self.shared.take() {
            Self::resolve(&shared, result);
        }
    }

    fn resolve(shared: &Shared, result: Result<(), SpoolError>) {
        let waker = {
            let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.result = Some(result);
            st.waker.take()
        };
        shared.cond.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            Self::resolve(&shared, Err(SpoolError::Closed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn wait_returns_what_another_thread_completes() {
        let (c, d) = durable_pair();
        let t = std::thread::spawn(move || c.complete(Err(SpoolError::Busy)));
        assert!(matches!(d.wait(), Err(SpoolError::Busy)));
        t.join().unwrap();
        assert!(Durable::ready(Ok(())).wait().is_ok());
    }

    #[test]
    fn future_wakes_on_completion_and_drop_means_closed() {
        let flag = Arc::new(Flag(Default::default()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let (c, mut d) = durable_pair();
        assert!(Pin::new(&mut d).poll(&mut cx).is_pending());
        drop(c);
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        assert!(matches!(
            Pin::new(&mut d).poll(&mut cx),
            Poll::Ready(Err(SpoolError::Closed))
        ));
    }
}
