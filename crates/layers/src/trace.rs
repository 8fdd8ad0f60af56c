//! [`TracingLayer`]: one `tracing` span per store call.

use std::sync::Arc;

use async_trait::async_trait;
use stowage_core::layer::{interpose, Call, Interceptor, Layer, Operation, Proceed};
use stowage_core::{Error, Stores};
use tracing::field::Empty;
use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
use tracing::{Instrument, Level, Span};

/// The `tracing` target of every span: filter with `stowage=debug`.
pub const TARGET: &str = "stowage";

/// Opens one span per store call, at `DEBUG` level under the target
/// [`TARGET`] (`"stowage"`), named after the operation
/// (`"runs.append_event"`), and enters it while the wrapped store runs —
/// so spans and events of the layers and backend below nest inside it.
///
/// Fields, named after OpenTelemetry's database conventions where one
/// fits (so `tracing-opentelemetry` exports them as is):
///
/// | field | value | when |
/// |---|---|---|
/// | `db.system.name` | the backend (`"memory"`, `"file"`, `"redis"`, …) | at the start |
/// | `db.collection.name` | the store (`"runs"`, `"cas"`, …) | at the start |
/// | `db.operation.name` | the operation (`"runs.append_event"`) | at the start |
/// | `stowage.entity.kind` / `stowage.entity.id` | `"run"` and the run id, `"blob"` and the digest, … | at the start, when the call names one |
/// | `stowage.idempotency_key` | whether the call carries one | at the start |
/// | `stowage.seq` | the seq of the reply (event, log entry, release record), else the one the arguments name | at the end, when there is one |
/// | `stowage.outcome` | `"ok"` or `"error"` | at the end |
/// | `error.type` | the [`ErrorKind`](stowage_core::ErrorKind) (`"conflict"`) | at the end, on error |
/// | `otel.status_code` | `"ERROR"` | at the end, on error |
///
/// No payload, data or argument text is ever recorded: a span says which
/// entity was touched and how it went, not what was written. A call cancelled
/// before it finished (its future dropped, as by a timeout above this
/// layer) closes its span without an outcome.
///
/// While no subscriber could enable a `DEBUG` span (none installed, or
/// every one filtering above `DEBUG`), calls bypass the layer after one
/// level check ([`Interceptor::skips`]); overhead measured in
/// `docs/BENCHMARKS.md`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingLayer;

impl TracingLayer {
    /// The layer; see [`TracingLayer`].
    pub fn new() -> Self {
        TracingLayer
    }
}

impl Layer for TracingLayer {
    fn layer(&self, stores: Stores) -> Stores {
        interpose(stores, Arc::new(TracingInterceptor))
    }
}

struct TracingInterceptor;

#[async_trait]
impl Interceptor for TracingInterceptor {
    async fn around(&self, call: &Call, mut proceed: Proceed<'_>) -> Option<Error> {
        let span = span_for(call);
        if span.is_disabled() {
            let _outcome = proceed.run().await;
            return None;
        }
        if let Some(entity) = &call.entity {
            span.record("stowage.entity.kind", entity.kind());
            span.record("stowage.entity.id", tracing::field::display(entity));
        }
        let outcome = proceed.run().instrument(span.clone()).await;
        if let Some(seq) = proceed.seq().or(call.seq) {
            span.record("stowage.seq", seq);
        }
        match outcome {
            Ok(()) => {
                span.record("stowage.outcome", "ok");
            }
            Err(kind) => {
                span.record("stowage.outcome", "error");
                span.record("error.type", kind.as_str());
                span.record("otel.status_code", "ERROR");
            }
        }
        None
    }

    fn wants_args(&self) -> bool {
        false
    }

    /// While no subscriber could enable a `DEBUG` span (none installed, or
    /// all filtering below `DEBUG`), calls bypass the layer.
    fn skips(&self, _call: &Call) -> bool {
        Level::DEBUG > STATIC_MAX_LEVEL || Level::DEBUG > LevelFilter::current()
    }
}

/// One callsite per operation, so that each span is named after its
/// operation; an operation added later gets the generic name `stowage.call`
/// (its `db.operation.name` still says which it is).
macro_rules! spans {
    ($call:expr; $($variant:ident),* $(,)?) => {{
        let call: &Call = $call;
        match call.op {
            $(Operation::$variant => spans!(@span call, {
                const NAME: &str = Operation::$variant.as_str();
                NAME
            }),)*
            _ => spans!(@span call, "stowage.call"),
        }
    }};
    (@span $call:ident, $name:expr) => {
        tracing::debug_span!(
            target: "stowage",
            $name,
            db.system.name = $call.backend,
            db.collection.name = $call.op.store().as_str(),
            db.operation.name = $call.op.as_str(),
            stowage.entity.kind = Empty,
            stowage.entity.id = Empty,
            stowage.idempotency_key = $call.idempotency_key,
            stowage.seq = Empty,
            stowage.outcome = Empty,
            error.type = Empty,
            otel.status_code = Empty,
        )
    };
}

fn span_for(call: &Call) -> Span {
    spans!(call;
        CasPut, CasGet, CasContains, CasStat, CasDelete, CasList, CasVerify, CasPutStream,
        CasGetStream,
        RunsCreateRun, RunsAppendEvent, RunsCompleteRun, RunsFailRun, RunsCancelRun,
        RunsFinishRun, RunsGetRun, RunsReadEvents, RunsListRuns, RunsVerifyRun,
        ReleasesPromote, ReleasesRollback, ReleasesRollbackTo, ReleasesCurrent, ReleasesHistory,
        ReleasesListNames,
        SessionsCreateSession, SessionsLoadSession, SessionsSaveSession,
        SessionsSetSessionState, SessionsListSessions, SessionsDeleteSession, SessionsAppendLog,
        SessionsReadLog, SessionsReplaceLog, SessionsVerifyLog,
        SupersessionsPut, SupersessionsGet, SupersessionsIsSuperseded, SupersessionsByAgent,
        SupersessionsList, SupersessionsResolve,
        LifecycleDeleteRun, LifecyclePruneRuns, LifecycleExpireSessions, LifecyclePruneSessions,
        LifecyclePinBlob, LifecycleUnpinBlob, LifecycleBlobReferrers, LifecycleGcBlobs,
        LifecycleForkSession, LifecycleForkRelease, LifecycleStats, LifecycleCompact,
    )
}
