//! [`RunLedger`] over Redis: one hash (`…:meta`) and one list (`…:events`)
//! per run under the run's hash tag, plus sorted-set indexes under
//! `{prefix:idx}`.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::try_join_all;
use stowage_core::encoding::{decode_event, decode_record, encode_event, encode_record};
use stowage_core::{
    validate, Digest, Error, NewEvent, Result, Run, RunEvent, RunFilter, RunId, RunLedger,
    RunMetadata, RunStatus, RunSummary,
};

use stowage_core::run::run_id_taken;

use super::chain::{append, parse_head, Appended, ChainKeys};
use super::conn::{bytes, int, items, status, unexpected, Op};
use super::lifecycle::refs::reference;
use super::Shared;
use stowage_core::lifecycle::Referrer;

/// The run ledger.
pub(crate) struct RedisRuns(pub(crate) Arc<Shared>);

/// Candidates fetched from an index per page while filtering.
const SCAN_BATCH: usize = 256;

fn status_word(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "Running",
        RunStatus::Completed => "Completed",
        RunStatus::Failed => "Failed",
        RunStatus::Cancelled => "Cancelled",
    }
}

impl RedisRuns {
    fn chain(&self, id: RunId) -> ChainKeys {
        let k = &self.0.keys;
        ChainKeys {
            meta: k.run_meta(id),
            list: k.run_events(id),
            idem: k.run_idem(id),
        }
    }

    /// The run, or `None`.
    async fn load(&self, id: RunId) -> Result<Option<Run>> {
        let what = format!("run {id}");
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.0.keys.run_meta(id))
            .arg("rec")
            .arg("next")
            .arg("head");
        let reply = items(self.0.conn.query(&cmd, Op::Read, &what).await?);
        let Some(rec) = reply.first().and_then(bytes) else {
            return Ok(None);
        };
        let mut run: Run = decode_record(&what, rec)?;
        // The count and head live beside the record, written by every append.
        let (count, head) = chain_end(reply.get(1), reply.get(2), &what)?;
        run.event_count = count;
        run.head = head;
        Ok(Some(run))
    }

    fn not_found(id: RunId) -> Error {
        Error::not_found(format!("run {id} does not exist"))
    }
}

#[async_trait]
impl RunLedger for RedisRuns {
    async fn create_run(&self, spec_digest: Digest, metadata: RunMetadata) -> Result<RunId> {
        metadata.validate()?;
        let sh = &self.0;
        let now = sh.env.clock.now();
        let id = sh.env.ids.new_run_id(now);
        let what = format!("create run {id}");
        let run = Run::new(id, spec_digest, metadata, now);
        let rec = encode_record(&run)?;
        // Step 0 (the blob's slot): the spec's reference, before the run
        // exists (see `lifecycle::refs`).
        reference(sh, [spec_digest], &Referrer::Run(id)).await?;
        // Step 1 (index slot): the run becomes a listing candidate. A
        // candidate whose record is missing is skipped by list_runs.
        let k = &sh.keys;
        let idx = [
            k.runs_all(),
            k.runs_by_spec(&spec_digest),
            k.runs_by_agent(&run.metadata.agent_name),
        ];
        let idx_refs: Vec<&[u8]> = idx.iter().map(Vec::as_slice).collect();
        let member = id.to_string();
        sh.conn
            .mutate(
                &sh.scripts.index_add,
                &idx_refs,
                &[member.as_bytes()],
                &what,
            )
            .await?;
        // Step 2 (the run's slot): the record itself.
        let meta = k.run_meta(id);
        let args: [&[u8]; 8] = [
            b"rec", &rec, b"status", b"Running", b"next", b"0", b"head", b"",
        ];
        let reply = sh
            .conn
            .mutate(&sh.scripts.create, &sh.counted(&[&meta]), &args, &what)
            .await?;
        let (word, _) = status(reply, &what)?;
        match word.as_str() {
            "ok" => {
                sh.remember_head(&meta, Some((0, String::new())));
                Ok(id)
            }
            "exists" => Err(run_id_taken(id)),
            other => Err(unexpected(&what, other)),
        }
    }

    async fn append_event(&self, run: RunId, event: NewEvent) -> Result<RunEvent> {
        // `RunEvent::build` validates the event before anything is sent;
        // declared blobs are referenced first, so validate before that.
        if !event.blobs.is_empty() {
            event.validate()?;
            let referrer = Referrer::Run(run);
            reference(&self.0, event.blobs.iter().copied(), &referrer).await?;
        }
        let now = self.0.env.clock.now();
        let what = format!("append to run {run}");
        let idem = event.idempotency_key.clone();
        let outcome = append(
            &self.0,
            &self.chain(run),
            "run",
            idem.as_deref(),
            &what,
            |next, prev| {
                let e = RunEvent::build(run, next, prev, event.clone(), now)?;
                let rec = encode_event(&e)?;
                let hash = e.hash;
                Ok((e, rec, hash))
            },
        )
        .await?;
        match outcome {
            Appended::New(e) => Ok(e),
            Appended::Dup(rec) => {
                // The script returned the stored original; the content rule
                // is core's (the original is immutable, so no race).
                let original = decode_event(&format!("run {run} event"), &rec)?;
                original.retried(&event)
            }
            Appended::NotFound => Err(Self::not_found(run)),
            Appended::NotRunning => {
                let current = self.load(run).await?.ok_or_else(|| Self::not_found(run))?;
                current.check_running()?;
                Err(Error::internal(format!(
                    "{what}: the store refused the append but the run is Running"
                )))
            }
        }
    }

