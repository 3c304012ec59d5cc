use std::sync::Arc;
use std::time::{Duration, Instant};

use quickcheck::{quickcheck, TestResult};

use super::*;
use crate::tls::{ServerTls, ServerTlsConfig, TlsEngine};

/// Drives one session like a runtime would, answering decisions at once
/// (accepting, unless told otherwise) and recording everything.
struct Harness {
    session: ServerSession,
    now: Instant,
    out: Vec<u8>,
    events: Vec<Event>,
    /// Answer decisions automatically.
    auto: bool,
    /// Take events (releasing body backpressure) while driving.
    poll_events: bool,
}

impl Harness {
    fn new(config: ServerConfig) -> Self {
        let now = crate::pair::origin();
        let mut harness = Self {
            session: ServerSession::new(Arc::new(config), now),
            now,
            out: Vec::new(),
            events: Vec::new(),
            auto: true,
            poll_events: true,
        };
        harness.drive();
        harness
    }

    fn plain() -> Self {
        Self::new(ServerConfig::new("mx.test"))
    }

    fn drive(&mut self) {
        if !self.poll_events {
            // A driver that does not take events: only bytes move.
            while self.session.poll_transmit(&mut self.out) > 0 {}
            return;
        }
        let (auto, now, events) = (self.auto, self.now, &mut self.events);
        let on_event = |session: &mut ServerSession, _: &mut Vec<u8>, event: Event| {
            let decide = matches!(
                event,
                Event::Mail { .. } | Event::Rcpt { .. } | Event::MessageEnd { .. }
            );
            events.push(event);
            if decide && auto {
                session.accept(now).unwrap();
            }
        };
        let no_feed = |_: &mut ServerSession, _: &mut Vec<u8>| false;
        let _ = crate::drive::drain(
            &mut self.session,
            &mut self.out,
            usize::MAX,
            on_event,
            no_feed,
        );
    }

    /// Sends `input` and returns what the server wrote in response.
    fn send(&mut self, input: &[u8]) -> String {
        let start = self.out.len();
        self.session.handle_input(self.now, input);
        self.drive();
        String::from_utf8_lossy(&self.out[start..]).into_owned()
    }

    fn codes(&self) -> Vec<u16> {
        String::from_utf8_lossy(&self.out)
            .lines()
            .filter(|line| line.as_bytes().get(3) == Some(&b' '))
            .map(|line| line[..3].parse().unwrap())
            .collect()
    }

    fn body(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for event in &self.events {
            if let Event::Body(chunk) = event {
                body.extend_from_slice(chunk);
            }
        }
        body
    }

    fn closed(&self) -> Option<&CloseReason> {
        self.events.iter().find_map(|event| match event {
            Event::Closed(reason) => Some(reason),
            _ => None,
        })
    }
}

fn tls_config(engine: TlsEngine) -> ServerTls {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let config = ServerTlsConfig::new(
        engine,
        key.cert.pem().into_bytes(),
        key.signing_key.serialize_pem().into_bytes(),
    );
    ServerTls::new(&config).unwrap()
}

#[test]
fn greets_and_runs_a_transaction() {
    let mut h = Harness::plain();
    assert_eq!(h.codes(), [220]);
    let ehlo = h.send(b"EHLO client.test\r\n");
    assert!(ehlo.starts_with("250-mx.test\r\n"), "{ehlo}");
    for cap in [
        "PIPELINING",
        "SIZE 67108864",
        "8BITMIME",
        "SMTPUTF8",
        "CHUNKING",
        "DSN",
        "LIMITS RCPTMAX=1000",
    ] {
        assert!(ehlo.contains(cap), "{cap} missing from {ehlo}");
    }
    assert!(!ehlo.contains("STARTTLS"), "no TLS configured: {ehlo}");
    h.send(b"MAIL FROM:<a@example.org> SIZE=100\r\nRCPT TO:<b@example.com>\r\n");
    h.send(b"DATA\r\n");
    h.send(b"Subject: x\r\n\r\n..leading dot\r\nline\r\n.\r\n");
    h.send(b"QUIT\r\n");
    assert_eq!(h.codes(), [220, 250, 250, 250, 354, 250, 221]);
    assert_eq!(h.body(), b"Subject: x\r\n\r\n.leading dot\r\nline\r\n");
    assert!(h.events.contains(&Event::MessageEnd {
        size: 34,
        eight_bit: false
    }));
    assert_eq!(h.closed(), Some(&CloseReason::Quit));
    assert!(h.session.is_closed());
}

