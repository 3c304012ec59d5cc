//! More recipients than a server takes in one transaction (RFC 5321
//! §4.5.3.1.10): Petrel's client sends 2,500 recipients of one message, and
//! every one of them arrives exactly once, in as many transactions on one
//! connection as the server's limit asks, to Petrel's own server (which
//! announces its limit, or lets the client learn it from its 452s) and to
//! Postfix's smtp-sink.
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use petrel_tests::{send, temp_dir, PostfixSink, Runtime, Sink, BULK_TIMEOUT, CLIENT_TIMEOUT};

const RECIPIENTS: usize = 2500;

fn recipient(n: usize) -> String {
    format!("r{n}@example.test")
}

/// `--rcpt` for each of the 2,500 recipients, and one message.
fn send_args() -> Vec<String> {
    let mut args: Vec<String> = ["--count", "1", "--tls", "no"].map(String::from).to_vec();
    for n in 0..RECIPIENTS {
        args.push("--rcpt".into());
        args.push(recipient(n));
    }
    args
}

fn to_petrel_sink(rt: Runtime, sink_args: &[&str], transactions: u64) {
    let sink = Sink::start(rt, sink_args);
    let args = send_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // One message, delivered only if every recipient was.
    send(rt, sink.addr, &args, BULK_TIMEOUT).assert_counts(
        (1, 0, 0, 0, 1),
        &format!("{}-send, 2500 recipients, sink {sink_args:?}", rt.name()),
    );
    let counts = sink.stop();
    assert_eq!(counts.recipients, RECIPIENTS as u64, "{sink_args:?}");
    assert_eq!(counts.accepted, transactions, "{sink_args:?}");
    assert_eq!(counts.connections, 1, "{sink_args:?}");
}

fn many_recipients_to_petrel(rt: Runtime) {
    // LIMITS RCPTMAX=1000 announced: 1000 + 1000 + 500.
    to_petrel_sink(rt, &["--tls-engine", "none"], 3);
    // A limit of 400 the client learns from the 452s of the first
    // transaction: 400 × 6 + 100.
    to_petrel_sink(
        rt,
        &[
            "--tls-engine",
            "none",
            "--max-recipients",
            "400",
            "--advertise-limits",
            "false",
        ],
        7,
    );
}

fn many_recipients_to_postfix_smtp_sink(rt: Runtime) {
    let dir = temp_dir();
    // smtp-sink drops privileges to `nobody` when run as root.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let template = format!("{}/%M.", dir.path().display());
    let mut server = PostfixSink::start_with(&["-d", &template]);
    let args = send_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    send(rt, server.addr, &args, BULK_TIMEOUT).assert_counts(
        (1, 0, 0, 0, 1),
        &format!("{}-send to smtp-sink, 2500 recipients", rt.name()),
    );
    // smtp-sink takes any number; our own limit of 1000 per transaction
    // splits the message.
    assert_eq!(server.wait_for_messages(3, CLIENT_TIMEOUT), 3);
    // Each dumped transaction lists its recipients as `X-Rcpt-Args: <a>`.
    let mut seen = BTreeMap::<String, usize>::new();
    let mut per_transaction = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let rcpts: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("X-Rcpt-Args: <"))
            .filter_map(|rest| rest.strip_suffix('>'))
            .collect();
        per_transaction.push(rcpts.len());
        for rcpt in rcpts {
            *seen.entry(rcpt.to_owned()).or_default() += 1;
        }
    }
    per_transaction.sort_unstable();
    assert_eq!(per_transaction, [500, 1000, 1000]);
    let expected: BTreeMap<String, usize> = (0..RECIPIENTS).map(|n| (recipient(n), 1)).collect();
    assert!(seen == expected, "every recipient exactly once");
}

petrel_tests::per_runtime!(
    many_recipients_to_petrel,
    many_recipients_to_postfix_smtp_sink
);
