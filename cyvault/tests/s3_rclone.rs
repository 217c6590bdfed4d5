//! rclone 1.60 against the real gateway on the local backend: `sync` of 1,000 nested files (0 B to
//! 256 KiB, names with spaces and non-ASCII) plus a 200 MiB multipart file, `check` with zero
//! differences, a second sync after changes, `lsjson`/`size` counts, and a byte-exact copy back.

mod common;
#[path = "common/rclone_flow.rs"]
mod rclone_flow;

use common::{Backend, Gateway};

#[test]
fn rclone_sync_check_and_copy_back_1000_files_and_200_mib() {
    let gw = Gateway::start(Backend::Local);
    rclone_flow::run(&gw.endpoint, &gw.access_key, &gw.secret_key, rclone_flow::TreeSpec { files: 1000, big_mib: 200 });
}
