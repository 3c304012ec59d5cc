//! One outbound connection, whatever the runtime: messages in, bodies
//! streamed from their sources, per-recipient outcomes out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use petrel_core::client::tls_policy::{TlsAction, TlsOutcome};
use petrel_core::client::Envelope;
use petrel_core::client::{
    ClientConfig, ClientSession, CloseReason, ConnectionKind, Delivery, Event, RecipientOutcome,
    TransactionId,
};
use petrel_core::drive;
use petrel_core::tls::TlsInfo;
use petrel_core::wire::reply::{EnhancedCode, Reply};

/// Where a message body comes from, a chunk at a time, so that a message is
/// never held whole.
pub trait BodySource: Send {
    /// The next chunk of at most `max` octets, never empty; `None` at the
    /// end. An error (or an empty chunk) aborts the connection, and every
    /// message on it is retried later.
    fn next_chunk(&mut self, max: usize) -> std::io::Result<Option<Bytes>>;

    /// Back to the start: the body is sent again when a server took only
    /// some recipients and the rest go in another transaction. An error
    /// aborts the connection, as in `next_chunk`.
    fn rewind(&mut self) -> std::io::Result<()>;
}

/// A body held in memory.
#[derive(Debug, Clone)]
pub struct BytesBody {
    data: Bytes,
    at: usize,
}

impl From<Bytes> for BytesBody {
    fn from(data: Bytes) -> Self {
        Self { data, at: 0 }
    }
}

impl BodySource for BytesBody {
    fn next_chunk(&mut self, max: usize) -> std::io::Result<Option<Bytes>> {
        let end = self.at.saturating_add(max).min(self.data.len());
        if end <= self.at {
            return Ok(None);
        }
        let chunk = self.data.slice(self.at..end);
        self.at = end;
        Ok(Some(chunk))
    }

    fn rewind(&mut self) -> std::io::Result<()> {
        self.at = 0;
        Ok(())
    }
}

/// A message to deliver.
pub struct Outbound {
    /// The caller's label for the message, carried into its
    /// [`MessageOutcome`] (an MTA's queue id): two messages with the same
    /// envelope must never be taken for each other.
    pub tag: u64,
    /// Sender, recipients, parameters.
    pub envelope: Envelope,
    /// The body.
    pub body: Box<dyn BodySource>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("tag", &self.tag)
            .field("envelope", &self.envelope)
            .finish_non_exhaustive()
    }
}

/// A message that is done with on this connection.
#[derive(Debug, Clone)]
pub struct MessageOutcome {
    /// Its [`Outbound::tag`].
    pub tag: u64,
    /// Its envelope.
    pub envelope: Envelope,
    /// One outcome per recipient, in envelope order.
    pub outcomes: Vec<RecipientOutcome>,
    /// The TLS parameters it went over, if it did.
    pub tls: Option<TlsInfo>,
    /// The server offered DSN (RFC 3461), so the recipients' `NOTIFY` and
    /// `ORCPT` went with them: notices of their fate are its to send.
    pub dsn: bool,
    /// How long the message took on its connection: from its turn (its
    /// submission, or the outcome of the message before it, whichever
    /// came later) to its outcome. The first message's turn includes the
    /// greeting, EHLO and any TLS handshake. Zero for a message never
    /// tried.
    pub elapsed: Duration,
}

/// How a runtime's `deliver` connects.
#[derive(Debug, Clone)]
pub struct DeliverOptions {
    /// Give up connecting after this long.
    pub connect_timeout: std::time::Duration,
    /// Bind to this local address first (Momentum's binding).
    pub source: Option<std::net::IpAddr>,
}

impl Default for DeliverOptions {
    fn default() -> Self {
        Self {
            connect_timeout: std::time::Duration::from_secs(30),
            source: None,
        }
    }
}

/// Starts a non-blocking connect to `addr`, from `source` when given (the
/// binding), for runtimes whose own connect cannot bind first. The socket
/// becomes writable when the handshake is over, whichever way it went; the
/// runtime then checks `take_error`.
pub fn start_connect(
    addr: std::net::SocketAddr,
    source: Option<std::net::IpAddr>,
) -> std::io::Result<std::net::TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(source) = source {
        socket.bind(&std::net::SocketAddr::new(source, 0).into())?;
    }
    socket.set_nonblocking(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        // Not done yet is what a non-blocking connect says.
        Err(error)
            if error.raw_os_error() == Some(libc::EINPROGRESS)
                || error.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(error) => return Err(error),
    }
    let stream = std::net::TcpStream::from(socket);
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Messages that could not be tried at all (no connection): each
/// recipient gets a transient outcome saying why.
pub fn unattempted(messages: Vec<Outbound>, why: &str) -> Vec<MessageOutcome> {
    let reply = Reply::new(
        451,
        Some(EnhancedCode::new(4, 4, 1)),
        format!("[internal] {why}"),
    );
    messages
        .into_iter()
        .map(|message| MessageOutcome {
            tag: message.tag,
            outcomes: (0..message.envelope.recipients.len())
                .map(|recipient| RecipientOutcome {
                    recipient,
                    delivery: Delivery::Transient,
                    reply: reply.clone(),
                })
                .collect(),
            envelope: message.envelope,
            tls: None,
            dsn: false,
            elapsed: Duration::ZERO,
        })
        .collect()
}

