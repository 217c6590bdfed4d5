//! Choosing a pool: every candidate is judged by the same checks in the same order, the
//! eligible ones are ranked, and a refusal says which check stopped the nearest candidate.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use crate::model::*;
use crate::size::format_size;

/// What a consumer asks for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Request {
    /// The cluster the volume or bucket is used from.
    pub consumer: String,
    pub kind: RequestKind,
    /// Bytes to reserve (a volume's capacity; 0 for a bucket of unknown size).
    pub size: u64,
    /// A device class that overrides the policy's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_class: Option<String>,
    /// A policy by name instead of the consumer's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

impl Request {
    pub fn new(consumer: impl Into<String>, kind: RequestKind, size: u64) -> Request {
        Request { consumer: consumer.into(), kind, size, device_class: None, policy: None }
    }

    pub fn with_class(mut self, class: impl Into<String>) -> Request {
        self.device_class = Some(class.into());
        self
    }

    pub fn with_policy(mut self, policy: impl Into<String>) -> Request {
        self.policy = Some(policy.into());
        self
    }
}

/// Why a candidate won or lost, in the order the checks run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// Its device class is not the required one.
    WrongClass,
    /// It keeps fewer copies than the policy wants.
    TooFewCopies { have: u32, want: u32 },
    /// Its copies are spread across a weaker failure domain than the policy wants.
    WeakFailureDomain { have: FailureDomain, want: FailureDomain },
    /// No link reaches its cluster from the consumer's.
    Unreachable,
    /// Its p99 RTT is over the latency budget.
    TooFar { over_ms: f64 },
    /// Placing the request would fill it past the policy's limit.
    NoHeadroom { max_fill: f64 },
    /// It passed every check but another pool ranked first.
    Eligible { lost_on: Tiebreak },
    /// The pool the request goes to.
    Chosen,
}

/// Why an eligible pool ranked below the chosen one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tiebreak {
    /// Its RTT is in a farther latency band.
    Farther,
    /// Same band, but it would be fuller.
    Fuller,
    /// Same band and fill: the name decides.
    Name,
}

impl Verdict {
    /// How far the candidate got through the checks (higher is further).
    pub fn stage(self) -> u8 {
        match self {
            Verdict::WrongClass => 1,
            Verdict::TooFewCopies { .. } => 2,
            Verdict::WeakFailureDomain { .. } => 3,
            Verdict::Unreachable => 4,
            Verdict::TooFar { .. } => 5,
            Verdict::NoHeadroom { .. } => 6,
            Verdict::Eligible { .. } => 7,
            Verdict::Chosen => 8,
        }
    }
}

/// One pool of the requested kind, judged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Index into [`Topology::pools`].
    pub pool: u32,
    /// RTT from the consumer, `None` when unreachable.
    pub rtt: Option<(Rtt, LatencySource)>,
    /// The pool's fill ratio if the request (and the batch before it) landed there.
    pub fill_after: f64,
    pub verdict: Verdict,
}

/// Stable codes of refusals (docs/errors.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum RefusalCode {
    /// VAULT-PL-001: every pool that meets the other requirements is beyond the latency budget
    /// (or unreachable).
    NoPoolWithinBudget,
    /// VAULT-PL-002: no pool of the kind has the required device class.
    NoPoolOfClass,
    /// VAULT-PL-003: pools meet every requirement but would fill past the limit.
    NoHeadroom,
    /// VAULT-PL-004: no pool of the class keeps enough copies across a strong enough failure
    /// domain.
    NotDurableEnough,
    /// VAULT-PL-005: the topology has no pool of the kind at all.
    NoPoolOfKind,
    /// VAULT-PL-006: the consumer is not a cluster of the topology.
    UnknownConsumer,
    /// VAULT-PL-007: the request names a policy that does not exist.
    UnknownPolicy,
    /// VAULT-PL-008: the request names a policy for the other kind.
    PolicyKindMismatch,
}

