//! [`ConnectionLimiter`]: how many connections a site may have open, and how fast
//! new ones may be opened. Waiting is a semaphore acquire and a timed sleep, never a
//! poll loop; the limit can shrink and grow while connections are open (adaptive
//! slow-down), with permits of a shrunk limiter retired as their connections close.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::clock::Clock;
use super::{Gcra, Rate};

/// Caps the connections of one site. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// One permit per connection that may be open.
    semaphore: Arc<Semaphore>,
    /// The capacity target and the permits still to retire.
    capacity: Mutex<Capacity>,
    /// Spacing of new connections (`connections_per_minute`), if limited.
    rate: Option<Mutex<Gcra>>,
    /// Time for `rate`.
    clock: Arc<dyn Clock>,
}

#[derive(Debug)]
struct Capacity {
    /// The connection limit now in force.
    target: usize,
    /// Permits in use beyond `target` (after a shrink): retired when returned.
    debt: usize,
}

/// Why [`ConnectionLimiter::try_acquire`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every connection the site may have is open.
    AtCapacity,
    /// The connection rate allows the next one after this long.
    RateLimited(Duration),
}

/// The right to hold one connection open; returned to the limiter on drop.
#[derive(Debug)]
pub struct ConnectionPermit {
    permit: Option<OwnedSemaphorePermit>,
    inner: Arc<Inner>,
}

impl ConnectionLimiter {
    /// At most `max` concurrent connections (at least 1), opened at most
    /// `per_minute` a minute (evenly spaced) if set.
    pub fn new(max: u32, per_minute: Option<u32>, clock: Arc<dyn Clock>) -> ConnectionLimiter {
        let max = (max as usize).max(1);
        ConnectionLimiter {
            inner: Arc::new(Inner {
                semaphore: Arc::new(Semaphore::new(max)),
                capacity: Mutex::new(Capacity {
                    target: max,
                    debt: 0,
                }),
                rate: per_minute.map(|n| Mutex::new(Gcra::new(Rate::per_minute(n), 1))),
                clock,
            }),
        }
    }

    /// Waits for a free connection slot, then for the connection rate.
    pub async fn acquire(&self) -> ConnectionPermit {
        let permit = self
            .inner
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("the limiter never closes its semaphore");
        let permit = ConnectionPermit {
            permit: Some(permit),
            inner: self.inner.clone(),
        };
        while let Err(wait) = self.take_rate() {
            tokio::time::sleep(wait).await;
        }
        permit
    }

    /// A permit now, or why not (for a pool that would rather serve another site
    /// than wait).
    pub fn try_acquire(&self) -> Result<ConnectionPermit, Refused> {
        let permit = self
            .inner
            .semaphore
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::AtCapacity)?;
        let permit = ConnectionPermit {
            permit: Some(permit),
            inner: self.inner.clone(),
        };
        self.take_rate().map_err(Refused::RateLimited)?;
        Ok(permit)
    }

    fn take_rate(&self) -> Result<(), Duration> {
        match &self.inner.rate {
            Some(rate) => {
                let now = self.inner.clock.now_nanos();
                rate.lock().expect("gcra lock").try_acquire(now)
            }
            None => Ok(()),
        }
    }

    /// The connection limit in force.
    pub fn max(&self) -> usize {
        self.inner.capacity.lock().expect("capacity lock").target
    }

    /// Connections open (permits held).
    pub fn in_use(&self) -> usize {
        let cap = self.inner.capacity.lock().expect("capacity lock");
        (cap.target + cap.debt).saturating_sub(self.inner.semaphore.available_permits())
    }

    /// Changes the limit (at least 1). Shrinking below the connections now open
    /// retires permits as those connections close; nothing is interrupted.
    pub fn set_max(&self, max: usize) {
        let max = max.max(1);
        let mut cap = self.inner.capacity.lock().expect("capacity lock");
        if max < cap.target {
            let shrink = cap.target - max;
            let forgotten = self.inner.semaphore.forget_permits(shrink);
            cap.debt += shrink - forgotten;
        } else if max > cap.target {
            let grow = max - cap.target;
            let cancelled = grow.min(cap.debt);
            cap.debt -= cancelled;
            self.inner.semaphore.add_permits(grow - cancelled);
        }
        cap.target = max;
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let mut cap = self.inner.capacity.lock().expect("capacity lock");
        if cap.debt > 0 {
            cap.debt -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
    }
}
