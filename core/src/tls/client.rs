//! Outbound TLS: the client side of STARTTLS, for deliveries.
//!
//! A [`ClientTls`] is built once from a [`ClientTlsConfig`] and hands out one
//! [`TlsSession`] per connection, for the MX host it connects to. What is
//! checked about the server's certificate follows Momentum's `TLS_Verify`
//! ([`TlsVerify`]); the outcome is reported in
//! [`TlsInfo::certificate`](super::TlsInfo::certificate) or, when the
//! certificate is rejected, as [`TlsError::Certificate`], so that the
//! outbound policy can tell "certificate rejected" from "handshake failed".
//!
//! Both engines implement the same semantics (see [`TlsVerify`]). The parts
//! they share live here: parsing the server name ([`PeerName`]) and
//! recording what verification concluded ([`CertificateCheck`]), which the
//! engine's verifier (rustls `ServerCertVerifier`, OpenSSL verify callback)
//! writes and the session reads.
//!
//! Certificate validity in time is judged against the wall clock, which the
//! TLS libraries read themselves (rustls's default `TimeProvider`, OpenSSL's
//! `X509_verify_cert`). It is the one clock reading the core allows, and it
//! stays inside the libraries: [`TlsSession`] carries no wall time, and an
//! `Instant` could not provide one.

// Without an engine, nothing uses the pieces the engines share.
#![cfg_attr(not(any(feature = "rustls", feature = "openssl")), allow(dead_code))]

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

// `core::net` rather than `std::net`: only the address types, no sockets.
use ::core::net::IpAddr;

use super::{
    CertificateProblem, CertificateProblemKind, CertificateStatus, TlsEngine, TlsError, TlsFailure,
    TlsFailureKind, TlsSession,
};

/// How the server's certificate is verified on outbound TLS: Momentum's
/// `TLS_Verify`. Verification is separate from whether TLS is used at all
/// (`TLS`), as in Postfix's security levels.
///
/// Whatever the level, the handshake itself is fully checked: the server
/// must prove possession of the key of the certificate it presents. The
/// level decides only whether that certificate is *trusted*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TlsVerify {
    /// Encrypt, accept any certificate (Postfix `encrypt`/`may`). Status
    /// [`CertificateStatus::NotChecked`].
    #[default]
    No,
    /// The chain must lead to a CA in `TLS_CA` and be valid now; the name
    /// is not checked. Otherwise the handshake fails with
    /// [`TlsError::Certificate`].
    Ca,
    /// As [`TlsVerify::Ca`], and the certificate must also match the MX
    /// host name (DNS subjectAltName; IP subjectAltName for an IP literal).
    Host,
    /// Checks as [`TlsVerify::Host`] but never fails the handshake for it:
    /// the outcome is recorded as [`CertificateStatus::Trusted`] or
    /// [`CertificateStatus::Untrusted`].
    Optional,
}

impl TlsVerify {
    /// Every level, in order of the configuration documentation.
    pub const ALL: [TlsVerify; 4] = [
        TlsVerify::No,
        TlsVerify::Ca,
        TlsVerify::Host,
        TlsVerify::Optional,
    ];

    /// The configuration spelling, as accepted by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVerify::No => "no",
            TlsVerify::Ca => "ca",
            TlsVerify::Host => "host",
            TlsVerify::Optional => "optional",
        }
    }

    /// Whether an untrusted certificate fails the handshake (`ca`, `host`).
    pub fn enforces(self) -> bool {
        matches!(self, TlsVerify::Ca | TlsVerify::Host)
    }

    /// Whether the certificate is verified at all (everything but `no`).
    pub fn checks_certificate(self) -> bool {
        self != TlsVerify::No
    }

    /// Whether the certificate must match the server name (`host`, and
    /// `optional`, which checks as `host` does).
    pub fn checks_name(self) -> bool {
        matches!(self, TlsVerify::Host | TlsVerify::Optional)
    }
}

impl fmt::Display for TlsVerify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`TlsVerify`]: names the value that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTlsVerify(pub String);

impl fmt::Display for UnknownTlsVerify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown TLS_Verify value \"{}\" (expected \"no\", \"ca\", \"host\" or \"optional\")",
            self.0
        )
    }
}

impl std::error::Error for UnknownTlsVerify {}

impl FromStr for TlsVerify {
    type Err = UnknownTlsVerify;

    /// Parses `no`, `ca`, `host` or `optional`, case-insensitively (Momentum
    /// option values are case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TlsVerify::ALL
            .into_iter()
            .find(|verify| verify.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownTlsVerify(s.to_owned()))
    }
}

