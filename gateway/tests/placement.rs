//! Bucket placement on the embedded backend: a LocationConstraint chooses the data pool, the
//! data lands there (and only there), refusals are S3 errors, and the sweeper looks in every
//! data pool.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use cyvault_gateway::data::Body;
use cyvault_gateway::get_object::GetInput;
use cyvault_gateway::layout::{self, OWNER_XATTR, OwnerTag};
use cyvault_gateway::placement::BucketPlacement;
use cyvault_gateway::put_object::PutInput;
use cyvault_gateway::{GwError, Vault, VaultOptions};
use cyvault_placement::Topology;
use cyvault_store::{DynStore, LocalStore, ObjectRef, WriteOp};
use futures::{StreamExt, TryStreamExt};

const TOPOLOGY: &str = r#"
[[site]]
name = "nyc"
[[site]]
name = "fra"

[[cluster]]
name = "compute"
site = "nyc"
role = "compute"
[[cluster]]
name = "vault"
site = "nyc"
role = "storage"
[[cluster]]
name = "far"
site = "fra"
role = "storage"

[[pool]]
name = "data-nvme"
cluster = "vault"
kind = "s3-data"
device_class = "nvme"
replicas = 3
failure_domain = "host"
capacity = "10TiB"
used = "1TiB"

[[pool]]
name = "data-hdd"
cluster = "vault"
kind = "s3-data"
device_class = "hdd"
erasure = { k = 4, m = 2 }
failure_domain = "host"
capacity = "100TiB"
used = "50TiB"

[[pool]]
name = "data-archive"
cluster = "far"
kind = "s3-data"
device_class = "archive"
replicas = 3
failure_domain = "host"
capacity = "1PiB"

[[link]]
from = "compute"
to = "vault"
rtt_p50_ms = 0.8
rtt_p99_ms = 1.5

[[link]]
from = "compute"
to = "far"
rtt_p50_ms = 85.0
rtt_p99_ms = 90.0

[[policy]]
name = "near-buckets"
consumer = "compute"
kind = "bucket"
latency_budget_ms = 10.0
min_replicas = 3
"#;

fn local() -> (tempfile::TempDir, DynStore) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let store = LocalStore::open(dir.path()).unwrap_or_else(|e| panic!("open: {e}"));
    (dir, Arc::new(store))
}

async fn vault(store: DynStore, storage_cluster: Option<&str>) -> Arc<Vault> {
    let topo = Topology::from_toml(TOPOLOGY).unwrap_or_else(|e| panic!("{e}"));
    let placement =
        BucketPlacement::new(Arc::new(RwLock::new(topo)), "compute", storage_cluster.map(str::to_owned), "us-east-1");
    let opts = VaultOptions { stripe_size: 64 * 1024, cache_ttl: Duration::ZERO, ..VaultOptions::default() };
    let v = Vault::open(store, opts).await.unwrap_or_else(|e| panic!("open vault: {e}"));
    Arc::new(v.with_placement(placement))
}

fn body(data: &[u8]) -> Body {
    let chunks: Vec<Result<Bytes, GwError>> = data.chunks(10_000).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    futures::stream::iter(chunks).boxed()
}

async fn names(store: &DynStore, pool: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = store.list_objects(pool, "", token.as_deref(), 1000).await.unwrap_or_else(|e| panic!("{e}"));
        out.extend(page.names);
        token = page.next;
        if token.is_none() {
            out.sort();
            return out;
        }
    }
}

