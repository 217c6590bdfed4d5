//! Rook-Ceph on the storage cluster: the CephCluster (nodes and devices from the description,
//! host networking so clients in other clusters reach the monitors over the mesh) and one pool per
//! pool of the placement topology, plus the gateway's metadata pool and Ceph's own `.mgr`.

use cyvault_placement::{PoolKind, Redundancy};

use super::Files;
use crate::Federation;
use crate::spec::NodeRole;
use crate::text::{header, list, q};

pub const DIR: &str = "deploy/infrastructure/rook-ceph/cluster";

pub fn render(f: &Federation, out: &mut Files) {
    out.insert(format!("{DIR}/cephcluster.yaml"), cephcluster(f));
    out.insert(format!("{DIR}/pools.yaml"), pools(f));
}

fn cephcluster(f: &Federation) -> String {
    let ceph = &f.spec().ceph;
    let mons: Vec<&str> = f.nodes_with(&ceph.cluster, NodeRole::Mon).iter().map(|n| n.name.as_str()).collect();
    let mut nodes = String::new();
    for n in f.nodes_with(&ceph.cluster, NodeRole::Storage) {
        nodes.push_str(&format!("      - name: {}\n        devices:\n", n.name));
        for d in &n.devices {
            nodes.push_str(&format!(
                "          - name: {}\n            config:\n              deviceClass: {}\n",
                q(&d.name),
                q(&d.class)
            ));
        }
    }
    let mon_affinity = format!(
        "      nodeAffinity:
        requiredDuringSchedulingIgnoredDuringExecution:
          nodeSelectorTerms:
            - matchExpressions:
                - key: kubernetes.io/hostname
                  operator: In
                  values: {}
",
        list(&mons)
    );
    format!(
        "{}apiVersion: ceph.rook.io/v1
kind: CephCluster
metadata:
  name: {cluster}
  namespace: {ns}
spec:
  cephVersion:
    image: {image}
  dataDirHostPath: /var/lib/rook
  mon:
    count: {mon_count}
    allowMultiplePerNode: false
  mgr:
    count: 2
    allowMultiplePerNode: false
    modules:
      - name: pg_autoscaler
        enabled: true
  # Host networking: monitors and OSDs listen on the nodes' overlay addresses, which clients in
  # other clusters (the CSI driver in Destroyer) reach over the WireGuard mesh.
  network:
    provider: host
    addressRanges:
      public: [{public}]
  dashboard:
    enabled: true
    ssl: true
  crashCollector:
    disable: false
  placement:
    mon:
{mon_affinity}    mgr:
{mon_affinity}  disruptionManagement:
    managePodBudgets: true
  storage:
    useAllNodes: false
    useAllDevices: false
    nodes:
{nodes}",
        header(&[
            &format!("The Ceph cluster of {}: monitors on the `mon` nodes, OSDs on the devices of the", ceph.cluster),
            "`storage` nodes, each with the CRUSH device class the topology's pools select by.",
        ]),
        cluster = ceph.cluster,
        ns = ceph.namespace,
        image = q(&ceph.image),
        mon_count = mons.len(),
        public = q(&ceph.public_network.to_string()),
    )
}

fn pools(f: &Federation) -> String {
    let ceph = &f.spec().ceph;
    let mut s = header(&[
        "One CephBlockPool per [[pool]] of the placement topology (rbd pools for volumes, s3-data pools",
        "for the gateway's object data), the gateway's metadata pool, and Ceph's own .mgr pool.",
        "The gateway replaces radosgw: it stores objects in these RADOS pools itself, so there is no",
        "CephObjectStore (docs/deploy.md says why).",
    ]);
    let pool_doc = |name: &str, spec_name: Option<&str>, about: &str, body: String| {
        format!(
            "---
# {about}
apiVersion: ceph.rook.io/v1
kind: CephBlockPool
metadata:
  name: {name}
  namespace: {ns}
spec:
{spec_name}{body}",
            ns = ceph.namespace,
            spec_name = spec_name.map(|n| format!("  name: {}\n", q(n))).unwrap_or_default(),
        )
    };
    for p in f.topology().pools().iter().filter(|p| p.cluster == ceph.cluster) {
        let redundancy = match p.redundancy {
            Redundancy::Replicated { size } => {
                format!("  replicated:\n    size: {size}\n    requireSafeReplicaSize: true\n")
            }
            Redundancy::Erasure { k, m } => {
                format!("  erasureCoded:\n    dataChunks: {k}\n    codingChunks: {m}\n")
            }
        };
        let application = match p.kind {
            PoolKind::Rbd => "rbd",
            PoolKind::S3Data => "cyvault",
        };
        let about = match p.kind {
            PoolKind::Rbd => format!("[[pool]] {}: RBD volumes ({}, {})", p.name, p.device_class, p.redundancy),
            PoolKind::S3Data => format!("[[pool]] {}: S3 object data ({}, {})", p.name, p.device_class, p.redundancy),
        };
        let body = format!(
            "  failureDomain: {}\n  deviceClass: {}\n{redundancy}  application: {application}\n{}",
            p.failure_domain,
            q(&p.device_class),
            if p.kind == PoolKind::Rbd { "  enableRBDStats: true\n" } else { "" }
        );
        s.push_str(&pool_doc(&p.name, None, &about, body));
    }
    let meta = &f.spec().gateway.metadata_pool;
    s.push_str(&pool_doc(
        &meta.name,
        None,
        "[gateway] metadata_pool: users, keys, bucket records and indexes (omap: replicated only)",
        format!(
            "  failureDomain: host\n  deviceClass: {}\n  replicated:\n    size: {}\n    requireSafeReplicaSize: true\n  application: cyvault\n",
            q(&meta.device_class),
            meta.replicas
        ),
    ));
    s.push_str(&pool_doc(
        "builtin-mgr",
        Some(".mgr"),
        "Ceph's own pool for the managers",
        "  failureDomain: host\n  replicated:\n    size: 3\n    requireSafeReplicaSize: true\n  parameters:\n    compression_mode: none\n"
            .to_owned(),
    ));
    s
}
