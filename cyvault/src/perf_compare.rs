//! `cyvault perf compare-fio`: the same job through our io_uring engine and through fio's
//! io_uring engine, alternately, on the same target in one run; both results and the ratios
//! ours / fio (IOPS: higher is better; completion-latency percentiles: lower is better), with
//! min / median over `--repeat` rounds.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use cyvault_perf::fio::{self, FioJob};
use cyvault_perf::io::Progress;
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct CompareFio {
    #[command(flatten)]
    io: crate::perf_io::IoBench,
    /// Rounds (ours then fio each round); ratios are reported as min / median.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

/// One side of one round: what the comparison looks at.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Side {
    pub iops: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub mean_us: f64,
}

#[derive(Debug, Serialize)]
struct Round {
    ours: Side,
    fio: Side,
}

#[derive(Debug, Serialize)]
struct Ratios {
    /// ours / fio; ≥ 1 means we did more.
    iops: [f64; 2],
    /// ours / fio; ≤ 1 means we were faster.
    p50: [f64; 2],
    p99: [f64; 2],
}

#[derive(Debug, Serialize)]
struct CompareReport {
    schema_version: u32,
    job: String,
    fio_command: String,
    rounds: Vec<Round>,
    /// [min, median] over rounds.
    ratios: Ratios,
}

/// [min, median] of a list (median of an even count: the mean of the middle two).
pub fn min_median(mut v: Vec<f64>) -> [f64; 2] {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return [f64::NAN, f64::NAN];
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    [v[0], median]
}

pub async fn run(args: CompareFio) -> Result<ExitCode> {
    let jobs = crate::perf_io::jobs(&args.io)?;
    let j = &jobs[0];
    if args.io.verify || args.io.sqpoll || args.io.iopoll {
        bail!("compare-fio compares plain runs: leave out --verify, --sqpoll and --iopoll");
    }
    let Some(runtime) = j.runtime else { bail!("compare-fio needs --runtime (both tools run time-based)") };
    let mut f = FioJob::new("compare", j.target.display().to_string(), j.rw);
    f.bs = j.block_size as u64;
    f.iodepth = j.iodepth as u32;
    f.size = j.size;
    f.runtime_secs = Some(runtime.as_secs().max(1));
    f.ramp_secs = (j.ramp.as_secs() > 0).then_some(j.ramp.as_secs());
    f.numjobs = jobs.len() as u32;
    f.direct = j.direct;
    f.fsync = j.fsync;
    f.rwmixread = (j.rw.as_str() == "randrw").then_some(j.rwmixread);
    f.uring.fixedbufs = j.ring.fixed_bufs;
    f.uring.registerfiles = j.ring.fixed_files;
    f.extra.push(("iodepth_batch_submit".into(), j.ring.submit_batch.max(1).to_string()));
    let fio_command = f.command_line();

    let mut rounds = Vec::new();
    for round in 1..=args.repeat.max(1) {
        let ours = {
            let jobs = jobs.clone();
            let stop = Arc::new(AtomicBool::new(false));
            let progress = Arc::new(Progress::new());
            let report = tokio::task::spawn_blocking(move || cyvault_perf::io::run(&jobs, &stop, &progress))
                .await
                .context("the I/O jobs' thread")??;
            let a = &report.aggregate;
            let ns = |v: f64| v / 1000.0;
            Side {
                iops: a.iops,
                p50_us: ns(a.latency.p50_ns as f64),
                p99_us: ns(a.latency.p99_ns as f64),
                p999_us: ns(a.latency.p999_ns as f64),
                mean_us: ns(a.latency.mean_ns),
            }
        };
        let theirs = fio::run(&f).await.with_context(|| format!("run {fio_command}"))?;
        let dirs: Vec<&fio::DirSummary> = [theirs.read.as_ref(), theirs.write.as_ref()].into_iter().flatten().collect();
        let Some(first) = dirs.first() else { bail!("fio reported neither reads nor writes") };
        // Both directions of a mixed job: IOPS add up; latency is that of the busier direction.
        let busiest = dirs.iter().max_by(|a, b| a.ops.cmp(&b.ops)).unwrap_or(first);
        let fio_side = Side {
            iops: dirs.iter().map(|d| d.iops).sum(),
            p50_us: busiest.latency.p50_us,
            p99_us: busiest.latency.p99_us,
            p999_us: busiest.latency.p999_us,
            mean_us: busiest.latency.mean_us,
        };
        if !args.io.json {
            println!(
                "round {round}: ours {:>9.0} IOPS p50 {:>8.1} µs p99 {:>8.1} µs | fio {:>9.0} IOPS p50 {:>8.1} µs p99 {:>8.1} µs",
                ours.iops, ours.p50_us, ours.p99_us, fio_side.iops, fio_side.p50_us, fio_side.p99_us
            );
        }
        rounds.push(Round { ours, fio: fio_side });
    }
    let ratio = |f: fn(&Side) -> f64| min_median(rounds.iter().map(|r| f(&r.ours) / f(&r.fio)).collect());
    let ratios = Ratios { iops: ratio(|s| s.iops), p50: ratio(|s| s.p50_us), p99: ratio(|s| s.p99_us) };
    let report = CompareReport {
        schema_version: 1,
        job: format!(
            "{} bs={} iodepth={} numjobs={} on {}",
            j.rw,
            j.block_size,
            j.iodepth,
            jobs.len(),
            j.target.display()
        ),
        fio_command,
        rounds,
        ratios,
    };
    if args.io.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("fio: {}", report.fio_command);
        let r = &report.ratios;
        println!(
            "ours / fio over {} rounds (min / median): IOPS {:.3} / {:.3} (higher is better); \
             p50 {:.3} / {:.3}, p99 {:.3} / {:.3} (lower is better)",
            report.rounds.len(),
            r.iops[0],
            r.iops[1],
            r.p50[0],
            r.p50[1],
            r.p99[0],
            r.p99[1]
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_and_median() {
        assert_eq!(min_median(vec![3.0, 1.0, 2.0]), [1.0, 2.0]);
        assert_eq!(min_median(vec![4.0, 1.0, 2.0, 3.0]), [1.0, 2.5]);
        assert_eq!(min_median(vec![f64::NAN, 2.0]), [2.0, 2.0]);
        assert!(min_median(vec![]).iter().all(|x| x.is_nan()));
    }
}
