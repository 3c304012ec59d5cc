//! The command parser on arbitrary lines, with and without SMTPUTF8.
//!
//! Asserts that the borrowed parse, made owned, is what the owned parser it
//! replaced gave (`reference`), error for error; and that whatever parses
//! renders to a bounded wire form (xtext at most triples a parameter) that
//! parses back to the same command, as `Command`'s `Display` promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel_core::wire::command::{parse_command, parse_command_ref, CommandRef};
use petrel_core_fuzz::reference;

fuzz_target!(|data: &[u8]| {
    if let Some((&first, line)) = data.split_first() {
        let utf8 = first & 1 == 1;
        let parsed = parse_command_ref(line, utf8).map(CommandRef::into_owned);
        assert_eq!(
            parsed,
            reference::command::parse_command(line, utf8),
            "{line:?}: not what the owned parser gave"
        );
        if let Ok(command) = parsed {
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
