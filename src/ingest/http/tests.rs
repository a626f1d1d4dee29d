//! The route table against the OpenAPI document, and the router's JSON answers
//! for what axum would otherwise answer in plain text (through a real socket).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use super::auth::hash_token;
use super::*;
use crate::config::Config;
use crate::delivery::Engine;
use crate::queue::SystemClock;
use crate::spool::memory::{MemorySpool, MemorySpoolConfig};

const OPENAPI: &str = include_str!("../../../docs/openapi.yaml");

/// (METHOD, path) of every operation under `paths:` in the document. The document
/// is hand-written with a fixed layout: paths at two spaces, methods at four.
fn documented_routes(doc: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut in_paths = false;
    let mut path: Option<String> = None;
    for line in doc.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_paths = line.trim_end() == "paths:";
            path = None;
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /") {
            path = Some(format!("/{}", p.trim_end().trim_end_matches(':')));
        } else if let (Some(p), Some(m)) = (&path, line.strip_prefix("    ")) {
            let m = m.trim_end();
            if let Some(method) = m.strip_suffix(':') {
                if ["get", "post", "put", "patch", "delete", "head", "options"].contains(&method) {
                    out.insert((method.to_ascii_uppercase(), p.clone()));
                }
            }
        }
    }
    out
}

#[test]
fn openapi_document_lists_exactly_the_served_routes() {
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(served.len(), ROUTES.len(), "a route is listed twice");
    let documented = documented_routes(OPENAPI);
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "served but not documented: {missing:?}; documented but not served: {extra:?}"
    );
}

