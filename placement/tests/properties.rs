//! Properties of the placement engine over random topologies and random batches of requests,
//! checked against an independent model written from the topology spec (not from the engine's
//! indexes): RTTs from links, intra-cluster defaults and measurements; the governing policy;
//! every check in order; the ranking; and the refusal code.

use std::collections::HashMap;

use cyvault_placement::{
    ClusterSpec, Decision, DefaultsSpec, ErasureSpec, FailureDomain, LinkSpec, Placement, PolicySpec, PoolKind,
    PoolSpec, Refusal, RefusalCode, Report, Request, RequestKind, Role, Rtt, SiteSpec, SizeSpec, Topology,
    TopologySpec,
};
use proptest::prelude::*;
use proptest::sample::Index;

const CLASSES: [&str; 3] = ["nvme", "ssd", "hdd"];
const DOMAINS: [FailureDomain; 6] = [
    FailureDomain::Osd,
    FailureDomain::Host,
    FailureDomain::Rack,
    FailureDomain::Room,
    FailureDomain::Datacenter,
    FailureDomain::Region,
];
const GIB: u64 = 1 << 30;

/// A topology, measurements to feed it, a batch of requests, and a seed to shuffle the spec with.
#[derive(Clone, Debug)]
struct Case {
    spec: TopologySpec,
    /// `(vantage cluster, pool cluster, pool name, rtt)`, applied in order.
    observed: Vec<(String, String, String, Rtt)>,
    requests: Vec<Request>,
    seed: u64,
}

fn cluster_name(i: usize) -> String {
    format!("c{i:02}")
}

/// Zero-padded, so that no pool id is a prefix of another and "the message names the pool"
/// cannot pass by accident.
fn pool_name(i: usize) -> String {
    format!("pool{i:02}")
}

fn rtt_ms() -> impl Strategy<Value = f64> {
    // Mostly around the volume budgets, sometimes a WAN.
    prop_oneof![3 => 0.0..3.0f64, 1 => 0.0..300.0f64]
}

fn defaults() -> impl Strategy<Value = DefaultsSpec> {
    (
        0.0..5.0f64,
        0.0..300.0f64,
        1u32..4,
        prop_oneof![0.5..=1.0f64, 0.05..=1.0f64],
        0.0..1.0f64,
        0.0..1.0f64,
        prop::sample::select(vec![0.1, 0.5, 1.0, 10.0]),
    )
        .prop_map(|(vol, bucket, min_replicas, max_fill, p50, spread, band)| DefaultsSpec {
            volume_latency_budget_ms: vol,
            bucket_latency_budget_ms: bucket,
            min_replicas,
            max_fill,
            intra_cluster_rtt_p50_ms: p50,
            intra_cluster_rtt_p99_ms: p50 + spread,
            latency_band_ms: band,
        })
}

#[derive(Clone, Debug)]
struct PoolGen {
    cluster: Index,
    rbd: bool,
    class: usize,
    redundancy: (Option<u32>, Option<ErasureSpec>),
    domain: usize,
    capacity_gib: u64,
    used_permille: u64,
}

fn pool() -> impl Strategy<Value = PoolGen> {
    let redundancy = prop_oneof![
        (1u32..5).prop_map(|n| (Some(n), None)),
        (1u32..9, 1u32..4).prop_map(|(k, m)| (None, Some(ErasureSpec { k, m }))),
    ];
    // Round capacities and fills now and then, so that pools tie on fill and the name decides.
    let capacity = prop_oneof![1 => Just(0u64), 6 => Just(10_000u64), 6 => 1u64..20_000];
    let used = prop_oneof![3 => prop::sample::select(vec![0u64, 250]), 3 => 0u64..=600, 1 => 0u64..=1000];
    (any::<Index>(), any::<bool>(), 0..CLASSES.len(), redundancy, 0..DOMAINS.len(), capacity, used).prop_map(
        |(cluster, rbd, class, redundancy, domain, capacity_gib, used_permille)| PoolGen {
            cluster,
            rbd,
            class,
            redundancy,
            domain,
            capacity_gib,
            used_permille,
        },
    )
}

