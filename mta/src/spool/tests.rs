use std::os::unix::fs::PermissionsExt;
use std::sync::mpsc;
use std::time::Duration;

use super::message::Recipient;
use super::*;

fn envelope(recipients: usize) -> Envelope {
    Envelope {
        sender: "sender@example.org".into(),
        recipients: (0..recipients)
            .map(|i| Recipient {
                address: format!("r{i}@example.com"),
                notify: (i == 0).then(|| "FAILURE".to_string()),
                orcpt: None,
            })
            .collect(),
        ret: None,
        envid: Some("env-1".into()),
        received_at: UNIX_EPOCH + Duration::from_secs(1_750_000_000),
        client: "192.0.2.7:40000".parse().unwrap(),
        binding: "default".into(),
    }
}

fn body(text: &str) -> Vec<Bytes> {
    let mid = text.len() / 2;
    vec![
        Bytes::from("Received: from test\r\n"),
        Bytes::copy_from_slice(&text.as_bytes()[..mid]),
        Bytes::new(),
        Bytes::copy_from_slice(&text.as_bytes()[mid..]),
    ]
}

fn flat(body: &[Bytes]) -> Vec<u8> {
    body.concat()
}

fn wait(f: impl FnOnce(Box<dyn FnOnce(Result<(), StoreError>) + Send>)) -> Result<(), StoreError> {
    let (tx, rx) = mpsc::channel();
    f(Box::new(move |r| tx.send(r).unwrap()));
    rx.recv().unwrap()
}

fn store(spool: &Spool, envelope: Envelope, body: Vec<Bytes>) -> Result<QueueId, StoreError> {
    let id = spool.new_id();
    wait(|done| spool.store(id, envelope, body, done)).map(|()| id)
}

/// Stores a message as the listener stores a large one: spilled, into a
/// file of its own in `msg/`.
fn store_spilled(
    spool: &Spool,
    envelope: Envelope,
    body: Vec<Bytes>,
) -> Result<QueueId, StoreError> {
    let id = spool.new_id();
    spool.spill(id, &envelope, body, || ());
    wait(|done| spool.store(id, envelope, Vec::new(), done)).map(|()| id)
}

/// The file holding message `id`: its pack, or its own.
fn file_of(spool: &Spool, id: QueueId) -> PathBuf {
    match spool.inner.bodies.read().unwrap().get(&id) {
        Some(BodyAt::Pack { seq, .. }) => pack_path(&spool.inner.pack_dir, *seq),
        _ => message_path(&spool.inner.msg_dir, id),
    }
}

fn len_of(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

/// Where a pack's items end: zeros written ahead may follow.
fn used_of(path: &Path) -> u64 {
    let file = File::open(path).unwrap();
    pack::scan(&file, len_of(path), false, |_| {}).unwrap()
}

#[test]
fn round_trip_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, recovery) = Spool::open(dir.path()).unwrap();
    assert!(recovery.messages.is_empty());
    let b = body("Subject: hi\r\n\r\nhello\r\n");
    let id = store(&spool, envelope(2), b.clone()).unwrap();
    assert_eq!(spool.read_body(id).unwrap(), flat(&b));
    spool.shutdown();
    drop(spool);

    let (spool, recovery) = Spool::open(dir.path()).unwrap();
    assert_eq!(recovery.discarded, 0);
    assert_eq!(
        recovery.messages,
        [StoredMessage {
            id,
            envelope: envelope(2),
            states: vec![RecipientState::Pending; 2],
            attempts: vec![0; 2],
            size: flat(&b).len() as u64,
        }]
    );
    assert_eq!(spool.read_body(id).unwrap(), flat(&b));
}

#[test]
fn modes_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("spool");
    let (spool, _) = Spool::open(&root).unwrap();
    let id = store(&spool, envelope(1), body("x")).unwrap();
    let spilled = store_spilled(&spool, envelope(1), body("y")).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join(MSG_DIR)), 0o700);
    assert_eq!(mode(&root.join(PACK_DIR)), 0o700);
    for shard in 0..SHARDS {
        assert_eq!(mode(&root.join(MSG_DIR).join(shard_name(shard))), 0o700);
    }
    assert!(file_of(&spool, id).starts_with(root.join(PACK_DIR)));
    assert_eq!(mode(&file_of(&spool, id)), 0o600);
    assert_eq!(mode(&message_path(&root.join(MSG_DIR), spilled)), 0o600);
}

