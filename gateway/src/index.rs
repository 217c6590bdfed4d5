//! The bucket index: omap entries spread over shards, listed in key order with delimiters.

use std::collections::VecDeque;

use cyvault_store::{OmapQuery, StoreError};
use futures::future::try_join_all;

use crate::error::Result;
use crate::layout::{self, BucketRecord, IndexEntry};
use crate::vault::Vault;

/// A pending entry younger than this may belong to an operation still in flight; only the
/// operation itself settles it until then (listings read the head meanwhile).
pub const PENDING_SETTLE_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// What to list.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Only keys (and common prefixes) strictly after this.
    pub start_after: Option<String>,
    pub max_keys: usize,
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    pub entries: Vec<(String, IndexEntry)>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or common prefix returned: where the next page starts after.
    pub next_marker: Option<String>,
}

struct Cursor {
    shard: u32,
    buf: VecDeque<(String, bytes::Bytes)>,
    after: Option<String>,
    done: bool,
}

impl Vault {
    pub(crate) fn index_obj(&self, b: &BucketRecord, key: &str) -> cyvault_store::ObjectRef {
        self.obj(layout::index_name(&b.id, layout::shard_of(key, b.shards)))
    }

    /// Sets one index entry (group-committed with concurrent updates of the same shard).
    pub(crate) async fn index_set(&self, b: &BucketRecord, key: &str, entry: &IndexEntry) -> Result<()> {
        self.batches.apply(&self.store, &self.index_obj(b, key), key, Some(layout::encode(entry))).await
    }

    /// Writes many index entries directly, 1,000 per op per shard (bulk import; the listing
    /// benchmark uses it to build a 100k-key bucket in seconds).
    pub async fn load_index(&self, b: &BucketRecord, entries: Vec<(String, IndexEntry)>) -> Result<()> {
        let mut by_shard: std::collections::BTreeMap<u32, std::collections::BTreeMap<String, bytes::Bytes>> =
            Default::default();
        for (k, e) in entries {
            by_shard.entry(layout::shard_of(&k, b.shards)).or_default().insert(k, layout::encode(&e));
        }
        for (shard, all) in by_shard {
            let obj = self.obj(layout::index_name(&b.id, shard));
            let mut all: Vec<(String, bytes::Bytes)> = all.into_iter().collect();
            while !all.is_empty() {
                let rest = all.split_off(all.len().min(1000));
                self.store.omap_set(&obj, all.into_iter().collect()).await?;
                all = rest;
            }
        }
        Ok(())
    }

    /// Settles a pending entry in the background: within 100 ms, with the shard's other settled
    /// entries in one write, the key gets `settled` (or is removed) if it still holds `pending`
    /// exactly: a newer pending entry, from this gateway or another, is never undone.
    pub(crate) fn index_settle(&self, b: &BucketRecord, key: &str, pending: &IndexEntry, settled: Option<&IndexEntry>) {
        self.batches.submit_lazy(
            &self.store,
            &self.index_obj(b, key),
            key,
            settled.map(layout::encode),
            layout::encode(pending),
        );
    }

    pub(crate) async fn index_remove(&self, b: &BucketRecord, key: &str) -> Result<()> {
        self.batches.apply(&self.store, &self.index_obj(b, key), key, None).await
    }

