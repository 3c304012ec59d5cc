//! Bounded CRLF line framing.
//!
//! SMTP commands, replies and message text are lines ended by CRLF, each with
//! a maximum length (RFC 5321 §4.5.3.1.4–6, the limits counting the CRLF). The
//! framer finds the next line at the front of a buffer the caller owns and
//! reports how many octets it spans, like httparse: it never copies and never
//! buffers, so memory per connection stays bounded by the limit.
//!
//! Decisions:
//! - A line ended by a bare LF is reported as [`Frame::BareLf`], not as a
//!   line: accepting bare LF where others require CRLF (or the reverse) is what
//!   SMTP smuggling exploits, so the caller rejects it explicitly.
//! - A bare CR inside a line is ordinary content here; the command parser
//!   rejects it, the way it rejects NUL.
//! - An overlong line is not an error that ends the session: RFC 5321
//!   §4.5.3.1.10 asks for a 500 reply. The framer drops its octets as they
//!   arrive ([`Frame::Skip`]) and reports [`Frame::TooLong`] once, when the line
//!   ends, so the caller replies once per overlong line and resynchronises on
//!   the next one.

/// Maximum command line length, including CRLF (RFC 5321 §4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;
/// Maximum reply line length, including CRLF (RFC 5321 §4.5.3.1.5).
pub const MAX_REPLY_LINE: usize = 512;
/// Maximum text line length, including CRLF (RFC 5321 §4.5.3.1.6).
pub const MAX_TEXT_LINE: usize = 1000;

/// Finds CRLF-terminated lines of bounded length at the front of a buffer.
#[derive(Debug, Clone)]
pub struct LineFramer {
    /// The maximum line length, counting the CRLF.
    limit: usize,
    /// Whether the framer is dropping the rest of an overlong line.
    skipping: bool,
}

/// What [`LineFramer::next`] found at the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A complete line of `len` octets at the front of the buffer, including
    /// its CRLF (content = `buf[..len - 2]`).
    Line {
        /// Octets of the line, including its CRLF.
        len: usize,
    },
    /// A line ended by a bare LF (no CR before it); `len` includes the LF. The
    /// caller rejects it (SMTP smuggling defence) and drops `len` octets.
    BareLf {
        /// Octets of the line, including its LF.
        len: usize,
    },
    /// Part of an overlong line: drop `len` octets; the line has not ended
    /// yet, the framer remembers it is skipping.
    Skip {
        /// Octets to drop.
        len: usize,
    },
    /// The end of an overlong line was reached: drop `len` octets (through its
    /// LF). The caller replies once (`500 5.5.2 Line too long`).
    TooLong {
        /// Octets to drop, through the LF that ends the overlong line.
        len: usize,
    },
    /// No complete line yet and what is buffered is within the limit: read
    /// more.
    Partial,
}

impl Frame {
    /// The number of octets the caller drops from the front of its buffer
    /// (zero for [`Frame::Partial`]).
    pub fn consumed(self) -> usize {
        match self {
            Frame::Line { len }
            | Frame::BareLf { len }
            | Frame::Skip { len }
            | Frame::TooLong { len } => len,
            Frame::Partial => 0,
        }
    }
}

impl LineFramer {
    /// A framer for lines of at most `limit` octets, counting the CRLF; the
    /// limit is raised to 3 if lower (one octet of content and CRLF).
    pub fn new(limit: usize) -> Self {
        LineFramer {
            limit: limit.max(3),
            skipping: false,
        }
    }

    /// The maximum line length, counting the CRLF.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Changes the maximum line length (raised to 3 if lower), for example
    /// between the command phase and message text.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.max(3);
    }

    /// Whether the framer is in the middle of dropping an overlong line.
    pub fn is_skipping(&self) -> bool {
        self.skipping
    }

    /// Forgets a partly skipped line, for when the caller discards its buffer
    /// (after STARTTLS, the plaintext that followed the command is dropped).
    pub fn reset(&mut self) {
        self.skipping = false;
    }

    /// Frames the next line at the front of `buf` (the caller drops the
    /// reported octets before calling again). Never copies.
    #[inline]
    pub fn next(&mut self, buf: &[u8]) -> Frame {
        // Only the first `limit` octets can hold the end of an acceptable line;
        // while skipping, any LF ends the overlong line.
        let window = if self.skipping {
            buf
        } else {
            buf.get(..self.limit).unwrap_or(buf)
        };
        match find_either(window, b'\n', b'\n', |far| memchr::memchr(b'\n', far)) {
            Some(lf) if self.skipping => {
                self.skipping = false;
                Frame::TooLong { len: lf + 1 }
            }
            Some(lf) if lf > 0 && window.get(lf - 1) == Some(&b'\r') => Frame::Line { len: lf + 1 },
            Some(lf) => Frame::BareLf { len: lf + 1 },
            None if window.is_empty() => Frame::Partial,
            None if self.skipping || window.len() >= self.limit => {
                self.skipping = true;
                Frame::Skip { len: window.len() }
            }
            None => Frame::Partial,
        }
    }
}

