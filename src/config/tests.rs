use std::time::Duration;

use super::*;
use crate::shaping::Rate;

const EXAMPLE: &str = include_str!("../../config/volley.toml");

fn err(text: &str) -> ConfigError {
    Config::from_toml_str(text).expect_err("should be refused")
}

fn err_key(text: &str) -> (String, String) {
    match err(text) {
        ConfigError::Invalid { key, message } => (key, message),
        other => panic!("expected an Invalid error, got {other}"),
    }
}

#[test]
fn empty_file_is_all_defaults() {
    let c = Config::from_toml_str("").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.delivery.smtp_port, 25);
    assert_eq!(c.delivery.tls, TlsPolicy::Opportunistic);
    assert_eq!(c.delivery.message_lifetime, Duration::from_secs(5 * 86_400));
    let m = |n: u64| Duration::from_secs(60 * n);
    assert_eq!(
        c.delivery.retry_schedule,
        vec![m(1), m(5), m(15), m(30), m(60), m(120)]
    );
    assert_eq!(c.delivery.timeouts.banner, m(5));
    assert_eq!(c.delivery.timeouts.data_init, m(2));
    assert_eq!(c.delivery.timeouts.data_block, m(3));
    assert_eq!(c.delivery.timeouts.data_end, m(10));
    assert!(c.spool.sync);
    assert_eq!(c.shaping.default.max_recipients_per_transaction, 100);
    assert_eq!(c.shaping.default.max_messages_per_connection, 1000);
    assert_eq!(c.shaping.default.idle_timeout, Duration::from_secs(30));
    assert!(c.smtp.submission.is_none() && c.smtp.relay.is_none());
    assert_eq!(c.smtp.max_message_size, ByteSize::mib(50));
    assert_eq!(
        c.delivery.retry_policy(),
        crate::queue::RetryPolicy::default()
    );
}

#[test]
fn example_file_parses_and_means_what_it_says() {
    let c = Config::from_toml_str(EXAMPLE).unwrap_or_else(|e| panic!("config/volley.toml: {e}"));
    assert_eq!(c.spool.path, std::path::PathBuf::from("/var/spool/volley"));
    assert_eq!(c.http.listen, "127.0.0.1:8025".parse().unwrap());
    assert_eq!(c.smtp.hostname.as_deref(), Some("mta.example.com"));
    let sub = c.smtp.submission.as_ref().unwrap();
    assert_eq!(sub.users[0].username, "alice");
    let relay = c.smtp.relay.as_ref().unwrap();
    assert!(relay.allowed_cidrs[0].contains("10.1.2.3".parse().unwrap()));
    assert!(!relay.allowed_cidrs[0].contains("11.0.0.1".parse().unwrap()));
    assert_eq!(c.delivery.route.len(), 1);
    assert!(c.delivery.route[0].matches("partner.example"));
    assert_eq!(
        c.shaping.default.max_message_rate,
        Some(Rate::per_second(1000))
    );
    assert_eq!(c.shaping.rule.len(), 2);
    assert_eq!(c.shaping.rule[0].mx_suffix.as_deref(), Some(".google.com"));
    assert_eq!(c.shaping.rule[1].tls, Some(TlsPolicy::RequiredVerified));
    assert_eq!(
        c.log.delivery.as_deref(),
        Some(std::path::Path::new("/var/log/volley/delivery.jsonl"))
    );
    assert_eq!(c.ehlo_name(), "mta.example.com");
    assert_eq!(c.tenant[0].name, "acme");
    assert_eq!(sub.users[0].tenant.as_deref(), Some("acme"));
    assert!(!c.tenant[0].admin);
}

/// Every default the example states equals the code's default: strip the lines
/// marked "example" and what remains must parse to `Config::default()` plus
/// the sections the example turns on.
#[test]
fn example_defaults_match_code_defaults() {
    // [[tenant]] is last and has no defaults to compare: it is only an example.
    let upto_tenants = &EXAMPLE[..EXAMPLE.find("\n[[tenant]]").expect("a [[tenant]] example")];
    let kept: Vec<&str> = upto_tenants
        .lines()
        .filter(|l| !l.contains("# example"))
        .filter(|l| !l.trim_start().starts_with("{ username"))
        .filter(|l| !l.trim_start().starts_with(']'))
        .collect();
    let text = kept
        .join("\n")
        .replace("[[delivery.route]]", "")
        .replace("[[shaping.rule]]", "");
    let c = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut expected = Config::default();
    expected.smtp.submission = Some(SubmissionConfig::default());
    expected.smtp.relay = Some(RelayConfig::default());
    assert_eq!(c, expected);
}

