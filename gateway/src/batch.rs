//! Group commit of small omap updates: while one write to an object is in flight, updates to the
//! same object queue and go out together in the next single write op. Alone, an update costs
//! one op; under load, a fraction of one. Used for index entries.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cyvault_store::{DynStore, Guard, ObjectRef, StoreError, WriteOp};
use tokio::sync::oneshot;

use crate::error::{GwError, Result};

/// What became of a queued update's batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// The batch's write timed out or the cluster was unavailable: retrying the update alone
    /// would only wait as long again, so the caller gets this (a 503) at once.
    Transient(String),
    /// The batch failed for a reason that may be one update's: retry it alone for its own error.
    Failed,
}

type Update = (String, Option<Bytes>, oneshot::Sender<Outcome>);

#[derive(Default)]
struct Queue {
    busy: bool,
    pending: Vec<Update>,
    /// Conditional updates nobody waits for, flushed together after [`LAZY_DELAY`]: key →
    /// (new value or removal, the value the key must still hold). A later update of the same
    /// key from this process replaces them.
    lazy: BTreeMap<String, (Option<Bytes>, Bytes)>,
    lazy_scheduled: bool,
}

impl Queue {
    fn idle(&self) -> bool {
        !self.busy && self.pending.is_empty() && self.lazy.is_empty() && !self.lazy_scheduled
    }
}

/// How long lazy updates gather before they go out in one write.
const LAZY_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// Per-object queues of omap updates (set with `Some`, remove with `None`).
#[derive(Clone, Default)]
pub struct OmapBatcher {
    queues: Arc<Mutex<HashMap<String, Queue>>>,
}

impl std::fmt::Debug for OmapBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OmapBatcher")
    }
}

impl OmapBatcher {
    /// Queues an update and returns at once; the receiver says what became of its batch.
    /// Dropping the receiver still applies the update (fire and forget).
    pub fn submit(
        &self,
        store: &DynStore,
        obj: &ObjectRef,
        key: &str,
        value: Option<Bytes>,
    ) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        let lead = match self.queues.lock() {
            Ok(mut queues) => {
                let q = queues.entry(obj.name.clone()).or_default();
                q.lazy.remove(key);
                q.pending.push((key.to_string(), value, tx));
                !std::mem::replace(&mut q.busy, true)
            }
            Err(_) => return rx, // a holder panicked: the caller falls back to a lone write
        };
        if lead {
            tokio::spawn(drain(store.clone(), self.queues.clone(), obj.clone()));
        }
        rx
    }

    /// Queues a conditional update nobody waits for: within [`LAZY_DELAY`] it goes out with the
    /// object's other lazy updates in one write, applied only where the key still holds
    /// `expect` (so it never undoes a newer update from any process).
    pub fn submit_lazy(&self, store: &DynStore, obj: &ObjectRef, key: &str, value: Option<Bytes>, expect: Bytes) {
        let schedule = match self.queues.lock() {
            Ok(mut queues) => {
                let q = queues.entry(obj.name.clone()).or_default();
                q.lazy.insert(key.to_string(), (value, expect));
                !std::mem::replace(&mut q.lazy_scheduled, true)
            }
            Err(_) => false,
        };
        if !schedule {
            return;
        }
        let (store, queues, obj) = (store.clone(), self.queues.clone(), obj.clone());
        tokio::spawn(async move {
            tokio::time::sleep(LAZY_DELAY).await;
            let lazy = {
                let Ok(mut qs) = queues.lock() else { return };
                let Some(q) = qs.get_mut(&obj.name) else { return };
                q.lazy_scheduled = false;
                let lazy = std::mem::take(&mut q.lazy);
                if q.idle() {
                    qs.remove(&obj.name);
                }
                lazy
            };
            flush_conditional(&store, &obj, lazy).await;
        });
    }

    /// Applies one update, batched with others; if its batch fails for a reason that may be
    /// this update's, retries it alone so the caller gets its own precise error. A batch that
    /// timed out is not retried (that would double the wait of a request already 30 s old).
    pub async fn apply(&self, store: &DynStore, obj: &ObjectRef, key: &str, value: Option<Bytes>) -> Result<()> {
        match self.submit(store, obj, key, value.clone()).await.unwrap_or(Outcome::Failed) {
            Outcome::Applied => return Ok(()),
            Outcome::Transient(m) => return Err(GwError::from(StoreError::Unavailable(m))),
            Outcome::Failed => {}
        }
        let mut changes = BTreeMap::new();
        changes.insert(key.to_string(), value);
        apply_one(store, obj, &changes).await.map_err(GwError::from)
    }
}

