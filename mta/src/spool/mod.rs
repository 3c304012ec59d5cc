//! The durable spool.
//!
//! A message that arrives whole is appended to a *pack*, a file in
//! `DIR/pack/` holding many messages: the envelope, the message as
//! received, and then the recipients' state changes and its removal,
//! appended as small records to the same pack (`pack.rs`, `format.rs`). A
//! message spilled while it arrived has a file of its own in `DIR/msg/`,
//! its records appended to it. A message is made durable before its
//! callback says it is stored, and the listener answers `250` only then.
//! One writer thread writes for everyone, a round of jobs at a time, each
//! round made durable with one `fdatasync` per file it wrote (group
//! commit: see `writer.rs`); `SPOOL.md` has the measurements behind it.
//!
//! At [`Spool::open`] everything is checked: bytes whose checksums or
//! lengths do not hold were being written when the process stopped, were
//! never acknowledged, and are cut off or removed. [`list`] reads a spool
//! without opening it, for `petrel queue`.

pub mod message;

mod format;
mod pack;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use self::format::{Changes, PackRecord};
use self::message::{Envelope, QueueId};
use self::pack::{pack_path, pack_seqs, Item, PACK_DIR};
use self::writer::{Bodies, BodyAt, Job, Known, Loc, PackState, Packed, Shared, Store, Writer};

/// Where a recipient of a stored message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecipientState {
    /// Not yet delivered nor given up on.
    Pending,
    /// Delivered: never to be attempted again.
    Delivered,
    /// Failed for good (bounced, or expired): never to be attempted again.
    Failed,
}

/// One recipient's new state, for [`Spool::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChange {
    /// The recipient's index in [`Envelope::recipients`].
    pub recipient: usize,
    /// Its new state; `Pending` to record attempts alone.
    pub state: RecipientState,
    /// Delivery attempts made for it so far. Kept so that a restart
    /// neither starts `Max_Retries` over nor sends a delay notice again.
    pub attempts: u32,
}

/// Why the spool did not make a write durable. The listener answers
/// [`StoreError::Full`] with `452 4.3.1` and [`StoreError::Io`] with
/// `451 4.3.0`; neither leaves anything of the write behind.
#[derive(Debug, Clone)]
pub enum StoreError {
    /// No room: the filesystem is full (`ENOSPC`) or the quota reached
    /// (`EDQUOT`). Writes succeed again once there is room.
    Full,
    /// Any other failure: an I/O error, no such message, the spool shut
    /// down. Shared, because one failed sync fails a whole round.
    Io(Arc<io::Error>),
}

impl StoreError {
    fn from_io(e: io::Error) -> StoreError {
        match e.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => StoreError::Full,
            _ => StoreError::Io(Arc::new(e)),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Full => f.write_str("insufficient system storage for the spool"),
            StoreError::Io(e) => write!(f, "spool write failed: {e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Full => None,
            StoreError::Io(e) => Some(&**e),
        }
    }
}

/// Why a spool could not be opened or read.
#[derive(Debug)]
pub enum SpoolError {
    /// Another process (a running `petrel`) has the spool open.
    Locked(PathBuf),
    /// An operation on `path` failed.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

impl SpoolError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
        move |source| SpoolError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::Locked(dir) => write!(
                f,
                "{}: the spool is in use by another process",
                dir.display()
            ),
            SpoolError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for SpoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpoolError::Locked(_) => None,
            SpoolError::Io { source, .. } => Some(source),
        }
    }
}

/// A message in the spool, without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its queue id.
    pub id: QueueId,
    /// Its envelope, as stored.
    pub envelope: Envelope,
    /// Each recipient's state, in the order of `envelope.recipients`.
    pub states: Vec<RecipientState>,
    /// Attempts made for each recipient, as last recorded by
    /// [`Spool::update`] (0 for a message just stored).
    pub attempts: Vec<u32>,
    /// The message's size in octets, as received (with the listener's
    /// `Received:` header).
    pub size: u64,
}

