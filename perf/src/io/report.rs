//! What an I/O run measured: counters and HDR latency histograms per job while it runs
//! ([`JobStats`]), and the report made from them ([`Report`]: per job and for all jobs together,
//! as text or as JSON with `schema_version` 1).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::engine::{Completion, OpKind, RingOptions};

/// Version of the JSON report; readers reject versions they do not know.
pub const SCHEMA_VERSION: u32 = 1;

/// Longest latency the histograms hold (larger values are clamped): one hour, in ns.
const HIST_MAX_NS: u64 = 3_600_000_000_000;

/// Significant digits of the histograms: values are exact to 0.1 %.
pub const HIST_SIGFIGS: u8 = 3;

// ---------------------------------------------------------------------------------------------
// Latency
// ---------------------------------------------------------------------------------------------

/// Completion latencies in nanoseconds, in an HDR histogram (1 ns to 1 h, 3 significant digits).
#[derive(Clone)]
pub struct LatencyRecorder {
    hist: Histogram<u64>,
}

impl std::fmt::Debug for LatencyRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyRecorder").field("samples", &self.hist.len()).finish()
    }
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    pub fn new() -> LatencyRecorder {
        let hist = match Histogram::new_with_bounds(1, HIST_MAX_NS, HIST_SIGFIGS) {
            Ok(h) => h,
            // The bounds are constants that hdrhistogram accepts; auto-resizing is the fallback.
            Err(_) => Histogram::new(HIST_SIGFIGS).unwrap_or_else(|_| unreachable!("3 significant digits are valid")),
        };
        LatencyRecorder { hist }
    }

    /// Records one latency in nanoseconds (0 counts as 1 ns; above an hour is clamped).
    pub fn record_ns(&mut self, ns: u64) {
        self.hist.saturating_record(ns.clamp(1, HIST_MAX_NS));
    }

    pub fn record(&mut self, d: Duration) {
        self.record_ns(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: &LatencyRecorder) {
        // Same bounds on both sides, so adding cannot fail; a failure would only drop samples.
        let _ = self.hist.add(&other.hist);
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// The value at quantile `q` (0..=1), in ns: the highest value equivalent (within the
    /// histogram's precision) to the sample at that rank.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.hist.is_empty() { 0 } else { self.hist.value_at_quantile(q) }
    }

    /// The distribution as (µs, fraction of operations at or below) points, finer towards the
    /// tail: what [`crate::svg::latency_cdf`] draws.
    pub fn cdf_points(&self) -> Vec<(f64, f64)> {
        crate::svg::cdf_points(&self.hist, 1000.0)
    }

    pub fn summary(&self) -> LatencySummary {
        if self.hist.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            samples: self.hist.len(),
            min_ns: self.hist.min(),
            mean_ns: self.hist.mean(),
            stdev_ns: self.hist.stdev(),
            p50_ns: self.hist.value_at_quantile(0.50),
            p90_ns: self.hist.value_at_quantile(0.90),
            p99_ns: self.hist.value_at_quantile(0.99),
            p999_ns: self.hist.value_at_quantile(0.999),
            p9999_ns: self.hist.value_at_quantile(0.9999),
            max_ns: self.hist.max(),
        }
    }
}

/// Percentiles of a [`LatencyRecorder`], in nanoseconds (all 0 without samples).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub min_ns: u64,
    pub mean_ns: f64,
    pub stdev_ns: f64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
}

// ---------------------------------------------------------------------------------------------
// What a job counts while it runs
// ---------------------------------------------------------------------------------------------

/// Operations, bytes and latencies of one direction (reads or writes).
#[derive(Clone, Debug, Default)]
pub struct DirectionStats {
    pub ops: u64,
    pub bytes: u64,
    /// Completion latency (fio's `clat`): from submission to the reaped completion.
    pub latency: LatencyRecorder,
    /// Total latency (fio's `lat`): from when the operation was handed over to its completion.
    pub total_latency: LatencyRecorder,
}

impl DirectionStats {
    fn merge(&mut self, o: &DirectionStats) {
        self.ops += o.ops;
        self.bytes += o.bytes;
        self.latency.merge(&o.latency);
        self.total_latency.merge(&o.total_latency);
    }
}

/// Completions in one second of the measured window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecondCounts {
    pub read_ops: u64,
    pub write_ops: u64,
    pub bytes: u64,
}