    async fn finish_run(
        &self,
        run: RunId,
        status_to: RunStatus,
        summary: RunSummary,
    ) -> Result<Run> {
        let sh = &self.0;
        let what = format!("finish run {run}");
        let now = sh.env.clock.now();
        let current = self.load(run).await?.ok_or_else(|| Self::not_found(run))?;
        let mut finished = current.finish(status_to, summary, now)?;
        let rec = encode_record(&finished)?;
        if let Some(summary) = &finished.summary {
            // The declared blobs' references, before the record declares them.
            reference(sh, summary.blobs.iter().copied(), &Referrer::Run(run)).await?;
        }
        let meta = sh.keys.run_meta(run);
        let reply = sh
            .conn
            .mutate(
                &sh.scripts.finish_run,
                &sh.counted(&[&meta]),
                &[status_word(status_to).as_bytes(), &rec],
                &what,
            )
            .await?;
        let (word, rest) = status(reply, &what)?;
        match word.as_str() {
            "ok" => {
                let (count, head) = chain_end(rest.first(), rest.get(1), &what)?;
                finished.event_count = count;
                finished.head = head;
                Ok(finished)
            }
            "notfound" => Err(Self::not_found(run)),
            "status" => {
                let st = rest.first().and_then(bytes).unwrap_or_default();
                Err(Error::conflict(format!(
                    "run {run} is already {}; it cannot become {status_to}",
                    String::from_utf8_lossy(st)
                )))
            }
            other => Err(unexpected(&what, other)),
        }
    }

    async fn get_run(&self, run: RunId) -> Result<Run> {
        self.load(run).await?.ok_or_else(|| Self::not_found(run))
    }

    async fn read_events(
        &self,
        run: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RunEvent>> {
        let what = format!("read events of run {run}");
        let chain = self.chain(run);
        let raw = read_list(&self.0, &chain, after_seq, limit, &what).await?;
        let Some(raw) = raw else {
            return Err(Self::not_found(run));
        };
        let what = format!("run {run} event");
        raw.iter().map(|r| decode_event(&what, r)).collect()
    }

    async fn list_runs(
        &self,
        filter: &RunFilter,
        after: Option<RunId>,
        limit: usize,
    ) -> Result<Vec<Run>> {
        let limit = validate::page_limit(limit);
        let k = &self.0.keys;
        let index = match (&filter.spec_digest, &filter.agent_name) {
            (Some(d), _) => k.runs_by_spec(d),
            (None, Some(a)) => k.runs_by_agent(a),
            (None, None) => k.runs_all(),
        };
        let mut out = Vec::new();
        let mut cursor = after.map(|a| a.to_string());
        while out.len() < limit {
            let mut cmd = redis::cmd("ZREVRANGEBYLEX");
            let max = cursor
                .as_ref()
                .map_or_else(|| "+".to_owned(), |c| format!("({c}"));
            cmd.arg(&index)
                .arg(max)
                .arg("-")
                .arg("LIMIT")
                .arg(0)
                .arg(SCAN_BATCH);
            let ids = items(self.0.conn.query(&cmd, Op::Read, "list runs").await?);
            if ids.is_empty() {
                break;
            }
            let parsed: Vec<RunId> = ids
                .iter()
                .map(|v| {
                    let s = bytes(v).map(String::from_utf8_lossy).unwrap_or_default();
                    s.parse::<RunId>()
                        .map_err(|_| Error::corrupted(format!("run index holds a bad id {s:?}")))
                })
                .collect::<Result<_>>()?;
            cursor = parsed.last().map(ToString::to_string);
            let runs = try_join_all(parsed.iter().map(|id| self.load(*id))).await?;
            for run in runs.into_iter().flatten() {
                if filter.matches(&run) && out.len() < limit {
                    out.push(run);
                }
            }
            if ids.len() < SCAN_BATCH {
                break;
            }
        }
        Ok(out)
    }
}

/// The length and head of a chain from its owner's `next` and `head` fields.
pub(crate) fn chain_end(
    next: Option<&redis::Value>,
    head: Option<&redis::Value>,
    what: &str,
) -> Result<(u64, Option<Digest>)> {
    let count = next
        .and_then(int)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| Error::corrupted(format!("{what}: the chain length is missing")))?;
    let hex = head
        .and_then(bytes)
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    Ok((count, parse_head(&hex, what)?))
}

/// Reads `limit` records after `after_seq` from a chain list; `None` when
/// the owner does not exist.
pub(crate) async fn read_list(
    sh: &Shared,
    chain: &ChainKeys,
    after_seq: Option<u64>,
    limit: usize,
    what: &str,
) -> Result<Option<Vec<Vec<u8>>>> {
    let limit = validate::page_limit(limit) as u64;
    let start = match after_seq {
        None => 0,
        Some(s) => s.saturating_add(1),
    };
    // Past the end (or an empty page): an empty range that still checks
    // that the owner exists.
    let (start, stop) = if limit == 0 || start > i64::MAX as u64 / 2 {
        (1i64, 0i64)
    } else {
        let start = start as i64;
        (start, start + limit as i64 - 1)
    };
    let (s, e) = (start.to_string(), stop.to_string());
    let reply = sh
        .conn
        .eval(
            &sh.scripts.read_list,
            &[&chain.meta, &chain.list],
            &[s.as_bytes(), e.as_bytes()],
            Op::Read,
            what,
        )
        .await?;
    let (word, rest) = status(reply, what)?;
    match word.as_str() {
        "notfound" => Ok(None),
        "ok" => Ok(Some(
            rest.into_iter()
                .next()
                .map(items)
                .unwrap_or_default()
                .iter()
                .map(|v| bytes(v).map(<[u8]>::to_vec).unwrap_or_default())
                .collect(),
        )),
        other => Err(unexpected(what, other)),
    }
}
