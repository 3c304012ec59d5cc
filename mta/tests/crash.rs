#![cfg(test)]
//! Crash safety: while Postfix's smtp-source sends thousands of messages,
//! `petrel` is killed with SIGKILL at random moments; after each restart
//! every message whose `250` reached a client is in the spool and readable.
//!
//! smtp-source does not say which messages were accepted, so it talks to
//! petrel through a proxy that records the queue id of each `250 … queued
//! as ID` on its way to the client, before the client can see it.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{random_below, recording_proxy, Instance};
use petrel_tests::{require_tool, Proc, BULK_TIMEOUT};

fn queue_ids(instance: &Instance) -> BTreeSet<String> {
    let list = instance.command(&["queue", "list"]);
    assert!(list.status.success(), "queue list failed:\n{}", list.output);
    list.stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn kill_during_load(rt: petrel_tests::Runtime) {
    let smtp_source = require_tool("smtp-source");
    let instance = Instance::new(&format!(
        r#"Runtime = "{}"
spoolbase = "{{dir}}/spool"
Log_File = "{{dir}}/log.jsonl"
# Nothing listens on port 1: every delivery is deferred for 20 minutes, so
# what was received stays in the spool to be counted.
Domain "example.com" {{ Gateway = "127.0.0.1:1" }}
ESMTP_Listener {{
  Relay_Hosts = ( "127.0.0.0/8" )
  Listen "127.0.0.1:0" {{ }}
}}
"#,
        rt.name()
    ));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    const ROUNDS: usize = 3;
    for round in 0..ROUNDS {
        let petrel = instance.start(&[]);
        let proxy = recording_proxy(petrel.addr(), accepted.clone());
        let before = accepted.lock().unwrap().len();
        let mut source = Proc::spawn(
            "smtp-source",
            Command::new(&smtp_source)
                .args([
                    "-s",
                    "20",
                    "-m",
                    "100000",
                    "-l",
                    "1000",
                    "-f",
                    "a@example.org",
                ])
                .args(["-t", "b@example.com"])
                .arg(proxy.to_string()),
        );
        // Hundreds of messages in, then a moment up to a second later.
        let deadline = Instant::now() + BULK_TIMEOUT;
        while accepted.lock().unwrap().len() < before + 300 {
            assert!(
                Instant::now() < deadline && !source.has_exited(),
                "round {round}: no 300 messages accepted; smtp-source:\n{}\npetrel:\n{}",
                source.output(),
                petrel.proc.output()
            );
            thread::sleep(Duration::from_millis(10));
        }
        thread::sleep(Duration::from_millis(random_below(1000)));
        petrel.proc.signal("KILL");
        let killed = petrel.proc.finish(BULK_TIMEOUT);
        assert!(!killed.status.success());
        drop(source);

        // Offline, then through a restart's recovery: every acknowledged
        // message is there.
        let acknowledged: BTreeSet<String> = accepted.lock().unwrap().iter().cloned().collect();
        let listed = queue_ids(&instance);
        let missing: Vec<_> = acknowledged.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} of {} acknowledged messages lost after SIGKILL: {missing:?}",
            missing.len(),
            acknowledged.len()
        );
    }
    let petrel = instance.start(&[]);
    let output = petrel.stop();
    let total = accepted.lock().unwrap().len();
    let recovered: usize = output
        .lines()
        .find_map(|line| line.strip_prefix("petrel: spool "))
        .and_then(|rest| rest.rsplit(": ").next())
        .and_then(|count| count.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no recovery count in:\n{output}"));
    assert!(
        recovered >= total,
        "recovered {recovered} < acknowledged {total}:\n{output}"
    );
}

petrel_tests::per_runtime!(kill_during_load);
