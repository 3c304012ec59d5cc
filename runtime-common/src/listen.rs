//! Listeners, per-peer-network configuration, and the limits on
//! connections: in all, per client address, and the listen backlog.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use petrel_core::server::ServerConfig;
use socket2::{Domain, Protocol, Socket, Type};

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

/// Why a string is not a network in CIDR form.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BadNetwork {
    /// The address part is not an IP address.
    Address(String),
    /// The prefix length is not a number.
    Prefix(String),
    /// The prefix is longer than the address family allows.
    PrefixTooLong {
        /// The address.
        addr: IpAddr,
        /// The prefix length given.
        prefix: u8,
    },
}

impl std::fmt::Display for BadNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Address(addr) => write!(f, "bad network address {addr:?}"),
            Self::Prefix(prefix) => write!(f, "bad prefix length {prefix:?}"),
            Self::PrefixTooLong { addr, prefix } => {
                write!(f, "prefix /{prefix} too long for {addr}")
            }
        }
    }
}

impl std::error::Error for BadNetwork {}

impl std::str::FromStr for Network {
    type Err = BadNetwork;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| BadNetwork::Address(addr.to_owned()))?;
        let full = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse().map_err(|_| BadNetwork::Prefix(p.to_owned()))?,
            None => full,
        };
        Network::new(addr, prefix).ok_or(BadNetwork::PrefixTooLong { addr, prefix })
    }
}

/// The listen backlog a listener asks for unless told otherwise (Momentum's
/// `Listen_Backlog`); the kernel bounds it, see [`effective_backlog`].
pub const DEFAULT_BACKLOG: u32 = 1024;

/// Connections at once from one client address unless told otherwise, as
/// Postfix's `smtpd_client_connection_count_limit`: one address must not
/// take every place under the server's limit.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 50;

/// What a listener gives the peers of one network (Momentum's `Peer`
/// scope), or every other peer (its `Listen` scope): resolved, every value
/// set.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The sessions' configuration.
    pub server: Arc<ServerConfig>,
    /// Connections at once from one client address on this listener; one
    /// more is told `421 4.7.0` and closed. `None`: no limit (Postfix's
    /// `0`, or its `smtpd_client_event_limit_exceptions`).
    pub max_connections_per_ip: Option<usize>,
}

impl PeerConfig {
    /// `server`, with at most [`DEFAULT_MAX_CONNECTIONS_PER_IP`]
    /// connections per client address.
    pub fn new(server: ServerConfig) -> Self {
        Self {
            server: Arc::new(server),
            max_connections_per_ip: Some(DEFAULT_MAX_CONNECTIONS_PER_IP),
        }
    }
}

/// One listening address, what its peers get, and what the peers of
/// particular networks get instead (Momentum's `Listen` and `Peer` scopes).
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Connections the kernel completes and queues before they are
    /// accepted; at most the kernel's `net.core.somaxconn` (see
    /// [`effective_backlog`]).
    pub backlog: u32,
    /// What every peer gets unless a network in `peers` matches.
    pub default_peer: PeerConfig,
    /// Per-network configurations; the longest matching prefix wins.
    pub peers: Vec<(Network, PeerConfig)>,
}

impl ListenerConfig {
    /// A listener with one configuration for every peer, the default
    /// backlog and per-address limit.
    pub fn new(addr: SocketAddr, server: ServerConfig) -> Self {
        Self {
            addr,
            backlog: DEFAULT_BACKLOG,
            default_peer: PeerConfig::new(server),
            peers: Vec::new(),
        }
    }

    /// What a connection from `peer` gets.
    pub fn peer_config(&self, peer: IpAddr) -> &PeerConfig {
        self.peers
            .iter()
            .filter(|(network, _)| network.contains(peer))
            .max_by_key(|(network, _)| network.prefix())
            .map_or(&self.default_peer, |(_, config)| config)
    }

    /// The session configuration for a connection from `peer`.
    pub fn config_for(&self, peer: IpAddr) -> Arc<ServerConfig> {
        self.peer_config(peer).server.clone()
    }

