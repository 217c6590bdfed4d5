//! Ceph tier: the CSI plugin on RADOS, driven over its socket like the sidecars and the kubelet
//! would: real RBD images, attached through librbd over FUSE + a loop device, formatted, mounted,
//! bound into "pods", written, detached, attached again, grown, snapshotted and cloned, then
//! deleted, and proven gone (no image in `rbd ls`, no journal key in omap, no mount, no loop
//! device).
//!
//! Needs the dev cluster (`CYVAULT_CEPH_CONF`, `CYVAULT_CEPH_ID`, `CYVAULT_RBD_POOL`); without it
//! every test fails, none skips. Each test's plugin has a journal namespace of its own.

mod common;

use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::csi::{Clients, Plugin, block_cap, create_req, mount_cap, mounts_under};
use common::unique;
use cyvault_proto::csi::v1 as pb;

const GIB: i64 = 1 << 30;
const MIB: usize = 1 << 20;

/// The dev cluster the test runs on.
#[derive(Clone, Debug)]
struct Ceph {
    conf: String,
    id: String,
    pool: String,
}

fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: the Ceph tier needs the dev cluster; run it through scripts/test (or start \
             scripts/dev-cluster and eval its `env` output)"
        ),
    }
}

impl Ceph {
    fn from_env() -> Ceph {
        Ceph { conf: env("CYVAULT_CEPH_CONF"), id: env("CYVAULT_CEPH_ID"), pool: env("CYVAULT_RBD_POOL") }
    }

    /// Runs a Ceph tool with this cluster's conf and id; its stdout, or the panic saying why not.
    fn tool(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new(program)
            .arg("-c")
            .arg(&self.conf)
            .arg("--id")
            .arg(&self.id)
            .args(args)
            .env_remove("CEPH_ARGS")
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{program} {}: {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// `rbd -p POOL ls`.
    fn images(&self) -> Vec<String> {
        self.tool("rbd", &["-p", &self.pool, "ls"])
            .unwrap_or_else(|e| panic!("{e}"))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The omap keys of a journal object (`rados -N NS listomapkeys OBJ`); none when the object
    /// does not exist.
    fn omap_keys(&self, namespace: &str, object: &str) -> Vec<String> {
        match self.tool("rados", &["-p", &self.pool, "-N", namespace, "listomapkeys", object]) {
            Ok(out) => out.lines().map(str::to_owned).collect(),
            Err(e) if e.contains("No such file") => vec![],
            Err(e) => panic!("{e}"),
        }
    }

    /// Force-removes images (after their snapshots): the safety net when a test failed half-way.
    fn purge(&self, images: &[String]) {
        for img in images {
            let spec = format!("{}/{img}", self.pool);
            let _ = self.tool("rbd", &["snap", "purge", &spec]);
            let _ = self.tool("rbd", &["rm", "--no-progress", &spec]);
        }
    }
}

/// Removes every image a test made if the test stops early, and always the (by then empty)
/// journal objects of the test's namespace. Declared before the [`Plugin`], so it drops after it
/// (the plugin first lets go of its mounts and images).
struct Leftovers {
    ceph: Ceph,
    namespace: String,
    images: Vec<String>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.ceph.purge(&self.images);
        }
        for object in ["cyv.csi.volumes", "cyv.csi.snapshots"] {
            let _ = self.ceph.tool("rados", &["-p", &self.ceph.pool, "-N", &self.namespace, "rm", object]);
        }
    }
}

/// `csi-vol-<uuid>` / `csi-snap-<uuid>`: the image behind a `cyv1:<kind>:<pool>:<uuid>` id.
fn image_of(id: &str) -> String {
    let uuid = uuid_of(id);
    if id.starts_with("cyv1:s:") { format!("csi-snap-{uuid}") } else { format!("csi-vol-{uuid}") }
}

fn uuid_of(id: &str) -> String {
    let uuid = id.rsplit(':').next().unwrap_or_default();
    assert_eq!(uuid.len(), 32, "{id} does not end in a 32-digit uuid");
    uuid.to_owned()
}

fn fail(what: &str) -> impl FnOnce(tonic::Status) -> String + '_ {
    move |s| format!("{what}: {:?}: {}", s.code(), s.message())
}

async fn create(c: &mut Clients, req: pb::CreateVolumeRequest) -> pb::Volume {
    let name = req.name.clone();
    c.controller
        .create_volume(req)
        .await
        .map_err(fail("CreateVolume"))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .into_inner()
        .volume
        .unwrap_or_else(|| panic!("CreateVolume {name}: no volume in the answer"))
}

