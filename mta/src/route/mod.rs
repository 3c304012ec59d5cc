//! Routing: from a recipient domain and its [`OutboundPolicy`] to the
//! hosts to try, in order, each with its addresses.
//!
//! Precedence: `Routes` when the policy has any (in preference order,
//! `__mx__` standing for the domain's MX), else `Gateway`, else MX. An
//! address — an address-literal domain (`[192.0.2.1]`,
//! `[IPv6:2001:db8::1]`), or a gateway or route written as one — needs
//! no lookup. MX hosts come by preference, in random order within one
//! preference; a domain without MX records is its own implicit MX
//! (RFC 5321 §5.1); a null MX (RFC 7505) and a domain that does not exist
//! fail permanently; anything that may pass (SERVFAIL, a timeout, an MX
//! host without addresses) fails temporarily, for the queue to retry.
//!
//! Each host's IPv4 addresses come before its IPv6 ones. A delivery tries
//! them in order, and a host's IPv4 path is still the one more often
//! routed, reverse-resolvable and unthrottled; IPv4 first keeps the first
//! attempt on it, and an unreachable IPv6 network fails fast anyway
//! (ENETUNREACH) when a delivery falls back to it.
//!
//! The decisions are plain functions in [`decide`], tested without a
//! network; [`Router`] only runs the lookups they ask for, through
//! hickory's resolver (the system's name servers, or `Name_Servers`).
//! Gateway and route names are resolved to their own addresses (A and
//! AAAA, `/etc/hosts` included), not through their MX records as
//! Momentum does: a smart host is named to be connected to, and resolving
//! it as a mail domain would send mail for every domain elsewhere the day
//! someone gives that name an MX.

pub mod decide;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use futures_util::future::join_all;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::TokioResolver;

use self::decide::{Answer, HostAnswers, MxRecord, Step};
use crate::config::policy::OutboundPolicy;

/// One host to try: a domain's MX host (or the domain itself, its
/// implicit MX), a gateway or a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host's name, lower case, ASCII, without the trailing dot: for
    /// logs, TLS SNI and `TLS_Verify = host`. For an address (a literal
    /// domain, a gateway or route written as an address) its text, which
    /// a delivery must not send as SNI.
    pub host: String,
    /// Where to connect, in order: IPv4 first, then IPv6; never empty.
    pub addrs: Vec<IpAddr>,
    /// The port: the route's or gateway's own, else `Remote_SMTP_Port`.
    pub port: u16,
}

/// Why a domain has no host to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The domain is neither a host name nor an address literal
    /// (`[192.0.2.1]`, `[IPv6:…]`). Permanent.
    InvalidDomain(String),
    /// The domain publishes a null MX (RFC 7505): it accepts no mail.
    /// Permanent.
    NullMx,
    /// The domain does not exist (NXDOMAIN). Permanent.
    NoSuchDomain,
    /// No MX host (nor the domain itself, without MX) has an address.
    /// Temporary: a half-updated zone is more likely than a domain that
    /// means to publish an unreachable MX, and the queue's expiry bounds
    /// the retries.
    NoAddress,
    /// A lookup failed in a way that may pass (SERVFAIL, REFUSED, a
    /// timeout), or a configured gateway or route host does not resolve
    /// (the operator's problem, not the domain's). Temporary.
    Temporary(String),
}

impl RouteError {
    /// Whether the recipient should bounce now rather than be retried.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            RouteError::InvalidDomain(_) | RouteError::NullMx | RouteError::NoSuchDomain
        )
    }

    /// The enhanced status code (RFC 3463) for a bounce or a log record:
    /// `5.1.10` for a null MX (RFC 7505 §4.2), `5.1.2` for a domain that
    /// is not one, `4.4.4` for no address ("unable to route"), `4.4.3`
    /// for a failed lookup ("directory server failure").
    pub fn enhanced_status(&self) -> &'static str {
        match self {
            RouteError::NullMx => "5.1.10",
            RouteError::InvalidDomain(_) | RouteError::NoSuchDomain => "5.1.2",
            RouteError::NoAddress => "4.4.4",
            RouteError::Temporary(_) => "4.4.3",
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::InvalidDomain(domain) => {
                write!(f, "{domain:?} is not a domain name or address literal")
            }
            RouteError::NullMx => f.write_str("the domain accepts no mail (null MX, RFC 7505)"),
            RouteError::NoSuchDomain => f.write_str("the domain does not exist (NXDOMAIN)"),
            RouteError::NoAddress => {
                f.write_str("no mail host of the domain has an address (A/AAAA)")
            }
            RouteError::Temporary(why) => write!(f, "DNS lookup failed: {why}"),
        }
    }
}

impl std::error::Error for RouteError {}

/// The resolver could not be set up: the system configuration
/// (`/etc/resolv.conf`) is unreadable or names no server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupError(String);

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DNS resolver: {}", self.0)
    }
}

impl std::error::Error for SetupError {}

/// Routes domains through one resolver. Cheap to clone (clones share the
/// resolver and its cache, which keeps answers for their TTL); `Send` and
/// `Sync`. [`Router::route`] runs on a tokio runtime.
#[derive(Debug, Clone)]
pub struct Router {
    resolver: TokioResolver,
}

