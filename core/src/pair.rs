#![cfg(test)]
//! A deterministic client↔server simulation, after quinn-proto's `Pair`:
//! one [`ClientSession`] and one server (ours, or a scripted misbehaving
//! one) joined in memory, with a virtual clock, latency, and faults (close
//! at any byte, stall, corrupt a byte).
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{
    self, ClientConfig, ClientSession, ConnectionKind, Envelope, Recipient, RecipientOutcome,
};
use crate::drive;
use crate::server::{self, ServerConfig, ServerSession};
use crate::wire::command::{ForwardPath, Host, Mailbox, ReversePath};

/// The origin of the tests' virtual clock: the one place in core that
/// reads the real clock, and only under `cfg(test)`, because `Instant` has
/// no other constructor. From here on, tests advance time by adding
/// durations; the sessions only ever get it as an argument.
pub(crate) fn origin() -> Instant {
    Instant::now()
}

/// What goes wrong on the wire.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Faults {
    /// The connection drops after this many octets client→server.
    pub close_after_c2s: Option<usize>,
    /// The connection drops after this many octets server→client.
    pub close_after_s2c: Option<usize>,
    /// Octets server→client after this many are never delivered (a stall).
    pub stall_after_s2c: Option<usize>,
    /// This server→client octet is flipped.
    pub corrupt_s2c: Option<usize>,
}

/// Answers one command line: bytes to send, and whether to close after.
pub(crate) type Answer = Box<dyn FnMut(&str) -> (Vec<u8>, bool)>;

/// A server that follows a script instead of the protocol.
pub(crate) struct Scripted {
    /// Answers one command line (without CRLF): bytes to send, and whether
    /// to close afterwards. Body lines of DATA are not shown to it; the
    /// final dot is shown as ".".
    pub answer: Answer,
    pub greeting: Vec<u8>,
    inbuf: Vec<u8>,
    in_data: bool,
    out: Vec<u8>,
    closed: bool,
    /// Bodies received, for checks.
    pub bodies: Vec<Vec<u8>>,
    body: Vec<u8>,
}

impl Scripted {
    pub fn new(answer: impl FnMut(&str) -> (Vec<u8>, bool) + 'static) -> Self {
        Self {
            answer: Box::new(answer),
            greeting: b"220 scripted ESMTP\r\n".to_vec(),
            inbuf: Vec::new(),
            in_data: false,
            out: Vec::new(),
            closed: false,
            bodies: Vec::new(),
            body: Vec::new(),
        }
    }

    fn handle_input(&mut self, data: &[u8]) {
        self.inbuf.extend_from_slice(data);
        while let Some(end) = self.inbuf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = self.inbuf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&line[..end]).into_owned();
            if self.in_data && text != "." {
                // Unstuff: a leading dot was doubled by the client.
                let line = line.strip_prefix(b".").unwrap_or(&line);
                self.body.extend_from_slice(line);
                continue;
            }
            if self.in_data {
                self.in_data = false;
                self.bodies.push(std::mem::take(&mut self.body));
            }
            let (reply, close) = (self.answer)(&text);
            if reply.starts_with(b"354") {
                self.in_data = true;
            }
            self.out.extend_from_slice(&reply);
            if close {
                self.closed = true;
                return;
            }
        }
    }
}

#[allow(clippy::large_enum_variant)]
pub(crate) enum Server {
    Ours(ServerSession),
    Scripted(Scripted),
}

/// A body being streamed, and the bodies to stream.
pub(crate) struct Pair {
    pub now: Instant,
    pub latency: Duration,
    pub faults: Faults,
    pub client: ClientSession,
    pub server: Server,
    /// Every octet the client put on the wire, in order.
    pub c2s_wire: Vec<u8>,
    pub s2c_sent: usize,
    c2s: VecDeque<(Instant, Vec<u8>)>,
    s2c: VecDeque<(Instant, Vec<u8>)>,
    /// Bodies to send, by transaction.
    pub bodies: BTreeMap<client::TransactionId, Vec<u8>>,
    streaming: Option<(client::TransactionId, usize)>,
    /// Chunk size the client application streams in.
    pub body_chunk: usize,
    pub client_events: Vec<client::Event>,
    pub server_events: Vec<server::Event>,
    /// Bodies our server accepted.
    pub delivered: Vec<Vec<u8>>,
    server_body: Vec<u8>,
    dropped: bool,
}

