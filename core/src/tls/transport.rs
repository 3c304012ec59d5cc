//! An in-memory `Read + Write` transport.
//!
//! Stream-oriented TLS libraries (OpenSSL through `SslStream`) want an
//! `io::Read + io::Write` to talk to. To keep them sans-IO, they get this
//! pair of buffers instead of a socket: the owner pushes received ciphertext
//! into [`MemoryTransport::push_incoming`] and takes ciphertext to send from
//! [`MemoryTransport::take_outgoing`]. Reading from an empty transport
//! reports `WouldBlock`, which the library turns into "wants read" — exactly
//! what a non-blocking socket would do, so the library needs no special mode.

use std::collections::VecDeque;
use std::io;

/// The capacity an engine's buffer keeps once traffic is small again: a
/// handshake flight and a record or two. A bulk transfer keeps what its
/// bursts need, so it does not reallocate for each; the first burst of at
/// most this much after it gives the memory back, rather than the buffer
/// holding it for the life of the connection (idle connections are many).
/// OpenSSL's `SSL_MODE_RELEASE_BUFFERS` frees its own buffers for the same
/// reason.
pub(crate) const KEEP: usize = 32 * 1024;

/// Whether a buffer of `capacity`, taking or handing over a burst of
/// `burst` octets, should give its memory back. An empty burst says
/// nothing: the engines are polled after every input, with or without
/// anything to hand over.
pub(crate) fn oversized(capacity: usize, burst: usize) -> bool {
    capacity > KEEP && (1..=KEEP).contains(&burst)
}

/// Appends all of `from` to `to`, giving back `from`'s memory if it was
/// grown by bulk and this burst is small; returns how many octets moved.
pub(crate) fn hand_over(from: &mut Vec<u8>, to: &mut Vec<u8>) -> usize {
    let n = from.len();
    to.append(from);
    if oversized(from.capacity(), n) {
        *from = Vec::new();
    }
    n
}

/// Two byte queues standing in for a socket: what the peer sent (read by
/// the library) and what the library wants sent (written by it). What is
/// to be sent keeps no more than [`KEEP`] of capacity once traffic is small
/// again. What was received is left alone: the engine bounds it (the
/// OpenSSL engine holds at most a few records), and a runtime's reads come
/// as a large piece and a small remainder, which would free and grow it
/// again at each read.
#[derive(Debug, Default)]
pub struct MemoryTransport {
    incoming: VecDeque<u8>,
    outgoing: Vec<u8>,
}

impl MemoryTransport {
    /// An empty transport.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues octets received from the peer for the library to read.
    pub fn push_incoming(&mut self, data: &[u8]) {
        self.incoming.extend(data);
    }

    /// How many received octets the library has not read yet.
    pub fn incoming_len(&self) -> usize {
        self.incoming.len()
    }

    /// Appends everything the library wrote to `out`; returns the number of
    /// octets appended.
    pub fn take_outgoing(&mut self, out: &mut Vec<u8>) -> usize {
        hand_over(&mut self.outgoing, out)
    }
}

impl io::Read for MemoryTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.incoming.is_empty() {
            // Not EOF: more may arrive later, as on a non-blocking socket.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.incoming.read(buf)
    }
}

impl io::Write for MemoryTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn empty_reads_would_block_and_data_flows_in_order() {
        let mut t = MemoryTransport::new();
        let mut buf = [0u8; 4];
        assert_eq!(
            t.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        t.push_incoming(b"abcdef");
        assert_eq!(t.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf, b"abcd");
        assert_eq!(t.incoming_len(), 2);
        t.write_all(b"xy").unwrap();
        let mut out = b"_".to_vec();
        assert_eq!(t.take_outgoing(&mut out), 2);
        assert_eq!(out, b"_xy");
        assert_eq!(t.take_outgoing(&mut out), 0);
    }

    #[test]
    fn bulk_keeps_its_memory_until_traffic_is_small_again() {
        let burst = vec![7u8; 1 << 20];
        let small = &burst[..KEEP / 2];
        let mut t = MemoryTransport::new();
        let mut out = Vec::new();
        for _ in 0..2 {
            t.write_all(&burst).unwrap();
            assert_eq!(t.take_outgoing(&mut out), burst.len());
        }
        assert!(
            t.outgoing.capacity() >= burst.len(),
            "bulk keeps its buffer"
        );
        // Polled with nothing to send, as after every input.
        assert_eq!(t.take_outgoing(&mut out), 0);
        assert!(t.outgoing.capacity() >= burst.len(), "nothing says nothing");
        t.write_all(small).unwrap();
        assert_eq!(t.take_outgoing(&mut out), small.len());
        assert!(t.outgoing.capacity() <= KEEP, "small again: given back");
    }
}
