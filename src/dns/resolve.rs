//! One routing decision, uncached: MX lookup, null/implicit MX, host addresses,
//! failure classification and how long the answer stays fresh.
//!
//! The [`Router`](super::Router) wraps this with its cache and query coalescing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, TokioResolver};
use tokio::task::JoinSet;

use super::config::{DnsConfig, RouteOverride};
use super::route::{MxHost, Route, RouteError, RouteKind, SiteId};

/// At most this many MX hosts (the most preferred) are resolved and kept in a
/// route; more are a misconfiguration or an attempt to make us do work.
pub const MAX_MX_HOSTS: usize = 16;

/// A routing outcome and when it stops being fresh.
#[derive(Debug, Clone)]
pub(super) struct Answer {
    /// The route, or why there is none.
    pub result: Result<Arc<Route>, RouteError>,
    /// Ask DNS again after this.
    pub expires: Instant,
}

/// Cache lifetimes taken from [`DnsConfig`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Ttls {
    min: Duration,
    max: Duration,
    negative: Duration,
    failure: Duration,
}

impl Ttls {
    pub fn new(config: &DnsConfig) -> Self {
        Ttls {
            min: config.min_ttl,
            max: config.max_ttl,
            negative: config.negative_ttl,
            failure: config.failure_ttl,
        }
    }

    /// A positive answer valid until `valid_until` (the earliest record expiry),
    /// clamped to `[min, max]` from now.
    fn positive(&self, now: Instant, valid_until: Instant) -> Instant {
        now + valid_until
            .saturating_duration_since(now)
            .clamp(self.min, self.max)
    }

    /// A permanent negative answer: the SOA's negative TTL if the answer had one,
    /// else the configured time; clamped to `[min, max]`.
    fn negative(&self, now: Instant, soa_ttl: Option<u32>) -> Instant {
        let ttl = soa_ttl.map_or(self.negative, |s| Duration::from_secs(u64::from(s)));
        now + ttl.clamp(self.min, self.max)
    }

    /// A transient failure: retried after the (short) failure time.
    fn failure(&self, now: Instant) -> Instant {
        now + self.failure
    }
}

/// What a failed lookup means.
#[derive(Debug)]
enum Failure {
    /// NXDOMAIN, with the SOA negative TTL if present.
    NxDomain(Option<u32>),
    /// The name exists but has no records of the type asked (NOERROR, no answer).
    NoData(Option<u32>),
    /// SERVFAIL, REFUSED, timeout, I/O: try again later.
    Transient(String),
}

fn classify(err: &ResolveError) -> Failure {
    if let Some(proto) = err.proto() {
        match proto.kind() {
            ProtoErrorKind::NoRecordsFound {
                response_code,
                negative_ttl,
                ..
            } => {
                return match *response_code {
                    ResponseCode::NXDomain => Failure::NxDomain(*negative_ttl),
                    ResponseCode::NoError => Failure::NoData(*negative_ttl),
                    code => Failure::Transient(format!("{code} (rcode {})", u16::from(code))),
                }
            }
            ProtoErrorKind::Timeout => return Failure::Transient("timed out".into()),
            _ => {}
        }
    }
    Failure::Transient(err.to_string())
}

/// A DNS name as text: lowercase ASCII without the trailing dot.
fn name_text(name: &Name) -> String {
    let mut text = name.to_lowercase().to_ascii();
    if text.ends_with('.') {
        text.pop();
    }
    text
}