#[derive(Clone, Debug)]
struct PolicyGen {
    /// `None` for `*`.
    consumer: Option<Index>,
    volume: bool,
    budget: f64,
    /// An index into the pools, whose class the policy wants.
    class_of: Option<Index>,
    min_replicas: u32,
    domain: Option<usize>,
    max_fill: f64,
}

fn policy() -> impl Strategy<Value = PolicyGen> {
    (
        prop::option::weighted(0.7, any::<Index>()),
        any::<bool>(),
        prop_oneof![3 => 0.0..4.0f64, 1 => 0.0..300.0f64],
        prop::option::weighted(0.5, any::<Index>()),
        1u32..5,
        prop::option::weighted(0.5, 0..DOMAINS.len()),
        prop_oneof![0.5..=1.0f64, 0.05..=1.0f64],
    )
        .prop_map(|(consumer, volume, budget, class_of, min_replicas, domain, max_fill)| PolicyGen {
            consumer,
            volume,
            budget,
            class_of,
            min_replicas,
            domain,
            max_fill,
        })
}

#[derive(Clone, Debug)]
struct RequestGen {
    /// `None` for a consumer that is not in the topology.
    consumer: Option<Index>,
    volume: bool,
    size_gib: u64,
    class: Option<usize>,
    /// `Some(None)` names a policy that does not exist.
    policy: Option<Option<Index>>,
}

fn request() -> impl Strategy<Value = RequestGen> {
    (
        prop::option::weighted(0.95, any::<Index>()),
        any::<bool>(),
        prop_oneof![1 => Just(0u64), 3 => 0u64..500, 3 => 0u64..6_000],
        prop::option::weighted(0.2, 0..CLASSES.len()),
        prop::option::weighted(0.2, prop::option::weighted(0.9, any::<Index>())),
    )
        .prop_map(|(consumer, volume, size_gib, class, policy)| RequestGen {
            consumer,
            volume,
            size_gib,
            class,
            policy,
        })
}

fn kind(volume: bool) -> RequestKind {
    if volume { RequestKind::Volume } else { RequestKind::Bucket }
}

#[allow(clippy::type_complexity)]
fn case() -> impl Strategy<Value = Case> {
    (1usize..6, 2usize..10)
        .prop_flat_map(|(n_sites, n_clusters)| {
            let pairs = n_clusters * (n_clusters - 1) / 2;
            (
                Just(n_sites),
                prop::collection::vec((0..n_sites, 0u8..3), n_clusters),
                prop::collection::vec(pool(), 1..40),
                // Per pair of clusters: maybe a link (p50, p99 - p50 or none, written backwards).
                prop::collection::vec(
                    prop::option::weighted(0.75, (rtt_ms(), prop::option::weighted(0.8, 0.0..20.0f64), any::<bool>())),
                    pairs,
                ),
                prop::collection::vec(policy(), 0..6),
                defaults(),
                prop::collection::vec((any::<Index>(), any::<Index>(), rtt_ms(), 0.0..5.0f64), 0..4),
                prop::collection::vec(request(), 1..8),
                any::<u64>(),
            )
        })
        .prop_map(|(n_sites, clusters, pools, links, policies, defaults, observed, requests, seed)| {
            build(n_sites, clusters, pools, links, policies, defaults, observed, requests, seed)
        })
}

