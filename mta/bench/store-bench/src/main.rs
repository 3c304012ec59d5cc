//! Option (d) of the spool's measurements (SPOOL.md): an embedded store,
//! one write transaction (redb) or one batch plus journal fdatasync
//! (fjall) per group commit, under the same session model as petrel's
//! `spool_bench` (each session stores one message, waits, repeats).
//! A measuring program only: it unwraps, since any error ends the run.
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

type Job = (u64, Vec<u8>, mpsc::Sender<()>);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let root = std::path::PathBuf::from(&args[1]);
    let secs: u64 = args[2].parse().unwrap();
    let rounds: usize = args[3].parse().unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let mut runs = 0;
    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
    for round in 0..rounds {
        let mut i = 0;
        for size in [1024usize, 100 * 1024] {
            for sessions in [1usize, 20, 50] {
                for engine in ["redb", "fjall"] {
                    runs += 1;
                    let dir = root.join(format!("run-{runs}"));
                    let rate = run(engine, &dir, size, sessions, Duration::from_secs(secs));
                    let label = format!("{engine:<12} {:>6}K {sessions:>10}", size / 1024);
                    eprintln!("{label} {rate:.0}");
                    if round == 0 {
                        rows.push((label, vec![]));
                    }
                    rows[i].1.push(rate);
                    i += 1;
                }
            }
        }
    }
    for (label, rates) in rows {
        let r: Vec<String> = rates.iter().map(|r| format!("{r:>6.0}")).collect();
        println!("{label}  {}", r.join(" "));
    }
    for r in 1..=runs {
        let _ = std::fs::remove_dir_all(root.join(format!("run-{r}")));
    }
}

fn run(engine: &str, dir: &std::path::Path, size: usize, sessions: usize, d: Duration) -> f64 {
    std::fs::create_dir_all(dir).unwrap();
    let mut commit: Box<dyn FnMut(&[Job]) + Send> = match engine {
        "redb" => {
            let db = redb::Database::create(dir.join("db.redb")).unwrap();
            const T: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("msg");
            Box::new(move |batch: &[Job]| {
                let txn = db.begin_write().unwrap();
                {
                    let mut t = txn.open_table(T).unwrap();
                    for (k, v, _) in batch {
                        t.insert(*k, v.as_slice()).unwrap();
                    }
                }
                txn.commit().unwrap();
            })
        }
        _ => {
            let db = fjall::Database::builder(dir).open().unwrap();
            let ks = db
                .keyspace("msg", fjall::KeyspaceCreateOptions::default)
                .unwrap();
            Box::new(move |batch: &[Job]| {
                let mut b = db.batch();
                for (k, v, _) in batch {
                    b.insert(&ks, k.to_be_bytes(), v.as_slice());
                }
                b.commit().unwrap();
                db.persist(fjall::PersistMode::SyncData).unwrap();
            })
        }
    };
    let q: Arc<(Mutex<(Vec<Job>, bool)>, Condvar)> =
        Arc::new((Mutex::new((vec![], false)), Condvar::new()));
    let wq = q.clone();
    let writer = std::thread::spawn(move || loop {
        let batch = {
            let mut g = wq.0.lock().unwrap();
            while g.0.is_empty() && !g.1 {
                g = wq.1.wait(g).unwrap();
            }
            if g.0.is_empty() {
                return;
            }
            std::mem::take(&mut g.0)
        };
        commit(&batch);
        for (_, _, tx) in batch {
            let _ = tx.send(());
        }
    });
    let start = Instant::now();
    let deadline = start + d;
    let next = std::sync::atomic::AtomicU64::new(1);
    let body = vec![b'x'; size + 200];
    let n: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..sessions)
            .map(|_| {
                s.spawn(|| {
                    let (tx, rx) = mpsc::channel();
                    let mut n = 0;
                    while Instant::now() < deadline {
                        let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        {
                            let mut g = q.0.lock().unwrap();
                            g.0.push((id, body.clone(), tx.clone()));
                        }
                        q.1.notify_one();
                        rx.recv().unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let rate = n as f64 / start.elapsed().as_secs_f64();
    {
        q.0.lock().unwrap().1 = true;
    }
    q.1.notify_all();
    writer.join().unwrap();
    rate
}