/// A fully qualified name for a query (so search domains never apply).
fn fqdn(text: &str) -> Option<Name> {
    let mut name = Name::from_ascii(text).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// The A and AAAA answers for one host.
#[derive(Debug, Default)]
struct HostAnswer {
    /// IPv4 addresses first, then IPv6.
    addrs: Vec<IpAddr>,
    /// Earliest expiry among the positive answers.
    valid_until: Option<Instant>,
    /// A transient failure of either lookup, for the log.
    failure: Option<String>,
    /// Negative TTL from an NXDOMAIN/NODATA answer, if any.
    negative_ttl: Option<u32>,
}

/// Addresses of MX hosts, shared by every domain routed through them: with
/// 100,000 domains on ten MX hosts, routing a domain costs its MX query and
/// not two more lookups and a task per host. Only complete positive answers are
/// kept, until their earliest record expiry; bounded (emptied when full).
#[derive(Debug)]
pub(super) struct HostCache {
    map: Mutex<HashMap<Name, (Vec<IpAddr>, Instant)>>,
    capacity: usize,
}

impl HostCache {
    pub fn new(capacity: usize) -> HostCache {
        HostCache {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Name, (Vec<IpAddr>, Instant)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, name: &Name, now: Instant) -> Option<HostAnswer> {
        let map = self.lock();
        let (addrs, until) = map.get(name)?;
        (*until > now).then(|| HostAnswer {
            addrs: addrs.clone(),
            valid_until: Some(*until),
            ..HostAnswer::default()
        })
    }

    fn put(&self, name: &Name, answer: &HostAnswer) {
        let Some(until) = answer.valid_until else {
            return;
        };
        if answer.addrs.is_empty() || answer.failure.is_some() {
            return;
        }
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(name.clone(), (answer.addrs.clone(), until));
    }
}

async fn host_addrs(resolver: &TokioResolver, name: Name) -> HostAnswer {
    let (v4, v6) = tokio::join!(
        resolver.lookup(name.clone(), RecordType::A),
        resolver.lookup(name.clone(), RecordType::AAAA)
    );
    let mut answer = HostAnswer::default();
    for (rtype, result) in [("A", v4), ("AAAA", v6)] {
        match result {
            Ok(lookup) => {
                let before = answer.addrs.len();
                answer.addrs.extend(lookup.record_iter().filter_map(
                    |record| match record.data() {
                        RData::A(a) => Some(IpAddr::V4(a.0)),
                        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                        _ => None,
                    },
                ));
                if answer.addrs.len() > before {
                    let until = lookup.valid_until();
                    answer.valid_until = Some(answer.valid_until.map_or(until, |u| u.min(until)));
                }
            }
            Err(err) => match classify(&err) {
                Failure::NxDomain(ttl) | Failure::NoData(ttl) => {
                    answer.negative_ttl = answer.negative_ttl.or(ttl);
                }
                Failure::Transient(why) => {
                    answer.failure = Some(format!("{rtype} {}: {why}", name_text(&name)));
                }
            },
        }
    }
    answer
}

/// Resolves a domain (lowercase ASCII, no trailing dot, not an address literal).
pub(super) async fn resolve_domain(
    resolver: &TokioResolver,
    hosts: &HostCache,
    ttls: &Ttls,
    domain: &Arc<str>,
) -> Answer {
    let Some(name) = fqdn(domain) else {
        return Answer {
            result: Err(RouteError::InvalidDomain {
                domain: domain.clone(),
            }),
            expires: ttls.negative(Instant::now(), None),
        };
    };
    let lookup = resolver.lookup(name.clone(), RecordType::MX).await;
    let now = Instant::now();
    let lookup = match lookup {
        Ok(lookup) => lookup,
        Err(err) => {
            return match classify(&err) {
                Failure::NxDomain(ttl) => Answer {
                    result: Err(RouteError::NxDomain {
                        domain: domain.clone(),
                    }),
                    expires: ttls.negative(now, ttl),
                },
                Failure::NoData(ttl) => implicit_mx(resolver, ttls, domain, name, ttl).await,
                Failure::Transient(why) => Answer {
                    result: Err(RouteError::DnsFailure {
                        domain: domain.clone(),
                        detail: format!("MX {domain}: {why}").into(),
                    }),
                    expires: ttls.failure(now),
                },
            };
        }
    };
    let mut mx: Vec<(u16, Name)> = lookup
        .record_iter()
        .filter_map(|record| match record.data() {
            RData::MX(mx) => Some((mx.preference(), mx.exchange().to_lowercase())),
            _ => None,
        })
        .collect();
    if mx.is_empty() {
        // An answer with no MX in it (e.g. only a CNAME chain): as NODATA.
        return implicit_mx(resolver, ttls, domain, name, None).await;
    }
    if mx.len() == 1 && mx[0].1.is_root() {
        return Answer {
            result: Err(RouteError::NullMx {
                domain: domain.clone(),
            }),
            expires: ttls.positive(now, lookup.valid_until()),
        };
    }
    // A "." among real hosts breaks RFC 7505 section 3; ignore that record.
    mx.retain(|(_, exchange)| !exchange.is_root());
    mx.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut seen = std::collections::HashSet::new();
    mx.retain(|(_, exchange)| seen.insert(exchange.clone()));
    mx.truncate(MAX_MX_HOSTS);

    let mut names: Vec<String> = mx.iter().map(|(_, exchange)| name_text(exchange)).collect();
    let site = {
        let mut sorted = names.clone();
        sorted.sort();
        SiteId::new(sorted.join(","))
    };

    let mut answers: Vec<Option<HostAnswer>> = (0..mx.len()).map(|_| None).collect();
    let mut tasks = JoinSet::new();
    for (index, (_, exchange)) in mx.iter().enumerate() {
        if let Some(cached) = hosts.get(exchange, now) {
            answers[index] = Some(cached);
            continue;
        }
        let resolver = resolver.clone();
        let exchange = exchange.clone();
        tasks.spawn(async move { (index, host_addrs(&resolver, exchange).await) });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, answer)) = joined {
            if let (Some(slot), Some((_, exchange))) = (answers.get_mut(index), mx.get(index)) {
                hosts.put(exchange, &answer);
                *slot = Some(answer);
            }
        }
    }

    let now = Instant::now();
    let mut valid_until = lookup.valid_until();
    let mut failure: Option<String> = None;
    let mut hosts = Vec::with_capacity(mx.len());
    for ((preference, _), (name, answer)) in mx.iter().zip(names.drain(..).zip(answers)) {
        let answer = answer.unwrap_or_else(|| HostAnswer {
            failure: Some(format!("{name}: address lookup task failed")),
            ..HostAnswer::default()
        });
        if let Some(why) = answer.failure {
            failure.get_or_insert(why);
        }
        if answer.addrs.is_empty() {
            continue;
        }
        if let Some(until) = answer.valid_until {
            valid_until = valid_until.min(until);
        }
        hosts.push(MxHost {
            name: name.into(),
            preference: *preference,
            addrs: answer.addrs,
        });
    }
    if hosts.is_empty() {
        let error = match failure {
            Some(why) => RouteError::DnsFailure {
                domain: domain.clone(),
                detail: why.into(),
            },
            None => RouteError::NoAddresses {
                domain: domain.clone(),
            },
        };
        return Answer {
            result: Err(error),
            expires: ttls.failure(now),
        };
    }
    let mut expires = ttls.positive(now, valid_until);
    if failure.is_some() {
        // Some host failed transiently: look again soon rather than keep it out.
        expires = expires.min(ttls.failure(now));
    }
    Answer {
        result: Ok(Arc::new(Route {
            site,
            hosts,
            kind: RouteKind::Mx,
            expires,
        })),
        expires,
    }
}

