//! The sans-IO ESMTP client session: delivering messages over one
//! connection.
//!
//! A [`ClientSession`] has the same shape as the server session: bytes and
//! time in through `handle_input`, `handle_timeout`, `handle_eof`; bytes,
//! events and deadlines out through `poll_transmit`, `poll_event`,
//! `poll_timeout`. The application [`submit`](ClientSession::submit)s
//! envelopes, streams each body when asked ([`Event::BodyWanted`]) with
//! [`send_body`](ClientSession::send_body) and
//! [`finish_body`](ClientSession::finish_body), and learns one
//! [`Event::TransactionDone`] per envelope with an outcome for every
//! recipient, whatever happens to the connection.
//!
//! STARTTLS is decided after the first EHLO by [`tls_policy::decide`]: the
//! session may go on over TLS, go on in plaintext (only when STARTTLS was
//! never sent), close asking for a fresh plaintext connection
//! ([`CloseReason::ReconnectPlaintext`]; the driver then makes one with
//! [`ClientSession::new`] and [`ConnectionKind::PlaintextFallback`]), or
//! defer every message.
//! After TLS starts, everything learnt before is forgotten and EHLO is sent
//! again (RFC 3207 §4.2); bytes that arrive after the server's `220` and
//! before the handshake abort the attempt (response injection,
//! CVE-2021-38371 class); once TLS ends, nothing more is sent.

mod config;
pub mod tls_policy;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

pub use config::{ClientConfig, ClientTimeouts, Envelope, Recipient};
use tls_policy::{HandshakeFailure, TlsAction, TlsMode, TlsOutcome};

use crate::tls::{TlsError, TlsInfo, TlsSession, TlsVerify};
use crate::wire::command::{BodyType, Command, MailParams, RcptParams};
use crate::wire::dot::DotStuffer;
use crate::wire::ehlo::Capabilities;
use crate::wire::reply::{EnhancedCode, Reply, ReplyError, ReplyParser, ReplyRef, ReplyStatus};

/// Which connection of a delivery a session runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionKind {
    /// The first connection: STARTTLS as the TLS policy says.
    First,
    /// The fresh connection after [`CloseReason::ReconnectPlaintext`]:
    /// STARTTLS is not attempted. Only `ifavailable` with fallback may run
    /// one; under any other policy the session judges it a failed attempt,
    /// so `required` never sends MAIL in plaintext whatever the driver does.
    PlaintextFallback,
}

/// Identifies a submitted envelope in later events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(pub u64);

/// What became of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// The server took responsibility for the message.
    Delivered,
    /// Try again later (4xx, or the connection failed).
    Transient,
    /// Do not try again (5xx): bounce.
    Permanent,
}

/// The outcome for one recipient, with the reply that decided it (the
/// server's, or one of ours marked `[internal]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientOutcome {
    /// The recipient's index in the envelope.
    pub recipient: usize,
    /// What became of it.
    pub delivery: Delivery,
    /// Why.
    pub reply: Reply,
}

/// An event from [`ClientSession::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The server's EHLO capabilities (again after TLS starts).
    Capabilities(Capabilities),
    /// The outbound TLS policy was consulted: what happened and what the
    /// session does about it (for the delivery log).
    TlsDecision {
        /// What happened.
        outcome: TlsOutcome,
        /// What the session does.
        action: TlsAction,
    },
    /// TLS is up.
    TlsEstablished(TlsInfo),
    /// Stream this transaction's body now: `send_body` while `wants_body`,
    /// then `finish_body`. It comes again, for the body from its start,
    /// when the server took only some of the recipients and the rest go in
    /// another transaction on this connection. The body calls are refused
    /// until this event has been taken from `poll_event`.
    BodyWanted(TransactionId),
    /// A submitted envelope is finished: one outcome per recipient, in
    /// envelope order.
    TransactionDone {
        /// Which envelope.
        id: TransactionId,
        /// Every recipient, exactly once.
        outcomes: Vec<RecipientOutcome>,
    },
    /// The session is over: send what `poll_transmit` still yields, then
    /// close the socket. No event follows.
    Closed(CloseReason),
}

/// Why a client session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// QUIT was answered (or the server closed after it).
    Quit,
    /// The TLS policy asks for a fresh plaintext connection; undelivered
    /// messages were given transient outcomes to resubmit there.
    ReconnectPlaintext,
    /// The TLS policy deferred every message.
    TlsDeferred,
    /// The server said 421.
    ServiceClosing,
    /// The server closed the connection.
    PeerClosed,
    /// A reply did not come in time.
    Timeout,
    /// The server broke the protocol.
    Protocol(ProtocolError),
    /// TLS failed after it was established.
    Tls(TlsError),
    /// The greeting or EHLO/HELO was refused.
    Refused,
    /// The application called [`ClientSession::abort`].
    Aborted,
}

/// How a server broke the protocol; the session closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// It sent more than `max_early_input` while a body was being written
    /// (when it had nothing to say).
    EarlyInput,
    /// A reply could not be parsed.
    BadReply(ReplyError),
    /// A reply (other than 421) came when none was awaited.
    UnexpectedReply {
        /// Its code.
        code: u16,
    },
    /// A reply of the wrong kind for the command it answers by order: the
    /// two sides no longer agree on which reply is which.
    Mismatch {
        /// Its code.
        code: u16,
        /// What it was taken to answer.
        answering: &'static str,
    },
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EarlyInput => f.write_str("server sent data while the body was being written"),
            Self::BadReply(error) => write!(f, "bad reply from server: {error}"),
            Self::UnexpectedReply { code } => write!(f, "unexpected reply {code}"),
            Self::Mismatch { code, answering } => {
                write!(f, "reply {code} does not answer the {answering}")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why a body call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyError {
    /// No body is wanted now (none was asked for, or it was finished).
    NotWanted,
    /// The transaction already ended (the server refused a chunk, or the
    /// connection failed); stop sending its body.
    TransactionEnded,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotWanted => "no body is wanted now",
            Self::TransactionEnded => "the transaction has ended",
        })
    }
}

impl std::error::Error for BodyError {}

/// A reply the session awaits, in the order the commands were sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Mail,
    /// The RCPT at this position of the transaction's current batch.
    Rcpt(usize),
    Data,
    /// A BDAT chunk; `last` for the final one.
    Bdat {
        last: bool,
    },
    /// The final dot of DATA.
    DataEnd,
    Rset,
    Quit,
}

