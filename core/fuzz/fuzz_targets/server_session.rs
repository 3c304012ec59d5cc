//! A whole server session (no TLS) driven by the fuzz input: commands and
//! arbitrary bytes in arbitrary pieces, decisions accepted, refused or
//! left pending, timeouts, EOF, shutdown, a driver ignoring backpressure.
//! Asserts what `petrel_core_fuzz::server` describes (bounded output and
//! heap, no stall, consistent events), and chunking invariance: the
//! plaintext the run fed, replayed in the same pieces and in one piece
//! with every decision accepted at once, gives the same replies and the
//! same events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel_core::server::ServerConfig;
use petrel_core_fuzz::ops::Ops;
use petrel_core_fuzz::server::{small_limits, Entry, Harness};

/// Above this much fed plaintext the replays are skipped (time, not
/// correctness: heap and output bounds were checked on the full run).
const MAX_REPLAY: usize = 64 * 1024;

fn config(flags: u8) -> ServerConfig {
    let mut config = ServerConfig::new("fuzz.test");
    config.limits = small_limits();
    let ext = &mut config.extensions;
    ext.pipelining = flags & 1 != 0;
    ext.chunking = flags & 2 != 0;
    ext.binary_mime = flags & 4 != 0;
    ext.dsn = flags & 8 != 0;
    ext.smtputf8 = flags & 16 != 0;
    ext.eight_bit_mime = ext.smtputf8 || flags & 32 != 0;
    config
}

/// Feeds `pieces` to a fresh session that accepts everything at once.
fn replay(config: &ServerConfig, pieces: &[&[u8]]) -> (Vec<u8>, Vec<Entry>) {
    let mut harness = Harness::new(config.clone(), true);
    for piece in pieces {
        harness.input(piece);
        harness.drain();
    }
    harness.finish();
    (
        harness.wire.take().unwrap_or_default(),
        harness.events.take().unwrap_or_default(),
    )
}

fuzz_target!(|data: &[u8]| {
    let mut ops = Ops::new(data, 1024);
    let config = config(ops.byte());
    let mut harness = Harness::new(config.clone(), true);
    harness.run(&mut ops, false);
    harness.finish();

    let pieces: Vec<&[u8]> = harness.pieces.iter().map(Vec::as_slice).collect();
    let whole = pieces.concat();
    if whole.len() <= MAX_REPLAY {
        let in_pieces = replay(&config, &pieces);
        let at_once = replay(&config, &[&whole]);
        assert_eq!(
            String::from_utf8_lossy(&in_pieces.0),
            String::from_utf8_lossy(&at_once.0),
            "replies depend on chunking"
        );
        assert_eq!(in_pieces.1, at_once.1, "events depend on chunking");
    }
});