/// The settings of outbound TLS, as configured.
#[derive(Debug, Clone)]
pub struct ClientTlsConfig {
    /// Which library implements TLS (`TLS_Engine`).
    pub engine: TlsEngine,
    /// How the server's certificate is verified (`TLS_Verify`).
    pub verify: TlsVerify,
    /// PEM bundle of trusted CAs (`TLS_CA`); every certificate in it is a
    /// trust anchor, root or not.
    ///
    /// `None` means no CA at all: the engine's built-in or system roots are
    /// *not* used (the core reads no files), so with `ca` or `host` every
    /// certificate is rejected, and with `optional` every certificate is
    /// untrusted.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate chain (end-entity first) and its private key,
    /// PEM, offered when a server asks for one.
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientTlsConfig {
    /// Encrypting without verification (`TLS_Verify = no`), no CA, no
    /// client certificate.
    pub fn new(engine: TlsEngine) -> Self {
        ClientTlsConfig {
            engine,
            verify: TlsVerify::No,
            ca_pem: None,
            client_cert: None,
        }
    }
}

/// The engine-specific half of a [`ClientTls`].
#[derive(Clone, Debug)]
enum ClientBackend {
    #[cfg(feature = "rustls")]
    Rustls(super::rustls::RustlsClient),
    #[cfg(feature = "openssl")]
    Openssl(super::openssl::OpensslClient),
    #[cfg(test)]
    Fake(super::fake::FakeHandshake),
    /// Keeps `match` exhaustive when no engine is compiled in; it can
    /// never be constructed.
    #[cfg(not(any(feature = "rustls", feature = "openssl")))]
    #[allow(dead_code)]
    None(std::convert::Infallible),
}

impl ClientBackend {
    fn new(config: &ClientTlsConfig) -> Result<Self, TlsError> {
        match config.engine {
            #[cfg(feature = "rustls")]
            TlsEngine::Rustls => Ok(ClientBackend::Rustls(super::rustls::RustlsClient::new(
                config,
            )?)),
            #[cfg(feature = "openssl")]
            TlsEngine::Openssl => Ok(ClientBackend::Openssl(super::openssl::OpensslClient::new(
                config,
            )?)),
            #[allow(unreachable_patterns)]
            engine => Err(TlsError::Unavailable(engine)),
        }
    }
}

/// A built client TLS context (rustls `ClientConfig` or OpenSSL
/// `SslContext`, with the trusted CAs and the client certificate): cheap to
/// clone, shared by all deliveries.
#[derive(Clone, Debug)]
pub struct ClientTls {
    backend: ClientBackend,
    verify: TlsVerify,
    has_ca: bool,
    has_client_cert: bool,
}

impl ClientTls {
    /// Builds the engine's context: parses the CA bundle and the client
    /// certificate and key (checking that they belong together).
    ///
    /// Errors: [`TlsError::Unavailable`] if the engine is not compiled in,
    /// [`TlsError::Config`] for unusable PEM (including a CA bundle with
    /// no certificate in it) or a key that does not match the certificate.
    pub fn new(config: &ClientTlsConfig) -> Result<Self, TlsError> {
        Ok(ClientTls {
            backend: ClientBackend::new(config)?,
            verify: config.verify,
            has_ca: config.ca_pem.is_some(),
            has_client_cert: config.client_cert.is_some(),
        })
    }

    /// The fake engine of the simulation, whose handshakes go as told.
    #[cfg(test)]
    pub(crate) fn fake(verify: TlsVerify, handshake: super::fake::FakeHandshake) -> Self {
        ClientTls {
            backend: ClientBackend::Fake(handshake),
            verify,
            has_ca: true,
            has_client_cert: false,
        }
    }

    /// The engine this context was built for.
    pub fn engine(&self) -> TlsEngine {
        match &self.backend {
            #[cfg(feature = "rustls")]
            ClientBackend::Rustls(_) => TlsEngine::Rustls,
            #[cfg(feature = "openssl")]
            ClientBackend::Openssl(_) => TlsEngine::Openssl,
            #[cfg(test)]
            ClientBackend::Fake(_) => TlsEngine::Rustls,
            #[cfg(not(any(feature = "rustls", feature = "openssl")))]
            ClientBackend::None(never) => match *never {},
        }
    }

    /// The verification level this context applies.
    pub fn verify(&self) -> TlsVerify {
        self.verify
    }

    /// Whether a client certificate is configured.
    pub fn has_client_certificate(&self) -> bool {
        self.has_client_cert
    }

