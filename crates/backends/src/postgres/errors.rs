//! PostgreSQL errors mapped into [`stowage_core::Error`], the source kept.

use stowage_core::{Error, ErrorKind};
use tokio_postgres::error::SqlState;

/// The kind a driver error maps to. Connection problems, timeouts, lock
/// and serialization failures are `Unavailable` (the transaction was
/// rolled back: nothing was applied), a full disk `StorageFull`, damaged
/// data `Corrupted`, bad values `InvalidInput`, a server that refuses
/// writes `Unsupported`, the rest `Internal`.
pub(super) fn kind_of(err: &tokio_postgres::Error) -> ErrorKind {
    let Some(code) = err.code() else {
        // No server error: I/O, a closed connection, a connect timeout, or
        // a value of an unexpected type.
        let text = err.to_string();
        // A TLS handshake that failed, or a server without TLS under
        // `sslmode=require`: nothing was sent.
        if err.is_closed()
            || text.contains("error connecting")
            || text.contains("timed out")
            || text.contains("TLS")
        {
            return ErrorKind::Unavailable;
        }
        if text.contains("error deserializing") {
            return ErrorKind::Corrupted;
        }
        return if std::error::Error::source(err)
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
        {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Internal
        };
    };
    kind_of_state(code)
}

/// The kind of a server error by its SQLSTATE.
pub(super) fn kind_of_state(code: &SqlState) -> ErrorKind {
    let class = &code.code()[..2];
    if *code == SqlState::DISK_FULL {
        return ErrorKind::StorageFull;
    }
    if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED {
        return ErrorKind::Corrupted;
    }
    // `25006 read_only_sql_transaction`: a hot standby, or
    // `default_transaction_read_only` for the role or database. Not a bug
    // of ours (`Internal`), and no retry on this server helps: as a
    // read-only medium is for SQLite and the file backend.
    if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        return ErrorKind::Unsupported;
    }
    match class {
        // connection exceptions, insufficient resources, operator
        // intervention (shutdown, statement timeout), lock not available,
        // serialization failure / deadlock, invalid authorization,
        // unknown database
        "08" | "53" | "57" | "55" | "40" | "28" | "3D" => ErrorKind::Unavailable,
        "22" => ErrorKind::InvalidInput,
        _ => ErrorKind::Internal,
    }
}

/// Whether `err` says the connection is gone (the outcome of a `COMMIT`
/// sent on it is unknown).
pub(super) fn is_connection_lost(err: &tokio_postgres::Error) -> bool {
    err.is_closed()
        || err.code().is_none()
        || err.code().is_some_and(|c| {
            &c.code()[..2] == "08"
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
        })
}

/// `err` as a stowage error of its mapped kind, saying what was being done.
/// A failed schema version check (see `schema::check_sql`) is
/// `Unsupported`.
pub(super) fn map(err: tokio_postgres::Error, doing: &str) -> Error {
    if let Some(version) = upgraded_to(&err) {
        return Error::unsupported(format!(
            "postgres: another process changed this store's schema to schema version {version} \
             while this one had it open; this build knows schema version {} only: restart it \
             with the stowage that upgraded the schema",
            super::schema::SCHEMA_VERSION
        ))
        .with_source(err);
    }
    let kind = kind_of(&err);
    map_as(err, kind, doing)
}

/// The version a failed schema version check found, if `err` is one.
fn upgraded_to(err: &tokio_postgres::Error) -> Option<&str> {
    let db = err.as_db_error()?;
    if *db.code() != SqlState::INVALID_TEXT_REPRESENTATION {
        return None;
    }
    let (_, rest) = db.message().split_once(super::schema::VERSION_MARK)?;
    Some(rest.trim_end_matches('"'))
}

/// What a write refused by a read-only server is told. The server answered
/// with an error (the connection is alive), so whether it was a statement
/// or the `COMMIT` it refused, the transaction was rolled back.
const READ_ONLY_SERVER: &str = " (the server refuses writes: the transaction is read-only — a hot \
                                standby, or default_transaction_read_only set for the role or \
                                the database; nothing was applied; writes work again against a \
                                server that accepts them)";

/// `err` as a stowage error of kind `kind`, the source kept.
pub(super) fn map_as(err: tokio_postgres::Error, kind: ErrorKind, doing: &str) -> Error {
    let detail = match err.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        // The driver's own text omits the cause (a TLS error, an I/O error).
        None => match std::error::Error::source(&err) {
            Some(cause) => format!("{err}: {cause}"),
            None => err.to_string(),
        },
    };
    let hint = match (kind, err.code()) {
        (ErrorKind::Unavailable, Some(c)) if *c == SqlState::QUERY_CANCELED => {
            " (statement_timeout_ms elapsed; nothing was applied)"
        }
        (ErrorKind::Unavailable, _) => " (nothing was applied)",
        (ErrorKind::StorageFull, _) => " (the server's disk is full; nothing was applied)",
        (ErrorKind::Unsupported, Some(c)) if *c == SqlState::READ_ONLY_SQL_TRANSACTION => {
            READ_ONLY_SERVER
        }
        _ => "",
    };
    Error::new(kind, format!("postgres: {doing} failed: {detail}{hint}")).with_source(err)
}

/// The extension trait that maps every driver result at its call site.
pub(super) trait PgResult<T> {
    /// Maps the error (see [`map`]).
    fn doing(self, doing: &str) -> stowage_core::Result<T>;
}

impl<T> PgResult<T> for Result<T, tokio_postgres::Error> {
    fn doing(self, doing: &str) -> stowage_core::Result<T> {
        self.map_err(|e| map(e, doing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_kinds() {
        assert_eq!(kind_of_state(&SqlState::DISK_FULL), ErrorKind::StorageFull);
        assert_eq!(
            kind_of_state(&SqlState::DATA_CORRUPTED),
            ErrorKind::Corrupted
        );
        assert_eq!(
            kind_of_state(&SqlState::CONNECTION_FAILURE),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind_of_state(&SqlState::QUERY_CANCELED),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind_of_state(&SqlState::T_R_DEADLOCK_DETECTED),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind_of_state(&SqlState::INVALID_CATALOG_NAME),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind_of_state(&SqlState::READ_ONLY_SQL_TRANSACTION),
            ErrorKind::Unsupported
        );
        assert_eq!(kind_of_state(&SqlState::SYNTAX_ERROR), ErrorKind::Internal);
    }
}
