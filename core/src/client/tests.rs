use quickcheck::{quickcheck, Arbitrary, Gen, TestResult};

use super::*;
use crate::pair::{envelope, Faults, Pair, Scripted};
use crate::server::{self, ServerConfig};
use crate::tls::fake::FakeHandshake;
use crate::tls::{ClientTls, ClientTlsConfig, ServerTls, ServerTlsConfig, TlsEngine};
use crate::wire::command::ForwardPath;
use std::time::Duration;

fn plain_client() -> ClientConfig {
    let mut config = ClientConfig::new("client.test");
    config.tls_mode = TlsMode::No;
    config
}

fn deliveries(pair: &Pair) -> Vec<Vec<Delivery>> {
    pair.outcomes()
        .values()
        .map(|outcomes| outcomes.iter().map(|o| o.delivery).collect())
        .collect()
}

fn closed(pair: &Pair) -> Option<CloseReason> {
    pair.client_events.iter().find_map(|event| match event {
        Event::Closed(reason) => Some(reason.clone()),
        _ => None,
    })
}

const BODY: &[u8] = b"Subject: t\r\n\r\n.starts with a dot\r\n..two\r\n.\r\nend\r\n";

#[test]
fn delivers_pipelined_to_our_server() {
    for chunking in [true, false] {
        let mut server = ServerConfig::new("mx.test");
        server.extensions.chunking = chunking;
        let mut pair = Pair::ours(plain_client(), server);
        pair.submit(envelope("a@x.org", &["b@y.org", "c@y.org"]), BODY.to_vec());
        pair.submit(envelope("", &["d@y.org"]), b"bounce\r\n".to_vec());
        pair.client.quit(pair.now);
        pair.drive();
        assert_eq!(
            deliveries(&pair),
            [vec![Delivery::Delivered; 2], vec![Delivery::Delivered]]
        );
        assert_eq!(pair.delivered, [BODY.to_vec(), b"bounce\r\n".to_vec()]);
        assert_eq!(closed(&pair), Some(CloseReason::Quit));
        let wire = String::from_utf8_lossy(&pair.c2s_wire).into_owned();
        assert!(
            wire.contains("MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nRCPT TO:<c@y.org>\r\n"),
            "pipelined: {wire}"
        );
        assert_eq!(wire.contains("BDAT"), chunking, "{wire}");
    }
}

#[test]
fn lock_step_without_pipelining() {
    let mut server = ServerConfig::new("mx.test");
    server.extensions.pipelining = false;
    server.extensions.chunking = false;
    let mut pair = Pair::ours(plain_client(), server);
    pair.submit(envelope("a@x.org", &["b@y.org", "c@y.org"]), BODY.to_vec());
    pair.drive();
    assert_eq!(deliveries(&pair), [vec![Delivery::Delivered; 2]]);
    assert_eq!(pair.delivered, [BODY.to_vec()]);
}

#[test]
fn binary_bodies_go_by_bdat() {
    let mut pair = Pair::ours(plain_client(), ServerConfig::new("mx.test"));
    let body: Vec<u8> = (0..20_000u32).map(|i| (i % 256) as u8).collect();
    let mut env = envelope("a@x.org", &["b@y.org"]);
    env.params.body = Some(BodyType::BinaryMime);
    pair.body_chunk = 3000;
    pair.submit(env, body.clone());
    pair.drive();
    assert_eq!(deliveries(&pair), [vec![Delivery::Delivered]]);
    assert_eq!(pair.delivered, [body]);
}

#[test]
fn messages_the_server_cannot_take_fail_without_being_sent() {
    let mut server = ServerConfig::new("mx.test");
    server.limits.max_message_size = 1000;
    server.extensions.smtputf8 = false;
    server.extensions.chunking = false;
    let mut pair = Pair::ours(plain_client(), server);
    let mut big = envelope("big@x.org", &["b@y.org"]);
    big.params.size = Some(1001);
    let mut utf8 = envelope("utf8@x.org", &["b@y.org"]);
    utf8.params.smtputf8 = true;
    let mut binary = envelope("bin@x.org", &["b@y.org"]);
    binary.params.body = Some(BodyType::BinaryMime);
    for env in [big, utf8, binary] {
        pair.submit(env, b"x\r\n".to_vec());
    }
    pair.drive();
    let outcomes = pair.outcomes();
    let codes: Vec<String> = outcomes
        .values()
        .map(|o| o[0].reply.enhanced().unwrap().to_string())
        .collect();
    assert_eq!(codes, ["5.3.4", "5.6.7", "5.6.3"]);
    assert_eq!(deliveries(&pair), vec![vec![Delivery::Permanent]; 3]);
    assert!(!String::from_utf8_lossy(&pair.c2s_wire).contains("MAIL FROM"));
}

/// A scripted server that accepts everything but the recipients named.
fn script(refuse_rcpt: &'static str, extra: &'static str) -> Scripted {
    Scripted::new(move |line| {
        let upper = line.to_ascii_uppercase();
        let reply: &str = if upper.starts_with("EHLO") {
            "250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("RCPT") && line.contains(refuse_rcpt) {
            "550 5.1.1 no such user\r\n"
        } else if upper == "DATA" {
            "354 go\r\n"
        } else if upper == "QUIT" {
            return (b"221 bye\r\n".to_vec(), true);
        } else if upper.starts_with("MAIL") && !extra.is_empty() {
            return (format!("250 ok\r\n{extra}").into_bytes(), false);
        } else {
            "250 ok\r\n"
        };
        (reply.as_bytes().to_vec(), false)
    })
}

