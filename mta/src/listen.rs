//! The inbound side: a runtime [`Handler`] that checks relaying, stamps a
//! `Received:` header, hands each message to the spool and answers its end
//! only once the spool says it is durable.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use petrel_core::server::{Event, Extensions, ServerConfig};
use petrel_core::tls::{ServerTls, ServerTlsConfig, TlsInfo};
use petrel_core::wire::command::{ForwardPath, Host, Notify, ReversePath};
use petrel_core::wire::reply::{EnhancedCode, Reply};
use petrel_runtime_common::listen::{ListenerConfig, PeerConfig, ServeConfig};
use petrel_runtime_common::server::{ConnectionInfo, Decision, Handler, Hold};
use serde_json::json;

use crate::config::policy::{CertificateSource, InboundPolicy, ListenPolicy, Policies};
use crate::log::{self, Log};
use crate::spool::message::{Envelope, QueueId, Recipient};
use crate::spool::{Spool, StoreError, StoredMessage};

/// Why the listeners could not be configured.
#[derive(Debug)]
pub enum SetupError {
    /// A certificate or key file could not be read.
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The engine refused the certificate and key, or the session
    /// configuration is inconsistent.
    Tls(String),
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::Read { path, error } => write!(f, "{}: {error}", path.display()),
            SetupError::Tls(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for SetupError {}

/// Builds what the runtimes serve from the resolved listeners. Each
/// distinct policy is built once; a self-signed certificate is made once
/// per process and shared.
pub fn serve_config(policies: &Policies) -> Result<ServeConfig, SetupError> {
    let mut built = Builder::default();
    let mut listeners = Vec::new();
    for listen in &policies.listeners {
        let default_peer = built.peer(&listen.default)?;
        let mut config = ListenerConfig::new(listen.addr, ServerConfig::new(""));
        config.backlog = listen.backlog;
        config.default_peer = default_peer;
        for (network, policy) in &listen.peers {
            config.peers.push((*network, built.peer(policy)?));
        }
        listeners.push(config);
    }
    Ok(ServeConfig {
        listeners,
        max_connections: policies.max_sessions,
        threads: None,
    })
}

#[derive(Default)]
struct Builder {
    self_signed: HashMap<String, (Vec<u8>, Vec<u8>)>,
    /// Keyed by the policy's address: `Arc`s shared between scopes are
    /// built once.
    peers: HashMap<usize, PeerConfig>,
}

impl Builder {
    fn peer(&mut self, policy: &Arc<InboundPolicy>) -> Result<PeerConfig, SetupError> {
        let key = Arc::as_ptr(policy) as usize;
        if let Some(peer) = self.peers.get(&key) {
            return Ok(peer.clone());
        }
        let mut server = ServerConfig::new(policy.received_hostname.clone());
        server.limits.max_message_size = policy.max_message_size;
        server.limits.max_recipients = policy.max_recipients;
        server.timeouts.command = policy.idle_time;
        server.extensions = Extensions {
            pipelining: policy.pipelining,
            eight_bit_mime: policy.eight_bit_mime,
            smtputf8: policy.smtputf8,
            chunking: policy.chunking,
            dsn: policy.dsn,
            ..Extensions::default()
        };
        server.injection_policy = policy.injection_policy;
        if let (Some(tls), true) = (&policy.tls, policy.starttls) {
            let (cert, key) = match &tls.certificate {
                CertificateSource::Files { certificate, key } => (read(certificate)?, read(key)?),
                CertificateSource::SelfSigned => self.self_signed(&policy.received_hostname)?,
            };
            let mut config = ServerTlsConfig::new(tls.engine, cert, key);
            // rustls never renegotiates whatever it is told; the
            // configuration check already warned where `true` was set
            // explicitly, so the engine is not asked to warn again about
            // Momentum's default.
            config.allow_renegotiation =
                tls.allow_renegotiation && tls.engine == petrel_core::tls::TlsEngine::Openssl;
            config.max_renegotiations = tls.max_renegotiations;
            let built = ServerTls::new(&config).map_err(|e| SetupError::Tls(e.to_string()))?;
            for warning in built.warnings() {
                eprintln!("petrel: warning: {warning}");
            }
            server.tls = Some(built);
        }
        server
            .validate()
            .map_err(|e| SetupError::Tls(e.to_string()))?;
        let mut peer = PeerConfig::new(server);
        peer.max_connections_per_ip = policy.max_connections_per_ip;
        self.peers.insert(key, peer.clone());
        Ok(peer)
    }

    fn self_signed(&mut self, name: &str) -> Result<(Vec<u8>, Vec<u8>), SetupError> {
        if let Some(pair) = self.self_signed.get(name) {
            return Ok(pair.clone());
        }
        let made = rcgen::generate_simple_self_signed(vec![name.to_owned()])
            .map_err(|e| SetupError::Tls(format!("cannot make a self-signed certificate: {e}")))?;
        let pair = (
            made.cert.pem().into_bytes(),
            made.signing_key.serialize_pem().into_bytes(),
        );
        self.self_signed.insert(name.to_owned(), pair.clone());
        Ok(pair)
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|error| SetupError::Read {
        path: path.to_owned(),
        error,
    })
}

/// The listeners' handler: one per process, shared by every connection of
/// every listener.
pub struct Reception {
    listeners: Vec<ListenPolicy>,
    /// The addresses actually bound, in the order of `listeners` (port 0
    /// resolved); set once the runtime has bound them.
    bound: Mutex<Vec<SocketAddr>>,
    spool: Spool,
    log: Log,
    connections: Shards,
    /// Told of each message once it is durable (the queue).
    on_stored: StoredHook,
}

/// What is told of each message once it is stored.
pub type StoredHook = Arc<dyn Fn(StoredMessage) + Send + Sync>;

impl std::fmt::Debug for Reception {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reception")
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

/// Per-connection state, split so that connections on different runtime
/// threads rarely wait for each other.
#[derive(Debug)]
struct Shards(Vec<Mutex<HashMap<u64, Conn>>>);

const SHARDS: usize = 64;

impl Shards {
    fn new() -> Self {
        Self((0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect())
    }

    fn with<R>(&self, id: u64, f: impl FnOnce(&mut HashMap<u64, Conn>) -> R) -> Option<R> {
        let shard = self.0.get(usize::try_from(id).unwrap_or(0) % SHARDS)?;
        Some(f(&mut shard.lock().unwrap_or_else(PoisonError::into_inner)))
    }
}

#[derive(Debug)]
struct Conn {
    policy: Arc<InboundPolicy>,
    helo: Option<String>,
    tls: Option<(String, String)>,
    transaction: Option<Transaction>,
}

#[derive(Debug)]
struct Transaction {
    sender: String,
    ret: Option<String>,
    envid: Option<String>,
    recipients: Vec<Recipient>,
    /// Set when the body begins, with the time it arrived.
    id: Option<(QueueId, SystemTime)>,
    /// The body not yet spilled.
    body: Vec<Bytes>,
    /// Octets in `body`.
    held: usize,
    /// Octets of the whole body, the `Received:` header included.
    size: u64,
    /// Some of the body went to the spool already ([`SPILL_AT`]).
    spilled: bool,
    /// The `Received:` fields the client's header section holds.
    hops: HopCount,
}

/// A message that already passed this many relays is in a loop: RFC 5321
/// §6.3 asks a relay that counts `Received:` fields for a threshold of
/// "at least 100"; it gets `554 5.4.6` (RFC 3463: routing loop detected).
const MAX_HOPS: u32 = 100;

/// Counts the `Received:` fields of a header section fed in pieces split
/// anywhere, up to the empty line that ends it.
#[derive(Debug, Default)]
struct HopCount {
    hops: u32,
    /// The current line's first octets, as far as they decide anything.
    start: Vec<u8>,
    /// Octets of the current line seen (the start is kept up to
    /// `b"received:".len()`).
    line_len: usize,
    /// The empty line was seen: the body follows.
    done: bool,
}

impl HopCount {
    fn feed(&mut self, piece: &[u8]) {
        const FIELD: &[u8] = b"received:";
        for &b in piece {
            if self.done {
                return;
            }
            if b == b'\n' {
                // CRLF or a bare LF alone on a line ends the section.
                if self.line_len == 0 || self.start == b"\r" {
                    self.done = true;
                }
                if self.start.len() == FIELD.len() && self.start.eq_ignore_ascii_case(FIELD) {
                    self.hops += 1;
                }
                self.start.clear();
                self.line_len = 0;
                continue;
            }
            if self.start.len() < FIELD.len() && self.line_len == self.start.len() {
                self.start.push(b);
            }
            self.line_len += 1;
        }
    }
}

/// A message body held past this many octets goes to the spool's file for
/// it ([`Spool::spill`]), so that a session holds at most about this much
/// of a message, whatever `Max_Message_Size` allows.
const SPILL_AT: usize = 1 << 20;

impl Transaction {
    /// The envelope to store, once the body has begun.
    fn envelope(&self, client: SocketAddr, binding: &str) -> Option<Envelope> {
        let (_, received_at) = self.id?;
        Some(Envelope {
            sender: self.sender.clone(),
            recipients: self.recipients.clone(),
            ret: self.ret.clone(),
            envid: self.envid.clone(),
            received_at,
            client,
            binding: binding.to_owned(),
        })
    }

    fn push(&mut self, piece: Bytes) {
        self.held += piece.len();
        self.size += piece.len() as u64;
        self.body.push(piece);
    }
}

impl Reception {
    /// A handler for `policies`' listeners, storing into `spool`, and
    /// telling `on_stored` of each message stored.
    pub fn new(policies: &Policies, spool: Spool, log: Log, on_stored: StoredHook) -> Self {
        Self {
            listeners: policies.listeners.clone(),
            // The configured addresses until the runtime says which ports
            // it got (they differ only for port 0).
            bound: Mutex::new(policies.listeners.iter().map(|l| l.addr).collect()),
            spool,
            log,
            connections: Shards::new(),
            on_stored,
        }
    }

    /// Tells the handler the addresses the runtime bound, in listener
    /// order, before any connection is served.
    pub fn set_bound(&self, addrs: Vec<SocketAddr>) {
        *self.bound.lock().unwrap_or_else(PoisonError::into_inner) = addrs;
    }

    /// The policy of a connection to `local` from `peer`: the listener
    /// bound at `local` (an unspecified address matches any), then its most
    /// specific `Peer`, as the runtime chose the session's configuration.
    fn policy_for(&self, local: SocketAddr, peer: IpAddr) -> Option<Arc<InboundPolicy>> {
        let bound = self.bound.lock().unwrap_or_else(PoisonError::into_inner);
        let index = bound.iter().position(|addr| {
            addr.port() == local.port() && (addr.ip() == local.ip() || addr.ip().is_unspecified())
        })?;
        let listen = self.listeners.get(index)?;
        Some(
            listen
                .peers
                .iter()
                .filter(|(network, _)| network.contains(peer))
                .max_by_key(|(network, _)| network.prefix())
                .map_or(&listen.default, |(_, policy)| policy)
                .clone(),
        )
    }

    fn refuse(&self, info: &ConnectionInfo, stage: &str, detail: serde_json::Value, reply: &Reply) {
        self.log.record(json!({
            "event": "refusal",
            "stage": stage,
            "client": info.peer.to_string(),
            "listener": info.local.to_string(),
            "detail": detail,
            "reply": reply_text(reply),
        }));
    }
}

impl Handler for Reception {
    fn on_event(&self, info: &ConnectionInfo, event: &Event, decision: Option<Decision>) {
        self.handle(info, event, decision, None);
    }

    fn on_body(&self, info: &ConnectionInfo, event: &Event, hold: Hold) {
        self.handle(info, event, None, Some(hold));
    }
}

impl Reception {
    /// An event of a connection; `hold`, for a piece of the body, is kept
    /// until the spool has written the piece when it is spilled.
    fn handle(
        &self,
        info: &ConnectionInfo,
        event: &Event,
        decision: Option<Decision>,
        hold: Option<Hold>,
    ) {
        if let Event::Closed(_) = event {
            let conn = self
                .connections
                .with(info.id, |conns| conns.remove(&info.id))
                .flatten();
            if let Some(transaction) = conn.and_then(|c| c.transaction) {
                self.abandon(&transaction);
            }
            return;
        }
        let policy = self
            .connections
            .with(info.id, |conns| {
                conns.get(&info.id).map(|c| c.policy.clone())
            })
            .flatten()
            .or_else(|| self.policy_for(info.local, info.peer.ip()));
        let Some(policy) = policy else {
            // Not one of ours (cannot happen): refuse rather than guess.
            if let Some(decision) = decision {
                decision.respond(Reply::new(
                    451,
                    Some(EnhancedCode::new(4, 3, 0)),
                    "Error: no policy for this listener",
                ));
            }
            return;
        };
        let outcome = self.connections.with(info.id, |conns| {
            let conn = conns.entry(info.id).or_insert_with(|| Conn {
                policy: policy.clone(),
                helo: None,
                tls: None,
                transaction: None,
            });
            self.step(info, conn, event, hold)
        });
        match (outcome.flatten(), decision) {
            (Some(Step::Answer(reply)), Some(decision)) => decision.respond(reply),
            (Some(Step::Store(message)), Some(decision)) => self.store(info, *message, decision),
            (_, Some(decision)) => decision.accept(),
            (_, None) => {}
        }
    }
}

/// What an event needs beyond the connection's own state.
enum Step {
    Answer(Reply),
    Store(Box<Message>),
}

struct Message {
    id: QueueId,
    envelope: Envelope,
    /// What was not spilled of the body.
    body: Vec<Bytes>,
    /// The whole body's size in the spool.
    stored_size: u64,
    /// The size the session counted.
    size: u64,
    tls: Option<(String, String)>,
}

impl Reception {
    /// Updates `conn` for `event`; `Some` when the decision needs more
    /// than the usual acceptance.
    fn step(
        &self,
        info: &ConnectionInfo,
        conn: &mut Conn,
        event: &Event,
        hold: Option<Hold>,
    ) -> Option<Step> {
        match event {
            Event::Hello { name, .. } => {
                conn.helo = Some(name.clone());
                self.end_transaction(conn);
            }
            Event::TlsEstablished(tls) => {
                conn.tls = Some(tls_names(tls));
                conn.helo = None;
                self.end_transaction(conn);
            }
            Event::Mail {
                reverse_path,
                params,
            } => {
                self.end_transaction(conn);
                conn.transaction = Some(Transaction {
                    sender: match reverse_path {
                        ReversePath::Null => String::new(),
                        ReversePath::Mailbox(mailbox) => mailbox.to_string(),
                    },
                    ret: params
                        .ret
                        .map(|ret| format!("{ret:?}").to_ascii_uppercase()),
                    envid: params.envid.clone(),
                    recipients: Vec::new(),
                    id: None,
                    body: Vec::new(),
                    held: 0,
                    size: 0,
                    spilled: false,
                    hops: HopCount::default(),
                });
            }
            Event::Rcpt {
                forward_path,
                params,
            } => {
                let (address, domain) = match forward_path {
                    ForwardPath::Postmaster => (
                        "Postmaster".to_owned(),
                        Host::Domain(conn.policy.received_hostname.clone()),
                    ),
                    ForwardPath::Mailbox(mailbox) => (mailbox.to_string(), mailbox.domain.clone()),
                };
                if !may_relay(&conn.policy, info.peer.ip(), &domain) {
                    let reply = Reply::new(
                        554,
                        Some(EnhancedCode::new(5, 7, 1)),
                        format!("<{address}>: Relay access denied"),
                    );
                    let sender = conn.transaction.as_ref().map(|t| t.sender.clone());
                    self.refuse(
                        info,
                        "rcpt",
                        json!({ "sender": sender, "recipient": address }),
                        &reply,
                    );
                    return Some(Step::Answer(reply));
                }
                if let Some(transaction) = &mut conn.transaction {
                    transaction.recipients.push(Recipient {
                        address,
                        notify: params.notify.map(notify_text),
                        orcpt: params
                            .orcpt
                            .as_ref()
                            .map(|o| format!("{};{}", o.addr_type, o.address)),
                    });
                }
            }
            Event::BodyStart { .. } => {
                let id = self.spool.new_id();
                let now = SystemTime::now();
                let received = received_header(info, conn, id, now);
                if let Some(transaction) = &mut conn.transaction {
                    transaction.id = Some((id, now));
                    transaction.push(Bytes::from(received));
                }
            }
            Event::Body(piece) => {
                let transaction = conn.transaction.as_mut()?;
                transaction.hops.feed(piece);
                transaction.push(piece.clone());
                if transaction.held >= SPILL_AT {
                    let (id, _) = transaction.id?;
                    let envelope = transaction.envelope(info.peer, &conn.policy.binding)?;
                    // The client is not read again until the spool has
                    // written this part: however far the writer falls
                    // behind, a session holds at most about SPILL_AT.
                    self.spool.spill(
                        id,
                        &envelope,
                        std::mem::take(&mut transaction.body),
                        move || drop(hold),
                    );
                    transaction.held = 0;
                    transaction.spilled = true;
                }
            }
            Event::MessageEnd { size, .. } => {
                let mut transaction = conn.transaction.take()?;
                let (id, _) = transaction.id?;
                if transaction.hops.hops >= MAX_HOPS {
                    self.abandon(&transaction);
                    let reply = Reply::new(
                        554,
                        Some(EnhancedCode::new(5, 4, 6)),
                        format!(
                            "Too many hops: {} Received: fields, a mail loop",
                            transaction.hops.hops
                        ),
                    );
                    self.refuse(
                        info,
                        "data",
                        json!({ "sender": transaction.sender, "hops": transaction.hops.hops }),
                        &reply,
                    );
                    return Some(Step::Answer(reply));
                }
                let envelope = transaction.envelope(info.peer, &conn.policy.binding)?;
                return Some(Step::Store(Box::new(Message {
                    id,
                    envelope,
                    body: std::mem::take(&mut transaction.body),
                    stored_size: transaction.size,
                    size: *size,
                    tls: conn.tls.clone(),
                })));
            }
            Event::TransactionAborted(_) => self.end_transaction(conn),
            _ => {}
        }
        None
    }

    /// Ends the connection's transaction, if any, unstored.
    fn end_transaction(&self, conn: &mut Conn) {
        if let Some(transaction) = conn.transaction.take() {
            self.abandon(&transaction);
        }
    }

    /// Removes what was spilled of a transaction that ends unstored.
    fn abandon(&self, transaction: &Transaction) {
        if let (true, Some((id, _))) = (transaction.spilled, transaction.id) {
            self.spool.discard(id);
        }
    }

    /// Hands `message` to the spool; `decision` is answered from the
    /// spool's writer once the message is durable, or refused.
    fn store(&self, info: &ConnectionInfo, message: Message, decision: Decision) {
        let log = self.log.clone();
        let info = *info;
        let Message {
            id,
            envelope,
            body,
            stored_size,
            size,
            tls,
        } = message;
        let record = json!({
            "queue_id": id.to_string(),
            "sender": envelope.sender,
            "recipients": envelope.recipients.iter().map(|r| r.address.clone()).collect::<Vec<_>>(),
            "size": size,
            "client": info.peer.to_string(),
            "listener": info.local.to_string(),
            "binding": envelope.binding,
            "tls": tls.as_ref().map(|(version, cipher)| json!({ "version": version, "cipher": cipher })),
        });
        let on_stored = self.on_stored.clone();
        let queued = StoredMessage::new(id, envelope.clone(), stored_size);
        self.spool.store(
            id,
            envelope,
            body,
            Box::new(move |stored: Result<(), StoreError>| {
                let stored_ok = stored.is_ok();
                let (reply, event) = match stored {
                    Ok(()) => (
                        Reply::new(
                            250,
                            Some(EnhancedCode::new(2, 0, 0)),
                            format!("Ok: queued as {id}"),
                        ),
                        "reception",
                    ),
                    Err(error) => (store_refusal(&error), "refusal"),
                };
                let mut record = record;
                if let Some(object) = record.as_object_mut() {
                    object.insert("event".into(), event.into());
                    object.insert("reply".into(), reply_text(&reply).into());
                    if event == "refusal" {
                        object.insert("stage".into(), "data".into());
                    }
                }
                // Logged first: once the client has its answer, the
                // record is in the log's queue (rotation relies on it).
                log.record(record);
                decision.respond(reply);
                if stored_ok {
                    on_stored(queued);
                }
            }),
        );
    }
}

/// The reply for a message the spool could not take: the client keeps it
/// and tries again later.
fn store_refusal(error: &StoreError) -> Reply {
    match error {
        StoreError::Full => Reply::new(
            452,
            Some(EnhancedCode::new(4, 3, 1)),
            "Insufficient system storage",
        ),
        _ => Reply::new(
            451,
            Some(EnhancedCode::new(4, 3, 0)),
            "Local error in processing: the message could not be stored",
        ),
    }
}

/// Relay control: a client in `Relay_Hosts`, or any client of an
/// `Open_Relay` scope, may send anywhere; everyone else only to
/// `Relay_Domains`. Address literals are never in `Relay_Domains`.
pub fn may_relay(policy: &InboundPolicy, client: IpAddr, domain: &Host) -> bool {
    if policy.open_relay || policy.relay_hosts.iter().any(|net| net.contains(client)) {
        return true;
    }
    match domain {
        Host::Domain(domain) => policy.relay_domains.iter().any(|p| p.matches(domain)),
        _ => false,
    }
}

fn tls_names(tls: &TlsInfo) -> (String, String) {
    (tls.version.to_string(), tls.cipher.clone())
}

fn notify_text(notify: Notify) -> String {
    match notify {
        Notify::Some {
            success,
            failure,
            delay,
        } => [(success, "SUCCESS"), (failure, "FAILURE"), (delay, "DELAY")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| *name)
            .collect::<Vec<_>>()
            .join(","),
        _ => "NEVER".to_owned(),
    }
}

fn reply_text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.to_bytes())
        .trim_end()
        .replace("\r\n", " ")
}

/// The trace header of RFC 5321 §4.4, with the protocol keyword of RFC
/// 3848 (`ESMTPS` over TLS) and, in a comment, the TLS version and cipher
/// or that the message came in plaintext.
fn received_header(info: &ConnectionInfo, conn: &Conn, id: QueueId, now: SystemTime) -> Vec<u8> {
    let helo = conn.helo.as_deref().unwrap_or("unknown");
    let ip = match info.peer.ip() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("IPv6:{v6}"),
    };
    let protocol = if conn.tls.is_some() {
        "ESMTPS"
    } else {
        "ESMTP"
    };
    let tls = match &conn.tls {
        Some((version, cipher)) => format!("(using {version} with cipher {cipher})"),
        None => "(plaintext)".to_owned(),
    };
    let recipients = conn
        .transaction
        .as_ref()
        .map_or(&[][..], |t| &t.recipients[..]);
    let for_clause = match recipients {
        [only] => format!("\r\n\tfor <{}>", only.address),
        _ => String::new(),
    };
    format!(
        "Received: from {helo} ([{ip}])\r\n\tby {host} (Petrel) with {protocol} id {id}\r\n\t{tls}{for_clause};\r\n\t{date}\r\n",
        host = conn.policy.received_hostname,
        date = log::rfc5322(now),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::HopCount;

    fn count(pieces: &[&[u8]]) -> (u32, bool) {
        let mut hops = HopCount::default();
        for piece in pieces {
            hops.feed(piece);
        }
        (hops.hops, hops.done)
    }

    #[test]
    fn received_fields_are_counted_in_the_header_section_only() {
        let message: &[u8] = b"Received: from a\r\n\tby b; date\r\nRECEIVED:x\r\n\
            X-Received: no\r\nReceived-SPF: no\r\nSubject: Received: no\r\n \
            Received: folded, no\r\nreceived:\r\n\r\nReceived: in the body\r\n";
        // Split anywhere, in two or in single octets: the same count.
        for at in 0..=message.len() {
            let (head, tail) = message.split_at(at);
            assert_eq!(count(&[head, tail]), (3, true), "split at {at}");
        }
        let octets: Vec<&[u8]> = message.chunks(1).collect();
        assert_eq!(count(&octets), (3, true));
        // Bare LF line ends; a section never ended counts what it has.
        assert_eq!(
            count(&[b"Received: a\nReceived: b\n\nReceived: c\n"]),
            (2, true)
        );
        assert_eq!(count(&[b"Received: a\r\nReceived: b"]), (1, false));
    }
}
