//! The embedded local backend: the object-store API on one directory, no Ceph needed.
//!
//! Layout (see docs/layout.md):
//! - `meta.redb`: a redb database with the object records, the omaps, the set of live data files
//!   and the store's counters. redb commits are atomic and durable (fsync) when they return.
//! - `data/xx/<16 hex digits>`: the bytes of objects larger than [`INLINE_MAX`], one immutable
//!   file per object version. Smaller objects live inline in their record.
//!
//! A compound write first writes and fsyncs a *new* data file (and its directory) if it changes
//! the bytes, then applies guard, record, xattrs, omap and the live-file set in one redb
//! transaction, then unlinks the replaced file. A crash before the commit leaves the old version
//! and an unreferenced file, which [`LocalStore::open`] deletes; after it, the new version.
//! Object names are only ever keys in the database, never paths.

mod codec;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tracing::{debug, info, warn};

use crate::api::{
    BackendKind, Guard, ObjectPage, ObjectRef, ObjectStat, ObjectStore, OmapPage, OmapQuery, ReadRange, ReadReply,
    WriteOp, WriteStep, validate_key, validate_pool,
};
use crate::error::{Result, StoreError};
use crate::fault::FaultPlan;
use codec::{DataRef, ObjectRecord};

pub use codec::OBJECT_FORMAT;

/// Objects up to this size are stored inside their record instead of in a file of their own.
pub const INLINE_MAX: usize = 64 * 1024;

/// Format version of the store as a whole (directory layout and tables).
pub const STORE_FORMAT: u64 = 1;

const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
const OMAP: TableDefinition<&[u8], &[u8]> = TableDefinition::new("omap");
const FILES: TableDefinition<u64, ()> = TableDefinition::new("live_files");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// The local backend. Cheap to clone: clones share the open database.
#[derive(Clone, Debug)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    db: Database,
    next_file: AtomicU64,
    faults: Option<Arc<FaultPlan>>,
}

impl LocalStore {
    /// Opens (creating if needed) a store in `dir`, and removes data files that no committed
    /// record references (left by a crash between writing a file and committing it).
    pub fn open(dir: impl AsRef<Path>) -> Result<LocalStore> {
        LocalStore::open_with_faults(dir, None)
    }

