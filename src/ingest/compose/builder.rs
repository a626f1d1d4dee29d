//! Builder content: a MIME message built with `mail-builder` from KumoMTA's
//! builder fields.
//!
//! Structure: the text parts (`text/plain`, `text/x-amp-html`, `text/html`, in that
//! order) in a `multipart/alternative` when there is more than one; inline
//! attachments (those with a `content_id`) wrap that in a `multipart/related`;
//! other attachments wrap everything in a `multipart/mixed`. Boundaries derive
//! from the composer's secret rather than a clock, so two recipients whose renders
//! are the same get the same bytes (and share one message).

use std::borrow::Cow;

use base64::Engine;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;

use crate::smtp::address::Mailbox;

use super::request::{AddressSpec, Attachment, BuilderContent};
use super::template::{FieldId, FieldKind, RenderCtx, Templates};
use super::text::{
    check_header_name, check_single_line, hex, line_fault, long_line, message_id, normalize_crlf,
    Fault,
};

/// Header fields the builder writes itself from the MIME structure.
const RESERVED: [&str; 3] = ["content-type", "content-transfer-encoding", "mime-version"];

/// Header fields that occur at most once (RFC 5322 3.6).
const SINGLE: [&str; 11] = [
    "date",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "message-id",
    "in-reply-to",
    "references",
    "subject",
];

/// A mailbox header compiled: its address and display-name templates.
struct MailboxFields {
    email: FieldId,
    name: Option<FieldId>,
}

/// An attachment, decoded and checked once.
struct Part {
    data: Vec<u8>,
    content_type: String,
    content_id: Option<String>,
    file_name: Option<String>,
}

/// The compiled builder content.
pub(super) struct BuilderTemplate {
    from: Option<MailboxFields>,
    reply_to: Option<MailboxFields>,
    subject: Option<FieldId>,
    text: Option<FieldId>,
    amp: Option<FieldId>,
    html: Option<FieldId>,
    /// `headers`, in request order, names checked.
    headers: Vec<(String, FieldId)>,
    /// `headers` sets `To`: no per-recipient `To:`.
    pub has_to: bool,
    has_date: bool,
    has_message_id: bool,
    parts: Vec<Part>,
}

/// Checks and compiles builder content.
pub(super) fn compile(
    templates: &mut Templates,
    b: &BuilderContent,
) -> Result<BuilderTemplate, Fault> {
    if b.text_body.is_none() && b.html_body.is_none() && b.amp_html_body.is_none() {
        return Err(Fault::new(
            "missing_body",
            "content: at least one of text_body and html_body is required",
        ));
    }
    let mut seen: Vec<String> = Vec::new();
    let mut headers = Vec::with_capacity(b.headers.len());
    for (name, value) in &b.headers {
        let label = format!("content.headers.{name}");
        check_header_name(name, &label)?;
        let lower = name.to_ascii_lowercase();
        if RESERVED.contains(&lower.as_str()) {
            return Err(Fault::new(
                "bad_header",
                format!(
                    "{label}: {name} is written by the MIME builder; use raw content to set it"
                ),
            ));
        }
        let field_set = match lower.as_str() {
            "from" => b.from.is_some().then_some("content.from"),
            "reply-to" => b.reply_to.is_some().then_some("content.reply_to"),
            "subject" => b.subject.is_some().then_some("content.subject"),
            _ => None,
        };
        if let Some(field) = field_set {
            return Err(Fault::new(
                "bad_header",
                format!("{label}: set either {field} or this header, not both"),
            ));
        }
        if SINGLE.contains(&lower.as_str()) && seen.contains(&lower) {
            return Err(Fault::new(
                "bad_header",
                format!("{label}: {name} may occur only once (RFC 5322 3.6)"),
            ));
        }
        let id = templates.add(&label, FieldKind::HeaderLine, value)?;
        headers.push((canonical_name(name, &lower), id));
        seen.push(lower);
    }
    let has = |n: &str| seen.iter().any(|s| s == n);
    if b.from.is_none() && !has("from") {
        return Err(Fault::new(
            "missing_from",
            "content: a From is required (content.from or content.headers.From)",
        ));
    }
    let from = mailbox_fields(templates, b.from.as_ref(), "content.from")?;
    let reply_to = mailbox_fields(templates, b.reply_to.as_ref(), "content.reply_to")?;
    let subject = match &b.subject {
        Some(s) => Some(templates.add("content.subject", FieldKind::HeaderLine, s)?),
        None => None,
    };
    let text = match &b.text_body {
        Some(s) => Some(templates.add("content.text_body", FieldKind::Body, s)?),
        None => None,
    };
    let amp = match &b.amp_html_body {
        Some(s) => Some(templates.add("content.amp_html_body", FieldKind::Html, s)?),
        None => None,
    };
    let html = match &b.html_body {
        Some(s) => Some(templates.add("content.html_body", FieldKind::Html, s)?),
        None => None,
    };
    let parts = b
        .attachments
        .iter()
        .enumerate()
        .map(|(i, a)| decode_attachment(i, a))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BuilderTemplate {
        from,
        reply_to,
        subject,
        text,
        amp,
        html,
        headers,
        has_to: has("to"),
        has_date: has("date"),
        has_message_id: has("message-id"),
        parts,
    })
}

