//! Job specs (fio's vocabulary: rw, bs, iodepth, size, runtime, ramp, numjobs, rwmixread,
//! fsync=1, direct=1) and running them: one thread and one ring per job, offsets from a seeded
//! PRNG (the same seed gives the same offsets), a verify mode that writes a pattern derived
//! from offset and seed and reads it back.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::engine::{
    Completion, Driver, Engine, IoError, MAX_BLOCK_SIZE, MAX_DEPTH, OpKind, OpRequest, RingOptions, Target,
    TargetOptions, splitmix64,
};
use super::report::{JobInfo, JobStats, Report, TargetKind};

/// The access pattern, with fio's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rw {
    /// Sequential reads.
    Read,
    /// Sequential writes.
    Write,
    RandRead,
    RandWrite,
    /// Random reads and writes; [`JobSpec::rwmixread`] percent are reads.
    RandRw,
}

impl Rw {
    pub fn as_str(self) -> &'static str {
        match self {
            Rw::Read => "read",
            Rw::Write => "write",
            Rw::RandRead => "randread",
            Rw::RandWrite => "randwrite",
            Rw::RandRw => "randrw",
        }
    }

    pub fn is_random(self) -> bool {
        matches!(self, Rw::RandRead | Rw::RandWrite | Rw::RandRw)
    }

    pub fn reads(self) -> bool {
        matches!(self, Rw::Read | Rw::RandRead | Rw::RandRw)
    }

    pub fn writes(self) -> bool {
        matches!(self, Rw::Write | Rw::RandWrite | Rw::RandRw)
    }
}

impl fmt::Display for Rw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Rw {
    type Err = String;

    fn from_str(s: &str) -> Result<Rw, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "read" => Rw::Read,
            "write" => Rw::Write,
            "randread" => Rw::RandRead,
            "randwrite" => Rw::RandWrite,
            "randrw" => Rw::RandRw,
            other => return Err(format!("unknown rw {other:?}: use randread, randwrite, read, write or randrw")),
        })
    }
}

/// How several copies of a job share the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegionLayout {
    /// Every job uses the same region with its own seed (fio's numjobs on one file).
    Shared,
    /// Job i uses the region at `offset + i * size` (needs a size).
    Split,
}

impl FromStr for RegionLayout {
    type Err = String;

    fn from_str(s: &str) -> Result<RegionLayout, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "shared" => Ok(RegionLayout::Shared),
            "split" => Ok(RegionLayout::Split),
            other => Err(format!("unknown region layout {other:?}: use shared or split")),
        }
    }
}

/// How to reach a Ceph cluster for an RBD or RADOS target.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CephLogin {
    /// A ceph.conf naming the monitors and the keyring.
    pub conf: String,
    /// The cephx id without `client.` (e.g. `admin`).
    pub id: String,
}

/// Where a job's I/O goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSpec {
    /// A regular file or a block device (a loop device counts), through io_uring.
    Path(PathBuf),
    /// An RBD image through librbd's asynchronous API, from user space (no kernel RBD).
    Rbd { ceph: CephLogin, pool: String, image: String },
    /// RADOS objects `PREFIX.00000000`, `PREFIX.00000001`, … of `object_size` bytes each,
    /// through the storage API on librados (what the gateway uses): byte `o` of the region is
    /// byte `o % object_size` of object `o / object_size`.
    Rados { ceph: CephLogin, pool: String, prefix: String, object_size: u64 },
}

/// The object size of RADOS targets unless told otherwise: RBD's default, 4 MiB.
pub const DEFAULT_RADOS_OBJECT_SIZE: u64 = 4 << 20;

