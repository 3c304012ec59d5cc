//! The writer and the syncer: group commit, pipelined.
//!
//! Sessions hand jobs to [`Shared::submit`] and go on serving. Two threads
//! commit them:
//!
//! - the **writer** (`petrel-spool`) takes every job queued, creates and
//!   writes the files (or appends the records, or unlinks), and gathers
//!   what it wrote into a *group*;
//! - the **syncer** (`petrel-spool-sync`) makes one group at a time durable
//!   (one `syncfs` by default, see [`SyncMethod`]), takes a failed group
//!   back, and only then completes the group's callbacks.
//!
//! While the syncer syncs group N, the writer writes group N+1, so a
//! commit costs max(writing, syncing) instead of their sum (creating a file
//! costs up to a millisecond on ext4 without a journal, a sync 2–30 ms).
//! The writer hands its group over the moment the syncer is free, so each
//! sync covers everything written meanwhile: the slower the sync, the more
//! it is shared.
//!
//! The rules that keep this correct, each stated again where it is applied:
//!
//! 1. **Acknowledged only after its own sync.** A job's callback says
//!    "stored" only after a sync that *began* after the job's data and
//!    directory entry were written has returned success: a group goes to
//!    the syncer only once all its jobs are written, and its callbacks are
//!    completed by the syncer after that group's own sync, never after an
//!    earlier one.
//! 2. **No writeback error lost.** Each group has its own descriptor of the
//!    message directory, opened before the group's first write, and is
//!    synced through it. Since Linux 5.8 `syncfs` reports every writeback
//!    error of the filesystem recorded since *that open file description*
//!    was opened or last synced (`errseq_check_and_advance(&sb->s_wb_err,
//!    &file->f_sb_err)`, `f_sb_err` sampled at open; an error nobody has
//!    seen yet is reported even to a descriptor opened after it). An error
//!    while groups N and N+1 overlap is therefore reported to both and
//!    fails both — conservative — and never neither; an error reported to
//!    an earlier group before N+1's descriptor was opened cannot concern
//!    N+1's data, which was not written yet.
//! 3. **Jobs on one message stay in order, and `known` stays right.** The
//!    writer does not write a job for a message that the group at the
//!    syncer touches until that group is done and, if it failed, taken
//!    back (unlinked, truncated) and `known` corrected. One group at most
//!    is at the syncer. (The queue learns of a message only from its store
//!    callback, so an update cannot follow a store in flight; two updates
//!    of one message can, and so can a removal after an update.)

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex, PoisonError};

use bytes::Bytes;

use super::format;
use super::message::{Envelope, QueueId};
use super::{StateChange, StoreError, SyncMethod};

/// Completes a job: the session's answer waits on it.
pub(crate) type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Tests: called as each sync begins; an error returned fails the group
/// without syncing it.
#[cfg(test)]
pub(crate) type SyncHook = Box<dyn FnMut() -> Option<io::Error> + Send>;

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
    fn id(&self) -> QueueId {
        match self {
            Job::Store { id, .. } | Job::Update { id, .. } | Job::Remove { id, .. } => *id,
        }
    }

    fn fail(self, error: StoreError) {
        match self {
            Job::Store { done, .. } | Job::Update { done, .. } | Job::Remove { done, .. } => {
                done(Err(error))
            }
        }
    }
}

/// What the sessions, the writer and the syncer share.
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer: a job queued, the syncer done, the spool closed.
    wake: Condvar,
    /// Tests set this to make the next sync fail with EIO.
    #[cfg(test)]
    pub(crate) fail_next_sync: std::sync::atomic::AtomicBool,
    #[cfg(test)]
    pub(crate) sync_hook: Mutex<Option<SyncHook>>,
}

struct Queue {
    jobs: Vec<Job>,
    closed: bool,
    /// The syncer's report on the group it was handed last, once that
    /// group's callbacks are decided: what was taken back, for `known`.
    synced: Option<Vec<Undo>>,
}

/// What woke the writer.
struct Wake {
    jobs: Vec<Job>,
    synced: Option<Vec<Undo>>,
    closed: bool,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            queue: Mutex::new(Queue {
                jobs: Vec::new(),
                closed: false,
                synced: None,
            }),
            wake: Condvar::new(),
            #[cfg(test)]
            fail_next_sync: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            sync_hook: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a job, or fails it at once if the spool is shut down.
    pub(crate) fn submit(&self, job: Job) {
        let mut q = self.lock();
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
        self.lock().closed = true;
        self.wake.notify_all();
    }

