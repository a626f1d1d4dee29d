//! Unit tests for [`super`]: framing, every verb, parameter errors, canonical
//! rendering, round trips, xtext and error replies.

use super::*;
use crate::smtp::address::Mailbox;

fn parse(s: &str) -> Result<Command, CommandError> {
    Command::parse(s.as_bytes())
}

fn wire(c: &Command) -> String {
    let mut out = Vec::new();
    c.write_to(&mut out);
    String::from_utf8(out).unwrap()
}

fn path(s: &str) -> Path {
    Path::mailbox(Mailbox::parse(s, true).unwrap())
}

fn mail(line: &str) -> MailFrom {
    match parse(line) {
        Ok(Command::Mail(m)) => m,
        other => panic!("{line}: {other:?}"),
    }
}

fn rcpt(line: &str) -> RcptTo {
    match parse(line) {
        Ok(Command::Rcpt(r)) => r,
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn next_line_framing() {
    assert_eq!(next_line(b"", 512), Line::Incomplete);
    assert_eq!(next_line(b"QUIT", 512), Line::Incomplete);
    assert_eq!(next_line(b"QUIT\r", 512), Line::Incomplete);
    assert_eq!(next_line(b"QUIT\r\n", 512), Line::Complete(6));
    assert_eq!(next_line(b"QUIT\r\nRSET\r\n", 512), Line::Complete(6));
    // A bare LF does not end a line.
    assert_eq!(next_line(b"A\nB\r\n", 512), Line::Complete(5));
    assert_eq!(next_line(b"\nA\n", 512), Line::Incomplete);
    assert_eq!(next_line(b"\r\n", 512), Line::Complete(2));
    // `max` counts the CRLF.
    assert_eq!(next_line(b"abc\r\n", 5), Line::Complete(5));
    assert_eq!(next_line(b"abcd\r\n", 5), Line::TooLong);
    assert_eq!(next_line(b"abcd\r", 5), Line::TooLong);
    assert_eq!(next_line(b"abcd", 5), Line::Incomplete);
    assert_eq!(next_line(b"abcde", 5), Line::TooLong);
    let long = [b'a'; 600];
    assert_eq!(next_line(&long, 512), Line::TooLong);
    assert_eq!(next_line(b"x", 0), Line::TooLong);
}

#[test]
fn simple_commands() {
    let cases: &[(&str, Command)] = &[
        ("DATA\r\n", Command::Data),
        ("data", Command::Data),
        ("RSET\r\n", Command::Rset),
        ("QUIT", Command::Quit),
        ("qUiT  ", Command::Quit),
        ("STARTTLS\r\n", Command::StartTls),
        ("starttls", Command::StartTls),
        ("NOOP", Command::Noop),
        ("NOOP anything at all \u{e9}", Command::Noop),
        ("HELP", Command::Help),
        ("HELP mail", Command::Help),
        (
            "BDAT 0 LAST",
            Command::Bdat {
                size: 0,
                last: true,
            },
        ),
        (
            "bdat 1000",
            Command::Bdat {
                size: 1000,
                last: false,
            },
        ),
        (
            "BDAT 18446744073709551615 last",
            Command::Bdat {
                size: u64::MAX,
                last: true,
            },
        ),
        ("VRFY John Smith", Command::Vrfy("John Smith".into())),
        (
            "EHLO mail.Example.com",
            Command::Ehlo("mail.Example.com".into()),
        ),
        ("ehlo [192.0.2.1]", Command::Ehlo("[192.0.2.1]".into())),
        (
            "EHLO [IPv6:2001:db8::1]",
            Command::Ehlo("[IPv6:2001:db8::1]".into()),
        ),
        ("HELO relay.example", Command::Helo("relay.example".into())),
    ];
    for (line, want) in cases {
        assert_eq!(parse(line).as_ref(), Ok(want), "{line:?}");
    }
}

#[test]
fn command_errors() {
    use CommandError::*;
    let cases: &[(&[u8], CommandError)] = &[
        (b"", Unrecognized),
        (b"\r\n", Unrecognized),
        (b"FOO", Unrecognized),
        (b"MAILX FROM:<a@b.example>", Unrecognized),
        (b"MA1L FROM:<a@b.example>", Unrecognized),
        (b" QUIT", Unrecognized),
        (b"QUIT\tnow", Unrecognized),
        (b"QUIT now", Syntax("no parameters allowed")),
        (b"DATA x", Syntax("no parameters allowed")),
        (b"RSET x", Syntax("no parameters allowed")),
        (b"STARTTLS x", Syntax("no parameters allowed")),
        (b"QUIT\n", BadLineEnding),
        (b"QUIT\r", BadLineEnding),
        (b"QU\rIT\r\n", BadLineEnding),
        (b"NOOP a\nb\r\n", BadLineEnding),
        (b"NOOP \0\r\n", BadLineEnding),
        (b"QUIT\r\n\r\n", BadLineEnding),
        (b"EHLO", Syntax("domain name or address literal required")),
        (
            b"EHLO   ",
            Syntax("domain name or address literal required"),
        ),
        (
            b"EHLO a.example b",
            Syntax("one domain name or address literal expected"),
        ),
        (
            b"EHLO my_host",
            Syntax("invalid domain name or address literal"),
        ),
        (
            b"EHLO [1.2.3]",
            Syntax("invalid domain name or address literal"),
        ),
        (
            b"HELO \xff",
            Syntax("invalid domain name or address literal"),
        ),
        (b"BDAT", Syntax("BDAT requires a size in digits")),
        (b"BDAT -1", Syntax("BDAT requires a size in digits")),
        (b"BDAT +1", Syntax("BDAT requires a size in digits")),
        (b"BDAT 1x", Syntax("BDAT requires a size in digits")),
        (
            b"BDAT 18446744073709551616",
            Syntax("BDAT requires a size in digits"),
        ),
        (b"BDAT 1 FIRST", Syntax("expected LAST after the size")),
        (b"BDAT 1 LAST x", Syntax("too many parameters")),
        (b"VRFY", Syntax("VRFY requires an argument")),
        (b"VRFY \xff", Syntax("invalid UTF-8")),
        (b"AUTH", Syntax("invalid or missing SASL mechanism")),
        (b"AUTH PL@IN", Syntax("invalid or missing SASL mechanism")),
        (
            b"AUTH ABCDEFGHIJKLMNOPQRSTU",
            Syntax("invalid or missing SASL mechanism"),
        ),
        (b"AUTH PLAIN a-b", Syntax("initial response is not base64")),
        (b"AUTH PLAIN ===", Syntax("initial response is not base64")),
        (b"AUTH PLAIN AAAA x", Syntax("too many parameters")),
    ];
    for (line, want) in cases {
        assert_eq!(
            Command::parse(line).as_ref(),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn auth() {
    let cases = [
        ("AUTH PLAIN", AuthMechanism::Plain, None),
        ("auth login", AuthMechanism::Login, None),
        ("AUTH cram-md5", AuthMechanism::CramMd5, None),
        (
            "AUTH XOAUTH2 dXNlcj1h",
            AuthMechanism::XOAuth2,
            Some("dXNlcj1h"),
        ),
        (
            "AUTH PLAIN AGEAYg==",
            AuthMechanism::Plain,
            Some("AGEAYg=="),
        ),
        ("AUTH PLAIN =", AuthMechanism::Plain, Some("")),
        (
            "AUTH scram-sha-256",
            AuthMechanism::Other("SCRAM-SHA-256".into()),
            None,
        ),
    ];
    for (line, mechanism, response) in cases {
        let want = AuthStart {
            mechanism,
            initial_response: response.map(String::from),
        };
        assert_eq!(parse(line), Ok(Command::Auth(want)), "{line}");
    }
    assert_eq!(
        AuthMechanism::from_name(b"Plain"),
        Some(AuthMechanism::Plain)
    );
    assert_eq!(AuthMechanism::from_name(b""), None);
    assert_eq!(AuthMechanism::CramMd5.as_str(), "CRAM-MD5");
}

#[test]
fn mail_from() {
    let m = mail("MAIL FROM:<Bounce@Example.COM>\r\n");
    assert_eq!(m, MailFrom::new(path("Bounce@example.com")));
    assert_eq!(mail("mail from:<>").path, Path::NULL);
    // Lenient: one space after the colon, trailing spaces.
    assert_eq!(mail("MAIL FROM: <a@b.example>  ").path, path("a@b.example"));
    let m = mail(
        "MAIL FROM:<a@b.example> size=123 Body=8bitmime SMTPUTF8 RET=hdrs ENVID=QQ+2B314 \
         AUTH=<e+3Dx@b.example>",
    );
    assert_eq!(m.size, Some(123));
    assert_eq!(m.body, Some(BodyType::EightBitMime));
    assert!(m.smtputf8);
    assert_eq!(m.ret, Some(DsnReturn::Headers));
    assert_eq!(m.envid.as_deref(), Some("QQ+314"));
    assert_eq!(m.auth.as_deref(), Some("<e=x@b.example>"));
    assert_eq!(
        mail("MAIL FROM:<a@b.example> BODY=7BIT").body,
        Some(BodyType::SevenBit)
    );
    assert_eq!(
        mail("MAIL FROM:<a@b.example> BODY=BINARYMIME").body,
        Some(BodyType::BinaryMime)
    );
    assert_eq!(
        mail("MAIL FROM:<a@b.example> RET=FULL").ret,
        Some(DsnReturn::Full)
    );
    assert_eq!(mail("MAIL FROM:<> AUTH=<>").auth.as_deref(), Some("<>"));
    // Source routes are recorded.
    let m = mail("MAIL FROM:<@relay.example:a@b.example>");
    assert_eq!(m.path.source_route, vec!["relay.example".to_string()]);
    // UTF-8 sender only with SMTPUTF8.
    let m = mail("MAIL FROM:<üser@bücher.example> SMTPUTF8");
    assert_eq!(m.path.to_string(), "<üser@xn--bcher-kva.example>");
    assert_eq!(
        parse("MAIL FROM:<üser@b.example>"),
        Err(CommandError::SenderAddress(AddressError::NeedsSmtpUtf8))
    );
}

#[test]
fn mail_errors() {
    use CommandError::*;
    let cases: &[(&str, CommandError)] = &[
        ("MAIL", Syntax("expected FROM:<address>")),
        ("MAIL TO:<a@b.example>", Syntax("expected FROM:<address>")),
        ("MAIL FROM <a@b.example>", Syntax("expected FROM:<address>")),
        ("MAIL FROM:", SenderAddress(AddressError::Empty)),
        (
            "MAIL FROM:a@b.example",
            SenderAddress(AddressError::MissingBrackets),
        ),
        (
            "MAIL FROM:  <a@b.example>",
            SenderAddress(AddressError::MissingBrackets),
        ),
        (
            "MAIL FROM:<a@b.example",
            SenderAddress(AddressError::MissingBrackets),
        ),
        (
            "MAIL FROM:<a@-b.example>",
            SenderAddress(AddressError::BadDomain),
        ),
        (
            "MAIL FROM:<a@b.example>SIZE=1",
            Syntax("expected a space after the address"),
        ),
        (
            "MAIL FROM:<a@b.example> SIZE",
            Syntax("SIZE requires a value"),
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=",
            Syntax("invalid parameter value"),
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=-1",
            Syntax("invalid SIZE value"),
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=1k",
            Syntax("invalid SIZE value"),
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=99999999999999999999",
            Syntax("invalid SIZE value"),
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=1 size=2",
            Syntax("parameter given twice"),
        ),
        (
            "MAIL FROM:<a@b.example> BODY=8BIT",
            Syntax("invalid BODY value"),
        ),
        (
            "MAIL FROM:<a@b.example> BODY=7BIT BODY=7BIT",
            Syntax("parameter given twice"),
        ),
        (
            "MAIL FROM:<a@b.example> SMTPUTF8=yes",
            Syntax("SMTPUTF8 takes no value"),
        ),
        (
            "MAIL FROM:<a@b.example> SMTPUTF8 SMTPUTF8",
            Syntax("parameter given twice"),
        ),
        (
            "MAIL FROM:<a@b.example> RET=ALL",
            Syntax("invalid RET value"),
        ),
        (
            "MAIL FROM:<a@b.example> ENVID=a+2",
            Syntax("invalid xtext in ENVID"),
        ),
        (
            "MAIL FROM:<a@b.example> ENVID=a+ZZ",
            Syntax("invalid xtext in ENVID"),
        ),
        (
            "MAIL FROM:<a@b.example> ENVID=a=b",
            Syntax("invalid parameter value"),
        ),
        (
            "MAIL FROM:<a@b.example> AUTH=+FF",
            Syntax("invalid xtext in AUTH"),
        ),
        (
            "MAIL FROM:<a@b.example> ENVID=1 ENVID=2",
            Syntax("parameter given twice"),
        ),
        (
            "MAIL FROM:<a@b.example> =1",
            Syntax("invalid parameter keyword"),
        ),
        (
            "MAIL FROM:<a@b.example> -X=1",
            Syntax("invalid parameter keyword"),
        ),
        (
            "MAIL FROM:<a@b.example> X_Y=1",
            Syntax("invalid parameter keyword"),
        ),
        (
            "MAIL FROM:<a@b.example> x-foo=1",
            UnknownParameter("X-FOO".into()),
        ),
        (
            "MAIL FROM:<a@b.example> NOTIFY=NEVER",
            UnknownParameter("NOTIFY".into()),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(parse(line).as_ref(), Err(want), "{line:?}");
    }
}

#[test]
fn rcpt_to() {
    let r = rcpt("RCPT TO:<User@Example.ORG>\r\n");
    assert_eq!(r, RcptTo::new(path("User@example.org")));
    assert!(!r.is_postmaster());
    assert_eq!(rcpt("rcpt to: <a@b.example>").path, path("a@b.example"));
    for line in [
        "RCPT TO:<Postmaster>",
        "RCPT TO:<postmaster>",
        "rcpt to: <POSTMASTER>",
    ] {
        let r = rcpt(line);
        assert!(r.is_postmaster(), "{line}");
        assert_eq!(r, RcptTo::postmaster());
    }
    assert!(!rcpt("RCPT TO:<postmaster@b.example>").is_postmaster());
    let r = rcpt("RCPT TO:<a@b.example> notify=failure,Delay,SUCCESS ORCPT=rfc822;a+2Bx@b.example");
    let all = DsnNotify {
        never: false,
        success: true,
        failure: true,
        delay: true,
    };
    assert_eq!(r.notify, Some(all));
    let orcpt = OriginalRecipient {
        addr_type: "rfc822".into(),
        address: "a+x@b.example".into(),
    };
    assert_eq!(r.orcpt, Some(orcpt));
    let never = DsnNotify {
        never: true,
        ..DsnNotify::default()
    };
    assert_eq!(
        rcpt("RCPT TO:<Postmaster> NOTIFY=NEVER").notify,
        Some(never)
    );
    // RCPT takes UTF-8; the server checks it against the transaction.
    assert!(rcpt("RCPT TO:<ü@b.example>")
        .path
        .mailbox
        .unwrap()
        .needs_smtputf8());
    let r = rcpt("RCPT TO:<\"a@c\"@b.example>");
    assert_eq!(
        r.path.relay_trick(),
        Some(crate::smtp::address::RelayTrick::QuotedAt)
    );
}

#[test]
fn rcpt_errors() {
    use CommandError::*;
    let cases: &[(&str, CommandError)] = &[
        ("RCPT", Syntax("expected TO:<address>")),
        ("RCPT FROM:<a@b.example>", Syntax("expected TO:<address>")),
        ("RCPT TO:<>", Address(AddressError::Empty)),
        ("RCPT TO:<user>", Address(AddressError::MissingDomain)),
        (
            "RCPT TO:<Postmaster>x",
            Syntax("expected a space after the address"),
        ),
        (
            "RCPT TO:<a@b.example> NOTIFY=",
            Syntax("invalid parameter value"),
        ),
        (
            "RCPT TO:<a@b.example> NOTIFY=NEVER,DELAY",
            Syntax("NOTIFY=NEVER excludes other values"),
        ),
        (
            "RCPT TO:<a@b.example> NOTIFY=DELAY,NEVER",
            Syntax("NOTIFY=NEVER excludes other values"),
        ),
        (
            "RCPT TO:<a@b.example> NOTIFY=DELAY,DELAY",
            Syntax("invalid NOTIFY value"),
        ),
        (
            "RCPT TO:<a@b.example> NOTIFY=SUCCESS,",
            Syntax("invalid NOTIFY value"),
        ),
        (
            "RCPT TO:<a@b.example> NOTIFY=ALWAYS",
            Syntax("invalid NOTIFY value"),
        ),
        (
            "RCPT TO:<a@b.example> NOTIFY=NEVER NOTIFY=NEVER",
            Syntax("parameter given twice"),
        ),
        (
            "RCPT TO:<a@b.example> ORCPT=a@b.example",
            Syntax("invalid ORCPT value"),
        ),
        (
            "RCPT TO:<a@b.example> ORCPT=;a@b.example",
            Syntax("invalid ORCPT value"),
        ),
        (
            "RCPT TO:<a@b.example> ORCPT=rfc822;",
            Syntax("invalid ORCPT value"),
        ),
        (
            "RCPT TO:<a@b.example> ORCPT=rfc822;a+",
            Syntax("invalid ORCPT value"),
        ),
        (
            "RCPT TO:<a@b.example> ORCPT=r.c;a",
            Syntax("invalid ORCPT value"),
        ),
        (
            "RCPT TO:<a@b.example> ORCPT=rfc822;a ORCPT=rfc822;b",
            Syntax("parameter given twice"),
        ),
        (
            "RCPT TO:<a@b.example> SIZE=1",
            UnknownParameter("SIZE".into()),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(parse(line).as_ref(), Err(want), "{line:?}");
    }
}

#[test]
fn canonical_rendering() {
    let mut m = MailFrom::new(path("a@b.example"));
    m.size = Some(123);
    m.body = Some(BodyType::EightBitMime);
    assert_eq!(
        wire(&Command::Mail(m.clone())),
        "MAIL FROM:<a@b.example> SIZE=123 BODY=8BITMIME\r\n"
    );
    m.smtputf8 = true;
    m.ret = Some(DsnReturn::Full);
    m.envid = Some("id +=é".into());
    m.auth = Some("<>".into());
    assert_eq!(
        wire(&Command::Mail(m)),
        "MAIL FROM:<a@b.example> SIZE=123 BODY=8BITMIME SMTPUTF8 RET=FULL \
         ENVID=id+20+2B+3D+C3+A9 AUTH=<>\r\n"
    );
    assert_eq!(
        wire(&Command::Mail(MailFrom::new(Path::NULL))),
        "MAIL FROM:<>\r\n"
    );
    let mut r = RcptTo::new(path("x@[192.0.2.1]"));
    r.notify = Some(DsnNotify {
        success: true,
        delay: true,
        ..DsnNotify::default()
    });
    r.orcpt = Some(OriginalRecipient {
        addr_type: "rfc822".into(),
        address: "x+y@z".into(),
    });
    assert_eq!(
        wire(&Command::Rcpt(r.clone())),
        "RCPT TO:<x@[192.0.2.1]> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;x+2By@z\r\n"
    );
    r.notify = Some(DsnNotify::default());
    r.orcpt = None;
    assert_eq!(wire(&Command::Rcpt(r)), "RCPT TO:<x@[192.0.2.1]>\r\n");
    assert_eq!(
        wire(&Command::Rcpt(RcptTo::postmaster())),
        "RCPT TO:<Postmaster>\r\n"
    );
    let routed = mail("MAIL FROM:<@r1.example,@R2.example:a@b.example>");
    assert_eq!(
        wire(&Command::Mail(routed)),
        "MAIL FROM:<@r1.example,@r2.example:a@b.example>\r\n"
    );
    assert_eq!(
        wire(&Command::Bdat {
            size: 0,
            last: true
        }),
        "BDAT 0 LAST\r\n"
    );
    assert_eq!(
        wire(&Command::Bdat {
            size: u64::MAX,
            last: false
        }),
        "BDAT 18446744073709551615\r\n"
    );
    let auth = AuthStart {
        mechanism: AuthMechanism::Plain,
        initial_response: Some(String::new()),
    };
    assert_eq!(wire(&Command::Auth(auth)), "AUTH PLAIN =\r\n");
    assert_eq!(wire(&Command::StartTls), "STARTTLS\r\n");
}

#[test]
fn round_trips() {
    let lines = [
        "EHLO Mail.Example.com",
        "HELO [IPv6:2001:DB8::1]",
        "mail from: <A@B.Example> body=binarymime size=007 smtputf8 ret=full envid=x+2b auth=<>",
        "MAIL FROM:<\"a b\"@[tag:x>y]> ENVID=+41+42",
        "MAIL FROM:<@ü.example,@r.example:u@[001.2.3.4]>",
        "MAIL FROM:<用户@例子.广告> SMTPUTF8",
        "RCPT TO:<a@b.example> NOTIFY=DELAY,FAILURE ORCPT=UTF-8;a+40b",
        "RCPT TO:<postmaster>   NOTIFY=never",
        "RCPT TO:<a@[IPv6:::ffff:1.2.3.4]>",
        "DATA",
        "BDAT 00042 last",
        "RSET",
        "NOOP hello",
        "QUIT",
        "STARTTLS",
        "AUTH cram-md5",
        "AUTH x-foo_bar AAAA=",
        "AUTH PLAIN =",
        "VRFY  Some  Body ",
        "HELP me",
    ];
    for line in lines {
        let cmd = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let rendered = wire(&cmd);
        assert_eq!(parse(&rendered).as_ref(), Ok(&cmd), "{line} -> {rendered}");
        // Canonical form is a fixed point.
        let again = wire(&parse(&rendered).unwrap());
        assert_eq!(again, rendered);
    }
}

#[test]
fn xtext() {
    let cases = [
        ("", ""),
        ("abc", "abc"),
        ("a+b=c", "a+2Bb+3Dc"),
        ("a b\t", "a+20b+09"),
        ("é", "+C3+A9"),
    ];
    for (plain, encoded) in cases {
        let mut out = Vec::new();
        xtext_encode(plain, &mut out);
        assert_eq!(out, encoded.as_bytes());
        assert_eq!(xtext_decode(encoded.as_bytes()).as_deref(), Some(plain));
    }
    assert_eq!(xtext_decode(b"a+2bb").as_deref(), Some("a+b"));
    for bad in [
        &b"+"[..],
        b"+4",
        b"+4G",
        b"a=b",
        b"a b",
        b"\xc3\xa9",
        b"+FF",
        b"a\x7f",
    ] {
        assert_eq!(xtext_decode(bad), None, "{bad:?}");
    }
}

#[test]
fn error_replies() {
    let cases: &[(CommandError, u16, (u8, u16, u16))] = &[
        (CommandError::LineTooLong, 500, (5, 5, 2)),
        (CommandError::Unrecognized, 500, (5, 5, 1)),
        (CommandError::Syntax("x"), 501, (5, 5, 4)),
        (
            CommandError::Address(AddressError::BadDomain),
            553,
            (5, 1, 3),
        ),
        (
            CommandError::SenderAddress(AddressError::BadDomain),
            501,
            (5, 1, 7),
        ),
        (
            CommandError::Address(AddressError::NeedsSmtpUtf8),
            553,
            (5, 6, 7),
        ),
        (
            CommandError::SenderAddress(AddressError::NeedsSmtpUtf8),
            553,
            (5, 6, 7),
        ),
        (CommandError::UnknownParameter("X".into()), 555, (5, 5, 4)),
        (CommandError::BadLineEnding, 500, (5, 5, 2)),
    ];
    for (err, code, (class, subject, detail)) in cases {
        let reply = err.reply();
        assert_eq!(reply.code.get(), *code, "{err:?}");
        assert_eq!(
            reply.enhanced,
            Some(EnhancedStatus::new(*class, *subject, *detail))
        );
        assert!(!reply.text().is_empty());
    }
    assert_eq!(
        CommandError::UnknownParameter("X-FOO".into())
            .reply()
            .text(),
        "Unsupported parameter X-FOO"
    );
}