impl Expect {
    /// What is awaited, for messages.
    fn name(self) -> &'static str {
        match self {
            Expect::Greeting => "greeting",
            Expect::Ehlo => "EHLO",
            Expect::Helo => "HELO",
            Expect::StartTls => "STARTTLS",
            Expect::Mail => "MAIL",
            Expect::Rcpt(_) => "RCPT",
            Expect::Data => "DATA",
            Expect::Bdat { .. } => "BDAT",
            Expect::DataEnd => "end of data",
            Expect::Rset => "RSET",
            Expect::Quit => "QUIT",
        }
    }

    /// Whether a reply with this `code` can be the answer to this.
    fn fits(self, code: u16) -> bool {
        let class = code / 100;
        match self {
            Expect::Data => code == 354 || class == 4 || class == 5,
            // Refusals are handled by whoever awaits them.
            Expect::Greeting | Expect::Ehlo | Expect::Helo | Expect::StartTls | Expect::Quit => {
                true
            }
            Expect::Mail
            | Expect::Rcpt(_)
            | Expect::Bdat { .. }
            | Expect::DataEnd
            | Expect::Rset => class != 3,
        }
    }
}

#[derive(Debug)]
enum Phase {
    /// Greeting, EHLO, STARTTLS: the connection is being set up.
    Setup,
    /// After the 220 to STARTTLS, until the handshake completes.
    Handshake {
        deadline: Option<Instant>,
    },
    /// Ready for transactions.
    Ready,
    Closed,
}

/// How the body of the active transaction travels.
#[derive(Debug)]
enum Body {
    /// Not asked for yet.
    Pending,
    /// The application is streaming it (DATA, dot-stuffed).
    Data(DotStuffer),
    /// The application is streaming it (BDAT chunks).
    Chunks,
    /// All sent (or never to be sent); waiting for replies.
    Done,
}

/// One envelope, sent in as many SMTP transactions on this connection as
/// the server's recipient limit asks: each round takes the next batch of
/// recipients (RFC 5321 §4.5.3.1.10).
#[derive(Debug)]
struct Transaction {
    id: TransactionId,
    envelope: Envelope,
    outcomes: Vec<Option<(Delivery, Reply)>>,
    /// Recipients not sent yet, in envelope order.
    unsent: VecDeque<usize>,
    /// The recipients of the current round, in the order sent; empty
    /// between rounds.
    batch: Vec<usize>,
    /// Recipients of this round the server refused as too many (452): they
    /// go in the next round.
    over_limit: Vec<(usize, Reply)>,
    /// MAIL was accepted: a transaction is open on the server.
    open: bool,
    /// Recipients the server accepted with RCPT.
    accepted: Vec<usize>,
    body: Body,
    /// A reply decided the round; remaining replies are consumed.
    failed: bool,
    /// MAIL or the body was refused: that reply is the outcome of every
    /// recipient still undecided, and no round follows.
    refusal: Option<Reply>,
    chunking: bool,
}

impl Transaction {
    fn decide(&mut self, index: usize, delivery: Delivery, reply: &Reply) {
        if let Some(slot @ None) = self.outcomes.get_mut(index) {
            *slot = Some((delivery, reply.clone()));
        }
    }

    /// Gives every undecided recipient (or only the accepted ones) the
    /// outcome `reply` means.
    fn decide_rest(&mut self, reply: &Reply, accepted_only: bool) {
        let delivery = class(reply.code());
        let indices: Vec<usize> = if accepted_only {
            self.accepted.clone()
        } else {
            (0..self.outcomes.len()).collect()
        };
        for index in indices {
            self.decide(index, delivery, reply);
        }
    }

    /// MAIL or the body was refused: the message is refused, for the
    /// accepted recipients now and for every other undecided one at the end
    /// of the round.
    fn refuse(&mut self, reply: &Reply) {
        self.decide_rest(reply, true);
        self.refusal = Some(reply.clone());
        self.failed = true;
    }

    /// Sets up the next round, or says there is none: the recipients
    /// refused as too many go first when the round made progress (so rounds
    /// cannot repeat for ever), then those never sent.
    fn next_round(&mut self) -> bool {
        let over_limit = std::mem::take(&mut self.over_limit);
        let progress = self.batch.len() > over_limit.len();
        self.batch.clear();
        self.accepted.clear();
        self.open = false;
        self.failed = false;
        self.body = Body::Pending;
        if let Some(reply) = self.refusal.take() {
            self.decide_rest(&reply, false);
            return false;
        }
        if !progress {
            // The server took none of this round: it takes no more now.
            // Too many recipients is a passing condition, even said with
            // 552 (RFC 5321 §4.5.3.1.10): every one left is transient.
            for (index, reply) in &over_limit {
                self.decide(*index, Delivery::Transient, &as_transient(reply));
            }
            if let Some((_, reply)) = over_limit.first() {
                self.decide_rest(&as_transient(reply), false);
            }
            return false;
        }
        for (index, _) in over_limit.into_iter().rev() {
            self.unsent.push_front(index);
        }
        !self.unsent.is_empty()
    }
}

/// A refusal of RCPT that means "too many recipients in this transaction",
/// to be sent again in the next: 452 (RFC 5321 §4.5.3.1.10), or the 552
/// with 5.5.3 that the RFC tells clients to take as temporary.
fn too_many_recipients(code: u16, enhanced: Option<EnhancedCode>) -> bool {
    code == 452 || code == 552 && enhanced == Some(EnhancedCode::new(5, 5, 3))
}

/// `now + timeout`, or no deadline if that overflows.
fn deadline(now: Instant, timeout: std::time::Duration) -> Option<Instant> {
    now.checked_add(timeout)
}

/// What a reply with this code means for a recipient.
fn class(code: u16) -> Delivery {
    match code / 100 {
        2 => Delivery::Delivered,
        5 => Delivery::Permanent,
        _ => Delivery::Transient,
    }
}

/// One of our own replies, for outcomes the server did not give.
fn internal(code: u16, (class, subject, detail): (u8, u16, u16), text: &str) -> Reply {
    Reply::new(
        code,
        Some(EnhancedCode::new(class, subject, detail)),
        format!("[internal] {text}"),
    )
}

#[derive(Debug)]
struct Tls {
    session: Box<dyn TlsSession>,
    established: bool,
}