#[test]
fn openapi_document_states_each_routes_access() {
    // Admin routes document 403, public ones opt out of the bearer scheme, and
    // every authenticated one documents 401.
    let doc = OPENAPI;
    for r in ROUTES {
        let start = doc
            .find(&format!("\n  {}:\n", r.path))
            .unwrap_or_else(|| panic!("{} not in the document", r.path));
        let rest = &doc[start + 1..];
        let end = rest[3..]
            .find("\n  /")
            .map(|i| i + 3)
            .or_else(|| rest.find("\ncomponents:"))
            .unwrap_or(rest.len());
        let section = &rest[..end];
        match r.access {
            Access::Public => assert!(section.contains("security: []"), "{}", r.path),
            Access::Tenant => assert!(section.contains("\"401\""), "{}", r.path),
            Access::Admin => {
                assert!(
                    section.contains("\"401\"") && section.contains("\"403\""),
                    "{}",
                    r.path
                )
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_in_the_table_reaches_its_handler() {
    // Without a token, every authenticated route answers 401 from its handler's
    // extractor; a route bound to the wrong method would answer 405, a missing
    // one 404.
    let config = config("127.0.0.1:0", "4KiB");
    let engine = Engine::start(
        &config,
        Arc::new(MemorySpool::default()),
        Arc::new(SystemClock),
    )
    .await
    .expect("engine");
    let (addr, task) = serve(ApiState::new(&config, engine.clone(), Health::new())).await;
    for r in ROUTES {
        let path = r
            .path
            .replace("{id}", &"0".repeat(32))
            .replace("{domain}", "x.test");
        let (status, _, body) = exchange(addr, request(r.method, &path, &[], "")).await;
        let want = match r.access {
            Access::Public => 503,
            Access::Tenant | Access::Admin => 401,
        };
        assert_eq!(status, want, "{r:?}: {body}");
    }
    task.abort();
    engine.shutdown().await;
}

fn config(listen: &str, max_body: &str) -> Config {
    Config::from_toml_str(&format!(
        r#"
[http]
listen = "{listen}"
max_body = "{max_body}"
[dns]
nameservers = ["127.0.0.1:9"]
[[tenant]]
name = "acme"
api_tokens = ["{acme}"]
[[tenant]]
name = "ops"
admin = true
api_tokens = ["{ops}"]
"#,
        acme = hash_token("acme-secret"),
        ops = hash_token("ops-secret"),
    ))
    .expect("test config")
}

/// A plain HTTP/1.1 exchange over a TCP socket: (status, headers, JSON body).
async fn exchange(addr: std::net::SocketAddr, raw: String) -> (u16, String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    let json = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
    (status, head.to_ascii_lowercase(), json)
}

fn request(method: &str, path: &str, headers: &[&str], body: &str) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_rejections_are_json_with_stable_codes() {
    let config = config("127.0.0.1:0", "4KiB");
    let engine = Engine::start(
        &config,
        Arc::new(MemorySpool::default()),
        Arc::new(SystemClock),
    )
    .await
    .expect("engine");
    let health = Health::new();
    let server = HttpServer::start(&config, engine.clone(), health.clone())
        .await
        .expect("server");
    let addr = server.local_addr();
    let acme = "Authorization: Bearer acme-secret";
    let json = "Content-Type: application/json";

    let (status, head, body) = exchange(addr, request("GET", "/health", &[], "")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("starting")),
        "{body}"
    );
    assert!(head.contains("retry-after:"), "{head}");
    health.set(true);
    let (status, _, body) = exchange(addr, request("GET", "/health", &[], "")).await;
    assert_eq!((status, &body), (200, &serde_json::json!({"status": "ok"})));

    let cases: Vec<(String, u16, &str)> = vec![
        (request("GET", "/nope", &[], ""), 404, "not_found"),
        (
            request("GET", "/api/v1/messages", &[acme], ""),
            405,
            "method_not_allowed",
        ),
        (
            request("DELETE", "/health", &[], ""),
            405,
            "method_not_allowed",
        ),
        (
            request("POST", "/api/v1/messages", &[json], "{}"),
            401,
            "unauthorized",
        ),
        (
            request(
                "POST",
                "/api/v1/messages",
                &["Authorization: Bearer wrong", json],
                "{}",
            ),
            401,
            "unauthorized",
        ),
        (
            request("POST", "/api/v1/messages", &[acme, json], "{not json"),
            400,
            "bad_json",
        ),
        (
            request(
                "POST",
                "/api/v1/messages",
                &[acme, json],
                r#"{"recipients": []}"#,
            ),
            400,
            "bad_json",
        ),
        (
            request(
                "POST",
                "/api/v1/messages",
                &[acme, "Content-Type: text/plain"],
                "{}",
            ),
            415,
            "unsupported_media_type",
        ),
        (
            request("POST", "/api/v1/messages", &[acme], "{}"),
            415,
            "unsupported_media_type",
        ),
        (
            request("POST", "/api/v1/messages", &[acme, json], &"x".repeat(5000)),
            413,
            "payload_too_large",
        ),
        (
            request("GET", "/api/v1/messages/xyz", &[acme], ""),
            400,
            "bad_id",
        ),
        (
            request(
                "GET",
                &format!("/api/v1/messages/{}", "0".repeat(32)),
                &[acme],
                "",
            ),
            404,
            "not_found",
        ),
        (
            request("GET", "/api/v1/queue", &[acme], ""),
            403,
            "forbidden",
        ),
        (
            request(
                "GET",
                "/api/v1/queue?limit=0",
                &["Authorization: Bearer ops-secret"],
                "",
            ),
            400,
            "bad_query",
        ),
        (
            request(
                "GET",
                "/api/v1/queue?bogus=1",
                &["Authorization: Bearer ops-secret"],
                "",
            ),
            400,
            "bad_query",
        ),
        (
            request("POST", "/api/v1/domains/x.test/suspend", &[acme], ""),
            403,
            "forbidden",
        ),
        (
            request("POST", "/api/v1/campaigns", &[acme, json], "{}\n"),
            415,
            "unsupported_media_type",
        ),
        (
            request(
                "POST",
                "/api/v1/campaigns",
                &[acme, "Content-Type: application/x-ndjson"],
                "",
            ),
            400,
            "missing_template",
        ),
        (
            request("GET", "/api/v1/campaigns/unknown", &[acme], ""),
            404,
            "not_found",
        ),
    ];
    for (raw, want_status, want_code) in cases {
        let first = raw.lines().next().unwrap_or_default().to_string();
        let (status, head, body) = exchange(addr, raw).await;
        assert_eq!(status, want_status, "{first}: {body}");
        assert_eq!(body["code"], want_code, "{first}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{first}: {body}"
        );
        assert!(
            head.contains("content-type: application/json"),
            "{first}: {head}"
        );
        if status == 401 {
            assert!(head.contains("www-authenticate: bearer"), "{first}: {head}");
        }
    }
    server.shutdown().await;
    engine.shutdown().await;
}

/// Serves `state` on a loopback port.
async fn serve(state: ApiState) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router(state)).await;
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_spool_refuses_with_try_again_and_never_reports_accepted() {
    let config = config("127.0.0.1:0", "1MiB");
    // Room for the small messages, never for the big one.
    let spool = Arc::new(MemorySpool::new(MemorySpoolConfig {
        max_bytes: 32 * 1024,
    }));
    let engine = Engine::start(&config, spool.clone(), Arc::new(SystemClock))
        .await
        .expect("engine");
    let short = store::Retry {
        first: std::time::Duration::from_millis(5),
        max: std::time::Duration::from_millis(20),
        budget: std::time::Duration::from_millis(150),
    };
    let state = ApiState::with_retry(&config, engine.clone(), Health::new(), short, short);
    let (addr, task) = serve(state).await;
    let acme = "Authorization: Bearer acme-secret";
    let json = "Content-Type: application/json";
    let ndjson = "Content-Type: application/x-ndjson";
    let big = vec!["y".repeat(70); 600].join("\n");
    let body = serde_json::json!({
        "envelope_sender": "s@volley.test",
        "content": "From: <s@volley.test>\nSubject: x\n\n{{ pad }}\n",
        "recipients": [
            {"email": "a@a.test", "substitutions": {"pad": "small"}},
            {"email": "b@a.test", "substitutions": {"pad": big}},
            {"email": "c@a.test"},
        ],
    })
    .to_string();

    // Some messages refused: those recipients are try_again, the rest accepted.
    let (status, _, r) = exchange(
        addr,
        request("POST", "/api/v1/messages", &[acme, json], &body),
    )
    .await;
    assert_eq!(status, 202, "{r}");
    assert_eq!(r["success_count"], 2, "{r}");
    assert_eq!(r["rejected"][0]["index"], 1, "{r}");
    assert_eq!(r["rejected"][0]["code"], "try_again", "{r}");
    assert_eq!(
        r["failed_recipients"],
        serde_json::json!(["b@a.test"]),
        "{r}"
    );

    // Nothing stored: 503 spool_busy with Retry-After, every recipient try_again.
    spool.set_fail_writes(true);
    let (status, head, r) = exchange(
        addr,
        request("POST", "/api/v1/messages", &[acme, json], &body),
    )
    .await;
    assert_eq!(
        (status, r["code"].as_str()),
        (503, Some("spool_busy")),
        "{r}"
    );
    assert!(head.contains("retry-after: "), "{head}");
    assert_eq!(r["success_count"], 0, "{r}");
    assert_eq!(r["accepted"], serde_json::json!([]), "{r}");
    assert!(
        r["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["code"] == "try_again"),
        "{r}"
    );

    let stream = "{\"envelope_sender\": \"s@volley.test\", \"campaign_id\": \"busy\", \
        \"content\": \"From: <s@volley.test>\\nSubject: x\\n\\nHi {{ email }}\\n\"}\n\
        {\"email\": \"a@a.test\"}\n{\"email\": \"b@a.test\"}\n{\"email\": \"c@a.test\"}\n";
    let (status, head, r) = exchange(
        addr,
        request("POST", "/api/v1/campaigns", &[acme, ndjson], stream),
    )
    .await;
    assert_eq!(
        (status, r["code"].as_str()),
        (503, Some("spool_busy")),
        "{r}"
    );
    assert!(head.contains("retry-after: "), "{head}");
    assert_eq!(
        (r["accepted"].as_u64(), r["rejected"].as_u64()),
        (Some(0), Some(3)),
        "{r}"
    );
    let lines: Vec<u64> = r["rejected_samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            assert_eq!(x["code"], "try_again", "{r}");
            x["line"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(lines, [2, 3, 4], "{r}");
    let (_, _, r) = exchange(addr, request("GET", "/api/v1/campaigns/busy", &[acme], "")).await;
    assert_eq!(r["ingest"]["accepted"], 0, "{r}");
    assert_eq!(r["ingest"]["rejected"], 3, "{r}");
    assert_eq!(r["ingest"]["done"], true, "{r}");

    // The spool recovers: accepted again.
    spool.set_fail_writes(false);
    let (status, _, r) = exchange(
        addr,
        request("POST", "/api/v1/campaigns", &[acme, ndjson], stream),
    )
    .await;
    assert_eq!((status, r["accepted"].as_u64()), (202, Some(3)), "{r}");
    task.abort();
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_vanishing_mid_stream_leaves_a_finished_consistent_campaign() {
    use tokio::io::AsyncWriteExt;
    let config = config("127.0.0.1:0", "1MiB");
    let engine = Engine::start(
        &config,
        Arc::new(MemorySpool::default()),
        Arc::new(SystemClock),
    )
    .await
    .expect("engine");
    let (addr, task) = serve(ApiState::new(&config, engine.clone(), Health::new())).await;
    let mut lines = String::from(
        "{\"envelope_sender\": \"s@volley.test\", \"campaign_id\": \"cut\", \
         \"content\": \"From: <s@volley.test>\\nSubject: x\\n\\nHi {{ email }}\\n\"}\n",
    );
    for i in 0..5 {
        lines.push_str(&format!("{{\"email\": \"r{i}@a.test\"}}\n"));
    }
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = "POST /api/v1/campaigns HTTP/1.1\r\nHost: t\r\n\
                Authorization: Bearer acme-secret\r\nContent-Type: application/x-ndjson\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(format!("{:x}\r\n{lines}\r\n", lines.len()).as_bytes())
        .await
        .expect("write");
    // Half a recipient line, then the client is gone (no last chunk).
    s.write_all(b"8\r\n{\"email\"\r\n").await.expect("write");
    s.flush().await.expect("flush");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    drop(s);

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let view = loop {
        let (status, _, r) = exchange(
            addr,
            request(
                "GET",
                "/api/v1/campaigns/cut",
                &["Authorization: Bearer acme-secret"],
                "",
            ),
        )
        .await;
        if status == 200 && r["ingest"]["done"] == true {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream never finished: {r}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // What was stored is counted, and the engine has exactly that much.
    let accepted = view["ingest"]["accepted"].as_u64().unwrap();
    assert!(accepted <= 5, "{view}");
    assert_eq!(view["recipients"].as_u64().unwrap_or(0), accepted, "{view}");
    task.abort();
    engine.shutdown().await;
}
