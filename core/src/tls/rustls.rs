//! The rustls engine: `rustls::Connection` driven over byte slices, on
//! either side.
//!
//! rustls is already sans-IO (`read_tls`/`process_new_packets`/`write_tls`
//! over any `Read`/`Write`), so this module only adapts its shape to
//! [`TlsSession`]. rustls never renegotiates, and answers a client's
//! attempts by itself, with a count of its own that
//! [`crate::renegotiation`] models (see
//! [who counts](crate::renegotiation#who-counts)). As a client, rustls
//! answers a server's HelloRequest with a `no_renegotiation` warning, and
//! fails the connection on a second one.

use std::io::{self, Read, Write};
use std::sync::Arc;

use ::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use ::rustls::client::{Resumption, WebPkiServerVerifier};
use ::rustls::crypto::{ring, CryptoProvider};
use ::rustls::{
    CertificateError, ClientConfig, ClientConnection, Connection, DigitallySignedStruct,
    RootCertStore, ServerConfig, ServerConnection, SignatureScheme, SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::client::{CertificateCheck, PeerName, Role};
use super::{
    CertificateProblem, CertificateProblemKind, ClientTlsConfig, ServerTlsConfig, TlsError,
    TlsFailure, TlsFailureKind, TlsInfo, TlsSession, TlsVerify, TlsVersion,
};

/// The versions both sides offer: TLS 1.3 and 1.2.
const VERSIONS: &[&SupportedProtocolVersion] =
    &[&::rustls::version::TLS13, &::rustls::version::TLS12];

/// The cryptography of every context.
///
/// The provider is named explicitly rather than taken from a process-wide
/// default: two libraries in one process installing different defaults
/// would otherwise decide Petrel's cryptography.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Every certificate in `pem` (`what` names it in errors); at least one.
fn parse_certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Config(format!("cannot parse the {what} PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(TlsError::Config(format!(
            "no certificate found in the {what} PEM"
        )));
    }
    Ok(certificates)
}

/// A certificate chain and its private key, both PEM (`what` names the
/// certificate in errors). Whether they match is checked by rustls when
/// they are installed.
fn parse_identity(
    chain_pem: &[u8],
    key_pem: &[u8],
    what: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = parse_certificates(chain_pem, what)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        TlsError::Config(format!(
            "cannot parse the private key PEM of the {what}: {e}"
        ))
    })?;
    Ok((chain, key))
}

/// A listener's rustls context.
#[derive(Clone, Debug)]
pub(super) struct RustlsServer {
    config: Arc<ServerConfig>,
}

impl RustlsServer {
    /// Parses the PEM chain and key and builds a TLS 1.2 + 1.3 config.
    pub(super) fn new(config: &ServerTlsConfig) -> Result<Self, TlsError> {
        let (chain, key) = parse_identity(&config.cert_chain_pem, &config.key_pem, "certificate")?;
        let server_config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsError::Config(format!("unusable TLS protocol versions: {e}")))?
            .with_no_client_auth()
            // Also checks that the key belongs to the end-entity certificate.
            .with_single_cert(chain, key)
            .map_err(|e| {
                TlsError::Config(format!("certificate and private key are unusable: {e}"))
            })?;
        Ok(RustlsServer {
            config: Arc::new(server_config),
        })
    }

    /// Starts one server connection.
    pub(super) fn new_session(&self) -> Result<RustlsSession, TlsError> {
        let conn = ServerConnection::new(Arc::clone(&self.config))
            .map_err(|e| TlsError::Config(format!("cannot start a rustls connection: {e}")))?;
        Ok(RustlsSession::new(conn.into(), Role::Server))
    }
}

