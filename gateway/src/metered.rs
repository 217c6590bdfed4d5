//! An [`ObjectStore`] wrapper that times every backend op into the metrics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use cyvault_store::{
    BackendKind, DynStore, ObjectPage, ObjectRef, ObjectStat, ObjectStore, OmapPage, OmapQuery, ReadRange, ReadReply,
    Result, WriteOp,
};

use crate::metrics::Metrics;

#[derive(Debug)]
pub struct MeteredStore {
    inner: DynStore,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub fn new(inner: DynStore, metrics: Arc<Metrics>) -> MeteredStore {
        MeteredStore { inner, metrics }
    }

    async fn timed<T>(&self, op: &'static str, f: impl Future<Output = Result<T>>) -> Result<T> {
        let start = Instant::now();
        let r = f.await;
        let ok = r.is_ok() || matches!(r, Err(cyvault_store::StoreError::NotFound(_)));
        self.metrics.observe_store(op, start.elapsed(), ok);
        r
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    async fn read(&self, obj: &ObjectRef, range: ReadRange) -> Result<ReadReply> {
        self.timed("read", self.inner.read(obj, range)).await
    }
    async fn read_with_xattrs(
        &self,
        obj: &ObjectRef,
        range: ReadRange,
    ) -> Result<(ReadReply, BTreeMap<String, Bytes>)> {
        self.timed("read", self.inner.read_with_xattrs(obj, range)).await
    }
    async fn stat(&self, obj: &ObjectRef) -> Result<ObjectStat> {
        self.timed("stat", self.inner.stat(obj)).await
    }
    async fn xattr_get(&self, obj: &ObjectRef, name: &str) -> Result<Bytes> {
        self.timed("xattr_get", self.inner.xattr_get(obj, name)).await
    }
    async fn xattr_list(&self, obj: &ObjectRef) -> Result<BTreeMap<String, Bytes>> {
        self.timed("xattr_list", self.inner.xattr_list(obj)).await
    }
    async fn omap_get(&self, obj: &ObjectRef, keys: &[String]) -> Result<BTreeMap<String, Bytes>> {
        self.timed("omap_get", self.inner.omap_get(obj, keys)).await
    }
    async fn omap_list(&self, obj: &ObjectRef, query: &OmapQuery) -> Result<OmapPage> {
        self.timed("omap_list", self.inner.omap_list(obj, query)).await
    }
    async fn list_objects(&self, pool: &str, namespace: &str, start: Option<&str>, max: usize) -> Result<ObjectPage> {
        self.timed("list_objects", self.inner.list_objects(pool, namespace, start, max)).await
    }
    async fn execute(&self, obj: &ObjectRef, op: WriteOp) -> Result<u64> {
        self.timed("write", self.inner.execute(obj, op)).await
    }
}
