//! Unit tests: messages built from builder content.

use base64::Engine;
use serde_json::json;

use super::tests::{count_header, header_section, header_value, limits, request, text};
use super::text::is_crlf_only;
use super::*;

fn builder(content: serde_json::Value, recipients: serde_json::Value) -> InjectRequest {
    request(json!({
        "envelope_sender": "bounces@sender.test",
        "recipients": recipients,
        "content": content,
    }))
}

fn one(content: serde_json::Value) -> Vec<u8> {
    let out = compose(
        &builder(
            content,
            json!([{"email": "to@x.test", "name": "Ann Example"}]),
        ),
        &limits(),
    )
    .expect("composes");
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    assert_eq!(out.messages.len(), 1);
    out.messages[0].body.to_vec()
}

/// The boundary declared by the first Content-Type with this multipart type.
fn boundary(msg: &str, multipart: &str) -> String {
    let at = msg
        .find(&format!("Content-Type: {multipart}"))
        .unwrap_or_else(|| panic!("{multipart} in {msg}"));
    let rest = &msg[at..];
    let b = rest.find("boundary=\"").expect("boundary attribute") + "boundary=\"".len();
    let end = rest[b..].find('"').expect("closing quote");
    rest[b..b + end].to_owned()
}

/// Checks that a multipart's boundary delimits `parts` parts and is closed.
fn assert_parts(msg: &str, boundary: &str, parts: usize) {
    let open = format!("\r\n--{boundary}\r\n");
    let close = format!("\r\n--{boundary}--\r\n");
    assert_eq!(
        msg.matches(&open).count(),
        parts,
        "parts of {boundary}:\n{msg}"
    );
    assert_eq!(
        msg.matches(&close).count(),
        1,
        "close of {boundary}:\n{msg}"
    );
    assert!(msg.find(&open) < msg.find(&close));
}

#[test]
fn text_only_message_has_the_expected_headers() {
    let msg = one(json!({
        "from": {"email": "news@sender.test", "name": "Sender News"},
        "reply_to": {"email": "help@sender.test"},
        "subject": "Hello",
        "headers": {"X-Campaign": "spring", "List-Unsubscribe": "<mailto:unsub@sender.test>"},
        "text_body": "Plain text\nsecond line\n"
    }));
    assert!(is_crlf_only(&msg));
    let t = text(&msg);
    assert_eq!(
        header_value(&msg, "From"),
        Some("\"Sender News\" <news@sender.test>")
    );
    assert_eq!(header_value(&msg, "Reply-To"), Some("<help@sender.test>"));
    assert_eq!(
        header_value(&msg, "To"),
        Some("\"Ann Example\" <to@x.test>")
    );
    assert_eq!(header_value(&msg, "Subject"), Some("Hello"));
    assert_eq!(header_value(&msg, "X-Campaign"), Some("spring"));
    assert_eq!(
        header_value(&msg, "List-Unsubscribe"),
        Some("<mailto:unsub@sender.test>")
    );
    assert_eq!(header_value(&msg, "MIME-Version"), Some("1.0"));
    for name in [
        "Date",
        "Message-ID",
        "From",
        "To",
        "Subject",
        "MIME-Version",
        "Content-Type",
    ] {
        assert_eq!(count_header(&msg, name), 1, "{name}:\n{t}");
    }
    let id = header_value(&msg, "Message-ID").expect("id");
    assert!(
        id.starts_with('<') && id.ends_with("@mta.volley.test>") && !id.contains("0000000000"),
        "{id}"
    );
    assert!(
        t.contains("Content-Type: text/plain; charset=\"utf-8\"\r\n"),
        "{t}"
    );
    assert!(t.ends_with("\r\n\r\nPlain text\r\nsecond line\r\n"), "{t}");
}