impl Pair {
    pub fn new(client: ClientConfig, server: Server, now: Instant) -> Self {
        Self {
            now,
            latency: Duration::from_millis(10),
            faults: Faults::default(),
            client: ClientSession::new(Arc::new(client), "localhost", ConnectionKind::First, now),
            server,
            c2s_wire: Vec::new(),
            s2c_sent: 0,
            c2s: VecDeque::new(),
            s2c: VecDeque::new(),
            bodies: BTreeMap::new(),
            streaming: None,
            body_chunk: 4096,
            client_events: Vec::new(),
            server_events: Vec::new(),
            delivered: Vec::new(),
            server_body: Vec::new(),
            dropped: false,
        }
    }

    pub fn ours(client: ClientConfig, server: ServerConfig) -> Self {
        let now = origin();
        let server = Server::Ours(ServerSession::new(Arc::new(server), now));
        Self::new(client, server, now)
    }

    pub fn scripted(client: ClientConfig, script: Scripted) -> Self {
        let now = origin();
        let mut pair = Self::new(client, Server::Scripted(script), now);
        if let Server::Scripted(s) = &mut pair.server {
            let greeting = s.greeting.clone();
            s.out.extend_from_slice(&greeting);
        }
        pair
    }

    pub fn submit(&mut self, envelope: Envelope, body: Vec<u8>) -> client::TransactionId {
        let id = self.client.submit(self.now, envelope);
        self.bodies.insert(id, body);
        id
    }

    /// Runs until nothing more happens (bounded).
    pub fn drive(&mut self) {
        for _ in 0..100_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the pair never settles");
    }

