//! Postfix as a *submitting* client: a private Postfix instance whose `relayhost`
//! is Volley's relay listener. Mail injected into Postfix's smtpd is queued by
//! Postfix, relayed to Volley over STARTTLS (OpenSSL on Postfix's side), stored,
//! and delivered by Volley's engine to a `volley-load sink`.
//!
//! The instance follows `postfix_smtpd.rs` (own config, queue and data
//! directories under a temporary directory; every service unchrooted; a
//! `maillog_file` because there is no syslog), configured as a null client that
//! accepts from loopback and relays everything to `[127.0.16.1]:PORT` from the
//! source address 127.0.16.5.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use volley::ingest::smtp::ListenerKind;
use volley::model::MessageId;
use volley::spool::{RocksSpool, Spool, SpoolOptions};

use crate::delivery_env::{blocking, bounded, message, sha256_hex, wait_for, Knobs, World};
use crate::harness::{free_port, postfix_tool, wait_for_port, TempDir};
use crate::ingest_smtp_env::{config, head, listen, split_received, Certs, Client};

const WAIT: Duration = Duration::from_secs(60);

/// The services a relaying instance needs, all unchrooted; `{LISTEN}` is the
/// smtpd address.
const MASTER_CF: &str = "\
{LISTEN} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";

/// A running private Postfix that relays everything to one host.
struct PostfixRelayClient {
    /// Where its smtpd accepts mail to relay.
    addr: SocketAddr,
    conf: PathBuf,
    maillog: PathBuf,
    stopped: bool,
    _dir: TempDir,
}

impl PostfixRelayClient {
    /// Starts an instance listening on `ip` that relays to `relayhost` over
    /// mandatory STARTTLS, connecting from `source`.
    fn start(ip: &str, relayhost: SocketAddr, source: IpAddr) -> PostfixRelayClient {
        let addr = free_port(ip);
        let dir = TempDir::new(&format!("pf-client-{}", addr.port()));
        let root = dir.0.clone();
        let (conf, queue, data) = (root.join("conf"), root.join("queue"), root.join("data"));
        for d in [&conf, &queue, &data] {
            std::fs::create_dir_all(d).unwrap();
        }
        chown("postfix", &data);
        let maillog = root.join("maillog");
        std::fs::write(
            conf.join("main.cf"),
            main_cf(&root, &maillog, relayhost, source),
        )
        .unwrap();
        std::fs::write(
            conf.join("master.cf"),
            MASTER_CF.replace("{LISTEN}", &addr.to_string()),
        )
        .unwrap();
        let mut pf = PostfixRelayClient {
            addr,
            conf,
            maillog,
            stopped: true,
            _dir: dir,
        };
        pf.postfix_ok("check");
        pf.postfix_ok("start");
        pf.stopped = false;
        wait_for_port(addr, Duration::from_secs(20));
        pf
    }

    fn maillog(&self) -> String {
        std::fs::read_to_string(&self.maillog).unwrap_or_default()
    }

    fn postfix(&self, args: &[&str]) -> Output {
        Command::new(postfix_tool("postfix"))
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .expect("run postfix")
    }

    fn postfix_ok(&self, cmd: &str) {
        let out = self.postfix(&[cmd]);
        assert!(
            out.status.success(),
            "postfix {cmd} failed ({}): {}{}\nmail log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.maillog()
        );
    }

