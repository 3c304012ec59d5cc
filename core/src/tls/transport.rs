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

/// What a drained buffer keeps of its capacity: a handshake flight and a
/// record or two, so that steady traffic does not reallocate. Past it, the
/// memory a burst took is given back once the burst is drained, rather
/// than held for the life of the connection (idle connections are many).
pub(crate) const KEEP: usize = 32 * 1024;

/// Appends all of `from` to `to`, giving back `from`'s memory if a burst
/// grew it past [`KEEP`]; returns how many octets moved.
pub(crate) fn hand_over(from: &mut Vec<u8>, to: &mut Vec<u8>) -> usize {
    let n = from.len();
    to.append(from);
    release(from);
    n
}

/// Gives back the memory of `buf`, if empty, beyond [`KEEP`].
pub(crate) fn release(buf: &mut Vec<u8>) {
    if buf.is_empty() && buf.capacity() > KEEP {
        *buf = Vec::new();
    }
}

/// Two byte queues standing in for a socket: what the peer sent (read by
/// the library) and what the library wants sent (written by it). Neither
/// keeps more than [`KEEP`] of capacity once drained.
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
        let n = self.incoming.read(buf)?;
        if self.incoming.is_empty() && self.incoming.capacity() > KEEP {
            self.incoming = VecDeque::new();
        }
        Ok(n)
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
    fn a_drained_burst_gives_its_memory_back() {
        let burst = vec![7u8; 1 << 20];
        let mut t = MemoryTransport::new();
        t.write_all(&burst).unwrap();
        let mut out = Vec::new();
        assert_eq!(t.take_outgoing(&mut out), burst.len());
        assert!(t.outgoing.capacity() <= KEEP);
        t.push_incoming(&burst);
        let mut buf = vec![0u8; 64 * 1024];
        let mut read = 0;
        while let Ok(n) = t.read(&mut buf) {
            read += n;
        }
        assert_eq!(read, burst.len());
        assert!(t.incoming.capacity() <= KEEP);
        // Steady small traffic keeps its buffer.
        t.write_all(&burst[..KEEP / 2]).unwrap();
        t.take_outgoing(&mut out);
        assert!(t.outgoing.capacity() >= KEEP / 2);
    }
}
