//! What the local backend promises beyond the conformance suite: a compound write is never torn
//! whatever step it dies at, acknowledged writes survive `kill -9`, names never become paths,
//! and the fault-injecting wrapper behaves as documented.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::ok;
use cyvault_store::local::INLINE_MAX;
use cyvault_store::{
    Effect, FaultPlan, FaultyStore, Guard, LocalStore, ObjectRef, ObjectStore, OmapQuery, ReadRange, StoreError,
    Trigger, WriteOp,
};

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("temp dir: {e}"),
    }
}

fn open(dir: &Path) -> LocalStore {
    ok(LocalStore::open(dir))
}

fn pattern(len: usize, seed: u8) -> Bytes {
    Bytes::from((0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect::<Vec<_>>())
}

/// Everything a reader can see of one object.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Absent,
    Present { data: Bytes, xattrs: BTreeMap<String, Bytes>, omap: Vec<(String, Bytes)> },
}

async fn look(s: &dyn ObjectStore, o: &ObjectRef) -> Seen {
    match s.read(o, ReadRange::Full).await {
        Err(StoreError::NotFound(_)) => Seen::Absent,
        r => Seen::Present {
            data: ok(r).data,
            xattrs: ok(s.xattr_list(o).await),
            omap: ok(s.omap_list(o, &OmapQuery { max: 1000, ..OmapQuery::default() }).await).entries,
        },
    }
}

fn data_files(dir: &Path) -> usize {
    let mut n = 0;
    for sub in std::fs::read_dir(dir.join("data")).into_iter().flatten().flatten() {
        n += std::fs::read_dir(sub.path()).into_iter().flatten().count();
    }
    n
}

const STEPS: [&str; 8] = [
    "local.prepare",
    "local.data_partial",
    "local.data_written",
    "local.data_synced",
    "local.dir_synced",
    "local.before_commit",
    "local.committed",
    "local.old_data_removed",
];

/// A compound write scenario: the state before, and the op that moves it to the state after.
struct Scenario {
    name: &'static str,
    before: Option<WriteOp>,
    op: WriteOp,
}

fn full_op(len: usize, seed: u8, tag: &'static str) -> WriteOp {
    WriteOp::new()
        .write_full(pattern(len, seed))
        .set_xattr("tag", Bytes::from_static(tag.as_bytes()))
        .omap_set_one("owner", Bytes::from_static(tag.as_bytes()))
        .omap_set_one(format!("only-{tag}"), Bytes::from_static(b"1"))
}

fn scenarios() -> Vec<Scenario> {
    let big = INLINE_MAX * 3 + 5;
    vec![
        Scenario { name: "large to large", before: Some(full_op(big, 1, "old")), op: full_op(big + 100, 2, "new") },
        Scenario { name: "small to large", before: Some(full_op(10, 1, "old")), op: full_op(big, 2, "new") },
        Scenario { name: "large to small", before: Some(full_op(big, 1, "old")), op: full_op(10, 2, "new") },
        Scenario { name: "small to small", before: Some(full_op(10, 1, "old")), op: full_op(20, 2, "new") },
        Scenario {
            name: "partial write into large",
            before: Some(full_op(big, 1, "old")),
            op: WriteOp::new().write(1000, pattern(5000, 9)).set_xattr("tag", Bytes::from_static(b"new")),
        },
        Scenario {
            name: "create exclusive large",
            before: None,
            op: full_op(big, 3, "new").guard(Guard::CreateExclusive),
        },
        Scenario { name: "remove large", before: Some(full_op(big, 1, "old")), op: WriteOp::new().remove() },
    ]
}

/// For every scenario and every step of the local write path: "crash" there, reopen, and check
/// the object is wholly old or wholly new — old if the crash came before the commit, new after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compound_writes_are_never_torn_at_any_crash_point() {
    let o = ObjectRef::new("pool", "", "victim");
    let mut table = Vec::new();
    for sc in scenarios() {
        // The two reference states, computed on a store nobody crashes.
        let ref_dir = tempdir();
        let reference = open(ref_dir.path());
        if let Some(before) = &sc.before {
            ok(reference.execute(&o, before.clone()).await);
        }
        let old = look(&reference, &o).await;
        ok(reference.execute(&o, sc.op.clone()).await);
        let new = look(&reference, &o).await;
        assert_ne!(old, new, "{}: the op must change something", sc.name);
        drop(reference);

        for step in STEPS {
            let dir = tempdir();
            {
                let s = open(dir.path());
                if let Some(before) = &sc.before {
                    ok(s.execute(&o, before.clone()).await);
                }
            }
            let plan = FaultPlan::new(42).at(step, Trigger::Nth(1), Effect::Crash);
            let result = {
                let s = ok(LocalStore::open_with_faults(dir.path(), Some(Arc::clone(&plan))));
                s.execute(&o, sc.op.clone()).await
            };
            let crashed = plan.crashed();
            let reopened = open(dir.path());
            let seen = look(&reopened, &o).await;
            let outcome = if seen == old {
                "old"
            } else if seen == new {
                "new"
            } else {
                panic!("{} / crash at {step}: torn object {seen:?}", sc.name)
            };
            let committed = STEPS.iter().position(|s| *s == step) >= STEPS.iter().position(|s| *s == "local.committed");
            if !crashed {
                assert!(result.is_ok(), "{} / {step} not reached, so the write must succeed: {result:?}", sc.name);
                assert_eq!(outcome, "new", "{} / {step}", sc.name);
            } else {
                assert!(matches!(result, Err(StoreError::Crashed { .. })), "{} / {step}: {result:?}", sc.name);
                assert_eq!(outcome, if committed { "new" } else { "old" }, "{} / crash at {step}", sc.name);
            }
            // Reopening removed whatever the dead write left behind.
            let live = match &seen {
                Seen::Present { data, .. } if data.len() > INLINE_MAX => 1,
                _ => 0,
            };
            assert_eq!(data_files(dir.path()), live, "{} / {step}: orphan data files after reopen", sc.name);
            table.push(format!("{:<26} {:<24} {}", sc.name, step, if crashed { outcome } else { "not reached" }));
        }
    }
    println!("{}", table.join("\n"));
    assert_eq!(table.len(), scenarios().len() * STEPS.len());
}

