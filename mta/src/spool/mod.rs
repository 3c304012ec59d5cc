//! The durable spool.

pub mod message;
