//! `cyvault perf s3`: an S3 load generator. Workers on one runtime PUT objects of one size for a
//! while, then GET random ones of those for a while, then DELETE all of them. Every request is
//! signed with AWS Signature Version 4 (our own signer, below) and sent path-style over HTTP/1.1
//! keep-alive connections, one per worker. The client's own CPU per op is reported so that a
//! reader can see it did not limit the server; the CPU per op of watched processes (the server,
//! the OSD) is reported per phase, and their memory at the end.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hmac::{Hmac, Mac};
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The payload hash of a request without a body: SHA-256 of the empty string.
pub const EMPTY_PAYLOAD_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The payload hash that tells the server the body is not signed (allowed over any transport).
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// How many failed requests are kept, with status and body, for the report.
const KEPT_ERRORS: usize = 5;
/// A request that takes longer than this counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Signature Version 4
// ---------------------------------------------------------------------------------------------

/// One request as Signature Version 4 sees it.
#[derive(Clone, Copy, Debug)]
pub struct CanonicalInput<'a> {
    pub method: &'a str,
    /// The path, already URI-encoded (see [`uri_encode_path`]).
    pub path: &'a str,
    /// The canonical query string (sorted and encoded); empty for none.
    pub query: &'a str,
    /// The headers to sign, names in lower case, in any order; `host` must be among them.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body, or [`UNSIGNED_PAYLOAD`].
    pub payload_hash: &'a str,
}

/// Returns (canonical request, signed-headers list) as defined by SigV4.
pub fn canonical_request(req: &CanonicalInput<'_>) -> (String, String) {
    let mut headers: Vec<(&str, String)> = req
        .headers
        .iter()
        .map(|(name, value)| (*name, value.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect();
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let signed: Vec<&str> = headers.iter().map(|(name, _)| *name).collect();
    let signed = signed.join(";");
    let mut out = String::with_capacity(256);
    for part in [req.method, "\n", req.path, "\n", req.query, "\n"] {
        out.push_str(part);
    }
    for (name, value) in &headers {
        for part in [name, ":", value.as_str(), "\n"] {
            out.push_str(part);
        }
    }
    for part in ["\n", signed.as_str(), "\n", req.payload_hash] {
        out.push_str(part);
    }
    (out, signed)
}

/// The string to sign for a canonical request sent at `amz_date` (`YYYYMMDDTHHMMSSZ`).
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical_request.as_bytes())))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Signs S3 requests with one key pair for one region.
pub struct Signer {
    access_key: String,
    secret_key: String,
    region: String,
    /// The signing key depends only on the date: derived once a day instead of per request.
    key: Mutex<Option<(String, [u8; 32])>>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("access_key", &self.access_key)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(access_key: &str, secret_key: &str, region: &str) -> Self {
        Signer {
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            region: region.to_owned(),
            key: Mutex::new(None),
        }
    }

    fn signing_key(&self, date: &str) -> [u8; 32] {
        let mut cached = self.key.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((day, key)) = cached.as_ref()
            && day == date
        {
            return *key;
        }
        let k_date = hmac_sha256(format!("AWS4{}", self.secret_key).as_bytes(), date.as_bytes());
        let k_region = hmac_sha256(&k_date, self.region.as_bytes());
        let k_service = hmac_sha256(&k_region, b"s3");
        let key = hmac_sha256(&k_service, b"aws4_request");
        *cached = Some((date.to_owned(), key));
        key
    }

    /// The hex signature of `req` sent at `amz_date`.
    pub fn signature(&self, amz_date: &str, req: &CanonicalInput<'_>) -> String {
        let (canonical, _) = canonical_request(req);
        self.sign_canonical(amz_date, &canonical)
    }

    fn scope(&self, amz_date: &str) -> String {
        format!("{}/{}/s3/aws4_request", amz_date.get(..8).unwrap_or(amz_date), self.region)
    }

    fn sign_canonical(&self, amz_date: &str, canonical: &str) -> String {
        let date = amz_date.get(..8).unwrap_or(amz_date);
        let to_sign = string_to_sign(amz_date, &self.scope(amz_date), canonical);
        hex::encode(hmac_sha256(&self.signing_key(date), to_sign.as_bytes()))
    }

