#![no_main]
//! Command lines from a hostile client: parsing never panics, and what parses
//! renders to a line that parses back to the same command.

use libfuzzer_sys::fuzz_target;
use volley::smtp::command::{next_line, Command, Line};

fuzz_target!(|data: &[u8]| {
    let _ = next_line(data, 512);
    if let Ok(cmd) = Command::parse(data) {
        let mut wire = Vec::new();
        cmd.write_to(&mut wire);
        let again = Command::parse(&wire).expect("rendered command must parse");
        assert_eq!(cmd, again);
    }
});
