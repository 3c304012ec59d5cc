//! MAIL and RCPT lines read sixteen octets at a time (SSE2, x86-64's
//! baseline): the common case of the two commands a relay parses most.
//!
//! Each token (local part, domain, parameter name, value) is found by
//! classifying the sixteen octets where it starts in a few vector
//! operations and counting the leading octets of its class, instead of
//! deciding octet by octet; so there is no branch per octet, and none whose
//! outcome depends on a token's length.
//!
//! The path is an accelerator, not a second grammar: it takes only what it
//! can read completely — ASCII, dot-string local parts, domains of at most
//! 63 octets, known parameters, values without xtext escapes and shorter
//! than 128 octets — and gives up (`None`) on anything else, valid or
//! not, for the octet-by-octet parser to read and answer. What it accepts
//! it returns exactly as that parser does; the tests hold it to that.

use safe_arch::{
    bitand_m128i, bitandnot_m128i, bitor_m128i, cmp_eq_mask_i8_m128i, cmp_gt_mask_i8_m128i,
    cmp_lt_mask_i8_m128i, load_unaligned_m128i, m128i, move_mask_i8_m128i, set_splat_i8_m128i,
};

use super::{
    fold, keyword, notify_with, BodyType, CommandRef, ForwardPathRef, HostRef, MailParamsRef,
    MailboxRef, OrcptRef, Param, RcptParamsRef, Ret, ReversePathRef, Verb, XText,
};

/// The line, read sixteen octets at a time.
struct Line<'a> {
    octets: &'a [u8],
    /// The same, as text.
    text: &'a str,
    /// The line's last sixteen octets, or the whole of a shorter line with
    /// zeros after it, for the loads that would go past its end.
    tail: u128,
    /// Where `tail` starts in the line.
    tail_start: usize,
}

