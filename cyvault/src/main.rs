//! `cyvault`: the one binary of Cyberun Vault.

mod admin;
mod admin_s3;
mod csi;
mod deploy;
mod deploy_validate;
mod gateway;
mod perf;
mod perf_compare;
mod perf_csi;
mod perf_io;
mod perf_list;
mod perf_slo;
mod placement;
mod placement_live;
mod settings;
mod signals;
mod store_args;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Cyberun Vault: S3 gateway, CSI driver and benchmarks on Ceph RADOS/RBD or on one local directory.
#[derive(Debug, Parser)]
#[command(name = "cyvault", version, about, propagate_version = true)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `cyvault_store=debug`); RUST_LOG wins.
    #[arg(long, global = true, default_value = "warn")]
    log: String,

    /// Async runtime worker threads (default: one per core). Completions from librados wake
    /// these; fewer threads mean fewer cross-thread wake-ups on small machines.
    #[arg(long, global = true, env = "CYVAULT_WORKER_THREADS")]
    worker_threads: Option<usize>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve S3 on the local backend (default) or on Ceph RADOS.
    Gateway(Box<gateway::GatewayArgs>),
    /// The Kubernetes CSI plugin (controller and/or node) on a unix socket.
    Csi(Box<csi::CsiArgs>),
    /// Benchmarks that print a ratio against a baseline measured in the same run.
    #[command(subcommand)]
    Perf(perf::PerfCommand),
    /// The placement engine: explain decisions, check topology files, print the CRD.
    #[command(subcommand)]
    Placement(placement::PlacementCommand),
    /// Operator tools: look at and change what is stored.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// deploy/: render the generated manifests and host configs, validate every manifest,
    /// render a node's WireGuard config at deploy time.
    #[command(subcommand)]
    Deploy(deploy::DeployCommand),
}

fn main() -> ExitCode {
    cyvault_store::tune_allocator();
    let cli = Cli::parse();
    // s3s logs every S3 error (NoSuchKey included) at error level; our own spans and metrics
    // cover requests, so it stays quiet unless asked for by name.
    let directives = if cli.log.contains("s3s") { cli.log.clone() } else { format!("{},s3s=off", cli.log) };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&directives))
        .unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.worker_threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Gateway(args) => gateway::run(*args).await,
            Command::Csi(args) => csi::run(*args).await,
            Command::Perf(cmd) => perf::run(cmd).await,
            Command::Admin(cmd) => admin::run(cmd).await,
            Command::Placement(cmd) => placement::run(cmd).await,
            Command::Deploy(cmd) => deploy::run(cmd).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
