//! The per-address connection cap of a listener (`serve --max-connections-per-ip`): how many
//! connections one IPv4 address, or one IPv6 /64, holds at once.
//!
//! Pure bookkeeping: a count per address, kept only while that address has a connection, so
//! the table never holds more entries than the listener has connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::net::ip_bucket;

/// The connections each address holds on one listener.
#[derive(Debug)]
pub(crate) struct PerIp {
    cap: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    /// A table that lets each address hold `cap` connections (at least 1).
    pub(crate) fn new(cap: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            cap: cap.max(1),
            held: Mutex::new(HashMap::new()),
        })
    }

    /// The cap of each address.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// A slot for one more connection from `ip`, held until the slot drops; `None` when
    /// `ip`'s address already holds its cap.
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let key = ip_bucket(ip);
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(key).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            table: self.clone(),
            key,
        })
    }

    /// Addresses that hold a connection now.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One connection's place in its address's count; gives it back on drop.
#[derive(Debug)]
pub(crate) struct IpSlot {
    table: Arc<PerIp>,
    key: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut held = self
            .table
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_holds_its_cap_and_gets_a_slot_back_when_one_ends() {
        let table = PerIp::new(2);
        let a = table.take(ip("10.0.0.1")).unwrap();
        let _b = table.take(ip("10.0.0.1")).unwrap();
        assert!(table.take(ip("10.0.0.1")).is_none());
        // Another address is counted on its own.
        let _c = table.take(ip("10.0.0.2")).unwrap();
        drop(a);
        assert!(table.take(ip("10.0.0.1")).is_some());
    }

    #[test]
    fn an_ipv6_host_counts_as_its_slash_64() {
        let table = PerIp::new(1);
        let _a = table.take(ip("2001:db8::1")).unwrap();
        assert!(table.take(ip("2001:db8::ffff:2")).is_none());
        assert!(table.take(ip("2001:db8:0:1::1")).is_some());
    }

    #[test]
    fn the_table_forgets_an_address_with_no_connection() {
        let table = PerIp::new(3);
        let slots: Vec<_> = (0..100)
            .map(|i| table.take(IpAddr::from([10, 0, 0, i])).unwrap())
            .collect();
        assert_eq!(table.addresses(), 100);
        drop(slots);
        assert_eq!(table.addresses(), 0);
    }
}