#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn build(
    n_sites: usize,
    clusters: Vec<(usize, u8)>,
    pools: Vec<PoolGen>,
    links: Vec<Option<(f64, Option<f64>, bool)>>,
    policies: Vec<PolicyGen>,
    defaults: DefaultsSpec,
    observed: Vec<(Index, Index, f64, f64)>,
    requests: Vec<RequestGen>,
    seed: u64,
) -> Case {
    let n_clusters = clusters.len();
    let sites: Vec<SiteSpec> = (0..n_sites).map(|i| SiteSpec { name: format!("s{i}"), location: None }).collect();
    let clusters: Vec<ClusterSpec> = clusters
        .iter()
        .enumerate()
        .map(|(i, &(site, role))| ClusterSpec {
            name: cluster_name(i),
            site: format!("s{site}"),
            role: [Role::Control, Role::Compute, Role::Storage][role as usize],
        })
        .collect();
    let pools: Vec<PoolSpec> = pools
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let capacity = p.capacity_gib * GIB;
            PoolSpec {
                name: pool_name(i),
                cluster: cluster_name(p.cluster.index(n_clusters)),
                kind: if p.rbd { PoolKind::Rbd } else { PoolKind::S3Data },
                device_class: CLASSES[p.class].to_owned(),
                replicas: p.redundancy.0,
                erasure: p.redundancy.1,
                failure_domain: DOMAINS[p.domain],
                capacity: SizeSpec::from(capacity),
                used: SizeSpec::from(capacity / 1000 * p.used_permille),
            }
        })
        .collect();
    let mut link_specs = Vec::new();
    let mut n = 0;
    for a in 0..n_clusters {
        for b in a + 1..n_clusters {
            if let Some((p50, spread, backwards)) = links[n] {
                let (from, to) = if backwards { (b, a) } else { (a, b) };
                link_specs.push(LinkSpec {
                    from: cluster_name(from),
                    to: cluster_name(to),
                    rtt_p50_ms: p50,
                    rtt_p99_ms: spread.map(|s| p50 + s),
                    bandwidth_gbps: None,
                });
            }
            n += 1;
        }
    }
    let mut slots = Vec::new();
    let mut policy_specs = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        let consumer = p.consumer.map_or("*".to_owned(), |c| cluster_name(c.index(n_clusters)));
        let kind = kind(p.volume);
        if slots.contains(&(consumer.clone(), kind)) {
            continue; // one policy per consumer and kind
        }
        slots.push((consumer.clone(), kind));
        policy_specs.push(PolicySpec {
            name: format!("policy{i}"),
            consumer,
            kind,
            latency_budget_ms: p.budget,
            // A policy's class must be one some pool of its kind has (validation says so).
            device_class: p.class_of.and_then(|ix| {
                let of_kind: Vec<&PoolSpec> = pools.iter().filter(|q| q.kind == kind.pool_kind()).collect();
                (!of_kind.is_empty()).then(|| of_kind[ix.index(of_kind.len())].device_class.clone())
            }),
            min_replicas: p.min_replicas,
            failure_domain: p.domain.map(|d| DOMAINS[d]),
            max_fill: p.max_fill,
        });
    }
    let observed = observed
        .iter()
        .map(|(vantage, pool, p50, spread)| {
            let pool = &pools[pool.index(pools.len())];
            (
                cluster_name(vantage.index(n_clusters)),
                pool.cluster.clone(),
                pool.name.clone(),
                Rtt { p50_ms: *p50, p99_ms: p50 + spread },
            )
        })
        .collect();
    let requests = requests
        .iter()
        .map(|r| {
            let consumer = r.consumer.map_or("nowhere".to_owned(), |c| cluster_name(c.index(n_clusters)));
            let mut req = Request::new(consumer, kind(r.volume), r.size_gib * GIB);
            if let Some(c) = r.class {
                req = req.with_class(CLASSES[c]);
            }
            match r.policy {
                Some(Some(ix)) if !policy_specs.is_empty() => {
                    req = req.with_policy(policy_specs[ix.index(policy_specs.len())].name.clone());
                }
                Some(_) => req = req.with_policy("no-such-policy"),
                None => {}
            }
            req
        })
        .collect();
    let spec = TopologySpec { defaults, sites, clusters, pools, links: link_specs, policies: policy_specs };
    Case { spec, observed, requests, seed }
}

