//! Shared by the integration tests: the conformance cases (run against every backend) and the
//! helpers that find the test cluster.

#![allow(dead_code)]

pub mod conformance;

use std::sync::Arc;

use cyvault_store::{Cluster, ObjectStore, RadosConfig, RadosStore, StoreError};

/// A namespace no other test (or earlier run) uses.
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{tag}-{}-{nanos}", std::process::id())
}

/// The Ceph tier's cluster, from the environment `scripts/test` sets. Fails (never skips) when
/// it is missing, so a run without a cluster cannot pass silently.
pub fn ceph_config() -> RadosConfig {
    let conf = std::env::var("CYVAULT_CEPH_CONF").unwrap_or_default();
    assert!(
        !conf.is_empty(),
        "CYVAULT_CEPH_CONF is not set: the Ceph tier needs the dev cluster; run it through scripts/test \
         (or start scripts/dev-cluster and eval its `env` output)"
    );
    let id = std::env::var("CYVAULT_CEPH_ID").unwrap_or_else(|_| "admin".into());
    RadosConfig::new(conf, id)
}

pub fn ceph_pool() -> String {
    std::env::var("CYVAULT_CEPH_POOL").unwrap_or_else(|_| "cyvault-test".into())
}

pub async fn rados_store() -> Arc<dyn ObjectStore> {
    let cluster = Cluster::connect(&ceph_config()).await;
    match cluster {
        Ok(c) => Arc::new(RadosStore::new(c)),
        Err(e) => panic!("cannot connect to the test cluster: {e}"),
    }
}

/// The value, or a panic naming the error and its code.
#[track_caller]
pub fn ok<T>(r: Result<T, StoreError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e} ({})", e.code()),
    }
}

/// The error, which must carry `code`.
#[track_caller]
pub fn expect_err<T: std::fmt::Debug>(r: Result<T, StoreError>, code: &str) -> StoreError {
    match r {
        Ok(v) => panic!("expected error {code}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.code(), code, "wrong error: {e}");
            e
        }
    }
}