#[test]
fn pipelined_group_is_answered_in_order_in_one_write() {
    let mut h = Harness::plain();
    h.send(b"EHLO c\r\n");
    let replies = h.send(
        b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nRCPT TO:<c@y.org>\r\nDATA\r\nbody\r\n.\r\nQUIT\r\n",
    );
    let codes: Vec<&str> = replies.lines().map(|l| &l[..3]).collect();
    assert_eq!(codes, ["250", "250", "250", "354", "250", "221"]);
}

#[test]
fn decisions_may_come_later_and_hold_back_later_commands() {
    let mut h = Harness::plain();
    h.auto = false;
    h.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@y.org>\r\nNOOP\r\n");
    assert_eq!(h.session.pending_decision(), Some(DecisionKind::Mail));
    assert_eq!(h.codes(), [220, 250], "nothing after MAIL is answered yet");
    h.session.accept(h.now).unwrap();
    h.drive();
    assert_eq!(h.session.pending_decision(), Some(DecisionKind::Rcpt));
    let reject = Reply::new(550, "5.1.1".parse().ok(), "no such user");
    h.session.respond(h.now, reject).unwrap();
    h.drive();
    assert_eq!(h.codes(), [220, 250, 250, 550, 250]);
    assert_eq!(h.session.accept(h.now), Err(DecisionError::NotPending));
    // No valid recipient: DATA is refused.
    h.send(b"DATA\r\n");
    assert_eq!(h.codes().last(), Some(&554));
}

#[test]
fn end_of_data_waits_for_the_application_without_timing_out() {
    let mut h = Harness::plain();
    h.send(b"EHLO c\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n");
    h.auto = false;
    h.send(b"hi\r\n.\r\nQUIT\r\n");
    h.session.handle_eof(h.now);
    h.drive();
    assert_eq!(h.session.pending_decision(), Some(DecisionKind::MessageEnd));
    assert_eq!(
        h.session.poll_timeout(),
        None,
        "only the application is slow"
    );
    assert!(
        !h.session.is_closed(),
        "the half-closed client still awaits our reply"
    );
    let later = h.now + Duration::from_secs(3600);
    h.session
        .respond(later, Reply::new(250, None, "queued as X"))
        .unwrap();
    h.drive();
    assert_eq!(h.codes(), [220, 250, 250, 250, 354, 250, 221]);
    assert_eq!(h.closed(), Some(&CloseReason::Quit));
}

#[test]
fn a_bad_decision_code_is_refused() {
    let mut h = Harness::plain();
    h.auto = false;
    h.send(b"EHLO c\r\nMAIL FROM:<a@x.org>\r\n");
    let bad = Reply::new(354, None, "what");
    assert_eq!(
        h.session.respond(h.now, bad),
        Err(DecisionError::BadCode(354))
    );
    assert_eq!(h.session.pending_decision(), Some(DecisionKind::Mail));
}

#[test]
fn application_421_closes() {
    let mut h = Harness::plain();
    h.auto = false;
    h.send(b"EHLO c\r\nMAIL FROM:<a@x.org>\r\n");
    h.session
        .respond(h.now, Reply::new(421, None, "mx.test shutting down"))
        .unwrap();
    h.drive();
    assert_eq!(h.closed(), Some(&CloseReason::Application));
}

#[test]
fn sequence_errors() {
    let mut h = Harness::plain();
    h.send(b"MAIL FROM:<a@x.org>\r\n");
    h.send(b"EHLO c\r\nRCPT TO:<b@y.org>\r\nDATA\r\n");
    h.send(b"MAIL FROM:<a@x.org>\r\nMAIL FROM:<a@x.org>\r\nDATA\r\n");
    assert_eq!(h.codes(), [220, 503, 250, 503, 503, 250, 503, 554]);
}

