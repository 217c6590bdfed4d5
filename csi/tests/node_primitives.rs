//! The node primitives on this machine's real kernel, as root: loop devices, mkfs, mount, bind
//! mounts, online growth, statvfs, and a FUSE-served file with a loop device and ext4 on top.
//!
//! Needs root, `/dev/loop-control`, `/dev/fuse`, and the tools of util-linux, mount,
//! e2fsprogs and xfsprogs. Every test works under its own temporary directory and, passed or
//! failed, unmounts what it mounted and detaches the loop devices it attached (only those
//! still backed by its own files: a device number it gave back may already be another test's).

mod common;

use common::{MIB, io, off_runtime, ok, pattern, read_file, write_file};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cyvault_csi::node::attach::{self, FuseAttachment};
use cyvault_csi::node::fuse::{self, BlockSource, FileSource, FuseHandle};
use cyvault_csi::node::loopdev::{self, LoopOptions};
use cyvault_csi::node::mount::{self, FsType};
use cyvault_csi::node::{NodeError, Result};
use futures::FutureExt;

/// What a test created, to undo whatever it did not undo itself.
struct Guard {
    dir: tempfile::TempDir,
    mounts: Vec<PathBuf>,
    loops: Vec<(PathBuf, PathBuf)>,
    fuses: Vec<FuseHandle>,
    attachments: Vec<FuseAttachment>,
}