/// mail-builder recognises `Date` and `Message-ID` by exact name; other names
/// go out as the client wrote them.
fn canonical_name(name: &str, lower: &str) -> String {
    match lower {
        "date" => "Date".to_owned(),
        "message-id" => "Message-ID".to_owned(),
        _ => name.to_owned(),
    }
}

fn mailbox_fields(
    templates: &mut Templates,
    spec: Option<&AddressSpec>,
    label: &str,
) -> Result<Option<MailboxFields>, Fault> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    let email = templates.add(
        &format!("{label}.email"),
        FieldKind::HeaderLine,
        &spec.email,
    )?;
    let name = match &spec.name {
        Some(n) => Some(templates.add(&format!("{label}.name"), FieldKind::HeaderLine, n)?),
        None => None,
    };
    Ok(Some(MailboxFields { email, name }))
}

fn decode_attachment(i: usize, a: &Attachment) -> Result<Part, Fault> {
    let label = format!("content.attachments[{i}]");
    check_single_line(&a.content_type, &format!("{label}.content_type"))?;
    let ct_ok = a.content_type.is_ascii()
        && a.content_type
            .split(';')
            .next()
            .and_then(|t| t.trim().split_once('/'))
            .is_some_and(|(ty, sub)| is_token(ty) && is_token(sub));
    if !ct_ok {
        return Err(Fault::new(
            "bad_attachment",
            format!(
                "{label}.content_type: {:?} is not a MIME type (type/subtype)",
                a.content_type
            ),
        ));
    }
    if let Some(name) = &a.file_name {
        check_single_line(name, &format!("{label}.file_name"))?;
    }
    let content_id = match &a.content_id {
        Some(cid) => {
            check_single_line(cid, &format!("{label}.content_id"))?;
            let bare = cid
                .strip_prefix('<')
                .and_then(|c| c.strip_suffix('>'))
                .unwrap_or(cid);
            if bare.is_empty()
                || !bare
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
            {
                return Err(Fault::new(
                    "bad_attachment",
                    format!("{label}.content_id: {cid:?} is not a valid Content-ID"),
                ));
            }
            Some(bare.to_owned())
        }
        None => None,
    };
    let data = if a.base64 {
        let compact: Vec<u8> = a
            .data
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(&compact)
            .map_err(|e| {
                Fault::new(
                    "bad_attachment",
                    format!("{label}.data: invalid base64: {e}"),
                )
            })?
    } else {
        a.data.as_bytes().to_vec()
    };
    Ok(Part {
        data,
        content_type: a.content_type.trim().to_owned(),
        content_id,
        file_name: a.file_name.clone(),
    })
}

/// RFC 2045 token: printable ASCII except specials and space.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
}

/// The recipient, for the `To:` header when the request does not set one.
pub(super) struct ToHeader<'a> {
    pub address: &'a str,
    pub name: Option<&'a str>,
}

/// Where a message is rendered from: fixed renders only (`None`) or a recipient.
pub(super) struct Inputs<'a> {
    pub ctx: Option<&'a RenderCtx>,
    pub to: Option<ToHeader<'a>>,
    pub date: &'a str,
    pub secret: &'a [u8; 16],
    pub hostname: &'a str,
}

