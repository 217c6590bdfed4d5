//! Where volume bytes live: RBD images (`RbdVolumes`) or sparse files in one directory
//! (`FileVolumes`, the local backend). The controller only sees the [`Volumes`] trait.
//!
//! A snapshot is an image of its own (`csi-snap-<uuid>`), never a bare RBD snapshot of the
//! source: it is cloned from a temporary snapshot of the source and flattened, so it stays
//! restorable after the source is deleted. A volume made from a snapshot or another volume is
//! flattened too, so no image ever has a parent for long and clone depth stays 0.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use cyvault_store::rados::PoolDf;
use cyvault_store::rbd::{CreateOptions, Rbd, features};
use cyvault_store::{Cluster, RadosStore, StoreError};

pub type VResult<T> = std::result::Result<T, StoreError>;

/// Image operations of the controller. Every method is idempotent in the sense the CSI retries
/// need: creating what exists (with the same size) or removing what is gone succeeds.
#[async_trait]
pub trait Volumes: Send + Sync + fmt::Debug {
    /// `rados` or `local`.
    fn backend(&self) -> &'static str;
    /// Creates an empty image of `size` bytes.
    async fn create(&self, pool: &str, image: &str, size: u64, features: Option<u64>) -> VResult<()>;
    /// Creates `image` with the content of `source` (a volume or snapshot image), `size` bytes
    /// (at least the source's), independent of the source.
    async fn copy(&self, pool: &str, source: &str, image: &str, size: u64) -> VResult<()>;
    /// Removes an image; `Ok` when it does not exist.
    async fn remove(&self, pool: &str, image: &str) -> VResult<()>;
    /// Grows an image.
    async fn resize(&self, pool: &str, image: &str, size: u64) -> VResult<()>;
    /// The image's size, `None` when it does not exist.
    async fn size(&self, pool: &str, image: &str) -> VResult<Option<u64>>;
    /// Whether something has the image open (RBD watchers; never for files).
    async fn in_use(&self, pool: &str, image: &str) -> VResult<bool>;
    /// Every image of a pool.
    async fn list(&self, pool: &str) -> VResult<Vec<String>>;
    /// Bytes that can still be allocated in a pool.
    async fn available(&self, pool: &str) -> VResult<u64>;
    /// A cheap call that fails when the backend is unreachable.
    async fn probe(&self) -> VResult<()>;
}

/// RBD images through librbd.
#[derive(Clone, Debug)]
pub struct RbdVolumes {
    cluster: Arc<Cluster>,
    store: Arc<RadosStore>,
}

impl RbdVolumes {
    pub fn new(cluster: Arc<Cluster>, store: Arc<RadosStore>) -> RbdVolumes {
        RbdVolumes { cluster, store }
    }

    async fn rbd(&self, pool: &str) -> VResult<Rbd> {
        Rbd::new(self.store.ioctx(pool, "").await?)
    }
}

fn ignore_exists(r: VResult<()>) -> VResult<()> {
    match r {
        Err(StoreError::AlreadyExists(_)) => Ok(()),
        other => other,
    }
}

fn ignore_missing(r: VResult<()>) -> VResult<()> {
    match r {
        Err(StoreError::NotFound(_)) => Ok(()),
        other => other,
    }
}

/// The temporary snapshot a copy is cloned from (named after the target, so a retried copy finds
/// its own).
fn temp_snap(image: &str) -> String {
    format!("csi-tmp-{image}")
}

