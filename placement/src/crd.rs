//! The Kubernetes form of a placement policy: the cluster-scoped `PlacementPolicy` custom resource
//! (`vault.cyberun.cloud/v1alpha1`), its CustomResourceDefinition, and conversions to and from the
//! engine's [`PolicySpec`].
//!
//! A `PlacementPolicy` named `N` holds what a topology file's `[[policy]]` entry with `name = "N"`
//! holds, in camelCase: the object's `metadata.name` is the policy's name.
//!
//! ```yaml
//! apiVersion: vault.cyberun.cloud/v1alpha1
//! kind: PlacementPolicy
//! metadata:
//!   name: destroyer-volumes
//! spec:
//!   consumer: destroyer
//!   kind: volume
//!   latencyBudgetMs: 2.0
//!   deviceClass: nvme
//!   minReplicas: 3
//!   failureDomain: host
//!   maxFill: 0.85
//! ```
//!
//! The CRD itself is generated from the types below: `deploy/crds/placementpolicy.yaml` is
//! [`crd_yaml`] byte for byte (`cyvault placement crd`), and a test fails when they drift apart.
//! Built only with the `crd` feature; like the rest of the crate it does no IO.

use kube::core::CustomResourceExt;
use kube::{CustomResource, Resource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{FailureDomain, PolicySpec, RequestKind};

/// What a consumer in one cluster (or `*`: every cluster without a policy of its own) requires of
/// the Ceph pools its volumes or buckets are placed on. The object's name is the policy's name.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "vault.cyberun.cloud",
    version = "v1alpha1",
    kind = "PlacementPolicy",
    plural = "placementpolicies",
    shortname = "vpp",
    derive = "PartialEq",
    doc = "A Cyberun Vault placement policy: the requirements a consumer's volumes or buckets place \
           on the pools they land on. Cluster-scoped; the object's name is the policy's name.",
    // As JSON: clippy takes the repeated `type_ = "string"` of the list form for duplicated attributes.
    printcolumn = r#"{"name": "Consumer", "type": "string", "jsonPath": ".spec.consumer"}"#,
    printcolumn = r#"{"name": "Kind", "type": "string", "jsonPath": ".spec.kind"}"#,
    printcolumn = r#"{"name": "Budget", "type": "number", "jsonPath": ".spec.latencyBudgetMs",
                     "description": "Latency budget: the largest p99 RTT (ms) from the consumer to the pool's cluster"}"#,
    printcolumn = r#"{"name": "Class", "type": "string", "jsonPath": ".spec.deviceClass"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PlacementPolicySpec {
    /// The consumer: a cluster name from the topology, or `*` for every consumer without a policy
    /// of its own for this kind.
    #[schemars(length(min = 1))]
    pub consumer: String,
    /// What the consumer asks for: `volume` (RBD images, from the CSI driver) or `bucket` (object
    /// data, from the S3 gateway).
    pub kind: RequestKind,
    /// The largest p99 round-trip time, in milliseconds, from the consumer to a pool's cluster.
    #[schemars(range(min = 0.0))]
    pub latency_budget_ms: f64,
    /// Only pools on this CRUSH device class (`nvme`, `ssd`, `hdd`); any class when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub device_class: Option<String>,
    /// Copies a pool must keep (replicas; `m + 1` for an erasure-coded pool).
    #[serde(default = "default_min_replicas")]
    // Kubernetes knows int32 and int64 but not schemars' uint32; int32 values all fit a u32.
    #[schemars(range(min = 1), extend("format" = "int32"))]
    pub min_replicas: u32,
    /// The weakest CRUSH failure domain a pool may spread its copies across; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_domain: Option<FailureDomain>,
    /// The fill ratio, in (0, 1], that no placement may push a pool past.
    #[serde(default = "default_max_fill")]
    #[schemars(range(max = 1.0), extend("minimum" = 0.0, "exclusiveMinimum" = true))]
    pub max_fill: f64,
}

fn default_min_replicas() -> u32 {
    1
}

fn default_max_fill() -> f64 {
    0.85
}

