//! The server-session driver of the `server_session` and `server_starttls`
//! targets: a driver loop over the session's inputs, decisions and polls,
//! steered by the fuzz input, that checks after every step what the
//! session promises.
//!
//! What it asserts, besides "no panic":
//! - bounded buffers: each `poll_transmit` yields at most [`out_bound`]
//!   octets, and the live heap never grows past [`heap_budget`], which is
//!   derived from the configured [`Limits`];
//! - no stall: after a full drain with no decision pending, an open session
//!   wants input;
//! - events make sense: nothing after `Closed`; body chunks within
//!   `body_chunk`, a body within `max_message_size`, and `MessageEnd` gives
//!   the size of the body handed on; a decision event has its decision
//!   pending; at most one `TlsEstablished`; renegotiation attempts counted
//!   1, 2, … and never past the cap plus the one that closes;
//! - decisions answer only what is pending: `accept` with nothing pending,
//!   and codes that cannot answer, are refused without effect.

use std::sync::Arc;
use std::time::Instant;

use petrel_core::server::{
    DecisionError, DecisionKind, Event, Limits, ServerConfig, ServerSession,
};
use petrel_core::tls::TlsEngine;
use petrel_core::wire::reply::{EnhancedCode, Reply};

use crate::heap::HeapBound;
use crate::ops::Ops;
use crate::support::{OpensslClient, RustlsClient, TlsClient};

/// What the driver reads from its socket at once.
const READ_SIZE: usize = 4096;
/// What the driver's "socket" holds for a session that wants no input
/// before the peer is blocked (bytes beyond it are not sent).
const SOCKET_BUFFER: usize = 1 << 20;

/// Limits small enough that a short fuzz input reaches every one of them.
pub fn small_limits() -> Limits {
    Limits {
        max_message_size: 4096,
        max_recipients: 3,
        max_pipelined_replies: 4,
        max_buffered_input: 2048,
        body_chunk: 256,
        max_queued_body: 1024,
        max_errors: 20,
        ..Limits::default()
    }
}

/// The most one `poll_transmit` may yield: every reply the session may
/// queue before it stops reading (the pipelining cap, plus a decision's
/// reply, a closing 421 and the greeting), each under 1 KiB (the EHLO reply
/// is the longest), and with TLS a handshake flight.
pub fn out_bound(limits: &Limits) -> usize {
    (limits.max_pipelined_replies + 4) * 1024 + 8 * 1024
}

/// What the session may add to the heap: its input buffer (a read beyond
/// `max_buffered_input`), queued body events, queued replies, and fixed
/// state; with TLS, the engine and the harness's TLS client (rustls state
/// and record buffers, up to a 16 KiB record each way, are counted; libssl's
/// allocations are not).
pub fn heap_budget(limits: &Limits, tls: bool) -> usize {
    let buffers = 4 * (limits.max_buffered_input + READ_SIZE)
        + 2 * (limits.max_queued_body + limits.body_chunk)
        + 2 * out_bound(limits);
    buffers + 64 * 1024 + if tls { 512 * 1024 } else { 0 }
}

/// One entry of what the session did, for chunking-invariance checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// An event other than a body chunk.
    Event(Event),
    /// Consecutive body chunks, joined.
    Body(Vec<u8>),
}