impl Router {
    /// A router asking `name_servers` (UDP, and TCP for truncated
    /// answers) or, when that is empty, the system's name servers with
    /// the system's options (`/etc/resolv.conf`).
    pub fn new(name_servers: &[SocketAddr]) -> Result<Router, SetupError> {
        let builder = if name_servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| SetupError(e.to_string()))?
        } else {
            let servers = name_servers
                .iter()
                .map(|server| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = server.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = server.port();
                    NameServerConfig::new(server.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let resolver = builder.build().map_err(|e| SetupError(e.to_string()))?;
        Ok(Router { resolver })
    }

    /// The hosts to try for mail to `domain` under `policy`, in order.
    /// Never empty when `Ok`.
    pub async fn route(
        &self,
        domain: &str,
        policy: &OutboundPolicy,
    ) -> Result<Vec<Target>, RouteError> {
        let destination = decide::destination(domain)?;
        let steps = decide::plan(&destination, policy);
        let outcomes = join_all(steps.into_iter().map(|step| self.step(step))).await;
        decide::combine(outcomes)
    }

    async fn step(&self, step: Step) -> Result<Vec<Target>, RouteError> {
        match step {
            Step::Address { addr, port } => Ok(decide::address_target(addr, port)),
            Step::Host { name, port } => decide::host_target(self.addresses(name).await, port),
            Step::Mx { domain, port } => {
                let answer = self.mx(&domain).await;
                let hosts = decide::exchanges(&domain, answer, |n| {
                    if n == 0 {
                        0
                    } else {
                        rand::random_range(0..n)
                    }
                })?;
                let answers = join_all(hosts.into_iter().map(|h| self.addresses(h))).await;
                decide::mx_targets(answers, port)
            }
        }
    }

    async fn mx(&self, domain: &str) -> Answer<MxRecord> {
        let Some(name) = fqdn(domain) else {
            return Answer::NoSuchDomain;
        };
        answer(self.resolver.mx_lookup(name).await, |data| match data {
            RData::MX(mx) => Some(MxRecord {
                preference: mx.preference,
                exchange: mx.exchange.to_ascii(),
            }),
            _ => None,
        })
    }

    async fn addresses(&self, host: String) -> HostAnswers {
        let Some(name) = fqdn(&host) else {
            return HostAnswers {
                host,
                v4: Answer::NoSuchDomain,
                v6: Answer::NoSuchDomain,
            };
        };
        let (v4, v6) = tokio::join!(
            self.resolver.ipv4_lookup(name.clone()),
            self.resolver.ipv6_lookup(name)
        );
        HostAnswers {
            v4: answer(v4, |data| match data {
                RData::A(a) => Some(a.0),
                _ => None,
            }),
            v6: answer(v6, |data| match data {
                RData::AAAA(aaaa) => Some(aaaa.0),
                _ => None,
            }),
            host,
        }
    }
}

/// `name` as a fully qualified DNS name, so that no search domain of the
/// system's configuration is ever appended to a mail domain.
fn fqdn(name: &str) -> Option<Name> {
    let mut name = Name::from_ascii(name).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// A lookup's result in [`decide`]'s terms: the records `pick` takes
/// (CNAMEs on the way are skipped), or what kind of failure it was.
fn answer<T>(result: Result<Lookup, NetError>, pick: impl Fn(&RData) -> Option<T>) -> Answer<T> {
    match result {
        Ok(lookup) => Answer::Records(
            lookup
                .answers()
                .iter()
                .filter_map(|r| pick(&r.data))
                .collect(),
        ),
        Err(e) if e.is_nx_domain() => Answer::NoSuchDomain,
        Err(e) if e.is_no_records_found() => Answer::NoRecords,
        Err(e) => Answer::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_is_send_sync_and_cheap_to_share() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<Router>();
    }

    #[test]
    fn permanence_and_status_codes() {
        assert!(RouteError::NullMx.is_permanent());
        assert!(RouteError::NoSuchDomain.is_permanent());
        assert!(RouteError::InvalidDomain("x".into()).is_permanent());
        assert!(!RouteError::NoAddress.is_permanent());
        assert!(!RouteError::Temporary("t".into()).is_permanent());
        for e in [
            RouteError::NullMx,
            RouteError::NoSuchDomain,
            RouteError::InvalidDomain("x".into()),
            RouteError::NoAddress,
            RouteError::Temporary("t".into()),
        ] {
            let class = if e.is_permanent() { "5." } else { "4." };
            assert!(e.enhanced_status().starts_with(class), "{e}");
        }
    }

    #[test]
    fn a_router_is_made_outside_a_runtime() {
        // main builds it before (or outside) the runtime that uses it.
        assert!(Router::new(&["127.0.0.1:53".parse().unwrap()]).is_ok());
        // The system's configuration, where there is one.
        let system = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        if system
            .lines()
            .any(|l| l.trim_start().starts_with("nameserver"))
        {
            assert!(Router::new(&[]).is_ok());
        }
    }
}
