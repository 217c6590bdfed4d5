//! The placement engine: a pure model of sites, clusters, pools and links, and deterministic,
//! explained pool choices. No IO, no async, no Ceph.
//!
//! Not built yet: this crate holds no code until the placement issue (#4) lands.
