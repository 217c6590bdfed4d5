//! kill -9 of the gateway (local backend) in the middle of PUT and multipart traffic, three times:
//! every acknowledged write reads back whole, no cut write is visible in part, unfinished uploads
//! stay listed, and `admin gc` then removes exactly the leftovers.

mod common;
#[path = "common/crash_flow.rs"]
mod crash_flow;

use common::Backend;

#[test]
fn kill9_mid_traffic_loses_no_acknowledged_write_and_gc_removes_the_leftovers() {
    crash_flow::run(
        Backend::Local,
        crash_flow::CrashOpts { rounds: 3, threads: 4, min_acks: 4, kill_after_ms: (0, 1500) },
    );
}
