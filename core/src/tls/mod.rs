//! TLS engines as byte transforms.
//!
//! TLS is part of the connection, not of the socket: the SMTP session owns a
//! [`TlsSession`] and moves ciphertext between it and the runtime, which
//! never sees plaintext. That is what makes STARTTLS safe — only the core
//! knows where the plaintext ends and the TLS stream begins.
//!
//! Two engines implement [`TlsSession`], each behind a cargo feature:
//! - `rustls` (default): rustls 0.23 with the *ring* provider, TLS 1.2 and
//!   1.3. rustls never renegotiates.
//! - `openssl`: the system's libssl through the `openssl` crate, TLS 1.2 and
//!   1.3, Mozilla's "intermediate" configuration. It can allow secure
//!   (RFC 5746) client-initiated renegotiation when the listener asks for it.
//!
//! A [`ServerTls`] is built once per listener from a [`ServerTlsConfig`] and
//! hands out one [`TlsSession`] per connection; a [`ClientTls`], built from a
//! [`ClientTlsConfig`], does the same for outbound deliveries, verifying the
//! server's certificate as `TLS_Verify` ([`TlsVerify`]) says. What to do with a
//! renegotiation attempt is decided by [`crate::renegotiation::decide`]; the
//! session sees attempts through the [`record::RecordObserver`] (who counts
//! what: [`crate::renegotiation#who-counts`]).

use std::fmt;
use std::str::FromStr;

mod client;
mod failure;
#[cfg(test)]
pub(crate) mod fake;
#[cfg(feature = "openssl")]
mod openssl;
pub mod record;
#[cfg(feature = "rustls")]
mod rustls;
mod transport;

pub use client::{ClientTls, ClientTlsConfig, TlsVerify, UnknownTlsVerify};
pub use failure::{CertificateProblem, CertificateProblemKind, TlsFailure, TlsFailureKind};
pub use transport::MemoryTransport;

/// Which TLS library implements a listener's (or a peer's) TLS.
///
/// Selected by Momentum's `TLS_Engine` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsEngine {
    /// rustls: memory-safe, never renegotiates.
    Rustls,
    /// OpenSSL (libssl 3): the only engine that can renegotiate.
    Openssl,
}

impl TlsEngine {
    /// Every engine Petrel knows, compiled in or not.
    pub const ALL: [TlsEngine; 2] = [TlsEngine::Rustls, TlsEngine::Openssl];

    /// Whether this engine was compiled in (its cargo feature is enabled).
    pub fn is_available(self) -> bool {
        match self {
            TlsEngine::Rustls => cfg!(feature = "rustls"),
            TlsEngine::Openssl => cfg!(feature = "openssl"),
        }
    }

    /// The configuration spelling, as accepted by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            TlsEngine::Rustls => "rustls",
            TlsEngine::Openssl => "openssl",
        }
    }
}

impl fmt::Display for TlsEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`TlsEngine`]: names the value that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTlsEngine(pub String);

impl fmt::Display for UnknownTlsEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown TLS engine \"{}\" (expected \"rustls\" or \"openssl\")",
            self.0
        )
    }
}

impl std::error::Error for UnknownTlsEngine {}

impl FromStr for TlsEngine {
    type Err = UnknownTlsEngine;

    /// Parses `rustls` or `openssl`, case-insensitively (Momentum option
    /// values are case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TlsEngine::ALL
            .into_iter()
            .find(|engine| engine.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownTlsEngine(s.to_owned()))
    }
}

/// A negotiated TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.0 (never negotiated by Petrel's engines; kept for reporting).
    Tls10,
    /// TLS 1.1 (never negotiated by Petrel's engines; kept for reporting).
    Tls11,
    /// TLS 1.2: the last version with renegotiation.
    Tls12,
    /// TLS 1.3: no renegotiation at all.
    Tls13,
}

impl TlsVersion {
    /// Maps a wire `ProtocolVersion` (0x0301..=0x0304) to a version.
    pub fn from_wire(version: u16) -> Option<Self> {
        match version {
            0x0301 => Some(TlsVersion::Tls10),
            0x0302 => Some(TlsVersion::Tls11),
            0x0303 => Some(TlsVersion::Tls12),
            0x0304 => Some(TlsVersion::Tls13),
            _ => None,
        }
    }

