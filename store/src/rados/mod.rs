//! The RADOS backend: the object-store API on a Ceph cluster through librados.
//!
//! Every object operation is one librados read or write op submitted with `rados_aio_*`; the
//! completion callback hands the result to the waiting task through a oneshot channel, so no
//! runtime worker ever blocks on the cluster. Only connecting, opening a pool and listing
//! objects have no async form in librados; they run on tokio's blocking pool.

mod ffi;
mod op;

use libc::{c_char, size_t};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString};
use std::ptr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use tracing::debug;

use crate::api::{
    BackendKind, Guard, ObjectPage, ObjectRef, ObjectStat, ObjectStore, OmapPage, OmapQuery, ReadRange, ReadReply,
    WriteOp, WriteStep, validate_key, validate_pool,
};
use crate::error::{Result, StoreError};
use op::{ReadOpBuilder, WriteOpBuilder};

pub(crate) use ffi::{rados_ioctx_t, rados_t};

/// How to reach a Ceph cluster.
#[derive(Clone, Debug)]
pub struct RadosConfig {
    /// Path of a ceph.conf that names the monitors and the keyring.
    pub conf_path: String,
    /// Client name without the `client.` prefix (e.g. `admin`).
    pub id: String,
    /// How long librados waits for an OSD or monitor before an op fails with `Timeout`.
    pub op_timeout: Duration,
    /// Further configuration options (`rados_conf_set`) applied after the ceph.conf and before
    /// connecting, e.g. `("rbd_cache", "false")`; librbd reads its options from the same place.
    pub options: Vec<(String, String)>,
}

impl RadosConfig {
    pub fn new(conf_path: impl Into<String>, id: impl Into<String>) -> Self {
        RadosConfig {
            conf_path: conf_path.into(),
            id: id.into(),
            op_timeout: Duration::from_secs(30),
            options: Vec::new(),
        }
    }

    /// Adds a configuration option (see [`RadosConfig::options`]).
    pub fn with_option(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.push((name.into(), value.into()));
        self
    }
}

/// A connected librados cluster handle. Shut down when the last reference (including those held
/// by open pools and in-flight operations) goes away.
#[derive(Debug)]
pub struct Cluster {
    raw: rados_t,
}

// SAFETY: a rados_t handle is documented as thread-safe once connected: librados serializes
// access internally, and we never call rados_conf_set after connecting.
unsafe impl Send for Cluster {}
// SAFETY: see the Send impl; shared references only issue thread-safe librados calls.
unsafe impl Sync for Cluster {}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: raw came from a successful rados_create2 and is shut down exactly once, after
        // every IoCtx (each holds an Arc<Cluster>) has been destroyed.
        unsafe { ffi::rados_shutdown(self.raw) };
    }
}

impl Cluster {
    /// Connects (blocking; call from a blocking context).
    pub fn connect_blocking(config: &RadosConfig) -> Result<Arc<Cluster>> {
        ffi::load()?;
        let name = cstring(&format!("client.{}", config.id), "client name")?;
        let cluster_name = cstring("ceph", "cluster name")?;
        let path = cstring(&config.conf_path, "ceph.conf path")?;
        let mut raw: rados_t = ptr::null_mut();
        // SAFETY: out-pointer to a local; the name strings outlive the call.
        let rc = unsafe { ffi::rados_create2(&mut raw, cluster_name.as_ptr(), name.as_ptr(), 0) };
        if rc < 0 {
            return Err(StoreError::from_errno(rc, "create librados handle"));
        }
        // From here on `cluster` owns raw and shuts it down on every exit path.
        let cluster = Cluster { raw };
        // SAFETY: raw is a fresh, unconnected handle; path is a valid C string.
        let rc = unsafe { ffi::rados_conf_read_file(cluster.raw, path.as_ptr()) };
        if rc < 0 {
            return Err(StoreError::from_errno(rc, format!("read ceph config {}", config.conf_path)));
        }
        let secs = config.op_timeout.as_secs().max(1).to_string();
        for opt in ["rados_osd_op_timeout", "rados_mon_op_timeout", "client_mount_timeout"] {
            cluster.conf_set(opt, &secs)?;
        }
        for (name, value) in &config.options {
            cluster.conf_set(name, value)?;
        }
        // SAFETY: configured, unconnected handle.
        let rc = unsafe { ffi::rados_connect(cluster.raw) };
        if rc < 0 {
            let e = StoreError::from_errno(
                rc,
                format!("connect to ceph with {} as client.{}", config.conf_path, config.id),
            );
            return Err(match e {
                StoreError::Timeout(m) | StoreError::NotFound(m) => StoreError::Unavailable(m),
                e => e,
            });
        }
        Ok(Arc::new(cluster))
    }

