//! The Flux graph of each cluster, and version pins.
//!
//! A cluster's set is everything its Flux would apply: the build of `deploy/clusters/<name>`, and
//! recursively the build of every Flux Kustomization's `spec.path` that comes from this
//! repository. In that set: every Kustomization path has a kustomization that builds, every
//! `dependsOn` names a Kustomization (or HelmRelease) of the same set and none goes round in a
//! circle, every `sourceRef`/`chartRef` names a source of the set, and every chart version, Git
//! tag and pinned image is the version `../shared/crds/README.md` pins.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{Doc, Problem, ProblemKind};

/// The kustomize build of each directory (path from the repository root → documents or the
/// build's error).
pub type Builds = BTreeMap<String, Result<Vec<Doc>, String>>;

const KUSTOMIZE: &str = "kustomize.toolkit.fluxcd.io/v1";
const HELM: &str = "helm.toolkit.fluxcd.io/v2";
const SOURCE: &str = "source.toolkit.fluxcd.io/v1";

/// What one pinned upstream is called in manifests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The upstream (`rook`, `cilium`, …) as the README names it.
    pub project: &'static str,
    /// The version the README pins (`v1.20.6`).
    pub version: String,
    /// Helm chart names of this project, and whether their versions drop the `v`.
    pub charts: &'static [&'static str],
    pub chart_version_without_v: bool,
    /// Git repository URLs ending in one of these are this project's.
    pub git_repos: &'static [&'static str],
    /// Container images (last path segment, before the tag) released with this project.
    pub images: &'static [&'static str],
}

/// The upstreams and where their versions are in the README: (project, heading prefix, marker
/// after which the first `vX.Y.Z` is the version).
const PIN_TABLE: &[(&str, &str, &str)] = &[
    ("source-controller", "## crds/flux/", "fluxcd/source-controller"),
    ("kustomize-controller", "## crds/flux/", "fluxcd/kustomize-controller"),
    ("helm-controller", "## crds/flux/", "fluxcd/helm-controller"),
    ("rook", "## crds/rook/", "rook/rook"),
    ("karmada", "## crds/karmada/", "karmada-io/karmada"),
    ("cilium", "## crds/cilium/", "Cilium"),
    ("external-snapshotter", "## crds/external-snapshotter/", "Tag"),
];

/// Reads the pinned versions from `../shared/crds/README.md`.
pub fn pins_from_readme(readme: &str) -> Result<Vec<Pin>, String> {
    let mut pins = Vec::new();
    for &(project, heading, marker) in PIN_TABLE {
        let section = readme
            .split("\n## ")
            .map(|s| format!("## {s}"))
            .find(|s| s.starts_with(heading))
            .ok_or_else(|| format!("no section {heading:?} in the README"))?;
        let at = section.find(marker).ok_or_else(|| format!("no {marker:?} in section {heading:?}"))?;
        let version = first_version(&section[at + marker.len()..])
            .ok_or_else(|| format!("no vX.Y.Z after {marker:?} in section {heading:?}"))?;
        let (charts, without_v, git, images): (&[&str], bool, &[&str], &[&str]) = match project {
            "rook" => (&["rook-ceph", "rook-ceph-cluster"], false, &["rook/rook"], &[]),
            "karmada" => (&["karmada"], false, &["karmada-io/karmada"], &[]),
            "cilium" => (&["cilium"], true, &["cilium/cilium"], &[]),
            "external-snapshotter" => (
                &[],
                false,
                &["kubernetes-csi/external-snapshotter"],
                &["csi-snapshotter", "snapshot-controller", "snapshot-validation-webhook"],
            ),
            _ => (&[], false, &[], &[]),
        };
        pins.push(Pin { project, version, charts, chart_version_without_v: without_v, git_repos: git, images });
    }
    Ok(pins)
}

fn first_version(s: &str) -> Option<String> {
    let b = s.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'v' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let rest: String = s[i + 1..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            if rest.split('.').count() == 3 && rest.split('.').all(|p| !p.is_empty()) {
                return Some(format!("v{rest}"));
            }
        }
    }
    None
}

/// The normalized directory of a Flux path (`./deploy/x/` → `deploy/x`).
pub fn flux_path(p: &str) -> String {
    super::files::join("", p.trim_start_matches("./"))
}

