//! The schema catalog: apiVersion + kind → a strict JSON-Schema validator, loaded from the texts
//! of the reference schemas (`../shared/k8s-schemas/`, `../shared/crds/`) and of the CRDs found
//! under deploy/.
//!
//! Strictness: Kubernetes' standalone-strict schemas and Cilium's already reject unknown fields.
//! CRD schemas are made strict here the way kubeconform does: every object with `properties` and
//! without `x-kubernetes-preserve-unknown-fields` gets `additionalProperties: false`; OpenAPI's
//! `nullable` becomes a `null` type, and `x-kubernetes-int-or-string` an integer-or-string type.
//! Karmada's Cluster (Swagger 2.0 definitions, draft 4) is made strict the same way. CEL rules
//! (`x-kubernetes-validations`) are not evaluated, and `format` is not asserted (Kubernetes' own
//! formats such as `int-or-string` are not JSON Schema's).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use jsonschema::{Draft, Validator};
use serde_json::{Value, json};

use super::{Doc, Problem, ProblemKind, readable_path};

/// Whether objects of a kind live in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// Where a kind's schema came from, for the summary and for messages.
#[derive(Clone, Debug)]
struct Entry {
    source: String,
    scope: Scope,
    draft: Draft,
    schema: Value,
    compiled: OnceLock<Result<Validator, String>>,
}

/// Kinds deliberately validated without a schema from ../shared, each with the reason.
pub const EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "policy/v1",
        "PodDisruptionBudget",
        "no schema in ../shared: checked against a strict schema written here from the Kubernetes 1.34 API reference",
    ),
    (
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "no schema in ../shared: checked here for its top-level shape; deploy/crds/placementpolicy.yaml is also \
         round-tripped through k8s-openapi's typed CustomResourceDefinition by placement/tests/crd.rs, and its \
         schema validates its own objects in this catalog",
    ),
];

/// Every schema, by (apiVersion, kind).
#[derive(Debug, Default)]
pub struct Catalog {
    entries: BTreeMap<(String, String), Entry>,
}

/// A schema text that could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct LoadError {
    pub file: String,
    pub message: String,
}

fn load_err(source: &str, message: impl Into<String>) -> LoadError {
    LoadError { file: source.to_owned(), message: message.into() }
}

impl Catalog {
    /// A catalog holding the hand-written schemas of [`EXCEPTIONS`].
    pub fn new() -> Catalog {
        let mut c = Catalog::default();
        c.insert(
            "policy/v1",
            "PodDisruptionBudget",
            "cyvault-render (hand-written)",
            Scope::Namespaced,
            Draft::Draft202012,
            pdb_schema(),
        );
        c.insert(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "cyvault-render (hand-written)",
            Scope::Cluster,
            Draft::Draft202012,
            crd_schema(),
        );
        c
    }

    fn insert(&mut self, api_version: &str, kind: &str, source: &str, scope: Scope, draft: Draft, schema: Value) {
        self.entries.insert(
            (api_version.to_owned(), kind.to_owned()),
            Entry { source: source.to_owned(), scope, draft, schema, compiled: OnceLock::new() },
        );
    }

    /// How many kinds the catalog knows.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// (apiVersion, kind, source) of every schema, sorted.
    pub fn kinds(&self) -> Vec<(String, String, String)> {
        self.entries.iter().map(|((v, k), e)| (v.clone(), k.clone(), e.source.clone())).collect()
    }

    pub fn scope(&self, api_version: &str, kind: &str) -> Option<Scope> {
        self.entries.get(&(api_version.to_owned(), kind.to_owned())).map(|e| e.scope)
    }