// ---------------------------------------------------------------------------------------------
// Running a case.

fn topology(case: &Case, spec: &TopologySpec) -> Topology {
    let mut topo = Topology::new(spec.clone()).unwrap_or_else(|e| panic!("a generated topology is invalid:\n{e}"));
    for (vantage, cluster, pool, rtt) in &case.observed {
        topo.observe_rtt(vantage, cluster, pool, *rtt).unwrap_or_else(|e| panic!("{e}"));
    }
    topo
}

/// The results of the requests, placed as one batch.
fn run(topo: &Topology, requests: &[Request]) -> Vec<Result<Decision, Refusal>> {
    let mut batch = Placement::new(topo);
    let mut results = Vec::with_capacity(requests.len());
    for r in requests {
        results.push(batch.choose_pool(r));
    }
    results
}

fn id(topo: &Topology, pool: u32) -> String {
    topo.pools()[pool as usize].id()
}

// ---------------------------------------------------------------------------------------------
// The model, from the spec alone.

/// What the governing policy asks, after the request's class override.
#[derive(Clone, Debug)]
struct Wants {
    budget: f64,
    class: Option<String>,
    min_replicas: u32,
    domain: Option<FailureDomain>,
    max_fill: f64,
}

struct Model<'a> {
    spec: &'a TopologySpec,
    observed: &'a [(String, String, String, Rtt)],
}

#[derive(Debug, PartialEq)]
enum Resolved {
    UnknownConsumer,
    UnknownPolicy,
    KindMismatch,
    Wants,
}

impl Model<'_> {
    fn rtt(&self, consumer: &str, pool: &PoolSpec) -> Option<Rtt> {
        if let Some((.., rtt)) =
            self.observed.iter().rev().find(|(v, c, p, _)| v == consumer && *c == pool.cluster && *p == pool.name)
        {
            return Some(*rtt);
        }
        if pool.cluster == consumer {
            let d = &self.spec.defaults;
            return Some(Rtt { p50_ms: d.intra_cluster_rtt_p50_ms, p99_ms: d.intra_cluster_rtt_p99_ms });
        }
        self.spec
            .links
            .iter()
            .find(|l| (l.from == consumer && l.to == pool.cluster) || (l.to == consumer && l.from == pool.cluster))
            .map(|l| Rtt { p50_ms: l.rtt_p50_ms, p99_ms: l.rtt_p99_ms.unwrap_or(l.rtt_p50_ms) })
    }

    fn wants(&self, req: &Request) -> (Resolved, Option<Wants>) {
        if !self.spec.clusters.iter().any(|c| c.name == req.consumer) {
            return (Resolved::UnknownConsumer, None);
        }
        let from_policy = |p: &PolicySpec| Wants {
            budget: p.latency_budget_ms,
            class: p.device_class.clone(),
            min_replicas: p.min_replicas,
            domain: p.failure_domain,
            max_fill: p.max_fill,
        };
        let policies = &self.spec.policies;
        let mut wants = if let Some(name) = &req.policy {
            match policies.iter().find(|p| &p.name == name) {
                None => return (Resolved::UnknownPolicy, None),
                Some(p) if p.kind != req.kind => return (Resolved::KindMismatch, None),
                Some(p) => from_policy(p),
            }
        } else if let Some(p) = policies.iter().find(|p| p.consumer == req.consumer && p.kind == req.kind) {
            from_policy(p)
        } else if let Some(p) = policies.iter().find(|p| p.consumer == "*" && p.kind == req.kind) {
            from_policy(p)
        } else {
            let d = &self.spec.defaults;
            Wants {
                budget: match req.kind {
                    RequestKind::Volume => d.volume_latency_budget_ms,
                    RequestKind::Bucket => d.bucket_latency_budget_ms,
                },
                class: None,
                min_replicas: d.min_replicas,
                domain: None,
                max_fill: d.max_fill,
            }
        };
        if let Some(c) = &req.device_class {
            wants.class = Some(c.clone());
        }
        (Resolved::Wants, Some(wants))
    }

    fn pool(&self, id: &str) -> &PoolSpec {
        self.spec
            .pools
            .iter()
            .find(|p| format!("{}/{}", p.cluster, p.name) == id)
            .unwrap_or_else(|| panic!("{id} is not in the spec"))
    }

    fn pools_of(&self, kind: RequestKind) -> impl Iterator<Item = &PoolSpec> {
        let want = match kind {
            RequestKind::Volume => PoolKind::Rbd,
            RequestKind::Bucket => PoolKind::S3Data,
        };
        self.spec.pools.iter().filter(move |p| p.kind == want)
    }
}

