//! The outbound TLS decision: Momentum's `TLS`, `TLS_Ifavailable_Fallback`
//! and `TLS_Verify`, as one pure function of what happened when the client
//! tried (or did not try) STARTTLS.
//!
//! | `TLS`         | fallback | what happened                           | action                 |
//! |---------------|----------|-----------------------------------------|------------------------|
//! | `no`          | any      | anything (STARTTLS is never sent)       | continue in plaintext  |
//! | any but `no`  | any      | handshake completed                     | proceed over TLS       |
//! | `ifavailable` | any      | STARTTLS not offered                    | continue in plaintext  |
//! | `ifavailable` | `true`   | refused, failed, rejected, timed out    | reconnect in plaintext |
//! | `ifavailable` | `false`  | refused, failed, rejected, timed out    | defer                  |
//! | `required`    | any      | anything but a completed handshake      | defer                  |
//!
//! Why these choices:
//! - Plaintext continues on the same connection only when STARTTLS was never
//!   attempted. After a failed attempt the connection is in an unknown state
//!   (RFC 3207 §4.1: the client SHOULD abort it), so the fallback is a fresh
//!   plaintext connection, as Exim and Postfix do.
//! - A deferral sends the message to the delayed queue, and the retry tries
//!   TLS again: a TLS problem is often a passing one (an overloaded peer, a
//!   certificate being renewed).
//! - No TLS outcome fails a message permanently: a bounce for a reason the
//!   sender cannot fix, and that may pass, would lose mail. So there is no
//!   "fail" action at all.
//! - `TLS_Verify` enters only through what happened: under `no` and
//!   `optional` the engines never reject a certificate, so a
//!   [`TlsOutcome::CertificateRejected`] there can only be a handshake
//!   failure and is treated as one. Under `ca` and `host` a rejected
//!   certificate is a failed attempt like any other: with `ifavailable` and
//!   fallback the message then goes in plaintext, exactly as it would to a
//!   server that offers no STARTTLS; an operator who wants verified TLS or
//!   nothing says `required`.
//! - `required` never sends `MAIL FROM` in plaintext, whatever the server
//!   says: every outcome but a completed handshake defers.

use std::fmt;

use crate::tls::{CertificateProblem, TlsError, TlsVerify};
use crate::wire::reply::{EnhancedCode, Reply};

/// Momentum's `TLS` option for outbound connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TlsMode {
    /// Never send STARTTLS.
    No,
    /// STARTTLS when the server offers it (Petrel's default, as Postfix 3.11).
    #[default]
    IfAvailable,
    /// Deliver only over TLS.
    Required,
}

/// A `TLS` value that is not a mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTlsMode(pub String);

impl fmt::Display for UnknownTlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown TLS mode {:?}: expected \"no\", \"ifavailable\" or \"required\"",
            self.0
        )
    }
}

impl std::error::Error for UnknownTlsMode {}

impl std::str::FromStr for TlsMode {
    type Err = UnknownTlsMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "no" => Ok(Self::No),
            "ifavailable" => Ok(Self::IfAvailable),
            "required" => Ok(Self::Required),
            _ => Err(UnknownTlsMode(s.to_owned())),
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::No => "no",
            Self::IfAvailable => "ifavailable",
            Self::Required => "required",
        })
    }
}

/// What happened with STARTTLS on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsOutcome {
    /// The handshake completed.
    Established,
    /// The server's EHLO reply did not list STARTTLS.
    NotOffered,
    /// The server answered STARTTLS with something other than 220.
    Refused(Reply),
    /// The handshake failed, or could not be tried after STARTTLS was
    /// answered.
    HandshakeFailed(HandshakeFailure),
    /// The handshake failed because the server's certificate was rejected.
    CertificateRejected(CertificateProblem),
    /// The handshake did not complete in time.
    HandshakeTimedOut,
}

