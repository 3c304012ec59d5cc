#![cfg(test)]
//! `petrel` receiving mail on each runtime, from peers nobody here wrote
//! (swaks, Python's smtplib): plaintext and STARTTLS, relaying allowed and
//! denied, the `Received:` header, the JSON-lines log, the spool, and a
//! graceful stop.

mod common;

use std::time::Duration;

use common::{Instance, GRACE};
use petrel_tests::{
    path_str, smtplib_send, swaks, swaks_ok, Pki, RawSmtp, Runtime, CLIENT_TIMEOUT, STOP_TIMEOUT,
};

/// A listener on 127.0.0.1 (port chosen by the kernel) with STARTTLS from
/// `pki`; 127.0.0.1 may relay anywhere, everyone else only to `local.test`.
fn instance(rt: Runtime, pki: &Pki) -> Instance {
    Instance::new(&format!(
        r#"# A test instance.
Runtime = "{runtime}"
spoolbase = "{{dir}}/spool"
Log_File = "{{dir}}/log.jsonl"
Hostname = "mx.petrel.test"
# Nothing listens on port 1: deliveries are deferred, and what was
# received stays in the spool to be looked at.
Gateway = "127.0.0.1:1"
Relay_Domains = ( "local.test" )
ESMTP_Listener {{
  Relay_Hosts = ( "127.0.0.1" )
  Listen "127.0.0.1:0" {{
    TLS_Certificate = "{cert}"
    TLS_Key = "{key}"
  }}
}}
"#,
        runtime = rt.name(),
        cert = path_str(&pki.cert),
        key = path_str(&pki.key),
    ))
}

fn receptions(instance: &Instance) -> Vec<serde_json::Value> {
    instance
        .log()
        .into_iter()
        .filter(|record| record["event"] == "reception")
        .collect()
}