#[test]
fn text_and_html_make_a_multipart_alternative() {
    let msg = one(json!({
        "from": {"email": "f@sender.test"},
        "subject": "Two parts",
        "text_body": "Hello {{ name }}",
        "html_body": "<p>Hello {{ name }}</p>",
        "amp_html_body": "<html amp4email><body>{{ name }}</body></html>"
    }));
    let t = text(&msg);
    let b = boundary(t, "multipart/alternative");
    assert_parts(t, &b, 3);
    let plain = t.find("Content-Type: text/plain").expect("text part");
    let amp = t.find("Content-Type: text/x-amp-html").expect("amp part");
    let html = t.find("Content-Type: text/html").expect("html part");
    assert!(
        plain < amp && amp < html,
        "text, AMP, then HTML (the preferred last)"
    );
    assert!(t.contains("Hello Ann Example\r\n") || t.contains("Hello Ann Example\r\n--"));
    assert!(t.contains("<p>Hello Ann Example</p>"), "{t}");
    assert!(is_crlf_only(&msg));
}

#[test]
fn html_parts_escape_substituted_values_and_text_parts_do_not() {
    let req = builder(
        json!({
            "from": {"email": "f@sender.test"},
            "headers": {"To": "list@sender.test"},
            "text_body": "{{ v }}",
            "html_body": "<p>{{ v }}</p>"
        }),
        json!([{"email": "a@x.test", "substitutions": {"v": "<b>&"}}]),
    );
    let out = compose(&req, &limits()).expect("composes");
    let t = text(&out.messages[0].body);
    assert!(t.contains("<p>&lt;b&gt;&amp;</p>"), "{t}");
    assert!(t.contains("\r\n\r\n<b>&\r\n"), "{t}");
}

#[test]
fn attachments_inline_and_regular() {
    let gif = "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7";
    let msg = one(json!({
        "from": {"email": "f@sender.test"},
        "subject": "Files",
        "text_body": "see attached",
        "html_body": "<img src=\"cid:my-image\">",
        "attachments": [
            {"data": gif, "base64": true, "content_type": "image/gif", "content_id": "my-image", "file_name": "pixel.gif"},
            {"data": "col1,col2\nA,B\n", "content_type": "text/csv", "file_name": "report.csv"},
            {"data": "AAEC\nAwQ=", "base64": true, "content_type": "application/octet-stream"}
        ]
    }));
    let t = text(&msg);
    assert!(is_crlf_only(&msg));
    assert_eq!(count_header(&msg, "Content-Type"), 1);
    assert!(header_value(&msg, "Content-Type")
        .expect("ct")
        .starts_with("multipart/mixed"));
    let mixed = boundary(t, "multipart/mixed");
    let related = boundary(t, "multipart/related");
    let alternative = boundary(t, "multipart/alternative");
    assert!(mixed != related && related != alternative && mixed != alternative);
    assert_parts(t, &mixed, 3); // related + csv + binary
    assert_parts(t, &related, 2); // alternative + gif
    assert_parts(t, &alternative, 2);
    assert!(t.contains("type=\"multipart/alternative\""), "{t}");
    // Nesting: mixed opens first, related inside it, alternative inside that.
    let pos = |b: &str| t.find(&format!("--{b}\r\n")).expect("delimiter");
    assert!(pos(&mixed) < pos(&related) && pos(&related) < pos(&alternative));
    assert!(t.find(&format!("--{alternative}--")) < t.find(&format!("--{related}--")));
    assert!(t.find(&format!("--{related}--")) < t.find(&format!("--{mixed}--")));

    assert!(t.contains("Content-ID: <my-image>\r\n"), "{t}");
    assert!(
        t.contains("Content-Disposition: inline; filename=\"pixel.gif\""),
        "{t}"
    );
    assert!(
        t.contains("Content-Disposition: attachment; filename=\"report.csv\""),
        "{t}"
    );
    assert!(t.contains("Content-Disposition: attachment\r\n"), "{t}");
    // The GIF goes back out as base64 of the same bytes.
    let gif_bytes = base64::engine::general_purpose::STANDARD
        .decode(gif)
        .expect("gif");
    let reencoded = base64::engine::general_purpose::STANDARD.encode(&gif_bytes);
    assert!(t.contains(&reencoded), "{t}");
    // Line-wrapped base64 input is accepted: bytes 0..=4.
    assert!(t.contains("AAECAwQ="), "{t}");
    // Text attachments keep their bytes: bare LFs are quoted-printable encoded.
    assert!(t.contains("col1,col2=0AA,B=0A"), "{t}");
}