    /// Stops the instance and waits for its master to go (then `abort`).
    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let _ = self.postfix(&["stop"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.postfix(&["status"]).status.success() {
            if Instant::now() > deadline {
                let _ = self.postfix(&["abort"]);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PostfixRelayClient {
    fn drop(&mut self) {
        self.stop();
    }
}

fn main_cf(root: &Path, maillog: &Path, relayhost: SocketAddr, source: IpAddr) -> String {
    let r = root.display();
    format!(
        "compatibility_level = 3.6
config_directory = {r}/conf
queue_directory = {r}/queue
data_directory = {r}/data
maillog_file = {log}
maillog_file_prefixes = {r}
syslog_name = pf-client-{port}
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = pf-client.ingest.test
mydomain = ingest.test
mydestination =
local_transport = error:no local delivery
mynetworks = 127.0.0.0/8
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [{ip}]:{port}
smtp_bind_address = {source}
smtp_tls_security_level = encrypt
smtp_tls_loglevel = 1
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
smtpd_error_sleep_time = 0
in_flow_delay = 0
biff = no
append_dot_mydomain = no
",
        log = maillog.display(),
        ip = relayhost.ip(),
        port = relayhost.port(),
    )
}

fn chown(owner: &str, path: &Path) {
    let status = Command::new("chown")
        .arg(owner)
        .arg(path)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown {owner} {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_relays_through_volley_to_the_sink() {
    bounded("ingest_postfix_client", async {
        let mx = Ipv4Addr::new(127, 0, 16, 2);
        let world = World::new(
            "ingest-postfix",
            &[mx],
            "pf.ingest.test. IN MX 10 mx.pf.ingest.test.\nmx.pf.ingest.test. IN A 127.0.16.2\n",
        )
        .await;
        let certs = Certs::new("pf");
        let knobs = Knobs {
            tail: format!(
                r#"
[smtp]
hostname = "relay.volley.test"

[smtp.relay]
listen = "127.0.16.1:0"
allowed_cidrs = ["127.0.16.5/32"]
tls_cert = "{}"
tls_key = "{}"
"#,
                certs.cert.display(),
                certs.key.display()
            ),
            ..Knobs::default()
        };
        let cfg = config(&world.config_text(&knobs));
        let spool = Arc::new(
            RocksSpool::open(world.dir.0.join("spool"), SpoolOptions::default()).expect("spool"),
        );
        let engine = world.engine_on(&knobs, spool.clone() as Arc<dyn Spool>).await;
        let listener = listen(ListenerKind::Relay, &cfg, &engine).await;
        let relayhost = listener.local_addr();
        let postfix = blocking(|| {
            PostfixRelayClient::start("127.0.16.3", relayhost, IpAddr::from([127, 0, 16, 5]))
        });

        // Inject into Postfix over SMTP.
        let original = message("postfix-client", 8_000);
        let mut c = Client::greeted(IpAddr::from([127, 0, 16, 6]), postfix.addr).await;
        c.cmd("EHLO injector.test").await;
        assert_eq!(head(&c.cmd("MAIL FROM:<author@injector.test>").await), "250 2.1.0");
        assert_eq!(head(&c.cmd("RCPT TO:<reader@pf.ingest.test>").await), "250 2.1.5");
        assert_eq!(head(&c.cmd("RCPT TO:<other@pf.ingest.test>").await), "250 2.1.5");
        assert_eq!(head(&c.cmd("DATA").await), "354 End");
        let mut data = Vec::new();
        for line in original.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b'.') {
                data.push(b'.');
            }
            data.extend_from_slice(line);
        }
        data.extend_from_slice(b".\r\n");
        c.send(&data).await;
        let queued = c.reply().await;
        assert!(queued.starts_with("250 2.0.0 Ok: queued as "), "{queued}");
        c.cmd("QUIT").await;

        // Postfix relays it to Volley, which stores it; no MX listens yet, so the
        // first attempt defers and the message stays in the spool to be read.
        world
            .wait_events(WAIT, "a deferral", |e| e.iter().any(|e| e["event"] == "deferred"))
            .await;
        let deferred = world.events_of("deferred");
        let id: MessageId = deferred[0]["message_id"].as_str().unwrap().parse().unwrap();
        let stored = spool.load_body(id).expect("the relayed message is in the spool");
        let meta = spool.load_meta(id).unwrap();
        assert_eq!(meta.envelope.reverse_path, "author@injector.test");
        // Volley's Received (Postfix's client at 127.0.16.5 over TLS), then
        // Postfix's own, then the message exactly as injected.
        let (ours, rest) = split_received(&stored);
        assert!(
            ours.starts_with("Received: from pf-client.ingest.test ([127.0.16.5])\r\n\tby relay.volley.test (Volley) with ESMTPS\r\n\t(version=TLSv1."),
            "{ours}"
        );
        assert!(ours.contains(&format!("\tid {id};")), "two recipients: no `for`: {ours}");
        let (theirs, rest) = split_received(&rest);
        assert!(theirs.contains("by pf-client.ingest.test (Postfix)"), "{theirs}");
        assert_eq!(rest, original, "the message as injected");

        let sink = world.sink(mx, &[]);
        wait_for(&engine, WAIT, "2 delivered", |s| s.delivered == 2).await;
        let log = postfix.maillog();
        assert!(log.contains("status=sent"), "{log}");
        assert!(log.contains("TLS connection established to"), "Postfix used TLS: {log}");
        listener.shutdown().await;
        engine.shutdown().await;
        drop(postfix);
        let (_summary, records) = sink.stop();
        assert_eq!(records.len(), 1, "{records:?}");
        let rec = &records[0];
        assert_eq!(rec["mail_from"], "author@injector.test", "{rec}");
        let mut rcpts: Vec<&str> = rec["rcpts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        rcpts.sort();
        assert_eq!(rcpts, ["other@pf.ingest.test", "reader@pf.ingest.test"]);
        assert_eq!(rec["size"], stored.len(), "{rec}");
        assert_eq!(rec["sha256"], sha256_hex(&stored), "{rec}");
    })
    .await;
}
