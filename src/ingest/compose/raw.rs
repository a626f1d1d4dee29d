//! Raw content: a complete RFC 5322 message given as a string (KumoMTA's "Rfc822"
//! content), templated as a whole.
//!
//! The source is split at its first empty line. The header section is its own
//! template, in which a substituted value may not contain a line break, so values
//! cannot add header fields; the rendered section must still consist of header
//! fields only. The body is templated freely. (So a template block cannot span
//! that first empty line: each half must compile on its own.) Line endings
//! become CRLF; `Date:` and `Message-ID:` are added when the section lacks them.

use super::template::{FieldId, FieldKind, RenderCtx, Templates};
use super::text::{
    is_ftext_name, line_fault, long_line, message_id, normalize_crlf, normalize_lf, Fault,
};

/// The two templates of a raw message.
pub(super) struct RawTemplate {
    header: FieldId,
    body: FieldId,
}

/// Splits and compiles a raw message.
pub(super) fn compile(templates: &mut Templates, source: &str) -> Result<RawTemplate, Fault> {
    let source = normalize_lf(source);
    if source.starts_with('\n') || source.is_empty() {
        return Err(Fault::new(
            "bad_content",
            "content: a message starts with its header section, not an empty line",
        ));
    }
    let Some(split) = source.find("\n\n") else {
        return Err(Fault::new(
            "bad_content",
            "content: no empty line separating the header section from the body",
        ));
    };
    let header = templates.add(
        "content (header section)",
        FieldKind::HeaderSection,
        &source[..split + 1],
    )?;
    let body = templates.add("content (body)", FieldKind::Body, &source[split + 2..])?;
    Ok(RawTemplate { header, body })
}

/// Checks the header section when it depends on no recipient, so its faults are
/// the request's.
pub(super) fn check_fixed(templates: &Templates, raw: &RawTemplate) -> Result<(), Fault> {
    if templates.is_fixed(raw.header) {
        let header = templates.render(raw.header, None)?;
        check_header_section(&header)?;
        if let Some(line) = long_line(&normalize_crlf(header.as_bytes())) {
            return Err(line_fault("content (header section)", line));
        }
    }
    Ok(())
}

/// What the rendered message needs added.
struct HeaderFacts {
    has_date: bool,
    has_message_id: bool,
}

/// Renders a raw message for a recipient (`None`: from the fixed renders).
pub(super) fn build(
    templates: &Templates,
    raw: &RawTemplate,
    ctx: Option<&RenderCtx>,
    date: &str,
    secret: &[u8; 16],
    hostname: &str,
) -> Result<Vec<u8>, Fault> {
    let mut header = templates.render(raw.header, ctx)?.into_owned();
    let body = templates.render(raw.body, ctx)?;
    if !header.ends_with('\n') {
        // A whitespace-control tag (`-%}`) may eat the last line break.
        header.push('\n');
    }
    let facts = check_header_section(&header)?;
    if body.contains('\0') {
        return Err(Fault::new(
            "bad_content",
            "content (body): contains a NUL byte",
        ));
    }

    let header = normalize_crlf(header.as_bytes());
    let body = normalize_crlf(body.as_bytes());
    if let Some(line) = long_line(&header) {
        return Err(line_fault("content (header section)", line));
    }
    if let Some(line) = long_line(&body) {
        return Err(line_fault("content (body)", line));
    }

    let date_line = if facts.has_date {
        String::new()
    } else {
        format!("Date: {date}\r\n")
    };
    let id_line = if facts.has_message_id {
        String::new()
    } else {
        let id = message_id(secret, &[&header, date_line.as_bytes(), &body], hostname);
        format!("Message-ID: {id}\r\n")
    };
    let mut out =
        Vec::with_capacity(header.len() + date_line.len() + id_line.len() + 2 + body.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(date_line.as_bytes());
    out.extend_from_slice(id_line.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    Ok(out)
}

/// Checks that every line of a rendered header section (LF endings) is a header
/// field or the continuation of one, and notes the fields the composer adds.
fn check_header_section(header: &str) -> Result<HeaderFacts, Fault> {
    let mut facts = HeaderFacts {
        has_date: false,
        has_message_id: false,
    };
    if header.contains('\0') {
        return Err(Fault::new(
            "bad_content",
            "content (header section): contains a NUL byte",
        ));
    }
    let body = header.strip_suffix('\n').unwrap_or(header);
    for (n, line) in body.split('\n').enumerate() {
        let n = n + 1;
        if line.is_empty() {
            return Err(Fault::new(
                "bad_content",
                format!("content (header section): line {n} renders empty, which would end the header section early"),
            ));
        }
        if line.starts_with([' ', '\t']) {
            if n == 1 {
                return Err(Fault::new(
                    "bad_content",
                    "content (header section): the first line is a continuation line",
                ));
            }
            continue;
        }
        let Some((name, _)) = line.split_once(':') else {
            return Err(Fault::new(
                "bad_content",
                format!("content (header section): line {n} is not a header field (name: value)"),
            ));
        };
        if !is_ftext_name(name) {
            return Err(Fault::new(
                "bad_content",
                format!("content (header section): line {n}: {name:?} is not a valid header name (RFC 5322 2.2)"),
            ));
        }
        if name.eq_ignore_ascii_case("date") {
            facts.has_date = true;
        } else if name.eq_ignore_ascii_case("message-id") {
            facts.has_message_id = true;
        }
    }
    Ok(facts)
}
