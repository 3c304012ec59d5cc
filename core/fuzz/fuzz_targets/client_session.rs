//! A client session fed arbitrary server input in arbitrary pieces (and
//! canned replies, to get deep quickly), with envelopes submitted, bodies
//! streamed and finished, timeouts, EOF, QUIT and abort driven by the fuzz
//! input, under every TLS mode; a real TLS server (Petrel's own rustls or
//! OpenSSL engine, the fixed certificate) can take over after a `220` to
//! STARTTLS, and raw octets can be injected on the wire at any time.
//!
//! Asserts, besides "no panic":
//! - bounded buffers: each `poll_transmit` yields at most what the
//!   application handed over since the last one (body octets, stuffed, and
//!   the commands of envelopes not yet done) plus a constant, and the live
//!   heap stays within a budget of the reply parser's limits, the early
//!   input the session holds while a body is written, the envelopes in
//!   progress, and what the TLS server keeps of the largest burst it was
//!   given;
//! - every submitted envelope gets exactly one `TransactionDone`, with one
//!   outcome per recipient in envelope order, whose delivery matches its
//!   reply's class, by the time the connection is over; nothing but those
//!   follows `Closed`; body calls are refused when no body is wanted;
//! - TLS policy: `MAIL FROM` never goes in plaintext under `required`, nor
//!   on a connection where STARTTLS was sent; STARTTLS never goes under
//!   `no` or on a plaintext-only connection.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use petrel_core::client::tls_policy::TlsMode;
use petrel_core::client::{
    BodyError, ClientConfig, ClientSession, ConnectionKind, Delivery, Envelope, Event, Recipient,
    TransactionId,
};
use petrel_core::tls::{TlsEngine, TlsSession};
use petrel_core::wire::command::{
    BodyType, ForwardPath, Host, MailParams, Mailbox, Notify, Orcpt, RcptParams, Ret, ReversePath,
};
use petrel_core_fuzz::heap::HeapBound;
use petrel_core_fuzz::ops::Ops;
use petrel_core_fuzz::tls::{client_tls, server_tls};

/// What the driver reads from its socket at once.
const READ_SIZE: usize = 4096;
/// What one command of an envelope may take on the wire (ours are short).
const COMMAND_BOUND: usize = 512;
/// Output not owed to the application: EHLO, HELO, STARTTLS, RSET, QUIT,
/// a TLS handshake flight.
const OUT_SLACK: usize = 16 * 1024;
/// The reply parser's worst case (256 lines of 4 KiB, each octet of which
/// may become three in lossy UTF-8), the 64 KiB of early input, and rustls
/// on both sides.
const HEAP_BASE: usize = 4 * 1024 * 1024 + 512 * 1024;
/// What one recipient of an envelope in progress may hold: its outcome's
/// reply (one server reply line or one of ours).
const HEAP_PER_RECIPIENT: usize = 16 * 1024;

/// Replies a server sends, to reach deep states from short inputs.
const REPLIES: &[&[u8]] = &[
    b"220 server.test ESMTP\r\n",
    b"250-server.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250-BINARYMIME\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n",
    b"250-server.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
    b"250-server.test\r\n250-CHUNKING\r\n250 SIZE 10\r\n",
    b"250 server.test\r\n",
    b"250 2.1.0 Ok\r\n",
    b"354 End data with <CR><LF>.<CR><LF>\r\n",
    b"220 2.0.0 Ready to start TLS\r\n",
    b"452 4.5.3 Too many recipients\r\n",
    b"550 5.1.1 No such user\r\n",
    b"451 4.3.0 Try later\r\n",
    b"421 4.4.2 Closing\r\n",
    b"221 2.0.0 Bye\r\n",
    b"500 5.5.2 What\r\n",
    b"554 5.7.1 Refused\r\n",
    b"250-first\r\n250-second\r\n",
];

