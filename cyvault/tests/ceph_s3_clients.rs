//! Ceph tier: the boto3 suite and the aws-cli flows against the gateway on the RADOS backend (the
//! dev cluster), user isolation, and a key revoked with `cyvault admin` while the gateway runs is
//! refused on the next request (`--auth-cache-secs 0`).

#[path = "common/clients.rs"]
mod clients;
mod common;

use clients::{create_user, run_boto3_suite, with_root_cli};
use common::{Backend, Gateway};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"))
}

#[test]
fn boto3_suite_passes_on_rados() {
    let mut gw = Gateway::start(Backend::Rados);
    let user2 = create_user(&mut gw, "user2");
    run_boto3_suite(&gw, &user2);
}

#[test]
fn aws_s3_mb_cp_ls_rm_rb_on_rados() {
    with_root_cli(Backend::Rados, clients::s3_basic_flow);
}

#[test]
fn aws_s3_sync_on_rados() {
    with_root_cli(Backend::Rados, clients::s3_sync_flow);
}

#[test]
fn aws_s3_cp_20_mib_multipart_round_trip_on_rados() {
    with_root_cli(Backend::Rados, clients::large_file_flow);
}

#[test]
fn aws_s3api_object_operations_on_rados() {
    with_root_cli(Backend::Rados, clients::s3api_object_flow);
}

#[test]
fn aws_s3api_listing_on_rados() {
    with_root_cli(Backend::Rados, clients::s3api_listing_flow);
}

#[test]
fn aws_s3api_multipart_upload_by_hand_on_rados() {
    with_root_cli(Backend::Rados, clients::multipart_by_hand_flow);
}

#[test]
fn aws_cli_reports_s3_error_codes_on_rados() {
    with_root_cli(Backend::Rados, clients::error_table_flow);
}

#[test]
fn users_are_isolated_on_rados() {
    let mut gw = Gateway::start(Backend::Rados);
    let dir = tempdir();
    clients::isolation_flow(&mut gw, dir.path());
}

#[test]
fn a_key_revoked_while_the_gateway_runs_is_refused_at_once() {
    let dir = tempdir();
    clients::revoke_key_flow(Backend::Rados, dir.path());
}