async fn stage(c: &mut Clients, vol: &pb::Volume, staging: &Path, cap: pb::VolumeCapability) {
    c.node
        .node_stage_volume(pb::NodeStageVolumeRequest {
            volume_id: vol.volume_id.clone(),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(cap),
            volume_context: vol.volume_context.clone(),
            ..Default::default()
        })
        .await
        .map_err(fail("NodeStageVolume"))
        .unwrap_or_else(|e| panic!("{}: {e}", vol.volume_id));
}

async fn publish(c: &mut Clients, vol: &pb::Volume, staging: &Path, target: &Path, cap: pb::VolumeCapability) {
    c.node
        .node_publish_volume(pb::NodePublishVolumeRequest {
            volume_id: vol.volume_id.clone(),
            staging_target_path: staging.display().to_string(),
            target_path: target.display().to_string(),
            volume_capability: Some(cap),
            volume_context: vol.volume_context.clone(),
            ..Default::default()
        })
        .await
        .map_err(fail("NodePublishVolume"))
        .unwrap_or_else(|e| panic!("{}: {e}", vol.volume_id));
}

async fn unpublish(c: &mut Clients, vol: &pb::Volume, target: &Path) {
    c.node
        .node_unpublish_volume(pb::NodeUnpublishVolumeRequest {
            volume_id: vol.volume_id.clone(),
            target_path: target.display().to_string(),
        })
        .await
        .map_err(fail("NodeUnpublishVolume"))
        .unwrap_or_else(|e| panic!("{}: {e}", vol.volume_id));
}

async fn unstage(c: &mut Clients, vol: &pb::Volume, staging: &Path) {
    c.node
        .node_unstage_volume(pb::NodeUnstageVolumeRequest {
            volume_id: vol.volume_id.clone(),
            staging_target_path: staging.display().to_string(),
        })
        .await
        .map_err(fail("NodeUnstageVolume"))
        .unwrap_or_else(|e| panic!("{}: {e}", vol.volume_id));
}

async fn delete(c: &mut Clients, vol: &pb::Volume) {
    c.controller
        .delete_volume(pb::DeleteVolumeRequest { volume_id: vol.volume_id.clone(), ..Default::default() })
        .await
        .map_err(fail("DeleteVolume"))
        .unwrap_or_else(|e| panic!("{}: {e}", vol.volume_id));
}

async fn expand(c: &mut Clients, vol: &pb::Volume, bytes: i64, cap: pb::VolumeCapability, block: bool) {
    let r = c
        .controller
        .controller_expand_volume(pb::ControllerExpandVolumeRequest {
            volume_id: vol.volume_id.clone(),
            capacity_range: Some(pb::CapacityRange { required_bytes: bytes, limit_bytes: 0 }),
            volume_capability: Some(cap),
            ..Default::default()
        })
        .await
        .map_err(fail("ControllerExpandVolume"))
        .unwrap_or_else(|e| panic!("{}: {e}", vol.volume_id))
        .into_inner();
    assert_eq!(r.capacity_bytes, bytes, "ControllerExpandVolume capacity");
    assert_eq!(r.node_expansion_required, !block, "ControllerExpandVolume node_expansion_required");
}

async fn try_node_expand(
    c: &mut Clients,
    vol: &pb::Volume,
    staging: &Path,
    target: &Path,
    cap: pb::VolumeCapability,
) -> Result<i64, tonic::Status> {
    c.node
        .node_expand_volume(pb::NodeExpandVolumeRequest {
            volume_id: vol.volume_id.clone(),
            volume_path: target.display().to_string(),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(cap),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().capacity_bytes)
}

async fn node_expand(
    c: &mut Clients,
    vol: &pb::Volume,
    staging: &Path,
    target: &Path,
    cap: pb::VolumeCapability,
) -> i64 {
    try_node_expand(c, vol, staging, target, cap)
        .await
        .map_err(fail("NodeExpandVolume"))
        .unwrap_or_else(|e| panic!("{}: {e}", vol.volume_id))
}

/// Whether process `pid` has CAP_SYS_RESOURCE in its effective set, which online ext4 growth
/// (resize2fs on a mounted filesystem) needs. Some sandboxes, this project's CI machine among
/// them, withhold it even from root.
fn has_cap_sys_resource(pid: u32) -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| panic!("{e}"));
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no CapEff in /proc/{pid}/status"));
    eff & (1 << CAP_SYS_RESOURCE) != 0
}

