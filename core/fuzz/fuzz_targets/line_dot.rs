//! The line framer (`wire::line`) and dot-stuffing (`wire::dot`) on
//! arbitrary bytes, whole and split at arbitrary points.
//!
//! Asserts:
//! - framer: each frame lies within the buffer and makes progress; a line
//!   ends in CRLF within the limit, a bare-LF line in LF; what a caller
//!   must keep buffered (after dropping what the framer reports) stays
//!   under the limit; the frames account for every octet; and the lines,
//!   bare-LF lines and overlong-line reports are the same however the
//!   input is split;
//! - stuffer/unstuffer: `unstuff(stuff(x))` is `x` (with the CRLF the end
//!   marker adds to an unterminated last line), streamed stuffing in any
//!   pieces gives the same bytes; the unstuffer on arbitrary input gives
//!   the same body, end position, flaws and octet count however it is
//!   split, never outputs more than it consumed, consumes everything
//!   until the end and nothing after it, and ends only at CRLF "." CRLF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel_core::wire::dot::{stuff, unstuff, BodyFlaws, DotStuffer, DotUnstuffer};
use petrel_core::wire::line::{Frame, LineFramer};
use petrel_core_fuzz::ops::Ops;

/// Splits `data` at `splits` (modulo its length).
fn chunks<'a>(data: &'a [u8], splits: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = splits
        .iter()
        .map(|s| s % (data.len() + 1))
        .chain([0, data.len()])
        .collect();
    points.sort_unstable();
    points.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

#[derive(Debug, PartialEq, Eq)]
enum Framed {
    Line(Vec<u8>),
    BareLf(Vec<u8>),
    TooLong,
}

fn frame_all(limit: usize, parts: &[&[u8]]) -> Vec<Framed> {
    let mut framer = LineFramer::new(limit);
    let limit = framer.limit();
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut accounted = 0;
    for part in parts {
        buf.extend_from_slice(part);
        loop {
            let frame = framer.next(&buf);
            let n = frame.consumed();
            assert!(n <= buf.len(), "{frame:?} beyond {} octets", buf.len());
            let octets = &buf[..n];
            match frame {
                Frame::Partial => {
                    assert!(buf.len() < limit || framer.is_skipping() && buf.is_empty());
                    break;
                }
                Frame::Line { len } => {
                    assert!(len <= limit && octets.ends_with(b"\r\n"));
                    assert!(!octets[..len - 1].contains(&b'\n'));
                    frames.push(Framed::Line(octets.to_vec()));
                }
                Frame::BareLf { len } => {
                    assert!(len <= limit && octets.ends_with(b"\n"));
                    assert!(!octets.ends_with(b"\r\n"));
                    assert!(!octets[..len - 1].contains(&b'\n'));
                    frames.push(Framed::BareLf(octets.to_vec()));
                }
                Frame::Skip { len } => {
                    assert!(len > 0 && !octets.contains(&b'\n'));
                    assert!(framer.is_skipping());
                }
                Frame::TooLong { len } => {
                    assert!(octets.ends_with(b"\n") && !octets[..len - 1].contains(&b'\n'));
                    assert!(!framer.is_skipping());
                    frames.push(Framed::TooLong);
                }
            }
            accounted += n;
            buf.drain(..n);
        }
        // Bounded: the caller never holds a whole line's worth.
        assert!(
            buf.len() < limit,
            "{} octets held, limit {limit}",
            buf.len()
        );
    }
    let total: usize = parts.iter().map(|p| p.len()).sum();
    assert_eq!(accounted + buf.len(), total);
    frames
}

fn unstuff_parts(max_line: usize, parts: &[&[u8]]) -> (Vec<u8>, Option<usize>, BodyFlaws, u64) {
    let mut unstuffer = DotUnstuffer::new(max_line);
    let mut out = Vec::new();
    let mut total = 0;
    for part in parts {
        let result = unstuffer.unstuff(part, &mut out);
        assert!(result.consumed <= part.len());
        total += result.consumed;
        assert_eq!(out.len() as u64, unstuffer.octets());
        assert!(out.len() <= total, "more out than in");
        if result.done {
            return (out, Some(total), unstuffer.flaws(), unstuffer.octets());
        }
        assert_eq!(result.consumed, part.len(), "stopped before the end");
    }
    (out, None, unstuffer.flaws(), unstuffer.octets())
}

fuzz_target!(|data: &[u8]| {
    let mut ops = Ops::new(data, 0);
    let limit = usize::from(ops.byte());
    let max_line = usize::from(ops.byte() % 16);
    let splits: Vec<usize> = (0..ops.byte() % 8)
        .map(|_| usize::from(u16::from_le_bytes([ops.byte(), ops.byte()])))
        .collect();
    let payload = ops.bytes(usize::MAX);
    let parts = chunks(payload, &splits);

    assert_eq!(frame_all(limit, &[payload]), frame_all(limit, &parts));

    let stuffed = stuff(payload);
    let mut expected = payload.to_vec();
    if !payload.is_empty() && !payload.ends_with(b"\r\n") {
        expected.extend_from_slice(b"\r\n");
    }
    assert_eq!(unstuff(&stuffed), Some(expected));
    let mut stuffer = DotStuffer::new();
    let mut streamed = Vec::new();
    for part in &parts {
        stuffer.stuff(part, &mut streamed);
    }
    stuffer.finish(&mut streamed);
    assert_eq!(streamed, stuffed);

    let whole = unstuff_parts(max_line, &[payload]);
    assert_eq!(whole, unstuff_parts(max_line, &parts));
    if let Some(end) = whole.1 {
        let data = &payload[..end];
        assert!(
            data == b".\r\n" || data.ends_with(b"\r\n.\r\n"),
            "ended early"
        );
    }
});