#[test]
fn size_is_checked_when_declared_and_when_sent() {
    let mut config = ServerConfig::new("mx.test");
    config.limits.max_message_size = 100;
    let mut h = Harness::new(config);
    h.send(b"EHLO c\r\nMAIL FROM:<a@x.org> SIZE=101\r\n");
    assert_eq!(h.codes().last(), Some(&552));
    h.send(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n");
    let line = [b'x'; 60];
    h.send(&[&line[..], b"\r\n", &line[..], b"\r\n.\r\nNOOP\r\n"].concat());
    assert_eq!(h.codes(), [220, 250, 552, 250, 250, 354, 552, 250]);
    assert!(h
        .events
        .contains(&Event::TransactionAborted(AbortReason::TooLarge)));
    assert!(h.body().len() <= 100, "nothing past the limit is handed on");
    assert!(!h
        .events
        .iter()
        .any(|e| matches!(e, Event::MessageEnd { .. })));
}

#[test]
fn recipient_limit_gives_452() {
    let mut config = ServerConfig::new("mx.test");
    config.limits.max_recipients = 2;
    let mut h = Harness::new(config);
    h.send(b"EHLO c\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<1@y.org>\r\nRCPT TO:<2@y.org>\r\nRCPT TO:<3@y.org>\r\n");
    assert_eq!(h.codes(), [220, 250, 250, 250, 250, 452]);
}

#[test]
fn recipients_over_the_limit_are_not_errors() {
    // RFC 5321 §4.5.3.1.10: the client sends the rest later, so a 452 for
    // too many recipients must not use up the error allowance and lose the
    // recipients already accepted.
    let mut config = ServerConfig::new("mx.test");
    config.limits.max_recipients = 2;
    config.limits.max_errors = 3;
    let mut h = Harness::new(config);
    let mut input = b"EHLO c\r\nMAIL FROM:<a@x.org>\r\n".to_vec();
    for n in 0..10 {
        input.extend_from_slice(format!("RCPT TO:<{n}@y.org>\r\n").as_bytes());
    }
    input.extend_from_slice(b"DATA\r\nhi\r\n.\r\n");
    h.send(&input);
    let mut expected = vec![220, 250, 250, 250, 250];
    expected.extend([452; 8]);
    expected.extend([354, 250]);
    assert_eq!(h.codes(), expected);
    assert_eq!(h.closed(), None);
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, Event::MessageEnd { .. })));
}

#[test]
fn recipient_overshoot_past_its_allowance_counts_as_errors() {
    let mut config = ServerConfig::new("mx.test");
    config.limits.max_recipients = 1;
    config.limits.max_recipient_overshoot = 2;
    config.limits.max_errors = 2;
    let mut h = Harness::new(config);
    let mut input = b"EHLO c\r\nMAIL FROM:<a@x.org>\r\n".to_vec();
    for n in 0..6 {
        input.extend_from_slice(format!("RCPT TO:<{n}@y.org>\r\n").as_bytes());
    }
    h.send(&input);
    // One accepted, two free refusals, then two counted ones end it.
    assert_eq!(h.codes(), [220, 250, 250, 250, 452, 452, 452, 452, 421]);
    assert_eq!(h.closed(), Some(&CloseReason::TooManyErrors));
}

#[test]
fn bdat_chunks_make_one_binary_body() {
    let mut h = Harness::plain();
    h.send(b"EHLO c\r\nMAIL FROM:<a@x.org> BODY=BINARYMIME\r\nRCPT TO:<b@y.org>\r\n");
    let part1 = b"\x00\r\n.\r\nbinary\n";
    let part2 = b"\r.\r\n";
    let mut input = format!("BDAT {}\r\n", part1.len()).into_bytes();
    input.extend_from_slice(part1);
    input.extend_from_slice(format!("BDAT {} LAST\r\n", part2.len()).as_bytes());
    input.extend_from_slice(part2);
    // Split inside the chunk to check the length is honoured across reads.
    let (a, b) = input.split_at(9);
    h.send(a);
    h.send(b);
    h.send(b"DATA\r\n");
    assert_eq!(h.codes(), [220, 250, 250, 250, 250, 250, 503]);
    assert_eq!(h.body(), [&part1[..], &part2[..]].concat());
    assert!(h.events.contains(&Event::BodyStart { chunking: true }));
}

