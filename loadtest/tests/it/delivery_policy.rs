//! Decisions the engine makes before or around the SMTP exchange: domains that take
//! no mail bounce, a required-TLS destination without STARTTLS defers, and a
//! per-domain rate limit spaces deliveries in real time.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::delivery_env::{
    bounded, idle, inject, message, recorded_rcpts, sha256_hex, wait_for, Knobs, World,
};

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_mx_and_nxdomain_bounce() {
    bounded("null_mx_nxdomain", async {
        let mx = Ipv4Addr::new(127, 0, 12, 1);
        let world = World::new(
            "bounce-dns",
            &[mx],
            "nullmx.test. IN MX 0 .\n\
             nomail.test. IN TXT \"v=spf1 -all\"\n\
             ok.test. IN MX 10 mx.ok.test.\nmx.ok.test. IN A 127.0.12.1\n",
        )
        .await;
        let sink = world.sink(mx, &[]);
        let engine = world.engine(&Knobs::default()).await;
        let body = message("dns-bounce", 1_000);
        // One message to four domains: each domain's fate is its own.
        let to = [
            "a@nullmx.test",
            "b@nxdomain.test",
            "c@nomail.test",
            "d@ok.test",
        ];
        inject(&engine, "s@volley.test", &to, &body).await;
        let stats = wait_for(&engine, WAIT, "1 delivered 3 bounced", |s| {
            s.delivered == 1 && s.bounced == 3
        })
        .await;
        assert_eq!(stats.deferred, 0, "{stats:?}");
        idle(&engine, WAIT).await;
        engine.shutdown().await;

        let (_, records) = sink.stop();
        assert_eq!(recorded_rcpts(&records), ["d@ok.test"]);
        let bounced = world.events_of("bounced");
        let find = |r: &str| {
            bounced
                .iter()
                .find(|e| e["recipient"] == r)
                .unwrap_or_else(|| panic!("no bounce for {r}: {bounced:?}"))
                .clone()
        };
        let null = find("a@nullmx.test");
        assert_eq!(null["code"], 556, "{null}");
        assert_eq!(null["enhanced"], "5.1.10", "{null}");
        let nx = find("b@nxdomain.test");
        assert_eq!(nx["code"], 550, "{nx}");
        assert_eq!(nx["enhanced"], "5.1.2", "{nx}");
        let nomail = find("c@nomail.test");
        assert_eq!(nomail["code"], 550, "{nomail}");
        for e in &bounced {
            assert!(
                e["mx_ip"].is_null(),
                "a DNS bounce names no MX address: {e}"
            );
        }
    })
    .await;
}

