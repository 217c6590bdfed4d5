//! Ceph tier: placement end to end. The gateway on the dev cluster with two bucket data pools
//! chooses between them through the engine (capacity from `ceph df`, RTTs probed from here), a
//! bucket created with a LocationConstraint holds its objects in the chosen pool (checked with
//! `rados ls`), and an impossible constraint gets a clear S3 error.

#[path = "common/clients.rs"]
mod clients;
mod common;

use std::path::Path;

use clients::Aws;
use common::{Backend, Gateway, run_ok, unique};

const FAST: &str = "cyvault-data-fast";
const COLD: &str = "cyvault-data-cold";

/// The dev cluster as "auxiliary" (two data pools, both real), a far cluster whose archive pool
/// no bucket from destroyer may use, and destroyer's bucket policy preferring nvme.
fn topology() -> String {
    format!(
        r#"
[[site]]
name = "new-york"
[[site]]
name = "tokyo"

[[cluster]]
name = "destroyer"
site = "new-york"
role = "compute"
[[cluster]]
name = "auxiliary"
site = "new-york"
role = "storage"
[[cluster]]
name = "carrier"
site = "tokyo"
role = "control"

[[pool]]
name = "{FAST}"
cluster = "auxiliary"
kind = "s3-data"
device_class = "nvme"
replicas = 1
failure_domain = "osd"
capacity = "1TiB"

[[pool]]
name = "{COLD}"
cluster = "auxiliary"
kind = "s3-data"
device_class = "hdd"
replicas = 1
failure_domain = "osd"
capacity = "1TiB"

[[pool]]
name = "cyvault-data-archive"
cluster = "carrier"
kind = "s3-data"
device_class = "archive"
replicas = 3
failure_domain = "host"
capacity = "1PiB"

[[link]]
from = "destroyer"
to = "auxiliary"
rtt_p50_ms = 0.9
rtt_p99_ms = 1.6

[[link]]
from = "destroyer"
to = "carrier"
rtt_p50_ms = 168.0
rtt_p99_ms = 176.0

[[policy]]
name = "destroyer-buckets"
consumer = "destroyer"
kind = "bucket"
latency_budget_ms = 50.0
device_class = "nvme"
min_replicas = 1
"#
    )
}

fn ceph_conf() -> String {
    std::env::var("CYVAULT_CEPH_CONF")
        .unwrap_or_else(|_| panic!("CYVAULT_CEPH_CONF is not set: run through scripts/test"))
}

/// Object names of a pool's namespace, by `rados ls` (the real cluster, not our store code).
fn rados_ls(pool: &str, namespace: &str) -> Vec<String> {
    let conf = ceph_conf();
    let out = run_ok("rados", &["-c", &conf, "-p", pool, "-N", namespace, "ls"], &[], None);
    let mut names: Vec<String> = out.lines().map(str::to_owned).collect();
    names.sort();
    names
}

fn start(dir: &Path) -> Gateway {
    let topo = dir.join("topology.toml");
    std::fs::write(&topo, topology()).unwrap_or_else(|e| panic!("write topology: {e}"));
    let topo = topo.to_string_lossy().into_owned();
    Gateway::start_with(
        Backend::Rados,
        &["--placement-topology", &topo, "--placement-consumer", "destroyer", "--placement-cluster", "auxiliary"],
    )
}

