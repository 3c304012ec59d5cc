//! Petrel's sans-IO ESMTP core.
//!
//! - [`wire`]: line framing, commands, replies, EHLO capabilities,
//!   dot-stuffing.
//! - [`server`]: the server session, with STARTTLS and the renegotiation
//!   policy enforced per connection.
//! - [`client`]: the client session and the outbound TLS decision
//!   ([`client::tls_policy`]).
//! - [`tls`]: TLS engines (rustls, OpenSSL) as byte transforms, client and
//!   server; [`renegotiation`]: the renegotiation policy.
//!
//! - [`drive`]: the one order in which drivers take a session's outputs.
//!
//! Nothing here performs IO or reads the clock: time comes in as arguments.
#![forbid(unsafe_code)]

pub mod client;
pub mod drive;
#[cfg(test)]
mod pair;
pub mod renegotiation;
pub mod server;
pub mod tls;
pub mod wire;