const CHILD_ENV: &str = "CYVAULT_KILL9_CHILD_DIR";

fn child_object(i: u64) -> ObjectRef {
    ObjectRef::new("pool", "kill9", format!("k{i}"))
}

fn child_op(i: u64) -> WriteOp {
    // Alternate inline and file-backed objects so both paths are cut by the kill.
    let len = if i.is_multiple_of(2) { 100 + i as usize } else { INLINE_MAX + 1000 + i as usize };
    WriteOp::new()
        .guard(Guard::CreateExclusive)
        .write_full(pattern(len, i as u8))
        .set_xattr("seq", Bytes::from(i.to_string()))
        .omap_set_one("seq", Bytes::from(i.to_string()))
}

/// A child process writes and acknowledges (prints `ack N` after each write returned); the
/// parent kills it with SIGKILL mid-stream, reopens the store and finds every acknowledged write
/// complete, and the one in flight either complete or absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let s = open(Path::new(&dir));
        for i in 0.. {
            ok(s.execute(&child_object(i), child_op(i)).await);
            println!("ack {i}");
        }
        return;
    }
    let dir = tempdir();
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => panic!("current exe: {e}"),
    };
    let mut child = match Command::new(exe)
        .args(["--exact", "acknowledged_writes_survive_kill_9", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("spawn child writer: {e}"),
    };
    let stdout = child.stdout.take().map(BufReader::new);
    let mut acked: Option<u64> = None;
    let started = Instant::now();
    if let Some(out) = stdout {
        for line in out.lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("ack ").and_then(|n| n.trim().parse().ok()) {
                acked = Some(n);
            }
            if acked.is_some_and(|n| n >= 120) || started.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
    }
    // SIGKILL: no destructors, no flush, no goodbye.
    let _ = child.kill();
    let _ = child.wait();
    let acked = match acked {
        Some(n) => n,
        None => panic!("the child acknowledged no write"),
    };
    let s = open(dir.path());
    for i in 0..=acked {
        let o = child_object(i);
        let want = child_op(i);
        let r = ok(s.read(&o, ReadRange::Full).await);
        let cyvault_store::WriteStep::WriteFull(data) = &want.steps[0] else { unreachable!("op shape") };
        assert!(r.data == *data, "acknowledged write {i} lost or damaged after kill -9");
        assert_eq!(ok(s.xattr_get(&o, "seq").await), Bytes::from(i.to_string()));
        assert_eq!(ok(s.omap_get(&o, &["seq".into()]).await)["seq"], Bytes::from(i.to_string()));
    }
    // The write in flight at the kill is all or nothing.
    let inflight = child_object(acked + 1);
    match s.read(&inflight, ReadRange::Full).await {
        Err(StoreError::NotFound(_)) => {}
        r => {
            ok(r);
            assert_eq!(ok(s.xattr_get(&inflight, "seq").await), Bytes::from((acked + 1).to_string()));
        }
    }
    assert!(matches!(s.stat(&child_object(acked + 3)).await, Err(StoreError::NotFound(_))));
    println!("{} acknowledged writes survived kill -9", acked + 1);
}

