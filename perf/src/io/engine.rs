//! The io_uring engine: one ring, one target, a fixed number of in-flight slots.
//!
//! Each slot owns one buffer aligned to 4096 bytes (O_DIRECT's strictest common alignment) and
//! holds at most one operation (a read, a write, or a write linked to an fdatasync). The loop is
//! the classic batched one: fill every free slot from the [`Driver`], submit everything with one
//! `io_uring_enter` that also waits for at least one completion, then reap every completion that
//! is ready. Short transfers are resubmitted for the remainder (a read that reaches the end of the
//! target completes short instead); failures carry the errno and the offset.
//!
//! Memory safety at the kernel boundary: the kernel reads and writes the slots' buffers and uses
//! the target's descriptor while an operation is in flight. The buffers belong to the engine and
//! are never freed or moved while anything is in flight ([`Engine::run`] always drains, and
//! `Drop` drains again or leaks the buffers if it cannot); the target is borrowed for the
//! engine's whole life, so its descriptor stays open.

use std::fmt;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use serde::{Deserialize, Serialize};

/// Alignment of every I/O buffer: enough for O_DIRECT on any device with sectors up to 4 KiB.
pub const BUFFER_ALIGN: usize = 4096;

/// The largest single transfer the engine issues (the SQE length is a u32; 64 MiB is plenty).
pub const MAX_BLOCK_SIZE: usize = 64 << 20;

/// The most slots a ring may have (a registered buffer index is a u16; rings stay small).
pub const MAX_DEPTH: usize = 4096;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// An optional feature of the I/O path that the kernel, the file system or the device may refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// `O_DIRECT`: bypass the page cache (alignment rules apply).
    DirectIo,
    /// `IORING_SETUP_SQPOLL`: a kernel thread polls the submission queue.
    Sqpoll,
    /// `IORING_SETUP_IOPOLL`: completions are busy-polled from the device (fio's `hipri`).
    Iopoll,
    /// `IORING_REGISTER_BUFFERS`: pre-registered (fixed) buffers.
    FixedBuffers,
    /// `IORING_REGISTER_FILES`: a pre-registered (fixed) file.
    FixedFiles,
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Feature::DirectIo => "O_DIRECT",
            Feature::Sqpoll => "SQPOLL",
            Feature::Iopoll => "IOPOLL (hipri)",
            Feature::FixedBuffers => "registered buffers",
            Feature::FixedFiles => "registered files",
        })
    }
}

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Read,
    Write,
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
        })
    }
}

/// Why an I/O job could not run or stopped.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The job description does not make sense (caught before any I/O).
    #[error("invalid I/O job: {0}")]
    Invalid(String),
    /// Opening, creating, sizing or stat-ing the target failed.
    #[error("{what} {}: {err}", path.display())]
    Target { what: &'static str, path: PathBuf, err: io::Error },
    /// The kernel, file system or device refused an optional feature, at ring setup or at the
    /// first completion. Not a crash: run again without the feature.
    #[error("{feature} is not supported for {}: {reason} ({})", target.display(), errno_text(*errno))]
    Unsupported { feature: Feature, target: PathBuf, errno: i32, reason: String },
    /// Creating the ring failed for a reason that is not one optional feature.
    #[error("io_uring setup ({entries} entries): {err}")]
    Setup { entries: u32, err: io::Error },
    /// `io_uring_enter` itself failed.
    #[error("io_uring_enter: {0}")]
    Submit(io::Error),
    /// An operation completed with an error.
    #[error("{op} of {len} bytes at offset {offset} of {} failed: {}", target.display(), errno_text(*errno))]
    Completion { op: &'static str, offset: u64, len: usize, errno: i32, target: PathBuf },
    /// A write completed with 0 bytes (no progress; resubmitting would loop forever).
    #[error("write at offset {offset} of {} made no progress (0 bytes written)", target.display())]
    NoProgress { offset: u64, target: PathBuf },
    /// Verify mode read back something other than what it wrote.
    #[error(
        "verify failed at offset {offset} of {}: expected byte {expected:#04x}, found {found:#04x}",
        target.display()
    )]
    Verify { offset: u64, expected: u8, found: u8, target: PathBuf },
    /// A call to the Ceph cluster behind an RBD or RADOS target failed.
    #[error("{what} {target}: {err}")]
    Ceph { what: &'static str, target: String, err: cyvault_store::StoreError },
    /// A job's thread panicked (a bug).
    #[error("I/O job {0} panicked")]
    Panicked(String),
}

