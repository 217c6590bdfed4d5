//! The validated federation: the description checked against itself and against the placement
//! topology, every problem at once (`VAULT-DP-1xx`, docs/errors.md).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::Ipv4Addr;

use cyvault_placement::{FailureDomain, PoolKind, Redundancy, Request, RequestKind, Topology, TopologySpec};

use crate::spec::{ClusterSpec, FederationSpec, MemberSpec, NodeRole, NodeSpec};

/// What kind of problem a description has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptionErrorKind {
    /// The file is not TOML of the expected shape.
    Parse,
    /// A name refers to nothing (a cluster, node or pool that does not exist).
    UnknownReference,
    /// Two entries share what must be unique.
    Duplicate,
    /// A name or address is malformed or outside its network.
    Invalid,
    /// The storage cluster cannot hold a pool (too few hosts with its device class).
    NotEnoughHosts,
    /// A member's StorageClass or bucket location is one the placement engine refuses.
    Unplaceable,
    /// Something required is missing (a role with no node, a cluster without an entry).
    Missing,
}

impl DescriptionErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            DescriptionErrorKind::Parse => "VAULT-DP-100",
            DescriptionErrorKind::UnknownReference => "VAULT-DP-101",
            DescriptionErrorKind::Duplicate => "VAULT-DP-102",
            DescriptionErrorKind::Invalid => "VAULT-DP-103",
            DescriptionErrorKind::NotEnoughHosts => "VAULT-DP-104",
            DescriptionErrorKind::Unplaceable => "VAULT-DP-105",
            DescriptionErrorKind::Missing => "VAULT-DP-106",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescriptionError {
    pub kind: DescriptionErrorKind,
    /// Where: `node aux-1`, `edge`, `cluster aegis`.
    pub subject: String,
    pub message: String,
}

impl fmt::Display for DescriptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.kind.code(), self.subject, self.message)
    }
}

/// Every problem of a description (never empty).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct DescriptionErrors(pub Vec<DescriptionError>);

impl fmt::Display for DescriptionErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{} in the federation description", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

struct Problems(Vec<DescriptionError>);

impl Problems {
    fn push(&mut self, kind: DescriptionErrorKind, subject: impl Into<String>, message: impl Into<String>) {
        self.0.push(DescriptionError { kind, subject: subject.into(), message: message.into() });
    }
}

/// A StorageClass the CSI driver offers in one cluster: one per device class of the topology's
/// rbd pools that the placement engine can place a volume of for that cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageClassPlan {
    pub name: String,
    pub device_class: String,
    /// The pool a volume of this class lands on today (for the comment; placement decides live).
    pub pool: String,
}

/// The description, checked. Built only by [`Federation::new`].
#[derive(Clone, Debug)]
pub struct Federation {
    spec: FederationSpec,
    topology: Topology,
    topology_spec: TopologySpec,
    topology_text: String,
    /// Per CSI cluster, the StorageClasses it offers.
    storage_classes: BTreeMap<String, Vec<StorageClassPlan>>,
    /// Per CSI cluster, the rbd device classes the engine refuses, with its refusal line.
    refused_classes: BTreeMap<String, Vec<(String, String)>>,
}

/// The StorageClass name of an rbd device class.
pub fn storage_class_name(device_class: &str) -> String {
    format!("vault-rbd-{device_class}")
}

impl Federation {
    /// Parses and checks a description against the topology it accompanies.
    pub fn new(description: &str, topology: &str) -> Result<Federation, DescriptionErrors> {
        let parse_err = |subject: &str, message: String| {
            DescriptionErrors(vec![DescriptionError {
                kind: DescriptionErrorKind::Parse,
                subject: subject.to_owned(),
                message,
            }])
        };
        let spec: FederationSpec =
            toml::from_str(description).map_err(|e| parse_err("federation description", e.to_string()))?;
        let topology_spec: TopologySpec =
            toml::from_str(topology).map_err(|e| parse_err("placement topology", e.to_string()))?;
        let topo = Topology::from_toml(topology).map_err(|e| parse_err("placement topology", e.to_string()))?;
        let mut p = Problems(Vec::new());
        check(&spec, &topo, &mut p);
        let (storage_classes, refused_classes) = plan_storage_classes(&spec, &topo);
        check_members(&spec, &topo, &storage_classes, &mut p);
        if !p.0.is_empty() {
            return Err(DescriptionErrors(p.0));
        }
        Ok(Federation {
            spec,
            topology: topo,
            topology_spec,
            topology_text: topology.to_owned(),
            storage_classes,
            refused_classes,
        })
    }

