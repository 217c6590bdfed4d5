//! The PlacementPolicy CRD and the policies as Kubernetes objects, against the files committed
//! under deploy/:
//! - deploy/crds/placementpolicy.yaml is exactly `crd_yaml()`;
//! - deploy/placement/policies.yaml is exactly the `[[policy]]` entries of
//!   deploy/placement/cyberun.toml through `policies_yaml_file`;
//! - every object in policies.yaml is valid under the CRD's schema, checked the way the API server
//!   does with strict field validation (unknown fields are errors), and invalid objects are not;
//! - the CRD itself is a well-formed apiextensions.k8s.io/v1 CustomResourceDefinition with a
//!   structural schema.
//!
//! `CYVAULT_REGENERATE=1 cargo test -p cyvault-placement --features crd --test crd` rewrites both
//! generated files instead of comparing them; read the diff before committing it.

#![cfg(feature = "crd")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use cyvault_placement::TopologySpec;
use cyvault_placement::crd::{PlacementPolicy, crd_yaml, parse_policies_yaml, policies_yaml_file};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::CustomResourceExt;
use serde_json::{Value, json};

const CRD_FILE: &str = "deploy/crds/placementpolicy.yaml";
const POLICIES_FILE: &str = "deploy/placement/policies.yaml";
const TOPOLOGY_FILE: &str = "deploy/placement/cyberun.toml";
const REGENERATE_POLICIES: &str = "cargo run -p cyvault -- placement crd --policies-from deploy/placement/cyberun.toml > deploy/placement/policies.yaml";

fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// Compares the committed file `rel` with what the code generates, or (with CYVAULT_REGENERATE=1)
/// writes it.
#[track_caller]
fn check_generated(rel: &str, generated: &str, how: &str) {
    let path = repo_path(rel);
    if std::env::var_os("CYVAULT_REGENERATE").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, generated).unwrap();
        eprintln!("wrote {rel}");
        return;
    }
    let committed =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel} cannot be read ({e}); generate it: {how}"));
    if committed != generated {
        let line = committed.lines().zip(generated.lines()).position(|(a, b)| a != b).map_or_else(
            || {
                format!(
                    "the files differ in length ({} lines committed, {} generated)",
                    committed.lines().count(),
                    generated.lines().count()
                )
            },
            |i| {
                format!(
                    "first difference at line {}:\n  committed: {:?}\n  generated: {:?}",
                    i + 1,
                    committed.lines().nth(i).unwrap_or(""),
                    generated.lines().nth(i).unwrap_or("")
                )
            },
        );
        panic!("{rel} is out of date with the code that generates it; {line}\nregenerate it: {how}\n");
    }
}

fn cyberun_policies() -> Vec<cyvault_placement::PolicySpec> {
    let text = std::fs::read_to_string(repo_path(TOPOLOGY_FILE)).unwrap();
    let spec: TopologySpec = toml::from_str(&text).unwrap();
    assert!(!spec.policies.is_empty(), "{TOPOLOGY_FILE} has no [[policy]]");
    spec.policies
}

fn policies_file() -> String {
    policies_yaml_file(TOPOLOGY_FILE, REGENERATE_POLICIES, &cyberun_policies())
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(text).unwrap()
}

/// The CRD's one version's openAPIV3Schema, from the YAML (what `kubectl apply` would send).
fn crd_schema() -> Value {
    let crd = yaml_docs(&crd_yaml()).remove(0);
    let versions = crd["spec"]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1);
    versions[0]["schema"]["openAPIV3Schema"].clone()
}

// ---------------------------------------------------------------------------------------------
// The generated files.

#[test]
fn crd_file_is_up_to_date() {
    check_generated(CRD_FILE, &crd_yaml(), &format!("cargo run -p cyvault -- placement crd > {CRD_FILE}"));
}

#[test]
fn policies_file_is_up_to_date() {
    check_generated(POLICIES_FILE, &policies_file(), REGENERATE_POLICIES);
}

#[test]
fn policies_file_reads_back_as_the_topology_policies() {
    assert_eq!(parse_policies_yaml(&policies_file()).unwrap(), cyberun_policies());
}

// ---------------------------------------------------------------------------------------------
// Objects against the CRD's schema.

#[test]
fn every_policy_object_is_valid_under_the_crd_schema() {
    let schema = crd_schema();
    let docs = yaml_docs(&policies_file());
    assert_eq!(docs.len(), cyberun_policies().len());
    for doc in &docs {
        let errs = validate_object(&schema, doc);
        assert!(errs.is_empty(), "{} is invalid: {errs:#?}", doc["metadata"]["name"]);
    }
}