#[test]
fn refused_bdat_data_is_read_not_executed() {
    let mut h = Harness::plain();
    h.send(b"EHLO c\r\nBDAT 10\r\nQUIT\r\nQUITNOOP\r\n");
    assert_eq!(h.codes(), [220, 250, 503, 250]);
    assert!(!h.session.is_closed());
}

#[test]
fn binarymime_needs_bdat() {
    let mut h = Harness::plain();
    h.send(b"EHLO c\r\nMAIL FROM:<a@x.org> BODY=BINARYMIME\r\nRCPT TO:<b@y.org>\r\nDATA\r\n");
    assert_eq!(h.codes().last(), Some(&503));
}

#[test]
fn parameters_after_helo_and_unknown_parameters() {
    let mut h = Harness::plain();
    h.send(b"HELO c\r\nMAIL FROM:<a@x.org> SIZE=10\r\n");
    h.send(b"EHLO c\r\nMAIL FROM:<a@x.org> FOO=1\r\n");
    assert_eq!(h.codes(), [220, 250, 555, 250, 555]);
}

#[test]
fn disabled_extensions_are_unsupported_parameters() {
    let mut config = ServerConfig::new("mx.test");
    config.extensions.dsn = false;
    config.extensions.smtputf8 = false;
    let mut h = Harness::new(config);
    let ehlo = h.send(b"EHLO c\r\n");
    assert!(
        !ehlo.contains("DSN") && !ehlo.contains("SMTPUTF8"),
        "{ehlo}"
    );
    h.send(b"MAIL FROM:<a@x.org> RET=HDRS\r\nMAIL FROM:<a@x.org> SMTPUTF8\r\n");
    h.send(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org> NOTIFY=NEVER\r\n");
    assert_eq!(h.codes(), [220, 250, 555, 555, 250, 555]);
}

#[test]
fn overlong_and_bare_lf_command_lines_are_refused() {
    let mut h = Harness::plain();
    let mut long = vec![b'N'; 600];
    long.extend_from_slice(b"\r\n");
    h.send(&long);
    h.send(b"NOOP\nNOOP\r\n");
    assert_eq!(h.codes(), [220, 500, 500, 250]);
    assert!(String::from_utf8_lossy(&h.out).contains("500 5.5.2"));
}

#[test]
fn garbage_ends_in_421_after_too_many_errors() {
    let mut h = Harness::plain();
    let garbage: Vec<u8> = (0..4000u32).map(|i| (i * 7 % 251) as u8).collect();
    for _ in 0..20 {
        h.send(&garbage);
        h.send(b"\x01\xff bogus\r\n");
    }
    assert_eq!(h.codes().last(), Some(&421));
    assert_eq!(h.closed(), Some(&CloseReason::TooManyErrors));
}

#[test]
fn bodies_with_bare_line_endings_or_long_lines_are_refused() {
    for body in [
        &b"a\nb\r\n.\r\n"[..],
        b"a\rb\r\n.\r\n",
        b"a\x00b\r\n.\r\n",
        &[&[b'x'; 1200][..], b"\r\n.\r\n"].concat(),
    ] {
        let mut h = Harness::plain();
        h.send(b"EHLO c\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n");
        h.send(body);
        assert_eq!(h.codes().last(), Some(&554), "{body:?}");
        assert!(h
            .events
            .iter()
            .any(|e| matches!(e, Event::TransactionAborted(AbortReason::BadBody(_)))));
    }
}

#[test]
fn bare_lf_dot_does_not_end_data() {
    // SMTP smuggling: only CRLF "." CRLF ends the body.
    let mut h = Harness::plain();
    h.send(b"EHLO c\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n");
    h.send(b"a\r\n\n.\nMAIL FROM:<evil@x.org>\r\n");
    assert_eq!(h.codes(), [220, 250, 250, 250, 354]);
    h.send(b".\r\n");
    assert_eq!(h.codes().last(), Some(&554));
}

#[test]
fn idle_timeout_says_421() {
    let mut h = Harness::plain();
    let deadline = h.session.poll_timeout().unwrap();
    assert_eq!(deadline, h.now + Duration::from_secs(300));
    h.session.handle_timeout(deadline - Duration::from_secs(1));
    assert!(!h.session.is_closed());
    h.session.handle_timeout(deadline);
    h.drive();
    assert_eq!(h.codes(), [220, 421]);
    assert_eq!(h.closed(), Some(&CloseReason::Timeout));
    assert_eq!(h.session.poll_timeout(), None);
}

#[test]
fn require_tls_refuses_mail_but_not_ehlo_noop_quit() {
    let mut config = ServerConfig::new("mx.test");
    config.require_tls = true;
    config.tls = Some(tls_config(TlsEngine::Rustls));
    let mut h = Harness::new(config);
    h.send(
        b"EHLO c\r\nNOOP\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\nVRFY x\r\nQUIT\r\n",
    );
    assert_eq!(h.codes(), [220, 250, 250, 530, 530, 530, 530, 221]);
    assert!(
        String::from_utf8_lossy(&h.out).contains("530 5.7.0 Must issue a STARTTLS command first")
    );
}

#[test]
fn require_tls_refuses_rset_and_help_too() {
    let mut config = ServerConfig::new("mx.test");
    config.require_tls = true;
    config.tls = Some(tls_config(TlsEngine::Rustls));
    let mut h = Harness::new(config);
    h.send(b"EHLO c\r\nRSET\r\nHELP\r\nBDAT 3\r\nabcNOOP\r\n");
    assert_eq!(h.codes(), [220, 250, 530, 530, 530, 250]);
}

#[test]
fn a_trickled_line_does_not_hold_off_the_command_timeout() {
    let mut h = Harness::plain();
    let first = h.session.poll_timeout().unwrap();
    for second in 1..10 {
        h.now += Duration::from_secs(60);
        h.send(b"N");
        assert_eq!(h.session.poll_timeout(), Some(first), "byte {second}");
    }
    h.send(b"OOP\r\n");
    assert_eq!(
        h.session.poll_timeout(),
        Some(h.now + Duration::from_secs(300))
    );
}

#[test]
fn the_data_timeout_restarts_after_the_application_catches_up() {
    let mut config = ServerConfig::new("mx.test");
    config.limits.max_queued_body = 1024;
    config.limits.body_chunk = 512;
    let mut h = Harness::new(config);
    h.send(b"EHLO c\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n");
    h.poll_events = false;
    h.send(&[&[b'z'; 998][..], b"\r\n", &[b'z'; 998][..], b"\r\n"].concat());
    assert_eq!(h.session.poll_timeout(), None, "paused on the application");
    // The application is slow: much longer than the data timeout.
    h.now += Duration::from_secs(3600);
    h.poll_events = true;
    h.drive();
    // Due at once, to restart the clock; not a timeout.
    assert!(h.session.poll_timeout().unwrap() <= h.now);
    h.session.handle_timeout(h.now);
    h.drive();
    assert!(!h.session.is_closed());
    assert_eq!(
        h.session.poll_timeout(),
        Some(h.now + Duration::from_secs(300))
    );
}

#[test]
fn a_malformed_bdat_closes_the_connection() {
    let mut h = Harness::plain();
    h.send(b"EHLO c\r\nBDAT 99999999999999999999999\r\nQUIT\r\n");
    assert_eq!(h.codes(), [220, 250, 501]);
    assert_eq!(h.closed(), Some(&CloseReason::LostFraming));
}

#[test]
fn long_dsn_parameters_fit_the_raised_line_limit() {
    let mut h = Harness::plain();
    let local = "l".repeat(64);
    let domain = format!("{}.example", vec!["d".repeat(60); 2].join("."));
    let orcpt = format!("rfc822;{}", "o".repeat(300));
    let line = format!("RCPT TO:<{local}@{domain}> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT={orcpt}\r\n");
    assert!(line.len() > 512);
    h.send(b"EHLO c\r\nMAIL FROM:<a@x.org>\r\n");
    h.send(line.as_bytes());
    assert_eq!(h.codes(), [220, 250, 250, 250]);
}

#[test]
fn parameters_need_ehlo_for_rcpt_and_bdat_too() {
    let mut h = Harness::plain();
    h.send(
        b"HELO c\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org> NOTIFY=NEVER\r\nBDAT 1\r\nxNOOP\r\n",
    );
    assert_eq!(h.codes(), [220, 250, 250, 555, 502, 250]);
}

#[test]
fn decisions_with_mismatched_codes_are_refused() {
    let mut h = Harness::plain();
    h.auto = false;
    h.send(b"EHLO c\r\nMAIL FROM:<a@x.org>\r\n");
    let mixed = Reply::new(250, "5.1.1".parse().ok(), "what");
    assert_eq!(
        h.session.respond(h.now, mixed),
        Err(DecisionError::BadCode(250))
    );
}

#[test]
fn configurations_that_cannot_work_are_refused() {
    assert_eq!(ServerConfig::new("mx").validate(), Ok(()));
    let mut config = ServerConfig::new("mx");
    config.require_tls = true;
    assert!(config.validate().is_err());
    let mut config = ServerConfig::new("mx");
    config.limits.body_chunk = 0;
    assert!(config.validate().is_err());
    let mut config = ServerConfig::new("mx");
    config.limits.max_message_size = 0;
    assert!(config.validate().is_err());
}

#[test]
fn starttls_without_tls_or_with_arguments() {
    let mut h = Harness::plain();
    h.send(b"EHLO c\r\nSTARTTLS\r\n");
    let mut config = ServerConfig::new("mx.test");
    config.tls = Some(tls_config(TlsEngine::Rustls));
    let mut t = Harness::new(config);
    let ehlo = t.send(b"EHLO c\r\n");
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    t.send(b"STARTTLS now\r\nMAIL FROM:<a@x.org>\r\nSTARTTLS\r\n");
    assert_eq!(h.codes(), [220, 250, 502]);
    assert_eq!(t.codes(), [220, 250, 501, 250, 503]);
}

#[test]
fn starttls_injection_reject_closes() {
    let mut config = ServerConfig::new("mx.test");
    config.tls = Some(tls_config(TlsEngine::Rustls));
    let mut h = Harness::new(config);
    h.send(b"EHLO c\r\nSTARTTLS\r\nEHLO x\r\n");
    assert_eq!(h.codes(), [220, 250, 554]);
    assert_eq!(h.closed(), Some(&CloseReason::StartTlsInjection));
}

#[test]
fn starttls_injection_ignore_discards_and_starts_tls() {
    let mut config = ServerConfig::new("mx.test");
    config.tls = Some(tls_config(TlsEngine::Rustls));
    config.injection_policy = InjectionPolicy::Ignore;
    let mut h = Harness::new(config);
    h.send(b"EHLO c\r\nSTARTTLS\r\nEHLO x\r\nMAIL FROM:<evil@x.org>\r\n");
    assert_eq!(h.codes(), [220, 250, 220]);
    assert!(!h.events.iter().any(|e| matches!(e, Event::Mail { .. })));
    assert!(matches!(h.session.phase, Phase::TlsHandshake { .. }));
    // Not a TLS ClientHello: the handshake fails and the connection closes,
    // never falling back to plaintext.
    let reply = h.send(b"EHLO plain\r\n");
    assert!(!reply.contains("250"), "{reply}");
    assert!(matches!(h.closed(), Some(CloseReason::Tls(_))));
}

#[test]
fn tls_handshake_timeout_closes_silently() {
    let mut config = ServerConfig::new("mx.test");
    config.tls = Some(tls_config(TlsEngine::Rustls));
    let mut h = Harness::new(config);
    h.send(b"STARTTLS\r\n");
    let deadline = h.session.poll_timeout().unwrap();
    assert_eq!(deadline, h.now + Duration::from_secs(60));
    h.session.handle_timeout(deadline);
    h.drive();
    assert_eq!(h.codes(), [220, 220]);
    assert_eq!(h.closed(), Some(&CloseReason::TlsHandshakeTimeout));
}

#[test]
fn unread_replies_stop_command_processing() {
    let mut config = ServerConfig::new("mx.test");
    config.limits.max_pipelined_replies = 10;
    let now = crate::pair::origin();
    let session = &mut ServerSession::new(Arc::new(config), now);
    session.handle_input(now, &b"NOOP\r\n".repeat(25));
    let mut out = Vec::new();
    // The greeting and nine NOOPs, then the session waits for the driver.
    session.poll_transmit(&mut out);
    assert_eq!(out.windows(3).filter(|w| w == b"250").count(), 9);
    let mut total = 9;
    while session.poll_transmit(&mut out) > 0 {
        total = out.windows(3).filter(|w| w == b"250").count();
    }
    assert_eq!(total, 25);
}

#[test]
fn unpolled_body_applies_backpressure() {
    let mut config = ServerConfig::new("mx.test");
    config.limits.max_queued_body = 8 * 1024;
    config.limits.body_chunk = 1024;
    config.limits.max_buffered_input = 16 * 1024;
    let mut h = Harness::new(config);
    h.send(b"EHLO c\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n");
    h.poll_events = false;
    let line = [&[b'y'; 98][..], b"\r\n"].concat();
    let mut fed = 0;
    while h.session.wants_input() && fed < 1_000_000 {
        h.send(&line);
        fed += line.len();
    }
    assert!(
        fed < 64 * 1024,
        "input stopped being wanted after {fed} octets"
    );
    assert_eq!(h.session.poll_timeout(), None);
    h.poll_events = true;
    h.drive();
    assert!(h.session.wants_input());
    h.send(b".\r\n");
    assert_eq!(h.body().len(), fed);
    assert_eq!(h.codes().last(), Some(&250));
}

#[test]
fn eof_mid_transaction_aborts_it() {
    let mut h = Harness::plain();
    h.send(b"EHLO c\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\npartial");
    h.session.handle_eof(h.now);
    h.drive();
    assert!(h
        .events
        .contains(&Event::TransactionAborted(AbortReason::ConnectionClosed)));
    assert_eq!(h.closed(), Some(&CloseReason::PeerClosed));
    assert_eq!(
        h.events.last(),
        Some(&Event::Closed(CloseReason::PeerClosed))
    );
}

/// A session script: plausible commands, bodies and junk.
fn script(pieces: &[u8]) -> Vec<u8> {
    const PARTS: &[&[u8]] = &[
        b"EHLO c\r\n",
        b"HELO c\r\n",
        b"MAIL FROM:<a@x.org>\r\n",
        b"MAIL FROM:<> BODY=BINARYMIME SIZE=20\r\n",
        b"RCPT TO:<b@y.org> NOTIFY=SUCCESS,FAILURE\r\n",
        b"DATA\r\n",
        b"line\r\n..dot\r\n",
        b"\r\n.\r\n",
        b"BDAT 5\r\n12345",
        b"BDAT 3 LAST\r\nabc",
        b"RSET\r\n",
        b"NOOP\r\n",
        b"\n.\n",
        b"\xff\x00junk\r\n",
        b"VRFY x\r\n",
        b"QUIT\r\n",
    ];
    pieces
        .iter()
        .flat_map(|&i| PARTS[usize::from(i) % PARTS.len()].iter().copied())
        .collect()
}

fn run(input: &[u8], splits: &[usize]) -> (Vec<u8>, Vec<Event>) {
    // A small size limit, so that oversize bodies are common.
    let mut config = ServerConfig::new("mx.test");
    config.limits.max_message_size = 40;
    let mut h = Harness::new(config);
    let mut rest = input;
    for &split in splits {
        let (now, later) = rest.split_at(split % (rest.len() + 1));
        h.send(now);
        rest = later;
    }
    h.send(rest);
    h.session.handle_eof(h.now);
    h.drive();
    // Body chunk boundaries follow the reads; compare the body as a whole.
    let body = h.body();
    let mut events: Vec<Event> = h
        .events
        .into_iter()
        .filter(|e| !matches!(e, Event::Body(_)))
        .collect();
    events.push(Event::Body(body.into()));
    (h.out, events)
}

quickcheck! {
    fn chunking_invariance(pieces: Vec<u8>, splits: Vec<usize>) -> bool {
        let input = script(&pieces);
        run(&input, &[]) == run(&input, &splits)
    }

    fn arbitrary_bytes_never_panic_and_stay_bounded(input: Vec<u8>, splits: Vec<usize>) -> TestResult {
        let (out, events) = run(&input, &splits);
        let closed = events.iter().filter(|e| matches!(e, Event::Closed(_))).count();
        TestResult::from_bool(out.starts_with(b"220 ") && closed == 1)
    }
}

#[test]
fn shutdown_says_421_and_aborts_the_transaction() {
    let mut h = Harness::plain();
    h.auto = false;
    h.send(b"EHLO c\r\nMAIL FROM:<a@x.org>\r\n");
    h.session.accept(h.now).unwrap();
    h.drive();
    h.session.shutdown(h.now);
    h.drive();
    assert_eq!(h.codes(), [220, 250, 250, 421]);
    assert!(String::from_utf8_lossy(&h.out).contains("421 4.3.2 mx.test Service shutting down"));
    assert!(h
        .events
        .contains(&Event::TransactionAborted(AbortReason::ConnectionClosed)));
    assert_eq!(h.closed(), Some(&CloseReason::Shutdown));
}

/// One fake TLS record carrying `data`.
fn fake_record(data: &[u8]) -> Vec<u8> {
    let mut record = vec![b'D'];
    record.extend_from_slice(&(data.len() as u16).to_be_bytes());
    record.extend_from_slice(data);
    record
}

fn fake_tls_server(handshake: crate::tls::fake::FakeHandshake) -> Harness {
    let mut config = ServerConfig::new("mx.test");
    config.tls = Some(ServerTls::fake(handshake));
    let mut h = Harness::new(config);
    h.send(b"EHLO c\r\nSTARTTLS\r\n");
    assert_eq!(h.codes(), [220, 250, 220]);
    h
}

#[test]
fn starttls_through_the_fake_engine_resets_the_session() {
    let mut h = fake_tls_server(crate::tls::fake::FakeHandshake::Completes);
    assert_eq!(h.send(b"FAKE-HELLO\n"), "FAKE-READY\n");
    assert!(h
        .events
        .iter()
        .any(|e| matches!(e, Event::TlsEstablished(_))));
    // The session starts afresh over TLS: MAIL before EHLO is out of
    // sequence, and EHLO no longer offers STARTTLS.
    let reply = h.send(&fake_record(b"MAIL FROM:<a@x.org>\r\nEHLO c\r\n"));
    assert!(reply.starts_with('D'), "{reply}");
    assert!(reply.contains("503 5.5.1"), "{reply}");
    assert!(reply.contains("250-mx.test"), "{reply}");
    assert!(!reply.contains("STARTTLS"), "{reply}");
}

#[test]
fn a_stalled_handshake_times_out_in_virtual_time() {
    let mut h = fake_tls_server(crate::tls::fake::FakeHandshake::Stalls);
    h.send(b"FAKE-HELLO\n");
    let deadline = h.session.poll_timeout().unwrap();
    assert_eq!(deadline, h.now + Duration::from_secs(60));
    h.now = deadline;
    h.session.handle_timeout(h.now);
    h.drive();
    assert_eq!(h.closed(), Some(&CloseReason::TlsHandshakeTimeout));
}
