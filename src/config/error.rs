//! [`ConfigError`], and the deserializer that finds which key an error is about.
//!
//! toml's own errors carry a byte span but not the key path, and a span alone does
//! not say `shaping.rule[2]`. So the file is first parsed into a `toml::Value`
//! tree (syntax errors come out there, with line and column), then the typed
//! [`Config`](super::Config) is read from that tree by `PathDeserializer`, which
//! records the path of the innermost value that failed. toml's typed parse is then
//! run once more, only to borrow the line number when it reports the same error.

use std::cell::RefCell;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use thiserror::Error;
use toml::Value;

/// Why a configuration was refused. `Display` names the offending key first, e.g.
/// `shaping.rule[2].max_conections: unknown field ... (line 31)`. Array indices
/// count from 0.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("TOML syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// toml's message.
        message: String,
    },
    /// A key is unknown, has a value of the wrong type, or a value out of range.
    #[error("{key}: {message}")]
    Invalid {
        /// The dotted key path ("delivery.timeouts.data"); empty for the whole file.
        key: String,
        /// What is wrong, and where it is if known.
        message: String,
    },
}

impl ConfigError {
    /// An `Invalid` error for `key`.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The offending key, where there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// 1-based line and column of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Reads `T` from `text`, naming the key of any error.
pub(crate) fn from_toml<T>(text: &str) -> Result<T, ConfigError>
where
    T: for<'de> Deserialize<'de>,
{
    let tree: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let (line, column) = e.span().map_or((0, 0), |s| line_column(text, s.start));
        ConfigError::Syntax {
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })?;
    let track = RefCell::new(None);
    let de = PathDeserializer {
        value: Value::Table(tree),
        path: String::new(),
        track: &track,
    };
    T::deserialize(de).map_err(|e| {
        let mut key = track.into_inner().unwrap_or_default();
        if let Some(field) = &e.field {
            key = join(&key, field);
        }
        let mut message = e.message;
        if let Err(t) = toml::from_str::<T>(text) {
            if t.message() == message {
                if let Some(span) = t.span() {
                    message = format!("{message} (line {})", line_column(text, span.start).0);
                }
            }
        }
        if key.is_empty() {
            key.push_str("(top level)");
        }
        ConfigError::Invalid { key, message }
    })
}

fn join(path: &str, key: &str) -> String {
    let simple = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if simple {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// An error while reading the tree: the message, and the field it names when the
/// error is about a field of the current table (unknown or missing).
#[derive(Debug)]
pub(crate) struct PathError {
    message: String,
    field: Option<String>,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PathError {}

impl de::Error for PathError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        PathError {
            message: msg.to_string(),
            field: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        // serde's own wording, so that toml's report of the same error (which
        // carries the line) can be recognised.
        let quoted: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
        let message = match quoted.as_slice() {
            [] => format!("unknown field `{field}`, there are no fields"),
            [one] => format!("unknown field `{field}`, expected {one}"),
            [a, b] => format!("unknown field `{field}`, expected {a} or {b}"),
            all => format!(
                "unknown field `{field}`, expected one of {}",
                all.join(", ")
            ),
        };
        PathError {
            message,
            field: Some(field.to_string()),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        PathError {
            message: format!("missing field `{field}`"),
            field: Some(field.to_string()),
        }
    }
}

/// Deserializes a `toml::Value`, recording in `track` the path of the innermost
/// value whose deserialization failed.
struct PathDeserializer<'a> {
    value: Value,
    path: String,
    track: &'a RefCell<Option<String>>,
}

/// Remembers `path` as where the error happened, unless a deeper value already
/// did (errors unwind from the innermost value outwards).
fn record(track: &RefCell<Option<String>>, path: String) {
    let mut t = track.borrow_mut();
    if t.is_none() {
        *t = Some(path);
    }
}

impl<'de> de::Deserializer<'de> for PathDeserializer<'_> {
    type Error = PathError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PathError> {
        match self.value {
            Value::String(s) => visitor.visit_string(s),
            Value::Integer(i) => visitor.visit_i64(i),
            Value::Float(f) => visitor.visit_f64(f),
            Value::Boolean(b) => visitor.visit_bool(b),
            Value::Datetime(d) => visitor.visit_string(d.to_string()),
            Value::Array(items) => visitor.visit_seq(Seq {
                items: items.into_iter().enumerate(),
                path: self.path,
                track: self.track,
            }),
            Value::Table(table) => visitor.visit_map(Map {
                entries: table.into_iter(),
                pending: None,
                path: self.path,
                track: self.track,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, PathError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, PathError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, PathError> {
        match self.value {
            Value::String(s) => visitor.visit_enum(s.into_deserializer()),
            other => Err(de::Error::custom(format!(
                "expected one of {}, found {}",
                variants.join(" | "),
                other.type_str()
            ))),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

struct Map<'a> {
    entries: toml::map::IntoIter,
    pending: Option<(String, Value)>,
    path: String,
    track: &'a RefCell<Option<String>>,
}

impl<'de> MapAccess<'de> for Map<'_> {
    type Error = PathError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, PathError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let k = seed.deserialize(key.clone().into_deserializer())?;
        self.pending = Some((key, value));
        Ok(Some(k))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, PathError> {
        let (key, value) = self
            .pending
            .take()
            .expect("next_value_seed after next_key_seed");
        let de = PathDeserializer {
            value,
            path: join(&self.path, &key),
            track: self.track,
        };
        let path = de.path.clone();
        seed.deserialize(de)
            .inspect_err(|_| record(self.track, path))
    }
}

struct Seq<'a> {
    items: std::iter::Enumerate<std::vec::IntoIter<Value>>,
    path: String,
    track: &'a RefCell<Option<String>>,
}

impl<'de> SeqAccess<'de> for Seq<'_> {
    type Error = PathError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, PathError> {
        let Some((i, value)) = self.items.next() else {
            return Ok(None);
        };
        let de = PathDeserializer {
            value,
            path: format!("{}[{i}]", self.path),
            track: self.track,
        };
        let path = de.path.clone();
        seed.deserialize(de)
            .inspect_err(|_| record(self.track, path))
            .map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}
