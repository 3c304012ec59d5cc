//! What went wrong in TLS, as types a program can act on, with the engine's
//! own words kept for the log.
//!
//! Both engines report failures as text (OpenSSL's error stack, rustls's
//! `Error`); operators need to know *which* failure it was — no common
//! version, cipher or signature scheme is what tells them to try the other
//! engine — and the outbound policy must tell a rejected certificate from a
//! failed handshake. So each engine classifies its errors once, here, into
//! a small enum, and the detail rides along only for `Display`.

use std::fmt;

/// Why a handshake failed or an established connection broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFailure {
    kind: TlsFailureKind,
    detail: String,
}

/// The kinds of [`TlsFailure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsFailureKind {
    /// No protocol version both sides accept.
    NoCommonVersion,
    /// No cipher suite both sides accept.
    NoCommonCipher,
    /// No signature scheme both sides accept.
    NoCommonSignatureScheme,
    /// The peer sent a fatal alert (its TLS alert number).
    PeerAlert(u8),
    /// The peer sent something that is not valid TLS at that point
    /// (including a renegotiation the engine will not take again).
    BadMessage,
    /// A record failed to decrypt or authenticate.
    BadRecord,
    /// The server name is neither a DNS name nor an IP address.
    BadServerName,
    /// The peer sent more than can be processed in one go.
    TooMuchInput,
    /// A renegotiation that never completed.
    RenegotiationStalled,
    /// The handshake ended without the parameters it must yield.
    NoParameters,
    /// The engine could not set up the connection.
    CannotStart,
    /// Anything the engines report that fits no kind above.
    Other,
}

impl TlsFailure {
    /// A failure of `kind`, with the engine's words.
    pub fn new(kind: TlsFailureKind, detail: impl fmt::Display) -> Self {
        Self {
            kind,
            detail: detail.to_string(),
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> TlsFailureKind {
        self.kind
    }

    /// The engine's words.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for TlsFailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCommonVersion => f.write_str("no TLS version in common"),
            Self::NoCommonCipher => f.write_str("no cipher suite in common"),
            Self::NoCommonSignatureScheme => f.write_str("no signature scheme in common"),
            Self::PeerAlert(alert) => write!(f, "the peer sent alert {alert}"),
            Self::BadMessage => f.write_str("unexpected or malformed TLS message"),
            Self::BadRecord => f.write_str("a record failed to decrypt"),
            Self::BadServerName => f.write_str("unusable server name"),
            Self::TooMuchInput => f.write_str("more input than can be processed"),
            Self::RenegotiationStalled => f.write_str("renegotiation stalled"),
            Self::NoParameters => f.write_str("handshake ended without parameters"),
            Self::CannotStart => f.write_str("cannot start the connection"),
            Self::Other => f.write_str("TLS failure"),
        }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            self.kind.fmt(f)
        } else {
            write!(f, "{}: {}", self.kind, self.detail)
        }
    }
}

/// Why a certificate was found untrusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateProblem {
    kind: CertificateProblemKind,
    detail: String,
}

/// The kinds of [`CertificateProblem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CertificateProblemKind {
    /// No CA is configured (`TLS_CA`), so nothing can be trusted.
    NoTrustedCa,
    /// The chain does not lead to a trusted CA (self-signed included).
    UnknownIssuer,
    /// Expired.
    Expired,
    /// Not valid yet.
    NotYetValid,
    /// Not valid for the server name.
    NameMismatch,
    /// Not valid for server authentication.
    WrongPurpose,
    /// Revoked.
    Revoked,
    /// A signature in the chain does not verify, or the encoding is bad.
    BadCertificate,
    /// Anything else the engines report.
    Other,
}

impl CertificateProblem {
    /// A problem of `kind`, with the engine's words.
    pub fn new(kind: CertificateProblemKind, detail: impl fmt::Display) -> Self {
        Self {
            kind,
            detail: detail.to_string(),
        }
    }

    /// What kind of problem it is.
    pub fn kind(&self) -> CertificateProblemKind {
        self.kind
    }

    /// The engine's words.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}