/// One write op applying sets and removals; removals on a missing object succeed.
async fn apply_one(
    store: &DynStore,
    obj: &ObjectRef,
    changes: &BTreeMap<String, Option<Bytes>>,
) -> std::result::Result<(), StoreError> {
    let sets: BTreeMap<String, Bytes> = changes.iter().filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))).collect();
    let removes: Vec<String> = changes.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| k.clone()).collect();
    let mut op = WriteOp::new();
    if !sets.is_empty() {
        op = op.omap_set(sets.clone());
    }
    if !removes.is_empty() {
        op = op.omap_remove(removes);
        if sets.is_empty() {
            op = op.guard(Guard::MustExist);
        }
    }
    match store.execute(obj, op).await {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound(_)) if sets.is_empty() => Ok(()),
        Err(e) => Err(e),
    }
}

fn conditional_op(updates: &BTreeMap<String, (Option<Bytes>, Bytes)>) -> WriteOp {
    let mut op = WriteOp::new();
    for (k, (_, expect)) in updates {
        op = op.omap_cmp(k.clone(), expect.clone());
    }
    let sets: BTreeMap<String, Bytes> =
        updates.iter().filter_map(|(k, (v, _))| v.clone().map(|v| (k.clone(), v))).collect();
    let removes: Vec<String> = updates.iter().filter(|(_, (v, _))| v.is_none()).map(|(k, _)| k.clone()).collect();
    if !sets.is_empty() {
        op = op.omap_set(sets);
    }
    if !removes.is_empty() {
        op = op.omap_remove(removes);
    }
    op
}

/// Applies conditional updates in one write; when some key moved on (the write fails as a
/// whole), applies them one by one and skips those that no longer hold.
async fn flush_conditional(store: &DynStore, obj: &ObjectRef, updates: BTreeMap<String, (Option<Bytes>, Bytes)>) {
    if updates.is_empty() {
        return;
    }
    match store.execute(obj, conditional_op(&updates)).await {
        Ok(_) => return,
        Err(StoreError::Conflict(_)) if updates.len() > 1 => {}
        Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => return,
        Err(e) => {
            tracing::debug!(object = %obj, error = %e, "settling index entries failed; listings read the heads meanwhile");
            return;
        }
    }
    for (k, u) in updates {
        let one = BTreeMap::from([(k, u)]);
        match store.execute(obj, conditional_op(&one)).await {
            Ok(_) | Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {}
            Err(e) => tracing::debug!(object = %obj, error = %e, "settling an index entry failed"),
        }
    }
}

async fn drain(store: DynStore, queues: Arc<Mutex<HashMap<String, Queue>>>, obj: ObjectRef) {
    loop {
        let batch = {
            let Ok(mut qs) = queues.lock() else { return };
            let Some(q) = qs.get_mut(&obj.name) else { return };
            if q.pending.is_empty() {
                q.busy = false;
                if q.idle() {
                    qs.remove(&obj.name);
                }
                return;
            }
            std::mem::take(&mut q.pending)
        };
        // Later updates of a key win, as if applied one by one.
        let mut changes = BTreeMap::new();
        for (k, v, _) in &batch {
            changes.insert(k.clone(), v.clone());
        }
        let outcome = match apply_one(&store, &obj, &changes).await {
            Ok(()) => Outcome::Applied,
            Err(e @ (StoreError::Timeout(_) | StoreError::Unavailable(_))) => {
                Outcome::Transient(format!("update the index object {obj}: {e}"))
            }
            Err(_) => Outcome::Failed,
        };
        for (_, _, tx) in batch {
            let _ = tx.send(outcome.clone());
        }
    }
}
