//! The writer thread: group commit.
//!
//! Sessions hand jobs to [`Shared::submit`] and go on serving; the one
//! writer takes every job queued since its last commit, writes them all,
//! makes them durable with as few sync calls as the [`SyncMethod`] needs,
//! and only then completes their callbacks. While it syncs, the next batch
//! gathers, so the more sessions wait, the more each sync is shared.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use bytes::Bytes;

use super::format;
use super::message::{Envelope, QueueId};
use super::{StateChange, StoreError, SyncMethod};

/// Completes a job: the session's answer waits on it.
pub(crate) type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

pub(crate) enum Job {
    Store {
        id: QueueId,
        envelope: Envelope,
        body: Vec<Bytes>,
        done: Done,
    },
    Update {
        id: QueueId,
        changes: Vec<StateChange>,
        done: Done,
    },
    Remove {
        id: QueueId,
        done: Done,
    },
}

impl Job {
    fn fail(self, error: StoreError) {
        match self {
            Job::Store { done, .. } | Job::Update { done, .. } | Job::Remove { done, .. } => {
                done(Err(error))
            }
        }
    }
}

/// The queue between the sessions and the writer.
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Tests set this to make the next batch's sync fail with EIO.
    #[cfg(test)]
    pub(crate) fail_next_sync: std::sync::atomic::AtomicBool,
}

struct Queue {
    jobs: Vec<Job>,
    closed: bool,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            queue: Mutex::new(Queue {
                jobs: Vec::new(),
                closed: false,
            }),
            wake: Condvar::new(),
            #[cfg(test)]
            fail_next_sync: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Queues a job, or fails it at once if the spool is shut down.
    pub(crate) fn submit(&self, job: Job) {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if q.closed {
            drop(q);
            job.fail(StoreError::Io(Arc::new(io::Error::other(
                "the spool is shut down",
            ))));
            return;
        }
        q.jobs.push(job);
        drop(q);
        self.wake.notify_one();
    }

    /// No more jobs; the writer finishes those queued, then stops.
    pub(crate) fn close(&self) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.wake.notify_all();
    }

    /// Every job queued since the last call, waiting for one; `None` once
    /// closed and drained.
    fn next_batch(&self) -> Option<Vec<Job>> {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if !q.jobs.is_empty() {
                return Some(std::mem::take(&mut q.jobs));
            }
            if q.closed {
                return None;
            }
            q = self.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// What the writer knows of a stored message: enough to append to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Known {
    /// The end of the last valid record: where the next one goes.
    pub end: u64,
    pub recipients: usize,
}

pub(crate) struct Writer {
    pub msg_dir: PathBuf,
    /// The message directory, open for fsync and syncfs.
    pub dir: File,
    pub known: HashMap<QueueId, Known>,
    pub sync: SyncMethod,
    pub shared: Arc<Shared>,
}

/// How to take a job back when its batch failed to become durable.
enum Undo {
    Nothing,
    Unlink(QueueId),
    Truncate(QueueId, Known),
}

/// A job of the batch being committed.
struct Entry {
    done: Done,
    result: Result<(), StoreError>,
    undo: Undo,
    /// What to sync: the file written, if any.
    file: Option<File>,
    /// Whether the job created or removed a directory entry.
    dir_changed: bool,
}

impl Writer {
    pub(crate) fn run(mut self) {
        while let Some(jobs) = self.shared.next_batch() {
            self.commit(jobs);
        }
    }

    fn path(&self, id: QueueId) -> PathBuf {
        self.msg_dir.join(id.to_string())
    }

