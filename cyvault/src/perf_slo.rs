//! `cyvault perf slo --target … --p99 1ms`: the standard NVMe-path profile on one target,
//! phase after phase, judged against a p99 budget; exits 3 when a phase misses it, printing
//! where the time went (submission, queueing, service; device and above it for files and block
//! devices). Usable as a gate in a rollout: `--json` for the verdict and every number.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cyvault_perf::io::{CephLogin, JobSpec, TargetSpec};
use cyvault_perf::s3_bench::parse_size;
use cyvault_perf::slo::{self, DiskStats, PhaseRun};
use cyvault_perf::svg;
use indicatif::ProgressBar;

#[derive(Debug, clap::Args)]
pub struct SloCheck {
    /// What to check: a file or block device, `rbd:POOL/IMAGE` or `rados:POOL/PREFIX` (as for
    /// `cyvault perf io`).
    #[arg(long)]
    target: String,
    /// The budget: every phase's p99 completion latency must be at most this (1ms, 500us,
    /// 2.5ms).
    #[arg(long, value_parser = parse_duration)]
    p99: Duration,
    /// The phases to run: nvme-path (4 KiB random reads and writes at QD1, writes acknowledged
    /// by fdatasync at QD1, reads and writes at QD16).
    #[arg(long, default_value = "nvme-path")]
    profile: String,
    /// Only these phases of the profile (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    phases: Vec<String>,
    /// Seconds measured per phase.
    #[arg(long, default_value_t = 10.0)]
    runtime: f64,
    /// Seconds per phase before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    ramp: f64,
    /// Region to use (default: the whole target; RADOS targets need it).
    #[arg(long, value_parser = parse_size_u64)]
    size: Option<u64>,
    /// Start of the region.
    #[arg(long, default_value = "0", value_parser = parse_size_u64)]
    offset: u64,
    /// Create (and lay out) a file, RBD image or RADOS objects of --size first.
    #[arg(long)]
    create: bool,
    /// The profile writes: on a block device that destroys what is on it. Say so to run there.
    #[arg(long)]
    destroy_data: bool,
    /// ceph.conf of an rbd: or rados: target's cluster.
    #[arg(long, env = "CYVAULT_CEPH_CONF")]
    ceph_conf: Option<String>,
    /// cephx id without `client.`.
    #[arg(long, default_value = "admin", env = "CYVAULT_CEPH_ID")]
    ceph_id: String,
    /// Object size of a rados: target.
    #[arg(long, default_value = "4MiB", value_parser = parse_size_u64)]
    object_size: u64,
    /// Print one JSON document (the verdict and every number) instead of text.
    #[arg(long)]
    json: bool,
    /// Also write slo-cdf.svg (every phase's completion-latency CDF, with the budget) into DIR.
    #[arg(long, value_name = "DIR")]
    svg: Option<PathBuf>,
}

fn parse_size_u64(s: &str) -> Result<u64, String> {
    parse_size(s).map(|n| n as u64)
}

