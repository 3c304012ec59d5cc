//! One delivery through `ClientSession`, the server's replies canned: the
//! session is given each reply as a pipelining server would send it, its
//! outputs are taken in the order of `petrel_core::drive`, and the body is
//! streamed in reads of [`READ_SIZE`] while the session wants it, as
//! petrel-runtime-common's `ClientConn` streams it.

use std::sync::Arc;

use petrel_core::client::tls_policy::TlsMode;
use petrel_core::client::{
    ClientConfig, ClientSession, CloseReason, ConnectionKind, Delivery, Envelope, Event, Recipient,
};
use petrel_core::drive;
use petrel_core::wire::command::{ForwardPath, Host, MailParams, Mailbox, RcptParams, ReversePath};

use crate::{now, READ_SIZE};

/// One message to one server, and everything the server will say: the
/// script of a delivery.
#[derive(Debug, Clone)]
pub struct Script {
    /// The envelope submitted.
    pub envelope: Envelope,
    /// The body streamed.
    pub body: Vec<u8>,
    /// Whether the server offers CHUNKING (the client then uses BDAT).
    pub chunking: bool,
    greeting: Vec<u8>,
    ehlo: Vec<u8>,
    /// The replies to MAIL and each RCPT (and the 354, for DATA).
    envelope_replies: Vec<u8>,
    /// The replies to the body: one per BDAT chunk, or DATA's one.
    body_replies: Vec<u8>,
    bye: Vec<u8>,
}

fn mailbox(local: &str, domain: &str) -> Mailbox {
    Mailbox {
        local_part: local.to_owned(),
        domain: Host::Domain(domain.to_owned()),
    }
}

impl Script {
    /// `body` to `recipients` recipients, over DATA or (`chunking`) BDAT.
    pub fn new(body: Vec<u8>, recipients: usize, chunking: bool) -> Self {
        let envelope = Envelope {
            reverse_path: ReversePath::Mailbox(mailbox("sender.name", "example.org")),
            recipients: (0..recipients)
                .map(|i| Recipient {
                    path: ForwardPath::Mailbox(mailbox(&format!("recipient{i}"), "example.com")),
                    params: RcptParams::default(),
                })
                .collect(),
            params: MailParams {
                size: Some(body.len() as u64),
                ..MailParams::default()
            },
        };
        let mut ehlo = b"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 67108864\r\n\
250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n"
            .to_vec();
        if chunking {
            ehlo.extend_from_slice(b"250-CHUNKING\r\n");
        }
        ehlo.extend_from_slice(b"250 LIMITS RCPTMAX=1000\r\n");
        let mut envelope_replies = b"250 2.1.0 Ok\r\n".to_vec();
        for _ in 0..recipients {
            envelope_replies.extend_from_slice(b"250 2.1.5 Ok\r\n");
        }
        let queued = b"250 2.0.0 Ok: queued as 4XyZ12AbCdEf\r\n";
        let mut body_replies = Vec::new();
        if chunking {
            // One reply per chunk the client sends: a chunk per read of
            // the body, then the empty `BDAT 0 LAST` that ends it.
            for _ in 0..body.len().div_ceil(READ_SIZE) {
                body_replies.extend_from_slice(b"250 2.0.0 Chunk accepted\r\n");
            }
        } else {
            envelope_replies.extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
        }
        body_replies.extend_from_slice(queued);
        Script {
            envelope,
            body,
            chunking,
            greeting: b"220 mx.example.com ESMTP\r\n".to_vec(),
            ehlo,
            envelope_replies,
            body_replies,
            bye: b"221 2.0.0 Bye\r\n".to_vec(),
        }
    }
}

/// What became of one delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Body octets the session took.
    pub body_octets: u64,
    /// Recipients the session reported delivered.
    pub delivered: usize,
    /// Recipients reported otherwise.
    pub failed: usize,
    /// Octets the session gave to send.
    pub sent_octets: usize,
    /// BDAT commands seen in what was sent (0 for DATA).
    pub bdat_commands: usize,
    /// Whether the session ended on QUIT.
    pub quit: bool,
}

impl Outcome {
    /// Whether the whole body went and every recipient was delivered.
    pub fn is_complete(&self, delivery: &Script) -> bool {
        self.body_octets == delivery.body.len() as u64
            && self.delivered == delivery.envelope.recipients.len()
            && self.failed == 0
            && self.quit
            && (self.bdat_commands > 0) == delivery.chunking
    }
}

/// A client configuration as a sender would have it: the defaults (which
/// pipeline and use CHUNKING when offered), TLS off.
pub fn config() -> Arc<ClientConfig> {
    let mut config = ClientConfig::new("client.example.org");
    config.tls_mode = TlsMode::No;
    Arc::new(config)
}

