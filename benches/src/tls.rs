//! The TLS engines pumped against each other in memory: Petrel's server
//! engine (`ServerTls`) for each library, with a client of the same
//! library.
//!
//! For TLS 1.3 the client is Petrel's own client engine (`ClientTls`,
//! `TLS_Verify = no`), so both of Petrel's engines are measured. Neither of
//! Petrel's engines can be held to TLS 1.2 — they offer 1.3 and 1.2 and
//! pick 1.3, as an MTA should — so for TLS 1.2 the client is the same
//! library used directly and limited to 1.2 ([`RustlsTls12Client`],
//! [`OpensslTls12Client`]), configured as Petrel's client engine is (no
//! certificate check; handshake signatures still checked). The server,
//! whose cost an MTA receiving mail pays, is Petrel's engine either way.
//!
//! The certificate is rcgen's default: ECDSA P-256, self-signed.

use std::io::{self, Read, Write};
use std::sync::Arc;

use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslSessionCacheMode, SslStream,
    SslVerifyMode, SslVersion,
};
use petrel_core::tls::{
    ClientTls, ClientTlsConfig, MemoryTransport, ServerTls, ServerTlsConfig, TlsEngine, TlsError,
    TlsFailure, TlsFailureKind, TlsInfo, TlsSession, TlsVersion,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::READ_SIZE;

/// The server's name, in its certificate and the client's SNI.
pub const SERVER_NAME: &str = "mx.example.com";

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The certificate.
    pub cert_pem: Vec<u8>,
    /// Its private key.
    pub key_pem: Vec<u8>,
}

impl Identity {
    /// A self-signed certificate for [`SERVER_NAME`].
    pub fn new() -> Self {
        let key = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])
            .expect("rcgen makes a certificate");
        Identity {
            cert_pem: key.cert.pem().into_bytes(),
            key_pem: key.signing_key.serialize_pem().into_bytes(),
        }
    }
}

impl Default for Identity {
    fn default() -> Self {
        Self::new()
    }
}

/// A server and a client context of one library, built once as a
/// listener and a delivery build theirs, ready to make connections.
#[derive(Debug)]
pub struct Endpoints {
    /// The library.
    pub engine: TlsEngine,
    /// The version every connection must negotiate.
    pub version: TlsVersion,
    server: ServerTls,
    client: ClientContext,
}

#[derive(Debug)]
enum ClientContext {
    Petrel(ClientTls),
    Rustls12(Arc<rustls::ClientConfig>),
    Openssl12(SslContext),
}

impl Endpoints {
    /// The contexts for `engine` at `version` (TLS 1.2 or 1.3).
    pub fn new(engine: TlsEngine, version: TlsVersion, identity: &Identity) -> Self {
        let server_config =
            ServerTlsConfig::new(engine, identity.cert_pem.clone(), identity.key_pem.clone());
        let server = ServerTls::new(&server_config).expect("the server engine takes the identity");
        let client = match (version, engine) {
            (TlsVersion::Tls13, _) => ClientContext::Petrel(
                ClientTls::new(&ClientTlsConfig::new(engine)).expect("the client engine builds"),
            ),
            (TlsVersion::Tls12, TlsEngine::Rustls) => {
                ClientContext::Rustls12(RustlsTls12Client::config())
            }
            (TlsVersion::Tls12, TlsEngine::Openssl) => {
                ClientContext::Openssl12(OpensslTls12Client::context())
            }
            (version, engine) => panic!("no bench for {engine} at {version}"),
        };
        Endpoints {
            engine,
            version,
            server,
            client,
        }
    }

    /// A new connection, its handshake done; panics if it fails or
    /// negotiates another version.
    pub fn connect(&self) -> Connection {
        let mut client: Box<dyn TlsSession> = match &self.client {
            ClientContext::Petrel(tls) => tls
                .new_session(SERVER_NAME)
                .expect("the client session starts"),
            ClientContext::Rustls12(config) => Box::new(RustlsTls12Client::new(config)),
            ClientContext::Openssl12(context) => Box::new(OpensslTls12Client::new(context)),
        };
        let mut server = self
            .server
            .new_session()
            .expect("the server session starts");
        let mut wire = Vec::with_capacity(2 * READ_SIZE);
        handshake(client.as_mut(), server.as_mut(), &mut wire).expect("the handshake succeeds");
        let info = server.info().expect("the server knows what it negotiated");
        assert_eq!(info.version, self.version, "{}", self.engine);
        Connection {
            client,
            server,
            wire,
        }
    }
}

/// An established connection.
#[derive(Debug)]
pub struct Connection {
    /// The client side.
    pub client: Box<dyn TlsSession>,
    /// The server side.
    pub server: Box<dyn TlsSession>,
    wire: Vec<u8>,
}

