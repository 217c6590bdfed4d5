//! An open RBD image and its asynchronous I/O.
//!
//! Memory and lifetime rules:
//! - Each I/O owns a heap `Slot` (its buffer, the sender of its result, and a reference to the
//!   image) that the completion callback takes back. If the awaiting future is dropped early,
//!   the callback still runs later and frees the slot, so librbd never writes into, or reads
//!   from, freed memory.
//! - The image handle lives in an `Arc<Handle>` held by the [`Image`] and by every slot, so it
//!   is closed only after the last in-flight I/O has completed.
//! - Closing (`rbd_close`) blocks for network round trips and waits for librbd's callback
//!   thread to go idle, so it must run neither on a runtime worker nor inside a completion
//!   callback (where the last reference may well be dropped): `Handle::drop` closes on a
//!   short-lived thread of its own. The image keeps the pool handle (and so the cluster
//!   connection) alive until that close has finished.

use std::ffi::c_void;
use std::panic::AssertUnwindSafe;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use libc::{c_int, ssize_t};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::{ImageInfo, ffi, read_info, resize_blocking};
use crate::error::{Result, StoreError};
use crate::rados::{IoCtx, blocking};

/// The largest single read, write or discard this wrapper submits, in bytes.
pub const MAX_IO_LEN: u64 = 1 << 30;

/// An open RBD image. Dropping it closes the image in the background once every I/O still in
/// flight (including those of futures dropped early) has completed; [`Image::close`] does the
/// same and waits for it.
///
/// All methods take `&self`: an `Image` may be shared (e.g. in an `Arc`) and used by many
/// tasks at once; librbd orders nothing between concurrent I/Os to overlapping ranges.
#[derive(Debug)]
pub struct Image {
    handle: Arc<Handle>,
    closed: oneshot::Receiver<c_int>,
}

#[derive(Debug)]
struct Handle {
    raw: ffi::rbd_image_t,
    io: Arc<IoCtx>,
    /// `pool/image` or `pool/image@snap`, for messages.
    spec: String,
    read_only: bool,
    /// Last size this handle saw: a cheap first check of I/O near the end of the image, which
    /// is refreshed from librbd whenever it says no.
    size: AtomicU64,
    on_close: Option<oneshot::Sender<c_int>>,
}

// SAFETY: librbd image handles are thread-safe: concurrent aio submissions and metadata calls
// from several threads are serialized by the ImageCtx's own locks. The handle is closed exactly
// once, in Drop, when no other reference (and so no in-flight I/O) remains.
unsafe impl Send for Handle {}
// SAFETY: see the Send impl; shared references only issue thread-safe librbd calls.
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        let job = CloseJob {
            raw: self.raw,
            io: Some(Arc::clone(&self.io)),
            spec: std::mem::take(&mut self.spec),
            done: self.on_close.take(),
        };
        // Never close inline: this may be a runtime worker or librbd's own callback thread.
        if let Err(e) = std::thread::Builder::new().name("rbd-close".into()).spawn(move || job.run()) {
            // The closure (and the job in it) was dropped unrun: CloseJob::drop leaks the pool
            // handle so that the cluster is never shut down under the still-open image.
            warn!(error = %e, "could not start a thread to close an rbd image; leaving it open");
        }
    }
}

/// Closes an image off the runtime and the librbd callback threads.
struct CloseJob {
    raw: ffi::rbd_image_t,
    io: Option<Arc<IoCtx>>,
    spec: String,
    done: Option<oneshot::Sender<c_int>>,
}

// SAFETY: the job is the sole owner of the image handle (the Handle that owned it is being
// dropped) and moves it to the closing thread.
unsafe impl Send for CloseJob {}

impl CloseJob {
    fn run(mut self) {
        // SAFETY: the last reference to the handle is gone, so no I/O is in flight and nothing
        // else will use it; it is closed exactly once. librbd waits for its callback thread to
        // finish the completion that may have dropped that last reference.
        let rc = unsafe { ffi::rbd_close(self.raw) };
        if rc < 0 {
            warn!(error = %StoreError::from_errno(rc, format!("close rbd image {}", self.spec)), "rbd_close failed");
        } else {
            debug!(image = %self.spec, "rbd image closed");
        }
        // Closed: now the pool handle (and maybe the cluster) may go.
        drop(self.io.take());
        if let Some(done) = self.done.take() {
            let _ = done.send(rc);
        }
    }
}

impl Drop for CloseJob {
    fn drop(&mut self) {
        if let Some(io) = self.io.take() {
            // `run` never ran, so the image is still open: keep its cluster alive for good.
            std::mem::forget(io);
        }
    }
}

