//! What a server session tells its application.

use bytes::Bytes;

use crate::renegotiation::RenegotiationVerdict;
use crate::tls::{TlsError, TlsInfo};
use crate::wire::command::{ForwardPath, MailParams, RcptParams, ReversePath};
use crate::wire::dot::BodyFlaws;

/// An event from [`ServerSession::poll_event`](super::ServerSession::poll_event).
///
/// Three events ask for a decision — [`Event::Mail`], [`Event::Rcpt`] and
/// [`Event::MessageEnd`] — answered with
/// [`accept`](super::ServerSession::accept) or
/// [`respond`](super::ServerSession::respond), at once or much later. Until
/// then the session reads no further command, so replies stay in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// HELO or EHLO was accepted; any transaction was reset.
    Hello {
        /// The name the client gave.
        name: String,
        /// EHLO rather than HELO.
        extended: bool,
    },
    /// `MAIL FROM`: decide whether to open a transaction.
    Mail {
        /// The reverse-path (`<>` is [`ReversePath::Null`]).
        reverse_path: ReversePath,
        /// SIZE, BODY, SMTPUTF8 and DSN parameters.
        params: MailParams,
    },
    /// `RCPT TO`: decide whether to accept this recipient.
    Rcpt {
        /// The forward-path.
        forward_path: ForwardPath,
        /// DSN parameters.
        params: RcptParams,
    },
    /// The message body starts (after `354`, or with the first BDAT chunk).
    BodyStart {
        /// BDAT rather than DATA.
        chunking: bool,
    },
    /// The next piece of the body, unstuffed. Pieces arrive in order and
    /// together are the message exactly as the client sent it.
    Body(Bytes),
    /// The whole body has arrived: decide whether to take responsibility
    /// for the message. A `250` must only be given once the message is
    /// durable.
    MessageEnd {
        /// Body octets.
        size: u64,
        /// Octets above 0x7f were seen (informational; DATA only).
        eight_bit: bool,
    },
    /// The transaction in progress ended without a message: discard what
    /// was received of it.
    TransactionAborted(AbortReason),
    /// The TLS handshake completed; the session was reset to the state after
    /// the greeting, and the client must say EHLO again.
    TlsEstablished(TlsInfo),
    /// The client asked to renegotiate TLS (TLS 1.2 only), and what the
    /// renegotiation policy made of it.
    Renegotiation {
        /// 1 for the first attempt on this connection, as the session
        /// counts them ([who counts](crate::renegotiation#who-counts)).
        attempt: u32,
        /// Allowed, refused by the engine, or the connection closed.
        verdict: RenegotiationVerdict,
    },
    /// The session is over: send what `poll_transmit` still yields, then
    /// close the socket. No event follows.
    Closed(CloseReason),
}

/// Why a transaction was abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AbortReason {
    /// RSET.
    Reset,
    /// HELO or EHLO in the middle of a transaction.
    Hello,
    /// The body exceeded the message size limit.
    TooLarge,
    /// The body broke a rule of the wire format (see the flaws).
    BadBody(BodyFlaws),
    /// The connection ended first.
    ConnectionClosed,
}

/// Why a session closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client said QUIT.
    Quit,
    /// The client closed its side of the connection.
    PeerClosed,
    /// No command or data within the timeout (a `421` was sent).
    Timeout,
    /// The TLS handshake did not complete in time.
    TlsHandshakeTimeout,
    /// TLS failed: the handshake, or a record later on. Never followed by
    /// plaintext.
    Tls(TlsError),
    /// Plaintext was pipelined after STARTTLS under the `reject` policy.
    StartTlsInjection,
    /// Too many errors from the client (a `421` was sent).
    TooManyErrors,
    /// The renegotiation policy closed the connection: an attempt past the
    /// cap, or one the engine would fail on (rustls's second). The
    /// [`Event::Renegotiation`] just before says which
    /// ([`renegotiation::CloseReason`](crate::renegotiation::CloseReason)).
    RenegotiationLimit,
    /// The application answered a decision with `421`.
    Application,
    /// The server shut down before the session ended (a `421` was sent).
    Shutdown,
    /// The driver kept pushing input while `wants_input` was false, far
    /// past the limit (a driver bug).
    InputOverflow,
    /// A malformed BDAT: the size of the chunk that follows is unknown, so
    /// commands can no longer be told from data.
    LostFraming,
}

/// The decision the session is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecisionKind {
    /// For [`Event::Mail`].
    Mail,
    /// For [`Event::Rcpt`].
    Rcpt,
    /// For [`Event::MessageEnd`].
    MessageEnd,
}

/// A decision the session could not take.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecisionError {
    /// No decision is pending (none was asked for, it was already given, or
    /// the session closed in the meantime — then the reply was never sent,
    /// and a message must not count as accepted).
    NotPending,
    /// The reply cannot answer this decision: only 2xx, 4xx and 5xx can,
    /// and an enhanced code must be of the same class.
    BadCode(u16),
}

impl std::fmt::Display for DecisionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotPending => f.write_str("no decision is pending"),
            Self::BadCode(code) => write!(f, "reply code {code} cannot answer a decision"),
        }
    }
}

impl std::error::Error for DecisionError {}
