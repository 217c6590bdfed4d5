//! The Node service: attach a volume (loop device over its file, or over a FUSE file served
//! from librbd; krbd / rbd-nbd on nodes whose kernel has them), format it only when blank, mount
//! it at the staging path, bind it into pods, grow it, and report its usage. Every call is
//! idempotent, and a call that fails leaves no mount or device behind.
//!
//! What a node staged is written to `STATE_DIR/staged/<uuid>.json` so Unstage can undo it after a
//! restart. A FUSE attachment lives in this process: if the node plugin restarts, its FUSE
//! mounts go away with it and the next Stage attaches again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cyvault_proto::csi::v1 as pb;
use pb::node_service_capability::rpc::Type as NodeCap;
use pb::volume_capability::AccessType;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};
use tracing::{info, instrument, warn};

use crate::controller::check_capability;
use crate::driver::{Backing, Driver};
use crate::error::{CsiError, Result};
use crate::ids::{IdKind, ObjectId};
use crate::node::attach::{FuseAttachment, RbdMapSpec};
use crate::node::fuse::BlockSource;
use crate::node::fuse::RbdSource;
use crate::node::loopdev::{self, LoopOptions};
use crate::node::mount::{self, FsType};
use crate::node::{NodeError, attach};
use crate::placement::params;

/// How a staged volume is attached, persisted per volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    pub volume_id: String,
    pub staging_path: PathBuf,
    /// The block device (a loop device, /dev/rbdN or /dev/nbdN).
    pub device: PathBuf,
    /// `file`, `fuse`, `krbd` or `rbd-nbd`.
    pub transport: String,
    /// The FUSE mount directory, for `fuse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuse_dir: Option<PathBuf>,
    pub block: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_type: Option<String>,
}

#[derive(Debug)]
pub struct NodeService {
    driver: Arc<Driver>,
    /// FUSE servers (with their loop devices and images) of the volumes this process attached,
    /// by uuid.
    fuse: Mutex<HashMap<String, (FuseAttachment, Arc<RbdSource>)>>,
}

fn node_err(context: &str) -> impl FnOnce(NodeError) -> CsiError + '_ {
    move |e| match e {
        NodeError::InvalidArgument(m) => CsiError::InvalidArgument(format!("{context}: {m}")),
        NodeError::NotFound(m) => CsiError::NotFound(format!("{context}: {m}")),
        NodeError::FilesystemMismatch { .. } => CsiError::FailedPrecondition(format!("{context}: {e}")),
        other => CsiError::Node(format!("{context}: {other}")),
    }
}

fn required<'a>(what: &str, v: &'a str) -> Result<&'a str> {
    if v.is_empty() { Err(CsiError::InvalidArgument(format!("{what} is empty"))) } else { Ok(v) }
}

fn path_arg(what: &str, v: &str) -> Result<PathBuf> {
    crate::node::check_path(what, Path::new(required(what, v)?)).map_err(node_err(what))
}

impl NodeService {
    pub fn new(driver: Arc<Driver>) -> NodeService {
        NodeService { driver, fuse: Mutex::new(HashMap::new()) }
    }

    fn state_file(&self, uuid: &str) -> PathBuf {
        self.driver.node.state_dir.join("staged").join(format!("{uuid}.json"))
    }

    fn load(&self, uuid: &str) -> Result<Option<Staged>> {
        match std::fs::read(self.state_file(uuid)) {
            Ok(raw) => serde_json::from_slice(&raw)
                .map(Some)
                .map_err(|e| CsiError::Internal(format!("unreadable node state for {uuid}: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CsiError::Internal(format!("read node state for {uuid}: {e}"))),
        }
    }

    fn save(&self, uuid: &str, s: &Staged) -> Result<()> {
        let path = self.state_file(uuid);
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(s).map_err(std::io::Error::other)?)?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| CsiError::Internal(format!("write node state {}: {e}", path.display())))
    }

    fn forget(&self, uuid: &str) -> Result<()> {
        match std::fs::remove_file(self.state_file(uuid)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CsiError::Internal(format!("remove node state for {uuid}: {e}"))),
        }
    }