/// No MX records: the domain's own addresses, as one host of preference 0
/// (RFC 5321 5.1). No addresses either: the domain cannot receive mail.
async fn implicit_mx(
    resolver: &TokioResolver,
    ttls: &Ttls,
    domain: &Arc<str>,
    name: Name,
    mx_negative_ttl: Option<u32>,
) -> Answer {
    let answer = host_addrs(resolver, name).await;
    let now = Instant::now();
    if let Some(valid_until) = answer.valid_until.filter(|_| !answer.addrs.is_empty()) {
        let expires = ttls.positive(now, valid_until);
        return Answer {
            result: Ok(Arc::new(Route {
                site: SiteId::new(domain.clone()),
                hosts: vec![MxHost {
                    name: domain.clone(),
                    preference: 0,
                    addrs: answer.addrs,
                }],
                kind: RouteKind::ImplicitMx,
                expires,
            })),
            expires,
        };
    }
    match answer.failure {
        Some(why) => Answer {
            result: Err(RouteError::DnsFailure {
                domain: domain.clone(),
                detail: why.into(),
            }),
            expires: ttls.failure(now),
        },
        None => Answer {
            result: Err(RouteError::NoMailHost {
                domain: domain.clone(),
            }),
            expires: ttls.negative(now, answer.negative_ttl.or(mx_negative_ttl)),
        },
    }
}

/// Resolves a smarthost's host. Every failure is transient: a relay we were told
/// to use that does not resolve is our problem, not the recipient's.
pub(super) async fn resolve_smarthost(
    resolver: &TokioResolver,
    ttls: &Ttls,
    smarthost: &Arc<RouteOverride>,
) -> Answer {
    let site = SiteId::new(smarthost.site_key());
    let host = smarthost.host.trim().to_ascii_lowercase();
    let now = Instant::now();
    let route = |addrs: Vec<IpAddr>, name: String, expires: Instant| Answer {
        result: Ok(Arc::new(Route {
            site: site.clone(),
            hosts: vec![MxHost {
                name: name.into(),
                preference: 0,
                addrs,
            }],
            kind: RouteKind::Smarthost(smarthost.clone()),
            expires,
        })),
        expires,
    };
    if let Some(ip) = smarthost.host_ip() {
        return route(vec![ip], ip.to_string(), now + ttls.max);
    }
    let failed = |error: RouteError| Answer {
        result: Err(error),
        expires: ttls.failure(Instant::now()),
    };
    let domain: Arc<str> = host.as_str().into();
    let Some(name) = fqdn(host.trim_end_matches('.')) else {
        return failed(RouteError::DnsFailure {
            domain,
            detail: "smarthost host is not a valid name".into(),
        });
    };
    let answer = host_addrs(resolver, name).await;
    match (answer.valid_until, answer.failure) {
        (Some(valid_until), _) if !answer.addrs.is_empty() => {
            let expires = ttls.positive(Instant::now(), valid_until);
            route(answer.addrs, host.trim_end_matches('.').to_owned(), expires)
        }
        (_, Some(why)) => failed(RouteError::DnsFailure {
            domain,
            detail: format!("smarthost {why}").into(),
        }),
        (_, None) => failed(RouteError::NoAddresses { domain }),
    }
}

/// The route of an address-literal domain (`[192.0.2.1]`, `[IPv6:2001:db8::1]`,
/// RFC 5321 4.1.3), or `None` if `domain` is not one. No DNS involved.
pub(super) fn address_literal(domain: &str, ttls: &Ttls) -> Option<Result<Arc<Route>, RouteError>> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    let ip: Option<IpAddr> = match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => inner[5..]
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(IpAddr::V6),
        _ => inner.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    };
    let Some(ip) = ip else {
        return Some(Err(RouteError::InvalidDomain {
            domain: domain.into(),
        }));
    };
    let literal: Arc<str> = domain.into();
    Some(Ok(Arc::new(Route {
        site: SiteId::new(literal.clone()),
        hosts: vec![MxHost {
            name: literal,
            preference: 0,
            addrs: vec![ip],
        }],
        kind: RouteKind::AddressLiteral,
        expires: Instant::now() + ttls.max,
    })))
}