impl Guard {
    fn new() -> Guard {
        Guard {
            dir: io(tempfile::Builder::new().prefix("cyv-node-").tempdir()),
            mounts: Vec::new(),
            loops: Vec::new(),
            fuses: Vec::new(),
            attachments: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A new directory under the test's directory.
    fn mkdir(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        io(std::fs::create_dir_all(&p));
        p
    }

    /// A new sparse file of `size` bytes.
    fn sparse(&self, name: &str, size: u64) -> PathBuf {
        let p = self.path(name);
        let f = io(std::fs::File::create(&p));
        io(f.set_len(size));
        p
    }

    fn mounted(&mut self, target: &Path) {
        self.mounts.push(target.to_path_buf());
    }

    async fn attach_loop(&mut self, file: &Path, opts: LoopOptions) -> PathBuf {
        let dev = ok(loopdev::attach(file, opts).await);
        self.loops.push((dev.clone(), file.to_path_buf()));
        dev
    }

    /// Undoes everything, innermost first; returns what it could not undo.
    async fn cleanup(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for m in self.mounts.drain(..).rev() {
            if let Err(e) = mount::unmount(&m).await {
                problems.push(format!("unmount {}: {e}", m.display()));
            }
        }
        for (dev, file) in self.loops.drain(..).rev() {
            // Only if the device still serves our file (or what was our file).
            if let Ok(Some(b)) = loopdev::backing_file(&dev).await
                && (b == file || b.as_os_str().as_encoded_bytes() == format!("{} (deleted)", file.display()).as_bytes())
                && let Err(e) = loopdev::detach(&dev).await
            {
                problems.push(format!("detach {}: {e}", dev.display()));
            }
        }
        for a in self.attachments.drain(..).rev() {
            let dev = a.device().to_path_buf();
            if let Err(e) = a.detach().await {
                problems.push(format!("detach FUSE attachment {}: {e}", dev.display()));
            }
        }
        for mut f in self.fuses.drain(..).rev() {
            if let Err(e) = f.unmount().await {
                problems.push(format!("unmount FUSE {}: {e}", f.mount_dir().display()));
            }
        }
        // Anything still mounted under our directory (a mount the test did not register).
        if let Ok(table) = mount::mount_table().await {
            for e in table.iter().rev().filter(|e| e.mount_point.starts_with(self.dir.path())) {
                problems.push(format!("left mounted: {}", e.mount_point.display()));
                let _ = mount::unmount(&e.mount_point).await;
            }
        }
        problems
    }
}

/// Runs `body` with a fresh guard, then cleans up whether it passed or panicked.
async fn scenario(body: impl AsyncFnOnce(&mut Guard)) {
    let mut guard = Guard::new();
    let outcome = AssertUnwindSafe(body(&mut guard)).catch_unwind().await;
    let problems = guard.cleanup().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(problems.is_empty(), "cleanup: {problems:?}");
}

/// A source that counts flushes and remembers its largest write.
struct Counting {
    inner: FileSource,
    flushes: AtomicU64,
    max_write: AtomicU64,
}

impl Counting {
    fn new(inner: FileSource) -> Counting {
        Counting { inner, flushes: AtomicU64::new(0), max_write: AtomicU64::new(0) }
    }
}

#[async_trait::async_trait]
impl BlockSource for Counting {
    async fn read(&self, off: u64, len: u64) -> Result<bytes::Bytes> {
        self.inner.read(off, len).await
    }

    async fn write(&self, off: u64, data: bytes::Bytes) -> Result<()> {
        self.max_write.fetch_max(data.len() as u64, Ordering::Relaxed);
        self.inner.write(off, data).await
    }

    async fn flush(&self) -> Result<()> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.inner.flush().await
    }

    async fn size(&self) -> Result<u64> {
        self.inner.size().await
    }
}

async fn grow_file(path: &Path, size: u64) {
    let path = path.to_path_buf();
    io(off_runtime(move || std::fs::OpenOptions::new().write(true).open(&path)?.set_len(size)).await);
}

async fn assert_no_trace(file: &Path, targets: &[&Path]) {
    assert_eq!(
        ok(loopdev::find_stale_by_backing_file(file).await),
        Vec::<PathBuf>::new(),
        "loop devices left on {}",
        file.display()
    );
    for t in targets {
        assert!(!ok(mount::is_mounted(t).await), "{} still mounted", t.display());
    }
}

/// Whether this process may grow a mounted ext4 (the kernel's online resize needs
/// CAP_SYS_RESOURCE, which some sandboxes, this project's CI machine among them, withhold).
fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// Grows the mounted filesystem: online where the kernel allows it; for ext4 without
/// CAP_SYS_RESOURCE, checks that online growth fails with resize2fs's own message, then grows
/// it offline (unmount, e2fsck, resize2fs, mount again).
async fn grow(dev: &Path, mnt: &Path, fs: FsType) {
    if fs == FsType::Xfs || has_cap_sys_resource() {
        ok(mount::grow_fs(dev, mnt, fs).await);
        return;
    }
    match mount::grow_fs(dev, mnt, fs).await {
        Err(NodeError::CommandFailed { program, stderr, .. }) => {
            assert_eq!(program, "resize2fs");
            assert!(stderr.contains("Permission denied"), "{stderr}");
        }
        other => panic!("online ext4 growth without CAP_SYS_RESOURCE: want EPERM, got {other:?}"),
    }
    eprintln!("no CAP_SYS_RESOURCE here: ext4 grown offline instead");
    assert!(matches!(mount::grow_fs_offline(dev, fs).await, Err(NodeError::Busy(_))), "offline growth of a mounted fs");
    ok(mount::unmount(mnt).await);
    ok(mount::grow_fs_offline(dev, fs).await);
    ok(mount::mount(dev, mnt, fs.as_str(), &[]).await);
}

/// The lifecycle on one filesystem type: format only a blank device, mount, write,
/// unmount, never reformat, grow online, bind read-only, tear down without a trace.
async fn lifecycle(g: &mut Guard, fs: FsType, size: u64) {
    let img = g.sparse("disk.img", size);
    let dev = g.attach_loop(&img, LoopOptions { read_only: false, direct_io: true }).await;
    assert_eq!(ok(loopdev::find_by_backing_file(&img).await), vec![dev.clone()]);
    assert_eq!(ok(loopdev::backing_file(&dev).await), Some(img.clone()));
    assert_eq!(ok(mount::device_size(&dev).await), size);
    assert_eq!(ok(mount::fs_type(&dev).await), None);

    assert!(ok(mount::mkfs_if_blank(&dev, fs).await), "a blank device is formatted");
    assert_eq!(ok(mount::fs_type(&dev).await).as_deref(), Some(fs.as_str()));

    let mnt = g.mkdir("mnt");
    ok(mount::mount(&dev, &mnt, fs.as_str(), &["noatime"]).await);
    g.mounted(&mnt);
    let entry = ok(mount::find_by_target(&mnt).await).unwrap_or_else(|| panic!("{} not in mountinfo", mnt.display()));
    assert_eq!((entry.fs_type.as_str(), entry.source.as_str()), (fs.as_str(), dev.to_string_lossy().as_ref()));
    assert!(entry.options.split(',').any(|o| o == "noatime"), "{entry:?}");
    assert_eq!(ok(mount::find_by_source(&dev).await).len(), 1);
    // A second mount on the same target is refused, not stacked.
    assert!(matches!(mount::mount(&dev, &mnt, fs.as_str(), &[]).await, Err(NodeError::Busy(_))));

    let data = pattern(3 * MIB as usize + 17, 1);
    io(write_file(&mnt.join("hello.bin"), &data).await);
    ok(mount::unmount(&mnt).await);
    assert!(!ok(mount::is_mounted(&mnt).await));
    ok(mount::unmount(&mnt).await); // idempotent

    assert!(!ok(mount::mkfs_if_blank(&dev, fs).await), "an existing {fs} must not be reformatted");
    ok(mount::mount(&dev, &mnt, fs.as_str(), &[]).await);
    assert_eq!(io(read_file(&mnt.join("hello.bin")).await), data, "the file survived mkfs_if_blank");

    // Grow the backing file, the loop device, then the filesystem, online.
    let before = ok(mount::volume_stats(&mnt).await);
    grow_file(&img, 2 * size).await;
    ok(loopdev::refresh_size(&dev).await);
    assert_eq!(ok(mount::device_size(&dev).await), 2 * size);
    grow(&dev, &mnt, fs).await;
    let after = ok(mount::volume_stats(&mnt).await);
    assert!(
        after.bytes_total > before.bytes_total + size / 2,
        "statvfs after growing to {} bytes: {after:?} (before: {before:?})",
        2 * size
    );
    assert!(after.bytes_used > data.len() as u64 && after.bytes_available < after.bytes_total, "{after:?}");
    assert!(after.inodes_total > 0 && after.inodes_used > 0 && after.inodes_free < after.inodes_total, "{after:?}");

    // A read-only bind mount: reads work, writes fail with EROFS, the original stays writable.
    let ro = g.mkdir("ro");
    ok(mount::bind_mount(&mnt, &ro, true).await);
    g.mounted(&ro);
    let bind = ok(mount::find_by_target(&ro).await).unwrap_or_else(|| panic!("bind not in mountinfo"));
    assert!(bind.is_read_only(), "{bind:?}");
    assert_eq!(io(read_file(&ro.join("hello.bin")).await), data);
    match write_file(&ro.join("nope"), b"x").await {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}"),
        Ok(()) => panic!("wrote through a read-only bind mount"),
    }
    io(write_file(&mnt.join("still-rw"), b"y").await);
    // A writable bind shows the same files.
    let rw = g.mkdir("rw");
    ok(mount::bind_mount(&mnt, &rw, false).await);
    g.mounted(&rw);
    assert!(!ok(mount::find_by_target(&rw).await).is_some_and(|e| e.is_read_only()));
    assert_eq!(io(read_file(&rw.join("still-rw")).await), b"y");

