//! The sans-IO ESMTP server session.
//!
//! A [`ServerSession`] is one SMTP connection seen from the server: bytes
//! and time in, bytes, events and deadlines out, after quinn-proto's
//! `Connection`. It owns the TLS session once STARTTLS succeeds, so the
//! driver only ever moves ciphertext, and only the session knows where the
//! plaintext ends.
//!
//! # Driving a session
//!
//! ```text
//! loop {
//!     if session.wants_input() { read at most N bytes; session.handle_input(now, &bytes) }
//!     (or session.handle_eof(now), or session.handle_timeout(now) at poll_timeout())
//!     loop {
//!         session.poll_transmit(&mut out);          // write `out` to the socket
//!         while let Some(ev) = session.poll_event() { ... maybe session.accept(now) ... }
//!         stop when neither produced anything
//!     }
//!     sleep until input, a decision from elsewhere, or session.poll_timeout()
//! }
//! ```
//!
//! Decisions (`accept`, `respond`) and `poll_event`/`poll_transmit` may let
//! the session read further buffered commands, so the driver drains transmit
//! and events until both are empty after any call.
//!
//! # Memory
//!
//! Everything a peer can make the session hold is bounded by [`Limits`]:
//! input is held only while the application decides or consumes the body
//! (`wants_input` turns false past `max_buffered_input`), body chunks queued
//! in events are capped by `max_queued_body`, and unsent pipelined replies
//! by `max_pipelined_replies`. A message is never held whole.
//!
//! # Line endings
//!
//! Commands must end in CRLF; a line ended by a bare LF is answered `500`
//! and never executed. A DATA body ends only at CRLF "." CRLF; a body with a
//! bare CR or LF, a NUL, or a line over `max_text_line` is rejected with
//! `554 5.6.0` at its end. Other servers end data at other sequences, and
//! relaying such bytes is what SMTP smuggling exploits; refusing them here
//! means Petrel never relays an ambiguous body.

mod config;
mod event;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

pub use config::{ConfigError, Extensions, InjectionPolicy, Limits, ServerConfig, Timeouts};
pub use event::{AbortReason, CloseReason, DecisionError, DecisionKind, Event};

use crate::renegotiation::{self, RenegotiationAttempt, RenegotiationVerdict};
use crate::tls::record::RecordObserver;
use crate::tls::{TlsError, TlsFailure, TlsFailureKind, TlsInfo, TlsSession, TlsVersion};
use crate::wire::command::{
    parse_command_ref, BodyType, CommandRef, ForwardPathRef, MailParamsRef, RcptParamsRef,
    ReversePathRef,
};
use crate::wire::dot::DotUnstuffer;
use crate::wire::ehlo::Capabilities;
use crate::wire::line::{Frame, LineFramer};
use crate::wire::reply::{EnhancedCode, Reply};

/// Whether MAIL carried any parameter (they need EHLO).
fn has_mail_params(params: &MailParamsRef<'_>) -> bool {
    let MailParamsRef {
        size,
        body,
        smtputf8,
        ret,
        envid,
    } = params;
    size.is_some() || body.is_some() || *smtputf8 || ret.is_some() || envid.is_some()
}

/// A reply with an enhanced status code.
fn reply(code: u16, (class, subject, detail): (u8, u16, u16), text: &str) -> Reply {
    Reply::new(
        code,
        Some(EnhancedCode {
            class,
            subject,
            detail,
        }),
        text,
    )
}

fn must_starttls() -> Reply {
    reply(530, (5, 7, 0), "Must issue a STARTTLS command first")
}

fn too_large() -> Reply {
    reply(
        552,
        (5, 3, 4),
        "Message size exceeds fixed maximum message size",
    )
}

fn need_mail() -> Reply {
    reply(503, (5, 5, 1), "Error: need MAIL command")
}

/// `now + timeout`, or no deadline if that overflows.
fn deadline(now: Instant, timeout: std::time::Duration) -> Option<Instant> {
    now.checked_add(timeout)
}

fn unsupported(param: &str) -> Reply {
    reply(555, (5, 5, 4), &format!("Unsupported parameter {param}"))
}

/// One server-side SMTP connection. See the [module docs](self).
#[derive(Debug)]
pub struct ServerSession {
    config: Arc<ServerConfig>,
    /// The time of the latest call that gave one.
    now: Instant,
    /// What the peer's current timeout measures from.
    peer_clock: PeerClock,
    phase: Phase,
    framer: LineFramer,
    /// Plaintext received and not yet processed.
    inbuf: BytesMut,
    /// Bytes for the wire as they are: everything before TLS starts.
    out_wire: Vec<u8>,
    /// Replies to encrypt, once TLS is active.
    out_plain: Vec<u8>,
    /// Replies queued since the driver last took them.
    replies_unsent: usize,
    events: VecDeque<Event>,
    /// Body octets in `events` not yet polled.
    queued_body: usize,
    hello: Option<Hello>,
    txn: Option<Transaction>,
    pending: Option<Pending>,
    tls: Option<Tls>,
    errors: u32,
    eof: bool,
}

