//! The Kubernetes CSI driver: identity, controller and node services over a unix socket,
//! provisioning RBD images through `cyvault-store`.
//!
//! Not built yet: this crate holds no code until the CSI issue (#5) lands.
