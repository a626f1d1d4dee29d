//! Unit tests for [`super`]: valid and invalid paths, IDN, literals, relay tricks
//! and the length limits at their boundaries.

use super::*;

fn path(s: &str) -> Result<(Path, usize), AddressError> {
    Path::parse(s.as_bytes(), false)
}

fn mbox(local: &str, domain: &str) -> Mailbox {
    Mailbox {
        local: local.into(),
        domain: Domain::Name(domain.into()),
    }
}

#[test]
fn valid_paths() {
    let cases: &[(&str, &str, &str)] = &[
        ("<a@b.example>", "a", "b.example"),
        ("<First.Last@Example.COM>", "First.Last", "example.com"),
        ("<a+tag@x-y.example>", "a+tag", "x-y.example"),
        (
            "<!#$%&'*+-/=?^_`{|}~@x.example>",
            "!#$%&'*+-/=?^_`{|}~",
            "x.example",
        ),
        ("<\"john doe\"@x.example>", "\"john doe\"", "x.example"),
        (
            "<\"a\\\"b\\\\c\"@x.example>",
            "\"a\\\"b\\\\c\"",
            "x.example",
        ),
        ("<\"plain\"@x.example>", "\"plain\"", "x.example"),
        ("<\"\"@x.example>", "\"\"", "x.example"),
        ("<\"a>b@c\"@x.example>", "\"a>b@c\"", "x.example"),
        ("<a@localhost>", "a", "localhost"),
        ("<a@123.example>", "a", "123.example"),
        ("<a@xn--bcher-kva.example>", "a", "xn--bcher-kva.example"),
    ];
    for &(input, local, domain) in cases {
        let (p, used) = path(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(used, input.len(), "{input}");
        assert_eq!(p.mailbox, Some(mbox(local, domain)), "{input}");
        assert!(p.source_route.is_empty());
    }
}

#[test]
fn invalid_paths() {
    use AddressError::*;
    let cases: &[(&str, AddressError)] = &[
        ("", Empty),
        ("a@b.example", MissingBrackets),
        ("<", MissingBrackets),
        ("<a@b.example", MissingBrackets),
        (" <a@b.example>", MissingBrackets),
        ("< a@b.example>", BadLocalPart),
        ("<a@b.example >", BadDomain),
        ("<a @b.example>", BadLocalPart),
        ("<user>", MissingDomain),
        ("<\"user\">", MissingDomain),
        ("<a@>", MissingDomain),
        ("<.a@b.example>", BadLocalPart),
        ("<a.@b.example>", BadLocalPart),
        ("<a..b@b.example>", BadLocalPart),
        ("<a(b)@b.example>", BadLocalPart),
        ("<a\"b@b.example>", BadLocalPart),
        ("<\"abc@b.example>", UnterminatedQuote),
        ("<\"a\"b@b.example>", BadLocalPart),
        ("<\"a\\\u{7f}\"@b.example>", BadLocalPart),
        ("<\"a\tb\"@b.example>", BadLocalPart),
        ("<a@-b.example>", BadDomain),
        ("<a@b-.example>", BadDomain),
        ("<a@b..example>", BadDomain),
        ("<a@.b.example>", BadDomain),
        ("<a@b.example.>", BadDomain),
        ("<a@b_c.example>", BadDomain),
        ("<a@b.example:25>", BadDomain),
        ("<a@[1.2.3]>", BadAddressLiteral),
        ("<a@[1.2.3.256]>", BadAddressLiteral),
        ("<a@[IPv6:1::2::3]>", BadAddressLiteral),
        ("<a@[1.2.3.4]x>", BadAddressLiteral),
        ("<a@[tag:]>", BadAddressLiteral),
        ("<a@[-tag:x]>", BadAddressLiteral),
        ("<@a.example>", BadLocalPart),
        ("<@a.example,b.example:u@c.example>", BadSourceRoute),
        ("<@a.example;u@c.example>", BadSourceRoute),
        ("<@[1.2.3.4]:u@c.example>", BadSourceRoute),
        ("<@:u@c.example>", BadSourceRoute),
        ("<@a.example:>", BadLocalPart),
        ("<ü@b.example>", NeedsSmtpUtf8),
        ("<\"ü\"@b.example>", NeedsSmtpUtf8),
    ];
    for (input, want) in cases {
        assert_eq!(path(input).map(|(p, _)| p), Err(want.clone()), "{input:?}");
    }
}

#[test]
fn null_path_and_trailing_bytes() {
    assert_eq!(path("<>"), Ok((Path::NULL, 2)));
    assert_eq!(path("<> SIZE=10"), Ok((Path::NULL, 2)));
    let (p, used) = path("<a@b.example> SIZE=10").unwrap();
    assert_eq!(used, 13);
    assert_eq!(p.to_string(), "<a@b.example>");
    // dcontent may contain '>': the literal ends at ']'.
    let (p, used) = path("<a@[x:a>b]> X").unwrap();
    assert_eq!(used, 11);
    let want = Domain::General {
        tag: "x".into(),
        content: "a>b".into(),
    };
    assert_eq!(p.mailbox.unwrap().domain, want);
}

#[test]
fn source_route() {
    let (p, used) = path("<@Relay.example,@b.example:user@c.example>").unwrap();
    assert_eq!(used, 42);
    assert_eq!(
        p.source_route,
        vec!["relay.example".to_string(), "b.example".to_string()]
    );
    assert_eq!(p.mailbox, Some(mbox("user", "c.example")));
    assert_eq!(p.relay_trick(), Some(RelayTrick::SourceRoute));
    // Never rendered.
    assert_eq!(p.to_string(), "<user@c.example>");
}

#[test]
fn address_literals() {
    let cases: &[(&str, Domain, &str)] = &[
        (
            "[192.0.2.1]",
            Domain::V4(Ipv4Addr::new(192, 0, 2, 1)),
            "[192.0.2.1]",
        ),
        (
            "[010.0.0.1]",
            Domain::V4(Ipv4Addr::new(10, 0, 0, 1)),
            "[10.0.0.1]",
        ),
        (
            "[IPv6:2001:DB8::1]",
            Domain::V6("2001:db8::1".parse().unwrap()),
            "[IPv6:2001:db8::1]",
        ),
        ("[ipv6:::1]", Domain::V6(Ipv6Addr::LOCALHOST), "[IPv6:::1]"),
        (
            "[IPv6:::ffff:192.0.2.1]",
            Domain::V6("::ffff:192.0.2.1".parse().unwrap()),
            "[IPv6:::ffff:192.0.2.1]",
        ),
        (
            "[x-Tag:some=content]",
            Domain::General {
                tag: "x-Tag".into(),
                content: "some=content".into(),
            },
            "[x-Tag:some=content]",
        ),
    ];
    for (input, want, wire) in cases {
        let d = Domain::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(&d, want, "{input}");
        assert_eq!(d.to_string(), *wire);
        assert_eq!(d.wire_len(), wire.len());
        assert_eq!(Domain::parse(wire).as_ref(), Ok(&d));
    }
    assert_eq!(Domain::parse("1.2.3.4]"), Err(AddressError::BadDomain));
    for bad in [
        "[]",
        "[1.2.3.4",
        "[1.2.3.4.5]",
        "[1..2.3]",
        "[+1.2.3.4]",
        "[IPv6:]",
        "[IPv6:1.2.3.4]",
        "[IPv6:::1%eth0]",
        "[tag:a b]",
        "[tag:a\\b]",
        "[ta_g:x]",
        "[:x]",
        "[tag-:x]",
        "[1.2.3.4 ]",
        "[tag:ü]",
    ] {
        assert_eq!(
            Domain::parse(bad),
            Err(AddressError::BadAddressLiteral),
            "{bad}"
        );
    }
}

#[test]
fn idn_to_a_labels() {
    let cases = [
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.Example", "xn--bcher-kva.example"),
        ("münchen.de", "xn--mnchen-3ya.de"),
        ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
        ("faß.de", "xn--fa-hia.de"),
    ];
    for (input, want) in cases {
        assert_eq!(
            Domain::parse(input),
            Ok(Domain::Name(want.into())),
            "{input}"
        );
    }
    let (p, _) = path("<a@bücher.example>").unwrap();
    assert_eq!(p.to_string(), "<a@xn--bcher-kva.example>");
    for bad in [
        "bü cher.example",
        "bü_cher.example",
        "-bü.example",
        "bü.example.",
        "ü..example",
    ] {
        assert_eq!(Domain::parse(bad), Err(AddressError::BadDomain), "{bad}");
    }
}

#[test]
fn utf8_local_parts() {
    let (p, _) = Path::parse("<用户@例子.广告>".as_bytes(), true).unwrap();
    let m = p.mailbox.unwrap();
    assert_eq!(m.local, "用户");
    assert!(m.needs_smtputf8());
    assert!(matches!(m.domain, Domain::Name(ref n) if n.starts_with("xn--")));
    assert!(Path::parse("<\"ü x\"@a.example>".as_bytes(), true).is_ok());
    // Invalid UTF-8 is refused even with SMTPUTF8.
    assert_eq!(
        Path::parse(b"<\xff@a.example>", true),
        Err(AddressError::BadLocalPart)
    );
    assert_eq!(
        Path::parse(b"<\xff@a.example>", false),
        Err(AddressError::NeedsSmtpUtf8)
    );
    assert_eq!(
        Path::parse(b"<a@\xffa.example>", true),
        Err(AddressError::BadDomain)
    );
    // A U-label domain needs no SMTPUTF8: it becomes an A-label.
    assert!(!Mailbox::parse("a@bücher.example", false)
        .unwrap()
        .needs_smtputf8());
}

#[test]
fn local_part_length_boundary() {
    let l64 = "a".repeat(64);
    let l65 = "a".repeat(65);
    assert!(path(&format!("<{l64}@b.example>")).is_ok());
    assert_eq!(
        path(&format!("<{l65}@b.example>")),
        Err(AddressError::LocalPartTooLong)
    );
    let q64 = format!("\"{}\"", "a".repeat(62));
    let q65 = format!("\"{}\"", "a".repeat(63));
    assert!(path(&format!("<{q64}@b.example>")).is_ok());
    assert_eq!(
        path(&format!("<{q65}@b.example>")),
        Err(AddressError::LocalPartTooLong)
    );
    assert!(Mailbox::parse(&format!("{l64}@b.example"), false).is_ok());
    assert_eq!(
        Mailbox::parse(&format!("{l65}@b.example"), false),
        Err(AddressError::LocalPartTooLong)
    );
    // Octets, not characters.
    let u64 = "é".repeat(32);
    let u65 = format!("a{u64}");
    assert!(Mailbox::parse(&format!("{u64}@b.example"), true).is_ok());
    assert_eq!(
        Mailbox::parse(&format!("{u65}@b.example"), true),
        Err(AddressError::LocalPartTooLong)
    );
    // A long unterminated quote stops at the limit.
    let long = format!("<\"{}", "a".repeat(10_000));
    assert_eq!(path(&long), Err(AddressError::LocalPartTooLong));
}

/// A name of exactly `len` octets in labels of at most 63.
fn name_of_len(len: usize) -> String {
    let mut s = String::new();
    while s.len() < len {
        if !s.is_empty() {
            s.push('.');
        }
        let n = (len - s.len()).min(63);
        let n = if len - s.len() - n == 1 { n - 1 } else { n }; // avoid a trailing 1-byte gap
        s.push_str(&"a".repeat(n));
    }
    assert_eq!(s.len(), len);
    s
}

#[test]
fn domain_length_boundary() {
    let d255 = name_of_len(255);
    let d256 = name_of_len(256);
    assert_eq!(Domain::parse(&d255), Ok(Domain::Name(d255.clone())));
    assert_eq!(Domain::parse(&d256), Err(AddressError::DomainTooLong));
    let label63 = format!("{}.example", "a".repeat(63));
    let label64 = format!("{}.example", "a".repeat(64));
    assert!(Domain::parse(&label63).is_ok());
    assert_eq!(Domain::parse(&label64), Err(AddressError::BadDomain));
    // A 255-octet domain cannot fit a 256-octet path.
    assert_eq!(
        Mailbox::parse(&format!("a@{d255}"), false),
        Err(AddressError::PathTooLong)
    );
}

#[test]
fn path_length_boundary() {
    // <local@domain>: 64 + 1 + 189 + 2 = 256.
    let local = "a".repeat(64);
    let ok = format!("<{local}@{}>", name_of_len(189));
    let long = format!("<{local}@{}>", name_of_len(190));
    assert_eq!(ok.len(), 256);
    assert_eq!(path(&ok).map(|(_, n)| n), Ok(256));
    assert_eq!(path(&long), Err(AddressError::PathTooLong));
    assert_eq!(
        path(&format!("{long} trailing")),
        Err(AddressError::PathTooLong)
    );
    assert!(Mailbox::parse(&ok[1..255], false).is_ok());
    assert_eq!(
        Mailbox::parse(&long[1..256], false),
        Err(AddressError::PathTooLong)
    );
    // The source route counts toward the limit.
    let route = format!("<@{}:", name_of_len(60));
    let with_route = format!("{route}{}", &ok[1..]);
    assert_eq!(path(&with_route), Err(AddressError::PathTooLong));
    // A U-label that grows past the limit as an A-label is refused.
    let grow = format!("<{}@{}.ü.ü.example>", "a".repeat(64), name_of_len(150));
    let (p, used) = Path::parse(grow.as_bytes(), false).unwrap();
    assert_eq!((used, p.to_string().len()), (231, 241));
    let grow = format!(
        "<{}@{}{}.example>",
        "a".repeat(64),
        name_of_len(150),
        ".ü".repeat(8)
    );
    assert_eq!(grow.len(), 249);
    assert_eq!(
        Path::parse(grow.as_bytes(), false),
        Err(AddressError::PathTooLong)
    );
}

#[test]
fn bare_mailbox() {
    assert_eq!(
        Mailbox::parse("a@B.example", false),
        Ok(mbox("a", "b.example"))
    );
    assert_eq!(
        Mailbox::parse("\"a b\"@x.example", false),
        Ok(mbox("\"a b\"", "x.example"))
    );
    let v4 = Mailbox::parse("postmaster@[192.0.2.1]", false).unwrap();
    assert_eq!(v4.domain, Domain::V4(Ipv4Addr::new(192, 0, 2, 1)));
    assert_eq!(v4.to_string(), "postmaster@[192.0.2.1]");
    use AddressError::*;
    for (bad, want) in [
        ("", Empty),
        (" a@b.example", BadLocalPart),
        ("a@b.example ", BadDomain),
        ("<a@b.example>", BadLocalPart),
        ("a", MissingDomain),
        ("\"a\"", MissingDomain),
        ("\"a", UnterminatedQuote),
        ("a@", MissingDomain),
        ("@b.example", BadLocalPart),
        ("a@b@c.example", BadDomain),
        ("ü@b.example", NeedsSmtpUtf8),
    ] {
        assert_eq!(Mailbox::parse(bad, false), Err(want), "{bad:?}");
    }
}

#[test]
fn relay_tricks() {
    let cases = [
        ("<user@relay.example>", None),
        (
            "<user%dest.example@relay.example>",
            Some(RelayTrick::PercentHack),
        ),
        ("<dest!user@relay.example>", Some(RelayTrick::BangPath)),
        (
            "<\"user@dest.example\"@relay.example>",
            Some(RelayTrick::QuotedAt),
        ),
        (
            "<\"user\\@dest\"@relay.example>",
            Some(RelayTrick::QuotedAt),
        ),
        ("<a!b%c@relay.example>", Some(RelayTrick::BangPath)),
        (
            "<@relay.example:a%b@c.example>",
            Some(RelayTrick::SourceRoute),
        ),
    ];
    for (input, want) in cases {
        let (p, _) = path(input).unwrap();
        assert_eq!(p.relay_trick(), want, "{input}");
    }
    assert_eq!(Path::NULL.relay_trick(), None);
}

#[test]
fn rendered_paths_parse_back() {
    for input in [
        "<a@b.example>",
        "<\"x y\"@B.Example>",
        "<@r.example:u@[IPv6:2001:db8:0:0:0:0:0:1]>",
        "<u@[IPv6:::ffff:c000:201]>",
        "<u@[001.002.003.004]>",
        "<u@bücher.example>",
        "<>",
    ] {
        let (p, _) = path(input).unwrap();
        let wire = p.to_string();
        let (again, used) = path(&wire).unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(again.mailbox, p.mailbox, "{input}");
    }
}
