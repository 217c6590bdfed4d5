//! One set of cases, run unchanged against every backend (local and RADOS): what the storage API
//! promises, whichever implementation is behind it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cyvault_store::{Guard, ObjectRef, ObjectStore, OmapQuery, ReadRange, WriteOp};

use super::{expect_err, ok};

/// Generates one `#[tokio::test]` per case for a backend. `$make` is an async expression giving
/// `(Arc<dyn ObjectStore>, pool, guard)`; the guard keeps temp dirs alive.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            read_write_full, ranges, stat_and_versions, write_at_offset_and_truncate, remove_semantics,
            xattrs, omap, omap_paging, compound_create_exclusive_is_atomic, version_guard_is_atomic,
            must_exist_guard, racing_cas_writers, list_pagination, hostile_names, large_objects,
            remove_clears_attributes, invalid_ops, read_with_xattrs_is_one_version, omap_cmp_is_atomic);
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, pool, _guard) = $make;
                $crate::common::conformance::$case(store, &pool, &$crate::common::unique(stringify!($case))).await;
            }
        )*
    };
}

type Store = Arc<dyn ObjectStore>;

fn obj(pool: &str, ns: &str, name: &str) -> ObjectRef {
    ObjectRef::new(pool, ns, name)
}

const NOT_FOUND: &str = "VAULT-ST-001";
const ALREADY_EXISTS: &str = "VAULT-ST-002";
const CONFLICT: &str = "VAULT-ST-003";
const INVALID: &str = "VAULT-ST-004";

