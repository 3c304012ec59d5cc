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
//! | `so_far >= cap` | engine  | `so_far` | allow | secure | verdict                      |
//! |-----------------|---------|----------|-------|--------|------------------------------|
//! | yes             | any     | any      | any   | any    | `Close(CapReached)`          |
//! | no              | rustls  | 0        | any   | any    | `Refuse(EngineCannot)`       |
//! | no              | rustls  | ≥ 1      | any   | any    | `Close(EngineRefusesAgain)`  |
//! | no              | openssl | any      | false | any    | `Refuse(PolicyDenied)`       |
//! | no              | openssl | any      | true  | false  | `Refuse(Insecure)`           |
//! | no              | openssl | any      | true  | true   | `Allow`                      |
//!
//! Each row is what the engine really does with the attempt, or what the
//! session does before the engine can:
//! - rustls (0.23) never renegotiates. It answers the first renegotiation
//!   ClientHello on a connection with a `no_renegotiation` warning and
//!   fails the connection on the second
//!   (`PeerMisbehaved::TooManyRenegotiationRequests`). So with rustls the
//!   effective limit is one refused attempt, whatever the cap: the second
//!   is closed by the session, as a policy verdict, instead of being left
//!   to fail inside the engine.
//! - OpenSSL renegotiates when allowed and the client is secure, and
//!   otherwise answers each attempt with a `no_renegotiation` warning, as
//!   often as it is asked.
//!
//! The cap comes first, for both engines, and refused attempts count
//! towards it: a client flooding ClientHellos that are each answered with
//! an alert still costs bandwidth and record processing, so it is closed
//! once over the cap like one that renegotiates. A cap of 0 closes the
//! connection at the first attempt.
//!
//! # Who counts
//!
//! This is the one place that says who counts attempts; the engines and
//! the session refer here.
//! - **The session is the authority.** It watches the ciphertext before
//!   the engine sees it ([`crate::tls::record`]) and counts every attempt
//!   it can see — a handshake record that starts on an established TLS 1.2
//!   connection while no renegotiation handshake is under way — allowed or
//!   refused. Its count is `so_far`; it reports each attempt with its
//!   verdict ([`Event::Renegotiation`](crate::server::Event::Renegotiation))
//!   and enforces `Close` itself.
//!   A record is an attempt: a ClientHello split over two records counts
//!   twice, two ClientHellos packed in one record count once.
//! - **libssl is a backstop, when renegotiation is allowed.** A ClientHello
//!   packed into the same record as the Finished of a renegotiation in
//!   progress is invisible to the session. The openssl engine therefore
//!   also counts, in libssl's client-hello callback, every ClientHello
//!   libssl processes on an established connection, against the same cap,
//!   and fails the handshake past it (the session then closes with a TLS
//!   error). When renegotiation is refused no backstop is needed: nothing
//!   is ever under way, so the session sees every handshake record.
//! - **rustls counts for itself**, as above; `decide` models that count
//!   rather than leaving it to surprise the session. Only a record packing
//!   two ClientHellos reaches rustls's limit first (a TLS error again).
//!
//! # Enforcement
//!
//! - `Refuse` is enforced by the engine itself, configured to match: rustls
//!   never renegotiates, OpenSSL has `NO_RENEGOTIATION` when not allowed and
//!   always refuses insecure (legacy) renegotiation. Either answers the
//!   ClientHello at once with a `no_renegotiation` warning; the session
//!   feeds the record to the engine and carries on.
//! - `Close` is enforced by the session: it does not feed the record to the
//!   engine and closes the connection
//!   ([`RenegotiationLimit`](crate::server::CloseReason::RenegotiationLimit)).
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
    /// The engine cannot renegotiate (rustls), whatever the configuration;
    /// it refuses this one attempt per connection.
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
    /// The engine refuses a second attempt fatally (rustls), so the
    /// session closes the connection itself, under the cap.
    EngineRefusesAgain,
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
    /// `max_renegotiations`: attempts per connection, refused ones
    /// included, before the connection is closed.
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
        // rustls's own count: one refusal per connection, then fatal.
        TlsEngine::Rustls if so_far == 0 => {
            RenegotiationVerdict::Refuse(RefuseReason::EngineCannot)
        }
        TlsEngine::Rustls => RenegotiationVerdict::Close(CloseReason::EngineRefusesAgain),
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
        let first = a.so_far == 0;
        match (a.so_far >= a.cap, a.engine, first, a.allow, a.secure) {
            (true, _, _, _, _) => Close(CloseReason::CapReached),
            (false, TlsEngine::Rustls, true, _, _) => Refuse(RefuseReason::EngineCannot),
            (false, TlsEngine::Rustls, false, _, _) => Close(CloseReason::EngineRefusesAgain),
            (false, TlsEngine::Openssl, _, false, _) => Refuse(RefuseReason::PolicyDenied),
            (false, TlsEngine::Openssl, _, true, false) => Refuse(RefuseReason::Insecure),
            (false, TlsEngine::Openssl, _, true, true) => Allow,
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

    /// The verdicts for attempts 1..=n on one connection.
    fn verdicts(engine: TlsEngine, allow: bool, cap: u32, n: u32) -> Vec<RenegotiationVerdict> {
        (0..n)
            .map(|so_far| {
                decide(RenegotiationAttempt {
                    engine,
                    allow,
                    secure: true,
                    so_far,
                    cap,
                })
            })
            .collect()
    }

    #[test]
    fn refused_attempts_count_towards_the_cap() {
        // An OpenSSL client flooding ClientHellos that are not allowed:
        // refused three times, then closed on the fourth.
        use RenegotiationVerdict::*;
        assert_eq!(
            verdicts(TlsEngine::Openssl, false, 3, 5),
            [
                Refuse(RefuseReason::PolicyDenied),
                Refuse(RefuseReason::PolicyDenied),
                Refuse(RefuseReason::PolicyDenied),
                Close(CloseReason::CapReached),
                Close(CloseReason::CapReached),
            ]
        );
        assert_eq!(
            verdicts(TlsEngine::Openssl, true, 3, 4),
            [Allow, Allow, Allow, Close(CloseReason::CapReached)]
        );
    }

    #[test]
    fn rustls_refuses_once_then_closes_whatever_the_cap() {
        use RenegotiationVerdict::*;
        for allow in [false, true] {
            for cap in [2, 3, 10, u32::MAX] {
                assert_eq!(
                    verdicts(TlsEngine::Rustls, allow, cap, 2),
                    [
                        Refuse(RefuseReason::EngineCannot),
                        Close(CloseReason::EngineRefusesAgain),
                    ],
                    "cap {cap}"
                );
            }
            // The cap comes first.
            assert_eq!(
                verdicts(TlsEngine::Rustls, allow, 1, 2),
                [
                    Refuse(RefuseReason::EngineCannot),
                    Close(CloseReason::CapReached)
                ]
            );
        }
    }

    #[test]
    fn a_cap_of_zero_closes_at_the_first_attempt() {
        for engine in TlsEngine::ALL {
            for allow in [false, true] {
                assert_eq!(
                    verdicts(engine, allow, 0, 1),
                    [RenegotiationVerdict::Close(CloseReason::CapReached)],
                    "{engine} allow={allow}"
                );
            }
        }
    }
}