    /// Attaches the volume's image as a block device.
    async fn attach(&self, id: &ObjectId, transport: &str) -> Result<Staged> {
        let image = id.image();
        let mut staged = Staged {
            volume_id: id.to_string(),
            staging_path: PathBuf::new(),
            device: PathBuf::new(),
            transport: transport.to_owned(),
            fuse_dir: None,
            block: false,
            fs_type: None,
        };
        match &self.driver.backing {
            Backing::Files(files) => {
                let file = files.path(&id.pool, &image);
                if !file.exists() {
                    return Err(CsiError::NotFound(format!("volume {id}")));
                }
                staged.transport = "file".into();
                staged.device =
                    match loopdev::find_by_backing_file(&file).await.map_err(node_err("find loop device"))?.first() {
                        Some(dev) => dev.clone(),
                        None => loopdev::attach(&file, LoopOptions { read_only: false, direct_io: true })
                            .await
                            .map_err(node_err("attach loop device"))?,
                    };
            }
            Backing::Rados { store, ceph_conf, ceph_id, .. } => match transport {
                "fuse" => {
                    let dir = self.driver.node.state_dir.join("fuse").join(&id.uuid);
                    if let Some(dev) = self.live_fuse_device(&id.uuid)? {
                        staged.device = dev;
                    } else {
                        // A FUSE mount (and loop device) left by an earlier process is dead:
                        // clear it first.
                        attach::detach_stale_fuse(&dir, "disk")
                            .await
                            .map_err(node_err("clear a stale FUSE attachment"))?;
                        let io = store.ioctx(&id.pool, "").await.map_err(CsiError::store("open the image's pool"))?;
                        let rbd = cyvault_store::rbd::Rbd::new(io).map_err(CsiError::store("load librbd"))?;
                        let img = rbd.open(&image).await.map_err(|e| match e {
                            cyvault_store::StoreError::NotFound(_) => CsiError::NotFound(format!("volume {id}")),
                            e => CsiError::store("open the image")(e),
                        })?;
                        let source = Arc::new(RbdSource::new(img).map_err(node_err("serve the image"))?);
                        let a = match attach::attach_fuse(source.clone(), &dir, "disk", false).await {
                            Ok(a) => a,
                            Err(e) => {
                                let _ = source.close().await;
                                return Err(node_err("attach the image through FUSE")(e));
                            }
                        };
                        staged.device = a.device().to_path_buf();
                        self.fuse
                            .lock()
                            .map_err(|_| CsiError::Internal("fuse table poisoned".into()))?
                            .insert(id.uuid.clone(), (a, source));
                    }
                    staged.fuse_dir = Some(dir);
                }
                "krbd" => {
                    staged.device = attach::attach_krbd(&RbdMapSpec::new(&id.pool, &image, ceph_conf, ceph_id))
                        .await
                        .map_err(node_err("map the image with krbd"))?;
                }
                "rbd-nbd" => {
                    staged.device = attach::attach_nbd(&RbdMapSpec::new(&id.pool, &image, ceph_conf, ceph_id))
                        .await
                        .map_err(node_err("map the image with rbd-nbd"))?;
                }
                other => {
                    return Err(CsiError::InvalidArgument(format!("attach {other:?}: use fuse, krbd or rbd-nbd")));
                }
            },
        }
        Ok(staged)
    }

    /// The loop device over a FUSE file this process still serves, if any.
    fn live_fuse_device(&self, uuid: &str) -> Result<Option<PathBuf>> {
        let fuse = self.fuse.lock().map_err(|_| CsiError::Internal("fuse table poisoned".into()))?;
        Ok(fuse.get(uuid).map(|(a, _)| a.device().to_path_buf()))
    }

    /// Undoes [`NodeService::attach`]; safe when already detached.
    async fn detach(&self, s: &Staged, uuid: &str) -> Result<()> {
        match s.transport.as_str() {
            "krbd" => return attach::detach_krbd(&s.device).await.map_err(node_err("unmap krbd device")),
            "rbd-nbd" => return attach::detach_nbd(&s.device).await.map_err(node_err("unmap nbd device")),
            _ => {}
        }
        let live = self.fuse.lock().map_err(|_| CsiError::Internal("fuse table poisoned".into()))?.remove(uuid);
        if let Some((a, source)) = live {
            attach::detach_fuse(a).await.map_err(node_err("detach the FUSE attachment"))?;
            // Closed before answering, so the image has no watcher left when DeleteVolume comes.
            return source.close().await.map_err(node_err("close the image"));
        }
        if !s.device.as_os_str().is_empty() {
            loopdev::detach(&s.device).await.map_err(node_err("detach loop device"))?;
        }
        if let Some(dir) = &s.fuse_dir {
            attach::detach_stale_fuse(dir, "disk").await.map_err(node_err("clear the FUSE attachment"))?;
        }
        Ok(())
    }

