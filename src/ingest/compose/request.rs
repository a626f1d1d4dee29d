//! The request types: KumoMTA's inject API v1 (`POST /api/inject/v1`) field for
//! field, plus Volley's extensions (`campaign_id`, `tags`, per-recipient
//! `metadata`).
//!
//! Every struct refuses unknown fields, so a typo is a 400 naming the field rather
//! than a silently different message. KumoMTA fields that Volley cannot honour are
//! accepted with their default value only; anything else is refused by
//! [`Composer::new`](super::Composer::new) with `unsupported_field`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A KumoMTA-compatible inject request (`POST /api/v1/messages` and
/// `/api/inject/v1`): one content, many recipients.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectRequest {
    /// The SMTP reverse-path (`MAIL FROM`): a bare `local@domain`, `<local@domain>`,
    /// or `""`/`"<>"` for the null sender.
    pub envelope_sender: String,
    /// Who gets the message; each may carry its own substitutions.
    pub recipients: Vec<RecipientSpec>,
    /// A complete RFC 5322 message (string) or a builder object.
    pub content: Content,
    /// Template variables for every recipient (a recipient's own win).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub substitutions: Map<String, Value>,
    /// Volley extension: the campaign the messages belong to (scheduling, stats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    /// Volley extension: tags stored with every message (delivery log, webhooks).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// KumoMTA: the template engine. `Jinja` (default) and `Static` are supported.
    #[serde(default, skip_serializing_if = "TemplateDialect::is_default")]
    pub template_dialect: TemplateDialect,
    /// KumoMTA: skip the spool write. Volley always spools before acknowledging,
    /// so only `false` is accepted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deferred_spool: bool,
    /// KumoMTA: queue the request and generate later. Volley generates before
    /// acknowledging, so only `false` is accepted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deferred_generation: bool,
    /// KumoMTA: trace headers. Volley adds neither `Received:` nor a supplemental
    /// header; asking for either is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_headers: Option<TraceHeaders>,
}

/// The first line of a streamed campaign (`POST /api/v1/campaigns`, NDJSON): an
/// [`InjectRequest`] without recipients, which follow one per line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageTemplate {
    /// See [`InjectRequest::envelope_sender`].
    pub envelope_sender: String,
    /// See [`InjectRequest::content`].
    pub content: Content,
    /// See [`InjectRequest::substitutions`].
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub substitutions: Map<String, Value>,
    /// See [`InjectRequest::campaign_id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    /// See [`InjectRequest::tags`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// See [`InjectRequest::template_dialect`].
    #[serde(default, skip_serializing_if = "TemplateDialect::is_default")]
    pub template_dialect: TemplateDialect,
    /// See [`InjectRequest::deferred_spool`].
    #[serde(default, skip_serializing_if = "is_false")]
    pub deferred_spool: bool,
    /// See [`InjectRequest::deferred_generation`].
    #[serde(default, skip_serializing_if = "is_false")]
    pub deferred_generation: bool,
    /// See [`InjectRequest::trace_headers`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_headers: Option<TraceHeaders>,
}

/// One recipient of a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientSpec {
    /// The forward-path: `local@domain` (or `<local@domain>`).
    pub email: String,
    /// Display name: the `name` template variable and the builder's `To:` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Template variables for this recipient only; they override the request's.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub substitutions: Map<String, Value>,
    /// Volley extension: tags for this recipient's message, added to the request's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// The message content: a complete RFC 5322 message, or fields to build one from.
///
/// A JSON string is [`Content::Raw`]; a JSON object is [`Content::Builder`]. The
/// object's own errors (an unknown field, a wrong type) reach the client as they
/// are, which serde's untagged enums would swallow.
// One per request: boxing the builder would only cost an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// A complete message: header section, blank line, body. Line endings may be
    /// LF or CRLF; they are sent as CRLF.
    Raw(String),
    /// Fields from which a MIME message is built.
    Builder(BuilderContent),
}

/// KumoMTA's builder object: headers and parts from which the MIME message is
/// built. Templates apply to every text field; attachments are used as given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuilderContent {
    /// The `From:` header (required here or as `headers.From`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<AddressSpec>,
    /// The `Reply-To:` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<AddressSpec>,
    /// The `Subject:` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// A `text/plain` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_body: Option<String>,
    /// A `text/html` part; substituted values are HTML-escaped (as KumoMTA does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html_body: Option<String>,
    /// A `text/x-amp-html` part (AMP for Email), HTML-escaped like `html_body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amp_html_body: Option<String>,
    /// More header fields, name to value, in the order given. A `To` here replaces
    /// the per-recipient `To:` (and lets one body serve every recipient).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "header_map",
        serialize_with = "ser_header_map"
    )]
    pub headers: Vec<(String, String)>,
    /// Attachments, and inline parts when they have a `content_id`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// A mailbox in a builder header: `{"email": ..., "name": ...}` (KumoMTA's
