//! One block source served as one regular file through FUSE, so that a loop device can sit on
//! it: how an RBD image becomes a block device on a node without kernel RBD.
//!
//! The filesystem has a root directory holding exactly one file. Its size is the source's,
//! asked again on every `stat` (attributes are never cached), so after the source grew a
//! `stat` ([`FuseHandle::refresh_size`]) and `losetup --set-capacity` show the new size. The
//! file is opened with `FOPEN_DIRECT_IO`: no page cache on this file, every read and write the
//! loop device makes reaches the source, and `fsync` (and `flush`, on close) becomes
//! [`BlockSource::flush`], so what the filesystem on top made durable is durable in the source.
//!
//! Threads: fuser's session threads (two, each with its own `/dev/fuse` fd) only read requests
//! and hand them to the tokio runtime that called [`serve_file`], as spawned tasks that reply
//! when the source answers; nothing blocks a runtime worker and many requests are in flight at
//! once. That runtime must therefore stay alive, and should be multi-threaded, while the file is
//! served: a task that does synchronous I/O on a filesystem stacked on this file, on the
//! runtime's only thread, would wait for itself.
//!
//! Mounting `/dev/fuse` directly needs root (CAP_SYS_ADMIN); fuser then uses no libfuse and no
//! `fusermount3`.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use cyvault_store::rbd::Image;
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, WriteFlags,
};
use tokio::runtime::Handle;

use super::{NodeError, Result, check_path};

/// The largest read or write the kernel sends in one request (it may cap this lower: 256
/// pages by default).
pub const MAX_IO: u32 = 1 << 20;

/// The largest single [`FileSource`] read (its buffer is allocated whole), as for RBD images.
const MAX_SOURCE_READ: u64 = 1 << 30;

/// fuser session threads reading `/dev/fuse`.
const SESSION_THREADS: usize = 2;

/// How long [`FuseHandle::unmount`] retries an unmount the kernel calls busy (a loop device
/// that was just detached may still hold the file for a moment).
const UNMOUNT_RETRY: Duration = Duration::from_secs(2);

const FILE_INO: INodeNo = INodeNo(2);

/// A block device's contents: what [`serve_file`] serves. Offsets and lengths are bytes.
#[async_trait]
pub trait BlockSource: Send + Sync {
    /// Up to `len` bytes at `off`: shorter when the range crosses the end, empty past it.
    async fn read(&self, off: u64, len: u64) -> Result<Bytes>;
    /// Writes `data` at `off`; the whole range must lie within [`BlockSource::size`].
    async fn write(&self, off: u64, data: Bytes) -> Result<()>;
    /// Makes every write completed so far durable.
    async fn flush(&self) -> Result<()>;
    /// The current size in bytes.
    async fn size(&self) -> Result<u64>;
}

/// A local file as a block source (tests, the local backend). Its size is fixed by the file:
/// writes past the end fail instead of growing it.
#[derive(Debug, Clone)]
pub struct FileSource {
    file: Arc<std::fs::File>,
    path: PathBuf,
    read_only: bool,
}

impl FileSource {
    /// Opens an existing regular file for reading and writing.
    pub async fn open(path: &Path) -> Result<FileSource> {
        Self::open_with(path, false).await
    }

    /// Opens an existing regular file for reading only; writes fail with `EROFS`.
    pub async fn open_read_only(path: &Path) -> Result<FileSource> {
        Self::open_with(path, true).await
    }

