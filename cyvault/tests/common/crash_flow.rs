//! The kill -9 test shared by `s3_crash.rs` (local backend) and `ceph_s3_crash.rs` (RADOS).
//!
//! Writer threads (`clients/crash_writer.py`, boto3) PUT and multipart-upload deterministic
//! payloads and report every start, acknowledgement and failure; the gateway is SIGKILLed at a
//! random moment mid-traffic, restarted, and everything is read back:
//! - an acknowledged write is visible whole (the latest acknowledged one for its key);
//! - a write cut by the kill is either absent or whole: each key's content is one of the payloads
//!   that may have landed, and listings agree with reads;
//! - a multipart upload cut before its Complete stays listed until `admin gc` aborts it.
//!
//! Then `cyvault admin gc` must remove exactly the leftovers: nothing with a long grace period, the
//! same with `--dry-run` as for real, and afterwards the raw object count equals that of a fresh
//! store holding only the live objects (written again, the same way, into a new gateway).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::common::{Backend, Gateway, SplitMix};

/// How hard to shake it.
#[derive(Clone, Copy, Debug)]
pub struct CrashOpts {
    /// Kill / restart rounds.
    pub rounds: usize,
    /// Concurrent writer threads.
    pub threads: usize,
    /// Writes acknowledged in a round before the kill may come (traffic is flowing).
    pub min_acks: usize,
    /// Then kill after a random time in this range (ms).
    pub kill_after_ms: (u64, u64),
}

const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Debug, PartialEq, Eq)]
enum OpState {
    InFlight,
    Acked,
    Failed { class: String, msg: String },
}

#[derive(Clone, Debug)]
struct Op {
    key: String,
    attempt: String,
    kind: String,
    size: u64,
    sha: String,
    round: usize,
    state: OpState,
    upload: Option<String>,
    complete_sent: bool,
}

/// What the test knows about one key: the content seen at the last check (`None`: absent) and
/// the writes started since.
#[derive(Clone, Debug, Default)]
struct KeyState {
    baseline: Option<String>,
    since: Vec<usize>,
}

#[derive(Debug, Default)]
struct Ledger {
    ops: Vec<Op>,
    by_attempt: HashMap<String, usize>,
    keys: BTreeMap<String, KeyState>,
    /// Multipart uploads seen listed at the last check: upload id -> key.
    open_uploads: BTreeMap<String, String>,
    round: usize,
    /// Ops before this index were accounted for by the last check.
    checked_ops: usize,
    /// `fail` events seen while the gateway was known to be up.
    spontaneous_failures: Vec<String>,
}

impl Ledger {
    /// Applies a writer event; returns false when `line` is not one.
    fn apply(&mut self, line: &str) -> bool {
        let w: Vec<&str> = line.splitn(5, ' ').collect();
        let op = |s: &Self, attempt: &str| -> usize {
            *s.by_attempt.get(attempt).unwrap_or_else(|| panic!("writer event for an unknown attempt: {line}"))
        };
        match w[0] {
            "start" => {
                let v: Vec<&str> = line.split(' ').collect();
                assert_eq!(v.len(), 6, "bad start event: {line}");
                let i = self.ops.len();
                self.ops.push(Op {
                    key: v[1].into(),
                    attempt: v[2].into(),
                    kind: v[3].into(),
                    size: v[4].parse().unwrap_or_else(|e| panic!("size in {line}: {e}")),
                    sha: v[5].into(),
                    round: self.round,
                    state: OpState::InFlight,
                    upload: None,
                    complete_sent: false,
                });
                self.by_attempt.insert(v[2].into(), i);
                self.keys.entry(v[1].into()).or_default().since.push(i);
            }
            "mpu" => {
                let i = op(self, w[2]);
                self.ops[i].upload = Some(w.get(3).unwrap_or(&"").trim().to_string());
            }
            "complete" => {
                let i = op(self, w[2]);
                self.ops[i].complete_sent = true;
            }
            "ack" => {
                let i = op(self, w[2]);
                assert_eq!(self.ops[i].state, OpState::InFlight, "second outcome for {line}");
                self.ops[i].state = OpState::Acked;
            }
            "fail" => {
                let i = op(self, w[2]);
                assert_eq!(self.ops[i].state, OpState::InFlight, "second outcome for {line}");
                self.ops[i].state = OpState::Failed {
                    class: w.get(3).unwrap_or(&"").to_string(),
                    msg: w.get(4).unwrap_or(&"").to_string(),
                };
            }
            _ => return false,
        }
        true
    }

