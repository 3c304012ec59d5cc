//! The writer: group commit, one round at a time.
//!
//! Sessions hand jobs to [`Shared::submit`] and go on serving. One thread,
//! `petrel-spool`, takes every job queued at once — a *round* — writes
//! them, makes them durable, and only then completes their callbacks:
//!
//! - a message that arrived whole is appended to the current pack; its
//!   state changes and its removal are appended, as records, to the pack
//!   it is in. The round makes them durable with one `fdatasync` per pack
//!   it wrote to (usually one or two; plus an `fsync` of the pack directory
//!   when a pack is new). No file is created per message;
//! - a message spilled while it arrived (`Spool::spill`) has its own file
//!   in `msg/`, its records appended to it; the round `fdatasync`s that
//!   file and `fsync`s the subdirectory holding its name.
//!
//! The slower the sync, the more jobs queue meanwhile and share the next.
//!
//! The rules that keep this correct, each stated again where it is applied:
//!
//! 1. **Acknowledged only after its own sync.** Callbacks run after the
//!    round's sync returned success, and a round syncs everything it wrote.
//! 2. **No writeback error lost.** `fdatasync` reports a writeback error
//!    once to each open file description that was open when it happened.
//!    A pack is written through one descriptor, opened before this run's
//!    first write to it and kept, and every round syncs through it; rounds
//!    do not overlap, and what earlier rounds wrote was synced clean, so an
//!    error it reports concerns this round's data (or a round already
//!    taken back: this one then fails too, conservatively). A spilled
//!    message's file is synced through its own descriptor, open since its
//!    first write; a record appended to one, through a descriptor opened
//!    before the write.
//! 3. **A failed round is taken back whole** before the next begins: each
//!    pack cut back to where the round found it, files it created removed,
//!    records it appended cut off, the index as it was. So nothing is ever
//!    written after bytes that were not acknowledged.
//!
//! Since every record of a message is in the pack its block is in, a pack
//! nothing lives in any more is simply removed. The messages still living
//! in mostly dead packs are moved to the current one when the packs hold
//! much more than lives in them (see [`Writer::collect`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};

use bytes::Bytes;

use super::format;
use super::message::{Envelope, QueueId};
use super::pack::pack_path;
use super::{
    message_path, shard_name, shard_of, RecipientState, SpoolOptions, StateChange, StoreError,
};

/// Completes a job: the session's answer waits on it.
pub(crate) type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Tests: called as each sync begins; an error returned fails the round
/// without syncing it.
#[cfg(test)]
pub(crate) type SyncHook = Box<dyn FnMut() -> Option<io::Error> + Send>;

/// Called when a spill's pieces have been written, or failed.
pub(crate) type Written = Box<dyn FnOnce() + Send>;

pub(crate) enum Job {
    Store(Store),
    /// Part of a large message's body, written ahead of its store: see
    /// [`Draft`]. An error is kept for the store to report; `written`
    /// only says that the writer is done with the pieces.
    Spill {
        id: QueueId,
        head_len: u64,
        body: Vec<Bytes>,
        written: Written,
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
    fn fail(self, error: StoreError) {
        match self {
            Job::Store(Store { done, .. })
            | Job::Update { done, .. }
            | Job::Remove { done, .. } => done(Err(error)),
            Job::Spill { written, .. } => written(),
            Job::Discard(_) => {}
        }
    }
}

/// What the sessions and the writer share.
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer: a job queued, the spool closed.
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

