//! The topology: sites, clusters, pools, links and policies, as written in a topology file
//! (`*Spec`, serde) and as the engine uses them ([`Topology`], validated and indexed).

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::size::SizeSpec;

/// What a cluster is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Control,
    Compute,
    Storage,
}

/// What a pool serves: RBD images (volumes) or the gateway's object data (buckets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PoolKind {
    #[serde(rename = "rbd")]
    Rbd,
    #[serde(rename = "s3-data")]
    S3Data,
}

impl fmt::Display for PoolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolKind::Rbd => "rbd",
            PoolKind::S3Data => "s3-data",
        })
    }
}

/// What a consumer asks for: a block volume (from the CSI driver) or a bucket (from the gateway).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    Volume,
    Bucket,
}

impl RequestKind {
    /// The kind of pool that serves this kind of request.
    pub fn pool_kind(self) -> PoolKind {
        match self {
            RequestKind::Volume => PoolKind::Rbd,
            RequestKind::Bucket => PoolKind::S3Data,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Volume => "volume",
            RequestKind::Bucket => "bucket",
        }
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CRUSH level across which a pool's copies are spread, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum FailureDomain {
    Osd,
    Host,
    Rack,
    Room,
    Datacenter,
    Region,
}

impl fmt::Display for FailureDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureDomain::Osd => "osd",
            FailureDomain::Host => "host",
            FailureDomain::Rack => "rack",
            FailureDomain::Room => "room",
            FailureDomain::Datacenter => "datacenter",
            FailureDomain::Region => "region",
        })
    }
}

/// How a pool keeps data safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Redundancy {
    /// `size` full copies.
    Replicated { size: u32 },
    /// `k` data chunks and `m` coding chunks.
    Erasure { k: u32, m: u32 },
}

impl Redundancy {
    /// Copies in the replica sense: how many failure domains may fail, plus one. A 3-replica pool
    /// and an EC 4+2 pool both count 3, since each survives losing two failure domains.
    pub fn copies(self) -> u32 {
        match self {
            Redundancy::Replicated { size } => size,
            Redundancy::Erasure { m, .. } => m.saturating_add(1),
        }
    }
}

impl fmt::Display for Redundancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Redundancy::Replicated { size } => write!(f, "{size}x"),
            Redundancy::Erasure { k, m } => write!(f, "ec{k}+{m}"),
        }
    }
}

/// Round-trip time between two places, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rtt {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

// ---------------------------------------------------------------------------------------------
// The file format.

/// A topology file. Every list is an array of tables (`[[pool]]`), so entries read one by one.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    #[serde(default)]
    pub defaults: DefaultsSpec,
    #[serde(default, rename = "site")]
    pub sites: Vec<SiteSpec>,
    #[serde(default, rename = "cluster")]
    pub clusters: Vec<ClusterSpec>,
    #[serde(default, rename = "pool")]
    pub pools: Vec<PoolSpec>,
    #[serde(default, rename = "link")]
    pub links: Vec<LinkSpec>,
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicySpec>,
}

/// Engine-wide settings, and the policies used when no `[[policy]]` matches a request.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultsSpec {
    /// Latency budget (p99 RTT) of a volume when no policy matches.
    pub volume_latency_budget_ms: f64,
    /// Latency budget of a bucket when no policy matches: S3 tolerates a WAN.
    pub bucket_latency_budget_ms: f64,
    /// Copies a pool must keep when no policy matches.
    pub min_replicas: u32,
    /// The fill ratio no placement may push a pool past when no policy matches.
    pub max_fill: f64,
    /// RTT to a pool in the consumer's own cluster when nothing was measured.
    pub intra_cluster_rtt_p50_ms: f64,
    pub intra_cluster_rtt_p99_ms: f64,
    /// Pools whose p99 RTTs fall in the same band of this width count as equally near; among
    /// them the emptiest wins, so a few microseconds never pile every volume on one pool.
    pub latency_band_ms: f64,
}

