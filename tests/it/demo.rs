//! `volley demo`: the real binary, small, as JSON; every recipient is delivered.

use serde_json::Value;

use super::cli_util::volley;

#[test]
fn demo_delivers_every_recipient() {
    let out = volley()
        .args(["demo", "--recipients", "2000", "--domains", "50", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["injected"], 2000, "{v}");
    assert_eq!(v["delivered"], 2000, "{v}");
    assert_eq!(v["delivery_log_delivered"], 2000, "{v}");
    assert_eq!(v["sink_recipients"], 2000, "{v}");
    assert_eq!(v["rejected"], 0, "{v}");
    assert!(v["http_ack_latency_ms"]["p50"].is_number(), "{v}");
    assert!(v["inject_to_delivery_ms"]["p99"].is_number(), "{v}");
    assert!(v["spool"].is_null(), "no --keep: the spool is removed");
    let log = std::path::PathBuf::from(v["delivery_log"].as_str().unwrap());
    assert!(log.is_file());
    let dir = log.parent().unwrap();
    assert!(!dir.join("spool").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn demo_static_content_batches_recipients() {
    let out = volley()
        .args([
            "demo",
            "--recipients",
            "1000",
            "--domains",
            "10",
            "--sinks",
            "2",
        ])
        .args(["--content", "static", "--json", "--keep"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["delivered"], 1000, "{v}");
    assert!(
        v["recipients_per_transaction"].as_f64().unwrap() > 1.0,
        "{v}"
    );
    let spool = std::path::PathBuf::from(v["spool"].as_str().unwrap());
    assert!(spool.is_dir(), "--keep keeps the spool");
    let _ = std::fs::remove_dir_all(spool.parent().unwrap());
}