    /// Opens a store whose internal steps obey `faults` (for crash tests). Steps, in order:
    /// `local.prepare`, `local.data_partial` (half the bytes written), `local.data_written`,
    /// `local.data_synced`, `local.dir_synced`, `local.before_commit`, `local.committed`,
    /// `local.old_data_removed`.
    pub fn open_with_faults(dir: impl AsRef<Path>, faults: Option<Arc<FaultPlan>>) -> Result<LocalStore> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(dir.join("data"))
            .map_err(|e| StoreError::io(format!("create data dir {}", dir.display()), e))?;
        let db_path = dir.join("meta.redb");
        let db = Database::create(&db_path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                StoreError::Busy(format!("{} is open in another process", db_path.display()))
            }
            e => db_error(format!("open {}", db_path.display()), e),
        })?;
        let next_file = init_tables(&db, &db_path)?;
        for i in 0..=255u8 {
            let sub = dir.join("data").join(format!("{i:02x}"));
            if !sub.exists() {
                fs::create_dir(&sub).map_err(|e| StoreError::io(format!("create {}", sub.display()), e))?;
            }
        }
        sync_dir(&dir.join("data"))?;
        sync_dir(&dir)?;
        let store = LocalStore { inner: Arc::new(Inner { dir, db, next_file: AtomicU64::new(next_file), faults }) };
        let removed = store.remove_orphans()?;
        if removed > 0 {
            info!(dir = %store.inner.dir.display(), removed, "removed data files left by an interrupted write");
        }
        Ok(store)
    }

    /// The directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn remove_orphans(&self) -> Result<usize> {
        let txn = self.inner.db.begin_read().map_err(|e| db_error("begin read", e))?;
        let files = txn.open_table(FILES).map_err(|e| db_error("open live file table", e))?;
        let mut removed = 0;
        let data = self.inner.dir.join("data");
        for sub in fs::read_dir(&data).map_err(|e| StoreError::io(format!("list {}", data.display()), e))? {
            let sub = sub.map_err(|e| StoreError::io("list data dir", e))?.path();
            if !sub.is_dir() {
                continue;
            }
            for f in fs::read_dir(&sub).map_err(|e| StoreError::io(format!("list {}", sub.display()), e))? {
                let path = f.map_err(|e| StoreError::io("list data dir", e))?.path();
                let live = match path.file_name().and_then(|n| n.to_str()).and_then(|n| u64::from_str_radix(n, 16).ok())
                {
                    Some(id) => files.get(id).map_err(|e| db_error("look up data file", e))?.is_some(),
                    None => false,
                };
                if !live {
                    fs::remove_file(&path)
                        .map_err(|e| StoreError::io(format!("remove orphan {}", path.display()), e))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    fn step(&self, step: &str, obj: &ObjectRef) -> Result<()> {
        match &self.inner.faults {
            Some(plan) => plan.check(step, &obj.name),
            None => Ok(()),
        }
    }

    fn alive(&self) -> Result<()> {
        match &self.inner.faults {
            Some(plan) if plan.crashed() => Err(StoreError::Crashed { step: "earlier".into() }),
            _ => Ok(()),
        }
    }

    fn file_path(&self, id: u64) -> PathBuf {
        self.inner.dir.join("data").join(format!("{:02x}", id & 0xff)).join(format!("{id:016x}"))
    }

    fn record(&self, obj: &ObjectRef) -> Result<Option<ObjectRecord>> {
        let txn = self.inner.db.begin_read().map_err(|e| db_error("begin read", e))?;
        let table = txn.open_table(OBJECTS).map_err(|e| db_error("open object table", e))?;
        let key = codec::object_key(&obj.pool, &obj.namespace, &obj.name);
        let got = table.get(key.as_slice()).map_err(|e| db_error(format!("read record of {obj}"), e))?;
        got.map(|v| ObjectRecord::decode(v.value())).transpose()
    }

    fn existing(&self, obj: &ObjectRef) -> Result<ObjectRecord> {
        self.record(obj)?.ok_or_else(|| StoreError::NotFound(obj.to_string()))
    }

    /// Reads `[offset, offset+len)` of the record's bytes.
    fn read_data(&self, rec: &ObjectRecord, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
        let end = rec.size.min(offset.saturating_add(len));
        if offset >= end {
            return Ok(Some(Vec::new()));
        }
        match &rec.data {
            DataRef::Inline(b) => Ok(Some(b[offset as usize..end as usize].to_vec())),
            DataRef::File(id) => {
                let path = self.file_path(*id);
                let f = match File::open(&path) {
                    Ok(f) => f,
                    // Replaced and unlinked by a concurrent write: the caller re-reads the record.
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(StoreError::io(format!("open {}", path.display()), e)),
                };
                let mut buf = vec![0u8; (end - offset) as usize];
                f.read_exact_at(&mut buf, offset).map_err(|e| match e.kind() {
                    ErrorKind::UnexpectedEof => StoreError::corrupt(
                        path.display().to_string(),
                        format!("shorter than the recorded {} bytes", rec.size),
                    ),
                    _ => StoreError::io(format!("read {}", path.display()), e),
                })?;
                Ok(Some(buf))
            }
        }
    }

    fn read_blocking(&self, obj: &ObjectRef, offset: u64, len: u64) -> Result<ReadReply> {
        for _ in 0..16 {
            let rec = self.existing(obj)?;
            if let Some(data) = self.read_data(&rec, offset, len)? {
                return Ok(ReadReply { data: Bytes::from(data), version: rec.version });
            }
        }
        Err(StoreError::Conflict(format!("read {obj}: the object kept changing during the read")))
    }

    /// Writes a new immutable data file and makes it durable; returns its id.
    fn write_file(&self, obj: &ObjectRef, data: &[u8]) -> Result<u64> {
        let id = self.inner.next_file.fetch_add(1, Ordering::Relaxed);
        let path = self.file_path(id);
        let ctx = || format!("write {}", path.display());
        let mut f =
            OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| StoreError::io(ctx(), e))?;
        let half = data.len() / 2;
        f.write_all(&data[..half]).map_err(|e| StoreError::io(ctx(), e))?;
        self.step("local.data_partial", obj)?;
        f.write_all(&data[half..]).map_err(|e| StoreError::io(ctx(), e))?;
        self.step("local.data_written", obj)?;
        f.sync_all().map_err(|e| StoreError::io(format!("fsync {}", path.display()), e))?;
        self.step("local.data_synced", obj)?;
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        self.step("local.dir_synced", obj)?;
        Ok(id)
    }

    fn execute_blocking(&self, obj: &ObjectRef, op: &WriteOp) -> Result<u64> {
        self.alive()?;
        obj.validate()?;
        op.validate()?;
        let depends_on_old = first_data_step_is_partial(&op.steps);
        for _ in 0..16 {
            self.step("local.prepare", obj)?;
            let before = self.record(obj)?;
            check_guard(op.guard, before.as_ref(), obj)?;
            let new_data = if has_data_steps(&op.steps) {
                let old = match (&before, depends_on_old) {
                    (Some(rec), true) => match self.read_data(rec, 0, rec.size)? {
                        Some(d) => d,
                        None => continue,
                    },
                    _ => Vec::new(),
                };
                let content = apply_data_steps(old, &op.steps)?;
                let size = content.len() as u64;
                let data = if content.len() <= INLINE_MAX {
                    DataRef::Inline(Bytes::from(content))
                } else {
                    DataRef::File(self.write_file(obj, &content)?)
                };
                Some((size, data))
            } else {
                None
            };
            match self.commit(obj, op, before.as_ref().map(|r| r.version), depends_on_old, new_data.clone())? {
                Committed::Done { version, replaced } => {
                    self.step("local.committed", obj)?;
                    if let Some(id) = replaced {
                        let path = self.file_path(id);
                        if let Err(e) = fs::remove_file(&path) {
                            // Harmless: the next open removes files no record references.
                            warn!(path = %path.display(), error = %e, "could not remove replaced data file");
                        }
                    }
                    self.step("local.old_data_removed", obj)?;
                    debug!(object = %obj, version, "local write committed");
                    return Ok(version);
                }
                Committed::Raced => {
                    if let Some((_, DataRef::File(id))) = new_data {
                        let _ = fs::remove_file(self.file_path(id));
                    }
                }
            }
        }
        Err(StoreError::Conflict(format!("write {obj}: the object kept changing during the write")))
    }

    /// The transaction of a compound write. Re-checks the guard against the committed state.
    fn commit(
        &self,
        obj: &ObjectRef,
        op: &WriteOp,
        seen_version: Option<u64>,
        depends_on_old: bool,
        new_data: Option<(u64, DataRef)>,
    ) -> Result<Committed> {
        let txn = self.inner.db.begin_write().map_err(|e| db_error("begin write", e))?;
        let result = (|| -> Result<Committed> {
            let mut objects = txn.open_table(OBJECTS).map_err(|e| db_error("open object table", e))?;
            let mut omap = txn.open_table(OMAP).map_err(|e| db_error("open omap table", e))?;
            let mut files = txn.open_table(FILES).map_err(|e| db_error("open live file table", e))?;
            let mut counters = txn.open_table(COUNTERS).map_err(|e| db_error("open counter table", e))?;
            let key = codec::object_key(&obj.pool, &obj.namespace, &obj.name);
            let current = match objects.get(key.as_slice()).map_err(|e| db_error("read record", e))? {
                Some(v) => Some(ObjectRecord::decode(v.value())?),
                None => None,
            };
            check_guard(op.guard, current.as_ref(), obj)?;
            if depends_on_old && current.as_ref().map(|r| r.version) != seen_version {
                return Ok(Committed::Raced);
            }
            let omap_prefix = codec::omap_prefix(&obj.pool, &obj.namespace, &obj.name);
            for step in &op.steps {
                if let WriteStep::OmapCmp { key: k, value } = step {
                    let mut full = omap_prefix.clone();
                    full.extend_from_slice(k.as_bytes());
                    let cur = omap.get(full.as_slice()).map_err(|e| db_error("read omap key", e))?;
                    if cur.as_ref().map(|v| v.value()) != Some(value.as_ref()) {
                        return Err(StoreError::Conflict(format!(
                            "{obj}: omap key {k:?} does not hold the expected value"
                        )));
                    }
                }
            }
            let version =
                counters.get("next_version").map_err(|e| db_error("read version counter", e))?.map_or(1, |v| v.value());
            counters.insert("next_version", version + 1).map_err(|e| db_error("bump version counter", e))?;
            let old_file = match &current {
                Some(ObjectRecord { data: DataRef::File(id), .. }) => Some(*id),
                _ => None,
            };
            if op.is_remove() {
                if current.is_none() {
                    return Err(StoreError::NotFound(obj.to_string()));
                }
                objects.remove(key.as_slice()).map_err(|e| db_error("remove record", e))?;
                clear_omap(&mut omap, &omap_prefix)?;
                if let Some(id) = old_file {
                    files.remove(id).map_err(|e| db_error("drop live file", e))?;
                }
                self.step("local.before_commit", obj)?;
                return Ok(Committed::Done { version, replaced: old_file });
            }
            let mut rec = current.unwrap_or_else(|| ObjectRecord {
                version: 0,
                size: 0,
                mtime: SystemTime::now(),
                data: DataRef::Inline(Bytes::new()),
                xattrs: BTreeMap::new(),
            });
            let mut replaced = None;
            if let Some((size, data)) = new_data {
                if let DataRef::File(id) = data {
                    files.insert(id, ()).map_err(|e| db_error("add live file", e))?;
                }
                if let Some(id) = old_file {
                    files.remove(id).map_err(|e| db_error("drop live file", e))?;
                    replaced = Some(id);
                }
                rec.size = size;
                rec.data = data;
            }
            for step in &op.steps {
                match step {
                    WriteStep::SetXattr { name, value } => {
                        rec.xattrs.insert(name.clone(), value.clone());
                    }
                    WriteStep::RemoveXattr(name) => {
                        rec.xattrs.remove(name);
                    }
                    WriteStep::OmapSet(entries) => {
                        for (k, v) in entries {
                            let mut full = omap_prefix.clone();
                            full.extend_from_slice(k.as_bytes());
                            omap.insert(full.as_slice(), v.as_ref()).map_err(|e| db_error("set omap key", e))?;
                        }
                    }
                    WriteStep::OmapRemove(keys) => {
                        for k in keys {
                            let mut full = omap_prefix.clone();
                            full.extend_from_slice(k.as_bytes());
                            omap.remove(full.as_slice()).map_err(|e| db_error("remove omap key", e))?;
                        }
                    }
                    WriteStep::OmapClear => clear_omap(&mut omap, &omap_prefix)?,
                    WriteStep::WriteFull(_)
                    | WriteStep::Write { .. }
                    | WriteStep::Truncate(_)
                    | WriteStep::Remove
                    | WriteStep::OmapCmp { .. } => {}
                }
            }
            rec.version = version;
            rec.mtime = SystemTime::now();
            objects.insert(key.as_slice(), rec.encode().as_slice()).map_err(|e| db_error("write record", e))?;
            self.step("local.before_commit", obj)?;
            Ok(Committed::Done { version, replaced })
        })();
        match result {
            Ok(Committed::Done { version, replaced }) => {
                txn.commit().map_err(|e| db_error(format!("commit write of {obj}"), e))?;
                Ok(Committed::Done { version, replaced })
            }
            Ok(Committed::Raced) => {
                txn.abort().map_err(|e| db_error("abort write", e))?;
                Ok(Committed::Raced)
            }
            Err(e) => {
                // Dropping the transaction discards it; an abort error adds nothing useful here.
                let _ = txn.abort();
                Err(e)
            }
        }
    }

    fn omap_list_blocking(&self, obj: &ObjectRef, q: &OmapQuery) -> Result<OmapPage> {
        let txn = self.inner.db.begin_read().map_err(|e| db_error("begin read", e))?;
        require_object(&txn, obj)?;
        let omap = txn.open_table(OMAP).map_err(|e| db_error("open omap table", e))?;
        let base = codec::omap_prefix(&obj.pool, &obj.namespace, &obj.name);
        let mut want = base.clone();
        want.extend_from_slice(q.prefix.as_deref().unwrap_or("").as_bytes());
        let lower = match &q.start_after {
            Some(s) => {
                let mut k = base.clone();
                k.extend_from_slice(s.as_bytes());
                if k >= want { Bound::Excluded(k) } else { Bound::Included(want.clone()) }
            }
            None => Bound::Included(want.clone()),
        };
        let range = omap
            .range::<&[u8]>((lower.as_ref().map(Vec::as_slice), Bound::Unbounded))
            .map_err(|e| db_error("list omap", e))?;
        let mut page = OmapPage::default();
        for item in range {
            let (k, v) = item.map_err(|e| db_error("list omap", e))?;
            let k = k.value();
            if !k.starts_with(&want) {
                break;
            }
            if page.entries.len() as u64 >= q.max {
                page.more = true;
                break;
            }
            let name = String::from_utf8_lossy(&k[base.len()..]).into_owned();
            page.entries.push((name, Bytes::copy_from_slice(v.value())));
        }
        Ok(page)
    }

    fn omap_get_blocking(&self, obj: &ObjectRef, keys: &[String]) -> Result<BTreeMap<String, Bytes>> {
        let txn = self.inner.db.begin_read().map_err(|e| db_error("begin read", e))?;
        require_object(&txn, obj)?;
        let omap = txn.open_table(OMAP).map_err(|e| db_error("open omap table", e))?;
        let base = codec::omap_prefix(&obj.pool, &obj.namespace, &obj.name);
        let mut out = BTreeMap::new();
        for k in keys {
            let mut full = base.clone();
            full.extend_from_slice(k.as_bytes());
            if let Some(v) = omap.get(full.as_slice()).map_err(|e| db_error("get omap key", e))? {
                out.insert(k.clone(), Bytes::copy_from_slice(v.value()));
            }
        }
        Ok(out)
    }

    fn list_blocking(&self, pool: &str, namespace: &str, start: Option<&str>, max: usize) -> Result<ObjectPage> {
        let prefix = codec::namespace_prefix(pool, namespace);
        let lower = match start {
            Some(token) => {
                let name = token.strip_prefix("l1:").ok_or_else(|| {
                    StoreError::InvalidArgument(format!("list token {token:?} is not a local listing token"))
                })?;
                let mut k = prefix.clone();
                k.extend_from_slice(name.as_bytes());
                Bound::Excluded(k)
            }
            None => Bound::Included(prefix.clone()),
        };
        let txn = self.inner.db.begin_read().map_err(|e| db_error("begin read", e))?;
        let objects = txn.open_table(OBJECTS).map_err(|e| db_error("open object table", e))?;
        let range = objects
            .range::<&[u8]>((lower.as_ref().map(Vec::as_slice), Bound::Unbounded))
            .map_err(|e| db_error("list objects", e))?;
        let mut page = ObjectPage::default();
        for item in range {
            let (k, _) = item.map_err(|e| db_error("list objects", e))?;
            let k = k.value();
            if !k.starts_with(&prefix) {
                break;
            }
            let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if page.names.len() >= max {
                page.next = page.names.last().map(|n| format!("l1:{n}"));
                break;
            }
            page.names.push(name);
        }
        Ok(page)
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&LocalStore) -> Result<T> + Send + 'static) -> Result<T> {
        self.alive()?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| StoreError::Unavailable(format!("local store task failed: {e}")))?
    }
}

