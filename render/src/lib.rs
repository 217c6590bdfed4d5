//! deploy/ as data. Two halves, both pure functions over text:
//!
//! - **Render**: the federation description (`deploy/federation.toml`) and the placement topology
//!   (`deploy/placement/cyberun.toml`) in, every generated file of deploy/ out ([`Federation`],
//!   [`generate::render_all`]), plus what deploy time needs (one node's WireGuard config, the
//!   edge configs with other addresses for tests).
//! - **Check**: manifests in, problems out: strict JSON-Schema validation of every document
//!   against the Kubernetes and CRD schemas it is given, and the Flux graph checks
//!   ([`check`]).
//!
//! Architecture Invariant: this crate does no IO. It never reads a file, runs a process or opens
//! a socket; the binary (`cyvault deploy`) reads the files, runs `kubectl kustomize`, and hands
//! the texts in.

pub mod check;
mod federation;
pub mod generate;
pub mod spec;
pub mod text;

pub use federation::{
    DescriptionError, DescriptionErrorKind, DescriptionErrors, Federation, StorageClassPlan, is_dns_label, is_dns_name,
    storage_class_name,
};
