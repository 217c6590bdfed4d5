//! Where a new bucket's data goes: CreateBucket's `LocationConstraint` becomes a placement
//! request, and the engine's choice becomes the bucket's data pool.
//!
//! A constraint is `[REGION:]NAME`: an empty one, or the gateway's own region alone, asks for the
//! consumer's default bucket policy; `NAME` is a bucket policy's name, else a device class
//! (`nvme`, `hdd`). A region other than the gateway's is refused, as S3 does.

use std::sync::{Arc, RwLock};

use cyvault_placement::{Placement, Report, Request, RequestKind, Topology};
use tracing::info;

use crate::error::{GwError, Result};
use crate::metrics::PlacementMetrics;

/// The placement engine as the gateway uses it. The topology is shared with whoever refreshes
/// it (capacity from `ceph df`, RTTs from probes).
#[derive(Clone, Debug)]
pub struct BucketPlacement {
    topology: Arc<RwLock<Topology>>,
    /// The cluster the gateway's clients are in.
    consumer: String,
    /// The cluster this gateway's store is connected to: only its pools can hold data here.
    storage_cluster: Option<String>,
    region: String,
    metrics: Option<Arc<PlacementMetrics>>,
}

impl BucketPlacement {
    pub fn new(
        topology: Arc<RwLock<Topology>>,
        consumer: impl Into<String>,
        storage_cluster: Option<String>,
        region: impl Into<String>,
    ) -> BucketPlacement {
        BucketPlacement { topology, consumer: consumer.into(), storage_cluster, region: region.into(), metrics: None }
    }

    pub fn with_metrics(mut self, metrics: Arc<PlacementMetrics>) -> BucketPlacement {
        self.metrics = Some(metrics);
        self
    }

    pub fn topology(&self) -> &Arc<RwLock<Topology>> {
        &self.topology
    }

    /// The placement request a LocationConstraint stands for.
    pub fn request_for(&self, topo: &Topology, constraint: Option<&str>) -> Result<Request> {
        let mut req = Request::new(self.consumer.clone(), RequestKind::Bucket, 0);
        let c = constraint.unwrap_or_default().trim();
        if c.is_empty() || c == self.region {
            return Ok(req);
        }
        let name = match c.split_once(':') {
            Some((region, name)) if region == self.region || region.is_empty() => name,
            Some((region, _)) => {
                return Err(GwError::InvalidLocationConstraint(format!(
                    "region {region:?} is not this endpoint's region ({})",
                    self.region
                )));
            }
            None => c,
        };
        if name.is_empty() {
            return Ok(req);
        }
        if topo.policies().iter().any(|p| p.name == name && p.kind == RequestKind::Bucket) {
            req = req.with_policy(name);
        } else {
            req = req.with_class(name);
        }
        Ok(req)
    }

    /// Chooses the data pool of a new bucket. A refusal is `InvalidLocationConstraint` carrying
    /// the engine's code and message.
    pub fn place(&self, bucket: &str, constraint: Option<&str>) -> Result<String> {
        let topo = self.topology.read().map_err(|_| GwError::Internal("placement topology lock poisoned".into()))?;
        let req = self.request_for(&topo, constraint)?;
        let result = Placement::new(&topo).choose_pool(&req);
        let outcome = match &result {
            Ok(d) => {
                let pool = d.pool(&topo);
                match &self.storage_cluster {
                    Some(c) if *c != pool.cluster => Err(GwError::PlacementRefused {
                        code: "VAULT-PL-009",
                        message: format!(
                            "placement chose {}, but this gateway stores into cluster {c} only",
                            pool.id()
                        ),
                    }),
                    _ => Ok(pool.name.clone()),
                }
            }
            Err(r) => Err(GwError::PlacementRefused { code: r.code.as_str(), message: r.message.clone() }),
        };
        if let Some(m) = &self.metrics {
            m.decision(match &outcome {
                Ok(_) => "placed",
                Err(GwError::PlacementRefused { code, .. }) => code,
                Err(_) => "error",
            });
        }
        match &outcome {
            Ok(pool) => {
                info!(bucket, ?constraint, pool = %pool, "placement: bucket data pool chosen");
            }
            Err(e) => {
                let report = Report::of(&topo, &result);
                info!(bucket, ?constraint, error = %e, table = %report.render(), "placement: bucket refused");
            }
        }
        outcome
    }
}
