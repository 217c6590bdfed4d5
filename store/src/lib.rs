//! The storage layer of Cyberun Vault.
//!
//! Every other crate reaches storage only through this one: the [`ObjectStore`] API with three
//! implementations ([`RadosStore`] on Ceph, [`LocalStore`] on one directory, and the
//! fault-injecting [`FaultyStore`] wrapper), and [`rbd`], a small safe wrapper over librbd.
//! This is the only crate that calls librados and librbd, and the only one with `unsafe` code
//! (confined to the FFI modules and [`dylib`], which loads the two libraries when the first
//! Ceph connection needs them, so that nothing without Ceph needs them installed).

pub mod api;
mod dylib;
pub mod error;
pub mod fault;
pub mod local;
pub mod rados;
pub mod rbd;

use std::sync::Arc;

pub use api::{
    BackendKind, Guard, ObjectPage, ObjectRef, ObjectStat, ObjectStore, OmapPage, OmapQuery, ReadRange, ReadReply,
    WriteOp, WriteStep,
};
pub use error::{Result, StoreError};
pub use fault::{Effect, FaultPlan, FaultyStore, Trigger};
pub use local::LocalStore;
pub use rados::{Cluster, PoolDf, RadosConfig, RadosStore};

/// A shared, dynamically dispatched store: what the gateway, CSI driver and perf suite hold.
pub type DynStore = Arc<dyn ObjectStore>;

/// Tunes glibc's allocator for a server that moves multi-MiB buffers between threads: at most
/// two arenas instead of eight per core, each holding on to freed memory. Call once at start,
/// before threads exist.
pub fn tune_allocator() {
    // M_ARENA_MAX from glibc's malloc.h.
    const M_ARENA_MAX: libc::c_int = -8;
    // SAFETY: mallopt only adjusts allocator parameters; it is called before other threads run.
    unsafe {
        libc::mallopt(M_ARENA_MAX, 2);
    }
}