impl StoredMessage {
    /// A message just stored: every recipient pending, none attempted.
    pub fn new(id: QueueId, envelope: Envelope, size: u64) -> StoredMessage {
        let recipients = envelope.recipients.len();
        StoredMessage {
            id,
            envelope,
            states: vec![RecipientState::Pending; recipients],
            attempts: vec![0; recipients],
            size,
        }
    }
}

/// What [`Spool::open`] found.
#[derive(Debug)]
pub struct Recovery {
    /// Every stored message, in queue-id order.
    pub messages: Vec<StoredMessage>,
    /// How many files were half-written (never acknowledged) and removed.
    pub discarded: usize,
}

/// How the spool lays out its packs (`SPOOL.md`); [`Default`] for
/// production, small values for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolOptions {
    /// A pack this long or longer is not appended to any more: the next
    /// round starts a new one.
    pub pack_size: u64,
    /// The packs may hold twice what lives in them plus this many full
    /// packs; past that, the live messages of the most dead pack are
    /// moved to the current one, so that it can be removed.
    pub max_packs: usize,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        SpoolOptions {
            pack_size: 64 << 20,
            max_packs: 4,
        }
    }
}

/// The spool: cheap to clone, shared by every session.
#[derive(Clone, Debug)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    msg_dir: PathBuf,
    pack_dir: PathBuf,
    next_id: AtomicU64,
    shared: Arc<Shared>,
    bodies: Bodies,
    /// The writer's.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Holds the spool's lock (`flock` on `DIR/lock`) while open.
    _lock: File,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

const MSG_DIR: &str = "msg";
/// `msg/` is split into this many subdirectories, `0` to `F`, by the last
/// hex digit of the queue id: made so when every message had a file, so
/// that files could be created in several directories at once (ext4 locks
/// a directory for each file created in it). Spilled messages still go
/// there, and spools of that time are read as they are.
const SHARDS: u64 = 16;

/// Where message `id` is stored: `MSG_DIR/X/ID`.
fn message_path(msg_dir: &Path, id: QueueId) -> PathBuf {
    msg_dir.join(shard_name(shard_of(id))).join(id.to_string())
}

/// The subdirectory message `id` is stored in.
fn shard_of(id: QueueId) -> u64 {
    id.0 % SHARDS
}

fn shard_name(shard: u64) -> String {
    format!("{shard:X}")
}
const LOCK_FILE: &str = "lock";
const EPOCH_FILE: &str = "epoch";

impl Spool {
    /// Opens the spool in `dir`, creating it (mode 0700) if need be:
    /// takes its lock, recovers what is stored, and starts the writer.
    pub fn open(dir: &Path) -> Result<(Spool, Recovery), SpoolError> {
        Spool::open_with(dir, SpoolOptions::default())
    }