impl TargetSpec {
    /// Reads `rbd:POOL/IMAGE`, `rados:POOL/PREFIX` or a path; the Ceph targets need `ceph`.
    pub fn parse(s: &str, ceph: Option<&CephLogin>, object_size: u64) -> Result<TargetSpec, String> {
        let ceph_target = |rest: &str, what: &str| -> Result<(CephLogin, String, String), String> {
            let Some((pool, name)) = rest.split_once('/') else {
                return Err(format!("{s:?}: write {what}:POOL/{}", if what == "rbd" { "IMAGE" } else { "PREFIX" }));
            };
            if pool.is_empty() || name.is_empty() {
                return Err(format!("{s:?}: the pool and the name must not be empty"));
            }
            let Some(ceph) = ceph else {
                return Err(format!("{s:?} is on Ceph: give --ceph-conf (or CYVAULT_CEPH_CONF)"));
            };
            Ok((ceph.clone(), pool.to_string(), name.to_string()))
        };
        if let Some(rest) = s.strip_prefix("rbd:") {
            let (ceph, pool, image) = ceph_target(rest, "rbd")?;
            Ok(TargetSpec::Rbd { ceph, pool, image })
        } else if let Some(rest) = s.strip_prefix("rados:") {
            let (ceph, pool, prefix) = ceph_target(rest, "rados")?;
            if object_size == 0 || !object_size.is_multiple_of(512) {
                return Err(format!("object size {object_size} must be a positive multiple of 512"));
            }
            Ok(TargetSpec::Rados { ceph, pool, prefix, object_size })
        } else if s.is_empty() {
            Err("the target is empty".into())
        } else {
            Ok(TargetSpec::Path(PathBuf::from(s)))
        }
    }

    /// The path of a file or block device target.
    pub fn path(&self) -> Option<&Path> {
        match self {
            TargetSpec::Path(p) => Some(p),
            _ => None,
        }
    }

    /// The Ceph login of an RBD or RADOS target.
    pub fn ceph(&self) -> Option<&CephLogin> {
        match self {
            TargetSpec::Path(_) => None,
            TargetSpec::Rbd { ceph, .. } | TargetSpec::Rados { ceph, .. } => Some(ceph),
        }
    }

    /// For messages and errors: the path itself, or the target as written on the command line.
    pub fn as_path_buf(&self) -> PathBuf {
        match self {
            TargetSpec::Path(p) => p.clone(),
            other => PathBuf::from(other.to_string()),
        }
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetSpec::Path(p) => write!(f, "{}", p.display()),
            TargetSpec::Rbd { pool, image, .. } => write!(f, "rbd:{pool}/{image}"),
            TargetSpec::Rados { pool, prefix, .. } => write!(f, "rados:{pool}/{prefix}"),
        }
    }
}

impl From<PathBuf> for TargetSpec {
    fn from(p: PathBuf) -> TargetSpec {
        TargetSpec::Path(p)
    }
}

impl From<&PathBuf> for TargetSpec {
    fn from(p: &PathBuf) -> TargetSpec {
        TargetSpec::Path(p.clone())
    }
}

impl From<&Path> for TargetSpec {
    fn from(p: &Path) -> TargetSpec {
        TargetSpec::Path(p.to_owned())
    }
}

impl From<&str> for TargetSpec {
    /// Always a path; [`TargetSpec::parse`] reads the `rbd:` and `rados:` forms.
    fn from(p: &str) -> TargetSpec {
        TargetSpec::Path(PathBuf::from(p))
    }
}

/// One job: one thread, one ring (or one librbd/librados client loop), one region of one target.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub target: TargetSpec,
    pub rw: Rw,
    /// Percentage of reads in [`Rw::RandRw`] (0..=100).
    pub rwmixread: u8,
    /// fio's `fsync=1`: every write is linked to an fdatasync; its latency is that of the
    /// acknowledged write (write + fdatasync).
    pub fsync: bool,
    /// Bytes per operation: a multiple of 512.
    pub block_size: usize,
    /// Operations in flight.
    pub iodepth: usize,
    /// Start of the region (a multiple of 512).
    pub offset: u64,
    /// Length of the region; `None`: from `offset` to the end of the target.
    pub size: Option<u64>,
    /// Time-based: run this long after the ramp, going round the region as often as needed.
    /// `None`: size-based, one region's worth of operations (each block once when sequential).
    pub runtime: Option<Duration>,
    /// Completions in this first stretch are not counted.
    pub ramp: Duration,
    /// O_DIRECT.
    pub direct: bool,
    /// Seed of the offsets (random patterns), of randrw's choices and of verify's pattern.
    pub seed: u64,
    /// Write every block of the region once with a pattern derived from offset and seed, then
    /// read every block back and compare (the order follows `rw`: random or sequential).
    /// `runtime` and `ramp` do not apply.
    pub verify: bool,
    /// For a regular file: create it when missing, extend it to `offset + size`, and write it
    /// out first when the job reads and the file is not fully allocated (reads of holes do no
    /// device I/O). Block devices are never resized.
    pub create: bool,
    pub ring: RingOptions,
}

