//! [`Composer`]: a request's template, checked and compiled once, rendered per
//! recipient.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mail_builder::headers::date::Date;

use crate::smtp::address::{AddressError, Domain, Mailbox, Path, RelayTrick};

use super::builder::{self, BuilderTemplate, Inputs, ToHeader};
use super::raw::{self, RawTemplate};
use super::request::{Content, MessageTemplate, RecipientSpec, TemplateDialect, TemplateParts};
use super::template::{RenderCtx, Templates};
use super::text::Fault;
use super::{ComposeError, ComposeLimits, Rejection, Rendered};

/// The compiled content: raw or built.
enum Body {
    Raw(RawTemplate),
    Builder(BuilderTemplate),
}

/// The template, compiled once; renders per recipient.
pub struct Composer {
    /// The validated envelope sender, wire form (`""` for `<>`).
    reverse_path: String,
    /// The request's tags, sorted by key.
    tags: Vec<(String, String)>,
    templates: Templates,
    body: Body,
    /// The message every recipient gets when no field depends on the recipient.
    shared: Option<Arc<[u8]>>,
    max_message_size: usize,
    /// Domain of generated Message-IDs.
    hostname: String,
    /// Seeds Message-IDs and MIME boundaries: unpredictable across requests,
    /// stable within one so identical renders are identical bytes.
    secret: [u8; 16],
    /// The `Date:` added to messages without one: when the request was composed.
    date: String,
}

impl Composer {
    /// Checks and compiles a template. Everything that does not depend on the
    /// recipient is rendered and checked here, so its faults are the request's.
    pub fn new(
        template: &MessageTemplate,
        limits: &ComposeLimits,
    ) -> Result<Composer, ComposeError> {
        Composer::from_parts(template.parts(), limits)
    }

    pub(super) fn from_parts(
        p: TemplateParts<'_>,
        limits: &ComposeLimits,
    ) -> Result<Composer, ComposeError> {
        check_supported(&p)?;
        let reverse_path = parse_sender(p.envelope_sender)?;
        let mut templates =
            Templates::new(p.template_dialect, p.substitutions, limits.max_message_size);
        let body = match p.content {
            Content::Raw(source) => raw::compile(&mut templates, source).map(Body::Raw),
            Content::Builder(b) => builder::compile(&mut templates, b).map(Body::Builder),
        }
        .map_err(request_fault)?;
        templates.render_fixed().map_err(request_fault)?;
        match &body {
            Body::Raw(r) => raw::check_fixed(&templates, r),
            Body::Builder(b) => builder::check_fixed(&templates, b),
        }
        .map_err(request_fault)?;

        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut composer = Composer {
            reverse_path,
            tags: p.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            templates,
            body,
            shared: None,
            max_message_size: limits.max_message_size,
            hostname: limits.hostname.clone(),
            secret: rand::random(),
            date: Date::new(now as i64).to_rfc822(),
        };
        let per_recipient_to = matches!(&composer.body, Body::Builder(b) if !b.has_to);
        if composer.templates.all_fixed() && !per_recipient_to {
            let body = composer.build(None, None).map_err(request_fault)?;
            composer.shared = Some(body.into());
        }
        Ok(composer)
    }

    /// The validated envelope sender, wire form (`""` for the null sender).
    pub fn reverse_path(&self) -> &str {
        &self.reverse_path
    }

    /// The request's tags, sorted by key (the campaign id is not among them).
    pub fn tags(&self) -> &[(String, String)] {
        &self.tags
    }

    /// True when no template refers to per-recipient data: one body serves every
    /// recipient (unless one overrides a request substitution the content uses).
    pub fn is_static(&self) -> bool {
        self.shared.is_some()
    }

    /// One recipient's message: the address checked, the content rendered.
    pub fn render(&self, index: usize, rcpt: &RecipientSpec) -> Result<Rendered, Rejection> {
        let reject = |code: &'static str, reason: String| Rejection {
            index,
            email: rcpt.email.clone(),
            code,
            reason,
        };
        let address = parse_recipient(&rcpt.email).map_err(|r| reject("invalid_recipient", r))?;
        let body = match &self.shared {
            Some(body) if !self.templates.overrides_fixed(rcpt) => body.clone(),
            _ => {
                let ctx = self.templates.context(rcpt);
                let to = ToHeader {
                    address: &address,
                    name: rcpt.name.as_deref(),
                };
                let body = self
                    .build(Some(&ctx), Some(to))
                    .map_err(|f| reject(f.code, f.message))?;
                Arc::from(body)
            }
        };
        let mut tags: BTreeMap<&str, &str> = self
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        tags.extend(rcpt.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Ok(Rendered {
            index,
            address,
            body,
            tags: tags
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        })
    }

