//! Petrel's client TLS engines against Petrel's server TLS engines, in
//! memory, every combination compiled in: `TLS_Verify` semantics
//! (no/ca/host/optional), SNI, client certificates, configuration errors.
//! A raw rustls server stands in where the server engines cannot help (TLS
//! 1.2 only, asking for a client certificate).
#![cfg(test)]
mod support;

use std::io::{self, Read, Write};
use std::sync::Arc;

use petrel_core::tls::{
    CertificateProblem, CertificateProblemKind, CertificateStatus, ClientTls, ClientTlsConfig,
    ServerTls, ServerTlsConfig, TlsEngine, TlsError, TlsFailure, TlsFailureKind, TlsInfo,
    TlsSession, TlsVerify, TlsVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use support::{pump_sessions, self_signed_cert, CertAndKey, TestCa};

const MX: &str = "mx.example.test";
const OTHER: &str = "other.example.test";

/// The engines compiled in.
fn engines() -> Vec<TlsEngine> {
    TlsEngine::ALL
        .into_iter()
        .filter(|engine| engine.is_available())
        .collect()
}

/// Every (client engine, server engine) pair compiled in.
fn engine_pairs() -> Vec<(TlsEngine, TlsEngine)> {
    let mut pairs = Vec::new();
    for client in engines() {
        for server in engines() {
            pairs.push((client, server));
        }
    }
    pairs
}

fn server_tls(engine: TlsEngine, identity: &CertAndKey) -> ServerTls {
    ServerTls::new(&ServerTlsConfig::new(
        engine,
        identity.cert_pem.clone(),
        identity.key_pem.clone(),
    ))
    .unwrap()
}

fn client_tls(engine: TlsEngine, verify: TlsVerify, ca: Option<&TestCa>) -> ClientTls {
    let mut config = ClientTlsConfig::new(engine);
    config.verify = verify;
    config.ca_pem = ca.map(|ca| ca.cert_pem.clone());
    ClientTls::new(&config).unwrap()
}

/// The outcome of one handshake.
struct Outcome {
    what: String,
    client: Box<dyn TlsSession>,
    server: Box<dyn TlsSession>,
    client_result: Result<(), TlsError>,
    server_result: Result<(), TlsError>,
}

impl Outcome {
    /// Asserts that both sides are established; returns the client's and
    /// the server's info.
    fn established(&self) -> (TlsInfo, TlsInfo) {
        let what = &self.what;
        assert_eq!(self.client_result, Ok(()), "{what}: client");
        assert_eq!(self.server_result, Ok(()), "{what}: server");
        assert!(!self.client.is_handshaking(), "{what}");
        assert!(!self.server.is_handshaking(), "{what}");
        (self.client.info().unwrap(), self.server.info().unwrap())
    }

    /// Asserts that the client rejected the certificate; returns why.
    fn rejected(&self) -> CertificateProblem {
        let what = &self.what;
        let Err(TlsError::Certificate(reason)) = &self.client_result else {
            panic!(
                "{what}: expected a certificate rejection, got {:?}",
                self.client_result
            );
        };
        // The client's alert ends the server's side of the handshake too.
        assert!(
            matches!(self.server_result, Err(TlsError::Handshake(_))),
            "{what}: server {:?}",
            self.server_result
        );
        assert!(self.client.info().is_none(), "{what}");
        reason.clone()
    }
}

/// Runs a handshake between a fresh client session for `name` and a
/// fresh server session.
fn handshake(client_tls: &ClientTls, server_tls: &ServerTls, name: &str) -> Outcome {
    let what = format!(
        "{} client (verify {}) to {} server as {name:?}",
        client_tls.engine(),
        client_tls.verify(),
        server_tls.engine()
    );
    let mut client = client_tls.new_session(name).unwrap();
    let mut server = server_tls.new_session().unwrap();
    assert!(client.is_handshaking(), "{what}");
    assert_eq!(client.info(), None, "{what}");
    let (client_result, server_result) = pump_sessions(client.as_mut(), server.as_mut());
    Outcome {
        what,
        client,
        server,
        client_result,
        server_result,
    }
}

/// Sends a line each way and checks it arrives intact.
fn assert_data_flows(client: &mut dyn TlsSession, server: &mut dyn TlsSession, what: &str) {
    client.write_plaintext(b"EHLO client.example\r\n").unwrap();
    let (c, s) = pump_sessions(client, server);
    assert_eq!((c, s), (Ok(()), Ok(())), "{what}");
    let mut received = Vec::new();
    server.read_plaintext(&mut received).unwrap();
    assert_eq!(received, b"EHLO client.example\r\n", "{what}");

    server.write_plaintext(b"250 mx.example.test\r\n").unwrap();
    let (c, s) = pump_sessions(client, server);
    assert_eq!((c, s), (Ok(()), Ok(())), "{what}");
    let mut received = Vec::new();
    client.read_plaintext(&mut received).unwrap();
    assert_eq!(received, b"250 mx.example.test\r\n", "{what}");
}

fn assert_untrusted(status: &CertificateStatus, what: &str) -> CertificateProblem {
    let CertificateStatus::Untrusted(reason) = status else {
        panic!("{what}: expected Untrusted, got {status:?}");
    };
    assert!(!reason.detail().is_empty(), "{what}");
    reason.clone()
}

#[test]
fn the_context_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<ClientTls>();
}