/// Builds the message.
pub(super) fn build(
    templates: &Templates,
    b: &BuilderTemplate,
    inp: &Inputs<'_>,
) -> Result<Vec<u8>, Fault> {
    let ctx = inp.ctx;
    let mut msg = MessageBuilder::new();
    // Patched below with the digest of the finished message (same length).
    let placeholder = "0".repeat(32);
    if !b.has_message_id {
        msg = msg.header(
            "Message-ID",
            Raw::new(format!("<{placeholder}@{}>", inp.hostname)),
        );
    }
    if !b.has_date {
        msg = msg.header("Date", Raw::new(inp.date.to_owned()));
    }
    if let Some(from) = &b.from {
        msg = msg.header("From", mailbox(templates, from, ctx, "invalid_from")?);
    }
    if let Some(reply_to) = &b.reply_to {
        msg = msg.header(
            "Reply-To",
            mailbox(templates, reply_to, ctx, "invalid_reply_to")?,
        );
    }
    if !b.has_to {
        if let Some(to) = &inp.to {
            if let Some(name) = to.name {
                check_single_line(name, "recipients[].name")?;
            }
            let name = to.name.filter(|n| !n.is_empty()).map(str::to_owned);
            msg = msg.header("To", Address::new_address(name, to.address.to_owned()));
        }
    }
    if let Some(subject) = b.subject {
        msg = msg.header(
            "Subject",
            Text::new(templates.render(subject, ctx)?.into_owned()),
        );
    }
    for (name, id) in &b.headers {
        msg = msg.header(
            name.clone(),
            Text::new(templates.render(*id, ctx)?.into_owned()),
        );
    }

    let boundary = |kind: &str| format!("=_{kind}_{}", hex(&inp.secret[..12]));
    let mut alternatives = Vec::new();
    if let Some(id) = b.text {
        alternatives.push(text_part("text/plain", templates.render(id, ctx)?));
    }
    if let Some(id) = b.amp {
        alternatives.push(text_part("text/x-amp-html", templates.render(id, ctx)?));
    }
    if let Some(id) = b.html {
        alternatives.push(text_part("text/html", templates.render(id, ctx)?));
    }
    let mut body = if alternatives.len() == 1 {
        alternatives.remove(0)
    } else {
        MimePart::new(
            ContentType::new("multipart/alternative").attribute("boundary", boundary("a")),
            alternatives,
        )
    };
    let (inline, attached): (Vec<&Part>, Vec<&Part>) =
        b.parts.iter().partition(|p| p.content_id.is_some());
    if !inline.is_empty() {
        let root_type = if b.html.is_some() && b.text.is_none() && b.amp.is_none() {
            "text/html"
        } else if b.text.is_some() && b.html.is_none() && b.amp.is_none() {
            "text/plain"
        } else {
            "multipart/alternative"
        };
        let mut parts = vec![body];
        parts.extend(inline.into_iter().map(attachment_part));
        body = MimePart::new(
            ContentType::new("multipart/related")
                .attribute("boundary", boundary("r"))
                .attribute("type", root_type),
            parts,
        );
    }
    if !attached.is_empty() {
        let mut parts = vec![body];
        parts.extend(attached.into_iter().map(attachment_part));
        body = MimePart::new(
            ContentType::new("multipart/mixed").attribute("boundary", boundary("m")),
            parts,
        );
    }
    msg = msg.body(body);

    let mut out = Vec::new();
    msg.write_to(&mut out).map_err(|e| {
        Fault::new(
            "render_failed",
            format!("content: building MIME failed: {e}"),
        )
    })?;
    let mut out = normalize_crlf(&out);
    if let Some(line) = long_line(&out) {
        return Err(line_fault("content (built message)", line));
    }
    if !b.has_message_id {
        let id = message_id(inp.secret, &[&out], inp.hostname);
        // "Message-ID: <" is the first 13 octets; the id has the same shape.
        out[12..12 + id.len()].copy_from_slice(id.as_bytes());
    }
    Ok(out)
}

/// Checks the parts that depend on no recipient, so their faults are the
/// request's: the From and Reply-To addresses.
pub(super) fn check_fixed(templates: &Templates, b: &BuilderTemplate) -> Result<(), Fault> {
    for (fields, code) in [(&b.from, "invalid_from"), (&b.reply_to, "invalid_reply_to")] {
        if let Some(f) = fields.as_ref().filter(|f| templates.is_fixed(f.email)) {
            parse_mailbox(templates, f.email, None, code)?;
        }
    }
    Ok(())
}

fn parse_mailbox(
    templates: &Templates,
    id: FieldId,
    ctx: Option<&RenderCtx>,
    code: &'static str,
) -> Result<Mailbox, Fault> {
    let email = templates.render(id, ctx)?;
    Mailbox::parse(&email, true).map_err(|e| {
        Fault::new(
            code,
            format!(
                "{}: {email:?} is not a valid address: {e}",
                templates.label(id)
            ),
        )
    })
}

fn mailbox(
    templates: &Templates,
    fields: &MailboxFields,
    ctx: Option<&RenderCtx>,
    code: &'static str,
) -> Result<Address<'static>, Fault> {
    let mailbox = parse_mailbox(templates, fields.email, ctx, code)?;
    let name = match fields.name {
        Some(id) => Some(templates.render(id, ctx)?.into_owned()).filter(|n| !n.is_empty()),
        None => None,
    };
    Ok(Address::new_address(name, mailbox.to_string()))
}

fn text_part(content_type: &'static str, text: Cow<'_, str>) -> MimePart<'static> {
    // CRLF before mail-builder picks an encoding: 7bit text goes out as written.
    let text = String::from_utf8(normalize_crlf(text.as_bytes())).unwrap_or_default();
    MimePart::new(
        ContentType::new(content_type).attribute("charset", "utf-8"),
        text,
    )
}

fn attachment_part(p: &Part) -> MimePart<'_> {
    let disposition = if p.content_id.is_some() {
        "inline"
    } else {
        "attachment"
    };
    let mut cd = ContentType::new(disposition);
    if let Some(name) = &p.file_name {
        cd = cd.attribute("filename", name.as_str());
    }
    let mut part = MimePart::new(ContentType::new(p.content_type.as_str()), p.data.as_slice())
        .header("Content-Disposition", cd);
    if let Some(cid) = &p.content_id {
        part = part.cid(cid.as_str());
    }
    part
}
