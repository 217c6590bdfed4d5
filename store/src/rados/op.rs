//! librados read and write ops, submitted asynchronously.
//!
//! Memory rule: everything librados writes into (read buffers, stat fields, iterator handles,
//! per-action return values) lives in a heap `state` that the completion callback owns. If the
//! awaiting future is dropped early, the callback still runs later and frees it, so librados
//! never writes into freed memory.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, c_void};
use std::panic::AssertUnwindSafe;
use std::ptr;
use std::sync::Arc;

use bytes::Bytes;
use libc::{c_char, c_int, size_t, time_t};
use tokio::sync::oneshot;

use super::{IoCtx, cstring, ffi};
use crate::error::Result;

/// Turns the raw outputs of a completed op into owned data; runs on the librados finisher thread.
trait Finish: Send + 'static {
    type Out: Send + 'static;
    fn finish(self: Box<Self>, rv: c_int, version: u64) -> Result<Self::Out, c_int>;
    /// Where a plain `rados_aio_read` puts its bytes (only states of plain reads have one).
    fn read_buffer(&mut self) -> Option<(*mut c_char, size_t)> {
        None
    }
}

enum RawOp {
    Read(ffi::rados_read_op_t),
    Write(ffi::rados_write_op_t),
    /// A plain `rados_aio_read` at this offset: no op object, one OSD read, the lightest path.
    PlainRead(u64),
}

impl RawOp {
    /// The same handle, for submitting while the slot keeps the owning copy.
    fn copy_handle(&self) -> RawOp {
        match *self {
            RawOp::Read(op) => RawOp::Read(op),
            RawOp::Write(op) => RawOp::Write(op),
            RawOp::PlainRead(off) => RawOp::PlainRead(off),
        }
    }

    /// # Safety
    /// The op must not be in flight (never submitted, or completed).
    unsafe fn release(self) {
        match self {
            // SAFETY: the caller guarantees the op is not in flight; released exactly once.
            RawOp::Read(op) => unsafe { ffi::rados_release_read_op(op) },
            // SAFETY: as above.
            RawOp::Write(op) => unsafe { ffi::rados_release_write_op(op) },
            RawOp::PlainRead(_) => {}
        }
    }
}

struct Slot<S: Finish> {
    state: Box<S>,
    tx: oneshot::Sender<Done<S>>,
    op: RawOp,
    /// Keeps the pool handle (and so the cluster) alive until the op completes. It travels back
    /// to the waiting task with the result: dropping the last reference on a librados thread
    /// would run `rados_shutdown` there, which joins that very thread and aborts.
    io: Arc<IoCtx>,
}

type Done<S> = (Result<<S as Finish>::Out, c_int>, Arc<IoCtx>);

// SAFETY: the raw op handle is only touched by whoever owns the slot: first the submitting task,
// then (after a successful submit) only the completion callback.
unsafe impl<S: Finish> Send for Slot<S> {}

unsafe extern "C" fn on_complete<S: Finish>(c: ffi::rados_completion_t, arg: *mut c_void) {
    // SAFETY: arg is the Box<Slot<S>> leaked by `submit`; librados calls this callback exactly
    // once, so ownership comes back here exactly once.
    let slot = unsafe { Box::from_raw(arg.cast::<Slot<S>>()) };
    // SAFETY: c is the live completion this callback was registered on.
    let (rv, version) = unsafe { (ffi::rados_aio_get_return_value(c), ffi::rados_aio_get_version(c)) };
    // SAFETY: librados holds its own reference while running the callback; this drops ours.
    unsafe { ffi::rados_aio_release(c) };
    let Slot { state, tx, op, io } = *slot;
    // SAFETY: the op has completed.
    unsafe { op.release() };
    // A panic must not unwind into librados' C++ thread.
    let out = std::panic::catch_unwind(AssertUnwindSafe(|| state.finish(rv, version))).unwrap_or(Err(-libc::EIO));
    if let Err((_, io)) = tx.send((out, io)) {
        // The caller gave up waiting. Its pool handle may be the last one, so let it go on a
        // thread of our own rather than this librados one.
        let _ = std::thread::Builder::new().name("rados-release".into()).spawn(move || drop(io));
    }
}

