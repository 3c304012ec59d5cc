//! Interop with peers nobody here wrote, on each runtime: Python's smtplib
//! as client and aiosmtpd as server, Postfix's `smtp-source` driving our
//! sink and `smtp-sink` receiving from our sender. (swaks and
//! `openssl s_client` are driven from the conformance suite.) Every message
//! is accounted for on both sides.
use petrel_tests::{
    path_str, send, smtp_source, smtplib_send, Aiosmtpd, Pki, PostfixSink, Runtime, Sink,
    BULK_TIMEOUT, CLIENT_TIMEOUT,
};

fn smtplib_plain(rt: Runtime) {
    let sink = Sink::start(rt, &[]);
    smtplib_send(sink.addr, None);
    assert_eq!(sink.stop().accepted, 1);
}

/// `starttls()` then `send_message`, Python verifying our certificate for
/// 127.0.0.1 against the test CA, with each server engine.
fn smtplib_starttls(rt: Runtime) {
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
        let output = smtplib_send(sink.addr, Some(&pki.ca));
        assert!(output.contains("tls TLSv1."), "{engine}: {output}");
        assert_eq!(sink.stop().accepted, 1, "{engine}");
    }
}

fn aiosmtpd_plain(rt: Runtime) {
    let server = Aiosmtpd::start(None);
    let report = send(
        rt,
        server.addr,
        &["--count", "10", "--concurrency", "2", "--size", "5000"],
        CLIENT_TIMEOUT,
    );
    report.assert_counts(
        (10, 0, 0, 0, 10),
        "to aiosmtpd without STARTTLS (ifavailable)",
    );
    let counts = server.stop();
    assert_eq!((counts.messages, counts.plaintext), (10, 10), "{counts:?}");
}

fn aiosmtpd_starttls(rt: Runtime) {
    let pki = Pki::new();
    let server = Aiosmtpd::start(Some((&pki.cert, &pki.key)));
    for engine in ["rustls", "openssl"] {
        let report = send(
            rt,
            server.addr,
            &[
                "--count",
                "10",
                "--concurrency",
                "2",
                "--size",
                "5000",
                "--tls",
                "required",
                "--tls-engine",
                engine,
                "--verify",
                "host",
                "--ca",
                path_str(&pki.ca),
            ],
            CLIENT_TIMEOUT,
        );
        report.assert_counts(
            (10, 0, 0, 10, 0),
            &format!("to aiosmtpd over STARTTLS ({engine})"),
        );
    }
    let counts = server.stop();
    assert_eq!((counts.messages, counts.tls), (20, 20), "{counts:?}");
}

/// Postfix's load generator: 2000 messages of 1000 bytes over 20 parallel
/// sessions, one message per connection.
fn smtp_source_to_our_sink(rt: Runtime) {
    let sink = Sink::start(rt, &[]);
    smtp_source(
        sink.addr,
        &["-s", "20", "-m", "2000", "-l", "1000"],
        BULK_TIMEOUT,
    );
    let counts = sink.stop();
    assert_eq!(counts.accepted, 2000, "{counts:?}");
    assert_eq!(counts.rejected, 0, "{counts:?}");
}

/// Our sender delivering 2000 messages to Postfix's smtp-sink (which offers
/// no STARTTLS, so `ifavailable` goes plaintext).
fn send_to_postfix_smtp_sink(rt: Runtime) {
    let mut server = PostfixSink::start();
    let report = send(
        rt,
        server.addr,
        &["--count", "2000", "--concurrency", "20", "--size", "1000"],
        BULK_TIMEOUT,
    );
    report.assert_counts((2000, 0, 0, 0, 2000), "to smtp-sink");
    assert_eq!(server.wait_for_messages(2000, CLIENT_TIMEOUT), 2000);
}

petrel_tests::per_runtime!(
    smtplib_plain,
    smtplib_starttls,
    aiosmtpd_plain,
    aiosmtpd_starttls,
    smtp_source_to_our_sink,
    send_to_postfix_smtp_sink,
);