/// Everything Flux applies in one cluster: the cluster directory's build, then the builds of the
/// paths its Kustomizations name (from `repo_source`, the GitRepository of this repository),
/// recursively. Problems: paths without a build, builds that failed.
pub fn cluster_set(cluster_dir: &str, repo_source: &str, builds: &Builds) -> (Vec<Doc>, Vec<Problem>) {
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let mut queue = vec![(cluster_dir.to_owned(), None::<Doc>)];
    while let Some((dir, from)) = queue.pop() {
        if !seen.insert(dir.clone()) {
            continue;
        }
        let built = match builds.get(&dir) {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                problems.push(match &from {
                    Some(k) => k.problem(ProblemKind::Build, ".spec.path", format!("{dir} does not build: {e}")),
                    None => Problem {
                        kind: ProblemKind::Build,
                        origin: format!("kubectl kustomize {dir}"),
                        index: 0,
                        object: String::new(),
                        path: String::new(),
                        message: e.clone(),
                    },
                });
                continue;
            }
            None => {
                problems.push(match &from {
                    Some(k) => k.problem(
                        ProblemKind::Reference,
                        ".spec.path",
                        format!("{dir} has no kustomization.yaml in this repository"),
                    ),
                    None => Problem {
                        kind: ProblemKind::Reference,
                        origin: dir.clone(),
                        index: 0,
                        object: String::new(),
                        path: String::new(),
                        message: "the cluster directory has no kustomization.yaml".into(),
                    },
                });
                continue;
            }
        };
        for d in built {
            if d.api_version() == KUSTOMIZE
                && d.kind() == "Kustomization"
                && d.str_at("/spec/sourceRef/kind") == Some("GitRepository")
                && d.str_at("/spec/sourceRef/name") == Some(repo_source)
                && let Some(p) = d.str_at("/spec/path")
            {
                queue.push((flux_path(p), Some(d.clone())));
            }
            docs.push(d.clone());
        }
    }
    (docs, problems)
}

fn key(d: &Doc, ns: Option<&str>, name: &str) -> (String, String) {
    (ns.or(d.namespace()).unwrap_or("").to_owned(), name.to_owned())
}

