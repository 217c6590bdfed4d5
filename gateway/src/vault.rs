//! The S3 core: S3 semantics on top of any [`ObjectStore`], with no HTTP in sight.
//!
//! Operations live in files named after them (`put_object.rs`, `list_objects.rs`, …) as
//! `impl Vault` blocks; the s3s adapter (`s3.rs`) only translates.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cyvault_store::{DynStore, Guard, ObjectRef, OmapQuery, ReadRange, StoreError, WriteOp};
use tracing::info;

use crate::error::{GwError, Result};
use crate::layout::{self, BucketRecord, KeyRecord, LAYOUT_VERSION, META_OBJECT};

/// Tunables of the S3 core (the `[s3]` and `[backend]` tables of the config).
#[derive(Clone, Debug)]
pub struct VaultOptions {
    pub pool: String,
    pub namespace: String,
    /// Bytes per stripe: a PUT up to this size is one write op.
    pub stripe_size: u64,
    /// Index shards of new buckets.
    pub index_shards: u32,
    /// How long bucket and key lookups are cached (other gateways' changes show up after this).
    pub cache_ttl: Duration,
    /// Stripe writes in flight per upload (memory bound: (this + 1) × stripe_size).
    pub write_depth: usize,
    /// Stripe reads ahead per download.
    pub read_ahead: usize,
    /// Largest single PUT.
    pub max_put_size: u64,
}

impl Default for VaultOptions {
    fn default() -> Self {
        VaultOptions {
            pool: "cyvault".into(),
            namespace: String::new(),
            stripe_size: 4 << 20,
            index_shards: 4,
            cache_ttl: Duration::from_secs(5),
            write_depth: 3,
            read_ahead: 2,
            max_put_size: 5 << 30,
        }
    }
}

/// The S3 core. Cheap to share (`Arc<Vault>`).
pub struct Vault {
    pub(crate) store: DynStore,
    pub(crate) opts: VaultOptions,
    buckets: Mutex<HashMap<String, (Instant, Option<BucketRecord>)>>,
    keys: Mutex<HashMap<String, (Instant, KeyRecord)>>,
    pub(crate) batches: crate::batch::OmapBatcher,
    /// Chooses new buckets' data pools; without it every bucket's data stays in `opts.pool`.
    pub(crate) placement: Option<crate::placement::BucketPlacement>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("opts", &self.opts).finish_non_exhaustive()
    }
}

impl Vault {
    /// Opens the S3 state in `opts.pool`/`opts.namespace`, writing the layout version on first
    /// use and refusing a newer one.
    pub async fn open(store: DynStore, opts: VaultOptions) -> Result<Vault> {
        if opts.stripe_size < 64 * 1024 || opts.index_shards == 0 {
            return Err(GwError::InvalidArgument("stripe_size must be ≥ 64 KiB and index_shards ≥ 1".into()));
        }
        let vault = Vault {
            store,
            opts,
            buckets: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            batches: Default::default(),
            placement: None,
        };
        let meta = vault.obj(META_OBJECT);
        match vault.store.omap_get(&meta, &["format".to_string()]).await {
            Ok(m) if m.contains_key("format") => {
                let raw = m.get("format").cloned().unwrap_or_default();
                let v: u32 = String::from_utf8_lossy(&raw).parse().unwrap_or(0);
                if v != LAYOUT_VERSION {
                    return Err(GwError::Store(StoreError::UnsupportedVersion {
                        what: "S3 layout in this pool".into(),
                        found: v,
                        supported: LAYOUT_VERSION,
                    }));
                }
            }
            Ok(_) | Err(StoreError::NotFound(_)) => {
                let op = WriteOp::new().omap_set_one("format", Bytes::from(LAYOUT_VERSION.to_string()));
                vault.store.execute(&meta, op).await?;
                info!(pool = %vault.opts.pool, namespace = %vault.opts.namespace, "initialized S3 layout {LAYOUT_VERSION}");
            }
            Err(e) => return Err(e.into()),
        }
        Ok(vault)
    }

    /// A vault on a store whose layout is already initialized (no version check: for tests that
    /// wrap a store in faults after opening it once).
    pub fn open_existing(store: DynStore, opts: VaultOptions) -> Vault {
        Vault {
            store,
            opts,
            buckets: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            batches: Default::default(),
            placement: None,
        }
    }

    /// Lets the placement engine choose new buckets' data pools.
    pub fn with_placement(mut self, placement: crate::placement::BucketPlacement) -> Vault {
        self.placement = Some(placement);
        self
    }

    pub fn placement(&self) -> Option<&crate::placement::BucketPlacement> {
        self.placement.as_ref()
    }

