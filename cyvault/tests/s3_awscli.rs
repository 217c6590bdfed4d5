//! aws-cli v1 against the real gateway on the local backend: `aws s3` (mb/cp/ls/sync/rm/rb, a
//! 20 MiB multipart copy both ways and server-side), `aws s3api` object, listing and multipart
//! commands, `aws s3 presign` fetched with curl, and S3 error codes as the CLI reports them.

#[path = "common/clients.rs"]
mod clients;
mod common;

use std::path::Path;

use clients::Aws;
use common::Backend;

fn with_root_cli(flow: fn(&Aws, &Path)) {
    clients::with_root_cli(Backend::Local, flow);
}

#[test]
fn aws_s3_mb_cp_ls_rm_rb() {
    with_root_cli(clients::s3_basic_flow);
}

#[test]
fn aws_s3_sync_up_down_and_delete() {
    with_root_cli(clients::s3_sync_flow);
}

#[test]
fn aws_s3_cp_20_mib_multipart_round_trip() {
    with_root_cli(clients::large_file_flow);
}

#[test]
fn aws_s3api_put_head_get_range_copy_tagging() {
    with_root_cli(clients::s3api_object_flow);
}

#[test]
fn aws_s3api_versions_delete_objects_attributes() {
    with_root_cli(clients::s3api_versions_attributes_flow);
}

#[test]
fn aws_s3api_listing_with_prefix_delimiter_and_paging() {
    with_root_cli(clients::s3api_listing_flow);
}

#[test]
fn aws_s3api_multipart_upload_by_hand() {
    with_root_cli(clients::multipart_by_hand_flow);
}

#[test]
fn aws_s3api_multipart_abort() {
    with_root_cli(clients::multipart_abort_flow);
}

#[test]
fn aws_s3_presign_fetched_with_curl() {
    with_root_cli(clients::presign_flow);
}

#[test]
fn aws_cli_reports_s3_error_codes() {
    with_root_cli(clients::error_table_flow);
}