enum Committed {
    Done { version: u64, replaced: Option<u64> },
    Raced,
}

/// `NotFound` unless the object exists (omap reads of a missing object fail, as on RADOS).
fn require_object(txn: &redb::ReadTransaction, obj: &ObjectRef) -> Result<()> {
    let objects = txn.open_table(OBJECTS).map_err(|e| db_error("open object table", e))?;
    let key = codec::object_key(&obj.pool, &obj.namespace, &obj.name);
    match objects.get(key.as_slice()).map_err(|e| db_error("read record", e))? {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(obj.to_string())),
    }
}

fn clear_omap(omap: &mut redb::Table<&[u8], &[u8]>, prefix: &[u8]) -> Result<()> {
    let keys: Vec<Vec<u8>> = {
        let range = omap.range::<&[u8]>(prefix..).map_err(|e| db_error("list omap", e))?;
        let mut keys = Vec::new();
        for item in range {
            let (k, _) = item.map_err(|e| db_error("list omap", e))?;
            if !k.value().starts_with(prefix) {
                break;
            }
            keys.push(k.value().to_vec());
        }
        keys
    };
    for k in keys {
        omap.remove(k.as_slice()).map_err(|e| db_error("clear omap", e))?;
    }
    Ok(())
}

fn check_guard(guard: Guard, current: Option<&ObjectRecord>, obj: &ObjectRef) -> Result<()> {
    match (guard, current) {
        (Guard::None, _) => Ok(()),
        (Guard::CreateExclusive, None) => Ok(()),
        (Guard::CreateExclusive, Some(_)) => Err(StoreError::AlreadyExists(obj.to_string())),
        (Guard::MustExist | Guard::Version(_), None) => Err(StoreError::NotFound(obj.to_string())),
        (Guard::MustExist, Some(_)) => Ok(()),
        (Guard::Version(v), Some(rec)) if rec.version == v => Ok(()),
        (Guard::Version(v), Some(_)) => Err(StoreError::Conflict(format!("{obj} is no longer at version {v}"))),
    }
}