#[test]
fn per_recipient_outcomes() {
    let mut pair = Pair::scripted(plain_client(), script("bad@", ""));
    pair.submit(
        envelope("a@x.org", &["good@y.org", "bad@y.org"]),
        BODY.to_vec(),
    );
    pair.submit(envelope("a@x.org", &["bad@y.org"]), BODY.to_vec());
    pair.submit(envelope("a@x.org", &["good@y.org"]), BODY.to_vec());
    pair.client.quit(pair.now);
    pair.drive();
    assert_eq!(
        deliveries(&pair),
        [
            vec![Delivery::Delivered, Delivery::Permanent],
            vec![Delivery::Permanent],
            vec![Delivery::Delivered]
        ]
    );
    // The all-rejected transaction still got 354 from this server, so it
    // was ended with an empty body (RFC 2920 §3.1).
    if let crate::pair::Server::Scripted(s) = &pair.server {
        assert_eq!(s.bodies.len(), 3, "the empty body after a stray 354 counts");
        assert_eq!(s.bodies[0], BODY);
        assert!(s.bodies[1].is_empty());
    }
}

/// `count` recipients `r0@y.org`, `r1@y.org`, ...
fn many(count: usize) -> Envelope {
    let names: Vec<String> = (0..count).map(|n| format!("r{n}@y.org")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    envelope("a@x.org", &names)
}

/// The recipients our server accepted, transaction by transaction.
fn accepted_by_transaction(pair: &Pair) -> Vec<Vec<String>> {
    let mut all = vec![Vec::new()];
    for event in &pair.server_events {
        match event {
            server::Event::Rcpt {
                forward_path: ForwardPath::Mailbox(mailbox),
                ..
            } => {
                all.last_mut().unwrap().push(mailbox.local_part.clone());
            }
            server::Event::MessageEnd { .. } => all.push(Vec::new()),
            _ => {}
        }
    }
    all.retain(|batch| !batch.is_empty());
    all
}

#[test]
fn recipients_beyond_the_servers_limit_go_in_later_transactions() {
    // A server that does not announce its limit (no LIMITS): the client
    // learns it from the 452s of the first transaction, which carries our
    // own limit of 1000.
    for (pipelining, chunking) in [(true, false), (true, true), (false, false)] {
        let mut server = ServerConfig::new("mx.test");
        server.limits.max_recipients = 400;
        server.extensions.limits = false;
        server.extensions.pipelining = pipelining;
        server.extensions.chunking = chunking;
        let mut pair = Pair::ours(plain_client(), server);
        pair.submit(many(2500), BODY.to_vec());
        pair.client.quit(pair.now);
        pair.drive();
        let label = format!("pipelining {pipelining}, chunking {chunking}");
        let outcomes = &pair.outcomes()[&TransactionId(0)];
        let not_delivered: Vec<_> = outcomes
            .iter()
            .filter(|o| o.delivery != Delivery::Delivered)
            .collect();
        assert_eq!(outcomes.len(), 2500, "{label}");
        assert!(
            not_delivered.is_empty(),
            "{label}: {} not delivered, first {:?}, closed {:?}",
            not_delivered.len(),
            not_delivered.first(),
            closed(&pair)
        );
        assert_eq!(pair.delivered, vec![BODY.to_vec(); 7], "{label}");
        let batches = accepted_by_transaction(&pair);
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [400, 400, 400, 400, 400, 400, 100], "{label}");
        let expected: Vec<String> = (0..2500).map(|n| format!("r{n}")).collect();
        assert_eq!(
            batches.concat(),
            expected,
            "each recipient once, in order: {label}"
        );
        // Pipelined, the first transaction carries 1000 and 600 come back
        // 452; lock-step stops at the first 452. Later transactions keep to
        // the limit learnt.
        let rcpts = String::from_utf8_lossy(&pair.c2s_wire)
            .matches("RCPT TO")
            .count();
        assert_eq!(rcpts, if pipelining { 3100 } else { 2501 }, "{label}");
        assert_eq!(closed(&pair), Some(CloseReason::Quit), "{label}");
    }
}

#[test]
fn announced_recipient_limit_is_kept_from_the_start() {
    let mut client = plain_client();
    client.max_recipients_per_transaction = 10_000;
    let mut pair = Pair::ours(client, ServerConfig::new("mx.test"));
    pair.submit(many(2500), BODY.to_vec());
    pair.drive();
    let outcomes = &pair.outcomes()[&TransactionId(0)];
    assert_eq!(outcomes.len(), 2500);
    assert!(outcomes.iter().all(|o| o.delivery == Delivery::Delivered));
    let sizes: Vec<usize> = accepted_by_transaction(&pair)
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(sizes, [1000, 1000, 500]);
    let wire = String::from_utf8_lossy(&pair.c2s_wire).into_owned();
    assert_eq!(wire.matches("RCPT TO").count(), 2500, "no RCPT was refused");
}

#[test]
fn our_own_recipient_limit_splits_transactions() {
    let mut client = plain_client();
    client.max_recipients_per_transaction = 2;
    let mut pair = Pair::scripted(client, script("r1@", ""));
    pair.submit(many(5), BODY.to_vec());
    pair.drive();
    assert_eq!(
        deliveries(&pair),
        [vec![
            Delivery::Delivered,
            Delivery::Permanent,
            Delivery::Delivered,
            Delivery::Delivered,
            Delivery::Delivered
        ]]
    );
    if let crate::pair::Server::Scripted(s) = &pair.server {
        assert_eq!(s.bodies, vec![BODY.to_vec(); 3]);
    }
}