#[test]
fn attachment_problems_are_request_errors() {
    let base = |a: serde_json::Value| {
        builder(
            json!({"from": {"email": "f@sender.test"}, "text_body": "x", "attachments": [a]}),
            json!([{"email": "a@x.test"}]),
        )
    };
    let cases = [
        (
            json!({"data": "not base64!!", "base64": true, "content_type": "image/png"}),
            "bad_attachment",
        ),
        (
            json!({"data": "x", "content_type": "nonsense"}),
            "bad_attachment",
        ),
        (
            json!({"data": "x", "content_type": "text/plain\r\nBcc: v@x.test"}),
            "header_injection",
        ),
        (
            json!({"data": "x", "content_type": "text/plain", "file_name": "a\nb.txt"}),
            "header_injection",
        ),
        (
            json!({"data": "x", "content_type": "image/png", "content_id": "a b"}),
            "bad_attachment",
        ),
        (
            json!({"data": "x", "content_type": "image/png", "content_id": "a\r\nX: y"}),
            "header_injection",
        ),
    ];
    for (a, code) in cases {
        let err = compose(&base(a.clone()), &limits()).expect_err("refused");
        assert_eq!(err.code, code, "{a}: {}", err.message);
        assert!(
            err.message.contains("content.attachments[0]"),
            "{}",
            err.message
        );
    }
}

#[test]
fn from_and_a_body_are_required() {
    let err = compose(
        &builder(json!({"text_body": "x"}), json!([{"email": "a@x.test"}])),
        &limits(),
    )
    .expect_err("no from");
    assert_eq!(err.code, "missing_from");
    let err = compose(
        &builder(
            json!({"from": {"email": "f@x.test"}, "subject": "s"}),
            json!([{"email": "a@x.test"}]),
        ),
        &limits(),
    )
    .expect_err("no body");
    assert_eq!(err.code, "missing_body");
    // From given as a header is enough.
    let msg = one(json!({"headers": {"From": "Raw <raw@sender.test>"}, "text_body": "x"}));
    assert_eq!(header_value(&msg, "From"), Some("Raw <raw@sender.test>"));
    // An invalid From address.
    let err = compose(
        &builder(
            json!({"from": {"email": "not an address"}, "text_body": "x"}),
            json!([{"email": "a@x.test"}]),
        ),
        &limits(),
    )
    .expect_err("bad from");
    assert_eq!(err.code, "invalid_from");
}