fn has_data_steps(steps: &[WriteStep]) -> bool {
    steps.iter().any(|s| matches!(s, WriteStep::WriteFull(_) | WriteStep::Write { .. } | WriteStep::Truncate(_)))
}

fn first_data_step_is_partial(steps: &[WriteStep]) -> bool {
    steps
        .iter()
        .find(|s| matches!(s, WriteStep::WriteFull(_) | WriteStep::Write { .. } | WriteStep::Truncate(_)))
        .is_some_and(|s| !matches!(s, WriteStep::WriteFull(_)))
}

/// The object's bytes after the data steps, starting from `content`.
fn apply_data_steps(mut content: Vec<u8>, steps: &[WriteStep]) -> Result<Vec<u8>> {
    for step in steps {
        match step {
            WriteStep::WriteFull(d) => content = d.to_vec(),
            WriteStep::Write { offset, data } => {
                let start = usize::try_from(*offset)
                    .map_err(|_| StoreError::InvalidArgument(format!("offset {offset} is too large")))?;
                let end = start
                    .checked_add(data.len())
                    .ok_or_else(|| StoreError::InvalidArgument(format!("write at {offset} overflows")))?;
                if content.len() < end {
                    content.resize(end, 0);
                }
                content[start..end].copy_from_slice(data);
            }
            WriteStep::Truncate(size) => {
                let size = usize::try_from(*size)
                    .map_err(|_| StoreError::InvalidArgument(format!("size {size} is too large")))?;
                content.resize(size, 0);
            }
            _ => {}
        }
    }
    Ok(content)
}