impl<'a> Line<'a> {
    #[inline(always)]
    fn new(octets: &'a [u8], text: &'a str) -> Option<Line<'a>> {
        let tail = match octets.last_chunk::<16>() {
            Some(last) => u128::from_le_bytes(*last),
            None => {
                // Eight to fifteen octets: the first eight and the last
                // eight, overlapping, shifted into place in registers.
                let first = u64::from_le_bytes(*octets.first_chunk::<8>()?);
                let last = u64::from_le_bytes(*octets.last_chunk::<8>()?);
                let rest = last
                    .checked_shr(8 * (16 - octets.len()) as u32)
                    .unwrap_or(0);
                u128::from(first) | u128::from(rest) << 64
            }
        };
        Some(Line {
            octets,
            text,
            tail,
            tail_start: octets.len().saturating_sub(16),
        })
    }

    /// The sixteen octets at `at`, and how many of the mask's low bits
    /// come before `at`, to be shifted out. Near the end of the line the
    /// tail is loaded and the mask shifted, rather than a padded copy of
    /// the line kept, whose loads would wait on the copy's stores;
    /// shifting brings in zeros, which are in no class, so a run never
    /// goes past the end.
    #[inline(always)]
    fn at(&self, at: usize) -> (m128i, u32) {
        match self
            .octets
            .get(at..)
            .and_then(|rest| rest.first_chunk::<16>())
        {
            Some(chunk) => (load_unaligned_m128i(chunk), 0),
            None => {
                let before = at.saturating_sub(self.tail_start).min(16) as u32;
                (load_unaligned_m128i(&self.tail.to_le_bytes()), before)
            }
        }
    }

    /// The octets from `start` to `end` as text.
    #[inline(always)]
    fn text(&self, start: usize, end: usize) -> Option<&'a str> {
        let (_, rest) = self.text.split_at_checked(start)?;
        let (piece, _) = rest.split_at_checked(end.checked_sub(start)?)?;
        Some(piece)
    }

    /// The sixteen octets at `at` as a number, the first lowest, zeros
    /// past the end of the line.
    #[inline(always)]
    fn sixteen(&self, at: usize) -> u128 {
        match self
            .octets
            .get(at..)
            .and_then(|rest| rest.first_chunk::<16>())
        {
            Some(chunk) => u128::from_le_bytes(*chunk),
            None => {
                let before = at.saturating_sub(self.tail_start);
                self.tail.checked_shr(8 * before as u32).unwrap_or(0)
            }
        }
    }

    /// The letters, digits and hyphens at `at`, [`fold`]ed, and where they
    /// end; `None` if there are sixteen or more. Every keyword a value is
    /// matched against is such a word, and ends where the word does
    /// (the callers check what follows), so a word that matches one is
    /// what [`word_at`](super::word_at) finds there.
    #[inline(always)]
    fn word(&self, at: usize) -> Option<(u128, usize)> {
        let (v, before) = self.at(at);
        let len = (bits(ldh(v)) >> before).trailing_ones() as usize;
        // Folded in the register the octets were classified in.
        let folded = u128::from(bitor_m128i(v, splat(0x20)));
        let folded = folded.checked_shr(8 * before).unwrap_or(0);
        let octets = BYTES.get(len).filter(|_| len < 16)?;
        Some((folded & octets, at + len))
    }

    /// The octet at `at`: 0 at the end of the line (the caller tells an
    /// end from a NUL by the position).
    #[inline(always)]
    fn octet(&self, at: usize) -> u8 {
        self.octets.get(at).copied().unwrap_or(0)
    }

    /// Whether a value or the path ends at `at`: a space or the end.
    #[inline(always)]
    fn ends_at(&self, at: usize) -> bool {
        at == self.octets.len() || self.octet(at) == b' '
    }

    /// The length of the run at `at` of octets `class` accepts, shorter
    /// than `limit` (a multiple of 16), and the octets among its first 64
    /// that `marks` pick out, as bits from `at`; `None` if the run reaches
    /// `limit`. Most runs end within sixteen octets: that case is read
    /// here, inline, and longer runs out of line, so that the loop over
    /// their chunks does not weigh on every caller's registers and code.
    #[inline(always)]
    fn run<const N: usize>(
        &self,
        at: usize,
        limit: usize,
        class: impl Fn(m128i) -> m128i,
        marks: impl Fn(m128i) -> [m128i; N],
    ) -> Option<(usize, [u64; N])> {
        let (v, before) = self.at(at);
        let taken = bits(class(v)) >> before;
        let found = marks(v).map(|mark| u64::from(bits(mark) >> before));
        match taken {
            0xffff => self.run_on(at, limit, class, marks, found),
            _ => {
                let len = taken.trailing_ones() as usize;
                Some((len, found.map(|f| f & low_bits(len))))
            }
        }
    }

    /// [`run`](Self::run) past its first sixteen octets, `found` in them.
    #[inline(never)]
    fn run_on<const N: usize>(
        &self,
        at: usize,
        limit: usize,
        class: impl Fn(m128i) -> m128i,
        marks: impl Fn(m128i) -> [m128i; N],
        mut found: [u64; N],
    ) -> Option<(usize, [u64; N])> {
        let mut chunk = 16;
        while chunk < limit {
            let (v, before) = self.at(at + chunk);
            let taken = bits(class(v)) >> before;
            for (found, mark) in found.iter_mut().zip(marks(v)) {
                let mark = u64::from(bits(mark) >> before);
                *found |= mark.checked_shl(chunk as u32).unwrap_or(0);
            }
            if taken != 0xffff {
                let len = chunk + taken.trailing_ones() as usize;
                return Some((len, found.map(|f| f & low_bits(len))));
            }
            chunk += 16;
        }
        None
    }
}

/// Masks of the first 0 to 16 octets of a number read from sixteen.
#[allow(clippy::indexing_slicing)] // Evaluated at compile time, within bounds.
const BYTES: [u128; 17] = {
    let mut masks = [0; 17];
    let mut n = 1;
    while n < 17 {
        masks[n] = u128::MAX >> (128 - 8 * n);
        n += 1;
    }
    masks
};