#[test]
fn a_location_constraint_lands_objects_in_the_pool_the_engine_chose() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let gw = start(dir.path());
    let aws = Aws::root(&gw, dir.path());
    let (cold, plain) = (unique("cold"), unique("plain"));

    aws.ok(&["s3api", "create-bucket", "--bucket", &cold, "--create-bucket-configuration", "LocationConstraint=hdd"]);
    aws.ok(&["s3api", "create-bucket", "--bucket", &plain]);
    let small = dir.path().join("small.txt");
    std::fs::write(&small, b"placed").unwrap_or_else(|e| panic!("{e}"));
    let big = dir.path().join("big.bin");
    std::fs::write(&big, common::pseudo_random(9 << 20, 4)).unwrap_or_else(|e| panic!("{e}"));
    let small_s = small.to_string_lossy().into_owned();
    let big_s = big.to_string_lossy().into_owned();
    for bucket in [&cold, &plain] {
        aws.ok(&["s3api", "put-object", "--bucket", bucket, "--key", "small", "--body", &small_s]);
        aws.ok(&["s3api", "put-object", "--bucket", bucket, "--key", "big", "--body", &big_s]);
    }
    let back = dir.path().join("back.bin");
    aws.ok(&["s3api", "get-object", "--bucket", &cold, "--key", "big", &back.to_string_lossy()]);
    assert!(std::fs::read(&back).ok() == std::fs::read(&big).ok(), "the 9 MiB object reads back intact");

    // What RADOS itself holds: each bucket's heads and tails in its own pool, nothing elsewhere.
    let ns = &gw.namespace;
    let (in_cold, in_fast) = (rados_ls(COLD, ns), rados_ls(FAST, ns));
    let heads = |names: &[String]| names.iter().filter(|n| n.starts_with("cyv.h.")).count();
    let tails = |names: &[String]| names.iter().filter(|n| n.starts_with("cyv.t.")).count();
    assert_eq!(heads(&in_cold), 2, "cold pool: {in_cold:?}");
    assert_eq!(heads(&in_fast), 2, "fast pool: {in_fast:?}");
    assert!(tails(&in_cold) >= 2 && tails(&in_fast) >= 2, "9 MiB = head + 2 tails of 4 MiB stripes");
    let bucket_ids = |names: &[String]| -> Vec<String> {
        let mut ids: Vec<String> = names
            .iter()
            .filter_map(|n| n.strip_prefix("cyv.h.").and_then(|r| r.split('.').next()).map(str::to_owned))
            .collect();
        ids.dedup();
        ids
    };
    let (cold_ids, fast_ids) = (bucket_ids(&in_cold), bucket_ids(&in_fast));
    assert_eq!(cold_ids.len(), 1);
    assert_eq!(fast_ids.len(), 1);
    assert_ne!(cold_ids, fast_ids, "two buckets, two pools");
    let pool = std::env::var("CYVAULT_CEPH_POOL").unwrap_or_else(|_| "cyvault-test".into());
    let main = rados_ls(&pool, ns);
    assert!(!main.iter().any(|n| n.starts_with("cyv.h.") || n.starts_with("cyv.t.")), "gateway pool: {main:?}");
    assert!(main.iter().any(|n| n.starts_with("cyv.i.")), "indexes stay in the gateway's pool: {main:?}");

    // An archive pool exists only in Tokyo, 176 ms away: refused with the engine's code.
    let far = unique("far");
    let err = aws.fails(
        &["s3api", "create-bucket", "--bucket", &far, "--create-bucket-configuration", "LocationConstraint=archive"],
        "InvalidLocationConstraint",
        "CreateBucket",
    );
    assert!(err.contains("VAULT-PL-001") && err.contains("nearest carrier/cyvault-data-archive at 176.0 ms"), "{err}");
    // A class nobody has, and another region.
    let err = aws.fails(
        &["s3api", "create-bucket", "--bucket", &far, "--create-bucket-configuration", "LocationConstraint=ssd"],
        "InvalidLocationConstraint",
        "CreateBucket",
    );
    assert!(err.contains("VAULT-PL-002"), "{err}");
    aws.fails(
        &[
            "s3api",
            "create-bucket",
            "--bucket",
            &far,
            "--create-bucket-configuration",
            "LocationConstraint=eu-west-1:hdd",
        ],
        "InvalidLocationConstraint",
        "CreateBucket",
    );
    aws.fails(&["s3api", "head-bucket", "--bucket", &far], "404", "HeadBucket");

    // The measurements behind the decisions are metrics.
    let metrics = run_ok("curl", &["-s", &format!("{}/_cyvault/metrics", gw.endpoint)], &[], None);
    for pool in [FAST, COLD] {
        let cap = format!("cyvault_placement_pool_capacity_bytes{{pool=\"{pool}\"}}");
        let line = metrics.lines().find(|l| l.starts_with(&cap)).unwrap_or_else(|| panic!("no {cap} in {metrics}"));
        let v: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        assert!(v > 1e6, "ceph df capacity of {pool}: {line}");
        let rtt = format!("cyvault_placement_pool_rtt_seconds{{pool=\"{pool}\",quantile=\"0.99\"}}");
        let line = metrics.lines().find(|l| l.starts_with(&rtt)).unwrap_or_else(|| panic!("no {rtt} in {metrics}"));
        let v: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        assert!(v > 0.0 && v < 5.0, "probed RTT of {pool}: {line}");
    }
    assert!(metrics.contains("cyvault_placement_decisions_total{outcome=\"placed\"} 2"), "{metrics}");
    assert!(metrics.contains("cyvault_placement_decisions_total{outcome=\"VAULT-PL-001\"} 1"), "{metrics}");
}

#[test]
fn placement_explain_measures_the_cluster() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let topo = dir.path().join("topology.toml");
    std::fs::write(&topo, topology()).unwrap_or_else(|e| panic!("{e}"));
    let conf = ceph_conf();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cyvault"))
        .args(["placement", "explain", "--topology", &topo.to_string_lossy(), "--consumer", "destroyer"])
        .args(["--kind", "bucket", "--class", "hdd", "--ceph-conf", &conf, "--storage-cluster", "auxiliary", "--json"])
        .output()
        .unwrap_or_else(|e| panic!("run cyvault: {e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["pool"], format!("auxiliary/{COLD}"));
    let measured = v["measured"].as_array().cloned().unwrap_or_default();
    assert_eq!(measured.len(), 2, "{v}");
    for m in &measured {
        assert!(m["capacity_bytes"].as_u64().unwrap_or(0) > 1_000_000, "{m}");
        assert!(m["rtt_p99_ms"].as_f64().unwrap_or(0.0) > 0.0, "{m}");
    }
    // The chosen candidate's latency is the measured one, not the link's 1.6 ms.
    let chosen = v["candidates"].as_array().and_then(|c| c.iter().find(|c| c["verdict"] == "chosen")).cloned();
    assert_eq!(chosen.as_ref().map(|c| c["latency_source"].clone()), Some(serde_json::json!("measured")), "{v}");

    // Refused with exit status 2 and the code.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cyvault"))
        .args(["placement", "explain", "--topology", &topo.to_string_lossy(), "--consumer", "destroyer"])
        .args(["--kind", "bucket", "--class", "archive", "--ceph-conf", &conf, "--storage-cluster", "auxiliary"])
        .output()
        .unwrap_or_else(|e| panic!("run cyvault: {e}"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("refused: VAULT-PL-001"));
}
