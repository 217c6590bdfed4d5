//! RBD images: a thin safe wrapper over librbd.
//!
//! [`Rbd`] manages the images of one pool (create, clone, snapshot, resize, flatten, remove,
//! list, watchers) and opens them; an open [`Image`] reads and writes.
//!
//! Image I/O (read, write, discard, flush) is submitted with `rbd_aio_*` and finishes through a
//! completion callback that hands the result to the waiting task, so no runtime worker ever
//! waits on the cluster. Everything else in librbd is synchronous and runs on tokio's blocking
//! pool; each such call opens the image, does its work and closes it again.
//!
//! Ownership rules (see `image.rs` for the details): an open image keeps its pool handle, and
//! so the cluster connection, alive; every in-flight I/O keeps the image alive; an image is
//! closed on a thread of its own, never on a runtime worker and never inside a librbd callback.

mod ffi;
mod image;

use std::ffi::{CStr, CString};
use std::fmt;
use std::ptr;
use std::sync::Arc;

use libc::{c_char, c_int};
use tracing::{debug, warn};

use crate::error::{Result, StoreError};
use crate::rados::{IoCtx, blocking, cstring};

pub use image::{Image, MAX_IO_LEN};

/// Feature bits of an image (`rbd/features.h`), for [`CreateOptions::features`] and
/// [`ImageInfo::features`].
pub mod features {
    pub const LAYERING: u64 = 1 << 0;
    pub const STRIPINGV2: u64 = 1 << 1;
    pub const EXCLUSIVE_LOCK: u64 = 1 << 2;
    pub const OBJECT_MAP: u64 = 1 << 3;
    pub const FAST_DIFF: u64 = 1 << 4;
    pub const DEEP_FLATTEN: u64 = 1 << 5;
    pub const JOURNALING: u64 = 1 << 6;
    /// Set by librbd on images whose data lives in a separate data pool.
    pub const DATA_POOL: u64 = 1 << 7;
    pub const OPERATIONS: u64 = 1 << 8;
    pub const MIGRATING: u64 = 1 << 9;
    pub const NON_PRIMARY: u64 = 1 << 10;
    pub const DIRTY_CACHE: u64 = 1 << 11;
    /// What librbd enables when no features are given (unless the cluster's
    /// `rbd_default_features` says otherwise).
    pub const DEFAULT: u64 = LAYERING | EXCLUSIVE_LOCK | OBJECT_MAP | FAST_DIFF | DEEP_FLATTEN;
}

/// The longest image or snapshot name this wrapper accepts, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// The smallest and largest object size librbd accepts (orders 12 to 25).
pub const MIN_OBJECT_SIZE: u64 = 1 << 12;
pub const MAX_OBJECT_SIZE: u64 = 1 << 25;

/// How to create an image (or a clone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// Size in bytes. For a clone, 0 keeps the snapshot's size and anything else resizes the
    /// clone right after it is created.
    pub size: u64,
    /// Feature bits (see [`features`]); `None` takes the cluster's default. A clone needs
    /// [`features::LAYERING`].
    pub features: Option<u64>,
    /// Object size in bytes: a power of two from 4 KiB to 32 MiB, with the plain layout (stripe
    /// unit = object size, stripe count 1); `None` takes the default (4 MiB, or for a clone the
    /// parent's layout).
    pub object_size: Option<u64>,
    /// Pool that holds the data objects (e.g. an erasure-coded pool); the image's metadata
    /// stays in the pool of the [`Rbd`]. `None` keeps the data there too.
    pub data_pool: Option<String>,
}

impl CreateOptions {
    /// Default layout, `size` bytes.
    pub fn new(size: u64) -> Self {
        CreateOptions { size, ..CreateOptions::default() }
    }
}

/// What [`Rbd::info`] reports about an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub size: u64,
    pub object_size: u64,
    /// log2 of `object_size`.
    pub order: u8,
    /// How many objects an image of this size spans.
    pub num_objs: u64,
    pub features: u64,
    /// Name of the separate data pool; `None` when the data lives in the image's own pool.
    pub data_pool: Option<String>,
    /// The snapshot this image was cloned from, until it is flattened.
    pub parent: Option<ParentSpec>,
}

/// The parent snapshot of a clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentSpec {
    pub pool: String,
    /// RADOS namespace of the parent; empty for the default namespace.
    pub namespace: String,
    pub image: String,
    pub snap: String,
}

