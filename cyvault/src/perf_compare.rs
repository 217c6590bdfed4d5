//! `cyvault perf compare-fio [JOB]`: the same jobs through our engine and through fio (its
//! io_uring engine for files and block devices, its rbd engine for RBD images), alternately on
//! the same target in one run; both results and the ratios ours / fio (IOPS: higher is better;
//! completion-latency percentiles: lower is better), min / median over `--repeat` rounds.
//!
//! JOB is a fio job file (every job section is compared in turn); without one, the job comes
//! from the same flags as `cyvault perf io`. Either way both engines run what was understood
//! of it: the fio side is rendered from the parsed job (the command is printed), and a job
//! file option that the two engines would not treat alike is refused.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cyvault_perf::fio::{self, FioJob, FioSummary};
use cyvault_perf::fio_jobfile;
use cyvault_perf::io::{JobSpec, Progress, Report};
use cyvault_perf::svg;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct CompareFio {
    /// A fio job file: each job section is run by both engines (options both treat alike only;
    /// `${VAR}` is read from the environment, as fio does). Without it, the job comes from the
    /// flags below (those of `cyvault perf io`).
    #[arg(value_name = "JOB")]
    job_file: Option<PathBuf>,
    #[command(flatten)]
    io: crate::perf_io::IoBench,
    /// Rounds; each runs every job through both engines, ours first in odd rounds and fio first
    /// in even ones. Ratios are reported as min / median.
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

/// `[min, median]` over the rounds of ours / fio.
#[derive(Debug, Serialize)]
struct Ratios {
    /// ≥ 1: we completed more.
    iops: [f64; 2],
    /// ≤ 1: we were faster.
    p50: [f64; 2],
    p99: [f64; 2],
}

#[derive(Debug, Serialize)]
struct JobComparison {
    name: String,
    job: String,
    fio_command: String,
    rounds: Vec<Round>,
    ratios: Ratios,
}

#[derive(Debug, Serialize)]
struct CompareReport {
    schema_version: u32,
    jobs: Vec<JobComparison>,
}

/// `[min, median]` of a list (median of an even count: the mean of the middle two).
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

/// Both engines' full results of a job's last round.
type LastRound = (Report, FioSummary);

/// One job to compare: our copies of it and fio's rendering of it.
struct Pair {
    name: String,
    ours: Vec<JobSpec>,
    fio: FioJob,
}

fn pairs(args: &CompareFio) -> Result<Vec<Pair>> {
    let Some(path) = &args.job_file else {
        if args.io.verify || args.io.sqpoll || args.io.iopoll {
            bail!("compare-fio compares plain runs: leave out --verify, --sqpoll and --iopoll");
        }
        let ours = crate::perf_io::jobs(&args.io)?;
        if ours[0].runtime.is_none_or(|r| r.subsec_nanos() != 0) {
            bail!("compare-fio needs --runtime in whole seconds (both tools run time-based)");
        }
        let fio = fio_jobfile::from_specs(&ours).map_err(anyhow::Error::msg)?;
        return Ok(vec![Pair { name: ours[0].name.clone(), ours, fio }]);
    };
    if args.io.target.is_some() {
        bail!("give either a job file or --target, not both");
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let jobs = fio_jobfile::parse_job_file(&text, &|v| std::env::var(v).ok())
        .with_context(|| format!("job file {}", path.display()))?;
    let login = args.io.ceph_login();
    jobs.into_iter()
        .map(|mut fio| {
            let mut ours = fio_jobfile::to_specs(&fio, login.as_ref())
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("job [{}] of {}", fio.name, path.display()))?;
            for o in &mut ours {
                o.create = args.io.create;
            }
            if let (Some(r), Some(l)) = (fio.rbd.as_mut(), login.as_ref()) {
                r.conf = Some(l.conf.clone());
            }
            Ok(Pair { name: fio.name.clone(), ours, fio })
        })
        .collect()
}

fn describe(jobs: &[JobSpec]) -> String {
    let j = &jobs[0];
    let mix = if j.rw.as_str() == "randrw" { format!(" rwmixread={}", j.rwmixread) } else { String::new() };
    format!(
        "{}{mix} bs={} iodepth={} numjobs={}{} on {}",
        j.rw,
        j.block_size,
        j.iodepth,
        jobs.len(),
        if j.fsync { " fdatasync=1" } else { "" },
        j.target
    )
}

fn our_side(r: &Report) -> Side {
    let a = &r.aggregate;
    let us = |ns: f64| ns / 1000.0;
    Side {
        iops: a.iops,
        p50_us: us(a.latency.p50_ns as f64),
        p99_us: us(a.latency.p99_ns as f64),
        p999_us: us(a.latency.p999_ns as f64),
        mean_us: us(a.latency.mean_ns),
    }
}

/// Both directions of a mixed job: IOPS add up; latency is that of the busier direction.
fn fio_side(s: &FioSummary) -> Result<Side> {
    let dirs: Vec<&fio::DirSummary> = [s.read.as_ref(), s.write.as_ref()].into_iter().flatten().collect();
    let Some(busiest) = dirs.iter().copied().max_by_key(|d| d.ops) else {
        bail!("fio reported neither reads nor writes")
    };
    Ok(Side {
        iops: dirs.iter().map(|d| d.iops).sum(),
        p50_us: busiest.latency.p50_us,
        p99_us: busiest.latency.p99_us,
        p999_us: busiest.latency.p999_us,
        mean_us: busiest.latency.mean_us,
    })
}

async fn run_ours(jobs: &[JobSpec], stop: &Arc<AtomicBool>) -> Result<Report> {
    let jobs = jobs.to_vec();
    let stop = Arc::clone(stop);
    let progress = Arc::new(Progress::new());
    let report = tokio::task::spawn_blocking(move || cyvault_perf::io::run(&jobs, &stop, &progress))
        .await
        .context("the I/O jobs' thread")??;
    Ok(report)
}

pub async fn run(args: CompareFio) -> Result<ExitCode> {
    let pairs = pairs(&args)?;
    let quiet = args.io.json;
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    // Files and images the jobs create are laid out once, before the first round, so that
    // neither engine pays for it.
    for p in pairs.iter().filter(|p| p.ours.iter().any(|j| j.create)) {
        bar.set_message(format!("laying out {}", p.ours[0].target));
        let (jobs, stop, progress) = (p.ours.clone(), Arc::new(AtomicBool::new(false)), Arc::new(Progress::new()));
        tokio::task::spawn_blocking(move || cyvault_perf::io::prepare_targets(&jobs, &stop, &progress))
            .await
            .context("the I/O jobs' thread")?
            .with_context(|| format!("lay out {}", p.ours[0].target))?;
    }
    let repeat = args.repeat.max(1);
    // Per job: every round's numbers, and the last round's full results (for the plot).
    let mut results: Vec<(Vec<Round>, Option<LastRound>)> = pairs.iter().map(|_| (Vec::new(), None)).collect();
    // Ctrl-C ends the round that runs (our jobs stop, fio is killed); the rounds completed
    // before it are reported and the exit status is 130.
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut interrupted) = tokio::sync::watch::channel(false);
    {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::Relaxed);
                let _ = tx.send(true);
            }
        });
    }
    'rounds: for round in 1..=repeat {
        for (p, (rounds, last)) in pairs.iter().zip(results.iter_mut()) {
            let fio_first = round % 2 == 0;
            let mut ours = None;
            let mut theirs = None;
            for fio_turn in [fio_first, !fio_first] {
                if fio_turn {
                    bar.set_message(format!("round {round}/{repeat}: fio {}", p.name));
                    tokio::select! {
                        s = fio::run(&p.fio) => theirs = Some(s.with_context(|| format!("run {}", p.fio.command_line()))?),
                        _ = interrupted.wait_for(|&i| i) => break 'rounds,
                    }
                } else {
                    bar.set_message(format!("round {round}/{repeat}: ours {}", p.name));
                    let report = run_ours(&p.ours, &stop).await.with_context(|| format!("job {}", p.name))?;
                    if report.stopped_early {
                        break 'rounds;
                    }
                    ours = Some(report);
                }
            }
            let (Some(ours), Some(theirs)) = (ours, theirs) else { bail!("internal: a round ran one side only") };
            let r = Round { ours: our_side(&ours), fio: fio_side(&theirs)? };
            bar.suspend(|| {
                if !quiet {
                    println!(
                        "{} round {round}: ours {:>9.0} IOPS p50 {:>8.1} µs p99 {:>8.1} µs | fio {:>9.0} IOPS p50 {:>8.1} µs p99 {:>8.1} µs",
                        p.name, r.ours.iops, r.ours.p50_us, r.ours.p99_us, r.fio.iops, r.fio.p50_us, r.fio.p99_us
                    );
                }
            });
            rounds.push(r);
            *last = Some((ours, theirs));
        }
    }
    let was_interrupted = stop.load(Ordering::Relaxed);
    if was_interrupted {
        bar.suspend(|| eprintln!("Ctrl-C: stopped; the rounds completed before it are reported"));
    }
    bar.finish_and_clear();

    let mut comparisons = Vec::new();
    for (p, (rounds, last)) in pairs.iter().zip(results) {
        if rounds.is_empty() {
            continue;
        }
        let ratio = |f: fn(&Side) -> f64| min_median(rounds.iter().map(|r| f(&r.ours) / f(&r.fio)).collect());
        let ratios = Ratios { iops: ratio(|s| s.iops), p50: ratio(|s| s.p50_us), p99: ratio(|s| s.p99_us) };
        if let (Some(dir), Some((ours, theirs))) = (&args.io.svg, &last) {
            let path = write_cdf(dir, &p.name, &describe(&p.ours), ours, theirs)?;
            if !quiet {
                println!("wrote {}", path.display());
            }
        }
        comparisons.push(JobComparison {
            name: p.name.clone(),
            job: describe(&p.ours),
            fio_command: p.fio.command_line(),
            rounds,
            ratios,
        });
    }
    let done = if was_interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS };
    if comparisons.is_empty() {
        eprintln!("no round completed: nothing to compare");
        return Ok(done);
    }
    let report = CompareReport { schema_version: 1, jobs: comparisons };
    if quiet {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(done);
    }
    for c in &report.jobs {
        println!("{}: {}", c.name, c.job);
        println!("  fio: {}", c.fio_command);
    }
    let ran = report.jobs.iter().map(|c| c.rounds.len()).max().unwrap_or(0);
    println!("\nours / fio over {ran} round(s), min / median (IOPS: higher is better; latency: lower is better)");
    println!("{:<24} {:>17} {:>17} {:>17}", "job", "IOPS", "p50", "p99");
    for c in &report.jobs {
        let r = &c.ratios;
        let cell = |v: [f64; 2]| format!("{:.3} / {:.3}", v[0], v[1]);
        println!("{:<24} {:>17} {:>17} {:>17}", c.name, cell(r.iops), cell(r.p50), cell(r.p99));
    }
    Ok(done)
}

/// `DIR/<job>-cdf.svg`: our completion-latency CDF and fio's, from the last round.
fn write_cdf(dir: &std::path::Path, name: &str, job: &str, ours: &Report, theirs: &FioSummary) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut series = vec![svg::Series::new("cyvault", ours.aggregate.latency_cdf.clone())];
    for (label, d) in [("fio read", &theirs.read), ("fio write", &theirs.write)] {
        if let Some(d) = d {
            series.push(svg::Series::new(label, svg::fio_cdf_points(&d.latency)));
        }
    }
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let path = dir.join(format!("{safe}-cdf.svg"));
    std::fs::write(&path, svg::latency_cdf(&series, &format!("{name}: {job}, cyvault vs fio")))
        .with_context(|| format!("write {}", path.display()))?;
    Ok(path)
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
