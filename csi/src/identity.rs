//! The Identity service: who the plugin is, what it can do, and whether it is ready.

use std::sync::Arc;

use cyvault_proto::csi::v1 as pb;
use pb::plugin_capability::service::Type as ServiceType;
use pb::plugin_capability::volume_expansion::Type as ExpansionType;
use tonic::{Request, Response, Status};
use tracing::warn;

use crate::driver::{DRIVER_NAME, Driver};

#[derive(Clone, Debug)]
pub struct IdentityService {
    pub driver: Arc<Driver>,
}

type R<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::identity_server::Identity for IdentityService {
    async fn get_plugin_info(&self, _req: Request<pb::GetPluginInfoRequest>) -> R<pb::GetPluginInfoResponse> {
        Ok(Response::new(pb::GetPluginInfoResponse {
            name: DRIVER_NAME.into(),
            vendor_version: env!("CARGO_PKG_VERSION").into(),
            manifest: [("backend".to_string(), self.driver.volumes.backend().to_string())].into(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _req: Request<pb::GetPluginCapabilitiesRequest>,
    ) -> R<pb::GetPluginCapabilitiesResponse> {
        use pb::plugin_capability::{Service, Type, VolumeExpansion};
        let mut capabilities = Vec::new();
        if self.driver.mode.controller() {
            capabilities.push(pb::PluginCapability {
                r#type: Some(Type::Service(Service { r#type: ServiceType::ControllerService as i32 })),
            });
        }
        capabilities.push(pb::PluginCapability {
            r#type: Some(Type::Service(Service { r#type: ServiceType::VolumeAccessibilityConstraints as i32 })),
        });
        capabilities.push(pb::PluginCapability {
            r#type: Some(Type::VolumeExpansion(VolumeExpansion { r#type: ExpansionType::Online as i32 })),
        });
        Ok(Response::new(pb::GetPluginCapabilitiesResponse { capabilities }))
    }

    /// Probe really asks the backend (`ceph df` on RADOS): not ready while it cannot answer.
    async fn probe(&self, _req: Request<pb::ProbeRequest>) -> R<pb::ProbeResponse> {
        let ready = match self.driver.volumes.probe().await {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "probe: the backend does not answer");
                false
            }
        };
        Ok(Response::new(pb::ProbeResponse { ready: Some(ready) }))
    }
}
