//! SMTP replies: building and writing them (server side) and push-parsing them
//! (client side).
//!
//! [`ReplyParser::parse_ref`] hands out a reply that is complete in the
//! caller's buffer as a [`ReplyRef`], a view of those octets: nothing is
//! copied or allocated, and the enhanced code is parsed once, from the first
//! line (the others are compared with it octet by octet). A reply that
//! arrives in pieces is the exception: its complete lines are copied into the
//! parser until the rest comes. [`ReplyParser::parse`] makes the owned
//! [`Reply`] that a client keeps (an outcome, a refusal).
//!
//! Wire form (RFC 5321 §4.2): every line but the last is `CCC-text`, the last
//! `CCC text` or a bare `CCC`, each ended by CRLF. Enhanced status codes
//! (RFC 3463) go after the separator of every line, as RFC 2034 §4 requires.
//!
//! Decisions:
//! - A [`Reply`] never holds CR or LF inside a line, so nothing a caller puts
//!   into reply text (a peer's HELO name, say) can inject extra lines.
//! - Lines longer than [`MAX_REPLY_LINE`] on the wire are wrapped rather than
//!   truncated, at a space where possible, so no information is lost.
//! - The parser is a client's: it accepts bare LF line ends and lines up to
//!   [`LENIENT_REPLY_LINE`] octets, because deployed servers send both, but it
//!   still bounds line length and line count so a hostile server cannot make
//!   it buffer without limit.
//! - An enhanced code is recognised only when every line starts with the same
//!   one; otherwise the text is kept verbatim, as RFC 2034 defines the code
//!   per reply, not per line. Its class is not checked against the reply
//!   code: the reply code decides what the client does.

use std::fmt;
use std::str::FromStr;

use super::line::{find_either, MAX_REPLY_LINE};

/// The line length a [`ReplyParser`] accepts by default, counting the line
/// end: RFC 5321 allows 512 octets, but real servers send longer lines and a
/// client gains nothing by refusing them.
pub const LENIENT_REPLY_LINE: usize = 4096;

/// The number of lines of one reply a [`ReplyParser`] accepts by default.
pub const DEFAULT_MAX_REPLY_LINES: usize = 256;

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// The subject, at most 999.
    pub subject: u16,
    /// The detail, at most 999.
    pub detail: u16,
}

impl EnhancedCode {
    /// An enhanced code; fields are public, this is for brevity in tables.
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// The text is not an enhanced status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidEnhancedCode;

impl fmt::Display for InvalidEnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid enhanced status code")
    }
}

impl std::error::Error for InvalidEnhancedCode {}

impl FromStr for EnhancedCode {
    type Err = InvalidEnhancedCode;

    /// Parses `class.subject.detail`: class 2, 4 or 5, subject and detail one
    /// to three digits (RFC 3463 §2).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        fn number(part: Option<&str>) -> Result<u16, InvalidEnhancedCode> {
            match part {
                Some(p) if (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => {
                    p.parse().map_err(|_| InvalidEnhancedCode)
                }
                _ => Err(InvalidEnhancedCode),
            }
        }
        let mut parts = s.split('.');
        let class = match parts.next() {
            Some("2") => 2,
            Some("4") => 4,
            Some("5") => 5,
            _ => return Err(InvalidEnhancedCode),
        };
        let code = EnhancedCode::new(class, number(parts.next())?, number(parts.next())?);
        match parts.next() {
            None => Ok(code),
            Some(_) => Err(InvalidEnhancedCode),
        }
    }
}

/// An SMTP reply: a three-digit code, an optional enhanced status code and
/// one or more lines of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    enhanced: Option<EnhancedCode>,
    /// At least one line, none containing CR or LF.
    lines: Vec<String>,
}

impl Reply {
    /// A reply whose text may span lines separated by `'\n'`. The code is
    /// clamped to 200..=599; CR never reaches the wire.
    pub fn new(code: u16, enhanced: Option<EnhancedCode>, text: impl Into<String>) -> Self {
        Self::multiline(code, enhanced, vec![text.into()])
    }

    /// A reply with the given lines (an empty list gives one empty line). A
    /// line containing `'\n'` becomes several; CR is removed.
    pub fn multiline(code: u16, enhanced: Option<EnhancedCode>, lines: Vec<String>) -> Self {
        let mut clean = Vec::with_capacity(lines.len().max(1));
        for line in lines {
            if line.contains(['\r', '\n']) {
                clean.extend(line.split('\n').map(|l| l.replace('\r', "")));
            } else {
                clean.push(line);
            }
        }
        if clean.is_empty() {
            clean.push(String::new());
        }
        Reply {
            code: code.clamp(200, 599),
            enhanced,
            lines: clean,
        }
    }