struct Harness {
    session: ClientSession,
    now: Instant,
    mode: TlsMode,
    plaintext_only: bool,
    /// The TLS server, once it took over.
    peer: Option<Box<dyn TlsSession>>,
    peer_failed: bool,
    /// The most plaintext the TLS server was given at once. Its engine's
    /// buffers keep a bulk burst's capacity until a small one follows
    /// (`KEEP` in `core/src/tls/transport.rs`): the harness's doing, not
    /// the session's.
    peer_burst: usize,
    /// Recipients of every submitted envelope.
    submitted: BTreeMap<TransactionId, usize>,
    done: BTreeSet<TransactionId>,
    /// Submitted after `Closed`: their outcomes may follow it.
    after_close: BTreeSet<TransactionId>,
    wanted: Option<TransactionId>,
    closed: bool,
    tls_established: bool,
    starttls_sent: bool,
    /// Body octets and chunks handed over since the last poll_transmit.
    body_owed: usize,
    chunks_owed: usize,
    /// The last operation ended with a drain: events are all seen.
    drained: bool,
    heap: HeapBound,
}

impl Harness {
    fn new(flags: u8, engine: u8) -> Self {
        let mut config = ClientConfig::new("client.test");
        let mode = match flags & 3 {
            0 => TlsMode::No,
            2 => TlsMode::Required,
            _ => TlsMode::IfAvailable,
        };
        config.tls_mode = mode;
        config.tls_fallback = flags & 4 != 0;
        config.pipelining = flags & 8 != 0;
        config.chunking = flags & 16 != 0;
        let plaintext_only = flags & 32 != 0;
        if flags & 64 != 0 {
            config.tls = Some(client_tls(if engine & 1 == 0 {
                TlsEngine::Rustls
            } else {
                TlsEngine::Openssl
            }));
        }
        config.max_queued_body = 1024;
        let heap = HeapBound::new(HEAP_BASE);
        let now = Instant::now();
        let kind = if plaintext_only {
            ConnectionKind::PlaintextFallback
        } else {
            ConnectionKind::First
        };
        let session = ClientSession::new(Arc::new(config), "localhost", kind, now);
        Harness {
            session,
            now,
            mode,
            plaintext_only,
            peer: None,
            peer_failed: false,
            peer_burst: 0,
            submitted: BTreeMap::new(),
            done: BTreeSet::new(),
            after_close: BTreeSet::new(),
            wanted: None,
            closed: false,
            tls_established: false,
            starttls_sent: false,
            body_owed: 0,
            chunks_owed: 0,
            drained: true,
            heap,
        }
    }

    fn run(&mut self, ops: &mut Ops<'_>) {
        while let Some(op) = ops.next_byte() {
            let drain = op & 0x80 == 0;
            match op & 0x7f {
                0..=29 => {
                    let piece = ops.piece();
                    self.server_says(piece);
                }
                30..=49 => {
                    let reply = REPLIES[usize::from(ops.byte()) % REPLIES.len()];
                    for _ in 0..ops.repeat() {
                        self.server_says(reply);
                        self.drain();
                    }
                }
                50..=53 => {
                    let reps = ops.repeat();
                    let piece = ops.piece();
                    for _ in 0..reps {
                        self.server_says(piece);
                        self.drain();
                    }
                }
                // Raw octets on the wire, whatever the session expects.
                54..=59 => {
                    let piece = ops.piece();
                    self.deliver(piece);
                }
                60..=71 => {
                    let (count, shape) = (ops.byte(), ops.byte());
                    self.submit(count, shape);
                }
                72..=83 => {
                    let reps = ops.repeat();
                    // Lower case, so that the policy checks on the wire
                    // never take body text for a command.
                    let piece = ops.piece().to_ascii_lowercase();
                    self.body(&piece, reps);
                }
                84..=89 => self.finish_body(),
                90..=91 => self.session.quit(self.now),
                92 => self.session.abort(self.now),
                93..=97 => {
                    self.now += ops.duration();
                    self.session.handle_timeout(self.now);
                }
                98..=101 => {
                    if let Some(at) = self.session.poll_timeout() {
                        self.now = self.now.max(at);
                        self.session.handle_timeout(self.now);
                    }
                }
                102..=103 => self.session.handle_eof(self.now),
                104..=109 => {
                    let engine = ops.byte();
                    self.start_tls(engine);
                }
                110 => {
                    if let Some(peer) = &mut self.peer {
                        // After its close_notify the server reads nothing
                        // more (rustls asserts as much in debug builds).
                        peer.close();
                        self.peer_failed = true;
                    }
                }
                // A long multi-line reply: up to 300 lines of up to 4 KiB
                // of one octet (0x80 and up are not UTF-8).
                111..=115 => {
                    let (code, lines, width, fill) =
                        (ops.byte(), ops.byte(), ops.byte(), ops.byte());
                    let reply =
                        long_reply(code, usize::from(lines) + 45, usize::from(width) * 16, fill);
                    self.server_says(&reply);
                }
                _ => {}
            }
            self.drained = drain;
            if drain {
                self.drain();
            }
            if petrel_core_fuzz::heap::tracing() {
                eprintln!("op {op:#04x}: heap +{}", self.heap.grown());
            }
        }
    }

