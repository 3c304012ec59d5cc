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
use petrel_core::tls::record::{
    RecordObserver, CONTENT_TYPE_ALERT, CONTENT_TYPE_APPLICATION_DATA, CONTENT_TYPE_HANDSHAKE,
};
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
        Self::with_shared_config(Self::accepting_config(tls12_only))
    }

    /// [`RustlsClient::new`]'s configuration, to share between clients:
    /// with it goes rustls's session cache, so a second client resumes
    /// the first one's session.
    pub fn accepting_config(tls12_only: bool) -> Arc<ClientConfig> {
        let provider = Arc::new(ring::default_provider());
        let config = Self::builder(&provider, tls12_only)
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth();
        Arc::new(config)
    }

    /// Whether the handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
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
        Self::with_shared_config(Arc::new(config))
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

    /// A client of `config`, shared or not.
    pub fn with_shared_config(config: Arc<ClientConfig>) -> Self {
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        RustlsClient {
            conn: ClientConnection::new(config, name).unwrap(),
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
        Self::configured(|builder| {
            if tls12_only {
                builder
                    .set_max_proto_version(Some(SslVersion::TLS1_2))
                    .unwrap();
            }
        })
    }

    /// A client for "localhost" set up by `configure` (versions, suites).
    pub fn configured(configure: impl FnOnce(&mut openssl::ssl::SslConnectorBuilder)) -> Self {
        let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
        builder.set_verify(SslVerifyMode::NONE);
        configure(&mut builder);
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

/// A TLS alert as received: level (1 warning, 2 fatal) and description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    pub level: u8,
    pub description: u8,
}

impl Alert {
    /// A `close_notify` warning.
    pub const CLOSE_NOTIFY: Alert = Alert {
        level: 1,
        description: 0,
    };
    /// A `no_renegotiation` warning (RFC 5246 §7.2.2).
    pub const NO_RENEGOTIATION: Alert = Alert {
        level: 1,
        description: 100,
    };
}

/// The one suite the [`RecordClient`] speaks: AES-128-GCM (ECDSA, as the
/// test certificates are).
const RECORD_CLIENT_SUITE: rustls::SupportedCipherSuite =
    ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
/// TLS 1.2 on the wire.
const TLS12_WIRE: [u8; 2] = [3, 3];
/// AES-GCM in TLS 1.2 (RFC 5288): the per-record explicit nonce and the tag.
const GCM_EXPLICIT_NONCE_LEN: usize = 8;
const GCM_TAG_LEN: usize = 16;

/// One direction of a TLS 1.2 AES-GCM connection (RFC 5288, RFC 5246
/// §6.2.3.3): the key, the 4-octet implicit salt, and the sequence number
/// of the next record.
struct GcmDirection {
    key: ::ring::aead::LessSafeKey,
    salt: [u8; 4],
    seq: u64,
}

impl GcmDirection {
    fn new((seq, secrets): (u64, rustls::ConnectionTrafficSecrets)) -> Self {
        let rustls::ConnectionTrafficSecrets::Aes128Gcm { key, iv } = secrets else {
            panic!("the record client negotiated something other than AES-128-GCM");
        };
        // rustls hands out the salt followed by the explicit nonce it
        // would have started from; only the salt is fixed per connection.
        let salt = iv.as_ref()[..4].try_into().unwrap();
        let key = ::ring::aead::UnboundKey::new(&::ring::aead::AES_128_GCM, key.as_ref()).unwrap();
        GcmDirection {
            key: ::ring::aead::LessSafeKey::new(key),
            salt,
            seq,
        }
    }

    fn nonce(&self, explicit: [u8; GCM_EXPLICIT_NONCE_LEN]) -> ::ring::aead::Nonce {
        let mut nonce = [0; 12];
        nonce[..4].copy_from_slice(&self.salt);
        nonce[4..].copy_from_slice(&explicit);
        ::ring::aead::Nonce::assume_unique_for_key(nonce)
    }

    /// The additional data: seq_num, type, version, plaintext length.
    fn aad(&self, content_type: u8, version: [u8; 2], len: usize) -> ::ring::aead::Aad<[u8; 13]> {
        let mut aad = [0; 13];
        aad[..8].copy_from_slice(&self.seq.to_be_bytes());
        aad[8] = content_type;
        aad[9..11].copy_from_slice(&version);
        aad[11..].copy_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        ::ring::aead::Aad::from(aad)
    }

    /// One whole record (header included) carrying `plaintext`.
    fn seal(&mut self, content_type: u8, plaintext: &[u8]) -> Vec<u8> {
        // The explicit nonce must never repeat under one key; the sequence
        // number never does (OpenSSL makes the same choice).
        let explicit = self.seq.to_be_bytes();
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                self.nonce(explicit),
                self.aad(content_type, TLS12_WIRE, plaintext.len()),
                &mut body,
            )
            .unwrap();
        self.seq += 1;
        let len = GCM_EXPLICIT_NONCE_LEN + body.len();
        let mut record = vec![content_type, TLS12_WIRE[0], TLS12_WIRE[1]];
        record.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        record.extend_from_slice(&explicit);
        record.extend_from_slice(&body);
        record
    }

    /// Decrypts one record's body (explicit nonce, ciphertext, tag).
    fn open(&mut self, content_type: u8, version: [u8; 2], body: &[u8]) -> Result<Vec<u8>, String> {
        if body.len() < GCM_EXPLICIT_NONCE_LEN + GCM_TAG_LEN {
            return Err(format!("record of {} octets is too short", body.len()));
        }
        let (explicit, sealed) = body.split_at(GCM_EXPLICIT_NONCE_LEN);
        let plaintext_len = sealed.len() - GCM_TAG_LEN;
        let mut buf = sealed.to_vec();
        let plaintext = self
            .key
            .open_in_place(
                self.nonce(explicit.try_into().unwrap()),
                self.aad(content_type, version, plaintext_len),
                &mut buf,
            )
            .map_err(|_| format!("record {} does not decrypt", self.seq))?;
        self.seq += 1;
        Ok(plaintext.to_vec())
    }
}

