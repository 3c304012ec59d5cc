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
//! - [`client::ClientConn`]: one outbound connection delivering
//!   [`client::Outbound`] messages whose bodies are streamed from a
//!   [`client::BodySource`];
//! - [`listen`]: listeners, peer networks, the connection limits (in all
//!   and per client address) and the listen backlog;
//! - [`accept`]: what an accept loop does when `accept` fails;
//! - [`close`]: how a server connection ends (flush, shut, linger).
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

std::thread_local! {
    /// This thread's read buffer: see [`with_read_buffer`].
    static READ_SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Polls `read` (a runtime's `poll_read` on a socket) once with this
/// thread's [`READ_BUFFER`]-octet buffer, and returns a copy of what came,
/// empty at the end of input.
///
/// A connection holds no read buffer of its own: the thread's is lent
/// only for the poll, never across a wait, and the copy lives only until
/// the session has taken it. An idle connection so costs its session's
/// state and little more, however large the reads of busy ones (a buffer
/// per connection cost up to 64 KiB each). Polling the runtime's own read,
/// rather than waiting for readiness and then reading, keeps its syscalls:
/// a read is tried first, and readiness waited for only when there is
/// nothing.
pub fn poll_receive(
    read: impl FnOnce(&mut [u8]) -> std::task::Poll<std::io::Result<usize>>,
) -> std::task::Poll<std::io::Result<Vec<u8>>> {
    let mut buf = READ_SCRATCH.take();
    if buf.len() < READ_BUFFER {
        buf.resize(READ_BUFFER, 0);
    }
    let received = read(&mut buf).map_ok(|n| buf.get(..n).unwrap_or_default().to_vec());
    READ_SCRATCH.set(buf);
    received
}

/// What one read from a socket gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Octets, handed on.
    Data,
    /// The peer's end of input, or a read error (which ends it as well).
    End,
    /// Nothing after all (a spurious readiness): wait again.
    NotReady,
}

/// Reads once, with `read` (a non-blocking socket's read, not waiting),
/// into this thread's [`READ_BUFFER`]-octet buffer, and hands what came to
/// `input`: [`poll_receive`] for a read that does not wait. Re-entered (a
/// handler that reads a socket itself), the inner call gets a buffer of
/// its own.
pub fn receive(
    read: impl FnOnce(&mut [u8]) -> std::io::Result<usize>,
    input: impl FnOnce(&[u8]),
) -> Received {
    let mut buf = READ_SCRATCH.take();
    if buf.len() < READ_BUFFER {
        buf.resize(READ_BUFFER, 0);
    }
    let received = match read(&mut buf) {
        Ok(0) => Received::End,
        Ok(n) => {
            input(buf.get(..n).unwrap_or_default());
            Received::Data
        }
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ) =>
        {
            Received::NotReady
        }
        Err(_) => Received::End,
    };
    READ_SCRATCH.set(buf);
    received
}

/// How long a closed session's last output (or the `421 4.3.2` refusal of
/// a connection over the limit) may take to reach a peer that does not read
/// it: the session no longer has a deadline of its own, and such a peer
/// must not hold a connection, and its slot under the limit, forever.
pub const CLOSE_FLUSH: Duration = Duration::from_secs(10);

/// How long a server connection keeps reading, and discarding, after its
/// session closed and its write side was shut. Closing a socket with unread
/// input makes the kernel send a reset, which can destroy the last reply (a
/// `421`, or the refusal of an injected STARTTLS) before the peer reads it.
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Pause after an accept error other than a vanished peer (out of file
/// descriptors, say): retrying at once would only spin.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
