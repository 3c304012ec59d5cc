//! The TLS renegotiation policy: what to do with a client's attempt to
//! renegotiate, as one pure function.
//!
//! Renegotiation exists only up to TLS 1.2. It is a known CPU-exhaustion
//! vector (each attempt costs the server a full handshake, the client next
//! to nothing) and, without RFC 5746, a man-in-the-middle vector
//! (CVE-2009-3555). Momentum's `TLS_Allow_Renegotiation` lets an operator
//! allow it for clients that need it; Petrel honours that with OpenSSL,
//! only for secure renegotiation, and caps attempts per connection.
//!
//! # The table
//!
//! An attempt is judged on the engine, `TLS_Allow_Renegotiation`, whether
//! the client offered secure renegotiation in its initial ClientHello, and
//! how many attempts it made before on this connection (`so_far`, allowed
//! or not) against the cap (`max_renegotiations`, default 3):
//!
//! | `so_far >= cap` | engine  | allow | secure | verdict                          |
//! |-----------------|---------|-------|--------|----------------------------------|
//! | yes             | any     | any   | any    | `Close(CapReached)`              |
//! | no              | rustls  | any   | any    | `Refuse(EngineCannot)`           |
//! | no              | openssl | false | any    | `Refuse(PolicyDenied)`           |
//! | no              | openssl | true  | false  | `Refuse(Insecure)`               |
//! | no              | openssl | true  | true   | `Allow`                          |
//!
//! Refused attempts count too: a client flooding ClientHellos that are each
//! answered with an alert still costs bandwidth and record processing, so
//! it is closed once over the cap like one that renegotiates.
//!
//! # Enforcement
//!
//! - `Refuse` is enforced by the engine itself, configured to match: rustls
//!   never renegotiates, OpenSSL has `NO_RENEGOTIATION` when not allowed and
//!   always refuses insecure (legacy) renegotiation. Either answers the
//!   ClientHello at once with a `no_renegotiation` alert; the session
//!   feeds the record to the engine and carries on.
//! - `Close` is enforced by the session: it does not feed the record to the
//!   engine and closes the connection.
//! - `Allow`: the session feeds the record; OpenSSL runs the handshake.

use crate::tls::TlsEngine;

/// What to do with one renegotiation attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenegotiationVerdict {
    /// Let the engine renegotiate.
    Allow,
    /// The engine answers with a `no_renegotiation` alert; the connection
    /// goes on.
    Refuse(RefuseReason),
    /// The session closes the connection without feeding the attempt to
    /// the engine.
    Close(CloseReason),
}

/// Why an attempt is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefuseReason {
    /// The engine cannot renegotiate (rustls), whatever the configuration.
    EngineCannot,
    /// `TLS_Allow_Renegotiation` is false.
    PolicyDenied,
    /// The client did not offer RFC 5746 secure renegotiation, or its
    /// ClientHello could not be parsed; insecure renegotiation is never
    /// allowed (CVE-2009-3555).
    Insecure,
}

/// Why a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client tried to renegotiate more often than
    /// `max_renegotiations`.
    CapReached,
}

/// Everything the policy looks at for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenegotiationAttempt {
    /// The connection's TLS engine.
    pub engine: TlsEngine,
    /// `TLS_Allow_Renegotiation`.
    pub allow: bool,
    /// Whether the client offered secure renegotiation (RFC 5746) in its
    /// initial ClientHello (`false` when unknown).
    pub secure: bool,
    /// Attempts before this one on this connection, allowed or not.
    pub so_far: u32,
    /// `max_renegotiations`: attempts allowed per connection.
    pub cap: u32,
}

