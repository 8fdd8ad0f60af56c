//! SQL literals for the statements a write job stages, which are sent
//! together with `COMMIT` as one simple query (one round trip).
//!
//! Safe to splice because every connection runs with
//! `standard_conforming_strings=on` (set at connect): inside `'…'` only a
//! quote is special, and it is doubled. `bytea` is written as hex
//! (`'\x…'::bytea`: hex digits only).

/// `bytes` as a `bytea` literal.
pub(super) fn bytea(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2 + 12);
    out.push_str("'\\x");
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out.push_str("'::bytea");
    out
}

/// `s` as a text literal, or `NULL` for text PostgreSQL cannot store (a
/// NUL character).
pub(super) fn text(s: &str) -> String {
    if s.contains('\0') {
        return "NULL".to_owned();
    }
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_what_they_must() {
        assert_eq!(bytea(&[0, 0xff, 0x1a]), "'\\x00ff1a'::bytea");
        assert_eq!(bytea(&[]), "'\\x'::bytea");
        assert_eq!(text("it's"), "'it''s'");
        assert_eq!(text("a\\b"), "'a\\b'");
        assert_eq!(text("nul\0"), "NULL");
    }
}
