//! The driver's shared state: backends, journals, placement, and the per-name locks that turn a
//! second concurrent call on one name or volume into ABORTED.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cyvault_store::{Cluster, DynStore, RadosStore};

use crate::error::{CsiError, Result};
use crate::journal::{Journal, SNAPSHOTS_OBJECT, VOLUMES_OBJECT};
use crate::placement::VolumePlacement;
use crate::volumes::{FileVolumes, Volumes};

/// The CSI driver name (the `provisioner` of a StorageClass).
pub const DRIVER_NAME: &str = "vault.csi.cyberun.cloud";

/// Which services a process serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Controller,
    Node,
    All,
}

impl Mode {
    pub fn controller(self) -> bool {
        matches!(self, Mode::Controller | Mode::All)
    }
    pub fn node(self) -> bool {
        matches!(self, Mode::Node | Mode::All)
    }
}

/// How the node reaches image bytes.
#[derive(Clone, Debug)]
pub enum Backing {
    /// RBD images through librbd (FUSE attach), or krbd / rbd-nbd with the ceph.conf and id.
    Rados { cluster: Arc<Cluster>, store: Arc<RadosStore>, ceph_conf: String, ceph_id: String },
    /// Sparse files of the local backend, attached through loop devices.
    Files(FileVolumes),
}

/// Node-side settings.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub node_id: String,
    /// Where the node keeps what it attached (one JSON file per staged volume) and its FUSE
    /// mount points.
    pub state_dir: PathBuf,
    /// Most volumes this node attaches (NodeGetInfo).
    pub max_volumes: i64,
    /// The topology segments this node is in (from flags, or the Node's labels).
    pub topology: std::collections::HashMap<String, String>,
}

/// Everything the services share.
#[derive(Debug)]
pub struct Driver {
    pub mode: Mode,
    pub volumes: Arc<dyn Volumes>,
    pub vols: Journal,
    pub snaps: Journal,
    /// Pool of volumes when no topology is configured.
    pub default_pool: String,
    pub placement: Option<VolumePlacement>,
    pub backing: Backing,
    pub node: NodeSettings,
    locks: Mutex<HashSet<String>>,
}

impl Driver {
    /// `journal` holds the journal objects (in `journal_pool`/`journal_namespace`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mode: Mode,
        volumes: Arc<dyn Volumes>,
        journal: DynStore,
        journal_pool: &str,
        journal_namespace: &str,
        default_pool: String,
        placement: Option<VolumePlacement>,
        backing: Backing,
        node: NodeSettings,
    ) -> Driver {
        Driver {
            mode,
            volumes,
            vols: Journal::new(journal.clone(), journal_pool, journal_namespace, VOLUMES_OBJECT),
            snaps: Journal::new(journal, journal_pool, journal_namespace, SNAPSHOTS_OBJECT),
            default_pool,
            placement,
            backing,
            node,
            locks: Mutex::new(HashSet::new()),
        }
    }

    /// Takes the lock of `key` (a request name or an id) for the life of the guard, or answers
    /// ABORTED when another call holds it: the sidecars retry with backoff.
    pub fn lock(self: &Arc<Self>, key: String) -> Result<LockGuard> {
        let mut held = self.locks.lock().map_err(|_| CsiError::Internal("lock table poisoned".into()))?;
        if !held.insert(key.clone()) {
            return Err(CsiError::Aborted(format!("an operation on {key} is already in progress")));
        }
        Ok(LockGuard { driver: Arc::clone(self), key })
    }
}

/// Releases a [`Driver::lock`] on drop.
#[derive(Debug)]
pub struct LockGuard {
    driver: Arc<Driver>,
    key: String,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Ok(mut held) = self.driver.locks.lock() {
            held.remove(&self.key);
        }
    }
}
