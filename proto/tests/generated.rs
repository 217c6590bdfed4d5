//! The generated Rust code: messages round-trip through prost, well-known types map as documented,
//! and the generated servers and clients talk to each other over real gRPC (loopback TCP).

use std::time::Duration;

use prost::Message as _;
use tonic::{Request, Response, Status};

use csi::identity_client::IdentityClient;
use csi::identity_server::{Identity, IdentityServer};
use csi::snapshot_metadata_client::SnapshotMetadataClient;
use csi::snapshot_metadata_server::{SnapshotMetadata, SnapshotMetadataServer};
use cyvault_proto::csi::v1 as csi;

fn round_trip<M: prost::Message + Default + PartialEq + std::fmt::Debug>(msg: &M) {
    let bytes = msg.encode_to_vec();
    match M::decode(bytes.as_slice()) {
        Ok(back) => assert_eq!(&back, msg),
        Err(e) => panic!("decode failed: {e}"),
    }
}

#[test]
fn create_volume_request_round_trips() {
    use csi::volume_capability::{AccessMode, AccessType, BlockVolume, access_mode::Mode};
    let req = csi::CreateVolumeRequest {
        name: "pvc-0001".to_owned(),
        capacity_range: Some(csi::CapacityRange { required_bytes: 1 << 30, limit_bytes: 2 << 30 }),
        volume_capabilities: vec![csi::VolumeCapability {
            access_type: Some(AccessType::Block(BlockVolume {})),
            access_mode: Some(AccessMode { mode: Mode::MultiNodeMultiWriter as i32 }),
        }],
        parameters: [("pool".to_owned(), "rbd".to_owned())].into(),
        secrets: [("key".to_owned(), "value".to_owned())].into(),
        volume_content_source: Some(csi::VolumeContentSource {
            r#type: Some(csi::volume_content_source::Type::Volume(csi::volume_content_source::VolumeSource {
                volume_id: "vol-src".to_owned(),
            })),
        }),
        accessibility_requirements: None,
        mutable_parameters: Default::default(),
    };
    round_trip(&req);
    let decoded = match csi::CreateVolumeRequest::decode(req.encode_to_vec().as_slice()) {
        Ok(d) => d,
        Err(e) => panic!("decode failed: {e}"),
    };
    assert_eq!(decoded.name, "pvc-0001");
    assert_eq!(decoded.capacity_range.map(|r| r.limit_bytes), Some(2 << 30));
    assert_eq!(decoded.secrets.get("key").map(String::as_str), Some("value"));
    assert_eq!(
        decoded.volume_capabilities.first().and_then(|c| c.access_mode).map(|m| m.mode()),
        Some(Mode::MultiNodeMultiWriter)
    );
}

/// Timestamp is `prost_types::Timestamp`; the wrapper types are `Option` of the scalar, and the
/// presence of a zero value survives the wire (that is the point of the wrappers).
#[test]
fn well_known_types_map_to_prost_types_and_options() {
    let snap = csi::Snapshot {
        size_bytes: 4096,
        snapshot_id: "snap".to_owned(),
        source_volume_id: "vol".to_owned(),
        creation_time: Some(prost_types::Timestamp { seconds: 1_760_000_000, nanos: 5 }),
        ready_to_use: true,
        group_snapshot_id: String::new(),
    };
    round_trip(&snap);

    let cap =
        csi::GetCapacityResponse { available_capacity: 7, maximum_volume_size: Some(0), minimum_volume_size: None };
    round_trip(&cap);
    assert_ne!(cap.encode_to_vec(), csi::GetCapacityResponse { maximum_volume_size: None, ..cap }.encode_to_vec());

    let probe: csi::ProbeResponse = csi::ProbeResponse { ready: Some(false) };
    round_trip(&probe);
}

#[derive(Debug)]
struct TestIdentity;

