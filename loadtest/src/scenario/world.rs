//! A scenario's world, reusable by anything that needs the same receivers: a fresh
//! temporary directory (removed on drop), `N` test domains in a DNS zone served on
//! loopback (`volley::dns::TestDnsServer`), and `volley-load sink` processes on
//! consecutive loopback addresses as their MX hosts.
//!
//! ```ignore
//! let world = World::start(&WorldSpec::new(exe, 1_000)).await?;
//! world.dns_addr();          // nameserver for `dns.nameservers`
//! world.sinks().port();      // `delivery.smtp_port`
//! world.dir();               // scratch space, deleted with the world
//! let totals = world.stop()?; // what the sinks received
//! ```
//!
//! Domain `i` is `d{i}.SUFFIX` (the blaster's `--domains N --domain-suffix SUFFIX`
//! names the same ones); its MX is `mx{i % sinks}.SUFFIX`, which resolves to sink
//! `i % sinks`. So every sink is its own site, each serving `domains / sinks`
//! domains.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use volley::dns::TestDnsServer;

use super::sinks::{nth_ip, SinkFleet, SinkTotals};

/// The DNS suffix of every scenario domain and MX host (`.test` is reserved).
pub const SUFFIX: &str = "scn.volley.test";

/// The first sink address by default: away from the 127.0.0.x, 127.0.1x.x
/// addresses the test suites use.
pub const DEFAULT_SINK_BASE: Ipv4Addr = Ipv4Addr::new(127, 0, 40, 1);

/// What to build.
#[derive(Debug, Clone)]
pub struct WorldSpec {
    /// The `volley-load` binary (the sinks run as `EXE sink ...`).
    pub exe: PathBuf,
    /// Test domains in the zone.
    pub domains: u64,
    /// Sink processes (MX hosts).
    pub sinks: u32,
    /// The first sink's address; the others follow it.
    pub sink_base: Ipv4Addr,
}

impl WorldSpec {
    /// `domains` domains over 10 sinks from [`DEFAULT_SINK_BASE`].
    pub fn new(exe: PathBuf, domains: u64) -> WorldSpec {
        WorldSpec {
            exe,
            domains,
            sinks: 10,
            sink_base: DEFAULT_SINK_BASE,
        }
    }
}

/// The name of test domain `i`.
pub fn domain(i: u64) -> String {
    format!("d{i}.{SUFFIX}")
}

/// The zone: `d{i} MX 10 mx{i % sinks}`, `mx{j} A base + j`.
pub fn zone_text(domains: u64, sinks: u32, base: Ipv4Addr) -> String {
    let sinks = sinks.max(1);
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
        z.push_str(&format!("mx{j}.{SUFFIX}. IN A {}\n", nth_ip(base, j)));
    }
    z
}

/// A directory under the system temp dir, removed (with its contents) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new directory named `volley-scenario-PID-N`.
    pub fn new(prefix: &str) -> anyhow::Result<TempDir> {
        let base = std::env::temp_dir();
        let pid = std::process::id();
        for n in 0..1000u32 {
            let dir = base.join(format!("{prefix}-{pid}-{n}"));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(TempDir(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("creating a directory in {}", base.display()))
                }
            }
        }
        anyhow::bail!("no fresh directory name left in {}", base.display())
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running world. Dropping it kills the sinks, stops DNS and removes the
/// directory; [`World::stop`] also collects the sinks' totals.
pub struct World {
    /// Scratch space (spool, delivery log, configuration).
    dir: TempDir,
    /// The zone's server.
    dns: TestDnsServer,
    /// The MX hosts.
    sinks: SinkFleet,
}

impl World {
    /// Starts the sinks, then DNS (on 127.0.0.1, any port). Needs a tokio runtime.
    pub async fn start(spec: &WorldSpec) -> anyhow::Result<World> {
        anyhow::ensure!(spec.sinks >= 1, "at least one sink");
        anyhow::ensure!(spec.domains >= 1, "at least one domain");
        let dir = TempDir::new("volley-scenario")?;
        let sinks = SinkFleet::start(
            &spec.exe,
            spec.sink_base,
            spec.sinks,
            &format!("sink.{SUFFIX}"),
        )?;
        let zone = zone_text(spec.domains, spec.sinks, spec.sink_base);
        let dns = TestDnsServer::start(&zone, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("starting the DNS server")?;
        Ok(World { dir, dns, sinks })
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The DNS server's address (UDP and TCP).
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns.addr()
    }

    /// Queries the DNS server answered so far.
    pub fn dns_queries(&self) -> u64 {
        self.dns.total_queries()
    }

    /// The sinks.
    pub fn sinks(&self) -> &SinkFleet {
        &self.sinks
    }

    /// Stops the sinks and returns their totals; DNS stops and the directory is
    /// removed.
    pub fn stop(self) -> anyhow::Result<SinkTotals> {
        let World {
            dir, dns, sinks, ..
        } = self;
        let totals = sinks.stop();
        drop(dns);
        drop(dir);
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_points_domains_at_sinks() {
        let z = zone_text(12, 10, DEFAULT_SINK_BASE);
        assert!(
            z.contains("d11.scn.volley.test. IN MX 10 mx1.scn.volley.test."),
            "{z}"
        );
        assert!(z.contains("mx9.scn.volley.test. IN A 127.0.40.10"), "{z}");
    }
}