    pub fn options(&self) -> &VaultOptions {
        &self.opts
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    /// An object of the gateway's own pool (records, indexes, upload lists).
    pub(crate) fn obj(&self, name: impl Into<String>) -> ObjectRef {
        ObjectRef::new(self.opts.pool.clone(), self.opts.namespace.clone(), name)
    }

    /// The pool holding a bucket's data (heads, tails, part stripes).
    pub fn data_pool<'a>(&'a self, b: &'a BucketRecord) -> &'a str {
        b.data_pool.as_deref().unwrap_or(&self.opts.pool)
    }

    /// A data object of a bucket.
    pub(crate) fn data_obj(&self, b: &BucketRecord, name: impl Into<String>) -> ObjectRef {
        self.data_obj_in(self.data_pool(b), name)
    }

    /// A data object in a given pool.
    pub(crate) fn data_obj_in(&self, pool: &str, name: impl Into<String>) -> ObjectRef {
        ObjectRef::new(pool.to_owned(), self.opts.namespace.clone(), name)
    }

    /// The bucket record (cached for `cache_ttl`), `None` when there is no such bucket.
    pub(crate) async fn bucket_record(&self, name: &str) -> Result<Option<BucketRecord>> {
        if let Ok(cache) = self.buckets.lock()
            && let Some((at, rec)) = cache.get(name)
            && at.elapsed() < self.opts.cache_ttl
        {
            return Ok(rec.clone());
        }
        let rec = self.bucket_record_uncached(name).await?;
        if let Ok(mut cache) = self.buckets.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(name.to_string(), (Instant::now(), rec.clone()));
        }
        Ok(rec)
    }

    pub(crate) async fn bucket_record_uncached(&self, name: &str) -> Result<Option<BucketRecord>> {
        let got = match self.store.omap_get(&self.obj(layout::BUCKETS_OBJECT), &[name.to_string()]).await {
            Ok(m) => m,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        got.get(name).map(|raw| layout::decode::<BucketRecord>("bucket record", raw)).transpose()
    }

    pub(crate) fn forget_bucket(&self, name: &str) {
        if let Ok(mut cache) = self.buckets.lock() {
            cache.remove(name);
        }
    }

    /// The bucket, which `user` must own.
    pub async fn bucket_for(&self, user: &str, name: &str) -> Result<BucketRecord> {
        match self.bucket_record(name).await? {
            None => Err(GwError::NoSuchBucket(name.to_string())),
            Some(b) if b.owner != user => Err(GwError::AccessDenied(format!("the bucket {name:?} is not yours"))),
            Some(b) => Ok(b),
        }
    }

    /// The key record of an access key (cached for `cache_ttl`).
    pub async fn key_record(&self, access_key: &str) -> Result<Option<KeyRecord>> {
        if let Ok(cache) = self.keys.lock()
            && let Some((at, rec)) = cache.get(access_key)
            && at.elapsed() < self.opts.cache_ttl
        {
            return Ok(Some(rec.clone()));
        }
        let rec = self.key_record_uncached(access_key).await?;
        if let (Some(r), Ok(mut cache)) = (&rec, self.keys.lock()) {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(access_key.to_string(), (Instant::now(), r.clone()));
        }
        Ok(rec)
    }

    pub(crate) fn forget_key(&self, access_key: &str) {
        if let Ok(mut cache) = self.keys.lock() {
            cache.remove(access_key);
        }
    }

    /// Every omap entry of `name` (with `prefix`), in key order, read 1,000 at a time; a missing
    /// object has none.
    pub(crate) async fn omap_all(&self, name: &str, prefix: Option<&str>) -> Result<Vec<(String, Bytes)>> {
        let obj = self.obj(name);
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let q = OmapQuery { start_after: after.clone(), prefix: prefix.map(str::to_string), max: 1000 };
            let page = match self.store.omap_list(&obj, &q).await {
                Ok(p) => p,
                Err(StoreError::NotFound(_)) => return Ok(out),
                Err(e) => return Err(e.into()),
            };
            after = page.entries.last().map(|(k, _)| k.clone());
            out.extend(page.entries);
            if !page.more {
                return Ok(out);
            }
        }
    }

    /// Reads an omap-holding object's version and the values of `keys`, for a CAS update.
    /// Version `None` means the object does not exist yet.
    pub(crate) async fn read_for_update(
        &self,
        obj: &ObjectRef,
        keys: &[String],
    ) -> Result<(Option<u64>, HashMap<String, Bytes>)> {
        let version = match self.store.read(obj, ReadRange::Range { offset: 0, len: 0 }).await {
            Ok(r) => r.version,
            Err(StoreError::NotFound(_)) => return Ok((None, HashMap::new())),
            Err(e) => return Err(e.into()),
        };
        let vals = match self.store.omap_get(obj, keys).await {
            Ok(m) => m.into_iter().collect(),
            Err(StoreError::NotFound(_)) => return Ok((None, HashMap::new())),
            Err(e) => return Err(e.into()),
        };
        Ok((Some(version), vals))
    }

    /// Applies `op` guarded by the version from `read_for_update` (create-exclusive when the
    /// object did not exist). `Ok(false)` means someone else won the race: read again.
    pub(crate) async fn try_cas(&self, obj: &ObjectRef, version: Option<u64>, op: WriteOp) -> Result<bool> {
        let guard = match version {
            Some(v) => Guard::Version(v),
            None => Guard::CreateExclusive,
        };
        match self.store.execute(obj, op.guard(guard)).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_) | StoreError::AlreadyExists(_) | StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// How many times a CAS loop retries before giving up with SlowDown.
pub(crate) const CAS_ATTEMPTS: usize = 64;

pub(crate) fn cas_exhausted(what: &str) -> GwError {
    GwError::Store(StoreError::Conflict(format!("{what}: too many concurrent updates, retry")))
}