#[test]
fn unknown_keys_are_named_with_their_path() {
    let (key, msg) = err_key(
        "[[shaping.rule]]\ndomain = \"a.example\"\n[[shaping.rule]]\ndomain = \"b.example\"\n\
         [[shaping.rule]]\nmx_suffix = \".c.example\"\nmax_conections = 3\n",
    );
    assert_eq!(key, "shaping.rule[2].max_conections");
    assert!(msg.contains("unknown field `max_conections`"), "{msg}");
    assert!(
        msg.contains("max_connections"),
        "lists the valid keys: {msg}"
    );
    assert!(msg.contains("(line 7)"), "{msg}");
    let e = err("[shaping.default]\nmax_connection = 1\n");
    assert_eq!(
        e.to_string().split(':').next(),
        Some("shaping.default.max_connection")
    );
    assert_eq!(err_key("[spool]\npth = \"/x\"\n").0, "spool.pth");
    assert_eq!(err_key("[spoool]\n").0, "spoool");
    assert_eq!(
        err_key("[delivery.timeouts]\nehlo = \"1m\"\n").0,
        "delivery.timeouts.ehlo"
    );
    assert_eq!(err_key("[dns]\nnameserver = []\n").0, "dns.nameserver");
    let (key, _) = err_key(
        "[smtp.submission]\nusers = [{ username = \"a\", password_hash = \"$x\" }, \
         { username = \"b\", pasword = \"x\" }]\n",
    );
    assert_eq!(key, "smtp.submission.users[1].pasword");
    assert_eq!(
        err_key("[[delivery.route]]\nhost = \"r\"\nprt = 2\n").0,
        "delivery.route[0].prt"
    );
}

#[test]
fn bad_values_are_named_with_their_path() {
    let (key, msg) = err_key("[delivery]\nmessage_lifetime = \"5 dayz\"\n");
    assert_eq!(key, "delivery.message_lifetime");
    assert!(msg.contains("invalid duration"), "{msg}");
    let (key, msg) = err_key("[delivery]\nretry_schedule = [\"1m\", \"soon\"]\n");
    assert_eq!(key, "delivery.retry_schedule");
    assert!(msg.contains("\"soon\""), "{msg}");
    let (key, msg) =
        err_key("[[shaping.rule]]\ndomain = \"x\"\nmax_message_rate = \"100 per second\"\n");
    assert_eq!(key, "shaping.rule[0].max_message_rate");
    assert!(msg.contains("invalid rate"), "{msg}");
    let (key, msg) = err_key("[shaping.default]\nmax_message_rate = \"0/s\"\n");
    assert_eq!(key, "shaping.default.max_message_rate");
    assert!(msg.contains("at least 1"), "{msg}");
    assert_eq!(
        err_key("[delivery]\ntls = \"sometimes\"\n").0,
        "delivery.tls"
    );
    assert_eq!(
        err_key("[delivery]\nsmtp_port = 70000\n").0,
        "delivery.smtp_port"
    );
    assert_eq!(err_key("[http]\nlisten = \"localhost\"\n").0, "http.listen");
    assert_eq!(err_key("[dns]\ntimeout = \"fast\"\n").0, "dns.timeout");
    assert_eq!(
        err_key("[spool]\nblock_cache = \"lots\"\n").0,
        "spool.block_cache"
    );
    assert_eq!(
        err_key("[smtp.relay]\nallowed_cidrs = [\"10.0.0.0/33\"]\n").0,
        "smtp.relay.allowed_cidrs[0]"
    );
    assert_eq!(
        err_key("[shaping.adaptive]\ncool_off = 5\n").0,
        "shaping.adaptive.cool_off"
    );
    assert_eq!(
        err_key("[[delivery.route]]\nport = 25\n").0,
        "delivery.route[0].host"
    );
}

#[test]
fn syntax_errors_give_line_and_column() {
    match err("[spool]\npath = \"/x\nsync = true\n") {
        ConfigError::Syntax { line, .. } => assert_eq!(line, 2),
        other => panic!("{other}"),
    }
}