impl IoError {
    /// The errno behind the error, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            IoError::Unsupported { errno, .. } | IoError::Completion { errno, .. } => Some(*errno),
            IoError::Target { err, .. } | IoError::Setup { err, .. } | IoError::Submit(err) => err.raw_os_error(),
            _ => None,
        }
    }

    /// The feature refused, when this is an [`IoError::Unsupported`].
    pub fn unsupported_feature(&self) -> Option<Feature> {
        match self {
            IoError::Unsupported { feature, .. } => Some(*feature),
            _ => None,
        }
    }
}

/// `Invalid argument (os error 22)`.
fn errno_text(errno: i32) -> String {
    io::Error::from_raw_os_error(errno).to_string()
}

fn os_errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

// ---------------------------------------------------------------------------------------------
// The target
// ---------------------------------------------------------------------------------------------

/// How to open a target.
#[derive(Clone, Debug)]
pub struct TargetOptions {
    /// Open read-write (writes or verify); read-only otherwise.
    pub write: bool,
    /// `O_DIRECT`.
    pub direct: bool,
    /// For a regular file: create it when missing and extend it (sparse) to this length when it
    /// is shorter. Ignored for block devices.
    pub create_len: Option<u64>,
}

/// An opened file or block device.
#[derive(Debug)]
pub struct Target {
    file: File,
    path: PathBuf,
    size: u64,
    block_device: bool,
    direct: bool,
}

impl Target {
    /// Opens `path` (with `O_DIRECT` when asked; a file system that refuses it gives
    /// [`IoError::Unsupported`] with [`Feature::DirectIo`]).
    pub fn open(path: &Path, opts: &TargetOptions) -> Result<Target, IoError> {
        let target_err = |what, err| IoError::Target { what, path: path.to_owned(), err };
        let mut oo = std::fs::OpenOptions::new();
        oo.read(true).write(opts.write);
        if opts.write && opts.create_len.is_some() {
            oo.create(true);
        }
        if opts.direct {
            oo.custom_flags(libc::O_DIRECT);
        }
        let file = match oo.open(path) {
            Ok(f) => f,
            Err(e) if opts.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                return Err(IoError::Unsupported {
                    feature: Feature::DirectIo,
                    target: path.to_owned(),
                    errno: libc::EINVAL,
                    reason: "the file system refuses O_DIRECT opens (run with buffered I/O instead)".into(),
                });
            }
            Err(e) => return Err(target_err("open", e)),
        };
        let meta = file.metadata().map_err(|e| target_err("stat", e))?;
        let block_device = meta.file_type().is_block_device();
        if !block_device && !meta.file_type().is_file() {
            return Err(IoError::Invalid(format!("{} is neither a regular file nor a block device", path.display())));
        }
        let mut size = meta.len();
        if block_device {
            // lseek(SEEK_END) on a block device gives its size in bytes.
            size = (&file).seek(SeekFrom::End(0)).map_err(|e| target_err("size", e))?;
        } else if let Some(len) = opts.create_len
            && opts.write
            && size < len
        {
            file.set_len(len).map_err(|e| target_err("extend", e))?;
            size = len;
        }
        Ok(Target { file, path: path.to_owned(), size, block_device, direct: opts.direct })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes: the file's length or the device's size, as of opening.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// For a regular file: bytes actually allocated on disk (`st_blocks * 512`); a file that
    /// has fewer than its length is sparse and reads of its holes do no device I/O.
    pub fn allocated_bytes(&self) -> Result<u64, IoError> {
        let meta =
            self.file.metadata().map_err(|err| IoError::Target { what: "stat", path: self.path.clone(), err })?;
        Ok(meta.blocks().saturating_mul(512))
    }
}

// ---------------------------------------------------------------------------------------------
// Ring options, operations, the driver
// ---------------------------------------------------------------------------------------------