/// `FromHeader`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressSpec {
    /// The address, `local@domain`.
    pub email: String,
    /// The display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A MIME part carried as given (no template substitution).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// The content: UTF-8 text, or base64 when `base64` is true.
    pub data: String,
    /// Whether `data` is base64 (standard alphabet; line breaks allowed).
    #[serde(default, skip_serializing_if = "is_false")]
    pub base64: bool,
    /// The part's `Content-Type`, e.g. `image/png`.
    pub content_type: String,
    /// Makes the part inline, in a `multipart/related` with the text, under this
    /// `Content-ID` (for `cid:` references from HTML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_id: Option<String>,
    /// The file name offered to the reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
}

/// KumoMTA's `template_dialect`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TemplateDialect {
    /// MiniJinja (Jinja syntax): the default.
    #[default]
    Jinja,
    /// No templating: the content is used as written.
    Static,
    /// Handlebars: not supported by Volley (refused as `unsupported_field`).
    Handlebars,
}

impl TemplateDialect {
    fn is_default(&self) -> bool {
        *self == TemplateDialect::Jinja
    }
}

/// KumoMTA's `trace_headers`. Volley adds no trace headers: `received_header` and
/// `supplemental_header` may only be `false`; the other two fields only shape the
/// supplemental header and so change nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceHeaders {
    /// Add a `Received:` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_header: Option<bool>,
    /// Add KumoMTA's supplemental (`X-KumoRef`) header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplemental_header: Option<bool>,
    /// The supplemental header's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    /// Metadata keys to encode in the supplemental header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_meta_names: Option<Vec<String>>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Content, D::Error> {
        struct ContentVisitor;

        impl<'de> Visitor<'de> for ContentVisitor {
            type Value = Content;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string (a complete RFC 5322 message) or an object (builder fields)")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Content, E> {
                Ok(Content::Raw(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Content, E> {
                Ok(Content::Raw(v))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Content, A::Error> {
                BuilderContent::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Content::Builder)
            }
        }

        deserializer.deserialize_any(ContentVisitor)
    }
}

/// Reads a JSON object of header name to value, keeping the order given.
fn header_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<(String, String)>, D::Error> {
    struct HeaderVisitor;

    impl<'de> Visitor<'de> for HeaderVisitor {
        type Value = Vec<(String, String)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of header name to string value")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
            while let Some((name, value)) = map.next_entry::<String, String>()? {
                out.push((name, value));
            }
            Ok(out)
        }
    }

    deserializer.deserialize_map(HeaderVisitor)
}

fn ser_header_map<S: Serializer>(headers: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(headers.len()))?;
    for (name, value) in headers {
        map.serialize_entry(name, value)?;
    }
    map.end()
}

/// The parts of a request the composer needs, borrowed from either an
/// [`InjectRequest`] or a [`MessageTemplate`].
pub(super) struct TemplateParts<'a> {
    pub envelope_sender: &'a str,
    pub content: &'a Content,
    pub substitutions: &'a Map<String, Value>,
    pub tags: &'a BTreeMap<String, String>,
    pub template_dialect: TemplateDialect,
    pub deferred_spool: bool,
    pub deferred_generation: bool,
    pub trace_headers: Option<&'a TraceHeaders>,
}

impl InjectRequest {
    pub(super) fn parts(&self) -> TemplateParts<'_> {
        TemplateParts {
            envelope_sender: &self.envelope_sender,
            content: &self.content,
            substitutions: &self.substitutions,
            tags: &self.tags,
            template_dialect: self.template_dialect,
            deferred_spool: self.deferred_spool,
            deferred_generation: self.deferred_generation,
            trace_headers: self.trace_headers.as_ref(),
        }
    }

    /// The request without its recipients (clones the content).
    pub fn template(&self) -> MessageTemplate {
        MessageTemplate {
            envelope_sender: self.envelope_sender.clone(),
            content: self.content.clone(),
            substitutions: self.substitutions.clone(),
            campaign_id: self.campaign_id.clone(),
            tags: self.tags.clone(),
            template_dialect: self.template_dialect,
            deferred_spool: self.deferred_spool,
            deferred_generation: self.deferred_generation,
            trace_headers: self.trace_headers.clone(),
        }
    }
}

impl MessageTemplate {
    pub(super) fn parts(&self) -> TemplateParts<'_> {
        TemplateParts {
            envelope_sender: &self.envelope_sender,
            content: &self.content,
            substitutions: &self.substitutions,
            tags: &self.tags,
            template_dialect: self.template_dialect,
            deferred_spool: self.deferred_spool,
            deferred_generation: self.deferred_generation,
            trace_headers: self.trace_headers.as_ref(),
        }
    }
}
