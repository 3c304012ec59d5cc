//! The mio runtime itself over real loopback sockets: serving, delivering,
//! STARTTLS, the plaintext reconnection, the connection limit, timers,
//! decisions from other threads, and shutdown. The protocol is tested in
//! petrel-core, and every runtime against the same suite in petrel-tests.
#![cfg(test)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use petrel_core::client::{ClientConfig, Delivery};
use petrel_core::server::Event;
use petrel_core::wire::command::ForwardPath;
use petrel_mio::{
    deliver, deliver_many, Batch, ConnectionInfo, Decision, DeliverOptions, DeliveryReport,
    Handler, Outbound, ServeConfig, Server,
};
use petrel_runtime_common::cli::{SendArgs, SinkArgs, SinkHandler};

fn args(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

/// The sink's configuration for these flags, on a free loopback port.
fn sink_config(flags: &str) -> ServeConfig {
    SinkArgs::parse(args(&format!("--listen 127.0.0.1:0 {flags}")))
        .unwrap()
        .serve_config()
        .unwrap()
}

fn serve(config: ServeConfig, handler: Arc<dyn Handler>) -> (Server, SocketAddr) {
    let server = petrel_mio::serve(config, handler).unwrap();
    let addr = server.local_addrs()[0];
    (server, addr)
}

/// `count` generated messages and the client configuration for `flags`.
fn send(flags: &str, count: u64) -> (Arc<ClientConfig>, Vec<Outbound>) {
    let send = SendArgs::parse(args(&format!("--to 127.0.0.1:25 {flags}"))).unwrap();
    let messages = (0..count).map(|n| send.message(n).unwrap()).collect();
    (Arc::new(send.client_config().unwrap()), messages)
}

fn deliver_to(addr: SocketAddr, flags: &str, count: u64) -> DeliveryReport {
    let (config, messages) = send(flags, count);
    deliver(
        addr,
        "localhost",
        config,
        messages,
        &DeliverOptions::default(),
    )
}

fn all_delivered(report: &DeliveryReport, count: usize) {
    assert_eq!(report.finished.len(), count, "{report:?}");
    for finished in &report.finished {
        for outcome in &finished.outcomes {
            assert_eq!(outcome.delivery, Delivery::Delivered, "{:?}", outcome.reply);
        }
    }
}

fn read_line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line
}

#[test]
fn plaintext_delivery_reuses_one_connection() {
    let handler = Arc::new(SinkHandler::default());
    let (server, addr) = serve(sink_config("--tls-engine none"), handler.clone());
    let report = deliver_to(addr, "--tls no", 5);
    all_delivered(&report, 5);
    assert!(report.finished.iter().all(|f| f.tls.is_none()));
    assert!(!report.reconnected_plaintext);
    server.shutdown(Duration::from_secs(5));
    assert_eq!(
        handler.summary(),
        "accepted=5 rejected=0 connections=1 recipients=5"
    );
}

#[cfg(feature = "rustls")]
#[test]
fn starttls_delivery_with_a_self_signed_certificate() {
    let handler = Arc::new(SinkHandler::default());
    let (server, addr) = serve(sink_config("--tls-engine rustls"), handler.clone());
    let report = deliver_to(addr, "--tls ifavailable --tls-engine rustls", 3);
    all_delivered(&report, 3);
    assert!(report.finished.iter().all(|f| f.tls.is_some()));
    server.shutdown(Duration::from_secs(5));
    assert_eq!(
        handler.summary(),
        "accepted=3 rejected=0 connections=1 recipients=3"
    );
}

#[cfg(feature = "openssl")]
#[test]
fn starttls_delivery_with_the_openssl_engines() {
    let handler = Arc::new(SinkHandler::default());
    let (server, addr) = serve(sink_config("--tls-engine openssl"), handler.clone());
    let report = deliver_to(addr, "--tls required --tls-engine openssl", 2);
    all_delivered(&report, 2);
    assert!(report.finished.iter().all(|f| f.tls.is_some()));
    server.shutdown(Duration::from_secs(5));
}

/// A large body goes out through many partial writes (the WRITABLE
/// interest comes and goes) and in through many reads.
#[cfg(feature = "rustls")]
#[test]
fn a_large_body_is_streamed_both_ways() {
    let handler = Arc::new(SinkHandler::default());
    let (server, addr) = serve(sink_config(""), handler.clone());
    let report = deliver_to(addr, "--size 8000000", 2);
    all_delivered(&report, 2);
    assert!(report.finished.iter().all(|f| f.tls.is_some()));
    server.shutdown(Duration::from_secs(5));
}

