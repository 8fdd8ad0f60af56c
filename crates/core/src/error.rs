//! The one public error type of stowage.

use std::error::Error as StdError;
use std::fmt;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller can act on.
///
/// Backends map every library error into one of these kinds at their
/// boundary; the original error is kept as the [`source`](StdError::source).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The entity (blob, run, release, session, supersession) does not exist.
    NotFound,
    /// The entity already exists and the call would create it again.
    AlreadyExists,
    /// A precondition failed: an expected version or seq, or a state transition.
    Conflict,
    /// The input broke a validation rule; nothing was changed.
    InvalidInput,
    /// Stored data failed an integrity check (checksum, digest, signature,
    /// hash chain, undecodable record).
    Corrupted,
    /// A transient failure before anything was applied; safe to retry.
    Unavailable,
    /// The request may or may not have been applied (for example, the
    /// connection was cut after the request was sent).
    OutcomeUnknown,
    /// The storage medium is full; nothing was applied.
    StorageFull,
    /// The backend or build does not support this operation or URL.
    Unsupported,
    /// A bug or an unexpected failure inside stowage or a backend library.
    Internal,
}

impl ErrorKind {
    /// Whether an error of this kind is safe to retry as is: only
    /// [`ErrorKind::Unavailable`] (see [`Error::is_retryable`]).
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable)
    }

    /// A short, stable, lower-case name (`"not_found"`, `"conflict"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Corrupted => "corrupted",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::OutcomeUnknown => "outcome_unknown",
            ErrorKind::StorageFull => "storage_full",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Internal => "internal",
        }
    }

    /// Every kind, in declaration order (useful for tests and fault injection).
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::Conflict,
        ErrorKind::InvalidInput,
        ErrorKind::Corrupted,
        ErrorKind::Unavailable,
        ErrorKind::OutcomeUnknown,
        ErrorKind::StorageFull,
        ErrorKind::Unsupported,
        ErrorKind::Internal,
    ];
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every stowage call: a [`ErrorKind`], a message naming the
/// entity and the rule, and optionally the underlying cause.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with a message that names the entity and the rule.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause (kept for [`StdError::source`]).
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::AlreadyExists`].
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, message)
    }

    /// Shorthand for [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for [`ErrorKind::Corrupted`].
    pub fn corrupted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupted, message)
    }

    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message (without the source chain).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True when the same call may simply be retried: only
    /// [`ErrorKind::Unavailable`], which promises that nothing was applied.
    ///
    /// [`ErrorKind::OutcomeUnknown`] is *not* retryable in general: retry it
    /// only when the call carries an idempotency key, which makes the retry
    /// exactly-once.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// Prefixes the message with more context ("while opening file:///x: …").
    #[must_use]
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Debug for Error {
    /// Reads like [`Display`](fmt::Display), one cause per line, as
    /// `anyhow` prints errors, so `fn main() -> Result<(), Error>` and
    /// `unwrap()` show something a person can act on:
    ///
    /// ```text
    /// opening file:///srv/store (unavailable)
    ///
    /// Caused by:
    ///     0: writing segment 3 (internal)
    ///     1: disk on fire
    /// ```
    ///
    /// `{:#?}` gives the field-by-field form instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            let mut d = f.debug_struct("Error");
            d.field("kind", &self.kind).field("message", &self.message);
            if let Some(source) = &self.source {
                d.field("source", source);
            }
            return d.finish();
        }
        write!(f, "{} ({})", self.message, self.kind)?;
        let mut cause = StdError::source(self);
        if cause.is_some() {
            f.write_str("\n\nCaused by:")?;
        }
        let mut depth = 0;
        while let Some(err) = cause {
            // A stowage error's Display repeats its own source: show only
            // its message here, the source comes on the next line.
            match err.downcast_ref::<Error>() {
                Some(e) => write!(f, "\n    {depth}: {} ({})", e.message, e.kind)?,
                None => write!(f, "\n    {depth}: {err}")?,
            }
            cause = err.source();
            depth += 1;
        }
        Ok(())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn StdError + 'static))
    }
}

impl From<std::io::Error> for Error {
    /// Maps an I/O error: out-of-space becomes [`ErrorKind::StorageFull`],
    /// interruptions and timeouts [`ErrorKind::Unavailable`], a missing file
    /// [`ErrorKind::NotFound`], bad data [`ErrorKind::Corrupted`], anything
    /// else [`ErrorKind::Internal`].
    fn from(err: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match err.kind() {
            Io::StorageFull | Io::QuotaExceeded => ErrorKind::StorageFull,
            Io::NotFound => ErrorKind::NotFound,
            Io::InvalidData | Io::UnexpectedEof => ErrorKind::Corrupted,
            Io::Interrupted | Io::TimedOut | Io::WouldBlock => ErrorKind::Unavailable,
            Io::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, format!("I/O error: {err}")).with_source(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_message_kind_and_source() {
        let io = std::io::Error::other("disk on fire");
        let err = Error::internal("writing segment 3").with_source(io);
        assert_eq!(
            err.to_string(),
            "writing segment 3 (internal): disk on fire"
        );
        assert!(err.source().is_some());
    }

    /// What `fn main() -> Result<(), Error>` prints: the kind, the
    /// message and every cause, one per line, as `anyhow` does.
    #[test]
    fn debug_reads_like_display_with_the_source_chain() {
        let inner =
            Error::internal("writing segment 3").with_source(std::io::Error::other("disk on fire"));
        let outer =
            Error::new(ErrorKind::Unavailable, "opening file:///srv/store").with_source(inner);
        assert_eq!(
            format!("{outer:?}"),
            "opening file:///srv/store (unavailable)\n\nCaused by:\n    0: writing segment 3 (internal)\n    1: disk on fire"
        );
        let plain = Error::invalid_input("bad");
        assert_eq!(format!("{plain:?}"), "bad (invalid_input)");
        assert_eq!(
            format!("{:?}", Err::<(), _>(plain)),
            "Err(bad (invalid_input))"
        );
        // `{:#?}` keeps the field-by-field form for debugging stowage itself.
        let alt = format!("{outer:#?}");
        assert!(
            alt.starts_with("Error {") && alt.contains("Unavailable"),
            "{alt}"
        );
    }

    #[test]
    fn only_unavailable_is_retryable() {
        for kind in ErrorKind::ALL {
            let retryable = Error::new(kind, "x").is_retryable();
            assert_eq!(retryable, kind == ErrorKind::Unavailable, "{kind}");
            assert_eq!(kind.is_retryable(), retryable, "{kind}");
        }
    }

    #[test]
    fn io_out_of_space_is_storage_full() {
        let err: Error = std::io::Error::from(std::io::ErrorKind::StorageFull).into();
        assert_eq!(err.kind(), ErrorKind::StorageFull);
    }
}