    /// Binds and listens, with `SO_REUSEADDR` (a restarted server gets its
    /// port back while old connections linger in `TIME_WAIT`) and the
    /// backlog bounded by [`effective_backlog`]. The socket is
    /// non-blocking, ready for any runtime's reactor.
    pub fn bind(&self) -> io::Result<std::net::TcpListener> {
        let socket = Socket::new(
            Domain::for_address(self.addr),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&self.addr.into())?;
        let backlog = i32::try_from(effective_backlog(self.backlog)).unwrap_or(i32::MAX);
        socket.listen(backlog)?;
        Ok(socket.into())
    }
}

/// The kernel's bound on listen backlogs, `net.core.somaxconn` (4096 since
/// Linux 5.4, 128 before); `None` where it cannot be read.
pub fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The backlog a listener asking for `requested` gets: Linux silently
/// truncates a larger one to `net.core.somaxconn`, so it is bounded here,
/// where it can be seen, and at least 1. An operator who wants more raises
/// the sysctl first.
pub fn effective_backlog(requested: u32) -> u32 {
    somaxconn()
        .map_or(requested, |max| requested.min(max))
        .max(1)
}

/// What a runtime's `serve` is given.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The listeners.
    pub listeners: Vec<ListenerConfig>,
    /// Connections served at once, over all listeners; one more is told
    /// `421 4.3.2` and closed.
    pub max_connections: usize,
    /// The threads serving connections, where the runtime owns them (mio's
    /// event loops, smol's executors); `None`: one per core. A tokio server
    /// runs on the runtime that calls it, with that runtime's workers.
    pub threads: Option<NonZeroUsize>,
}

impl ServeConfig {
    /// One listener; at most 1000 connections at once; one thread per core.
    pub fn single(listener: ListenerConfig) -> Self {
        Self {
            listeners: vec![listener],
            max_connections: 1000,
            threads: None,
        }
    }

    /// How many threads serve: [`threads`](Self::threads), or one per core.
    pub fn serving_threads(&self) -> usize {
        self.threads
            .or_else(|| std::thread::available_parallelism().ok())
            .map_or(1, NonZeroUsize::get)
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
            .map(|_| Permit {
                limit: self.clone(),
                client: None,
            })
    }

    /// Connections being served now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

/// One connection's place under a [`ConnectionLimit`], and under its
/// client address's limit when it was admitted by a [`Gate`].
#[derive(Debug)]
pub struct Permit {
    limit: Arc<ConnectionLimit>,
    client: Option<(Arc<ClientCounts>, IpAddr)>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some((counts, ip)) = self.client.take() {
            counts.release(ip);
        }
        if self.limit.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            (self.limit.on_idle)();
        }
    }
}

/// Connections at once per client address, on one listener.
#[derive(Debug, Default)]
struct ClientCounts {
    /// Only addresses with connections: an entry goes with its last one,
    /// so the map is as large as the connections are many, however many
    /// addresses come and go.
    active: Mutex<HashMap<IpAddr, usize>>,
}

impl ClientCounts {
    /// One more connection from `ip`, unless it has `max` already.
    fn try_acquire(&self, ip: IpAddr, max: usize) -> bool {
        let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        let count = active.entry(ip).or_insert(0);
        if *count >= max {
            if *count == 0 {
                active.remove(&ip);
            }
            return false;
        }
        *count += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = active.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                active.remove(&ip);
            }
        }
    }

    fn count(&self, ip: IpAddr) -> usize {
        let active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        active.get(&ip).copied().unwrap_or(0)
    }
}

/// One listener as its accept loops see it: its configuration, the
/// server's connection limit, and the connections of each client address
/// on it (counted per listener, as Postfix counts per service).
#[derive(Debug)]
pub struct Gate {
    config: ListenerConfig,
    limit: Arc<ConnectionLimit>,
    clients: Arc<ClientCounts>,
}

/// Whether an accepted connection is served.
#[derive(Debug)]
pub enum Admission {
    /// Serve it with `config`; `permit` is its place, held until its
    /// session is over.
    Admitted {
        /// The session configuration for this peer.
        config: Arc<ServerConfig>,
        /// Its place under the server's and its address's limits.
        permit: Permit,
    },
    /// Write `reply` (one line, which fits in a fresh socket's buffer) and
    /// close: the connection is over a limit.
    Refused {
        /// `421 4.3.2` (the server is full) or `421 4.7.0` (this address
        /// has too many connections), RFC 5321 §3.1's refusing greeting.
        reply: Vec<u8>,
    },
}

