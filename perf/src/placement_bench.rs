//! Placement decisions per second on a large synthetic topology (10,000 pools × 50 clusters by
//! default), next to a bare scan of the same pools measured in the same run: the floor any
//! decision that looks at every pool must pay.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cyvault_placement::{
    ClusterSpec, DefaultsSpec, ErasureSpec, FailureDomain, LinkSpec, Placement, PolicySpec, PoolKind, PoolSpec, Report,
    Request, RequestKind, Role, SiteSpec, SizeSpec, Topology, TopologySpec,
};
use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct PlacementBenchConfig {
    pub pools: usize,
    pub clusters: usize,
    pub decisions: usize,
    pub seed: u64,
}

impl Default for PlacementBenchConfig {
    fn default() -> Self {
        PlacementBenchConfig { pools: 10_000, clusters: 50, decisions: 2_000, seed: 7 }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PlacementBenchReport {
    pub pools: usize,
    pub clusters: usize,
    pub links: usize,
    pub decisions: usize,
    pub placed: usize,
    pub refused: usize,
    pub decisions_per_sec: f64,
    pub decision_p50_us: f64,
    pub decision_p99_us: f64,
    pub decision_max_us: f64,
    /// Microseconds of one bare pass over the pools (kind, class and fill of each, nothing
    /// recorded): the same-run baseline.
    pub scan_mean_us: f64,
    pub decision_mean_us: f64,
    /// Mean decision time over the bare scan.
    pub ratio_to_scan: f64,
    /// p99 decision time as a fraction of one millisecond.
    pub p99_fraction_of_1ms: f64,
    /// Microseconds to turn one decision into its full report (every candidate named).
    pub report_us: f64,
}

/// splitmix64: a small, seedable generator so topologies repeat run to run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const CLASSES: [&str; 3] = ["nvme", "ssd", "hdd"];

/// A federation of `clusters` clusters on `clusters / 5` sites spread around the globe, a third
/// of them compute, the rest storage holding `pools` pools, fully meshed by links whose RTT
/// grows with distance, plus a far-away edge cluster, and a volume and a bucket policy per
/// compute cluster.
pub fn synthetic_topology(cfg: &PlacementBenchConfig) -> TopologySpec {
    let mut rng = Rng(cfg.seed);
    let clusters = cfg.clusters.max(2);
    let sites = (clusters / 5).max(1);
    let mut spec = TopologySpec { defaults: DefaultsSpec::default(), ..Default::default() };
    // Each site sits at a position on a 0..200 ms ring.
    let pos: Vec<f64> = (0..sites).map(|_| rng.below(20_000) as f64 / 100.0).collect();
    for s in 0..sites {
        spec.sites.push(SiteSpec { name: format!("site-{s}"), location: None });
    }
    let role = |c: usize| if c.is_multiple_of(3) { Role::Compute } else { Role::Storage };
    for c in 0..clusters {
        spec.clusters.push(ClusterSpec { name: format!("c{c}"), site: format!("site-{}", c % sites), role: role(c) });
    }
    let storage: Vec<usize> = (0..clusters).filter(|&c| role(c) == Role::Storage).collect();
    for p in 0..cfg.pools {
        let c = storage[p % storage.len()];
        let capacity: u64 = (1 + rng.below(500)) << 40;
        let used = capacity / 100 * rng.below(95);
        let ec = rng.below(4) == 0;
        spec.pools.push(PoolSpec {
            name: format!("pool-{p}"),
            cluster: format!("c{c}"),
            kind: if rng.below(2) == 0 { PoolKind::Rbd } else { PoolKind::S3Data },
            device_class: CLASSES[rng.below(3) as usize].into(),
            replicas: (!ec).then(|| 2 + rng.below(2) as u32),
            erasure: ec.then_some(ErasureSpec { k: 4, m: 2 }),
            failure_domain: if rng.below(5) == 0 { FailureDomain::Rack } else { FailureDomain::Host },
            capacity: SizeSpec::from(capacity),
            used: SizeSpec::from(used),
        });
    }
    for a in 0..clusters {
        for b in a + 1..clusters {
            let (sa, sb) = (a % sites, b % sites);
            let d = (pos[sa] - pos[sb]).abs();
            let p50 = if sa == sb { 0.3 + rng.below(70) as f64 / 100.0 } else { d.min(200.0 - d) + 1.0 };
            spec.links.push(LinkSpec {
                from: format!("c{a}"),
                to: format!("c{b}"),
                rtt_p50_ms: p50,
                rtt_p99_ms: Some(p50 * 1.5),
                bandwidth_gbps: Some(10.0),
            });
        }
    }
    // One edge cluster on a site of its own, an ocean away from every pool: its volumes are
    // refused (so the benchmark times refusals too), its buckets placed.
    spec.sites.push(SiteSpec { name: "edge-site".into(), location: None });
    spec.clusters.push(ClusterSpec { name: "edge".into(), site: "edge-site".into(), role: Role::Compute });
    for c in 0..clusters {
        let p50 = 80.0 + rng.below(4000) as f64 / 100.0;
        spec.links.push(LinkSpec {
            from: "edge".into(),
            to: format!("c{c}"),
            rtt_p50_ms: p50,
            rtt_p99_ms: Some(p50 * 1.2),
            bandwidth_gbps: Some(1.0),
        });
    }
    let consumers = (0..clusters).filter(|&c| role(c) == Role::Compute).map(|c| format!("c{c}"));
    for consumer in consumers.chain(["edge".to_string()]) {
        spec.policies.push(PolicySpec {
            name: format!("{consumer}-volumes"),
            consumer: consumer.clone(),
            kind: RequestKind::Volume,
            latency_budget_ms: 2.0,
            device_class: Some("nvme".into()),
            min_replicas: 3,
            failure_domain: Some(FailureDomain::Host),
            max_fill: 0.85,
        });
        spec.policies.push(PolicySpec {
            name: format!("{consumer}-buckets"),
            consumer: consumer.clone(),
            kind: RequestKind::Bucket,
            latency_budget_ms: 150.0,
            device_class: None,
            min_replicas: 3,
            failure_domain: None,
            max_fill: 0.9,
        });
    }
    spec
}

fn requests(cfg: &PlacementBenchConfig, topo: &Topology) -> Vec<Request> {
    let mut rng = Rng(cfg.seed ^ 0xABCD);
    let consumers: Vec<String> =
        topo.clusters().iter().filter(|c| c.role == Role::Compute).map(|c| c.name.clone()).collect();
    (0..cfg.decisions)
        .map(|_| {
            let consumer = consumers[rng.below(consumers.len() as u64) as usize].clone();
            let kind = if rng.below(2) == 0 { RequestKind::Volume } else { RequestKind::Bucket };
            let size = (1 + rng.below(500)) << 30;
            let mut r = Request::new(consumer, kind, if kind == RequestKind::Bucket { 0 } else { size });
            if rng.below(4) == 0 {
                r = r.with_class(CLASSES[rng.below(3) as usize]);
            }
            r
        })
        .collect()
}

/// The baseline: one pass over the pools doing the per-pool arithmetic every decision needs
/// (kind, class, copies, fill), keeping only a running best.
fn bare_scan(topo: &Topology, req: &Request) -> Option<usize> {
    let kind = req.kind.pool_kind();
    let mut best: Option<(f64, usize)> = None;
    for (i, p) in topo.pools().iter().enumerate() {
        if p.kind != kind || req.device_class.as_ref().is_some_and(|c| *c != p.device_class) {
            continue;
        }
        let fill = (p.used + req.size) as f64 / p.capacity.max(1) as f64;
        if p.redundancy.copies() >= 2 && fill <= 0.85 && best.is_none_or(|b| fill < b.0) {
            best = Some((fill, i));
        }
    }
    best.map(|b| b.1)
}

pub fn run(cfg: &PlacementBenchConfig) -> Result<PlacementBenchReport, String> {
    let topo = Topology::new(synthetic_topology(cfg)).map_err(|e| e.to_string())?;
    let reqs = requests(cfg, &topo);
    // Warm up caches and the allocator on a few decisions.
    for r in reqs.iter().take(20) {
        let _ = black_box(Placement::new(&topo).choose_pool(r));
        black_box(bare_scan(&topo, r));
    }

    let t = Instant::now();
    for r in &reqs {
        black_box(bare_scan(&topo, black_box(r)));
    }
    let scan = t.elapsed();

    let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).map_err(|e| e.to_string())?;
    let mut batch = Placement::new(&topo);
    let (mut placed, mut refused) = (0, 0);
    let mut last = None;
    let t = Instant::now();
    for r in &reqs {
        let s = Instant::now();
        let d = black_box(batch.choose_pool(black_box(r)));
        let _ = hist.record((s.elapsed().as_nanos() as u64).max(1));
        if d.is_ok() {
            placed += 1;
        } else {
            refused += 1;
        }
        last = Some(d);
    }
    let decide = t.elapsed();

    let report_us = match &last {
        Some(d) => {
            let s = Instant::now();
            black_box(Report::of(&topo, d));
            s.elapsed().as_secs_f64() * 1e6
        }
        None => 0.0,
    };
    let n = reqs.len().max(1) as f64;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let decision_mean_us = us(decide) / n;
    let scan_mean_us = us(scan) / n;
    Ok(PlacementBenchReport {
        pools: topo.pools().len(),
        clusters: topo.clusters().len(),
        links: topo.links().len(),
        decisions: reqs.len(),
        placed,
        refused,
        decisions_per_sec: n / decide.as_secs_f64().max(1e-9),
        decision_p50_us: hist.value_at_quantile(0.5) as f64 / 1000.0,
        decision_p99_us: hist.value_at_quantile(0.99) as f64 / 1000.0,
        decision_max_us: hist.max() as f64 / 1000.0,
        scan_mean_us,
        decision_mean_us,
        ratio_to_scan: decision_mean_us / scan_mean_us.max(1e-9),
        p99_fraction_of_1ms: hist.value_at_quantile(0.99) as f64 / 1e6,
        report_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_topology_is_valid_and_decides_both_ways() {
        let cfg = PlacementBenchConfig { pools: 300, clusters: 12, decisions: 200, seed: 1 };
        let r = match run(&cfg) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(r.pools, 300);
        assert_eq!(r.clusters, 13);
        assert_eq!(r.links, 12 * 11 / 2 + 12);
        assert_eq!(r.placed + r.refused, 200);
        // A mix: some requests fit, some are refused (volumes from clusters with no near pool).
        assert!(r.placed > 0 && r.refused > 0, "{r:?}");
    }
}
