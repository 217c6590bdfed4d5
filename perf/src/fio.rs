//! Runs fio (the baseline every block-level number is compared with) and reads its JSON output.
//!
//! [`FioJob`] describes one fio job; [`FioJob::args`] renders it to fio's command line (a pure
//! function), [`run`] runs it and [`parse`] reads the `--output-format=json` result into a
//! [`FioSummary`]. Latency everywhere is fio's *completion* latency (`clat_ns`: from submission to
//! completion, what the application waits for), not `lat_ns` (which adds the submission time);
//! for `fdatasync=1` runs the time of each `fdatasync` call comes from the `sync` section.

use std::ffi::OsStr;
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// fio's `--rw`: the engine's own access patterns, which carry fio's names.
pub use crate::io::Rw;

/// An RBD image for fio's `rbd` engine (which talks to librbd itself: no kernel RBD needed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RbdTarget {
    pub pool: String,
    pub image: String,
    /// The cephx id without `client.` (fio's `--clientname`).
    pub client_name: String,
    /// The ceph.conf to read. fio's rbd engine has no option for it, so [`run`] passes it as
    /// `CEPH_CONF` in fio's environment (see [`FioJob::env`]).
    pub conf: Option<String>,
}

/// io_uring engine switches (ignored unless the engine is `io_uring`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UringFlags {
    /// `--hipri`: polled completions (needs a device with poll queues).
    pub hipri: bool,
    /// `--sqthread_poll`: a kernel thread polls the submission queue.
    pub sqthread_poll: bool,
    /// `--fixedbufs`: pre-registered buffers.
    pub fixedbufs: bool,
    /// `--registerfiles`: pre-registered file descriptors.
    pub registerfiles: bool,
}

/// One fio job. Run with `--group_reporting`, so `numjobs` clones are reported as one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FioJob {
    pub name: String,
    /// The file or block device (unused by the `rbd` engine, which uses [`RbdTarget::image`]).
    pub filename: String,
    pub rw: Rw,
    /// Percentage of reads for [`Rw::RandRw`] (fio's default is 50).
    pub rwmixread: Option<u8>,
    /// Block size in bytes.
    pub bs: u64,
    pub iodepth: u32,
    /// Bytes of the file to use (fio creates the file when it does not exist, which needs a size).
    pub size: Option<u64>,
    /// Start of the region in the file (`--offset`; rendered only when not 0).
    pub offset: u64,
    /// Run for this long (`--time_based`), looping over the file; without it fio does `size` once.
    pub runtime_secs: Option<u64>,
    /// Run this long first without counting (`--ramp_time`).
    pub ramp_secs: Option<u64>,
    pub numjobs: u32,
    /// `--norandommap`: random offsets drawn uniformly with replacement (as our engine draws
    /// them) instead of fio's default map that visits every block once per pass.
    pub norandommap: bool,
    /// O_DIRECT (`--direct=1`).
    pub direct: bool,
    /// `--fdatasync=1`: an fdatasync after every write; its latency is [`FioSummary::sync`].
    pub fsync: bool,
    /// `io_uring`, `libaio`, `rbd`, `psync`, … (any fio engine name).
    pub ioengine: String,
    pub uring: UringFlags,
    pub rbd: Option<RbdTarget>,
    /// More `--key=value` options, appended in order after everything else.
    pub extra: Vec<(String, String)>,
}

impl FioJob {
    /// A job with fio's defaults around the three things every job names: a 4 KiB QD1 `rw` job
    /// on `filename`, one clone, buffered, io_uring, no time limit.
    pub fn new(name: impl Into<String>, filename: impl Into<String>, rw: Rw) -> FioJob {
        FioJob {
            name: name.into(),
            filename: filename.into(),
            rw,
            rwmixread: None,
            bs: 4096,
            iodepth: 1,
            size: None,
            offset: 0,
            runtime_secs: None,
            ramp_secs: None,
            numjobs: 1,
            norandommap: false,
            direct: false,
            fsync: false,
            ioengine: "io_uring".into(),
            uring: UringFlags::default(),
            rbd: None,
            extra: Vec::new(),
        }
    }

