//! `cyvault deploy`: render the generated files of deploy/ from the federation description,
//! validate every manifest strictly, and render one node's WireGuard config at deploy time.
//! The rendering and the checks are `cyvault-render` (no IO); this module reads and writes the
//! files and runs `kubectl kustomize`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use cyvault_render::Federation;
use cyvault_render::generate::wireguard::{self, Format, Keys};
use cyvault_render::text::HEADER;

use crate::deploy_validate;

#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Write the generated files under deploy/ from deploy/federation.toml and
    /// deploy/placement/cyberun.toml; with --check, write nothing and fail (exit 1) listing every
    /// file that differs from what would be written.
    Render {
        /// The repository root (holding deploy/).
        #[arg(long, default_value = ".")]
        root: PathBuf,
        #[arg(long)]
        check: bool,
    },
    /// Validate every YAML document under deploy/ and every document of every kustomize build
    /// strictly against the Kubernetes and CRD schemas (unknown fields are errors), and check the
    /// Flux graph of each cluster (paths, dependsOn, sourceRefs, pinned versions). Exit 1 on any
    /// problem, each printed with its file, document, kind/name and JSON path.
    Validate(deploy_validate::ValidateArgs),
    /// Render one node's WireGuard mesh config at deploy time: the description's peers with their
    /// public keys from --public-keys-dir (NODE.pub) and the private key from a secret file.
    Wireguard(WireguardArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum WgFormat {
    /// For `wg-quick up`: addresses and MTU; the private key is loaded from the key file, never
    /// written.
    WgQuick,
    /// For `wg setconf`: the private key inline (the output is a secret: use --output, written
    /// with mode 0600), no addresses.
    Setconf,
}

#[derive(Debug, Args)]
pub struct WireguardArgs {
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// The node (a [[node]] of deploy/federation.toml).
    #[arg(long)]
    node: String,
    /// This node's private key (`wg genkey`), a file only root may read. wg-quick's format names
    /// the file in PostUp; the setconf format copies the key in [default: mesh.private_key_file].
    #[arg(long)]
    private_key_file: Option<PathBuf>,
    /// Peers' public keys, one file NODE.pub each (collected from the hosts at deploy time).
    #[arg(long)]
    public_keys_dir: PathBuf,
    #[arg(long, value_enum, default_value = "wg-quick")]
    format: WgFormat,
    /// Only these peers (repeatable); all nodes by default.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// A peer endpoint other than the description's, NODE=HOST:PORT (repeatable).
    #[arg(long = "endpoint", value_name = "NODE=ADDR")]
    endpoints: Vec<String>,
    /// Write here (mode 0600) instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
}

pub async fn run(cmd: DeployCommand) -> Result<ExitCode> {
    match cmd {
        DeployCommand::Render { root, check } => render(&root, check),
        DeployCommand::Validate(args) => deploy_validate::run(args),
        DeployCommand::Wireguard(args) => wireguard_cmd(args),
    }
}

/// The description and topology of the repository at `root`.
pub fn load_federation(root: &Path) -> Result<Federation> {
    let fed = root.join("deploy/federation.toml");
    let topo = root.join("deploy/placement/cyberun.toml");
    let fed_text = std::fs::read_to_string(&fed).with_context(|| format!("read {}", fed.display()))?;
    let topo_text = std::fs::read_to_string(&topo).with_context(|| format!("read {}", topo.display()))?;
    Federation::new(&fed_text, &topo_text).map_err(|e| anyhow::anyhow!("{}: {e}", fed.display()))
}

fn render(root: &Path, check: bool) -> Result<ExitCode> {
    let fed = load_federation(root)?;
    let files = cyvault_render::generate::render_all(&fed);
    let mut drifted = Vec::new();
    let mut written = 0;
    for (rel, text) in &files {
        let path = root.join(rel);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(text.as_str()) {
            continue;
        }
        if check {
            drifted.push(format!("{rel} ({})", if current.is_some() { "differs" } else { "missing" }));
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        written += 1;
    }
    // Generated files the description no longer produces (a removed node, member or class).
    let produced: BTreeSet<&str> = files.keys().map(String::as_str).collect();
    let mut stale = Vec::new();
    for path in walk(&root.join("deploy"))? {
        let rel = relative(root, &path);
        if produced.contains(rel.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.starts_with(HEADER) {
            stale.push(rel);
        }
    }
    let mut out = std::io::stdout().lock();
    if check {
        for s in &stale {
            drifted.push(format!("{s} (no longer generated)"));
        }
        if drifted.is_empty() {
            writeln!(
                out,
                "deploy render --check: {} generated files match deploy/federation.toml and deploy/placement/cyberun.toml",
                files.len()
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        writeln!(
            out,
            "VAULT-DP-300: {} generated files drifted from their sources; run `cyvault deploy render`:",
            drifted.len()
        )?;
        for d in &drifted {
            writeln!(out, "  {d}")?;
        }
        return Ok(ExitCode::FAILURE);
    }
    for s in &stale {
        let path = root.join(s);
        std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
        writeln!(out, "removed {s} (no longer generated)")?;
    }
    writeln!(out, "deploy render: {} generated files, {written} written, {} removed", files.len(), stale.len())?;
    Ok(ExitCode::SUCCESS)
}

/// Every regular file under `dir`, sorted, skipping hidden entries.
pub fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("list {}", d.display()))? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let ty = entry.file_type()?;
            if ty.is_dir() {
                stack.push(path);
            } else if ty.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `path` relative to `root`, with `/`.
pub fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/")
}

/// Reads a secret file, refusing one that others than its owner may read.
fn read_secret(path: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).with_context(|| format!("read {}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!("{} is readable by others (mode {:o}): chmod 600 it first", path.display(), mode & 0o777);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    Ok(text.trim().to_owned())
}

fn wireguard_cmd(a: WireguardArgs) -> Result<ExitCode> {
    let fed = load_federation(&a.root)?;
    let mut public_keys = BTreeMap::new();
    for n in &fed.spec().nodes {
        let path = a.public_keys_dir.join(format!("{}.pub", n.name));
        if let Ok(text) = std::fs::read_to_string(&path) {
            public_keys.insert(n.name.clone(), text.trim().to_owned());
        }
    }
    let key_path = a.private_key_file.clone().unwrap_or_else(|| PathBuf::from(&fed.spec().mesh.private_key_file));
    let private = match a.format {
        WgFormat::Setconf => Some(read_secret(&key_path)?),
        // wg-quick reads the file itself; still refuse a key file it would leak.
        WgFormat::WgQuick => {
            if a.private_key_file.is_some() {
                let k = read_secret(&key_path)?;
                wireguard::check_key(&k)
                    .map_err(|why| anyhow::anyhow!("{}: not a WireGuard key: {why}", key_path.display()))?;
            }
            None
        }
    };
    let mut endpoints = BTreeMap::new();
    for e in &a.endpoints {
        let Some((node, addr)) = e.split_once('=') else { bail!("--endpoint {e:?}: use NODE=HOST:PORT") };
        let addr: SocketAddr = addr.parse().with_context(|| format!("--endpoint {e:?}: {addr:?} is not HOST:PORT"))?;
        endpoints.insert(node.to_owned(), addr);
    }
    let opts = wireguard::Options {
        format: match a.format {
            WgFormat::WgQuick => Format::WgQuick,
            WgFormat::Setconf => Format::SetConf,
        },
        only_peers: if a.peers.is_empty() { None } else { Some(a.peers.iter().cloned().collect()) },
        endpoints,
        private_key_file: Some(key_path.to_string_lossy().into_owned()),
    };
    let keys = Keys::Deploy { public_keys: &public_keys, private_key: private.as_deref() };
    let text = wireguard::wireguard_conf(&fed, &a.node, keys, &opts)?;
    match &a.output {
        Some(path) => crate::gateway::write_private(path, &text)?,
        None => {
            if private.is_some() {
                eprintln!("warning: the setconf format holds the private key; prefer --output FILE");
            }
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use cyvault_render::generate::{csi, gateway};

    use super::*;
    use crate::settings::Config;

    fn repo() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
    }

    /// The TOML the gateway and CSI ConfigMaps carry is a config `cyvault` itself accepts
    /// (unknown keys are errors there), with the values the description says.
    #[test]
    fn rendered_configs_are_configs_cyvault_reads() {
        let f = load_federation(&repo()).unwrap();
        let g: Config = toml::from_str(&gateway::gateway_toml(&f)).unwrap();
        assert_eq!(g.storage.backend, "rados");
        assert_eq!(g.storage.pool, f.spec().gateway.metadata_pool.name);
        assert_eq!(g.gateway.domains, [f.spec().gateway.domain.clone()]);
        assert_eq!(g.gateway.listen.parse::<SocketAddr>().unwrap().port(), f.spec().gateway.port);
        assert_eq!(g.placement.storage_cluster, f.spec().ceph.cluster);
        assert!(f.topology().cluster(&g.placement.consumer).is_some());
        assert!(!f.storage_classes().is_empty());
        for cluster in f.storage_classes().keys() {
            let c: Config = toml::from_str(&csi::csi_toml(&f, cluster)).unwrap();
            assert_eq!(c.placement.consumer, *cluster);
            assert_eq!(c.csi.pool, f.spec().csi.journal_pool);
            assert_eq!(c.storage.ceph_id, f.spec().csi.ceph_id);
        }
    }

    /// Every manifest runs this workspace's cyvault image.
    #[test]
    fn every_cyvault_image_is_this_version() {
        let want = format!("ghcr.io/cyberun/vault:{}", env!("CARGO_PKG_VERSION"));
        assert_eq!(gateway::IMAGE, want);
        let mut seen = 0;
        for p in walk(&repo().join("deploy")).unwrap() {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            for (i, _) in text.match_indices("ghcr.io/cyberun/vault:") {
                let tag: String = text[i..].chars().take_while(|c| !c.is_whitespace() && *c != '"').collect();
                assert_eq!(tag, want, "{}", p.display());
                seen += 1;
            }
        }
        assert!(seen >= 3, "the gateway, the CSI controller and the node plugin run cyvault");
    }
}
