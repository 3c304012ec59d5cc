//! Test support shared by petrel-core's integration tests: test
//! certificates (self-signed, or issued by a test CA), in-memory TLS
//! *clients* built on the real libraries (no sockets), and pumps that
//! shuttle ciphertext between a client and a server [`TlsSession`] until
//! both are quiet.
//!
//! Each test crate includes this with `mod support;` and uses what it needs.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::os::raw::c_int;
use std::sync::Arc;

use openssl::ssl::{
    ErrorCode, Ssl, SslConnector, SslMethod, SslRef, SslStream, SslVerifyMode, SslVersion,
};
use petrel_core::tls::record::RecordObserver;
use petrel_core::tls::{MemoryTransport, TlsError, TlsSession, TlsVersion};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The name the clients ask for (SNI) and the test certificate is for.
pub const SERVER_NAME: &str = "localhost";

/// A fresh self-signed certificate for "localhost": (certificate PEM,
/// private key PEM).
pub fn test_cert() -> (Vec<u8>, Vec<u8>) {
    let CertAndKey { cert_pem, key_pem } = self_signed_cert(&[SERVER_NAME]);
    (cert_pem, key_pem)
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertAndKey {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl CertAndKey {
    /// The certificate's DER, as a TLS peer receives it.
    pub fn cert_der(&self) -> Vec<u8> {
        CertificateDer::from_pem_slice(&self.cert_pem)
            .unwrap()
            .as_ref()
            .to_vec()
    }
}

/// A fresh self-signed certificate for `names` (DNS names or IP
/// addresses).
pub fn self_signed_cert(names: &[&str]) -> CertAndKey {
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    CertAndKey {
        cert_pem: certified.cert.pem().into_bytes(),
        key_pem: certified.signing_key.serialize_pem().into_bytes(),
    }
}

/// A test certificate authority (ECDSA P-256, like everything it issues,
/// so that making one is fast).
pub struct TestCa {
    /// The CA's own certificate, PEM: what a verifying peer trusts.
    pub cert_pem: Vec<u8>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A fresh CA named "Petrel Test CA".
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params.distinguished_name = distinguished_name("Petrel Test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem().into_bytes(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses), valid now.
    pub fn issue(&self, names: &[&str]) -> CertAndKey {
        self.issue_with(names, |_| {})
    }

    /// A certificate for `names` that expired in 2001.
    pub fn issue_expired(&self, names: &[&str]) -> CertAndKey {
        self.issue_with(names, |params| {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        })
    }

    /// A certificate for `names`, after `adjust` had its way with the
    /// parameters.
    pub fn issue_with(
        &self,
        names: &[&str],
        adjust: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> CertAndKey {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).unwrap();
        // A subject of its own: were it the CA's, the certificate would
        // look self-issued.
        params.distinguished_name =
            distinguished_name(names.first().map_or("petrel test", String::as_str));
        adjust(&mut params);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        CertAndKey {
            cert_pem: cert.pem().into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
        }
    }
}

fn distinguished_name(common_name: &str) -> rcgen::DistinguishedName {
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, common_name);
    name
}

/// Shuttles ciphertext between two [`TlsSession`]s (e.g. Petrel's own
/// client and server engines) until neither has anything to send. Returns
/// each side's first error; a side that failed is fed nothing more, but
/// what it queued (its alert) is still delivered.
pub fn pump_sessions(
    client: &mut dyn TlsSession,
    server: &mut dyn TlsSession,
) -> (Result<(), TlsError>, Result<(), TlsError>) {
    let mut client_error = None;
    let mut server_error = None;
    for _ in 0..1000 {
        let mut to_server = Vec::new();
        client.poll_ciphertext(&mut to_server);
        if !to_server.is_empty() && server_error.is_none() {
            server_error = server.handle_ciphertext(&to_server).err();
        }
        let mut to_client = Vec::new();
        server.poll_ciphertext(&mut to_client);
        if !to_client.is_empty() && client_error.is_none() {
            client_error = client.handle_ciphertext(&to_client).err();
        }
        if to_server.is_empty() && to_client.is_empty() {
            return (
                client_error.map_or(Ok(()), Err),
                server_error.map_or(Ok(()), Err),
            );
        }
    }
    panic!("client and server never went quiet");
}

/// What the tests need from an in-memory TLS client.
pub trait TlsClient {
    /// Feeds ciphertext from the server. Errors are kept in `last_error`.
    fn handle_ciphertext(&mut self, data: &[u8]);
    /// Takes the ciphertext the client wants to send.
    fn poll_ciphertext(&mut self) -> Vec<u8>;
    /// Sends application data (buffered until the handshake completes).
    fn write_plaintext(&mut self, data: &[u8]);
    /// Takes the application data received so far.
    fn read_plaintext(&mut self) -> Vec<u8>;
    /// True until the handshake completes, and during a renegotiation.
    fn is_handshaking(&self) -> bool;
    /// The last error the client's library reported, if any.
    fn last_error(&self) -> Option<String>;
    /// Queues close_notify.
    fn close(&mut self);
    /// The negotiated version, once known.
    fn version(&self) -> Option<TlsVersion>;
    /// Starts a TLS 1.2 renegotiation, where the client library can.
    fn renegotiate(&mut self) -> bool {
        false
    }
}

/// Shuttles ciphertext between `client` and `server` until neither has
/// anything to send. Returns the server's first error; the server's alert
/// is still delivered to the client, and the server is fed nothing after
/// it failed.
pub fn pump(client: &mut dyn TlsClient, server: &mut dyn TlsSession) -> Result<(), TlsError> {
    pump_with(client, server, |server, bytes| {
        server.handle_ciphertext(bytes)
    })
}

/// What [`pump_observed`] saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Renegotiation attempts detected the way the SMTP session detects
    /// them (see `petrel_core::tls::record`).
    pub renegotiation_attempts: u32,
    /// The server's first error.
    pub server_error: Option<TlsError>,
}

/// Like [`pump`], but feeds the server through a [`RecordObserver`], one
/// record piece at a time, and counts renegotiation attempts as the SMTP
/// session does: a handshake record starting after the initial handshake,
/// on TLS 1.2 or earlier, while the engine is not renegotiating. Every
/// attempt is fed to the engine (this only observes).
pub fn pump_observed(
    client: &mut dyn TlsClient,
    server: &mut dyn TlsSession,
    observer: &mut RecordObserver,
) -> Observed {
    let mut attempts = 0;
    let result = pump_with(client, server, |server, bytes| {
        for piece in observer.split(bytes) {
            if piece.starts_handshake_record()
                && !server.is_handshaking()
                && server
                    .info()
                    .is_some_and(|info| info.version.can_renegotiate())
            {
                attempts += 1;
            }
            server.handle_ciphertext(piece.bytes)?;
        }
        Ok(())
    });
    Observed {
        renegotiation_attempts: attempts,
        server_error: result.err(),
    }
}

fn pump_with(
    client: &mut dyn TlsClient,
    server: &mut dyn TlsSession,
    mut feed: impl FnMut(&mut dyn TlsSession, &[u8]) -> Result<(), TlsError>,
) -> Result<(), TlsError> {
    let mut server_error = None;
    for _ in 0..1000 {
        let to_server = client.poll_ciphertext();
        if !to_server.is_empty() && server_error.is_none() {
            if let Err(e) = feed(server, &to_server) {
                server_error = Some(e);
            }
        }
        let mut to_client = Vec::new();
        server.poll_ciphertext(&mut to_client);
        if !to_client.is_empty() {
            client.handle_ciphertext(&to_client);
        }
        if to_server.is_empty() && to_client.is_empty() {
            return server_error.map_or(Ok(()), Err);
        }
    }
    panic!("client and server never went quiet");
}

/// Accepts any server certificate: the tests are about the transport, and
/// the server's certificate is made up per test. Handshake signatures are
/// still checked.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// An in-memory rustls client.
#[derive(Debug)]
pub struct RustlsClient {
    conn: ClientConnection,
    plaintext: Vec<u8>,
    last_error: Option<String>,
}

impl RustlsClient {
    /// A client for "localhost" offering TLS 1.3 and 1.2, or only 1.2,
    /// that accepts any server certificate.
    pub fn new(tls12_only: bool) -> Self {
        let provider = Arc::new(ring::default_provider());
        let config = Self::builder(&provider, tls12_only)
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth();
        Self::with_config(config)
    }

    /// A client for "localhost" that verifies the server's certificate
    /// against `trusted_cert_pem` (e.g. the one from [`test_cert`]) as its
    /// only trust anchor; a mismatch shows in `last_error`.
    pub fn verifying(trusted_cert_pem: &[u8], tls12_only: bool) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(trusted_cert_pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(ring::default_provider());
        let config = Self::builder(&provider, tls12_only)
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self::with_config(config)
    }

    fn builder(
        provider: &Arc<CryptoProvider>,
        tls12_only: bool,
    ) -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        ClientConfig::builder_with_provider(Arc::clone(provider))
            .with_protocol_versions(versions)
            .unwrap()
    }

    fn with_config(config: ClientConfig) -> Self {
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        RustlsClient {
            conn: ClientConnection::new(Arc::new(config), name).unwrap(),
            plaintext: Vec::new(),
            last_error: None,
        }
    }
}

