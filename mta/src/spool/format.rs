//! The bytes of a spool file, and nothing else: no IO happens here.
//!
//! A message's *block* is its head, body and seal. In a pack (`pack.rs`)
//! blocks follow one another, with records naming their message (`PACK_*`
//! kinds below). A message spilled as it arrived is one file, named by
//! its queue id (16 upper-case hex digits), its block then its records:
//!
//! ```text
//! head    "PETRELQ1"  u32 head_len  head[head_len]  u32 crc32(magic‖head_len‖head)
//!         head = u64 id, u64 body_len, the envelope (see encode_envelope)
//! body    body[body_len]                               (the message as received)
//! seal    u32 crc32(body)
//! records zero or more of: u32 len  payload[len]  u32 crc32(len‖payload)
//!         payload = u8 kind 2, u32 n, n × (u32 index, u8 state, u32 attempts)
//!                   (kind 1, written before attempts were kept, lacks them:
//!                   u8 1, u32 n, n × (u32 index, u8 state))
//! ```
//!
//! Integers are little-endian. The file is written in place, in one go,
//! and made durable before anyone is told it is stored; a crash can leave
//! it at any length, with any suffix of it never having reached the disk.
//! The checksums, the lengths and the id inside (which must match the
//! file's name, so blocks of some other message cannot pass for this one)
//! are what tell a stored message from one that was still being written:
//! a file whose head or seal does not check was never acknowledged and is
//! discarded. Records are appended later, one per durable state update;
//! a torn last record was never acknowledged either, and reading stops at
//! the first record that does not check.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::{Duration, UNIX_EPOCH};

use super::message::{Envelope, QueueId, Recipient};
use super::RecipientState;

pub(crate) const MAGIC: &[u8; 8] = b"PETRELQ1";

/// A head larger than this is corruption, not an envelope: it bounds what a
/// damaged length field can make a reader allocate.
const MAX_HEAD: u32 = 64 << 20;

/// A record larger than this is corruption (an update names at most every
/// recipient of a message).
const MAX_RECORD: u32 = 64 << 20;

/// Recipient states alone: still read, no longer written.
const RECORD_RECIPIENT_STATES: u8 = 1;
/// Recipient states and the attempts made for each.
const RECORD_RECIPIENTS: u8 = 2;
/// In a pack: states of a message's recipients (`u64 id`, then as kind 2).
const PACK_STATES: u8 = 3;
/// In a pack: a message is done with (`u64 id`).
const PACK_REMOVED: u8 = 4;
/// In a pack: a message moved to the block that follows (`u64 id`, then
/// every recipient's state as kind 2).
const PACK_MOVED: u8 = 5;

/// The head of a message file, with its magic, length and checksum: the
/// bytes that precede the body.
pub(crate) fn encode_head(id: QueueId, body_len: u64, envelope: &Envelope) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    put_u64(&mut head, id.0);
    put_u64(&mut head, body_len);
    encode_envelope(&mut head, envelope);
    let mut out = Vec::with_capacity(head.len() + 16);
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, len_u32(head.len()));
    out.extend_from_slice(&head);
    let crc = crc32fast::hash(&out);
    put_u32(&mut out, crc);
    out
}

/// A record setting recipients' states and attempt counts, framed with
/// its length and checksum.
pub(crate) fn encode_states_record(changes: &[(u32, RecipientState, u32)]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(5 + changes.len() * 9);
    payload.push(RECORD_RECIPIENTS);
    put_changes(&mut payload, changes);
    frame(&payload)
}

fn put_changes(out: &mut Vec<u8>, changes: &[(u32, RecipientState, u32)]) {
    put_u32(out, len_u32(changes.len()));
    for &(index, state, attempts) in changes {
        put_u32(out, index);
        out.push(state_byte(state));
        put_u32(out, attempts);
    }
}

/// `u32 len  payload  u32 crc32(len‖payload)`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    put_u32(&mut out, len_u32(payload.len()));
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    put_u32(&mut out, crc);
    out
}

/// The payload of the frame at the start of `bytes`, and the frame's
/// length; `None` if it is short, too long or does not check.
fn unframe(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let len = Reader(bytes).u32()?;
    if len > MAX_RECORD {
        return None;
    }
    let total = usize::try_from(len).ok()?.checked_add(8)?;
    let framed = bytes.get(..total)?;
    let (checked, crc) = framed.split_at_checked(total - 4)?;
    if crc32fast::hash(checked) != Reader(crc).u32()? {
        return None;
    }
    Some((checked.get(4..)?, total))
}

