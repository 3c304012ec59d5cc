//! Reports are read back with Python's `email` package, a MIME parser
//! nobody here wrote.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use quickcheck::{quickcheck, TestResult};
use serde_json::Value;

use super::*;
use crate::queue::Response;

const ORIGINAL: &[u8] = b"Received: from client.example ([192.0.2.7])\r\n\
\tby mx.petrel.test (Petrel) with ESMTP id 0000000100000001;\r\n\
\tTue, 01 Dec 2026 17:21:14 +0000\r\n\
From: Alice <alice@example.org>\r\n\
To: bad@example.com\r\n\
Subject: hello\r\n\
Message-ID: <m1@example.org>\r\n\
\r\n\
The body of the message.\r\n\
Second line.\r\n";

/// Parses messages as Python's `email` package does and prints what it
/// found, one JSON line each. Header values are unfolded. Input: each
/// message as its length in decimal, a newline, and its octets.
const READER: &str = r#"
import sys, json, email, email.utils

def fields(m):
    return {k: ' '.join(str(v).split()) for k, v in m.items()}

def read(data):
  m = email.message_from_bytes(data)
  out = {
      'defects': [type(d).__name__ for d in m.defects],
      'content_type': m.get_content_type(),
      'report_type': m.get_param('report-type'),
      'headers': fields(m),
      'date': email.utils.parsedate_to_datetime(m['Date']).timestamp(),
  }
  parts = m.get_payload()
  out['parts'] = [p.get_content_type() for p in parts]
  out['part_defects'] = [[type(d).__name__ for d in p.defects] for p in parts]
  out['text'] = parts[0].get_payload(decode=True).decode(parts[0].get_content_charset())
  blocks = parts[1].get_payload()
  out['per_message'] = fields(blocks[0])
  out['per_recipient'] = [fields(b) for b in blocks[1:]]
  third = parts[2]
  if third.get_content_type() == 'message/rfc822':
      inner = third.get_payload()[0]
      out['returned_headers'] = fields(inner)
      out['returned_body'] = inner.get_payload()
  else:
      out['returned_text'] = third.get_payload()
  return out

stdin = sys.stdin.buffer
while True:
    size = stdin.readline()
    if not size:
        break
    print(json.dumps(read(stdin.read(int(size)))))
"#;

fn parse(message: &[u8]) -> Value {
    parse_all(&[message]).remove(0)
}

/// [`parse`] for many messages, in one Python process: each takes a good
/// part of a second to start on a loaded machine.
fn parse_all(messages: &[&[u8]]) -> Vec<Value> {
    let mut child = match Command::new("python3")
        .args(["-c", READER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            panic!("python3 is needed to read bounces back ({e}): apt-get install -y python3")
        }
    };
    let mut input = Vec::new();
    for message in messages {
        input.extend_from_slice(format!("{}\n", message.len()).as_bytes());
        input.extend_from_slice(message);
    }
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "python3 could not read the bounce: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&input)
    );
    let values: Vec<Value> = output
        .stdout
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect();
    assert_eq!(values.len(), messages.len());
    values
}

fn envelope(recipients: &[&str]) -> Envelope {
    Envelope {
        sender: "alice@example.org".into(),
        recipients: recipients
            .iter()
            .map(|a| Recipient {
                address: (*a).into(),
                notify: None,
                orcpt: None,
            })
            .collect(),
        ret: None,
        envid: None,
        received_at: UNIX_EPOCH + Duration::from_secs(1_796_145_674),
        client: "192.0.2.7:40000".parse().unwrap(),
        binding: "outbound".into(),
    }
}

fn refused(recipient: usize) -> ReportedRecipient {
    ReportedRecipient {
        recipient,
        kind: ReportKind::Permanent,
        response: Response::from_remote(
            "550 5.1.1 <bad@example.com>: no such user",
            "mx.example.com",
            Some("192.0.2.25".parse().unwrap()),
        ),
        attempts: 1,
        last_attempt: Some(UNIX_EPOCH + Duration::from_secs(1_796_145_700)),
        retry_until: None,
    }
}

