//! The conformance suite: written once, run against each runtime through
//! its `<runtime>-sink` and `<runtime>-send` examples. Every test is a
//! function of the runtime; `per_runtime!` at the bottom instantiates each
//! one as `tokio::name`, `mio::name` and `smol::name`, so a failure names
//! the runtime.
//!
//! Not here: server timeouts (the sink has no flags to shorten the RFC 5321
//! five-minute timeouts, so they are tested in core's simulation instead).
use std::time::Duration;

use std::io::{self, Write};
use std::thread;

use petrel_tests::{
    count_lines_starting, listen_backlog, maildir_messages, path_str, send, somaxconn, swaks,
    swaks_ok, temp_dir, write_message_file, Pki, RawSmtp, ReadOutcome, Runtime, SClient, Sink,
    BULK_TIMEOUT, CLIENT_TIMEOUT,
};

// ---------------------------------------------------------------------------
// Sessions with swaks

fn plain_session_swaks(rt: Runtime) {
    let sink = Sink::start(rt, &[]);
    let output = swaks_ok(sink.addr, &[], CLIENT_TIMEOUT);
    assert!(
        !output.contains("TLS started"),
        "swaks used TLS unasked:\n{output}"
    );
    let counts = sink.stop();
    assert_eq!(counts.accepted, 1, "{counts:?}");
    assert_eq!(counts.connections, 1, "{counts:?}");
}

fn starttls_swaks(rt: Runtime, engine: &str) {
    let sink = Sink::start(rt, &["--tls-engine", engine]);
    let output = swaks_ok(sink.addr, &["--tls"], CLIENT_TIMEOUT);
    assert!(
        output.contains("TLS started"),
        "no TLS with the {engine} engine:\n{output}"
    );
    assert_eq!(sink.stop().accepted, 1);
}

fn starttls_swaks_rustls(rt: Runtime) {
    starttls_swaks(rt, "rustls");
}

fn starttls_swaks_openssl(rt: Runtime) {
    starttls_swaks(rt, "openssl");
}

fn starttls_swaks_own_certificate(rt: Runtime) {
    let pki = Pki::new();
    for engine in ["rustls", "openssl"] {
        let sink = Sink::start(
            rt,
            &[
                "--tls-engine",
                engine,
                "--cert",
                path_str(&pki.cert),
                "--key",
                path_str(&pki.key),
            ],
        );
        let output = swaks_ok(
            sink.addr,
            &["--tls", "--tls-verify", "--tls-ca-path", path_str(&pki.ca)],
            CLIENT_TIMEOUT,
        );
        assert!(output.contains("TLS started"), "{engine}:\n{output}");
        assert_eq!(sink.stop().accepted, 1, "{engine}");
    }
}

fn pipelining_swaks(rt: Runtime) {
    let sink = Sink::start(rt, &[]);
    for tls in [false, true] {
        let mut args = vec!["--pipeline"];
        if tls {
            args.push("--tls");
        }
        swaks_ok(sink.addr, &args, CLIENT_TIMEOUT);
    }
    assert_eq!(sink.stop().accepted, 2);
}

/// The whole transaction in one segment: every reply comes back, in order.
fn pipelining_raw(rt: Runtime) {
    let sink = Sink::start(rt, &["--tls-engine", "none"]);
    let mut smtp = RawSmtp::connect(sink.addr);
    smtp.expect(220, "connecting");
    let ehlo = smtp.command("EHLO raw.example", 250);
    assert!(ehlo.has_keyword("PIPELINING"), "{:?}", ehlo.lines);
    smtp.send(
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\n\
          RCPT TO:<c@example.com>\r\nDATA\r\n",
    );
    smtp.expect(250, "pipelined MAIL");
    smtp.expect(250, "pipelined RCPT 1");
    smtp.expect(250, "pipelined RCPT 2");
    smtp.expect(354, "pipelined DATA");
    smtp.send(
        b"Subject: pipelined\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@example.org>\r\nRSET\r\nQUIT\r\n",
    );
    smtp.expect(250, "end of data");
    smtp.expect(250, "pipelined MAIL after data");
    smtp.expect(250, "pipelined RSET");
    smtp.expect(221, "pipelined QUIT");
    smtp.expect_closed("QUIT");
    assert_eq!(sink.stop().accepted, 1);
}