#[test]
fn verify_no_encrypts_to_a_self_signed_server() {
    let identity = self_signed_cert(&[MX]);
    for (client_engine, server_engine) in engine_pairs() {
        let client_tls = client_tls(client_engine, TlsVerify::No, None);
        assert_eq!(client_tls.engine(), client_engine);
        assert_eq!(client_tls.verify(), TlsVerify::No);
        let mut outcome = handshake(&client_tls, &server_tls(server_engine, &identity), MX);
        let (client_info, server_info) = outcome.established();
        let what = &outcome.what;

        assert_eq!(
            client_info.certificate,
            CertificateStatus::NotChecked,
            "{what}"
        );
        assert_eq!(
            server_info.certificate,
            CertificateStatus::NotChecked,
            "{what}"
        );
        assert_eq!(client_info.version, TlsVersion::Tls13, "{what}");
        assert_eq!(client_info.version, server_info.version, "{what}");
        assert_eq!(client_info.cipher, server_info.cipher, "{what}");
        assert!(client_info.cipher.starts_with("TLS_"), "{what}");
        // SNI: sent by the client, seen by the server.
        assert_eq!(client_info.server_name.as_deref(), Some(MX), "{what}");
        assert_eq!(server_info.server_name.as_deref(), Some(MX), "{what}");
        assert_eq!(
            client_info.peer_certificate,
            Some(identity.cert_der()),
            "{what}"
        );
        assert_eq!(server_info.peer_certificate, None, "{what}");

        let what = outcome.what.clone();
        assert_data_flows(outcome.client.as_mut(), outcome.server.as_mut(), &what);
    }
}

#[test]
fn verify_ca_needs_a_chain_to_the_ca_but_not_the_name() {
    let ca = TestCa::new();
    let issued = ca.issue(&[MX]);
    let self_signed = self_signed_cert(&[MX]);
    for (client_engine, server_engine) in engine_pairs() {
        let client_tls = client_tls(client_engine, TlsVerify::Ca, Some(&ca));
        let server = server_tls(server_engine, &issued);
        for name in [MX, OTHER] {
            let mut outcome = handshake(&client_tls, &server, name);
            let (info, _) = outcome.established();
            assert_eq!(
                info.certificate,
                CertificateStatus::Trusted,
                "{}",
                outcome.what
            );
            let what = outcome.what.clone();
            assert_data_flows(outcome.client.as_mut(), outcome.server.as_mut(), &what);
        }

        let outcome = handshake(&client_tls, &server_tls(server_engine, &self_signed), MX);
        let reason = outcome.rejected();
        assert_eq!(
            reason.kind(),
            CertificateProblemKind::UnknownIssuer,
            "{}",
            outcome.what
        );
        // rustls: "unknown issuer", OpenSSL: "self-signed certificate".
        let reason = reason.to_string();
        assert!(
            reason.contains("issuer") || reason.contains("self-signed"),
            "{}: {reason}",
            outcome.what
        );
    }
}

