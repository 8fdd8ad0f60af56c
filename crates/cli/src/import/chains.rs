//! Replaying runs (record, events, terminal transition) and sessions
//! (record, log, version and state) into the target.

use stowage_core::lifecycle::Referrer;
use stowage_core::run::MAX_SUMMARY_BLOBS;
use stowage_core::{
    Digest, Error, LogEntry, NewEvent, NewLogEntry, Result, Run, RunEvent, Session, SessionState,
};

use super::{
    damaged, first_difference, not_reproduced, same, Importer, RunState, SessionReplay, State,
};
use crate::export::read_whole_log;
use crate::format::{LogLine, MAX_SESSION_VERSION};

impl Importer {
    // ---- runs ----

    pub(super) async fn run(&mut self, source: Run) -> Result<()> {
        let runs = std::sync::Arc::clone(&self.stores.runs);
        let target = match runs.get_run(source.id).await {
            Ok(target) => {
                let created = (&target.spec_digest, &target.metadata, target.created_at);
                let wanted = (&source.spec_digest, &source.metadata, source.created_at);
                if created != wanted || target.event_count > source.event_count {
                    return Err(Error::conflict(format!(
                        "run {} already exists in the target with different contents \
                         (first difference: {}); refusing to merge",
                        source.id,
                        first_difference(&target, &source).unwrap_or_else(|| "-".into())
                    )));
                }
                Some(target)
            }
            Err(e) if e.kind() == stowage_core::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let existing = target.as_ref().map_or(0, |t| t.event_count);
        let refs = self.event_refs(&source, existing).await?;
        if target.is_none() {
            let id = {
                let _pin = self.replay.pin(source.created_at, Some(source.id));
                runs.create_run(source.spec_digest, source.metadata.clone())
                    .await?
            };
            if id != source.id {
                return Err(not_reproduced(&format!(
                    "run {}: the target assigned id {id} instead of the injected one",
                    source.id
                )));
            }
        }
        self.state = State::Run(RunState {
            source,
            existing,
            next: 0,
            refs,
        });
        self.run_step().await
    }

    /// The blobs run `source` references (its `blob_ref` lines) that the
    /// events still to append must declare: not its spec nor its summary's
    /// blobs (`create_run` and `finish_run` declare those), nor what the
    /// target run already references (events appended by an earlier
    /// import). Sorted, each once.
    ///
    /// # Errors
    /// `Conflict`, before anything is written, when the events to append
    /// (`source.event_count - existing`) cannot declare them all, at most
    /// [`MAX_SUMMARY_BLOBS`] each: the target would lack references the
    /// source has, and its gc would delete blobs the run still uses.
    async fn event_refs(&mut self, source: &Run, existing: u64) -> Result<Vec<Digest>> {
        let mut refs = self.run_refs.remove(&source.id).unwrap_or_default();
        let summary = source.summary.as_ref().map_or(&[][..], |s| &s.blobs[..]);
        refs.retain(|d| *d != source.spec_digest && !summary.contains(d));
        refs.sort_unstable();
        refs.dedup();
        if existing > 0 {
            let mut missing = Vec::with_capacity(refs.len());
            for digest in refs {
                let referrers = self.stores.lifecycle.blob_referrers(&digest).await?;
                if !referrers.contains(&Referrer::Run(source.id)) {
                    missing.push(digest);
                }
            }
            refs = missing;
        }
        let to_append = source.event_count.saturating_sub(existing);
        let room = to_append.saturating_mul(MAX_SUMMARY_BLOBS as u64);
        if refs.len() as u64 > room {
            return Err(not_reproduced(&format!(
                "run {}: the file has {} blob references for it beyond its spec and \
                 summary, but the {to_append} events left to append can declare at most \
                 {room} ({MAX_SUMMARY_BLOBS} each); importing it would leave blobs the run \
                 references unreferenced in the target",
                source.id,
                refs.len()
            )));
        }
        Ok(refs)
    }

    pub(super) async fn event(&mut self, event: RunEvent) -> Result<()> {
        let State::Run(r) = &mut self.state else {
            return Err(damaged("an event outside a run"));
        };
        let id = r.source.id;
        if event.run_id != id || event.seq != r.next {
            return Err(damaged(&format!(
                "run {id}: expected event {} but found event {} of run {}",
                r.next, event.seq, event.run_id
            )));
        }
        let entity = format!("run {id} event {}", event.seq);
        let stored = if event.seq < r.existing {
            let mut page = self
                .stores
                .runs
                .read_events(id, event.seq.checked_sub(1), 1)
                .await?;
            page.pop()
        } else {
            let mut new = NewEvent::new(event.kind.clone(), event.payload.clone())
                .with_timestamp(event.timestamp)
                .with_expected_seq(event.seq);
            new.idempotency_key.clone_from(&event.idempotency_key);
            // The run's blob references ride on its first events appended
            // here (they are not part of the stored event or its hash);
            // `event_refs` checked that they fit.
            let take = r.refs.len().min(MAX_SUMMARY_BLOBS);
            new = new.with_blobs(r.refs.drain(..take));
            Some(self.stores.runs.append_event(id, new).await?)
        };
        same(&entity, stored.as_ref(), Some(&event))?;
        r.next += 1;
        self.run_step().await
    }

    /// Once every event is in, finishes the run and compares the record.
    pub(super) async fn run_step(&mut self) -> Result<()> {
        let State::Run(r) = &self.state else {
            return Ok(());
        };
        if r.next < r.source.event_count {
            return Ok(());
        }
        let State::Run(r) = std::mem::replace(&mut self.state, State::Idle) else {
            return Ok(());
        };
        let source = r.source;
        if !r.refs.is_empty() {
            // `event_refs` made room for them: a reference never goes
            // missing silently.
            return Err(not_reproduced(&format!(
                "run {}: {} blob references were left undeclared by its events",
                source.id,
                r.refs.len()
            )));
        }
        let runs = &self.stores.runs;
        let mut target = runs.get_run(source.id).await?;
        if source.status.is_terminal() && !target.status.is_terminal() {
            let summary = source.summary.clone().ok_or_else(|| {
                not_reproduced(&format!(
                    "run {} is {} but has no summary",
                    source.id, source.status
                ))
            })?;
            let finished = source.finished_at.unwrap_or(source.created_at);
            let _pin = self.replay.pin(finished, None);
            target = runs.finish_run(source.id, source.status, summary).await?;
        }
        same(&format!("run {}", source.id), Some(&target), Some(&source))
    }

    // ---- sessions ----

    pub(super) async fn session(&mut self, source: Session, log_len: u64) -> Result<()> {
        // Checked before anything is written: each version is one save.
        if source.version > MAX_SESSION_VERSION {
            return Err(damaged(&format!(
                "session {:?}: its version {} is above {MAX_SESSION_VERSION}, the most the \
                 importer replays (one save per version)",
                source.id, source.version
            )));
        }
        let sessions = &self.stores.sessions;
        let existing = match sessions.load_session(&source.id).await? {
            Some(target) => {
                if target.created_at != source.created_at || target.version > source.version {
                    return Err(Error::conflict(format!(
                        "session {:?} already exists in the target with different contents \
                         (first difference: {}); refusing to merge",
                        source.id,
                        first_difference(&target, &source).unwrap_or_else(|| "-".into())
                    )));
                }
                let log = read_whole_log(&self.stores, &source.id).await?;
                if log.len() as u64 > log_len {
                    return Err(Error::conflict(format!(
                        "session {:?} has {} log entries in the target but {log_len} in the source; \
                         refusing to merge",
                        source.id,
                        log.len()
                    )));
                }
                log
            }
            None => {
                let created = {
                    let _pin = self.replay.pin(source.created_at, None);
                    sessions
                        .create_session(&source.id, source.data.clone())
                        .await?
                };
                if created.created_at != source.created_at {
                    return Err(not_reproduced(&format!(
                        "session {:?}: the target did not take the injected creation time",
                        source.id
                    )));
                }
                Vec::new()
            }
        };
        self.state = State::Session(SessionReplay {
            source,
            log_len,
            existing,
            next: 0,
        });
        self.session_step().await
    }

    pub(super) async fn log(&mut self, line: LogLine) -> Result<()> {
        let State::Session(s) = &mut self.state else {
            return Err(damaged("a log entry outside a session"));
        };
        let entry = LogEntry::try_from(line)?;
        if entry.session_id != s.source.id || entry.seq != s.next {
            return Err(damaged(&format!(
                "session {:?}: expected log entry {} but found entry {} of session {:?}",
                s.source.id, s.next, entry.seq, entry.session_id
            )));
        }
        let entity = format!("session {:?} log entry {}", s.source.id, entry.seq);
        let stored = match s.existing.get(entry.seq as usize) {
            Some(have) => have.clone(),
            None => {
                let mut new = NewLogEntry::new(
                    entry.kind,
                    entry.sender.clone(),
                    entry.message_type.clone(),
                    entry.payload.clone(),
                )
                .with_timestamp(entry.timestamp);
                new.idempotency_key.clone_from(&entry.idempotency_key);
                self.stores.sessions.append_log(&s.source.id, new).await?
            }
        };
        same(
            &entity,
            Some(&LogLine::from(&stored)),
            Some(&LogLine::from(&entry)),
        )?;
        s.next += 1;
        self.session_step().await
    }

    /// Once the log is in, brings version, state and data to the source's.
    pub(super) async fn session_step(&mut self) -> Result<()> {
        let State::Session(s) = &self.state else {
            return Ok(());
        };
        if s.next < s.log_len {
            return Ok(());
        }
        let State::Session(s) = std::mem::replace(&mut self.state, State::Idle) else {
            return Ok(());
        };
        let source = s.source;
        let sessions = &self.stores.sessions;
        let entity = format!("session {:?}", source.id);
        let mut target = sessions.load_session(&source.id).await?.ok_or_else(|| {
            Error::conflict(format!(
                "{entity} was deleted from the target during the import"
            ))
        })?;
        let _pin = self.replay.pin(source.updated_at, None);
        while target.version < source.version {
            let last = target.version + 1 == source.version;
            target = if last && source.state != SessionState::Open {
                sessions
                    .set_session_state(&source.id, source.state, Some(target.version))
                    .await?
            } else if target.state != SessionState::Open && target.state != source.state {
                return Err(not_reproduced(&format!(
                    "{entity}: its state history cannot be replayed"
                )));
            } else {
                sessions
                    .save_session(&source.id, source.data.clone(), Some(target.version))
                    .await?
            };
        }
        same(&entity, Some(&target), Some(&source))
    }
}
