//! `CasStore` over an interposed layer, in the shape described in [`super`].

use async_trait::async_trait;
use bytes::Bytes;

use crate::{BlobReader, BlobStat, BlobStream, CasStore, Digest, Result};

use super::opt_digest;
use crate::layer::{Entity, Interposed, Operation as Op, Reuse};

#[async_trait]
impl CasStore for Interposed {
    async fn put(&self, bytes: Bytes) -> Result<Digest> {
        let call = self.call(Op::CasPut, None, || format!("{} bytes", bytes.len()));
        let mut bytes = Reuse::new(bytes);
        self.run(call, move |last| {
            bytes.take(last).map(|b| self.inner.cas.put(b))
        })
        .await
    }

    async fn get(&self, digest: &Digest) -> Result<Bytes> {
        let call = self.call(Op::CasGet, Some(Entity::Blob(*digest)), || digest.short());
        self.run(call, move |_| Some(self.inner.cas.get(digest)))
            .await
    }

    async fn contains(&self, digest: &Digest) -> Result<bool> {
        let entity = Some(Entity::Blob(*digest));
        let call = self.call(Op::CasContains, entity, || digest.short());
        self.run(call, move |_| Some(self.inner.cas.contains(digest)))
            .await
    }

    async fn stat(&self, digest: &Digest) -> Result<BlobStat> {
        let call = self.call(Op::CasStat, Some(Entity::Blob(*digest)), || digest.short());
        self.run(call, move |_| Some(self.inner.cas.stat(digest)))
            .await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let call = self.call(Op::CasDelete, Some(Entity::Blob(*digest)), || {
            digest.short()
        });
        self.run(call, move |_| Some(self.inner.cas.delete(digest)))
            .await
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<Digest>> {
        let call = self.call(Op::CasList, None, || {
            format!("after {}, limit {limit}", opt_digest(after))
        });
        self.run(call, move |_| Some(self.inner.cas.list(after, limit)))
            .await
    }

    async fn verify(&self, digest: &Digest) -> Result<()> {
        let call = self.call(Op::CasVerify, Some(Entity::Blob(*digest)), || {
            digest.short()
        });
        self.run(call, move |_| Some(self.inner.cas.verify(digest)))
            .await
    }

    fn max_blob_size(&self) -> u64 {
        self.inner.cas.max_blob_size()
    }

    async fn put_stream(&self, reader: BlobReader) -> Result<Digest> {
        // Not repeatable (`Call::repeatable`): the reader is consumed once.
        let call = self.call(Op::CasPutStream, None, || "stream".to_owned());
        let mut reader = Some(reader);
        self.run(call, move |_| {
            reader.take().map(|r| self.inner.cas.put_stream(r))
        })
        .await
    }

    async fn get_stream(&self, digest: &Digest) -> Result<BlobStream> {
        let entity = Some(Entity::Blob(*digest));
        let call = self.call(Op::CasGetStream, entity, || digest.short());
        self.run(call, move |_| Some(self.inner.cas.get_stream(digest)))
            .await
    }
}