/// Total bytes of the volume at `path` as NodeGetVolumeStats reports them.
async fn stats_total(c: &mut Clients, vol: &pb::Volume, path: &Path) -> i64 {
    let r = c
        .node
        .node_get_volume_stats(pb::NodeGetVolumeStatsRequest {
            volume_id: vol.volume_id.clone(),
            volume_path: path.display().to_string(),
            staging_target_path: String::new(),
        })
        .await
        .map_err(fail("NodeGetVolumeStats"))
        .unwrap_or_else(|e| panic!("{}: {e}", vol.volume_id))
        .into_inner();
    let cond = r.volume_condition.unwrap_or_else(|| panic!("NodeGetVolumeStats: no volume condition"));
    assert!(!cond.abnormal, "NodeGetVolumeStats on {}: abnormal: {}", path.display(), cond.message);
    r.usage
        .iter()
        .find(|u| u.unit == pb::volume_usage::Unit::Bytes as i32)
        .map(|u| u.total)
        .unwrap_or_else(|| panic!("NodeGetVolumeStats: no byte usage in {:?}", r.usage))
}

/// `statvfs` total bytes of the filesystem at `path`, independent of the plugin.
fn statvfs_total(path: &Path) -> u64 {
    let out =
        Command::new("stat").args(["-f", "-c", "%S %b"]).arg(path).output().unwrap_or_else(|e| panic!("stat -f: {e}"));
    assert!(out.status.success(), "stat -f {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<u64> =
        text.split_whitespace().map(|n| n.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"))).collect();
    nums[0] * nums[1]
}

/// Deterministic bytes: `len` bytes of a stream seeded by `seed` (xorshift), so content can be
/// checked without keeping it.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The files written into a volume: (relative path, content).
fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("hello.txt", b"hello from the ceph csi test\n".to_vec()),
        ("dir/small.bin", pattern(1, 4096 + 17)),
        ("dir/sub/medium.bin", pattern(2, 300 * 1024 + 5)),
        // ≥ 8 MiB and not a multiple of any block size.
        ("big.bin", pattern(3, 8 * MIB + 12_345)),
    ]
}

/// Writes the files under `root` and makes them durable (each file and its directory fsynced).
fn write_files(root: &Path) {
    for (rel, data) in files() {
        let path = root.join(rel);
        let dir = path.parent().unwrap_or(root).to_path_buf();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        std::fs::write(&path, &data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .unwrap_or_else(|e| panic!("fsync {}: {e}", path.display()));
        std::fs::File::open(&dir).and_then(|f| f.sync_all()).unwrap_or_else(|e| panic!("fsync {}: {e}", dir.display()));
    }
    std::fs::File::open(root).and_then(|f| f.sync_all()).unwrap_or_else(|e| panic!("fsync {}: {e}", root.display()));
}

#[track_caller]
fn check_files(root: &Path, when: &str) {
    for (rel, want) in files() {
        let path = root.join(rel);
        let got = std::fs::read(&path).unwrap_or_else(|e| panic!("{when}: read {}: {e}", path.display()));
        assert_eq!(got.len(), want.len(), "{when}: size of {rel}");
        assert!(got == want, "{when}: content of {rel} differs");
    }
}

/// Loop devices whose backing file lies under `dir` (`losetup -a`).
fn loops_under(dir: &Path) -> Vec<String> {
    let out = Command::new("losetup").arg("-a").output().unwrap_or_else(|e| panic!("losetup -a: {e}"));
    let prefix = dir.display().to_string();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(&prefix)).map(str::to_owned).collect()
}

/// Nothing of the plugin is attached or mounted on this node any more.
#[track_caller]
fn assert_node_clean(plugin: &Plugin, when: &str) {
    let mounts = mounts_under(plugin.dir.path());
    assert!(mounts.is_empty(), "{when}: still mounted under {}: {mounts:?}", plugin.dir.path().display());
    let loops = loops_under(plugin.dir.path());
    assert!(loops.is_empty(), "{when}: loop devices over files under {}: {loops:?}", plugin.dir.path().display());
}

