//! The runtimes' own test suite, written once: every scenario is a function
//! of a [`TestRuntime`], and [`runtime_suite!`](crate::runtime_suite)
//! instantiates all of them as `#[test]`s in a runtime crate.
//!
//! Each scenario runs a real server on loopback and talks to it with
//! Petrel's own client (through the runtime under test) or with plain
//! blocking sockets where the test is about bytes on the wire. Every wait
//! is bounded: a socket read gives up after [`READ_TIMEOUT`], retries are
//! counted.

// Test code, compiled outside `cfg(test)` (the runtimes' tests call it), so
// clippy.toml's allowances for tests do not reach it: a failing check
// panics, as in any test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use petrel_core::client::tls_policy::{TlsAction, TlsOutcome};
use petrel_core::client::{ClientConfig, Delivery};
use petrel_core::server::Event;
use petrel_core::wire::command::ForwardPath;

use super::{AcceptLater, TestRuntime};
use crate::cli::{SendArgs, SinkArgs, SinkHandler};
use crate::client::{DeliverOptions, DeliveryReport, Outbound, TlsFailed};
use crate::listen::{
    effective_backlog, somaxconn, ListenerConfig, Network, PeerConfig, ServeConfig,
};
use crate::server::{ConnectionInfo, Decision, Handler};

/// How long a test's socket waits for the server before failing.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The grace every scenario gives its server when it is done.
const GRACE: Duration = Duration::from_secs(5);