/// A scripted server that takes `limit` recipients per transaction and
/// answers every further RCPT with `over`.
fn limited(limit: usize, over: &'static str, data_end: &'static str) -> Scripted {
    let mut taken = 0;
    Scripted::new(move |line| {
        let upper = line.to_ascii_uppercase();
        let reply: &str = if line == "." {
            data_end
        } else if upper.starts_with("EHLO") {
            "250-scripted\r\n250 PIPELINING\r\n"
        } else if upper.starts_with("MAIL") {
            taken = 0;
            "250 ok\r\n"
        } else if upper.starts_with("RCPT") && taken >= limit {
            over
        } else if upper.starts_with("RCPT") {
            taken += 1;
            "250 ok\r\n"
        } else if upper == "DATA" && taken == 0 {
            "554 5.5.1 no valid recipients\r\n"
        } else if upper == "DATA" {
            "354 go\r\n"
        } else if upper == "QUIT" {
            return (b"221 bye\r\n".to_vec(), true);
        } else {
            "250 ok\r\n"
        };
        (reply.as_bytes().to_vec(), false)
    })
}

#[test]
fn a_server_that_takes_no_recipient_ends_the_rounds() {
    // Every RCPT refused as too many: no progress, so no second round;
    // every recipient is transient with the server's 452.
    let mut pair = Pair::scripted(
        plain_client(),
        limited(0, "452 4.5.3 too many\r\n", "250 ok\r\n"),
    );
    pair.submit(many(3), BODY.to_vec());
    pair.client.quit(pair.now);
    pair.drive();
    assert_eq!(deliveries(&pair), [vec![Delivery::Transient; 3]]);
    assert!(pair.outcomes()[&TransactionId(0)]
        .iter()
        .all(|o| o.reply.code() == 452));
    let wire = String::from_utf8_lossy(&pair.c2s_wire).into_owned();
    assert_eq!(wire.matches("MAIL FROM").count(), 1, "{wire}");
    assert_eq!(closed(&pair), Some(CloseReason::Quit));
}

#[test]
fn a_server_that_takes_no_recipient_with_552_5_5_3_defers_too() {
    let mut pair = Pair::scripted(
        plain_client(),
        limited(0, "552 5.5.3 too many\r\n", "250 ok\r\n"),
    );
    pair.submit(many(3), BODY.to_vec());
    pair.drive();
    assert_eq!(deliveries(&pair), [vec![Delivery::Transient; 3]]);
}

#[test]
fn a_552_5_5_3_is_too_many_recipients_too() {
    let mut pair = Pair::scripted(
        plain_client(),
        limited(2, "552 5.5.3 too many\r\n", "250 ok\r\n"),
    );
    pair.submit(many(5), BODY.to_vec());
    pair.drive();
    assert_eq!(deliveries(&pair), [vec![Delivery::Delivered; 5]]);
    if let crate::pair::Server::Scripted(s) = &pair.server {
        assert_eq!(s.bodies.len(), 3);
    }
}

#[test]
fn a_refused_body_is_the_outcome_of_the_recipients_not_yet_sent() {
    // The server refuses the message itself: the recipients waiting for a
    // later transaction share that outcome instead of being sent again.
    let mut pair = Pair::scripted(
        plain_client(),
        limited(2, "452 4.5.3 too many\r\n", "554 5.7.1 content refused\r\n"),
    );
    pair.submit(many(5), BODY.to_vec());
    pair.drive();
    assert_eq!(deliveries(&pair), [vec![Delivery::Permanent; 5]]);
    assert!(pair.outcomes()[&TransactionId(0)]
        .iter()
        .all(|o| o.reply.code() == 554));
    let wire = String::from_utf8_lossy(&pair.c2s_wire).into_owned();
    assert_eq!(wire.matches("MAIL FROM").count(), 1, "{wire}");
}

#[test]
fn service_closing_421_mid_transaction() {
    let mut pair = Pair::scripted(
        plain_client(),
        Scripted::new(|line| {
            if line.starts_with("RCPT") {
                (b"421 4.3.0 going down\r\n".to_vec(), true)
            } else if line.starts_with("EHLO") {
                (b"250 scripted\r\n".to_vec(), false)
            } else {
                (b"250 ok\r\n".to_vec(), false)
            }
        }),
    );
    pair.submit(envelope("a@x.org", &["b@y.org", "c@y.org"]), BODY.to_vec());
    pair.submit(envelope("a@x.org", &["d@y.org"]), BODY.to_vec());
    pair.drive();
    assert_eq!(
        deliveries(&pair),
        [vec![Delivery::Transient; 2], vec![Delivery::Transient]]
    );
    assert_eq!(closed(&pair), Some(CloseReason::ServiceClosing));
    assert_eq!(pair.outcomes()[&TransactionId(0)][0].reply.code(), 421);
}

#[test]
fn extra_replies_to_a_pipelined_group_are_a_protocol_error() {
    let mut pair = Pair::scripted(plain_client(), script("none", "250 surplus\r\n"));
    pair.submit(envelope("a@x.org", &["b@y.org"]), BODY.to_vec());
    pair.submit(envelope("a@x.org", &["c@y.org"]), BODY.to_vec());
    pair.client.quit(pair.now);
    pair.drive();
    let all: Vec<Delivery> = deliveries(&pair).concat();
    assert_eq!(all.len(), 2, "every recipient has one outcome");
    assert!(
        matches!(closed(&pair), Some(CloseReason::Protocol(_))),
        "{:?}",
        closed(&pair)
    );
}

#[test]
fn server_timeout_makes_every_recipient_transient() {
    let mut pair = Pair::ours(plain_client(), ServerConfig::new("mx.test"));
    pair.faults = Faults {
        stall_after_s2c: Some(200),
        ..Faults::default()
    };
    pair.submit(envelope("a@x.org", &["b@y.org"]), BODY.to_vec());
    pair.drive();
    assert_eq!(deliveries(&pair), [vec![Delivery::Transient]]);
    assert_eq!(closed(&pair), Some(CloseReason::Timeout));
}

