//! The project's protobuf definitions (its own `csi.proto`, wire-compatible with CSI v1.12),
//! compiled with tonic/prost.
//!
//! Not built yet: the definitions arrive with the CSI issue (#5).
