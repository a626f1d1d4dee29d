//! A private Postfix instance as a *receiving* MTA: `smtpd` on one loopback address
//! and port, final delivery by `virtual(8)` into one Maildir per recipient, so a test
//! can read back byte for byte what arrived.
//!
//! Layout (all under one temporary directory, so instances never share state and the
//! master's lock file, `data/master.lock`, is per instance):
//!
//! ```text
//! conf/main.cf conf/master.cf conf/rcpt_access
//! queue/   data/ (owned by postfix)   mail/inbox/new/* (owned by nobody)
//! maillog
//! ```
//!
//! Findings that shaped it (Postfix 3.7, Debian, root, no syslog):
//! - `inet_interfaces` must name addresses configured on an interface; 127.0.0.x
//!   other than .1 are not (the /8 route is), so it is `loopback-only` and the
//!   address to listen on is in the `master.cf` service name (`127.0.0.x:PORT`).
//! - Without `/dev/log`, the `postfix` command's own fatal errors are lost unless
//!   stderr is a terminal: on failure the command is run again under `script(1)`
//!   to show why.
//! - `data_directory` must be owned by `postfix` (master.lock); every service runs
//!   unchrooted (Debian's chroot needs copies of /etc files in the queue directory).
//! - `virtual(8)` refuses regexp substitutions in `virtual_mailbox_maps`, so every
//!   recipient shares one Maildir and is told apart by `Delivered-To`.
//!
//! Local parts starting with `reject-` get `550 5.1.1` at RCPT, to test partial
//! rejection by a real receiver.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::harness::{free_port, postfix_tool, wait_for_port, TempDir};

/// The services a receiving instance needs, all unchrooted; `{LISTEN}` is replaced
/// by the smtpd address.
const MASTER_CF: &str = "\
{LISTEN} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
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
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";

/// One message as the receiver stored it.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The recipient it was delivered to (its `Delivered-To` header).
    pub rcpt: String,
    /// The file as stored (LF line ends, trace headers prepended).
    pub raw: Vec<u8>,
}

impl Stored {
    /// The message without the headers Postfix prepends at delivery
    /// (`Return-Path`, `X-Original-To`, `Delivered-To`, its own `Received`).
    pub fn content(&self) -> Vec<u8> {
        strip_trace(&self.raw)
    }

    /// The receiver's queue id, from its `Received:` line (`... with ESMTP id ID`):
    /// one per transaction that carried the message.
    pub fn queue_id(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.raw);
        let head = text.split("\n\n").next()?;
        let at = head.find(" id ")?;
        head[at + 4..]
            .split(|c: char| c.is_whitespace() || c == ';')
            .next()
            .map(str::to_string)
    }

    /// The value of the first prepended header `name` (e.g. `Return-Path`).
    pub fn trace_header(&self, name: &str) -> Option<String> {
        let text = String::from_utf8_lossy(&self.raw);
        let prefix = format!("{}:", name.to_ascii_lowercase());
        text.lines()
            .take_while(|l| !l.is_empty())
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    }
}

/// A running private Postfix instance that accepts mail for some domains.
pub struct PostfixSmtpd {
    /// Where smtpd listens.
    pub addr: SocketAddr,
    /// The instance's configuration directory (`postfix -c`).
    conf: PathBuf,
    /// `virtual_mailbox_base`; the Maildir is `inbox/` under it.
    mail: PathBuf,
    /// The `maillog_file`, shown when something goes wrong.
    maillog: PathBuf,
    /// Whether `postfix stop` has run.
    stopped: bool,
    /// Everything above lives here; removed last.
    _dir: TempDir,
}

impl PostfixSmtpd {
    /// Starts an instance on a free port of `ip`, accepting mail for `domains`.
    pub fn start(ip: &str, domains: &[&str]) -> PostfixSmtpd {
        PostfixSmtpd::start_at(free_port(ip), domains)
    }

    /// Starts an instance with smtpd on `addr` (a 127.0.0.x address, so that several
    /// instances and sinks can share one port number), accepting mail for `domains`.
    pub fn start_at(addr: SocketAddr, domains: &[&str]) -> PostfixSmtpd {
        PostfixSmtpd::start_with(addr, domains, "")
    }

    /// As [`PostfixSmtpd::start_at`], with `extra` lines appended to `main.cf`
    /// (later settings win, e.g. `smtpd_recipient_limit = 3`).
    pub fn start_with(addr: SocketAddr, domains: &[&str], extra: &str) -> PostfixSmtpd {
        PostfixSmtpd::start_full(addr, domains, extra, false)
    }

    /// As [`PostfixSmtpd::start_at`], offering STARTTLS with a self-signed
    /// certificate made at start (OpenSSL on Postfix's side: real TLS interop).
    pub fn start_tls(addr: SocketAddr, domains: &[&str]) -> PostfixSmtpd {
        PostfixSmtpd::start_full(addr, domains, "", true)
    }

