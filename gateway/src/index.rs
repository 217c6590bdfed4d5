//! The bucket index: omap entries spread over shards, listed in key order with delimiters.

use std::collections::VecDeque;

use cyvault_store::{OmapQuery, StoreError};
use futures::future::try_join_all;

use crate::error::Result;
use crate::layout::{self, BucketRecord, IndexEntry};
use crate::vault::Vault;

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

/// Index entries waiting for their shard's next group commit.
#[derive(Default)]
pub(crate) struct ShardQueue {
    busy: bool,
    pending: Vec<(String, bytes::Bytes, tokio::sync::oneshot::Sender<bool>)>,
}

pub(crate) type IndexBatches = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, ShardQueue>>>;

fn poisoned() -> crate::error::GwError {
    crate::error::GwError::Store(StoreError::corrupt("index batch queue", "a lock holder panicked"))
}

/// Sends the queued entries of one shard in batches until the queue is empty.
async fn drain_shard(store: cyvault_store::DynStore, batches: IndexBatches, obj: cyvault_store::ObjectRef) {
    loop {
        let batch = {
            let Ok(mut shards) = batches.lock() else { return };
            let Some(q) = shards.get_mut(&obj.name) else { return };
            if q.pending.is_empty() {
                shards.remove(&obj.name);
                return;
            }
            std::mem::take(&mut q.pending)
        };
        // Later entries for the same key win, as if applied one by one.
        let mut m = std::collections::BTreeMap::new();
        for (k, v, _) in &batch {
            m.insert(k.clone(), v.clone());
        }
        let ok = store.omap_set(&obj, m).await.is_ok();
        for (_, _, tx) in batch {
            let _ = tx.send(ok);
        }
    }
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

    /// Sets one index entry. Concurrent sets on one shard are group-committed: while a batch is
    /// in flight, new entries queue and go out together in the next single omap write, so under
    /// load a PUT costs well under one index op; alone, it costs exactly one.
    pub(crate) async fn index_set(&self, b: &BucketRecord, key: &str, entry: &IndexEntry) -> Result<()> {
        let obj = self.index_obj(b, key);
        let value = layout::encode(entry);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lead = {
            let mut shards = self.index_batches.lock().map_err(|_| poisoned())?;
            let q = shards.entry(obj.name.clone()).or_default();
            q.pending.push((key.to_string(), value.clone(), tx));
            !std::mem::replace(&mut q.busy, true)
        };
        if lead {
            tokio::spawn(drain_shard(self.store.clone(), self.index_batches.clone(), obj.clone()));
        }
        if rx.await.unwrap_or(false) {
            return Ok(());
        }
        // The batch failed (or was dropped): try alone, for this entry's own precise error.
        let mut m = std::collections::BTreeMap::new();
        m.insert(key.to_string(), value);
        self.store.omap_set(&obj, m).await?;
        Ok(())
    }

    pub(crate) async fn index_remove(&self, b: &BucketRecord, key: &str) -> Result<()> {
        match self.store.omap_remove(&self.index_obj(b, key), &[key.to_string()]).await {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn index_get(&self, b: &BucketRecord, key: &str) -> Result<Option<IndexEntry>> {
        match self.store.omap_get(&self.index_obj(b, key), &[key.to_string()]).await {
            Ok(m) => m.get(key).map(|raw| layout::decode("index entry", raw)).transpose(),
            Err(StoreError::NotFound(_)) => Ok(None),
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
            // Keep every shard's head known so the minimum is right.
            for c in cursors.iter_mut() {
                self.refill(b, c, &q.prefix, page).await?;
            }
        }
        if !out.truncated {
            out.next_marker = None;
        }
        Ok(out)
    }
}