impl RefusalCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::NoPoolWithinBudget => "VAULT-PL-001",
            RefusalCode::NoPoolOfClass => "VAULT-PL-002",
            RefusalCode::NoHeadroom => "VAULT-PL-003",
            RefusalCode::NotDurableEnough => "VAULT-PL-004",
            RefusalCode::NoPoolOfKind => "VAULT-PL-005",
            RefusalCode::UnknownConsumer => "VAULT-PL-006",
            RefusalCode::UnknownPolicy => "VAULT-PL-007",
            RefusalCode::PolicyKindMismatch => "VAULT-PL-008",
        }
    }

    /// Whether retrying the same request later is pointless until the topology or the request
    /// changes. Only a lack of headroom can go away by itself (data deleted, capacity added).
    pub fn is_permanent(self) -> bool {
        !matches!(self, RefusalCode::NoHeadroom)
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A placed request.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub request: Request,
    pub policy: Policy,
    /// Index of the chosen pool in [`Topology::pools`].
    pub pool: u32,
    /// Every pool of the requested kind, in topology order.
    pub candidates: Vec<Candidate>,
}

impl Decision {
    pub fn pool<'t>(&self, topo: &'t Topology) -> &'t Pool {
        &topo.pools[self.pool as usize]
    }
}

/// A request that cannot be met.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    pub code: RefusalCode,
    /// One line for a person: what could not be met, and the nearest miss.
    pub message: String,
    /// The candidate that came closest, when there is one.
    pub nearest: Option<u32>,
    pub request: Request,
    pub policy: Option<Policy>,
    pub candidates: Vec<Candidate>,
}

/// Places one request on a topology (no batch: nothing placed before it counts).
#[allow(clippy::result_large_err)]
pub fn choose_pool(topo: &Topology, request: &Request) -> Result<Decision, Refusal> {
    Placement::new(topo).choose_pool(request)
}

/// A batch of placements on one topology snapshot: what each decision reserves counts against
/// the headroom of the next.
#[derive(Debug)]
pub struct Placement<'t> {
    topo: &'t Topology,
    reserved: HashMap<u32, u64>,
}

fn fmt_ms(v: f64) -> String {
    if v < 0.1 { format!("{v:.2} ms") } else { format!("{v:.1} ms") }
}

fn pct(v: f64) -> String {
    if v.is_finite() { format!("{:.1}%", v * 100.0) } else { "∞".into() }
}