#[test]
fn verify_host_also_needs_the_name() {
    let ca = TestCa::new();
    let issued = ca.issue(&[MX]);
    let self_signed = self_signed_cert(&[MX]);
    for (client_engine, server_engine) in engine_pairs() {
        let client_tls = client_tls(client_engine, TlsVerify::Host, Some(&ca));
        let server = server_tls(server_engine, &issued);

        let outcome = handshake(&client_tls, &server, MX);
        let (info, _) = outcome.established();
        assert_eq!(
            info.certificate,
            CertificateStatus::Trusted,
            "{}",
            outcome.what
        );

        // An absolute name (trailing dot) is the same host.
        let outcome = handshake(&client_tls, &server, "mx.example.test.");
        let (info, server_info) = outcome.established();
        assert_eq!(
            info.certificate,
            CertificateStatus::Trusted,
            "{}",
            outcome.what
        );
        assert_eq!(
            server_info.server_name.as_deref(),
            Some(MX),
            "{}",
            outcome.what
        );

        let outcome = handshake(&client_tls, &server, OTHER);
        let reason = outcome.rejected();
        assert_eq!(
            reason.kind(),
            CertificateProblemKind::NameMismatch,
            "{}",
            outcome.what
        );
        let reason = reason.to_string();
        // rustls: "certificate not valid for name ...", OpenSSL: "hostname
        // mismatch: ..."; both say which name.
        assert!(reason.contains("name"), "{}: {reason}", outcome.what);
        assert!(reason.contains(OTHER), "{}: {reason}", outcome.what);

        let outcome = handshake(&client_tls, &server_tls(server_engine, &self_signed), MX);
        outcome.rejected();
    }
}

#[test]
fn expired_certificates_are_rejected_by_ca_and_host() {
    let ca = TestCa::new();
    let expired = ca.issue_expired(&[MX]);
    for (client_engine, server_engine) in engine_pairs() {
        let server = server_tls(server_engine, &expired);
        for verify in [TlsVerify::Ca, TlsVerify::Host] {
            let outcome = handshake(&client_tls(client_engine, verify, Some(&ca)), &server, MX);
            let reason = outcome.rejected();
            assert_eq!(
                reason.kind(),
                CertificateProblemKind::Expired,
                "{}",
                outcome.what
            );
            assert!(
                reason.to_string().contains("expired"),
                "{}: {reason}",
                outcome.what
            );
        }
        // verify = no does not look.
        let outcome = handshake(&client_tls(client_engine, TlsVerify::No, None), &server, MX);
        let (info, _) = outcome.established();
        assert_eq!(info.certificate, CertificateStatus::NotChecked);
    }
}

#[test]
fn verify_optional_never_fails_and_records_the_verdict() {
    let ca = TestCa::new();
    let issued = ca.issue(&[MX]);
    let expired = ca.issue_expired(&[MX]);
    let self_signed = self_signed_cert(&[MX]);
    for (client_engine, server_engine) in engine_pairs() {
        let client_tls = client_tls(client_engine, TlsVerify::Optional, Some(&ca));
        let server = server_tls(server_engine, &issued);

        let outcome = handshake(&client_tls, &server, MX);
        let (info, _) = outcome.established();
        assert_eq!(
            info.certificate,
            CertificateStatus::Trusted,
            "{}",
            outcome.what
        );

        let outcome = handshake(&client_tls, &server, OTHER);
        let (info, _) = outcome.established();
        let reason = assert_untrusted(&info.certificate, &outcome.what);
        assert_eq!(
            reason.kind(),
            CertificateProblemKind::NameMismatch,
            "{}",
            outcome.what
        );
        assert!(
            reason.to_string().contains("name"),
            "{}: {reason}",
            outcome.what
        );

        let outcome = handshake(&client_tls, &server_tls(server_engine, &expired), MX);
        let (info, _) = outcome.established();
        let reason = assert_untrusted(&info.certificate, &outcome.what);
        assert_eq!(
            reason.kind(),
            CertificateProblemKind::Expired,
            "{}",
            outcome.what
        );

        let mut outcome = handshake(&client_tls, &server_tls(server_engine, &self_signed), MX);
        let (info, _) = outcome.established();
        assert_untrusted(&info.certificate, &outcome.what);
        // Untrusted, but encrypted and usable.
        let what = outcome.what.clone();
        assert_data_flows(outcome.client.as_mut(), outcome.server.as_mut(), &what);
    }
}

