#![no_main]
//! Paths and mailboxes from hostile input: parsing never panics, respects the
//! length limits, and what parses renders to a path that parses back the same.

use libfuzzer_sys::fuzz_target;
use volley::smtp::address::{Mailbox, Path};

fuzz_target!(|data: &[u8]| {
    for utf8 in [false, true] {
        if let Ok((path, used)) = Path::parse(data, utf8) {
            assert!(used <= data.len());
            let wire = path.to_string();
            let (again, _) = Path::parse(wire.as_bytes(), utf8).expect("rendered path must parse");
            assert_eq!(path.mailbox, again.mailbox);
        }
        if let Ok(s) = std::str::from_utf8(data) {
            if let Ok(m) = Mailbox::parse(s, utf8) {
                assert!(m.local.len() <= 64);
            }
        }
    }
});