#[tonic::async_trait]
impl Identity for TestIdentity {
    async fn get_plugin_info(
        &self,
        _: Request<csi::GetPluginInfoRequest>,
    ) -> Result<Response<csi::GetPluginInfoResponse>, Status> {
        Ok(Response::new(csi::GetPluginInfoResponse {
            name: "rbd.csi.cyvault.io".to_owned(),
            vendor_version: "0.1.0".to_owned(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<csi::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<csi::GetPluginCapabilitiesResponse>, Status> {
        use csi::plugin_capability::{Service, Type, service};
        Ok(Response::new(csi::GetPluginCapabilitiesResponse {
            capabilities: vec![csi::PluginCapability {
                r#type: Some(Type::Service(Service { r#type: service::Type::ControllerService as i32 })),
            }],
        }))
    }

    async fn probe(&self, _: Request<csi::ProbeRequest>) -> Result<Response<csi::ProbeResponse>, Status> {
        Ok(Response::new(csi::ProbeResponse { ready: Some(true) }))
    }
}

#[derive(Debug)]
struct TestSnapshotMetadata;

type AllocatedStream = futures::stream::Iter<std::vec::IntoIter<Result<csi::GetMetadataAllocatedResponse, Status>>>;
type DeltaStream = futures::stream::Iter<std::vec::IntoIter<Result<csi::GetMetadataDeltaResponse, Status>>>;

#[tonic::async_trait]
impl SnapshotMetadata for TestSnapshotMetadata {
    type GetMetadataAllocatedStream = AllocatedStream;
    type GetMetadataDeltaStream = DeltaStream;

    async fn get_metadata_allocated(
        &self,
        request: Request<csi::GetMetadataAllocatedRequest>,
    ) -> Result<Response<AllocatedStream>, Status> {
        let start = request.into_inner().starting_offset;
        let messages = (0..3)
            .map(|i| {
                Ok(csi::GetMetadataAllocatedResponse {
                    block_metadata_type: csi::BlockMetadataType::FixedLength as i32,
                    volume_capacity_bytes: 1 << 20,
                    block_metadata: vec![csi::BlockMetadata { byte_offset: start + i * 4096, size_bytes: 4096 }],
                })
            })
            .collect::<Vec<_>>();
        Ok(Response::new(futures::stream::iter(messages)))
    }

    async fn get_metadata_delta(
        &self,
        _: Request<csi::GetMetadataDeltaRequest>,
    ) -> Result<Response<DeltaStream>, Status> {
        Err(Status::unimplemented("delta"))
    }
}

/// Serves Identity and the streaming SnapshotMetadata service on 127.0.0.1 and calls them with
/// the generated clients.
#[tokio::test]
async fn generated_server_and_client_talk_over_loopback() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IdentityServer::new(TestIdentity))
            .add_service(SnapshotMetadataServer::new(TestSnapshotMetadata))
            .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), async {
                let _ = stop_rx.await;
            }),
    );

    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.timeout(Duration::from_secs(10));
    let channel = endpoint.connect().await?;

    let mut identity = IdentityClient::new(channel.clone());
    let info = identity.get_plugin_info(csi::GetPluginInfoRequest {}).await?.into_inner();
    assert_eq!(info.name, "rbd.csi.cyvault.io");
    let probe = identity.probe(csi::ProbeRequest {}).await?.into_inner();
    assert_eq!(probe.ready, Some(true));
    let caps = identity.get_plugin_capabilities(csi::GetPluginCapabilitiesRequest {}).await?.into_inner();
    assert_eq!(caps.capabilities.len(), 1);

    let mut metadata = SnapshotMetadataClient::new(channel);
    let mut stream = metadata
        .get_metadata_allocated(csi::GetMetadataAllocatedRequest {
            snapshot_id: "snap".to_owned(),
            starting_offset: 8192,
            max_results: 0,
            secrets: Default::default(),
        })
        .await?
        .into_inner();
    let mut offsets = Vec::new();
    while let Some(msg) = stream.message().await? {
        assert_eq!(msg.block_metadata_type(), csi::BlockMetadataType::FixedLength);
        offsets.extend(msg.block_metadata.iter().map(|b| b.byte_offset));
    }
    assert_eq!(offsets, vec![8192, 12288, 16384]);

    let err = metadata.get_metadata_delta(csi::GetMetadataDeltaRequest::default()).await.err().map(|s| s.code());
    assert_eq!(err, Some(tonic::Code::Unimplemented));

    let _ = stop_tx.send(());
    server.await??;
    Ok(())
}

/// Every service has its server trait and tower service, and its client.
#[test]
fn all_services_are_generated() {
    fn server<S: tonic::server::NamedService>(name: &str) {
        assert_eq!(S::NAME, name);
    }
    server::<IdentityServer<TestIdentity>>("csi.v1.Identity");
    server::<SnapshotMetadataServer<TestSnapshotMetadata>>("csi.v1.SnapshotMetadata");
    fn _traits_exist(
        _: &dyn csi::controller_server::Controller,
        _: &dyn csi::node_server::Node,
        _: &dyn csi::group_controller_server::GroupController,
    ) {
    }
    assert_eq!(csi::controller_server::SERVICE_NAME, "csi.v1.Controller");
    assert_eq!(csi::node_server::SERVICE_NAME, "csi.v1.Node");
    assert_eq!(csi::group_controller_server::SERVICE_NAME, "csi.v1.GroupController");
    let _: fn(tonic::transport::Channel) -> csi::controller_client::ControllerClient<_> =
        csi::controller_client::ControllerClient::new;
    let _: fn(tonic::transport::Channel) -> csi::node_client::NodeClient<_> = csi::node_client::NodeClient::new;
    let _: fn(tonic::transport::Channel) -> csi::group_controller_client::GroupControllerClient<_> =
        csi::group_controller_client::GroupControllerClient::new;
}