    /// A schema of `k8s-schemas/<version>-standalone-strict/` (JSON, draft 2020-12, with
    /// `x-kubernetes-group-version-kind`). Namespace, ClusterRole(Binding), StorageClass and
    /// CSIDriver are cluster-scoped; the rest of that set is namespaced.
    pub fn add_kubernetes(&mut self, source: &str, text: &str) -> Result<(), LoadError> {
        let schema: Value = serde_json::from_str(text).map_err(|e| load_err(source, e.to_string()))?;
        let gvk = schema
            .get("x-kubernetes-group-version-kind")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .ok_or_else(|| load_err(source, "no x-kubernetes-group-version-kind"))?;
        let field = |f: &str| gvk[f].as_str().unwrap_or("").to_owned();
        let (g, v, k) = (field("group"), field("version"), field("kind"));
        if v.is_empty() || k.is_empty() {
            return Err(load_err(source, "x-kubernetes-group-version-kind lacks version or kind"));
        }
        let api_version = if g.is_empty() { v.to_owned() } else { format!("{g}/{v}") };
        let scope = match k.as_str() {
            "Namespace"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "StorageClass"
            | "CSIDriver"
            | "PersistentVolume"
            | "CustomResourceDefinition"
            | "Node" => Scope::Cluster,
            _ => Scope::Namespaced,
        };
        self.insert(&api_version, &k, source, scope, Draft::Draft202012, schema);
        Ok(())
    }

    /// Every CustomResourceDefinition in a YAML text: one entry per served version, its
    /// openAPIV3Schema made strict. Returns how many kinds were added.
    pub fn add_crds(&mut self, source: &str, text: &str) -> Result<usize, LoadError> {
        let docs = super::parse_documents(source, text).map_err(|p| load_err(source, p.message))?;
        let mut n = 0;
        for d in docs.iter().filter(|d| d.kind() == "CustomResourceDefinition") {
            let spec = &d.value["spec"];
            let group = spec["group"].as_str().ok_or_else(|| load_err(source, "a CRD without spec.group"))?;
            let kind =
                spec["names"]["kind"].as_str().ok_or_else(|| load_err(source, "a CRD without spec.names.kind"))?;
            let scope = match spec["scope"].as_str() {
                Some("Cluster") => Scope::Cluster,
                Some("Namespaced") => Scope::Namespaced,
                other => return Err(load_err(source, format!("{kind}: scope {other:?}"))),
            };
            for v in spec["versions"].as_array().into_iter().flatten() {
                if v["served"] != json!(true) {
                    continue;
                }
                let name = v["name"].as_str().unwrap_or("");
                let Some(schema) = v.pointer("/schema/openAPIV3Schema") else {
                    return Err(load_err(source, format!("{kind} {name}: no openAPIV3Schema")));
                };
                let mut strict = schema.clone();
                // The API server takes apiVersion, kind and metadata as given at a CRD's root
                // whether the schema lists them or not.
                if let Some(props) = strict.get_mut("properties").and_then(Value::as_object_mut) {
                    for (k, t) in [("apiVersion", "string"), ("kind", "string"), ("metadata", "object")] {
                        props.entry(k).or_insert_with(|| json!({ "type": t }));
                    }
                }
                strictify(&mut strict);
                self.insert(&format!("{group}/{name}"), kind, source, scope, Draft::Draft4, strict);
                n += 1;
            }
        }
        Ok(n)
    }

    /// A standalone JSON Schema for one kind (Cilium's, in kubeconform's format, already strict).
    pub fn add_json_schema(
        &mut self,
        source: &str,
        api_version: &str,
        kind: &str,
        scope: Scope,
        text: &str,
    ) -> Result<(), LoadError> {
        let mut schema: Value = serde_json::from_str(text).map_err(|e| load_err(source, e.to_string()))?;
        ecma_patterns(&mut schema);
        self.insert(api_version, kind, source, scope, Draft::Draft4, schema);
        Ok(())
    }