    /// Waits for jobs or the close; the jobs, and whether it is closed.
    fn wait(&self) -> (Vec<Job>, bool) {
        let mut q = self.lock();
        while q.jobs.is_empty() && !q.closed {
            q = self.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
        (std::mem::take(&mut q.jobs), q.closed)
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// Where a stored message is, as the writer knows it.
#[derive(Debug, Clone)]
pub(crate) enum Loc {
    Pack(Packed),
    /// Its own file in `msg/`.
    File(Known),
}

/// A message in a pack.
#[derive(Debug, Clone)]
pub(crate) struct Packed {
    pub seq: u64,
    /// Its block, from the head to the seal.
    pub start: u64,
    pub end: u64,
    /// Every recipient's state and attempts: what a move writes.
    pub states: Vec<(RecipientState, u32)>,
}

/// A message in its own file: enough to append to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Known {
    /// The end of the last valid record: where the next one goes.
    pub end: u64,
    pub recipients: usize,
}

/// Where readers find a stored message's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyAt {
    /// In pack `seq`, its block at `start`.
    Pack { seq: u64, start: u64 },
    /// In its own file.
    File,
}

/// The writer's index as readers need it: published after each round's
/// sync, before its callbacks, so a message is found as soon as anyone
/// knows it is stored.
pub(crate) type Bodies = Arc<RwLock<HashMap<QueueId, BodyAt>>>;

/// A pack, as the writer knows it.
#[derive(Debug, Default)]
pub(crate) struct PackState {
    /// Where the next item goes.
    pub len: u64,
    /// Messages whose block is in it.
    pub live: usize,
    /// Their blocks' octets.
    pub live_bytes: u64,
    /// Open for writing since before this run's first write to it (rule
    /// 2), its cursor at `len`; `None` until then.
    pub file: Option<File>,
    /// Its directory entry is not known durable yet.
    pub fresh: bool,
    /// A take-back could not cut it back: nothing more is written to it.
    pub broken: bool,
    /// The file's length: past `len`, zeros written ahead (see
    /// [`ZEROS_AHEAD`]).
    pub allocated: u64,
}

/// How far past its end the current pack is filled with zeros. On a
/// journaled filesystem an `fdatasync` that changes a file's length
/// commits the journal, and one that only overwrites blocks does not: on
/// this VM's journaled ext4, 1 KB appended and synced 121 times a second,
/// overwritten and synced 426 times. So a round of small messages mostly
/// overwrites zeros, and the length changes once per this many octets.
/// The zeros reach the disk only past what the round wrote (the rest is
/// overwritten in the page cache first); a round larger than this changes
/// the length anyway and writes no zeros. Zeros read as no item (a
/// zero length frames nothing whose checksum is zero), so a reader stops
/// there, and recovery leaves a tail of zeros alone.
pub(crate) const ZEROS_AHEAD: u64 = 256 << 10;

/// The zeros written ahead, once for the process (in zero-filled memory,
/// not the binary), rather than a buffer allocated and cleared for each
/// extension (at that size, a map and an unmap each time).
static ZEROS: [u8; ZEROS_AHEAD as usize] = [0; ZEROS_AHEAD as usize];

impl PackState {
    /// A new, empty pack `seq` (not yet durable: its first round syncs the
    /// directory).
    pub(crate) fn create(pack_dir: &Path, seq: u64) -> io::Result<PackState> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(pack_path(pack_dir, seq))?;
        Ok(PackState {
            file: Some(file),
            fresh: true,
            ..PackState::default()
        })
    }

    /// Back to `len` octets, or `broken`.
    fn cut(&mut self, len: u64) {
        let cut = match &mut self.file {
            Some(file) => file
                .set_len(len)
                .and_then(|()| file.seek(SeekFrom::Start(len)).map(|_| ())),
            None => Err(io::Error::other("not open")),
        };
        match cut {
            Ok(()) => {
                self.len = len;
                self.allocated = len;
            }
            Err(_) => self.broken = true,
        }
    }

    /// After an append past the zeros: zeros again, [`ZEROS_AHEAD`] of
    /// them, unless the append was that large itself. Best effort: a
    /// failure (a full disk) leaves the length to change with each round,
    /// and whatever zeros were written are as good as none.
    fn zero_ahead(&mut self, appended: u64) {
        if self.len <= self.allocated {
            return;
        }
        self.allocated = self.len;
        if appended >= ZEROS_AHEAD {
            return;
        }
        if let Some(file) = &self.file {
            if file.write_all_at(&ZEROS, self.len).is_ok() {
                self.allocated = self.len + ZEROS_AHEAD;
            }
        }
    }
}

