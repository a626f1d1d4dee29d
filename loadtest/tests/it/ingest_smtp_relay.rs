//! The relay listener with real clients: swaks relaying from an allowed address
//! (over STARTTLS) and sending to a relay domain from anywhere, delivered to a
//! `volley-load sink`; the open-relay matrix from an address that may not relay;
//! connection limits; slowloris and idle timeouts; oversized messages and bare-LF
//! ends of data; a pipelined batch with BDAT; acknowledgement only once stored;
//! 421 at shutdown.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use volley::ingest::smtp::ListenerKind;
use volley::model::MessageId;
use volley::spool::{RocksSpool, Spool, SpoolOptions};

use crate::delivery_env::{blocking, bounded, idle, recorded_rcpts, wait_for, Knobs, World};
use crate::ingest_smtp_env::{config, head, listen, queued_id, Certs, Client};

const WAIT: Duration = Duration::from_secs(30);
/// May relay anywhere.
const INSIDE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 15, 100));
/// May only send to the relay domain.
const OUTSIDE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 15, 9));

/// `[smtp]` with a relay listener on 127.0.15.1 for 127.0.15.100 only, plus `extra`
/// lines in `[smtp]` and in `[smtp.relay]`.
fn relay_knobs(smtp_extra: &str, relay_extra: &str) -> Knobs {
    Knobs {
        tail: format!(
            r#"
[smtp]
hostname = "relay.volley.test"
relay_domains = ["relaydomain.test"]
{smtp_extra}

[smtp.relay]
listen = "127.0.15.1:0"
allowed_cidrs = ["127.0.15.100/32"]
{relay_extra}
"#
        ),
        ..Knobs::default()
    }
}

const ZONE: &str = "relaydomain.test. IN MX 10 mx.relay.test.\n\
                    far.test. IN MX 10 mx.relay.test.\n\
                    mx.relay.test. IN A 127.0.15.2\n";