/// CHUNKING: a body in several BDAT chunks, and one in a single LAST chunk,
/// with bytes (a bare LF, a lone dot line) that DATA would treat specially.
fn bdat_raw(rt: Runtime) {
    let sink = Sink::start(rt, &["--tls-engine", "none"]);
    let mut smtp = RawSmtp::connect(sink.addr);
    smtp.expect(220, "connecting");
    let ehlo = smtp.command("EHLO raw.example", 250);
    assert!(
        ehlo.has_keyword("CHUNKING"),
        "CHUNKING not offered: {:?}",
        ehlo.lines
    );

    smtp.command("MAIL FROM:<a@example.org> BODY=BINARYMIME", 250);
    smtp.command("RCPT TO:<b@example.com>", 250);
    let first = b"Subject: chunked\r\n\r\nfirst chunk\r\n.\r\n";
    let mut chunk = format!("BDAT {}\r\n", first.len()).into_bytes();
    chunk.extend_from_slice(first);
    smtp.send(&chunk);
    smtp.expect(250, "BDAT chunk 1");
    let second = b"bare\nLF and binary \x00\xff\r\n";
    let mut chunk = format!("BDAT {}\r\n", second.len()).into_bytes();
    chunk.extend_from_slice(second);
    smtp.send(&chunk);
    smtp.expect(250, "BDAT chunk 2");
    smtp.command("BDAT 0 LAST", 250);

    // One chunk, pipelined with the envelope.
    let body = b"Subject: one chunk\r\n\r\nall at once\r\n";
    let mut pipelined = format!(
        "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nBDAT {} LAST\r\n",
        body.len()
    )
    .into_bytes();
    pipelined.extend_from_slice(body);
    smtp.send(&pipelined);
    smtp.expect(250, "pipelined MAIL");
    smtp.expect(250, "pipelined RCPT");
    smtp.expect(250, "BDAT LAST");
    smtp.command("QUIT", 221);
    assert_eq!(sink.stop().accepted, 2);
}

// ---------------------------------------------------------------------------
// Large bodies

/// A 50 MB message from our client to our server, streamed: the sink's peak
/// RSS stays far below the message size. (Observed peaks are a few MB; the
/// 40 MB bound leaves a wide margin for allocator and runtime overheads.)
fn large_body_50mb(rt: Runtime) {
    const SIZE: u64 = 50 * 1024 * 1024;
    const MAX_SINK_PEAK_RSS: u64 = 40 * 1024 * 1024;
    let sink = Sink::start(rt, &[]);
    let size = SIZE.to_string();
    let report = send(
        rt,
        sink.addr,
        &["--count", "1", "--concurrency", "1", "--size", &size],
        BULK_TIMEOUT,
    );
    report.assert_counts((1, 0, 0, 1, 0), "50 MB over STARTTLS");
    let peak = sink.peak_rss_bytes();
    let counts = sink.stop();
    assert_eq!(counts.accepted, 1, "{counts:?}");
    assert!(
        peak < MAX_SINK_PEAK_RSS,
        "the sink's peak RSS was {peak} bytes for a {SIZE}-byte message: the body is not streamed"
    );
}

/// A 10 MB message from swaks (`--data FILE`), stored in a maildir whole.
fn large_body_10mb_swaks(rt: Runtime) {
    const MARKER: &str = "END-OF-PETREL-LARGE-BODY";
    let dir = temp_dir();
    let message = dir.path().join("message.eml");
    write_message_file(&message, 10 * 1024 * 1024, MARKER);
    let maildir = dir.path().join("maildir");
    let sink = Sink::start(rt, &["--maildir", path_str(&maildir)]);
    swaks_ok(
        sink.addr,
        &["--data", path_str(&message), "--suppress-data"],
        BULK_TIMEOUT,
    );
    assert_eq!(sink.stop().accepted, 1);
    let stored = maildir_messages(&maildir);
    assert_eq!(stored.len(), 1, "{stored:?}");
    let bytes = std::fs::read(&stored[0]).unwrap();
    // At least the body, whether stored with CRLF or LF line ends.
    assert!(
        bytes.len() >= 10_000_000,
        "stored only {} bytes",
        bytes.len()
    );
    let tail = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(200)..]).into_owned();
    assert!(
        tail.contains(MARKER),
        "the stored message does not end with the body's end: {tail:?}"
    );
}

