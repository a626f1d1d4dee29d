#![no_main]
//! Replies from a hostile server, split at an arbitrary point: the parser never
//! panics and yields the same replies however the bytes arrive.

use libfuzzer_sys::fuzz_target;
use volley::smtp::reply::{Reply, ReplyParser};

fn parse_all(chunks: &[&[u8]]) -> (Vec<Reply>, bool) {
    let mut parser = ReplyParser::new();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match parser.parse(&buf) {
                Ok(Some((reply, n))) => {
                    out.push(reply);
                    buf.drain(..n);
                }
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let split = data[0] as usize % data.len();
    let body = &data[1..];
    let split = split.min(body.len());
    let whole = parse_all(&[body]);
    let parts = parse_all(&[&body[..split], &body[split..]]);
    assert_eq!(whole, parts);
    for reply in whole.0 {
        let wire = reply.to_bytes();
        let again = parse_all(&[&wire]);
        assert_eq!(again.0.len(), 1);
    }
});
