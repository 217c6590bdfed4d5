//! Cilium per cluster: the values that differ between clusters (name, id, pod range, API server),
//! merged by the shared HelmRelease in deploy/infrastructure/cilium/base/ through a ConfigMap.

use super::Files;
use crate::Federation;
use crate::text::header;

pub fn render(f: &Federation, out: &mut Files) {
    for c in &f.spec().clusters {
        let dir = format!("deploy/infrastructure/cilium/{}", c.name);
        let (host, port) = Federation::api_host_port(&c.api_server).unwrap_or(("", 0));
        let values = format!(
            "{}cluster:
  name: {name}
  id: {id}
# kube-proxy replacement talks to the API server directly, over the mesh.
k8sServiceHost: {host}
k8sServicePort: {port}
# Pods are routed natively inside this range; traffic leaving it is masqueraded.
ipv4NativeRoutingCIDR: {cidr}
ipam:
  operator:
    clusterPoolIPv4PodCIDRList:
      - {cidr}
",
            header(&[
                &format!("Cilium Helm values of cluster {}, merged over ../base/helmrelease.yaml's values.", c.name),
                "From [[cluster]] in deploy/federation.toml.",
            ]),
            name = c.name,
            id = c.cilium_cluster_id,
            host = crate::text::q(host),
            cidr = crate::text::q(&c.pod_cidr.to_string()),
        );
        let kustomization = format!(
            "{}apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../base
configMapGenerator:
  - name: cilium-cluster-values
    namespace: kube-system
    files:
      - values.yaml
generatorOptions:
  # The HelmRelease names the ConfigMap in valuesFrom, which kustomize does not rewrite.
  disableNameSuffixHash: true
",
            header(&[&format!("Cilium for cluster {}: the shared release plus this cluster's values.", c.name)])
        );
        out.insert(format!("{dir}/values.yaml"), values);
        out.insert(format!("{dir}/kustomization.yaml"), kustomization);
    }
}
