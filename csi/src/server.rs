//! Serving the services on the CSI unix socket.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cyvault_proto::csi::v1 as pb;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tracing::info;

use crate::controller::ControllerService;
use crate::driver::Driver;
use crate::error::{CsiError, Result};
use crate::identity::IdentityService;
use crate::node_rpc::NodeService;

/// The socket path of a `unix:///path` (or `unix:/path`, or a bare absolute path) endpoint.
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    let p = endpoint.strip_prefix("unix://").or_else(|| endpoint.strip_prefix("unix:")).unwrap_or(endpoint);
    let path = PathBuf::from(p);
    if !path.is_absolute() {
        return Err(CsiError::InvalidArgument(format!("endpoint {endpoint:?}: use unix:///absolute/path/csi.sock")));
    }
    Ok(path)
}

/// Binds the socket, replacing a stale one (a socket file nobody listens on); refuses to take
/// over a socket another process still serves.
pub async fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| CsiError::Internal(format!("create {}: {e}", dir.display())))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(CsiError::FailedPrecondition(format!(
                "{} is served by another process; stop it first",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(|e| CsiError::Internal(format!("remove stale {}: {e}", path.display())))?;
        info!(socket = %path.display(), "removed a stale socket");
    }
    UnixListener::bind(path).map_err(|e| CsiError::Internal(format!("listen on {}: {e}", path.display())))
}

/// Serves identity, and the controller and/or node services per the driver's mode, until
/// `shutdown` completes; then removes the socket.
pub async fn serve(
    driver: Arc<Driver>,
    listener: UnixListener,
    path: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let mut router = tonic::transport::Server::builder()
        .add_service(pb::identity_server::IdentityServer::new(IdentityService { driver: driver.clone() }));
    if driver.mode.controller() {
        router = router
            .add_service(pb::controller_server::ControllerServer::new(ControllerService { driver: driver.clone() }));
    }
    let node = driver.mode.node().then(|| Arc::new(NodeService::new(driver.clone())));
    if let Some(n) = &node {
        router = router.add_service(pb::node_server::NodeServer::from_arc(n.clone()));
    }
    let result = router.serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown).await;
    if let Some(n) = node {
        n.shutdown().await;
    }
    let _ = std::fs::remove_file(&path);
    result.map_err(|e| CsiError::Internal(format!("gRPC server: {e}")))
}