    /// Octets from the server, read as a driver reads a socket: at most
    /// [`READ_SIZE`] at a time.
    fn deliver(&mut self, octets: &[u8]) {
        for chunk in octets.chunks(READ_SIZE) {
            self.session.handle_input(self.now, chunk);
        }
    }

    /// Server plaintext: over TLS once the TLS server took over.
    fn server_says(&mut self, plaintext: &[u8]) {
        let mut ciphertext = Vec::new();
        match &mut self.peer {
            // A TLS server sends no application data before its
            // handshake is done (and would buffer it without bound).
            Some(peer) if peer.is_handshaking() || self.peer_failed => {}
            Some(peer) => {
                self.peer_burst = self.peer_burst.max(plaintext.len());
                if peer.write_plaintext(plaintext).is_err() {
                    self.peer_failed = true;
                }
                // On the wire at once, as plaintext would be.
                peer.poll_ciphertext(&mut ciphertext);
            }
            None => return self.deliver(plaintext),
        }
        self.deliver(&ciphertext);
    }

    /// The server says 220 to STARTTLS and starts TLS.
    fn start_tls(&mut self, engine: u8) {
        if self.peer.is_some() {
            return;
        }
        self.deliver(b"220 2.0.0 Ready to start TLS\r\n");
        let engine = if engine & 1 == 0 {
            TlsEngine::Rustls
        } else {
            TlsEngine::Openssl
        };
        let server = server_tls(engine, false, 0);
        self.peer = Some(server.new_session().expect("a TLS server session starts"));
    }

    fn submit(&mut self, count: u8, shape: u8) {
        let recipients: Vec<Recipient> = (0..count % 9)
            .map(|i| Recipient {
                path: if i == 7 {
                    ForwardPath::Postmaster
                } else {
                    ForwardPath::Mailbox(mailbox(&format!("r{i}")))
                },
                params: if shape & 1 != 0 {
                    RcptParams {
                        notify: Some(Notify::Never),
                        orcpt: Some(Orcpt {
                            addr_type: "rfc822".into(),
                            address: format!("r{i}@d.test"),
                        }),
                    }
                } else {
                    RcptParams::default()
                },
            })
            .collect();
        let params = MailParams {
            size: (shape & 2 != 0).then_some(u64::from(count) * 100),
            body: match (shape >> 2) & 3 {
                0 => None,
                1 => Some(BodyType::SevenBit),
                2 => Some(BodyType::EightBitMime),
                _ => Some(BodyType::BinaryMime),
            },
            smtputf8: shape & 16 != 0,
            ret: (shape & 32 != 0).then_some(Ret::Hdrs),
            envid: (shape & 32 != 0).then(|| "id+1".to_owned()),
        };
        let envelope = Envelope {
            reverse_path: if shape & 64 != 0 {
                ReversePath::Null
            } else {
                ReversePath::Mailbox(mailbox("sender"))
            },
            recipients,
            params,
        };
        let n = envelope.recipients.len();
        let id = self.session.submit(self.now, envelope);
        assert!(
            self.submitted.insert(id, n).is_none(),
            "{id:?} handed out twice"
        );
        // Closed already, though the harness may not have seen `Closed` yet:
        // the outcome follows it at once.
        if self.session.is_closed() {
            self.after_close.insert(id);
        }
    }

