//! The placement engine: a pure model of sites, clusters, pools and links, and deterministic,
//! explained pool choices for volumes and buckets.
//!
//! Architecture Invariant: this crate does no IO, spawns nothing and knows nothing of RADOS or
//! Kubernetes. Fresh capacity and measured latencies come in through [`Topology::set_usage`] and
//! [`Topology::observe_rtt`], called by whoever did the measuring.
//!
//! ```
//! use cyvault_placement::{Request, RequestKind, Topology, choose_pool};
//! let topo = Topology::from_toml(include_str!("../../deploy/placement/cyberun.toml")).unwrap();
//! let d = choose_pool(&topo, &Request::new("destroyer", RequestKind::Volume, 100 << 30)).unwrap();
//! assert_eq!(d.pool(&topo).cluster, "auxiliary");
//! ```

#[cfg(feature = "crd")]
pub mod crd;
mod engine;
mod explain;
mod model;
mod size;
mod validate;

pub use engine::{Candidate, Decision, Placement, Refusal, RefusalCode, Request, Tiebreak, Verdict, choose_pool};
pub use explain::{CandidateReport, Report};
pub use model::{
    Cluster, ClusterSpec, DefaultsSpec, ErasureSpec, FailureDomain, LatencySource, Link, LinkSpec, Policy, PolicySpec,
    Pool, PoolKind, PoolSpec, Redundancy, RequestKind, Role, Rtt, Site, SiteSpec, Topology, TopologySpec, UnknownPool,
};
pub use size::{SizeSpec, format_size, parse_size};
pub use validate::{TopologyError, TopologyErrorKind, TopologyErrors};