/// Where the first octet equal to `a` or `b` is in `window`. Most lines are
/// short, so their first octets are searched inline, and only the rest by
/// `far` (a memchr, whose dispatch and set-up cost more than a short line).
#[inline]
pub(super) fn find_either(
    window: &[u8],
    a: u8,
    b: u8,
    far: impl FnOnce(&[u8]) -> Option<usize>,
) -> Option<usize> {
    match near(window, a, b) {
        Ok(found) => found,
        Err(searched) => far(window.get(searched..)?).map(|i| searched + i),
    }
}

/// How many octets [`find_either`] searches inline: lines of the size
/// commands and replies have.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
const NEAR: usize = 128;

/// The first [`NEAR`] octets of [`find_either`]'s search, sixteen at a time
/// (SSE2, x86-64's baseline): `Ok` with the answer if it is among them or
/// the window ends, else `Err` with how many were searched.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn near(window: &[u8], a: u8, b: u8) -> Result<Option<usize>, usize> {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i,
    };
    let found = |chunk: &[u8; 16]| {
        let v = load_unaligned_m128i(chunk);
        let either = bitor_m128i(
            cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(a as i8)),
            cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b as i8)),
        );
        move_mask_i8_m128i(either) as u32
    };
    for at in (0..NEAR).step_by(16) {
        let rest = window.get(at..).unwrap_or_default();
        let bits = match rest.first_chunk::<16>() {
            Some(chunk) => found(chunk),
            // The window's last sixteen octets, those before `at` shifted
            // out, rather than a padded copy, whose load would wait on the
            // copy's stores.
            None => match window.last_chunk::<16>() {
                Some(last) => found(last) >> (16 - rest.len()),
                None => return Ok(rest.iter().position(|&x| x == a || x == b).map(|i| at + i)),
            },
        };
        if bits != 0 {
            return Ok(Some(at + bits.trailing_zeros() as usize));
        }
        if rest.len() <= 16 {
            return Ok(None);
        }
    }
    Err(NEAR)
}