    fn start_full(addr: SocketAddr, domains: &[&str], extra: &str, tls: bool) -> PostfixSmtpd {
        assert!(addr.ip().is_loopback(), "{addr} is not loopback");
        let dir = TempDir::new(&format!("postfix-{}-{}", addr.ip(), addr.port()));
        let root = dir.0.clone();
        let (conf, queue, data, mail) = (
            root.join("conf"),
            root.join("queue"),
            root.join("data"),
            root.join("mail"),
        );
        for d in [&conf, &queue, &data, &mail] {
            std::fs::create_dir_all(d).unwrap();
        }
        chown("postfix", &data);
        chown("nobody:nogroup", &mail);
        let maillog = root.join("maillog");
        let name = format!(
            "pf-{}-{}",
            addr.ip().to_string().replace('.', "-"),
            addr.port()
        );
        let mut main_cf = main_cf(&root, &maillog, &name, domains);
        if tls {
            main_cf += &self_signed_tls(&conf, &name);
        }
        main_cf = main_cf + extra + "\n";
        std::fs::write(conf.join("main.cf"), main_cf).unwrap();
        std::fs::write(
            conf.join("master.cf"),
            MASTER_CF.replace("{LISTEN}", &addr.to_string()),
        )
        .unwrap();
        std::fs::write(
            conf.join("rcpt_access"),
            "/^reject-/ 550 5.1.1 recipient rejected by test receiver\n",
        )
        .unwrap();
        let smtpd = PostfixSmtpd {
            addr,
            conf,
            mail,
            maillog,
            stopped: true,
            _dir: dir,
        };
        smtpd.postfix_ok("check");
        smtpd.postfix_ok("start");
        let mut smtpd = smtpd;
        smtpd.stopped = false;
        wait_for_port(addr, Duration::from_secs(20));
        smtpd
    }

    /// Every message delivered so far, in no particular order.
    pub fn stored(&self) -> Vec<Stored> {
        let Ok(files) = std::fs::read_dir(self.mail.join("inbox/new")) else {
            return Vec::new();
        };
        files
            .flatten()
            .filter_map(|f| std::fs::read(f.path()).ok())
            .map(|raw| {
                let mut s = Stored {
                    rcpt: String::new(),
                    raw,
                };
                s.rcpt = s.trace_header("Delivered-To").unwrap_or_default();
                s
            })
            .collect()
    }

    /// Waits until at least `n` messages are stored, and returns them; panics with
    /// the mail log after `timeout`.
    pub fn wait_stored(&self, n: usize, timeout: Duration) -> Vec<Stored> {
        let deadline = Instant::now() + timeout;
        loop {
            let stored = self.stored();
            if stored.len() >= n {
                return stored;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} of {n} messages stored after {timeout:?}; mail log:\n{}",
                    stored.len(),
                    self.maillog()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The instance's mail log so far.
    pub fn maillog(&self) -> String {
        std::fs::read_to_string(&self.maillog).unwrap_or_default()
    }

    /// Stops the instance (also done on drop) and waits until its master has gone
    /// (`postfix status` fails), so the directories can be removed; after 10 s it
    /// uses `postfix abort`.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let _ = self.postfix(&["stop"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.postfix(&["status"]).status.success() {
            if Instant::now() > deadline {
                let _ = self.postfix(&["abort"]);
                eprintln!("postfix at {} did not stop in 10 s: aborted", self.addr);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn postfix(&self, args: &[&str]) -> Output {
        Command::new(postfix_tool("postfix"))
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .expect("run postfix")
    }

    /// Runs `postfix -c CONF CMD`; on failure panics with the reason, which Postfix
    /// writes only to a terminal (hence `script`) or to the mail log.
    fn postfix_ok(&self, cmd: &str) {
        let out = self.postfix(&[cmd]);
        if out.status.success() {
            return;
        }
        let line = format!(
            "{} -c {} {cmd}",
            postfix_tool("postfix").display(),
            self.conf.display()
        );
        let tty = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| format!("(script(1) failed: {e})"));
        panic!(
            "postfix {cmd} failed ({}): {}{}\n{tty}\nmail log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.maillog()
        );
    }
}

impl Drop for PostfixSmtpd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn main_cf(root: &Path, maillog: &Path, name: &str, domains: &[&str]) -> String {
    let r = root.display();
    format!(
        "compatibility_level = 3.6
config_directory = {r}/conf
queue_directory = {r}/queue
data_directory = {r}/data
maillog_file = {log}
maillog_file_prefixes = {r}
syslog_name = {name}
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = {name}.receiver.test
mydomain = receiver.test
mydestination =
mynetworks = 127.0.0.1/32
relay_domains =
local_recipient_maps =
virtual_mailbox_domains = {domains}
virtual_mailbox_base = {r}/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access regexp:{r}/conf/rcpt_access
smtpd_peername_lookup = no
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
local_header_rewrite_clients =
smtp_dns_support_level = disabled
in_flow_delay = 0
biff = no
append_dot_mydomain = no
",
        log = maillog.display(),
        domains = domains.join(", "),
    )
}

/// Makes a self-signed certificate and key in `conf`; returns the `main.cf`
/// lines that offer STARTTLS with them.
fn self_signed_tls(conf: &Path, name: &str) -> String {
    let (cert, key) = (conf.join("cert.pem"), conf.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-subj")
        .arg(format!("/CN={name}.receiver.test"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {}\nsmtpd_tls_key_file = {}\n\
         smtpd_tls_received_header = yes\n",
        cert.display(),
        key.display()
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

/// Removes the header lines Postfix prepends at final delivery: `Return-Path`,
/// `X-Original-To`, `Delivered-To` and the first `Received` (with its folded
/// continuation lines), all before the message's own headers.
pub fn strip_trace(raw: &[u8]) -> Vec<u8> {
    const PREPENDED: [&str; 3] = ["return-path:", "x-original-to:", "delivered-to:"];
    let mut rest = raw;
    let mut seen_received = false;
    loop {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let mut take = PREPENDED.iter().any(|p| line.starts_with(p));
        if !take && !seen_received && line.starts_with("received:") {
            seen_received = true;
            take = true;
        }
        if !take {
            return rest.to_vec();
        }
        rest = &rest[end..];
        // Folded continuation lines belong to the header just removed.
        while rest.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            rest = &rest[end..];
        }
    }
}

/// `bytes` with CRLF line ends turned into LF, as Postfix stores mail.
pub fn crlf_to_lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}