    /// Whether this version has renegotiation (everything before TLS 1.3).
    pub fn can_renegotiate(self) -> bool {
        self <= TlsVersion::Tls12
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls10 => "TLSv1",
            TlsVersion::Tls11 => "TLSv1.1",
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        })
    }
}

/// Parameters of an established TLS connection, for logs and `Received:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// The negotiated protocol version.
    pub version: TlsVersion,
    /// The cipher suite's IANA (RFC) name, e.g.
    /// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256` or `TLS_AES_128_GCM_SHA256`,
    /// whichever the engine, so logs compare across engines. OpenSSL's own
    /// name is used only if OpenSSL knows no standard name.
    pub cipher: String,
    /// The peer's end-entity certificate (DER), if it presented one.
    pub peer_certificate: Option<Vec<u8>>,
    /// The server name the client asked for (SNI), if any. A client
    /// session reports the name it sent (none for an IP literal).
    pub server_name: Option<String>,
    /// What verification of the peer's certificate concluded. Server
    /// sessions do not verify client certificates, so theirs is
    /// [`CertificateStatus::NotChecked`].
    pub certificate: CertificateStatus,
}

/// What certificate verification concluded about the peer's certificate,
/// recorded in [`TlsInfo`] for logs and for the outbound TLS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateStatus {
    /// Not verified: `TLS_Verify = no` (or a server session).
    NotChecked,
    /// The chain leads to a trusted CA, is valid now and, where the name
    /// was checked (`host`, `optional`), matches the server name.
    Trusted,
    /// Verification failed, for this reason (expired, unknown CA, name
    /// mismatch, ...). Only an established connection under
    /// `TLS_Verify = optional` reports it: `ca` and `host` fail the
    /// handshake instead ([`TlsError::Certificate`]).
    Untrusted(CertificateProblem),
}

