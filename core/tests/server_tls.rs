//! STARTTLS and renegotiation through a whole `ServerSession`, in memory,
//! against real rustls and OpenSSL clients, and a client that renegotiates
//! as often as asked, for both server engines.
#![cfg(test)]
mod support;

use std::sync::Arc;
use std::time::Instant;

use petrel_core::renegotiation::{self, RefuseReason, RenegotiationVerdict};
use petrel_core::server::{CloseReason, Event, ServerConfig, ServerSession};
use petrel_core::tls::{ServerTls, ServerTlsConfig, TlsEngine, TlsVersion};
use support::{clients, test_cert, Alert, OpensslClient, RecordClient, RustlsClient, TlsClient};

fn engines() -> Vec<TlsEngine> {
    TlsEngine::ALL
        .into_iter()
        .filter(|engine| engine.is_available())
        .collect()
}

fn config(engine: TlsEngine, allow_renegotiation: bool, cap: u32) -> ServerConfig {
    let (cert, key) = test_cert();
    let mut tls = ServerTlsConfig::new(engine, cert, key);
    tls.allow_renegotiation = allow_renegotiation;
    tls.max_renegotiations = cap;
    let mut config = ServerConfig::new("mx.test");
    config.tls = Some(ServerTls::new(&tls).unwrap());
    config
}

/// An SMTP client over a real TLS client library, and the driver between
/// it and the session.
struct Conversation<C: TlsClient + ?Sized = dyn TlsClient> {
    server: ServerSession,
    now: Instant,
    tls: Option<Box<C>>,
    /// Plaintext the client received.
    received: Vec<u8>,
    events: Vec<Event>,
}

impl<C: TlsClient + ?Sized> Conversation<C> {
    fn new(config: ServerConfig) -> Self {
        Self::sharing(Arc::new(config))
    }

    /// A session of a configuration other sessions have too (and with it
    /// the server's TLS session cache), as the sessions of one listener.
    fn sharing(config: Arc<ServerConfig>) -> Self {
        let now = Instant::now();
        let mut conversation = Self {
            server: ServerSession::new(config, now),
            now,
            tls: None,
            received: Vec::new(),
            events: Vec::new(),
        };
        conversation.pump();
        conversation
    }

    /// Sends `text` and returns the reply text received in response.
    fn say(&mut self, text: &str) -> String {
        let start = self.received.len();
        match &mut self.tls {
            Some(tls) => tls.write_plaintext(text.as_bytes()),
            None => self.server.handle_input(self.now, text.as_bytes()),
        }
        self.pump();
        String::from_utf8_lossy(&self.received[start..]).into_owned()
    }

    fn start_tls(&mut self, client: Box<C>) {
        self.tls = Some(client);
        self.pump();
    }

    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            let mut out = Vec::new();
            self.server.poll_transmit(&mut out);
            while let Some(event) = self.server.poll_event() {
                if matches!(
                    event,
                    Event::Mail { .. } | Event::Rcpt { .. } | Event::MessageEnd { .. }
                ) {
                    self.server.accept(self.now).unwrap();
                }
                self.events.push(event);
                moved = true;
                self.server.poll_transmit(&mut out);
            }
            if !out.is_empty() {
                moved = true;
                match &mut self.tls {
                    Some(tls) => {
                        tls.handle_ciphertext(&out);
                        self.received.extend(tls.read_plaintext());
                    }
                    None => self.received.extend_from_slice(&out),
                }
            }
            if let Some(tls) = &mut self.tls {
                let to_server = tls.poll_ciphertext();
                if !to_server.is_empty() && !self.server.is_closed() {
                    moved = true;
                    self.server.handle_input(self.now, &to_server);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the conversation never settles");
    }

    fn renegotiations(&self) -> Vec<(u32, RenegotiationVerdict)> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::Renegotiation { attempt, verdict } => Some((*attempt, *verdict)),
                _ => None,
            })
            .collect()
    }

    fn closed(&self) -> Option<&CloseReason> {
        self.events.iter().find_map(|event| match event {
            Event::Closed(reason) => Some(reason),
            _ => None,
        })
    }
}