/// The raw measurements of one job (or of several merged).
#[derive(Clone, Debug, Default)]
pub struct JobStats {
    pub read: DirectionStats,
    pub write: DirectionStats,
    /// Reads that ended short at the end of the target.
    pub short_ops: u64,
    /// Writes acknowledged by a completed fdatasync.
    pub syncs: u64,
    /// Bytes read back and compared in verify mode.
    pub verified_bytes: u64,
    /// Index = whole seconds since the start of the measured window.
    pub series: Vec<SecondCounts>,
    /// Length of the measured window (after the ramp).
    pub measured: Duration,
    /// Stopped by the stop flag (Ctrl-C) before its runtime or size was done.
    pub stopped_early: bool,
}

impl JobStats {
    pub fn new() -> JobStats {
        JobStats::default()
    }

    /// Counts one completion that happened inside the window starting at `window_start`.
    pub fn record(&mut self, c: &Completion, window_start: Instant) {
        let dir = match c.kind {
            OpKind::Read => &mut self.read,
            OpKind::Write => &mut self.write,
        };
        dir.ops += 1;
        dir.bytes += c.done as u64;
        dir.latency.record(c.latency());
        dir.total_latency.record(c.total_latency());
        if c.is_short() {
            self.short_ops += 1;
        }
        if c.synced {
            self.syncs += 1;
        }
        let sec = c.completed.saturating_duration_since(window_start).as_secs() as usize;
        if self.series.len() <= sec {
            self.series.resize(sec + 1, SecondCounts::default());
        }
        let s = &mut self.series[sec];
        match c.kind {
            OpKind::Read => s.read_ops += 1,
            OpKind::Write => s.write_ops += 1,
        }
        s.bytes += c.done as u64;
    }

    /// Adds another job's measurements (for the aggregate): counters and histograms add up,
    /// seconds add up index by index, the window is the longer one.
    pub fn merge(&mut self, o: &JobStats) {
        self.read.merge(&o.read);
        self.write.merge(&o.write);
        self.short_ops += o.short_ops;
        self.syncs += o.syncs;
        self.verified_bytes += o.verified_bytes;
        if self.series.len() < o.series.len() {
            self.series.resize(o.series.len(), SecondCounts::default());
        }
        for (a, b) in self.series.iter_mut().zip(&o.series) {
            a.read_ops += b.read_ops;
            a.write_ops += b.write_ops;
            a.bytes += b.bytes;
        }
        self.measured = self.measured.max(o.measured);
        self.stopped_early |= o.stopped_early;
    }

    pub fn ops(&self) -> u64 {
        self.read.ops + self.write.ops
    }

    pub fn bytes(&self) -> u64 {
        self.read.bytes + self.write.bytes
    }

    /// Reads and writes together.
    pub fn latency(&self) -> LatencyRecorder {
        let mut all = self.read.latency.clone();
        all.merge(&self.write.latency);
        all
    }
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

/// What kind of target a job ran on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A regular file, through io_uring.
    File,
    /// A block device (a loop device counts), through io_uring.
    BlockDevice,
    /// An RBD image, through librbd.
    Rbd,
    /// RADOS objects, through the storage API on librados.
    Rados,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::File => "file",
            TargetKind::BlockDevice => "block device",
            TargetKind::Rbd => "rbd image",
            TargetKind::Rados => "rados objects",
        }
    }
}

/// What a job was asked to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    pub name: String,
    /// A path, `rbd:POOL/IMAGE` or `rados:POOL/PREFIX`.
    pub target: String,
    pub target_kind: TargetKind,
    pub target_is_block_device: bool,
    /// fio's name: randread, randwrite, read, write, randrw.
    pub rw: String,
    /// Percentage of reads (randrw only).
    pub rwmixread: Option<u8>,
    pub block_size: usize,
    pub iodepth: usize,
    /// Every write is followed by an fdatasync and counted when that completes.
    pub fsync: bool,
    pub direct: bool,
    pub region_offset: u64,
    pub region_len: u64,
    pub runtime_s: Option<f64>,
    pub ramp_s: f64,
    pub seed: u64,
    pub verify: bool,
    /// The io_uring setup in effect (files and block devices); `null` for RBD and RADOS.
    pub ring: Option<RingOptions>,
}