fn expired(recipient: usize) -> ReportedRecipient {
    ReportedRecipient {
        recipient,
        kind: ReportKind::Expired,
        response: Response::new("451 4.7.5 [internal] TLS negotiation failed"),
        attempts: 7,
        last_attempt: Some(UNIX_EPOCH + Duration::from_secs(1_796_221_274)),
        retry_until: None,
    }
}

fn delayed(recipient: usize) -> ReportedRecipient {
    ReportedRecipient {
        recipient,
        kind: ReportKind::Delayed,
        response: Response::from_remote(
            "451 4.2.1 mailbox busy",
            "mx.example.net",
            Some("192.0.2.26".parse().unwrap()),
        ),
        attempts: 1,
        last_attempt: Some(UNIX_EPOCH + Duration::from_secs(1_796_145_700)),
        retry_until: Some(UNIX_EPOCH + Duration::from_secs(1_796_577_674)),
    }
}

fn relayed(recipient: usize) -> ReportedRecipient {
    ReportedRecipient {
        recipient,
        kind: ReportKind::Relayed,
        response: Response::from_remote(
            "250 ok: queued",
            "mx.example.com",
            Some("192.0.2.25".parse().unwrap()),
        ),
        attempts: 1,
        last_attempt: Some(UNIX_EPOCH + Duration::from_secs(1_796_145_700)),
        retry_until: None,
    }
}

fn request(envelope: Envelope, recipients: Vec<ReportedRecipient>) -> BounceRequest {
    BounceRequest {
        original: QueueId(0x1_0000_0001),
        envelope: Arc::new(envelope),
        recipients,
    }
}

fn reporting() -> Reporting<'static> {
    Reporting {
        hostname: "mx.petrel.test",
        now: UNIX_EPOCH + Duration::from_secs(1_796_222_000),
        id: QueueId(0x2_0000_0005),
        max_returned: 1 << 20,
        whole: true,
    }
}