/// One client-side SMTP connection. See the [module docs](self).
#[derive(Debug)]
pub struct ClientSession {
    config: Arc<ClientConfig>,
    server_name: String,
    kind: ConnectionKind,
    now: Instant,
    /// When the reply at the front of `expect` started to be awaited.
    waiting_since: Instant,
    phase: Phase,
    parser: ReplyParser,
    inbuf: Vec<u8>,
    /// Set while a reply is handled: the input after it is not to be read
    /// (plaintext after the 220 to STARTTLS).
    discard_input: bool,
    /// Bytes for the wire as they are (plaintext, before TLS).
    out_wire: Vec<u8>,
    /// Bytes to encrypt once TLS is up.
    out_plain: Vec<u8>,
    /// Since when body octets have been waiting for the driver.
    out_since: Option<Instant>,
    expect: VecDeque<Expect>,
    caps: Capabilities,
    tls: Option<Tls>,
    queue: VecDeque<(TransactionId, Envelope)>,
    active: Option<Transaction>,
    next_id: u64,
    quit_requested: bool,
    starttls_sent: bool,
    /// Recipients the server took in a transaction before saying 452 for
    /// too many: later rounds on this connection send no more than that.
    learned_rcpt_max: Option<usize>,
    /// While a body is being written: when it last moved. The server not
    /// taking it (the driver cannot write) stops it moving.
    body_progress: Option<Instant>,
    events: VecDeque<Event>,
}

impl ClientSession {
    /// A session for a connection just made to `server_name` (the MX host
    /// name: SNI and, with `TLS_Verify = host`, the name checked).
    pub fn new(
        config: Arc<ClientConfig>,
        server_name: &str,
        kind: ConnectionKind,
        now: Instant,
    ) -> Self {
        Self {
            parser: reply_parser(&config),
            config,
            server_name: server_name.to_owned(),
            kind,
            now,
            waiting_since: now,
            phase: Phase::Setup,
            inbuf: Vec::new(),
            discard_input: false,
            out_wire: Vec::new(),
            out_plain: Vec::new(),
            out_since: None,
            expect: VecDeque::from([Expect::Greeting]),
            caps: Capabilities::default(),
            tls: None,
            queue: VecDeque::new(),
            active: None,
            next_id: 0,
            quit_requested: false,
            starttls_sent: false,
            learned_rcpt_max: None,
            body_progress: None,
            events: VecDeque::new(),
        }
    }

    // ---- application calls ----------------------------------------------

    /// Queues a message; its outcome arrives as [`Event::TransactionDone`].
    pub fn submit(&mut self, now: Instant, envelope: Envelope) -> TransactionId {
        self.now = now;
        let id = TransactionId(self.next_id);
        self.next_id += 1;
        if self.is_closed() {
            let reply = internal(421, (4, 4, 2), "connection closed");
            self.done_without_trying(id, &envelope, &reply);
        } else {
            self.queue.push_back((id, envelope));
            self.advance();
        }
        id
    }

    /// Asks for QUIT once every submitted message is done.
    pub fn quit(&mut self, now: Instant) {
        self.now = now;
        self.quit_requested = true;
        self.advance();
    }

    /// Whether the application has taken the `BodyWanted` of the body now
    /// wanted. Until it has, the body calls are refused: a round's body
    /// finished before its event was seen would leave that event to ask,
    /// later, for a body already sent.
    fn body_announced(&self) -> bool {
        !self
            .events
            .iter()
            .any(|event| matches!(event, Event::BodyWanted(_)))
    }

    /// Whether the body being streamed may take more octets now (never
    /// before its [`Event::BodyWanted`] has been taken).
    pub fn wants_body(&self) -> bool {
        let streaming = self.streaming_body();
        // Without PIPELINING each BDAT waits for its reply (RFC 3030 §4.2).
        let lock_step = self.active.as_ref().is_some_and(|t| t.chunking)
            && !self.pipelining()
            && !self.expect.is_empty();
        streaming
            && self.body_announced()
            && !lock_step
            && self.out_plain.len() + self.out_wire.len() < self.config.max_queued_body
    }

    /// The next piece of the body of the transaction that asked for it.
    pub fn send_body(&mut self, now: Instant, chunk: &[u8]) -> Result<(), BodyError> {
        self.now = now;
        let announced = self.body_announced();
        let active = self.active.as_mut().ok_or(BodyError::NotWanted)?;
        if active.failed {
            return Err(BodyError::TransactionEnded);
        }
        if !announced {
            return Err(BodyError::NotWanted);
        }
        let mut out = Vec::new();
        match &mut active.body {
            Body::Data(stuffer) => stuffer.stuff(chunk, &mut out),
            Body::Chunks if chunk.is_empty() => {}
            Body::Chunks => {
                Command::Bdat {
                    size: chunk.len() as u64,
                    last: false,
                }
                .write_to(&mut out);
                out.extend_from_slice(chunk);
                self.send(&out, Expect::Bdat { last: false });
                self.body_progress = Some(now);
                self.read_replies();
                return Ok(());
            }
            Body::Pending | Body::Done => return Err(BodyError::NotWanted),
        }
        self.queue_bytes(&out);
        self.body_progress = Some(now);
        self.read_replies();
        Ok(())
    }

    /// Ends the body of the transaction that asked for it.
    pub fn finish_body(&mut self, now: Instant) -> Result<(), BodyError> {
        self.now = now;
        let announced = self.body_announced();
        let active = self.active.as_mut().ok_or(BodyError::NotWanted)?;
        if active.failed {
            return Err(BodyError::TransactionEnded);
        }
        if !announced {
            return Err(BodyError::NotWanted);
        }
        let mut out = Vec::new();
        let expect = match &mut active.body {
            Body::Data(stuffer) => {
                stuffer.finish(&mut out);
                Expect::DataEnd
            }
            Body::Chunks => {
                Command::Bdat {
                    size: 0,
                    last: true,
                }
                .write_to(&mut out);
                Expect::Bdat { last: true }
            }
            Body::Pending | Body::Done => return Err(BodyError::NotWanted),
        };
        active.body = Body::Done;
        self.body_progress = None;
        self.send(&out, expect);
        self.read_replies();
        Ok(())
    }

