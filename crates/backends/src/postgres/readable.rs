//! Readable columns for people querying the tables with SQL: filled at
//! write time from the value with core's public codecs, nullable, never
//! read back by the engine (the `value` column stays the only truth).
//!
//! * `run_events`: `run_id uuid, seq bigint, kind text, ts timestamptz,
//!   payload jsonb, hash bytea` (decoded with
//!   [`decode_event`](stowage_core::encoding::decode_event));
//! * `runs`, `sessions`, `session_log`, `releases`: `record jsonb`, the
//!   stored record as JSON (decoded with
//!   [`decode_record`](stowage_core::encoding::decode_record)).
//!
//! A value that does not decode (a record layout this code does not know,
//! an index entry) leaves the columns `NULL`; JSON that `jsonb` refuses
//! (a `\u0000` in a string) leaves `payload` / `record` `NULL`.

use postgres::types::ToSql;
use stowage_core::engine::Table;
use stowage_core::encoding::{decode_event, decode_record};
use stowage_core::{LogEntry, ReleaseRecord, Run, Session};

/// The extra columns of `table` (for `CREATE TABLE`), if it has any.
pub(super) fn ddl(table: Table) -> Option<&'static str> {
    match table {
        Table::RunEvents => Some(
            ", run_id uuid, seq bigint, kind text, ts timestamptz, payload jsonb, hash bytea",
        ),
        Table::Runs | Table::Sessions | Table::SessionLog | Table::Releases => {
            Some(", record jsonb")
        }
        _ => None,
    }
}

/// The `put` statement of a table with readable columns.
pub(super) fn put_sql(table: Table) -> Option<String> {
    let t = table.name();
    match table {
        Table::RunEvents => Some(format!(
            "INSERT INTO {t} (key, value, run_id, seq, kind, ts, payload, hash) \
             VALUES ($1, $2, $3::text::uuid, $4, $5, to_timestamp($6::float8 / 1000.0), \
             $7::text::jsonb, $8) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, \
             run_id = EXCLUDED.run_id, seq = EXCLUDED.seq, kind = EXCLUDED.kind, \
             ts = EXCLUDED.ts, payload = EXCLUDED.payload, hash = EXCLUDED.hash"
        )),
        Table::Runs | Table::Sessions | Table::SessionLog | Table::Releases => Some(format!(
            "INSERT INTO {t} (key, value, record) VALUES ($1, $2, $3::text::jsonb) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, record = EXCLUDED.record"
        )),
        _ => None,
    }
}

/// The readable columns of one value.
pub(super) enum Columns {
    /// `run_events`.
    Event {
        run_id: Option<String>,
        seq: Option<i64>,
        kind: Option<String>,
        ts_ms: Option<f64>,
        payload: Option<String>,
        hash: Option<Vec<u8>>,
    },
    /// `runs`, `sessions`, `session_log`, `releases`.
    Record(Option<String>),
}

impl Columns {
    /// The statement parameters after `key` and `value`.
    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        match self {
            Columns::Event {
                run_id,
                seq,
                kind,
                ts_ms,
                payload,
                hash,
            } => vec![run_id, seq, kind, ts_ms, payload, hash],
            Columns::Record(record) => vec![record],
        }
    }
}

/// JSON text `jsonb` accepts (it refuses `\u0000`).
fn jsonb_text(value: &serde_json::Value) -> Option<String> {
    serde_json::to_string(value)
        .ok()
        .filter(|text| !text.contains("\\u0000"))
}

/// `value` decoded as a `T` record, as JSON text.
fn record<T: serde::de::DeserializeOwned + serde::Serialize>(value: &[u8]) -> Option<String> {
    let record: T = decode_record("record", value).ok()?;
    jsonb_text(&serde_json::to_value(&record).ok()?)
}

/// The readable columns of `value` in `table`, or `None` for a table
/// without readable columns.
pub(super) fn columns(table: Table, value: &[u8]) -> Option<Columns> {
    match table {
        Table::RunEvents => Some(match decode_event("run event", value) {
            Ok(e) => Columns::Event {
                run_id: Some(e.run_id.to_string()),
                seq: i64::try_from(e.seq).ok(),
                kind: Some(e.kind),
                ts_ms: Some(e.timestamp.as_millis() as f64),
                payload: jsonb_text(&e.payload),
                hash: Some(e.hash.as_bytes().to_vec()),
            },
            Err(_) => Columns::Event {
                run_id: None,
                seq: None,
                kind: None,
                ts_ms: None,
                payload: None,
                hash: None,
            },
        }),
        Table::Runs => Some(Columns::Record(record::<Run>(value))),
        Table::Sessions => Some(Columns::Record(record::<Session>(value))),
        Table::SessionLog => Some(Columns::Record(record::<LogEntry>(value))),
        Table::Releases => Some(Columns::Record(record::<ReleaseRecord>(value))),
        _ => None,
    }
}