/// `ca` verification with no CA rejects the self-signed certificate;
/// `ifavailable` with fallback then asks for a fresh plaintext connection.
#[cfg(feature = "rustls")]
#[test]
fn a_failed_starttls_reconnects_in_plaintext() {
    let handler = Arc::new(SinkHandler::default());
    let (server, addr) = serve(sink_config(""), handler.clone());
    let report = deliver_to(addr, "--tls ifavailable --fallback true --verify ca", 3);
    assert!(report.reconnected_plaintext);
    all_delivered(&report, 3);
    assert!(report.finished.iter().all(|f| f.tls.is_none()));
    // Without fallback, the same failure defers every message instead.
    let report = deliver_to(addr, "--tls ifavailable --fallback false --verify ca", 2);
    assert!(!report.reconnected_plaintext);
    assert_eq!(report.finished.len(), 2);
    assert!(report
        .finished
        .iter()
        .flat_map(|f| &f.outcomes)
        .all(|o| o.delivery == Delivery::Transient));
    server.shutdown(Duration::from_secs(5));
    assert_eq!(
        handler.summary(),
        "accepted=3 rejected=0 connections=3 recipients=3"
    );
}

#[test]
fn a_refused_connection_leaves_every_message_transient() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let report = deliver_to(port, "--tls no", 3);
    assert_eq!(report.finished.len(), 3);
    for outcome in report.finished.iter().flat_map(|f| &f.outcomes) {
        assert_eq!(outcome.delivery, Delivery::Transient);
        assert!(outcome.reply.to_string().contains("cannot connect"));
    }
}

#[test]
fn over_the_connection_limit_is_told_421() {
    let (server, addr) = serve(
        sink_config("--tls-engine none --max-connections 1"),
        Arc::new(SinkHandler::default()),
    );
    let mut first = BufReader::new(TcpStream::connect(addr).unwrap());
    assert!(read_line(&mut first).starts_with("220 "));
    let mut second = BufReader::new(TcpStream::connect(addr).unwrap());
    let refusal = read_line(&mut second);
    assert!(
        refusal.starts_with("421 4.3.2 localhost Too many connections"),
        "{refusal}"
    );
    let mut rest = String::new();
    second.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "closed after the refusal");
    // Once the first leaves, there is room again.
    first.get_mut().write_all(b"QUIT\r\n").unwrap();
    assert!(read_line(&mut first).starts_with("221 "));
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut third = BufReader::new(TcpStream::connect(addr).unwrap());
        let line = read_line(&mut third);
        if line.starts_with("220 ") {
            break;
        }
        // The first connection's end may not have been seen yet.
        assert!(Instant::now() < deadline, "{line}");
        thread::sleep(Duration::from_millis(20));
    }
    server.shutdown(Duration::from_secs(5));
}

