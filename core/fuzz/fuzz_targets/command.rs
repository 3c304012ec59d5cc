//! The command parser on arbitrary lines, with and without SMTPUTF8.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel_core::wire::command::parse_command;

fuzz_target!(|data: &[u8]| {
    if let Some((&first, line)) = data.split_first() {
        if let Ok(command) = parse_command(line, first & 1 == 1) {
            // Whatever parses must render without panicking.
            let _ = format!("{command:?}");
        }
    }
});