impl From<&PolicySpec> for PlacementPolicySpec {
    fn from(p: &PolicySpec) -> Self {
        PlacementPolicySpec {
            consumer: p.consumer.clone(),
            kind: p.kind,
            latency_budget_ms: p.latency_budget_ms,
            device_class: p.device_class.clone(),
            min_replicas: p.min_replicas,
            failure_domain: p.failure_domain,
            max_fill: p.max_fill,
        }
    }
}

impl PlacementPolicy {
    /// The engine's form of this policy, named after the object. Fails when the object has no
    /// `metadata.name`. The numbers are checked where every policy is, by [`crate::Topology::new`].
    pub fn to_policy_spec(&self) -> Result<PolicySpec, String> {
        let name = match self.metadata.name.as_deref() {
            Some(n) if !n.is_empty() => n.to_owned(),
            _ => return Err("a PlacementPolicy without metadata.name has no policy name".to_owned()),
        };
        let s = &self.spec;
        Ok(PolicySpec {
            name,
            consumer: s.consumer.clone(),
            kind: s.kind,
            latency_budget_ms: s.latency_budget_ms,
            device_class: s.device_class.clone(),
            min_replicas: s.min_replicas,
            failure_domain: s.failure_domain,
            max_fill: s.max_fill,
        })
    }

    /// The Kubernetes object for an engine policy: `metadata.name` is the policy's name, and
    /// nothing else of the metadata is set.
    pub fn from_policy_spec(p: &PolicySpec) -> PlacementPolicy {
        PlacementPolicy::new(&p.name, PlacementPolicySpec::from(p))
    }
}

/// The first line of every file this module generates.
const GENERATED: &str = "# GENERATED FILE: do not edit by hand.";

/// The PlacementPolicy CustomResourceDefinition as YAML, behind a comment saying where it comes
/// from. `deploy/crds/placementpolicy.yaml` is exactly this.
pub fn crd_yaml() -> String {
    let body = to_yaml(&PlacementPolicy::crd());
    format!(
        "{GENERATED}\n\
         # Written by `cyvault placement crd` from the Rust types in placement/src/crd.rs; change those\n\
         # and regenerate: cargo run -p cyvault -- placement crd > deploy/crds/placementpolicy.yaml\n\
         ---\n\
         {body}"
    )
}

/// The policies as PlacementPolicy objects: one YAML document each, every one opened by `---`,
/// ready for `kubectl apply -f -`.
pub fn policies_yaml(policies: &[PolicySpec]) -> String {
    let mut out = String::new();
    for p in policies {
        out.push_str("---\n");
        out.push_str(&to_yaml(&PlacementPolicy::from_policy_spec(p)));
    }
    out
}

/// [`policies_yaml`] behind a comment saying that it was generated from the `[[policy]]` entries
/// of the topology file `source` and how to regenerate it (`regenerate`, a shell command).
pub fn policies_yaml_file(source: &str, regenerate: &str, policies: &[PolicySpec]) -> String {
    format!(
        "{GENERATED}\n\
         # The [[policy]] entries of {source} as PlacementPolicy objects (see placement/src/crd.rs).\n\
         # Edit {source} instead, then regenerate: {regenerate}\n{}",
        policies_yaml(policies)
    )
}

/// Reads PlacementPolicy objects from YAML (one or more documents, as [`policies_yaml`] writes
/// them) and converts them to the engine's form. Every document must be a PlacementPolicy of this
/// API version.
pub fn parse_policies_yaml(text: &str) -> Result<Vec<PolicySpec>, String> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    let (api_version, kind) = (PlacementPolicy::api_version(&()), PlacementPolicy::kind(&()));
    docs.into_iter()
        .enumerate()
        .map(|(i, doc)| {
            let (v, k) = (&doc["apiVersion"], &doc["kind"]);
            if v.as_str() != Some(&api_version) || k.as_str() != Some(&kind) {
                return Err(format!("document {}: a {k} of {v}, not a {kind} of {api_version}", i + 1));
            }
            let o: PlacementPolicy = serde_json::from_value(doc).map_err(|e| format!("document {}: {e}", i + 1))?;
            o.to_policy_spec().map_err(|e| format!("document {}: {e}", i + 1))
        })
        .collect()
}