#[async_trait]
impl Volumes for RbdVolumes {
    fn backend(&self) -> &'static str {
        "rados"
    }

    async fn create(&self, pool: &str, image: &str, size: u64, feats: Option<u64>) -> VResult<()> {
        let rbd = self.rbd(pool).await?;
        let opts = CreateOptions { size, features: feats, ..CreateOptions::default() };
        match rbd.create(image, &opts).await {
            Err(StoreError::AlreadyExists(_)) => match rbd.info(image).await?.size {
                s if s == size => Ok(()),
                s => Err(StoreError::AlreadyExists(format!("image {pool}/{image} exists with {s} bytes, not {size}"))),
            },
            other => other,
        }
    }

    async fn copy(&self, pool: &str, source: &str, image: &str, size: u64) -> VResult<()> {
        let rbd = self.rbd(pool).await?;
        let snap = temp_snap(image);
        if rbd.size_or_none(image).await?.is_none() {
            ignore_exists(rbd.snap_create(source, &snap).await)?;
            let opts = CreateOptions { size: 0, features: Some(features::DEFAULT), ..CreateOptions::default() };
            ignore_exists(rbd.clone(source, &snap, image, &opts).await)?;
        }
        // Independent of the source from here on: the source may be deleted at any time.
        if rbd.info(image).await?.parent.is_some() {
            rbd.flatten(image).await?;
        }
        ignore_missing(rbd.snap_remove(source, &snap).await)?;
        let have = rbd.info(image).await?.size;
        if size > have {
            rbd.resize(image, size).await?;
        }
        Ok(())
    }

    async fn remove(&self, pool: &str, image: &str) -> VResult<()> {
        let rbd = self.rbd(pool).await?;
        // Temporary snapshots a crashed copy from this image left behind.
        if let Ok(snaps) = rbd.snap_list(image).await {
            for s in snaps.iter().filter(|s| s.name.starts_with("csi-tmp-")) {
                ignore_missing(rbd.snap_remove(image, &s.name).await)?;
            }
        }
        ignore_missing(rbd.remove(image).await)
    }

    async fn resize(&self, pool: &str, image: &str, size: u64) -> VResult<()> {
        self.rbd(pool).await?.resize(image, size).await
    }

    async fn size(&self, pool: &str, image: &str) -> VResult<Option<u64>> {
        self.rbd(pool).await?.size_or_none(image).await
    }

    async fn in_use(&self, pool: &str, image: &str) -> VResult<bool> {
        match self.rbd(pool).await?.watchers(image).await {
            Ok(w) => Ok(!w.is_empty()),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, pool: &str) -> VResult<Vec<String>> {
        self.rbd(pool).await?.list().await
    }

    async fn available(&self, pool: &str) -> VResult<u64> {
        let df: Vec<PoolDf> = self.cluster.df().await?;
        df.into_iter()
            .find(|d| d.name == pool)
            .map(|d| d.max_avail_bytes)
            .ok_or_else(|| StoreError::NotFound(format!("pool {pool}")))
    }

    async fn probe(&self) -> VResult<()> {
        self.cluster.df().await.map(|_| ())
    }
}

/// Extension: a size lookup that treats a missing image as `None`.
#[async_trait]
trait SizeOrNone {
    async fn size_or_none(&self, image: &str) -> VResult<Option<u64>>;
}

