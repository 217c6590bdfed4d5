//! The description file (`deploy/federation.toml`) as written: serde types, one per table.
//! docs/deploy.md describes every field for operators; [`crate::Federation`] is the validated form.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// The whole description. Every table is required: a federation without a mesh or an edge is not
/// this one.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationSpec {
    pub mesh: MeshSpec,
    pub flux: FluxSpec,
    #[serde(rename = "cluster")]
    pub clusters: Vec<ClusterSpec>,
    #[serde(rename = "node")]
    pub nodes: Vec<NodeSpec>,
    pub ceph: CephSpec,
    pub gateway: GatewaySpec,
    pub csi: CsiSpec,
    pub edge: EdgeSpec,
}

/// The host-level WireGuard full mesh between every node of every site.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshSpec {
    /// The interface name on every host (`wg-quick up NAME`).
    pub interface: String,
    /// UDP port every node listens on unless it says otherwise.
    pub listen_port: u16,
    /// Every overlay address lies in this network.
    pub overlay_cidr: Ipv4Net,
    pub persistent_keepalive_secs: u16,
    pub mtu: u16,
    /// Where each host keeps its private key: the rendered wg-quick files read it from there.
    pub private_key_file: String,
}

/// Where every cluster's Flux pulls this repository from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FluxSpec {
    pub url: String,
    pub branch: String,
    /// How often Flux looks for new commits (a Flux duration: `10m`).
    pub interval: String,
}

/// The Kubernetes side of one cluster of the topology.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// A cluster of the placement topology.
    pub name: String,
    /// `https://HOST:PORT` of its API server, over the mesh.
    pub api_server: String,
    /// Cilium's cluster-pool range for this cluster's pods (also its native-routing CIDR).
    pub pod_cidr: Ipv4Net,
    /// Cilium's cluster id (1–255, unique in the federation).
    pub cilium_cluster_id: u8,
    /// Present when the cluster is a Karmada member registered on the control cluster.
    #[serde(default)]
    pub member: Option<MemberSpec>,
}

/// How Karmada treats a member cluster.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSpec {
    pub sync_mode: SyncMode,
    /// Workloads labelled `cyberun.cloud/workload=<this>` are propagated to this member.
    pub workloads: String,
    /// The StorageClass PVCs propagated here are given (`vault-rbd-<device class>`); none when
    /// the placement engine can place no volume for this member.
    #[serde(default)]
    pub storage_class: Option<String>,
    /// The S3 endpoint this member's apps use.
    pub gateway_endpoint: String,
    /// The LocationConstraint this member's apps create buckets with (a device class of an
    /// s3-data pool, or a bucket policy's name).
    #[serde(default)]
    pub bucket_location: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum SyncMode {
    Push,
    Pull,
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncMode::Push => "Push",
            SyncMode::Pull => "Pull",
        })
    }
}

/// One host.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// The host name, which is also its Kubernetes Node name.
    pub name: String,
    pub cluster: String,
    pub roles: Vec<NodeRole>,
    /// The public (underlay) address the mesh's UDP goes to.
    pub endpoint: Ipv4Addr,
    /// Overrides `mesh.listen_port` for this node.
    #[serde(default)]
    pub listen_port: Option<u16>,
    /// The node's address inside the mesh; also its Kubernetes InternalIP.
    pub overlay_address: Ipv4Addr,
    /// OSD devices (storage nodes only).
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRole {
    ControlPlane,
    Worker,
    Gpu,
    Storage,
    Mon,
    Gateway,
    Edge,
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeRole::ControlPlane => "control-plane",
            NodeRole::Worker => "worker",
            NodeRole::Gpu => "gpu",
            NodeRole::Storage => "storage",
            NodeRole::Mon => "mon",
            NodeRole::Gateway => "gateway",
            NodeRole::Edge => "edge",
        })
    }
}