impl Default for DefaultsSpec {
    fn default() -> Self {
        DefaultsSpec {
            volume_latency_budget_ms: 2.0,
            bucket_latency_budget_ms: 250.0,
            min_replicas: 2,
            max_fill: 0.85,
            intra_cluster_rtt_p50_ms: 0.1,
            intra_cluster_rtt_p99_ms: 0.3,
            latency_band_ms: 0.5,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    pub name: String,
    /// Free text for people (`"New York, US"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    pub name: String,
    pub site: String,
    pub role: Role,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// The Ceph pool name (unique within its cluster).
    pub name: String,
    pub cluster: String,
    pub kind: PoolKind,
    pub device_class: String,
    /// Replica count (`size`); give this or `erasure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erasure: Option<ErasureSpec>,
    pub failure_domain: FailureDomain,
    /// Usable bytes (what `ceph df` calls STORED + MAX AVAIL).
    pub capacity: SizeSpec,
    #[serde(default)]
    pub used: SizeSpec,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureSpec {
    pub k: u32,
    pub m: u32,
}

/// A network path between two clusters; it serves both directions.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    pub from: String,
    pub to: String,
    pub rtt_p50_ms: f64,
    /// Defaults to `rtt_p50_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_p99_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_gbps: Option<f64>,
}

/// What one consumer (a cluster, or `*` for all) requires of the pools its volumes or buckets
/// land on.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub name: String,
    /// A cluster name, or `*` for every consumer without a policy of its own.
    pub consumer: String,
    pub kind: RequestKind,
    /// The largest p99 RTT from the consumer to the pool's cluster.
    pub latency_budget_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_class: Option<String>,
    #[serde(default = "one")]
    pub min_replicas: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_domain: Option<FailureDomain>,
    #[serde(default = "default_max_fill")]
    pub max_fill: f64,
}

fn one() -> u32 {
    1
}

fn default_max_fill() -> f64 {
    DefaultsSpec::default().max_fill
}

// ---------------------------------------------------------------------------------------------
// The validated form.

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Site {
    pub name: String,
    pub location: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cluster {
    pub name: String,
    pub site: String,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pool {
    pub name: String,
    pub cluster: String,
    pub kind: PoolKind,
    pub device_class: String,
    pub redundancy: Redundancy,
    pub failure_domain: FailureDomain,
    pub capacity: u64,
    pub used: u64,
}

impl Pool {
    /// `cluster/name`, how pools are shown to people.
    pub fn id(&self) -> String {
        format!("{}/{}", self.cluster, self.name)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Link {
    pub a: String,
    pub b: String,
    pub rtt: Rtt,
    pub bandwidth_gbps: Option<f64>,
}

/// A validated policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Policy {
    pub name: String,
    pub consumer: String,
    pub kind: RequestKind,
    pub latency_budget_ms: f64,
    pub device_class: Option<String>,
    pub min_replicas: u32,
    pub failure_domain: Option<FailureDomain>,
    pub max_fill: f64,
}

/// Where a pool's RTT came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LatencySource {
    /// A probe from the consumer's cluster to this very pool.
    Measured,
    /// A `[[link]]` between the clusters.
    Link,
    /// The pool is in the consumer's own cluster.
    Local,
}

/// A validated topology, indexed for the engine. Build it with [`Topology::new`] or
/// [`Topology::from_toml`]; refresh it with [`Topology::set_usage`] and [`Topology::observe_rtt`].
#[derive(Clone, Debug)]
pub struct Topology {
    pub(crate) defaults: DefaultsSpec,
    pub(crate) sites: Vec<Site>,
    pub(crate) clusters: Vec<Cluster>,
    pub(crate) pools: Vec<Pool>,
    pub(crate) links: Vec<Link>,
    pub(crate) policies: Vec<Policy>,
    pub(crate) cluster_ix: HashMap<String, u32>,
    /// The cluster of each pool, by index.
    pub(crate) pool_cluster: Vec<u32>,
    /// Each pool's position in (cluster, name) order: the last tie-breaker, independent of the
    /// order pools were listed in.
    pub(crate) pool_rank: Vec<u32>,
    pub(crate) pool_ix: HashMap<(String, String), u32>,
    /// RTT between clusters, both orders.
    pub(crate) rtt: HashMap<(u32, u32), Rtt>,
    /// Measured RTT from a cluster to a pool, overriding the link.
    pub(crate) measured: HashMap<(u32, u32), Rtt>,
    /// Pool indexes by kind (rbd, s3-data).
    pub(crate) by_kind: [Vec<u32>; 2],
}

impl Topology {
    pub fn defaults(&self) -> &DefaultsSpec {
        &self.defaults
    }
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }
    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }
    pub fn links(&self) -> &[Link] {
        &self.links
    }
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.cluster_ix.get(name).map(|&i| &self.clusters[i as usize])
    }

