//! The S3 gateway on the storage cluster: its config (the one TOML of `cyvault gateway`), the
//! Deployment (one pod per `gateway` node), the NodePort Service the edge reaches, the
//! PodDisruptionBudget and the network policy.

use super::{Files, ceph_conf_configmap, ceph_egress_rules, labels, topology_configmap};
use crate::Federation;
use crate::spec::NodeRole;
use crate::text::{block, header, list, q};

pub const DIR: &str = "deploy/apps/vault-gateway";
/// The container image of `cyvault` (gateway and CSI driver): this workspace's version.
pub const IMAGE: &str = concat!("ghcr.io/cyberun/vault:", env!("CARGO_PKG_VERSION"));

pub fn render(f: &Federation, out: &mut Files) {
    let g = &f.spec().gateway;
    let ns = g.namespace.as_str();
    let config = format!(
        "{}apiVersion: v1
kind: ConfigMap
metadata:
  name: vault-gateway-config
  namespace: {ns}
  labels:
{}data:
  cyvault.toml: |
{}---
{}---
{}",
        header(&[
            "The gateway's config (cyvault.toml, the keys of cyvault.example.toml), its ceph.conf and the",
            "placement topology it places new buckets with."
        ]),
        labels("vault-gateway", 4),
        block(&gateway_toml(f), 4),
        ceph_conf_configmap(f, ns),
        topology_configmap(f, ns),
    );
    out.insert(format!("{DIR}/config.yaml"), config);
    out.insert(format!("{DIR}/workload.yaml"), workload(f));
    out.insert(format!("{DIR}/network-policy.yaml"), network_policy(f));
}

/// The gateway's `cyvault.toml`. Secrets are not in it: root credentials come from the
/// environment (a Secret), the cephx keyring from a mounted Secret.
pub fn gateway_toml(f: &Federation) -> String {
    let g = &f.spec().gateway;
    format!(
        "# cyvault gateway --config /etc/cyvault/cyvault.toml (every key: cyvault.example.toml)
[gateway]
listen = \"0.0.0.0:{port}\"
region = {region}
domains = [{domain}]
shutdown_grace_secs = 30
auth_cache_secs = 5

[storage]
backend = \"rados\"
data_dir = \"/var/lib/cyvault\"
ceph_conf = \"/etc/ceph/ceph.conf\"
ceph_id = {ceph_id}
pool = {pool}

[placement]
topology = \"/etc/cyvault/topology.toml\"
consumer = {consumer}
storage_cluster = {storage}
",
        port = g.port,
        region = toml_str(&g.region),
        domain = toml_str(&g.domain),
        ceph_id = toml_str(&g.ceph_id),
        pool = toml_str(&g.metadata_pool.name),
        consumer = toml_str(&g.placement_consumer),
        storage = toml_str(&f.spec().ceph.cluster),
    )
}