/// CRLF everywhere, no line over 998 octets.
fn check_lines(message: &[u8]) {
    for (i, &b) in message.iter().enumerate() {
        if b == b'\n' {
            assert_eq!(
                message.get(i.wrapping_sub(1)),
                Some(&b'\r'),
                "bare LF at {i}"
            );
        }
        if b == b'\r' {
            assert_eq!(message.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
    assert!(message.ends_with(b"\r\n"));
    for line in message.split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "a line of {} octets", line.len());
    }
}

fn text(v: &Value, path: &[&str]) -> String {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_str()
        .unwrap_or_else(|| panic!("{path:?} in {v}"))
        .to_owned()
}

#[test]
fn a_permanent_failure_reads_back_as_rfc_3464() {
    let req = request(
        envelope(&["bad@example.com", "ok@example.com"]),
        vec![refused(0)],
    );
    let bounce = build(&req, ORIGINAL, &reporting()).unwrap();
    check_lines(&bounce.message);
    assert_eq!(bounce.envelope.sender, "");
    assert_eq!(bounce.envelope.recipients.len(), 1);
    assert_eq!(bounce.envelope.recipients[0].address, "alice@example.org");
    assert_eq!(bounce.envelope.binding, "outbound");
    assert_eq!(bounce.envelope.received_at, reporting().now);

    let v = parse(&bounce.message);
    assert_eq!(v["defects"], serde_json::json!([]));
    assert_eq!(v["part_defects"], serde_json::json!([[], [], []]));
    assert_eq!(text(&v, &["content_type"]), "multipart/report");
    assert_eq!(text(&v, &["report_type"]), "delivery-status");
    assert_eq!(
        v["parts"],
        serde_json::json!([
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ])
    );
    let h = &v["headers"];
    assert_eq!(
        text(h, &["From"]),
        "Mail Delivery System <MAILER-DAEMON@mx.petrel.test>"
    );
    assert_eq!(text(h, &["To"]), "<alice@example.org>");
    assert_eq!(text(h, &["Subject"]), "Undelivered Mail Returned to Sender");
    assert_eq!(text(h, &["Auto-Submitted"]), "auto-replied");
    assert_eq!(text(h, &["MIME-Version"]), "1.0");
    assert_eq!(
        text(h, &["Message-ID"]),
        "<0000000200000005.0000000100000001@mx.petrel.test>"
    );
    assert_eq!(v["date"].as_f64(), Some(1_796_222_000.0));

    let m = &v["per_message"];
    assert_eq!(text(m, &["Reporting-MTA"]), "dns; mx.petrel.test");
    assert_eq!(
        text(m, &["Arrival-Date"]),
        "Tue, 01 Dec 2026 17:21:14 +0000"
    );
    assert_eq!(text(m, &["X-Petrel-Queue-ID"]), "0000000100000001");
    assert!(m.get("Original-Envelope-Id").is_none());

    let r = v["per_recipient"].as_array().unwrap();
    assert_eq!(r.len(), 1, "only the failed recipient");
    let r = &r[0];
    assert_eq!(text(r, &["Final-Recipient"]), "rfc822; bad@example.com");
    assert!(r.get("Original-Recipient").is_none());
    assert_eq!(text(r, &["Action"]), "failed");
    assert_eq!(text(r, &["Status"]), "5.1.1");
    assert_eq!(text(r, &["Remote-MTA"]), "dns; mx.example.com");
    assert_eq!(
        text(r, &["Diagnostic-Code"]),
        "smtp; 550 5.1.1 <bad@example.com>: no such user"
    );
    assert_eq!(
        text(r, &["Last-Attempt-Date"]),
        "Tue, 01 Dec 2026 17:21:40 +0000"
    );

    let notice = text(&v, &["text"]);
    assert!(notice.contains("<bad@example.com>: refused for good by mx.example.com [192.0.2.25]"));
    assert!(notice.contains("550 5.1.1 <bad@example.com>: no such user"));
    assert!(!notice.contains("ok@example.com"));

    let returned = text(&v, &["returned_text"]);
    assert!(returned.contains("Subject: hello"));
    assert!(returned.contains("Message-ID: <m1@example.org>"));
    assert!(!returned.contains("The body"), "headers only by default");
}

#[test]
fn delay_and_relay_notices_read_back_as_rfc_3464() {
    let mut env = envelope(&["slow@example.net", "ok@example.com", "quiet@example.com"]);
    env.ret = Some("FULL".into());
    env.recipients[0].notify = Some("DELAY,FAILURE".into());
    env.recipients[1].notify = Some("success".into());
    env.recipients[2].notify = Some("FAILURE".into());
    let delay = build(
        &request(env.clone(), vec![delayed(0)]),
        ORIGINAL,
        &reporting(),
    )
    .unwrap();
    let relay = build(
        &request(env.clone(), vec![relayed(1), relayed(2)]),
        ORIGINAL,
        &reporting(),
    )
    .unwrap();
    check_lines(&delay.message);
    check_lines(&relay.message);
    let v = parse_all(&[&delay.message, &relay.message]);

    let d = &v[0];
    assert_eq!(d["defects"], serde_json::json!([]));
    assert_eq!(
        text(&d["headers"], &["Subject"]),
        "Delayed Mail (still being retried)"
    );
    // RET=FULL returns the message with failures only (RFC 3461 §4.3).
    assert_eq!(
        d["parts"],
        serde_json::json!([
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ])
    );
    let r = d["per_recipient"].as_array().unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(text(&r[0], &["Action"]), "delayed");
    assert_eq!(text(&r[0], &["Status"]), "4.2.1");
    assert_eq!(
        text(&r[0], &["Will-Retry-Until"]),
        "Sun, 06 Dec 2026 17:21:14 +0000"
    );
    // Wrapped for people; compared with its words joined by single spaces.
    let notice = text(d, &["text"])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(notice.contains("still being tried"), "{notice}");
    assert!(
        notice.contains("to be tried until Sun, 06 Dec 2026"),
        "{notice}"
    );

    let r = &v[1];
    assert_eq!(
        text(&r["headers"], &["Subject"]),
        "Relayed Mail: no further delivery reports"
    );
    let groups = r["per_recipient"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "only the recipient that asked: {groups:?}");
    assert_eq!(
        text(&groups[0], &["Final-Recipient"]),
        "rfc822; ok@example.com"
    );
    assert_eq!(text(&groups[0], &["Action"]), "relayed");
    assert_eq!(text(&groups[0], &["Status"]), "2.0.0");
    assert_eq!(text(&groups[0], &["Remote-MTA"]), "dns; mx.example.com");
    let notice = text(r, &["text"])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        notice.contains("<ok@example.com>: accepted by mx.example.com"),
        "{notice}"
    );

    // Nobody asked: no report.
    assert!(build(&request(env, vec![relayed(2)]), ORIGINAL, &reporting()).is_none());
}