impl fmt::Display for ParentSpec {
    /// `pool/image@snap`, or `pool/namespace/image@snap`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}@{}", self.pool, self.image, self.snap)
        } else {
            write!(f, "{}/{}/{}@{}", self.pool, self.namespace, self.image, self.snap)
        }
    }
}

/// A snapshot of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapInfo {
    pub id: u64,
    pub name: String,
    /// Size of the image when the snapshot was taken.
    pub size: u64,
}

/// A client watching an image's header: an image with watchers is open somewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watcher {
    /// The client's address, e.g. `127.0.0.1:0/3712346215`.
    pub addr: String,
    /// The client's global id (`client.<id>`).
    pub id: i64,
    pub cookie: u64,
}

/// The RBD images of one pool (and namespace).
#[derive(Debug)]
pub struct Rbd {
    io: Arc<IoCtx>,
}

impl Rbd {
    /// Manages the images of the pool `io` is bound to. Loads librbd the first time;
    /// `LibraryMissing` when it is not installed.
    pub fn new(io: Arc<IoCtx>) -> Result<Self> {
        ffi::load()?;
        Ok(Rbd { io })
    }

    /// Name of the pool.
    pub fn pool(&self) -> &str {
        self.io.pool()
    }

    /// `pool/name`, as used in messages.
    fn spec(&self, name: &str) -> String {
        format!("{}/{}", self.io.pool(), name)
    }

    /// Creates an image. An existing image of that name gives `AlreadyExists`.
    pub async fn create(&self, name: &str, opts: &CreateOptions) -> Result<()> {
        validate_name("image name", name)?;
        let layout = Layout::new(opts)?;
        let c_name = cstring(name, "image name")?;
        let io = Arc::clone(&self.io);
        let context = format!("create rbd image {}", self.spec(name));
        let size = opts.size;
        blocking(move || {
            let options = layout.options(&context)?;
            // SAFETY: valid ioctx, C string and options handle, all alive for the call.
            let rc = unsafe { ffi::rbd_create4(io.raw(), c_name.as_ptr(), size, options.raw) };
            check(rc, &context)
        })
        .await?;
        debug!(image = %self.spec(name), size, "rbd image created");
        Ok(())
    }

    /// Removes an image and its data. Refused with `Busy` while the image is open somewhere
    /// (has watchers, including an [`Image`] of this process), has snapshots, or has clones;
    /// the image is then left as it was. An [`Image`] that was dropped rather than closed
    /// closes in the background, so close it with [`Image::close`] before removing.
    pub async fn remove(&self, name: &str) -> Result<()> {
        validate_name("image name", name)?;
        let c_name = cstring(name, "image name")?;
        let io = Arc::clone(&self.io);
        let spec = self.spec(name);
        let s = spec.clone();
        blocking(move || {
            // SAFETY: valid ioctx and C string.
            let rc = unsafe { ffi::rbd_remove(io.raw(), c_name.as_ptr()) };
            if rc < 0 {
                return Err(StoreError::from_errno(rc, remove_context(&s, rc)));
            }
            Ok(())
        })
        .await?;
        debug!(image = %spec, "rbd image removed");
        Ok(())
    }

    /// Grows or shrinks an image to `size` bytes. Shrinking discards the data past the new end.
    pub async fn resize(&self, name: &str, size: u64) -> Result<()> {
        let context = format!("resize rbd image {} to {size} bytes", self.spec(name));
        self.with_image(name, Access::ReadWrite, move |img| resize_blocking(img.raw, size, &context)).await
    }

    /// Size, layout, features, data pool and parent of an image.
    pub async fn info(&self, name: &str) -> Result<ImageInfo> {
        let spec = self.spec(name);
        let io = Arc::clone(&self.io);
        self.with_image(name, Access::ReadOnly, move |img| read_info(&io, img.raw, &spec)).await
    }

    /// Names of all images in the pool, sorted.
    pub async fn list(&self) -> Result<Vec<String>> {
        let io = Arc::clone(&self.io);
        blocking(move || list_blocking(&io)).await
    }