/// What kind of ring to set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingOptions {
    /// A kernel thread polls the submission queue (`IORING_SETUP_SQPOLL`).
    pub sqpoll: bool,
    /// Milliseconds the SQPOLL thread spins idle before it sleeps.
    pub sqpoll_idle_ms: u32,
    /// Busy-poll completions (`IORING_SETUP_IOPOLL`, fio's `hipri`); needs O_DIRECT and a
    /// file system/device with polled I/O, and cannot carry fdatasync.
    pub iopoll: bool,
    /// Register one buffer per slot and use READ_FIXED/WRITE_FIXED.
    pub fixed_bufs: bool,
    /// Register the target's descriptor.
    pub fixed_files: bool,
    /// Submit after this many new operations (fio's `iodepth_batch_submit`; 1, the default,
    /// is fio's). 0: every free slot is refilled and everything goes in the one
    /// `io_uring_enter` that also waits for the next completion (fewer system calls, but on
    /// the dev VM's virtio disk 25 % fewer IOPS at 4 KiB QD32 than submitting one by one).
    pub submit_batch: u32,
    /// `IORING_SETUP_COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN`, as fio sets them: completion
    /// work runs when the job thread waits instead of interrupting it. Dropped one by one when
    /// the kernel refuses them; never with SQPOLL.
    pub defer_taskrun: bool,
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions {
            sqpoll: false,
            sqpoll_idle_ms: 1000,
            iopoll: false,
            fixed_bufs: true,
            fixed_files: true,
            submit_batch: 1,
            defer_taskrun: true,
        }
    }
}

/// One operation the driver asks for. `len` is at most the engine's block size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpRequest {
    pub kind: OpKind,
    pub offset: u64,
    pub len: usize,
    /// For a write: follow it with an fdatasync linked to it (`IOSQE_IO_LINK`); the operation
    /// completes when the fdatasync does.
    pub sync: bool,
}

/// One finished operation, with what it actually transferred.
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub kind: OpKind,
    pub offset: u64,
    /// Bytes asked for.
    pub requested: usize,
    /// Bytes transferred (less than `requested` only for a read that reached the end).
    pub done: usize,
    /// An fdatasync completed after the write.
    pub synced: bool,
    /// When the driver handed the operation over (its SQE was about to be pushed): fio's
    /// `start_time`.
    pub queued: Instant,
    /// When the operation was submitted: right after the submit-only `io_uring_enter` that
    /// carried it returned (fio's `issue_time`), or right before a combined submit-and-wait
    /// enter (`submit_batch` 0), which offers no moment in between.
    pub submitted: Instant,
    /// When its (last) completion was reaped.
    pub completed: Instant,
}

impl Completion {
    /// Completion latency, fio's `clat`: from [`Completion::submitted`] to the reaped
    /// completion, including every resubmission of a short transfer and the linked fdatasync.
    pub fn latency(&self) -> Duration {
        self.completed.saturating_duration_since(self.submitted)
    }

    /// Total latency, fio's `lat`: from [`Completion::queued`] to the reaped completion, so it
    /// adds the submission (`slat`) to [`Completion::latency`].
    pub fn total_latency(&self) -> Duration {
        self.completed.saturating_duration_since(self.queued)
    }

    pub fn is_short(&self) -> bool {
        self.done < self.requested
    }
}

/// Where the engine gets its operations and where it delivers their completions.
pub trait Driver {
    /// The next operation, or `None` when there is nothing more to issue (the engine then
    /// waits for what is in flight and returns). `now` is the time of this refill pass.
    fn next_op(&mut self, now: Instant) -> Option<OpRequest>;

    /// Fill the buffer of a write before it is submitted. The default keeps whatever the
    /// buffer holds (pseudo-random bytes written once when the engine was made).
    fn fill(&mut self, _op: &OpRequest, _buf: &mut [u8]) {}

    /// An operation finished; `data` is what it transferred (for a read, the bytes read). An
    /// error stops the run: nothing more is issued, in-flight operations are waited for, and
    /// [`Engine::run`] returns the error.
    fn complete(&mut self, c: &Completion, data: &[u8]) -> Result<(), IoError>;
}

/// Counters of one [`Engine::run`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Operations completed (each counted once, whatever its resubmissions).
    pub completed: u64,
    /// Reads that ended short at the end of the target.
    pub short: u64,
    /// Resubmissions of the remainder of a short transfer.
    pub resubmits: u64,
    /// `io_uring_enter` calls.
    pub enters: u64,
}

// ---------------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------------

/// A heap buffer whose usable part starts on a [`BUFFER_ALIGN`] boundary. The heap allocation
/// never moves or shrinks: the buffer is made once and only its contents change.
#[derive(Debug)]
struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> Result<AlignedBuf, IoError> {
        let storage = vec![0u8; len + BUFFER_ALIGN];
        let start = storage.as_ptr().align_offset(BUFFER_ALIGN);
        if start >= BUFFER_ALIGN {
            return Err(IoError::Invalid("cannot align an I/O buffer".into()));
        }
        Ok(AlignedBuf { storage, start, len })
    }

    fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// The operation a slot holds.
