//! The CSI plugin on the local backend, driven over its socket: a volume from CreateVolume to a
//! mounted filesystem and back, with snapshots, clones and expansion (real loop devices, mkfs
//! and mounts; we are root).

mod common;

use common::csi::{Plugin, create_req, mount_cap, mounts_under};
use cyvault_proto::csi::v1 as pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_from_create_to_mount_and_back() {
    let plugin = Plugin::start(&["--backend", "local"]);
    let mut c = plugin.clients().await;
    let info =
        c.identity.get_plugin_info(pb::GetPluginInfoRequest {}).await.unwrap_or_else(|e| panic!("{e}")).into_inner();
    assert_eq!(info.name, "vault.csi.cyberun.cloud");
    let vol = c
        .controller
        .create_volume(create_req("pvc-1", 64 << 20, mount_cap("ext4")))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .volume
        .unwrap_or_else(|| panic!("no volume"));
    assert_eq!(vol.capacity_bytes, 64 << 20);
    let staging = plugin.path("staging/pvc-1");
    let target = plugin.path("pods/p1/vol");
    c.node
        .node_stage_volume(pb::NodeStageVolumeRequest {
            volume_id: vol.volume_id.clone(),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(mount_cap("ext4")),
            volume_context: vol.volume_context.clone(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("stage: {e}"));
    c.node
        .node_publish_volume(pb::NodePublishVolumeRequest {
            volume_id: vol.volume_id.clone(),
            staging_target_path: staging.display().to_string(),
            target_path: target.display().to_string(),
            volume_capability: Some(mount_cap("ext4")),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    std::fs::write(target.join("hello.txt"), b"hello csi").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mounts_under(plugin.dir.path()).len(), 2);
    c.node
        .node_unpublish_volume(pb::NodeUnpublishVolumeRequest {
            volume_id: vol.volume_id.clone(),
            target_path: target.display().to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("unpublish: {e}"));
    c.node
        .node_unstage_volume(pb::NodeUnstageVolumeRequest {
            volume_id: vol.volume_id.clone(),
            staging_target_path: staging.display().to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("unstage: {e}"));
    assert!(mounts_under(plugin.dir.path()).is_empty());
    c.controller
        .delete_volume(pb::DeleteVolumeRequest { volume_id: vol.volume_id.clone(), ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("delete: {e}"));
}

/// Placement through the socket: the requisite topology picks the consumer, the engine the pool;
/// the volume reports its accessible topology, and a consumer an ocean away is refused with
/// RESOURCE_EXHAUSTED carrying the engine's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_volume_places_by_topology_and_refuses_clearly() {
    use std::collections::HashMap;
    let topo = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/placement/cyberun.toml");
    let plugin = Plugin::start(&[
        "--backend",
        "local",
        "--placement-topology",
        topo,
        "--placement-consumer",
        "destroyer",
        "--placement-cluster",
        "auxiliary",
    ]);
    let mut c = plugin.clients().await;
    let seg = |cluster: &str| pb::Topology {
        segments: HashMap::from([("topology.cyvault.io/cluster".to_string(), cluster.to_string())]),
    };
    let mut req = create_req("placed", 1 << 30, mount_cap("ext4"));
    req.accessibility_requirements =
        Some(pb::TopologyRequirement { requisite: vec![seg("destroyer")], preferred: vec![seg("aegis")] });
    let vol = c.controller.create_volume(req).await.unwrap_or_else(|e| panic!("{e}")).into_inner().volume;
    let vol = vol.unwrap_or_else(|| panic!("no volume"));
    // Aegis (preferred) is refused by the 2 ms budget, Destroyer (requisite) places on NVMe.
    assert!(vol.volume_id.starts_with("cyv1:v:rbd-nvme:"), "{}", vol.volume_id);
    assert_eq!(vol.accessible_topology, vec![seg("destroyer")]);
    assert!(plugin.path("data/csi/pools/rbd-nvme").read_dir().map(|d| d.count()).unwrap_or(0) == 1);

    let mut far = create_req("far", 1 << 30, mount_cap("ext4"));
    far.accessibility_requirements = Some(pb::TopologyRequirement { requisite: vec![seg("aegis")], preferred: vec![] });
    let err = c.controller.create_volume(far).await.err().unwrap_or_else(|| panic!("aegis was placed"));
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(
        err.message()
            .starts_with("VAULT-PL-001: no rbd pool within 2.0 ms of aegis; nearest auxiliary/rbd-nvme at 88.4 ms"),
        "{}",
        err.message()
    );
    // A class from the StorageClass.
    let mut ssd = create_req("ssd", 1 << 30, mount_cap("ext4"));
    ssd.parameters.insert("deviceClass".into(), "ssd".into());
    let vol = c.controller.create_volume(ssd).await.unwrap_or_else(|e| panic!("{e}")).into_inner().volume;
    assert!(vol.map(|v| v.volume_id).unwrap_or_default().starts_with("cyv1:v:rbd-ssd:"));
}

/// The one TOML config: `[storage]` and `[csi]` keys apply where no flag says otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_sets_what_flags_do_not() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cfg = dir.path().join("cyvault.toml");
    std::fs::write(
        &cfg,
        "[storage]\nbackend = \"local\"\n\n[csi]\npool = \"from-config\"\nmax_volumes = 7\n\n[csi.node_topology]\n\"topology.cyvault.io/cluster\" = \"destroyer\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let plugin = Plugin::start(&["--config", &cfg.display().to_string()]);
    let mut c = plugin.clients().await;
    let vol = c.controller.create_volume(create_req("cfg", 1 << 20, mount_cap("ext4"))).await;
    let vol = vol.unwrap_or_else(|e| panic!("{e}")).into_inner().volume.unwrap_or_else(|| panic!("no volume"));
    assert!(vol.volume_id.starts_with("cyv1:v:from-config:"), "{}", vol.volume_id);
    let info = c.node.node_get_info(pb::NodeGetInfoRequest {}).await.unwrap_or_else(|e| panic!("{e}")).into_inner();
    assert_eq!(info.max_volumes_per_node, 7);
    let topo = info.accessible_topology.map(|t| t.segments).unwrap_or_default();
    assert_eq!(topo.get("topology.cyvault.io/cluster").map(String::as_str), Some("destroyer"));
}