    /// On plugin shutdown: writes back what the filesystems cached and closes every image this
    /// process serves over FUSE, so no watcher or exclusive lock of a dead client delays the
    /// next stage of those volumes. Their mounts stop working with the process (docs/csi.md).
    pub async fn shutdown(&self) {
        let live: Vec<(String, Arc<RbdSource>)> = match self.fuse.lock() {
            Ok(f) => f.iter().map(|(uuid, (_, s))| (uuid.clone(), s.clone())).collect(),
            Err(_) => return,
        };
        if live.is_empty() {
            return;
        }
        let _ = tokio::task::spawn_blocking(rustix::fs::sync).await;
        for (uuid, source) in live {
            if let Err(e) = source.flush().await {
                warn!(volume = %uuid, error = %e, "flush on shutdown failed");
            }
            match source.close().await {
                Ok(()) => info!(volume = %uuid, "closed the image on shutdown; its mounts end with this process"),
                Err(e) => warn!(volume = %uuid, error = %e, "close on shutdown failed"),
            }
        }
    }

    /// NodeStageVolume MUST be idempotent: a volume already staged at the path answers OK.
    pub async fn stage(&self, r: pb::NodeStageVolumeRequest) -> Result<()> {
        required("volume id", &r.volume_id)?;
        let staging = path_arg("staging target path", &r.staging_target_path)?;
        let cap = r
            .volume_capability
            .as_ref()
            .ok_or_else(|| CsiError::InvalidArgument("the volume capability is missing".into()))?;
        check_capability(cap)?;
        let id = ObjectId::parse(IdKind::Volume, &r.volume_id)?;
        let _lock = self.driver.lock(format!("node volume {}", r.volume_id))?;
        let block = matches!(cap.access_type, Some(AccessType::Block(_)));
        if let Some(s) = self.load(&id.uuid)? {
            if s.staging_path != staging {
                return Err(CsiError::AlreadyExists(format!(
                    "volume {} is staged at {}, not {}",
                    r.volume_id,
                    s.staging_path.display(),
                    staging.display()
                )));
            }
            if s.block != block {
                return Err(CsiError::AlreadyExists(format!(
                    "volume {} is staged with another access type",
                    r.volume_id
                )));
            }
            let attached = std::fs::metadata(&s.device).is_ok()
                && (s.fuse_dir.is_none() || self.fuse.lock().map(|f| f.contains_key(&id.uuid)).unwrap_or(false));
            let mounted = block || mount::is_mounted(&staging).await.map_err(node_err("read mounts"))?;
            if attached && mounted {
                return Ok(());
            }
            // Half there (a restart lost the FUSE server, or a crash mid-stage): start over.
            let _ = mount::unmount(&staging).await;
            self.detach(&s, &id.uuid).await?;
            self.forget(&id.uuid)?;
        }
        let transport = r.volume_context.get(params::ATTACH).cloned().unwrap_or_else(|| "fuse".into());
        let mut staged = self.attach(&id, &transport).await?;
        staged.staging_path = staging.clone();
        staged.block = block;
        let result = async {
            if !block {
                let fs = match &cap.access_type {
                    Some(AccessType::Mount(m)) if !m.fs_type.is_empty() => m.fs_type.clone(),
                    _ => r.volume_context.get(params::FS_TYPE).cloned().unwrap_or_else(|| "ext4".into()),
                };
                let fs: FsType = fs.parse().map_err(node_err("fs type"))?;
                let formatted = mount::mkfs_if_blank(&staged.device, fs).await.map_err(node_err("format"))?;
                // An ext4 volume expanded while it was not staged (or whose online growth the
                // node could not do) grows here, before it is mounted.
                if !formatted && fs == FsType::Ext4 && ext4_smaller_than_device(&staged.device).await? {
                    mount::grow_fs_offline(&staged.device, fs).await.map_err(node_err("grow the filesystem"))?;
                    info!(volume = %r.volume_id, "grew the ext4 filesystem to the volume's size before mounting");
                }
                std::fs::create_dir_all(&staging)
                    .map_err(|e| CsiError::Internal(format!("create {}: {e}", staging.display())))?;
                let mut flags: Vec<&str> = match &cap.access_type {
                    Some(AccessType::Mount(m)) => m.mount_flags.iter().map(String::as_str).collect(),
                    _ => vec![],
                };
                // A clone or restored snapshot carries its source's xfs UUID; without this the
                // kernel refuses to mount it beside the source.
                if fs == FsType::Xfs && !flags.contains(&"nouuid") {
                    flags.push("nouuid");
                }
                if !mount::is_mounted(&staging).await.map_err(node_err("read mounts"))? {
                    mount::mount(&staged.device, &staging, fs.as_str(), &flags).await.map_err(node_err("mount"))?;
                }
                staged.fs_type = Some(fs.as_str().to_owned());
                info!(volume = %r.volume_id, device = %staged.device.display(), formatted, "staged");
            }
            self.save(&id.uuid, &staged)
        }
        .await;
        if let Err(e) = result {
            // Nothing half-done stays behind.
            let _ = mount::unmount(&staging).await;
            if let Err(d) = self.detach(&staged, &id.uuid).await {
                warn!(volume = %r.volume_id, error = %d, "could not detach after a failed stage");
            }
            let _ = self.forget(&id.uuid);
            return Err(e);
        }
        Ok(())
    }

