//! The S3 core on the embedded backend (and through the fault-injecting wrapper): listings
//! against a model, and what a crash at each storage write of an upload leaves behind.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cyvault_gateway::data::Body;
use cyvault_gateway::get_object::GetInput;
use cyvault_gateway::index::ListQuery;
use cyvault_gateway::multipart::{CompletedPart, PartInput};
use cyvault_gateway::put_object::PutInput;
use cyvault_gateway::{GwError, Vault, VaultOptions};
use cyvault_store::{DynStore, Effect, FaultPlan, FaultyStore, LocalStore, Trigger};
use futures::{StreamExt, TryStreamExt};

const STRIPE: u64 = 64 * 1024;

fn opts() -> VaultOptions {
    VaultOptions { stripe_size: STRIPE, index_shards: 4, cache_ttl: Duration::ZERO, ..VaultOptions::default() }
}

fn local() -> (tempfile::TempDir, DynStore) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let store = LocalStore::open(dir.path()).unwrap_or_else(|e| panic!("open: {e}"));
    (dir, Arc::new(store))
}

async fn vault(store: DynStore) -> Arc<Vault> {
    Arc::new(Vault::open(store, opts()).await.unwrap_or_else(|e| panic!("open vault: {e}")))
}

fn body(data: Vec<u8>) -> Body {
    // Odd chunk sizes so stripes never line up with chunks.
    let chunks: Vec<Result<Bytes, GwError>> = data.chunks(7_777).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    futures::stream::iter(chunks).boxed()
}

