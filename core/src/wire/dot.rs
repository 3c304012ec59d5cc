//! Dot-stuffing for DATA (RFC 5321 §4.5.2): the client doubles a period that
//! starts a line; the server removes it and recognises the end of the data,
//! CRLF `.` CRLF.
//!
//! Decisions:
//! - Only CRLF ends a line for dot-stuffing, on both sides. The unstuffer ends
//!   the data only at CRLF `.` CRLF, never at LF `.` LF, CR `.` CR or
//!   mixtures: a server that accepts another ending than the next hop does
//!   lets a client smuggle a second message past it (SMTP smuggling, 2023).
//!   Bare CR and bare LF stay in the body and are reported as [`BodyFlaws`],
//!   so the server can refuse the message (as RFC 5321 §2.3.8 permits) or
//!   repair it before relaying.
//! - A period that starts a line is removed whatever follows it, as RFC 5321
//!   §4.5.2 says, not only when doubled.
//! - Both directions stream with constant state: the unstuffer holds back at
//!   most `.` CR, the octets that may still turn out to be the end marker, so
//!   any split of the input gives the same body, end position and flaws.
//! - Line length is counted on the unstuffed line including its CRLF, as the
//!   1000-octet limit of RFC 5321 §4.5.3.1.6 does not count the added period.

/// Dot-stuffs a message body for DATA, as a stream.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    /// Whether the next octet starts a line.
    at_line_start: bool,
    /// Whether the last octet was CR.
    after_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotStuffer {
    /// A stuffer at the start of a body.
    pub fn new() -> Self {
        DotStuffer {
            at_line_start: true,
            after_cr: false,
        }
    }

    /// Appends `chunk` to `out`, doubling a '.' that starts a line (line start
    /// = after CRLF, or the very beginning). Streams: any chunking gives the
    /// same output.
    pub fn stuff(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len());
        // Only a period right after an LF can need doubling: the text in
        // between is copied as it is.
        let after_crlf = |lf: usize| match lf.checked_sub(1) {
            Some(cr) => chunk.get(cr) == Some(&b'\r'),
            None => self.after_cr,
        };
        if self.at_line_start && chunk.first() == Some(&b'.') {
            out.push(b'.');
        }
        let mut copied = 0;
        for lf in memchr::memchr_iter(b'\n', chunk) {
            if chunk.get(lf + 1) == Some(&b'.') && after_crlf(lf) {
                out.extend_from_slice(chunk.get(copied..=lf).unwrap_or_default());
                out.push(b'.');
                copied = lf + 1;
            }
        }
        out.extend_from_slice(chunk.get(copied..).unwrap_or_default());
        if let Some(&last) = chunk.last() {
            self.at_line_start = last == b'\n' && after_crlf(chunk.len() - 1);
            self.after_cr = last == b'\r';
        }
    }

    /// Appends the end-of-data marker: CRLF "." CRLF if the body did not end
    /// with CRLF, else "." CRLF. The stuffer is then ready for another body.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        *self = Self::new();
    }
}

/// Dot-stuffs a whole body and appends the end-of-data marker.
pub fn stuff(body: &[u8]) -> Vec<u8> {
    let mut stuffer = DotStuffer::new();
    let mut out = Vec::with_capacity(body.len() + 5);
    stuffer.stuff(body, &mut out);
    stuffer.finish(&mut out);
    out
}

/// Where the unstuffer is relative to the lines of the stuffed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF, or at the very beginning).
    LineStart,
    /// A line started with '.', held back.
    Dot,
    /// A line started with '.' CR, held back.
    DotCr,
    /// Inside a line, the last octet not CR.
    Text,
    /// Inside a line, the last octet CR.
    Cr,
    /// The end-of-data line has been consumed.
    Done,
}

/// Removes dot-stuffing from DATA and finds its end, as a stream.
#[derive(Debug, Clone)]
pub struct DotUnstuffer {
    state: State,
    max_line: usize,
    line_len: usize,
    octets: u64,
    flaws: BodyFlaws,
}

/// The result of [`DotUnstuffer::unstuff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unstuffed {
    /// Octets of the input consumed; all of it unless `done`.
    pub consumed: usize,
    /// Whether the end-of-data line has been consumed.
    pub done: bool,
}

