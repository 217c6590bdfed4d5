//! The Controller service: volumes and snapshots as RBD images (or files), made idempotent by
//! the journal. Each RPC's doc comment states the spec rule it keeps.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cyvault_proto::csi::v1 as pb;
use pb::controller_service_capability::rpc::Type as CapType;
use pb::volume_capability::AccessType;
use pb::volume_capability::access_mode::Mode;
use tonic::{Request, Response, Status};
use tracing::{info, instrument};

use crate::driver::Driver;
use crate::error::{CsiError, Result};
use crate::ids::{IdKind, ObjectId, new_uuid};
use crate::journal::{Journal, Record, State, now_ms};
use crate::placement::{CLUSTER_KEY, params};

/// Volumes without a requested size get 1 GiB; sizes round up to whole MiB.
pub const DEFAULT_SIZE: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// The largest volume this driver creates (64 TiB).
pub const MAX_SIZE: u64 = 64 << 40;
/// Journal updates retried this often when another writer changed the journal meanwhile.
const CAS_ATTEMPTS: usize = 16;

/// Before retry `attempt` (0: none) of a journal update: a random wait that doubles up to 64 ms,
/// so calls racing on the one journal object spread out instead of colliding again.
async fn backoff(attempt: usize) {
    if attempt == 0 {
        return;
    }
    let cap_ms = 1u64 << attempt.min(6);
    let ms = rand::random::<u64>() % (cap_ms + 1);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// The gRPC face of the controller.
#[derive(Clone, Debug)]
pub struct ControllerService {
    pub driver: Arc<Driver>,
}

/// Checks one capability: an access type and a mode this driver supports.
pub fn check_capability(cap: &pb::VolumeCapability) -> Result<()> {
    let mode = cap.access_mode.as_ref().map(|m| m.mode()).unwrap_or(Mode::Unknown);
    match cap.access_type.as_ref() {
        None => {
            return Err(CsiError::InvalidArgument("a volume capability has no access type (mount or block)".into()));
        }
        Some(AccessType::Mount(m)) => {
            if !m.fs_type.is_empty() && m.fs_type != "ext4" && m.fs_type != "xfs" {
                return Err(CsiError::InvalidArgument(format!(
                    "fs type {:?}: this driver formats ext4 or xfs",
                    m.fs_type
                )));
            }
        }
        Some(AccessType::Block(_)) => {}
    }
    match mode {
        Mode::Unknown => Err(CsiError::InvalidArgument("a volume capability has no access mode".into())),
        Mode::SingleNodeWriter
        | Mode::SingleNodeReaderOnly
        | Mode::SingleNodeSingleWriter
        | Mode::SingleNodeMultiWriter => Ok(()),
        Mode::MultiNodeReaderOnly => Ok(()),
        Mode::MultiNodeSingleWriter | Mode::MultiNodeMultiWriter => Err(CsiError::InvalidArgument(format!(
            "access mode {}: an RBD volume is written from one node at a time",
            mode.as_str_name()
        ))),
    }
}

fn check_capabilities(caps: &[pb::VolumeCapability]) -> Result<()> {
    if caps.is_empty() {
        return Err(CsiError::InvalidArgument("volume capabilities are missing".into()));
    }
    caps.iter().try_for_each(check_capability)
}

/// The size to create for a capacity range, or why none fits.
pub fn size_for(range: Option<&pb::CapacityRange>) -> Result<u64> {
    let (req, lim) = range.map_or((0, 0), |r| (r.required_bytes, r.limit_bytes));
    if req < 0 || lim < 0 {
        return Err(CsiError::InvalidArgument(format!("negative capacity: required {req}, limit {lim}")));
    }
    let (req, lim) = (req as u64, lim as u64);
    if lim > 0 && req > lim {
        return Err(CsiError::InvalidArgument(format!("required bytes {req} exceed the limit {lim}")));
    }
    let want = if req == 0 { if lim > 0 { lim.min(DEFAULT_SIZE) } else { DEFAULT_SIZE } } else { req };
    let mut size = want.div_ceil(MIB) * MIB;
    if lim > 0 && size > lim {
        size = lim / MIB * MIB;
        if size < req || size == 0 {
            return Err(CsiError::OutOfRange(format!("no whole-MiB size fits between {req} and {lim} bytes")));
        }
    }
    if size > MAX_SIZE {
        return Err(CsiError::OutOfRange(format!("{size} bytes is more than the {MAX_SIZE}-byte maximum")));
    }
    Ok(size)
}

fn fits(size: u64, range: Option<&pb::CapacityRange>) -> bool {
    let (req, lim) = range.map_or((0, 0), |r| (r.required_bytes, r.limit_bytes));
    size >= req.max(0) as u64 && (lim <= 0 || size <= lim as u64)
}

/// What makes two CreateVolume calls with one name the same call.
fn fingerprint(req: &pb::CreateVolumeRequest, source: Option<&str>) -> BTreeMap<String, String> {
    let mut f: BTreeMap<String, String> =
        req.parameters.iter().map(|(k, v)| (format!("param.{k}"), v.clone())).collect();
    let block = req.volume_capabilities.iter().any(|c| matches!(c.access_type, Some(AccessType::Block(_))));
    f.insert("access".into(), if block { "block" } else { "mount" }.into());
    if let Some(s) = source {
        f.insert("source".into(), s.to_owned());
    }
    f
}

fn source_id(src: Option<&pb::VolumeContentSource>) -> Result<Option<(IdKind, String)>> {
    use pb::volume_content_source::Type;
    match src.and_then(|s| s.r#type.as_ref()) {
        None => Ok(None),
        Some(Type::Snapshot(s)) if s.snapshot_id.is_empty() => {
            Err(CsiError::InvalidArgument("content source snapshot id is empty".into()))
        }
        Some(Type::Volume(v)) if v.volume_id.is_empty() => {
            Err(CsiError::InvalidArgument("content source volume id is empty".into()))
        }
        Some(Type::Snapshot(s)) => Ok(Some((IdKind::Snapshot, s.snapshot_id.clone()))),
        Some(Type::Volume(v)) => Ok(Some((IdKind::Volume, v.volume_id.clone()))),
    }
}

fn content_source(rec: &Record) -> Option<pb::VolumeContentSource> {
    use pb::volume_content_source::{SnapshotSource, Type, VolumeSource};
    let s = rec.source.as_ref()?;
    let t = if s.starts_with("cyv1:s:") {
        Type::Snapshot(SnapshotSource { snapshot_id: s.clone() })
    } else {
        Type::Volume(VolumeSource { volume_id: s.clone() })
    };
    Some(pb::VolumeContentSource { r#type: Some(t) })
}

/// The CSI form of a journal record.
pub fn volume_of(rec: &Record) -> pb::Volume {
    let mut ctx = HashMap::from([("pool".to_string(), rec.pool.clone())]);
    for key in [params::ATTACH, params::FS_TYPE] {
        if let Some(v) = rec.fingerprint.get(&format!("param.{key}")) {
            ctx.insert(key.to_string(), v.clone());
        }
    }
    pb::Volume {
        capacity_bytes: rec.size as i64,
        volume_id: rec.id.clone(),
        volume_context: ctx,
        content_source: content_source(rec),
        accessible_topology: rec
            .consumer
            .iter()
            .map(|c| pb::Topology { segments: HashMap::from([(CLUSTER_KEY.to_string(), c.clone())]) })
            .collect(),
    }
}

fn snapshot_of(rec: &Record) -> pb::Snapshot {
    pb::Snapshot {
        size_bytes: rec.size as i64,
        snapshot_id: rec.id.clone(),
        source_volume_id: rec.source.clone().unwrap_or_default(),
        creation_time: Some(prost_types::Timestamp {
            seconds: (rec.created_ms / 1000) as i64,
            nanos: ((rec.created_ms % 1000) * 1_000_000) as i32,
        }),
        ready_to_use: rec.state == State::Ready,
        group_snapshot_id: String::new(),
    }
}

fn image_features(params: &HashMap<String, String>) -> Result<Option<u64>> {
    use cyvault_store::rbd::features as f;
    let Some(list) = params.get(params::IMAGE_FEATURES).filter(|s| !s.trim().is_empty()) else { return Ok(None) };
    let mut bits = 0;
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        bits |= match name {
            "layering" => f::LAYERING,
            "exclusive-lock" => f::EXCLUSIVE_LOCK,
            "object-map" => f::OBJECT_MAP,
            "fast-diff" => f::FAST_DIFF,
            "deep-flatten" => f::DEEP_FLATTEN,
            other => {
                return Err(CsiError::InvalidArgument(format!(
                    "image feature {other:?} (use layering, exclusive-lock, object-map, fast-diff, deep-flatten)"
                )));
            }
        };
    }
    Ok(Some(bits | f::LAYERING))
}

impl ControllerService {
    fn d(&self) -> &Driver {
        &self.driver
    }

    /// Finds a ready volume by id; NOT_FOUND for unknown or malformed ids.
    async fn ready_volume(&self, id: &str) -> Result<Record> {
        let oid = ObjectId::parse(IdKind::Volume, id)?;
        match self.d().vols.by_uuid(&oid.uuid).await? {
            (_, Some(r)) if r.state == State::Ready => Ok(r),
            _ => Err(CsiError::NotFound(format!("volume {id}"))),
        }
    }

    async fn ready_snapshot(&self, id: &str) -> Result<Record> {
        let oid = ObjectId::parse(IdKind::Snapshot, id)?;
        match self.d().snaps.by_uuid(&oid.uuid).await? {
            (_, Some(r)) if r.state == State::Ready => Ok(r),
            _ => Err(CsiError::NotFound(format!("snapshot {id}"))),
        }
    }

    /// CreateVolume MUST be idempotent: the same name with compatible parameters returns the
    /// same volume; incompatible ones are ALREADY_EXISTS.
    pub async fn create_volume(&self, req: pb::CreateVolumeRequest) -> Result<pb::Volume> {
        if req.name.is_empty() {
            return Err(CsiError::InvalidArgument("the volume name is empty".into()));
        }
        check_capabilities(&req.volume_capabilities)?;
        let size = size_for(req.capacity_range.as_ref())?;
        let features = image_features(&req.parameters)?;
        let source = source_id(req.volume_content_source.as_ref())?;
        let fp = fingerprint(&req, source.as_ref().map(|s| s.1.as_str()));
        let _lock = self.driver.lock(format!("volume name {}", req.name))?;

        for attempt in 0..CAS_ATTEMPTS {
            backoff(attempt).await;
            let (version, existing) = self.d().vols.by_name(&req.name).await?;
            if let Some(rec) = existing {
                let same = rec.fingerprint == fp;
                match rec.state {
                    State::Ready if same && fits(rec.size, req.capacity_range.as_ref()) => return Ok(volume_of(&rec)),
                    State::Ready => {
                        return Err(CsiError::AlreadyExists(format!(
                            "volume {} exists with other parameters or a size ({} bytes) outside the range",
                            req.name, rec.size
                        )));
                    }
                    State::Creating if same && rec.size == size => return self.finish_create(rec, features).await,
                    // A create that never answered, with other parameters, or a delete that
                    // stopped half-way: roll it back and start over.
                    State::Creating | State::Deleting => {
                        self.d()
                            .volumes
                            .remove(&rec.pool, &image_of(&rec))
                            .await
                            .map_err(CsiError::store("remove image"))?;
                        self.d().vols.remove(version, &rec).await?;
                        continue;
                    }
                }
            }
            // New: choose the pool (a copy stays in its source's pool), record, then create.
            let (pool, consumer) = match &source {
                Some((kind, id)) => {
                    let src = match kind {
                        IdKind::Snapshot => self.ready_snapshot(id).await?,
                        IdKind::Volume => self.ready_volume(id).await?,
                    };
                    if src.size > size {
                        return Err(CsiError::OutOfRange(format!(
                            "the source {id} has {} bytes, more than the {size} requested",
                            src.size
                        )));
                    }
                    let consumer = if *kind == IdKind::Volume { src.consumer.clone() } else { None };
                    (src.pool, consumer.or_else(|| self.d().placement.as_ref().map(|p| p.default_consumer.clone())))
                }
                None => self.choose_pool(&req, size)?,
            };
            let uuid = new_uuid();
            let id = ObjectId::new(IdKind::Volume, &pool, &uuid)?;
            let rec = Record {
                name: req.name.clone(),
                id: id.to_string(),
                pool,
                uuid,
                size,
                state: State::Creating,
                fingerprint: fp.clone(),
                source: source.as_ref().map(|s| s.1.clone()),
                consumer,
                created_ms: now_ms(),
            };
            if self.d().vols.put(version, &rec).await? {
                return self.finish_create(rec, features).await;
            }
        }
        Err(CsiError::Aborted(format!("the journal kept changing while creating {}", req.name)))
    }

    fn choose_pool(&self, req: &pb::CreateVolumeRequest, size: u64) -> Result<(String, Option<String>)> {
        let Some(p) = &self.d().placement else {
            let pool = req.parameters.get(params::POOL).cloned().unwrap_or_else(|| self.d().default_pool.clone());
            return Ok((pool, None));
        };
        let segs = |t: &[pb::Topology]| t.iter().map(|t| t.segments.clone()).collect::<Vec<_>>();
        let (pref, reqs) = req
            .accessibility_requirements
            .as_ref()
            .map(|a| (segs(&a.preferred), segs(&a.requisite)))
            .unwrap_or_default();
        let placed = p.place(size, &pref, &reqs, &req.parameters)?;
        Ok((placed.pool, placed.consumer))
    }

    /// Creates the image of a `creating` record (or finds it made) and marks the record ready.
    async fn finish_create(&self, mut rec: Record, features: Option<u64>) -> Result<pb::Volume> {
        let image = image_of(&rec);
        match &rec.source {
            None => self.d().volumes.create(&rec.pool, &image, rec.size, features).await,
            Some(src) => {
                let kind = if src.starts_with("cyv1:s:") { IdKind::Snapshot } else { IdKind::Volume };
                let sid = ObjectId::parse(kind, src)?;
                self.d().volumes.copy(&rec.pool, &sid.image(), &image, rec.size).await
            }
        }
        .map_err(CsiError::store(format!("create image {}/{image}", rec.pool)))?;
        for attempt in 0..CAS_ATTEMPTS {
            backoff(attempt).await;
            let (version, current) = self.d().vols.by_name(&rec.name).await?;
            match current {
                Some(c) if c.uuid == rec.uuid && c.state == State::Ready => return Ok(volume_of(&c)),
                Some(c) if c.uuid == rec.uuid => {
                    rec.state = State::Ready;
                    if self.d().vols.put(version, &rec).await? {
                        info!(name = %rec.name, id = %rec.id, size = rec.size, "created volume");
                        return Ok(volume_of(&rec));
                    }
                }
                _ => {
                    return Err(CsiError::Aborted(format!(
                        "volume {} was changed by another call meanwhile",
                        rec.name
                    )));
                }
            }
        }
        Err(CsiError::Aborted(format!("the journal kept changing while creating {}", rec.name)))
    }

    /// DeleteVolume MUST be idempotent: an unknown volume is success.
    pub async fn delete_volume(&self, id: &str) -> Result<()> {
        if id.is_empty() {
            return Err(CsiError::InvalidArgument("the volume id is empty".into()));
        }
        let Ok(oid) = ObjectId::parse(IdKind::Volume, id) else { return Ok(()) };
        let _lock = self.driver.lock(format!("volume {id}"))?;
        for attempt in 0..CAS_ATTEMPTS {
            backoff(attempt).await;
            let (version, rec) = self.d().vols.by_uuid(&oid.uuid).await?;
            let Some(mut rec) = rec else {
                // No record: nothing of ours, except an image a lost journal write left.
                self.d().volumes.remove(&oid.pool, &oid.image()).await.map_err(CsiError::store("remove image"))?;
                return Ok(());
            };
            if self.d().volumes.in_use(&rec.pool, &image_of(&rec)).await.map_err(CsiError::store("list watchers"))? {
                return Err(CsiError::FailedPrecondition(format!(
                    "volume {id} is still attached somewhere (it has watchers)"
                )));
            }
            if rec.state != State::Deleting {
                rec.state = State::Deleting;
                if !self.d().vols.put(version, &rec).await? {
                    continue;
                }
                return self.finish_delete(rec).await;
            }
            return self.finish_delete(rec).await;
        }
        Err(CsiError::Aborted(format!("the journal kept changing while deleting {id}")))
    }

    async fn finish_delete(&self, rec: Record) -> Result<()> {
        self.d().volumes.remove(&rec.pool, &image_of(&rec)).await.map_err(CsiError::store(format!(
            "remove image {}/{}",
            rec.pool,
            image_of(&rec)
        )))?;
        remove_record(&self.d().vols, &rec).await?;
        info!(name = %rec.name, id = %rec.id, "deleted volume");
        Ok(())
    }

    /// CreateSnapshot MUST be idempotent; the same name for another source is ALREADY_EXISTS.
    pub async fn create_snapshot(&self, req: pb::CreateSnapshotRequest) -> Result<pb::Snapshot> {
        if req.name.is_empty() {
            return Err(CsiError::InvalidArgument("the snapshot name is empty".into()));
        }
        if req.source_volume_id.is_empty() {
            return Err(CsiError::InvalidArgument("the source volume id is empty".into()));
        }
        let _lock = self.driver.lock(format!("snapshot name {}", req.name))?;
        let fp = BTreeMap::from([("source".to_string(), req.source_volume_id.clone())]);
        for attempt in 0..CAS_ATTEMPTS {
            backoff(attempt).await;
            let (version, existing) = self.d().snaps.by_name(&req.name).await?;
            if let Some(rec) = existing {
                if rec.fingerprint != fp {
                    return Err(CsiError::AlreadyExists(format!(
                        "snapshot {} exists for another source volume ({})",
                        req.name,
                        rec.source.as_deref().unwrap_or("?")
                    )));
                }
                match rec.state {
                    State::Ready => return Ok(snapshot_of(&rec)),
                    State::Creating => return self.finish_snapshot(rec).await,
                    State::Deleting => {
                        self.d()
                            .volumes
                            .remove(&rec.pool, &image_of(&rec))
                            .await
                            .map_err(CsiError::store("remove image"))?;
                        self.d().snaps.remove(version, &rec).await?;
                        continue;
                    }
                }
            }
            let src = self.ready_volume(&req.source_volume_id).await?;
            let uuid = new_uuid();
            let id = ObjectId::new(IdKind::Snapshot, &src.pool, &uuid)?;
            let rec = Record {
                name: req.name.clone(),
                id: id.to_string(),
                pool: src.pool.clone(),
                uuid,
                size: src.size,
                state: State::Creating,
                fingerprint: fp.clone(),
                source: Some(src.id.clone()),
                consumer: src.consumer.clone(),
                created_ms: now_ms(),
            };
            if self.d().snaps.put(version, &rec).await? {
                return self.finish_snapshot(rec).await;
            }
        }
        Err(CsiError::Aborted(format!("the journal kept changing while snapshotting {}", req.name)))
    }

    async fn finish_snapshot(&self, mut rec: Record) -> Result<pb::Snapshot> {
        let src = rec.source.clone().unwrap_or_default();
        let sid = ObjectId::parse(IdKind::Volume, &src)?;
        let image = image_of(&rec);
        self.d()
            .volumes
            .copy(&rec.pool, &sid.image(), &image, 0)
            .await
            .map_err(CsiError::store(format!("snapshot {src} into {}/{image}", rec.pool)))?;
        for attempt in 0..CAS_ATTEMPTS {
            backoff(attempt).await;
            let (version, current) = self.d().snaps.by_name(&rec.name).await?;
            match current {
                Some(c) if c.uuid == rec.uuid && c.state == State::Ready => return Ok(snapshot_of(&c)),
                Some(c) if c.uuid == rec.uuid => {
                    rec.state = State::Ready;
                    if self.d().snaps.put(version, &rec).await? {
                        info!(name = %rec.name, id = %rec.id, source = %src, "created snapshot");
                        return Ok(snapshot_of(&rec));
                    }
                }
                _ => return Err(CsiError::Aborted(format!("snapshot {} was changed meanwhile", rec.name))),
            }
        }
        Err(CsiError::Aborted(format!("the journal kept changing while snapshotting {}", rec.name)))
    }

    /// DeleteSnapshot MUST be idempotent; volumes made from the snapshot are independent of it.
    pub async fn delete_snapshot(&self, id: &str) -> Result<()> {
        if id.is_empty() {
            return Err(CsiError::InvalidArgument("the snapshot id is empty".into()));
        }
        let Ok(oid) = ObjectId::parse(IdKind::Snapshot, id) else { return Ok(()) };
        let _lock = self.driver.lock(format!("snapshot {id}"))?;
        for attempt in 0..CAS_ATTEMPTS {
            backoff(attempt).await;
            let (version, rec) = self.d().snaps.by_uuid(&oid.uuid).await?;
            let Some(mut rec) = rec else {
                self.d().volumes.remove(&oid.pool, &oid.image()).await.map_err(CsiError::store("remove image"))?;
                return Ok(());
            };
            if rec.state != State::Deleting {
                rec.state = State::Deleting;
                if !self.d().snaps.put(version, &rec).await? {
                    continue;
                }
            }
            self.d().volumes.remove(&rec.pool, &image_of(&rec)).await.map_err(CsiError::store("remove image"))?;
            remove_record(&self.d().snaps, &rec).await?;
            info!(id, "deleted snapshot");
            return Ok(());
        }
        Err(CsiError::Aborted(format!("the journal kept changing while deleting {id}")))
    }

    /// ControllerExpandVolume: grows the image; the filesystem is grown by NodeExpandVolume.
    pub async fn expand(&self, req: pb::ControllerExpandVolumeRequest) -> Result<pb::ControllerExpandVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(CsiError::InvalidArgument("the volume id is empty".into()));
        }
        if req.capacity_range.is_none() {
            return Err(CsiError::InvalidArgument("the capacity range is missing".into()));
        }
        let size = size_for(req.capacity_range.as_ref())?;
        let _lock = self.driver.lock(format!("volume {}", req.volume_id))?;
        let block =
            matches!(req.volume_capability.as_ref().and_then(|c| c.access_type.as_ref()), Some(AccessType::Block(_)));
        for attempt in 0..CAS_ATTEMPTS {
            backoff(attempt).await;
            let oid = ObjectId::parse(IdKind::Volume, &req.volume_id)?;
            let (version, rec) = self.d().vols.by_uuid(&oid.uuid).await?;
            let Some(mut rec) = rec.filter(|r| r.state == State::Ready) else {
                return Err(CsiError::NotFound(format!("volume {}", req.volume_id)));
            };
            if size <= rec.size {
                return Ok(pb::ControllerExpandVolumeResponse {
                    capacity_bytes: rec.size as i64,
                    node_expansion_required: !block,
                });
            }
            self.d().volumes.resize(&rec.pool, &image_of(&rec), size).await.map_err(CsiError::store("resize image"))?;
            rec.size = size;
            if self.d().vols.put(version, &rec).await? {
                info!(id = %rec.id, size, "expanded volume");
                return Ok(pb::ControllerExpandVolumeResponse {
                    capacity_bytes: size as i64,
                    node_expansion_required: !block,
                });
            }
        }
        Err(CsiError::Aborted(format!("the journal kept changing while expanding {}", req.volume_id)))
    }
}

