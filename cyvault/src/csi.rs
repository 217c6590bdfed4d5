//! `cyvault csi`: the CSI plugin on a unix socket.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use cyvault_csi::driver::{Backing, Driver, Mode, NodeSettings};
use cyvault_csi::placement::VolumePlacement;
use cyvault_csi::volumes::{FileVolumes, RbdVolumes, Volumes};
use cyvault_store::{Cluster, DynStore, RadosConfig, RadosStore};
use tracing::info;

use crate::placement_live::load_topology;
use crate::store_args::{Backend, open_local};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    Controller,
    Node,
    All,
}

#[derive(Debug, Args)]
pub struct CsiArgs {
    /// The CSI socket: unix:///path/csi.sock (a stale socket file is replaced).
    #[arg(long, env = "CSI_ENDPOINT")]
    endpoint: String,
    /// This node's name (the Kubernetes Node name).
    #[arg(long, env = "NODE_ID")]
    node_id: String,
    /// Which services to serve: the controller (one per cluster), the node plugin (one per node)
    /// or both.
    #[arg(long, value_enum, default_value = "all")]
    mode: ModeArg,
    #[arg(long, value_enum, default_value = "local", env = "CYVAULT_BACKEND")]
    backend: Backend,
    /// Local backend: volumes are sparse files under DIR/csi, attached through loop devices.
    #[arg(long, default_value = "./cyvault-data", env = "CYVAULT_DATA_DIR")]
    data_dir: PathBuf,
    #[arg(long, env = "CYVAULT_CEPH_CONF")]
    ceph_conf: Option<String>,
    #[arg(long, default_value = "admin", env = "CYVAULT_CEPH_ID")]
    ceph_id: String,
    /// Pool of volumes when no placement topology is given, and of the journal (rados).
    #[arg(long, default_value = "rbd")]
    pool: String,
    /// RADOS namespace of the journal objects.
    #[arg(long, default_value = "cyvault-csi")]
    journal_namespace: String,
    /// Where the node plugin records what it staged, and its FUSE mount points.
    #[arg(long, default_value = "/var/lib/cyvault/csi")]
    state_dir: PathBuf,
    /// Most volumes this node attaches (NodeGetInfo).
    #[arg(long, default_value_t = 64)]
    max_volumes: i64,
    /// This node's topology segments, KEY=VALUE; repeatable (e.g.
    /// topology.cyvault.io/cluster=destroyer).
    #[arg(long = "node-topology", value_name = "KEY=VALUE")]
    node_topology: Vec<String>,
    /// Read this node's topology from the labels of its Kubernetes Node (in-cluster config, or
    /// --kubeconfig); merged over --node-topology.
    #[arg(long)]
    node_topology_from_labels: bool,
    /// kubeconfig for --node-topology-from-labels (default: in-cluster, else KUBECONFIG).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Placement topology file: CreateVolume's pool is chosen by the engine.
    #[arg(long)]
    placement_topology: Option<PathBuf>,
    /// The consumer cluster of requests without topology requirements.
    #[arg(long)]
    placement_consumer: Option<String>,
    /// The topology's name for the Ceph cluster this driver provisions on.
    #[arg(long)]
    placement_cluster: Option<String>,
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
    }
}

pub async fn run(args: CsiArgs) -> Result<ExitCode> {
    let mode = match args.mode {
        ModeArg::Controller => Mode::Controller,
        ModeArg::Node => Mode::Node,
        ModeArg::All => Mode::All,
    };
    let path = cyvault_csi::server::socket_path(&args.endpoint).map_err(|e| anyhow::anyhow!("--endpoint: {e}"))?;
    let mut topology = HashMap::new();
    for kv in &args.node_topology {
        let Some((k, v)) = kv.split_once('=') else { bail!("--node-topology {kv:?}: use KEY=VALUE") };
        topology.insert(k.to_owned(), v.to_owned());
    }
    if args.node_topology_from_labels {
        let labels = cyvault_csi::k8s::node_topology(&args.node_id, args.kubeconfig.as_deref())
            .await
            .map_err(|e| anyhow::anyhow!("--node-topology-from-labels: {e}"))?;
        info!(node = %args.node_id, ?labels, "topology from the Node's labels");
        topology.extend(labels);
    }
    let placement = match &args.placement_topology {
        None => None,
        Some(file) => {
            let topo = load_topology(file)?;
            let consumer =
                args.placement_consumer.clone().or_else(|| topology.get(cyvault_csi::placement::CLUSTER_KEY).cloned());
            let Some(consumer) = consumer else { bail!("--placement-topology needs --placement-consumer") };
            if topo.cluster(&consumer).is_none() {
                bail!("placement consumer {consumer:?} is not a cluster of {}", file.display());
            }
            Some(VolumePlacement {
                topology: Arc::new(RwLock::new(topo)),
                default_consumer: consumer,
                storage_cluster: args.placement_cluster.clone(),
            })
        }
    };
    let (volumes, journal, journal_pool, backing): (Arc<dyn Volumes>, DynStore, String, Backing) = match args.backend {
        Backend::Local => {
            let root = args.data_dir.join("csi");
            let files = FileVolumes::new(&root);
            let journal_dir = if mode.controller() {
                root.join("journal")
            } else {
                root.join(format!("journal-node-{}", args.node_id))
            };
            let journal = open_local(&journal_dir).await?;
            (Arc::new(files.clone()), journal, "csi".into(), Backing::Files(files))
        }
        Backend::Rados => {
            let Some(conf) = args.ceph_conf.clone() else {
                bail!("the rados backend needs --ceph-conf (or CYVAULT_CEPH_CONF)")
            };
            let config = RadosConfig::new(conf.clone(), args.ceph_id.clone());
            let cluster = Cluster::connect(&config)
                .await
                .with_context(|| format!("connect to ceph with {conf} as client.{}", args.ceph_id))?;
            let store = Arc::new(RadosStore::new(cluster.clone()));
            (
                Arc::new(RbdVolumes::new(cluster.clone(), store.clone())),
                store.clone(),
                args.pool.clone(),
                Backing::Rados { cluster, store, ceph_conf: conf, ceph_id: args.ceph_id.clone() },
            )
        }
    };
    let node = NodeSettings {
        node_id: args.node_id.clone(),
        state_dir: args.state_dir.clone(),
        max_volumes: args.max_volumes,
        topology,
    };
    let driver = Arc::new(Driver::new(
        mode,
        volumes,
        journal,
        &journal_pool,
        &args.journal_namespace,
        args.pool.clone(),
        placement,
        backing,
        node,
    ));
    let listener = cyvault_csi::server::bind(&path).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    info!(socket = %path.display(), ?mode, backend = ?args.backend, "CSI plugin ready");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on unix://{}", path.display())?;
        out.flush()?;
    }
    cyvault_csi::server::serve(driver, listener, path, shutdown_signal()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    // Volumes attached through FUSE live in this process and end with it (docs/csi.md); their
    // sessions are not waited for, so a SIGTERM ends the plugin at once.
    info!("CSI plugin stopped");
    std::process::exit(0)
}