    /// [`Spool::open`], with packs laid out as `options` say.
    pub fn open_with(dir: &Path, options: SpoolOptions) -> Result<(Spool, Recovery), SpoolError> {
        let msg_dir = dir.join(MSG_DIR);
        let pack_dir = dir.join(PACK_DIR);
        create_dir(dir)?;
        create_dir(&msg_dir)?;
        for shard in 0..SHARDS {
            create_dir(&msg_dir.join(shard_name(shard)))?;
        }
        create_dir(&pack_dir)?;
        let lock = lock(dir)?;

        let (mut recovery, files) = recover(&msg_dir)?;
        let packed = recover_packs(&pack_dir)?;
        recovery.discarded += packed.discarded;
        let mut index: HashMap<QueueId, Loc> = HashMap::new();
        let mut bodies = HashMap::new();
        for (id, known) in files {
            index.insert(id, Loc::File(known));
            bodies.insert(id, BodyAt::File);
        }
        let mut packs = packed.packs;
        for (message, p) in packed.messages {
            let used = packs.entry(p.seq).or_default();
            used.live += 1;
            used.live_bytes += p.end - p.start;
            bodies.insert(
                message.id,
                BodyAt::Pack {
                    seq: p.seq,
                    start: p.start,
                },
            );
            index.insert(message.id, Loc::Pack(p));
            recovery.messages.push(message);
        }
        recovery.messages.sort_by_key(|m| m.id);
        let epoch = next_epoch(dir, &recovery)?;

        // Each run appends to a pack of its own: one cut short by a crash
        // (and repaired above) is never appended to again.
        let current = packs.last_key_value().map_or(1, |(&seq, _)| seq + 1);
        let pack = PackState::create(&pack_dir, current).map_err(SpoolError::io(&pack_dir))?;
        packs.insert(current, pack);
        let shared = Arc::new(Shared::new());
        let bodies: Bodies = Arc::new(std::sync::RwLock::new(bodies));
        let writer = Writer {
            msg_dir: msg_dir.clone(),
            pack_dir: pack_dir.clone(),
            index,
            packs,
            current,
            drafts: HashMap::new(),
            options,
            shared: shared.clone(),
            bodies: bodies.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("petrel-spool".into())
            .spawn(move || writer.run())
            .map_err(SpoolError::io(dir))?;
        let spool = Spool {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                msg_dir,
                pack_dir,
                next_id: AtomicU64::new(epoch << 32),
                shared,
                bodies,
                threads: Mutex::new(vec![writer]),
                _lock: lock,
            }),
        };
        Ok((spool, recovery))
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// A fresh queue id, for a message about to be stored: the seconds
    /// since the epoch at which this run started (or later, see
    /// `next_epoch`) in the high 32 bits, a counter in the low ones.
    pub fn new_id(&self) -> QueueId {
        QueueId(self.inner.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Stores a message: `body` is the message as received, in order (the
    /// listener's `Received:` header first). `done` is called, on the
    /// spool's writer thread, once the message is durable or has failed;
    /// it must be quick, since the next round waits for the last callback.
    pub fn store(
        &self,
        id: QueueId,
        envelope: Envelope,
        body: Vec<Bytes>,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) {
        self.inner.shared.submit(Job::Store(Store {
            id,
            envelope,
            body,
            done: Box::new(done),
        }));
    }

    /// Writes part of a large message's body ahead of its
    /// [`Spool::store`], so that a session need not hold the message whole:
    /// the parts, in order, then the store with the rest. `envelope` must
    /// be the one the store will give (it sizes the head written last).
    /// Nothing is durable, nor answered, before the store; a failure is
    /// the store's. A message that will not be stored after all must be
    /// [`Spool::discard`]ed. `written` runs once the writer is done with
    /// the pieces (written, not synced, or failed): a session that reads
    /// no more of its client until then keeps at most its next part in
    /// memory, however far the writer has fallen behind.
    pub fn spill(
        &self,
        id: QueueId,
        envelope: &Envelope,
        body: Vec<Bytes>,
        written: impl FnOnce() + Send + 'static,
    ) {
        let head_len = format::encode_head(id, 0, envelope).len() as u64;
        self.inner.shared.submit(Job::Spill {
            id,
            head_len,
            body,
            written: Box::new(written),
        });
    }

    /// Removes what [`Spool::spill`] wrote for a message that will not be
    /// stored; nothing for one that never spilled.
    pub fn discard(&self, id: QueueId) {
        self.inner.shared.submit(Job::Discard(id));
    }

    /// Records recipients' new states durably; `done` as for
    /// [`Spool::store`]. Fails with [`io::ErrorKind::NotFound`] for an id
    /// that is not stored, [`io::ErrorKind::InvalidInput`] for a recipient
    /// index past the envelope's.
    pub fn update(
        &self,
        id: QueueId,
        changes: Vec<StateChange>,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) {
        self.inner.shared.submit(Job::Update {
            id,
            changes,
            done: Box::new(done),
        });
    }

    /// Removes a message that is done with (every recipient delivered or
    /// failed). Durable when `done` says so. A removal lost to a crash
    /// before that brings the message back as its records left it, so
    /// record recipients' final states with [`Spool::update`] first: a
    /// message brought back then has nothing left to do, where one removed
    /// with recipients still `Pending` on disk would be delivered again.
    pub fn remove(&self, id: QueueId, done: impl FnOnce(Result<(), StoreError>) + Send + 'static) {
        self.inner.shared.submit(Job::Remove {
            id,
            done: Box::new(done),
        });
    }

    /// Reads a stored message's body whole, checking it against its
    /// checksum.
    pub fn read_body(&self, id: QueueId) -> io::Result<Vec<u8>> {
        let mut body = self.open_body(id)?;
        let mut all = Vec::with_capacity(usize::try_from(body.len()).unwrap_or(0));
        while let Some(chunk) = body.next_chunk(BODY_CHUNK)? {
            all.extend_from_slice(&chunk);
        }
        Ok(all)
    }

    /// Opens a stored message's body to be read a chunk at a time, so that
    /// delivering a message never holds it whole.
    pub fn open_body(&self, id: QueueId) -> io::Result<StoredBody> {
        // A message moved to a newer pack just as its old one is removed
        // is found again where it went.
        let mut tries = 2;
        loop {
            tries -= 1;
            let at = self
                .inner
                .bodies
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&id)
                .copied();
            let (path, start) = match at {
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("no message {id} in the spool"),
                    ))
                }
                Some(BodyAt::File) => (message_path(&self.inner.msg_dir, id), 0),
                Some(BodyAt::Pack { seq, start }) => (pack_path(&self.inner.pack_dir, seq), start),
            };
            match File::open(&path) {
                Ok(file) => return StoredBody::open(file, id, start),
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries > 0 => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Completes every job submitted so far and stops the writer; later
    /// jobs fail at once. Dropping the last clone of the spool does the
    /// same.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

impl Inner {
    fn shutdown(&self) {
        self.shared.close();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        // A callback may drop the last clone on the writer thread, which
        // cannot wait for itself; it stops once the callback returns.
        let me = std::thread::current().id();
        if threads.iter().all(|t| t.thread().id() != me) {
            for thread in threads {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How much [`Spool::read_body`] reads at a time.
const BODY_CHUNK: usize = 256 << 10;

/// A stored message's body, read from its file a chunk at a time
/// ([`Spool::open_body`]). The checksum is computed along the way and
/// checked with the last chunk: a damaged body ends in an error before its
/// end is handed out, so a delivery aborts instead of sending it whole.
#[derive(Debug)]
pub struct StoredBody {
    file: File,
    id: QueueId,
    start: u64,
    end: u64,
    at: u64,
    crc: crc32fast::Hasher,
    seal: u32,
}

impl StoredBody {
    /// Message `id`'s body, its block at `start` in `file`.
    fn open(file: File, id: QueueId, start: u64) -> io::Result<StoredBody> {
        let len = file.metadata()?.len();
        let head = read_head_at(&file, start, len)?.ok_or_else(|| damaged(id))?;
        let seal_at = head
            .seal_offset()
            .and_then(|s| s.checked_add(start))
            .ok_or_else(|| damaged(id))?;
        if head.id != id || seal_at.saturating_add(4) > len {
            return Err(damaged(id));
        }
        let mut seal = [0; 4];
        file.read_exact_at(&mut seal, seal_at)?;
        let body_at = start + head.body_offset;
        Ok(StoredBody {
            file,
            id,
            start: body_at,
            end: seal_at,
            at: body_at,
            crc: crc32fast::Hasher::new(),
            seal: u32::from_le_bytes(seal),
        })
    }

    /// The body's length in octets.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The next chunk of at most `max` octets (at least one); `None` at
    /// the end. An error when the body does not match its checksum.
    pub fn next_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        let left = self.end - self.at;
        if left == 0 {
            return Ok(None);
        }
        let n = usize::try_from(left)
            .map_or(max, |left| left.min(max))
            .max(1);
        let mut chunk = vec![0; n];
        self.file.read_exact_at(&mut chunk, self.at)?;
        self.crc.update(&chunk);
        self.at += n as u64;
        if self.at == self.end && self.crc.clone().finalize() != self.seal {
            return Err(damaged(self.id));
        }
        Ok(Some(Bytes::from(chunk)))
    }

    /// Back to the start of the body.
    pub fn rewind(&mut self) {
        self.at = self.start;
        self.crc = crc32fast::Hasher::new();
    }
}

fn damaged(id: QueueId) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("spool file {id} is damaged"),
    )
}

/// Reads a spool directory without opening it (no lock, no writer, no
/// repairs), for `petrel queue list` while petrel may be running: files
/// that vanish or are still being written are skipped. Bodies are not
/// checksummed (that would read the whole spool); sizes and heads are.
pub fn list(dir: &Path) -> Result<Vec<StoredMessage>, SpoolError> {
    let msg_dir = dir.join(MSG_DIR);
    let mut messages = list_packs(&dir.join(PACK_DIR))?;
    for (id, path) in message_files(&msg_dir)? {
        match read_message(&path, id, false) {
            Ok(Some((m, _))) => messages.push(m),
            Ok(None) => {}
            // Removed since listed, or cut short (a failed append taken
            // back) while being read.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof
                ) => {}
            Err(e) => return Err(SpoolError::Io { path, source: e }),
        }
    }
    messages.sort_by_key(|m| m.id);
    // Seen twice if moved into its subdirectory (see `recover`) meanwhile.
    messages.dedup_by_key(|m| m.id);
    Ok(messages)
}

/// [`list`]'s packs: read to the end of what is written so far; a pack
/// removed meanwhile is skipped (its messages were done with, or moved to
/// a later pack).
fn list_packs(pack_dir: &Path) -> Result<Vec<StoredMessage>, SpoolError> {
    let seqs = match pack_seqs(pack_dir) {
        Ok(seqs) => seqs,
        // A spool written before packs.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(SpoolError::Io {
                path: pack_dir.to_path_buf(),
                source: e,
            })
        }
    };
    let mut found = Found::default();
    for seq in seqs {
        let path = pack_path(pack_dir, seq);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(SpoolError::Io { path, source: e }),
        };
        let len = file.metadata().map_err(SpoolError::io(&path))?.len();
        pack::scan(&file, len, false, |item| found.apply(seq, item))
            .map_err(SpoolError::io(&path))?;
        found.end_of_pack();
    }
    Ok(found.into_messages().into_iter().map(|(m, _)| m).collect())
}