/// The Flux checks on one cluster's set.
pub fn check_cluster(cluster: &str, set: &[Doc], pins: &[Pin]) -> Vec<Problem> {
    let mut out = Vec::new();
    let of = |api: &str, kind: &str| -> BTreeMap<(String, String), &Doc> {
        set.iter()
            .filter(|d| d.api_version() == api && d.kind() == kind)
            .map(|d| ((d.namespace().unwrap_or("").to_owned(), d.name().to_owned()), d))
            .collect()
    };
    let kustomizations = of(KUSTOMIZE, "Kustomization");
    let releases = of(HELM, "HelmRelease");
    let sources: BTreeMap<&str, BTreeMap<(String, String), &Doc>> =
        ["GitRepository", "OCIRepository", "HelmRepository", "Bucket", "HelmChart"]
            .into_iter()
            .map(|k| (k, of(SOURCE, k)))
            .collect();

    // Duplicates: two objects of one kind and name would fight.
    let mut counts: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for d in set {
        *counts
            .entry((d.kind().to_owned(), d.namespace().unwrap_or("").to_owned(), d.name().to_owned()))
            .or_default() += 1;
    }
    for ((kind, ns, name), n) in counts {
        if n > 1 && (kind == "Kustomization" || kind == "HelmRelease" || sources.contains_key(kind.as_str())) {
            out.push(Problem {
                kind: ProblemKind::Reference,
                origin: format!("cluster {cluster}"),
                index: 0,
                object: format!("{kind} {ns}/{name}"),
                path: String::new(),
                message: format!("defined {n} times in the cluster's set"),
            });
        }
    }

    // dependsOn and cycles, for Kustomizations and HelmReleases alike.
    for (objects, what) in [(&kustomizations, "Kustomization"), (&releases, "HelmRelease")] {
        let mut graph: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
        for (k, d) in objects {
            let mut edges = Vec::new();
            for (i, dep) in
                d.value.pointer("/spec/dependsOn").and_then(Value::as_array).into_iter().flatten().enumerate()
            {
                let name = dep["name"].as_str().unwrap_or("");
                let target = key(d, dep["namespace"].as_str(), name);
                if !objects.contains_key(&target) {
                    out.push(d.problem(
                        ProblemKind::Reference,
                        format!(".spec.dependsOn[{i}]"),
                        format!("no {what} {}/{} in cluster {cluster}", target.0, target.1),
                    ));
                } else {
                    edges.push(target);
                }
            }
            graph.insert(k.clone(), edges);
        }
        for cycle in cycles(&graph) {
            let names: Vec<String> = cycle.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
            if let Some(d) = cycle.first().and_then(|k| objects.get(k)) {
                out.push(d.problem(
                    ProblemKind::Cycle,
                    ".spec.dependsOn",
                    format!("dependsOn goes round: {}", names.join(" -> ")),
                ));
            }
        }
    }

    // sourceRefs.
    let resolve = |d: &Doc, pointer: &str, allowed: &[&str], out: &mut Vec<Problem>| {
        let Some(r) = d.value.pointer(pointer) else { return };
        let kind = r["kind"].as_str().unwrap_or("");
        let name = r["name"].as_str().unwrap_or("");
        let path = super::readable_path(pointer);
        if !allowed.contains(&kind) {
            out.push(d.problem(
                ProblemKind::Reference,
                path,
                format!("a {kind} cannot be a source here (one of {})", allowed.join(", ")),
            ));
            return;
        }
        let target = key(d, r["namespace"].as_str(), name);
        if !sources.get(kind).is_some_and(|m| m.contains_key(&target)) {
            out.push(d.problem(
                ProblemKind::Reference,
                path,
                format!("no {kind} {}/{} in cluster {cluster}", target.0, target.1),
            ));
        }
    };
    for d in kustomizations.values() {
        resolve(d, "/spec/sourceRef", &["GitRepository", "OCIRepository", "Bucket"], &mut out);
    }
    for d in releases.values() {
        resolve(d, "/spec/chart/spec/sourceRef", &["HelmRepository", "GitRepository", "Bucket"], &mut out);
        resolve(d, "/spec/chartRef", &["OCIRepository", "HelmChart"], &mut out);
        if d.value.pointer("/spec/chart").is_none() && d.value.pointer("/spec/chartRef").is_none() {
            out.push(d.problem(ProblemKind::Reference, ".spec", "neither chart nor chartRef"));
        }
    }

    // Pins.
    for d in releases.values() {
        let Some(chart) = d.str_at("/spec/chart/spec/chart") else { continue };
        let version = d.str_at("/spec/chart/spec/version").unwrap_or("");
        match pins.iter().find(|p| p.charts.contains(&chart)) {
            None => out.push(d.problem(
                ProblemKind::Version,
                ".spec.chart.spec.chart",
                format!("chart {chart} has no pinned version in ../shared/crds/README.md"),
            )),
            Some(p) => {
                let want = if p.chart_version_without_v {
                    p.version.trim_start_matches('v').to_owned()
                } else {
                    p.version.clone()
                };
                if version != want {
                    out.push(d.problem(
                        ProblemKind::Version,
                        ".spec.chart.spec.version",
                        format!("chart {chart} is {version:?}; {} is pinned at {want} (the schemas in ../shared are of that version)", p.project),
                    ));
                }
            }
        }
    }
    for (kind, pointer) in [("GitRepository", "/spec/ref/tag"), ("OCIRepository", "/spec/ref/tag")] {
        for d in sources[kind].values() {
            let url = d.str_at("/spec/url").unwrap_or("").trim_end_matches(".git").trim_end_matches('/');
            let Some(p) = pins.iter().find(|p| p.git_repos.iter().any(|r| url.ends_with(r))) else { continue };
            let tag = d.str_at(pointer);
            if tag != Some(p.version.as_str()) {
                out.push(d.problem(
                    ProblemKind::Version,
                    super::readable_path(pointer),
                    format!("{url} must be pinned to tag {} (found {tag:?})", p.version),
                ));
            }
        }
    }
    for d in set {
        for (path, image) in images(&d.value, "") {
            let (repo, tag) = split_image(image);
            let Some(tag) = tag.filter(|t| *t != "latest") else {
                out.push(d.problem(ProblemKind::Version, path, format!("image {image:?} has no pinned tag")));
                continue;
            };
            let short = repo.rsplit('/').next().unwrap_or(repo);
            if let Some(p) = pins.iter().find(|p| p.images.contains(&short))
                && tag != p.version
            {
                out.push(d.problem(
                    ProblemKind::Version,
                    path,
                    format!("image {image} is of {} {}; it must match the pinned {}", p.project, tag, p.version),
                ));
            }
        }
    }
    out
}