fn args(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

/// The sink's configuration for these flags, on a free loopback port.
fn sink(flags: &str) -> ServeConfig {
    SinkArgs::parse(args(&format!("--listen 127.0.0.1:0 {flags}")))
        .unwrap()
        .serve_config()
        .unwrap()
}

fn serve<R: TestRuntime>(
    config: ServeConfig,
    handler: Arc<dyn Handler>,
) -> (R::Server, SocketAddr) {
    let server = R::serve(config, handler).unwrap();
    let addr = R::local_addrs(&server)[0];
    (server, addr)
}

/// `count` generated messages and the client configuration for `flags`.
fn messages(flags: &str, count: u64) -> (Arc<ClientConfig>, Vec<Outbound>) {
    let send = SendArgs::parse(args(&format!("--to 127.0.0.1:25 {flags}"))).unwrap();
    let messages = (0..count).map(|n| send.message(n).unwrap()).collect();
    (Arc::new(send.client_config().unwrap()), messages)
}

fn deliver<R: TestRuntime>(addr: SocketAddr, flags: &str, count: u64) -> DeliveryReport {
    deliver_with::<R>(addr, flags, count, &DeliverOptions::default())
}

fn deliver_with<R: TestRuntime>(
    addr: SocketAddr,
    flags: &str,
    count: u64,
    options: &DeliverOptions,
) -> DeliveryReport {
    let (config, messages) = messages(flags, count);
    R::deliver(addr, "localhost", config, messages, options)
}

fn all_delivered(report: &DeliveryReport, count: usize) {
    assert_eq!(report.finished.len(), count, "{report:?}");
    for finished in &report.finished {
        for outcome in &finished.outcomes {
            assert_eq!(outcome.delivery, Delivery::Delivered, "{:?}", outcome.reply);
        }
    }
}

fn all_transient(report: &DeliveryReport, count: usize) {
    assert_eq!(report.finished.len(), count, "{report:?}");
    for outcome in report.finished.iter().flat_map(|f| &f.outcomes) {
        assert_eq!(outcome.delivery, Delivery::Transient, "{:?}", outcome.reply);
    }
}

/// A blocking client speaking raw lines.
struct Wire {
    reader: BufReader<TcpStream>,
}

impl Wire {
    fn connect(addr: SocketAddr) -> Self {
        Self::from_stream(TcpStream::connect(addr).unwrap())
    }

    /// A connection from `source` (any 127/8 address is on loopback).
    fn connect_from(source: IpAddr, addr: SocketAddr) -> Self {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
        socket.connect(&addr.into()).unwrap();
        Self::from_stream(socket.into())
    }

    fn from_stream(stream: TcpStream) -> Self {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        Self {
            reader: BufReader::new(stream),
        }
    }

    /// One line, CRLF included; empty at the end of input.
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    /// One whole reply, every line of it.
    fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let line = self.line();
            assert!(!line.is_empty(), "closed in a reply: {reply:?}");
            reply.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return reply;
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    /// Sends `command` and returns the reply, which must have `code`.
    fn command(&mut self, command: &str, code: &str) -> String {
        self.send(format!("{command}\r\n").as_bytes());
        let reply = self.reply();
        assert!(reply.starts_with(code), "{command}: {reply:?}");
        reply
    }

    /// The greeting, which must be a 220.
    fn greeted(&mut self) {
        let greeting = self.reply();
        assert!(greeting.starts_with("220 "), "{greeting:?}");
    }

    /// Reads what is left until the server's end of input, which must be
    /// a clean close: nothing more, and no reset, either at the read or
    /// waiting on the socket (the kernel's answer to input left unread,
    /// which on a real network may destroy the last reply).
    fn expect_clean_close(&mut self, after: &str) {
        let mut rest = Vec::new();
        let read = self.reader.read_to_end(&mut rest);
        assert!(read.is_ok(), "after {after}: {read:?}");
        assert_eq!(String::from_utf8_lossy(&rest), "", "after {after}");
        let error = self.reader.get_ref().take_error().unwrap();
        assert!(error.is_none(), "after {after}: {error:?}");
    }
}

/// A connection that is greeted with a 220, retried (a bounded number of
/// times) while the server has not yet seen an earlier connection end.
fn greeted_soon(addr: SocketAddr) -> Wire {
    let mut last = String::new();
    for _ in 0..250 {
        let mut wire = Wire::connect(addr);
        let line = wire.line();
        if line.starts_with("220 ") {
            return wire;
        }
        last = line;
        thread::sleep(Duration::from_millis(20));
    }
    panic!("never greeted again; last: {last:?}");
}

/// Pipelined input the server never reads: enough that some of it is
/// still unread when the session closes (one read takes at most 64 KiB).
fn unread_input() -> Vec<u8> {
    b"NOOP\r\n".repeat(64 * 1024)
}

// ---------------------------------------------------------------------------
// Delivering

/// Accepts everything and records the address of every connection that
/// ended.
#[derive(Default)]
struct RecordPeers(Mutex<Vec<IpAddr>>);

impl Handler for RecordPeers {
    fn on_event(&self, conn: &ConnectionInfo, event: &Event, decision: Option<Decision>) {
        if let Event::Closed(_) = event {
            let mut peers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            peers.push(conn.peer.ip());
        }
        if let Some(decision) = decision {
            decision.accept();
        }
    }
}

/// Messages to one server share one connection, which comes from the
/// source address asked for.
pub fn plaintext_delivery_reuses_one_connection<R: TestRuntime>() {
    let handler = Arc::new(RecordPeers::default());
    let (server, addr) = serve::<R>(sink("--tls-engine none"), handler.clone());
    let options = DeliverOptions {
        source: Some("127.0.0.2".parse().unwrap()),
        ..DeliverOptions::default()
    };
    let report = deliver_with::<R>(addr, "--tls no", 5, &options);
    all_delivered(&report, 5);
    assert!(report.finished.iter().all(|f| f.tls.is_none()));
    assert!(!report.reconnected_plaintext);
    R::shutdown(server, GRACE);
    let peers = handler.0.lock().unwrap().clone();
    assert_eq!(peers, ["127.0.0.2".parse::<IpAddr>().unwrap()]);
}

/// Plaintext, then STARTTLS under `ifavailable` and `required`, each over
/// one connection.
#[cfg(feature = "rustls")]
pub fn delivers_in_plaintext_and_over_starttls<R: TestRuntime>() {
    let handler = Arc::new(SinkHandler::default());
    let (server, addr) = serve::<R>(sink("--tls-engine rustls"), handler.clone());
    for (flags, tls) in [
        ("--tls no", false),
        ("--tls ifavailable --tls-engine rustls", true),
        ("--tls required --tls-engine rustls", true),
    ] {
        let report = deliver::<R>(addr, flags, 3);
        all_delivered(&report, 3);
        assert!(!report.reconnected_plaintext, "{flags}");
        assert!(
            report.finished.iter().all(|f| f.tls.is_some() == tls),
            "{flags}"
        );
    }
    R::shutdown(server, GRACE);
    assert_sink(&handler, 9, 3);
}

/// The openssl engines on both sides.
#[cfg(feature = "openssl")]
pub fn delivers_over_starttls_with_openssl<R: TestRuntime>() {
    let handler = Arc::new(SinkHandler::default());
    let (server, addr) = serve::<R>(sink("--tls-engine openssl"), handler.clone());
    let report = deliver::<R>(addr, "--tls required --tls-engine openssl", 2);
    all_delivered(&report, 2);
    assert!(report.finished.iter().all(|f| f.tls.is_some()));
    R::shutdown(server, GRACE);
    assert_sink(&handler, 2, 1);
}

/// A large body goes out through many partial writes and in through many
/// reads, over TLS.
#[cfg(feature = "rustls")]
pub fn a_large_body_is_streamed_both_ways<R: TestRuntime>() {
    let handler = Arc::new(SinkHandler::default());
    let (server, addr) = serve::<R>(sink("--tls-engine rustls"), handler.clone());
    let report = deliver::<R>(addr, "--size 8000000", 2);
    all_delivered(&report, 2);
    assert!(report.finished.iter().all(|f| f.tls.is_some()));
    R::shutdown(server, GRACE);
    assert_sink(&handler, 2, 1);
}

/// `ca` verification with no CA rejects the self-signed certificate;
/// `ifavailable` with fallback then asks for a fresh plaintext connection,
/// and without fallback every message is deferred.
#[cfg(feature = "rustls")]
pub fn a_failed_starttls_reconnects_in_plaintext<R: TestRuntime>() {
    let handler = Arc::new(SinkHandler::default());
    let (server, addr) = serve::<R>(sink("--tls-engine rustls"), handler.clone());
    let report = deliver::<R>(addr, "--tls ifavailable --fallback true --verify ca", 3);
    assert!(report.reconnected_plaintext);
    all_delivered(&report, 3);
    assert!(report.finished.iter().all(|f| f.tls.is_none()));
    // The report says which attempt failed and what the policy did.
    let [failed] = &report.tls_failures[..] else {
        panic!("one failed STARTTLS expected: {:?}", report.tls_failures);
    };
    assert!(
        matches!(failed.outcome, TlsOutcome::CertificateRejected(_)),
        "{failed:?}"
    );
    assert_eq!(failed.action, TlsAction::ReconnectPlaintext);
    let report = deliver::<R>(addr, "--tls ifavailable --fallback false --verify ca", 2);
    assert!(!report.reconnected_plaintext);
    all_transient(&report, 2);
    assert!(
        matches!(
            &report.tls_failures[..],
            [TlsFailed {
                action: TlsAction::Defer(_),
                ..
            }]
        ),
        "{:?}",
        report.tls_failures
    );
    R::shutdown(server, GRACE);
    assert_sink(&handler, 3, 3);
}

pub fn an_unreachable_server_makes_every_message_transient<R: TestRuntime>() {
    // Bound and dropped: a port nobody listens on.
    let nobody = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let report = deliver::<R>(nobody, "--tls no", 3);
    all_transient(&report, 3);
    for outcome in report.finished.iter().flat_map(|f| &f.outcomes) {
        assert!(outcome.reply.to_string().contains("cannot connect"));
    }
}

/// Each message is accepted 50 ms later from another thread: the answers
/// reach their connection (which cannot have been faster than them).
pub fn decisions_from_other_threads_reach_their_connection<R: TestRuntime>() {
    let (server, addr) = serve::<R>(sink("--tls-engine none"), Arc::new(AcceptLater));
    let started = Instant::now();
    let report = deliver::<R>(addr, "--tls no", 3);
    all_delivered(&report, 3);
    assert!(started.elapsed() >= Duration::from_millis(150));
    R::shutdown(server, GRACE);
}

/// A server on one thread (`--threads 1`; tokio serves on the caller's
/// runtime) serves sessions side by side, with decisions answered from
/// other threads.
pub fn one_serving_thread_serves_sessions_side_by_side<R: TestRuntime>() {
    let config = sink("--tls-engine none --threads 1");
    assert_eq!(config.serving_threads(), 1);
    let (server, addr) = serve::<R>(config, Arc::new(AcceptLater));
    let mut idle = Wire::connect(addr);
    idle.greeted();
    idle.command("EHLO client.example", "250-");
    let report = deliver::<R>(addr, "--tls no", 3);
    all_delivered(&report, 3);
    idle.command("QUIT", "221 ");
    idle.expect_clean_close("the 221");
    R::shutdown(server, GRACE);
}

// ---------------------------------------------------------------------------
// Limits

/// Over the server's limit: the exact refusal, a clean close, no session;
/// the place is free again once a session ends.
pub fn over_the_connection_limit_is_told_421<R: TestRuntime>() {
    let handler = Arc::new(SinkHandler::default());
    let (server, addr) = serve::<R>(
        sink("--tls-engine none --max-connections 1"),
        handler.clone(),
    );
    let mut first = Wire::connect(addr);
    first.greeted();
    let mut second = Wire::connect(addr);
    assert_eq!(
        second.line(),
        "421 4.3.2 localhost Too many connections, try again later\r\n"
    );
    second.expect_clean_close("the 421");
    first.command("QUIT", "221 ");
    first.expect_clean_close("the 221");
    drop((first, second));
    let mut third = greeted_soon(addr);
    third.command("QUIT", "221 ");
    drop(third);
    R::shutdown(server, GRACE);
    // The refused connection was never a session.
    assert_sink(&handler, 0, 2);
}

/// The refusal of a connection over the limit is read in full, even by a
/// peer that sent its commands before reading the greeting.
pub fn a_refusal_over_the_limit_survives_pipelined_input<R: TestRuntime>() {
    let (server, addr) = serve::<R>(
        sink("--tls-engine none --max-connections 1"),
        Arc::new(SinkHandler::default()),
    );
    let mut first = Wire::connect(addr);
    first.greeted();
    let mut second = Wire::connect(addr);
    let mut input = b"EHLO x\r\n".to_vec();
    input.extend(unread_input());
    second.send(&input);
    let refusal = second.line();
    assert!(
        refusal.starts_with("421 4.3.2 localhost Too many connections")
            && refusal.ends_with("\r\n"),
        "{refusal:?}"
    );
    second.expect_clean_close("the 421");
    drop((first, second));
    R::shutdown(server, GRACE);
}

/// A closed session's place under the limit is free by the time its peer
/// sees the end of input, while the server still lingers its socket.
pub fn a_closed_session_holds_no_place_while_lingering<R: TestRuntime>() {
    let (server, addr) = serve::<R>(
        sink("--tls-engine none --max-connections 1"),
        Arc::new(SinkHandler::default()),
    );
    let mut first = Wire::connect(addr);
    first.greeted();
    first.command("QUIT", "221 ");
    first.expect_clean_close("the 221");
    // `first` is still open, and the server still lingers it.
    let mut second = Wire::connect(addr);
    second.greeted();
    drop((first, second));
    R::shutdown(server, GRACE);
}

/// N connections from one address are served, the next is told so and
/// closed, the others go on; once one ends, a new one is served.
pub fn each_client_address_has_its_own_limit<R: TestRuntime>() {
    const N: usize = 3;
    let handler = Arc::new(SinkHandler::default());
    let (server, addr) = serve::<R>(
        sink(&format!("--tls-engine none --max-connections-per-ip {N}")),
        handler.clone(),
    );
    let mut served: Vec<Wire> = (0..N)
        .map(|_| {
            let mut wire = Wire::connect(addr);
            wire.greeted();
            wire
        })
        .collect();
    let mut over = Wire::connect(addr);
    let mut input = b"EHLO x\r\n".to_vec();
    input.extend(unread_input());
    over.send(&input);
    assert_eq!(
        over.line(),
        "421 4.7.0 localhost Error: too many connections from 127.0.0.1\r\n"
    );
    over.expect_clean_close("the 421 4.7.0");
    // Another address is not this one.
    let mut other = Wire::connect_from("127.0.0.2".parse().unwrap(), addr);
    other.greeted();
    other.command("QUIT", "221 ");
    for wire in &mut served {
        wire.command("NOOP", "250 ");
    }
    let mut leaving = served.pop().unwrap();
    leaving.command("QUIT", "221 ");
    leaving.expect_clean_close("the 221");
    served.push(greeted_soon(addr));
    for wire in &mut served {
        wire.command("QUIT", "221 ");
    }
    drop((served, over, other, leaving));
    R::shutdown(server, GRACE);
    assert_sink(&handler, 0, 5);
}

/// A peer network's own per-address limit (Momentum's `Peer` scope) wins
/// over the listener's, and a network can be exempt.
pub fn a_peer_network_overrides_the_per_address_limit<R: TestRuntime>() {
    let mut config = sink("--tls-engine none --max-connections-per-ip 1");
    let listener = &mut config.listeners[0];
    let mut wider = PeerConfig::new(petrel_core::server::ServerConfig::new("peer.test"));
    wider.max_connections_per_ip = Some(2);
    listener
        .peers
        .push(("127.0.0.2/32".parse::<Network>().unwrap(), wider));
    let mut exempt = listener.default_peer.clone();
    exempt.max_connections_per_ip = None;
    listener
        .peers
        .push(("127.0.0.3/32".parse::<Network>().unwrap(), exempt));
    let (server, addr) = serve::<R>(config, Arc::new(SinkHandler::default()));
    let from = |ip: &str| Wire::connect_from(ip.parse().unwrap(), addr);

    let mut kept = Vec::new();
    let mut one = from("127.0.0.1");
    one.greeted();
    kept.push(one);
    let mut refused = from("127.0.0.1");
    assert_eq!(
        refused.line(),
        "421 4.7.0 localhost Error: too many connections from 127.0.0.1\r\n"
    );
    for _ in 0..2 {
        let mut wire = from("127.0.0.2");
        assert!(wire.reply().starts_with("220 peer.test "));
        kept.push(wire);
    }
    let mut refused = from("127.0.0.2");
    assert_eq!(
        refused.line(),
        "421 4.7.0 peer.test Error: too many connections from 127.0.0.2\r\n"
    );
    for _ in 0..5 {
        let mut wire = from("127.0.0.3");
        wire.greeted();
        kept.push(wire);
    }
    drop((kept, refused));
    R::shutdown(server, GRACE);
}

/// The path of `ss` (iproute2), or a failure saying how to install it.
fn ss() -> std::path::PathBuf {
    ["/usr/bin/ss", "/bin/ss", "/usr/sbin/ss", "/sbin/ss"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`ss` is not installed: run `bash scripts/setup`, or `apt-get install -y iproute2`"
            )
        })
}

