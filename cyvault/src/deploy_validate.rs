//! `cyvault deploy validate`: the IO around `cyvault_render::check`. Reads the reference schemas
//! and every file under deploy/, runs `kubectl kustomize` on every directory with a
//! kustomization, and prints every problem.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use clap::Args;
use cyvault_render::check::files::{self, Role};
use cyvault_render::check::flux::{self, Builds};
use cyvault_render::check::schema::{Catalog, Scope};
use cyvault_render::check::{Doc, Problem, ProblemKind, parse_documents};

use crate::deploy::{relative, walk};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The repository root (holding deploy/).
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// The reference schemas: k8s-schemas/ and crds/ [default: ROOT/../shared].
    #[arg(long, env = "CYVAULT_SHARED_DIR")]
    shared: Option<PathBuf>,
    /// The kubectl that builds kustomizations (`kubectl kustomize`).
    #[arg(long, default_value = "kubectl", env = "CYVAULT_KUBECTL")]
    kubectl: String,
    /// Also list every kind the catalog knows and where its schema comes from.
    #[arg(long)]
    list_kinds: bool,
}

/// The Kubernetes version of the built-in schemas.
const K8S_SCHEMAS: &str = "k8s-schemas/v1.34.0-standalone-strict";
/// The Flux GitRepository of this repository in every cluster (what `flux bootstrap` names it).
const REPO_SOURCE: &str = "flux-system";

/// Loads every schema: Kubernetes' built-in kinds, the CRDs of Flux, Rook, Karmada and the
/// external-snapshotter, Cilium's policies, Karmada's Cluster, and the CRDs under deploy/.
pub fn load_catalog(shared: &Path, deploy_crds: &[(String, String)]) -> Result<Catalog> {
    if !shared.join(K8S_SCHEMAS).is_dir() || !shared.join("crds").is_dir() {
        bail!(
            "{} has no {K8S_SCHEMAS}/ and crds/: point --shared (or CYVAULT_SHARED_DIR) at the reference schemas \
             (the CI clone has them in ../shared)",
            shared.display()
        );
    }
    let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()));
    let mut c = Catalog::new();
    for p in walk(&shared.join(K8S_SCHEMAS))? {
        if p.extension().is_some_and(|e| e == "json") {
            c.add_kubernetes(&relative(shared, &p), &read(&p)?)?;
        }
    }
    for dir in ["flux", "rook", "karmada", "external-snapshotter"] {
        for p in walk(&shared.join("crds").join(dir))? {
            if p.extension().is_some_and(|e| e == "yaml") {
                c.add_crds(&relative(shared, &p), &read(&p)?)?;
            }
        }
    }
    let cilium = [
        ("ciliumnetworkpolicy_v2.json", "CiliumNetworkPolicy", Scope::Namespaced),
        ("ciliumclusterwidenetworkpolicy_v2.json", "CiliumClusterwideNetworkPolicy", Scope::Cluster),
    ];
    for (file, kind, scope) in cilium {
        let p = shared.join("crds/cilium").join(file);
        c.add_json_schema(&relative(shared, &p), "cilium.io/v2", kind, scope, &read(&p)?)?;
    }
    let p = shared.join("crds/karmada/cluster.karmada.io_v1alpha1_cluster.swagger-schema.json");
    c.add_swagger(&relative(shared, &p), "cluster.karmada.io/v1alpha1", "Cluster", Scope::Cluster, &read(&p)?)?;
    for (origin, text) in deploy_crds {
        c.add_crds(origin, text)?;
    }
    Ok(c)
}

/// Runs `kubectl kustomize DIR` (from `root`) and parses its output.
fn kustomize(kubectl: &str, root: &Path, dir: &str) -> Result<Result<Vec<Doc>, String>> {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!("run `{kubectl} kustomize`: kubectl (v1.27 or newer, with kustomize built in) is needed to build deploy/")
        })?;
    if !out.status.success() {
        return Ok(Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(parse_documents(&format!("kubectl kustomize {dir}"), &text).map_err(|p| p.message))
}

/// Lines that look like private key material.
fn secret_lines(text: &str) -> Vec<(usize, &'static str)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.contains("PRIVATE KEY-----") {
            out.push((i + 1, "a PEM private key"));
        }
        if let Some(v) = l.strip_prefix("PrivateKey") {
            let v = v.trim_start().trim_start_matches('=').trim();
            if cyvault_render::generate::wireguard::check_key(v).is_ok() {
                out.push((i + 1, "a WireGuard private key"));
            }
        }
    }
    out
}

#[derive(Default)]
struct Tally {
    files: usize,
    documents: usize,
    builds: usize,
    built_documents: usize,
    clusters: usize,
    kustomizations: usize,
    releases: usize,
}

