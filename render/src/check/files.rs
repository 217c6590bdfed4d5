//! What each YAML file under deploy/ is, from the kustomizations that mention it:
//! a kustomization itself, data (a file a configMapGenerator embeds, or a patch), or a manifest,
//! which must be listed in some kustomization's `resources` (else nothing ever applies it).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{Problem, ProblemKind, parse_documents};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `kustomization.yaml`: checked by `kubectl kustomize` (which rejects unknown fields).
    Kustomization,
    /// Embedded by a generator or used as a patch: not a whole object.
    Data,
    /// Kubernetes objects.
    Manifest,
}

/// Whether a path names a kustomization file.
pub fn is_kustomization(path: &str) -> bool {
    matches!(path.rsplit('/').next(), Some("kustomization.yaml" | "kustomization.yml" | "Kustomization"))
}

/// Whether a path is YAML by its name.
pub fn is_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml") || is_kustomization(path)
}

/// `dir/rel` with `.` and `..` resolved (paths use `/`).
pub fn join(dir: &str, rel: &str) -> String {
    let mut parts: Vec<&str> =
        if rel.starts_with('/') { Vec::new() } else { dir.split('/').filter(|s| !s.is_empty()).collect() };
    for seg in rel.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

/// The roles of the YAML files among `files` (path → text), and the problems found: files that
/// do not parse, and manifests no kustomization lists.
pub fn classify(files: &BTreeMap<String, String>) -> (BTreeMap<String, Role>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut data = BTreeSet::new();
    let mut listed = BTreeSet::new();
    for (path, text) in files.iter().filter(|(p, _)| is_kustomization(p)) {
        let dir = parent(path);
        let docs = match parse_documents(path, text) {
            Ok(d) => d,
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        for d in docs {
            let k = &d.value;
            for key in ["resources", "crds", "components"] {
                for r in strings(&k[key]) {
                    let full = join(dir, r);
                    listed.insert(full.clone());
                    // A directory: its kustomization is what is listed.
                    listed.insert(join(&full, "kustomization.yaml"));
                }
            }
            for key in ["configMapGenerator", "secretGenerator"] {
                for g in k[key].as_array().into_iter().flatten() {
                    for f in strings(&g["files"]).into_iter().chain(strings(&g["envs"])) {
                        let file = f.split_once('=').map_or(f, |(_, p)| p);
                        data.insert(join(dir, file));
                    }
                }
            }
            for p in k["patches"].as_array().into_iter().flatten() {
                if let Some(f) = p["path"].as_str() {
                    data.insert(join(dir, f));
                }
            }
            for f in strings(&k["patchesStrategicMerge"]) {
                data.insert(join(dir, f));
            }
        }
    }
    let mut roles = BTreeMap::new();
    for path in files.keys().filter(|p| is_yaml(p)) {
        let role = if is_kustomization(path) {
            Role::Kustomization
        } else if data.contains(path) {
            Role::Data
        } else {
            Role::Manifest
        };
        if role == Role::Manifest && !listed.contains(path) {
            problems.push(Problem {
                kind: ProblemKind::Orphan,
                origin: path.clone(),
                index: 0,
                object: String::new(),
                path: String::new(),
                message: format!(
                    "no kustomization lists this file in its resources, so Flux never applies it (add it to {}/kustomization.yaml)",
                    parent(path)
                ),
            });
        }
        roles.insert(path.clone(), role);
    }
    (roles, problems)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_join() {
        assert_eq!(join("deploy/apps/x", "../base"), "deploy/apps/base");
        assert_eq!(join("deploy/apps/x", "./a.yaml"), "deploy/apps/x/a.yaml");
        assert_eq!(join("", "a/b"), "a/b");
    }

    #[test]
    fn roles_and_orphans() {
        let files: BTreeMap<String, String> = [
            (
                "d/kustomization.yaml",
                "resources: [a.yaml, sub]\nconfigMapGenerator:\n  - name: c\n    files: [k=values.yaml]\n",
            ),
            ("d/a.yaml", "kind: A\n"),
            ("d/values.yaml", "x: 1\n"),
            ("d/sub/kustomization.yaml", "resources: []\n"),
            ("d/lost.yaml", "kind: B\n"),
            ("d/haproxy.cfg", "global\n"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        let (roles, problems) = classify(&files);
        assert_eq!(roles["d/a.yaml"], Role::Manifest);
        assert_eq!(roles["d/values.yaml"], Role::Data);
        assert_eq!(roles["d/kustomization.yaml"], Role::Kustomization);
        assert!(!roles.contains_key("d/haproxy.cfg"));
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].to_string().starts_with("VAULT-DP-209: d/lost.yaml: no kustomization lists"),
            "{}",
            problems[0]
        );
    }
}
