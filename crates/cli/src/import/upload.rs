//! One blob of an import, streamed into the target's `put_stream`.
//!
//! The chunks go through an in-memory pipe to a task running
//! [`CasStore::put_stream`]. The end of that pipe is **not** the end of
//! the blob: a store takes whatever it read before end of input as the
//! whole blob and stores it under the digest of those bytes. An export
//! truncated inside a blob, a damaged chunk, or an importer dropped
//! mid-blob (an error, the process exiting) closes the pipe early, and
//! must store nothing. So the store's reader reports an early end of
//! input as an error, which makes `put_stream` fail and store nothing;
//! only [`Upload::complete`], called once every byte arrived, lets the
//! reader end normally.
//!
//! Nor are bytes that hash to another digest than the file claims: the
//! chunks are hashed as they pass, and [`Upload::complete`] ends the
//! blob only when they match, else drops the upload as an early end does.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use stowage_core::{CasStore, Digest, DigestWriter, Error, Result};
use tokio::io::{AsyncRead, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::task::JoinHandle;

/// Bytes buffered between the importer and the store.
const PIPE_BYTES: usize = 256 * 1024;

/// A blob being stored (see the module docs).
pub(super) struct Upload {
    writer: DuplexStream,
    /// What the bytes written so far hash to.
    hasher: DigestWriter,
    complete: Arc<AtomicBool>,
    task: JoinHandle<Result<Digest>>,
}

impl Upload {
    /// Starts storing a blob in `cas`; feed it with [`Upload::write`].
    pub(super) fn start(cas: &Arc<dyn CasStore>) -> Upload {
        let (writer, reader) = tokio::io::duplex(PIPE_BYTES);
        let complete = Arc::new(AtomicBool::new(false));
        let reader = Guarded {
            inner: reader,
            complete: Arc::clone(&complete),
        };
        let cas = Arc::clone(cas);
        let task = tokio::spawn(async move { cas.put_stream(Box::pin(reader)).await });
        Upload {
            writer,
            hasher: DigestWriter::new(),
            complete,
            task,
        }
    }

    /// Passes the next bytes to the store.
    ///
    /// # Errors
    /// The store's error when it stopped reading (the blob is not stored).
    pub(super) async fn write(mut self, data: &[u8]) -> Result<Upload> {
        self.hasher.update(data);
        match self.writer.write_all(data).await {
            Ok(()) => Ok(self),
            // The store stopped reading: its own error says why.
            Err(e) => Err(join(self.task)
                .await
                .err()
                .unwrap_or_else(|| Error::from(e))),
        }
    }

    /// Ends the blob (every byte was written) if its bytes hash to
    /// `digest`, and waits for the store.
    ///
    /// # Errors
    /// `InvalidInput` when the bytes hash to another digest: the upload
    /// is dropped and nothing is stored. Else as `put_stream`.
    pub(super) async fn complete(self, digest: &Digest) -> Result<()> {
        let Upload {
            mut writer,
            hasher,
            complete,
            task,
        } = self;
        let hashed = hasher.finish();
        if hashed != *digest {
            // Closed before `complete` is set: the store's reader fails
            // and `put_stream` stores nothing. Wait for it to give up.
            drop(writer);
            let _ = join(task).await;
            return Err(super::damaged(&format!(
                "blob {}: its bytes hash to {}",
                digest.short(),
                hashed.short()
            )));
        }
        complete.store(true, Ordering::Release);
        let closed = writer.shutdown().await;
        drop(writer);
        let stored = join(task).await;
        closed.map_err(Error::from)?;
        match stored? {
            stored if stored == *digest => Ok(()),
            stored => Err(Error::internal(format!(
                "blob {}: the store filed its bytes under {}",
                digest.short(),
                stored.short()
            ))),
        }
    }
}

async fn join(task: JoinHandle<Result<Digest>>) -> Result<Digest> {
    task.await
        .map_err(|e| Error::internal(format!("storing a blob: the task failed: {e}")))?
}

/// The store's side of the pipe: end of input before [`Upload::complete`]
/// is an `UnexpectedEof` error, never the end of the blob.
struct Guarded {
    inner: DuplexStream,
    complete: Arc<AtomicBool>,
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if wanted && buf.filled().len() == before && !self.complete.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the import stopped inside the blob (a truncated or damaged export)",
            )));
        }
        Poll::Ready(Ok(()))
    }
}
