//! The engine delivering to `volley-load sink`: bytes arrive exactly, recipients
//! of one message share a transaction, connections are reused.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::delivery_env::{
    bounded, idle, inject, message, rcpts, recorded_rcpts, sha256_hex, strs, wait_for, Knobs, World,
};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_single_and_multi_recipient_messages_byte_exact() {
    bounded("single_and_multi", async {
        let mx = Ipv4Addr::new(127, 0, 10, 1);
        let world = World::new(
            "basic",
            &[mx],
            "basic.test. IN MX 10 mx.basic.test.\nmx.basic.test. IN A 127.0.10.1\n",
        )
        .await;
        let sink = world.sink(mx, &[]);
        let engine = world.engine(&Knobs::default()).await;

        let one = message("single", 3_000);
        let many = message("multi", 20_000);
        let many_rcpts = rcpts("m", "basic.test", 5);
        inject(&engine, "sender@volley.test", &["solo@basic.test"], &one).await;
        inject(&engine, "sender@volley.test", &strs(&many_rcpts), &many).await;

        let stats = wait_for(&engine, WAIT, "6 delivered", |s| s.delivered == 6).await;
        assert_eq!((stats.bounced, stats.expired), (0, 0), "{stats:?}");
        idle(&engine, WAIT).await;
        engine.shutdown().await;

        let (summary, records) = sink.stop();
        assert_eq!(summary["messages"], 2, "{summary}");
        assert_eq!(summary["recipients"], 6, "{summary}");
        assert_eq!(records.len(), 2, "{records:?}");
        for r in &records {
            assert_eq!(r["mail_from"], "sender@volley.test", "{r}");
            let want = if r["rcpts"].as_array().unwrap().len() == 1 {
                assert_eq!(r["rcpts"][0], "solo@basic.test");
                &one
            } else {
                // One body on the wire for all five recipients.
                let mut got = recorded_rcpts(std::slice::from_ref(r));
                got.sort();
                let mut want_rcpts = many_rcpts.clone();
                want_rcpts.sort();
                assert_eq!(got, want_rcpts);
                &many
            };
            assert_eq!(r["size"], want.len(), "{r}");
            assert_eq!(r["sha256"], sha256_hex(want), "{r}");
        }

        let delivered = world.events_of("delivered");
        assert_eq!(delivered.len(), 6, "{delivered:?}");
        for e in &delivered {
            assert_eq!(e["code"], 250, "{e}");
            assert_eq!(e["mx_ip"], "127.0.10.1", "{e}");
            assert_eq!(e["domain"], "basic.test", "{e}");
            assert_eq!(e["attempt"], 1, "{e}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_messages_reuse_few_connections() {
    bounded("reuse", async {
        const N: usize = 60;
        const K: u64 = 2;
        let mx = Ipv4Addr::new(127, 0, 10, 2);
        let world = World::new(
            "reuse",
            &[mx],
            "reuse.test. IN MX 10 mx.reuse.test.\nmx.reuse.test. IN A 127.0.10.2\n",
        )
        .await;
        let sink = world.sink(mx, &[]);
        let knobs = Knobs {
            shaping_default: format!("max_connections = {K}"),
            ..Knobs::default()
        };
        let engine = world.engine(&knobs).await;
        let body = message("reuse", 2_000);
        for i in 0..N {
            inject(
                &engine,
                "s@volley.test",
                &[&format!("r{i}@reuse.test")],
                &body,
            )
            .await;
        }
        let stats = wait_for(&engine, WAIT, "all delivered", |s| s.delivered == N as u64).await;
        assert!(
            stats.connections <= K,
            "engine opened {} connections",
            stats.connections
        );
        idle(&engine, WAIT).await;
        let final_stats = engine.shutdown().await;

        let (summary, records) = sink.stop();
        assert_eq!(summary["messages"], N, "{summary}");
        // The sink also counts the harness's readiness probe (one connection that
        // carries nothing); the connections that carried mail are told by peer.
        let conns = summary["connections"].as_u64().unwrap();
        assert!(
            conns <= K + 1,
            "{N} messages over {conns} - 1 connections: {summary}"
        );
        let mut peers: Vec<&str> = records.iter().filter_map(|r| r["peer"].as_str()).collect();
        peers.sort();
        peers.dedup();
        assert!(
            (1..=K as usize).contains(&peers.len()),
            "{N} messages over {} connections: {peers:?} ({final_stats:?})",
            peers.len()
        );
        assert_eq!(records.len(), N);
        let digest = sha256_hex(&body);
        assert!(records.iter().all(|r| r["sha256"] == digest.as_str()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_with_the_same_mx_set_share_one_site() {
    bounded("shared_site", async {
        const N: usize = 20;
        let mx = Ipv4Addr::new(127, 0, 10, 6);
        let world = World::new(
            "shared-site",
            &[mx],
            "one.test. IN MX 10 mx.hoster.test.\n\
             two.test. IN MX 10 MX.Hoster.test.\n\
             mx.hoster.test. IN A 127.0.10.6\n",
        )
        .await;
        let sink = world.sink(mx, &[]);
        let knobs = Knobs {
            shaping_default: "max_connections = 1".into(),
            ..Knobs::default()
        };
        let engine = world.engine(&knobs).await;
        let body = message("shared", 1_500);
        for i in 0..N {
            let domain = if i % 2 == 0 { "one.test" } else { "two.test" };
            inject(
                &engine,
                "s@volley.test",
                &[&format!("u{i}@{domain}")],
                &body,
            )
            .await;
        }
        let stats = wait_for(&engine, WAIT, "all delivered", |s| s.delivered == N as u64).await;
        assert_eq!(stats.connections, 1, "one site, one connection: {stats:?}");
        idle(&engine, WAIT).await;
        engine.shutdown().await;

        let (_, records) = sink.stop();
        assert_eq!(records.len(), N);
        let mut peers: Vec<&str> = records.iter().filter_map(|r| r["peer"].as_str()).collect();
        peers.dedup();
        assert_eq!(
            peers.len(),
            1,
            "both domains over one connection: {peers:?}"
        );
        let mut sites: Vec<String> = world
            .events_of("delivered")
            .iter()
            .map(|e| e["site"].as_str().unwrap_or("").to_string())
            .collect();
        sites.sort();
        sites.dedup();
        assert_eq!(
            sites.len(),
            1,
            "one site for one.test and two.test: {sites:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_over_many_domains_and_sites_arrives_exactly_once() {
    bounded("campaign", async {
        const MESSAGES: usize = 1_000;
        const DOMAINS: usize = 30;
        let mxs = [
            Ipv4Addr::new(127, 0, 10, 7),
            Ipv4Addr::new(127, 0, 10, 8),
            Ipv4Addr::new(127, 0, 10, 9),
        ];
        // Domain d is hosted by site d % 3.
        let mut zone = String::new();
        for (i, ip) in mxs.iter().enumerate() {
            zone += &format!("mx.site{i}.test. IN A {ip}\n");
        }
        for d in 0..DOMAINS {
            zone += &format!("d{d}.test. IN MX 10 mx.site{}.test.\n", d % 3);
        }
        let world = World::new("campaign", &mxs, &zone).await;
        let sinks: Vec<_> = mxs.iter().map(|ip| world.sink(*ip, &[])).collect();
        let engine = world.engine(&Knobs::default()).await;
        let body = message("campaign", 4_000);
        // Each message has 3 recipients in 3 different domains (so 3 sites).
        let mut want = Vec::new();
        for m in 0..MESSAGES {
            let to: Vec<String> = (0..3)
                .map(|k| format!("m{m}-{k}@d{}.test", (m + k * 7) % DOMAINS))
                .collect();
            want.extend(to.iter().cloned());
            inject(&engine, "campaign@volley.test", &strs(&to), &body).await;
        }
        let n = want.len() as u64;
        let stats = wait_for(&engine, WAIT, "every recipient delivered", |s| {
            s.delivered == n
        })
        .await;
        assert_eq!((stats.deferred, stats.bounced), (0, 0), "{stats:?}");
        idle(&engine, WAIT).await;
        engine.shutdown().await;

        let mut got = Vec::new();
        let digest = sha256_hex(&body);
        for (i, sink) in sinks.into_iter().enumerate() {
            let (_, records) = sink.stop();
            for r in &records {
                assert_eq!(r["sha256"], digest.as_str(), "{r}");
                for rcpt in r["rcpts"].as_array().unwrap() {
                    let rcpt = rcpt.as_str().unwrap();
                    let d: usize = rcpt
                        .split("@d")
                        .nth(1)
                        .unwrap()
                        .trim_end_matches(".test")
                        .parse()
                        .unwrap();
                    assert_eq!(d % 3, i, "{rcpt} arrived at site {i}");
                }
            }
            got.extend(recorded_rcpts(&records));
        }
        got.sort();
        want.sort();
        assert_eq!(got.len(), want.len(), "recipients recorded vs injected");
        assert!(got == want, "some recipient arrived twice or never");
        assert_eq!(world.events_of("delivered").len(), want.len());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_replaced_after_its_message_limit() {
    bounded("messages_per_connection", async {
        const N: usize = 20;
        let mx = Ipv4Addr::new(127, 0, 10, 10);
        let world = World::new(
            "per-connection",
            &[mx],
            "limit.test. IN MX 10 mx.limit.test.\nmx.limit.test. IN A 127.0.10.10\n",
        )
        .await;
        let sink = world.sink(mx, &[]);
        let knobs = Knobs {
            shaping_default: "max_connections = 1\nmax_messages_per_connection = 5".into(),
            ..Knobs::default()
        };
        let engine = world.engine(&knobs).await;
        let body = message("per-connection", 1_000);
        for i in 0..N {
            inject(
                &engine,
                "s@volley.test",
                &[&format!("p{i}@limit.test")],
                &body,
            )
            .await;
        }
        wait_for(&engine, WAIT, "all delivered", |s| s.delivered == N as u64).await;
        idle(&engine, WAIT).await;
        engine.shutdown().await;

        let (_, records) = sink.stop();
        assert_eq!(records.len(), N);
        let mut per_peer = std::collections::HashMap::new();
        for r in &records {
            *per_peer
                .entry(r["peer"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        assert!(
            per_peer.len() >= N / 5,
            "{N} messages at 5 per connection: {per_peer:?}"
        );
        assert!(per_peer.values().all(|&n| n <= 5), "{per_peer:?}");
    })
    .await;
}