impl JobSpec {
    /// 4 KiB, queue depth 1, the whole target, size-based, O_DIRECT, seed 1, default ring.
    pub fn new(target: impl Into<TargetSpec>, rw: Rw) -> JobSpec {
        JobSpec {
            name: "job".into(),
            target: target.into(),
            rw,
            rwmixread: 50,
            fsync: false,
            block_size: 4096,
            iodepth: 1,
            offset: 0,
            size: None,
            runtime: None,
            ramp: Duration::ZERO,
            direct: true,
            seed: 1,
            verify: false,
            create: false,
            ring: RingOptions::default(),
        }
    }

    /// Rejects what cannot run, before any I/O.
    pub fn validate(&self) -> Result<(), IoError> {
        let bad = |m: String| Err(IoError::Invalid(format!("{}: {m}", self.name)));
        if self.block_size == 0 || !self.block_size.is_multiple_of(512) || self.block_size > MAX_BLOCK_SIZE {
            return bad(format!("block size {} must be a multiple of 512 up to {MAX_BLOCK_SIZE}", self.block_size));
        }
        if self.iodepth == 0 || self.iodepth > MAX_DEPTH {
            return bad(format!("iodepth {} must be in 1..={MAX_DEPTH}", self.iodepth));
        }
        if self.rwmixread > 100 {
            return bad(format!("rwmixread {} must be a percentage", self.rwmixread));
        }
        if !self.offset.is_multiple_of(512) {
            return bad(format!("offset {} must be a multiple of 512", self.offset));
        }
        if self.size == Some(0) {
            return bad("size must be positive".into());
        }
        if self.runtime.is_some_and(|r| r.is_zero()) {
            return bad("runtime must be positive".into());
        }
        if self.create && self.size.is_none() {
            return bad("creating a file needs a size".into());
        }
        Ok(())
    }

    /// `numjobs` copies named NAME.0, NAME.1, … (just NAME for one), seeded seed, seed+1, …,
    /// on the same region or on consecutive ones.
    pub fn replicate(&self, numjobs: usize, layout: RegionLayout) -> Result<Vec<JobSpec>, IoError> {
        if numjobs == 0 {
            return Err(IoError::Invalid("numjobs must be at least 1".into()));
        }
        let size = match (layout, self.size) {
            (RegionLayout::Split, None) if numjobs > 1 => {
                return Err(IoError::Invalid("split regions need a size per job".into()));
            }
            (_, s) => s.unwrap_or(0),
        };
        Ok((0..numjobs)
            .map(|i| {
                let mut j = self.clone();
                if numjobs > 1 {
                    j.name = format!("{}.{i}", self.name);
                }
                j.seed = self.seed.wrapping_add(i as u64);
                if layout == RegionLayout::Split {
                    j.offset = self.offset + i as u64 * size;
                }
                j
            })
            .collect())
    }

    /// The region `(start, len)` on an opened target of `size` bytes. A `fixed_size` target
    /// (a block device, an RBD image) cannot be written past its end.
    pub fn region(&self, size: u64, fixed_size: bool) -> Result<(u64, u64), IoError> {
        let len = match self.size {
            Some(s) => s,
            None => size.saturating_sub(self.offset),
        };
        if len == 0 {
            return Err(IoError::Invalid(format!(
                "{}: the region at offset {} of {} ({size} bytes) is empty: give a size",
                self.name, self.offset, self.target,
            )));
        }
        if fixed_size && self.offset + len > size {
            return Err(IoError::Invalid(format!(
                "{}: the region {}+{len} ends past the end of {} ({size} bytes)",
                self.name, self.offset, self.target,
            )));
        }
        Ok((self.offset, len))
    }