// ---------------------------------------------------------------------------
// Load and limits

fn many_concurrent_connections(rt: Runtime) {
    let sink = Sink::start(rt, &[]);
    let report = send(
        rt,
        sink.addr,
        &["--count", "500", "--concurrency", "50", "--size", "2000"],
        BULK_TIMEOUT,
    );
    report.assert_counts((500, 0, 0, 500, 0), "500 messages over 50 connections");
    let counts = sink.stop();
    assert_eq!(counts.accepted, 500, "{counts:?}");
    assert!(
        counts.connections >= 1 && counts.connections <= 500,
        "{counts:?}"
    );
}

fn connection_limit(rt: Runtime) {
    let sink = Sink::start(rt, &["--max-connections", "2"]);
    let mut first = RawSmtp::connect(sink.addr);
    first.expect(220, "connection 1");
    let mut second = RawSmtp::connect(sink.addr);
    second.expect(220, "connection 2");
    let mut third = RawSmtp::connect(sink.addr);
    let line = third
        .read_line()
        .expect("the third connection closed without a reply");
    assert!(
        line.starts_with("421 4.3.2"),
        "third connection got {line:?}"
    );
    third.expect_clean_close("421");
    // The two below the limit still work.
    first.command("NOOP", 250);
    second.command("NOOP", 250);
    first.command("QUIT", 221);
    second.command("QUIT", 221);
    drop((first, second, third));
    // Once they are gone, a new connection is served again.
    let mut fourth = RawSmtp::connect(sink.addr);
    let mut greeting = fourth.read_reply();
    // The sink may not have noticed the closes yet: retry briefly (bounded).
    for _ in 0..50 {
        if greeting.code == 220 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        fourth = RawSmtp::connect(sink.addr);
        greeting = fourth.read_reply();
    }
    assert_eq!(greeting.code, 220, "{:?}", greeting.lines);
    fourth.command("QUIT", 221);
    drop(fourth);
    assert_eq!(sink.stop().accepted, 0);
}

/// Pipelined commands enough that the server has not read them all when
/// it closes (one read takes at most 64 KiB).
fn unread_input() -> Vec<u8> {
    b"NOOP\r\n".repeat(64 * 1024)
}

/// `--max-connections-per-ip`: N connections from 127.0.0.1 are served,
/// the next is told `421 4.7.0` and closed cleanly even with commands
/// pipelined; once one leaves (its place is free by the time it sees the
/// end of its input), a new one is served.
fn per_address_limit(rt: Runtime) {
    let sink = Sink::start(
        rt,
        &["--tls-engine", "none", "--max-connections-per-ip", "2"],
    );
    let mut first = RawSmtp::connect(sink.addr);
    first.expect(220, "connection 1");
    let mut second = RawSmtp::connect(sink.addr);
    second.expect(220, "connection 2");
    let mut third = RawSmtp::connect(sink.addr);
    third.send(&unread_input());
    assert_eq!(
        third.read_line().as_deref(),
        Some("421 4.7.0 localhost Error: too many connections from 127.0.0.1")
    );
    third.expect_clean_close("421 4.7.0");
    second.command("NOOP", 250);
    first.command("QUIT", 221);
    first.expect_clean_close("221");
    let mut fourth = RawSmtp::connect(sink.addr);
    fourth.expect(220, "a connection after one left");
    fourth.command("QUIT", 221);
    second.command("QUIT", 221);
    drop((first, second, third, fourth));
    let counts = sink.stop();
    assert_eq!(
        counts.connections, 3,
        "the refused one was no session: {counts:?}"
    );
}

/// `--backlog`, and the default 1024, bounded by the kernel's somaxconn.
fn listen_backlog_configured(rt: Runtime) {
    let sink = Sink::start(rt, &["--tls-engine", "none", "--backlog", "7"]);
    assert_eq!(listen_backlog(sink.addr), 7);
    sink.stop();
    let sink = Sink::start(rt, &["--tls-engine", "none"]);
    assert_eq!(listen_backlog(sink.addr), 1024.min(somaxconn()));
    sink.stop();
}