#[test]
fn ids_increase_within_a_run_and_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut last = QueueId(0);
    for _ in 0..3 {
        let (spool, _) = Spool::open(dir.path()).unwrap();
        for _ in 0..5 {
            let id = spool.new_id();
            assert!(id > last, "{id} after {last}");
            last = id;
        }
    }
}

#[test]
fn a_second_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_spool, _) = Spool::open(dir.path()).unwrap();
    assert!(matches!(
        Spool::open(dir.path()),
        Err(SpoolError::Locked(_))
    ));
}

#[test]
fn a_body_reads_in_chunks_and_a_damaged_one_fails_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let text: String = (0..1000).map(|n| format!("line {n}\r\n")).collect();
    let b = body(&text);
    let id = store(&spool, envelope(1), b.clone()).unwrap();
    // A record after the body is not part of it.
    let delivered = StateChange {
        recipient: 0,
        state: RecipientState::Delivered,
        attempts: 1,
    };
    wait(|d| spool.update(id, vec![delivered], d)).unwrap();

    let mut stored = spool.open_body(id).unwrap();
    assert_eq!(stored.len(), flat(&b).len() as u64);
    for _ in 0..2 {
        let mut read = Vec::new();
        while let Some(chunk) = stored.next_chunk(1000).unwrap() {
            assert!(!chunk.is_empty() && chunk.len() <= 1000);
            read.extend_from_slice(&chunk);
        }
        assert_eq!(read, flat(&b));
        stored.rewind();
    }

    // One octet of the body changed on disk: every chunk but the last
    // comes, the last is an error.
    let f = OpenOptions::new()
        .write(true)
        .open(file_of(&spool, id))
        .unwrap();
    f.write_all_at(b"X", stored.start + 10).unwrap();
    let mut damaged = spool.open_body(id).unwrap();
    let chunks = stored.len().div_ceil(1000);
    for _ in 1..chunks {
        assert!(damaged.next_chunk(1000).unwrap().is_some());
    }
    let e = damaged.next_chunk(1000).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(spool.read_body(id).is_err());
    assert!(spool.open_body(QueueId(12345)).is_err());
}

#[test]
fn a_spilled_body_is_stored_whole_and_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let id = spool.new_id();
    let parts: Vec<Vec<Bytes>> = (0..3)
        .map(|n| body(&format!("part {n} ").repeat(1000 * (n + 1))))
        .collect();
    for part in &parts[..2] {
        // `written` runs once the writer has put the part in the draft:
        // the listener reads its client again only then.
        let (tx, rx) = mpsc::channel();
        spool.spill(id, &envelope(2), part.clone(), move || tx.send(()).unwrap());
        rx.recv().unwrap();
        let draft = fs::read(message_path(&spool.inner.msg_dir, id)).unwrap();
        let tail = flat(part);
        assert!(
            draft.ends_with(&tail),
            "the part is in the draft when `written` runs"
        );
    }
    // Until its store, the draft is no message to anyone reading.
    let other = store(&spool, envelope(1), body("other")).unwrap();
    assert_eq!(list(dir.path()).unwrap().len(), 1);
    assert_eq!(list(dir.path()).unwrap()[0].id, other);
    wait(|d| spool.store(id, envelope(2), parts[2].clone(), d)).unwrap();
    let whole = flat(&parts.concat());
    assert_eq!(spool.read_body(id).unwrap(), whole);
    // Records follow it as they follow any message.
    let delivered = StateChange {
        recipient: 1,
        state: RecipientState::Delivered,
        attempts: 1,
    };
    wait(|d| spool.update(id, vec![delivered], d)).unwrap();
    drop(spool);

    let (spool, recovery) = Spool::open(dir.path()).unwrap();
    assert_eq!(recovery.discarded, 0);
    let m = recovery.messages.iter().find(|m| m.id == id).unwrap();
    assert_eq!(m.envelope, envelope(2));
    assert_eq!(m.size, whole.len() as u64);
    assert_eq!(
        m.states,
        [RecipientState::Pending, RecipientState::Delivered]
    );
    assert_eq!(spool.read_body(id).unwrap(), whole);
}