fn pattern(len: usize, seed: u8) -> Bytes {
    Bytes::from((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<_>>())
}

pub async fn read_write_full(s: Store, pool: &str, ns: &str) {
    let o = obj(pool, ns, "a");
    expect_err(s.read(&o, ReadRange::Full).await, NOT_FOUND);
    let v1 = ok(s.write_full(&o, Bytes::from_static(b"hello world")).await);
    let r = ok(s.read(&o, ReadRange::Full).await);
    assert_eq!(r.data, Bytes::from_static(b"hello world"));
    assert_eq!(r.version, v1, "read reports the version the write returned");
    let v2 = ok(s.write_full(&o, Bytes::from_static(b"bye")).await);
    assert!(v2 > v1, "versions grow: {v1} then {v2}");
    assert_eq!(
        ok(s.read(&o, ReadRange::Full).await).data,
        Bytes::from_static(b"bye"),
        "write_full replaces, not overlays"
    );
    ok(s.write_full(&o, Bytes::new()).await);
    assert_eq!(ok(s.read(&o, ReadRange::Full).await).data.len(), 0);
}

pub async fn ranges(s: Store, pool: &str, ns: &str) {
    let o = obj(pool, ns, "r");
    ok(s.write_full(&o, Bytes::from_static(b"0123456789")).await);
    let read = |offset, len| {
        let s = Arc::clone(&s);
        let o = o.clone();
        async move { ok(s.read(&o, ReadRange::Range { offset, len }).await).data }
    };
    assert_eq!(read(0, 3).await, Bytes::from_static(b"012"));
    assert_eq!(read(7, 3).await, Bytes::from_static(b"789"));
    assert_eq!(read(7, 100).await, Bytes::from_static(b"789"), "short at the end");
    assert_eq!(read(10, 5).await, Bytes::new(), "empty at the end");
    assert_eq!(read(50, 5).await, Bytes::new(), "empty past the end");
    assert_eq!(read(3, 0).await, Bytes::new());
}

pub async fn stat_and_versions(s: Store, pool: &str, ns: &str) {
    let o = obj(pool, ns, "st");
    expect_err(s.stat(&o).await, NOT_FOUND);
    let before = SystemTime::now() - Duration::from_secs(2);
    let v = ok(s.write_full(&o, pattern(1000, 1)).await);
    let st = ok(s.stat(&o).await);
    assert_eq!(st.size, 1000);
    assert_eq!(st.version, v);
    assert!(st.mtime >= before && st.mtime <= SystemTime::now() + Duration::from_secs(2), "mtime is now-ish");
    let v2 = ok(s.xattr_set(&o, "k", Bytes::from_static(b"v")).await);
    assert!(v2 > v, "an xattr write bumps the version");
    let v3 = ok(s.omap_set(&o, BTreeMap::from([("k".to_string(), Bytes::from_static(b"v"))])).await);
    assert!(v3 > v2, "an omap write bumps the version");
    assert_eq!(ok(s.stat(&o).await).version, v3);
}

pub async fn write_at_offset_and_truncate(s: Store, pool: &str, ns: &str) {
    let o = obj(pool, ns, "w");
    ok(s.write(&o, 4, Bytes::from_static(b"xy")).await);
    assert_eq!(
        ok(s.read(&o, ReadRange::Full).await).data,
        Bytes::from_static(b"\0\0\0\0xy"),
        "gap is zero-filled, object created"
    );
    ok(s.write(&o, 1, Bytes::from_static(b"AB")).await);
    assert_eq!(ok(s.read(&o, ReadRange::Full).await).data, Bytes::from_static(b"\0AB\0xy"));
    ok(s.execute(&o, WriteOp::new().truncate(3)).await);
    assert_eq!(ok(s.read(&o, ReadRange::Full).await).data, Bytes::from_static(b"\0AB"));
    ok(s.execute(&o, WriteOp::new().truncate(5)).await);
    assert_eq!(ok(s.read(&o, ReadRange::Full).await).data, Bytes::from_static(b"\0AB\0\0"));
    // Steps apply in order within one op.
    ok(s.execute(
        &o,
        WriteOp::new().write_full(Bytes::from_static(b"abcdef")).write(2, Bytes::from_static(b"ZZ")).truncate(5),
    )
    .await);
    assert_eq!(ok(s.read(&o, ReadRange::Full).await).data, Bytes::from_static(b"abZZe"));
}

pub async fn remove_semantics(s: Store, pool: &str, ns: &str) {
    let o = obj(pool, ns, "rm");
    expect_err(s.remove(&o).await, NOT_FOUND);
    let v1 = ok(s.write_full(&o, Bytes::from_static(b"x")).await);
    ok(s.remove(&o).await);
    expect_err(s.stat(&o).await, NOT_FOUND);
    expect_err(s.remove(&o).await, NOT_FOUND);
    let v2 = ok(s.write_full(&o, Bytes::from_static(b"y")).await);
    assert!(v2 > v1, "a re-created object never reuses a version ({v1} then {v2})");
    // Guarded delete: only at the expected version.
    expect_err(s.execute(&o, WriteOp::new().guard(Guard::Version(v1)).remove()).await, CONFLICT);
    ok(s.execute(&o, WriteOp::new().guard(Guard::Version(v2)).remove()).await);
    expect_err(s.stat(&o).await, NOT_FOUND);
}

pub async fn xattrs(s: Store, pool: &str, ns: &str) {
    let o = obj(pool, ns, "x");
    expect_err(s.xattr_get(&o, "a").await, NOT_FOUND);
    expect_err(s.xattr_list(&o).await, NOT_FOUND);
    expect_err(s.xattr_remove(&o, "a").await, NOT_FOUND);
    ok(s.xattr_set(&o, "a", Bytes::from_static(b"1")).await);
    assert_eq!(ok(s.stat(&o).await).size, 0, "setting an xattr creates an empty object");
    ok(s.xattr_set(&o, "b", Bytes::from(vec![0u8, 255, 7])).await);
    ok(s.xattr_set(&o, "empty", Bytes::new()).await);
    assert_eq!(ok(s.xattr_get(&o, "b").await), Bytes::from(vec![0u8, 255, 7]), "binary values survive");
    expect_err(s.xattr_get(&o, "nope").await, NOT_FOUND);
    let all = ok(s.xattr_list(&o).await);
    assert_eq!(all.keys().cloned().collect::<Vec<_>>(), vec!["a", "b", "empty"]);
    assert_eq!(all["empty"], Bytes::new());
    ok(s.xattr_set(&o, "a", Bytes::from_static(b"2")).await);
    assert_eq!(ok(s.xattr_get(&o, "a").await), Bytes::from_static(b"2"));
    ok(s.xattr_remove(&o, "a").await);
    expect_err(s.xattr_get(&o, "a").await, NOT_FOUND);
    ok(s.xattr_remove(&o, "never-set").await);
    assert_eq!(ok(s.xattr_list(&o).await).len(), 2);
    ok(s.write_full(&o, Bytes::from_static(b"data")).await);
    assert_eq!(ok(s.xattr_list(&o).await).len(), 2, "write_full keeps xattrs");
}

pub async fn read_with_xattrs_is_one_version(s: Store, pool: &str, ns: &str) {
    let o = obj(pool, ns, "rx");
    expect_err(s.read_with_xattrs(&o, ReadRange::Full).await, NOT_FOUND);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let v =
        ok(s.execute(&o, WriteOp::new().write_full(big.clone()).set_xattr("meta", Bytes::from_static(b"m1"))).await);
    let (r, x) = ok(s.read_with_xattrs(&o, ReadRange::Full).await);
    assert_eq!((r.data.len(), r.version), (big.len(), v), "whole object across several reads");
    assert!(r.data[..] == big[..]);
    assert_eq!(x.get("meta"), Some(&Bytes::from_static(b"m1")));
    let (r, x) = ok(s.read_with_xattrs(&o, ReadRange::Range { offset: 100_000, len: 10 }).await);
    assert!(r.data[..] == big[100_000..100_010] && x.len() == 1, "a range with the xattrs");
    let (r, x) = ok(s.read_with_xattrs(&o, ReadRange::Range { offset: 0, len: 0 }).await);
    assert!(r.data.is_empty() && r.version == v && x.contains_key("meta"), "metadata only");
    let (r, _) = ok(s.read_with_xattrs(&o, ReadRange::Range { offset: 400_000, len: 10 }).await);
    assert!(r.data.is_empty(), "past the end reads nothing");
}

pub async fn omap_cmp_is_atomic(s: Store, pool: &str, ns: &str) {
    let o = obj(pool, ns, "cmp");
    ok(s.omap_set(&o, BTreeMap::from([("k".to_string(), Bytes::from_static(b"v1"))])).await);
    // Holds: applied with the rest of the op.
    ok(s.execute(
        &o,
        WriteOp::new().omap_cmp("k", Bytes::from_static(b"v1")).omap_set_one("k", Bytes::from_static(b"v2")),
    )
    .await);
    // No longer holds: nothing of the op is applied.
    let op = WriteOp::new()
        .omap_cmp("k", Bytes::from_static(b"v1"))
        .omap_set_one("k", Bytes::from_static(b"v3"))
        .omap_set_one("other", Bytes::from_static(b"x"));
    expect_err(s.execute(&o, op).await, "VAULT-ST-003");
    // A missing key never matches.
    expect_err(
        s.execute(&o, WriteOp::new().omap_cmp("absent", Bytes::from_static(b"v1")).omap_remove(vec!["k".into()])).await,
        "VAULT-ST-003",
    );
    let all = ok(s.omap_get(&o, &["k".to_string(), "other".to_string()]).await);
    assert_eq!(all, BTreeMap::from([("k".to_string(), Bytes::from_static(b"v2"))]));
    // Several comparisons in one op: all must hold.
    ok(s.omap_set(&o, BTreeMap::from([("a".to_string(), Bytes::from_static(b"1"))])).await);
    let both = WriteOp::new()
        .omap_cmp("k", Bytes::from_static(b"v2"))
        .omap_cmp("a", Bytes::from_static(b"1"))
        .omap_remove(vec!["k".into(), "a".into()]);
    ok(s.execute(&o, both).await);
    assert!(ok(s.omap_get(&o, &["k".to_string(), "a".to_string()]).await).is_empty());
}

fn keys(entries: &[(String, Bytes)]) -> Vec<&str> {
    entries.iter().map(|(k, _)| k.as_str()).collect()
}

pub async fn omap(s: Store, pool: &str, ns: &str) {
    let o = obj(pool, ns, "m");
    expect_err(s.omap_get(&o, &["a".into()]).await, NOT_FOUND);
    expect_err(s.omap_list(&o, &OmapQuery { max: 10, ..OmapQuery::default() }).await, NOT_FOUND);
    let entries: BTreeMap<String, Bytes> =
        ["b/1", "a/2", "a/1", "c", "a/3"].iter().map(|k| (k.to_string(), Bytes::from(format!("v-{k}")))).collect();
    ok(s.omap_set(&o, entries).await);
    let got = ok(s.omap_get(&o, &["a/1".into(), "zz".into(), "c".into()]).await);
    assert_eq!(
        got,
        BTreeMap::from([("a/1".into(), Bytes::from("v-a/1")), ("c".into(), Bytes::from("v-c"))]),
        "missing keys are left out"
    );
    let all = ok(s.omap_list(&o, &OmapQuery { max: 100, ..OmapQuery::default() }).await);
    assert_eq!(keys(&all.entries), vec!["a/1", "a/2", "a/3", "b/1", "c"], "key order");
    assert!(!all.more);
    let a = ok(s.omap_list(&o, &OmapQuery { prefix: Some("a/".into()), max: 100, ..OmapQuery::default() }).await);
    assert_eq!(keys(&a.entries), vec!["a/1", "a/2", "a/3"]);
    let after =
        ok(s.omap_list(&o, &OmapQuery { start_after: Some("a/1".into()), prefix: Some("a/".into()), max: 100 }).await);
    assert_eq!(keys(&after.entries), vec!["a/2", "a/3"]);
    let page =
        ok(s.omap_list(&o, &OmapQuery { start_after: Some("a/2".into()), max: 2, ..OmapQuery::default() }).await);
    assert_eq!(keys(&page.entries), vec!["a/3", "b/1"]);
    assert!(page.more, "more keys follow");
    let none =
        ok(s.omap_list(&o, &OmapQuery { start_after: Some("zzz".into()), max: 5, ..OmapQuery::default() }).await);
    assert!(none.entries.is_empty() && !none.more);
    ok(s.omap_remove(&o, &["a/2".into(), "not-there".into()]).await);
    let all = ok(s.omap_list(&o, &OmapQuery { max: 100, ..OmapQuery::default() }).await);
    assert_eq!(keys(&all.entries), vec!["a/1", "a/3", "b/1", "c"]);
    ok(s.execute(&o, WriteOp::new().omap_clear()).await);
    assert!(ok(s.omap_list(&o, &OmapQuery { max: 100, ..OmapQuery::default() }).await).entries.is_empty());
    expect_err(s.omap_remove(&obj(pool, ns, "m-missing"), &["a".into()]).await, NOT_FOUND);
}

pub async fn omap_paging(s: Store, pool: &str, ns: &str) {
    let o = obj(pool, ns, "mp");
    let entries: BTreeMap<String, Bytes> =
        (0..250).map(|i| (format!("k{i:04}"), Bytes::from(vec![i as u8; i % 7]))).collect();
    ok(s.omap_set(&o, entries.clone()).await);
    let mut seen = Vec::new();
    let mut start_after = None;
    loop {
        let page = ok(s.omap_list(&o, &OmapQuery { start_after: start_after.clone(), prefix: None, max: 33 }).await);
        assert!(page.entries.len() <= 33);
        start_after = page.entries.last().map(|(k, _)| k.clone());
        seen.extend(page.entries);
        if !page.more {
            break;
        }
    }
    assert_eq!(seen, entries.into_iter().collect::<Vec<_>>());
}

pub async fn compound_create_exclusive_is_atomic(s: Store, pool: &str, ns: &str) {
    let o = obj(pool, ns, "cx");
    let create = |data: &'static [u8], tag: &'static str| {
        WriteOp::new()
            .guard(Guard::CreateExclusive)
            .write_full(Bytes::from_static(data))
            .set_xattr("tag", Bytes::from_static(tag.as_bytes()))
            .omap_set_one("owner", Bytes::from_static(tag.as_bytes()))
    };
    let v = ok(s.execute(&o, create(b"first", "one")).await);
    expect_err(s.execute(&o, create(b"second", "two")).await, ALREADY_EXISTS);
    assert_eq!(ok(s.read(&o, ReadRange::Full).await).data, Bytes::from_static(b"first"));
    assert_eq!(ok(s.xattr_get(&o, "tag").await), Bytes::from_static(b"one"));
    assert_eq!(ok(s.omap_get(&o, &["owner".into()]).await)["owner"], Bytes::from_static(b"one"));
    assert_eq!(ok(s.stat(&o).await).version, v, "the refused op changed nothing");
}

pub async fn version_guard_is_atomic(s: Store, pool: &str, ns: &str) {
    let o = obj(pool, ns, "vg");
    let v1 = ok(s.write_full(&o, Bytes::from_static(b"one")).await);
    let v2 = ok(s
        .execute(
            &o,
            WriteOp::new()
                .guard(Guard::Version(v1))
                .write_full(Bytes::from_static(b"two"))
                .set_xattr("n", Bytes::from_static(b"2")),
        )
        .await);
    assert!(v2 > v1);
    let stale = WriteOp::new()
        .guard(Guard::Version(v1))
        .write_full(Bytes::from_static(b"three"))
        .set_xattr("n", Bytes::from_static(b"3"))
        .omap_set_one("k", Bytes::from_static(b"3"));
    expect_err(s.execute(&o, stale).await, CONFLICT);
    assert_eq!(ok(s.read(&o, ReadRange::Full).await).data, Bytes::from_static(b"two"));
    assert_eq!(ok(s.xattr_get(&o, "n").await), Bytes::from_static(b"2"));
    assert!(ok(s.omap_get(&o, &["k".into()]).await).is_empty(), "no step of a refused op applied");
    expect_err(
        s.execute(&obj(pool, ns, "vg-missing"), WriteOp::new().guard(Guard::Version(v2)).write_full(Bytes::new()))
            .await,
        NOT_FOUND,
    );
    expect_err(s.stat(&obj(pool, ns, "vg-missing")).await, NOT_FOUND);
}

pub async fn must_exist_guard(s: Store, pool: &str, ns: &str) {
    let o = obj(pool, ns, "me");
    expect_err(s.execute(&o, WriteOp::new().guard(Guard::MustExist).set_xattr("a", Bytes::new())).await, NOT_FOUND);
    expect_err(s.stat(&o).await, NOT_FOUND);
    ok(s.write_full(&o, Bytes::from_static(b"x")).await);
    ok(s.execute(&o, WriteOp::new().guard(Guard::MustExist).set_xattr("a", Bytes::new())).await);
}

/// N tasks read the same version, then all try to swap; per round exactly one wins and the
/// others see `Conflict`. The counter in the object ends equal to the number of rounds.
pub async fn racing_cas_writers(s: Store, pool: &str, ns: &str) {
    const TASKS: usize = 8;
    const ROUNDS: usize = 12;
    let o = obj(pool, ns, "cas");
    ok(s.write_full(&o, Bytes::from_static(b"0")).await);
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let (s, o, barrier) = (Arc::clone(&s), o.clone(), Arc::clone(&barrier));
        handles.push(tokio::spawn(async move {
            let mut wins = Vec::new();
            for round in 0..ROUNDS {
                let cur = ok(s.read(&o, ReadRange::Full).await);
                let n: usize = String::from_utf8_lossy(&cur.data).parse().unwrap_or(usize::MAX);
                assert_eq!(n, round, "task {t} sees the counter of the previous round");
                barrier.wait().await;
                let next = Bytes::from((n + 1).to_string());
                let r = s.execute(&o, WriteOp::new().guard(Guard::Version(cur.version)).write_full(next)).await;
                match r {
                    Ok(_) => wins.push(round),
                    Err(e) if e.code() == CONFLICT => {}
                    Err(e) => panic!("task {t} round {round}: {e}"),
                }
                // Everyone has tried before anyone reads the next round.
                barrier.wait().await;
            }
            wins
        }));
    }
    let mut per_round = vec![0usize; ROUNDS];
    for h in handles {
        for round in h.await.unwrap_or_default() {
            per_round[round] += 1;
        }
    }
    assert_eq!(per_round, vec![1; ROUNDS], "exactly one winner per round");
    assert_eq!(ok(s.read(&o, ReadRange::Full).await).data, Bytes::from(ROUNDS.to_string()));
}

