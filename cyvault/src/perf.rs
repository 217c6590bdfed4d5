//! `cyvault perf`: benchmarks with a same-run baseline.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use cyvault_perf::rados_bench::{self, RadosBenchResult, RadosTarget};
use cyvault_perf::s3_bench::{self, S3BenchConfig, S3BenchReport, WatchedProcess};
use cyvault_perf::store_bench::{self, PhaseReport, StoreBenchConfig};
use indicatif::{ProgressBar, ProgressStyle};

use crate::store_args::{Backend, StoreArgs};

#[derive(Debug, Subcommand)]
pub enum PerfCommand {
    /// Small-object write_full and read ops/s through the storage API; with
    /// `--compare-rados-bench`, next to `rados bench` on the same pool in the same run.
    Store(StoreBench),
    /// S3 PUT, then GET of random written objects, then DELETE of all of them, against any S3
    /// endpoint (ours, radosgw): ops/s, MiB/s, latency percentiles, CPU per op of this client
    /// and of `--watch` processes. `scripts/bench-gateway` runs it next to radosgw and
    /// `rados bench` and prints the ratios.
    S3(S3Bench),
    /// How fast a bucket of many keys lists (sharded index merged in key order, with and
    /// without a delimiter), next to the raw one-object omap listing on the same store.
    List(crate::perf_list::ListBench),
    /// Placement decisions per second on a synthetic federation (10,000 pools × 50 clusters by
    /// default), next to a bare scan of the same pools in the same run.
    Placement(PlacementBench),
    /// CreateVolume and DeleteVolume latency (p50/p99) through a `cyvault csi` plugin it starts,
    /// next to `rbd create`/`rbd rm` and bare librbd on the same pool in the same run.
    Csi(crate::perf_csi::CsiBench),
    /// Block I/O through io_uring on a file or block device, in fio's terms (rw, bs, iodepth,
    /// size, runtime, numjobs, fsync): IOPS, MiB/s, completion-latency percentiles (p50 to
    /// p99.99) and a per-second series; `--json` for one document with `schema_version` 1.
    Io(crate::perf_io::IoBench),
    /// The same jobs (a fio job file, or the flags of `perf io`) through our engine and through
    /// fio (io_uring engine; rbd engine for RBD images), alternately on the same target, with
    /// the ratios ours / fio (min / median over --repeat rounds).
    CompareFio(crate::perf_compare::CompareFio),
    /// The NVMe-path profile on one target against a p99 budget (`--p99 1ms`): exits 3 when a
    /// phase misses it, printing where the time went (submission, queueing, service, device).
    Slo(crate::perf_slo::SloCheck),
}

#[derive(Debug, clap::Args)]
pub struct PlacementBench {
    #[arg(long, default_value_t = 10_000)]
    pools: usize,
    #[arg(long, default_value_t = 50)]
    clusters: usize,
    #[arg(long, default_value_t = 2_000)]
    decisions: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Exit non-zero (3) when the p99 decision takes longer than this many milliseconds.
    #[arg(long)]
    max_p99_ms: Option<f64>,
    #[arg(long)]
    json: bool,
}