/// The outbound rustls context.
#[derive(Clone, Debug)]
pub(super) struct RustlsClient {
    /// Everything but the certificate verifier, which is per connection
    /// (it records that connection's verdict): each session clones this
    /// and installs its own [`SessionVerifier`].
    config: Arc<ClientConfig>,
    /// Chain and name verification against `TLS_CA`; `None` without a CA
    /// (webpki refuses an empty root store, and nothing could be trusted).
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl RustlsClient {
    /// Parses the CA bundle and client certificate and builds a TLS 1.2 +
    /// 1.3 config.
    pub(super) fn new(config: &ClientTlsConfig) -> Result<Self, TlsError> {
        let provider = provider();
        let webpki = match &config.ca_pem {
            None => None,
            Some(pem) => {
                let mut roots = RootCertStore::empty();
                for certificate in parse_certificates(pem, "CA")? {
                    roots
                        .add(certificate)
                        .map_err(|e| TlsError::Config(format!("unusable CA certificate: {e}")))?;
                }
                let verifier = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                )
                .build()
                .map_err(|e| TlsError::Config(format!("unusable CA certificates: {e}")))?;
                Some(verifier)
            }
        };
        let placeholder = SessionVerifier {
            webpki: webpki.clone(),
            provider: Arc::clone(&provider),
            check: CertificateCheck::new(config.verify, config.ca_pem.is_some()),
        };
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsError::Config(format!("unusable TLS protocol versions: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(placeholder));
        let mut client_config = match &config.client_cert {
            None => builder.with_no_client_auth(),
            Some((chain_pem, key_pem)) => {
                let (chain, key) = parse_identity(chain_pem, key_pem, "client certificate")?;
                // Also checks that the key belongs to the certificate.
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    TlsError::Config(format!(
                        "client certificate and private key are unusable: {e}"
                    ))
                })?
            }
        };
        // Security decision: no session resumption. A resumed session skips
        // certificate verification, so its status would be unknown (or the
        // verdict of another connection, perhaps under another name), and
        // an MTA's handshakes to MX hosts are not frequent enough per host
        // for the saved round trip to matter.
        client_config.resumption = Resumption::disabled();
        Ok(RustlsClient {
            config: Arc::new(client_config),
            webpki,
            provider,
        })
    }

    /// Starts one client connection to `peer`; the ClientHello is queued.
    pub(super) fn new_session(
        &self,
        peer: &PeerName,
        check: CertificateCheck,
    ) -> Result<RustlsSession, TlsError> {
        let server_name = match peer {
            PeerName::Dns(name) => ServerName::try_from(name.clone()).map_err(|e| {
                let detail = format!("cannot start TLS with {name:?}: {e}");
                TlsError::Handshake(TlsFailure::new(TlsFailureKind::BadServerName, detail))
            })?,
            // rustls sends no SNI for an IP address.
            PeerName::Ip(ip) => ServerName::IpAddress((*ip).into()),
        };
        let mut config = ClientConfig::clone(&self.config);
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(SessionVerifier {
                webpki: self.webpki.clone(),
                provider: Arc::clone(&self.provider),
                check: check.clone(),
            }));
        let conn = ClientConnection::new(Arc::new(config), server_name)
            .map_err(|e| TlsError::Handshake(TlsFailure::new(TlsFailureKind::CannotStart, e)))?;
        Ok(RustlsSession::new(conn.into(), Role::client(peer, check)))
    }
}

/// One connection's server certificate verifier: applies `TLS_Verify` and
/// records the verdict in the connection's [`CertificateCheck`].
#[derive(Debug)]
struct SessionVerifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    check: CertificateCheck,
}