/// What a runtime's `deliver` reports.
#[derive(Debug, Default)]
pub struct DeliveryReport {
    /// Every message submitted, exactly once.
    pub finished: Vec<MessageOutcome>,
    /// The TLS policy asked for a plaintext reconnection, and it was made.
    pub reconnected_plaintext: bool,
    /// Every STARTTLS attempt that failed, in order, with the policy's
    /// decision — and a STARTTLS the policy required that the server did
    /// not offer (`NotOffered`, deferred): for the delivery log, and for an
    /// MTA that remembers which hosts cannot do TLS.
    pub tls_failures: Vec<TlsFailed>,
}

/// A STARTTLS attempt that did not give TLS, and what the outbound TLS
/// policy made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFailed {
    /// What happened (refused, handshake failed, certificate rejected,
    /// timed out; not offered, when TLS was required).
    pub outcome: TlsOutcome,
    /// What the session did about it.
    pub action: TlsAction,
}

/// The connections one delivery makes: normally one; a second, plaintext
/// one when the TLS policy says "reconnect in plaintext". Runtimes loop:
///
/// ```text
/// while let Some(attempt) = plan.next_attempt() {
///     match connect(addr) {
///         Err(e) => plan.connect_failed(attempt, &e.to_string()),
///         Ok(socket) => { let mut conn = attempt.start(config, name, now); drive(socket, &mut conn); plan.finished(conn) }
///     }
/// }
/// plan.into_report()
/// ```
#[derive(Debug, Default)]
pub struct DeliveryPlan {
    next: Option<Attempt>,
    report: DeliveryReport,
}

/// One connection's worth of messages.
#[derive(Debug)]
pub struct Attempt {
    messages: Vec<Outbound>,
    kind: ConnectionKind,
}

impl Attempt {
    /// The connection state for a socket just connected, with every message
    /// submitted and QUIT asked for after them.
    pub fn start(self, config: Arc<ClientConfig>, server_name: &str, now: Instant) -> ClientConn {
        let mut conn = ClientConn::new(config, server_name, self.kind, now);
        for message in self.messages {
            conn.submit(now, message);
        }
        conn.quit(now);
        conn
    }
}

impl DeliveryPlan {
    /// A delivery of `messages`.
    pub fn new(messages: Vec<Outbound>) -> Self {
        Self {
            next: Some(Attempt {
                messages,
                kind: ConnectionKind::First,
            }),
            report: DeliveryReport::default(),
        }
    }

    /// The next connection to make, if any.
    pub fn next_attempt(&mut self) -> Option<Attempt> {
        self.next.take()
    }

    /// The connection could not be made: its messages are transient.
    pub fn connect_failed(&mut self, attempt: Attempt, why: &str) {
        self.report
            .finished
            .extend(unattempted(attempt.messages, why));
    }

    /// A connection ended: collect its outcomes, and plan the plaintext
    /// reconnection if the TLS policy asked for one (once).
    pub fn finished(&mut self, mut conn: ClientConn) {
        self.report.finished.extend(conn.take_finished());
        self.report.tls_failures.extend(conn.take_tls_failures());
        let retry = conn.take_retry();
        let reconnect = matches!(conn.closed(), Some(CloseReason::ReconnectPlaintext));
        if reconnect && !self.report.reconnected_plaintext && !retry.is_empty() {
            self.report.reconnected_plaintext = true;
            self.next = Some(Attempt {
                messages: retry,
                kind: ConnectionKind::PlaintextFallback,
            });
        } else {
            self.report
                .finished
                .extend(unattempted(retry, "not attempted"));
        }
    }

    /// Every message, exactly once.
    pub fn into_report(self) -> DeliveryReport {
        self.report
    }
}

/// Largest body chunk read from a source at once.
const BODY_CHUNK: usize = 64 * 1024;

/// One client connection: the runtime feeds it bytes and time and writes
/// out what [`output`](Self::output) holds.
pub struct ClientConn {
    session: ClientSession,
    out: Vec<u8>,
    messages: Messages,
}