/// Submits `op` with its output `state` and waits for the completion. Returns the negative
/// errno on failure.
/// (The op is handed to librados when this is called, not when the future is first polled.)
fn submit<S: Finish>(
    io: &Arc<IoCtx>,
    oid: &CStr,
    op: RawOp,
    state: Box<S>,
) -> impl Future<Output = Result<S::Out, c_int>> + Send + use<S> {
    let started = start(io, oid, op, state);
    async move {
        match started {
            Ok(rx) => match rx.await {
                Ok((out, io)) => {
                    drop(io);
                    out
                }
                Err(_) => Err(-libc::EIO),
            },
            Err(rc) => Err(rc),
        }
    }
}

type Reply<S> = oneshot::Receiver<Done<S>>;

/// The synchronous half of `submit`: hands the op to librados and returns where its result
/// will arrive. No raw pointer lives across an await point.
fn start<S: Finish>(io: &Arc<IoCtx>, oid: &CStr, op: RawOp, state: Box<S>) -> Result<Reply<S>, c_int> {
    let (tx, rx) = oneshot::channel();
    let slot = Box::new(Slot { state, tx, op, io: Arc::clone(io) });
    let raw_op = slot.op.copy_handle();
    let arg = Box::into_raw(slot).cast::<c_void>();
    let mut c: ffi::rados_completion_t = ptr::null_mut();
    // SAFETY: arg stays valid until the callback reclaims it; the callback matches S.
    let rc = unsafe { ffi::rados_aio_create_completion2(arg, Some(on_complete::<S>), &mut c) };
    if rc < 0 {
        // SAFETY: nothing was submitted; we still own the slot.
        let slot = unsafe { Box::from_raw(arg.cast::<Slot<S>>()) };
        // SAFETY: never submitted.
        unsafe { slot.op.release() };
        return Err(rc);
    }
    let rc = match raw_op {
        // SAFETY: op, ioctx, completion and oid are valid; the state the op writes into lives in
        // the slot, which the callback owns until the op completes.
        RawOp::Read(op) => unsafe { ffi::rados_aio_read_op_operate(op, io.raw(), c, oid.as_ptr(), 0) },
        // SAFETY: as above; a NULL mtime means "now".
        RawOp::Write(op) => unsafe {
            ffi::rados_aio_write_op_operate(op, io.raw(), c, oid.as_ptr(), ptr::null_mut(), 0)
        },
        RawOp::PlainRead(offset) => {
            // SAFETY: arg is the slot leaked above and not yet visible to any callback (the op is
            // not submitted), so this is the only reference to its state.
            let buffer = unsafe { (*arg.cast::<Slot<S>>()).state.read_buffer() };
            match buffer {
                // SAFETY: the buffer lives in the slot's state, which the callback owns until
                // the read completes; ioctx, completion and oid are valid.
                Some((buf, len)) => unsafe { ffi::rados_aio_read(io.raw(), oid.as_ptr(), c, buf, len, offset) },
                None => -libc::EINVAL,
            }
        }
    };
    if rc < 0 {
        // The op was refused before submission: the callback will never run.
        // SAFETY: we still own the slot and the completion.
        let slot = unsafe { Box::from_raw(arg.cast::<Slot<S>>()) };
        // SAFETY: never in flight.
        unsafe {
            ffi::rados_aio_release(c);
            slot.op.release();
        }
        return Err(rc);
    }
    Ok(rx)
}

/// Outputs of a read op.
#[derive(Debug, Default)]
pub(super) struct ReadOutput {
    /// (size, mtime seconds)
    pub stat: Option<(u64, i64)>,
    pub data: Option<Vec<u8>>,
    pub xattrs: Option<BTreeMap<String, Bytes>>,
    /// (entries in key order, more)
    pub omap: Option<(Vec<(String, Bytes)>, bool)>,
    pub version: u64,
}

struct ReadState {
    want_stat: bool,
    size: u64,
    mtime: time_t,
    stat_rv: c_int,
    want_read: bool,
    buf: Vec<u8>,
    bytes_read: size_t,
    read_rv: c_int,
    want_xattrs: bool,
    xattr_iter: ffi::rados_xattrs_iter_t,
    xattr_rv: c_int,
    want_omap: bool,
    omap_iter: ffi::rados_omap_iter_t,
    omap_more: u8,
    omap_rv: c_int,
    /// C strings the op points at (keys, prefixes), kept until completion.
    keep: Vec<CString>,
    key_ptrs: Vec<*const c_char>,
    key_lens: Vec<size_t>,
}

