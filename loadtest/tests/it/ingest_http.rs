//! End to end through the HTTP API: `curl` -> `HttpServer` -> RocksDB spool ->
//! delivery -> `volley-load sink --record`. The sinks' records show that every
//! recipient the API reported accepted arrived exactly once, with its own
//! personalised body (SHA-256 of the bytes on the wire against the composer's
//! output), and that static content for many recipients of one domain went as one
//! transaction with many RCPTs.
//!
//! MX hosts: 127.0.15.x (see `delivery_env` for the other suites' ranges).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use volley::config::Config;
use volley::delivery::EngineHandle;
use volley::ingest::compose::{ComposeLimits, Composer, MessageTemplate, RecipientSpec};
use volley::ingest::http::HttpServer;
use volley::ingest::Health;
use volley::spool::RocksSpool;

use crate::delivery_env::{bounded, idle, sha256_hex, wait_for, Knobs, World};

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "e2e-token-5f2b9c0a";

/// A raw template with a fixed Date and Message-ID, so the composer's output is
/// the same in the server and in the test.
const PERSONAL: &str = "From: News <news@volley.test>\nTo: {{ name }} <{{ email }}>\n\
    Subject: For {{ name }}\nDate: Mon, 23 Nov 2026 07:00:00 +0000\n\
    Message-ID: <{{ code }}@volley.test>\n\nDear {{ name }},\n.your code is {{ code }}.\n";
const STATIC: &str = "From: News <news@volley.test>\nTo: Subscribers <list@volley.test>\n\
    Subject: The same for everyone\nDate: Mon, 23 Nov 2026 07:00:00 +0000\n\
    Message-ID: <static-1@volley.test>\n\nHello all.\n.A line with a leading dot.\n";

/// `[http]`, `[smtp]` and one tenant, appended to the world's configuration.
fn api_tail(campaign_message_recipients: usize) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\ncampaign_message_recipients = {campaign_message_recipients}\n\
         [smtp]\nhostname = \"volley.test\"\n\
         [[tenant]]\nname = \"e2e\"\napi_tokens = [\"{}\"]\n",
        sha256_hex(TOKEN.as_bytes())
    )
}

/// The engine on a RocksDB spool in the world's directory, and the HTTP API.
async fn start(world: &World, knobs: &Knobs) -> (Config, EngineHandle, HttpServer) {
    let text = world.config_text(knobs);
    let config = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let spool = RocksSpool::open(world.dir.0.join("spool"), config.spool.options())
        .expect("rocks spool opens");
    let engine = world.engine_on(knobs, Arc::new(spool)).await;
    let health = Health::new();
    let server = HttpServer::start(&config, engine.clone(), health.clone())
        .await
        .expect("http server starts");
    health.set(true);
    (config, engine, server)
}

fn limits(config: &Config) -> ComposeLimits {
    ComposeLimits {
        max_recipients: config.http.max_recipients,
        max_message_size: config.smtp.max_message_size.as_usize(),
        hostname: config.smtp.hostname(),
    }
}

/// POSTs with curl (a real HTTP client); `body_file` is streamed (`-T`).
fn curl_post(
    server: &HttpServer,
    path: &str,
    content_type: &str,
    body_file: &Path,
) -> (u16, Value) {
    let url = format!("http://{}{path}", server.local_addr());
    let out = tokio::task::block_in_place(|| {
        Command::new("curl")
            .args(["-sS", "--max-time", "60", "-X", "POST", "-H", "Expect:"])
            .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
            .args(["-H", &format!("Content-Type: {content_type}")])
            .args(["-w", "\n%{http_code}", "-T"])
            .arg(body_file)
            .arg(&url)
            .stderr(Stdio::inherit())
            .output()
            .expect("run curl")
    });
    assert!(out.status.success(), "curl: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, status) = text.rsplit_once('\n').expect("status line");
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status.trim().parse().expect("status"), json)
}

fn write_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    path
}