    /// The `Authorization` header value for `req` sent at `amz_date`.
    pub fn authorization(&self, amz_date: &str, req: &CanonicalInput<'_>) -> String {
        let (canonical, signed_headers) = canonical_request(req);
        let signature = self.sign_canonical(amz_date, &canonical);
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key,
            self.scope(amz_date)
        )
    }
}

/// URI-encodes an object path as SigV4 wants it: every byte except `A-Z a-z 0-9 - . _ ~` and
/// `/` becomes `%XX`.
pub fn uri_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` (UTC) of a time, as `x-amz-date` wants it.
pub fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's `civil_from_days`).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

/// Parses a size such as `4096`, `4KiB`, `4k`, `4MiB`, `1M`, `1GiB` (binary multiples) or
/// `4KB`, `4MB` (decimal multiples).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let number: usize = number.parse().map_err(|_| format!("{s:?} is not a size: it must start with a number"))?;
    let multiple: usize = match unit.trim() {
        "" | "B" | "b" => 1,
        "k" | "K" | "KiB" | "kiB" => 1 << 10,
        "M" | "m" | "MiB" => 1 << 20,
        "G" | "g" | "GiB" => 1 << 30,
        "kB" | "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown size unit {other:?} in {s:?}: use B, KiB, MiB, GiB (or KB, MB, GB)")),
    };
    number.checked_mul(multiple).ok_or_else(|| format!("size {s:?} is too large"))
}

// ---------------------------------------------------------------------------------------------
// Processes watched during the run
// ---------------------------------------------------------------------------------------------

/// A process (the server under test, an OSD) whose CPU and memory the report includes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchedProcess {
    pub name: String,
    pub pid: u32,
}

impl std::str::FromStr for WatchedProcess {
    type Err = String;

    /// `NAME=PID`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, pid) = s.split_once('=').ok_or_else(|| format!("{s:?} is not NAME=PID"))?;
        let pid = pid.trim().parse().map_err(|_| format!("{pid:?} in {s:?} is not a process id"))?;
        if name.is_empty() {
            return Err(format!("{s:?} has no NAME before '='"));
        }
        Ok(WatchedProcess { name: name.to_owned(), pid })
    }
}

/// User + system CPU time of a process so far, in microseconds, from `/proc/PID/stat` (fields 14
/// and 15, in USER_HZ ticks: 100 per second on Linux). `None` for this process's own pid means
/// `/proc/self`. `None` where it cannot be read (the process is gone).
pub fn process_cpu_us(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may contain spaces; the fields after its closing paren don't.
    let rest = stat.rsplit_once(')').map(|(_, r)| r)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // After ")" the first field is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    Some((ticks(11)? + ticks(12)?) * 10_000.0)
}

/// Memory of a watched process, read from `/proc/PID/status` after the run.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessMemory {
    pub name: String,
    pub pid: u32,
    /// Peak resident set size since the process started (VmHWM).
    pub vm_hwm_kib: Option<u64>,
    /// Resident set size when sampled (VmRSS).
    pub vm_rss_kib: Option<u64>,
}

pub fn process_memory(p: &WatchedProcess) -> ProcessMemory {
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid)).unwrap_or_default();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)?.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    ProcessMemory { name: p.name.clone(), pid: p.pid, vm_hwm_kib: field("VmHWM:"), vm_rss_kib: field("VmRSS:") }
}

// ---------------------------------------------------------------------------------------------
// The S3 client
// ---------------------------------------------------------------------------------------------

/// Why one request failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum OpError {
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("send the request: {0}")]
    Transport(String),
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("the body has {got} bytes, expected {want}")]
    WrongLength { got: u64, want: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum S3BenchError {
    #[error("endpoint {0:?} is not http://HOST[:PORT] (the load generator speaks plain HTTP only)")]
    Endpoint(String),
    #[error("create bucket {bucket}")]
    CreateBucket { bucket: String, source: OpError },
    #[error("the PUT phase stored no object; first errors: {0}")]
    NothingWritten(String),
}

/// Path-style S3 requests to one endpoint, signed, over a keep-alive connection pool.
struct S3Client {
    http: Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port`, without a trailing slash.
    base: String,
    /// The `Host` header: `host:port` as in the endpoint.
    host: String,
    signer: Signer,
}