#[test]
fn drafts_not_stored_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let path = |id: QueueId| message_path(&dir.path().join(MSG_DIR), id);
    // Discarded: gone once the writer got that far (jobs keep their order).
    let discarded = spool.new_id();
    spool.spill(discarded, &envelope(1), body("abandoned"), || ());
    spool.discard(discarded);
    store(&spool, envelope(1), body("after")).unwrap();
    assert!(!path(discarded).exists());
    // Stored with another envelope than it spilled with: refused, removed.
    let changed = spool.new_id();
    spool.spill(changed, &envelope(1), body("one recipient"), || ());
    let e = wait(|d| spool.store(changed, envelope(3), body("three"), d)).unwrap_err();
    assert!(matches!(e, StoreError::Io(_)), "{e:?}");
    assert!(!path(changed).exists());
    // Left behind (as by a crash): removed at the next start.
    let left = spool.new_id();
    spool.spill(left, &envelope(1), body("left behind"), || ());
    store(&spool, envelope(1), body("after")).unwrap();
    assert!(path(left).exists());
    drop(spool);
    let (_, recovery) = Spool::open(dir.path()).unwrap();
    assert_eq!(recovery.discarded, 1);
    assert!(!path(left).exists());
    assert_eq!(recovery.messages.len(), 2);
}

#[test]
fn updates_and_removals_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let a = store(&spool, envelope(3), body("a")).unwrap();
    let b = store(&spool, envelope(1), body("b")).unwrap();
    let change = |recipient, state| StateChange {
        recipient,
        state,
        attempts: 1,
    };
    wait(|d| spool.update(a, vec![change(0, RecipientState::Failed)], d)).unwrap();
    wait(|d| {
        spool.update(
            a,
            vec![
                change(0, RecipientState::Delivered),
                change(2, RecipientState::Failed),
            ],
            d,
        )
    })
    .unwrap();
    // A deferral records attempts alone.
    let deferred = StateChange {
        recipient: 1,
        state: RecipientState::Pending,
        attempts: 4,
    };
    wait(|d| spool.update(a, vec![deferred], d)).unwrap();
    // Out of range and unknown: refused, and nothing written.
    let e = wait(|d| spool.update(a, vec![change(3, RecipientState::Failed)], d)).unwrap_err();
    assert!(matches!(&e, StoreError::Io(e) if e.kind() == io::ErrorKind::InvalidInput));
    let e = wait(|d| spool.update(QueueId(1), vec![], d)).unwrap_err();
    assert!(matches!(&e, StoreError::Io(e) if e.kind() == io::ErrorKind::NotFound));
    wait(|d| spool.remove(b, d)).unwrap();
    let e = wait(|d| spool.remove(b, d)).unwrap_err();
    assert!(matches!(&e, StoreError::Io(e) if e.kind() == io::ErrorKind::NotFound));
    drop(spool);

    let (spool, recovery) = Spool::open(dir.path()).unwrap();
    assert_eq!(recovery.messages.len(), 1);
    assert_eq!(recovery.messages[0].id, a);
    assert_eq!(
        recovery.messages[0].states,
        [
            RecipientState::Delivered,
            RecipientState::Pending,
            RecipientState::Failed
        ]
    );
    assert_eq!(recovery.messages[0].attempts, [1, 4, 1]);
    // Updates still append after a reopen.
    wait(|d| spool.update(a, vec![change(1, RecipientState::Delivered)], d)).unwrap();
    drop(spool);
    let listed = list(dir.path()).unwrap();
    assert_eq!(
        listed[0].states,
        [RecipientState::Delivered; 2]
            .iter()
            .chain(&[RecipientState::Failed])
            .copied()
            .collect::<Vec<_>>()
    );
}

#[test]
fn half_written_files_are_discarded_and_torn_records_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let keep = store_spilled(&spool, envelope(1), body("keep me")).unwrap();
    let cut = store_spilled(&spool, envelope(1), body("cut me short")).unwrap();
    let flip = store_spilled(&spool, envelope(1), body("flip a bit")).unwrap();
    let torn = store_spilled(&spool, envelope(2), body("torn record")).unwrap();
    let change = |recipient| StateChange {
        recipient,
        state: RecipientState::Delivered,
        attempts: 1,
    };
    wait(|d| spool.update(torn, vec![change(0)], d)).unwrap();
    wait(|d| spool.update(torn, vec![change(1)], d)).unwrap();
    drop(spool);

    let path = |id: QueueId| message_path(&dir.path().join(MSG_DIR), id);
    let f = OpenOptions::new().write(true).open(path(cut)).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - 3).unwrap();
    let f = OpenOptions::new().write(true).open(path(flip)).unwrap();
    f.write_all_at(b"F", len - 8).unwrap();
    let f = OpenOptions::new().write(true).open(path(torn)).unwrap();
    let torn_len = f.metadata().unwrap().len();
    f.set_len(torn_len - 1).unwrap();
    // Garbage named like a message, and a file that is not one of ours.
    fs::write(path(QueueId(7)), b"PETRELQ1 and then nothing useful").unwrap();
    fs::write(dir.path().join(MSG_DIR).join("README"), b"not mine").unwrap();

    // An offline listing skips the short ones (it does not read bodies,
    // so the flipped bit shows only at recovery).
    let listed: Vec<_> = list(dir.path()).unwrap().iter().map(|m| m.id).collect();
    assert_eq!(listed, [keep, flip, torn]);

    let (spool, recovery) = Spool::open(dir.path()).unwrap();
    assert_eq!(recovery.discarded, 3);
    let ids: Vec<_> = recovery.messages.iter().map(|m| m.id).collect();
    assert_eq!(ids, [keep, torn]);
    assert_eq!(
        recovery.messages[1].states,
        [RecipientState::Delivered, RecipientState::Pending]
    );
    assert!(!path(cut).exists() && !path(flip).exists() && !path(QueueId(7)).exists());
    assert!(dir.path().join(MSG_DIR).join("README").exists());
    assert_eq!(spool.read_body(keep).unwrap(), flat(&body("keep me")));
    // The torn record was cut off, so the next one is read after the first.
    wait(|d| spool.update(torn, vec![change(1)], d)).unwrap();
    drop(spool);
    let (_spool, recovery) = Spool::open(dir.path()).unwrap();
    assert_eq!(recovery.messages[1].states, [RecipientState::Delivered; 2]);
}

