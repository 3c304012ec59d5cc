//! The SMTP wire layer: line framing, commands, replies, EHLO capabilities and
//! dot-stuffing.

pub mod command;
pub mod dot;
pub mod ehlo;
pub mod line;
pub mod reply;