    /// The three-digit reply code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced status code, if any.
    pub fn enhanced(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    /// The lines of text, without codes.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The lines of text joined by `'\n'`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// Whether this is a positive completion reply (2xx).
    pub fn is_positive(&self) -> bool {
        self.code / 100 == 2
    }

    /// Whether this is a positive intermediate reply (3xx).
    pub fn is_intermediate(&self) -> bool {
        self.code / 100 == 3
    }

    /// Whether this is a transient negative reply (4xx).
    pub fn is_transient(&self) -> bool {
        self.code / 100 == 4
    }

    /// Whether this is a permanent negative reply (5xx).
    pub fn is_permanent(&self) -> bool {
        self.code / 100 == 5
    }

    /// Appends the wire form: every line `CCC-` except the last `CCC `, the
    /// enhanced code (if any) after the separator on every line, CRLF. Lines
    /// longer than [`MAX_REPLY_LINE`] are wrapped (split at spaces when
    /// possible).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let code = self.code.to_string();
        let enhanced = self.enhanced.map(|e| e.to_string());
        // "CCC-", the enhanced code and its space, and CRLF take room from the line.
        let room = MAX_REPLY_LINE.saturating_sub(6 + enhanced.as_ref().map_or(0, |e| e.len() + 1));
        let mut segments = Vec::with_capacity(self.lines.len());
        for line in &self.lines {
            wrap(line, room, &mut segments);
        }
        for (i, segment) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            out.extend_from_slice(code.as_bytes());
            // A bare code is the RFC 5321 form of a last line without text.
            if !(last && segment.is_empty() && enhanced.is_none()) {
                out.push(if last { b' ' } else { b'-' });
                if let Some(e) = &enhanced {
                    out.extend_from_slice(e.as_bytes());
                    if !segment.is_empty() {
                        out.push(b' ');
                    }
                }
                out.extend_from_slice(segment.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

/// Splits `line` into pieces of at most `room` octets, at the last space that
/// fits (dropping that space) or else at the last character boundary.
fn wrap<'a>(line: &'a str, room: usize, out: &mut Vec<&'a str>) {
    let mut rest = line;
    while rest.len() > room {
        let space = rest
            .as_bytes()
            .iter()
            .take(room + 1)
            .rposition(|&b| b == b' ')
            .filter(|&i| i > 0);
        let split = match space {
            Some(i) => rest.get(..i).zip(rest.get(i + 1..)),
            None => (1..=room)
                .rev()
                .find(|&i| rest.is_char_boundary(i))
                .and_then(|i| rest.split_at_checked(i)),
        };
        let Some((head, tail)) = split else { break };
        out.push(head);
        rest = tail;
    }
    out.push(rest);
}

impl fmt::Display for Reply {
    /// One line for logs: `250 2.0.0 text`, the lines joined by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = self.enhanced {
            write!(f, " {e}")?;
        }
        for line in self.lines.iter().filter(|l| !l.is_empty()) {
            write!(f, " {line}")?;
        }
        Ok(())
    }
}

/// A reply as received, borrowed from the caller's buffer (or, for a reply
/// that arrived in pieces, from the parser): what
/// [`ReplyParser::parse_ref`] gives. [`into_owned`](Self::into_owned) makes
/// the [`Reply`] to keep.
#[derive(Debug, Clone, Copy)]
pub struct ReplyRef<'a> {
    code: u16,
    enhanced: Option<EnhancedCode>,
    /// The reply's lines, each with its line end: as received, or as the
    /// parser kept them (CR taken out of the text).
    wire: &'a [u8],
}

impl<'a> ReplyRef<'a> {
    /// The three-digit reply code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced status code, if every line starts with the same one.
    pub fn enhanced(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    /// The text of each line: without the code, separator and enhanced
    /// code, and not checked for UTF-8 ([`into_owned`](Self::into_owned)
    /// replaces what is not).
    pub fn lines(&self) -> ReplyLines<'a> {
        ReplyLines {
            rest: self.wire,
            enhanced: self.enhanced.is_some(),
        }
    }

    /// Whether this is a positive completion reply (2xx).
    pub fn is_positive(&self) -> bool {
        self.code / 100 == 2
    }

    /// Whether this is a positive intermediate reply (3xx).
    pub fn is_intermediate(&self) -> bool {
        self.code / 100 == 3
    }

    /// Whether this is a transient negative reply (4xx).
    pub fn is_transient(&self) -> bool {
        self.code / 100 == 4
    }