    pub(crate) fn info(&self, kind: TargetKind, region: (u64, u64)) -> JobInfo {
        JobInfo {
            name: self.name.clone(),
            target: self.target.to_string(),
            target_kind: kind,
            target_is_block_device: kind == TargetKind::BlockDevice,
            rw: self.rw.as_str().into(),
            rwmixread: (self.rw == Rw::RandRw).then_some(self.rwmixread),
            block_size: self.block_size,
            iodepth: self.iodepth,
            fsync: self.fsync && (self.rw.writes() || self.verify),
            direct: self.direct,
            region_offset: region.0,
            region_len: region.1,
            runtime_s: if self.verify { None } else { self.runtime.map(|d| d.as_secs_f64()) },
            ramp_s: if self.verify { 0.0 } else { self.ramp.as_secs_f64() },
            seed: self.seed,
            verify: self.verify,
            ring: matches!(self.target, TargetSpec::Path(_)).then_some(self.ring),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Live progress, PRNG, verify pattern
// ---------------------------------------------------------------------------------------------

/// Counters the jobs update as they go (ramp included), for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    ops: AtomicU64,
    bytes: AtomicU64,
    prefill_bytes: AtomicU64,
}

impl Progress {
    pub fn new() -> Progress {
        Progress::default()
    }

    /// Operations completed by all jobs so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Bytes written while laying out files before the jobs start.
    pub fn prefill_bytes(&self) -> u64 {
        self.prefill_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn add_prefill(&self, bytes: u64) {
        self.prefill_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn add(&self, bytes: usize) {
        self.ops.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// xoshiro256**, seeded through SplitMix64: small, fast, and the same sequence on every build.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut s = [0u64; 4];
        for w in &mut s {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            *w = splitmix64(x);
        }
        Rng { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

fn pattern_word(seed: u64, pos: u64) -> u64 {
    splitmix64(seed.wrapping_mul(0xd134_2543_de82_ef95) ^ pos)
}

/// Fills `buf`, which will be at byte `offset` of the target, with the verify pattern: each
/// 8-byte word is a hash of the seed and the word's absolute position.
pub fn pattern_fill(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let w = pattern_word(seed, offset + 8 * i as u64).to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

/// The first byte of `buf` (read from byte `offset`) that differs from the pattern:
/// `(index in buf, expected, found)`.
pub fn pattern_check(seed: u64, offset: u64, buf: &[u8]) -> Option<(usize, u8, u8)> {
    for (i, chunk) in buf.chunks(8).enumerate() {
        let w = pattern_word(seed, offset + 8 * i as u64).to_le_bytes();
        if chunk != &w[..chunk.len()] {
            let k = chunk.iter().zip(&w).position(|(a, b)| a != b).unwrap_or(0);
            return Some((8 * i + k, w[k], chunk[k]));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
pub(crate) struct Stops<'a> {
    user: &'a AtomicBool,
    halt: &'a AtomicBool,
}

impl Stops<'_> {
    fn stopped(&self) -> bool {
        self.user.load(Ordering::Relaxed) || self.halt.load(Ordering::Relaxed)
    }
}

/// The benchmark: offsets per `rw`, time- or size-based, completions after the ramp counted.
struct MeasureDriver<'a> {
    spec: &'a JobSpec,
    region_start: u64,
    blocks: u64,
    rng: Rng,
    cursor: u64,
    issued: u64,
    limit: Option<u64>,
    deadline: Option<Instant>,
    window_start: Instant,
    stops: Stops<'a>,
    progress: &'a Progress,
    stats: JobStats,
}

impl Driver for MeasureDriver<'_> {
    fn next_op(&mut self, now: Instant) -> Option<OpRequest> {
        if self.deadline.is_some_and(|d| now >= d) || self.limit.is_some_and(|l| self.issued >= l) {
            return None;
        }
        if self.stops.stopped() {
            self.stats.stopped_early = true;
            return None;
        }
        let kind = match self.spec.rw {
            Rw::Read | Rw::RandRead => OpKind::Read,
            Rw::Write | Rw::RandWrite => OpKind::Write,
            Rw::RandRw if self.rng.below(100) < u64::from(self.spec.rwmixread) => OpKind::Read,
            Rw::RandRw => OpKind::Write,
        };
        let block = if self.spec.rw.is_random() {
            self.rng.below(self.blocks)
        } else {
            let b = self.cursor;
            self.cursor = (self.cursor + 1) % self.blocks;
            b
        };
        self.issued += 1;
        Some(OpRequest {
            kind,
            offset: self.region_start + block * self.spec.block_size as u64,
            len: self.spec.block_size,
            sync: self.spec.fsync && kind == OpKind::Write,
        })
    }

    fn complete(&mut self, c: &Completion, _data: &[u8]) -> Result<(), IoError> {
        self.progress.add(c.done);
        if c.completed >= self.window_start {
            self.stats.record(c, self.window_start);
        }
        Ok(())
    }
}

/// Verify mode: every block of the region once, in `order`, writing the pattern or checking it.
struct VerifyDriver<'a> {
    spec: &'a JobSpec,
    region_start: u64,
    order: &'a [u64],
    pos: usize,
    kind: OpKind,
    window_start: Instant,
    stops: Stops<'a>,
    progress: &'a Progress,
    stats: &'a mut JobStats,
}

impl Driver for VerifyDriver<'_> {
    fn next_op(&mut self, _now: Instant) -> Option<OpRequest> {
        if self.stops.stopped() {
            self.stats.stopped_early = true;
            return None;
        }
        let block = *self.order.get(self.pos)?;
        self.pos += 1;
        Some(OpRequest {
            kind: self.kind,
            offset: self.region_start + block * self.spec.block_size as u64,
            len: self.spec.block_size,
            sync: self.spec.fsync && self.kind == OpKind::Write,
        })
    }

    fn fill(&mut self, op: &OpRequest, buf: &mut [u8]) {
        pattern_fill(self.spec.seed, op.offset, buf);
    }

    fn complete(&mut self, c: &Completion, data: &[u8]) -> Result<(), IoError> {
        self.progress.add(c.done);
        if c.kind == OpKind::Read {
            if let Some((i, expected, found)) = pattern_check(self.spec.seed, c.offset, data) {
                return Err(IoError::Verify {
                    offset: c.offset + i as u64,
                    expected,
                    found,
                    target: self.spec.target.as_path_buf(),
                });
            }
            self.stats.verified_bytes += data.len() as u64;
        }
        self.stats.record(c, self.window_start);
        Ok(())
    }
}

/// Sequential writes of big blocks over `0..end`, to lay a file out.
struct FillDriver<'a> {
    end: u64,
    next: u64,
    block: usize,
    stop: &'a AtomicBool,
    progress: &'a Progress,
}

impl Driver for FillDriver<'_> {
    fn next_op(&mut self, _now: Instant) -> Option<OpRequest> {
        if self.next >= self.end || self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let len = (self.end - self.next).min(self.block as u64) as usize;
        let op = OpRequest { kind: OpKind::Write, offset: self.next, len: len.next_multiple_of(4096), sync: false };
        self.next += len as u64;
        Some(op)
    }

    fn complete(&mut self, c: &Completion, _data: &[u8]) -> Result<(), IoError> {
        self.progress.add_prefill(c.done as u64);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

/// Creates, extends and lays out the targets that jobs with `create` ask for, once per target,
/// before any job starts: regular files (created, extended, and written out when a job reads
/// them and they are sparse), RBD images (created or grown, and written out when just created
/// and a job reads them) and RADOS objects (each written in full when missing).
pub fn prepare_targets(jobs: &[JobSpec], stop: &AtomicBool, progress: &Progress) -> Result<(), IoError> {
    let conns = Connections::for_jobs(jobs)?;
    prepare_with(jobs, &conns, stop, progress)
}

/// The extent every creating job needs of one target, and whether any of them reads it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub end: u64,
    pub reads: bool,
    pub direct: bool,
}

fn prepare_with(jobs: &[JobSpec], conns: &Connections, stop: &AtomicBool, progress: &Progress) -> Result<(), IoError> {
    let mut by_target: Vec<(&TargetSpec, Layout)> = Vec::new();
    for j in jobs.iter().filter(|j| j.create) {
        let end = j.offset + j.size.unwrap_or(0);
        let reads = j.rw.reads() && !j.verify;
        match by_target.iter_mut().find(|(t, _)| *t == &j.target) {
            Some((_, l)) => {
                l.end = l.end.max(end);
                l.reads |= reads;
                l.direct &= j.direct;
            }
            None => by_target.push((&j.target, Layout { end, reads, direct: j.direct })),
        }
    }
    for (target, layout) in by_target {
        match target {
            TargetSpec::Path(path) => prepare_file(path, layout, stop, progress)?,
            other => super::aio::prepare(other, layout, conns, stop, progress)?,
        }
    }
    Ok(())
}

fn prepare_file(path: &Path, layout: Layout, stop: &AtomicBool, progress: &Progress) -> Result<(), IoError> {
    let Layout { end, reads, direct } = layout;
    if std::fs::metadata(path).is_ok_and(|m| !m.file_type().is_file()) {
        return Ok(()); // a block device: never resized or laid out
    }
    let target = Target::open(path, &TargetOptions { write: true, direct, create_len: Some(end) })?;
    if !reads || target.allocated_bytes()? >= end {
        return Ok(());
    }
    let block = 1 << 20;
    let mut engine = Engine::new(&target, &RingOptions::default(), 4, block)?;
    let mut fill = FillDriver { end, next: 0, block, stop, progress };
    engine.run(&mut fill)?;
    drop(engine);
    // The last write was rounded up to 4 KiB: give the file back its length.
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(end);
    if len > end {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(end))
            .map_err(|e| IoError::Target { what: "truncate", path: path.to_owned(), err: e })?;
    }
    Ok(())
}

/// Sequential writes of `block` bytes over `0..end`: how a target is laid out.
pub(crate) fn fill_driver<'a>(
    end: u64,
    block: usize,
    stop: &'a AtomicBool,
    progress: &'a Progress,
) -> impl Driver + 'a {
    FillDriver { end, next: 0, block, stop, progress }
}

/// The Ceph clusters a run talks to, one connection per login, made before any job starts and
/// shared by every job of the run.
#[derive(Default)]
pub(crate) struct Connections {
    clusters: BTreeMap<CephLogin, std::sync::Arc<cyvault_store::Cluster>>,
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections").field("logins", &self.clusters.keys().collect::<Vec<_>>()).finish()
    }
}