impl Connection {
    /// Sends `data` from client to server in writes of [`READ_SIZE`], the
    /// ciphertext delivered in reads of the same size; appends what the
    /// server decrypted to `received`, returns how many octets that was.
    pub fn transfer(&mut self, data: &[u8], received: &mut Vec<u8>) -> usize {
        let before = received.len();
        for write in data.chunks(READ_SIZE) {
            self.client
                .write_plaintext(write)
                .expect("the client encrypts");
            self.wire.clear();
            self.client.poll_ciphertext(&mut self.wire);
            for read in self.wire.chunks(READ_SIZE) {
                self.server
                    .handle_ciphertext(read)
                    .expect("the server decrypts");
            }
            self.server
                .read_plaintext(received)
                .expect("the server reads");
        }
        received.len() - before
    }
}

/// Moves ciphertext between `client` and `server` until neither has more
/// to say; fails if either fails or either is still handshaking.
pub fn handshake(
    client: &mut dyn TlsSession,
    server: &mut dyn TlsSession,
    wire: &mut Vec<u8>,
) -> Result<(), TlsError> {
    // A TLS 1.2 handshake is two round trips, 1.3 one and a half plus the
    // session tickets: a few more rounds than that mean a loop.
    for _ in 0..10 {
        wire.clear();
        client.poll_ciphertext(wire);
        let to_server = !wire.is_empty();
        if to_server {
            server.handle_ciphertext(wire)?;
        }
        wire.clear();
        server.poll_ciphertext(wire);
        let to_client = !wire.is_empty();
        if to_client {
            client.handle_ciphertext(wire)?;
        }
        if !to_server && !to_client {
            if client.is_handshaking() || server.is_handshaking() {
                let failure = TlsFailure::new(TlsFailureKind::Other, "the handshake stalled");
                return Err(TlsError::Handshake(failure));
            }
            return Ok(());
        }
    }
    let failure = TlsFailure::new(TlsFailureKind::Other, "the handshake never went quiet");
    Err(TlsError::Handshake(failure))
}

fn failed(error: impl std::fmt::Display) -> TlsError {
    TlsError::Protocol(TlsFailure::new(TlsFailureKind::Other, error))
}

/// rustls as a client limited to TLS 1.2, accepting any certificate (as
/// Petrel's client engine with `TLS_Verify = no`).
#[derive(Debug)]
pub struct RustlsTls12Client {
    conn: rustls::ClientConnection,
}

impl RustlsTls12Client {
    /// The client configuration, built once.
    pub fn config() -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("ring does TLS 1.2")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth();
        // As Petrel's client engine: no resumption, so that every
        // handshake is a full one (a resumed TLS 1.2 handshake costs a
        // tenth and would flatter the library).
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
    }

    /// A connection to [`SERVER_NAME`]; its ClientHello is ready to poll.
    pub fn new(config: &Arc<rustls::ClientConfig>) -> Self {
        let name = ServerName::try_from(SERVER_NAME).expect("a valid name");
        RustlsTls12Client {
            conn: rustls::ClientConnection::new(Arc::clone(config), name)
                .expect("the connection starts"),
        }
    }
}

impl TlsSession for RustlsTls12Client {
    fn handle_ciphertext(&mut self, mut data: &[u8]) -> Result<(), TlsError> {
        while !data.is_empty() {
            self.conn.read_tls(&mut data).map_err(failed)?;
            self.conn.process_new_packets().map_err(failed)?;
        }
        Ok(())
    }