    async fn open_with(path: &Path, read_only: bool) -> Result<FileSource> {
        let path = check_path("source file", path)?;
        let p = path.clone();
        let file = blocking(format!("open {}", path.display()), move || {
            let f = std::fs::OpenOptions::new().read(true).write(!read_only).open(&p)?;
            if !f.metadata()?.is_file() {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
            }
            Ok(f)
        })
        .await
        .map_err(|e| match e {
            NodeError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                NodeError::NotFound(format!("source file {}", path.display()))
            }
            other => other,
        })?;
        Ok(FileSource { file: Arc::new(file), path, read_only })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl BlockSource for FileSource {
    async fn read(&self, off: u64, len: u64) -> Result<Bytes> {
        if len > MAX_SOURCE_READ {
            return Err(NodeError::InvalidArgument(format!("read of {len} bytes: at most {MAX_SOURCE_READ} at once")));
        }
        let file = Arc::clone(&self.file);
        blocking(format!("read {len} bytes at {off} of {}", self.path.display()), move || {
            let size = file.metadata()?.len();
            let len = len.min(size.saturating_sub(off));
            let len = usize::try_from(len).map_err(std::io::Error::other)?;
            let mut buf = vec![0u8; len];
            let mut done = 0;
            while done < len {
                match file.read_at(&mut buf[done..], off + done as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            buf.truncate(done);
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn write(&self, off: u64, data: Bytes) -> Result<()> {
        if self.read_only {
            return Err(NodeError::Io {
                context: format!("write to {}", self.path.display()),
                source: std::io::Error::from_raw_os_error(libc::EROFS),
            });
        }
        let file = Arc::clone(&self.file);
        let context = format!("write {} bytes at {off} of {}", data.len(), self.path.display());
        blocking(context, move || {
            let size = file.metadata()?.len();
            let end = off.checked_add(data.len() as u64);
            if end.is_none_or(|end| end > size) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("past the end ({size} bytes)"),
                ));
            }
            file.write_all_at(&data, off)
        })
        .await
        .map_err(|e| match e {
            NodeError::Io { context, source } if source.kind() == std::io::ErrorKind::InvalidInput => {
                NodeError::InvalidArgument(format!("{context}: {source}"))
            }
            other => other,
        })
    }

    async fn flush(&self) -> Result<()> {
        let file = Arc::clone(&self.file);
        blocking(format!("fdatasync {}", self.path.display()), move || file.sync_data()).await
    }

    async fn size(&self) -> Result<u64> {
        let file = Arc::clone(&self.file);
        blocking(format!("stat {}", self.path.display()), move || Ok(file.metadata()?.len())).await
    }
}

async fn blocking<T: Send + 'static>(
    context: String,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(NodeError::Io { context, source }),
        Err(join) => Err(NodeError::Io { context, source: std::io::Error::other(join) }),
    }
}

/// An open RBD image as a block source (librbd AIO through `cyvault-store`).
///
/// `Image`'s futures are not `Send` (its `submit` keeps raw librbd pointers alive across an
/// `.await`), so they cannot run on the shared runtime's workers. The image therefore lives on
/// a thread of its own running a single-threaded runtime: each call is a message to it, run
/// there as a local task (many at once), answered through a oneshot. Nothing blocks: librbd
/// completes the I/O on its own threads either way.
#[derive(Debug)]
pub struct RbdSource {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    spec: String,
}

#[derive(Debug)]
enum Job {
    Read { off: u64, len: u64, tx: tokio::sync::oneshot::Sender<Result<Bytes>> },
    Write { off: u64, data: Bytes, tx: tokio::sync::oneshot::Sender<Result<()>> },
    Flush { tx: tokio::sync::oneshot::Sender<Result<()>> },
    Size { tx: tokio::sync::oneshot::Sender<Result<u64>> },
    Close { tx: tokio::sync::oneshot::Sender<Result<()>> },
}

impl Job {
    async fn run(self, image: &Image) {
        let spec = image.spec();
        // A caller that gave up dropped its receiver: nothing to tell.
        match self {
            Job::Read { off, len, tx } => {
                let _ = tx.send(image.read(off, len).await.map_err(store(format!("read rbd image {spec}"))));
            }
            Job::Write { off, data, tx } => {
                let _ = tx.send(image.write(off, data).await.map_err(store(format!("write rbd image {spec}"))));
            }
            Job::Flush { tx } => {
                let _ = tx.send(image.flush().await.map_err(store(format!("flush rbd image {spec}"))));
            }
            Job::Size { tx } => {
                let _ = tx.send(image.size().await.map_err(store(format!("size of rbd image {spec}"))));
            }
            Job::Close { tx } => {
                let _ = tx.send(Err(NodeError::Busy(format!("rbd image {spec} is closing"))));
            }
        }
    }
}

impl RbdSource {
    /// Takes the image over: it is served from a thread of its own until this source is
    /// dropped (then closed in the background) or [`RbdSource::close`]d.
    pub fn new(image: Image) -> Result<RbdSource> {
        let spec = image.spec().to_owned();
        let (jobs, rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("rbd-source".into())
            .spawn(move || rbd_worker(image, rx))
            .map_err(NodeError::io(format!("start the I/O thread of rbd image {spec}")))?;
        Ok(RbdSource { jobs, spec })
    }

    /// `pool/image`.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// Waits for the I/O in flight, then closes the image and waits until it is closed (its
    /// watch gone), so it can be opened again at once. Later calls fail.
    pub async fn close(&self) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Job::Close { tx }, rx).await
    }

