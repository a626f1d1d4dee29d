//! The data path's cost per byte: finding the dots to stuff, walking the pieces a
//! sender writes, and unstuffing on the receiving side (the load-test sink's hot
//! loop). Bodies look like real mail: ~76-character text lines, a few lines
//! starting with a dot.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use volley::smtp::data::{
    stuffing_points, BareLineEndings, DataLimits, DataPieces, DataProgress, DataReader,
};

/// A message of about `size` bytes: a header block, then text lines of 60-78
/// characters, one in 40 starting with a dot.
fn body(size: usize) -> Vec<u8> {
    let mut out = b"From: Sender <sender@example.com>\r\nTo: rcpt@example.org\r\n\
        Subject: Your weekly digest\r\nMIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\r\n"
        .to_vec();
    let words = [
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet,",
        "consectetur",
        "adipiscing",
        "elit",
    ];
    let mut seed = 0x9e37_79b9_u32;
    let mut line = 0;
    while out.len() < size {
        line += 1;
        let start = out.len();
        if line % 40 == 0 {
            out.push(b'.');
        }
        let width = 60 + (seed % 19) as usize;
        while out.len() - start < width {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            out.extend_from_slice(words[(seed >> 24) as usize % words.len()].as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn stuffing(c: &mut Criterion) {
    let mut group = c.benchmark_group("data");
    for (name, size) in [("4KB", 4 * 1024), ("100KB", 100 * 1024)] {
        let body = body(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("stuffing_points", name),
            &body,
            |b, body| b.iter(|| stuffing_points(black_box(body))),
        );
        // What a sender does per transaction: find the points, then walk the pieces
        // (summing lengths stands in for handing them to writev).
        group.bench_with_input(
            BenchmarkId::new("points_and_pieces", name),
            &body,
            |b, body| {
                b.iter(|| {
                    let points = stuffing_points(black_box(body));
                    DataPieces::new(body, &points)
                        .map(<[u8]>::len)
                        .sum::<usize>()
                })
            },
        );
    }

    let body = body(100 * 1024);
    let points = stuffing_points(&body);
    let wire: Vec<u8> = DataPieces::new(&body, &points).flatten().copied().collect();
    let limits = DataLimits {
        max_size: 10 << 20,
        max_line: Some(1000),
        bare_line_endings: BareLineEndings::Reject,
    };
    group.throughput(Throughput::Bytes(wire.len() as u64));
    // One feed of the whole section; content is counted, not copied.
    group.bench_function(BenchmarkId::new("reader_feed", "100KB"), |b| {
        b.iter(|| {
            let mut reader = DataReader::new(limits);
            let mut n = 0;
            let progress = reader.feed(black_box(&wire), |c| n += c.len());
            assert!(matches!(
                progress,
                Ok(DataProgress::Done { result: Ok(()), .. })
            ));
            n
        })
    });
    // The same, arriving in 16 KB reads as from a socket.
    group.bench_function(BenchmarkId::new("reader_feed_16KB_reads", "100KB"), |b| {
        b.iter(|| {
            let mut reader = DataReader::new(limits);
            let mut n = 0;
            for chunk in black_box(&wire).chunks(16 * 1024) {
                if let Ok(DataProgress::Done { .. }) = reader.feed(chunk, |c| n += c.len()) {
                    break;
                }
            }
            n
        })
    });
    group.finish();
}

criterion_group!(benches, stuffing);
criterion_main!(benches);
