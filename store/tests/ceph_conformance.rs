//! The conformance suite against RADOS on the project's dev cluster (the Ceph tier: run by
//! `scripts/test`, which starts the cluster and exports `CYVAULT_CEPH_CONF`).

mod common;

conformance_suite!((common::rados_store().await, common::ceph_pool(), ()));