    /// Whether this is a permanent negative reply (5xx).
    pub fn is_permanent(&self) -> bool {
        self.code / 100 == 5
    }

    /// The owned reply, invalid UTF-8 replaced by U+FFFD.
    pub fn into_owned(self) -> Reply {
        let lines = self
            .lines()
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect();
        // The code was checked and every line is free of CR and LF: what
        // `Reply::multiline` would make sure of.
        Reply {
            code: self.code,
            enhanced: self.enhanced,
            lines,
        }
    }
}

impl From<ReplyRef<'_>> for Reply {
    fn from(reply: ReplyRef<'_>) -> Self {
        reply.into_owned()
    }
}

/// The lines of a [`ReplyRef`], as octets.
#[derive(Debug, Clone)]
pub struct ReplyLines<'a> {
    rest: &'a [u8],
    /// Every line starts with the enhanced code: skip it.
    enhanced: bool,
}

impl<'a> Iterator for ReplyLines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match memchr::memchr(b'\n', self.rest) {
            Some(lf) => (self.rest.get(..lf)?, self.rest.get(lf + 1..)?),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = line.get(4..).unwrap_or_default();
        if !self.enhanced {
            return Some(text);
        }
        // The code and the space after it, if any (RFC 2034 §4).
        Some(match memchr::memchr(b' ', text) {
            Some(space) => text.get(space + 1..).unwrap_or_default(),
            None => &[],
        })
    }
}

/// Incremental reply parser for the client side: push-parses from a buffer
/// the caller owns.
///
/// A reply that is complete in the buffer is handed out as a view of it
/// ([`parse_ref`](Self::parse_ref)), copied nowhere. Only a reply that
/// arrives in pieces is copied, a line at a time, into the parser, which
/// holds its complete lines until the rest comes (the caller drops them
/// from its buffer meanwhile, so that what it must keep stays under a
/// line), and so is a reply with CR inside its text, which the parser takes
/// out.
#[derive(Debug, Clone)]
pub struct ReplyParser {
    max_line: usize,
    max_lines: usize,
    /// The complete lines of a reply not yet ended; or, once
    /// `handed_out`, the reply last handed out from here.
    held: Vec<u8>,
    /// What the lines in `held` said, while a reply is held in progress.
    progress: Option<Progress>,
    handed_out: bool,
}

/// The lines of one reply read so far.
#[derive(Debug, Clone, Copy)]
struct Progress {
    code: u16,
    lines: usize,
    /// The enhanced code every line so far starts with.
    enhanced: Option<EnhancedCode>,
    /// The length of the first line's spelling of it. It is at [`FIRST_CODE`]
    /// in the reply's octets (the buffer's or the parser's copy); a later
    /// line spelt the same needs no parsing.
    spelling_len: usize,
}

/// Where the first line's enhanced code is in a reply's octets: after
/// `CCC-` or `CCC `.
const FIRST_CODE: usize = 4;

impl Progress {
    /// After the first line of a reply.
    fn first(code: u16, text: &[u8]) -> Self {
        let (enhanced, spelling_len) = match leading_enhanced_code(text) {
            Some((e, len)) => (Some(e), len),
            None => (None, 0),
        };
        Progress {
            code,
            lines: 1,
            enhanced,
            spelling_len,
        }
    }

    /// After a later line: the shared enhanced code survives if this line
    /// starts with it, spelt as the first line did (`spelling`) or
    /// otherwise.
    fn next(&mut self, text: &[u8], spelling: &[u8]) {
        self.lines += 1;
        let Some(e) = self.enhanced else {
            return;
        };
        let spelt_alike = text.len() >= spelling.len()
            && spelling.iter().zip(text).all(|(a, b)| a == b)
            && matches!(text.get(spelling.len()), None | Some(b' '));
        if !spelt_alike && leading_enhanced_code(text).map(|(f, _)| f) != Some(e) {
            self.enhanced = None;
        }
    }
}

/// The enhanced code that is the first word of `text` (up to the first space
/// or the end), with that word's length: `class.subject.detail`, class 2, 4
/// or 5, subject and detail one to three digits (RFC 3463 §2), as
/// [`EnhancedCode::from_str`] reads it.
fn leading_enhanced_code(text: &[u8]) -> Option<(EnhancedCode, usize)> {
    /// One to three digits at `at`, then `end` (or the end of the text,
    /// when `end` is a space).
    fn number(text: &[u8], at: &mut usize, end: u8) -> Option<u16> {
        let mut value = 0;
        for digits in 1..=4 {
            match text.get(*at) {
                Some(&d) if d.is_ascii_digit() && digits <= 3 => {
                    value = value * 10 + u16::from(d - b'0');
                    *at += 1;
                }
                Some(&b) if b == end && digits > 1 => return Some(value),
                None if end == b' ' && digits > 1 => return Some(value),
                _ => return None,
            }
        }
        None
    }
    let class = match text.first()? {
        b'2' => 2,
        b'4' => 4,
        b'5' => 5,
        _ => return None,
    };
    if text.get(1) != Some(&b'.') {
        return None;
    }
    let mut at = 2;
    let subject = number(text, &mut at, b'.')?;
    at += 1;
    let detail = number(text, &mut at, b' ')?;
    Some((EnhancedCode::new(class, subject, detail), at))
}