    async fn send<T>(&self, job: Job, rx: tokio::sync::oneshot::Receiver<Result<T>>) -> Result<T> {
        let gone = || NodeError::Io {
            context: format!("rbd image {}", self.spec),
            source: std::io::Error::other("its I/O thread has stopped"),
        };
        self.jobs.send(job).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// The image's thread: runs every job as a local task; on `Close` (or when the source is
/// dropped) waits for those in flight, then closes the image.
fn rbd_worker(image: Image, mut rx: tokio::sync::mpsc::UnboundedReceiver<Job>) {
    let spec = image.spec().to_owned();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            // Dropping rx fails every call with "I/O thread has stopped"; the image closes
            // on drop.
            tracing::error!(image = %spec, error = %e, "cannot start the runtime of an rbd source");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let image = std::rc::Rc::new(image);
        let mut tasks = tokio::task::JoinSet::new();
        let mut close = None;
        while let Some(job) = rx.recv().await {
            if let Job::Close { tx } = job {
                close = Some(tx);
                break;
            }
            let img = std::rc::Rc::clone(&image);
            tasks.spawn_local(async move { job.run(&img).await });
            while tasks.try_join_next().is_some() {}
        }
        rx.close();
        while tasks.join_next().await.is_some() {}
        // Jobs sent after the close: refused.
        while let Ok(job) = rx.try_recv() {
            job.run(&image).await;
        }
        let result = match std::rc::Rc::try_unwrap(image) {
            Ok(image) => image.close().await.map_err(store(format!("close rbd image {spec}"))),
            Err(_) => Ok(()),
        };
        if let Some(tx) = close {
            let _ = tx.send(result);
        } else if let Err(e) = result {
            tracing::warn!(image = %spec, error = %e, "closing an rbd source's image failed");
        }
    });
}

fn store(context: impl Into<String>) -> impl FnOnce(cyvault_store::StoreError) -> NodeError {
    let context = context.into();
    move |source| NodeError::Store { context, source }
}

#[async_trait]
impl BlockSource for RbdSource {
    async fn read(&self, off: u64, len: u64) -> Result<Bytes> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Job::Read { off, len, tx }, rx).await
    }

    async fn write(&self, off: u64, data: Bytes) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Job::Write { off, data, tx }, rx).await
    }

    async fn flush(&self) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Job::Flush { tx }, rx).await
    }

    async fn size(&self) -> Result<u64> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Job::Size { tx }, rx).await
    }
}

/// How [`serve_file_with`] serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeOptions {
    /// The file is read-only (mode 0400, writes fail with `EROFS`).
    pub read_only: bool,
}

/// Serves `source` as the file `mount_dir/file_name` (read-write) until the handle is unmounted
/// or dropped. `mount_dir` must be an existing directory with nothing mounted on it.
pub async fn serve_file(source: Arc<dyn BlockSource>, mount_dir: &Path, file_name: &str) -> Result<FuseHandle> {
    serve_file_with(source, mount_dir, file_name, ServeOptions::default()).await
}

/// [`serve_file`] with options.
pub async fn serve_file_with(
    source: Arc<dyn BlockSource>,
    mount_dir: &Path,
    file_name: &str,
    opts: ServeOptions,
) -> Result<FuseHandle> {
    let mount_dir = check_path("FUSE mount directory", mount_dir)?;
    check_file_name(file_name)?;
    let rt = Handle::try_current()
        .map_err(|e| NodeError::InvalidArgument(format!("serve_file must run inside a tokio runtime: {e}")))?;
    match tokio::fs::metadata(&mount_dir).await {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(NodeError::InvalidArgument(format!("{} is not a directory", mount_dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NodeError::NotFound(format!("FUSE mount directory {}", mount_dir.display())));
        }
        Err(e) => return Err(NodeError::Io { context: format!("stat {}", mount_dir.display()), source: e }),
    }
    if let Some(e) = super::mount::find_by_target(&mount_dir).await? {
        return Err(NodeError::Busy(format!(
            "{} is already a mount point (of {} {})",
            mount_dir.display(),
            e.fs_type,
            e.source
        )));
    }
    // Fail here, not at the first stat, if the source is unusable.
    let size = source.size().await?;

    let fs = BlockFs {
        source,
        rt,
        name: file_name.to_owned(),
        read_only: opts.read_only,
        size: Arc::new(AtomicU64::new(size)),
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        started: SystemTime::now(),
    };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("cyvault:{file_name}")),
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoExec,
        MountOption::NoAtime,
    ];
    if opts.read_only {
        config.mount_options.push(MountOption::RO);
    }
    config.n_threads = Some(SESSION_THREADS);
    config.clone_fd = true;
    let dir = mount_dir.clone();
    let session = tokio::task::spawn_blocking(move || fuser::Session::new(fs, &dir, &config).and_then(|s| s.spawn()))
        .await
        .map_err(|e| NodeError::Io {
            context: format!("mount FUSE on {}", mount_dir.display()),
            source: std::io::Error::other(e),
        })?
        .map_err(NodeError::io(format!("mount FUSE on {}", mount_dir.display())))?;
    let file = mount_dir.join(file_name);
    tracing::debug!(file = %file.display(), size, "serving a block source through FUSE");
    Ok(FuseHandle { mount_dir, file, session: Some(session) })
}