/// The files of `msg_dir`'s subdirectories that are named as queue ids and
/// stored where [`message_path`] puts them, in no order; and those directly
/// in `msg_dir`, where spools made before the subdirectories kept every
/// message (see [`recover`]).
fn message_files(msg_dir: &Path) -> Result<Vec<(QueueId, PathBuf)>, SpoolError> {
    let mut files = id_files(msg_dir, |_| true)?;
    for shard in 0..SHARDS {
        let dir = msg_dir.join(shard_name(shard));
        match id_files(&dir, |id| shard_of(id) == shard) {
            Ok(found) => files.extend(found),
            // Listed offline in a spool not yet opened by this version.
            Err(SpoolError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(files)
}

/// The regular files of `dir` named as queue ids that `mine` accepts: a
/// file elsewhere is not something the spool wrote there.
fn id_files(
    dir: &Path,
    mine: impl Fn(QueueId) -> bool,
) -> Result<Vec<(QueueId, PathBuf)>, SpoolError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(SpoolError::io(dir))? {
        let entry = entry.map_err(SpoolError::io(dir))?;
        // Not followed: a symbolic link is not something the spool wrote.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = parse_id(name).filter(|&id| mine(id)) {
            files.push((id, entry.path()));
        }
    }
    Ok(files)
}

/// A file name as the spool writes one: exactly [`QueueId`]'s `Display`.
fn parse_id(name: &str) -> Option<QueueId> {
    let id = QueueId(u64::from_str_radix(name, 16).ok()?);
    (id.to_string() == name).then_some(id)
}

/// The head of the message block at `start` of a file `len` octets long,
/// or `None` if the file is too short or the head damaged. Its
/// `body_offset` counts from `start`.
fn read_head_at(file: &File, start: u64, len: u64) -> io::Result<Option<format::Head>> {
    let left = len.saturating_sub(start);
    let mut buf = vec![0; usize::try_from(left.min(4096)).unwrap_or(4096)];
    file.read_exact_at(&mut buf, start)?;
    let total = match format::head_total_len(&buf) {
        Ok(total) => total,
        Err(_) => return Ok(None),
    };
    if total as u64 > left {
        return Ok(None);
    }
    if total > buf.len() {
        buf.resize(total, 0);
        file.read_exact_at(&mut buf, start)?;
    }
    Ok(format::decode_head(&buf).ok())
}

/// Reads and checks one message file: the message and where its valid
/// records end, or `None` if it is incomplete or damaged. `verify_body`
/// reads the whole body to check its checksum.
fn read_message(
    path: &Path,
    id: QueueId,
    verify_body: bool,
) -> io::Result<Option<(StoredMessage, u64)>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let Some(head) = read_head_at(&file, 0, len)? else {
        return Ok(None);
    };
    let (Some(seal_at), Some(records_at)) = (head.seal_offset(), head.records_offset()) else {
        return Ok(None);
    };
    if head.id != id || records_at > len {
        return Ok(None);
    }
    if verify_body {
        let mut seal = [0; 4];
        file.read_exact_at(&mut seal, seal_at)?;
        if checksum(&file, head.body_offset, head.body_len)? != u32::from_le_bytes(seal) {
            return Ok(None);
        }
    }
    let mut records = vec![0; usize::try_from(len - records_at).unwrap_or(0)];
    file.read_exact_at(&mut records, records_at)?;
    let mut states = vec![RecipientState::Pending; head.envelope.recipients.len()];
    let mut attempts = vec![0; states.len()];
    let valid = format::apply_records(&records, &mut states, &mut attempts);
    let message = StoredMessage {
        id,
        envelope: head.envelope,
        states,
        attempts,
        size: head.body_len,
    };
    Ok(Some((message, records_at + valid as u64)))
}

