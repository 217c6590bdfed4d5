//! Where S3 state lives in the object store: object names and record formats (layout 1).
//!
//! docs/layout.md describes the same thing for operators; change both together.
//!
//! Architecture Invariant: an S3 object is visible exactly when its head object exists. The head
//! is written last, in one atomic write op (bytes of the first stripe + the `cyv.h` xattr), after
//! every tail stripe it names is durable; it is removed first. Everything else (index entries,
//! tails, parts) is derived state that the sweeper can reconcile.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{GwError, Result};

/// The layout version written to `cyv.meta`; a gateway refuses a pool with a newer one.
pub const LAYOUT_VERSION: u32 = 1;

/// Holds `format` = layout version.
pub const META_OBJECT: &str = "cyv.meta";
/// `cyv.meta` omap keys `data_pool.<pool>`: every pool placement put bucket data in.
pub const DATA_POOL_KEY_PREFIX: &str = "data_pool.";
/// The marker object written into a data pool when a bucket is first placed there.
pub const DATA_POOL_MARKER: &str = "cyv.pool";
/// omap: `u.<user>` → [`UserRecord`], `k.<access key>` → [`KeyRecord`], `root` → root access key.
pub const USERS_OBJECT: &str = "cyv.users";
/// omap: `<bucket name>` → [`BucketRecord`].
pub const BUCKETS_OBJECT: &str = "cyv.buckets";

/// xattr of a head object: the JSON [`ObjectMeta`].
pub const HEAD_XATTR: &str = "cyv.h";
/// xattr of a tail stripe or part stripe: the JSON [`OwnerTag`] the sweeper reads.
pub const OWNER_XATTR: &str = "cyv.o";

pub const HEAD_PREFIX: &str = "cyv.h.";
pub const TAIL_PREFIX: &str = "cyv.t.";
pub const PART_PREFIX: &str = "cyv.p.";
pub const INDEX_PREFIX: &str = "cyv.i.";
pub const UPLOADS_PREFIX: &str = "cyv.mp.";
pub const PARTS_PREFIX: &str = "cyv.mpp.";

/// Head object of `key` in bucket `bid`: holds stripe 0 and the metadata.
pub fn head_name(bid: &str, key: &str) -> String {
    format!("{HEAD_PREFIX}{bid}.{key}")
}

/// Stripe `n` (≥ 1) of a striped object written with `tag`.
pub fn tail_name(bid: &str, tag: &str, n: u32) -> String {
    format!("{TAIL_PREFIX}{bid}.{tag}.{n}")
}

/// Stripe `n` (≥ 0) of part data written with `ptag` for `upload`.
pub fn part_stripe_name(bid: &str, upload: &str, ptag: &str, n: u32) -> String {
    format!("{PART_PREFIX}{bid}.{upload}.{ptag}.{n}")
}

/// Index shard `shard` of bucket `bid`: omap `key` → [`IndexEntry`].
pub fn index_name(bid: &str, shard: u32) -> String {
    format!("{INDEX_PREFIX}{bid}.{shard}")
}

/// Multipart uploads of bucket `bid`: omap `<upload id>` → [`UploadRecord`].
pub fn uploads_name(bid: &str) -> String {
    format!("{UPLOADS_PREFIX}{bid}")
}

/// Parts of one upload: omap `%05d part number` → [`PartRecord`].
pub fn parts_name(bid: &str, upload: &str) -> String {
    format!("{PARTS_PREFIX}{bid}.{upload}")
}

pub fn part_key(n: i32) -> String {
    format!("{n:05}")
}

/// Which index shard holds `key` (FNV-1a, stable across versions and processes).
pub fn shard_of(key: &str, shards: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(shards.max(1))) as u32
}

/// A random lowercase-hex id of `bytes` random bytes.
pub fn random_id(bytes: usize) -> String {
    let mut v = vec![0u8; bytes];
    rand::fill(&mut v[..]);
    hex::encode(v)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    pub created_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub access_key: String,
    pub secret_key: String,
    pub user: String,
    pub created_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    /// Random id naming every object of the bucket: a re-created bucket never sees old data.
    pub id: String,
    pub owner: String,
    pub created_ms: u64,
    /// Index shards, fixed at creation.
    pub shards: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<(String, String)>>,
    /// The pool holding the bucket's heads, tails and parts, chosen by placement at creation;
    /// `None`: the gateway's own pool (where the index and every other record live).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_pool: Option<String>,
}