    /// A Swagger 2.0 extract (`$ref` into `definitions`, draft 4), made strict.
    pub fn add_swagger(
        &mut self,
        source: &str,
        api_version: &str,
        kind: &str,
        scope: Scope,
        text: &str,
    ) -> Result<(), LoadError> {
        let mut schema: Value = serde_json::from_str(text).map_err(|e| load_err(source, e.to_string()))?;
        if let Some(defs) = schema.get_mut("definitions").and_then(Value::as_object_mut) {
            for d in defs.values_mut() {
                strictify(d);
            }
        }
        self.insert(api_version, kind, source, scope, Draft::Draft4, schema);
        Ok(())
    }

    /// Every problem of one document: its metadata, then its schema. A kind the catalog does
    /// not know is a problem, never a skip.
    pub fn validate(&self, doc: &Doc) -> Vec<Problem> {
        let (api_version, kind) = (doc.api_version(), doc.kind());
        if api_version.is_empty() || kind.is_empty() {
            return vec![doc.problem(ProblemKind::UnknownKind, "", "a document without apiVersion and kind")];
        }
        let Some(entry) = self.entries.get(&(api_version.to_owned(), kind.to_owned())) else {
            let others: Vec<&str> = self.entries.keys().filter(|(_, k)| k == kind).map(|(v, _)| v.as_str()).collect();
            let hint = if others.is_empty() {
                "no schema knows this kind".to_owned()
            } else {
                format!("known versions of {kind}: {}", others.join(", "))
            };
            return vec![doc.problem(ProblemKind::UnknownKind, ".apiVersion", format!("{api_version} {kind}: {hint}"))];
        };
        let mut out = metadata_problems(doc, entry.scope);
        let compiled = entry.compiled.get_or_init(|| {
            jsonschema::options()
                .with_draft(entry.draft)
                .should_validate_formats(false)
                .build(&entry.schema)
                .map_err(|e| e.to_string())
        });
        match compiled {
            Err(e) => out.push(doc.problem(
                ProblemKind::Schema,
                "",
                format!("the schema from {} does not compile: {e}", entry.source),
            )),
            Ok(v) => {
                let mut seen = std::collections::BTreeSet::new();
                for err in v.iter_errors(&doc.value) {
                    let path = readable_path(&err.instance_path().to_string());
                    let msg = err.to_string();
                    if seen.insert((path.clone(), msg.clone())) {
                        out.push(doc.problem(ProblemKind::Schema, path, msg));
                    }
                }
            }
        }
        out
    }
}

/// The ObjectMeta fields a manifest may set (the rest are the server's).
const METADATA_FIELDS: &[&str] =
    &["name", "namespace", "labels", "annotations", "finalizers", "ownerReferences", "generateName"];

fn metadata_problems(doc: &Doc, scope: Scope) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut bad = |path: &str, msg: String| out.push(doc.problem(ProblemKind::Metadata, path, msg));
    let Some(meta) = doc.value.get("metadata").and_then(Value::as_object) else {
        bad(".metadata", "no metadata".into());
        return out;
    };
    for k in meta.keys() {
        if !METADATA_FIELDS.contains(&k.as_str()) {
            bad(&format!(".metadata.{k}"), format!("unknown or server-set metadata field {k:?}"));
        }
    }
    let rbac = doc.api_version().starts_with("rbac.authorization.k8s.io/");
    match meta.get("name").and_then(Value::as_str) {
        None => bad(".metadata.name", "no name".into()),
        Some(n) if !(is_subdomain(n) || rbac && is_rbac_name(n)) => {
            bad(".metadata.name", format!("{n:?} is not a DNS-1123 subdomain (lowercase letters, digits, '-', '.')"))
        }
        Some(_) => {}
    }
    match (scope, meta.get("namespace")) {
        (Scope::Namespaced, None) => bad(".metadata.namespace", "a namespaced kind without metadata.namespace".into()),
        (Scope::Namespaced, Some(ns)) => {
            if !ns.as_str().is_some_and(crate::is_dns_label) {
                bad(".metadata.namespace", format!("{ns} is not a DNS-1123 label"));
            }
        }
        (Scope::Cluster, Some(ns)) => {
            bad(".metadata.namespace", format!("{} is cluster-scoped but has namespace {ns}", doc.kind()))
        }
        (Scope::Cluster, None) => {}
    }
    for field in ["labels", "annotations"] {
        let Some(m) = meta.get(field) else { continue };
        let Some(m) = m.as_object() else {
            bad(&format!(".metadata.{field}"), "must be a map of strings".into());
            continue;
        };
        for (k, v) in m {
            let path = readable_path(&format!("/metadata/{field}/{}", k.replace('~', "~0").replace('/', "~1")));
            if !is_qualified_name(k) {
                bad(&path, format!("{k:?} is not a qualified name ([prefix/]name)"));
            }
            match v.as_str() {
                None => bad(&path, format!("{v} is not a string (quote it)")),
                Some(s) if field == "labels" && !is_label_value(s) => bad(
                    &path,
                    format!("{s:?} is not a label value (63 characters of [A-Za-z0-9._-], alphanumeric at both ends)"),
                ),
                Some(_) => {}
            }
        }
    }
    out
}

