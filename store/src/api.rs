//! The object-store API every other crate talks to storage through.
//!
//! The model is RADOS's: pools hold namespaces, namespaces hold objects; an object has bytes,
//! extended attributes (small named values) and an omap (a sorted key/value map). Every write
//! bumps the object's version; a [`WriteOp`] applies a guard and several steps atomically.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Result, StoreError};

/// Longest object name accepted by every backend (RADOS's `osd_max_object_name_len` default).
pub const MAX_NAME_LEN: usize = 2048;
/// Longest pool or namespace name accepted.
pub const MAX_POOL_LEN: usize = 256;
/// Longest xattr name or omap key accepted.
pub const MAX_KEY_LEN: usize = 1024;

/// Where an object lives: pool, namespace (may be empty) and name. Names are data, never paths.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub pool: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(pool: impl Into<String>, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectRef { pool: pool.into(), namespace: namespace.into(), name: name.into() }
    }

    /// Checks what every backend can store: non-empty names without NUL bytes, within limits.
    pub fn validate(&self) -> Result<()> {
        validate_pool(&self.pool, &self.namespace)?;
        check_text("object name", &self.name, MAX_NAME_LEN, false)
    }
}

impl fmt::Debug for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // {:?} escapes control characters, so a hostile name cannot forge log lines.
        if self.namespace.is_empty() {
            write!(f, "{}/{:?}", self.pool, self.name)
        } else {
            write!(f, "{}/{}/{:?}", self.pool, self.namespace, self.name)
        }
    }
}

pub(crate) fn validate_pool(pool: &str, namespace: &str) -> Result<()> {
    check_text("pool name", pool, MAX_POOL_LEN, false)?;
    check_text("namespace", namespace, MAX_POOL_LEN, true)
}

pub(crate) fn validate_key(what: &str, key: &str) -> Result<()> {
    check_text(what, key, MAX_KEY_LEN, false)
}

fn check_text(what: &str, s: &str, max: usize, empty_ok: bool) -> Result<()> {
    if s.is_empty() && !empty_ok {
        return Err(StoreError::InvalidArgument(format!("{what} is empty")));
    }
    if s.len() > max {
        return Err(StoreError::InvalidArgument(format!("{what} is {} bytes long, the limit is {max}", s.len())));
    }
    if s.as_bytes().contains(&0) {
        return Err(StoreError::InvalidArgument(format!("{what} contains a NUL byte")));
    }
    Ok(())
}

/// Which part of an object to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadRange {
    /// The whole object, consistent with one version.
    Full,
    /// Up to `len` bytes from `offset`; shorter (possibly empty) past the end of the object.
    Range { offset: u64, len: u64 },
}

/// Bytes read and the version they belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadReply {
    pub data: Bytes,
    pub version: u64,
}

/// What `stat` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectStat {
    pub size: u64,
    /// Last modification time (second precision on RADOS).
    pub mtime: SystemTime,
    /// Changes on every write; never repeats for one name, even across remove and re-create.
    pub version: u64,
}

/// A page of an object's omap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OmapPage {
    pub entries: Vec<(String, Bytes)>,
    /// True when more keys matched than were returned; continue with `start_after` = last key.
    pub more: bool,
}

/// Which omap keys to list, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OmapQuery {
    /// Only keys strictly greater than this.
    pub start_after: Option<String>,
    /// Only keys that start with this.
    pub prefix: Option<String>,
    /// At most this many (a backend may cap it; `more` then says so).
    pub max: u64,
}

/// A page of object names. Order is backend-defined (hash order on RADOS); each name appears
/// once across the pages of one listing if nothing is written meanwhile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectPage {
    pub names: Vec<String>,
    /// Opaque token for the next page; `None` at the end.
    pub next: Option<String>,
}

/// The precondition of a compound write, checked atomically with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Guard {
    /// No precondition.
    #[default]
    None,
    /// The object must not exist (else `AlreadyExists`).
    CreateExclusive,
    /// The object must exist (else `NotFound`).
    MustExist,
    /// The object must exist with exactly this version (else `Conflict`, or `NotFound` when it
    /// is gone). This is the compare-and-swap guard.
    Version(u64),
}

/// One step of a compound write. Steps apply in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteStep {
    /// Replace the whole content.
    WriteFull(Bytes),
    /// Write at an offset, zero-filling any gap past the current end.
    Write {
        offset: u64,
        data: Bytes,
    },
    /// Set the size, cutting or zero-extending.
    Truncate(u64),
    SetXattr {
        name: String,
        value: Bytes,
    },
    RemoveXattr(String),
    OmapSet(BTreeMap<String, Bytes>),
    OmapRemove(Vec<String>),
    OmapClear,
    /// Assert that an omap key holds exactly this value (else the whole op fails with
    /// `Conflict`; a missing key does not match). Checked atomically with the other steps.
    OmapCmp {
        key: String,
        value: Bytes,
    },
    /// Delete the object with its xattrs and omap. Must be the only step.
    Remove,
}