/// A sink out of descriptors cannot accept; it tries again by itself, and
/// the connections waiting in its backlog are served once descriptors are
/// free again (no new connection comes to wake it up).
fn accept_resumes_when_descriptors_free_up(rt: Runtime) {
    const CLIENTS: usize = 100;
    let sink = Sink::start_with_descriptor_limit(
        rt,
        64,
        &["--tls-engine", "none", "--max-connections-per-ip", "0"],
    );
    let mut clients: Vec<RawSmtp> = (0..CLIENTS).map(|_| RawSmtp::connect(sink.addr)).collect();
    // Not timed: a sink slower than this greets fewer now and more later.
    thread::sleep(Duration::from_secs(1));
    // Kept open until all are sorted: each one closed frees a descriptor.
    let (mut greeted, mut waiting) = (Vec::new(), Vec::new());
    for mut client in clients.drain(..) {
        match client.read_some(Duration::from_millis(1)) {
            ReadOutcome::Data(bytes) => {
                assert!(
                    bytes.starts_with(b"220 "),
                    "{:?}",
                    String::from_utf8_lossy(&bytes)
                );
                greeted.push(client);
            }
            ReadOutcome::Silent => waiting.push(client),
            ReadOutcome::Closed => panic!("a connection was closed unanswered"),
        }
    }
    assert!(!greeted.is_empty(), "no connection was served at all");
    assert!(
        !waiting.is_empty(),
        "all {CLIENTS} connections were served: the descriptor limit did not bite"
    );
    // The greeted ones go; every waiting one gets its greeting.
    drop(greeted);
    for client in &mut waiting {
        client.expect(220, "a connection accepted once descriptors were free");
    }
    drop(waiting);
    sink.stop();
}

/// A client that pipelines commands and never reads the replies stops
/// being read: the sink holds a bounded amount for it. Once it reads,
/// every command it got in is answered, in order.
fn unread_replies_stop_reading(rt: Runtime) {
    /// More than every socket buffer on the way, many times over.
    const BOUND: usize = 64 * 1024 * 1024;
    let sink = Sink::start(rt, &["--tls-engine", "none"]);
    let mut smtp = RawSmtp::connect_small_buffers(sink.addr);
    smtp.expect(220, "connecting");
    smtp.command("EHLO x", 250);
    let chunk = b"NOOP\r\n".repeat(10_000);
    let mut writer = smtp.stream().try_clone().unwrap();
    writer.set_nonblocking(true).unwrap();
    let (mut sent, mut stalled) = (0, 0);
    // Stalled: nothing got in for a whole second.
    while stalled < 20 && sent < BOUND {
        match writer.write(&chunk[sent % chunk.len()..]) {
            Ok(n) => (sent, stalled) = (sent + n, 0),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                stalled += 1;
                thread::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("after {sent} octets: {error}"),
        }
    }
    assert!(
        sent < BOUND,
        "the sink read {sent} octets from a client that reads nothing"
    );
    // The rest of the last command and QUIT, from another thread: the
    // sink reads again only once this one reads.
    writer.set_nonblocking(false).unwrap();
    let partial = sent % 6;
    let commands = sent.div_ceil(6);
    let finishing = thread::spawn(move || {
        let rest = if partial > 0 {
            &b"NOOP\r\n"[partial..]
        } else {
            &[][..]
        };
        writer.write_all(rest)?;
        writer.write_all(b"QUIT\r\n")
    });
    for n in 0..commands {
        smtp.expect(250, &format!("NOOP {n} of {commands}"));
    }
    smtp.expect(221, "QUIT");
    finishing.join().unwrap().unwrap();
    drop(smtp);
    sink.stop();
}

// ---------------------------------------------------------------------------
// STARTTLS: command injection (CVE-2011-0411), require-TLS

