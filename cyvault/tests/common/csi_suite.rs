//! The CSI conformance suite of this project: the areas csi-sanity covers (identity, controller,
//! snapshots, expansion, node), plus real data through snapshots and clones, idempotency under
//! concurrency and restart safety. Every function drives the real `cyvault csi` binary over its
//! unix socket and runs unchanged on both backends: `csi_conformance.rs` calls them on the local
//! backend, `ceph_csi_conformance.rs` on RADOS (dev cluster).
//!
//! Errors are checked by their exact gRPC code and a non-empty message. Names are unique per
//! process and call ([`unique`]), because on RADOS the image pool is shared by every test.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cyvault_proto::csi::v1 as pb;
use pb::controller_service_capability::rpc::Type as CtlCap;
use pb::node_service_capability::rpc::Type as NodeCap;
use pb::volume_capability::access_mode::Mode;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

use crate::common::csi::{Clients, Plugin, block_cap, create_req, mount_cap, mounts_under};
use crate::common::pseudo_random;

pub const MIB: i64 = 1 << 20;
pub const DRIVER_NAME: &str = "vault.csi.cyberun.cloud";
/// The topology segment the node test gives the plugin (`--node-topology`).
pub const TOPOLOGY_KEY: &str = "topology.cyvault.io/cluster";
pub const TOPOLOGY_VALUE: &str = "destroyer";
/// Extra flags of the plugin the node test starts: [`node_service`] checks NodeGetInfo against
/// them.
pub const NODE_ARGS: [&str; 4] = ["--node-topology", "topology.cyvault.io/cluster=destroyer", "--max-volumes", "17"];
/// The journal objects (csi/src/journal.rs).
const VOLUMES_OBJECT: &str = "cyv.csi.volumes";
const SNAPSHOTS_OBJECT: &str = "cyv.csi.snapshots";

/// Which backend the plugin runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `--backend local`: sparse files under `DATA/csi/pools/<pool>/`, loop devices.
    Local,
    /// `--backend rados` on the dev cluster: RBD images attached through FUSE + loop.
    Rados,
}

impl Backend {
    /// What GetPluginInfo's manifest says.
    pub fn label(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Rados => "rados",
        }
    }

    /// The pool volumes are created in (the plugin's `--pool`).
    pub fn pool(self) -> String {
        match self {
            Backend::Local => "rbd".into(),
            Backend::Rados => std::env::var("CYVAULT_RBD_POOL").unwrap_or_else(|_| "rbd".into()),
        }
    }

    /// Every image of the pool right now (on RADOS that includes other tests' images).
    pub fn images(self, p: &Plugin) -> BTreeSet<String> {
        match self {
            Backend::Local => {
                let dir = p.path("data/csi/pools").join(self.pool());
                let mut out = BTreeSet::new();
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
                    Err(e) => panic!("list {}: {e}", dir.display()),
                };
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    assert!(!name.ends_with(".tmp"), "a temporary image file was left behind: {name}");
                    if let Some(image) = name.strip_suffix(".img") {
                        out.insert(image.to_owned());
                    }
                }
                out
            }
            Backend::Rados => {
                let out = ceph_tool("rbd", &["-p", &self.pool(), "ls"]);
                out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
            }
        }
    }
}

/// Runs a Ceph tool (`rbd`, `rados`) against the dev cluster; panics with its stderr on failure.
pub fn ceph_tool(program: &str, args: &[&str]) -> String {
    let conf = std::env::var("CYVAULT_CEPH_CONF").unwrap_or_else(|_| panic!("CYVAULT_CEPH_CONF is not set"));
    let id = std::env::var("CYVAULT_CEPH_ID").unwrap_or_else(|_| "admin".into());
    let out = Command::new(program)
        .arg("-c")
        .arg(&conf)
        .arg("--id")
        .arg(&id)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A name no other call of this process (nor another process) uses.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{tag}-{}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos % 1_000_000_000)
}

/// The image name of a volume or snapshot id (`cyv1:v:<pool>:<uuid>` → `csi-vol-<uuid>`).
pub fn image_of(id: &str) -> String {
    let uuid = id.rsplit(':').next().unwrap_or_default();
    if id.starts_with("cyv1:s:") { format!("csi-snap-{uuid}") } else { format!("csi-vol-{uuid}") }
}

/// A well-formed id of a volume that does not exist.
pub fn unknown_volume_id(b: Backend) -> String {
    format!("cyv1:v:{}:{:032x}", b.pool(), rand::random::<u128>())
}

pub fn unknown_snapshot_id(b: Backend) -> String {
    format!("cyv1:s:{}:{:032x}", b.pool(), rand::random::<u128>())
}

/// The reply, or a panic naming the call and the status.
#[track_caller]
pub fn ok<T>(r: Result<Response<T>, Status>, what: &str) -> T {
    match r {
        Ok(r) => r.into_inner(),
        Err(s) => panic!("{what}: {:?}: {}", s.code(), s.message()),
    }
}

/// Asserts the call failed with exactly `code` and a non-empty message.
#[track_caller]
pub fn fails<T: std::fmt::Debug>(r: Result<Response<T>, Status>, code: Code, what: &str) -> Status {
    match r {
        Ok(v) => panic!("{what}: expected {code:?}, got OK: {:?}", v.into_inner()),
        Err(s) => {
            assert_eq!(s.code(), code, "{what}: {}", s.message());
            assert!(!s.message().trim().is_empty(), "{what}: {code:?} with an empty message");
            s
        }
    }
}

pub fn cap_with(access_type: Option<pb::volume_capability::AccessType>, mode: Mode) -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_type,
        access_mode: (mode != Mode::Unknown).then_some(pb::volume_capability::AccessMode { mode: mode as i32 }),
    }
}

