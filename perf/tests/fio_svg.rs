//! The fio runner (command lines, JSON and logs of real fio 3.33 runs kept in `tests/data/`, one
//! short real run) and the SVG plots (well-formed, one line per series, the nines scale, escaping,
//! determinism, empty input).
//!
//! Command-line snapshots and the example plots in docs/ are expect-test snapshots: regenerate them
//! with `UPDATE_EXPECT=1 cargo test -p cyvault-perf --test fio_svg`, then read the diff. The fio
//! fixtures come from `tests/data/generate.sh`.

use std::collections::BTreeMap;
use std::ffi::OsStr;

use cyvault_perf::fio::{self, FioError, FioJob, FioSummary, RbdTarget, Rw, UringFlags};
use cyvault_perf::svg::{self, Series};
use expect_test::{Expect, expect, expect_file};
use hdrhistogram::Histogram;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const RANDREAD: &str = include_str!("data/randread-4k-qd1.json");
const RANDWRITE: &str = include_str!("data/randwrite-4k-qd16.json");
const RANDRW: &str = include_str!("data/randrw70-4k-qd8.json");
const FDATASYNC: &str = include_str!("data/write-4k-fdatasync.json");
const RANDREAD_LOG: &str = include_str!("data/randread-4k-qd1.iops.log");
const RANDWRITE_LOG: &str = include_str!("data/randwrite-4k-qd16.iops.log");
const RANDRW_LOG: &str = include_str!("data/randrw70-4k-qd8.iops.log");
const FDATASYNC_LOG: &str = include_str!("data/write-4k-fdatasync.iops.log");

/// The job each fixture was made with (see tests/data/generate.sh).
fn fixture_job(name: &str, rw: Rw, iodepth: u32, rwmixread: Option<u8>, fsync: bool) -> FioJob {
    FioJob {
        name: name.into(),
        filename: "/var/tmp/cyv-fio-fixture.dat".into(),
        rw,
        rwmixread,
        bs: 4096,
        iodepth,
        size: Some(256 << 20),
        offset: 0,
        runtime_secs: Some(5),
        ramp_secs: Some(1),
        numjobs: 1,
        norandommap: false,
        direct: true,
        fsync,
        ioengine: "io_uring".into(),
        uring: UringFlags::default(),
        rbd: None,
        extra: vec![("write_iops_log".into(), name.into()), ("log_avg_msec".into(), "100".into())],
    }
}

fn fixtures() -> [(&'static str, FioJob); 4] {
    [
        (RANDREAD, fixture_job("randread-4k-qd1", Rw::RandRead, 1, None, false)),
        (RANDWRITE, fixture_job("randwrite-4k-qd16", Rw::RandWrite, 16, None, false)),
        (RANDRW, fixture_job("randrw70-4k-qd8", Rw::RandRw, 8, Some(70), false)),
        (FDATASYNC, fixture_job("write-4k-fdatasync", Rw::Write, 1, None, true)),
    ]
}

#[track_caller]
fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("fixture is not JSON: {e}"))
}