impl SessionVerifier {
    /// Chain (and, for `host`/`optional`, name) verification.
    fn verify_certificate(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, ::rustls::Error> {
        let Some(webpki) = &self.webpki else {
            // Answered with an unknown_ca alert.
            return Err(CertificateError::UnknownIssuer.into());
        };
        let result =
            webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match result {
            // `ca` does not check the name. WebPkiServerVerifier checks the
            // chain (trust, validity in time, revocation) before the name,
            // so a name error means everything else passed.
            Err(::rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check.verify().checks_name() => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
}

impl ServerCertVerifier for SessionVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, ::rustls::Error> {
        // Security decision: `TLS_Verify = no` trusts any certificate (as
        // opportunistic SMTP TLS does: RFC 7435). The handshake signatures
        // are still verified (below), so the connection is encrypted to
        // whoever holds the key of the certificate presented.
        if self.check.verify() == TlsVerify::No {
            return Ok(ServerCertVerified::assertion());
        }
        match self.verify_certificate(end_entity, intermediates, server_name, ocsp_response, now) {
            Ok(verified) => {
                self.check.accept();
                Ok(verified)
            }
            // `optional`: recorded, the handshake goes on.
            Err(error) if self.check.reject(certificate_reason(&error)) => {
                Ok(ServerCertVerified::assertion())
            }
            // `ca`/`host`: rustls sends the alert that fits the error.
            Err(error) => Err(error),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, ::rustls::Error> {
        ::rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, ::rustls::Error> {
        ::rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a certificate was rejected, for logs and the policy. rustls's
/// context-carrying errors explain themselves; the bare ones print as
/// Rust identifiers, so they get words (close to OpenSSL's, which the
/// other engine reports).
fn certificate_reason(error: &::rustls::Error) -> CertificateProblem {
    use CertificateProblemKind as Kind;
    let ::rustls::Error::InvalidCertificate(error) = error else {
        return CertificateProblem::new(Kind::Other, error);
    };
    let (kind, text) = match error {
        CertificateError::BadEncoding => {
            (Kind::BadCertificate, "certificate is not correctly encoded")
        }
        CertificateError::Expired => (Kind::Expired, "certificate has expired"),
        CertificateError::NotValidYet => (Kind::NotYetValid, "certificate is not yet valid"),
        CertificateError::Revoked => (Kind::Revoked, "certificate revoked"),
        CertificateError::UnknownIssuer => (
            Kind::UnknownIssuer,
            "unknown issuer: the chain does not lead to a trusted CA",
        ),
        CertificateError::BadSignature => (Kind::BadCertificate, "certificate signature failure"),
        CertificateError::NotValidForName => (
            Kind::NameMismatch,
            "certificate not valid for the server name",
        ),
        CertificateError::InvalidPurpose => (
            Kind::WrongPurpose,
            "certificate not valid for server authentication",
        ),
        // The variants with context say more (the times, the names): their
        // own words are the detail.
        CertificateError::ExpiredContext { .. } => {
            return CertificateProblem::new(Kind::Expired, error)
        }
        CertificateError::NotValidYetContext { .. } => {
            return CertificateProblem::new(Kind::NotYetValid, error)
        }
        CertificateError::NotValidForNameContext { .. } => {
            return CertificateProblem::new(Kind::NameMismatch, error)
        }
        CertificateError::InvalidPurposeContext { .. } => {
            return CertificateProblem::new(Kind::WrongPurpose, error)
        }
        other => return CertificateProblem::new(Kind::Other, other),
    };
    CertificateProblem::new(kind, text)
}

/// An IO error from rustls's reader or writer: rustls's own error when it
/// wraps one.
fn io_failure(error: &io::Error) -> TlsFailure {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<::rustls::Error>())
    {
        Some(inner) => failure(inner),
        None => TlsFailure::new(TlsFailureKind::Other, error),
    }
}

/// What a rustls error means, for [`TlsFailure`].
fn failure(error: &::rustls::Error) -> TlsFailure {
    use ::rustls::{Error, PeerIncompatible as P};
    use TlsFailureKind as Kind;
    let kind = match error {
        Error::PeerIncompatible(P::NoCipherSuitesInCommon | P::NoKxGroupsInCommon) => {
            Kind::NoCommonCipher
        }
        Error::PeerIncompatible(
            P::NoSignatureSchemesInCommon | P::NoCertificateRequestSignatureSchemesInCommon,
        ) => Kind::NoCommonSignatureScheme,
        // signature_algorithms came with TLS 1.2: a hello without it is
        // from a client that speaks only older versions.
        Error::PeerIncompatible(
            P::SignatureAlgorithmsExtensionRequired
            | P::ServerDoesNotSupportTls12Or13
            | P::ServerTlsVersionIsDisabledByOurConfig
            | P::SupportedVersionsExtensionRequired
            | P::Tls12NotOffered
            | P::Tls12NotOfferedOrEnabled,
        ) => Kind::NoCommonVersion,
        Error::AlertReceived(alert) => Kind::PeerAlert(u8::from(*alert)),
        Error::DecryptError => Kind::BadRecord,
        Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. }
        | Error::InvalidMessage(_)
        | Error::PeerMisbehaved(_)
        | Error::PeerSentOversizedRecord => Kind::BadMessage,
        _ => Kind::Other,
    };
    TlsFailure::new(kind, error)
}

/// One connection of the rustls engine, server or client side.
#[derive(Debug)]
pub(super) struct RustlsSession {
    conn: Connection,
    role: Role,
    /// Decrypted application data not yet taken by the session. Draining
    /// rustls into it after every record keeps rustls's own bounded
    /// plaintext buffer from refusing further input.
    plaintext: Vec<u8>,
    /// The first fatal error; every later input repeats it.
    failed: Option<TlsError>,
    peer_closed: bool,
}

impl RustlsSession {
    fn new(mut conn: Connection, role: Role) -> Self {
        // rustls caps its outgoing buffers at 64 KiB by default and then
        // accepts only part of a write. The SMTP session bounds what it
        // writes (reply lines) and drains ciphertext after every input, so
        // the cap would only turn a large reply into a short write.
        conn.set_buffer_limit(None);
        RustlsSession {
            conn,
            role,
            plaintext: Vec::new(),
            failed: None,
            peer_closed: false,
        }
    }

    fn fail(&mut self, error: TlsError) -> TlsError {
        self.failed = Some(error.clone());
        error
    }

    fn error_from(&self, failure: TlsFailure) -> TlsError {
        if self.conn.is_handshaking() {
            self.role.handshake_error(failure)
        } else {
            TlsError::Protocol(failure)
        }
    }

    /// Moves decrypted data out of rustls into `self.plaintext`.
    fn drain_plaintext(&mut self) -> Result<(), TlsError> {
        match self.conn.reader().read_to_end(&mut self.plaintext) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(self.error_from(io_failure(&e))),
        }
    }
}

impl TlsSession for RustlsSession {
    fn handle_ciphertext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let mut rest = data;
        // Never hand rustls an empty reader: it would take that as EOF.
        while !rest.is_empty() {
            let read = match self.conn.read_tls(&mut rest) {
                Ok(n) => n,
                Err(e) => {
                    let error = self.error_from(io_failure(&e));
                    return Err(self.fail(error));
                }
            };
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    // rustls has queued the alert for poll_ciphertext.
                    let error = self.error_from(failure(&e));
                    return Err(self.fail(error));
                }
            };
            if let Err(error) = self.drain_plaintext() {
                return Err(self.fail(error));
            }
            if state.peer_has_closed() {
                // Anything after close_notify is not part of the stream.
                self.peer_closed = true;
                break;
            }
            if read == 0 {
                break;
            }
        }
        Ok(())
    }

    fn read_plaintext(&mut self, out: &mut Vec<u8>) -> Result<usize, TlsError> {
        Ok(super::transport::hand_over(&mut self.plaintext, out))
    }

    fn write_plaintext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        // Before the handshake completes rustls keeps this as plaintext and
        // encrypts it as soon as it can; the buffer is unbounded (above).
        match self.conn.writer().write_all(data) {
            Ok(()) => Ok(()),
            Err(e) => {
                let error = self.error_from(io_failure(&e));
                Err(self.fail(error))
            }
        }
    }

    fn poll_ciphertext(&mut self, out: &mut Vec<u8>) -> usize {
        let before = out.len();
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail; stop rather than spin if it
            // ever reports nothing written.
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        out.len().saturating_sub(before)
    }

    fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    fn info(&self) -> Option<TlsInfo> {
        if self.conn.is_handshaking() {
            return None;
        }
        let version = TlsVersion::from_wire(u16::from(self.conn.protocol_version()?))?;
        let suite = self.conn.negotiated_cipher_suite()?.suite();
        Some(TlsInfo {
            version,
            cipher: iana_cipher_name(suite),
            peer_certificate: self
                .conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| cert.as_ref().to_vec()),
            server_name: self.role.server_name(|| match &self.conn {
                Connection::Server(server) => server.server_name().map(str::to_owned),
                Connection::Client(_) => None,
            }),
            certificate: self.role.certificate_status(),
        })
    }

    fn close(&mut self) {
        self.conn.send_close_notify();
    }

    fn peer_closed(&self) -> bool {
        self.peer_closed
    }
}

/// rustls names TLS 1.3 suites `TLS13_*` to keep them apart from TLS 1.2
/// ones; IANA (and OpenSSL's standard names) say `TLS_*`. Logs use IANA so
/// that both engines report the same suite the same way.
fn iana_cipher_name(suite: ::rustls::CipherSuite) -> String {
    let name = suite
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("0x{:04x}", u16::from(suite)));
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_names_are_iana() {
        assert_eq!(
            iana_cipher_name(::rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            iana_cipher_name(::rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(
            iana_cipher_name(::rustls::CipherSuite::Unknown(0x1234)),
            "0x1234"
        );
    }
}