/// Why a STARTTLS attempt failed short of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// The TLS engine failed the handshake (a certificate rejected under
    /// `TLS_Verify = no` or `optional` counts as this).
    Engine(TlsError),
    /// The connection ended during STARTTLS (a middlebox that drops it).
    ConnectionClosed,
    /// Bytes came after the server's `220` and before the handshake: they
    /// could be taken for replies over TLS (response injection,
    /// CVE-2021-38371 class), so the attempt is abandoned.
    DataAfterGoAhead,
    /// The server offers STARTTLS but no TLS engine is configured.
    NoEngine,
    /// The connection is a plaintext fallback under a policy that allows
    /// none (only `ifavailable` with fallback does).
    FallbackNotAllowed,
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Engine(error) => error.fmt(f),
            Self::ConnectionClosed => f.write_str("connection closed during STARTTLS"),
            Self::DataAfterGoAhead => {
                f.write_str("response injection: data after the 220 to STARTTLS")
            }
            Self::NoEngine => f.write_str("no TLS engine configured"),
            Self::FallbackNotAllowed => {
                f.write_str("plaintext fallback connection not allowed by the TLS policy")
            }
        }
    }
}

/// What the client does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsAction {
    /// Go on over TLS.
    ProceedTls,
    /// Go on in plaintext on this connection (STARTTLS was never sent).
    ContinuePlaintext,
    /// Close this connection and deliver over a fresh plaintext one.
    ReconnectPlaintext,
    /// Give every recipient this transient reply: the message goes to the
    /// delayed queue and the retry tries TLS again.
    Defer(Reply),
}

/// Momentum's deferral texts.
fn internal(detail: u16, text: &str) -> Reply {
    Reply::new(
        451,
        Some(EnhancedCode::new(4, 7, detail)),
        format!("[internal] {text}"),
    )
}