impl S3Client {
    fn new(cfg: &S3BenchConfig) -> Result<Self, S3BenchError> {
        let rest = cfg.endpoint.strip_prefix("http://").ok_or_else(|| S3BenchError::Endpoint(cfg.endpoint.clone()))?;
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(S3BenchError::Endpoint(cfg.endpoint.clone()));
        }
        let mut connector = HttpConnector::new();
        // A small PUT is headers then body; without NODELAY the body may wait for the ACK.
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(cfg.concurrency.max(1))
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(S3Client {
            http,
            base: format!("http://{host}"),
            host: host.to_owned(),
            signer: Signer::new(&cfg.access_key, &cfg.secret_key, &cfg.region),
        })
    }

    /// Sends one request and reads the whole answer; returns the length of its body. Any status
    /// but 2xx is an error carrying the start of the body (the S3 error code is in there).
    async fn send(&self, method: Method, path: &str, body: Bytes) -> Result<u64, OpError> {
        let fut = self.send_inner(method, path, body);
        match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
            Ok(result) => result,
            Err(_) => Err(OpError::Timeout(REQUEST_TIMEOUT)),
        }
    }

    async fn send_inner(&self, method: Method, path: &str, body: Bytes) -> Result<u64, OpError> {
        let date = amz_date(SystemTime::now());
        let payload_hash = if body.is_empty() { EMPTY_PAYLOAD_SHA256 } else { UNSIGNED_PAYLOAD };
        let headers = [("host", self.host.as_str()), ("x-amz-content-sha256", payload_hash), ("x-amz-date", &date)];
        let auth = self.signer.authorization(
            &date,
            &CanonicalInput { method: method.as_str(), path, query: "", headers: &headers, payload_hash },
        );
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header(header::HOST, &self.host)
            .header("x-amz-content-sha256", payload_hash)
            .header("x-amz-date", &date)
            .header(header::AUTHORIZATION, auth);
        if method == Method::PUT || method == Method::POST {
            builder = builder.header(header::CONTENT_LENGTH, body.len());
        }
        let request = builder.body(Full::new(body)).map_err(|e| OpError::Transport(e.to_string()))?;
        let response = self.http.request(request).await.map_err(|e| OpError::Transport(format_chain(&e)))?;
        let status = response.status();
        let keep = !status.is_success();
        let mut body = response.into_body();
        let (mut len, mut head) = (0u64, Vec::new());
        // Read the whole body (the connection is reused only after that), keeping only its start.
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| OpError::Transport(format!("read the response body: {}", format_chain(&e))))?;
            if let Ok(data) = frame.into_data() {
                len += data.len() as u64;
                if keep && head.len() < 512 {
                    head.extend_from_slice(&data[..data.len().min(512 - head.len())]);
                }
            }
        }
        if !status.is_success() {
            return Err(OpError::Status { status: status.as_u16(), body: String::from_utf8_lossy(&head).into_owned() });
        }
        Ok(len)
    }
}

/// An error and its sources on one line (hyper's own message is often just "client error").
fn format_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The benchmark
// ---------------------------------------------------------------------------------------------

/// What to run.
#[derive(Clone)]
pub struct S3BenchConfig {
    /// `http://HOST:PORT` of the S3 service.
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// Created if missing; objects go to `bench/<worker>/<n>` and are removed afterwards.
    pub bucket: String,
    pub object_size: usize,
    pub concurrency: usize,
    /// Of each of the PUT and GET phases (DELETE runs until everything written is gone).
    pub duration: Duration,
    /// Processes whose CPU per op is reported for every phase and whose memory is sampled at the end.
    pub watch: Vec<WatchedProcess>,
    /// Set (by Ctrl-C) to end the PUT and GET phases early; DELETE still removes everything
    /// written, and the report says `interrupted`.
    pub interrupt: Arc<AtomicBool>,
}

impl fmt::Debug for S3BenchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3BenchConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("bucket", &self.bucket)
            .field("object_size", &self.object_size)
            .field("concurrency", &self.concurrency)
            .field("duration", &self.duration)
            .field("watch", &self.watch)
            .finish_non_exhaustive()
    }
}

