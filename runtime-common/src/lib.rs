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
//! - [`client::DeliveryConn`]: one outbound connection delivering
//!   [`client::Outbound`] messages whose bodies are streamed from a
//!   [`client::BodySource`];
//! - [`listen`]: listeners, peer networks and the connection limit;
//! - [`cli`]: the command line shared by every runtime's examples;
//! - [`testing`]: fixtures for the runtimes' own tests.

pub mod cli;
pub mod client;
pub mod listen;
pub mod server;
pub mod testing;