/// The session's own deadline, from the loop's timer heap.
#[test]
fn an_idle_session_times_out() {
    let mut config = sink_config("--tls-engine none");
    let server = Arc::get_mut(&mut config.listeners[0].server).unwrap();
    server.timeouts.command = Duration::from_millis(300);
    let (server, addr) = serve(config, Arc::new(SinkHandler::default()));
    let started = Instant::now();
    let mut client = BufReader::new(TcpStream::connect(addr).unwrap());
    assert!(read_line(&mut client).starts_with("220 "));
    let timeout = read_line(&mut client);
    assert!(timeout.starts_with("421 4.4.2"), "{timeout}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    server.shutdown(Duration::from_secs(5));
}

/// Answers every decision at once, except the end of each message, which
/// another thread answers a little later.
struct Slow {
    later: Mutex<mpsc::Sender<Decision>>,
    delay: Duration,
}

impl Handler for Slow {
    fn on_event(&self, _: &ConnectionInfo, event: &Event, decision: Option<Decision>) {
        match (event, decision) {
            (Event::MessageEnd { .. }, Some(decision)) => {
                self.later.lock().unwrap().send(decision).unwrap();
            }
            (_, Some(decision)) => decision.accept(),
            _ => {}
        }
    }
}

#[test]
fn a_decision_from_another_thread_reaches_its_connection() {
    let (tx, rx) = mpsc::channel::<Decision>();
    let delay = Duration::from_millis(200);
    let answering = thread::spawn(move || {
        for decision in rx {
            thread::sleep(delay);
            decision.accept();
        }
    });
    let handler = Arc::new(Slow {
        later: Mutex::new(tx),
        delay,
    });
    let (server, addr) = serve(sink_config("--tls-engine none"), handler.clone());
    let started = Instant::now();
    let report = deliver_to(addr, "--tls no", 3);
    all_delivered(&report, 3);
    assert!(started.elapsed() >= handler.delay * 3);
    server.shutdown(Duration::from_secs(5));
    drop(handler);
    answering.join().unwrap();
}

#[test]
fn shutdown_stops_accepting_and_drops_sessions_after_the_grace() {
    let (server, addr) = serve(
        sink_config("--tls-engine none"),
        Arc::new(SinkHandler::default()),
    );
    let mut idle = BufReader::new(TcpStream::connect(addr).unwrap());
    assert!(read_line(&mut idle).starts_with("220 "));
    let grace = Duration::from_millis(300);
    let started = Instant::now();
    server.shutdown(grace);
    assert!(started.elapsed() >= grace, "the idle session had its grace");
    let mut rest = String::new();
    // Cut at the end of the grace: told so, then closed.
    let _ = idle.read_to_string(&mut rest);
    assert!(rest.starts_with("421 4.3.2 "), "{rest:?}");
    assert!(TcpStream::connect(addr).is_err(), "no longer listening");
}

#[test]
fn shutdown_is_quick_when_sessions_end_by_themselves() {
    let (server, addr) = serve(
        sink_config("--tls-engine none"),
        Arc::new(SinkHandler::default()),
    );
    let report = deliver_to(addr, "--tls no", 1);
    all_delivered(&report, 1);
    let started = Instant::now();
    // Returns once the session has ended by itself, long before the grace;
    // not timed here (no timed assertions), only required to return.
    server.shutdown(Duration::from_secs(30));
    let _ = started;
}

/// Several connections on one loop, one of which cannot connect, and a
/// source address: every batch gets its own complete report.
#[test]
fn many_connections_on_one_loop() {
    let handler = Arc::new(SinkHandler::default());
    let (server, addr) = serve(sink_config("--tls-engine none"), handler.clone());
    let refused = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let batches = [addr, refused, addr, addr]
        .into_iter()
        .map(|to| {
            let (config, messages) = send("--tls no", 4);
            Batch {
                addr: to,
                server_name: "localhost".into(),
                config,
                messages,
            }
        })
        .collect();
    let options = DeliverOptions {
        source: Some("127.0.0.1".parse().unwrap()),
        ..DeliverOptions::default()
    };
    let reports = deliver_many(batches, &options);
    assert_eq!(reports.len(), 4);
    for (n, report) in reports.iter().enumerate() {
        if n == 1 {
            assert_eq!(report.finished.len(), 4);
            assert!(report
                .finished
                .iter()
                .flat_map(|f| &f.outcomes)
                .all(|o| o.delivery == Delivery::Transient));
        } else {
            all_delivered(report, 4);
        }
    }
    server.shutdown(Duration::from_secs(5));
    assert_eq!(
        handler.summary(),
        "accepted=12 rejected=0 connections=3 recipients=12"
    );
}

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

/// A panicking handler ends its own connection, not the others on its loop.
#[test]
fn a_panicking_handler_ends_only_its_connection() {
    let (server, addr) = serve(sink_config("--tls-engine none"), Arc::new(Fragile));
    // One idle connection per loop, so that every loop has one.
    let loops = thread::available_parallelism().map_or(1, |n| n.get());
    let mut idle: Vec<_> = (0..loops)
        .map(|_| {
            let mut client = BufReader::new(TcpStream::connect(addr).unwrap());
            assert!(read_line(&mut client).starts_with("220 "));
            client
        })
        .collect();
    let report = deliver_to(addr, "--tls no --rcpt panic@example.com", 1);
    assert_eq!(report.finished.len(), 1);
    assert_eq!(
        report.finished[0].outcomes[0].delivery,
        Delivery::Transient,
        "{report:?}"
    );
    for client in &mut idle {
        client.get_mut().write_all(b"NOOP\r\n").unwrap();
        assert!(read_line(client).starts_with("250 "));
    }
    all_delivered(&deliver_to(addr, "--tls no", 1), 1);
    drop(idle);
    server.shutdown(Duration::from_secs(5));
}

/// Pipelined input the server never reads: enough that some of it is
/// still unread when the session closes (one read takes at most 64 KiB).
fn unread_input() -> Vec<u8> {
    b"NOOP\r\n".repeat(64 * 1024)
}

/// Reads what is left until the server's end of input, which must be a
/// clean close: no reset, either at the read or waiting on the socket.
fn expect_clean_close(client: &mut BufReader<TcpStream>, after: &str) {
    let mut rest = Vec::new();
    let read = client.read_to_end(&mut rest);
    assert!(read.is_ok(), "after {after}: {read:?}");
    assert_eq!(
        String::from_utf8_lossy(&rest),
        "",
        "after {after}: closed at once"
    );
    // A reset after the end of input (the kernel's answer to input left
    // unread) shows here, and on a real network may destroy the reply.
    let error = client.get_ref().take_error().unwrap();
    assert!(error.is_none(), "after {after}: {error:?}");
}

/// A session that closes with input unread (the 554 refusing an injected
/// STARTTLS) shuts its side and drains the rest: the peer reads the whole
/// 554 and then a clean end of input, not a reset.
#[cfg(feature = "rustls")]
#[test]
fn an_injected_starttls_is_refused_without_a_reset() {
    let (server, addr) = serve(
        sink_config("--tls-engine rustls"),
        Arc::new(SinkHandler::default()),
    );
    let mut client = BufReader::new(TcpStream::connect(addr).unwrap());
    assert!(read_line(&mut client).starts_with("220 "));
    let mut input = b"EHLO x\r\nSTARTTLS\r\nEHLO x\r\n".to_vec();
    input.extend(unread_input());
    // Most of it is still unread when the 554 closes the session.
    client.get_mut().write_all(&input).unwrap();
    let refusal = loop {
        let line = read_line(&mut client);
        assert!(line.starts_with("250"), "{line:?}");
        if line.starts_with("250 ") {
            break read_line(&mut client);
        }
    };
    assert!(
        refusal.starts_with("554 ") && refusal.ends_with("\r\n"),
        "{refusal:?}"
    );
    expect_clean_close(&mut client, "the 554");
    drop(client);
    server.shutdown(Duration::from_secs(5));
}

/// The refusal of a connection over the limit is read in full, even by a
/// peer that sent its commands before reading the greeting.
#[test]
fn a_refusal_over_the_limit_survives_pipelined_input() {
    let (server, addr) = serve(
        sink_config("--tls-engine none --max-connections 1"),
        Arc::new(SinkHandler::default()),
    );
    let mut first = BufReader::new(TcpStream::connect(addr).unwrap());
    assert!(read_line(&mut first).starts_with("220 "));
    let mut second = BufReader::new(TcpStream::connect(addr).unwrap());
    let mut input = b"EHLO x\r\n".to_vec();
    input.extend(unread_input());
    second.get_mut().write_all(&input).unwrap();
    let refusal = read_line(&mut second);
    assert!(
        refusal.starts_with("421 4.3.2 localhost Too many connections")
            && refusal.ends_with("\r\n"),
        "{refusal:?}"
    );
    expect_clean_close(&mut second, "the 421");
    drop((first, second));
    server.shutdown(Duration::from_secs(5));
}

/// A closed session's place under the limit is free as soon as its socket
/// starts draining: by the time its peer sees the end of input.
#[test]
fn a_draining_socket_holds_no_place_under_the_limit() {
    let (server, addr) = serve(
        sink_config("--tls-engine none --max-connections 1"),
        Arc::new(SinkHandler::default()),
    );
    let mut first = BufReader::new(TcpStream::connect(addr).unwrap());
    assert!(read_line(&mut first).starts_with("220 "));
    first.get_mut().write_all(b"QUIT\r\n").unwrap();
    assert!(read_line(&mut first).starts_with("221 "));
    expect_clean_close(&mut first, "the 221");
    // `first` is still open, and the server still drains it.
    let mut second = BufReader::new(TcpStream::connect(addr).unwrap());
    let greeting = read_line(&mut second);
    assert!(greeting.starts_with("220 "), "{greeting:?}");
    drop((first, second));
    server.shutdown(Duration::from_secs(5));
}
