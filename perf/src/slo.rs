//! The latency SLO check behind `cyvault perf slo`: a standard profile of phases, the verdict
//! against a p99 budget, and where each phase's time went.
//!
//! The split of a phase's latency, from what one run can measure:
//! - **submit**: total latency minus completion latency (the submitting system call; 0 for RBD
//!   and RADOS, whose submission is not separable);
//! - **service**: the completion latency of the same operation unloaded, i.e. in the profile's
//!   queue-depth-1 phase of that kind;
//! - **queueing**: the rest of the completion latency, what the operation waited behind others
//!   (0 at queue depth 1);
//! - and for a file or block device, from the kernel's block-layer accounting
//!   (`/sys/block/<dev>/stat` before and after the phase): **device**, the mean time a request
//!   spent in the block layer and the device, and **above the device**, the rest of the total
//!   latency (io_uring, the file system, waking the thread). The kernel's counters are the
//!   device's: they include every other process's requests during the phase.
//!
//! This module does no I/O except [`DiskStats::read`] and [`block_device_of`]; the split itself
//! is a pure function of the phases' reports.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::io::{JobSpec, LatencySummary, Measured, Report, Rw};

/// Version of the `--json` document of `cyvault perf slo`.
pub const SLO_SCHEMA_VERSION: u32 = 1;

/// One phase of a profile: a job shape, run on the profile's target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    pub rw: Rw,
    pub block_size: usize,
    pub iodepth: usize,
    /// Every write acknowledged by an fdatasync (or an RBD flush).
    pub fsync: bool,
}

/// The standard NVMe-path profile: 4 KiB random I/O, unloaded then loaded, and the latency of
/// an acknowledged write.
pub fn nvme_path() -> Vec<Phase> {
    let p = |name: &str, rw, iodepth, fsync| Phase { name: name.into(), rw, block_size: 4096, iodepth, fsync };
    vec![
        p("read-qd1", Rw::RandRead, 1, false),
        p("write-qd1", Rw::RandWrite, 1, false),
        p("write-sync-qd1", Rw::RandWrite, 1, true),
        p("read-qd16", Rw::RandRead, 16, false),
        p("write-qd16", Rw::RandWrite, 16, false),
    ]
}

/// The named profiles.
pub fn profile(name: &str) -> Result<Vec<Phase>, String> {
    match name {
        "nvme-path" => Ok(nvme_path()),
        other => Err(format!("unknown profile {other:?}: the profiles are nvme-path")),
    }
}

impl Phase {
    /// This phase's job on `base` (target, region, runtime, ramp and creation come from it).
    pub fn job(&self, base: &JobSpec) -> JobSpec {
        let mut j = base.clone();
        j.name = self.name.clone();
        j.rw = self.rw;
        j.block_size = self.block_size;
        j.iodepth = self.iodepth;
        j.fsync = self.fsync;
        j
    }

    fn reads(&self) -> bool {
        self.rw.reads()
    }
}

// ---------------------------------------------------------------------------------------------
// The block layer's own accounting
// ---------------------------------------------------------------------------------------------

/// The counters of `/sys/block/<dev>/stat` this check uses (times in milliseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskStats {
    pub reads: u64,
    pub read_ms: u64,
    pub writes: u64,
    pub write_ms: u64,
    pub flushes: u64,
    pub flush_ms: u64,
}

impl DiskStats {
    /// Parses the fields of a `stat` file (Documentation/block/stat.rst: 1 reads, 4 read ticks,
    /// 5 writes, 8 write ticks, 16 flushes, 17 flush ticks; kernels before 5.5 lack the last two).
    pub fn parse(text: &str) -> Result<DiskStats, String> {
        let f: Vec<u64> = text
            .split_whitespace()
            .map(|w| w.parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("not a block device stat line ({e}): {text:?}"))?;
        if f.len() < 11 {
            return Err(format!("a block device stat line has at least 11 fields, this one {}", f.len()));
        }
        let at = |i: usize| f.get(i).copied().unwrap_or(0);
        Ok(DiskStats {
            reads: at(0),
            read_ms: at(3),
            writes: at(4),
            write_ms: at(7),
            flushes: at(15),
            flush_ms: at(16),
        })
    }

