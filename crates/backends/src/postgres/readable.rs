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
//! an index entry) leaves the columns `NULL`, and so does every value in
//! a database whose encoding is not UTF-8 (its `text` cannot hold every
//! character an event kind may have); JSON that `jsonb` refuses
//! (a `\u0000` in a string) leaves `payload` / `record` `NULL`.

use stowage_core::encoding::{decode_event, decode_record};
use stowage_core::engine::Table;
use stowage_core::{LogEntry, ReleaseRecord, Run, Session};

use super::literal::{bytea, text};

/// The extra columns of `table` (for `CREATE TABLE`), if it has any.
pub(super) fn ddl(table: Table) -> Option<&'static str> {
    match table {
        Table::RunEvents => {
            Some(", run_id uuid, seq bigint, kind text, ts timestamptz, payload jsonb, hash bytea")
        }
        Table::Runs | Table::Sessions | Table::SessionLog | Table::Releases => {
            Some(", record jsonb")
        }
        _ => None,
    }
}

/// `PREPARE stowage_put_TABLE (…) AS INSERT …`: the upsert of one row with
/// its readable columns (run once per connection, see `sql::prepare_all`).
pub(super) fn put_prepare(table: Table) -> String {
    let t = table.name();
    let (types, columns, values) = match table {
        Table::RunEvents => (
            ", uuid, bigint, text, float8, jsonb, bytea",
            ", run_id, seq, kind, ts, payload, hash",
            ", $3, $4, $5, to_timestamp($6 / 1000.0), $7, $8",
        ),
        Table::Runs | Table::Sessions | Table::SessionLog | Table::Releases => {
            (", jsonb", ", record", ", $3")
        }
        _ => ("", "", ""),
    };
    let mut updates = String::from("value = EXCLUDED.value");
    for name in columns.split(", ").filter(|n| !n.is_empty()) {
        updates.push_str(&format!(", {name} = EXCLUDED.{name}"));
    }
    format!(
        "PREPARE stowage_put_{t} (bytea, bytea{types}) AS INSERT INTO {t} (key, value{columns}) \
         VALUES ($1, $2{values}) ON CONFLICT (key) DO UPDATE SET {updates}"
    )
}

/// The latest time `ts` shows: PostgreSQL's `timestamptz` ends in the year
/// 294276, while an event's timestamp may be any `u64` of milliseconds.
const LAST_SHOWN_MS: u64 = 9_000_000_000_000_000;

/// `ms` for the `ts` column, or `NULL` past [`LAST_SHOWN_MS`] (the event's
/// own bytes keep the exact value).
fn ts_millis(ms: u64) -> String {
    if ms <= LAST_SHOWN_MS {
        ms.to_string()
    } else {
        "NULL".to_owned()
    }
}

/// The readable columns of `value` in `table` as SQL literals, in the
/// order of [`put_prepare`]'s parameters (`NULL` where the value does not
/// decode), each starting with `, `; empty for a table without readable
/// columns.
pub(super) fn columns(table: Table, value: &[u8]) -> String {
    match table {
        Table::RunEvents => match decode_event("run event", value) {
            Ok(e) => format!(
                ", '{}'::uuid, {}, {}, {}, {}::jsonb, {}",
                e.run_id,
                i64::try_from(e.seq).map_or("NULL".to_owned(), |s| s.to_string()),
                text(&e.kind),
                ts_millis(e.timestamp.as_millis()),
                jsonb_text(&e.payload).map_or("NULL".to_owned(), |j| text(&j)),
                bytea(e.hash.as_bytes()),
            ),
            Err(_) => ", NULL, NULL, NULL, NULL, NULL, NULL".to_owned(),
        },
        Table::Runs => record_literal(record::<Run>(value)),
        Table::Sessions => record_literal(record::<Session>(value)),
        Table::SessionLog => record_literal(record::<LogEntry>(value)),
        Table::Releases => record_literal(record::<ReleaseRecord>(value)),
        _ => String::new(),
    }
}

/// The readable columns of `table`, all `NULL` (`readable_columns=false`).
pub(super) fn nulls(table: Table) -> &'static str {
    match table {
        Table::RunEvents => ", NULL, NULL, NULL, NULL, NULL, NULL",
        Table::Runs | Table::Sessions | Table::SessionLog | Table::Releases => ", NULL",
        _ => "",
    }
}

/// `, '…'::jsonb` or `, NULL`.
fn record_literal(json: Option<String>) -> String {
    match json {
        Some(j) => format!(", {}::jsonb", text(&j)),
        None => ", NULL".to_owned(),
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