    /// The contents `key` may have now (`None`: absent): the baseline, then for each write since,
    /// an acknowledged one replaces every possibility and a failed one adds itself.
    fn possible(&self, key: &str) -> BTreeSet<Option<String>> {
        let st = &self.keys[key];
        let mut set = BTreeSet::from([st.baseline.clone()]);
        for &i in &st.since {
            let op = &self.ops[i];
            match op.state {
                OpState::Acked => set = BTreeSet::from([Some(op.sha.clone())]),
                _ => {
                    set.insert(Some(op.sha.clone()));
                }
            }
        }
        set
    }

    fn history(&self, key: &str) -> String {
        let st = &self.keys[key];
        let mut s = format!("baseline {:?}", st.baseline.as_deref().map(short));
        for &i in &st.since {
            let o = &self.ops[i];
            s += &format!(
                "; {} {} {} B sha {} round {} -> {:?}",
                o.attempt,
                o.kind,
                o.size,
                short(&o.sha),
                o.round,
                o.state
            );
        }
        s
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// The python writer process. Dropping it kills it (by pid).
pub struct Writer {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<String>,
    ledger: Ledger,
}

impl Writer {
    /// Starts the writer for `bucket` at `endpoint`; `env` holds the AWS credentials.
    pub fn spawn(endpoint: &str, env: &[(String, String)], bucket: &str, threads: usize) -> Writer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/crash_writer.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(bucket)
            .env("CRASH_WRITER_THREADS", threads.to_string())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn python3 {script}: {e}"));
        let stdin = child.stdin.take().unwrap_or_else(|| panic!("no stdin pipe"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout pipe"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut w = Writer { child, stdin, rx, ledger: Ledger::default() };
        w.set_endpoint(endpoint);
        w
    }

    pub fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap_or_else(|e| panic!("write to crash_writer.py ({line}): {e}"));
        self.stdin.flush().unwrap_or_else(|e| panic!("flush to crash_writer.py: {e}"));
    }

    /// Reads lines, applying writer events to the ledger, until one starting with `done`;
    /// returns the other (reply) lines before it.
    pub fn until(&mut self, done: &str) -> Vec<String> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let mut replies = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.rx.recv_timeout(left) {
                Ok(l) => l,
                Err(RecvTimeoutError::Timeout) => panic!("crash_writer.py: no {done:?} within {REPLY_TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("crash_writer.py exited while waiting for {done:?}"),
            };
            if self.ledger.apply(&line) {
                continue;
            }
            assert!(!line.starts_with("error "), "crash_writer.py: {line}");
            if line.starts_with(done) {
                return replies;
            }
            replies.push(line);
        }
    }

    /// Applies every event already reported, without waiting.
    fn drain(&mut self) -> Vec<String> {
        let mut fails = Vec::new();
        while let Ok(line) = self.rx.try_recv() {
            assert!(self.ledger.apply(&line), "unexpected line from crash_writer.py: {line}");
            if line.starts_with("fail ") {
                fails.push(line);
            }
        }
        fails
    }

    pub fn set_endpoint(&mut self, endpoint: &str) {
        self.send(&format!("endpoint {endpoint}"));
        self.until("ok endpoint");
    }

    /// Lists the bucket: (key -> size, upload id -> key).
    fn scan(&mut self) -> (BTreeMap<String, u64>, BTreeMap<String, String>) {
        self.send("scan");
        let mut objs = BTreeMap::new();
        let mut uploads = BTreeMap::new();
        for line in self.until("end scan") {
            let w: Vec<&str> = line.split(' ').collect();
            match w.as_slice() {
                ["obj", key, size] => {
                    let size = size.parse().unwrap_or_else(|e| panic!("size in {line}: {e}"));
                    assert!(objs.insert(key.to_string(), size).is_none(), "key listed twice: {key}");
                }
                ["upload", key, id] => {
                    uploads.insert(id.to_string(), key.to_string());
                }
                _ => panic!("unexpected scan line: {line}"),
            }
        }
        (objs, uploads)
    }

    /// Reads every key: key -> Some((sha256, len)) or None (NoSuchKey).
    fn read_all(&mut self, keys: &[String]) -> BTreeMap<String, Option<(String, u64)>> {
        for k in keys {
            self.send(&format!("get {k}"));
        }
        let mut out = BTreeMap::new();
        for k in keys {
            let deadline = Instant::now() + REPLY_TIMEOUT;
            let line = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let l =
                    self.rx.recv_timeout(left).unwrap_or_else(|e| panic!("crash_writer.py: no answer to get {k}: {e}"));
                if !self.ledger.apply(&l) {
                    break l;
                }
            };
            let w: Vec<&str> = line.split(' ').collect();
            match w.as_slice() {
                ["body", key, sha, len] if key == k => {
                    let len = len.parse().unwrap_or_else(|e| panic!("len in {line}: {e}"));
                    out.insert(k.clone(), Some((sha.to_string(), len)));
                }
                ["missing", key] if key == k => {
                    out.insert(k.clone(), None);
                }
                _ => panic!("GET {k}: unexpected answer {line}"),
            }
        }
        out
    }

