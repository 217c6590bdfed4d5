//! RBD images and RADOS objects: the jobs of [`super::workload`] through librbd's and
//! librados's asynchronous APIs, from user space (no kernel RBD), fed by the same drivers and
//! measured into the same statistics as the io_uring engine.
//!
//! Each job runs on its own thread with a current-thread tokio runtime. Up to `iodepth`
//! operations are in flight at once; a new one is handed to librbd / librados as soon as one
//! completes. An operation's latency runs from right before the librbd or librados call to the
//! moment its completion wakes the job: there is no separate submission step to leave out, so
//! the completion latency and the total latency are the same number (fio's rbd engine, which
//! also calls `rbd_aio_*`, starts its `clat` after that call returns, a few microseconds later).
//!
//! - RBD: `rbd_aio_read` / `rbd_aio_write` through the store's image wrapper; an fsync job
//!   follows every write with `rbd_aio_flush` and counts the write when the flush completes.
//! - RADOS: byte `o` of the region is byte `o % object_size` of object
//!   `PREFIX.{o / object_size:08}`; reads are `rados_aio_read`, writes one-step write ops,
//!   through the storage API (`RadosStore`) the gateway uses. RADOS acknowledges a write once
//!   it is durable on every replica, so an fsync job needs no separate flush and every write
//!   counts as synced.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use bytes::Bytes;
use cyvault_store::rbd::{CreateOptions, Image, Rbd};
use cyvault_store::{ObjectRef, ObjectStore, RadosStore, ReadRange, StoreError};
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::engine::{Completion, Driver, IoError, MAX_BLOCK_SIZE, MAX_DEPTH, OpKind, OpRequest, RunStats, splitmix64};
use super::report::{JobInfo, JobStats, TargetKind};
use super::workload::{Connections, JobSpec, Layout, Progress, Stops, TargetSpec, drive, fill_driver};

/// The block size of the writes that lay a target out.
const FILL_BLOCK: usize = 4 << 20;
/// Writes in flight while laying a target out.
const FILL_DEPTH: usize = 8;

/// The name of RADOS object `index` of a target with `prefix`.
pub fn rados_object_name(prefix: &str, index: u64) -> String {
    format!("{prefix}.{index:08}")
}

enum Backend {
    Rbd(Image),
    Rados { store: RadosStore, pool: String, prefix: String, object_size: u64 },
}

/// What one operation did: bytes transferred, the data read, whether a flush acknowledged it.
struct Done {
    done: usize,
    data: Bytes,
    synced: bool,
}

impl Backend {
    async fn read(&self, offset: u64, len: usize) -> Result<Bytes, StoreError> {
        match self {
            Backend::Rbd(image) => image.read(offset, len as u64).await,
            Backend::Rados { store, pool, prefix, object_size } => {
                let obj = ObjectRef::new(pool.clone(), "", rados_object_name(prefix, offset / object_size));
                let range = ReadRange::Range { offset: offset % object_size, len: len as u64 };
                Ok(store.read(&obj, range).await?.data)
            }
        }
    }

    async fn write(&self, offset: u64, data: Bytes) -> Result<(), StoreError> {
        match self {
            Backend::Rbd(image) => image.write(offset, data).await,
            Backend::Rados { store, pool, prefix, object_size } => {
                let obj = ObjectRef::new(pool.clone(), "", rados_object_name(prefix, offset / object_size));
                store.write(&obj, offset % object_size, data).await.map(|_| ())
            }
        }
    }

    async fn op(&self, req: &OpRequest, data: Option<Bytes>) -> Result<Done, (&'static str, StoreError)> {
        match (req.kind, data) {
            (OpKind::Read, _) => {
                let data = self.read(req.offset, req.len).await.map_err(|e| ("read", e))?;
                Ok(Done { done: data.len(), data, synced: false })
            }
            (OpKind::Write, data) => {
                let data = data.unwrap_or_default();
                let len = data.len();
                self.write(req.offset, data).await.map_err(|e| ("write", e))?;
                let synced = match self {
                    Backend::Rbd(image) if req.sync => {
                        image.flush().await.map_err(|e| ("flush", e))?;
                        true
                    }
                    Backend::Rbd(_) => false,
                    // Acknowledged means durable on every replica.
                    Backend::Rados { .. } => req.sync,
                };
                Ok(Done { done: len, data: Bytes::new(), synced })
            }
        }
    }
}

