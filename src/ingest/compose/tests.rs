//! Unit tests: request parsing, templates, raw content, addresses, grouping.

use std::sync::Arc;

use serde_json::json;

use super::text::is_crlf_only;
use super::*;

pub(super) fn limits() -> ComposeLimits {
    ComposeLimits {
        max_recipients: 100,
        max_message_size: 64 * 1024,
        hostname: "mta.volley.test".into(),
    }
}

pub(super) fn request(v: serde_json::Value) -> InjectRequest {
    serde_json::from_value(v).expect("request parses")
}

pub(super) fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("utf-8")
}

/// The header section of a message (through the CRLF ending its last field).
pub(super) fn header_section(b: &[u8]) -> &str {
    let t = text(b);
    let end = t.find("\r\n\r\n").expect("blank line");
    &t[..end + 2]
}

/// How many header fields of the section have this name.
pub(super) fn count_header(b: &[u8], name: &str) -> usize {
    header_section(b)
        .split("\r\n")
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
        })
        .count()
}

pub(super) fn header_value<'a>(b: &'a [u8], name: &str) -> Option<&'a str> {
    header_section(b).split("\r\n").find_map(|l| {
        l.split_once(':')
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    })
}

fn body_of(b: &[u8]) -> &str {
    let t = text(b);
    &t[t.find("\r\n\r\n").expect("blank line") + 4..]
}

fn rcpts(emails: &[&str]) -> serde_json::Value {
    serde_json::Value::Array(emails.iter().map(|e| json!({ "email": e })).collect())
}

fn raw(content: &str, recipients: serde_json::Value) -> InjectRequest {
    request(json!({
        "envelope_sender": "bounces@sender.test",
        "recipients": recipients,
        "content": content,
    }))
}

#[test]
fn kumomta_style_request_parses_with_every_field() {
    // From text, so the header map's order is the JSON's.
    let req: InjectRequest = serde_json::from_str(
        &json!({
            "envelope_sender": "some.id@bounces.sender-example.com",
            "recipients": [
                {"email": "john.smith@mailbox-example.com", "name": "John Smith",
                 "substitutions": {"age": 42, "gender": "male"}},
                {"email": "jane@mailbox-example.com", "metadata": {"list": "vip"}}
            ],
            "content": {
                "from": {"email": "sales@sender-example.com", "name": "Sales"},
                "reply_to": {"email": "help@sender-example.com"},
                "subject": "Hello {{ name }}",
                "text_body": "This is the plain text part, {{ campaign_title }}",
                "html_body": "<p>This is the <b>HTML</b> part</p>",
                "amp_html_body": "<!doctype html><html amp4email>...</html>",
                "headers": {"X-Tenant": "MyTenant", "List-Id": "<news.sender-example.com>"},
                "attachments": [{
                    "data": "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7",
                    "base64": true, "content_type": "image/gif",
                    "content_id": "my-image", "file_name": "pixel.gif"
                }]
            },
            "substitutions": {"campaign_title": "Fall Campaign"},
            "template_dialect": "Jinja",
            "deferred_spool": false,
            "deferred_generation": false,
            "trace_headers": {"received_header": false, "supplemental_header": false,
                              "header_name": "X-KumoRef", "include_meta_names": []},
            "campaign_id": "fall",
            "tags": {"team": "growth"}
        })
        .to_string()
        .replace(
            r#"{"List-Id":"<news.sender-example.com>","X-Tenant":"MyTenant"}"#,
            r#"{"X-Tenant":"MyTenant","List-Id":"<news.sender-example.com>"}"#,
        ),
    )
    .expect("parses");
    assert_eq!(req.recipients.len(), 2);
    assert_eq!(req.recipients[0].substitutions["age"], json!(42));
    assert_eq!(req.recipients[1].metadata["list"], "vip");
    let Content::Builder(b) = &req.content else {
        panic!("builder content expected");
    };
    assert_eq!(b.headers[0], ("X-Tenant".into(), "MyTenant".into()));
    assert_eq!(b.headers[1].0, "List-Id", "header order is kept");
    assert_eq!(
        b.from.as_ref().map(|f| f.name.as_deref()),
        Some(Some("Sales"))
    );
    assert!(b.attachments[0].base64);
    assert_eq!(req.campaign_id.as_deref(), Some("fall"));

    let out = compose(&req, &limits()).expect("composes");
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    assert_eq!(out.messages.len(), 2);
    assert_eq!(
        out.messages[1].tags,
        vec![
            ("list".into(), "vip".into()),
            ("team".into(), "growth".into())
        ]
    );

    // The plain KumoMTA example: string content, minimal recipient.
    let req = request(json!({
        "envelope_sender": "noreply@example.com",
        "content": "Subject: hello\n\nHello there",
        "recipients": [{"email": "recipient@example.com"}]
    }));
    assert!(matches!(req.content, Content::Raw(_)));
    assert_eq!(
        compose(&req, &limits()).expect("composes").messages.len(),
        1
    );
}