fn check_file_name(name: &str) -> Result<()> {
    let ok = !name.is_empty() && name != "." && name != ".." && name.len() <= 255 && !name.contains(['/', '\0']);
    if ok { Ok(()) } else { Err(NodeError::InvalidArgument(format!("bad FUSE file name {name:?}"))) }
}

/// A mounted FUSE filesystem serving one file. [`FuseHandle::unmount`] unmounts it and waits
/// for the session threads; dropping it unmounts without waiting, unless the file is still in
/// use (a loop device never detached): then it stays mounted and served by this process, for
/// [`super::attach::detach_stale_fuse`] to clear.
pub struct FuseHandle {
    mount_dir: PathBuf,
    file: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl fmt::Debug for FuseHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FuseHandle")
            .field("mount_dir", &self.mount_dir)
            .field("file", &self.file)
            .field("mounted", &self.session.is_some())
            .finish()
    }
}

impl FuseHandle {
    /// Where the filesystem is mounted.
    pub fn mount_dir(&self) -> &Path {
        &self.mount_dir
    }

    /// The served file: `mount_dir/file_name`.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// True until [`FuseHandle::unmount`] succeeded.
    pub fn is_mounted(&self) -> bool {
        self.session.is_some()
    }

    /// Stats the file, which asks the source for its size and updates the kernel's idea of it;
    /// do this after the source grew and before `losetup --set-capacity`. Returns the size.
    pub async fn refresh_size(&self) -> Result<u64> {
        let m =
            tokio::fs::metadata(&self.file).await.map_err(NodeError::io(format!("stat {}", self.file.display())))?;
        Ok(m.len())
    }

    /// Unmounts and waits for the session threads to end. Idempotent. While the file is still
    /// open (a loop device still attached) this fails with [`NodeError::Busy`] after two
    /// seconds of retrying, and the filesystem stays mounted and served.
    pub async fn unmount(&mut self) -> Result<()> {
        let Some(session) = self.session.take() else { return Ok(()) };
        let dir = self.mount_dir.clone();
        let res = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + UNMOUNT_RETRY;
            loop {
                match rustix::mount::unmount(&dir, rustix::mount::UnmountFlags::empty()) {
                    // EINVAL: not a mount point any more (someone unmounted it).
                    Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => break,
                    Err(rustix::io::Errno::BUSY) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => return Err((session, e)),
                }
            }
            // The kernel aborted the connection: the session threads see ENODEV and end.
            if let Err(e) = session.umount_and_join() {
                tracing::warn!(dir = %dir.display(), error = %e, "FUSE session ended with an error");
            }
            Ok(())
        })
        .await;
        match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err((session, errno))) => {
                self.session = Some(session);
                let source = std::io::Error::from(errno);
                if errno == rustix::io::Errno::BUSY {
                    Err(NodeError::Busy(format!(
                        "FUSE mount {}: {source} (is a loop device still attached?)",
                        self.mount_dir.display()
                    )))
                } else {
                    Err(NodeError::Io { context: format!("unmount FUSE {}", self.mount_dir.display()), source })
                }
            }
            Err(join) => Err(NodeError::Io {
                context: format!("unmount FUSE {}", self.mount_dir.display()),
                source: std::io::Error::other(join),
            }),
        }
    }
}

