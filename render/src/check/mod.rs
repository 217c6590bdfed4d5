//! Checks of manifests, all without IO: the caller reads files and runs `kubectl kustomize`, and
//! hands in texts.
//!
//! - [`schema::Catalog`]: strict JSON-Schema validation of every document by apiVersion and kind
//!   (Kubernetes' own strict schemas, CRDs made strict, Cilium's and Karmada's schemas, and a few
//!   hand-written ones for kinds with no schema given), plus metadata checks.
//! - [`flux`]: per cluster, the Flux graph: Kustomization paths that build, `dependsOn` that
//!   resolve and form no cycle, sourceRefs that resolve, and versions that match the pins.
//! - [`files`]: what each YAML file under deploy/ is (manifest, kustomization, data), and that
//!   every manifest is listed by its kustomization.

use std::fmt;

use serde_json::Value;

pub mod files;
pub mod flux;
pub mod schema;

/// A problem's stable code (docs/errors.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    /// A document breaks its schema (unknown field, wrong type, missing field, bad value).
    Schema,
    /// No schema for the document's apiVersion and kind, and none of the listed exceptions.
    UnknownKind,
    /// metadata is missing a name, has a namespace it must not have (or lacks one), or is
    /// malformed.
    Metadata,
    /// The text is not YAML, or a document is not a mapping.
    Yaml,
    /// `kubectl kustomize` failed on a directory.
    Build,
    /// A Flux reference points at nothing: a path, a dependsOn, a sourceRef.
    Reference,
    /// dependsOn goes round in a circle.
    Cycle,
    /// A chart version, tag or image is not the one pinned.
    Version,
    /// Something secret is in Git.
    Secret,
    /// A manifest no kustomization lists (it would never be applied).
    Orphan,
}

impl ProblemKind {
    pub fn code(self) -> &'static str {
        match self {
            ProblemKind::Schema => "VAULT-DP-200",
            ProblemKind::UnknownKind => "VAULT-DP-201",
            ProblemKind::Metadata => "VAULT-DP-202",
            ProblemKind::Yaml => "VAULT-DP-203",
            ProblemKind::Build => "VAULT-DP-204",
            ProblemKind::Reference => "VAULT-DP-205",
            ProblemKind::Cycle => "VAULT-DP-206",
            ProblemKind::Version => "VAULT-DP-207",
            ProblemKind::Secret => "VAULT-DP-208",
            ProblemKind::Orphan => "VAULT-DP-209",
        }
    }
}

/// One problem, said so that a person can find it: where, which document, which field.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub kind: ProblemKind,
    /// A file (`deploy/apps/vault-csi/base/controller.yaml`) or a build
    /// (`kubectl kustomize deploy/apps/vault-csi/destroyer`).
    pub origin: String,
    /// The document's position in its file or build output, from 1; 0 for the whole file.
    pub index: usize,
    /// `Deployment vault-csi/vault-csi-controller`, or empty.
    pub object: String,
    /// The JSON path of the problem inside the document (`.spec.replicas`), or empty.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.origin)?;
        if self.index > 0 {
            write!(f, " document {}", self.index)?;
        }
        if !self.object.is_empty() {
            write!(f, " ({})", self.object)?;
        }
        if !self.path.is_empty() {
            write!(f, " at {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One document of a file or build output.
#[derive(Clone, Debug)]
pub struct Doc {
    pub origin: String,
    pub index: usize,
    pub value: Value,
}

impl Doc {
    pub fn str_at(&self, pointer: &str) -> Option<&str> {
        self.value.pointer(pointer).and_then(Value::as_str)
    }
    pub fn api_version(&self) -> &str {
        self.str_at("/apiVersion").unwrap_or("")
    }
    pub fn kind(&self) -> &str {
        self.str_at("/kind").unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.str_at("/metadata/name").unwrap_or("")
    }
    pub fn namespace(&self) -> Option<&str> {
        self.str_at("/metadata/namespace")
    }
    /// `Kind namespace/name` for messages.
    pub fn object(&self) -> String {
        let name = match self.namespace() {
            Some(ns) => format!("{ns}/{}", self.name()),
            None => self.name().to_owned(),
        };
        format!("{} {name}", self.kind()).trim().to_owned()
    }

    pub fn problem(&self, kind: ProblemKind, path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            kind,
            origin: self.origin.clone(),
            index: self.index,
            object: self.object(),
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Splits a YAML stream into its documents (empty ones skipped, as kubectl does), each a mapping.
pub fn parse_documents(origin: &str, text: &str) -> Result<Vec<Doc>, Problem> {
    let values: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| Problem {
        kind: ProblemKind::Yaml,
        origin: origin.to_owned(),
        index: 0,
        object: String::new(),
        path: String::new(),
        message: e.to_string(),
    })?;
    let mut docs = Vec::new();
    for v in values.into_iter().filter(|v| !v.is_null()) {
        let index = docs.len() + 1;
        if !v.is_object() {
            return Err(Problem {
                kind: ProblemKind::Yaml,
                origin: origin.to_owned(),
                index,
                object: String::new(),
                path: String::new(),
                message: format!("a document must be a mapping, not {v}"),
            });
        }
        docs.push(Doc { origin: origin.to_owned(), index, value: v });
    }
    Ok(docs)
}

/// A JSON pointer (`/spec/containers/0/name`) as a path people read (`.spec.containers[0].name`).
pub fn readable_path(pointer: &str) -> String {
    if pointer.is_empty() {
        return ".".to_owned();
    }
    let mut out = String::new();
    for seg in pointer.trim_start_matches('/').split('/') {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else if seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            out.push('.');
            out.push_str(&seg);
        } else {
            out.push_str(&format!("[{}]", Value::String(seg)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_read_like_kubectl_explain() {
        assert_eq!(readable_path(""), ".");
        assert_eq!(readable_path("/spec/containers/0/name"), ".spec.containers[0].name");
        assert_eq!(
            readable_path("/metadata/annotations/storageclass.kubernetes.io~1is-default-class"),
            ".metadata.annotations[\"storageclass.kubernetes.io/is-default-class\"]"
        );
    }

    #[test]
    fn documents_are_numbered_skipping_empty_ones() {
        let docs = parse_documents("f.yaml", "# c\n---\nkind: A\n---\n---\nkind: B\n").unwrap();
        assert_eq!(docs.iter().map(|d| (d.index, d.kind())).collect::<Vec<_>>(), [(1, "A"), (2, "B")]);
        let e = parse_documents("f.yaml", "- a\n").unwrap_err();
        assert_eq!(e.to_string(), "VAULT-DP-203: f.yaml document 1: a document must be a mapping, not [\"a\"]");
    }
}
