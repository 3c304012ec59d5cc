//! The writer and the syncer: group commit, pipelined.
//!
//! Sessions hand jobs to [`Shared::submit`] and go on serving. Two threads
//! commit them:
//!
//! - the **writer** (`petrel-spool`) takes every job queued, creates and
//!   writes the files (or appends the records, or unlinks), and gathers
//!   what it wrote into a *group*. New files it creates from several
//!   threads at once, each in its own subdirectories of `msg/` (creating
//!   a file locks its directory: one thread per directory does not wait
//!   on another's lock);
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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex, PoisonError};

use bytes::Bytes;

use super::format;
use super::message::{Envelope, QueueId};
use super::{message_path, shard_name, shard_of, StateChange, StoreError, SyncMethod};

/// Completes a job: the session's answer waits on it.
pub(crate) type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Tests: called as each sync begins; an error returned fails the group
/// without syncing it.
#[cfg(test)]
pub(crate) type SyncHook = Box<dyn FnMut() -> Option<io::Error> + Send>;

pub(crate) enum Job {
    Store(Store),
    /// Part of a large message's body, written ahead of its store: see
    /// [`Draft`]. No callback: an error is kept for the store to report.
    Spill {
        id: QueueId,
        head_len: u64,
        body: Vec<Bytes>,
    },
    /// The body spilled for a message that will not be stored: removed.
    Discard(QueueId),
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

/// A new message to store.
pub(crate) struct Store {
    pub id: QueueId,
    pub envelope: Envelope,
    pub body: Vec<Bytes>,
    pub done: Done,
}

impl Job {
    fn id(&self) -> QueueId {
        match self {
            Job::Store(Store { id, .. })
            | Job::Update { id, .. }
            | Job::Remove { id, .. }
            | Job::Spill { id, .. }
            | Job::Discard(id) => *id,
        }
    }