/// A pack's record: recipients' new states for the pack's message `id`.
pub(crate) fn encode_pack_states(id: QueueId, changes: &[(u32, RecipientState, u32)]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(13 + changes.len() * 9);
    payload.push(PACK_STATES);
    put_u64(&mut payload, id.0);
    put_changes(&mut payload, changes);
    frame(&payload)
}

/// A pack's record: message `id` is done with.
pub(crate) fn encode_pack_removed(id: QueueId) -> Vec<u8> {
    let mut payload = Vec::with_capacity(9);
    payload.push(PACK_REMOVED);
    put_u64(&mut payload, id.0);
    frame(&payload)
}

/// A pack's record: message `id` moves to the message block that follows
/// it, with these states (every recipient's, in order).
pub(crate) fn encode_pack_moved(id: QueueId, states: &[(RecipientState, u32)]) -> Vec<u8> {
    let changes: Vec<(u32, RecipientState, u32)> = states
        .iter()
        .enumerate()
        .map(|(i, &(state, attempts))| (len_u32(i), state, attempts))
        .collect();
    let mut payload = Vec::with_capacity(13 + changes.len() * 9);
    payload.push(PACK_MOVED);
    put_u64(&mut payload, id.0);
    put_changes(&mut payload, &changes);
    frame(&payload)
}

/// Recipients' new states: (index, state, attempts).
pub(crate) type Changes = Vec<(usize, RecipientState, u32)>;

/// A record of a pack (see `pack.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PackRecord {
    /// New states of some recipients of a message in a pack.
    States { id: QueueId, changes: Changes },
    /// The message is done with.
    Removed(QueueId),
    /// The message block that follows is message `id`, moved there with
    /// these recipients' states (all of them, by index).
    Moved { id: QueueId, changes: Changes },
}

/// The pack record at the start of `bytes` and its length, or `None` if
/// there is none that checks.
pub(crate) fn decode_pack_record(bytes: &[u8]) -> Option<(PackRecord, usize)> {
    let (payload, total) = unframe(bytes)?;
    let mut r = Reader(payload);
    let kind = r.u8()?;
    let id = QueueId(r.u64()?);
    let record = match kind {
        PACK_REMOVED => PackRecord::Removed(id),
        PACK_STATES | PACK_MOVED => {
            let n = r.u32()?;
            let mut changes = Vec::new();
            for _ in 0..n {
                let index = usize::try_from(r.u32()?).ok()?;
                let state = byte_state(r.u8()?)?;
                changes.push((index, state, r.u32()?));
            }
            if kind == PACK_STATES {
                PackRecord::States { id, changes }
            } else {
                PackRecord::Moved { id, changes }
            }
        }
        _ => return None,
    };
    r.0.is_empty().then_some((record, total))
}

/// What a message file's head says.
#[derive(Debug)]
pub(crate) struct Head {
    pub id: QueueId,
    pub envelope: Envelope,
    /// Where the body starts in the file.
    pub body_offset: u64,
    pub body_len: u64,
}

impl Head {
    /// Where the seal (the body's checksum) starts.
    pub(crate) fn seal_offset(&self) -> Option<u64> {
        self.body_offset.checked_add(self.body_len)
    }

    /// Where the records start: the end of the message proper.
    pub(crate) fn records_offset(&self) -> Option<u64> {
        self.seal_offset()?.checked_add(4)
    }
}

/// Why bytes are not a (complete) message file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Damage {
    /// Fewer bytes than the head says there are.
    Short,
    /// Bytes that cannot be a message: bad magic, checksum or encoding.
    Corrupt,
}

/// How many bytes the head needs in total, once the first 12 are known.
pub(crate) fn head_total_len(prefix: &[u8]) -> Result<usize, Damage> {
    let mut r = Reader(prefix);
    if r.bytes(8).ok_or(Damage::Short)? != MAGIC {
        return Err(Damage::Corrupt);
    }
    let len = r.u32().ok_or(Damage::Short)?;
    if len > MAX_HEAD {
        return Err(Damage::Corrupt);
    }
    usize::try_from(len)
        .ok()
        .and_then(|len| len.checked_add(16))
        .ok_or(Damage::Corrupt)
}

