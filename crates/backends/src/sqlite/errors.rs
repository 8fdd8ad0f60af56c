//! SQLite errors mapped into [`stowage_core::Error`], the source kept.

use rusqlite::ffi::ErrorCode;
use stowage_core::{Error, ErrorKind};

/// The kind a SQLite error maps to: damaged or foreign files are
/// `Corrupted`, a full disk `StorageFull`, lock waits that timed out
/// `Unavailable` (nothing was applied), a database that cannot be written
/// (`SQLITE_READONLY`, `SQLITE_PERM`) `Unsupported` (no retry helps), bad
/// values `Corrupted` (they came from the file), and the rest `Internal`.
/// `SQLITE_CANTOPEN` stays `Unavailable` here (it may be passing: too many
/// open files); at open, [`conn`](super::conn) asks the OS and makes the
/// permanent causes `Unsupported`.
pub(super) fn kind_of(err: &rusqlite::Error) -> ErrorKind {
    match err {
        rusqlite::Error::SqliteFailure(e, _) => match e.code {
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => ErrorKind::Corrupted,
            ErrorCode::DiskFull => ErrorKind::StorageFull,
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => ErrorKind::Unavailable,
            ErrorCode::PermissionDenied | ErrorCode::ReadOnly => ErrorKind::Unsupported,
            ErrorCode::CannotOpen => ErrorKind::Unavailable,
            ErrorCode::TooBig => ErrorKind::InvalidInput,
            ErrorCode::SystemIoFailure | ErrorCode::FileLockingProtocolFailed => {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Internal,
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..) => ErrorKind::Corrupted,
        _ => ErrorKind::Internal,
    }
}

/// Whether `err` is an I/O error: during `COMMIT` the writes may or may
/// not have reached the file.
pub(super) fn is_io(err: &rusqlite::Error) -> bool {
    matches!(err.sqlite_error_code(), Some(ErrorCode::SystemIoFailure))
}

/// Whether `err` is a write the OS refused (`SQLITE_IOERR_WRITE`): the
/// bytes did not reach the file.
pub(super) fn is_refused_write(err: &rusqlite::Error) -> bool {
    err.sqlite_error()
        .is_some_and(|e| e.extended_code == rusqlite::ffi::SQLITE_IOERR_WRITE)
}

/// `err` as a stowage error of its mapped kind, saying what was being done.
pub(super) fn map(err: rusqlite::Error, doing: &str) -> Error {
    let kind = kind_of(&err);
    let hint = match kind {
        ErrorKind::Corrupted => " (the file is damaged or is not a stowage SQLite database)",
        ErrorKind::Unavailable if is_busy(&err) => {
            " (another connection held the database lock past busy_timeout_ms; nothing was applied)"
        }
        ErrorKind::StorageFull => " (the disk is full; nothing was applied)",
        ErrorKind::Unsupported => {
            " (the database is read-only: its file system is read-only or the file or its \
             directory is not writable; nothing was applied)"
        }
        _ => "",
    };
    Error::new(kind, format!("sqlite: {doing} failed: {err}{hint}")).with_source(err)
}

/// `err` as a stowage error of kind `kind` (for a `COMMIT` whose outcome is
/// unknown), the source kept.
pub(super) fn map_as(err: rusqlite::Error, kind: ErrorKind, doing: &str) -> Error {
    Error::new(kind, format!("sqlite: {doing} failed: {err}")).with_source(err)
}

fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// The extension trait that maps every `rusqlite::Result` at its call site.
pub(super) trait SqlResult<T> {
    /// Maps the error (see [`map`]).
    fn doing(self, doing: &str) -> stowage_core::Result<T>;
}

impl<T> SqlResult<T> for rusqlite::Result<T> {
    fn doing(self, doing: &str) -> stowage_core::Result<T> {
        self.map_err(|e| map(e, doing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn codes_map_to_kinds() {
        use rusqlite::ffi;
        assert_eq!(kind_of(&failure(ffi::SQLITE_CORRUPT)), ErrorKind::Corrupted);
        assert_eq!(kind_of(&failure(ffi::SQLITE_NOTADB)), ErrorKind::Corrupted);
        assert_eq!(kind_of(&failure(ffi::SQLITE_FULL)), ErrorKind::StorageFull);
        assert_eq!(kind_of(&failure(ffi::SQLITE_BUSY)), ErrorKind::Unavailable);
        assert_eq!(
            kind_of(&failure(ffi::SQLITE_LOCKED)),
            ErrorKind::Unavailable
        );
        // A database that cannot be written stays so: not retryable.
        for code in [
            ffi::SQLITE_READONLY,
            ffi::SQLITE_READONLY_DBMOVED,
            ffi::SQLITE_PERM,
        ] {
            assert_eq!(kind_of(&failure(code)), ErrorKind::Unsupported, "{code}");
        }
        let e = map(failure(ffi::SQLITE_READONLY), "COMMIT");
        assert!(
            !e.is_retryable() && e.message().contains("read-only"),
            "{e}"
        );
        assert!(is_io(&failure(ffi::SQLITE_IOERR_FSYNC)));
        let e = map(failure(ffi::SQLITE_BUSY), "BEGIN IMMEDIATE");
        assert!(e.message().contains("busy_timeout_ms"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }

    /// Only a write the OS refused says its bytes never reached the file;
    /// a failed fsync does not (`writer::commit_io_failure`).
    #[test]
    fn a_refused_write_is_told_from_a_failed_fsync() {
        use rusqlite::ffi;
        assert!(is_refused_write(&failure(ffi::SQLITE_IOERR_WRITE)));
        for code in [ffi::SQLITE_IOERR_FSYNC, ffi::SQLITE_IOERR, ffi::SQLITE_FULL] {
            assert!(!is_refused_write(&failure(code)), "{code}");
        }
    }
}
