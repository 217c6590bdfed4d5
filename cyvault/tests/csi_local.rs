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
