//! The reference model: plain sequential maps implementing SPEC §3–7 as
//! directly as possible, each method returning the outcome the store must give.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;
use stowage_core::{Digest, ErrorKind, RunId, RunStatus, SessionState, Supersession};

/// The outcome of one operation: a short rendering of the result, or the error kind.
pub(crate) type Outcome = Result<String, ErrorKind>;

/// One run as the model sees it.
#[derive(Debug, Clone)]
pub(crate) struct ModelRun {
    pub(crate) id: RunId,
    pub(crate) agent: String,
    pub(crate) spec: Digest,
    pub(crate) status: RunStatus,
    /// (kind, payload, idempotency key) per seq.
    pub(crate) events: Vec<(String, Value, Option<String>)>,
}

/// One release record as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModelRelease {
    pub(crate) spec: Digest,
    pub(crate) previous: Option<u64>,
    pub(crate) restored: Option<u64>,
    rollback_target: Option<u64>,
}

/// One session as the model sees it.
#[derive(Debug, Clone)]
pub(crate) struct ModelSession {
    pub(crate) data: Value,
    pub(crate) state: SessionState,
    pub(crate) version: u64,
    /// (payload, idempotency key) per seq.
    pub(crate) log: Vec<(Bytes, Option<String>)>,
}

/// The whole reference state.
#[derive(Debug, Default)]
pub(crate) struct Model {
    pub(crate) blobs: BTreeMap<Digest, Bytes>,
    /// In creation order.
    pub(crate) runs: Vec<ModelRun>,
    pub(crate) releases: BTreeMap<String, Vec<ModelRelease>>,
    pub(crate) sessions: BTreeMap<String, ModelSession>,
    pub(crate) supersessions: BTreeMap<Digest, Supersession>,
}

impl Model {
    pub(crate) fn cas_put(&mut self, bytes: Bytes) -> Outcome {
        let d = Digest::of(&bytes);
        self.blobs.insert(d, bytes);
        Ok(d.to_string())
    }

    pub(crate) fn cas_delete(&mut self, d: &Digest) -> Outcome {
        Ok(self.blobs.remove(d).is_some().to_string())
    }

    pub(crate) fn cas_get(&self, d: &Digest) -> Outcome {
        self.blobs
            .get(d)
            .map(|b| b.len().to_string())
            .ok_or(ErrorKind::NotFound)
    }

    pub(crate) fn run_append(
        &mut self,
        run: Option<usize>,
        event: (String, Value, Option<String>),
        expected_seq: Option<u64>,
    ) -> Outcome {
        let r = run
            .and_then(|i| self.runs.get_mut(i))
            .ok_or(ErrorKind::NotFound)?;
        if let Some(key) = &event.2 {
            if let Some(seq) = r.events.iter().position(|e| e.2.as_ref() == Some(key)) {
                // The same key with other content is a Conflict.
                let original = &r.events[seq];
                if (&original.0, &original.1) != (&event.0, &event.1) {
                    return Err(ErrorKind::Conflict);
                }
                return Ok(seq.to_string());
            }
        }
        if r.status.is_terminal() {
            return Err(ErrorKind::Conflict);
        }
        // A retry with a used key returned the original above, whatever its
        // expected seq; otherwise a mismatch changes nothing.
        if expected_seq.is_some_and(|s| s != r.events.len() as u64) {
            return Err(ErrorKind::Conflict);
        }
        r.events.push(event);
        Ok((r.events.len() - 1).to_string())
    }

    pub(crate) fn run_finish(&mut self, run: Option<usize>, status: RunStatus) -> Outcome {
        let r = run
            .and_then(|i| self.runs.get_mut(i))
            .ok_or(ErrorKind::NotFound)?;
        if r.status.is_terminal() {
            return Err(ErrorKind::Conflict);
        }
        r.status = status;
        Ok(status.to_string())
    }

    pub(crate) fn promote(&mut self, name: &str, spec: Digest, expected: Option<u64>) -> Outcome {
        let current = (self.releases.get(name))
            .and_then(|h| h.len().checked_sub(1))
            .map(|s| s as u64);
        if expected.is_some_and(|e| current != Some(e)) {
            // A failed compare-and-promote creates nothing, not even the name.
            return Err(ErrorKind::Conflict);
        }
        let history = self.releases.entry(name.to_owned()).or_default();
        let previous = history.len().checked_sub(1).map(|s| s as u64);
        history.push(ModelRelease {
            spec,
            previous,
            restored: None,
            rollback_target: previous,
        });
        Ok((history.len() - 1).to_string())
    }