    /// NodeUnstageVolume MUST be idempotent: nothing staged is success.
    pub async fn unstage(&self, volume_id: &str, staging: &str) -> Result<()> {
        required("volume id", volume_id)?;
        let staging = path_arg("staging target path", staging)?;
        let Ok(id) = ObjectId::parse(IdKind::Volume, volume_id) else { return Ok(()) };
        let _lock = self.driver.lock(format!("node volume {volume_id}"))?;
        mount::unmount(&staging).await.map_err(node_err("unmount the staging path"))?;
        if let Some(s) = self.load(&id.uuid)? {
            self.detach(&s, &id.uuid).await?;
            self.forget(&id.uuid)?;
            info!(volume = volume_id, "unstaged");
        }
        Ok(())
    }

    /// NodePublishVolume: bind mount from the staging path (or the device, for block), read-only
    /// when asked.
    pub async fn publish(&self, r: pb::NodePublishVolumeRequest) -> Result<()> {
        required("volume id", &r.volume_id)?;
        let target = path_arg("target path", &r.target_path)?;
        let cap = r
            .volume_capability
            .as_ref()
            .ok_or_else(|| CsiError::InvalidArgument("the volume capability is missing".into()))?;
        check_capability(cap)?;
        let staging = path_arg("staging target path", &r.staging_target_path)?;
        let id = ObjectId::parse(IdKind::Volume, &r.volume_id)?;
        let _lock = self.driver.lock(format!("node volume {}", r.volume_id))?;
        let Some(s) = self.load(&id.uuid)? else {
            return Err(CsiError::FailedPrecondition(format!("volume {} is not staged on this node", r.volume_id)));
        };
        if s.staging_path != staging {
            return Err(CsiError::FailedPrecondition(format!(
                "volume {} is staged at {}, not {}",
                r.volume_id,
                s.staging_path.display(),
                staging.display()
            )));
        }
        if let Some(m) = mount::find_by_target(&target).await.map_err(node_err("read mounts"))? {
            if m.is_read_only() == r.readonly {
                return Ok(());
            }
            return Err(CsiError::AlreadyExists(format!(
                "{} is already published with read-only = {}",
                target.display(),
                m.is_read_only()
            )));
        }
        let source = if s.block {
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| CsiError::Internal(format!("create {}: {e}", dir.display())))?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&target)
                .map_err(|e| CsiError::Internal(format!("create {}: {e}", target.display())))?;
            s.device.clone()
        } else {
            std::fs::create_dir_all(&target)
                .map_err(|e| CsiError::Internal(format!("create {}: {e}", target.display())))?;
            staging.clone()
        };
        if let Err(e) = mount::bind_mount(&source, &target, r.readonly).await {
            let _ = mount::unmount(&target).await;
            return Err(node_err("bind mount")(e));
        }
        info!(volume = %r.volume_id, target = %target.display(), readonly = r.readonly, "published");
        Ok(())
    }

    /// NodeUnpublishVolume MUST be idempotent.
    pub async fn unpublish(&self, volume_id: &str, target: &str) -> Result<()> {
        required("volume id", volume_id)?;
        let target = path_arg("target path", target)?;
        let _lock = self.driver.lock(format!("node volume {volume_id}"))?;
        mount::unmount(&target).await.map_err(node_err("unmount the target"))?;
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(&target);
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&target);
            }
            Err(_) => {}
        }
        Ok(())
    }

    async fn stats(&self, r: pb::NodeGetVolumeStatsRequest) -> Result<pb::NodeGetVolumeStatsResponse> {
        use pb::volume_usage::Unit;
        required("volume id", &r.volume_id)?;
        let path = path_arg("volume path", &r.volume_path)?;
        let meta =
            std::fs::metadata(&path).map_err(|_| CsiError::NotFound(format!("{} does not exist", path.display())))?;
        let id = ObjectId::parse(IdKind::Volume, &r.volume_id)?;
        let staged = self.load(&id.uuid)?;
        if meta.is_dir() {
            let mounted = mount::is_mounted(&path).await.map_err(node_err("read mounts"))?;
            let st = mount::volume_stats(&path).await.map_err(node_err("statvfs"))?;
            let condition = if mounted && staged.is_some() {
                pb::VolumeCondition { abnormal: false, message: "mounted".into() }
            } else {
                pb::VolumeCondition { abnormal: true, message: format!("{} is not a mounted volume", path.display()) }
            };
            return Ok(pb::NodeGetVolumeStatsResponse {
                usage: vec![
                    pb::VolumeUsage {
                        available: st.bytes_available as i64,
                        total: st.bytes_total as i64,
                        used: st.bytes_used as i64,
                        unit: Unit::Bytes as i32,
                    },
                    pb::VolumeUsage {
                        available: st.inodes_free as i64,
                        total: st.inodes_total as i64,
                        used: st.inodes_used as i64,
                        unit: Unit::Inodes as i32,
                    },
                ],
                volume_condition: Some(condition),
            });
        }
        let total = mount::device_size(&path).await.map_err(node_err("device size"))?;
        Ok(pb::NodeGetVolumeStatsResponse {
            usage: vec![pb::VolumeUsage { available: 0, total: total as i64, used: 0, unit: Unit::Bytes as i32 }],
            volume_condition: Some(pb::VolumeCondition { abnormal: staged.is_none(), message: "block device".into() }),
        })
    }

    async fn expand(&self, r: pb::NodeExpandVolumeRequest) -> Result<pb::NodeExpandVolumeResponse> {
        required("volume id", &r.volume_id)?;
        let path = path_arg("volume path", &r.volume_path)?;
        let id = ObjectId::parse(IdKind::Volume, &r.volume_id)?;
        let _lock = self.driver.lock(format!("node volume {}", r.volume_id))?;
        let s = self
            .load(&id.uuid)?
            .ok_or_else(|| CsiError::NotFound(format!("volume {} is not staged here", r.volume_id)))?;
        if !path.exists() {
            return Err(CsiError::NotFound(format!("{} does not exist", path.display())));
        }
        if s.transport == "file" || s.transport == "fuse" {
            // The FUSE file asks librbd for its size when stat'ed; then the loop device follows.
            if let Some(file) = s.fuse_dir.as_ref().map(|d| d.join("disk")) {
                let _ = std::fs::metadata(&file);
            }
            loopdev::refresh_size(&s.device).await.map_err(node_err("refresh the loop device size"))?;
        }
        if !s.block {
            let fs: FsType = s.fs_type.as_deref().unwrap_or("ext4").parse().map_err(node_err("fs type"))?;
            if let Err(e) = mount::grow_fs(&s.device, &s.staging_path, fs).await {
                if fs == FsType::Ext4 && e.to_string().contains("Permission denied to resize") {
                    return Err(CsiError::FailedPrecondition(
                        "growing a mounted ext4 filesystem needs CAP_SYS_RESOURCE, which this node plugin lacks; \
                         the filesystem grows offline at the next NodeStageVolume"
                            .into(),
                    ));
                }
                return Err(node_err("grow the filesystem")(e));
            }
        }
        let size = mount::device_size(&s.device).await.map_err(node_err("device size"))?;
        info!(volume = %r.volume_id, size, "expanded on the node");
        Ok(pb::NodeExpandVolumeResponse { capacity_bytes: size as i64 })
    }
}