/// Every (recipient, sha256) the records show, and the recipients per record.
fn arrivals(records: &[Value]) -> (Vec<(String, String)>, Vec<usize>) {
    let mut out = Vec::new();
    let mut per_record = Vec::new();
    for r in records {
        let rcpts = r["rcpts"].as_array().cloned().unwrap_or_default();
        per_record.push(rcpts.len());
        for rc in rcpts {
            out.push((
                rc.as_str().unwrap_or_default().to_string(),
                r["sha256"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    (out, per_record)
}

/// Asserts that each expected recipient arrived exactly once with its body.
fn assert_exactly_once(arrived: &[(String, String)], expected: &BTreeMap<String, String>) {
    let mut seen = BTreeSet::new();
    for (rcpt, sha) in arrived {
        assert!(seen.insert(rcpt.clone()), "{rcpt} arrived twice");
        let want = expected
            .get(rcpt)
            .unwrap_or_else(|| panic!("{rcpt} arrived but was never accepted"));
        assert_eq!(sha, want, "{rcpt} got the wrong body");
    }
    let missing: Vec<_> = expected.keys().filter(|r| !seen.contains(*r)).collect();
    assert!(missing.is_empty(), "never arrived: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_personal_and_static_content_arrives_exactly_once() {
    bounded("ingest_http_inject", async {
        let mx = Ipv4Addr::new(127, 0, 15, 1);
        let world = World::new(
            "ingest_http_inject",
            &[mx],
            "p.test. IN MX 10 mx.e2e.test.\ns.test. IN MX 10 mx.e2e.test.\n\
             mx.e2e.test. IN A 127.0.15.1\n",
        )
        .await;
        let sink = world.sink(mx, &[]);
        let knobs = Knobs {
            shaping_default: "max_recipients_per_transaction = 100".into(),
            tail: api_tail(1000),
            ..Knobs::default()
        };
        let (config, engine, server) = start(&world, &knobs).await;

        // Personalised: 20 recipients, 20 bodies.
        let personal: Vec<RecipientSpec> = (0..20)
            .map(|i| RecipientSpec {
                email: format!("r{i}@p.test"),
                name: Some(format!("Reader {i}")),
                substitutions: json!({"code": format!("C{i:03}")})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                metadata: Default::default(),
            })
            .collect();
        let req = json!({
            "envelope_sender": "bounces@volley.test",
            "content": PERSONAL,
            "recipients": personal,
        });
        let file = write_file(&world.dir.0, "personal.json", &req.to_string());
        let (status, answer) = curl_post(&server, "/api/v1/messages", "application/json", &file);
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["success_count"], 20, "{answer}");
        let template: MessageTemplate = serde_json::from_value(json!({
            "envelope_sender": "bounces@volley.test",
            "content": PERSONAL,
        }))
        .unwrap();
        let composer = Composer::new(&template, &limits(&config)).expect("composer");
        let mut expected = BTreeMap::new();
        for (i, spec) in personal.iter().enumerate() {
            let body = composer.render(i, spec).expect("renders").body;
            expected.insert(spec.email.clone(), sha256_hex(&body));
        }
        let distinct: BTreeSet<_> = expected.values().collect();
        assert_eq!(distinct.len(), 20, "every body is personal");

        // Static: 50 recipients of one domain share one message.
        let rcpts: Vec<Value> = (0..50)
            .map(|i| json!({"email": format!("s{i}@s.test")}))
            .collect();
        let req = json!({
            "envelope_sender": "bounces@volley.test",
            "content": STATIC,
            "recipients": rcpts,
            "campaign_id": "static",
        });
        let file = write_file(&world.dir.0, "static.json", &req.to_string());
        let (status, answer) = curl_post(&server, "/api/inject/v1", "application/json", &file);
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["success_count"], 50, "{answer}");
        let ids: BTreeSet<&str> = answer["accepted"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["message_id"].as_str())
            .collect();
        assert_eq!(ids.len(), 1, "static content is one message: {answer}");
        let static_template: MessageTemplate = serde_json::from_value(json!({
            "envelope_sender": "bounces@volley.test",
            "content": STATIC,
        }))
        .unwrap();
        let static_sha = sha256_hex(
            &Composer::new(&static_template, &limits(&config))
                .unwrap()
                .render(
                    0,
                    &RecipientSpec {
                        email: "x@s.test".into(),
                        ..Default::default()
                    },
                )
                .unwrap()
                .body,
        );
        for i in 0..50 {
            expected.insert(format!("s{i}@s.test"), static_sha.clone());
        }

        wait_for(&engine, WAIT, "70 delivered", |s| s.delivered == 70).await;
        idle(&engine, WAIT).await;
        server.shutdown().await;
        let stats = engine.shutdown().await;
        assert_eq!((stats.bounced, stats.expired), (0, 0), "{stats:?}");

        let (_summary, records) = sink.stop();
        let (arrived, per_record) = arrivals(&records);
        assert_exactly_once(&arrived, &expected);
        let static_records: Vec<&Value> = records
            .iter()
            .filter(|r| {
                r["rcpts"][0]
                    .as_str()
                    .is_some_and(|a| a.ends_with("@s.test"))
            })
            .collect();
        assert_eq!(
            static_records.len(),
            1,
            "one transaction for 50 RCPTs: {per_record:?}"
        );
        assert_eq!(
            static_records[0]["rcpts"].as_array().map(Vec::len),
            Some(50)
        );
        assert_eq!(static_records[0]["mail_from"], "bounces@volley.test");
        eprintln!("recipients per transaction: {per_record:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_campaigns_over_thirty_domains_arrive_exactly_once() {
    bounded("ingest_http_campaign", async {
        const DOMAINS: usize = 30;
        let mx_a = Ipv4Addr::new(127, 0, 15, 2);
        let mx_b = Ipv4Addr::new(127, 0, 15, 3);
        let mut zone =
            String::from("mxa.e2e.test. IN A 127.0.15.2\nmxb.e2e.test. IN A 127.0.15.3\n");
        for d in 0..DOMAINS {
            let mx = if d % 2 == 0 { "mxa" } else { "mxb" };
            zone.push_str(&format!("d{d}.test. IN MX 10 {mx}.e2e.test.\n"));
        }
        let world = World::new("ingest_http_campaign", &[mx_a, mx_b], &zone).await;
        let sink_a = world.sink(mx_a, &[]);
        let sink_b = world.sink(mx_b, &[]);
        let knobs = Knobs {
            shaping_default: "max_recipients_per_transaction = 100".into(),
            tail: api_tail(100),
            ..Knobs::default()
        };
        let (config, engine, server) = start(&world, &knobs).await;
        let mut expected = BTreeMap::new();

        // Personalised: 2,000 recipients, a few bad lines among them.
        let template = json!({
            "envelope_sender": "bounces@volley.test",
            "campaign_id": "personal",
            "content": PERSONAL,
        });
        let parsed: MessageTemplate = serde_json::from_value(template.clone()).unwrap();
        let composer = Composer::new(&parsed, &limits(&config)).unwrap();
        let mut text = format!("{template}\n");
        for i in 0..2000 {
            let spec = RecipientSpec {
                email: format!("p{i}@d{}.test", i % DOMAINS),
                name: Some(format!("P {i}")),
                substitutions: json!({"code": format!("K{i}")})
                    .as_object()
                    .cloned()
                    .unwrap(),
                metadata: Default::default(),
            };
            text.push_str(&serde_json::to_string(&spec).unwrap());
            text.push('\n');
            expected.insert(
                spec.email.clone(),
                sha256_hex(&composer.render(i, &spec).unwrap().body),
            );
            if i % 700 == 0 {
                text.push_str("{\"email\": \"half a line\n");
            }
        }
        let file = write_file(&world.dir.0, "personal.ndjson", &text);
        let (status, answer) =
            curl_post(&server, "/api/v1/campaigns", "application/x-ndjson", &file);
        assert_eq!(status, 202, "{answer}");
        assert_eq!(
            (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
            (Some(2000), Some(3)),
            "{answer}"
        );
        assert_eq!(answer["messages"], 2000, "{answer}");

        // Static: 1,500 recipients grouped 100 a message across the domains.
        let template = json!({
            "envelope_sender": "bounces@volley.test",
            "campaign_id": "static",
            "content": STATIC,
        });
        let parsed: MessageTemplate = serde_json::from_value(template.clone()).unwrap();
        let static_sha = sha256_hex(
            &Composer::new(&parsed, &limits(&config))
                .unwrap()
                .render(
                    0,
                    &RecipientSpec {
                        email: "x@d0.test".into(),
                        ..Default::default()
                    },
                )
                .unwrap()
                .body,
        );
        let mut text = format!("{template}\n");
        for i in 0..1500 {
            let email = format!("s{i}@d{}.test", i % DOMAINS);
            text.push_str(&json!({"email": email}).to_string());
            text.push('\n');
            expected.insert(email, static_sha.clone());
        }
        let file = write_file(&world.dir.0, "static.ndjson", &text);
        let (status, answer) =
            curl_post(&server, "/api/v1/campaigns", "application/x-ndjson", &file);
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["accepted"], 1500, "{answer}");
        assert_eq!(answer["messages"], 15, "{answer}");

        wait_for(&engine, WAIT, "3500 delivered", |s| s.delivered == 3500).await;
        idle(&engine, WAIT).await;
        server.shutdown().await;
        let stats = engine.shutdown().await;
        assert_eq!((stats.bounced, stats.expired), (0, 0), "{stats:?}");

        let (_, records_a) = sink_a.stop();
        let (_, records_b) = sink_b.stop();
        let mut records = records_a;
        records.extend(records_b);
        let (arrived, per_record) = arrivals(&records);
        assert_exactly_once(&arrived, &expected);
        // A static message of 100 recipients over 30 domains: 3 or 4 per domain.
        let multi = per_record.iter().filter(|n| **n > 1).count();
        assert!(
            multi > 0,
            "static recipients share transactions: {per_record:?}"
        );
        for r in &records {
            let rcpts = r["rcpts"].as_array().unwrap();
            let domains: BTreeSet<&str> = rcpts
                .iter()
                .filter_map(|a| a.as_str()?.split_once('@').map(|(_, d)| d))
                .collect();
            assert_eq!(domains.len(), 1, "one domain per transaction: {r}");
        }
    })
    .await;
}
