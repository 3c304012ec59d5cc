//! The borrowed parsers against the owned ones they replaced (kept frozen
//! in `reference/`): on any input, a borrowed command or reply made owned
//! is what the old parser gave, and every error is the same.
#![cfg(test)]

mod reference;

use petrel_core::wire::command::{parse_command, parse_command_ref};
use petrel_core::wire::reply::{ReplyError, ReplyParser, ReplyStatus};
use quickcheck::{Arbitrary, Gen, QuickCheck};

fn pick<'a>(g: &mut Gen, options: &[&'a str]) -> &'a str {
    g.choose(options).unwrap()
}

/// One time in `n`.
fn rarely(g: &mut Gen, n: u8) -> bool {
    u8::arbitrary(g) % n == 0
}

/// `0..max` copies of one of `octets`.
fn run(g: &mut Gen, octets: &[u8], max: usize, out: &mut Vec<u8>) {
    let octet = *g.choose(octets).unwrap();
    out.extend(std::iter::repeat_n(octet, usize::arbitrary(g) % max));
}

/// A command line from the grammar, each piece now and then spelt wrong,
/// so that every branch of the parser is a few choices away.
#[derive(Debug, Clone)]
struct CommandLine(Vec<u8>);

fn atom(g: &mut Gen, out: &mut Vec<u8>) {
    let atoms = [
        "a",
        "user",
        "x-y+z",
        "=?#$%&'*/^_`{|}~",
        "\u{fc}ser",
        "用户",
        "9",
        "A",
    ];
    out.extend_from_slice(pick(g, &atoms).as_bytes());
    if rarely(g, 6) {
        run(g, b"l.", 80, out);
    }
}

fn local_part(g: &mut Gen, out: &mut Vec<u8>) {
    if rarely(g, 4) {
        out.push(b'"');
        for _ in 0..usize::arbitrary(g) % 6 {
            let pieces = [
                "a b", "\\\"", "\\x", "@", "\u{e9}", "\\\u{1}", "\u{1}", "\u{7f}", "\\\\", "\\",
            ];
            out.extend_from_slice(pick(g, &pieces).as_bytes());
        }
        if !rarely(g, 8) {
            out.push(b'"');
        }
    } else {
        atom(g, out);
        while rarely(g, 3) {
            let dots = if rarely(g, 8) {
                pick(g, &["..", ""])
            } else {
                "."
            };
            out.extend_from_slice(dots.as_bytes());
            atom(g, out);
        }
    }
}

fn domain(g: &mut Gen, out: &mut Vec<u8>) {
    let label = |g: &mut Gen| {
        if rarely(g, 10) {
            pick(g, &["-bad", "bad-", "x_y", ""])
        } else {
            pick(
                g,
                &["example", "d", "sub-domain", "123", "b\u{fc}cher", "例子"],
            )
        }
    };
    out.extend_from_slice(label(g).as_bytes());
    for _ in 0..usize::arbitrary(g) % 4 {
        out.push(b'.');
        out.extend_from_slice(label(g).as_bytes());
    }
    if rarely(g, 8) {
        run(g, b"d.-", 300, out);
    }
}

fn host(g: &mut Gen, out: &mut Vec<u8>) {
    if rarely(g, 4) {
        let literals = [
            "[192.0.2.1]",
            "[1.2.3]",
            "[IPv6:::1]",
            "[ipv6:2001:db8::1]",
            "[IPv6:1.2.3.4]",
            "[x-tag:any.thing]",
            "[tag:]",
            "[-tag:x]",
            "[1.2.3.4",
            "[IPv6:::ffff:192.0.2.1]",
        ];
        out.extend_from_slice(pick(g, &literals).as_bytes());
    } else {
        domain(g, out);
    }
}

