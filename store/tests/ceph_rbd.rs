//! The Ceph tier for RBD: the librbd wrapper against the project's dev cluster. Run by
//! `scripts/test`, which starts the cluster and exports `CYVAULT_CEPH_CONF`; without it every
//! test fails (never skips). Pools: `CYVAULT_RBD_POOL` (default `rbd`) and
//! `CYVAULT_RBD_DATA_POOL` (default `cyvault-rbd-data`).
//!
//! Each test names its images `<test>-<pid>-<nanos>-…` and removes them (snapshots and clones
//! included) when it ends, passed or failed.

mod common;

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use bytes::Bytes;
use cyvault_store::rbd::{CreateOptions, ParentSpec, Rbd, features};
use cyvault_store::{Cluster, RadosStore};
use futures::FutureExt;
use futures::future::join_all;

use common::{expect_err, ok};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

const NOT_FOUND: &str = "VAULT-ST-001";
const ALREADY_EXISTS: &str = "VAULT-ST-002";
const INVALID: &str = "VAULT-ST-004";
const BUSY: &str = "VAULT-ST-007";

fn rbd_pool() -> String {
    std::env::var("CYVAULT_RBD_POOL").unwrap_or_else(|_| "rbd".into())
}

fn data_pool() -> String {
    std::env::var("CYVAULT_RBD_DATA_POOL").unwrap_or_else(|_| "cyvault-rbd-data".into())
}

/// Asserts `got == want` without printing megabytes: says where they first differ.
#[track_caller]
fn same(got: Bytes, want: Bytes, what: &str) {
    if got != want {
        let at = got.iter().zip(want.iter()).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        panic!("{what}: got {} bytes, want {}; first difference at byte {at}", got.len(), want.len());
    }
}

/// Recognizable bytes: a different sequence for every seed.
fn pattern(len: u64, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed).wrapping_add((i >> 8) as u8))
            .collect::<Vec<_>>(),
    )
}

async fn connect() -> Rbd {
    let cluster = match Cluster::connect(&common::ceph_config()).await {
        Ok(c) => c,
        Err(e) => panic!("cannot connect to the test cluster: {e}"),
    };
    let pool = rbd_pool();
    match RadosStore::new(cluster).ioctx(&pool, "").await {
        Ok(io) => Rbd::new(io).unwrap_or_else(|e| panic!("{e}")),
        Err(e) => panic!("cannot open rbd pool {pool}: {e}"),
    }
}

/// Runs `body` with a connected [`Rbd`] and a unique name prefix, then removes every image
/// whose name starts with the prefix, whether `body` passed or panicked.
async fn scenario(tag: &str, body: impl AsyncFnOnce(&Rbd, &str)) {
    let rbd = connect().await;
    let prefix = common::unique(tag);
    let outcome = AssertUnwindSafe(body(&rbd, &prefix)).catch_unwind().await;
    let leftovers = cleanup(&rbd, &prefix).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(leftovers.is_empty(), "cleanup could not remove {leftovers:?}");
}