    /// Writes `key` again with the payload of `op` and waits for the acknowledgement.
    fn replay(&mut self, op: &Op) {
        self.send(&format!("put {} {} {} {}", op.key, op.attempt, op.kind, op.size));
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = self.rx.recv_timeout(left).unwrap_or_else(|e| panic!("crash_writer.py: replay of {}: {e}", op.key));
            assert!(self.ledger.apply(&l), "unexpected line from crash_writer.py: {l}");
            if l.starts_with("ack ") || l.starts_with("fail ") {
                assert!(l.starts_with("ack "), "replay of {} {} failed: {l}", op.key, op.attempt);
                return;
            }
        }
    }

    /// Starts traffic (round `round`), waits for `min_acks` acknowledged writes and then `wait`,
    /// kills the server with `kill`, and waits until every write in flight has an outcome.
    pub fn traffic_until_kill(
        &mut self,
        round: usize,
        seed: u64,
        min_acks: usize,
        wait: Duration,
        kill: &mut dyn FnMut(),
    ) {
        self.ledger.round = round;
        self.send(&format!("go {round} {seed}"));
        self.until("ok go");
        let acked = |l: &Ledger| l.ops.iter().filter(|o| o.round == round && o.state == OpState::Acked).count();
        let deadline = Instant::now() + REPLY_TIMEOUT;
        while acked(&self.ledger) < min_acks {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.rx.recv_timeout(left).unwrap_or_else(|e| {
                panic!(
                    "round {round}: {} of {min_acks} writes acknowledged within {REPLY_TIMEOUT:?}: {e}",
                    acked(&self.ledger)
                )
            });
            assert!(self.ledger.apply(&line), "unexpected line from crash_writer.py: {line}");
            if line.starts_with("fail ") {
                self.ledger.spontaneous_failures.push(line);
            }
        }
        std::thread::sleep(wait);
        // Any failure reported before the kill happened while the gateway was up.
        let early = self.drain();
        self.ledger.spontaneous_failures.extend(early);
        let started = self.ledger.ops.len();
        kill();
        self.send("stop");
        self.until("stopped");
        let cut: Vec<String> = self
            .ledger
            .ops
            .iter()
            .filter(|o| o.round == round && matches!(o.state, OpState::Failed { .. }))
            .map(|o| {
                let stage = match (&o.upload, o.complete_sent) {
                    (_, true) => " (Complete sent)",
                    (Some(_), false) => " (upload created)",
                    (None, false) if o.kind == "mpu" => " (no upload id)",
                    _ => "",
                };
                format!("{} {} {} B{stage}", o.key, o.kind, o.size)
            })
            .collect();
        eprintln!(
            "[crash] round {round}: killed {wait:?} after the first {min_acks} acknowledgements; {} writes acknowledged \
             ({started} started in all), cut: {cut:?}",
            acked(&self.ledger)
        );
    }

    /// Checks everything readable against the ledger, then makes what was seen the new baseline.
    pub fn verify(&mut self, when: &str) {
        let (listed, uploads) = self.scan();
        let keys: Vec<String> = self.ledger.keys.keys().cloned().collect();
        let read = self.read_all(&keys);
        let l = &self.ledger;
        let mut errors = Vec::new();

        for op in &l.ops {
            if op.state == OpState::InFlight {
                errors.push(format!("{} {}: no outcome reported", op.key, op.attempt));
            }
            if let OpState::Failed { class, msg } = &op.state
                && class != "conn"
            {
                errors.push(format!(
                    "{} {} failed with an S3 error, not a lost connection: {class} {msg}",
                    op.key, op.attempt
                ));
            }
        }
        for f in &l.spontaneous_failures {
            errors.push(format!("write failed while the gateway was up: {f}"));
        }
        for (key, got) in &read {
            let possible = l.possible(key);
            let seen = got.as_ref().map(|(sha, _)| sha.clone());
            if !possible.contains(&seen) {
                errors.push(format!(
                    "{key}: read {:?}, may only be one of {:?}; history: {}",
                    seen.as_deref().map(short),
                    possible.iter().map(|p| p.as_deref().map(short)).collect::<Vec<_>>(),
                    l.history(key)
                ));
            }
            match (got, listed.get(key)) {
                (Some((_, len)), Some(size)) if len != size => {
                    errors.push(format!("{key}: listed with size {size}, reads {len} bytes"))
                }
                (Some(_), None) => errors.push(format!("{key}: readable but not listed")),
                (None, Some(size)) => errors.push(format!("{key}: listed ({size} B) but GET says NoSuchKey")),
                _ => {}
            }
        }
        for key in listed.keys().filter(|k| !l.keys.contains_key(*k)) {
            errors.push(format!("{key}: listed, but never written"));
        }

        // Multipart uploads: one cut before its Complete stays listed; one completed is gone.
        let mut unknown_allowed: BTreeMap<&str, usize> = BTreeMap::new();
        let mut may_be_listed: BTreeSet<&str> = l.open_uploads.keys().map(String::as_str).collect();
        let mut must_be_listed: BTreeSet<&str> = may_be_listed.clone();
        for (i, op) in l.ops.iter().enumerate().filter(|(_, o)| o.kind == "mpu") {
            let new = i >= l.checked_ops;
            match (&op.state, &op.upload) {
                (OpState::Acked, Some(id)) => {
                    if uploads.contains_key(id) {
                        errors.push(format!("{}: upload {id} completed but still listed", op.key));
                    }
                    may_be_listed.remove(id.as_str());
                    must_be_listed.remove(id.as_str());
                }
                (OpState::Failed { .. }, Some(id)) if new => {
                    may_be_listed.insert(id);
                    if !op.complete_sent {
                        must_be_listed.insert(id);
                    }
                }
                (OpState::Failed { .. }, None) if new => *unknown_allowed.entry(op.key.as_str()).or_default() += 1,
                _ => {}
            }
        }
        for id in &must_be_listed {
            if !uploads.contains_key(*id) {
                errors.push(format!("unfinished multipart upload {id} is not listed by ListMultipartUploads"));
            }
        }
        for (id, key) in &uploads {
            if may_be_listed.contains(id.as_str()) {
                continue;
            }
            match unknown_allowed.get_mut(key.as_str()) {
                Some(n) if *n > 0 => *n -= 1,
                _ => errors.push(format!("upload {id} of {key} is listed but was never started or was completed")),
            }
        }

        let acked = l.ops.iter().filter(|o| o.state == OpState::Acked).count();
        let failed = l.ops.iter().filter(|o| matches!(o.state, OpState::Failed { .. })).count();
        eprintln!(
            "[crash] check {when}: {} keys ({} visible), {acked} writes acknowledged and {failed} cut so far, {} open uploads",
            read.len(),
            listed.len(),
            uploads.len()
        );
        assert!(errors.is_empty(), "{when}: {} problems:\n{}", errors.len(), errors.join("\n"));

        // What was seen is the new baseline.
        for (key, got) in read {
            let st = self.ledger.keys.entry(key).or_default();
            st.baseline = got.map(|(sha, _)| sha);
            st.since.clear();
        }
        self.ledger.open_uploads = uploads;
        self.ledger.checked_ops = self.ledger.ops.len();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cyvault admin gc --json` counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcReport {
    pub orphan_objects_removed: u64,
    pub orphan_bytes: u64,
    pub uploads_aborted: u64,
    pub index_entries_fixed: u64,
}

impl GcReport {
    pub fn is_zero(&self) -> bool {
        *self == GcReport { orphan_objects_removed: 0, orphan_bytes: 0, uploads_aborted: 0, index_entries_fixed: 0 }
    }
}

/// Runs `cyvault admin gc --json --grace-secs GRACE [--dry-run]` and parses its one JSON object.
#[track_caller]
pub fn gc(gw: &Gateway, grace_secs: u64, dry_run: bool) -> GcReport {
    let grace = grace_secs.to_string();
    let mut args = vec!["gc", "--json", "--grace-secs", &grace];
    if dry_run {
        args.push("--dry-run");
    }
    let out = gw.admin_ok(&args);
    let v: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("admin {args:?}: not one JSON object: {out:?}: {e}"));
    let field =
        |name: &str| v[name].as_u64().unwrap_or_else(|| panic!("admin {args:?}: no unsigned {name:?} in {out}"));
    GcReport {
        orphan_objects_removed: field("orphan_objects_removed"),
        orphan_bytes: field("orphan_bytes"),
        uploads_aborted: field("uploads_aborted"),
        index_entries_fixed: field("index_entries_fixed"),
    }
}

/// The raw backend objects under the gateway (`cyvault admin object ls`).
#[track_caller]
pub fn raw_objects(gw: &Gateway) -> BTreeSet<String> {
    let out = gw.admin_ok(&["object", "ls"]);
    out.lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// Counts raw object names by kind (the name up to its second dot), for failure messages.
fn kinds(names: &BTreeSet<String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in names {
        let kind: String = n.splitn(3, '.').take(2).collect::<Vec<_>>().join(".");
        *m.entry(kind).or_default() += 1;
    }
    m
}

/// Stops the gateway where the admin tool needs the data dir to itself (local backend).
fn offline_for_admin(gw: &mut Gateway) {
    if gw.backend == Backend::Local {
        let st = gw.stop();
        assert!(st.success(), "gateway exited with {st} after SIGTERM");
    }
}

fn online_after_admin(gw: &mut Gateway) {
    if gw.backend == Backend::Local {
        gw.restart();
    }
}

/// The whole kill -9 test on `backend`.
pub fn run(backend: Backend, opts: CrashOpts) {
    let t0 = Instant::now();
    let mut gw = Gateway::start(backend);
    let bucket = crate::common::unique("crash").to_lowercase();
    let mut w = Writer::spawn(&gw.endpoint, &gw.aws_env(), &bucket, opts.threads);
    w.send("mkbucket");
    w.until("ok mkbucket");
    // A different schedule every run (printed, so a failure can be told apart from others).
    let seed = std::env::var("CYVAULT_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        now.as_nanos() as u64 ^ u64::from(std::process::id())
    });
    let mut rng = SplitMix(seed);
    eprintln!("[crash] seed {seed}, bucket {bucket}, {} threads, {} rounds", opts.threads, opts.rounds);

    for round in 1..=opts.rounds {
        let (lo, hi) = opts.kill_after_ms;
        let wait = lo + rng.next() % (hi - lo + 1);
        w.traffic_until_kill(round, seed, opts.min_acks, Duration::from_millis(wait), &mut || gw.kill9());
        gw.restart();
        let endpoint = gw.endpoint.clone();
        w.set_endpoint(&endpoint);
        w.verify(&format!("after kill {round}"));
    }
    eprintln!("[crash] {} rounds in {:?}", opts.rounds, t0.elapsed());

    // Garbage collection.
    offline_for_admin(&mut gw);
    let raw0 = raw_objects(&gw);
    let long = gc(&gw, 3600, false);
    assert!(long.is_zero(), "gc with a one-hour grace period touched fresh state: {long:?}");
    assert_eq!(raw_objects(&gw), raw0, "gc with a one-hour grace period removed raw objects");
    let dry = gc(&gw, 0, true);
    assert_eq!(raw_objects(&gw), raw0, "gc --dry-run removed raw objects");
    let real = gc(&gw, 0, false);
    let raw1 = raw_objects(&gw);
    eprintln!("[crash] gc: dry run {dry:?}, real {real:?}; raw objects {} -> {}", raw0.len(), raw1.len());
    assert_eq!(real, dry, "gc did not do what --dry-run said it would");
    assert!(raw1.is_subset(&raw0), "gc created raw objects: {:?}", raw1.difference(&raw0).collect::<Vec<_>>());
    assert_eq!(
        real.uploads_aborted,
        w.ledger.open_uploads.len() as u64,
        "gc must abort exactly the unfinished multipart uploads {:?}",
        w.ledger.open_uploads
    );
    if real.orphan_objects_removed > 0 {
        assert!(real.orphan_bytes > 0, "orphans removed but no bytes counted: {real:?}");
        assert!(
            (raw0.len() - raw1.len()) as u64 >= real.orphan_objects_removed,
            "gc says it removed {} orphan objects, the raw listing shrank by {}",
            real.orphan_objects_removed,
            raw0.len() - raw1.len()
        );
    }
    let again = gc(&gw, 0, false);
    assert!(again.is_zero(), "a second gc still found work: {again:?}");
    assert_eq!(raw_objects(&gw), raw1, "a second gc changed the raw objects");

    // Everything acknowledged still reads back, and no upload is left.
    online_after_admin(&mut gw);
    let endpoint = gw.endpoint.clone();
    w.set_endpoint(&endpoint);
    w.ledger.open_uploads.clear();
    w.verify("after gc");

    // What do the live objects need? Write them again, the same way, into a fresh store.
    let live: Vec<Op> = w
        .ledger
        .keys
        .values()
        .filter_map(|st| st.baseline.as_ref())
        .map(|sha| {
            let op = w.ledger.ops.iter().find(|o| &o.sha == sha);
            op.unwrap_or_else(|| panic!("no write produced sha {sha}")).clone()
        })
        .collect();
    let mut fresh = Gateway::start(backend);
    let mut rw = Writer::spawn(&fresh.endpoint, &fresh.aws_env(), &bucket, 1);
    rw.send("mkbucket");
    rw.until("ok mkbucket");
    for op in &live {
        rw.replay(op);
    }
    if w.ledger.ops.iter().any(|o| o.kind == "mpu") {
        // The bucket saw multipart uploads: let the fresh one have seen one too (per-bucket
        // upload bookkeeping may stay after the last upload ends, and is not a leftover).
        rw.send("abortmpu replay-aborted-upload");
        rw.until("ok abortmpu");
    }
    drop(rw);
    offline_for_admin(&mut fresh);
    let needed = raw_objects(&fresh);
    assert_eq!(
        raw1.len(),
        needed.len(),
        "after gc the store holds {} raw objects, a fresh store with the same {} live objects {}:\nafter gc: {:?}\nfresh: {:?}",
        raw1.len(),
        live.len(),
        needed.len(),
        kinds(&raw1),
        kinds(&needed)
    );
    drop(w);
    eprintln!(
        "[crash] {} live objects ({} multipart), {} raw objects; whole test {:?}",
        live.len(),
        live.iter().filter(|o| o.kind == "mpu").count(),
        needed.len(),
        t0.elapsed()
    );
}