/// The result of one phase.
#[derive(Clone, Debug, Serialize)]
pub struct S3PhaseReport {
    /// `PUT`, `GET` or `DELETE`.
    pub op: String,
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    /// Object bytes moved per second, in MiB (1048576 bytes), as `rados bench` counts its "MB".
    pub mib_per_sec: f64,
    pub lat_p50_us: u64,
    pub lat_p90_us: u64,
    pub lat_p99_us: u64,
    pub lat_p999_us: u64,
    pub lat_p9999_us: u64,
    pub lat_max_us: u64,
    pub lat_mean_us: f64,
    /// The latency distribution as `[µs, fraction at or below]` points, finer towards the tail.
    pub latency_cdf: Vec<(f64, f64)>,
    /// Requests completed in each whole second of the phase (the last one may be partial).
    pub per_second_ops: Vec<u64>,
    /// Requests that failed (any status but 2xx, transport errors, timeouts, short bodies).
    pub errors: u64,
    /// The first few failures, as "METHOD key: error".
    pub first_errors: Vec<String>,
    /// CPU time (user + system) of this whole process per completed op during the phase.
    pub client_cpu_us_per_op: f64,
    /// CPU time of each watched process per completed op during the phase, by name.
    pub process_cpu_us_per_op: BTreeMap<String, f64>,
}

/// Everything one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct S3BenchReport {
    pub endpoint: String,
    pub bucket: String,
    pub object_size: usize,
    pub concurrency: usize,
    pub seconds_per_phase: f64,
    /// PUT, GET, DELETE.
    pub phases: Vec<S3PhaseReport>,
    /// Sampled after the DELETE phase.
    pub processes: Vec<ProcessMemory>,
    /// Ctrl-C ended the PUT or GET phase early (the numbers cover what ran; DELETE still ran).
    pub interrupted: bool,
}

/// Shared by the workers of one phase: the first few errors.
#[derive(Default)]
struct ErrorLog {
    count: AtomicU64,
    first: Mutex<Vec<String>>,
}

