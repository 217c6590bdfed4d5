//! Turning a [`TopologySpec`] into a [`Topology`], reporting every problem at once.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::model::*;

/// Problems a topology file can have; the code is stable for operators (docs/errors.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyErrorKind {
    /// The file is not TOML of the expected shape.
    Syntax,
    /// Two sites, clusters, pools (in one cluster), links or policies share a name.
    Duplicate,
    /// A name refers to a site or cluster that is not defined.
    UnknownReference,
    /// A number is negative, zero where it must not be, or out of range.
    BadNumber,
    /// Fields that contradict each other.
    Inconsistent,
}

impl TopologyErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            TopologyErrorKind::Syntax => "VAULT-PL-100",
            TopologyErrorKind::Duplicate => "VAULT-PL-101",
            TopologyErrorKind::UnknownReference => "VAULT-PL-102",
            TopologyErrorKind::BadNumber => "VAULT-PL-103",
            TopologyErrorKind::Inconsistent => "VAULT-PL-104",
        }
    }
}

/// One problem in a topology, with the entry it is about (`pool auxiliary/rbd-nvme`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {subject}: {message}", kind.code())]
pub struct TopologyError {
    pub kind: TopologyErrorKind,
    pub subject: String,
    pub message: String,
}

/// All problems found in a topology (never empty).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct TopologyErrors(pub Vec<TopologyError>);

impl fmt::Display for TopologyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{} in the topology", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

struct Errs(Vec<TopologyError>);

impl Errs {
    fn push(&mut self, kind: TopologyErrorKind, subject: impl Into<String>, message: impl Into<String>) {
        self.0.push(TopologyError { kind, subject: subject.into(), message: message.into() });
    }
}

fn known(names: &[&str]) -> String {
    if names.is_empty() { "none are defined".into() } else { format!("defined: {}", names.join(", ")) }
}