/// The record layer of an established [`RecordClient`].
struct RecordLayer {
    tx: GcmDirection,
    rx: GcmDirection,
    /// Received ciphertext not yet a whole record.
    incoming: Vec<u8>,
}

enum RecordState {
    Handshaking(Box<ClientConnection>),
    Established(Box<RecordLayer>),
    /// The handshake failed (see `last_error`).
    Failed,
}

/// A TLS 1.2 client that can do what no TLS library's client does: send
/// a renegotiation ClientHello as often as asked, whatever the server
/// answered before.
///
/// rustls (TLS 1.2 only, one AES-GCM suite, secret extraction enabled)
/// runs the handshake; then the client takes the traffic keys and
/// sequence numbers from rustls and writes and reads the records itself
/// with *ring*: application data, alerts, and, on
/// [`renegotiate`](TlsClient::renegotiate), a real ClientHello (from a
/// fresh rustls client) in an encrypted handshake record. It answers
/// nothing itself: alerts received are kept in [`alerts`](Self::alerts).
pub struct RecordClient {
    state: RecordState,
    outgoing: Vec<u8>,
    plaintext: Vec<u8>,
    alerts: Vec<Alert>,
    last_error: Option<String>,
}

impl std::fmt::Debug for RecordClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordClient")
            .field(
                "established",
                &matches!(self.state, RecordState::Established(_)),
            )
            .field("alerts", &self.alerts)
            .field("last_error", &self.last_error)
            .finish_non_exhaustive()
    }
}