fn path(g: &mut Gen, out: &mut Vec<u8>) {
    if rarely(g, 6) {
        out.push(b' ');
    }
    if !rarely(g, 12) {
        out.push(b'<');
    }
    match u8::arbitrary(g) % 12 {
        0 => {}
        1 => {
            out.extend_from_slice(pick(g, &["postmaster", "PostMaster", "Postmaster@x"]).as_bytes())
        }
        _ => {
            if rarely(g, 6) {
                out.push(b'@');
                domain(g, out);
                while rarely(g, 2) {
                    out.extend_from_slice(pick(g, &[",@", ",", ";@"]).as_bytes());
                    domain(g, out);
                }
                out.extend_from_slice(pick(g, &[":", "", ";"]).as_bytes());
            }
            local_part(g, out);
            if !rarely(g, 10) {
                out.push(b'@');
            }
            host(g, out);
        }
    }
    if !rarely(g, 10) {
        out.push(b'>');
    }
}

fn params(g: &mut Gen, out: &mut Vec<u8>) {
    let params = [
        "SIZE=1000",
        "size=18446744073709551615",
        "SIZE=18446744073709551616",
        "SIZE=1k",
        "SIZE",
        "SIZE=",
        "BODY=8BITMIME",
        "body=binarymime",
        "BODY=7bit",
        "BODY=9BIT",
        "SMTPUTF8",
        "smtputf8",
        "SMTPUTF8=yes",
        "RET=FULL",
        "ret=hdrs",
        "RET=ALL",
        "ENVID=QQ314159",
        "ENVID=a+2Bb",
        "ENVID=a+0A",
        "ENVID=a+2",
        "ENVID=+7E+20",
        "ENVID=+7e",
        "NOTIFY=NEVER",
        "NOTIFY=success,DELAY",
        "NOTIFY=SUCCESS,",
        "NOTIFY=NEVER,SUCCESS",
        "ORCPT=rfc822;u@d",
        "ORCPT=rfc822;u+40d.example",
        "ORCPT=utf-8;+C3+A9",
        "ORCPT=utf-8;+C3",
        "ORCPT=;a",
        "ORCPT=rfc822;",
        "ORCPT=rfc822",
        "ORCPT=a;b;c",
        "AUTH=<>",
        "X-FOO",
        "-X",
        "=1",
        "A=b=c",
        "A=\u{7f}",
        "ENVID=\u{e9}",
        "ENVID=",
        "ORCPT=",
        "NOTIFY=",
    ];
    for _ in 0..usize::arbitrary(g) % 5 {
        out.extend_from_slice(pick(g, &[" ", "  ", "", "\t"]).as_bytes());
        out.extend_from_slice(pick(g, &params).as_bytes());
        if rarely(g, 10) {
            run(g, b"e+4", 200, out);
        }
    }
}

impl Arbitrary for CommandLine {
    fn arbitrary(g: &mut Gen) -> Self {
        let verbs = [
            "MAIL FROM:",
            "mail from:",
            "MAIL FROM: ",
            "MAIL  FROM:",
            "MAIL TO:",
            "RCPT TO:",
            "RcPt To:",
            "RCPT FROM:",
            "MAILFROM:",
            "HELO ",
            "EHLO ",
            "helo",
            "ehlo  ",
            "DATA",
            "data ",
            "BDAT ",
            "bdat ",
            "RSET",
            "NOOP",
            "VRFY ",
            "EXPN",
            "HELP",
            "QUIT",
            "STARTTLS",
            "StartTLS ",
            "STARTTLSX",
            "STAR",
            "FOO",
            "",
        ];
        // MAIL and RCPT, the commands with the most grammar, half the time.
        let verb = if bool::arbitrary(g) {
            pick(g, &["MAIL FROM:", "RCPT TO:"])
        } else {
            pick(g, &verbs)
        };
        let mut line = verb.as_bytes().to_vec();
        if line.ends_with(b":") || line.ends_with(b": ") {
            path(g, &mut line);
            params(g, &mut line);
        } else {
            let args = [
                "",
                "mx.example",
                "mx.example text",
                "[192.0.2.1]",
                "a b",
                "é",
                "10",
                "10 LAST",
                "0 last x",
                "18446744073709551616",
                "-1",
                "x\u{1}",
                " x",
            ];
            let arg = pick(g, &args);
            if !arg.is_empty() && !line.ends_with(b" ") && !rarely(g, 8) {
                line.push(b' ');
            }
            line.extend_from_slice(arg.as_bytes());
        }
        // Now and then, an octet anywhere.
        if rarely(g, 4) {
            let at = usize::arbitrary(g) % (line.len() + 1);
            let octet = *g
                .choose(b"<>@[]:;,.\"\\+= -aZ9\t\x7f\xc3\xa9\xff\x01\0\r\n")
                .unwrap();
            line.insert(at, octet);
        }
        if rarely(g, 4) {
            line.extend_from_slice(pick(g, &[" ", "\t", " \t "]).as_bytes());
        }
        CommandLine(line)
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new(self.0.shrink().map(CommandLine))
    }
}

