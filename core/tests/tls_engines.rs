//! The TLS engines as byte transforms, against real rustls and OpenSSL
//! clients in memory: handshakes, data, close, configuration errors, and
//! renegotiation at the engine level (TLS 1.2: the OpenSSL client, and the
//! record client that renegotiates as often as asked).
#![cfg(test)]
mod support;

use petrel_core::tls::record::RecordObserver;
use petrel_core::tls::{
    ServerTls, ServerTlsConfig, TlsEngine, TlsError, TlsFailureKind, TlsSession, TlsVersion,
};
use support::{
    clients, pump, pump_observed, test_cert, Alert, OpensslClient, RecordClient, RustlsClient,
    TlsClient, SERVER_NAME,
};

/// The server engines compiled in.
fn engines() -> Vec<TlsEngine> {
    TlsEngine::ALL
        .into_iter()
        .filter(|engine| engine.is_available())
        .collect()
}

fn server_tls(engine: TlsEngine, allow_renegotiation: bool) -> ServerTls {
    let (cert, key) = test_cert();
    let mut config = ServerTlsConfig::new(engine, cert, key);
    config.allow_renegotiation = allow_renegotiation;
    ServerTls::new(&config).unwrap()
}

/// Sends `data` each way and checks it arrives intact.
fn assert_data_flows(client: &mut dyn TlsClient, server: &mut dyn TlsSession, what: &str) {
    client.write_plaintext(b"EHLO client.example\r\n");
    pump(client, server).unwrap();
    let mut received = Vec::new();
    server.read_plaintext(&mut received).unwrap();
    assert_eq!(
        received, b"EHLO client.example\r\n",
        "{what}: client to server"
    );

    server.write_plaintext(b"250 server.example\r\n").unwrap();
    pump(client, server).unwrap();
    assert_eq!(
        client.read_plaintext(),
        b"250 server.example\r\n",
        "{what}: server to client"
    );
}

#[test]
fn every_engine_handshakes_with_every_client() {
    for engine in engines() {
        let tls = server_tls(engine, false);
        assert_eq!(tls.engine(), engine);
        for tls12_only in [false, true] {
            for (name, mut client) in clients(tls12_only) {
                let what = format!("{engine} server, {name} client, TLS 1.2 only: {tls12_only}");
                let mut server = tls.new_session().unwrap();
                assert!(server.is_handshaking(), "{what}");
                assert_eq!(server.info(), None, "{what}");

                pump(client.as_mut(), server.as_mut()).unwrap();
                assert!(!server.is_handshaking(), "{what}");
                assert!(!client.is_handshaking(), "{what}");
                assert_eq!(client.last_error(), None, "{what}");

                let info = server.info().unwrap();
                let version = if tls12_only {
                    TlsVersion::Tls12
                } else {
                    TlsVersion::Tls13
                };
                assert_eq!(info.version, version, "{what}");
                assert_eq!(client.version(), Some(version), "{what}");
                // IANA names from both engines.
                assert!(info.cipher.starts_with("TLS_"), "{what}: {}", info.cipher);
                if tls12_only {
                    assert!(info.cipher.contains("_WITH_"), "{what}: {}", info.cipher);
                } else {
                    assert!(!info.cipher.contains("_WITH_"), "{what}: {}", info.cipher);
                }
                assert_eq!(info.server_name.as_deref(), Some(SERVER_NAME), "{what}");
                assert_eq!(info.peer_certificate, None, "{what}");

                assert_data_flows(client.as_mut(), server.as_mut(), &what);
            }
        }
    }
}

