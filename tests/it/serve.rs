//! `volley serve`: configuration errors exit 2 naming the key; a good
//! configuration runs until SIGTERM and exits 0 after a graceful shutdown.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn volley() -> Command {
    Command::new(env!("CARGO_BIN_EXE_volley"))
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("volley-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn config_error_exits_2_naming_the_key() {
    let dir = temp_dir("bad");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[shaping.default]\nmax_conections = 3\n").unwrap();
    let out = volley()
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("shaping.default.max_conections"),
        "{stderr}"
    );
    let missing = volley()
        .args(["serve", "--config", "/nonexistent/volley.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn serve_runs_until_sigterm_and_exits_0() {
    let dir = temp_dir("good");
    let path = dir.join("volley.toml");
    let config = format!(
        "[spool]\npath = \"{d}/spool\"\n[dns]\nnameservers = [\"127.0.0.1:9\"]\n\
         [log]\ndelivery = \"{d}/delivery.jsonl\"\n",
        d = dir.display()
    );
    std::fs::write(&path, config).unwrap();
    let mut child = volley()
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = tx.send(text.clone());
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    while !seen.contains("ready") {
        let left = deadline.saturating_duration_since(Instant::now());
        seen = rx.recv_timeout(left).expect("volley serve reports ready");
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(dir.join("spool").is_dir(), "the RocksDB spool was opened");
    let _ = std::fs::remove_dir_all(dir);
}