impl Connections {
    /// Connects (blocking) to every cluster the jobs name.
    pub(crate) fn for_jobs(jobs: &[JobSpec]) -> Result<Connections, IoError> {
        let mut conns = Connections::default();
        for j in jobs {
            let Some(login) = j.target.ceph() else { continue };
            if conns.clusters.contains_key(login) {
                continue;
            }
            // librbd's cache off: a write counts when the OSDs have it (the acknowledged write),
            // not when librbd's writeback cache took it; fio's rbd engine gets the same.
            let config =
                cyvault_store::RadosConfig::new(login.conf.clone(), login.id.clone()).with_option("rbd_cache", "false");
            let cluster = cyvault_store::Cluster::connect_blocking(&config).map_err(|err| IoError::Ceph {
                what: "connect to the cluster of",
                target: j.target.to_string(),
                err,
            })?;
            conns.clusters.insert(login.clone(), cluster);
        }
        Ok(conns)
    }

    pub(crate) fn cluster(&self, target: &TargetSpec) -> Result<&std::sync::Arc<cyvault_store::Cluster>, IoError> {
        target
            .ceph()
            .and_then(|login| self.clusters.get(login))
            .ok_or_else(|| IoError::Invalid(format!("internal: no cluster connection for {target}")))
    }
}