#[test]
fn defaults_and_optional_fields_may_be_left_out() {
    let doc = object(json!({"consumer": "*", "kind": "bucket", "latencyBudgetMs": 250}));
    assert_eq!(validate_object(&crd_schema(), &doc), Vec::<String>::new());
}

#[test]
fn invalid_objects_are_rejected() {
    let schema = crd_schema();
    let good = json!({"consumer": "destroyer", "kind": "volume", "latencyBudgetMs": 2.0, "deviceClass": "nvme",
                      "minReplicas": 3, "failureDomain": "host", "maxFill": 0.85});
    assert_eq!(validate_object(&schema, &object(good.clone())), Vec::<String>::new());
    let cases: &[(&str, Value, &str)] = &[
        ("maxFill", json!(1.5), ".spec.maxFill: 1.5 is above the maximum 1"),
        ("maxFill", json!(0), ".spec.maxFill: 0 is not above the (exclusive) minimum 0"),
        ("maxFill", json!("0.5"), ".spec.maxFill: \"0.5\" is not a number"),
        ("kind", json!("disk"), ".spec.kind: \"disk\" is not one of [\"volume\",\"bucket\"]"),
        ("failureDomain", json!("zone"), ".spec.failureDomain: \"zone\" is not one of"),
        ("latencyBudgetMs", json!(-1), ".spec.latencyBudgetMs: -1 is below the minimum 0"),
        ("minReplicas", json!(0), ".spec.minReplicas: 0 is below the minimum 1"),
        ("minReplicas", json!(2.5), ".spec.minReplicas: 2.5 is not an integer"),
        ("minReplicas", json!(1u64 << 40), ".spec.minReplicas: 1099511627776 is out of the int32 range"),
        ("consumer", json!(""), ".spec.consumer: \"\" is shorter than 1"),
        ("replicas", json!(3), ".spec.replicas: unknown field"),
    ];
    for (field, value, want) in cases {
        let mut spec = good.clone();
        spec[field] = value.clone();
        let errs = validate_object(&schema, &object(spec));
        assert!(errs.iter().any(|e| e.starts_with(want)), "{field} = {value}: want {want:?}, got {errs:?}");
    }
    for missing in ["consumer", "kind", "latencyBudgetMs"] {
        let mut spec = good.clone();
        spec.as_object_mut().unwrap().remove(missing);
        let errs = validate_object(&schema, &object(spec));
        assert_eq!(errs, [format!(".spec.{missing}: required")]);
    }
    // Outside the spec too.
    let mut doc = object(good.clone());
    doc["status"] = json!({});
    assert_eq!(validate_object(&schema, &doc), [".status: unknown field"]);
    let mut doc = object(good.clone());
    doc["apiVersion"] = json!("vault.cyberun.cloud/v1");
    assert_eq!(
        validate_object(&schema, &doc),
        [".apiVersion: \"vault.cyberun.cloud/v1\" is not vault.cyberun.cloud/v1alpha1"]
    );
    let mut doc = object(good);
    doc["metadata"]["name"] = json!("Destroyer_Volumes");
    assert_eq!(validate_object(&schema, &doc)[0], ".metadata.name: \"Destroyer_Volumes\" is not a DNS-1123 subdomain");
}

fn object(spec: Value) -> Value {
    json!({"apiVersion": "vault.cyberun.cloud/v1alpha1", "kind": "PlacementPolicy", "metadata": {"name": "p"}, "spec": spec})
}

/// Checks a PlacementPolicy object as the API server would. `apiVersion`, `kind` and `metadata`
/// are implicit at the root of every CRD schema (the server checks them itself, metadata as an
/// ObjectMeta): here they must name this CRD and carry a valid object name. The rest is checked
/// against the schema.
fn validate_object(schema: &Value, doc: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let crd = PlacementPolicy::crd();
    let want_version = format!("{}/{}", crd.spec.group, crd.spec.versions[0].name);
    if doc["apiVersion"] != json!(want_version) {
        errs.push(format!(".apiVersion: {} is not {want_version}", doc["apiVersion"]));
    }
    if doc["kind"] != json!(crd.spec.names.kind) {
        errs.push(format!(".kind: {} is not {}", doc["kind"], crd.spec.names.kind));
    }
    match doc["metadata"]["name"].as_str() {
        Some(n) if is_dns_subdomain(n) => {}
        _ => errs.push(format!(".metadata.name: {} is not a DNS-1123 subdomain", doc["metadata"]["name"])),
    }
    let mut rest = doc.clone();
    if let Some(m) = rest.as_object_mut() {
        for implicit in ["apiVersion", "kind", "metadata"] {
            m.remove(implicit);
        }
    }
    validate(schema, &rest, "", &mut errs);
    errs
}