/// Decodes a head from the start of a file (`bytes` holds at least
/// [`head_total_len`] bytes).
pub(crate) fn decode_head(bytes: &[u8]) -> Result<Head, Damage> {
    let total = head_total_len(bytes)?;
    let (framed, _) = bytes.split_at_checked(total).ok_or(Damage::Short)?;
    let (checked, crc) = framed
        .split_at_checked(total.saturating_sub(4))
        .ok_or(Damage::Short)?;
    if crc32fast::hash(checked) != Reader(crc).u32().ok_or(Damage::Short)? {
        return Err(Damage::Corrupt);
    }
    let mut r = Reader(checked.get(12..).ok_or(Damage::Short)?);
    let id = QueueId(r.u64().ok_or(Damage::Corrupt)?);
    let body_len = r.u64().ok_or(Damage::Corrupt)?;
    let envelope = decode_envelope(&mut r).ok_or(Damage::Corrupt)?;
    if !r.0.is_empty() {
        return Err(Damage::Corrupt);
    }
    Ok(Head {
        id,
        envelope,
        body_offset: u64::try_from(total).map_err(|_| Damage::Corrupt)?,
        body_len,
    })
}

/// Reads records from `bytes` (everything after the seal), applying each
/// to `states`. Returns how many bytes of valid records there are: a torn
/// or damaged record and everything after it are not part of the file.
pub(crate) fn apply_records(
    mut bytes: &[u8],
    states: &mut [RecipientState],
    attempts: &mut [u32],
) -> usize {
    let mut valid = 0;
    while let Some(n) = apply_record(bytes, states, attempts) {
        valid += n;
        bytes = bytes.get(n..).unwrap_or_default();
    }
    valid
}

/// One record: its length if it checks (and was applied), `None` if not.
fn apply_record(
    bytes: &[u8],
    states: &mut [RecipientState],
    attempts: &mut [u32],
) -> Option<usize> {
    let (payload, total) = unframe(bytes)?;
    let mut r = Reader(payload);
    // Parse fully before applying, so a record is all or nothing.
    let with_attempts = match r.u8()? {
        RECORD_RECIPIENT_STATES => false,
        RECORD_RECIPIENTS => true,
        _ => return None,
    };
    let n = r.u32()?;
    let mut changes = Vec::new();
    for _ in 0..n {
        let index = usize::try_from(r.u32()?).ok()?;
        let state = byte_state(r.u8()?)?;
        let tried = if with_attempts { Some(r.u32()?) } else { None };
        changes.push((index, state, tried));
    }
    if !r.0.is_empty() {
        return None;
    }
    for (index, state, tried) in changes {
        // An index past the recipients cannot have been written by the
        // spool, which checks it; ignoring it keeps the rest readable.
        if let Some(slot) = states.get_mut(index) {
            *slot = state;
        }
        if let (Some(slot), Some(tried)) = (attempts.get_mut(index), tried) {
            *slot = tried;
        }
    }
    Some(total)
}

fn state_byte(state: RecipientState) -> u8 {
    match state {
        RecipientState::Pending => 0,
        RecipientState::Delivered => 1,
        RecipientState::Failed => 2,
    }
}

fn byte_state(byte: u8) -> Option<RecipientState> {
    match byte {
        0 => Some(RecipientState::Pending),
        1 => Some(RecipientState::Delivered),
        2 => Some(RecipientState::Failed),
        _ => None,
    }
}

/// The envelope, field by field: strings as u32 length + UTF-8, options as
/// a 0/1 byte then the value, the time as u64 seconds + u32 nanoseconds
/// since the epoch, the address as family (4 or 6), octets, port (and for
/// IPv6 the flow info and scope id).
fn encode_envelope(out: &mut Vec<u8>, e: &Envelope) {
    put_str(out, &e.sender);
    put_u32(out, len_u32(e.recipients.len()));
    for r in &e.recipients {
        put_str(out, &r.address);
        put_opt(out, r.notify.as_deref());
        put_opt(out, r.orcpt.as_deref());
    }
    put_opt(out, e.ret.as_deref());
    put_opt(out, e.envid.as_deref());
    // A time before the epoch is a broken clock; it is kept as the epoch.
    let since = e.received_at.duration_since(UNIX_EPOCH).unwrap_or_default();
    put_u64(out, since.as_secs());
    put_u32(out, since.subsec_nanos());
    match e.client {
        SocketAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_le_bytes());
        }
        SocketAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_le_bytes());
            put_u32(out, a.flowinfo());
            put_u32(out, a.scope_id());
        }
    }
    put_str(out, &e.binding);
}

