//! `volley send` against a real `volley serve` process: CSV and NDJSON lists are
//! delivered to loopback sinks; bad files, a bad token and a server that is down
//! give clear errors and the documented exit codes.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::cli_util::{temp_dir, volley, Serve, World};

const TOKEN: &str = "vly_send-test-token-0123456789";

fn token_hash() -> String {
    Sha256::digest(TOKEN.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn config(dir: &Path, world: &World) -> PathBuf {
    let text = format!(
        "[spool]\npath = \"{d}/spool\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [dns]\nnameservers = [\"{dns}\"]\n\
         [delivery]\nsmtp_port = {port}\ntls = \"disabled\"\nretry_schedule = [\"1s\"]\n\
         [log]\ndelivery = \"{d}/delivery.jsonl\"\n\
         [[tenant]]\nname = \"acme\"\napi_tokens = [\"{hash}\"]\n",
        d = dir.display(),
        dns = world.dns.addr(),
        port = world.smtp_port(),
        hash = token_hash(),
    );
    write(dir, "volley.toml", &text)
}

fn send(server: &str, args: &[&str]) -> Output {
    volley()
        .args(["send", "--server", server, "--from", "news@sender.test"])
        .args(args)
        .env_remove("VOLLEY_TOKEN")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn csv_and_ndjson_lists_are_delivered() {
    let world = World::start();
    let dir = temp_dir("send");
    let serve = Serve::start(&config(&dir, &world));
    let server = format!("http://{}", serve.http);

    let mut csv = String::from("email,name,city\n");
    for i in 0..30 {
        let d = if i % 2 == 0 { "one.test" } else { "two.test" };
        csv.push_str(&format!("user{i}@{d},User {i},\"Town, {i}\"\n"));
    }
    let csv = write(&dir, "list.csv", &csv);
    let text = write(&dir, "body.txt", "Hello {{ name }} from {{ city }}.\n");
    let out = send(
        &server,
        &[
            "--token",
            TOKEN,
            "--recipients",
            csv.to_str().unwrap(),
            "--subject",
            "Hi {{ name }}",
            "--text",
            text.to_str().unwrap(),
            "--campaign",
            "spring",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["accepted"], 30, "{v}");
    assert_eq!(v["rejected"], 0, "{v}");
    assert_eq!(v["campaign_id"], "spring");
    assert!(v["status_url"]
        .as_str()
        .unwrap()
        .ends_with("/api/v1/campaigns/spring"));
    world.wait_recipients(30);

    let mut nd = String::new();
    for i in 0..20 {
        nd.push_str(&format!(
            "{{\"email\":\"nd{i}@two.test\",\"substitutions\":{{\"n\":{i}}}}}\n"
        ));
        if i == 10 {
            nd.push('\n'); // blank lines are skipped
        }
    }
    let nd = write(&dir, "list.ndjson", &nd);
    let eml = write(
        &dir,
        "template.eml",
        "From: news@sender.test\nSubject: Number {{ n }}\n\nYou are number {{ n }}.\n",
    );
    let out = volley()
        .args(["send", "--server", &server, "--from", "news@sender.test"])
        .args([
            "--recipients",
            nd.to_str().unwrap(),
            "--message",
            eml.to_str().unwrap(),
        ])
        .env("VOLLEY_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("20 accepted"), "{summary}");
    assert!(summary.contains("/api/v1/campaigns/send-"), "{summary}");
    world.wait_recipients(50);

    assert_eq!(serve.stop(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_input_gives_clear_errors_and_exit_codes() {
    let world = World::start();
    let dir = temp_dir("send-bad");
    let serve = Serve::start(&config(&dir, &world));
    let server = format!("http://{}", serve.http);
    let text = write(&dir, "body.txt", "Hello.\n");
    let good = write(&dir, "good.csv", "email\na@one.test\n");
    let t = text.to_str().unwrap();
    let run = |list: &Path, extra: &[&str]| {
        let mut args = vec!["--token", TOKEN, "--recipients", list.to_str().unwrap()];
        args.extend_from_slice(&["--subject", "S", "--text", t]);
        args.extend_from_slice(extra);
        send(&server, &args)
    };
    let expect = |o: Output, code: i32, needle: &str| {
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{e}");
        assert!(e.contains(needle), "expected {needle:?} in {e}");
    };

    expect(
        run(&dir.join("missing.csv"), &[]),
        2,
        "missing.csv: cannot open",
    );
    let no_email = write(&dir, "no_email.csv", "name,mail\nA,a@one.test\n");
    expect(
        run(&no_email, &[]),
        2,
        "no_email.csv:1: the header row has no `email` column",
    );
    let short = write(&dir, "short.csv", "email,name\na@one.test,A\nb@one.test\n");
    expect(run(&short, &[]), 2, "short.csv:3: 1 fields");
    let bad_nd = write(&dir, "bad.ndjson", "{\"email\":\"a@one.test\"}\n\n{oops\n");
    expect(run(&bad_nd, &[]), 2, "bad.ndjson:3: not a JSON object");
    let empty = write(&dir, "empty.csv", "email,name\n");
    expect(run(&empty, &[]), 2, "the list has no recipients");
    let o = send(
        &server,
        &[
            "--token",
            TOKEN,
            "--recipients",
            good.to_str().unwrap(),
            "--message",
            "/nonexistent/t.eml",
        ],
    );
    expect(o, 2, "--message /nonexistent/t.eml: cannot read");
    let o = send(
        &server,
        &[
            "--recipients",
            good.to_str().unwrap(),
            "--subject",
            "S",
            "--text",
            t,
        ],
    );
    expect(o, 2, "no API token");
    let o = send(
        &server,
        &[
            "--token",
            "wrong-token",
            "--recipients",
            good.to_str().unwrap(),
            "--subject",
            "S",
            "--text",
            t,
        ],
    );
    expect(o, 2, "401");
    expect(
        run(&good, &["--substitutions", "[1]"]),
        2,
        "--substitutions",
    );
    let unknown = write(&dir, "list.txt", "email\na@one.test\n");
    expect(run(&unknown, &[]), 2, "--format");

    // Nothing was sent by any of those.
    assert_eq!(world.sink.stats().recipients, 0);
    assert_eq!(serve.stop(), Some(0));

    // The server is gone now.
    expect(run(&good, &[]), 1, "cannot reach");
    let _ = std::fs::remove_dir_all(dir);
}
