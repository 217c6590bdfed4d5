//! The conformance suite against the embedded local backend.

mod common;

use std::sync::Arc;

use cyvault_store::{LocalStore, ObjectStore};

async fn make() -> (Arc<dyn ObjectStore>, String, tempfile::TempDir) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("temp dir: {e}"),
    };
    let store = match LocalStore::open(dir.path()) {
        Ok(s) => s,
        Err(e) => panic!("open local store: {e}"),
    };
    (Arc::new(store), "pool".to_string(), dir)
}

conformance_suite!(make().await);