    /// fio's arguments (without the program name), in a fixed order.
    pub fn args(&self) -> Vec<String> {
        // The engine comes first: fio only knows an engine's own options (--pool, --hipri, …)
        // once the engine is named.
        let mut a = vec![format!("--name={}", self.name), format!("--ioengine={}", self.ioengine)];
        match &self.rbd {
            Some(r) => {
                a.push(format!("--pool={}", r.pool));
                a.push(format!("--rbdname={}", r.image));
                a.push(format!("--clientname={}", r.client_name));
            }
            // fio splits `filename` at ':' (several files); a literal colon is written `\:`.
            None => a.push(format!("--filename={}", self.filename.replace(':', "\\:"))),
        }
        a.push(format!("--rw={}", self.rw));
        if let Some(mix) = self.rwmixread {
            a.push(format!("--rwmixread={mix}"));
        }
        a.push(format!("--bs={}", self.bs));
        a.push(format!("--iodepth={}", self.iodepth));
        if let Some(size) = self.size {
            a.push(format!("--size={size}"));
        }
        if self.offset > 0 {
            a.push(format!("--offset={}", self.offset));
        }
        a.push(format!("--direct={}", u8::from(self.direct)));
        if self.fsync {
            a.push("--fdatasync=1".into());
        }
        if self.ioengine == "io_uring" {
            let u = self.uring;
            for (on, flag) in [
                (u.hipri, "--hipri"),
                (u.sqthread_poll, "--sqthread_poll"),
                (u.fixedbufs, "--fixedbufs"),
                (u.registerfiles, "--registerfiles"),
            ] {
                if on {
                    a.push(flag.into());
                }
            }
        }
        if let Some(secs) = self.runtime_secs {
            a.push("--time_based".into());
            a.push(format!("--runtime={secs}"));
        }
        if let Some(secs) = self.ramp_secs {
            a.push(format!("--ramp_time={secs}"));
        }
        a.push(format!("--numjobs={}", self.numjobs));
        if self.norandommap && self.rw.is_random() {
            a.push("--norandommap".into());
        }
        a.push("--group_reporting".into());
        a.push("--output-format=json".into());
        a.extend(self.extra.iter().map(|(k, v)| format!("--{k}={v}")));
        a
    }

    /// Environment fio needs besides its arguments, for the rbd engine: `CEPH_CONF`, and
    /// `CEPH_ARGS=--rbd_cache=false` (librados reads it when fio creates its handle), so that a
    /// write counts when the OSDs have it rather than when librbd's writeback cache took it,
    /// as in our engine. With the cache, fio's 4 KiB writes are acknowledged in ~10 µs until
    /// the cache fills and then wait hundreds of milliseconds.
    pub fn env(&self) -> Vec<(String, String)> {
        let Some(rbd) = &self.rbd else { return Vec::new() };
        let mut env = Vec::new();
        if let Some(conf) = &rbd.conf {
            env.push(("CEPH_CONF".into(), conf.clone()));
        }
        env.push(("CEPH_ARGS".into(), "--rbd_cache=false".into()));
        env
    }

    /// The command as a person would type it (shell-quoted where needed), for logs and reports.
    pub fn command_line(&self) -> String {
        let mut words: Vec<String> = self.env().into_iter().map(|(k, v)| format!("{k}={}", shell_quote(&v))).collect();
        words.push("fio".into());
        words.extend(self.args().iter().map(|a| shell_quote(a)));
        words.join(" ")
    }
}

fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=./,:@%+".contains(&b));
    if plain { s.to_string() } else { format!("'{}'", s.replace('\'', "'\\''")) }
}

