//! The CSI conformance suite (common/csi_suite.rs) on RADOS, in the Ceph tier: the real
//! `cyvault csi` binary over its unix socket, volumes as RBD images in `CYVAULT_RBD_POOL`
//! attached through FUSE + loop (the default `attach`). Each test has a journal namespace of
//! its own; the image pool is shared, so names are unique per call.

mod common;
#[path = "common/csi_suite.rs"]
mod csi_suite;

use common::csi::Plugin;
use csi_suite::Backend;

const B: Backend = Backend::Rados;

/// Starts the plugin on the dev cluster with a fresh journal namespace; returns it and the
/// namespace.
fn plugin(extra: &[&str]) -> (Plugin, String) {
    let conf = std::env::var("CYVAULT_CEPH_CONF").unwrap_or_default();
    assert!(
        !conf.is_empty(),
        "CYVAULT_CEPH_CONF is not set: the Ceph tier needs the dev cluster; run it through scripts/test \
         (or start scripts/dev-cluster and eval its `env` output)"
    );
    let id = std::env::var("CYVAULT_CEPH_ID").unwrap_or_else(|_| "admin".into());
    let pool = std::env::var("CYVAULT_RBD_POOL").unwrap_or_else(|_| "rbd".into());
    let namespace = csi_suite::unique("csi-conformance");
    let mut args = vec![
        "--backend",
        "rados",
        "--ceph-conf",
        &conf,
        "--ceph-id",
        &id,
        "--pool",
        &pool,
        "--journal-namespace",
        &namespace,
    ];
    args.extend_from_slice(extra);
    (Plugin::start(&args), namespace)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity() {
    csi_suite::identity(&plugin(&[]).0, B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_basics() {
    csi_suite::controller_basics(&plugin(&[]).0, B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots() {
    csi_suite::snapshots(&plugin(&[]).0, B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_pages_by_source() {
    csi_suite::snapshot_pages_by_source(&plugin(&[]).0, B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_snapshot_and_clone() {
    csi_suite::data_survives_snapshot_and_clone(&plugin(&[]).0, B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfs_clone_beside_its_source() {
    csi_suite::xfs_clone_beside_its_source(&plugin(&[]).0, B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstage_then_delete_at_once() {
    csi_suite::unstage_then_delete_at_once(&plugin(&[]).0, B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expansion() {
    csi_suite::expansion(&plugin(&[]).0, B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_service() {
    csi_suite::node_service(&plugin(&csi_suite::NODE_ARGS).0, B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_block_volume() {
    csi_suite::node_block_volume(&plugin(&[]).0, B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_xfs_volume() {
    csi_suite::node_xfs_volume(&plugin(&[]).0, B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates() {
    let (mut p, namespace) = plugin(&[]);
    csi_suite::concurrent_creates(&mut p, B, &namespace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_safety() {
    csi_suite::restart_safety(&mut plugin(&[]).0, B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_a_staged_volume() {
    csi_suite::restart_with_a_staged_volume(&mut plugin(&[]).0, B).await;
}
