//! The request's templates, compiled once into one MiniJinja environment.
//!
//! Each text field of the content is one template. A field whose variables are
//! all request-level (global substitutions, builtin functions) is rendered once,
//! up front ("fixed"); the others are rendered per recipient. A recipient whose
//! own substitutions override a variable a fixed field uses gets every field
//! rendered afresh, so precomputing never changes what a recipient receives.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io;

use minijinja::value::{merge_maps, Value};
use minijinja::{escape_formatter, AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};
use serde_json::Map;

use super::request::{RecipientSpec, TemplateDialect};
use super::text::{check_single_line, Fault};

/// Template names of fields rendered into headers start with this; the formatter
/// refuses substituted values with line breaks there.
const HEADER_PREFIX: &str = "h:";

/// Marks the formatter's refusal so it can be told from other render errors.
const INJECTION_DETAIL: &str = "a substituted header value contains CR or LF";

/// Instructions one render may execute: generous for any real template (a
/// 100-item loop with a dozen lookups each is a few thousand), and a bound on a
/// hostile one (nested `range` loops).
const FUEL: u64 = 2_000_000;

/// What a field becomes, which decides how its output is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FieldKind {
    /// One header value, address or display name: no line breaks at all.
    HeaderLine,
    /// A raw message's header section: substituted values may not break lines.
    HeaderSection,
    /// A body or text part.
    Body,
    /// An HTML (or AMP) part: substituted values are HTML-escaped.
    Html,
}

/// Index of a field in [`Templates`].
pub(super) type FieldId = usize;

struct Field {
    /// Name in the environment (`h:3`, `b:4`, `b:5.html`).
    name: String,
    /// The request field, for errors: `content.subject`.
    label: String,
    kind: FieldKind,
    /// The source, used as is under the `Static` dialect.
    source: String,
    /// Top-level variables the template reads (undeclared in it).
    vars: HashSet<String>,
    /// The render when it depends on no recipient data.
    fixed: Option<String>,
}

/// Per-recipient rendering context.
pub(super) struct RenderCtx {
    /// Request substitutions, then `email`/`name`, then the recipient's own.
    value: Value,
    /// The recipient overrides a variable a fixed field read: render everything.
    pub overrides_fixed: bool,
}

/// The compiled templates of one request.
pub(super) struct Templates {
    /// `None` under the `Static` dialect.
    env: Option<Environment<'static>>,
    fields: Vec<Field>,
    /// Request-level substitutions, as a template value.
    globals: Value,
    /// Names a template may read without depending on the recipient.
    request_names: HashSet<String>,
    /// Variables read by fixed fields: a recipient substituting one of them
    /// invalidates the fixed renders for that recipient.
    fixed_vars: HashSet<String>,
    /// Largest output of one field, in octets.
    max_output: usize,
}

impl Templates {
    pub fn new(
        dialect: TemplateDialect,
        globals: &Map<String, serde_json::Value>,
        max_output: usize,
    ) -> Templates {
        let env = match dialect {
            TemplateDialect::Static | TemplateDialect::Handlebars => None,
            TemplateDialect::Jinja => Some(environment()),
        };
        let mut request_names: HashSet<String> = globals.keys().cloned().collect();
        if let Some(env) = &env {
            request_names.extend(env.globals().map(|(name, _)| name.to_owned()));
        }
        // Always the recipient's, even if the request substitutes them too.
        request_names.remove("email");
        request_names.remove("name");
        Templates {
            env,
            fields: Vec::new(),
            globals: Value::from_serialize(globals),
            request_names,
            fixed_vars: HashSet::new(),
            max_output,
        }
    }

    /// Compiles one field. `label` names it in errors.
    pub fn add(&mut self, label: &str, kind: FieldKind, source: &str) -> Result<FieldId, Fault> {
        if kind == FieldKind::HeaderLine {
            // A literal line break in the template is the request's own doing.
            check_single_line(source, label)?;
        }
        let id = self.fields.len();
        let name = match kind {
            FieldKind::HeaderLine | FieldKind::HeaderSection => format!("{HEADER_PREFIX}{id}"),
            FieldKind::Body => format!("b:{id}"),
            FieldKind::Html => format!("b:{id}.html"),
        };
        let mut vars = HashSet::new();
        if let Some(env) = &mut self.env {
            env.add_template_owned(name.clone(), source.to_owned())
                .map_err(|e| Fault::new("bad_template", format!("{label}: {}", describe(&e))))?;
            if let Ok(t) = env.get_template(&name) {
                vars = t.undeclared_variables(false);
            }
        }
        self.fields.push(Field {
            name,
            label: label.to_owned(),
            kind,
            source: source.to_owned(),
            vars,
            fixed: None,
        });
        Ok(id)
    }

    /// Renders, once, every field that reads no recipient data. Errors here are
    /// the request's.
    pub fn render_fixed(&mut self) -> Result<(), Fault> {
        for id in 0..self.fields.len() {
            let field = &self.fields[id];
            if !field.vars.iter().all(|v| self.request_names.contains(v)) {
                continue;
            }
            let out = self.render_field(id, &self.globals)?;
            let field = &mut self.fields[id];
            self.fixed_vars.extend(field.vars.iter().cloned());
            field.fixed = Some(out);
        }
        Ok(())
    }