/// The backlog of the socket listening on `addr`, as the kernel has it:
/// for a listening socket, `ss -lnt` shows it as Send-Q.
fn listen_backlog(addr: SocketAddr) -> u32 {
    let output = std::process::Command::new(ss())
        .args(["-Hltn", &format!("sport = :{}", addr.port())])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let local = addr.to_string();
    // State, Recv-Q, Send-Q, local address, peer address.
    let fields: Vec<&str> = text
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&"LISTEN") && fields.get(3) == Some(&local.as_str()))
        .unwrap_or_else(|| panic!("{addr} is not in `ss -ltn`: {text}"));
    fields[2].parse().unwrap()
}

/// The listen backlog is the one configured (default 1024), bounded by
/// the kernel's `somaxconn`.
pub fn the_listen_backlog_is_the_one_configured<R: TestRuntime>() {
    let somaxconn = somaxconn().expect("/proc/sys/net/core/somaxconn");
    let listener = |backlog: Option<u32>| {
        let mut listener = sink("--tls-engine none").listeners.remove(0);
        if let Some(backlog) = backlog {
            listener.backlog = backlog;
        }
        listener
    };
    let config = ServeConfig {
        listeners: vec![listener(None), listener(Some(7)), listener(Some(u32::MAX))],
        max_connections: 10,
        threads: None,
    };
    let server = R::serve(config, Arc::new(SinkHandler::default())).unwrap();
    let addrs = R::local_addrs(&server);
    assert_eq!(listen_backlog(addrs[0]), 1024.min(somaxconn));
    assert_eq!(listen_backlog(addrs[0]), effective_backlog(1024));
    assert_eq!(listen_backlog(addrs[1]), 7);
    assert_eq!(listen_backlog(addrs[2]), somaxconn);
    R::shutdown(server, GRACE);
}

