//! `cyvault perf io`: block I/O through io_uring on a file or a block device (fio's vocabulary),
//! with HDR completion-latency percentiles and a per-second series. Ctrl-C stops cleanly, still
//! prints what was measured, and exits 130.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cyvault_perf::io::{CephLogin, JobSpec, Progress, RegionLayout, Report, RingOptions, Rw, TargetSpec};
use cyvault_perf::s3_bench::parse_size;
use cyvault_perf::svg;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, clap::Args)]
pub struct IoBench {
    /// What to run on: a file or block device (io_uring; a file is created or extended only
    /// with --create), `rbd:POOL/IMAGE` (librbd, from user space) or `rados:POOL/PREFIX`
    /// (objects PREFIX.00000000… through librados; needs --size).
    #[arg(long)]
    pub(crate) target: Option<String>,
    /// ceph.conf of the cluster of an rbd: or rados: target.
    #[arg(long, env = "CYVAULT_CEPH_CONF")]
    pub(crate) ceph_conf: Option<String>,
    /// cephx id (without `client.`) for rbd: and rados: targets.
    #[arg(long, default_value = "admin", env = "CYVAULT_CEPH_ID")]
    pub(crate) ceph_id: String,
    /// Object size of a rados: target.
    #[arg(long, default_value = "4MiB", value_parser = parse_size_u64)]
    object_size: u64,
    /// randread | randwrite | read | write | randrw.
    #[arg(long, default_value = "randread")]
    rw: Rw,
    /// Block size: a multiple of 512 (4k, 4KiB, 128k, 1m, 4096).
    #[arg(long, default_value = "4k", value_parser = parse_size)]
    bs: usize,
    /// Operations in flight per job.
    #[arg(long, default_value_t = 1)]
    iodepth: usize,
    /// Region each job uses (256MiB, 1g); default: the whole target from --offset.
    #[arg(long, value_parser = parse_size_u64)]
    size: Option<u64>,
    /// Start of the region (a multiple of 512).
    #[arg(long, default_value = "0", value_parser = parse_size_u64)]
    offset: u64,
    /// Seconds to measure after the ramp, going round the region as often as needed. Without
    /// it the run is size-based: one region's worth of operations.
    #[arg(long)]
    runtime: Option<f64>,
    /// Seconds at the start whose completions are not counted.
    #[arg(long, default_value_t = 0.0)]
    ramp: f64,
    /// Jobs in parallel, each on its own thread and ring, with its own seed.
    #[arg(long, default_value_t = 1)]
    numjobs: usize,
    /// How jobs share the target: `shared` (same region, fio's default) or `split` (job i at
    /// offset + i × size).
    #[arg(long, default_value = "shared")]
    region: RegionLayout,
    /// Percentage of reads with --rw randrw.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    rwmixread: u8,
    /// fio's fsync=1: link an fdatasync to every write; a write's latency is that of the
    /// acknowledged write.
    #[arg(long)]
    fsync: bool,
    /// A kernel thread polls the submission queue (IORING_SETUP_SQPOLL).
    #[arg(long)]
    pub(crate) sqpoll: bool,
    /// Idle milliseconds before the SQPOLL thread sleeps.
    #[arg(long, default_value_t = 1000)]
    sqpoll_idle_ms: u32,
    /// Busy-poll completions (IORING_SETUP_IOPOLL, fio's hipri); needs a device with poll queues.
    #[arg(long)]
    pub(crate) iopoll: bool,
    /// Registered (fixed) buffers (the default).
    #[arg(long = "fixed-bufs", overrides_with = "no_fixed_bufs")]
    fixed_bufs: bool,
    /// Plain buffers instead of registered ones.
    #[arg(long = "no-fixed-bufs", overrides_with = "fixed_bufs")]
    no_fixed_bufs: bool,
    /// Do not register the target's descriptor.
    #[arg(long)]
    no_fixed_files: bool,
    /// Submit after this many new operations (fio's iodepth_batch_submit; 1 by default, as fio:
    /// on the dev VM it beat batching by 10-30 % at 4 KiB QD32); 0: refill every free slot and
    /// submit them all with the enter that waits.
    #[arg(long, default_value_t = 1)]
    submit_batch: u32,
    /// Set up rings without COOP_TASKRUN/SINGLE_ISSUER/DEFER_TASKRUN (fio sets them; so do we
    /// by default).
    #[arg(long)]
    no_defer_taskrun: bool,
    /// Through the page cache instead of O_DIRECT.
    #[arg(long)]
    buffered: bool,
    /// Create the file, or extend it, to --offset + --size (× numjobs with --region split), and
    /// write it out first when a job reads it and it is sparse.
    #[arg(long)]
    pub(crate) create: bool,
    /// Seed of offsets, randrw choices and the verify pattern (job i uses seed + i).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write every block of the region with a pattern, read it back and compare (a correctness
    /// check, not a benchmark: --runtime and --ramp do not apply).
    #[arg(long)]
    pub(crate) verify: bool,
    /// Print one JSON document (schema_version 1) instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write plots into this directory: latency-cdf.svg (completion latency on a nines
    /// scale) and iops.svg (IOPS per second).
    #[arg(long, value_name = "DIR")]
    pub(crate) svg: Option<PathBuf>,
}

