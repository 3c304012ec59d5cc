#![cfg(test)]
//! Routing through hickory's resolver against a DNS server of the test's
//! own on 127.0.0.1 (`common::dns`), named to the router by `Name_Servers`
//! as an operator would. Each test has its own server and its own router,
//! so that no cached answer of one test hides the behaviour another
//! checks.

mod common;

use std::net::IpAddr;
use std::path::Path;

use common::dns::{a, aaaa, answer, mx, DnsServer, Reply};
use hickory_proto::rr::RecordType;
use petrel::config::policy::Policies;
use petrel::route::{RouteError, Router, Target};

/// The test zone, under the reserved `.test`.
fn zone(owner: &str, kind: RecordType) -> Reply {
    use RecordType::{A as Q4, AAAA as Q6, MX as QMX};
    let records = match (owner, kind) {
        // Three MX hosts of two preferences.
        ("three.test", QMX) => vec![
            mx(20, "mx-c.three.test."),
            mx(10, "mx-a.three.test."),
            mx(10, "mx-b.three.test."),
        ],
        ("mx-a.three.test", Q4) => vec![a("127.0.0.11")],
        ("mx-b.three.test", Q4) => vec![a("127.0.0.12")],
        ("mx-b.three.test", Q6) => vec![aaaa("::1")],
        ("mx-c.three.test", Q4) => vec![a("127.0.0.13")],
        // No MX: the domain's own address.
        ("nomx.test", Q4) => vec![a("127.0.0.20")],
        // RFC 7505.
        ("nullmx.test", QMX) => vec![mx(0, ".")],
        // The only MX host does not exist.
        ("ghost.test", QMX) => vec![mx(10, "nowhere.ghost.test.")],
        // The first MX host does not exist, the second does.
        ("partial.test", QMX) => vec![mx(10, "nowhere.ghost.test."), mx(20, "mx-c.three.test.")],
        ("broken.test", _) => return Reply::ServFail,
        _ => Vec::new(),
    };
    let existing = [
        "three.test",
        "mx-a.three.test",
        "mx-b.three.test",
        "mx-c.three.test",
        "nomx.test",
        "nullmx.test",
        "ghost.test",
        "partial.test",
    ];
    answer(records, owner, &existing)
}

fn start_dns() -> DnsServer {
    DnsServer::start(zone)
}