#[test]
fn without_a_ca_nothing_is_trusted() {
    let ca = TestCa::new();
    let issued = ca.issue(&[MX]);
    for (client_engine, server_engine) in engine_pairs() {
        let server = server_tls(server_engine, &issued);
        for verify in [TlsVerify::Ca, TlsVerify::Host] {
            let client_tls = client_tls(client_engine, verify, None);
            assert_eq!(client_tls.warnings().len(), 1);
            let outcome = handshake(&client_tls, &server, MX);
            let reason = outcome.rejected();
            assert_eq!(
                reason.kind(),
                CertificateProblemKind::NoTrustedCa,
                "{}",
                outcome.what
            );
            assert_eq!(
                reason.to_string(),
                "no trusted CA is configured (TLS_CA)",
                "{}",
                outcome.what
            );
        }
        let outcome = handshake(
            &client_tls(client_engine, TlsVerify::Optional, None),
            &server,
            MX,
        );
        let (info, _) = outcome.established();
        assert_eq!(
            info.certificate,
            CertificateStatus::Untrusted(CertificateProblem::new(
                CertificateProblemKind::NoTrustedCa,
                "no trusted CA is configured (TLS_CA)"
            )),
            "{}",
            outcome.what
        );
    }
}

#[test]
fn ip_literals_match_ip_names_and_send_no_sni() {
    let ca = TestCa::new();
    let issued = ca.issue(&["192.0.2.1", "2001:db8::1"]);
    for (client_engine, server_engine) in engine_pairs() {
        let client_tls = client_tls(client_engine, TlsVerify::Host, Some(&ca));
        let server = server_tls(server_engine, &issued);
        for name in ["192.0.2.1", "[192.0.2.1]", "[IPv6:2001:db8::1]"] {
            let outcome = handshake(&client_tls, &server, name);
            let (info, server_info) = outcome.established();
            assert_eq!(
                info.certificate,
                CertificateStatus::Trusted,
                "{}",
                outcome.what
            );
            assert_eq!(info.server_name, None, "{}", outcome.what);
            assert_eq!(server_info.server_name, None, "{}", outcome.what);
        }
        handshake(&client_tls, &server, "192.0.2.2").rejected();
        // A DNS name is not an IP SAN.
        handshake(&client_tls, &server, MX).rejected();
    }
}

#[test]
fn certificate_rejections_stick() {
    let ca = TestCa::new();
    let self_signed = self_signed_cert(&[MX]);
    for (client_engine, server_engine) in engine_pairs() {
        let mut outcome = handshake(
            &client_tls(client_engine, TlsVerify::Host, Some(&ca)),
            &server_tls(server_engine, &self_signed),
            MX,
        );
        let reason = outcome.rejected();
        let error = TlsError::Certificate(reason);
        assert!(error.to_string().starts_with("TLS certificate rejected: "));
        assert_eq!(
            outcome.client.handle_ciphertext(b"more"),
            Err(error.clone())
        );
        assert_eq!(outcome.client.write_plaintext(b"MAIL"), Err(error));
    }
}

