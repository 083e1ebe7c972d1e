//! The proxy directory: which proxies run a mesh listener and where (`docs/format/wire.md`
//! §4.5, "Proxy directory"). Soft state: kept in memory with a time-to-live and never written
//! to the master's log, since proxies renew every few seconds and re-register after a master
//! restart. Pure: time is a parameter.

use std::collections::HashMap;

use net::message::{
    PROXIES_MAX, PROXY_ADDR_MAX_BYTES, PROXY_TTL_MAX_MS, PROXY_TTL_MIN_MS, ProxyPeer, ProxyPeers,
    ProxyRegister,
};
use net::{ProxyId, RpcError};

#[derive(Debug, Clone)]
struct Entry {
    addr: String,
    expires_ms: u64,
}

/// The live proxy registrations.
#[derive(Debug, Default)]
pub struct ProxyDirectory {
    entries: HashMap<ProxyId, Entry>,
    /// Registrations forgotten because their TTL passed.
    expired_total: u64,
}

fn bad(message: impl Into<String>) -> RpcError {
    RpcError::BadRequest {
        message: message.into(),
    }
}

impl ProxyDirectory {
    /// Registers or renews `r` at `now_ms`; the TTL granted and every other live proxy.
    pub fn register(&mut self, r: ProxyRegister, now_ms: u64) -> Result<ProxyPeers, RpcError> {
        if r.proxy_id == ProxyId(0) {
            return Err(bad("proxy id 0 is reserved"));
        }
        if r.peer_addr.is_empty() || r.peer_addr.len() > PROXY_ADDR_MAX_BYTES {
            return Err(bad(format!(
                "proxy mesh address must be 1..={PROXY_ADDR_MAX_BYTES} bytes"
            )));
        }
        self.expire(now_ms);
        if !self.entries.contains_key(&r.proxy_id) && self.entries.len() >= PROXIES_MAX {
            return Err(bad(format!("the directory holds {PROXIES_MAX} proxies")));
        }
        let ttl_ms = r.ttl_ms.clamp(PROXY_TTL_MIN_MS, PROXY_TTL_MAX_MS);
        let entry = Entry {
            addr: r.peer_addr,
            expires_ms: now_ms.saturating_add(u64::from(ttl_ms)),
        };
        self.entries.insert(r.proxy_id, entry);
        let mut peers: Vec<ProxyPeer> = self
            .entries
            .iter()
            .filter(|(id, _)| **id != r.proxy_id)
            .map(|(id, e)| ProxyPeer {
                proxy_id: *id,
                peer_addr: e.addr.clone(),
            })
            .collect();
        peers.sort_by_key(|p| p.proxy_id);
        Ok(ProxyPeers { ttl_ms, peers })
    }

    /// Forgets the registrations whose TTL passed by `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.expires_ms > now_ms);
        self.expired_total += (before - self.entries.len()) as u64;
    }

    /// Proxies registered and not expired at `now_ms`.
    pub fn live(&self, now_ms: u64) -> usize {
        self.entries
            .values()
            .filter(|e| e.expires_ms > now_ms)
            .count()
    }

    /// Registrations forgotten because their TTL passed (`/metrics`).
    pub fn expired_total(&self) -> u64 {
        self.expired_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: u64, addr: &str, ttl_ms: u32) -> ProxyRegister {
        ProxyRegister {
            proxy_id: ProxyId(id),
            peer_addr: addr.into(),
            ttl_ms,
        }
    }

    fn ids(p: &ProxyPeers) -> Vec<u64> {
        p.peers.iter().map(|p| p.proxy_id.0).collect()
    }

    #[test]
    fn a_proxy_sees_the_others_until_their_ttl_passes_without_renewal() {
        let mut d = ProxyDirectory::default();
        assert!(ids(&d.register(reg(1, "a:1", 2_000), 0).unwrap()).is_empty());
        let p = d.register(reg(2, "b:1", 5_000), 100).unwrap();
        assert_eq!(ids(&p), vec![1]);
        assert_eq!(p.peers[0].peer_addr, "a:1");
        assert_eq!(d.live(1_999), 2);
        // Proxy 1 did not renew: at 2,000 ms it is gone; proxy 2 sees nobody.
        assert!(ids(&d.register(reg(2, "b:1", 5_000), 2_000).unwrap()).is_empty());
        assert_eq!((d.live(2_000), d.expired_total()), (1, 1));
        // Renewing keeps an entry alive past its first TTL.
        d.register(reg(1, "a:2", 2_000), 2_500).unwrap();
        let p = d.register(reg(2, "b:1", 5_000), 4_000).unwrap();
        assert_eq!((ids(&p), p.peers[0].peer_addr.as_str()), (vec![1], "a:2"));
    }

    #[test]
    fn the_ttl_is_clamped_and_bad_registrations_are_refused() {
        let mut d = ProxyDirectory::default();
        assert_eq!(
            d.register(reg(1, "a:1", 1), 0).unwrap().ttl_ms,
            PROXY_TTL_MIN_MS
        );
        assert_eq!(
            d.register(reg(1, "a:1", u32::MAX), 0).unwrap().ttl_ms,
            PROXY_TTL_MAX_MS
        );
        assert!(d.register(reg(0, "a:1", 5_000), 0).is_err());
        assert!(d.register(reg(2, "", 5_000), 0).is_err());
        let long = "x".repeat(PROXY_ADDR_MAX_BYTES + 1);
        assert!(d.register(reg(2, &long, 5_000), 0).is_err());
        assert_eq!(d.live(0), 1);
    }

    #[test]
    fn the_directory_is_bounded() {
        let mut d = ProxyDirectory::default();
        for id in 1..=PROXIES_MAX as u64 {
            d.register(reg(id, "a:1", 60_000), 0).unwrap();
        }
        assert!(
            d.register(reg(PROXIES_MAX as u64 + 1, "a:1", 60_000), 0)
                .is_err()
        );
        // A known proxy still renews.
        assert!(d.register(reg(1, "a:1", 60_000), 0).is_ok());
    }
}