/// A large message's file while its body arrives (`Spool::spill`): the
/// body is written as it comes, after room left for the head, which its
/// store writes last, with the seal. Until then the head's room is a hole
/// that reads as zeros, so a draft left by a crash is no message and
/// recovery removes it. Nothing of it is synced before its store, whose
/// round makes it durable like any other.
pub(crate) struct Draft {
    file: File,
    /// Octets left for the head at the start of the file.
    head_len: u64,
    /// Body octets written after them.
    body_len: u64,
    crc: crc32fast::Hasher,
}

/// Writes and syncs the jobs, one round after another.
pub(crate) struct Writer {
    pub msg_dir: PathBuf,
    pub pack_dir: PathBuf,
    /// Only the writer reads and changes it.
    pub index: HashMap<QueueId, Loc>,
    /// Every pack, by sequence number.
    pub packs: BTreeMap<u64, PackState>,
    /// The pack new messages go to.
    pub current: u64,
    /// Bodies being spilled; an error once one failed (its file removed),
    /// for its store to report.
    pub drafts: HashMap<QueueId, Result<Draft, io::Error>>,
    pub options: SpoolOptions,
    pub shared: Arc<Shared>,
    pub bodies: Bodies,
}

/// One round's jobs, as written.
struct Round {
    done: Vec<(Done, Result<(), StoreError>)>,
    /// How to take the round back, in the order done.
    undo: Vec<Undo>,
    /// The packs written to, and their lengths before the round.
    touched: BTreeMap<u64, u64>,
    /// Spilled messages' files written.
    files: Vec<File>,
    /// `msg/` subdirectories whose entries changed.
    shards: BTreeSet<u64>,
    /// For readers and for the packs' use, once durable.
    publish: Vec<(QueueId, Option<BodyAt>)>,
    uses: Vec<(u64, isize, i64)>,
}

enum Undo {
    /// A message new in the index: forgotten (its bytes are cut off with
    /// the pack's).
    Inserted(QueueId),
    /// The message's entry before the round changed it.
    Restore(QueueId, Loc),
    /// A spilled message's file, created in the round: removed.
    Unlink(QueueId),
    /// A record appended to a spilled message's file: cut off.
    Truncate(QueueId, Known),
}

impl Round {
    fn new() -> Round {
        Round {
            done: Vec::new(),
            undo: Vec::new(),
            touched: BTreeMap::new(),
            files: Vec::new(),
            shards: BTreeSet::new(),
            publish: Vec::new(),
            uses: Vec::new(),
        }
    }

    fn fail(&mut self, done: Done, error: io::Error) {
        self.done.push((done, Err(StoreError::from_io(error))));
    }
}

impl Writer {
    pub(crate) fn run(mut self) {
        self.collect();
        loop {
            let (jobs, closed) = self.shared.wait();
            if jobs.is_empty() && closed {
                return;
            }
            self.round(jobs);
            self.collect();
        }
    }

    fn path(&self, id: QueueId) -> PathBuf {
        message_path(&self.msg_dir, id)
    }

    fn round(&mut self, jobs: Vec<Job>) {
        let rolled = self.roll_if_full().map_err(StoreError::from_io);
        let mut r = Round::new();
        for job in jobs {
            match (job, &rolled) {
                // Neither is in the round: a draft is nobody's to sync
                // until its store, which always comes after its spills.
                (
                    Job::Spill {
                        id,
                        head_len,
                        body,
                        written,
                    },
                    _,
                ) => {
                    self.spill(id, head_len, &body);
                    written();
                }
                (Job::Discard(id), _) => self.discard(id),
                (Job::Store(store), Err(e)) if !self.drafts.contains_key(&store.id) => {
                    r.done.push((store.done, Err(e.clone())));
                }
                (Job::Store(store), _) => self.store(store, &mut r),
                (Job::Update { id, changes, done }, _) => {
                    let result = self.update(id, &changes, &mut r);
                    r.done.push((done, result.map_err(StoreError::from_io)));
                }
                (Job::Remove { id, done }, _) => {
                    let result = self.remove(id, &mut r);
                    r.done.push((done, result.map_err(StoreError::from_io)));
                }
            }
        }
        self.commit(r);
    }

