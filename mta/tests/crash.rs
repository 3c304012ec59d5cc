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
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::Instance;
use petrel_tests::{require_tool, Proc, BULK_TIMEOUT};

/// Accepts connections and relays each to `upstream`, recording queue ids
/// from the server's replies. Runs until the process ends (a test binary).
fn recording_proxy(upstream: SocketAddr, accepted: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            let accepted = accepted.clone();
            let (mut client_read, mut server_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            thread::spawn(move || {
                let _ = std::io::copy(&mut client_read, &mut server_write);
                let _ = server_write.shutdown(Shutdown::Write);
            });
            thread::spawn(move || relay_replies(server, client, &accepted));
        }
    });
    addr
}

fn relay_replies(mut server: TcpStream, mut client: TcpStream, accepted: &Mutex<Vec<String>>) {
    let mut partial = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        partial.extend_from_slice(&buf[..n]);
        while let Some(end) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            if let Some(id) = line.strip_prefix("250 2.0.0 Ok: queued as ") {
                accepted.lock().unwrap().push(id.trim().to_owned());
            }
        }
        // Recorded first, then the client may see it.
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Write);
}

fn queue_ids(instance: &Instance) -> BTreeSet<String> {
    let list = instance.command(&["queue", "list"]);
    assert!(list.status.success(), "queue list failed:\n{}", list.output);
    list.stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// A pseudo-random number below `n`, from the clock: the moments of the
/// kills are meant to differ between runs.
fn random_below(n: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos.wrapping_mul(2_654_435_761)) % n
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
