//! The Ceph tier of the I/O engine: RBD images (librbd) and RADOS objects (librados) against the
//! project's dev cluster, for correctness (what was written is what is read back, counts,
//! refusals), not speed. Run by `scripts/test`, which starts the cluster and exports
//! `CYVAULT_CEPH_CONF`; without it every test fails (never skips). Pools: `CYVAULT_RBD_POOL`
//! (default `rbd`) and `CYVAULT_CEPH_POOL` (default `cyvault-test`).
//!
//! Every test names its image or object prefix after itself and the process, and removes what it
//! made when it ends, passed or failed.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use cyvault_perf::fio;
use cyvault_perf::fio_jobfile::from_specs;
use cyvault_perf::io::{
    CephLogin, IoError, JobSpec, Progress, Report, Rw, TargetKind, TargetSpec, pattern_check, rados_object_name,
};
use cyvault_store::rbd::Rbd;
use cyvault_store::{Cluster, ObjectRef, ObjectStore, RadosConfig, RadosStore, ReadRange};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn login() -> CephLogin {
    let conf = std::env::var("CYVAULT_CEPH_CONF")
        .unwrap_or_else(|_| panic!("CYVAULT_CEPH_CONF is not set: the Ceph tier runs against scripts/dev-cluster"));
    CephLogin { conf, id: std::env::var("CYVAULT_CEPH_ID").unwrap_or_else(|_| "admin".into()) }
}

fn rbd_pool() -> String {
    std::env::var("CYVAULT_RBD_POOL").unwrap_or_else(|_| "rbd".into())
}

fn rados_pool() -> String {
    std::env::var("CYVAULT_CEPH_POOL").unwrap_or_else(|_| "cyvault-test".into())
}

fn unique(tag: &str) -> String {
    format!("perf-{tag}-{}", std::process::id())
}

fn run(jobs: &[JobSpec]) -> Result<Report, IoError> {
    cyvault_perf::io::run(jobs, &AtomicBool::new(false), &Progress::new())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("a tokio runtime: {e}"))
}

async fn cluster() -> std::sync::Arc<Cluster> {
    let l = login();
    Cluster::connect(&RadosConfig::new(l.conf, l.id)).await.unwrap_or_else(|e| panic!("connect: {e}"))
}