#[track_caller]
fn parsed(text: &str) -> FioSummary {
    fio::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

/// A number from a fixture, by JSON pointer.
#[track_caller]
fn num(doc: &Value, pointer: &str) -> f64 {
    doc.pointer(pointer).and_then(Value::as_f64).unwrap_or_else(|| panic!("fixture has no number at {pointer}"))
}

#[track_caller]
fn close(actual: f64, expected: f64, what: &str) {
    assert!((actual - expected).abs() <= 1e-9 * expected.abs().max(1.0), "{what}: {actual} != {expected}");
}

/// Checks a parsed direction (or sync) against the numbers in the fixture, from `ns_pointer` (the
/// fixture's `clat_ns` or `lat_ns` object).
#[track_caller]
fn check_latency(lat: &fio::LatencySummary, doc: &Value, ns_pointer: &str) {
    let us = |key: &str| num(doc, &format!("{ns_pointer}/{key}")) / 1000.0;
    close(lat.mean_us, us("mean"), "mean");
    close(lat.max_us, us("max"), "max");
    close(lat.p50_us, us("percentile/50.000000"), "p50");
    close(lat.p90_us, us("percentile/90.000000"), "p90");
    close(lat.p99_us, us("percentile/99.000000"), "p99");
    close(lat.p999_us, us("percentile/99.900000"), "p99.9");
    close(lat.p9999_us, us("percentile/99.990000"), "p99.99");
    assert_eq!(lat.samples as f64, num(doc, &format!("{ns_pointer}/N")));
    let map = doc.pointer(&format!("{ns_pointer}/percentile")).and_then(Value::as_object).map_or(0, |m| m.len());
    assert_eq!(lat.percentiles.len(), map, "every percentile fio printed is kept");
    assert!(
        lat.percentiles.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "ascending: {:?}",
        lat.percentiles
    );
}

#[track_caller]
fn check_direction(sum: &Option<fio::DirSummary>, doc: &Value, dir: &str) {
    let d = sum.as_ref().unwrap_or_else(|| panic!("no {dir} section parsed"));
    let at = |key: &str| num(doc, &format!("/jobs/0/{dir}/{key}"));
    assert_eq!(d.ops as f64, at("total_ios"));
    assert_eq!(d.bytes as f64, at("io_bytes"));
    close(d.iops, at("iops"), "iops");
    close(d.mib_per_s, at("bw_bytes") / 1048576.0, "MiB/s");
    check_latency(&d.latency, doc, &format!("/jobs/0/{dir}/clat_ns"));
    // Completion latency, not total latency (which adds the submission time).
    assert!(d.latency.mean_us < num(doc, &format!("/jobs/0/{dir}/lat_ns/mean")) / 1000.0);
}

// ---------------------------------------------------------------------------------------------
// fio command lines
// ---------------------------------------------------------------------------------------------

fn check(job: FioJob, expect: Expect) {
    expect.assert_eq(&job.command_line());
}

#[test]
fn command_randread_qd1_direct_time_based() {
    let mut job = FioJob::new("randread", "/dev/nvme0n1", Rw::RandRead);
    job.direct = true;
    job.runtime_secs = Some(30);
    job.ramp_secs = Some(5);
    check(
        job,
        expect![
            "fio --name=randread --ioengine=io_uring --filename=/dev/nvme0n1 --rw=randread --bs=4096 --iodepth=1 --direct=1 --time_based --runtime=30 --ramp_time=5 --numjobs=1 --group_reporting --output-format=json"
        ],
    );
}

#[test]
fn command_randrw_mix_size_fdatasync_numjobs() {
    let mut job = FioJob::new("mixed", "/var/tmp/f", Rw::RandRw);
    (job.rwmixread, job.bs, job.iodepth, job.size, job.numjobs) = (Some(70), 16384, 32, Some(1 << 30), 4);
    job.fsync = true;
    job.ioengine = "libaio".into();
    check(
        job,
        expect![
            "fio --name=mixed --ioengine=libaio --filename=/var/tmp/f --rw=randrw --rwmixread=70 --bs=16384 --iodepth=32 --size=1073741824 --direct=0 --fdatasync=1 --numjobs=4 --group_reporting --output-format=json"
        ],
    );
}

#[test]
fn command_io_uring_flags_only_for_io_uring() {
    let mut job = FioJob::new("polled", "/dev/nvme0n1", Rw::Read);
    job.uring = UringFlags { hipri: true, sqthread_poll: true, fixedbufs: true, registerfiles: true };
    check(
        job.clone(),
        expect![
            "fio --name=polled --ioengine=io_uring --filename=/dev/nvme0n1 --rw=read --bs=4096 --iodepth=1 --direct=0 --hipri --sqthread_poll --fixedbufs --registerfiles --numjobs=1 --group_reporting --output-format=json"
        ],
    );
    job.ioengine = "psync".into();
    check(
        job,
        expect![
            "fio --name=polled --ioengine=psync --filename=/dev/nvme0n1 --rw=read --bs=4096 --iodepth=1 --direct=0 --numjobs=1 --group_reporting --output-format=json"
        ],
    );
}

#[test]
fn command_rbd_engine_names_the_image_and_passes_the_conf() {
    let mut job = FioJob::new("rbd-randwrite", "", Rw::RandWrite);
    job.ioengine = "rbd".into();
    job.iodepth = 16;
    job.rbd = Some(RbdTarget {
        pool: "rbd".into(),
        image: "bench-1".into(),
        client_name: "admin".into(),
        conf: Some("/tmp/cyv dev/ceph.conf".into()),
    });
    assert_eq!(
        job.env(),
        vec![
            ("CEPH_CONF".to_string(), "/tmp/cyv dev/ceph.conf".to_string()),
            ("CEPH_ARGS".to_string(), "--rbd_cache=false".to_string())
        ]
    );
    check(
        job,
        expect![
            "CEPH_CONF='/tmp/cyv dev/ceph.conf' CEPH_ARGS=--rbd_cache=false fio --name=rbd-randwrite --ioengine=rbd --pool=rbd --rbdname=bench-1 --clientname=admin --rw=randwrite --bs=4096 --iodepth=16 --direct=0 --numjobs=1 --group_reporting --output-format=json"
        ],
    );
}

#[test]
fn command_escapes_colons_quotes_for_display_and_appends_extra() {
    let mut job = FioJob::new("it's", "/mnt/a:b", Rw::Write);
    job.extra = vec![("percentile_list".into(), "50:99:99.999".into()), ("verify".into(), "crc32c".into())];
    // The arguments themselves are never shell-quoted (no shell runs them), only the display.
    assert_eq!(
        job.args()[..3],
        ["--name=it's".to_string(), "--ioengine=io_uring".into(), "--filename=/mnt/a\\:b".into()]
    );
    check(
        job,
        expect![[
            r#"fio '--name=it'\''s' --ioengine=io_uring '--filename=/mnt/a\:b' --rw=write --bs=4096 --iodepth=1 --direct=0 --numjobs=1 --group_reporting --output-format=json --percentile_list=50:99:99.999 --verify=crc32c"#
        ]],
    );
}

/// fio echoes the options it was given in "job options": they are the rendered ones, so the
/// fixtures are what `FioJob::args` runs.
#[test]
fn fixtures_were_made_with_the_rendered_arguments() {
    for (text, job) in fixtures() {
        let options: BTreeMap<String, String> = json(text)
            .pointer("/jobs/0/job options")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        let rendered: BTreeMap<String, String> = job
            .args()
            .iter()
            .filter_map(|a| a.strip_prefix("--")?.split_once('='))
            .filter(|(k, _)| *k != "output-format")
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(rendered, options, "{}", job.name);
    }
}

// ---------------------------------------------------------------------------------------------
// fio JSON
// ---------------------------------------------------------------------------------------------

#[test]
fn parses_randread_4k_qd1() {
    let (doc, s) = (json(RANDREAD), parsed(RANDREAD));
    check_direction(&s.read, &doc, "read");
    assert_eq!((s.write, s.sync), (None, None), "a read-only job has no write or sync section");
}

#[test]
fn parses_randwrite_4k_qd16() {
    let (doc, s) = (json(RANDWRITE), parsed(RANDWRITE));
    check_direction(&s.write, &doc, "write");
    assert_eq!((s.read, s.sync), (None, None));
}

#[test]
fn parses_randrw_70_30_both_directions() {
    let (doc, s) = (json(RANDRW), parsed(RANDRW));
    check_direction(&s.read, &doc, "read");
    check_direction(&s.write, &doc, "write");
    let (r, w) = (s.read.map_or(0, |d| d.ops), s.write.map_or(0, |d| d.ops));
    let share = r as f64 / (r + w) as f64;
    assert!((0.65..0.75).contains(&share), "rwmixread=70 gives ~70% reads, got {share}");
    assert_eq!(s.sync, None);
}

#[test]
fn parses_fdatasync_write_with_sync_latency() {
    let (doc, s) = (json(FDATASYNC), parsed(FDATASYNC));
    check_direction(&s.write, &doc, "write");
    let sync = s.sync.unwrap_or_else(|| panic!("an fdatasync=1 run has a sync section"));
    check_latency(&sync, &doc, "/jobs/0/sync/lat_ns");
    // One fdatasync per write (fio counts them in lat_ns.N; its sync.total_ios stays 0).
    assert!(sync.samples.abs_diff(s.write.map_or(0, |w| w.ops)) <= 1, "{} syncs", sync.samples);
}

#[test]
fn parse_skips_warnings_before_the_json_and_text_after_it() {
    let noisy = format!("fio: note: both iodepth >= 1 and synchronous I/O engine are selected\n{RANDREAD}\nbye\n");
    assert_eq!(parsed(&noisy), parsed(RANDREAD));
}

#[test]
fn parse_says_what_is_missing() {
    let message = |text: &str| match fio::parse(text) {
        Err(e @ FioError::Unparseable { .. }) => e.to_string(),
        other => panic!("expected Unparseable, got {other:?}"),
    };
    assert!(message("fio: failed to open file").contains("no JSON object"));
    assert!(message(r#"{"fio version": "fio-3.33"}"#).contains("jobs[0]"));
    let mut doc = json(RANDREAD);
    if let Some(clat) = doc.pointer_mut("/jobs/0/read/clat_ns").and_then(Value::as_object_mut) {
        clat.remove("percentile");
    }
    let m = message(&doc.to_string());
    assert!(m.contains("jobs[0].read.clat_ns.percentile"), "{m}");
    let mut doc = json(RANDREAD);
    if let Some(p) = doc.pointer_mut("/jobs/0/read/clat_ns/percentile").and_then(Value::as_object_mut) {
        p.remove("99.990000");
    }
    let m = message(&doc.to_string());
    assert!(m.contains("99.990000"), "{m}");
}

#[test]
fn summary_serializes_with_documented_fields() {
    let s = parsed(FDATASYNC);
    let v = serde_json::to_value(&s).unwrap_or_else(|e| panic!("{e}"));
    assert!(v["read"].is_null());
    for key in ["ops", "bytes", "iops", "mib_per_s", "latency"] {
        assert!(v["write"].get(key).is_some(), "write.{key}");
    }
    for key in ["samples", "mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "p9999_us", "max_us", "percentiles"] {
        assert!(v["sync"].get(key).is_some(), "sync.{key}");
    }
    assert_eq!(
        v["write"]["latency"]["percentiles"][0],
        serde_json::json!([1.0, num(&json(FDATASYNC), "/jobs/0/write/clat_ns/percentile/1.000000") / 1000.0])
    );
    let back: FioSummary = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, s);
}

#[test]
fn parses_iops_logs() {
    let log = fio::parse_log(RANDRW_LOG).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(log.len(), RANDRW_LOG.lines().count());
    let reads = fio::log_points(&log, 0);
    let writes = fio::log_points(&log, 1);
    assert_eq!(reads.len() + writes.len(), log.len());
    assert!(!reads.is_empty() && !writes.is_empty());
    let first = RANDRW_LOG.lines().next().unwrap_or_default();
    assert_eq!(first.split(',').nth(1).map(str::trim), Some(log[0].value.to_string().as_str()));
    // The logged rate agrees with the summary's (same run, 100 ms windows).
    let mean = reads.iter().map(|p| p.1).sum::<f64>() / reads.len() as f64;
    let iops = parsed(RANDRW).read.map_or(0.0, |d| d.iops);
    assert!((mean / iops - 1.0).abs() < 0.2, "logged {mean} vs summary {iops}");
    assert!(matches!(fio::parse_log("100, x, 0, 0, 0\n"), Err(FioError::Unparseable { .. })));
}

// ---------------------------------------------------------------------------------------------
// Running fio
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn runs_fio_for_a_second() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut job = FioJob::new("smoke", dir.path().join("data").to_string_lossy(), Rw::RandRw);
    (job.size, job.runtime_secs, job.rwmixread) = (Some(8 << 20), Some(1), Some(50));
    job.ioengine = "psync".into();
    // Fails (not skips) without fio, with FioError::Missing's "apt-get install fio".
    let s = fio::run(&job).await.unwrap_or_else(|e| panic!("{e}"));
    let (r, w) = (s.read.unwrap_or_else(|| panic!("no reads")), s.write.unwrap_or_else(|| panic!("no writes")));
    assert!(r.ops > 0 && w.ops > 0 && r.iops > 0.0 && r.latency.p50_us > 0.0);
    assert_eq!(r.bytes, r.ops * 4096);
}

#[tokio::test]
async fn missing_fio_says_how_to_install_it() {
    let job = FioJob::new("x", "/dev/null", Rw::Read);
    match fio::run_with(OsStr::new("/nonexistent/bin/fio"), &job).await {
        Err(e @ FioError::Missing { .. }) => assert!(e.to_string().contains("apt-get install fio"), "{e}"),
        other => panic!("expected Missing, got {other:?}"),
    }
}

#[tokio::test]
async fn fio_failure_carries_status_and_stderr() {
    let mut job = FioJob::new("bad", "/dev/null", Rw::Read);
    job.ioengine = "no-such-engine".into();
    match fio::run(&job).await {
        Err(FioError::Failed { status, stderr }) => {
            assert!(status.contains("exit status"), "{status}");
            assert!(stderr.contains("no-such-engine"), "{stderr}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// SVG
// ---------------------------------------------------------------------------------------------

/// Parses the whole document: tags balanced and properly nested under one `<svg>` root; returns
/// the text content.
#[track_caller]
fn well_formed(svg: &str) -> String {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(svg);
    let (mut stack, mut roots, mut text, mut cur) = (Vec::<String>::new(), 0, String::new(), String::new());
    // Each run of character data (text and entity references) becomes one line of the result.
    let mut flush = |cur: &mut String| {
        if !cur.is_empty() {
            text.push_str(cur);
            text.push('\n');
            cur.clear();
        }
    };
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                flush(&mut cur);
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if stack.is_empty() {
                    roots += 1;
                    assert_eq!(name, "svg", "root element");
                }
                stack.push(name);
            }
            Ok(Event::End(e)) => {
                flush(&mut cur);
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                assert_eq!(stack.pop().as_deref(), Some(name.as_str()), "unbalanced </{name}>");
            }
            Ok(Event::Empty(_)) => {
                flush(&mut cur);
                assert!(!stack.is_empty(), "element outside <svg>");
            }
            Ok(Event::Text(t)) => {
                let t = t.decode().unwrap_or_else(|e| panic!("{e}"));
                cur.push_str(t.trim_matches('\n'));
            }
            Ok(Event::GeneralRef(r)) => {
                let entity = format!("&{};", r.decode().unwrap_or_else(|e| panic!("{e}")));
                let t = quick_xml::escape::unescape(&entity).unwrap_or_else(|e| panic!("bad entity: {e}")).into_owned();
                cur.push_str(&t);
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed at {}: {e}\n{svg}", reader.buffer_position()),
        }
    }
    assert!(stack.is_empty(), "unclosed {stack:?}");
    assert_eq!(roots, 1, "one root");
    text
}

fn count(svg: &str, needle: &str) -> usize {
    svg.matches(needle).count()
}

fn cdf_series() -> Vec<Series> {
    vec![
        Series::new("fast", vec![(20.0, 0.0), (30.0, 0.5), (40.0, 0.9), (60.0, 0.99), (200.0, 0.999), (900.0, 1.0)]),
        Series::new("slow", vec![(300.0, 0.1), (1000.0, 0.5), (2500.0, 0.99), (8000.0, 0.9999)]),
        Series::new("fio", svg::fio_cdf_points(&parsed(RANDREAD).read.map(|d| d.latency).unwrap_or_else(|| panic!()))),
    ]
}

#[test]
fn nines_scale() {
    close(svg::nines(0.0), 0.0, "0");
    close(svg::nines(0.9), 1.0, "90%");
    close(svg::nines(0.99), 2.0, "99%");
    close(svg::nines(0.999), 3.0, "99.9%");
    close(svg::nines(0.9999), 4.0, "99.99%");
    close(svg::nines(0.5), 2f64.log10(), "50%");
    assert_eq!(svg::nines(1.0), f64::INFINITY);
}

/// The y of a point at p = 0.99 is the y of the "99%" gridline, and 99.9% is as far above 99%
/// as 99% is above 90%.
#[test]
fn cdf_places_percentiles_on_the_nines_gridlines() {
    let svg = svg::latency_cdf(&[Series::new("s", vec![(10.0, 0.5), (100.0, 0.99), (1000.0, 0.999)])], "t");
    let attr = |line: &str, name: &str| -> f64 {
        let start = line.find(&format!(" {name}=\"")).unwrap_or_else(|| panic!("no {name} in {line}")) + name.len() + 3;
        line[start..].split('"').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad {name} in {line}"))
    };
    // Tick labels sit 4 px below their gridline.
    let label_y = |label: &str| {
        let line =
            svg.lines().find(|l| l.contains(&format!(">{label}</text>"))).unwrap_or_else(|| panic!("no {label}"));
        attr(line, "y") - 4.0
    };
    let circles: Vec<f64> = svg.lines().filter(|l| l.starts_with("<circle")).map(|l| attr(l, "cy")).collect();
    assert_eq!(circles.len(), 3);
    close(circles[0], label_y("50%"), "50%");
    close(circles[1], label_y("99%"), "99%");
    close(circles[2], label_y("99.9%"), "99.9%");
    let (y90, y99, y999) = (label_y("90%"), label_y("99%"), label_y("99.9%"));
    assert!(((y90 - y99) - (y99 - y999)).abs() < 0.11, "{y90} {y99} {y999}");
    // x: log scale with 1-2-5 ticks from 10 µs to 1 ms.
    for tick in ["10 µs", "20 µs", "50 µs", "100 µs", "200 µs", "500 µs", "1 ms"] {
        assert!(svg.contains(&format!(">{tick}</text>")), "tick {tick}");
    }
}

#[test]
fn cdf_is_well_formed_with_one_line_per_series_and_labelled_axes() {
    let series = cdf_series();
    let svg = svg::latency_cdf(&series, "4 KiB reads");
    let text = well_formed(&svg);
    assert_eq!(count(&svg, "<polyline"), series.len());
    assert_eq!(count(&svg, "<path"), 0);
    for label in [
        "4 KiB reads",
        "latency (log scale)",
        "percentile (nines scale)",
        "0%",
        "50%",
        "90%",
        "99%",
        "99.9%",
        "99.99%",
        "fast",
        "slow",
        "fio",
    ] {
        assert!(text.lines().any(|l| l == label), "{label:?} missing from {text}");
    }
    assert!(text.contains("10 ms") && text.contains("µs"), "{text}");
}

#[test]
fn timeseries_is_well_formed_with_one_line_per_series_and_labelled_axes() {
    let log = fio::parse_log(RANDRW_LOG).unwrap_or_else(|e| panic!("{e}"));
    let series = vec![Series::new("reads", fio::log_points(&log, 0)), Series::new("writes", fio::log_points(&log, 1))];
    let svg = svg::timeseries(&series, "randrw 70/30", "IOPS");
    let text = well_formed(&svg);
    assert_eq!(count(&svg, "<polyline"), 2);
    assert_eq!(count(&svg, "<path"), 0);
    for label in ["randrw 70/30", "time (s)", "IOPS", "reads", "writes", "0", "5"] {
        assert!(text.lines().any(|l| l == label), "{label:?} missing from {text}");
    }
    assert!(text.lines().any(|l| l.ends_with('k')), "IOPS ticks in thousands: {text}");
}

#[test]
fn text_is_escaped() {
    let nasty = r#"<b>&"quoted" 'single'</b> ]]> \u{1}"#;
    let series = vec![Series::new(nasty, vec![(1.0, 0.5), (2.0, 0.9)])];
    for svg in [svg::latency_cdf(&series, nasty), svg::timeseries(&series, nasty, nasty)] {
        let text = well_formed(&svg);
        assert!(!svg.contains("<b>") && svg.contains("&lt;b&gt;&amp;&quot;quoted&quot; &apos;single&apos;"), "{svg}");
        assert!(text.contains(r#"<b>&"quoted" 'single'</b> ]]> "#), "{text}");
        assert!(!svg.contains('\u{1}'), "control characters are dropped");
    }
    assert_eq!(svg::escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
}

#[test]
fn output_is_deterministic() {
    let a = svg::latency_cdf(&cdf_series(), "t");
    let b = svg::latency_cdf(&cdf_series().clone(), "t");
    assert_eq!(a, b);
    let series = vec![Series::new("x", vec![(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)])];
    assert_eq!(svg::timeseries(&series, "t", "y"), svg::timeseries(&series.clone(), "t", "y"));
    assert!(!a.contains("-0,") && !a.contains("NaN") && !a.contains("inf"));
}

#[test]
fn empty_input_draws_no_data() {
    let nan_only = vec![Series::new("nan", vec![(f64::NAN, 0.5), (10.0, f64::NAN), (f64::INFINITY, 0.9)])];
    for svg in [
        svg::latency_cdf(&[], "empty"),
        svg::latency_cdf(&nan_only, "nan"),
        svg::latency_cdf(&[Series::new("zero", vec![(0.0, 0.5), (-1.0, 0.9)])], "non-positive latency"),
        svg::timeseries(&[], "empty", "IOPS"),
        svg::timeseries(&nan_only, "nan", "IOPS"),
        svg::timeseries(&[Series::new("none", vec![])], "no points", "IOPS"),
        // Beyond what an axis can hold: skipped, not an endless tick loop.
        svg::latency_cdf(&[Series::new("tiny", vec![(5e-324, 0.5), (1e308, 0.9)])], "extremes"),
        svg::timeseries(&[Series::new("huge", vec![(0.0, 1e308), (-1e300, 1.0)])], "extremes", "IOPS"),
    ] {
        let text = well_formed(&svg);
        assert!(text.lines().any(|l| l == "no data"), "{svg}");
        assert_eq!(count(&svg, "<polyline"), 0);
    }
}

#[test]
fn non_finite_points_are_skipped() {
    let series = vec![
        Series::new(
            "mixed",
            vec![(10.0, 0.1), (f64::NAN, 0.5), (20.0, f64::INFINITY), (30.0, 0.9), (f64::NEG_INFINITY, 0.95)],
        ),
        Series::new("empty", vec![(f64::NAN, f64::NAN)]),
    ];
    let points_of = |svg: &str| -> Vec<usize> {
        svg.lines()
            .filter(|l| l.starts_with("<polyline"))
            .map(|l| {
                l.split("points=\"")
                    .nth(1)
                    .and_then(|p| p.split('"').next())
                    .map_or(0, |p| p.split_whitespace().count())
            })
            .collect()
    };
    let cdf = svg::latency_cdf(&series, "t");
    well_formed(&cdf);
    assert_eq!(points_of(&cdf), [2, 0]);
    assert!(cdf.contains("empty (no data)"));
    let ts = svg::timeseries(&series, "t", "y");
    well_formed(&ts);
    assert_eq!(points_of(&ts), [2, 0]);
    // A single point or a flat line still gets a sane axis.
    let flat = svg::timeseries(&[Series::new("flat", vec![(0.0, 5.0), (1.0, 5.0)])], "t", "y");
    well_formed(&flat);
    assert_eq!(points_of(&flat), [2]);
    let one = svg::latency_cdf(&[Series::new("one", vec![(100.0, 0.5)])], "t");
    well_formed(&one);
    assert_eq!(points_of(&one), [1]);
}

#[test]
fn cdf_points_from_an_hdr_histogram() {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap_or_else(|e| panic!("{e}"));
    for us in 1..=10_000u64 {
        h.record(us * 1000).unwrap_or_else(|e| panic!("{e}")); // nanoseconds
    }
    let points = svg::cdf_points(&h, 1000.0);
    assert!(points.len() > 20, "{} points", points.len());
    assert!(points.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1), "monotonic");
    let (first, last) = (points[0], points[points.len() - 1]);
    assert!((first.0 - 1.0).abs() < 0.01, "{first:?}");
    assert!((last.0 - 10_000.0).abs() <= 10.0 && last.1 == 1.0, "{last:?}");
    // Finer in the tail: more points above p99 than in any other single nine.
    assert!(points.iter().filter(|p| p.1 > 0.99).count() >= 5);
    // The median point says about half.
    let mid = points.iter().find(|p| p.1 >= 0.5).unwrap_or_else(|| panic!());
    assert!((mid.0 - 5000.0).abs() < 100.0, "{mid:?}");
    assert!(svg::cdf_points(&Histogram::<u64>::new(3).unwrap_or_else(|e| panic!("{e}")), 1.0).is_empty());
}

#[test]
fn fio_cdf_points_are_the_percentile_list() {
    let lat = parsed(RANDREAD).read.map(|d| d.latency).unwrap_or_else(|| panic!());
    let points = svg::fio_cdf_points(&lat);
    assert_eq!(points.len(), lat.percentiles.len());
    assert!(points.contains(&(lat.p50_us, 0.5)) && points.contains(&(lat.p99_us, 0.99)));
}

/// The example plots in docs/perf.md, drawn from the fixtures.
#[test]
fn docs_example_plots() {
    let lat = |text: &str, dir: &str| {
        let s = parsed(text);
        let d = match dir {
            "read" => s.read,
            _ => s.write,
        };
        svg::fio_cdf_points(&d.unwrap_or_else(|| panic!("{dir}")).latency)
    };
    let sync = svg::fio_cdf_points(&parsed(FDATASYNC).sync.unwrap_or_else(|| panic!("sync")));
    let cdf = svg::latency_cdf(
        &[
            Series::new("randread QD1", lat(RANDREAD, "read")),
            Series::new("randwrite QD16", lat(RANDWRITE, "write")),
            Series::new("randrw 70/30 QD8: reads", lat(RANDRW, "read")),
            Series::new("randrw 70/30 QD8: writes", lat(RANDRW, "write")),
            Series::new("write + fdatasync: writes", lat(FDATASYNC, "write")),
            Series::new("write + fdatasync: fdatasync", sync),
        ],
        "fio 3.33, io_uring, 4 KiB, O_DIRECT: completion latency",
    );
    well_formed(&cdf);
    expect_file!["../../docs/perf-example-cdf.svg"].assert_eq(&cdf);
    let log = |text: &str| fio::parse_log(text).unwrap_or_else(|e| panic!("{e}"));
    let rw = log(RANDRW_LOG);
    let iops = svg::timeseries(
        &[
            Series::new("randread QD1", fio::log_points(&log(RANDREAD_LOG), 0)),
            Series::new("randwrite QD16", fio::log_points(&log(RANDWRITE_LOG), 1)),
            Series::new("randrw 70/30 QD8: reads", fio::log_points(&rw, 0)),
            Series::new("randrw 70/30 QD8: writes", fio::log_points(&rw, 1)),
            Series::new("write + fdatasync", fio::log_points(&log(FDATASYNC_LOG), 1)),
        ],
        "fio 3.33, io_uring, 4 KiB, O_DIRECT: IOPS (100 ms averages)",
        "IOPS",
    );
    well_formed(&iops);
    expect_file!["../../docs/perf-example-iops.svg"].assert_eq(&iops);
}

/// A title longer than the picture is squeezed to its width instead of running off both edges.
#[test]
fn long_titles_are_fitted_to_the_width() {
    let series = [Series::new("a", vec![(10.0, 0.5), (20.0, 0.99)])];
    let short = svg::latency_cdf(&series, "short");
    assert!(!short.contains("textLength"));
    let long = svg::latency_cdf(&series, &"a rather long title about a job on /var/tmp/some/deep/path ".repeat(3));
    assert!(long.contains(r#"textLength="840" lengthAdjust="spacingAndGlyphs""#), "{long}");
}