/// Greeting, EHLO, then `STARTTLS\r\nEHLO x\r\n` in one segment.
fn inject_after_starttls(sink: &Sink) -> RawSmtp {
    let mut smtp = RawSmtp::connect(sink.addr);
    smtp.expect(220, "connecting");
    let ehlo = smtp.command("EHLO x", 250);
    assert!(
        ehlo.has_keyword("STARTTLS"),
        "STARTTLS not offered: {:?}",
        ehlo.lines
    );
    smtp.send(b"STARTTLS\r\nEHLO x\r\n");
    smtp
}

fn injection_rejected(rt: Runtime) {
    for args in [&[][..], &["--injection-policy", "reject"][..]] {
        let sink = Sink::start(rt, args);
        let mut smtp = inject_after_starttls(&sink);
        // More behind it than the server reads before it closes: still a
        // clean close, not a reset that could destroy the 554.
        smtp.send(&unread_input());
        let reply = smtp.read_reply();
        assert_eq!(reply.code, 554, "policy {args:?}: {:?}", reply.lines);
        smtp.expect_clean_close("554 to injected STARTTLS");
        drop(smtp);
        assert_eq!(sink.stop().accepted, 0);
    }
}

fn injection_ignored(rt: Runtime) {
    let sink = Sink::start(rt, &["--injection-policy", "ignore"]);
    let mut smtp = inject_after_starttls(&sink);
    smtp.expect(220, "STARTTLS with injected EHLO (policy ignore)");
    // The server now waits for a ClientHello; the injected EHLO must not be
    // answered in plaintext.
    match smtp.read_some(Duration::from_secs(2)) {
        ReadOutcome::Silent | ReadOutcome::Closed => {}
        ReadOutcome::Data(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.starts_with("250"),
                "the injected EHLO was answered: {text:?}"
            );
        }
    }
    drop(smtp);
    assert_eq!(sink.stop().accepted, 0);
}

fn require_tls(rt: Runtime) {
    let sink = Sink::start(rt, &["--require-tls"]);
    let refused = swaks(sink.addr, &[], CLIENT_TIMEOUT);
    assert!(
        !refused.status.success(),
        "accepted without TLS:\n{}",
        refused.output
    );
    assert!(
        refused.output.contains("<** 530"),
        "no 530 without TLS:\n{}",
        refused.output
    );
    let output = swaks_ok(sink.addr, &["--tls"], CLIENT_TIMEOUT);
    assert!(output.contains("TLS started"), "{output}");
    let counts = sink.stop();
    assert_eq!(counts.accepted, 1, "{counts:?}");
}

// ---------------------------------------------------------------------------
// TLS handshakes and renegotiation with openssl s_client

fn s_client_handshakes(rt: Runtime) {
    for engine in ["rustls", "openssl"] {
        let sink = Sink::start(rt, &["--tls-engine", engine]);
        for version in ["-tls1_2", "-tls1_3"] {
            let mut client = SClient::connect(sink.addr, version);
            client.type_expecting_250("EHLO x");
            client.type_expecting_250("NOOP");
            client.type_line("quit");
            client.wait_for_or_exit(CLIENT_TIMEOUT, |out| count_lines_starting(out, "221 ") > 0);
            let transcript = client.close();
            assert_eq!(
                count_lines_starting(&transcript, "221 "),
                1,
                "{engine} {version}: no 221:\n{transcript}"
            );
        }
        sink.stop();
    }
}

/// Types `R` and waits (bounded) for the renegotiation to finish one way or
/// the other: new handshake lines, a refusal, or s_client exiting.
fn renegotiate(client: &mut SClient) {
    let handshakes = client.count("verify return:");
    client.type_line("R");
    client.wait_for_or_exit(CLIENT_TIMEOUT, |out| {
        count_lines_starting(out, "verify return:") > handshakes
            || out.contains("no renegotiation")
            || out.contains(":error:")
    });
    // Let the client settle before the next line.
    std::thread::sleep(Duration::from_millis(300));
}

