//! The project's protobuf definitions and the Rust code generated from them.
//!
//! `proto/csi.proto` is Cyberun Vault's own definition of the Container Storage Interface v1.12
//! (package `csi.v1`), wire-compatible with the upstream specification; `tests/wire_compat.rs`
//! compares it field by field with a reference copy. `build.rs` compiles it with protox (pure
//! Rust: building needs no `protoc`) and generates prost messages plus tonic clients and servers.
//!
//! Everything lives in [`csi::v1`]:
//! - messages such as [`csi::v1::CreateVolumeRequest`], nested types in snake-case modules
//!   (`csi::v1::volume_capability::AccessMode`), oneofs as enums in those modules;
//! - servers: `csi::v1::{identity,controller,group_controller,snapshot_metadata,node}_server`,
//!   each with the service trait (e.g. [`csi::v1::controller_server::Controller`]) and the tower
//!   service wrapping it (e.g. [`csi::v1::controller_server::ControllerServer`]);
//! - clients: `csi::v1::*_client`, e.g. [`csi::v1::node_client::NodeClient`].
//!
//! Well-known types map to prost-types and plain options: `google.protobuf.Timestamp` is
//! [`prost_types::Timestamp`], `BoolValue` is `Option<bool>`, `Int64Value` is `Option<i64>`.
//! The custom options (`csi_secret`, `alpha_*`) are kept in [`FILE_DESCRIPTOR_SET`] only: prost
//! does not generate code for extensions, so a field's secrecy is documented, not typed.

/// Generated code, one module per protobuf package.
pub mod csi {
    /// CSI v1 (`csi.v1`): messages, `*_server` and `*_client` modules.
    pub mod v1 {
        tonic::include_proto!("csi.v1");
    }
}

/// The encoded `google.protobuf.FileDescriptorSet` of `csi.proto` and its imports
/// (`descriptor.proto`, `timestamp.proto`, `wrappers.proto`), custom options included and source
/// comments left out: what a gRPC reflection service registers.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/csi_descriptor.bin"));