/// The result of [`ReplyParser::parse`] (an owned [`Reply`]) and
/// [`ReplyParser::parse_ref`] (a [`ReplyRef`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyStatus<R = Reply> {
    /// A reply ended; the caller drops `consumed` octets.
    Complete {
        /// The reply.
        reply: R,
        /// Octets to drop from the front of the buffer.
        consumed: usize,
    },
    /// The reply has not ended: the parser kept the complete lines it saw and
    /// the caller drops `consumed` octets, then reads more.
    Partial {
        /// Octets to drop from the front of the buffer.
        consumed: usize,
    },
}

impl<R> ReplyStatus<R> {
    /// The same status with `f` applied to the reply.
    pub fn map_reply<S>(self, f: impl FnOnce(R) -> S) -> ReplyStatus<S> {
        match self {
            ReplyStatus::Complete { reply, consumed } => ReplyStatus::Complete {
                reply: f(reply),
                consumed,
            },
            ReplyStatus::Partial { consumed } => ReplyStatus::Partial { consumed },
        }
    }
}

/// Why a server's reply could not be parsed. The connection cannot continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyError {
    /// A line exceeds the parser's line limit.
    TooLong,
    /// A reply has more lines than the parser's limit.
    TooManyLines,
    /// A line is not a reply line.
    Malformed(&'static str),
    /// The lines of a multi-line reply carry different codes (RFC 5321 §4.2.1).
    InconsistentCode,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::TooLong => f.write_str("reply line too long"),
            ReplyError::TooManyLines => f.write_str("reply has too many lines"),
            ReplyError::Malformed(why) => write!(f, "malformed reply: {why}"),
            ReplyError::InconsistentCode => f.write_str("inconsistent codes in multi-line reply"),
        }
    }
}

impl std::error::Error for ReplyError {}

impl Default for ReplyParser {
    fn default() -> Self {
        Self::new()
    }
}

/// Where [`ReplyParser::scan`] left a reply.
enum Scanned {
    /// Not ended; the complete lines are held.
    Partial { consumed: usize },
    /// Ended, all of it in the caller's buffer, as received.
    InBuffer {
        consumed: usize,
        code: u16,
        enhanced: Option<EnhancedCode>,
    },
    /// Ended, all of it held.
    Held {
        consumed: usize,
        code: u16,
        enhanced: Option<EnhancedCode>,
    },
}

impl ReplyParser {
    /// A parser with lenient limits: [`LENIENT_REPLY_LINE`] octets per line,
    /// [`DEFAULT_MAX_REPLY_LINES`] lines per reply.
    pub fn new() -> Self {
        Self::with_limits(LENIENT_REPLY_LINE, DEFAULT_MAX_REPLY_LINES)
    }

    /// A parser accepting lines of at most `max_line` octets (counting the
    /// line end, at least 5 to hold a bare code) and replies of at most
    /// `max_lines` lines (at least 1).
    pub fn with_limits(max_line: usize, max_lines: usize) -> Self {
        ReplyParser {
            max_line: max_line.max(5),
            max_lines: max_lines.max(1),
            held: Vec::new(),
            progress: None,
            handed_out: false,
        }
    }

    /// Parses from the front of `buf` into an owned [`Reply`]:
    /// [`parse_ref`](Self::parse_ref), then [`ReplyRef::into_owned`].
    pub fn parse(&mut self, buf: &[u8]) -> Result<ReplyStatus, ReplyError> {
        self.parse_ref(buf)
            .map(|status| status.map_reply(ReplyRef::into_owned))
    }

