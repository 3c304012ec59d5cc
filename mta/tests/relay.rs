#![cfg(test)]
//! `petrel` relaying end to end, with real peers on both sides: swaks and
//! Postfix's smtp-source send, Postfix's smtp-sink, aiosmtpd and a fake
//! server of the test's own receive, an in-test DNS server answers the MX
//! lookups. What is checked is what arrives at the sinks, what the JSON
//! log says, and that the spool empties.
//!
//! Every wait is a bounded poll that fails with petrel's output and log;
//! every socket is on 127.0.0.0/8 (mail not routed to a sink goes to port
//! 1 of 127.0.0.1, where nothing listens, or, in the MX test, asks the
//! in-test DNS server, which knows no other domain); every process is
//! owned by a `Proc`, killed and reaped when dropped.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::dns::{a, answer, mx, DnsServer, Reply};
use common::{load_then_kill, Instance, Running};
use hickory_proto::rr::RecordType;
use petrel_tests::{
    path_str, require_python, swaks_ok, temp_dir, Aiosmtpd, AiosmtpdOptions, Pki, PostfixSink,
    RawSmtp, Runtime, BULK_TIMEOUT, CLIENT_TIMEOUT,
};
use serde_json::Value;

// ---------------------------------------------------------------------------
// Petrel's configuration, its log, bounded waits

/// A configuration: the runtime, a listener on 127.0.0.1 (port chosen by
/// the kernel) that loopback may relay through (with `listener` added
/// inside `ESMTP_Listener`), then `rest`.
fn config(rt: Runtime, listener: &str, rest: &str) -> String {
    format!(
        r#"Runtime = "{runtime}"
spoolbase = "{{dir}}/spool"
Log_File = "{{dir}}/log.jsonl"
Hostname = "mx.petrel.test"
ESMTP_Listener {{
  Relay_Hosts = ( "127.0.0.0/8" )
  Listen "127.0.0.1:0" {{ }}
{listener}
}}
{rest}
"#,
        runtime = rt.name(),
    )
}

/// The log's complete records (a line still being written is left for
/// the next look).
fn log(instance: &Instance) -> Vec<Value> {
    let text = std::fs::read_to_string(instance.path("log.jsonl")).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// What a failure shows: petrel's output and its log.
fn context(instance: &Instance, petrel: &Running) -> String {
    let log = std::fs::read_to_string(instance.path("log.jsonl")).unwrap_or_default();
    format!(
        "petrel's output:\n{}\nthe log:\n{log}",
        petrel.proc.output()
    )
}

/// Polls `done` every 50 ms for at most `timeout`; fails with `what` and
/// `context()` when it never holds.
fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "no {what} within {timeout:?}\n{}",
            context()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) until the log satisfies `done`, and returns it.
fn wait_for_log(
    instance: &Instance,
    petrel: &Running,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut records = Vec::new();
    wait_until(
        what,
        CLIENT_TIMEOUT,
        || {
            records = log(instance);
            done(&records)
        },
        || context(instance, petrel),
    );
    records
}

/// The records of `event` for `recipient`, in order.
fn events<'a>(log: &'a [Value], event: &str, recipient: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|r| r["event"] == event && r["recipient"] == recipient)
        .collect()
}

/// Whether the log has a record of `event` for `recipient`.
fn has(log: &[Value], event: &str, recipient: &str) -> bool {
    !events(log, event, recipient).is_empty()
}

/// Waits for the log's one record of `event` for `recipient`, and returns it.
fn record_of(instance: &Instance, petrel: &Running, event: &str, recipient: &str) -> Value {
    let what = format!("{event} for {recipient}");
    let log = wait_for_log(instance, petrel, &what, |log| has(log, event, recipient));
    one(&log, event, recipient).clone()
}

/// The one record of `event` for `recipient`.
fn one<'a>(log: &'a [Value], event: &str, recipient: &str) -> &'a Value {
    let found = events(log, event, recipient);
    assert_eq!(
        found.len(),
        1,
        "not one {event} for {recipient} in:\n{log:#?}"
    );
    found[0]
}

/// How many messages the spool holds (`petrel queue count`, read from
/// disk).
fn queue_count(instance: &Instance) -> usize {
    let count = instance.command(&["queue", "count"]);
    assert!(count.status.success(), "queue count: {}", count.output);
    count
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("queue count said {:?}", count.output))
}

/// Waits (bounded by `timeout`) until the spool is empty: everything was
/// delivered, failed or expired, and the bounces too.
fn wait_for_empty_spool(instance: &Instance, petrel: &Running, timeout: Duration) {
    wait_until(
        "empty spool",
        timeout,
        || queue_count(instance) == 0,
        || {
            let list = instance.command(&["queue", "list"]);
            format!(
                "still queued:\n{}\n{}",
                list.output,
                context(instance, petrel)
            )
        },
    );
}

/// swaks through `petrel` with `args` (after the harness's defaults, which
/// they override); returns the queue id petrel gave.
fn send(petrel: &Running, args: &[&str]) -> String {
    let output = swaks_ok(petrel.addr(), args, CLIENT_TIMEOUT);
    queued_id(&output)
}

fn queued_id(output: &str) -> String {
    output
        .lines()
        .find_map(|line| line.split("250 2.0.0 Ok: queued as ").nth(1))
        .map(|id| id.trim().to_owned())
        .unwrap_or_else(|| panic!("no queue id in:\n{output}"))
}

/// `petrel queue ARGS` against the running petrel; fails unless it
/// succeeds.
fn control(instance: &Instance, args: &[&str]) -> String {
    let finished = instance.command(&[&["queue"], args].concat());
    assert!(
        finished.status.success(),
        "petrel queue {args:?}: {}",
        finished.output
    );
    finished.stdout
}

// ---------------------------------------------------------------------------
// A server of the test's own