fn plain_and_starttls(rt: Runtime) {
    let pki = Pki::new();
    let instance = instance(rt, &pki);
    let petrel = instance.start(&[]);
    let addr = petrel.addr();

    let plain = swaks_ok(addr, &["--header", "Subject: plain-marker"], CLIENT_TIMEOUT);
    assert!(plain.contains("250 2.0.0 Ok: queued as "), "{plain}");
    let tls = swaks_ok(
        addr,
        &["--tls", "--header", "Subject: tls-marker"],
        CLIENT_TIMEOUT,
    );
    assert!(tls.contains("250 2.0.0 Ok: queued as "), "{tls}");
    smtplib_send(addr, None);
    let python_tls = smtplib_send(addr, Some(&pki.ca));
    assert!(python_tls.contains("tls TLSv1.3"), "{python_tls}");
    petrel.stop();

    // Each message is in the spool, with a Received header naming how it
    // came.
    let plain_files = instance.spool_files_with("plain-marker");
    assert_eq!(plain_files.len(), 1, "{plain_files:?}");
    let plain_text = String::from_utf8_lossy(&std::fs::read(&plain_files[0]).unwrap()).into_owned();
    assert!(
        plain_text.contains("Received: from swaks.example ([127.0.0.1])\r\n\tby mx.petrel.test (Petrel) with ESMTP id "),
        "{plain_text}"
    );
    assert!(
        plain_text.contains("\t(plaintext)\r\n\tfor <rcpt@example.com>;"),
        "{plain_text}"
    );
    let tls_files = instance.spool_files_with("tls-marker");
    assert_eq!(tls_files.len(), 1, "{tls_files:?}");
    let tls_text = String::from_utf8_lossy(&std::fs::read(&tls_files[0]).unwrap()).into_owned();
    assert!(tls_text.contains("with ESMTPS id "), "{tls_text}");
    assert!(
        tls_text.contains("(using TLSv1.3 with cipher TLS_"),
        "{tls_text}"
    );

    // One reception record per message, with what the issue names.
    let records = receptions(&instance);
    assert_eq!(records.len(), 4, "{records:#?}");
    for record in &records {
        assert!(record["sender"].as_str().unwrap().contains('@'));
        assert_eq!(record["recipients"][0], "rcpt@example.com");
        assert!(record["size"].as_u64().unwrap() > 100);
        assert!(record["client"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(record["reply"]
            .as_str()
            .unwrap()
            .starts_with("250 2.0.0 Ok: queued as "));
        assert!(record["queue_id"].as_str().unwrap().len() >= 8);
    }
    let encrypted: Vec<_> = records.iter().filter(|r| !r["tls"].is_null()).collect();
    assert_eq!(encrypted.len(), 2, "{records:#?}");
    for record in encrypted {
        assert_eq!(record["tls"]["version"], "TLSv1.3");
        assert!(record["tls"]["cipher"]
            .as_str()
            .unwrap()
            .starts_with("TLS_"));
    }

    // The spool lists them, offline.
    let list = instance.command(&["queue", "count"]);
    assert!(list.status.success(), "{}", list.output);
    assert_eq!(list.stdout.trim(), "4", "{}", list.output);
    let list = instance.command(&["queue", "list"]);
    for record in &records {
        let id = record["queue_id"].as_str().unwrap();
        assert!(list.stdout.contains(id), "{id} not in:\n{}", list.output);
    }
}

fn relay_control(rt: Runtime) {
    let pki = Pki::new();
    let instance = instance(rt, &pki);
    let petrel = instance.start(&[]);
    let addr = petrel.addr();
    // 127.0.0.2 is not in Relay_Hosts: only local.test is open to it.
    let denied = swaks(addr, &["--local-interface", "127.0.0.2"], CLIENT_TIMEOUT);
    assert!(!denied.status.success(), "{}", denied.output);
    assert!(
        denied
            .output
            .contains("554 5.7.1 <rcpt@example.com>: Relay access denied"),
        "{}",
        denied.output
    );
    swaks_ok(
        addr,
        &[
            "--local-interface",
            "127.0.0.2",
            "--to",
            "someone@local.test",
        ],
        CLIENT_TIMEOUT,
    );
    swaks_ok(addr, &["--to", "anyone@anywhere.example"], CLIENT_TIMEOUT);
    petrel.stop();

    let log = instance.log();
    let refusals: Vec<_> = log.iter().filter(|r| r["event"] == "refusal").collect();
    assert_eq!(refusals.len(), 1, "{log:#?}");
    assert_eq!(refusals[0]["stage"], "rcpt");
    assert_eq!(refusals[0]["detail"]["recipient"], "rcpt@example.com");
    assert!(refusals[0]["client"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.2:"));
    assert!(refusals[0]["reply"]
        .as_str()
        .unwrap()
        .starts_with("554 5.7.1"));
    let received: Vec<_> = receptions(&instance)
        .iter()
        .map(|r| r["recipients"][0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(received, ["someone@local.test", "anyone@anywhere.example"]);
    assert!(instance.spool_files_with("rcpt@example.com").is_empty());
}

/// SIGTERM: no new connection, a transaction in progress still completes
/// within the grace period, and the process exits 0.
fn graceful_stop(rt: Runtime) {
    let pki = Pki::new();
    let instance = instance(rt, &pki);
    let petrel = instance.start(&["--grace", &GRACE.as_secs().to_string()]);
    let addr = petrel.addr();
    let mut smtp = RawSmtp::connect(addr);
    smtp.expect(220, "connecting");
    smtp.command("EHLO raw.example", 250);
    smtp.command("MAIL FROM:<a@example.org>", 250);
    smtp.command("RCPT TO:<b@example.com>", 250);
    petrel.proc.signal("TERM");
    let mut proc = petrel.proc;
    proc.wait_for("the stop notice", STOP_TIMEOUT, |out| {
        out.contains("petrel: stopping")
    });
    // The listeners close as the shutdown begins (asynchronously, on the
    // runtime's threads): connections are soon refused.
    let refused = (0..500).any(|_| {
        let refused = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_err();
        if !refused {
            std::thread::sleep(Duration::from_millis(20));
        }
        refused
    });
    assert!(refused, "still accepting after SIGTERM");
    smtp.command("DATA", 354);
    smtp.send(b"Subject: finished-during-grace\r\n\r\nbody\r\n.\r\n");
    let reply = smtp.expect(250, "the message end");
    assert!(reply.lines[0].contains("queued as"), "{reply:?}");
    smtp.command("QUIT", 221);
    let finished = proc.finish(STOP_TIMEOUT);
    assert!(finished.status.success(), "{}", finished.output);
    assert!(
        finished.output.contains("petrel: stopped"),
        "{}",
        finished.output
    );
    assert_eq!(instance.spool_files_with("finished-during-grace").len(), 1);
}

/// Past the grace period a session still open is told 421.
fn grace_expires(rt: Runtime) {
    let pki = Pki::new();
    let instance = instance(rt, &pki);
    let petrel = instance.start(&["--grace", "1"]);
    let mut smtp = RawSmtp::connect(petrel.addr());
    smtp.expect(220, "connecting");
    smtp.command("EHLO raw.example", 250);
    petrel.proc.signal("TERM");
    smtp.expect(421, "the end of the grace period");
    let finished = petrel.proc.finish(STOP_TIMEOUT);
    assert!(finished.status.success(), "{}", finished.output);
}

/// A message that already crossed 100 relays is in a loop: refused with
/// `554 5.4.6`, logged, and not stored; one hop fewer goes through.
#[test]
fn a_mail_loop_is_refused() {
    let pki = Pki::new();
    let instance = instance(Runtime::Tokio, &pki);
    let petrel = instance.start(&[]);
    let message = |hops: usize, marker: &str| {
        let path = instance.path(&format!("{marker}.eml"));
        let mut text: String = (0..hops)
            .map(|n| {
                format!(
                    "Received: from hop{n}.example by hop{}.example; date\r\n",
                    n + 1
                )
            })
            .collect();
        text.push_str(&format!("Subject: {marker}\r\n\r\nbody\r\n"));
        std::fs::write(&path, text).unwrap();
        path
    };
    let looping = message(100, "looping");
    let sent = swaks(
        petrel.addr(),
        &["--data", path_str(&looping)],
        CLIENT_TIMEOUT,
    );
    assert!(!sent.status.success(), "{}", sent.output);
    assert!(sent.output.contains("554 5.4.6"), "{}", sent.output);
    let almost = message(99, "almost");
    swaks_ok(
        petrel.addr(),
        &["--data", path_str(&almost)],
        CLIENT_TIMEOUT,
    );
    petrel.stop();
    assert!(instance.spool_files_with("Subject: looping").is_empty());
    assert_eq!(instance.spool_files_with("Subject: almost").len(), 1);
    let refusals: Vec<_> = instance
        .log()
        .into_iter()
        .filter(|r| r["event"] == "refusal")
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    assert_eq!(refusals[0]["detail"]["hops"], 100);
}

/// SIGHUP reopens the log by its name, as log rotation needs: what came
/// before is in the renamed file, what comes after in a new one.
#[test]
fn sighup_reopens_the_log() {
    let pki = Pki::new();
    let instance = instance(Runtime::Tokio, &pki);
    let mut petrel = instance.start(&[]);
    let addr = petrel.addr();
    swaks_ok(addr, &["--header", "Subject: before"], CLIENT_TIMEOUT);
    let log = instance.path("log.jsonl");
    let rotated = instance.path("log.jsonl.1");
    std::fs::rename(&log, &rotated).unwrap();
    petrel.proc.signal("HUP");
    petrel
        .proc
        .wait_for("the reopened log", STOP_TIMEOUT, |out| {
            out.contains("petrel: log reopened")
        });
    swaks_ok(addr, &["--header", "Subject: after"], CLIENT_TIMEOUT);
    petrel.stop();
    let receptions = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| l.contains(r#""event":"reception""#))
            .count()
    };
    assert_eq!(receptions(&rotated), 1);
    assert_eq!(receptions(&log), 1);
}

petrel_tests::per_runtime!(
    plain_and_starttls,
    relay_control,
    graceful_stop,
    grace_expires
);

/// The embedded default: no configuration file at all.
#[test]
fn embedded_default_runs() {
    let dir = petrel_tests::temp_dir();
    // The default listens on 127.0.0.1:2525.
    let check = petrel_tests::run(
        std::process::Command::new(common::binary())
            .arg("check-config")
            .current_dir(dir.path()),
        CLIENT_TIMEOUT,
    );
    assert!(check.status.success(), "{}", check.output);
    assert!(check.output.trim().is_empty(), "{}", check.output);
    assert!(
        std::net::TcpListener::bind("127.0.0.1:2525").is_ok(),
        "127.0.0.1:2525, the embedded default's address, is taken by another program: stop it"
    );
    let mut proc = petrel_tests::Proc::spawn(
        "petrel",
        std::process::Command::new(common::binary()).current_dir(dir.path()),
    );
    proc.wait_for("listening on", petrel_tests::START_TIMEOUT, |out| {
        out.contains("petrel: listening on 127.0.0.1:2525")
    });
    let addr = "127.0.0.1:2525".parse().unwrap();
    // An address literal on loopback: the delivery petrel then tries asks
    // no DNS server and stays on this machine (nothing listens on port 25
    // here, or if something does, it is local).
    let to = ["--to", "rcpt@[127.0.0.1]"];
    let out = swaks_ok(addr, &[&to[..], &["--tls"]].concat(), CLIENT_TIMEOUT);
    assert!(out.contains("queued as"), "{out}");
    // Relaying is for loopback clients only: 127.0.0.2 is loopback too.
    swaks_ok(
        addr,
        &[&to[..], &["--local-interface", "127.0.0.2"]].concat(),
        CLIENT_TIMEOUT,
    );
    proc.signal("TERM");
    let finished = proc.finish(STOP_TIMEOUT);
    assert!(finished.status.success(), "{}", finished.output);
    assert!(dir.path().join("petrel-spool").is_dir());
}
