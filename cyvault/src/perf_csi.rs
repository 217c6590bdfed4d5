//! `cyvault perf csi`: CreateVolume / DeleteVolume latency through a `cyvault csi` plugin this
//! command starts (from its own binary, in a temp dir, stopped by pid at the end), next to
//! `rbd create`/`rbd rm` and bare librbd on the same pool in the same run. The measuring is
//! `cyvault_perf::csi_bench`; this is the flags and the printing.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cyvault_perf::csi_bench::{self, CsiBenchConfig, CsiBenchReport, CsiTarget, Latency};
use indicatif::{ProgressBar, ProgressStyle};

use crate::store_args::Backend;

#[derive(Debug, clap::Args)]
pub struct CsiBench {
    /// Where the plugin provisions: RBD images (rados) or sparse files in a temp dir (local).
    #[arg(long, value_enum, default_value = "rados")]
    pub backend: Backend,
    /// ceph.conf naming the monitors and the keyring (rados backend).
    #[arg(long, env = "CYVAULT_CEPH_CONF")]
    pub ceph_conf: Option<String>,
    /// Ceph client name without `client.`.
    #[arg(long, default_value = "admin", env = "CYVAULT_CEPH_ID")]
    pub ceph_id: String,
    /// RBD pool of the volumes and the baselines (and of the plugin's journal, in a namespace of
    /// this run's own).
    #[arg(long, default_value = "rbd", env = "CYVAULT_RBD_POOL")]
    pub pool: String,
    /// Volumes created then deleted per subject and round.
    #[arg(long, default_value_t = 50)]
    pub volumes: usize,
    /// Volume size: 1GiB, 512MiB, … (whole MiB).
    #[arg(long, default_value = "1GiB", value_parser = cyvault_perf::s3_bench::parse_size)]
    pub size: usize,
    /// Calls in flight. 1 (the default) is the external-provisioner with one worker: one call at
    /// a time, the subjects taking turns op by op.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Repeat the whole comparison this many times and report min / median ratios.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Exit non-zero (3) when the median create or delete p50 ratio against `rbd` (the CLI; the
    /// sparse file on the local backend) is above this (the target is 1.3).
    #[arg(long)]
    pub max_ratio: Option<f64>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

impl CsiBench {
    fn config(&self) -> Result<CsiBenchConfig> {
        let target = match self.backend {
            Backend::Rados => {
                let Some(conf) = self.ceph_conf.clone() else {
                    bail!("the rados backend needs --ceph-conf (or CYVAULT_CEPH_CONF)")
                };
                CsiTarget::Rados { conf, id: self.ceph_id.clone(), pool: self.pool.clone() }
            }
            Backend::Local => CsiTarget::Local,
        };
        let program = std::env::current_exe().context("find this binary to start `cyvault csi` from")?;
        let cfg = CsiBenchConfig {
            target,
            program,
            volumes: self.volumes,
            size: self.size as u64,
            concurrency: self.concurrency,
            rounds: self.rounds,
            tag: String::new(),
        };
        cfg.check()?;
        Ok(cfg)
    }
}

fn spinner(hidden: bool) -> ProgressBar {
    let bar = if hidden { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>3} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub async fn run(args: CsiBench) -> Result<ExitCode> {
    let cfg = args.config()?;
    let bar = spinner(args.json);
    let progress = |msg: String| bar.set_message(msg);
    let report = csi_bench::run(&cfg, &progress).await;
    bar.finish_and_clear();
    let report = report.context("CSI benchmark")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    let errors = report.errors();
    if errors > 0 {
        eprintln!("{errors} operation(s) failed");
        return Ok(ExitCode::from(3));
    }
    if let Some(max) = args.max_ratio {
        let first = report.summary.first().map(|s| s.baseline.clone()).unwrap_or_default();
        let over: Vec<String> = report
            .summary
            .iter()
            .filter(|s| s.baseline == first && (s.ratio == "create_p50" || s.ratio == "delete_p50") && s.median > max)
            .map(|s| format!("{} vs {} median {:.2}", s.ratio, s.baseline, s.median))
            .collect();
        if !over.is_empty() {
            eprintln!("over --max-ratio {max}: {}", over.join(", "));
            return Ok(ExitCode::from(3));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn row(round: usize, subject: &str, op: &str, l: &Latency) -> String {
    format!(
        "{:<6} {:<12} {:<7} {:>5} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7}",
        round, subject, op, l.ops, l.p50_ms, l.p99_ms, l.mean_ms, l.max_ms, l.errors
    )
}

fn print(r: &CsiBenchReport) {
    println!(
        "cyvault perf csi: {} backend{}, {} volumes of {} MiB, concurrency {} ({}), {} round(s), plugin pid {}",
        r.backend,
        r.pool.as_ref().map(|p| format!(", pool {p}")).unwrap_or_default(),
        r.volumes,
        r.size_bytes >> 20,
        r.concurrency,
        r.schedule,
        r.rounds.len(),
        r.plugin_pid
    );
    for n in &r.notes {
        println!("note: {n}");
    }
    println!(
        "{:<6} {:<12} {:<7} {:>5} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "round", "subject", "op", "ops", "p50 ms", "p99 ms", "mean ms", "max ms", "errors"
    );
    for round in &r.rounds {
        for s in &round.subjects {
            println!("{}", row(round.round, &s.subject, "create", &s.create));
            println!("{}", row(round.round, &s.subject, "delete", &s.delete));
        }
        for ratio in &round.ratios {
            let f = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
            println!(
                "{:<6} csi/{:<9} create p50 {} p99 {}   delete p50 {} p99 {}",
                round.round,
                ratio.baseline,
                f(ratio.create_p50),
                f(ratio.create_p99),
                f(ratio.delete_p50),
                f(ratio.delete_p99)
            );
        }
        for s in
            round.subjects.iter().filter(|s| !s.create.first_errors.is_empty() || !s.delete.first_errors.is_empty())
        {
            for e in s.create.first_errors.iter().chain(&s.delete.first_errors) {
                println!("{:<6} {} error: {e}", round.round, s.subject);
            }
        }
    }
    if !r.summary.is_empty() {
        let target = if r.summary.iter().any(|s| s.baseline == "rbd-cli") { "; target <= 1.3 vs rbd-cli" } else { "" };
        println!("ratios ours/baseline over {} round(s) (lower is better{target}):", r.rounds.len());
        for s in &r.summary {
            println!("  csi/{:<12} {:<10} min {:.2}  median {:.2}", s.baseline, s.ratio, s.min, s.median);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: CsiBench,
    }

    fn parse(args: &[&str]) -> std::result::Result<CsiBench, String> {
        Cli::try_parse_from(std::iter::once("perf-csi").chain(args.iter().copied()))
            .map(|c| c.bench)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn flags_and_defaults() {
        let b = parse(&["--ceph-conf", "/c/ceph.conf"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.backend, Backend::Rados);
        assert_eq!((b.volumes, b.size, b.concurrency, b.rounds), (50, 1 << 30, 1, 1));
        assert!(!b.json && b.max_ratio.is_none());
        let cfg = b.config().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(&cfg.target, CsiTarget::Rados { conf, pool, .. } if conf == "/c/ceph.conf" && !pool.is_empty())
        );

        let b = parse(&[
            "--backend",
            "local",
            "--volumes",
            "7",
            "--size",
            "64MiB",
            "--concurrency",
            "4",
            "--rounds",
            "3",
            "--max-ratio",
            "1.3",
            "--json",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((b.volumes, b.size, b.concurrency, b.rounds, b.json), (7, 64 << 20, 4, 3, true));
        assert_eq!(b.max_ratio, Some(1.3));
        assert_eq!(b.config().map(|c| c.target).ok(), Some(CsiTarget::Local));

        assert!(parse(&["--backend", "nope"]).is_err());
        assert!(parse(&["--size", "12 parsecs"]).is_err());
        let bad = parse(&["--backend", "local", "--size", "1000"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(bad.config().is_err(), "a size that is not whole MiB is refused");
        let none = parse(&["--backend", "local", "--volumes", "0"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(none.config().is_err());
    }
}
