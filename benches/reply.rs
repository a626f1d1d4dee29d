//! Reply parsing throughput: what the load-test blaster and the egress client do for
//! every command they pipeline. Each benchmark parses the whole input with one
//! [`ReplyParser`], the way a connection does (parse, then skip the consumed bytes),
//! and reports bytes/s; divide by the input's reply count for replies/s.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use volley::smtp::reply::ReplyParser;

/// Parses every reply in `wire`, returning how many there were.
fn parse_all(parser: &mut ReplyParser, wire: &[u8]) -> usize {
    let mut at = 0;
    let mut count = 0;
    while let Ok(Some((reply, n))) = parser.parse(&wire[at..]) {
        black_box(&reply);
        at += n;
        count += 1;
    }
    assert_eq!(at, wire.len(), "benchmark input must be whole replies");
    count
}

fn bench(c: &mut Criterion) {
    let single: &[u8] = b"250 2.0.0 Ok\r\n";

    // A pipelined burst of 100 replies: per message MAIL, 2 RCPT, DATA (354) and the
    // end-of-data 250, as a sink answers a pipelining blaster.
    let mut burst = Vec::new();
    let mut burst_replies = 0;
    while burst_replies < 100 {
        burst.extend_from_slice(b"250 2.1.0 Ok\r\n");
        burst.extend_from_slice(b"250 2.1.5 Ok\r\n");
        burst.extend_from_slice(b"250 2.1.5 Ok\r\n");
        burst.extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
        burst.extend_from_slice(b"250 2.0.0 Ok: queued as 4BxJ2l6Q9Kz9sWd\r\n");
        burst_replies += 5;
    }

    let ehlo: &[u8] = b"250-mx.example.com Hello client.example.org [192.0.2.1]\r\n\
        250-PIPELINING\r\n250-SIZE 52428800\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n\
        250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";

    let mut group = c.benchmark_group("reply");
    for (name, wire, replies) in [
        ("single_250", single, 1),
        ("pipelined_burst_100", &burst[..], burst_replies),
        ("ehlo_10_lines", ehlo, 1),
    ] {
        let mut parser = ReplyParser::new();
        assert_eq!(parse_all(&mut parser, wire), replies);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| b.iter(|| parse_all(&mut parser, black_box(wire))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