    pub fn spec(&self) -> &FederationSpec {
        &self.spec
    }
    pub fn topology(&self) -> &Topology {
        &self.topology
    }
    pub fn topology_spec(&self) -> &TopologySpec {
        &self.topology_spec
    }
    /// The topology file's text, byte for byte (it ships in ConfigMaps).
    pub fn topology_text(&self) -> &str {
        &self.topology_text
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterSpec> {
        self.spec.clusters.iter().find(|c| c.name == name)
    }

    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.spec.nodes.iter().find(|n| n.name == name)
    }

    /// The site (of the topology) a node is in.
    pub fn site_of(&self, node: &NodeSpec) -> &str {
        self.topology.cluster(&node.cluster).map_or("", |c| c.site.as_str())
    }

    /// The nodes of `cluster` with `role`, in file order.
    pub fn nodes_with(&self, cluster: &str, role: NodeRole) -> Vec<&NodeSpec> {
        self.spec.nodes.iter().filter(|n| n.cluster == cluster && n.roles.contains(&role)).collect()
    }

    /// Karmada members, in file order.
    pub fn members(&self) -> Vec<(&ClusterSpec, &MemberSpec)> {
        self.spec.clusters.iter().filter_map(|c| c.member.as_ref().map(|m| (c, m))).collect()
    }

    /// The control cluster (the topology's `control` role) that runs Karmada.
    pub fn control_cluster(&self) -> Option<&str> {
        self.topology.clusters().iter().find(|c| c.role == cyvault_placement::Role::Control).map(|c| c.name.as_str())
    }

    /// The clusters the CSI driver runs in (members with a StorageClass), with their classes.
    pub fn storage_classes(&self) -> &BTreeMap<String, Vec<StorageClassPlan>> {
        &self.storage_classes
    }

    /// Per CSI cluster, the device classes left out and why.
    pub fn refused_classes(&self) -> &BTreeMap<String, Vec<(String, String)>> {
        &self.refused_classes
    }

    /// `v2` and `v1` monitor addresses (`[v2:IP:3300,v1:IP:6789]` each), in node order.
    pub fn mon_addresses(&self) -> Vec<Ipv4Addr> {
        self.nodes_with(&self.spec.ceph.cluster, NodeRole::Mon).iter().map(|n| n.overlay_address).collect()
    }

    /// The host and port of a cluster's API server URL.
    pub fn api_host_port(api_server: &str) -> Option<(&str, u16)> {
        let rest = api_server.strip_prefix("https://")?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':')?;
        Some((host, port.parse().ok()?))
    }
}