/// STARTTLS answered by a script: `after_ehlo` decides what STARTTLS gets.
fn tls_script(offer: bool, starttls_reply: &'static [u8]) -> Scripted {
    Scripted::new(move |line| {
        if line.starts_with("EHLO") {
            let ehlo: &[u8] = if offer {
                b"250-scripted\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
            } else {
                b"250-scripted\r\n250 PIPELINING\r\n"
            };
            (ehlo.to_vec(), false)
        } else if line == "STARTTLS" {
            (starttls_reply.to_vec(), false)
        } else if line == "QUIT" {
            (b"221 bye\r\n".to_vec(), true)
        } else if line == "DATA" {
            (b"354 go\r\n".to_vec(), false)
        } else {
            (b"250 ok\r\n".to_vec(), false)
        }
    })
}

fn tls_client(mode: TlsMode, fallback: bool) -> ClientConfig {
    let mut config = ClientConfig::new("client.test");
    config.tls_mode = mode;
    config.tls_fallback = fallback;
    config.tls = Some(ClientTls::new(&ClientTlsConfig::new(TlsEngine::Rustls)).unwrap());
    config
}

fn run_tls_script(mode: TlsMode, fallback: bool, offer: bool, reply: &'static [u8]) -> Pair {
    let mut pair = Pair::scripted(tls_client(mode, fallback), tls_script(offer, reply));
    pair.submit(envelope("a@x.org", &["b@y.org"]), BODY.to_vec());
    pair.client.quit(pair.now);
    pair.drive();
    pair
}

fn decision(pair: &Pair) -> (TlsOutcome, TlsAction) {
    pair.client_events
        .iter()
        .find_map(|event| match event {
            Event::TlsDecision { outcome, action } => Some((outcome.clone(), action.clone())),
            _ => None,
        })
        .unwrap()
}

#[test]
fn starttls_not_offered() {
    let pair = run_tls_script(TlsMode::IfAvailable, true, false, b"");
    assert_eq!(
        decision(&pair),
        (TlsOutcome::NotOffered, TlsAction::ContinuePlaintext)
    );
    assert_eq!(deliveries(&pair), [vec![Delivery::Delivered]]);

    let pair = run_tls_script(TlsMode::Required, true, false, b"");
    assert_eq!(deliveries(&pair), [vec![Delivery::Transient]]);
    let reply = &pair.outcomes()[&TransactionId(0)][0].reply;
    assert_eq!(
        reply.to_string(),
        "451 4.7.6 [internal] STARTTLS required but not advertised"
    );
    assert!(!String::from_utf8_lossy(&pair.c2s_wire).contains("MAIL FROM"));
    assert_eq!(closed(&pair), Some(CloseReason::TlsDeferred));
}

#[test]
fn starttls_refused() {
    let pair = run_tls_script(TlsMode::IfAvailable, true, true, b"454 4.7.0 not now\r\n");
    assert_eq!(decision(&pair).1, TlsAction::ReconnectPlaintext);
    assert_eq!(closed(&pair), Some(CloseReason::ReconnectPlaintext));
    assert_eq!(deliveries(&pair), [vec![Delivery::Transient]]);
    let wire = String::from_utf8_lossy(&pair.c2s_wire).into_owned();
    assert!(
        !wire.contains("MAIL FROM"),
        "never on the same socket: {wire}"
    );

    let pair = run_tls_script(TlsMode::IfAvailable, false, true, b"454 4.7.0 not now\r\n");
    let reply = &pair.outcomes()[&TransactionId(0)][0].reply;
    assert_eq!(reply.to_string(), "451 4.7.5 [internal] no tls go-ahead");

    let pair = run_tls_script(TlsMode::Required, true, true, b"554 5.7.0 no\r\n");
    assert_eq!(closed(&pair), Some(CloseReason::TlsDeferred));
    assert!(!String::from_utf8_lossy(&pair.c2s_wire).contains("MAIL FROM"));
}

#[test]
fn response_injection_after_220_aborts_the_attempt() {
    let pair = run_tls_script(
        TlsMode::IfAvailable,
        true,
        true,
        b"220 go\r\n250 injected\r\n",
    );
    match decision(&pair) {
        (TlsOutcome::HandshakeFailed(why), TlsAction::ReconnectPlaintext) => {
            assert_eq!(why, HandshakeFailure::DataAfterGoAhead)
        }
        other => panic!("{other:?}"),
    }
    let wire = String::from_utf8_lossy(&pair.c2s_wire).into_owned();
    assert!(
        wire.ends_with("STARTTLS\r\n"),
        "nothing after the 220: {wire:?}"
    );
}

#[test]
fn broken_handshake_and_handshake_timeout() {
    let pair = run_tls_script(TlsMode::Required, true, true, b"220 go\r\n");
    // The script answers the ClientHello's bytes as if they were lines: a
    // broken handshake, or none at all.
    let (outcome, action) = decision(&pair);
    assert!(
        matches!(
            outcome,
            TlsOutcome::HandshakeFailed(_) | TlsOutcome::HandshakeTimedOut
        ),
        "{outcome:?}"
    );
    assert!(matches!(action, TlsAction::Defer(_)));
    assert_eq!(deliveries(&pair), [vec![Delivery::Transient]]);
    let wire = &pair.c2s_wire;
    assert!(!String::from_utf8_lossy(wire).contains("MAIL FROM"));
}

fn tls_server(engine: TlsEngine) -> ServerConfig {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let tls = ServerTlsConfig::new(
        engine,
        key.cert.pem().into_bytes(),
        key.signing_key.serialize_pem().into_bytes(),
    );
    let mut config = ServerConfig::new("mx.test");
    config.tls = Some(ServerTls::new(&tls).unwrap());
    config
}

