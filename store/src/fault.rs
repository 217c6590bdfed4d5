//! Deterministic fault injection.
//!
//! A [`FaultPlan`] is a list of rules "at step S (optionally only for objects whose name contains
//! K), when trigger T fires, do effect E". Steps are the API calls (`read`, `stat`, `execute`,
//! …, checked by [`FaultyStore`]) and the internal steps of the local backend (`local.*`,
//! checked by [`crate::LocalStore`] when opened with a plan). Random triggers draw from a
//! generator seeded by the plan, so a failing run replays exactly with the same seed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;

use crate::api::{
    BackendKind, ObjectPage, ObjectRef, ObjectStat, ObjectStore, OmapPage, OmapQuery, ReadRange, ReadReply, WriteOp,
};
use crate::error::{Result, StoreError};

/// When a rule fires, counting the times its step was reached (per step and object name).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trigger {
    /// The n-th time (1-based).
    Nth(u64),
    /// The first n times (so a retry loop sees n failures, then success).
    FirstN(u64),
    /// Every time.
    Always,
    /// Each time with this probability, from the plan's seeded generator.
    Random(f64),
}

/// What happens when a rule fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Fail with `Timeout` without doing anything.
    Timeout,
    /// Fail with `Unavailable` without doing anything.
    Unavailable,
    /// Fail with `NoSpace` without doing anything.
    NoSpace,
    /// Do the operation, then report `Timeout`: the caller cannot know it was applied.
    ApplyThenTimeout,
    /// Stop dead: this call and every later one fail with `Crashed`, as if the process died.
    Crash,
}

#[derive(Clone, Debug)]
struct Rule {
    step: String,
    object: Option<String>,
    trigger: Trigger,
    effect: Effect,
}

#[derive(Debug, Default)]
struct PlanState {
    counts: HashMap<(String, String), u64>,
    rng: u64,
    crashed_at: Option<String>,
    fired: Vec<String>,
}

/// A seeded, deterministic set of fault rules shared by the wrappers and backends that obey it.
#[derive(Debug)]
pub struct FaultPlan {
    rules: Mutex<Vec<Rule>>,
    state: Mutex<PlanState>,
}

impl FaultPlan {
    pub fn new(seed: u64) -> Arc<FaultPlan> {
        Arc::new(FaultPlan {
            rules: Mutex::new(Vec::new()),
            state: Mutex::new(PlanState { rng: seed ^ 0x9E37_79B9_7F4A_7C15, ..PlanState::default() }),
        })
    }

    /// Adds a rule for `step` (any object).
    pub fn at(self: &Arc<Self>, step: &str, trigger: Trigger, effect: Effect) -> Arc<Self> {
        self.add(step, None, trigger, effect)
    }

    /// Adds a rule for `step` on objects whose name contains `object`.
    pub fn at_object(self: &Arc<Self>, step: &str, object: &str, trigger: Trigger, effect: Effect) -> Arc<Self> {
        self.add(step, Some(object.to_owned()), trigger, effect)
    }

    fn add(self: &Arc<Self>, step: &str, object: Option<String>, trigger: Trigger, effect: Effect) -> Arc<Self> {
        lock(&self.rules).push(Rule { step: step.to_owned(), object, trigger, effect });
        Arc::clone(self)
    }

    /// True once a `Crash` effect fired.
    pub fn crashed(&self) -> bool {
        lock(&self.state).crashed_at.is_some()
    }

    /// The faults that fired so far, as `step@object:effect` strings, in order.
    pub fn fired(&self) -> Vec<String> {
        lock(&self.state).fired.clone()
    }

    /// Records that `step` was reached for `object` and returns the effect of the first rule
    /// that fires, or `Err(Crashed)` if the plan already crashed.
    pub fn hit(&self, step: &str, object: &str) -> Result<Option<Effect>> {
        let rules = lock(&self.rules).clone();
        let mut st = lock(&self.state);
        if let Some(at) = &st.crashed_at {
            return Err(StoreError::Crashed { step: at.clone() });
        }
        let count = {
            let c = st.counts.entry((step.to_owned(), object.to_owned())).or_insert(0);
            *c += 1;
            *c
        };
        for rule in rules.iter().filter(|r| r.step == step) {
            if rule.object.as_deref().is_some_and(|o| !object.contains(o)) {
                continue;
            }
            let fires = match rule.trigger {
                Trigger::Nth(n) => count == n,
                Trigger::FirstN(n) => count <= n,
                Trigger::Always => true,
                Trigger::Random(p) => next_unit(&mut st.rng) < p,
            };
            if fires {
                st.fired.push(format!("{step}@{object}:{:?}", rule.effect));
                if rule.effect == Effect::Crash {
                    st.crashed_at = Some(step.to_owned());
                }
                return Ok(Some(rule.effect));
            }
        }
        Ok(None)
    }

    /// For steps inside a backend: `Ok` to go on, or the error the effect stands for.
    /// (`ApplyThenTimeout` only means something around a whole call; inside it acts as `Timeout`.)
    pub fn check(&self, step: &str, object: &str) -> Result<()> {
        match self.hit(step, object)? {
            None => Ok(()),
            Some(effect) => Err(effect_error(effect, step)),
        }
    }
}

