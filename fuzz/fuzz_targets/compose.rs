#![no_main]
//! Inject requests from a hostile client: any bytes that parse as a request
//! compose without panicking, every composed body has CRLF-only line endings and
//! lines of at most 998 octets, and every recipient is accounted for exactly once.

use libfuzzer_sys::fuzz_target;
use volley::ingest::compose::{compose, ComposeLimits, InjectRequest};

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<InjectRequest>(data) else {
        return;
    };
    let limits = ComposeLimits {
        max_recipients: 50,
        max_message_size: 64 * 1024,
        hostname: "fuzz.volley.test".to_owned(),
    };
    let Ok(out) = compose(&req, &limits) else {
        return;
    };
    let mut seen = vec![false; req.recipients.len()];
    for m in &out.messages {
        assert!(m.body.len() <= limits.max_message_size);
        let mut rest = &m.body[..];
        while let Some(i) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            assert!(i <= 998, "line longer than 998 octets");
            assert_eq!(rest[i], b'\r', "bare LF");
            assert_eq!(rest.get(i + 1), Some(&b'\n'), "bare CR");
            rest = &rest[i + 2..];
        }
        assert!(rest.len() <= 998, "line longer than 998 octets");
        for &(index, _) in &m.recipients {
            assert!(!seen[index], "recipient in two messages");
            seen[index] = true;
        }
    }
    for r in &out.rejected {
        assert!(!seen[r.index], "recipient both composed and rejected");
        seen[r.index] = true;
    }
    assert!(seen.iter().all(|s| *s), "recipient lost");
});
