//! `cyvault gateway`: the S3 endpoint.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use cyvault_gateway::auth::VaultAuth;
use cyvault_gateway::metered::MeteredStore;
use cyvault_gateway::metrics::Metrics;
use cyvault_gateway::placement::BucketPlacement;
use cyvault_gateway::s3::Gateway;
use cyvault_gateway::{Vault, server};
use s3s::service::S3ServiceBuilder;
use tracing::{info, warn};

use crate::placement_live::{Refresher, load_topology};
use crate::settings::{Config, S3StoreArgs, load_config};

#[derive(Debug, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub store: S3StoreArgs,
    /// Address to listen on; port 0 picks a free one [config: gateway.listen; default: 127.0.0.1:9000].
    #[arg(long)]
    pub listen: Option<String>,
    /// Base domain for virtual-hosted-style requests; repeatable [config: gateway.domains].
    #[arg(long = "domain")]
    pub domains: Vec<String>,
    /// Region reported to clients [config: gateway.region; default: us-east-1].
    #[arg(long)]
    pub region: Option<String>,
    /// PEM certificate chain for HTTPS [config: gateway.tls_cert].
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS [config: gateway.tls_key].
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Also serve Prometheus `GET /metrics` on this address (the S3 port always has
    /// `/_cyvault/metrics`) [config: gateway.metrics_listen; default: off].
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Seconds users, keys and bucket records are cached [config: gateway.auth_cache_secs; default: 5].
    #[arg(long)]
    pub auth_cache_secs: Option<u64>,
    /// Seconds between background sweeps, 0 for none [config: gc.interval_secs; default: 600].
    #[arg(long)]
    pub gc_interval_secs: Option<u64>,
    /// Age below which leftovers are never swept [config: gc.grace_secs; default: 3600].
    #[arg(long)]
    pub gc_grace_secs: Option<u64>,
    /// Topology file: new buckets' data pools are chosen by the placement engine from their
    /// LocationConstraint [config: placement.topology; default: off].
    #[arg(long)]
    pub placement_topology: Option<PathBuf>,
    /// The topology's cluster this gateway's clients are in [config: placement.consumer].
    #[arg(long)]
    pub placement_consumer: Option<String>,
    /// The topology's name for the Ceph cluster the gateway stores into [config: placement.storage_cluster].
    #[arg(long)]
    pub placement_cluster: Option<String>,
}

/// Opens the S3 state (shared by `gateway` and the S3 admin commands).
pub async fn open_vault(
    store: &S3StoreArgs,
    cache_secs: Option<u64>,
) -> Result<(Config, crate::settings::StorageSettings, Vault)> {
    let cfg = load_config(store.config.as_deref())?;
    let settings = store.resolve(&cfg)?;
    let raw = settings.open().await?;
    let cache = Duration::from_secs(cache_secs.unwrap_or(cfg.gateway.auth_cache_secs));
    let vault = Vault::open(raw, settings.vault_options(&cfg, cache)).await.context("open the S3 state")?;
    Ok((cfg, settings, vault))
}

/// Root credentials: from the environment, else the stored ones, else new ones (printed once and
/// written to DATA_DIR/root-credentials with mode 0600).
async fn root_credentials(vault: &Vault, data_dir: &Path) -> Result<()> {
    let env = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
    match (env("CYVAULT_ROOT_ACCESS_KEY"), env("CYVAULT_ROOT_SECRET_KEY")) {
        (Some(ak), Some(sk)) => {
            vault.set_root_key(&ak, &sk).await.context("store the root credentials")?;
            info!(access_key = %ak, "root credentials from the environment");
            Ok(())
        }
        (Some(_), None) | (None, Some(_)) => {
            bail!("set both CYVAULT_ROOT_ACCESS_KEY and CYVAULT_ROOT_SECRET_KEY, or neither")
        }
        (None, None) => {
            if let Some(k) = vault.stored_root_key().await? {
                info!(access_key = %k.access_key, "using the stored root credentials");
                return Ok(());
            }
            let key = vault.generate_root_key().await?;
            std::fs::create_dir_all(data_dir).with_context(|| format!("create {}", data_dir.display()))?;
            let path = data_dir.join("root-credentials");
            let text = format!(
                "# Cyberun Vault root credentials, generated {}. Keep this file secret.\n\
                 access_key = \"{}\"\nsecret_key = \"{}\"\n",
                key.created, key.access_key, key.secret_key
            );
            write_private(&path, &text)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "root access key: {}", key.access_key)?;
            writeln!(out, "root secret key: {}", key.secret_key)?;
            writeln!(out, "(generated on first start; also saved to {} with mode 0600)", path.display())?;
            out.flush()?;
            Ok(())
        }
    }
}