fn assert_renegotiation_refused(rt: Runtime, args: &[&str]) {
    let sink = Sink::start(rt, args);
    let mut client = SClient::connect(sink.addr, "-tls1_2");
    client.type_expecting_250("EHLO x");
    let replies = client.count("250 ");
    renegotiate(&mut client);
    client.type_line("NOOP");
    // A refused renegotiation ends s_client; wait (bounded) for that or a reply.
    client.wait_for_or_exit(Duration::from_secs(5), |out| {
        petrel_tests::count_lines_starting(out, "250 ") > replies
    });
    let transcript = client.close();
    assert!(
        transcript.contains("no renegotiation"),
        "{args:?}: renegotiation not refused:\n{transcript}"
    );
    assert_eq!(
        petrel_tests::count_lines_starting(&transcript, "250 "),
        replies,
        "{args:?}: NOOP answered after a refused renegotiation:\n{transcript}"
    );
    sink.stop();
}

fn renegotiation_refused_rustls(rt: Runtime) {
    assert_renegotiation_refused(rt, &["--tls-engine", "rustls"]);
    // rustls never renegotiates, whatever the setting.
    assert_renegotiation_refused(
        rt,
        &["--tls-engine", "rustls", "--allow-renegotiation", "true"],
    );
}

fn renegotiation_refused_openssl(rt: Runtime) {
    assert_renegotiation_refused(rt, &["--tls-engine", "openssl"]);
    assert_renegotiation_refused(
        rt,
        &["--tls-engine", "openssl", "--allow-renegotiation", "false"],
    );
}

fn renegotiation_allowed_openssl_until_cap(rt: Runtime) {
    let sink = Sink::start(
        rt,
        &[
            "--tls-engine",
            "openssl",
            "--allow-renegotiation",
            "true",
            "--max-renegotiations",
            "2",
        ],
    );
    let mut client = SClient::connect(sink.addr, "-tls1_2");
    client.type_expecting_250("EHLO x");
    for round in 1..=2 {
        let handshakes = client.count("verify return:");
        renegotiate(&mut client);
        assert!(
            client.count("verify return:") > handshakes,
            "renegotiation {round} did not complete:\n{}",
            client.output()
        );
        client.type_expecting_250("NOOP");
    }
    // The third is over the cap: the connection is closed.
    let replies = client.count("250 ");
    renegotiate(&mut client);
    client.type_line("NOOP");
    client.wait_for_or_exit(CLIENT_TIMEOUT, |_| false);
    let closed = client.has_exited();
    let transcript = client.close();
    assert!(
        closed,
        "the connection stayed open after a renegotiation over the cap:\n{transcript}"
    );
    assert_eq!(
        petrel_tests::count_lines_starting(&transcript, "250 "),
        replies,
        "NOOP answered after a renegotiation over the cap:\n{transcript}"
    );
    sink.stop();
}

// ---------------------------------------------------------------------------
// Our client to our server, in every TLS mode

const FEW: &str = "4";

fn send_few(rt: Runtime, sink: &Sink, args: &[&str]) -> petrel_tests::SendReport {
    let mut all = vec!["--count", FEW, "--concurrency", "2", "--size", "3000"];
    all.extend_from_slice(args);
    send(rt, sink.addr, &all, CLIENT_TIMEOUT)
}

fn client_tls_modes_without_starttls(rt: Runtime) {
    let sink = Sink::start(rt, &["--tls-engine", "none"]);
    let n = 4;
    send_few(rt, &sink, &["--tls", "no"]).assert_counts((n, 0, 0, 0, n), "--tls no");
    send_few(rt, &sink, &["--tls", "ifavailable"])
        .assert_counts((n, 0, 0, 0, n), "--tls ifavailable, not offered");
    send_few(rt, &sink, &["--tls", "required"])
        .assert_counts((0, n, 0, 0, 0), "--tls required, not offered");
    send_few(rt, &sink, &["--tls", "required", "--fallback", "true"]).assert_counts(
        (0, n, 0, 0, 0),
        "--tls required --fallback true, not offered",
    );
    let counts = sink.stop();
    assert_eq!(
        counts.accepted,
        2 * n,
        "required must never deliver in plaintext: {counts:?}"
    );
}