    /// Connects on tokio's blocking pool.
    pub async fn connect(config: &RadosConfig) -> Result<Arc<Cluster>> {
        let config = config.clone();
        blocking(move || Cluster::connect_blocking(&config)).await
    }

    fn conf_set(&self, option: &str, value: &str) -> Result<()> {
        let o = cstring(option, "config option")?;
        let v = cstring(value, "config value")?;
        // SAFETY: handle not yet connected; strings valid for the call.
        let rc = unsafe { ffi::rados_conf_set(self.raw, o.as_ptr(), v.as_ptr()) };
        if rc < 0 { Err(StoreError::from_errno(rc, format!("set {option}"))) } else { Ok(()) }
    }

    /// Opens a pool and namespace (blocking).
    pub fn open_blocking(self: &Arc<Self>, pool: &str, namespace: &str) -> Result<Arc<IoCtx>> {
        validate_pool(pool, namespace)?;
        let p = cstring(pool, "pool name")?;
        let mut raw: rados_ioctx_t = ptr::null_mut();
        // SAFETY: connected handle; p valid for the call; out-pointer to a local.
        let rc = unsafe { ffi::rados_ioctx_create(self.raw, p.as_ptr(), &mut raw) };
        if rc < 0 {
            return Err(StoreError::from_errno(rc, format!("open pool {pool}")));
        }
        let io = IoCtx { raw, _cluster: Arc::clone(self), pool: pool.to_owned(), namespace: namespace.to_owned() };
        if !namespace.is_empty() {
            let ns = cstring(namespace, "namespace")?;
            // SAFETY: io.raw is the ioctx just created and not yet shared with any thread.
            unsafe { ffi::rados_ioctx_set_namespace(io.raw, ns.as_ptr()) };
        }
        Ok(Arc::new(io))
    }

    /// librados version as (major, minor, extra); `LibraryMissing` when it is not installed.
    pub fn librados_version() -> Result<(i32, i32, i32)> {
        ffi::load()?;
        let (mut a, mut b, mut c) = (0, 0, 0);
        // SAFETY: loaded just above; three out-pointers to locals.
        unsafe { ffi::rados_version(&mut a, &mut b, &mut c) };
        Ok((a, b, c))
    }

    /// Bytes used and stored objects of a pool (blocking), like `ceph df`.
    pub fn pool_usage_blocking(self: &Arc<Self>, pool: &str) -> Result<PoolUsage> {
        let io = self.open_blocking(pool, "")?;
        let mut st = ffi::rados_pool_stat_t::default();
        // SAFETY: valid ioctx; out-pointer to a local of the declared layout.
        let rc = unsafe { ffi::rados_ioctx_pool_stat(io.raw, &mut st) };
        if rc < 0 {
            return Err(StoreError::from_errno(rc, format!("stat pool {pool}")));
        }
        let mut cs = ffi::rados_cluster_stat_t::default();
        // SAFETY: connected handle; out-pointer to a local.
        let rc = unsafe { ffi::rados_cluster_stat(self.raw, &mut cs) };
        if rc < 0 {
            return Err(StoreError::from_errno(rc, "stat cluster"));
        }
        Ok(PoolUsage {
            stored_bytes: st.num_user_bytes.max(st.num_bytes),
            objects: st.num_objects,
            cluster_total_bytes: cs.kb.saturating_mul(1024),
            cluster_avail_bytes: cs.kb_avail.saturating_mul(1024),
        })
    }
}