/// The flexible checksum stored with an object or part (base64 as on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChecksum {
    /// CRC32, CRC32C, SHA1, SHA256 or CRC64NVME.
    pub algo: String,
    pub value: String,
    /// FULL_OBJECT or COMPOSITE.
    pub kind: String,
}

/// How an object's bytes are laid out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t")]
pub enum Layout {
    /// All bytes are in the head.
    Inline,
    /// Stripe 0 is in the head, stripes 1..count in tails named by the object's tag.
    Striped { stripe: u64, count: u32 },
    /// Composed by CompleteMultipartUpload: the parts' stripes, in order; the head has no bytes.
    Parts { upload: String, parts: Vec<PartRef> },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRef {
    pub number: i32,
    pub tag: String,
    pub size: u64,
    pub stripe: u64,
    pub etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// The metadata of an S3 object (xattr `cyv.h` of its head).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub size: u64,
    /// Without quotes: 32 hex digits, or `<hex>-<parts>` for multipart.
    pub etag: String,
    pub mtime_ms: u64,
    /// Unique per write; names the tails and lets the index and sweeper tell versions apart.
    pub tag: String,
    pub layout: Layout,
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_meta: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<StoredChecksum>,
}

/// The standard headers stored and returned as given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// HTTP date as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl Headers {
    pub fn is_empty(&self) -> bool {
        *self == Headers::default()
    }
}

/// One listing entry (omap value in an index shard), kept small: listing reads these only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    #[serde(rename = "s")]
    pub size: u64,
    #[serde(rename = "e")]
    pub etag: String,
    #[serde(rename = "m")]
    pub mtime_ms: u64,
    #[serde(rename = "t")]
    pub tag: String,
    /// Set before a head is written or removed, cleared after: a pending entry is not trusted,
    /// listings ask the head instead. This is what keeps listings right across crashes.
    #[serde(rename = "p", default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

impl IndexEntry {
    /// The settled entry for an object's metadata.
    pub fn of(meta: &ObjectMeta) -> IndexEntry {
        IndexEntry {
            size: meta.size,
            etag: meta.etag.clone(),
            mtime_ms: meta.mtime_ms,
            tag: meta.tag.clone(),
            pending: false,
        }
    }

    /// The same entry, marked pending.
    pub fn pending(mut self) -> IndexEntry {
        self.pending = true;
        self
    }
}

/// Who a tail or part stripe belongs to (xattr `cyv.o`), for the sweeper.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerTag {
    pub bucket: String,
    pub key: String,
    pub tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<String>,
    pub created_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub key: String,
    pub upload: String,
    pub initiated_ms: u64,
    pub owner: String,
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_meta: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub number: i32,
    pub tag: String,
    pub size: u64,
    pub stripe: u64,
    pub etag: String,
    pub mtime_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<StoredChecksum>,
}

/// Encodes a record as JSON bytes.
pub fn encode<T: Serialize>(v: &T) -> bytes::Bytes {
    // Serializing these plain structs cannot fail; an empty value would be caught on decode.
    bytes::Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// Decodes a record, naming it in the error.
pub fn decode<T: for<'de> Deserialize<'de>>(what: &str, raw: &[u8]) -> Result<T> {
    serde_json::from_slice(raw).map_err(|e| GwError::CorruptRecord { what: what.to_string(), why: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        // Fixed values: a change here would strand every existing index entry.
        assert_eq!(shard_of("", 16), shard_of("", 16));
        assert_eq!(shard_of("photos/2024/a.jpg", 1), 0);
        let mut seen = [0u32; 8];
        for i in 0..8000 {
            seen[shard_of(&format!("key-{i}"), 8) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }

    #[test]
    fn fnv_matches_reference_vector() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c.
        assert_eq!(shard_of("a", u32::MAX), (0xaf63_dc4c_8601_ec8cu64 % u64::from(u32::MAX)) as u32);
    }

    #[test]
    fn meta_round_trips() {
        let m = ObjectMeta {
            size: 5,
            etag: "abc".into(),
            mtime_ms: 1,
            tag: "t".into(),
            layout: Layout::Striped { stripe: 4, count: 2 },
            headers: Headers { content_type: Some("text/plain".into()), ..Headers::default() },
            user_meta: BTreeMap::from([("a".into(), "b".into())]),
            tags: vec![],
            checksum: None,
        };
        let back: ObjectMeta = decode("m", &encode(&m)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, m);
        assert!(decode::<ObjectMeta>("m", b"{").is_err());
    }
}