impl Image {
    pub(super) fn new(raw: ffi::rbd_image_t, io: Arc<IoCtx>, spec: String, read_only: bool, size: u64) -> Image {
        let (tx, rx) = oneshot::channel();
        let handle = Handle { raw, io, spec, read_only, size: AtomicU64::new(size), on_close: Some(tx) };
        Image { handle: Arc::new(handle), closed: rx }
    }

    /// `pool/image` (or `pool/image@snap` for a snapshot opened read-only).
    pub fn spec(&self) -> &str {
        &self.handle.spec
    }

    /// True when opened with [`super::Rbd::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.handle.read_only
    }

    /// Reads up to `len` bytes at `offset`. The result is shorter than `len` when the range
    /// crosses the end of the image, and empty when it starts at or past the end. Ranges never
    /// written read as zeros.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Bytes> {
        let context = || format!("read {len} bytes at offset {offset} of rbd image {}", self.spec());
        check_extent(offset, len, context)?;
        if len == 0 {
            return Ok(Bytes::new());
        }
        // librbd refuses (and logs) a read that starts at or past the end; answer it here, from
        // the size this handle last saw or, if that says so, a fresh one.
        if offset >= self.handle.size.load(Ordering::Relaxed) && offset >= self.size().await? {
            return Ok(Bytes::new());
        }
        // check_extent bounded len by MAX_IO_LEN, so it fits usize.
        let buf = vec![0u8; len as usize];
        match submit(&self.handle, Op::Read { offset }, Buf::Read(buf)).await {
            Ok((rv, Buf::Read(mut buf))) if rv >= 0 => {
                buf.truncate(usize::try_from(rv).unwrap_or(0));
                Ok(Bytes::from(buf))
            }
            Ok((rv, _)) | Err(rv) => {
                // The image shrank since the check above.
                if rv == -(libc::EINVAL as ssize_t) && offset >= self.size().await? {
                    return Ok(Bytes::new());
                }
                Err(StoreError::from_errno(errno(rv), context()))
            }
        }
    }

    /// Writes `data` at `offset`. The whole range must lie within the image: a write that
    /// reaches past the end fails with `InvalidArgument` (resize first). The check uses the
    /// size this handle last saw, refreshed when it says no; if another client shrank the image
    /// meanwhile, librbd itself refuses a write that starts past the new end but silently
    /// shortens one that crosses it.
    pub async fn write(&self, offset: u64, data: impl Into<Bytes>) -> Result<()> {
        let data = data.into();
        let len = data.len() as u64;
        let context = || format!("write {len} bytes at offset {offset} of rbd image {}", self.spec());
        check_extent(offset, len, context)?;
        if data.is_empty() {
            return Ok(());
        }
        let end = offset + len;
        self.check_end(end, context).await?;
        match submit(&self.handle, Op::Write { offset }, Buf::Write(data)).await {
            Ok((rv, _)) if rv >= 0 => Ok(()),
            Ok((rv, _)) | Err(rv) => Err(self.explain(rv, end, context()).await),
        }
    }

    /// Discards (deallocates) `len` bytes at `offset`: a hint, like a TRIM. The parts aligned to
    /// librbd's discard granularity (`rbd_discard_granularity_bytes`, 64 KiB by default) read
    /// as zeros afterwards; librbd skips the unaligned head and tail, which keep their data.
    /// Like a write, the range must lie within the image.
    pub async fn discard(&self, offset: u64, len: u64) -> Result<()> {
        let context = || format!("discard {len} bytes at offset {offset} of rbd image {}", self.spec());
        check_extent(offset, len, context)?;
        if len == 0 {
            return Ok(());
        }
        self.check_end(offset + len, context).await?;
        match submit(&self.handle, Op::Discard { offset, len }, Buf::None).await {
            Ok((rv, _)) if rv >= 0 => Ok(()),
            Ok((rv, _)) | Err(rv) => Err(self.explain(rv, offset + len, context()).await),
        }
    }

    /// Waits until every write completed so far is durable on the cluster.
    pub async fn flush(&self) -> Result<()> {
        match submit(&self.handle, Op::Flush, Buf::None).await {
            Ok((rv, _)) if rv >= 0 => Ok(()),
            Ok((rv, _)) | Err(rv) => Err(StoreError::from_errno(errno(rv), format!("flush rbd image {}", self.spec()))),
        }
    }

    /// The current size in bytes (refreshed from the cluster when another client changed it).
    pub async fn size(&self) -> Result<u64> {
        let h = Arc::clone(&self.handle);
        blocking(move || {
            let mut size = 0u64;
            // SAFETY: open image; out-pointer to a local.
            let rc = unsafe { ffi::rbd_get_size(h.raw, &mut size) };
            if rc < 0 {
                return Err(StoreError::from_errno(rc, format!("get the size of rbd image {}", h.spec)));
            }
            h.size.store(size, Ordering::Relaxed);
            Ok(size)
        })
        .await
    }

    /// Grows or shrinks the image; shrinking discards the data past the new end.
    pub async fn resize(&self, size: u64) -> Result<()> {
        let h = Arc::clone(&self.handle);
        blocking(move || {
            resize_blocking(h.raw, size, &format!("resize rbd image {} to {size} bytes", h.spec))?;
            h.size.store(size, Ordering::Relaxed);
            Ok(())
        })
        .await
    }

    /// Size, layout, features, data pool and parent, as [`super::Rbd::info`] reports them.
    pub async fn info(&self) -> Result<ImageInfo> {
        let h = Arc::clone(&self.handle);
        blocking(move || read_info(&h.io, h.raw, &h.spec)).await
    }

    /// Closes the image and waits until it is closed (its watch is gone). I/O that futures
    /// dropped earlier left in flight completes first.
    pub async fn close(self) -> Result<()> {
        let Image { handle, closed } = self;
        let spec = handle.spec.clone();
        drop(handle);
        match closed.await {
            Ok(rc) if rc < 0 => Err(StoreError::from_errno(rc, format!("close rbd image {spec}"))),
            Ok(_) => Ok(()),
            Err(_) => Err(StoreError::Unavailable(format!("close rbd image {spec}: the closing thread did not start"))),
        }
    }

    /// librbd silently shortens a write or discard that crosses the end of the image, so it is
    /// checked here first: against the size this handle last saw, and only if that says no,
    /// against a fresh one (another client may have grown the image).
    async fn check_end(&self, end: u64, context: impl Fn() -> String) -> Result<()> {
        if end > self.handle.size.load(Ordering::Relaxed) {
            let size = self.size().await?;
            if end > size {
                return Err(past_end(context(), size));
            }
        }
        Ok(())
    }

    /// The error for a failed write or discard ending at `end`: past the end of the image
    /// (another client shrank it) reads better than librbd's bare EINVAL.
    async fn explain(&self, rv: ssize_t, end: u64, context: String) -> StoreError {
        if rv == -(libc::EINVAL as ssize_t)
            && let Ok(size) = self.size().await
            && end > size
        {
            return past_end(context, size);
        }
        StoreError::from_errno(errno(rv), context)
    }
}