/// The driver of one server session.
pub struct Harness {
    pub session: ServerSession,
    limits: Limits,
    now: Instant,
    /// The TLS client, once started: plaintext input then goes through it.
    peer: Option<Box<dyn TlsClient>>,
    /// Octets for the session it did not want yet.
    socket: Vec<u8>,
    /// How decisions are answered: see [`Harness::decide`].
    policy: u8,
    closed: bool,
    tls_established: bool,
    renegotiations: u32,
    max_renegotiations: Option<u32>,
    body_size: u64,
    /// Decisions answered before their event was polled (an application
    /// may answer `pending_decision` without polling), oldest first.
    answered_early: std::collections::VecDeque<DecisionKind>,
    /// The decision whose event was polled and is not answered yet.
    polled_pending: Option<DecisionKind>,
    /// The driver once ignored `wants_input` (allowed to grow to the hard
    /// cap).
    forced: bool,
    /// Plaintext went through the TLS client once its handshake was done.
    sent_over_tls: bool,
    /// The TLS client failed or sent close_notify: it writes no more.
    peer_done: bool,
    heap: HeapBound,
    /// Everything the session sent and every event, when recording.
    pub wire: Option<Vec<u8>>,
    pub events: Option<Vec<Entry>>,
    /// The plaintext pieces fed, in order, when recording.
    pub pieces: Vec<Vec<u8>>,
    /// A bound on the heap the recordings hold (kept as they grow: summing
    /// them after every drain would make long inputs quadratic).
    recorded: usize,
}

impl Harness {
    /// A session with `config`, greeted and drained. `record` keeps a
    /// transcript of output, events and input pieces.
    pub fn new(config: ServerConfig, record: bool) -> Self {
        let limits = config.limits.clone();
        let max_renegotiations = config.tls.as_ref().map(|tls| tls.max_renegotiations());
        let heap = HeapBound::new(heap_budget(&limits, config.tls.is_some()));
        let now = Instant::now();
        let mut harness = Harness {
            session: ServerSession::new(Arc::new(config), now),
            limits,
            now,
            peer: None,
            socket: Vec::new(),
            policy: 0,
            closed: false,
            tls_established: false,
            renegotiations: 0,
            max_renegotiations,
            body_size: 0,
            forced: false,
            answered_early: std::collections::VecDeque::new(),
            polled_pending: None,
            sent_over_tls: false,
            peer_done: false,
            heap,
            wire: record.then(Vec::new),
            events: record.then(Vec::new),
            pieces: Vec::new(),
            recorded: 0,
        };
        harness.drain();
        harness
    }

    /// Sets how decisions are answered (see [`Harness::decide`]).
    pub fn set_policy(&mut self, policy: u8) {
        self.policy = policy;
    }

    /// Runs the operations of the fuzz input; `tls` enables the TLS ones.
    pub fn run(&mut self, ops: &mut Ops<'_>, tls: bool) {
        while let Some(op) = ops.next_byte() {
            let drain = op & 0x80 == 0;
            match op & 0x7f {
                0..=39 => {
                    let piece = ops.piece();
                    self.input(piece);
                }
                40..=49 => {
                    let line = COMMANDS[usize::from(ops.byte()) % COMMANDS.len()];
                    for _ in 0..ops.repeat() {
                        self.input(line);
                        self.drain();
                    }
                }
                50..=54 => {
                    let reps = ops.repeat();
                    let piece = ops.piece();
                    for _ in 0..reps {
                        self.input(piece);
                        self.drain();
                    }
                }
                55..=59 => {
                    let now = self.now + ops.duration();
                    self.timeout(now);
                }
                60..=62 => {
                    if let Some(at) = self.session.poll_timeout() {
                        self.timeout(at.max(self.now));
                    }
                }
                63..=67 => self.policy = ops.byte(),
                68..=71 => {
                    let how = ops.byte();
                    self.decide(how);
                }
                72 => self.session.handle_eof(self.now),
                73 => self.session.shutdown(self.now),
                74 => {
                    // A driver that ignores backpressure: the session must
                    // still bound what it holds (it closes past a hard cap).
                    self.forced = true;
                    let reps = ops.repeat();
                    let piece = ops.piece();
                    for _ in 0..reps {
                        self.session.handle_input(self.now, piece);
                    }
                }
                // Ciphertext the TLS client did not make: raw octets on the
                // wire, whatever the session expects.
                75..=84 => {
                    let piece = ops.piece();
                    self.push(piece);
                }
                85..=89 if tls => {
                    let how = ops.byte();
                    self.start_tls(how);
                }
                90..=92 if tls => {
                    if let Some(peer) = &mut self.peer {
                        peer.renegotiate();
                    }
                }
                93 if tls => {
                    if let Some(peer) = &mut self.peer {
                        peer.close();
                        self.peer_done = true;
                    }
                }
                _ => {}
            }
            if drain {
                self.drain();
            }
            if crate::heap::tracing() {
                eprintln!("op {op:#04x}: heap +{}", self.heap.grown());
            }
        }
    }

