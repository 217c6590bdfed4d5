//! The sweeper: finds what crashed or raced writes left behind and removes or repairs it.
//!
//! - tail stripes whose head no longer names them (overwritten, deleted, or never committed);
//! - part stripes of uploads that are gone and not used by any object;
//! - multipart uploads initiated longer ago than the upload grace period (aborted);
//! - index entries whose head is gone or differs (fixed), and heads with no index entry (added);
//! - everything of a bucket that no longer exists.
//!
//! Only things older than the grace period are touched, so uploads in flight are safe.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use cyvault_store::StoreError;
use serde::Serialize;
use tracing::{debug, info};

use crate::error::Result;
use crate::layout::{self, BucketRecord, Layout, OWNER_XATTR, ObjectMeta, OwnerTag};
use crate::vault::Vault;

/// What a sweep must not touch.
struct Live<'a> {
    cutoff: u64,
    aborted_parts: &'a HashSet<(String, String)>,
    live_uploads: &'a HashSet<String>,
    live_parts: &'a HashSet<(String, String)>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    pub objects_scanned: u64,
    pub orphan_objects_removed: u64,
    pub orphan_bytes: u64,
    pub uploads_aborted: u64,
    pub index_entries_fixed: u64,
    pub dry_run: bool,
}

impl Vault {
    /// One sweep. `grace` protects young stripes and objects; multipart uploads are aborted
    /// only when initiated more than `upload_grace` ago (an upload may legitimately run for hours).
    pub async fn gc(&self, grace: Duration, upload_grace: Duration, dry_run: bool) -> Result<GcReport> {
        let mut rep = GcReport { dry_run, ..GcReport::default() };
        let cutoff = layout::now_ms().saturating_sub(grace.as_millis() as u64);
        let upload_cutoff = layout::now_ms().saturating_sub(upload_grace.as_millis() as u64);
        let buckets: HashMap<String, BucketRecord> =
            self.all_buckets().await?.into_iter().map(|b| (b.id.clone(), b)).collect();

        // 1. Old uploads are aborted; live uploads' part tags are remembered.
        let mut live_parts: HashSet<(String, String)> = HashSet::new();
        let mut live_uploads: HashSet<String> = HashSet::new();
        // Recorded parts of uploads this sweep aborts: they go with the abort, not as orphans
        // (stripes of a part that was never recorded are orphans either way).
        let mut aborted_parts: HashSet<(String, String)> = HashSet::new();
        for b in buckets.values() {
            for up in self.all_uploads(b).await? {
                let mut tags = Vec::new();
                for (_, raw) in self.omap_all(&layout::parts_name(&b.id, &up.upload), None).await? {
                    let p: layout::PartRecord = layout::decode("part record", &raw)?;
                    tags.push((up.upload.clone(), p.tag));
                }
                if up.initiated_ms < upload_cutoff {
                    rep.uploads_aborted += 1;
                    aborted_parts.extend(tags);
                    if !dry_run {
                        self.abort_upload_records(b, &up).await?;
                    }
                    continue;
                }
                live_uploads.insert(up.upload.clone());
                live_parts.extend(tags);
            }
        }

        // 2. Every object in the namespace of every pool that holds bucket data.
        let mut heads: Vec<(String, String)> = Vec::new();
        let mut head_cache: HashMap<(String, String), Option<ObjectMeta>> = HashMap::new();
        for pool in self.data_pools().await? {
            let pool = pool.as_str();
            let mut token: Option<String> = None;
            let mut names = Vec::new();
            loop {
                let page = self.store.list_objects(pool, &self.opts.namespace, token.as_deref(), 1000).await?;
                names.extend(page.names);
                token = page.next;
                if token.is_none() {
                    break;
                }
            }
            let live =
                Live { cutoff, aborted_parts: &aborted_parts, live_uploads: &live_uploads, live_parts: &live_parts };
            for name in names {
                rep.objects_scanned += 1;
                self.sweep_one(pool, &name, &buckets, &live, &mut heads, &mut head_cache, dry_run, &mut rep).await?;
            }
        }

        // 3. The index agrees with the heads (always safe to repair, so no grace period).
        let mut named: HashSet<(String, String)> = HashSet::new();
        for (bid, key) in heads {
            named.insert((bid, key));
        }
        for b in buckets.values() {
            for shard in 0..b.shards {
                for (key, _) in self.omap_all(&layout::index_name(&b.id, shard), None).await? {
                    named.insert((b.id.clone(), key));
                }
            }
        }
        for (bid, key) in named {
            let Some(b) = buckets.get(&bid) else { continue };
            if self.repair_index(b, &key, !dry_run).await? {
                debug!(bucket = %b.name, key, dry_run, "index entry repaired from the head");
                rep.index_entries_fixed += 1;
            }
        }
        info!(
            scanned = rep.objects_scanned,
            removed = rep.orphan_objects_removed,
            bytes = rep.orphan_bytes,
            uploads_aborted = rep.uploads_aborted,
            index_fixed = rep.index_entries_fixed,
            dry_run,
            "sweep done"
        );
        Ok(rep)
    }

