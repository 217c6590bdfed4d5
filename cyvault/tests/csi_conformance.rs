//! The CSI conformance suite (common/csi_suite.rs) on the local backend: the real `cyvault csi`
//! binary over its unix socket, volumes as sparse files attached through loop devices (we are
//! root). The same suite runs on RADOS in `ceph_csi_conformance.rs`.

mod common;
#[path = "common/csi_suite.rs"]
mod csi_suite;

use common::csi::Plugin;
use csi_suite::Backend;

const B: Backend = Backend::Local;
/// The plugin's journal namespace (the default of `--journal-namespace`).
const JOURNAL_NAMESPACE: &str = "cyvault-csi";

fn plugin(extra: &[&str]) -> Plugin {
    let mut args = vec!["--backend", "local"];
    args.extend_from_slice(extra);
    Plugin::start(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity() {
    csi_suite::identity(&plugin(&[]), B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_basics() {
    csi_suite::controller_basics(&plugin(&[]), B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots() {
    csi_suite::snapshots(&plugin(&[]), B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_pages_by_source() {
    csi_suite::snapshot_pages_by_source(&plugin(&[]), B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_snapshot_and_clone() {
    csi_suite::data_survives_snapshot_and_clone(&plugin(&[]), B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfs_clone_beside_its_source() {
    csi_suite::xfs_clone_beside_its_source(&plugin(&[]), B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstage_then_delete_at_once() {
    csi_suite::unstage_then_delete_at_once(&plugin(&[]), B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expansion() {
    csi_suite::expansion(&plugin(&[]), B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_service() {
    csi_suite::node_service(&plugin(&csi_suite::NODE_ARGS), B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_block_volume() {
    csi_suite::node_block_volume(&plugin(&[]), B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_xfs_volume() {
    csi_suite::node_xfs_volume(&plugin(&[]), B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates() {
    csi_suite::concurrent_creates(&mut plugin(&[]), B, JOURNAL_NAMESPACE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_safety() {
    csi_suite::restart_safety(&mut plugin(&[]), B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_a_staged_volume() {
    csi_suite::restart_with_a_staged_volume(&mut plugin(&[]), B).await;
}
