//! CreateVolume's pool: `accessibility_requirements` and the StorageClass parameters become a
//! placement request, the engine chooses, and a refusal is RESOURCE_EXHAUSTED with the engine's
//! code and message.
//!
//! The topology key is `topology.cyvault.io/cluster`: its value is the consumer cluster (a
//! cluster of the topology file). Preferred segments are tried first, in order, then requisite
//! ones; the first that places wins. With no requirements the driver's own cluster is the consumer.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cyvault_placement::{Placement, Request, RequestKind, Topology};

use crate::error::{CsiError, Result};

/// The topology segment key this driver reports and reads.
pub const CLUSTER_KEY: &str = "topology.cyvault.io/cluster";

/// StorageClass parameters the driver reads.
pub mod params {
    /// Required device class of the pool (`nvme`, `ssd`, …).
    pub const DEVICE_CLASS: &str = "deviceClass";
    /// A placement policy by name.
    pub const POLICY: &str = "placementPolicy";
    /// A pool by name, bypassing placement (only without a topology).
    pub const POOL: &str = "pool";
    /// `ext4` (default) or `xfs`.
    pub const FS_TYPE: &str = "fsType";
    /// RBD image features, comma-separated (`layering,exclusive-lock`).
    pub const IMAGE_FEATURES: &str = "imageFeatures";
    /// How nodes attach the image: `fuse` (default), `krbd`, `rbd-nbd`.
    pub const ATTACH: &str = "attach";
}

/// The placement engine as the CSI controller uses it.
#[derive(Clone, Debug)]
pub struct VolumePlacement {
    pub topology: Arc<RwLock<Topology>>,
    /// The consumer when a request carries no topology requirement.
    pub default_consumer: String,
    /// Only pools of this cluster are reachable through this driver's Ceph connection.
    pub storage_cluster: Option<String>,
}

/// Where a volume goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub pool: String,
    /// The consumer cluster it was placed for (its accessible topology).
    pub consumer: Option<String>,
}

impl VolumePlacement {
    /// Chooses the pool for `size` bytes from the requirements (each a segment map) and the
    /// parameters.
    pub fn place(
        &self,
        size: u64,
        preferred: &[HashMap<String, String>],
        requisite: &[HashMap<String, String>],
        parameters: &HashMap<String, String>,
    ) -> Result<Placed> {
        let mut consumers: Vec<String> = Vec::new();
        for seg in preferred.iter().chain(requisite) {
            match seg.get(CLUSTER_KEY) {
                Some(c) if !consumers.contains(c) => consumers.push(c.clone()),
                Some(_) => {}
                None => {
                    return Err(CsiError::InvalidArgument(format!(
                        "a topology segment without {CLUSTER_KEY}: {seg:?} (this driver only knows that key)"
                    )));
                }
            }
        }
        if consumers.is_empty() {
            consumers.push(self.default_consumer.clone());
        }
        let topo = self.topology.read().map_err(|_| CsiError::Internal("placement topology lock poisoned".into()))?;
        let mut first_refusal: Option<CsiError> = None;
        for consumer in &consumers {
            let mut req = Request::new(consumer.clone(), RequestKind::Volume, size);
            if let Some(c) = parameters.get(params::DEVICE_CLASS).filter(|c| !c.is_empty()) {
                req = req.with_class(c.clone());
            }
            if let Some(p) = parameters.get(params::POLICY).filter(|p| !p.is_empty()) {
                req = req.with_policy(p.clone());
            }
            let refusal = match Placement::new(&topo).choose_pool(&req) {
                Ok(d) => {
                    let pool = d.pool(&topo);
                    match &self.storage_cluster {
                        Some(c) if *c != pool.cluster => CsiError::ResourceExhausted {
                            code: "VAULT-PL-009".into(),
                            message: format!(
                                "placement chose {} for {consumer}, but this driver provisions on cluster {c} only",
                                pool.id()
                            ),
                        },
                        _ => return Ok(Placed { pool: pool.name.clone(), consumer: Some(consumer.clone()) }),
                    }
                }
                Err(r) => CsiError::ResourceExhausted { code: r.code.as_str().into(), message: r.message },
            };
            first_refusal.get_or_insert(refusal);
        }
        Err(first_refusal.unwrap_or_else(|| CsiError::Internal("no consumer to place for".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement() -> VolumePlacement {
        let topo =
            Topology::from_toml(include_str!("../../deploy/placement/cyberun.toml")).unwrap_or_else(|e| panic!("{e}"));
        VolumePlacement {
            topology: Arc::new(RwLock::new(topo)),
            default_consumer: "destroyer".into(),
            storage_cluster: Some("auxiliary".into()),
        }
    }

    fn seg(cluster: &str) -> HashMap<String, String> {
        HashMap::from([(CLUSTER_KEY.to_string(), cluster.to_string())])
    }

    #[test]
    fn requirements_choose_the_consumer() {
        let p = placement();
        let none = HashMap::new();
        let placed = p.place(1 << 30, &[], &[], &none).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(placed, Placed { pool: "rbd-nvme".into(), consumer: Some("destroyer".into()) });
        // Aegis preferred but refused (88 ms); destroyer requisite places it.
        let placed = p.place(1 << 30, &[seg("aegis")], &[seg("destroyer")], &none).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(placed.consumer.as_deref(), Some("destroyer"));
        // Aegis alone: the engine's refusal, as RESOURCE_EXHAUSTED.
        match p.place(1 << 30, &[], &[seg("aegis")], &none) {
            Err(CsiError::ResourceExhausted { code, message }) => {
                assert_eq!(code, "VAULT-PL-001");
                assert!(message.contains("nearest auxiliary/rbd-nvme at 88.4 ms"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // A class from the StorageClass.
        let ssd = HashMap::from([(params::DEVICE_CLASS.to_string(), "ssd".to_string())]);
        assert_eq!(p.place(1 << 30, &[], &[], &ssd).map(|p| p.pool).ok().as_deref(), Some("rbd-ssd"));
        let bad = HashMap::from([("zone".to_string(), "a".to_string())]);
        assert!(matches!(p.place(1, &[bad], &[], &none), Err(CsiError::InvalidArgument(_))));
    }
}