#[test]
fn starttls_with_every_engine_and_client() {
    for engine in engines() {
        for tls12_only in [false, true] {
            for (name, client) in clients(tls12_only) {
                let what = format!("{engine} engine, {name} client, TLS 1.2 only: {tls12_only}");
                let mut c = Conversation::new(config(engine, false, 3));
                assert!(c.say("EHLO c\r\n").contains("STARTTLS"), "{what}");
                assert!(c.say("STARTTLS\r\n").starts_with("220 2.0.0"), "{what}");
                c.start_tls(client);
                let info = c.server.tls_info().cloned().expect(&what);
                let version = if tls12_only {
                    TlsVersion::Tls12
                } else {
                    TlsVersion::Tls13
                };
                assert_eq!(info.version, version, "{what}");
                assert!(c.events.contains(&Event::TlsEstablished(info)), "{what}");

                // Everything learnt before TLS is forgotten (RFC 3207 §4.2).
                assert!(
                    c.say("MAIL FROM:<a@x.org>\r\n").starts_with("503"),
                    "{what}"
                );
                let ehlo = c.say("EHLO c\r\n");
                assert!(ehlo.starts_with("250-mx.test"), "{what}: {ehlo}");
                assert!(!ehlo.contains("STARTTLS"), "{what}: {ehlo}");
                assert!(c.say("STARTTLS\r\n").starts_with("503"), "{what}");

                let replies = c.say(
                    "MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n.dot\r\nbody\r\n.\r\nQUIT\r\n",
                );
                let codes: Vec<&str> = replies.lines().map(|l| &l[..3]).collect();
                assert_eq!(codes, ["250", "250", "354", "250", "221"], "{what}");
                assert_eq!(c.closed(), Some(&CloseReason::Quit), "{what}");
            }
        }
    }
}

#[test]
fn require_tls_is_satisfied_by_starttls() {
    for engine in engines() {
        let mut config = config(engine, false, 3);
        config.require_tls = true;
        let mut c = Conversation::new(config);
        c.say("EHLO c\r\n");
        assert!(c.say("MAIL FROM:<a@x.org>\r\n").starts_with("530 5.7.0"));
        c.say("STARTTLS\r\n");
        c.start_tls(clients(false).remove(0).1);
        c.say("EHLO c\r\n");
        assert!(
            c.say("MAIL FROM:<a@x.org>\r\n").starts_with("250"),
            "{engine}"
        );
    }
}

/// A session over TLS 1.2 with an OpenSSL client that can renegotiate.
fn established_tls12(engine: TlsEngine, allow: bool, cap: u32) -> Conversation {
    let mut c: Conversation = Conversation::new(config(engine, allow, cap));
    c.say("EHLO c\r\nSTARTTLS\r\n");
    c.start_tls(Box::new(OpensslClient::new(true)));
    assert_eq!(c.server.tls_info().unwrap().version, TlsVersion::Tls12);
    assert!(c.say("EHLO c\r\n").starts_with("250"));
    c
}

/// Attempts 1 to `cap` got `each`, and the next closed the connection.
fn assert_closed_past_the_cap<C: TlsClient + ?Sized>(
    c: &Conversation<C>,
    cap: u32,
    each: RenegotiationVerdict,
) {
    let mut expected: Vec<_> = (1..=cap).map(|attempt| (attempt, each)).collect();
    expected.push((
        cap + 1,
        RenegotiationVerdict::Close(renegotiation::CloseReason::CapReached),
    ));
    assert_eq!(c.renegotiations(), expected, "cap {cap}");
    assert_eq!(
        c.closed(),
        Some(&CloseReason::RenegotiationLimit),
        "cap {cap}"
    );
}

/// Starts a renegotiation from the client and lets it play out.
fn renegotiate(c: &mut Conversation) {
    assert!(c.tls.as_mut().unwrap().renegotiate());
    c.pump();
}