    /// The pool `name` of `cluster`.
    pub fn pool(&self, cluster: &str, name: &str) -> Option<&Pool> {
        self.pool_index(cluster, name).map(|i| &self.pools[i])
    }

    pub(crate) fn pool_index(&self, cluster: &str, name: &str) -> Option<usize> {
        self.pool_ix.get(&(cluster.to_owned(), name.to_owned())).map(|&i| i as usize)
    }

    /// Replaces a pool's capacity and used bytes with fresh numbers (from `ceph df`).
    pub fn set_usage(&mut self, cluster: &str, pool: &str, capacity: u64, used: u64) -> Result<(), UnknownPool> {
        let i = self.pool_index(cluster, pool).ok_or_else(|| UnknownPool(format!("{cluster}/{pool}")))?;
        self.pools[i].capacity = capacity;
        self.pools[i].used = used;
        Ok(())
    }

    /// Records a measured RTT from `vantage` (a cluster) to a pool; it overrides the link for
    /// requests from that cluster.
    pub fn observe_rtt(&mut self, vantage: &str, cluster: &str, pool: &str, rtt: Rtt) -> Result<(), UnknownPool> {
        if !(rtt.p50_ms.is_finite() && rtt.p50_ms >= 0.0 && rtt.p99_ms.is_finite() && rtt.p99_ms >= rtt.p50_ms) {
            return Err(UnknownPool(format!(
                "a measured RTT of p50 {} ms, p99 {} ms (not finite, negative or p99 below p50)",
                rtt.p50_ms, rtt.p99_ms
            )));
        }
        let v = *self.cluster_ix.get(vantage).ok_or_else(|| UnknownPool(format!("cluster {vantage}")))?;
        let i = self.pool_index(cluster, pool).ok_or_else(|| UnknownPool(format!("{cluster}/{pool}")))?;
        self.measured.insert((v, i as u32), rtt);
        Ok(())
    }

    /// Indexes of the pools of one kind, in topology order.
    pub(crate) fn pools_of_kind(&self, kind: PoolKind) -> &[u32] {
        match kind {
            PoolKind::Rbd => &self.by_kind[0],
            PoolKind::S3Data => &self.by_kind[1],
        }
    }

    /// The RTT from a consumer cluster to another cluster (by index) by configuration (a link,
    /// or the intra-cluster default), ignoring measurements; `None` when no link joins them.
    pub(crate) fn cluster_rtt(&self, consumer: u32, pc: u32) -> Option<(Rtt, LatencySource)> {
        if pc == consumer {
            let d = &self.defaults;
            return Some((
                Rtt { p50_ms: d.intra_cluster_rtt_p50_ms, p99_ms: d.intra_cluster_rtt_p99_ms },
                LatencySource::Local,
            ));
        }
        self.rtt.get(&(consumer, pc)).map(|r| (*r, LatencySource::Link))
    }

    /// The policy that governs a request: a named one, else the consumer's own for the kind,
    /// else the `*` one, else the built-in default.
    pub(crate) fn policy_for(&self, consumer: &str, kind: RequestKind, name: Option<&str>) -> Option<Policy> {
        if let Some(name) = name {
            return self.policies.iter().find(|p| p.name == name).cloned();
        }
        let own = self.policies.iter().find(|p| p.consumer == consumer && p.kind == kind);
        let any = || self.policies.iter().find(|p| p.consumer == "*" && p.kind == kind);
        if let Some(p) = own.or_else(any) {
            return Some(p.clone());
        }
        let d = &self.defaults;
        Some(Policy {
            name: format!("default-{kind}"),
            consumer: "*".into(),
            kind,
            latency_budget_ms: match kind {
                RequestKind::Volume => d.volume_latency_budget_ms,
                RequestKind::Bucket => d.bucket_latency_budget_ms,
            },
            device_class: None,
            min_replicas: d.min_replicas,
            failure_domain: None,
            max_fill: d.max_fill,
        })
    }
}

/// A pool or cluster named in a refresh is not in the topology.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not in the topology")]
pub struct UnknownPool(pub String);
