//! What the fuzz targets share: a reader that turns fuzz input into
//! operations ([`ops`]), a live-heap counter for the bounded-memory
//! assertions ([`heap`]), the fixed certificate and TLS contexts ([`tls`]),
//! the server-session driver of `server_session` and `server_starttls`
//! ([`server`]), and the parsers as they were before zero-copy parsing
//! ([`reference`]).
//!
//! The harness may panic: a panic is how a fuzz target reports a finding.

pub mod heap;
pub mod ops;
pub mod server;
pub mod tls;

/// core's integration-test support: the in-memory rustls and OpenSSL
/// clients (TLS 1.2-only on request, and an OpenSSL client that can start
/// renegotiations) that play the peer of `server_starttls`.
#[path = "../../tests/support/mod.rs"]
pub mod support;

/// The command and reply parsers as they were before zero-copy parsing
/// (core/tests/reference): the oracle the `command` and `reply` targets
/// hold the borrowed parsers to.
#[path = "../../tests/reference/mod.rs"]
pub mod reference;
