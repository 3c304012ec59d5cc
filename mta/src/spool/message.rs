//! What the spool keeps of a message besides its octets.

use std::fmt;
use std::net::SocketAddr;
use std::time::SystemTime;

/// A message's queue id: unique for the life of a spool, across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u64);

impl fmt::Display for QueueId {
    /// Sixteen hex digits, which sort as the ids do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", self.0)
    }
}

/// A recipient and what the client asked about it (RFC 3461).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The forward-path, without angle brackets.
    pub address: String,
    /// `NOTIFY=` as sent (e.g. `SUCCESS,FAILURE`), if any.
    pub notify: Option<String>,
    /// `ORCPT=` as sent, if any.
    pub orcpt: Option<String>,
}

/// The envelope and circumstances of a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse-path without angle brackets; empty for the null sender.
    pub sender: String,
    /// The recipients, in the order accepted.
    pub recipients: Vec<Recipient>,
    /// `RET=` (`FULL` or `HDRS`), if sent.
    pub ret: Option<String>,
    /// `ENVID=`, if sent.
    pub envid: Option<String>,
    /// When the message was received.
    pub received_at: SystemTime,
    /// The client's address.
    pub client: SocketAddr,
    /// The outbound binding the message will use.
    pub binding: String,
}