/// What went wrong in a TLS engine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsError {
    /// The handshake failed (before the connection was established).
    Handshake(TlsFailure),
    /// The handshake failed because the server's certificate was rejected
    /// (`TLS_Verify = ca` or `host`), for this reason. Kept apart from
    /// [`TlsError::Handshake`] because the outbound policy treats
    /// "certificate rejected" differently from "handshake failed".
    Certificate(CertificateProblem),
    /// The peer violated the protocol on an established connection (bad
    /// record, fatal alert, refused renegotiation answered fatally, ...).
    Protocol(TlsFailure),
    /// The engine was asked for but is not compiled in.
    Unavailable(TlsEngine),
    /// The certificate, key or engine settings are unusable, in the
    /// engine's words: only ever shown to an operator by the configuration
    /// check, never acted on by a program.
    Config(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Handshake(msg) => write!(f, "TLS handshake failed: {msg}"),
            TlsError::Certificate(msg) => write!(f, "TLS certificate rejected: {msg}"),
            TlsError::Protocol(msg) => write!(f, "TLS protocol error: {msg}"),
            TlsError::Unavailable(engine) => write!(
                f,
                "TLS engine \"{engine}\" is not available: Petrel was built without the \"{engine}\" feature"
            ),
            TlsError::Config(msg) => write!(f, "TLS configuration error: {msg}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// One TLS connection as a byte transform: ciphertext in/out, plaintext
/// in/out. Runtimes never see plaintext; the SMTP session owns this object.
pub trait TlsSession: Send + fmt::Debug {
    /// Feeds ciphertext received from the peer (any amount; the engine
    /// buffers it) and processes complete records (handshake progress,
    /// decryption). An Err is fatal: the caller sends what
    /// [`poll_ciphertext`](TlsSession::poll_ciphertext) yields (alerts) and
    /// closes. Once failed, every later call returns the same error.
    fn handle_ciphertext(&mut self, data: &[u8]) -> Result<(), TlsError>;
    /// Appends decrypted application data to `out`; returns the number of
    /// octets appended (0 when none).
    fn read_plaintext(&mut self, out: &mut Vec<u8>) -> Result<usize, TlsError>;
    /// Encrypts application data (buffered by the engine until the
    /// handshake completes, if needed).
    fn write_plaintext(&mut self, data: &[u8]) -> Result<(), TlsError>;
    /// Appends ciphertext to send to the peer; returns octets appended.
    fn poll_ciphertext(&mut self, out: &mut Vec<u8>) -> usize;
    /// True until the initial handshake completes; also true during an
    /// (allowed) renegotiation handshake.
    fn is_handshaking(&self) -> bool;
    /// Negotiated parameters, once the initial handshake has completed.
    fn info(&self) -> Option<TlsInfo>;
    /// Queues a close_notify alert.
    fn close(&mut self);
    /// Whether the peer sent close_notify.
    fn peer_closed(&self) -> bool;
}

/// The settings of a listener's TLS, as configured.
#[derive(Debug, Clone)]
pub struct ServerTlsConfig {
    /// Which library implements TLS (`TLS_Engine`).
    pub engine: TlsEngine,
    /// The certificate chain, PEM, end-entity certificate first
    /// (`TLS_Certificate`).
    pub cert_chain_pem: Vec<u8>,
    /// The private key, PEM: PKCS#8, PKCS#1 or SEC1 (`TLS_Key`).
    pub key_pem: Vec<u8>,
    /// Whether secure client-initiated TLS 1.2 renegotiation is allowed
    /// (`TLS_Allow_Renegotiation`); only the openssl engine can honour it.
    pub allow_renegotiation: bool,
    /// How many renegotiation attempts a connection may make before it is
    /// closed (allowed or not); see [`crate::renegotiation`].
    pub max_renegotiations: u32,
}

impl ServerTlsConfig {
    /// The default cap on renegotiation attempts per connection.
    pub const DEFAULT_MAX_RENEGOTIATIONS: u32 = 3;

    /// A configuration that refuses renegotiation, with the default cap.
    pub fn new(engine: TlsEngine, cert_chain_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        ServerTlsConfig {
            engine,
            cert_chain_pem,
            key_pem,
            allow_renegotiation: false,
            max_renegotiations: Self::DEFAULT_MAX_RENEGOTIATIONS,
        }
    }
}

/// The engine-specific half of a [`ServerTls`].
#[derive(Clone, Debug)]
enum ServerBackend {
    #[cfg(feature = "rustls")]
    Rustls(rustls::RustlsServer),
    #[cfg(feature = "openssl")]
    Openssl(openssl::OpensslServer),
    #[cfg(test)]
    Fake(fake::FakeHandshake),
    /// Keeps the enum inhabited-looking for `match` when no engine is
    /// compiled in; it can never be constructed.
    #[cfg(not(any(feature = "rustls", feature = "openssl")))]
    #[allow(dead_code)]
    None(std::convert::Infallible),
}

impl ServerBackend {
    fn new(config: &ServerTlsConfig) -> Result<Self, TlsError> {
        match config.engine {
            #[cfg(feature = "rustls")]
            TlsEngine::Rustls => Ok(ServerBackend::Rustls(rustls::RustlsServer::new(config)?)),
            #[cfg(feature = "openssl")]
            TlsEngine::Openssl => Ok(ServerBackend::Openssl(openssl::OpensslServer::new(config)?)),
            #[allow(unreachable_patterns)]
            engine => Err(TlsError::Unavailable(engine)),
        }
    }
}

/// A built server TLS context (rustls `Arc<ServerConfig>` or openssl
/// `SslAcceptor`): cheap to clone, shared by all connections of a listener.
#[derive(Clone, Debug)]
pub struct ServerTls {
    backend: ServerBackend,
    allow_renegotiation: bool,
    max_renegotiations: u32,
}

impl ServerTls {
    /// Builds the engine's context: parses the PEM certificate chain and
    /// key and checks that they belong together.
    ///
    /// Errors: [`TlsError::Unavailable`] if the engine is not compiled in,
    /// [`TlsError::Config`] for unusable PEM or a key that does not match
    /// the certificate.
    pub fn new(config: &ServerTlsConfig) -> Result<Self, TlsError> {
        let backend = ServerBackend::new(config)?;
        Ok(ServerTls {
            backend,
            allow_renegotiation: config.allow_renegotiation,
            max_renegotiations: config.max_renegotiations,
        })
    }

    /// The fake engine of the simulation, whose handshakes go as told.
    #[cfg(test)]
    pub(crate) fn fake(handshake: fake::FakeHandshake) -> Self {
        ServerTls {
            backend: ServerBackend::Fake(handshake),
            allow_renegotiation: false,
            max_renegotiations: 3,
        }
    }

    /// The engine this context was built for.
    pub fn engine(&self) -> TlsEngine {
        match &self.backend {
            #[cfg(feature = "rustls")]
            ServerBackend::Rustls(_) => TlsEngine::Rustls,
            #[cfg(feature = "openssl")]
            ServerBackend::Openssl(_) => TlsEngine::Openssl,
            // Like rustls, the fake never renegotiates.
            #[cfg(test)]
            ServerBackend::Fake(_) => TlsEngine::Rustls,
            #[cfg(not(any(feature = "rustls", feature = "openssl")))]
            ServerBackend::None(never) => match *never {},
        }
    }

    /// Whether renegotiation was allowed by configuration (the policy
    /// input, whatever the engine can do).
    pub fn allow_renegotiation(&self) -> bool {
        self.allow_renegotiation
    }

    /// The cap on renegotiation attempts per connection.
    pub fn max_renegotiations(&self) -> u32 {
        self.max_renegotiations
    }

    /// Warnings for the configuration check: settings that are accepted but
    /// cannot do what they say.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.allow_renegotiation {
            match self.engine() {
                TlsEngine::Rustls => warnings.push(
                    "TLS_Allow_Renegotiation has no effect with the rustls engine: rustls never renegotiates"
                        .to_owned(),
                ),
                TlsEngine::Openssl if self.max_renegotiations == 0 => warnings.push(
                    "TLS_Allow_Renegotiation has no effect with a renegotiation cap of 0: every attempt closes the connection"
                        .to_owned(),
                ),
                TlsEngine::Openssl => {}
            }
        }
        warnings
    }

    /// Starts the server side of one TLS connection.
    pub fn new_session(&self) -> Result<Box<dyn TlsSession>, TlsError> {
        match &self.backend {
            #[cfg(feature = "rustls")]
            ServerBackend::Rustls(server) => Ok(Box::new(server.new_session()?)),
            #[cfg(feature = "openssl")]
            ServerBackend::Openssl(server) => Ok(Box::new(server.new_session()?)),
            #[cfg(test)]
            ServerBackend::Fake(handshake) => Ok(Box::new(fake::FakeSession::new(
                fake::Role::Server,
                *handshake,
            ))),
            #[cfg(not(any(feature = "rustls", feature = "openssl")))]
            ServerBackend::None(never) => match *never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_parses_case_insensitively_and_round_trips() {
        for engine in TlsEngine::ALL {
            assert_eq!(engine.to_string().parse::<TlsEngine>(), Ok(engine));
            assert_eq!(
                engine.to_string().to_uppercase().parse::<TlsEngine>(),
                Ok(engine)
            );
        }
        assert_eq!("OpenSSL".parse::<TlsEngine>(), Ok(TlsEngine::Openssl));
        let err = "gnutls".parse::<TlsEngine>().unwrap_err();
        assert_eq!(err, UnknownTlsEngine("gnutls".to_owned()));
        assert!(err.to_string().contains("\"gnutls\""));
    }

    #[test]
    fn availability_follows_features() {
        assert_eq!(TlsEngine::Rustls.is_available(), cfg!(feature = "rustls"));
        assert_eq!(TlsEngine::Openssl.is_available(), cfg!(feature = "openssl"));
    }

    #[test]
    fn versions_display_like_openssl() {
        assert_eq!(TlsVersion::Tls10.to_string(), "TLSv1");
        assert_eq!(TlsVersion::Tls12.to_string(), "TLSv1.2");
        assert_eq!(TlsVersion::Tls13.to_string(), "TLSv1.3");
        assert_eq!(TlsVersion::from_wire(0x0303), Some(TlsVersion::Tls12));
        assert_eq!(TlsVersion::from_wire(0x0300), None);
        assert!(TlsVersion::Tls12.can_renegotiate());
        assert!(!TlsVersion::Tls13.can_renegotiate());
    }

    #[test]
    fn unavailable_engines_are_reported() {
        for engine in TlsEngine::ALL {
            let config = ServerTlsConfig::new(engine, Vec::new(), Vec::new());
            let result = ServerTls::new(&config);
            if engine.is_available() {
                assert!(matches!(result, Err(TlsError::Config(_))), "{result:?}");
            } else {
                assert_eq!(result.unwrap_err(), TlsError::Unavailable(engine));
            }
        }
    }

    #[test]
    fn config_defaults_refuse_renegotiation() {
        let config = ServerTlsConfig::new(TlsEngine::Rustls, Vec::new(), Vec::new());
        assert!(!config.allow_renegotiation);
        assert_eq!(config.max_renegotiations, 3);
    }
}