/// The application side of a connection: the messages and their bodies.
#[derive(Default)]
struct Messages {
    /// Messages submitted and not yet finished, by transaction, with when
    /// each was submitted.
    pending: HashMap<TransactionId, (Outbound, Instant)>,
    /// When the last message finished, for the next one's `elapsed`.
    last_done: Option<Instant>,
    streaming: Option<TransactionId>,
    finished: Vec<MessageOutcome>,
    /// Messages to resubmit on a fresh plaintext connection.
    retry: Vec<Outbound>,
    reconnecting: bool,
    tls: Option<TlsInfo>,
    tls_failures: Vec<TlsFailed>,
    close: Option<CloseReason>,
}

impl std::fmt::Debug for ClientConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConn")
            .field("close", &self.messages.close)
            .finish_non_exhaustive()
    }
}

impl ClientConn {
    /// A connection just made to `server_name`; see [`ClientSession::new`].
    pub fn new(
        config: Arc<ClientConfig>,
        server_name: &str,
        kind: ConnectionKind,
        now: Instant,
    ) -> Self {
        Self {
            session: ClientSession::new(config, server_name, kind, now),
            out: Vec::new(),
            messages: Messages::default(),
        }
    }

    /// Queues a message.
    pub fn submit(&mut self, now: Instant, message: Outbound) {
        let id = self.session.submit(now, message.envelope.clone());
        self.messages.pending.insert(id, (message, now));
        self.drain(now);
    }

    /// QUIT once every message is done.
    pub fn quit(&mut self, now: Instant) {
        self.session.quit(now);
        self.drain(now);
    }

    /// Bytes read from the socket.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.session.handle_input(now, data);
        self.drain(now);
    }

    /// The server closed the connection (or the socket failed).
    pub fn handle_eof(&mut self, now: Instant) {
        self.session.handle_eof(now);
        self.drain(now);
    }

    /// The instant from `poll_timeout` has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now);
        self.drain(now);
    }

    /// Bytes to write; the runtime removes what it wrote. Body octets are
    /// only read from their source while this is small.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Call after writing, so that body streaming resumes.
    pub fn handle_written(&mut self, now: Instant) {
        self.drain(now);
    }

    /// When to call `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    /// Nothing in progress: more may be submitted, or `quit`.
    pub fn is_idle(&self) -> bool {
        self.session.is_idle()
    }

    /// Why the session ended, once it has; close the socket once `output`
    /// is written. [`CloseReason::ReconnectPlaintext`] asks for a fresh
    /// plaintext connection for [`take_retry`](Self::take_retry).
    pub fn closed(&self) -> Option<&CloseReason> {
        self.messages.close.as_ref()
    }

    /// Messages done with so far (delivered or not).
    pub fn take_finished(&mut self) -> Vec<MessageOutcome> {
        std::mem::take(&mut self.messages.finished)
    }

    /// The STARTTLS attempts that failed so far, and what the policy did.
    pub fn take_tls_failures(&mut self) -> Vec<TlsFailed> {
        std::mem::take(&mut self.messages.tls_failures)
    }

    /// Messages never attempted because the TLS policy asked for a
    /// plaintext reconnection: submit them to the new connection.
    pub fn take_retry(&mut self) -> Vec<Outbound> {
        std::mem::take(&mut self.messages.retry)
    }

    fn drain(&mut self, now: Instant) {
        let messages = std::cell::RefCell::new(&mut self.messages);
        let _ = drive::drain(
            &mut self.session,
            &mut self.out,
            BODY_CHUNK,
            |session, out, event| messages.borrow_mut().event(session, out, now, event),
            |session, out| messages.borrow_mut().stream_body(session, out, now),
        );
    }
}

impl Messages {
    fn event(
        &mut self,
        session: &mut ClientSession,
        out: &mut Vec<u8>,
        now: Instant,
        event: Event,
    ) {
        match event {
            Event::BodyWanted(id) => {
                // Each transaction of a message sends its body from the
                // start (a second one carries the recipients a server
                // refused as too many in the first).
                let rewound = self.pending.get_mut(&id).map(|(m, _)| m.body.rewind());
                if let Some(Err(_)) = rewound {
                    return session.abort(now);
                }
                self.streaming = Some(id);
            }
            Event::TlsEstablished(info) => self.tls = Some(info),
            Event::TlsDecision { outcome, action } => {
                self.reconnecting |= action == TlsAction::ReconnectPlaintext;
                // A server that offers no STARTTLS is no failure, unless
                // the policy needed TLS and defers for it: then the
                // delivery log must say why.
                let failed = match outcome {
                    TlsOutcome::Established => false,
                    TlsOutcome::NotOffered => matches!(action, TlsAction::Defer(_)),
                    _ => true,
                };
                if failed {
                    self.tls_failures.push(TlsFailed { outcome, action });
                }
            }
            Event::TransactionDone { id, outcomes } => {
                if self.streaming == Some(id) {
                    self.streaming = None;
                }
                let Some((message, submitted)) = self.pending.remove(&id) else {
                    return;
                };
                let turn = self.last_done.map_or(submitted, |done| done.max(submitted));
                self.last_done = Some(now);
                if self.reconnecting {
                    // Never attempted: the policy decided before any MAIL.
                    self.retry.push(message);
                } else {
                    self.finished.push(MessageOutcome {
                        tag: message.tag,
                        envelope: message.envelope,
                        outcomes,
                        tls: self.tls.clone(),
                        dsn: session.capabilities().dsn,
                        elapsed: now.saturating_duration_since(turn),
                    });
                }
            }
            Event::Closed(reason) => {
                // After anything but an orderly end, what is still unsent
                // must stay so (a final dot would deliver a message already
                // reported transient).
                let orderly = matches!(
                    reason,
                    CloseReason::Quit | CloseReason::TlsDeferred | CloseReason::ReconnectPlaintext
                );
                if !orderly {
                    out.clear();
                }
                self.close = Some(reason);
            }
            _ => {}
        }
    }