impl IoBench {
    pub(crate) fn ceph_login(&self) -> Option<CephLogin> {
        self.ceph_conf.as_ref().map(|conf| CephLogin { conf: conf.clone(), id: self.ceph_id.clone() })
    }

    fn target_spec(&self) -> Result<TargetSpec> {
        let Some(t) = &self.target else {
            bail!("give --target (a file, a block device, rbd:POOL/IMAGE or rados:POOL/PREFIX)")
        };
        TargetSpec::parse(t, self.ceph_login().as_ref(), self.object_size).map_err(|e| anyhow::anyhow!("--target {e}"))
    }
}

fn parse_size_u64(s: &str) -> Result<u64, String> {
    parse_size(s).map(|n| n as u64)
}

fn seconds(what: &str, s: f64) -> Result<Duration> {
    if !(s.is_finite() && s >= 0.0) {
        bail!("--{what} must be a number of seconds ≥ 0");
    }
    Ok(Duration::from_secs_f64(s))
}

pub(crate) fn jobs(args: &IoBench) -> Result<Vec<JobSpec>> {
    let mut j = JobSpec::new(args.target_spec()?, args.rw);
    j.block_size = args.bs;
    j.iodepth = args.iodepth;
    j.size = args.size;
    j.offset = args.offset;
    j.runtime = match args.runtime {
        Some(r) if r > 0.0 => Some(seconds("runtime", r)?),
        Some(_) => bail!("--runtime must be positive"),
        None => None,
    };
    j.ramp = seconds("ramp", args.ramp)?;
    j.rwmixread = args.rwmixread;
    j.fsync = args.fsync;
    j.direct = !args.buffered;
    j.seed = args.seed;
    j.verify = args.verify;
    j.create = args.create;
    j.ring = RingOptions {
        sqpoll: args.sqpoll,
        sqpoll_idle_ms: args.sqpoll_idle_ms,
        iopoll: args.iopoll,
        fixed_bufs: !args.no_fixed_bufs,
        fixed_files: !args.no_fixed_files,
        submit_batch: args.submit_batch,
        defer_taskrun: !args.no_defer_taskrun,
    };
    let jobs = j.replicate(args.numjobs, args.region)?;
    for j in &jobs {
        j.validate()?;
    }
    Ok(jobs)
}

