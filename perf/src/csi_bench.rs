//! `cyvault perf csi`: how long CreateVolume and DeleteVolume take through a running CSI plugin
//! (over its unix socket, as the external-provisioner calls it), next to baselines measured in
//! the same run on the same pool:
//!
//! - `rbd create --size 1G POOL/NAME` and `rbd rm POOL/NAME`, the CLI (a process per call, as
//!   the issue states the target: at most 1.3x of it);
//! - librbd create/remove through `cyvault_store::rbd::Rbd`, no process spawn: the floor of any
//!   driver that creates an image, a stricter baseline;
//! - on the local backend, a sparse file (create + truncate to the size, then unlink) instead.
//!
//! Latencies go into HDR histograms (microseconds); p50 and p99 per operation and subject, and
//! ratios ours / baseline (lower is better). With concurrency 1 the subjects take turns op by op
//! (the first to go rotates), so a slow moment of a shared machine hits all of them alike;
//! with more, each subject runs its own phase of N ops with that many in flight.
//!
//! Every image the benchmark creates is removed at the end, also when a phase failed or the run
//! was interrupted: the plugin's leftovers by DeleteVolume, then by the journal (its namespace is
//! the benchmark's own, so every `i.<uuid>` key in it names an image of this run), the
//! baselines' by name.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cyvault_proto::csi::v1 as pb;
use cyvault_store::rbd::{CreateOptions, Rbd};
use cyvault_store::{Cluster, ObjectRef, ObjectStore, OmapQuery, RadosConfig, RadosStore, StoreError};
use futures::StreamExt;
use hdrhistogram::Histogram;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::{Channel, Endpoint, Uri};

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// How long the plugin may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Between SIGTERM and SIGKILL when stopping the plugin.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Error messages kept per phase.
const KEEP_ERRORS: usize = 5;
/// The journal objects of the CSI driver (csi/src/journal.rs).
const JOURNAL_OBJECTS: [(&str, &str); 2] = [("cyv.csi.volumes", "csi-vol-"), ("cyv.csi.snapshots", "csi-snap-")];

/// Where the plugin provisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CsiTarget {
    /// RBD images in `pool`; the journal in the same pool, in a namespace of the run's own.
    Rados { conf: String, id: String, pool: String },
    /// Sparse files in a temporary directory (`--backend local`).
    Local,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct CsiBenchConfig {
    pub target: CsiTarget,
    /// The `cyvault` binary to start the plugin from.
    pub program: PathBuf,
    /// Volumes created, then deleted, per subject and round.
    pub volumes: usize,
    /// Bytes per volume: a whole number of MiB.
    pub size: u64,
    /// Operations in flight (1: one at a time, like an external-provisioner with one worker).
    pub concurrency: usize,
    pub rounds: usize,
    /// Names start with this (`cyvault-perf-csi-<pid>` when empty).
    pub tag: String,
}

impl CsiBenchConfig {
    pub fn check(&self) -> Result<(), CsiBenchError> {
        if self.volumes == 0 || self.concurrency == 0 || self.rounds == 0 {
            return Err(CsiBenchError::Config("--volumes, --concurrency and --rounds must be at least 1".into()));
        }
        if self.size == 0 || !self.size.is_multiple_of(MIB) {
            return Err(CsiBenchError::Config(format!("--size {} is not a whole, non-zero number of MiB", self.size)));
        }
        Ok(())
    }

    fn tag(&self) -> String {
        if self.tag.is_empty() { format!("cyvault-perf-csi-{}", std::process::id()) } else { self.tag.clone() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CsiBenchError {
    #[error("{0}")]
    Config(String),
    #[error("set up: {0}")]
    Setup(String),
    #[error("the CSI plugin: {0}")]
    Plugin(String),
    #[error("interrupted")]
    Interrupted,
    #[error("{measure}; and cleaning up: {cleanup}")]
    AndCleanup { measure: Box<CsiBenchError>, cleanup: String },
    #[error("clean up (some images may be left; names start with {tag}, or see the journal namespace): {msg}")]
    Cleanup { tag: String, msg: String },
}

// ---------------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------------

/// Latency of one operation of one subject.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Operations that succeeded (and are in the percentiles).
    pub ops: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub first_errors: Vec<String>,
}

/// A latency histogram in microseconds, 1 µs to 10 min at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 600_000_000, 3) {
        Ok(h) => h,
        // The bounds are constants that hdrhistogram accepts.
        Err(_) => Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid")),
    }
}