// ---------------------------------------------------------------------------
// Timeouts

fn with_command_timeout(timeout: Duration) -> ServeConfig {
    let mut config = sink("--tls-engine none");
    let listener: &mut ListenerConfig = &mut config.listeners[0];
    let server = Arc::get_mut(&mut listener.default_peer.server).unwrap();
    server.timeouts.command = timeout;
    config
}

/// The session's own deadline: 421 4.4.2, then a clean close.
pub fn an_idle_session_times_out_with_421<R: TestRuntime>() {
    let timeout = Duration::from_millis(300);
    let handler = Arc::new(SinkHandler::default());
    let (server, addr) = serve::<R>(with_command_timeout(timeout), handler.clone());
    let started = Instant::now();
    let mut wire = Wire::connect(addr);
    wire.greeted();
    let line = wire.line();
    assert!(line.starts_with("421 4.4.2 "), "{line:?}");
    assert!(started.elapsed() >= timeout);
    wire.expect_clean_close("the timeout");
    R::shutdown(server, GRACE);
    assert_sink(&handler, 0, 1);
}

/// Each command moves the deadline later: the connection outlives its
/// first deadline while it is used.
pub fn session_timeouts_move_with_activity<R: TestRuntime>() {
    let timeout = Duration::from_millis(300);
    let (server, addr) = serve::<R>(
        with_command_timeout(timeout),
        Arc::new(SinkHandler::default()),
    );
    let mut wire = Wire::connect(addr);
    let started = Instant::now();
    wire.greeted();
    for _ in 0..4 {
        thread::sleep(timeout / 2);
        wire.command("NOOP", "250 ");
    }
    let last = Instant::now();
    assert!(last - started >= timeout * 2);
    let line = wire.line();
    assert!(line.starts_with("421 4.4.2 "), "{line:?}");
    assert!(last.elapsed() >= timeout - Duration::from_millis(50));
    R::shutdown(server, GRACE);
}