pub fn run(a: ValidateArgs) -> Result<ExitCode> {
    let root = a.root.clone();
    let deploy = root.join("deploy");
    let shared = a.shared.clone().unwrap_or_else(|| root.join("../shared"));
    let mut texts = BTreeMap::new();
    for p in walk(&deploy)? {
        let rel = relative(&root, &p);
        let text = std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
        texts.insert(rel, text);
    }
    let mut problems: Vec<Problem> = Vec::new();
    let whole_file = |kind, origin: &str, message: String| Problem {
        kind,
        origin: origin.to_owned(),
        index: 0,
        object: String::new(),
        path: String::new(),
        message,
    };
    for (rel, text) in &texts {
        for (line, what) in secret_lines(text) {
            problems.push(whole_file(
                ProblemKind::Secret,
                rel,
                format!("line {line} holds {what}: secrets come from the cluster at deploy time, never from Git"),
            ));
        }
    }
    let (roles, file_problems) = files::classify(&texts);
    problems.extend(file_problems);

    // Parse every manifest first: the CRDs among them join the catalog.
    let mut manifests: Vec<Doc> = Vec::new();
    let mut t = Tally::default();
    for (rel, role) in &roles {
        t.files += 1;
        match parse_documents(rel, &texts[rel]) {
            Err(p) => problems.push(p),
            Ok(docs) if *role == Role::Manifest => manifests.extend(docs),
            Ok(_) => {}
        }
    }
    let crds: Vec<(String, String)> = manifests
        .iter()
        .filter(|d| d.kind() == "CustomResourceDefinition")
        .map(|d| (d.origin.clone(), serde_json::to_string(&d.value).unwrap_or_default()))
        .collect();
    let catalog = load_catalog(&shared, &crds)?;
    let readme = shared.join("crds/README.md");
    let pins = flux::pins_from_readme(
        &std::fs::read_to_string(&readme).with_context(|| format!("read {}", readme.display()))?,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", readme.display()))?;

    let check_doc = |d: &Doc, problems: &mut Vec<Problem>| {
        problems.extend(catalog.validate(d));
        if d.kind() == "Secret" && (d.value.get("data").is_some() || d.value.get("stringData").is_some()) {
            problems.push(d.problem(
                ProblemKind::Secret,
                ".data",
                "a Secret with data in Git: create it at deploy time instead",
            ));
        }
    };
    for d in &manifests {
        t.documents += 1;
        check_doc(d, &mut problems);
    }

    // Every kustomization builds, and what it builds validates.
    let mut builds = Builds::new();
    for rel in roles.iter().filter(|(_, r)| **r == Role::Kustomization).map(|(p, _)| p) {
        let dir = rel.rsplit_once('/').map_or("", |(d, _)| d).to_owned();
        let built = kustomize(&a.kubectl, &root, &dir)?;
        t.builds += 1;
        match &built {
            Err(e) => problems.push(whole_file(ProblemKind::Build, &format!("kubectl kustomize {dir}"), e.clone())),
            Ok(docs) => {
                for d in docs {
                    t.built_documents += 1;
                    check_doc(d, &mut problems);
                }
            }
        }
        builds.insert(dir, built);
    }

    // The Flux graph of every cluster.
    let clusters_dir = deploy.join("clusters");
    let mut cluster_dirs: Vec<String> = std::fs::read_dir(&clusters_dir)
        .with_context(|| format!("list {}", clusters_dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| relative(&root, &e.path()))
        .collect();
    cluster_dirs.sort();
    for dir in &cluster_dirs {
        let name = dir.rsplit('/').next().unwrap_or(dir);
        let (set, set_problems) = flux::cluster_set(dir, REPO_SOURCE, &builds);
        problems.extend(set_problems);
        problems.extend(flux::check_cluster(name, &set, &pins));
        t.clusters += 1;
        t.kustomizations += set
            .iter()
            .filter(|d| d.kind() == "Kustomization" && d.api_version().starts_with("kustomize.toolkit"))
            .count();
        t.releases += set.iter().filter(|d| d.kind() == "HelmRelease").count();
    }

    problems.sort();
    problems.dedup();
    let mut out = std::io::stdout().lock();
    if a.list_kinds {
        for (v, k, source) in catalog.kinds() {
            writeln!(out, "schema {v} {k}: {source}")?;
        }
        for (v, k, why) in cyvault_render::check::schema::EXCEPTIONS {
            writeln!(out, "exception {v} {k}: {why}")?;
        }
    }
    for p in &problems {
        writeln!(out, "{p}")?;
    }
    writeln!(
        out,
        "deploy validate: {} documents in {} YAML files, {} kustomize builds ({} documents), {} clusters ({} Flux Kustomizations, {} HelmReleases), {} schemas: {} problem{}",
        t.documents,
        t.files,
        t.builds,
        t.built_documents,
        t.clusters,
        t.kustomizations,
        t.releases,
        catalog.len(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    )?;
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
