//! Two gateway processes on one RADOS pool, as behind a load balancer: a bucket-creation race has
//! one winner, writes through one gateway are read and listed through the other at once, and both
//! list the same at the end (the Ceph tier).

mod common;

use common::{Backend, Gateway, run};

#[test]
fn two_gateways_share_buckets_objects_and_listings() {
    let a = Gateway::start(Backend::Rados);
    let b = a.another(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/two_gateways.py");
    let bucket = common::unique("two-gw").to_lowercase();
    let out = run("python3", &[script, &a.endpoint, &b.endpoint, &bucket], &a.aws_env(), None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().last() == Some("passed"),
        "two_gateways.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), 3, "{stdout}");
}