/// Runs `body` on an RBD image name, then removes the image (retrying while a closed handle
/// still shows as a watcher).
fn with_image(tag: &str, body: impl FnOnce(&str) -> TestResult) -> TestResult {
    let name = unique(tag);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&name)));
    runtime().block_on(async {
        let store = RadosStore::new(cluster().await);
        let rbd = Rbd::new(store.ioctx(&rbd_pool(), "").await.unwrap_or_else(|e| panic!("open pool: {e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..50 {
            match rbd.remove(&name).await {
                Ok(()) | Err(cyvault_store::StoreError::NotFound(_)) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    match outcome {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs `body` on a RADOS object prefix, then removes objects 0..count of it.
fn with_objects(tag: &str, count: u64, body: impl FnOnce(&str) -> TestResult) -> TestResult {
    let prefix = unique(tag);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&prefix)));
    runtime().block_on(async {
        let store = RadosStore::new(cluster().await);
        for i in 0..count {
            let _ = store.remove(&ObjectRef::new(rados_pool(), "", rados_object_name(&prefix, i))).await;
        }
    });
    match outcome {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// RBD and RADOS reports (no io_uring ring) match docs/perf-io-report.schema.json too.
fn assert_matches_schema(r: &Report) -> TestResult {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/perf-io-report.schema.json"))?;
    let validator = jsonschema::validator_for(&serde_json::from_str(&text)?).map_err(|e| e.to_string())?;
    let doc: serde_json::Value = serde_json::from_str(&r.to_json()?)?;
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| format!("{}: {e}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    Ok(())
}

fn rbd_job(image: &str, rw: Rw) -> JobSpec {
    JobSpec::new(TargetSpec::Rbd { ceph: login(), pool: rbd_pool(), image: image.into() }, rw)
}

fn rados_job(prefix: &str, object_size: u64, rw: Rw) -> JobSpec {
    let t = TargetSpec::Rados { ceph: login(), pool: rados_pool(), prefix: prefix.into(), object_size };
    JobSpec::new(t, rw)
}

/// Writes every block of the region with the pattern, reads it back, compares: at QD1 and
/// QD16, random and sequential, 4 KiB and 64 KiB.
#[test]
fn rbd_verify_reads_back_what_was_written() -> TestResult {
    with_image("verify", |image| {
        for (rw, bs, qd) in [(Rw::RandWrite, 4096, 16), (Rw::Write, 65536, 1), (Rw::RandWrite, 65536, 8)] {
            let mut j = rbd_job(image, rw);
            (j.block_size, j.iodepth, j.size, j.verify, j.create, j.seed) = (bs, qd, Some(4 << 20), true, true, 7);
            let r = run(&[j])?;
            let m = &r.jobs[0].measured;
            let blocks = (4u64 << 20) / bs as u64;
            assert_eq!(r.jobs[0].job.target_kind, TargetKind::Rbd);
            assert_eq!(m.verified_bytes, 4 << 20, "{rw} bs={bs} qd={qd}");
            assert_eq!(m.write.as_ref().map(|d| d.ops), Some(blocks));
            assert_eq!(m.read.as_ref().map(|d| d.ops), Some(blocks));
            assert!(r.jobs[0].job.ring.is_none(), "no io_uring for rbd");
            assert_matches_schema(&r)?;
        }
        Ok(())
    })
}

/// What a verify job wrote is on the cluster: read back through a separate librbd handle, the
/// blocks hold the pattern of its seed (and not that of another seed).
#[test]
fn rbd_data_is_on_the_cluster_after_the_job() -> TestResult {
    with_image("persist", |image| {
        let mut w = rbd_job(image, Rw::RandWrite);
        (w.size, w.verify, w.create, w.seed, w.iodepth) = (Some(1 << 20), true, true, 11, 4);
        run(&[w])?;
        let offset = 300 << 10;
        let data = runtime().block_on(async {
            let store = RadosStore::new(cluster().await);
            let rbd = Rbd::new(store.ioctx(&rbd_pool(), "").await?)?;
            let img = rbd.open(image).await?;
            let d = img.read(offset, 4096).await?;
            img.close().await?;
            Ok::<_, cyvault_store::StoreError>(d)
        })?;
        assert_eq!(pattern_check(11, offset, &data), None, "seed 11's pattern");
        assert!(pattern_check(12, offset, &data).is_some(), "another seed's pattern differs");
        Ok(())
    })
}

/// Timed runs count every completion; fsync jobs count one flush per acknowledged write.
#[test]
fn rbd_timed_randwrite_with_flush_counts_every_acknowledged_write() -> TestResult {
    with_image("fsync", |image| {
        let mut j = rbd_job(image, Rw::RandWrite);
        (j.size, j.create, j.fsync, j.iodepth) = (Some(8 << 20), true, true, 4);
        j.runtime = Some(Duration::from_millis(700));
        let r = run(&[j])?;
        let m = &r.jobs[0].measured;
        let writes = m.write.as_ref().map_or(0, |d| d.ops);
        assert!(writes > 10, "{writes} writes in 0.7 s");
        assert_eq!(m.syncs, writes, "every write is acknowledged by its flush");
        assert!(m.latency.p50_ns > 0 && m.latency.p99_ns >= m.latency.p50_ns);
        Ok(())
    })
}

/// A region past the end of the image is refused before any I/O; a missing image without
/// --create says how to make one.
#[test]
fn rbd_refusals_are_clear() -> TestResult {
    with_image("refuse", |image| {
        let mut missing = rbd_job(image, Rw::RandRead);
        missing.runtime = Some(Duration::from_millis(100));
        let e = run(&[missing]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("does not exist") && e.contains("--create"), "{e}");

        let mut make = rbd_job(image, Rw::RandWrite);
        (make.size, make.create) = (Some(1 << 20), true);
        run(&[make])?;
        let mut past = rbd_job(image, Rw::RandRead);
        (past.offset, past.size) = (512 << 10, Some(1 << 20));
        let e = run(&[past]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("ends past the end"), "{e}");
        Ok(())
    })
}

/// `--create` on a job that reads lays a new image out (reads of a fresh image would be
/// zeros served without an OSD): afterwards the blocks hold data.
#[test]
fn rbd_create_lays_out_a_new_image_for_reads() -> TestResult {
    with_image("layout", |image| {
        let mut j = rbd_job(image, Rw::RandRead);
        (j.size, j.create) = (Some(8 << 20), true);
        j.runtime = Some(Duration::from_millis(200));
        run(&[j])?;
        let data = runtime().block_on(async {
            let store = RadosStore::new(cluster().await);
            let rbd = Rbd::new(store.ioctx(&rbd_pool(), "").await?)?;
            let img = rbd.open(image).await?;
            let d = img.read(5 << 20, 4096).await?;
            img.close().await?;
            Ok::<_, cyvault_store::StoreError>(d)
        })?;
        assert_eq!(data.len(), 4096);
        assert!(data.iter().any(|&b| b != 0), "the laid-out image reads as zeros");
        Ok(())
    })
}

/// fio's rbd engine runs the job we render from ours, on the same image, and its JSON parses.
#[test]
fn fio_rbd_engine_runs_the_rendered_job() -> TestResult {
    with_image("fio", |image| {
        let mut j = rbd_job(image, Rw::RandWrite);
        (j.size, j.create, j.iodepth) = (Some(8 << 20), true, 4);
        j.runtime = Some(Duration::from_secs(1));
        cyvault_perf::io::prepare_targets(std::slice::from_ref(&j), &AtomicBool::new(false), &Progress::new())?;
        let f = from_specs(&[j])?;
        let s = runtime().block_on(fio::run(&f))?;
        let w = s.write.ok_or("fio reported no writes")?;
        assert!(w.ops > 10 && w.latency.p50_us > 0.0, "{w:?}");
        Ok(())
    })
}

/// RADOS: offsets map to objects PREFIX.00000000… of object_size; a verify pass over 16 objects
/// reads back what it wrote, and the objects exist with the expected size.
#[test]
fn rados_verify_spans_objects() -> TestResult {
    with_objects("verify", 16, |prefix| {
        let mut j = rados_job(prefix, 64 << 10, Rw::RandWrite);
        (j.size, j.verify, j.iodepth) = (Some(1 << 20), true, 8);
        let r = run(&[j])?;
        assert_eq!(r.jobs[0].measured.verified_bytes, 1 << 20);
        assert_eq!(r.jobs[0].job.target_kind, TargetKind::Rados);
        assert_matches_schema(&r)?;
        runtime().block_on(async {
            let store = RadosStore::new(cluster().await);
            for i in [0, 7, 15] {
                let obj = ObjectRef::new(rados_pool(), "", rados_object_name(prefix, i));
                let st = store.stat(&obj).await.unwrap_or_else(|e| panic!("{}: {e}", obj.name));
                assert_eq!(st.size, 64 << 10, "{}", obj.name);
            }
            let past = ObjectRef::new(rados_pool(), "", rados_object_name(prefix, 16));
            assert!(store.read(&past, ReadRange::Full).await.is_err(), "no 17th object");
        });
        Ok(())
    })
}

/// Reads of objects never written are an error that says to lay them out; --create does; a
/// block size that does not divide the object size is refused before any I/O.
#[test]
fn rados_missing_objects_and_bad_layouts_are_clear_errors() -> TestResult {
    with_objects("missing", 4, |prefix| {
        let mut j = rados_job(prefix, 1 << 20, Rw::RandRead);
        j.size = Some(4 << 20);
        j.runtime = Some(Duration::from_millis(200));
        let e = run(&[j.clone()]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("--create"), "{e}");
        j.create = true;
        let r = run(&[j.clone()])?;
        assert!(r.aggregate.ops > 0);

        let mut odd = j.clone();
        odd.block_size = 3 * 4096;
        let e = run(&[odd]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("must divide the object size"), "{e}");

        let mut no_size = j;
        no_size.size = None;
        let e = run(&[no_size]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("needs a size"), "{e}");
        Ok(())
    })
}

/// The stop flag (Ctrl-C) ends a long RBD run early with a report of what ran.
#[test]
fn stop_flag_ends_an_rbd_run_with_a_partial_report() -> TestResult {
    with_image("stop", |image| {
        let mut j = rbd_job(image, Rw::RandWrite);
        (j.size, j.create, j.iodepth) = (Some(8 << 20), true, 8);
        j.runtime = Some(Duration::from_secs(60));
        let stop = AtomicBool::new(false);
        let started = std::time::Instant::now();
        let r = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(500));
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            cyvault_perf::io::run(&[j], &stop, &Progress::new())
        })?;
        assert!(started.elapsed() < Duration::from_secs(20), "stopped after {:?}", started.elapsed());
        assert!(r.stopped_early && r.aggregate.ops > 0);
        Ok(())
    })
}