fn past_end(context: String, size: u64) -> StoreError {
    StoreError::InvalidArgument(format!("{context}: the range ends past the end of the image ({size} bytes)"))
}

fn check_extent(offset: u64, len: u64, context: impl Fn() -> String) -> Result<()> {
    if len > MAX_IO_LEN {
        return Err(StoreError::InvalidArgument(format!(
            "{}: longer than the {MAX_IO_LEN}-byte limit of one request",
            context()
        )));
    }
    if offset.checked_add(len).is_none() {
        return Err(StoreError::InvalidArgument(format!("{}: the range overflows 64 bits", context())));
    }
    Ok(())
}

/// A negative `ssize_t` return value as the `int` errno `from_errno` takes.
fn errno(rv: ssize_t) -> c_int {
    c_int::try_from(rv).unwrap_or(-libc::EIO)
}

/// One asynchronous request (its buffer, if any, travels separately as a [`Buf`]).
enum Op {
    Read { offset: u64 },
    Write { offset: u64 },
    Discard { offset: u64, len: u64 },
    Flush,
}

/// The memory an in-flight request reads from or writes into, handed back on completion.
enum Buf {
    None,
    Read(Vec<u8>),
    Write(Bytes),
}

/// Result of a request: librbd's return value (bytes read, or 0; a negative errno on failure)
/// and the buffer.
type Completed = (ssize_t, Buf);

struct Slot {
    buf: Buf,
    tx: oneshot::Sender<Completed>,
    /// Keeps the image (and so the pool and cluster) open until the request completes.
    image: Arc<Handle>,
}

unsafe extern "C" fn on_complete(c: ffi::rbd_completion_t, arg: *mut c_void) {
    // SAFETY: arg is the Box<Slot> leaked by `submit`; librbd calls this callback exactly once,
    // so ownership comes back here exactly once.
    let slot = unsafe { Box::from_raw(arg.cast::<Slot>()) };
    // SAFETY: c is the live completion this callback was registered on.
    let rv = unsafe { ffi::rbd_aio_get_return_value(c) };
    // SAFETY: librbd holds its own reference while running the callback; this drops ours.
    unsafe { ffi::rbd_aio_release(c) };
    // A panic must not unwind into librbd's C++ thread.
    let _ = std::panic::catch_unwind(AssertUnwindSafe(move || {
        let Slot { buf, tx, image } = *slot;
        // The receiver may be gone (the caller gave up); the buffer is then simply dropped.
        let _ = tx.send((rv, buf));
        // If this was the last reference, Handle::drop hands the close to another thread.
        drop(image);
    }));
}