impl Latency {
    /// The percentiles of a histogram of microseconds.
    pub fn of(h: &Histogram<u64>, errors: u64, first_errors: Vec<String>) -> Latency {
        if h.is_empty() {
            return Latency { errors, first_errors, ..Latency::default() };
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            ops: h.len(),
            errors,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            mean_ms: h.mean() / 1000.0,
            max_ms: ms(h.max()),
            first_errors,
        }
    }

    /// The percentiles of samples in microseconds (tests, and callers without a histogram).
    pub fn of_micros(samples: &[u64]) -> Latency {
        let mut h = histogram();
        for &s in samples {
            h.saturating_record(s.max(1));
        }
        Latency::of(&h, 0, vec![])
    }
}

/// `ours / base`; `None` when either is not a positive, finite number.
pub fn ratio(ours: f64, base: f64) -> Option<f64> {
    (ours.is_finite() && base.is_finite() && ours > 0.0 && base > 0.0).then(|| ours / base)
}

/// The smallest value and the median (the mean of the two middle values for an even count).
pub fn min_median(values: &[f64]) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Some((v[0], median))
}

/// `--size` for the rbd CLI: `1G`, `1536M` (the size is a whole number of MiB).
pub fn rbd_size_arg(size: u64) -> String {
    if size.is_multiple_of(GIB) { format!("{}G", size / GIB) } else { format!("{}M", size.div_ceil(MIB)) }
}

/// One subject's create and delete latencies in one round.
#[derive(Clone, Debug, Serialize)]
pub struct SubjectReport {
    /// `csi`, `rbd-cli`, `librbd` or `sparse-file`.
    pub subject: String,
    pub create: Latency,
    pub delete: Latency,
}

/// Ours over one baseline, one round.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ratios {
    pub baseline: String,
    pub create_p50: Option<f64>,
    pub create_p99: Option<f64>,
    pub delete_p50: Option<f64>,
    pub delete_p99: Option<f64>,
}

impl Ratios {
    pub fn of(ours: &SubjectReport, base: &SubjectReport) -> Ratios {
        Ratios {
            baseline: base.subject.clone(),
            create_p50: ratio(ours.create.p50_ms, base.create.p50_ms),
            create_p99: ratio(ours.create.p99_ms, base.create.p99_ms),
            delete_p50: ratio(ours.delete.p50_ms, base.delete.p50_ms),
            delete_p99: ratio(ours.delete.p99_ms, base.delete.p99_ms),
        }
    }

