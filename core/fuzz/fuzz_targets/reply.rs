//! The incremental reply parser on arbitrary bytes, fed in two pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel_core::wire::reply::{ReplyParser, ReplyStatus};

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
                    // A parsed reply serialises back to something parseable.
                    let wire = reply.to_bytes();
                    assert!(matches!(
                        ReplyParser::new().parse(&wire),
                        Ok(ReplyStatus::Complete { .. })
                    ));
                    buf.drain(..consumed);
                }
                Ok(ReplyStatus::Partial { consumed }) => {
                    assert!(consumed <= buf.len());
                    buf.drain(..consumed);
                    break;
                }
                Err(_) => return,
            }
        }
    }
});