fn payload(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

async fn get(v: &Arc<Vault>, bucket: &str, key: &str) -> Result<Vec<u8>, GwError> {
    let out = v.get_object("root", bucket, key, GetInput::default()).await?;
    let chunks: Vec<Bytes> = out.body.try_collect().await?;
    Ok(chunks.concat())
}

#[track_caller]
fn ok<T>(r: Result<T, GwError>) -> T {
    r.unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

/// S3 listing semantics over a sorted key set: the model the index is checked against.
fn model(keys: &BTreeSet<String>, q: &ListQuery) -> (Vec<String>, Vec<String>) {
    let (mut entries, mut prefixes) = (Vec::new(), Vec::<String>::new());
    for k in keys.iter().filter(|k| k.starts_with(&q.prefix)) {
        let rest = &k[q.prefix.len()..];
        match q.delimiter.as_deref().and_then(|d| rest.find(d).map(|p| (p, d.len()))) {
            Some((p, dl)) => {
                let cp = format!("{}{}", q.prefix, &rest[..p + dl]);
                if prefixes.last() != Some(&cp) {
                    prefixes.push(cp);
                }
            }
            None => entries.push(k.clone()),
        }
    }
    (entries, prefixes)
}

#[tokio::test]
async fn listing_matches_the_model_across_shards_and_pages() {
    let (_d, store) = local();
    let v = vault(store).await;
    ok(v.create_bucket("root", "list").await);
    let mut keys = BTreeSet::new();
    for a in ["a", "b", "photos", "z"] {
        for b in ["x", "y/1", "y/2", "y/3/deep", "ü", "sp ace"] {
            keys.insert(format!("{a}/{b}"));
        }
    }
    keys.extend(["top".to_string(), "photos".to_string(), "photos0".to_string(), "y/".to_string()]);
    for k in &keys {
        ok(v.put_object("root", "list", k, PutInput::default(), body(k.as_bytes().to_vec())).await);
    }
    let b = ok(v.bucket_for("root", "list").await);
    let cases: &[(&str, Option<&str>, usize)] = &[
        ("", None, 1000),
        ("", None, 3),
        ("", Some("/"), 1000),
        ("", Some("/"), 2),
        ("photos/", Some("/"), 1),
        ("photos", Some("/"), 1000),
        ("a/y", Some("/"), 1),
        ("nothing", Some("/"), 5),
        ("", Some("y/"), 4),
    ];
    for &(prefix, delimiter, max) in cases {
        let q = ListQuery {
            prefix: prefix.into(),
            delimiter: delimiter.map(String::from),
            start_after: None,
            max_keys: max,
        };
        let (want_e, want_p) = model(&keys, &q);
        let (mut got_e, mut got_p) = (Vec::new(), Vec::new());
        let mut after = None;
        for _ in 0..1000 {
            let page = ok(v.list_index(&b, &ListQuery { start_after: after.clone(), ..q.clone() }).await);
            assert!(page.entries.len() + page.common_prefixes.len() <= max, "{q:?}: page too big");
            got_e.extend(page.entries.into_iter().map(|(k, _)| k));
            got_p.extend(page.common_prefixes);
            if !page.truncated {
                break;
            }
            after = page.next_marker;
            assert!(after.is_some(), "{q:?}: truncated page without a marker");
        }
        assert_eq!((got_e, got_p), (want_e, want_p), "{q:?}");
    }
}

/// Where a crash can stop an overwrite of a 3.5-stripe object by a 4.5-stripe one.
/// (what, object name part, which write to that object, whether the new object is committed by
/// then, whether the PUT was acknowledged).
const CRASH_POINTS: &[(&str, &str, u64, bool, bool)] = &[
    ("first tail stripe", "cyv.t.", 1, false, false),
    ("pending index entry", "cyv.i.", 1, false, false),
    ("head commit", "cyv.h.", 1, false, false),
    ("settling the index entry", "cyv.i.", 2, true, true),
];

#[tokio::test]
async fn a_crash_at_any_write_of_an_overwrite_leaves_old_or_new_and_gc_reclaims_the_rest() {
    for &(what, object, nth, committed, acknowledged) in CRASH_POINTS {
        let (_d, inner) = local();
        let v = vault(inner.clone()).await;
        ok(v.create_bucket("root", "crash").await);
        let old = payload(1, (STRIPE * 7 / 2) as usize);
        let new = payload(2, (STRIPE * 9 / 2) as usize);
        ok(v.put_object("root", "crash", "k", PutInput::default(), body(old.clone())).await);
        let baseline = raw_count(&inner).await;

        let plan = FaultPlan::new(7).at_object("execute", object, Trigger::Nth(nth), Effect::Crash);
        let faulty: DynStore = Arc::new(FaultyStore::new(inner.clone(), plan.clone()));
        let vf = Arc::new(Vault::open_existing(faulty, opts()));
        let r = vf.put_object("root", "crash", "k", PutInput::default(), body(new.clone())).await;
        assert_eq!(r.is_ok(), acknowledged, "{what}: {r:?}");
        // The settling write happens in the background after the PUT returns.
        for _ in 0..100 {
            if plan.crashed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(plan.crashed(), "{what}: the crash point was never reached");

        // "Restart": a fresh vault on the same storage.
        let v = vault(inner.clone()).await;
        let got = ok(get(&v, "crash", "k").await);
        let want = if committed { &new } else { &old };
        assert!(
            got == *want,
            "{what}: read back {} bytes, not the {} object",
            got.len(),
            if committed { "new" } else { "old" }
        );
        // Before any repair, the listing already agrees with GET.
        let b = ok(v.bucket_for("root", "crash").await);
        let listed = ok(v.list_index(&b, &ListQuery { max_keys: 10, ..ListQuery::default() }).await);
        assert_eq!(listed.entries.len(), 1, "{what}");
        assert_eq!(listed.entries[0].1.size, want.len() as u64, "{what}: listing right after the crash");

        let rep = ok(v.gc(Duration::ZERO, Duration::ZERO, false).await);
        let listed = ok(v.list_index(&b, &ListQuery { max_keys: 10, ..ListQuery::default() }).await);
        assert_eq!(listed.entries.len(), 1, "{what}");
        assert_eq!(listed.entries[0].1.size, want.len() as u64, "{what}: the index must agree with the object");
        let after = raw_count(&inner).await;
        let tails_new = (new.len() as u64).div_ceil(STRIPE) - 1;
        let tails_old = (old.len() as u64).div_ceil(STRIPE) - 1;
        let expect = if committed { baseline - tails_old + tails_new } else { baseline };
        assert_eq!(after, expect, "{what}: raw objects after gc ({rep:?})");
        assert!(ok(get(&v, "crash", "k").await) == *want, "{what}: gc must not touch live data");
    }
}

#[tokio::test]
async fn multipart_composes_parts_without_copying_and_abort_cleans_up() {
    let (_d, inner) = local();
    let v = vault(inner.clone()).await;
    ok(v.create_bucket("root", "mpu").await);
    let before = raw_count(&inner).await;
    let up = ok(v.create_upload("root", "mpu", "big", Default::default()).await);
    let p1 = payload(3, 5 << 20);
    let p2 = payload(4, 100_000);
    let r1 = ok(v.upload_part("root", ("mpu", "big", &up), part(1), body(p1.clone())).await);
    let r2 = ok(v.upload_part("root", ("mpu", "big", &up), part(2), body(p2.clone())).await);
    let stripes_written = raw_count(&inner).await;
    // Too small a first part.
    let bad = v
        .complete_upload(
            "root",
            "mpu",
            "big",
            &up,
            vec![
                CompletedPart { number: 2, etag: r2.etag.clone() },
                CompletedPart { number: 1, etag: r1.etag.clone() },
            ],
            false,
        )
        .await;
    assert!(matches!(bad, Err(GwError::InvalidPartOrder)), "{bad:?}");
    let out = ok(v
        .complete_upload(
            "root",
            "mpu",
            "big",
            &up,
            vec![CompletedPart { number: 1, etag: r1.etag }, CompletedPart { number: 2, etag: r2.etag }],
            false,
        )
        .await);
    assert!(out.etag.ends_with("-2"), "{}", out.etag);
    let mut all = p1.clone();
    all.extend_from_slice(&p2);
    assert!(ok(get(&v, "mpu", "big").await) == all);
    // Complete added a head and an index shard entry, dropped the upload records, copied nothing.
    let after = raw_count(&inner).await;
    assert!(after <= stripes_written + 1, "complete must not copy stripes: {stripes_written} -> {after}");

    let up2 = ok(v.create_upload("root", "mpu", "gone", Default::default()).await);
    ok(v.upload_part("root", ("mpu", "gone", &up2), part(1), body(payload(5, 300_000))).await);
    ok(v.abort_upload("root", "mpu", "gone", &up2).await);
    assert_eq!(raw_count(&inner).await, after, "abort removes parts and records");
    let rep = ok(v.gc(Duration::ZERO, Duration::ZERO, true).await);
    assert_eq!(rep.orphan_objects_removed, 0, "nothing left to sweep: {rep:?}");
    assert!(before < after);
}

fn part(number: i32) -> PartInput {
    PartInput { number, ..PartInput::default() }
}

async fn raw_count(store: &DynStore) -> u64 {
    let mut n = 0;
    let mut token = None;
    loop {
        let page = store.list_objects("cyvault", "", token.as_deref(), 1000).await.unwrap_or_else(|e| panic!("{e}"));
        n += page.names.len() as u64;
        token = page.next;
        if token.is_none() {
            return n;
        }
    }
}

/// A PUT whose pending index write times out answers 503 after that one write, without trying
/// it again alone (which would double a wait already as long as the cluster's op timeout); a
/// client retry then succeeds. An error that may be the update's own (NoSpace) is retried alone
/// for its precise answer.
#[tokio::test]
async fn a_timed_out_index_write_is_answered_at_once_not_retried() {
    let (_d, inner) = local();
    let v = vault(inner.clone()).await;
    ok(v.create_bucket("root", "slow").await);
    let plan = FaultPlan::new(3).at_object("execute", "cyv.i.", Trigger::Nth(1), Effect::Timeout);
    let faulty: DynStore = Arc::new(FaultyStore::new(inner.clone(), plan.clone()));
    let vf = Arc::new(Vault::open_existing(faulty, opts()));
    let r = vf.put_object("root", "slow", "k", PutInput::default(), body(payload(1, 100))).await;
    let e = r.err().map(|e| e.to_s3().code().as_str().to_string()).unwrap_or_default();
    // Retried alone, the second write (which this plan lets through) would have acknowledged it.
    assert_eq!(e, "ServiceUnavailable", "a timed-out index write is a 503, not retried");
    ok(vf.put_object("root", "slow", "k", PutInput::default(), body(payload(1, 100))).await);

    let plan = FaultPlan::new(3).at_object("execute", "cyv.i.", Trigger::Nth(1), Effect::NoSpace);
    let faulty: DynStore = Arc::new(FaultyStore::new(inner.clone(), plan.clone()));
    let vf = Arc::new(Vault::open_existing(faulty, opts()));
    // The batch fails with NoSpace, the lone retry succeeds: the PUT is acknowledged.
    ok(vf.put_object("root", "slow", "k2", PutInput::default(), body(payload(2, 100))).await);
}

/// A Complete that wrote the head but died before dropping the upload's records left an upload
/// that looks open. Neither the sweeper (upload grace 0) nor a client's AbortMultipartUpload may
/// then delete the parts the head uses: the object stays whole; only the records go. (Found by
/// the kill -9 test on RADOS, where gc's abort had removed a completed object's parts.)
#[tokio::test]
async fn an_upload_completed_before_a_crash_is_not_aborted_out_from_under_its_object() {
    for by_client in [false, true] {
        let (_d, inner) = local();
        let v = vault(inner.clone()).await;
        ok(v.create_bucket("root", "mpu").await);
        let up = ok(v.create_upload("root", "mpu", "big", Default::default()).await);
        let (p1, p2) = (payload(6, 5 << 20), payload(7, 70_000));
        let r1 = ok(v.upload_part("root", ("mpu", "big", &up), part(1), body(p1.clone())).await);
        let r2 = ok(v.upload_part("root", ("mpu", "big", &up), part(2), body(p2.clone())).await);
        // The first write after the head commit is the removal of the parts record: crash there.
        let plan = FaultPlan::new(5).at_object("execute", "cyv.mpp.", Trigger::Nth(1), Effect::Crash);
        let faulty: DynStore = Arc::new(FaultyStore::new(inner.clone(), plan.clone()));
        let vf = Arc::new(Vault::open_existing(faulty, opts()));
        let parts = vec![CompletedPart { number: 1, etag: r1.etag }, CompletedPart { number: 2, etag: r2.etag }];
        let r = vf.complete_upload("root", "mpu", "big", &up, parts, false).await;
        assert!(plan.crashed(), "the crash point was reached ({r:?})");
        let mut whole = p1.clone();
        whole.extend_from_slice(&p2);
        // "Restarted": the object is there and the upload still listed.
        let v = vault(inner.clone()).await;
        assert!(ok(get(&v, "mpu", "big").await) == whole, "the head was committed");
        assert_eq!(ok(v.list_uploads("root", "mpu", "", None, None).await).len(), 1);
        if by_client {
            ok(v.abort_upload("root", "mpu", "big", &up).await);
        } else {
            let rep = ok(v.gc(Duration::ZERO, Duration::ZERO, false).await);
            assert_eq!(rep.uploads_aborted, 1, "{rep:?}");
        }
        assert!(ok(get(&v, "mpu", "big").await) == whole, "by_client={by_client}: the object lost its parts");
        assert!(ok(v.list_uploads("root", "mpu", "", None, None).await).is_empty());
        // And a second sweep finds nothing to remove: the parts belong to the head.
        let rep = ok(v.gc(Duration::ZERO, Duration::ZERO, false).await);
        assert_eq!((rep.orphan_objects_removed, rep.uploads_aborted), (0, 0), "{rep:?}");
        assert!(ok(get(&v, "mpu", "big").await) == whole);
    }
}