fn copies(pool: &PoolSpec) -> u32 {
    match (pool.replicas, pool.erasure) {
        (Some(n), _) => n,
        (None, Some(e)) => e.m + 1,
        (None, None) => panic!("a pool without redundancy validated"),
    }
}

fn domain_rank(fd: FailureDomain) -> usize {
    DOMAINS.iter().position(|d| *d == fd).unwrap_or_else(|| panic!("{fd}"))
}

fn bytes(s: SizeSpec) -> u64 {
    u64::try_from(s.0).unwrap_or_else(|_| panic!("negative size {s:?}"))
}

fn pool_id(p: &PoolSpec) -> String {
    format!("{}/{}", p.cluster, p.name)
}

/// How far a pool gets through the checks, numbered as the engine's `Verdict::stage`:
/// 1 class, 2 copies, 3 failure domain, 4 unreachable, 5 too far, 6 headroom, 7 eligible.
fn stage(wants: &Wants, pool: &PoolSpec, rtt: Option<Rtt>, fill_after: f64) -> u8 {
    if wants.class.as_ref().is_some_and(|c| *c != pool.device_class) {
        1
    } else if copies(pool) < wants.min_replicas {
        2
    } else if wants.domain.is_some_and(|d| domain_rank(pool.failure_domain) < domain_rank(d)) {
        3
    } else {
        match rtt {
            None => 4,
            Some(r) if r.p99_ms > wants.budget => 5,
            Some(_) if fill_after > wants.max_fill => 6,
            Some(_) => 7,
        }
    }
}