pub fn snapshot_source(id: &str) -> pb::VolumeContentSource {
    use pb::volume_content_source::{SnapshotSource, Type};
    pb::VolumeContentSource { r#type: Some(Type::Snapshot(SnapshotSource { snapshot_id: id.into() })) }
}

pub fn volume_source(id: &str) -> pb::VolumeContentSource {
    use pb::volume_content_source::{Type, VolumeSource};
    pb::VolumeContentSource { r#type: Some(Type::Volume(VolumeSource { volume_id: id.into() })) }
}

/// The filesystem type mounted at `path`, from this process's mount table.
pub fn fs_type_at(path: &Path) -> Option<String> {
    let want = path.display().to_string();
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    table.lines().rev().find_map(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        if fields.get(4).map(|m| m.replace("\\040", " ")) != Some(want.clone()) {
            return None;
        }
        let dash = fields.iter().position(|f| *f == "-")?;
        fields.get(dash + 1).map(|s| (*s).to_owned())
    })
}

fn write_file(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    f.sync_all().unwrap_or_else(|e| panic!("sync {}: {e}", path.display()));
}

fn read_file(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A staged and published volume's paths.
#[derive(Clone, Debug)]
pub struct Mounted {
    pub volume_id: String,
    pub staging: PathBuf,
    pub target: PathBuf,
    pub cap: pb::VolumeCapability,
}

/// The plugin, its clients and the backend it runs on.
pub struct Ctx<'a> {
    pub p: &'a Plugin,
    pub b: Backend,
    pub c: Clients,
}

impl<'a> Ctx<'a> {
    pub async fn new(p: &'a Plugin, b: Backend) -> Ctx<'a> {
        Ctx { p, b, c: p.clients().await }
    }

    pub async fn create(&mut self, req: pb::CreateVolumeRequest) -> pb::Volume {
        let what = format!("CreateVolume {}", req.name);
        ok(self.c.controller.create_volume(req).await, &what).volume.unwrap_or_else(|| panic!("{what}: no volume"))
    }

    pub async fn create_mount(&mut self, tag: &str, bytes: i64) -> pb::Volume {
        self.create(create_req(&unique(tag), bytes, mount_cap("ext4"))).await
    }

    /// DeleteVolume, retried while it answers FAILED_PRECONDITION ("still attached") for up to
    /// 10 s, as the external-provisioner does: right after NodeUnstageVolume an RBD image may
    /// still have its watch for a moment (see [`unstage_then_delete_at_once`], which does not
    /// retry).
    pub async fn delete(&mut self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let req = pb::DeleteVolumeRequest { volume_id: id.into(), ..Default::default() };
            match self.c.controller.delete_volume(req).await {
                Ok(_) => return,
                Err(s) if s.code() == Code::FailedPrecondition && Instant::now() < deadline => {
                    eprintln!("DeleteVolume {id}: {}; retrying", s.message());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(s) => panic!("DeleteVolume {id}: {:?}: {}", s.code(), s.message()),
            }
        }
    }

    /// DeleteVolume that must succeed on the first call.
    pub async fn delete_at_once(&mut self, id: &str) {
        ok(
            self.c
                .controller
                .delete_volume(pb::DeleteVolumeRequest { volume_id: id.into(), ..Default::default() })
                .await,
            &format!("DeleteVolume {id}"),
        );
    }

    pub async fn snapshot(&mut self, name: &str, source: &str) -> pb::Snapshot {
        let req =
            pb::CreateSnapshotRequest { name: name.into(), source_volume_id: source.into(), ..Default::default() };
        let what = format!("CreateSnapshot {name}");
        ok(self.c.controller.create_snapshot(req).await, &what)
            .snapshot
            .unwrap_or_else(|| panic!("{what}: no snapshot"))
    }

    pub async fn delete_snapshot(&mut self, id: &str) {
        ok(
            self.c
                .controller
                .delete_snapshot(pb::DeleteSnapshotRequest { snapshot_id: id.into(), ..Default::default() })
                .await,
            &format!("DeleteSnapshot {id}"),
        );
    }

    pub async fn list_snapshots(&mut self, req: pb::ListSnapshotsRequest) -> pb::ListSnapshotsResponse {
        ok(self.c.controller.list_snapshots(req).await, "ListSnapshots")
    }

    /// Every volume id ListVolumes shows, following the pages of `max` entries (each id once).
    pub async fn all_volume_ids(&mut self, max: i32) -> Vec<String> {
        let mut ids = Vec::new();
        let mut token = String::new();
        for _ in 0..10_000 {
            let page = ok(
                self.c
                    .controller
                    .list_volumes(pb::ListVolumesRequest { max_entries: max, starting_token: token.clone() })
                    .await,
                "ListVolumes",
            );
            assert!(
                max == 0 || page.entries.len() <= max as usize,
                "a page of {} entries for max {max}",
                page.entries.len()
            );
            ids.extend(page.entries.iter().filter_map(|e| e.volume.as_ref()).map(|v| v.volume_id.clone()));
            if page.next_token.is_empty() {
                return ids;
            }
            token = page.next_token;
        }
        panic!("ListVolumes never ended");
    }

    /// Every snapshot id ListSnapshots shows for `source` ("" for all), `max` per page.
    pub async fn all_snapshot_ids(&mut self, source: &str, max: i32) -> Vec<String> {
        let mut ids = Vec::new();
        let mut token = String::new();
        for _ in 0..10_000 {
            let page = self
                .list_snapshots(pb::ListSnapshotsRequest {
                    max_entries: max,
                    starting_token: token.clone(),
                    source_volume_id: source.into(),
                    ..Default::default()
                })
                .await;
            assert!(
                max == 0 || page.entries.len() <= max as usize,
                "a page of {} entries for max {max}",
                page.entries.len()
            );
            ids.extend(page.entries.iter().filter_map(|e| e.snapshot.as_ref()).map(|s| s.snapshot_id.clone()));
            if page.next_token.is_empty() {
                return ids;
            }
            token = page.next_token;
        }
        panic!("ListSnapshots never ended");
    }

    pub fn stage_req(
        &self,
        vol: &pb::Volume,
        staging: &Path,
        cap: &pb::VolumeCapability,
    ) -> pb::NodeStageVolumeRequest {
        pb::NodeStageVolumeRequest {
            volume_id: vol.volume_id.clone(),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(cap.clone()),
            volume_context: vol.volume_context.clone(),
            ..Default::default()
        }
    }

    pub fn publish_req(&self, m: &Mounted, target: &Path, readonly: bool) -> pb::NodePublishVolumeRequest {
        pb::NodePublishVolumeRequest {
            volume_id: m.volume_id.clone(),
            staging_target_path: m.staging.display().to_string(),
            target_path: target.display().to_string(),
            volume_capability: Some(m.cap.clone()),
            readonly,
            ..Default::default()
        }
    }

    /// Stages `vol` and publishes it read-write (paths under the plugin's dir, named by `tag`).
    pub async fn mount(&mut self, vol: &pb::Volume, cap: &pb::VolumeCapability, tag: &str) -> Mounted {
        let tag = unique(tag);
        let m = Mounted {
            volume_id: vol.volume_id.clone(),
            staging: self.p.path(&format!("staging/{tag}")),
            target: self.p.path(&format!("pods/{tag}/volume")),
            cap: cap.clone(),
        };
        let req = self.stage_req(vol, &m.staging, cap);
        ok(self.c.node.node_stage_volume(req).await, &format!("NodeStageVolume {}", vol.volume_id));
        let req = self.publish_req(&m, &m.target, false);
        ok(self.c.node.node_publish_volume(req).await, &format!("NodePublishVolume {}", vol.volume_id));
        m
    }

    /// Unpublishes the target and unstages.
    pub async fn unmount(&mut self, m: &Mounted) {
        self.unpublish(m, &m.target).await;
        self.unstage(m).await;
    }

    pub async fn unpublish(&mut self, m: &Mounted, target: &Path) {
        let req = pb::NodeUnpublishVolumeRequest {
            volume_id: m.volume_id.clone(),
            target_path: target.display().to_string(),
        };
        ok(self.c.node.node_unpublish_volume(req).await, &format!("NodeUnpublishVolume {}", target.display()));
    }

    pub async fn unstage(&mut self, m: &Mounted) {
        let req = pb::NodeUnstageVolumeRequest {
            volume_id: m.volume_id.clone(),
            staging_target_path: m.staging.display().to_string(),
        };
        ok(self.c.node.node_unstage_volume(req).await, &format!("NodeUnstageVolume {}", m.volume_id));
    }

    pub async fn stats(&mut self, volume_id: &str, path: &Path) -> pb::NodeGetVolumeStatsResponse {
        let req = pb::NodeGetVolumeStatsRequest {
            volume_id: volume_id.into(),
            volume_path: path.display().to_string(),
            ..Default::default()
        };
        ok(self.c.node.node_get_volume_stats(req).await, &format!("NodeGetVolumeStats {}", path.display()))
    }

    /// Asserts nothing is mounted under the plugin's dir.
    #[track_caller]
    pub fn assert_no_mounts(&self, when: &str) {
        let left = mounts_under(self.p.dir.path());
        assert!(left.is_empty(), "{when}: mounts left under the plugin dir: {left:?}");
    }

    /// Asserts none of these volume/snapshot ids still has an image.
    #[track_caller]
    pub fn assert_images_gone(&self, ids: &[&str]) {
        let images = self.b.images(self.p);
        for id in ids {
            assert!(!images.contains(&image_of(id)), "the image of {id} is still there");
        }
    }
}

/// Whether this process (and so the plugin it starts) has CAP_SYS_RESOURCE, which online ext4
/// growth needs (some sandboxes drop it even for root).
pub fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim).unwrap_or("0");
    u64::from_str_radix(eff, 16).map(|bits| bits & (1 << CAP_SYS_RESOURCE) != 0).unwrap_or(false)
}

/// Bytes and inodes usage of a stats reply.
fn usage(r: &pb::NodeGetVolumeStatsResponse, unit: pb::volume_usage::Unit) -> pb::VolumeUsage {
    r.usage.iter().find(|u| u.unit == unit as i32).cloned().unwrap_or_else(|| panic!("no {unit:?} usage in {r:?}"))
}

// ------------------------------------------------------------------------------------------------
// Identity
// ------------------------------------------------------------------------------------------------

