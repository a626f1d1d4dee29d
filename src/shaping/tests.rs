use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::limits::host_matches_suffix;
use super::*;
use crate::config::{Config, TlsPolicy};

fn shaping(toml: &str) -> ShapingConfig {
    Config::from_toml_str(toml)
        .unwrap_or_else(|e| panic!("{e}"))
        .shaping
}

#[test]
fn mx_suffix_matches_at_label_boundaries() {
    let yes = [
        (".google.com", "aspmx.l.google.com"),
        (".google.com", "ASPMX.L.GOOGLE.COM"),
        (".google.com", "aspmx.l.google.com."),
        ("google.com", "google.com"),
        ("google.com", "alt1.aspmx.l.google.com"),
    ];
    for (suffix, host) in yes {
        assert!(
            host_matches_suffix(host, suffix),
            "{suffix} should match {host}"
        );
    }
    let no = [
        (".google.com", "google.com"),
        ("google.com", "notgoogle.com"),
        (".google.com", "google.com.evil.example"),
        ("outlook.com", "com"),
    ];
    for (suffix, host) in no {
        assert!(
            !host_matches_suffix(host, suffix),
            "{suffix} should not match {host}"
        );
    }
}

#[test]
fn rules_apply_in_file_order_field_by_field() {
    let cfg = shaping(
        r#"
        [shaping.default]
        max_connections = 32
        [[shaping.rule]]
        mx_suffix = ".google.com"
        max_connections = 20
        max_recipients_per_transaction = 50
        [[shaping.rule]]
        site = "gsite"
        max_connections = 10
        [[shaping.rule]]
        domain = "gmail.com"
        max_recipients_per_transaction = 30
        tls = "required"
        [[shaping.rule]]
        mx_suffix = "google.com"
        max_recipients_per_transaction = 40
        "#,
    );
    let table = ShapingTable::new(&cfg);
    let gmx = [
        "alt1.gmail-smtp-in.l.google.com",
        "gmail-smtp-in.l.google.com",
    ];

    let l = table.limits_for("gmail.com", "gsite", &gmx);
    assert_eq!(l.max_connections, 10, "site rule after mx rule wins");
    assert_eq!(
        l.max_recipients_per_transaction, 40,
        "the later mx rule beats the domain rule"
    );
    assert_eq!(
        l.tls,
        Some(TlsPolicy::Required),
        "fields a later rule leaves alone survive"
    );
    assert_eq!(
        l.max_messages_per_connection, 1000,
        "untouched fields keep the default"
    );

    let l = table.limits_for("googlemail.com", "gsite", &gmx);
    assert_eq!(
        (l.max_connections, l.max_recipients_per_transaction, l.tls),
        (10, 40, None)
    );

    let l = table.limits_for("GMail.COM.", "other", &["mx.other.example"]);
    assert_eq!(
        (l.max_connections, l.max_recipients_per_transaction),
        (32, 30)
    );

    let l = table.limits_for("example.org", "other", &["mx.other.example"]);
    assert_eq!(*l, cfg.default);
}

#[test]
fn lookups_are_cached_and_shared() {
    let cfg =
        shaping("[[shaping.rule]]\ndomain = \"d.example\"\nmax_recipients_per_transaction = 5\n");
    let table = ShapingTable::new(&cfg);
    let a = table.limits_for("a.example", "s1", &["mx1"]);
    let b = table.limits_for("b.example", "s1", &["mx1"]);
    assert!(
        Arc::ptr_eq(&a, &b),
        "domains without rules share their site's entry"
    );
    let d1 = table.limits_for("d.example", "s1", &["mx1"]);
    let d2 = table.limits_for("d.example", "s1", &["mx1"]);
    assert!(Arc::ptr_eq(&d1, &d2));
    assert_eq!(d1.max_recipients_per_transaction, 5);
    assert_eq!(table.cached(), 2);
    table.forget_site("s1");
    assert_eq!(table.cached(), 0);
}

fn manual() -> (Arc<ManualClock>, Arc<dyn Clock>) {
    let clock = Arc::new(ManualClock::new());
    (clock.clone(), clock)
}

#[test]
fn site_and_domain_rates_are_both_enforced() {
    let cfg = shaping(
        "[shaping.default]\nmax_message_rate = \"2/s\"\n\
         [[shaping.rule]]\ndomain = \"slow.example\"\nmax_message_rate = \"1/s\"\n",
    );
    let (clock, dyn_clock) = manual();
    let shaper = Shaper::new(&cfg, dyn_clock);
    let site = shaper.site("s", &["mx.s.example"]);
    assert_eq!(shaper.try_send(&site, "slow.example", 1), Ok(()));
    clock.advance(Duration::from_millis(500));
    // The domain's own rate refuses; the site's is not charged for the refusal.
    assert_eq!(
        shaper.try_send(&site, "slow.example", 1),
        Err(Duration::from_millis(500))
    );
    assert_eq!(shaper.try_send(&site, "fast.example", 1), Ok(()));
    // Now the site's rate is what refuses.
    assert_eq!(
        shaper.try_send(&site, "fast.example", 1),
        Err(Duration::from_millis(500))
    );
    clock.advance(Duration::from_millis(500));
    assert_eq!(shaper.try_send(&site, "slow.example", 1), Ok(()));
}

