//! How a server connection ends, the same on every runtime: what is still
//! to be written is flushed for a bounded time, the write side is shut,
//! and what the peer still sends is read and discarded for a moment before
//! the socket is closed (a "lingering close", as Apache and Postfix do).
//!
//! Closing a socket with input unread makes the kernel send a reset, which
//! can destroy the last reply (a `421`, or the `554` refusing an injected
//! STARTTLS) before the peer reads it: hence the lingering. A peer that reads
//! nothing must not hold the connection forever: hence the bounds.
//!
//! [`LingeringClose`] makes every decision; a runtime performs the
//! [`CloseStep`]s it asks for and reports what the socket said.

use std::time::Instant;

use crate::listen::Permit;
use crate::{CLOSE_FLUSH, CLOSE_LINGER};

/// What a runtime does next for a connection that is ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseStep {
    /// Write the output that remains, waiting for the socket no later than
    /// `until` (when `until` has passed: what the socket takes at once);
    /// then ask again. Past `until`, the rest is given up on.
    Flush {
        /// When the rest is given up on.
        until: Instant,
    },
    /// Shut the socket's write side now, then ask again.
    ShutdownWrite,
    /// Read and discard, waiting for input no later than `until`; report
    /// the peer's end of input (or a read error) with
    /// [`LingeringClose::handle_peer_closed`], then ask again.
    Linger {
        /// When the socket is closed, input unread or not.
        until: Instant,
    },
    /// Close the socket: the connection is over.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `tried`: a write was asked for at least once, so that output is
    /// offered to the socket even when its time is up already.
    Flush {
        until: Instant,
        tried: bool,
    },
    Shut,
    Linger {
        until: Instant,
    },
    Closed,
}

/// The end of one server connection: after its session closed, after it
/// was refused, or when the server stops serving it.
#[derive(Debug)]
pub struct LingeringClose {
    phase: Phase,
    /// Whether to linger (read and discard) after shutting the write side.
    linger: bool,
    /// The peer's end of input has been seen: nothing is left to read.
    peer_closed: bool,
    /// The connection's place under the limits: given back when its write
    /// side is shut, so that the place is free by the time the peer sees
    /// the end of its input, and a lingering socket holds none.
    permit: Option<Permit>,
}

impl LingeringClose {
    /// A session that closed by itself (QUIT, a timeout, a protocol
    /// error): its last output gets [`CLOSE_FLUSH`], then the socket
    /// lingers for [`CLOSE_LINGER`] unless the peer has closed already.
    pub fn after_session(now: Instant, permit: Option<Permit>, peer_closed: bool) -> Self {
        Self {
            phase: Phase::Flush {
                until: now + CLOSE_FLUSH,
                tried: false,
            },
            linger: true,
            peer_closed,
            permit,
        }
    }

    /// A connection refused over a limit: a fresh socket's send buffer is
    /// empty, so its one-line refusal is written at once, never waited
    /// for (a peer that does not take it loses nothing it was promised);
    /// then it lingers, as the peer may have sent its first commands.
    pub fn refused(now: Instant) -> Self {
        Self {
            phase: Phase::Flush {
                until: now,
                tried: false,
            },
            linger: true,
            peer_closed: false,
            permit: None,
        }
    }

    /// The server stops serving (its grace period is over): the session's
    /// `421` is written if the socket takes it at once, and the socket is
    /// closed without lingering, as the server is going away.
    pub fn at_shutdown(now: Instant, permit: Option<Permit>) -> Self {
        Self {
            phase: Phase::Flush {
                until: now,
                tried: false,
            },
            linger: false,
            peer_closed: false,
            permit,
        }
    }

    /// An outbound connection whose session is over: its last output (the
    /// QUIT) gets [`CLOSE_FLUSH`], and it is closed without lingering:
    /// whatever the server still sends after its last reply is nothing a
    /// reset could destroy for anyone.
    pub fn outbound(now: Instant) -> Self {
        Self {
            phase: Phase::Flush {
                until: now + CLOSE_FLUSH,
                tried: false,
            },
            linger: false,
            peer_closed: false,
            permit: None,
        }
    }

    /// What to do now, given whether output remains to be written.
    pub fn poll(&mut self, now: Instant, output_pending: bool) -> CloseStep {
        loop {
            match self.phase {
                Phase::Flush { until, tried } if output_pending && (now < until || !tried) => {
                    self.phase = Phase::Flush { until, tried: true };
                    return CloseStep::Flush { until };
                }
                Phase::Flush { .. } => {
                    self.phase = Phase::Shut;
                    self.permit = None;
                    return CloseStep::ShutdownWrite;
                }
                Phase::Shut if self.linger && !self.peer_closed => {
                    self.phase = Phase::Linger {
                        until: now + CLOSE_LINGER,
                    };
                }
                Phase::Shut => self.phase = Phase::Closed,
                Phase::Linger { until } if !self.peer_closed && now < until => {
                    return CloseStep::Linger { until };
                }
                Phase::Linger { .. } => self.phase = Phase::Closed,
                Phase::Closed => {
                    self.permit = None;
                    return CloseStep::Close;
                }
            }
        }
    }