/// The decision. See the [module docs](self) for the table and its reasons.
pub fn decide(mode: TlsMode, fallback: bool, verify: TlsVerify, outcome: &TlsOutcome) -> TlsAction {
    let outcome = match outcome {
        TlsOutcome::CertificateRejected(reason)
            if matches!(verify, TlsVerify::No | TlsVerify::Optional) =>
        {
            let error = TlsError::Certificate(reason.clone());
            &TlsOutcome::HandshakeFailed(HandshakeFailure::Engine(error))
        }
        other => other,
    };
    match (mode, outcome) {
        (TlsMode::No, _) => TlsAction::ContinuePlaintext,
        (_, TlsOutcome::Established) => TlsAction::ProceedTls,
        (TlsMode::IfAvailable, TlsOutcome::NotOffered) => TlsAction::ContinuePlaintext,
        (TlsMode::IfAvailable, _) if fallback => TlsAction::ReconnectPlaintext,
        (_, TlsOutcome::NotOffered) => {
            TlsAction::Defer(internal(6, "STARTTLS required but not advertised"))
        }
        (_, TlsOutcome::Refused(_)) => TlsAction::Defer(internal(5, "no tls go-ahead")),
        (_, TlsOutcome::CertificateRejected(reason)) => TlsAction::Defer(internal(
            5,
            &format!("TLS certificate verification failed: {reason}"),
        )),
        (_, TlsOutcome::HandshakeFailed(_) | TlsOutcome::HandshakeTimedOut) => {
            TlsAction::Defer(internal(5, "TLS negotiation failed"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::CertificateProblemKind;

    fn outcomes() -> Vec<TlsOutcome> {
        vec![
            TlsOutcome::Established,
            TlsOutcome::NotOffered,
            TlsOutcome::Refused(Reply::new(454, None, "TLS not available")),
            TlsOutcome::Refused(Reply::new(502, None, "not implemented")),
            TlsOutcome::HandshakeFailed(HandshakeFailure::ConnectionClosed),
            TlsOutcome::CertificateRejected(CertificateProblem::new(
                CertificateProblemKind::UnknownIssuer,
                "unknown CA",
            )),
            TlsOutcome::HandshakeTimedOut,
        ]
    }

    /// Every combination of the four inputs, checked against the table
    /// stated independently of `decide`.
    #[test]
    fn the_whole_table() {
        let verifies = [
            TlsVerify::No,
            TlsVerify::Ca,
            TlsVerify::Host,
            TlsVerify::Optional,
        ];
        let mut checked = 0;
        for mode in [TlsMode::No, TlsMode::IfAvailable, TlsMode::Required] {
            for fallback in [true, false] {
                for verify in verifies {
                    for outcome in outcomes() {
                        let action = decide(mode, fallback, verify, &outcome);
                        let attempted_and_failed =
                            !matches!(outcome, TlsOutcome::Established | TlsOutcome::NotOffered);
                        let expected = match mode {
                            TlsMode::No => "plaintext",
                            _ if outcome == TlsOutcome::Established => "tls",
                            TlsMode::IfAvailable if !attempted_and_failed => "plaintext",
                            TlsMode::IfAvailable if fallback => "reconnect",
                            _ => "defer",
                        };
                        let got = match &action {
                            TlsAction::ProceedTls => "tls",
                            TlsAction::ContinuePlaintext => "plaintext",
                            TlsAction::ReconnectPlaintext => "reconnect",
                            TlsAction::Defer(reply) => {
                                assert_eq!(reply.code(), 451);
                                assert!(reply.text().starts_with("[internal] "));
                                "defer"
                            }
                        };
                        assert_eq!(got, expected, "{mode} {fallback} {verify:?} {outcome:?}");
                        // `required` never continues in plaintext.
                        if mode == TlsMode::Required {
                            assert!(!matches!(
                                action,
                                TlsAction::ContinuePlaintext | TlsAction::ReconnectPlaintext
                            ));
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 3 * 2 * 4 * 7);
    }

    #[test]
    fn deferrals_use_momentum_texts() {
        let text = |outcome: TlsOutcome, verify| match decide(
            TlsMode::Required,
            false,
            verify,
            &outcome,
        ) {
            TlsAction::Defer(reply) => reply.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            text(TlsOutcome::NotOffered, TlsVerify::No),
            "451 4.7.6 [internal] STARTTLS required but not advertised"
        );
        assert_eq!(
            text(
                TlsOutcome::HandshakeFailed(HandshakeFailure::NoEngine),
                TlsVerify::No
            ),
            "451 4.7.5 [internal] TLS negotiation failed"
        );
        assert_eq!(
            text(TlsOutcome::HandshakeTimedOut, TlsVerify::No),
            "451 4.7.5 [internal] TLS negotiation failed"
        );
        assert_eq!(
            text(
                TlsOutcome::Refused(Reply::new(454, None, "busy")),
                TlsVerify::No
            ),
            "451 4.7.5 [internal] no tls go-ahead"
        );
        assert_eq!(
            text(
                TlsOutcome::CertificateRejected(CertificateProblem::new(
                    CertificateProblemKind::Expired,
                    "expired",
                )),
                TlsVerify::Host
            ),
            "451 4.7.5 [internal] TLS certificate verification failed: expired"
        );
        // Under `optional` a certificate never fails a handshake by itself.
        assert_eq!(
            text(
                TlsOutcome::CertificateRejected(CertificateProblem::new(
                    CertificateProblemKind::Expired,
                    "expired",
                )),
                TlsVerify::Optional
            ),
            "451 4.7.5 [internal] TLS negotiation failed"
        );
    }

    #[test]
    fn modes_parse_and_print() {
        for mode in [TlsMode::No, TlsMode::IfAvailable, TlsMode::Required] {
            assert_eq!(mode.to_string().parse::<TlsMode>().unwrap(), mode);
        }
        assert_eq!(
            "IfAvailable".parse::<TlsMode>().unwrap(),
            TlsMode::IfAvailable
        );
        assert!("maybe".parse::<TlsMode>().is_err());
    }
}