/// The images and journal keys of `ids` are gone from the cluster.
#[track_caller]
fn assert_cluster_clean(ceph: &Ceph, namespace: &str, ids: &[&str]) {
    let images = ceph.images();
    for id in ids {
        let img = image_of(id);
        assert!(!images.contains(&img), "image {img} of {id} is still in `rbd -p {} ls`", ceph.pool);
    }
    for object in ["cyv.csi.volumes", "cyv.csi.snapshots"] {
        let keys = ceph.omap_keys(namespace, object);
        for id in ids {
            let uuid = uuid_of(id);
            let left: Vec<&String> = keys.iter().filter(|k| k.contains(&uuid)).collect();
            assert!(left.is_empty(), "journal {namespace}/{object} still names {id}: {left:?}");
        }
        // The namespace is this test's own: nothing at all may remain in it.
        assert!(keys.is_empty(), "journal {namespace}/{object} still has keys {keys:?}");
    }
}

fn start_plugin(ceph: &Ceph, namespace: &str) -> Plugin {
    Plugin::start(&[
        "--backend",
        "rados",
        "--ceph-conf",
        &ceph.conf,
        "--ceph-id",
        &ceph.id,
        "--pool",
        &ceph.pool,
        "--journal-namespace",
        namespace,
    ])
}

fn elapsed(t: Instant, step: &str) {
    eprintln!("[{:>6.2} s] {step}", t.elapsed().as_secs_f64());
}