    fn read_plaintext(&mut self, out: &mut Vec<u8>) -> Result<usize, TlsError> {
        match self.conn.reader().read_to_end(out) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(failed(e)),
        }
    }

    fn write_plaintext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        self.conn.writer().write_all(data).map_err(failed)
    }

    fn poll_ciphertext(&mut self, out: &mut Vec<u8>) -> usize {
        let before = out.len();
        while self.conn.wants_write() {
            if self.conn.write_tls(out).is_err() {
                break;
            }
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

/// Accepts any server certificate; the handshake signatures are still
/// checked, as Petrel's rustls client engine does under `TLS_Verify = no`.
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

/// OpenSSL as a client limited to TLS 1.2, verifying no certificate (as
/// Petrel's client engine with `TLS_Verify = no`), over the same in-memory
/// transport Petrel's OpenSSL engine uses.
#[derive(Debug)]
pub struct OpensslTls12Client {
    stream: SslStream<MemoryTransport>,
    established: bool,
    /// Plaintext written before the handshake completed.
    unsent: Vec<u8>,
}

impl OpensslTls12Client {
    /// The client context, built once.
    pub fn context() -> SslContext {
        let mut builder =
            SslContextBuilder::new(SslMethod::tls_client()).expect("an OpenSSL context");
        builder
            .set_min_proto_version(Some(SslVersion::TLS1_2))
            .expect("TLS 1.2 is known");
        builder
            .set_max_proto_version(Some(SslVersion::TLS1_2))
            .expect("TLS 1.2 is known");
        builder.set_verify(SslVerifyMode::NONE);
        // No resumption, as Petrel's client engines (OpenSSL clients cache
        // no sessions unless told to; said here so it stays so).
        builder.set_session_cache_mode(SslSessionCacheMode::OFF);
        builder.build()
    }

    /// A connection to [`SERVER_NAME`]; its ClientHello is ready to poll.
    pub fn new(context: &SslContext) -> Self {
        let mut ssl = Ssl::new(context).expect("an OpenSSL connection");
        ssl.set_connect_state();
        ssl.set_hostname(SERVER_NAME).expect("SNI is set");
        let stream = SslStream::new(ssl, MemoryTransport::new()).expect("a stream");
        let mut client = OpensslTls12Client {
            stream,
            established: false,
            unsent: Vec::new(),
        };
        client.advance().expect("the ClientHello is written");
        client
    }

    /// Moves the handshake on, or reads what arrived once established.
    fn advance(&mut self) -> Result<(), TlsError> {
        if !self.established {
            match self.stream.do_handshake() {
                Ok(()) => self.established = true,
                Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(()),
                Err(e) => return Err(failed(e)),
            }
            let unsent = std::mem::take(&mut self.unsent);
            self.write_plaintext(&unsent)?;
        }
        // The server says nothing after the handshake in these benches;
        // whatever it might say is read and dropped.
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.ssl_read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(()),
                Err(e) => return Err(failed(e)),
            }
        }
    }
}

impl TlsSession for OpensslTls12Client {
    fn handle_ciphertext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        self.stream.get_mut().push_incoming(data);
        self.advance()
    }

    fn read_plaintext(&mut self, _out: &mut Vec<u8>) -> Result<usize, TlsError> {
        Ok(0)
    }

    fn write_plaintext(&mut self, mut data: &[u8]) -> Result<(), TlsError> {
        if !self.established {
            self.unsent.extend_from_slice(data);
            return Ok(());
        }
        while !data.is_empty() {
            let n = self.stream.ssl_write(data).map_err(failed)?;
            data = &data[n..];
        }
        Ok(())
    }

    fn poll_ciphertext(&mut self, out: &mut Vec<u8>) -> usize {
        self.stream.get_mut().take_outgoing(out)
    }

    fn is_handshaking(&self) -> bool {
        !self.established
    }

    fn info(&self) -> Option<TlsInfo> {
        None
    }

    fn close(&mut self) {
        let _ = self.stream.shutdown();
    }

    fn peer_closed(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_and_version_connects_and_carries_bytes_intact() {
        let identity = Identity::new();
        let data: Vec<u8> = (0..3 * READ_SIZE + 17).map(|i| (i % 251) as u8).collect();
        for engine in [TlsEngine::Rustls, TlsEngine::Openssl] {
            for version in [TlsVersion::Tls12, TlsVersion::Tls13] {
                let endpoints = Endpoints::new(engine, version, &identity);
                let mut connection = endpoints.connect();
                let mut received = Vec::new();
                let n = connection.transfer(&data, &mut received);
                assert_eq!(n, data.len(), "{engine} {version}");
                assert!(received == data, "{engine} {version}: bytes changed");
            }
        }
    }

    /// A resumed handshake costs a fraction of a full one: the TLS 1.2
    /// clients must not resume, or the handshake bench measures the wrong
    /// thing.
    #[test]
    fn tls12_clients_never_resume() {
        let identity = Identity::new();
        let connect = |client: &mut dyn TlsSession, engine| {
            let endpoints = Endpoints::new(engine, TlsVersion::Tls12, &identity);
            let mut server = endpoints.server.new_session().unwrap();
            handshake(client, server.as_mut(), &mut Vec::new()).unwrap();
        };
        let config = RustlsTls12Client::config();
        let context = OpensslTls12Client::context();
        for _ in 0..2 {
            let mut client = RustlsTls12Client::new(&config);
            connect(&mut client, TlsEngine::Rustls);
            let kind = client.conn.handshake_kind();
            assert_eq!(kind, Some(rustls::HandshakeKind::Full));
            let mut client = OpensslTls12Client::new(&context);
            connect(&mut client, TlsEngine::Openssl);
            assert!(!client.stream.ssl().session_reused());
        }
    }
}