/// Runs one job on the calling thread (the target must exist; see [`prepare_targets`]).
pub fn run_job(spec: &JobSpec, stop: &AtomicBool, progress: &Progress) -> Result<(JobInfo, JobStats), IoError> {
    let halt = AtomicBool::new(false);
    let conns = Connections::for_jobs(std::slice::from_ref(spec))?;
    run_one(spec, Stops { user: stop, halt: &halt }, progress, &conns)
}

fn run_one(
    spec: &JobSpec,
    stops: Stops<'_>,
    progress: &Progress,
    conns: &Connections,
) -> Result<(JobInfo, JobStats), IoError> {
    spec.validate()?;
    let TargetSpec::Path(path) = &spec.target else {
        return super::aio::run_one(spec, stops, progress, conns);
    };
    let opts = TargetOptions { write: spec.rw.writes() || spec.verify, direct: spec.direct, create_len: None };
    let target = Target::open(path, &opts)?;
    let region = spec.region(target.size(), target.is_block_device())?;
    let kind = if target.is_block_device() { TargetKind::BlockDevice } else { TargetKind::File };
    let mut info = spec.info(kind, region);
    let mut engine = Engine::new(&target, &spec.ring, spec.iodepth, spec.block_size)?;
    info.ring = Some(*engine.options());
    let stats = drive(spec, region, stops, progress, &mut |d| engine.run(d))?;
    Ok((info, stats))
}