/// The CRC-32 of `len` bytes of `file` from `offset`, read in pieces.
fn checksum(file: &File, mut offset: u64, len: u64) -> io::Result<u32> {
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0; 256 << 10];
    let end = offset + len;
    while offset < end {
        let n = usize::try_from(end - offset).map_or(buf.len(), |n| n.min(buf.len()));
        let piece = buf.get_mut(..n).unwrap_or_default();
        file.read_exact_at(piece, offset)?;
        crc.update(piece);
        offset += n as u64;
    }
    Ok(crc.finalize())
}

/// Checks every file at open: removes what was never acknowledged, cuts
/// torn records, and makes those repairs durable before anything is
/// written anew.
fn recover(msg_dir: &Path) -> Result<(Recovery, HashMap<QueueId, Known>), SpoolError> {
    let mut messages = Vec::new();
    let mut known = HashMap::new();
    let mut discarded = 0;
    let mut moved = false;
    for (id, mut path) in message_files(msg_dir)? {
        // A message of a spool made before the subdirectories: moved where
        // it belongs now, durably (the directories are synced below, before
        // the writer starts), as it is: whatever it holds is checked next.
        let stored = message_path(msg_dir, id);
        if path != stored {
            fs::rename(&path, &stored).map_err(SpoolError::io(&path))?;
            path = stored;
            moved = true;
        }
        let found = read_message(&path, id, true).map_err(SpoolError::io(&path))?;
        match found {
            Some((message, end)) => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(SpoolError::io(&path))?;
                if file.metadata().map_err(SpoolError::io(&path))?.len() > end {
                    file.set_len(end).map_err(SpoolError::io(&path))?;
                    file.sync_all().map_err(SpoolError::io(&path))?;
                }
                known.insert(
                    id,
                    Known {
                        end,
                        recipients: message.states.len(),
                    },
                );
                messages.push(message);
            }
            None => {
                fs::remove_file(&path).map_err(SpoolError::io(&path))?;
                discarded += 1;
            }
        }
    }
    if discarded > 0 || moved {
        sync_dir(msg_dir)?;
        for shard in 0..SHARDS {
            sync_dir(&msg_dir.join(shard_name(shard)))?;
        }
    }
    messages.sort_by_key(|m| m.id);
    Ok((
        Recovery {
            messages,
            discarded,
        },
        known,
    ))
}