pub async fn list_pagination(s: Store, pool: &str, ns: &str) {
    let mut names: BTreeSet<String> = (0..60).map(|i| format!("obj-{i:03}")).collect();
    names.insert("../../etc/passwd".into());
    names.insert("with space and ünïcödé".into());
    names.insert("x".repeat(1024));
    for n in &names {
        ok(s.write_full(&obj(pool, ns, n), Bytes::from_static(b"1")).await);
    }
    // Another namespace of the same pool is not listed.
    ok(s.write_full(&obj(pool, &format!("{ns}-other"), "obj-000"), Bytes::new()).await);
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = ok(s.list_objects(pool, ns, token.as_deref(), 7).await);
        assert!(page.names.len() <= 7);
        seen.extend(page.names);
        pages += 1;
        assert!(pages < 100, "listing does not terminate");
        match page.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let seen_set: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), seen_set.len(), "no name twice");
    assert_eq!(seen_set, names);
    expect_err(s.list_objects(pool, ns, Some("garbage"), 7).await, INVALID);
}

pub async fn hostile_names(s: Store, pool: &str, ns: &str) {
    for name in ["../../etc/passwd", "/absolute", "a/../../b", ".", "..", "line\nbreak", "\u{7f}\u{1}"] {
        let o = obj(pool, ns, name);
        ok(s.write_full(&o, Bytes::from(name.to_owned())).await);
        assert_eq!(ok(s.read(&o, ReadRange::Full).await).data, Bytes::from(name.to_owned()), "name {name:?}");
    }
    let long = "n".repeat(1024);
    ok(s.write_full(&obj(pool, ns, &long), Bytes::from_static(b"long")).await);
    assert_eq!(ok(s.read(&obj(pool, ns, &long), ReadRange::Full).await).data, Bytes::from_static(b"long"));
    expect_err(s.write_full(&obj(pool, ns, "nul\0byte"), Bytes::new()).await, INVALID);
    expect_err(s.write_full(&obj(pool, ns, ""), Bytes::new()).await, INVALID);
    expect_err(s.write_full(&obj(pool, ns, &"n".repeat(4096)), Bytes::new()).await, INVALID);
    expect_err(s.xattr_set(&obj(pool, ns, "ok"), "bad\0key", Bytes::new()).await, INVALID);
    expect_err(s.stat(&obj(pool, ns, "ok")).await, NOT_FOUND);
}