    /// Plaintext from the client: over TLS once the TLS client started.
    pub fn input(&mut self, plaintext: &[u8]) {
        if plaintext.is_empty() {
            return;
        }
        match &mut self.peer {
            // A TLS client sends no application data before its handshake
            // is done (and this one would buffer it without bound).
            Some(peer) if peer.is_handshaking() || self.peer_done => {}
            Some(peer) => {
                peer.write_plaintext(plaintext);
                self.sent_over_tls = true;
                // On the wire at once, as plaintext would be.
                let ciphertext = peer.poll_ciphertext();
                self.push(&ciphertext);
            }
            None => {
                if self.wire.is_some() {
                    self.pieces.push(plaintext.to_vec());
                    self.recorded += 2 * (plaintext.len() + std::mem::size_of::<Vec<u8>>());
                }
                self.push(plaintext);
            }
        }
    }

    /// Octets on the wire towards the session, read as the session wants
    /// them (a socket's receive buffer holds the rest).
    fn push(&mut self, octets: &[u8]) {
        if self.socket.len() < SOCKET_BUFFER {
            self.socket.extend_from_slice(octets);
        }
        self.read();
    }

    /// Reads from the "socket" while the session wants input.
    fn read(&mut self) -> bool {
        let mut progress = false;
        while !self.socket.is_empty() && self.session.wants_input() {
            let n = self.socket.len().min(READ_SIZE);
            let chunk: Vec<u8> = self.socket.drain(..n).collect();
            self.session.handle_input(self.now, &chunk);
            progress = true;
        }
        if self.session.is_closed() {
            self.socket = Vec::new();
        }
        progress
    }

    fn timeout(&mut self, now: Instant) {
        self.now = now;
        self.session.handle_timeout(now);
    }

    /// Starts the TLS client (as after a `220` to STARTTLS): rustls or
    /// OpenSSL, offering TLS 1.3 and 1.2 or only 1.2.
    fn start_tls(&mut self, how: u8) {
        if self.peer.is_some() {
            return;
        }
        let tls12_only = how & 1 == 1;
        crate::tls::without_system_roots();
        let mut peer: Box<dyn TlsClient> = if how & 2 == 0 {
            Box::new(RustlsClient::new(tls12_only))
        } else {
            Box::new(OpensslClient::new(tls12_only))
        };
        let hello = peer.poll_ciphertext();
        self.peer = Some(peer);
        self.push(&hello);
    }

    /// Answers the pending decision: by `how`, accept (most often), refuse
    /// with 550, 452, 451 or 421, or first try codes that cannot answer (a
    /// 354, an enhanced code of the wrong class), which must be refused
    /// and leave the decision pending. With nothing pending, `accept` must
    /// say so.
    pub fn decide(&mut self, how: u8) {
        let now = self.now;
        if crate::heap::tracing() {
            eprintln!("  decide {how}: {:?}", self.session.pending_decision());
        }
        let Some(kind) = self.session.pending_decision() else {
            assert_eq!(self.session.accept(now), Err(DecisionError::NotPending));
            return;
        };
        if self.polled_pending.take() != Some(kind) {
            self.answered_early.push_back(kind);
        }
        let code = match how % 12 {
            0..=5 => 250,
            6 => 550,
            7 => 452,
            8 => 451,
            9 => 421,
            _ => {
                let bad = [
                    Reply::new(354, None, "fuzz"),
                    Reply::new(250, Some(EnhancedCode::new(5, 0, 0)), "fuzz"),
                ];
                for reply in bad {
                    let code = reply.code();
                    assert_eq!(
                        self.session.respond(now, reply),
                        Err(DecisionError::BadCode(code))
                    );
                    assert_eq!(self.session.pending_decision(), Some(kind));
                }
                250
            }
        };
        let result = if code == 250 {
            self.session.accept(now)
        } else {
            let enhanced = EnhancedCode::new((code / 100) as u8, 1, 0);
            self.session
                .respond(now, Reply::new(code, Some(enhanced), "fuzz"))
        };
        assert_eq!(result, Ok(()));
    }