    fn build(&self, ctx: Option<&RenderCtx>, to: Option<ToHeader<'_>>) -> Result<Vec<u8>, Fault> {
        let body = match &self.body {
            Body::Raw(r) => raw::build(
                &self.templates,
                r,
                ctx,
                &self.date,
                &self.secret,
                &self.hostname,
            )?,
            Body::Builder(b) => builder::build(
                &self.templates,
                b,
                &Inputs {
                    ctx,
                    to,
                    date: &self.date,
                    secret: &self.secret,
                    hostname: &self.hostname,
                },
            )?,
        };
        if body.len() > self.max_message_size {
            return Err(Fault::new(
                "message_too_large",
                format!(
                    "the message is {} octets, over the limit of {}",
                    body.len(),
                    self.max_message_size
                ),
            ));
        }
        Ok(body)
    }
}

fn request_fault(f: Fault) -> ComposeError {
    ComposeError::new(f.code, f.message)
}

/// Refuses KumoMTA options Volley cannot honour, rather than ignoring them.
fn check_supported(p: &TemplateParts<'_>) -> Result<(), ComposeError> {
    let unsupported = |field: &str, why: &str| {
        Err(ComposeError::new(
            "unsupported_field",
            format!("{field}: not supported by Volley ({why})"),
        ))
    };
    if p.template_dialect == TemplateDialect::Handlebars {
        return unsupported("template_dialect", "use Jinja or Static");
    }
    if p.deferred_spool {
        return unsupported(
            "deferred_spool",
            "messages are always spooled before the reply",
        );
    }
    if p.deferred_generation {
        return unsupported(
            "deferred_generation",
            "messages are generated before the reply",
        );
    }
    if let Some(t) = p.trace_headers {
        if t.received_header == Some(true) {
            return unsupported(
                "trace_headers.received_header",
                "no Received: header is added",
            );
        }
        if t.supplemental_header == Some(true) {
            return unsupported(
                "trace_headers.supplemental_header",
                "no supplemental trace header is added",
            );
        }
    }
    Ok(())
}

/// The envelope sender in wire form: `""` for the null sender, else `local@domain`.
fn parse_sender(s: &str) -> Result<String, ComposeError> {
    let bad =
        |why: String| ComposeError::new("invalid_sender", format!("envelope_sender: {s:?}: {why}"));
    if s.is_empty() || s == "<>" {
        return Ok(String::new());
    }
    let mailbox = if s.starts_with('<') {
        let (path, used) = Path::parse(s.as_bytes(), true).map_err(|e| bad(e.to_string()))?;
        if used != s.len() {
            return Err(bad("unexpected text after the address".into()));
        }
        match path.mailbox {
            Some(m) => m,
            None => return Ok(String::new()),
        }
    } else {
        Mailbox::parse(s, true).map_err(|e| bad(e.to_string()))?
    };
    check_domain(&mailbox).map_err(bad)?;
    Ok(mailbox.to_string())
}

/// A recipient in wire form, or why it is refused.
fn parse_recipient(s: &str) -> Result<String, String> {
    let mailbox = if s.starts_with('<') {
        let (path, used) = Path::parse(s.as_bytes(), true).map_err(|e| address_reason(s, e))?;
        if used != s.len() {
            return Err(format!("{s:?}: unexpected text after the address"));
        }
        if let Some(trick) = path.relay_trick() {
            return Err(trick_reason(s, trick));
        }
        path.mailbox
            .ok_or_else(|| "<> is not a recipient".to_owned())?
    } else {
        Mailbox::parse(s, true).map_err(|e| address_reason(s, e))?
    };
    if let Some(trick) = mailbox.relay_trick() {
        return Err(trick_reason(s, trick));
    }
    check_domain(&mailbox).map_err(|why| format!("{s:?}: {why}"))?;
    Ok(mailbox.to_string())
}

/// General address literals (`[tag:...]`) name no host anyone can reach.
fn check_domain(m: &Mailbox) -> Result<(), String> {
    match m.domain {
        Domain::General { .. } => Err("general address literals are not deliverable".into()),
        Domain::Name(_) | Domain::V4(_) | Domain::V6(_) => Ok(()),
    }
}

fn address_reason(s: &str, e: AddressError) -> String {
    format!("{s:?}: {e}")
}

fn trick_reason(s: &str, trick: RelayTrick) -> String {
    let what = match trick {
        RelayTrick::SourceRoute => "a source route",
        RelayTrick::PercentHack => "a '%' relay hack",
        RelayTrick::BangPath => "a '!' bang path",
        RelayTrick::QuotedAt => "an '@' inside the local part",
    };
    format!("{s:?}: the address uses {what}, a relay trick")
}
