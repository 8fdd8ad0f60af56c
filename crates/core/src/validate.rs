//! Validation rules and limits shared by every backend.
//!
//! Backends call these before changing anything, so every backend rejects
//! exactly the same input with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput).

use serde_json::Value;

use crate::encoding::canonical_json;
use crate::error::{Error, Result};

/// Longest identifier (session id, release name, event kind, agent name,
/// sender, message type, idempotency key), in bytes of UTF-8.
pub const MAX_IDENTIFIER_BYTES: usize = 256;
/// Largest JSON value (payloads, tags, session data, summaries) once
/// serialised canonically.
pub const MAX_JSON_BYTES: usize = 1024 * 1024;
/// Deepest nesting of arrays and objects in a JSON value. Checked before
/// anything recursive touches the value, so hostile nesting can neither
/// overflow the stack nor be stored in a form that cannot be read back.
pub const MAX_JSON_DEPTH: usize = 64;
/// Largest session log payload, in bytes.
pub const MAX_LOG_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Longest reason or free text (supersession reasons, release notes, summary
/// messages), in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Most entries one `replace_log` call may write.
pub const MAX_REPLACE_ENTRIES: usize = 100_000;
/// Largest page any list call returns; larger limits are clamped to this.
pub const MAX_PAGE: usize = 10_000;
/// Longest supersession replacement chain `resolve` follows.
pub const MAX_RESOLVE_HOPS: u32 = 1024;

/// Checks an identifier: 1–[`MAX_IDENTIFIER_BYTES`] bytes, no control
/// characters. Every other character (`:`, `/`, `{`, `..`, spaces, emoji,
/// right-to-left text) is allowed and must round-trip.
///
/// `what` names the field in the error ("session id", "release name").
///
/// # Errors
/// [`InvalidInput`](crate::ErrorKind::InvalidInput) naming the field and rule.
///
/// ```
/// use stowage_core::validate::identifier;
/// assert!(identifier("session id", "a:b/{c}/../🚀").is_ok());
/// assert!(identifier("session id", "").is_err());
/// assert!(identifier("session id", "tab\there").is_err());
/// ```
pub fn identifier(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid_input(format!("{what} must not be empty")));
    }
    if value.len() > MAX_IDENTIFIER_BYTES {
        return Err(Error::invalid_input(format!(
            "{what} is {} bytes; the limit is {MAX_IDENTIFIER_BYTES} bytes",
            value.len()
        )));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(Error::invalid_input(format!(
            "{what} {:?} contains the control character U+{:04X}",
            preview(value),
            u32::from(c)
        )));
    }
    Ok(())
}

/// Checks an optional identifier (see [`identifier`]).
///
/// # Errors
/// As [`identifier`].
pub fn optional_identifier(what: &str, value: Option<&str>) -> Result<()> {
    value.map_or(Ok(()), |v| identifier(what, v))
}

/// Checks free text (reasons, notes, messages): at most [`MAX_TEXT_BYTES`].
/// Control characters such as newlines are allowed.
///
/// # Errors
/// [`InvalidInput`](crate::ErrorKind::InvalidInput) when too long.
pub fn text(what: &str, value: &str) -> Result<()> {
    if value.len() > MAX_TEXT_BYTES {
        return Err(Error::invalid_input(format!(
            "{what} is {} bytes; the limit is {MAX_TEXT_BYTES} bytes",
            value.len()
        )));
    }
    Ok(())
}

/// Checks a JSON value — nesting at most [`MAX_JSON_DEPTH`], canonical
/// serialisation at most [`MAX_JSON_BYTES`] — and returns that serialisation.
///
/// # Errors
/// [`InvalidInput`](crate::ErrorKind::InvalidInput) when too deep or too large.
pub fn json(what: &str, value: &Value) -> Result<Vec<u8>> {
    json_depth(what, value)?;
    let bytes = canonical_json(value);
    if bytes.len() > MAX_JSON_BYTES {
        return Err(Error::invalid_input(format!(
            "{what} is {} bytes of JSON; the limit is {MAX_JSON_BYTES} bytes",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Checks nesting depth without recursion.
fn json_depth(what: &str, value: &Value) -> Result<()> {
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth >= MAX_JSON_DEPTH {
            return Err(Error::invalid_input(format!(
                "{what} nests arrays/objects deeper than {MAX_JSON_DEPTH} levels"
            )));
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    Ok(())
}

/// Checks a JSON value that must be an object (run tags).
///
/// # Errors
/// [`InvalidInput`](crate::ErrorKind::InvalidInput) when not an object or too large.
pub fn json_object(what: &str, value: &Value) -> Result<()> {
    if !value.is_object() {
        return Err(Error::invalid_input(format!(
            "{what} must be a JSON object"
        )));
    }
    json(what, value).map(drop)
}

/// Checks a byte payload against a limit.
///
/// # Errors
/// [`InvalidInput`](crate::ErrorKind::InvalidInput) when larger than `limit`.
pub fn payload(what: &str, len: usize, limit: usize) -> Result<()> {
    if len > limit {
        return Err(Error::invalid_input(format!(
            "{what} is {len} bytes; the limit is {limit} bytes"
        )));
    }
    Ok(())
}

/// Clamps a caller's page size to [`MAX_PAGE`].
pub fn page_limit(limit: usize) -> usize {
    limit.min(MAX_PAGE)
}

/// A short, printable preview of a possibly hostile identifier for messages.
pub fn preview(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX {
        value.to_owned()
    } else {
        let mut s: String = value.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_limits_are_in_bytes() {
        assert!(identifier("x", &"a".repeat(256)).is_ok());
        assert!(identifier("x", &"a".repeat(257)).is_err());
        // 64 four-byte emoji = 256 bytes; one more is over.
        assert!(identifier("x", &"🚀".repeat(64)).is_ok());
        assert!(identifier("x", &"🚀".repeat(65)).is_err());
    }

    #[test]
    fn control_characters_are_named() {
        let err = identifier("release name", "a\u{0}b").unwrap_err();
        assert!(err.message().contains("U+0000"), "{err}");
        assert!(identifier("x", "a\u{7f}").is_err());
        assert!(identifier("x", "a\u{9f}").is_err());
    }

    #[test]
    fn json_limit_counts_canonical_bytes() {
        let big = Value::String("x".repeat(MAX_JSON_BYTES));
        assert!(json("payload", &big).is_err());
        let ok = Value::String("x".repeat(MAX_JSON_BYTES - 2));
        assert!(json("payload", &ok).is_ok());
        assert!(json_object("tags", &Value::Null).is_err());
    }

    fn nested(depth: usize) -> Value {
        let mut v = Value::Null;
        for _ in 0..depth {
            v = Value::Array(vec![v]);
        }
        v
    }

    #[test]
    fn json_depth_is_limited_without_recursing() {
        assert!(json("p", &nested(MAX_JSON_DEPTH)).is_ok());
        assert!(json("p", &nested(MAX_JSON_DEPTH + 1)).is_err());
        // Deep enough to overflow the stack of a recursive walk.
        let deep = nested(200_000);
        let err = json("p", &deep).unwrap_err();
        assert!(err.message().contains("deeper"), "{err}");
        // Dropping a deep Value recurses in serde_json; unwind it iteratively.
        let mut v = deep;
        while let Value::Array(mut items) = v {
            v = items.pop().unwrap_or(Value::Null);
        }
    }
}