/// A pack is cut at its first item that does not check, and everything
/// after it goes with it: written after it, none of it was acknowledged.
#[test]
fn a_pack_is_cut_at_its_first_damage() {
    let dir = tempfile::tempdir().unwrap();
    let change = |recipient| StateChange {
        recipient,
        state: RecipientState::Delivered,
        attempts: 1,
    };

    // A torn last record: the message stays as the record before left it.
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let a = store(&spool, envelope(2), body("a")).unwrap();
    wait(|d| spool.update(a, vec![change(0)], d)).unwrap();
    wait(|d| spool.update(a, vec![change(1)], d)).unwrap();
    let pack = file_of(&spool, a);
    drop(spool);
    // Zeros written ahead follow the items: they stay.
    assert!(len_of(&pack) > used_of(&pack));
    let f = OpenOptions::new().write(true).open(&pack).unwrap();
    f.set_len(used_of(&pack) - 1).unwrap();
    let listed = list(dir.path()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].states,
        [RecipientState::Delivered, RecipientState::Pending]
    );
    let (spool, recovery) = Spool::open(dir.path()).unwrap();
    assert_eq!(recovery.discarded, 1);
    assert_eq!(
        recovery.messages[0].states,
        [RecipientState::Delivered, RecipientState::Pending]
    );

    // A flipped bit in a body: that message and the rest of its pack go;
    // earlier ones, and other packs, stay.
    let b = store(&spool, envelope(1), body("b is fine")).unwrap();
    let c = store(&spool, envelope(1), body("c gets a flipped bit")).unwrap();
    let d = store(&spool, envelope(1), body("d comes after")).unwrap();
    let mut c_body = spool.open_body(c).unwrap();
    let pack = file_of(&spool, c);
    assert_eq!(pack, file_of(&spool, d));
    drop(spool);
    let f = OpenOptions::new().write(true).open(&pack).unwrap();
    f.write_all_at(b"X", c_body.start + 3).unwrap();
    assert!(c_body.next_chunk(1 << 20).is_err());
    let (spool, recovery) = Spool::open(dir.path()).unwrap();
    assert_eq!(recovery.discarded, 1);
    let ids: Vec<_> = recovery.messages.iter().map(|m| m.id).collect();
    assert_eq!(ids, [a, b]);
    assert!(spool.open_body(d).is_err());
    // Garbage that is no pack's name is left alone.
    fs::write(dir.path().join(PACK_DIR).join("README"), b"not mine").unwrap();
    drop(spool);
    let (spool, recovery) = Spool::open(dir.path()).unwrap();
    assert_eq!(recovery.discarded, 0);
    assert_eq!(recovery.messages.len(), 2);
    assert_eq!(spool.read_body(b).unwrap(), flat(&body("b is fine")));
}

#[test]
fn many_submitters_are_all_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for t in 0..20 {
            let spool = spool.clone();
            let tx = tx.clone();
            s.spawn(move || {
                for i in 0..25 {
                    let text = format!("thread {t} message {i}");
                    let id = store(&spool, envelope(1), body(&text)).unwrap();
                    tx.send((id, text)).unwrap();
                }
            });
        }
    });
    drop(tx);
    let mut stored: Vec<_> = rx.iter().collect();
    stored.sort();
    assert_eq!(stored.len(), 500);
    drop(spool);

    let (spool, recovery) = Spool::open(dir.path()).unwrap();
    let ids: Vec<_> = recovery.messages.iter().map(|m| m.id).collect();
    assert_eq!(ids, stored.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    for (id, text) in stored {
        assert_eq!(spool.read_body(id).unwrap(), flat(&body(&text)));
    }
}