/// The high bits of the sixteen octets, the first octet's lowest.
#[inline(always)]
fn bits(v: m128i) -> u32 {
    // Sixteen bits: the cast cannot lose any.
    move_mask_i8_m128i(v) as u32
}

/// The lowest `len` bits, all of them from 64 up.
#[inline(always)]
fn low_bits(len: usize) -> u64 {
    u64::MAX
        .checked_shr(64u32.saturating_sub(len as u32))
        .unwrap_or(0)
}

#[inline(always)]
fn splat(b: u8) -> m128i {
    set_splat_i8_m128i(b as i8)
}

#[inline(always)]
fn is(v: m128i, b: u8) -> m128i {
    cmp_eq_mask_i8_m128i(v, splat(b))
}

/// Octets from `lo` to `hi`, both ASCII. The comparisons are signed, so
/// octets from 0x80 up, negative, are in no such range.
#[inline(always)]
fn between(v: m128i, lo: u8, hi: u8) -> m128i {
    bitand_m128i(
        cmp_gt_mask_i8_m128i(v, splat(lo - 1)),
        cmp_lt_mask_i8_m128i(v, splat(hi + 1)),
    )
}

/// Printable ASCII, 0x21 to 0x7e.
#[inline(always)]
fn graphic(v: m128i) -> m128i {
    between(v, 0x21, 0x7e)
}

/// ASCII letters, digits and hyphens: an esmtp-keyword's and an ASCII
/// label's octets. ORing 0x20 lower-cases a letter and maps nothing else
/// onto one.
#[inline(always)]
fn ldh(v: m128i) -> m128i {
    let letter = between(bitor_m128i(v, splat(0x20)), b'a', b'z');
    bitor_m128i(bitor_m128i(letter, between(v, b'0', b'9')), is(v, b'-'))
}

/// atext (RFC 5322 §3.2.3) and dots, ASCII: printable but the specials.
#[inline(always)]
fn atext_or_dot(v: m128i) -> m128i {
    let specials = bitor_m128i(
        bitor_m128i(
            bitor_m128i(is(v, b'"'), between(v, b'(', b')')),
            bitor_m128i(is(v, b','), between(v, b':', b'<')),
        ),
        bitor_m128i(
            bitor_m128i(is(v, b'>'), is(v, b'@')),
            between(v, b'[', b']'),
        ),
    );
    bitandnot_m128i(specials, graphic(v))
}

/// What xtext carries as itself: printable ASCII but `+` and `=`.
#[inline(always)]
fn xchar(v: m128i) -> m128i {
    bitandnot_m128i(bitor_m128i(is(v, b'+'), is(v, b'=')), graphic(v))
}

/// The value of the first `len` (1 to 8) octets of `word`, decimal
/// digits, the first the most significant: shifted up so that zeros come
/// in as leading zero digits, then pairs, fours and eights of digits
/// combined by one multiplication each.
#[inline(always)]
fn eight_digits(word: u64, len: usize) -> u64 {
    let digits = (word & 0x0f0f_0f0f_0f0f_0f0f) << (8 * (8 - len.clamp(1, 8)));
    let pairs = (digits.wrapping_mul(10 << 8 | 1) >> 8) & 0x00ff_00ff_00ff_00ff;
    let fours = (pairs.wrapping_mul(100 << 16 | 1) >> 16) & 0x0000_ffff_0000_ffff;
    fours.wrapping_mul(10_000 << 32 | 1) >> 32
}

/// Dots placed as a dot-string's or a domain's: not first, not last, never
/// two together, in a run of `len` octets.
#[inline(always)]
fn dots_ok(dots: u64, len: usize) -> bool {
    let ends = 1 | 1u64.checked_shl(len.saturating_sub(1) as u32).unwrap_or(0);
    len > 0 && dots & ends == 0 && dots & (dots >> 1) == 0
}

