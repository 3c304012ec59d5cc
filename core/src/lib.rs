//! Petrel's sans-IO ESMTP core.
#![forbid(unsafe_code)]

pub mod renegotiation;
pub mod server;
pub mod tls;
pub mod wire;
