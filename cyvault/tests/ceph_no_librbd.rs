//! Ceph tier: librados without librbd. The two libraries are loaded separately, when first
//! needed, so a machine with only librados2 (the gateway's RADOS backend, RADOS benchmarks) runs,
//! and an RBD target there says which package is missing. librbd is hidden in a mount namespace
//! of the test's own (see `common::hide`); the dev cluster comes from `scripts/test`
//! (`CYVAULT_CEPH_CONF`).

mod common;

use std::process::Command;

use common::hide::{LIBRBD, fails_naming_the_package, run_hidden};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

#[test]
fn rados_works_and_rbd_names_its_package_when_only_librbd_is_missing() {
    let conf = std::env::var("CYVAULT_CEPH_CONF")
        .unwrap_or_else(|_| panic!("CYVAULT_CEPH_CONF is not set: the Ceph tier runs against scripts/dev-cluster"));
    let id = env("CYVAULT_CEPH_ID", "admin");
    let pool = env("CYVAULT_CEPH_POOL", "cyvault-test");
    let prefix = common::unique("no-librbd");
    let target = format!("rados:{pool}/{prefix}");
    let rados = run_hidden(
        &[LIBRBD],
        &[
            "perf",
            "io",
            "--target",
            &target,
            "--ceph-conf",
            &conf,
            "--ceph-id",
            &id,
            "--rw",
            "randwrite",
            "--size",
            "8MiB",
            "--object-size",
            "4MiB",
            "--runtime",
            "1",
            "--json",
        ],
    );
    // Remove the objects the job wrote, whatever happened.
    for i in 0..2 {
        let name = format!("{prefix}.{i:08}");
        let _ = Command::new("rados").args(["-c", &conf, "--id", &id, "-p", &pool, "rm", &name]).status();
    }
    let stderr = String::from_utf8_lossy(&rados.stderr);
    assert!(rados.status.success(), "RADOS without librbd: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&rados.stdout)
        .unwrap_or_else(|e| panic!("perf io --json: {e}: {}", String::from_utf8_lossy(&rados.stdout)));
    let ios = report["jobs"][0]["measured"]["ops"].as_u64().unwrap_or(0);
    assert!(ios > 0, "the job wrote to RADOS: {report}");

    let image = common::unique("no-librbd");
    let rbd_pool = env("CYVAULT_RBD_POOL", "rbd");
    let rbd = run_hidden(
        &[LIBRBD],
        &[
            "perf",
            "io",
            "--target",
            &format!("rbd:{rbd_pool}/{image}"),
            "--ceph-conf",
            &conf,
            "--ceph-id",
            &id,
            "--create",
            "--size",
            "16MiB",
            "--runtime",
            "1",
        ],
    );
    fails_naming_the_package(&rbd, LIBRBD, "librbd1");
}