/// An SMTP server on 127.0.0.1 that offers no STARTTLS, accepts every
/// message, and records every command line it receives (not the
/// message's lines): what a policy must never send shows in its record.
/// It stops when dropped, and on its own after ten minutes whatever
/// happens.
struct FakeServer {
    addr: SocketAddr,
    /// Offers STARTTLS and never answers it: a middlebox that stalls.
    stalls: bool,
    commands: Arc<Mutex<Vec<String>>>,
    messages: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    fn start() -> FakeServer {
        Self::start_with(false)
    }

    /// A server that offers STARTTLS and never answers it.
    fn stalling() -> FakeServer {
        Self::start_with(true)
    }

    fn start_with(stalls: bool) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let commands = Arc::new(Mutex::new(Vec::new()));
        let messages = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn({
            let (commands, messages, stop) = (commands.clone(), messages.clone(), stop.clone());
            move || {
                let deadline = Instant::now() + Duration::from_secs(600);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (commands, messages) = (commands.clone(), messages.clone());
                            thread::spawn(move || {
                                let _ = fake_session(stream, &commands, &messages, stalls);
                            });
                        }
                        Err(_) => thread::sleep(Duration::from_millis(20)),
                    }
                }
            }
        });
        FakeServer {
            addr,
            stalls,
            commands,
            messages,
            stop,
            thread: Some(thread),
        }
    }

    fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().clone()
    }

    fn messages(&self) -> usize {
        self.messages.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One session: replies in order to each line (so pipelined commands are
/// answered too); reads time out after a minute, ending the thread.
fn fake_session(
    stream: TcpStream,
    commands: &Mutex<Vec<String>>,
    messages: &AtomicUsize,
    stalls: bool,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    out.write_all(b"220 fake.test ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        commands.lock().unwrap().push(command.clone());
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" if stalls => b"250-fake.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
            "EHLO" => b"250-fake.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            // No reply, ever: the client's timeout must end it. Reading on
            // sees the client close (or the read timeout).
            "STARTTLS" if stalls => {
                while lines.read_line(&mut line)? > 0 {}
                return Ok(());
            }
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.0.0 Ok\r\n",
            "DATA" => {
                out.write_all(b"354 go ahead\r\n")?;
                loop {
                    line.clear();
                    if lines.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                }
                messages.fetch_add(1, Ordering::SeqCst);
                b"250 2.0.0 Ok: taken\r\n"
            }
            "QUIT" => {
                out.write_all(b"221 2.0.0 Bye\r\n")?;
                return Ok(());
            }
            _ => b"502 5.5.1 not implemented\r\n",
        };
        out.write_all(reply)?;
    }
}

// ---------------------------------------------------------------------------
// Bounces, parsed by Python's `email` package

/// Parses a saved message as an RFC 3464 report with Python's `email`
/// (compat32: `message/delivery-status` comes out as header blocks).
const PARSE_REPORT: &str = r#"
import email, json, sys
with open(sys.argv[1], "rb") as f:
    msg = email.message_from_binary_file(f)
status = [p for p in msg.walk() if p.get_content_type() == "message/delivery-status"]
blocks = status[0].get_payload() if status else []
print(json.dumps({
    "defects": [type(d).__name__ for p in msg.walk() for d in p.defects],
    "content_type": msg.get_content_type(),
    "report_type": msg.get_param("report-type"),
    "from": msg.get("From"),
    "subject": msg.get("Subject"),
    "auto_submitted": msg.get("Auto-Submitted"),
    "parts": [p.get_content_type() for p in msg.get_payload()] if msg.is_multipart() else [],
    "per_message": {k.lower(): v for k, v in blocks[0].items()} if blocks else {},
    "per_recipient": [{k.lower(): v for k, v in b.items()} for b in blocks[1:]],
}))
"#;

fn parse_report(path: &Path) -> Value {
    let finished = petrel_tests::run(
        Command::new(require_python(false)).args(["-c", PARSE_REPORT, path_str(path)]),
        CLIENT_TIMEOUT,
    );
    assert!(finished.status.success(), "{}", finished.output);
    serde_json::from_str(&finished.stdout).unwrap_or_else(|e| panic!("{e}: {}", finished.output))
}

/// Checks `report` is an RFC 3464 failure report for `recipient` with
/// `status`, and returns its recipient block.
fn check_report(report: &Value, recipient: &str, status: &str) -> Value {
    assert_eq!(report["defects"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["content_type"], "multipart/report", "{report:#}");
    assert_eq!(report["report_type"], "delivery-status", "{report:#}");
    assert_eq!(
        report["parts"],
        serde_json::json!([
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]),
        "{report:#}"
    );
    assert_eq!(report["auto_submitted"], "auto-replied", "{report:#}");
    assert_eq!(
        report["per_message"]["reporting-mta"], "dns; mx.petrel.test",
        "{report:#}"
    );
    let blocks = report["per_recipient"].as_array().unwrap();
    assert_eq!(blocks.len(), 1, "{report:#}");
    let block = &blocks[0];
    assert_eq!(
        block["final-recipient"],
        format!("rfc822; {recipient}"),
        "{report:#}"
    );
    assert_eq!(block["action"], "failed", "{report:#}");
    assert_eq!(block["status"], status, "{report:#}");
    block.clone()
}

/// An aiosmtpd that saves what it receives into the directory returned.
fn saving_inbox() -> (tempfile::TempDir, Aiosmtpd) {
    let dir = temp_dir();
    let inbox = Aiosmtpd::start_with(&AiosmtpdOptions {
        save: Some(dir.path().to_owned()),
        ..AiosmtpdOptions::default()
    });
    (dir, inbox)
}

/// An aiosmtpd that answers every RCPT with `reply`.
fn deferring(reply: &str) -> Aiosmtpd {
    Aiosmtpd::start_with(&AiosmtpdOptions {
        rcpt_reply: Some(reply.to_owned()),
        ..AiosmtpdOptions::default()
    })
}

/// Undeliverable mail to nowhere, retried every second and expired
/// after four.
const FAST_EXPIRY: &str = r#"Gateway = "127.0.0.1:1"
Retry_Interval = 1
Max_Retry_Interval = 1
Message_Expiration = 4"#;

/// The messages an aiosmtpd `--save DIR` wrote: (envelope, path of the
/// message), in arrival order.
fn saved(dir: &Path) -> Vec<(Value, std::path::PathBuf)> {
    let mut messages: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "eml"))
        .collect();
    messages.sort();
    messages
        .into_iter()
        .map(|eml| {
            let envelope = std::fs::read_to_string(eml.with_extension("json")).unwrap();
            (serde_json::from_str(&envelope).unwrap(), eml)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// 1. End to end

/// Messages sent to each sink (and one more to both).
const MESSAGES: usize = 4;

/// swaks → petrel → smtp-sink (plaintext: it offers no STARTTLS) and →
/// aiosmtpd over STARTTLS with the certificate checked: every message
/// arrives once, the log has one delivery per recipient, the spool
/// empties.
fn end_to_end(rt: Runtime) {
    let pki = Pki::new();
    let mut sink = PostfixSink::start();
    let mut tls_sink = Aiosmtpd::start(Some((&pki.cert, &pki.key)));
    let instance = Instance::new(&config(
        rt,
        "",
        &format!(
            r#"Gateway = "127.0.0.1:1"
Domain "sink.test" {{ Gateway = "{sink}" }}
Domain "tls.test" {{
  Gateway = "{tls}"
  TLS = "required"
  TLS_Verify = "host"
  TLS_CA = "{ca}"
}}"#,
            sink = sink.addr,
            tls = tls_sink.addr,
            ca = path_str(&pki.ca),
        ),
    ));
    let petrel = instance.start(&[]);
    let mut recipients = Vec::new();
    for domain in ["sink.test", "tls.test"] {
        for n in 0..MESSAGES {
            let to = format!("user{n}@{domain}");
            send(&petrel, &["--to", &to]);
            recipients.push(to);
        }
    }
    // One message, two destinations: one delivery each.
    send(&petrel, &["--to", "both@sink.test,both@tls.test"]);
    recipients.extend(["both@sink.test".to_owned(), "both@tls.test".to_owned()]);

    wait_for_empty_spool(&instance, &petrel, CLIENT_TIMEOUT);
    let expected = u64::try_from(MESSAGES + 1).unwrap();
    assert_eq!(
        sink.wait_for_messages(expected, CLIENT_TIMEOUT),
        expected,
        "smtp-sink:\n{}\n{}",
        sink.output(),
        context(&instance, &petrel)
    );
    tls_sink.wait_for_messages(expected, CLIENT_TIMEOUT);
    petrel.stop();

    let counts = tls_sink.stop();
    assert_eq!(
        (counts.messages, counts.tls, counts.plaintext),
        (expected, expected, 0)
    );
    let log = log(&instance);
    let deliveries: Vec<&Value> = log.iter().filter(|r| r["event"] == "delivery").collect();
    assert_eq!(deliveries.len(), recipients.len(), "{log:#?}");
    for recipient in &recipients {
        let record = one(&log, "delivery", recipient);
        assert_eq!(record["binding"], "default");
        assert_eq!(record["mx_host"], "127.0.0.1");
        assert_eq!(record["mx_ip"], "127.0.0.1");
        assert_eq!(record["attempt"], 1);
        assert!(record["reply"].as_str().unwrap().starts_with("250 "));
        assert!(record["tls_decision"].is_null(), "{record:#}");
        // The message's own time, within its connection's.
        let (message, connection) = (
            record["message_ms"].as_u64(),
            record["connection_ms"].as_u64(),
        );
        assert!(
            message.zip(connection).is_some_and(|(m, c)| m <= c),
            "{record:#}"
        );
        if recipient.ends_with("@tls.test") {
            let version = record["tls"]["version"].as_str().unwrap_or_default();
            assert!(version.starts_with("TLSv1."), "{record:#}");
            assert!(
                !record["tls"]["cipher"]
                    .as_str()
                    .unwrap_or_default()
                    .is_empty(),
                "{record:#}"
            );
        } else {
            assert!(record["tls"].is_null(), "{record:#}");
        }
    }
    assert!(
        log.iter()
            .all(|r| r["event"] == "reception" || r["event"] == "delivery"),
        "{log:#?}"
    );
}

// ---------------------------------------------------------------------------
// 2. The TLS policy, per domain and per binding, from one configuration

fn tls_policy(rt: Runtime) {
    let pki = Pki::new();
    let ca = path_str(&pki.ca);
    // No STARTTLS: for `required`, and for the binding test.
    let no_tls = FakeServer::start();
    let no_tls_x = FakeServer::start();
    // A certificate for other.example only: wrong for TLS_Verify = host.
    let wrong_name = || Aiosmtpd::start(Some((&pki.other_cert, &pki.other_key)));
    let mut fallback = wrong_name();
    let no_fallback = wrong_name();
    let required_wrong_name = wrong_name();
    let instance = Instance::new(&config(
        rt,
        r#"  Peer "127.0.0.2/32" { Binding = "strict" }"#,
        &format!(
            r#"Gateway = "127.0.0.1:1"
TLS_CA = "{ca}"
Domain "required.test" {{
  Gateway = "{no_tls}"
  TLS = "required"
}}
Domain "fallback.test" {{
  Gateway = "{fallback}"
  TLS = "ifavailable"
  TLS_Ifavailable_Fallback = true
  TLS_Verify = "host"
}}
Domain "nofallback.test" {{
  Gateway = "{no_fallback}"
  TLS = "ifavailable"
  TLS_Ifavailable_Fallback = false
  TLS_Verify = "host"
}}
Domain "wrongname.test" {{
  Gateway = "{required_wrong_name}"
  TLS = "required"
  TLS_Verify = "host"
}}
# TLS ifavailable (the default) for the default binding...
Domain "x.test" {{ Gateway = "{no_tls_x}" }}
# ... required for mail from 127.0.0.2.
Binding "strict" {{
  Domain "x.test" {{ TLS = "required" }}
}}"#,
            no_tls = no_tls.addr,
            fallback = fallback.addr,
            no_fallback = no_fallback.addr,
            required_wrong_name = required_wrong_name.addr,
            no_tls_x = no_tls_x.addr,
        ),
    ));
    let petrel = instance.start(&[]);
    let ctx = || context(&instance, &petrel);

    // `required` to a server without STARTTLS: deferred, and no MAIL FROM
    // was ever sent.
    send(&petrel, &["--to", "a@required.test"]);
    let record = &record_of(&instance, &petrel, "transient_failure", "a@required.test");
    assert_eq!(
        record["reply"], "451 4.7.6 [internal] STARTTLS required but not advertised",
        "{record:#}"
    );
    assert!(record["tls"].is_null(), "{record:#}");
    assert_eq!(
        record["tls_decision"],
        "STARTTLS not advertised; deferred: 451 4.7.6 [internal] STARTTLS required but not advertised",
        "{record:#}"
    );
    let commands = no_tls.commands();
    assert!(
        commands.iter().any(|c| c.starts_with("EHLO ")),
        "{commands:?}\n{}",
        ctx()
    );
    assert!(
        !commands
            .iter()
            .any(|c| c.to_ascii_uppercase().starts_with("MAIL")),
        "MAIL sent in plaintext under TLS = required: {commands:?}"
    );
    assert_eq!(no_tls.messages(), 0);

    // `ifavailable` + fallback, the certificate rejected: delivered over a
    // new plaintext connection...
    send(&petrel, &["--to", "b@fallback.test"]);
    let record = &record_of(&instance, &petrel, "delivery", "b@fallback.test");
    assert!(record["tls"].is_null(), "{record:#}");
    let decision = record["tls_decision"].as_str().unwrap_or_default();
    assert!(
        decision.contains("certificate rejected") && decision.contains("new plaintext connection"),
        "{record:#}"
    );
    let counts = fallback.wait_for_messages(1, CLIENT_TIMEOUT);
    assert_eq!(
        (counts.tls, counts.plaintext),
        (0, 1),
        "{}",
        fallback.output()
    );
    // ... and the next message goes straight to plaintext: the broken TLS
    // is remembered.
    send(&petrel, &["--to", "c@fallback.test"]);
    let record = &record_of(&instance, &petrel, "delivery", "c@fallback.test");
    assert!(record["tls"].is_null(), "{record:#}");
    assert!(
        record["tls_decision"]
            .as_str()
            .unwrap_or_default()
            .contains("STARTTLS skipped"),
        "{record:#}"
    );
    let counts = fallback.wait_for_messages(2, CLIENT_TIMEOUT);
    assert_eq!(
        (counts.tls, counts.plaintext),
        (0, 2),
        "{}",
        fallback.output()
    );

    // `required` with TLS_Verify = host, a certificate for another name:
    // deferred, the certificate's problem in the log.
    send(&petrel, &["--to", "d@wrongname.test"]);
    let record = &record_of(&instance, &petrel, "transient_failure", "d@wrongname.test");
    let reply = record["reply"].as_str().unwrap_or_default();
    assert!(
        reply.starts_with("451 4.7.5 [internal] TLS certificate verification failed: "),
        "{record:#}"
    );
    // The name asked for and the name the certificate has.
    assert!(
        reply.contains("not valid for name \"127.0.0.1\"") && reply.contains("other.example"),
        "the log does not say what is wrong with the certificate: {record:#}"
    );
    assert!(
        record["tls_decision"]
            .as_str()
            .unwrap_or_default()
            .contains("certificate rejected"),
        "{record:#}"
    );
    assert_eq!(required_wrong_name.counts().messages, 0);

    // Fallback `false`: deferred...
    let id = send(&petrel, &["--to", "e@nofallback.test"]);
    let record = &record_of(&instance, &petrel, "transient_failure", "e@nofallback.test");
    assert!(
        record["reply"]
            .as_str()
            .unwrap_or_default()
            .starts_with("451 4.7.5 [internal] "),
        "{record:#}"
    );
    assert_eq!(record["attempt"], 1);
    // ... and once the server has the right certificate (a new server on
    // the same port), the retry uses TLS.
    let port = no_fallback.addr.port();
    let counts = no_fallback.stop();
    assert_eq!(counts.messages, 0);
    let mut fixed = Aiosmtpd::start_with(&AiosmtpdOptions {
        tls: Some((pki.cert.clone(), pki.key.clone())),
        port: Some(port),
        ..AiosmtpdOptions::default()
    });
    let listed = control(&instance, &["list", "nofallback.test"]);
    assert!(listed.contains(&id), "{listed}");
    let flushed = control(&instance, &["flush", "nofallback.test"]);
    assert!(flushed.starts_with("1 "), "{flushed}");
    let record = &record_of(&instance, &petrel, "delivery", "e@nofallback.test");
    assert_eq!(record["attempt"], 2, "{record:#}");
    assert!(
        record["tls"]["version"]
            .as_str()
            .unwrap_or_default()
            .starts_with("TLSv1."),
        "{record:#}"
    );
    assert!(record["tls_decision"].is_null(), "{record:#}");
    let counts = fixed.wait_for_messages(1, CLIENT_TIMEOUT);
    assert_eq!((counts.tls, counts.plaintext), (1, 0), "{}", fixed.output());

    // Per binding: the same domain, required for mail from 127.0.0.2
    // (binding "strict"), ifavailable for mail from 127.0.0.1.
    send(
        &petrel,
        &[
            "--local-interface",
            "127.0.0.2",
            "--from",
            "strict@example.org",
            "--to",
            "f@x.test",
        ],
    );
    send(
        &petrel,
        &["--from", "loose@example.org", "--to", "g@x.test"],
    );
    let log = wait_for_log(&instance, &petrel, "outcomes for x.test", |log| {
        has(log, "transient_failure", "f@x.test") && has(log, "delivery", "g@x.test")
    });
    let strict = one(&log, "transient_failure", "f@x.test");
    assert_eq!(strict["binding"], "strict", "{strict:#}");
    assert_eq!(
        strict["reply"],
        "451 4.7.6 [internal] STARTTLS required but not advertised"
    );
    assert!(
        strict["tls_decision"]
            .as_str()
            .unwrap_or_default()
            .starts_with("STARTTLS not advertised; deferred"),
        "{strict:#}"
    );
    let loose = one(&log, "delivery", "g@x.test");
    assert_eq!(loose["binding"], "default", "{loose:#}");
    assert!(loose["tls"].is_null(), "{loose:#}");
    // A server that offers no STARTTLS under `ifavailable`: plaintext, no
    // decision to report.
    assert!(loose["tls_decision"].is_null(), "{loose:#}");
    let mails: Vec<String> = no_tls_x
        .commands()
        .into_iter()
        .filter(|c| c.to_ascii_uppercase().starts_with("MAIL"))
        .collect();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].contains("<loose@example.org>"), "{mails:?}");
    assert_eq!(no_tls_x.messages(), 1);

    petrel.stop();
    // Nothing more came to the servers that must not have mail.
    assert_eq!(no_tls.messages(), 0);
    assert_eq!(required_wrong_name.stop().messages, 0);
    assert_eq!(fixed.stop().messages, 1);
    assert_eq!(fallback.stop().messages, 2);
}

// ---------------------------------------------------------------------------
// 3. MX routing through an in-test DNS server

fn zone(owner: &str, kind: RecordType) -> Reply {
    use RecordType::{A as Q4, MX as QMX};
    let records = match (owner, kind) {
        // The preferred MX host refuses connections (nothing listens on
        // 127.0.0.2 at the sink's port); the answer lists it second.
        ("pref.test", QMX) => vec![mx(20, "mx2.pref.test."), mx(10, "mx1.pref.test.")],
        ("mx1.pref.test", Q4) => vec![a("127.0.0.2")],
        ("mx2.pref.test", Q4) => vec![a("127.0.0.1")],
        // No MX: the domain's own address (RFC 5321 §5.1).
        ("nomx.test", Q4) => vec![a("127.0.0.1")],
        // RFC 7505.
        ("nullmx.test", QMX) => vec![mx(0, ".")],
        _ => Vec::new(),
    };
    let existing = [
        "pref.test",
        "mx1.pref.test",
        "mx2.pref.test",
        "nomx.test",
        "nullmx.test",
    ];
    answer(records, owner, &existing)
}

fn mx_routing(rt: Runtime) {
    let dns = DnsServer::start(zone);
    let mut sink = PostfixSink::start();
    let (inbox_dir, mut inbox) = saving_inbox();
    let instance = Instance::new(&config(
        rt,
        "",
        &format!(
            r#"Name_Servers = ( "{dns}" )
Remote_SMTP_Port = {port}
# Bounces come back here.
Domain "sender.test" {{ Gateway = "{inbox}" }}"#,
            dns = dns.addr,
            port = sink.addr.port(),
            inbox = inbox.addr,
        ),
    ));
    let petrel = instance.start(&[]);
    let from = ["--from", "someone@sender.test"];
    send(&petrel, &[&from[..], &["--to", "a@pref.test"]].concat());
    send(&petrel, &[&from[..], &["--to", "b@nomx.test"]].concat());
    let null_id = send(&petrel, &[&from[..], &["--to", "c@nullmx.test"]].concat());
    wait_for_empty_spool(&instance, &petrel, CLIENT_TIMEOUT);
    assert_eq!(
        sink.wait_for_messages(2, CLIENT_TIMEOUT),
        2,
        "{}",
        sink.output()
    );
    inbox.wait_for_messages(1, CLIENT_TIMEOUT);
    petrel.stop();
    let log = log(&instance);

    // The first MX refused the connection: delivered through the second.
    let record = one(&log, "delivery", "a@pref.test");
    assert_eq!(record["mx_host"], "mx2.pref.test", "{record:#}");
    assert_eq!(record["mx_ip"], "127.0.0.1", "{record:#}");
    let questions = dns.questions();
    assert!(
        questions.contains(&("mx1.pref.test".to_owned(), RecordType::A)),
        "{questions:?}"
    );
    // No MX: the domain's address.
    let record = one(&log, "delivery", "b@nomx.test");
    assert_eq!(record["mx_host"], "nomx.test", "{record:#}");
    assert_eq!(record["mx_ip"], "127.0.0.1", "{record:#}");
    // Null MX: failed for good, and bounced to the sender.
    let record = one(&log, "permanent_failure", "c@nullmx.test");
    assert!(
        record["reply"]
            .as_str()
            .unwrap_or_default()
            .starts_with("556 5.1.10 "),
        "{record:#}"
    );
    let bounces: Vec<&Value> = log.iter().filter(|r| r["event"] == "bounce").collect();
    assert_eq!(bounces.len(), 1, "{log:#?}");
    assert_eq!(bounces[0]["original"], null_id.as_str());
    assert_eq!(bounces[0]["recipient"], "someone@sender.test");

    let messages = saved(inbox_dir.path());
    assert_eq!(messages.len(), 1, "{}", inbox.output());
    let (envelope, path) = &messages[0];
    assert_eq!(envelope["mail_from"], "<>", "{envelope}");
    assert_eq!(
        envelope["rcpt_tos"],
        serde_json::json!(["someone@sender.test"])
    );
    let report = parse_report(path);
    let block = check_report(&report, "c@nullmx.test", "5.1.10");
    assert!(
        block["diagnostic-code"]
            .as_str()
            .unwrap_or_default()
            .contains("556 5.1.10"),
        "{report:#}"
    );
    assert_eq!(inbox.stop().messages, 1);
}

// ---------------------------------------------------------------------------
// 4. Retries and expiry in real time, second-long intervals

fn retries_expiry_bounce(rt: Runtime) {
    let later = deferring("451 4.3.0 try later");
    let (inbox_dir, mut inbox) = saving_inbox();
    let instance = Instance::new(&config(
        rt,
        "",
        &format!(
            r#"{FAST_EXPIRY}
Domain "later.test" {{ Gateway = "{later}" }}
Domain "sender.test" {{ Gateway = "{inbox}" }}"#,
            later = later.addr,
            inbox = inbox.addr,
        ),
    ));
    let petrel = instance.start(&[]);
    let id = send(
        &petrel,
        &[
            "--from",
            "someone@sender.test",
            "--to",
            "a@later.test",
            "--header",
            "Subject: will expire",
        ],
    );
    // A bounce is never sent to the null sender.
    let null_id = send(&petrel, &["--from", "<>", "--to", "b@later.test"]);
    wait_for_log(&instance, &petrel, "expiry of both", |log| {
        has(log, "expiry", "a@later.test") && has(log, "expiry", "b@later.test")
    });
    wait_for_empty_spool(&instance, &petrel, CLIENT_TIMEOUT);
    inbox.wait_for_messages(1, CLIENT_TIMEOUT);
    petrel.stop();
    let log = log(&instance);

    for (recipient, queue_id) in [("a@later.test", &id), ("b@later.test", &null_id)] {
        let transients = events(&log, "transient_failure", recipient);
        let attempts: Vec<u64> = transients
            .iter()
            .map(|r| r["attempt"].as_u64().unwrap())
            .collect();
        assert!(attempts.len() >= 2, "{recipient}: {log:#?}");
        assert_eq!(
            attempts,
            (1..=attempts.len() as u64).collect::<Vec<_>>(),
            "{recipient}: {log:#?}"
        );
        for record in &transients {
            assert_eq!(record["queue_id"], queue_id.as_str());
            assert_eq!(record["reply"], "451 4.3.0 try later", "{record:#}");
            assert_eq!(record["mx_ip"], "127.0.0.1", "{record:#}");
        }
        let expiry = one(&log, "expiry", recipient);
        assert_eq!(expiry["queue_id"], queue_id.as_str());
        assert!(!has(&log, "delivery", recipient), "{log:#?}");
        assert!(!has(&log, "permanent_failure", recipient), "{log:#?}");
    }
    let bounces: Vec<&Value> = log.iter().filter(|r| r["event"] == "bounce").collect();
    assert_eq!(bounces.len(), 1, "{log:#?}");
    assert_eq!(bounces[0]["original"], id.as_str());
    assert_eq!(bounces[0]["recipient"], "someone@sender.test");

    let messages = saved(inbox_dir.path());
    assert_eq!(messages.len(), 1, "{}", inbox.output());
    let (envelope, path) = &messages[0];
    assert_eq!(envelope["mail_from"], "<>", "{envelope}");
    let report = parse_report(path);
    let block = check_report(&report, "a@later.test", "4.4.7");
    assert!(
        block["diagnostic-code"]
            .as_str()
            .unwrap_or_default()
            .contains("451 4.3.0 try later"),
        "{report:#}"
    );
    let original = std::fs::read_to_string(path).unwrap();
    assert!(original.contains("Subject: will expire"), "{original}");
    assert_eq!(inbox.stop().messages, 1);
    assert_eq!(later.stop().messages, 0);
}

/// `NOTIFY` end to end: a recipient accepted by a server without DSN
/// (aiosmtpd offers none) that asked `NOTIFY=SUCCESS` gets a "relayed"
/// report; one deferred that asked `NOTIFY=DELAY` gets one "delayed"
/// report, however many times it is deferred, and, not having asked for
/// FAILURE, nothing when it expires.
fn dsn_notices(rt: Runtime) {
    let later = deferring("451 4.2.1 mailbox busy");
    let ok = Aiosmtpd::start(None);
    let (inbox_dir, mut inbox) = saving_inbox();
    let instance = Instance::new(&config(
        rt,
        "",
        &format!(
            r#"{FAST_EXPIRY}
Domain "later.test" {{ Gateway = "{later}" }}
Domain "ok.test" {{ Gateway = "{ok}" }}
Domain "sender.test" {{ Gateway = "{inbox}" }}"#,
            later = later.addr,
            ok = ok.addr,
            inbox = inbox.addr,
        ),
    ));
    let petrel = instance.start(&[]);
    let mut smtp = RawSmtp::connect(petrel.addr());
    smtp.expect(220, "connecting");
    smtp.command("EHLO raw.example", 250);
    smtp.command("MAIL FROM:<someone@sender.test> ENVID=dsn-test", 250);
    smtp.command("RCPT TO:<a@ok.test> NOTIFY=SUCCESS", 250);
    smtp.command("RCPT TO:<b@later.test> NOTIFY=DELAY", 250);
    smtp.command("RCPT TO:<c@ok.test>", 250);
    smtp.command("DATA", 354);
    smtp.command("Subject: notify me\r\n\r\nbody\r\n.", 250);
    smtp.command("QUIT", 221);
    wait_for_log(&instance, &petrel, "the expiry", |log| {
        has(log, "expiry", "b@later.test")
    });
    wait_for_empty_spool(&instance, &petrel, CLIENT_TIMEOUT);
    inbox.wait_for_messages(2, CLIENT_TIMEOUT);
    petrel.stop();
    let log = log(&instance);
    assert!(
        events(&log, "transient_failure", "b@later.test").len() >= 2,
        "{log:#?}"
    );
    let mut actions: Vec<&Value> = log
        .iter()
        .filter(|r| r["event"] == "bounce")
        .map(|r| &r["actions"])
        .collect();
    actions.sort_by_key(|a| a.to_string());
    assert_eq!(
        actions,
        [
            &serde_json::json!(["delayed"]),
            &serde_json::json!(["relayed"])
        ],
        "{log:#?}"
    );

    let mut reports: Vec<Value> = saved(inbox_dir.path())
        .iter()
        .map(|(envelope, path)| {
            assert_eq!(envelope["mail_from"], "<>", "{envelope}");
            parse_report(path)
        })
        .collect();
    assert_eq!(reports.len(), 2, "{}", inbox.output());
    reports.sort_by_key(|r| r["per_recipient"][0]["action"].to_string());
    for (report, recipient, action) in [
        (&reports[0], "b@later.test", "delayed"),
        (&reports[1], "a@ok.test", "relayed"),
    ] {
        assert_eq!(report["defects"], serde_json::json!([]), "{report:#}");
        assert_eq!(report["report_type"], "delivery-status", "{report:#}");
        assert_eq!(
            report["per_message"]["original-envelope-id"], "dsn-test",
            "{report:#}"
        );
        let blocks = report["per_recipient"].as_array().unwrap();
        assert_eq!(blocks.len(), 1, "{report:#}");
        assert_eq!(blocks[0]["final-recipient"], format!("rfc822; {recipient}"));
        assert_eq!(blocks[0]["action"], action, "{report:#}");
    }
    assert_eq!(reports[0]["per_recipient"][0]["status"], "4.2.1");
    assert_eq!(reports[1]["per_recipient"][0]["status"], "2.0.0");
    assert_eq!(inbox.stop().messages, 2);
    assert_eq!(ok.stop().messages, 1);
    assert_eq!(later.stop().messages, 0);
}

/// A message several times the size a session holds in memory goes to
/// the spool as it arrives and leaves whole; one whose client goes away in
/// the middle of its body leaves nothing behind. Each runtime stops reading
/// the client while a spilled part is being written, and resumes when the
/// spool wakes it: all three.
fn large_messages(rt: Runtime) {
    let (inbox_dir, mut inbox) = saving_inbox();
    let instance = Instance::new(&config(
        rt,
        "",
        &format!(
            r#"Gateway = "127.0.0.1:1"
Domain "big.test" {{ Gateway = "{inbox}" }}"#,
            inbox = inbox.addr,
        ),
    ));
    let petrel = instance.start(&[]);

    // About 3.5 MiB of numbered lines: any part lost, doubled or out of
    // order shows.
    let body: String = (0..100_000)
        .map(|n| format!("line {n:08} of the body\n"))
        .collect();
    let body_file = instance.path("body.txt");
    std::fs::write(&body_file, &body).unwrap();
    send(
        &petrel,
        &["--to", "big@big.test", "--body", path_str(&body_file)],
    );

    // A client that sends 2.5 MiB of a body and hangs up.
    let mut smtp = RawSmtp::connect(petrel.addr());
    smtp.expect(220, "connecting");
    smtp.command("EHLO raw.example", 250);
    smtp.command("MAIL FROM:<a@example.org>", 250);
    smtp.command("RCPT TO:<gone@big.test>", 250);
    smtp.command("DATA", 354);
    let line = "x".repeat(98) + "\r\n";
    for _ in 0..26 {
        smtp.send(line.repeat(1000).as_bytes());
    }
    drop(smtp);

    wait_for_empty_spool(&instance, &petrel, CLIENT_TIMEOUT);
    inbox.wait_for_messages(1, CLIENT_TIMEOUT);
    wait_until(
        "no spool file left",
        CLIENT_TIMEOUT,
        // Whole or not: `queue count` reads only whole ones.
        || common::files_under(&instance.path("spool/msg")) == 0,
        || context(&instance, &petrel),
    );
    petrel.stop();
    let messages = saved(inbox_dir.path());
    assert_eq!(messages.len(), 1, "{}", inbox.output());
    let arrived = std::fs::read_to_string(&messages[0].1).unwrap();
    // After the headers, the lines sent, in order (swaks adds an empty
    // line or two at the end).
    let arrived: Vec<&str> = arrived
        .lines()
        .skip_while(|l| !l.is_empty())
        .filter(|l| !l.is_empty())
        .collect();
    let sent: Vec<&str> = body.lines().collect();
    assert_eq!(arrived.len(), sent.len(), "{:?}", arrived.last());
    assert!(arrived == sent, "the body changed on the way");
    let log = log(&instance);
    assert_eq!(
        log.iter().filter(|r| r["event"] == "reception").count(),
        1,
        "{log:#?}"
    );
    assert_eq!(inbox.stop().messages, 1);
}

// ---------------------------------------------------------------------------
// 5. Crash safety end to end

/// Rounds of load and SIGKILL.
const ROUNDS: usize = 3;

/// The queue ids in petrel's `Received:` headers of every message dumped
/// in `dir`, with how many times each came.
fn delivered_ids(dir: &Path) -> BTreeMap<String, usize> {
    const MARK: &str = "(Petrel) with ESMTP id ";
    let mut ids = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text =
            String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap()).into_owned();
        for (at, _) in text.match_indices(MARK) {
            let id: String = text[at + MARK.len()..].chars().take(16).collect();
            *ids.entry(id).or_default() += 1;
        }
    }
    ids
}