/// The whole life of an ext4 volume: create, stage (mkfs), publish, write, detach, attach again
/// and read, grow (online; at the next stage where the plugin lacks CAP_SYS_RESOURCE), snapshot,
/// clone and read the clone, then delete all and prove that nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext4_volume_lives_and_dies_with_snapshot_and_clone() {
    let t = Instant::now();
    let ceph = Ceph::from_env();
    let ns = unique("csi-mounts");
    let mut left = Leftovers { ceph: ceph.clone(), namespace: ns.clone(), images: vec![] };
    let plugin = start_plugin(&ceph, &ns);
    let mut c = plugin.clients().await;
    let cap = || mount_cap("ext4");

    // CreateVolume 1 GiB.
    let name = unique("pvc-ext4");
    let vol = create(&mut c, create_req(&name, GIB, cap())).await;
    left.images.push(image_of(&vol.volume_id));
    assert_eq!(vol.capacity_bytes, GIB, "created size");
    assert!(vol.volume_id.starts_with(&format!("cyv1:v:{}:", ceph.pool)), "volume id {}", vol.volume_id);
    assert!(ceph.images().contains(&image_of(&vol.volume_id)), "the image is in `rbd ls`");
    let keys = ceph.omap_keys(&ns, "cyv.csi.volumes");
    assert!(
        keys.contains(&format!("n.{name}")) && keys.contains(&format!("i.{}", uuid_of(&vol.volume_id))),
        "{keys:?}"
    );
    // Idempotent: the same request answers the same volume.
    let again = create(&mut c, create_req(&name, GIB, cap())).await;
    assert_eq!(again.volume_id, vol.volume_id, "a repeated CreateVolume answers the same volume");
    elapsed(t, "created");

    // Stage (mkfs ext4), publish, write.
    let staging = plugin.path("staging/ext4");
    let target = plugin.path("pods/p1/volumes/ext4");
    stage(&mut c, &vol, &staging, cap()).await;
    elapsed(t, "staged");
    publish(&mut c, &vol, &staging, &target, cap()).await;
    // Both are idempotent: the same call again answers OK and mounts nothing more.
    let mounted = mounts_under(plugin.dir.path()).len();
    stage(&mut c, &vol, &staging, cap()).await;
    publish(&mut c, &vol, &staging, &target, cap()).await;
    assert_eq!(mounts_under(plugin.dir.path()).len(), mounted, "a repeated stage or publish mounted again");
    let mounts = mounts_under(plugin.dir.path());
    assert!(mounts.iter().any(|m| Path::new(m) == staging), "staging path mounted: {mounts:?}");
    assert!(mounts.iter().any(|m| Path::new(m) == target), "target mounted: {mounts:?}");
    let total_before = statvfs_total(&target);
    assert!(total_before > 900 << 20 && total_before <= GIB as u64, "a 1 GiB ext4 has {total_before} bytes");
    write_files(&target);
    check_files(&target, "right after writing");
    elapsed(t, "written");

    // Detach completely, attach again: the files are intact (read from the image, no cache).
    unpublish(&mut c, &vol, &target).await;
    unstage(&mut c, &vol, &staging).await;
    assert_node_clean(&plugin, "after the first unstage");
    stage(&mut c, &vol, &staging, cap()).await;
    publish(&mut c, &vol, &staging, &target, cap()).await;
    check_files(&target, "after unstage + stage");
    elapsed(t, "restaged and checked");

    // Grow to 2 GiB: the image, then the filesystem, online. A plugin without CAP_SYS_RESOURCE
    // cannot grow a mounted ext4: it must say so (FAILED_PRECONDITION, and nothing else), and
    // the filesystem then grows at the next NodeStageVolume, after which NodeExpandVolume has
    // nothing left to do and succeeds.
    expand(&mut c, &vol, 2 * GIB, cap(), false).await;
    let online = has_cap_sys_resource(plugin.pid());
    let node_size = match try_node_expand(&mut c, &vol, &staging, &target, cap()).await {
        Ok(size) => size,
        Err(s)
            if !online && s.code() == tonic::Code::FailedPrecondition && s.message().contains("CAP_SYS_RESOURCE") =>
        {
            eprintln!("the plugin has no CAP_SYS_RESOURCE: ext4 grows at the next stage ({})", s.message());
            assert!(statvfs_total(&target) < total_before + (100 << 20), "a refused NodeExpandVolume grew the fs");
            unpublish(&mut c, &vol, &target).await;
            unstage(&mut c, &vol, &staging).await;
            stage(&mut c, &vol, &staging, cap()).await;
            publish(&mut c, &vol, &staging, &target, cap()).await;
            node_expand(&mut c, &vol, &staging, &target, cap()).await
        }
        Err(s) => {
            panic!("{}: NodeExpandVolume (CAP_SYS_RESOURCE: {online}): {:?}: {}", vol.volume_id, s.code(), s.message())
        }
    };
    assert!(node_size >= 2 * GIB, "NodeExpandVolume reports {node_size} bytes");
    let total = stats_total(&mut c, &vol, &target).await;
    let min = (19 * GIB / 10) as u64;
    assert!(total as u64 >= min, "NodeGetVolumeStats total {total} after growing to 2 GiB");
    let total_statvfs = statvfs_total(&target);
    assert!(total_statvfs >= min, "statvfs total {total_statvfs} after growing to 2 GiB");
    assert!(total_statvfs > total_before + (900 << 20), "grew from {total_before} to {total_statvfs}");
    check_files(&target, "after growing");
    elapsed(t, "expanded");

    // Snapshot, then a volume from it.
    let snap = c
        .controller
        .create_snapshot(pb::CreateSnapshotRequest {
            source_volume_id: vol.volume_id.clone(),
            name: unique("snap-ext4"),
            ..Default::default()
        })
        .await
        .map_err(fail("CreateSnapshot"))
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .snapshot
        .unwrap_or_else(|| panic!("CreateSnapshot: no snapshot"));
    left.images.push(image_of(&snap.snapshot_id));
    assert!(snap.ready_to_use, "snapshot ready");
    assert_eq!(snap.source_volume_id, vol.volume_id);
    assert_eq!(snap.size_bytes, 2 * GIB, "the snapshot has the grown size");
    assert!(ceph.images().contains(&image_of(&snap.snapshot_id)), "the snapshot image is in `rbd ls`");
    elapsed(t, "snapshotted");

    let mut clone_req = create_req(&unique("pvc-clone"), 2 * GIB, cap());
    clone_req.volume_content_source = Some(pb::VolumeContentSource {
        r#type: Some(pb::volume_content_source::Type::Snapshot(pb::volume_content_source::SnapshotSource {
            snapshot_id: snap.snapshot_id.clone(),
        })),
    });
    let clone = create(&mut c, clone_req).await;
    left.images.push(image_of(&clone.volume_id));
    assert_eq!(clone.capacity_bytes, 2 * GIB, "clone size");
    assert_ne!(clone.volume_id, vol.volume_id);
    let src = clone.content_source.as_ref().and_then(|s| s.r#type.as_ref());
    assert!(
        matches!(src, Some(pb::volume_content_source::Type::Snapshot(s)) if s.snapshot_id == snap.snapshot_id),
        "clone's content source: {src:?}"
    );
    elapsed(t, "cloned");

    let clone_staging = plugin.path("staging/clone");
    let clone_target = plugin.path("pods/p2/volumes/clone");
    stage(&mut c, &clone, &clone_staging, cap()).await;
    publish(&mut c, &clone, &clone_staging, &clone_target, cap()).await;
    check_files(&clone_target, "in the clone");
    assert!(statvfs_total(&clone_target) >= min, "the clone has the grown filesystem");
    // The clone is its own volume: writing to it leaves the source alone.
    std::fs::write(clone_target.join("only-in-clone"), b"x").unwrap_or_else(|e| panic!("{e}"));
    assert!(!target.join("only-in-clone").exists(), "a write to the clone shows in the source");
    elapsed(t, "clone checked");

    // Take everything down.
    unpublish(&mut c, &clone, &clone_target).await;
    unstage(&mut c, &clone, &clone_staging).await;
    unpublish(&mut c, &vol, &target).await;
    unstage(&mut c, &vol, &staging).await;
    assert_node_clean(&plugin, "after unstaging everything");
    assert!(!target.exists() && !clone_target.exists(), "unpublish removed the target paths");

    delete(&mut c, &clone).await;
    c.controller
        .delete_snapshot(pb::DeleteSnapshotRequest { snapshot_id: snap.snapshot_id.clone(), ..Default::default() })
        .await
        .map_err(fail("DeleteSnapshot"))
        .unwrap_or_else(|e| panic!("{e}"));
    delete(&mut c, &vol).await;
    // Deletes are idempotent.
    delete(&mut c, &vol).await;
    elapsed(t, "deleted");

    assert_cluster_clean(&ceph, &ns, &[&vol.volume_id, &snap.snapshot_id, &clone.volume_id]);
    let listed = c
        .controller
        .list_volumes(pb::ListVolumesRequest::default())
        .await
        .map_err(fail("ListVolumes"))
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert!(listed.entries.is_empty(), "ListVolumes after deleting: {:?}", listed.entries);
    assert_node_clean(&plugin, "at the end");
    let state: Vec<PathBuf> = std::fs::read_dir(plugin.path("state/staged"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(state.is_empty(), "node state files left: {state:?}");
    elapsed(t, "proven clean");
}

/// xfs chosen through the mount capability: formatted as xfs, written, grown online with
/// xfs_growfs through NodeExpandVolume, then taken down and deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfs_volume_is_formatted_and_grown() {
    let t = Instant::now();
    let ceph = Ceph::from_env();
    let ns = unique("csi-xfs");
    let mut left = Leftovers { ceph: ceph.clone(), namespace: ns.clone(), images: vec![] };
    let plugin = start_plugin(&ceph, &ns);
    let mut c = plugin.clients().await;
    let cap = || mount_cap("xfs");

    let vol = create(&mut c, create_req(&unique("pvc-xfs"), GIB, cap())).await;
    left.images.push(image_of(&vol.volume_id));
    assert_eq!(vol.capacity_bytes, GIB);
    let staging = plugin.path("staging/xfs");
    let target = plugin.path("pods/p1/volumes/xfs");
    stage(&mut c, &vol, &staging, cap()).await;
    publish(&mut c, &vol, &staging, &target, cap()).await;
    elapsed(t, "staged and published");

    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_else(|e| panic!("{e}"));
    let staged_line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(staging.to_str().unwrap_or_default()))
        .unwrap_or_else(|| panic!("{} is not in mountinfo", staging.display()));
    let fstype = staged_line.split(" - ").nth(1).and_then(|r| r.split(' ').next());
    assert_eq!(fstype, Some("xfs"), "staging mount: {staged_line}");

    write_files(&target);
    check_files(&target, "xfs after writing");
    let before = statvfs_total(&target);

    expand(&mut c, &vol, 2 * GIB, cap(), false).await;
    let node_size = node_expand(&mut c, &vol, &staging, &target, cap()).await;
    assert!(node_size >= 2 * GIB, "NodeExpandVolume reports {node_size} bytes");
    let total = stats_total(&mut c, &vol, &target).await;
    assert!(total >= 19 * GIB / 10, "xfs total {total} after growing to 2 GiB (was {before})");
    assert!(statvfs_total(&target) > before + (900 << 20), "xfs grew from {before}");
    check_files(&target, "xfs after growing");
    elapsed(t, "grown");

    unpublish(&mut c, &vol, &target).await;
    unstage(&mut c, &vol, &staging).await;
    assert_node_clean(&plugin, "xfs unstaged");
    delete(&mut c, &vol).await;
    assert_cluster_clean(&ceph, &ns, &[&vol.volume_id]);
    elapsed(t, "deleted");
}

