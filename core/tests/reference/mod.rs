//! The parsers as they were before zero-copy parsing, frozen: the oracle
//! of the equivalence properties (`tests/borrowed_parsing.rs`).
#![allow(dead_code)]

pub mod command;
