//! The key layout. Every key of one entity shares a hash tag
//! (`{<prefix>:run:<id>}:…`), so single-entity scripts never hit CROSSSLOT
//! on a cluster. Names inside a hash tag are escaped (`%` → `%25`,
//! `{` → `%7B`, `}` → `%7D`) so that no name can end the tag early or
//! collide with another name. Keys are never parsed.

use stowage_core::{AgentKey, Digest, RunId};

/// Builds every key under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

impl Keys {
    /// The prefix is escaped like names and also has `:` escaped (`%3A`),
    /// so the first `:` inside a tag always ends the prefix: two prefixes
    /// can never produce the same key.
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            prefix: escape(prefix).replace(':', "%3A"),
        }
    }

    fn tagged(&self, kind: &str, id: &str, suffix: &str) -> Vec<u8> {
        format!("{{{}:{kind}:{id}}}:{suffix}", self.prefix).into_bytes()
    }

    fn idx(&self, suffix: &str) -> Vec<u8> {
        format!("{{{}:idx}}:{suffix}", self.prefix).into_bytes()
    }

    /// Run record hash: `rec` (CBOR), `status`, `next`, `head`.
    pub(crate) fn run_meta(&self, id: RunId) -> Vec<u8> {
        self.tagged("run", &id.to_string(), "meta")
    }
    /// Run events list (index = seq).
    pub(crate) fn run_events(&self, id: RunId) -> Vec<u8> {
        self.tagged("run", &id.to_string(), "events")
    }
    /// Run idempotency keys hash: key → seq.
    pub(crate) fn run_idem(&self, id: RunId) -> Vec<u8> {
        self.tagged("run", &id.to_string(), "idem")
    }
    /// All runs, lex-ordered by id.
    pub(crate) fn runs_all(&self) -> Vec<u8> {
        self.idx("runs")
    }
    /// Runs of one spec.
    pub(crate) fn runs_by_spec(&self, spec: &Digest) -> Vec<u8> {
        self.idx(&format!("runs:spec:{spec}"))
    }
    /// Runs of one agent.
    pub(crate) fn runs_by_agent(&self, agent: &str) -> Vec<u8> {
        self.idx(&format!("runs:agent:{agent}"))
    }

    /// Session record hash: `rec`, `ver`, `head`.
    pub(crate) fn session_meta(&self, id: &str) -> Vec<u8> {
        self.tagged("session", &escape(id), "meta")
    }
    /// Session log list (index = seq).
    pub(crate) fn session_log(&self, id: &str) -> Vec<u8> {
        self.tagged("session", &escape(id), "log")
    }
    /// Session idempotency keys hash.
    pub(crate) fn session_idem(&self, id: &str) -> Vec<u8> {
        self.tagged("session", &escape(id), "idem")
    }
    /// All session ids, lex-ordered.
    pub(crate) fn sessions_all(&self) -> Vec<u8> {
        self.idx("sessions")
    }

    /// Release history list (index = seq).
    pub(crate) fn release_history(&self, name: &str) -> Vec<u8> {
        self.tagged("release", &escape(name), "history")
    }
    /// All release names, lex-ordered.
    pub(crate) fn releases_all(&self) -> Vec<u8> {
        self.idx("releases")
    }

    /// One blob: 4-byte CRC32C then the bytes.
    pub(crate) fn blob(&self, d: &Digest) -> Vec<u8> {
        self.tagged("blob", &d.to_string(), "data")
    }
    /// All blob digests, lex-ordered (hex).
    pub(crate) fn blobs_all(&self) -> Vec<u8> {
        self.idx("blobs")
    }
    /// When a `put` last returned the blob (ms, decimal), beside its data.
    pub(crate) fn blob_at(&self, d: &Digest) -> Vec<u8> {
        self.tagged("blob", &d.to_string(), "at")
    }
    /// The blob's reference index: hash, referrer field → recorded at (ms).
    pub(crate) fn blob_refs(&self, d: &Digest) -> Vec<u8> {
        self.tagged("blob", &d.to_string(), "refs")
    }

    /// The store's counters (hash, field → integer), under a tag of their own.
    pub(crate) fn stats(&self) -> Vec<u8> {
        format!("{{{}:stats}}:counts", self.prefix).into_bytes()
    }

    fn sup(&self, suffix: &str) -> Vec<u8> {
        format!("{{{}:sup}}:{suffix}", self.prefix).into_bytes()
    }
    /// Supersession records hash: target hex → CBOR.
    pub(crate) fn sup_records(&self) -> Vec<u8> {
        self.sup("records")
    }
    /// Supersession replacements hash: target hex → replacement hex or "".
    pub(crate) fn sup_replacements(&self) -> Vec<u8> {
        self.sup("replacements")
    }
    /// Every superseded target (hex), lex-ordered: the order of
    /// `SupersessionStore::list`. Written by the put script with the record.
    pub(crate) fn sup_targets(&self) -> Vec<u8> {
        self.sup("targets")
    }
    /// One agent's records, ordered by a fixed-width binary order key.
    pub(crate) fn sup_by_agent(&self, agent: &AgentKey) -> Vec<u8> {
        self.sup(&format!("agent:{agent}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_stay_inside_their_tag() {
        let k = Keys::new("p");
        let a = k.session_meta("x}:{y");
        assert_eq!(a, b"{p:session:x%7D:%7By}:meta".to_vec());
        assert_ne!(k.session_meta("%7D"), k.session_meta("}"));
    }

    #[test]
    fn prefixes_never_collide() {
        let a = Keys::new("a").session_meta("x:session:y");
        let b = Keys::new("a:session:x").session_meta("y");
        assert_ne!(a, b);
    }
}
