//! Karmada on the control cluster: the member Cluster registrations, the policies that pin each
//! member's workloads to it (with their dependencies), and the overrides that give each member its
//! own StorageClass and gateway endpoint.

use super::Files;
use crate::Federation;
use crate::text::{header, q};

/// Where the generated Karmada objects go (applied to the Karmada API server by Flux).
pub const DIR: &str = "deploy/infrastructure/karmada/federation";

/// The label that sends a workload to a member (`cyberun.cloud/workload: general`).
pub const WORKLOAD_LABEL: &str = "cyberun.cloud/workload";
/// The label that marks an app's S3 client ConfigMap, whose keys each member overrides.
pub const S3_CONFIG_LABEL: &str = "vault.cyberun.cloud/s3-config";

pub fn render(f: &Federation, out: &mut Files) {
    let members = f.members();
    let mut clusters = header(&[
        "Karmada member clusters, one per [[cluster]] with a [cluster.member] table.",
        "The secrets they name (API tokens) are created at deploy time, never kept in Git.",
    ]);
    let mut propagation = header(&[
        "Where the Vault's consumers run: workloads labelled cyberun.cloud/workload=<member.workloads>",
        "go to that member, together with what they reference (propagateDeps: PVCs, ConfigMaps,",
        "Secrets, ServiceAccounts).",
    ]);
    let mut overrides = header(&[
        "What differs per member: the StorageClass of propagated PVCs and the S3 endpoint, region and",
        "bucket location in apps' S3 client ConfigMaps (labelled vault.cyberun.cloud/s3-config=\"true\").",
    ]);
    for (c, m) in &members {
        let site = f.topology().cluster(&c.name).map_or("", |t| t.site.as_str());
        clusters.push_str(&format!(
            "---
apiVersion: cluster.karmada.io/v1alpha1
kind: Cluster
metadata:
  name: {name}
  labels:
    cyberun.cloud/site: {site}
    {WORKLOAD_LABEL}: {workloads}
spec:
  syncMode: {mode}
  apiEndpoint: {api}
  region: {site}
  secretRef:
    namespace: karmada-cluster
    name: {name}
  impersonatorSecretRef:
    namespace: karmada-cluster
    name: {name}-impersonator
",
            name = c.name,
            workloads = q(&m.workloads),
            mode = m.sync_mode,
            api = q(&c.api_server),
        ));
        propagation.push_str(&format!(
            "---
apiVersion: policy.karmada.io/v1alpha1
kind: ClusterPropagationPolicy
metadata:
  name: {workloads}-to-{name}
spec:
  propagateDeps: true
  resourceSelectors:
{selectors}  placement:
    clusterAffinity:
      clusterNames: [{name}]
",
            name = c.name,
            workloads = m.workloads,
            selectors = ["apps/v1 Deployment", "apps/v1 StatefulSet", "batch/v1 Job", "batch/v1 CronJob"]
                .iter()
                .map(|gk| {
                    let (v, k) = gk.split_once(' ').unwrap_or_default();
                    format!(
                        "    - apiVersion: {v}\n      kind: {k}\n      labelSelector:\n        matchLabels:\n          {WORKLOAD_LABEL}: {}\n",
                        q(&m.workloads)
                    )
                })
                .collect::<String>(),
        ));
        if let Some(sc) = &m.storage_class {
            overrides.push_str(&format!(
                "---
apiVersion: policy.karmada.io/v1alpha1
kind: ClusterOverridePolicy
metadata:
  name: volumes-{name}
spec:
  resourceSelectors:
    - apiVersion: v1
      kind: PersistentVolumeClaim
  overrideRules:
    - targetCluster:
        clusterNames: [{name}]
      overriders:
        plaintext:
          - path: /spec/storageClassName
            operator: add
            value: {sc}
",
                name = c.name,
            ));
        }
        let mut data = vec![
            ("S3_ENDPOINT", m.gateway_endpoint.clone()),
            ("S3_REGION", f.spec().gateway.region.clone()),
            ("VAULT_CLUSTER", c.name.clone()),
        ];
        if let Some(loc) = &m.bucket_location {
            data.push(("S3_BUCKET_LOCATION", loc.clone()));
        }
        let patches: String = data
            .iter()
            .map(|(k, v)| {
                format!("          - path: /data/{k}\n            operator: add\n            value: {}\n", q(v))
            })
            .collect();
        overrides.push_str(&format!(
            "---
apiVersion: policy.karmada.io/v1alpha1
kind: ClusterOverridePolicy
metadata:
  name: s3-client-{name}
spec:
  resourceSelectors:
    - apiVersion: v1
      kind: ConfigMap
      labelSelector:
        matchLabels:
          {S3_CONFIG_LABEL}: \"true\"
  overrideRules:
    - targetCluster:
        clusterNames: [{name}]
      overriders:
        plaintext:
{patches}",
            name = c.name,
        ));
    }
    out.insert(format!("{DIR}/clusters.yaml"), clusters);
    out.insert(format!("{DIR}/propagation.yaml"), propagation);
    out.insert(format!("{DIR}/overrides.yaml"), overrides);
}