fn decode_envelope(r: &mut Reader<'_>) -> Option<Envelope> {
    let sender = r.string()?;
    let n = r.u32()?;
    let mut recipients = Vec::new();
    for _ in 0..n {
        recipients.push(Recipient {
            address: r.string()?,
            notify: r.opt()?,
            orcpt: r.opt()?,
        });
    }
    let ret = r.opt()?;
    let envid = r.opt()?;
    let secs = r.u64()?;
    let nanos = r.u32()?;
    if nanos >= 1_000_000_000 {
        return None;
    }
    let received_at = UNIX_EPOCH.checked_add(Duration::new(secs, nanos))?;
    let client = match r.u8()? {
        4 => {
            let o: [u8; 4] = r.bytes(4)?.try_into().ok()?;
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(o), r.u16()?))
        }
        6 => {
            let o: [u8; 16] = r.bytes(16)?.try_into().ok()?;
            let port = r.u16()?;
            let flow = r.u32()?;
            let scope = r.u32()?;
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(o), port, flow, scope))
        }
        _ => return None,
    };
    let binding = r.string()?;
    Some(Envelope {
        sender,
        recipients,
        ret,
        envid,
        received_at,
        client,
        binding,
    })
}

/// Lengths in a spool file are u32; nothing the listener accepts comes near
/// (a string of 4 GiB in an envelope is not possible over SMTP's line
/// limits), so saturating is a formality that the checksum would catch.
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, len_u32(s.len()));
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