// ---------------------------------------------------------------------------
// Shutdown

/// Sessions still open at the end of the grace are told 421 4.3.2 and
/// closed; the handler hears of it; nobody listens any more.
pub fn shutdown_cuts_sessions_after_the_grace<R: TestRuntime>() {
    let handler = Arc::new(SinkHandler::default());
    let (server, addr) = serve::<R>(sink("--tls-engine none"), handler.clone());
    let mut idle = Wire::connect(addr);
    idle.greeted();
    let grace = Duration::from_millis(300);
    let started = Instant::now();
    R::shutdown(server, grace);
    assert!(started.elapsed() >= grace, "the idle session had its grace");
    let mut rest = String::new();
    let _ = idle.reader.read_to_string(&mut rest);
    assert!(rest.starts_with("421 4.3.2 "), "{rest:?}");
    assert_sink(&handler, 0, 1);
    assert!(TcpStream::connect(addr).is_err(), "no longer listening");
}

/// Shutdown returns once the sessions have ended by themselves (not
/// timed: only required to return, long before its 60 s of grace).
pub fn shutdown_returns_once_sessions_end_by_themselves<R: TestRuntime>() {
    let (server, addr) = serve::<R>(sink("--tls-engine none"), Arc::new(SinkHandler::default()));
    all_delivered(&deliver::<R>(addr, "--tls no", 1), 1);
    R::shutdown(server, Duration::from_secs(60));
}