fn is_dns_subdomain(n: &str) -> bool {
    n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// The keywords `validate` understands. A schema with any other keyword fails the check, so the
/// CRD cannot grow a constraint that these tests silently ignore.
const KNOWN_KEYWORDS: &[&str] = &[
    "type",
    "title",
    "description",
    "properties",
    "required",
    "enum",
    "default",
    "nullable",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
];

/// A value against a structural schema (the OpenAPI v3.0 subset of apiextensions.k8s.io/v1),
/// with unknown fields as errors, as under `kubectl apply --validate=strict`.
fn validate(schema: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    let s = schema.as_object().unwrap();
    for k in s.keys() {
        assert!(KNOWN_KEYWORDS.contains(&k.as_str()), "{path}: the schema keyword {k} is not checked by this test");
    }
    if v.is_null() {
        if s.get("nullable") != Some(&json!(true)) {
            errs.push(format!("{path}: null"));
        }
        return;
    }
    let here = if path.is_empty() { "." } else { path };
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        errs.push(format!("{here}: {v} is not one of {}", Value::Array(allowed.clone())));
    }
    match s["type"].as_str().unwrap_or_else(|| panic!("{here}: a structural schema needs a type")) {
        "object" => {
            let Some(obj) = v.as_object() else { return errs.push(format!("{here}: {v} is not an object")) };
            let props = s.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
            for (k, x) in obj {
                match props.get(k) {
                    Some(p) => validate(p, x, &format!("{path}.{k}"), errs),
                    None => errs.push(format!("{path}.{k}: unknown field")),
                }
            }
            for r in s.get("required").and_then(Value::as_array).into_iter().flatten() {
                let r = r.as_str().unwrap();
                if !obj.contains_key(r) {
                    errs.push(format!("{path}.{r}: required"));
                }
            }
        }
        "string" => {
            let Some(x) = v.as_str() else { return errs.push(format!("{here}: {v} is not a string")) };
            let n = x.chars().count() as u64;
            if let Some(min) = s.get("minLength").and_then(Value::as_u64)
                && n < min
            {
                errs.push(format!("{here}: {v} is shorter than {min}"));
            }
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
                && n > max
            {
                errs.push(format!("{here}: {v} is longer than {max}"));
            }
        }
        "boolean" => {
            if !v.is_boolean() {
                errs.push(format!("{here}: {v} is not a boolean"));
            }
        }
        t @ ("integer" | "number") => {
            let Some(x) = v.as_f64() else { return errs.push(format!("{here}: {v} is not a number")) };
            if t == "integer" {
                let Some(i) = v.as_i64() else { return errs.push(format!("{here}: {v} is not an integer")) };
                match s.get("format").and_then(Value::as_str) {
                    Some("int32") if i32::try_from(i).is_err() => {
                        errs.push(format!("{here}: {v} is out of the int32 range"))
                    }
                    Some("int32" | "int64") | None => {}
                    Some(f) => panic!("{here}: integer format {f} is not one Kubernetes knows"),
                }
            } else if let Some(f) = s.get("format").and_then(Value::as_str) {
                assert!(matches!(f, "double" | "float"), "{here}: number format {f} is not one Kubernetes knows");
            }
            let excl_min = s.get("exclusiveMinimum") == Some(&json!(true));
            let excl_max = s.get("exclusiveMaximum") == Some(&json!(true));
            if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
                if excl_min && x <= min {
                    errs.push(format!("{here}: {v} is not above the (exclusive) minimum {}", s["minimum"]));
                } else if x < min {
                    errs.push(format!("{here}: {v} is below the minimum {}", s["minimum"]));
                }
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
                if excl_max && x >= max {
                    errs.push(format!("{here}: {v} is not below the (exclusive) maximum {}", s["maximum"]));
                } else if x > max {
                    errs.push(format!("{here}: {v} is above the maximum {}", s["maximum"]));
                }
            }
        }
        t => panic!("{here}: type {t} is not checked by this test"),
    }
}

// ---------------------------------------------------------------------------------------------
// The CRD itself.