impl Cluster {
    /// Runs a monitor command (JSON, as `ceph` sends them) and returns its output (blocking).
    pub fn mon_command_blocking(&self, command: &str) -> Result<Vec<u8>> {
        let cmd = cstring(command, "monitor command")?;
        let mut cmds = [cmd.as_ptr()];
        let (mut out, mut out_len): (*mut c_char, size_t) = (ptr::null_mut(), 0);
        let (mut status, mut status_len): (*mut c_char, size_t) = (ptr::null_mut(), 0);
        // SAFETY: connected handle; one valid C string in `cmds` for the call; no input buffer;
        // out-pointers to locals. librados allocates the output buffers, freed below.
        let rc = unsafe {
            ffi::rados_mon_command(
                self.raw,
                cmds.as_mut_ptr(),
                1,
                ptr::null(),
                0,
                &mut out,
                &mut out_len,
                &mut status,
                &mut status_len,
            )
        };
        let take = |buf: *mut c_char, len: size_t| -> Vec<u8> {
            if buf.is_null() {
                return Vec::new();
            }
            // SAFETY: librados returned `len` readable bytes at `buf`; copied before the free.
            let v = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) }.to_vec();
            // SAFETY: `buf` came from librados and is freed exactly once.
            unsafe { ffi::rados_buffer_free(buf) };
            v
        };
        let out = take(out, out_len);
        let status = take(status, status_len);
        if rc < 0 {
            let why = String::from_utf8_lossy(&status).trim().to_string();
            return Err(StoreError::from_errno(rc, format!("monitor command {command}: {why}")));
        }
        Ok(out)
    }

    /// Per-pool usage as `ceph df` reports it (blocking).
    pub fn df_blocking(&self) -> Result<Vec<PoolDf>> {
        let out = self.mon_command_blocking(r#"{"prefix": "df", "format": "json"}"#)?;
        parse_df(&out)
    }

    /// Per-pool usage as `ceph df` reports it.
    pub async fn df(self: &Arc<Self>) -> Result<Vec<PoolDf>> {
        let c = Arc::clone(self);
        blocking(move || c.df_blocking()).await
    }
}

/// One pool's line of `ceph df`: what it stores and how much more it can take, both in user
/// bytes (replication and EC overhead already accounted for by Ceph).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolDf {
    pub name: String,
    pub stored_bytes: u64,
    pub max_avail_bytes: u64,
    pub objects: u64,
}

impl PoolDf {
    /// Usable capacity: what is stored plus what still fits.
    pub fn capacity_bytes(&self) -> u64 {
        self.stored_bytes.saturating_add(self.max_avail_bytes)
    }
}

/// Parses the JSON of `ceph df -f json`.
pub fn parse_df(json: &[u8]) -> Result<Vec<PoolDf>> {
    #[derive(serde::Deserialize)]
    struct Df {
        pools: Vec<DfPool>,
    }
    #[derive(serde::Deserialize)]
    struct DfPool {
        name: String,
        stats: DfStats,
    }
    #[derive(serde::Deserialize)]
    struct DfStats {
        #[serde(default)]
        stored: Option<u64>,
        #[serde(default)]
        bytes_used: u64,
        max_avail: u64,
        #[serde(default)]
        objects: u64,
    }
    let df: Df = serde_json::from_slice(json).map_err(|e| StoreError::corrupt("ceph df output", e.to_string()))?;
    Ok(df
        .pools
        .into_iter()
        .map(|p| PoolDf {
            name: p.name,
            // Octopus and later report `stored` (user bytes); older ones only `bytes_used`.
            stored_bytes: p.stats.stored.unwrap_or(p.stats.bytes_used),
            max_avail_bytes: p.stats.max_avail,
            objects: p.stats.objects,
        })
        .collect())
}

/// What a pool holds, and what the cluster has left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolUsage {
    pub stored_bytes: u64,
    pub objects: u64,
    pub cluster_total_bytes: u64,
    pub cluster_avail_bytes: u64,
}

/// An open pool + namespace.
#[derive(Debug)]
pub struct IoCtx {
    raw: rados_ioctx_t,
    _cluster: Arc<Cluster>,
    pool: String,
    namespace: String,
}

// SAFETY: librados ioctx handles may be used from several threads at once for object operations
// (IoCtxImpl locks internally); the namespace is set once before the handle is shared.
unsafe impl Send for IoCtx {}
// SAFETY: see the Send impl.
unsafe impl Sync for IoCtx {}