/// Replies from the grammar, now and then spelt wrong: multi-line replies
/// with enhanced codes spelt alike and unlike, bare LFs, CRs in the text,
/// invalid UTF-8, garbage.
#[derive(Debug, Clone)]
struct ReplyBytes(Vec<u8>);

impl Arbitrary for ReplyBytes {
    fn arbitrary(g: &mut Gen) -> Self {
        let codes = ["250", "220", "550", "354", "452"];
        let bad_codes = ["251", "199", "600", "2x0", "25", ""];
        let enhanced = [
            "2.1.0",
            "2.01.0",
            "2.1.000",
            "2.1.0000",
            "5.1.1",
            "3.0.0",
            "2.0",
            "2.0.0.0",
            "2.1.5",
            "4.999.999",
            "2.0.07\r\r",
            "2.1.0\r",
            "2.1.\r0",
        ];
        let texts = [
            "",
            "ok",
            " two  spaces",
            "a\rb",
            "\r",
            "\u{e9}t\u{e9}",
            "\t tab",
            "\u{fffd}",
        ];
        let mut wire = Vec::new();
        for _ in 0..usize::arbitrary(g) % 6 {
            if rarely(g, 10) {
                wire.extend(Vec::<u8>::arbitrary(g));
                continue;
            }
            let code = pick(g, &codes);
            let shared = (!rarely(g, 2)).then(|| pick(g, &enhanced));
            let lines = 1 + usize::arbitrary(g) % 5;
            for line in 0..lines {
                let last = line + 1 == lines;
                let code = if rarely(g, 20) {
                    pick(g, &bad_codes)
                } else {
                    code
                };
                wire.extend_from_slice(code.as_bytes());
                let separator = match u8::arbitrary(g) % 30 {
                    0 => "",
                    1 => "_",
                    _ if last => " ",
                    _ => "-",
                };
                wire.extend_from_slice(separator.as_bytes());
                let this = if rarely(g, 6) {
                    Some(pick(g, &enhanced))
                } else {
                    shared
                };
                if let Some(e) = this {
                    wire.extend_from_slice(e.as_bytes());
                    if !rarely(g, 6) {
                        wire.push(b' ');
                    }
                }
                wire.extend_from_slice(pick(g, &texts).as_bytes());
                if rarely(g, 8) {
                    let invalid: &[u8] = g
                        .choose(&[&b"\xff\xc3 \xa9"[..], b"\xea\r\x80", b"\xe2\x82\r\xac"])
                        .unwrap();
                    wire.extend_from_slice(invalid);
                }
                if rarely(g, 10) {
                    run(g, b"w", 60, &mut wire);
                }
                let end = match u8::arbitrary(g) % 10 {
                    0 => "\n",
                    1 => "\r\r\n",
                    2 if rarely(g, 3) => "",
                    _ => "\r\n",
                };
                wire.extend_from_slice(end.as_bytes());
            }
        }
        ReplyBytes(wire)
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        Box::new(self.0.shrink().map(ReplyBytes))
    }
}

fn commands_agree(line: &[u8], utf8: bool) -> bool {
    let old = reference::command::parse_command(line, utf8);
    let borrowed = parse_command_ref(line, utf8).map(|c| c.into_owned());
    if borrowed != old {
        eprintln!(
            "{:?}: {borrowed:?} != {old:?}",
            String::from_utf8_lossy(line)
        );
        return false;
    }
    parse_command(line, utf8) == old
}