/// A MAIL or RCPT line (trailing blanks trimmed), its arguments at
/// `start`; `None` when the octet-by-octet parser is to read it.
#[inline(always)]
pub(super) fn mail_or_rcpt(octets: &[u8], verb: Verb, start: usize) -> Option<CommandRef<'_>> {
    // Every octet the path accepts is ASCII, so a line it takes is UTF-8.
    let line = Line::new(octets, std::str::from_utf8(octets).ok()?)?;
    let mail = verb == Verb::Mail;
    // `FROM:<` or `TO:<`, perhaps with a space before the `<`, compared
    // as one word: 0x20 ORed into the letters lower-cases them and makes
    // nothing else equal to one.
    let head = line.sixteen(start) as u64;
    #[allow(clippy::indexing_slicing)] // Evaluated at compile time, within bounds.
    const fn word(octets: &[u8]) -> u64 {
        let mut word = [0; 8];
        let mut i = 0;
        while i < octets.len() && i < 8 {
            word[i] = octets[i];
            i += 1;
        }
        u64::from_le_bytes(word)
    }
    let (letters, tight, spaced, len) = match mail {
        true => (0x2020_2020, word(b"from:<"), word(b"from: <"), 6),
        false => (0x2020, word(b"to:<"), word(b"to: <"), 4),
    };
    let octets_of = |n: usize| u64::MAX >> (64 - 8 * n);
    let head = head | letters;
    let path = if head & octets_of(len) == tight {
        start + len
    } else if head & octets_of(len + 1) == spaced {
        start + len + 1
    } else {
        return None;
    };
    if line.octet(path) == b'>' {
        // The null path, which only MAIL takes.
        return match mail {
            true => Some(CommandRef::Mail {
                reverse_path: ReversePathRef::Null,
                params: mail_params(&line, path + 1)?,
            }),
            false => None,
        };
    }
    let (mailbox, end) = match mailbox(&line, path)? {
        Path::Postmaster(end) if !mail => return rcpt(ForwardPathRef::Postmaster, &line, end),
        Path::Postmaster(_) => return None,
        Path::Mailbox(mailbox, end) => (mailbox, end),
    };
    match mail {
        true => Some(CommandRef::Mail {
            reverse_path: ReversePathRef::Mailbox(mailbox),
            params: mail_params(&line, end)?,
        }),
        false => rcpt(ForwardPathRef::Mailbox(mailbox), &line, end),
    }
}

/// What [`mailbox`] read: each with where the path ends, after its `>`.
enum Path<'a> {
    /// `<Postmaster>`, in any case.
    Postmaster(usize),
    Mailbox(MailboxRef<'a>, usize),
}

/// The path at `local_start`, after the `<`.
#[inline(always)]
fn mailbox<'a>(line: &Line<'a>, local_start: usize) -> Option<Path<'a>> {
    let (local_len, [dots]) = line.run(local_start, 64, atext_or_dot, |v| [is(v, b'.')])?;
    let at = local_start + local_len;
    if local_len == 10
        && line.octet(at) == b'>'
        && line.word(local_start) == Some((fold(b"postmaster"), at))
    {
        return Some(Path::Postmaster(at + 1));
    }
    if local_len > 64 || !dots_ok(dots, local_len) || line.octet(at) != b'@' {
        return None;
    }
    // A domain of at most 63 octets: no label can be longer.
    let domain_start = at + 1;
    let (len, [dots, hyphens]) = line.run(
        domain_start,
        64,
        |v| bitor_m128i(ldh(v), is(v, b'.')),
        |v| [is(v, b'.'), is(v, b'-')],
    )?;
    let end = domain_start + len;
    // No label starts or ends with a hyphen: none at either end of the
    // name, or next to a dot.
    let edges =
        1 | 1u64.checked_shl(len.saturating_sub(1) as u32).unwrap_or(0) | dots << 1 | dots >> 1;
    if len > 63 || !dots_ok(dots, len) || hyphens & edges != 0 || line.octet(end) != b'>' {
        return None;
    }
    let mailbox = MailboxRef {
        local_part: line.text(local_start, at)?,
        domain: HostRef::Domain(line.text(domain_start, end)?),
    };
    Some(Path::Mailbox(mailbox, end + 1))
}

