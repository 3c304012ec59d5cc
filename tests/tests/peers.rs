//! The peers themselves, against each other, without any Petrel runtime:
//! proves the harness (process control, bounded waits, the test PKI) and
//! that every peer the suite needs is installed and works on this machine,
//! so a conformance failure is about Petrel, not about the tools.
use std::process::Command;

use petrel_tests::{
    count_lines_starting, path_str, require_tool, run, smtp_source, smtplib_send, swaks_ok,
    Aiosmtpd, Pki, PostfixSink, RawSmtp, SClient, BULK_TIMEOUT, CLIENT_TIMEOUT,
};

#[test]
fn swaks_to_postfix_smtp_sink() {
    let mut server = PostfixSink::start();
    swaks_ok(server.addr, &[], CLIENT_TIMEOUT);
    swaks_ok(server.addr, &["--pipeline"], CLIENT_TIMEOUT);
    assert_eq!(server.wait_for_messages(2, CLIENT_TIMEOUT), 2);
}

#[test]
fn smtp_source_to_postfix_smtp_sink() {
    let mut server = PostfixSink::start();
    smtp_source(
        server.addr,
        &["-s", "5", "-m", "50", "-l", "1000"],
        BULK_TIMEOUT,
    );
    assert_eq!(server.wait_for_messages(50, CLIENT_TIMEOUT), 50);
}

#[test]
fn raw_smtp_to_aiosmtpd() {
    let server = Aiosmtpd::start(None);
    let mut smtp = RawSmtp::connect(server.addr);
    smtp.expect(220, "connecting");
    let ehlo = smtp.command("EHLO raw.example", 250);
    assert!(ehlo.has_keyword("8BITMIME"), "{:?}", ehlo.lines);
    smtp.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
    smtp.expect(250, "MAIL");
    smtp.expect(250, "RCPT");
    smtp.expect(354, "DATA");
    smtp.send(b"Subject: raw\r\n\r\nbody\r\n.\r\n");
    smtp.expect(250, "end of data");
    smtp.command("QUIT", 221);
    smtp.expect_closed("QUIT");
    assert_eq!(server.stop().messages, 1);
}

#[test]
fn python_peers_with_the_test_pki() {
    let pki = Pki::new();
    let server = Aiosmtpd::start(Some((&pki.cert, &pki.key)));
    smtplib_send(server.addr, None);
    let output = smtplib_send(server.addr, Some(&pki.ca));
    assert!(output.contains("tls TLSv1."), "{output}");
    // swaks verifying the same certificate.
    let output = swaks_ok(
        server.addr,
        &["--tls", "--tls-verify", "--tls-ca-path", path_str(&pki.ca)],
        CLIENT_TIMEOUT,
    );
    assert!(output.contains("TLS started"), "{output}");
    let counts = server.stop();
    assert_eq!(
        (counts.messages, counts.tls, counts.plaintext),
        (3, 2, 1),
        "{counts:?}"
    );
}

#[test]
fn test_pki_verifies_with_openssl() {
    let pki = Pki::new();
    let openssl = require_tool("openssl");
    let verify = |cert: &std::path::Path, extra: &[&str]| {
        run(
            Command::new(&openssl)
                .args(["verify", "-CAfile", path_str(&pki.ca)])
                .args(extra)
                .arg(cert),
            CLIENT_TIMEOUT,
        )
    };
    assert!(verify(&pki.cert, &["-verify_ip", "127.0.0.1"])
        .status
        .success());
    assert!(verify(&pki.cert, &["-verify_hostname", "localhost"])
        .status
        .success());
    assert!(verify(&pki.other_cert, &[]).status.success());
    assert!(!verify(&pki.other_cert, &["-verify_ip", "127.0.0.1"])
        .status
        .success());
}

#[test]
fn s_client_starttls_to_aiosmtpd() {
    let pki = Pki::new();
    let server = Aiosmtpd::start(Some((&pki.cert, &pki.key)));
    let mut client = SClient::connect(server.addr, "-tls1_2");
    client.type_expecting_250("EHLO x");
    client.type_expecting_250("NOOP");
    client.type_line("quit");
    client.wait_for_or_exit(CLIENT_TIMEOUT, |out| count_lines_starting(out, "221 ") > 0);
    let transcript = client.close();
    assert_eq!(count_lines_starting(&transcript, "221 "), 1, "{transcript}");
    server.stop();
}

#[test]
fn s_client_renegotiation_refused_by_python() {
    // Python's ssl (OpenSSL 3) refuses client-initiated renegotiation: the
    // same observable outcome the conformance suite expects from Petrel.
    let pki = Pki::new();
    let server = Aiosmtpd::start(Some((&pki.cert, &pki.key)));
    let mut client = SClient::connect(server.addr, "-tls1_2");
    client.type_expecting_250("EHLO x");
    client.type_line("R");
    let refused = client.wait_for_or_exit(CLIENT_TIMEOUT, |out| out.contains("no renegotiation"));
    let transcript = client.close();
    assert!(refused, "{transcript}");
    server.stop();
}
