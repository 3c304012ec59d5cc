//! What an accept loop does when `accept` fails, the same on every runtime.

use std::io;

/// Why `accept` failed, as far as an accept loop cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// No connection is waiting (a non-blocking listener): wait for the
    /// listener's readiness.
    NoneWaiting,
    /// This one connection failed (the peer went away before it was
    /// accepted, a network error it already had, a signal): accept the
    /// next one at once. accept(2) on Linux passes such errors on and asks
    /// that they be treated like "try again".
    ConnectionFailed,
    /// The server cannot take a connection now (out of descriptors,
    /// memory or buffers) or the listener itself is broken: pause for
    /// [`ACCEPT_BACKOFF`](crate::ACCEPT_BACKOFF), then try again whether or
    /// not the listener becomes ready meanwhile (connections already
    /// waiting in the backlog would not make it ready again). Retrying at
    /// once would only spin.
    OutOfResources,
}

impl AcceptError {
    /// Classifies an error from `accept`.
    pub fn classify(error: &io::Error) -> Self {
        if error.kind() == io::ErrorKind::WouldBlock {
            return Self::NoneWaiting;
        }
        match error.raw_os_error() {
            Some(
                libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EINTR
                | libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::ETIMEDOUT,
            ) => Self::ConnectionFailed,
            Some(_) => Self::OutOfResources,
            // Not from the kernel: by its kind.
            None => match error.kind() {
                io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted => Self::ConnectionFailed,
                _ => Self::OutOfResources,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> AcceptError {
        AcceptError::classify(&io::Error::from_raw_os_error(code))
    }

    #[test]
    fn errors_are_classified() {
        assert_eq!(os(libc::EAGAIN), AcceptError::NoneWaiting);
        assert_eq!(os(libc::ECONNABORTED), AcceptError::ConnectionFailed);
        assert_eq!(os(libc::EINTR), AcceptError::ConnectionFailed);
        assert_eq!(os(libc::ENETUNREACH), AcceptError::ConnectionFailed);
        assert_eq!(os(libc::EMFILE), AcceptError::OutOfResources);
        assert_eq!(os(libc::ENFILE), AcceptError::OutOfResources);
        assert_eq!(os(libc::ENOBUFS), AcceptError::OutOfResources);
        assert_eq!(os(libc::ENOMEM), AcceptError::OutOfResources);
        assert_eq!(os(libc::EBADF), AcceptError::OutOfResources);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(AcceptError::classify(&reset), AcceptError::ConnectionFailed);
        let other = io::Error::other("?");
        assert_eq!(AcceptError::classify(&other), AcceptError::OutOfResources);
    }
}