#[test]
fn starttls_between_our_client_and_our_server_with_every_engine_pair() {
    let engines: Vec<TlsEngine> = TlsEngine::ALL
        .into_iter()
        .filter(|e| e.is_available())
        .collect();
    for &server_engine in &engines {
        for &client_engine in &engines {
            let mut client = tls_client(TlsMode::Required, false);
            client.tls = Some(ClientTls::new(&ClientTlsConfig::new(client_engine)).unwrap());
            let mut pair = Pair::ours(client, tls_server(server_engine));
            pair.submit(envelope("a@x.org", &["b@y.org"]), BODY.to_vec());
            pair.client.quit(pair.now);
            pair.drive();
            let what = format!("client {client_engine}, server {server_engine}");
            assert_eq!(deliveries(&pair), [vec![Delivery::Delivered]], "{what}");
            assert_eq!(pair.delivered, [BODY.to_vec()], "{what}");
            assert!(
                pair.client_events
                    .iter()
                    .any(|e| matches!(e, Event::TlsEstablished(_))),
                "{what}"
            );
            // EHLO twice, and the second one's capabilities lack STARTTLS.
            let caps: Vec<&Capabilities> = pair
                .client_events
                .iter()
                .filter_map(|e| match e {
                    Event::Capabilities(c) => Some(c),
                    _ => None,
                })
                .collect();
            assert_eq!(caps.len(), 2, "{what}");
            assert!(caps[0].starttls && !caps[1].starttls, "{what}");
            assert!(
                !String::from_utf8_lossy(&pair.c2s_wire).contains("MAIL FROM"),
                "{what}"
            );
            assert_eq!(closed(&pair), Some(CloseReason::Quit), "{what}");
        }
    }
}

#[test]
fn connection_lost_at_every_byte() {
    // A reference run tells how many octets each way a session takes.
    let run = |faults: Faults| {
        let mut pair = Pair::ours(plain_client(), ServerConfig::new("mx.test"));
        pair.faults = faults;
        pair.submit(envelope("a@x.org", &["b@y.org", "c@y.org"]), BODY.to_vec());
        pair.submit(envelope("a@x.org", &["d@y.org"]), BODY.to_vec());
        pair.client.quit(pair.now);
        pair.drive();
        pair
    };
    let reference = run(Faults::default());
    for at in 0..reference.c2s_wire.len() {
        let pair = run(Faults {
            close_after_c2s: Some(at),
            ..Faults::default()
        });
        check_outcomes(&pair, &[2, 1]);
    }
    for at in 0..reference.s2c_sent {
        let pair = run(Faults {
            close_after_s2c: Some(at),
            ..Faults::default()
        });
        check_outcomes(&pair, &[2, 1]);
        let pair = run(Faults {
            corrupt_s2c: Some(at),
            ..Faults::default()
        });
        check_outcomes(&pair, &[2, 1]);
    }
}