#[test]
fn a_verifying_client_accepts_the_right_certificate_only() {
    for engine in engines() {
        let (cert, key) = test_cert();
        let tls = ServerTls::new(&ServerTlsConfig::new(engine, cert.clone(), key)).unwrap();

        let mut client = RustlsClient::verifying(&cert, false);
        let mut server = tls.new_session().unwrap();
        pump(&mut client, server.as_mut()).unwrap();
        assert_eq!(client.last_error(), None, "{engine}");
        assert!(!client.is_handshaking(), "{engine}");

        let (other_cert, _) = test_cert();
        let mut client = RustlsClient::verifying(&other_cert, false);
        let mut server = tls.new_session().unwrap();
        let error = pump(&mut client, server.as_mut()).unwrap_err();
        assert!(matches!(error, TlsError::Handshake(_)), "{engine}: {error}");
        let client_error = client.last_error().unwrap();
        assert!(
            client_error.contains("certificate"),
            "{engine}: {client_error}"
        );
    }
}

#[test]
fn both_engines_report_the_same_cipher_names() {
    let mut names = Vec::new();
    for engine in engines() {
        let tls = server_tls(engine, false);
        let mut client = RustlsClient::new(true);
        let mut server = tls.new_session().unwrap();
        pump(&mut client, server.as_mut()).unwrap();
        names.push(server.info().unwrap().cipher);
    }
    // rustls prefers the same first suite whichever server it talks to.
    names.dedup();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn server_data_written_before_the_handshake_is_sent_after_it() {
    for engine in engines() {
        for (name, mut client) in clients(false) {
            let mut server = server_tls(engine, false).new_session().unwrap();
            server.write_plaintext(b"220 early\r\n").unwrap();
            pump(client.as_mut(), server.as_mut()).unwrap();
            assert_eq!(client.read_plaintext(), b"220 early\r\n", "{engine}/{name}");
        }
    }
}

#[test]
fn ciphertext_may_arrive_one_octet_at_a_time() {
    for engine in engines() {
        for (name, mut client) in clients(false) {
            let mut server = server_tls(engine, false).new_session().unwrap();
            client.write_plaintext(b"QUIT\r\n");
            for _ in 0..20 {
                for octet in client.poll_ciphertext().chunks(1) {
                    server.handle_ciphertext(octet).unwrap();
                }
                let mut out = Vec::new();
                server.poll_ciphertext(&mut out);
                client.handle_ciphertext(&out);
            }
            assert!(!server.is_handshaking(), "{engine}/{name}");
            let mut received = Vec::new();
            server.read_plaintext(&mut received).unwrap();
            assert_eq!(received, b"QUIT\r\n", "{engine}/{name}");
        }
    }
}

#[test]
fn close_notify_is_seen_both_ways() {
    for engine in engines() {
        for (name, mut client) in clients(false) {
            let mut server = server_tls(engine, false).new_session().unwrap();
            pump(client.as_mut(), server.as_mut()).unwrap();
            assert!(!server.peer_closed());
            client.close();
            pump(client.as_mut(), server.as_mut()).unwrap();
            assert!(server.peer_closed(), "{engine}/{name}");
            server.close();
            let mut out = Vec::new();
            assert!(server.poll_ciphertext(&mut out) > 0, "{engine}/{name}");
        }
    }
}

#[test]
fn garbage_fails_the_handshake_with_an_alert() {
    for engine in engines() {
        let mut server = server_tls(engine, false).new_session().unwrap();
        let error = server
            .handle_ciphertext(b"EHLO this is not TLS\r\n")
            .unwrap_err();
        assert!(matches!(error, TlsError::Handshake(_)), "{engine}: {error}");
        // The failure sticks.
        assert_eq!(server.handle_ciphertext(b"more").unwrap_err(), error);
        assert_eq!(server.write_plaintext(b"x").unwrap_err(), error);
        let mut alert = Vec::new();
        server.poll_ciphertext(&mut alert);
        // rustls answers with an alert; OpenSSL sends none for a first
        // record that is not TLS at all ("wrong version number").
        if engine == TlsEngine::Rustls {
            assert_eq!(alert.first(), Some(&21), "{engine}: an alert record");
        }
    }
}

#[test]
fn bad_certificates_and_keys_are_configuration_errors() {
    let (cert, key) = test_cert();
    let (_, other_key) = test_cert();
    for engine in engines() {
        let cases = [
            ("garbage certificate", b"not pem".to_vec(), key.clone()),
            ("garbage key", cert.clone(), b"not pem".to_vec()),
            (
                "key of another certificate",
                cert.clone(),
                other_key.clone(),
            ),
            ("certificate as key", cert.clone(), cert.clone()),
        ];
        for (what, cert, key) in cases {
            let error = ServerTls::new(&ServerTlsConfig::new(engine, cert, key)).unwrap_err();
            let TlsError::Config(message) = &error else {
                panic!("{engine}, {what}: {error:?}");
            };
            assert!(!message.is_empty());
        }
    }
}

#[test]
fn allowing_renegotiation_with_rustls_is_reported_as_ineffective() {
    for engine in engines() {
        assert!(server_tls(engine, false).warnings().is_empty());
        let warnings = server_tls(engine, true).warnings();
        match engine {
            TlsEngine::Rustls => assert_eq!(
                warnings,
                ["TLS_Allow_Renegotiation has no effect with the rustls engine: rustls never renegotiates"]
            ),
            TlsEngine::Openssl => assert!(warnings.is_empty(), "{warnings:?}"),
            other => panic!("no expectation for {other}"),
        }
    }
}

/// An established TLS 1.2 connection between an OpenSSL client and a
/// server of `engine`.
fn established_tls12(
    engine: TlsEngine,
    allow_renegotiation: bool,
) -> (OpensslClient, Box<dyn TlsSession>, RecordObserver) {
    let mut client = OpensslClient::new(true);
    let mut server = server_tls(engine, allow_renegotiation)
        .new_session()
        .unwrap();
    let mut observer = RecordObserver::new();
    let observed = pump_observed(&mut client, server.as_mut(), &mut observer);
    assert_eq!(observed, Default::default(), "no attempt in the handshake");
    assert_eq!(observer.secure_renegotiation_offered(), Some(true));
    assert_eq!(server.info().unwrap().version, TlsVersion::Tls12);
    (client, server, observer)
}

/// Refused renegotiation: the server answers the ClientHello with a
/// no_renegotiation warning; the OpenSSL client treats that as fatal (as
/// `openssl s_client` shows: "ssl3_read_bytes:no renegotiation") and sends
/// a handshake_failure alert, which fails the server side too.
fn assert_renegotiation_refused(engine: TlsEngine, allow_renegotiation: bool) {
    let (mut client, mut server, mut observer) = established_tls12(engine, allow_renegotiation);
    assert!(client.renegotiate());
    let observed = pump_observed(&mut client, server.as_mut(), &mut observer);
    assert_eq!(observed.renegotiation_attempts, 1, "{engine}");
    let client_error = client.last_error().unwrap();
    assert!(
        client_error.contains("no renegotiation"),
        "{engine}: {client_error}"
    );
    assert_eq!(client.renegotiations_completed(), 0);
    match observed.server_error {
        // The client's handshake_failure alert (40), as both engines
        // classify it.
        Some(TlsError::Protocol(failure)) => {
            assert_eq!(
                failure.kind(),
                TlsFailureKind::PeerAlert(40),
                "{engine}: {failure}"
            )
        }
        other => panic!("{engine}: {other:?}"),
    }
}

#[test]
fn rustls_refuses_renegotiation() {
    if TlsEngine::Rustls.is_available() {
        assert_renegotiation_refused(TlsEngine::Rustls, false);
        assert_renegotiation_refused(TlsEngine::Rustls, true);
    }
}

#[cfg(feature = "openssl")]
#[test]
fn openssl_refuses_renegotiation_unless_allowed() {
    assert_renegotiation_refused(TlsEngine::Openssl, false);
}

#[cfg(feature = "openssl")]
#[test]
fn openssl_renegotiates_when_allowed() {
    let (mut client, mut server, mut observer) = established_tls12(TlsEngine::Openssl, true);
    let before = server.info().unwrap();

    for round in 1..=2 {
        assert!(client.renegotiate());
        // Hand-pump the first exchange: once the server has taken the
        // ClientHello it is renegotiating.
        let hello = client.poll_ciphertext();
        let mut pieces = observer.split(&hello);
        let piece = pieces.next().unwrap();
        assert!(piece.starts_handshake_record());
        assert!(!server.is_handshaking());
        server.handle_ciphertext(piece.bytes).unwrap();
        assert!(pieces.next().is_none());
        assert!(server.is_handshaking(), "round {round}");
        let mut flight = Vec::new();
        server.poll_ciphertext(&mut flight);
        client.handle_ciphertext(&flight);

        // The client's second flight is part of the same renegotiation,
        // not a new attempt.
        let observed = pump_observed(&mut client, server.as_mut(), &mut observer);
        assert_eq!(observed, Default::default(), "round {round}");
        assert_eq!(client.last_error(), None);
        assert_eq!(client.renegotiations_completed(), round);
        assert!(!server.is_handshaking());
        assert!(!client.is_handshaking());
        let after = server.info().unwrap();
        assert_eq!(after.version, before.version);
        assert_data_flows(&mut client, server.as_mut(), "after renegotiation");
    }
}

#[cfg(feature = "openssl")]
#[test]
fn openssl_keeps_server_data_until_a_renegotiation_completes() {
    let (mut client, mut server, _) = established_tls12(TlsEngine::Openssl, true);
    assert!(client.renegotiate());
    let hello = client.poll_ciphertext();
    server.handle_ciphertext(&hello).unwrap();
    assert!(server.is_handshaking());
    // Written mid-renegotiation: must neither fail nor be lost.
    server.write_plaintext(b"250 during\r\n").unwrap();
    pump(&mut client, server.as_mut()).unwrap();
    assert_eq!(client.renegotiations_completed(), 1);
    assert_eq!(client.read_plaintext(), b"250 during\r\n");
}

/// What `renegotiation::decide` models, in the engine itself (no session,
/// no cap): rustls refuses the first attempt with a warning and goes on,
/// and fails the connection on the second.
#[cfg(feature = "rustls")]
#[test]
fn rustls_refuses_one_renegotiation_then_fails() {
    for allow in [false, true] {
        let mut client = RecordClient::new();
        let mut server = server_tls(TlsEngine::Rustls, allow).new_session().unwrap();
        pump(&mut client, server.as_mut()).unwrap();
        assert_eq!(server.info().unwrap().version, TlsVersion::Tls12);

        assert!(client.renegotiate());
        pump(&mut client, server.as_mut()).unwrap();
        assert_eq!(client.alerts(), [Alert::NO_RENEGOTIATION]);
        assert_data_flows(&mut client, server.as_mut(), "after one refusal");

        assert!(client.renegotiate());
        // rustls's PeerMisbehaved::TooManyRenegotiationRequests.
        let error = pump(&mut client, server.as_mut())
            .expect_err("rustls took a second attempt")
            .to_string();
        assert!(
            error.to_lowercase().contains("renegotiation"),
            "allow {allow}: {error}"
        );
        assert_eq!(client.alerts(), [Alert::NO_RENEGOTIATION]);
    }
}

/// What `renegotiation::decide` models, in the engine itself (no session,
/// no cap): OpenSSL, not allowed to renegotiate, refuses every attempt with
/// a warning and goes on.
#[cfg(feature = "openssl")]
#[test]
fn openssl_refuses_every_renegotiation_when_not_allowed() {
    let mut client = RecordClient::new();
    let mut server = server_tls(TlsEngine::Openssl, false).new_session().unwrap();
    pump(&mut client, server.as_mut()).unwrap();
    assert_eq!(server.info().unwrap().version, TlsVersion::Tls12);
    for round in 1..=5 {
        assert!(client.renegotiate());
        pump(&mut client, server.as_mut()).unwrap();
        assert_eq!(client.alerts(), vec![Alert::NO_RENEGOTIATION; round]);
        assert!(!server.is_handshaking(), "round {round}");
        assert_data_flows(&mut client, server.as_mut(), &format!("round {round}"));
    }
}

#[test]
fn tls13_has_no_renegotiation() {
    for engine in engines() {
        let mut client = OpensslClient::new(false);
        let mut server = server_tls(engine, true).new_session().unwrap();
        pump(&mut client, server.as_mut()).unwrap();
        assert_eq!(server.info().unwrap().version, TlsVersion::Tls13);
        assert!(!client.renegotiate(), "{engine}");
    }
}

/// The cap holds inside libssl too, without the session's record observer:
/// in TLS 1.2 a client can put a ClientHello in the same record as the
/// Finished of the previous renegotiation, where the observer cannot see
/// it, so libssl's own count is what makes the cap certain.
#[cfg(feature = "openssl")]
#[test]
fn openssl_enforces_the_renegotiation_cap_by_itself() {
    let (cert, key) = test_cert();
    let mut config = ServerTlsConfig::new(TlsEngine::Openssl, cert, key);
    config.allow_renegotiation = true;
    config.max_renegotiations = 2;
    let mut server = ServerTls::new(&config).unwrap().new_session().unwrap();
    let mut client = OpensslClient::new(true);
    pump(&mut client, server.as_mut()).unwrap();
    assert_eq!(server.info().unwrap().version, TlsVersion::Tls12);
    for round in 1..=2 {
        assert!(client.renegotiate());
        pump(&mut client, server.as_mut()).unwrap();
        assert_eq!(client.renegotiations_completed(), round);
    }
    assert!(client.renegotiate());
    let refused = pump(&mut client, server.as_mut());
    assert!(refused.is_err(), "a third renegotiation got through");
    assert_eq!(client.renegotiations_completed(), 2);
}

/// A handshake that fails for lack of something in common says which, so
/// that an operator knows to try the other engine (or the peer's admin).
#[test]
fn handshake_failures_say_what_was_missing() {
    use openssl::ssl::SslVersion;
    for engine in engines() {
        // TLS 1.1 only; Petrel's servers take 1.2 and 1.3.
        let mut client = OpensslClient::configured(|builder| {
            builder.set_cipher_list("DEFAULT@SECLEVEL=0").unwrap();
            builder
                .set_min_proto_version(Some(SslVersion::TLS1_1))
                .unwrap();
            builder
                .set_max_proto_version(Some(SslVersion::TLS1_1))
                .unwrap();
        });
        let mut server = server_tls(engine, false).new_session().unwrap();
        match pump(&mut client, server.as_mut()) {
            Err(TlsError::Handshake(failure)) => {
                assert_eq!(
                    failure.kind(),
                    TlsFailureKind::NoCommonVersion,
                    "{engine}: {failure}"
                )
            }
            other => panic!("{engine}: {other:?}"),
        }
        // TLS 1.2 with a CBC suite only; Petrel's servers offer AEAD only.
        let mut client = OpensslClient::configured(|builder| {
            builder
                .set_max_proto_version(Some(SslVersion::TLS1_2))
                .unwrap();
            builder.set_cipher_list("AES128-SHA").unwrap();
        });
        let mut server = server_tls(engine, false).new_session().unwrap();
        match pump(&mut client, server.as_mut()) {
            Err(TlsError::Handshake(failure)) => {
                assert_eq!(
                    failure.kind(),
                    TlsFailureKind::NoCommonCipher,
                    "{engine}: {failure}"
                )
            }
            other => panic!("{engine}: {other:?}"),
        }
    }
}