pub async fn run(args: IoBench) -> Result<ExitCode> {
    let jobs = jobs(&args)?;
    let bar = if args.json { ProgressBar::hidden() } else { ProgressBar::new(1000) };
    let stop = Arc::new(AtomicBool::new(false));
    let (result, interrupted) = run_with_progress(jobs, &bar, "", &stop, ctrl_c_once()).await?;
    bar.finish_and_clear();
    let target = args.target.as_deref().unwrap_or_default();
    let report = result.with_context(|| format!("cyvault perf io on {target}"))?;
    if args.json {
        println!("{}", report.to_json()?);
    } else {
        print!("{}", report.to_text());
    }
    if let Some(dir) = &args.svg {
        let written = write_plots(dir, &report, &format!("{} {} on {target}", args.rw, human_bytes(args.bs)))?;
        if !args.json {
            for p in written {
                println!("wrote {}", p.display());
            }
        }
    }
    // 130: the shell's code for "interrupted by SIGINT"; the report above is still complete
    // for what ran.
    Ok(if interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

/// A future that resolves at the first Ctrl-C (or never, if the handler cannot be set up).
pub(crate) fn ctrl_c_once() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
}

/// Runs `jobs` on the blocking pool with `bar` showing live IOPS and MiB/s (and the clock of a
/// timed run, or the bytes of a size-based one), `prefix` before the numbers. When `interrupt`
/// resolves (Ctrl-C) the jobs are told to stop and the report still covers what ran; the flag
/// says so. `stop` is shared so that a caller running several phases stops them all.
pub(crate) async fn run_with_progress(
    jobs: Vec<JobSpec>,
    bar: &ProgressBar,
    prefix: &str,
    stop: &Arc<AtomicBool>,
    interrupt: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
) -> Result<(Result<Report, cyvault_perf::io::IoError>, bool)> {
    let progress = Arc::new(Progress::new());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_position(0);
    bar.enable_steady_tick(Duration::from_millis(120));
    let verify = jobs.iter().any(|j| j.verify);
    let ramp = jobs[0].ramp.as_secs_f64();
    // Time-based: the bar is the clock. Size-based: bytes done of the bytes asked.
    let timed = jobs[0].runtime.map(|r| r + jobs[0].ramp).filter(|_| !verify);
    let per_pass: u64 = jobs.iter().map(|j| j.size.unwrap_or(0)).sum();
    let total_bytes = if verify { 2 * per_pass } else { per_pass };
    let task = {
        let (stop, progress) = (stop.clone(), progress.clone());
        tokio::task::spawn_blocking(move || cyvault_perf::io::run(&jobs, &stop, &progress))
    };
    tokio::pin!(task);
    let mut interrupt = interrupt;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let (mut last_ops, mut last_bytes, mut last_at) = (0u64, 0u64, Instant::now());
    let mut measuring_since: Option<Instant> = None;
    let mut interrupted = stop.load(Ordering::Relaxed);
    let result = loop {
        tokio::select! {
            r = &mut task => break r.context("the I/O jobs' thread")?,
            () = &mut interrupt, if !interrupted => {
                interrupted = true;
                stop.store(true, Ordering::Relaxed);
                bar.set_message("Ctrl-C: stopping, waiting for what is in flight");
            }
            _ = tick.tick() => {
                if interrupted {
                    continue;
                }
                let now = Instant::now();
                let (ops, bytes) = (progress.ops(), progress.bytes());
                if ops == 0 && progress.prefill_bytes() > 0 {
                    bar.set_message(format!("{prefix}laying out the target: {} MiB written", progress.prefill_bytes() >> 20));
                    continue;
                }
                let started = *measuring_since.get_or_insert(now);
                let dt = now.duration_since(last_at).as_secs_f64().max(1e-3);
                let iops = (ops - last_ops) as f64 / dt;
                let mib = (bytes - last_bytes) as f64 / dt / 1048576.0;
                (last_ops, last_bytes, last_at) = (ops, bytes, now);
                let ramping = timed.is_some() && now.duration_since(started).as_secs_f64() < ramp;
                bar.set_message(format!("{prefix}{iops:>9.0} IOPS {mib:>9.1} MiB/s{}", if ramping { " (ramp)" } else { "" }));
                let done = match timed {
                    Some(total) => now.duration_since(started).as_secs_f64() / total.as_secs_f64(),
                    None if total_bytes > 0 => bytes as f64 / total_bytes as f64,
                    None => 0.0,
                };
                bar.set_position((done * 1000.0).min(1000.0) as u64);
            }
        }
    };
    Ok((result, interrupted))
}

/// `4096` → `4KiB`, for titles.
pub(crate) fn human_bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n.is_multiple_of(1 << 20) => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 && n.is_multiple_of(1 << 10) => format!("{}KiB", n >> 10),
        n => format!("{n}B"),
    }
}

/// latency-cdf.svg (one curve per job, and all jobs together when there are several) and
/// iops.svg (IOPS per second) of a report, into `dir` (created when missing).
pub(crate) fn write_plots(dir: &std::path::Path, report: &Report, title: &str) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut cdf: Vec<svg::Series> =
        report.jobs.iter().map(|j| svg::Series::new(j.job.name.clone(), j.measured.latency_cdf.clone())).collect();
    let mut iops: Vec<svg::Series> =
        report.jobs.iter().map(|j| svg::Series::new(j.job.name.clone(), per_second_iops(&j.measured))).collect();
    if report.jobs.len() > 1 {
        cdf.push(svg::Series::new("all jobs", report.aggregate.latency_cdf.clone()));
        iops.push(svg::Series::new("all jobs", per_second_iops(&report.aggregate)));
    }
    let files = [
        (dir.join("latency-cdf.svg"), svg::latency_cdf(&cdf, &format!("Completion latency: {title}"))),
        (dir.join("iops.svg"), svg::timeseries(&iops, &format!("IOPS per second: {title}"), "IOPS")),
    ];
    let mut written = Vec::new();
    for (path, text) in files {
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// (end of the second, IOPS) points, leaving out a last fragment shorter than half a second.
pub(crate) fn per_second_iops(m: &cyvault_perf::io::Measured) -> Vec<(f64, f64)> {
    m.series.iter().filter(|s| s.seconds >= 0.5).map(|s| (s.second as f64 + s.seconds, s.iops)).collect()
}