impl<'t> Placement<'t> {
    pub fn new(topo: &'t Topology) -> Placement<'t> {
        Placement { topo, reserved: HashMap::new() }
    }

    /// Bytes this batch has placed on a pool so far.
    pub fn reserved(&self, pool: u32) -> u64 {
        self.reserved.get(&pool).copied().unwrap_or(0)
    }

    /// Chooses a pool for `request`, deterministically: the same topology and request give the
    /// same answer whatever order the pools were listed in. A success reserves the request's
    /// size on the pool for the rest of the batch.
    // A refusal carries the whole candidate table by design, and refusals are not a hot path.
    #[allow(clippy::result_large_err)]
    pub fn choose_pool(&mut self, request: &Request) -> Result<Decision, Refusal> {
        let topo = self.topo;
        let refuse = |code: RefusalCode, message: String, policy: Option<Policy>| Refusal {
            code,
            message,
            nearest: None,
            request: request.clone(),
            policy,
            candidates: Vec::new(),
        };
        let Some(&consumer) = topo.cluster_ix.get(&request.consumer) else {
            let mut names: Vec<&str> = topo.clusters.iter().map(|c| c.name.as_str()).collect();
            names.sort_unstable();
            return Err(refuse(
                RefusalCode::UnknownConsumer,
                format!("{:?} is not a cluster of the topology (clusters: {})", request.consumer, names.join(", ")),
                None,
            ));
        };
        let Some(mut policy) = topo.policy_for(&request.consumer, request.kind, request.policy.as_deref()) else {
            let mut names: Vec<&str> = topo.policies.iter().map(|p| p.name.as_str()).collect();
            names.sort_unstable();
            return Err(refuse(
                RefusalCode::UnknownPolicy,
                format!(
                    "no placement policy is named {:?} (policies: {})",
                    request.policy.as_deref().unwrap_or_default(),
                    if names.is_empty() { "none".into() } else { names.join(", ") }
                ),
                None,
            ));
        };
        if policy.kind != request.kind {
            return Err(refuse(
                RefusalCode::PolicyKindMismatch,
                format!("policy {} places {}s, not {}s", policy.name, policy.kind, request.kind),
                Some(policy),
            ));
        }
        if let Some(class) = &request.device_class {
            policy.device_class = Some(class.clone());
        }
        let kind = request.kind.pool_kind();
        let band = topo.defaults.latency_band_ms;

        // RTT to each cluster, looked up once per decision rather than once per pool.
        let row: Vec<Option<(Rtt, LatencySource)>> =
            (0..topo.clusters.len() as u32).map(|c| topo.cluster_rtt(consumer, c)).collect();
        let of_kind = topo.pools_of_kind(kind);
        let mut candidates = Vec::with_capacity(of_kind.len());
        // Best eligible so far: (band, fill, rank, index into candidates).
        let mut best: Option<(u64, f64, u32, usize)> = None;
        for &ix in of_kind {
            let i = ix as usize;
            let pool = &topo.pools[i];
            let measured = if topo.measured.is_empty() { None } else { topo.measured.get(&(consumer, ix)) };
            let rtt = match measured {
                Some(m) => Some((*m, LatencySource::Measured)),
                None => row[topo.pool_cluster[i] as usize],
            };
            let used = pool.used.saturating_add(self.reserved(ix)).saturating_add(request.size);
            let fill_after = if pool.capacity == 0 { f64::INFINITY } else { used as f64 / pool.capacity as f64 };
            let verdict = if policy.device_class.as_ref().is_some_and(|c| *c != pool.device_class) {
                Verdict::WrongClass
            } else if pool.redundancy.copies() < policy.min_replicas {
                Verdict::TooFewCopies { have: pool.redundancy.copies(), want: policy.min_replicas }
            } else if let Some(want) = policy.failure_domain
                && pool.failure_domain < want
            {
                Verdict::WeakFailureDomain { have: pool.failure_domain, want }
            } else if let Some((r, _)) = rtt {
                if r.p99_ms > policy.latency_budget_ms {
                    Verdict::TooFar { over_ms: r.p99_ms - policy.latency_budget_ms }
                } else if fill_after > policy.max_fill {
                    Verdict::NoHeadroom { max_fill: policy.max_fill }
                } else {
                    let key = ((r.p99_ms / band) as u64, fill_after, topo.pool_rank[i], candidates.len());
                    if best.is_none_or(|b| (key.0, key.1, key.2) < (b.0, b.1, b.2)) {
                        best = Some(key);
                    }
                    Verdict::Eligible { lost_on: Tiebreak::Name }
                }
            } else {
                Verdict::Unreachable
            };
            candidates.push(Candidate { pool: ix, rtt, fill_after, verdict });
        }

        if let Some((best_band, best_fill, _, at)) = best {
            for (n, c) in candidates.iter_mut().enumerate() {
                if n == at {
                    c.verdict = Verdict::Chosen;
                } else if let Verdict::Eligible { lost_on } = &mut c.verdict {
                    let b = c.rtt.map(|(r, _)| (r.p99_ms / band) as u64).unwrap_or(u64::MAX);
                    *lost_on = if b > best_band {
                        Tiebreak::Farther
                    } else if c.fill_after > best_fill {
                        Tiebreak::Fuller
                    } else {
                        Tiebreak::Name
                    };
                }
            }
            let pool = candidates[at].pool;
            *self.reserved.entry(pool).or_default() += request.size;
            return Ok(Decision { request: request.clone(), policy, pool, candidates });
        }
        Err(self.refusal(request, policy, candidates))
    }

    /// Builds the refusal from the candidate that got furthest through the checks.
    fn refusal(&self, request: &Request, policy: Policy, candidates: Vec<Candidate>) -> Refusal {
        let topo = self.topo;
        let kind = request.kind.pool_kind();
        let pools = &topo.pools;
        let rtt_of = |c: &Candidate| c.rtt.map_or(f64::INFINITY, |(r, _)| r.p99_ms);
        let name_of = |c: &Candidate| pools[c.pool as usize].id();
        let rank_of = |c: &Candidate| topo.pool_rank[c.pool as usize];
        let furthest = candidates.iter().map(|c| c.verdict.stage()).max();
        let Some(stage) = furthest else {
            return Refusal {
                code: RefusalCode::NoPoolOfKind,
                message: format!("the topology has no {kind} pool for {}s", request.kind),
                nearest: None,
                request: request.clone(),
                policy: Some(policy),
                candidates,
            };
        };
        let at_stage = || candidates.iter().filter(|c| c.verdict.stage() == stage);
        // The nearest miss: lowest RTT, then name; for headroom, the emptiest.
        let nearest = if stage == 6 {
            at_stage().min_by(|a, b| a.fill_after.total_cmp(&b.fill_after).then(rank_of(a).cmp(&rank_of(b))))
        } else {
            at_stage().min_by(|a, b| rtt_of(a).total_cmp(&rtt_of(b)).then(rank_of(a).cmp(&rank_of(b))))
        };
        let nearest = nearest.copied();
        let class = policy.device_class.as_deref();
        let what = match class {
            Some(c) => format!("{c} {kind} pool"),
            None => format!("{kind} pool"),
        };
        let (code, message) = match (stage, nearest) {
            (_, None) => (RefusalCode::NoPoolOfKind, format!("the topology has no {kind} pool")),
            (1, Some(n)) => {
                let p = &pools[n.pool as usize];
                (
                    RefusalCode::NoPoolOfClass,
                    format!(
                        "no {what} exists; nearest {kind} pool {} is {} at {}",
                        p.id(),
                        p.device_class,
                        n.rtt.map_or("no link".into(), |(r, _)| fmt_ms(r.p99_ms))
                    ),
                )
            }
            (2 | 3, Some(n)) => {
                let p = &pools[n.pool as usize];
                let want = match policy.failure_domain {
                    Some(fd) => format!("{} copies across {fd}s", policy.min_replicas),
                    None => format!("{} copies", policy.min_replicas),
                };
                (
                    RefusalCode::NotDurableEnough,
                    format!(
                        "no {what} keeps {want}; nearest {} keeps {} copies across {}s ({})",
                        p.id(),
                        p.redundancy.copies(),
                        p.failure_domain,
                        p.redundancy
                    ),
                )
            }
            (4, Some(n)) => (
                RefusalCode::NoPoolWithinBudget,
                format!(
                    "no {what} is reachable from {}: no link to the cluster of any of them (e.g. {})",
                    request.consumer,
                    name_of(&n)
                ),
            ),
            (5, Some(n)) => {
                let r = rtt_of(&n);
                (
                    RefusalCode::NoPoolWithinBudget,
                    format!(
                        "no {what} within {} of {}; nearest {} at {} ({} over budget)",
                        fmt_ms(policy.latency_budget_ms),
                        request.consumer,
                        name_of(&n),
                        fmt_ms(r),
                        fmt_ms(r - policy.latency_budget_ms)
                    ),
                )
            }
            (_, Some(n)) => (
                RefusalCode::NoHeadroom,
                format!(
                    "no {what} within {} of {} has room for {} under the {} fill limit; emptiest {} would be {} full",
                    fmt_ms(policy.latency_budget_ms),
                    request.consumer,
                    format_size(request.size),
                    pct(policy.max_fill),
                    name_of(&n),
                    pct(n.fill_after)
                ),
            ),
        };
        Refusal {
            code,
            message,
            nearest: nearest.map(|n| n.pool),
            request: request.clone(),
            policy: Some(policy),
            candidates,
        }
    }
}