/// The parameters of MAIL from `at`, where the path ended, as
/// `parse_mail` reads them.
#[inline(always)]
fn mail_params<'a>(line: &Line<'a>, at: usize) -> Option<MailParamsRef<'a>> {
    let mut params = MailParamsRef::default();
    let mut each = Params::new(line, at, Param::MAIL)?;
    while let Some((param, value)) = each.next()? {
        let Some(at) = value else {
            // Of these, only SMTPUTF8 has no value, and must have none.
            params.smtputf8 = param == Param::Smtputf8;
            each.no_value(params.smtputf8)?;
            continue;
        };
        let end = match param {
            Param::Size => {
                let (len, []) = line.run(at, 32, |v| between(v, b'0', b'9'), |_| [])?;
                // Nineteen digits always fit in a u64; more are left to
                // the octet-by-octet parser.
                if len > 19 {
                    return None;
                }
                params.size = Some(match len {
                    1..=8 => eight_digits(line.sixteen(at) as u64, len),
                    _ => {
                        let digits = line.octets.get(at..at + len)?.iter();
                        digits.fold(0, |n, &d| n * 10 + u64::from(d - b'0'))
                    }
                });
                at + len
            }
            Param::Body => {
                let types = [
                    (fold(b"7BIT"), BodyType::SevenBit),
                    (fold(b"8BITMIME"), BodyType::EightBitMime),
                    (fold(b"BINARYMIME"), BodyType::BinaryMime),
                ];
                let (word, end) = line.word(at)?;
                params.body = Some(keyword(word, &types)?);
                end
            }
            Param::Ret => {
                let rets = [(fold(b"FULL"), Ret::Full), (fold(b"HDRS"), Ret::Hdrs)];
                let (word, end) = line.word(at)?;
                params.ret = Some(keyword(word, &rets)?);
                end
            }
            Param::Envid => {
                // RFC 3461 §4.4: at most 100 characters. A value with
                // escapes (`+`) stops the run early, so it does not end
                // well and is left to the octet-by-octet parser.
                let (len, []) = line.run(at, 112, xchar, |_| [])?;
                if len > 100 {
                    return None;
                }
                params.envid = Some(XText(line.text(at, at + len)?));
                at + len
            }
            _ => return None,
        };
        each.value_ends(at, end)?;
    }
    Some(params)
}

/// RCPT with `forward_path`, its parameters read from `at`, where the
/// path ended, as `parse_rcpt` reads them.
#[inline(always)]
fn rcpt<'a>(
    forward_path: ForwardPathRef<'a>,
    line: &Line<'a>,
    at: usize,
) -> Option<CommandRef<'a>> {
    let mut params = RcptParamsRef::default();
    let mut each = Params::new(line, at, Param::RCPT)?;
    while let Some((param, value)) = each.next()? {
        // Both take a value.
        let at = value?;
        let end = match param {
            Param::Notify => {
                let (notify, end) = notify_with(line.octets, at, |at| line.word(at))?;
                params.notify = Some(notify);
                end
            }
            Param::Orcpt => {
                // addr-type: atext but `=`; then `;` and xtext without
                // escapes.
                let addr_type =
                    |v| bitandnot_m128i(bitor_m128i(is(v, b'.'), is(v, b'=')), atext_or_dot(v));
                let (type_len, []) = line.run(at, 32, addr_type, |_| [])?;
                let semicolon = at + type_len;
                let start = semicolon + 1;
                let (len, []) = line.run(start, 128, xchar, |_| [])?;
                if type_len == 0 || line.octet(semicolon) != b';' || len == 0 {
                    return None;
                }
                params.orcpt = Some(OrcptRef {
                    addr_type: line.text(at, semicolon)?,
                    address: XText(line.text(start, start + len)?),
                });
                start + len
            }
            _ => return None,
        };
        each.value_ends(at, end)?;
    }
    Some(CommandRef::Rcpt {
        forward_path,
        params,
    })
}