    fn fail(self, error: StoreError) {
        match self {
            Job::Store(Store { done, .. })
            | Job::Update { done, .. }
            | Job::Remove { done, .. } => done(Err(error)),
            Job::Spill { .. } | Job::Discard(_) => {}
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

/// A large message's file while its body arrives (`Spool::spill`): the
/// body is written as it comes, after room left for the head, which its
/// store writes last, with the seal. Until then the head's room is a hole
/// that reads as zeros, so a draft left by a crash is no message and
/// recovery removes it. Nothing of it is synced before its store, whose
/// group makes it durable like any other.
pub(crate) struct Draft {
    file: File,
    /// Octets left for the head at the start of the file.
    head_len: u64,
    /// Body octets written after them.
    body_len: u64,
    crc: crc32fast::Hasher,
}

/// Creates and writes the files, one group after another.
pub(crate) struct Writer {
    pub msg_dir: PathBuf,
    /// Only the writer reads and changes it: the syncer's take-backs
    /// reach it as [`Undo`]s (rule 3).
    pub known: HashMap<QueueId, Known>,
    /// Bodies being spilled; an error once one failed (its file removed),
    /// for its store to report.
    pub drafts: HashMap<QueueId, Result<Draft, io::Error>>,
    pub sync: SyncMethod,
    /// Threads creating new files at once (at least 1).
    pub creators: usize,
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
    /// `syncfs` reports every writeback error since then (rule 2).
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
    /// Some of the file was written before the group's descriptor was
    /// opened (a spilled body): the file's own descriptor, open since
    /// before those writes, must report their writeback errors too, since
    /// the group's may have missed one another group saw first (rule 2).
    written_early: bool,
    /// The subdirectory (see `message_path`) in which the job created or
    /// removed an entry, if it did.
    dir_changed: Option<u64>,
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
            self.write_jobs(wake.jobs, &mut p);
            self.hand_over_if_free(&mut p);
        }
    }

    fn path(&self, id: QueueId) -> PathBuf {
        message_path(&self.msg_dir, id)
    }

    /// Writes jobs in the order given; each run of stores at once, from
    /// several threads (see [`create_all`]).
    fn write_jobs(&mut self, jobs: Vec<Job>, p: &mut Pipeline) {
        let mut stores = Vec::new();
        for job in jobs {
            match job {
                Job::Store(store) => stores.push(store),
                // Neither is in a group: a draft is nobody's to sync until
                // its store, which always comes after its spills.
                Job::Spill { id, head_len, body } => self.spill(id, head_len, &body),
                Job::Discard(id) => self.discard(id),
                job => {
                    self.write_stores(std::mem::take(&mut stores), p);
                    self.write_job(job, p);
                }
            }
        }
        self.write_stores(stores, p);
    }

    /// Rule 3: a job on a message of the group at the syncer waits for
    /// that group's outcome. Were it written now, the take-back of a
    /// failed group would cut off its record (or unlink its message) after
    /// it was synced and acknowledged, and `known` would point past the
    /// end of the file.
    fn wait_if_at_syncer(&mut self, mut ids: impl Iterator<Item = QueueId>, p: &mut Pipeline) {
        if p.at_syncer
            .as_ref()
            .is_some_and(|at_syncer| ids.any(|id| at_syncer.contains(&id)))
        {
            let undos = self.shared.wait_synced();
            self.synced(undos, p);
        }
    }

    /// Writes one update or removal into the group being written.
    fn write_job(&mut self, job: Job, p: &mut Pipeline) {
        let id = job.id();
        self.wait_if_at_syncer(std::iter::once(id), p);
        let (group, ids) = match writing_group(&self.msg_dir, p) {
            Ok(writing) => writing,
            Err(e) => return job.fail(e),
        };
        ids.insert(id);
        let entry = self.write(job);
        group.entries.push(entry);
    }

    /// Creates and writes new messages' files into the group being
    /// written.
    fn write_stores(&mut self, stores: Vec<Store>, p: &mut Pipeline) {
        if stores.is_empty() {
            return;
        }
        // Only an id stored twice can be at the syncer; it fails below.
        self.wait_if_at_syncer(stores.iter().map(|s| s.id), p);
        let (group, ids) = match writing_group(&self.msg_dir, p) {
            Ok(writing) => writing,
            Err(e) => {
                for store in stores {
                    (store.done)(Err(e.clone()));
                }
                return;
            }
        };
        // An id is never reused: one already stored (or twice in this run)
        // is refused before anything is created.
        let mut fresh = Vec::with_capacity(stores.len());
        for store in stores {
            if self.drafts.contains_key(&store.id) {
                ids.insert(store.id);
                let entry = self.finish_draft(store);
                group.entries.push(entry);
            } else if self.known.contains_key(&store.id)
                || fresh.iter().any(|f: &Store| f.id == store.id)
            {
                let error = io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("message {} is already stored", store.id),
                );
                group.entries.push(failed(store.done, error));
            } else {
                fresh.push(store);
            }
        }
        let created = create_all(&self.msg_dir, &fresh, self.creators);
        for (store, result) in fresh.into_iter().zip(created) {
            ids.insert(store.id);
            let entry = match result {
                Ok((file, end)) => {
                    let file = self.keep_for_sync(file);
                    self.stored(store, end, file, false)
                }
                Err(e) => failed(store.done, e),
            };
            group.entries.push(entry);
        }
    }

    /// A new message's file is written: `known` learns where its records
    /// go, and its entry waits for the group's sync.
    fn stored(&mut self, store: Store, end: u64, file: Option<File>, written_early: bool) -> Entry {
        let recipients = store.envelope.recipients.len();
        self.known.insert(store.id, Known { end, recipients });
        Entry {
            done: store.done,
            result: Ok(()),
            undo: Undo::Unlink(store.id),
            file,
            dir_changed: Some(shard_of(store.id)),
            written_early,
        }
    }