    /// Warnings for the configuration check: settings that are accepted but
    /// cannot do what they say.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        match (self.verify, self.has_ca) {
            (TlsVerify::Ca | TlsVerify::Host, false) => warnings.push(format!(
                "TLS_Verify = \"{}\" without TLS_CA: no certificate can be trusted, so every TLS delivery will fail certificate verification",
                self.verify
            )),
            (TlsVerify::Optional, false) => warnings.push(
                "TLS_Verify = \"optional\" without TLS_CA: every certificate will be recorded as untrusted"
                    .to_owned(),
            ),
            (TlsVerify::No, true) => warnings.push(
                "TLS_CA has no effect with TLS_Verify = \"no\": certificates are not verified"
                    .to_owned(),
            ),
            _ => {}
        }
        warnings
    }

    /// A client session for one connection.
    ///
    /// `server_name` is the MX host name: sent as SNI when it is a DNS
    /// name (not an IP literal) and, with `host` (or `optional`), matched
    /// against the certificate. A trailing dot (an absolute DNS name) is
    /// dropped, and IP literals may be written plainly or in SMTP's
    /// bracketed form (`[192.0.2.1]`, `[IPv6:2001:db8::1]`).
    ///
    /// The ClientHello is ready to poll as soon as this returns.
    ///
    /// Errors: [`TlsError::Handshake`] when `server_name` is neither a DNS
    /// name nor an IP address (nothing can be sent for it), or the engine
    /// cannot start.
    pub fn new_session(&self, server_name: &str) -> Result<Box<dyn TlsSession>, TlsError> {
        let peer = PeerName::parse(server_name)?;
        let check = CertificateCheck::new(self.verify, self.has_ca);
        match &self.backend {
            #[cfg(feature = "rustls")]
            ClientBackend::Rustls(client) => Ok(Box::new(client.new_session(&peer, check)?)),
            #[cfg(feature = "openssl")]
            ClientBackend::Openssl(client) => Ok(Box::new(client.new_session(&peer, check)?)),
            #[cfg(test)]
            ClientBackend::Fake(handshake) => Ok(Box::new(super::fake::FakeSession::new(
                super::fake::Role::Client,
                *handshake,
            ))),
            #[cfg(not(any(feature = "rustls", feature = "openssl")))]
            ClientBackend::None(never) => {
                let _ = (peer, check);
                match *never {}
            }
        }
    }
}

/// The server a client session connects to, as both engines need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PeerName {
    /// A DNS name: sent as SNI, matched against DNS subjectAltNames.
    Dns(String),
    /// An IP literal: no SNI (RFC 6066 allows only host names), matched
    /// against IP subjectAltNames.
    Ip(IpAddr),
}

impl PeerName {
    /// Parses an MX host name or IP literal (see [`ClientTls::new_session`]).
    ///
    /// DNS names are checked here, once for both engines, so that neither
    /// library is handed something it would reject, or mangle: OpenSSL's
    /// SNI setter panics (in the `openssl` crate) on an interior NUL.
    pub(super) fn parse(name: &str) -> Result<Self, TlsError> {
        if let Some(literal) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
            let address = match literal.get(..5) {
                Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => literal.get(5..),
                _ => Some(literal),
            };
            if let Some(ip) = address.and_then(|a| a.parse::<IpAddr>().ok()) {
                return Ok(PeerName::Ip(ip));
            }
        } else if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(PeerName::Ip(ip));
        } else {
            // SNI and certificates name hosts without the root's dot.
            let relative = name.strip_suffix('.').unwrap_or(name);
            if is_dns_name(relative) {
                return Ok(PeerName::Dns(relative.to_owned()));
            }
        }
        Err(TlsError::Handshake(TlsFailure::new(
            TlsFailureKind::BadServerName,
            format!("cannot start TLS with {name:?}: it is neither a DNS name nor an IP address"),
        )))
    }

    /// The name to send as SNI, if any.
    pub(super) fn sni(&self) -> Option<&str> {
        match self {
            PeerName::Dns(name) => Some(name),
            PeerName::Ip(_) => None,
        }
    }
}

/// Letters, digits, hyphens and underscores (found in real MX names), in
/// labels of 1 to 63 octets not starting or ending with a hyphen, 253
/// octets in all.
fn is_dns_name(name: &str) -> bool {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (1..=253).contains(&name.len()) && name.split('.').all(label_ok)
}

/// What verification of one connection's server certificate concluded,
/// written by the engine's verifier during the handshake and read by the
/// session afterwards. Cloned into the verifier, hence shared.
#[derive(Clone, Debug)]
pub(super) struct CertificateCheck {
    verify: TlsVerify,
    has_ca: bool,
    verdict: Arc<Mutex<Verdict>>,
}

