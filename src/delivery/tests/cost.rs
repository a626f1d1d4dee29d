//! Measurement, not a check (`#[ignore]`): what the results path costs with
//! campaign counters and completion records, delivering to Postfix's
//! `smtp-sink` (a separate process) over loopback, with the in-memory and the
//! RocksDB spool. Run with
//! `cargo test --release -p volley --lib cost -- --ignored --nocapture`.

use std::process::{Command, Stdio};
use std::time::Instant;

use super::*;
use crate::model::CampaignId;
use crate::spool::{RocksSpool, Spool, SpoolOptions};

async fn run(messages: usize, rocks: bool) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sink = Command::new("smtp-sink");
    // smtp-sink refuses to run as root without a user to drop to.
    if unsafe { libc::geteuid() } == 0 {
        sink.args(["-u", "nobody"]);
    }
    let Ok(mut sink) = sink
        .args([&format!("127.0.0.1:{port}"), "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        eprintln!("smtp-sink not installed; skipping");
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "smtp-sink did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let zone = "@ 300 IN SOA ns.test. h.test. 1 3600 600 86400 1\n\
                mx.sink.test. 300 IN A 127.0.0.1\nd.test. 300 IN MX 10 mx.sink.test.\n";
    let dns = TestDnsServer::start(zone, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let config = Config::from_toml_str(&format!(
        "[dns]\nnameservers = [\"{}\"]\n[delivery]\nsmtp_port = {port}\ntls = \"disabled\"\n\
         ehlo_name = \"volley.test\"\n[shaping.default]\nmax_connections = 8\n",
        dns.addr()
    ))
    .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "volley-cost-{}-{}",
        std::process::id(),
        DIRS.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let spool: Arc<dyn Spool> = if rocks {
        Arc::new(RocksSpool::open(&dir, SpoolOptions::default()).unwrap())
    } else {
        Arc::new(MemorySpool::default())
    };
    let engine = Engine::start(&config, spool, Arc::new(SystemClock))
        .await
        .unwrap();
    let mut text = b"From: a@src.test\r\nSubject: load\r\n\r\n".to_vec();
    while text.len() < 4096 {
        text.extend_from_slice(b"0123456789012345678901234567890123456789012345678901234567\r\n");
    }
    let body: Arc<[u8]> = Arc::from(text);
    let start = Instant::now();
    let injectors = 64;
    let mut tasks = Vec::new();
    for t in 0..injectors {
        let (engine, body) = (engine.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            for i in (t..messages).step_by(injectors) {
                let mut msg = Injection::new("b@src.test", [format!("u{i}@d.test")], Vec::new());
                msg.body = body.clone();
                msg.campaign = Some(CampaignId(format!("c{}", i % 4)));
                engine.inject(msg).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = engine.wait_idle(Duration::from_secs(600)).await.unwrap();
    let elapsed = start.elapsed();
    engine.shutdown().await;
    let _ = sink.kill();
    let _ = sink.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(stats.delivered as usize, messages);
    println!(
        "{} spool, {messages} msgs x 1 rcpt, 4 KiB, 4 campaigns: {:.0} msg/s ({:.2}s)",
        if rocks { "rocksdb" } else { "memory" },
        messages as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn cost_of_the_results_path() {
    for _ in 0..2 {
        for rocks in [false, true] {
            run(30_000, rocks).await;
        }
    }
}