/// One direction of a job or of the aggregate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectionReport {
    pub ops: u64,
    pub bytes: u64,
    pub iops: f64,
    pub mib_per_sec: f64,
    /// Completion latency (fio's `clat`).
    pub latency: LatencySummary,
    /// Total latency (fio's `lat`): the completion latency plus the submission.
    pub total_latency: LatencySummary,
}

/// One second of the measured window (the last one may be partial: `seconds` < 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecondSample {
    /// Whole seconds since the end of the ramp.
    pub second: u64,
    pub seconds: f64,
    pub read_ops: u64,
    pub write_ops: u64,
    pub bytes: u64,
    pub iops: f64,
    pub mib_per_sec: f64,
}

/// Counters, rates, latency and time series of one job or of all jobs together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Length of the measured window, after the ramp.
    pub seconds: f64,
    pub ops: u64,
    pub bytes: u64,
    pub iops: f64,
    pub mib_per_sec: f64,
    pub short_ops: u64,
    pub syncs: u64,
    pub verified_bytes: u64,
    /// Completion latency of reads and writes together.
    pub latency: LatencySummary,
    /// The same distribution as `[µs, fraction at or below]` points, finer towards the tail
    /// (for plots: `--svg` draws them).
    pub latency_cdf: Vec<(f64, f64)>,
    pub read: Option<DirectionReport>,
    pub write: Option<DirectionReport>,
    pub series: Vec<SecondSample>,
    pub stopped_early: bool,
}

const MIB: f64 = 1024.0 * 1024.0;

fn rate(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 { n as f64 / seconds } else { 0.0 }
}

impl Measured {
    pub fn from_stats(s: &JobStats) -> Measured {
        let seconds = s.measured.as_secs_f64();
        let all = s.latency();
        let dir = |d: &DirectionStats| {
            (d.ops > 0).then(|| DirectionReport {
                ops: d.ops,
                bytes: d.bytes,
                iops: rate(d.ops, seconds),
                mib_per_sec: rate(d.bytes, seconds) / MIB,
                latency: d.latency.summary(),
                total_latency: d.total_latency.summary(),
            })
        };
        let series = s
            .series
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                // The last second may be partial; completions reaped in the instant the window
                // closed get a 1 ms floor rather than a division by zero.
                let covered = (seconds - i as f64).clamp(1e-3, 1.0);
                (c.read_ops + c.write_ops > 0 || covered >= 1.0).then_some(SecondSample {
                    second: i as u64,
                    seconds: covered,
                    read_ops: c.read_ops,
                    write_ops: c.write_ops,
                    bytes: c.bytes,
                    iops: (c.read_ops + c.write_ops) as f64 / covered,
                    mib_per_sec: c.bytes as f64 / covered / MIB,
                })
            })
            .collect();
        Measured {
            seconds,
            ops: s.ops(),
            bytes: s.bytes(),
            iops: rate(s.ops(), seconds),
            mib_per_sec: rate(s.bytes(), seconds) / MIB,
            short_ops: s.short_ops,
            syncs: s.syncs,
            verified_bytes: s.verified_bytes,
            latency: all.summary(),
            latency_cdf: all.cdf_points(),
            read: dir(&s.read),
            write: dir(&s.write),
            series,
            stopped_early: s.stopped_early,
        }
    }
}

/// One job: what it was asked, what it measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    pub job: JobInfo,
    pub measured: Measured,
}

/// The whole run: `schema_version` 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub jobs: Vec<JobReport>,
    /// All jobs together: counters and histograms added, rates over the longest window.
    pub aggregate: Measured,
    /// Some job was stopped (Ctrl-C) before its runtime or size was done.
    pub stopped_early: bool,
}

impl Report {
    /// Builds the report from each job's description and measurements, in the same order.
    pub fn new(jobs: Vec<(JobInfo, JobStats)>) -> Report {
        let mut all = JobStats::new();
        for (_, s) in &jobs {
            all.merge(s);
        }
        let aggregate = Measured::from_stats(&all);
        let jobs: Vec<JobReport> =
            jobs.into_iter().map(|(job, s)| JobReport { job, measured: Measured::from_stats(&s) }).collect();
        Report { schema_version: SCHEMA_VERSION, stopped_early: aggregate.stopped_early, jobs, aggregate }
    }

    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// Reads a JSON report, refusing schema versions this code does not know.
    pub fn from_json(s: &str) -> Result<Report, String> {
        let v: serde_json::Value = serde_json::from_str(s).map_err(|e| e.to_string())?;
        match v.get("schema_version").and_then(|v| v.as_u64()) {
            Some(n) if n == u64::from(SCHEMA_VERSION) => serde_json::from_value(v).map_err(|e| e.to_string()),
            Some(n) => Err(format!("unknown report schema_version {n} (this build reads {SCHEMA_VERSION})")),
            None => Err("not an I/O report: no schema_version".into()),
        }
    }