    /// Ends the session at once, for a reason of the application's (a
    /// body that cannot be read, a shutdown): every message not yet done is
    /// transient, and nothing queued is sent any more (only close_notify
    /// under TLS).
    pub fn abort(&mut self, now: Instant) {
        self.now = now;
        let reply = internal(421, (4, 3, 0), "delivery aborted locally");
        self.close(CloseReason::Aborted, Some(&reply));
    }

    // ---- inputs -----------------------------------------------------------

    /// Bytes received from the server (ciphertext once TLS is active).
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.now = now;
        if self.is_closed() || data.is_empty() {
            return;
        }
        if self.tls.is_some() {
            if let Err(error) = self.handle_ciphertext(data) {
                return self.tls_failed(error);
            }
        } else {
            self.inbuf.extend_from_slice(data);
        }
        self.read_replies();
    }

    /// The server closed the connection.
    pub fn handle_eof(&mut self, now: Instant) {
        self.now = now;
        if self.is_closed() {
            return;
        }
        if matches!(self.phase, Phase::Handshake { .. })
            || self.expect.front() == Some(&Expect::StartTls)
        {
            // A STARTTLS attempt that ended this way is a failed attempt,
            // for the policy to judge (a middlebox that drops STARTTLS).
            return self.apply_tls_decision(TlsOutcome::HandshakeFailed(
                HandshakeFailure::ConnectionClosed,
            ));
        }
        if self.expect.front() == Some(&Expect::Quit) {
            return self.close(CloseReason::Quit, None);
        }
        if self.streaming_body() {
            // A server may refuse in the middle of a body and hang up (a
            // 552 for size, a 554 from a filter); that refusal, held back
            // while the body was being written, is the outcome. Only a
            // refusal: a stray 2xx or 3xx (a second 354) decides nothing.
            if let Ok(ReplyStatus::Complete { reply, .. }) = self.parser.parse_ref(&self.inbuf) {
                let refusal = reply.is_transient() || reply.is_permanent();
                if let Some(txn) = self.active.as_mut().filter(|_| refusal) {
                    txn.decide_rest(&reply.into_owned(), true);
                }
            }
        }
        let reply = internal(421, (4, 4, 2), "connection closed by the server");
        self.close(CloseReason::PeerClosed, Some(&reply));
    }

    /// Call at (or after) the instant `poll_timeout` returned.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => {}
            _ => return,
        }
        if matches!(self.phase, Phase::Handshake { .. })
            || self.expect.front() == Some(&Expect::StartTls)
        {
            return self.apply_tls_decision(TlsOutcome::HandshakeTimedOut);
        }
        let text = match self.expect.front() {
            Some(expect) if self.out_since.is_none() => {
                format!("timeout waiting for the reply to {}", expect.name())
            }
            _ => "timeout waiting for the server to take the body".to_owned(),
        };
        let reply = internal(421, (4, 4, 2), &text);
        self.close(CloseReason::Timeout, Some(&reply));
    }

    // ---- outputs ----------------------------------------------------------

    /// Appends bytes to send to the server to `buf`; returns how many.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        let start = buf.len();
        buf.append(&mut self.out_wire);
        if let Some(tls) = &mut self.tls {
            if !self.out_plain.is_empty() {
                let written = tls.session.write_plaintext(&self.out_plain);
                self.out_plain.clear();
                if let Err(error) = written {
                    self.tls_failed(error);
                }
            }
            if let Some(tls) = &mut self.tls {
                tls.session.poll_ciphertext(buf);
            }
        }
        self.out_since = None;
        buf.len() - start
    }

    /// The next event, if any.
    #[must_use = "an event not taken is lost to the driver"]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next, if ever.
    #[must_use = "the session times out only if handle_timeout is called at this instant"]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = &self.config.timeouts;
        match self.phase {
            Phase::Closed => return None,
            Phase::Handshake { deadline: at } => return at,
            Phase::Setup | Phase::Ready => {}
        }
        let reply_deadline = self.expect.front().map(|expect| {
            let timeout = match expect {
                Expect::Greeting => t.greeting,
                Expect::Ehlo | Expect::Helo | Expect::StartTls | Expect::Rset | Expect::Quit => {
                    t.command
                }
                Expect::Mail => t.mail,
                Expect::Rcpt(_) => t.rcpt,
                Expect::Data => t.data_init,
                Expect::Bdat { last: false } => t.data_block,
                Expect::Bdat { last: true } | Expect::DataEnd => t.data_end,
            };
            deadline(self.waiting_since, timeout)
        });
        let write_deadline = self
            .out_since
            .and_then(|since| deadline(since, t.data_block));
        let body_deadline = self
            .body_progress
            .filter(|_| self.streaming_body())
            .and_then(|since| deadline(since, t.data_block));
        [reply_deadline.flatten(), write_deadline, body_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    fn streaming_body(&self) -> bool {
        matches!(
            self.active.as_ref().map(|t| &t.body),
            Some(Body::Data(_) | Body::Chunks)
        )
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether the session has nothing to do: no message in progress or
    /// queued. The driver may submit more, or `quit`.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Ready)
            && self.active.is_none()
            && self.queue.is_empty()
            && self.expect.is_empty()
    }

    /// The server's capabilities, from the latest EHLO.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The negotiated TLS parameters, once TLS is up.
    pub fn tls_info(&self) -> Option<TlsInfo> {
        self.tls
            .as_ref()
            .filter(|tls| tls.established)
            .and_then(|tls| tls.session.info())
    }

    // ---- replies ----------------------------------------------------------

    fn read_replies(&mut self) {
        // Replies are read in place, as views of `inbuf`: the buffer and the
        // parser (which may hold the start of a reply) are moved out of the
        // session while the replies are handled, and what was read is
        // dropped from the buffer once, at the end.
        let mut inbuf = std::mem::take(&mut self.inbuf);
        let mut parser = std::mem::take(&mut self.parser);
        let mut read = 0;
        while !self.is_closed() && !matches!(self.phase, Phase::Handshake { .. }) {
            let rest = inbuf.get(read..).unwrap_or_default();
            if self.expect.is_empty() && self.streaming_body() {
                // Nothing is due until the application ends the body; what
                // the server sent early waits, so that the result does not
                // depend on how its bytes were split (bounded, though).
                if rest.len() > self.config.max_early_input {
                    self.protocol_error(ProtocolError::EarlyInput);
                }
                break;
            }
            match parser.parse_ref(rest) {
                Ok(ReplyStatus::Complete { reply, consumed }) => {
                    read += consumed;
                    self.on_reply(reply, consumed < rest.len());
                    if std::mem::take(&mut self.discard_input) {
                        read = inbuf.len();
                    }
                }
                Ok(ReplyStatus::Partial { consumed }) => {
                    read += consumed;
                    break;
                }
                Err(error) => {
                    self.protocol_error(ProtocolError::BadReply(error));
                    break;
                }
            }
        }
        inbuf.drain(..read.min(inbuf.len()));
        // Handling replies neither reads input nor resets the parser.
        self.inbuf = inbuf;
        self.parser = parser;
    }

    /// On the plaintext fallback connection, a `530` (the server wants the
    /// TLS that just failed) is a problem of this path, to be retried over
    /// TLS later: it defers, it never bounces.
    fn fallback_530(&self, reply: &ReplyRef<'_>) -> Option<Reply> {
        if self.kind == ConnectionKind::PlaintextFallback && reply.code() == 530 {
            let text = format!(
                "the server requires TLS, which failed: {}",
                reply.into_owned()
            );
            Some(internal(451, (4, 7, 0), &text))
        } else {
            None
        }
    }

    fn protocol_error(&mut self, error: ProtocolError) {
        let reply = internal(421, (4, 5, 0), &error.to_string());
        self.close(CloseReason::Protocol(error), Some(&reply));
    }

    /// A reply, as received: its code decides, and it is made owned only
    /// where it is kept (an outcome, a close, a TLS decision).
    /// `more_input`: input follows it.
    fn on_reply(&mut self, reply: ReplyRef<'_>, more_input: bool) {
        self.waiting_since = self.now;
        let code = reply.code();
        let Some(expect) = self.expect.pop_front() else {
            // RFC 5321 §3.8: a server may say 421 at any time, asked or not.
            if code == 421 {
                return self.close(CloseReason::ServiceClosing, Some(&reply.into_owned()));
            }
            return self.protocol_error(ProtocolError::UnexpectedReply { code });
        };
        if code == 421 && expect == Expect::StartTls {
            return self.apply_tls_decision(TlsOutcome::Refused(reply.into_owned()));
        }
        if code == 421 && expect != Expect::Quit {
            return self.close(CloseReason::ServiceClosing, Some(&reply.into_owned()));
        }
        if !expect.fits(code) {
            // Replies are matched to commands by order alone, so a reply of
            // the wrong kind means the two sides no longer agree on which
            // reply is which (a server answering a pipelined group with too
            // many or too few replies): nothing after it can be trusted.
            return self.protocol_error(ProtocolError::Mismatch {
                code,
                answering: expect.name(),
            });
        }
        match expect {
            Expect::Greeting if code == 220 => self.send_ehlo(),
            Expect::Greeting => {
                let refusal = as_transient(&reply.into_owned());
                self.close(CloseReason::Refused, Some(&refusal));
            }
            Expect::Ehlo if reply.is_positive() => {
                self.ehlo_done(Capabilities::from_ehlo_reply_ref(&reply))
            }
            // RFC 5321 §4.1.4: an old server may only know HELO.
            Expect::Ehlo if reply.is_permanent() => {
                let mut out = Vec::new();
                Command::Helo(self.config.helo_name.clone()).write_to(&mut out);
                self.send(&out, Expect::Helo);
            }
            Expect::Helo if reply.is_positive() => self.ehlo_done(Capabilities::default()),
            Expect::Ehlo | Expect::Helo => {
                let refusal = as_transient(&reply.into_owned());
                self.close(CloseReason::Refused, Some(&refusal));
            }
            Expect::StartTls => self.starttls_reply(reply, more_input),
            Expect::Quit => self.close(CloseReason::Quit, None),
            Expect::Rset => self.resume(),
            Expect::Mail
            | Expect::Rcpt(_)
            | Expect::Data
            | Expect::Bdat { .. }
            | Expect::DataEnd => self.transaction_reply(expect, reply),
        }
    }

    fn transaction_reply(&mut self, expect: Expect, received: ReplyRef<'_>) {
        // On the plaintext fallback connection a 530 stands for a 451 of
        // ours (see `fallback_530`). The code decides; `keep` makes the
        // reply an outcome keeps, cut to size, only where one does.
        let substitute = self.fallback_530(&received);
        let (code, enhanced) = match &substitute {
            Some(reply) => (reply.code(), reply.enhanced()),
            None => (received.code(), received.enhanced()),
        };
        let max = self.config.max_outcome_text;
        let keep = || {
            let reply = substitute.clone().unwrap_or_else(|| received.into_owned());
            bounded(reply, max)
        };
        let positive = code / 100 == 2;
        let pipelining = self.pipelining();
        let dsn = self.caps.dsn;
        let Some(txn) = self.active.as_mut() else {
            return self.advance();
        };
        // The command to send next, and the reply it awaits.
        let mut next: Option<(Vec<u8>, Expect)> = None;
        let mut learned = None;
        match expect {
            Expect::Mail if positive => {
                txn.open = true;
                if !pipelining {
                    next = Some((rcpt_command(txn, 0, dsn), Expect::Rcpt(0)));
                }
            }
            Expect::Mail => txn.refuse(&keep()),
            Expect::Rcpt(position) => {
                let index = txn.batch.get(position).copied();
                let mut last = position + 1 >= txn.batch.len();
                match index {
                    Some(index) if !txn.failed => {
                        if positive {
                            txn.accepted.push(index);
                        } else if too_many_recipients(code, enhanced) {
                            if txn.over_limit.is_empty() && !txn.accepted.is_empty() {
                                let took = txn.accepted.len();
                                learned = Some(took);
                            }
                            txn.over_limit.push((index, keep()));
                            if !pipelining && !last {
                                // The rest of the batch would be refused
                                // too: it waits for the next round unsent.
                                for &later in
                                    txn.batch.get(position + 1..).unwrap_or(&[]).iter().rev()
                                {
                                    txn.unsent.push_front(later);
                                }
                                txn.batch.truncate(position + 1);
                                last = true;
                            }
                        } else {
                            txn.decide(index, class(code), &keep());
                        }
                    }
                    _ => {}
                }
                if !pipelining && !last && !txn.failed {
                    let rcpt = rcpt_command(txn, position + 1, dsn);
                    next = Some((rcpt, Expect::Rcpt(position + 1)));
                } else if last && !txn.failed {
                    if txn.accepted.is_empty() {
                        txn.failed = true;
                    } else if txn.chunking {
                        txn.body = Body::Chunks;
                        self.events.push_back(Event::BodyWanted(txn.id));
                        self.body_progress = Some(self.now);
                    } else if !pipelining {
                        let mut out = Vec::new();
                        Command::Data.write_to(&mut out);
                        next = Some((out, Expect::Data));
                    }
                }
            }
            Expect::Data if code == 354 => {
                if txn.failed || txn.accepted.is_empty() {
                    // RFC 2920 §3.1: a server that said 354 anyway gets an
                    // empty body, which it must not deliver to anyone.
                    txn.failed = true;
                    txn.body = Body::Done;
                    next = Some((b".\r\n".to_vec(), Expect::DataEnd));
                } else {
                    txn.body = Body::Data(DotStuffer::new());
                    self.events.push_back(Event::BodyWanted(txn.id));
                    self.body_progress = Some(self.now);
                }
            }
            // DATA refused, or a BDAT chunk refused: the accepted
            // recipients share the refusal.
            Expect::Data | Expect::Bdat { last: false } if !txn.failed && !positive => {
                txn.refuse(&keep());
            }
            Expect::Bdat { last: true } | Expect::DataEnd => {
                if !txn.failed {
                    if positive {
                        txn.decide_rest(&keep(), true);
                    } else {
                        txn.refuse(&keep());
                    }
                }
                txn.body = Body::Done;
            }
            _ => {}
        }
        if let Some(took) = learned {
            self.learned_rcpt_max = Some(self.learned_rcpt_max.map_or(took, |n| n.min(took)));
        }
        if let Some((out, expect)) = next {
            return self.send(&out, expect);
        }
        self.maybe_finish();
    }

    /// Ends the active round once it is decided and no reply of its own is
    /// outstanding; then starts the next round of the envelope, or ends it.
    fn maybe_finish(&mut self) {
        let Some(txn) = &mut self.active else {
            return self.advance();
        };
        let decided = txn.failed || matches!(txn.body, Body::Done);
        if !decided || !self.expect.is_empty() {
            return;
        }
        // The end of a body ends the transaction on the server whatever it
        // answered; a failed transaction is reset in any case (RFC 3030
        // leaves the state after a refused chunk to the server).
        let open = txn.open && (txn.failed || !matches!(txn.body, Body::Done));
        let another = txn.next_round();
        if !another {
            if let Some(mut txn) = self.active.take() {
                // Anything still undecided lost out when the round failed.
                let fallback = internal(451, (4, 3, 0), "transaction failed");
                txn.decide_rest(&fallback, false);
                self.finish(txn);
            }
        }
        if open {
            let mut out = Vec::new();
            Command::Rset.write_to(&mut out);
            self.send(&out, Expect::Rset);
            return;
        }
        self.resume();
    }

    /// The session is free again: the next round of the active envelope,
    /// or the next envelope.
    fn resume(&mut self) {
        match &self.active {
            Some(txn) if txn.batch.is_empty() => self.begin_round(),
            Some(_) => {}
            None => self.advance(),
        }
    }

    fn finish(&mut self, txn: Transaction) {
        let outcomes = txn
            .outcomes
            .into_iter()
            .enumerate()
            .map(|(recipient, outcome)| {
                let (delivery, reply) = outcome.unwrap_or_else(|| {
                    (Delivery::Transient, internal(451, (4, 3, 0), "no outcome"))
                });
                RecipientOutcome {
                    recipient,
                    delivery,
                    reply,
                }
            })
            .collect();
        self.events.push_back(Event::TransactionDone {
            id: txn.id,
            outcomes,
        });
    }

    fn done_without_trying(&mut self, id: TransactionId, envelope: &Envelope, reply: &Reply) {
        let outcomes = (0..envelope.recipients.len())
            .map(|recipient| RecipientOutcome {
                recipient,
                delivery: class(reply.code()),
                reply: reply.clone(),
            })
            .collect();
        self.events
            .push_back(Event::TransactionDone { id, outcomes });
    }

    // ---- connection set-up -----------------------------------------------

    fn send_ehlo(&mut self) {
        let mut out = Vec::new();
        Command::Ehlo(self.config.helo_name.clone()).write_to(&mut out);
        self.send(&out, Expect::Ehlo);
    }

    fn ehlo_done(&mut self, caps: Capabilities) {
        self.caps = caps.clone();
        self.events.push_back(Event::Capabilities(caps));
        if self.tls.is_some() || !matches!(self.phase, Phase::Setup) {
            self.phase = Phase::Ready;
            return self.advance();
        }
        let mode = self.effective_mode();
        if mode == TlsMode::No {
            self.phase = Phase::Ready;
            return self.advance();
        }
        if self.kind == ConnectionKind::PlaintextFallback {
            // The fallback connection. Only `ifavailable` with fallback may
            // ask for one; anything else is judged as a failed attempt, so
            // `required` still never sends MAIL in plaintext.
            if mode == TlsMode::IfAvailable && self.config.tls_fallback {
                self.phase = Phase::Ready;
                return self.advance();
            }
            return self.apply_tls_decision(TlsOutcome::HandshakeFailed(
                HandshakeFailure::FallbackNotAllowed,
            ));
        }
        if self.caps.starttls && self.config.tls.is_some() {
            let mut out = Vec::new();
            Command::StartTls.write_to(&mut out);
            self.starttls_sent = true;
            return self.send(&out, Expect::StartTls);
        }
        let outcome = if self.caps.starttls {
            TlsOutcome::HandshakeFailed(HandshakeFailure::NoEngine)
        } else {
            TlsOutcome::NotOffered
        };
        self.apply_tls_decision(outcome);
    }

    /// `ifavailable` without a TLS engine cannot try, so it is `no`.
    fn effective_mode(&self) -> TlsMode {
        match (self.config.tls_mode, &self.config.tls) {
            (TlsMode::IfAvailable, None) => TlsMode::No,
            (mode, _) => mode,
        }
    }

    fn starttls_reply(&mut self, reply: ReplyRef<'_>, more_input: bool) {
        if reply.code() != 220 {
            return self.apply_tls_decision(TlsOutcome::Refused(reply.into_owned()));
        }
        if more_input {
            // Bytes after the 220 came in plaintext and could be taken for
            // replies over TLS: abort this attempt.
            self.discard_input = true;
            return self.apply_tls_decision(TlsOutcome::HandshakeFailed(
                HandshakeFailure::DataAfterGoAhead,
            ));
        }
        let session = match self
            .config
            .tls
            .as_ref()
            .map(|tls| tls.new_session(&self.server_name))
        {
            Some(Ok(session)) => session,
            Some(Err(error)) => {
                let failure = HandshakeFailure::Engine(error);
                return self.apply_tls_decision(TlsOutcome::HandshakeFailed(failure));
            }
            None => {
                return self
                    .apply_tls_decision(TlsOutcome::HandshakeFailed(HandshakeFailure::NoEngine))
            }
        };
        self.tls = Some(Tls {
            session,
            established: false,
        });
        self.phase = Phase::Handshake {
            deadline: deadline(self.now, self.config.timeouts.tls_handshake),
        };
    }

    fn handle_ciphertext(&mut self, data: &[u8]) -> Result<(), TlsError> {
        let Some(tls) = &mut self.tls else {
            return Ok(());
        };
        let processed = tls.session.handle_ciphertext(data);
        let mut plain = Vec::new();
        let read = tls.session.read_plaintext(&mut plain);
        if let Err(error) = processed.and(read) {
            // Replies decrypted before the failure still count: a 250 to
            // the final dot must not become a retry (a duplicate).
            self.inbuf.extend_from_slice(&plain);
            self.read_replies();
            return Err(error);
        }
        let newly_established = !tls.established && !tls.session.is_handshaking();
        if newly_established {
            tls.established = true;
        }
        let peer_closed = tls.session.peer_closed();
        if newly_established {
            self.tls_established();
        }
        self.inbuf.extend_from_slice(&plain);
        if peer_closed {
            self.read_replies();
            self.handle_eof(self.now);
        }
        Ok(())
    }

    fn tls_established(&mut self) {
        let info = self.tls.as_ref().and_then(|tls| tls.session.info());
        self.events.push_back(Event::TlsDecision {
            outcome: TlsOutcome::Established,
            action: TlsAction::ProceedTls,
        });
        if let Some(info) = info {
            self.events.push_back(Event::TlsEstablished(info));
        }
        // RFC 3207 §4.2: forget everything learnt in plaintext.
        self.caps = Capabilities::default();
        self.learned_rcpt_max = None;
        self.inbuf.clear();
        self.parser = reply_parser(&self.config);
        self.phase = Phase::Setup;
        self.waiting_since = self.now;
        self.send_ehlo();
    }

    /// A TLS error: during the handshake it is a failed attempt, for the
    /// policy; afterwards the connection is simply lost.
    fn tls_failed(&mut self, error: TlsError) {
        if let Phase::Handshake { .. } = self.phase {
            let outcome = match error {
                TlsError::Certificate(reason) => TlsOutcome::CertificateRejected(reason),
                other => TlsOutcome::HandshakeFailed(HandshakeFailure::Engine(other)),
            };
            return self.apply_tls_decision(outcome);
        }
        let reply = internal(421, (4, 4, 2), &format!("TLS failed: {error}"));
        self.close(CloseReason::Tls(error), Some(&reply));
    }

    fn apply_tls_decision(&mut self, outcome: TlsOutcome) {
        let verify = self
            .config
            .tls
            .as_ref()
            .map_or(TlsVerify::No, |tls| tls.verify());
        let action = tls_policy::decide(
            self.effective_mode(),
            self.config.tls_fallback,
            verify,
            &outcome,
        );
        // QUIT politely only while the connection is plain SMTP: STARTTLS
        // never sent, or refused. After a 220 the server expects a
        // handshake, and RFC 3207 §4.1 says to just drop the connection.
        let polite = !self.starttls_sent || matches!(outcome, TlsOutcome::Refused(_));
        self.events.push_back(Event::TlsDecision {
            outcome,
            action: action.clone(),
        });
        let (reason, reply) = match action {
            TlsAction::ProceedTls => return,
            TlsAction::ContinuePlaintext => {
                self.phase = Phase::Ready;
                return self.advance();
            }
            TlsAction::ReconnectPlaintext => (
                CloseReason::ReconnectPlaintext,
                internal(451, (4, 7, 5), "TLS negotiation failed; retry in plaintext"),
            ),
            TlsAction::Defer(reply) => (CloseReason::TlsDeferred, reply),
        };
        self.close(reason, Some(&reply));
        if polite {
            Command::Quit.write_to(&mut self.out_wire);
        }
    }

    // ---- transactions -----------------------------------------------------

    fn pipelining(&self) -> bool {
        self.config.pipelining && self.caps.pipelining
    }

    /// Starts the next transaction, or QUIT, when the session is free.
    fn advance(&mut self) {
        if !matches!(self.phase, Phase::Ready) || self.active.is_some() || !self.expect.is_empty() {
            return;
        }
        while let Some((id, envelope)) = self.queue.pop_front() {
            if let Some(reply) = self.unsendable(&envelope) {
                self.done_without_trying(id, &envelope, &reply);
                continue;
            }
            return self.start(id, envelope);
        }
        if self.quit_requested {
            let mut out = Vec::new();
            Command::Quit.write_to(&mut out);
            self.send(&out, Expect::Quit);
        }
    }

    /// Why this server cannot take the message at all, if it cannot.
    fn unsendable(&self, envelope: &Envelope) -> Option<Reply> {
        let params = &envelope.params;
        if envelope.recipients.is_empty() {
            return Some(internal(554, (5, 5, 1), "no recipients"));
        }
        if let (Some(size), Some(limit)) = (params.size, self.caps.size) {
            if limit > 0 && size > limit {
                let text = format!("message size {size} exceeds the server's limit of {limit}");
                return Some(internal(552, (5, 3, 4), &text));
            }
        }
        if params.smtputf8 && !self.caps.smtputf8 {
            return Some(internal(
                553,
                (5, 6, 7),
                "the server does not support SMTPUTF8",
            ));
        }
        if params.body == Some(BodyType::BinaryMime)
            && !(self.caps.binary_mime && self.caps.chunking && self.config.chunking)
        {
            return Some(internal(
                554,
                (5, 6, 3),
                "the server does not support BINARYMIME",
            ));
        }
        None
    }

    fn start(&mut self, id: TransactionId, envelope: Envelope) {
        let recipients = envelope.recipients.len();
        self.active = Some(Transaction {
            id,
            outcomes: vec![None; recipients],
            unsent: (0..recipients).collect(),
            batch: Vec::new(),
            over_limit: Vec::new(),
            envelope,
            open: false,
            accepted: Vec::new(),
            body: Body::Pending,
            failed: false,
            refusal: None,
            chunking: self.config.chunking && self.caps.chunking,
        });
        self.begin_round();
    }

    /// Recipients one transaction may carry: ours, the server's announced
    /// and learnt limits, whichever is lowest.
    fn recipients_per_transaction(&self) -> usize {
        [
            Some(self.config.max_recipients_per_transaction),
            self.caps.rcpt_max,
            self.learned_rcpt_max,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(1)
        .max(1)
    }

    /// Sends MAIL for the next batch of the active envelope's recipients
    /// (and, pipelined, its RCPTs and DATA).
    fn begin_round(&mut self) {
        let limit = self.recipients_per_transaction();
        let pipelining = self.pipelining();
        let caps = &self.caps;
        let Some(txn) = self.active.as_mut() else {
            return;
        };
        let take = limit.min(txn.unsent.len());
        txn.batch = txn.unsent.drain(..take).collect();
        let envelope = &txn.envelope;
        let mut params = MailParams {
            size: envelope.params.size.filter(|_| caps.size.is_some()),
            body: envelope.params.body.filter(|body| match body {
                BodyType::SevenBit | BodyType::EightBitMime => caps.eight_bit_mime,
                BodyType::BinaryMime => true,
            }),
            smtputf8: envelope.params.smtputf8,
            ..MailParams::default()
        };
        if caps.dsn {
            params.ret = envelope.params.ret;
            params.envid = envelope.params.envid.clone();
        }
        let mut out = Vec::new();
        Command::Mail {
            reverse_path: envelope.reverse_path.clone(),
            params,
        }
        .write_to(&mut out);
        let mut expects = vec![Expect::Mail];
        if pipelining {
            // RFC 2920: MAIL, every RCPT and DATA in one group.
            for position in 0..txn.batch.len() {
                out.extend_from_slice(&rcpt_command(txn, position, caps.dsn));
                expects.push(Expect::Rcpt(position));
            }
            if !txn.chunking {
                Command::Data.write_to(&mut out);
                expects.push(Expect::Data);
            }
        }
        if self.expect.is_empty() {
            self.waiting_since = self.now;
        }
        self.queue_bytes(&out);
        self.expect.extend(expects);
    }

    // ---- plumbing -----------------------------------------------------------

    /// Queues a command and the reply it awaits.
    fn send(&mut self, bytes: &[u8], expect: Expect) {
        if self.expect.is_empty() {
            self.waiting_since = self.now;
        }
        self.queue_bytes(bytes);
        self.expect.push_back(expect);
    }

    fn queue_bytes(&mut self, bytes: &[u8]) {
        if self.tls.is_some() {
            self.out_plain.extend_from_slice(bytes);
        } else {
            self.out_wire.extend_from_slice(bytes);
        }
        if self.out_since.is_none() && !bytes.is_empty() {
            self.out_since = Some(self.now);
        }
    }

    /// Ends the session; every message not yet done gets `reply` (a
    /// transient one unless the server said otherwise).
    fn close(&mut self, reason: CloseReason, reply: Option<&Reply>) {
        if self.is_closed() {
            return;
        }
        let reply = reply
            .map(|reply| as_transient(&bounded(reply.clone(), self.config.max_outcome_text)))
            .unwrap_or_else(|| internal(421, (4, 4, 2), "connection closed"));
        if let Some(mut txn) = self.active.take() {
            txn.decide_rest(&reply, false);
            self.finish(txn);
        }
        while let Some((id, envelope)) = self.queue.pop_front() {
            self.done_without_trying(id, &envelope, &reply);
        }
        self.phase = Phase::Closed;
        self.expect.clear();
        self.body_progress = None;
        if reason != CloseReason::Quit {
            // Whatever is still unsent must stay so: a queued final dot or
            // BDAT LAST would deliver a message already reported transient.
            self.out_wire.clear();
            self.out_plain.clear();
        }
        if let Some(tls) = &mut self.tls {
            if tls.established {
                if !self.out_plain.is_empty() {
                    let _ = tls.session.write_plaintext(&self.out_plain);
                    self.out_plain.clear();
                }
                tls.session.close();
            }
        }
        self.events.push_back(Event::Closed(reason));
    }
}

/// `reply` with its text cut to `max` octets (counting a line end per
/// line), as every recipient's outcome keeps a copy of it.
fn bounded(reply: Reply, max: usize) -> Reply {
    let total: usize = reply.lines().iter().map(|line| line.len() + 2).sum();
    if total <= max {
        return reply;
    }
    let mut lines = Vec::new();
    let mut room = max;
    for line in reply.lines() {
        let fits = line
            .char_indices()
            .map(|(at, c)| at + c.len_utf8())
            .take_while(|&end| end + 2 <= room)
            .last()
            .unwrap_or(0);
        if fits == 0 && !line.is_empty() {
            break;
        }
        lines.push(line.get(..fits).unwrap_or_default().to_owned());
        room = room.saturating_sub(fits + 2);
    }
    Reply::multiline(reply.code(), reply.enhanced(), lines)
}

fn reply_parser(config: &ClientConfig) -> ReplyParser {
    ReplyParser::with_limits(config.max_reply_line, config.max_reply_lines)
}

/// Connection-level failures defer: a refusing or vanishing server is
/// usually a passing problem, and another MX may take the message.
fn as_transient(reply: &Reply) -> Reply {
    if reply.is_transient() {
        reply.clone()
    } else {
        let text = format!("server said: {reply}");
        internal(451, (4, 4, 0), &text)
    }
}

/// RCPT for the recipient at `position` in the current batch; DSN
/// parameters only to a server that offers DSN.
fn rcpt_command(txn: &Transaction, position: usize, dsn: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let index = txn.batch.get(position).copied();
    if let Some(recipient) = index.and_then(|index| txn.envelope.recipients.get(index)) {
        Command::Rcpt {
            forward_path: recipient.path.clone(),
            params: if dsn {
                recipient.params.clone()
            } else {
                RcptParams::default()
            },
        }
        .write_to(&mut out);
    }
    out
}

#[cfg(test)]
mod tests;