#[test]
fn notices_go_only_where_notify_asked() {
    let recipient = |notify: Option<&str>| Recipient {
        address: "a@example.com".into(),
        notify: notify.map(str::to_owned),
        orcpt: None,
    };
    let kinds = [
        ReportKind::Permanent,
        ReportKind::Expired,
        ReportKind::Delayed,
        ReportKind::Relayed,
    ];
    let wants = |notify| kinds.map(|k| wants_notice(&recipient(notify), k));
    assert_eq!(wants(None), [true, true, false, false]);
    assert_eq!(wants(Some("NEVER")), [false; 4]);
    assert_eq!(wants(Some("failure")), [true, true, false, false]);
    assert_eq!(wants(Some("DELAY")), [false, false, true, false]);
    assert_eq!(wants(Some("SUCCESS,DELAY")), [false, false, true, true]);
    assert_eq!(wants(Some("SUCCESS, FAILURE")), [true, true, false, true]);
}

#[test]
fn an_expiry_says_how_many_attempts() {
    let req = request(
        envelope(&["slow@example.net", "bad@example.com"]),
        vec![expired(0), refused(1)],
    );
    let bounce = build(&req, ORIGINAL, &reporting()).unwrap();
    check_lines(&bounce.message);
    let v = parse(&bounce.message);
    let r = v["per_recipient"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(
        text(&r[0], &["Final-Recipient"]),
        "rfc822; slow@example.net"
    );
    assert_eq!(text(&r[0], &["Status"]), "4.4.7");
    assert_eq!(text(&r[0], &["Action"]), "failed");
    assert!(r[0].get("Remote-MTA").is_none());
    assert_eq!(
        text(&r[0], &["Diagnostic-Code"]),
        "smtp; 451 4.7.5 [internal] TLS negotiation failed"
    );
    assert_eq!(text(&r[1], &["Status"]), "5.1.1");
    let notice = text(&v, &["text"])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        notice.contains("<slow@example.net>: still could not be delivered when the message expired, after 7 attempts"),
        "{notice}"
    );
}

#[test]
fn status_codes() {
    let mut f = refused(0);
    f.response.reply = "554 no enhanced code here".into();
    assert_eq!(status_code(&f), "5.0.0");
    f.response.reply = "550 4.2.2 inconsistent".into();
    assert_eq!(status_code(&f), "5.0.0");
    f.response.reply = "552-5.2.2 mailbox full".into();
    assert_eq!(status_code(&f), "5.2.2");
    assert_eq!(enhanced_code("250 2.0.0 ok"), Some("2.0.0".into()));
    assert_eq!(
        enhanced_code("  451 4.7.5 [internal] x"),
        Some("4.7.5".into())
    );
    for bad in [
        "",
        "55",
        "550",
        "550 ",
        "550 5.1",
        "550 6.1.1 x",
        "550 5.1.1.1",
        "abc 5.1.1",
        "550 5.1234.1",
        "5é0 5.1.1",
    ] {
        assert_eq!(enhanced_code(bad), None, "{bad}");
    }
}

