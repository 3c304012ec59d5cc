//! Measures the spool's group commit: messages per second made durable,
//! for each way a message is stored (appended to a pack, as any message
//! that arrives whole; or spilled into a file of its own, as one over 1 MiB
//! is), message size and number of sessions. A benchmark, not a test;
//! `mta/SPOOL.md` records its numbers.
//!
//! ```text
//! cargo run -p petrel --example spool_bench -- [DIR] [SECONDS] [ROUNDS] [ONLY]
//! ```
//!
//! Every configuration runs once per round, rounds one after another, so
//! that a disturbance (another process's writes) spreads over all of them
//! rather than falling on one; the table shows each round's rate. ONLY
//! keeps the configurations whose line, spaces squeezed, contains it
//! (e.g. `pack 1K 50`).
//!
//! DIR (default `target/spool-bench`) should be on the filesystem a real
//! spool would use: the point is that filesystem's sync costs. Each
//! submitter behaves as a session does: it stores a message, waits for
//! its callback, and only then sends the next.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use petrel::spool::message::{Envelope, Recipient};
use petrel::spool::Spool;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(args.next().unwrap_or_else(|| "target/spool-bench".into()));
    let secs: u64 = args.next().map_or(Ok(3), |s| s.parse())?;
    let rounds: usize = args.next().map_or(Ok(1), |s| s.parse())?;
    let only = args.next().unwrap_or_default();
    let duration = Duration::from_secs(secs);
    std::fs::create_dir_all(&root)?;

    let methods = [("pack", false), ("own file", true)];
    let mut configs = Vec::new();
    for size in [1024, 100 * 1024] {
        for sessions in [1, 20, 50] {
            for (name, method) in methods {
                let label = format!("{name:<12} {:>6}K {sessions:>10}", size / 1024);
                let words = label.split_whitespace().collect::<Vec<_>>().join(" ");
                if words.contains(only.as_str()) {
                    configs.push((label, method, size, sessions, Vec::new()));
                }
            }
        }
    }
    let mut runs = 0;
    for _ in 0..rounds {
        for (label, method, size, sessions, rates) in &mut configs {
            runs += 1;
            let dir = root.join(format!("run-{runs}"));
            let rate = run(&dir, *method, *size, *sessions, duration)?;
            eprintln!("{label} {rate:>8.0}");
            rates.push(rate);
        }
    }
    println!(
        "{:<12} {:>7} {:>10}  messages/s, each round",
        "stored in", "size", "sessions"
    );
    for (label, _, _, _, rates) in &configs {
        let rates: Vec<String> = rates.iter().map(|r| format!("{r:>6.0}")).collect();
        println!("{label}  {}", rates.join(" "));
    }
    // Only now: on ext4 without a journal, inodes freed in the last
    // minute are scanned past at every creation, which would slow the
    // runs after a removal (of own files, and of packs too).
    for run in 1..=runs {
        std::fs::remove_dir_all(root.join(format!("run-{run}")))?;
    }
    Ok(())
}

/// One run: messages stored per second over `duration`; `spilled`: each
/// body spilled first, so that it gets a file of its own.
fn run(
    dir: &Path,
    spilled: bool,
    size: usize,
    sessions: usize,
    duration: Duration,
) -> Result<f64, Box<dyn std::error::Error>> {
    let (spool, _) = Spool::open(dir)?;
    let body = Bytes::from(vec![b'x'; size]);
    let envelope = envelope();
    let start = Instant::now();
    let deadline = start + duration;
    let stored: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..sessions)
            .map(|_| {
                let spool = spool.clone();
                let body = body.clone();
                let envelope = &envelope;
                s.spawn(move || {
                    let (tx, rx) = mpsc::channel();
                    let mut n = 0;
                    while Instant::now() < deadline {
                        let tx = tx.clone();
                        let id = spool.new_id();
                        let mut rest = vec![body.clone()];
                        if spilled {
                            spool.spill(id, envelope, std::mem::take(&mut rest), || ());
                        }
                        spool.store(id, envelope.clone(), rest, move |r| {
                            let _ = tx.send(r);
                        });
                        match rx.recv() {
                            Ok(Ok(())) => n += 1,
                            Ok(Err(e)) => return Err(e.to_string()),
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("panicked".into())))
            .sum::<Result<usize, String>>()
    })?;
    let elapsed = start.elapsed();
    spool.shutdown();
    drop(spool);
    Ok(stored as f64 / elapsed.as_secs_f64())
}

fn envelope() -> Envelope {
    Envelope {
        sender: "sender@example.org".into(),
        recipients: vec![Recipient {
            address: "rcpt@example.com".into(),
            notify: None,
            orcpt: None,
        }],
        ret: None,
        envid: None,
        received_at: SystemTime::now(),
        client: std::net::SocketAddr::from(([127, 0, 0, 1], 40000)),
        binding: "default".into(),
    }
}
