//! DeleteObject and DeleteObjects: remove the head first (the object is gone), then the index
//! entry and the other stripes.

use cyvault_store::{Guard, StoreError, WriteOp};
use futures::StreamExt;
use futures::stream;

use crate::data;
use crate::error::{GwError, Result};
use crate::layout::{self, BucketRecord, IndexEntry, Layout, ObjectMeta};
use crate::vault::{CAS_ATTEMPTS, Vault, cas_exhausted};

/// Every data object of an object except its head.
pub(crate) fn data_names(bid: &str, key: &str, meta: &ObjectMeta) -> Vec<String> {
    match &meta.layout {
        Layout::Inline => vec![],
        Layout::Striped { count, .. } => (1..*count).map(|n| layout::tail_name(bid, &meta.tag, n)).collect(),
        Layout::Parts { upload, parts } => parts
            .iter()
            .flat_map(|p| {
                let stripes = p.size.div_ceil(p.stripe).max(1) as u32;
                (0..stripes).map(move |n| layout::part_stripe_name(bid, upload, &p.tag, n))
            })
            .collect(),
    }
    .into_iter()
    .filter(|n| n != &layout::head_name(bid, key))
    .collect()
}

/// One key's outcome in a DeleteObjects batch.
#[derive(Debug)]
pub struct DeleteResult {
    pub key: String,
    pub error: Option<GwError>,
}

impl Vault {
    pub async fn delete_object(&self, user: &str, bucket: &str, key: &str) -> Result<()> {
        let b = self.bucket_for(user, bucket).await?;
        self.delete_in(&b, key).await
    }

    pub(crate) async fn delete_in(&self, b: &BucketRecord, key: &str) -> Result<()> {
        crate::put_object::validate_key(key)?;
        let head = self.data_obj(b, layout::head_name(&b.id, key));
        for _ in 0..CAS_ATTEMPTS {
            let Some((meta, version)) = self.head_meta(b, key).await? else {
                // Deleting what is not there succeeds; drop a stale index entry on the way.
                self.index_remove(b, key).await?;
                return Ok(());
            };
            // Pending first: from now on listings ask the head, so a crash after the removal
            // never leaves the key listed.
            // (Its mtime is when it became pending: how the sweeper tells it may be in flight.)
            let pending = IndexEntry { mtime_ms: layout::now_ms(), ..IndexEntry::of(&meta).pending() };
            self.index_set(b, key, &pending).await?;
            match self.store.execute(&head, WriteOp::new().guard(Guard::Version(version)).remove()).await {
                Ok(_) => {
                    self.index_settle(b, key, &pending, None);
                    data::remove_all(self, self.data_pool(b), &data_names(&b.id, key, &meta)).await;
                    return Ok(());
                }
                // Overwritten or removed meanwhile: look again.
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => continue,
                Err(e) => {
                    self.index_settle(b, key, &pending, Some(&IndexEntry::of(&meta)));
                    return Err(e.into());
                }
            }
        }
        Err(cas_exhausted("delete object"))
    }

    pub async fn delete_objects(&self, user: &str, bucket: &str, keys: Vec<String>) -> Result<Vec<DeleteResult>> {
        let b = self.bucket_for(user, bucket).await?;
        if keys.len() > 1000 {
            return Err(GwError::InvalidRequest("DeleteObjects takes at most 1000 keys".into()));
        }
        let b = &b;
        Ok(stream::iter(keys)
            .map(|key| async move {
                let error = self.delete_in(b, &key).await.err();
                DeleteResult { key, error }
            })
            .buffered(8)
            .collect()
            .await)
    }
}