#[test]
fn validation_errors_name_the_key() {
    let cases = [
        (
            "[shaping.default]\nmax_connections = 0\n",
            "shaping.default.max_connections",
        ),
        (
            "[[shaping.rule]]\nsite = \"s\"\nmax_connections = 0\n",
            "shaping.rule[0].max_connections",
        ),
        ("[[shaping.rule]]\nmax_connections = 4\n", "shaping.rule[0]"),
        (
            "[[shaping.rule]]\ndomain = \"a\"\nsite = \"b\"\n",
            "shaping.rule[0]",
        ),
        (
            "[[shaping.rule]]\ndomain = \"a\"\nmax_connections = 4\n",
            "shaping.rule[0].max_connections",
        ),
        ("[[shaping.rule]]\nmx_suffix = \".\"\n", "shaping.rule[0]"),
        (
            "[delivery]\nretry_schedule = []\n",
            "delivery.retry_schedule",
        ),
        (
            "[delivery]\nretry_schedule = [\"1m\", \"0s\"]\n",
            "delivery.retry_schedule[1]",
        ),
        (
            "[delivery.timeouts]\ndata_end = \"0s\"\n",
            "delivery.timeouts.data_end",
        ),
        ("[delivery]\nsmtp_port = 0\n", "delivery.smtp_port"),
        ("[dns]\nattempts = 0\n", "dns.attempts"),
        (
            "[[delivery.route]]\nhost = \"\"\n",
            "delivery.route[0].host",
        ),
        (
            "[smtp.submission]\ntls_cert = \"/c\"\n",
            "smtp.submission.tls_key",
        ),
        (
            "[smtp.submission]\nusers = [{ username = \"a\", password_hash = \"hunter2\" }]\n",
            "smtp.submission.users[0].password_hash",
        ),
        ("[smtp]\nhostname = \"not a name\"\n", "smtp.hostname"),
        ("[smtp]\nmax_line_length = 80\n", "smtp.max_line_length"),
        ("[smtp]\ncommand_timeout = \"0s\"\n", "smtp.command_timeout"),
        ("[smtp]\nrelay_domains = [\"a..b\"]\n", "smtp.relay_domains[0]"),
        ("[http]\nmax_recipients = 0\n", "http.max_recipients"),
        ("[[tenant]]\nname = \"a b\"\n", "tenant[0].name"),
        (
            "[[tenant]]\nname = \"a\"\n[[tenant]]\nname = \"a\"\n",
            "tenant[1].name",
        ),
        (
            "[[tenant]]\nname = \"a\"\napi_tokens = [\"secret\"]\n",
            "tenant[0].api_tokens[0]",
        ),
        ("[smtp.relay]\ntenant = \"nobody\"\n", "smtp.relay.tenant"),
        (
            "[smtp.submission]\nusers = [{ username = \"a\", password_hash = \"$x\", tenant = \"t\" }]\n",
            "smtp.submission.users[0].tenant",
        ),
    ];
    for (text, want) in cases {
        let (key, msg) = err_key(text);
        assert_eq!(key, want, "{text} -> {msg}");
    }
}

#[test]
fn loads_from_a_file_and_reports_missing_files() {
    let dir = std::env::temp_dir().join(format!("volley-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("v.toml");
    std::fs::write(
        &path,
        "[delivery]\nsmtp_port = 2525\n[dns]\nnameservers = [\"127.0.0.1:5353\"]\n",
    )
    .unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.delivery.smtp_port, 2525);
    assert_eq!(c.dns.nameservers, vec!["127.0.0.1:5353".parse().unwrap()]);
    let missing = Config::load(dir.join("nope.toml")).unwrap_err();
    assert!(matches!(missing, ConfigError::Read { .. }));
    assert!(missing.to_string().contains("nope.toml"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn values_parse() {
    assert_eq!("128MiB".parse::<ByteSize>().unwrap(), ByteSize(128 << 20));
    assert_eq!("10MB".parse::<ByteSize>().unwrap(), ByteSize(10_000_000));
    assert_eq!(ByteSize(64 << 10).to_string(), "64KiB");
    assert!("12 parsecs".parse::<ByteSize>().is_err());
    let c: Cidr = "192.168.1.77/24".parse().unwrap();
    assert_eq!(c.to_string(), "192.168.1.0/24");
    assert!(c.contains("192.168.1.200".parse().unwrap()));
    assert!(c.contains("::ffff:192.168.1.9".parse().unwrap()));
    assert!(!c.contains("192.168.2.1".parse().unwrap()));
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("8.8.8.8".parse().unwrap()));
    let v6: Cidr = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
    assert!(!v6.contains("2001:db9::1".parse().unwrap()));
    let host: Cidr = "::1".parse().unwrap();
    assert_eq!(host.prefix, 128);
    assert_eq!(
        crate::egress::TlsPolicy::from(TlsPolicy::RequiredVerified),
        crate::egress::TlsPolicy::RequiredVerified
    );
    assert_eq!(
        Timeouts::default().to_egress(),
        crate::egress::Timeouts::default()
    );
}
