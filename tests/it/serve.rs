//! `volley serve`: configuration errors exit 2 naming the key; a good
//! configuration runs until SIGTERM and exits 0 after a graceful shutdown;
//! `/health` answers 200 once it is ready; a listen address that cannot be bound
//! exits 2 naming its key. Also `volley hash-token` and `volley hash-password`.

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
        "[spool]\npath = \"{d}/spool\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [dns]\nnameservers = [\"127.0.0.1:9\"]\n\
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

#[test]
fn health_answers_200_once_ready() {
    let dir = super::cli_util::temp_dir("health");
    let path = dir.join("volley.toml");
    let config = format!(
        "[spool]\npath = \"{d}/spool\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [smtp]\nhostname = \"mta.volley.test\"\n\
         [smtp.relay]\nlisten = \"127.0.0.1:0\"\nallowed_cidrs = [\"127.0.0.1/32\"]\n\
         [dns]\nnameservers = [\"127.0.0.1:9\"]\n",
        d = dir.display()
    );
    std::fs::write(&path, config).unwrap();
    let serve = super::cli_util::Serve::start(&path);
    let (status, body) = super::cli_util::http_get(serve.http, "/health");
    assert_eq!(status, 200, "{body}");
    // The ready line names the relay listener too, and it answers.
    let relay: std::net::SocketAddr = serve
        .ready
        .split("relay smtp://")
        .nth(1)
        .and_then(|s| s.split([',', ' ']).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no relay address in {:?}", serve.ready));
    let mut banner = String::new();
    let stream = std::net::TcpStream::connect(relay).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stream), &mut banner).unwrap();
    assert!(banner.starts_with("220 "), "{banner}");
    assert_eq!(serve.stop(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unusable_listen_address_exits_2_naming_the_key() {
    let dir = temp_dir("listen");
    // A port that is taken: binding it fails.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let path = dir.join("volley.toml");
    let config = format!(
        "[spool]\npath = \"{d}/spool\"\n[http]\nlisten = \"{addr}\"\n\
         [dns]\nnameservers = [\"127.0.0.1:9\"]\n",
        d = dir.display(),
        addr = taken.local_addr().unwrap()
    );
    std::fs::write(&path, config).unwrap();
    let out = volley()
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("http.listen"), "{stderr}");
    drop(taken);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn hash_token_and_hash_password_print_config_values() {
    let out = volley().arg("hash-token").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let (token, hash) = (field("token:"), field("sha256:"));
    let expected: String = {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(hash, expected);

    let mut child = volley()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let phc = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    // The hash is accepted by the configuration.
    let cfg = format!(
        "[smtp.submission]\nlisten = \"127.0.0.1:0\"\nusers = [{{ username = \"a\", password_hash = \"{phc}\" }}]\n"
    );
    volley::config::Config::from_toml_str(&cfg).unwrap();

    let out = volley()
        .arg("hash-password")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