fn init_tables(db: &Database, path: &Path) -> Result<u64> {
    let txn = db.begin_write().map_err(|e| db_error("begin write", e))?;
    let next_file = {
        txn.open_table(OBJECTS).map_err(|e| db_error("create object table", e))?;
        txn.open_table(OMAP).map_err(|e| db_error("create omap table", e))?;
        let files = txn.open_table(FILES).map_err(|e| db_error("create live file table", e))?;
        let mut counters = txn.open_table(COUNTERS).map_err(|e| db_error("create counter table", e))?;
        let format = counters.get("format").map_err(|e| db_error("read store format", e))?.map(|v| v.value());
        match format {
            None => {
                counters.insert("format", STORE_FORMAT).map_err(|e| db_error("write store format", e))?;
            }
            Some(STORE_FORMAT) => {}
            Some(found) => {
                return Err(StoreError::UnsupportedVersion {
                    what: format!("local store {}", path.display()),
                    found: u32::try_from(found).unwrap_or(u32::MAX),
                    supported: STORE_FORMAT as u32,
                });
            }
        }
        let last = files.last().map_err(|e| db_error("read live file table", e))?.map(|(k, _)| k.value());
        last.map_or(1, |id| id + 1)
    };
    txn.commit().map_err(|e| db_error("commit store init", e))?;
    Ok(next_file)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(format!("fsync directory {}", dir.display()), e))
}