/// Every recipient has exactly one outcome, and what was delivered arrived
/// intact.
fn check_outcomes(pair: &Pair, recipients: &[usize]) {
    let outcomes = pair.outcomes();
    assert_eq!(outcomes.len(), recipients.len(), "{:?}", pair.client_events);
    for (outcomes, &count) in outcomes.values().zip(recipients) {
        let indices: Vec<usize> = outcomes.iter().map(|o| o.recipient).collect();
        assert_eq!(indices, (0..count).collect::<Vec<_>>());
    }
    assert!(pair.client.is_closed() || pair.client.is_idle());
    for (id, outcomes) in &outcomes {
        if outcomes.iter().any(|o| o.delivery == Delivery::Delivered) {
            assert!(
                pair.delivered.contains(&pair.bodies[id]),
                "delivered body differs"
            );
        }
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    messages: Vec<(usize, Vec<u8>, bool)>,
    faults: Faults,
    mode: TlsMode,
    server_tls: bool,
    pipelining: bool,
    chunking: bool,
}

impl Arbitrary for Scenario {
    fn arbitrary(g: &mut Gen) -> Self {
        let lines = [
            &b"plain line\r\n"[..],
            b".dot\r\n",
            b"..\r\n",
            b"\r\n",
            b".\r\n",
            b"\xc3\xa9t\xc3\xa9\r\n",
        ];
        let messages = (0..1 + usize::arbitrary(g) % 3)
            .map(|_| {
                let body: Vec<u8> = (0..usize::arbitrary(g) % 8)
                    .flat_map(|_| g.choose(&lines).unwrap().to_vec())
                    .collect();
                (1 + usize::arbitrary(g) % 3, body, bool::arbitrary(g))
            })
            .collect();
        let fault = |g: &mut Gen| (u8::arbitrary(g) % 3 == 0).then(|| usize::arbitrary(g) % 600);
        Scenario {
            messages,
            faults: Faults {
                close_after_c2s: fault(g),
                close_after_s2c: fault(g),
                stall_after_s2c: fault(g),
                corrupt_s2c: fault(g),
            },
            mode: *g
                .choose(&[TlsMode::No, TlsMode::IfAvailable, TlsMode::Required])
                .unwrap(),
            server_tls: bool::arbitrary(g),
            pipelining: bool::arbitrary(g),
            chunking: bool::arbitrary(g),
        }
    }
}

quickcheck! {
    fn every_recipient_ends_in_exactly_one_outcome(s: Scenario) -> TestResult {
        let mut server = if s.server_tls { tls_server(TlsEngine::Rustls) } else { ServerConfig::new("mx.test") };
        server.extensions.pipelining = s.pipelining;
        server.extensions.chunking = s.chunking;
        let mut pair = Pair::ours(tls_client(s.mode, true), server);
        pair.faults = s.faults;
        for (index, (recipients, body, binary)) in s.messages.iter().enumerate() {
            let to: Vec<String> = (0..*recipients).map(|r| format!("r{r}@m{index}.test")).collect();
            let to: Vec<&str> = to.iter().map(String::as_str).collect();
            let mut env = envelope("a@x.org", &to);
            if *binary {
                env.params.body = Some(BodyType::BinaryMime);
            }
            pair.submit(env, body.clone());
        }
        pair.client.quit(pair.now);
        pair.drive();
        let counts: Vec<usize> = s.messages.iter().map(|m| m.0).collect();
        check_outcomes(&pair, &counts);
        if s.mode == TlsMode::Required {
            assert!(!String::from_utf8_lossy(&pair.c2s_wire).contains("MAIL FROM"));
        }
        TestResult::passed()
    }

    fn client_chunking_invariance(splits: Vec<usize>) -> bool {
        replay(&[]) == replay(&splits)
    }
}

/// Server replies for two messages, fed to a fresh client in the given
/// pieces; returns what the client sent and its events.
fn replay(splits: &[usize]) -> (Vec<u8>, Vec<Event>) {
    let replies: &[u8] = b"220 mx ESMTP\r\n250-mx\r\n250-PIPELINING\r\n250 SIZE 1000\r\n\
250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n250 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n451 4.3.0 later\r\n221 bye\r\n";
    let now = crate::pair::origin();
    let mut client = ClientSession::new(Arc::new(plain_client()), "mx", ConnectionKind::First, now);
    client.submit(now, envelope("a@x.org", &["b@y.org", "c@y.org"]));
    client.submit(now, envelope("a@x.org", &["d@y.org"]));
    client.quit(now);
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut rest = replies;
    let mut pieces = splits.to_vec();
    pieces.push(usize::MAX);
    for split in pieces {
        let (piece, later) = rest.split_at(split.min(rest.len()));
        rest = later;
        client.handle_input(now, piece);
        loop {
            client.poll_transmit(&mut out);
            let Some(event) = client.poll_event() else {
                break;
            };
            if let Event::BodyWanted(_) = event {
                client.send_body(now, BODY).unwrap();
                client.finish_body(now).unwrap();
            }
            events.push(event);
        }
    }
    (out, events)
}

/// Takes events up to the first `BodyWanted`, as a driver would before
/// streaming the body; the transaction it names.
fn take_body_wanted(client: &mut ClientSession) -> TransactionId {
    while let Some(event) = client.poll_event() {
        if let Event::BodyWanted(id) = event {
            return id;
        }
    }
    panic!("no BodyWanted");
}

#[test]
fn a_body_is_taken_only_once_its_body_wanted_is() {
    // Found by the client_session fuzz target: the server takes one
    // recipient a transaction, so the second goes in a second round,
    // whose body is wanted as soon as the replies to its MAIL and RCPT are
    // in. A `finish_body` then, before the application had seen the
    // round's `BodyWanted`, was taken, and the event asked afterwards for
    // a body already sent.
    let now = crate::pair::origin();
    let mut config = plain_client();
    config.chunking = true;
    let mut client = ClientSession::new(Arc::new(config), "mx", ConnectionKind::First, now);
    let id = client.submit(now, envelope("a@x.org", &["b@y.org", "c@y.org"]));
    let mut out = Vec::new();
    let mut exchange = |client: &mut ClientSession, replies: &[u8]| {
        client.handle_input(now, replies);
        client.poll_transmit(&mut out);
    };
    exchange(&mut client, b"220 mx\r\n");
    exchange(&mut client, b"250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
    // MAIL, the first RCPT taken, the second refused as one too many.
    exchange(&mut client, b"250 ok\r\n250 ok\r\n452 4.5.3 too many\r\n");
    for round in 1..=2 {
        // Wanted, but not taken before the application has seen so.
        assert!(!client.wants_body(), "round {round}");
        assert!(matches!(client.finish_body(now), Err(BodyError::NotWanted)));
        assert!(matches!(
            client.send_body(now, b"x"),
            Err(BodyError::NotWanted)
        ));
        assert_eq!(take_body_wanted(&mut client), id, "round {round}");
        assert!(client.wants_body(), "round {round}");
        client.finish_body(now).unwrap();
        exchange(&mut client, b"250 ok\r\n");
        if round == 1 {
            // The second round's MAIL and RCPT.
            exchange(&mut client, b"250 ok\r\n250 ok\r\n");
        }
    }
    let events: Vec<Event> = std::iter::from_fn(|| client.poll_event()).collect();
    assert!(
        matches!(events.as_slice(), [Event::TransactionDone { outcomes, .. }] if outcomes.len() == 2),
        "{events:?}"
    );
}

#[test]
fn a_plaintext_only_connection_never_carries_required_mail() {
    let now = crate::pair::origin();
    for (mode, fallback, delivered) in [
        (TlsMode::Required, true, false),
        (TlsMode::IfAvailable, false, false),
        (TlsMode::IfAvailable, true, true),
    ] {
        let mut client = ClientSession::new(
            Arc::new(tls_client(mode, fallback)),
            "mx",
            ConnectionKind::PlaintextFallback,
            now,
        );
        client.submit(now, envelope("a@x.org", &["b@y.org"]));
        client.handle_input(now, b"220 mx\r\n250-mx\r\n250 STARTTLS\r\n");
        let mut out = Vec::new();
        client.poll_transmit(&mut out);
        let wire = String::from_utf8_lossy(&out).into_owned();
        assert_eq!(
            wire.contains("MAIL FROM"),
            delivered,
            "{mode} {fallback}: {wire}"
        );
        assert!(!wire.contains("STARTTLS"), "{wire}");
    }
}

#[test]
fn a_connection_lost_right_after_starttls_is_judged_by_the_policy() {
    let pair = {
        let mut pair = Pair::scripted(
            tls_client(TlsMode::IfAvailable, true),
            tls_script(true, b""),
        );
        if let crate::pair::Server::Scripted(s) = &mut pair.server {
            // Drop the connection instead of answering STARTTLS.
            s.answer = Box::new(|line| {
                if line.starts_with("EHLO") {
                    (b"250-scripted\r\n250 STARTTLS\r\n".to_vec(), false)
                } else {
                    (Vec::new(), true)
                }
            });
        }
        pair.submit(envelope("a@x.org", &["b@y.org"]), BODY.to_vec());
        pair.drive();
        pair
    };
    assert!(matches!(
        decision(&pair),
        (
            TlsOutcome::HandshakeFailed(_),
            TlsAction::ReconnectPlaintext
        )
    ));
    assert_eq!(closed(&pair), Some(CloseReason::ReconnectPlaintext));
}

#[test]
fn a_body_that_stops_moving_times_out_and_nothing_queued_is_sent_after() {
    let now = crate::pair::origin();
    let mut client = ClientSession::new(Arc::new(plain_client()), "mx", ConnectionKind::First, now);
    client.submit(now, envelope("a@x.org", &["b@y.org"]));
    client.handle_input(now, b"220 mx\r\n250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    let mut out = Vec::new();
    client.poll_transmit(&mut out);
    take_body_wanted(&mut client);
    assert!(client.wants_body());
    client.send_body(now, b"part of a body\r\n").unwrap();
    // The driver can no longer write: nothing is taken, the body stalls.
    let deadline = client.poll_timeout().unwrap();
    assert_eq!(deadline, now + ClientTimeouts::default().data_block);
    client.handle_timeout(deadline);
    assert!(client.is_closed());
    let mut after = Vec::new();
    assert_eq!(client.poll_transmit(&mut after), 0, "{after:?}");
    let outcomes: Vec<Event> = std::iter::from_fn(|| client.poll_event()).collect();
    assert!(outcomes
        .iter()
        .any(|e| matches!(e, Event::TransactionDone { outcomes, .. }
        if outcomes[0].delivery == Delivery::Transient)));
}

/// The outcome of a one-recipient message when the server says `said` in
/// the middle of its body and hangs up.
fn outcome_after_mid_body(said: &[u8]) -> RecipientOutcome {
    let now = crate::pair::origin();
    let mut client = ClientSession::new(Arc::new(plain_client()), "mx", ConnectionKind::First, now);
    client.submit(now, envelope("a@x.org", &["b@y.org"]));
    client.handle_input(now, b"220 mx\r\n250 mx\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    take_body_wanted(&mut client);
    client.send_body(now, b"a first part\r\n").unwrap();
    client.handle_input(now, said);
    client.handle_eof(now);
    std::iter::from_fn(|| client.poll_event())
        .find_map(|e| match e {
            Event::TransactionDone { mut outcomes, .. } => outcomes.pop(),
            _ => None,
        })
        .unwrap()
}

#[test]
fn a_refusal_in_the_middle_of_a_body_is_the_outcome() {
    let done = outcome_after_mid_body(b"552 5.3.4 too big for us\r\n");
    assert_eq!(done.delivery, Delivery::Permanent);
    assert_eq!(done.reply.code(), 552);
}

/// Our client and server over the fake TLS engine, whose handshakes go as
/// told: STARTTLS in virtual time.
fn fake_tls_pair(
    mode: TlsMode,
    fallback: bool,
    server: FakeHandshake,
    client: FakeHandshake,
) -> Pair {
    let mut client_config = ClientConfig::new("client.test");
    client_config.tls_mode = mode;
    client_config.tls_fallback = fallback;
    client_config.tls = Some(ClientTls::fake(TlsVerify::Host, client));
    let mut server_config = ServerConfig::new("mx.test");
    server_config.tls = Some(ServerTls::fake(server));
    // The client's handshake timeout, not the server's, is under test.
    server_config.timeouts.tls_handshake = Duration::from_secs(3600);
    let mut pair = Pair::ours(client_config, server_config);
    pair.submit(envelope("a@x.org", &["b@y.org"]), BODY.to_vec());
    pair.client.quit(pair.now);
    pair.drive();
    pair
}

#[test]
fn starttls_through_the_fake_engine() {
    let pair = fake_tls_pair(
        TlsMode::Required,
        false,
        FakeHandshake::Completes,
        FakeHandshake::Completes,
    );
    assert_eq!(
        decision(&pair),
        (TlsOutcome::Established, TlsAction::ProceedTls)
    );
    assert_eq!(deliveries(&pair), [vec![Delivery::Delivered]]);
    assert_eq!(pair.delivered, [BODY.to_vec()]);
    // After the handshake only fake records cross: MAIL is never in clear.
    let wire = String::from_utf8_lossy(&pair.c2s_wire).into_owned();
    let (before, after) = wire.split_once("FAKE-HELLO\n").unwrap();
    assert!(before.ends_with("STARTTLS\r\n"), "{before}");
    assert!(!before.contains("MAIL FROM"), "{before}");
    assert!(after.starts_with('D'), "{after}");
    assert_eq!(closed(&pair), Some(CloseReason::Quit));
}

#[test]
fn a_stalled_handshake_is_a_failed_attempt_once_its_timeout_passes() {
    let start = crate::pair::origin();
    for (mode, fallback, action) in [
        (TlsMode::IfAvailable, true, TlsAction::ReconnectPlaintext),
        (
            TlsMode::IfAvailable,
            false,
            TlsAction::Defer(Reply::new(
                451,
                Some(EnhancedCode::new(4, 7, 5)),
                "[internal] TLS negotiation failed",
            )),
        ),
        (
            TlsMode::Required,
            true,
            TlsAction::Defer(Reply::new(
                451,
                Some(EnhancedCode::new(4, 7, 5)),
                "[internal] TLS negotiation failed",
            )),
        ),
    ] {
        let pair = fake_tls_pair(
            mode,
            fallback,
            FakeHandshake::Stalls,
            FakeHandshake::Completes,
        );
        let (outcome, taken) = decision(&pair);
        assert_eq!(outcome, TlsOutcome::HandshakeTimedOut, "{mode} {fallback}");
        assert_eq!(taken, action, "{mode} {fallback}");
        assert_eq!(deliveries(&pair), [vec![Delivery::Transient]]);
        // The client's one-minute handshake timeout decided (the server's
        // is an hour), in virtual time.
        assert!(pair.now >= start + Duration::from_secs(60), "{mode}");
        assert!(!String::from_utf8_lossy(&pair.c2s_wire).contains("MAIL FROM"));
    }
}

#[test]
fn fake_handshake_failures_go_to_the_policy() {
    let pair = fake_tls_pair(
        TlsMode::IfAvailable,
        true,
        FakeHandshake::Refused,
        FakeHandshake::Completes,
    );
    assert!(
        matches!(
            decision(&pair),
            (
                TlsOutcome::HandshakeFailed(_),
                TlsAction::ReconnectPlaintext
            )
        ),
        "{:?}",
        decision(&pair)
    );
    let pair = fake_tls_pair(
        TlsMode::Required,
        false,
        FakeHandshake::Completes,
        FakeHandshake::CertificateRejected,
    );
    assert!(
        matches!(
            decision(&pair),
            (TlsOutcome::CertificateRejected(_), TlsAction::Defer(_))
        ),
        "{:?}",
        decision(&pair)
    );
    assert_eq!(deliveries(&pair), [vec![Delivery::Transient]]);
}

#[test]
fn a_530_on_the_plaintext_fallback_connection_defers() {
    // The server wants the TLS that failed on the first connection.
    let script = Scripted::new(|line| {
        let reply: &[u8] = if line.starts_with("EHLO") {
            b"250-scripted\r\n250 PIPELINING\r\n"
        } else if line.starts_with("MAIL") {
            b"530 5.7.0 Must issue a STARTTLS command first\r\n"
        } else if line == "QUIT" {
            return (b"221 bye\r\n".to_vec(), true);
        } else {
            b"503 5.5.1 no transaction\r\n"
        };
        (reply.to_vec(), false)
    });
    let mut pair = Pair::scripted(tls_client(TlsMode::IfAvailable, true), script);
    let config = Arc::new(tls_client(TlsMode::IfAvailable, true));
    pair.client = ClientSession::new(config, "mx", ConnectionKind::PlaintextFallback, pair.now);
    pair.submit(envelope("a@x.org", &["b@y.org", "c@y.org"]), BODY.to_vec());
    pair.client.quit(pair.now);
    pair.drive();
    assert_eq!(deliveries(&pair), [vec![Delivery::Transient; 2]]);
    let reply = &pair.outcomes()[&TransactionId(0)][0].reply;
    assert_eq!(
        reply.enhanced(),
        Some(EnhancedCode::new(4, 7, 0)),
        "{reply}"
    );
    assert!(reply.text().contains("530"), "{reply}");

    // On a first connection a 530 is the server's word: permanent.
    let script = Scripted::new(|line| {
        let reply: &[u8] = if line.starts_with("EHLO") {
            b"250 scripted\r\n"
        } else if line.starts_with("MAIL") {
            b"530 5.7.0 Must issue a STARTTLS command first\r\n"
        } else if line == "QUIT" {
            return (b"221 bye\r\n".to_vec(), true);
        } else {
            b"250 ok\r\n"
        };
        (reply.to_vec(), false)
    });
    let mut pair = Pair::scripted(plain_client(), script);
    pair.submit(envelope("a@x.org", &["b@y.org"]), BODY.to_vec());
    pair.drive();
    assert_eq!(deliveries(&pair), [vec![Delivery::Permanent]]);
}

#[test]
fn a_stray_354_in_the_middle_of_a_body_is_not_an_outcome() {
    // Found by the client_session fuzz target: a 354 held back while the
    // body was written became every recipient's outcome at EOF, as a
    // "transient" failure with a 3xx reply.
    let done = outcome_after_mid_body(b"354 go again\r\n");
    assert_eq!(done.delivery, Delivery::Transient);
    assert_eq!(done.reply.code(), 421, "{:?}", done.reply);
}

#[test]
fn a_huge_refusal_is_not_copied_into_every_outcome_whole() {
    // Found by the client_session fuzz target's author: 256 lines of 4 KiB
    // refusing MAIL were cloned into each of the recipients' outcomes.
    let huge: String = (0..255)
        .map(|n| format!("550-{n:03} {}\r\n", "x".repeat(4000)))
        .chain(std::iter::once("550 5.7.1 end\r\n".to_owned()))
        .collect();
    let script = Scripted::new(move |line| {
        let reply = if line.starts_with("EHLO") {
            "250 scripted\r\n".to_owned()
        } else if line.starts_with("MAIL") {
            huge.clone()
        } else if line == "QUIT" {
            return (b"221 bye\r\n".to_vec(), true);
        } else {
            "503 5.5.1 no\r\n".to_owned()
        };
        (reply.into_bytes(), false)
    });
    let mut pair = Pair::scripted(plain_client(), script);
    pair.submit(many(100), BODY.to_vec());
    pair.drive();
    let outcomes = &pair.outcomes()[&TransactionId(0)];
    assert_eq!(outcomes.len(), 100);
    for outcome in outcomes {
        assert_eq!(outcome.delivery, Delivery::Permanent);
        assert_eq!(outcome.reply.code(), 550);
        let text: usize = outcome.reply.lines().iter().map(|l| l.len() + 2).sum();
        assert!(text <= 2048, "{text} octets kept");
        assert!(outcome.reply.lines()[0].starts_with("000 xxx"));
    }
}