/// Removes the images with `prefix`: clones before parents (a parent with clones is busy),
/// snapshots before images, and retries while images closed in the background still show
/// watchers. Returns what it could not remove.
async fn cleanup(rbd: &Rbd, prefix: &str) -> Vec<String> {
    let mut left = Vec::new();
    for _ in 0..30 {
        left = match rbd.list().await {
            Ok(names) => names.into_iter().filter(|n| n.starts_with(prefix)).collect(),
            Err(e) => {
                eprintln!("cleanup: list: {e}");
                Vec::new()
            }
        };
        if left.is_empty() {
            break;
        }
        for name in &left {
            if let Ok(snaps) = rbd.snap_list(name).await {
                for s in snaps {
                    let _ = rbd.snap_remove(name, &s.name).await;
                }
            }
            let _ = rbd.remove(name).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    left
}

/// The lifecycle: create, write, snapshot, clone (v2, unprotected), read the clone,
/// resize, flatten, remove.
#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_create_write_snapshot_clone_resize_flatten_remove() {
    scenario("lifecycle", async |rbd, p| {
        let parent = format!("{p}-parent");
        let child = format!("{p}-child");
        ok(rbd.create(&parent, &CreateOptions::new(64 * MIB)).await);
        let info = ok(rbd.info(&parent).await);
        assert_eq!((info.size, info.object_size, info.order), (64 * MIB, 4 * MIB, 22), "{info:?}");
        assert_eq!(info.parent, None);
        assert_eq!(info.data_pool, None);
        assert_eq!(info.features & features::LAYERING, features::LAYERING, "{info:?}");

        // A pattern at several offsets: aligned, unaligned, across an object boundary, at the end.
        let writes: [(u64, u64); 5] = [
            (0, 4 * KIB),
            (4 * KIB + 512, 3000),
            (3 * MIB + 17, 5000),
            (4 * MIB - 100, 200),
            (64 * MIB - 4 * KIB, 4 * KIB),
        ];
        let img = ok(rbd.open(&parent).await);
        assert_eq!(ok(img.size().await), 64 * MIB);
        for (i, &(off, len)) in writes.iter().enumerate() {
            ok(img.write(off, pattern(len, i as u8)).await);
        }
        ok(img.flush().await);
        for (i, &(off, len)) in writes.iter().enumerate() {
            same(ok(img.read(off, len).await), pattern(len, i as u8), &format!("parent at {off}"));
        }

        ok(rbd.snap_create(&parent, "s1").await);
        let snaps = ok(rbd.snap_list(&parent).await);
        assert_eq!(snaps.len(), 1, "{snaps:?}");
        assert_eq!((snaps[0].name.as_str(), snaps[0].size), ("s1", 64 * MIB));

        // After the snapshot the parent moves on; the clone must not see this.
        ok(img.write(0, pattern(4 * KIB, 200)).await);
        ok(img.write(3 * MIB + 17, pattern(5000, 201)).await);
        ok(img.flush().await);

        let snap = ok(rbd.open_read_only(&parent, Some("s1")).await);
        assert!(snap.is_read_only());
        same(ok(snap.read(0, 4 * KIB).await), pattern(4 * KIB, 0), "the snapshot keeps the old data");
        ok(snap.close().await);

        ok(rbd.clone(&parent, "s1", &child, &CreateOptions::default()).await);
        let cinfo = ok(rbd.info(&child).await);
        assert_eq!(cinfo.size, 64 * MIB);
        assert_eq!(
            cinfo.parent,
            Some(ParentSpec { pool: rbd_pool(), namespace: String::new(), image: parent.clone(), snap: "s1".into() })
        );

        let c = ok(rbd.open(&child).await);
        for (i, &(off, len)) in writes.iter().enumerate() {
            same(ok(c.read(off, len).await), pattern(len, i as u8), &format!("clone at {off} shows the snapshot"));
        }
        same(ok(c.read(20 * MIB, 4 * KIB).await), Bytes::from(vec![0u8; 4096]), "never written reads as zeros");
        // ... and the parent still has its post-snapshot data.
        same(ok(img.read(0, 4 * KIB).await), pattern(4 * KIB, 200), "parent after the snapshot");
        // Writes to the clone stay in the clone.
        ok(c.write(4 * KIB + 512, pattern(3000, 77)).await);
        same(ok(c.read(4 * KIB + 512, 3000).await), pattern(3000, 77), "clone after its own write");
        same(ok(img.read(4 * KIB + 512, 3000).await), pattern(3000, 1), "parent untouched by the clone's write");

        // Grow (through another handle while this one is open), then shrink.
        ok(rbd.resize(&child, 128 * MIB).await);
        assert_eq!(ok(rbd.info(&child).await).size, 128 * MIB);
        assert_eq!(ok(c.size().await), 128 * MIB, "the open handle sees the new size");
        ok(c.write(100 * MIB, pattern(4 * KIB, 9)).await);
        same(ok(c.read(100 * MIB, 4 * KIB).await), pattern(4 * KIB, 9), "data");
        ok(c.resize(32 * MIB).await);
        assert_eq!(ok(rbd.info(&child).await).size, 32 * MIB);
        ok(c.close().await);

        ok(rbd.flatten(&child).await);
        let flat = ok(rbd.info(&child).await);
        assert_eq!((flat.parent, flat.size), (None, 32 * MIB));
        let c = ok(rbd.open(&child).await);
        same(ok(c.read(0, 4 * KIB).await), pattern(4 * KIB, 0), "flattened clone keeps the snapshot's data");
        same(ok(c.read(3 * MIB + 17, 5000).await), pattern(5000, 2), "data");
        same(ok(c.read(4 * KIB + 512, 3000).await), pattern(3000, 77), "data");
        ok(c.close().await);
        ok(img.close().await);

        // A clone with its own size and object size.
        let big = format!("{p}-big");
        ok(rbd
            .clone(&parent, "s1", &big, &CreateOptions { object_size: Some(MIB), ..CreateOptions::new(96 * MIB) })
            .await);
        let binfo = ok(rbd.info(&big).await);
        assert_eq!((binfo.size, binfo.object_size), (96 * MIB, MIB), "{binfo:?}");
        assert_eq!(binfo.parent.map(|p| p.to_string()), Some(format!("{}/{parent}@s1", rbd_pool())));
        let b = ok(rbd.open_read_only(&big, None).await);
        same(
            ok(b.read(3 * MIB + 17, 5000).await),
            pattern(5000, 2),
            "a clone with another object size reads the same data",
        );
        ok(b.close().await);
        ok(rbd.remove(&big).await);

        ok(rbd.snap_remove(&parent, "s1").await);
        assert!(ok(rbd.snap_list(&parent).await).is_empty());
        ok(rbd.remove(&child).await);
        ok(rbd.remove(&parent).await);
        let names = ok(rbd.list().await);
        assert!(!names.contains(&parent) && !names.contains(&child), "{names:?}");
        expect_err(rbd.info(&parent).await, NOT_FOUND);
    })
    .await;
}

/// Data in a separate pool, 1 MiB objects.
#[tokio::test(flavor = "multi_thread")]
async fn data_pool_and_object_size() {
    scenario("datapool", async |rbd, p| {
        let name = format!("{p}-img");
        let opts =
            CreateOptions { size: 16 * MIB, object_size: Some(MIB), data_pool: Some(data_pool()), features: None };
        ok(rbd.create(&name, &opts).await);
        let info = ok(rbd.info(&name).await);
        assert_eq!((info.size, info.object_size, info.order, info.num_objs), (16 * MIB, MIB, 20, 16), "{info:?}");
        assert_eq!(info.data_pool.as_deref(), Some(data_pool().as_str()));
        assert_ne!(info.features & features::DATA_POOL, 0, "librbd sets the data-pool feature: {info:?}");

        let img = ok(rbd.open(&name).await);
        ok(img.write(5 * MIB - 10, pattern(64 * KIB, 3)).await);
        ok(img.flush().await);
        same(ok(img.read(5 * MIB - 10, 64 * KIB).await), pattern(64 * KIB, 3), "data");
        assert_eq!(ok(img.info().await), info);
        ok(img.close().await);

        // Features chosen by the caller, without the default object map and friends.
        let plain = format!("{p}-plain");
        ok(rbd.create(&plain, &CreateOptions { features: Some(features::LAYERING), ..CreateOptions::new(MIB) }).await);
        assert_eq!(ok(rbd.info(&plain).await).features, features::LAYERING);

        let missing = CreateOptions { data_pool: Some(format!("{p}-no-such-pool")), ..CreateOptions::new(MIB) };
        let e = expect_err(rbd.create(&format!("{p}-bad"), &missing).await, NOT_FOUND);
        assert!(e.to_string().contains("create rbd image"), "{e}");
    })
    .await;
}

/// An open image shows a watcher; a closed one does not; an image open elsewhere is not removed.
#[tokio::test(flavor = "multi_thread")]
async fn watchers_show_whether_an_image_is_in_use() {
    scenario("watchers", async |rbd, p| {
        let name = format!("{p}-img");
        ok(rbd.create(&name, &CreateOptions::new(4 * MIB)).await);
        assert!(ok(rbd.watchers(&name).await).is_empty(), "nobody has it open");

        let img = ok(rbd.open(&name).await);
        let watchers = ok(rbd.watchers(&name).await);
        assert_eq!(watchers.len(), 1, "{watchers:?}");
        assert!(!watchers[0].addr.is_empty() && watchers[0].id > 0, "{watchers:?}");

        // librbd refuses to remove an image that has watchers (EBUSY), even ours.
        let e = expect_err(rbd.remove(&name).await, BUSY);
        assert!(e.to_string().contains("watchers"), "{e}");
        ok(rbd.info(&name).await);
        ok(img.write(0, pattern(4 * KIB, 1)).await);

        // A read-only open adds no watcher.
        let ro = ok(rbd.open_read_only(&name, None).await);
        assert_eq!(ok(rbd.watchers(&name).await).len(), 1);
        same(ok(ro.read(0, 4 * KIB).await), pattern(4 * KIB, 1), "data");
        let e = expect_err(ro.write(0, pattern(10, 0)).await, "VAULT-ST-014");
        assert!(e.to_string().contains("errno 30"), "writes to a read-only image fail with EROFS: {e}");
        ok(ro.close().await);

        ok(img.close().await);
        assert!(ok(rbd.watchers(&name).await).is_empty(), "closed: no watcher left");

        // Dropping instead of closing closes in the background.
        let img = ok(rbd.open(&name).await);
        assert_eq!(ok(rbd.watchers(&name).await).len(), 1);
        drop(img);
        let mut gone = false;
        for _ in 0..50 {
            if ok(rbd.watchers(&name).await).is_empty() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gone, "a dropped image is closed within 5 s");
        ok(rbd.remove(&name).await);
    })
    .await;
}

/// Missing images, duplicates, bad arguments, and I/O at the end of an image.
#[tokio::test(flavor = "multi_thread")]
async fn errors_map_to_store_errors() {
    scenario("errors", async |rbd, p| {
        let missing = format!("{p}-missing");
        expect_err(rbd.open(&missing).await, NOT_FOUND);
        expect_err(rbd.remove(&missing).await, NOT_FOUND);
        expect_err(rbd.info(&missing).await, NOT_FOUND);
        expect_err(rbd.resize(&missing, MIB).await, NOT_FOUND);
        expect_err(rbd.snap_create(&missing, "s").await, NOT_FOUND);
        expect_err(rbd.watchers(&missing).await, NOT_FOUND);

        let name = format!("{p}-img");
        ok(rbd.create(&name, &CreateOptions::new(MIB)).await);
        let e = expect_err(rbd.create(&name, &CreateOptions::new(MIB)).await, ALREADY_EXISTS);
        assert!(e.to_string().contains(&name), "{e}");
        ok(rbd.snap_create(&name, "s").await);
        expect_err(rbd.snap_create(&name, "s").await, ALREADY_EXISTS);
        expect_err(rbd.snap_remove(&name, "nope").await, NOT_FOUND);
        expect_err(rbd.clone(&name, "nope", &format!("{p}-c"), &CreateOptions::default()).await, NOT_FOUND);
        expect_err(rbd.open_read_only(&name, Some("nope")).await, NOT_FOUND);
        expect_err(rbd.clone(&name, "s", &name, &CreateOptions::default()).await, ALREADY_EXISTS);
        let e = expect_err(rbd.remove(&name).await, BUSY);
        assert!(e.to_string().contains("snapshots"), "{e}");
        ok(rbd.snap_remove(&name, "s").await);

        // Refused before librbd sees them.
        expect_err(rbd.create("", &CreateOptions::new(MIB)).await, INVALID);
        expect_err(rbd.create(&format!("{p}/x"), &CreateOptions::new(MIB)).await, INVALID);
        expect_err(rbd.snap_create(&name, "a@b").await, INVALID);
        let odd = CreateOptions { object_size: Some(3000), ..CreateOptions::new(MIB) };
        expect_err(rbd.create(&format!("{p}-odd"), &odd).await, INVALID);

        let img = ok(rbd.open(&name).await);
        ok(img.write(MIB - 100, pattern(100, 5)).await);
        same(ok(img.read(MIB - 100, 4 * KIB).await), pattern(100, 5), "short read at the end");
        assert_eq!(ok(img.read(MIB, 10).await), Bytes::new(), "empty at the end");
        assert_eq!(ok(img.read(2 * MIB, 10).await), Bytes::new(), "empty past the end");
        assert_eq!(ok(img.read(0, 0).await), Bytes::new());
        let e = expect_err(img.write(MIB - 100, pattern(4 * KIB, 6)).await, INVALID);
        assert!(e.to_string().contains("past the end"), "{e}");
        expect_err(img.write(MIB, pattern(1, 6)).await, INVALID);
        expect_err(img.discard(MIB - 10, 100).await, INVALID);
        same(ok(img.read(MIB - 100, 100).await), pattern(100, 5), "the refused write left nothing");
        expect_err(img.read(u64::MAX - 1, 10).await, INVALID);
        expect_err(img.read(0, 2 << 30).await, INVALID);
        // Discarding a range aligned to librbd's discard granularity (64 KiB) zeroes it.
        ok(img.write(0, pattern(64 * KIB, 8)).await);
        ok(img.discard(0, 64 * KIB).await);
        same(ok(img.read(0, 64 * KIB).await), Bytes::from(vec![0u8; 64 * 1024]), "discarded range reads as zeros");
        ok(img.close().await);
        ok(rbd.remove(&name).await);
    })
    .await;
}

/// 64 writes in flight at once on one image, then a flush, then all read back.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_async_io() {
    scenario("concurrent", async |rbd, p| {
        let name = format!("{p}-img");
        ok(rbd.create(&name, &CreateOptions::new(8 * MIB)).await);
        let img = ok(rbd.open(&name).await);
        // 68 KiB apart: distinct, spread over both objects, some across the 4 MiB boundary.
        let offset = |i: u64| i * 68 * KIB + 512;
        let writes = (0..64u64).map(|i| img.write(offset(i), pattern(4 * KIB, i as u8)));
        for r in join_all(writes).await {
            ok(r);
        }
        ok(img.flush().await);
        let reads = (0..64u64).map(|i| img.read(offset(i), 4 * KIB));
        for (i, r) in join_all(reads).await.into_iter().enumerate() {
            same(ok(r), pattern(4 * KIB, i as u8), &format!("write {i} at {}", offset(i as u64)));
        }
        ok(img.close().await);
    })
    .await;
}