type R<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::node_server::Node for NodeService {
    #[instrument(skip_all, fields(id = %req.get_ref().volume_id))]
    async fn node_stage_volume(&self, req: Request<pb::NodeStageVolumeRequest>) -> R<pb::NodeStageVolumeResponse> {
        self.stage(req.into_inner()).await?;
        Ok(Response::new(pb::NodeStageVolumeResponse {}))
    }

    #[instrument(skip_all, fields(id = %req.get_ref().volume_id))]
    async fn node_unstage_volume(
        &self,
        req: Request<pb::NodeUnstageVolumeRequest>,
    ) -> R<pb::NodeUnstageVolumeResponse> {
        let r = req.into_inner();
        self.unstage(&r.volume_id, &r.staging_target_path).await?;
        Ok(Response::new(pb::NodeUnstageVolumeResponse {}))
    }

    #[instrument(skip_all, fields(id = %req.get_ref().volume_id))]
    async fn node_publish_volume(
        &self,
        req: Request<pb::NodePublishVolumeRequest>,
    ) -> R<pb::NodePublishVolumeResponse> {
        self.publish(req.into_inner()).await?;
        Ok(Response::new(pb::NodePublishVolumeResponse {}))
    }

    #[instrument(skip_all, fields(id = %req.get_ref().volume_id))]
    async fn node_unpublish_volume(
        &self,
        req: Request<pb::NodeUnpublishVolumeRequest>,
    ) -> R<pb::NodeUnpublishVolumeResponse> {
        let r = req.into_inner();
        self.unpublish(&r.volume_id, &r.target_path).await?;
        Ok(Response::new(pb::NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        req: Request<pb::NodeGetVolumeStatsRequest>,
    ) -> R<pb::NodeGetVolumeStatsResponse> {
        Ok(Response::new(self.stats(req.into_inner()).await?))
    }

    #[instrument(skip_all, fields(id = %req.get_ref().volume_id))]
    async fn node_expand_volume(&self, req: Request<pb::NodeExpandVolumeRequest>) -> R<pb::NodeExpandVolumeResponse> {
        Ok(Response::new(self.expand(req.into_inner()).await?))
    }

    async fn node_get_capabilities(
        &self,
        _req: Request<pb::NodeGetCapabilitiesRequest>,
    ) -> R<pb::NodeGetCapabilitiesResponse> {
        let capabilities = [
            NodeCap::StageUnstageVolume,
            NodeCap::GetVolumeStats,
            NodeCap::ExpandVolume,
            NodeCap::VolumeCondition,
            NodeCap::SingleNodeMultiWriter,
        ]
        .into_iter()
        .map(|t| pb::NodeServiceCapability {
            r#type: Some(pb::node_service_capability::Type::Rpc(pb::node_service_capability::Rpc { r#type: t as i32 })),
        })
        .collect();
        Ok(Response::new(pb::NodeGetCapabilitiesResponse { capabilities }))
    }

    async fn node_get_info(&self, _req: Request<pb::NodeGetInfoRequest>) -> R<pb::NodeGetInfoResponse> {
        let n = &self.driver.node;
        Ok(Response::new(pb::NodeGetInfoResponse {
            node_id: n.node_id.clone(),
            max_volumes_per_node: n.max_volumes,
            accessible_topology: (!n.topology.is_empty()).then(|| pb::Topology { segments: n.topology.clone() }),
        }))
    }
}

/// Whether the ext4 filesystem on `device` is smaller than the device (`dumpe2fs -h`).
async fn ext4_smaller_than_device(device: &Path) -> Result<bool> {
    let out = tokio::process::Command::new("dumpe2fs")
        .arg("-h")
        .arg(device)
        .output()
        .await
        .map_err(|e| CsiError::Node(format!("run dumpe2fs: {e}")))?;
    if !out.status.success() {
        return Err(CsiError::Node(format!(
            "dumpe2fs -h {}: {}",
            device.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Option<u64> {
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok())
    };
    let (Some(blocks), Some(bsize)) = (field("Block count:"), field("Block size:")) else {
        return Err(CsiError::Node(format!("dumpe2fs -h {}: no block count or size", device.display())));
    };
    let dev = mount::device_size(device).await.map_err(node_err("device size"))?;
    // Less than a MiB short is rounding, not an expansion.
    Ok(blocks.saturating_mul(bsize) + (1 << 20) <= dev)
}