    /// Parses from the front of `buf`; `consumed` says how many octets the
    /// caller must drop, once it is done with the reply: the reply borrows
    /// `buf`, and the parser too (a reply that arrived in pieces is the
    /// parser's copy). Lines ending in bare LF are accepted (lenient as a
    /// client). The enhanced code is recognised only when every line's text
    /// starts with the same `x.y.z ` code (RFC 2034); it is then stripped from
    /// the text. CR inside a line's text is dropped, before the enhanced code
    /// is looked for, as a [`Reply`] holds none: so a reply parses the same
    /// again once written out.
    #[inline]
    pub fn parse_ref<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> Result<ReplyStatus<ReplyRef<'a>>, ReplyError> {
        if self.handed_out {
            self.handed_out = false;
            self.held.clear();
        }
        let scanned = match self.scan(buf) {
            Ok(scanned) => scanned,
            Err(error) => {
                self.reset();
                return Err(error);
            }
        };
        Ok(match scanned {
            Scanned::Partial { consumed } => ReplyStatus::Partial { consumed },
            Scanned::InBuffer {
                consumed,
                code,
                enhanced,
            } => ReplyStatus::Complete {
                reply: ReplyRef {
                    code,
                    enhanced,
                    wire: buf.get(..consumed).unwrap_or_default(),
                },
                consumed,
            },
            Scanned::Held {
                consumed,
                code,
                enhanced,
            } => {
                self.handed_out = true;
                ReplyStatus::Complete {
                    reply: ReplyRef {
                        code,
                        enhanced,
                        wire: &self.held,
                    },
                    consumed,
                }
            }
        })
    }

    /// Forgets the lines of a reply not yet complete, for when the caller
    /// discards its buffer.
    pub fn reset(&mut self) {
        self.progress = None;
        self.held.clear();
        self.handed_out = false;
    }

    /// Reads lines from the front of `buf` until a reply ends, checking
    /// each; one call reads at most one reply.
    #[inline]
    fn scan(&mut self, buf: &[u8]) -> Result<Scanned, ReplyError> {
        let mut progress = self.progress.take();
        // Whether this reply's lines go to `held`: it began in an earlier
        // buffer, or has a CR to take out. Only such a reply is in `held`,
        // from its first line on.
        let mut holding = progress.is_some();
        debug_assert!(holding || self.held.is_empty());
        let mut consumed = 0;
        loop {
            let rest = buf.get(consumed..).unwrap_or_default();
            let window = rest.get(..self.max_line).unwrap_or(rest);
            let Some((lf, stray_cr)) = line_end(window) else {
                if window.len() >= self.max_line {
                    return Err(ReplyError::TooLong);
                }
                if !holding {
                    self.held
                        .extend_from_slice(buf.get(..consumed).unwrap_or_default());
                }
                self.progress = progress;
                return Ok(Scanned::Partial { consumed });
            };
            let line = window.get(..lf).unwrap_or_default();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let (code, last, text) = split_reply_line(line)?;
            if progress.is_some_and(|p| p.code != code) {
                return Err(ReplyError::InconsistentCode);
            }
            if progress.map_or(0, |p| p.lines) >= self.max_lines {
                return Err(ReplyError::TooManyLines);
            }
            if stray_cr && !holding {
                // The lines before this one, in this buffer, as they are.
                self.held
                    .extend_from_slice(buf.get(..consumed).unwrap_or_default());
                holding = true;
            }
            consumed += lf + 1;
            let text = if holding {
                // The code and separator, the text without CR, an LF.
                let head = line.get(..4).unwrap_or(line);
                self.held.extend_from_slice(head);
                let start = self.held.len();
                if stray_cr {
                    // Invalid UTF-8 is replaced before CR is taken out, as
                    // taking it out first could join two invalid octets
                    // into one replacement. Rare, so it may allocate.
                    let clean = String::from_utf8_lossy(text).replace('\r', "");
                    self.held.extend_from_slice(clean.as_bytes());
                } else {
                    self.held.extend_from_slice(text);
                }
                self.held.push(b'\n');
                self.held
                    .get(start..self.held.len() - 1)
                    .unwrap_or_default()
            } else {
                text
            };
            match &mut progress {
                None => progress = Some(Progress::first(code, text)),
                Some(p) => {
                    // The reply's octets start at the front of the buffer,
                    // or of the parser's copy.
                    let octets: &[u8] = if holding { &self.held } else { buf };
                    let spelling = octets.get(FIRST_CODE..FIRST_CODE + p.spelling_len);
                    p.next(text, spelling.unwrap_or_default());
                }
            }
            if !last {
                continue;
            }
            let enhanced = progress.and_then(|p| p.enhanced);
            return Ok(if holding {
                Scanned::Held {
                    consumed,
                    code,
                    enhanced,
                }
            } else {
                Scanned::InBuffer {
                    consumed,
                    code,
                    enhanced,
                }
            });
        }
    }
}