/// The application's side of the drive loop.
struct App<'a> {
    body: &'a [u8],
    /// Octets of the body given to the session so far, once it asked.
    streamed: Option<usize>,
    outcome: Outcome,
}

/// Runs one delivery through a new session.
pub fn run(config: &Arc<ClientConfig>, delivery: &Script) -> Outcome {
    let now = now();
    let mut session = ClientSession::new(
        Arc::clone(config),
        "mx.example.com",
        ConnectionKind::First,
        now,
    );
    let mut app = App {
        body: &delivery.body,
        streamed: None,
        outcome: Outcome::default(),
    };
    let mut out = Vec::with_capacity(2 * READ_SIZE);
    session.submit(now, delivery.envelope.clone());
    session.quit(now);
    take_outputs(&mut session, &mut out, &mut app);
    // Each reply comes once the session has sent what it answers; a
    // server would not answer earlier.
    for replies in [
        &delivery.greeting,
        &delivery.ehlo,
        &delivery.envelope_replies,
        &delivery.body_replies,
        &delivery.bye,
    ] {
        session.handle_input(now, replies);
        take_outputs(&mut session, &mut out, &mut app);
    }
    if !session.is_closed() {
        // After 221 the server hangs up.
        session.handle_eof(now);
        take_outputs(&mut session, &mut out, &mut app);
    }
    app.outcome
}

/// Takes the session's outputs in `drive`'s order, streaming the body
/// when asked. What is sent is counted and dropped, as a socket takes it.
fn take_outputs(session: &mut ClientSession, out: &mut Vec<u8>, app: &mut App<'_>) {
    let now = now();
    let app = std::cell::RefCell::new(app);
    let on_event = |_: &mut ClientSession, _: &mut Vec<u8>, event: Event| {
        let mut app = app.borrow_mut();
        match event {
            Event::BodyWanted(_) => app.streamed = Some(0),
            Event::TransactionDone { outcomes, .. } => {
                for outcome in outcomes {
                    match outcome.delivery {
                        Delivery::Delivered => app.outcome.delivered += 1,
                        _ => app.outcome.failed += 1,
                    }
                }
            }
            Event::Closed(reason) => app.outcome.quit = reason == CloseReason::Quit,
            _ => {}
        }
    };
    let feed = |session: &mut ClientSession, out: &mut Vec<u8>| {
        let mut app = app.borrow_mut();
        let mut fed = false;
        while let Some(at) = app.streamed {
            if !session.wants_body() {
                break;
            }
            let rest = &app.body[at..];
            if rest.is_empty() {
                session.finish_body(now).expect("the body is wanted");
                app.streamed = None;
            } else {
                let read = &rest[..rest.len().min(READ_SIZE)];
                session.send_body(now, read).expect("the body is wanted");
                app.streamed = Some(at + read.len());
                app.outcome.body_octets += read.len() as u64;
            }
            fed = true;
            // The socket takes what was queued, so the session wants more.
            count_sent(session, out, &mut app.outcome);
        }
        fed
    };
    let _deadline = drive::drain(session, out, usize::MAX, on_event, feed);
    count_sent(session, out, &mut app.borrow_mut().outcome);
}

fn count_sent(session: &mut ClientSession, out: &mut Vec<u8>, outcome: &mut Outcome) {
    session.poll_transmit(out);
    outcome.sent_octets += out.len();
    // Each chunk is written on its own, right after `send_body`, so a
    // BDAT command starts the write.
    if out.starts_with(b"BDAT ") {
        outcome.bdat_commands += 1;
    }
    out.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body;

    #[test]
    fn every_delivery_is_delivered() {
        let config = config();
        for chunking in [false, true] {
            for (size, recipients) in [(body::SMALL, 1), (body::SMALL, 100), (1 << 20, 1)] {
                let delivery = Script::new(body::text(size), recipients, chunking);
                let outcome = run(&config, &delivery);
                assert!(
                    outcome.is_complete(&delivery),
                    "chunking {chunking}, {size} × {recipients}: {outcome:?}"
                );
            }
        }
    }

    #[test]
    fn a_refused_message_is_not_complete() {
        let config = config();
        let mut delivery = Script::new(body::text(body::SMALL), 2, false);
        delivery.body_replies = b"554 5.6.0 Message refused\r\n".to_vec();
        let outcome = run(&config, &delivery);
        assert_eq!(outcome.failed, 2, "{outcome:?}");
        assert!(!outcome.is_complete(&delivery));
    }
}