#[test]
fn unknown_and_mistyped_fields_are_refused_with_readable_errors() {
    let err = serde_json::from_value::<InjectRequest>(json!({
        "envelope_sender": "a@b.test", "recipients": [], "content": "x", "recipents": []
    }))
    .expect_err("typo refused")
    .to_string();
    assert!(err.contains("unknown field `recipents`"), "{err}");

    // Errors inside the builder object are not swallowed by the string/object choice.
    let err = serde_json::from_value::<InjectRequest>(json!({
        "envelope_sender": "a@b.test", "recipients": [],
        "content": {"text_body": "x", "subjet": "typo"}
    }))
    .expect_err("typo refused")
    .to_string();
    assert!(err.contains("unknown field `subjet`"), "{err}");

    let err = serde_json::from_value::<InjectRequest>(json!({
        "envelope_sender": "a@b.test", "recipients": [], "content": 42
    }))
    .expect_err("number refused")
    .to_string();
    assert!(
        err.contains("a string (a complete RFC 5322 message) or an object"),
        "{err}"
    );

    let err = serde_json::from_value::<InjectRequest>(json!({
        "envelope_sender": "a@b.test",
        "recipients": [{"email": "x@y.test", "substitutons": {}}],
        "content": "x"
    }))
    .expect_err("recipient typo refused")
    .to_string();
    assert!(err.contains("unknown field `substitutons`"), "{err}");

    let err = serde_json::from_value::<InjectRequest>(json!({
        "envelope_sender": "a@b.test", "recipients": [], "content": "x",
        "template_dialect": "Liquid"
    }))
    .expect_err("unknown dialect refused")
    .to_string();
    assert!(err.contains("Liquid"), "{err}");
}

#[test]
fn kumomta_fields_volley_cannot_honour_are_refused() {
    let base = json!({
        "envelope_sender": "a@b.test",
        "recipients": [{"email": "x@y.test"}],
        "content": "Subject: s\n\nbody\n"
    });
    for (field, value) in [
        ("deferred_spool", json!(true)),
        ("deferred_generation", json!(true)),
        ("template_dialect", json!("Handlebars")),
        ("trace_headers", json!({"received_header": true})),
        ("trace_headers", json!({"supplemental_header": true})),
    ] {
        let mut v = base.clone();
        v[field] = value;
        let err = compose(&request(v), &limits()).expect_err(field);
        assert_eq!(err.code, "unsupported_field", "{field}");
        assert!(err.message.contains(field), "{}", err.message);
        assert_eq!(err.status(), 400);
    }
    // Their defaults, spelled out, are fine.
    let mut v = base.clone();
    v["deferred_spool"] = json!(false);
    v["trace_headers"] = json!({"received_header": false, "supplemental_header": false});
    assert!(compose(&request(v), &limits()).is_ok());
}

#[test]
fn static_raw_content_is_one_message_for_many_recipients_of_many_domains() {
    let req = raw(
        "From: news@sender.test\nSubject: Weekly\n\nSame for everyone.\n",
        rcpts(&[
            "a@one.test",
            "b@two.test",
            "c@three.test",
            "d@one.test",
            "e@four.test",
        ]),
    );
    let composer = Composer::new(&req.template(), &limits()).expect("compiles");
    assert!(composer.is_static());
    let out = compose(&req, &limits()).expect("composes");
    assert_eq!(out.messages.len(), 1);
    let m = &out.messages[0];
    assert_eq!(m.reverse_path, "bounces@sender.test");
    assert_eq!(
        m.recipients,
        vec![
            (0, "a@one.test".into()),
            (1, "b@two.test".into()),
            (2, "c@three.test".into()),
            (3, "d@one.test".into()),
            (4, "e@four.test".into()),
        ]
    );
    assert!(body_of(&m.body).starts_with("Same for everyone.\r\n"));
}