/// The start of the timeout the peer is under. No timeout runs while we
/// owe the peer something (a decision pending, body backpressure); that is
/// derived in `poll_timeout`, not stored.
#[derive(Debug, Clone, Copy)]
enum PeerClock {
    /// The peer's last progress, or our last answer to it.
    Since(Instant),
    /// We stopped owing the peer inside `poll_event`, which is given no
    /// time: the clock restarts at the next instant the session is given,
    /// and `poll_timeout` asks for one at once. Restarting from an older
    /// `now` would charge the peer for the application's slowness.
    AtNextCall,
}

#[derive(Debug)]
enum Phase {
    Command,
    Data(DotUnstuffer),
    Bdat(Chunk),
    /// After our `220` to STARTTLS until the handshake completes.
    TlsHandshake {
        deadline: Option<Instant>,
    },
    Closed,
}

/// A BDAT chunk being read.
#[derive(Debug)]
struct Chunk {
    remaining: u64,
    last: bool,
    /// The reply once the chunk is read, when the octets are being
    /// discarded because the chunk was refused.
    refused: Option<Reply>,
}

#[derive(Debug)]
struct Hello {
    extended: bool,
}

/// A transaction opened by an accepted MAIL.
#[derive(Debug, Default)]
struct Transaction {
    smtputf8: bool,
    binary: bool,
    recipients: usize,
    /// RCPTs refused for `max_recipients` so far.
    overshoot: usize,
    /// Body octets so far.
    size: u64,
    /// Some BDAT chunk was accepted: DATA and RCPT are out of sequence now.
    chunking: bool,
    /// The body exceeded the size limit; the rest of it is discarded.
    too_large: bool,
}

#[derive(Debug)]
enum Pending {
    Mail { smtputf8: bool, binary: bool },
    Rcpt,
    MessageEnd,
}

impl Pending {
    fn kind(&self) -> DecisionKind {
        match self {
            Self::Mail { .. } => DecisionKind::Mail,
            Self::Rcpt => DecisionKind::Rcpt,
            Self::MessageEnd => DecisionKind::MessageEnd,
        }
    }
}

#[derive(Debug)]
struct Tls {
    session: Box<dyn TlsSession>,
    observer: RecordObserver,
    /// Set when the initial handshake completes.
    info: Option<TlsInfo>,
    renegotiations: u32,
}

/// What one processing step achieved.
enum Step {
    Progress,
    /// Nothing more can be done without more input.
    NeedInput,
    /// Waiting for the application or the driver.
    Blocked,
}

impl ServerSession {
    /// A new session; the greeting is queued for `poll_transmit`.
    pub fn new(config: Arc<ServerConfig>, now: Instant) -> Self {
        let framer = LineFramer::new(config.command_line_limit());
        let mut session = Self {
            now,
            peer_clock: PeerClock::Since(now),
            phase: Phase::Command,
            framer,
            inbuf: BytesMut::new(),
            out_wire: Vec::new(),
            out_plain: Vec::new(),
            replies_unsent: 0,
            events: VecDeque::new(),
            queued_body: 0,
            hello: None,
            txn: None,
            pending: None,
            tls: None,
            errors: 0,
            eof: false,
            config,
        };
        let greeting = Reply::new(
            220,
            None,
            format!("{} ESMTP Petrel", session.config.hostname),
        );
        session.queue_reply(&greeting);
        session
    }

    // ---- inputs -------------------------------------------------------