/// smtp-source → recording proxy → petrel → smtp-sink (dumping each
/// message), petrel killed with SIGKILL at random moments of the load
/// and restarted: at the end every message petrel acknowledged with
/// `250` reached the sink. Duplicates are allowed (a delivery killed
/// between the sink's `250` and the spool's record of it is made again),
/// losses are not.
fn crash_under_load(rt: Runtime) {
    let dump = temp_dir();
    let sink = PostfixSink::start_dumping(dump.path());
    let instance = Instance::new(&config(
        rt,
        "",
        &format!(
            r#"Gateway = "127.0.0.1:1"
# A delivery cut off by a kill is retried at once after the restart; one
# that fails otherwise, within seconds.
Retry_Interval = 1
Max_Retry_Interval = 2
Max_Retries = none
Domain "example.com" {{ Gateway = "{sink}" }}"#,
            sink = sink.addr
        ),
    ));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    for round in 0..ROUNDS {
        // Deliveries are under way too when the kill comes.
        load_then_kill(instance.start(&[]), &accepted, round, |petrel| {
            context(&instance, petrel)
        });
    }
    // The last restart drains the queue.
    let petrel = instance.start(&[]);
    wait_for_empty_spool(&instance, &petrel, BULK_TIMEOUT);
    petrel.stop();

    let acknowledged: BTreeSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    let delivered = delivered_ids(dump.path());
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !delivered.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages never reached the sink: {missing:?}\nsmtp-sink:\n{}",
        missing.len(),
        acknowledged.len(),
        sink.output()
    );
    let duplicates = delivered.values().filter(|&&n| n > 1).count();
    eprintln!(
        "{}: {} acknowledged, {} delivered ({duplicates} more than once)",
        rt.name(),
        acknowledged.len(),
        delivered.len()
    );
}

