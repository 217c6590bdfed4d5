//! Ceph tier: the rclone round trip of `s3_rclone.rs` with the gateway on RADOS (a smaller tree:
//! 200 files plus one 64 MiB multipart file), proving sync, check and copy-back on the real backend.

mod common;
#[path = "common/rclone_flow.rs"]
mod rclone_flow;

use common::{Backend, Gateway};

#[test]
fn rclone_sync_check_and_copy_back_on_rados() {
    let gw = Gateway::start(Backend::Rados);
    rclone_flow::run(&gw.endpoint, &gw.access_key, &gw.secret_key, rclone_flow::TreeSpec { files: 200, big_mib: 64 });
}