    /// Takes a snapshot of an image.
    pub async fn snap_create(&self, name: &str, snap: &str) -> Result<()> {
        validate_name("snapshot name", snap)?;
        let c_snap = cstring(snap, "snapshot name")?;
        let context = format!("create snapshot {}@{snap}", self.spec(name));
        self.with_image(name, Access::ReadWrite, move |img| {
            // SAFETY: open image; C string alive for the call.
            check(unsafe { ffi::rbd_snap_create(img.raw, c_snap.as_ptr()) }, &context)
        })
        .await
    }

    /// Removes a snapshot. A snapshot that still has (clone v2) children is moved to librbd's
    /// trash and removed with its last child.
    pub async fn snap_remove(&self, name: &str, snap: &str) -> Result<()> {
        validate_name("snapshot name", snap)?;
        let c_snap = cstring(snap, "snapshot name")?;
        let context = format!("remove snapshot {}@{snap}", self.spec(name));
        self.with_image(name, Access::ReadWrite, move |img| {
            // SAFETY: open image; C string alive for the call.
            check(unsafe { ffi::rbd_snap_remove(img.raw, c_snap.as_ptr()) }, &context)
        })
        .await
    }

    /// The snapshots of an image, oldest first.
    pub async fn snap_list(&self, name: &str) -> Result<Vec<SnapInfo>> {
        let context = format!("list snapshots of rbd image {}", self.spec(name));
        self.with_image(name, Access::ReadOnly, move |img| snap_list_blocking(img.raw, &context)).await
    }