    /// Whether a field was rendered up front.
    pub fn is_fixed(&self, id: FieldId) -> bool {
        self.fields[id].fixed.is_some()
    }

    /// Whether every field was rendered up front.
    pub fn all_fixed(&self) -> bool {
        self.fields.iter().all(|f| f.fixed.is_some())
    }

    /// Whether the recipient substitutes a variable a fixed field read.
    pub fn overrides_fixed(&self, rcpt: &RecipientSpec) -> bool {
        rcpt.substitutions
            .keys()
            .any(|k| self.fixed_vars.contains(k))
    }

    /// The context for one recipient.
    pub fn context(&self, rcpt: &RecipientSpec) -> RenderCtx {
        let overrides_fixed = self.overrides_fixed(rcpt);
        let mut own = Map::new();
        own.insert("email".to_owned(), rcpt.email.clone().into());
        if let Some(name) = &rcpt.name {
            own.insert("name".to_owned(), name.clone().into());
        }
        // The last map with a key wins.
        let value = merge_maps([
            self.globals.clone(),
            Value::from_serialize(&own),
            Value::from_serialize(&rcpt.substitutions),
        ]);
        RenderCtx {
            value,
            overrides_fixed,
        }
    }

    /// A field for one recipient (`None`: the fixed renders only).
    pub fn render(&self, id: FieldId, ctx: Option<&RenderCtx>) -> Result<Cow<'_, str>, Fault> {
        let field = &self.fields[id];
        match (&field.fixed, ctx) {
            (Some(fixed), None) => Ok(Cow::Borrowed(fixed)),
            (Some(fixed), Some(ctx)) if !ctx.overrides_fixed => Ok(Cow::Borrowed(fixed)),
            (_, Some(ctx)) => self.render_field(id, &ctx.value).map(Cow::Owned),
            (None, None) => self.render_field(id, &self.globals).map(Cow::Owned),
        }
    }

    /// The request field a template came from.
    pub fn label(&self, id: FieldId) -> &str {
        &self.fields[id].label
    }

    fn render_field(&self, id: FieldId, ctx: &Value) -> Result<String, Fault> {
        let field = &self.fields[id];
        let Some(env) = &self.env else {
            return self.checked(field, field.source.clone());
        };
        let template = env.get_template(&field.name).map_err(|e| {
            Fault::new(
                "render_failed",
                format!("{}: {}", field.label, describe(&e)),
            )
        })?;
        let mut out = Capped {
            buf: Vec::new(),
            cap: self.max_output,
            overflowed: false,
        };
        if let Err(e) = template.render_captured_to(ctx, &mut out) {
            return Err(if out.overflowed {
                Fault::new(
                    "message_too_large",
                    format!(
                        "{}: renders to more than {} octets",
                        field.label, self.max_output
                    ),
                )
            } else if e.kind() == ErrorKind::InvalidOperation
                && e.detail() == Some(INJECTION_DETAIL)
            {
                Fault::new(
                    "header_injection",
                    format!("{}: {INJECTION_DETAIL}", field.label),
                )
            } else {
                Fault::new(
                    "render_failed",
                    format!("{}: {}", field.label, describe(&e)),
                )
            });
        }
        // The output is the concatenation of `str`s.
        let text = String::from_utf8(out.buf).map_err(|_| {
            Fault::new(
                "render_failed",
                format!("{}: output is not UTF-8", field.label),
            )
        })?;
        self.checked(field, text)
    }

    fn checked(&self, field: &Field, text: String) -> Result<String, Fault> {
        if field.kind == FieldKind::HeaderLine {
            check_single_line(&text, &field.label)?;
        }
        if text.len() > self.max_output {
            return Err(Fault::new(
                "message_too_large",
                format!(
                    "{}: renders to more than {} octets",
                    field.label, self.max_output
                ),
            ));
        }
        Ok(text)
    }
}

/// MiniJinja as KumoMTA configures it for injection (lenient undefined, HTML
/// escaping in HTML parts), plus the header guard and a fuel limit.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_keep_trailing_newline(true);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(|out, state, value| {
        if state.name().starts_with(HEADER_PREFIX) {
            let breaks = match value.as_str() {
                Some(s) => s.contains(['\r', '\n']),
                None => value.to_string().contains(['\r', '\n']),
            };
            if breaks {
                return Err(Error::new(ErrorKind::InvalidOperation, INJECTION_DETAIL));
            }
        }
        escape_formatter(out, state, value)
    });
    env
}

/// A MiniJinja error in one line: kind, detail and where.
fn describe(e: &Error) -> String {
    let mut s = e.kind().to_string();
    if let Some(detail) = e.detail() {
        s.push_str(": ");
        s.push_str(detail);
    }
    if let Some(line) = e.line() {
        s.push_str(&format!(" (line {line})"));
    }
    s
}

/// A writer that stops at `cap` octets, so a template cannot grow without bound.
struct Capped {
    buf: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.cap {
            self.overflowed = true;
            return Err(io::Error::other("template output over the size limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
