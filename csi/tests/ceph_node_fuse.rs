//! The Ceph tier for the node plugin's FUSE attachment: an RBD image served by `RbdSource`
//! through FUSE, a loop device on it, ext4 on that; written, detached, attached again and read
//! back; grown while attached. Run by `scripts/test`, which starts the dev cluster and exports
//! `CYVAULT_CEPH_CONF` (and `CYVAULT_CEPH_ID`); without it every test fails, never skips. Pool:
//! `CYVAULT_RBD_POOL` (default `rbd`).
//!
//! Needs root, `/dev/fuse`, loop devices, util-linux, mount and e2fsprogs. Each test names its
//! image `node-fuse-<pid>-<nanos>` and, passed or failed, unmounts, detaches and removes it.

mod common;

use common::{MIB, io, ok, pattern, read_file, write_file};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cyvault_csi::node::attach::{self, FuseAttachment};
use cyvault_csi::node::fuse::{BlockSource, RbdSource};
use cyvault_csi::node::mount::{self, FsType};
use cyvault_csi::node::{CommandLine, NodeError};
use cyvault_store::rbd::{CreateOptions, Rbd};
use cyvault_store::{Cluster, RadosConfig, RadosStore};
use futures::FutureExt;

fn ceph_config() -> RadosConfig {
    let conf = std::env::var("CYVAULT_CEPH_CONF").unwrap_or_default();
    assert!(
        !conf.is_empty(),
        "CYVAULT_CEPH_CONF is not set: the Ceph tier needs the dev cluster; run it through scripts/test \
         (or start scripts/dev-cluster and eval its `env` output)"
    );
    let id = std::env::var("CYVAULT_CEPH_ID").unwrap_or_else(|_| "admin".into());
    RadosConfig::new(conf, id)
}

async fn connect() -> Rbd {
    let cluster = match Cluster::connect(&ceph_config()).await {
        Ok(c) => c,
        Err(e) => panic!("cannot connect to the test cluster: {e}"),
    };
    let pool = std::env::var("CYVAULT_RBD_POOL").unwrap_or_else(|_| "rbd".into());
    match RadosStore::new(cluster).ioctx(&pool, "").await {
        Ok(io) => Rbd::new(io).unwrap_or_else(|e| panic!("{e}")),
        Err(e) => panic!("cannot open rbd pool {pool}: {e}"),
    }
}

/// What a test created, to undo whatever it did not undo itself.
struct Guard {
    rbd: Rbd,
    image: String,
    dir: tempfile::TempDir,
    mounts: Vec<PathBuf>,
    attachments: Vec<FuseAttachment>,
}

