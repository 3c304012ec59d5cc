//! The owned reply parser as it was before the zero-copy one replaced it
//! (commit b9101df), kept verbatim as the oracle of the equivalence checks:
//! the new parser's replies, made owned, must be what this gives, with the
//! same `consumed` and the same errors, however the input is split.
//! Not to be improved: its behaviour is the specification.

use petrel_core::wire::reply::{
    EnhancedCode, Reply, ReplyError, ReplyStatus, DEFAULT_MAX_REPLY_LINES, LENIENT_REPLY_LINE,
};

#[derive(Debug, Clone)]
pub struct ReplyParser {
    max_line: usize,
    max_lines: usize,
    /// The code of the reply being parsed, once its first line has been seen.
    code: Option<u16>,
    /// The text of the lines seen so far, after the separator.
    lines: Vec<String>,
}

impl Default for ReplyParser {
    fn default() -> Self {
        Self::new()
    }
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
            code: None,
            lines: Vec::new(),
        }
    }

    /// Parses from the front of `buf`; `consumed` says how many octets the
    /// caller must drop. Lines ending in bare LF are accepted (lenient as a
    /// client). The enhanced code is recognised only when every line's text
    /// starts with the same `x.y.z ` code (RFC 2034); it is then stripped from
    /// the text.
    pub fn parse(&mut self, buf: &[u8]) -> Result<ReplyStatus, ReplyError> {
        let result = self.parse_lines(buf);
        if result.is_err() {
            self.reset();
        }
        result
    }

    /// Forgets the lines of a reply not yet complete, for when the caller
    /// discards its buffer.
    pub fn reset(&mut self) {
        self.code = None;
        self.lines.clear();
    }

    fn parse_lines(&mut self, buf: &[u8]) -> Result<ReplyStatus, ReplyError> {
        let mut consumed = 0;
        loop {
            let rest = buf.get(consumed..).unwrap_or_default();
            let window = rest.get(..self.max_line).unwrap_or(rest);
            let Some(lf) = window.iter().position(|&b| b == b'\n') else {
                if window.len() >= self.max_line {
                    return Err(ReplyError::TooLong);
                }
                return Ok(ReplyStatus::Partial { consumed });
            };
            let line = window.get(..lf).unwrap_or_default();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            consumed += lf + 1;
            let (code, last, text) = split_reply_line(line)?;
            if self.code.is_some_and(|c| c != code) {
                return Err(ReplyError::InconsistentCode);
            }
            if self.lines.len() >= self.max_lines {
                return Err(ReplyError::TooManyLines);
            }
            self.code = Some(code);
            // A Reply holds no CR (see `Reply::multiline`); dropping it
            // here, before the enhanced code is looked for, makes the
            // reply parse the same again once written out.
            let text = String::from_utf8_lossy(text).replace('\r', "");
            self.lines.push(text);
            if last {
                self.code = None;
                let lines = std::mem::take(&mut self.lines);
                let reply = with_enhanced_code(code, lines);
                return Ok(ReplyStatus::Complete { reply, consumed });
            }
        }
    }
}

/// Splits a reply line (without its line end) into code, whether it is the
/// last line, and text.
fn split_reply_line(line: &[u8]) -> Result<(u16, bool, &[u8]), ReplyError> {
    let (digits, rest) = line
        .split_at_checked(3)
        .ok_or(ReplyError::Malformed("line shorter than a reply code"))?;
    let code = digits.iter().try_fold(0u16, |n, &d| {
        d.is_ascii_digit()
            .then(|| n * 10 + u16::from(d - b'0'))
            .ok_or(ReplyError::Malformed("reply code is not three digits"))
    })?;
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

/// Builds the reply, taking the enhanced code out of the text when every line
/// starts with the same one.
fn with_enhanced_code(code: u16, lines: Vec<String>) -> Reply {
    fn leading(line: &str) -> Option<(EnhancedCode, &str)> {
        let (word, text) = line.split_once(' ').unwrap_or((line, ""));
        word.parse().ok().map(|e| (e, text))
    }
    let first = lines.first().and_then(|l| leading(l)).map(|(e, _)| e);
    let shared = first.filter(|&e| {
        lines
            .iter()
            .all(|l| leading(l).is_some_and(|(f, _)| f == e))
    });
    match shared {
        Some(e) => {
            let texts = lines
                .iter()
                .map(|l| leading(l).map_or("", |(_, t)| t).to_owned())
                .collect();
            Reply::multiline(code, Some(e), texts)
        }
        None => Reply::multiline(code, None, lines),
    }
}