/// `1ms`, `500us`, `2.5ms`, `0.001s`, `750µs`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration: write 1ms, 500us or 2.5ms"))?;
    let secs = match unit.trim() {
        "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        "" => return Err(format!("{s:?} needs a unit: s, ms, us or ns")),
        other => return Err(format!("unknown unit {other:?} in {s:?}: use s, ms, us or ns")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub async fn run(args: SloCheck) -> Result<ExitCode> {
    let login = args.ceph_conf.as_ref().map(|conf| CephLogin { conf: conf.clone(), id: args.ceph_id.clone() });
    let target = TargetSpec::parse(&args.target, login.as_ref(), args.object_size)
        .map_err(|e| anyhow::anyhow!("--target {e}"))?;
    let mut phases = slo::profile(&args.profile).map_err(anyhow::Error::msg)?;
    if !args.phases.is_empty() {
        for p in &args.phases {
            if !phases.iter().any(|q| &q.name == p) {
                let names: Vec<&str> = phases.iter().map(|q| q.name.as_str()).collect();
                bail!(
                    "--phases: {args_profile} has no phase {p:?} (it has {})",
                    names.join(", "),
                    args_profile = args.profile
                );
            }
        }
        phases.retain(|q| args.phases.contains(&q.name));
    }
    if !(args.runtime.is_finite() && args.runtime > 0.0 && args.ramp.is_finite() && args.ramp >= 0.0) {
        bail!("--runtime must be positive and --ramp at least 0");
    }
    if let TargetSpec::Path(p) = &target {
        use std::os::unix::fs::FileTypeExt;
        let block = std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device());
        if block && phases.iter().any(|q| q.rw.writes()) && !args.destroy_data {
            bail!(
                "{} is a block device and the {} profile writes to it, destroying its contents: pass --destroy-data \
                 to confirm, or check a file, an RBD image or --phases with reads only",
                p.display(),
                args.profile
            );
        }
    }
    let mut base = JobSpec::new(target.clone(), cyvault_perf::io::Rw::RandRead);
    base.runtime = Some(Duration::from_secs_f64(args.runtime));
    base.ramp = Duration::from_secs_f64(args.ramp);
    base.size = args.size;
    base.offset = args.offset;
    base.create = args.create;
    for p in &phases {
        p.job(&base).validate()?;
    }
    let device = target.path().and_then(slo::block_device_of);

    let bar = if args.json { ProgressBar::hidden() } else { ProgressBar::new(1000) };
    let stop = Arc::new(AtomicBool::new(false));
    // One Ctrl-C handler for all phases: the first press stops the phase that runs and skips
    // the rest.
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(true);
        }
    });
    let mut runs = Vec::new();
    let mut interrupted = false;
    for (i, phase) in phases.iter().enumerate() {
        let job = phase.job(&base);
        let before = device.as_ref().and_then(|(_, stat)| DiskStats::read(stat).ok());
        let mut rx = rx.clone();
        let interrupt = Box::pin(async move {
            while !*rx.borrow_and_update() {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        });
        let prefix = format!("{}/{} {}: ", i + 1, phases.len(), phase.name);
        let (result, stopped) = crate::perf_io::run_with_progress(vec![job], &bar, &prefix, &stop, interrupt).await?;
        let report = result.with_context(|| format!("phase {} on {}", phase.name, args.target))?;
        let after = device.as_ref().and_then(|(_, stat)| DiskStats::read(stat).ok());
        let disk = before.zip(after).map(|(b, a)| b.delta(&a));
        runs.push(PhaseRun { phase: phase.clone(), report, disk });
        // Files and images are laid out by the first phase; the others find them ready.
        base.create = false;
        if stopped {
            interrupted = true;
            break;
        }
    }
    bar.finish_and_clear();
    let report = slo::evaluate(&target.to_string(), &args.profile, device.map(|(name, _)| name), args.p99, &runs);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    if let Some(dir) = &args.svg {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let mut series: Vec<svg::Series> = runs
            .iter()
            .map(|r| svg::Series::new(r.phase.name.clone(), r.report.aggregate.latency_cdf.clone()))
            .collect();
        // The budget as a vertical line from p0 to the top of the plot.
        series.push(svg::Series::new(
            format!("budget p99 {}", slo::fmt_us(report.budget_p99_us)),
            vec![(report.budget_p99_us, 0.0), (report.budget_p99_us, 0.99), (report.budget_p99_us, 0.9999)],
        ));
        let path = dir.join("slo-cdf.svg");
        let title = format!("{} on {}: completion latency per phase", args.profile, args.target);
        std::fs::write(&path, svg::latency_cdf(&series, &title))
            .with_context(|| format!("write {}", path.display()))?;
        if !args.json {
            println!("wrote {}", path.display());
        }
    }
    Ok(if interrupted {
        ExitCode::from(130)
    } else if report.met {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("2.5ms"), Ok(Duration::from_micros(2500)));
        assert_eq!(parse_duration("750µs"), Ok(Duration::from_micros(750)));
        assert!(parse_duration("1").is_err_and(|e| e.contains("needs a unit")));
        assert!(parse_duration("0ms").is_err());
        assert!(parse_duration("1 fortnight").is_err());
    }
}