fn swaks(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("swaks")
        .args(args)
        .output()
        .expect("run swaks");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_relays_from_allowed_networks_and_delivers_to_relay_domains_from_anywhere() {
    bounded("ingest_relay_swaks", async {
        let mx = Ipv4Addr::new(127, 0, 15, 2);
        let world = World::new("ingest-relay", &[mx], ZONE).await;
        let certs = Certs::new("relay");
        let knobs = relay_knobs(
            "",
            &format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\ntenant = \"acme\"\n\n[[tenant]]\nname = \"acme\"\n",
                certs.cert.display(),
                certs.key.display()
            ),
        );
        let cfg = config(&world.config_text(&knobs));
        let sink = world.sink(mx, &[]);
        let engine = world.engine(&knobs).await;
        let listener = listen(ListenerKind::Relay, &cfg, &engine).await;
        let port = listener.local_addr().port().to_string();
        let base = ["--server", "127.0.15.1", "--port", &port, "--helo", "swaks.test"];

        // Inside, over STARTTLS, pipelined: anywhere.
        let (ok, out) = blocking(|| {
            swaks(&[&base[..], &["--local-interface", "127.0.15.100", "--tls", "--pipeline",
                "--from", "app@inside.test", "--to", "someone@far.test,other@far.test",
                "--header", "Subject: relayed by swaks"]].concat())
        });
        assert!(ok, "{out}");
        assert!(out.contains("250 2.0.0 Ok: queued as "), "{out}");
        // Outside: the relay domain only.
        let (ok, out) = blocking(|| {
            swaks(&[&base[..], &["--local-interface", "127.0.15.9", "--from", "x@outside.test",
                "--to", "postmaster@relaydomain.test"]].concat())
        });
        assert!(ok, "{out}");
        let (ok, out) = blocking(|| {
            swaks(&[&base[..], &["--local-interface", "127.0.15.9", "--from", "x@outside.test",
                "--to", "victim@far.test"]].concat())
        });
        assert!(!ok, "relayed for an outside client: {out}");
        assert!(out.contains("554 5.7.1 Relay access denied"), "{out}");

        wait_for(&engine, WAIT, "3 delivered", |s| s.delivered == 3).await;
        idle(&engine, WAIT).await;
        listener.shutdown().await;
        engine.shutdown().await;
        let (_summary, records) = sink.stop();
        assert_eq!(
            recorded_rcpts(&records),
            ["other@far.test", "postmaster@relaydomain.test", "someone@far.test"]
        );
        let delivered = world.events_of("delivered");
        assert_eq!(delivered.len(), 3, "{delivered:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_relay_matrix_is_refused_for_outside_clients() {
    bounded("ingest_relay_matrix", async {
        let world = World::new("ingest-matrix", &[Ipv4Addr::new(127, 0, 15, 3)], "").await;
        let knobs = relay_knobs("", "");
        let cfg = config(&world.config_text(&knobs));
        let engine = world.engine(&knobs).await;
        let listener = listen(ListenerKind::Relay, &cfg, &engine).await;
        let addr = listener.local_addr();

        // (recipient, refused as a relay attempt rather than as bad syntax)
        let matrix = [
            ("<user@evil.example>", true),
            ("<user%evil.example@relaydomain.test>", true),
            ("<evil.example!user@relaydomain.test>", true),
            ("<\"user@evil.example\"@relaydomain.test>", true),
            ("<\"user%evil.example\"@relaydomain.test>", true),
            ("<@relaydomain.test:user@evil.example>", true),
            (
                "<@relaydomain.test,@evil.example:user@relaydomain.test>",
                true,
            ),
            ("<user@relaydomain.test.evil.example>", true),
            ("<user@evil-relaydomain.test>", true),
            ("<user@sub.relaydomain.test>", true),
            ("<user@[127.0.0.1]>", true),
            ("<user@[127.0.15.1]>", true),
            ("<user@[IPv6:::1]>", true),
            ("<user@RelayDomain.test.>", false),
            ("<Postmaster>", false),
            ("<>", false),
            ("<user@>", false),
            ("user@evil.example", false),
            ("<user@evil.example", false),
            ("<user evil.example>", false),
            ("<user@evil.example> NOTIFY=NEVER", true),
            ("", false),
        ];
        // A fresh connection every few recipients: refusals count as errors.
        for chunk in matrix.chunks(5) {
            let mut c = Client::greeted(OUTSIDE, addr).await;
            c.cmd("EHLO outside.test").await;
            assert_eq!(
                head(&c.cmd("MAIL FROM:<spammer@outside.test>").await),
                "250 2.1.0"
            );
            for (rcpt, relay) in chunk {
                let reply = c.cmd(&format!("RCPT TO:{rcpt}")).await;
                assert!(
                    reply.starts_with('5'),
                    "RCPT TO:{rcpt} from outside got {reply:?}"
                );
                if *relay {
                    assert!(
                        reply.starts_with("554 5.7.1 Relay access denied"),
                        "RCPT TO:{rcpt} got {reply:?}"
                    );
                }
            }
            assert_eq!(
                head(&c.cmd("DATA").await),
                "554 5.5.1",
                "no recipient, no data"
            );
            assert_eq!(head(&c.cmd("QUIT").await), "221 2.0.0");
        }
        // The relay domain itself (any case) is fine from outside.
        let mut c = Client::greeted(OUTSIDE, addr).await;
        c.cmd("EHLO outside.test").await;
        c.cmd("MAIL FROM:<x@outside.test>").await;
        assert_eq!(
            head(&c.cmd("RCPT TO:<User@RelayDomain.TEST>").await),
            "250 2.1.5"
        );
        // The allowed network may relay anywhere.
        let mut c = Client::greeted(INSIDE, addr).await;
        c.cmd("EHLO inside.test").await;
        c.cmd("MAIL FROM:<app@inside.test>").await;
        assert_eq!(
            head(&c.cmd("RCPT TO:<user@evil.example>").await),
            "250 2.1.5"
        );
        assert_eq!(engine.stats().injected, 0, "nothing was stored");
        listener.shutdown().await;
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_per_address_and_in_all() {
    bounded("ingest_relay_limits", async {
        let world = World::new("ingest-limits", &[Ipv4Addr::new(127, 0, 15, 4)], "").await;
        let per_ip = relay_knobs("max_connections_per_ip = 2", "");
        let engine = world.engine(&per_ip).await;
        let listener = listen(
            ListenerKind::Relay,
            &config(&world.config_text(&per_ip)),
            &engine,
        )
        .await;
        let addr = listener.local_addr();
        let _a = Client::greeted(OUTSIDE, addr).await;
        let _b = Client::greeted(OUTSIDE, addr).await;
        let mut third = Client::connect_from(OUTSIDE, addr).await;
        assert_eq!(head(&third.reply().await), "421 4.7.0");
        assert!(third.closed().await);
        let _other = Client::greeted(INSIDE, addr).await;
        drop(_a);
        // The slot is free again once the server saw the close.
        let mut again = None;
        for _ in 0..100 {
            let mut c = Client::connect_from(OUTSIDE, addr).await;
            if c.reply().await.starts_with("220 ") {
                again = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(again.is_some(), "a closed connection's slot was not freed");
        listener.shutdown().await;

        let total = relay_knobs("max_connections = 2", "");
        let listener = listen(
            ListenerKind::Relay,
            &config(&world.config_text(&total)),
            &engine,
        )
        .await;
        let addr = listener.local_addr();
        let _a = Client::greeted(OUTSIDE, addr).await;
        let _b = Client::greeted(INSIDE, addr).await;
        let mut third = Client::connect_from(IpAddr::from([127, 0, 15, 10]), addr).await;
        assert_eq!(head(&third.reply().await), "421 4.3.2");
        assert!(third.closed().await);
        listener.shutdown().await;
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_idle_and_silent_data_time_out_with_421() {
    bounded("ingest_relay_timeouts", async {
        let world = World::new("ingest-timeouts", &[Ipv4Addr::new(127, 0, 15, 5)], "").await;
        let knobs = relay_knobs("command_timeout = \"1s\"\ndata_timeout = \"1s\"", "");
        let engine = world.engine(&knobs).await;
        let listener = listen(
            ListenerKind::Relay,
            &config(&world.config_text(&knobs)),
            &engine,
        )
        .await;
        let addr = listener.local_addr();

        // One byte every 300 ms: each read is quick, the line never is.
        let mut c = Client::greeted(OUTSIDE, addr).await;
        let line = b"EHLO a-very-slow-client.example.com\r\n";
        let mut reply = None;
        for b in line {
            c.send([*b]).await;
            if let Some(r) = c.try_reply(Duration::from_millis(300)).await {
                reply = Some(r);
                break;
            }
        }
        let reply = reply.expect("the dribbling client was never cut off");
        assert_eq!(head(&reply), "421 4.4.2", "{reply}");
        assert!(c.closed().await);

        // Idle after the banner.
        let mut c = Client::greeted(OUTSIDE, addr).await;
        assert_eq!(head(&c.reply().await), "421 4.4.2");
        assert!(c.closed().await);

        // Silent inside DATA.
        let mut c = Client::greeted(INSIDE, addr).await;
        c.send("EHLO in.test\r\nMAIL FROM:<a@in.test>\r\nRCPT TO:<b@far.test>\r\nDATA\r\n")
            .await;
        let r = c.replies(4).await;
        assert_eq!(head(&r[3]), "354 End");
        c.send("Subject: half a message\r\n").await;
        assert_eq!(head(&c.reply().await), "421 4.4.2");
        assert!(c.closed().await);
        assert_eq!(engine.stats().injected, 0);
        listener.shutdown().await;
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_long_lines_and_bare_lf_are_refused() {
    bounded("ingest_relay_refusals", async {
        let world = World::new("ingest-refusals", &[Ipv4Addr::new(127, 0, 15, 6)], "").await;
        let knobs = relay_knobs("max_message_size = \"4KiB\"\nmax_line_length = 1000", "");
        let engine = world.engine(&knobs).await;
        let listener = listen(ListenerKind::Relay, &config(&world.config_text(&knobs)), &engine).await;
        let addr = listener.local_addr();
        let mut c = Client::greeted(INSIDE, addr).await;
        assert!(c.cmd("EHLO in.test").await.contains("250-SIZE 4096\r\n"));
        assert_eq!(head(&c.cmd("MAIL FROM:<a@in.test> SIZE=10000").await), "552 5.3.4");

        // Too big while reading: refused at the end, the connection stays usable.
        c.send("MAIL FROM:<a@in.test>\r\nRCPT TO:<b@far.test>\r\nDATA\r\n").await;
        assert_eq!(head(&c.replies(3).await[2]), "354 End");
        let mut big = Vec::new();
        while big.len() < 6_000 {
            big.extend_from_slice(b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n");
        }
        big.extend_from_slice(b".\r\n");
        c.send(&big).await;
        assert_eq!(head(&c.reply().await), "552 5.3.4");
        // A line longer than max_line_length.
        c.send("MAIL FROM:<a@in.test>\r\nRCPT TO:<b@far.test>\r\nDATA\r\n").await;
        c.replies(3).await;
        let mut long = vec![b'x'; 1_500];
        long.extend_from_slice(b"\r\n.\r\n");
        c.send(&long).await;
        assert_eq!(head(&c.reply().await), "552 5.3.4");
        // And a BDAT chunk past the limit.
        c.send("MAIL FROM:<a@in.test>\r\nRCPT TO:<b@far.test>\r\nBDAT 5000 LAST\r\n").await;
        c.replies(2).await;
        c.send(vec![b'y'; 5_000]).await;
        assert_eq!(head(&c.reply().await), "552 5.3.4");
        // Still usable.
        c.send("MAIL FROM:<a@in.test>\r\nRCPT TO:<b@far.test>\r\nDATA\r\n").await;
        c.replies(3).await;
        c.send("Subject: small\r\n\r\nfits\r\n.\r\n").await;
        let ok = c.reply().await;
        queued_id(&ok);
        assert_eq!(engine.stats().injected, 1, "only the small message was stored");

        // A bare LF before the dot: refused, and the connection is closed (where
        // the client meant the data to end is unknowable).
        c.send("MAIL FROM:<a@in.test>\r\nRCPT TO:<b@far.test>\r\nDATA\r\n").await;
        c.replies(3).await;
        c.send("Subject: smuggle\r\n\r\nfirst\n.\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@far.test>\r\nDATA\r\nsecond\r\n.\r\n").await;
        assert_eq!(head(&c.reply().await), "554 5.6.0");
        assert!(c.closed().await);
        listener.shutdown().await;
        engine.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_batches_get_every_reply_and_250_only_once_stored() {
    bounded("ingest_relay_pipelining", async {
        let world = World::new("ingest-pipe", &[Ipv4Addr::new(127, 0, 15, 7)], ZONE).await;
        let knobs = relay_knobs("", "");
        let cfg = config(&world.config_text(&knobs));
        let spool = Arc::new(
            RocksSpool::open(world.dir.0.join("spool"), SpoolOptions::default()).expect("spool"),
        );
        // No MX is listening: delivery defers and the messages stay in the spool.
        let engine = world.engine_on(&knobs, spool.clone() as Arc<dyn Spool>).await;
        let listener = listen(ListenerKind::Relay, &cfg, &engine).await;
        let addr = listener.local_addr();
        let mut c = Client::greeted(INSIDE, addr).await;
        c.send(
            "EHLO pipe.test\r\nMAIL FROM:<a@pipe.test>\r\nRCPT TO:<one@far.test>\r\n\
             RCPT TO:<bad address>\r\nRCPT TO:<two@far.test>\r\nDATA\r\n",
        )
        .await;
        let r = c.replies(6).await;
        let heads: Vec<String> = r[1..].iter().map(|r| head(r)).collect();
        assert_eq!(heads, ["250 2.1.0", "250 2.1.5", "553 5.1.3", "250 2.1.5", "354 End"]);
        assert!(r[0].contains("250-PIPELINING\r\n") && r[0].contains("250 CHUNKING\r\n"), "{}", r[0]);
        // End of data, a second transaction with BDAT, a third with DATA, QUIT: one write.
        c.send(
            "Subject: one\r\n\r\n..dotted\r\n.\r\n\
             MAIL FROM:<a@pipe.test>\r\nRCPT TO:<three@far.test>\r\nBDAT 21\r\nSubject: two\r\n\r\nabc\r\nBDAT 6 LAST\r\ndefg\r\n\
             MAIL FROM:<> BODY=8BITMIME\r\nRCPT TO:<four@relaydomain.test>\r\nDATA\r\n",
        )
        .await;
        let r = c.replies(8).await;
        let heads: Vec<String> = r.iter().map(|r| head(r)).collect();
        assert_eq!(heads, ["250 2.0.0", "250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.0.0", "250 2.1.0", "250 2.1.5", "354 End"], "{r:?}");
        c.send("Subject: three\r\n\r\nc\u{e4}f\u{e9}\r\n.\r\nQUIT\r\n").await;
        let r2 = c.replies(2).await;
        assert_eq!(head(&r2[1]), "221 2.0.0");
        // Each 250 names a message the spool already holds.
        let want: [(&str, &[u8]); 3] = [
            (&r[0], b"Subject: one\r\n\r\n.dotted\r\n"),
            (&r[4], b"Subject: two\r\n\r\nabc\r\ndefg\r\n"),
            (&r2[0], "Subject: three\r\n\r\nc\u{e4}f\u{e9}\r\n".as_bytes()),
        ];
        for (reply, content) in want {
            let id: MessageId = queued_id(reply).parse().unwrap();
            let body = spool.load_body(id).expect("stored before the 250");
            assert!(body.ends_with(content), "{}", String::from_utf8_lossy(&body));
            assert!(body.starts_with(b"Received: from pipe.test ([127.0.15.100])\r\n\tby relay.volley.test (Volley) with "));
        }
        let stats = engine.stats();
        assert_eq!(stats.messages, 3, "{stats:?}");

        // Shutdown: an idle session hears 421 4.3.2 and is closed.
        let mut idle_client = Client::greeted(OUTSIDE, addr).await;
        idle_client.cmd("EHLO idle.test").await;
        let stopping = tokio::spawn(listener.shutdown());
        assert_eq!(head(&idle_client.reply().await), "421 4.3.2");
        assert!(idle_client.closed().await);
        stopping.await.unwrap();
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "still accepting after shutdown"
        );
        engine.shutdown().await;
    })
    .await;
}