/// One job's client loop over one RBD image or one set of RADOS objects.
struct AioEngine {
    rt: tokio::runtime::Runtime,
    backend: Backend,
    target: String,
    depth: usize,
    block_size: usize,
    /// Pseudo-random bytes: what writes carry unless the driver fills them (verify does).
    template: Vec<u8>,
}

impl AioEngine {
    fn open(
        target: &TargetSpec,
        conns: &Connections,
        depth: usize,
        block_size: usize,
        create_len: Option<u64>,
    ) -> Result<(AioEngine, u64, bool), IoError> {
        if depth == 0 || depth > MAX_DEPTH {
            return Err(IoError::Invalid(format!("queue depth {depth} is not in 1..={MAX_DEPTH}")));
        }
        if block_size == 0 || block_size > MAX_BLOCK_SIZE {
            return Err(IoError::Invalid(format!("block size {block_size} is not in 1..={MAX_BLOCK_SIZE}")));
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|err| IoError::Target {
            what: "start a runtime for",
            path: target.as_path_buf(),
            err,
        })?;
        let cluster = Arc::clone(conns.cluster(target)?);
        let name = target.to_string();
        let ceph = |what: &'static str| {
            let target = name.clone();
            move |err| IoError::Ceph { what, target, err }
        };
        let (backend, size, created) = match target {
            TargetSpec::Rbd { pool, image, .. } => {
                let (image, size, created) = rt.block_on(async {
                    let c = Arc::clone(&cluster);
                    let p = pool.clone();
                    let io = tokio::task::spawn_blocking(move || c.open_blocking(&p, ""))
                        .await
                        .map_err(|_| IoError::Panicked(format!("open pool {pool}")))?
                        .map_err(ceph("open the pool of"))?;
                    let rbd = Rbd::new(io).map_err(ceph("load librbd for"))?;
                    let mut created = false;
                    if let Some(len) = create_len {
                        let len = len.next_multiple_of(4096);
                        match rbd.info(image).await {
                            Ok(info) if info.size < len => rbd.resize(image, len).await.map_err(ceph("grow"))?,
                            Ok(_) => {}
                            Err(StoreError::NotFound(_)) => {
                                rbd.create(image, &CreateOptions::new(len)).await.map_err(ceph("create"))?;
                                created = true;
                            }
                            Err(e) => return Err(ceph("look up")(e)),
                        }
                    }
                    let img = rbd.open(image).await.map_err(|e| match e {
                        StoreError::NotFound(_) => IoError::Invalid(format!(
                            "{name} does not exist: create it (rbd create) or run with --create and a --size"
                        )),
                        e => ceph("open")(e),
                    })?;
                    let size = img.size().await.map_err(ceph("get the size of"))?;
                    Ok::<_, IoError>((img, size, created))
                })?;
                (Backend::Rbd(image), size, created)
            }
            TargetSpec::Rados { pool, prefix, object_size, .. } => {
                if block_size as u64 > *object_size || !object_size.is_multiple_of(block_size as u64) {
                    return Err(IoError::Invalid(format!(
                        "{name}: the block size ({block_size}) must divide the object size ({object_size}), so that \
                         no operation spans two objects"
                    )));
                }
                let store = RadosStore::new(cluster);
                let backend =
                    Backend::Rados { store, pool: pool.clone(), prefix: prefix.clone(), object_size: *object_size };
                // Objects have no fixed size: the region is what the job says.
                (backend, u64::MAX, false)
            }
            TargetSpec::Path(_) => {
                return Err(IoError::Invalid(format!("internal: {name} is not an RBD or RADOS target")));
            }
        };
        let mut template = vec![0u8; block_size];
        let mut seed = 0x5851_f42d_4c95_7f2d_u64 ^ block_size as u64;
        for chunk in template.chunks_mut(8) {
            seed = splitmix64(seed);
            chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
        }
        Ok((AioEngine { rt, backend, target: name, depth, block_size, template }, size, created))
    }

    fn run(&mut self, driver: &mut dyn Driver) -> Result<RunStats, IoError> {
        let AioEngine { rt, backend, target, depth, block_size, template } = self;
        rt.block_on(run_loop(backend, driver, *depth, *block_size, template, target))
    }

    fn close(self) -> Result<(), IoError> {
        let AioEngine { rt, backend, target, .. } = self;
        match backend {
            Backend::Rbd(image) => {
                rt.block_on(image.close()).map_err(|err| IoError::Ceph { what: "close", target, err })
            }
            Backend::Rados { .. } => Ok(()),
        }
    }
}