// ---------------------------------------------------------------------------
// Misbehaving applications and peers

/// Accepts everything, but panics on a recipient named `panic`.
struct Fragile;

impl Handler for Fragile {
    fn on_event(&self, _: &ConnectionInfo, event: &Event, decision: Option<Decision>) {
        if let Event::Rcpt {
            forward_path: ForwardPath::Mailbox(mailbox),
            ..
        } = event
        {
            assert_ne!(mailbox.local_part, "panic", "the handler broke");
        }
        if let Some(decision) = decision {
            decision.accept();
        }
    }
}

/// A panicking handler ends its own connection, not the others (on its
/// thread or anywhere else).
pub fn a_panicking_handler_ends_only_its_connection<R: TestRuntime>() {
    let (server, addr) = serve::<R>(sink("--tls-engine none"), Arc::new(Fragile));
    // A few idle connections, so that every thread of the runtime has one.
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    let mut idle: Vec<Wire> = (0..threads * 2)
        .map(|_| {
            let mut wire = Wire::connect(addr);
            wire.greeted();
            wire
        })
        .collect();
    let report = deliver::<R>(addr, "--tls no --rcpt panic@example.com", 1);
    all_transient(&report, 1);
    for wire in &mut idle {
        wire.command("NOOP", "250 ");
    }
    all_delivered(&deliver::<R>(addr, "--tls no", 1), 1);
    drop(idle);
    R::shutdown(server, GRACE);
}

