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

/// Flags win over environment variables, which win over the config file (`--config`, its `[csi]`,
/// `[storage]` and `[placement]` tables), which wins over the defaults in cyvault.example.toml.
#[derive(Debug, Args)]
pub struct CsiArgs {
    /// TOML config file (see cyvault.example.toml).
    #[arg(long, env = "CYVAULT_CONFIG")]
    config: Option<PathBuf>,
    /// The CSI socket: unix:///path/csi.sock (a stale socket file is replaced) [config: csi.endpoint].
    #[arg(long, env = "CSI_ENDPOINT")]
    endpoint: Option<String>,
    /// This node's name (the Kubernetes Node name).
    #[arg(long, env = "NODE_ID")]
    node_id: String,
    /// Which services to serve: the controller (one per cluster), the node plugin (one per node)
    /// or both [config: csi.mode; default: all].
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// [config: storage.backend; default: local]
    #[arg(long, value_enum, env = "CYVAULT_BACKEND")]
    backend: Option<Backend>,
    /// Local backend: volumes are sparse files under DIR/csi, attached through loop devices
    /// [config: storage.data_dir; default: ./cyvault-data].
    #[arg(long, env = "CYVAULT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// [config: storage.ceph_conf]
    #[arg(long, env = "CYVAULT_CEPH_CONF")]
    ceph_conf: Option<String>,
    /// [config: storage.ceph_id; default: admin]
    #[arg(long, env = "CYVAULT_CEPH_ID")]
    ceph_id: Option<String>,
    /// Pool of volumes when no placement topology is given, and of the journal (rados)
    /// [config: csi.pool; default: rbd].
    #[arg(long)]
    pool: Option<String>,
    /// RADOS namespace of the journal objects [config: csi.journal_namespace; default: cyvault-csi].
    #[arg(long)]
    journal_namespace: Option<String>,
    /// Where the node plugin records what it staged, and its FUSE mount points
    /// [config: csi.state_dir; default: /var/lib/cyvault/csi].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Most volumes this node attaches (NodeGetInfo) [config: csi.max_volumes; default: 64].
    #[arg(long)]
    max_volumes: Option<i64>,
    /// This node's topology segments, KEY=VALUE; repeatable (e.g.
    /// topology.cyvault.io/cluster=destroyer) [config: csi.node_topology].
    #[arg(long = "node-topology", value_name = "KEY=VALUE")]
    node_topology: Vec<String>,
    /// Read this node's topology from the labels of its Kubernetes Node (in-cluster config, or
    /// --kubeconfig); merged over --node-topology [config: csi.node_topology_from_labels].
    #[arg(long)]
    node_topology_from_labels: bool,
    /// kubeconfig for --node-topology-from-labels (default: in-cluster, else KUBECONFIG)
    /// [config: csi.kubeconfig].
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Placement topology file: CreateVolume's pool is chosen by the engine
    /// [config: placement.topology].
    #[arg(long)]
    placement_topology: Option<PathBuf>,
    /// The consumer cluster of requests without topology requirements [config: placement.consumer].
    #[arg(long)]
    placement_consumer: Option<String>,
    /// The topology's name for the Ceph cluster this driver provisions on
    /// [config: placement.storage_cluster].
    #[arg(long)]
    placement_cluster: Option<String>,
}

/// Everything `cyvault csi` needs, resolved.
#[derive(Debug)]
struct Resolved {
    endpoint: String,
    mode: Mode,
    backend: Backend,
    data_dir: PathBuf,
    ceph_conf: Option<String>,
    ceph_id: String,
    pool: String,
    journal_namespace: String,
    state_dir: PathBuf,
    max_volumes: i64,
    node_topology: HashMap<String, String>,
    from_labels: bool,
    kubeconfig: Option<PathBuf>,
    placement_topology: Option<PathBuf>,
    placement_consumer: Option<String>,
    placement_cluster: Option<String>,
}

fn non_empty(s: &str) -> Option<String> {
    Some(s.to_owned()).filter(|s| !s.is_empty())
}