/// A DNS-1123 label: what Kubernetes accepts as a name and WireGuard peers are named by here.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS name of labels (`api.cyberun.cloud`).
pub fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn check(spec: &FederationSpec, topo: &Topology, p: &mut Problems) {
    use DescriptionErrorKind::*;
    let topo_cluster = |name: &str| topo.cluster(name).is_some();

    // Clusters: one entry per topology cluster, unique ids and pod ranges.
    let mut seen = BTreeSet::new();
    let mut ids: HashMap<u8, &str> = HashMap::new();
    for c in &spec.clusters {
        let subject = format!("cluster {}", c.name);
        if !seen.insert(c.name.as_str()) {
            p.push(Duplicate, &subject, "listed twice");
        }
        if !topo_cluster(&c.name) {
            p.push(UnknownReference, &subject, "is not a cluster of the placement topology");
        }
        if Federation::api_host_port(&c.api_server).is_none() {
            p.push(Invalid, &subject, format!("api_server {:?} is not https://HOST:PORT", c.api_server));
        }
        if !c.pod_cidr.is_network() {
            p.push(Invalid, &subject, format!("pod_cidr {} has host bits set", c.pod_cidr));
        }
        if c.pod_cidr.overlaps(spec.mesh.overlay_cidr) {
            p.push(Invalid, &subject, format!("pod_cidr {} overlaps the mesh {}", c.pod_cidr, spec.mesh.overlay_cidr));
        }
        if c.cilium_cluster_id == 0 {
            p.push(Invalid, &subject, "cilium_cluster_id must be 1-255");
        } else if let Some(other) = ids.insert(c.cilium_cluster_id, &c.name) {
            p.push(Duplicate, &subject, format!("cilium_cluster_id {} is also {other}'s", c.cilium_cluster_id));
        }
        if let Some(m) = &c.member
            && !is_dns_label(&m.workloads)
        {
            p.push(Invalid, &subject, format!("member.workloads {:?} is not a DNS label", m.workloads));
        }
    }
    for (i, a) in spec.clusters.iter().enumerate() {
        for b in &spec.clusters[i + 1..] {
            if a.pod_cidr.overlaps(b.pod_cidr) {
                p.push(
                    Invalid,
                    format!("cluster {}", b.name),
                    format!("pod_cidr {} overlaps {}'s", b.pod_cidr, a.name),
                );
            }
        }
    }
    for c in topo.clusters() {
        if !seen.contains(c.name.as_str()) {
            p.push(
                Missing,
                format!("cluster {}", c.name),
                "has no [[cluster]] entry (every cluster runs Flux and Cilium)",
            );
        }
    }
    let mut workloads = HashMap::new();
    for c in &spec.clusters {
        if let Some(m) = &c.member
            && let Some(other) = workloads.insert(m.workloads.as_str(), c.name.as_str())
        {
            p.push(
                Duplicate,
                format!("cluster {}", c.name),
                format!("workloads {:?} already go to {other}", m.workloads),
            );
        }
    }

    // Mesh and nodes.
    let m = &spec.mesh;
    if !m.overlay_cidr.is_network() {
        p.push(Invalid, "mesh", format!("overlay_cidr {} has host bits set", m.overlay_cidr));
    }
    if !is_interface_name(&m.interface) {
        p.push(
            Invalid,
            "mesh",
            format!("interface {:?} is not a Linux interface name (1-15 of [a-z0-9_-])", m.interface),
        );
    }
    let mut names = BTreeSet::new();
    let mut overlay: HashMap<Ipv4Addr, &str> = HashMap::new();
    let mut endpoints: HashMap<Ipv4Addr, &str> = HashMap::new();
    for n in &spec.nodes {
        let subject = format!("node {}", n.name);
        if !is_dns_label(&n.name) {
            p.push(Invalid, &subject, "the name is not a DNS label");
        }
        if !names.insert(n.name.as_str()) {
            p.push(Duplicate, &subject, "listed twice");
        }
        if !seen.contains(n.cluster.as_str()) {
            p.push(UnknownReference, &subject, format!("cluster {:?} has no [[cluster]] entry", n.cluster));
        }
        if !m.overlay_cidr.contains(n.overlay_address) {
            p.push(
                Invalid,
                &subject,
                format!("overlay_address {} is outside the mesh {}", n.overlay_address, m.overlay_cidr),
            );
        }
        if let Some(other) = overlay.insert(n.overlay_address, &n.name) {
            p.push(Duplicate, &subject, format!("overlay_address {} is also {other}'s", n.overlay_address));
        }
        if let Some(other) = endpoints.insert(n.endpoint, &n.name) {
            p.push(Duplicate, &subject, format!("endpoint {} is also {other}'s", n.endpoint));
        }
        if n.roles.is_empty() {
            p.push(Missing, &subject, "has no roles");
        }
        let storage = n.roles.contains(&NodeRole::Storage);
        if storage && n.devices.is_empty() {
            p.push(Missing, &subject, "is a storage node without devices");
        }
        if !storage && !n.devices.is_empty() {
            p.push(Invalid, &subject, "lists devices but is not a storage node");
        }
        let mut devs = BTreeSet::new();
        for d in &n.devices {
            if !devs.insert(d.name.as_str()) {
                p.push(Duplicate, &subject, format!("device {} listed twice", d.name));
            }
            if d.name.is_empty() || d.name.contains('/') {
                p.push(Invalid, &subject, format!("device {:?} must be a name under /dev", d.name));
            }
        }
    }

    // Ceph: every pool lives in the Rook cluster, which holds enough hosts per device class.
    let ceph = &spec.ceph;
    if !seen.contains(ceph.cluster.as_str()) {
        p.push(UnknownReference, "ceph", format!("cluster {:?} has no [[cluster]] entry", ceph.cluster));
    }
    for pool in topo.pools() {
        if pool.cluster != ceph.cluster {
            p.push(
                UnknownReference,
                format!("pool {}", pool.id()),
                format!("is in {} but Ceph (Rook) runs in {} only", pool.cluster, ceph.cluster),
            );
        }
    }
    let ceph_nodes: Vec<&NodeSpec> = spec.nodes.iter().filter(|n| n.cluster == ceph.cluster).collect();
    let mons = ceph_nodes.iter().filter(|n| n.roles.contains(&NodeRole::Mon)).count();
    if mons == 0 || mons % 2 == 0 {
        p.push(Invalid, "ceph", format!("{mons} mon nodes: Ceph needs an odd number of monitors (1, 3, 5)"));
    }
    for n in &ceph_nodes {
        if (n.roles.contains(&NodeRole::Storage) || n.roles.contains(&NodeRole::Mon))
            && !ceph.public_network.contains(n.overlay_address)
        {
            p.push(
                Invalid,
                format!("node {}", n.name),
                format!(
                    "overlay_address {} is outside Ceph's public_network {}",
                    n.overlay_address, ceph.public_network
                ),
            );
        }
    }
    let hosts_with = |class: &str| {
        ceph_nodes
            .iter()
            .filter(|n| n.roles.contains(&NodeRole::Storage) && n.devices.iter().any(|d| d.class == class))
            .count()
    };
    let devices_with = |class: &str| {
        ceph_nodes
            .iter()
            .filter(|n| n.roles.contains(&NodeRole::Storage))
            .flat_map(|n| &n.devices)
            .filter(|d| d.class == class)
            .count()
    };
    let mut need_hosts = |subject: String, class: &str, domain: FailureDomain, width: u32| {
        let (have, unit) = match domain {
            FailureDomain::Host => (hosts_with(class), "hosts"),
            FailureDomain::Osd => (devices_with(class), "devices"),
            other => {
                return p.push(
                    Invalid,
                    subject,
                    format!("failure domain {other} is not modelled by the description (only host and osd are)"),
                );
            }
        };
        if (have as u64) < u64::from(width) {
            p.push(
                NotEnoughHosts,
                subject,
                format!("needs {width} {unit} with {class} devices across {domain}s; {} has {have}", ceph.cluster),
            );
        }
    };
    for pool in topo.pools().iter().filter(|pl| pl.cluster == ceph.cluster) {
        let width = match pool.redundancy {
            Redundancy::Replicated { size } => size,
            Redundancy::Erasure { k, m } => k + m,
        };
        need_hosts(format!("pool {}", pool.id()), &pool.device_class, pool.failure_domain, width);
    }
    let meta = &spec.gateway.metadata_pool;
    need_hosts(format!("gateway.metadata_pool {}", meta.name), &meta.device_class, FailureDomain::Host, meta.replicas);
    if topo.pools().iter().any(|pl| pl.name == meta.name) {
        p.push(
            Duplicate,
            "gateway.metadata_pool",
            format!("{} is a placement pool; the metadata pool must be one placement never chooses", meta.name),
        );
    }
    if meta.replicas < 2 {
        p.push(Invalid, "gateway.metadata_pool", "replicas must be at least 2");
    }

    // Gateway.
    let g = &spec.gateway;
    if !seen.contains(g.cluster.as_str()) {
        p.push(UnknownReference, "gateway", format!("cluster {:?} has no [[cluster]] entry", g.cluster));
    }
    if g.cluster != ceph.cluster {
        p.push(
            Invalid,
            "gateway",
            format!("runs in {} but Ceph is in {}: the gateway belongs beside its OSDs", g.cluster, ceph.cluster),
        );
    }
    if spec.nodes.iter().all(|n| n.cluster != g.cluster || !n.roles.contains(&NodeRole::Gateway)) {
        p.push(Missing, "gateway", format!("no node of {} has the gateway role", g.cluster));
    }
    if !topo_cluster(&g.placement_consumer) {
        p.push(
            UnknownReference,
            "gateway",
            format!("placement_consumer {:?} is not a topology cluster", g.placement_consumer),
        );
    }
    if !is_dns_name(&g.domain) || !g.domain.contains('.') {
        p.push(Invalid, "gateway", format!("domain {:?} is not a DNS name", g.domain));
    }
    if !(30000..=32767).contains(&g.node_port) {
        p.push(
            Invalid,
            "gateway",
            format!("node_port {} is outside Kubernetes' NodePort range 30000-32767", g.node_port),
        );
    }
    for (what, v) in [("namespace", &g.namespace), ("ceph_id", &g.ceph_id)] {
        if !is_dns_label(v) {
            p.push(Invalid, "gateway", format!("{what} {v:?} is not a DNS label"));
        }
    }

    // CSI.
    let csi = &spec.csi;
    match topo.pools().iter().find(|pl| pl.name == csi.journal_pool) {
        None => p.push(
            UnknownReference,
            "csi",
            format!("journal_pool {:?} is not a pool of the topology", csi.journal_pool),
        ),
        Some(pl) if pl.kind != PoolKind::Rbd => {
            p.push(Invalid, "csi", format!("journal_pool {} is a {} pool, not rbd", pl.name, pl.kind))
        }
        Some(_) => {}
    }
    for (what, v) in [("namespace", &csi.namespace), ("ceph_id", &csi.ceph_id), ("ceph.namespace", &ceph.namespace)] {
        if !is_dns_label(v) {
            p.push(Invalid, "csi", format!("{what} {v:?} is not a DNS label"));
        }
    }

    // Edge: VRRP priorities for exactly the edge nodes, all on the VIP's network.
    let e = &spec.edge;
    let edge_nodes: Vec<&NodeSpec> =
        spec.nodes.iter().filter(|n| n.cluster == e.cluster && n.roles.contains(&NodeRole::Edge)).collect();
    if edge_nodes.is_empty() {
        p.push(Missing, "edge", format!("no node of {} has the edge role", e.cluster));
    }
    for n in &edge_nodes {
        if !e.priorities.contains_key(&n.name) {
            p.push(Missing, "edge", format!("edge node {} has no VRRP priority", n.name));
        }
    }
    let mut prio: HashMap<u8, &str> = HashMap::new();
    for (name, &pr) in &e.priorities {
        if !edge_nodes.iter().any(|n| &n.name == name) {
            p.push(
                UnknownReference,
                "edge",
                format!("priorities names {name}, which is not an edge node of {}", e.cluster),
            );
        }
        if pr == 0 || pr == 255 {
            p.push(Invalid, "edge", format!("priority {pr} of {name}: VRRP priorities for backups are 1-254"));
        }
        if let Some(other) = prio.insert(pr, name) {
            p.push(
                Duplicate,
                "edge",
                format!("{name} and {other} share priority {pr}: the master would be a coin toss"),
            );
        }
    }
    let vip_net = crate::spec::Ipv4Net { addr: e.vip, prefix: e.vip_prefix };
    if e.vip_prefix > 32 {
        p.push(Invalid, "edge", format!("vip_prefix {} is not 0-32", e.vip_prefix));
    }
    for n in &edge_nodes {
        if !vip_net.contains(n.endpoint) {
            p.push(
                Invalid,
                "edge",
                format!("edge node {}'s endpoint {} is not on the VIP's network {vip_net}", n.name, n.endpoint),
            );
        }
    }
    if endpoints.contains_key(&e.vip) || overlay.contains_key(&e.vip) {
        p.push(Duplicate, "edge", format!("vip {} is a node's own address", e.vip));
    }
    if e.virtual_router_id == 0 || e.advert_int_secs == 0 {
        p.push(Invalid, "edge", "virtual_router_id and advert_int_secs must be at least 1");
    }
    if e.rate_limit_requests == 0 || e.rate_limit_period_secs == 0 || e.max_connections_per_client == 0 {
        p.push(Invalid, "edge", "rate limits must be at least 1");
    }
    if !is_interface_name(&e.interface) {
        p.push(Invalid, "edge", format!("interface {:?} is not a Linux interface name", e.interface));
    }
}

