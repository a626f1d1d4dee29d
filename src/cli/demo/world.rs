//! The demo's world: a fresh temporary directory, sinks on 127.0.0.2.. sharing one
//! port, a DNS zone whose domains' MX hosts are those sinks, and the embedded
//! configuration that ties them to a server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::cli::CliError;
use crate::config::Config;
use crate::dns::TestDnsServer;
use crate::sink::{Sink, SinkError, SinkOptions};

/// The DNS suffix of every demo domain and MX host (`.test` is reserved, RFC 2606).
pub const SUFFIX: &str = "demo.volley.test";

/// The name of demo domain `i`.
pub fn domain(i: u64) -> String {
    format!("d{i}.{SUFFIX}")
}

/// The loopback address of sink `i` (127.0.0.2, 127.0.0.3, ...).
pub fn sink_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + i)
}

/// A directory under the system's temp dir, new for this run.
pub fn temp_dir() -> Result<PathBuf, CliError> {
    let base = std::env::temp_dir();
    for _ in 0..10 {
        let dir = base.join(format!(
            "volley-demo-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(CliError::runtime(format!(
                    "cannot create a directory in {}: {e}",
                    base.display()
                )))
            }
        }
    }
    Err(CliError::runtime(format!(
        "cannot create a fresh directory in {}",
        base.display()
    )))
}

/// One sink process-part listening on `n` loopback addresses with one port (the
/// port every MX is reached on). Picks a port free on the first address and
/// retries with another when it is taken on any of the others.
pub fn start_sinks(n: u32) -> Result<Sink, CliError> {
    let mut last = String::new();
    for _ in 0..20 {
        let probe = std::net::TcpListener::bind((sink_ip(0), 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| CliError::runtime(format!("cannot bind {}: {e}", sink_ip(0))))?;
        let listen = (0..n)
            .map(|i| SocketAddr::new(IpAddr::V4(sink_ip(i)), probe.port()))
            .collect();
        match Sink::start(SinkOptions {
            listen,
            hostname: format!("sink.{SUFFIX}"),
            ..SinkOptions::default()
        }) {
            Ok(sink) => return Ok(sink),
            Err(e @ SinkError::Bind { .. }) => last = e.to_string(),
            Err(e) => return Err(CliError::runtime(format!("starting the sinks: {e}"))),
        }
    }
    Err(CliError::runtime(format!(
        "no port was free on all {n} sink addresses: {last}"
    )))
}

/// The zone: `d<i>.demo.volley.test MX mx<i % sinks>`, `mx<j> A 127.0.0.<2+j>`.
pub fn zone(domains: u64, sinks: u32) -> String {
    let mut z = String::with_capacity(64 * domains as usize + 1024);
    z.push_str("$TTL 3600\n");
    z.push_str(&format!(
        "{SUFFIX}. IN SOA ns.{SUFFIX}. hostmaster.{SUFFIX}. 1 3600 600 86400 300\n"
    ));
    for i in 0..domains {
        let mx = i % u64::from(sinks);
        z.push_str(&format!("{}. IN MX 10 mx{mx}.{SUFFIX}.\n", domain(i)));
    }
    for j in 0..sinks {
        z.push_str(&format!("mx{j}.{SUFFIX}. IN A {}\n", sink_ip(j)));
    }
    z
}

/// Starts the zone's DNS server on 127.0.0.1 (any port).
pub async fn start_dns(domains: u64, sinks: u32) -> Result<TestDnsServer, CliError> {
    let bind = SocketAddr::from(([127, 0, 0, 1], 0));
    TestDnsServer::start(&zone(domains, sinks), bind)
        .await
        .map_err(|e| CliError::runtime(format!("starting the demo DNS server: {e}")))
}

/// The embedded configuration: spool and delivery log in `dir`, HTTP on
/// 127.0.0.1:0, DNS from `dns`, MX port `smtp_port`, one tenant with `token_hash`.
pub fn config(
    dir: &Path,
    dns: SocketAddr,
    smtp_port: u16,
    token_hash: &str,
) -> Result<Config, CliError> {
    let text = format!(
        r#"
[spool]
path = "{spool}"
[http]
listen = "127.0.0.1:0"
[smtp]
hostname = "volley.{SUFFIX}"
[dns]
nameservers = ["{dns}"]
[delivery]
smtp_port = {smtp_port}
tls = "disabled"
retry_schedule = ["1s", "5s"]
[log]
delivery = "{log}"
[[tenant]]
name = "demo"
api_tokens = ["{token_hash}"]
"#,
        spool = toml_path(&dir.join("spool")),
        log = toml_path(&dir.join("delivery.jsonl")),
    );
    Config::from_toml_str(&text)
        .map_err(|e| CliError::runtime(format!("the demo's embedded configuration: {e}")))
}

/// A path as a TOML basic string's content.
fn toml_path(p: &Path) -> String {
    p.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_and_config_parse() {
        let z = zone(3, 2);
        assert!(
            z.contains("d2.demo.volley.test. IN MX 10 mx0.demo.volley.test."),
            "{z}"
        );
        assert!(z.contains("mx1.demo.volley.test. IN A 127.0.0.3"), "{z}");
        let hash = crate::cli::hash::token_hash("t");
        let c = config(
            Path::new("/tmp/x"),
            "127.0.0.1:53".parse().unwrap(),
            2525,
            &hash,
        )
        .unwrap();
        assert_eq!(c.delivery.smtp_port, 2525);
        assert_eq!(sink_ip(9), Ipv4Addr::new(127, 0, 0, 11));
    }
}
