//! The persisted formats of the local backend (documented in docs/layout.md).
//!
//! Keys sort so that a pool+namespace, and an object's omap, are contiguous ranges:
//! - object key: `len16(pool) pool len16(ns) ns name`
//! - omap key:   `len16(pool) pool len16(ns) ns len32(name) name omap_key`
//!
//! An object record starts with its format version; a reader rejects versions it does not know.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::error::{Result, StoreError};

/// Format version of object records written by this build.
pub const OBJECT_FORMAT: u8 = 1;

/// Where an object's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataRef {
    /// In the record itself (small objects).
    Inline(Bytes),
    /// In `data/<id & 0xff as 2 hex digits>/<id as 16 hex digits>`.
    File(u64),
}

/// One object's metadata record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRecord {
    pub version: u64,
    pub size: u64,
    pub mtime: SystemTime,
    pub data: DataRef,
    pub xattrs: BTreeMap<String, Bytes>,
}

impl ObjectRecord {
    pub fn encode(&self) -> Vec<u8> {
        let inline_len = match &self.data {
            DataRef::Inline(b) => b.len(),
            DataRef::File(_) => 0,
        };
        let mut out = Vec::with_capacity(40 + inline_len);
        out.push(OBJECT_FORMAT);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        let nanos = self.mtime.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        out.extend_from_slice(&u64::try_from(nanos).unwrap_or(u64::MAX).to_be_bytes());
        match &self.data {
            DataRef::Inline(b) => {
                out.push(0);
                put_bytes32(&mut out, b);
            }
            DataRef::File(id) => {
                out.push(1);
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        out.extend_from_slice(&(self.xattrs.len() as u32).to_be_bytes());
        for (k, v) in &self.xattrs {
            put_bytes32(&mut out, k.as_bytes());
            put_bytes32(&mut out, v);
        }
        out
    }

    pub fn decode(raw: &[u8]) -> Result<ObjectRecord> {
        let mut r = Reader { buf: raw, what: "object record" };
        let format = r.u8()?;
        if format != OBJECT_FORMAT {
            return Err(StoreError::UnsupportedVersion {
                what: "local object record".into(),
                found: format.into(),
                supported: OBJECT_FORMAT.into(),
            });
        }
        let version = r.u64()?;
        let size = r.u64()?;
        let mtime = UNIX_EPOCH + Duration::from_nanos(r.u64()?);
        let data = match r.u8()? {
            0 => DataRef::Inline(Bytes::copy_from_slice(r.bytes32()?)),
            1 => DataRef::File(r.u64()?),
            t => return Err(StoreError::corrupt("object record", format!("unknown data tag {t}"))),
        };
        let n = r.u32()?;
        let mut xattrs = BTreeMap::new();
        for _ in 0..n {
            let k = String::from_utf8(r.bytes32()?.to_vec())
                .map_err(|_| StoreError::corrupt("object record", "xattr name is not UTF-8"))?;
            xattrs.insert(k, Bytes::copy_from_slice(r.bytes32()?));
        }
        if !r.buf.is_empty() {
            return Err(StoreError::corrupt("object record", format!("{} trailing bytes", r.buf.len())));
        }
        Ok(ObjectRecord { version, size, mtime, data, xattrs })
    }
}

fn put_bytes32(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(StoreError::corrupt(
                self.what,
                format!("truncated: wanted {n} more bytes, {} left", self.buf.len()),
            ));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(a))
    }
    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn bytes32(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    // Pool and namespace names are validated to ≤ 256 bytes, so the length fits.
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Prefix of every object key in a pool's namespace.
pub fn namespace_prefix(pool: &str, namespace: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + pool.len() + namespace.len());
    put_str16(&mut k, pool);
    put_str16(&mut k, namespace);
    k
}

/// Key of an object record.
pub fn object_key(pool: &str, namespace: &str, name: &str) -> Vec<u8> {
    let mut k = namespace_prefix(pool, namespace);
    k.extend_from_slice(name.as_bytes());
    k
}

/// Prefix of every omap key of one object.
pub fn omap_prefix(pool: &str, namespace: &str, name: &str) -> Vec<u8> {
    let mut k = namespace_prefix(pool, namespace);
    k.extend_from_slice(&(name.len() as u32).to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(data: DataRef, xattrs: &[(&str, &[u8])]) -> ObjectRecord {
        ObjectRecord {
            version: 42,
            size: 7,
            mtime: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            data,
            xattrs: xattrs.iter().map(|(k, v)| ((*k).to_owned(), Bytes::copy_from_slice(v))).collect(),
        }
    }

    #[test]
    fn round_trips() {
        for r in [
            record(DataRef::Inline(Bytes::from_static(b"payload")), &[]),
            record(DataRef::File(0xdead_beef), &[("etag", b"abc"), ("x", b"")]),
        ] {
            assert_eq!(ObjectRecord::decode(&r.encode()).ok(), Some(r));
        }
    }

    #[test]
    fn rejects_unknown_versions_and_truncation() {
        let mut raw = record(DataRef::File(1), &[]).encode();
        raw[0] = 9;
        let e = ObjectRecord::decode(&raw).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("local object record has format version 9, this build reads up to 1; upgrade cyvault")
        );
        let raw = record(DataRef::File(1), &[]).encode();
        for cut in 0..raw.len() {
            assert!(ObjectRecord::decode(&raw[..cut]).is_err(), "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ObjectRecord::decode(&raw);
        }

        #[test]
        fn object_keys_keep_namespaces_apart(a in "[a-z]{0,4}", b in "[a-z]{0,4}", n in "[a-z]{1,4}") {
            // ("a","bc") and ("ab","c") must not collide or share a prefix range.
            let k1 = object_key(&a, &b, &n);
            let p2 = namespace_prefix(&format!("{a}x"), &b);
            prop_assert!(!k1.starts_with(&p2));
        }
    }
}