/// The configuration an operator would write to use `dns`.
fn policies(dns: &DnsServer, rest: &str) -> Policies {
    let text = format!("Name_Servers = ( \"{}\" )\n{rest}", dns.addr);
    petrel::config::load_str("route.conf", &text, Path::new("/"))
        .unwrap_or_else(|e| panic!("{e:?}"))
        .policies
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn hosts(targets: &[Target]) -> Vec<&str> {
    targets.iter().map(|t| t.host.as_str()).collect()
}

/// Routes `domain` with a fresh router, as the configuration says.
async fn route(dns: &DnsServer, config: &str, domain: &str) -> Result<Vec<Target>, RouteError> {
    let policies = policies(dns, config);
    let router = Router::new(&policies.global.name_servers).unwrap();
    router
        .route(domain, &policies.outbound("default", domain))
        .await
}

#[tokio::test]
async fn mx_hosts_by_preference_in_both_orders_within_one() {
    let dns = start_dns();
    let policies = policies(&dns, "");
    let router = Router::new(&policies.global.name_servers).unwrap();
    let policy = policies.outbound("default", "three.test");
    let mut orders = std::collections::HashSet::new();
    // Each order of the two preference-10 hosts comes with probability
    // 1/2 per lookup: 200 lookups miss one with probability 2^-199.
    for _ in 0..200 {
        let targets = router.route("three.test", &policy).await.unwrap();
        assert_eq!(targets.len(), 3);
        assert_eq!(targets[2].host, "mx-c.three.test");
        assert_eq!(targets[2].addrs, [ip("127.0.0.13")]);
        for t in &targets {
            assert_eq!(t.port, 25);
            let expected = match t.host.as_str() {
                "mx-a.three.test" => vec![ip("127.0.0.11")],
                // IPv4 first.
                "mx-b.three.test" => vec![ip("127.0.0.12"), ip("::1")],
                "mx-c.three.test" => vec![ip("127.0.0.13")],
                other => panic!("{other}"),
            };
            assert_eq!(t.addrs, expected);
        }
        orders.insert((targets[0].host.clone(), targets[1].host.clone()));
        if orders.len() == 2 {
            break;
        }
    }
    assert_eq!(orders.len(), 2, "{orders:?}");
    // The resolver's cache answered the repeats.
    let mx_questions = dns
        .questions()
        .iter()
        .filter(|(n, t)| n == "three.test" && *t == RecordType::MX)
        .count();
    assert!(mx_questions < 10, "{mx_questions}");
}

#[tokio::test]
async fn no_mx_falls_back_to_the_domains_address() {
    let dns = start_dns();
    let targets = route(&dns, "Remote_SMTP_Port = 2525\n", "NoMX.test.")
        .await
        .unwrap();
    assert_eq!(
        targets,
        [Target {
            host: "nomx.test".into(),
            addrs: vec![ip("127.0.0.20")],
            port: 2525,
        }]
    );
}

#[tokio::test]
async fn null_mx_fails_permanently() {
    let dns = start_dns();
    let error = route(&dns, "", "nullmx.test").await.unwrap_err();
    assert_eq!(error, RouteError::NullMx);
    assert!(error.is_permanent());
    assert_eq!(error.enhanced_status(), "5.1.10");
    // It was not taken for a host to look up.
    assert!(dns.questions().iter().all(|(n, _)| n == "nullmx.test"));
}

#[tokio::test]
async fn a_domain_that_does_not_exist_fails_permanently() {
    let dns = start_dns();
    let error = route(&dns, "", "gone.test").await.unwrap_err();
    assert_eq!(error, RouteError::NoSuchDomain);
    assert!(error.is_permanent());
}

#[tokio::test]
async fn mx_hosts_without_addresses() {
    let dns = start_dns();
    // The only one: temporary.
    let error = route(&dns, "", "ghost.test").await.unwrap_err();
    assert_eq!(error, RouteError::NoAddress);
    assert!(!error.is_permanent());
    // One of two: the other.
    let targets = route(&dns, "", "partial.test").await.unwrap();
    assert_eq!(hosts(&targets), ["mx-c.three.test"]);
}

#[tokio::test]
async fn a_failing_name_server_fails_temporarily() {
    let dns = start_dns();
    let error = route(&dns, "", "broken.test").await.unwrap_err();
    assert!(matches!(error, RouteError::Temporary(_)), "{error:?}");
    assert!(
        error.to_string().contains("MX lookup for broken.test"),
        "{error}"
    );
    assert!(!error.is_permanent());
}

#[tokio::test]
async fn addresses_need_no_lookup() {
    let dns = start_dns();
    let config = "Remote_SMTP_Port = 2600\n\
        Domain \"gw.test\" { Gateway = \"127.0.0.1:2525\" }\n\
        Domain \"routes.test\" { Routes = ( \"smtp://[::1]:2526?pref=2\" \"smtp://127.0.0.1?pref=1\" ) }\n";
    let target = |host: &str, port| Target {
        host: host.into(),
        addrs: vec![ip(host)],
        port,
    };
    assert_eq!(
        route(&dns, config, "gw.test").await.unwrap(),
        [target("127.0.0.1", 2525)]
    );
    assert_eq!(
        route(&dns, config, "routes.test").await.unwrap(),
        [target("127.0.0.1", 2600), target("::1", 2526)]
    );
    assert_eq!(
        route(&dns, "", "[127.0.0.1]").await.unwrap(),
        [target("127.0.0.1", 25)]
    );
    assert_eq!(
        route(&dns, "", "[IPv6:::1]").await.unwrap(),
        [target("::1", 25)]
    );
    assert_eq!(dns.questions(), []);
}

#[tokio::test]
async fn routes_put_a_relay_before_the_mx() {
    let dns = start_dns();
    let config = "Routes = ( \"smtp://127.0.0.1:2525?pref=1\" \"__mx__\" )\n";
    let targets = route(&dns, config, "three.test").await.unwrap();
    assert_eq!(targets[0].host, "127.0.0.1");
    assert_eq!(targets[0].port, 2525);
    let mut rest = hosts(&targets[1..]);
    rest.sort_unstable();
    assert_eq!(
        rest,
        ["mx-a.three.test", "mx-b.three.test", "mx-c.three.test"]
    );
}

#[tokio::test]
async fn a_gateway_name_is_resolved_to_its_addresses_not_its_mx() {
    let dns = start_dns();
    let targets = route(
        &dns,
        "Gateway = \"mx-c.three.test:2527\"\n",
        "anything.test",
    )
    .await
    .unwrap();
    assert_eq!(
        targets,
        [Target {
            host: "mx-c.three.test".into(),
            addrs: vec![ip("127.0.0.13")],
            port: 2527,
        }]
    );
    let questions = dns.questions();
    assert!(questions
        .iter()
        .all(|(n, t)| n == "mx-c.three.test" && matches!(t, RecordType::A | RecordType::AAAA)));
    // A gateway that does not resolve is the operator's mistake: the
    // mail waits for it to be fixed, it does not bounce.
    let error = route(&dns, "Gateway = \"gone.test\"\n", "three.test")
        .await
        .unwrap_err();
    assert!(!error.is_permanent(), "{error:?}");
    assert!(error.to_string().contains("gone.test"), "{error}");
}

#[tokio::test]
async fn localhost_needs_no_name_server() {
    // End-to-end tests name their sinks "localhost"; it must resolve
    // without asking DNS (RFC 6761), whatever the name servers.
    let dns = start_dns();
    let targets = route(&dns, "Gateway = \"localhost:2525\"\n", "three.test")
        .await
        .unwrap();
    assert_eq!(hosts(&targets), ["localhost"]);
    assert!(targets[0].addrs.contains(&ip("127.0.0.1")), "{targets:?}");
    assert_eq!(targets[0].port, 2525);
    assert_eq!(dns.questions(), []);
}