/// Names never become paths: after storing hostile names, the directory holds only the
/// database and numbered data files, and nothing appeared beside it.
#[tokio::test]
async fn names_never_escape_the_directory() {
    let outer = tempdir();
    let dir = outer.path().join("store");
    let s = open(&dir);
    let long = "x".repeat(1024);
    let names =
        ["../../etc/passwd", "../outside", "/etc/shadow", "data/00/0000000000000001", "meta.redb", long.as_str()];
    for (i, name) in names.iter().enumerate() {
        let size = if i.is_multiple_of(2) { 10 } else { INLINE_MAX + 1 };
        ok(s.write_full(&ObjectRef::new("..", "../..", *name), pattern(size, 1)).await);
    }
    assert!(matches!(
        s.write_full(&ObjectRef::new("p", "", "nul\0"), Bytes::new()).await,
        Err(StoreError::InvalidArgument(_))
    ));
    let beside: Vec<PathBuf> =
        std::fs::read_dir(outer.path()).into_iter().flatten().flatten().map(|e| e.path()).collect();
    assert_eq!(beside, vec![dir.clone()], "nothing written beside the store");
    let mut unexpected = Vec::new();
    walk(&dir, &mut |p| {
        let rel = p.strip_prefix(&dir).map(|r| r.to_string_lossy().into_owned()).unwrap_or_default();
        let parts: Vec<&str> = rel.split('/').collect();
        let fine = match parts.as_slice() {
            ["meta.redb"] | ["data"] => true,
            ["data", sub] => sub.len() == 2,
            ["data", sub, file] => sub.len() == 2 && file.len() == 16 && file.chars().all(|c| c.is_ascii_hexdigit()),
            _ => false,
        };
        if !fine {
            unexpected.push(rel);
        }
    });
    assert!(unexpected.is_empty(), "unexpected paths in the store: {unexpected:?}");
    for name in names {
        assert!(ok(s.stat(&ObjectRef::new("..", "../..", name)).await).version > 0);
    }
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        f(&p);
        if p.is_dir() {
            walk(&p, f);
        }
    }
}

#[tokio::test]
async fn data_survives_reopen_and_a_second_opener_is_refused() {
    let dir = tempdir();
    let o = ObjectRef::new("p", "", "persist");
    let v = {
        let s = open(dir.path());
        let v = ok(s.execute(&o, full_op(INLINE_MAX * 2, 5, "x")).await);
        match LocalStore::open(dir.path()) {
            Err(StoreError::Busy(msg)) => assert!(msg.contains("open in another process"), "{msg}"),
            other => panic!("a second opener must be refused, got {other:?}"),
        }
        v
    };
    let s = open(dir.path());
    assert_eq!(ok(s.stat(&o).await).version, v);
    assert!(ok(s.read(&o, ReadRange::Full).await).data == pattern(INLINE_MAX * 2, 5));
    let v2 = ok(s.write_full(&o, Bytes::from_static(b"next")).await);
    assert!(v2 > v, "versions keep growing across reopen");
}

#[tokio::test]
async fn faulty_wrapper_fails_first_attempts_then_lets_retries_through() {
    let dir = tempdir();
    let plan = FaultPlan::new(7).at_object("execute", "flaky", Trigger::FirstN(2), Effect::Timeout);
    let s = FaultyStore::new(Arc::new(open(dir.path())), Arc::clone(&plan));
    let o = ObjectRef::new("p", "", "flaky-1");
    let mut attempts = 0;
    let v = loop {
        attempts += 1;
        match s.write_full(&o, Bytes::from_static(b"x")).await {
            Ok(v) => break v,
            Err(e) if !e.is_permanent() && attempts < 5 => continue,
            Err(e) => panic!("gave up: {e}"),
        }
    };
    assert_eq!(attempts, 3);
    assert!(v > 0);
    ok(s.write_full(&ObjectRef::new("p", "", "steady"), Bytes::new()).await);
    assert_eq!(plan.fired().len(), 2);
}

#[tokio::test]
async fn faulty_wrapper_can_apply_and_still_report_a_timeout() {
    let dir = tempdir();
    let plan = FaultPlan::new(7).at("execute", Trigger::Nth(1), Effect::ApplyThenTimeout);
    let s = FaultyStore::new(Arc::new(open(dir.path())), plan);
    let o = ObjectRef::new("p", "", "unknown-outcome");
    let r = s.execute(&o, WriteOp::new().guard(Guard::CreateExclusive).write_full(Bytes::from_static(b"1"))).await;
    assert!(matches!(r, Err(StoreError::Timeout(_))), "{r:?}");
    // The retry of an exclusive create now finds its own earlier write.
    let r = s.execute(&o, WriteOp::new().guard(Guard::CreateExclusive).write_full(Bytes::from_static(b"1"))).await;
    assert!(matches!(r, Err(StoreError::AlreadyExists(_))), "{r:?}");
    assert_eq!(ok(s.read(&o, ReadRange::Full).await).data, Bytes::from_static(b"1"));
}

#[tokio::test]
async fn faulty_wrapper_crash_stops_everything() {
    let dir = tempdir();
    let plan = FaultPlan::new(1).at("read", Trigger::Nth(2), Effect::Crash);
    let s = FaultyStore::new(Arc::new(open(dir.path())), Arc::clone(&plan));
    let o = ObjectRef::new("p", "", "c");
    ok(s.write_full(&o, Bytes::from_static(b"x")).await);
    ok(s.read(&o, ReadRange::Full).await);
    assert!(matches!(s.read(&o, ReadRange::Full).await, Err(StoreError::Crashed { .. })));
    assert!(matches!(s.write_full(&o, Bytes::new()).await, Err(StoreError::Crashed { .. })));
    assert!(plan.crashed());
}