    /// Starts a new pack once the current one is full (or broken).
    fn roll_if_full(&mut self) -> io::Result<()> {
        let current = self.packs.get(&self.current);
        if current.is_some_and(|p| p.len < self.options.pack_size && !p.broken) {
            return Ok(());
        }
        let seq = self.packs.last_key_value().map_or(1, |(&seq, _)| seq + 1);
        let pack = PackState::create(&self.pack_dir, seq)?;
        self.packs.insert(seq, pack);
        self.current = seq;
        Ok(())
    }

    /// Appends `slices` to pack `seq`, for round `r`; returns where they
    /// start. A failed append is cut off again at once.
    fn append(&mut self, seq: u64, slices: &mut [IoSlice<'_>], r: &mut Round) -> io::Result<u64> {
        let pack_dir = &self.pack_dir;
        let pack = self
            .packs
            .get_mut(&seq)
            .ok_or_else(|| io::Error::other(format!("no pack {seq:016X}")))?;
        if pack.broken {
            return Err(io::Error::other(
                "the pack could not be cut back after an error",
            ));
        }
        let file = match &mut pack.file {
            Some(file) => file,
            None => {
                // Opened before this run's first write to it (rule 2).
                let mut file = OpenOptions::new()
                    .write(true)
                    .open(pack_path(pack_dir, seq))?;
                file.seek(SeekFrom::Start(pack.len))?;
                pack.file.insert(file)
            }
        };
        let start = pack.len;
        let n: usize = slices.iter().map(|s| s.len()).sum();
        match write_all_vectored(file, slices) {
            Ok(()) => {
                r.touched.entry(seq).or_insert(start);
                pack.len += n as u64;
                pack.zero_ahead(n as u64);
                Ok(start)
            }
            Err(e) => {
                pack.cut(start);
                Err(e)
            }
        }
    }

    /// Rule 1: the round's sync, then its callbacks; rule 3: a failed
    /// sync takes the whole round back first.
    fn commit(&mut self, mut r: Round) {
        if let Err(e) = self.sync_round(&mut r) {
            let error = StoreError::from_io(e);
            for (_, result) in r.done.iter_mut().filter(|(_, res)| res.is_ok()) {
                *result = Err(error.clone());
            }
        }
        for (done, result) in r.done {
            // A panicking callback is a bug elsewhere; it must not take the
            // writer down with it, or every later session would wait for
            // an answer forever.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || done(result)));
        }
    }

    /// Makes the round durable and publishes it, or takes it back.
    fn sync_round(&mut self, r: &mut Round) -> io::Result<()> {
        if r.touched.is_empty() && r.files.is_empty() && r.shards.is_empty() {
            return Ok(());
        }
        match self.sync(r) {
            Ok(()) => {
                self.publish(r);
                Ok(())
            }
            Err(e) => {
                self.take_back(r);
                Err(e)
            }
        }
    }

    fn sync(&mut self, r: &Round) -> io::Result<()> {
        #[cfg(test)]
        {
            if self
                .shared
                .fail_next_sync
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let hooked = self
                .shared
                .sync_hook
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_mut()
                .and_then(|hook| hook());
            if let Some(e) = hooked {
                return Err(e);
            }
        }
        let mut fresh = false;
        for seq in r.touched.keys() {
            if let Some(pack) = self.packs.get(seq) {
                // Through the descriptor open since before the round's
                // writes (rule 2).
                if let Some(file) = &pack.file {
                    file.sync_data()?;
                }
                fresh |= pack.fresh;
            }
        }
        if fresh {
            sync_dir(&self.pack_dir)?;
            for seq in r.touched.keys() {
                if let Some(pack) = self.packs.get_mut(seq) {
                    pack.fresh = false;
                }
            }
        }
        for file in &r.files {
            file.sync_data()?;
        }
        // A file's fdatasync does not promise that its name survives. Each
        // subdirectory is opened now: an fsync reports a writeback error
        // of the directory that nobody has seen yet even through a
        // descriptor opened after it.
        for &shard in &r.shards {
            sync_dir(&self.msg_dir.join(shard_name(shard)))?;
        }
        Ok(())
    }

    /// The round is durable: readers may find its messages, and the packs'
    /// use counts follow.
    fn publish(&mut self, r: &mut Round) {
        if !r.publish.is_empty() {
            let mut bodies = self.bodies.write().unwrap_or_else(PoisonError::into_inner);
            for (id, at) in r.publish.drain(..) {
                match at {
                    Some(at) => bodies.insert(id, at),
                    None => bodies.remove(&id),
                };
            }
        }
        for &(seq, live, bytes) in &r.uses {
            if let Some(pack) = self.packs.get_mut(&seq) {
                pack.live = pack.live.saturating_add_signed(live);
                pack.live_bytes = pack.live_bytes.saturating_add_signed(bytes);
            }
        }
    }

    /// Rule 3, newest first.
    fn take_back(&mut self, r: &mut Round) {
        for (seq, &len) in &r.touched {
            if let Some(pack) = self.packs.get_mut(seq) {
                pack.cut(len);
            }
        }
        r.files.clear();
        for undo in r.undo.drain(..).rev() {
            match undo {
                Undo::Inserted(id) => {
                    self.index.remove(&id);
                }
                Undo::Restore(id, loc) => {
                    self.index.insert(id, loc);
                }
                Undo::Unlink(id) => {
                    let _ = fs::remove_file(self.path(id));
                    self.index.remove(&id);
                }
                Undo::Truncate(id, known) => {
                    truncate(&self.path(id), known.end);
                    if let Some(Loc::File(k)) = self.index.get_mut(&id) {
                        *k = known;
                    }
                }
            }
        }
    }

    /// A message that arrived whole goes into the current pack; one that
    /// was spilled is finished in its own file.
    fn store(&mut self, store: Store, r: &mut Round) {
        if self.drafts.contains_key(&store.id) {
            return self.finish_draft(store, r);
        }
        // An id is never reused: one already stored is refused.
        if self.index.contains_key(&store.id) {
            let error = io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("message {} is already stored", store.id),
            );
            return r.fail(store.done, error);
        }
        let body_len: u64 = store.body.iter().map(|b| b.len() as u64).sum();
        let head = format::encode_head(store.id, body_len, &store.envelope);
        let mut crc = crc32fast::Hasher::new();
        for piece in &store.body {
            crc.update(piece);
        }
        let seal = crc.finalize().to_le_bytes();
        let mut slices = Vec::with_capacity(store.body.len() + 2);
        slices.push(IoSlice::new(&head));
        slices.extend(store.body.iter().map(|b| IoSlice::new(b)));
        slices.push(IoSlice::new(&seal));
        let seq = self.current;
        let start = match self.append(seq, &mut slices, r) {
            Ok(start) => start,
            Err(e) => return r.fail(store.done, e),
        };
        let end = start + (head.len() + seal.len()) as u64 + body_len;
        let recipients = store.envelope.recipients.len();
        self.index.insert(
            store.id,
            Loc::Pack(Packed {
                seq,
                start,
                end,
                states: vec![(RecipientState::Pending, 0); recipients],
            }),
        );
        r.undo.push(Undo::Inserted(store.id));
        r.publish
            .push((store.id, Some(BodyAt::Pack { seq, start })));
        r.uses.push((seq, 1, block_len(start, end)));
        r.done.push((store.done, Ok(())));
    }