fn assert_refused(engine: TlsEngine, allow: bool, reason: RefuseReason) {
    let mut c = established_tls12(engine, allow, 3);
    renegotiate(&mut c);
    assert_eq!(
        c.renegotiations(),
        [(1, RenegotiationVerdict::Refuse(reason))],
        "{engine}"
    );
    // Refused at once with a no_renegotiation alert, which the OpenSSL
    // client (like `openssl s_client`) treats as fatal.
    let error = c.tls.as_ref().unwrap().last_error().unwrap();
    assert!(error.contains("no renegotiation"), "{engine}: {error}");
    assert!(matches!(c.closed(), Some(CloseReason::Tls(_))), "{engine}");
}

#[test]
fn rustls_engine_refuses_renegotiation_whatever_the_setting() {
    if TlsEngine::Rustls.is_available() {
        assert_refused(TlsEngine::Rustls, false, RefuseReason::EngineCannot);
        assert_refused(TlsEngine::Rustls, true, RefuseReason::EngineCannot);
    }
}

#[cfg(feature = "openssl")]
#[test]
fn openssl_engine_refuses_renegotiation_when_not_allowed() {
    assert_refused(TlsEngine::Openssl, false, RefuseReason::PolicyDenied);
}

#[cfg(feature = "openssl")]
#[test]
fn openssl_engine_allows_renegotiation_up_to_the_cap() {
    for cap in [2, 3] {
        let mut c = established_tls12(TlsEngine::Openssl, true, cap);
        for round in 1..=cap {
            renegotiate(&mut c);
            assert_eq!(c.tls.as_ref().unwrap().last_error(), None, "cap {cap}");
            assert!(
                c.say("NOOP\r\n").starts_with("250"),
                "cap {cap}, round {round}"
            );
        }
        renegotiate(&mut c);
        assert_closed_past_the_cap(&c, cap, RenegotiationVerdict::Allow);
        assert!(c.server.is_closed());
    }
}

/// A session over TLS 1.2 with the [`RecordClient`], which sends a
/// renegotiation ClientHello whenever asked, whatever the server answered
/// the last one.
fn established_with_record_client(
    engine: TlsEngine,
    allow: bool,
    cap: u32,
) -> Conversation<RecordClient> {
    let mut c = Conversation::new(config(engine, allow, cap));
    c.say("EHLO c\r\nSTARTTLS\r\n");
    c.start_tls(Box::new(RecordClient::new()));
    assert_eq!(c.server.tls_info().unwrap().version, TlsVersion::Tls12);
    assert!(c.say("EHLO c\r\n").starts_with("250"), "{engine}");
    c
}

/// Sends one renegotiation ClientHello, lets the session answer, and
/// returns the alerts the client received for it.
fn attempt(c: &mut Conversation<RecordClient>) -> Vec<Alert> {
    let client = c.tls.as_mut().unwrap();
    let before = client.alerts().len();
    assert!(client.renegotiate());
    c.pump();
    let client = c.tls.as_ref().unwrap();
    assert_eq!(client.last_error(), None);
    client.alerts()[before..].to_vec()
}

/// rustls refuses the first attempt with a warning and the session goes
/// on; the second would be fatal inside rustls, so the session closes the
/// connection on its own verdict first, with close_notify.
#[cfg(feature = "rustls")]
#[test]
fn rustls_engine_refuses_one_renegotiation_and_closes_at_the_second() {
    use RenegotiationVerdict::{Close, Refuse};
    for allow in [false, true] {
        let mut c = established_with_record_client(TlsEngine::Rustls, allow, 3);
        assert_eq!(attempt(&mut c), [Alert::NO_RENEGOTIATION], "allow {allow}");
        assert!(c.say("NOOP\r\n").starts_with("250"), "allow {allow}");
        assert_eq!(c.closed(), None);
        assert_eq!(attempt(&mut c), [Alert::CLOSE_NOTIFY], "allow {allow}");
        assert_eq!(
            c.renegotiations(),
            [
                (1, Refuse(RefuseReason::EngineCannot)),
                (2, Close(renegotiation::CloseReason::EngineRefusesAgain)),
            ],
            "allow {allow}"
        );
        assert_eq!(c.closed(), Some(&CloseReason::RenegotiationLimit));
        assert!(c.server.is_closed());
    }

    // The cap comes first: 0 closes at the first attempt.
    let mut c = established_with_record_client(TlsEngine::Rustls, false, 0);
    assert_eq!(attempt(&mut c), [Alert::CLOSE_NOTIFY]);
    assert_eq!(
        c.renegotiations(),
        [(1, Close(renegotiation::CloseReason::CapReached))]
    );
    assert_eq!(c.closed(), Some(&CloseReason::RenegotiationLimit));
}