impl Gate {
    /// `config`'s gate, counting against the server's `limit`.
    pub fn new(config: ListenerConfig, limit: Arc<ConnectionLimit>) -> Arc<Self> {
        Arc::new(Self {
            config,
            limit,
            clients: Arc::default(),
        })
    }

    /// Binds `config`'s listener (see [`ListenerConfig::bind`]) and makes
    /// its gate, counting against the server's `limit`; the gate's
    /// configuration has the address actually bound (port 0 resolved).
    pub fn bind(
        mut config: ListenerConfig,
        limit: Arc<ConnectionLimit>,
    ) -> io::Result<(Arc<Self>, std::net::TcpListener)> {
        let listener = config.bind()?;
        config.addr = listener.local_addr()?;
        Ok((Self::new(config, limit), listener))
    }

    /// The listener's configuration.
    pub fn config(&self) -> &ListenerConfig {
        &self.config
    }

    /// Whether a connection from `peer` is served, and how. Its address's
    /// limit is checked first: a client over its own limit is told so,
    /// whether or not the server is full.
    pub fn admit(&self, peer: IpAddr) -> Admission {
        // A client on an IPv4-mapped IPv6 address is the same client.
        let ip = peer.to_canonical();
        let peer_config = self.config.peer_config(ip);
        let hostname = &peer_config.server.hostname;
        let counted = match peer_config.max_connections_per_ip {
            None => false,
            Some(max) if self.clients.try_acquire(ip, max) => true,
            Some(_) => {
                let reply =
                    format!("421 4.7.0 {hostname} Error: too many connections from {ip}\r\n");
                return Admission::Refused {
                    reply: reply.into_bytes(),
                };
            }
        };
        let Some(mut permit) = self.limit.try_acquire() else {
            if counted {
                self.clients.release(ip);
            }
            let reply = format!("421 4.3.2 {hostname} Too many connections, try again later\r\n");
            return Admission::Refused {
                reply: reply.into_bytes(),
            };
        };
        if counted {
            permit.client = Some((self.clients.clone(), ip));
        }
        Admission::Admitted {
            config: peer_config.server.clone(),
            permit,
        }
    }

    /// The local address of a connection accepted here: the listener's
    /// own when it names one address and port (no system call needed),
    /// else what `ask` (the socket's `getsockname`) says.
    pub fn local_addr(&self, ask: impl FnOnce() -> io::Result<SocketAddr>) -> SocketAddr {
        let addr = self.config.addr;
        if addr.ip().is_unspecified() || addr.port() == 0 {
            ask().unwrap_or(addr)
        } else {
            addr
        }
    }

    /// Connections being served from `ip` on this listener.
    pub fn connections_from(&self, ip: IpAddr) -> usize {
        self.clients.count(ip.to_canonical())
    }
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

    fn peer(name: &str, max_per_ip: Option<usize>) -> PeerConfig {
        PeerConfig {
            server: Arc::new(ServerConfig::new(name)),
            max_connections_per_ip: max_per_ip,
        }
    }

