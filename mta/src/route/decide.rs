//! Every routing decision, as plain functions of the configuration and of
//! what the lookups returned. [`super::Router`] only asks DNS what these
//! functions tell it to and hands the answers back; everything here is
//! tested without a network, and no answer, however malformed, panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_resolver::proto::rr::Name;

use super::{RouteError, Target};
use crate::config::policy::{HostPort, OutboundPolicy, Route};

/// MX hosts looked up for one domain, at most. A domain with more (or a
/// hostile answer with hundreds) gets its most preferred ones: no
/// delivery tries that many hosts, and each costs two lookups.
pub const MAX_MX_HOSTS: usize = 10;

/// Addresses kept per host, at most, for the same reason.
pub const MAX_ADDRESSES_PER_HOST: usize = 8;

/// What a recipient domain names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`, or a bare
    /// address, which the configuration treats as the same domain): mail
    /// goes to that address, no lookup.
    Literal(IpAddr),
    /// A domain name: ASCII (IDNA applied), lower case, no trailing dot.
    Name(String),
}

/// What `domain` (the part after `@`) names, or why it names nothing
/// routable.
pub fn destination(domain: &str) -> Result<Destination, RouteError> {
    let invalid = || RouteError::InvalidDomain(domain.to_owned());
    let text = domain.trim();
    if let Some(inner) = text.strip_prefix('[') {
        // RFC 5321 §4.1.3: `[IPv4]` or `[IPv6:…]`; other tags name address
        // families nobody delivers to.
        let inner = inner.strip_suffix(']').ok_or_else(invalid)?;
        let ip = match inner.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner
                .get(5..)
                .and_then(|v6| v6.parse::<Ipv6Addr>().ok())
                .map(IpAddr::V6),
            _ => inner.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        };
        return ip.map(Destination::Literal).ok_or_else(invalid);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Destination::Literal(ip));
    }
    let name = host_name(text).ok_or_else(invalid)?;
    Ok(Destination::Name(name))
}

/// `text` as a host name to look up: IDNA applied (an SMTPUTF8 domain
/// is looked up by its A-labels), lower case, without the trailing dot;
/// `None` if it is not a host name.
fn host_name(text: &str) -> Option<String> {
    let text = text.strip_suffix('.').unwrap_or(text);
    let ascii = if text.is_ascii() {
        text.to_ascii_lowercase()
    } else {
        let name = Name::from_utf8(text).ok()?.to_ascii();
        name.strip_suffix('.').unwrap_or(&name).to_ascii_lowercase()
    };
    is_host_name(&ascii).then_some(ascii)
}

/// Letters, digits, `-` and `_` in dot-separated labels of 1 to 63
/// octets, 253 in all. Names from DNS answers are held to this too: a
/// name with spaces, escapes or control characters would end up in logs
/// and in TLS SNI.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// One source of hosts, in the order the configuration puts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An address: nothing to look up.
    Address {
        /// Where.
        addr: IpAddr,
        /// The port.
        port: u16,
    },
    /// A configured host (`Gateway`, a route): its A and AAAA records.
    /// It is the operator's choice, not the recipient domain's, so its
    /// failures are never the domain's fault: they are temporary.
    Host {
        /// The name, as [`destination`] normalises names.
        name: String,
        /// The port.
        port: u16,
    },
    /// The domain's MX hosts, or the domain itself as its implicit MX.
    Mx {
        /// The domain.
        domain: String,
        /// The port.
        port: u16,
    },
}

