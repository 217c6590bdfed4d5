//! The io_uring engine and workloads of `cyvault_perf::io`: correctness only (no timing
//! assertions; every test is short enough for a 2-core CI machine).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cyvault_perf::io::{
    Completion, Driver, Engine, Feature, IoError, JobSpec, JobStats, LatencyRecorder, Measured, OpKind, OpRequest,
    Progress, RegionLayout, Report, RingOptions, Rng, Rw, Target, TargetOptions, pattern_check, pattern_fill,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Temp files live on a real file system (ext4 here), not tmpfs: O_DIRECT must do device I/O.
fn scratch_dir() -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix("cyvault-io-test").tempdir_in("/var/tmp")
}

fn run(jobs: &[JobSpec]) -> Result<Report, IoError> {
    cyvault_perf::io::run(jobs, &AtomicBool::new(false), &Progress::new())
}

/// A file of exactly `len` bytes, written through the page cache with the verify pattern.
fn make_file(path: &Path, len: usize, seed: u64) -> std::io::Result<()> {
    let mut data = vec![0u8; len];
    pattern_fill(seed, 0, &mut data);
    std::fs::write(path, &data)?;
    std::fs::File::open(path)?.sync_all()
}

fn verify_job(target: &Path, rw: Rw, bs: usize, qd: usize, size: u64) -> JobSpec {
    let mut j = JobSpec::new(target, rw);
    j.block_size = bs;
    j.iodepth = qd;
    j.size = Some(size);
    j.verify = true;
    j.create = true;
    j.seed = 0xC0FFEE ^ (bs as u64) ^ (qd as u64) << 20;
    j
}