/// The first 32 octets of [`find_either`]'s search, a word at a time:
/// `Ok` with the answer if it is among them or the window ends, else `Err`
/// with how many were searched.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn near(window: &[u8], a: u8, b: u8) -> Result<Option<usize>, usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    // A high bit set in each zero octet of `w`: exact for the lowest one,
    // which is all that is read.
    let zeros = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    for at in (0..32).step_by(8) {
        let Some(word) = window.get(at..at + 8) else {
            let tail = window.get(at..).unwrap_or_default();
            return Ok(tail.iter().position(|&x| x == a || x == b).map(|i| at + i));
        };
        let word = word.try_into().map_or(0, u64::from_le_bytes);
        let found = zeros(word ^ (ONES * u64::from(a))) | zeros(word ^ (ONES * u64::from(b)));
        if found != 0 {
            return Ok(Some(at + found.trailing_zeros() as usize / 8));
        }
    }
    Err(32)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use quickcheck::quickcheck;

    /// Splits `data` at the given points (taken modulo its length), for
    /// chunking-invariance properties.
    pub(crate) fn chunks<'a>(data: &'a [u8], splits: &[usize]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = splits
            .iter()
            .map(|s| s % (data.len() + 1))
            .chain([0, data.len()])
            .collect();
        points.sort_unstable();
        points.windows(2).map(|w| &data[w[0]..w[1]]).collect()
    }

    /// Feeds `data` to a framer in the given chunks, collecting the events a
    /// caller acts on with the octets of each line. `Skip` and `Partial`, and
    /// so how much of an overlong line `TooLong` drops, depend on chunking.
    fn frame_all(limit: usize, parts: &[&[u8]]) -> Vec<(&'static str, Vec<u8>)> {
        let mut framer = LineFramer::new(limit);
        let mut buf = Vec::new();
        let mut events = Vec::new();
        for part in parts {
            buf.extend_from_slice(part);
            loop {
                let frame = framer.next(&buf);
                let n = frame.consumed();
                assert!(n <= buf.len());
                match frame {
                    Frame::Partial => break,
                    Frame::Skip { .. } => {}
                    Frame::TooLong { .. } => events.push(("too long", Vec::new())),
                    Frame::Line { .. } => events.push(("line", buf[..n].to_vec())),
                    Frame::BareLf { .. } => events.push(("bare LF", buf[..n].to_vec())),
                }
                buf.drain(..n);
            }
        }
        events
    }

    #[test]
    fn lines() {
        let mut f = LineFramer::new(MAX_COMMAND_LINE);
        assert_eq!(f.next(b""), Frame::Partial);
        assert_eq!(f.next(b"NOOP"), Frame::Partial);
        assert_eq!(f.next(b"NOOP\r"), Frame::Partial);
        assert_eq!(f.next(b"NOOP\r\nQUIT\r\n"), Frame::Line { len: 6 });
        assert_eq!(f.next(b"\r\n"), Frame::Line { len: 2 });
        assert_eq!(f.next(b"NOOP\nQUIT\r\n"), Frame::BareLf { len: 5 });
        assert_eq!(f.next(b"\n"), Frame::BareLf { len: 1 });
        assert_eq!(f.next(b"A\rB\r\n"), Frame::Line { len: 5 });
    }

    #[test]
    fn limit_counts_crlf() {
        let mut f = LineFramer::new(5);
        assert_eq!(f.next(b"abc\r\n"), Frame::Line { len: 5 });
        assert_eq!(f.next(b"abcd"), Frame::Partial);
        assert_eq!(f.next(b"abcd\r\n"), Frame::Skip { len: 5 });
        assert!(f.is_skipping());
        assert_eq!(f.next(b"\nxy\r\n"), Frame::TooLong { len: 1 });
        assert_eq!(f.next(b"xy\r\n"), Frame::Line { len: 4 });
    }

    #[test]
    fn overlong_line_is_skipped_then_reported_once() {
        let mut f = LineFramer::new(4);
        assert_eq!(f.next(b"abcdef"), Frame::Skip { len: 4 });
        assert_eq!(f.next(b"ef"), Frame::Skip { len: 2 });
        assert_eq!(f.next(b""), Frame::Partial);
        assert_eq!(f.next(b"gh\r\nok\r\n"), Frame::TooLong { len: 4 });
        assert_eq!(f.next(b"ok\r\n"), Frame::Line { len: 4 });
    }

    #[test]
    fn limit_is_clamped_and_changeable() {
        let mut f = LineFramer::new(0);
        assert_eq!(f.limit(), 3);
        assert_eq!(f.next(b"a\r\n"), Frame::Line { len: 3 });
        f.set_limit(MAX_TEXT_LINE);
        assert_eq!(f.limit(), MAX_TEXT_LINE);
        assert_eq!(f.next(&[b'x'; 999]), Frame::Partial);
        assert_eq!(f.next(&[b'x'; 1000]), Frame::Skip { len: 1000 });
        f.reset();
        assert!(!f.is_skipping());
    }

    #[test]
    fn finds_the_first_of_two_octets_near_and_far() {
        let far = |rest: &[u8]| memchr::memchr2(b'\r', b'\n', rest);
        for len in 0..150 {
            for at in 0..len {
                for (needle, other) in [(b'\r', b'x'), (b'\n', b'\r')] {
                    let mut window = vec![b'a'; len];
                    window[at] = needle;
                    if at + 1 < len {
                        window[at + 1] = other;
                    }
                    assert_eq!(find_either(&window, b'\r', b'\n', far), Some(at));
                }
            }
            assert_eq!(find_either(&vec![0x8d; len], b'\r', b'\n', far), None);
        }
    }

    quickcheck! {
        fn framer_never_overreports(limit: u8, data: Vec<u8>) -> bool {
            let mut f = LineFramer::new(usize::from(limit));
            let mut buf = &data[..];
            loop {
                let frame = f.next(buf);
                let n = frame.consumed();
                if n > buf.len() || (frame != Frame::Partial && n == 0) {
                    return false;
                }
                if let Frame::Line { len } = frame {
                    if len > f.limit() || !buf[..len].ends_with(b"\r\n") {
                        return false;
                    }
                }
                if frame == Frame::Partial {
                    return buf.len() < f.limit() || f.is_skipping() && buf.is_empty();
                }
                buf = &buf[n..];
            }
        }

        fn framer_chunking_invariance(limit: u8, data: Vec<u8>, splits: Vec<usize>) -> bool {
            let limit = usize::from(limit % 16);
            frame_all(limit, &[&data]) == frame_all(limit, &chunks(&data, &splits))
        }
    }
}
