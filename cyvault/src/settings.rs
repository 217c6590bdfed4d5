//! The one TOML config (`--config`, documented in `cyvault.example.toml`) merged with flags and
//! environment variables: flag > environment > config file > default.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use cyvault_gateway::VaultOptions;
use cyvault_store::{Cluster, ObjectStore, RadosConfig, RadosStore};
use serde::Deserialize;

use crate::store_args::Backend;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub gateway: GatewaySection,
    pub storage: StorageSection,
    pub s3: S3Section,
    pub gc: GcSection,
    pub placement: PlacementSection,
    pub csi: CsiSection,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsiSection {
    /// The CSI socket, unix:///path/csi.sock (`CSI_ENDPOINT` and --endpoint win).
    pub endpoint: String,
    /// `controller`, `node` or `all`.
    pub mode: String,
    /// Pool of volumes without a placement topology, and of the journal (rados).
    pub pool: String,
    /// RADOS namespace of the journal objects.
    pub journal_namespace: String,
    /// Where the node plugin records what it staged, and its FUSE mount points.
    pub state_dir: String,
    /// Most volumes a node attaches (NodeGetInfo).
    pub max_volumes: i64,
    /// This node's topology segments (KEY = VALUE).
    pub node_topology: std::collections::BTreeMap<String, String>,
    /// Read the node's topology from its Kubernetes Node's labels.
    pub node_topology_from_labels: bool,
    /// kubeconfig for that (empty: in-cluster, else KUBECONFIG).
    pub kubeconfig: String,
}