fn db_error(context: impl Into<String>, e: impl Into<redb::Error>) -> StoreError {
    let context = context.into();
    match e.into() {
        redb::Error::Io(io) => StoreError::io(context, io),
        redb::Error::Corrupted(detail) => {
            StoreError::corrupt("local metadata database", format!("{context}: {detail}"))
        }
        redb::Error::ValueTooLarge(n) => {
            StoreError::InvalidArgument(format!("{context}: value of {n} bytes is too large"))
        }
        redb::Error::UpgradeRequired(v) => {
            StoreError::UnsupportedVersion { what: "local metadata database".into(), found: v.into(), supported: 3 }
        }
        other => StoreError::io(context, std::io::Error::other(other.to_string())),
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn kind(&self) -> BackendKind {
        BackendKind::Local
    }

    async fn read(&self, obj: &ObjectRef, range: ReadRange) -> Result<ReadReply> {
        obj.validate()?;
        let obj = obj.clone();
        let (offset, len) = match range {
            ReadRange::Full => (0, u64::MAX),
            ReadRange::Range { offset, len } => (offset, len),
        };
        self.run(move |s| s.read_blocking(&obj, offset, len)).await
    }

    async fn read_with_xattrs(
        &self,
        obj: &ObjectRef,
        range: ReadRange,
    ) -> Result<(ReadReply, BTreeMap<String, Bytes>)> {
        obj.validate()?;
        let obj = obj.clone();
        let (offset, len) = match range {
            ReadRange::Full => (0, u64::MAX),
            ReadRange::Range { offset, len } => (offset, len),
        };
        self.run(move |s| {
            for _ in 0..16 {
                let rec = s.existing(&obj)?;
                if let Some(data) = s.read_data(&rec, offset, len)? {
                    return Ok((ReadReply { data: Bytes::from(data), version: rec.version }, rec.xattrs));
                }
            }
            Err(StoreError::Conflict(format!("read {obj}: the object kept changing during the read")))
        })
        .await
    }

    async fn stat(&self, obj: &ObjectRef) -> Result<ObjectStat> {
        obj.validate()?;
        let obj = obj.clone();
        self.run(move |s| {
            let rec = s.existing(&obj)?;
            Ok(ObjectStat { size: rec.size, mtime: rec.mtime, version: rec.version })
        })
        .await
    }

    async fn xattr_get(&self, obj: &ObjectRef, name: &str) -> Result<Bytes> {
        obj.validate()?;
        validate_key("xattr name", name)?;
        let (obj, name) = (obj.clone(), name.to_owned());
        self.run(move |s| {
            let mut rec = s.existing(&obj)?;
            rec.xattrs.remove(&name).ok_or_else(|| StoreError::NotFound(format!("xattr {name:?} of {obj}")))
        })
        .await
    }

    async fn xattr_list(&self, obj: &ObjectRef) -> Result<BTreeMap<String, Bytes>> {
        obj.validate()?;
        let obj = obj.clone();
        self.run(move |s| Ok(s.existing(&obj)?.xattrs)).await
    }

    async fn omap_get(&self, obj: &ObjectRef, keys: &[String]) -> Result<BTreeMap<String, Bytes>> {
        obj.validate()?;
        for k in keys {
            validate_key("omap key", k)?;
        }
        let (obj, keys) = (obj.clone(), keys.to_vec());
        self.run(move |s| s.omap_get_blocking(&obj, &keys)).await
    }

    async fn omap_list(&self, obj: &ObjectRef, query: &OmapQuery) -> Result<OmapPage> {
        obj.validate()?;
        let (obj, q) = (obj.clone(), query.clone());
        self.run(move |s| s.omap_list_blocking(&obj, &q)).await
    }

    async fn list_objects(&self, pool: &str, namespace: &str, start: Option<&str>, max: usize) -> Result<ObjectPage> {
        validate_pool(pool, namespace)?;
        let (pool, ns, start) = (pool.to_owned(), namespace.to_owned(), start.map(str::to_owned));
        self.run(move |s| s.list_blocking(&pool, &ns, start.as_deref(), max)).await
    }

    async fn execute(&self, obj: &ObjectRef, op: WriteOp) -> Result<u64> {
        let obj = obj.clone();
        self.run(move |s| s.execute_blocking(&obj, &op)).await
    }
}