#[test]
fn personalised_content_is_one_message_per_distinct_body_even_when_not_adjacent() {
    let req = raw(
        "Subject: Hi\n\nHello {{ name }}\n",
        json!([
            {"email": "a@x.test", "name": "Ann"},
            {"email": "b@y.test", "name": "Bob"},
            {"email": "c@z.test", "name": "Ann"},
            {"email": "d@x.test", "name": "Bob"},
            {"email": "e@x.test", "name": "Cy"},
        ]),
    );
    assert!(!Composer::new(&req.template(), &limits())
        .expect("compiles")
        .is_static());
    let out = compose(&req, &limits()).expect("composes");
    assert_eq!(out.messages.len(), 3);
    let who: Vec<Vec<usize>> = out
        .messages
        .iter()
        .map(|m| m.recipients.iter().map(|(i, _)| *i).collect())
        .collect();
    assert_eq!(who, vec![vec![0, 2], vec![1, 3], vec![4]]);
    assert_eq!(body_of(&out.messages[0].body), "Hello Ann\r\n");
    assert_eq!(body_of(&out.messages[1].body), "Hello Bob\r\n");
    // One message, one Message-ID; different messages, different ones.
    let ids: Vec<&str> = out
        .messages
        .iter()
        .map(|m| header_value(&m.body, "Message-ID").expect("message-id"))
        .collect();
    assert_ne!(ids[0], ids[1]);
    assert_ne!(ids[1], ids[2]);
    assert!(ids.iter().all(|id| id.ends_with("@mta.volley.test>")));
}

#[test]
fn substitutions_precedence_recipient_over_name_email_over_request() {
    let req = request(json!({
        "envelope_sender": "a@b.test",
        "substitutions": {"greeting": "Hello", "name": "Friend", "city": "Paris"},
        "recipients": [
            {"email": "one@x.test", "name": "Ann"},
            {"email": "two@x.test"},
            {"email": "three@x.test", "name": "Cy", "substitutions": {"greeting": "Hej", "name": "Cyril", "n": 3}},
        ],
        "content": "Subject: s\n\n{{ greeting }} {{ name }} <{{ email }}> {{ city }} {{ n }}\n"
    }));
    let out = compose(&req, &limits()).expect("composes");
    let bodies: Vec<&str> = out.messages.iter().map(|m| body_of(&m.body)).collect();
    assert_eq!(
        bodies,
        vec![
            "Hello Ann <one@x.test> Paris \r\n",
            // No name of its own: the request's `name`, as KumoMTA does.
            "Hello Friend <two@x.test> Paris \r\n",
            "Hej Cyril <three@x.test> Paris 3\r\n",
        ]
    );
}

#[test]
fn static_content_still_honours_a_recipient_overriding_a_request_substitution() {
    let req = request(json!({
        "envelope_sender": "a@b.test",
        "substitutions": {"brand": "Acme"},
        "recipients": [
            {"email": "one@x.test"},
            {"email": "two@x.test", "substitutions": {"brand": "Globex"}},
            {"email": "three@x.test", "substitutions": {"unrelated": 1}},
        ],
        "content": "Subject: {{ brand }} news\n\nFrom {{ brand }}\n"
    }));
    let composer = Composer::new(&req.template(), &limits()).expect("compiles");
    assert!(composer.is_static());
    let a = composer.render(0, &req.recipients[0]).expect("renders");
    let b = composer.render(1, &req.recipients[1]).expect("renders");
    let c = composer.render(2, &req.recipients[2]).expect("renders");
    assert!(Arc::ptr_eq(&a.body, &c.body), "shared body");
    assert_eq!(header_value(&b.body, "Subject"), Some("Globex news"));
    assert_eq!(body_of(&b.body), "From Globex\r\n");
    let out = compose(&req, &limits()).expect("composes");
    assert_eq!(out.messages.len(), 2);
    assert_eq!(out.messages[0].recipients.len(), 2);
}

#[test]
fn undefined_variables_render_empty_but_lookups_on_them_fail_the_recipient() {
    let req = raw("Subject: s\n\n[{{ nothing }}]\n", rcpts(&["a@x.test"]));
    let out = compose(&req, &limits()).expect("composes");
    assert_eq!(body_of(&out.messages[0].body), "[]\r\n");

    let req = request(json!({
        "envelope_sender": "a@b.test",
        "recipients": [{"email": "a@x.test", "substitutions": {"user": {"first": "Ann"}}}, {"email": "b@x.test"}],
        "content": "Subject: s\n\nHi {{ user.first }}\n"
    }));
    let out = compose(&req, &limits()).expect("composes");
    assert_eq!(out.messages.len(), 1);
    assert_eq!(body_of(&out.messages[0].body), "Hi Ann\r\n");
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].code, "render_failed");
    assert_eq!(out.rejected[0].index, 1);
    assert!(
        out.rejected[0].reason.contains("content (body)"),
        "{}",
        out.rejected[0].reason
    );
}