/// Where the first LF in `window` is, and whether a CR comes before it
/// anywhere but right before it: one search for both, as a CR in a line is
/// rare.
#[inline]
fn line_end(window: &[u8]) -> Option<(usize, bool)> {
    let first = find_either(window, b'\r', b'\n', |far| {
        memchr::memchr2(b'\r', b'\n', far)
    })?;
    match window.get(first..)? {
        [b'\n', ..] => Some((first, false)),
        [b'\r', b'\n', ..] => Some((first + 1, false)),
        _ => {
            let lf = first + 1 + memchr::memchr(b'\n', window.get(first + 1..)?)?;
            Some((lf, true))
        }
    }
}

/// Splits a reply line (without its line end) into code, whether it is the
/// last line, and text.
fn split_reply_line(line: &[u8]) -> Result<(u16, bool, &[u8]), ReplyError> {
    let [a, b, c, rest @ ..] = line else {
        return Err(ReplyError::Malformed("line shorter than a reply code"));
    };
    if !(a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit()) {
        return Err(ReplyError::Malformed("reply code is not three digits"));
    }
    let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
    if !(200..=599).contains(&code) {
        return Err(ReplyError::Malformed("reply code out of range"));
    }
    match rest.split_first() {
        None => Ok((code, true, rest)),
        Some((b' ', text)) => Ok((code, true, text)),
        Some((b'-', text)) => Ok((code, false, text)),
        Some(_) => Err(ReplyError::Malformed("bad separator after reply code")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::line::tests::chunks;
    use quickcheck::{quickcheck, Arbitrary, Gen};

    fn parse_all(parser: &mut ReplyParser, parts: &[&[u8]]) -> Vec<Result<Reply, ReplyError>> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for part in parts {
            buf.extend_from_slice(part);
            loop {
                match parser.parse(&buf) {
                    Ok(ReplyStatus::Complete { reply, consumed }) => {
                        buf.drain(..consumed);
                        out.push(Ok(reply));
                    }
                    Ok(ReplyStatus::Partial { consumed }) => {
                        buf.drain(..consumed);
                        break;
                    }
                    Err(e) => {
                        out.push(Err(e));
                        return out;
                    }
                }
            }
        }
        out
    }

    fn parse_one(wire: &[u8]) -> Result<ReplyStatus, ReplyError> {
        ReplyParser::new().parse(wire)
    }

    fn e(class: u8, subject: u16, detail: u16) -> Option<EnhancedCode> {
        Some(EnhancedCode::new(class, subject, detail))
    }

    #[test]
    fn enhanced_code_text() {
        assert_eq!(e(5, 1, 3).unwrap().to_string(), "5.1.3");
        assert_eq!("2.0.0".parse(), Ok(e(2, 0, 0).unwrap()));
        assert_eq!("4.999.123".parse(), Ok(e(4, 999, 123).unwrap()));
        for bad in [
            "", "3.0.0", "2.0", "2.0.0.0", "2.1000.0", "2..0", "2.a.0", "2.0.+1", "25.0.0",
        ] {
            assert_eq!(
                bad.parse::<EnhancedCode>(),
                Err(InvalidEnhancedCode),
                "{bad}"
            );
        }
    }

    #[test]
    fn writes_wire_form() {
        let r = Reply::new(250, e(2, 0, 0), "OK");
        assert_eq!(r.to_bytes(), b"250 2.0.0 OK\r\n");
        assert_eq!(r.to_string(), "250 2.0.0 OK");
        let r = Reply::new(250, None, "first\nsecond\r\n\nlast");
        assert_eq!(r.lines(), ["first", "second", "", "last"]);
        assert_eq!(r.text(), "first\nsecond\n\nlast");
        assert_eq!(
            r.to_bytes(),
            b"250-first\r\n250-second\r\n250-\r\n250 last\r\n"
        );
        assert_eq!(r.to_string(), "250 first second last");
        let r = Reply::multiline(550, e(5, 1, 1), vec!["a".into(), String::new()]);
        assert_eq!(r.to_bytes(), b"550-5.1.1 a\r\n550 5.1.1\r\n");
        assert_eq!(Reply::new(354, None, "").to_bytes(), b"354\r\n");
        assert_eq!(Reply::multiline(221, None, vec![]).lines(), [""]);
        assert_eq!(Reply::new(99, None, "x").code(), 200);
        assert_eq!(Reply::new(1000, None, "x").code(), 599);
    }

    #[test]
    fn classes() {
        let classes = |c| {
            let r = Reply::new(c, None, "");
            [
                r.is_positive(),
                r.is_intermediate(),
                r.is_transient(),
                r.is_permanent(),
            ]
        };
        assert_eq!(classes(250), [true, false, false, false]);
        assert_eq!(classes(354), [false, true, false, false]);
        assert_eq!(classes(421), [false, false, true, false]);
        assert_eq!(classes(554), [false, false, false, true]);
    }

    #[test]
    fn wraps_long_lines() {
        let words = vec!["word"; 300].join(" ");
        let r = Reply::new(250, e(2, 0, 0), words.clone());
        let wire = r.to_bytes();
        let lines: Vec<&[u8]> = wire.split_inclusive(|&b| b == b'\n').collect();
        assert!(lines.len() > 1);
        assert!(lines
            .iter()
            .all(|l| l.len() <= MAX_REPLY_LINE && l.starts_with(b"250")));
        let parsed = match parse_one(&wire).unwrap() {
            ReplyStatus::Complete { reply, .. } => reply,
            other => panic!("{other:?}"),
        };
        assert_eq!(parsed.enhanced(), e(2, 0, 0));
        assert_eq!(parsed.lines().join(" "), words);
        // No space to split at: split at a character boundary.
        let r = Reply::new(500, None, "é".repeat(600));
        let wire = r.to_bytes();
        assert!(wire
            .split(|&b| b == b'\n')
            .all(|l| l.len() <= MAX_REPLY_LINE));
        assert!(std::str::from_utf8(&wire).is_ok());
    }

    #[test]
    fn parses_replies() {
        let complete = |wire: &[u8]| match parse_one(wire).unwrap() {
            ReplyStatus::Complete { reply, consumed } => (reply, consumed),
            other => panic!("{other:?}"),
        };
        let (r, n) = complete(b"220 mx.example ESMTP\r\nrest");
        assert_eq!(
            (r.code(), r.enhanced(), r.text(), n),
            (220, None, "mx.example ESMTP".into(), 22)
        );
        let (r, _) = complete(b"250-2.1.0 first\r\n250 2.1.0 second\r\n");
        assert_eq!(
            (r.enhanced(), r.text()),
            (e(2, 1, 0), "first\nsecond".into())
        );
        // Enhanced codes must agree on every line to be recognised.
        let (r, _) = complete(b"250-2.1.0 first\r\n250 2.1.5 second\r\n");
        assert_eq!(
            (r.enhanced(), r.text()),
            (None, "2.1.0 first\n2.1.5 second".into())
        );
        let (r, _) = complete(b"250-mx\r\n250 5.0.0 oops\r\n");
        assert_eq!(r.enhanced(), None);
        let (r, n) = complete(b"250\n");
        assert_eq!((r.code(), r.text(), n), (250, String::new(), 4));
        let (r, _) = complete(b"550 5.1.1\r\n");
        assert_eq!((r.enhanced(), r.text()), (e(5, 1, 1), String::new()));
        let (r, _) = complete(b"451 bad \xff text\r\n");
        assert_eq!(r.text(), "bad \u{fffd} text");
    }

    #[test]
    fn partial_replies_keep_state() {
        let mut p = ReplyParser::new();
        assert_eq!(p.parse(b""), Ok(ReplyStatus::Partial { consumed: 0 }));
        assert_eq!(
            p.parse(b"250-a\r\n250-b"),
            Ok(ReplyStatus::Partial { consumed: 7 })
        );
        assert_eq!(
            p.parse(b"250-b\r\n"),
            Ok(ReplyStatus::Partial { consumed: 7 })
        );
        let status = p.parse(b"250 c\r\n").unwrap();
        assert_eq!(
            status,
            ReplyStatus::Complete {
                reply: Reply::multiline(250, None, vec!["a".into(), "b".into(), "c".into()]),
                consumed: 7
            }
        );
    }

    #[test]
    fn rejects_bad_replies() {
        let err = |wire: &[u8]| parse_one(wire).unwrap_err();
        assert!(matches!(err(b"25\r\n"), ReplyError::Malformed(_)));
        assert!(matches!(err(b"2x0 ok\r\n"), ReplyError::Malformed(_)));
        assert!(matches!(err(b"199 ok\r\n"), ReplyError::Malformed(_)));
        assert!(matches!(err(b"600 ok\r\n"), ReplyError::Malformed(_)));
        assert!(matches!(err(b"250_ok\r\n"), ReplyError::Malformed(_)));
        assert!(matches!(err(b"\r\n"), ReplyError::Malformed(_)));
        assert_eq!(err(b"250-a\r\n251 b\r\n"), ReplyError::InconsistentCode);
        let long = [b"250 ".as_slice(), &[b'x'; LENIENT_REPLY_LINE]].concat();
        assert_eq!(err(&long), ReplyError::TooLong);
        let mut p = ReplyParser::with_limits(MAX_REPLY_LINE, 2);
        assert_eq!(
            p.parse(b"250-a\r\n250-b\r\n250 c\r\n"),
            Err(ReplyError::TooManyLines)
        );
        // After an error the parser starts afresh.
        assert!(matches!(
            p.parse(b"220 hi\r\n"),
            Ok(ReplyStatus::Complete { .. })
        ));
        let ok = [b"250 ".as_slice(), &[b'x'; LENIENT_REPLY_LINE - 6], b"\r\n"].concat();
        assert!(matches!(parse_one(&ok), Ok(ReplyStatus::Complete { .. })));
    }

    /// A reply that survives a round trip: printable ASCII lines short enough
    /// not to be wrapped, enhanced code only where its class can exist.
    #[derive(Debug, Clone)]
    struct ArbitraryReply(Reply);

    impl Arbitrary for ArbitraryReply {
        fn arbitrary(g: &mut Gen) -> Self {
            let code = 200 + u16::arbitrary(g) % 400;
            let class = (code / 100) as u8;
            let enhanced = (class != 3 && bool::arbitrary(g)).then(|| {
                EnhancedCode::new(class, u16::arbitrary(g) % 1000, u16::arbitrary(g) % 1000)
            });
            let lines = (0..1 + usize::arbitrary(g) % 5)
                .map(|_| {
                    let len = usize::arbitrary(g) % 100;
                    (0..len)
                        .map(|_| char::from(b' ' + u8::arbitrary(g) % 95))
                        .collect()
                })
                .collect();
            ArbitraryReply(Reply::multiline(code, enhanced, lines))
        }
    }

    #[test]
    fn a_reply_with_cr_in_its_text_parses_the_same_once_written_out() {
        // Found by the reply fuzz target: "5.0.07\r\r" was no enhanced
        // code, but the reply wrote itself out without the CRs, as
        // "227 5.0.07", which has one.
        let mut parser = ReplyParser::new();
        let Ok(ReplyStatus::Complete { reply, .. }) = parser.parse(b"227 5.0.07\r\r\r\n") else {
            panic!("no reply");
        };
        assert_eq!(reply.enhanced(), Some(EnhancedCode::new(5, 0, 7)));
        let again = ReplyParser::new().parse(&reply.to_bytes());
        assert!(matches!(again, Ok(ReplyStatus::Complete { reply: r, .. }) if r == reply));
    }

    #[test]
    fn invalid_utf8_around_a_cr_is_replaced_before_the_cr_goes() {
        // Found by the reply fuzz target: without the CR, 0xea 0x80 is one
        // invalid sequence, one U+FFFD; with it, two.
        let (reply, _) = match parse_one(b"250 x\xea\r\x80y\r\n").unwrap() {
            ReplyStatus::Complete { reply, consumed } => (reply, consumed),
            other => panic!("{other:?}"),
        };
        assert_eq!(reply.text(), "x\u{fffd}\u{fffd}y");
    }

    quickcheck! {
        fn reply_round_trips(r: ArbitraryReply) -> bool {
            let r = r.0;
            // Text that itself starts like an enhanced code is ambiguous.
            let ambiguous = r.enhanced().is_none()
                && r.lines().iter().all(|l| l.split(' ').next().is_some_and(|w| w.parse::<EnhancedCode>().is_ok()));
            let wire = r.to_bytes();
            ambiguous || parse_one(&wire) == Ok(ReplyStatus::Complete { reply: r, consumed: wire.len() })
        }

        fn reply_parser_chunking_invariance(replies: Vec<ArbitraryReply>, garbage: Vec<u8>, splits: Vec<usize>) -> bool {
            let mut wire: Vec<u8> = replies.iter().flat_map(|r| r.0.to_bytes()).collect();
            wire.extend_from_slice(&garbage);
            let whole = parse_all(&mut ReplyParser::with_limits(120, 4), &[&wire]);
            whole == parse_all(&mut ReplyParser::with_limits(120, 4), &chunks(&wire, &splits))
        }

        fn reply_parser_never_panics(data: Vec<u8>) -> bool {
            let mut p = ReplyParser::with_limits(16, 4);
            let mut buf = &data[..];
            while let Ok(status) = p.parse(buf) {
                let n = match status {
                    ReplyStatus::Complete { consumed, .. } => consumed,
                    ReplyStatus::Partial { consumed } => consumed,
                };
                if n > buf.len() {
                    return false;
                }
                if matches!(status, ReplyStatus::Partial { .. }) {
                    break;
                }
                buf = &buf[n..];
            }
            true
        }
    }
}