#[test]
fn client_data_written_before_the_handshake_is_sent_after_it() {
    let identity = self_signed_cert(&[MX]);
    for (client_engine, server_engine) in engine_pairs() {
        let mut client = client_tls(client_engine, TlsVerify::No, None)
            .new_session(MX)
            .unwrap();
        let mut server = server_tls(server_engine, &identity).new_session().unwrap();
        client.write_plaintext(b"EHLO early\r\n").unwrap();
        let (c, s) = pump_sessions(client.as_mut(), server.as_mut());
        assert_eq!((c, s), (Ok(()), Ok(())));
        let mut received = Vec::new();
        server.read_plaintext(&mut received).unwrap();
        assert_eq!(
            received, b"EHLO early\r\n",
            "{client_engine}/{server_engine}"
        );
    }
}

#[test]
fn ciphertext_may_arrive_one_octet_at_a_time() {
    let ca = TestCa::new();
    let issued = ca.issue(&[MX]);
    for (client_engine, server_engine) in engine_pairs() {
        let mut client = client_tls(client_engine, TlsVerify::Host, Some(&ca))
            .new_session(MX)
            .unwrap();
        let mut server = server_tls(server_engine, &issued).new_session().unwrap();
        server.write_plaintext(b"250 ok\r\n").unwrap();
        for _ in 0..10 {
            let mut out = Vec::new();
            client.poll_ciphertext(&mut out);
            for octet in out.chunks(1) {
                server.handle_ciphertext(octet).unwrap();
            }
            let mut out = Vec::new();
            server.poll_ciphertext(&mut out);
            for octet in out.chunks(1) {
                client.handle_ciphertext(octet).unwrap();
            }
        }
        let what = format!("{client_engine}/{server_engine}");
        assert!(!client.is_handshaking(), "{what}");
        assert_eq!(
            client.info().unwrap().certificate,
            CertificateStatus::Trusted,
            "{what}"
        );
        let mut received = Vec::new();
        client.read_plaintext(&mut received).unwrap();
        assert_eq!(received, b"250 ok\r\n", "{what}");
    }
}

#[test]
fn close_notify_is_seen_both_ways() {
    let identity = self_signed_cert(&[MX]);
    for (client_engine, server_engine) in engine_pairs() {
        let what = format!("{client_engine}/{server_engine}");
        let mut outcome = handshake(
            &client_tls(client_engine, TlsVerify::No, None),
            &server_tls(server_engine, &identity),
            MX,
        );
        outcome.established();
        let (client, server) = (outcome.client.as_mut(), outcome.server.as_mut());
        client.close();
        let (c, s) = pump_sessions(client, server);
        assert_eq!((c, s), (Ok(()), Ok(())), "{what}");
        assert!(server.peer_closed(), "{what}");
        server.close();
        let (c, s) = pump_sessions(client, server);
        assert_eq!((c, s), (Ok(()), Ok(())), "{what}");
        assert!(client.peer_closed(), "{what}");
    }
}

#[test]
fn names_that_are_neither_dns_nor_ip_cannot_start() {
    for engine in engines() {
        let tls = client_tls(engine, TlsVerify::No, None);
        for name in ["", "mx example", "[mx.example.test]", "mx\0.example"] {
            let error = tls.new_session(name).unwrap_err();
            assert!(
                matches!(error, TlsError::Handshake(_)),
                "{engine} {name:?}: {error:?}"
            );
        }
    }
}