    /// (name, value) of each ratio.
    pub fn each(&self) -> [(&'static str, Option<f64>); 4] {
        [
            ("create_p50", self.create_p50),
            ("create_p99", self.create_p99),
            ("delete_p50", self.delete_p50),
            ("delete_p99", self.delete_p99),
        ]
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RoundReport {
    pub round: usize,
    pub subjects: Vec<SubjectReport>,
    pub ratios: Vec<Ratios>,
}

/// One ratio over all rounds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RatioSummary {
    pub baseline: String,
    /// `create_p50`, `create_p99`, `delete_p50` or `delete_p99`.
    pub ratio: String,
    pub min: f64,
    pub median: f64,
    pub rounds: usize,
}

/// Min and median of every ratio over the rounds.
pub fn summarize(rounds: &[RoundReport]) -> Vec<RatioSummary> {
    let mut baselines: Vec<String> = Vec::new();
    for r in rounds.iter().flat_map(|r| &r.ratios) {
        if !baselines.contains(&r.baseline) {
            baselines.push(r.baseline.clone());
        }
    }
    let mut out = Vec::new();
    for b in &baselines {
        for (i, name) in ["create_p50", "create_p99", "delete_p50", "delete_p99"].into_iter().enumerate() {
            let values: Vec<f64> = rounds
                .iter()
                .flat_map(|r| &r.ratios)
                .filter(|r| &r.baseline == b)
                .filter_map(|r| r.each()[i].1)
                .collect();
            if let Some((min, median)) = min_median(&values) {
                out.push(RatioSummary { baseline: b.clone(), ratio: name.into(), min, median, rounds: values.len() });
            }
        }
    }
    out
}

#[derive(Clone, Debug, Serialize)]
pub struct CsiBenchReport {
    pub benchmark: &'static str,
    pub backend: &'static str,
    pub pool: Option<String>,
    pub volumes: usize,
    pub size_bytes: u64,
    pub concurrency: usize,
    /// `interleaved` (concurrency 1: subjects take turns op by op) or `phases`.
    pub schedule: &'static str,
    pub plugin_pid: u32,
    pub rounds: Vec<RoundReport>,
    pub summary: Vec<RatioSummary>,
    pub notes: Vec<String>,
}

impl CsiBenchReport {
    /// Failed operations over every round and subject.
    pub fn errors(&self) -> u64 {
        self.rounds.iter().flat_map(|r| &r.subjects).map(|s| s.create.errors + s.delete.errors).sum()
    }
}

// ---------------------------------------------------------------------------------------------
// The plugin process
// ---------------------------------------------------------------------------------------------

/// The `cyvault csi` arguments (after the program) for a plugin serving `socket`, with its data
/// and state under `dir` and its journal in `namespace` (rados).
pub fn plugin_args(target: &CsiTarget, dir: &Path, socket: &Path, namespace: &str) -> Vec<String> {
    let mut a: Vec<String> = ["--log", "warn", "csi", "--mode", "controller", "--node-id", "cyvault-perf-csi"]
        .into_iter()
        .map(String::from)
        .collect();
    a.push("--endpoint".into());
    a.push(format!("unix://{}", socket.display()));
    a.push("--data-dir".into());
    a.push(dir.join("data").display().to_string());
    a.push("--state-dir".into());
    a.push(dir.join("state").display().to_string());
    match target {
        CsiTarget::Rados { conf, id, pool } => {
            for (k, v) in [
                ("--backend", "rados"),
                ("--ceph-conf", conf),
                ("--ceph-id", id),
                ("--pool", pool),
                ("--journal-namespace", namespace),
            ] {
                a.push(k.into());
                a.push(v.into());
            }
        }
        CsiTarget::Local => {
            a.push("--backend".into());
            a.push("local".into());
        }
    }
    a
}

/// A `cyvault csi` child process; stopped by pid ([`PluginProcess::stop`]), killed if dropped.
#[derive(Debug)]
pub struct PluginProcess {
    child: tokio::process::Child,
    pid: u32,
    log: PathBuf,
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl PluginProcess {
    /// Starts `program args…` (stderr to `log`) and waits for its `listening on` line.
    pub async fn start(program: &Path, args: &[String], log: &Path) -> Result<PluginProcess, CsiBenchError> {
        let err = std::fs::File::create(log)
            .map_err(|e| CsiBenchError::Setup(format!("create the plugin log {}: {e}", log.display())))?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env_remove("CYVAULT_BACKEND")
            .env_remove("CYVAULT_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| CsiBenchError::Plugin(format!("start {} csi: {e}", program.display())))?;
        let pid = child.id().unwrap_or(0);
        let stdout = child.stdout.take().ok_or_else(|| CsiBenchError::Plugin("no stdout pipe".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("listening on ") {
                    return true;
                }
            }
            false
        })
        .await;
        if ready != Ok(true) {
            let _ = child.kill().await;
            let why = if ready.is_err() { "did not get ready in 60 s" } else { "exited before it was ready" };
            return Err(CsiBenchError::Plugin(format!("{why}; its log ({}):\n{}", log.display(), tail(log, 20))));
        }
        // Keep reading stdout so the plugin never writes into a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(PluginProcess { child, pid, log: log.to_path_buf() })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// SIGTERM by pid, then SIGKILL after `STOP_TIMEOUT` (20 s).
    pub async fn stop(mut self) -> Result<ExitStatus, CsiBenchError> {
        if let Ok(Some(s)) = self.child.try_wait() {
            return Ok(s);
        }
        let term = tokio::process::Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status().await;
        if term.is_ok()
            && let Ok(Ok(status)) = tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await
        {
            return Ok(status);
        }
        self.child.kill().await.map_err(|e| CsiBenchError::Plugin(format!("kill pid {}: {e}", self.pid)))?;
        self.child.wait().await.map_err(|e| CsiBenchError::Plugin(format!("wait for pid {}: {e}", self.pid)))
    }
}

/// A gRPC channel over a unix socket.
pub async fn connect(socket: &Path) -> Result<Channel, CsiBenchError> {
    let socket = socket.to_path_buf();
    Endpoint::try_from("http://localhost")
        .map_err(|e| CsiBenchError::Setup(format!("endpoint: {e}")))?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
        }))
        .await
        .map_err(|e| CsiBenchError::Plugin(format!("connect to the CSI socket: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Subjects
// ---------------------------------------------------------------------------------------------

/// Something that creates and deletes volumes.
#[derive(Debug)]
enum Subject {
    /// CreateVolume / DeleteVolume through the plugin.
    Csi { channel: Channel },
    /// `rbd create` / `rbd rm`.
    RbdCli { conf: String, id: String, pool: String },
    /// librbd through `Rbd`.
    Librbd { rbd: Arc<Rbd> },
    /// A sparse file in `dir`.
    SparseFile { dir: PathBuf },
}

fn mount_capability() -> pb::VolumeCapability {
    use pb::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
    pb::VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume { fs_type: "ext4".into(), ..Default::default() })),
        access_mode: Some(AccessMode { mode: Mode::SingleNodeWriter as i32 }),
    }
}

impl Subject {
    fn name(&self) -> &'static str {
        match self {
            Subject::Csi { .. } => "csi",
            Subject::RbdCli { .. } => "rbd-cli",
            Subject::Librbd { .. } => "librbd",
            Subject::SparseFile { .. } => "sparse-file",
        }
    }

    /// Creates volume `name`; returns the handle to delete it by (the volume id, or the name).
    async fn create(&self, name: String, size: u64) -> Result<String, String> {
        match self {
            Subject::Csi { channel } => {
                let mut c = pb::controller_client::ControllerClient::new(channel.clone());
                let req = pb::CreateVolumeRequest {
                    name: name.clone(),
                    capacity_range: Some(pb::CapacityRange { required_bytes: size as i64, limit_bytes: 0 }),
                    volume_capabilities: vec![mount_capability()],
                    ..Default::default()
                };
                let vol = c
                    .create_volume(req)
                    .await
                    .map_err(|s| format!("CreateVolume {name}: {:?}: {}", s.code(), s.message()))?
                    .into_inner()
                    .volume
                    .ok_or_else(|| format!("CreateVolume {name}: no volume in the answer"))?;
                Ok(vol.volume_id)
            }
            Subject::RbdCli { conf, id, pool } => {
                let spec = format!("{pool}/{name}");
                run_rbd(conf, id, &["create", "--size", &rbd_size_arg(size), &spec]).await?;
                Ok(name)
            }
            Subject::Librbd { rbd } => {
                rbd.create(&name, &CreateOptions::new(size)).await.map_err(|e| format!("librbd create {name}: {e}"))?;
                Ok(name)
            }
            Subject::SparseFile { dir } => {
                let path = dir.join(&name);
                tokio::task::spawn_blocking(move || {
                    let f = std::fs::File::create_new(&path)?;
                    f.set_len(size)
                })
                .await
                .map_err(|e| format!("create {name}: {e}"))?
                .map_err(|e| format!("create {name}: {e}"))?;
                Ok(name)
            }
        }
    }

    async fn delete(&self, handle: &str) -> Result<(), String> {
        match self {
            Subject::Csi { channel } => {
                let mut c = pb::controller_client::ControllerClient::new(channel.clone());
                c.delete_volume(pb::DeleteVolumeRequest { volume_id: handle.to_owned(), ..Default::default() })
                    .await
                    .map_err(|s| format!("DeleteVolume {handle}: {:?}: {}", s.code(), s.message()))?;
                Ok(())
            }
            Subject::RbdCli { conf, id, pool } => {
                let spec = format!("{pool}/{handle}");
                run_rbd(conf, id, &["rm", "--no-progress", &spec]).await.map(drop)
            }
            Subject::Librbd { rbd } => rbd.remove(handle).await.map_err(|e| format!("librbd remove {handle}: {e}")),
            Subject::SparseFile { dir } => {
                let path = dir.join(handle);
                tokio::task::spawn_blocking(move || std::fs::remove_file(path))
                    .await
                    .map_err(|e| format!("remove {handle}: {e}"))?
                    .map_err(|e| format!("remove {handle}: {e}"))
            }
        }
    }
}

async fn run_rbd(conf: &str, id: &str, args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("rbd")
        .env_remove("CEPH_ARGS")
        .args(["-c", conf, "--id", id])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("run rbd (is ceph-common installed?): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("rbd {}: {}: {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The volumes a subject has made and not yet deleted (for the cleanup).
type Live = Mutex<Vec<(usize, String)>>;

fn live_add(live: &Live, subject: usize, handle: &str) {
    if let Ok(mut l) = live.lock() {
        l.push((subject, handle.to_owned()));
    }
}

fn live_remove(live: &Live, subject: usize, handle: &str) {
    if let Ok(mut l) = live.lock() {
        l.retain(|(s, h)| !(*s == subject && h == handle));
    }
}

/// Latency recorder of one operation of one subject.
struct Recorder {
    hist: Histogram<u64>,
    errors: u64,
    first: Vec<String>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder { hist: histogram(), errors: 0, first: vec![] }
    }

    fn record<T>(&mut self, took: Duration, r: &Result<T, String>) {
        match r {
            Ok(_) => self.hist.saturating_record((took.as_micros() as u64).max(1)),
            Err(e) => {
                self.errors += 1;
                if self.first.len() < KEEP_ERRORS {
                    self.first.push(e.clone());
                }
            }
        }
    }

    fn latency(self) -> Latency {
        Latency::of(&self.hist, self.errors, self.first)
    }
}

async fn timed<T>(fut: impl Future<Output = Result<T, String>>) -> (Duration, Result<T, String>) {
    let t = Instant::now();
    let r = fut.await;
    (t.elapsed(), r)
}

/// One round: every subject creates `n` volumes, then deletes them.
async fn round(
    subjects: &[Subject],
    cfg: &CsiBenchConfig,
    tag: &str,
    round: usize,
    live: &Live,
    progress: &(dyn Fn(String) + Sync),
) -> RoundReport {
    let n = cfg.volumes;
    let name = |s: &Subject, i: usize| format!("{tag}-{}-r{round}-{i}", s.name());
    let mut creates: Vec<Recorder> = subjects.iter().map(|_| Recorder::new()).collect();
    let mut deletes: Vec<Recorder> = subjects.iter().map(|_| Recorder::new()).collect();
    let mut made: Vec<Vec<String>> = subjects.iter().map(|_| Vec::new()).collect();
    if cfg.concurrency == 1 {
        // Op by op, the subjects taking turns; who goes first rotates.
        for i in 0..n {
            for k in 0..subjects.len() {
                let si = (i + k) % subjects.len();
                let s = &subjects[si];
                let (took, r) = timed(s.create(name(s, i), cfg.size)).await;
                creates[si].record(took, &r);
                if let Ok(h) = r {
                    live_add(live, si, &h);
                    made[si].push(h);
                }
            }
            progress(format!("round {round}: created {}/{n} of each", i + 1));
        }
        for i in 0..n {
            for k in 0..subjects.len() {
                let si = (i + k) % subjects.len();
                let Some(h) = made[si].get(i).cloned() else { continue };
                let (took, r) = timed(subjects[si].delete(&h)).await;
                deletes[si].record(took, &r);
                if r.is_ok() {
                    live_remove(live, si, &h);
                }
            }
            progress(format!("round {round}: deleted {}/{n} of each", i + 1));
        }
    } else {
        for (si, s) in subjects.iter().enumerate() {
            let mut results = futures::stream::iter(0..n)
                .map(|i| timed(s.create(name(s, i), cfg.size)))
                .buffer_unordered(cfg.concurrency);
            while let Some((took, r)) = results.next().await {
                creates[si].record(took, &r);
                if let Ok(h) = r {
                    live_add(live, si, &h);
                    made[si].push(h);
                }
            }
            progress(format!("round {round}: {} created {}", s.name(), made[si].len()));
            let handles = made[si].clone();
            let mut results = futures::stream::iter(handles)
                .map(|h| async move { (timed(s.delete(&h)).await, h) })
                .buffer_unordered(cfg.concurrency);
            while let Some(((took, r), h)) = results.next().await {
                deletes[si].record(took, &r);
                if r.is_ok() {
                    live_remove(live, si, &h);
                }
            }
            progress(format!("round {round}: {} deleted", s.name()));
        }
    }
    let reports: Vec<SubjectReport> = subjects
        .iter()
        .zip(creates.into_iter().zip(deletes))
        .map(|(s, (c, d))| SubjectReport { subject: s.name().into(), create: c.latency(), delete: d.latency() })
        .collect();
    let ratios = reports.iter().skip(1).map(|b| Ratios::of(&reports[0], b)).collect();
    RoundReport { round, subjects: reports, ratios }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/// What the cleanup needs to reach the cluster.
struct RadosSide {
    store: Arc<RadosStore>,
    rbd: Arc<Rbd>,
    pool: String,
    namespace: String,
    _cluster: Arc<Cluster>,
}

/// Runs the benchmark. `progress` gets a line now and then (for a spinner).
pub async fn run(cfg: &CsiBenchConfig, progress: &(dyn Fn(String) + Sync)) -> Result<CsiBenchReport, CsiBenchError> {
    cfg.check()?;
    let tag = cfg.tag();
    let dir = tempfile::Builder::new()
        .prefix("cyv-perf-csi")
        .tempdir_in("/tmp")
        .map_err(|e| CsiBenchError::Setup(format!("temp dir: {e}")))?;
    let socket = dir.path().join("csi.sock");
    let namespace = tag.clone();

    let rados = match &cfg.target {
        CsiTarget::Rados { conf, id, pool } => {
            progress(format!("connecting to ceph ({conf})"));
            let cluster = Cluster::connect(&RadosConfig::new(conf.clone(), id.clone()))
                .await
                .map_err(|e| CsiBenchError::Setup(format!("connect to ceph with {conf} as client.{id}: {e}")))?;
            let store = Arc::new(RadosStore::new(cluster.clone()));
            let io = store.ioctx(pool, "").await.map_err(|e| CsiBenchError::Setup(format!("open pool {pool}: {e}")))?;
            Some(RadosSide {
                store,
                rbd: Arc::new(Rbd::new(io).map_err(|e| CsiBenchError::Setup(e.to_string()))?),
                pool: pool.clone(),
                namespace: namespace.clone(),
                _cluster: cluster,
            })
        }
        CsiTarget::Local => None,
    };

    progress("starting the CSI plugin".into());
    let args = plugin_args(&cfg.target, dir.path(), &socket, &namespace);
    let plugin = PluginProcess::start(&cfg.program, &args, &dir.path().join("plugin.log")).await?;
    let plugin_pid = plugin.pid();
    let live: Live = Mutex::new(Vec::new());
    let mut notes = Vec::new();

    let subjects: Result<Vec<Subject>, CsiBenchError> = async {
        let channel = connect(&socket).await?;
        let mut subjects = vec![Subject::Csi { channel }];
        match (&cfg.target, &rados) {
            (CsiTarget::Rados { conf, id, pool }, Some(r)) => {
                subjects.push(Subject::RbdCli { conf: conf.clone(), id: id.clone(), pool: pool.clone() });
                subjects.push(Subject::Librbd { rbd: Arc::clone(&r.rbd) });
            }
            _ => {
                let files = dir.path().join("baseline");
                std::fs::create_dir_all(&files)
                    .map_err(|e| CsiBenchError::Setup(format!("create {}: {e}", files.display())))?;
                notes.push(
                    "local backend: no rbd baselines; the baseline is a sparse file (create + truncate to the size, \
                     then unlink) in the same temp directory"
                        .to_string(),
                );
                subjects.push(Subject::SparseFile { dir: files });
            }
        }
        Ok(subjects)
    }
    .await;

    let measured: Result<Vec<RoundReport>, CsiBenchError> = match &subjects {
        Err(_) => Ok(vec![]),
        Ok(subjects) => {
            let work = async {
                // Warm up every path once (connections, the rbd binary in the page cache).
                progress("warming up".into());
                let warm = CsiBenchConfig { volumes: 1, concurrency: 1, ..cfg.clone() };
                round(subjects, &warm, &format!("{tag}-warm"), 0, &live, progress).await;
                let mut rounds = Vec::new();
                for r in 1..=cfg.rounds {
                    rounds.push(round(subjects, cfg, &tag, r, &live, progress).await);
                }
                rounds
            };
            tokio::select! {
                rounds = work => Ok(rounds),
                _ = tokio::signal::ctrl_c() => Err(CsiBenchError::Interrupted),
            }
        }
    };
    let measured = match subjects.as_ref().err() {
        Some(e) => Err(CsiBenchError::Plugin(e.to_string())),
        None => measured,
    };

    // Clean up whatever happened above.
    progress("cleaning up".into());
    let mut problems: Vec<String> = Vec::new();
    if let Ok(subjects) = &subjects {
        let left: Vec<(usize, String)> = live.lock().map(|l| l.clone()).unwrap_or_default();
        // The plugin's volumes through DeleteVolume (idempotent); the baselines' by the name
        // sweep below (an interrupted `rbd rm` may still have finished on its own), sparse
        // files with the temp dir.
        for (si, h) in left.iter().filter(|(si, _)| matches!(subjects[*si], Subject::Csi { .. })) {
            if let Err(e) = subjects[*si].delete(h).await {
                // The journal sweep below catches what is left.
                tracing::warn!(handle = %h, error = %e, "cleanup DeleteVolume failed");
            }
        }
    }
    if let Err(e) = plugin.stop().await {
        problems.push(e.to_string());
    }
    if let Some(r) = &rados {
        if let Err(e) = sweep_journal(r).await {
            problems.push(e);
        }
        // Baseline images: every name this run could have made.
        match r.rbd.list().await {
            Ok(images) => {
                let prefix = format!("{tag}-");
                for img in images.iter().filter(|i| i.starts_with(&prefix)) {
                    if let Err(e) = remove_image(&r.rbd, img).await {
                        problems.push(e);
                    }
                }
            }
            Err(e) => problems.push(format!("list images of {}: {e}", r.pool)),
        }
    }
    let cleanup = (!problems.is_empty()).then(|| problems.join("; "));

    let rounds = match (measured, cleanup) {
        (Ok(r), None) => r,
        (Ok(_), Some(msg)) => return Err(CsiBenchError::Cleanup { tag, msg }),
        (Err(e), None) => return Err(e),
        (Err(e), Some(c)) => return Err(CsiBenchError::AndCleanup { measure: Box::new(e), cleanup: c }),
    };
    let summary = summarize(&rounds);
    Ok(CsiBenchReport {
        benchmark: "csi",
        backend: match cfg.target {
            CsiTarget::Rados { .. } => "rados",
            CsiTarget::Local => "local",
        },
        pool: match &cfg.target {
            CsiTarget::Rados { pool, .. } => Some(pool.clone()),
            CsiTarget::Local => None,
        },
        volumes: cfg.volumes,
        size_bytes: cfg.size,
        concurrency: cfg.concurrency,
        schedule: if cfg.concurrency == 1 { "interleaved" } else { "phases" },
        plugin_pid,
        rounds,
        summary,
        notes,
    })
}

async fn remove_image(rbd: &Rbd, image: &str) -> Result<(), String> {
    // Temporary snapshots a clone would leave (the benchmark makes none, but be thorough).
    if let Ok(snaps) = rbd.snap_list(image).await {
        for s in snaps {
            let _ = rbd.snap_remove(image, &s.name).await;
        }
    }
    match rbd.remove(image).await {
        Ok(()) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(format!("remove image {}/{image}: {e}", rbd.pool())),
    }
}

/// Removes the image of every record in the run's journal namespace, then the journal objects.
async fn sweep_journal(r: &RadosSide) -> Result<(), String> {
    let mut problems = Vec::new();
    for (object, prefix) in JOURNAL_OBJECTS {
        let obj = ObjectRef::new(r.pool.clone(), r.namespace.clone(), object);
        let mut after: Option<String> = None;
        let mut uuids = Vec::new();
        loop {
            let q = OmapQuery { start_after: after.clone(), prefix: Some("i.".into()), max: 1000 };
            match r.store.omap_list(&obj, &q).await {
                Ok(page) => {
                    after = page.entries.last().map(|(k, _)| k.clone());
                    uuids.extend(page.entries.iter().map(|(k, _)| k.trim_start_matches("i.").to_owned()));
                    if !page.more || after.is_none() {
                        break;
                    }
                }
                Err(StoreError::NotFound(_)) => break,
                Err(e) => {
                    problems.push(format!("list journal {}/{}/{object}: {e}", r.pool, r.namespace));
                    break;
                }
            }
        }
        for u in uuids {
            if let Err(e) = remove_image(&r.rbd, &format!("{prefix}{u}")).await {
                problems.push(e);
            }
        }
        match r.store.remove(&obj).await {
            Ok(()) | Err(StoreError::NotFound(_)) => {}
            Err(e) => problems.push(format!("remove journal {}/{}/{object}: {e}", r.pool, r.namespace)),
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        // 1..=100 ms: p50 is 50 ms, p99 99 ms (HDR keeps 3 significant digits).
        let samples: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        let l = Latency::of_micros(&samples);
        assert_eq!(l.ops, 100);
        assert!((l.p50_ms - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p99_ms - 99.0).abs() < 0.1, "{l:?}");
        assert!((l.mean_ms - 50.5).abs() < 0.1, "{l:?}");
        assert!((l.max_ms - 100.0).abs() < 0.1, "{l:?}");
        // 50 samples (the default run): p99 is the largest.
        let l = Latency::of_micros(&(1..=50).map(|ms| ms * 1000).collect::<Vec<_>>());
        assert!((l.p99_ms - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p50_ms - 25.0).abs() < 0.1, "{l:?}");
        assert_eq!(Latency::of_micros(&[]), Latency::default());
    }

    #[test]
    fn ratios_and_their_summary() {
        assert_eq!(ratio(13.0, 10.0), Some(1.3));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
        assert_eq!(ratio(0.0, 1.0), None);
        assert_eq!(min_median(&[3.0, 1.0, 2.0]), Some((1.0, 2.0)));
        assert_eq!(min_median(&[4.0, 1.0, 2.0, 3.0]), Some((1.0, 2.5)));
        assert_eq!(min_median(&[]), None);

        let subject = |name: &str, c50: f64, c99: f64, d50: f64, d99: f64| SubjectReport {
            subject: name.into(),
            create: Latency { ops: 1, p50_ms: c50, p99_ms: c99, ..Latency::default() },
            delete: Latency { ops: 1, p50_ms: d50, p99_ms: d99, ..Latency::default() },
        };
        let ours = subject("csi", 20.0, 40.0, 30.0, 60.0);
        let cli = subject("rbd-cli", 40.0, 40.0, 60.0, 0.0);
        let r = Ratios::of(&ours, &cli);
        assert_eq!(
            r,
            Ratios {
                baseline: "rbd-cli".into(),
                create_p50: Some(0.5),
                create_p99: Some(1.0),
                delete_p50: Some(0.5),
                delete_p99: None
            }
        );
        let rounds: Vec<RoundReport> = [1.0, 3.0, 2.0]
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let base = subject("librbd", 10.0 / f, 10.0, 10.0, 10.0);
                RoundReport {
                    round: i + 1,
                    subjects: vec![],
                    ratios: vec![Ratios::of(&subject("csi", 10.0, 20.0, 10.0, 10.0), &base)],
                }
            })
            .collect();
        let s = summarize(&rounds);
        assert_eq!(s.len(), 4);
        assert_eq!(
            s[0],
            RatioSummary { baseline: "librbd".into(), ratio: "create_p50".into(), min: 1.0, median: 2.0, rounds: 3 }
        );
        assert_eq!((s[1].ratio.as_str(), s[1].min, s[1].median), ("create_p99", 2.0, 2.0));
    }

    #[test]
    fn config_and_plugin_arguments() {
        assert_eq!(rbd_size_arg(GIB), "1G");
        assert_eq!(rbd_size_arg(3 * GIB), "3G");
        assert_eq!(rbd_size_arg(1536 * MIB), "1536M");
        let cfg = CsiBenchConfig {
            target: CsiTarget::Local,
            program: "/bin/cyvault".into(),
            volumes: 50,
            size: GIB,
            concurrency: 1,
            rounds: 1,
            tag: String::new(),
        };
        assert!(cfg.check().is_ok());
        assert!(cfg.tag().starts_with("cyvault-perf-csi-"));
        assert!(CsiBenchConfig { size: GIB + 1, ..cfg.clone() }.check().is_err());
        assert!(CsiBenchConfig { volumes: 0, ..cfg.clone() }.check().is_err());
        assert!(CsiBenchConfig { concurrency: 0, ..cfg.clone() }.check().is_err());

        let dir = Path::new("/tmp/x");
        let rados = CsiTarget::Rados { conf: "/c/ceph.conf".into(), id: "admin".into(), pool: "rbd".into() };
        let a = plugin_args(&rados, dir, &dir.join("csi.sock"), "ns-1").join(" ");
        assert_eq!(
            a,
            "--log warn csi --mode controller --node-id cyvault-perf-csi --endpoint unix:///tmp/x/csi.sock \
             --data-dir /tmp/x/data --state-dir /tmp/x/state --backend rados --ceph-conf /c/ceph.conf \
             --ceph-id admin --pool rbd --journal-namespace ns-1"
        );
        let a = plugin_args(&CsiTarget::Local, dir, &dir.join("csi.sock"), "ns-1").join(" ");
        assert!(a.ends_with("--state-dir /tmp/x/state --backend local"), "{a}");
    }

    #[tokio::test]
    async fn sparse_file_subject_and_interleaved_round() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let subjects =
            vec![Subject::SparseFile { dir: dir.path().join("a") }, Subject::SparseFile { dir: dir.path().join("b") }];
        for d in ["a", "b"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap_or_else(|e| panic!("{e}"));
        }
        let cfg = CsiBenchConfig {
            target: CsiTarget::Local,
            program: "/nonexistent".into(),
            volumes: 4,
            size: 4 * MIB,
            concurrency: 1,
            rounds: 1,
            tag: "t".into(),
        };
        let live: Live = Mutex::new(Vec::new());
        let r = round(&subjects, &cfg, "t", 1, &live, &|_| {}).await;
        assert_eq!(r.subjects.len(), 2);
        assert_eq!((r.subjects[0].create.ops, r.subjects[0].delete.ops, r.subjects[1].create.errors), (4, 4, 0));
        assert_eq!(r.ratios.len(), 1);
        assert!(live.lock().map(|l| l.is_empty()).unwrap_or(false), "everything made was deleted");
        assert_eq!(std::fs::read_dir(dir.path().join("a")).map(|d| d.count()).unwrap_or(99), 0);
        // With concurrency, phases.
        let r = round(&subjects, &CsiBenchConfig { concurrency: 3, ..cfg }, "t", 2, &live, &|_| {}).await;
        assert_eq!((r.subjects[1].create.ops, r.subjects[1].delete.ops), (4, 4));
    }
}