/// The CRD is a CustomResourceDefinition exactly as k8s-openapi types it: the YAML reads into the
/// typed struct (right field types, required fields present) and writes back unchanged, so it holds
/// no field the API does not have (k8s-openapi skips unknown fields when reading, and the round
/// trip would lose them).
#[test]
fn crd_is_a_strict_custom_resource_definition() {
    let doc = yaml_docs(&crd_yaml()).remove(0);
    let typed: CustomResourceDefinition = serde_json::from_value(doc.clone()).unwrap();
    let mut back = serde_json::to_value(&typed).unwrap();
    // apiVersion and kind are written by k8s-openapi's Serialize; they must be the right ones.
    assert_eq!(back["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(back["kind"], "CustomResourceDefinition");
    strip_empty(&mut back);
    let mut doc = doc;
    strip_empty(&mut doc);
    assert_eq!(doc, back);
    assert_eq!(typed, PlacementPolicy::crd());
}

/// Drops null members, which both sides may or may not write for absent optional fields.
fn strip_empty(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_empty);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_empty),
        _ => {}
    }
}

/// What the API server checks of a CRD before accepting it, as far as this one uses: the names,
/// the scope, one served storage version, printer columns that point into the schema, and a
/// structural schema (every node typed, no `additionalProperties` beside `properties`, none of
/// the keywords a structural schema forbids).
#[test]
fn crd_passes_the_api_server_checks() {
    let crd = yaml_docs(&crd_yaml()).remove(0);
    let spec = &crd["spec"];
    assert_eq!(
        crd["metadata"]["name"],
        format!("{}.{}", spec["names"]["plural"].as_str().unwrap(), spec["group"].as_str().unwrap())
    );
    assert_eq!(spec["group"], "vault.cyberun.cloud");
    assert_eq!(spec["scope"], "Cluster");
    assert_eq!(spec["names"]["kind"], "PlacementPolicy");
    assert_eq!(spec["names"]["plural"], "placementpolicies");
    assert_eq!(spec["names"]["singular"], "placementpolicy");
    assert_eq!(spec["names"]["shortNames"], json!(["vpp"]));
    let v = &spec["versions"][0];
    assert_eq!(
        (v["name"].as_str(), v["served"].as_bool(), v["storage"].as_bool()),
        (Some("v1alpha1"), Some(true), Some(true))
    );
    assert!(v.get("subresources").is_none(), "no status subresource: nothing writes a status");

    let schema = &v["schema"]["openAPIV3Schema"];
    // apiVersion, kind and metadata are implicit at the root; a schema for metadata may say no
    // more than `type: object`.
    assert_eq!(schema["properties"].as_object().unwrap().keys().collect::<Vec<_>>(), ["spec"]);
    assert_eq!(schema["required"], json!(["spec"]));
    structural(schema, "", &mut |path, node| panic!("{path}: not structural: {node}"));

    let columns: Vec<(&str, &str, &str)> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap(), c["jsonPath"].as_str().unwrap()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Consumer", "string", ".spec.consumer"),
            ("Kind", "string", ".spec.kind"),
            ("Budget", "number", ".spec.latencyBudgetMs"),
            ("Class", "string", ".spec.deviceClass"),
            ("Age", "date", ".metadata.creationTimestamp"),
        ]
    );
    for (name, ty, path) in columns {
        if let Some(field) = path.strip_prefix(".spec.") {
            let prop = &schema["properties"]["spec"]["properties"][field];
            assert_eq!(prop["type"], ty, "column {name} points at {path}, a {}", prop["type"]);
        }
    }
}

/// Calls `bad` on every node of a schema that breaks the structural-schema rules.
fn structural(s: &Value, path: &str, bad: &mut dyn FnMut(&str, &Value)) {
    let m = s.as_object().unwrap();
    if !m.contains_key("type") && m.get("x-kubernetes-preserve-unknown-fields") != Some(&json!(true)) {
        bad(path, s);
    }
    if m.contains_key("properties") && m.contains_key("additionalProperties") {
        bad(path, s);
    }
    for forbidden in ["$ref", "definitions", "$schema", "oneOf", "anyOf", "allOf", "not", "uniqueItems"] {
        if m.contains_key(forbidden) {
            bad(path, s);
        }
    }
    for (k, p) in m.get("properties").and_then(Value::as_object).into_iter().flatten() {
        structural(p, &format!("{path}.{k}"), bad);
    }
    if let Some(items) = m.get("items") {
        structural(items, &format!("{path}[]"), bad);
    }
}