    /// The peer's end of input, or a read error: nothing more to read.
    pub fn handle_peer_closed(&mut self) {
        self.peer_closed = true;
    }

    /// Writing failed: the peer is gone, and nothing more can be said or
    /// read.
    pub fn handle_write_error(&mut self) {
        self.phase = Phase::Closed;
        self.permit = None;
    }

    /// Whether the connection still holds its place under the limits.
    pub fn holds_place(&self) -> bool {
        self.permit.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::listen::ConnectionLimit;

    fn permit(limit: &Arc<ConnectionLimit>) -> Option<Permit> {
        Some(limit.try_acquire().unwrap())
    }

    #[test]
    fn flush_then_shut_then_linger_until_the_peer_closes() {
        let limit = ConnectionLimit::new(1, Box::new(|| {}));
        let now = Instant::now();
        let mut close = LingeringClose::after_session(now, permit(&limit), false);
        let until = now + CLOSE_FLUSH;
        assert_eq!(close.poll(now, true), CloseStep::Flush { until });
        assert_eq!(limit.active(), 1, "held while its last reply is written");
        assert_eq!(close.poll(now, false), CloseStep::ShutdownWrite);
        assert_eq!(limit.active(), 0, "free before the peer sees the end");
        let later = now + Duration::from_millis(5);
        let linger = CloseStep::Linger {
            until: later + CLOSE_LINGER,
        };
        assert_eq!(close.poll(later, false), linger);
        assert_eq!(close.poll(later + CLOSE_LINGER / 2, false), linger);
        close.handle_peer_closed();
        assert_eq!(close.poll(later, false), CloseStep::Close);
        assert_eq!(close.poll(later, false), CloseStep::Close);
    }

    #[test]
    fn every_wait_is_bounded() {
        let now = Instant::now();
        let mut close = LingeringClose::after_session(now, None, false);
        assert!(matches!(close.poll(now, true), CloseStep::Flush { .. }));
        // A peer that reads nothing: the rest is given up on.
        let late = now + CLOSE_FLUSH;
        assert_eq!(close.poll(late, true), CloseStep::ShutdownWrite);
        // A peer that keeps sending: closed anyway.
        assert!(matches!(close.poll(late, true), CloseStep::Linger { .. }));
        assert_eq!(close.poll(late + CLOSE_LINGER, true), CloseStep::Close);
    }

    #[test]
    fn a_peer_that_closed_first_is_not_lingered_on() {
        let now = Instant::now();
        let mut close = LingeringClose::after_session(now, None, true);
        assert_eq!(close.poll(now, false), CloseStep::ShutdownWrite);
        assert_eq!(close.poll(now, false), CloseStep::Close);
    }

    #[test]
    fn refusals_are_written_at_once_and_lingered_on() {
        let now = Instant::now();
        let mut close = LingeringClose::refused(now);
        assert_eq!(close.poll(now, true), CloseStep::Flush { until: now });
        let later = now + Duration::from_millis(1);
        assert_eq!(close.poll(later, true), CloseStep::ShutdownWrite);
        assert_eq!(
            close.poll(later, false),
            CloseStep::Linger {
                until: later + CLOSE_LINGER
            }
        );
    }

    #[test]
    fn at_shutdown_nothing_is_waited_for() {
        let limit = ConnectionLimit::new(1, Box::new(|| {}));
        let now = Instant::now();
        let mut close = LingeringClose::at_shutdown(now, permit(&limit));
        // One write, of what the socket takes at once.
        assert_eq!(close.poll(now, true), CloseStep::Flush { until: now });
        assert_eq!(close.poll(now, true), CloseStep::ShutdownWrite);
        assert!(!close.holds_place());
        assert_eq!(close.poll(now, false), CloseStep::Close);
    }

    #[test]
    fn a_failed_write_closes_at_once() {
        let limit = ConnectionLimit::new(1, Box::new(|| {}));
        let now = Instant::now();
        let mut close = LingeringClose::after_session(now, permit(&limit), false);
        assert!(matches!(close.poll(now, true), CloseStep::Flush { .. }));
        close.handle_write_error();
        assert_eq!(limit.active(), 0);
        assert_eq!(close.poll(now, true), CloseStep::Close);
    }
}
