//! The incremental reply parser on arbitrary bytes, fed in two pieces.
//!
//! Asserts that the parser stays within its buffer, that what a caller
//! must keep after a partial parse is less than one line (the parser keeps
//! complete lines itself, up to its line count), that a reply has at most
//! the lines allowed, and that a parsed reply serialises back to the same
//! code and text; and that the zero-copy parse, made owned, gives what the
//! owned parser it replaced gave (`reference`): the same replies, the same
//! octets consumed, the same error, at the same point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel_core::wire::reply::{
    ReplyError, ReplyParser, ReplyStatus, DEFAULT_MAX_REPLY_LINES, LENIENT_REPLY_LINE,
};
use petrel_core_fuzz::reference;

/// Each status (replies owned) or the error `parse` gave on `pieces` fed
/// one after the other, the caller dropping what it was told to.
fn statuses(
    pieces: [&[u8]; 2],
    mut parse: impl FnMut(&[u8]) -> Result<ReplyStatus, ReplyError>,
) -> Vec<Result<ReplyStatus, ReplyError>> {
    let mut buf: Vec<u8> = Vec::new();
    let mut seen = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let status = parse(&buf);
            seen.push(status.clone());
            match status {
                Ok(ReplyStatus::Complete { reply, consumed }) => {
                    assert!(consumed <= buf.len());
                    assert!(reply.lines().len() <= DEFAULT_MAX_REPLY_LINES);
                    buf.drain(..consumed);
                }
                Ok(ReplyStatus::Partial { consumed }) => {
                    assert!(consumed <= buf.len());
                    buf.drain(..consumed);
                    assert!(buf.len() < LENIENT_REPLY_LINE, "{} octets held", buf.len());
                    break;
                }
                Err(_) => return seen,
            }
        }
    }
    seen
}

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let pieces = [&data[..split], &data[split..]];
    let mut parser = ReplyParser::new();
    let seen = statuses(pieces, |buf| {
        parser
            .parse_ref(buf)
            .map(|status| status.map_reply(|reply| reply.into_owned()))
    });
    let mut old = reference::reply::ReplyParser::new();
    assert_eq!(
        seen,
        statuses(pieces, |buf| old.parse(buf)),
        "not what the owned parser gave"
    );
    for status in seen {
        let Ok(ReplyStatus::Complete { reply, .. }) = status else {
            continue;
        };
        // A parsed reply serialises back to the same reply, wrapped lines
        // aside.
        let wire = reply.to_bytes();
        match ReplyParser::new().parse(&wire) {
            Ok(ReplyStatus::Complete {
                reply: again,
                consumed,
            }) => {
                assert_eq!(consumed, wire.len());
                assert_eq!(again.code(), reply.code());
                assert_eq!(again.enhanced(), reply.enhanced());
                // Lines too short to be wrapped come back as they were.
                if reply.lines().iter().all(|line| line.len() < 400) {
                    assert_eq!(again, reply);
                }
            }
            other => panic!("{reply:?} serialises to {wire:?}: {other:?}"),
        }
    }
});
