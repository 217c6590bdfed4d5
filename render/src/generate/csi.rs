//! The CSI driver, per cluster that takes Vault volumes: its config, the StorageClasses the
//! placement engine can serve there (with allowedTopologies), and its network policies. The
//! workloads themselves (controller, node plugin, RBAC, CSIDriver) are the hand-written
//! deploy/apps/vault-csi/base/.

use super::gateway::toml_str;
use super::{Files, ceph_conf_configmap, ceph_egress_rules, labels, topology_configmap};
use crate::Federation;
use crate::text::{block, header, q};

/// The CSI driver's name (csi/src/driver.rs).
pub const DRIVER: &str = "vault.csi.cyberun.cloud";
/// The topology key of the driver's segments (docs/csi.md).
pub const TOPOLOGY_KEY: &str = "topology.cyvault.io/cluster";

pub fn dir(cluster: &str) -> String {
    format!("deploy/apps/vault-csi/{cluster}")
}

pub fn render(f: &Federation, out: &mut Files) {
    for (cluster, classes) in f.storage_classes() {
        let Some(member) = f.cluster(cluster).and_then(|c| c.member.as_ref()) else { continue };
        let dir = dir(cluster);
        let ns = f.spec().csi.namespace.as_str();
        out.insert(
            format!("{dir}/kustomization.yaml"),
            format!(
                "{}apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../base
  - config.yaml
  - storageclasses.yaml
  - network-policy.yaml
",
                header(&[&format!(
                    "The Vault CSI driver in {cluster}: the shared workloads plus this cluster's config."
                )])
            ),
        );
        out.insert(
            format!("{dir}/config.yaml"),
            format!(
                "{}apiVersion: v1
kind: ConfigMap
metadata:
  name: vault-csi-config
  namespace: {ns}
  labels:
{}data:
  cyvault.toml: |
{}---
{}---
{}",
                header(&[&format!("The CSI driver's config in {cluster}, its ceph.conf and the placement topology.")]),
                labels("vault-csi", 4),
                block(&csi_toml(f, cluster), 4),
                ceph_conf_configmap(f, ns),
                topology_configmap(f, ns),
            ),
        );
        let mut sc = header(&[
            &format!("The StorageClasses of {cluster}: one per rbd device class of the topology that the"),
            &format!("placement engine can place a volume of for {cluster}, restricted to its nodes."),
        ]);
        for (class, why) in f.refused_classes().get(cluster).into_iter().flatten() {
            sc.push_str(&format!("# No class for device class {class}: {why}\n"));
        }
        for plan in classes {
            let default = member.storage_class.as_deref() == Some(plan.name.as_str());
            sc.push_str(&format!(
                "---
# Volumes on {dev} devices (today: pool {pool}; the driver asks the engine at every CreateVolume).
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: {name}
  labels:
{labels}{annotations}provisioner: {DRIVER}
parameters:
  deviceClass: {dev}
  csi.storage.k8s.io/fstype: ext4
reclaimPolicy: Delete
allowVolumeExpansion: true
volumeBindingMode: WaitForFirstConsumer
allowedTopologies:
  - matchLabelExpressions:
      - key: {TOPOLOGY_KEY}
        values: [{cluster}]
",
                name = plan.name,
                dev = q(&plan.device_class),
                pool = plan.pool,
                labels = labels("vault-csi", 4),
                annotations = if default {
                    "  annotations:\n    storageclass.kubernetes.io/is-default-class: \"true\"\n"
                } else {
                    ""
                },
            ));
        }
        out.insert(format!("{dir}/storageclasses.yaml"), sc);
        out.insert(format!("{dir}/network-policy.yaml"), network_policy(f, cluster));
    }
}

/// The CSI driver's `cyvault.toml` in `cluster` (mode and endpoint come from the pod's flags).
pub fn csi_toml(f: &Federation, cluster: &str) -> String {
    let csi = &f.spec().csi;
    format!(
        "# cyvault csi --config /etc/cyvault/cyvault.toml (every key: cyvault.example.toml)
[storage]
backend = \"rados\"
data_dir = \"/var/lib/cyvault\"
ceph_conf = \"/etc/ceph/ceph.conf\"
ceph_id = {ceph_id}

[placement]
topology = \"/etc/cyvault/topology.toml\"
consumer = {consumer}
storage_cluster = {storage}

[csi]
pool = {pool}
journal_namespace = \"cyvault-csi\"
state_dir = \"/var/lib/kubelet/plugins/{DRIVER}/state\"
",
        ceph_id = toml_str(&csi.ceph_id),
        consumer = toml_str(cluster),
        storage = toml_str(&f.spec().ceph.cluster),
        pool = toml_str(&csi.journal_pool),
    )
}

fn network_policy(f: &Federation, cluster: &str) -> String {
    let ns = &f.spec().csi.namespace;
    let mut s = header(&[
        &format!("Network policies of the CSI driver in {cluster}. The sidecars reach the driver through its"),
        "unix socket inside the pod (controller) or on the node (node plugin): no network at all. On the",
        "network the driver talks to the Kubernetes API (sidecars, Node labels) and to Ceph, nothing else;",
        "nothing talks to it.",
    ]);
    for (name, what) in [("vault-csi-controller", "controller"), ("vault-csi-node", "node plugin")] {
        s.push_str(&format!(
            "---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: {name}
  namespace: {ns}
spec:
  description: \"CSI {what}: no ingress; egress to the API server and Ceph only\"
  endpointSelector:
    matchLabels:
      app.kubernetes.io/name: {name}
  # An empty rule selects the pods for ingress and allows nothing: default deny.
  ingress:
    - {{}}
  egress:
    - toEntities: [kube-apiserver]
      toPorts:
        - ports:
            - port: \"6443\"
              protocol: TCP
{ceph}",
            ceph = ceph_egress_rules(f),
        ));
    }
    s
}
