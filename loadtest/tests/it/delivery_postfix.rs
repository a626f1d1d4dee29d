//! The engine delivering to a real Postfix `smtpd` (private instances, see
//! [`crate::postfix_smtpd`]): what Postfix stores is what was injected, byte for
//! byte, over plaintext or STARTTLS, split when Postfix limits recipients.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::delivery_env::{
    blocking, bounded, idle, inject, message, rcpts, strs, wait_for, Knobs, World,
};
use crate::postfix_smtpd::{crlf_to_lf, PostfixSmtpd};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_to_postfix_smtpd_byte_exact() {
    bounded("postfix", async {
        let mx = Ipv4Addr::new(127, 0, 10, 3);
        let world = World::new(
            "to-postfix",
            &[mx],
            "pf.test. IN MX 10 mx.pf.test.\nmx.pf.test. IN A 127.0.10.3\n",
        )
        .await;
        let pf = blocking(|| PostfixSmtpd::start_at(world.at(mx), &["pf.test"]));
        let engine = world.engine(&Knobs::default()).await;

        let body = message("postfix", 30_000);
        let small = message("postfix-small", 500);
        inject(
            &engine,
            "bulk@volley.test",
            &["alice@pf.test", "reject-me@pf.test", "bob@pf.test"],
            &body,
        )
        .await;
        inject(&engine, "bulk@volley.test", &["carol@pf.test"], &small).await;

        let stats = wait_for(&engine, WAIT, "3 delivered, 1 bounced", |s| {
            s.delivered == 3 && s.bounced == 1
        })
        .await;
        assert_eq!(stats.expired, 0, "{stats:?}");
        idle(&engine, WAIT).await;
        engine.shutdown().await;

        let mut stored = blocking(|| pf.wait_stored(3, WAIT));
        stored.sort_by(|a, b| a.rcpt.cmp(&b.rcpt));
        let who: Vec<&str> = stored.iter().map(|s| s.rcpt.as_str()).collect();
        assert_eq!(who, ["alice@pf.test", "bob@pf.test", "carol@pf.test"]);
        for s in &stored {
            let want = if s.rcpt == "carol@pf.test" {
                &small
            } else {
                &body
            };
            assert!(
                s.content() == crlf_to_lf(want),
                "bytes stored for {} differ from the injected message:\n{}",
                s.rcpt,
                String::from_utf8_lossy(&s.raw[..s.raw.len().min(800)])
            );
            assert_eq!(s.trace_header("Return-Path").unwrap(), "<bulk@volley.test>");
        }
        let bounced = world.events_of("bounced");
        assert_eq!(bounced.len(), 1, "{bounced:?}");
        assert_eq!(bounced[0]["recipient"], "reject-me@pf.test");
        assert_eq!(bounced[0]["code"], 550);
        assert_eq!(bounced[0]["enhanced"], "5.1.1");
        assert!(
            pf.maillog().contains("helo=<volley.test>") || pf.maillog().contains("volley.test")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_smtpd_recipient_limit_splits_the_message() {
    bounded("postfix_split", async {
        let mx = Ipv4Addr::new(127, 0, 10, 4);
        let world = World::new(
            "postfix-split",
            &[mx],
            "pfsplit.test. IN MX 10 mx.pfsplit.test.\nmx.pfsplit.test. IN A 127.0.10.4\n",
        )
        .await;
        // Postfix answers 452 4.5.3 "Error: too many recipients" beyond 3.
        let pf = blocking(|| {
            PostfixSmtpd::start_with(world.at(mx), &["pfsplit.test"], "smtpd_recipient_limit = 3")
        });
        let engine = world.engine(&Knobs::default()).await;
        let body = message("postfix-split", 12_000);
        let to = rcpts("p", "pfsplit.test", 7);
        inject(&engine, "bulk@volley.test", &strs(&to), &body).await;
        let stats = wait_for(&engine, WAIT, "7 delivered", |s| s.delivered == 7).await;
        assert_eq!((stats.bounced, stats.expired), (0, 0), "{stats:?}");
        idle(&engine, WAIT).await;
        engine.shutdown().await;

        let stored = blocking(|| pf.wait_stored(7, WAIT));
        let mut who: Vec<&str> = stored.iter().map(|s| s.rcpt.as_str()).collect();
        who.sort();
        assert_eq!(who, strs(&to), "each recipient exactly once");
        let want = crlf_to_lf(&body);
        assert!(
            stored.iter().all(|s| s.content() == want),
            "stored bytes differ"
        );
        let mut ids: Vec<String> = stored.iter().filter_map(|s| s.queue_id()).collect();
        ids.sort();
        ids.dedup();
        assert!(
            ids.len() >= 3,
            "7 recipients in {} transactions: {ids:?}",
            ids.len()
        );
        assert_eq!(world.events_of("delivered").len(), 7);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_a_large_message_to_postfix_over_required_starttls() {
    bounded("postfix_tls", async {
        let mx = Ipv4Addr::new(127, 0, 10, 5);
        let world = World::new(
            "postfix-tls",
            &[mx],
            "pftls.test. IN MX 10 mx.pftls.test.\nmx.pftls.test. IN A 127.0.10.5\n",
        )
        .await;
        let pf = blocking(|| PostfixSmtpd::start_tls(world.at(mx), &["pftls.test"]));
        let knobs = Knobs {
            tls: "required",
            ..Knobs::default()
        };
        let engine = world.engine(&knobs).await;
        // 2 MB, every line of the body starting with a dot on every 7th line.
        let mut body = message("postfix-tls", 1_000);
        for i in 0..40_000 {
            let dot = if i % 7 == 0 { "." } else { "" };
            body.extend_from_slice(format!("{dot}line {i:08} of a large message\r\n").as_bytes());
        }
        inject(
            &engine,
            "bulk@volley.test",
            &["big@pftls.test", "big2@pftls.test"],
            &body,
        )
        .await;
        let stats = wait_for(&engine, WAIT, "2 delivered", |s| s.delivered == 2).await;
        assert_eq!((stats.bounced, stats.deferred), (0, 0), "{stats:?}");
        idle(&engine, WAIT).await;
        engine.shutdown().await;

        let stored = blocking(|| pf.wait_stored(2, WAIT));
        let want = crlf_to_lf(&body);
        for s in &stored {
            assert!(s.content() == want, "bytes stored for {} differ", s.rcpt);
            let raw = String::from_utf8_lossy(&s.raw[..4096.min(s.raw.len())]).into_owned();
            assert!(raw.contains("with ESMTPS"), "not received over TLS:\n{raw}");
        }
        for e in world.events_of("delivered") {
            assert!(
                e["tls"].as_str().is_some_and(|v| v.starts_with("TLS")),
                "{e}"
            );
        }
    })
    .await;
}
