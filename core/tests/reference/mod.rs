//! The parsers as they were before zero-copy parsing, frozen: the oracle
//! of the equivalence properties (`tests/borrowed_parsing.rs`) and of the
//! `command` and `reply` fuzz targets, which include this module.
#![allow(dead_code)]

pub mod command;
pub mod reply;