    /// Bytes received from the peer (ciphertext once TLS is active).
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.set_now(now);
        if self.is_closed() || data.is_empty() {
            return;
        }
        // Body octets keep the data timeout alive; in the command phase only
        // a complete line does (see `step_command`), so a peer trickling a
        // line that never ends cannot hold the connection for ever.
        if matches!(self.phase, Phase::Data(_) | Phase::Bdat(_)) {
            self.peer_clock = PeerClock::Since(now);
        }
        let ignored_backpressure = !self.wants_input();
        if self.tls.is_some() {
            self.handle_ciphertext(data);
        } else if self.inbuf.is_empty() {
            // Body text is unstuffed straight from the caller's buffer:
            // copied once, into its chunk, not first into `inbuf`.
            let rest = self.unstuff_direct(data);
            self.inbuf.extend_from_slice(rest);
        } else {
            self.inbuf.extend_from_slice(data);
        }
        // A driver that honours `wants_input` never gets here; one that
        // does not must not be able to grow memory without bound.
        let hard_cap = self.config.limits.max_buffered_input.saturating_mul(16);
        if ignored_backpressure && self.inbuf.len() > hard_cap.max(1 << 20) {
            self.close(CloseReason::InputOverflow);
            return;
        }
        self.process();
    }

    /// The peer closed its sending side. Commands already received are
    /// still answered (a client may pipeline QUIT and shut down writing).
    pub fn handle_eof(&mut self, now: Instant) {
        self.set_now(now);
        self.eof = true;
        self.process();
    }

    /// Call at (or after) the instant `poll_timeout` returned.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.set_now(now);
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => {}
            _ => return,
        }
        if let Phase::TlsHandshake { .. } = self.phase {
            // Mid-handshake the client expects TLS records: no reply.
            self.close(CloseReason::TlsHandshakeTimeout);
        } else {
            let text = format!("{} Error: timeout exceeded", self.config.hostname);
            self.queue_reply(&reply(421, (4, 4, 2), &text));
            self.close(CloseReason::Timeout);
        }
    }

    /// The server is shutting down and will not wait for this session any
    /// longer: `421 4.3.2` (RFC 5321 §3.8) unless the client is in the
    /// middle of a TLS handshake, then the session closes. A transaction in
    /// progress is aborted and a pending decision is void.
    pub fn shutdown(&mut self, now: Instant) {
        self.set_now(now);
        if self.is_closed() {
            return;
        }
        if !matches!(self.phase, Phase::TlsHandshake { .. }) {
            let text = format!("{} Service shutting down", self.config.hostname);
            self.queue_reply(&reply(421, (4, 3, 2), &text));
        }
        self.close(CloseReason::Shutdown);
    }

    // ---- decisions ----------------------------------------------------

    /// The decision the session is waiting for, if any.
    pub fn pending_decision(&self) -> Option<DecisionKind> {
        self.pending.as_ref().map(Pending::kind)
    }

    /// Accepts the pending MAIL, RCPT or message with the usual `250`.
    pub fn accept(&mut self, now: Instant) -> Result<(), DecisionError> {
        let ok = match self.pending_decision() {
            None => return Err(DecisionError::NotPending),
            Some(DecisionKind::Mail) => reply(250, (2, 1, 0), "Ok"),
            Some(DecisionKind::Rcpt) => reply(250, (2, 1, 5), "Ok"),
            Some(DecisionKind::MessageEnd) => reply(250, (2, 0, 0), "Ok: queued"),
        };
        self.respond(now, ok)
    }

    /// Answers the pending decision with `reply`: 2xx accepts, 4xx and 5xx
    /// refuse, and 421 refuses and closes the connection. For the end of a
    /// message, a 2xx means the application has taken responsibility for it.
    pub fn respond(&mut self, now: Instant, reply: Reply) -> Result<(), DecisionError> {
        self.set_now(now);
        let code = reply.code();
        let class_matches = reply
            .enhanced()
            .is_none_or(|enhanced| u16::from(enhanced.class) == code / 100);
        if !matches!(code / 100, 2 | 4 | 5) || !class_matches {
            return Err(DecisionError::BadCode(code));
        }
        let pending = self.pending.take().ok_or(DecisionError::NotPending)?;
        let positive = reply.is_positive();
        match pending {
            Pending::Mail { smtputf8, binary } if positive => {
                self.txn = Some(Transaction {
                    smtputf8,
                    binary,
                    ..Transaction::default()
                });
            }
            Pending::Rcpt if positive => {
                if let Some(txn) = &mut self.txn {
                    txn.recipients += 1;
                }
            }
            // The message is answered either way; the transaction is over.
            Pending::MessageEnd => self.txn = None,
            Pending::Mail { .. } | Pending::Rcpt => {}
        }
        self.queue_reply(&reply);
        // The client's clock starts when it has our answer.
        self.peer_clock = PeerClock::Since(now);
        if code == 421 {
            self.close(CloseReason::Application);
        } else {
            self.process();
        }
        Ok(())
    }

    // ---- outputs ------------------------------------------------------

    /// Appends bytes to send to the peer to `buf`; returns how many. The
    /// driver writes all of them before it closes the socket.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        let start = buf.len();
        buf.append(&mut self.out_wire);
        self.flush_plaintext();
        if let Some(tls) = &mut self.tls {
            tls.session.poll_ciphertext(buf);
        }
        let blocked = self.replies_unsent >= self.config.limits.max_pipelined_replies;
        self.replies_unsent = 0;
        if blocked {
            self.process();
        }
        buf.len() - start
    }

    /// The next event, if any.
    #[must_use = "an event not taken is lost to the driver"]
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        if let Event::Body(chunk) = &event {
            let blocked = self.queued_body >= self.config.limits.max_queued_body;
            self.queued_body = self.queued_body.saturating_sub(chunk.len());
            if blocked && self.queued_body < self.config.limits.max_queued_body {
                // The peer waited on us: its timeout starts afresh.
                self.peer_clock = PeerClock::AtNextCall;
                self.process();
            }
        }
        Some(event)
    }

    /// When `handle_timeout` must be called next, if ever. While a decision
    /// is pending or the body waits for the application, only the
    /// application is slow, so no timeout runs.
    #[must_use = "the session times out only if handle_timeout is called at this instant"]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timeouts = &self.config.timeouts;
        match &self.phase {
            Phase::Closed => None,
            Phase::TlsHandshake { deadline: at } => *at,
            _ if self.pending.is_some()
                || self.queued_body >= self.config.limits.max_queued_body =>
            {
                None
            }
            Phase::Data(_) | Phase::Bdat(_) => self.peer_deadline(timeouts.data),
            Phase::Command => self.peer_deadline(timeouts.command),
        }
    }

    fn peer_deadline(&self, timeout: Duration) -> Option<Instant> {
        match self.peer_clock {
            PeerClock::Since(since) => deadline(since, timeout),
            PeerClock::AtNextCall => Some(self.now),
        }
    }

    /// Every call that is given the time goes through here.
    fn set_now(&mut self, now: Instant) {
        self.now = now;
        if let PeerClock::AtNextCall = self.peer_clock {
            self.peer_clock = PeerClock::Since(now);
        }
    }

    /// Whether the driver should read more from the socket.
    pub fn wants_input(&self) -> bool {
        !self.is_closed() && self.inbuf.len() < self.config.limits.max_buffered_input
    }

    /// Whether the session is over (an [`Event::Closed`] was queued).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// The negotiated TLS parameters, once STARTTLS has succeeded.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_ref().and_then(|tls| tls.info.as_ref())
    }

    // ---- TLS ----------------------------------------------------------

    /// Passes ciphertext to the TLS engine record by record, so that a
    /// renegotiation attempt is counted and judged before the engine sees
    /// it: the session is the authority on attempts (see
    /// [`renegotiation`'s "Who counts"](crate::renegotiation#who-counts)).
    fn handle_ciphertext(&mut self, data: &[u8]) {
        let Some(tls) = &mut self.tls else { return };
        let Some(server_tls) = self.config.tls.as_ref() else {
            return;
        };
        let mut events = Vec::new();
        let mut failure = None;
        for piece in tls.observer.split(data) {
            if piece.starts_handshake_record()
                && !tls.session.is_handshaking()
                && matches!(&tls.info, Some(info) if info.version <= TlsVersion::Tls12)
            {
                // A handshake record after the handshake, below TLS 1.3, is
                // a client-initiated renegotiation attempt: one per record.
                let verdict = renegotiation::decide(RenegotiationAttempt {
                    engine: server_tls.engine(),
                    allow: server_tls.allow_renegotiation(),
                    secure: tls.observer.secure_renegotiation_offered() == Some(true),
                    so_far: tls.renegotiations,
                    cap: server_tls.max_renegotiations(),
                });
                tls.renegotiations = tls.renegotiations.saturating_add(1);
                events.push(Event::Renegotiation {
                    attempt: tls.renegotiations,
                    verdict,
                });
                if let RenegotiationVerdict::Close(_) = verdict {
                    // Before the engine sees the record: the connection
                    // ends on the policy's verdict, not an engine error.
                    failure = Some(CloseReason::RenegotiationLimit);
                    break;
                }
            }
            if let Err(error) = tls.session.handle_ciphertext(piece.bytes) {
                failure = Some(CloseReason::Tls(error));
                break;
            }
            if tls.info.is_none() && !tls.session.is_handshaking() {
                tls.info = tls.session.info();
                match &tls.info {
                    Some(info) => events.push(Event::TlsEstablished(info.clone())),
                    None => {
                        let error =
                            TlsError::Protocol(TlsFailure::new(TlsFailureKind::NoParameters, ""));
                        failure = Some(CloseReason::Tls(error));
                        break;
                    }
                }
            }
        }
        let mut plaintext = Vec::new();
        if failure.is_none() {
            if let Err(error) = tls.session.read_plaintext(&mut plaintext) {
                failure = Some(CloseReason::Tls(error));
            }
        }
        let peer_closed = tls.session.peer_closed();
        for event in events {
            if let Event::TlsEstablished(_) = event {
                self.tls_established();
            }
            self.events.push_back(event);
        }
        if let Some(reason) = failure {
            self.close(reason);
            return;
        }
        self.inbuf.extend_from_slice(&plaintext);
        if peer_closed {
            self.eof = true;
        }
    }

    /// RFC 3207 §4.2: after the handshake the session starts over, as if
    /// just greeted; nothing learnt in plaintext survives.
    fn tls_established(&mut self) {
        self.hello = None;
        self.txn = None;
        self.framer = LineFramer::new(self.config.command_line_limit());
        self.phase = Phase::Command;
        self.peer_clock = PeerClock::Since(self.now);
    }

    fn flush_plaintext(&mut self) {
        let Some(tls) = &mut self.tls else { return };
        if self.out_plain.is_empty() {
            return;
        }
        if let Err(error) = tls.session.write_plaintext(&self.out_plain) {
            self.out_plain.clear();
            self.close(CloseReason::Tls(error));
            return;
        }
        self.out_plain.clear();
    }

    // ---- processing ---------------------------------------------------

    fn process(&mut self) {
        loop {
            let step = if self.is_closed() {
                return;
            } else if self.pending.is_some()
                || (self.body_paused() && matches!(self.phase, Phase::Data(_) | Phase::Bdat(_)))
            {
                Step::Blocked
            } else {
                match self.phase {
                    Phase::Command => self.step_command(),
                    Phase::Data(_) => self.step_data(),
                    Phase::Bdat(_) => self.step_bdat(),
                    Phase::TlsHandshake { .. } => Step::NeedInput,
                    Phase::Closed => return,
                }
            };
            match step {
                Step::Progress => {}
                Step::Blocked => return,
                Step::NeedInput => {
                    if self.eof {
                        self.close(CloseReason::PeerClosed);
                    }
                    return;
                }
            }
        }
    }

    fn step_command(&mut self) -> Step {
        if self.replies_unsent >= self.config.limits.max_pipelined_replies {
            return Step::Blocked;
        }
        let frame = self.framer.next(&self.inbuf);
        let line = self.inbuf.split_to(frame.consumed());
        if !matches!(frame, Frame::Partial | Frame::Skip { .. }) {
            // A whole line arrived: the command timeout starts again.
            self.peer_clock = PeerClock::Since(self.now);
        }
        match frame {
            Frame::Partial => return Step::NeedInput,
            Frame::Skip { .. } => {}
            Frame::TooLong { .. } => {
                self.error_reply(reply(500, (5, 5, 2), "Error: line too long"));
            }
            Frame::BareLf { .. } => {
                let text = "Error: bare <LF> received; commands end with <CR><LF>";
                self.error_reply(reply(500, (5, 5, 2), text));
            }
            Frame::Line { len } => {
                let content = line.get(..len.saturating_sub(2)).unwrap_or_default();
                let utf8_rcpt = self.txn.as_ref().is_some_and(|txn| txn.smtputf8);
                // Parsed borrowed: only what goes into an event is copied.
                match parse_command_ref(content, utf8_rcpt) {
                    Ok(command) => self.command(command),
                    Err(error) => {
                        self.error_reply(error.reply());
                        if content
                            .get(..4)
                            .is_some_and(|verb| verb.eq_ignore_ascii_case(b"BDAT"))
                        {
                            // A chunk of unknown size follows: whatever comes
                            // next cannot be told from commands.
                            self.close(CloseReason::LostFraming);
                        }
                    }
                }
            }
        }
        Step::Progress
    }

    fn command(&mut self, command: CommandRef<'_>) {
        let allowed_before_tls = matches!(
            command,
            CommandRef::Helo(_)
                | CommandRef::Ehlo(_)
                | CommandRef::StartTls
                | CommandRef::Noop
                | CommandRef::Quit
                // Refused in `bdat`, which still reads the chunk.
                | CommandRef::Bdat { .. }
        );
        if self.tls_required() && !allowed_before_tls {
            self.error_reply(must_starttls());
            return;
        }
        match command {
            CommandRef::Helo(name) => self.hello(name, false),
            CommandRef::Ehlo(name) => self.hello(name, true),
            CommandRef::Mail {
                reverse_path,
                params,
            } => self.mail(reverse_path, params),
            CommandRef::Rcpt {
                forward_path,
                params,
            } => self.rcpt(forward_path, params),
            CommandRef::Data => self.data(),
            CommandRef::Bdat { size, last } => self.bdat(size, last),
            CommandRef::Rset => {
                self.abort_transaction(AbortReason::Reset);
                self.queue_reply(&reply(250, (2, 0, 0), "Ok"));
            }
            CommandRef::Noop => self.queue_reply(&reply(250, (2, 0, 0), "Ok")),
            CommandRef::Help(_) => {
                self.queue_reply(&reply(214, (2, 0, 0), "Petrel: see RFC 5321"));
            }
            CommandRef::Vrfy(_) => {
                // RFC 5321 §7.3: not disclosing who exists is allowed, and
                // 252 tells the client to just try.
                let text = "Cannot VRFY user, but will accept message and attempt delivery";
                self.queue_reply(&reply(252, (2, 5, 0), text));
            }
            CommandRef::Expn(_) => {
                self.queue_reply(&reply(502, (5, 5, 1), "Error: EXPN not implemented"));
            }
            CommandRef::Quit => {
                self.queue_reply(&reply(221, (2, 0, 0), "Bye"));
                self.close(CloseReason::Quit);
            }
            CommandRef::StartTls => self.starttls(),
        }
    }

    /// The application has not taken enough of the body yet.
    fn body_paused(&self) -> bool {
        self.queued_body >= self.config.limits.max_queued_body
    }

    fn tls_required(&self) -> bool {
        self.config.require_tls && self.tls.is_none()
    }

    fn hello(&mut self, name: &str, extended: bool) {
        self.abort_transaction(AbortReason::Hello);
        self.hello = Some(Hello { extended });
        let host = &self.config.hostname;
        let answer = if extended {
            self.capabilities().ehlo_reply(host)
        } else {
            Reply::new(250, None, host.clone())
        };
        self.queue_reply(&answer);
        self.events.push_back(Event::Hello {
            name: name.to_owned(),
            extended,
        });
    }

    /// What EHLO advertises now.
    pub fn capabilities(&self) -> Capabilities {
        let ext = &self.config.extensions;
        Capabilities {
            pipelining: ext.pipelining,
            size: Some(self.config.limits.max_message_size),
            eight_bit_mime: ext.eight_bit_mime,
            smtputf8: ext.smtputf8,
            enhanced_status_codes: true,
            chunking: ext.chunking,
            binary_mime: ext.chunking && ext.binary_mime,
            dsn: ext.dsn,
            rcpt_max: ext.limits.then_some(self.config.limits.max_recipients),
            // Never again once TLS is up (RFC 3207 §4.2).
            starttls: self.config.tls.is_some() && self.tls.is_none(),
            other: Vec::new(),
        }
    }

    fn mail(&mut self, reverse_path: ReversePathRef<'_>, params: MailParamsRef<'_>) {
        let caps = self.capabilities();
        let refusal = if self.hello.is_none() {
            Some(reply(503, (5, 5, 1), "Error: send HELO/EHLO first"))
        } else if self.txn.is_some() {
            Some(reply(503, (5, 5, 1), "Error: nested MAIL command"))
        } else if !self.hello.as_ref().is_some_and(|h| h.extended) && has_mail_params(&params) {
            // Service extensions exist only after EHLO (RFC 5321 §2.2.1).
            Some(reply(555, (5, 5, 4), "Error: parameters require EHLO"))
        } else if params
            .size
            .is_some_and(|size| size > self.config.limits.max_message_size)
        {
            Some(too_large())
        } else {
            match params.body {
                Some(BodyType::BinaryMime) if !caps.binary_mime => {
                    Some(unsupported("BODY=BINARYMIME"))
                }
                Some(BodyType::EightBitMime) if !caps.eight_bit_mime => {
                    Some(unsupported("BODY=8BITMIME"))
                }
                _ if params.smtputf8 && !caps.smtputf8 => Some(unsupported("SMTPUTF8")),
                _ if params.ret.is_some() && !caps.dsn => Some(unsupported("RET")),
                _ if params.envid.is_some() && !caps.dsn => Some(unsupported("ENVID")),
                _ => None,
            }
        };
        if let Some(refusal) = refusal {
            self.error_reply(refusal);
            return;
        }
        self.pending = Some(Pending::Mail {
            smtputf8: params.smtputf8,
            binary: params.body == Some(BodyType::BinaryMime),
        });
        self.events.push_back(Event::Mail {
            reverse_path: reverse_path.into_owned(),
            params: params.into_owned(),
        });
    }

    fn rcpt(&mut self, forward_path: ForwardPathRef<'_>, params: RcptParamsRef<'_>) {
        let dsn = self.config.extensions.dsn;
        let extended = self.hello.as_ref().is_some_and(|h| h.extended);
        let refusal = match &mut self.txn {
            None => Some(need_mail()),
            Some(_) if !extended && (params.notify.is_some() || params.orcpt.is_some()) => {
                Some(reply(555, (5, 5, 4), "Error: parameters require EHLO"))
            }
            Some(txn) if txn.chunking => Some(reply(503, (5, 5, 1), "Error: RCPT after BDAT")),
            Some(txn) if txn.recipients >= self.config.limits.max_recipients => {
                // RFC 5321 §4.5.3.1.10: 452, and the client sends the rest in
                // a later transaction. That is the protocol working, not a
                // client mistake, so it counts as an error only past the
                // overshoot allowance (as Postfix's recipient overshoot).
                let refusal = reply(452, (4, 5, 3), "Error: too many recipients");
                txn.overshoot += 1;
                if txn.overshoot > self.config.limits.max_recipient_overshoot {
                    Some(refusal)
                } else {
                    self.queue_reply(&refusal);
                    return;
                }
            }
            Some(_) if params.notify.is_some() && !dsn => Some(unsupported("NOTIFY")),
            Some(_) if params.orcpt.is_some() && !dsn => Some(unsupported("ORCPT")),
            Some(_) => None,
        };
        if let Some(refusal) = refusal {
            self.error_reply(refusal);
            return;
        }
        self.pending = Some(Pending::Rcpt);
        self.events.push_back(Event::Rcpt {
            forward_path: forward_path.into_owned(),
            params: params.into_owned(),
        });
    }

    /// Why a body may not start now, if it may not.
    fn body_refusal(&self, chunking: bool) -> Option<Reply> {
        match &self.txn {
            _ if self.tls_required() => Some(must_starttls()),
            None => Some(need_mail()),
            Some(txn) if txn.recipients == 0 => {
                Some(reply(554, (5, 5, 1), "Error: no valid recipients"))
            }
            Some(txn) if !chunking && txn.binary => Some(reply(
                503,
                (5, 5, 1),
                "Error: BODY=BINARYMIME requires BDAT",
            )),
            Some(txn) if !chunking && txn.chunking => {
                Some(reply(503, (5, 5, 1), "Error: DATA after BDAT"))
            }
            Some(_) => None,
        }
    }

    fn data(&mut self) {
        if let Some(refusal) = self.body_refusal(false) {
            self.error_reply(refusal);
            return;
        }
        self.queue_reply(&Reply::new(354, None, "End data with <CR><LF>.<CR><LF>"));
        self.phase = Phase::Data(DotUnstuffer::new(self.config.limits.max_text_line));
        self.events.push_back(Event::BodyStart { chunking: false });
    }

    fn bdat(&mut self, size: u64, last: bool) {
        // The chunk's octets follow the command whatever we answer, so they
        // are always read (and discarded when refused), never taken as
        // commands (RFC 3030 §2).
        let extended = self.hello.as_ref().is_some_and(|h| h.extended);
        let mut refused = if self.config.extensions.chunking && extended {
            self.body_refusal(true)
        } else {
            Some(reply(502, (5, 5, 1), "Error: BDAT not supported"))
        };
        if refused.is_none() {
            let limit = self.config.limits.max_message_size;
            let first = self.txn.as_ref().is_some_and(|txn| !txn.chunking);
            let over = self
                .txn
                .as_ref()
                .is_some_and(|txn| txn.size.saturating_add(size) > limit);
            if over {
                // Known before a single octet arrives; the transaction is
                // over (RFC 3030 §4: later BDATs get 503).
                self.abort_transaction(AbortReason::TooLarge);
                refused = Some(too_large());
            } else if let Some(txn) = &mut self.txn {
                txn.chunking = true;
                if first {
                    self.events.push_back(Event::BodyStart { chunking: true });
                }
            }
        }
        self.phase = Phase::Bdat(Chunk {
            remaining: size,
            last,
            refused,
        });
    }

    /// DATA's body from `data` as [`process`](Self::process) would take it
    /// from `inbuf`, for as long as it would; returns what is left.
    fn unstuff_direct<'a>(&mut self, mut data: &'a [u8]) -> &'a [u8] {
        while matches!(self.phase, Phase::Data(_)) && self.pending.is_none() && !self.body_paused()
        {
            let (step, consumed) = self.unstuff(data);
            data = data.get(consumed..).unwrap_or_default();
            if !matches!(step, Step::Progress) {
                break;
            }
        }
        data
    }

    fn step_data(&mut self) -> Step {
        // Moved out for the call (no copy), as `unstuff` borrows `self`.
        let inbuf = std::mem::take(&mut self.inbuf);
        let (step, consumed) = self.unstuff(&inbuf);
        self.inbuf = inbuf;
        self.inbuf.advance(consumed);
        step
    }

    /// Unstuffs one body chunk of `input` (DATA); returns the step and the
    /// octets consumed.
    fn unstuff(&mut self, input: &[u8]) -> (Step, usize) {
        let Phase::Data(unstuffer) = &mut self.phase else {
            return (Step::NeedInput, 0);
        };
        let take = input.len().min(self.config.limits.body_chunk.max(1));
        let Some(input) = input.get(..take).filter(|input| !input.is_empty()) else {
            return (Step::NeedInput, 0);
        };
        let mut body = Vec::with_capacity(take);
        let done = unstuffer.unstuff(input, &mut body);
        let flaws = unstuffer.flaws();
        self.body(Bytes::from(body));
        let consumed = done.consumed;
        if !done.done {
            let step = if consumed == 0 {
                Step::NeedInput
            } else {
                Step::Progress
            };
            return (step, consumed);
        }
        self.phase = Phase::Command;
        let Some(txn) = &self.txn else {
            return (Step::Progress, consumed);
        };
        if txn.too_large {
            self.txn = None;
            self.queue_reply(&too_large());
        } else if flaws.bare_lf || flaws.bare_cr || flaws.nul || flaws.long_line {
            self.abort_transaction(AbortReason::BadBody(flaws));
            let text = if flaws.bare_lf || flaws.bare_cr || flaws.nul {
                "Error: message has a bare <CR>, a bare <LF> or a NUL; lines end with <CR><LF>"
                    .to_owned()
            } else {
                format!(
                    "Error: message has a line longer than {} octets",
                    self.config.limits.max_text_line
                )
            };
            self.queue_reply(&reply(554, (5, 6, 0), &text));
        } else {
            let (size, eight_bit) = (txn.size, flaws.eight_bit);
            self.pending = Some(Pending::MessageEnd);
            self.events.push_back(Event::MessageEnd { size, eight_bit });
        }
        (Step::Progress, consumed)
    }

    fn step_bdat(&mut self) -> Step {
        let body_chunk = self.config.limits.body_chunk.max(1);
        let Phase::Bdat(chunk) = &mut self.phase else {
            return Step::NeedInput;
        };
        if chunk.remaining > 0 {
            let available = self.inbuf.len().min(body_chunk);
            let take = usize::try_from(chunk.remaining).map_or(available, |r| r.min(available));
            if take == 0 {
                return Step::NeedInput;
            }
            chunk.remaining -= take as u64;
            let octets = self.inbuf.split_to(take).freeze();
            if chunk.refused.is_none() {
                self.body(octets);
            }
            return Step::Progress;
        }
        let Phase::Bdat(chunk) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return Step::Progress;
        };
        match (chunk.refused, &self.txn) {
            // Too large is not the client's mistake to count.
            (Some(refusal), _) if refusal.code() == 552 => self.queue_reply(&refusal),
            (Some(refusal), _) => self.error_reply(refusal),
            (None, Some(txn)) if chunk.last => {
                let size = txn.size;
                self.pending = Some(Pending::MessageEnd);
                self.events.push_back(Event::MessageEnd {
                    size,
                    eight_bit: false,
                });
            }
            (None, Some(txn)) => {
                let text = format!("{} octets received", txn.size);
                self.queue_reply(&reply(250, (2, 0, 0), &text));
            }
            (None, None) => {}
        }
        Step::Progress
    }

    /// Counts body octets against the size limit and hands them on.
    fn body(&mut self, octets: Bytes) {
        let limit = self.config.limits.max_message_size;
        let Some(txn) = &mut self.txn else { return };
        if octets.is_empty() || txn.too_large {
            return;
        }
        let before = txn.size;
        txn.size = txn.size.saturating_add(octets.len() as u64);
        if txn.size > limit {
            // Exactly `limit` octets are handed on, however the input was
            // split; then the application hears at once that it can drop
            // them. The rest is read and discarded, and the client hears
            // 552 at the end.
            txn.too_large = true;
            let room = usize::try_from(limit.saturating_sub(before)).unwrap_or(usize::MAX);
            let allowed = octets.slice(..room.min(octets.len()));
            if !allowed.is_empty() {
                self.queued_body += allowed.len();
                self.events.push_back(Event::Body(allowed));
            }
            self.events
                .push_back(Event::TransactionAborted(AbortReason::TooLarge));
            return;
        }
        self.queued_body += octets.len();
        self.events.push_back(Event::Body(octets));
    }

    fn starttls(&mut self) {
        let Some(server_tls) = &self.config.tls else {
            self.error_reply(reply(502, (5, 5, 1), "Error: command not implemented"));
            return;
        };
        if self.tls.is_some() {
            self.error_reply(reply(503, (5, 5, 1), "Error: TLS already active"));
            return;
        }
        if self.txn.is_some() {
            self.error_reply(reply(503, (5, 5, 1), "Error: MAIL transaction in progress"));
            return;
        }
        let session = match server_tls.new_session() {
            Ok(session) => session,
            Err(_) => {
                let text = "TLS not available due to temporary reason";
                self.queue_reply(&reply(454, (4, 7, 0), text));
                return;
            }
        };
        if !self.inbuf.is_empty() {
            // CVE-2011-0411: these bytes came in plaintext and must never be
            // read as if they had come over TLS.
            match self.config.injection_policy {
                InjectionPolicy::Reject => {
                    let text = "Error: command pipelined after STARTTLS";
                    self.queue_reply(&reply(554, (5, 5, 1), text));
                    self.close(CloseReason::StartTlsInjection);
                    return;
                }
                InjectionPolicy::Ignore => self.inbuf.clear(),
            }
        }
        // Queued before `tls` is set, so it goes out in plaintext.
        self.queue_reply(&reply(220, (2, 0, 0), "Ready to start TLS"));
        self.tls = Some(Tls {
            session,
            observer: RecordObserver::new(),
            info: None,
            renegotiations: 0,
        });
        self.phase = Phase::TlsHandshake {
            deadline: deadline(self.now, self.config.timeouts.tls_handshake),
        };
    }

    // ---- helpers ------------------------------------------------------

    fn queue_reply(&mut self, reply: &Reply) {
        let out = if self.tls.is_some() {
            &mut self.out_plain
        } else {
            &mut self.out_wire
        };
        reply.write_to(out);
        self.replies_unsent += 1;
    }

    /// A reply to a client mistake; too many of them end the session.
    fn error_reply(&mut self, error: Reply) {
        self.queue_reply(&error);
        self.errors += 1;
        if self.errors >= self.config.limits.max_errors {
            let text = format!("{} Error: too many errors", self.config.hostname);
            self.queue_reply(&reply(421, (4, 7, 0), &text));
            self.close(CloseReason::TooManyErrors);
        }
    }

    fn abort_transaction(&mut self, reason: AbortReason) {
        if let Some(txn) = self.txn.take() {
            // An oversize body was already reported when it overflowed.
            if !txn.too_large {
                self.events.push_back(Event::TransactionAborted(reason));
            }
        }
    }

    fn close(&mut self, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        self.abort_transaction(AbortReason::ConnectionClosed);
        self.pending = None;
        self.phase = Phase::Closed;
        self.inbuf = BytesMut::new();
        // Replies first, then close_notify, so QUIT's 221 is still read.
        self.flush_plaintext();
        if let Some(tls) = &mut self.tls {
            if tls.info.is_some() {
                tls.session.close();
            }
        }
        self.events.push_back(Event::Closed(reason));
    }
}

#[cfg(test)]
mod tests;