impl Drop for IoCtx {
    fn drop(&mut self) {
        // SAFETY: raw came from rados_ioctx_create; in-flight ops hold an Arc<IoCtx>, so none is
        // pending when the last reference drops.
        unsafe { ffi::rados_ioctx_destroy(self.raw) };
    }
}

impl IoCtx {
    pub(crate) fn raw(&self) -> rados_ioctx_t {
        self.raw
    }
    pub fn pool(&self) -> &str {
        &self.pool
    }
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

/// The object-store API on RADOS.
#[derive(Debug)]
pub struct RadosStore {
    cluster: Arc<Cluster>,
    /// Open pool handles by pool, then namespace (nested so lookups need no allocation).
    pools: Mutex<HashMap<String, HashMap<String, Arc<IoCtx>>>>,
}

impl RadosStore {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        RadosStore { cluster, pools: Mutex::new(HashMap::new()) }
    }

    /// Connects and returns a store.
    pub async fn connect(config: &RadosConfig) -> Result<Self> {
        Ok(RadosStore::new(Cluster::connect(config).await?))
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The open handle of a pool + namespace, opened on first use.
    pub async fn ioctx(&self, pool: &str, namespace: &str) -> Result<Arc<IoCtx>> {
        if let Some(io) = self.pools.lock().map_err(poisoned)?.get(pool).and_then(|p| p.get(namespace)) {
            return Ok(Arc::clone(io));
        }
        let cluster = Arc::clone(&self.cluster);
        let (p, n) = (pool.to_owned(), namespace.to_owned());
        let io = blocking(move || cluster.open_blocking(&p, &n)).await?;
        let mut pools = self.pools.lock().map_err(poisoned)?;
        let by_ns = pools.entry(pool.to_owned()).or_default();
        Ok(Arc::clone(by_ns.entry(namespace.to_owned()).or_insert(io)))
    }

    async fn io_for(&self, obj: &ObjectRef) -> Result<(Arc<IoCtx>, CString)> {
        obj.validate()?;
        let oid = cstring(&obj.name, "object name")?;
        Ok((self.ioctx(&obj.pool, &obj.namespace).await?, oid))
    }

    /// Reads `len` bytes at `offset` with the version they belong to. The first op is a plain
    /// read (one OSD op, like `rados bench`); only when it comes back full do further ops fetch
    /// the rest, each guarded by the first op's version so the result is never a mix.
    async fn read_range(&self, obj: &ObjectRef, offset: u64, len: u64) -> Result<ReadReply> {
        self.read_range_x(obj, offset, len, false).await.map(|(r, _)| r)
    }

    /// `read_range`, optionally fetching all xattrs in the first op (same version as the bytes).
    async fn read_range_x(
        &self,
        obj: &ObjectRef,
        offset: u64,
        len: u64,
        with_xattrs: bool,
    ) -> Result<(ReadReply, BTreeMap<String, Bytes>)> {
        const FIRST: u64 = 64 * 1024;
        const FIRST_WITH_XATTRS: u64 = 16 * 1024 * 1024;
        const CHUNK: u64 = 64 * 1024 * 1024;
        let (io, oid) = self.io_for(obj).await?;
        let fail = |rv: i32| StoreError::from_errno(rv, format!("read {obj}"));
        if len == 0 {
            // (A zero-length read means "everything" to librados; stat gives existence and version.)
            let mut op = ReadOpBuilder::new();
            op.stat();
            if with_xattrs {
                op.xattrs();
            }
            let out = op.submit(&io, &oid).await.map_err(fail)?;
            return Ok((ReadReply { data: Bytes::new(), version: out.version }, out.xattrs.unwrap_or_default()));
        }
        'retry: for _ in 0..8 {
            // With xattrs (object heads: metadata plus up to a few MiB) one op reads everything
            // asked for; plain reads start small so a large `len` on a small object costs little.
            let first = len.min(if with_xattrs { FIRST_WITH_XATTRS } else { FIRST });
            let (mut data, version, xattrs) = if with_xattrs {
                let mut op = ReadOpBuilder::new();
                op.xattrs();
                op.read(offset, first);
                let out = op.submit(&io, &oid).await.map_err(fail)?;
                let mut data = out.data.unwrap_or_default();
                if data.capacity() > 2 * data.len() + FIRST as usize {
                    // Do not keep a large, mostly empty buffer alive for a small object.
                    data = data.as_slice().to_vec();
                }
                (data, out.version, out.xattrs.unwrap_or_default())
            } else {
                let (d, v) = op::plain_read(&io, &oid, offset, first as usize).await.map_err(fail)?;
                (d, v, BTreeMap::new())
            };
            let mut asked = first;
            let mut pos = offset.saturating_add(data.len() as u64);
            let end = offset.saturating_add(len);
            while data.len() as u64 == asked && pos < end {
                asked = (end - pos).min(CHUNK);
                let mut op = ReadOpBuilder::new();
                op.assert_version(version);
                op.read(pos, asked);
                match op.submit(&io, &oid).await {
                    Ok(more) => {
                        let more = more.data.unwrap_or_default();
                        pos += more.len() as u64;
                        let short = (more.len() as u64) < asked;
                        data.extend_from_slice(&more);
                        if short {
                            break;
                        }
                    }
                    // The object changed between the ops: start over for a consistent read.
                    Err(rv) if rv == -libc::ERANGE || rv == -libc::EOVERFLOW => continue 'retry,
                    Err(rv) => return Err(fail(rv)),
                }
            }
            return Ok((ReadReply { data: Bytes::from(data), version }, xattrs));
        }
        Err(StoreError::Conflict(format!("read {obj}: the object kept changing during the read")))
    }
}