/// Where mail for `destination` goes under `policy`: `Routes` when it
/// has any, else `Gateway`, else MX.
///
/// Routes are taken in preference order (lower first); equal preferences
/// keep the order written, as Momentum documents. `__mx__` has no
/// preference of its own: it keeps its written place, sorting with the
/// route before it (or first, if it is first), so that
/// `( "smtp://relay?pref=1" "__mx__" )` means the relay, then MX, and
/// `( "__mx__" "smtp://backup" )` MX, then the backup.
pub fn plan(destination: &Destination, policy: &OutboundPolicy) -> Vec<Step> {
    let port = policy.remote_smtp_port;
    if !policy.routes.is_empty() {
        let mut keyed = Vec::with_capacity(policy.routes.len());
        let mut previous = 0;
        for route in &policy.routes {
            if let Route::Smtp { preference, .. } = route {
                previous = *preference;
            }
            keyed.push((previous, route));
        }
        // Stable: equal preferences stay in written order.
        keyed.sort_by_key(|(preference, _)| *preference);
        return keyed
            .into_iter()
            .map(|(_, route)| match route {
                Route::Mx => mx_step(destination, port),
                Route::Smtp { host, .. } => host_step(host, port),
            })
            .collect();
    }
    match &policy.gateway {
        Some(gateway) => vec![host_step(gateway, port)],
        None => vec![mx_step(destination, port)],
    }
}

fn mx_step(destination: &Destination, port: u16) -> Step {
    match destination {
        Destination::Literal(addr) => Step::Address { addr: *addr, port },
        Destination::Name(domain) => Step::Mx {
            domain: domain.clone(),
            port,
        },
    }
}

fn host_step(host: &HostPort, default_port: u16) -> Step {
    let port = host.port.unwrap_or(default_port);
    match host.host.parse::<IpAddr>() {
        Ok(addr) => Step::Address { addr, port },
        // The configuration has checked the name's characters already.
        Err(_) => Step::Host {
            name: host_name(&host.host).unwrap_or_else(|| host.host.clone()),
            port,
        },
    }
}

/// What one lookup returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// These records (possibly none, when the answer held only CNAMEs).
    Records(Vec<T>),
    /// The name exists but has no record of the type asked (NOERROR with
    /// an empty answer).
    NoRecords,
    /// The name does not exist (NXDOMAIN).
    NoSuchDomain,
    /// No answer that says either: SERVFAIL, REFUSED, a timeout, a
    /// malformed response. Asking again later may work.
    Failed(String),
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxRecord {
    /// Lower is tried first.
    pub preference: u16,
    /// The host, as DNS presents it (a trailing dot is fine); `.` or
    /// empty is the root: a null MX (RFC 7505).
    pub exchange: String,
}

/// The hosts to look up for `domain`, in the order to try them, from
/// what its MX lookup returned.
///
/// - MX records: by preference, in random order within one preference
///   (RFC 5321 §5.1, to spread load), duplicates and malformed names
///   dropped, at most [`MAX_MX_HOSTS`].
/// - Only null MX records (RFC 7505: the domain accepts no mail):
///   [`RouteError::NullMx`]. A null MX beside real ones is a mistake of
///   the domain's (RFC 7505 §3 forbids it); the real ones are used.
/// - No MX at all, the domain existing: the domain itself, as an implicit
///   MX of preference 0 (RFC 5321 §5.1).
/// - NXDOMAIN: [`RouteError::NoSuchDomain`]; other failures:
///   [`RouteError::Temporary`].
///
/// `random_below(n)` returns a number below `n` (a larger one is taken
/// modulo `n`); tests pass a deterministic one.
pub fn exchanges(
    domain: &str,
    answer: Answer<MxRecord>,
    random_below: impl FnMut(usize) -> usize,
) -> Result<Vec<String>, RouteError> {
    let records = match answer {
        Answer::Records(records) => records,
        Answer::NoRecords => Vec::new(),
        Answer::NoSuchDomain => return Err(RouteError::NoSuchDomain),
        Answer::Failed(why) => {
            return Err(RouteError::Temporary(format!(
                "MX lookup for {domain}: {why}"
            )))
        }
    };
    if records.is_empty() {
        return Ok(vec![domain.to_owned()]);
    }
    let is_null = |r: &MxRecord| r.exchange.trim_end_matches('.').is_empty();
    if records.iter().all(is_null) {
        return Err(RouteError::NullMx);
    }
    let usable: Vec<(u16, String)> = records
        .iter()
        .filter(|r| !is_null(r))
        .filter_map(|r| Some((r.preference, host_name(&r.exchange)?)))
        .collect();
    if usable.is_empty() {
        // Every exchange is malformed: nothing to connect to, but a
        // corrected zone may come; not the domain's final word.
        return Err(RouteError::NoAddress);
    }
    let mut hosts: Vec<String> = Vec::with_capacity(MAX_MX_HOSTS);
    for (_, host) in order_by_preference(usable, random_below) {
        if hosts.len() == MAX_MX_HOSTS {
            break;
        }
        // A host listed twice keeps its most preferred place.
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    Ok(hosts)
}

/// `items` by preference, lower first, each run of equal preferences
/// shuffled (Fisher–Yates) with `random_below`.
pub fn order_by_preference<T>(
    mut items: Vec<(u16, T)>,
    mut random_below: impl FnMut(usize) -> usize,
) -> Vec<(u16, T)> {
    items.sort_by_key(|(preference, _)| *preference);
    for run in items.chunk_by_mut(|a, b| a.0 == b.0) {
        for i in (1..run.len()).rev() {
            let j = random_below(i + 1) % (i + 1);
            run.swap(i, j);
        }
    }
    items
}

/// What the address lookups of one host returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAnswers {
    /// The host.
    pub host: String,
    /// Its A records.
    pub v4: Answer<Ipv4Addr>,
    /// Its AAAA records.
    pub v6: Answer<Ipv6Addr>,
}

