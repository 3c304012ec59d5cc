//! The command parser on arbitrary lines, with and without SMTPUTF8.
//!
//! Asserts that whatever parses renders to a bounded wire form (xtext at
//! most triples a parameter) that parses back to the same command, as
//! `Command`'s `Display` promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel_core::wire::command::parse_command;

fuzz_target!(|data: &[u8]| {
    if let Some((&first, line)) = data.split_first() {
        let utf8 = first & 1 == 1;
        if let Ok(command) = parse_command(line, utf8) {
            let wire = command.to_string();
            assert!(wire.len() <= 3 * line.len() + 32, "{wire:?} from {line:?}");
            assert_eq!(
                parse_command(wire.as_bytes(), utf8),
                Ok(command),
                "{wire:?} does not parse back"
            );
        }
    }
});
