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
//! STARTTLS is decided after the first EHLO by [`policy::decide`]: the
//! session may go on over TLS, go on in plaintext (only when STARTTLS was
//! never sent), close asking for a fresh plaintext connection
//! ([`CloseReason::ReconnectPlaintext`]; the driver then makes one with
//! [`ClientSession::new`] and `plaintext_only`), or defer every message.
//! After TLS starts, everything learnt before is forgotten and EHLO is sent
//! again (RFC 3207 §4.2); bytes that arrive after the server's `220` and
//! before the handshake abort the attempt (response injection,
//! CVE-2021-38371 class); once TLS ends, nothing more is sent.

mod config;
pub mod policy;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

pub use config::{ClientConfig, ClientTimeouts, Envelope, Recipient};
use policy::{TlsAction, TlsMode, TlsOutcome};

use crate::tls::{TlsError, TlsInfo, TlsSession, TlsVerify};
use crate::wire::command::{BodyType, Command, MailParams, RcptParams};
use crate::wire::dot::DotStuffer;
use crate::wire::ehlo::Capabilities;
use crate::wire::reply::{EnhancedCode, Reply, ReplyParser, ReplyStatus};

/// Server input held while the application writes a body.
const MAX_EARLY_INPUT: usize = 64 * 1024;

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
    /// then `finish_body`.
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
    /// The server broke the protocol (malformed or unexpected reply).
    Protocol(String),
    /// TLS failed after it was established.
    Tls(TlsError),
    /// The greeting or EHLO/HELO was refused.
    Refused,
    /// The application called [`ClientSession::abort`].
    Aborted,
}