fn perf_placement(args: PlacementBench) -> Result<ExitCode> {
    use cyvault_perf::placement_bench::{PlacementBenchConfig, run};
    let cfg =
        PlacementBenchConfig { pools: args.pools, clusters: args.clusters, decisions: args.decisions, seed: args.seed };
    let r = run(&cfg).map_err(|e| anyhow::anyhow!("placement benchmark: {e}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "placement: {} pools, {} clusters, {} links; {} decisions ({} placed, {} refused)",
            r.pools, r.clusters, r.links, r.decisions, r.placed, r.refused
        );
        println!(
            "  decide        {:>9.0} decisions/s  mean {:>7.1} µs  p50 {:>7.1} µs  p99 {:>7.1} µs  max {:>7.1} µs",
            r.decisions_per_sec, r.decision_mean_us, r.decision_p50_us, r.decision_p99_us, r.decision_max_us
        );
        println!(
            "  bare scan     mean {:>7.1} µs (baseline: one pass over the pools, nothing explained)",
            r.scan_mean_us
        );
        println!("  full report   {:>7.1} µs for one decision with every candidate named", r.report_us);
        println!("  ratio decide/scan = {:.2}; p99 = {:.3} of the 1 ms budget", r.ratio_to_scan, r.p99_fraction_of_1ms);
    }
    if let Some(max) = args.max_p99_ms
        && r.decision_p99_us > max * 1000.0
    {
        eprintln!("p99 decision {:.1} µs is over --max-p99-ms {max}", r.decision_p99_us);
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct S3Bench {
    /// The S3 endpoint, `http://HOST:PORT` (requests are path-style, plain HTTP).
    #[arg(long, env = "CYVAULT_BENCH_ENDPOINT")]
    endpoint: String,
    /// Access key id.
    #[arg(long, env = "CYVAULT_BENCH_ACCESS_KEY")]
    access_key: String,
    /// Secret key (prefer the environment variable: command lines are world-readable).
    #[arg(long, env = "CYVAULT_BENCH_SECRET_KEY", hide_env_values = true)]
    secret_key: String,
    /// Bucket to write to; created when missing, left in place afterwards (emptied).
    #[arg(long, default_value = "cyvault-bench")]
    bucket: String,
    /// Region in the signature.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Object size: 4096, 4KiB, 4MiB (binary) or 4KB, 4MB (decimal).
    #[arg(long, default_value = "4KiB", value_parser = s3_bench::parse_size)]
    size: usize,
    /// Requests in flight (one HTTP/1.1 keep-alive connection each).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds of the PUT phase and of the GET phase each.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// A process to report CPU per op and memory of, as NAME=PID (the server, the OSD); repeatable.
    #[arg(long = "watch", value_name = "NAME=PID")]
    watch: Vec<WatchedProcess>,
    /// Name of the system under test in the output.
    #[arg(long, default_value = "s3")]
    label: String,
    /// Exit non-zero (3) when any request failed.
    #[arg(long)]
    fail_on_errors: bool,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Also write s3-latency-cdf.svg (one curve per operation) and s3-ops.svg (requests per
    /// second) into DIR.
    #[arg(long, value_name = "DIR")]
    svg: Option<std::path::PathBuf>,
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
    match cmd {
        PerfCommand::Store(args) => run_store(args).await,
        PerfCommand::S3(args) => run_s3(args).await,
        PerfCommand::List(args) => crate::perf_list::run(args).await,
        PerfCommand::Placement(args) => perf_placement(args),
        PerfCommand::Csi(args) => crate::perf_csi::run(args).await,
        PerfCommand::Io(args) => crate::perf_io::run(args).await,
        PerfCommand::CompareFio(args) => crate::perf_compare::run(args).await,
        PerfCommand::Slo(args) => crate::perf_slo::run(args).await,
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

async fn run_s3(args: S3Bench) -> Result<ExitCode> {
    if args.size == 0 || args.concurrency == 0 {
        bail!("--size and --concurrency must be at least 1");
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        bail!("--seconds must be a positive number");
    }
    let cfg = S3BenchConfig {
        endpoint: args.endpoint.clone(),
        region: args.region.clone(),
        access_key: args.access_key.clone(),
        secret_key: args.secret_key.clone(),
        bucket: args.bucket.clone(),
        object_size: args.size,
        concurrency: args.concurrency,
        duration: Duration::from_secs_f64(args.seconds),
        watch: args.watch.clone(),
        interrupt: Arc::new(AtomicBool::new(false)),
    };
    // The first Ctrl-C ends PUT or GET early and lets DELETE clean up; a second one quits.
    {
        let interrupt = Arc::clone(&cfg.interrupt);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupt.store(true, Ordering::Relaxed);
                eprintln!("Ctrl-C: ending the phase, then deleting what was written (Ctrl-C again to quit now)");
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    }
    let bar = spinner(args.json);
    let tick = |phase: &str, n: u64| bar.set_message(format!("{} {phase}: {n} ops", args.label));
    let report = s3_bench::run(&cfg, &tick).await.with_context(|| format!("benchmark S3 at {}", args.endpoint))?;
    bar.finish_and_clear();
    let errors: u64 = report.phases.iter().map(|p| p.errors).sum();
    if args.json {
        let doc = serde_json::json!({ "benchmark": "s3", "label": args.label, "report": report });
        println!("{doc}");
    } else {
        print_s3(&args.label, &report);
    }
    if let Some(dir) = &args.svg {
        for path in write_s3_plots(dir, &args.label, &report)? {
            if !args.json {
                println!("wrote {}", path.display());
            }
        }
    }
    if args.fail_on_errors && errors > 0 {
        eprintln!("{errors} request(s) failed");
        return Ok(ExitCode::from(3));
    }
    if report.interrupted {
        if !args.json {
            println!("stopped early by Ctrl-C: the numbers cover what ran");
        }
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_s3(label: &str, r: &S3BenchReport) {
    println!(
        "cyvault perf s3: {label} at {}, bucket {}, {} B objects, concurrency {}, {} s per phase",
        r.endpoint, r.bucket, r.object_size, r.concurrency, r.seconds_per_phase
    );
    let watched: Vec<&String> = r.phases.first().map(|p| p.process_cpu_us_per_op.keys().collect()).unwrap_or_default();
    let mut head = format!(
        "{:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>11}",
        "op", "ops", "ops/s", "MiB/s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "errors", "client µs/op"
    );
    for name in &watched {
        head.push_str(&format!(" {:>12}", format!("{name} µs/op")));
    }
    println!("{head}");
    for p in &r.phases {
        let mut line = format!(
            "{:<8} {:>9} {:>9.0} {:>9.1} {:>9} {:>9} {:>9} {:>9} {:>7} {:>11.1}",
            p.op,
            p.ops,
            p.ops_per_sec,
            p.mib_per_sec,
            p.lat_p50_us,
            p.lat_p90_us,
            p.lat_p99_us,
            p.lat_p999_us,
            p.errors,
            p.client_cpu_us_per_op
        );
        for name in &watched {
            line.push_str(&format!(" {:>12.1}", p.process_cpu_us_per_op.get(*name).copied().unwrap_or(0.0)));
        }
        println!("{line}");
    }
    for p in r.phases.iter().filter(|p| !p.first_errors.is_empty()) {
        println!("first {} errors ({} in all):", p.op, p.errors);
        for e in &p.first_errors {
            println!("  {e}");
        }
    }
    for m in &r.processes {
        let mib = |k: Option<u64>| k.map_or_else(|| "?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0));
        println!("{} (pid {}): VmHWM {} MiB, VmRSS {} MiB", m.name, m.pid, mib(m.vm_hwm_kib), mib(m.vm_rss_kib));
    }
}

/// The latency CDF of every phase and the requests per second, as two SVG files in `dir`.
fn write_s3_plots(dir: &std::path::Path, label: &str, r: &S3BenchReport) -> Result<Vec<std::path::PathBuf>> {
    use cyvault_perf::svg::{Series, latency_cdf, timeseries};
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let size = crate::perf_io::human_bytes(r.object_size);
    let cdf: Vec<Series> = r.phases.iter().map(|p| Series::new(p.op.clone(), p.latency_cdf.clone())).collect();
    let ops: Vec<Series> = r
        .phases
        .iter()
        .map(|p| {
            // Each point at the end of its second; a last fragment under half a second is noise.
            let full = p.seconds.floor() as usize;
            let points =
                p.per_second_ops.iter().enumerate().take(full.max(1)).map(|(i, &n)| ((i + 1) as f64, n as f64));
            Series::new(p.op.clone(), points.collect())
        })
        .collect();
    let files = [
        (
            dir.join("s3-latency-cdf.svg"),
            latency_cdf(&cdf, &format!("S3 request latency: {label}, {size} objects, {} in flight", r.concurrency)),
        ),
        (
            dir.join("s3-ops.svg"),
            timeseries(&ops, &format!("S3 requests per second: {label}, {size} objects"), "requests/s"),
        ),
    ];
    let mut written = Vec::new();
    for (path, text) in files {
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

async fn run_store(args: StoreBench) -> Result<ExitCode> {
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
    let bar = spinner(args.json);
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
            "{:<6} {:<22} {:>10} {:>8} {:>9} {:>9} {:>7} {:>11}",
            "round", "what", "ops/s", "MiB/s", "p50 µs", "p99 µs", "errors", "client µs/op"
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