/// What the packs hold.
struct PackRecovery {
    messages: Vec<(StoredMessage, Packed)>,
    /// Each pack's length; its use is counted from `messages`.
    packs: BTreeMap<u64, PackState>,
    /// Packs cut short.
    discarded: usize,
}

/// Reads every pack in order (see `pack.rs`), checking each body against
/// its seal, and cuts each at its first item that does not check: it was
/// being written when petrel stopped, so it was never acknowledged, and
/// nor was anything after it. The cuts are durable before the writer
/// starts.
fn recover_packs(pack_dir: &Path) -> Result<PackRecovery, SpoolError> {
    let mut found = Found::default();
    let mut packs = BTreeMap::new();
    let mut discarded = 0;
    for seq in pack_seqs(pack_dir).map_err(SpoolError::io(pack_dir))? {
        let path = pack_path(pack_dir, seq);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(SpoolError::io(&path))?;
        let len = file.metadata().map_err(SpoolError::io(&path))?.len();
        let valid = pack::scan(&file, len, true, |item| found.apply(seq, item))
            .map_err(SpoolError::io(&path))?;
        found.end_of_pack();
        // Zeros written ahead (`writer::ZEROS_AHEAD`) stay, to be written
        // over; anything else after the last whole item was never
        // acknowledged and must not be read after the next ones.
        let mut allocated = len;
        if valid < len && !pack::zeros(&file, valid, len).map_err(SpoolError::io(&path))? {
            file.set_len(valid).map_err(SpoolError::io(&path))?;
            file.sync_all().map_err(SpoolError::io(&path))?;
            discarded += 1;
            allocated = valid;
        }
        packs.insert(
            seq,
            PackState {
                len: valid,
                allocated,
                ..PackState::default()
            },
        );
    }
    Ok(PackRecovery {
        messages: found.into_messages(),
        packs,
        discarded,
    })
}

