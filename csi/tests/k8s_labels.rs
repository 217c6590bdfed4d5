//! NodeGetInfo's topology from the Node's labels, read with the `kube` client from an API server.
//! The API server here is a small HTTP responder on 127.0.0.1 serving Node objects, reached
//! through a kubeconfig like any cluster's.

use std::collections::HashMap;

use cyvault_csi::error::CsiError;
use cyvault_csi::k8s::node_topology;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `GET /api/v1/nodes/<name>` from `nodes` (name → labels JSON object), 404 otherwise.
async fn fake_api_server(nodes: HashMap<&'static str, &'static str>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let nodes = nodes.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let path = head.split_whitespace().nth(1).unwrap_or("").split('?').next().unwrap_or("").to_string();
                let name = path.strip_prefix("/api/v1/nodes/").unwrap_or("");
                let (status, body) = match nodes.get(name) {
                    Some(labels) => (
                        "200 OK",
                        format!(
                            r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}","labels":{labels}}}}}"#
                        ),
                    ),
                    None => (
                        "404 Not Found",
                        format!(
                            r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"nodes \"{name}\" not found","reason":"NotFound","code":404}}"#
                        ),
                    ),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn node_topology_comes_from_the_node_labels() {
    let addr = fake_api_server(HashMap::from([
        ("node-1", r#"{"topology.cyvault.io/cluster":"destroyer","kubernetes.io/hostname":"node-1"}"#),
        ("bare", r#"{"kubernetes.io/hostname":"bare"}"#),
    ]))
    .await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: test\n  user:\n    token: test-token\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
             current-context: test\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let kc = Some(kubeconfig.as_path());

    let topo = node_topology("node-1", kc).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(topo, HashMap::from([("topology.cyvault.io/cluster".to_string(), "destroyer".to_string())]));
    match node_topology("missing", kc).await {
        Err(CsiError::NotFound(m)) => assert!(m.contains("missing"), "{m}"),
        other => panic!("{other:?}"),
    }
    match node_topology("bare", kc).await {
        Err(CsiError::FailedPrecondition(m)) => assert!(m.contains("has no topology.cyvault.io/cluster label"), "{m}"),
        other => panic!("{other:?}"),
    }
}