    fn body(&mut self, piece: &[u8], reps: usize) {
        if self.wanted.is_none() {
            if self.drained {
                assert!(self.session.send_body(self.now, piece).is_err());
            }
            return;
        }
        for _ in 0..reps {
            if !self.session.wants_body() {
                return;
            }
            match self.session.send_body(self.now, piece) {
                Ok(()) => {
                    self.body_owed += piece.len();
                    self.chunks_owed += 1;
                }
                Err(BodyError::TransactionEnded) => {
                    self.wanted = None;
                    return;
                }
                Err(error) => panic!("send_body while the body is wanted: {error:?}"),
            }
        }
    }

    fn finish_body(&mut self) {
        let result = self.session.finish_body(self.now);
        if self.wanted.take().is_none() && self.drained {
            assert!(result.is_err(), "finish_body with no body wanted");
        }
    }

    /// What poll_transmit may yield now.
    fn out_bound(&self) -> usize {
        let envelopes: usize = self
            .submitted
            .iter()
            .filter(|(id, _)| !self.done.contains(id))
            .map(|(_, n)| (n + 2) * COMMAND_BOUND)
            .sum();
        2 * self.body_owed + 64 * self.chunks_owed + envelopes + OUT_SLACK
    }

    fn drain(&mut self) {
        for _ in 0..100_000 {
            let mut progress = false;
            let mut out = Vec::new();
            let sent = self.session.poll_transmit(&mut out);
            assert_eq!(sent, out.len());
            let bound = self.out_bound();
            assert!(
                sent <= bound,
                "poll_transmit yielded {sent} > {bound} octets"
            );
            self.body_owed = 0;
            self.chunks_owed = 0;
            if sent > 0 {
                progress = true;
                self.check_plaintext(&out);
                if let Some(peer) = &mut self.peer {
                    if !self.peer_failed && peer.handle_ciphertext(&out).is_err() {
                        self.peer_failed = true;
                    }
                    let mut commands = Vec::new();
                    let _ = peer.read_plaintext(&mut commands);
                    assert!(commands.len() <= bound);
                }
            }
            while let Some(event) = self.session.poll_event() {
                progress = true;
                self.event(event);
            }
            let mut ciphertext = Vec::new();
            if let Some(peer) = &mut self.peer {
                peer.poll_ciphertext(&mut ciphertext);
            }
            if !ciphertext.is_empty() {
                progress = true;
                self.deliver(&ciphertext);
            }
            if !progress {
                return self.check_settled();
            }
        }
        panic!("the session never settles");
    }

    /// The TLS policy, as seen on the wire: the raw output is plaintext
    /// SMTP until TLS starts, and then ciphertext, in which these command
    /// words do not occur.
    fn check_plaintext(&mut self, out: &[u8]) {
        let has = |needle: &[u8]| out.windows(needle.len()).any(|w| w == needle);
        if has(b"STARTTLS\r\n") {
            assert!(self.mode != TlsMode::No, "STARTTLS under TLS = no");
            assert!(
                !self.plaintext_only,
                "STARTTLS on a plaintext-only connection"
            );
            self.starttls_sent = true;
        }
        if has(b"MAIL FROM:") {
            assert!(
                self.mode != TlsMode::Required,
                "MAIL FROM in plaintext under TLS = required"
            );
            assert!(!self.starttls_sent, "MAIL FROM in plaintext after STARTTLS");
        }
    }