/// A crash while writing over the zeros ahead can leave a later page on
/// disk without an earlier one: an item after a gap of zeros. It was never
/// acknowledged, and must not be read after the next items written there:
/// recovery cuts it, and keeps a tail of zeros alone.
#[test]
fn an_item_after_zeros_is_cut_and_zeros_alone_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let a = store(&spool, envelope(2), body("a")).unwrap();
    let pack = file_of(&spool, a);
    drop(spool);
    let used = used_of(&pack);
    assert!(len_of(&pack) >= used + 4096, "no zeros ahead");
    let stray = format::encode_pack_states(a, &[(0, RecipientState::Delivered, 1)]);
    let f = OpenOptions::new().write(true).open(&pack).unwrap();
    f.write_all_at(&stray, used + 1000).unwrap();

    let (spool, recovery) = Spool::open(dir.path()).unwrap();
    assert_eq!(recovery.discarded, 1);
    assert_eq!(recovery.messages[0].states, [RecipientState::Pending; 2]);
    assert_eq!(len_of(&pack), used);
    let delivered = StateChange {
        recipient: 1,
        state: RecipientState::Delivered,
        attempts: 1,
    };
    wait(|d| spool.update(a, vec![delivered], d)).unwrap();
    drop(spool);
    let (_spool, recovery) = Spool::open(dir.path()).unwrap();
    assert_eq!(recovery.discarded, 0);
    assert_eq!(
        recovery.messages[0].states,
        [RecipientState::Pending, RecipientState::Delivered]
    );
}

/// Small packs: a full one is followed by a new one; a pack nothing lives
/// in any more is removed, whatever lives in older ones; the live
/// messages of a mostly dead pack are moved forward, with their states,
/// so that it can go. Through all of it every message reads back, and a
/// restart finds each where it went.
#[test]
fn packs_roll_move_and_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    // No slack: moved as soon as the packs hold twice what lives.
    let options = SpoolOptions {
        pack_size: 2000,
        max_packs: 0,
    };
    let (spool, _) = Spool::open_with(dir.path(), options).unwrap();
    let packs = || pack_seqs(&dir.path().join(PACK_DIR)).unwrap();
    let text = |n: usize| format!("message {n} ").repeat(40);
    let ids: Vec<QueueId> = (0..12)
        .map(|n| store(&spool, envelope(2), body(&text(n))).unwrap())
        .collect();
    assert!(packs().len() >= 3, "{:?}", packs());
    let first_pack = file_of(&spool, ids[0]);
    // The first message lives on, one recipient delivered; every other
    // is done with.
    let delivered = StateChange {
        recipient: 1,
        state: RecipientState::Delivered,
        attempts: 3,
    };
    wait(|d| spool.update(ids[0], vec![delivered], d)).unwrap();
    for &id in &ids[1..] {
        wait(|d| spool.remove(id, d)).unwrap();
    }
    // One more round for the collection after the last removal.
    let last = store(&spool, envelope(1), body("last")).unwrap();
    assert!(!first_pack.exists(), "{:?}", packs());
    assert!(packs().len() <= 2, "{:?}", packs());
    assert_ne!(file_of(&spool, ids[0]), first_pack);
    assert_eq!(spool.read_body(ids[0]).unwrap(), flat(&body(&text(0))));
    let listed: Vec<_> = list(dir.path()).unwrap().iter().map(|m| m.id).collect();
    assert_eq!(listed, [ids[0], last]);
    drop(spool);

    let (spool, recovery) = Spool::open_with(dir.path(), options).unwrap();
    assert_eq!(recovery.discarded, 0);
    let ids_now: Vec<_> = recovery.messages.iter().map(|m| m.id).collect();
    assert_eq!(ids_now, [ids[0], last]);
    assert_eq!(
        recovery.messages[0].states,
        [RecipientState::Pending, RecipientState::Delivered]
    );
    assert_eq!(recovery.messages[0].attempts, [0, 3]);
    assert_eq!(spool.read_body(ids[0]).unwrap(), flat(&body(&text(0))));
    // The moved message goes on as any other.
    wait(|d| spool.remove(ids[0], d)).unwrap();
    wait(|d| spool.remove(last, d)).unwrap();
    store(&spool, envelope(1), body("after")).unwrap();
    drop(spool);
    let (_spool, recovery) = Spool::open_with(dir.path(), options).unwrap();
    assert_eq!(recovery.messages.len(), 1);
    assert!(packs().len() <= 3, "{:?}", packs());
}

