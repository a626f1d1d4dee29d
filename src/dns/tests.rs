//! Routing against a real DNS server on loopback ([`TestDnsServer`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::RecordType;

use super::*;
use crate::smtp::status::EnhancedStatus;

/// Negative answers carry the root SOA: minimum 1s, so negative caching expires fast.
const ZONE: &str = r#"
$TTL 300
@                    IN SOA  ns.test. hostmaster.test. 1 3600 600 86400 1

multi.test.          IN MX   20 mx2.provider.test.
multi.test.          IN MX   10 mx1.provider.test.
same.test.           IN MX   50 MX1.Provider.test.
same.test.           IN MX   5  mx2.provider.test.
other.test.          IN MX   10 mx3.other.test.
mx1.provider.test.   IN A    192.0.2.1
mx1.provider.test.   IN AAAA 2001:db8::1
mx2.provider.test.   IN A    192.0.2.2
mx3.other.test.      IN A    192.0.2.3

implicit.test.       IN AAAA 2001:db8::10
implicit.test.       IN A    192.0.2.10
nomail.test.         IN TXT  "v=spf1 -all"
nullmx.test.         IN MX   0 .
broken.test.         IN MX   10 mx1.provider.test.
slow.test.           IN MX   10 mx1.provider.test.
noaddr.test.         IN MX   10 ghost.test.
partial.test.        IN MX   10 ghost.test.
partial.test.        IN MX   20 mx2.provider.test.
short.test.        1 IN MX   10 mx1.provider.test.
relay.test.          IN A    192.0.2.99
"#;