impl TlsClient for RustlsClient {
    fn handle_ciphertext(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if let Err(e) = self.conn.read_tls(&mut data) {
                self.last_error = Some(e.to_string());
                return;
            }
            if let Err(e) = self.conn.process_new_packets() {
                self.last_error = Some(e.to_string());
                return;
            }
            match self.conn.reader().read_to_end(&mut self.plaintext) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => self.last_error = Some(e.to_string()),
            }
        }
    }

    fn poll_ciphertext(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut out).unwrap();
        }
        out
    }

    fn write_plaintext(&mut self, data: &[u8]) {
        self.conn.writer().write_all(data).unwrap();
    }

    fn read_plaintext(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.plaintext)
    }

    fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    fn last_error(&self) -> Option<String> {
        self.last_error.clone()
    }

    fn close(&mut self) {
        self.conn.send_close_notify();
    }

    fn version(&self) -> Option<TlsVersion> {
        TlsVersion::from_wire(u16::from(self.conn.protocol_version()?))
    }
}

extern "C" {
    /// libssl's `int SSL_renegotiate(SSL *s)`, which openssl-sys does not
    /// declare: schedules a renegotiation (TLS 1.2 and earlier).
    fn SSL_renegotiate(s: *mut openssl_sys::SSL) -> c_int;
}