/// The `KEY[=VALUE]` parameters after a path, read as `for_each_param`
/// reads them, but only those the command `takes`, each once. Every
/// method returns `None` for anything else, unknown parameters included:
/// their replies are the octet-by-octet parser's to give.
struct Params<'l, 'a> {
    line: &'l Line<'a>,
    pos: usize,
    takes: u8,
    seen: u8,
}

impl<'l, 'a> Params<'l, 'a> {
    /// The parameters from `at`, where the path ended.
    #[inline(always)]
    fn new(line: &'l Line<'a>, at: usize, takes: u8) -> Option<Self> {
        line.ends_at(at).then_some(Params {
            line,
            pos: at,
            takes,
            seen: 0,
        })
    }

    /// The next parameter, and where its value starts if it has one; the
    /// caller reads the value and says where it ended, or that there was
    /// none.
    #[inline(always)]
    fn next(&mut self) -> Option<Option<(Param, Option<usize>)>> {
        let line = self.line;
        while line.octet(self.pos) == b' ' {
            self.pos += 1;
        }
        if self.pos >= line.octets.len() {
            return Some(None);
        }
        // esmtp-keyword: a letter or digit, then letters, digits, hyphens;
        // sixteen octets or more name no parameter Petrel knows.
        let (key, key_end) = line.word(self.pos)?;
        if key_end == self.pos || line.octet(self.pos) == b'-' {
            return None;
        }
        let param = Param::named(key)?;
        if self.takes & param.bit() == 0 || self.seen & param.bit() != 0 {
            return None;
        }
        self.seen |= param.bit();
        self.pos = key_end;
        match line.octet(key_end) {
            b'=' => Some(Some((param, Some(key_end + 1)))),
            _ => Some(Some((param, None))),
        }
    }

    /// The value that started at `start` ended at `end`: one or more
    /// octets, up to a space or the end.
    #[inline(always)]
    fn value_ends(&mut self, start: usize, end: usize) -> Option<()> {
        self.pos = end;
        (end > start && self.line.ends_at(end)).then_some(())
    }

    /// The parameter had no value, which is `fine` for it.
    #[inline(always)]
    fn no_value(&mut self, fine: bool) -> Option<()> {
        (fine && self.line.ends_at(self.pos)).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_mail, parse_rcpt, split_verb, trim_end, CommandError, Cursor};
    use super::*;
    use quickcheck::{quickcheck, Arbitrary, Gen};