#[test]
fn header_injection_in_builder_fields() {
    let rcpt = json!([{"email": "a@x.test"}]);
    // A line break in a fixed subject.
    let err = compose(
        &builder(json!({"from": {"email": "f@x.test"}, "subject": "Hi\r\nBcc: v@x.test", "text_body": "x"}), rcpt.clone()),
        &limits(),
    )
    .expect_err("subject");
    assert_eq!(err.code, "header_injection");
    assert!(err.message.contains("content.subject"), "{}", err.message);
    // In a from name.
    let err = compose(
        &builder(
            json!({"from": {"email": "f@x.test", "name": "A\nB"}, "text_body": "x"}),
            rcpt.clone(),
        ),
        &limits(),
    )
    .expect_err("from name");
    assert_eq!(err.code, "header_injection");
    // In a header name.
    let err = compose(
        &builder(json!({"from": {"email": "f@x.test"}, "headers": {"X-A\r\nBcc": "v@x.test"}, "text_body": "x"}), rcpt.clone()),
        &limits(),
    )
    .expect_err("header name");
    assert_eq!(err.code, "header_injection");
    let err = compose(
        &builder(
            json!({"from": {"email": "f@x.test"}, "headers": {"X Bad": "v"}, "text_body": "x"}),
            rcpt.clone(),
        ),
        &limits(),
    )
    .expect_err("header name with a space");
    assert_eq!(err.code, "bad_header");

    // In a header value, through one recipient's substitution: only that one is refused.
    let req = builder(
        json!({"from": {"email": "f@x.test"}, "headers": {"X-Ref": "{{ ref }}"}, "subject": "Hi {{ name }}", "text_body": "x"}),
        json!([
            {"email": "a@x.test", "substitutions": {"ref": "r1"}},
            {"email": "b@x.test", "substitutions": {"ref": "r2\r\nBcc: victim@else.test"}},
            {"email": "c@x.test", "name": "Eve\r\nBcc: victim@else.test"},
        ]),
    );
    let out = compose(&req, &limits()).expect("composes");
    assert_eq!(out.messages.len(), 1);
    assert_eq!(header_value(&out.messages[0].body, "X-Ref"), Some("r1"));
    let codes: Vec<(usize, &str)> = out.rejected.iter().map(|r| (r.index, r.code)).collect();
    assert_eq!(
        codes,
        vec![(1, "header_injection"), (2, "header_injection")]
    );
    assert!(!text(&out.messages[0].body).contains("victim"));
}

#[test]
fn builder_header_rules() {
    let rcpt = json!([{"email": "a@x.test"}]);
    let cases = [
        json!({"from": {"email": "f@x.test"}, "headers": {"Content-Type": "text/plain"}, "text_body": "x"}),
        json!({"from": {"email": "f@x.test"}, "headers": {"mime-version": "1.0"}, "text_body": "x"}),
        json!({"from": {"email": "f@x.test"}, "subject": "a", "headers": {"Subject": "b"}, "text_body": "x"}),
        json!({"from": {"email": "f@x.test"}, "headers": {"From": "g@x.test"}, "text_body": "x"}),
        json!({"from": {"email": "f@x.test"}, "headers": {"To": "a@x.test", "to": "b@x.test"}, "text_body": "x"}),
    ];
    for c in cases {
        let err = compose(&builder(c.clone(), rcpt.clone()), &limits()).expect_err("refused");
        assert_eq!(err.code, "bad_header", "{c}: {}", err.message);
    }
    // Date and Message-ID given by the client are kept and not duplicated.
    let msg = one(json!({
        "from": {"email": "f@x.test"},
        "headers": {"date": "Tue, 1 Jul 2025 10:00:00 +0000", "message-id": "<given@sender.test>"},
        "text_body": "x"
    }));
    assert_eq!(count_header(&msg, "Date"), 1);
    assert_eq!(count_header(&msg, "Message-ID"), 1);
    assert_eq!(
        header_value(&msg, "Message-ID"),
        Some("<given@sender.test>")
    );
}

