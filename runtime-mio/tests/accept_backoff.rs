//! The shared scenario that exhausts the process's descriptors, alone in
//! its test binary, on petrel-mio.
#![cfg(test)]

mod common;

petrel_runtime_common::runtime_suite!(descriptors: common::Mio);
