//! `loadtest/vs-postfix.sh` end to end at a tiny size: it sets up a private
//! Postfix relay, runs `volley-load vs-postfix run` (Volley, DNS zone, sinks),
//! and must end with a parsable `ratio=` line after both MTAs delivered every
//! recipient. Behaviour only: the rates themselves are not checked.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use crate::harness::postfix_tool;

/// Runs the script for `workload` with `messages` transactions per side and
/// returns its `key=value` lines, the last one first checked to be `ratio=`.
fn run_script(workload: &str, messages: u64) -> HashMap<String, String> {
    postfix_tool("postfix");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("vs-postfix.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(workload)
        // The binary under test; the script builds nothing and runs Volley as
        // `volley-load vs-postfix volley` (the same serve code as `volley serve`).
        .env("VOLLEY_LOAD", env!("CARGO_BIN_EXE_volley-load"))
        .env_remove("VOLLEY")
        .env("MESSAGES", messages.to_string())
        .env("CONNECTIONS", "4")
        // Hang guard only.
        .env("TIMEOUT", "240")
        .output()
        .expect("run vs-postfix.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "vs-postfix.sh {workload} exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    let ratio = last
        .strip_prefix("ratio=")
        .unwrap_or_else(|| panic!("last line {last:?} is not ratio=\n{stdout}"));
    let ratio: f64 = ratio
        .parse()
        .unwrap_or_else(|e| panic!("ratio {ratio:?}: {e}\n{stdout}"));
    assert!(ratio.is_finite() && ratio > 0.0, "{stdout}");
    assert!(
        stderr.contains("postfix queue after the run: Mail queue is empty"),
        "Postfix kept mail queued:\n{stderr}"
    );
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn assert_all_delivered(kv: &HashMap<String, String>, expected: u64) {
    let get = |k: &str| -> u64 {
        kv.get(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k}= line in {kv:?}"))
    };
    assert_eq!(get("expected"), expected);
    // Exactly: nothing lost, nothing delivered twice.
    assert_eq!(get("volley_delivered"), expected, "{kv:?}");
    assert_eq!(get("postfix_delivered"), expected, "{kv:?}");
}

#[test]
fn single_recipient_workload_is_delivered_by_both() {
    let kv = run_script("a", 200);
    assert_all_delivered(&kv, 200);
}

#[test]
fn multi_recipient_workload_counts_recipients() {
    // 3 transactions x 1,000 recipients over 1,000 domains.
    let kv = run_script("b", 3);
    assert_all_delivered(&kv, 3_000);
}
