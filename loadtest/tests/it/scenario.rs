//! `volley-load scenario a|b|c|d` through the real binary, tiny sizes: every
//! recipient accepted over HTTP, delivered by Volley (engine, delivery log and
//! sinks agree), the report's JSON fields present and consistent, the temp dir
//! gone afterwards. Behaviour only: no figure is held to a bound here.

use std::process::Stdio;
use std::time::Instant;

use serde_json::Value;

use crate::harness::volley_load;

/// Runs a scenario with `extra` flags and returns its JSON report.
fn run(scenario: &str, extra: &[&str]) -> Value {
    let mut cmd = volley_load();
    cmd.args(["scenario", scenario, "--json"])
        .args(["--wire-seconds", "0.5", "--wire-connections", "4"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("start volley-load scenario");
    let pid = child.id();
    let started = Instant::now();
    let out = child
        .wait_with_output()
        .expect("wait for volley-load scenario");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scenario {scenario} failed ({}) after {:?}: {stderr}",
        out.status,
        started.elapsed()
    );
    // Its scratch dir (spool, delivery log) is removed.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("volley-scenario-{pid}-"))
        })
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON object expected: {stdout}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The fields every report has, and that every recipient was delivered once.
fn check_delivered(j: &Value, scenario: &str, recipients: u64) {
    assert_eq!(j["scenario"], scenario, "{j}");
    assert_eq!(j["recipients"], recipients, "{j}");
    for k in [
        "accepted",
        "delivered",
        "final_delivered",
        "log_delivered",
        "sink_recipients",
    ] {
        assert_eq!(j[k], recipients, "{k}: {j}");
    }
    assert_eq!(j["rejected"], 0, "{j}");
    assert_eq!(j["bounced"], 0, "{j}");
    assert_eq!(j["all_delivered"], true, "{j}");
    for k in [
        "delivered_per_s",
        "wire_limit_per_s",
        "wire_limit_msgs_per_s",
        "ratio_to_wire",
        "ack_p50_ms",
        "ack_p99_ms",
        "latency_p50_ms",
        "latency_p99_ms",
        "peak_rss_mb",
        "cpu_s_per_1000",
        "elapsed_s",
        "http_request_bytes",
    ] {
        let v = j[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} is not a number: {j}"));
        assert!(v > 0.0, "{k} = {v}: {j}");
    }
    assert!(j["ack_p50_ms"].as_f64() <= j["ack_p99_ms"].as_f64(), "{j}");
    assert!(
        j["latency_p50_ms"].as_f64() <= j["latency_p99_ms"].as_f64(),
        "{j}"
    );
    assert!(j["targets"].is_object(), "{j}");
    assert!(j["smtp_connections"].as_u64().unwrap_or(0) >= 1, "{j}");
}

#[test]
fn scenario_a_delivers_every_personalised_message() {
    let j = run("a", &["--messages", "2000"]);
    check_delivered(&j, "a", 2000);
    assert_eq!(j["http_endpoint"], "/api/v1/messages");
    // 10 recipients per POST, one message per recipient.
    assert_eq!(j["http_requests"], 200, "{j}");
    assert_eq!(j["sink_transactions"], 2000, "{j}");
    assert_eq!(j["domains"], 1000, "{j}");
    assert_eq!(j["sinks"], 10, "{j}");
    // About 4 KB each on the wire (Volley adds Date: and Message-ID:).
    let size = j["sink_bytes_per_transaction"].as_u64().unwrap();
    assert!((3800..4400).contains(&size), "{j}");
    assert!(j["targets"]["ack_p99_ms"].is_object(), "{j}");
}

#[test]
fn scenario_b_batches_recipients_of_one_body() {
    let j = run(
        "b",
        &["--messages", "5000", "--domains", "50", "--batch", "1000"],
    );
    check_delivered(&j, "b", 5000);
    assert_eq!(j["http_endpoint"], "/api/v1/campaigns");
    assert_eq!(j["http_requests"], 5, "{j}");
    // 100 recipients of a domain per message: many RCPTs per transaction.
    let per_tx = j["recipients_per_transaction"].as_f64().unwrap();
    assert!(per_tx > 10.0, "{j}");
    assert!(j["sink_transactions"].as_u64().unwrap() < 500, "{j}");
}

#[test]
fn scenario_c_delivers_large_messages() {
    let j = run("c", &["--messages", "300", "--sinks", "3"]);
    check_delivered(&j, "c", 300);
    let size = j["sink_bytes_per_transaction"].as_u64().unwrap();
    assert!((100_000..105_000).contains(&size), "{j}");
    assert_eq!(j["sinks"], 3, "{j}");
}

#[test]
fn scenario_d_gives_every_message_its_own_domain() {
    let j = run("d", &["--messages", "2000"]);
    check_delivered(&j, "d", 2000);
    assert_eq!(j["domains"], 2000, "{j}");
    // Every domain was looked up (at least its MX).
    assert!(j["dns_queries"].as_u64().unwrap() >= 2000, "{j}");
}

#[test]
fn scenario_refuses_a_sink_address_off_loopback() {
    let out = volley_load()
        .args(["scenario", "a", "--sink-base", "10.1.2.3", "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}