impl CsiArgs {
    fn resolve(&self) -> Result<Resolved> {
        let cfg = crate::settings::load_config(self.config.as_deref())?;
        let (c, st, pl) = (&cfg.csi, &cfg.storage, &cfg.placement);
        let Some(endpoint) = self.endpoint.clone().or_else(|| non_empty(&c.endpoint)) else {
            bail!("no CSI endpoint: give --endpoint, CSI_ENDPOINT or csi.endpoint")
        };
        let mode = match self.mode {
            Some(ModeArg::Controller) => Mode::Controller,
            Some(ModeArg::Node) => Mode::Node,
            Some(ModeArg::All) => Mode::All,
            None => match c.mode.as_str() {
                "controller" => Mode::Controller,
                "node" => Mode::Node,
                "all" => Mode::All,
                other => bail!("csi.mode = {other:?}: use \"controller\", \"node\" or \"all\""),
            },
        };
        let backend = match self.backend {
            Some(b) => b,
            None => match st.backend.as_str() {
                "local" => Backend::Local,
                "rados" => Backend::Rados,
                other => bail!("storage.backend = {other:?}: use \"local\" or \"rados\""),
            },
        };
        let mut node_topology: HashMap<String, String> = c.node_topology.clone().into_iter().collect();
        for kv in &self.node_topology {
            let Some((k, v)) = kv.split_once('=') else { bail!("--node-topology {kv:?}: use KEY=VALUE") };
            node_topology.insert(k.to_owned(), v.to_owned());
        }
        Ok(Resolved {
            endpoint,
            mode,
            backend,
            data_dir: self.data_dir.clone().unwrap_or_else(|| PathBuf::from(&st.data_dir)),
            ceph_conf: self.ceph_conf.clone().or_else(|| non_empty(&st.ceph_conf)),
            ceph_id: self.ceph_id.clone().unwrap_or_else(|| st.ceph_id.clone()),
            pool: self.pool.clone().unwrap_or_else(|| c.pool.clone()),
            journal_namespace: self.journal_namespace.clone().unwrap_or_else(|| c.journal_namespace.clone()),
            state_dir: self.state_dir.clone().unwrap_or_else(|| PathBuf::from(&c.state_dir)),
            max_volumes: self.max_volumes.unwrap_or(c.max_volumes),
            node_topology,
            from_labels: self.node_topology_from_labels || c.node_topology_from_labels,
            kubeconfig: self.kubeconfig.clone().or_else(|| non_empty(&c.kubeconfig).map(PathBuf::from)),
            placement_topology: self.placement_topology.clone().or_else(|| non_empty(&pl.topology).map(PathBuf::from)),
            placement_consumer: self.placement_consumer.clone().or_else(|| non_empty(&pl.consumer)),
            placement_cluster: self.placement_cluster.clone().or_else(|| non_empty(&pl.storage_cluster)),
        })
    }
}

pub async fn run(cli: CsiArgs) -> Result<ExitCode> {
    let args = cli.resolve()?;
    let node_id = cli.node_id.clone();
    let mode = args.mode;
    let path = cyvault_csi::server::socket_path(&args.endpoint).map_err(|e| anyhow::anyhow!("endpoint: {e}"))?;
    let mut topology = args.node_topology.clone();
    if args.from_labels {
        let labels = cyvault_csi::k8s::node_topology(&node_id, args.kubeconfig.as_deref())
            .await
            .map_err(|e| anyhow::anyhow!("--node-topology-from-labels: {e}"))?;
        info!(node = %node_id, ?labels, "topology from the Node's labels");
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
            let journal_dir =
                if mode.controller() { root.join("journal") } else { root.join(format!("journal-node-{node_id}")) };
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
        node_id: node_id.clone(),
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
    cyvault_csi::server::serve(driver, listener, path, crate::signals::shutdown_signal())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Volumes attached through FUSE live in this process and end with it (docs/csi.md); their
    // sessions are not waited for, so a SIGTERM ends the plugin at once.
    info!("CSI plugin stopped");
    std::process::exit(0)
}