/// Everything a reply parser says about `parts` fed one after another:
/// each status (replies made owned) or error, and the octets the caller
/// keeps at the end.
fn replies(
    parts: &[&[u8]],
    mut parse: impl FnMut(&[u8]) -> Result<ReplyStatus, ReplyError>,
) -> (Vec<String>, usize) {
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    for part in parts {
        buf.extend_from_slice(part);
        loop {
            let status = parse(&buf);
            seen.push(format!("{status:?}"));
            match status {
                Ok(ReplyStatus::Complete { consumed, .. }) => drop(buf.drain(..consumed)),
                Ok(ReplyStatus::Partial { consumed }) => {
                    buf.drain(..consumed);
                    break;
                }
                Err(_) => return (seen, buf.len()),
            }
        }
    }
    (seen, buf.len())
}

fn replies_agree(wire: &[u8], split: usize, max_line: usize, max_lines: usize) -> bool {
    let split = split % (wire.len() + 1);
    let parts = [&wire[..split], &wire[split..]];
    let mut old = reference::reply::ReplyParser::with_limits(max_line, max_lines);
    let expected = replies(&parts, |buf| old.parse(buf));
    // The zero-copy path, made owned by the caller.
    let mut new = ReplyParser::with_limits(max_line, max_lines);
    let borrowed = replies(&parts, |buf| {
        new.parse_ref(buf)
            .map(|status| status.map_reply(|r| r.into_owned()))
    });
    // The owned path.
    let mut owned = ReplyParser::with_limits(max_line, max_lines);
    let made = replies(&parts, |buf| owned.parse(buf));
    if borrowed != expected || made != expected {
        eprintln!(
            "{:?}:\n  new   {borrowed:?}\n  owned {made:?}\n  old   {expected:?}",
            String::from_utf8_lossy(wire)
        );
        return false;
    }
    true
}

/// Many cases: the properties are cheap, and a rare branch needs many
/// draws (a mutation of one error message in the old parser is found
/// within a few thousand).
fn check<A: quickcheck::Testable>(property: A) {
    QuickCheck::new().tests(20_000).quickcheck(property);
}

#[test]
fn borrowed_commands_are_the_old_commands() {
    fn property(line: CommandLine, utf8: bool) -> bool {
        commands_agree(&line.0, utf8)
    }
    check(property as fn(CommandLine, bool) -> bool);
}

#[test]
fn borrowed_commands_on_any_octets() {
    fn property(line: Vec<u8>, utf8: bool) -> bool {
        commands_agree(&line, utf8)
    }
    check(property as fn(Vec<u8>, bool) -> bool);
}

#[test]
fn borrowed_replies_are_the_old_replies() {
    fn property(wire: ReplyBytes, split: usize, limits: (u8, u8)) -> bool {
        let max_line = 4 + usize::from(limits.0 % 40);
        let max_lines = usize::from(limits.1 % 6);
        replies_agree(&wire.0, split, max_line, max_lines)
            && replies_agree(&wire.0, split, 4096, 256)
    }
    check(property as fn(ReplyBytes, usize, (u8, u8)) -> bool);
}

#[test]
fn borrowed_replies_on_any_octets() {
    fn property(wire: Vec<u8>, split: usize) -> bool {
        replies_agree(&wire, split, 16, 3)
    }
    check(property as fn(Vec<u8>, usize) -> bool);
}

#[test]
fn commands_from_the_unit_tests_agree() {
    for line in [
        "MAIL FROM:<\"a b\\\"c\"@x>",
        "MAIL FROM:<@r1.example,@r2.example:u@d.example>",
        "MAIL FROM:<üser@bücher.example> SMTPUTF8",
        "MAIL FROM:<u@d> SIZE=1000 BODY=8bitmime RET=HDRS ENVID=QQ+2Bx SMTPUTF8",
        "RCPT TO:<u@d> NOTIFY=success,DELAY ORCPT=rfc822;u+40d.example",
        "RCPT TO:<u@d> ORCPT=utf-8;+C3+A9",
        "RCPT TO:<u@d> ORCPT=utf-8;+C3",
        "MAIL FROM:<a@b> SMTPUTF8 smtputf8",
        "MAIL FROM:<a@b> ENVID=a+0A",
        "RCPT TO:<x@[IPv6:::1]>",
        "RCPT TO:<x@[x-tag:any.thing]>",
        "starttls",
        "STARTTLSX",
        "STAR",
        "HELO\tx",
    ] {
        for utf8 in [false, true] {
            assert!(commands_agree(line.as_bytes(), utf8), "{line}");
        }
    }
}