/// GetPluginInfo, GetPluginCapabilities, Probe.
pub async fn identity(p: &Plugin, b: Backend) {
    use pb::plugin_capability::service::Type as Svc;
    use pb::plugin_capability::volume_expansion::Type as Exp;
    use pb::plugin_capability::{Service, Type, VolumeExpansion};
    let mut x = Ctx::new(p, b).await;
    let info = ok(x.c.identity.get_plugin_info(pb::GetPluginInfoRequest {}).await, "GetPluginInfo");
    assert_eq!(info.name, DRIVER_NAME);
    assert_eq!(info.vendor_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.manifest.get("backend").map(String::as_str), Some(b.label()), "{:?}", info.manifest);

    let caps =
        ok(x.c.identity.get_plugin_capabilities(pb::GetPluginCapabilitiesRequest {}).await, "GetPluginCapabilities");
    let types: Vec<_> = caps.capabilities.iter().filter_map(|c| c.r#type).collect();
    for want in [
        Type::Service(Service { r#type: Svc::ControllerService as i32 }),
        Type::Service(Service { r#type: Svc::VolumeAccessibilityConstraints as i32 }),
        Type::VolumeExpansion(VolumeExpansion { r#type: Exp::Online as i32 }),
    ] {
        assert!(types.contains(&want), "{want:?} missing from {types:?}");
    }
    assert!(
        !types.contains(&Type::VolumeExpansion(VolumeExpansion { r#type: Exp::Offline as i32 })),
        "both online and offline expansion: {types:?}"
    );

    let probe = ok(x.c.identity.probe(pb::ProbeRequest {}).await, "Probe");
    assert_eq!(probe.ready, Some(true));
}

// ------------------------------------------------------------------------------------------------
// Controller
// ------------------------------------------------------------------------------------------------

/// ControllerGetCapabilities, CreateVolume's validation and idempotency, DeleteVolume,
/// ValidateVolumeCapabilities, ListVolumes with pagination, GetCapacity, ControllerGetVolume,
/// ControllerPublishVolume.
pub async fn controller_basics(p: &Plugin, b: Backend) {
    use pb::volume_capability::{AccessType, MountVolume};
    let mut x = Ctx::new(p, b).await;

    // Capabilities: exactly what is implemented.
    let caps = ok(x.c.controller.controller_get_capabilities(pb::ControllerGetCapabilitiesRequest {}).await, "caps");
    let advertised: BTreeSet<i32> = caps
        .capabilities
        .iter()
        .filter_map(|c| c.r#type.as_ref().map(|pb::controller_service_capability::Type::Rpc(r)| r.r#type))
        .collect();
    let got = &advertised;
    let want: BTreeSet<i32> = [
        CtlCap::CreateDeleteVolume,
        CtlCap::ListVolumes,
        CtlCap::GetCapacity,
        CtlCap::CreateDeleteSnapshot,
        CtlCap::ListSnapshots,
        CtlCap::CloneVolume,
        CtlCap::ExpandVolume,
        CtlCap::GetVolume,
        CtlCap::VolumeCondition,
        CtlCap::SingleNodeMultiWriter,
        // GetSnapshot is implemented (the snapshots test calls it), so it must be advertised;
        // checked at the end, so the rest of this test runs first.
        CtlCap::GetSnapshot,
    ]
    .into_iter()
    .map(|t| t as i32)
    .collect();
    let names = |s: &BTreeSet<i32>| s.iter().map(|t| format!("{:?}", CtlCap::try_from(*t))).collect::<Vec<_>>();
    let get_snapshot = CtlCap::GetSnapshot as i32;
    assert_eq!(
        names(&got.iter().copied().filter(|t| *t != get_snapshot).collect()),
        names(&want.iter().copied().filter(|t| *t != get_snapshot).collect()),
        "ControllerGetCapabilities"
    );
    assert!(!got.contains(&(CtlCap::PublishUnpublishVolume as i32)), "ControllerPublishVolume is not implemented");

    // CreateVolume's arguments.
    let cap = mount_cap("ext4");
    let mut r = create_req("", 64 * MIB, cap.clone());
    fails(x.c.controller.create_volume(r.clone()).await, Code::InvalidArgument, "CreateVolume without a name");
    r.name = unique("args");
    r.volume_capabilities.clear();
    fails(x.c.controller.create_volume(r.clone()).await, Code::InvalidArgument, "CreateVolume without capabilities");
    r.volume_capabilities = vec![cap_with(Some(AccessType::Mount(MountVolume::default())), Mode::Unknown)];
    fails(x.c.controller.create_volume(r.clone()).await, Code::InvalidArgument, "a capability without an access mode");
    r.volume_capabilities = vec![cap_with(None, Mode::SingleNodeWriter)];
    fails(x.c.controller.create_volume(r.clone()).await, Code::InvalidArgument, "a capability without an access type");
    r.volume_capabilities = vec![mount_cap("btrfs")];
    fails(x.c.controller.create_volume(r.clone()).await, Code::InvalidArgument, "a filesystem the driver cannot make");
    r.volume_capabilities = vec![cap.clone()];
    r.capacity_range = Some(pb::CapacityRange { required_bytes: 64 * MIB, limit_bytes: 32 * MIB });
    fails(x.c.controller.create_volume(r.clone()).await, Code::InvalidArgument, "limit below required");
    r.capacity_range = Some(pb::CapacityRange { required_bytes: (64 << 40) + MIB, limit_bytes: 0 });
    fails(x.c.controller.create_volume(r.clone()).await, Code::OutOfRange, "more than 64 TiB");
    // None of the refused calls left a volume behind.
    assert!(x.all_volume_ids(0).await.is_empty(), "a refused CreateVolume left a volume");

    // Create: the capacity rounded up to whole MiB, an id; the same call again is the same volume.
    let name = unique("basic");
    let req = create_req(&name, 64 * MIB + 1, cap.clone());
    let vol = x.create(req.clone()).await;
    assert_eq!(vol.capacity_bytes, 65 * MIB, "64 MiB + 1 byte rounds up to 65 MiB");
    assert!(vol.volume_id.starts_with(&format!("cyv1:v:{}:", b.pool())), "{}", vol.volume_id);
    assert!(vol.volume_id.len() <= 128);
    assert!(b.images(p).contains(&image_of(&vol.volume_id)), "no image for {}", vol.volume_id);
    let again = x.create(req.clone()).await;
    assert_eq!(again.volume_id, vol.volume_id, "CreateVolume is idempotent");
    assert_eq!(again.capacity_bytes, vol.capacity_bytes);
    // A range the existing volume fits is the same call too.
    let mut compatible = req.clone();
    compatible.capacity_range = Some(pb::CapacityRange { required_bytes: 32 * MIB, limit_bytes: 128 * MIB });
    assert_eq!(x.create(compatible).await.volume_id, vol.volume_id, "a compatible range is the same volume");
    // Same name, a size outside the range / other parameters: ALREADY_EXISTS.
    let mut bigger = req.clone();
    bigger.capacity_range = Some(pb::CapacityRange { required_bytes: 128 * MIB, limit_bytes: 0 });
    fails(x.c.controller.create_volume(bigger).await, Code::AlreadyExists, "same name, larger size");
    let mut other_params = req.clone();
    other_params.parameters = HashMap::from([("fsType".to_string(), "xfs".to_string())]);
    fails(x.c.controller.create_volume(other_params).await, Code::AlreadyExists, "same name, other parameters");
    fails(
        x.c.controller.create_volume(create_req(&name, 64 * MIB + 1, block_cap())).await,
        Code::AlreadyExists,
        "same name, block instead of mount",
    );
    assert_eq!(x.all_volume_ids(0).await, vec![vol.volume_id.clone()], "exactly one volume");

    // ValidateVolumeCapabilities.
    let validate = |id: &str, caps: Vec<pb::VolumeCapability>| pb::ValidateVolumeCapabilitiesRequest {
        volume_id: id.into(),
        volume_capabilities: caps,
        ..Default::default()
    };
    let v = ok(
        x.c.controller.validate_volume_capabilities(validate(&vol.volume_id, vec![cap.clone()])).await,
        "ValidateVolumeCapabilities",
    );
    let confirmed = v.confirmed.unwrap_or_else(|| panic!("a supported capability is not confirmed: {}", v.message));
    assert_eq!(confirmed.volume_capabilities, vec![cap.clone()]);
    let rwx = cap_with(cap.access_type.clone(), Mode::MultiNodeMultiWriter);
    let v = ok(
        x.c.controller.validate_volume_capabilities(validate(&vol.volume_id, vec![rwx.clone()])).await,
        "ValidateVolumeCapabilities RWX",
    );
    assert!(v.confirmed.is_none(), "MULTI_NODE_MULTI_WRITER confirmed");
    assert!(!v.message.is_empty(), "an unconfirmed capability without a message");
    fails(
        x.c.controller.validate_volume_capabilities(validate(&unknown_volume_id(b), vec![cap.clone()])).await,
        Code::NotFound,
        "ValidateVolumeCapabilities of an unknown volume",
    );
    fails(
        x.c.controller.validate_volume_capabilities(validate("", vec![cap.clone()])).await,
        Code::InvalidArgument,
        "ValidateVolumeCapabilities without a volume id",
    );
    fails(
        x.c.controller.validate_volume_capabilities(validate(&vol.volume_id, vec![])).await,
        Code::InvalidArgument,
        "ValidateVolumeCapabilities without capabilities",
    );

    // ListVolumes: 5 more volumes, pages of 2, each exactly once.
    let mut created = vec![vol.volume_id.clone()];
    for i in 0..5 {
        created.push(x.create_mount(&format!("list{i}"), MIB).await.volume_id);
    }
    let listed = x.all_volume_ids(2).await;
    let unique_listed: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(unique_listed.len(), listed.len(), "a volume listed twice: {listed:?}");
    assert_eq!(unique_listed, created.iter().collect::<BTreeSet<_>>(), "pages of 2");
    assert_eq!(x.all_volume_ids(1).await.len(), 6, "pages of 1");
    let page =
        ok(x.c.controller.list_volumes(pb::ListVolumesRequest { max_entries: 0, ..Default::default() }).await, "");
    assert_eq!(page.entries.len(), 6, "max_entries 0 is everything");
    assert!(page.next_token.is_empty());
    for e in &page.entries {
        let v = e.volume.as_ref().unwrap_or_else(|| panic!("an entry without a volume"));
        assert!(v.capacity_bytes > 0);
    }
    fails(
        x.c.controller
            .list_volumes(pb::ListVolumesRequest { max_entries: 2, starting_token: "not-a-token".into() })
            .await,
        Code::Aborted,
        "ListVolumes with a token it never issued",
    );
    fails(
        x.c.controller.list_volumes(pb::ListVolumesRequest { max_entries: -1, ..Default::default() }).await,
        Code::InvalidArgument,
        "ListVolumes with negative max_entries",
    );

    // GetCapacity.
    let capacity = ok(
        x.c.controller
            .get_capacity(pb::GetCapacityRequest { volume_capabilities: vec![cap.clone()], ..Default::default() })
            .await,
        "GetCapacity",
    );
    assert!(capacity.available_capacity > 0, "{capacity:?}");

    // ControllerGetVolume.
    let got = ok(
        x.c.controller.controller_get_volume(pb::ControllerGetVolumeRequest { volume_id: vol.volume_id.clone() }).await,
        "ControllerGetVolume",
    );
    let gv = got.volume.unwrap_or_else(|| panic!("ControllerGetVolume without a volume"));
    assert_eq!((gv.volume_id.as_str(), gv.capacity_bytes), (vol.volume_id.as_str(), 65 * MIB));
    let condition = got.status.and_then(|s| s.volume_condition).unwrap_or_else(|| panic!("no volume condition"));
    assert!(!condition.abnormal, "{}", condition.message);
    fails(
        x.c.controller.controller_get_volume(pb::ControllerGetVolumeRequest { volume_id: unknown_volume_id(b) }).await,
        Code::NotFound,
        "ControllerGetVolume of an unknown volume",
    );
    fails(
        x.c.controller.controller_get_volume(pb::ControllerGetVolumeRequest { volume_id: "pvc-1".into() }).await,
        Code::NotFound,
        "ControllerGetVolume of a malformed id",
    );

    // ControllerPublishVolume is not this driver's.
    fails(
        x.c.controller
            .controller_publish_volume(pb::ControllerPublishVolumeRequest {
                volume_id: vol.volume_id.clone(),
                node_id: "node-1".into(),
                volume_capability: Some(cap.clone()),
                ..Default::default()
            })
            .await,
        Code::Unimplemented,
        "ControllerPublishVolume",
    );

    // DeleteVolume.
    let del = |id: &str| pb::DeleteVolumeRequest { volume_id: id.into(), ..Default::default() };
    fails(x.c.controller.delete_volume(del("")).await, Code::InvalidArgument, "DeleteVolume without an id");
    ok(x.c.controller.delete_volume(del(&unknown_volume_id(b))).await, "DeleteVolume of an unknown volume");
    ok(x.c.controller.delete_volume(del("pvc-not-ours")).await, "DeleteVolume of a malformed id");
    for id in &created {
        x.delete_at_once(id).await;
        x.delete_at_once(id).await;
    }
    assert!(x.all_volume_ids(0).await.is_empty(), "volumes left after DeleteVolume");
    x.assert_images_gone(&created.iter().map(String::as_str).collect::<Vec<_>>());
    fails(
        x.c.controller.validate_volume_capabilities(validate(&vol.volume_id, vec![cap.clone()])).await,
        Code::NotFound,
        "ValidateVolumeCapabilities of a deleted volume",
    );
    // The name is free again: a new volume with a new id.
    let reborn = x.create(req).await;
    assert_ne!(reborn.volume_id, vol.volume_id, "a deleted volume's name made a new volume");
    x.delete(&reborn.volume_id).await;

    assert!(
        advertised.contains(&get_snapshot),
        "ControllerGetCapabilities does not advertise GET_SNAPSHOT though GetSnapshot is implemented: {:?}",
        names(&advertised)
    );
}

// ------------------------------------------------------------------------------------------------
// Snapshots
// ------------------------------------------------------------------------------------------------

/// CreateSnapshot, ListSnapshots, DeleteSnapshot; volumes from snapshots and from volumes.
pub async fn snapshots(p: &Plugin, b: Backend) {
    let mut x = Ctx::new(p, b).await;
    let src = x.create_mount("snapsrc", 64 * MIB).await;

    let snap_req = |name: &str, source: &str| pb::CreateSnapshotRequest {
        name: name.into(),
        source_volume_id: source.into(),
        ..Default::default()
    };
    fails(x.c.controller.create_snapshot(snap_req("", &src.volume_id)).await, Code::InvalidArgument, "no name");
    fails(x.c.controller.create_snapshot(snap_req(&unique("s"), "")).await, Code::InvalidArgument, "no source");
    fails(
        x.c.controller.create_snapshot(snap_req(&unique("s"), &unknown_volume_id(b))).await,
        Code::NotFound,
        "CreateSnapshot of an unknown volume",
    );

    // Idempotent by name; the same name for another source is ALREADY_EXISTS.
    let name = unique("snap");
    let snap = x.snapshot(&name, &src.volume_id).await;
    assert!(snap.snapshot_id.starts_with("cyv1:s:"), "{}", snap.snapshot_id);
    assert_eq!(snap.source_volume_id, src.volume_id);
    assert_eq!(snap.size_bytes, 64 * MIB);
    assert!(snap.ready_to_use);
    assert!(snap.creation_time.as_ref().is_some_and(|t| t.seconds > 1_600_000_000), "{:?}", snap.creation_time);
    assert!(b.images(p).contains(&image_of(&snap.snapshot_id)));
    let again = x.snapshot(&name, &src.volume_id).await;
    assert_eq!(again.snapshot_id, snap.snapshot_id, "CreateSnapshot is idempotent");
    let other = x.create_mount("snapother", 16 * MIB).await;
    fails(
        x.c.controller.create_snapshot(snap_req(&name, &other.volume_id)).await,
        Code::AlreadyExists,
        "same snapshot name, another source",
    );

    // GetSnapshot.
    let got = ok(
        x.c.controller
            .get_snapshot(pb::GetSnapshotRequest { snapshot_id: snap.snapshot_id.clone(), ..Default::default() })
            .await,
        "GetSnapshot",
    );
    assert_eq!(got.snapshot.map(|s| s.snapshot_id), Some(snap.snapshot_id.clone()));
    fails(
        x.c.controller
            .get_snapshot(pb::GetSnapshotRequest { snapshot_id: unknown_snapshot_id(b), ..Default::default() })
            .await,
        Code::NotFound,
        "GetSnapshot of an unknown snapshot",
    );

    // ListSnapshots: by id, by source, all with pages; unknown ids are an empty list.
    let by_id = x
        .list_snapshots(pb::ListSnapshotsRequest { snapshot_id: snap.snapshot_id.clone(), ..Default::default() })
        .await;
    assert_eq!(by_id.entries.len(), 1);
    assert_eq!(by_id.entries[0].snapshot.as_ref().map(|s| s.snapshot_id.clone()), Some(snap.snapshot_id.clone()));
    for unknown in [unknown_snapshot_id(b), "garbage".to_string()] {
        let r = x.list_snapshots(pb::ListSnapshotsRequest { snapshot_id: unknown.clone(), ..Default::default() }).await;
        assert!(r.entries.is_empty(), "ListSnapshots of {unknown}: {r:?}");
    }
    let mut of_src = vec![snap.snapshot_id.clone()];
    for i in 0..2 {
        of_src.push(x.snapshot(&unique(&format!("snap{i}")), &src.volume_id).await.snapshot_id);
    }
    let of_other = x.snapshot(&unique("snapo"), &other.volume_id).await.snapshot_id;
    let set = |v: Vec<String>| v.into_iter().collect::<BTreeSet<_>>();
    assert_eq!(set(x.all_snapshot_ids(&src.volume_id, 0).await), set(of_src.clone()), "by source");
    assert_eq!(x.all_snapshot_ids(&other.volume_id, 0).await, vec![of_other.clone()], "by the other source");
    assert!(x.all_snapshot_ids(&unknown_volume_id(b), 0).await.is_empty(), "by an unknown source");
    let mut everything = of_src.clone();
    everything.push(of_other.clone());
    let paged = x.all_snapshot_ids("", 2).await;
    assert_eq!(paged.len(), everything.len(), "each snapshot once in pages of 2: {paged:?}");
    assert_eq!(set(paged), set(everything.clone()));
    fails(
        x.c.controller
            .list_snapshots(pb::ListSnapshotsRequest { starting_token: "zzz".into(), ..Default::default() })
            .await,
        Code::Aborted,
        "ListSnapshots with a token it never issued",
    );
    fails(
        x.c.controller.list_snapshots(pb::ListSnapshotsRequest { max_entries: -1, ..Default::default() }).await,
        Code::InvalidArgument,
        "ListSnapshots with negative max_entries",
    );

    // Volumes from a snapshot: too small, unknown snapshot, the right one.
    let mut from = create_req(&unique("fromsnap"), 32 * MIB, mount_cap("ext4"));
    from.volume_content_source = Some(snapshot_source(&snap.snapshot_id));
    fails(x.c.controller.create_volume(from.clone()).await, Code::OutOfRange, "a volume smaller than its snapshot");
    let mut unknown = from.clone();
    unknown.name = unique("fromunknown");
    unknown.capacity_range = Some(pb::CapacityRange { required_bytes: 64 * MIB, limit_bytes: 0 });
    unknown.volume_content_source = Some(snapshot_source(&unknown_snapshot_id(b)));
    fails(x.c.controller.create_volume(unknown).await, Code::NotFound, "a volume from an unknown snapshot");
    let mut unknown_vol = from.clone();
    unknown_vol.name = unique("fromunknownvol");
    unknown_vol.capacity_range = Some(pb::CapacityRange { required_bytes: 64 * MIB, limit_bytes: 0 });
    unknown_vol.volume_content_source = Some(volume_source(&unknown_volume_id(b)));
    fails(x.c.controller.create_volume(unknown_vol).await, Code::NotFound, "a clone of an unknown volume");

    // The snapshot survives its source; a volume made from it has the requested capacity.
    x.delete(&src.volume_id).await;
    x.assert_images_gone(&[&src.volume_id]);
    let still = x
        .list_snapshots(pb::ListSnapshotsRequest { snapshot_id: snap.snapshot_id.clone(), ..Default::default() })
        .await;
    assert_eq!(still.entries.len(), 1, "the snapshot went with its source volume");
    assert!(still.entries[0].snapshot.as_ref().is_some_and(|s| s.ready_to_use));
    from.capacity_range = Some(pb::CapacityRange { required_bytes: 80 * MIB, limit_bytes: 0 });
    let restored = x.create(from.clone()).await;
    assert_eq!(restored.capacity_bytes, 80 * MIB, "a volume from a 64 MiB snapshot, 80 MiB asked");
    assert_eq!(restored.content_source, Some(snapshot_source(&snap.snapshot_id)));
    assert_eq!(x.create(from.clone()).await.volume_id, restored.volume_id, "idempotent from a snapshot");
    let mut from_other_snap = from.clone();
    from_other_snap.volume_content_source = Some(snapshot_source(&of_src[1]));
    fails(x.c.controller.create_volume(from_other_snap).await, Code::AlreadyExists, "same name, other snapshot");

    // A clone of a volume (content source volume).
    let mut clone = create_req(&unique("clone"), 16 * MIB, mount_cap("ext4"));
    clone.volume_content_source = Some(volume_source(&other.volume_id));
    let cloned = x.create(clone).await;
    assert_eq!(cloned.capacity_bytes, 16 * MIB);
    assert_eq!(cloned.content_source, Some(volume_source(&other.volume_id)));
    assert_ne!(cloned.volume_id, other.volume_id);

    // DeleteSnapshot: idempotent, unknown and malformed ids are fine; volumes made from a
    // snapshot stay.
    let dsnap = |id: &str| pb::DeleteSnapshotRequest { snapshot_id: id.into(), ..Default::default() };
    fails(x.c.controller.delete_snapshot(dsnap("")).await, Code::InvalidArgument, "DeleteSnapshot without an id");
    ok(x.c.controller.delete_snapshot(dsnap(&unknown_snapshot_id(b))).await, "DeleteSnapshot of an unknown id");
    ok(x.c.controller.delete_snapshot(dsnap("snap-not-ours")).await, "DeleteSnapshot of a malformed id");
    for id in &everything {
        x.delete_snapshot(id).await;
        x.delete_snapshot(id).await;
    }
    assert!(x.all_snapshot_ids("", 0).await.is_empty(), "snapshots left");
    assert_eq!(
        set(x.all_volume_ids(0).await),
        set(vec![other.volume_id.clone(), restored.volume_id.clone(), cloned.volume_id.clone()])
    );
    for id in [&other.volume_id, &restored.volume_id, &cloned.volume_id] {
        x.delete(id).await;
    }
    let mut all: Vec<&str> = everything.iter().map(String::as_str).collect();
    all.extend([other.volume_id.as_str(), restored.volume_id.as_str(), cloned.volume_id.as_str()]);
    x.assert_images_gone(&all);
}

/// ListSnapshots filtered by source volume, in pages: every snapshot of the source exactly once,
/// whatever the page size (the snapshots of two sources interleave in the listing order).
pub async fn snapshot_pages_by_source(p: &Plugin, b: Backend) {
    let mut x = Ctx::new(p, b).await;
    let a = x.create_mount("pga", MIB).await;
    let c = x.create_mount("pgc", MIB).await;
    let mut of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (src, n) in [(&a, 8), (&c, 4)] {
        for i in 0..n {
            let s = x.snapshot(&unique(&format!("pg{i}")), &src.volume_id).await;
            of.entry(src.volume_id.clone()).or_default().insert(s.snapshot_id);
        }
    }
    let mut problems = Vec::new();
    for (src, want) in &of {
        for max in 1..=12 {
            let got = x.all_snapshot_ids(src, max).await;
            let got_set: BTreeSet<String> = got.iter().cloned().collect();
            if got.len() != want.len() || got_set != *want {
                let missing: Vec<_> = want.difference(&got_set).collect();
                problems.push(format!(
                    "source {src}, max_entries {max}: {} of {} listed, missing {missing:?}",
                    got.len(),
                    want.len()
                ));
            }
        }
    }
    for ids in of.values() {
        for id in ids {
            x.delete_snapshot(id).await;
        }
    }
    x.delete(&a.volume_id).await;
    x.delete(&c.volume_id).await;
    assert!(problems.is_empty(), "ListSnapshots by source in pages lost snapshots:\n{}", problems.join("\n"));
}

// ------------------------------------------------------------------------------------------------
// Data through snapshots and clones
// ------------------------------------------------------------------------------------------------

/// A file written to a mounted volume is in a volume restored from its snapshot and in a clone,
/// byte for byte; the copies are independent of the source.
pub async fn data_survives_snapshot_and_clone(p: &Plugin, b: Backend) {
    let mut x = Ctx::new(p, b).await;
    let cap = mount_cap("ext4");
    let payload = pseudo_random(1_500_000, 42);
    let src = x.create_mount("datasrc", 64 * MIB).await;
    let m = x.mount(&src, &cap, "datasrc").await;
    assert_eq!(fs_type_at(&m.staging).as_deref(), Some("ext4"));
    std::fs::create_dir_all(m.target.join("dir")).unwrap_or_else(|e| panic!("mkdir: {e}"));
    write_file(&m.target.join("dir/data.bin"), &payload);
    x.unmount(&m).await;
    x.assert_no_mounts("after unstaging the source");

    // Snapshot, then a volume from the snapshot.
    let snap = x.snapshot(&unique("datasnap"), &src.volume_id).await;
    let mut req = create_req(&unique("datarestore"), 64 * MIB, cap.clone());
    req.volume_content_source = Some(snapshot_source(&snap.snapshot_id));
    let restored = x.create(req).await;
    // A clone of the source volume, larger than it.
    let mut req = create_req(&unique("dataclone"), 96 * MIB, cap.clone());
    req.volume_content_source = Some(volume_source(&src.volume_id));
    let cloned = x.create(req).await;
    assert_eq!(cloned.capacity_bytes, 96 * MIB);

    // Change the source after the copies were made: they must not see it.
    let m = x.mount(&src, &cap, "datasrc2").await;
    write_file(&m.target.join("dir/data.bin"), b"changed after the snapshot");
    x.unmount(&m).await;

    for (vol, what) in [(&restored, "restored from the snapshot"), (&cloned, "cloned from the volume")] {
        let m = x.mount(vol, &cap, "datacopy").await;
        let got = read_file(&m.target.join("dir/data.bin"));
        assert!(got == payload, "the volume {what} has other bytes ({} bytes, want {})", got.len(), payload.len());
        // The copy is writable and its own.
        write_file(&m.target.join("dir/copy.txt"), what.as_bytes());
        x.unmount(&m).await;
    }
    x.assert_no_mounts("after unstaging the copies");

    // The source still has only its own change.
    let m = x.mount(&src, &cap, "datasrc3").await;
    assert_eq!(read_file(&m.target.join("dir/data.bin")), b"changed after the snapshot");
    assert!(!m.target.join("dir/copy.txt").exists(), "a copy's write reached the source");
    x.unmount(&m).await;

    x.delete_snapshot(&snap.snapshot_id).await;
    for v in [&src, &restored, &cloned] {
        x.delete(&v.volume_id).await;
    }
    x.assert_no_mounts("at the end");
    x.assert_images_gone(&[&snap.snapshot_id, &src.volume_id, &restored.volume_id, &cloned.volume_id]);
}

/// An xfs volume and its clone are mounted at the same time (same filesystem UUID: the driver
/// must mount xfs with `nouuid`, or the kernel refuses the second mount).
pub async fn xfs_clone_beside_its_source(p: &Plugin, b: Backend) {
    let mut x = Ctx::new(p, b).await;
    let cap = mount_cap("xfs");
    let src = x.create(create_req(&unique("xfssrc"), 512 * MIB, cap.clone())).await;
    let m = x.mount(&src, &cap, "xfssrc").await;
    write_file(&m.target.join("a.txt"), b"xfs source");
    x.unmount(&m).await;
    let mut req = create_req(&unique("xfsclone"), 512 * MIB, cap.clone());
    req.volume_content_source = Some(volume_source(&src.volume_id));
    let clone = x.create(req).await;
    let ms = x.mount(&src, &cap, "xfssrc2").await;
    let staging = x.p.path(&format!("staging/{}", unique("xfsclone")));
    let stage = x.stage_req(&clone, &staging, &cap);
    let staged = x.c.node.node_stage_volume(stage).await;
    let clone_ok = staged.is_ok();
    if clone_ok {
        assert_eq!(read_file(&staging.join("a.txt")), b"xfs source");
    }
    let unstage = pb::NodeUnstageVolumeRequest {
        volume_id: clone.volume_id.clone(),
        staging_target_path: staging.display().to_string(),
    };
    ok(x.c.node.node_unstage_volume(unstage).await, "NodeUnstageVolume of the clone");
    x.unmount(&ms).await;
    x.delete(&clone.volume_id).await;
    x.delete(&src.volume_id).await;
    x.assert_no_mounts("at the end");
    if let Err(s) = staged {
        panic!("an xfs clone cannot be staged while its source is mounted: {:?}: {}", s.code(), s.message());
    }
}

/// NodeUnstageVolume means detached: a DeleteVolume right after it succeeds at the first call
/// (no "still attached" while the node lets go of the image in the background). The window is
/// short, so: three rounds of four volumes unstaged and deleted at the same time.
pub async fn unstage_then_delete_at_once(p: &Plugin, b: Backend) {
    let mut x = Ctx::new(p, b).await;
    let cap = mount_cap("ext4");
    let mut refused = Vec::new();
    for round in 0..3 {
        let mut mounted = Vec::new();
        for i in 0..4 {
            let vol = x.create_mount(&format!("detach{round}-{i}"), 16 * MIB).await;
            let m = x.mount(&vol, &cap, "detach").await;
            write_file(&m.target.join("f"), b"x");
            mounted.push(m);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for m in mounted {
            let (mut node, mut ctl) = (x.c.node.clone(), x.c.controller.clone());
            tasks.spawn(async move {
                let what = format!("round {round}, {}", m.volume_id);
                let unpublish = pb::NodeUnpublishVolumeRequest {
                    volume_id: m.volume_id.clone(),
                    target_path: m.target.display().to_string(),
                };
                ok(node.node_unpublish_volume(unpublish).await, &format!("{what}: unpublish"));
                let unstage = pb::NodeUnstageVolumeRequest {
                    volume_id: m.volume_id.clone(),
                    staging_target_path: m.staging.display().to_string(),
                };
                ok(node.node_unstage_volume(unstage).await, &format!("{what}: unstage"));
                let req = pb::DeleteVolumeRequest { volume_id: m.volume_id.clone(), ..Default::default() };
                let first =
                    ctl.delete_volume(req).await.err().map(|s| format!("{what}: {:?}: {}", s.code(), s.message()));
                (m.volume_id, first)
            });
        }
        while let Some(r) = tasks.join_next().await {
            let (id, first) = r.unwrap_or_else(|e| panic!("a task failed: {e}"));
            if let Some(e) = first {
                refused.push(e);
                x.delete(&id).await;
            }
        }
    }
    x.assert_no_mounts("at the end");
    assert!(refused.is_empty(), "DeleteVolume right after NodeUnstageVolume was refused:\n{}", refused.join("\n"));
}

// ------------------------------------------------------------------------------------------------
// Expansion
// ------------------------------------------------------------------------------------------------

/// ControllerExpandVolume's validation; a staged, published ext4 volume grows online from 64 to
/// 128 MiB; a smaller size is a no-op.
pub async fn expansion(p: &Plugin, b: Backend) {
    let mut x = Ctx::new(p, b).await;
    let cap = mount_cap("ext4");
    let expand = |id: &str, bytes: Option<i64>| pb::ControllerExpandVolumeRequest {
        volume_id: id.into(),
        capacity_range: bytes.map(|b| pb::CapacityRange { required_bytes: b, limit_bytes: 0 }),
        volume_capability: Some(mount_cap("ext4")),
        ..Default::default()
    };
    fails(x.c.controller.controller_expand_volume(expand("", Some(128 * MIB))).await, Code::InvalidArgument, "no id");
    let vol = x.create_mount("grow", 64 * MIB).await;
    fails(
        x.c.controller.controller_expand_volume(expand(&vol.volume_id, None)).await,
        Code::InvalidArgument,
        "no range",
    );
    fails(
        x.c.controller.controller_expand_volume(expand(&unknown_volume_id(b), Some(128 * MIB))).await,
        Code::NotFound,
        "ControllerExpandVolume of an unknown volume",
    );

    let m = x.mount(&vol, &cap, "grow").await;
    write_file(&m.target.join("before.txt"), b"written at 64 MiB");
    let before = usage(&x.stats(&vol.volume_id, &m.target).await, pb::volume_usage::Unit::Bytes).total;

    let r = ok(x.c.controller.controller_expand_volume(expand(&vol.volume_id, Some(128 * MIB))).await, "expand");
    assert_eq!(r.capacity_bytes, 128 * MIB);
    assert!(r.node_expansion_required, "a mounted filesystem needs NodeExpandVolume");
    let again = ok(x.c.controller.controller_expand_volume(expand(&vol.volume_id, Some(128 * MIB))).await, "again");
    assert_eq!(again.capacity_bytes, 128 * MIB, "ControllerExpandVolume is idempotent");

    let node_expand = |volume_id: &str, path: &Path| pb::NodeExpandVolumeRequest {
        volume_id: volume_id.into(),
        volume_path: path.display().to_string(),
        capacity_range: Some(pb::CapacityRange { required_bytes: 128 * MIB, limit_bytes: 0 }),
        staging_target_path: m.staging.display().to_string(),
        volume_capability: Some(cap.clone()),
        ..Default::default()
    };
    fails(
        x.c.node.node_expand_volume(node_expand("", &m.target)).await,
        Code::InvalidArgument,
        "NodeExpand without id",
    );
    fails(
        x.c.node.node_expand_volume(node_expand(&unknown_volume_id(b), &m.target)).await,
        Code::NotFound,
        "NodeExpandVolume of a volume not staged here",
    );
    let m = if has_cap_sys_resource() {
        // Online: the mounted filesystem grows in place.
        let n = ok(x.c.node.node_expand_volume(node_expand(&vol.volume_id, &m.target)).await, "NodeExpandVolume");
        assert_eq!(n.capacity_bytes, 128 * MIB, "NodeExpandVolume's capacity");
        // Idempotent on the node too.
        ok(x.c.node.node_expand_volume(node_expand(&vol.volume_id, &m.target)).await, "NodeExpandVolume again");
        m
    } else {
        // Without CAP_SYS_RESOURCE the kernel refuses online ext4 growth: the driver says so
        // (FAILED_PRECONDITION, the spec's "cannot grow while staged") and grows the
        // filesystem offline when the volume is staged again.
        fails(
            x.c.node.node_expand_volume(node_expand(&vol.volume_id, &m.target)).await,
            Code::FailedPrecondition,
            "NodeExpandVolume of mounted ext4 without CAP_SYS_RESOURCE",
        );
        x.unmount(&m).await;
        x.mount(&vol, &cap, "grow-restaged").await
    };
    let after = usage(&x.stats(&vol.volume_id, &m.target).await, pb::volume_usage::Unit::Bytes).total;
    let grown = after - before;
    assert!((56 * MIB..=72 * MIB).contains(&grown), "the filesystem grew by {grown} bytes ({before} → {after})");
    assert_eq!(read_file(&m.target.join("before.txt")), b"written at 64 MiB");
    // More than the old filesystem could hold.
    write_file(&m.target.join("big.bin"), &pseudo_random(80 << 20, 7));

    // Smaller: nothing happens, the current capacity is the answer.
    let r = ok(x.c.controller.controller_expand_volume(expand(&vol.volume_id, Some(32 * MIB))).await, "shrink");
    assert_eq!(r.capacity_bytes, 128 * MIB, "a smaller size is a no-op");
    let got = ok(
        x.c.controller.controller_get_volume(pb::ControllerGetVolumeRequest { volume_id: vol.volume_id.clone() }).await,
        "ControllerGetVolume",
    );
    assert_eq!(got.volume.map(|v| v.capacity_bytes), Some(128 * MIB));

    x.unmount(&m).await;
    x.assert_no_mounts("after unstaging");
    // The grown filesystem mounts again with the data.
    let m = x.mount(&vol, &cap, "grow2").await;
    assert_eq!(read_file(&m.target.join("big.bin")).len(), 80 << 20);
    x.unmount(&m).await;
    x.delete(&vol.volume_id).await;
    x.assert_no_mounts("at the end");
    x.assert_images_gone(&[&vol.volume_id]);
}

// ------------------------------------------------------------------------------------------------
// Node
// ------------------------------------------------------------------------------------------------

/// NodeGetInfo (the plugin runs with [`NODE_ARGS`]), NodeGetCapabilities, Stage/Publish
/// validation and idempotency, read-only publish, NodeGetVolumeStats.
pub async fn node_service(p: &Plugin, b: Backend) {
    let mut x = Ctx::new(p, b).await;
    let info = ok(x.c.node.node_get_info(pb::NodeGetInfoRequest {}).await, "NodeGetInfo");
    assert_eq!(info.node_id, "node-1");
    assert_eq!(info.max_volumes_per_node, 17);
    let topo = info.accessible_topology.unwrap_or_else(|| panic!("no topology though --node-topology was given"));
    assert_eq!(topo.segments, HashMap::from([(TOPOLOGY_KEY.to_string(), TOPOLOGY_VALUE.to_string())]));

    let caps = ok(x.c.node.node_get_capabilities(pb::NodeGetCapabilitiesRequest {}).await, "NodeGetCapabilities");
    let got: BTreeSet<i32> = caps
        .capabilities
        .iter()
        .filter_map(|c| c.r#type.as_ref().map(|pb::node_service_capability::Type::Rpc(r)| r.r#type))
        .collect();
    for want in [NodeCap::StageUnstageVolume, NodeCap::GetVolumeStats, NodeCap::ExpandVolume] {
        assert!(got.contains(&(want as i32)), "{want:?} missing");
    }

    let cap = mount_cap("ext4");
    let vol = x.create_mount("node", 64 * MIB).await;
    let idle = x.create_mount("idle", 16 * MIB).await;
    let staging = x.p.path(&format!("staging/{}", unique("node")));

    // NodeStageVolume's arguments.
    let good = x.stage_req(&vol, &staging, &cap);
    let mut r = good.clone();
    r.volume_id.clear();
    fails(x.c.node.node_stage_volume(r).await, Code::InvalidArgument, "stage without a volume id");
    let mut r = good.clone();
    r.staging_target_path.clear();
    fails(x.c.node.node_stage_volume(r).await, Code::InvalidArgument, "stage without a staging path");
    let mut r = good.clone();
    r.volume_capability = None;
    fails(x.c.node.node_stage_volume(r).await, Code::InvalidArgument, "stage without a capability");
    let mut r = good.clone();
    r.staging_target_path = "relative/path".into();
    fails(x.c.node.node_stage_volume(r).await, Code::InvalidArgument, "stage at a relative path");
    let mut r = good.clone();
    r.volume_id = unknown_volume_id(b);
    fails(x.c.node.node_stage_volume(r).await, Code::NotFound, "stage an unknown volume");
    x.assert_no_mounts("after the refused stages");

    // Stage; again at the same path is OK; at another path ALREADY_EXISTS.
    ok(x.c.node.node_stage_volume(good.clone()).await, "stage");
    assert_eq!(fs_type_at(&staging).as_deref(), Some("ext4"));
    ok(x.c.node.node_stage_volume(good.clone()).await, "stage again");
    let mut elsewhere = good.clone();
    elsewhere.staging_target_path = x.p.path(&format!("staging/{}", unique("other"))).display().to_string();
    fails(x.c.node.node_stage_volume(elsewhere).await, Code::AlreadyExists, "stage at another path");

    // Publish: without stage FAILED_PRECONDITION; twice OK; read-only is read-only.
    let m =
        Mounted { volume_id: vol.volume_id.clone(), staging: staging.clone(), target: x.p.path("pods/node/rw"), cap };
    let idle_m = Mounted { volume_id: idle.volume_id.clone(), staging: x.p.path("staging/idle"), ..m.clone() };
    fails(
        x.c.node.node_publish_volume(x.publish_req(&idle_m, &x.p.path("pods/idle/vol"), false)).await,
        Code::FailedPrecondition,
        "publish a volume that is not staged",
    );
    let mut r = x.publish_req(&m, &m.target, false);
    r.target_path.clear();
    fails(x.c.node.node_publish_volume(r).await, Code::InvalidArgument, "publish without a target");
    let mut r = x.publish_req(&m, &m.target, false);
    r.volume_capability = None;
    fails(x.c.node.node_publish_volume(r).await, Code::InvalidArgument, "publish without a capability");
    ok(x.c.node.node_publish_volume(x.publish_req(&m, &m.target, false)).await, "publish");
    ok(x.c.node.node_publish_volume(x.publish_req(&m, &m.target, false)).await, "publish again");
    write_file(&m.target.join("hello.txt"), b"hello");
    let ro = x.p.path("pods/node/ro");
    ok(x.c.node.node_publish_volume(x.publish_req(&m, &ro, true)).await, "publish read-only");
    ok(x.c.node.node_publish_volume(x.publish_req(&m, &ro, true)).await, "publish read-only again");
    assert_eq!(read_file(&ro.join("hello.txt")), b"hello");
    match std::fs::write(ro.join("nope.txt"), b"x") {
        Ok(()) => panic!("wrote through a read-only publish"),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}"),
    }

    // NodeGetVolumeStats.
    let st = x.stats(&vol.volume_id, &m.target).await;
    let bytes = usage(&st, pb::volume_usage::Unit::Bytes);
    let inodes = usage(&st, pb::volume_usage::Unit::Inodes);
    assert!(bytes.total > 48 * MIB && bytes.total <= 64 * MIB, "{bytes:?}");
    assert!(bytes.available > 0 && bytes.used > 0 && bytes.available < bytes.total, "{bytes:?}");
    assert!(inodes.total > 0 && inodes.used > 0 && inodes.available > 0, "{inodes:?}");
    assert!(st.volume_condition.as_ref().is_some_and(|c| !c.abnormal), "{:?}", st.volume_condition);
    let stats = |id: &str, path: &str| pb::NodeGetVolumeStatsRequest {
        volume_id: id.into(),
        volume_path: path.into(),
        ..Default::default()
    };
    let missing = x.p.path("pods/nothing/here").display().to_string();
    fails(
        x.c.node.node_get_volume_stats(stats(&vol.volume_id, &missing)).await,
        Code::NotFound,
        "stats of a missing path",
    );
    let target = m.target.display().to_string();
    fails(x.c.node.node_get_volume_stats(stats("", &target)).await, Code::InvalidArgument, "stats without a volume id");
    fails(
        x.c.node.node_get_volume_stats(stats(&vol.volume_id, "")).await,
        Code::InvalidArgument,
        "stats without a path",
    );

    // Unpublish and unstage, each twice; unstage of a volume never staged.
    for t in [&ro, &m.target] {
        x.unpublish(&m, t).await;
        x.unpublish(&m, t).await;
        assert!(!t.exists(), "{} left after unpublish", t.display());
    }
    let mut r = pb::NodeUnpublishVolumeRequest { volume_id: String::new(), target_path: target.clone() };
    fails(x.c.node.node_unpublish_volume(r.clone()).await, Code::InvalidArgument, "unpublish without a volume id");
    r.volume_id = vol.volume_id.clone();
    r.target_path.clear();
    fails(x.c.node.node_unpublish_volume(r).await, Code::InvalidArgument, "unpublish without a target");
    let unstage =
        |id: &str, path: &str| pb::NodeUnstageVolumeRequest { volume_id: id.into(), staging_target_path: path.into() };
    let staging_s = staging.display().to_string();
    fails(x.c.node.node_unstage_volume(unstage("", &staging_s)).await, Code::InvalidArgument, "unstage without an id");
    fails(
        x.c.node.node_unstage_volume(unstage(&vol.volume_id, "")).await,
        Code::InvalidArgument,
        "unstage without a path",
    );
    x.unstage(&m).await;
    x.unstage(&m).await;
    x.unstage(&idle_m).await;
    x.assert_no_mounts("after unstaging");

    // Staged again (no reformat), the data is there.
    let m2 = x.mount(&vol, &mount_cap("ext4"), "node2").await;
    assert_eq!(read_file(&m2.target.join("hello.txt")), b"hello");
    x.unmount(&m2).await;
    x.assert_no_mounts("at the end");
    x.delete(&vol.volume_id).await;
    x.delete(&idle.volume_id).await;
}

/// A raw block volume: the published target is a block device of the volume's size; bytes
/// written through it are there after unstage and stage; it grows online.
pub async fn node_block_volume(p: &Plugin, b: Backend) {
    let mut x = Ctx::new(p, b).await;
    let cap = block_cap();
    let vol = x.create(create_req(&unique("block"), 16 * MIB, cap.clone())).await;
    let m = x.mount(&vol, &cap, "block").await;
    let meta = std::fs::metadata(&m.target).unwrap_or_else(|e| panic!("stat {}: {e}", m.target.display()));
    assert!(meta.file_type().is_block_device(), "{} is not a block device", m.target.display());
    let open = |path: &Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
    };
    let mut dev = open(&m.target);
    assert_eq!(dev.seek(SeekFrom::End(0)).unwrap_or_else(|e| panic!("seek: {e}")), 16 << 20, "device size");
    let offset = (5 << 20) + 4096;
    let bytes = pseudo_random(8192, 3);
    dev.seek(SeekFrom::Start(offset)).unwrap_or_else(|e| panic!("seek: {e}"));
    dev.write_all(&bytes).unwrap_or_else(|e| panic!("write: {e}"));
    dev.sync_all().unwrap_or_else(|e| panic!("sync: {e}"));
    drop(dev);
    let read_at = |path: &Path| {
        let mut f = open(path);
        let mut buf = vec![0u8; 8192];
        f.seek(SeekFrom::Start(offset)).unwrap_or_else(|e| panic!("seek: {e}"));
        f.read_exact(&mut buf).unwrap_or_else(|e| panic!("read: {e}"));
        buf
    };
    assert!(read_at(&m.target) == bytes, "read back other bytes");
    let st = x.stats(&vol.volume_id, &m.target).await;
    assert_eq!(usage(&st, pb::volume_usage::Unit::Bytes).total, 16 * MIB, "block stats");
    // A second publish of a staged block volume is the same.
    ok(x.c.node.node_publish_volume(x.publish_req(&m, &m.target, false)).await, "publish again");
    x.unmount(&m).await;
    assert!(!m.target.exists(), "the block target file is left");
    x.assert_no_mounts("after unstaging");

    // The bytes reached the volume.
    let m = x.mount(&vol, &cap, "block2").await;
    assert!(read_at(&m.target) == bytes, "the bytes are not there after unstage and stage");

    // Online growth: no filesystem, so no node expansion is needed for the size; the node call
    // makes the device follow.
    let r = ok(
        x.c.controller
            .controller_expand_volume(pb::ControllerExpandVolumeRequest {
                volume_id: vol.volume_id.clone(),
                capacity_range: Some(pb::CapacityRange { required_bytes: 32 * MIB, limit_bytes: 0 }),
                volume_capability: Some(cap.clone()),
                ..Default::default()
            })
            .await,
        "ControllerExpandVolume (block)",
    );
    assert_eq!(r.capacity_bytes, 32 * MIB);
    assert!(!r.node_expansion_required, "a block volume needs no filesystem growth");
    let n = ok(
        x.c.node
            .node_expand_volume(pb::NodeExpandVolumeRequest {
                volume_id: vol.volume_id.clone(),
                volume_path: m.target.display().to_string(),
                staging_target_path: m.staging.display().to_string(),
                volume_capability: Some(cap.clone()),
                capacity_range: Some(pb::CapacityRange { required_bytes: 32 * MIB, limit_bytes: 0 }),
                ..Default::default()
            })
            .await,
        "NodeExpandVolume (block)",
    );
    assert_eq!(n.capacity_bytes, 32 * MIB);
    let size = open(&m.target).seek(SeekFrom::End(0)).unwrap_or_else(|e| panic!("seek: {e}"));
    assert_eq!(size, 32 << 20, "the published block device did not grow");
    assert!(read_at(&m.target) == bytes, "growth lost bytes");
    x.unmount(&m).await;
    x.assert_no_mounts("at the end");
    x.delete(&vol.volume_id).await;
    x.assert_images_gone(&[&vol.volume_id]);
}

/// A 512 MiB xfs volume is formatted with mkfs.xfs, mounted, written, grown online to 576 MiB,
/// and mounted again; staging it as ext4 is refused.
pub async fn node_xfs_volume(p: &Plugin, b: Backend) {
    let mut x = Ctx::new(p, b).await;
    let cap = mount_cap("xfs");
    let vol = x.create(create_req(&unique("xfs"), 512 * MIB, cap.clone())).await;
    let m = x.mount(&vol, &cap, "xfs").await;
    assert_eq!(fs_type_at(&m.staging).as_deref(), Some("xfs"));
    assert_eq!(fs_type_at(&m.target).as_deref(), Some("xfs"));
    write_file(&m.target.join("x.txt"), b"on xfs");
    let st = x.stats(&vol.volume_id, &m.target).await;
    let total = usage(&st, pb::volume_usage::Unit::Bytes).total;
    assert!(total > 400 * MIB && total <= 512 * MIB, "xfs total {total}");
    // xfs grows online (xfs_growfs needs CAP_SYS_ADMIN only): 512 → 576 MiB.
    let r = ok(
        x.c.controller
            .controller_expand_volume(pb::ControllerExpandVolumeRequest {
                volume_id: vol.volume_id.clone(),
                capacity_range: Some(pb::CapacityRange { required_bytes: 576 * MIB, limit_bytes: 0 }),
                volume_capability: Some(cap.clone()),
                ..Default::default()
            })
            .await,
        "ControllerExpandVolume (xfs)",
    );
    assert!(r.node_expansion_required && r.capacity_bytes == 576 * MIB, "{r:?}");
    let n = ok(
        x.c.node
            .node_expand_volume(pb::NodeExpandVolumeRequest {
                volume_id: vol.volume_id.clone(),
                volume_path: m.target.display().to_string(),
                staging_target_path: m.staging.display().to_string(),
                volume_capability: Some(cap.clone()),
                capacity_range: Some(pb::CapacityRange { required_bytes: 576 * MIB, limit_bytes: 0 }),
                ..Default::default()
            })
            .await,
        "NodeExpandVolume (xfs)",
    );
    assert_eq!(n.capacity_bytes, 576 * MIB);
    let grown = usage(&x.stats(&vol.volume_id, &m.target).await, pb::volume_usage::Unit::Bytes).total - total;
    assert!((56 * MIB..=72 * MIB).contains(&grown), "xfs grew online by {grown} bytes");
    x.unmount(&m).await;
    let m = x.mount(&vol, &cap, "xfs2").await;
    assert_eq!(read_file(&m.target.join("x.txt")), b"on xfs");
    // Staging it as ext4 would need a format: refused, the volume keeps its xfs.
    x.unmount(&m).await;
    let staging = x.p.path(&format!("staging/{}", unique("xfs-as-ext4")));
    let r = x.c.node.node_stage_volume(x.stage_req(&vol, &staging, &mount_cap("ext4"))).await;
    fails(r, Code::FailedPrecondition, "stage an xfs volume as ext4");
    x.assert_no_mounts("after the refused stage");
    x.delete(&vol.volume_id).await;
}

// ------------------------------------------------------------------------------------------------
// Idempotency under concurrency
// ------------------------------------------------------------------------------------------------

type Ctl = pb::controller_client::ControllerClient<Channel>;

/// Why calls were ABORTED (printed by [`concurrent_creates`]).
static ABORTED_KINDS: std::sync::Mutex<BTreeMap<&'static str, u32>> = std::sync::Mutex::new(BTreeMap::new());

/// Retries a call answered ABORTED (what the sidecars do); any other error fails the test.
/// Returns the result and how many ABORTED came first.
async fn retry_aborted<T, F, Fut>(what: &str, mut call: F) -> (T, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Response<T>, Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut aborted = 0;
    loop {
        match call().await {
            Ok(r) => return (r.into_inner(), aborted),
            Err(s) if s.code() == Code::Aborted && Instant::now() < deadline => {
                assert!(!s.message().is_empty(), "{what}: ABORTED without a message");
                let kind = if s.message().contains("in progress") {
                    "same name or id in flight"
                } else if s.message().contains("kept changing") {
                    "journal contention"
                } else {
                    "other"
                };
                *ABORTED_KINDS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(kind).or_default() += 1;
                aborted += 1;
                tokio::time::sleep(Duration::from_millis(10 + u64::from(aborted.min(10)) * 10)).await;
            }
            Err(s) => panic!("{what}: {:?}: {}", s.code(), s.message()),
        }
    }
}

/// The journal's omap keys (volumes, then snapshots) as the store has them. On the local
/// backend the plugin holds the journal open, so this stops the plugin first.
pub async fn journal_keys(p: &mut Plugin, b: Backend, namespace: &str) -> Vec<String> {
    use cyvault_store::{ObjectRef, ObjectStore, OmapQuery, StoreError};
    let (store, pool): (Arc<dyn ObjectStore>, String) = match b {
        Backend::Local => {
            p.stop();
            let dir = p.path("data/csi/journal");
            let store = cyvault_store::LocalStore::open(&dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
            (Arc::new(store), "csi".into())
        }
        Backend::Rados => {
            let conf = std::env::var("CYVAULT_CEPH_CONF").unwrap_or_else(|_| panic!("CYVAULT_CEPH_CONF is not set"));
            let id = std::env::var("CYVAULT_CEPH_ID").unwrap_or_else(|_| "admin".into());
            let store = cyvault_store::RadosStore::connect(&cyvault_store::RadosConfig::new(conf, id))
                .await
                .unwrap_or_else(|e| panic!("connect: {e}"));
            (Arc::new(store), b.pool())
        }
    };
    let mut keys = Vec::new();
    for object in [VOLUMES_OBJECT, SNAPSHOTS_OBJECT] {
        let obj = ObjectRef::new(&pool, namespace, object);
        let mut after = None;
        loop {
            let q = OmapQuery { start_after: after.clone(), prefix: None, max: 1000 };
            match store.omap_list(&obj, &q).await {
                Ok(page) => {
                    after = page.entries.last().map(|(k, _)| k.clone());
                    keys.extend(page.entries.into_iter().map(|(k, _)| format!("{object}/{k}")));
                    if !page.more {
                        break;
                    }
                }
                Err(StoreError::NotFound(_)) => break,
                Err(e) => panic!("list the journal {object}: {e}"),
            }
        }
    }
    keys
}

/// 50 concurrent CreateVolume calls for 40 names (10 of them asked twice at the same time):
/// every call ends OK (after ABORTED retries), one volume per name, exactly 40 images; then 40
/// concurrent deletes leave no image and no journal entry. Stops the plugin at the end (local:
/// to read its journal).
pub async fn concurrent_creates(p: &mut Plugin, b: Backend, journal_namespace: &str) {
    let mut x = Ctx::new(p, b).await;
    let names: Vec<String> = (0..40).map(|i| unique(&format!("conc{i}"))).collect();
    let mut calls: Vec<String> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        calls.push(n.clone());
        if i < 10 {
            calls.push(n.clone());
        }
    }
    assert_eq!(calls.len(), 50);
    let barrier = Arc::new(tokio::sync::Barrier::new(calls.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for name in calls {
        let ctl: Ctl = x.c.controller.clone();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            let req = create_req(&name, 8 * MIB, mount_cap("ext4"));
            let (r, aborted) = retry_aborted(&format!("CreateVolume {name}"), || {
                let (mut ctl, req) = (ctl.clone(), req.clone());
                async move { ctl.create_volume(req).await }
            })
            .await;
            let vol = r.volume.unwrap_or_else(|| panic!("CreateVolume {name}: no volume"));
            assert_eq!(vol.capacity_bytes, 8 * MIB);
            (name, vol.volume_id, aborted)
        });
    }
    let mut by_name: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut aborted_total = 0;
    let mut answered = 0;
    while let Some(r) = tasks.join_next().await {
        let (name, id, aborted) = r.unwrap_or_else(|e| panic!("a create task failed: {e}"));
        by_name.entry(name).or_default().insert(id);
        aborted_total += aborted;
        answered += 1;
    }
    let kinds = std::mem::take(&mut *ABORTED_KINDS.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    eprintln!("{}: 50 concurrent creates answered, {aborted_total} ABORTED on the way: {kinds:?}", b.label());
    assert_eq!(answered, 50);
    assert_eq!(by_name.len(), 40);
    for (name, ids) in &by_name {
        assert_eq!(ids.len(), 1, "{name} has several volumes: {ids:?}");
    }
    let ids: BTreeSet<String> = by_name.values().flatten().cloned().collect();
    assert_eq!(ids.len(), 40, "40 distinct volume ids");
    let want_images: BTreeSet<String> = ids.iter().map(|i| image_of(i)).collect();
    let images = b.images(x.p);
    match b {
        // The plugin's own pool directory: every image in it, none other.
        Backend::Local => assert_eq!(images, want_images, "images on disk"),
        // The shared pool: all of ours are there.
        Backend::Rados => {
            let ours: BTreeSet<String> = images.intersection(&want_images).cloned().collect();
            assert_eq!(ours, want_images, "images in the pool");
        }
    }
    let listed: BTreeSet<String> = x.all_volume_ids(7).await.into_iter().collect();
    assert_eq!(listed, ids, "ListVolumes");

    // Delete them all at once (and each twice, racing itself).
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids.iter().chain(ids.iter().take(10)) {
        let ctl: Ctl = x.c.controller.clone();
        let id = id.clone();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            let req = pb::DeleteVolumeRequest { volume_id: id.clone(), ..Default::default() };
            retry_aborted(&format!("DeleteVolume {id}"), || {
                let (mut ctl, req) = (ctl.clone(), req.clone());
                async move { ctl.delete_volume(req).await }
            })
            .await;
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap_or_else(|e| panic!("a delete task failed: {e}"));
    }
    assert!(x.all_volume_ids(0).await.is_empty(), "volumes listed after deleting all");
    let images = b.images(x.p);
    let left: Vec<_> = images.intersection(&want_images).collect();
    assert!(left.is_empty(), "images left after deleting all: {left:?}");
    if b == Backend::Local {
        assert!(images.is_empty(), "orphan images: {images:?}");
    }
    drop(x);
    let keys = journal_keys(p, b, journal_namespace).await;
    assert!(keys.is_empty(), "journal entries left after deleting every volume: {keys:?}");
}

// ------------------------------------------------------------------------------------------------
// Restart safety
// ------------------------------------------------------------------------------------------------

/// SIGTERM: exit 0, socket removed. A stale socket file is replaced at the next start, and what
/// was created before is still there. A second plugin never takes over a live socket.
pub async fn restart_safety(p: &mut Plugin, b: Backend) {
    let mut x = Ctx::new(p, b).await;
    let name = unique("restart");
    let req = create_req(&name, 16 * MIB, mount_cap("ext4"));
    let vol = x.create(req.clone()).await;
    let other = x.create_mount("restart2", 8 * MIB).await;
    let snap = x.snapshot(&unique("restartsnap"), &vol.volume_id).await;
    drop(x);

    let socket = p.socket.clone();
    assert!(socket.exists());
    let status = p.stop().unwrap_or_else(|| panic!("the plugin was not running"));
    assert_eq!(status.code(), Some(0), "SIGTERM: {status:?}");
    assert!(!socket.exists(), "the plugin left its socket behind");

    // A stale socket file (nobody listens): the next start replaces it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap_or_else(|e| panic!("bind {}: {e}", socket.display())));
    assert!(socket.exists());
    p.spawn();
    let mut x = Ctx::new(p, b).await;
    let probe = ok(x.c.identity.probe(pb::ProbeRequest {}).await, "Probe after restart");
    assert_eq!(probe.ready, Some(true));
    let listed: BTreeSet<String> = x.all_volume_ids(0).await.into_iter().collect();
    assert_eq!(listed, BTreeSet::from([vol.volume_id.clone(), other.volume_id.clone()]), "volumes after restart");
    assert_eq!(x.all_snapshot_ids("", 0).await, vec![snap.snapshot_id.clone()], "snapshots after restart");
    assert_eq!(x.create(req).await.volume_id, vol.volume_id, "CreateVolume after restart is the same volume");

    // A second plugin on the same socket (and dirs) is refused and leaves the first serving.
    let mut second = Command::new(env!("CARGO_BIN_EXE_cyvault"))
        .arg("--log")
        .arg("warn")
        .args(&x.p.args)
        .env_remove("CYVAULT_BACKEND")
        .env_remove("CYVAULT_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn a second plugin: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = second.try_wait().unwrap_or_else(|e| panic!("wait: {e}")) {
            break s;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second plugin on a live socket kept running");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut err = String::new();
    if let Some(mut s) = second.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    assert!(!status.success(), "a second plugin on a live socket exited 0: {err}");
    assert!(!err.trim().is_empty(), "a refused second plugin said nothing");
    let mut fresh = x.p.clients().await;
    ok(fresh.identity.probe(pb::ProbeRequest {}).await, "the first plugin still serves");

    x.delete_snapshot(&snap.snapshot_id).await;
    x.delete(&vol.volume_id).await;
    x.delete(&other.volume_id).await;
    drop(x);
    let status = p.stop().unwrap_or_else(|| panic!("the plugin was not running"));
    assert_eq!(status.code(), Some(0), "second SIGTERM: {status:?}");
    assert!(!socket.exists(), "the plugin left its socket behind");
}

/// A volume staged and published before a restart.
///
/// Local backend (loop devices are kernel state): the kubelet's retried NodeStageVolume and
/// NodePublishVolume answer OK and the pod's path keeps working (old data read, new data
/// written). RADOS through FUSE: the attachment lived in the old process (documented in
/// node_rpc.rs), so the pod's path is dead; what must work is the recovery the kubelet does when
/// the pod restarts: NodeUnpublishVolume and NodeUnstageVolume answer OK and leave no mount and
/// no loop device, and a fresh stage shows every byte synced before the restart.
pub async fn restart_with_a_staged_volume(p: &mut Plugin, b: Backend) {
    let mut x = Ctx::new(p, b).await;
    let cap = mount_cap("ext4");
    let vol = x.create_mount("staged-restart", 32 * MIB).await;
    let m = x.mount(&vol, &cap, "staged-restart").await;
    write_file(&m.target.join("before.txt"), b"before the restart");
    drop(x);
    let status = p.stop().unwrap_or_else(|| panic!("the plugin was not running"));
    assert_eq!(status.code(), Some(0), "SIGTERM with a staged volume: {status:?}");
    if b == Backend::Rados {
        // The process is gone, so its images must be closed: a watch left behind holds the
        // exclusive lock until the OSD times it out (30 s), and the next stage waits that long.
        let image = image_of(&vol.volume_id);
        let st = ceph_tool("rbd", &["status", "-p", &b.pool(), &image, "--format", "json"]);
        assert!(
            st.replace(' ', "").contains("\"watchers\":[]"),
            "the plugin exited on SIGTERM without closing the image of a staged volume \
             (watchers of {image} after exit: {st})"
        );
    }
    p.spawn();
    let mut x = Ctx::new(p, b).await;
    if b == Backend::Local {
        let stage = x.stage_req(&vol, &m.staging, &cap);
        ok(x.c.node.node_stage_volume(stage).await, "NodeStageVolume after restart");
        ok(x.c.node.node_publish_volume(x.publish_req(&m, &m.target, false)).await, "NodePublishVolume after restart");
        assert_eq!(read_file(&m.target.join("before.txt")), b"before the restart", "read after restart");
        write_file(&m.target.join("after.txt"), b"after the restart");
    }
    x.unmount(&m).await;
    x.assert_no_mounts("after unstaging what the old process staged");
    let prefix = x.p.dir.path().display().to_string();
    let loops = Command::new("losetup").arg("-a").output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let stale: Vec<String> =
        loops.unwrap_or_default().lines().filter(|l| l.contains(&prefix)).map(str::to_owned).collect();
    assert!(stale.is_empty(), "loop devices left over the plugin's files: {stale:?}");
    let m = x.mount(&vol, &cap, "staged-restart2").await;
    assert_eq!(read_file(&m.target.join("before.txt")), b"before the restart", "data synced before the restart");
    if b == Backend::Local {
        assert_eq!(read_file(&m.target.join("after.txt")), b"after the restart");
    }
    x.unmount(&m).await;
    x.assert_no_mounts("at the end");
    x.delete(&vol.volume_id).await;
}