impl ErrorLog {
    fn record(&self, what: impl FnOnce() -> String) {
        if (self.count.fetch_add(1, Ordering::Relaxed) as usize) < KEPT_ERRORS {
            let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
            first.push(what());
        }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.first.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Which op a phase runs, and how long.
enum Until {
    /// Until the phase duration passes.
    Deadline(Duration),
    /// Until the op says there is nothing left (`Ok(None)`).
    Exhausted,
}

fn new_histogram() -> Option<Histogram<u64>> {
    Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).ok()
}

/// Runs `op(worker, n)` from every worker until `until`; `op` returns `Ok(Some(bytes))` for a
/// completed op that moved `bytes` object bytes, `Ok(None)` when the worker has nothing left,
/// or an error (counted; the worker calls again with the same `n` after a short pause).
async fn phase<F, Fut>(
    name: &str,
    cfg: &S3BenchConfig,
    until: Until,
    tick: &(dyn Fn(&str, u64) + Sync),
    op: F,
) -> (S3PhaseReport, Vec<u64>)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Option<u64>, (String, OpError)>> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(ErrorLog::default());
    let watched_start: Vec<Option<f64>> = cfg.watch.iter().map(|p| process_cpu_us(Some(p.pid))).collect();
    let cpu_start = process_cpu_us(None);
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..cfg.concurrency {
        let (op, stop, done, errors) = (Arc::clone(&op), Arc::clone(&stop), Arc::clone(&done), Arc::clone(&errors));
        workers.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            let (mut n, mut bytes) = (0u64, 0u64);
            let mut seconds: Vec<u64> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match op(w, n).await {
                    Ok(Some(moved)) => {
                        if let Some(h) = hist.as_mut() {
                            let _ = h.record((t.elapsed().as_micros() as u64).max(1));
                        }
                        let sec = start.elapsed().as_secs() as usize;
                        if seconds.len() <= sec {
                            seconds.resize(sec + 1, 0);
                        }
                        seconds[sec] += 1;
                        n += 1;
                        bytes += moved;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(None) => break,
                    Err((what, e)) => {
                        errors.record(|| format!("{what}: {e}"));
                        // Don't spin on a server that refuses connections.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (hist, n, bytes, seconds)
        }));
    }
    match until {
        Until::Deadline(d) => {
            while start.elapsed() < d && !cfg.interrupt.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100).min(d.saturating_sub(start.elapsed()))).await;
                tick(name, done.load(Ordering::Relaxed));
            }
            stop.store(true, Ordering::Relaxed);
        }
        Until::Exhausted => {
            // Polled often so that the phase's duration (and its ops/s) is not rounded up much.
            let mut polls = 0u32;
            while !workers.iter().all(|w| w.is_finished()) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                polls += 1;
                if polls.is_multiple_of(10) {
                    tick(name, done.load(Ordering::Relaxed));
                }
            }
        }
    }
    let mut total = new_histogram();
    let (mut ops, mut bytes, mut per_worker) = (0, 0, Vec::new());
    let mut per_second_ops: Vec<u64> = Vec::new();
    for w in workers {
        match w.await {
            Ok((hist, n, b, seconds)) => {
                if let (Some(t), Some(h)) = (total.as_mut(), hist.as_ref()) {
                    let _ = t.add(h);
                }
                if per_second_ops.len() < seconds.len() {
                    per_second_ops.resize(seconds.len(), 0);
                }
                for (a, b) in per_second_ops.iter_mut().zip(&seconds) {
                    *a += b;
                }
                ops += n;
                bytes += b;
                per_worker.push(n);
            }
            Err(e) => {
                errors.record(|| format!("worker task: {e}"));
                per_worker.push(0);
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let per_op = |us: f64| if ops > 0 { us / ops as f64 } else { 0.0 };
    let client_cpu = match (cpu_start, process_cpu_us(None)) {
        (Some(a), Some(b)) => per_op(b - a),
        _ => 0.0,
    };
    let mut process_cpu_us_per_op = BTreeMap::new();
    for (p, before) in cfg.watch.iter().zip(watched_start) {
        if let (Some(a), Some(b)) = (before, process_cpu_us(Some(p.pid))) {
            process_cpu_us_per_op.insert(p.name.clone(), per_op(b - a));
        }
    }
    let q = |p: f64| total.as_ref().map_or(0, |h| h.value_at_quantile(p));
    let report = S3PhaseReport {
        op: name.to_owned(),
        ops,
        seconds,
        ops_per_sec: ops as f64 / seconds,
        mib_per_sec: bytes as f64 / seconds / (1024.0 * 1024.0),
        lat_p50_us: q(0.5),
        lat_p90_us: q(0.9),
        lat_p99_us: q(0.99),
        lat_p999_us: q(0.999),
        lat_p9999_us: q(0.9999),
        lat_max_us: total.as_ref().map_or(0, |h| h.max()),
        lat_mean_us: total.as_ref().map_or(0.0, |h| h.mean()),
        latency_cdf: total.as_ref().map_or_else(Vec::new, |h| crate::svg::cdf_points(h, 1.0)),
        per_second_ops,
        errors: errors.count.load(Ordering::Relaxed),
        first_errors: errors.take(),
        client_cpu_us_per_op: client_cpu,
        process_cpu_us_per_op,
    };
    (report, per_worker)
}

/// The objects of the PUT phase: worker `w` wrote `bench/<w>/0` .. `bench/<w>/<written[w]-1>`.
#[derive(Debug)]
struct Written {
    /// `ends[w]` = objects written by workers `0..=w`.
    ends: Vec<u64>,
}

impl Written {
    fn new(per_worker: &[u64]) -> Self {
        let ends = per_worker
            .iter()
            .scan(0u64, |sum, n| {
                *sum += n;
                Some(*sum)
            })
            .collect();
        Written { ends }
    }

    fn total(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// The `i`-th object overall (`i < total`), as (worker, index of that worker's object).
    fn nth(&self, i: u64) -> (usize, u64) {
        let w = self.ends.partition_point(|end| *end <= i);
        let before = if w == 0 { 0 } else { self.ends[w - 1] };
        (w, i - before)
    }
}

/// A well-spread hash of (worker, op number), so random reads are repeatable run to run.
fn spread(worker: usize, n: u64) -> u64 {
    // splitmix64's finaliser.
    let mut z = (n ^ ((worker as u64) << 40)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn object_path(bucket: &str, worker: usize, n: u64) -> String {
    format!("/{}/bench/{worker}/{n}", uri_encode_path(bucket))
}

/// Create the bucket (an existing one of ours is fine), PUT for the phase duration, GET random
/// written objects for the phase duration, then DELETE everything written. `tick(phase, ops)` is
/// called about ten times a second for progress display.
pub async fn run(cfg: &S3BenchConfig, tick: &(dyn Fn(&str, u64) + Sync)) -> Result<S3BenchReport, S3BenchError> {
    let client = Arc::new(S3Client::new(cfg)?);
    tick("create bucket", 0);
    let bucket_path = format!("/{}", uri_encode_path(&cfg.bucket));
    match client.send(Method::PUT, &bucket_path, Bytes::new()).await {
        Ok(_) => {}
        Err(OpError::Status { status: 409, body }) if body.contains("BucketAlreadyOwnedByYou") => {}
        Err(source) => return Err(S3BenchError::CreateBucket { bucket: cfg.bucket.clone(), source }),
    }

    let payload = Bytes::from((0..cfg.object_size).map(|i| (i * 31 + 7) as u8).collect::<Vec<_>>());
    let (put, per_worker) = {
        let (client, bucket, payload) = (Arc::clone(&client), cfg.bucket.clone(), payload.clone());
        phase("PUT", cfg, Until::Deadline(cfg.duration), tick, move |w, n| {
            let (client, path, payload) = (Arc::clone(&client), object_path(&bucket, w, n), payload.clone());
            async move {
                let len = payload.len() as u64;
                match client.send(Method::PUT, &path, payload).await {
                    Ok(_) => Ok(Some(len)),
                    Err(e) => Err((format!("PUT {path}"), e)),
                }
            }
        })
        .await
    };
    let written = Arc::new(Written::new(&per_worker));
    if written.total() == 0 {
        return Err(S3BenchError::NothingWritten(put.first_errors.join("; ")));
    }

    let (get, _) = {
        let (client, bucket, written, want) =
            (Arc::clone(&client), cfg.bucket.clone(), Arc::clone(&written), cfg.object_size);
        phase("GET", cfg, Until::Deadline(cfg.duration), tick, move |w, n| {
            // Like `rados bench rand`: a random object of the write phase each time, not the
            // write order (which would start with the objects least likely to be cached).
            let (ow, oi) = written.nth(spread(w, n) % written.total());
            let (client, path) = (Arc::clone(&client), object_path(&bucket, ow, oi));
            async move {
                match client.send(Method::GET, &path, Bytes::new()).await {
                    Ok(len) if len == want as u64 => Ok(Some(len)),
                    Ok(len) => Err((format!("GET {path}"), OpError::WrongLength { got: len, want: want as u64 })),
                    Err(e) => Err((format!("GET {path}"), e)),
                }
            }
        })
        .await
    };

    // Remove what was written with as many requests in flight as the other phases: each call
    // takes the next object from one shared counter. A failed DELETE is counted, not retried.
    let (delete, _) = {
        let next = Arc::new(AtomicU64::new(0));
        let (client, bucket, written) = (Arc::clone(&client), cfg.bucket.clone(), Arc::clone(&written));
        phase("DELETE", cfg, Until::Exhausted, tick, move |_, _| {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let (client, bucket, written) = (Arc::clone(&client), bucket.clone(), Arc::clone(&written));
            async move {
                if i >= written.total() {
                    return Ok(None);
                }
                let (ow, oi) = written.nth(i);
                let path = object_path(&bucket, ow, oi);
                match client.send(Method::DELETE, &path, Bytes::new()).await {
                    Ok(_) => Ok(Some(0)),
                    Err(e) => Err((format!("DELETE {path}"), e)),
                }
            }
        })
        .await
    };
    let processes = cfg.watch.iter().map(process_memory).collect();
    Ok(S3BenchReport {
        endpoint: cfg.endpoint.clone(),
        bucket: cfg.bucket.clone(),
        object_size: cfg.object_size,
        concurrency: cfg.concurrency,
        seconds_per_phase: cfg.duration.as_secs_f64(),
        phases: vec![put, get, delete],
        interrupted: cfg.interrupt.load(Ordering::Relaxed),
        processes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCESS: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20130524T000000Z";

    /// "Example: GET Object" of the S3 SigV4 documentation (sig-v4-header-based-auth): the
    /// canonical request, string to sign and signature are the published ones.
    #[test]
    fn signs_the_published_get_object_example() {
        let headers = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_PAYLOAD_SHA256),
            ("x-amz-date", DATE),
        ];
        let req = CanonicalInput {
            method: "GET",
            path: "/test.txt",
            query: "",
            headers: &headers,
            payload_hash: EMPTY_PAYLOAD_SHA256,
        };
        let (canonical, signed) = canonical_request(&req);
        assert_eq!(
            canonical,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(signed, "host;range;x-amz-content-sha256;x-amz-date");
        assert_eq!(
            string_to_sign(DATE, "20130524/us-east-1/s3/aws4_request", &canonical),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
             7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        let signer = Signer::new(ACCESS, SECRET, "us-east-1");
        assert_eq!(
            signer.authorization(DATE, &req),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// "Example: PUT Object" of the same page: a key that needs encoding, headers given in a
    /// different order and case-sensitive values, and a signed payload.
    #[test]
    fn signs_the_published_put_object_example() {
        let body_hash = hex::encode(Sha256::digest(b"Welcome to Amazon S3."));
        assert_eq!(body_hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
        let path = uri_encode_path("/test$file.text");
        assert_eq!(path, "/test%24file.text");
        let headers = [
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("host", "examplebucket.s3.amazonaws.com"),
            ("date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", DATE),
            ("x-amz-content-sha256", &body_hash),
        ];
        let req = CanonicalInput { method: "PUT", path: &path, query: "", headers: &headers, payload_hash: &body_hash };
        let signer = Signer::new(ACCESS, SECRET, "us-east-1");
        assert_eq!(signer.signature(DATE, &req), "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
        // The cached signing key gives the same answer on the second request of the day.
        assert_eq!(signer.signature(DATE, &req), "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    }

    #[test]
    fn formats_amz_dates_in_utc() {
        let at = |secs: u64| amz_date(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "19700101T000000Z");
        assert_eq!(at(1_369_353_600), "20130524T000000Z");
        assert_eq!(at(951_782_400 + 3600 + 61), "20000229T010101Z", "leap day of a 400-year leap year");
        assert_eq!(at(4_102_444_799), "20991231T235959Z");
    }

    #[track_caller]
    fn check_size(input: &str, expect: Result<usize, ()>) {
        assert_eq!(parse_size(input).map_err(|_| ()), expect, "{input}");
    }

    #[test]
    fn parses_sizes() {
        check_size("4096", Ok(4096));
        check_size("4KiB", Ok(4096));
        check_size("4k", Ok(4096));
        check_size("4MiB", Ok(4 << 20));
        check_size("1M", Ok(1 << 20));
        check_size("1 GiB", Ok(1 << 30));
        check_size("4KB", Ok(4000));
        check_size("4MB", Ok(4_000_000));
        check_size("KiB", Err(()));
        check_size("4 parsecs", Err(()));
        check_size("-1", Err(()));
    }

    #[test]
    fn parses_watched_processes() {
        assert_eq!("osd.0=1234".parse(), Ok(WatchedProcess { name: "osd.0".into(), pid: 1234 }));
        assert!("1234".parse::<WatchedProcess>().is_err());
        assert!("=1234".parse::<WatchedProcess>().is_err());
        assert!("gw=x".parse::<WatchedProcess>().is_err());
    }

    #[test]
    fn written_objects_are_numbered_across_workers() {
        let written = Written::new(&[3, 0, 2]);
        assert_eq!(written.total(), 5);
        let got: Vec<_> = (0..5).map(|i| written.nth(i)).collect();
        assert_eq!(got, vec![(0, 0), (0, 1), (0, 2), (2, 0), (2, 1)]);
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..1000 {
            seen.insert(written.nth(spread((n % 7) as usize, n) % written.total()));
        }
        assert_eq!(seen.len(), 5, "random picks reach every object");
    }

    #[test]
    fn reads_this_process_from_proc() {
        assert!(process_cpu_us(None).is_some());
        let me = WatchedProcess { name: "self".into(), pid: std::process::id() };
        let mem = process_memory(&me);
        assert!(mem.vm_hwm_kib.unwrap_or(0) >= mem.vm_rss_kib.unwrap_or(0) && mem.vm_rss_kib.unwrap_or(0) > 0);
    }
}