    /// The fast path's reading of a line, as `parse_line` calls it.
    fn fast(line: &[u8]) -> Option<CommandRef<'_>> {
        let line = trim_end(line);
        let (verb, start) = split_verb(line)?;
        mail_or_rcpt(line, verb, start)
    }

    /// The octet-by-octet parser's reading of a MAIL or RCPT line.
    fn octetwise(line: &[u8]) -> Option<Result<CommandRef<'_>, CommandError>> {
        let line = trim_end(line);
        match split_verb(line)? {
            (Verb::Mail, start) => Some(parse_mail(Cursor::new(line, start))),
            (Verb::Rcpt, start) => Some(parse_rcpt(Cursor::new(line, start), false)),
            _ => None,
        }
    }

    /// Whether the fast path, if it reads `line` at all, reads what the
    /// octet-by-octet parser does, down to the spelling of every piece.
    fn agrees(line: &[u8]) -> bool {
        match (fast(line), octetwise(line)) {
            (None, _) => true,
            (Some(fast), Some(Ok(octetwise))) => format!("{fast:?}") == format!("{octetwise:?}"),
            (Some(_), _) => false,
        }
    }

    #[test]
    fn eight_digits_at_a_time() {
        for value in [
            0u64, 1, 7, 10, 99, 12_345, 9_999_999, 10_000_000, 99_999_999,
        ] {
            for lead in 0..3 {
                let text = format!("{}{value}", "0".repeat(lead));
                if text.len() > 8 {
                    continue;
                }
                let mut word = [b'x'; 8];
                word[..text.len()].copy_from_slice(text.as_bytes());
                assert_eq!(
                    eight_digits(u64::from_le_bytes(word), text.len()),
                    value,
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn takes_the_common_lines() {
        let lines = [
            "MAIL FROM:<sender.name@example.org> SIZE=12345 BODY=8BITMIME ENVID=QQ314159",
            "RCPT TO:<first.recipient@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;first.recipient@example.com",
            "RCPT TO:<second@example.com> NOTIFY=NEVER",
            "MAIL FROM:<> BODY=BINARYMIME",
            "mail from: <A.b-c_d+tag@x-y.Example.ORG>  size=0 smtputf8 ret=hdrs  ",
            "RCPT TO:<Postmaster> notify=delay",
            "RCPT TO:<postmaster@example.com>",
            "RCPT TO:<a@b>",
            "MAIL FROM:<a@b>",
            "MAIL FROM:<x@y> SIZE=9999999999999999999",
            "RCPT TO:<a.very.long.local.part.that.crosses.sixteen@a.domain.with.more.than.sixteen.octets.example>",
        ];
        for line in lines {
            let fast = fast(line.as_bytes());
            assert!(fast.is_some(), "{line}: left to the octet-by-octet parser");
            assert!(agrees(line.as_bytes()), "{line}: {fast:?}");
        }
    }

    #[test]
    fn leaves_what_it_does_not_read() {
        let local_64 = format!("MAIL FROM:<{}@b>", "a".repeat(64));
        let domain_64 = format!("MAIL FROM:<a@{}.b>", "c".repeat(62));
        let lines = [
            // Valid, but not its to read.
            "MAIL FROM:<\"quoted\"@example.com>",
            "MAIL FROM:<a@[192.0.2.1]>",
            "MAIL FROM:<@relay.example:a@b>",
            "MAIL FROM:<a@b> ENVID=a+2Bb",
            "RCPT TO:<a@b> ORCPT=rfc822;a+40b",
            "MAIL FROM:<a@b> SIZE=00000000000000000001",
            "MAIL FROM:<é@b> SMTPUTF8",
            local_64.as_str(),
            domain_64.as_str(),
            // Errors, the octet-by-octet parser's to answer.
            "MAIL FROM:<postmaster>",
            "RCPT TO:<>",
            "MAIL FROM:<.a@b>",
            "MAIL FROM:<a..b@b>",
            "MAIL FROM:<a@-b.c>",
            "MAIL FROM:<a@b-.c>",
            "MAIL FROM:<a@b..c>",
            "MAIL FROM:<a@b.>",
            "MAIL FROM:<a@b>SIZE=1",
            "MAIL FROM:<a@b> SIZE=",
            "MAIL FROM:<a@b> SIZE=1x",
            "MAIL FROM:<a@b> SIZE=1 SIZE=2",
            "MAIL FROM:<a@b> SMTPUTF8=yes",
            "MAIL FROM:<a@b> BODY=8BITMIME_",
            "MAIL FROM:<a@b> NOTIFY=NEVER",
            "MAIL FROM:<a@b> -SIZE=1",
            "MAIL FROM:<a@b> X-UNKNOWN=1",
            "RCPT TO:<a@b> NOTIFY=NEVER,DELAY",
            "RCPT TO:<a@b> NOTIFY",
            "RCPT TO:<a@b> ORCPT=rfc822;",
            "RCPT TO:<a@b> ORCPT=;a",
            "RCPT TO:<a@b> SIZE=1",
            "MAIL FROM:a@b",
            "MAIL TO:<a@b>",
            "MAIL FROM:<a@b\0>",
        ];
        for line in lines {
            assert!(fast(line.as_bytes()).is_none(), "{line}: taken");
        }
    }

    /// A MAIL or RCPT line assembled from pieces that are mostly right,
    /// some subtly wrong, and then perhaps mutated octet by octet.
    #[derive(Debug, Clone)]
    struct Envelope(Vec<u8>);

    impl Arbitrary for Envelope {
        fn arbitrary(g: &mut Gen) -> Self {
            let verbs = ["MAIL FROM:", "mail from: ", "RCPT TO:", "Rcpt To: "];
            // The first four of each are valid, and picked half the time.
            let locals = [
                "a",
                "first.last",
                "x-y_z+tag",
                "A.B.C",
                ".a",
                "a..b",
                "a.",
                "",
                "\"q\"",
                "a b",
            ];
            let domains = [
                "example.com",
                "a-b.c",
                "x",
                "sub.example.net",
                "-a.b",
                "a-.b",
                "a..b",
                "b.",
                "[1.2.3.4]",
                "a_b.c",
            ];
            let pick = |g: &mut Gen, all: &[&'static str]| {
                let valid = all.get(..4).filter(|_| bool::arbitrary(g)).unwrap_or(all);
                *g.choose(valid).unwrap_or(&"")
            };
            let params = [
                " SIZE=123",
                " size=0",
                " SIZE=",
                " SIZE=12345678901234567890",
                " BODY=8BITMIME",
                " body=binarymime",
                " BODY=7bit,",
                " RET=HDRS",
                " RET=FULLY",
                " ENVID=QQ314159",
                " ENVID=a+2Bb",
                " ENVID==",
                " SMTPUTF8",
                " SMTPUTF8=1",
                " NOTIFY=SUCCESS,FAILURE",
                " NOTIFY=NEVER",
                " NOTIFY=delay,success,delay",
                " NOTIFY=NEVER,DELAY",
                " NOTIFY=,",
                " ORCPT=rfc822;a@b",
                " ORCPT=rfc822;",
                " ORCPT=;a",
                " ORCPT=x=y;a",
                " X-UNKNOWN=1",
                "  ",
                "\t",
            ];
            let mut line = g.choose(&verbs).unwrap_or(&"").as_bytes().to_vec();
            match u8::arbitrary(g) % 8 {
                0 => line.extend_from_slice(b"<>"),
                1 => line.extend_from_slice(b"<postmaster>"),
                _ => {
                    let (local, domain) = (pick(g, &locals), pick(g, &domains));
                    let long = usize::from(u8::arbitrary(g) % 4 == 0) * 60;
                    line.extend_from_slice(
                        format!("<{local}{}@{domain}>", "l".repeat(long)).as_bytes(),
                    );
                }
            }
            for _ in 0..usize::arbitrary(g) % 5 {
                line.extend_from_slice(g.choose(&params).unwrap_or(&"").as_bytes());
            }
            let alphabet = b"<>@.-+=,; \t\0\r\nxZ9\"\xc3\xa9\xff";
            for _ in 0..usize::from(u8::arbitrary(g) % 4).saturating_sub(1) {
                let at = usize::arbitrary(g) % (line.len() + 1);
                let octet = *g.choose(alphabet).unwrap_or(&b'x');
                match bool::arbitrary(g) {
                    true => line.insert(at, octet),
                    false => {
                        if let Some(o) = line.get_mut(at) {
                            *o = octet;
                        }
                    }
                }
            }
            Envelope(line)
        }

        fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
            Box::new(self.0.shrink().map(Envelope))
        }
    }

    quickcheck! {
        fn reads_what_the_octetwise_parser_reads(line: Envelope) -> bool {
            agrees(&line.0)
        }

        fn reads_any_octets_as_the_octetwise_parser(line: Vec<u8>, mail: bool) -> bool {
            let mut full = if mail { b"MAIL FROM:<".to_vec() } else { b"RCPT TO:<".to_vec() };
            full.extend_from_slice(&line);
            agrees(&full)
        }
    }
}