#[test]
fn a_to_header_in_the_request_makes_builder_content_static() {
    let req = builder(
        json!({"from": {"email": "f@sender.test"}, "headers": {"To": "Subscribers <list@sender.test>"},
               "subject": "News", "text_body": "Same for all", "html_body": "<p>Same</p>"}),
        json!([{"email": "a@one.test", "name": "A"}, {"email": "b@two.test"}, {"email": "c@three.test"}]),
    );
    let composer = Composer::new(&req.template(), &limits()).expect("compiles");
    assert!(composer.is_static());
    let out = compose(&req, &limits()).expect("composes");
    assert_eq!(out.messages.len(), 1);
    assert_eq!(out.messages[0].recipients.len(), 3);
    assert_eq!(
        header_value(&out.messages[0].body, "To"),
        Some("Subscribers <list@sender.test>")
    );

    // Without it each recipient has its own To: and its own message.
    let req = builder(
        json!({"from": {"email": "f@sender.test"}, "subject": "News", "text_body": "Same for all"}),
        json!([{"email": "a@one.test", "name": "A"}, {"email": "b@two.test"}]),
    );
    assert!(!Composer::new(&req.template(), &limits())
        .expect("compiles")
        .is_static());
    let out = compose(&req, &limits()).expect("composes");
    assert_eq!(out.messages.len(), 2);
    assert_eq!(
        header_value(&out.messages[0].body, "To"),
        Some("\"A\" <a@one.test>")
    );
    assert_eq!(
        header_value(&out.messages[1].body, "To"),
        Some("<b@two.test>")
    );
}

#[test]
fn identical_builder_renders_share_one_message_and_its_bytes() {
    let req = builder(
        json!({"from": {"email": "f@sender.test"}, "headers": {"To": "list@sender.test"},
               "subject": "Weather in {{ city }}", "text_body": "It is sunny in {{ city }}.",
               "html_body": "<p>{{ city }}</p>",
               "attachments": [{"data": "x", "content_type": "text/plain", "file_name": "a.txt"}]}),
        json!([
            {"email": "a@x.test", "substitutions": {"city": "Oslo"}},
            {"email": "b@x.test", "substitutions": {"city": "Rome"}},
            {"email": "c@y.test", "substitutions": {"city": "Oslo"}},
        ]),
    );
    let out = compose(&req, &limits()).expect("composes");
    assert_eq!(out.messages.len(), 2);
    let who: Vec<Vec<usize>> = out
        .messages
        .iter()
        .map(|m| m.recipients.iter().map(|r| r.0).collect())
        .collect();
    assert_eq!(who, vec![vec![0, 2], vec![1]]);
    assert_eq!(
        header_value(&out.messages[1].body, "Subject"),
        Some("Weather in Rome")
    );
    assert_ne!(
        header_value(&out.messages[0].body, "Message-ID"),
        header_value(&out.messages[1].body, "Message-ID")
    );
}

#[test]
fn non_ascii_and_long_values_are_encoded_within_line_limits() {
    let long_subject = "word ".repeat(400);
    let msg = one(json!({
        "from": {"email": "f@sender.test", "name": "Zoë Ålander"},
        "subject": "Grüße aus Köln",
        "headers": {"X-Long": long_subject, "X-Token": "t".repeat(1500)},
        "text_body": format!("Ünïcödé body\n{}\n", "z".repeat(3000)),
    }));
    assert!(is_crlf_only(&msg));
    let t = text(&msg);
    assert!(
        t.split("\r\n").all(|l| l.len() <= 998),
        "a line over 998 octets"
    );
    assert!(
        header_section(&msg).is_ascii(),
        "headers are RFC 2047 encoded"
    );
    assert!(
        header_value(&msg, "Subject")
            .expect("subject")
            .starts_with("=?utf-8?"),
        "{t}"
    );
    assert!(t.contains("Content-Transfer-Encoding: "), "{t}");
}

#[test]
fn templated_from_address_is_checked_per_recipient() {
    let req = builder(
        json!({"from": {"email": "{{ sender }}", "name": "{{ brand }}"}, "text_body": "x",
               "headers": {"To": "list@x.test"}}),
        json!([
            {"email": "a@x.test", "substitutions": {"sender": "news@acme.test", "brand": "Acme"}},
            {"email": "b@x.test", "substitutions": {"sender": "broken", "brand": "B"}},
        ]),
    );
    let out = compose(&req, &limits()).expect("composes");
    assert_eq!(
        header_value(&out.messages[0].body, "From"),
        Some("\"Acme\" <news@acme.test>")
    );
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].code, "invalid_from");
}