    /// Clones snapshot `parent@snap` into a new image `child` in this pool, as a format 2 clone
    /// (the snapshot need not be protected; the cluster must require clients of at least Mimic).
    /// `opts.size` 0 keeps the snapshot's size; another size resizes the clone afterwards (if
    /// that fails, the clone is removed again).
    pub async fn clone(&self, parent: &str, snap: &str, child: &str, opts: &CreateOptions) -> Result<()> {
        validate_name("image name", parent)?;
        validate_name("snapshot name", snap)?;
        validate_name("image name", child)?;
        let layout = Layout::new(opts)?;
        let (c_parent, c_snap, c_child) =
            (cstring(parent, "image name")?, cstring(snap, "snapshot name")?, cstring(child, "image name")?);
        let io = Arc::clone(&self.io);
        let context = format!("clone rbd image {} from {}@{snap}", self.spec(child), self.spec(parent));
        blocking(move || {
            let options = layout.options(&context)?;
            options.set_u64(ffi::RBD_IMAGE_OPTION_CLONE_FORMAT, 2, &context)?;
            // SAFETY: valid ioctx (parent and child share it), C strings and options handle,
            // all alive for the call.
            let rc = unsafe {
                ffi::rbd_clone3(io.raw(), c_parent.as_ptr(), c_snap.as_ptr(), io.raw(), c_child.as_ptr(), options.raw)
            };
            check(rc, &context)
        })
        .await?;
        debug!(image = %self.spec(child), parent = %self.spec(parent), snap, "rbd image cloned");
        if opts.size != 0
            && let Err(e) = self.resize(child, opts.size).await
        {
            if let Err(undo) = self.remove(child).await {
                warn!(image = %self.spec(child), error = %undo, "could not remove a clone whose resize failed");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Copies the parent's data into a clone so that it no longer depends on its parent
    /// snapshot. Can take long: it reads and writes every object the clone does not have yet.
    pub async fn flatten(&self, name: &str) -> Result<()> {
        let context = format!("flatten rbd image {}", self.spec(name));
        self.with_image(name, Access::ReadWrite, move |img| {
            // SAFETY: open image.
            check(unsafe { ffi::rbd_flatten(img.raw) }, &context)
        })
        .await
    }

    /// The clients that have the image open. Looking does not add a watcher of its own (the
    /// image is opened read-only for this).
    pub async fn watchers(&self, name: &str) -> Result<Vec<Watcher>> {
        let context = format!("list watchers of rbd image {}", self.spec(name));
        self.with_image(name, Access::ReadOnly, move |img| watchers_blocking(img.raw, &context)).await
    }

    /// Opens an image for reading and writing. The image stays open (and shows as a watcher)
    /// until the [`Image`] is closed or dropped.
    pub async fn open(&self, name: &str) -> Result<Image> {
        self.open_image(name, None, Access::ReadWrite).await
    }

    /// Opens an image, or with `snap` one of its snapshots, read-only: no watch is
    /// registered, and writes fail.
    pub async fn open_read_only(&self, name: &str, snap: Option<&str>) -> Result<Image> {
        self.open_image(name, snap, Access::ReadOnly).await
    }

    async fn open_image(&self, name: &str, snap: Option<&str>, access: Access) -> Result<Image> {
        validate_name("image name", name)?;
        if let Some(s) = snap {
            validate_name("snapshot name", s)?;
        }
        let c_name = cstring(name, "image name")?;
        let c_snap = snap.map(|s| cstring(s, "snapshot name")).transpose()?;
        let spec = match snap {
            Some(s) => format!("{}@{s}", self.spec(name)),
            None => self.spec(name),
        };
        let io = Arc::clone(&self.io);
        blocking(move || {
            let img = OpenImage::open(&io, &c_name, c_snap.as_deref(), access, &spec)?;
            let mut size = 0u64;
            // SAFETY: open image; out-pointer to a local.
            let rc = unsafe { ffi::rbd_get_size(img.raw, &mut size) };
            check(rc, &format!("get the size of rbd image {spec}"))?;
            Ok(Image::new(img.into_raw(), io, spec, access == Access::ReadOnly, size))
        })
        .await
    }

    /// Opens `name` on the blocking pool, runs `f` on it there, and closes it.
    async fn with_image<T: Send + 'static>(
        &self,
        name: &str,
        access: Access,
        f: impl FnOnce(&OpenImage) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        validate_name("image name", name)?;
        let c_name = cstring(name, "image name")?;
        let io = Arc::clone(&self.io);
        let spec = self.spec(name);
        blocking(move || {
            let img = OpenImage::open(&io, &c_name, None, access, &spec)?;
            f(&img)
        })
        .await
    }
}

/// Version of the librbd this process runs with, as (major, minor, extra); Pacific is 1.16.
/// `LibraryMissing` when it is not installed.
pub fn librbd_version() -> Result<(i32, i32, i32)> {
    ffi::load()?;
    let (mut major, mut minor, mut extra) = (0, 0, 0);
    // SAFETY: loaded just above; three out-pointers to locals.
    unsafe { ffi::rbd_version(&mut major, &mut minor, &mut extra) };
    Ok((major, minor, extra))
}

/// Checks an image or snapshot name before it reaches librbd: not empty, at most
/// [`MAX_NAME_LEN`] bytes, and no NUL, `/` or `@` (which would make `pool/image@snap` specs
/// ambiguous).
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(StoreError::InvalidArgument(format!("{what} is empty")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(StoreError::InvalidArgument(format!(
            "{what} is {} bytes long, the limit is {MAX_NAME_LEN}",
            name.len()
        )));
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '\0' | '/' | '@')) {
        return Err(StoreError::InvalidArgument(format!("{what} {name:?} contains {c:?}")));
    }
    Ok(())
}

/// The librbd "order" of an object size: its log2. The size must be a power of two from
/// [`MIN_OBJECT_SIZE`] to [`MAX_OBJECT_SIZE`].
pub fn object_size_to_order(object_size: u64) -> Result<u8> {
    if !object_size.is_power_of_two() || !(MIN_OBJECT_SIZE..=MAX_OBJECT_SIZE).contains(&object_size) {
        return Err(StoreError::InvalidArgument(format!(
            "object size {object_size} is not a power of two from {MIN_OBJECT_SIZE} to {MAX_OBJECT_SIZE} bytes"
        )));
    }
    // trailing_zeros of a power of two ≤ 2^25 is at most 25.
    Ok(object_size.trailing_zeros() as u8)
}

/// The validated layout part of [`CreateOptions`], ready to cross to the blocking pool.
#[derive(Debug)]
struct Layout {
    features: Option<u64>,
    order: Option<u8>,
    data_pool: Option<CString>,
}

impl Layout {
    fn new(opts: &CreateOptions) -> Result<Layout> {
        let order = opts.object_size.map(object_size_to_order).transpose()?;
        let data_pool = match &opts.data_pool {
            Some(p) if p.is_empty() => return Err(StoreError::InvalidArgument("data pool name is empty".into())),
            Some(p) => Some(cstring(p, "data pool name")?),
            None => None,
        };
        Ok(Layout { features: opts.features, order, data_pool })
    }