    /// Waits for jobs, for the syncer to finish (if `syncing`), or for the
    /// close, and takes what there is.
    fn wait(&self, syncing: bool) -> Wake {
        let mut q = self.lock();
        // Closed, the writer still waits for the syncer's last group.
        let done = |q: &Queue| q.closed && !syncing;
        while q.jobs.is_empty() && q.synced.is_none() && !done(&q) {
            q = self.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
        Wake {
            jobs: std::mem::take(&mut q.jobs),
            synced: q.synced.take(),
            closed: q.closed,
        }
    }

    /// Waits for the syncer to finish the group it has.
    fn wait_synced(&self) -> Vec<Undo> {
        let mut q = self.lock();
        loop {
            if let Some(undos) = q.synced.take() {
                return undos;
            }
            q = self.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The syncer: the group it was handed is durable or taken back.
    fn synced(&self, undos: Vec<Undo>) {
        let mut q = self.lock();
        // One group at a time, so nothing is there yet; were something
        // there, keeping both keeps `known` right.
        match &mut q.synced {
            Some(earlier) => earlier.extend(undos),
            None => q.synced = Some(undos),
        }
        drop(q);
        self.wake.notify_one();
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

/// Creates and writes the files, one group after another.
pub(crate) struct Writer {
    pub msg_dir: PathBuf,
    /// Only the writer reads and changes it: the syncer's take-backs
    /// reach it as [`Undo`]s (rule 3).
    pub known: HashMap<QueueId, Known>,
    pub sync: SyncMethod,
    pub shared: Arc<Shared>,
    pub syncer: mpsc::Sender<Group>,
}

/// Makes groups durable, one at a time, and completes their callbacks.
pub(crate) struct Syncer {
    pub msg_dir: PathBuf,
    pub sync: SyncMethod,
    pub shared: Arc<Shared>,
    pub groups: mpsc::Receiver<Group>,
}

/// Jobs written, to be made durable by one sync.
pub(crate) struct Group {
    /// The message directory, opened before the group's first write: its
    /// `syncfs` reports every writeback error since then (rule 2). Also
    /// what `EachFile` and `Parallel` fsync for the directory entries.
    dir: File,
    entries: Vec<Entry>,
}

/// How to take a job back when its group failed to become durable. Done
/// to the files by the syncer, then to `known` by the writer.
enum Undo {
    Nothing,
    Unlink(QueueId),
    Truncate(QueueId, Known),
}

/// A job of a group.
struct Entry {
    done: Done,
    result: Result<(), StoreError>,
    undo: Undo,
    /// What to sync: the file written, if any.
    file: Option<File>,
    /// Whether the job created or removed a directory entry.
    dir_changed: bool,
}

/// Where the writer's groups are.
#[derive(Default)]
struct Pipeline {
    /// Being written.
    writing: Option<(Group, HashSet<QueueId>)>,
    /// The messages the group at the syncer touches, while it has one.
    at_syncer: Option<HashSet<QueueId>>,
}

impl Writer {
    pub(crate) fn run(mut self) {
        let mut p = Pipeline::default();
        loop {
            let wake = self.shared.wait(p.at_syncer.is_some());
            if let Some(undos) = wake.synced {
                self.synced(undos, &mut p);
            }
            // The syncer is free: hand it what is written, before writing
            // more, so that it syncs again at once.
            self.hand_over_if_free(&mut p);
            if wake.jobs.is_empty() {
                // Nothing at the syncer means nothing is left written
                // either (just handed over): a closed, drained queue is
                // the end.
                if wake.closed && p.at_syncer.is_none() && p.writing.is_none() {
                    return;
                }
                continue;
            }
            // Every job taken, then the group to the syncer if it is free
            // (else it goes on growing while the syncer works). Handing it
            // over after each job instead kept the syncer busier with
            // smaller groups: 3.5 times as many syncfs calls, each slower,
            // for no more messages per second (BENCH.md).
            for job in wake.jobs {
                self.write_job(job, &mut p);
            }
            self.hand_over_if_free(&mut p);
        }
    }

    fn path(&self, id: QueueId) -> PathBuf {
        self.msg_dir.join(id.to_string())
    }

    /// Writes one job into the group being written.
    fn write_job(&mut self, job: Job, p: &mut Pipeline) {
        let id = job.id();
        // Rule 3: a job on a message of the group at the syncer waits for
        // that group's outcome. Were it written now, the take-back of a
        // failed group would cut off its record (or unlink its message)
        // after it was synced and acknowledged, and `known` would point
        // past the end of the file.
        if p.at_syncer.as_ref().is_some_and(|ids| ids.contains(&id)) {
            let undos = self.shared.wait_synced();
            self.synced(undos, p);
        }
        let (group, ids) = match &mut p.writing {
            Some(writing) => writing,
            // Rule 2: the group's descriptor is opened before its first
            // write, so its sync reports any writeback error after it.
            None => match File::open(&self.msg_dir) {
                Ok(dir) => p.writing.insert((
                    Group {
                        dir,
                        entries: Vec::new(),
                    },
                    HashSet::new(),
                )),
                Err(e) => return job.fail(StoreError::from_io(e)),
            },
        };
        ids.insert(id);
        let entry = self.write(job);
        group.entries.push(entry);
    }

    /// Hands the group written to the syncer, if it is free.
    fn hand_over_if_free(&mut self, p: &mut Pipeline) {
        if p.at_syncer.is_some() {
            return;
        }
        let Some((group, ids)) = p.writing.take() else {
            return;
        };
        match self.syncer.send(group) {
            Ok(()) => p.at_syncer = Some(ids),
            // The syncer stops only after the writer; should it be gone,
            // nothing written may be acknowledged (rule 1): fail the group
            // and take it back here.
            Err(mpsc::SendError(mut group)) => {
                fail_all(
                    group.entries.iter_mut().filter(|e| e.result.is_ok()),
                    io::Error::other("the spool's sync thread is gone"),
                );
                let undos = take_back(&self.msg_dir, &mut group.entries);
                self.apply(undos);
                complete(group.entries);
            }
        }
    }

    /// The group at the syncer is done with.
    fn synced(&mut self, undos: Vec<Undo>, p: &mut Pipeline) {
        self.apply(undos);
        p.at_syncer = None;
    }

    /// `known` as the take-backs left the files, newest first (as done).
    fn apply(&mut self, undos: Vec<Undo>) {
        for undo in undos {
            match undo {
                Undo::Nothing => {}
                Undo::Unlink(id) => {
                    self.known.remove(&id);
                }
                Undo::Truncate(id, known) => {
                    // Unless a later job of the group removed it: an
                    // unlink is not taken back.
                    if let Some(k) = self.known.get_mut(&id) {
                        *k = known;
                    }
                }
            }
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
                // large group from holding one per message.
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
                // An unlink cannot be taken back: if the group fails, the
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
            truncate(&self.path(id), known.end);
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
}

impl Syncer {
    pub(crate) fn run(self) {
        // Ends once the writer has stopped (and dropped its sender).
        for mut group in self.groups.iter() {
            self.sync(&mut group);
            let undos = take_back(&self.msg_dir, &mut group.entries);
            drop(group.dir);
            // The writer first, then the callbacks: it can hand over its
            // next group, and write jobs on these messages, at once.
            self.shared.synced(undos);
            // Rule 1: only now, after this group's own sync.
            complete(group.entries);
        }
    }

    /// Makes every written entry of the group durable, or marks it failed.
    fn sync(&self, group: &mut Group) {
        let entries = &mut group.entries[..];
        if !entries.iter().any(|e| e.result.is_ok()) {
            return;
        }
        #[cfg(test)]
        {
            let forced = if self
                .shared
                .fail_next_sync
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                Some(io::Error::from_raw_os_error(libc::EIO))
            } else {
                self.shared
                    .sync_hook
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_mut()
                    .and_then(|hook| hook())
            };
            if let Some(e) = forced {
                fail_all(entries.iter_mut().filter(|e| e.result.is_ok()), e);
                return;
            }
        }
        match self.sync {
            SyncMethod::Filesystem => {
                // One call covers every file and directory entry of the
                // group (and whatever of the next group is written by
                // then). Through the group's own descriptor: it reports
                // every writeback error since the group's first write
                // (rule 2). An error fails the whole group, since it does
                // not say which file it was.
                if let Err(e) = syncfs(&group.dir) {
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
                sync_dir(&group.dir, entries);
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
                sync_dir(&group.dir, entries);
            }
        }
    }
}

/// The directory entries created or removed by the group: a file's
/// fdatasync does not promise that its name survives. Through the group's
/// descriptor, opened before its first write, as for syncfs.
fn sync_dir(dir: &File, entries: &mut [Entry]) {
    if entries.iter().any(|e| e.result.is_ok() && e.dir_changed) {
        if let Err(err) = dir.sync_all() {
            fail_all(
                entries
                    .iter_mut()
                    .filter(|e| e.result.is_ok() && e.dir_changed),
                err,
            );
        }
    }
}

/// Takes back, newest first, what did not become durable, so that a failed
/// group leaves neither partial files nor records behind; returns what was
/// done, for the writer's `known`.
fn take_back(msg_dir: &Path, entries: &mut [Entry]) -> Vec<Undo> {
    let mut undos = Vec::new();
    for e in entries.iter_mut().rev() {
        if e.result.is_err() {
            e.file = None;
            let undo = std::mem::replace(&mut e.undo, Undo::Nothing);
            match &undo {
                Undo::Nothing => continue,
                Undo::Unlink(id) => {
                    let _ = fs::remove_file(msg_dir.join(id.to_string()));
                }
                Undo::Truncate(id, known) => truncate(&msg_dir.join(id.to_string()), known.end),
            }
            undos.push(undo);
        }
    }
    undos
}

/// Completes the callbacks.
fn complete(entries: Vec<Entry>) {
    for e in entries {
        // A panicking callback is a bug elsewhere; it must not take the
        // syncer down with it, or every later session would wait for an
        // answer forever.
        let (done, result) = (e.done, e.result);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || done(result)));
    }
}

/// Best effort: a record left past `end` is unreachable to readers (it
/// follows nothing valid) and the next update overwrites it anyway.
fn truncate(path: &Path, end: u64) {
    if let Ok(f) = OpenOptions::new().write(true).open(path) {
        let _ = f.set_len(end);
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
