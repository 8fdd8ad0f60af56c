//! What a handle kept past `Stores::close` answers, for the close tests of
//! every backend.
// Each test binary that includes it uses it only with its backends built.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use stowage_core::{ErrorKind, RunMetadata, Stores};

/// A bound on every call after close: a hang fails the test.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// Every kind of call through `kept` (a clone taken before close) fails
/// with `Conflict` saying the store was closed, within [`PATIENCE`].
pub(crate) async fn refused_after_close(kept: &Stores, digest: stowage_core::Digest) {
    let calls = async {
        let errs = [
            kept.cas.get(&digest).await.map(|_| ()).unwrap_err(),
            kept.cas
                .put(Bytes::from_static(b"more"))
                .await
                .map(|_| ())
                .unwrap_err(),
            kept.runs
                .create_run(digest, RunMetadata::new("agent"))
                .await
                .map(|_| ())
                .unwrap_err(),
            kept.releases.current("rel").await.map(|_| ()).unwrap_err(),
            kept.sessions
                .load_session("s")
                .await
                .map(|_| ())
                .unwrap_err(),
        ];
        for err in errs {
            assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
            assert!(err.message().contains("closed"), "{err}");
        }
    };
    tokio::time::timeout(PATIENCE, calls)
        .await
        .expect("calls after close return at once");
}