/// Asks libssl to renegotiate `ssl` on its next handshake step.
fn ssl_renegotiate(ssl: &SslRef) -> c_int {
    // `&SslRef` is, by the foreign-types design the openssl crate uses,
    // the `SSL *` itself reinterpreted as a reference to an opaque type
    // (`ForeignTypeRef::from_ptr` is `&*(ptr as *mut Self)`), so its
    // address is the `SSL *`. The opaque type has interior mutability, so
    // libssl mutating it through a shared reference is sound.
    let ptr = ssl as *const SslRef as *mut openssl_sys::SSL;
    // SAFETY: `ptr` is a valid, live `SSL *` for the duration of the call
    // (borrowed from the stream that owns it), SSL_renegotiate only
    // touches that object, and nothing else uses it concurrently.
    unsafe { SSL_renegotiate(ptr) }
}

/// An in-memory OpenSSL client, able to start renegotiations.
#[derive(Debug)]
pub struct OpensslClient {
    stream: SslStream<MemoryTransport>,
    established: bool,
    plaintext: Vec<u8>,
    unsent: Vec<u8>,
    last_error: Option<String>,
    renegotiating: bool,
    renegotiations_completed: u32,
}

impl OpensslClient {
    /// A client for "localhost" offering TLS 1.3 and 1.2, or only 1.2 (as
    /// needed to renegotiate). The first flight is ready to poll.
    pub fn new(tls12_only: bool) -> Self {
        let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
        builder.set_verify(SslVerifyMode::NONE);
        if tls12_only {
            builder
                .set_max_proto_version(Some(SslVersion::TLS1_2))
                .unwrap();
        }
        let mut ssl = Ssl::new(builder.build().context()).unwrap();
        ssl.set_hostname(SERVER_NAME).unwrap();
        ssl.set_connect_state();
        let mut client = OpensslClient {
            stream: SslStream::new(ssl, MemoryTransport::new()).unwrap(),
            established: false,
            plaintext: Vec::new(),
            unsent: Vec::new(),
            last_error: None,
            renegotiating: false,
            renegotiations_completed: 0,
        };
        client.drive();
        client
    }