#[async_trait]
impl ObjectStore for RadosStore {
    fn kind(&self) -> BackendKind {
        BackendKind::Rados
    }

    async fn read(&self, obj: &ObjectRef, range: ReadRange) -> Result<ReadReply> {
        match range {
            ReadRange::Full => self.read_range(obj, 0, u64::MAX).await,
            ReadRange::Range { offset, len } => self.read_range(obj, offset, len).await,
        }
    }

    async fn read_with_xattrs(
        &self,
        obj: &ObjectRef,
        range: ReadRange,
    ) -> Result<(ReadReply, BTreeMap<String, Bytes>)> {
        match range {
            ReadRange::Full => self.read_range_x(obj, 0, u64::MAX, true).await,
            ReadRange::Range { offset, len } => self.read_range_x(obj, offset, len, true).await,
        }
    }

    async fn stat(&self, obj: &ObjectRef) -> Result<ObjectStat> {
        let (io, oid) = self.io_for(obj).await?;
        let mut op = ReadOpBuilder::new();
        op.stat();
        let out = op.submit(&io, &oid).await.map_err(|rv| StoreError::from_errno(rv, format!("stat {obj}")))?;
        let (size, mtime) = out.stat.ok_or_else(|| StoreError::corrupt("rados stat reply", "missing stat"))?;
        Ok(ObjectStat { size, mtime: UNIX_EPOCH + Duration::from_secs(mtime.max(0) as u64), version: out.version })
    }

    async fn xattr_get(&self, obj: &ObjectRef, name: &str) -> Result<Bytes> {
        validate_key("xattr name", name)?;
        let mut all = self.xattr_list(obj).await?;
        all.remove(name).ok_or_else(|| StoreError::NotFound(format!("xattr {name:?} of {obj}")))
    }

    async fn xattr_list(&self, obj: &ObjectRef) -> Result<BTreeMap<String, Bytes>> {
        let (io, oid) = self.io_for(obj).await?;
        let mut op = ReadOpBuilder::new();
        op.xattrs();
        let out =
            op.submit(&io, &oid).await.map_err(|rv| StoreError::from_errno(rv, format!("list xattrs of {obj}")))?;
        Ok(out.xattrs.unwrap_or_default())
    }

    async fn omap_get(&self, obj: &ObjectRef, keys: &[String]) -> Result<BTreeMap<String, Bytes>> {
        for k in keys {
            validate_key("omap key", k)?;
        }
        let (io, oid) = self.io_for(obj).await?;
        let mut op = ReadOpBuilder::new();
        op.omap_get_by_keys(keys)?;
        let out =
            op.submit(&io, &oid).await.map_err(|rv| StoreError::from_errno(rv, format!("get omap keys of {obj}")))?;
        Ok(out.omap.map(|(entries, _)| entries.into_iter().collect()).unwrap_or_default())
    }

