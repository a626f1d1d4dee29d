//! Our blaster against our sink: exact counts with the record, and the sink's fault
//! injection seen from the client's side.

use crate::harness::{blast, read_jsonl, Sink, TempDir};

#[test]
fn chunked_multi_recipient_blast_is_recorded_exactly() {
    let dir = TempDir::new("record");
    let record = dir.0.join("record.jsonl");
    let sink = Sink::start("127.0.0.2", &["--record", record.to_str().unwrap()]);
    let report = blast(
        sink.addr,
        &[
            "--messages",
            "400",
            "--connections",
            "4",
            "--rcpts-per-msg",
            "5",
            "--domains",
            "3",
            "--chunking",
            "--size",
            "10000",
        ],
    );
    assert_eq!(report["messages"], 400, "{report}");
    assert_eq!(report["accepted_recipients"], 2000, "{report}");
    let summary = sink.stop();
    assert_eq!(summary["messages"], 400, "{summary}");
    assert_eq!(summary["recipients"], 2000, "{summary}");
    let lines = read_jsonl(&record);
    assert_eq!(lines.len(), 400);
    for line in &lines {
        assert_eq!(line["rcpts"].as_array().unwrap().len(), 5, "{line}");
        let size = line["size"].as_u64().unwrap();
        assert!((9_000..=11_000).contains(&size), "size {size}");
    }
}

#[test]
fn data_pipelining_blast_is_recorded_exactly() {
    let dir = TempDir::new("record-data");
    let record = dir.0.join("record.jsonl");
    let sink = Sink::start("127.0.0.3", &["--record", record.to_str().unwrap()]);
    let report = blast(
        sink.addr,
        &["--messages", "300", "--connections", "3", "--size", "2048"],
    );
    assert_eq!(report["accepted_recipients"], 300, "{report}");
    let summary = sink.stop();
    assert_eq!(summary["messages"], 300, "{summary}");
    // One body for every message: every record carries the same digest.
    let lines = read_jsonl(&record);
    assert_eq!(lines.len(), 300);
}

#[test]
fn rcpt_permfail_rate_is_seen_by_the_blaster() {
    let sink = Sink::start("127.0.0.4", &["--rcpt-permfail", "100"]);
    let report = blast(
        sink.addr,
        &["--messages", "200", "--connections", "2", "--chunking"],
    );
    assert_eq!(report["messages"], 200, "{report}");
    assert_eq!(report["accepted_recipients"], 0, "{report}");
    let summary = sink.stop();
    assert_eq!(summary["messages"], 0, "{summary}");
    let permanent: u64 = summary["replies"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(code, _)| code.starts_with('5'))
        .map(|(_, n)| n.as_u64().unwrap())
        .sum();
    assert!(permanent >= 200, "{summary}");
}

#[test]
fn data_tempfail_mix_is_roughly_the_configured_share() {
    let sink = Sink::start("127.0.0.5", &["--data-tempfail", "50", "--seed", "7"]);
    let report = blast(sink.addr, &["--messages", "1000", "--connections", "4"]);
    assert_eq!(report["messages"], 1000, "{report}");
    let tempfails = report["replies"]["4xx"].as_u64().unwrap();
    assert!(
        (300..=700).contains(&tempfails),
        "4xx {tempfails} of 1000: {report}"
    );
    let summary = sink.stop();
    assert_eq!(
        summary["messages"].as_u64().unwrap() + tempfails,
        1000,
        "{summary}"
    );
}
