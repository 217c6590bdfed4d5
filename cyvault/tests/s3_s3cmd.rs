//! s3cmd 2.3 (SigV4, path-style, plain http) against the real gateway on the local backend: bucket
//! and object commands, a multipart put, sync both ways, recursive delete, and s3cmd's own exit
//! codes and messages for a missing bucket, a missing key and a non-empty bucket.

mod common;
#[path = "common/s3cmd_flow.rs"]
mod s3cmd_flow;

use common::{Backend, Gateway};

#[test]
fn s3cmd_bucket_object_sync_and_error_exits() {
    let gw = Gateway::start(Backend::Local);
    s3cmd_flow::s3cmd_flow(&gw.endpoint, &gw.access_key, &gw.secret_key);
}