/// Writes a file only its owner may read (created with mode 0600, synced).
pub(crate) fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The placement engine for new buckets, when a topology is configured, with its refresher
/// running against the cluster (rados backend).
async fn placement_setup(
    args: &GatewayArgs,
    cfg: &Config,
    settings: &crate::settings::StorageSettings,
    region: &str,
    cluster: Option<Arc<cyvault_store::Cluster>>,
    store: cyvault_store::DynStore,
    metrics: &Arc<Metrics>,
) -> Result<Option<BucketPlacement>> {
    let p = &cfg.placement;
    let Some(path) = args
        .placement_topology
        .clone()
        .or_else(|| Some(PathBuf::from(&p.topology)).filter(|p| !p.as_os_str().is_empty()))
    else {
        return Ok(None);
    };
    let topo = load_topology(&path)?;
    let consumer = args.placement_consumer.clone().unwrap_or_else(|| p.consumer.clone());
    if topo.cluster(&consumer).is_none() {
        bail!(
            "placement consumer {consumer:?} is not a cluster of {} (set --placement-consumer or placement.consumer)",
            path.display()
        );
    }
    let storage_cluster = args.placement_cluster.clone().unwrap_or_else(|| p.storage_cluster.clone());
    let storage_cluster = Some(storage_cluster).filter(|c| !c.is_empty());
    if let Some(c) = &storage_cluster
        && topo.cluster(c).is_none()
    {
        bail!("placement storage cluster {c:?} is not a cluster of {}", path.display());
    }
    let topology = Arc::new(RwLock::new(topo));
    if let (Some(cluster), Some(sc)) = (cluster, &storage_cluster) {
        let refresher = Refresher {
            cluster,
            store,
            namespace: settings.namespace.clone(),
            storage_cluster: sc.clone(),
            vantage: consumer.clone(),
            samples: p.probe_samples,
            metrics: Some(metrics.placement().clone()),
        };
        // The first refresh happens before the gateway serves, so the first decision already
        // uses measured numbers.
        match refresher.refresh(&topology).await {
            Ok(obs) => info!(pools = obs.len(), "placement: capacity and RTTs measured"),
            Err(e) => {
                warn!(error = %format!("{e:#}"), "placement: first refresh failed; using the topology file's numbers")
            }
        }
        if p.refresh_secs > 0 {
            let every = Duration::from_secs(p.refresh_secs);
            let topology = topology.clone();
            tokio::spawn(async move {
                tokio::time::sleep(every).await;
                refresher.run(topology, every).await
            });
        }
    }
    info!(topology = %path.display(), %consumer, storage_cluster = ?storage_cluster, "placement engine on");
    Ok(Some(
        BucketPlacement::new(topology, consumer, storage_cluster, region).with_metrics(metrics.placement().clone()),
    ))
}

pub async fn run(args: GatewayArgs) -> Result<ExitCode> {
    let cfg = load_config(args.store.config.as_deref())?;
    let settings = args.store.resolve(&cfg)?;
    let (raw, cluster) = settings.open_with_cluster().await?;
    let metrics = Arc::new(Metrics::new());
    let store: cyvault_store::DynStore = Arc::new(MeteredStore::new(raw, metrics.clone()));
    let cache = Duration::from_secs(args.auth_cache_secs.unwrap_or(cfg.gateway.auth_cache_secs));
    let region = args.region.clone().unwrap_or_else(|| cfg.gateway.region.clone());
    let mut vault =
        Vault::open(store.clone(), settings.vault_options(&cfg, cache)).await.context("open the S3 state")?;
    if let Some(placement) = placement_setup(&args, &cfg, &settings, &region, cluster, store, &metrics).await? {
        vault = vault.with_placement(placement);
    }
    let vault = Arc::new(vault);
    root_credentials(&vault, &settings.data_dir).await?;

    let mut builder = S3ServiceBuilder::new(Gateway::new(vault.clone(), metrics.clone(), region));
    builder.set_auth(VaultAuth::new(vault.clone()));
    let domains = if args.domains.is_empty() { cfg.gateway.domains.clone() } else { args.domains.clone() };
    if !domains.is_empty() {
        let host = server::DomainHost::new(&domains).map_err(|e| anyhow::anyhow!("--domain: {e}"))?;
        builder.set_host(host);
    }
    let service = builder.build();

    let cert = args
        .tls_cert
        .clone()
        .or_else(|| Some(PathBuf::from(&cfg.gateway.tls_cert)).filter(|p| !p.as_os_str().is_empty()));
    let key = args
        .tls_key
        .clone()
        .or_else(|| Some(PathBuf::from(&cfg.gateway.tls_key)).filter(|p| !p.as_os_str().is_empty()));
    let tls = match (cert, key) {
        (Some(c), Some(k)) => Some(
            server::tls_acceptor(&c, &k)
                .with_context(|| format!("load TLS from {} and {}", c.display(), k.display()))?,
        ),
        (None, None) => None,
        _ => bail!("HTTPS needs both a certificate and a key"),
    };

    let listen = args.listen.clone().unwrap_or_else(|| cfg.gateway.listen.clone());
    let addr: SocketAddr = listen.parse().with_context(|| format!("listen address {listen:?}"))?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listen on {addr}"))?;
    let bound = listener.local_addr()?;

    let gc_interval = args.gc_interval_secs.unwrap_or(cfg.gc.interval_secs);
    let gc_grace = Duration::from_secs(args.gc_grace_secs.unwrap_or(cfg.gc.grace_secs));
    let upload_grace = Duration::from_secs(cfg.gc.upload_grace_secs);
    if gc_interval > 0 {
        let vault = vault.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(gc_interval));
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = vault.gc(gc_grace, upload_grace, false).await {
                    warn!(error = %e, "background sweep failed; will retry");
                }
            }
        });
    }

    let metrics_listen = args.metrics_listen.clone().unwrap_or_else(|| cfg.gateway.metrics_listen.clone());
    if !metrics_listen.is_empty() {
        let addr: SocketAddr = metrics_listen.parse().with_context(|| format!("metrics address {metrics_listen:?}"))?;
        let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listen on {addr} for metrics"))?;
        info!(addr = %l.local_addr()?, "Prometheus metrics on /metrics");
        let mut out = std::io::stdout().lock();
        writeln!(out, "metrics on http://{}/metrics", l.local_addr()?)?;
        drop(out);
        tokio::spawn(server::serve_metrics(l, metrics.clone()));
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(%bound, backend = ?settings.backend, pool = %settings.pool, "S3 gateway ready");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {scheme}://{bound}")?;
        out.flush()?;
    }
    let grace = Duration::from_secs(cfg.gateway.shutdown_grace_secs);
    server::serve(listener, service, metrics, tls, crate::signals::shutdown_signal(), grace).await;
    Ok(ExitCode::SUCCESS)
}
