//! The SLO verdict and the split of latency, on made-up phases with known distributions: what
//! `cyvault perf slo` prints for each kind of miss.

use std::time::Duration;

use cyvault_perf::io::{JobInfo, JobStats, Report, Rw, TargetKind};
use cyvault_perf::slo::{DiskStats, Phase, PhaseRun, evaluate, nvme_path};
use expect_test::{Expect, expect};

/// A phase whose operations took `clat_us` each (completion) plus `submit_us` (submission),
/// over one second.
fn phase_run(name: &str, rw: Rw, iodepth: usize, fsync: bool, clat_us: &[(u64, u64)], submit_us: u64) -> PhaseRun {
    let phase = Phase { name: name.into(), rw, block_size: 4096, iodepth, fsync };
    let mut stats = JobStats::new();
    let dir = if rw.reads() { &mut stats.read } else { &mut stats.write };
    for &(us, count) in clat_us {
        for _ in 0..count {
            dir.ops += 1;
            dir.bytes += 4096;
            dir.latency.record_ns(us * 1000);
            dir.total_latency.record_ns((us + submit_us) * 1000);
        }
    }
    stats.measured = Duration::from_secs(1);
    let info = JobInfo {
        name: name.into(),
        target: "/dev/nvme0n1".into(),
        target_kind: TargetKind::BlockDevice,
        target_is_block_device: true,
        rw: rw.as_str().into(),
        rwmixread: None,
        block_size: 4096,
        iodepth,
        fsync,
        direct: true,
        region_offset: 0,
        region_len: 1 << 30,
        runtime_s: Some(1.0),
        ramp_s: 0.0,
        seed: 1,
        verify: false,
        ring: None,
    };
    PhaseRun { phase, report: Report::new(vec![(info, stats)]), disk: None }
}

#[track_caller]
fn check(runs: &[PhaseRun], budget_us: u64, device: Option<&str>, expect: Expect) {
    let r = evaluate("/dev/nvme0n1", "nvme-path", device.map(String::from), Duration::from_micros(budget_us), runs);
    assert_eq!(r.met, r.findings.is_empty());
    expect.assert_eq(&r.to_text());
}

fn healthy() -> Vec<PhaseRun> {
    vec![
        phase_run("read-qd1", Rw::RandRead, 1, false, &[(80, 990), (300, 10)], 2),
        phase_run("write-qd1", Rw::RandWrite, 1, false, &[(20, 990), (90, 10)], 2),
        phase_run("read-qd16", Rw::RandRead, 16, false, &[(200, 990), (600, 10)], 1),
    ]
}