// SAFETY: the raw iterator handles are owned by this state and only used by its owner.
unsafe impl Send for ReadState {}

impl Drop for ReadState {
    fn drop(&mut self) {
        // Frees iterators that `finish` did not consume (e.g. when the op failed).
        if !self.xattr_iter.is_null() {
            // SAFETY: iterator handed out by librados for a completed op, freed once.
            unsafe { ffi::rados_getxattrs_end(self.xattr_iter) };
        }
        if !self.omap_iter.is_null() {
            // SAFETY: as above.
            unsafe { ffi::rados_omap_get_end(self.omap_iter) };
        }
    }
}

impl Finish for ReadState {
    type Out = ReadOutput;
    fn finish(mut self: Box<Self>, rv: c_int, version: u64) -> Result<ReadOutput, c_int> {
        if rv < 0 {
            return Err(rv);
        }
        for r in [self.stat_rv, self.read_rv, self.xattr_rv, self.omap_rv] {
            if r < 0 {
                return Err(r);
            }
        }
        let mut out = ReadOutput { version, ..ReadOutput::default() };
        if self.want_stat {
            out.stat = Some((self.size, self.mtime));
        }
        if self.want_read {
            let n = self.bytes_read.min(self.buf.capacity());
            let mut buf = std::mem::take(&mut self.buf);
            // SAFETY: librados wrote bytes_read (≤ capacity) initialized bytes into buf.
            unsafe { buf.set_len(n) };
            out.data = Some(buf);
        }
        if self.want_xattrs {
            let mut map = BTreeMap::new();
            loop {
                let (mut name, mut val, mut len): (*const c_char, *const c_char, size_t) =
                    (ptr::null(), ptr::null(), 0);
                // SAFETY: live iterator from this completed op; out-pointers to locals.
                let r = unsafe { ffi::rados_getxattrs_next(self.xattr_iter, &mut name, &mut val, &mut len) };
                if r < 0 {
                    return Err(r);
                }
                if name.is_null() {
                    break;
                }
                // SAFETY: librados returns a NUL-terminated name and len bytes of value, valid
                // until the next call on the iterator.
                let (n, v) = unsafe { (CStr::from_ptr(name), bytes_at(val, len)) };
                map.insert(super::lossy(n), v);
            }
            out.xattrs = Some(map);
        }
        if self.want_omap {
            let mut entries = Vec::new();
            loop {
                let (mut k, mut v, mut kl, mut vl): (*mut c_char, *mut c_char, size_t, size_t) =
                    (ptr::null_mut(), ptr::null_mut(), 0, 0);
                // SAFETY: live iterator from this completed op; out-pointers to locals.
                let r = unsafe { ffi::rados_omap_get_next2(self.omap_iter, &mut k, &mut v, &mut kl, &mut vl) };
                if r < 0 {
                    return Err(r);
                }
                if k.is_null() {
                    break;
                }
                // SAFETY: kl/vl bytes valid at k/v until the next call on the iterator.
                let (key, val) = unsafe { (bytes_at(k, kl), bytes_at(v, vl)) };
                entries.push((String::from_utf8_lossy(&key).into_owned(), val));
            }
            out.omap = Some((entries, self.omap_more != 0));
        }
        Ok(out)
    }
}

