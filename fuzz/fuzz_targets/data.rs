#![no_main]
//! Stuffing then reading back any body gives the body (plus a final CRLF), however
//! the wire bytes are split; the reader never panics on arbitrary input.

use libfuzzer_sys::fuzz_target;
use volley::smtp::data::{
    stuffing_points, BareLineEndings, DataLimits, DataPieces, DataProgress, DataReader,
};

fuzz_target!(|data: &[u8]| {
    let limits = DataLimits {
        max_size: 1 << 20,
        max_line: None,
        bare_line_endings: BareLineEndings::Allow,
    };
    // Arbitrary input straight into the reader.
    let mut reader = DataReader::new(limits);
    let _ = reader.feed(data, |_| {});

    // Round trip for bodies with CRLF-only line endings.
    if data.windows(1).any(|w| w[0] == b'\r' || w[0] == b'\n') {
        return;
    }
    let body: Vec<u8> = data.split(|&b| b == b'#').flat_map(|l| [l, b"\r\n"].concat()).collect();
    let points = stuffing_points(&body);
    let wire: Vec<u8> = DataPieces::new(&body, &points).flatten().copied().collect();
    assert_eq!(wire.len(), DataPieces::wire_len(&body, &points));
    let mut reader = DataReader::new(limits);
    let mut got = Vec::new();
    match reader.feed(&wire, |c| got.extend_from_slice(c)) {
        Ok(DataProgress::Done { consumed, result: Ok(()) }) => {
            assert_eq!(consumed, wire.len());
            assert_eq!(got, body);
        }
        other => panic!("round trip failed: {other:?}"),
    }
});