    pub fn read(stat_file: &Path) -> Result<DiskStats, String> {
        let text = std::fs::read_to_string(stat_file).map_err(|e| format!("read {}: {e}", stat_file.display()))?;
        DiskStats::parse(&text)
    }

    /// What happened between `self` (before) and `after`.
    pub fn delta(&self, after: &DiskStats) -> DiskStats {
        DiskStats {
            reads: after.reads.saturating_sub(self.reads),
            read_ms: after.read_ms.saturating_sub(self.read_ms),
            writes: after.writes.saturating_sub(self.writes),
            write_ms: after.write_ms.saturating_sub(self.write_ms),
            flushes: after.flushes.saturating_sub(self.flushes),
            flush_ms: after.flush_ms.saturating_sub(self.flush_ms),
        }
    }
}

/// The block device that serves `path` (itself, when it is one) and its `stat` file: `st_rdev`
/// of a device node, `st_dev` of a file, looked up in `/sys/dev/block/MAJ:MIN`. `None` when
/// the file system has no block device (tmpfs, overlay on nothing, …).
pub fn block_device_of(path: &Path) -> Option<(String, PathBuf)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(path).ok()?;
    let dev = if meta.file_type().is_block_device() { meta.rdev() } else { meta.dev() };
    // glibc's gnu_dev_major/minor.
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let stat = sys.join("stat");
    if !stat.is_file() {
        return None;
    }
    let name = std::fs::canonicalize(&sys).ok()?.file_name()?.to_string_lossy().into_owned();
    Some((name, stat))
}

// ---------------------------------------------------------------------------------------------
// The verdict and the split
// ---------------------------------------------------------------------------------------------

/// Where the mean and the p99 of one phase went, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// In the submitting system call (total minus completion latency).
    pub submit_us: f64,
    /// The unloaded completion latency of this kind of operation (its QD1 phase).
    pub service_us: f64,
    /// Waiting behind other operations: completion latency minus service, at least 0.
    pub queueing_us: f64,
    /// The p99 of the unloaded phase, and what the p99 adds on top of it.
    pub p99_service_us: f64,
    pub p99_queueing_us: f64,
    /// Mean block-layer + device time per request (`/sys/block/<dev>/stat`; for an fsync
    /// phase a write request plus a flush request); `None` without a block device under the
    /// target. The counters cover every request the device served during the phase, other
    /// processes' included.
    pub device_us: Option<f64>,
    /// Total latency above the block layer: io_uring, the file system, the wake-up.
    pub above_device_us: Option<f64>,
}

/// One phase's numbers and verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseResult {
    pub phase: Phase,
    pub iops: f64,
    pub mib_per_sec: f64,
    pub ops: u64,
    /// Completion latency (fio's clat), in ns.
    pub latency: LatencySummary,
    /// Mean total latency (fio's lat), in ns.
    pub total_mean_ns: f64,
    pub within_budget: bool,
    pub breakdown: Breakdown,
    /// The block layer's counters over the phase, when there is a block device.
    pub disk: Option<DiskStats>,
}

/// The whole check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SloReport {
    pub schema_version: u32,
    pub target: String,
    pub profile: String,
    /// The block device under the target, when there is one.
    pub block_device: Option<String>,
    pub budget_p99_us: f64,
    pub phases: Vec<PhaseResult>,
    /// Every phase's p99 is within the budget.
    pub met: bool,
    /// One sentence per phase over budget: how far, and what most of its time was.
    pub findings: Vec<String>,
    pub stopped_early: bool,
}

/// A phase as run: its report and the block layer's counters over it.
#[derive(Clone, Debug)]
pub struct PhaseRun {
    pub phase: Phase,
    pub report: Report,
    pub disk: Option<DiskStats>,
}

fn us(ns: f64) -> f64 {
    ns / 1000.0
}