/// A guard plus steps, applied all or nothing. Built with the chaining methods:
/// `WriteOp::new().guard(Guard::CreateExclusive).write_full(data).set_xattr("etag", tag)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOp {
    pub guard: Guard,
    pub steps: Vec<WriteStep>,
}

impl WriteOp {
    pub fn new() -> Self {
        WriteOp::default()
    }
    pub fn guard(mut self, guard: Guard) -> Self {
        self.guard = guard;
        self
    }
    pub fn write_full(self, data: impl Into<Bytes>) -> Self {
        self.step(WriteStep::WriteFull(data.into()))
    }
    pub fn write(self, offset: u64, data: impl Into<Bytes>) -> Self {
        self.step(WriteStep::Write { offset, data: data.into() })
    }
    pub fn truncate(self, size: u64) -> Self {
        self.step(WriteStep::Truncate(size))
    }
    pub fn set_xattr(self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.step(WriteStep::SetXattr { name: name.into(), value: value.into() })
    }
    pub fn remove_xattr(self, name: impl Into<String>) -> Self {
        self.step(WriteStep::RemoveXattr(name.into()))
    }
    pub fn omap_set(self, entries: BTreeMap<String, Bytes>) -> Self {
        self.step(WriteStep::OmapSet(entries))
    }
    pub fn omap_set_one(self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.omap_set(BTreeMap::from([(key.into(), value.into())]))
    }
    pub fn omap_remove(self, keys: Vec<String>) -> Self {
        self.step(WriteStep::OmapRemove(keys))
    }
    pub fn omap_clear(self) -> Self {
        self.step(WriteStep::OmapClear)
    }
    pub fn omap_cmp(self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.step(WriteStep::OmapCmp { key: key.into(), value: value.into() })
    }
    pub fn remove(self) -> Self {
        self.step(WriteStep::Remove)
    }
    fn step(mut self, step: WriteStep) -> Self {
        self.steps.push(step);
        self
    }

    /// True when the op deletes the object.
    pub fn is_remove(&self) -> bool {
        matches!(self.steps.as_slice(), [WriteStep::Remove])
    }

    /// Checks the op's shape and every name in it; backends call this before touching anything.
    pub fn validate(&self) -> Result<()> {
        if self.steps.is_empty() {
            return Err(StoreError::InvalidArgument("compound write has no steps".into()));
        }
        if self.steps.len() > 1 && self.steps.iter().any(|s| matches!(s, WriteStep::Remove)) {
            return Err(StoreError::InvalidArgument("remove must be the only step of a compound write".into()));
        }
        if self.is_remove() && self.guard == Guard::CreateExclusive {
            return Err(StoreError::InvalidArgument("remove cannot be guarded by create-exclusive".into()));
        }
        for step in &self.steps {
            match step {
                WriteStep::SetXattr { name, .. } | WriteStep::RemoveXattr(name) => validate_key("xattr name", name)?,
                WriteStep::OmapSet(entries) => {
                    for key in entries.keys() {
                        validate_key("omap key", key)?;
                    }
                }
                WriteStep::OmapRemove(keys) => {
                    for key in keys {
                        validate_key("omap key", key)?;
                    }
                }
                WriteStep::OmapCmp { key, .. } => validate_key("omap key", key)?,
                WriteStep::Write { offset, data } => {
                    offset
                        .checked_add(data.len() as u64)
                        .ok_or_else(|| StoreError::InvalidArgument(format!("write at offset {offset} overflows")))?;
                }
                WriteStep::WriteFull(_) | WriteStep::Truncate(_) | WriteStep::OmapClear | WriteStep::Remove => {}
            }
        }
        Ok(())
    }
}

/// Which implementation is behind an [`ObjectStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Rados,
    Local,
}

