//! What Volley and Postfix are both pointed at: the workloads, the test domains,
//! their MX assignment (a DNS zone for Volley, the same routes as a Postfix
//! `transport_maps` table), and Volley's configuration.
//!
//! Domain `i` is `d{i}.SUFFIX` (what `volley-load blast --domains N
//! --domain-suffix SUFFIX` sends to); its MX is sink `i % sinks`, at
//! `sink_base + (i % sinks)`, port `sink_port` for every sink.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

/// The DNS suffix of every test domain and MX host (`.test` is reserved, RFC 2606).
pub const SUFFIX: &str = "vsp.volley.test";

/// The first sink's address by default: away from the addresses the test suites
/// (127.0.0.x, 127.0.14-16.x) and `volley-load scenario` (127.0.40.x) use.
pub const DEFAULT_SINK_BASE: Ipv4Addr = Ipv4Addr::new(127, 0, 50, 2);

/// One of issue 6's scenarios, as SMTP transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// 4 KB messages, one recipient each.
    A,
    /// One 4 KB body to 1,000 recipients per transaction (one in each domain).
    B,
    /// 100 KB messages, one recipient each.
    C,
}

impl Workload {
    /// Message size in bytes, headers included.
    pub fn size(self) -> usize {
        match self {
            Workload::A | Workload::B => 4096,
            Workload::C => 100 * 1024,
        }
    }

    /// Recipients per transaction. 1,000 is both Volley's `smtp.max_recipients`
    /// and Postfix's `smtpd_recipient_limit` default.
    pub fn rcpts_per_msg(self) -> u32 {
        match self {
            Workload::A | Workload::C => 1,
            Workload::B => 1_000,
        }
    }

    /// Transactions per side when `--messages` is not given: enough that Volley
    /// runs for several seconds past its start-up (first DNS lookups and
    /// connections), and Postfix for a minute or two, on this 2-core machine.
    pub fn default_messages(self) -> u64 {
        match self {
            Workload::A => 50_000,
            Workload::B => 300,
            Workload::C => 20_000,
        }
    }

    /// The letter, for the report.
    pub fn name(self) -> &'static str {
        match self {
            Workload::A => "a",
            Workload::B => "b",
            Workload::C => "c",
        }
    }
}

/// The address of sink `j`.
pub fn sink_ip(base: Ipv4Addr, j: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base).wrapping_add(j))
}

/// The name of test domain `i`.
pub fn domain(i: u64) -> String {
    format!("d{i}.{SUFFIX}")
}

/// The sink that is domain `i`'s MX.
fn mx_of(i: u64, sinks: u32) -> u32 {
    (i % u64::from(sinks.max(1))) as u32
}

/// Volley's view: `d{i} MX 10 mx{i % sinks}`, `mx{j} A base + j`.
pub fn zone_text(domains: u64, sinks: u32, base: Ipv4Addr) -> String {
    let mut z = String::with_capacity(64 * domains as usize + 1024);
    z.push_str("$TTL 3600\n");
    let _ = writeln!(
        z,
        "{SUFFIX}. IN SOA ns.{SUFFIX}. hostmaster.{SUFFIX}. 1 3600 600 86400 300"
    );
    for i in 0..domains {
        let _ = writeln!(z, "{}. IN MX 10 mx{}.{SUFFIX}.", domain(i), mx_of(i, sinks));
    }
    for j in 0..sinks.max(1) {
        let _ = writeln!(z, "mx{j}.{SUFFIX}. IN A {}", sink_ip(base, j));
    }
    z
}

/// Postfix's view of the same routes, a `texthash:` table for `transport_maps`:
/// `d{i}.SUFFIX smtp:[base + i % sinks]:PORT`. Brackets mean "this host, no MX
/// lookup": Postfix gets static routing, no DNS at all.
pub fn transport_table(domains: u64, sinks: u32, base: Ipv4Addr, port: u16) -> String {
    let mut t = String::with_capacity(64 * domains as usize);
    for i in 0..domains {
        let ip = sink_ip(base, mx_of(i, sinks));
        let _ = writeln!(t, "{} smtp:[{ip}]:{port}", domain(i));
    }
    t
}

/// Every setting of Volley's configuration that is not its default, and why:
/// - `spool.path` in the run's directory (`sync = true`, the default, is spelled
///   out: acknowledged means fsynced, as for Postfix);
/// - `[smtp.relay]` on `relay` for 127.0.0.0/8 (the blaster's address): the SMTP
///   ingest path, as Postfix's `mynetworks`;
/// - `smtp.max_connections_per_ip` raised to 1,000 so `--connections` above the
///   default 50 is not refused (Postfix exempts `mynetworks` from its limit);
/// - `dns.nameservers` = the run's DNS server; `delivery.smtp_port` = the sinks'
///   port; `delivery.tls = "disabled"` (the sinks offer no STARTTLS; Postfix's
///   client default is no TLS too);
/// - `http.listen` on an ephemeral port (unused; it must not collide);
/// - `log.delivery` in the run's directory: one line per delivery, as Postfix's
///   mail log.
pub fn volley_config(dir: &Path, relay: SocketAddr, dns: SocketAddr, sink_port: u16) -> String {
    format!(
        r#"[spool]
path = "{spool}"
sync = true
[http]
listen = "127.0.0.1:0"
[smtp]
hostname = "volley.{SUFFIX}"
max_connections_per_ip = 1000
[smtp.relay]
listen = "{relay}"
allowed_cidrs = ["127.0.0.0/8"]
[dns]
nameservers = ["{dns}"]
[delivery]
smtp_port = {sink_port}
tls = "disabled"
[log]
delivery = "{log}"
"#,
        spool = toml_path(&dir.join("spool")),
        log = toml_path(&dir.join("delivery.jsonl")),
    )
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
    fn zone_and_transport_route_each_domain_to_the_same_sink() {
        let base = DEFAULT_SINK_BASE;
        let zone = zone_text(12, 10, base);
        let table = transport_table(12, 10, base, 2600);
        assert!(zone.contains("d11.vsp.volley.test. IN MX 10 mx1.vsp.volley.test."));
        assert!(zone.contains("mx1.vsp.volley.test. IN A 127.0.50.3"));
        assert!(table.contains("d11.vsp.volley.test smtp:[127.0.50.3]:2600\n"));
        assert!(table.contains("d9.vsp.volley.test smtp:[127.0.50.11]:2600\n"));
        assert_eq!(table.lines().count(), 12);
    }

    #[test]
    fn volley_config_parses() {
        let text = volley_config(
            Path::new("/tmp/vs \"x\""),
            "127.0.50.1:2525".parse().unwrap(),
            "127.0.50.1:5353".parse().unwrap(),
            2600,
        );
        let c = volley::config::Config::from_toml_str(&text).unwrap();
        assert_eq!(c.delivery.smtp_port, 2600);
        assert!(c.smtp.relay.is_some());
    }
}
