//! Petrel, the mail transfer agent, as a library: the `petrel` binary is a
//! thin command line over it, and the tests drive the same code.
//!
//! Mail flows one way through the modules (ARCHITECTURE.md has the map):
//! [`config`] turns a Momentum-style file into typed policies once, at
//! start; [`listen`] receives mail through a runtime and hands each message
//! to the [`spool`], which makes it durable before the client hears `250`;
//! [`log`] writes one JSON line per reception or refusal.

pub mod bounce;
pub mod config;
pub mod control;
pub mod deliver;
pub mod engine;
pub mod listen;
pub mod log;
pub mod queue;
pub mod route;
pub mod spool;