    async fn omap_list(&self, obj: &ObjectRef, query: &OmapQuery) -> Result<OmapPage> {
        let (io, oid) = self.io_for(obj).await?;
        let mut op = ReadOpBuilder::new();
        op.omap_list(query.start_after.as_deref(), query.prefix.as_deref(), query.max)?;
        let out = op.submit(&io, &oid).await.map_err(|rv| StoreError::from_errno(rv, format!("list omap of {obj}")))?;
        let (entries, more) = out.omap.unwrap_or_default();
        Ok(OmapPage { entries, more })
    }

    async fn list_objects(&self, pool: &str, namespace: &str, start: Option<&str>, max: usize) -> Result<ObjectPage> {
        let io = self.ioctx(pool, namespace).await?;
        let start = start.map(ListToken::parse).transpose()?;
        blocking(move || list_blocking(&io, start, max)).await
    }

    async fn execute(&self, obj: &ObjectRef, op: WriteOp) -> Result<u64> {
        op.validate()?;
        let (io, oid) = self.io_for(obj).await?;
        let mut w = WriteOpBuilder::new();
        match op.guard {
            Guard::None => {}
            Guard::CreateExclusive => w.create_exclusive(),
            Guard::MustExist => w.assert_exists(),
            Guard::Version(v) => {
                w.assert_exists();
                w.assert_version(v);
            }
        }
        for step in &op.steps {
            match step {
                WriteStep::WriteFull(data) => w.write_full(data),
                WriteStep::Write { offset, data } => w.write(*offset, data),
                WriteStep::Truncate(size) => w.truncate(*size),
                WriteStep::SetXattr { name, value } => w.set_xattr(name, value)?,
                WriteStep::RemoveXattr(name) => w.remove_xattr(name)?,
                WriteStep::OmapSet(entries) => w.omap_set(entries)?,
                WriteStep::OmapRemove(keys) => w.omap_remove(keys)?,
                WriteStep::OmapClear => w.omap_clear(),
                WriteStep::OmapCmp { key, value } => w.omap_cmp(key, value),
                WriteStep::Remove => w.remove(),
            }
        }
        // librados copied every buffer into the op: free ours now rather than after the reply.
        let (steps, guard) = (op.steps.len(), op.guard);
        drop(op);
        match w.submit(&io, &oid).await {
            Ok(version) => {
                debug!(object = %obj, version, steps, "rados write op applied");
                Ok(version)
            }
            Err(rv) if matches!(guard, Guard::Version(_)) && (rv == -libc::ERANGE || rv == -libc::EOVERFLOW) => {
                Err(StoreError::Conflict(format!("{obj} is no longer at version {}", guard_version(guard))))
            }
            Err(rv) if rv == -libc::EEXIST => Err(StoreError::AlreadyExists(format!("{obj}"))),
            Err(rv) if rv == -libc::ECANCELED => Err(StoreError::Conflict(format!("{obj}: an omap comparison failed"))),
            Err(rv) => Err(StoreError::from_errno(rv, format!("write {obj}"))),
        }
    }
}

fn guard_version(g: Guard) -> u64 {
    match g {
        Guard::Version(v) => v,
        _ => 0,
    }
}

/// Page token of a RADOS listing: the PG hash position and how many names of that PG were
/// already returned. Encoded as `r1:<pg>:<skip>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ListToken {
    pg: u32,
    skip: u64,
}

impl ListToken {
    fn parse(s: &str) -> Result<ListToken> {
        let bad = || StoreError::InvalidArgument(format!("list token {s:?} is not a RADOS listing token"));
        let rest = s.strip_prefix("r1:").ok_or_else(bad)?;
        let (pg, skip) = rest.split_once(':').ok_or_else(bad)?;
        Ok(ListToken { pg: pg.parse().map_err(|_| bad())?, skip: skip.parse().map_err(|_| bad())? })
    }
    fn encode(self) -> String {
        format!("r1:{}:{}", self.pg, self.skip)
    }
}