/// Judges the runs against `budget` and splits their latency (see the module docs).
pub fn evaluate(
    target: &str,
    profile: &str,
    block_device: Option<String>,
    budget: Duration,
    runs: &[PhaseRun],
) -> SloReport {
    let budget_us = budget.as_secs_f64() * 1e6;
    // The unloaded latency of each kind: the QD1 phase without fsync (reads, writes), or the
    // QD1 fsync phase for fsync writes.
    let unloaded = |reads: bool, fsync: bool| -> Option<&Measured> {
        runs.iter()
            .find(|r| r.phase.iodepth == 1 && r.phase.reads() == reads && r.phase.fsync == fsync)
            .map(|r| &r.report.aggregate)
    };
    let mut phases = Vec::new();
    let mut findings = Vec::new();
    for run in runs {
        let m = &run.report.aggregate;
        let (total_mean, clat_mean) = total_and_clat_mean(m);
        let base = unloaded(run.phase.reads(), run.phase.fsync);
        let (service, service_p99) = match (run.phase.iodepth, base) {
            (1, _) | (_, None) => (clat_mean, us(m.latency.p99_ns as f64)),
            (_, Some(b)) => (us(b.latency.mean_ns), us(b.latency.p99_ns as f64)),
        };
        let p99 = us(m.latency.p99_ns as f64);
        let (device_us, above_device_us) = match &run.disk {
            Some(d) => {
                let per = |n: u64, ms: u64| (n > 0).then(|| ms as f64 * 1000.0 / n as f64);
                let dev = if run.phase.reads() {
                    per(d.reads, d.read_ms)
                } else if run.phase.fsync {
                    // An acknowledged write is a write request and a flush request.
                    per(d.writes, d.write_ms).map(|w| w + per(d.flushes, d.flush_ms).unwrap_or(0.0))
                } else {
                    per(d.writes, d.write_ms)
                };
                // The block layer's clock starts while the request is being submitted, so the
                // rest is measured against the total latency, not the completion latency.
                (dev, dev.map(|dev| (total_mean - dev).max(0.0)))
            }
            None => (None, None),
        };
        let breakdown = Breakdown {
            submit_us: (total_mean - clat_mean).max(0.0),
            service_us: service.min(clat_mean),
            queueing_us: (clat_mean - service).max(0.0),
            p99_service_us: service_p99.min(p99),
            p99_queueing_us: (p99 - service_p99).max(0.0),
            device_us,
            above_device_us,
        };
        let within = m.latency.samples > 0 && p99 <= budget_us;
        if !within {
            findings.push(finding(&run.phase, m, p99, budget_us, &breakdown));
        }
        phases.push(PhaseResult {
            phase: run.phase.clone(),
            iops: m.iops,
            mib_per_sec: m.mib_per_sec,
            ops: m.ops,
            latency: m.latency,
            total_mean_ns: total_mean * 1000.0,
            within_budget: within,
            breakdown,
            disk: run.disk,
        });
    }
    SloReport {
        schema_version: SLO_SCHEMA_VERSION,
        target: target.into(),
        profile: profile.into(),
        block_device,
        budget_p99_us: budget_us,
        met: findings.is_empty() && !phases.is_empty(),
        findings,
        stopped_early: runs.iter().any(|r| r.report.stopped_early),
        phases,
    }
}

/// (mean total latency, mean completion latency) in µs over both directions.
fn total_and_clat_mean(m: &Measured) -> (f64, f64) {
    let mut ops = 0u64;
    let (mut total, mut clat) = (0.0, 0.0);
    for d in [&m.read, &m.write].into_iter().flatten() {
        ops += d.ops;
        total += d.total_latency.mean_ns * d.ops as f64;
        clat += d.latency.mean_ns * d.ops as f64;
    }
    if ops == 0 {
        return (0.0, 0.0);
    }
    (us(total / ops as f64), us(clat / ops as f64))
}