fn ms_ok(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

impl Topology {
    /// Parses and validates a topology file.
    pub fn from_toml(text: &str) -> Result<Topology, TopologyErrors> {
        let spec: TopologySpec = toml::from_str(text).map_err(|e| {
            TopologyErrors(vec![TopologyError {
                kind: TopologyErrorKind::Syntax,
                subject: "file".into(),
                message: e.to_string().trim_end().replace('\n', "\n    "),
            }])
        })?;
        Topology::new(spec)
    }

    /// Validates a topology, reporting every problem found.
    pub fn new(spec: TopologySpec) -> Result<Topology, TopologyErrors> {
        use TopologyErrorKind::*;
        let mut errs = Errs(Vec::new());
        let d = &spec.defaults;
        for (field, v) in [
            ("volume_latency_budget_ms", d.volume_latency_budget_ms),
            ("bucket_latency_budget_ms", d.bucket_latency_budget_ms),
            ("intra_cluster_rtt_p50_ms", d.intra_cluster_rtt_p50_ms),
            ("intra_cluster_rtt_p99_ms", d.intra_cluster_rtt_p99_ms),
        ] {
            if !ms_ok(v) {
                errs.push(
                    BadNumber,
                    "defaults",
                    format!("{field} must be a non-negative number of milliseconds, got {v}"),
                );
            }
        }
        if !(d.latency_band_ms.is_finite() && d.latency_band_ms > 0.0) {
            errs.push(BadNumber, "defaults", format!("latency_band_ms must be positive, got {}", d.latency_band_ms));
        }
        if !(d.max_fill > 0.0 && d.max_fill <= 1.0) {
            errs.push(BadNumber, "defaults", format!("max_fill must be in (0, 1], got {}", d.max_fill));
        }
        if d.min_replicas == 0 {
            errs.push(BadNumber, "defaults", "min_replicas must be at least 1");
        }
        if d.intra_cluster_rtt_p99_ms < d.intra_cluster_rtt_p50_ms {
            errs.push(Inconsistent, "defaults", "intra_cluster_rtt_p99_ms is below intra_cluster_rtt_p50_ms");
        }

        let mut site_names = HashSet::new();
        for s in &spec.sites {
            if s.name.is_empty() {
                errs.push(BadNumber, "site", "name is empty");
            } else if !site_names.insert(s.name.as_str()) {
                errs.push(Duplicate, format!("site {}", s.name), "defined twice");
            }
        }
        let sites_list: Vec<&str> = spec.sites.iter().map(|s| s.name.as_str()).collect();

        let mut cluster_ix: HashMap<String, u32> = HashMap::new();
        for c in &spec.clusters {
            let subject = format!("cluster {}", c.name);
            if c.name.is_empty() || c.name == "*" {
                errs.push(BadNumber, subject, "a cluster needs a name (and `*` is reserved for policies)");
                continue;
            }
            if cluster_ix.contains_key(&c.name) {
                errs.push(Duplicate, subject, "defined twice");
                continue;
            }
            if !site_names.contains(c.site.as_str()) {
                errs.push(UnknownReference, subject, format!("unknown site {:?} ({})", c.site, known(&sites_list)));
            }
            cluster_ix.insert(c.name.clone(), cluster_ix.len() as u32);
        }
        let clusters: Vec<Cluster> = {
            let mut seen = HashSet::new();
            spec.clusters
                .iter()
                .filter(|c| !c.name.is_empty() && c.name != "*" && seen.insert(c.name.as_str()))
                .map(|c| Cluster { name: c.name.clone(), site: c.site.clone(), role: c.role })
                .collect()
        };
        let cluster_list: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();

        let mut pools = Vec::new();
        let mut pool_cluster = Vec::new();
        let mut pool_ix: HashMap<(String, String), u32> = HashMap::new();
        for p in &spec.pools {
            let subject = format!("pool {}/{}", p.cluster, p.name);
            let before = errs.0.len();
            if p.name.is_empty() {
                errs.push(BadNumber, subject.clone(), "name is empty");
            }
            let ci = cluster_ix.get(&p.cluster).copied();
            if ci.is_none() {
                errs.push(
                    UnknownReference,
                    subject.clone(),
                    format!("unknown cluster {:?} ({})", p.cluster, known(&cluster_list)),
                );
            }
            if pool_ix.contains_key(&(p.cluster.clone(), p.name.clone())) {
                errs.push(Duplicate, subject.clone(), "defined twice in the same cluster");
            }
            if p.device_class.is_empty() {
                errs.push(BadNumber, subject.clone(), "device_class is empty");
            }
            let redundancy = match (p.replicas, p.erasure) {
                (Some(_), Some(_)) => {
                    errs.push(Inconsistent, subject.clone(), "give either replicas or erasure, not both");
                    None
                }
                (None, None) => {
                    errs.push(Inconsistent, subject.clone(), "give replicas = N or erasure = { k = K, m = M }");
                    None
                }
                (Some(0), None) => {
                    errs.push(BadNumber, subject.clone(), "replicas must be at least 1");
                    None
                }
                (Some(size), None) => Some(Redundancy::Replicated { size }),
                (None, Some(ErasureSpec { k, m })) if k == 0 || m == 0 => {
                    errs.push(
                        BadNumber,
                        subject.clone(),
                        format!("erasure k and m must be at least 1, got k={k} m={m}"),
                    );
                    None
                }
                (None, Some(ErasureSpec { k, m })) => Some(Redundancy::Erasure { k, m }),
            };
            let size = |what: &str, v: i128, errs: &mut Errs| -> Option<u64> {
                match u64::try_from(v) {
                    Ok(v) => Some(v),
                    Err(_) => {
                        errs.push(BadNumber, subject.clone(), format!("{what} must not be negative, got {v}"));
                        None
                    }
                }
            };
            let capacity = size("capacity", p.capacity.0, &mut errs);
            let used = size("used", p.used.0, &mut errs);
            if let (Some(c), Some(u)) = (capacity, used)
                && u > c
            {
                errs.push(
                    Inconsistent,
                    subject.clone(),
                    format!("used ({}) exceeds capacity ({})", crate::format_size(u), crate::format_size(c)),
                );
            }
            if errs.0.len() > before {
                continue;
            }
            let (Some(ci), Some(redundancy), Some(capacity), Some(used)) = (ci, redundancy, capacity, used) else {
                continue;
            };
            pool_ix.insert((p.cluster.clone(), p.name.clone()), pools.len() as u32);
            pool_cluster.push(ci);
            pools.push(Pool {
                name: p.name.clone(),
                cluster: p.cluster.clone(),
                kind: p.kind,
                device_class: p.device_class.clone(),
                redundancy,
                failure_domain: p.failure_domain,
                capacity,
                used,
            });
        }

        let mut links = Vec::new();
        let mut rtt = HashMap::new();
        for l in &spec.links {
            let subject = format!("link {}<->{}", l.from, l.to);
            let before = errs.0.len();
            let a = cluster_ix.get(&l.from).copied();
            let b = cluster_ix.get(&l.to).copied();
            for (end, ix) in [(&l.from, a), (&l.to, b)] {
                if ix.is_none() {
                    errs.push(
                        UnknownReference,
                        subject.clone(),
                        format!("unknown cluster {end:?} ({})", known(&cluster_list)),
                    );
                }
            }
            if l.from == l.to {
                errs.push(
                    Inconsistent,
                    subject.clone(),
                    "a link joins two different clusters (use defaults.intra_cluster_rtt_* within one)",
                );
            }
            let p99 = l.rtt_p99_ms.unwrap_or(l.rtt_p50_ms);
            if !ms_ok(l.rtt_p50_ms) || !ms_ok(p99) {
                errs.push(
                    BadNumber,
                    subject.clone(),
                    format!("RTTs must be non-negative milliseconds, got p50 {} p99 {p99}", l.rtt_p50_ms),
                );
            } else if p99 < l.rtt_p50_ms {
                errs.push(
                    Inconsistent,
                    subject.clone(),
                    format!("rtt_p99_ms ({p99}) is below rtt_p50_ms ({})", l.rtt_p50_ms),
                );
            }
            if let Some(bw) = l.bandwidth_gbps
                && !(bw.is_finite() && bw > 0.0)
            {
                errs.push(BadNumber, subject.clone(), format!("bandwidth_gbps must be positive, got {bw}"));
            }
            if let (Some(a), Some(b)) = (a, b)
                && rtt.contains_key(&(a, b))
            {
                errs.push(
                    Duplicate,
                    subject.clone(),
                    "these clusters are already linked (links serve both directions)",
                );
            }
            if errs.0.len() > before {
                continue;
            }
            let (Some(a), Some(b)) = (a, b) else { continue };
            let r = Rtt { p50_ms: l.rtt_p50_ms, p99_ms: p99 };
            rtt.insert((a, b), r);
            rtt.insert((b, a), r);
            links.push(Link { a: l.from.clone(), b: l.to.clone(), rtt: r, bandwidth_gbps: l.bandwidth_gbps });
        }

        let mut policies: Vec<Policy> = Vec::new();
        let mut policy_names = HashSet::new();
        let mut policy_slots = HashSet::new();
        for p in &spec.policies {
            let subject = format!("policy {}", p.name);
            let before = errs.0.len();
            if p.name.is_empty() {
                errs.push(BadNumber, subject.clone(), "name is empty");
            } else if !policy_names.insert(p.name.as_str()) {
                errs.push(Duplicate, subject.clone(), "defined twice");
            }
            if p.consumer != "*" && !cluster_ix.contains_key(&p.consumer) {
                errs.push(
                    UnknownReference,
                    subject.clone(),
                    format!("unknown consumer cluster {:?} ({}, or *)", p.consumer, known(&cluster_list)),
                );
            }
            if !policy_slots.insert((p.consumer.as_str(), p.kind)) {
                errs.push(
                    Duplicate,
                    subject.clone(),
                    format!("another policy is already the one for {} {}s", p.consumer, p.kind),
                );
            }
            if !ms_ok(p.latency_budget_ms) {
                errs.push(
                    BadNumber,
                    subject.clone(),
                    format!("latency_budget_ms must be non-negative, got {}", p.latency_budget_ms),
                );
            }
            if p.min_replicas == 0 {
                errs.push(BadNumber, subject.clone(), "min_replicas must be at least 1");
            }
            if !(p.max_fill > 0.0 && p.max_fill <= 1.0) {
                errs.push(BadNumber, subject.clone(), format!("max_fill must be in (0, 1], got {}", p.max_fill));
            }
            let of_kind = || spec.pools.iter().filter(|pool| pool.kind == p.kind.pool_kind());
            if let Some(class) = &p.device_class
                && !of_kind().any(|pool| &pool.device_class == class)
            {
                let mut classes: Vec<&str> = of_kind().map(|p| p.device_class.as_str()).collect();
                classes.sort_unstable();
                classes.dedup();
                errs.push(
                    UnknownReference,
                    subject.clone(),
                    format!("no {} pool has device class {class:?} ({})", p.kind.pool_kind(), known(&classes)),
                );
            }
            if errs.0.len() > before {
                continue;
            }
            policies.push(Policy {
                name: p.name.clone(),
                consumer: p.consumer.clone(),
                kind: p.kind,
                latency_budget_ms: p.latency_budget_ms,
                device_class: p.device_class.clone(),
                min_replicas: p.min_replicas,
                failure_domain: p.failure_domain,
                max_fill: p.max_fill,
            });
        }

        if !errs.0.is_empty() {
            return Err(TopologyErrors(errs.0));
        }
        let mut order: Vec<u32> = (0..pools.len() as u32).collect();
        order.sort_by(|&a, &b| {
            let (pa, pb) = (&pools[a as usize], &pools[b as usize]);
            (&pa.cluster, &pa.name).cmp(&(&pb.cluster, &pb.name))
        });
        let mut pool_rank = vec![0u32; pools.len()];
        for (rank, &i) in order.iter().enumerate() {
            pool_rank[i as usize] = rank as u32;
        }
        let mut by_kind = [Vec::new(), Vec::new()];
        for (i, p) in pools.iter().enumerate() {
            by_kind[usize::from(p.kind == PoolKind::S3Data)].push(i as u32);
        }
        Ok(Topology {
            defaults: spec.defaults,
            sites: spec.sites.iter().map(|s| Site { name: s.name.clone(), location: s.location.clone() }).collect(),
            clusters,
            pools,
            links,
            policies,
            cluster_ix,
            pool_cluster,
            pool_rank,
            pool_ix,
            rtt,
            measured: HashMap::new(),
            by_kind,
        })
    }
}