    /// Starts a TLS 1.2 renegotiation: the ClientHello is ready to poll.
    /// Returns false if libssl refused to start one (e.g. on TLS 1.3).
    pub fn renegotiate(&mut self) -> bool {
        if ssl_renegotiate(self.stream.ssl()) != 1 {
            self.last_error = Some(openssl::error::ErrorStack::get().to_string());
            return false;
        }
        self.renegotiating = true;
        match self.stream.do_handshake() {
            Ok(()) => {}
            Err(e) if e.code() == ErrorCode::WANT_READ => {}
            Err(e) => self.last_error = Some(e.to_string()),
        }
        true
    }

    /// How many renegotiations this client started and completed.
    pub fn renegotiations_completed(&self) -> u32 {
        self.renegotiations_completed
    }

    fn drive(&mut self) {
        if self.last_error.is_some() {
            return;
        }
        if !self.established {
            match self.stream.do_handshake() {
                Ok(()) => self.established = true,
                Err(e) if e.code() == ErrorCode::WANT_READ => return,
                Err(e) => {
                    self.last_error = Some(e.to_string());
                    return;
                }
            }
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.stream.ssl_read(&mut buf) {
                Ok(n) => self.plaintext.extend_from_slice(&buf[..n]),
                Err(e) if e.code() == ErrorCode::WANT_READ => break,
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => break,
                Err(e) => {
                    self.last_error = Some(e.to_string());
                    return;
                }
            }
        }
        if self.renegotiating && self.stream.ssl().is_init_finished() {
            self.renegotiating = false;
            self.renegotiations_completed += 1;
        }
        while !self.unsent.is_empty() {
            match self.stream.ssl_write(&self.unsent) {
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                Err(e) if e.code() == ErrorCode::WANT_READ => break,
                Err(e) => {
                    self.last_error = Some(e.to_string());
                    return;
                }
            }
        }
    }
}

impl TlsClient for OpensslClient {
    fn renegotiate(&mut self) -> bool {
        OpensslClient::renegotiate(self)
    }

    fn handle_ciphertext(&mut self, data: &[u8]) {
        self.stream.get_mut().push_incoming(data);
        self.drive();
    }

    fn poll_ciphertext(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.stream.get_mut().take_outgoing(&mut out);
        out
    }

    fn write_plaintext(&mut self, data: &[u8]) {
        self.unsent.extend_from_slice(data);
        if self.established {
            self.drive();
        }
    }

    fn read_plaintext(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.plaintext)
    }

    fn is_handshaking(&self) -> bool {
        !self.stream.ssl().is_init_finished()
    }

    fn last_error(&self) -> Option<String> {
        self.last_error.clone()
    }

    fn close(&mut self) {
        let _ = self.stream.shutdown();
    }

    fn version(&self) -> Option<TlsVersion> {
        match self.stream.ssl().version2()? {
            v if v == SslVersion::TLS1_3 => Some(TlsVersion::Tls13),
            v if v == SslVersion::TLS1_2 => Some(TlsVersion::Tls12),
            _ => None,
        }
    }
}

/// Both kinds of client, for tests that run against each.
pub fn clients(tls12_only: bool) -> Vec<(&'static str, Box<dyn TlsClient>)> {
    vec![
        ("rustls", Box::new(RustlsClient::new(tls12_only))),
        ("openssl", Box::new(OpensslClient::new(tls12_only))),
    ]
}
