//! The idempotency journal: what the sidecars asked for, by name, in omap (docs/layout.md, "CSI
//! journal"). It is written *before* an image is created or removed, so a crash at any point
//! leaves a record that the retry of the same call finishes or rolls back — never an image no
//! record names.
//!
//! Objects (in the journal pool and namespace): `cyv.csi.volumes` and `cyv.csi.snapshots`, each
//! with omap `n.<request name>` → record (JSON) and `i.<uuid>` → request name. Every change is one
//! atomic write guarded by the object's version, so two drivers racing on one name cannot both
//! win.

use std::collections::BTreeMap;

use bytes::Bytes;
use cyvault_store::{DynStore, Guard, ObjectRef, OmapQuery, StoreError, WriteOp};
use serde::{Deserialize, Serialize};

use crate::error::{CsiError, Result};

pub const VOLUMES_OBJECT: &str = "cyv.csi.volumes";
pub const SNAPSHOTS_OBJECT: &str = "cyv.csi.snapshots";

/// Where a record's create or delete stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Recorded; the image may or may not exist yet.
    Creating,
    /// The image exists and the create answered.
    Ready,
    /// A delete started; the image may or may not still exist.
    Deleting,
}

/// One volume or snapshot, as the journal knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The CreateVolume / CreateSnapshot name.
    pub name: String,
    /// The id handed to the CO (`cyv1:…`).
    pub id: String,
    pub pool: String,
    pub uuid: String,
    /// Bytes.
    pub size: u64,
    pub state: State,
    /// Everything that makes a repeated request "the same one": parameters, access type,
    /// content source. A different fingerprint under the same name is ALREADY_EXISTS.
    pub fingerprint: BTreeMap<String, String>,
    /// The volume or snapshot id the content came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The topology segment value (consumer cluster) the volume was placed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    pub created_ms: u64,
}

/// The journal of one kind of object (volumes or snapshots).
#[derive(Clone, Debug)]
pub struct Journal {
    store: DynStore,
    obj: ObjectRef,
}

fn name_key(name: &str) -> String {
    format!("n.{name}")
}

fn uuid_key(uuid: &str) -> String {
    format!("i.{uuid}")
}

fn decode(raw: &Bytes) -> Result<Record> {
    serde_json::from_slice(raw).map_err(|e| CsiError::Internal(format!("unreadable journal record: {e}")))
}

fn ctx(what: &'static str) -> impl FnOnce(StoreError) -> CsiError {
    CsiError::store(what)
}

/// A record with the journal object's version it was read at (`None`: no journal object yet).
pub type Versioned = (Option<u64>, Option<Record>);

impl Journal {
    pub fn new(store: DynStore, pool: &str, namespace: &str, object: &str) -> Journal {
        Journal { store, obj: ObjectRef::new(pool, namespace, object) }
    }

    async fn version(&self) -> Result<Option<u64>> {
        match self.store.stat(&self.obj).await {
            Ok(s) => Ok(Some(s.version)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(ctx("read the CSI journal")(e)),
        }
    }

    async fn get_key(&self, key: String) -> Result<Option<Bytes>> {
        match self.store.omap_get(&self.obj, std::slice::from_ref(&key)).await {
            Ok(mut m) => Ok(m.remove(&key)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(ctx("read the CSI journal")(e)),
        }
    }

    /// The record of a request name, with the version to guard an update by.
    pub async fn by_name(&self, name: &str) -> Result<Versioned> {
        let v = self.version().await?;
        let rec = self.get_key(name_key(name)).await?.map(|raw| decode(&raw)).transpose()?;
        Ok((v, rec))
    }

    /// The record of a volume or snapshot by its uuid.
    pub async fn by_uuid(&self, uuid: &str) -> Result<Versioned> {
        let v = self.version().await?;
        let Some(name) = self.get_key(uuid_key(uuid)).await? else { return Ok((v, None)) };
        let name = String::from_utf8_lossy(&name).into_owned();
        let rec = self.get_key(name_key(&name)).await?.map(|raw| decode(&raw)).transpose()?;
        Ok((v, rec.filter(|r| r.uuid == uuid)))
    }

    fn guard(version: Option<u64>) -> Guard {
        match version {
            Some(v) => Guard::Version(v),
            None => Guard::CreateExclusive,
        }
    }

    /// Writes a record if the journal is still at `version`; `Ok(false)` when another writer got
    /// there first (read again and decide again).
    pub async fn put(&self, version: Option<u64>, rec: &Record) -> Result<bool> {
        let raw = serde_json::to_vec(rec).map_err(|e| CsiError::Internal(format!("encode journal record: {e}")))?;
        let entries = BTreeMap::from([
            (name_key(&rec.name), Bytes::from(raw)),
            (uuid_key(&rec.uuid), Bytes::from(rec.name.clone().into_bytes())),
        ]);
        let op = WriteOp::new().guard(Journal::guard(version)).omap_set(entries);
        match self.store.execute(&self.obj, op).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_) | StoreError::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(ctx("write the CSI journal")(e)),
        }
    }

    /// Removes a record if the journal is still at `version`.
    pub async fn remove(&self, version: Option<u64>, rec: &Record) -> Result<bool> {
        let Some(v) = version else { return Ok(true) };
        let op = WriteOp::new().guard(Guard::Version(v)).omap_remove(vec![name_key(&rec.name), uuid_key(&rec.uuid)]);
        match self.store.execute(&self.obj, op).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(StoreError::NotFound(_)) => Ok(true),
            Err(e) => Err(ctx("write the CSI journal")(e)),
        }
    }

    /// Records in uuid order after `after` (a uuid), at most `max`; and whether more follow.
    pub async fn list(&self, after: Option<&str>, max: usize) -> Result<(Vec<Record>, bool)> {
        let q =
            OmapQuery { start_after: after.map(uuid_key), prefix: Some("i.".into()), max: max.clamp(1, 1000) as u64 };
        let page = match self.store.omap_list(&self.obj, &q).await {
            Ok(p) => p,
            Err(StoreError::NotFound(_)) => return Ok((Vec::new(), false)),
            Err(e) => return Err(ctx("list the CSI journal")(e)),
        };
        let names: Vec<String> = page.entries.iter().map(|(_, n)| name_key(&String::from_utf8_lossy(n))).collect();
        let recs = match self.store.omap_get(&self.obj, &names).await {
            Ok(m) => m,
            Err(StoreError::NotFound(_)) => BTreeMap::new(),
            Err(e) => return Err(ctx("list the CSI journal")(e)),
        };
        let mut out = Vec::new();
        for (key, name) in &page.entries {
            let uuid = key.trim_start_matches("i.");
            if let Some(raw) = recs.get(&name_key(&String::from_utf8_lossy(name))) {
                let r = decode(raw)?;
                if r.uuid == uuid {
                    out.push(r);
                }
            }
        }
        Ok((out, page.more))
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