/// A buffer of `len` bytes aligned to 4 KiB inside `v` (for O_DIRECT).
fn aligned(v: &mut Vec<u8>, len: usize) -> &mut [u8] {
    v.resize(len + 4096, 0);
    let off = v.as_ptr().align_offset(4096);
    &mut v[off..off + len]
}

const BLOCK_IO: usize = 16 * 1024;

fn block_offsets(size: u64) -> Vec<u64> {
    vec![0, MIB as u64 + 3 * 4096, 512 * MIB as u64 - 4096, size - BLOCK_IO as u64]
}

/// Writes (or, with `check`, reads back and compares) a pattern at a few offsets of a block
/// device, with O_DIRECT so no page cache stands between the test and the device.
fn block_pattern(dev: &Path, size: u64, check: bool) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(!check)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .unwrap_or_else(|e| panic!("open {} O_DIRECT: {e}", dev.display()));
    let mut storage = Vec::new();
    for off in block_offsets(size) {
        let want = pattern(off + 7, BLOCK_IO);
        let buf = aligned(&mut storage, BLOCK_IO);
        if check {
            f.read_exact_at(buf, off).unwrap_or_else(|e| panic!("read {BLOCK_IO} at {off}: {e}"));
            assert!(buf[..] == want[..], "the pattern at offset {off} differs after restaging");
        } else {
            buf.copy_from_slice(&want);
            f.write_all_at(buf, off).unwrap_or_else(|e| panic!("write {BLOCK_IO} at {off}: {e}"));
        }
    }
    if !check {
        f.sync_all().unwrap_or_else(|e| panic!("fsync {}: {e}", dev.display()));
    }
}

