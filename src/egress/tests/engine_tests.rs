//! The delivery engine end to end on each `delivery.send_path`: messages of
//! several sizes (with lines to dot-stuff) injected, delivered over pooled
//! loopback sessions to the library's sink, and checked byte for byte against
//! the sink's record (size and SHA-256 of every message).

use std::collections::HashMap;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::delivery::{Engine, EngineOptions, Injection};
use crate::queue::SystemClock;
use crate::sink::{Sink, SinkOptions};
use crate::spool::memory::MemorySpool;

/// A body of about `size` bytes whose every 7th line starts with a dot.
fn body(n: usize, size: usize) -> Vec<u8> {
    let mut b = format!("From: s@src.test\r\nSubject: message {n}\r\n\r\n").into_bytes();
    let mut i = 0;
    while b.len() < size {
        let line = format!(
            "{}line {i} of message {n}\r\n",
            if i % 7 == 0 { "." } else { "" }
        );
        b.extend_from_slice(line.as_bytes());
        i += 1;
    }
    b
}

fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn deliver_on(send_path: &str) {
    let dir = std::env::temp_dir().join(format!(
        "volley-egress-engine-{}-{send_path}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let record = dir.join("record.jsonl");
    let sink = Sink::start(SinkOptions {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        record: Some(record.clone()),
        ..SinkOptions::default()
    })
    .unwrap();
    let port = sink.local_addrs()[0].port();
    let text = format!(
        r#"
[delivery]
ehlo_name = "volley.test"
tls = "disabled"
retry_schedule = ["1s"]
send_path = "{send_path}"
zerocopy_threshold = "32KiB"
[[delivery.route]]
host = "127.0.0.1"
port = {port}
[shaping.default]
max_connections = 2
idle_timeout = "300ms"
"#
    );
    let config = Config::from_toml_str(&text).unwrap();
    let engine = Engine::start_with(
        &config,
        std::sync::Arc::new(MemorySpool::default()),
        std::sync::Arc::new(SystemClock),
        EngineOptions::default(),
    )
    .await
    .unwrap();
    let mut expected = HashMap::new();
    let mut recipients = 0;
    for n in 0..30 {
        // 4 KB (below the threshold: SENDMSG) and 100 KB (SENDMSG_ZC), 1-3 recipients.
        let size = if n % 3 == 0 { 100_000 } else { 4_000 };
        let b = body(n, size);
        let rcpts: Vec<String> = (0..=n % 3).map(|r| format!("r{r}.m{n}@d.test")).collect();
        recipients += rcpts.len() as u64;
        expected.insert(sha_hex(&b), b.len());
        engine
            .inject(Injection::new("s@src.test", rcpts, b))
            .await
            .unwrap();
    }
    let stats = engine.wait_idle(Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        (stats.delivered, stats.deferred),
        (recipients, 0),
        "{stats:?}"
    );
    engine.shutdown().await;
    let summary = sink.shutdown();
    assert_eq!(summary.messages, 30, "{summary:?}");
    let text = std::fs::read_to_string(&record).unwrap();
    let mut seen = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let sha = v["sha256"].as_str().expect("sha256").to_string();
        let size = expected
            .get(&sha)
            .unwrap_or_else(|| panic!("unknown body {v}"));
        assert_eq!(v["size"].as_u64(), Some(*size as u64), "{v}");
        seen += 1;
    }
    assert_eq!(seen, 30);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_delivers_byte_exact_on_the_vectored_path() {
    deliver_on("vectored").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_delivers_byte_exact_on_the_io_uring_path() {
    deliver_on("io-uring").await;
}