/// The messages of packs read in order, as their items leave them.
#[derive(Default)]
struct Found {
    messages: HashMap<QueueId, (Envelope, u64, Packed)>,
    /// A move record just read: the block that follows is that message's.
    moving: Option<(QueueId, Changes)>,
}

impl Found {
    fn apply(&mut self, seq: u64, item: Item) {
        let moving = self.moving.take();
        match item {
            Item::Message { head, start, end } => {
                let mut states = vec![(RecipientState::Pending, 0); head.envelope.recipients.len()];
                match moving {
                    Some((id, changes)) if id == head.id => apply_changes(&mut states, &changes),
                    // A second block of a message without its move record
                    // is none the writer makes: the first one stands.
                    _ if self.messages.contains_key(&head.id) => return,
                    _ => {}
                }
                let packed = Packed {
                    seq,
                    start,
                    end,
                    states,
                };
                self.messages
                    .insert(head.id, (head.envelope, head.body_len, packed));
            }
            Item::Record(PackRecord::States { id, changes }) => {
                if let Some((_, _, p)) = self.messages.get_mut(&id) {
                    apply_changes(&mut p.states, &changes);
                }
            }
            Item::Record(PackRecord::Removed(id)) => {
                self.messages.remove(&id);
            }
            Item::Record(PackRecord::Moved { id, changes }) => self.moving = Some((id, changes)),
        }
    }