#[test]
fn bad_template_is_a_request_error_naming_the_field() {
    let err = compose(
        &raw("Subject: s\n\nHello {{ name\n", rcpts(&["a@x.test"])),
        &limits(),
    )
    .expect_err("syntax error");
    assert_eq!(err.code, "bad_template");
    assert!(err.message.contains("content (body)"), "{}", err.message);
    assert_eq!(err.status(), 422);

    let req = request(json!({
        "envelope_sender": "a@b.test",
        "recipients": [{"email": "a@x.test"}],
        "content": {"from": {"email": "f@b.test"}, "subject": "{% if %}", "text_body": "x"}
    }));
    let err = compose(&req, &limits()).expect_err("syntax error");
    assert_eq!(err.code, "bad_template");
    assert!(err.message.contains("content.subject"), "{}", err.message);
}

#[test]
fn static_dialect_leaves_braces_alone() {
    let req = request(json!({
        "envelope_sender": "a@b.test",
        "recipients": [{"email": "a@x.test"}, {"email": "b@x.test", "name": "B"}],
        "template_dialect": "Static",
        "content": "Subject: {{ literally }}\n\n{% not a tag %} {{ name }}\n"
    }));
    let out = compose(&req, &limits()).expect("composes");
    assert_eq!(out.messages.len(), 1);
    assert_eq!(
        header_value(&out.messages[0].body, "Subject"),
        Some("{{ literally }}")
    );
    assert_eq!(
        body_of(&out.messages[0].body),
        "{% not a tag %} {{ name }}\r\n"
    );
}

#[test]
fn substituted_line_breaks_cannot_add_header_fields_to_raw_content() {
    let req = request(json!({
        "envelope_sender": "a@b.test",
        "recipients": [
            {"email": "ok@x.test", "substitutions": {"subj": "Fine", "body": "two\nlines"}},
            {"email": "evil@x.test", "substitutions": {"subj": "Hi\r\nBcc: victim@else.test"}},
            {"email": "evil2@x.test", "substitutions": {"subj": "Hi\nX-Evil: 1"}},
            {"email": "evil3@x.test", "substitutions": {"subj": "Hi\rX-Evil: 1"}},
        ],
        "content": "Subject: {{ subj }}\n\n{{ body }}\n"
    }));
    let out = compose(&req, &limits()).expect("composes");
    assert_eq!(out.messages.len(), 1);
    assert_eq!(out.messages[0].recipients[0].1, "ok@x.test");
    // Line breaks in the body are fine (and become CRLF).
    assert_eq!(body_of(&out.messages[0].body), "two\r\nlines\r\n");
    let codes: Vec<(usize, &str)> = out.rejected.iter().map(|r| (r.index, r.code)).collect();
    assert_eq!(
        codes,
        vec![
            (1, "header_injection"),
            (2, "header_injection"),
            (3, "header_injection")
        ]
    );

    // The same through a request-level substitution is the request's fault.
    let req = request(json!({
        "envelope_sender": "a@b.test",
        "substitutions": {"subj": "Hi\r\nBcc: victim@else.test"},
        "recipients": [{"email": "a@x.test"}],
        "content": "Subject: {{ subj }}\n\nbody\n"
    }));
    let err = compose(&req, &limits()).expect_err("injection");
    assert_eq!(err.code, "header_injection");

    // A filter that produces a line break is caught as well.
    let req = raw(
        "Subject: {{ email | replace('@', '\\n') }}\n\nbody\n",
        rcpts(&["a@x.test"]),
    );
    let out = compose(&req, &limits()).expect("composes");
    assert_eq!(out.rejected[0].code, "header_injection");
}

#[test]
fn rendered_header_names_must_be_header_names() {
    let req = request(json!({
        "envelope_sender": "a@b.test",
        "recipients": [
            {"email": "a@x.test", "substitutions": {"h": "X-Good"}},
            {"email": "b@x.test", "substitutions": {"h": "Bad Name"}},
            {"email": "c@x.test", "substitutions": {"h": "X-A\r\nBcc"}},
        ],
        "content": "Subject: s\n{{ h }}: value\n\nbody\n"
    }));
    let out = compose(&req, &limits()).expect("composes");
    assert_eq!(out.messages.len(), 1);
    assert_eq!(header_value(&out.messages[0].body, "X-Good"), Some("value"));
    let codes: Vec<&str> = out.rejected.iter().map(|r| r.code).collect();
    assert_eq!(codes, vec!["bad_content", "header_injection"]);
}