    for t in [&rw, &ro, &mnt] {
        ok(mount::unmount(t).await);
    }
    ok(loopdev::detach(&dev).await);
    ok(loopdev::detach(&dev).await); // idempotent
    assert_no_trace(&img, &[&mnt, &ro, &rw]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext4_on_loop_format_mount_grow_bind_teardown() {
    scenario(async |g| lifecycle(g, FsType::Ext4, 64 * MIB).await).await;
}

/// xfs refuses filesystems under 300 MiB on recent xfsprogs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfs_on_loop_format_mount_grow_bind_teardown() {
    scenario(async |g| lifecycle(g, FsType::Xfs, 512 * MIB).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mkfs_never_formats_a_device_holding_something_else() {
    scenario(async |g| {
        let img = g.sparse("ext4.img", 32 * MIB);
        let dev = g.attach_loop(&img, LoopOptions::default()).await;
        assert!(ok(mount::mkfs_if_blank(&dev, FsType::Ext4).await));
        match mount::mkfs_if_blank(&dev, FsType::Xfs).await {
            Err(NodeError::FilesystemMismatch { found, wanted, .. }) => {
                assert_eq!((found.as_str(), wanted.as_str()), ("ext4", "xfs"))
            }
            other => panic!("want FilesystemMismatch, got {other:?}"),
        }
        assert_eq!(ok(mount::fs_type(&dev).await).as_deref(), Some("ext4"));
        ok(loopdev::detach(&dev).await);

        // Not a device at all, or missing: clear errors, nothing run.
        assert!(matches!(mount::mkfs_if_blank(&g.path("missing"), FsType::Ext4).await, Err(NodeError::NotFound(_))));
        assert!(matches!(mount::mkfs_if_blank(g.dir.path(), FsType::Ext4).await, Err(NodeError::InvalidArgument(_))));
        assert!(matches!(
            mount::mkfs_if_blank(Path::new("dev/loop0"), FsType::Ext4).await,
            Err(NodeError::InvalidArgument(_))
        ));
        assert!(matches!(
            loopdev::attach(&g.path("missing"), LoopOptions::default()).await,
            Err(NodeError::NotFound(_))
        ));
        assert!(matches!(mount::device_size(&g.path("missing")).await, Err(NodeError::NotFound(_))));
        // Unmounting what was never mounted, or does not exist: fine.
        ok(mount::unmount(&g.path("never-mounted")).await);
        ok(mount::unmount(g.dir.path()).await);
        assert_no_trace(&img, &[]).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_loop_device_refuses_writes() {
    scenario(async |g| {
        let img = g.sparse("ro.img", 16 * MIB);
        let dev = g.attach_loop(&img, LoopOptions { read_only: true, direct_io: false }).await;
        let ro =
            tokio::fs::read_to_string(format!("/sys/block/{}/ro", dev.to_string_lossy().trim_start_matches("/dev/")))
                .await;
        assert_eq!(io(ro).trim(), "1");
        assert!(matches!(mount::mkfs_if_blank(&dev, FsType::Ext4).await, Err(NodeError::CommandFailed { .. })));
        ok(loopdev::detach(&dev).await);
        assert_no_trace(&img, &[]).await;
    })
    .await;
}

/// A file served through FUSE by a [`FileSource`], a loop device on it, ext4 on that: the
/// bytes land in the underlying file, which then mounts directly with the same files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuse_file_source_under_loop_and_ext4() {
    scenario(async |g| {
        let backing = g.sparse("backing.img", 64 * MIB);
        let fuse_dir = g.mkdir("fuse");
        let source = Arc::new(Counting::new(ok(FileSource::open(&backing).await)));
        let handle = ok(fuse::serve_file(Arc::clone(&source) as Arc<dyn BlockSource>, &fuse_dir, "disk").await);
        let served = handle.file().to_path_buf();
        g.fuses.push(handle);
        assert_eq!(io(tokio::fs::metadata(&served).await).len(), 64 * MIB);
        let fuse_entry = ok(mount::find_by_target(&fuse_dir).await).unwrap_or_else(|| panic!("FUSE not in mountinfo"));
        assert_eq!((fuse_entry.fs_type.as_str(), fuse_entry.source.as_str()), ("fuse", "cyvault:disk"));
        // Serving on a directory that is already a mount point is refused.
        let again = fuse::serve_file(Arc::new(ok(FileSource::open(&backing).await)), &fuse_dir, "disk").await;
        assert!(matches!(again, Err(NodeError::Busy(_))), "{again:?}");

        let dev = g.attach_loop(&served, LoopOptions { read_only: false, direct_io: true }).await;
        assert_eq!(ok(mount::device_size(&dev).await), 64 * MIB);
        assert!(ok(mount::mkfs_if_blank(&dev, FsType::Ext4).await));
        let mnt = g.mkdir("mnt");
        ok(mount::mount(&dev, &mnt, "ext4", &[]).await);
        g.mounted(&mnt);
        let files: Vec<(String, Vec<u8>)> =
            (0..8).map(|i| (format!("f{i}"), pattern((i + 1) * 700_001, i as u8))).collect();
        let flushes = source.flushes.load(Ordering::Relaxed);
        for (name, data) in &files {
            io(write_file(&mnt.join(name), data).await);
        }
        // Each fsync of a file on ext4 commits its journal with a cache flush, which the loop
        // device turns into an fsync of the FUSE file: the source was flushed.
        assert!(source.flushes.load(Ordering::Relaxed) > flushes, "no flush reached the source");
        assert!(source.max_write.load(Ordering::Relaxed) > 128 * 1024, "large writes are not passed through");
        for (name, data) in &files {
            assert_eq!(&io(read_file(&mnt.join(name)).await), data, "{name}");
        }
        ok(mount::unmount(&mnt).await);
        // Busy while the loop device holds the file: refused, still served.
        let mut handle = g.fuses.pop().unwrap_or_else(|| panic!("no FUSE handle"));
        assert!(matches!(handle.unmount().await, Err(NodeError::Busy(_))));
        assert!(handle.is_mounted() && ok(mount::is_mounted(&fuse_dir).await));
        ok(loopdev::detach(&dev).await);
        ok(handle.unmount().await);
        ok(handle.unmount().await); // idempotent
        assert_no_trace(&served, &[&mnt, &fuse_dir]).await;

        // The bytes are in the underlying file: it is ext4 and mounts with the same files.
        assert_eq!(ok(mount::fs_type(&backing).await).as_deref(), Some("ext4"));
        let direct = g.attach_loop(&backing, LoopOptions::default()).await;
        ok(mount::mount(&direct, &mnt, "ext4", &["ro"]).await);
        for (name, data) in &files {
            assert_eq!(&io(read_file(&mnt.join(name)).await), data, "{name} in the underlying file");
        }
        ok(mount::unmount(&mnt).await);
        ok(loopdev::detach(&direct).await);
        assert_no_trace(&backing, &[&mnt]).await;
    })
    .await;
}

/// `attach_fuse` / `detach_fuse`, an online resize through FUSE, and a read-only attachment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuse_attachment_grows_online_and_detaches() {
    scenario(async |g| {
        let backing = g.sparse("grow.img", 64 * MIB);
        let source: Arc<dyn BlockSource> = Arc::new(ok(FileSource::open(&backing).await));
        let work = g.path("work"); // attach_fuse creates it
        let a = ok(attach::attach_fuse(Arc::clone(&source), &work, "vol", false).await);
        let dev = a.device().to_path_buf();
        let served = a.file().to_path_buf();
        g.attachments.push(a);
        assert_eq!(ok(loopdev::backing_file(&dev).await), Some(served.clone()));
        // The loop device really does direct I/O on the FUSE file.
        let dio = format!("/sys/block/{}/loop/dio", dev.to_string_lossy().trim_start_matches("/dev/"));
        assert_eq!(io(tokio::fs::read_to_string(&dio).await).trim(), "1", "{dio}");
        assert!(ok(mount::mkfs_if_blank(&dev, FsType::Ext4).await));
        let mnt = g.mkdir("mnt");
        ok(mount::mount(&dev, &mnt, "ext4", &[]).await);
        g.mounted(&mnt);
        io(write_file(&mnt.join("a"), b"before the resize").await);
        let before = ok(mount::volume_stats(&mnt).await);

        grow_file(&backing, 96 * MIB).await;
        let a = g.attachments.pop().unwrap_or_else(|| panic!("no attachment"));
        assert_eq!(ok(a.refresh_size().await), 96 * MIB);
        g.attachments.push(a);
        assert_eq!(ok(mount::device_size(&dev).await), 96 * MIB);
        grow(&dev, &mnt, FsType::Ext4).await;
        let after = ok(mount::volume_stats(&mnt).await);
        assert!(after.bytes_total > before.bytes_total + 16 * MIB, "{before:?} -> {after:?}");
        assert_eq!(io(read_file(&mnt.join("a")).await), b"before the resize");

        // Detaching while the filesystem is mounted: busy, nothing torn down.
        ok(mount::unmount(&mnt).await);
        let a = g.attachments.pop().unwrap_or_else(|| panic!("no attachment"));
        ok(attach::detach_fuse(a).await);
        assert_no_trace(&served, &[&mnt, &work]).await;

        // Read-only: the loop device and the FUSE file refuse writes, reads work.
        let a = ok(attach::attach_fuse(source, &work, "vol", true).await);
        let dev = a.device().to_path_buf();
        g.attachments.push(a);
        assert_eq!(ok(mount::fs_type(&dev).await).as_deref(), Some("ext4"));
        ok(mount::mount(&dev, &mnt, "ext4", &["ro", "noload"]).await);
        g.mounted(&mnt);
        assert_eq!(io(read_file(&mnt.join("a")).await), b"before the resize");
        ok(mount::unmount(&mnt).await);
        let served = g.path("work/vol");
        let w = off_runtime(move || std::fs::OpenOptions::new().write(true).open(served)).await;
        assert!(w.is_err_and(|e| e.raw_os_error() == Some(libc::EROFS)));
        let a = g.attachments.pop().unwrap_or_else(|| panic!("no attachment"));
        ok(a.detach().await);
        assert_no_trace(&g.path("work/vol"), &[&mnt, &work]).await;
    })
    .await;
}

/// A lost attachment (its handle dropped with the loop device still on the file, as after a
/// crash of the code holding it) stays mounted and findable by path, and
/// `detach_stale_fuse` clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_fuse_attachment_is_cleared_by_detach_stale_fuse() {
    scenario(async |g| {
        let backing = g.sparse("lost.img", 32 * MIB);
        let source: Arc<dyn BlockSource> = Arc::new(ok(FileSource::open(&backing).await));
        let work = g.path("work");
        let a = ok(attach::attach_fuse(source, &work, "vol", false).await);
        let (dev, served) = (a.device().to_path_buf(), a.file().to_path_buf());
        g.loops.push((dev.clone(), served.clone()));
        g.mounted(&work);
        drop(a);
        // Still mounted, still served, still found by its path.
        assert!(ok(mount::is_mounted(&work).await));
        assert_eq!(ok(loopdev::find_by_backing_file(&served).await), vec![dev.clone()]);
        assert!(ok(mount::mkfs_if_blank(&dev, FsType::Ext4).await));
        // A filesystem mounted on it makes the cleanup refuse, not tear the device away.
        let mnt = g.mkdir("mnt");
        ok(mount::mount(&dev, &mnt, "ext4", &[]).await);
        g.mounted(&mnt);
        assert!(matches!(attach::detach_stale_fuse(&work, "vol").await, Err(NodeError::Busy(_))));
        ok(mount::unmount(&mnt).await);
        ok(attach::detach_stale_fuse(&work, "vol").await);
        ok(attach::detach_stale_fuse(&work, "vol").await); // idempotent
        assert_no_trace(&served, &[&work, &mnt]).await;
        assert_eq!(ok(mount::fs_type(&backing).await).as_deref(), Some("ext4"));
    })
    .await;
}

/// A FUSE server that died (its connection aborted through fusectl, as when the process
/// serving it is killed) leaves a dead mount and a loop device on it; `detach_stale_fuse`
/// clears both, so a restarted plugin can attach the volume again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_fuse_server_is_cleared_by_detach_stale_fuse() {
    scenario(async |g| {
        let backing = g.sparse("dead.img", 32 * MIB);
        let source: Arc<dyn BlockSource> = Arc::new(ok(FileSource::open(&backing).await));
        let work = g.path("work");
        let a = ok(attach::attach_fuse(source, &work, "vol", false).await);
        let (dev, served) = (a.device().to_path_buf(), a.file().to_path_buf());
        g.loops.push((dev.clone(), served.clone()));
        g.mounted(&work);
        let conn = ok(mount::find_by_target(&work).await).unwrap_or_else(|| panic!("FUSE not mounted")).minor;

        // fusectl (one instance per kernel) on a directory of our own, to abort the connection.
        let ctl = g.mkdir("fusectl");
        ok(mount::mount(Path::new("/fusectl"), &ctl, "fusectl", &[]).await);
        g.mounted(&ctl);
        io(tokio::fs::write(ctl.join(conn.to_string()).join("abort"), b"1").await);
        ok(mount::unmount(&ctl).await);
        // The server is gone: the file answers ENOTCONN; the handle can only be dropped.
        let stat = tokio::fs::metadata(&served).await;
        assert!(stat.is_err_and(|e| e.raw_os_error() == Some(libc::ENOTCONN)));
        drop(a);
        assert!(ok(mount::is_mounted(&work).await));
        // The kernel now shows the file as deleted: a stale device, never one to reuse.
        assert_eq!(ok(loopdev::find_by_backing_file(&served).await), Vec::<PathBuf>::new());
        assert_eq!(ok(loopdev::find_stale_by_backing_file(&served).await), vec![dev.clone()]);

        ok(attach::detach_stale_fuse(&work, "vol").await);
        assert_no_trace(&served, &[&work]).await;
    })
    .await;
}

/// Rough sequential throughput of 64 MiB written then read through FUSE + loop (direct I/O on
/// the loop device, so neither is cached), on a local file. Prints, asserts nothing about
/// speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuse_loop_sequential_throughput() {
    scenario(async |g| {
        let backing = g.sparse("speed.img", 128 * MIB);
        let source: Arc<dyn BlockSource> = Arc::new(ok(FileSource::open(&backing).await));
        let a = ok(attach::attach_fuse(source, &g.path("work"), "vol", false).await);
        let dev = a.device().to_path_buf();
        g.attachments.push(a);
        for bs in ["1M", "128k"] {
            let count = if bs == "1M" { 64 } else { 512 };
            let count = format!("count={count}");
            let t = Instant::now();
            let of = format!("of={}", dev.display());
            ok(dd(&["if=/dev/zero", &of, &format!("bs={bs}"), &count, "oflag=direct", "conv=fsync"]).await);
            let w = t.elapsed();
            let t = Instant::now();
            let inf = format!("if={}", dev.display());
            ok(dd(&[&inf, "of=/dev/null", &format!("bs={bs}"), &count, "iflag=direct"]).await);
            let r = t.elapsed();
            let mibps = |d: std::time::Duration| 64.0 / d.as_secs_f64();
            eprintln!("FUSE+loop, 64 MiB sequential, bs={bs}: write {:.0} MiB/s, read {:.0} MiB/s", mibps(w), mibps(r));
        }
        let a = g.attachments.pop().unwrap_or_else(|| panic!("no attachment"));
        ok(a.detach().await);
    })
    .await;
}

fn dd<'a>(args: &'a [&'a str]) -> impl Future<Output = Result<String>> + 'a {
    let mut cmd = cyvault_csi::node::CommandLine::new("dd").arg("status=none");
    for a in args {
        cmd = cmd.arg(*a);
    }
    async move { cmd.run().await }
}