/// A session that closes with input unread (the 554 refusing an injected
/// STARTTLS) shuts its side and reads and discards the rest: the peer reads the whole
/// 554 and then a clean end of input, not a reset.
#[cfg(feature = "rustls")]
pub fn an_injected_starttls_is_refused_without_a_reset<R: TestRuntime>() {
    let (server, addr) = serve::<R>(
        sink("--tls-engine rustls"),
        Arc::new(SinkHandler::default()),
    );
    let mut wire = Wire::connect(addr);
    wire.greeted();
    let mut input = b"EHLO x\r\nSTARTTLS\r\nEHLO x\r\n".to_vec();
    input.extend(unread_input());
    // Most of it is still unread when the 554 closes the session.
    wire.send(&input);
    assert!(wire.reply().contains("STARTTLS"));
    let refusal = wire.line();
    assert!(
        refusal.starts_with("554 ") && refusal.ends_with("\r\n"),
        "{refusal:?}"
    );
    wire.expect_clean_close("the 554");
    drop(wire);
    R::shutdown(server, GRACE);
}

/// A peer that pipelines commands and does not read the replies stops
/// being read (the server holds a bounded amount for it), and once it
/// reads, every command it got in is answered, in order.
pub fn a_peer_that_does_not_read_its_replies_is_not_read<R: TestRuntime>() {
    /// More than every socket buffer on the way (a few MiB at most, with
    /// this side's kept small) and one read's replies, many times over.
    const BOUND: usize = 64 * 1024 * 1024;
    let (server, addr) = serve::<R>(sink("--tls-engine none"), Arc::new(SinkHandler::default()));
    // Small buffers on this side, so that what is in flight stays small.
    let socket = {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.set_send_buffer_size(4096).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&addr.into()).unwrap();
        socket
    };
    let mut wire = Wire::from_stream(socket.into());
    wire.greeted();
    wire.command("EHLO x", "250");
    let chunk = b"NOOP\r\n".repeat(10_000);
    let mut stream = wire.reader.get_ref().try_clone().unwrap();
    stream.set_nonblocking(true).unwrap();
    let mut sent = 0;
    let mut stalled = 0;
    // Stalled: nothing got in for a whole second.
    while stalled < 20 && sent < BOUND {
        // Whole commands only: the count of replies must be exact.
        let offset = sent % chunk.len();
        match stream.write(&chunk[offset..]) {
            Ok(n) => {
                sent += n;
                stalled = 0;
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                stalled += 1;
                thread::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("after {sent} octets: {error}"),
        }
    }
    assert!(
        sent < BOUND,
        "the server read {sent} octets from a peer that reads nothing"
    );
    // Complete the last command and quit, from another thread: the server
    // reads again only once this one reads the replies.
    stream.set_nonblocking(false).unwrap();
    let partial = sent % 6;
    if partial > 0 {
        sent += 6 - partial;
    }
    let writer = thread::spawn(move || {
        let rest = b"NOOP\r\n"
            .get(partial..)
            .filter(|_| partial > 0)
            .unwrap_or_default();
        stream.write_all(rest)?;
        stream.write_all(b"QUIT\r\n")
    });
    let mut answered = 0;
    loop {
        let line = wire.line();
        if line.starts_with("250 ") {
            answered += 1;
        } else {
            assert!(
                line.starts_with("221 "),
                "after {answered} replies: {line:?}"
            );
            break;
        }
    }
    assert_eq!(answered, sent / 6);
    writer.join().unwrap().unwrap();
    drop(wire);
    R::shutdown(server, GRACE);
}