#[test]
fn raw_content_needs_a_header_section_and_a_blank_line() {
    for content in [
        "Subject: no body separator\n",
        "\nbody only\n",
        "",
        "just text\n\nbody\n",
    ] {
        let err = compose(&raw(content, rcpts(&["a@x.test"])), &limits()).expect_err(content);
        assert_eq!(err.code, "bad_content", "{content:?}: {}", err.message);
    }
    // An empty body is fine.
    assert!(compose(&raw("Subject: s\n\n", rcpts(&["a@x.test"])), &limits()).is_ok());
    // A template whose header line renders empty would end the section early.
    let req = request(json!({
        "envelope_sender": "a@b.test",
        "recipients": [{"email": "a@x.test", "substitutions": {"h": ""}}],
        "content": "Subject: s\n{{ h }}\nX: y\n\nbody\n"
    }));
    let out = compose(&req, &limits()).expect("composes");
    assert_eq!(out.rejected[0].code, "bad_content");
}

#[test]
fn line_endings_become_crlf() {
    let req = request(json!({
        "envelope_sender": "a@b.test",
        "recipients": [{"email": "a@x.test", "substitutions": {"v": "x\ry\nz\r\n"}}],
        "content": "Subject: s\r\nX-Mixed: 1\n\nline one\nline two\r\nline three\rend {{ v }}\n\n"
    }));
    let out = compose(&req, &limits()).expect("composes");
    let body = &out.messages[0].body;
    assert!(is_crlf_only(body), "{:?}", text(body));
    assert_eq!(header_value(body, "X-Mixed"), Some("1"));
    assert_eq!(
        body_of(body),
        "line one\r\nline two\r\nline three\r\nend x\r\ny\r\nz\r\n\r\n\r\n"
    );
}

#[test]
fn date_and_message_id_are_added_only_when_missing() {
    let out = compose(&raw("Subject: s\n\nb\n", rcpts(&["a@x.test"])), &limits()).expect("ok");
    let body = &out.messages[0].body;
    assert_eq!(count_header(body, "Date"), 1);
    assert_eq!(count_header(body, "Message-ID"), 1);
    let date = header_value(body, "Date").expect("date");
    assert!(date.ends_with("+0000") && date.contains(", "), "{date}");
    let id = header_value(body, "Message-ID").expect("id");
    assert!(
        id.starts_with('<') && id.ends_with("@mta.volley.test>"),
        "{id}"
    );
    assert_eq!(id.len(), "<@mta.volley.test>".len() + 32);

    let content =
        "date: Tue, 1 Jul 2025 10:00:00 +0000\nMessage-Id: <mine@sender.test>\nSubject: s\n\nb\n";
    let out = compose(&raw(content, rcpts(&["a@x.test"])), &limits()).expect("ok");
    let body = &out.messages[0].body;
    assert_eq!(count_header(body, "Date"), 1);
    assert_eq!(count_header(body, "Message-ID"), 1);
    assert_eq!(header_value(body, "Message-ID"), Some("<mine@sender.test>"));
    assert_eq!(
        header_value(body, "Date"),
        Some("Tue, 1 Jul 2025 10:00:00 +0000")
    );
}

#[test]
fn long_lines_are_refused() {
    let long = "x".repeat(999);
    let err = compose(
        &raw(&format!("Subject: s\n\n{long}\n"), rcpts(&["a@x.test"])),
        &limits(),
    )
    .expect_err("static long line");
    assert_eq!(err.code, "line_too_long");
    // 998 is the limit, inclusive.
    let ok = "x".repeat(998);
    assert!(compose(
        &raw(&format!("Subject: s\n\n{ok}\n"), rcpts(&["a@x.test"])),
        &limits()
    )
    .is_ok());

    let req = request(json!({
        "envelope_sender": "a@b.test",
        "recipients": [{"email": "a@x.test", "substitutions": {"v": long}}, {"email": "b@x.test"}],
        "content": "Subject: s\n\n{{ v }}\n"
    }));
    let out = compose(&req, &limits()).expect("composes");
    assert_eq!(out.messages.len(), 1);
    assert_eq!(out.rejected[0].code, "line_too_long");
}