/// Writes the region with the pattern, reads it back and compares; checks the counts.
fn check_verify(target: &Path, rw: Rw, bs: usize, qd: usize, size: u64) -> TestResult {
    let report = run(&[verify_job(target, rw, bs, qd, size)])?;
    let m = &report.aggregate;
    let blocks = size.div_ceil(bs as u64);
    let what = format!("{rw} bs={bs} qd={qd} on {}", target.display());
    assert_eq!(m.write.as_ref().map(|w| w.ops), Some(blocks), "{what}: writes");
    assert_eq!(m.read.as_ref().map(|r| r.ops), Some(blocks), "{what}: reads");
    assert_eq!(m.verified_bytes, blocks * bs as u64, "{what}: verified bytes");
    assert_eq!(m.short_ops, 0, "{what}");
    assert_eq!(m.latency.samples, 2 * blocks, "{what}: one latency sample per op");
    assert!(!report.stopped_early);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (a) verify on a temp file: QD1 and QD32, 4k and 128k, random and sequential
// ---------------------------------------------------------------------------------------------

macro_rules! verify_file_tests {
    ($($name:ident: $rw:expr, $bs:expr, $qd:expr;)*) => {$(
        #[test]
        fn $name() -> TestResult {
            let dir = scratch_dir()?;
            let path = dir.path().join("data");
            // 2 MiB: 512 blocks of 4k, 16 of 128k.
            check_verify(&path, $rw, $bs, $qd, 2 << 20)
        }
    )*};
}

verify_file_tests! {
    verify_file_randwrite_4k_qd1: Rw::RandWrite, 4096, 1;
    verify_file_randwrite_4k_qd32: Rw::RandWrite, 4096, 32;
    verify_file_randwrite_128k_qd1: Rw::RandWrite, 128 << 10, 1;
    verify_file_randwrite_128k_qd32: Rw::RandWrite, 128 << 10, 32;
    verify_file_write_4k_qd1: Rw::Write, 4096, 1;
    verify_file_write_4k_qd32: Rw::Write, 4096, 32;
    verify_file_write_128k_qd1: Rw::Write, 128 << 10, 1;
    verify_file_write_128k_qd32: Rw::Write, 128 << 10, 32;
}

#[test]
fn verify_with_each_ring_option() -> TestResult {
    let dir = scratch_dir()?;
    let options = [
        // (fixed_bufs, fixed_files, direct, submit_batch, defer_taskrun)
        (false, false, true, 0, true),
        (true, false, true, 0, true),
        (false, true, true, 0, true),
        (true, true, false, 0, true),
        (true, true, true, 1, true),
        (true, true, true, 3, false),
    ];
    for (i, (fixed_bufs, fixed_files, direct, submit_batch, defer_taskrun)) in options.into_iter().enumerate() {
        let mut j = verify_job(&dir.path().join(format!("data{i}")), Rw::RandWrite, 8192, 8, 1 << 20);
        j.ring.fixed_bufs = fixed_bufs;
        j.ring.fixed_files = fixed_files;
        j.ring.submit_batch = submit_batch;
        j.ring.defer_taskrun = defer_taskrun;
        j.direct = direct;
        let r = run(&[j])?;
        assert_eq!(r.aggregate.verified_bytes, 1 << 20, "option set {i}");
    }
    Ok(())
}

#[test]
fn verify_two_jobs_on_split_regions() -> TestResult {
    let dir = scratch_dir()?;
    let base = verify_job(&dir.path().join("data"), Rw::RandWrite, 4096, 16, 1 << 20);
    let jobs = base.replicate(2, RegionLayout::Split)?;
    assert_eq!(jobs[1].offset, 1 << 20);
    assert_ne!(jobs[0].seed, jobs[1].seed);
    let r = run(&jobs)?;
    assert_eq!(r.jobs.len(), 2);
    assert_eq!(r.aggregate.verified_bytes, 2 << 20);
    assert_eq!(std::fs::metadata(dir.path().join("data"))?.len(), 2 << 20);
    Ok(())
}

/// Reads every 4k block of a file through the engine and checks it against the pattern.
struct CheckingReader {
    blocks: u64,
    next: u64,
    seed: u64,
    mismatches: Vec<u64>,
    bytes: usize,
}

impl Driver for CheckingReader {
    fn next_op(&mut self, _now: Instant) -> Option<OpRequest> {
        (self.next < self.blocks).then(|| {
            self.next += 1;
            OpRequest { kind: OpKind::Read, offset: (self.next - 1) * 4096, len: 4096, sync: false }
        })
    }

    fn complete(&mut self, c: &Completion, data: &[u8]) -> Result<(), IoError> {
        assert_eq!(c.done, data.len());
        self.bytes += data.len();
        if let Some((i, _, _)) = pattern_check(self.seed, c.offset, data) {
            self.mismatches.push(c.offset + i as u64);
        }
        Ok(())
    }
}

#[test]
fn engine_delivers_the_bytes_at_each_offset() -> TestResult {
    let dir = scratch_dir()?;
    let path = dir.path().join("data");
    let seed = 99;
    make_file(&path, 256 << 10, seed)?;
    // Corrupt one byte through the page cache, then flush it.
    let mut data = std::fs::read(&path)?;
    data[8192 + 100] ^= 0xff;
    std::fs::write(&path, &data)?;
    std::fs::File::open(&path)?.sync_all()?;
    let target = Target::open(&path, &TargetOptions { write: false, direct: true, create_len: None })?;
    assert_eq!(target.size(), 256 << 10);
    for depth in [1, 7, 32] {
        let mut engine = Engine::new(&target, &RingOptions::default(), depth, 4096)?;
        let mut reader = CheckingReader { blocks: 64, next: 0, seed, mismatches: Vec::new(), bytes: 0 };
        let stats = engine.run(&mut reader)?;
        assert_eq!(stats.completed, 64);
        assert_eq!(reader.bytes, 256 << 10);
        assert_eq!(reader.mismatches, vec![8192 + 100], "depth {depth}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (b) the same on a loop device over a temp file
// ---------------------------------------------------------------------------------------------

/// A loop device attached for the test, detached by its path when dropped (even on failure).
struct LoopDevice {
    path: PathBuf,
}

impl LoopDevice {
    fn attach(file: &Path) -> Result<LoopDevice, Box<dyn std::error::Error>> {
        let out = Command::new("losetup").args(["--find", "--show", "--direct-io=on"]).arg(file).output()?;
        if !out.status.success() {
            return Err(
                format!("losetup --find --show --direct-io=on: {}", String::from_utf8_lossy(&out.stderr)).into()
            );
        }
        let printed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !printed.starts_with("/dev/loop") {
            return Err(format!("losetup printed {printed:?}").into());
        }
        Ok(LoopDevice { path: PathBuf::from(printed) })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        match Command::new("losetup").arg("-d").arg(&self.path).status() {
            Ok(s) if s.success() => {}
            other => eprintln!("losetup -d {}: {other:?}", self.path.display()),
        }
    }
}

#[test]
fn verify_on_a_loop_device() -> TestResult {
    let dir = scratch_dir()?;
    let backing = dir.path().join("backing");
    std::fs::File::create(&backing)?.set_len(4 << 20)?;
    let dev = LoopDevice::attach(&backing)?;
    for (rw, bs, qd) in [
        (Rw::RandWrite, 4096, 1),
        (Rw::RandWrite, 4096, 32),
        (Rw::Write, 128 << 10, 1),
        (Rw::Write, 128 << 10, 32),
        (Rw::RandWrite, 128 << 10, 32),
        (Rw::Write, 4096, 32),
    ] {
        // The whole device (no size: a block device's region defaults to all of it).
        let mut j = verify_job(&dev.path, rw, bs, qd, 4 << 20);
        j.size = None;
        j.create = false;
        let r = run(&[j])?;
        assert!(r.jobs[0].job.target_is_block_device);
        assert_eq!(r.jobs[0].job.region_len, 4 << 20);
        assert_eq!(r.aggregate.verified_bytes, 4 << 20, "{rw} bs={bs} qd={qd} on {}", dev.path.display());
    }
    // A plain benchmark on the device reads what the verify pass left.
    let mut j = JobSpec::new(&dev.path, Rw::RandRead);
    j.iodepth = 8;
    j.size = Some(1 << 20);
    let r = run(&[j])?;
    assert_eq!(r.aggregate.ops, 256);
    // A loop device has no poll queues: IOPOLL is a typed error (or works, on a kernel where
    // polling a queue without poll support falls back to interrupts).
    let mut j = JobSpec::new(&dev.path, Rw::RandRead);
    j.size = Some(1 << 20);
    j.ring.iopoll = true;
    match run(&[j]) {
        Ok(r) => assert_eq!(r.aggregate.ops, 256),
        Err(e) => assert_eq!(e.unsupported_feature(), Some(Feature::Iopoll), "{e}"),
    }
    // A region past the end of the device is refused before any I/O.
    let mut j = JobSpec::new(&dev.path, Rw::RandRead);
    j.size = Some(8 << 20);
    assert!(matches!(run(&[j]), Err(IoError::Invalid(_))));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (c) short reads at the end of a file
// ---------------------------------------------------------------------------------------------

#[test]
fn short_read_of_the_last_block_is_counted_not_an_error() -> TestResult {
    let dir = scratch_dir()?;
    let path = dir.path().join("odd");
    let len = 10_000u64; // 2 full 4k blocks and 1808 bytes
    make_file(&path, len as usize, 5)?;
    for (direct, qd) in [(true, 1), (true, 4), (false, 1), (false, 4)] {
        let mut j = JobSpec::new(&path, Rw::Read);
        j.direct = direct;
        j.iodepth = qd;
        let r = run(&[j])?;
        let m = &r.aggregate;
        assert_eq!(m.ops, 3, "direct={direct} qd={qd}");
        assert_eq!(m.bytes, len, "direct={direct} qd={qd}: bytes actually read");
        assert_eq!(m.short_ops, 1, "direct={direct} qd={qd}");
    }
    // A region reaching past the end: the read at the end returns 0 bytes, still no error.
    let mut j = JobSpec::new(&path, Rw::Read);
    j.size = Some(16_384);
    j.iodepth = 4;
    let m = run(&[j])?.aggregate;
    assert_eq!((m.ops, m.bytes, m.short_ops), (4, len, 2));
    // What a short read delivers is what the file holds (its last 1808 bytes).
    let target = Target::open(&path, &TargetOptions { write: false, direct: true, create_len: None })?;
    let mut engine = Engine::new(&target, &RingOptions::default(), 2, 4096)?;
    let mut reader = CheckingReader { blocks: 3, next: 0, seed: 5, mismatches: Vec::new(), bytes: 0 };
    let stats = engine.run(&mut reader)?;
    assert_eq!((stats.completed, stats.short, reader.bytes), (3, 1, len as usize));
    assert!(reader.mismatches.is_empty(), "{:?}", reader.mismatches);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (d) percentiles of known distributions
// ---------------------------------------------------------------------------------------------

/// Within the histogram's precision (3 significant digits: 0.1 %).
fn close(actual: u64, expected: u64) -> bool {
    actual.abs_diff(expected) <= expected / 1000 + 1
}

#[test]
fn percentiles_of_a_uniform_distribution() {
    let mut rec = LatencyRecorder::new();
    for ns in 1..=100_000u64 {
        rec.record_ns(ns);
    }
    let s = rec.summary();
    assert_eq!(s.samples, 100_000);
    assert_eq!(s.min_ns, 1);
    assert!(close(s.max_ns, 100_000), "max {}", s.max_ns);
    assert!(close(s.p50_ns, 50_000), "p50 {}", s.p50_ns);
    assert!(close(s.p90_ns, 90_000), "p90 {}", s.p90_ns);
    assert!(close(s.p99_ns, 99_000), "p99 {}", s.p99_ns);
    assert!(close(s.p999_ns, 99_900), "p99.9 {}", s.p999_ns);
    assert!(close(s.p9999_ns, 99_990), "p99.99 {}", s.p9999_ns);
    assert!((s.mean_ns - 50_000.5).abs() < 50.0, "mean {}", s.mean_ns);
}

#[test]
fn percentiles_of_a_bimodal_distribution() {
    // 98 % around 100 µs (uniform 90..110 µs), 2 % around 5 ms (uniform 4.9..5.1 ms).
    let mut rec = LatencyRecorder::new();
    let mut rng = Rng::new(3);
    for i in 0..100_000u64 {
        let ns = if i % 50 == 0 { 4_900_000 + rng.below(200_001) } else { 90_000 + rng.below(20_001) };
        rec.record_ns(ns);
    }
    let s = rec.summary();
    assert!((90_000..=110_100).contains(&s.p50_ns), "p50 {}", s.p50_ns);
    assert!((90_000..=110_100).contains(&s.p90_ns), "p90 {}", s.p90_ns);
    // 2 % are slow: p99 is 50 % into the slow mode, p99.9 95 % into it.
    assert!(close(s.p99_ns, 5_000_000) || s.p99_ns.abs_diff(5_000_000) < 10_000, "p99 {}", s.p99_ns);
    assert!(s.p999_ns.abs_diff(5_090_000) < 10_000, "p99.9 {}", s.p999_ns);
    assert!(s.max_ns >= 5_090_000 && s.max_ns <= 5_110_000, "max {}", s.max_ns);

    // Exact two-point mode: 90 % at 100 µs, 10 % at 5 ms.
    let mut rec = LatencyRecorder::new();
    for i in 0..10_000u64 {
        rec.record_ns(if i < 9_000 { 100_000 } else { 5_000_000 });
    }
    let s = rec.summary();
    assert!(close(s.p50_ns, 100_000) && close(s.p90_ns, 100_000), "{s:?}");
    assert!(close(s.p99_ns, 5_000_000) && close(s.p999_ns, 5_000_000), "{s:?}");
}

#[test]
fn report_json_has_schema_version_1_and_round_trips() -> TestResult {
    let mut stats = JobStats::new();
    for ns in 1..=1000u64 {
        stats.read.ops += 1;
        stats.read.bytes += 4096;
        stats.read.latency.record_ns(ns * 1000);
    }
    stats.measured = Duration::from_secs(2);
    let m = Measured::from_stats(&stats);
    assert_eq!(m.iops, 500.0);
    assert!(close(m.latency.p50_ns, 500_000));
    let dir = scratch_dir()?;
    let path = dir.path().join("f");
    make_file(&path, 1 << 20, 1)?;
    let report = run(&[JobSpec::new(&path, Rw::RandRead)])?;
    let json = report.to_json()?;
    let v: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["jobs"][0]["job"]["rw"], "randread");
    // Floats may differ in the last digit after a text round trip; everything else is exact.
    let back = Report::from_json(&json)?;
    assert_eq!(back.jobs[0].job, report.jobs[0].job);
    assert_eq!(back.aggregate.ops, report.aggregate.ops);
    assert_eq!(back.aggregate.latency.p99_ns, report.aggregate.latency.p99_ns);
    assert_eq!(back.aggregate.series.len(), report.aggregate.series.len());
    let v2 = json.replacen("\"schema_version\": 1", "\"schema_version\": 2", 1);
    assert!(Report::from_json(&v2).is_err());
    assert!(report.to_text().contains("rw=randread"));
    Ok(())
}

/// Real reports (a mixed timed run of two jobs, a verify pass, a stopped run) validate against
/// the schema documented in docs/perf-io-report.schema.json, which forbids unknown fields: a
/// field added to the report without the document, or renamed, fails here. A planted mistake
/// is rejected, so the check can fail.
#[test]
fn reports_match_the_documented_json_schema() -> TestResult {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/perf-io-report.schema.json"))?;
    let schema: serde_json::Value = serde_json::from_str(&text)?;
    let validator = jsonschema::validator_for(&schema).map_err(|e| format!("the schema itself: {e}"))?;
    let dir = scratch_dir()?;
    let path = dir.path().join("f");
    make_file(&path, 1 << 20, 1)?;
    let mut mixed = JobSpec::new(&path, Rw::RandRw);
    mixed.rwmixread = 70;
    mixed.iodepth = 4;
    mixed.runtime = Some(Duration::from_millis(300));
    let mut verify = JobSpec::new(&path, Rw::Write);
    verify.verify = true;
    verify.fsync = true;
    let reports = [run(&mixed.replicate(2, RegionLayout::Shared)?)?, run(&[verify])?];
    for report in &reports {
        let doc: serde_json::Value = serde_json::from_str(&report.to_json()?)?;
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "the report does not match docs/perf-io-report.schema.json:\n{}", errors.join("\n"));
        let mut planted = doc.clone();
        planted["jobs"][0]["measured"]["latency"]["p99_us"] = serde_json::json!(1);
        assert!(!validator.is_valid(&planted), "an unknown field must be rejected");
        let mut planted = doc;
        planted["jobs"][0]["job"]["target_kind"] = serde_json::json!("tape");
        assert!(!validator.is_valid(&planted), "an unknown target kind must be rejected");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (e) refused features give a typed error
// ---------------------------------------------------------------------------------------------

#[test]
fn iopoll_where_it_cannot_work_is_a_typed_error() -> TestResult {
    // tmpfs has no polled I/O: the first completion fails (EOPNOTSUPP), or O_DIRECT itself is
    // refused at open on kernels whose tmpfs has no O_DIRECT. Either way a typed error.
    let shm = tempfile::Builder::new().prefix("cyvault-io-test").tempdir_in("/dev/shm")?;
    let path = shm.path().join("f");
    make_file(&path, 256 << 10, 1)?;
    let mut j = JobSpec::new(&path, Rw::RandRead);
    j.ring.iopoll = true;
    let err = run(&[j]).err().ok_or("IOPOLL on tmpfs unexpectedly worked")?;
    eprintln!("IOPOLL on tmpfs: {err}");
    match err.unsupported_feature() {
        Some(Feature::Iopoll) => assert_eq!(err.errno(), Some(libc_eopnotsupp())),
        Some(Feature::DirectIo) => {}
        other => panic!("expected Unsupported(IOPOLL or O_DIRECT), got {other:?}: {err}"),
    }

    // A file on the real file system: polled I/O works only where the device has poll queues
    // (an NVMe with poll_queues set); on this machine's virtio disk the kernel refuses it.
    let dir = scratch_dir()?;
    let file = dir.path().join("g");
    make_file(&file, 256 << 10, 1)?;
    let mut j = JobSpec::new(&file, Rw::RandRead);
    j.ring.iopoll = true;
    match run(&[j]) {
        Ok(r) => assert_eq!(r.aggregate.ops, 64),
        Err(e) => {
            eprintln!("IOPOLL on {}: {e}", file.display());
            assert_eq!(e.unsupported_feature(), Some(Feature::Iopoll), "{e}");
        }
    }

    // IOPOLL cannot carry fdatasync, nor buffered I/O: refused before any I/O, on any target.
    let mut j = JobSpec::new(&file, Rw::RandWrite);
    j.ring.iopoll = true;
    j.fsync = true;
    let err = run(&[j]).err().ok_or("IOPOLL + fdatasync unexpectedly worked")?;
    assert_eq!(err.unsupported_feature(), Some(Feature::Iopoll), "{err}");
    let mut j = JobSpec::new(&file, Rw::RandRead);
    j.ring.iopoll = true;
    j.direct = false;
    let err = run(&[j]).err().ok_or("IOPOLL + buffered unexpectedly worked")?;
    assert_eq!(err.unsupported_feature(), Some(Feature::Iopoll), "{err}");
    Ok(())
}

fn libc_eopnotsupp() -> i32 {
    95 // EOPNOTSUPP on Linux
}

#[test]
fn sqpoll_works_as_root_or_is_a_typed_error() -> TestResult {
    let dir = scratch_dir()?;
    let file = dir.path().join("f");
    make_file(&file, 512 << 10, 1)?;
    let mut j = JobSpec::new(&file, Rw::RandRead);
    j.ring.sqpoll = true;
    j.iodepth = 8;
    match run(&[j]) {
        Ok(r) => assert_eq!(r.aggregate.ops, 128),
        Err(e) => assert_eq!(e.unsupported_feature(), Some(Feature::Sqpoll), "{e}"),
    }
    Ok(())
}

#[test]
fn misaligned_offsets_and_block_sizes_are_refused_before_io() -> TestResult {
    // O_DIRECT's real rule depends on the device's logical block size (a refusal at the first
    // completion is reported as Unsupported(O_DIRECT)); what does not depend on the device is
    // checked up front: offsets and block sizes are multiples of 512.
    let dir = scratch_dir()?;
    let file = dir.path().join("f");
    make_file(&file, 64 << 10, 1)?;
    let mut j = JobSpec::new(&file, Rw::RandRead);
    j.offset = 100;
    assert!(matches!(run(&[j]), Err(IoError::Invalid(_))));
    let mut j = JobSpec::new(&file, Rw::RandRead);
    j.block_size = 1000;
    assert!(matches!(run(&[j]), Err(IoError::Invalid(_))));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (f) fdatasync after every write
// ---------------------------------------------------------------------------------------------

#[test]
fn fsync_mode_counts_one_sample_per_acknowledged_write() -> TestResult {
    let dir = scratch_dir()?;
    let file = dir.path().join("f");
    for (rw, qd) in [(Rw::RandWrite, 1), (Rw::RandWrite, 8), (Rw::Write, 4)] {
        let mut j = JobSpec::new(&file, rw);
        j.size = Some(256 << 10);
        j.create = true;
        j.fsync = true;
        j.iodepth = qd;
        let r = run(&[j])?;
        let m = &r.aggregate;
        let w = m.write.as_ref().ok_or("no writes")?;
        assert_eq!(w.ops, 64, "{rw} qd={qd}");
        assert_eq!(w.latency.samples, 64, "{rw} qd={qd}: one sample per acknowledged write");
        assert_eq!(m.syncs, 64, "{rw} qd={qd}: every write was followed by a completed fdatasync");
        assert!(m.read.is_none());
        assert!(r.jobs[0].job.fsync);
    }
    // randrw with fsync: only the writes are synced.
    let mut j = JobSpec::new(&file, Rw::RandRw);
    j.size = Some(256 << 10);
    j.fsync = true;
    j.rwmixread = 70;
    j.iodepth = 4;
    let m = run(&[j])?.aggregate;
    let (reads, writes) = (m.read.map_or(0, |d| d.ops), m.write.map_or(0, |d| d.ops));
    assert_eq!(reads + writes, 64);
    assert_eq!(m.syncs, writes);
    assert!(reads > 0 && writes > 0, "reads {reads} writes {writes}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (g) stopping early
// ---------------------------------------------------------------------------------------------

#[test]
fn stop_flag_ends_a_timed_run_with_a_partial_report() -> TestResult {
    let dir = scratch_dir()?;
    let file = dir.path().join("f");
    make_file(&file, 1 << 20, 1)?;
    let mut j = JobSpec::new(&file, Rw::RandRead);
    j.runtime = Some(Duration::from_secs(600));
    j.iodepth = 4;
    let jobs = j.replicate(2, RegionLayout::Shared)?;
    let stop = AtomicBool::new(false);
    let progress = Progress::new();
    let report = std::thread::scope(|s| {
        s.spawn(|| {
            // Stop once something was measured (bounded wait: 5 s at most).
            for _ in 0..5000 {
                if progress.ops() >= 200 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            stop.store(true, Ordering::Relaxed);
        });
        cyvault_perf::io::run(&jobs, &stop, &progress)
    })?;
    assert!(report.stopped_early);
    assert!(report.jobs.iter().all(|j| j.measured.stopped_early));
    assert!(report.aggregate.ops >= 200, "{} ops", report.aggregate.ops);
    assert_eq!(report.aggregate.ops, report.jobs.iter().map(|j| j.measured.ops).sum::<u64>());
    assert!(report.aggregate.latency.samples == report.aggregate.ops);
    assert!(report.to_text().contains("stopped early"));

    // Stopped before it started: an empty report, not an error.
    let stop = AtomicBool::new(true);
    let report = cyvault_perf::io::run(&jobs, &stop, &Progress::new())?;
    assert!(report.stopped_early);
    assert_eq!(report.aggregate.ops, 0);
    Ok(())
}

#[test]
fn ramp_excludes_early_completions_and_series_cover_the_window() -> TestResult {
    let dir = scratch_dir()?;
    let file = dir.path().join("f");
    make_file(&file, 1 << 20, 1)?;
    let mut j = JobSpec::new(&file, Rw::RandRead);
    j.runtime = Some(Duration::from_millis(1200));
    j.ramp = Duration::from_millis(300);
    j.iodepth = 2;
    let progress = Progress::new();
    let r = cyvault_perf::io::run(&[j], &AtomicBool::new(false), &progress)?;
    let m = &r.aggregate;
    assert!(!r.stopped_early);
    // Ops completed during the ramp are in the progress counters but not in the report.
    assert!(progress.ops() > m.ops, "progress {} report {}", progress.ops(), m.ops);
    assert_eq!(m.series.iter().map(|s| s.read_ops).sum::<u64>(), m.ops);
    assert!(m.series.len() >= 2, "{} seconds in the series", m.series.len());
    Ok(())
}

#[test]
fn offsets_are_deterministic_per_seed() {
    let seq = |seed| {
        let mut r = Rng::new(seed);
        (0..1000).map(|_| r.below(4096)).collect::<Vec<_>>()
    };
    assert_eq!(seq(7), seq(7));
    assert_ne!(seq(7), seq(8));
    assert!(seq(7).iter().all(|&b| b < 4096));
}

#[test]
fn rw_and_layout_parse_fio_names() {
    for s in ["randread", "randwrite", "read", "write", "randrw"] {
        assert_eq!(s.parse::<Rw>().map(|r| r.as_str().to_owned()), Ok(s.to_owned()));
    }
    assert!("randtrim".parse::<Rw>().is_err());
    assert_eq!("split".parse::<RegionLayout>(), Ok(RegionLayout::Split));
}