    /// Writes part of a large message's body into its draft, made at the
    /// first part. A failure removes the draft's file and is kept for the
    /// store; later parts are dropped.
    fn spill(&mut self, id: QueueId, head_len: u64, body: &[Bytes]) {
        let path = self.path(id);
        let draft = match self.drafts.remove(&id) {
            Some(draft) => draft,
            None if self.known.contains_key(&id) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("message {id} is already stored"),
            )),
            None => new_draft(&path, head_len),
        };
        let draft = draft.and_then(|mut d| match d.append(body) {
            Ok(()) => Ok(d),
            Err(e) => {
                drop(d);
                let _ = fs::remove_file(&path);
                Err(e)
            }
        });
        self.drafts.insert(id, draft);
    }

    fn discard(&mut self, id: QueueId) {
        if let Some(Ok(draft)) = self.drafts.remove(&id) {
            drop(draft);
            let _ = fs::remove_file(self.path(id));
        }
    }

    /// Completes a spilled message: the rest of its body, the seal, then
    /// the head over the room left for it.
    fn finish_draft(&mut self, store: Store) -> Entry {
        let path = self.path(store.id);
        let mut draft = match self.drafts.remove(&store.id) {
            Some(Ok(draft)) => draft,
            Some(Err(e)) => return failed(store.done, e),
            None => return failed(store.done, io::Error::other("no draft")),
        };
        match draft.finish(store.id, &store.envelope, &store.body) {
            Ok(end) => self.stored(store, end, Some(draft.file), true),
            Err(e) => {
                drop(draft);
                let _ = fs::remove_file(&path);
                failed(store.done, e)
            }
        }
    }

    /// syncfs needs no descriptor; closing at once keeps a large group
    /// from holding one per message.
    fn keep_for_sync(&self, file: File) -> Option<File> {
        (self.sync != SyncMethod::Filesystem).then_some(file)
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

    /// Writes one update's or removal's bytes (not yet durable).
    fn write(&mut self, job: Job) -> Entry {
        let (done, result) = match job {
            // Written by `write_stores`.
            Job::Store(store) => (store.done, Err(io::Error::other("not an update"))),
            // Done by `write_jobs`, in no group.
            Job::Spill { .. } | Job::Discard(_) => {
                return failed(Box::new(|_| {}), io::Error::other("not an update"))
            }
            Job::Update { id, changes, done } => {
                let r = self.write_update(id, &changes);
                (
                    done,
                    r.map(|(f, old)| (Undo::Truncate(id, old), Some(f), None)),
                )
            }
            Job::Remove { id, done } => {
                let r = self.remove(id);
                // An unlink cannot be taken back: if the group fails, the
                // removal is reported failed but stays done.
                (done, r.map(|()| (Undo::Nothing, None, Some(shard_of(id)))))
            }
        };
        match result {
            Ok((undo, file, dir_changed)) => Entry {
                done,
                result: Ok(()),
                undo,
                file: file.and_then(|f| self.keep_for_sync(f)),
                dir_changed,
                written_early: false,
            },
            Err(e) => failed(done, e),
        }
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
                Ok(i) if c.recipient < known.recipients => indexed.push((i, c.state, c.attempts)),
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
                // Nothing is left to write back: this only reports.
                for e in entries.iter_mut().filter(|e| e.written_early) {
                    if let (Ok(()), Some(f)) = (&e.result, &e.file) {
                        if let Err(err) = f.sync_data() {
                            e.result = Err(StoreError::from_io(err));
                        }
                    }
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
                sync_dirs(&self.msg_dir, entries);
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
                sync_dirs(&self.msg_dir, entries);
            }
        }
    }
}

/// The directory entries created or removed by the group: a file's
/// fdatasync does not promise that its name survives. Each subdirectory
/// changed is opened now: an fsync reports a writeback error of the
/// directory that nobody has seen yet even through a descriptor opened
/// after it.
fn sync_dirs(msg_dir: &Path, entries: &mut [Entry]) {
    let changed: BTreeSet<u64> = entries
        .iter()
        .filter(|e| e.result.is_ok())
        .filter_map(|e| e.dir_changed)
        .collect();
    for shard in changed {
        let dir = msg_dir.join(shard_name(shard));
        if let Err(err) = File::open(dir).and_then(|d| d.sync_all()) {
            fail_all(
                entries
                    .iter_mut()
                    .filter(|e| e.result.is_ok() && e.dir_changed == Some(shard)),
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
                    let _ = fs::remove_file(message_path(msg_dir, *id));
                }
                Undo::Truncate(id, known) => truncate(&message_path(msg_dir, *id), known.end),
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

/// A job that failed before anything of it was written.
fn failed(done: Done, error: io::Error) -> Entry {
    Entry {
        done,
        result: Err(StoreError::from_io(error)),
        undo: Undo::Nothing,
        file: None,
        dir_changed: None,
        written_early: false,
    }
}

/// A new draft's file; `create_new`, as for any message file.
fn new_draft(path: &Path, head_len: u64) -> io::Result<Draft> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    Ok(Draft {
        file,
        head_len,
        body_len: 0,
        crc: crc32fast::Hasher::new(),
    })
}

impl Draft {
    fn append(&mut self, body: &[Bytes]) -> io::Result<()> {
        for piece in body {
            self.file
                .write_all_at(piece, self.head_len + self.body_len)?;
            self.crc.update(piece);
            self.body_len += piece.len() as u64;
        }
        Ok(())
    }

    /// Writes the rest of the body, the seal and the head; returns where
    /// the records will start.
    fn finish(&mut self, id: QueueId, envelope: &Envelope, rest: &[Bytes]) -> io::Result<u64> {
        self.append(rest)?;
        let head = format::encode_head(id, self.body_len, envelope);
        // The listener spills with the envelope it stores (the arrival
        // time fixed when the body began), so the lengths agree; were
        // they not to, the head would overwrite the body.
        if head.len() as u64 != self.head_len {
            return Err(io::Error::other(
                "the envelope changed while the body was spilled",
            ));
        }
        let seal_at = self.head_len + self.body_len;
        self.file
            .write_all_at(&self.crc.clone().finalize().to_le_bytes(), seal_at)?;
        self.file.write_all_at(&head, 0)?;
        Ok(seal_at + 4)
    }
}

/// The group being written, opened if need be. Rule 2: the group's
/// descriptor is opened before its first write, so its sync reports any
/// writeback error after it.
fn writing_group<'p>(
    msg_dir: &Path,
    p: &'p mut Pipeline,
) -> Result<&'p mut (Group, HashSet<QueueId>), StoreError> {
    let writing = match p.writing.take() {
        Some(writing) => writing,
        None => {
            let dir = File::open(msg_dir).map_err(StoreError::from_io)?;
            let entries = Vec::new();
            (Group { dir, entries }, HashSet::new())
        }
    };
    Ok(p.writing.insert(writing))
}