impl RecordClient {
    /// A client for "localhost" that accepts any server certificate. The
    /// first flight is ready to poll.
    pub fn new() -> Self {
        let provider = Arc::new(CryptoProvider {
            cipher_suites: vec![RECORD_CLIENT_SUITE],
            ..ring::default_provider()
        });
        let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth();
        config.enable_secret_extraction = true;
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
        let mut outgoing = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut outgoing).unwrap();
        }
        RecordClient {
            state: RecordState::Handshaking(Box::new(conn)),
            outgoing,
            plaintext: Vec::new(),
            alerts: Vec::new(),
            last_error: None,
        }
    }

    /// Every alert the server sent, in order.
    pub fn alerts(&self) -> &[Alert] {
        &self.alerts
    }

    /// Sends `count` real ClientHellos packed in one encrypted handshake
    /// record: one attempt as the session counts them, `count` for an
    /// engine.
    pub fn renegotiate_packed(&mut self, count: usize) {
        let hellos: Vec<u8> = (0..count).flat_map(|_| client_hello_message()).collect();
        self.send(CONTENT_TYPE_HANDSHAKE, &hellos);
    }

    /// Lets rustls take `data`; once its handshake is complete, takes the
    /// keys and sequence numbers from it and continues alone.
    fn handshake(&mut self, mut conn: Box<ClientConnection>, mut data: &[u8]) -> RecordState {
        while !data.is_empty() {
            conn.read_tls(&mut data).unwrap();
            if let Err(e) = conn.process_new_packets() {
                self.last_error = Some(e.to_string());
                return RecordState::Failed;
            }
        }
        while conn.wants_write() {
            conn.write_tls(&mut self.outgoing).unwrap();
        }
        if conn.is_handshaking() {
            return RecordState::Handshaking(conn);
        }
        match conn.reader().read_to_end(&mut self.plaintext) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        let secrets = conn.dangerous_extract_secrets().unwrap();
        RecordState::Established(Box::new(RecordLayer {
            tx: GcmDirection::new(secrets.tx),
            rx: GcmDirection::new(secrets.rx),
            incoming: Vec::new(),
        }))
    }

    /// Queues one encrypted record.
    fn send(&mut self, content_type: u8, plaintext: &[u8]) {
        let RecordState::Established(layer) = &mut self.state else {
            panic!("no record layer: the handshake did not complete");
        };
        let record = layer.tx.seal(content_type, plaintext);
        self.outgoing.extend_from_slice(&record);
    }

    /// Decrypts every whole record received, and takes what it says.
    fn receive(&mut self, layer: &mut RecordLayer, data: &[u8]) {
        layer.incoming.extend_from_slice(data);
        while layer.incoming.len() >= 5 {
            let header = &layer.incoming[..5];
            let (content_type, version) = (header[0], [header[1], header[2]]);
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            if layer.incoming.len() < 5 + len {
                break;
            }
            let record: Vec<u8> = layer.incoming.drain(..5 + len).collect();
            let plaintext = match layer.rx.open(content_type, version, &record[5..]) {
                Ok(plaintext) => plaintext,
                Err(e) => {
                    self.last_error = Some(e);
                    return;
                }
            };
            match (content_type, plaintext.as_slice()) {
                (CONTENT_TYPE_APPLICATION_DATA, data) => self.plaintext.extend_from_slice(data),
                (CONTENT_TYPE_ALERT, [level, description]) => self.alerts.push(Alert {
                    level: *level,
                    description: *description,
                }),
                (other, data) => {
                    self.last_error = Some(format!("unexpected record: type {other}, {data:?}"));
                }
            }
        }
    }
}

/// A rustls client offering only TLS 1.2; its first flight is a real
/// ClientHello.
fn fresh_tls12_client() -> ClientConnection {
    RustlsClient::new(true).conn
}

/// The handshake message of a fresh TLS 1.2 ClientHello, without its
/// record header.
fn client_hello_message() -> Vec<u8> {
    let mut conn = fresh_tls12_client();
    let mut flight = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut flight).unwrap();
    }
    let len = usize::from(u16::from_be_bytes([flight[3], flight[4]]));
    assert_eq!(flight[0], CONTENT_TYPE_HANDSHAKE, "not a handshake record");
    assert_eq!(flight.len(), 5 + len, "a ClientHello in one record");
    assert_eq!(flight[5], 1, "not a ClientHello");
    flight[5..].to_vec()
}

impl TlsClient for RecordClient {
    fn handle_ciphertext(&mut self, data: &[u8]) {
        self.state = match std::mem::replace(&mut self.state, RecordState::Failed) {
            RecordState::Handshaking(conn) => self.handshake(conn, data),
            RecordState::Established(mut layer) => {
                self.receive(&mut layer, data);
                RecordState::Established(layer)
            }
            RecordState::Failed => RecordState::Failed,
        };
    }

    fn poll_ciphertext(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outgoing)
    }

    fn write_plaintext(&mut self, data: &[u8]) {
        for chunk in data.chunks(16 * 1024) {
            self.send(CONTENT_TYPE_APPLICATION_DATA, chunk);
        }
    }

    fn read_plaintext(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.plaintext)
    }

    fn is_handshaking(&self) -> bool {
        matches!(self.state, RecordState::Handshaking(_))
    }

    fn last_error(&self) -> Option<String> {
        self.last_error.clone()
    }

    fn close(&mut self) {
        self.send(
            CONTENT_TYPE_ALERT,
            &[Alert::CLOSE_NOTIFY.level, Alert::CLOSE_NOTIFY.description],
        );
    }

    fn version(&self) -> Option<TlsVersion> {
        match &self.state {
            RecordState::Handshaking(conn) => {
                TlsVersion::from_wire(u16::from(conn.protocol_version()?))
            }
            RecordState::Established(_) => Some(TlsVersion::Tls12),
            RecordState::Failed => None,
        }
    }

    /// Sends a real ClientHello in an encrypted handshake record, however
    /// the server answered the last one.
    fn renegotiate(&mut self) -> bool {
        if !matches!(self.state, RecordState::Established(_)) {
            return false;
        }
        self.send(CONTENT_TYPE_HANDSHAKE, &client_hello_message());
        true
    }
}