    fn event(&mut self, event: Event) {
        if let Event::TransactionDone { id, outcomes } = &event {
            assert!(
                !self.closed || self.after_close.contains(id),
                "{event:?} after Closed"
            );
            let recipients = self.submitted.get(id).copied();
            assert_eq!(recipients, Some(outcomes.len()), "outcomes of {id:?}");
            assert!(self.done.insert(*id), "{id:?} done twice");
            for (index, outcome) in outcomes.iter().enumerate() {
                assert_eq!(outcome.recipient, index);
                let class = outcome.reply.code() / 100;
                let expected = match outcome.delivery {
                    Delivery::Delivered => 2,
                    Delivery::Transient => 4,
                    Delivery::Permanent => 5,
                };
                assert_eq!(class, expected, "{outcome:?}");
            }
            if self.wanted == Some(*id) {
                self.wanted = None;
            }
            return;
        }
        assert!(!self.closed, "{event:?} after Closed");
        match event {
            Event::BodyWanted(id) => {
                assert!(self.submitted.contains_key(&id) && !self.done.contains(&id));
                assert!(self.wanted.is_none(), "two bodies wanted at once");
                self.wanted = Some(id);
            }
            Event::TlsEstablished(_) => {
                assert!(!self.tls_established, "TLS established twice");
                self.tls_established = true;
            }
            Event::Closed(_) => {
                self.closed = true;
                self.wanted = None;
            }
            _ => {}
        }
    }

    fn check_settled(&mut self) {
        if self.closed {
            assert!(self.session.poll_timeout().is_none());
            assert!(!self.session.wants_body());
        }
        // Envelopes in progress are the application's; their recipients'
        // outcomes are allowed for on top of the session's own budget.
        let in_progress: usize = self
            .submitted
            .iter()
            .filter(|(id, _)| !self.done.contains(id))
            .map(|(_, n)| (n + 1) * HEAP_PER_RECIPIENT)
            .sum();
        let bookkeeping = (self.submitted.len() + self.done.len() + self.after_close.len()) * 64;
        // The burst's ciphertext (records' headers and tags add well under
        // 1/256), in a buffer grown by doubling.
        let peer = 2 * (self.peer_burst + self.peer_burst / 256);
        self.heap
            .check(in_progress + bookkeeping + peer, &"a drain");
    }

    /// The server hangs up; whatever is left, the application aborts.
    fn finish(&mut self) {
        self.session.handle_eof(self.now);
        self.drain();
        if !self.closed {
            self.session.abort(self.now);
            self.drain();
        }
        assert!(self.closed, "no Closed event after EOF and abort");
        let undone: Vec<_> = self
            .submitted
            .keys()
            .filter(|id| !self.done.contains(id))
            .collect();
        assert!(undone.is_empty(), "no outcome for {undone:?}");
    }
}

/// `lines` lines of `width` octets of `fill`, as one reply with a code of
/// the class `code` picks.
fn long_reply(code: u8, lines: usize, width: usize, fill: u8) -> Vec<u8> {
    let code = [250, 354, 452, 550, 220][usize::from(code) % 5].to_string();
    let fill = if fill == b'\n' || fill == b'\r' {
        b'x'
    } else {
        fill
    };
    let mut reply = Vec::new();
    for line in 0..lines {
        reply.extend_from_slice(code.as_bytes());
        reply.push(if line + 1 == lines { b' ' } else { b'-' });
        reply.extend(std::iter::repeat_n(fill, width));
        reply.extend_from_slice(b"\r\n");
    }
    reply
}

fn mailbox(local: &str) -> Mailbox {
    Mailbox {
        local_part: local.to_owned(),
        domain: Host::Domain("d.test".to_owned()),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut ops = Ops::new(data, 32_768);
    let (flags, engine) = (ops.byte(), ops.byte());
    let mut harness = Harness::new(flags, engine);
    harness.drain();
    harness.run(&mut ops);
    harness.finish();
});