/// Copies `len` bytes at `p` (NULL or 0 gives empty).
///
/// # Safety
/// `p` must point at `len` readable bytes when non-null.
unsafe fn bytes_at(p: *const c_char, len: size_t) -> Bytes {
    if p.is_null() || len == 0 {
        return Bytes::new();
    }
    // SAFETY: guaranteed by the caller.
    Bytes::copy_from_slice(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}

/// Builds a read op: each action at most once.
pub(super) struct ReadOpBuilder {
    op: Option<ffi::rados_read_op_t>,
    state: Box<ReadState>,
}

// SAFETY: the builder exclusively owns its unsubmitted op handle; librados op handles carry no
// thread affinity.
unsafe impl Send for ReadOpBuilder {}

impl Drop for ReadOpBuilder {
    fn drop(&mut self) {
        if let Some(op) = self.op.take() {
            // SAFETY: never submitted.
            unsafe { ffi::rados_release_read_op(op) };
        }
    }
}

impl ReadOpBuilder {
    pub fn new() -> Self {
        // SAFETY: plain allocation; a NULL return is checked before any use (see `raw`).
        let op = unsafe { ffi::rados_create_read_op() };
        ReadOpBuilder { op: (!op.is_null()).then_some(op), state: Box::new(empty_read_state()) }
    }

    fn raw(&self) -> Option<ffi::rados_read_op_t> {
        self.op
    }

    pub fn assert_version(&mut self, v: u64) {
        if let Some(op) = self.raw() {
            // SAFETY: live, unsubmitted op.
            unsafe { ffi::rados_read_op_assert_version(op, v) };
        }
    }

    pub fn stat(&mut self) {
        let Some(op) = self.raw() else { return };
        let s = &mut *self.state;
        s.want_stat = true;
        // SAFETY: the out-pointers point into the boxed state, which outlives the op.
        unsafe { ffi::rados_read_op_stat(op, &mut s.size, &mut s.mtime, &mut s.stat_rv) };
    }

    pub fn read(&mut self, offset: u64, len: u64) {
        let Some(op) = self.raw() else { return };
        let s = &mut *self.state;
        s.want_read = true;
        s.buf = Vec::with_capacity(usize::try_from(len).unwrap_or(usize::MAX));
        // SAFETY: buf has `capacity` writable bytes and lives (unmoved: a Vec's heap buffer does
        // not move when the Vec does) in the boxed state until completion.
        unsafe {
            ffi::rados_read_op_read(
                op,
                offset,
                s.buf.capacity(),
                s.buf.as_mut_ptr().cast::<c_char>(),
                &mut s.bytes_read,
                &mut s.read_rv,
            )
        };
    }

    pub fn xattrs(&mut self) {
        let Some(op) = self.raw() else { return };
        let s = &mut *self.state;
        s.want_xattrs = true;
        // SAFETY: out-pointers into the boxed state.
        unsafe { ffi::rados_read_op_getxattrs(op, &mut s.xattr_iter, &mut s.xattr_rv) };
    }

    pub fn omap_list(&mut self, start_after: Option<&str>, prefix: Option<&str>, max: u64) -> Result<()> {
        let Some(op) = self.raw() else { return Ok(()) };
        let s = &mut *self.state;
        let start = cstring(start_after.unwrap_or(""), "omap start key")?;
        let pre = cstring(prefix.unwrap_or(""), "omap prefix")?;
        s.want_omap = true;
        // SAFETY: the C strings are kept in the state until completion; out-pointers into it.
        unsafe {
            ffi::rados_read_op_omap_get_vals2(
                op,
                start.as_ptr(),
                pre.as_ptr(),
                max,
                &mut s.omap_iter,
                &mut s.omap_more,
                &mut s.omap_rv,
            )
        };
        s.keep.push(start);
        s.keep.push(pre);
        Ok(())
    }

    pub fn omap_get_by_keys(&mut self, keys: &[String]) -> Result<()> {
        let Some(op) = self.raw() else { return Ok(()) };
        let s = &mut *self.state;
        for k in keys {
            s.keep.push(cstring(k, "omap key")?);
        }
        s.key_ptrs = s.keep.iter().map(|c| c.as_ptr()).collect();
        s.key_lens = keys.iter().map(String::len).collect();
        s.want_omap = true;
        // SAFETY: key arrays live in the boxed state until completion; out-pointers into it.
        unsafe {
            ffi::rados_read_op_omap_get_vals_by_keys2(
                op,
                s.key_ptrs.as_ptr(),
                s.key_ptrs.len(),
                s.key_lens.as_ptr(),
                &mut s.omap_iter,
                &mut s.omap_rv,
            )
        };
        Ok(())
    }

    /// Submits the op and waits. Errors are negative errnos.
    pub async fn submit(mut self, io: &Arc<IoCtx>, oid: &CStr) -> Result<ReadOutput, c_int> {
        let op = self.op.take().ok_or(-libc::ENOMEM)?;
        let state = std::mem::replace(&mut self.state, Box::new(empty_read_state()));
        let reply = submit(io, oid, RawOp::Read(op), state);
        drop(self);
        reply.await
    }
}

fn empty_read_state() -> ReadState {
    ReadState {
        want_stat: false,
        size: 0,
        mtime: 0,
        stat_rv: 0,
        want_read: false,
        buf: Vec::new(),
        bytes_read: 0,
        read_rv: 0,
        want_xattrs: false,
        xattr_iter: ptr::null_mut(),
        xattr_rv: 0,
        want_omap: false,
        omap_iter: ptr::null_mut(),
        omap_more: 0,
        omap_rv: 0,
        keep: Vec::new(),
        key_ptrs: Vec::new(),
        key_lens: Vec::new(),
    }
}

struct WriteDone;

impl Finish for WriteDone {
    type Out = u64;
    fn finish(self: Box<Self>, rv: c_int, version: u64) -> Result<u64, c_int> {
        if rv < 0 { Err(rv) } else { Ok(version) }
    }
}

/// Builds a write op. librados copies every buffer and key when an action is added.
pub(super) struct WriteOpBuilder {
    op: Option<ffi::rados_write_op_t>,
}

// SAFETY: as for ReadOpBuilder: exclusive ownership of an unsubmitted op handle.
unsafe impl Send for WriteOpBuilder {}

impl Drop for WriteOpBuilder {
    fn drop(&mut self) {
        if let Some(op) = self.op.take() {
            // SAFETY: never submitted.
            unsafe { ffi::rados_release_write_op(op) };
        }
    }
}

impl WriteOpBuilder {
    pub fn new() -> Self {
        // SAFETY: plain allocation; NULL is checked at submit.
        let op = unsafe { ffi::rados_create_write_op() };
        WriteOpBuilder { op: (!op.is_null()).then_some(op) }
    }

    fn with(&mut self, f: impl FnOnce(ffi::rados_write_op_t)) {
        if let Some(op) = self.op {
            f(op);
        }
    }

    pub fn create_exclusive(&mut self) {
        // SAFETY: live, unsubmitted op; NULL category is allowed.
        self.with(|op| unsafe { ffi::rados_write_op_create(op, ffi::LIBRADOS_CREATE_EXCLUSIVE, ptr::null()) });
    }
    pub fn assert_exists(&mut self) {
        // SAFETY: live, unsubmitted op.
        self.with(|op| unsafe { ffi::rados_write_op_assert_exists(op) });
    }
    pub fn assert_version(&mut self, v: u64) {
        // SAFETY: live, unsubmitted op.
        self.with(|op| unsafe { ffi::rados_write_op_assert_version(op, v) });
    }
    pub fn write_full(&mut self, data: &[u8]) {
        // SAFETY: data is valid for the call; librados copies it.
        self.with(|op| unsafe { ffi::rados_write_op_write_full(op, data.as_ptr().cast(), data.len()) });
    }
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        // SAFETY: data is valid for the call; librados copies it.
        self.with(|op| unsafe { ffi::rados_write_op_write(op, data.as_ptr().cast(), data.len(), offset) });
    }
    pub fn truncate(&mut self, size: u64) {
        // SAFETY: live, unsubmitted op.
        self.with(|op| unsafe { ffi::rados_write_op_truncate(op, size) });
    }
    pub fn remove(&mut self) {
        // SAFETY: live, unsubmitted op.
        self.with(|op| unsafe { ffi::rados_write_op_remove(op) });
    }
    pub fn omap_clear(&mut self) {
        // SAFETY: live, unsubmitted op.
        self.with(|op| unsafe { ffi::rados_write_op_omap_clear(op) });
    }
    pub fn set_xattr(&mut self, name: &str, value: &[u8]) -> Result<()> {
        let n = cstring(name, "xattr name")?;
        // SAFETY: strings and buffers valid for the call; librados copies them.
        self.with(|op| unsafe { ffi::rados_write_op_setxattr(op, n.as_ptr(), value.as_ptr().cast(), value.len()) });
        Ok(())
    }
    pub fn remove_xattr(&mut self, name: &str) -> Result<()> {
        let n = cstring(name, "xattr name")?;
        // SAFETY: string valid for the call; librados copies it.
        self.with(|op| unsafe { ffi::rados_write_op_rmxattr(op, n.as_ptr()) });
        Ok(())
    }
    pub fn omap_set(&mut self, entries: &BTreeMap<String, Bytes>) -> Result<()> {
        let keys: Vec<CString> = entries.keys().map(|k| cstring(k, "omap key")).collect::<Result<_>>()?;
        let key_ptrs: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr()).collect();
        let key_lens: Vec<size_t> = entries.keys().map(String::len).collect();
        let val_ptrs: Vec<*const c_char> = entries.values().map(|v| v.as_ptr().cast()).collect();
        let val_lens: Vec<size_t> = entries.values().map(Bytes::len).collect();
        // SAFETY: all arrays have entries.len() elements valid for the call; librados copies them.
        self.with(|op| unsafe {
            ffi::rados_write_op_omap_set2(
                op,
                key_ptrs.as_ptr(),
                val_ptrs.as_ptr(),
                key_lens.as_ptr(),
                val_lens.as_ptr(),
                key_ptrs.len(),
            )
        });
        Ok(())
    }
    pub fn omap_cmp(&mut self, key: &str, value: &[u8]) {
        // SAFETY: key and value are valid for the call and librados copies them; a NULL prval is
        // allowed (the whole op fails with -ECANCELED when the comparison does not hold).
        self.with(|op| unsafe {
            ffi::rados_write_op_omap_cmp2(
                op,
                key.as_ptr().cast(),
                ffi::LIBRADOS_CMPXATTR_OP_EQ,
                value.as_ptr().cast(),
                key.len(),
                value.len(),
                ptr::null_mut(),
            )
        });
    }
    pub fn omap_remove(&mut self, keys: &[String]) -> Result<()> {
        let ks: Vec<CString> = keys.iter().map(|k| cstring(k, "omap key")).collect::<Result<_>>()?;
        let ptrs: Vec<*const c_char> = ks.iter().map(|k| k.as_ptr()).collect();
        let lens: Vec<size_t> = keys.iter().map(String::len).collect();
        // SAFETY: arrays valid for the call; librados copies them.
        self.with(|op| unsafe { ffi::rados_write_op_omap_rm_keys2(op, ptrs.as_ptr(), lens.as_ptr(), ptrs.len()) });
        Ok(())
    }

    /// Submits the op and waits; returns the object's new version or a negative errno.
    pub async fn submit(mut self, io: &Arc<IoCtx>, oid: &CStr) -> Result<u64, c_int> {
        let op = self.op.take().ok_or(-libc::ENOMEM)?;
        let reply = submit(io, oid, RawOp::Write(op), Box::new(WriteDone));
        drop(self);
        reply.await
    }
}