    /// A readable summary, fio-like: one block per job, then all jobs, then the per-second IOPS.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for j in &self.jobs {
            let i = &j.job;
            let mix = i.rwmixread.map(|p| format!(" rwmixread={p}")).unwrap_or_default();
            let mut ring = Vec::new();
            let batch;
            match &i.ring {
                Some(r) => {
                    for (on, name) in [
                        (r.sqpoll, "sqpoll"),
                        (r.iopoll, "iopoll"),
                        (r.fixed_bufs, "fixed-bufs"),
                        (r.fixed_files, "fixed-files"),
                    ] {
                        if on {
                            ring.push(name);
                        }
                    }
                    batch = format!("submit-batch={}", r.submit_batch);
                    if r.submit_batch > 0 {
                        ring.push(&batch);
                    }
                    if r.defer_taskrun {
                        ring.push("defer-taskrun");
                    }
                }
                None if i.target_kind == TargetKind::Rbd => ring.push("librbd aio"),
                None => ring.push("librados aio"),
            }
            let _ = writeln!(
                out,
                "{}: rw={}{mix} bs={} iodepth={}{}{} {} on {} ({}, region {}+{}) [{}]",
                i.name,
                i.rw,
                i.block_size,
                i.iodepth,
                if i.fsync { " fsync=1" } else { "" },
                if i.verify { " verify" } else { "" },
                if i.direct { "direct" } else { "buffered" },
                i.target,
                i.target_kind.as_str(),
                i.region_offset,
                i.region_len,
                ring.join(" "),
            );
            write_measured(&mut out, &j.measured);
        }
        if self.jobs.len() > 1 {
            let _ = writeln!(out, "all {} jobs:", self.jobs.len());
            write_measured(&mut out, &self.aggregate);
        }
        // A last second much shorter than a second is too noisy to print as a rate (it is in
        // the JSON with its length).
        let seconds: Vec<&SecondSample> = self.aggregate.series.iter().filter(|s| s.seconds >= 0.5).collect();
        if !seconds.is_empty() {
            let iops: Vec<String> = seconds.iter().map(|s| format!("{:.0}", s.iops)).collect();
            let _ = writeln!(out, "IOPS per second: {}", iops.join(" "));
        }
        if self.stopped_early {
            let _ = writeln!(out, "stopped early: the numbers cover what ran before the stop");
        }
        out
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn write_measured(out: &mut String, m: &Measured) {
    let _ = writeln!(
        out,
        "  {:.2} s: {} ops, {:.1} MiB; IOPS {:.0}, {:.2} MiB/s{}{}{}",
        m.seconds,
        m.ops,
        m.bytes as f64 / MIB,
        m.iops,
        m.mib_per_sec,
        if m.short_ops > 0 { format!("; {} short reads at the end", m.short_ops) } else { String::new() },
        if m.syncs > 0 { format!("; {} fdatasyncs", m.syncs) } else { String::new() },
        if m.verified_bytes > 0 { format!("; {} bytes verified", m.verified_bytes) } else { String::new() },
    );
    for (name, d) in [("read", &m.read), ("write", &m.write)] {
        let Some(d) = d else { continue };
        let l = &d.latency;
        let _ = writeln!(
            out,
            "  {name:<5} IOPS {:>9.0} {:>9.2} MiB/s  clat µs: min {:.1} mean {:.1} p50 {:.1} p90 {:.1} p99 {:.1} \
             p99.9 {:.1} p99.99 {:.1} max {:.1}",
            d.iops,
            d.mib_per_sec,
            us(l.min_ns),
            l.mean_ns / 1000.0,
            us(l.p50_ns),
            us(l.p90_ns),
            us(l.p99_ns),
            us(l.p999_ns),
            us(l.p9999_ns),
            us(l.max_ns),
        );
    }
}