fn effect_error(effect: Effect, step: &str) -> StoreError {
    match effect {
        Effect::Timeout | Effect::ApplyThenTimeout => StoreError::Timeout(format!("injected at {step}")),
        Effect::Unavailable => StoreError::Unavailable(format!("injected at {step}")),
        Effect::NoSpace => StoreError::NoSpace(format!("injected at {step}")),
        Effect::Crash => StoreError::Crashed { step: step.to_owned() },
    }
}

/// splitmix64, mapped to [0, 1).
fn next_unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the counters inconsistent in a way that
    // matters for a test harness, so recover the guard.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Wraps any store and applies a [`FaultPlan`] at every API call (steps named after the
/// methods: `read`, `stat`, `xattr_get`, `xattr_list`, `omap_get`, `omap_list`,
/// `list_objects`, `execute`).
#[derive(Debug, Clone)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    plan: Arc<FaultPlan>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, plan: Arc<FaultPlan>) -> Self {
        FaultyStore { inner, plan }
    }

    pub fn plan(&self) -> &Arc<FaultPlan> {
        &self.plan
    }

    /// Runs `f` under the plan's verdict for (step, object).
    async fn guarded<T, F>(&self, step: &str, object: &str, f: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>> + Send,
    {
        match self.plan.hit(step, object)? {
            None => f.await,
            Some(Effect::ApplyThenTimeout) => {
                f.await?;
                Err(StoreError::Timeout(format!("injected after applying {step}")))
            }
            Some(effect) => Err(effect_error(effect, step)),
        }
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    async fn read(&self, obj: &ObjectRef, range: ReadRange) -> Result<ReadReply> {
        self.guarded("read", &obj.name, self.inner.read(obj, range)).await
    }
    async fn read_with_xattrs(
        &self,
        obj: &ObjectRef,
        range: ReadRange,
    ) -> Result<(ReadReply, BTreeMap<String, Bytes>)> {
        self.guarded("read", &obj.name, self.inner.read_with_xattrs(obj, range)).await
    }
    async fn stat(&self, obj: &ObjectRef) -> Result<ObjectStat> {
        self.guarded("stat", &obj.name, self.inner.stat(obj)).await
    }
    async fn xattr_get(&self, obj: &ObjectRef, name: &str) -> Result<Bytes> {
        self.guarded("xattr_get", &obj.name, self.inner.xattr_get(obj, name)).await
    }
    async fn xattr_list(&self, obj: &ObjectRef) -> Result<BTreeMap<String, Bytes>> {
        self.guarded("xattr_list", &obj.name, self.inner.xattr_list(obj)).await
    }
    async fn omap_get(&self, obj: &ObjectRef, keys: &[String]) -> Result<BTreeMap<String, Bytes>> {
        self.guarded("omap_get", &obj.name, self.inner.omap_get(obj, keys)).await
    }
    async fn omap_list(&self, obj: &ObjectRef, query: &OmapQuery) -> Result<OmapPage> {
        self.guarded("omap_list", &obj.name, self.inner.omap_list(obj, query)).await
    }
    async fn list_objects(&self, pool: &str, namespace: &str, start: Option<&str>, max: usize) -> Result<ObjectPage> {
        self.guarded("list_objects", pool, self.inner.list_objects(pool, namespace, start, max)).await
    }
    async fn execute(&self, obj: &ObjectRef, op: WriteOp) -> Result<u64> {
        self.guarded("execute", &obj.name, self.inner.execute(obj, op)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_count_per_step_and_object() {
        let plan = FaultPlan::new(1).at("execute", Trigger::FirstN(2), Effect::Timeout);
        let seq: Vec<_> = (0..3).map(|_| plan.hit("execute", "a").ok().flatten()).collect();
        assert_eq!(seq, vec![Some(Effect::Timeout), Some(Effect::Timeout), None]);
        assert_eq!(plan.hit("execute", "b").ok().flatten(), Some(Effect::Timeout), "counted per object");
        assert_eq!(plan.hit("read", "a").ok().flatten(), None);
    }

    #[test]
    fn crash_is_sticky() {
        let plan = FaultPlan::new(1).at("local.data_synced", Trigger::Nth(2), Effect::Crash);
        assert!(plan.check("local.data_synced", "x").is_ok());
        assert!(matches!(plan.check("local.data_synced", "x"), Err(StoreError::Crashed { .. })));
        assert!(matches!(plan.check("read", "y"), Err(StoreError::Crashed { .. })));
        assert!(plan.crashed());
    }

    #[test]
    fn random_is_deterministic_per_seed() {
        let run = |seed| {
            let plan = FaultPlan::new(seed).at("read", Trigger::Random(0.3), Effect::Unavailable);
            (0..200).map(|_| plan.hit("read", "o").ok().flatten().is_some()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let hits = run(7).iter().filter(|h| **h).count();
        assert!((30..=90).contains(&hits), "about 30% of 200, got {hits}");
    }
}