/// Two ClientHellos in one record are one attempt for the session and two
/// for rustls, whose own count then ends the connection (renegotiation's
/// "Who counts"): a TLS error, not the policy's verdict.
#[cfg(feature = "rustls")]
#[test]
fn rustls_engine_counts_clienthellos_packed_in_one_record_itself() {
    let mut c = established_with_record_client(TlsEngine::Rustls, false, 3);
    c.tls.as_mut().unwrap().renegotiate_packed(2);
    c.pump();
    assert_eq!(
        c.renegotiations(),
        [(1, RenegotiationVerdict::Refuse(RefuseReason::EngineCannot))]
    );
    assert!(
        matches!(c.closed(), Some(CloseReason::Tls(_))),
        "{:?}",
        c.closed()
    );
}

/// OpenSSL, not allowed to renegotiate, refuses every attempt with a
/// warning and the session goes on, until the attempts pass the cap.
#[cfg(feature = "openssl")]
#[test]
fn openssl_engine_refuses_renegotiation_up_to_the_cap() {
    for cap in [1, 3] {
        let mut c = established_with_record_client(TlsEngine::Openssl, false, cap);
        for round in 1..=cap {
            assert_eq!(
                attempt(&mut c),
                [Alert::NO_RENEGOTIATION],
                "cap {cap}, round {round}"
            );
            assert!(
                c.say("NOOP\r\n").starts_with("250"),
                "cap {cap}, round {round}"
            );
        }
        assert_eq!(c.closed(), None, "cap {cap}");
        assert_eq!(attempt(&mut c), [Alert::CLOSE_NOTIFY], "cap {cap}");
        let refused = RenegotiationVerdict::Refuse(RefuseReason::PolicyDenied);
        assert_closed_past_the_cap(&c, cap, refused);
    }
}

/// A TLS 1.2 session resumed on a new connection is an abbreviated
/// handshake, not a renegotiation: nothing counts it, refuses it or
/// closes for it, whatever the engine and its renegotiation setting.
#[test]
fn a_resumed_tls12_session_is_no_renegotiation() {
    for engine in engines() {
        for allow in [false, true] {
            let server = Arc::new(config(engine, allow, 1));
            let client = RustlsClient::accepting_config(true);
            let mut resumed = Vec::new();
            for _ in 0..3 {
                let mut c: Conversation<RustlsClient> = Conversation::sharing(server.clone());
                c.say("EHLO c\r\nSTARTTLS\r\n");
                c.start_tls(Box::new(RustlsClient::with_shared_config(client.clone())));
                assert_eq!(c.server.tls_info().unwrap().version, TlsVersion::Tls12);
                let reply = c.say("EHLO c\r\n");
                assert!(reply.starts_with("250"), "{engine}: {reply}");
                assert!(c.say("NOOP\r\n").starts_with("250"), "{engine}");
                assert_eq!(c.renegotiations(), [], "{engine}, allow {allow}");
                assert_eq!(c.closed(), None, "{engine}, allow {allow}");
                resumed.push(c.tls.as_ref().unwrap().resumed());
            }
            // The engines keep a session cache: the later connections
            // resume (or this test would not test resumption).
            assert_eq!(resumed, [false, true, true], "{engine}, allow {allow}");
        }
    }
}

#[test]
fn tls13_connections_see_no_renegotiation() {
    for engine in engines() {
        let mut c = Conversation::new(config(engine, true, 3));
        c.say("EHLO c\r\nSTARTTLS\r\n");
        c.start_tls(Box::new(OpensslClient::new(false)));
        assert_eq!(c.server.tls_info().unwrap().version, TlsVersion::Tls13);
        for _ in 0..5 {
            assert!(c.say("NOOP\r\n").starts_with("250"), "{engine}");
        }
        assert!(c.renegotiations().is_empty());
    }
}
