//! s3cmd against the real gateway on RADOS (the Ceph tier): the same session as `s3_s3cmd`.

mod common;
#[path = "common/s3cmd_flow.rs"]
mod s3cmd_flow;

use common::{Backend, Gateway};

#[test]
fn s3cmd_bucket_object_sync_and_error_exits_on_rados() {
    let gw = Gateway::start(Backend::Rados);
    s3cmd_flow::s3cmd_flow(&gw.endpoint, &gw.access_key, &gw.secret_key);
}