#[test]
fn ret_full_returns_the_whole_message() {
    let mut env = envelope(&["bad@example.com"]);
    env.ret = Some("FULL".into());
    let req = request(env, vec![refused(0)]);
    let bounce = build(&req, ORIGINAL, &reporting()).unwrap();
    check_lines(&bounce.message);
    let v = parse(&bounce.message);
    assert_eq!(v["parts"][2], "message/rfc822");
    assert_eq!(text(&v, &["returned_headers", "Subject"]), "hello");
    assert_eq!(
        text(&v, &["returned_headers", "From"]),
        "Alice <alice@example.org>"
    );
    assert!(text(&v, &["returned_body"]).contains("The body of the message.\r\nSecond line."));

    // RET=HDRS, and a message over the size limit, return headers.
    let mut env = envelope(&["bad@example.com"]);
    env.ret = Some("HDRS".into());
    let bounce = build(&request(env, vec![refused(0)]), ORIGINAL, &reporting()).unwrap();
    assert_eq!(parse(&bounce.message)["parts"][2], "text/rfc822-headers");
    let mut env = envelope(&["bad@example.com"]);
    env.ret = Some("FULL".into());
    let small = Reporting {
        max_returned: 100,
        ..reporting()
    };
    let bounce = build(&request(env.clone(), vec![refused(0)]), ORIGINAL, &small).unwrap();
    assert_eq!(parse(&bounce.message)["parts"][2], "text/rfc822-headers");
    // Given only the start of the original (the caller read no more of a
    // large one): its headers, though the start is small.
    let start = Reporting {
        whole: false,
        ..reporting()
    };
    let bounce = build(&request(env, vec![refused(0)]), ORIGINAL, &start).unwrap();
    assert_eq!(parse(&bounce.message)["parts"][2], "text/rfc822-headers");
}

#[test]
fn envid_and_orcpt_are_reported() {
    let mut env = envelope(&["bad@example.com"]);
    env.envid = Some("QQ314159".into());
    env.recipients[0].orcpt = Some("rfc822;Bad+Original@Example.com".into());
    let bounce = build(&request(env, vec![refused(0)]), ORIGINAL, &reporting()).unwrap();
    let v = parse(&bounce.message);
    assert_eq!(
        text(&v, &["per_message", "Original-Envelope-Id"]),
        "QQ314159"
    );
    assert_eq!(
        text(&v["per_recipient"][0], &["Original-Recipient"]),
        "rfc822; Bad+Original@Example.com"
    );
    assert_eq!(
        text(&v["per_recipient"][0], &["Final-Recipient"]),
        "rfc822; bad@example.com"
    );
}

#[test]
fn notify_leaves_recipients_out() {
    let mut env = envelope(&[
        "never@example.com",
        "delay@example.com",
        "fail@example.com",
        "plain@example.com",
    ]);
    env.recipients[0].notify = Some("NEVER".into());
    env.recipients[1].notify = Some("SUCCESS,DELAY".into());
    env.recipients[2].notify = Some("delay,failure".into());
    let failed = (0..4).map(refused).collect();
    let bounce = build(&request(env.clone(), failed), ORIGINAL, &reporting()).unwrap();
    let v = parse(&bounce.message);
    let finals: Vec<String> = v["per_recipient"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| text(r, &["Final-Recipient"]))
        .collect();
    assert_eq!(
        finals,
        ["rfc822; fail@example.com", "rfc822; plain@example.com"]
    );

    // Nobody left: no bounce at all.
    assert!(build(
        &request(env.clone(), vec![refused(0), refused(1)]),
        ORIGINAL,
        &reporting()
    )
    .is_none());
    assert!(build(&request(env.clone(), Vec::new()), ORIGINAL, &reporting()).is_none());
    // The null sender never gets one.
    env.sender.clear();
    assert!(build(&request(env, vec![refused(3)]), ORIGINAL, &reporting()).is_none());
    // A recipient index past the envelope's is nobody.
    assert!(build(
        &request(envelope(&["a@example.com"]), vec![refused(5)]),
        ORIGINAL,
        &reporting()
    )
    .is_none());
}

