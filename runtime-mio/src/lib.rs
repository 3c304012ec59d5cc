//! Petrel's SMTP sessions driven on mio: one event-loop thread per core.
//!
//! Everything that is not waiting for sockets, timers or wake-ups lives in
//! `petrel-runtime-common` (and the protocol itself in `petrel-core`); this
//! crate is the loop around them. Each loop thread owns a [`mio::Poll`], a
//! slab of connections, a heap of their deadlines and a [`mio::Waker`] that
//! decisions answered on other threads use to get back to their
//! connection. Every loop accepts on its own handle of every listening
//! socket, and hands what it accepts to the least loaded loop (itself when
//! it is among them), so connections spread over the cores however the
//! kernel wakes the loops.
//! [`serve`] and [`deliver`] block the calling thread only as long as they
//! need to: `serve` until the loops are started, `deliver` until its
//! messages are done. [`deliver_many`] drives several outbound connections
//! on one event loop.
//!
//! Serving, with an application that accepts every message:
//!
//! ```
//! use std::io::{BufRead, BufReader};
//! use std::net::TcpStream;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use petrel_core::server::{Event, ServerConfig};
//! use petrel_mio::{ConnectionInfo, Decision, Handler, ListenerConfig, ServeConfig};
//!
//! struct AcceptAll;
//!
//! impl Handler for AcceptAll {
//!     fn on_event(&self, _conn: &ConnectionInfo, _event: &Event, decision: Option<Decision>) {
//!         // A real MTA would spool the body and answer MessageEnd later,
//!         // from whatever thread finished the fsync.
//!         if let Some(decision) = decision {
//!             decision.accept();
//!         }
//!     }
//! }
//!
//! # fn main() -> std::io::Result<()> {
//! let listener = ListenerConfig::new("127.0.0.1:0".parse().unwrap(), ServerConfig::new("mx.example"));
//! let server = petrel_mio::serve(ServeConfig::single(listener), Arc::new(AcceptAll))?;
//! let addr = server.local_addrs()[0];
//! println!("listening on {addr}");
//!
//! // Any SMTP client will do; here, just the greeting.
//! let mut greeting = String::new();
//! BufReader::new(TcpStream::connect(addr)?).read_line(&mut greeting)?;
//! assert!(greeting.starts_with("220 mx.example"));
//!
//! server.shutdown(Duration::from_secs(1));
//! # Ok(())
//! # }
//! ```

mod client;
mod server;

pub use client::{deliver, deliver_many, Batch};
pub use server::{serve, Server};

pub use petrel_runtime_common::client::{
    BodySource, DeliverOptions, DeliveryReport, MessageOutcome, Outbound, TlsFailed,
};
pub use petrel_runtime_common::listen::{ListenerConfig, Network, ServeConfig};
pub use petrel_runtime_common::server::{Answer, ConnectionInfo, Decision, Handler, Hold};