#[test]
fn messages_over_the_size_limit_are_refused() {
    let small = ComposeLimits {
        max_message_size: 2000,
        ..limits()
    };
    let line = "y".repeat(100);
    let big = vec![line.as_str(); 30].join("\n");
    let err = compose(
        &raw(&format!("Subject: s\n\n{big}\n"), rcpts(&["a@x.test"])),
        &small,
    )
    .expect_err("static too large");
    assert_eq!(err.code, "message_too_large");

    let req = request(json!({
        "envelope_sender": "a@b.test",
        "recipients": [{"email": "a@x.test", "substitutions": {"v": big}}, {"email": "b@x.test"}],
        "content": "Subject: s\n\n{{ v }}\n"
    }));
    let out = compose(&req, &small).expect("composes");
    assert_eq!(out.messages.len(), 1);
    assert_eq!(out.rejected[0].code, "message_too_large");

    // A template that would grow without bound stops at the limit.
    let req = raw(
        "Subject: s\n\n{% for i in range(100000) %}{{ 'z' * 1000 }}{% endfor %}\n",
        rcpts(&["a@x.test"]),
    );
    assert_eq!(
        compose(&req, &small).expect_err("unbounded").code,
        "message_too_large"
    );
}

#[test]
fn runaway_templates_run_out_of_fuel() {
    let req = raw(
        "Subject: s\n\n{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}{% endfor %}{% endfor %}{% endfor %}\n",
        rcpts(&["a@x.test"]),
    );
    let err = compose(&req, &limits()).expect_err("out of fuel");
    assert_eq!(err.code, "render_failed");
    assert!(err.message.contains("fuel"), "{}", err.message);
}

#[test]
fn relay_tricks_and_bad_addresses_are_refused_per_recipient() {
    let req = raw(
        "Subject: s\n\nb\n",
        rcpts(&[
            "good@x.test",
            "user%dest.test@x.test",
            "dest.test!user@x.test",
            "\"user@dest.test\"@x.test",
            "<@relay.test:user@x.test>",
            "no-at-sign",
            " spaced@x.test",
            "user@[tag:whatever]",
            "<bracketed@y.test>",
            "Ünï@bücher.test",
        ]),
    );
    let out = compose(&req, &limits()).expect("composes");
    assert_eq!(out.messages.len(), 1);
    assert_eq!(
        out.messages[0].recipients,
        vec![
            (0, "good@x.test".into()),
            (8, "bracketed@y.test".into()),
            (9, "Ünï@xn--bcher-kva.test".into()),
        ]
    );
    let rejected: Vec<(usize, &str)> = out.rejected.iter().map(|r| (r.index, r.code)).collect();
    assert_eq!(
        rejected,
        (1..=7)
            .map(|i| (i, "invalid_recipient"))
            .collect::<Vec<_>>()
    );
    assert!(
        out.rejected[0].reason.contains("relay trick"),
        "{}",
        out.rejected[0].reason
    );
    assert!(
        out.rejected[3].reason.contains("source route"),
        "{}",
        out.rejected[3].reason
    );
    assert_eq!(out.rejected[4].email, "no-at-sign");
}

#[test]
fn envelope_sender_forms() {
    let make = |s: &str| MessageTemplate {
        envelope_sender: s.into(),
        content: Content::Raw("Subject: s\n\nb\n".into()),
        substitutions: Default::default(),
        campaign_id: None,
        tags: Default::default(),
        template_dialect: TemplateDialect::Jinja,
        deferred_spool: false,
        deferred_generation: false,
        trace_headers: None,
    };
    for (given, wire) in [
        ("", ""),
        ("<>", ""),
        ("b@x.test", "b@x.test"),
        ("<b@X.Test>", "b@x.test"),
        ("b@bücher.test", "b@xn--bcher-kva.test"),
    ] {
        let c = Composer::new(&make(given), &limits()).expect(given);
        assert_eq!(c.reverse_path(), wire, "{given}");
    }
    for bad in ["nope", "<b@x.test> trailing", "a b@x.test", "<b@x.test"] {
        let err = Composer::new(&make(bad), &limits()).err().expect(bad);
        assert_eq!(err.code, "invalid_sender", "{bad}");
        assert!(err.message.contains("envelope_sender"), "{}", err.message);
    }
}