    /// Makes the index entry of `key` say what its head says (or removes it when there is no
    /// head), unless an operation may still be in flight on it (a pending entry younger than
    /// [`PENDING_SETTLE_AGE`]). The write is conditional on the entry it read, so it never undoes
    /// a newer update. Returns whether `apply` changed (or, dry, would change) the entry.
    pub(crate) async fn repair_index(&self, b: &BucketRecord, key: &str, apply: bool) -> Result<bool> {
        let obj = self.index_obj(b, key);
        let raw = match self.store.omap_get(&obj, &[key.to_string()]).await {
            Ok(mut m) => m.remove(key),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let current: Option<IndexEntry> = raw.as_ref().map(|r| layout::decode("index entry", r)).transpose()?;
        if let Some(c) = &current
            && c.pending
            && c.mtime_ms + PENDING_SETTLE_AGE.as_millis() as u64 > layout::now_ms()
        {
            return Ok(false);
        }
        let head = self.head_meta(b, key).await?.map(|(m, _)| IndexEntry::of(&m));
        if current == head {
            return Ok(false);
        }
        if !apply {
            return Ok(true);
        }
        let mut op = cyvault_store::WriteOp::new();
        if let Some(r) = raw {
            op = op.omap_cmp(key, r);
        }
        op = match &head {
            Some(e) => op.omap_set_one(key, layout::encode(e)),
            None => op.omap_remove(vec![key.to_string()]),
        };
        match self.store.execute(&obj, op).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn refill(&self, b: &BucketRecord, c: &mut Cursor, prefix: &str, page: u64) -> Result<()> {
        if c.done || !c.buf.is_empty() {
            return Ok(());
        }
        let q = OmapQuery {
            start_after: c.after.clone(),
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            max: page,
        };
        match self.store.omap_list(&self.obj(layout::index_name(&b.id, c.shard)), &q).await {
            Ok(p) => {
                c.done = !p.more;
                if let Some((k, _)) = p.entries.last() {
                    c.after = Some(k.clone());
                }
                c.buf.extend(p.entries);
            }
            Err(StoreError::NotFound(_)) => c.done = true,
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Replaces pending entries by what their heads say (dropping those with no head).
    async fn resolve_pending(&self, b: &BucketRecord, entries: &mut Vec<(String, IndexEntry)>) -> Result<()> {
        let keys: Vec<String> = entries.iter().filter(|(_, e)| e.pending).map(|(k, _)| k.clone()).collect();
        if keys.is_empty() {
            return Ok(());
        }
        let heads = try_join_all(keys.iter().map(|k| self.head_meta(b, k))).await?;
        let settled: std::collections::HashMap<&String, Option<IndexEntry>> =
            keys.iter().zip(heads).map(|(k, h)| (k, h.map(|(m, _)| IndexEntry::of(&m)))).collect();
        entries.retain_mut(|(k, e)| match settled.get(k) {
            Some(Some(head)) => {
                *e = head.clone();
                true
            }
            Some(None) => false,
            None => true,
        });
        Ok(())
    }

    /// Lists the bucket in key order, merging the shards.
    pub async fn list_index(&self, b: &BucketRecord, q: &ListQuery) -> Result<ListPage> {
        let max = q.max_keys.min(1000);
        let page = ((max as u64 * 2) / u64::from(b.shards.max(1)) + 16).min(1000);
        // Start after the marker, but never before the prefix.
        let mut after = q.start_after.clone().filter(|s| s.as_str() >= q.prefix.as_str());
        // A marker that is itself a common prefix continues after everything under it.
        if let (Some(a), Some(d)) = (&after, q.delimiter.as_deref().filter(|d| !d.is_empty()))
            && a.starts_with(q.prefix.as_str())
            && a.len() >= q.prefix.len() + d.len()
            && a.ends_with(d)
            && !a[q.prefix.len()..a.len() - d.len()].contains(d)
        {
            after = Some(format!("{a}\u{10FFFF}"));
        }
        let mut cursors: Vec<Cursor> = (0..b.shards)
            .map(|shard| Cursor { shard, buf: VecDeque::new(), after: after.clone(), done: false })
            .collect();
        let mut out = ListPage::default();
        if max == 0 {
            // S3 answers max-keys=0 with an empty, untruncated page… unless there is something.
            try_join_all(cursors.iter_mut().map(|c| self.refill(b, c, &q.prefix, 1))).await?;
            out.truncated = cursors.iter().any(|c| !c.buf.is_empty());
            return Ok(out);
        }
        try_join_all(cursors.iter_mut().map(|c| self.refill(b, c, &q.prefix, page))).await?;
        let delim = q.delimiter.as_deref().filter(|d| !d.is_empty());
        loop {
            // The smallest key at the head of any shard.
            let mut best: Option<usize> = None;
            for (i, c) in cursors.iter().enumerate() {
                if let Some((k, _)) = c.buf.front()
                    && best.is_none_or(|j| k < &cursors[j].buf[0].0)
                {
                    best = Some(i);
                }
            }
            let Some(i) = best else { break };
            if out.entries.len() + out.common_prefixes.len() >= max {
                out.truncated = true;
                break;
            }
            let (key, raw) = cursors[i].buf.pop_front().unwrap_or_default();
            let rest = &key[q.prefix.len().min(key.len())..];
            match delim.and_then(|d| rest.find(d).map(|p| (p, d.len()))) {
                Some((p, dl)) => {
                    let cp = format!("{}{}", q.prefix, &rest[..p + dl]);
                    // Skip every key under this common prefix, in every shard.
                    let skip_to = format!("{cp}\u{10FFFF}");
                    for c in cursors.iter_mut() {
                        while c.buf.front().is_some_and(|(k, _)| k.starts_with(&cp)) {
                            c.buf.pop_front();
                        }
                        if c.buf.is_empty() && c.after.as_ref().is_none_or(|a| *a < skip_to) {
                            c.after = Some(skip_to.clone());
                        }
                    }
                    out.next_marker = Some(cp.clone());
                    out.common_prefixes.push(cp);
                }
                None => {
                    let entry: IndexEntry = layout::decode("index entry", &raw)?;
                    out.next_marker = Some(key.clone());
                    out.entries.push((key, entry));
                }
            }
            // Keep every shard's head known so the minimum is right (empty ones refill together).
            try_join_all(cursors.iter_mut().map(|c| self.refill(b, c, &q.prefix, page))).await?;
        }
        if !out.truncated {
            out.next_marker = None;
        }
        self.resolve_pending(b, &mut out.entries).await?;
        Ok(out)
    }
}