/// Decides one renegotiation attempt (see the table in the module docs).
pub fn decide(attempt: RenegotiationAttempt) -> RenegotiationVerdict {
    let RenegotiationAttempt {
        engine,
        allow,
        secure,
        so_far,
        cap,
    } = attempt;
    // The cap comes first: past it nothing else matters, and checking it
    // first is what makes refused attempts count.
    if so_far >= cap {
        return RenegotiationVerdict::Close(CloseReason::CapReached);
    }
    match engine {
        TlsEngine::Rustls => RenegotiationVerdict::Refuse(RefuseReason::EngineCannot),
        TlsEngine::Openssl if !allow => RenegotiationVerdict::Refuse(RefuseReason::PolicyDenied),
        TlsEngine::Openssl if !secure => RenegotiationVerdict::Refuse(RefuseReason::Insecure),
        TlsEngine::Openssl => RenegotiationVerdict::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table, written out independently of `decide`'s structure.
    fn expected(a: RenegotiationAttempt) -> RenegotiationVerdict {
        use RenegotiationVerdict::*;
        match (a.so_far >= a.cap, a.engine, a.allow, a.secure) {
            (true, _, _, _) => Close(CloseReason::CapReached),
            (false, TlsEngine::Rustls, _, _) => Refuse(RefuseReason::EngineCannot),
            (false, TlsEngine::Openssl, false, _) => Refuse(RefuseReason::PolicyDenied),
            (false, TlsEngine::Openssl, true, false) => Refuse(RefuseReason::Insecure),
            (false, TlsEngine::Openssl, true, true) => Allow,
        }
    }

    #[test]
    fn table_is_exhaustively_respected() {
        let counts = [0, 1, 2, 3, 4, 10, u32::MAX - 1, u32::MAX];
        let mut checked = 0;
        for engine in TlsEngine::ALL {
            for allow in [false, true] {
                for secure in [false, true] {
                    for so_far in counts {
                        for cap in counts {
                            let attempt = RenegotiationAttempt {
                                engine,
                                allow,
                                secure,
                                so_far,
                                cap,
                            };
                            assert_eq!(decide(attempt), expected(attempt), "{attempt:?}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 2 * 2 * 8 * 8);
    }

    #[test]
    fn only_secure_allowed_openssl_renegotiates() {
        let base = RenegotiationAttempt {
            engine: TlsEngine::Openssl,
            allow: true,
            secure: true,
            so_far: 0,
            cap: 3,
        };
        assert_eq!(decide(base), RenegotiationVerdict::Allow);
        assert_eq!(
            decide(RenegotiationAttempt {
                engine: TlsEngine::Rustls,
                ..base
            }),
            RenegotiationVerdict::Refuse(RefuseReason::EngineCannot)
        );
        assert_eq!(
            decide(RenegotiationAttempt {
                secure: false,
                ..base
            }),
            RenegotiationVerdict::Refuse(RefuseReason::Insecure)
        );
    }

    #[test]
    fn refused_attempts_count_towards_the_cap() {
        // A rustls client flooding ClientHellos: refused three times, then
        // closed on the fourth.
        let verdicts: Vec<_> = (0..5)
            .map(|so_far| {
                decide(RenegotiationAttempt {
                    engine: TlsEngine::Rustls,
                    allow: false,
                    secure: true,
                    so_far,
                    cap: 3,
                })
            })
            .collect();
        assert_eq!(
            verdicts,
            [
                RenegotiationVerdict::Refuse(RefuseReason::EngineCannot),
                RenegotiationVerdict::Refuse(RefuseReason::EngineCannot),
                RenegotiationVerdict::Refuse(RefuseReason::EngineCannot),
                RenegotiationVerdict::Close(CloseReason::CapReached),
                RenegotiationVerdict::Close(CloseReason::CapReached),
            ]
        );
    }

    #[test]
    fn a_cap_of_zero_closes_at_the_first_attempt() {
        let attempt = RenegotiationAttempt {
            engine: TlsEngine::Openssl,
            allow: true,
            secure: true,
            so_far: 0,
            cap: 0,
        };
        assert_eq!(
            decide(attempt),
            RenegotiationVerdict::Close(CloseReason::CapReached)
        );
    }
}