/// Runs a job's measurement (or its verify pass) through an engine: `run` is the engine's own
/// loop, fed by the job's driver.
pub(crate) fn drive(
    spec: &JobSpec,
    region: (u64, u64),
    stops: Stops<'_>,
    progress: &Progress,
    run: &mut dyn FnMut(&mut dyn Driver) -> Result<super::engine::RunStats, IoError>,
) -> Result<JobStats, IoError> {
    let bs = spec.block_size as u64;
    let blocks = region.1.div_ceil(bs);
    if spec.verify {
        let mut order: Vec<u64> = (0..blocks).collect();
        if spec.rw.is_random() {
            let mut rng = Rng::new(spec.seed);
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let mut stats = JobStats::new();
        let start = Instant::now();
        for kind in [OpKind::Write, OpKind::Read] {
            let mut d = VerifyDriver {
                spec,
                region_start: region.0,
                order: &order,
                pos: 0,
                kind,
                window_start: start,
                stops,
                progress,
                stats: &mut stats,
            };
            run(&mut d)?;
            if stats.stopped_early {
                break;
            }
        }
        stats.measured = start.elapsed();
        return Ok(stats);
    }
    let start = Instant::now();
    let window_start = start + spec.ramp;
    let mut d = MeasureDriver {
        spec,
        region_start: region.0,
        blocks,
        rng: Rng::new(spec.seed),
        cursor: 0,
        issued: 0,
        limit: if spec.runtime.is_some() { None } else { Some(blocks) },
        deadline: spec.runtime.map(|r| window_start + r),
        window_start,
        stops,
        progress,
        stats: JobStats::new(),
    };
    run(&mut d)?;
    let mut stats = d.stats;
    stats.measured = Instant::now().saturating_duration_since(window_start);
    Ok(stats)
}

/// Runs `jobs` in parallel, each on its own thread (with its own ring, or its own librbd /
/// librados client loop), after [`prepare_targets`]. Setting `stop` ends every job cleanly
/// (nothing new is issued, what is in flight completes) and the report still covers what was
/// measured. A job that fails stops the others; the first failure (in job order) is returned.
pub fn run(jobs: &[JobSpec], stop: &AtomicBool, progress: &Progress) -> Result<Report, IoError> {
    if jobs.is_empty() {
        return Err(IoError::Invalid("no jobs".into()));
    }
    for j in jobs {
        j.validate()?;
    }
    let conns = Connections::for_jobs(jobs)?;
    prepare_with(jobs, &conns, stop, progress)?;
    let halt = AtomicBool::new(false);
    let conns = &conns;
    let results: Vec<Result<(JobInfo, JobStats), IoError>> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|spec| {
                let halt = &halt;
                let thread = std::thread::Builder::new().name(format!("io-{}", spec.name));
                let handle = thread.spawn_scoped(s, move || {
                    let r = run_one(spec, Stops { user: stop, halt }, progress, conns);
                    if r.is_err() {
                        halt.store(true, Ordering::Relaxed);
                    }
                    r
                });
                (spec, handle)
            })
            .collect();
        handles
            .into_iter()
            .map(|(spec, h)| match h {
                Ok(h) => h.join().unwrap_or_else(|_| Err(IoError::Panicked(spec.name.clone()))),
                Err(e) => {
                    halt.store(true, Ordering::Relaxed);
                    Err(IoError::Target { what: "spawn a thread for", path: spec.target.as_path_buf(), err: e })
                }
            })
            .collect()
    });
    let mut done = Vec::with_capacity(results.len());
    for r in results {
        done.push(r?);
    }
    Ok(Report::new(done))
}