    fn options(&self, context: &str) -> Result<ImageOptions> {
        let options = ImageOptions::new();
        if let Some(f) = self.features {
            options.set_u64(ffi::RBD_IMAGE_OPTION_FEATURES, f, context)?;
        }
        if let Some(o) = self.order {
            options.set_u64(ffi::RBD_IMAGE_OPTION_ORDER, u64::from(o), context)?;
            // Plain layout: one object at a time. Without this a clone keeps its parent's
            // stripe unit, which librbd refuses unless it divides the new object size.
            options.set_u64(ffi::RBD_IMAGE_OPTION_STRIPE_UNIT, 1 << o, context)?;
            options.set_u64(ffi::RBD_IMAGE_OPTION_STRIPE_COUNT, 1, context)?;
        }
        if let Some(p) = &self.data_pool {
            options.set_str(ffi::RBD_IMAGE_OPTION_DATA_POOL, p, context)?;
        }
        Ok(options)
    }
}

/// An `rbd_image_options_t`, destroyed on drop.
struct ImageOptions {
    raw: ffi::rbd_image_options_t,
}

impl ImageOptions {
    fn new() -> ImageOptions {
        let mut raw: ffi::rbd_image_options_t = ptr::null_mut();
        // SAFETY: out-pointer to a local; librbd allocates the options (it aborts rather than
        // return NULL when out of memory).
        unsafe { ffi::rbd_image_options_create(&mut raw) };
        ImageOptions { raw }
    }

    fn set_u64(&self, option: c_int, value: u64, context: &str) -> Result<()> {
        // SAFETY: live options handle.
        let rc = unsafe { ffi::rbd_image_options_set_uint64(self.raw, option, value) };
        check(rc, &format!("{context}: set image option {option} to {value}"))
    }

    fn set_str(&self, option: c_int, value: &CStr, context: &str) -> Result<()> {
        // SAFETY: live options handle; librbd copies the string.
        let rc = unsafe { ffi::rbd_image_options_set_string(self.raw, option, value.as_ptr()) };
        check(rc, &format!("{context}: set image option {option} to {value:?}"))
    }
}

impl Drop for ImageOptions {
    fn drop(&mut self) {
        // SAFETY: created by rbd_image_options_create, destroyed once.
        unsafe { ffi::rbd_image_options_destroy(self.raw) };
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
}

/// An image opened with a blocking call, closed (blocking) on drop: only for use on the
/// blocking pool.
struct OpenImage {
    raw: ffi::rbd_image_t,
}

impl OpenImage {
    fn open(io: &IoCtx, name: &CStr, snap: Option<&CStr>, access: Access, spec: &str) -> Result<OpenImage> {
        let mut raw: ffi::rbd_image_t = ptr::null_mut();
        let snap_ptr = snap.map_or(ptr::null(), CStr::as_ptr);
        let rc = match access {
            // SAFETY: valid ioctx; C strings alive for the call (snap may be NULL: no snapshot);
            // out-pointer to a local.
            Access::ReadWrite => unsafe { ffi::rbd_open(io.raw(), name.as_ptr(), &mut raw, snap_ptr) },
            // SAFETY: as above.
            Access::ReadOnly => unsafe { ffi::rbd_open_read_only(io.raw(), name.as_ptr(), &mut raw, snap_ptr) },
        };
        check(rc, &format!("open rbd image {spec}"))?;
        Ok(OpenImage { raw })
    }

