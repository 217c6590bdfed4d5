//! The node's topology from its Kubernetes Node object: in a cluster, the node plugin reads the
//! labels of its own Node (`--node-topology-from-labels`) instead of being told on the command
//! line. Only labels whose key is a topology key this driver understands are taken.

use std::collections::HashMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Node;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::error::{CsiError, Result};
use crate::placement::CLUSTER_KEY;

/// Label keys copied from the Node into NodeGetInfo's accessible topology.
pub const TOPOLOGY_LABELS: &[&str] = &[CLUSTER_KEY];

/// Reads the Node named `node` with the given kubeconfig, else the in-cluster config (or
/// `KUBECONFIG`), and returns its topology labels. A Node without the cluster label is an error:
/// the controller could not place volumes for it.
pub async fn node_topology(node: &str, kubeconfig: Option<&Path>) -> Result<HashMap<String, String>> {
    let no_config = |e: String| CsiError::FailedPrecondition(format!("no Kubernetes client config: {e}"));
    let client = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| no_config(format!("{}: {e}", path.display())))?;
            let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| no_config(format!("{}: {e}", path.display())))?;
            Client::try_from(config).map_err(|e| no_config(e.to_string()))?
        }
        None => Client::try_default().await.map_err(|e| no_config(format!("in-cluster or KUBECONFIG: {e}")))?,
    };
    let nodes: Api<Node> = Api::all(client);
    let n = nodes.get(node).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 404 => CsiError::NotFound(format!("Kubernetes Node {node}")),
        e => CsiError::Internal(format!("read Kubernetes Node {node}: {e}")),
    })?;
    let labels = n.metadata.labels.unwrap_or_default();
    let topo: HashMap<String, String> =
        labels.into_iter().filter(|(k, _)| TOPOLOGY_LABELS.contains(&k.as_str())).collect();
    if !topo.contains_key(CLUSTER_KEY) {
        return Err(CsiError::FailedPrecondition(format!(
            "Node {node} has no {CLUSTER_KEY} label: label it with its cluster (e.g. destroyer)"
        )));
    }
    Ok(topo)
}