    fn step(&mut self) -> bool {
        let mut progress = false;
        // Client output and events, the application streaming bodies.
        let mut out = Vec::new();
        let (now, bodies, chunk) = (self.now, &self.bodies, self.body_chunk);
        // Both closures need the body being streamed.
        let streaming = std::cell::Cell::new(self.streaming);
        let mut moved = false;
        let client_events = &mut self.client_events;
        let on_event = |_: &mut ClientSession, _: &mut Vec<u8>, event: client::Event| {
            moved = true;
            if let client::Event::BodyWanted(id) = event {
                streaming.set(Some((id, 0)));
            }
            client_events.push(event);
        };
        let feed = |client: &mut ClientSession, _: &mut Vec<u8>| {
            let (state, fed) = stream_body(client, now, bodies, chunk, streaming.get());
            streaming.set(state);
            fed
        };
        let _ = drive::drain(&mut self.client, &mut out, usize::MAX, on_event, feed);
        self.streaming = streaming.get();
        progress |= moved || !out.is_empty();
        if !out.is_empty() {
            self.send_c2s(out);
        }
        // Server output and events.
        progress |= self.server_step();
        // Deliveries due now.
        progress |= self.deliver();
        if progress {
            return true;
        }
        // Nothing to do now: jump to the next instant something happens.
        let next = [
            self.c2s.front().map(|(t, _)| *t),
            self.s2c.front().map(|(t, _)| *t),
            self.client.poll_timeout(),
            match &self.server {
                Server::Ours(s) => s.poll_timeout(),
                Server::Scripted(_) => None,
            },
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        self.client.handle_timeout(self.now);
        if let Server::Ours(s) = &mut self.server {
            s.handle_timeout(self.now);
        }
        true
    }

    fn server_step(&mut self) -> bool {
        let mut out = Vec::new();
        let mut progress = false;
        match &mut self.server {
            Server::Ours(s) => {
                let now = self.now;
                let (body, delivered) = (&mut self.server_body, &mut self.delivered);
                let server_events = &mut self.server_events;
                let on_event = |s: &mut ServerSession, _: &mut Vec<u8>, event: server::Event| {
                    progress = true;
                    match &event {
                        server::Event::Mail { .. } | server::Event::Rcpt { .. } => {
                            s.accept(now).unwrap();
                        }
                        server::Event::Body(chunk) => body.extend_from_slice(chunk),
                        server::Event::MessageEnd { .. } => {
                            delivered.push(std::mem::take(body));
                            s.accept(now).unwrap();
                        }
                        server::Event::TransactionAborted(_) => body.clear(),
                        _ => {}
                    }
                    server_events.push(event);
                };
                let _ = drive::drain(s, &mut out, usize::MAX, on_event, |_, _| false);
            }
            Server::Scripted(s) => out.append(&mut s.out),
        }
        if !out.is_empty() {
            progress = true;
            self.send_s2c(out);
        }
        progress
    }

    fn send_c2s(&mut self, out: Vec<u8>) {
        if self.dropped {
            return;
        }
        let mut out = out;
        if let Some(limit) = self.faults.close_after_c2s {
            let room = limit.saturating_sub(self.c2s_wire.len());
            if out.len() >= room {
                out.truncate(room);
                self.dropped = true;
            }
        }
        self.c2s_wire.extend_from_slice(&out);
        self.c2s.push_back((self.now + self.latency, out));
    }

    fn send_s2c(&mut self, out: Vec<u8>) {
        if self.dropped {
            return;
        }
        let mut out = out;
        let start = self.s2c_sent;
        if let Some(at) = self.faults.corrupt_s2c {
            if (start..start + out.len()).contains(&at) {
                out[at - start] ^= 0x5a;
            }
        }
        if let Some(limit) = self.faults.stall_after_s2c {
            out.truncate(limit.saturating_sub(start));
        }
        if let Some(limit) = self.faults.close_after_s2c {
            let room = limit.saturating_sub(start);
            if out.len() >= room {
                out.truncate(room);
                self.dropped = true;
            }
        }
        self.s2c_sent += out.len();
        self.s2c.push_back((self.now + self.latency, out));
    }

    fn deliver(&mut self) -> bool {
        let mut progress = false;
        while self.c2s.front().is_some_and(|(t, _)| *t <= self.now) {
            let (_, bytes) = self.c2s.pop_front().unwrap();
            progress = true;
            match &mut self.server {
                Server::Ours(s) => s.handle_input(self.now, &bytes),
                Server::Scripted(s) if !s.closed => s.handle_input(&bytes),
                Server::Scripted(_) => {}
            }
        }
        while self.s2c.front().is_some_and(|(t, _)| *t <= self.now) {
            let (_, bytes) = self.s2c.pop_front().unwrap();
            progress = true;
            self.client.handle_input(self.now, &bytes);
        }
        let server_closed = match &self.server {
            Server::Ours(s) => s.is_closed(),
            Server::Scripted(s) => s.closed && s.out.is_empty(),
        };
        if (self.dropped || server_closed) && self.c2s.is_empty() && self.s2c.is_empty() {
            if !self.client.is_closed() {
                self.client.handle_eof(self.now);
                progress = true;
            }
            if self.dropped {
                if let Server::Ours(s) = &mut self.server {
                    if !s.is_closed() {
                        s.handle_eof(self.now);
                        progress = true;
                    }
                }
            }
        }
        progress
    }

    /// Outcomes by transaction, from the client's events.
    pub fn outcomes(&self) -> BTreeMap<client::TransactionId, Vec<RecipientOutcome>> {
        let mut all = BTreeMap::new();
        for event in &self.client_events {
            if let client::Event::TransactionDone { id, outcomes } = event {
                assert!(
                    all.insert(*id, outcomes.clone()).is_none(),
                    "{id:?} done twice"
                );
            }
        }
        all
    }
}

/// The application streaming the body `streaming` names, while the client
/// wants it: the new streaming state, and whether anything moved.
fn stream_body(
    client: &mut ClientSession,
    now: Instant,
    bodies: &BTreeMap<client::TransactionId, Vec<u8>>,
    chunk: usize,
    streaming: Option<(client::TransactionId, usize)>,
) -> (Option<(client::TransactionId, usize)>, bool) {
    let Some((id, mut offset)) = streaming else {
        return (None, false);
    };
    let body = bodies.get(&id).map(Vec::as_slice).unwrap_or_default();
    let mut progress = false;
    while offset < body.len() && client.wants_body() {
        let end = (offset + chunk).min(body.len());
        if client.send_body(now, &body[offset..end]).is_err() {
            return (None, true);
        }
        offset = end;
        progress = true;
    }
    if offset >= body.len() {
        let _ = client.finish_body(now);
        return (None, true);
    }
    (Some((id, offset)), progress)
}

/// `local@domain` as a mailbox.
pub(crate) fn mailbox(address: &str) -> Mailbox {
    let (local, domain) = address.split_once('@').unwrap();
    Mailbox {
        local_part: local.into(),
        domain: Host::Domain(domain.into()),
    }
}

/// A simple envelope.
pub(crate) fn envelope(from: &str, to: &[&str]) -> Envelope {
    Envelope {
        reverse_path: if from.is_empty() {
            ReversePath::Null
        } else {
            ReversePath::Mailbox(mailbox(from))
        },
        recipients: to
            .iter()
            .map(|address| Recipient {
                path: ForwardPath::Mailbox(mailbox(address)),
                params: Default::default(),
            })
            .collect(),
        params: Default::default(),
    }
}