/// Every `image:` of containers and initContainers in a document, with its path.
fn images<'a>(v: &'a Value, path: &str) -> Vec<(String, &'a str)> {
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}.{k}");
                if (k == "containers" || k == "initContainers") && x.is_array() {
                    for (i, c) in x.as_array().into_iter().flatten().enumerate() {
                        if let Some(img) = c.get("image").and_then(Value::as_str) {
                            out.push((format!("{p}[{i}].image"), img));
                        }
                    }
                } else {
                    out.extend(images(x, &p));
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                out.extend(images(x, &format!("{path}[{i}]")));
            }
        }
        _ => {}
    }
    out
}

/// `registry/repo:tag@digest` → (`registry/repo`, `tag`).
fn split_image(image: &str) -> (&str, Option<&str>) {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    match last.rsplit_once(':') {
        Some((_, tag)) => (&no_digest[..no_digest.len() - tag.len() - 1], Some(tag)),
        None => (no_digest, None),
    }
}

/// The cycles of a graph, each once (as found from its smallest node).
fn cycles(graph: &BTreeMap<(String, String), Vec<(String, String)>>) -> Vec<Vec<(String, String)>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        n: &(String, String),
        g: &BTreeMap<(String, String), Vec<(String, String)>>,
        marks: &mut BTreeMap<(String, String), Mark>,
        stack: &mut Vec<(String, String)>,
        out: &mut Vec<Vec<(String, String)>>,
    ) {
        match marks.get(n) {
            Some(Mark::Done) => return,
            Some(Mark::Open) => {
                if let Some(i) = stack.iter().position(|x| x == n) {
                    let mut c = stack[i..].to_vec();
                    c.push(n.clone());
                    out.push(c);
                }
                return;
            }
            None => {}
        }
        marks.insert(n.clone(), Mark::Open);
        stack.push(n.clone());
        for m in g.get(n).into_iter().flatten() {
            visit(m, g, marks, stack, out);
        }
        stack.pop();
        marks.insert(n.clone(), Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut out = Vec::new();
    for n in graph.keys() {
        visit(n, graph, &mut marks, &mut Vec::new(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn doc(i: usize, v: Value) -> Doc {
        Doc { origin: "kubectl kustomize deploy/clusters/x".into(), index: i, value: v }
    }

    fn ks(name: &str, deps: &[&str], path: &str) -> Value {
        json!({"apiVersion": KUSTOMIZE, "kind": "Kustomization", "metadata": {"name": name, "namespace": "flux-system"},
               "spec": {"path": path, "interval": "10m", "prune": true,
                        "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
                        "dependsOn": deps.iter().map(|d| json!({"name": d})).collect::<Vec<_>>()}})
    }

    /// The shape of ../shared/crds/README.md (its sections and how versions are written), not its text.
    const README: &str = "# Schemas\n\n## crds/flux/  (x)\n| a | b | fluxcd/source-controller tag v1.9.1 (0123) |\n\
        | c | fluxcd/kustomize-controller tag v1.9.4 |\n| d | fluxcd/helm-controller tag v1.6.3 (4567) |\n\
        \n## crds/rook/  (y)\nSplit at rook/rook tag **v1.20.6** (89ab).\n\
        \n## crds/karmada/  (z)\nkarmada-io/karmada tag **v1.18.2** (cdef).\n\
        \n## crds/cilium/  (w)\nthe schemas of the Cilium **v1.18.2** CRDs, from a catalog at v9.9.9\n\
        \n## crds/external-snapshotter/  (v)\nTag **v8.6.0** (0000), client/config/crd/\n";

    #[test]
    fn readme_pins() {
        let readme = README;
        let pins = pins_from_readme(readme).unwrap();
        let got: Vec<(&str, &str)> = pins.iter().map(|p| (p.project, p.version.as_str())).collect();
        assert_eq!(
            got,
            [
                ("source-controller", "v1.9.1"),
                ("kustomize-controller", "v1.9.4"),
                ("helm-controller", "v1.6.3"),
                ("rook", "v1.20.6"),
                ("karmada", "v1.18.2"),
                ("cilium", "v1.18.2"),
                ("external-snapshotter", "v8.6.0"),
            ]
        );
        assert!(pins_from_readme("# nothing").is_err());
    }

    #[test]
    fn depends_on_sources_cycles_and_pins() {
        let pins = pins_from_readme(README).unwrap();
        let set = vec![
            doc(
                1,
                json!({"apiVersion": SOURCE, "kind": "GitRepository", "metadata": {"name": "flux-system", "namespace": "flux-system"},
                          "spec": {"url": "ssh://git@github.com/cyberun/vault", "interval": "1m", "ref": {"branch": "main"}}}),
            ),
            doc(2, ks("a", &["b"], "./a")),
            doc(3, ks("b", &["a"], "./b")),
            doc(4, ks("c", &["nope"], "./c")),
            doc(
                5,
                json!({"apiVersion": HELM, "kind": "HelmRelease", "metadata": {"name": "cilium", "namespace": "kube-system"},
                          "spec": {"interval": "1h", "chart": {"spec": {"chart": "cilium", "version": "1.17.0",
                                   "sourceRef": {"kind": "HelmRepository", "name": "cilium", "namespace": "flux-system"}}}}}),
            ),
            doc(
                6,
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "n"},
                          "spec": {"template": {"spec": {"containers": [
                              {"name": "s", "image": "registry.k8s.io/sig-storage/csi-snapshotter:v8.5.0"},
                              {"name": "t", "image": "busybox"}]}}}}),
            ),
        ];
        let lines: Vec<String> = check_cluster("x", &set, &pins).iter().map(ToString::to_string).collect();
        expect_test::expect![[r#"
            VAULT-DP-205: kubectl kustomize deploy/clusters/x document 4 (Kustomization flux-system/c) at .spec.dependsOn[0]: no Kustomization flux-system/nope in cluster x
            VAULT-DP-206: kubectl kustomize deploy/clusters/x document 2 (Kustomization flux-system/a) at .spec.dependsOn: dependsOn goes round: flux-system/a -> flux-system/b -> flux-system/a
            VAULT-DP-205: kubectl kustomize deploy/clusters/x document 5 (HelmRelease kube-system/cilium) at .spec.chart.spec.sourceRef: no HelmRepository flux-system/cilium in cluster x
            VAULT-DP-207: kubectl kustomize deploy/clusters/x document 5 (HelmRelease kube-system/cilium) at .spec.chart.spec.version: chart cilium is "1.17.0"; cilium is pinned at 1.18.2 (the schemas in ../shared are of that version)
            VAULT-DP-207: kubectl kustomize deploy/clusters/x document 6 (Deployment n/d) at .spec.template.spec.containers[0].image: image registry.k8s.io/sig-storage/csi-snapshotter:v8.5.0 is of external-snapshotter v8.5.0; it must match the pinned v8.6.0
            VAULT-DP-207: kubectl kustomize deploy/clusters/x document 6 (Deployment n/d) at .spec.template.spec.containers[1].image: image "busybox" has no pinned tag"#]]
        .assert_eq(&lines.join("\n"));
    }

    #[test]
    fn cluster_sets_follow_paths() {
        let mut builds = Builds::new();
        builds.insert(
            "deploy/clusters/x".into(),
            Ok(vec![doc(1, ks("a", &[], "./deploy/a")), doc(2, ks("b", &[], "./deploy/missing"))]),
        );
        builds.insert(
            "deploy/a".into(),
            Ok(vec![doc(1, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}))]),
        );
        let (set, problems) = cluster_set("deploy/clusters/x", "flux-system", &builds);
        assert_eq!(set.len(), 3);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].to_string().contains("deploy/missing has no kustomization.yaml"), "{}", problems[0]);
    }

    #[test]
    fn images_split() {
        assert_eq!(split_image("quay.io/ceph/ceph:v19.2.3"), ("quay.io/ceph/ceph", Some("v19.2.3")));
        assert_eq!(split_image("localhost:5000/x"), ("localhost:5000/x", None));
        assert_eq!(split_image("a/b:1@sha256:abc"), ("a/b", Some("1")));
    }
}
