//! The runtimes' shared suite (petrel-runtime-common's `testing::suite`)
//! on petrel-tokio, over real loopback sockets.
#![cfg(test)]

mod common;

petrel_runtime_common::runtime_suite!(common::Tokio);