/// Two TLS-required destinations (selected by `rule`, a TOML selector line for
/// each of `must.test` and `secure.test`) and one without a rule: `must.test`
/// and `relaxed.test` share a plaintext MX, `secure.test` has a STARTTLS MX.
/// With `domain_rules`, relaxed.test must still go in clear.
async fn required_tls_scenario(name: &str, base: u8, rules: [&str; 2], domain_rules: bool) {
    let (plain, tls) = (
        Ipv4Addr::new(127, 0, 12, base),
        Ipv4Addr::new(127, 0, 12, base + 1),
    );
    let world = World::new(
        name,
        &[plain, tls],
        &format!(
            "must.test. IN MX 10 mx.plain.test.\n\
             relaxed.test. IN MX 10 mx.plain.test.\n\
             secure.test. IN MX 10 mx.tls.test.\n\
             mx.plain.test. IN A {plain}\n\
             mx.tls.test. IN A {tls}\n"
        ),
    )
    .await;
    let plain_sink = world.sink(plain, &[]);
    let tls_sink = world.sink(tls, &["--tls"]);
    let knobs = Knobs {
        tail: rules
            .iter()
            .map(|sel| format!("[[shaping.rule]]\n{sel}\ntls = \"required\"\n\n"))
            .collect(),
        ..Knobs::default()
    };
    let engine = world.engine(&knobs).await;
    let body = message("tls", 3_000);
    inject(&engine, "s@volley.test", &["x@must.test"], &body).await;
    inject(&engine, "s@volley.test", &["y@relaxed.test"], &body).await;
    inject(&engine, "s@volley.test", &["z@secure.test"], &body).await;
    // secure.test goes over STARTTLS; must.test is deferred (retried every second
    // and deferred again).
    let stats = wait_for(&engine, WAIT, "secure.test delivered", |s| s.delivered >= 1).await;
    world
        .wait_events(WAIT, "must.test deferred twice (or delivered)", |events| {
            let must: Vec<_> = events
                .iter()
                .filter(|e| e["recipient"] == "x@must.test")
                .collect();
            must.iter().filter(|e| e["event"] == "deferred").count() >= 2
                || must.iter().any(|e| e["event"] == "delivered")
        })
        .await;
    let stats_after = engine.shutdown().await;
    assert_eq!((stats.bounced, stats.expired), (0, 0), "{stats:?}");

    let (_, plain_records) = plain_sink.stop();
    let (_, tls_records) = tls_sink.stop();
    assert!(
        !recorded_rcpts(&plain_records).contains(&"x@must.test".to_string()),
        "must.test (TLS required) was delivered in clear: {plain_records:?}"
    );
    assert_eq!(recorded_rcpts(&tls_records), ["z@secure.test"]);
    assert_eq!(tls_records[0]["tls"], true);
    assert_eq!(tls_records[0]["sha256"], sha256_hex(&body));

    let events = world.events();
    let must: Vec<_> = events
        .iter()
        .filter(|e| e["recipient"] == "x@must.test")
        .collect();
    assert!(must.len() >= 2, "{must:?}");
    assert!(must.iter().all(|e| e["event"] == "deferred"), "{must:?}");
    let secure = events
        .iter()
        .find(|e| e["recipient"] == "z@secure.test")
        .expect("an event for z@secure.test");
    assert_eq!(secure["event"], "delivered");
    assert!(
        secure["tls"].as_str().is_some_and(|v| v.starts_with("TLS")),
        "{secure}"
    );
    assert_eq!(stats_after.bounced, 0, "{stats_after:?}");
    if domain_rules {
        assert_eq!(recorded_rcpts(&plain_records), ["y@relaxed.test"]);
        assert_eq!(plain_records[0]["tls"], false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_tls_by_domain_rule_defers_against_a_plaintext_receiver() {
    // A domain rule may set `tls` (config/volley.toml): it binds that domain only,
    // so relaxed.test on the same MX still goes in clear.
    bounded("tls_required_domain", async {
        required_tls_scenario(
            "tls-domain",
            2,
            ["domain = \"must.test\"", "domain = \"secure.test\""],
            true,
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_tls_by_mx_rule_defers_against_a_plaintext_receiver() {
    // The same policy set for the sites (by MX host suffix); relaxed.test shares
    // must.test's MX and so its policy.
    bounded("tls_required_site", async {
        required_tls_scenario(
            "tls-site",
            5,
            ["mx_suffix = \".plain.test\"", "mx_suffix = \".tls.test\""],
            false,
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_domain_rate_limit_spaces_deliveries() {
    bounded("rate_limit", async {
        const N: usize = 20;
        let mx = Ipv4Addr::new(127, 0, 12, 4);
        let world = World::new(
            "rate",
            &[mx],
            "slow.test. IN MX 10 mx.rate.test.\n\
             fast.test. IN MX 10 mx.rate.test.\n\
             mx.rate.test. IN A 127.0.12.4\n",
        )
        .await;
        let sink = world.sink(mx, &[]);
        let knobs = Knobs {
            tail: "[[shaping.rule]]\ndomain = \"slow.test\"\nmax_message_rate = \"5/s\"\n".into(),
            ..Knobs::default()
        };
        let engine = world.engine(&knobs).await;
        let body = message("rate", 1_000);
        let start = Instant::now();
        for i in 0..N {
            inject(
                &engine,
                "s@volley.test",
                &[&format!("s{i}@slow.test")],
                &body,
            )
            .await;
        }
        // The unlimited domain on the same site is not held up behind the limit.
        inject(&engine, "s@volley.test", &["f@fast.test"], &body).await;
        wait_for(&engine, WAIT, "fast.test delivered", |s| s.delivered >= 1).await;
        let fast_done = start.elapsed();
        wait_for(&engine, WAIT, "all delivered", |s| {
            s.delivered == N as u64 + 1
        })
        .await;
        let took = start.elapsed();
        idle(&engine, WAIT).await;
        engine.shutdown().await;

        // 20 at 5/s with a burst of 1: 19 intervals of 200 ms = 3.8 s; allow slack
        // below for timer granularity, none needed above (a busy machine is slower).
        assert!(
            took >= Duration::from_millis(3_000),
            "{N} messages at 5/s took {took:?}"
        );
        assert!(
            fast_done < took,
            "fast.test ({fast_done:?}) waited for slow.test ({took:?})"
        );
        let (_, records) = sink.stop();
        assert_eq!(records.len(), N + 1);
        let delivered = world.events_of("delivered");
        let mut ts: Vec<String> = delivered
            .iter()
            .filter(|e| e["domain"] == "slow.test")
            .map(|e| e["ts"].as_str().unwrap().to_string())
            .collect();
        ts.sort();
        assert_eq!(ts.len(), N);
        let span = parse_ms(&ts[N - 1]) - parse_ms(&ts[0]);
        assert!(
            span >= 2_800,
            "slow.test deliveries spread over {span} ms only"
        );
    })
    .await;
}

/// Milliseconds of the day of an RFC 3339 `...THH:MM:SS.mmmZ` stamp (tests run
/// well inside one day; good enough for spans of seconds).
fn parse_ms(ts: &str) -> i64 {
    let time = ts.split('T').nth(1).expect("RFC 3339 time");
    let time = time.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: i64 = parts.next().unwrap().parse().unwrap();
    let m: i64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().parse().unwrap();
    (h * 3600 + m * 60) * 1000 + (s * 1000.0).round() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_still_deferred_at_the_end_of_its_lifetime_expires() {
    bounded("expiry", async {
        let mx = Ipv4Addr::new(127, 0, 12, 8);
        let world = World::new(
            "expiry",
            &[mx],
            "late.test. IN MX 10 mx.late.test.\nmx.late.test. IN A 127.0.12.8\n",
        )
        .await;
        let sink = world.sink(mx, &[]);
        let knobs = Knobs {
            lifetime: "3s",
            ..Knobs::default()
        };
        let engine = world.engine(&knobs).await;
        let body = message("expiry", 1_000);
        // 451 every time: deferred each second until the lifetime ends.
        inject(
            &engine,
            "s@volley.test",
            &["451@late.test", "ok@late.test"],
            &body,
        )
        .await;
        let stats = wait_for(&engine, WAIT, "1 delivered, 1 expired", |s| {
            s.delivered == 1 && s.expired == 1
        })
        .await;
        assert!(stats.deferred >= 1, "{stats:?}");
        assert_eq!(stats.bounced, 0, "{stats:?}");
        idle(&engine, WAIT).await;
        engine.shutdown().await;
        let (_, records) = sink.stop();
        assert_eq!(recorded_rcpts(&records), ["ok@late.test"]);
        let expired = world.events_of("expired");
        assert_eq!(expired.len(), 1, "{expired:?}");
        assert_eq!(expired[0]["recipient"], "451@late.test");
        // "attempt" is the attempts made; the reply is the last one received.
        assert!(
            expired[0]["attempt"].as_u64().unwrap() >= 1,
            "{}",
            expired[0]
        );
        assert_eq!(expired[0]["code"], 451, "{}", expired[0]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_site_rate_limit_is_shared_by_its_domains() {
    bounded("site_rate_limit", async {
        const N: usize = 20;
        let mx = Ipv4Addr::new(127, 0, 12, 9);
        let world = World::new(
            "site-rate",
            &[mx],
            "left.test. IN MX 10 mx.ratesite.test.\n\
             right.test. IN MX 10 mx.ratesite.test.\n\
             mx.ratesite.test. IN A 127.0.12.9\n",
        )
        .await;
        let sink = world.sink(mx, &[]);
        let knobs = Knobs {
            tail: "[[shaping.rule]]\nmx_suffix = \".ratesite.test\"\nmax_message_rate = \"10/s\"\n"
                .into(),
            ..Knobs::default()
        };
        let engine = world.engine(&knobs).await;
        let body = message("site-rate", 1_000);
        let start = Instant::now();
        for i in 0..N {
            let domain = if i % 2 == 0 {
                "left.test"
            } else {
                "right.test"
            };
            inject(
                &engine,
                "s@volley.test",
                &[&format!("r{i}@{domain}")],
                &body,
            )
            .await;
        }
        wait_for(&engine, WAIT, "all delivered", |s| s.delivered == N as u64).await;
        let took = start.elapsed();
        idle(&engine, WAIT).await;
        engine.shutdown().await;
        // 20 at 10/s for the site as a whole (not 10/s per domain): 19 intervals of
        // 100 ms = 1.9 s; per-domain limits would finish in about half that.
        assert!(
            took >= Duration::from_millis(1_500),
            "{N} messages at 10/s took {took:?}"
        );
        let (_, records) = sink.stop();
        assert_eq!(records.len(), N);
    })
    .await;
}
