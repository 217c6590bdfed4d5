//! The flags that choose and reach a storage backend, shared by every subcommand that stores.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use cyvault_store::{Cluster, LocalStore, ObjectStore, RadosConfig, RadosStore};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The embedded backend in one directory (no Ceph needed).
    Local,
    /// A Ceph cluster through librados.
    Rados,
}

#[derive(Clone, Debug, Args)]
pub struct StoreArgs {
    /// Which backend to use.
    #[arg(long, value_enum, default_value = "local", env = "CYVAULT_BACKEND")]
    pub backend: Backend,
    /// Directory of the local backend (created if missing).
    #[arg(long, default_value = "./cyvault-data", env = "CYVAULT_DATA_DIR")]
    pub data_dir: PathBuf,
    /// ceph.conf naming the monitors and the keyring (rados backend).
    #[arg(long, env = "CYVAULT_CEPH_CONF")]
    pub ceph_conf: Option<String>,
    /// Ceph client name without `client.` (rados backend).
    #[arg(long, default_value = "admin", env = "CYVAULT_CEPH_ID")]
    pub ceph_id: String,
}

impl StoreArgs {
    pub fn rados_config(&self) -> Result<RadosConfig> {
        match &self.ceph_conf {
            Some(conf) => Ok(RadosConfig::new(conf.clone(), self.ceph_id.clone())),
            None => bail!("the rados backend needs --ceph-conf (or CYVAULT_CEPH_CONF)"),
        }
    }

    pub async fn open(&self) -> Result<Arc<dyn ObjectStore>> {
        Ok(match self.backend {
            Backend::Local => open_local(&self.data_dir).await?,
            Backend::Rados => {
                let config = self.rados_config()?;
                let cluster = Cluster::connect(&config)
                    .await
                    .with_context(|| format!("connect to ceph with {} as client.{}", config.conf_path, config.id))?;
                Arc::new(RadosStore::new(cluster))
            }
        })
    }
}

/// Opens the embedded backend in `dir` (creating it), off the async workers. A directory held by a
/// running gateway is refused with a message saying so.
pub async fn open_local(dir: &std::path::Path) -> Result<Arc<dyn ObjectStore>> {
    let owned = dir.to_path_buf();
    let store = tokio::task::spawn_blocking(move || LocalStore::open(&owned))
        .await
        .context("open the local store")?
        .with_context(|| {
            format!(
                "open the local store in {} (one process at a time: if a gateway runs on it, stop it \
                 first, or use the rados backend to share state)",
                dir.display()
            )
        })?;
    Ok(Arc::new(store))
}