#[test]
fn after_shutdown_jobs_fail_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    spool.shutdown();
    assert!(matches!(
        store(&spool, envelope(1), body("late")),
        Err(StoreError::Io(_))
    ));
}

#[test]
fn a_panicking_callback_does_not_stop_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    spool.store(spool.new_id(), envelope(1), body("x"), |_| {
        panic!("a listener bug");
    });
    store(&spool, envelope(1), body("y")).unwrap();
}

#[test]
fn the_spool_is_shared_across_threads() {
    fn shared<T: Send + Sync + Clone>() {}
    shared::<Spool>();
    fn sent<T: Send + Sync>() {}
    sent::<StoreError>();
    sent::<SpoolError>();
}

#[test]
fn a_failed_sync_takes_the_round_back() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let fail_next_sync = || {
        spool
            .inner
            .shared
            .fail_next_sync
            .store(true, Ordering::SeqCst)
    };
    let io_error = |r: Result<(), StoreError>| match r {
        Err(StoreError::Io(e)) => e.raw_os_error() == Some(libc::EIO),
        _ => false,
    };
    let change = |recipient, state| StateChange {
        recipient,
        state,
        attempts: 1,
    };
    let a = store(&spool, envelope(2), body("a")).unwrap();
    let pack = file_of(&spool, a);
    let pack_len = used_of(&pack);

    // A store: refused, and nothing of it left in the pack.
    fail_next_sync();
    let b = spool.new_id();
    assert!(io_error(wait(|d| spool.store(
        b,
        envelope(1),
        body("b"),
        d
    ))));
    assert_eq!(used_of(&pack), pack_len);
    let e = wait(|d| spool.update(b, vec![], d)).unwrap_err();
    assert!(matches!(&e, StoreError::Io(e) if e.kind() == io::ErrorKind::NotFound));

    // An update: refused, its record cut off, and the next one lands where
    // it was.
    fail_next_sync();
    assert!(io_error(wait(|d| spool.update(
        a,
        vec![change(0, RecipientState::Failed)],
        d
    ))));
    assert_eq!(used_of(&pack), pack_len);
    wait(|d| spool.update(a, vec![change(1, RecipientState::Delivered)], d)).unwrap();

    // A removal from a pack: refused, and taken back too.
    let c = store(&spool, envelope(1), body("c")).unwrap();
    fail_next_sync();
    assert!(io_error(wait(|d| spool.remove(c, d))));
    assert_eq!(spool.read_body(c).unwrap(), flat(&body("c")));
    wait(|d| spool.remove(c, d)).unwrap();

    // A spilled message: its file removed when its store fails; its
    // record cut off when its update does; its removal, an unlink, cannot
    // be taken back: reported failed, yet done.
    fail_next_sync();
    let e = store_spilled(&spool, envelope(1), body("spilled")).unwrap_err();
    assert!(io_error(Err(e)));
    assert_eq!(files_under(&dir.path().join(MSG_DIR)), 0);
    let s = store_spilled(&spool, envelope(2), body("spilled")).unwrap();
    let s_len = len_of(&file_of(&spool, s));
    fail_next_sync();
    assert!(io_error(wait(|d| spool.update(
        s,
        vec![change(0, RecipientState::Failed)],
        d
    ))));
    assert_eq!(len_of(&file_of(&spool, s)), s_len);
    fail_next_sync();
    assert!(io_error(wait(|d| spool.remove(s, d))));
    let e = wait(|d| spool.remove(s, d)).unwrap_err();
    assert!(matches!(&e, StoreError::Io(e) if e.kind() == io::ErrorKind::NotFound));
    drop(spool);

    let (_, recovery) = Spool::open(dir.path()).unwrap();
    assert_eq!(recovery.discarded, 0);
    let ids: Vec<_> = recovery.messages.iter().map(|m| m.id).collect();
    assert_eq!(ids, [a]);
    assert_eq!(
        recovery.messages[0].states,
        [RecipientState::Pending, RecipientState::Delivered]
    );
}