/// A new message's file, created and written (not yet durable), and where
/// its records will start, for each of `stores` in order; written from up
/// to `threads` threads, each taking the subdirectories `shard % threads`,
/// so that no two threads create files in one directory at once (they
/// would only queue on its lock).
fn create_all(msg_dir: &Path, stores: &[Store], threads: usize) -> Vec<io::Result<(File, u64)>> {
    /// What a creating thread needs of a store (its callback stays here).
    type ToCreate<'a> = (usize, QueueId, &'a Envelope, &'a [Bytes]);
    let threads = threads.max(1);
    let mut parts: Vec<Vec<ToCreate>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, s) in stores.iter().enumerate() {
        let part = usize::try_from(shard_of(s.id)).unwrap_or(0) % threads;
        if let Some(part) = parts.get_mut(part) {
            part.push((i, s.id, &s.envelope, &s.body));
        }
    }
    parts.retain(|part| !part.is_empty());
    let create = |part: &[ToCreate]| -> Vec<(usize, io::Result<(File, u64)>)> {
        part.iter()
            .map(|&(i, id, envelope, body)| (i, create_message(msg_dir, id, envelope, body)))
            .collect()
    };
    let mut created = match parts.split_first() {
        None => Vec::new(),
        Some((first, [])) => create(first),
        Some((first, rest)) => std::thread::scope(|scope| {
            let helpers: Vec<_> = rest
                .iter()
                .map(|part| {
                    let spawned = std::thread::Builder::new()
                        .name("petrel-spool-create".into())
                        .spawn_scoped(scope, || create(part));
                    (part, spawned)
                })
                .collect();
            let mut created = create(first);
            for (part, spawned) in helpers {
                match spawned.map(|helper| helper.join()) {
                    Ok(Ok(done)) => created.extend(done),
                    // No thread to be had: this one does that part too.
                    Err(_) => created.extend(create(part)),
                    // A panic in there is a bug; its messages fail, their
                    // files (if any) are found unsealed at the next start.
                    Ok(Err(_)) => created.extend(part.iter().map(|&(i, ..)| {
                        (
                            i,
                            Err(io::Error::other("the spool's create thread panicked")),
                        )
                    })),
                }
            }
            created
        }),
    };
    created.sort_by_key(|&(i, _)| i);
    created.into_iter().map(|(_, result)| result).collect()
}

/// Creates and writes one new message's file; returns it and where its
/// records will start. Removes what it created if the write fails.
fn create_message(
    msg_dir: &Path,
    id: QueueId,
    envelope: &Envelope,
    body: &[Bytes],
) -> io::Result<(File, u64)> {
    let body_len: u64 = body.iter().map(|b| b.len() as u64).sum();
    let head = format::encode_head(id, body_len, envelope);
    let mut crc = crc32fast::Hasher::new();
    for piece in body {
        crc.update(piece);
    }
    let seal = crc.finalize().to_le_bytes();
    let path = message_path(msg_dir, id);
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
    Ok((file, head.len() as u64 + body_len + 4))
}