/// Submits `op` and waits for its completion. `Err` carries a negative errno from the
/// submission itself; librbd's verdict on the request is the return value in `Ok`.
async fn submit(image: &Arc<Handle>, op: Op, buf: Buf) -> std::result::Result<Completed, ssize_t> {
    // Everything raw lives in `start`, so the future holds only the receiver across the await
    // and stays `Send`.
    let rx = start(image, op, buf)?;
    // The callback always sends before dropping the sender; a closed channel cannot happen.
    rx.await.map_err(|_| -(libc::EIO as ssize_t))
}

/// Submits one op; the returned receiver gets its result from the completion callback.
fn start(image: &Arc<Handle>, op: Op, buf: Buf) -> std::result::Result<oneshot::Receiver<Completed>, ssize_t> {
    let (tx, rx) = oneshot::channel();
    let mut slot = Box::new(Slot { buf, tx, image: Arc::clone(image) });
    // Pointers into the slot's buffer: heap memory that stays put while the box moves and
    // lives until the callback drops (or hands back) the slot.
    let (read_ptr, write_ptr, buf_len) = match &mut slot.buf {
        Buf::Read(v) => (v.as_mut_ptr(), ptr::null(), v.len()),
        Buf::Write(b) => (ptr::null_mut(), b.as_ptr(), b.len()),
        Buf::None => (ptr::null_mut(), ptr::null(), 0),
    };
    let raw = image.raw;
    let arg = Box::into_raw(slot).cast::<c_void>();
    let mut c: ffi::rbd_completion_t = ptr::null_mut();
    // SAFETY: arg stays valid until the callback reclaims it; out-pointer to a local.
    let rc = unsafe { ffi::rbd_aio_create_completion(arg, Some(on_complete), &mut c) };
    if rc < 0 {
        // SAFETY: no completion exists, so no callback will run: we still own the slot.
        drop(unsafe { Box::from_raw(arg.cast::<Slot>()) });
        return Err(rc as ssize_t);
    }
    let rc = match op {
        // SAFETY: open image (the slot holds a reference) and live completion; the buffer has
        // buf_len writable bytes and lives in the slot until the callback runs.
        Op::Read { offset } => unsafe { ffi::rbd_aio_read(raw, offset, buf_len, read_ptr.cast(), c) },
        // SAFETY: as above; the data stays in the slot, unchanged, until the callback runs.
        Op::Write { offset } => unsafe { ffi::rbd_aio_write(raw, offset, buf_len, write_ptr.cast(), c) },
        // SAFETY: open image and live completion.
        Op::Discard { offset, len } => unsafe { ffi::rbd_aio_discard(raw, offset, len, c) },
        // SAFETY: open image and live completion.
        Op::Flush => unsafe { ffi::rbd_aio_flush(raw, c) },
    };
    if rc < 0 {
        // Refused before submission: the callback will never run.
        // SAFETY: we still own the slot and the completion.
        unsafe {
            ffi::rbd_aio_release(c);
            drop(Box::from_raw(arg.cast::<Slot>()));
        }
        return Err(rc as ssize_t);
    }
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compile-time: image I/O futures can move between runtime workers (`tokio::spawn`).
    #[allow(dead_code)]
    fn io_futures_are_send(img: &Image) {
        fn send<T: Send>(_: T) {}
        send(img.read(0, 1));
        send(img.write(0, Bytes::new()));
        send(img.flush());
    }

    #[test]
    fn extents_are_checked_before_librbd() {
        let ctx = || "read".to_string();
        assert!(check_extent(0, MAX_IO_LEN, ctx).is_ok());
        assert!(matches!(check_extent(0, MAX_IO_LEN + 1, ctx), Err(StoreError::InvalidArgument(_))));
        assert!(matches!(check_extent(u64::MAX, 1, ctx), Err(StoreError::InvalidArgument(_))));
        assert!(check_extent(u64::MAX, 0, ctx).is_ok());
    }

    #[test]
    fn ssize_errnos_become_int_errnos() {
        assert_eq!(errno(-(libc::EINVAL as ssize_t)), -libc::EINVAL);
        assert_eq!(errno(ssize_t::MIN), -libc::EIO);
    }
}