fn client_tls_modes_with_starttls(rt: Runtime) {
    let n = 4;
    for server_engine in ["rustls", "openssl"] {
        let sink = Sink::start(rt, &["--tls-engine", server_engine]);
        send_few(rt, &sink, &["--tls", "no"]).assert_counts(
            (n, 0, 0, 0, n),
            &format!("{server_engine} server, --tls no"),
        );
        for client_engine in ["rustls", "openssl"] {
            for mode in ["ifavailable", "required"] {
                send_few(rt, &sink, &["--tls", mode, "--tls-engine", client_engine]).assert_counts(
                    (n, 0, 0, n, 0),
                    &format!("{server_engine} server, {client_engine} client, --tls {mode}"),
                );
            }
        }
        assert_eq!(sink.stop().accepted, 5 * n, "{server_engine}");
    }
}

/// Certificate verification (`--verify`). The sender verifies the name in
/// `--to`, here the IP 127.0.0.1: the test certificate carries it as an IP
/// SAN, so `host` can succeed on loopback; the `other.example` certificate
/// has the right CA and the wrong name.
fn client_verify(rt: Runtime) {
    let pki = Pki::new();
    let n = 4;
    for client_engine in ["rustls", "openssl"] {
        let engine = ["--tls-engine", client_engine];
        let ca = ["--ca", path_str(&pki.ca)];
        let context = |what: &str| format!("{client_engine} client: {what}");

        let good = Sink::start(
            rt,
            &["--cert", path_str(&pki.cert), "--key", path_str(&pki.key)],
        );
        for verify in ["ca", "host", "optional"] {
            let mut args = vec!["--tls", "required", "--verify", verify];
            args.extend_from_slice(&engine);
            args.extend_from_slice(&ca);
            send_few(rt, &good, &args).assert_counts(
                (n, 0, 0, n, 0),
                &context(&format!("--verify {verify}, good certificate")),
            );
        }
        // Without the test CA the chain is untrusted.
        let mut args = vec!["--tls", "required", "--verify", "ca"];
        args.extend_from_slice(&engine);
        send_few(rt, &good, &args)
            .assert_counts((0, n, 0, 0, 0), &context("--verify ca, unknown CA"));
        assert_eq!(good.stop().accepted, 3 * n);

        let wrong_name = Sink::start(
            rt,
            &[
                "--cert",
                path_str(&pki.other_cert),
                "--key",
                path_str(&pki.other_key),
            ],
        );
        let run = |extra: &[&str]| {
            let mut args: Vec<&str> = extra.to_vec();
            args.extend_from_slice(&engine);
            args.extend_from_slice(&ca);
            send_few(rt, &wrong_name, &args)
        };
        run(&["--tls", "required", "--verify", "ca"])
            .assert_counts((n, 0, 0, n, 0), &context("--verify ca, other name"));
        run(&["--tls", "required", "--verify", "optional"])
            .assert_counts((n, 0, 0, n, 0), &context("--verify optional, other name"));
        run(&["--tls", "required", "--verify", "host"]).assert_counts(
            (0, n, 0, 0, 0),
            &context("--verify host, other name, required"),
        );
        run(&[
            "--tls",
            "ifavailable",
            "--fallback",
            "false",
            "--verify",
            "host",
        ])
        .assert_counts(
            (0, n, 0, 0, 0),
            &context("--verify host, other name, no fallback"),
        );
        run(&[
            "--tls",
            "ifavailable",
            "--fallback",
            "true",
            "--verify",
            "host",
        ])
        .assert_counts(
            (n, 0, 0, 0, n),
            &context("--verify host, other name, fallback"),
        );
        assert_eq!(wrong_name.stop().accepted, 3 * n);
    }
}

// ---------------------------------------------------------------------------

petrel_tests::per_runtime!(
    plain_session_swaks,
    starttls_swaks_rustls,
    starttls_swaks_openssl,
    starttls_swaks_own_certificate,
    pipelining_swaks,
    pipelining_raw,
    bdat_raw,
    large_body_50mb,
    large_body_10mb_swaks,
    many_concurrent_connections,
    connection_limit,
    per_address_limit,
    listen_backlog_configured,
    accept_resumes_when_descriptors_free_up,
    unread_replies_stop_reading,
    injection_rejected,
    injection_ignored,
    require_tls,
    s_client_handshakes,
    renegotiation_refused_rustls,
    renegotiation_refused_openssl,
    renegotiation_allowed_openssl_until_cap,
    client_tls_modes_without_starttls,
    client_tls_modes_with_starttls,
    client_verify,
);
