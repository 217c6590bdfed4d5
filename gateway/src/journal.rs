//! The intent journal: what makes the index agree with the heads after a crash.
//!
//! Before a head is written or removed, the writer records an intent (`cyv.journal.<n>`, omap
//! `<id>` → bucket, key, op, tag); after the index entry is updated the intent is dropped (in the
//! background, group-committed). A crash between the two leaves the intent behind, and
//! [`Vault::recover`] (run at gateway start and by every sweep) makes each named index entry
//! agree with its head. Journal writes are batched, so under load they cost a fraction of an op.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::info;

use crate::error::Result;
use crate::layout::{self, BucketRecord};
use crate::vault::Vault;

pub const JOURNAL_PREFIX: &str = "cyv.journal.";
pub const JOURNAL_SHARDS: u32 = 2;
/// How long finished intents wait to be trimmed together.
const TRIM_DELAY: Duration = Duration::from_millis(100);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Bucket id.
    pub bucket: String,
    pub key: String,
    /// `put` or `delete`.
    pub op: String,
    /// The tag of the head being written (put) or removed (delete).
    pub tag: String,
    pub created_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RecoverReport {
    pub intents: u64,
    pub index_entries_fixed: u64,
}

fn journal_name(id: &str) -> String {
    format!("{JOURNAL_PREFIX}{}", layout::shard_of(id, JOURNAL_SHARDS))
}

impl Vault {
    /// Records an intent; returns its id for [`Vault::intent_done`].
    pub(crate) async fn intent_begin(&self, b: &BucketRecord, key: &str, op: &str, tag: &str) -> Result<String> {
        let id = layout::random_id(8);
        let intent = Intent {
            bucket: b.id.clone(),
            key: key.into(),
            op: op.into(),
            tag: tag.into(),
            created_ms: layout::now_ms(),
        };
        self.batches.apply(&self.store, &self.obj(journal_name(&id)), &id, Some(layout::encode(&intent))).await?;
        Ok(id)
    }

    /// Drops an intent in the background: finished intents are trimmed together every
    /// [`TRIM_DELAY`], one write per journal shard. A lost trim only costs a redundant repair.
    pub(crate) fn intent_done(&self, id: &str) {
        let schedule = match self.finished.lock() {
            Ok(mut f) => {
                f.0.push(id.to_string());
                !std::mem::replace(&mut f.1, true)
            }
            Err(_) => false,
        };
        if !schedule {
            return;
        }
        let (store, finished) = (self.store.clone(), self.finished.clone());
        let objs: Vec<_> = (0..JOURNAL_SHARDS).map(|n| self.obj(format!("{JOURNAL_PREFIX}{n}"))).collect();
        tokio::spawn(async move {
            tokio::time::sleep(TRIM_DELAY).await;
            let ids = match finished.lock() {
                Ok(mut f) => {
                    f.1 = false;
                    std::mem::take(&mut f.0)
                }
                Err(_) => return,
            };
            let mut by_shard: Vec<Vec<String>> = vec![Vec::new(); objs.len()];
            for id in ids {
                by_shard[layout::shard_of(&id, JOURNAL_SHARDS) as usize].push(id);
            }
            for (obj, ids) in objs.iter().zip(by_shard) {
                if !ids.is_empty()
                    && let Err(e) = store.omap_remove(obj, &ids).await
                {
                    tracing::debug!(error = %e, "journal trim failed; recovery will drop those intents");
                }
            }
        });
    }

    /// Makes every index entry named by the journal agree with its head, and drops the intents
    /// that are settled: a put whose head is in place, a delete whose head is gone, or anything
    /// older than `settle` (a write still in flight elsewhere is younger than that).
    pub async fn recover(&self, settle: Duration) -> Result<RecoverReport> {
        let mut rep = RecoverReport::default();
        let buckets: HashMap<String, BucketRecord> =
            self.all_buckets().await?.into_iter().map(|b| (b.id.clone(), b)).collect();
        let cutoff = layout::now_ms().saturating_sub(settle.as_millis() as u64);
        for shard in 0..JOURNAL_SHARDS {
            let name = format!("{JOURNAL_PREFIX}{shard}");
            let obj = self.obj(name.clone());
            for (id, raw) in self.omap_all(&name, None).await? {
                let id = &id;
                rep.intents += 1;
                let Ok(intent) = layout::decode::<Intent>("intent", &raw) else {
                    self.batches.apply(&self.store, &obj, id, None).await?;
                    continue;
                };
                let Some(b) = buckets.get(&intent.bucket) else {
                    self.batches.apply(&self.store, &obj, id, None).await?;
                    continue;
                };
                if self.repair_index(b, &intent.key).await? {
                    rep.index_entries_fixed += 1;
                }
                let head_tag = self.head_meta(b, &intent.key).await?.map(|(m, _)| m.tag);
                let settled = match intent.op.as_str() {
                    "put" => head_tag.as_deref() == Some(intent.tag.as_str()),
                    _ => head_tag.as_deref() != Some(intent.tag.as_str()),
                };
                if settled || intent.created_ms < cutoff {
                    self.batches.apply(&self.store, &obj, id, None).await?;
                }
            }
        }
        if rep.index_entries_fixed > 0 {
            info!(intents = rep.intents, fixed = rep.index_entries_fixed, "index repaired from the intent journal");
        }
        Ok(rep)
    }
}