struct PlainReadState {
    buf: Vec<u8>,
}

impl Finish for PlainReadState {
    type Out = (Vec<u8>, u64);
    fn finish(mut self: Box<Self>, rv: c_int, version: u64) -> Result<(Vec<u8>, u64), c_int> {
        if rv < 0 {
            return Err(rv);
        }
        let mut buf = std::mem::take(&mut self.buf);
        let n = (rv as usize).min(buf.capacity());
        // SAFETY: librados wrote rv (≤ capacity) initialized bytes into buf.
        unsafe { buf.set_len(n) };
        Ok((buf, version))
    }
    fn read_buffer(&mut self) -> Option<(*mut c_char, size_t)> {
        Some((self.buf.as_mut_ptr().cast(), self.buf.capacity()))
    }
}

/// Reads up to `len` bytes at `offset` with one plain `rados_aio_read`; returns the bytes and
/// the object's version. `len` must be at least 1 (0 means "everything" to librados).
pub(super) async fn plain_read(io: &Arc<IoCtx>, oid: &CStr, offset: u64, len: usize) -> Result<(Vec<u8>, u64), c_int> {
    if len == 0 {
        return Err(-libc::EINVAL);
    }
    let state = Box::new(PlainReadState { buf: Vec::with_capacity(len) });
    submit(io, oid, RawOp::PlainRead(offset), state).await
}