fn image_of(rec: &Record) -> String {
    let kind = if rec.id.starts_with("cyv1:s:") { IdKind::Snapshot } else { IdKind::Volume };
    ObjectId { kind, pool: rec.pool.clone(), uuid: rec.uuid.clone() }.image()
}

async fn remove_record(journal: &Journal, rec: &Record) -> Result<()> {
    for attempt in 0..CAS_ATTEMPTS {
        backoff(attempt).await;
        let (version, current) = journal.by_uuid(&rec.uuid).await?;
        if current.is_none() {
            return Ok(());
        }
        if journal.remove(version, rec).await? {
            return Ok(());
        }
    }
    Err(CsiError::Aborted(format!("the journal kept changing while removing {}", rec.name)))
}

/// A page token: the last uuid of the previous page (ABORTED when it is not one, as the spec
/// asks).
fn parse_token(token: &str) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(Some(token.to_owned()))
    } else {
        Err(CsiError::Aborted(format!("starting token {token:?} is not one this driver issued")))
    }
}

fn max_entries(n: i32) -> Result<usize> {
    match n {
        n if n < 0 => Err(CsiError::InvalidArgument(format!("max_entries {n} is negative"))),
        0 => Ok(1000),
        n => Ok(n as usize),
    }
}

type R<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::controller_server::Controller for ControllerService {
    #[instrument(skip_all, fields(name = %req.get_ref().name))]
    async fn create_volume(&self, req: Request<pb::CreateVolumeRequest>) -> R<pb::CreateVolumeResponse> {
        let volume = ControllerService::create_volume(self, req.into_inner()).await?;
        Ok(Response::new(pb::CreateVolumeResponse { volume: Some(volume) }))
    }

    #[instrument(skip_all, fields(id = %req.get_ref().volume_id))]
    async fn delete_volume(&self, req: Request<pb::DeleteVolumeRequest>) -> R<pb::DeleteVolumeResponse> {
        ControllerService::delete_volume(self, &req.get_ref().volume_id).await?;
        Ok(Response::new(pb::DeleteVolumeResponse {}))
    }

    async fn controller_publish_volume(
        &self,
        _req: Request<pb::ControllerPublishVolumeRequest>,
    ) -> R<pb::ControllerPublishVolumeResponse> {
        Err(CsiError::Unimplemented("ControllerPublishVolume: nodes attach volumes themselves".into()).into())
    }

    async fn controller_unpublish_volume(
        &self,
        _req: Request<pb::ControllerUnpublishVolumeRequest>,
    ) -> R<pb::ControllerUnpublishVolumeResponse> {
        Err(CsiError::Unimplemented("ControllerUnpublishVolume: nodes attach volumes themselves".into()).into())
    }

    async fn validate_volume_capabilities(
        &self,
        req: Request<pb::ValidateVolumeCapabilitiesRequest>,
    ) -> R<pb::ValidateVolumeCapabilitiesResponse> {
        let r = req.into_inner();
        if r.volume_id.is_empty() {
            return Err(CsiError::InvalidArgument("the volume id is empty".into()).into());
        }
        if r.volume_capabilities.is_empty() {
            return Err(CsiError::InvalidArgument("volume capabilities are missing".into()).into());
        }
        self.ready_volume(&r.volume_id).await?;
        let resp = match check_capabilities(&r.volume_capabilities) {
            Ok(()) => pb::ValidateVolumeCapabilitiesResponse {
                confirmed: Some(pb::validate_volume_capabilities_response::Confirmed {
                    volume_context: r.volume_context,
                    volume_capabilities: r.volume_capabilities,
                    parameters: r.parameters,
                    mutable_parameters: r.mutable_parameters,
                }),
                message: String::new(),
            },
            Err(e) => pb::ValidateVolumeCapabilitiesResponse { confirmed: None, message: e.to_string() },
        };
        Ok(Response::new(resp))
    }

    async fn list_volumes(&self, req: Request<pb::ListVolumesRequest>) -> R<pb::ListVolumesResponse> {
        let r = req.into_inner();
        let max = max_entries(r.max_entries)?;
        let after = parse_token(&r.starting_token)?;
        let (recs, more) = self.d().vols.list(after.as_deref(), max).await?;
        let next_token = if more { recs.last().map(|r| r.uuid.clone()).unwrap_or_default() } else { String::new() };
        let entries = recs
            .iter()
            .filter(|r| r.state == State::Ready)
            .map(|r| pb::list_volumes_response::Entry {
                volume: Some(volume_of(r)),
                status: Some(pb::list_volumes_response::VolumeStatus {
                    published_node_ids: vec![],
                    volume_condition: None,
                }),
            })
            .collect();
        Ok(Response::new(pb::ListVolumesResponse { entries, next_token }))
    }

    async fn get_capacity(&self, req: Request<pb::GetCapacityRequest>) -> R<pb::GetCapacityResponse> {
        let r = req.into_inner();
        if let Some(c) = r.volume_capabilities.iter().find_map(|c| check_capability(c).err()) {
            return Err(c.into());
        }
        let pool = match &self.d().placement {
            Some(p) => {
                let seg: Vec<_> = r.accessible_topology.iter().map(|t| t.segments.clone()).collect();
                match p.place(0, &seg, &[], &r.parameters) {
                    Ok(placed) => placed.pool,
                    // Nothing can be placed there: no capacity, which is an answer, not an error.
                    Err(CsiError::ResourceExhausted { .. }) => {
                        return Ok(Response::new(pb::GetCapacityResponse::default()));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => r.parameters.get(params::POOL).cloned().unwrap_or_else(|| self.d().default_pool.clone()),
        };
        let avail = self.d().volumes.available(&pool).await.map_err(CsiError::store("read pool capacity"))?;
        Ok(Response::new(pb::GetCapacityResponse {
            available_capacity: avail.min(i64::MAX as u64) as i64,
            maximum_volume_size: Some(MAX_SIZE.min(avail) as i64),
            minimum_volume_size: Some(MIB as i64),
        }))
    }

    async fn controller_get_capabilities(
        &self,
        _req: Request<pb::ControllerGetCapabilitiesRequest>,
    ) -> R<pb::ControllerGetCapabilitiesResponse> {
        let caps = [
            CapType::CreateDeleteVolume,
            CapType::ListVolumes,
            CapType::GetCapacity,
            CapType::CreateDeleteSnapshot,
            CapType::ListSnapshots,
            CapType::GetSnapshot,
            CapType::CloneVolume,
            CapType::ExpandVolume,
            CapType::GetVolume,
            CapType::VolumeCondition,
            CapType::SingleNodeMultiWriter,
        ];
        let capabilities = caps
            .into_iter()
            .map(|t| pb::ControllerServiceCapability {
                r#type: Some(pb::controller_service_capability::Type::Rpc(pb::controller_service_capability::Rpc {
                    r#type: t as i32,
                })),
            })
            .collect();
        Ok(Response::new(pb::ControllerGetCapabilitiesResponse { capabilities }))
    }

    #[instrument(skip_all, fields(name = %req.get_ref().name))]
    async fn create_snapshot(&self, req: Request<pb::CreateSnapshotRequest>) -> R<pb::CreateSnapshotResponse> {
        let snapshot = ControllerService::create_snapshot(self, req.into_inner()).await?;
        Ok(Response::new(pb::CreateSnapshotResponse { snapshot: Some(snapshot) }))
    }

    #[instrument(skip_all, fields(id = %req.get_ref().snapshot_id))]
    async fn delete_snapshot(&self, req: Request<pb::DeleteSnapshotRequest>) -> R<pb::DeleteSnapshotResponse> {
        ControllerService::delete_snapshot(self, &req.get_ref().snapshot_id).await?;
        Ok(Response::new(pb::DeleteSnapshotResponse {}))
    }

    async fn list_snapshots(&self, req: Request<pb::ListSnapshotsRequest>) -> R<pb::ListSnapshotsResponse> {
        let r = req.into_inner();
        let max = max_entries(r.max_entries)?;
        if !r.snapshot_id.is_empty() {
            let entries = match self.ready_snapshot(&r.snapshot_id).await {
                Ok(rec) => vec![pb::list_snapshots_response::Entry { snapshot: Some(snapshot_of(&rec)) }],
                Err(CsiError::NotFound(_) | CsiError::MalformedId(_)) => vec![],
                Err(e) => return Err(e.into()),
            };
            return Ok(Response::new(pb::ListSnapshotsResponse { entries, next_token: String::new() }));
        }
        let mut after = parse_token(&r.starting_token)?;
        let mut entries = Vec::new();
        // The token is the uuid of the last record looked at, so a page that fills in the middle
        // of a batch resumes right after it.
        let next_token = 'pages: loop {
            let (recs, more) = self.d().snaps.list(after.as_deref(), max).await?;
            let n = recs.len();
            for (i, rec) in recs.into_iter().enumerate() {
                after = Some(rec.uuid.clone());
                if rec.state == State::Ready
                    && (r.source_volume_id.is_empty() || rec.source.as_deref() == Some(r.source_volume_id.as_str()))
                {
                    entries.push(pb::list_snapshots_response::Entry { snapshot: Some(snapshot_of(&rec)) });
                }
                if entries.len() == max {
                    break 'pages if more || i + 1 < n { rec.uuid.clone() } else { String::new() };
                }
            }
            if !more {
                break String::new();
            }
        };
        Ok(Response::new(pb::ListSnapshotsResponse { entries, next_token }))
    }

    async fn get_snapshot(&self, req: Request<pb::GetSnapshotRequest>) -> R<pb::GetSnapshotResponse> {
        let r = req.into_inner();
        if r.snapshot_id.is_empty() {
            return Err(CsiError::InvalidArgument("the snapshot id is empty".into()).into());
        }
        let rec = self.ready_snapshot(&r.snapshot_id).await?;
        Ok(Response::new(pb::GetSnapshotResponse { snapshot: Some(snapshot_of(&rec)) }))
    }

    #[instrument(skip_all, fields(id = %req.get_ref().volume_id))]
    async fn controller_expand_volume(
        &self,
        req: Request<pb::ControllerExpandVolumeRequest>,
    ) -> R<pb::ControllerExpandVolumeResponse> {
        Ok(Response::new(self.expand(req.into_inner()).await?))
    }

    async fn controller_get_volume(
        &self,
        req: Request<pb::ControllerGetVolumeRequest>,
    ) -> R<pb::ControllerGetVolumeResponse> {
        let r = req.into_inner();
        if r.volume_id.is_empty() {
            return Err(CsiError::InvalidArgument("the volume id is empty".into()).into());
        }
        let rec = self.ready_volume(&r.volume_id).await?;
        let image = image_of(&rec);
        let condition = match self.d().volumes.size(&rec.pool, &image).await {
            Ok(Some(_)) => pb::VolumeCondition { abnormal: false, message: "image present".into() },
            Ok(None) => {
                pb::VolumeCondition { abnormal: true, message: format!("image {}/{image} is missing", rec.pool) }
            }
            Err(e) => pb::VolumeCondition { abnormal: true, message: format!("cannot check the image: {e}") },
        };
        Ok(Response::new(pb::ControllerGetVolumeResponse {
            volume: Some(volume_of(&rec)),
            status: Some(pb::controller_get_volume_response::VolumeStatus {
                published_node_ids: vec![],
                volume_condition: Some(condition),
            }),
        }))
    }

    async fn controller_modify_volume(
        &self,
        _req: Request<pb::ControllerModifyVolumeRequest>,
    ) -> R<pb::ControllerModifyVolumeResponse> {
        Err(CsiError::Unimplemented("ControllerModifyVolume".into()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(req: i64, lim: i64, expect: std::result::Result<u64, &str>) {
        let got =
            size_for(Some(&pb::CapacityRange { required_bytes: req, limit_bytes: lim })).map_err(|e| e.to_string());
        assert_eq!(got, expect.map_err(str::to_owned));
    }

    #[test]
    fn sizes() {
        check(0, 0, Ok(DEFAULT_SIZE));
        check(1, 0, Ok(MIB));
        check(MIB as i64 + 1, 0, Ok(2 * MIB));
        check(0, (10 * MIB) as i64, Ok(10 * MIB));
        check(5 * MIB as i64, 5 * MIB as i64, Ok(5 * MIB));
        check(
            MIB as i64 + 1,
            MIB as i64 + 100,
            Err("out of range: no whole-MiB size fits between 1048577 and 1048676 bytes"),
        );
        check(-1, 0, Err("invalid argument: negative capacity: required -1, limit 0"));
        check(10, 5, Err("invalid argument: required bytes 10 exceed the limit 5"));
        check(
            MAX_SIZE as i64 + 1,
            0,
            Err("out of range: 70368745226240 bytes is more than the 70368744177664-byte maximum"),
        );
    }
}