fn fill_after(pool: &PoolSpec, reserved: u64, size: u64) -> f64 {
    let capacity = bytes(pool.capacity);
    if capacity == 0 {
        return f64::INFINITY;
    }
    bytes(pool.used).saturating_add(reserved).saturating_add(size) as f64 / capacity as f64
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 192, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    /// Never a pool beyond the latency budget: the chosen pool's p99 RTT from the consumer,
    /// computed from the spec (measurement, else same cluster, else link), is within the
    /// governing policy's budget.
    #[test]
    fn chosen_pool_is_within_the_latency_budget(case in case()) {
        let topo = topology(&case, &case.spec);
        let model = Model { spec: &case.spec, observed: &case.observed };
        for (req, result) in case.requests.iter().zip(run(&topo, &case.requests)) {
            let Ok(d) = result else { continue };
            let pool = model.pool(&id(&topo, d.pool));
            let rtt = model.rtt(&req.consumer, pool);
            let (_, wants) = model.wants(req);
            let wants = wants.unwrap_or_else(|| panic!("placed without a policy: {req:?}"));
            prop_assert!(rtt.is_some(), "{} is unreachable from {}", pool_id(pool), req.consumer);
            let rtt = rtt.map_or(f64::INFINITY, |r| r.p99_ms);
            prop_assert!(rtt <= wants.budget, "{} at {rtt} ms, budget {} ms", pool_id(pool), wants.budget);
            prop_assert!(rtt <= d.policy.latency_budget_ms);
        }
    }

    /// Never past the headroom, even across a batch: with what the batch placed before it, the
    /// chosen pool stays within the policy's fill limit.
    #[test]
    fn a_batch_never_passes_the_fill_limit(case in case()) {
        let topo = topology(&case, &case.spec);
        let model = Model { spec: &case.spec, observed: &case.observed };
        let mut batch = Placement::new(&topo);
        let mut reserved: HashMap<String, u64> = HashMap::new();
        for req in &case.requests {
            let result = batch.choose_pool(req);
            let Ok(d) = result else { continue };
            let id = id(&topo, d.pool);
            let pool = model.pool(&id);
            let (_, wants) = model.wants(req);
            let wants = wants.unwrap_or_else(|| panic!("placed without a policy: {req:?}"));
            let before = reserved.get(&id).copied().unwrap_or(0);
            prop_assert_eq!(batch.reserved(d.pool), before + req.size, "the batch reserves what it placed");
            let capacity = bytes(pool.capacity);
            prop_assert!(capacity > 0, "placed on {id}, which has no capacity");
            let after = (bytes(pool.used) + before + req.size) as f64 / capacity as f64;
            prop_assert!(after <= wants.max_fill, "{id} would be {after} full, limit {}", wants.max_fill);
            *reserved.entry(id).or_default() += req.size;
        }
    }

    /// The same inputs give the same answer whatever order the sites, clusters, pools, links and
    /// policies are listed in (and whichever end a link is written from).
    #[test]
    fn the_answer_does_not_depend_on_listing_order(case in case()) {
        let mut shuffled = case.spec.clone();
        let mut rng = case.seed | 1;
        shuffle(&mut shuffled.sites, &mut rng);
        shuffle(&mut shuffled.clusters, &mut rng);
        shuffle(&mut shuffled.pools, &mut rng);
        shuffle(&mut shuffled.links, &mut rng);
        shuffle(&mut shuffled.policies, &mut rng);
        for l in &mut shuffled.links {
            if next(&mut rng).is_multiple_of(2) {
                std::mem::swap(&mut l.from, &mut l.to);
            }
        }
        let (a, b) = (topology(&case, &case.spec), topology(&case, &shuffled));
        let (ra, rb) = (run(&a, &case.requests), run(&b, &case.requests));
        for ((req, x), y) in case.requests.iter().zip(&ra).zip(&rb) {
            match (x, y) {
                (Ok(x), Ok(y)) => prop_assert_eq!(id(&a, x.pool), id(&b, y.pool), "{:?}", req),
                (Err(x), Err(y)) => {
                    prop_assert_eq!(x.code, y.code, "{:?}", req);
                    prop_assert_eq!(unlisted(&x.message), unlisted(&y.message));
                    prop_assert_eq!(x.nearest.map(|n| id(&a, n)), y.nearest.map(|n| id(&b, n)));
                }
                _ => prop_assert!(false, "{req:?}: {} vs {}", outcome(&a, x), outcome(&b, y)),
            }
            // The explanation too, row for row.
            prop_assert_eq!(unlisted(&Report::of(&a, x).render()), unlisted(&Report::of(&b, y).render()));
        }
    }

    /// A refusal names the nearest candidate whenever the topology has a pool of the kind: the
    /// refusal's `nearest` is set, and its message names that pool.
    #[test]
    fn a_refusal_names_the_nearest_candidate(case in case()) {
        let topo = topology(&case, &case.spec);
        let model = Model { spec: &case.spec, observed: &case.observed };
        for (req, result) in case.requests.iter().zip(run(&topo, &case.requests)) {
            let Err(r) = result else { continue };
            let (resolved, _) = model.wants(req);
            let any_of_kind = model.pools_of(req.kind).next().is_some();
            if resolved != Resolved::Wants {
                prop_assert_eq!(r.nearest, None, "refused before any pool was judged");
                continue;
            }
            if !any_of_kind {
                prop_assert_eq!(r.code, RefusalCode::NoPoolOfKind);
                prop_assert_eq!(r.nearest, None);
                continue;
            }
            prop_assert_ne!(r.code, RefusalCode::NoPoolOfKind, "{}", r.message);
            let nearest = r.nearest.map(|n| id(&topo, n));
            prop_assert!(nearest.is_some(), "{}: {} names no nearest candidate", r.code, r.message);
            let nearest = nearest.unwrap_or_default();
            prop_assert!(r.message.contains(&nearest), "{} does not name {nearest}", r.message);
            prop_assert_eq!(model.pool(&nearest).kind, req.kind.pool_kind());
        }
    }

    /// The chosen pool passes every check when re-checked from the spec: kind, device class,
    /// copies, failure domain (and it is reachable).
    #[test]
    fn the_chosen_pool_passes_every_check(case in case()) {
        let topo = topology(&case, &case.spec);
        let model = Model { spec: &case.spec, observed: &case.observed };
        for (req, result) in case.requests.iter().zip(run(&topo, &case.requests)) {
            let Ok(d) = result else { continue };
            let pool = model.pool(&id(&topo, d.pool));
            let (_, wants) = model.wants(req);
            let wants = wants.unwrap_or_else(|| panic!("placed without a policy: {req:?}"));
            prop_assert_eq!(pool.kind, req.kind.pool_kind());
            if let Some(class) = &wants.class {
                prop_assert_eq!(&pool.device_class, class);
            }
            if let Some(class) = &req.device_class {
                prop_assert_eq!(&pool.device_class, class, "the request's class overrides the policy's");
            }
            prop_assert!(copies(pool) >= wants.min_replicas, "{} keeps {} copies, wants {}", pool_id(pool), copies(pool), wants.min_replicas);
            if let Some(want) = wants.domain {
                prop_assert!(domain_rank(pool.failure_domain) >= domain_rank(want), "{} across {}s, wants {want}s", pool_id(pool), pool.failure_domain);
            }
            prop_assert!(model.rtt(&req.consumer, pool).is_some());
        }
    }

    /// Every answer is the model's: the refusal code is the one of the check that stopped the
    /// furthest candidate, a refusal means no pool passes every check, and a placement goes to
    /// the nearest latency band, then the emptiest pool, then the first by cluster/name. The
    /// nearest candidate of a refusal is the furthest through the checks, then the nearest (the
    /// emptiest for headroom).
    #[test]
    fn every_answer_is_the_models(case in case()) {
        let topo = topology(&case, &case.spec);
        let model = Model { spec: &case.spec, observed: &case.observed };
        let band = case.spec.defaults.latency_band_ms;
        let mut reserved: HashMap<String, u64> = HashMap::new();
        for (req, result) in case.requests.iter().zip(run(&topo, &case.requests)) {
            let (resolved, wants) = model.wants(req);
            let Some(wants) = wants else {
                let code = match resolved {
                    Resolved::UnknownConsumer => RefusalCode::UnknownConsumer,
                    Resolved::UnknownPolicy => RefusalCode::UnknownPolicy,
                    _ => RefusalCode::PolicyKindMismatch,
                };
                prop_assert_eq!(result.map_err(|r| r.code).err(), Some(code));
                continue;
            };
            // (stage, band, fill, p99, id) of each pool of the kind.
            let judged: Vec<(u8, u64, f64, f64, String)> = model
                .pools_of(req.kind)
                .map(|p| {
                    let rtt = model.rtt(&req.consumer, p);
                    let fill = fill_after(p, reserved.get(&pool_id(p)).copied().unwrap_or(0), req.size);
                    let s = stage(&wants, p, rtt, fill);
                    let p99 = rtt.map_or(f64::INFINITY, |r| r.p99_ms);
                    (s, rtt.map_or(u64::MAX, |r| (r.p99_ms / band) as u64), fill, p99, pool_id(p))
                })
                .collect();
            let furthest = judged.iter().map(|j| j.0).max();
            match (furthest, &result) {
                (Some(7), Ok(d)) => {
                    let best = judged
                        .iter()
                        .filter(|j| j.0 == 7)
                        .min_by(|x, y| x.1.cmp(&y.1).then(x.2.total_cmp(&y.2)).then(x.4.cmp(&y.4)))
                        .map(|j| j.4.clone());
                    let chosen = id(&topo, d.pool);
                    prop_assert_eq!(Some(&chosen), best.as_ref());
                    *reserved.entry(chosen).or_default() += req.size;
                }
                (Some(7), Err(r)) => prop_assert!(false, "refused ({}: {}) though a pool passes every check: {:?}", r.code, r.message, judged),
                (_, Ok(d)) => prop_assert!(false, "placed on {} though no pool passes every check: {:?}", id(&topo, d.pool), judged),
                (None, Err(r)) => prop_assert_eq!(r.code, RefusalCode::NoPoolOfKind),
                (Some(s), Err(r)) => {
                    let code = match s {
                        1 => RefusalCode::NoPoolOfClass,
                        2 | 3 => RefusalCode::NotDurableEnough,
                        4 | 5 => RefusalCode::NoPoolWithinBudget,
                        _ => RefusalCode::NoHeadroom,
                    };
                    prop_assert_eq!(r.code, code, "{} {:?}", r.message, judged);
                    let at_stage = judged.iter().filter(|j| j.0 == s);
                    let nearest = if s == 6 {
                        at_stage.min_by(|x, y| x.2.total_cmp(&y.2).then(x.4.cmp(&y.4)))
                    } else {
                        at_stage.min_by(|x, y| x.3.total_cmp(&y.3).then(x.4.cmp(&y.4)))
                    };
                    prop_assert_eq!(r.nearest.map(|n| id(&topo, n)), nearest.map(|j| j.4.clone()));
                }
            }
        }
    }
}

