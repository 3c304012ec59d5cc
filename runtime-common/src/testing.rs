//! Fixtures for the runtimes' own tests: a small message, a STARTTLS
//! listener configuration, a client configuration, a handler that decides
//! from another thread.

use std::sync::Arc;

use bytes::Bytes;
use petrel_core::client::tls_policy::TlsMode;
use petrel_core::client::{ClientConfig, Envelope, Recipient};
use petrel_core::server::{Event, ServerConfig};
use petrel_core::tls::{ClientTls, ClientTlsConfig, ServerTls, ServerTlsConfig, TlsEngine};
use petrel_core::wire::command::{ForwardPath, Host, Mailbox, ReversePath};

use crate::client::{BytesBody, Outbound};
use crate::server::{ConnectionInfo, Decision, Handler};

/// A handler that accepts MAIL and RCPT at once and each message 50 ms
/// later from another thread, as an MTA does after its spool fsync.
#[derive(Debug)]
pub struct AcceptLater;

impl Handler for AcceptLater {
    fn on_event(&self, _: &ConnectionInfo, event: &Event, decision: Option<Decision>) {
        match (event, decision) {
            (Event::MessageEnd { .. }, Some(decision)) => {
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    decision.accept();
                });
            }
            (_, Some(decision)) => decision.accept(),
            _ => {}
        }
    }
}

/// Message `n`: a bounce (null sender) to one recipient, with a body line
/// that needs dot-stuffing.
pub fn message(n: u32) -> Outbound {
    let body = format!("Subject: {n}\r\n\r\n.dot line\r\nbody\r\n");
    Outbound {
        envelope: Envelope {
            reverse_path: ReversePath::Null,
            recipients: vec![Recipient {
                path: ForwardPath::Mailbox(Mailbox {
                    local_part: "rcpt".into(),
                    domain: Host::Domain("example.test".into()),
                }),
                params: Default::default(),
            }],
            params: Default::default(),
        },
        body: Box::new(BytesBody::from(Bytes::from(body))),
    }
}

/// A listener configuration offering STARTTLS with a fresh self-signed
/// certificate for `localhost`.
pub fn tls_server(engine: TlsEngine) -> Result<ServerConfig, String> {
    let (cert, key) = crate::cli::self_signed("localhost")?;
    let mut config = ServerConfig::new("localhost");
    let tls =
        ServerTls::new(&ServerTlsConfig::new(engine, cert, key)).map_err(|e| e.to_string())?;
    config.tls = Some(tls);
    Ok(config)
}

/// A client configuration with `mode` and a non-verifying `engine`.
pub fn client(mode: TlsMode, engine: TlsEngine) -> Result<Arc<ClientConfig>, String> {
    let mut config = ClientConfig::new("client.test");
    config.tls_mode = mode;
    config.tls = Some(ClientTls::new(&ClientTlsConfig::new(engine)).map_err(|e| e.to_string())?);
    Ok(Arc::new(config))
}
