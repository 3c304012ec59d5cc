//! Structured records, one JSON object per line, written by one thread so
//! that a session never waits on the log's file.
//!
//! Records go to standard output, or to the file `Log_File` names (opened
//! for appending, created owner-only). A record sent after the log closed,
//! or one the file refuses, is reported once on standard error and
//! dropped: a full log disk must not stop mail whose spool has room.
//! [`Log::reopen`] (petrel calls it on SIGHUP) opens the file again by its
//! name, for log rotation: the records before it are in the file that was
//! renamed, those after it in the new one.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{SystemTime, UNIX_EPOCH};

/// The log: cheap to clone, shared by every session.
#[derive(Debug, Clone)]
pub struct Log {
    queue: Sender<Message>,
}

#[derive(Debug)]
enum Message {
    Record(serde_json::Value),
    /// Write what is queued, then open the file again; the sender is told
    /// how that went.
    Reopen(Sender<io::Result<()>>),
    /// Write what is queued, then stop; the sender is told when done.
    Close(Sender<()>),
}

/// Opens the log file for appending, owner-only when it is created.
fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl Log {
    /// A log writing to `path`, or to standard output when `None`.
    pub fn open(path: Option<&Path>) -> io::Result<Self> {
        let out: Box<dyn Write + Send> = match path {
            Some(path) => Box::new(open_file(path)?),
            None => Box::new(io::stdout()),
        };
        let (queue, received) = mpsc::channel();
        let path = path.map(Path::to_owned);
        std::thread::Builder::new()
            .name("petrel-log".into())
            .spawn(move || write_records(&received, BufWriter::new(out), path))?;
        Ok(Self { queue })
    }

    /// Writes what is queued, then opens the log file again by its name
    /// (nothing to do for standard output). On an error the log goes on
    /// in the file it had.
    pub fn reopen(&self) -> io::Result<()> {
        let (done, reopened) = mpsc::channel();
        self.queue
            .send(Message::Reopen(done))
            .map_err(|_| io::Error::other("the log is closed"))?;
        reopened
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the log is closed")))
    }

    /// Queues one record; the writer adds `"time"` if it is missing.
    pub fn record(&self, record: serde_json::Value) {
        // The writer is gone only after `close`: nothing is left to do.
        let _ = self.queue.send(Message::Record(record));
    }

    /// Writes what is queued and stops the writer; records sent after this
    /// (by clones still held elsewhere) are dropped.
    pub fn close(&self) {
        let (done, written) = mpsc::channel();
        if self.queue.send(Message::Close(done)).is_ok() {
            let _ = written.recv();
        }
    }
}

fn write_records(
    queue: &Receiver<Message>,
    mut out: BufWriter<Box<dyn Write + Send>>,
    path: Option<PathBuf>,
) {
    let mut failed = false;
    let mut next = queue.recv().ok();
    while let Some(message) = next.take() {
        let mut batch = Vec::new();
        let mut close = None;
        let mut reopen = None;
        let mut message = message;
        loop {
            match message {
                Message::Reopen(done) => {
                    reopen = Some(done);
                    break;
                }
                Message::Record(mut record) => {
                    if let Some(object) = record.as_object_mut() {
                        object
                            .entry("time")
                            .or_insert_with(|| rfc3339(SystemTime::now()).into());
                    }
                    batch.push(record);
                }
                Message::Close(done) => {
                    close = Some(done);
                    break;
                }
            }
            match queue.try_recv() {
                Ok(more) => message = more,
                Err(_) => break,
            }
        }
        let written = batch
            .iter()
            .try_for_each(|record| writeln!(out, "{record}"))
            .and_then(|()| out.flush());
        match written {
            Err(error) if !failed => {
                eprintln!("petrel: cannot write the log, records are dropped: {error}");
                failed = true;
            }
            Err(_) => {}
            Ok(()) => failed = false,
        }
        if let Some(done) = close {
            let _ = done.send(());
            return;
        }
        if let Some(done) = reopen {
            let reopened = match &path {
                // The batch before it is written and flushed already.
                Some(path) => open_file(path).map(|file| {
                    out = BufWriter::new(Box::new(file));
                    failed = false;
                }),
                None => Ok(()),
            };
            let _ = done.send(reopened);
        }
        next = queue.recv().ok();
    }
    let _ = out.flush();
}

/// A civil UTC date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    /// The year.
    pub year: i64,
    /// 1–12.
    pub month: u32,
    /// 1–31.
    pub day: u32,
    /// 0–23.
    pub hour: u32,
    /// 0–59.
    pub minute: u32,
    /// 0–59.
    pub second: u32,
    /// Microseconds.
    pub micros: u32,
    /// 0 is Sunday.
    pub weekday: u32,
}

impl Utc {
    /// `time` in UTC; times before 1970 are taken as 1970.
    pub fn from(time: SystemTime) -> Self {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        let rest = secs % 86_400;
        // Howard Hinnant's days-to-civil algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let small = |v: i64| u32::try_from(v).unwrap_or(0);
        let small_u = |v: u64| u32::try_from(v).unwrap_or(0);
        Self {
            year,
            month: small(month),
            day: small(day),
            hour: small_u(rest / 3600),
            minute: small_u(rest % 3600 / 60),
            second: small_u(rest % 60),
            micros: since.subsec_micros(),
            // 1970-01-01 was a Thursday.
            weekday: small((days + 4).rem_euclid(7)),
        }
    }
}

/// `2026-12-01T17:21:14.123456Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let t = Utc::from(time);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.micros
    )
}

/// `Tue, 01 Dec 2026 17:21:14 +0000`: the date of RFC 5322 §3.3, as a
/// `Received:` header ends with.
pub fn rfc5322(time: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = Utc::from(time);
    let weekday = DAYS.get(t.weekday as usize).copied().unwrap_or("Sun");
    let month = MONTHS
        .get((t.month as usize).wrapping_sub(1))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{weekday}, {:02} {month} {:04} {:02}:{:02}:{:02} +0000",
        t.day, t.year, t.hour, t.minute, t.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_145_674) + Duration::from_micros(5);
        assert_eq!(rfc3339(t), "2026-12-01T17:21:14.000005Z");
        assert_eq!(rfc5322(t), "Tue, 01 Dec 2026 17:21:14 +0000");
        // A leap day and the turn of a century.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc5322(leap), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn reopen_follows_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let rotated = dir.path().join("log.jsonl.1");
        let log = Log::open(Some(&path)).unwrap();
        log.record(serde_json::json!({ "n": 1 }));
        std::fs::rename(&path, &rotated).unwrap();
        log.record(serde_json::json!({ "n": 2 }));
        log.reopen().unwrap();
        log.record(serde_json::json!({ "n": 3 }));
        log.close();
        let numbers = |p: &Path| -> Vec<u64> {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                        .as_u64()
                        .unwrap()
                })
                .collect()
        };
        assert_eq!(numbers(&rotated), [1, 2]);
        assert_eq!(numbers(&path), [3]);
        // Standard output has nothing to reopen.
        Log::open(None).unwrap().reopen().unwrap();
    }

    #[test]
    fn records_reach_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let log = Log::open(Some(&path)).unwrap();
        for n in 0..100 {
            log.record(serde_json::json!({ "n": n }));
        }
        log.close();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 100);
        for (n, line) in lines.iter().enumerate() {
            assert_eq!(line["n"], n);
            assert!(line["time"].as_str().unwrap().ends_with('Z'));
        }
    }
}
