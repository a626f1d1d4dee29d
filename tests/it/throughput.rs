//! Measurement, not a pass/fail check (`#[ignore]`): the engine delivering to a
//! real `volley-load sink` process on loopback, with a MemorySpool and a test DNS
//! zone. Run with
//! `cargo test --release --test it throughput -- --ignored --nocapture`
//! (build `volley-load` first: `cargo build --release -p volley-loadtest`).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use volley::config::Config;
use volley::delivery::{Engine, Injection};
use volley::dns::TestDnsServer;
use volley::queue::SystemClock;
use volley::spool::memory::MemorySpool;
use volley::spool::{RocksSpool, Spool, SpoolOptions};

/// `volley-load`, next to the `volley` binary cargo built.
fn volley_load() -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(env!("CARGO_BIN_EXE_volley")).with_file_name("volley-load");
    p.exists().then_some(p)
}

async fn run(
    messages: usize,
    rcpts: usize,
    size: usize,
    connections: u32,
    domains: usize,
    rocks: bool,
) {
    let Some(bin) = volley_load() else {
        eprintln!("volley-load not built; skipping");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sink = Command::new(bin)
        .args(["sink", "--listen", &format!("127.0.0.1:{port}"), "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sink did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut zone = String::from(
        "@ 300 IN SOA ns.test. h.test. 1 3600 600 86400 1\nmx.sink.test. 300 IN A 127.0.0.1\n",
    );
    for d in 0..domains {
        zone.push_str(&format!("d{d}.test. 300 IN MX 10 mx.sink.test.\n"));
    }
    let dns = TestDnsServer::start(&zone, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let config = Config::from_toml_str(&format!(
        "[dns]\nnameservers = [\"{}\"]\n[delivery]\nsmtp_port = {port}\ntls = \"disabled\"\n\
         ehlo_name = \"volley.test\"\n[shaping.default]\nmax_connections = {connections}\n",
        dns.addr()
    ))
    .unwrap();
    let dir = std::env::temp_dir().join(format!("volley-tput-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spool: Arc<dyn Spool> = if rocks {
        Arc::new(RocksSpool::open(&dir, SpoolOptions::default()).unwrap())
    } else {
        Arc::new(MemorySpool::default())
    };
    let engine = Engine::start(&config, spool, Arc::new(SystemClock))
        .await
        .unwrap();
    let mut body = b"From: a@src.test\r\nSubject: load\r\n\r\n".to_vec();
    while body.len() < size {
        body.extend_from_slice(
            b"0123456789012345678901234567890123456789012345678901234567890123456789012\r\n",
        );
    }
    let body: Arc<[u8]> = Arc::from(body);
    let start = Instant::now();
    // Concurrent injectors, so the RocksDB spool's group commit shares syncs.
    let injectors = 64;
    let mut tasks = Vec::new();
    for t in 0..injectors {
        let (engine, body) = (engine.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            for i in (t..messages).step_by(injectors) {
                let d = i % domains;
                let to: Vec<String> = (0..rcpts).map(|r| format!("u{i}-{r}@d{d}.test")).collect();
                let mut msg = Injection::new("bounce@src.test", to, Vec::new());
                msg.body = body.clone();
                engine.inject(msg).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let injected = start.elapsed();
    let stats = engine.wait_idle(Duration::from_secs(300)).await.unwrap();
    let elapsed = start.elapsed();
    engine.shutdown().await;
    let _ = sink.kill();
    let _ = sink.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(stats.delivered as usize, messages * rcpts);
    println!(
        "{} spool, {messages} msgs x {rcpts} rcpt, {size} B, {domains} domains, {connections} conns: \
         {:.0} msg/s, {:.0} rcpt/s (inject alone {:.2}s, total {:.2}s, {} connections)",
        if rocks { "rocksdb" } else { "memory" },
        messages as f64 / elapsed.as_secs_f64(),
        (messages * rcpts) as f64 / elapsed.as_secs_f64(),
        injected.as_secs_f64(),
        elapsed.as_secs_f64(),
        stats.connections,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn throughput_to_volley_load_sink() {
    for rocks in [false, true] {
        run(50_000, 1, 4096, 8, 1, rocks).await;
        run(50_000, 1, 4096, 8, 100, rocks).await;
        run(5_000, 50, 4096, 8, 1, rocks).await;
    }
}
