//! CreateBucket, DeleteBucket, HeadBucket, ListBuckets, bucket tagging.

use std::collections::BTreeMap;

use cyvault_store::{StoreError, WriteOp};
use tracing::info;

use crate::error::{GwError, Result};
use crate::layout::{self, BUCKETS_OBJECT, BucketRecord, now_ms, random_id};
use crate::vault::{CAS_ATTEMPTS, Vault, cas_exhausted};

/// S3's bucket naming rules (the general-purpose bucket ones).
pub fn validate_bucket_name(name: &str) -> Result<()> {
    let bad = |why| Err(GwError::InvalidBucketName(name.to_string(), why));
    if name.len() < 3 || name.len() > 63 {
        return bad("a bucket name has 3 to 63 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-') {
        return bad("use lowercase letters, digits, dots and hyphens only");
    }
    let (first, last) = (name.as_bytes()[0], name.as_bytes()[name.len() - 1]);
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return bad("a bucket name begins and ends with a letter or digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return bad("dots may not be adjacent to dots or hyphens");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("a bucket name may not look like an IP address");
    }
    Ok(())
}

impl Vault {
    pub async fn create_bucket(&self, user: &str, name: &str) -> Result<BucketRecord> {
        self.create_bucket_at(user, name, None).await
    }

    /// CreateBucket with a LocationConstraint: with placement configured, the engine chooses the
    /// bucket's data pool from it (see `placement.rs`); without, the constraint is not checked.
    pub async fn create_bucket_at(&self, user: &str, name: &str, location: Option<&str>) -> Result<BucketRecord> {
        validate_bucket_name(name)?;
        let obj = self.obj(BUCKETS_OBJECT);
        let mut placed: Option<Option<String>> = None;
        for _ in 0..CAS_ATTEMPTS {
            let (version, vals) = self.read_for_update(&obj, &[name.to_string()]).await?;
            if let Some(raw) = vals.get(name) {
                let existing: BucketRecord = layout::decode("bucket record", raw)?;
                return Err(if existing.owner == user {
                    GwError::BucketAlreadyOwnedByYou(name.into())
                } else {
                    GwError::BucketAlreadyExists(name.into())
                });
            }
            // Placed once, after the name is known to be free (a taken name answers as S3 does,
            // whatever the constraint).
            let data_pool = match &placed {
                Some(p) => p.clone(),
                None => {
                    let p = self.choose_data_pool(name, location).await?;
                    placed = Some(p.clone());
                    p
                }
            };
            let rec = BucketRecord {
                name: name.into(),
                id: random_id(8),
                owner: user.into(),
                created_ms: now_ms(),
                shards: self.opts.index_shards,
                tags: None,
                data_pool,
            };
            let op = WriteOp::new().omap_set_one(name, layout::encode(&rec));
            if self.try_cas(&obj, version, op).await? {
                self.forget_bucket(name);
                info!(bucket = name, id = %rec.id, owner = user, "created bucket");
                return Ok(rec);
            }
        }
        Err(cas_exhausted("create bucket"))
    }

    /// The data pool for a new bucket (`None`: the gateway's own pool), registered in `cyv.meta`
    /// before any bucket uses it so the sweeper knows every pool to look in.
    async fn choose_data_pool(&self, bucket: &str, location: Option<&str>) -> Result<Option<String>> {
        let Some(placement) = &self.placement else { return Ok(None) };
        let pool = placement.place(bucket, location)?;
        if pool == self.opts.pool {
            return Ok(None);
        }
        // The marker proves the pool exists and is writable before any bucket depends on it.
        let marker = self.data_obj_in(&pool, layout::DATA_POOL_MARKER);
        let op = WriteOp::new().omap_set_one("format", bytes::Bytes::from(layout::LAYOUT_VERSION.to_string()));
        match self.store.execute(&marker, op).await {
            Ok(_) => {}
            Err(StoreError::NotFound(_)) => {
                return Err(GwError::PlacementRefused {
                    code: "VAULT-PL-010",
                    message: format!("placement chose pool {pool}, which does not exist in the storage cluster"),
                });
            }
            Err(e) => return Err(e.into()),
        }
        let key = format!("{}{pool}", layout::DATA_POOL_KEY_PREFIX);
        self.store
            .execute(&self.obj(layout::META_OBJECT), WriteOp::new().omap_set_one(key, bytes::Bytes::new()))
            .await?;
        Ok(Some(pool))
    }

    /// Every pool that holds or held bucket data: the gateway's own and the registered ones.
    pub async fn data_pools(&self) -> Result<Vec<String>> {
        let mut pools = vec![self.opts.pool.clone()];
        for (key, _) in self.omap_all(layout::META_OBJECT, Some(layout::DATA_POOL_KEY_PREFIX)).await? {
            if let Some(p) = key.strip_prefix(layout::DATA_POOL_KEY_PREFIX)
                && !pools.iter().any(|q| q == p)
            {
                pools.push(p.to_string());
            }
        }
        Ok(pools)
    }

    /// Every bucket record, in name order.
    pub async fn all_buckets(&self) -> Result<Vec<BucketRecord>> {
        let all = self.omap_all(BUCKETS_OBJECT, None).await?;
        all.iter().map(|(_, raw)| layout::decode::<BucketRecord>("bucket record", raw)).collect()
    }

    pub async fn list_buckets(&self, user: &str) -> Result<Vec<BucketRecord>> {
        Ok(self.all_buckets().await?.into_iter().filter(|b| b.owner == user).collect())
    }

    /// True when the bucket has no object. Pending index entries (a delete still settling) count
    /// only when their head exists, as in listings.
    async fn bucket_is_empty(&self, b: &BucketRecord) -> Result<bool> {
        let mut after = None;
        loop {
            let q = crate::index::ListQuery { start_after: after, max_keys: 1000, ..Default::default() };
            let page = self.list_index(b, &q).await?;
            if !page.entries.is_empty() {
                return Ok(false);
            }
            if !page.truncated {
                return Ok(true);
            }
            after = page.next_marker;
        }
    }

    pub async fn delete_bucket(&self, user: &str, name: &str) -> Result<()> {
        let b = self.bucket_for(user, name).await?;
        if !self.bucket_is_empty(&b).await? {
            return Err(GwError::BucketNotEmpty(name.into()));
        }
        // Unfinished multipart uploads go with the bucket.
        for up in self.all_uploads(&b).await? {
            self.abort_upload_records(&b, &up).await?;
        }
        let obj = self.obj(BUCKETS_OBJECT);
        for _ in 0..CAS_ATTEMPTS {
            let (version, vals) = self.read_for_update(&obj, &[name.to_string()]).await?;
            match vals.get(name).map(|raw| layout::decode::<BucketRecord>("bucket record", raw)).transpose()? {
                Some(cur) if cur.id == b.id => {}
                _ => {
                    self.forget_bucket(name);
                    return Err(GwError::NoSuchBucket(name.into()));
                }
            }
            if self.try_cas(&obj, version, WriteOp::new().omap_remove(vec![name.to_string()])).await? {
                self.forget_bucket(name);
                for shard in 0..b.shards {
                    self.remove_quietly(&layout::index_name(&b.id, shard)).await;
                }
                self.remove_quietly(&layout::uploads_name(&b.id)).await;
                info!(bucket = name, id = %b.id, "deleted bucket");
                return Ok(());
            }
        }
        Err(cas_exhausted("delete bucket"))
    }

    /// Removes an object, ignoring "not found"; other failures are logged (the sweeper retries).
    pub(crate) async fn remove_quietly(&self, name: &str) {
        self.remove_data_quietly(&self.opts.pool, name).await
    }

    /// Removes an object of a given pool, like [`Vault::remove_quietly`].
    pub(crate) async fn remove_data_quietly(&self, pool: &str, name: &str) {
        match self.store.remove(&self.data_obj_in(pool, name)).await {
            Ok(()) | Err(StoreError::NotFound(_)) => {}
            Err(e) => tracing::warn!(object = name, error = %e, "could not remove; the sweeper will retry"),
        }
    }

    pub async fn put_bucket_tagging(&self, user: &str, name: &str, tags: Vec<(String, String)>) -> Result<()> {
        crate::tagging::validate_tags(&tags, 50)?;
        self.update_bucket(user, name, |b| b.tags = Some(tags.clone())).await
    }

    pub async fn delete_bucket_tagging(&self, user: &str, name: &str) -> Result<()> {
        self.update_bucket(user, name, |b| b.tags = None).await
    }

    async fn update_bucket(&self, user: &str, name: &str, f: impl Fn(&mut BucketRecord)) -> Result<()> {
        let obj = self.obj(BUCKETS_OBJECT);
        for _ in 0..CAS_ATTEMPTS {
            let (version, vals) = self.read_for_update(&obj, &[name.to_string()]).await?;
            let Some(raw) = vals.get(name) else { return Err(GwError::NoSuchBucket(name.into())) };
            let mut b: BucketRecord = layout::decode("bucket record", raw)?;
            if b.owner != user {
                return Err(GwError::AccessDenied(format!("the bucket {name:?} is not yours")));
            }
            f(&mut b);
            let op = WriteOp::new().omap_set(BTreeMap::from([(name.to_string(), layout::encode(&b))]));
            if self.try_cas(&obj, version, op).await? {
                self.forget_bucket(name);
                return Ok(());
            }
        }
        Err(cas_exhausted("update bucket"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(name: &str, ok: bool) {
        assert_eq!(validate_bucket_name(name).is_ok(), ok, "{name}");
    }

    #[test]
    fn bucket_names() {
        check("abc", true);
        check("my.bucket-1", true);
        check("ab", false);
        check(&"a".repeat(64), false);
        check("Abc", false);
        check("-abc", false);
        check("abc-", false);
        check("a..b", false);
        check("a.-b", false);
        check("192.168.1.1", false);
        check("a_b", false);
    }
}