// The TLS policy's fallbacks (a new plaintext connection, a deferral) are
// carried out by each runtime's delivery client: all three.
/// A STARTTLS that stalls (no reply, ever) is a failed attempt under the
/// policy once `Delivery_Response_Timeout` passes, like a handshake that
/// fails: `ifavailable` with fallback delivers over a new plaintext
/// connection; `required` defers, once per attempt, never looping. The
/// operator then sees the deferral in `queue summary` and removes it.
fn stalled_starttls(rt: Runtime) {
    let stall = FakeServer::stalling();
    assert!(stall.stalls);
    let gateway = stall.addr;
    let instance = Instance::new(&config(
        rt,
        "",
        &format!(
            r#"Domain "stall.test" {{ Gateway = "{gateway}" Delivery_Response_Timeout = 2 }}
Domain "stallreq.test" {{ Gateway = "{gateway}" Delivery_Response_Timeout = 2 TLS = "required" }}
"#
        ),
    ));
    let petrel = instance.start(&[]);
    send(&petrel, &["--to", "a@stall.test"]);
    let delivered = &record_of(&instance, &petrel, "delivery", "a@stall.test");
    let decision = delivered["tls_decision"].as_str().unwrap_or_default();
    assert!(decision.contains("timed out"), "{delivered}");
    assert!(decision.contains("new plaintext connection"), "{delivered}");
    assert!(delivered["tls"].is_null(), "{delivered}");
    assert_eq!(stall.messages(), 1);

    let id = send(&petrel, &["--to", "b@stallreq.test"]);
    let deferred = &record_of(&instance, &petrel, "transient_failure", "b@stallreq.test");
    assert!(
        deferred["reply"].as_str().unwrap().starts_with("451 4.7.5"),
        "{deferred}"
    );
    assert!(
        deferred["tls_decision"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{deferred}"
    );
    // Under `required` nothing goes in plaintext: one MAIL in all, the
    // first message's.
    let mails = stall
        .commands()
        .iter()
        .filter(|c| c.starts_with("MAIL"))
        .count();
    assert_eq!(mails, 1, "{:?}", stall.commands());
    let summary = control(&instance, &["summary"]);
    assert!(summary.contains("stallreq.test"), "{summary}");
    let removed = control(&instance, &["remove", &id]);
    assert!(removed.contains(&id), "{removed}");
    wait_for_empty_spool(&instance, &petrel, CLIENT_TIMEOUT);
    petrel.stop();
}

petrel_tests::per_runtime!(
    end_to_end,
    tls_policy,
    crash_under_load,
    stalled_starttls,
    large_messages
);

// Routing and the retry schedule are the same code whatever the runtime
// of the connections: tokio.

#[test]
fn mx_routing_next_mx_no_mx_and_null_mx() {
    mx_routing(Runtime::Tokio);
}

#[test]
fn retries_then_expiry_then_bounce_in_real_time() {
    retries_expiry_bounce(Runtime::Tokio);
}

/// `Suspend_Delivery` holds a domain's mail: no connection is made, the
/// queue shows it suspended and a flush does not release it; lifted at a
/// restart, the message goes.
#[test]
fn suspended_delivery_holds_mail_until_lifted() {
    let server = FakeServer::start();
    let gateway = server.addr;
    let settings = |suspended: bool| {
        config(
            Runtime::Tokio,
            "",
            &format!(
                r#"Domain "held.test" {{ Gateway = "{gateway}" Suspend_Delivery = {suspended} }}"#
            ),
        )
    };
    let instance = Instance::new(&settings(true));
    let petrel = instance.start(&[]);
    let id = send(&petrel, &["--to", "a@held.test"]);
    let held = || control(&instance, &["list", "held.test"]);
    wait_until(
        "suspended delivery in the queue",
        CLIENT_TIMEOUT,
        || held().contains(&format!("{id} Suspended")),
        held,
    );
    let summary = control(&instance, &["summary"]);
    assert!(
        summary
            .lines()
            .any(|l| l.starts_with("default\theld.test\t") && l.ends_with("\t1")),
        "{summary}"
    );
    let flushed = control(&instance, &["flush", "held.test"]);
    assert!(flushed.starts_with("0 deliveries"), "{flushed}");
    petrel.stop();
    assert_eq!(server.messages(), 0, "{:?}", server.commands());

    instance.reconfigure(&settings(false));
    let petrel = instance.start(&[]);
    wait_for_empty_spool(&instance, &petrel, CLIENT_TIMEOUT);
    petrel.stop();
    assert_eq!(server.messages(), 1);
}

#[test]
fn delay_and_relay_notices_as_notify_asks() {
    dsn_notices(Runtime::Tokio);
}