/// The storage API. All methods are cancel-safe in the sense that dropping a future never
/// corrupts anything; a write whose future is dropped (or that returns `Timeout`) may or may not
/// have been applied, exactly like a RADOS op whose reply was lost.
///
/// Errors: `NotFound` for a missing object/xattr; `InvalidArgument` for bad names; see
/// [`StoreError`] for the rest.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    fn kind(&self) -> BackendKind;

    /// Reads the whole object or a range of it, with the version the bytes belong to.
    async fn read(&self, obj: &ObjectRef, range: ReadRange) -> Result<ReadReply>;

    /// Reads like `read`, together with all extended attributes of the same version (one RADOS
    /// op for the first 64 KiB).
    async fn read_with_xattrs(&self, obj: &ObjectRef, range: ReadRange)
    -> Result<(ReadReply, BTreeMap<String, Bytes>)>;

    /// Size, modification time and version of an object.
    async fn stat(&self, obj: &ObjectRef) -> Result<ObjectStat>;

    /// One extended attribute (`NotFound` when the object or the attribute is missing).
    async fn xattr_get(&self, obj: &ObjectRef, name: &str) -> Result<Bytes>;

    /// All extended attributes.
    async fn xattr_list(&self, obj: &ObjectRef) -> Result<BTreeMap<String, Bytes>>;

    /// The values of the given omap keys that exist (missing keys are left out).
    async fn omap_get(&self, obj: &ObjectRef, keys: &[String]) -> Result<BTreeMap<String, Bytes>>;

    /// A page of omap entries in key order.
    async fn omap_list(&self, obj: &ObjectRef, query: &OmapQuery) -> Result<OmapPage>;

    /// A page of the object names in a pool's namespace. `start` is a token from a previous
    /// page; at most `max` names come back.
    async fn list_objects(&self, pool: &str, namespace: &str, start: Option<&str>, max: usize) -> Result<ObjectPage>;

    /// Applies `op` atomically: the guard is checked and every step applied, or nothing is.
    /// Returns the object's new version (for a remove, the version the removal was given).
    async fn execute(&self, obj: &ObjectRef, op: WriteOp) -> Result<u64>;

    /// Replaces the object's content (creating it if needed).
    async fn write_full(&self, obj: &ObjectRef, data: Bytes) -> Result<u64> {
        self.execute(obj, WriteOp::new().write_full(data)).await
    }

    /// Writes at an offset (creating the object if needed).
    async fn write(&self, obj: &ObjectRef, offset: u64, data: Bytes) -> Result<u64> {
        self.execute(obj, WriteOp::new().write(offset, data)).await
    }

    /// Deletes the object, its xattrs and its omap (`NotFound` if it does not exist).
    async fn remove(&self, obj: &ObjectRef) -> Result<()> {
        self.execute(obj, WriteOp::new().remove()).await.map(|_| ())
    }

    /// Sets one extended attribute (creating the object if needed).
    async fn xattr_set(&self, obj: &ObjectRef, name: &str, value: Bytes) -> Result<u64> {
        self.execute(obj, WriteOp::new().set_xattr(name, value)).await
    }

    /// Removes one extended attribute of an existing object.
    async fn xattr_remove(&self, obj: &ObjectRef, name: &str) -> Result<u64> {
        self.execute(obj, WriteOp::new().guard(Guard::MustExist).remove_xattr(name)).await
    }

    /// Sets omap entries (creating the object if needed).
    async fn omap_set(&self, obj: &ObjectRef, entries: BTreeMap<String, Bytes>) -> Result<u64> {
        self.execute(obj, WriteOp::new().omap_set(entries)).await
    }

    /// Removes omap keys of an existing object (keys that are not there are ignored).
    async fn omap_remove(&self, obj: &ObjectRef, keys: &[String]) -> Result<u64> {
        self.execute(obj, WriteOp::new().guard(Guard::MustExist).omap_remove(keys.to_vec())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_name(name: &str, expect: std::result::Result<(), &str>) {
        let got = ObjectRef::new("pool", "", name).validate().map_err(|e| e.to_string());
        assert_eq!(got.as_ref().map(|_| ()).map_err(String::as_str), expect);
    }

    #[test]
    fn names() {
        check_name("a", Ok(()));
        check_name("../../etc/passwd", Ok(()));
        check_name(&"x".repeat(1024), Ok(()));
        check_name(&"x".repeat(MAX_NAME_LEN), Ok(()));
        check_name("", Err("invalid argument: object name is empty"));
        check_name("a\0b", Err("invalid argument: object name contains a NUL byte"));
        check_name(
            &"x".repeat(MAX_NAME_LEN + 1),
            Err("invalid argument: object name is 2049 bytes long, the limit is 2048"),
        );
    }

    #[test]
    fn op_shapes() {
        assert!(WriteOp::new().validate().is_err());
        assert!(WriteOp::new().remove().write_full(Bytes::new()).validate().is_err());
        assert!(WriteOp::new().guard(Guard::CreateExclusive).remove().validate().is_err());
        assert!(WriteOp::new().write(u64::MAX, vec![1u8]).validate().is_err());
        assert!(WriteOp::new().set_xattr("", Bytes::new()).validate().is_err());
        assert!(WriteOp::new().guard(Guard::Version(3)).remove().validate().is_ok());
    }

    #[test]
    fn display_escapes_control_characters() {
        let obj = ObjectRef::new("p", "ns", "a\nb");
        assert_eq!(obj.to_string(), "p/ns/\"a\\nb\"");
    }
}
