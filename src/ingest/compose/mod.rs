//! Composing messages from HTTP inject requests: pure (no I/O, no tokio).
//!
//! A request ([`InjectRequest`], KumoMTA's inject API v1 plus Volley's `campaign_id`,
//! `tags` and per-recipient `metadata`) becomes a list of [`ComposedMessage`]s to
//! spool, each carrying every recipient that gets the very same bytes and tags, and
//! a list of refused recipients ([`Rejection`]) that the rest of the request does
//! not wait for.
//!
//! - [`request`]: the JSON types. Unknown fields are refused; KumoMTA fields Volley
//!   cannot honour are accepted only with their default (`unsupported_field`).
//! - [`Composer`]: the template compiled once ([`Composer::new`]), rendered per
//!   recipient ([`Composer::render`]). Templates are MiniJinja (Jinja syntax, as
//!   KumoMTA): variables are the request's `substitutions`, then `email` and `name`
//!   of the recipient, then the recipient's own `substitutions` (each overriding
//!   the one before). Undefined variables render as empty (lenient, as KumoMTA).
//!   Fields that refer to no recipient data are rendered once; when every field
//!   is like that the whole message is built once and shared ([`Composer::is_static`]).
//! - [`compose`]: a whole `/messages` request, grouped by identical body and tags.
//! - [`Grouper`]: the streaming grouping for campaigns (consecutive recipients).
//!
//! Safety rules, whatever the template: header values never gain a line break from
//! rendering (`header_injection`), header names are RFC 5322 ftext, lines are at
//! most 998 octets, line endings are CRLF, and `Date:` and `Message-ID:` are added
//! when missing (RFC 6409 8.2, 8.3). A Message-ID is derived from the message's
//! bytes and a per-composer secret, so recipients whose renders are identical share
//! one message with one Message-ID, and different renders never share one. The
//! added `Date:` is when the composer was made (for a campaign: when it started).
//!
//! Duplicate recipients in one `/messages` request: the second and later copies of
//! an address (compared in wire form, domain lowercased) are refused as
//! `duplicate_recipient`, since sending one mailbox the same request twice is almost
//! always a list error. Streamed campaigns do not de-duplicate (memory would grow
//! with the list).

mod builder;
mod composer;
mod group;
mod raw;
pub mod request;
mod template;
mod text;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_mime;

use std::fmt;
use std::sync::Arc;

pub use composer::Composer;
pub use group::{compose, Grouper};
pub use request::{
    AddressSpec, Attachment, BuilderContent, Content, InjectRequest, MessageTemplate,
    RecipientSpec, TemplateDialect, TraceHeaders,
};

/// Limits and identity the composer works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeLimits {
    /// Most recipients one `/messages` request may carry (`too_many_recipients`).
    pub max_recipients: usize,
    /// Largest rendered message, in octets (`message_too_large`).
    pub max_message_size: usize,
    /// The domain of generated Message-IDs.
    pub hostname: String,
}

/// A request-level failure: the request is refused as a whole (HTTP 400 or 422).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeError {
    /// A stable, machine-readable code, e.g. `bad_template`, `invalid_sender`.
    pub code: &'static str,
    /// What was wrong, naming the field.
    pub message: String,
}

impl ComposeError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> ComposeError {
        ComposeError {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status: 422 when the request is well-formed but its content cannot
    /// be made into a message (template, MIME, size), 400 for the rest.
    pub fn status(&self) -> u16 {
        match self.code {
            "bad_template" | "render_failed" | "header_injection" | "bad_content"
            | "line_too_long" | "message_too_large" | "bad_attachment" | "missing_from"
            | "missing_body" | "bad_header" | "invalid_from" | "invalid_reply_to" => 422,
            _ => 400,
        }
    }
}

impl fmt::Display for ComposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ComposeError {}

/// One recipient refused; the rest of the request goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The recipient's position in the request (or in the campaign stream).
    pub index: usize,
    /// The address as given.
    pub email: String,
    /// `invalid_recipient`, `duplicate_recipient`, `render_failed`,
    /// `header_injection`, `line_too_long`, `message_too_large`, `bad_content`,
    /// `bad_header`, `invalid_from`, `invalid_reply_to`.
    pub code: &'static str,
    /// Why, for the client.
    pub reason: String,
}

/// One recipient's message.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The recipient's position in the request (or stream).
    pub index: usize,
    /// The validated forward-path in wire form, `local@domain`.
    pub address: String,
    /// The message, CRLF line endings. Shared between recipients when static.
    pub body: Arc<[u8]>,
    /// The request's tags merged with the recipient's metadata (which wins on the
    /// same key), sorted by key.
    pub tags: Vec<(String, String)>,
}

/// A message to store: recipients that share identical bytes and identical tags.
#[derive(Debug, Clone)]
pub struct ComposedMessage {
    /// The validated envelope sender, wire form (`""` for the null sender).
    pub reverse_path: String,
    /// (index in the request, wire-form address) of each recipient.
    pub recipients: Vec<(usize, String)>,
    /// The message, CRLF line endings.
    pub body: Arc<[u8]>,
    /// The tags every recipient of this message has.
    pub tags: Vec<(String, String)>,
}

/// The result of [`compose`].
#[derive(Debug, Clone, Default)]
pub struct Composed {
    /// The messages to spool, in order of their first recipient.
    pub messages: Vec<ComposedMessage>,
    /// The recipients refused, in request order.
    pub rejected: Vec<Rejection>,
}