/// A TOML basic string (JSON escaping is a subset TOML reads the same).
pub(crate) fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn workload(f: &Federation) -> String {
    let g = &f.spec().gateway;
    let replicas = f.nodes_with(&g.cluster, NodeRole::Gateway).len();
    let min_available = replicas.saturating_sub(1).max(1);
    format!(
        "{hdr}apiVersion: apps/v1
kind: Deployment
metadata:
  name: vault-gateway
  namespace: {ns}
  labels:
{labels4}spec:
  # One pod per node with the gateway role: the edge's health checks ask each node's NodePort.
  replicas: {replicas}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 1
      maxSurge: 0
  selector:
    matchLabels:
      app.kubernetes.io/name: vault-gateway
  template:
    metadata:
      labels:
{labels8}    spec:
      serviceAccountName: vault-gateway
      automountServiceAccountToken: false
      nodeSelector:
        vault.cyberun.cloud/gateway: \"true\"
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            - topologyKey: kubernetes.io/hostname
              labelSelector:
                matchLabels:
                  app.kubernetes.io/name: vault-gateway
      # shutdown_grace_secs (30) for in-flight requests, plus margin.
      terminationGracePeriodSeconds: 40
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        fsGroup: 65532
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: gateway
          image: {image}
          args: [gateway, --config, /etc/cyvault/cyvault.toml]
          env:
            - name: CYVAULT_ROOT_ACCESS_KEY
              valueFrom:
                secretKeyRef:
                  name: vault-gateway-root
                  key: access-key
            - name: CYVAULT_ROOT_SECRET_KEY
              valueFrom:
                secretKeyRef:
                  name: vault-gateway-root
                  key: secret-key
          ports:
            - name: s3
              containerPort: {port}
              protocol: TCP
          startupProbe:
            httpGet:
              path: /_cyvault/health
              port: s3
            periodSeconds: 2
            failureThreshold: 30
          readinessProbe:
            httpGet:
              path: /_cyvault/health
              port: s3
            periodSeconds: 5
            failureThreshold: 2
          livenessProbe:
            httpGet:
              path: /_cyvault/health
              port: s3
            periodSeconds: 10
            failureThreshold: 6
          resources:
            requests:
              cpu: 500m
              memory: 512Mi
            limits:
              memory: 2Gi
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: [ALL]
          volumeMounts:
            - name: config
              mountPath: /etc/cyvault
              readOnly: true
            - name: ceph
              mountPath: /etc/ceph
              readOnly: true
            - name: data
              mountPath: /var/lib/cyvault
            - name: run-ceph
              mountPath: /var/run/ceph
      volumes:
        # cyvault.toml and the placement topology beside it.
        - name: config
          projected:
            sources:
              - configMap:
                  name: vault-gateway-config
              - configMap:
                  name: vault-topology
        # ceph.conf from the ConfigMap and the cephx keyring from a deploy-time Secret, side by side.
        - name: ceph
          projected:
            sources:
              - configMap:
                  name: vault-ceph-conf
                  items:
                    - key: ceph.conf
                      path: ceph.conf
              - secret:
                  name: vault-gateway-ceph
                  items:
                    - key: keyring
                      path: keyring
        - name: data
          emptyDir: {{}}
        - name: run-ceph
          emptyDir: {{}}
---
# The edge (HAProxy on the edge nodes) reaches every gateway node on this NodePort; with
# externalTrafficPolicy Local a node answers only for its own pod, so the edge's health checks
# see exactly which nodes serve.
apiVersion: v1
kind: Service
metadata:
  name: vault-gateway
  namespace: {ns}
  labels:
{labels4}spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector:
    app.kubernetes.io/name: vault-gateway
  ports:
    - name: s3
      port: {port}
      targetPort: s3
      nodePort: {node_port}
      protocol: TCP
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: vault-gateway
  namespace: {ns}
  labels:
{labels4}spec:
  minAvailable: {min_available}
  selector:
    matchLabels:
      app.kubernetes.io/name: vault-gateway
",
        hdr = header(&[
            &format!("The S3 gateway: one pod on each node of {} with the gateway role,", g.cluster),
            "reached by the edge through the NodePort Service, kept available through drains by the PDB.",
        ]),
        ns = g.namespace,
        labels4 = labels("vault-gateway", 4),
        labels8 = labels("vault-gateway", 8),
        image = q(IMAGE),
        port = g.port,
        node_port = g.node_port,
    )
}

fn network_policy(f: &Federation) -> String {
    let g = &f.spec().gateway;
    let e = &f.spec().edge;
    let edges: Vec<String> =
        f.nodes_with(&e.cluster, NodeRole::Edge).iter().map(|n| format!("{}/32", n.overlay_address)).collect();
    format!(
        "{}apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: vault-gateway
  namespace: {ns}
spec:
  description: \"S3 gateway: in from the edge only, out to the Ceph monitors and OSDs only\"
  endpointSelector:
    matchLabels:
      app.kubernetes.io/name: vault-gateway
  ingress:
    # HAProxy on the edge nodes (host network, their overlay addresses) to the S3 port.
    - fromCIDR: {edges}
      toPorts:
        - ports:
            - port: \"{port}\"
              protocol: TCP
  egress:
{ceph}",
        header(&["Who may talk to the gateway and whom it may talk to; everything else is dropped."]),
        ns = g.namespace,
        edges = list(&edges),
        port = g.port,
        ceph = ceph_egress_rules(f),
    )
}