#[test]
fn hostile_content_stays_well_formed() {
    let long_word = "x".repeat(3000);
    let mut env = envelope(&["bad@example.com", "bérénice@exemple.fr"]);
    env.sender = "alice\r\nBcc: victim@example.net@example.org".into();
    env.envid = Some("id\r\nX-Injected: yes".into());
    env.ret = Some("FULL".into());
    let mut first = refused(0);
    first.response.reply = format!("550 5.1.1 {long_word}\r\nX-Injected: yes\r\n more");
    first.response.remote = Some(crate::queue::RemoteMta {
        host: String::new(),
        ip: Some("2001:db8::25".parse().unwrap()),
    });
    let mut second = refused(1);
    second.response.reply = "550 5.1.1 utilisateur inconnu: bérénice".into();
    // A boundary-looking line in the original, bare LFs, a header line far
    // over 998 octets: the full message cannot go back as it is.
    let mut original = b"Subject: =_petrel_0000000200000005_\n".to_vec();
    original.extend_from_slice(format!("X-Long: {long_word}\n").as_bytes());
    original.extend_from_slice(b"Stray: a\rb\n\n--=_petrel_0000000200000005_0\nbody\n");
    let bounce = build(&request(env, vec![first, second]), &original, &reporting()).unwrap();
    check_lines(&bounce.message);
    let v = parse(&bounce.message);
    assert_eq!(v["defects"], serde_json::json!([]));
    assert_eq!(
        v["parts"][2], "text/rfc822-headers",
        "long lines: headers only"
    );
    let h = &v["headers"];
    assert!(h.get("Bcc").is_none() && h.get("X-Injected").is_none());
    assert!(v["per_message"].get("X-Injected").is_none());
    assert_eq!(
        text(&v, &["per_message", "Original-Envelope-Id"]),
        "id X-Injected: yes"
    );
    let r = v["per_recipient"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    assert!(r[0].get("X-Injected").is_none());
    assert_eq!(text(&r[0], &["Remote-MTA"]), "dns; [2001:db8::25]");
    assert!(text(&r[0], &["Diagnostic-Code"]).contains(&long_word[..900]));
    assert_eq!(
        text(&r[1], &["Final-Recipient"]),
        "utf-8; b\\x{E9}r\\x{E9}nice@exemple.fr"
    );
    assert!(
        text(&v, &["text"]).contains("bérénice@exemple.fr"),
        "the text part is UTF-8"
    );
    assert!(text(&v, &["returned_text"]).contains("Subject: =_petrel_"));
}

#[test]
fn odd_originals() {
    let mut bounces = Vec::new();
    for original in [
        &b""[..],
        b"\r\n",
        b"Subject: no body",
        b"no headers at all\r\n",
        b"\r\n\r\nbody only",
    ] {
        for ret in [None, Some("FULL")] {
            let mut env = envelope(&["bad@example.com"]);
            env.ret = ret.map(Into::into);
            let bounce = build(&request(env, vec![refused(0)]), original, &reporting()).unwrap();
            check_lines(&bounce.message);
            bounces.push(bounce.message);
        }
    }
    let messages: Vec<&[u8]> = bounces.iter().map(Vec::as_slice).collect();
    for v in parse_all(&messages) {
        assert_eq!(text(&v, &["content_type"]), "multipart/report");
        assert_eq!(v["defects"], serde_json::json!([]));
        assert_eq!(v["per_recipient"].as_array().unwrap().len(), 1);
    }
}

quickcheck! {
    /// Whatever the replies and the original, a report has CRLF line
    /// endings, short lines, and nothing of the content in its headers.
    fn any_content_gives_a_well_formed_report(reply: String, host: String, original: Vec<u8>, full: bool) -> TestResult {
        let mut env = envelope(&["bad@example.com"]);
        env.ret = full.then(|| "FULL".into());
        let mut f = refused(0);
        f.response.reply = reply;
        f.response.remote = Some(crate::queue::RemoteMta { host, ip: None });
        let Some(bounce) = build(&request(env, vec![f]), &original, &reporting()) else {
            return TestResult::failed();
        };
        check_lines(&bounce.message);
        let boundary = bounce
            .message
            .windows(10)
            .position(|w| w == b"boundary=\"")
            .map(|at| &bounce.message[at + 10..])
            .and_then(|rest| rest.iter().position(|&b| b == b'"').map(|end| &rest[..end]))
            .unwrap()
            .to_vec();
        let mut delimiter = b"--".to_vec();
        delimiter.extend_from_slice(&boundary);
        let count = bounce.message.windows(delimiter.len()).filter(|w| *w == delimiter).count();
        TestResult::from_bool(count == 4)
    }
}