/// Raw block mode: the published target is a block device of the volume's size; a pattern
/// written at several offsets survives unpublish/unstage and a fresh attach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_volume_keeps_a_pattern_across_attachments() {
    let t = Instant::now();
    let ceph = Ceph::from_env();
    let ns = unique("csi-block");
    let mut left = Leftovers { ceph: ceph.clone(), namespace: ns.clone(), images: vec![] };
    let plugin = start_plugin(&ceph, &ns);
    let mut c = plugin.clients().await;

    let vol = create(&mut c, create_req(&unique("pvc-block"), GIB, block_cap())).await;
    left.images.push(image_of(&vol.volume_id));
    assert_eq!(vol.capacity_bytes, GIB);
    let staging = plugin.path("staging/block");
    let target = plugin.path("pods/p1/volumeDevices/block");

    for round in 0..2 {
        stage(&mut c, &vol, &staging, block_cap()).await;
        publish(&mut c, &vol, &staging, &target, block_cap()).await;
        let meta = std::fs::metadata(&target).unwrap_or_else(|e| panic!("stat {}: {e}", target.display()));
        assert!(meta.file_type().is_block_device(), "round {round}: {} is not a block device", target.display());
        let size = {
            use std::io::{Seek, SeekFrom};
            let mut f = std::fs::File::open(&target).unwrap_or_else(|e| panic!("{e}"));
            f.seek(SeekFrom::End(0)).unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(size, GIB as u64, "round {round}: size of the published device");
        assert_eq!(stats_total(&mut c, &vol, &target).await, GIB, "round {round}: NodeGetVolumeStats total");
        block_pattern(&target, size, round == 1);
        if round == 0 {
            // An attached volume is not deleted under its user: its image has a watcher.
            let refused = c
                .controller
                .delete_volume(pb::DeleteVolumeRequest { volume_id: vol.volume_id.clone(), ..Default::default() })
                .await;
            assert_eq!(
                refused.as_ref().map_err(|s| s.code()).err(),
                Some(tonic::Code::FailedPrecondition),
                "DeleteVolume of an attached volume: {refused:?}"
            );
            assert!(ceph.images().contains(&image_of(&vol.volume_id)), "the refused delete removed the image");
        }
        elapsed(t, if round == 0 { "pattern written" } else { "pattern read back" });
        unpublish(&mut c, &vol, &target).await;
        assert!(!target.exists(), "round {round}: unpublish removed the device file");
        unstage(&mut c, &vol, &staging).await;
        assert_node_clean(&plugin, "block unstaged");
    }

    delete(&mut c, &vol).await;
    assert_cluster_clean(&ceph, &ns, &[&vol.volume_id]);
    elapsed(t, "deleted");
}