    /// Hands the handle over without closing it.
    fn into_raw(self) -> ffi::rbd_image_t {
        let raw = self.raw;
        std::mem::forget(self);
        raw
    }
}

impl Drop for OpenImage {
    fn drop(&mut self) {
        // SAFETY: opened by rbd_open*, closed once; no I/O is in flight on it (only blocking
        // calls that have returned used it).
        let rc = unsafe { ffi::rbd_close(self.raw) };
        if rc < 0 {
            warn!(error = %StoreError::from_errno(rc, "close rbd image"), "rbd_close failed");
        }
    }
}

fn check(rc: c_int, context: &str) -> Result<()> {
    if rc < 0 { Err(StoreError::from_errno(rc, context)) } else { Ok(()) }
}

/// What was attempted, with what librbd's refusal means for a remove.
fn remove_context(spec: &str, rc: c_int) -> String {
    match -rc {
        libc::ENOTEMPTY => format!("remove rbd image {spec}, which still has snapshots"),
        libc::EBUSY => format!("remove rbd image {spec}, which is open elsewhere (has watchers) or has clones"),
        _ => format!("remove rbd image {spec}"),
    }
}

fn resize_blocking(raw: ffi::rbd_image_t, size: u64, context: &str) -> Result<()> {
    // SAFETY: open image; the progress callback ignores its (NULL) data pointer.
    let rc = unsafe { ffi::rbd_resize2(raw, size, true, Some(no_progress), ptr::null_mut()) };
    check(rc, context)
}

/// Progress callback for librbd calls that take one: librbd calls it without checking for
/// NULL, so "no callback" must still be a function.
unsafe extern "C" fn no_progress(_offset: u64, _total: u64, _data: *mut libc::c_void) -> c_int {
    0
}

/// Copies a C string owned by librbd (NULL gives "").
///
/// # Safety
/// `p` must be NULL or point at a NUL-terminated string.
unsafe fn owned(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn read_info(io: &IoCtx, raw: ffi::rbd_image_t, spec: &str) -> Result<ImageInfo> {
    let context = format!("stat rbd image {spec}");
    let mut st = ffi::rbd_image_info_t::EMPTY;
    // SAFETY: open image; out-pointer to a local of the declared layout and size.
    let rc = unsafe { ffi::rbd_stat(raw, &mut st, size_of::<ffi::rbd_image_info_t>()) };
    check(rc, &context)?;
    let mut features = 0u64;
    // SAFETY: open image; out-pointer to a local.
    check(unsafe { ffi::rbd_get_features(raw, &mut features) }, &context)?;
    // SAFETY: open image.
    let data_pool_id = unsafe { ffi::rbd_get_data_pool_id(raw) };
    if data_pool_id < 0 {
        return Err(StoreError::from_errno(data_pool_id as c_int, format!("get the data pool of rbd image {spec}")));
    }
    // SAFETY: valid ioctx.
    let own_pool = unsafe { ffi::rados_ioctx_get_id(io.raw()) };
    let data_pool = if data_pool_id == own_pool { None } else { Some(pool_name(io, data_pool_id, spec)?) };
    Ok(ImageInfo {
        size: st.size,
        object_size: st.obj_size,
        order: u8::try_from(st.order).unwrap_or(0),
        num_objs: st.num_objs,
        features,
        data_pool,
        parent: parent_of(raw, spec)?,
    })
}

fn pool_name(io: &IoCtx, id: i64, spec: &str) -> Result<String> {
    let mut buf = vec![0u8; 1024];
    // SAFETY: valid ioctx; the cluster handle it returns lives as long as the ioctx.
    let cluster = unsafe { ffi::rados_ioctx_get_cluster(io.raw()) };
    // SAFETY: connected cluster handle; buf has buf.len() writable bytes.
    let rc = unsafe { ffi::rados_pool_reverse_lookup(cluster, id, buf.as_mut_ptr().cast(), buf.len()) };
    check(rc, &format!("look up the name of pool {id}, the data pool of rbd image {spec}"))?;
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    buf.truncate(len);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn parent_of(raw: ffi::rbd_image_t, spec: &str) -> Result<Option<ParentSpec>> {
    let mut image = ffi::rbd_linked_image_spec_t::EMPTY;
    let mut snap = ffi::rbd_snap_spec_t::EMPTY;
    // SAFETY: open image; out-pointers to locals of the declared layouts.
    let rc = unsafe { ffi::rbd_get_parent(raw, &mut image, &mut snap) };
    if rc == -libc::ENOENT {
        return Ok(None);
    }
    check(rc, &format!("get the parent of rbd image {spec}"))?;
    // SAFETY: on success librbd filled both specs with NUL-terminated strings it allocated.
    let parent = unsafe {
        ParentSpec {
            pool: owned(image.pool_name),
            namespace: owned(image.pool_namespace),
            image: owned(image.image_name),
            snap: owned(snap.name),
        }
    };
    // SAFETY: specs filled by a successful rbd_get_parent, freed once.
    unsafe {
        ffi::rbd_linked_image_spec_cleanup(&mut image);
        ffi::rbd_snap_spec_cleanup(&mut snap);
    }
    Ok(Some(parent))
}

/// How often a listing is retried when the list grew between sizing the buffer and filling it.
const LIST_ATTEMPTS: usize = 8;

fn list_blocking(io: &IoCtx) -> Result<Vec<String>> {
    let context = format!("list rbd images of pool {}", io.pool());
    let mut cap = 64usize;
    for _ in 0..LIST_ATTEMPTS {
        let mut specs: Vec<ffi::rbd_image_spec_t> = (0..cap).map(|_| ffi::rbd_image_spec_t::EMPTY).collect();
        let mut n = cap;
        // SAFETY: valid ioctx; specs has n zeroed entries for librbd to fill.
        let rc = unsafe { ffi::rbd_list2(io.raw(), specs.as_mut_ptr(), &mut n) };
        if rc == -libc::ERANGE {
            cap = n.max(cap * 2);
            continue;
        }
        check(rc, &context)?;
        let n = n.min(cap);
        // SAFETY: librbd filled the first n entries with strings it allocated.
        let mut names: Vec<String> = specs[..n].iter().map(|s| unsafe { owned(s.name) }).collect();
        // SAFETY: the n entries filled above, freed once.
        unsafe { ffi::rbd_image_spec_list_cleanup(specs.as_mut_ptr(), n) };
        names.sort();
        return Ok(names);
    }
    Err(StoreError::Conflict(format!("{context}: the pool kept changing during the listing")))
}

fn snap_list_blocking(raw: ffi::rbd_image_t, context: &str) -> Result<Vec<SnapInfo>> {
    let mut cap: c_int = 16;
    for _ in 0..LIST_ATTEMPTS {
        // librbd wants one more entry than it has snapshots: it ends the list with a NULL name.
        let mut snaps: Vec<ffi::rbd_snap_info_t> = (0..cap.max(1)).map(|_| ffi::rbd_snap_info_t::EMPTY).collect();
        let mut n = cap;
        // SAFETY: open image; snaps has n zeroed entries.
        let rc = unsafe { ffi::rbd_snap_list(raw, snaps.as_mut_ptr(), &mut n) };
        if rc == -libc::ERANGE {
            cap = n.max(cap.saturating_mul(2));
            continue;
        }
        check(rc, context)?;
        let count = usize::try_from(rc).unwrap_or(0).min(snaps.len());
        let list = snaps[..count]
            .iter()
            // SAFETY: librbd filled the first `count` entries with strings it allocated.
            .map(|s| SnapInfo { id: s.id, name: unsafe { owned(s.name) }, size: s.size })
            .collect();
        // SAFETY: frees the names up to the NULL terminator (the array was zeroed, so there
        // is one even when librbd filled nothing).
        unsafe { ffi::rbd_snap_list_end(snaps.as_mut_ptr()) };
        return Ok(list);
    }
    Err(StoreError::Conflict(format!("{context}: the snapshots kept changing during the listing")))
}

fn watchers_blocking(raw: ffi::rbd_image_t, context: &str) -> Result<Vec<Watcher>> {
    let mut cap = 8usize;
    for _ in 0..LIST_ATTEMPTS {
        let mut list: Vec<ffi::rbd_image_watcher_t> = (0..cap).map(|_| ffi::rbd_image_watcher_t::EMPTY).collect();
        let mut n = cap;
        // SAFETY: open image; list has n zeroed entries.
        let rc = unsafe { ffi::rbd_watchers_list(raw, list.as_mut_ptr(), &mut n) };
        if rc == -libc::ERANGE {
            cap = n.max(cap * 2);
            continue;
        }
        check(rc, context)?;
        let n = n.min(cap);
        let watchers = list[..n]
            .iter()
            // SAFETY: librbd filled the first n entries; addr is a string it allocated.
            .map(|w| Watcher { addr: unsafe { owned(w.addr) }, id: w.id, cookie: w.cookie })
            .collect();
        // SAFETY: the n entries filled above, freed once.
        unsafe { ffi::rbd_watchers_list_cleanup(list.as_mut_ptr(), n) };
        return Ok(watchers);
    }
    Err(StoreError::Conflict(format!("{context}: the watchers kept changing during the listing")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_order(object_size: u64, expect: Option<u8>) {
        assert_eq!(object_size_to_order(object_size).ok(), expect, "object size {object_size}");
    }

    #[test]
    fn object_size_to_order_accepts_powers_of_two_from_4k_to_32m() {
        check_order(4096, Some(12));
        check_order(1 << 20, Some(20));
        check_order(4 << 20, Some(22));
        check_order(32 << 20, Some(25));
        check_order(2048, None);
        check_order(64 << 20, None);
        check_order(3 << 20, None);
        check_order(0, None);
        check_order(u64::MAX, None);
    }

    #[track_caller]
    fn check_name(name: &str, ok: bool) {
        let r = validate_name("image name", name);
        assert_eq!(r.is_ok(), ok, "{name:?}: {r:?}");
        if let Err(e) = r {
            assert!(matches!(e, StoreError::InvalidArgument(_)), "{e}");
        }
    }

    #[test]
    fn names() {
        check_name("pvc-0f3c", true);
        check_name("a.b_c-d", true);
        check_name(&"x".repeat(MAX_NAME_LEN), true);
        check_name("", false);
        check_name(&"x".repeat(MAX_NAME_LEN + 1), false);
        check_name("a/b", false);
        check_name("a@b", false);
        check_name("a\0b", false);
    }

    #[test]
    fn layout_validation_happens_before_librbd() {
        let bad = CreateOptions { object_size: Some(5000), ..CreateOptions::new(1 << 20) };
        assert!(matches!(Layout::new(&bad), Err(StoreError::InvalidArgument(_))));
        let empty_pool = CreateOptions { data_pool: Some(String::new()), ..CreateOptions::new(1 << 20) };
        assert!(matches!(Layout::new(&empty_pool), Err(StoreError::InvalidArgument(_))));
        let nul_pool = CreateOptions { data_pool: Some("a\0b".into()), ..CreateOptions::new(1 << 20) };
        assert!(matches!(Layout::new(&nul_pool), Err(StoreError::InvalidArgument(_))));
        let good = CreateOptions {
            features: Some(features::LAYERING),
            object_size: Some(1 << 20),
            data_pool: Some("ec".into()),
            size: 1 << 30,
        };
        let l = Layout::new(&good).ok();
        assert_eq!(l.as_ref().and_then(|l| l.order), Some(20));
        assert_eq!(l.as_ref().and_then(|l| l.features), Some(features::LAYERING));
    }

    #[test]
    fn image_options_accept_the_option_ids_of_librbd_h() {
        // No cluster needed: the options object is local. librbd refuses an id it does not
        // know, or a value of the wrong type, with EINVAL. Outside tests only an `Rbd` builds
        // options, and `Rbd::new` loads librbd; here the test does.
        if let Err(e) = ffi::load() {
            panic!("{e}");
        }
        let l = Layout::new(&CreateOptions {
            features: Some(features::DEFAULT),
            object_size: Some(1 << 22),
            data_pool: Some("data".into()),
            size: 0,
        });
        let opts = l.and_then(|l| l.options("test"));
        let opts = match opts {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        };
        assert!(opts.set_u64(ffi::RBD_IMAGE_OPTION_CLONE_FORMAT, 2, "test").is_ok());
        // DATA_POOL is a string option: setting it as a number must fail.
        assert!(opts.set_u64(ffi::RBD_IMAGE_OPTION_DATA_POOL, 1, "test").is_err());
    }

    #[test]
    fn parent_specs_display_like_the_rbd_cli() {
        let mut p =
            ParentSpec { pool: "rbd".into(), namespace: String::new(), image: "base".into(), snap: "s1".into() };
        assert_eq!(p.to_string(), "rbd/base@s1");
        p.namespace = "tenant".into();
        assert_eq!(p.to_string(), "rbd/tenant/base@s1");
    }

    #[test]
    fn links_the_librbd_the_ffi_was_written_for() {
        let (major, minor, extra) = librbd_version().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(major, 1, "librbd {major}.{minor}.{extra}");
        assert!(
            minor >= 16,
            "librbd {major}.{minor}.{extra} is older than 1.16 (Pacific), which ffi.rs was checked against"
        );
    }

    #[test]
    fn remove_refusals_say_why() {
        assert!(remove_context("rbd/a", -libc::ENOTEMPTY).contains("snapshots"));
        assert!(remove_context("rbd/a", -libc::EBUSY).contains("watchers"));
        assert_eq!(remove_context("rbd/a", -libc::EIO), "remove rbd image rbd/a");
    }
}