#[test]
fn throttling_replies_halve_the_rate_until_cool_off() {
    let cfg = shaping(
        "[shaping.default]\nmax_message_rate = \"10/s\"\n[shaping.adaptive]\ncool_off = \"1m\"\n",
    );
    let (clock, dyn_clock) = manual();
    let shaper = Shaper::new(&cfg, dyn_clock);
    let site = shaper.site("s", &["mx.s.example"]);
    assert_eq!(shaper.try_send(&site, "d", 1), Ok(()));
    assert_eq!(
        shaper.try_send(&site, "d", 1),
        Err(Duration::from_millis(100))
    );

    assert!(
        !shaper.on_reply("s", 550, "rate limit"),
        "not a 4xx code in the list"
    );
    assert!(
        !shaper.on_reply("s", 421, "4.3.2 Service shutting down"),
        "no pattern"
    );
    assert!(
        !shaper.on_reply("unknown-site", 421, "Rate limit"),
        "unknown site"
    );
    assert!(shaper.on_reply("s", 421, "4.7.0 Rate Limit exceeded"));
    assert_eq!(site.slowdown(), 2);

    clock.advance(Duration::from_millis(100));
    assert_eq!(shaper.try_send(&site, "d", 1), Ok(()));
    assert_eq!(
        shaper.try_send(&site, "d", 1),
        Err(Duration::from_millis(200))
    );

    assert!(shaper.on_reply("s", 451, "Too many messages, try again later"));
    assert_eq!(site.slowdown(), 4);
    clock.advance(Duration::from_secs(59));
    assert_eq!(
        site.slowdown(),
        4,
        "cool-off restarts at every throttling reply"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(site.slowdown(), 1);
    clock.advance(Duration::from_secs(10));
    assert_eq!(shaper.try_send(&site, "d", 1), Ok(()));
    assert_eq!(
        shaper.try_send(&site, "d", 1),
        Err(Duration::from_millis(100))
    );
}

#[test]
fn slow_down_stops_at_one_per_minute() {
    let cfg = shaping("[shaping.default]\nmax_message_rate = \"1/s\"\n");
    let (_clock, dyn_clock) = manual();
    let shaper = Shaper::new(&cfg, dyn_clock);
    let site = shaper.site("s", &[]);
    for _ in 0..12 {
        assert!(shaper.on_reply("s", 421, "too many connections"));
    }
    assert_eq!(shaper.try_send(&site, "d", 1), Ok(()));
    assert_eq!(shaper.try_send(&site, "d", 1), Err(Duration::from_secs(60)));
}

#[test]
fn without_a_rate_throttling_halves_connections() {
    let cfg = shaping("[shaping.default]\nmax_connections = 8\n");
    let (clock, dyn_clock) = manual();
    let shaper = Shaper::new(&cfg, dyn_clock);
    let site = shaper.site("s", &[]);
    assert!(shaper.on_reply("s", 421, "try again later"));
    assert_eq!(site.connections().max(), 4);
    for _ in 0..5 {
        shaper.on_reply("s", 421, "try again later");
    }
    assert_eq!(site.connections().max(), 1);
    clock.advance(Duration::from_secs(600));
    assert_eq!(site.connections().max(), 8);
}

#[test]
fn connection_rate_spaces_new_connections() {
    let (clock, dyn_clock) = manual();
    let limiter = ConnectionLimiter::new(10, Some(30), dyn_clock);
    let first = limiter.try_acquire().expect("first connection");
    match limiter.try_acquire() {
        Err(Refused::RateLimited(wait)) => assert_eq!(wait, Duration::from_secs(2)),
        other => panic!("expected a rate refusal, got {other:?}"),
    }
    assert_eq!(limiter.in_use(), 1, "a refused attempt holds no slot");
    clock.advance(Duration::from_secs(2));
    let second = limiter.try_acquire().expect("after the spacing");
    drop((first, second));
    assert_eq!(limiter.in_use(), 0);
}

#[test]
fn shrinking_retires_permits_as_connections_close() {
    let (_clock, dyn_clock) = manual();
    let limiter = ConnectionLimiter::new(4, None, dyn_clock);
    let mut held: Vec<_> = (0..4).map(|_| limiter.try_acquire().unwrap()).collect();
    assert_eq!(limiter.try_acquire().unwrap_err(), Refused::AtCapacity);
    limiter.set_max(2);
    assert_eq!((limiter.max(), limiter.in_use()), (2, 4));
    held.pop();
    held.pop();
    assert_eq!(limiter.try_acquire().unwrap_err(), Refused::AtCapacity);
    held.pop();
    assert_eq!(limiter.in_use(), 1);
    held.push(limiter.try_acquire().unwrap());
    assert_eq!(limiter.try_acquire().unwrap_err(), Refused::AtCapacity);
    limiter.set_max(5);
    for _ in 0..3 {
        held.push(limiter.try_acquire().unwrap());
    }
    assert_eq!(limiter.try_acquire().unwrap_err(), Refused::AtCapacity);
    assert_eq!(limiter.in_use(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limiter_caps_concurrency() {
    let limiter = ConnectionLimiter::new(3, None, Arc::new(TokioClock::new()));
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let (limiter, open, peak) = (limiter.clone(), open.clone(), peak.clone());
            tokio::spawn(async move {
                let permit = limiter.acquire().await;
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                for _ in 0..20 {
                    tokio::task::yield_now().await;
                }
                open.fetch_sub(1, Ordering::SeqCst);
                drop(permit);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        peak.load(Ordering::SeqCst) <= 3,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    assert_eq!(limiter.in_use(), 0);
}

#[tokio::test]
async fn a_waiter_wakes_when_a_connection_closes() {
    let limiter = ConnectionLimiter::new(1, None, Arc::new(TokioClock::new()));
    let held = limiter.acquire().await;
    let waiter = {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.acquire().await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished());
    drop(held);
    let permit = waiter.await.unwrap();
    assert_eq!(limiter.in_use(), 1);
    drop(permit);
}