impl Default for CsiSection {
    fn default() -> Self {
        CsiSection {
            endpoint: String::new(),
            mode: "all".into(),
            pool: "rbd".into(),
            journal_namespace: "cyvault-csi".into(),
            state_dir: "/var/lib/cyvault/csi".into(),
            max_volumes: 64,
            node_topology: Default::default(),
            node_topology_from_labels: false,
            kubeconfig: String::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlacementSection {
    /// Topology file (deploy/placement/cyberun.toml is the example); empty turns placement off.
    pub topology: String,
    /// The cluster this process's clients are in (a cluster of the topology).
    pub consumer: String,
    /// The topology's name for the Ceph cluster this process is connected to; only its pools
    /// can hold data placed here. Empty: any pool.
    pub storage_cluster: String,
    /// Seconds between refreshes of pool capacity (`ceph df`) and RTT probes (rados backend); 0: never.
    pub refresh_secs: u64,
    /// Round trips timed per pool and refresh.
    pub probe_samples: u32,
}

impl Default for PlacementSection {
    fn default() -> Self {
        PlacementSection {
            topology: String::new(),
            consumer: String::new(),
            storage_cluster: String::new(),
            refresh_secs: 60,
            probe_samples: 20,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySection {
    pub listen: String,
    pub region: String,
    pub domains: Vec<String>,
    pub tls_cert: String,
    pub tls_key: String,
    pub shutdown_grace_secs: u64,
    pub auth_cache_secs: u64,
    pub metrics_listen: String,
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            listen: "127.0.0.1:9000".into(),
            region: "us-east-1".into(),
            domains: vec![],
            tls_cert: String::new(),
            tls_key: String::new(),
            shutdown_grace_secs: 30,
            auth_cache_secs: 5,
            metrics_listen: String::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    pub backend: String,
    pub data_dir: String,
    pub ceph_conf: String,
    pub ceph_id: String,
    pub pool: String,
    pub namespace: String,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            backend: "local".into(),
            data_dir: "./cyvault-data".into(),
            ceph_conf: String::new(),
            ceph_id: "admin".into(),
            pool: "cyvault".into(),
            namespace: String::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Section {
    pub stripe_size: u64,
    pub index_shards: u32,
    pub write_depth: usize,
    pub read_ahead: usize,
    pub max_put_size: u64,
}

impl Default for S3Section {
    fn default() -> Self {
        let d = VaultOptions::default();
        S3Section {
            stripe_size: d.stripe_size,
            index_shards: d.index_shards,
            write_depth: d.write_depth,
            read_ahead: d.read_ahead,
            max_put_size: d.max_put_size,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcSection {
    /// Seconds between background sweeps (0 turns them off).
    pub interval_secs: u64,
    /// Leftovers younger than this are never touched.
    pub grace_secs: u64,
    /// Multipart uploads initiated longer ago than this are aborted.
    pub upload_grace_secs: u64,
}

impl Default for GcSection {
    fn default() -> Self {
        GcSection { interval_secs: 600, grace_secs: 3600, upload_grace_secs: 7 * 24 * 3600 }
    }
}

pub fn load_config(path: Option<&Path>) -> Result<Config> {
    let Some(path) = path else { return Ok(Config::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("read the config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parse the config {}", path.display()))
}

/// The flags that choose where S3 state lives (shared by `gateway` and the S3 admin commands).
#[derive(Clone, Debug, Args)]
pub struct S3StoreArgs {
    /// TOML config file (see cyvault.example.toml for every key and its default).
    #[arg(long, env = "CYVAULT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Storage backend [config: storage.backend; default: local].
    #[arg(long, value_enum, env = "CYVAULT_BACKEND")]
    pub backend: Option<Backend>,
    /// Local backend directory; also where generated root credentials are written
    /// [config: storage.data_dir; default: ./cyvault-data].
    #[arg(long, env = "CYVAULT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// ceph.conf of the cluster (rados backend) [config: storage.ceph_conf].
    #[arg(long, env = "CYVAULT_CEPH_CONF")]
    pub ceph_conf: Option<String>,
    /// Ceph client name without `client.` [config: storage.ceph_id; default: admin].
    #[arg(long, env = "CYVAULT_CEPH_ID")]
    pub ceph_id: Option<String>,
    /// RADOS pool holding the S3 state [config: storage.pool; default: cyvault].
    #[arg(long)]
    pub pool: Option<String>,
    /// RADOS namespace inside the pool [config: storage.namespace; default: none].
    #[arg(long)]
    pub namespace: Option<String>,
}

/// Where S3 state lives, resolved.
#[derive(Clone, Debug)]
pub struct StorageSettings {
    pub backend: Backend,
    pub data_dir: PathBuf,
    pub ceph_conf: String,
    pub ceph_id: String,
    pub pool: String,
    pub namespace: String,
}

impl S3StoreArgs {
    pub fn resolve(&self, cfg: &Config) -> Result<StorageSettings> {
        let s = &cfg.storage;
        let backend = match self.backend {
            Some(b) => b,
            None => match s.backend.as_str() {
                "local" => Backend::Local,
                "rados" => Backend::Rados,
                other => bail!("storage.backend = {other:?}: use \"local\" or \"rados\""),
            },
        };
        Ok(StorageSettings {
            backend,
            data_dir: self.data_dir.clone().unwrap_or_else(|| PathBuf::from(&s.data_dir)),
            ceph_conf: self.ceph_conf.clone().unwrap_or_else(|| s.ceph_conf.clone()),
            ceph_id: self.ceph_id.clone().unwrap_or_else(|| s.ceph_id.clone()),
            pool: self.pool.clone().unwrap_or_else(|| s.pool.clone()),
            namespace: self.namespace.clone().unwrap_or_else(|| s.namespace.clone()),
        })
    }
}

impl StorageSettings {
    pub async fn open(&self) -> Result<Arc<dyn ObjectStore>> {
        Ok(self.open_with_cluster().await?.0)
    }

    /// Opens the store, and with the rados backend also returns the cluster handle (for
    /// `ceph df` and monitor commands).
    pub async fn open_with_cluster(&self) -> Result<(Arc<dyn ObjectStore>, Option<Arc<Cluster>>)> {
        Ok(match self.backend {
            Backend::Local => (crate::store_args::open_local(&self.data_dir).await?, None),
            Backend::Rados => {
                if self.ceph_conf.is_empty() {
                    bail!("the rados backend needs --ceph-conf (or CYVAULT_CEPH_CONF, or storage.ceph_conf)");
                }
                let config = RadosConfig::new(self.ceph_conf.clone(), self.ceph_id.clone());
                let cluster = Cluster::connect(&config)
                    .await
                    .with_context(|| format!("connect to ceph with {} as client.{}", config.conf_path, config.id))?;
                (Arc::new(RadosStore::new(cluster.clone())), Some(cluster))
            }
        })
    }

    pub fn vault_options(&self, cfg: &Config, cache_ttl: Duration) -> VaultOptions {
        VaultOptions {
            pool: self.pool.clone(),
            namespace: self.namespace.clone(),
            stripe_size: cfg.s3.stripe_size,
            index_shards: cfg.s3.index_shards,
            cache_ttl,
            write_depth: cfg.s3.write_depth,
            read_ahead: cfg.s3.read_ahead,
            max_put_size: cfg.s3.max_put_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_is_the_defaults() {
        let text = include_str!("../../cyvault.example.toml");
        let cfg: Config = match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => panic!("cyvault.example.toml does not parse: {e}"),
        };
        let d = Config::default();
        assert_eq!(format!("{cfg:?}"), format!("{d:?}"), "cyvault.example.toml must list the defaults");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("[gateway]\nlisten_addr = \"x\"\n").is_err());
        assert!(toml::from_str::<Config>("[gateway]\nlisten = \"0.0.0.0:80\"\n").is_ok());
    }
}