    /// A rollback to the current record's target (`seq: None`) or to `seq`.
    pub(crate) fn rollback(&mut self, name: &str, seq: Option<u64>) -> Outcome {
        let history = self.releases.get_mut(name).ok_or(ErrorKind::NotFound)?;
        let head_seq = history.len() as u64 - 1;
        let target = match seq {
            Some(s) if s > head_seq => return Err(ErrorKind::NotFound),
            Some(s) => s,
            None => history[head_seq as usize]
                .rollback_target
                .ok_or(ErrorKind::Conflict)?,
        };
        let restore = history[target as usize].clone();
        history.push(ModelRelease {
            spec: restore.spec,
            previous: Some(head_seq),
            restored: Some(target),
            rollback_target: restore.rollback_target,
        });
        Ok(format!("{} restores {target}", head_seq + 1))
    }

    pub(crate) fn session_create(&mut self, id: &str, data: Value) -> Outcome {
        if self.sessions.contains_key(id) {
            return Err(ErrorKind::AlreadyExists);
        }
        let session = ModelSession {
            data,
            state: SessionState::Open,
            version: 1,
            log: Vec::new(),
        };
        self.sessions.insert(id.to_owned(), session);
        Ok("1".into())
    }

    pub(crate) fn session_save(&mut self, id: &str, data: Value, expected: Option<u64>) -> Outcome {
        let s = self.sessions.get_mut(id).ok_or(ErrorKind::NotFound)?;
        if expected.is_some_and(|v| v != s.version) {
            return Err(ErrorKind::Conflict);
        }
        s.data = data;
        s.version += 1;
        Ok(s.version.to_string())
    }

    pub(crate) fn session_state(&mut self, id: &str, state: SessionState) -> Outcome {
        let s = self.sessions.get_mut(id).ok_or(ErrorKind::NotFound)?;
        if s.state.is_final() {
            return Err(ErrorKind::Conflict);
        }
        s.state = state;
        s.version += 1;
        Ok(s.version.to_string())
    }

    pub(crate) fn session_delete(&mut self, id: &str) -> Outcome {
        Ok(self.sessions.remove(id).is_some().to_string())
    }

    pub(crate) fn log_append(&mut self, id: &str, payload: Bytes, key: Option<String>) -> Outcome {
        let s = self.sessions.get_mut(id).ok_or(ErrorKind::NotFound)?;
        if let Some(k) = &key {
            if let Some(seq) = s.log.iter().position(|e| e.1.as_ref() == Some(k)) {
                // The steps give every entry a distinct payload (and
                // entries of another kind another payload), so comparing
                // payloads compares the content.
                if s.log[seq].0 != payload {
                    return Err(ErrorKind::Conflict);
                }
                return Ok(seq.to_string());
            }
        }
        if s.state.is_final() {
            return Err(ErrorKind::Conflict);
        }
        s.log.push((payload, key));
        Ok((s.log.len() - 1).to_string())
    }

    pub(crate) fn log_replace(
        &mut self,
        id: &str,
        log: Vec<(Bytes, Option<String>)>,
        expected: Option<u64>,
    ) -> Outcome {
        let s = self.sessions.get_mut(id).ok_or(ErrorKind::NotFound)?;
        if s.state.is_final() {
            return Err(ErrorKind::Conflict);
        }
        if expected.is_some_and(|e| e != s.log.len() as u64) {
            return Err(ErrorKind::Conflict);
        }
        s.log = log;
        Ok(s.log.len().to_string())
    }

    pub(crate) fn sup_put(&mut self, record: Supersession) -> Outcome {
        if record.replacement == Some(record.target) {
            return Err(ErrorKind::InvalidInput);
        }
        match self.supersessions.get(&record.target) {
            Some(existing) if *existing == record => return Ok("AlreadyPresent".into()),
            Some(_) => return Err(ErrorKind::Conflict),
            None => {}
        }
        let mut next = record.replacement;
        while let Some(current) = next {
            if current == record.target {
                return Err(ErrorKind::Conflict);
            }
            next = self.supersessions.get(&current).and_then(|s| s.replacement);
        }
        self.supersessions.insert(record.target, record);
        Ok("Stored".into())
    }

    /// Where following replacements from `hash` leads: (end, hops, withdrawn).
    pub(crate) fn resolve(&self, hash: Digest) -> (Digest, u32, bool) {
        let mut current = hash;
        let mut hops = 0;
        loop {
            match self.supersessions.get(&current) {
                None => return (current, hops, false),
                Some(s) => match s.replacement {
                    None => return (current, hops, true),
                    Some(next) => {
                        current = next;
                        hops += 1;
                    }
                },
            }
        }
    }
}