/// Departures from RFC 5321 found in a body; the server decides what to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyFlaws {
    /// An LF not preceded by CR.
    pub bare_lf: bool,
    /// A CR not followed by LF.
    pub bare_cr: bool,
    /// A NUL octet.
    pub nul: bool,
    /// A line longer than the limit, counting its CRLF.
    pub long_line: bool,
    /// An octet with the high bit set (needs 8BITMIME or BINARYMIME).
    pub eight_bit: bool,
}

impl DotUnstuffer {
    /// An unstuffer at the start of DATA; `max_line` counts the CRLF, and 0
    /// means unlimited.
    pub fn new(max_line: usize) -> Self {
        DotUnstuffer {
            state: State::LineStart,
            max_line,
            line_len: 0,
            octets: 0,
            flaws: BodyFlaws::default(),
        }
    }

    /// Consumes from `input`, appending the unstuffed body to `out`, until the
    /// end-of-data line (CRLF "." CRLF, or "." CRLF at the very start) has been
    /// consumed (`done`), or input runs out. Only CRLF "." CRLF ends the data:
    /// LF "." LF, CR "." CR etc. do NOT (SMTP smuggling). The body keeps its
    /// line endings: the CRLF before the final "." belongs to the body. Octets
    /// that might be part of the end marker but are not yet decided are held
    /// back in the unstuffer's own small state (at most a few octets) so that
    /// any split of the input gives the same output, the same `done` position
    /// (in total consumed) and the same flaws.
    pub fn unstuff(&mut self, input: &[u8], out: &mut Vec<u8>) -> Unstuffed {
        let mut rest = input;
        while self.state != State::Done {
            if self.state == State::Text
                || (self.state == State::LineStart && rest.first().is_some_and(|&b| b != b'.'))
            {
                rest = self.lines(rest, out);
            }
            let Some((&b, tail)) = rest.split_first() else {
                break;
            };
            rest = tail;
            self.step(b, out);
        }
        Unstuffed {
            consumed: input.len() - rest.len(),
            done: self.state == State::Done,
        }
    }

    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        match (self.state, b) {
            (State::LineStart, b'.') => self.state = State::Dot,
            (State::Dot, b'\r') => self.state = State::DotCr,
            (State::DotCr, b'\n') => self.state = State::Done,
            (State::DotCr, _) => {
                // Not the end: the period is dropped, the CR is body text.
                self.emit(b"\r", out);
                self.state = State::Cr;
                self.step(b, out);
            }
            (State::Cr, b'\n') => {
                self.emit(b"\n", out);
                self.state = State::LineStart;
                self.line_len = 0;
            }
            (State::Cr, _) => {
                self.flaws.bare_cr = true;
                self.state = State::Text;
                self.step(b, out);
            }
            (State::Done, _) => {}
            // At a line start, after a dropped period, or inside a line.
            (State::LineStart | State::Dot | State::Text, _) => {
                self.flaws.bare_lf |= b == b'\n';
                self.emit(&[b], out);
                self.state = if b == b'\r' { State::Cr } else { State::Text };
            }
        }
    }

    /// The fast path, from inside a line or the start of one that does not
    /// start with a period: copies whole lines in one go, up to the first
    /// octet that needs [`step`](Self::step) (a period starting a line, a
    /// CR or LF that is not a CRLF, a CR at the end of `input`) or the end
    /// of `input`; returns the rest. What it copies is exactly what
    /// stepping through it octet by octet would emit, with the same flaws
    /// and state.
    fn lines<'a>(&mut self, input: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
        let mut line_start = 0;
        let mut at = 0;
        let stop = loop {
            let Some(found) = memchr::memchr2(b'\r', b'\n', input.get(at..).unwrap_or_default())
            else {
                break input.len();
            };
            let eol = at + found;
            if input.get(eol..eol + 2) != Some(b"\r\n") {
                break eol;
            }
            let next = eol + 2;
            let line = next - line_start;
            self.flaws.long_line |= self.max_line != 0 && self.line_len + line > self.max_line;
            self.line_len = 0;
            line_start = next;
            self.state = State::LineStart;
            if input.get(next).is_none_or(|&b| b == b'.') {
                break next;
            }
            at = next;
        };
        let (copied, rest) = input.split_at(stop);
        out.extend_from_slice(copied);
        self.flaws.nul |= memchr::memchr(0, copied).is_some();
        self.flaws.eight_bit |= !copied.is_ascii();
        self.octets += copied.len() as u64;
        // The line in progress at `stop`, if it has begun.
        if stop > line_start {
            self.state = State::Text;
            self.line_len = self.line_len.saturating_add(stop - line_start);
            self.flaws.long_line |= self.max_line != 0 && self.line_len > self.max_line;
        }
        rest
    }

    fn emit(&mut self, text: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(text);
        self.flaws.nul |= text.contains(&0);
        self.flaws.eight_bit |= !text.is_ascii();
        self.octets += text.len() as u64;
        self.line_len = self.line_len.saturating_add(text.len());
        self.flaws.long_line |= self.max_line != 0 && self.line_len > self.max_line;
    }

    /// The flaws found so far: bare LF, bare CR (CR not followed by LF), NUL,
    /// a line longer than `max_line`, any octet >= 0x80.
    pub fn flaws(&self) -> BodyFlaws {
        self.flaws
    }

    /// The unstuffed body octets produced so far.
    pub fn octets(&self) -> u64 {
        self.octets
    }
}