async fn run_loop(
    backend: &Backend,
    driver: &mut dyn Driver,
    depth: usize,
    block_size: usize,
    template: &[u8],
    target: &str,
) -> Result<RunStats, IoError> {
    let mut stats = RunStats::default();
    let mut inflight = FuturesUnordered::new();
    let mut exhausted = false;
    let mut failure: Option<IoError> = None;
    loop {
        while failure.is_none() && !exhausted && inflight.len() < depth {
            let Some(req) = driver.next_op(Instant::now()) else {
                exhausted = true;
                break;
            };
            if req.len == 0 || req.len > block_size {
                failure = Some(IoError::Invalid(format!(
                    "an operation of {} bytes does not fit the engine's {block_size}-byte blocks",
                    req.len
                )));
                break;
            }
            let data = (req.kind == OpKind::Write).then(|| {
                let mut buf = template[..req.len].to_vec();
                driver.fill(&req, &mut buf);
                Bytes::from(buf)
            });
            inflight.push(async move {
                let queued = Instant::now();
                let result = backend.op(&req, data).await;
                (req, queued, Instant::now(), result)
            });
        }
        let Some((req, queued, completed, result)) = inflight.next().await else { break };
        match result {
            Ok(d) => {
                let c = Completion {
                    kind: req.kind,
                    offset: req.offset,
                    requested: req.len,
                    done: d.done,
                    synced: d.synced,
                    queued,
                    submitted: queued,
                    completed,
                };
                if d.done == 0 && req.kind == OpKind::Write {
                    failure.get_or_insert(IoError::NoProgress { offset: req.offset, target: target.into() });
                    continue;
                }
                stats.completed += 1;
                if c.is_short() {
                    stats.short += 1;
                }
                if let Err(e) = driver.complete(&c, &d.data)
                    && failure.is_none()
                {
                    failure = Some(e);
                }
            }
            Err((what, err)) => {
                let target = format!("{target} at offset {} ({} bytes)", req.offset, req.len);
                let err = match err {
                    StoreError::NotFound(m) if matches!(backend, Backend::Rados { .. }) => IoError::Invalid(format!(
                        "{m}: the object is missing; lay the objects out first (--create with --size)"
                    )),
                    err => IoError::Ceph { what, target, err },
                };
                failure.get_or_insert(err);
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}

/// Runs one job on an RBD image or on RADOS objects (the target must exist, see
/// [`super::prepare_targets`]).
pub(crate) fn run_one(
    spec: &JobSpec,
    stops: Stops<'_>,
    progress: &Progress,
    conns: &Connections,
) -> Result<(JobInfo, JobStats), IoError> {
    let (kind, fixed) = match &spec.target {
        TargetSpec::Rbd { .. } => (TargetKind::Rbd, true),
        TargetSpec::Rados { .. } => (TargetKind::Rados, false),
        TargetSpec::Path(_) => return Err(IoError::Invalid("internal: a path is not an RBD or RADOS target".into())),
    };
    if kind == TargetKind::Rados && spec.size.is_none() {
        return Err(IoError::Invalid(format!(
            "{}: a RADOS target needs a size (the objects are size / object size)",
            spec.name
        )));
    }
    let (mut engine, size, _) = AioEngine::open(&spec.target, conns, spec.iodepth, spec.block_size, None)?;
    let region = spec.region(size, fixed)?;
    let info = spec.info(kind, region);
    let stats = drive(spec, region, stops, progress, &mut |d| engine.run(d));
    let closed = engine.close();
    let stats = stats?;
    closed?;
    Ok((info, stats))
}

/// Creates and lays out an RBD image or a set of RADOS objects for the jobs that asked.
pub(crate) fn prepare(
    target: &TargetSpec,
    layout: Layout,
    conns: &Connections,
    stop: &AtomicBool,
    progress: &Progress,
) -> Result<(), IoError> {
    match target {
        TargetSpec::Rbd { .. } => {
            let (mut engine, size, created) = AioEngine::open(target, conns, FILL_DEPTH, FILL_BLOCK, Some(layout.end))?;
            // A fresh image reads as zeros without touching an OSD: write it out first when a
            // job reads it. An image that existed keeps its data.
            let filled = if created && layout.reads {
                engine.run(&mut fill_driver(size.min(layout.end.next_multiple_of(4096)), FILL_BLOCK, stop, progress))
            } else {
                Ok(RunStats::default())
            };
            let closed = engine.close();
            filled?;
            closed
        }
        TargetSpec::Rados { pool, prefix, object_size, .. } => {
            let object_size = *object_size;
            let block = usize::try_from(object_size).unwrap_or(usize::MAX).min(MAX_BLOCK_SIZE);
            if !layout.reads {
                return Ok(());
            }
            let (mut engine, _, _) = AioEngine::open(target, conns, FILL_DEPTH, block, None)?;
            let objects = layout.end.div_ceil(object_size);
            // Only the objects that are missing or short.
            let Backend::Rados { store, .. } = &engine.backend else {
                return Err(IoError::Invalid("internal: rados target with an rbd engine".into()));
            };
            let missing: Vec<u64> = engine.rt.block_on(async {
                let mut missing = Vec::new();
                for i in 0..objects {
                    let obj = ObjectRef::new(pool.clone(), "", rados_object_name(prefix, i));
                    match store.stat(&obj).await {
                        Ok(st) if st.size >= object_size => {}
                        Ok(_) | Err(StoreError::NotFound(_)) => missing.push(i),
                        Err(err) => {
                            return Err(IoError::Ceph { what: "stat", target: format!("{pool}/{}", obj.name), err });
                        }
                    }
                }
                Ok(missing)
            })?;
            let mut fill = ObjectFill { missing: &missing, next: 0, object_size, stop, progress };
            engine.run(&mut fill).map(|_| ())
        }
        TargetSpec::Path(_) => Err(IoError::Invalid("internal: a path is not an RBD or RADOS target".into())),
    }
}

/// Writes the listed RADOS objects in full.
struct ObjectFill<'a> {
    missing: &'a [u64],
    next: usize,
    object_size: u64,
    stop: &'a AtomicBool,
    progress: &'a Progress,
}

impl Driver for ObjectFill<'_> {
    fn next_op(&mut self, _now: Instant) -> Option<OpRequest> {
        if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let i = *self.missing.get(self.next)?;
        self.next += 1;
        let len = usize::try_from(self.object_size).unwrap_or(MAX_BLOCK_SIZE).min(MAX_BLOCK_SIZE);
        Some(OpRequest { kind: OpKind::Write, offset: i * self.object_size, len, sync: false })
    }

    fn complete(&mut self, c: &Completion, _data: &[u8]) -> Result<(), IoError> {
        self.progress.add_prefill(c.done as u64);
        Ok(())
    }
}