    /// Drains transmit and events until both are quiet, as a driver does
    /// after every input, feeding the TLS client both ways and answering
    /// decisions by the policy; then checks the bounds.
    pub fn drain(&mut self) {
        let bound = out_bound(&self.limits);
        for _ in 0..100_000 {
            let mut progress = false;
            let mut out = Vec::new();
            let sent = self.session.poll_transmit(&mut out);
            assert_eq!(sent, out.len());
            assert!(sent <= bound, "poll_transmit yielded {sent} octets");
            if sent > 0 {
                progress = true;
                if crate::heap::tracing() {
                    eprintln!("  sent {:?}", String::from_utf8_lossy(&out));
                }
                if let Some(wire) = &mut self.wire {
                    wire.extend_from_slice(&out);
                }
                if let Some(peer) = &mut self.peer {
                    // A TLS client that failed or sent close_notify reads
                    // nothing more (rustls asserts as much in debug builds).
                    if !self.peer_done && peer.last_error().is_none() {
                        peer.handle_ciphertext(&out);
                    }
                    self.peer_done |= peer.last_error().is_some();
                    let replies = peer.read_plaintext();
                    assert!(
                        replies.len() <= bound,
                        "{} octets of replies",
                        replies.len()
                    );
                }
            }
            while let Some(event) = self.session.poll_event() {
                progress = true;
                self.event(event);
            }
            if let Some(peer) = &mut self.peer {
                let ciphertext = peer.poll_ciphertext();
                if !ciphertext.is_empty() && self.socket.len() < SOCKET_BUFFER {
                    self.socket.extend_from_slice(&ciphertext);
                }
            }
            progress |= self.read();
            if !progress {
                self.check_settled();
                return;
            }
        }
        panic!("the session never settles");
    }

    fn event(&mut self, event: Event) {
        if crate::heap::tracing() {
            let text = format!("{event:?}");
            eprintln!("  event {}", text.get(..200).unwrap_or(&text));
        }
        assert!(!self.closed, "{event:?} after Closed");
        let decision = match &event {
            Event::Mail { .. } => Some(DecisionKind::Mail),
            Event::Rcpt { .. } => Some(DecisionKind::Rcpt),
            Event::MessageEnd { size, .. } => {
                assert_eq!(*size, self.body_size, "MessageEnd size");
                Some(DecisionKind::MessageEnd)
            }
            Event::BodyStart { .. } => {
                self.body_size = 0;
                None
            }
            Event::Body(chunk) => {
                assert!(chunk.len() <= self.limits.body_chunk.max(1));
                self.body_size += chunk.len() as u64;
                assert!(self.body_size <= self.limits.max_message_size);
                None
            }
            Event::TlsEstablished(_) => {
                assert!(!self.tls_established, "TLS established twice");
                self.tls_established = true;
                None
            }
            Event::Renegotiation { attempt, .. } => {
                assert_eq!(*attempt, self.renegotiations + 1);
                self.renegotiations = *attempt;
                let cap = self.max_renegotiations.unwrap_or(0);
                assert!(*attempt <= cap + 1, "attempt {attempt} past cap {cap}");
                None
            }
            Event::Closed(_) => {
                self.closed = true;
                None
            }
            Event::Hello { .. } | Event::TransactionAborted(_) => None,
            // Events added later decide nothing here until a check is
            // written for them.
            _ => None,
        };
        if self.tls_established
            && matches!(
                event,
                Event::Hello { .. }
                    | Event::Mail { .. }
                    | Event::Rcpt { .. }
                    | Event::BodyStart { .. }
            )
        {
            // CVE-2011-0411: after the handshake only what came over TLS
            // may be read as commands, never plaintext sent before it.
            assert!(
                self.sent_over_tls,
                "{event:?} over TLS that the client never sent"
            );
        }
        match decision {
            Some(kind) if self.answered_early.front() == Some(&kind) => {
                self.answered_early.pop_front();
            }
            Some(kind) => {
                assert!(
                    self.session.pending_decision() == Some(kind) || self.session.is_closed(),
                    "{kind:?} asked, {:?} pending",
                    self.session.pending_decision()
                );
                self.polled_pending = Some(kind);
                // 0xf0 and up: leave the decision for a later operation.
                if self.policy < 0xf0 && !self.session.is_closed() {
                    self.decide(self.policy);
                }
            }
            None => {}
        }
        if let Some(events) = &mut self.events {
            // An event's own heap (a HELO name, a path) is under 2 KiB.
            self.recorded += 2 * match &event {
                Event::Body(chunk) => chunk.len() + std::mem::size_of::<Entry>(),
                _ => std::mem::size_of::<Entry>() + 2048,
            };
            match (event, events.last_mut()) {
                (Event::Body(chunk), Some(Entry::Body(body))) => body.extend_from_slice(&chunk),
                (Event::Body(chunk), _) => events.push(Entry::Body(chunk.to_vec())),
                (event, _) => events.push(Entry::Event(event)),
            }
        }
    }