impl HostAnswers {
    /// The addresses to connect to: IPv4 first, then IPv6 (see
    /// [`super`] for why), without duplicates or addresses no connection
    /// can go to, at most [`MAX_ADDRESSES_PER_HOST`].
    fn addresses(&self) -> Vec<IpAddr> {
        let v4 = match &self.v4 {
            Answer::Records(records) => records.as_slice(),
            _ => &[],
        };
        let v6 = match &self.v6 {
            Answer::Records(records) => records.as_slice(),
            _ => &[],
        };
        let mut addrs = Vec::new();
        let all = v4
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(v6.iter().map(|a| IpAddr::V6(*a)));
        for addr in all.filter(|a| connectable(*a)) {
            if addrs.len() == MAX_ADDRESSES_PER_HOST {
                break;
            }
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        addrs
    }

    /// Why the host has no address, if a lookup failed in a way that may
    /// pass.
    fn temporary_failure(&self) -> Option<String> {
        let failed = |family: &str, answer: Option<&String>| {
            answer.map(|why| format!("{family} lookup for {}: {why}", self.host))
        };
        let v4 = match &self.v4 {
            Answer::Failed(why) => Some(why),
            _ => None,
        };
        let v6 = match &self.v6 {
            Answer::Failed(why) => Some(why),
            _ => None,
        };
        failed("A", v4).or_else(|| failed("AAAA", v6))
    }

    /// Why the host has no address, in words, for a configured host.
    fn failure(&self) -> String {
        self.temporary_failure().unwrap_or_else(|| {
            if self.v4 == Answer::NoSuchDomain && self.v6 == Answer::NoSuchDomain {
                format!("{}: no such domain", self.host)
            } else {
                format!("{} has no usable address (A/AAAA)", self.host)
            }
        })
    }
}

/// Whether a connection can go to `addr`. Loopback stays: tests and
/// local relays route there on purpose.
fn connectable(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// The targets for a domain's MX hosts (or its implicit MX), in order,
/// each with its addresses; a host without any is skipped, so mail goes
/// to the next. None left: [`RouteError::Temporary`] if a lookup failed
/// in a way that may pass, else [`RouteError::NoAddress`].
pub fn mx_targets(hosts: Vec<HostAnswers>, port: u16) -> Result<Vec<Target>, RouteError> {
    let mut targets = Vec::with_capacity(hosts.len());
    let mut temporary = Vec::new();
    for answers in hosts {
        let addrs = answers.addresses();
        if addrs.is_empty() {
            temporary.extend(answers.temporary_failure());
        } else {
            targets.push(Target {
                host: answers.host,
                addrs,
                port,
            });
        }
    }
    if !targets.is_empty() {
        Ok(targets)
    } else if temporary.is_empty() {
        Err(RouteError::NoAddress)
    } else {
        Err(RouteError::Temporary(temporary.join("; ")))
    }
}

/// The target for a configured host: any failure is temporary (see
/// [`Step::Host`]).
pub fn host_target(answers: HostAnswers, port: u16) -> Result<Vec<Target>, RouteError> {
    let addrs = answers.addresses();
    if addrs.is_empty() {
        return Err(RouteError::Temporary(format!(
            "configured host {}",
            answers.failure()
        )));
    }
    Ok(vec![Target {
        host: answers.host,
        addrs,
        port,
    }])
}

/// The target for an address: its text stands for the host name (a
/// delivery sends no SNI for it).
pub fn address_target(addr: IpAddr, port: u16) -> Vec<Target> {
    vec![Target {
        host: addr.to_string(),
        addrs: vec![addr],
        port,
    }]
}

/// The targets of every step, in order, a (host, port) seen twice kept at
/// its first place. A step that failed is passed over when another gave
/// targets. When none did, a temporary error wins over a permanent one:
/// mail must not bounce for good while another route may yet work.
pub fn combine(outcomes: Vec<Result<Vec<Target>, RouteError>>) -> Result<Vec<Target>, RouteError> {
    let mut targets: Vec<Target> = Vec::new();
    let mut first_error: Option<RouteError> = None;
    for outcome in outcomes {
        match outcome {
            Ok(found) => {
                for target in found {
                    let seen = targets.iter().any(|t| {
                        t.port == target.port && t.host.eq_ignore_ascii_case(&target.host)
                    });
                    if !seen {
                        targets.push(target);
                    }
                }
            }
            Err(error) => {
                let replace = match &first_error {
                    None => true,
                    Some(kept) => kept.is_permanent() && !error.is_permanent(),
                };
                if replace {
                    first_error = Some(error);
                }
            }
        }
    }
    match first_error {
        Some(error) if targets.is_empty() => Err(error),
        _ if targets.is_empty() => Err(RouteError::NoAddress),
        _ => Ok(targets),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    fn policy() -> OutboundPolicy {
        crate::config::load_str("t.conf", "", std::path::Path::new("/"))
            .unwrap()
            .policies
            .outbound("default", "example.com")
    }

    fn hp(host: &str, port: Option<u16>) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }

    fn mx(preference: u16, exchange: &str) -> MxRecord {
        MxRecord {
            preference,
            exchange: exchange.into(),
        }
    }

    fn host(name: &str, v4: &[&str], v6: &[&str]) -> HostAnswers {
        let records = |list: &[&str]| list.iter().map(|a| a.parse().unwrap()).collect();
        HostAnswers {
            host: name.into(),
            v4: if v4.is_empty() {
                Answer::NoRecords
            } else {
                Answer::Records(records(v4))
            },
            v6: if v6.is_empty() {
                Answer::NoRecords
            } else {
                Answer::Records(v6.iter().map(|a| a.parse().unwrap()).collect())
            },
        }
    }

    #[test]
    fn destinations() {
        let literal = |s: &str| Ok(Destination::Literal(s.parse().unwrap()));
        assert_eq!(destination("[192.0.2.1]"), literal("192.0.2.1"));
        assert_eq!(destination("[IPv6:2001:db8::1]"), literal("2001:db8::1"));
        assert_eq!(destination("[ipv6:::1]"), literal("::1"));
        assert_eq!(destination("192.0.2.1"), literal("192.0.2.1"));
        assert_eq!(
            destination("Example.COM."),
            Ok(Destination::Name("example.com".into()))
        );
        assert_eq!(
            destination("bücher.example"),
            Ok(Destination::Name("xn--bcher-kva.example".into()))
        );
        for bad in [
            "",
            ".",
            "[]",
            "[2001:db8::1]",
            "[IPv6:192.0.2.1]",
            "[x400:c=fr]",
            "[192.0.2.1",
            "a b.example",
            "a..example",
            "évil\u{0}.example",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(destination(bad), Err(RouteError::InvalidDomain(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn mx_by_default_gateway_over_mx_routes_over_gateway() {
        let domain = Destination::Name("example.com".into());
        let mut p = policy();
        assert_eq!(
            plan(&domain, &p),
            [Step::Mx {
                domain: "example.com".into(),
                port: 25
            }]
        );
        p.remote_smtp_port = 2525;
        p.gateway = Some(hp("Relay.Example.NET", None));
        assert_eq!(
            plan(&domain, &p),
            [Step::Host {
                name: "relay.example.net".into(),
                port: 2525
            }]
        );
        p.gateway = Some(hp("::1", Some(26)));
        assert_eq!(
            plan(&domain, &p),
            [Step::Address {
                addr: "::1".parse().unwrap(),
                port: 26
            }]
        );
        p.routes = vec![Route::Mx];
        assert_eq!(
            plan(&domain, &p),
            [Step::Mx {
                domain: "example.com".into(),
                port: 2525
            }]
        );
    }

    #[test]
    fn routes_go_by_preference_and_mx_keeps_its_place() {
        let smtp = |host: &str, preference| Route::Smtp {
            host: hp(host, None),
            preference,
        };
        let names = |routes: Vec<Route>| -> Vec<String> {
            let mut p = policy();
            p.routes = routes;
            plan(&Destination::Name("d.example".into()), &p)
                .into_iter()
                .map(|s| match s {
                    Step::Host { name, .. } => name,
                    Step::Mx { .. } => "MX".into(),
                    Step::Address { addr, .. } => addr.to_string(),
                })
                .collect()
        };
        assert_eq!(names(vec![smtp("relay", 1), Route::Mx]), ["relay", "MX"]);
        assert_eq!(names(vec![Route::Mx, smtp("backup", 0)]), ["MX", "backup"]);
        assert_eq!(
            names(vec![smtp("a", 10), Route::Mx, smtp("b", 5), smtp("c", 5)]),
            ["b", "c", "a", "MX"]
        );
        assert_eq!(
            names(vec![smtp("x", 0), smtp("192.0.2.7", 0)]),
            ["x", "192.0.2.7"]
        );
    }

    #[test]
    fn a_literal_needs_no_lookup() {
        let literal = Destination::Literal("192.0.2.1".parse().unwrap());
        let mut p = policy();
        assert_eq!(
            plan(&literal, &p),
            [Step::Address {
                addr: "192.0.2.1".parse().unwrap(),
                port: 25
            }]
        );
        // A gateway takes literals too: a smart host relays everything.
        p.gateway = Some(hp("relay", None));
        assert!(matches!(plan(&literal, &p)[..], [Step::Host { .. }]));
        assert_eq!(
            address_target("::1".parse().unwrap(), 25),
            [Target {
                host: "::1".into(),
                addrs: vec!["::1".parse().unwrap()],
                port: 25
            }]
        );
    }

    /// A deterministic "random" source: always `k`, or the largest.
    fn always(k: usize) -> impl FnMut(usize) -> usize {
        move |n| k.min(n.saturating_sub(1))
    }

    #[test]
    fn mx_in_preference_order_shuffled_within_one() {
        let answer = Answer::Records(vec![
            mx(20, "c.example."),
            mx(10, "a.example."),
            mx(10, "B.example."),
        ]);
        let first = exchanges("d", answer.clone(), always(0)).unwrap();
        let last = exchanges("d", answer.clone(), always(usize::MAX)).unwrap();
        assert_eq!(first.last().unwrap(), "c.example");
        assert_eq!(last.last().unwrap(), "c.example");
        assert_ne!(first, last, "both orders within preference 10 occur");
        let mut ten: Vec<&String> = first.iter().take(2).collect();
        ten.sort();
        assert_eq!(ten, ["a.example", "b.example"]);
    }

    #[test]
    fn shuffling_is_uniform_enough_and_a_permutation() {
        // Fisher–Yates over three equal preferences: every one of the six
        // orders comes from exactly one sequence of choices.
        let items: Vec<(u16, char)> = vec![(5, 'a'), (5, 'b'), (5, 'c')];
        let mut seen = std::collections::HashSet::new();
        for j2 in 0..3 {
            for j1 in 0..2 {
                let mut choices = vec![j2, j1].into_iter();
                let order: String = order_by_preference(items.clone(), |_| choices.next().unwrap())
                    .into_iter()
                    .map(|(_, c)| c)
                    .collect();
                seen.insert(order);
            }
        }
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn null_mx_no_mx_nxdomain_and_failures() {
        assert_eq!(
            exchanges("d.example", Answer::Records(vec![mx(0, ".")]), always(0)),
            Err(RouteError::NullMx)
        );
        assert_eq!(
            exchanges("d.example", Answer::Records(vec![mx(0, "")]), always(0)),
            Err(RouteError::NullMx)
        );
        // A null MX beside a real one: the real one.
        assert_eq!(
            exchanges(
                "d.example",
                Answer::Records(vec![mx(0, "."), mx(10, "mx.d.example.")]),
                always(0)
            ),
            Ok(vec!["mx.d.example".into()])
        );
        // No MX: the domain itself (also when the answer held only a CNAME).
        assert_eq!(
            exchanges("d.example", Answer::NoRecords, always(0)),
            Ok(vec!["d.example".into()])
        );
        assert_eq!(
            exchanges("d.example", Answer::Records(vec![]), always(0)),
            Ok(vec!["d.example".into()])
        );
        assert_eq!(
            exchanges("d.example", Answer::NoSuchDomain, always(0)),
            Err(RouteError::NoSuchDomain)
        );
        let temporary = exchanges("d.example", Answer::Failed("SERVFAIL".into()), always(0));
        assert_eq!(
            temporary,
            Err(RouteError::Temporary(
                "MX lookup for d.example: SERVFAIL".into()
            ))
        );
        assert!(!temporary.unwrap_err().is_permanent());
    }

    #[test]
    fn hostile_mx_answers_are_trimmed() {
        // Duplicates keep their best place; malformed names are dropped;
        // hundreds of records give MAX_MX_HOSTS hosts.
        let answer = Answer::Records(vec![
            mx(30, "a.example."),
            mx(10, "a.example."),
            mx(20, "bad name.example."),
            mx(20, "b\\000.example."),
        ]);
        assert_eq!(
            exchanges("d", answer, always(0)),
            Ok(vec!["a.example".into()])
        );
        assert_eq!(
            exchanges("d", Answer::Records(vec![mx(1, "x y")]), always(0)),
            Err(RouteError::NoAddress)
        );
        let many = (0..500u16)
            .map(|i| mx(i % 7, &format!("mx{i}.example.")))
            .collect();
        let hosts = exchanges("d", Answer::Records(many), always(3)).unwrap();
        assert_eq!(hosts.len(), MAX_MX_HOSTS);
    }

    #[test]
    fn addresses_ipv4_first_then_ipv6() {
        let targets = mx_targets(
            vec![
                host("a", &["192.0.2.1", "192.0.2.2"], &["2001:db8::1"]),
                host("b", &[], &["2001:db8::2"]),
            ],
            25,
        )
        .unwrap();
        let addrs: Vec<String> = targets[0].addrs.iter().map(|a| a.to_string()).collect();
        assert_eq!(addrs, ["192.0.2.1", "192.0.2.2", "2001:db8::1"]);
        assert_eq!(targets[1].host, "b");
        assert_eq!(targets[1].port, 25);
    }

    #[test]
    fn hosts_without_addresses_are_skipped() {
        let ghost = HostAnswers {
            host: "ghost".into(),
            v4: Answer::NoSuchDomain,
            v6: Answer::NoSuchDomain,
        };
        let targets = mx_targets(vec![ghost.clone(), host("b", &["192.0.2.9"], &[])], 25).unwrap();
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].host, "b");
        // Addresses no connection can go to count as none.
        let useless = host(
            "u",
            &["0.0.0.0", "255.255.255.255", "224.0.0.1"],
            &["::", "ff02::1"],
        );
        assert_eq!(
            mx_targets(vec![ghost.clone(), useless], 25),
            Err(RouteError::NoAddress)
        );
        // One that failed and may come back makes it temporary.
        let flaky = HostAnswers {
            host: "flaky".into(),
            v4: Answer::Failed("timed out".into()),
            v6: Answer::NoRecords,
        };
        assert_eq!(
            mx_targets(vec![ghost, flaky], 25),
            Err(RouteError::Temporary(
                "A lookup for flaky: timed out".into()
            ))
        );
        // One family failing does not hide the other's addresses.
        let half = HostAnswers {
            host: "half".into(),
            v4: Answer::Failed("timed out".into()),
            v6: Answer::Records(vec!["2001:db8::3".parse().unwrap()]),
        };
        assert_eq!(mx_targets(vec![half], 25).unwrap()[0].addrs.len(), 1);
        let many: Vec<String> = (1..=40).map(|i| format!("192.0.2.{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            mx_targets(vec![host("m", &many, &[])], 25).unwrap()[0]
                .addrs
                .len(),
            MAX_ADDRESSES_PER_HOST
        );
    }

    #[test]
    fn a_configured_host_fails_temporarily() {
        let nx = HostAnswers {
            host: "relay.example".into(),
            v4: Answer::NoSuchDomain,
            v6: Answer::NoSuchDomain,
        };
        assert_eq!(
            host_target(nx, 25),
            Err(RouteError::Temporary(
                "configured host relay.example: no such domain".into()
            ))
        );
        assert_eq!(
            host_target(host("relay", &["192.0.2.5"], &[]), 2525).unwrap()[0].port,
            2525
        );
    }

    #[test]
    fn combining_steps() {
        let t = |h: &str, port| Target {
            host: h.into(),
            addrs: vec!["192.0.2.1".parse().unwrap()],
            port,
        };
        assert_eq!(
            combine(vec![
                Ok(vec![t("a", 25), t("b", 25)]),
                Err(RouteError::NullMx),
                Ok(vec![t("A", 25), t("a", 26)]),
            ]),
            Ok(vec![t("a", 25), t("b", 25), t("a", 26)])
        );
        assert_eq!(
            combine(vec![
                Err(RouteError::NullMx),
                Err(RouteError::Temporary("x".into())),
                Err(RouteError::NoSuchDomain),
            ]),
            Err(RouteError::Temporary("x".into()))
        );
        assert_eq!(
            combine(vec![Err(RouteError::NoSuchDomain), Err(RouteError::NullMx)]),
            Err(RouteError::NoSuchDomain)
        );
        assert_eq!(combine(vec![]), Err(RouteError::NoAddress));
    }

    quickcheck! {
        /// Any MX answer and any random source: no panic, preferences in
        /// order, every host a well-formed name, at most MAX_MX_HOSTS.
        fn exchanges_never_panic(records: Vec<(u16, String)>, random: Vec<usize>) -> bool {
            let answer = Answer::Records(
                records.iter().map(|(p, e)| mx(*p, e)).collect(),
            );
            let mut random = random.into_iter().cycle();
            match exchanges("d.example", answer, |_| random.next().unwrap_or(0)) {
                Ok(hosts) => hosts.len() <= MAX_MX_HOSTS && hosts.iter().all(|h| is_host_name(h)),
                Err(e) => matches!(e, RouteError::NullMx | RouteError::NoAddress),
            }
        }

        /// The order is a permutation sorted by preference.
        fn ordering_is_a_sorted_permutation(items: Vec<(u16, u8)>, random: Vec<usize>) -> bool {
            let mut random = random.into_iter().cycle();
            let ordered = order_by_preference(items.clone(), |_| random.next().unwrap_or(0));
            let mut a = items;
            let mut b = ordered.clone();
            a.sort();
            b.sort();
            a == b && ordered.windows(2).all(|w| w[0].0 <= w[1].0)
        }

        /// No domain text panics, and a name is always well-formed.
        fn destinations_never_panic(domain: String) -> bool {
            match destination(&domain) {
                Ok(Destination::Name(name)) => is_host_name(&name),
                Ok(Destination::Literal(_)) | Err(RouteError::InvalidDomain(_)) => true,
                Err(_) => false,
            }
        }
    }
}