async fn server(extra: &str) -> TestDnsServer {
    let zone = format!("{ZONE}{extra}");
    TestDnsServer::start(&zone, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("test DNS server starts")
}

/// Short timeouts, no TTL floor, long negative/failure caching unless a test
/// changes them.
fn config(server: &TestDnsServer) -> DnsConfig {
    let mut config = DnsConfig::with_nameservers(vec![server.addr()]);
    config.timeout = Duration::from_millis(500);
    config.attempts = 1;
    config.min_ttl = Duration::ZERO;
    config.failure_ttl = Duration::from_secs(3600);
    config
}

fn router(server: &TestDnsServer) -> Router {
    Router::new(&config(server), Vec::new()).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[tokio::test]
async fn mx_hosts_by_preference_with_addresses() {
    let dns = server("").await;
    let router = router(&dns);
    let route = router.route("multi.test").await.unwrap();
    assert_eq!(route.kind, RouteKind::Mx);
    assert_eq!(route.port(), None);
    let hosts: Vec<(&str, u16, &[IpAddr])> = route
        .hosts
        .iter()
        .map(|h| (&*h.name, h.preference, &h.addrs[..]))
        .collect();
    assert_eq!(
        hosts,
        [
            (
                "mx1.provider.test",
                10,
                &[ip("192.0.2.1"), ip("2001:db8::1")][..]
            ),
            ("mx2.provider.test", 20, &[ip("192.0.2.2")][..]),
        ]
    );
    assert_eq!(route.site.as_str(), "mx1.provider.test,mx2.provider.test");
    assert_eq!(route.addrs().count(), 3);
    // Any spelling of the domain is the same cache entry.
    let again = router.route("MULTI.Test.").await.unwrap();
    assert!(Arc::ptr_eq(&route, &again));
}

#[tokio::test]
async fn implicit_mx_and_no_mail_host() {
    let dns = server("").await;
    let router = router(&dns);
    let route = router.route("implicit.test").await.unwrap();
    assert_eq!(route.kind, RouteKind::ImplicitMx);
    assert_eq!(route.site.as_str(), "implicit.test");
    assert_eq!(route.hosts.len(), 1);
    assert_eq!(&*route.hosts[0].name, "implicit.test");
    assert_eq!(route.hosts[0].preference, 0);
    assert_eq!(route.hosts[0].addrs, [ip("192.0.2.10"), ip("2001:db8::10")]);

    let err = router.route("nomail.test").await.unwrap_err();
    assert!(matches!(err, RouteError::NoMailHost { .. }), "{err:?}");
    assert!(err.is_permanent());
    assert_eq!(err.enhanced_status(), EnhancedStatus::new(5, 1, 2));
}

#[tokio::test]
async fn null_mx_and_nxdomain_are_permanent() {
    let dns = server("").await;
    let router = router(&dns);
    let err = router.route("nullmx.test").await.unwrap_err();
    assert!(matches!(err, RouteError::NullMx { .. }), "{err:?}");
    assert!(err.is_permanent());
    let reply = err.reply();
    assert_eq!(reply.code.get(), 556);
    assert_eq!(reply.enhanced, Some(EnhancedStatus::new(5, 1, 10)));

    let err = router.route("nowhere.test").await.unwrap_err();
    assert!(matches!(err, RouteError::NxDomain { .. }), "{err:?}");
    assert!(err.is_permanent() && !err.is_transient());
    assert_eq!(err.reply().code.get(), 550);
    assert_eq!(err.enhanced_status(), EnhancedStatus::new(5, 1, 2));
    assert_eq!(err.domain(), "nowhere.test");

    let err = router.route("bad domain.test").await.unwrap_err();
    assert!(matches!(err, RouteError::InvalidDomain { .. }) && err.is_permanent());
}

#[tokio::test]
async fn servfail_is_transient_and_cached_briefly() {
    let dns = server("").await;
    let mut config = config(&dns);
    config.failure_ttl = Duration::from_millis(300);
    let router = Router::new(&config, Vec::new()).unwrap();
    dns.servfail("broken.test");
    let err = router.route("broken.test").await.unwrap_err();
    assert!(matches!(err, RouteError::DnsFailure { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(err.enhanced_status(), EnhancedStatus::new(4, 4, 3));
    assert_eq!(err.reply().code.get(), 451);
    let asked = dns.queries("broken.test", RecordType::MX);
    assert!(asked >= 1);
    // Cached: no new query while the failure is fresh.
    assert!(router.route("broken.test").await.is_err());
    assert_eq!(dns.queries("broken.test", RecordType::MX), asked);
    // Fixed upstream; after failure_ttl the next route asks again and succeeds.
    dns.heal("broken.test");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let route = router.route("broken.test").await.unwrap();
    assert_eq!(route.hosts[0].name.as_ref(), "mx1.provider.test");
}

#[tokio::test]
async fn timeout_is_transient() {
    let dns = server("").await;
    let mut config = config(&dns);
    config.timeout = Duration::from_millis(200);
    let router = Router::new(&config, Vec::new()).unwrap();
    dns.silence("slow.test");
    let err = router.route("slow.test").await.unwrap_err();
    assert!(matches!(err, RouteError::DnsFailure { .. }), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn hosts_without_addresses_are_skipped() {
    let dns = server("").await;
    let router = router(&dns);
    let route = router.route("partial.test").await.unwrap();
    let names: Vec<&str> = route.hosts.iter().map(|h| &*h.name).collect();
    assert_eq!(names, ["mx2.provider.test"]);
    // The site is the whole MX set, not just the hosts that resolved.
    assert_eq!(route.site.as_str(), "ghost.test,mx2.provider.test");

    let err = router.route("noaddr.test").await.unwrap_err();
    assert!(matches!(err, RouteError::NoAddresses { .. }), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn ttl_cache_hit_then_expiry() {
    let dns = server("").await;
    let router = router(&dns);
    router.route("multi.test").await.unwrap();
    router.route("multi.test").await.unwrap();
    assert_eq!(dns.queries("multi.test", RecordType::MX), 1);

    // short.test's MX has TTL 1s: the route expires and is asked again.
    router.route("short.test").await.unwrap();
    router.route("short.test").await.unwrap();
    assert_eq!(dns.queries("short.test", RecordType::MX), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    router.route("short.test").await.unwrap();
    assert_eq!(dns.queries("short.test", RecordType::MX), 2);

    // A TTL floor keeps it longer than its record says.
    let mut floor = config(&dns);
    floor.min_ttl = Duration::from_secs(60);
    let router = Router::new(&floor, Vec::new()).unwrap();
    router.route("short.test").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let route = router.route("short.test").await.unwrap();
    assert_eq!(dns.queries("short.test", RecordType::MX), 3);
    assert!(route.expires > std::time::Instant::now() + Duration::from_secs(50));
}

#[tokio::test]
async fn negative_answers_cached_for_soa_minimum() {
    let dns = server("").await;
    let router = router(&dns);
    assert!(router.route("later.test").await.unwrap_err().is_permanent());
    assert!(router.route("later.test").await.is_err());
    assert_eq!(dns.queries("later.test", RecordType::MX), 1);
    // The domain appears; the NXDOMAIN (SOA minimum 1s) expires and is asked again.
    dns.set_zone(&format!("{ZONE}later.test. IN MX 10 mx3.other.test.\n"))
        .unwrap();
    assert!(router.route("later.test").await.is_err());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let route = router.route("later.test").await.unwrap();
    assert_eq!(route.site.as_str(), "mx3.other.test");
    assert_eq!(dns.queries("later.test", RecordType::MX), 2);
}

#[tokio::test]
async fn equal_mx_sets_share_a_site() {
    let dns = server("").await;
    let router = router(&dns);
    let multi = router.route("multi.test").await.unwrap();
    let same = router.route("same.test").await.unwrap();
    let other = router.route("other.test").await.unwrap();
    assert_eq!(
        multi.site, same.site,
        "same hosts, other preferences and case"
    );
    assert_ne!(multi.site, other.site);
    assert_eq!(same.hosts[0].name.as_ref(), "mx2.provider.test");
}

#[tokio::test]
async fn smarthost_overrides() {
    let dns = server("").await;
    let relay = RouteOverride {
        domains: vec!["*.corp.test".into(), "corp.test".into()],
        host: "relay.test".into(),
        port: 2525,
        username: Some("volley".into()),
        password: Some("secret".into()),
        tls: true,
    };
    let literal = RouteOverride {
        domains: vec!["literal.test".into()],
        ..RouteOverride::all("[::1]", 25)
    };
    let router = Router::new(&config(&dns), vec![relay.clone(), literal]).unwrap();

    let a = router.route("a.corp.test").await.unwrap();
    let b = router.route("corp.test").await.unwrap();
    assert!(
        Arc::ptr_eq(&a, &b),
        "one entry per relay, shared by its domains"
    );
    assert_eq!(a.site.as_str(), "smarthost:relay.test:2525");
    assert_eq!(a.port(), Some(2525));
    assert_eq!(a.smarthost(), Some(&relay));
    assert_eq!(a.hosts[0].addrs, [ip("192.0.2.99")]);
    assert_eq!(dns.queries("relay.test", RecordType::A), 1);
    assert_eq!(dns.queries("a.corp.test", RecordType::MX), 0);

    let lit = router.route("literal.test").await.unwrap();
    assert_eq!(lit.hosts[0].addrs, [ip("::1")]);
    assert_eq!(lit.site.as_str(), "smarthost:[::1]:25");

    let direct = router.route("multi.test").await.unwrap();
    assert_eq!(direct.kind, RouteKind::Mx);

    // One relay for everything.
    let all = Router::new(&config(&dns), vec![RouteOverride::all("relay.test", 25)]).unwrap();
    let route = all.route("nowhere.test").await.unwrap();
    assert_eq!(route.site.as_str(), "smarthost:relay.test:25");
}

#[tokio::test]
async fn concurrent_lookups_coalesce() {
    let dns = server("").await;
    dns.set_delay(Duration::from_millis(200));
    let router = router(&dns);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let router = router.clone();
        tasks.spawn(async move { router.route("multi.test").await });
    }
    let mut routes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        routes.push(joined.unwrap().unwrap());
    }
    assert!(routes.iter().all(|r| Arc::ptr_eq(r, &routes[0])));
    assert_eq!(dns.queries("multi.test", RecordType::MX), 1);
    assert_eq!(dns.queries("mx1.provider.test", RecordType::A), 1);
}

#[tokio::test]
async fn address_literals_need_no_dns() {
    let dns = server("").await;
    let router = router(&dns);
    let v4 = router.route("[192.0.2.7]").await.unwrap();
    assert_eq!(v4.kind, RouteKind::AddressLiteral);
    assert_eq!(v4.hosts[0].addrs, [ip("192.0.2.7")]);
    let v6 = router.route("[IPv6:2001:db8::7]").await.unwrap();
    assert_eq!(v6.hosts[0].addrs, [ip("2001:db8::7")]);
    assert!(router
        .route("[not-an-ip]")
        .await
        .unwrap_err()
        .is_permanent());
    assert_eq!(dns.total_queries(), 0);
}

#[tokio::test]
async fn large_answers_fall_back_to_tcp() {
    let mut extra = String::new();
    for i in 0..30 {
        extra.push_str(&format!(
            "big.test. IN MX {i} mx{i:02}.a-rather-long-provider-name.test.\n"
        ));
    }
    extra.push_str("mx00.a-rather-long-provider-name.test. IN A 192.0.2.50\n");
    let dns = server(&extra).await;
    let route = router(&dns).route("big.test").await.unwrap();
    assert!(
        dns.tcp_queries() >= 1,
        "the MX answer was truncated over UDP"
    );
    assert_eq!(route.hosts.len(), 1);
    assert_eq!(route.hosts[0].addrs, [ip("192.0.2.50")]);
    assert_eq!(
        route.site.as_str().split(',').count(),
        resolve::MAX_MX_HOSTS
    );
}

#[tokio::test]
async fn test_server_refuses_non_loopback() {
    let err = TestDnsServer::start(ZONE, "0.0.0.0:0".parse().unwrap()).await;
    assert!(matches!(err, Err(TestDnsError::NotLoopback(_))));
    let err = TestDnsServer::start("bad zone ((", "127.0.0.1:0".parse().unwrap()).await;
    assert!(matches!(err, Err(TestDnsError::Zone(_))));
}

#[test]
fn config_from_toml() {
    let config: DnsConfig = toml::from_str(
        r#"
        nameservers = ["127.0.0.1:5353"]
        timeout = "500ms"
        max_ttl = "2h"
        "#,
    )
    .unwrap();
    assert_eq!(config.nameservers, ["127.0.0.1:5353".parse().unwrap()]);
    assert_eq!(config.timeout, Duration::from_millis(500));
    assert_eq!(config.max_ttl, Duration::from_secs(7200));
    assert_eq!(config.attempts, DnsConfig::default().attempts);
    assert!(toml::from_str::<DnsConfig>("nameserver = []").is_err());
    assert!(toml::from_str::<DnsConfig>("timeout = \"soon\"").is_err());

    let o: RouteOverride = toml::from_str(r#"host = "relay.example.net""#).unwrap();
    assert_eq!((o.port, o.tls, o.domains.len()), (25, false, 0));
    assert!(toml::from_str::<RouteOverride>("host = \"h\"\nprot = 1").is_err());
}

#[tokio::test]
async fn mx_host_addresses_are_shared_by_domains_until_their_ttl() {
    let hosts = "one.shared.test. IN MX 10 mx.shared.test.\n\
                 two.shared.test. IN MX 10 mx.shared.test.\n\
                 three.shared.test. IN MX 10 mx.shared.test.\n";
    let dns = server(&format!("{hosts}mx.shared.test. 1 IN A 192.0.2.50\n")).await;
    let router = router(&dns);
    let one = router.route("one.shared.test").await.unwrap();
    let two = router.route("two.shared.test").await.unwrap();
    assert_eq!(one.hosts[0].addrs, [ip("192.0.2.50")]);
    assert_eq!(two.hosts[0].addrs, [ip("192.0.2.50")]);
    assert_eq!(one.site, two.site);
    assert_eq!(dns.queries("mx.shared.test", RecordType::A), 1);
    // The host's record expires: the next domain through it sees the new address.
    dns.set_zone(&format!("{ZONE}{hosts}mx.shared.test. 1 IN A 192.0.2.51\n"))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let three = router.route("three.shared.test").await.unwrap();
    assert_eq!(three.hosts[0].addrs, [ip("192.0.2.51")]);
    assert_eq!(dns.queries("mx.shared.test", RecordType::A), 2);
}