#[test]
fn recipient_counts_are_checked() {
    let err = compose(&raw("Subject: s\n\nb\n", json!([])), &limits()).expect_err("none");
    assert_eq!(err.code, "no_recipients");
    let many: Vec<String> = (0..101).map(|i| format!("u{i}@x.test")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let err = compose(&raw("Subject: s\n\nb\n", rcpts(&many)), &limits()).expect_err("too many");
    assert_eq!(err.code, "too_many_recipients");
    assert!(compose(&raw("Subject: s\n\nb\n", rcpts(&many[..100])), &limits()).is_ok());
}

#[test]
fn duplicate_recipients_after_the_first_are_refused() {
    let req = raw(
        "Subject: s\n\nb\n",
        rcpts(&["a@x.test", "b@x.test", "a@X.TEST", "<a@x.test>", "A@x.test"]),
    );
    let out = compose(&req, &limits()).expect("composes");
    // The local part is case-sensitive (RFC 5321 2.4): A@ is another mailbox.
    assert_eq!(out.messages[0].recipients.len(), 3);
    let rejected: Vec<(usize, &str)> = out.rejected.iter().map(|r| (r.index, r.code)).collect();
    assert_eq!(
        rejected,
        vec![(2, "duplicate_recipient"), (3, "duplicate_recipient")]
    );
}

#[test]
fn tags_are_the_request_tags_plus_recipient_metadata_and_split_groups() {
    let req = request(json!({
        "envelope_sender": "a@b.test",
        "tags": {"campaign_kind": "promo", "list": "all"},
        "campaign_id": "spring",
        "recipients": [
            {"email": "a@x.test"},
            {"email": "b@x.test", "metadata": {"list": "vip"}},
            {"email": "c@x.test"},
            {"email": "d@x.test", "metadata": {"list": "vip", "seg": "7"}},
            {"email": "e@x.test", "metadata": {"list": "vip"}},
        ],
        "content": "Subject: s\n\nb\n"
    }));
    let composer = Composer::new(&req.template(), &limits()).expect("compiles");
    assert_eq!(
        composer.tags(),
        &[
            ("campaign_kind".to_owned(), "promo".to_owned()),
            ("list".to_owned(), "all".to_owned())
        ]
    );
    let out = compose(&req, &limits()).expect("composes");
    type Tags = Vec<(String, String)>;
    let groups: Vec<(Vec<usize>, Tags)> = out
        .messages
        .iter()
        .map(|m| (m.recipients.iter().map(|r| r.0).collect(), m.tags.clone()))
        .collect();
    let t = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        groups,
        vec![
            (
                vec![0, 2],
                t(&[("campaign_kind", "promo"), ("list", "all")])
            ),
            (
                vec![1, 4],
                t(&[("campaign_kind", "promo"), ("list", "vip")])
            ),
            (
                vec![3],
                t(&[("campaign_kind", "promo"), ("list", "vip"), ("seg", "7")])
            ),
        ]
    );
    // Same bytes for every group: the body is shared.
    assert!(Arc::ptr_eq(&out.messages[0].body, &out.messages[1].body));
}

fn rendered(index: usize, body: &Arc<[u8]>, tag: &str) -> Rendered {
    Rendered {
        index,
        address: format!("r{index}@x.test"),
        body: body.clone(),
        tags: vec![("t".into(), tag.into())],
    }
}

#[test]
fn grouper_merges_consecutive_recipients_up_to_the_cap() {
    let a: Arc<[u8]> = Arc::from(&b"A\r\n"[..]);
    let a_copy: Arc<[u8]> = Arc::from(&b"A\r\n"[..]);
    let b: Arc<[u8]> = Arc::from(&b"B\r\n"[..]);
    let mut g = Grouper::new("s@x.test".into(), 3);
    let mut done = Vec::new();
    let input = [
        rendered(0, &a, "1"),
        rendered(1, &a_copy, "1"), // equal bytes, other allocation
        rendered(2, &a, "1"),      // fills the group of 3
        rendered(3, &a, "1"),
        rendered(4, &b, "1"), // different body closes the group
        rendered(5, &a, "1"), // not merged with 3: not consecutive
        rendered(6, &a, "2"), // different tags
    ];
    for r in input {
        done.extend(g.push(r));
    }
    done.extend(g.finish());
    assert!(g.finish().is_none());
    let shape: Vec<(Vec<usize>, &[u8])> = done
        .iter()
        .map(|m| (m.recipients.iter().map(|r| r.0).collect(), &m.body[..]))
        .collect();
    assert_eq!(
        shape,
        vec![
            (vec![0, 1, 2], &b"A\r\n"[..]),
            (vec![3], &b"A\r\n"[..]),
            (vec![4], &b"B\r\n"[..]),
            (vec![5], &b"A\r\n"[..]),
            (vec![6], &b"A\r\n"[..]),
        ]
    );
    assert!(done.iter().all(|m| m.reverse_path == "s@x.test"));
    assert_eq!(done[4].tags, vec![("t".to_owned(), "2".to_owned())]);

    // One recipient per message: every push yields its message.
    let mut g = Grouper::new(String::new(), 0);
    assert_eq!(
        g.push(rendered(0, &a, "1")).map(|m| m.recipients.len()),
        Some(1)
    );
    assert_eq!(
        g.push(rendered(1, &a, "1")).map(|m| m.recipients.len()),
        Some(1)
    );
    assert!(g.finish().is_none());
}

