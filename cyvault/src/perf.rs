//! `cyvault perf`: benchmarks with a same-run baseline.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use cyvault_perf::rados_bench::{self, RadosBenchResult, RadosTarget};
use cyvault_perf::store_bench::{self, PhaseReport, StoreBenchConfig};
use indicatif::{ProgressBar, ProgressStyle};

use crate::store_args::{Backend, StoreArgs};

#[derive(Debug, Subcommand)]
pub enum PerfCommand {
    /// Small-object write_full and read ops/s through the storage API; with
    /// `--compare-rados-bench`, next to `rados bench` on the same pool in the same run.
    Store(StoreBench),
}

#[derive(Debug, clap::Args)]
pub struct StoreBench {
    #[command(flatten)]
    store: StoreArgs,
    /// Pool to write to (RADOS: must exist).
    #[arg(long, default_value = "cyvault-bench", env = "CYVAULT_CEPH_BENCH_POOL")]
    pool: String,
    /// Object size in bytes.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Operations in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds per phase (write, then read).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Also run `rados bench` (write, then rand) with the same size and concurrency, and print ratios.
    #[arg(long)]
    compare_rados_bench: bool,
    /// Repeat the whole comparison this many times and report min / median ratios.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Exit non-zero when the median write or read ratio is below this (a rollout gate).
    #[arg(long)]
    min_ratio: Option<f64>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, serde::Serialize)]
struct Round {
    cyvault: Vec<PhaseReport>,
    rados_bench: Option<(RadosBenchResult, RadosBenchResult)>,
    ratio_write: Option<f64>,
    ratio_read: Option<f64>,
}

pub async fn run(cmd: PerfCommand) -> Result<ExitCode> {
    let PerfCommand::Store(args) = cmd;
    if args.compare_rados_bench && args.store.backend != Backend::Rados {
        bail!("--compare-rados-bench needs --backend rados");
    }
    if args.size == 0 || args.concurrency == 0 || args.rounds == 0 {
        bail!("--size, --concurrency and --rounds must be at least 1");
    }
    let store = args.store.open().await?;
    let cfg = StoreBenchConfig {
        pool: args.pool.clone(),
        namespace: format!("cyvault-perf-{}", std::process::id()),
        object_size: args.size,
        concurrency: args.concurrency,
        duration: Duration::from_secs(args.seconds.max(1)),
    };
    let bar = if args.json { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>3} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let tick =
            |phase: &str, n: u64| bar.set_message(format!("round {round}/{}: cyvault {phase}: {n} ops", args.rounds));
        let phases = store_bench::run(store.clone(), &cfg, &tick).await.context("run the storage-API benchmark")?;
        let baseline = if args.compare_rados_bench {
            bar.set_message(format!(
                "round {round}/{}: rados bench write + rand ({} s each)",
                args.rounds,
                cfg.duration.as_secs()
            ));
            let target = RadosTarget {
                conf: args.store.rados_config()?.conf_path,
                id: args.store.ceph_id.clone(),
                pool: args.pool.clone(),
            };
            let (d, size, conc) = (cfg.duration, cfg.object_size, cfg.concurrency);
            let name = format!("cyvault-perf-{}-{round}", std::process::id());
            Some(tokio::task::spawn_blocking(move || rados_bench::run(&target, d, size, conc, &name)).await??)
        } else {
            None
        };
        let ratio = |op: &str, base: Option<&RadosBenchResult>| {
            let ours = phases.iter().find(|p| p.op == op)?;
            base.map(|b| ours.ops_per_sec / b.ops_per_sec)
        };
        let ratio_write = ratio("write_full", baseline.as_ref().map(|b| &b.0));
        let ratio_read = ratio("read", baseline.as_ref().map(|b| &b.1));
        rounds.push(Round { cyvault: phases, rados_bench: baseline, ratio_write, ratio_read });
    }
    bar.finish_and_clear();
    let summary = |f: fn(&Round) -> Option<f64>| {
        let mut v: Vec<f64> = rounds.iter().filter_map(f).collect();
        v.sort_by(f64::total_cmp);
        (v.first().copied(), v.get(v.len() / 2).copied())
    };
    let (min_w, med_w) = summary(|r| r.ratio_write);
    let (min_r, med_r) = summary(|r| r.ratio_read);
    if args.json {
        let doc = serde_json::json!({
            "benchmark": "store", "backend": format!("{:?}", args.store.backend).to_lowercase(), "pool": args.pool,
            "object_size": args.size, "concurrency": args.concurrency, "seconds_per_phase": cfg.duration.as_secs(),
            "rounds": rounds, "ratio_write_min": min_w, "ratio_write_median": med_w,
            "ratio_read_min": min_r, "ratio_read_median": med_r,
        });
        println!("{doc}");
    } else {
        println!(
            "cyvault perf store: {:?} backend, pool {}, {} B objects, concurrency {}, {} s per phase, {} round(s)",
            args.store.backend,
            args.pool,
            args.size,
            args.concurrency,
            cfg.duration.as_secs(),
            args.rounds
        );
        println!(
            "{:<6} {:<22} {:>10} {:>8} {:>9} {:>9} {:>7}",
            "round", "what", "ops/s", "MiB/s", "p50 µs", "p99 µs", "errors"
        );
        for (i, r) in rounds.iter().enumerate() {
            for p in &r.cyvault {
                println!(
                    "{:<6} {:<22} {:>10.0} {:>8.1} {:>9} {:>9} {:>7} {:>11.1}",
                    i + 1,
                    format!("cyvault {}", p.op),
                    p.ops_per_sec,
                    p.mib_per_sec,
                    p.lat_p50_us,
                    p.lat_p99_us,
                    p.errors,
                    p.client_cpu_us_per_op
                );
            }
            if let Some((w, rd)) = &r.rados_bench {
                for b in [w, rd] {
                    println!(
                        "{:<6} {:<22} {:>10.0} {:>8.1} {:>9} {:>9} {:>7}",
                        i + 1,
                        format!("rados bench {}", b.mode),
                        b.ops_per_sec,
                        b.ops_per_sec * args.size as f64 / 1048576.0,
                        format!("avg {:.0}", b.avg_latency_us),
                        "-",
                        "-"
                    );
                }
                println!(
                    "{:<6} ratio write_full/write {:.3}   read/rand {:.3}",
                    i + 1,
                    r.ratio_write.unwrap_or(0.0),
                    r.ratio_read.unwrap_or(0.0)
                );
            }
        }
        if let (Some(mw), Some(dw), Some(mr), Some(dr)) = (min_w, med_w, min_r, med_r) {
            println!(
                "ratio vs rados bench (target >= 0.90): write min {mw:.3} median {dw:.3}; read min {mr:.3} median {dr:.3}"
            );
        }
    }
    if let (Some(gate), Some(dw), Some(dr)) = (args.min_ratio, med_w, med_r)
        && (dw < gate || dr < gate)
    {
        eprintln!("median ratio below {gate}: write {dw:.3}, read {dr:.3}");
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}