/// What fio reports about one direction (reads or writes) of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirSummary {
    /// Completed I/Os (`total_ios`).
    pub ops: u64,
    /// Bytes transferred (`io_bytes`).
    pub bytes: u64,
    pub iops: f64,
    /// `bw_bytes` / 2^20.
    pub mib_per_s: f64,
    /// Completion latency (`clat_ns`).
    pub latency: LatencySummary,
}

/// A latency distribution in microseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// How many latencies were measured (fio's `N`).
    pub samples: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
    /// Every percentile fio printed, as (percent 0..100, µs), ascending: the points of a CDF.
    pub percentiles: Vec<(f64, f64)>,
}

/// The result of one fio run (`jobs[0]`, all clones grouped).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FioSummary {
    /// Absent when the job did no reads.
    pub read: Option<DirSummary>,
    /// Absent when the job did no writes.
    pub write: Option<DirSummary>,
    /// Latency of the `fdatasync` calls of an `fdatasync=1` job.
    pub sync: Option<LatencySummary>,
}

#[derive(Debug, thiserror::Error)]
pub enum FioError {
    #[error("fio is not installed (`{program}` not found): install it with `apt-get install fio`")]
    Missing { program: String },
    #[error("could not start fio (`{program}`): {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("fio failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
    #[error("fio's JSON output is unusable: {what}")]
    Unparseable { what: String },
}

/// Runs `fio` from `PATH`. Dropping the future kills fio.
pub async fn run(job: &FioJob) -> Result<FioSummary, FioError> {
    run_with(OsStr::new("fio"), job).await
}

/// Runs `job` with the given fio executable.
pub async fn run_with(program: &OsStr, job: &FioJob) -> Result<FioSummary, FioError> {
    let name = program.to_string_lossy().into_owned();
    let mut cmd = tokio::process::Command::new(program);
    // A CEPH_ARGS meant for something else would change which cluster the rbd engine reaches
    // (the job's own environment sets the one it needs).
    cmd.env_remove("CEPH_ARGS").envs(job.env()).args(job.args());
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let out = cmd.output().await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => FioError::Missing { program: name.clone() },
        _ => FioError::Spawn { program: name.clone(), source: e },
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // fio prints some errors (bad options) on stderr and others (I/O errors) on stdout.
        let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if text.is_empty() {
            text = stdout.trim().to_string();
        }
        return Err(FioError::Failed { status: out.status.to_string(), stderr: text.chars().take(4000).collect() });
    }
    parse(&stdout)
}

/// Reads fio's `--output-format=json` output. Anything before the first `{` (fio's warnings)
/// and after the JSON value is ignored.
pub fn parse(stdout: &str) -> Result<FioSummary, FioError> {
    let start = stdout.find('{').ok_or_else(|| bad("no JSON object in the output"))?;
    let mut values = serde_json::Deserializer::from_str(&stdout[start..]).into_iter::<Value>();
    let doc = match values.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(bad(format!("invalid JSON: {e}"))),
        None => return Err(bad("no JSON object in the output")),
    };
    let job = doc.get("jobs").and_then(|j| j.get(0)).ok_or_else(|| bad("missing `jobs[0]`"))?;
    if let Some(err) = job.get("error").and_then(Value::as_i64).filter(|&e| e != 0) {
        return Err(FioError::Failed { status: format!("job error {err}"), stderr: String::new() });
    }
    Ok(FioSummary {
        read: direction(job, "read")?,
        write: direction(job, "write")?,
        sync: match job.get("sync").and_then(|s| s.get("lat_ns")) {
            Some(lat) if count(lat, "N") > 0 => Some(latency(lat, "jobs[0].sync.lat_ns")?),
            _ => None,
        },
    })
}