pub async fn large_objects(s: Store, pool: &str, ns: &str) {
    let o = obj(pool, ns, "big");
    let data = pattern(300 * 1024 + 17, 9);
    let v = ok(s.write_full(&o, data.clone()).await);
    let r = ok(s.read(&o, ReadRange::Full).await);
    assert_eq!(r.data.len(), data.len());
    assert!(r.data == data, "whole read of a large object");
    assert_eq!(r.version, v);
    let mid = ok(s.read(&o, ReadRange::Range { offset: 100_000, len: 150_000 }).await);
    assert!(mid.data == data.slice(100_000..250_000), "range read across the first-chunk boundary");
    ok(s.write(&o, 200_000, Bytes::from_static(b"PATCH")).await);
    let r = ok(s.read(&o, ReadRange::Range { offset: 199_998, len: 9 }).await);
    let mut want = data.slice(199_998..200_000).to_vec();
    want.extend_from_slice(b"PATCH");
    want.extend_from_slice(&data[200_005..200_007]);
    assert_eq!(r.data.as_ref(), want.as_slice());
    ok(s.write_full(&o, Bytes::from_static(b"small again")).await);
    assert_eq!(ok(s.read(&o, ReadRange::Full).await).data, Bytes::from_static(b"small again"));
}

pub async fn remove_clears_attributes(s: Store, pool: &str, ns: &str) {
    let o = obj(pool, ns, "rc");
    ok(s.execute(
        &o,
        WriteOp::new()
            .write_full(Bytes::from_static(b"x"))
            .set_xattr("a", Bytes::new())
            .omap_set_one("k", Bytes::new()),
    )
    .await);
    ok(s.remove(&o).await);
    ok(s.write_full(&o, Bytes::from_static(b"y")).await);
    assert!(ok(s.xattr_list(&o).await).is_empty());
    assert!(ok(s.omap_list(&o, &OmapQuery { max: 10, ..OmapQuery::default() }).await).entries.is_empty());
}

pub async fn invalid_ops(s: Store, pool: &str, ns: &str) {
    let o = obj(pool, ns, "inv");
    expect_err(s.execute(&o, WriteOp::new()).await, INVALID);
    expect_err(s.execute(&o, WriteOp::new().remove().write_full(Bytes::new())).await, INVALID);
    expect_err(s.stat(&o).await, NOT_FOUND);
    expect_err(s.write_full(&ObjectRef::new("", ns, "x"), Bytes::new()).await, INVALID);
}
