//! A real server session end to end, in memory: a rustls SMTP client talks
//! to a `ServerSession` — greeting, EHLO, STARTTLS with a real TLS
//! handshake, EHLO again, one message, QUIT — and the transcript is printed.
//! No sockets: the example is the driver, moving bytes between the two.
//!
//! ```text
//! cargo run -p petrel-core --all-features --example session -- [rustls|openssl]
//! ```

use std::error::Error;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use petrel_core::server::{Event, ServerConfig, ServerSession};
use petrel_core::tls::{ServerTls, ServerTlsConfig, TlsEngine};
use petrel_core::wire::reply::{ReplyParser, ReplyStatus};
use rustls::pki_types::{CertificateDer, ServerName};

/// The client half: plaintext until STARTTLS, then a rustls connection.
struct Client {
    tls: Option<rustls::ClientConnection>,
    tls_config: Arc<rustls::ClientConfig>,
    /// Bytes for the server.
    outgoing: Vec<u8>,
    /// Plaintext from the server not yet parsed into replies.
    incoming: Vec<u8>,
    parser: ReplyParser,
}

impl Client {
    fn send(&mut self, line: &str) -> Result<(), Box<dyn Error>> {
        println!("C: {line}");
        let wire = format!("{line}\r\n");
        match &mut self.tls {
            Some(tls) => tls.writer().write_all(wire.as_bytes())?,
            None => self.outgoing.extend_from_slice(wire.as_bytes()),
        }
        Ok(())
    }

    fn receive(&mut self, mut bytes: &[u8]) -> Result<(), Box<dyn Error>> {
        match &mut self.tls {
            None => self.incoming.extend_from_slice(bytes),
            Some(tls) => {
                while !bytes.is_empty() {
                    tls.read_tls(&mut bytes)?;
                    tls.process_new_packets()?;
                }
                let mut plain = Vec::new();
                match tls.reader().read_to_end(&mut plain) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
                self.incoming.extend_from_slice(&plain);
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<Vec<u8>, Box<dyn Error>> {
        if let Some(tls) = &mut self.tls {
            while tls.wants_write() {
                tls.write_tls(&mut self.outgoing)?;
            }
        }
        Ok(std::mem::take(&mut self.outgoing))
    }

    fn reply(&mut self) -> Result<Option<String>, Box<dyn Error>> {
        match self.parser.parse(&self.incoming)? {
            ReplyStatus::Complete { reply, consumed } => {
                self.incoming.drain(..consumed);
                Ok(Some(format!(
                    "{} {}",
                    reply.code(),
                    reply.text().replace('\n', " | ")
                )))
            }
            ReplyStatus::Partial { consumed } => {
                self.incoming.drain(..consumed);
                Ok(None)
            }
        }
    }
}

/// Moves bytes both ways until the client has a complete reply.
fn exchange(server: &mut ServerSession, client: &mut Client) -> Result<String, Box<dyn Error>> {
    for _ in 0..1000 {
        if let Some(reply) = client.reply()? {
            println!("S: {reply}");
            return Ok(reply);
        }
        let now = Instant::now();
        let to_server = client.flush()?;
        server.handle_input(now, &to_server);
        let mut to_client = Vec::new();
        server.poll_transmit(&mut to_client);
        while let Some(event) = server.poll_event() {
            match event {
                Event::Body(chunk) => println!("   [event] body chunk of {} octets", chunk.len()),
                Event::Mail { .. } | Event::Rcpt { .. } | Event::MessageEnd { .. } => {
                    println!("   [event] {event:?} -> accept");
                    server.accept(now)?;
                }
                other => println!("   [event] {other:?}"),
            }
            server.poll_transmit(&mut to_client);
        }
        client.receive(&to_client)?;
    }
    Err("no reply from the server".into())
}

fn main() -> Result<(), Box<dyn Error>> {
    let engine: TlsEngine = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("rustls")
        .parse()?;
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    let server_tls = ServerTls::new(&ServerTlsConfig::new(
        engine,
        key.cert.pem().into_bytes(),
        key.signing_key.serialize_pem().into_bytes(),
    ))?;
    let mut config = ServerConfig::new("mx.petrel.test");
    config.tls = Some(server_tls);
    let mut server = ServerSession::new(Arc::new(config), Instant::now());

    // The client trusts exactly the server's certificate: a real
    // verification, not a disabled one.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(key.cert.der().to_vec()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut client = Client {
        tls: None,
        tls_config: Arc::new(tls_config),
        outgoing: Vec::new(),
        incoming: Vec::new(),
        parser: ReplyParser::new(),
    };

    println!("# Petrel server session ({engine} engine) and a rustls client, in memory");
    exchange(&mut server, &mut client)?;
    client.send("EHLO client.example")?;
    exchange(&mut server, &mut client)?;
    client.send("STARTTLS")?;
    let ready = exchange(&mut server, &mut client)?;
    if !ready.starts_with("220") {
        return Err(format!("STARTTLS refused: {ready}").into());
    }
    client.tls = Some(rustls::ClientConnection::new(
        client.tls_config.clone(),
        ServerName::try_from("localhost")?,
    )?);
    client.send("EHLO client.example")?;
    let ehlo = exchange(&mut server, &mut client)?;
    if let Some(info) = server.tls_info() {
        println!("# TLS: {} {}", info.version, info.cipher);
    }
    assert!(!ehlo.contains("STARTTLS"), "STARTTLS is not offered again");
    for line in [
        "MAIL FROM:<sender@example.org> SIZE=64",
        "RCPT TO:<rcpt@example.com>",
        "DATA",
    ] {
        client.send(line)?;
        exchange(&mut server, &mut client)?;
    }
    for line in ["Subject: hello", "", "..a line that starts with a dot", "."] {
        client.send(line)?;
    }
    exchange(&mut server, &mut client)?;
    client.send("QUIT")?;
    exchange(&mut server, &mut client)?;
    println!("# done: session closed = {}", server.is_closed());
    Ok(())
}
