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
use std::sync::{Arc, Mutex};

use common::{load_then_kill, Instance};

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
        load_then_kill(instance.start(&[]), &accepted, round, |petrel| {
            format!("petrel:\n{}", petrel.proc.output())
        });

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
