#![cfg(test)]
//! A full disk: `petrel`'s spool on a small tmpfs this test mounts. When
//! it fills, a message gets `452 4.3.1`, nothing stored before is lost,
//! and reception resumes once there is room.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Instance;
use petrel_tests::{path_str, swaks, write_message_file, Runtime, CLIENT_TIMEOUT};

/// A tmpfs mounted for the test's life, unmounted even when it fails.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let mounted = petrel_tests::run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
                .arg("tmpfs")
                .arg(at),
            CLIENT_TIMEOUT,
        );
        assert!(
            mounted.status.success(),
            "this test mounts a small tmpfs to fill it and must run as root (CI does): {}",
            mounted.output
        );
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `petrel queue count`: the messages in the spool.
fn queue_count(instance: &Instance) -> usize {
    let counted = instance.command(&["queue", "count"]);
    assert!(counted.status.success(), "{}", counted.output);
    counted.stdout.trim().parse().unwrap()
}

fn full_disk(rt: Runtime) {
    let instance = Instance::new(&format!(
        r#"Runtime = "{}"
spoolbase = "{{dir}}/disk/spool"
Log_File = "{{dir}}/log.jsonl"
# Nothing listens on port 1: deliveries are deferred, and what was
# received stays in the spool to be looked at.
Gateway = "127.0.0.1:1"
ESMTP_Listener {{
  Relay_Hosts = ( "127.0.0.1" )
  Listen "127.0.0.1:0" {{ }}
}}
"#,
        rt.name()
    ));
    let disk = instance.path("disk");
    let _tmpfs = Tmpfs::mount(&disk, "4m");
    // Room that can be given back later.
    let ballast = disk.join("ballast");
    std::fs::write(&ballast, vec![0u8; 1024 * 1024]).unwrap();
    let message = instance.path("message.eml");
    write_message_file(&message, 256 * 1024, "the-end");
    let petrel = instance.start(&[]);
    let addr = petrel.addr();

    let mut accepted = Vec::new();
    let mut refusal = None;
    // 4 MiB hold at most 16 such messages: the disk fills within 20.
    for _ in 0..20 {
        let sent = swaks(addr, &["--data", path_str(&message)], CLIENT_TIMEOUT);
        if sent.status.success() {
            let id = sent
                .output
                .lines()
                .find_map(|line| line.split("queued as ").nth(1))
                .unwrap()
                .trim()
                .to_owned();
            accepted.push(id);
        } else {
            refusal = Some(sent.output);
            break;
        }
    }
    let refusal = refusal.expect("the disk never filled");
    assert!(refusal.contains("452 4.3.1"), "{refusal}");
    assert!(!accepted.is_empty());

    // Everything acknowledged is intact.
    let listed = instance.command(&["queue", "list"]);
    for id in &accepted {
        assert!(
            listed.stdout.contains(id.as_str()),
            "{id} lost:\n{}",
            listed.output
        );
    }
    assert_eq!(queue_count(&instance), accepted.len());

    // A message bigger than a session holds, written to the spool as it
    // arrives (spilled): refused alike, and no part of it stays.
    let big = instance.path("big.eml");
    write_message_file(&big, 3 * 1024 * 1024, "big-end");
    let sent = swaks(addr, &["--data", path_str(&big)], CLIENT_TIMEOUT);
    assert!(
        !sent.status.success() && sent.output.contains("452 4.3.1"),
        "{}",
        sent.output
    );
    // Messages that arrived whole are in packs; a spilled one would be
    // the only file here.
    let messages = disk.join("spool/msg");
    assert_eq!(common::files_under(&messages), 0, "a draft was left behind");
    assert_eq!(queue_count(&instance), accepted.len());

    // Room again: reception resumes without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let again = swaks(addr, &["--data", path_str(&message)], CLIENT_TIMEOUT);
    assert!(again.status.success(), "{}", again.output);
    petrel.stop();
    assert_eq!(queue_count(&instance), accepted.len() + 1);
    let refusals: Vec<_> = instance
        .log()
        .into_iter()
        .filter(|r| r["event"] == "refusal")
        .collect();
    assert_eq!(refusals.len(), 2, "{refusals:#?}");
    for refusal in refusals {
        assert!(refusal["reply"].as_str().unwrap().starts_with("452 4.3.1"));
    }
}

petrel_tests::per_runtime!(full_disk);