fn is_subdomain(n: &str) -> bool {
    n.len() <= 253 && n.split('.').all(crate::is_dns_label)
}

/// RBAC names are path segments: `system:controller:x` is fine.
fn is_rbac_name(n: &str) -> bool {
    !n.is_empty() && n != "." && n != ".." && !n.contains('/') && !n.contains('%')
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric()))
}

fn is_qualified_name(k: &str) -> bool {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(is_subdomain) && !name.is_empty() && is_label_value(name)
}

/// Rewrites `pattern`s written for Go's RE2 (as kubebuilder emits them) into the ECMA-262 syntax
/// JSON Schema specifies, where the two differ: the one-letter Unicode classes `\pC`/`\PC`
/// are `\p{C}`/`\P{C}`. The meaning is unchanged.
pub fn ecma_patterns(s: &mut Value) {
    match s {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if k == "pattern"
                    && let Value::String(p) = v
                {
                    *p = re2_to_ecma(p);
                } else {
                    ecma_patterns(v);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(ecma_patterns),
        _ => {}
    }
}

fn re2_to_ecma(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(k @ ('p' | 'P')) => match chars.peek() {
                Some(&l) if l.is_ascii_alphabetic() => {
                    chars.next();
                    out.push_str(&format!("\\{k}{{{l}}}"));
                }
                _ => {
                    out.push('\\');
                    out.push(k);
                }
            },
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Makes an OpenAPI v3 (CRD) or Swagger schema strict and plain JSON Schema, in place.
pub fn strictify(s: &mut Value) {
    if let Some(Value::String(p)) = s.get_mut("pattern") {
        *p = re2_to_ecma(p);
    }
    let Some(m) = s.as_object_mut() else { return };
    let preserve = m.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if m.get("x-kubernetes-int-or-string") == Some(&json!(true)) && !m.contains_key("anyOf") && !m.contains_key("oneOf")
    {
        m.insert("type".into(), json!(["integer", "string"]));
    }
    if m.get("x-kubernetes-embedded-resource") == Some(&json!(true))
        && let Some(props) = m.get_mut("properties").and_then(Value::as_object_mut)
    {
        for (k, t) in [("apiVersion", "string"), ("kind", "string"), ("metadata", "object")] {
            props.entry(k).or_insert_with(|| json!({ "type": t }));
        }
    }
    if m.get("nullable") == Some(&json!(true)) {
        m.remove("nullable");
        match m.get("type").cloned() {
            Some(Value::String(t)) => {
                m.insert("type".into(), json!([t, "null"]));
            }
            Some(Value::Array(mut ts)) => {
                ts.push(json!("null"));
                m.insert("type".into(), Value::Array(ts));
            }
            _ => {}
        }
        if let Some(Value::Array(e)) = m.get_mut("enum") {
            e.push(Value::Null);
        }
    }
    if m.contains_key("properties") && !m.contains_key("additionalProperties") && !preserve {
        m.insert("additionalProperties".into(), json!(false));
    }
    for key in ["properties", "patternProperties", "definitions"] {
        if let Some(Value::Object(props)) = m.get_mut(key) {
            props.values_mut().for_each(strictify);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(v) = m.get_mut(key)
            && v.is_object()
        {
            strictify(v);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(items)) = m.get_mut(key) {
            items.iter_mut().for_each(strictify);
        }
    }
}

fn label_selector() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "matchLabels": { "type": "object", "additionalProperties": { "type": "string" } },
            "matchExpressions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["key", "operator"],
                    "properties": {
                        "key": { "type": "string" },
                        "operator": { "enum": ["In", "NotIn", "Exists", "DoesNotExist"] },
                        "values": { "type": "array", "items": { "type": "string" } }
                    }
                }
            }
        }
    })
}