fn files_under(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                files_under(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// Makes the next sync wait for `release`, then fail with EIO, and counts
/// every sync that begins (the forced one included) in `begun`.
struct HeldSync {
    entered: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
    begun: Arc<std::sync::atomic::AtomicUsize>,
}

fn hold_next_sync(spool: &Spool) -> HeldSync {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let begun = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = begun.clone();
    let mut first = true;
    *spool.inner.shared.sync_hook.lock().unwrap() = Some(Box::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        if !std::mem::take(&mut first) {
            return None;
        }
        let _ = entered_tx.send(());
        let _ = release_rx.recv_timeout(Duration::from_secs(30));
        Some(io::Error::from_raw_os_error(libc::EIO))
    }));
    HeldSync {
        entered,
        release,
        begun,
    }
}

/// A job's outcome, and how many syncs had begun when it was reported.
type Outcome = (Result<(), StoreError>, usize);

fn submit(
    begun: &Arc<std::sync::atomic::AtomicUsize>,
    f: impl FnOnce(Box<dyn FnOnce(Result<(), StoreError>) + Send>),
) -> mpsc::Receiver<Outcome> {
    let (tx, rx) = mpsc::channel();
    let begun = begun.clone();
    f(Box::new(move |r| {
        let _ = tx.send((r, begun.load(Ordering::SeqCst)));
    }));
    rx
}

fn outcome(rx: &mpsc::Receiver<Outcome>) -> Outcome {
    rx.recv_timeout(Duration::from_secs(30)).unwrap()
}

fn is_eio(r: &Result<(), StoreError>) -> bool {
    matches!(r, Err(StoreError::Io(e)) if e.raw_os_error() == Some(libc::EIO))
}

