//! Every generated file under deploy/, as (path from the repository root → text).
//!
//! What is generated is what must agree with the description or the topology: per-cluster Cilium
//! values, Karmada's member registrations and policies, Rook's CephCluster and pools, the
//! gateway's and the CSI driver's config, workloads and network policies, StorageClasses, the
//! edge's HAProxy and Keepalived configs and the WireGuard mesh templates. The rest of deploy/ is
//! written by hand and only checked.

use std::collections::BTreeMap;

use crate::Federation;

pub mod ceph;
pub mod cilium;
pub mod csi;
pub mod edge;
pub mod gateway;
pub mod karmada;
pub mod wireguard;

/// The paths below are relative to the repository root, with `/` separators.
pub type Files = BTreeMap<String, String>;

/// Everything `cyvault deploy render` writes.
pub fn render_all(f: &Federation) -> Files {
    let mut out = Files::new();
    cilium::render(f, &mut out);
    karmada::render(f, &mut out);
    ceph::render(f, &mut out);
    gateway::render(f, &mut out);
    csi::render(f, &mut out);
    edge::render(f, &mut out);
    wireguard::render_templates(f, &mut out);
    out
}

/// The standard labels of one of our components.
pub(crate) fn labels(name: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    format!("{pad}app.kubernetes.io/name: {name}\n{pad}app.kubernetes.io/part-of: cyberun-vault\n")
}

/// The ConfigMap holding the placement topology, byte for byte.
pub(crate) fn topology_configmap(f: &Federation, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: vault-topology\n  namespace: {namespace}\n  labels:\n{}\
         data:\n  topology.toml: |\n{}",
        labels("vault-topology", 4),
        crate::text::block(f.topology_text(), 4)
    )
}

/// `ceph.conf` for clients in any cluster: the monitors at their overlay addresses (host
/// networking), the keyring from a secret mounted beside it.
pub(crate) fn ceph_conf(f: &Federation) -> String {
    let mons: Vec<String> = f.mon_addresses().iter().map(|ip| format!("[v2:{ip}:3300,v1:{ip}:6789]")).collect();
    format!(
        "[global]\n\
         mon_host = {}\n\
         keyring = /etc/ceph/keyring\n\
         # One admin socket per client handle, so several in one pod never collide.\n\
         admin_socket = /var/run/ceph/$cluster-$name.$pid.$cctid.asok\n",
        mons.join(",")
    )
}

/// The ConfigMap holding [`ceph_conf`].
pub(crate) fn ceph_conf_configmap(f: &Federation, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: vault-ceph-conf\n  namespace: {namespace}\n  labels:\n{}\
         data:\n  ceph.conf: |\n{}",
        labels("vault-ceph-conf", 4),
        crate::text::block(&ceph_conf(f), 4)
    )
}

/// Cilium egress rules to the Ceph monitors and OSDs (their overlay addresses; Cilium matches node
/// addresses by CIDR because its values set `policyCIDRMatchMode: nodes`).
pub(crate) fn ceph_egress_rules(f: &Federation) -> String {
    use crate::spec::NodeRole;
    let ceph = &f.spec().ceph.cluster;
    let mons: Vec<String> = f.mon_addresses().iter().map(|ip| format!("{ip}/32")).collect();
    let mut daemons: Vec<String> = f
        .spec()
        .nodes
        .iter()
        .filter(|n| &n.cluster == ceph && (n.roles.contains(&NodeRole::Storage) || n.roles.contains(&NodeRole::Mon)))
        .map(|n| format!("{}/32", n.overlay_address))
        .collect();
    daemons.dedup();
    format!(
        "    # Ceph monitors (msgr2 and legacy ports).
    - toCIDR: {mons}
      toPorts:
        - ports:
            - port: \"3300\"
              protocol: TCP
            - port: \"6789\"
              protocol: TCP
    # OSDs and managers (Ceph's ms_bind_port_min..max).
    - toCIDR: {daemons}
      toPorts:
        - ports:
            - port: \"6800\"
              endPort: 7568
              protocol: TCP
",
        mons = crate::text::list(&mons),
        daemons = crate::text::list(&daemons)
    )
}