#[derive(Debug, Default)]
struct Verdict {
    /// Verification ran (a certificate was presented and examined).
    checked: bool,
    /// The first reason the certificate was found untrusted.
    rejection: Option<CertificateProblem>,
}

/// The reason given for every certificate when no CA is configured: the
/// engine's own (self-signed, unknown issuer, ...) would hide the one thing
/// an operator can fix, and would differ between engines.
fn no_trusted_ca() -> CertificateProblem {
    CertificateProblem::new(
        CertificateProblemKind::NoTrustedCa,
        "no trusted CA is configured (TLS_CA)",
    )
}

impl CertificateCheck {
    pub(super) fn new(verify: TlsVerify, has_ca: bool) -> Self {
        CertificateCheck {
            verify,
            has_ca,
            verdict: Arc::default(),
        }
    }

    pub(super) fn verify(&self) -> TlsVerify {
        self.verify
    }

    fn verdict(&self) -> std::sync::MutexGuard<'_, Verdict> {
        // A verdict is plain data, valid whatever a panicking holder did.
        self.verdict.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that (a step of) verification passed.
    pub(super) fn accept(&self) {
        self.verdict().checked = true;
    }

    /// Records that verification failed for `reason` (the first reason is
    /// kept), and says whether the handshake may continue anyway.
    ///
    /// Security decision: only `ca` and `host` refuse an untrusted
    /// certificate; `optional` records it and goes on, and `no` never gets
    /// here (nothing is checked).
    pub(super) fn reject(&self, reason: CertificateProblem) -> bool {
        let reason = if self.has_ca { reason } else { no_trusted_ca() };
        let mut verdict = self.verdict();
        verdict.checked = true;
        verdict.rejection.get_or_insert(reason);
        !self.verify.enforces()
    }

    /// The status of an established connection.
    fn status(&self) -> CertificateStatus {
        if !self.verify.checks_certificate() {
            return CertificateStatus::NotChecked;
        }
        let verdict = self.verdict();
        match &verdict.rejection {
            Some(reason) => CertificateStatus::Untrusted(reason.clone()),
            None if verdict.checked => CertificateStatus::Trusted,
            // Cannot happen with the engines as configured (no session
            // resumption, certificate-based suites only), but a connection
            // whose certificate nobody examined is not trusted.
            None => CertificateStatus::Untrusted(CertificateProblem::new(
                CertificateProblemKind::Other,
                "the certificate was not verified",
            )),
        }
    }

    /// The error of a failed handshake: a certificate rejection if that is
    /// what ended it.
    fn handshake_error(&self, failure: TlsFailure) -> TlsError {
        match &self.verdict().rejection {
            Some(reason) if self.verify.enforces() => TlsError::Certificate(reason.clone()),
            _ => TlsError::Handshake(failure),
        }
    }
}

/// Which side of the connection a session plays, with what only a client
/// knows; lets one session type per engine serve both sides.
#[derive(Debug)]
pub(super) enum Role {
    /// A listener's session: no certificate verification, SNI as received.
    Server,
    /// A delivery's session.
    Client {
        /// The SNI sent, if any.
        server_name: Option<String>,
        /// What verification concluded.
        check: CertificateCheck,
    },
}

impl Role {
    pub(super) fn client(peer: &PeerName, check: CertificateCheck) -> Self {
        Role::Client {
            server_name: peer.sni().map(str::to_owned),
            check,
        }
    }

    /// The error of a failed handshake, from the engine's message.
    pub(super) fn handshake_error(&self, failure: TlsFailure) -> TlsError {
        match self {
            Role::Server => TlsError::Handshake(failure),
            Role::Client { check, .. } => check.handshake_error(failure),
        }
    }

    /// [`TlsInfo::certificate`](super::TlsInfo::certificate).
    pub(super) fn certificate_status(&self) -> CertificateStatus {
        match self {
            Role::Server => CertificateStatus::NotChecked,
            Role::Client { check, .. } => check.status(),
        }
    }