fn object_root(spec: Value, required_spec: bool) -> Value {
    let mut root = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["apiVersion", "kind", "metadata"],
        "properties": {
            "apiVersion": { "type": "string" },
            "kind": { "type": "string" },
            "metadata": { "type": "object" },
            "spec": spec
        }
    });
    if required_spec && let Some(r) = root.get_mut("required").and_then(Value::as_array_mut) {
        r.push(json!("spec"));
    }
    root
}

/// policy/v1 PodDisruptionBudget (Kubernetes 1.34 API reference: PodDisruptionBudgetSpec).
fn pdb_schema() -> Value {
    let int_or_percent =
        json!({ "anyOf": [ { "type": "integer", "minimum": 0 }, { "type": "string", "pattern": "^[0-9]+%$" } ] });
    // minAvailable and maxUnavailable exclude each other (the `not`).
    let spec = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["selector"],
        "properties": {
            "minAvailable": int_or_percent,
            "maxUnavailable": int_or_percent,
            "selector": label_selector(),
            "unhealthyPodEvictionPolicy": { "enum": ["IfHealthyBudget", "AlwaysAllow"] }
        },
        "not": { "required": ["minAvailable", "maxUnavailable"] }
    });
    object_root(spec, true)
}

/// apiextensions.k8s.io/v1 CustomResourceDefinition, its top-level shape.
fn crd_schema() -> Value {
    let names = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["kind", "plural"],
        "properties": {
            "kind": { "type": "string" }, "plural": { "type": "string" }, "singular": { "type": "string" },
            "listKind": { "type": "string" },
            "shortNames": { "type": "array", "items": { "type": "string" } },
            "categories": { "type": "array", "items": { "type": "string" } }
        }
    });
    let version = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "served", "storage"],
        "properties": {
            "name": { "type": "string" }, "served": { "type": "boolean" }, "storage": { "type": "boolean" },
            "deprecated": { "type": "boolean" }, "deprecationWarning": { "type": "string" },
            "schema": { "type": "object", "additionalProperties": false, "required": ["openAPIV3Schema"],
                        "properties": { "openAPIV3Schema": { "type": "object" } } },
            "subresources": { "type": "object" },
            "additionalPrinterColumns": { "type": "array", "items": { "type": "object" } },
            "selectableFields": { "type": "array" }
        }
    });
    let spec = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["group", "names", "scope", "versions"],
        "properties": {
            "group": { "type": "string" },
            "names": names,
            "scope": { "enum": ["Cluster", "Namespaced"] },
            "versions": { "type": "array", "minItems": 1, "items": version },
            "conversion": { "type": "object" },
            "preserveUnknownFields": { "type": "boolean" }
        }
    });
    object_root(spec, true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn doc(v: Value) -> Doc {
        Doc { origin: "t.yaml".into(), index: 1, value: v }
    }

    #[test]
    fn crd_schemas_become_strict() {
        let mut s = json!({
            "type": "object",
            "properties": {
                "spec": { "type": "object", "properties": {
                    "n": { "type": "integer", "nullable": true },
                    "p": { "x-kubernetes-int-or-string": true },
                    "free": { "type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": { "a": {"type": "string"} } },
                    "map": { "type": "object", "additionalProperties": { "type": "string" } },
                    "e": { "type": "string", "enum": ["a"], "nullable": true }
                } }
            }
        });
        strictify(&mut s);
        assert_eq!(s["additionalProperties"], json!(false));
        assert_eq!(s["properties"]["spec"]["additionalProperties"], json!(false));
        assert_eq!(s["properties"]["spec"]["properties"]["n"]["type"], json!(["integer", "null"]));
        assert_eq!(s["properties"]["spec"]["properties"]["p"]["type"], json!(["integer", "string"]));
        assert!(s["properties"]["spec"]["properties"]["free"].get("additionalProperties").is_none());
        assert_eq!(s["properties"]["spec"]["properties"]["map"]["additionalProperties"], json!({"type": "string"}));
        assert_eq!(s["properties"]["spec"]["properties"]["e"]["enum"], json!(["a", null]));
    }

    #[test]
    fn re2_classes_become_ecma() {
        assert_eq!(re2_to_ecma(r"^\PC*$"), r"^\P{C}*$");
        assert_eq!(re2_to_ecma(r"^\pL\p{N}\d\\p$"), r"^\p{L}\p{N}\d\\p$");
    }

    #[test]
    fn pdb_shape_is_checked() {
        let c = Catalog::new();
        let good = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "x", "namespace": "n"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"a": "b"}}}});
        assert_eq!(c.validate(&doc(good.clone())), []);
        let mut bad = good.clone();
        bad["spec"]["minAvailabel"] = json!(1);
        let p = c.validate(&doc(bad));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, ".spec");
        assert!(p[0].message.contains("minAvailabel"), "{}", p[0]);
        let mut both = good;
        both["spec"]["maxUnavailable"] = json!("10%");
        assert_eq!(c.validate(&doc(both)).len(), 1);
    }

    #[test]
    fn metadata_is_checked() {
        let c = Catalog::new();
        let p = c.validate(&doc(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "Bad_Name", "labels": {"a": 3, "b/c/d": "x"}, "uid": "1"},
            "spec": {"selector": {}}})));
        let lines: Vec<String> = p.iter().map(ToString::to_string).collect();
        expect_test::expect![[r#"
            VAULT-DP-202: t.yaml document 1 (PodDisruptionBudget Bad_Name) at .metadata.uid: unknown or server-set metadata field "uid"
            VAULT-DP-202: t.yaml document 1 (PodDisruptionBudget Bad_Name) at .metadata.name: "Bad_Name" is not a DNS-1123 subdomain (lowercase letters, digits, '-', '.')
            VAULT-DP-202: t.yaml document 1 (PodDisruptionBudget Bad_Name) at .metadata.namespace: a namespaced kind without metadata.namespace
            VAULT-DP-202: t.yaml document 1 (PodDisruptionBudget Bad_Name) at .metadata.labels.a: 3 is not a string (quote it)
            VAULT-DP-202: t.yaml document 1 (PodDisruptionBudget Bad_Name) at .metadata.labels["b/c/d"]: "b/c/d" is not a qualified name ([prefix/]name)"#]]
        .assert_eq(&lines.join("\n"));
    }

    #[test]
    fn unknown_kinds_are_problems() {
        let c = Catalog::new();
        let p = c.validate(&doc(
            json!({"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "x"}}),
        ));
        assert_eq!(
            p[0].to_string(),
            "VAULT-DP-201: t.yaml document 1 (PodDisruptionBudget x) at .apiVersion: policy/v1beta1 PodDisruptionBudget: known versions of PodDisruptionBudget: policy/v1"
        );
        let p = c.validate(&doc(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}})));
        assert!(p[0].message.ends_with("no schema knows this kind"));
    }
}
