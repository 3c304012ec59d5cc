//! What a delivery tells its client sessions, and what it submits to them.

use std::time::Duration;

use super::tls_policy::TlsMode;
use crate::tls::ClientTls;
use crate::wire::command::{ForwardPath, MailParams, RcptParams, ReversePath};
use crate::wire::reply::{DEFAULT_MAX_REPLY_LINES, LENIENT_REPLY_LINE};

/// Client timeouts, RFC 5321 §4.5.3.2 unless noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// The 220 greeting (5 minutes).
    pub greeting: Duration,
    /// EHLO, HELO, STARTTLS, RSET and QUIT replies (5 minutes, as MAIL).
    pub command: Duration,
    /// The MAIL reply (5 minutes).
    pub mail: Duration,
    /// Each RCPT reply (5 minutes).
    pub rcpt: Duration,
    /// The 354 to DATA (2 minutes).
    pub data_init: Duration,
    /// Body octets waiting to be taken by the driver (3 minutes): the
    /// server is not reading.
    pub data_block: Duration,
    /// The reply to the end of the body, DATA's final dot or BDAT (10
    /// minutes: the server may be scanning or storing).
    pub data_end: Duration,
    /// The STARTTLS handshake (not in RFC 5321; one minute).
    pub tls_handshake: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        Self {
            greeting: minutes(5),
            command: minutes(5),
            mail: minutes(5),
            rcpt: minutes(5),
            data_init: minutes(2),
            data_block: minutes(3),
            data_end: minutes(10),
            tls_handshake: minutes(1),
        }
    }
}

/// Everything a client session needs to know about how to deliver.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The name we give in EHLO/HELO.
    pub helo_name: String,
    /// Momentum's `TLS`.
    pub tls_mode: TlsMode,
    /// Momentum's `TLS_Ifavailable_Fallback`.
    pub tls_fallback: bool,
    /// The TLS engine, verification and CA. Without one, `ifavailable`
    /// behaves as `no` and `required` defers every message.
    pub tls: Option<ClientTls>,
    /// Pipeline MAIL, RCPTs and DATA when the server offers PIPELINING.
    pub pipelining: bool,
    /// Send bodies with BDAT when the server offers CHUNKING.
    pub chunking: bool,
    /// See [`ClientTimeouts`].
    pub timeouts: ClientTimeouts,
    /// Body octets queued and not yet taken by `poll_transmit` before
    /// `wants_body` turns false.
    pub max_queued_body: usize,
    /// Recipients sent in one transaction at most; fewer when the server
    /// announces `LIMITS RCPTMAX` (RFC 9422) or has refused some with
    /// `452` on this connection. The rest go in further transactions.
    pub max_recipients_per_transaction: usize,
    /// Server input held unread while the application writes a body (a
    /// server has nothing to say then); past it the session closes.
    pub max_early_input: usize,
    /// Longest reply line taken, line end included (RFC 5321 says 512; real
    /// servers send longer, and refusing them gains nothing).
    pub max_reply_line: usize,
    /// Most lines in one reply.
    pub max_reply_lines: usize,
    /// Octets of a reply's text kept in each recipient's outcome: a server's
    /// megabyte of refusal would otherwise be copied once per recipient.
    pub max_outcome_text: usize,
}

impl ClientConfig {
    /// Defaults: TLS `ifavailable` with fallback, pipelining and chunking
    /// used when offered.
    pub fn new(helo_name: impl Into<String>) -> Self {
        Self {
            helo_name: helo_name.into(),
            tls_mode: TlsMode::default(),
            tls_fallback: true,
            tls: None,
            pipelining: true,
            chunking: true,
            timeouts: ClientTimeouts::default(),
            max_queued_body: 256 * 1024,
            max_recipients_per_transaction: 1000,
            max_early_input: 64 * 1024,
            max_reply_line: LENIENT_REPLY_LINE,
            max_reply_lines: DEFAULT_MAX_REPLY_LINES,
            max_outcome_text: 2048,
        }
    }
}

/// One message to deliver: the envelope. The body is streamed separately,
/// when the session asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The sender (`<>` for bounces).
    pub reverse_path: ReversePath,
    /// The recipients, in order; outcomes refer to them by index.
    pub recipients: Vec<Recipient>,
    /// SIZE (the body's size, when known), BODY, SMTPUTF8 (the message
    /// needs it), RET and ENVID. Parameters the server does not offer are
    /// left out (DSN) or make the message fail (SIZE over the server's
    /// limit, SMTPUTF8, BINARYMIME).
    pub params: MailParams,
}

/// One recipient of an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The forward-path.
    pub path: ForwardPath,
    /// NOTIFY and ORCPT, sent when the server offers DSN.
    pub params: RcptParams,
}
