//! Connection counting per listener: `max_connections` in all and
//! `max_connections_per_ip` per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::smtp::server::replies;

/// Open connections of one listener.
#[derive(Debug)]
pub struct ConnectionLimits {
    /// `smtp.max_connections`.
    max_total: usize,
    /// `smtp.max_connections_per_ip`.
    max_per_ip: usize,
    /// Open connections: in all, and per address (entries removed at zero).
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection; releases its slot when dropped.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_total,
            max_per_ip,
            open: Mutex::new(Open::default()),
        }
    }

    /// Admits a connection from `ip`, or returns the 421 to send it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static [u8]> {
        let ip = canonical(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.max_total {
            return Err(replies::TOO_MANY_CONNECTIONS);
        }
        let n = open.per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(replies::TOO_MANY_CONNECTIONS_FROM_IP);
        }
        *n += 1;
        open.total += 1;
        Ok(Slot {
            limits: Arc::clone(self),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_total() {
        let l = Arc::new(ConnectionLimits::new(3, 2));
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "::ffff:127.0.0.3".parse().unwrap();
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert_eq!(
            l.admit(a).unwrap_err(),
            replies::TOO_MANY_CONNECTIONS_FROM_IP
        );
        let _b1 = l.admit(b).unwrap();
        assert_eq!(
            l.admit("127.0.0.3".parse().unwrap()).unwrap_err(),
            replies::TOO_MANY_CONNECTIONS
        );
        drop(a1);
        assert_eq!(l.open(), 2);
        let _a3 = l.admit(a).unwrap();
        assert_eq!(l.open(), 3);
    }
}