impl Guard {
    async fn new(tag: &str) -> Guard {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        Guard {
            rbd: connect().await,
            image: format!("node-{tag}-{}-{nanos}", std::process::id()),
            dir: io(tempfile::Builder::new().prefix("cyv-ceph-node-").tempdir()),
            mounts: Vec::new(),
            attachments: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn mounted(&mut self, target: &Path) {
        self.mounts.push(target.to_path_buf());
    }

    /// Opens the test's image as a block source.
    async fn source(&self) -> Arc<RbdSource> {
        let image = match self.rbd.open(&self.image).await {
            Ok(i) => i,
            Err(e) => panic!("open {}: {e}", self.image),
        };
        Arc::new(ok(RbdSource::new(image)))
    }

    async fn cleanup(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for m in self.mounts.drain(..).rev() {
            if let Err(e) = mount::unmount(&m).await {
                problems.push(format!("unmount {}: {e}", m.display()));
            }
        }
        for a in self.attachments.drain(..).rev() {
            let dev = a.device().to_path_buf();
            if let Err(e) = a.detach().await {
                problems.push(format!("detach {}: {e}", dev.display()));
            }
        }
        // The image: closed images may still show a watcher for a moment.
        let mut removed = false;
        for _ in 0..50 {
            match self.rbd.remove(&self.image).await {
                Ok(()) => {
                    removed = true;
                    break;
                }
                Err(cyvault_store::StoreError::NotFound(_)) => {
                    removed = true;
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        if !removed {
            problems.push(format!("could not remove image {}", self.image));
        }
        problems
    }
}

/// Runs `body`, then cleans up whether it passed or panicked.
async fn scenario(tag: &str, body: impl AsyncFnOnce(&mut Guard)) {
    let mut guard = Guard::new(tag).await;
    let outcome = AssertUnwindSafe(body(&mut guard)).catch_unwind().await;
    let problems = guard.cleanup().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(problems.is_empty(), "cleanup: {problems:?}");
}

/// Takes the test's last attachment and detaches it.
async fn detach_last(g: &mut Guard) {
    match g.attachments.pop() {
        Some(a) => ok(a.detach().await),
        None => panic!("no attachment to detach"),
    }
}

/// Closes the source after FUSE let go of it (waiting for I/O in flight), so the image can be
/// opened again at once.
async fn close(source: Arc<RbdSource>) {
    ok(source.close().await)
}

/// The scenario: format, write, detach, attach again, read back; then grow while
/// attached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbd_image_through_fuse_loop_ext4_survives_reattach_and_grows() {
    scenario("fuse", async |g| {
        if let Err(e) = g.rbd.create(&g.image, &CreateOptions::new(256 * MIB)).await {
            panic!("create {}: {e}", g.image);
        }
        let work = g.path("work");
        let mnt = g.path("mnt");
        io(tokio::fs::create_dir_all(&mnt).await);
        let files: Vec<(String, Vec<u8>)> =
            (0..6).map(|i| (format!("f{i}"), pattern((i + 1) * 1_000_003, i as u8))).collect();

        // First attachment: format and write.
        let source = g.source().await;
        let a = ok(attach::attach_fuse(Arc::clone(&source) as Arc<dyn BlockSource>, &work, "vol", false).await);
        let dev = a.device().to_path_buf();
        g.attachments.push(a);
        assert_eq!(ok(mount::device_size(&dev).await), 256 * MIB);
        assert!(ok(mount::mkfs_if_blank(&dev, FsType::Ext4).await), "a new image is blank");
        ok(mount::mount(&dev, &mnt, "ext4", &[]).await);
        g.mounted(&mnt);
        for (name, data) in &files {
            io(write_file(&mnt.join(name), data).await);
        }
        ok(mount::unmount(&mnt).await);
        detach_last(g).await;
        close(source).await;
        assert!(!ok(mount::is_mounted(&work).await));

        // Second attachment: the filesystem and the files are there, nothing reformatted.
        let source = g.source().await;
        let a = ok(attach::attach_fuse(Arc::clone(&source) as Arc<dyn BlockSource>, &work, "vol", false).await);
        let dev = a.device().to_path_buf();
        g.attachments.push(a);
        assert_eq!(ok(mount::fs_type(&dev).await).as_deref(), Some("ext4"));
        assert!(!ok(mount::mkfs_if_blank(&dev, FsType::Ext4).await), "must not reformat");
        ok(mount::mount(&dev, &mnt, "ext4", &[]).await);
        for (name, data) in &files {
            assert_eq!(&io(read_file(&mnt.join(name)).await), data, "{name} after re-attach");
        }

        // Grow the image while attached and mounted: FUSE file, loop device, filesystem.
        let before = ok(mount::volume_stats(&mnt).await);
        if let Err(e) = g.rbd.resize(&g.image, 384 * MIB).await {
            panic!("resize {}: {e}", g.image);
        }
        let a = g.attachments.pop().unwrap_or_else(|| panic!("no attachment"));
        assert_eq!(ok(a.refresh_size().await), 384 * MIB);
        g.attachments.push(a);
        assert_eq!(ok(mount::device_size(&dev).await), 384 * MIB);
        match mount::grow_fs(&dev, &mnt, FsType::Ext4).await {
            Ok(()) => {}
            // Online ext4 growth needs CAP_SYS_RESOURCE, which the CI sandbox withholds.
            Err(NodeError::CommandFailed { stderr, .. }) if stderr.contains("Permission denied") => {
                eprintln!("no CAP_SYS_RESOURCE here: ext4 grown offline instead");
                ok(mount::unmount(&mnt).await);
                ok(mount::grow_fs_offline(&dev, FsType::Ext4).await);
                ok(mount::mount(&dev, &mnt, "ext4", &[]).await);
            }
            Err(e) => panic!("{e}"),
        }
        let after = ok(mount::volume_stats(&mnt).await);
        assert!(after.bytes_total > before.bytes_total + 100 * MIB, "{before:?} -> {after:?}");
        assert_eq!(&io(read_file(&mnt.join("f0")).await), &files[0].1);

        ok(mount::unmount(&mnt).await);
        detach_last(g).await;
        close(source).await;
        assert!(!ok(mount::is_mounted(&work).await));
    })
    .await;
}

/// Rough sequential throughput of 64 MiB through librbd + FUSE + loop (direct I/O), against
/// the one-OSD dev cluster. Prints; asserts nothing about speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbd_fuse_loop_sequential_throughput() {
    scenario("speed", async |g| {
        if let Err(e) = g.rbd.create(&g.image, &CreateOptions::new(128 * MIB)).await {
            panic!("create {}: {e}", g.image);
        }
        let source = g.source().await;
        let a =
            ok(attach::attach_fuse(Arc::clone(&source) as Arc<dyn BlockSource>, &g.path("work"), "vol", false).await);
        let dev = a.device().display().to_string();
        g.attachments.push(a);
        let dd = |args: &[&str]| {
            let mut c = CommandLine::new("dd").arg("status=none").arg("bs=1M").arg("count=64");
            for a in args {
                c = c.arg(*a);
            }
            c
        };
        let t = Instant::now();
        ok(dd(&["if=/dev/zero", &format!("of={dev}"), "oflag=direct", "conv=fsync"]).run().await);
        let w = t.elapsed();
        let t = Instant::now();
        ok(dd(&[&format!("if={dev}"), "of=/dev/null", "iflag=direct"]).run().await);
        let r = t.elapsed();
        eprintln!(
            "RBD+FUSE+loop, 64 MiB sequential, bs=1M: write {:.0} MiB/s, read {:.0} MiB/s",
            64.0 / w.as_secs_f64(),
            64.0 / r.as_secs_f64()
        );
        detach_last(g).await;
        close(source).await;
    })
    .await;
}