#[derive(Debug)]
struct InFlight {
    kind: OpKind,
    offset: u64,
    len: usize,
    done: usize,
    sync: bool,
    queued: Instant,
    submitted: Option<Instant>,
    /// Completions still expected for the current submission (1, or 2 with a linked sync).
    pending: u8,
    data_res: Option<i32>,
    sync_res: Option<i32>,
}

#[derive(Debug)]
struct Slot {
    buf: AlignedBuf,
    op: Option<InFlight>,
}

/// `user_data`: slot index << 1 | 1 for the fdatasync half of a linked pair.
const SYNC_BIT: u64 = 1;

/// One io_uring ring bound to one target, used by the thread that made it. Fields drop in
/// order: the ring goes before the buffers it may have registered.
pub struct Engine<'t> {
    ring: IoUring,
    slots: Vec<Slot>,
    target: &'t Target,
    opts: RingOptions,
    block_size: usize,
    /// Completions the kernel still owes us (SQEs pushed minus CQEs reaped).
    outstanding: usize,
    /// No operation has succeeded yet on this ring: a feature refusal shows up here.
    first_success_seen: bool,
    /// Not `Send`: with SINGLE_ISSUER only the thread that made the ring may submit to it.
    _one_thread: PhantomData<*const ()>,
}

impl fmt::Debug for Engine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("target", &self.target.path)
            .field("depth", &self.slots.len())
            .field("block_size", &self.block_size)
            .field("opts", &self.opts)
            .field("outstanding", &self.outstanding)
            .finish_non_exhaustive()
    }
}

/// Optional task-work flags, from most to least (fio's order of falling back).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Taskrun {
    CoopSingleDefer,
    Coop,
    Plain,
}

fn build_ring_with(entries: u32, opts: &RingOptions, sqpoll: bool, iopoll: bool, t: Taskrun) -> io::Result<IoUring> {
    let mut b = IoUring::builder();
    if sqpoll {
        b.setup_sqpoll(opts.sqpoll_idle_ms);
    }
    if iopoll {
        b.setup_iopoll();
    }
    if t != Taskrun::Plain {
        // TASKRUN_FLAG: the kernel flags pending completion work in the SQ ring, so a
        // submit-only enter also runs it (as fio's enters, which always carry GETEVENTS, do).
        b.setup_coop_taskrun().setup_taskrun_flag();
    }
    if t == Taskrun::CoopSingleDefer {
        b.setup_single_issuer().setup_defer_taskrun();
    }
    b.build(entries)
}

/// A ring with the asked features; the task-work flags are an optimisation, so a kernel that
/// refuses them (EINVAL) gets a ring without them.
fn build_ring(entries: u32, opts: &RingOptions, sqpoll: bool, iopoll: bool) -> io::Result<(IoUring, Taskrun)> {
    let tries: &[Taskrun] = if opts.defer_taskrun && !sqpoll {
        &[Taskrun::CoopSingleDefer, Taskrun::Coop, Taskrun::Plain]
    } else {
        &[Taskrun::Plain]
    };
    let mut last = None;
    for &t in tries {
        match build_ring_with(entries, opts, sqpoll, iopoll, t) {
            Ok(ring) => return Ok((ring, t)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)))
}

