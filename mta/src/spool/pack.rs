//! Packs: the files that hold every message not spilled while it arrived.
//!
//! A pack is appended to and never rewritten: message blocks (a head, the
//! body and its seal, exactly as a message file of `msg/` starts) and
//! records, each telling by its first bytes which it is (a block starts
//! with the magic; a record with its length, which can never spell it):
//!
//! ```text
//! item    block | record
//! block   "PETRELQ1" … seal, as in format.rs
//! record  u32 len  payload[len]  u32 crc32(len‖payload)
//!         payload = u8 3, u64 id, states as kind 2     (recipients' states)
//!                 | u8 4, u64 id                       (the message is done)
//!                 | u8 5, u64 id, every state as kind 2, then a block:
//!                   the message moved there, with those states
//! ```
//!
//! A message lives in the pack of its last block; its records follow it in
//! that pack or in later ones. Reading the packs in order therefore gives
//! every message's state. Packs are named by a sequence number, 16 upper-
//! case hex digits, and each run appends to a new one, so a pack cut short
//! by a crash is never appended to again.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{self, Head, PackRecord};
use super::{checksum, read_head_at};

/// The packs' directory, in the spool's.
pub(crate) const PACK_DIR: &str = "pack";

/// Pack `seq`'s file.
pub(crate) fn pack_path(pack_dir: &Path, seq: u64) -> PathBuf {
    pack_dir.join(format!("{seq:016X}"))
}

/// The packs there are, in order; other names are not packs.
pub(crate) fn pack_seqs(pack_dir: &Path) -> io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(pack_dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.len() == 16 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')) {
            if let Ok(seq) = u64::from_str_radix(name, 16) {
                seqs.push(seq);
            }
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// One item of a pack.
#[derive(Debug)]
pub(crate) enum Item {
    /// A message block from `start` to `end`; `head.body_offset` counts
    /// from `start`.
    Message {
        head: Head,
        start: u64,
        end: u64,
    },
    Record(PackRecord),
}

/// Reads the items of a pack `len` octets long in order, handing each to
/// `each`, and returns where the last whole item ends: whatever follows
/// was being written when the writer stopped (or is being written now, for
/// a reader beside a running petrel). `verify_bodies` checks each body
/// against its seal, which reads every body.
pub(crate) fn scan(
    file: &File,
    len: u64,
    verify_bodies: bool,
    mut each: impl FnMut(Item),
) -> io::Result<u64> {
    let mut at = 0;
    let mut buf = Vec::new();
    while at < len {
        let left = len - at;
        let prefix = usize::try_from(left.min(8)).unwrap_or(8);
        buf.resize(prefix, 0);
        file.read_exact_at(&mut buf, at)?;
        if buf.starts_with(format::MAGIC) {
            let Some(head) = read_head_at(file, at, len)? else {
                break;
            };
            let (Some(seal_at), Some(end)) = (head.seal_offset(), head.records_offset()) else {
                break;
            };
            let Some(end) = at.checked_add(end).filter(|&end| end <= len) else {
                break;
            };
            if verify_bodies {
                let mut seal = [0; 4];
                file.read_exact_at(&mut seal, at + seal_at)?;
                if checksum(file, at + head.body_offset, head.body_len)? != u32::from_le_bytes(seal)
                {
                    break;
                }
            }
            each(Item::Message {
                head,
                start: at,
                end,
            });
            at = end;
        } else {
            let Some(frame_len) = buf
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
                .and_then(|n| u64::from(n).checked_add(8))
                .filter(|&n| n <= left && n <= MAX_RECORD_FRAME)
            else {
                break;
            };
            buf.resize(usize::try_from(frame_len).unwrap_or(0), 0);
            file.read_exact_at(&mut buf, at)?;
            let Some((record, n)) = format::decode_pack_record(&buf) else {
                break;
            };
            each(Item::Record(record));
            at += n as u64;
        }
    }
    Ok(at)
}

/// Whether `file` holds only zeros from `from` to `to`.
pub(crate) fn zeros(file: &File, mut from: u64, to: u64) -> io::Result<bool> {
    let mut buf = vec![0; 64 << 10];
    while from < to {
        let n = usize::try_from(to - from).map_or(buf.len(), |n| n.min(buf.len()));
        let piece = buf.get_mut(..n).unwrap_or_default();
        file.read_exact_at(piece, from)?;
        if piece.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        from += n as u64;
    }
    Ok(true)
}

/// No record the writer makes comes near this: a length past it is
/// damage, and is not read.
const MAX_RECORD_FRAME: u64 = 64 << 20;