fn list_blocking(io: &IoCtx, start: Option<ListToken>, max: usize) -> Result<ObjectPage> {
    let mut ctx: ffi::rados_list_ctx_t = ptr::null_mut();
    // SAFETY: valid ioctx; out-pointer to a local.
    let rc = unsafe { ffi::rados_nobjects_list_open(io.raw, &mut ctx) };
    if rc < 0 {
        return Err(StoreError::from_errno(rc, format!("list objects of pool {}", io.pool)));
    }
    let guard = ListCtx(ctx);
    let mut names = Vec::new();
    let (mut pg, mut in_pg) = (0u32, 0u64);
    if let Some(t) = start {
        // SAFETY: open list context.
        pg = unsafe { ffi::rados_nobjects_list_seek(guard.0, t.pg) };
    }
    let mut to_skip = start.map_or(0, |t| t.skip);
    loop {
        let mut entry: *const libc::c_char = ptr::null();
        let mut entry_len: libc::size_t = 0;
        // SAFETY: open list context; out-pointers to locals; key/nspace outputs are optional (NULL).
        let rc = unsafe {
            ffi::rados_nobjects_list_next2(
                guard.0,
                &mut entry,
                ptr::null_mut(),
                ptr::null_mut(),
                &mut entry_len,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if rc == -libc::ENOENT {
            return Ok(ObjectPage { names, next: None });
        }
        if rc < 0 {
            return Err(StoreError::from_errno(rc, format!("list objects of pool {}", io.pool)));
        }
        // SAFETY: open list context.
        let pos = unsafe { ffi::rados_nobjects_list_get_pg_hash_position(guard.0) };
        if pos != pg {
            pg = pos;
            in_pg = 0;
            to_skip = 0;
        }
        if to_skip > 0 {
            to_skip -= 1;
            in_pg += 1;
            continue;
        }
        if names.len() == max {
            return Ok(ObjectPage { names, next: Some(ListToken { pg, skip: in_pg }.encode()) });
        }
        // SAFETY: librados returned entry_len valid bytes at entry, alive until the next call.
        let raw = unsafe { std::slice::from_raw_parts(entry.cast::<u8>(), entry_len) };
        names.push(String::from_utf8_lossy(raw).into_owned());
        in_pg += 1;
    }
}

struct ListCtx(ffi::rados_list_ctx_t);

impl Drop for ListCtx {
    fn drop(&mut self) {
        // SAFETY: opened by rados_nobjects_list_open and closed once.
        unsafe { ffi::rados_nobjects_list_close(self.0) };
    }
}

pub(crate) fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| StoreError::InvalidArgument(format!("{what} contains a NUL byte")))
}

pub(crate) fn lossy(c: &CStr) -> String {
    c.to_string_lossy().into_owned()
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Unavailable("rados pool table lock poisoned by an earlier panic".into())
}

/// Runs blocking librados work on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("blocking librados task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_tokens_round_trip() {
        let t = ListToken { pg: 7, skip: 12 };
        assert_eq!(ListToken::parse(&t.encode()).ok(), Some(t));
        assert!(ListToken::parse("l1:abc").is_err());
        assert!(ListToken::parse("r1:x:1").is_err());
    }
}

#[cfg(test)]
mod df_tests {
    use super::*;

    #[test]
    fn parses_ceph_df_json() {
        // Trimmed from `ceph df -f json` of Pacific 16.2.15.
        let json = br#"{"stats":{"total_bytes":32212254720},"stats_by_class":{},"pools":[
            {"name":"device_health_metrics","id":1,"stats":{"stored":0,"objects":0,"kb_used":0,"bytes_used":0,"percent_used":0,"max_avail":10128437248}},
            {"name":"cyvault","id":2,"stats":{"stored":40960,"objects":12,"kb_used":120,"bytes_used":122880,"percent_used":0.0000121,"max_avail":10128437248}}]}"#;
        let df = parse_df(json).unwrap_or_default();
        assert_eq!(df.len(), 2);
        assert_eq!(
            df[1],
            PoolDf { name: "cyvault".into(), stored_bytes: 40960, max_avail_bytes: 10128437248, objects: 12 }
        );
        assert_eq!(df[1].capacity_bytes(), 40960 + 10128437248);
        assert!(parse_df(b"{\"pools\": 3}").is_err());
    }
}