/// Rounds do not overlap: jobs that come while a round syncs wait for
/// its outcome, and go in the next round, acknowledged after a sync of
/// their own; a job on a message of a failed round finds it taken back.
#[test]
fn jobs_during_a_failed_sync_go_in_the_next_round() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let change = |recipient, state| StateChange {
        recipient,
        state,
        attempts: 1,
    };

    // Round N: a store, whose sync is held, then fails.
    let held = hold_next_sync(&spool);
    let a = spool.new_id();
    let a_done = submit(&held.begun, |d| spool.store(a, envelope(1), body("a"), d));
    held.entered.recv_timeout(Duration::from_secs(30)).unwrap();
    // Meanwhile: a store, and an update of N's message.
    let b = spool.new_id();
    let b_done = submit(&held.begun, |d| spool.store(b, envelope(1), body("b"), d));
    let a_update = submit(&held.begun, |d| {
        spool.update(a, vec![change(0, RecipientState::Delivered)], d)
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(b_done.try_recv().is_err());
    held.release.send(()).unwrap();

    let (r, _) = outcome(&a_done);
    assert!(is_eio(&r), "{r:?}");
    // Acknowledged after a second sync, its own, began (and succeeded).
    let (r, begun) = outcome(&b_done);
    assert!(r.is_ok(), "{r:?}");
    assert!(begun >= 2, "b acknowledged after {begun} sync(s)");
    // The store it followed was taken back: nothing to update.
    let (r, _) = outcome(&a_update);
    assert!(
        matches!(&r, Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound),
        "{r:?}"
    );
    assert!(spool.open_body(a).is_err());

    // Two updates of one message, the first's round failing while the
    // second waits: the second lands where the first was cut off.
    let c = store(&spool, envelope(2), body("c")).unwrap();
    let pack = file_of(&spool, c);
    let c_len = used_of(&pack);
    let held = hold_next_sync(&spool);
    let first = submit(&held.begun, |d| {
        spool.update(c, vec![change(0, RecipientState::Failed)], d)
    });
    held.entered.recv_timeout(Duration::from_secs(30)).unwrap();
    let second = submit(&held.begun, |d| {
        spool.update(c, vec![change(1, RecipientState::Delivered)], d)
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(second.try_recv().is_err());
    held.release.send(()).unwrap();
    let (r, _) = outcome(&first);
    assert!(is_eio(&r), "{r:?}");
    let (r, begun) = outcome(&second);
    assert!(r.is_ok(), "{r:?}");
    assert!(begun >= 2);
    assert_eq!(
        used_of(&pack) - c_len,
        format::encode_pack_states(c, &[(1, RecipientState::Delivered, 1)]).len() as u64
    );
    drop(spool);

    let (_, recovery) = Spool::open(dir.path()).unwrap();
    assert_eq!(recovery.discarded, 0);
    let ids: Vec<_> = recovery.messages.iter().map(|m| m.id).collect();
    assert_eq!(ids, [b, c]);
    assert_eq!(
        recovery.messages[1].states,
        [RecipientState::Pending, RecipientState::Delivered]
    );
}

/// Stores submitted together land in one pack, one after another; an id
/// twice is stored once and refused once.
#[test]
fn a_batch_of_stores_lands_in_one_pack() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let (tx, rx) = mpsc::channel();
    let ids: Vec<QueueId> = (0..40).map(|_| spool.new_id()).collect();
    for (n, &id) in ids.iter().enumerate() {
        let tx = tx.clone();
        let text = format!("message {n}");
        spool.store(id, envelope(1), body(&text), move |r| {
            tx.send((id, r)).unwrap()
        });
    }
    let twice = ids[7];
    let tx2 = tx.clone();
    spool.store(twice, envelope(1), body("again"), move |r| {
        tx2.send((twice, r)).unwrap()
    });
    drop(tx);
    let results: Vec<_> = rx.iter().collect();
    assert_eq!(results.len(), 41);
    let refused = results.iter().filter(|(_, r)| r.is_err()).count();
    assert_eq!(refused, 1, "{results:?}");
    let pack = file_of(&spool, ids[0]);
    for (n, &id) in ids.iter().enumerate() {
        assert_eq!(file_of(&spool, id), pack);
        assert_eq!(
            spool.read_body(id).unwrap(),
            flat(&body(&format!("message {n}")))
        );
    }
    assert_eq!(files_under(&dir.path().join(MSG_DIR)), 0);
    drop(spool);
    let (_spool, recovery) = Spool::open(dir.path()).unwrap();
    assert_eq!(recovery.messages.len(), 40);
}

/// A spool written before the subdirectories (every file in `msg/`) is
/// listed as it is, and moved into them when opened, states and all.
#[test]
fn a_spool_of_the_flat_layout_moves_into_subdirectories() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let ids: Vec<QueueId> = (0..3)
        .map(|n| store_spilled(&spool, envelope(2), body(&format!("flat {n}"))).unwrap())
        .collect();
    let delivered = StateChange {
        recipient: 1,
        state: RecipientState::Delivered,
        attempts: 1,
    };
    wait(|d| spool.update(ids[1], vec![delivered], d)).unwrap();
    drop(spool);
    let msg_dir = dir.path().join(MSG_DIR);
    for &id in &ids {
        fs::rename(message_path(&msg_dir, id), msg_dir.join(id.to_string())).unwrap();
    }
    let listed: Vec<_> = list(dir.path()).unwrap().iter().map(|m| m.id).collect();
    assert_eq!(listed, ids);

    let (spool, recovery) = Spool::open(dir.path()).unwrap();
    assert_eq!(recovery.discarded, 0);
    let recovered: Vec<_> = recovery.messages.iter().map(|m| m.id).collect();
    assert_eq!(recovered, ids);
    assert_eq!(
        recovery.messages[1].states,
        [RecipientState::Pending, RecipientState::Delivered]
    );
    for (n, &id) in ids.iter().enumerate() {
        assert!(!msg_dir.join(id.to_string()).exists());
        assert_eq!(
            spool.read_body(id).unwrap(),
            flat(&body(&format!("flat {n}")))
        );
    }
    // And the writer knows where they are now.
    wait(|d| spool.update(ids[0], vec![delivered], d)).unwrap();
    wait(|d| spool.remove(ids[2], d)).unwrap();
    assert!(!message_path(&msg_dir, ids[2]).exists());
}

quickcheck::quickcheck! {
    /// Whatever a pack holds (a disk error, a hand edit), reading it stops
    /// at the first item that does not check, never panics, and reads no
    /// further than its end; pieces of real items mixed in included.
    fn any_pack_scans_without_panic(noise: Vec<u8>, pieces: Vec<(u8, u16)>) -> bool {
        let block = {
            let mut b = format::encode_head(QueueId(1), 3, &envelope(2));
            b.extend_from_slice(b"abc");
            b.extend_from_slice(&crc32fast::hash(b"abc").to_le_bytes());
            b
        };
        let record = format::encode_pack_states(QueueId(1), &[(1, RecipientState::Delivered, 2)]);
        let mut bytes = Vec::new();
        for (which, cut) in pieces {
            let item: &[u8] = if which % 2 == 0 { &block } else { &record };
            let cut = usize::from(cut) % (item.len() + 1);
            bytes.extend_from_slice(if which % 3 == 0 { &item[..cut] } else { item });
        }
        bytes.extend_from_slice(&noise);
        let file = tempfile::tempfile().unwrap();
        file.write_all_at(&bytes, 0).unwrap();
        let mut found = Found::default();
        let valid = pack::scan(&file, bytes.len() as u64, true, |item| found.apply(1, item)).unwrap();
        valid <= bytes.len() as u64
    }
}