/// What is wrong, the CA PEM, the client certificate and key PEM.
type Case = (&'static str, Option<Vec<u8>>, Option<(Vec<u8>, Vec<u8>)>);

#[test]
fn bad_ca_and_client_certificates_are_configuration_errors() {
    let ca = TestCa::new();
    let client = ca.issue(&["client.example.test"]);
    let other = ca.issue(&["other.example.test"]);
    for engine in engines() {
        let cases: [Case; 5] = [
            ("garbage CA", Some(b"not pem".to_vec()), None),
            ("empty CA", Some(Vec::new()), None),
            (
                "garbage client certificate",
                None,
                Some((b"not pem".to_vec(), client.key_pem.clone())),
            ),
            (
                "garbage client key",
                None,
                Some((client.cert_pem.clone(), b"not pem".to_vec())),
            ),
            (
                "key of another certificate",
                None,
                Some((client.cert_pem.clone(), other.key_pem.clone())),
            ),
        ];
        for (what, ca_pem, client_cert) in cases {
            let mut config = ClientTlsConfig::new(engine);
            config.verify = TlsVerify::Host;
            config.ca_pem = ca_pem;
            config.client_cert = client_cert;
            let error = ClientTls::new(&config).unwrap_err();
            let TlsError::Config(message) = &error else {
                panic!("{engine}, {what}: {error:?}");
            };
            assert!(!message.is_empty(), "{engine}, {what}");
        }
    }
}

#[test]
fn warnings_name_settings_that_cannot_work() {
    let ca = TestCa::new();
    for engine in engines() {
        assert!(client_tls(engine, TlsVerify::No, None)
            .warnings()
            .is_empty());
        assert!(client_tls(engine, TlsVerify::Host, Some(&ca))
            .warnings()
            .is_empty());
        let warnings = client_tls(engine, TlsVerify::Host, None).warnings();
        assert!(warnings[0].contains("without TLS_CA"), "{warnings:?}");
        let warnings = client_tls(engine, TlsVerify::No, Some(&ca)).warnings();
        assert!(warnings[0].contains("no effect"), "{warnings:?}");
    }
}

/// The server engines never ask for a client certificate: one configured
/// must not get in the way.
#[test]
fn a_configured_client_certificate_does_not_disturb_the_server_engines() {
    let ca = TestCa::new();
    let issued = ca.issue(&[MX]);
    let client_identity = ca.issue(&["client.example.test"]);
    for (client_engine, server_engine) in engine_pairs() {
        let mut config = ClientTlsConfig::new(client_engine);
        config.verify = TlsVerify::Host;
        config.ca_pem = Some(ca.cert_pem.clone());
        config.client_cert = Some((
            client_identity.cert_pem.clone(),
            client_identity.key_pem.clone(),
        ));
        let client_tls = ClientTls::new(&config).unwrap();
        assert!(client_tls.has_client_certificate());
        let outcome = handshake(&client_tls, &server_tls(server_engine, &issued), MX);
        let (info, server_info) = outcome.established();
        assert_eq!(info.certificate, CertificateStatus::Trusted);
        assert_eq!(server_info.peer_certificate, None, "{}", outcome.what);
    }
}

/// A plain rustls server as a [`TlsSession`], for what Petrel's server
/// engines do not do: TLS 1.2 only, and asking for a client certificate.
#[derive(Debug)]
struct RawRustlsServer {
    conn: rustls::ServerConnection,
    failed: Option<TlsError>,
}

impl RawRustlsServer {
    fn new(identity: &CertAndKey, tls12_only: bool, client_ca: Option<&TestCa>) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(CertificateDer::from_pem_slice(&ca.cert_pem).unwrap())
                    .unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(&identity.cert_pem).unwrap()],
                rustls_pki_types::PrivateKeyDer::from_pem_slice(&identity.key_pem).unwrap(),
            )
            .unwrap();
        RawRustlsServer {
            conn: rustls::ServerConnection::new(Arc::new(config)).unwrap(),
            failed: None,
        }
    }
}

impl TlsSession for RawRustlsServer {
    fn handle_ciphertext(&mut self, mut data: &[u8]) -> Result<(), TlsError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        while !data.is_empty() {
            self.conn.read_tls(&mut data).unwrap();
            if let Err(e) = self.conn.process_new_packets() {
                let error = TlsError::Handshake(TlsFailure::new(TlsFailureKind::Other, e));
                self.failed = Some(error.clone());
                return Err(error);
            }
        }
        Ok(())
    }

    fn read_plaintext(&mut self, out: &mut Vec<u8>) -> Result<usize, TlsError> {
        match self.conn.reader().read_to_end(out) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(TlsError::Protocol(TlsFailure::new(
                TlsFailureKind::Other,
                e,
            ))),
        }
    }

    fn write_plaintext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        self.conn.writer().write_all(data).unwrap();
        Ok(())
    }

    fn poll_ciphertext(&mut self, out: &mut Vec<u8>) -> usize {
        let before = out.len();
        while self.conn.wants_write() {
            self.conn.write_tls(out).unwrap();
        }
        out.len() - before
    }

    fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    fn info(&self) -> Option<TlsInfo> {
        None
    }

    fn close(&mut self) {
        self.conn.send_close_notify();
    }

    fn peer_closed(&self) -> bool {
        false
    }
}