    /// Moves body chunks from the source to the session while it wants
    /// them and the output is small.
    fn stream_body(
        &mut self,
        session: &mut ClientSession,
        out: &mut Vec<u8>,
        now: Instant,
    ) -> bool {
        let Some(id) = self.streaming else {
            return false;
        };
        let mut moved = false;
        while session.wants_body() && out.len() < BODY_CHUNK {
            let Some((message, _)) = self.pending.get_mut(&id) else {
                return moved;
            };
            moved = true;
            let result = match message.body.next_chunk(BODY_CHUNK) {
                // An empty chunk says nothing; taken as "no more for now" it
                // could spin, so it is an error of the source.
                Ok(Some(chunk)) if chunk.is_empty() => {
                    session.abort(now);
                    return true;
                }
                Ok(Some(chunk)) => session.send_body(now, &chunk),
                Ok(None) => {
                    self.streaming = None;
                    let _ = session.finish_body(now);
                    return true;
                }
                Err(_) => {
                    // The body cannot be read: nothing valid can follow.
                    session.abort(now);
                    return true;
                }
            };
            if result.is_err() {
                // The server refused part of the body; the outcome follows.
                self.streaming = None;
                return true;
            }
            session.poll_transmit(out);
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_core::client::tls_policy::TlsMode;
    use petrel_core::client::Recipient;
    use petrel_core::wire::command::{ForwardPath, Host, MailParams, Mailbox, ReversePath};

    fn message(tag: u64) -> Outbound {
        let mailbox = |local: &str| Mailbox {
            local_part: local.into(),
            domain: Host::Domain("d.test".into()),
        };
        Outbound {
            tag,
            envelope: Envelope {
                reverse_path: ReversePath::Mailbox(mailbox("from")),
                recipients: vec![Recipient {
                    path: ForwardPath::Mailbox(mailbox("to")),
                    params: Default::default(),
                }],
                params: MailParams::default(),
            },
            body: Box::new(BytesBody::from(Bytes::from_static(
                b"Subject: t\r\n\r\nhi\r\n",
            ))),
        }
    }

    #[test]
    fn each_outcome_says_how_long_its_message_took_on_the_connection() {
        let start = Instant::now();
        let mut config = ClientConfig::new("client.test");
        config.tls_mode = TlsMode::No;
        let mut conn = ClientConn::new(
            Arc::new(config),
            "server.test",
            ConnectionKind::First,
            start,
        );
        conn.submit(start, message(0));
        conn.submit(start, message(1));
        conn.quit(start);
        // A server without PIPELINING: each reply once its command is out.
        for (secs, reply) in [
            (1, "220 server.test\r\n"),
            (1, "250 server.test\r\n"),
            (2, "250 2.1.0 Ok\r\n"),
            (2, "250 2.1.5 Ok\r\n"),
            (2, "354 Go ahead\r\n"),
            (4, "250 2.0.0 Queued\r\n"),
            (5, "250 2.1.0 Ok\r\n"),
            (5, "250 2.1.5 Ok\r\n"),
            (5, "354 Go ahead\r\n"),
            (7, "250 2.0.0 Queued\r\n"),
            (7, "221 2.0.0 Bye\r\n"),
        ] {
            conn.output().clear();
            conn.handle_input(start + Duration::from_secs(secs), reply.as_bytes());
        }
        assert_eq!(conn.closed(), Some(&CloseReason::Quit));
        let elapsed: Vec<_> = conn
            .take_finished()
            .iter()
            .map(|finished| (finished.tag, finished.elapsed))
            .collect();
        // The first from its submission, the second from the first's end.
        assert_eq!(
            elapsed,
            [(0, Duration::from_secs(4)), (1, Duration::from_secs(3))]
        );
    }
}
