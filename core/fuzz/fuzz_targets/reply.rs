//! The incremental reply parser on arbitrary bytes, fed in two pieces.
//!
//! Asserts that the parser stays within its buffer, that what a caller
//! must keep after a partial parse is less than one line (the parser keeps
//! complete lines itself, up to its line count), that a reply has at most
//! the lines allowed, and that a parsed reply serialises back to the same
//! code and text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel_core::wire::reply::{
    ReplyParser, ReplyStatus, DEFAULT_MAX_REPLY_LINES, LENIENT_REPLY_LINE,
};

fuzz_target!(|data: &[u8]| {
    let mut parser = ReplyParser::new();
    let mut buf: Vec<u8> = Vec::new();
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    for piece in [&data[..split], &data[split..]] {
        buf.extend_from_slice(piece);
        loop {
            match parser.parse(&buf) {
                Ok(ReplyStatus::Complete { reply, consumed }) => {
                    assert!(consumed <= buf.len());
                    assert!(reply.lines().len() <= DEFAULT_MAX_REPLY_LINES);
                    // A parsed reply serialises back to the same reply,
                    // wrapped lines aside.
                    let wire = reply.to_bytes();
                    match ReplyParser::new().parse(&wire) {
                        Ok(ReplyStatus::Complete {
                            reply: again,
                            consumed,
                        }) => {
                            assert_eq!(consumed, wire.len());
                            assert_eq!(again.code(), reply.code());
                            assert_eq!(again.enhanced(), reply.enhanced());
                            // Lines too short to be wrapped come back as
                            // they were.
                            if reply.lines().iter().all(|line| line.len() < 400) {
                                assert_eq!(again, reply);
                            }
                        }
                        other => panic!("{reply:?} serialises to {wire:?}: {other:?}"),
                    }
                    buf.drain(..consumed);
                }
                Ok(ReplyStatus::Partial { consumed }) => {
                    assert!(consumed <= buf.len());
                    buf.drain(..consumed);
                    assert!(buf.len() < LENIENT_REPLY_LINE, "{} octets held", buf.len());
                    break;
                }
                Err(_) => return,
            }
        }
    }
});