/// Unstuffs a whole DATA stream: the body, if `stuffed` ends exactly at the
/// end-of-data line.
pub fn unstuff(stuffed: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(stuffed.len());
    let result = DotUnstuffer::new(0).unstuff(stuffed, &mut out);
    (result.done && result.consumed == stuffed.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::line::tests::chunks;
    use quickcheck::quickcheck;

    /// Feeds the parts in turn, the way a server does, until the data ends.
    fn unstuff_parts(max_line: usize, parts: &[&[u8]]) -> (Vec<u8>, Option<usize>, BodyFlaws, u64) {
        let mut u = DotUnstuffer::new(max_line);
        let mut out = Vec::new();
        let mut total = 0;
        for part in parts {
            let r = u.unstuff(part, &mut out);
            total += r.consumed;
            if r.done {
                return (out, Some(total), u.flaws(), u.octets());
            }
            assert_eq!(r.consumed, part.len());
        }
        (out, None, u.flaws(), u.octets())
    }

    fn flaws(f: impl FnOnce(&mut BodyFlaws)) -> BodyFlaws {
        let mut flaws = BodyFlaws::default();
        f(&mut flaws);
        flaws
    }

    #[test]
    fn stuffs() {
        assert_eq!(stuff(b""), b".\r\n");
        assert_eq!(stuff(b"a\r\n"), b"a\r\n.\r\n");
        assert_eq!(stuff(b"a"), b"a\r\n.\r\n");
        assert_eq!(
            stuff(b".a\r\n.\r\n..\r\nb.\r\n"),
            b"..a\r\n..\r\n...\r\nb.\r\n.\r\n"
        );
        // Only CRLF starts a line.
        assert_eq!(stuff(b"a\n.b\r.c"), b"a\n.b\r.c\r\n.\r\n");
        assert_eq!(stuff(b"a\r"), b"a\r\r\n.\r\n");
    }

    #[test]
    fn stuffer_is_reusable_after_finish() {
        let mut s = DotStuffer::default();
        let mut out = Vec::new();
        s.stuff(b"x", &mut out);
        s.finish(&mut out);
        s.stuff(b".y", &mut out);
        assert_eq!(out, b"x\r\n.\r\n..y");
    }

    #[test]
    fn unstuffs_and_finds_the_end() {
        assert_eq!(unstuff(b".\r\n"), Some(Vec::new()));
        assert_eq!(unstuff(b"a\r\n.\r\n"), Some(b"a\r\n".to_vec()));
        assert_eq!(
            unstuff(b"..a\r\n.b\r\n.\r\n"),
            Some(b".a\r\nb\r\n".to_vec())
        );
        assert_eq!(unstuff(b"a\r\n.\r\nextra"), None);
        assert_eq!(unstuff(b"a\r\n"), None);
        let mut u = DotUnstuffer::new(0);
        let mut out = Vec::new();
        assert_eq!(
            u.unstuff(b"a\r\n.\r\nMAIL", &mut out),
            Unstuffed {
                consumed: 6,
                done: true
            }
        );
        assert_eq!(
            u.unstuff(b"MAIL", &mut out),
            Unstuffed {
                consumed: 0,
                done: true
            }
        );
        assert_eq!((out, u.octets()), (b"a\r\n".to_vec(), 3));
    }

    #[test]
    fn only_crlf_dot_crlf_ends_data() {
        for smuggle in [
            &b"a\n.\nb"[..],
            b"a\r\n.\nb",
            b"a\n.\r\nb",
            b"a\r.\rb",
            b"a\r.\r\nb",
            b"a\r\n.\rb",
            b"a\r\n. \r\nb",
        ] {
            let (_, end, _, _) = unstuff_parts(0, &[smuggle]);
            assert_eq!(end, None, "{:?}", String::from_utf8_lossy(smuggle));
        }
        let (body, end, f, _) = unstuff_parts(0, &[b"a\n.\nb\r\n.\r\n"]);
        // After a bare LF the period is text, not a line start.
        assert_eq!((body, end), (b"a\n.\nb\r\n".to_vec(), Some(10)));
        assert_eq!(f, flaws(|f| f.bare_lf = true));
        let (body, _, f, _) = unstuff_parts(0, &[b"a\r\n.\rb\r\n.\r\n"]);
        assert_eq!(body, b"a\r\n\rb\r\n");
        assert_eq!(f, flaws(|f| f.bare_cr = true));
    }

    #[test]
    fn reports_flaws() {
        let check = |max_line, data: &[u8], expected: BodyFlaws| {
            let (_, end, f, _) = unstuff_parts(max_line, &[data]);
            assert!(end.is_some());
            assert_eq!(f, expected, "{:?}", String::from_utf8_lossy(data));
        };
        check(0, b"clean\r\n\r\n.\r\n", BodyFlaws::default());
        check(0, b"a\0b\r\n.\r\n", flaws(|f| f.nul = true));
        check(0, b"caf\xc3\xa9\r\n.\r\n", flaws(|f| f.eight_bit = true));
        check(0, b"\r\r\n.\r\n", flaws(|f| f.bare_cr = true));
        check(0, b"\n\r\n.\r\n", flaws(|f| f.bare_lf = true));
        check(5, b"abc\r\n.\r\n", BodyFlaws::default());
        check(5, b"abcd\r\n.\r\n", flaws(|f| f.long_line = true));
        // The period removed by unstuffing does not count.
        check(5, b"..bc\r\n.\r\n", BodyFlaws::default());
        check(
            0,
            &[b'x'; 5000]
                .iter()
                .chain(b"\r\n.\r\n")
                .copied()
                .collect::<Vec<_>>(),
            BodyFlaws::default(),
        );
    }

    quickcheck! {
        fn unstuff_inverts_stuff(body: Vec<u8>) -> bool {
            // The end marker's CRLF ends an unterminated last line.
            let mut expected = body.clone();
            if !body.is_empty() && !body.ends_with(b"\r\n") {
                expected.extend_from_slice(b"\r\n");
            }
            unstuff(&stuff(&body)) == Some(expected)
        }

        fn unstuff_inverts_stuff_of_lines(lines: Vec<(bool, Vec<u8>)>) -> bool {
            // Bodies rich in line starts, periods, CR and LF.
            let body: Vec<u8> = lines
                .iter()
                .flat_map(|(dot, l)| {
                    let mut line = if *dot { b".".to_vec() } else { Vec::new() };
                    line.extend(l.iter().map(|b| b"\r\n.ab"[usize::from(*b % 5)]));
                    line.extend_from_slice(b"\r\n");
                    line
                })
                .collect();
            unstuff(&stuff(&body)) == Some(body)
        }

        fn stuffer_chunking_invariance(body: Vec<u8>, splits: Vec<usize>) -> bool {
            let mut s = DotStuffer::new();
            let mut out = Vec::new();
            for part in chunks(&body, &splits) {
                s.stuff(part, &mut out);
            }
            s.finish(&mut out);
            out == stuff(&body)
        }

        fn unstuffer_chunking_invariance(data: Vec<u8>, max_line: u8, splits: Vec<usize>) -> bool {
            // Bias towards the interesting octets, and make the end likely.
            let mut data: Vec<u8> = data.iter().map(|b| if b % 2 == 0 { b"\r\n.\0"[usize::from(b % 8 / 2)] } else { *b }).collect();
            if max_line % 2 == 0 {
                data.extend_from_slice(b"\r\n.\r\nafter");
            }
            let max_line = usize::from(max_line % 8);
            unstuff_parts(max_line, &[&data]) == unstuff_parts(max_line, &chunks(&data, &splits))
        }
    }
}