/// The message with the enumeration of VAULT-PL-006 (`(clusters: …)`) and VAULT-PL-007
/// (`(policies: …)`) sorted: those list names in file order, which is the one part of an answer
/// that follows the listing order (reported as a finding, not asserted here).
fn unlisted(message: &str) -> String {
    let mut out = message.to_owned();
    for marker in ["(clusters: ", "(policies: "] {
        if let Some(start) = out.find(marker) {
            let from = start + marker.len();
            if let Some(len) = out[from..].find(')') {
                let mut names: Vec<&str> = out[from..from + len].split(", ").collect();
                names.sort_unstable();
                let sorted = names.join(", ");
                out.replace_range(from..from + len, &sorted);
            }
        }
    }
    out
}

fn outcome(topo: &Topology, r: &Result<Decision, Refusal>) -> String {
    match r {
        Ok(d) => format!("placed on {}", id(topo, d.pool)),
        Err(r) => format!("refused {}: {}", r.code, r.message),
    }
}

fn next(state: &mut u64) -> u64 {
    // xorshift64: a seeded shuffle that proptest can replay.
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn shuffle<T>(v: &mut [T], rng: &mut u64) {
    for i in (1..v.len()).rev() {
        let j = (next(rng) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// The generator itself: every generated topology validates (the properties above would only
/// panic otherwise), and the Cyberun file survives a round trip through the spec types.
#[test]
fn generated_topologies_validate() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut pools = 0;
    let mut policies = 0;
    for _ in 0..64 {
        let case = case().new_tree(&mut runner).unwrap_or_else(|e| panic!("{e}")).current();
        let topo = Topology::new(case.spec.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(topo.pools().len(), case.spec.pools.len());
        assert_eq!(topo.links().len(), case.spec.links.len());
        pools += topo.pools().len();
        policies += topo.policies().len();
    }
    assert!(pools > 64 && policies > 0, "the generator is degenerate: {pools} pools, {policies} policies");
}