/// Linux interface names: 1-15 bytes, no slash, no space.
pub fn is_interface_name(s: &str) -> bool {
    (1..=15).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

type ClassPlans = (BTreeMap<String, Vec<StorageClassPlan>>, BTreeMap<String, Vec<(String, String)>>);

/// For every member that takes Vault volumes, the rbd device classes the engine places for it.
fn plan_storage_classes(spec: &FederationSpec, topo: &Topology) -> ClassPlans {
    let classes: BTreeSet<&str> =
        topo.pools().iter().filter(|p| p.kind == PoolKind::Rbd).map(|p| p.device_class.as_str()).collect();
    let mut plans = BTreeMap::new();
    let mut refused = BTreeMap::new();
    for c in &spec.clusters {
        let Some(m) = &c.member else { continue };
        if m.storage_class.is_none() {
            continue;
        }
        let (mut ok, mut no) = (Vec::new(), Vec::new());
        for class in &classes {
            let req = Request::new(c.name.clone(), RequestKind::Volume, 0).with_class(*class);
            match cyvault_placement::choose_pool(topo, &req) {
                Ok(d) => ok.push(StorageClassPlan {
                    name: storage_class_name(class),
                    device_class: (*class).to_owned(),
                    pool: d.pool(topo).name.clone(),
                }),
                Err(r) => no.push(((*class).to_owned(), format!("{}: {}", r.code, r.message))),
            }
        }
        plans.insert(c.name.clone(), ok);
        refused.insert(c.name.clone(), no);
    }
    (plans, refused)
}

fn check_members(
    spec: &FederationSpec,
    topo: &Topology,
    plans: &BTreeMap<String, Vec<StorageClassPlan>>,
    p: &mut Problems,
) {
    use DescriptionErrorKind::*;
    for c in &spec.clusters {
        let Some(m) = &c.member else { continue };
        let subject = format!("cluster {}", c.name);
        if topo.cluster(&c.name).is_some_and(|t| t.role == cyvault_placement::Role::Control) {
            p.push(Invalid, &subject, "the control cluster runs Karmada and cannot be its own member");
        }
        if let Some(sc) = &m.storage_class {
            let offered = plans.get(&c.name).map(Vec::as_slice).unwrap_or_default();
            if !offered.iter().any(|plan| &plan.name == sc) {
                let names: Vec<&str> = offered.iter().map(|plan| plan.name.as_str()).collect();
                p.push(
                    Unplaceable,
                    &subject,
                    format!(
                        "storage_class {sc} is not one the placement engine can place volumes of for {} (offered: {})",
                        c.name,
                        if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                    ),
                );
            }
        }
        if !m.gateway_endpoint.starts_with("https://") {
            p.push(Invalid, &subject, format!("gateway_endpoint {:?} must be https://", m.gateway_endpoint));
        }
        if let Some(loc) = &m.bucket_location {
            let mut req = Request::new(c.name.clone(), RequestKind::Bucket, 0);
            if topo.policies().iter().any(|pol| &pol.name == loc && pol.kind == RequestKind::Bucket) {
                req = req.with_policy(loc.clone());
            } else {
                req = req.with_class(loc.clone());
            }
            if let Err(r) = cyvault_placement::choose_pool(topo, &req) {
                p.push(Unplaceable, &subject, format!("bucket_location {loc}: {}: {}", r.code, r.message));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const FED: &str = include_str!("../../deploy/federation.toml");
    const TOPO: &str = include_str!("../../deploy/placement/cyberun.toml");

    #[test]
    fn the_cyberun_description_is_valid() {
        let f = Federation::new(FED, TOPO).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.control_cluster(), Some("carrier"));
        let members: Vec<&str> = f.members().iter().map(|(c, _)| c.name.as_str()).collect();
        assert_eq!(members, ["destroyer", "aegis"]);
        // Only Destroyer takes volumes; both rbd classes are within its 2 ms budget.
        let classes: Vec<(&str, &str)> =
            f.storage_classes()["destroyer"].iter().map(|s| (s.name.as_str(), s.pool.as_str())).collect();
        assert_eq!(classes, [("vault-rbd-nvme", "rbd-nvme"), ("vault-rbd-ssd", "rbd-ssd")]);
        assert!(!f.storage_classes().contains_key("aegis"));
        assert_eq!(f.mon_addresses().len(), 3);
    }

    /// Edits the Cyberun description and returns the problems, one line each.
    fn problems(edit: impl Fn(&str) -> String) -> Vec<String> {
        match Federation::new(&edit(FED), TOPO) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[track_caller]
    fn check(edit: impl Fn(&str) -> String, expect: expect_test::Expect) {
        expect.assert_eq(&problems(edit).join("\n"));
    }

    #[test]
    fn broken_descriptions_name_every_problem() {
        use expect_test::expect;
        check(
            |s| s.replacen("overlay_address = \"10.100.0.12\"", "overlay_address = \"10.100.0.11\"", 1),
            expect!["VAULT-DP-102: node carrier-2: overlay_address 10.100.0.11 is also carrier-1's"],
        );
        check(
            |s| s.replacen("cluster = \"carrier\"\nroles", "cluster = \"tokyo-2\"\nroles", 1),
            expect![[r#"VAULT-DP-101: node carrier-1: cluster "tokyo-2" has no [[cluster]] entry"#]],
        );
        check(
            |s| s.replacen("overlay_address = \"10.100.3.44\"", "overlay_address = \"10.99.3.44\"", 1),
            expect![[r#"
                VAULT-DP-103: node aux-4: overlay_address 10.99.3.44 is outside the mesh 10.100.0.0/16
                VAULT-DP-103: node aux-4: overlay_address 10.99.3.44 is outside Ceph's public_network 10.100.3.0/24"#]],
        );
        // Five storage hosts cannot hold an EC 4+2 pool across hosts.
        check(
            |s| {
                s.replacen("roles = [\"worker\", \"storage\", \"gateway\"]", "roles = [\"worker\", \"gateway\"]", 1)
                .replacen("devices = [{ name = \"nvme0n1\", class = \"nvme\" }, { name = \"sda\", class = \"ssd\" }, { name = \"sdb\", class = \"hdd\" }]\n\n[[node]]\nname = \"aux-5\"", "\n[[node]]\nname = \"aux-5\"", 1)
            },
            expect![
                "VAULT-DP-104: pool auxiliary/s3-hdd-ec: needs 6 hosts with hdd devices across hosts; auxiliary has 5"
            ],
        );
        check(
            |s| s.replacen("storage_class = \"vault-rbd-nvme\"", "storage_class = \"vault-rbd-hdd\"", 1),
            expect![
                "VAULT-DP-105: cluster destroyer: storage_class vault-rbd-hdd is not one the placement engine can place volumes of for destroyer (offered: vault-rbd-nvme, vault-rbd-ssd)"
            ],
        );
        // Aegis given a StorageClass: the engine refuses its volumes across the Atlantic.
        check(
            |s| {
                s.replacen("gateway_endpoint = \"https://api.cyberun.cloud\"\nbucket_location = \"hdd\"", "storage_class = \"vault-rbd-nvme\"\ngateway_endpoint = \"https://api.cyberun.cloud\"\nbucket_location = \"hdd\"", 1)
            },
            expect![
                "VAULT-DP-105: cluster aegis: storage_class vault-rbd-nvme is not one the placement engine can place volumes of for aegis (offered: none)"
            ],
        );
        check(
            |s| s.replacen("\"aux-edge-2\" = 100", "\"aux-edge-2\" = 150", 1),
            expect![
                "VAULT-DP-102: edge: aux-edge-2 and aux-edge-1 share priority 150: the master would be a coin toss"
            ],
        );
        check(
            |s| s.replacen("endpoint = \"198.51.100.48\"", "endpoint = \"203.0.113.48\"", 1),
            expect![
                "VAULT-DP-103: edge: edge node aux-edge-2's endpoint 203.0.113.48 is not on the VIP's network 198.51.100.50/24"
            ],
        );
        check(
            |s| s.replacen("[mesh]\n", "[mesh]\nport = 1\n", 1),
            expect![[r#"
                VAULT-DP-100: federation description: TOML parse error at line 15, column 1
                   |
                15 | port = 1
                   | ^^^^
                unknown field `port`, expected one of `interface`, `listen_port`, `overlay_cidr`, `persistent_keepalive_secs`, `mtu`, `private_key_file`
            "#]],
        );
    }
}