fn to_yaml<T: Serialize>(value: &T) -> String {
    // Serializing plain data (strings, numbers, maps) cannot fail; an error here is a bug in this
    // module, so it is spelled out in the output rather than hidden.
    serde_saphyr::to_string(value).unwrap_or_else(|e| format!("# YAML serialization failed: {e}\n"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn sample() -> PolicySpec {
        PolicySpec {
            name: "destroyer-volumes".into(),
            consumer: "destroyer".into(),
            kind: RequestKind::Volume,
            latency_budget_ms: 2.0,
            device_class: Some("nvme".into()),
            min_replicas: 3,
            failure_domain: Some(FailureDomain::Host),
            max_fill: 0.85,
        }
    }

    #[test]
    fn spec_to_object_and_back() {
        let minimal = PolicySpec {
            name: "buckets".into(),
            consumer: "*".into(),
            kind: RequestKind::Bucket,
            latency_budget_ms: 250.0,
            device_class: None,
            min_replicas: 1,
            failure_domain: None,
            max_fill: 1.0,
        };
        for p in [sample(), minimal] {
            let o = PlacementPolicy::from_policy_spec(&p);
            assert_eq!(o.metadata.name.as_deref(), Some(p.name.as_str()));
            assert_eq!(o.to_policy_spec().unwrap(), p);
        }
    }

    #[test]
    fn every_failure_domain_and_kind_is_spelled_as_in_the_topology_file() {
        use FailureDomain::*;
        for d in [Osd, Host, Rack, Room, Datacenter, Region] {
            assert_eq!(serde_json::to_value(d).unwrap(), serde_json::Value::String(d.to_string()));
        }
        for k in [RequestKind::Volume, RequestKind::Bucket] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn an_object_without_a_name_is_refused() {
        let mut o = PlacementPolicy::from_policy_spec(&sample());
        o.metadata.name = None;
        assert!(o.to_policy_spec().unwrap_err().contains("metadata.name"));
        o.metadata.name = Some(String::new());
        assert!(o.to_policy_spec().is_err());
    }

    #[test]
    fn object_yaml_parses_back() {
        let p = sample();
        let yaml = policies_yaml(std::slice::from_ref(&p));
        assert!(yaml.starts_with("---\napiVersion: vault.cyberun.cloud/v1alpha1\nkind: PlacementPolicy\n"), "{yaml}");
        assert!(yaml.contains("latencyBudgetMs: 2.0\n"), "{yaml}");
        let back: PlacementPolicy = serde_saphyr::from_str(yaml.trim_start_matches("---\n")).unwrap();
        assert_eq!(back, PlacementPolicy::from_policy_spec(&p));
        assert_eq!(parse_policies_yaml(&yaml).unwrap(), vec![p]);
    }

    #[test]
    fn omitted_fields_take_the_engine_defaults() {
        let yaml = "apiVersion: vault.cyberun.cloud/v1alpha1\nkind: PlacementPolicy\nmetadata:\n  name: x\n\
                    spec:\n  consumer: a\n  kind: bucket\n  latencyBudgetMs: 100\n";
        let p = &parse_policies_yaml(yaml).unwrap()[0];
        let toml: PolicySpec =
            toml::from_str("name = \"x\"\nconsumer = \"a\"\nkind = \"bucket\"\nlatency_budget_ms = 100.0\n").unwrap();
        assert_eq!(*p, toml);
    }

    #[test]
    fn another_kind_is_refused() {
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n\
                    spec:\n  consumer: a\n  kind: bucket\n  latencyBudgetMs: 100\n";
        assert!(parse_policies_yaml(yaml).unwrap_err().contains("PlacementPolicy"));
    }

    #[test]
    fn crd_yaml_has_its_header_and_the_schema() {
        let y = crd_yaml();
        assert!(y.starts_with(GENERATED), "{y}");
        assert!(y.contains("cyvault placement crd"));
        assert!(y.contains("\nkind: CustomResourceDefinition\n"), "{y}");
        assert!(y.contains("name: placementpolicies.vault.cyberun.cloud\n"), "{y}");
        assert!(y.contains("scope: Cluster\n"), "{y}");
    }
}