impl Drop for FuseHandle {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else { return };
        use rustix::mount::{UnmountFlags, unmount};
        match unmount(&self.mount_dir, UnmountFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
            // Never lazily: a detached mount hides the file's path, and with it the loop
            // device still on it from `loopdev::find_by_backing_file` and
            // `attach::detach_stale_fuse`. The session threads keep serving until then.
            Err(e) => tracing::warn!(
                dir = %self.mount_dir.display(),
                error = %e,
                "FUSE handle dropped while its file is in use: it stays mounted and served"
            ),
        }
        drop(session);
    }
}

/// The FUSE filesystem: inode 1 is the root directory, inode 2 the file.
struct BlockFs {
    source: Arc<dyn BlockSource>,
    rt: Handle,
    name: String,
    read_only: bool,
    /// The size last reported to the kernel.
    size: Arc<AtomicU64>,
    uid: u32,
    gid: u32,
    started: SystemTime,
}

impl BlockFs {
    fn dir_attr(&self) -> FileAttr {
        FileAttr {
            ino: INodeNo::ROOT,
            size: 0,
            blocks: 0,
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind: FileType::Directory,
            perm: 0o755,
            nlink: 2,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn file_attr(started: SystemTime, uid: u32, gid: u32, read_only: bool, size: u64) -> FileAttr {
        FileAttr {
            ino: FILE_INO,
            size,
            blocks: size.div_ceil(512),
            atime: started,
            mtime: started,
            ctime: started,
            crtime: started,
            kind: FileType::RegularFile,
            perm: if read_only { 0o400 } else { 0o600 },
            nlink: 1,
            uid,
            gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Runs `f(source)` on the runtime and gives its result to `reply`.
    fn spawn<T, F>(
        &self,
        f: impl FnOnce(Arc<dyn BlockSource>) -> F + Send + 'static,
        reply: impl FnOnce(Result<T>) + Send + 'static,
    ) where
        F: std::future::Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let source = Arc::clone(&self.source);
        // If the runtime is gone the task (and the reply in it) is dropped: fuser answers EIO.
        self.rt.spawn(async move { reply(f(source).await) });
    }

    /// The file's attributes with a fresh size, to `reply`.
    fn with_file_attr(&self, reply: impl FnOnce(Result<FileAttr>) + Send + 'static) {
        let (started, uid, gid, read_only) = (self.started, self.uid, self.gid, self.read_only);
        let cached = Arc::clone(&self.size);
        self.spawn(
            |s| async move { s.size().await },
            move |r: Result<u64>| {
                reply(r.map(|size| {
                    cached.store(size, Ordering::Relaxed);
                    Self::file_attr(started, uid, gid, read_only, size)
                }))
            },
        );
    }
}

fn errno(e: &NodeError) -> Errno {
    Errno::from_i32(e.errno())
}

/// Attributes are never cached: every stat asks the source.
const NO_CACHE: Duration = Duration::ZERO;

impl Filesystem for BlockFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(max) = config.set_max_write(MAX_IO) {
            let _ = config.set_max_write(max);
        }
        // Asynchronous direct I/O (the loop device's): requests go out concurrently.
        let _ = config.add_capabilities(config.capabilities() & InitFlags::FUSE_ASYNC_DIO);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent != INodeNo::ROOT || name != OsStr::new(&self.name) {
            reply.error(Errno::ENOENT);
            return;
        }
        self.with_file_attr(move |r| match r {
            Ok(attr) => reply.entry(&NO_CACHE, &attr, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT {
            reply.attr(&NO_CACHE, &self.dir_attr());
        } else if ino == FILE_INO {
            self.with_file_attr(move |r| match r {
                Ok(attr) => reply.attr(&NO_CACHE, &attr),
                Err(e) => reply.error(errno(&e)),
            });
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if ino != FILE_INO {
            reply.error(if ino == INodeNo::ROOT { Errno::EPERM } else { Errno::ENOENT });
            return;
        }
        // Owner and mode are fixed; the size is the source's (resize the source instead).
        // Time updates are accepted and ignored.
        if mode.is_some() || uid.is_some() || gid.is_some() {
            reply.error(Errno::EPERM);
            return;
        }
        self.with_file_attr(move |r| match r {
            Ok(attr) if size.is_none_or(|s| s == attr.size) => reply.attr(&NO_CACHE, &attr),
            Ok(_) => reply.error(Errno::EPERM),
            Err(e) => reply.error(errno(&e)),
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if ino != FILE_INO {
            reply.error(if ino == INodeNo::ROOT { Errno::EISDIR } else { Errno::ENOENT });
            return;
        }
        if self.read_only && flags.acc_mode() != OpenAccMode::O_RDONLY {
            reply.error(Errno::EROFS);
            return;
        }
        reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES);
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if ino != FILE_INO {
            reply.error(Errno::EISDIR);
            return;
        }
        self.spawn(
            move |s| async move { s.read(offset, u64::from(size)).await },
            move |r| match r {
                Ok(data) => reply.data(&data),
                Err(e) => {
                    tracing::warn!(offset, size, error = %e, "FUSE read failed");
                    reply.error(errno(&e))
                }
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if ino != FILE_INO {
            reply.error(Errno::EISDIR);
            return;
        }
        if self.read_only {
            reply.error(Errno::EROFS);
            return;
        }
        let Ok(len) = u32::try_from(data.len()) else {
            reply.error(Errno::EINVAL);
            return;
        };
        // The request buffer is fuser's, reused for the next request: copy once.
        let data = Bytes::copy_from_slice(data);
        self.spawn(
            move |s| async move { s.write(offset, data).await },
            move |r| match r {
                Ok(()) => reply.written(len),
                Err(e) => {
                    tracing::warn!(offset, len, error = %e, "FUSE write failed");
                    reply.error(errno(&e))
                }
            },
        );
    }

    fn flush(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        self.sync(ino, reply);
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.sync(ino, reply);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if ino != INodeNo::ROOT {
            reply.error(Errno::ENOTDIR);
            return;
        }
        let entries = [
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
            (FILE_INO, FileType::RegularFile, self.name.as_str()),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(usize::try_from(offset).unwrap_or(usize::MAX)) {
            if reply.add(*ino, i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let blocks = self.size.load(Ordering::Relaxed).div_ceil(4096);
        reply.statfs(blocks, 0, 0, 2, 0, 4096, 255, 4096);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        // Discard / write-zeroes: not offered (a loop device then stops asking).
        reply.error(Errno::EOPNOTSUPP);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: fuser::ReplyCreate,
    ) {
        reply.error(Errno::EPERM);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn mkdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        reply.error(Errno::EPERM);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EPERM);
    }
}

impl BlockFs {
    /// `fsync` and `flush` (on close): everything written so far made durable in the source.
    fn sync(&self, ino: INodeNo, reply: ReplyEmpty) {
        if ino != FILE_INO || self.read_only {
            reply.ok();
            return;
        }
        self.spawn(
            |s| async move { s.flush().await },
            move |r| match r {
                Ok(()) => reply.ok(),
                Err(e) => {
                    tracing::warn!(error = %e, "FUSE flush failed");
                    reply.error(errno(&e))
                }
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_checked() {
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_file_name(&"x".repeat(256)).is_err());
        assert!(check_file_name("disk.img").is_ok());
    }

    #[tokio::test]
    async fn file_source_reads_writes_within_its_size() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 8192]).unwrap_or_else(|e| panic!("{e}"));
        let src = FileSource::open(&path).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(src.size().await.ok(), Some(8192));
        assert!(src.write(4096, Bytes::from_static(b"hello")).await.is_ok());
        assert_eq!(src.read(4096, 5).await.ok().as_deref(), Some(&b"hello"[..]));
        // Crossing the end: short; past it: empty.
        assert_eq!(src.read(8190, 10).await.map(|b| b.len()).ok(), Some(2));
        assert_eq!(src.read(9000, 10).await.map(|b| b.len()).ok(), Some(0));
        assert!(matches!(src.read(0, u64::MAX).await, Err(NodeError::InvalidArgument(_))));
        assert!(matches!(src.write(8190, Bytes::from_static(b"abc")).await, Err(NodeError::InvalidArgument(_))));
        assert!(src.flush().await.is_ok());
        let ro = FileSource::open_read_only(&path).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(ro.write(0, Bytes::from_static(b"x")).await.is_err_and(|e| e.errno() == libc::EROFS));
        assert!(matches!(FileSource::open(&dir.path().join("missing")).await, Err(NodeError::NotFound(_))));
        assert!(matches!(FileSource::open(Path::new("relative")).await, Err(NodeError::InvalidArgument(_))));
    }
}