fn finding(phase: &Phase, m: &Measured, p99: f64, budget: f64, b: &Breakdown) -> String {
    if m.latency.samples == 0 {
        return format!("{}: no operation completed", phase.name);
    }
    let over = p99 - budget;
    let cause = if phase.iodepth > 1 && b.p99_queueing_us > b.p99_service_us {
        format!(
            "queueing: {} of its p99 is waiting behind the other {} operations in flight (unloaded, the p99 is {}); \
             at this depth the path serves about {:.0} IOPS: a lower queue depth (or more devices) shortens the wait",
            fmt_us(b.p99_queueing_us),
            phase.iodepth - 1,
            fmt_us(b.p99_service_us),
            m.iops
        )
    } else {
        match b.device_us {
            Some(dev) if dev >= b.above_device_us.unwrap_or(0.0) => format!(
                "the device: a request spends {} on average in the block layer and the device, of {} in all",
                fmt_us(dev),
                fmt_us(b.service_us + b.queueing_us)
            ),
            Some(dev) => format!(
                "software above the device: {} of the mean {} is above the block layer (the device takes {})",
                fmt_us(b.above_device_us.unwrap_or(0.0)),
                fmt_us(b.service_us + b.queueing_us),
                fmt_us(dev)
            ),
            None => format!(
                "the service itself: unloaded, this operation already takes {} at p99 (a slow device, network or OSD)",
                fmt_us(b.p99_service_us)
            ),
        }
    };
    format!(
        "{}: p99 {} is {} over the {} budget; most of it is {cause}",
        phase.name,
        fmt_us(p99),
        fmt_us(over),
        fmt_us(budget)
    )
}

/// `850 µs`, `1.25 ms`, `2.0 s`.
pub fn fmt_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

impl SloReport {
    /// The table, the verdict and the findings.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let dev = self.block_device.as_deref().map(|d| format!(" (block device {d})")).unwrap_or_default();
        let _ = writeln!(
            out,
            "SLO check: profile {} on {}{dev}, budget p99 ≤ {}",
            self.profile,
            self.target,
            fmt_us(self.budget_p99_us)
        );
        let _ = writeln!(
            out,
            "{:<15} {:>9} {:>10} {:>10} {:>10}  {:<6} mean split: submit | queueing | service{}",
            "phase",
            "IOPS",
            "p50",
            "p99",
            "p99.9",
            "",
            if self.block_device.is_some() { " (device + above it)" } else { "" }
        );
        for p in &self.phases {
            let l = &p.latency;
            let b = &p.breakdown;
            let device = match (b.device_us, b.above_device_us) {
                (Some(d), Some(a)) => format!(" ({} + {})", fmt_us(d), fmt_us(a)),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "{:<15} {:>9.0} {:>10} {:>10} {:>10}  {:<6} {} | {} | {}{device}",
                p.phase.name,
                p.iops,
                fmt_us(us(l.p50_ns as f64)),
                fmt_us(us(l.p99_ns as f64)),
                fmt_us(us(l.p999_ns as f64)),
                if p.within_budget { "ok" } else { "MISSED" },
                fmt_us(b.submit_us),
                fmt_us(b.queueing_us),
                fmt_us(b.service_us),
            );
        }
        if self.met {
            let _ = writeln!(out, "met: every phase's p99 is within {}", fmt_us(self.budget_p99_us));
        } else {
            let _ = writeln!(out, "MISSED: {} of {} phases over budget", self.findings.len(), self.phases.len());
            for f in &self.findings {
                let _ = writeln!(out, "  - {f}");
            }
        }
        if self.stopped_early {
            let _ = writeln!(out, "stopped early: the numbers cover what ran before the stop");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diskstats_parse_and_delta() {
        let a = DiskStats::parse("37846367 12921 332490370 4434745 494670 119739 70163371 507417 0 253196 4955063 29033 127 14910040 7626 70480 5274")
            .unwrap_or_default();
        assert_eq!(
            a,
            DiskStats {
                reads: 37846367,
                read_ms: 4434745,
                writes: 494670,
                write_ms: 507417,
                flushes: 70480,
                flush_ms: 5274
            }
        );
        let old = DiskStats::parse("100 0 0 50 10 0 0 20 0 0 0").unwrap_or_default();
        assert_eq!(old.flushes, 0, "kernels before 5.5 have no flush fields");
        assert_eq!(old.delta(&a).reads, 37846267);
        assert!(DiskStats::parse("1 2 3").is_err());
        assert!(DiskStats::parse("a b c d e f g h i j k").is_err());
    }

    #[test]
    fn formats_times() {
        assert_eq!(fmt_us(850.0), "850.0 µs");
        assert_eq!(fmt_us(1250.0), "1.25 ms");
        assert_eq!(fmt_us(2.5e6), "2.50 s");
    }
}