/// Why a body call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Whether `reply` can be the answer to this.
    fn fits(self, reply: &Reply) -> bool {
        let code = reply.code();
        match self {
            Expect::Data => code == 354 || reply.is_transient() || reply.is_permanent(),
            // Refusals are handled by whoever awaits them.
            Expect::Greeting | Expect::Ehlo | Expect::Helo | Expect::StartTls | Expect::Quit => {
                true
            }
            Expect::Mail
            | Expect::Rcpt(_)
            | Expect::Bdat { .. }
            | Expect::DataEnd
            | Expect::Rset => !reply.is_intermediate(),
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

#[derive(Debug)]
struct Transaction {
    id: TransactionId,
    envelope: Envelope,
    outcomes: Vec<Option<(Delivery, Reply)>>,
    /// MAIL was accepted: a transaction is open on the server.
    open: bool,
    /// Recipients the server accepted with RCPT.
    accepted: Vec<usize>,
    body: Body,
    /// A reply decided the transaction; remaining replies are consumed.
    failed: bool,
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
        let delivery = class(reply);
        let indices: Vec<usize> = if accepted_only {
            self.accepted.clone()
        } else {
            (0..self.outcomes.len()).collect()
        };
        for index in indices {
            self.decide(index, delivery, reply);
        }
    }
}

/// `now + timeout`, or no deadline if that overflows.
fn deadline(now: Instant, timeout: std::time::Duration) -> Option<Instant> {
    now.checked_add(timeout)
}

fn class(reply: &Reply) -> Delivery {
    if reply.is_positive() {
        Delivery::Delivered
    } else if reply.is_permanent() {
        Delivery::Permanent
    } else {
        Delivery::Transient
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
    plaintext_only: bool,
    now: Instant,
    /// When the reply at the front of `expect` started to be awaited.
    waiting_since: Instant,
    phase: Phase,
    parser: ReplyParser,
    inbuf: Vec<u8>,
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
    /// While a body is being written: when it last moved. The server not
    /// taking it (the driver cannot write) stops it moving.
    body_progress: Option<Instant>,
    events: VecDeque<Event>,
}

impl ClientSession {
    /// A session for a connection just made to `server_name` (the MX host
    /// name: SNI and, with `TLS_Verify = host`, the name checked). With
    /// `plaintext_only`, STARTTLS is not attempted: this is the fresh
    /// connection after [`CloseReason::ReconnectPlaintext`].
    pub fn new(
        config: Arc<ClientConfig>,
        server_name: &str,
        plaintext_only: bool,
        now: Instant,
    ) -> Self {
        Self {
            config,
            server_name: server_name.to_owned(),
            plaintext_only,
            now,
            waiting_since: now,
            phase: Phase::Setup,
            parser: ReplyParser::new(),
            inbuf: Vec::new(),
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

    /// Whether the body being streamed may take more octets now.
    pub fn wants_body(&self) -> bool {
        let streaming = self.streaming_body();
        // Without PIPELINING each BDAT waits for its reply (RFC 3030 §4.2).
        let lock_step = self.active.as_ref().is_some_and(|t| t.chunking)
            && !self.pipelining()
            && !self.expect.is_empty();
        streaming
            && !lock_step
            && self.out_plain.len() + self.out_wire.len() < self.config.max_queued_body
    }

    /// The next piece of the body of the transaction that asked for it.
    pub fn send_body(&mut self, now: Instant, chunk: &[u8]) -> Result<(), BodyError> {
        self.now = now;
        let active = self.active.as_mut().ok_or(BodyError::NotWanted)?;
        if active.failed {
            return Err(BodyError::TransactionEnded);
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
        let active = self.active.as_mut().ok_or(BodyError::NotWanted)?;
        if active.failed {
            return Err(BodyError::TransactionEnded);
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
                "connection closed during STARTTLS".into(),
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
            if let Ok(ReplyStatus::Complete { reply, .. }) = self.parser.parse(&self.inbuf) {
                let refusal = reply.is_transient() || reply.is_permanent();
                if let Some(txn) = self.active.as_mut().filter(|_| refusal) {
                    txn.decide_rest(&reply, true);
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
        let waiting_for = match self.expect.front() {
            Some(expect) if self.out_since.is_none() => format!("{expect:?}").to_lowercase(),
            _ => "the server to take the body".to_owned(),
        };
        let reply = internal(
            421,
            (4, 4, 2),
            &format!("timeout waiting for {waiting_for}"),
        );
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
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next, if ever.
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
        while !self.is_closed() && !matches!(self.phase, Phase::Handshake { .. }) {
            if self.expect.is_empty() && self.streaming_body() {
                // Nothing is due until the application ends the body; what
                // the server sent early waits, so that the result does not
                // depend on how its bytes were split (bounded, though).
                if self.inbuf.len() > MAX_EARLY_INPUT {
                    let why = "server sent data while the body was being written".to_owned();
                    let reply = internal(421, (4, 5, 0), &why);
                    self.close(CloseReason::Protocol(why), Some(&reply));
                }
                return;
            }
            match self.parser.parse(&self.inbuf) {
                Ok(ReplyStatus::Complete { reply, consumed }) => {
                    self.inbuf.drain(..consumed.min(self.inbuf.len()));
                    self.on_reply(reply);
                }
                Ok(ReplyStatus::Partial { consumed }) => {
                    self.inbuf.drain(..consumed.min(self.inbuf.len()));
                    return;
                }
                Err(error) => {
                    let reply =
                        internal(421, (4, 5, 0), &format!("bad reply from server: {error}"));
                    return self.close(CloseReason::Protocol(error.to_string()), Some(&reply));
                }
            }
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        self.waiting_since = self.now;
        let Some(expect) = self.expect.pop_front() else {
            // RFC 5321 §3.8: a server may say 421 at any time, asked or not.
            if reply.code() == 421 {
                return self.close(CloseReason::ServiceClosing, Some(&reply));
            }
            let why = format!("unexpected reply: {reply}");
            let ours = internal(421, (4, 5, 0), &why);
            return self.close(CloseReason::Protocol(why), Some(&ours));
        };
        if reply.code() == 421 && expect == Expect::StartTls {
            return self.apply_tls_decision(TlsOutcome::Refused(reply));
        }
        if reply.code() == 421 && expect != Expect::Quit {
            return self.close(CloseReason::ServiceClosing, Some(&reply));
        }
        if !expect.fits(&reply) {
            // Replies are matched to commands by order alone, so a reply of
            // the wrong kind means the two sides no longer agree on which
            // reply is which (a server answering a pipelined group with too
            // many or too few replies): nothing after it can be trusted.
            let why = format!("{reply} does not answer {expect:?}");
            let ours = internal(421, (4, 5, 0), &why);
            return self.close(CloseReason::Protocol(why), Some(&ours));
        }
        match expect {
            Expect::Greeting if reply.code() == 220 => self.send_ehlo(),
            Expect::Greeting => self.close(CloseReason::Refused, Some(&as_transient(&reply))),
            Expect::Ehlo if reply.is_positive() => {
                self.ehlo_done(Capabilities::from_ehlo_reply(&reply))
            }
            // RFC 5321 §4.1.4: an old server may only know HELO.
            Expect::Ehlo if reply.is_permanent() => {
                let mut out = Vec::new();
                Command::Helo(self.config.helo_name.clone()).write_to(&mut out);
                self.send(&out, Expect::Helo);
            }
            Expect::Helo if reply.is_positive() => self.ehlo_done(Capabilities::default()),
            Expect::Ehlo | Expect::Helo => {
                self.close(CloseReason::Refused, Some(&as_transient(&reply)));
            }
            Expect::StartTls => self.starttls_reply(reply),
            Expect::Quit => self.close(CloseReason::Quit, None),
            Expect::Rset => self.advance(),
            Expect::Mail
            | Expect::Rcpt(_)
            | Expect::Data
            | Expect::Bdat { .. }
            | Expect::DataEnd => {
                self.transaction_reply(expect, &reply);
            }
        }
    }

    fn transaction_reply(&mut self, expect: Expect, reply: &Reply) {
        let pipelining = self.pipelining();
        let dsn = self.caps.dsn;
        let Some(txn) = self.active.as_mut() else {
            return self.advance();
        };
        let mut next: Option<Vec<u8>> = None;
        match expect {
            Expect::Mail if reply.is_positive() => {
                txn.open = true;
                if !pipelining {
                    next = Some(rcpt_command(txn, 0, dsn));
                }
            }
            Expect::Mail => {
                txn.decide_rest(reply, false);
                txn.failed = true;
            }
            Expect::Rcpt(index) => {
                if !txn.failed {
                    if reply.is_positive() {
                        txn.accepted.push(index);
                    } else {
                        txn.decide(index, class(reply), reply);
                    }
                }
                let last = index + 1 >= txn.envelope.recipients.len();
                if !pipelining && !last && !txn.failed {
                    next = Some(rcpt_command(txn, index + 1, dsn));
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
                        self.send(&out, Expect::Data);
                        return;
                    }
                }
            }
            Expect::Data if reply.code() == 354 => {
                if txn.failed || txn.accepted.is_empty() {
                    // RFC 2920 §3.1: a server that said 354 anyway gets an
                    // empty body, which it must not deliver to anyone.
                    txn.failed = true;
                    txn.body = Body::Done;
                    self.send(b".\r\n", Expect::DataEnd);
                    return;
                }
                txn.body = Body::Data(DotStuffer::new());
                self.events.push_back(Event::BodyWanted(txn.id));
                self.body_progress = Some(self.now);
            }
            // DATA refused, or a BDAT chunk refused: the accepted
            // recipients share the refusal.
            Expect::Data | Expect::Bdat { last: false } if !txn.failed && !reply.is_positive() => {
                txn.decide_rest(reply, true);
                txn.failed = true;
            }
            Expect::Bdat { last: true } | Expect::DataEnd => {
                if !txn.failed {
                    txn.decide_rest(reply, true);
                }
                txn.body = Body::Done;
            }
            _ => {}
        }
        if let Some(out) = next {
            let expect = match expect {
                Expect::Mail => Expect::Rcpt(0),
                Expect::Rcpt(index) => Expect::Rcpt(index + 1),
                other => other,
            };
            self.send(&out, expect);
            return;
        }
        self.maybe_finish();
    }

    /// Ends the active transaction once it is decided and no reply of its
    /// own is outstanding.
    fn maybe_finish(&mut self) {
        let Some(txn) = &self.active else {
            return self.advance();
        };
        let decided = txn.failed
            || matches!(txn.body, Body::Done) && txn.outcomes.iter().all(Option::is_some);
        if !decided || !self.expect.is_empty() {
            return;
        }
        let Some(mut txn) = self.active.take() else {
            return;
        };
        // Anything still undecided lost out when the transaction failed.
        let fallback = internal(451, (4, 3, 0), "transaction failed");
        txn.decide_rest(&fallback, false);
        // The end of a body ends the transaction on the server whatever it
        // answered; a failed transaction is reset in any case (RFC 3030
        // leaves the state after a refused chunk to the server).
        let open = txn.open && (txn.failed || !matches!(txn.body, Body::Done));
        self.finish(txn);
        if open {
            let mut out = Vec::new();
            Command::Rset.write_to(&mut out);
            self.send(&out, Expect::Rset);
            return;
        }
        self.advance();
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
                delivery: class(reply),
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
        if self.plaintext_only {
            // The fallback connection. Only `ifavailable` with fallback may
            // ask for one; anything else is judged as a failed attempt, so
            // `required` still never sends MAIL in plaintext.
            if mode == TlsMode::IfAvailable && self.config.tls_fallback {
                self.phase = Phase::Ready;
                return self.advance();
            }
            return self.apply_tls_decision(TlsOutcome::HandshakeFailed(
                "plaintext-only connection".into(),
            ));
        }
        if self.caps.starttls && self.config.tls.is_some() {
            let mut out = Vec::new();
            Command::StartTls.write_to(&mut out);
            self.starttls_sent = true;
            return self.send(&out, Expect::StartTls);
        }
        let outcome = if self.caps.starttls {
            TlsOutcome::HandshakeFailed("no TLS engine configured".into())
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

    fn starttls_reply(&mut self, reply: Reply) {
        if reply.code() != 220 {
            return self.apply_tls_decision(TlsOutcome::Refused(reply));
        }
        if !self.inbuf.is_empty() {
            // Bytes after the 220 came in plaintext and could be taken for
            // replies over TLS: abort this attempt.
            self.inbuf.clear();
            return self.apply_tls_decision(TlsOutcome::HandshakeFailed(
                "response injection: data after the 220 to STARTTLS".into(),
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
                return self.apply_tls_decision(TlsOutcome::HandshakeFailed(error.to_string()))
            }
            None => {
                return self.apply_tls_decision(TlsOutcome::HandshakeFailed(
                    "no TLS engine configured".into(),
                ))
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
        self.inbuf.clear();
        self.parser = ReplyParser::new();
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
                other => TlsOutcome::HandshakeFailed(other.to_string()),
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
        let action = policy::decide(
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
        let caps = &self.caps;
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
        let recipients = envelope.recipients.len();
        let chunking = self.config.chunking && caps.chunking;
        let txn = Transaction {
            id,
            outcomes: vec![None; recipients],
            envelope,
            open: false,
            accepted: Vec::new(),
            body: Body::Pending,
            failed: false,
            chunking,
        };
        let mut expects = vec![Expect::Mail];
        if self.pipelining() {
            // RFC 2920: MAIL, every RCPT and DATA in one group.
            for index in 0..recipients {
                out.extend_from_slice(&rcpt_command(&txn, index, caps.dsn));
                expects.push(Expect::Rcpt(index));
            }
            if !chunking {
                Command::Data.write_to(&mut out);
                expects.push(Expect::Data);
            }
        }
        self.active = Some(txn);
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
            .map(as_transient)
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

/// RCPT for one recipient; DSN parameters only to a server that offers DSN.
fn rcpt_command(txn: &Transaction, index: usize, dsn: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(recipient) = txn.envelope.recipients.get(index) {
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