#[test]
fn within_budget_every_phase_is_ok() {
    check(
        &healthy(),
        1000,
        None,
        expect![[r#"
            SLO check: profile nvme-path on /dev/nvme0n1, budget p99 ≤ 1.00 ms
            phase                IOPS        p50        p99      p99.9         mean split: submit | queueing | service
            read-qd1             1000    80.1 µs    80.1 µs   300.0 µs  ok     2.0 µs | 0.0 µs | 82.2 µs
            write-qd1            1000    20.0 µs    20.0 µs    90.0 µs  ok     2.0 µs | 0.0 µs | 20.7 µs
            read-qd16            1000   200.1 µs   200.1 µs   600.1 µs  ok     1.0 µs | 121.8 µs | 82.2 µs
            met: every phase's p99 is within 1.00 ms
        "#]],
    );
}

#[test]
fn a_loaded_phase_over_budget_is_blamed_on_queueing() {
    let mut runs = healthy();
    runs[2] = phase_run("read-qd16", Rw::RandRead, 16, false, &[(900, 980), (2500, 20)], 1);
    check(
        &runs,
        1000,
        None,
        expect![[r#"
            SLO check: profile nvme-path on /dev/nvme0n1, budget p99 ≤ 1.00 ms
            phase                IOPS        p50        p99      p99.9         mean split: submit | queueing | service
            read-qd1             1000    80.1 µs    80.1 µs   300.0 µs  ok     2.0 µs | 0.0 µs | 82.2 µs
            write-qd1            1000    20.0 µs    20.0 µs    90.0 µs  ok     2.0 µs | 0.0 µs | 20.7 µs
            read-qd16            1000   900.1 µs    2.50 ms    2.50 ms  MISSED 1.0 µs | 849.6 µs | 82.2 µs
            MISSED: 1 of 3 phases over budget
              - read-qd16: p99 2.50 ms is 1.50 ms over the 1.00 ms budget; most of it is queueing: 2.42 ms of its p99 is waiting behind the other 15 operations in flight (unloaded, the p99 is 80.1 µs); at this depth the path serves about 1000 IOPS: a lower queue depth (or more devices) shortens the wait
        "#]],
    );
}

#[test]
fn an_unloaded_phase_over_budget_is_the_device_or_the_software_above_it() {
    let mut runs = healthy();
    runs[0] = phase_run("read-qd1", Rw::RandRead, 1, false, &[(700, 980), (1500, 20)], 5);
    // The block layer says a read took 700 µs: the device.
    runs[0].disk = Some(DiskStats { reads: 1000, read_ms: 700, ..DiskStats::default() });
    check(
        &runs[..1],
        1000,
        Some("nvme0n1"),
        expect![[r#"
            SLO check: profile nvme-path on /dev/nvme0n1 (block device nvme0n1), budget p99 ≤ 1.00 ms
            phase                IOPS        p50        p99      p99.9         mean split: submit | queueing | service (device + above it)
            read-qd1             1000   700.4 µs    1.50 ms    1.50 ms  MISSED 4.6 µs | 0.0 µs | 716.1 µs (700.0 µs + 20.8 µs)
            MISSED: 1 of 1 phases over budget
              - read-qd1: p99 1.50 ms is 500.2 µs over the 1.00 ms budget; most of it is the device: a request spends 700.0 µs on average in the block layer and the device, of 716.1 µs in all
        "#]],
    );
    // The block layer says 100 µs: the rest is above it.
    runs[0].disk = Some(DiskStats { reads: 1000, read_ms: 100, ..DiskStats::default() });
    check(
        &runs[..1],
        1000,
        Some("nvme0n1"),
        expect![[r#"
            SLO check: profile nvme-path on /dev/nvme0n1 (block device nvme0n1), budget p99 ≤ 1.00 ms
            phase                IOPS        p50        p99      p99.9         mean split: submit | queueing | service (device + above it)
            read-qd1             1000   700.4 µs    1.50 ms    1.50 ms  MISSED 4.6 µs | 0.0 µs | 716.1 µs (100.0 µs + 620.8 µs)
            MISSED: 1 of 1 phases over budget
              - read-qd1: p99 1.50 ms is 500.2 µs over the 1.00 ms budget; most of it is software above the device: 620.8 µs of the mean 716.1 µs is above the block layer (the device takes 100.0 µs)
        "#]],
    );
}

#[test]
fn without_a_block_device_a_slow_unloaded_phase_is_the_service() {
    let runs = [phase_run("write-sync-qd1", Rw::RandWrite, 1, true, &[(1800, 990), (4000, 10)], 0)];
    check(
        &runs,
        1000,
        None,
        expect![[r#"
            SLO check: profile nvme-path on /dev/nvme0n1, budget p99 ≤ 1.00 ms
            phase                IOPS        p50        p99      p99.9         mean split: submit | queueing | service
            write-sync-qd1       1000    1.80 ms    1.80 ms    4.00 ms  MISSED 0.0 µs | 0.0 µs | 1.82 ms
            MISSED: 1 of 1 phases over budget
              - write-sync-qd1: p99 1.80 ms is 800.2 µs over the 1.00 ms budget; most of it is the service itself: unloaded, this operation already takes 1.80 ms at p99 (a slow device, network or OSD)
        "#]],
    );
}

#[test]
fn a_phase_with_no_completions_misses() {
    let runs = [phase_run("read-qd1", Rw::RandRead, 1, false, &[], 0)];
    let r = evaluate("/x", "nvme-path", None, Duration::from_millis(1), &runs);
    assert!(!r.met);
    assert_eq!(r.findings, vec!["read-qd1: no operation completed".to_string()]);
}

#[test]
fn the_nvme_path_profile_is_4k_random_at_qd1_and_qd16() {
    let names: Vec<(String, usize, bool)> = nvme_path().into_iter().map(|p| (p.name, p.iodepth, p.fsync)).collect();
    assert_eq!(
        names,
        [
            ("read-qd1".to_string(), 1, false),
            ("write-qd1".into(), 1, false),
            ("write-sync-qd1".into(), 1, true),
            ("read-qd16".into(), 16, false),
            ("write-qd16".into(), 16, false)
        ]
    );
    assert!(nvme_path().iter().all(|p| p.block_size == 4096 && p.rw.is_random()));
}

/// The reports of every case above validate against docs/perf-slo-report.schema.json (which
/// forbids unknown fields); a planted mistake does not.
#[test]
fn reports_match_the_documented_json_schema() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/perf-slo-report.schema.json"))
        .unwrap_or_else(|e| panic!("read the schema: {e}"));
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("the schema: {e}"));
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("the schema: {e}"));
    let mut with_disk = healthy();
    with_disk[0].disk = Some(DiskStats { reads: 1000, read_ms: 70, ..DiskStats::default() });
    for (runs, device) in [(healthy(), None), (with_disk, Some("vda".to_string()))] {
        let r = evaluate("/dev/nvme0n1", "nvme-path", device, Duration::from_micros(150), &runs);
        let doc = serde_json::to_value(&r).unwrap_or_default();
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{}", errors.join("\n"));
        assert!(!r.met && !r.findings.is_empty(), "a 150 µs budget is missed");
        let mut planted = doc;
        planted["phases"][0]["breakdown"]["queue_us"] = serde_json::json!(1.0);
        assert!(!validator.is_valid(&planted));
    }
}