/// One OSD device of a storage node.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// The device name under /dev (`nvme0n1`).
    pub name: String,
    /// Its CRUSH device class; pools choose devices by it.
    pub class: String,
}

/// Rook-Ceph.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CephSpec {
    /// The cluster running Ceph: every pool of the topology is in it.
    pub cluster: String,
    pub namespace: String,
    pub image: String,
    /// Ceph's public network: every storage and mon node's overlay address lies in it.
    pub public_network: Ipv4Net,
}

/// The S3 gateway.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    pub cluster: String,
    pub namespace: String,
    /// The S3 endpoint's domain; `*.DOMAIN` serves virtual-host-style requests.
    pub domain: String,
    pub region: String,
    /// The port the gateway pods listen on.
    pub port: u16,
    /// The NodePort the edge reaches the gateway pods through.
    pub node_port: u16,
    /// The cephx user (`client.<ceph_id>`).
    pub ceph_id: String,
    /// The topology cluster whose latency budget new buckets are placed for.
    pub placement_consumer: String,
    pub metadata_pool: MetadataPoolSpec,
}

/// The gateway's own pool (users, keys, bucket records, indexes): not a placement pool.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataPoolSpec {
    pub name: String,
    pub device_class: String,
    pub replicas: u32,
}

/// The CSI driver.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsiSpec {
    pub namespace: String,
    pub ceph_id: String,
    /// An rbd pool of the topology holding the idempotency journal.
    pub journal_pool: String,
}

/// HAProxy + Keepalived.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    pub cluster: String,
    /// The virtual address `api.cyberun.cloud` resolves to.
    pub vip: Ipv4Addr,
    pub vip_prefix: u8,
    /// The underlay interface of the edge nodes (VIP and VRRP adverts).
    pub interface: String,
    pub virtual_router_id: u8,
    pub advert_int_secs: u8,
    /// VRRP priority of each edge node; the highest starts as master.
    pub priorities: BTreeMap<String, u8>,
    pub https_port: u16,
    /// HAProxy's `/healthz` on 127.0.0.1 (keepalived's track script asks it).
    pub health_port: u16,
    /// The PEM (certificate chain, key beside it as `.key`) HAProxy serves.
    pub tls_certificate: String,
    pub stats_socket: String,
    /// Requests per client address and period above which the edge answers 503 SlowDown.
    pub rate_limit_requests: u32,
    pub rate_limit_period_secs: u32,
    /// Concurrent connections per client address above which new ones are refused.
    pub max_connections_per_client: u32,
}

/// An IPv4 network, `10.100.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    fn mask(self) -> u32 {
        if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) }
    }

    /// Whether `ip` lies in this network.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }

    /// Whether the two networks share an address.
    pub fn overlaps(self, other: Ipv4Net) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// Whether the address part has no host bits set (`10.0.0.0/8`, not `10.0.0.1/8`).
    pub fn is_network(self) -> bool {
        u32::from(self.addr) & !self.mask() == 0
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("{a:?} is not an IPv4 address"))?;
        let prefix: u8 =
            p.parse().ok().filter(|p| *p <= 32).ok_or_else(|| format!("{p:?} is not a prefix length 0-32"))?;
        Ok(Ipv4Net { addr, prefix })
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn networks_parse_contain_and_overlap() {
        let n: Ipv4Net = "10.100.0.0/16".parse().unwrap();
        assert!(n.contains("10.100.3.41".parse().unwrap()));
        assert!(!n.contains("10.101.0.1".parse().unwrap()));
        assert!(n.is_network());
        assert!(!"10.100.0.1/16".parse::<Ipv4Net>().unwrap().is_network());
        assert!(n.overlaps("10.100.3.0/24".parse().unwrap()));
        assert!(!n.overlaps("10.200.0.0/16".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<Ipv4Net>().unwrap().contains("1.2.3.4".parse().unwrap()));
        for bad in ["10.0.0.0", "10.0.0.0/33", "10.0.0/8", "x/8"] {
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad}");
        }
    }
}