#[test]
fn a_client_certificate_is_presented_when_the_server_asks() {
    let ca = TestCa::new();
    let issued = ca.issue(&[MX]);
    let client_identity = ca.issue(&["client.example.test"]);
    for engine in engines() {
        for tls12_only in [false, true] {
            let what = format!("{engine} client, TLS 1.2 only: {tls12_only}");
            let mut config = ClientTlsConfig::new(engine);
            config.verify = TlsVerify::Host;
            config.ca_pem = Some(ca.cert_pem.clone());
            config.client_cert = Some((
                client_identity.cert_pem.clone(),
                client_identity.key_pem.clone(),
            ));
            let mut client = ClientTls::new(&config).unwrap().new_session(MX).unwrap();
            let mut server = RawRustlsServer::new(&issued, tls12_only, Some(&ca));
            let (c, s) = pump_sessions(client.as_mut(), &mut server);
            assert_eq!((c, s), (Ok(()), Ok(())), "{what}");
            let presented = server.conn.peer_certificates().unwrap();
            assert_eq!(
                presented[0].as_ref(),
                client_identity.cert_der().as_slice(),
                "{what}"
            );
            let info = client.info().unwrap();
            assert_eq!(info.certificate, CertificateStatus::Trusted, "{what}");
            let version = if tls12_only {
                TlsVersion::Tls12
            } else {
                TlsVersion::Tls13
            };
            assert_eq!(info.version, version, "{what}");

            // Without one, this server refuses the client.
            let mut client = client_tls(engine, TlsVerify::Host, Some(&ca))
                .new_session(MX)
                .unwrap();
            let mut server = RawRustlsServer::new(&issued, tls12_only, Some(&ca));
            let (_, s) = pump_sessions(client.as_mut(), &mut server);
            assert!(s.is_err(), "{what}");
        }
    }
}

/// TLS 1.2 has its own signature check (ServerKeyExchange), which
/// `verify = no` must still perform, and its own certificate path.
#[test]
fn tls12_servers_are_verified_as_well() {
    let ca = TestCa::new();
    let issued = ca.issue(&[MX]);
    let self_signed = self_signed_cert(&[MX]);
    for engine in engines() {
        for (verify, identity, trusted) in [
            (TlsVerify::No, &self_signed, None),
            (TlsVerify::Host, &issued, Some(true)),
            (TlsVerify::Optional, &self_signed, Some(false)),
        ] {
            let what = format!("{engine} client, verify {verify}");
            let mut client = client_tls(engine, verify, Some(&ca))
                .new_session(MX)
                .unwrap();
            let mut server = RawRustlsServer::new(identity, true, None);
            let (c, s) = pump_sessions(client.as_mut(), &mut server);
            assert_eq!((c, s), (Ok(()), Ok(())), "{what}");
            let info = client.info().unwrap();
            assert_eq!(info.version, TlsVersion::Tls12, "{what}");
            assert!(info.cipher.contains("_WITH_"), "{what}: {}", info.cipher);
            match trusted {
                None => assert_eq!(info.certificate, CertificateStatus::NotChecked, "{what}"),
                Some(true) => assert_eq!(info.certificate, CertificateStatus::Trusted, "{what}"),
                Some(false) => {
                    assert_untrusted(&info.certificate, &what);
                }
            }
        }
        let mut client = client_tls(engine, TlsVerify::Host, Some(&ca))
            .new_session(OTHER)
            .unwrap();
        let mut server = RawRustlsServer::new(&issued, true, None);
        let (c, _) = pump_sessions(client.as_mut(), &mut server);
        assert!(
            matches!(c, Err(TlsError::Certificate(_))),
            "{engine}: {c:?}"
        );
    }
}