fn bad(what: impl Into<String>) -> FioError {
    FioError::Unparseable { what: what.into() }
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn number(v: &Value, key: &str, path: &str) -> Result<f64, FioError> {
    v.get(key).and_then(Value::as_f64).ok_or_else(|| bad(format!("missing number `{path}.{key}`")))
}

fn direction(job: &Value, dir: &str) -> Result<Option<DirSummary>, FioError> {
    let path = format!("jobs[0].{dir}");
    let Some(d) = job.get(dir) else { return Ok(None) };
    let ops = count(d, "total_ios");
    if ops == 0 {
        return Ok(None);
    }
    let clat = d.get("clat_ns").ok_or_else(|| bad(format!("missing `{path}.clat_ns`")))?;
    Ok(Some(DirSummary {
        ops,
        bytes: d.get("io_bytes").and_then(Value::as_u64).ok_or_else(|| bad(format!("missing `{path}.io_bytes`")))?,
        iops: number(d, "iops", &path)?,
        mib_per_s: number(d, "bw_bytes", &path)? / (1024.0 * 1024.0),
        latency: latency(clat, &format!("{path}.clat_ns"))?,
    }))
}

/// A fio latency object (`clat_ns`, `lat_ns`) in nanoseconds to a summary in microseconds.
fn latency(v: &Value, path: &str) -> Result<LatencySummary, FioError> {
    let us = |ns: f64| ns / 1000.0;
    let map = v
        .get("percentile")
        .and_then(Value::as_object)
        .ok_or_else(|| bad(format!("missing `{path}.percentile` (run without --clat_percentiles=0)")))?;
    let mut percentiles = Vec::with_capacity(map.len());
    for (k, ns) in map {
        let p = k.parse::<f64>().map_err(|_| bad(format!("percentile key `{k}` in `{path}` is not a number")))?;
        let ns = ns.as_f64().ok_or_else(|| bad(format!("percentile `{k}` in `{path}` is not a number")))?;
        percentiles.push((p, us(ns)));
    }
    percentiles.sort_by(|a, b| a.0.total_cmp(&b.0));
    let at = |p: f64| {
        percentiles.iter().find(|(q, _)| (q - p).abs() < 1e-9).map(|&(_, v)| v).ok_or_else(|| {
            bad(format!(
                "missing percentile {p:.6} in `{path}.percentile` (a custom --percentile_list must include it)"
            ))
        })
    };
    Ok(LatencySummary {
        samples: count(v, "N"),
        mean_us: us(number(v, "mean", path)?),
        p50_us: at(50.0)?,
        p90_us: at(90.0)?,
        p99_us: at(99.0)?,
        p999_us: at(99.9)?,
        p9999_us: at(99.99)?,
        max_us: us(number(v, "max", path)?),
        percentiles,
    })
}

/// One line of a fio log (`--write_iops_log`, `--write_bw_log`, `--write_lat_log`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSample {
    /// Milliseconds since the job started.
    pub time_ms: u64,
    /// IOPS, KiB/s or ns, depending on the log.
    pub value: u64,
    /// 0 read, 1 write, 2 trim, 3 sync.
    pub direction: u8,
}

/// Reads a fio log: lines `time_ms, value, direction, block_size, offset[, priority]`.
pub fn parse_log(text: &str) -> Result<Vec<LogSample>, FioError> {
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let mut f = line.split(',').map(str::trim);
        let mut field = |what: &str| {
            f.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| bad(format!("log line {}: no {what} in `{line}`", i + 1)))
        };
        let (time_ms, value, direction) = (field("time")?, field("value")?, field("direction")?);
        let direction = u8::try_from(direction).map_err(|_| bad(format!("log line {}: bad direction", i + 1)))?;
        samples.push(LogSample { time_ms, value, direction });
    }
    Ok(samples)
}

/// The samples of one direction as (seconds, value) points for [`crate::svg::timeseries`].
pub fn log_points(samples: &[LogSample], direction: u8) -> Vec<(f64, f64)> {
    samples.iter().filter(|s| s.direction == direction).map(|s| (s.time_ms as f64 / 1000.0, s.value as f64)).collect()
}