/// A cursor over bytes; every read is checked, `None` when short.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.bytes(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.bytes(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let n = usize::try_from(self.u32()?).ok()?;
        String::from_utf8(self.bytes(n)?.to_vec()).ok()
    }

    fn opt(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.string()?)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use quickcheck::quickcheck;

    use super::*;

    /// `payload` framed as a head (magic, length, checksum) or, with
    /// `record`, as a record, with a checksum that holds: what is inside
    /// is what decoding meets.
    fn framed(payload: &[u8], record: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if !record {
            out.extend_from_slice(MAGIC);
        }
        put_u32(&mut out, len_u32(payload.len()));
        out.extend_from_slice(payload);
        let crc = crc32fast::hash(&out);
        put_u32(&mut out, crc);
        out
    }

    quickcheck! {
        // A damaged spool file (a disk error, a hand edit) is refused,
        // never a panic at start: both with any payload and with a valid
        // one whose octets were changed before the checksum was made.
        fn a_checksummed_head_decodes_or_is_refused(payload: Vec<u8>, flips: Vec<(u16, u8)>) -> bool {
            let _ = decode_head(&framed(&payload, false));
            let valid = encode_head(QueueId(7), 99, &envelope());
            let mut inner = valid.get(12..valid.len() - 4).unwrap_or_default().to_vec();
            let len = inner.len().max(1);
            for (at, value) in flips {
                if let Some(b) = inner.get_mut(usize::from(at) % len) {
                    *b = value;
                }
            }
            let _ = decode_head(&framed(&inner, false));
            true
        }

        fn a_checksummed_pack_record_decodes_or_is_refused(payload: Vec<u8>, kind: u8) -> bool {
            let mut with_kind = vec![3 + kind % 4];
            with_kind.extend_from_slice(&payload);
            let framed = framed(&with_kind, true);
            decode_pack_record(&framed).is_none_or(|(_, n)| n == framed.len())
        }

        fn a_checksummed_record_applies_or_is_refused(payloads: Vec<Vec<u8>>) -> bool {
            let bytes: Vec<u8> = payloads.iter().flat_map(|p| framed(p, true)).collect();
            let mut states = vec![RecipientState::Pending; 3];
            let mut attempts = vec![0; 3];
            apply_records(&bytes, &mut states, &mut attempts) <= bytes.len()
        }
    }

    pub(crate) fn envelope() -> Envelope {
        Envelope {
            sender: "a@example.org".into(),
            recipients: vec![
                Recipient {
                    address: "b@example.com".into(),
                    notify: Some("SUCCESS,FAILURE".into()),
                    orcpt: Some("rfc822;b@example.com".into()),
                },
                Recipient {
                    address: "c@example.com".into(),
                    notify: None,
                    orcpt: None,
                },
            ],
            ret: Some("HDRS".into()),
            envid: None,
            received_at: UNIX_EPOCH + Duration::new(1_700_000_000, 123),
            client: "[2001:db8::1]:4567".parse().unwrap(),
            binding: "default".into(),
        }
    }

    #[test]
    fn pack_records_round_trip() {
        let changes = [
            (1, RecipientState::Delivered, 2),
            (0, RecipientState::Failed, 5),
        ];
        let bytes = encode_pack_states(QueueId(9), &changes);
        let want = PackRecord::States {
            id: QueueId(9),
            changes: vec![
                (1, RecipientState::Delivered, 2),
                (0, RecipientState::Failed, 5),
            ],
        };
        assert_eq!(decode_pack_record(&bytes), Some((want, bytes.len())));
        let bytes = encode_pack_removed(QueueId(10));
        assert_eq!(
            decode_pack_record(&bytes),
            Some((PackRecord::Removed(QueueId(10)), bytes.len()))
        );
        let states = [(RecipientState::Pending, 1), (RecipientState::Delivered, 3)];
        let bytes = encode_pack_moved(QueueId(11), &states);
        let want = PackRecord::Moved {
            id: QueueId(11),
            changes: vec![
                (0, RecipientState::Pending, 1),
                (1, RecipientState::Delivered, 3),
            ],
        };
        assert_eq!(decode_pack_record(&bytes), Some((want, bytes.len())));
        // A record's length can never spell the magic that starts a block.
        assert!(!bytes.starts_with(MAGIC));
        for cut in 0..bytes.len() {
            assert!(decode_pack_record(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        // The records of message files are not a pack's.
        let file_record = encode_states_record(&[(0, RecipientState::Failed, 1)]);
        assert!(decode_pack_record(&file_record).is_none());
    }

    #[test]
    fn head_round_trip() {
        let e = envelope();
        let bytes = encode_head(QueueId(42), 1000, &e);
        assert_eq!(head_total_len(&bytes), Ok(bytes.len()));
        let head = decode_head(&bytes).unwrap();
        assert_eq!(head.id, QueueId(42));
        assert_eq!(head.body_len, 1000);
        assert_eq!(head.body_offset, bytes.len() as u64);
        assert_eq!(head.envelope, e);
    }

    #[test]
    fn damaged_head_is_refused() {
        let bytes = encode_head(QueueId(42), 1000, &envelope());
        for cut in 0..bytes.len() {
            assert!(decode_head(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode_head(&b).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn records_apply_in_order_and_stop_at_damage() {
        let one = encode_states_record(&[(0, RecipientState::Failed, 3)]);
        let two = encode_states_record(&[
            (0, RecipientState::Delivered, 4),
            (1, RecipientState::Delivered, 1),
        ]);
        let mut all = one.clone();
        all.extend_from_slice(&two);
        let mut states = vec![RecipientState::Pending; 2];
        let mut attempts = vec![0; 2];
        assert_eq!(apply_records(&all, &mut states, &mut attempts), all.len());
        assert_eq!(states, [RecipientState::Delivered; 2]);
        assert_eq!(attempts, [4, 1]);

        for cut in one.len()..all.len() {
            let mut states = vec![RecipientState::Pending; 2];
            let mut attempts = vec![0; 2];
            assert_eq!(
                apply_records(&all[..cut], &mut states, &mut attempts),
                one.len()
            );
            assert_eq!(states, [RecipientState::Failed, RecipientState::Pending]);
            assert_eq!(attempts, [3, 0]);
        }
    }

    #[test]
    fn records_without_attempts_are_still_read() {
        // Kind 1, as spools written before attempts were kept hold it.
        let mut payload = vec![RECORD_RECIPIENT_STATES];
        put_u32(&mut payload, 1);
        put_u32(&mut payload, 1);
        payload.push(state_byte(RecipientState::Failed));
        let mut old = Vec::new();
        put_u32(&mut old, len_u32(payload.len()));
        old.extend_from_slice(&payload);
        let crc = crc32fast::hash(&old);
        put_u32(&mut old, crc);
        old.extend_from_slice(&encode_states_record(&[(0, RecipientState::Pending, 2)]));
        let mut states = vec![RecipientState::Pending; 2];
        let mut attempts = vec![0; 2];
        assert_eq!(apply_records(&old, &mut states, &mut attempts), old.len());
        assert_eq!(states, [RecipientState::Pending, RecipientState::Failed]);
        assert_eq!(attempts, [2, 0]);
    }
}