    fn check_settled(&mut self) {
        if self.session.is_closed() {
            assert!(self.session.poll_timeout().is_none());
            assert!(!self.session.wants_input());
        } else if self.session.pending_decision().is_none() {
            assert!(
                self.session.wants_input(),
                "an open session with nothing pending wants no input"
            );
        }
        let harness = self.socket.capacity()
            + self.wire.as_ref().map_or(0, Vec::capacity)
            + self.pieces.capacity() * std::mem::size_of::<Vec<u8>>()
            + self.recorded
            + if self.forced { 1 << 21 } else { 0 };
        self.heap.check(harness, &"a drain");
    }

    /// The client hangs up: the session answers what it has and closes.
    pub fn finish(&mut self) {
        self.session.handle_eof(self.now);
        self.drain();
        if self.session.pending_decision().is_some() {
            self.decide(0);
            self.drain();
        }
        if !self.closed {
            // Still open only while the input it holds waits for a
            // decision or is a body being received; a shutdown ends it.
            self.session.shutdown(self.now);
            self.drain();
        }
        assert!(self.closed, "no Closed event after EOF and shutdown");
    }

    /// Which engine a `how` byte picks for the listener.
    pub fn engine(how: u8) -> TlsEngine {
        if how & 1 == 0 {
            TlsEngine::Rustls
        } else {
            TlsEngine::Openssl
        }
    }
}

/// Commands a client sends, to reach deep states from short inputs.
pub const COMMANDS: &[&[u8]] = &[
    b"EHLO client.test\r\n",
    b"HELO client.test\r\n",
    b"MAIL FROM:<a@b.test>\r\n",
    b"MAIL FROM:<> SIZE=100 BODY=8BITMIME\r\n",
    b"MAIL FROM:<a@b.test> BODY=BINARYMIME\r\n",
    b"MAIL FROM:<\xc3\xa9@b.test> SMTPUTF8 RET=HDRS ENVID=x+2B\r\n",
    b"RCPT TO:<c@d.test>\r\n",
    b"RCPT TO:<c@d.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;c@d.test\r\n",
    b"RCPT TO:<Postmaster>\r\n",
    b"DATA\r\n",
    b"Subject: x\r\n\r\n..dot\r\nbody\r\n.\r\n",
    b".\r\n",
    b"BDAT 5\r\nhello",
    b"BDAT 0 LAST\r\n",
    b"BDAT 3 LAST\r\nabc",
    b"BDAT 5000 LAST\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY x\r\n",
    b"HELP\r\n",
    b"STARTTLS\r\n",
    b"QUIT\r\n",
    b"bare LF\n",
    b"\r\n",
];
