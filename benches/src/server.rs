//! One SMTP connection through `ServerSession`'s input, driven as the
//! runtimes drive it: the client's octets fed in reads of [`READ_SIZE`],
//! the session's outputs taken after each in the order of
//! `petrel_core::drive`, every decision (MAIL, RCPT, the message) accepted
//! at once, as a sink that stores nothing does.

use std::sync::Arc;

use petrel_core::drive;
use petrel_core::server::{CloseReason, Event, ServerConfig, ServerSession};

use crate::body;
use crate::{now, READ_SIZE};

/// How the client sends the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCommand {
    /// DATA, dot-stuffed.
    Data,
    /// BDAT chunks (RFC 3030).
    Bdat,
}

/// Everything a pipelining client sends over one connection delivering one
/// message: EHLO, then MAIL, the RCPTs and the body, then QUIT.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client's octets.
    pub input: Vec<u8>,
    /// Body octets the server must hand its application.
    pub body_len: u64,
    /// Recipients in the transaction.
    pub recipients: usize,
}

impl Connection {
    /// The connection for `body` to `recipients` recipients, sent with
    /// `command`.
    pub fn new(command: BodyCommand, body: &[u8], recipients: usize) -> Self {
        let mut input = Vec::with_capacity(body.len() + body.len() / 32 + 64 * recipients + 256);
        input.extend_from_slice(b"EHLO client.example.org\r\n");
        input.extend_from_slice(
            format!(
                "MAIL FROM:<sender.name@example.org> SIZE={}\r\n",
                body.len()
            )
            .as_bytes(),
        );
        for i in 0..recipients {
            input.extend_from_slice(format!("RCPT TO:<recipient{i}@example.com>\r\n").as_bytes());
        }
        match command {
            BodyCommand::Data => {
                input.extend_from_slice(b"DATA\r\n");
                input.extend_from_slice(&body::data_wire(body));
            }
            BodyCommand::Bdat => input.extend_from_slice(&body::bdat_wire(body)),
        }
        input.extend_from_slice(b"QUIT\r\n");
        Connection {
            input,
            body_len: body.len() as u64,
            recipients,
        }
    }
}

/// What the application saw of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Body octets handed over in `Event::Body`.
    pub body_octets: u64,
    /// The size `Event::MessageEnd` gave, for each message accepted.
    pub messages: Vec<u64>,
    /// Recipients accepted.
    pub recipients: usize,
    /// Whether the session ended on the client's QUIT.
    pub quit: bool,
    /// Octets the session gave to send.
    pub reply_octets: usize,
    /// Whether the last reply was `250 2.0.0 Ok: queued` then `221`.
    pub queued_then_bye: bool,
    /// Transactions aborted (a refused body, say).
    pub aborted: usize,
}

impl Outcome {
    /// Whether the connection did what `connection` asked: the whole body
    /// handed over, the message accepted for every recipient, QUIT.
    pub fn is_complete(&self, connection: &Connection) -> bool {
        self.body_octets == connection.body_len
            && self.messages == [connection.body_len]
            && self.recipients == connection.recipients
            && self.quit
            && self.queued_then_bye
            && self.aborted == 0
    }
}

/// A server configuration as a sink would have it: the defaults, no TLS.
pub fn config() -> Arc<ServerConfig> {
    Arc::new(ServerConfig::new("mx.example.com"))
}

/// Runs one connection through a new session.
pub fn run(config: &Arc<ServerConfig>, connection: &Connection) -> Outcome {
    let now = now();
    let mut session = ServerSession::new(Arc::clone(config), now);
    let mut out = Vec::with_capacity(4096);
    let mut outcome = Outcome::default();
    take_outputs(&mut session, &mut out, &mut outcome);
    for read in connection.input.chunks(READ_SIZE) {
        // Every event is taken as it comes, so the session never holds a
        // whole read: if it did not want this one, the driver above (or
        // the session) would be broken, and the bench must stop.
        assert!(
            session.wants_input(),
            "the session refuses input though all its outputs were taken"
        );
        session.handle_input(now, read);
        take_outputs(&mut session, &mut out, &mut outcome);
    }
    outcome.queued_then_bye = out.ends_with(b"250 2.0.0 Ok: queued\r\n221 2.0.0 Bye\r\n");
    outcome
}

/// Takes the session's outputs in `drive`'s order, answering decisions.
/// Sent octets are counted and dropped, except the latest few, which the
/// final check reads.
fn take_outputs(session: &mut ServerSession, out: &mut Vec<u8>, outcome: &mut Outcome) {
    let now = now();
    let on_event = |session: &mut ServerSession, _: &mut Vec<u8>, event: Event| match event {
        Event::Body(chunk) => outcome.body_octets += chunk.len() as u64,
        Event::Mail { .. } => session.accept(now).expect("MAIL awaits a decision"),
        Event::Rcpt { .. } => {
            session.accept(now).expect("RCPT awaits a decision");
            outcome.recipients += 1;
        }
        Event::MessageEnd { size, .. } => {
            session.accept(now).expect("the message awaits a decision");
            outcome.messages.push(size);
        }
        Event::Closed(reason) => outcome.quit = reason == CloseReason::Quit,
        Event::TransactionAborted(_) => outcome.aborted += 1,
        _ => {}
    };
    let no_feed = |_: &mut ServerSession, _: &mut Vec<u8>| false;
    let _deadline = drive::drain(session, out, usize::MAX, on_event, no_feed);
    outcome.reply_octets += out.len();
    // Keep the tail for the final check; a 100-recipient group's replies
    // would otherwise be copied around for nothing.
    let keep = out.len().min(64);
    out.drain(..out.len() - keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_delivers_its_message() {
        let config = config();
        for command in [BodyCommand::Data, BodyCommand::Bdat] {
            for (size, recipients) in [(body::SMALL, 1), (body::SMALL, 100), (1 << 20, 1)] {
                let connection = Connection::new(command, &body::text(size), recipients);
                let outcome = run(&config, &connection);
                assert!(
                    outcome.is_complete(&connection),
                    "{command:?} {size} × {recipients}: {outcome:?}"
                );
            }
        }
    }

    #[test]
    fn a_refused_body_is_not_complete() {
        let config = config();
        let mut connection = Connection::new(BodyCommand::Data, &body::text(body::SMALL), 1);
        // A bare LF in the body: the server refuses the message (554).
        let at = connection.input.len() / 2;
        connection.input.insert(at, b'\n');
        let outcome = run(&config, &connection);
        assert_eq!(outcome.aborted, 1, "{outcome:?}");
        assert!(!outcome.is_complete(&connection), "{outcome:?}");
    }
}