    fn update(&mut self, id: QueueId, changes: &[StateChange], r: &mut Round) -> io::Result<()> {
        let Some(loc) = self.index.get(&id).cloned() else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no message {id} in the spool"),
            ));
        };
        let recipients = match &loc {
            Loc::Pack(p) => p.states.len(),
            Loc::File(k) => k.recipients,
        };
        let mut indexed = Vec::with_capacity(changes.len());
        for c in changes {
            match u32::try_from(c.recipient) {
                Ok(i) if c.recipient < recipients => indexed.push((i, c.state, c.attempts)),
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "message {id} has {recipients} recipients, not {}",
                            c.recipient + 1
                        ),
                    ))
                }
            }
        }
        match loc {
            Loc::Pack(old) => {
                // In the message's own pack, so that a pack holds every
                // record of its messages and can go as soon as they have.
                let record = format::encode_pack_states(id, &indexed);
                self.append(old.seq, &mut [IoSlice::new(&record)], r)?;
                let mut new = old.clone();
                for c in changes {
                    if let Some(slot) = new.states.get_mut(c.recipient) {
                        *slot = (c.state, c.attempts);
                    }
                }
                self.index.insert(id, Loc::Pack(new));
                r.undo.push(Undo::Restore(id, Loc::Pack(old)));
                Ok(())
            }
            Loc::File(known) => {
                let file = self.append_record(id, known, &indexed)?;
                r.files.push(file);
                r.undo.push(Undo::Truncate(id, known));
                Ok(())
            }
        }
    }

    /// Appends a record to a spilled message's file, at its known end:
    /// not O_APPEND, so that after a failed append left bytes behind, the
    /// next record overwrites them rather than following them, where a
    /// reader would never reach it.
    fn append_record(
        &mut self,
        id: QueueId,
        known: Known,
        changes: &[(u32, RecipientState, u32)],
    ) -> io::Result<File> {
        let record = format::encode_states_record(changes);
        let file = OpenOptions::new().write(true).open(self.path(id))?;
        if let Err(e) = file.write_all_at(&record, known.end) {
            drop(file);
            truncate(&self.path(id), known.end);
            return Err(e);
        }
        self.index.insert(
            id,
            Loc::File(Known {
                end: known.end + record.len() as u64,
                ..known
            }),
        );
        Ok(file)
    }

    fn remove(&mut self, id: QueueId, r: &mut Round) -> io::Result<()> {
        match self.index.get(&id).cloned() {
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no message {id} in the spool"),
            )),
            Some(Loc::Pack(p)) => {
                let record = format::encode_pack_removed(id);
                self.append(p.seq, &mut [IoSlice::new(&record)], r)?;
                self.index.remove(&id);
                r.publish.push((id, None));
                r.uses.push((p.seq, -1, -block_len(p.start, p.end)));
                r.undo.push(Undo::Restore(id, Loc::Pack(p)));
                Ok(())
            }
            Some(Loc::File(_)) => {
                match fs::remove_file(self.path(id)) {
                    // Already gone (removed by hand): what was asked for.
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                // An unlink cannot be taken back: if the round fails, the
                // removal is reported failed but stays done.
                self.index.remove(&id);
                self.bodies
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
                r.shards.insert(shard_of(id));
                Ok(())
            }
        }
    }

    /// Writes part of a large message's body into its draft, made at the
    /// first part. A failure removes the draft's file and is kept for the
    /// store; later parts are dropped.
    fn spill(&mut self, id: QueueId, head_len: u64, body: &[Bytes]) {
        let path = self.path(id);
        let draft = match self.drafts.remove(&id) {
            Some(draft) => draft,
            None if self.index.contains_key(&id) => Err(io::Error::new(
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
    fn finish_draft(&mut self, store: Store, r: &mut Round) {
        let path = self.path(store.id);
        let mut draft = match self.drafts.remove(&store.id) {
            Some(Ok(draft)) => draft,
            Some(Err(e)) => return r.fail(store.done, e),
            None => return r.fail(store.done, io::Error::other("no draft")),
        };
        match draft.finish(store.id, &store.envelope, &store.body) {
            Ok(end) => {
                let recipients = store.envelope.recipients.len();
                self.index
                    .insert(store.id, Loc::File(Known { end, recipients }));
                r.undo.push(Undo::Unlink(store.id));
                r.files.push(draft.file);
                r.shards.insert(shard_of(store.id));
                r.publish.push((store.id, Some(BodyAt::File)));
                r.done.push((store.done, Ok(())));
            }
            Err(e) => {
                drop(draft);
                let _ = fs::remove_file(&path);
                r.fail(store.done, e);
            }
        }
    }

    /// After a round: removes every pack nothing lives in any more (but
    /// the current one); then, while the packs hold more than twice what
    /// lives in them plus `max_packs` full packs, moves the live messages
    /// of the most dead pack to the current one, so that it can go too.
    /// That pack is less than half alive, so each move frees more than it
    /// writes, and this ends.
    fn collect(&mut self) {
        for _ in 0..=self.packs.len() {
            let dead: Vec<u64> = self
                .packs
                .iter()
                .filter(|&(&seq, p)| seq != self.current && p.live == 0)
                .map(|(&seq, _)| seq)
                .collect();
            if !dead.is_empty() {
                for seq in dead {
                    match fs::remove_file(pack_path(&self.pack_dir, seq)) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => {}
                        _ => {
                            self.packs.remove(&seq);
                        }
                    }
                }
                // Should a removal be lost to a crash, the pack's messages
                // are found removed, or moved to a newer pack, again.
                let _ = sync_dir(&self.pack_dir);
            }
            let total: u64 = self.packs.values().map(|p| p.len).sum();
            let live: u64 = self.packs.values().map(|p| p.live_bytes).sum();
            let slack = self
                .options
                .pack_size
                .saturating_mul(self.options.max_packs as u64);
            if total <= live.saturating_mul(2).saturating_add(slack) {
                return;
            }
            let most_dead = self
                .packs
                .iter()
                .filter(|&(&seq, p)| seq != self.current && p.len > 0)
                .min_by_key(|(_, p)| (u128::from(p.live_bytes) << 64) / u128::from(p.len))
                .map(|(&seq, _)| seq);
            match most_dead {
                Some(seq) if self.move_out(seq).is_ok() => {}
                _ => return,
            }
        }
    }

    /// Moves every message of pack `seq` to the current pack, in a round of
    /// their own: for each, a record of its states, then its block. Pack
    /// `seq` is then dead and goes. Should that removal be lost to a crash,
    /// recovery meets each message twice, and the copy after its move
    /// record, in the newer pack, wins.
    fn move_out(&mut self, seq: u64) -> io::Result<()> {
        self.roll_if_full()?;
        let to = self.current;
        let old = File::open(pack_path(&self.pack_dir, seq))?;
        let ids: Vec<QueueId> = self
            .index
            .iter()
            .filter(|(_, loc)| matches!(loc, Loc::Pack(p) if p.seq == seq))
            .map(|(&id, _)| id)
            .collect();
        let mut r = Round::new();
        for id in ids {
            let Some(Loc::Pack(p)) = self.index.get(&id).cloned() else {
                continue;
            };
            let mut block = vec![0; usize::try_from(p.end - p.start).map_err(io::Error::other)?];
            let record = format::encode_pack_moved(id, &p.states);
            let written = old.read_exact_at(&mut block, p.start).and_then(|()| {
                self.append(
                    to,
                    &mut [IoSlice::new(&record), IoSlice::new(&block)],
                    &mut r,
                )
            });
            let start = match written {
                Ok(at) => at + record.len() as u64,
                Err(e) => {
                    self.take_back(&mut r);
                    return Err(e);
                }
            };
            let end = start + (p.end - p.start);
            let bytes = block_len(start, end);
            r.publish.push((id, Some(BodyAt::Pack { seq: to, start })));
            r.uses.push((to, 1, bytes));
            r.uses.push((seq, -1, -bytes));
            let new = Packed {
                seq: to,
                start,
                end,
                states: p.states.clone(),
            };
            self.index.insert(id, Loc::Pack(new));
            r.undo.push(Undo::Restore(id, Loc::Pack(p)));
        }
        self.sync_round(&mut r)
    }
}

fn block_len(start: u64, end: u64) -> i64 {
    i64::try_from(end.saturating_sub(start)).unwrap_or(i64::MAX)
}

/// Best effort: a record left past `end` is unreachable to readers (it
/// follows nothing valid) and the next update overwrites it anyway.
fn truncate(path: &Path, end: u64) {
    if let Ok(f) = OpenOptions::new().write(true).open(path) {
        let _ = f.set_len(end);
    }
}

/// Opened now, so its fsync also reports a writeback error nobody has
/// seen yet.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
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