    /// [`TlsInfo::server_name`](super::TlsInfo::server_name): the SNI
    /// received (as the engine reports it) or sent.
    pub(super) fn server_name(&self, received: impl FnOnce() -> Option<String>) -> Option<String> {
        match self {
            Role::Server => received(),
            Role::Client { server_name, .. } => server_name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_parses_case_insensitively_and_round_trips() {
        for verify in TlsVerify::ALL {
            assert_eq!(verify.to_string().parse::<TlsVerify>(), Ok(verify));
            assert_eq!(
                verify.to_string().to_uppercase().parse::<TlsVerify>(),
                Ok(verify)
            );
        }
        assert_eq!("Host".parse::<TlsVerify>(), Ok(TlsVerify::Host));
        let err = "peer".parse::<TlsVerify>().unwrap_err();
        assert_eq!(err, UnknownTlsVerify("peer".to_owned()));
        assert!(err.to_string().contains("\"peer\""));
        assert_eq!(TlsVerify::default(), TlsVerify::No);
    }

    #[test]
    fn levels_say_what_they_check() {
        let enforces: Vec<_> = TlsVerify::ALL.iter().map(|v| v.enforces()).collect();
        assert_eq!(enforces, [false, true, true, false]);
        let names: Vec<_> = TlsVerify::ALL.iter().map(|v| v.checks_name()).collect();
        assert_eq!(names, [false, false, true, true]);
    }

    #[test]
    fn peer_names_parse() {
        assert_eq!(
            PeerName::parse("mx.example.com").unwrap(),
            PeerName::Dns("mx.example.com".to_owned())
        );
        assert_eq!(
            PeerName::parse("MX_1.Example.COM.").unwrap(),
            PeerName::Dns("MX_1.Example.COM".to_owned())
        );
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(PeerName::parse("192.0.2.1").unwrap(), PeerName::Ip(v4));
        assert_eq!(PeerName::parse("[192.0.2.1]").unwrap(), PeerName::Ip(v4));
        assert_eq!(PeerName::parse("2001:db8::1").unwrap(), PeerName::Ip(v6));
        assert_eq!(
            PeerName::parse("[IPv6:2001:db8::1]").unwrap(),
            PeerName::Ip(v6)
        );
        assert_eq!(PeerName::parse("[ipv6:2001:db8::1]").unwrap().sni(), None);
        for bad in [
            "",
            ".",
            "a..b",
            "-a.example",
            "a b.example",
            "a\0b",
            "[mx.example.com]",
            "[IPv6:192.0.2.300]",
            &"a".repeat(64),
        ] {
            let error = PeerName::parse(bad).unwrap_err();
            assert!(
                matches!(error, TlsError::Handshake(_)),
                "{bad:?}: {error:?}"
            );
        }
    }

    #[test]
    fn checks_keep_the_first_rejection_and_enforce_by_level() {
        let check = CertificateCheck::new(TlsVerify::Optional, true);
        check.accept();
        assert_eq!(check.status(), CertificateStatus::Trusted);
        let expired = CertificateProblem::new(CertificateProblemKind::Expired, "expired");
        let mismatch = CertificateProblem::new(CertificateProblemKind::NameMismatch, "mismatch");
        let boom = TlsFailure::new(TlsFailureKind::Other, "boom");
        assert!(check.reject(expired.clone()));
        assert!(check.reject(mismatch));
        assert_eq!(
            check.status(),
            CertificateStatus::Untrusted(expired.clone())
        );
        assert_eq!(
            check.handshake_error(boom.clone()),
            TlsError::Handshake(boom.clone())
        );

        let check = CertificateCheck::new(TlsVerify::Host, true);
        assert_eq!(
            check.handshake_error(boom.clone()),
            TlsError::Handshake(boom.clone())
        );
        assert!(!check.reject(expired.clone()));
        assert_eq!(
            check.handshake_error(boom.clone()),
            TlsError::Certificate(expired)
        );

        let check = CertificateCheck::new(TlsVerify::Ca, false);
        let self_signed =
            CertificateProblem::new(CertificateProblemKind::UnknownIssuer, "self-signed");
        assert!(!check.reject(self_signed));
        assert_eq!(
            check.handshake_error(boom),
            TlsError::Certificate(no_trusted_ca())
        );

        let check = CertificateCheck::new(TlsVerify::No, true);
        assert_eq!(check.status(), CertificateStatus::NotChecked);
        let check = CertificateCheck::new(TlsVerify::Optional, true);
        assert!(matches!(check.status(), CertificateStatus::Untrusted(_)));
    }

    #[test]
    fn unavailable_engines_are_reported() {
        for engine in TlsEngine::ALL {
            let result = ClientTls::new(&ClientTlsConfig::new(engine));
            if engine.is_available() {
                let built = result
                    .as_ref()
                    .map(|tls| (tls.engine(), tls.verify(), tls.warnings()));
                assert_eq!(built, Ok((engine, TlsVerify::No, Vec::new())));
            } else {
                assert_eq!(result.unwrap_err(), TlsError::Unavailable(engine));
            }
        }
    }
}
