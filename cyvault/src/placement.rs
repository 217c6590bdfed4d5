//! `cyvault placement`: explain a decision, check a topology file, print the CRD.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use cyvault_placement::{Placement, Report, Request, RequestKind, Topology, TopologySpec, parse_size};
use serde::Serialize;

use crate::placement_live::{PoolObservation, Refresher, load_topology};

#[derive(Debug, Subcommand)]
pub enum PlacementCommand {
    /// Decide where a volume or bucket would go and print every candidate with why it won or
    /// lost. Exit status 0 when placed, 2 when refused (the code is printed).
    Explain(ExplainArgs),
    /// Validate a topology file and list every problem with its code (exit status 1 if any).
    Check {
        #[arg(long)]
        topology: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print the PlacementPolicy CRD (deploy/crds/placementpolicy.yaml is this output), or with
    /// --policies-from, the PlacementPolicy objects of a topology file's policies.
    Crd {
        #[arg(long)]
        policies_from: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    Volume,
    Bucket,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Topology file (deploy/placement/cyberun.toml is the Cyberun one).
    #[arg(long)]
    topology: PathBuf,
    /// The cluster the volume or bucket is used from.
    #[arg(long)]
    consumer: String,
    #[arg(long, value_enum)]
    kind: Kind,
    /// Bytes to reserve: 100GiB, 1.5TiB, 500GB, 4096.
    #[arg(long, default_value = "0", value_parser = parse_size)]
    size: u64,
    /// Required device class (overrides the policy's).
    #[arg(long)]
    class: Option<String>,
    /// A policy by name instead of the consumer's default.
    #[arg(long)]
    policy: Option<String>,
    /// Place the request this many times in one batch (each reservation counts against the
    /// next one's headroom); the table shows the last.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Before deciding, refresh capacity (ceph df) and RTTs (probes from this host) of the pools
    /// of --storage-cluster from this ceph.conf.
    #[arg(long, env = "CYVAULT_CEPH_CONF")]
    ceph_conf: Option<String>,
    #[arg(long, env = "CYVAULT_CEPH_ID", default_value = "admin")]
    ceph_id: String,
    /// The topology's name for the cluster --ceph-conf reaches (needed with --ceph-conf).
    #[arg(long)]
    storage_cluster: Option<String>,
    /// Print the decision as JSON (docs/placement.md describes the fields).
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct ExplainJson<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    measured: Vec<PoolObservation>,
    #[serde(flatten)]
    report: &'a Report,
}

pub async fn run(cmd: PlacementCommand) -> Result<ExitCode> {
    match cmd {
        PlacementCommand::Explain(args) => explain(args).await,
        PlacementCommand::Check { topology, json } => check(topology, json),
        PlacementCommand::Crd { policies_from } => crd(policies_from),
    }
}

async fn explain(args: ExplainArgs) -> Result<ExitCode> {
    let topo = load_topology(&args.topology)?;
    let kind = match args.kind {
        Kind::Volume => RequestKind::Volume,
        Kind::Bucket => RequestKind::Bucket,
    };
    let mut req = Request::new(args.consumer.clone(), kind, args.size);
    req.device_class = args.class.clone();
    req.policy = args.policy.clone();

    let topology = Arc::new(RwLock::new(topo));
    let mut measured = Vec::new();
    if args.ceph_conf.is_some() || args.storage_cluster.is_some() {
        let (Some(conf), Some(sc)) = (args.ceph_conf.clone(), args.storage_cluster.clone()) else {
            anyhow::bail!("refreshing from Ceph needs both --ceph-conf and --storage-cluster");
        };
        let config = cyvault_store::RadosConfig::new(conf, args.ceph_id.clone());
        let cluster = cyvault_store::Cluster::connect(&config).await.context("connect to ceph")?;
        let store: cyvault_store::DynStore = Arc::new(cyvault_store::RadosStore::new(cluster.clone()));
        let refresher = Refresher {
            cluster,
            store,
            namespace: String::new(),
            storage_cluster: sc,
            vantage: args.consumer.clone(),
            samples: 20,
            metrics: None,
        };
        measured = refresher.refresh(&topology).await?;
    }
    let topo = topology.read().map_err(|_| anyhow::anyhow!("topology lock poisoned"))?;
    let mut batch = Placement::new(&topo);
    let mut result = batch.choose_pool(&req);
    for _ in 1..args.count.max(1) {
        if result.is_err() {
            break;
        }
        result = batch.choose_pool(&req);
    }
    let report = Report::of(&topo, &result);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &ExplainJson { measured, report: &report })?;
        writeln!(out)?;
    } else {
        for m in &measured {
            match &m.problem {
                Some(p) => writeln!(out, "measured {}: {p}", m.pool)?,
                None => writeln!(
                    out,
                    "measured {}: capacity {}, used {}, RTT p50 {:.2} ms, p99 {:.2} ms",
                    m.pool,
                    cyvault_placement::format_size(m.capacity_bytes.unwrap_or(0)),
                    cyvault_placement::format_size(m.used_bytes.unwrap_or(0)),
                    m.rtt_p50_ms.unwrap_or(0.0),
                    m.rtt_p99_ms.unwrap_or(0.0)
                )?,
            }
        }
        write!(out, "{}", report.render())?;
    }
    out.flush()?;
    Ok(if result.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

#[derive(Serialize)]
struct CheckJson {
    ok: bool,
    sites: usize,
    clusters: usize,
    pools: usize,
    links: usize,
    policies: usize,
    problems: Vec<ProblemJson>,
}

#[derive(Serialize)]
struct ProblemJson {
    code: &'static str,
    subject: String,
    message: String,
}

fn check(path: PathBuf, json: bool) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let result = Topology::from_toml(&text);
    let mut out = std::io::stdout().lock();
    let report = match &result {
        Ok(t) => CheckJson {
            ok: true,
            sites: t.sites().len(),
            clusters: t.clusters().len(),
            pools: t.pools().len(),
            links: t.links().len(),
            policies: t.policies().len(),
            problems: vec![],
        },
        Err(errs) => CheckJson {
            ok: false,
            sites: 0,
            clusters: 0,
            pools: 0,
            links: 0,
            policies: 0,
            problems: errs
                .0
                .iter()
                .map(|e| ProblemJson { code: e.kind.code(), subject: e.subject.clone(), message: e.message.clone() })
                .collect(),
        },
    };
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        match &result {
            Ok(_) => writeln!(
                out,
                "{}: ok ({} sites, {} clusters, {} pools, {} links, {} policies)",
                path.display(),
                report.sites,
                report.clusters,
                report.pools,
                report.links,
                report.policies
            )?,
            Err(errs) => writeln!(out, "{}: {errs}", path.display())?,
        }
    }
    out.flush()?;
    Ok(if result.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn crd(policies_from: Option<PathBuf>) -> Result<ExitCode> {
    let text = match policies_from {
        None => cyvault_placement::crd::crd_yaml(),
        Some(path) => {
            let raw = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
            // Validate the whole file first: objects of a broken topology are not worth printing.
            Topology::from_toml(&raw).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let spec: TopologySpec = toml::from_str(&raw).with_context(|| format!("parse {}", path.display()))?;
            let source = path.display().to_string();
            let regenerate = format!(
                "cargo run -p cyvault -- placement crd --policies-from {source} > deploy/placement/policies.yaml"
            );
            cyvault_placement::crd::policies_yaml_file(&source, &regenerate, &spec.policies)
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
