//! The Kubernetes CSI driver: identity, controller and node services over a unix socket,
//! provisioning RBD images through `cyvault-store` (or sparse files on the local backend) on
//! pools the placement engine chooses.
//!
//! - `ids.rs`: versioned volume and snapshot ids that carry the pool and uuid;
//! - `journal.rs`: the idempotency journal in omap, written before any image is touched;
//! - `volumes.rs`: image operations on RBD or on files;
//! - `error.rs`: the one mapping to gRPC status codes.

pub mod controller;
pub mod driver;
pub mod error;
pub mod identity;
pub mod ids;
pub mod journal;
pub mod k8s;
pub mod node;
pub mod node_rpc;
pub mod placement;
pub mod server;
pub mod volumes;
