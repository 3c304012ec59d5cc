//! Listeners, per-peer-network configuration and the connection limit.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use petrel_core::server::ServerConfig;

/// An IP network in CIDR form, e.g. `127.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// The network of `addr` with `prefix` bits; `None` if the prefix is too
    /// long for the address family.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then_some(Self { addr, prefix })
    }

    /// Whether `ip` is in this network. An IPv4 address never matches an
    /// IPv6 network or the reverse (IPv4-mapped addresses are compared as
    /// IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (net, ip, bits) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                (u128::from(u32::from(n)), u128::from(u32::from(a)), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (net >> shift) == (ip >> shift)
    }

    /// The prefix length: longer is more specific.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("bad network address {addr:?}"))?;
        let full = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse().map_err(|_| format!("bad prefix length {p:?}"))?,
            None => full,
        };
        Network::new(addr, prefix).ok_or_else(|| format!("prefix /{prefix} too long for {addr}"))
    }
}

/// One listening address, its configuration, and the configurations of
/// particular peer networks (Momentum's `Listen` and `Peer` scopes).
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// What every peer gets unless a network below matches.
    pub server: Arc<ServerConfig>,
    /// Per-network configurations; the longest matching prefix wins.
    pub peers: Vec<(Network, Arc<ServerConfig>)>,
}

impl ListenerConfig {
    /// A listener with one configuration for every peer.
    pub fn new(addr: SocketAddr, server: ServerConfig) -> Self {
        Self {
            addr,
            server: Arc::new(server),
            peers: Vec::new(),
        }
    }

    /// The configuration for a connection from `peer`.
    pub fn config_for(&self, peer: IpAddr) -> Arc<ServerConfig> {
        self.peers
            .iter()
            .filter(|(network, _)| network.contains(peer))
            .max_by_key(|(network, _)| network.prefix())
            .map_or_else(|| self.server.clone(), |(_, config)| config.clone())
    }
}

/// What a runtime's `serve` is given.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The listeners.
    pub listeners: Vec<ListenerConfig>,
    /// Connections served at once, over all listeners; one more is told
    /// `421 4.3.2` and closed.
    pub max_connections: usize,
}

impl ServeConfig {
    /// One listener; at most 1000 connections at once.
    pub fn single(listener: ListenerConfig) -> Self {
        Self {
            listeners: vec![listener],
            max_connections: 1000,
        }
    }
}

/// Connections being served at once, against `max_connections`.
pub struct ConnectionLimit {
    max: usize,
    active: AtomicUsize,
    /// Called when the last connection ends (a shutdown may be waiting).
    on_idle: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for ConnectionLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLimit")
            .field("max", &self.max)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl ConnectionLimit {
    /// A limit of `max` connections; `on_idle` runs whenever the count
    /// drops to zero.
    pub fn new(max: usize, on_idle: Box<dyn Fn() + Send + Sync>) -> Arc<Self> {
        Arc::new(Self {
            max,
            active: AtomicUsize::new(0),
            on_idle,
        })
    }

    /// A place under the limit, if there is one; given back when dropped,
    /// however the connection ends.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        self.active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |active| {
                (active < self.max).then_some(active + 1)
            })
            .ok()
            .map(|_| Permit(self.clone()))
    }

    /// Connections being served now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

/// One connection's place under a [`ConnectionLimit`].
#[derive(Debug)]
pub struct Permit(Arc<ConnectionLimit>);

impl Drop for Permit {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            (self.0.on_idle)();
        }
    }
}

/// What a connection over the limit is told before it is closed
/// (RFC 5321 §3.1 allows a 421 greeting).
pub fn too_many_connections(hostname: &str) -> Vec<u8> {
    format!("421 4.3.2 {hostname} Too many connections, try again later\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_counted_and_given_back() {
        let idle = Arc::new(AtomicUsize::new(0));
        let counter = idle.clone();
        let limit = ConnectionLimit::new(
            2,
            Box::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        );
        let first = limit.try_acquire().unwrap();
        let second = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none());
        drop(first);
        assert_eq!(limit.active(), 1);
        assert_eq!(idle.load(Ordering::SeqCst), 0);
        drop(second);
        assert_eq!(idle.load(Ordering::SeqCst), 1);
        assert!(limit.try_acquire().is_some());
    }

    #[test]
    fn the_most_specific_network_wins() {
        let mut listener =
            ListenerConfig::new("127.0.0.1:25".parse().unwrap(), ServerConfig::new("a"));
        listener.peers.push((
            "127.0.0.0/8".parse().unwrap(),
            Arc::new(ServerConfig::new("b")),
        ));
        listener.peers.push((
            "127.0.0.2/32".parse().unwrap(),
            Arc::new(ServerConfig::new("c")),
        ));
        listener
            .peers
            .push(("::1".parse().unwrap(), Arc::new(ServerConfig::new("d"))));
        let name = |ip: &str| listener.config_for(ip.parse().unwrap()).hostname.clone();
        assert_eq!(name("10.0.0.1"), "a");
        assert_eq!(name("127.0.0.1"), "b");
        assert_eq!(name("127.0.0.2"), "c");
        assert_eq!(name("::1"), "d");
        assert_eq!(name("::ffff:127.0.0.2"), "c");
        assert!("127.0.0.0/33".parse::<Network>().is_err());
        assert!("0.0.0.0/0"
            .parse::<Network>()
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }
}