/// I/O futures dropped while their requests are in flight: nothing breaks, the data either
/// landed or did not, and closing waits for those requests.
#[tokio::test(flavor = "multi_thread")]
async fn dropped_io_futures_are_safe() {
    scenario("dropped", async |rbd, p| {
        let name = format!("{p}-img");
        ok(rbd.create(&name, &CreateOptions::new(8 * MIB)).await);
        let img = ok(rbd.open(&name).await);
        for i in 0..32u64 {
            // One poll submits the request; the timeout then drops the future.
            let _ = tokio::time::timeout(Duration::ZERO, img.write(i * 128 * KIB, pattern(64 * KIB, i as u8))).await;
            let _ = tokio::time::timeout(Duration::ZERO, img.read(i * 128 * KIB, 64 * KIB)).await;
        }
        ok(img.close().await);
        assert!(ok(rbd.watchers(&name).await).is_empty());
        let img = ok(rbd.open(&name).await);
        for i in 0..32u64 {
            let got = ok(img.read(i * 128 * KIB, 64 * KIB).await);
            assert!(
                got == pattern(64 * KIB, i as u8) || got.iter().all(|&b| b == 0),
                "write {i} landed whole or not at all"
            );
        }
        drop(img);
    })
    .await;
}

/// Listing shows the images of the pool.
#[tokio::test(flavor = "multi_thread")]
async fn list_shows_created_images() {
    scenario("list", async |rbd, p| {
        let names: Vec<String> = (0..3).map(|i| format!("{p}-{i}")).collect();
        for n in &names {
            ok(rbd.create(n, &CreateOptions::new(MIB)).await);
        }
        let listed = ok(rbd.list().await);
        for n in &names {
            assert!(listed.contains(n), "{n} missing from {listed:?}");
        }
        let mine: Vec<&String> = listed.iter().filter(|n| n.starts_with(p)).collect();
        assert_eq!(mine, names.iter().collect::<Vec<_>>(), "sorted");
        ok(rbd.remove(&names[1]).await);
        let listed = ok(rbd.list().await);
        assert!(!listed.contains(&names[1]) && listed.contains(&names[0]) && listed.contains(&names[2]), "{listed:?}");
    })
    .await;
}