impl<'t> Engine<'t> {
    /// A ring with `depth` slots of `block_size` bytes each over `target`. A refused optional
    /// feature (SQPOLL, IOPOLL, registered buffers or files) gives [`IoError::Unsupported`].
    pub fn new(target: &'t Target, opts: &RingOptions, depth: usize, block_size: usize) -> Result<Engine<'t>, IoError> {
        if depth == 0 || depth > MAX_DEPTH {
            return Err(IoError::Invalid(format!("queue depth {depth} is not in 1..={MAX_DEPTH}")));
        }
        if block_size == 0 || block_size > MAX_BLOCK_SIZE {
            return Err(IoError::Invalid(format!("block size {block_size} is not in 1..={MAX_BLOCK_SIZE}")));
        }
        if opts.iopoll && !target.direct {
            return Err(IoError::Unsupported {
                feature: Feature::Iopoll,
                target: target.path.clone(),
                errno: libc::EOPNOTSUPP,
                reason: "polled I/O needs O_DIRECT".into(),
            });
        }
        // Two SQEs per slot at most (a write and its linked fdatasync), so the submission queue
        // never fills; the completion queue is twice that (the kernel's default).
        let entries = (2 * depth).next_power_of_two() as u32;
        let (ring, taskrun) = match build_ring(entries, opts, opts.sqpoll, opts.iopoll) {
            Ok(built) => built,
            Err(e) => return Err(Self::setup_error(target, opts, entries, e)),
        };
        let mut slots = Vec::with_capacity(depth);
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ block_size as u64;
        for _ in 0..depth {
            let mut buf = AlignedBuf::new(block_size)?;
            for chunk in buf.as_mut_slice().chunks_mut(8) {
                seed = splitmix64(seed);
                chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
            }
            slots.push(Slot { buf, op: None });
        }
        let engine = Engine {
            ring,
            slots,
            target,
            opts: RingOptions { defer_taskrun: taskrun == Taskrun::CoopSingleDefer, ..*opts },
            block_size,
            outstanding: 0,
            first_success_seen: false,
            _one_thread: PhantomData,
        };
        engine.register()
    }

    /// Which feature a failed ring setup is about: try each alone.
    fn setup_error(target: &Target, opts: &RingOptions, entries: u32, e: io::Error) -> IoError {
        let errno = os_errno(&e);
        let unsupported =
            |feature, reason: String| IoError::Unsupported { feature, target: target.path.clone(), errno, reason };
        let plain_ok = build_ring(entries, opts, false, false).is_ok();
        if !plain_ok {
            return IoError::Setup { entries, err: e };
        }
        if opts.sqpoll && build_ring(entries, opts, true, false).is_err() {
            let why = if errno == libc::EPERM {
                "the kernel refused the SQPOLL thread (privileges: needs CAP_SYS_NICE on older kernels)"
            } else {
                "the kernel refused IORING_SETUP_SQPOLL"
            };
            return unsupported(Feature::Sqpoll, why.into());
        }
        if opts.iopoll && build_ring(entries, opts, false, true).is_err() {
            return unsupported(Feature::Iopoll, "the kernel refused IORING_SETUP_IOPOLL".into());
        }
        if opts.iopoll && opts.sqpoll {
            return unsupported(Feature::Iopoll, "the kernel refused IOPOLL together with SQPOLL".into());
        }
        IoError::Setup { entries, err: e }
    }

    fn register(mut self) -> Result<Self, IoError> {
        if self.opts.fixed_bufs {
            let iovecs: Vec<libc::iovec> = self
                .slots
                .iter_mut()
                .map(|s| {
                    let b = s.buf.as_mut_slice();
                    libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }
                })
                .collect();
            // SAFETY: every iovec points at a slot's buffer, owned by `self.slots`, whose heap
            // allocation is neither moved nor freed until the ring is gone: `ring` is declared
            // before `slots` so it drops (and unregisters) first, and `Drop` waits for anything
            // in flight before that. The kernel pins these pages for the ring's life.
            let registered = unsafe { self.ring.submitter().register_buffers(&iovecs) };
            if let Err(e) = registered {
                return Err(IoError::Unsupported {
                    feature: Feature::FixedBuffers,
                    target: self.target.path.clone(),
                    errno: os_errno(&e),
                    reason: format!(
                        "registering {} buffers of {} bytes failed (locked-memory limit? see ulimit -l)",
                        iovecs.len(),
                        self.block_size
                    ),
                });
            }
        }
        if self.opts.fixed_files
            && let Err(e) = self.ring.submitter().register_files(&[self.target.file.as_raw_fd()])
        {
            return Err(IoError::Unsupported {
                feature: Feature::FixedFiles,
                target: self.target.path.clone(),
                errno: os_errno(&e),
                reason: "registering the target's descriptor failed".into(),
            });
        }
        Ok(self)
    }

    /// Slots (the queue depth).
    pub fn depth(&self) -> usize {
        self.slots.len()
    }