#[test]
fn grouper_with_a_composer_streams_a_campaign() {
    let template: MessageTemplate = serde_json::from_value(json!({
        "envelope_sender": "<>",
        "content": "Subject: Hi\n\nHello {{ name }}\n",
        "campaign_id": "c1"
    }))
    .expect("template parses");
    let composer = Composer::new(&template, &limits()).expect("compiles");
    assert_eq!(composer.reverse_path(), "");
    let mut g = Grouper::new(composer.reverse_path().to_owned(), 100);
    let mut out = Vec::new();
    let names = ["Ann", "Ann", "Bob", "Bob", "Bob", "Ann"];
    for (i, n) in names.iter().enumerate() {
        let spec = RecipientSpec {
            email: format!("u{i}@x.test"),
            name: Some((*n).into()),
            ..Default::default()
        };
        out.extend(g.push(composer.render(i, &spec).expect("renders")));
    }
    out.extend(g.finish());
    let sizes: Vec<usize> = out.iter().map(|m| m.recipients.len()).collect();
    assert_eq!(sizes, vec![2, 3, 1]);
}

#[test]
fn errors_display_their_message_and_classify_their_status() {
    let e = ComposeError::new("invalid_sender", "envelope_sender: bad");
    assert_eq!(e.to_string(), "envelope_sender: bad");
    assert_eq!(e.status(), 400);
    assert_eq!(ComposeError::new("header_injection", "x").status(), 422);
}

/// What the fuzz target (`fuzz/fuzz_targets/compose.rs`) asserts, over a few
/// hand-picked hostile requests: CRLF only, short lines, every recipient once.
#[test]
fn composed_messages_keep_the_fuzz_invariants() {
    let inputs = [
        json!({"envelope_sender": "", "recipients": [{"email": "a@x.test"}, {"email": "b@x.test", "substitutions": {"v": "\r\r\n\n\r"}}],
               "content": "Subject: {{ v|length }}\r\n\r\n\r{{ v }}\n\r"}),
        json!({"envelope_sender": "s@x.test", "recipients": [{"email": "a@x.test", "name": "\u{0}"}, {"email": "a@x.test"}],
               "content": {"from": {"email": "f@x.test", "name": "é\u{7f}\"\\"}, "subject": "ünï\t{{ name }}", "text_body": "\r", "html_body": "\n\n\r"}}),
        json!({"envelope_sender": "s@x.test", "recipients": [{"email": "a@x.test"}],
               "content": {"from": {"email": "f@x.test"}, "headers": {"X-Long": "a".repeat(5000)}, "text_body": "b ".repeat(3000),
                           "attachments": [{"data": "\r\n\n\r", "content_type": "text/plain"}]}}),
        json!({"envelope_sender": "s@x.test", "recipients": [{"email": "a@x.test"}],
               "content": "Subject: s\n\n{{ '\\r' * 5 }}{{ 'x' * 998 }}"}),
    ];
    let mut composed = 0;
    for input in inputs {
        let req = request(input.clone());
        let Ok(out) = compose(&req, &limits()) else {
            continue;
        };
        composed += 1;
        let mut seen = vec![0; req.recipients.len()];
        for m in &out.messages {
            assert!(is_crlf_only(&m.body), "{input}: {:?}", text(&m.body));
            assert!(super::text::long_line(&m.body).is_none(), "{input}");
            m.recipients.iter().for_each(|r| seen[r.0] += 1);
        }
        out.rejected.iter().for_each(|r| seen[r.index] += 1);
        assert!(seen.iter().all(|n| *n == 1), "{input}: {seen:?}");
    }
    assert_eq!(composed, 4, "every sample is a valid request");
}
