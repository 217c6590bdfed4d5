//! Cyberun Vault's S3 gateway: S3 semantics on the storage layer (`cyvault-store`), served with
//! `s3s`.
//!
//! - [`vault::Vault`] is the IO-abstracted core; operations live in modules named after them.
//! - [`s3::Gateway`] is the s3s adapter; [`error::GwError::to_s3`] the one error mapping.
//! - [`server`] is the HTTP edge (TLS, request ids, metrics, graceful shutdown).

pub mod auth;
pub mod batch;
pub mod buckets;
pub mod checksum;
pub mod copy_object;
pub mod data;
pub mod delete_object;
pub mod error;
pub mod gc;
pub mod get_object;
pub mod index;
pub mod layout;
pub mod metered;
pub mod metrics;
pub mod multipart;
pub mod placement;
pub mod put_object;
pub mod s3;
pub mod server;
pub mod tagging;
pub mod users;
pub mod vault;

pub use error::{GwError, Result};
pub use vault::{Vault, VaultOptions};