    /// Capacity of each slot's buffer.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn target(&self) -> &Target {
        self.target
    }

    /// The options in effect: as asked, except `defer_taskrun`, which says whether the kernel
    /// took COOP_TASKRUN + SINGLE_ISSUER + DEFER_TASKRUN.
    pub fn options(&self) -> &RingOptions {
        &self.opts
    }

    /// Pushes the SQE(s) for what slot `idx` holds (its remainder, after a short transfer).
    fn push_slot(&mut self, idx: usize) -> Result<(), IoError> {
        let fd_raw = self.target.file.as_raw_fd();
        let (fixed_files, fixed_bufs) = (self.opts.fixed_files, self.opts.fixed_bufs);
        let slot = &mut self.slots[idx];
        let Some(op) = slot.op.as_mut() else {
            return Err(IoError::Invalid(format!("internal: slot {idx} has no operation to push")));
        };
        let remaining = &mut slot.buf.as_mut_slice()[op.done..op.len];
        let (ptr, len) = (remaining.as_mut_ptr(), remaining.len() as u32);
        let offset = op.offset + op.done as u64;
        let buf_index = idx as u16;
        let data = match (op.kind, fixed_files, fixed_bufs) {
            (OpKind::Read, true, true) => {
                opcode::ReadFixed::new(types::Fixed(0), ptr, len, buf_index).offset(offset).build()
            }
            (OpKind::Read, false, true) => {
                opcode::ReadFixed::new(types::Fd(fd_raw), ptr, len, buf_index).offset(offset).build()
            }
            (OpKind::Read, true, false) => opcode::Read::new(types::Fixed(0), ptr, len).offset(offset).build(),
            (OpKind::Read, false, false) => opcode::Read::new(types::Fd(fd_raw), ptr, len).offset(offset).build(),
            (OpKind::Write, true, true) => {
                opcode::WriteFixed::new(types::Fixed(0), ptr, len, buf_index).offset(offset).build()
            }
            (OpKind::Write, false, true) => {
                opcode::WriteFixed::new(types::Fd(fd_raw), ptr, len, buf_index).offset(offset).build()
            }
            (OpKind::Write, true, false) => opcode::Write::new(types::Fixed(0), ptr, len).offset(offset).build(),
            (OpKind::Write, false, false) => opcode::Write::new(types::Fd(fd_raw), ptr, len).offset(offset).build(),
        };
        let ud = (idx as u64) << 1;
        let mut sq = self.ring.submission();
        let pushed = if op.sync {
            let sync =
                if fixed_files { opcode::Fsync::new(types::Fixed(0)) } else { opcode::Fsync::new(types::Fd(fd_raw)) }
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(ud | SYNC_BIT);
            let pair = [data.flags(squeue::Flags::IO_LINK).user_data(ud), sync];
            // SAFETY: the write reads `ptr..ptr+len`, inside slot `idx`'s buffer, which is owned
            // by `self.slots` and stays allocated and unmoved until both completions of this
            // pair are reaped (`run` drains before returning; `Drop` drains or leaks the
            // buffers). The descriptor (fixed index 0 or the raw fd) is `self.target`'s, which
            // the engine borrows for its whole life. The slot is not reused until both
            // completions arrive (`pending` = 2).
            unsafe { sq.push_multiple(&pair) }
        } else {
            // SAFETY: the operation reads or writes `ptr..ptr+len`, inside slot `idx`'s buffer,
            // owned by `self.slots` and neither freed nor moved until its completion is reaped
            // (`run` drains before returning; `Drop` drains or leaks the buffers). The
            // descriptor (fixed index 0 or the raw fd) is `self.target`'s, borrowed by the
            // engine for its whole life. The slot is not reused before the completion arrives.
            unsafe { sq.push(&data.user_data(ud)) }
        };
        drop(sq);
        if pushed.is_err() {
            // Cannot happen: the queue has room for two SQEs per slot.
            return Err(IoError::Invalid("internal: submission queue full".into()));
        }
        op.pending = if op.sync { 2 } else { 1 };
        op.data_res = None;
        op.sync_res = None;
        self.outstanding += op.pending as usize;
        Ok(())
    }

    /// Runs until the driver has nothing more to issue and everything in flight completed.
    /// Always drains before returning, error or not.
    pub fn run(&mut self, driver: &mut dyn Driver) -> Result<RunStats, IoError> {
        let mut stats = RunStats::default();
        let mut free: Vec<usize> = (0..self.slots.len()).rev().collect();
        let mut fresh: Vec<usize> = Vec::with_capacity(self.slots.len());
        let mut resubmit: Vec<usize> = Vec::new();
        let mut cqes: Vec<(u64, i32)> = Vec::with_capacity(2 * self.slots.len());
        let mut exhausted = false;
        let mut failure: Option<IoError> = None;
        loop {
            if failure.is_none() {
                for idx in std::mem::take(&mut resubmit) {
                    if let Err(e) = self.push_slot(idx) {
                        failure.get_or_insert(e);
                        self.slots[idx].op = None;
                        free.push(idx);
                    }
                }
            }
            let now = Instant::now();
            while failure.is_none() && !exhausted {
                let Some(&idx) = free.last() else { break };
                let Some(req) = driver.next_op(now) else {
                    exhausted = true;
                    break;
                };
                if let Err(e) = self.check_request(&req) {
                    failure = Some(e);
                    break;
                }
                free.pop();
                let slot = &mut self.slots[idx];
                if req.kind == OpKind::Write {
                    driver.fill(&req, &mut slot.buf.as_mut_slice()[..req.len]);
                }
                slot.op = Some(InFlight {
                    kind: req.kind,
                    offset: req.offset,
                    len: req.len,
                    done: 0,
                    sync: req.sync && req.kind == OpKind::Write,
                    queued: Instant::now(),
                    submitted: None,
                    pending: 0,
                    data_res: None,
                    sync_res: None,
                });
                if let Err(e) = self.push_slot(idx) {
                    failure = Some(e);
                    self.slots[idx].op = None;
                    free.push(idx);
                    break;
                }
                fresh.push(idx);
                let batch = self.opts.submit_batch as usize;
                if batch > 0
                    && fresh.len() >= batch
                    && let Err(e) = self.enter(&mut fresh, 0, &mut stats)
                {
                    return Err(IoError::Submit(e));
                }
            }
            if self.outstanding == 0 {
                break;
            }
            if let Err(e) = self.enter(&mut fresh, 1, &mut stats) {
                // Cannot wait for what is in flight: `Drop` tries again or leaks the buffers.
                return Err(failure.unwrap_or(IoError::Submit(e)));
            }
            let reaped = Instant::now();
            cqes.clear();
            cqes.extend(self.ring.completion().map(|c: cqueue::Entry| (c.user_data(), c.result())));
            self.outstanding -= cqes.len().min(self.outstanding);
            for &(ud, res) in &cqes {
                let idx = (ud >> 1) as usize;
                match self.on_cqe(idx, ud & SYNC_BIT != 0, res, reaped, driver, &mut stats) {
                    Ok(Step::Pending) => {}
                    Ok(Step::Resubmit) => {
                        stats.resubmits += 1;
                        resubmit.push(idx);
                    }
                    Ok(Step::Done) => {
                        self.slots[idx].op = None;
                        free.push(idx);
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                        self.slots[idx].op = None;
                        free.push(idx);
                    }
                }
            }
            if failure.is_some() {
                // Remainders are not resubmitted after a failure; their slots are done.
                for idx in resubmit.drain(..) {
                    self.slots[idx].op = None;
                    free.push(idx);
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    /// One `io_uring_enter`: submits what is queued and waits for `want` completions. The
    /// `fresh` slots' operations count as submitted when a submit-only enter (`want` 0) has
    /// returned, as fio stamps `issue_time`; a combined submit-and-wait enter has no such
    /// moment, so they count from just before it. An interrupted or busy enter is not an
    /// error: the caller reaps and comes back.
    fn enter(&mut self, fresh: &mut Vec<usize>, want: usize, stats: &mut RunStats) -> io::Result<()> {
        let before = Instant::now();
        stats.enters += 1;
        let result = self.ring.submit_and_wait(want);
        let submit_time = if want == 0 { Instant::now() } else { before };
        for idx in fresh.drain(..) {
            if let Some(op) = self.slots[idx].op.as_mut() {
                op.submitted.get_or_insert(submit_time);
            }
        }
        match result {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn check_request(&self, req: &OpRequest) -> Result<(), IoError> {
        if req.len == 0 || req.len > self.block_size {
            return Err(IoError::Invalid(format!(
                "an operation of {} bytes does not fit the engine's {}-byte buffers",
                req.len, self.block_size
            )));
        }
        if req.sync && req.kind == OpKind::Write && self.opts.iopoll {
            return Err(IoError::Unsupported {
                feature: Feature::Iopoll,
                target: self.target.path.clone(),
                errno: libc::EINVAL,
                reason: "an IOPOLL ring takes only reads and writes, not fdatasync".into(),
            });
        }
        Ok(())
    }

    /// Handles one CQE of slot `idx`.
    fn on_cqe(
        &mut self,
        idx: usize,
        is_sync: bool,
        res: i32,
        now: Instant,
        driver: &mut dyn Driver,
        stats: &mut RunStats,
    ) -> Result<Step, IoError> {
        let target_size = self.target.size;
        let block_device = self.target.block_device;
        let Some(op) = self.slots.get_mut(idx).and_then(|s| s.op.as_mut()) else {
            return Err(IoError::Invalid(format!("internal: completion for idle slot {idx}")));
        };
        if is_sync {
            op.sync_res = Some(res);
        } else {
            op.data_res = Some(res);
        }
        op.pending = op.pending.saturating_sub(1);
        if op.pending > 0 {
            return Ok(Step::Pending);
        }
        let data_res = op.data_res.unwrap_or(-libc::EIO);
        if data_res < 0 {
            let (kind, offset, len) = (op.kind, op.offset + op.done as u64, op.len - op.done);
            return Err(self.completion_error(
                if kind == OpKind::Read { "read" } else { "write" },
                offset,
                len,
                data_res.saturating_neg(),
            ));
        }
        let n = data_res as usize;
        op.done += n;
        let end = op.offset + op.done as u64;
        let mut short_end = false;
        if op.done < op.len {
            match op.kind {
                // A read at or past the end of the target: done, short.
                OpKind::Read if n == 0 || end >= target_size => short_end = true,
                // The end of a block device.
                OpKind::Write if block_device && end >= target_size => short_end = true,
                OpKind::Write if n == 0 => {
                    let offset = end;
                    return Err(IoError::NoProgress { offset, target: self.target.path.clone() });
                }
                // Resubmit the remainder (a short write also cancelled its linked sync).
                _ => return Ok(Step::Resubmit),
            }
        }
        let mut synced = false;
        if op.sync {
            match op.sync_res {
                Some(0) => synced = true,
                // Cancelled because the write was short at the device's end: no sync to report.
                Some(r) if r == -libc::ECANCELED && short_end => {}
                Some(r) => {
                    let (offset, len) = (op.offset, op.len);
                    let errno = if r < 0 { r.saturating_neg() } else { libc::EIO };
                    return Err(self.completion_error("fdatasync", offset, len, errno));
                }
                None => {}
            }
        }
        let c = Completion {
            kind: op.kind,
            offset: op.offset,
            requested: op.len,
            done: op.done,
            synced,
            queued: op.queued,
            submitted: op.submitted.unwrap_or(now),
            completed: now,
        };
        self.first_success_seen = true;
        stats.completed += 1;
        if c.is_short() {
            stats.short += 1;
        }
        let data = &self.slots[idx].buf.as_slice()[..c.done];
        driver.complete(&c, data)?;
        Ok(Step::Done)
    }

    /// The error for a failed completion; a refusal before anything succeeded is a feature.
    fn completion_error(&self, op: &'static str, offset: u64, len: usize, errno: i32) -> IoError {
        let target = self.target.path.clone();
        if !self.first_success_seen && matches!(errno, libc::EINVAL | libc::EOPNOTSUPP | libc::EPERM) {
            if self.opts.iopoll {
                let reason = format!(
                    "the first {op} on an IOPOLL ring failed: the file system or device does not do polled I/O"
                );
                return IoError::Unsupported { feature: Feature::Iopoll, target, errno, reason };
            }
            if self.target.direct && errno == libc::EINVAL {
                let reason = format!(
                    "the first {op} ({len} bytes at offset {offset}) was refused: O_DIRECT needs offsets and sizes \
                     aligned to the device's logical block size"
                );
                return IoError::Unsupported { feature: Feature::DirectIo, target, errno, reason };
            }
        }
        IoError::Completion { op, offset, len, errno, target }
    }
}

enum Step {
    /// The other half of a linked pair is still out.
    Pending,
    /// A short transfer: push the remainder.
    Resubmit,
    Done,
}

impl Drop for Engine<'_> {
    fn drop(&mut self) {
        // `run` drains, so this only matters if it returned on a failed io_uring_enter or a
        // panic unwound through it: wait for the kernel, or leak the buffers rather than free
        // memory it may still write into.
        let mut tries = 0;
        while self.outstanding > 0 && tries < 1000 {
            tries += 1;
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(_) => break,
            }
            let n = self.ring.completion().count();
            self.outstanding -= n.min(self.outstanding);
        }
        if self.outstanding > 0 {
            std::mem::forget(std::mem::take(&mut self.slots));
        }
    }
}

/// SplitMix64: one step. Used for buffer contents and seeding.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