#[track_caller]
fn ok<T>(r: Result<T, GwError>) -> T {
    r.unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

#[tokio::test]
async fn a_location_constraint_puts_the_bucket_data_in_the_chosen_pool() {
    let (_d, store) = local();
    let v = vault(store.clone(), Some("vault")).await;

    // No constraint: the consumer's policy, emptiest near pool (nvme at 10 % beats hdd at 50 %).
    let plain = ok(v.create_bucket_at("root", "plain", None).await);
    assert_eq!(plain.data_pool.as_deref(), Some("data-nvme"));
    // A device class, bare or behind the region.
    let cold = ok(v.create_bucket_at("root", "cold", Some("hdd")).await);
    assert_eq!(cold.data_pool.as_deref(), Some("data-hdd"));
    let cold2 = ok(v.create_bucket_at("root", "cold2", Some("us-east-1:hdd")).await);
    assert_eq!(cold2.data_pool.as_deref(), Some("data-hdd"));
    // The region alone is the default, as S3 clients send it.
    let regional = ok(v.create_bucket_at("root", "regional", Some("us-east-1")).await);
    assert_eq!(regional.data_pool.as_deref(), Some("data-nvme"));

    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    ok(v.put_object("root", "cold", "small", PutInput::default(), body(b"hello")).await);
    ok(v.put_object("root", "cold", "big", PutInput::default(), body(&big)).await);
    let got: Vec<Bytes> =
        ok(ok(v.get_object("root", "cold", "big", GetInput::default()).await).body.try_collect().await);
    assert_eq!(got.concat(), big);

    // Heads and tails are in data-hdd; the gateway's own pool holds only records and indexes.
    let hdd = names(&store, "data-hdd").await;
    let heads: Vec<&String> = hdd.iter().filter(|n| n.starts_with("cyv.h.")).collect();
    assert_eq!(heads.len(), 2, "{hdd:?}");
    assert!(hdd.iter().filter(|n| n.starts_with("cyv.t.")).count() >= 4, "{hdd:?}");
    assert!(hdd.contains(&"cyv.pool".to_string()), "the pool marker: {hdd:?}");
    let main = names(&store, "cyvault").await;
    assert!(!main.iter().any(|n| n.starts_with("cyv.h.") || n.starts_with("cyv.t.")), "{main:?}");
    assert!(main.iter().any(|n| n.starts_with(&format!("cyv.i.{}.", cold.id))), "{main:?}");
    assert!(names(&store, "data-nvme").await.iter().all(|n| !n.contains(&cold.id)));

    // The listing and deletes work through the index in the gateway's pool.
    let q = cyvault_gateway::index::ListQuery { max_keys: 100, ..Default::default() };
    let listed = ok(v.list_index(&cold, &q).await);
    assert_eq!(listed.entries.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["big", "small"]);
    ok(v.delete_object("root", "cold", "big").await);
    assert_eq!(names(&store, "data-hdd").await.iter().filter(|n| n.starts_with("cyv.t.")).count(), 0);
}

#[track_caller]
fn refused(r: Result<cyvault_gateway::layout::BucketRecord, GwError>, code: &str, s3: &str, message: &str) {
    match r {
        Ok(b) => panic!("bucket {} was created in {:?}", b.name, b.data_pool),
        Err(e) => {
            let s = e.to_s3();
            assert_eq!(s.code().as_str(), s3, "{e}");
            let text = e.to_string();
            assert!(text.starts_with(code), "{text}");
            assert!(text.contains(message), "{text}");
        }
    }
}

#[tokio::test]
async fn impossible_constraints_get_s3_errors_with_the_engine_code() {
    let (_d, store) = local();
    let v = vault(store.clone(), Some("vault")).await;
    // The only archive pool is an ocean away from the 10 ms budget.
    refused(
        v.create_bucket_at("root", "far-away", Some("archive")).await,
        "VAULT-PL-001",
        "InvalidLocationConstraint",
        "nearest far/data-archive at 90.0 ms",
    );
    refused(
        v.create_bucket_at("root", "no-class", Some("ssd")).await,
        "VAULT-PL-002",
        "InvalidLocationConstraint",
        "no ssd s3-data pool exists",
    );
    match v.create_bucket_at("root", "wrong-region", Some("eu-west-1:hdd")).await {
        Err(e @ GwError::InvalidLocationConstraint(_)) => {
            assert_eq!(e.to_s3().code().as_str(), "InvalidLocationConstraint")
        }
        other => panic!("{other:?}"),
    }
    // Nothing was created by a refusal.
    assert!(ok(v.all_buckets().await).is_empty());
}

#[tokio::test]
async fn a_pool_of_another_cluster_or_a_missing_one_is_refused() {
    // This gateway stores into cluster "far" only: the engine's near choice is out of reach.
    let (_d, store) = local();
    let v = vault(store.clone(), Some("far")).await;
    refused(
        v.create_bucket_at("root", "elsewhere", None).await,
        "VAULT-PL-009",
        "InvalidLocationConstraint",
        "this gateway stores into cluster far only",
    );
}

#[tokio::test]
async fn the_sweeper_looks_in_every_data_pool() {
    let (_d, store) = local();
    let v = vault(store.clone(), Some("vault")).await;
    let cold = ok(v.create_bucket_at("root", "cold", Some("hdd")).await);
    ok(v.put_object("root", "cold", "keep", PutInput::default(), body(b"kept")).await);
    // A stripe nobody names (a crashed upload's leftover) in the data pool, owned by the bucket.
    let orphan = ObjectRef::new("data-hdd", "", format!("cyv.t.{}.deadbeef.1", cold.id));
    let owner =
        OwnerTag { bucket: cold.id.clone(), key: "keep".into(), tag: "deadbeef".into(), upload: None, created_ms: 1 };
    let op = WriteOp::new().write_full(Bytes::from_static(b"junk")).set_xattr(OWNER_XATTR, layout::encode(&owner));
    store.execute(&orphan, op).await.unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let rep = ok(v.gc(Duration::ZERO, Duration::from_secs(3600), false).await);
    assert_eq!(rep.orphan_objects_removed, 1, "{rep:?}");
    assert!(!names(&store, "data-hdd").await.contains(&orphan.name));
    let got: Vec<Bytes> =
        ok(ok(v.get_object("root", "cold", "keep", GetInput::default()).await).body.try_collect().await);
    assert_eq!(got.concat(), b"kept");

    // A deleted bucket's data in its data pool is swept too.
    ok(v.put_object("root", "cold", "gone", PutInput::default(), body(b"bye")).await);
    ok(v.delete_object("root", "cold", "keep").await);
    ok(v.delete_object("root", "cold", "gone").await);
    ok(v.delete_bucket("root", "cold").await);
    let head = ObjectRef::new("data-hdd", "", format!("cyv.h.{}.stray", cold.id));
    store.execute(&head, WriteOp::new().write_full(Bytes::from_static(b"x"))).await.unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(20)).await;
    ok(v.gc(Duration::ZERO, Duration::from_secs(3600), false).await);
    let left: Vec<String> = names(&store, "data-hdd").await;
    assert_eq!(left, ["cyv.pool"], "only the marker stays");
}
