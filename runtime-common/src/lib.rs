//! The runtime-independent half of Petrel's runtimes.
//!
//! `petrel-tokio`, `petrel-mio` and `petrel-smol` differ only in how they
//! wait for sockets, timers and wake-ups. Everything else — what to do with
//! bytes that arrived, which events go to the application, how a decision
//! made on another thread gets back to its connection, which configuration
//! a peer gets, how a message body is streamed out — is here, once:
//!
//! - [`server::ServerConn`]: one inbound connection, a loop over the core
//!   session's `handle_*`/`poll_*` calls feeding a [`server::Handler`];
//! - [`client::DeliveryConn`]: one outbound connection delivering
//!   [`client::Outbound`] messages whose bodies are streamed from a
//!   [`client::BodySource`];
//! - [`listen`]: listeners, peer networks, the connection limits (in all
//!   and per client address) and the listen backlog;
//! - [`accept`]: what an accept loop does when `accept` fails;
//! - [`close`]: how a server connection ends (flush, shut, drain).
//!
//! Two modules exist only for the runtimes' own examples and tests, behind
//! features their `[dev-dependencies]` enable, so that a library user
//! compiles neither them nor rcgen:
//! - `cli` (feature `cli`): the command line shared by every runtime's
//!   `sink` and `send` examples;
//! - `testing` (feature `testing`, which includes `cli`): the runtimes' own
//!   test suite, written once and run by each of them, and its fixtures.

pub mod accept;
#[cfg(feature = "cli")]
pub mod cli;
pub mod client;
pub mod close;
pub mod listen;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;

use std::time::Duration;

/// Octets read from a socket at once.
pub const READ_BUFFER: usize = 64 * 1024;

/// How long a closed session's last output (or the `421 4.3.2` refusal of
/// a connection over the limit) may take to reach a peer that does not read
/// it: the session no longer has a deadline of its own, and such a peer
/// must not hold a connection, and its slot under the limit, forever.
pub const CLOSE_FLUSH: Duration = Duration::from_secs(10);

/// How long a server connection keeps reading, and discarding, after its
/// session closed and its write side was shut. Closing a socket with unread
/// input makes the kernel send a reset, which can destroy the last reply (a
/// `421`, or the refusal of an injected STARTTLS) before the peer reads it.
pub const CLOSE_DRAIN: Duration = Duration::from_secs(1);

/// Pause after an accept error other than a vanished peer (out of file
/// descriptors, say): retrying at once would only spin.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