#[async_trait]
impl SizeOrNone for Rbd {
    async fn size_or_none(&self, image: &str) -> VResult<Option<u64>> {
        match self.info(image).await {
            Ok(i) => Ok(Some(i.size)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Volumes as sparse files: `DIR/pools/<pool>/<image>.img`. Copies keep holes (`cp --sparse`).
#[derive(Clone, Debug)]
pub struct FileVolumes {
    root: PathBuf,
}

impl FileVolumes {
    pub fn new(root: impl Into<PathBuf>) -> FileVolumes {
        FileVolumes { root: root.into() }
    }

    /// The file of an image (also what the node plugin attaches on the local backend).
    pub fn path(&self, pool: &str, image: &str) -> PathBuf {
        self.root.join("pools").join(pool).join(format!("{image}.img"))
    }

    fn pool_dir(&self, pool: &str) -> PathBuf {
        self.root.join("pools").join(pool)
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> StoreError {
    move |e| match e.kind() {
        std::io::ErrorKind::NotFound => StoreError::NotFound(context),
        _ => StoreError::Io { context, source: e },
    }
}

fn file_size(path: &Path) -> VResult<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Io { context: format!("stat {}", path.display()), source: e }),
    }
}

#[async_trait]
impl Volumes for FileVolumes {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn create(&self, pool: &str, image: &str, size: u64, _features: Option<u64>) -> VResult<()> {
        let path = self.path(pool, image);
        let dir = self.pool_dir(pool);
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
            if let Some(s) = file_size(&path)? {
                return if s == size {
                    Ok(())
                } else {
                    Err(StoreError::AlreadyExists(format!("{} exists with {s} bytes, not {size}", path.display())))
                };
            }
            // Written under a temporary name and renamed, so a crash never leaves a short file
            // under the real name.
            let tmp = path.with_extension("img.tmp");
            let f = std::fs::File::create(&tmp).map_err(io(format!("create {}", tmp.display())))?;
            f.set_len(size).map_err(io(format!("size {}", tmp.display())))?;
            f.sync_all().map_err(io(format!("sync {}", tmp.display())))?;
            std::fs::rename(&tmp, &path).map_err(io(format!("rename to {}", path.display())))
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("blocking task: {e}")))?
    }

    async fn copy(&self, pool: &str, source: &str, image: &str, size: u64) -> VResult<()> {
        let (src, dst) = (self.path(pool, source), self.path(pool, image));
        if file_size(&dst)?.is_none() {
            if file_size(&src)?.is_none() {
                return Err(StoreError::NotFound(format!("{}", src.display())));
            }
            let tmp = dst.with_extension("img.tmp");
            let out = tokio::process::Command::new("cp")
                .arg("--sparse=always")
                .arg(&src)
                .arg(&tmp)
                .output()
                .await
                .map_err(io("run cp".into()))?;
            if !out.status.success() {
                return Err(StoreError::Unavailable(format!(
                    "cp {} {}: {}",
                    src.display(),
                    tmp.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            std::fs::rename(&tmp, &dst).map_err(io(format!("rename to {}", dst.display())))?;
        }
        if file_size(&dst)?.unwrap_or(0) < size {
            self.resize(pool, image, size).await?;
        }
        Ok(())
    }

    async fn remove(&self, pool: &str, image: &str) -> VResult<()> {
        let path = self.path(pool, image);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io { context: format!("remove {}", path.display()), source: e }),
        }
    }

    async fn resize(&self, pool: &str, image: &str, size: u64) -> VResult<()> {
        let path = self.path(pool, image);
        let f = std::fs::OpenOptions::new().write(true).open(&path).map_err(io(format!("open {}", path.display())))?;
        f.set_len(size).map_err(io(format!("resize {}", path.display())))?;
        f.sync_all().map_err(io(format!("sync {}", path.display())))
    }

    async fn size(&self, pool: &str, image: &str) -> VResult<Option<u64>> {
        file_size(&self.path(pool, image))
    }

    async fn in_use(&self, _pool: &str, _image: &str) -> VResult<bool> {
        Ok(false)
    }

    async fn list(&self, pool: &str) -> VResult<Vec<String>> {
        let dir = self.pool_dir(pool);
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(StoreError::Io { context: format!("list {}", dir.display()), source: e }),
        };
        for e in entries.flatten() {
            if let Some(name) = e.file_name().to_str().and_then(|n| n.strip_suffix(".img")) {
                out.push(name.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    async fn available(&self, _pool: &str) -> VResult<u64> {
        std::fs::create_dir_all(&self.root).map_err(io(format!("create {}", self.root.display())))?;
        statvfs_available(&self.root)
    }

    async fn probe(&self) -> VResult<()> {
        std::fs::create_dir_all(&self.root).map_err(io(format!("create {}", self.root.display())))
    }
}

/// Bytes available to unprivileged users on the filesystem holding `path`.
fn statvfs_available(path: &Path) -> VResult<u64> {
    let st = rustix::fs::statvfs(path).map_err(|e| StoreError::Io {
        context: format!("statvfs {}", path.display()),
        source: std::io::Error::from(e),
    })?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}