    /// A move record is followed by its block in the same pack, or it was
    /// cut short there.
    fn end_of_pack(&mut self) {
        self.moving = None;
    }

    fn into_messages(self) -> Vec<(StoredMessage, Packed)> {
        self.messages
            .into_iter()
            .map(|(id, (envelope, size, packed))| {
                let message = StoredMessage {
                    id,
                    envelope,
                    states: packed.states.iter().map(|&(s, _)| s).collect(),
                    attempts: packed.states.iter().map(|&(_, a)| a).collect(),
                    size,
                };
                (message, packed)
            })
            .collect()
    }
}

/// An index past the recipients cannot have been written by the spool,
/// which checks it; ignoring it keeps the rest readable.
fn apply_changes(states: &mut [(RecipientState, u32)], changes: &[(usize, RecipientState, u32)]) {
    for &(index, state, attempts) in changes {
        if let Some(slot) = states.get_mut(index) {
            *slot = (state, attempts);
        }
    }
}

/// The high half of this run's queue ids: now in seconds, but always past
/// the last run's (kept in `DIR/epoch`) and every recovered id's, so that
/// a restart within the second, or after the clock stepped back, does not
/// repeat an id. Durable before the first id is handed out.
///
/// A run that allocates 2^32 ids moves into the next second's range; a
/// later run could reuse those only if it started within that many
/// seconds of this one's start while the clock is behind, which at any
/// possible rate of mail is not going to happen.
fn next_epoch(dir: &Path, recovery: &Recovery) -> Result<u64, SpoolError> {
    let path = dir.join(EPOCH_FILE);
    let last = match fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<u64>().map_err(|_| SpoolError::Io {
            path: path.clone(),
            source: io::Error::new(io::ErrorKind::InvalidData, "not a number"),
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(SpoolError::Io { path, source: e }),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let recovered = recovery.messages.last().map_or(0, |m| m.id.0 >> 32);
    let epoch = now.max(last + 1).max(recovered + 1);
    if epoch >= 1 << 32 {
        return Err(SpoolError::Io {
            path,
            source: io::Error::other("queue ids exhausted (the clock is past 2106)"),
        });
    }
    // Write-then-rename: the file is either the last run's or this one's.
    let tmp = dir.join("epoch.tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(SpoolError::io(&tmp))?;
    writeln!(f, "{epoch}").map_err(SpoolError::io(&tmp))?;
    f.sync_all().map_err(SpoolError::io(&tmp))?;
    fs::rename(&tmp, &path).map_err(SpoolError::io(&path))?;
    sync_dir(dir)?;
    Ok(epoch)
}

/// Creates `dir` (0700) if it does not exist, and makes its name durable.
fn create_dir(dir: &Path) -> Result<(), SpoolError> {
    match DirBuilder::new().recursive(false).mode(0o700).create(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(SpoolError::Io {
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SpoolError::io(dir))
}

/// One petrel per spool: two writers would each think they know the
/// files' ends, and both recover (remove) the other's files in progress.
fn lock(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(SpoolError::io(&path))?;
    // SAFETY: flock takes a descriptor, which `file` keeps open.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            SpoolError::Locked(dir.to_path_buf())
        } else {
            SpoolError::Io { path, source: e }
        });
    }
    Ok(file)
}

#[cfg(test)]
mod tests;
