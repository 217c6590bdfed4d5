//! Ceph tier: the kill -9 test of `s3_crash.rs` with the gateway on RADOS (where `admin gc` runs
//! beside the live gateway): acknowledged writes survive, cut ones are absent or whole, and gc
//! leaves exactly what the live objects need.

mod common;
#[path = "common/crash_flow.rs"]
mod crash_flow;

use common::Backend;

#[test]
fn kill9_mid_traffic_on_rados_loses_no_acknowledged_write_and_gc_removes_the_leftovers() {
    crash_flow::run(
        Backend::Rados,
        crash_flow::CrashOpts { rounds: 3, threads: 4, min_acks: 4, kill_after_ms: (0, 1500) },
    );
}