/// The process's soft limit on open descriptors, lowered to `max`.
fn lower_descriptor_limit(max: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid pointer to a
    // local; setrlimit reads one. Neither keeps the pointer.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0, "getrlimit");
    limit.rlim_cur = max.min(limit.rlim_max);
    // SAFETY: as above.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(set, 0, "setrlimit");
}

/// A server that fails to accept for want of descriptors tries again by
/// itself, rather than waiting for another connection's readiness. Alone
/// in its test binary: it exhausts the process's descriptors.
pub fn the_backlog_is_accepted_once_descriptors_are_free_again<R: TestRuntime>() {
    // Low, so that exhausting it is cheap and certain whatever the
    // machine's own limit.
    lower_descriptor_limit(256);
    let (server, addr) = serve::<R>(sink("--tls-engine none"), Arc::new(SinkHandler::default()));
    let mut hogs = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        hogs.push(file);
    }
    assert!(!hogs.is_empty(), "the descriptors were exhausted already");
    // Room for the client's socket only: the server's accept fails.
    hogs.pop();
    let client = TcpStream::connect(addr).unwrap();
    // Not timed: a server that has not tried to accept yet simply succeeds
    // later, and the test proves less, not something false.
    thread::sleep(Duration::from_millis(200));
    // No other connection comes to make the listener ready again.
    hogs.truncate(hogs.len().saturating_sub(16));
    let mut wire = Wire::from_stream(client);
    let greeting = wire.line();
    drop(hogs);
    assert!(greeting.starts_with("220 "), "{greeting:?}");
    drop(wire);
    R::shutdown(server, GRACE);
}

/// The sink took `accepted` one-recipient messages, refused none, and saw
/// `connections` connections.
fn assert_sink(handler: &SinkHandler, accepted: u64, connections: u64) {
    assert_eq!(
        handler.summary(),
        format!("accepted={accepted} rejected=0 connections={connections} recipients={accepted}")
    );
}
