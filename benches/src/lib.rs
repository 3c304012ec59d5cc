//! Fixtures of Petrel's micro benchmarks (`cargo bench -p petrel-benches`).
//!
//! The bench targets in `benches/` time these; the fixtures live here, in
//! a library, so that the unit tests below can check — without timing
//! anything — that each one does the work it claims (a message accepted,
//! a parse that succeeded, bytes that came through TLS intact). Every
//! bench also asserts the same on what it timed, so a broken fixture
//! fails loudly instead of reporting a fast nothing.
//!
//! - [`wire`]: the command and reply mixes the parsers are fed.
//! - [`body`]: message bodies and the octets a client sends for them.
//! - [`server`]: one SMTP connection through `ServerSession`'s input.
//! - [`client`]: one delivery through `ClientSession`, the server's replies
//!   canned.
//! - [`tls`]: the TLS engines pumped against each other in memory.

pub mod body;
pub mod client;
pub mod server;
pub mod tls;
pub mod wire;

use std::time::Instant;

/// The one instant every session in a bench is given. Sessions read no
/// clock, and nothing here waits, so no time needs to pass: a fixed
/// instant keeps the clock out of what is timed.
pub fn now() -> Instant {
    // Read once per process: criterion calls the fixtures many times, and
    // `Instant::now` in the timed loop would be timed too.
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// The size of one read, as the runtimes read: `READ_BUFFER` in
/// petrel-runtime-common. Input is fed to sessions in slices of this size.
pub const READ_SIZE: usize = 64 * 1024;
