//! The `parse/commands` loops timed so that a shared, busy machine still
//! gives a usable ratio: each parser's loop over `wire::COMMANDS` in
//! batches of 2,000, the two parsers alternating batch by batch, and the
//! minimum batch kept (what the load added least to). With `lines`, each
//! command line is also timed alone the same way.
//!
//! ```sh
//! cargo run --release -p petrel-benches --example parse_interleaved [lines]
//! ```

use std::hint::black_box;
use std::time::Instant;

use petrel_benches::wire;
use petrel_core::wire::command::parse_command_ref;

const BATCH: u32 = 2_000;

/// The shortest time per call of `f` over `rounds` batches; `g` likewise,
/// in the batches between.
fn alternate(rounds: u32, mut f: impl FnMut(), mut g: impl FnMut()) -> (f64, f64) {
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        let start = Instant::now();
        (0..BATCH).for_each(|_| f());
        best.0 = best.0.min(start.elapsed().as_secs_f64() / f64::from(BATCH));
        let start = Instant::now();
        (0..BATCH).for_each(|_| g());
        best.1 = best.1.min(start.elapsed().as_secs_f64() / f64::from(BATCH));
    }
    best
}

fn main() {
    let limit = wire::command_line_limit();
    let (petrel, peer) = alternate(
        300,
        || {
            assert_eq!(
                wire::petrel_commands(black_box(wire::COMMANDS), limit),
                Ok(wire::COMMAND_COUNT)
            )
        },
        || {
            assert_eq!(
                wire::smtp_proto_commands(black_box(wire::COMMANDS)),
                Ok(wire::COMMAND_COUNT)
            )
        },
    );
    println!(
        "petrel {:.0} ns  smtp-proto {:.0} ns  ratio {:.2}",
        petrel * 1e9,
        peer * 1e9,
        peer / petrel
    );
    if std::env::args().any(|a| a == "lines") {
        for line in wire::COMMANDS.split_inclusive(|&b| b == b'\n') {
            let body = &line[..line.len() - 2];
            let (petrel, peer) = alternate(
                200,
                || assert!(parse_command_ref(black_box(body), false).is_ok()),
                || assert!(smtp_proto::Request::parse(&mut black_box(line).iter()).is_ok()),
            );
            let text = String::from_utf8_lossy(body);
            println!("{:6.1} ns {:6.1} ns  {text}", petrel * 1e9, peer * 1e9);
        }
    }
}