    #[test]
    fn the_most_specific_network_wins() {
        let mut listener =
            ListenerConfig::new("127.0.0.1:25".parse().unwrap(), ServerConfig::new("a"));
        listener
            .peers
            .push(("127.0.0.0/8".parse().unwrap(), peer("b", None)));
        listener
            .peers
            .push(("127.0.0.2/32".parse().unwrap(), peer("c", Some(1))));
        listener
            .peers
            .push(("::1".parse().unwrap(), peer("d", None)));
        let name = |ip: &str| listener.config_for(ip.parse().unwrap()).hostname.clone();
        assert_eq!(name("10.0.0.1"), "a");
        assert_eq!(name("127.0.0.1"), "b");
        assert_eq!(name("127.0.0.2"), "c");
        assert_eq!(name("::1"), "d");
        assert_eq!(name("::ffff:127.0.0.2"), "c");
        let limit = |ip: &str| {
            listener
                .peer_config(ip.parse().unwrap())
                .max_connections_per_ip
        };
        assert_eq!(limit("10.0.0.1"), Some(DEFAULT_MAX_CONNECTIONS_PER_IP));
        assert_eq!(limit("127.0.0.1"), None);
        assert_eq!(limit("127.0.0.2"), Some(1));
        assert_eq!(
            "127.0.0.0/33".parse::<Network>(),
            Err(BadNetwork::PrefixTooLong {
                addr: "127.0.0.0".parse().unwrap(),
                prefix: 33
            })
        );
        assert_eq!(
            "localhost/8".parse::<Network>(),
            Err(BadNetwork::Address("localhost".into()))
        );
        assert_eq!(
            "10.0.0.0/x".parse::<Network>(),
            Err(BadNetwork::Prefix("x".into()))
        );
        assert!("0.0.0.0/0"
            .parse::<Network>()
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }

    fn reply(admission: &Admission) -> String {
        match admission {
            Admission::Admitted { .. } => "admitted".into(),
            Admission::Refused { reply } => String::from_utf8_lossy(reply).into_owned(),
        }
    }

    #[test]
    fn each_client_address_has_its_own_limit() {
        let mut listener =
            ListenerConfig::new("127.0.0.1:25".parse().unwrap(), ServerConfig::new("mx"));
        listener.default_peer.max_connections_per_ip = Some(2);
        listener
            .peers
            .push(("10.0.0.0/8".parse().unwrap(), peer("inside", Some(1))));
        listener
            .peers
            .push(("10.1.0.0/16".parse().unwrap(), peer("exempt", None)));
        let gate = Gate::new(listener, ConnectionLimit::new(100, Box::new(|| {})));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let first = gate.admit(ip("192.0.2.1"));
        // The same client over IPv6's mapped form counts as the same one.
        let second = gate.admit(ip("::ffff:192.0.2.1"));
        assert_eq!(reply(&first), "admitted");
        assert_eq!(reply(&second), "admitted");
        assert_eq!(gate.connections_from(ip("192.0.2.1")), 2);
        assert_eq!(
            reply(&gate.admit(ip("192.0.2.1"))),
            "421 4.7.0 mx Error: too many connections from 192.0.2.1\r\n"
        );
        // Another address is not affected.
        let other = gate.admit(ip("192.0.2.2"));
        assert_eq!(reply(&other), "admitted");
        // One ends: a new one is served; the refused one took no place.
        drop(first);
        assert_eq!(gate.connections_from(ip("192.0.2.1")), 1);
        let third = gate.admit(ip("192.0.2.1"));
        assert_eq!(reply(&third), "admitted");
        // A peer network's own limit, and an exempt one.
        let inside = gate.admit(ip("10.9.9.9"));
        assert_eq!(reply(&inside), "admitted");
        assert_eq!(
            reply(&gate.admit(ip("10.9.9.9"))),
            "421 4.7.0 inside Error: too many connections from 10.9.9.9\r\n"
        );
        let exempt: Vec<_> = (0..10).map(|_| gate.admit(ip("10.1.2.3"))).collect();
        assert!(exempt.iter().all(|a| reply(a) == "admitted"));
        assert_eq!(gate.connections_from(ip("10.1.2.3")), 0, "not counted");
        assert_eq!(gate.limit.active(), 14);
        drop((second, other, third, inside, exempt));
        assert_eq!(gate.limit.active(), 0);
        assert!(gate.clients.active.lock().unwrap().is_empty());
    }

    #[test]
    fn a_full_server_refuses_without_counting_the_address() {
        let limit = ConnectionLimit::new(1, Box::new(|| {}));
        let gate = Gate::new(
            ListenerConfig::new("127.0.0.1:25".parse().unwrap(), ServerConfig::new("mx")),
            limit,
        );
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let served = gate.admit(ip);
        assert_eq!(reply(&served), "admitted");
        assert_eq!(
            reply(&gate.admit(ip)),
            "421 4.3.2 mx Too many connections, try again later\r\n"
        );
        assert_eq!(gate.connections_from(ip), 1);
    }

    #[test]
    fn the_backlog_is_bounded_by_somaxconn() {
        let max = somaxconn().expect("Linux has /proc/sys/net/core/somaxconn");
        assert_eq!(effective_backlog(u32::MAX), max);
        assert_eq!(effective_backlog(0), 1);
        assert_eq!(effective_backlog(max.min(7)), max.min(7));
    }
}