    fn commit(&mut self, jobs: Vec<Job>) {
        let mut entries: Vec<Entry> = jobs.into_iter().map(|job| self.write(job)).collect();
        self.sync(&mut entries);
        // Take back, newest first, what did not become durable, so that a
        // failed batch leaves neither partial files nor records behind.
        for e in entries.iter_mut().rev() {
            if e.result.is_err() {
                e.file = None;
                match std::mem::replace(&mut e.undo, Undo::Nothing) {
                    Undo::Nothing => {}
                    Undo::Unlink(id) => {
                        let _ = fs::remove_file(self.path(id));
                        self.known.remove(&id);
                    }
                    Undo::Truncate(id, known) => {
                        self.truncate(id, known.end);
                        // Unless a later job of the batch removed it: an
                        // unlink is not taken back.
                        if let Some(k) = self.known.get_mut(&id) {
                            *k = known;
                        }
                    }
                }
            }
        }
        for e in entries {
            // A panicking callback is a bug elsewhere; it must not take the
            // writer down with it, or every later session would wait for
            // an answer forever.
            let (done, result) = (e.done, e.result);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || done(result)));
        }
    }

    /// Writes one job's bytes (not yet durable).
    fn write(&mut self, job: Job) -> Entry {
        let sync = self.sync;
        let entry = |done, result: io::Result<(Undo, Option<File>, bool)>| match result {
            Ok((undo, file, dir_changed)) => Entry {
                done,
                result: Ok(()),
                undo,
                // syncfs needs no descriptor; closing at once keeps a
                // large batch from holding one per message.
                file: file.filter(|_| sync != SyncMethod::Filesystem),
                dir_changed,
            },
            Err(e) => Entry {
                done,
                result: Err(StoreError::from_io(e)),
                undo: Undo::Nothing,
                file: None,
                dir_changed: false,
            },
        };
        match job {
            Job::Store {
                id,
                envelope,
                body,
                done,
            } => {
                let r = self.write_message(id, &envelope, &body);
                entry(done, r.map(|f| (Undo::Unlink(id), Some(f), true)))
            }
            Job::Update { id, changes, done } => {
                let r = self.write_update(id, &changes);
                entry(
                    done,
                    r.map(|(f, old)| (Undo::Truncate(id, old), Some(f), false)),
                )
            }
            Job::Remove { id, done } => {
                let r = self.remove(id);
                // An unlink cannot be taken back: if the batch fails, the
                // removal is reported failed but stays done.
                entry(done, r.map(|()| (Undo::Nothing, None, true)))
            }
        }
    }

    fn write_message(
        &mut self,
        id: QueueId,
        envelope: &Envelope,
        body: &[Bytes],
    ) -> io::Result<File> {
        if self.known.contains_key(&id) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("message {id} is already stored"),
            ));
        }
        let body_len: u64 = body.iter().map(|b| b.len() as u64).sum();
        let head = format::encode_head(id, body_len, envelope);
        let mut crc = crc32fast::Hasher::new();
        for piece in body {
            crc.update(piece);
        }
        let seal = crc.finalize().to_le_bytes();
        let path = self.path(id);
        // create_new: an id is never reused, so an existing file is someone
        // else's and must not be overwritten (nor removed on failure).
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let mut slices = Vec::with_capacity(body.len() + 2);
        slices.push(IoSlice::new(&head));
        slices.extend(body.iter().map(|b| IoSlice::new(b)));
        slices.push(IoSlice::new(&seal));
        if let Err(e) = write_all_vectored(&mut file, &mut slices) {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        let end = head.len() as u64 + body_len + 4;
        self.known.insert(
            id,
            Known {
                end,
                recipients: envelope.recipients.len(),
            },
        );
        Ok(file)
    }

    fn write_update(&mut self, id: QueueId, changes: &[StateChange]) -> io::Result<(File, Known)> {
        let Some(&known) = self.known.get(&id) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no message {id} in the spool"),
            ));
        };
        let mut indexed = Vec::with_capacity(changes.len());
        for c in changes {
            match u32::try_from(c.recipient) {
                Ok(i) if c.recipient < known.recipients => indexed.push((i, c.state)),
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "message {id} has {} recipients, not {}",
                            known.recipients,
                            c.recipient + 1
                        ),
                    ))
                }
            }
        }
        let record = format::encode_states_record(&indexed);
        let file = OpenOptions::new().write(true).open(self.path(id))?;
        // At the known end, not O_APPEND: after a failed append left bytes
        // behind, the next record overwrites them rather than following
        // them, where a reader would never reach it.
        if let Err(e) = file.write_all_at(&record, known.end) {
            drop(file);
            self.truncate(id, known.end);
            return Err(e);
        }
        self.known.insert(
            id,
            Known {
                end: known.end + record.len() as u64,
                ..known
            },
        );
        Ok((file, known))
    }

    fn remove(&mut self, id: QueueId) -> io::Result<()> {
        if !self.known.contains_key(&id) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no message {id} in the spool"),
            ));
        }
        match fs::remove_file(self.path(id)) {
            // Already gone (removed by hand): what was asked for.
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => {
                self.known.remove(&id);
                Ok(())
            }
        }
    }

    /// Best effort: a record left past `end` is unreachable to readers (it
    /// follows nothing valid) and the next update overwrites it anyway.
    fn truncate(&self, id: QueueId, end: u64) {
        if let Ok(f) = OpenOptions::new().write(true).open(self.path(id)) {
            let _ = f.set_len(end);
        }
    }

    /// Makes every written entry durable, or marks it failed.
    fn sync(&self, entries: &mut [Entry]) {
        let written = |e: &&mut Entry| e.result.is_ok();
        if !entries.iter_mut().any(|e| written(&e)) {
            return;
        }
        #[cfg(test)]
        if self
            .shared
            .fail_next_sync
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            let eio = io::Error::from_raw_os_error(libc::EIO);
            fail_all(entries.iter_mut().filter(|e| e.result.is_ok()), eio);
            return;
        }
        match self.sync {
            SyncMethod::Filesystem => {
                // One call covers every file and directory entry of the
                // batch. Since Linux 5.8 syncfs reports writeback errors
                // of the filesystem that happened since `self.dir` was
                // opened, once each; an error fails the whole batch, since
                // it does not say which file it was.
                if let Err(e) = syncfs(&self.dir) {
                    fail_all(entries.iter_mut().filter(|e| e.result.is_ok()), e);
                }
            }
            SyncMethod::EachFile => {
                for e in entries.iter_mut() {
                    if let (Ok(()), Some(f)) = (&e.result, &e.file) {
                        if let Err(err) = f.sync_data() {
                            e.result = Err(StoreError::from_io(err));
                        }
                    }
                }
                self.sync_dir(entries);
            }
            SyncMethod::Parallel(threads) => {
                let mut pending: Vec<&mut Entry> = entries
                    .iter_mut()
                    .filter(|e| e.result.is_ok() && e.file.is_some())
                    .collect();
                let per = pending.len().div_ceil(threads.max(1)).max(1);
                std::thread::scope(|s| {
                    for chunk in pending.chunks_mut(per) {
                        s.spawn(move || {
                            for e in chunk {
                                if let Some(f) = &e.file {
                                    if let Err(err) = f.sync_data() {
                                        e.result = Err(StoreError::from_io(err));
                                    }
                                }
                            }
                        });
                    }
                });
                self.sync_dir(entries);
            }
        }
    }

    /// The directory entries created or removed by the batch: a file's
    /// fdatasync does not promise that its name survives.
    fn sync_dir(&self, entries: &mut [Entry]) {
        if entries.iter().any(|e| e.result.is_ok() && e.dir_changed) {
            if let Err(err) = self.dir.sync_all() {
                fail_all(
                    entries
                        .iter_mut()
                        .filter(|e| e.result.is_ok() && e.dir_changed),
                    err,
                );
            }
        }
    }
}

/// One error for several jobs: one sync call failed for all of them.
fn fail_all<'a>(entries: impl Iterator<Item = &'a mut Entry>, err: io::Error) {
    let error = StoreError::from_io(err);
    for e in entries {
        e.result = Err(error.clone());
    }
}

fn syncfs(dir: &File) -> io::Result<()> {
    // SAFETY: syncfs reads nothing but the descriptor, which `dir` keeps
    // open for the duration of the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `Write::write_all_vectored` is unstable; this is it.
fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