    /// Judges one object of `pool`: heads are collected for the index check; stripes, parts
    /// and records nobody uses any more are reclaimed.
    #[allow(clippy::too_many_arguments)]
    async fn sweep_one(
        &self,
        pool: &str,
        name: &str,
        buckets: &HashMap<String, BucketRecord>,
        live: &Live<'_>,
        heads: &mut Vec<(String, String)>,
        head_cache: &mut HashMap<(String, String), Option<ObjectMeta>>,
        dry_run: bool,
        rep: &mut GcReport,
    ) -> Result<()> {
        let cutoff = live.cutoff;
        // Data of a bucket belongs in the bucket's data pool; a copy anywhere else is garbage.
        let owned = |bid: &str| buckets.get(bid).filter(|b| self.data_pool(b) == pool);
        if let Some(rest) = name.strip_prefix(layout::HEAD_PREFIX) {
            let Some((bid, key)) = rest.split_once('.') else { return Ok(()) };
            if owned(bid).is_some() {
                heads.push((bid.to_string(), key.to_string()));
            } else {
                self.reclaim(pool, name, None, cutoff, dry_run, rep).await?;
            }
        } else if name.starts_with(layout::TAIL_PREFIX) || name.starts_with(layout::PART_PREFIX) {
            let owner = match self.store.xattr_get(&self.data_obj_in(pool, name), OWNER_XATTR).await {
                Ok(raw) => layout::decode::<OwnerTag>("owner tag", &raw).ok(),
                Err(StoreError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let Some(owner) = owner else {
                return self.reclaim(pool, name, None, cutoff, dry_run, rep).await;
            };
            if owner.created_ms >= cutoff {
                return Ok(());
            }
            let Some(b) = owned(&owner.bucket) else {
                return self.reclaim(pool, name, Some(owner.created_ms), cutoff, dry_run, rep).await;
            };
            if let Some(up) = &owner.upload {
                let part = (up.clone(), owner.tag.clone());
                if live.aborted_parts.contains(&part)
                    || (live.live_uploads.contains(up) && live.live_parts.contains(&part))
                {
                    return Ok(());
                }
            }
            let ck = (b.id.clone(), owner.key.clone());
            if !head_cache.contains_key(&ck) {
                let m = self.head_meta(b, &owner.key).await?.map(|(m, _)| m);
                head_cache.insert(ck.clone(), m);
            }
            let used = match head_cache.get(&ck).and_then(|m| m.as_ref()) {
                Some(m) => match (&m.layout, &owner.upload) {
                    (Layout::Striped { .. }, None) => m.tag == owner.tag,
                    (Layout::Parts { upload, parts }, Some(up)) => {
                        upload == up && parts.iter().any(|p| p.tag == owner.tag)
                    }
                    _ => false,
                },
                None => false,
            };
            if !used {
                self.reclaim(pool, name, Some(owner.created_ms), cutoff, dry_run, rep).await?;
            }
        } else if pool == self.opts.pool
            && let Some(rest) = name
                .strip_prefix(layout::INDEX_PREFIX)
                .or_else(|| name.strip_prefix(layout::PARTS_PREFIX))
                .or_else(|| name.strip_prefix(layout::UPLOADS_PREFIX))
        {
            let bid = rest.split('.').next().unwrap_or_default();
            if !buckets.contains_key(bid) {
                self.reclaim(pool, name, None, cutoff, dry_run, rep).await?;
            }
        }
        Ok(())
    }

    async fn reclaim(
        &self,
        pool: &str,
        name: &str,
        created_ms: Option<u64>,
        cutoff: u64,
        dry_run: bool,
        rep: &mut GcReport,
    ) -> Result<()> {
        let obj = self.data_obj_in(pool, name);
        let stat = match self.store.stat(&obj).await {
            Ok(s) => s,
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mtime_ms = stat.mtime.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        if created_ms.unwrap_or(mtime_ms).max(mtime_ms) >= cutoff {
            return Ok(());
        }
        rep.orphan_objects_removed += 1;
        rep.orphan_bytes += stat.size;
        if !dry_run {
            self.remove_data_quietly(pool, name).await;
        }
        Ok(())
    }
}
