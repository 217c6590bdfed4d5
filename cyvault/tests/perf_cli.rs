//! End-to-end: the real `cyvault perf io | compare-fio | slo` on files and loop devices, with
//! the real fio. Correctness of the commands (what they run, print, exit with, and that their
//! `--json` matches the documented schemas), never their speed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn cyvault(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_cyvault"))
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("CYVAULT_CEPH_CONF")
        .stdin(Stdio::null())
        .output();
    out.unwrap_or_else(|e| panic!("run cyvault: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// On a real file system (O_DIRECT does device I/O there; tmpfs refuses it).
fn scratch() -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix("cyv-perf-cli-").tempdir_in("/var/tmp")
}

fn validator(schema_file: &str) -> Result<jsonschema::Validator, Box<dyn std::error::Error>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs").join(schema_file);
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    Ok(jsonschema::validator_for(&schema).map_err(|e| format!("{schema_file}: {e}"))?)
}

#[track_caller]
fn assert_valid(v: &jsonschema::Validator, doc: &serde_json::Value) {
    let errors: Vec<String> = v.iter_errors(doc).map(|e| format!("{}: {e}", e.instance_path())).collect();
    assert!(errors.is_empty(), "does not match the documented schema:\n{}", errors.join("\n"));
}

/// Lets `child` run for `after`, sends it SIGINT (Ctrl-C), and waits for it, which must take
/// less than `limit`.
fn interrupt_after(
    child: std::process::Child,
    after: Duration,
    limit: Duration,
) -> Result<Output, Box<dyn std::error::Error>> {
    std::thread::sleep(after);
    let pid = i32::try_from(child.id())?;
    // SAFETY: kill(2) with a pid of our own child and a valid signal number; no memory involved.
    let rc = unsafe { libc::kill(pid, libc::SIGINT) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    let started = Instant::now();
    let out = child.wait_with_output()?;
    assert!(started.elapsed() < limit, "took {:?} to stop after SIGINT", started.elapsed());
    Ok(out)
}

/// A loop device over a file, detached (by its name) when dropped.
struct Loop(String);

impl Loop {
    fn attach(file: &Path) -> Result<Loop, Box<dyn std::error::Error>> {
        let out = Command::new("losetup").args(["--find", "--show"]).arg(file).output()?;
        if !out.status.success() {
            return Err(format!("losetup: {}", text(&out.stderr)).into());
        }
        Ok(Loop(text(&out.stdout).trim().to_string()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn compare_fio_runs_every_job_of_a_file_through_both_engines() -> TestResult {
    let dir = scratch()?;
    let data = dir.path().join("data");
    let job = dir.path().join("two.fio");
    std::fs::write(
        &job,
        "[global]\nfilename=${CYV_TEST_FILE}\nsize=16m\ndirect=1\nbs=4k\ntime_based\nruntime=1\n\n\
         [reads-qd1]\nrw=randread\niodepth=1\n\n[writes-qd4]\nrw=randwrite\niodepth=4\n",
    )?;
    let svg = dir.path().join("svg");
    let (job_s, svg_s, data_s) = (job.to_string_lossy(), svg.to_string_lossy(), data.to_string_lossy());
    let out = cyvault(
        &["perf", "compare-fio", &job_s, "--create", "--repeat", "2", "--json", "--svg", &svg_s],
        &[("CYV_TEST_FILE", &data_s)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_valid(&validator("perf-compare-fio.schema.json")?, &doc);
    let jobs = doc["jobs"].as_array().ok_or("no jobs")?;
    assert_eq!(jobs.iter().map(|j| j["name"].as_str().unwrap_or("")).collect::<Vec<_>>(), ["reads-qd1", "writes-qd4"]);
    for j in jobs {
        let rounds = j["rounds"].as_array().ok_or("no rounds")?;
        assert_eq!(rounds.len(), 2);
        for r in rounds {
            for side in ["ours", "fio"] {
                let iops = r[side]["iops"].as_f64().unwrap_or(0.0);
                let p50 = r[side]["p50_us"].as_f64().unwrap_or(0.0);
                assert!(iops > 0.0 && p50 > 0.0, "{side} in {}: {r}", j["name"]);
            }
        }
        let iops = j["ratios"]["iops"][1].as_f64().unwrap_or(f64::NAN);
        assert!(iops.is_finite() && iops > 0.0, "{}", j["ratios"]);
        let cmd = j["fio_command"].as_str().unwrap_or("");
        assert!(
            cmd.contains("--ioengine=io_uring") && cmd.contains(&*data_s) && cmd.contains("--norandommap"),
            "{cmd}"
        );
    }
    for name in ["reads-qd1", "writes-qd4"] {
        let plot = std::fs::read_to_string(svg.join(format!("{name}-cdf.svg")))?;
        assert!(plot.ends_with("</svg>\n") || plot.ends_with("</svg>"), "{name}: not a whole SVG");
        assert_eq!(plot.matches("<polyline").count(), 2, "{name}: ours and fio's curves");
    }
    Ok(())
}

#[test]
fn compare_fio_refuses_what_the_engines_would_not_run_alike() -> TestResult {
    let dir = scratch()?;
    let job = dir.path().join("bad.fio");
    std::fs::write(&job, "[a]\nfilename=/var/tmp/x\nrw=randread\nverify=md5\n")?;
    let out = cyvault(&["perf", "compare-fio", &job.to_string_lossy()], &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("line 4") && err.contains("\"verify\" is not supported"), "{err}");
    Ok(())
}

#[test]
fn perf_slo_exits_3_over_budget_and_0_within_it() -> TestResult {
    let dir = scratch()?;
    let data = dir.path().join("data");
    let data_s = data.to_string_lossy();
    let base = ["perf", "slo", "--target", &data_s, "--create", "--size", "16MiB", "--runtime", "0.3", "--ramp", "0"];
    let schema = validator("perf-slo-report.schema.json")?;
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| s.to_string()).collect() };

    let over = with(&["--p99", "1ns", "--phases", "read-qd1,write-qd16", "--json"]);
    let out = cyvault(&over.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_valid(&schema, &doc);
    assert_eq!(doc["met"], false);
    assert_eq!(doc["phases"].as_array().map(Vec::len), Some(2));
    assert_eq!(doc["findings"].as_array().map(Vec::len), Some(2), "{}", doc["findings"]);

    let within = with(&["--p99", "10s", "--phases", "read-qd1"]);
    let out = cyvault(&within.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("met: every phase's p99 is within 10.00 s"), "{stdout}");
    assert!(stdout.contains("read-qd1") && !stdout.contains("write-qd16"), "{stdout}");

    let out = cyvault(&["perf", "slo", "--target", &data_s, "--p99", "1ms", "--phases", "read-qd7"], &[]);
    assert!(!out.status.success() && text(&out.stderr).contains("no phase \"read-qd7\""), "{}", text(&out.stderr));
    Ok(())
}

/// The profile writes; on a block device it refuses without --destroy-data, before any I/O.
#[test]
fn perf_slo_will_not_write_a_block_device_unasked() -> TestResult {
    let dir = scratch()?;
    let backing = dir.path().join("disk.img");
    std::fs::write(&backing, vec![0x5a_u8; 4 << 20])?;
    let dev = Loop::attach(&backing)?;
    let out = cyvault(&["perf", "slo", "--target", &dev.0, "--p99", "1ms", "--runtime", "0.2"], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--destroy-data"), "{}", text(&out.stderr));
    drop(dev);
    assert!(std::fs::read(&backing)?.iter().all(|&b| b == 0x5a), "the device was written");
    Ok(())
}

/// Ctrl-C (SIGINT) stops a long run cleanly: exit 130, and the report of what ran.
#[test]
fn perf_io_stops_on_ctrl_c_and_still_reports() -> TestResult {
    let dir = scratch()?;
    let data: PathBuf = dir.path().join("data");
    let child = Command::new(env!("CARGO_BIN_EXE_cyvault"))
        .args(["perf", "io", "--target"])
        .arg(&data)
        .args(["--create", "--size", "16MiB", "--rw", "randread", "--runtime", "60", "--iodepth", "4"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = interrupt_after(child, Duration::from_millis(1500), Duration::from_secs(20))?;
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("stopped early") && stdout.contains("read  IOPS"), "{stdout}");
    Ok(())
}

#[test]
fn perf_io_draws_its_plots() -> TestResult {
    let dir = scratch()?;
    let data = dir.path().join("data");
    let svg = dir.path().join("plots");
    let (d, s) = (data.to_string_lossy(), svg.to_string_lossy());
    let args =
        ["perf", "io", "--target", &d, "--create", "--size", "8MiB", "--runtime", "1.2", "--numjobs", "2", "--svg", &s];
    let out = cyvault(&args, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cdf = std::fs::read_to_string(svg.join("latency-cdf.svg"))?;
    // Two jobs and all jobs together.
    assert_eq!(cdf.matches("<polyline").count(), 3, "{cdf}");
    assert!(cdf.contains("job.0") && cdf.contains("all jobs"));
    let iops = std::fs::read_to_string(svg.join("iops.svg"))?;
    assert!(iops.contains("IOPS per second") && iops.contains("<polyline"));
    Ok(())
}

/// Ctrl-C during compare-fio ends the round that runs (fio is killed, our jobs stop) and the
/// rounds completed before it are still compared: exit 130.
#[test]
fn compare_fio_stops_on_ctrl_c_and_reports_the_rounds_done() -> TestResult {
    let dir = scratch()?;
    let data = dir.path().join("data");
    let child = Command::new(env!("CARGO_BIN_EXE_cyvault"))
        .args(["perf", "compare-fio", "--target"])
        .arg(&data)
        .args(["--create", "--size", "8MiB", "--rw", "randread", "--runtime", "1", "--repeat", "50"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = interrupt_after(child, Duration::from_secs(6), Duration::from_secs(20))?;
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("job round 1:") && stdout.contains("ours / fio over"), "{stdout}");
    assert!(!stdout.contains("job round 50:"), "{stdout}");
    Ok(())
}

/// Ctrl-C during `perf s3` ends the PUT (or GET) phase early, DELETE still removes every object
/// written, and the report says it was interrupted: exit 130, an empty bucket.
#[test]
fn perf_s3_stops_on_ctrl_c_and_still_deletes_what_it_wrote() -> TestResult {
    let gw = common::Gateway::start(common::Backend::Local);
    let child = Command::new(env!("CARGO_BIN_EXE_cyvault"))
        .args(["perf", "s3", "--endpoint", &gw.endpoint, "--bucket", "ctrl-c", "--seconds", "30"])
        .args(["--concurrency", "4", "--json"])
        .env("CYVAULT_BENCH_ACCESS_KEY", &gw.access_key)
        .env("CYVAULT_BENCH_SECRET_KEY", &gw.secret_key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = interrupt_after(child, Duration::from_secs(3), Duration::from_secs(25))?;
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let r = &doc["report"];
    assert_eq!(r["interrupted"], true);
    let (put, delete) = (r["phases"][0]["ops"].as_u64().unwrap_or(0), r["phases"][2]["ops"].as_u64().unwrap_or(0));
    assert!(put > 0 && delete == put, "PUT {put}, DELETE {delete}");
    let listed = common::run_ok("aws", &["s3api", "list-objects-v2", "--bucket", "ctrl-c"], &gw.aws_env(), None);
    assert!(!listed.contains("\"Key\""), "objects left behind: {listed}");
    Ok(())
}
