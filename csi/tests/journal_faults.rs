//! The idempotency journal under injected faults, in-process: a `Driver` on the local backend
//! (volumes as files in a temp dir) whose journal is a `FaultyStore` over a `LocalStore`, and
//! `ControllerService::create_volume` / `delete_volume` called directly.
//!
//! Each test breaks one step of a create or delete (the journal write, the image operation, or
//! the whole process at a step) and then retries the same call, as the external-provisioner
//! does. Afterwards there is never an image no journal record names, nor a journal entry whose
//! volume is gone: exactly the images of ready records exist, and the omap holds exactly their
//! keys.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use cyvault_csi::controller::ControllerService;
use cyvault_csi::driver::{Backing, Driver, Mode, NodeSettings};
use cyvault_csi::error::CsiError;
use cyvault_csi::journal::{Journal, Record, SNAPSHOTS_OBJECT, State, VOLUMES_OBJECT};
use cyvault_csi::volumes::{FileVolumes, VResult, Volumes};
use cyvault_proto::csi::v1 as pb;
use cyvault_store::{DynStore, Effect, FaultPlan, FaultyStore, LocalStore, ObjectRef, OmapQuery, StoreError, Trigger};
use tonic::Code;

const JOURNAL_POOL: &str = "csi";
const NAMESPACE: &str = "cyvault-csi";
const POOL: &str = "rbd";
const MIB: i64 = 1 << 20;

/// Volumes whose next `create` / `remove` calls fail (before touching anything), as a process
/// dying before the image exists or before it is gone.
#[derive(Debug)]
struct Flaky {
    inner: FileVolumes,
    fail_create: AtomicU32,
    fail_remove: AtomicU32,
}

fn take(counter: &AtomicU32) -> bool {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

#[async_trait]
impl Volumes for Flaky {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn create(&self, pool: &str, image: &str, size: u64, features: Option<u64>) -> VResult<()> {
        if take(&self.fail_create) {
            return Err(StoreError::Unavailable(format!("injected: {image} was not created")));
        }
        self.inner.create(pool, image, size, features).await
    }
    async fn copy(&self, pool: &str, source: &str, image: &str, size: u64) -> VResult<()> {
        if take(&self.fail_create) {
            return Err(StoreError::Unavailable(format!("injected: {image} was not copied")));
        }
        self.inner.copy(pool, source, image, size).await
    }
    async fn remove(&self, pool: &str, image: &str) -> VResult<()> {
        if take(&self.fail_remove) {
            return Err(StoreError::Unavailable(format!("injected: {image} was not removed")));
        }
        self.inner.remove(pool, image).await
    }
    async fn resize(&self, pool: &str, image: &str, size: u64) -> VResult<()> {
        self.inner.resize(pool, image, size).await
    }
    async fn size(&self, pool: &str, image: &str) -> VResult<Option<u64>> {
        self.inner.size(pool, image).await
    }
    async fn in_use(&self, pool: &str, image: &str) -> VResult<bool> {
        self.inner.in_use(pool, image).await
    }
    async fn list(&self, pool: &str) -> VResult<Vec<String>> {
        self.inner.list(pool).await
    }
    async fn available(&self, pool: &str) -> VResult<u64> {
        self.inner.available(pool).await
    }
    async fn probe(&self) -> VResult<()> {
        self.inner.probe().await
    }
}

/// One driver process: its dirs, the journal store without faults (for checking), the plan, the
/// flaky volumes and the controller.
struct Harness {
    dir: tempfile::TempDir,
    store: DynStore,
    plan: Arc<FaultPlan>,
    flaky: Arc<Flaky>,
    ctl: ControllerService,
}

impl Harness {
    fn new(plan: Arc<FaultPlan>) -> Harness {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        Harness::open(dir, plan)
    }

    /// Opens the journal in `dir` (after a previous "process" let go of it).
    fn open(dir: tempfile::TempDir, plan: Arc<FaultPlan>) -> Harness {
        let local = LocalStore::open(dir.path().join("journal")).unwrap_or_else(|e| panic!("open the journal: {e}"));
        let store: DynStore = Arc::new(local);
        let faulty: DynStore = Arc::new(FaultyStore::new(store.clone(), plan.clone()));
        let files = FileVolumes::new(dir.path().join("volumes"));
        let flaky =
            Arc::new(Flaky { inner: files.clone(), fail_create: AtomicU32::new(0), fail_remove: AtomicU32::new(0) });
        let driver = Driver::new(
            Mode::Controller,
            flaky.clone(),
            faulty,
            JOURNAL_POOL,
            NAMESPACE,
            POOL.into(),
            None,
            Backing::Files(files),
            NodeSettings {
                node_id: "node-1".into(),
                state_dir: dir.path().join("state"),
                max_volumes: 8,
                topology: HashMap::new(),
            },
        );
        Harness { dir, store, plan, flaky, ctl: ControllerService { driver: Arc::new(driver) } }
    }

    /// The process dies and starts again on the same dirs, with no faults.
    fn restart(self) -> Harness {
        let Harness { dir, store, plan, flaky, ctl } = self;
        drop((store, plan, flaky, ctl));
        Harness::open(dir, FaultPlan::new(0))
    }

    fn pool_dir(&self) -> PathBuf {
        self.dir.path().join("volumes").join("pools").join(POOL)
    }

    /// Every file in the pool directory (images and anything else left there).
    fn files(&self) -> BTreeSet<String> {
        match std::fs::read_dir(self.pool_dir()) {
            Ok(entries) => entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => panic!("list {}: {e}", self.pool_dir().display()),
        }
    }

    fn journal(&self, object: &str) -> Journal {
        Journal::new(self.store.clone(), JOURNAL_POOL, NAMESPACE, object)
    }

    async fn records(&self, object: &str) -> Vec<Record> {
        self.journal(object).list(None, 1000).await.unwrap_or_else(|e| panic!("list the journal: {e}")).0
    }

    async fn record(&self, name: &str) -> Option<Record> {
        self.journal(VOLUMES_OBJECT).by_name(name).await.unwrap_or_else(|e| panic!("read the journal: {e}")).1
    }

    /// Every omap key of a journal object, straight from the store.
    async fn omap_keys(&self, object: &str) -> BTreeSet<String> {
        let q = OmapQuery { start_after: None, prefix: None, max: 10_000 };
        match self.store.omap_list(&ObjectRef::new(JOURNAL_POOL, NAMESPACE, object), &q).await {
            Ok(page) => {
                assert!(!page.more);
                page.entries.into_iter().map(|(k, _)| k).collect()
            }
            Err(StoreError::NotFound(_)) => BTreeSet::new(),
            Err(e) => panic!("list the omap of {object}: {e}"),
        }
    }

    async fn create(&self, req: &pb::CreateVolumeRequest) -> Result<pb::Volume, CsiError> {
        self.ctl.create_volume(req.clone()).await
    }

    /// The invariant: the volume images are exactly those of the ready records (`names` →
    /// record), the omap holds exactly their `n.` and `i.` keys, and nothing else is in the pool
    /// directory.
    async fn assert_consistent(&self, names: &[&str]) -> BTreeMap<String, Record> {
        let mut by_name = BTreeMap::new();
        let mut want_files = BTreeSet::new();
        let mut want_keys = BTreeSet::new();
        for name in names {
            let rec = self.record(name).await.unwrap_or_else(|| panic!("no journal record for {name}"));
            assert_eq!(rec.state, State::Ready, "{name}: {rec:?}");
            want_files.insert(format!("csi-vol-{}.img", rec.uuid));
            want_keys.insert(format!("n.{name}"));
            want_keys.insert(format!("i.{}", rec.uuid));
            by_name.insert((*name).to_owned(), rec);
        }
        assert_eq!(self.files(), want_files, "images in the pool (fired: {:?})", self.plan.fired());
        assert_eq!(self.omap_keys(VOLUMES_OBJECT).await, want_keys, "journal keys");
        let listed: BTreeSet<String> = self.records(VOLUMES_OBJECT).await.into_iter().map(|r| r.name).collect();
        assert_eq!(listed, names.iter().map(|n| (*n).to_owned()).collect(), "Journal::list");
        by_name
    }
}

fn req(name: &str, bytes: i64) -> pb::CreateVolumeRequest {
    use pb::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
    pb::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(pb::CapacityRange { required_bytes: bytes, limit_bytes: 0 }),
        volume_capabilities: vec![pb::VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume { fs_type: "ext4".into(), ..Default::default() })),
            access_mode: Some(AccessMode { mode: Mode::SingleNodeWriter as i32 }),
        }],
        ..Default::default()
    }
}

#[track_caller]
fn failed<T: std::fmt::Debug>(r: Result<T, CsiError>, code: Code, what: &str) -> CsiError {
    match r {
        Ok(v) => panic!("{what}: expected {code:?}, got {v:?}"),
        Err(e) => {
            assert_eq!(e.grpc_code(), code, "{what}: {e}");
            e
        }
    }
}

#[track_caller]
fn ok<T>(r: Result<T, CsiError>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn uuid_of(id: &str) -> &str {
    id.rsplit(':').next().unwrap_or_default()
}

fn image_file(uuid: &str) -> String {
    format!("csi-vol-{uuid}.img")
}

/// The k-th write (1-based) of the volumes journal object.
fn journal_write(n: u64, effect: Effect) -> Arc<FaultPlan> {
    FaultPlan::new(5).at_object("execute", VOLUMES_OBJECT, Trigger::Nth(n), effect)
}

/// (a) The write marking the volume ready fails: the call errors, the record stays `creating`
/// with its image made; the retry finishes the same volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_write_fails_then_retry_finishes_the_same_volume() {
    let h = Harness::new(journal_write(2, Effect::Timeout));
    let r = req("pvc-a", 64 * MIB);
    failed(h.create(&r).await, Code::Unavailable, "create with the ready write failing");
    let rec = h.record("pvc-a").await.unwrap_or_else(|| panic!("no record after the failed create"));
    assert_eq!(rec.state, State::Creating);
    assert_eq!(h.files(), BTreeSet::from([image_file(&rec.uuid)]), "the image was made before the ready write");

    let vol = ok(h.create(&r).await, "retry");
    assert_eq!(uuid_of(&vol.volume_id), rec.uuid, "the retry finished the recorded volume");
    assert_eq!(vol.volume_id, rec.id);
    assert_eq!(vol.capacity_bytes, 64 * MIB);
    let again = ok(h.create(&r).await, "third call");
    assert_eq!(again.volume_id, vol.volume_id);
    h.assert_consistent(&["pvc-a"]).await;
    assert_eq!(h.plan.fired().len(), 1, "{:?}", h.plan.fired());
}

/// (a) The ready write was applied but its answer was lost: the retry answers the same volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_write_applied_but_answer_lost() {
    let h = Harness::new(journal_write(2, Effect::ApplyThenTimeout));
    let r = req("pvc-a2", 8 * MIB);
    failed(h.create(&r).await, Code::Unavailable, "create whose ready write's answer is lost");
    let rec = h.record("pvc-a2").await.unwrap_or_else(|| panic!("no record"));
    assert_eq!(rec.state, State::Ready);
    let vol = ok(h.create(&r).await, "retry");
    assert_eq!(vol.volume_id, rec.id);
    h.assert_consistent(&["pvc-a2"]).await;
}

/// (a) The process dies at the ready write; after a restart the retry finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_the_ready_write_then_restart() {
    let h = Harness::new(journal_write(2, Effect::Crash));
    let r = req("pvc-a3", 8 * MIB);
    assert!(h.create(&r).await.is_err(), "a create that crashed answered OK");
    assert!(h.plan.crashed());
    let h = h.restart();
    let rec = h.record("pvc-a3").await.unwrap_or_else(|| panic!("no record after the crash"));
    assert_eq!(rec.state, State::Creating);
    let vol = ok(h.create(&r).await, "retry after restart");
    assert_eq!(vol.volume_id, rec.id);
    h.assert_consistent(&["pvc-a3"]).await;
}

/// The first journal write (the `creating` record) fails: nothing was made, the retry creates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_write_fails_leaves_nothing() {
    let h = Harness::new(journal_write(1, Effect::Unavailable));
    let r = req("pvc-a4", 8 * MIB);
    failed(h.create(&r).await, Code::Unavailable, "create with the first journal write failing");
    assert!(h.record("pvc-a4").await.is_none());
    assert!(h.files().is_empty(), "an image without a record: {:?}", h.files());
    ok(h.create(&r).await, "retry");
    h.assert_consistent(&["pvc-a4"]).await;
}

/// (b) The process dies before the image exists (its creation fails): the record is `creating`
/// with no image; the retry makes the image and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_creation_fails_then_retry_finishes() {
    let h = Harness::new(FaultPlan::new(1));
    h.flaky.fail_create.store(1, Ordering::SeqCst);
    let r = req("pvc-b", 16 * MIB);
    failed(h.create(&r).await, Code::Unavailable, "create with the image creation failing");
    let rec = h.record("pvc-b").await.unwrap_or_else(|| panic!("no record"));
    assert_eq!(rec.state, State::Creating);
    assert!(h.files().is_empty(), "{:?}", h.files());
    let vol = ok(h.create(&r).await, "retry");
    assert_eq!(vol.volume_id, rec.id);
    assert_eq!(std::fs::metadata(h.pool_dir().join(image_file(&rec.uuid))).map(|m| m.len()).ok(), Some(16 << 20));
    h.assert_consistent(&["pvc-b"]).await;
}

/// (b) The same, with a restart in between (the record survives the process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_creation_fails_then_restart_and_retry() {
    let h = Harness::new(FaultPlan::new(1));
    h.flaky.fail_create.store(1, Ordering::SeqCst);
    let r = req("pvc-b2", 16 * MIB);
    assert!(h.create(&r).await.is_err());
    let h = h.restart();
    let vol = ok(h.create(&r).await, "retry after restart");
    let recs = h.assert_consistent(&["pvc-b2"]).await;
    assert_eq!(recs["pvc-b2"].id, vol.volume_id);
}

/// A change to a CreateVolume request.
type Change = dyn Fn(&mut pb::CreateVolumeRequest);

/// (c) A create left `creating` (image made) whose retry comes with other parameters, or
/// another size: the half-made volume is rolled back (its image removed, its keys gone) and
/// the new one is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_with_other_parameters_rolls_back_the_half_made_volume() {
    let other_params = |r: &mut pb::CreateVolumeRequest| {
        r.parameters = HashMap::from([("fsType".to_string(), "xfs".to_string())]);
    };
    let other_size = |r: &mut pb::CreateVolumeRequest| {
        r.capacity_range = Some(pb::CapacityRange { required_bytes: 64 * MIB, limit_bytes: 0 });
    };
    let changes: [(&str, &Change); 2] = [("params", &other_params), ("size", &other_size)];
    for (what, change) in changes {
        let h = Harness::new(journal_write(2, Effect::Timeout));
        let name = format!("pvc-c-{what}");
        let first = req(&name, 128 * MIB);
        failed(h.create(&first).await, Code::Unavailable, "first create");
        let old = h.record(&name).await.unwrap_or_else(|| panic!("no record"));
        assert_eq!(old.state, State::Creating);
        assert_eq!(h.files(), BTreeSet::from([image_file(&old.uuid)]));

        let mut second = first.clone();
        change(&mut second);
        let vol = ok(h.create(&second).await, &format!("retry with other {what}"));
        assert_ne!(uuid_of(&vol.volume_id), old.uuid, "{what}: the half-made volume was reused");
        let recs = h.assert_consistent(&[&name]).await;
        assert_eq!(recs[&name].id, vol.volume_id);
        assert!(!h.files().contains(&image_file(&old.uuid)), "{what}: the old image is left");
        assert!(!h.omap_keys(VOLUMES_OBJECT).await.contains(&format!("i.{}", old.uuid)), "{what}: old key left");
        // The first request (128 MiB, no parameters) is now the one that does not match.
        failed(h.create(&first).await, Code::AlreadyExists, "the first request again");
    }
}

/// (d) A delete that died after marking the record `deleting`, before the image was removed:
/// the retry of DeleteVolume finishes; no image, no journal key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_interrupted_before_the_image_is_removed() {
    let h = Harness::new(FaultPlan::new(1));
    let vol = ok(h.create(&req("pvc-d", 8 * MIB)).await, "create");
    h.flaky.fail_remove.store(1, Ordering::SeqCst);
    failed(h.ctl.delete_volume(&vol.volume_id).await, Code::Unavailable, "delete with the image removal failing");
    let rec = h.record("pvc-d").await.unwrap_or_else(|| panic!("the record went before its image"));
    assert_eq!(rec.state, State::Deleting);
    assert_eq!(h.files(), BTreeSet::from([image_file(&rec.uuid)]));
    let h = h.restart();
    ok(h.ctl.delete_volume(&vol.volume_id).await, "retry after restart");
    h.assert_consistent(&[]).await;
    ok(h.ctl.delete_volume(&vol.volume_id).await, "delete again");
}

/// (d) A delete that died after removing the image, before removing the record (the last
/// journal write): the retry removes the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_crashed_before_the_record_is_removed() {
    // Writes: 1 creating, 2 ready, 3 deleting, 4 remove.
    let h = Harness::new(journal_write(4, Effect::Crash));
    let vol = ok(h.create(&req("pvc-d2", 8 * MIB)).await, "create");
    assert!(h.ctl.delete_volume(&vol.volume_id).await.is_err(), "a delete that crashed answered OK");
    assert!(h.plan.crashed());
    let h = h.restart();
    let rec = h.record("pvc-d2").await.unwrap_or_else(|| panic!("no record"));
    assert_eq!(rec.state, State::Deleting);
    assert!(h.files().is_empty(), "{:?}", h.files());
    ok(h.ctl.delete_volume(&vol.volume_id).await, "retry after restart");
    h.assert_consistent(&[]).await;
}

/// (d) A delete that died at `deleting`, then a CreateVolume of the same name (not a retry of
/// the delete): the old volume is removed, a new one is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_over_a_half_deleted_volume() {
    let h = Harness::new(FaultPlan::new(1));
    let r = req("pvc-d3", 8 * MIB);
    let vol = ok(h.create(&r).await, "create");
    h.flaky.fail_remove.store(1, Ordering::SeqCst);
    assert!(h.ctl.delete_volume(&vol.volume_id).await.is_err());
    let again = ok(h.create(&r).await, "create over the half-deleted volume");
    assert_ne!(again.volume_id, vol.volume_id);
    let recs = h.assert_consistent(&["pvc-d3"]).await;
    assert_eq!(recs["pvc-d3"].id, again.volume_id);
    // The old id is gone for good; deleting it is still OK and does not touch the new one.
    ok(h.ctl.delete_volume(&vol.volume_id).await, "delete the old id");
    h.assert_consistent(&["pvc-d3"]).await;
}

/// A failure at every journal write of a create-then-delete, one run each: retrying until OK
/// always ends consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_journal_write_failing_once() {
    for n in 1..=4 {
        for effect in [Effect::Timeout, Effect::ApplyThenTimeout] {
            let h = Harness::new(journal_write(n, effect));
            let r = req("pvc-e", 8 * MIB);
            let mut vol = None;
            for _ in 0..3 {
                if let Ok(v) = h.create(&r).await {
                    vol = Some(v);
                    break;
                }
            }
            let vol = vol.unwrap_or_else(|| panic!("write {n} {effect:?}: create never succeeded"));
            h.assert_consistent(&["pvc-e"]).await;
            let mut deleted = false;
            for _ in 0..3 {
                if h.ctl.delete_volume(&vol.volume_id).await.is_ok() {
                    deleted = true;
                    break;
                }
            }
            assert!(deleted, "write {n} {effect:?}: delete never succeeded");
            h.assert_consistent(&[]).await;
            assert_eq!(h.plan.fired().len(), 1, "write {n} {effect:?}: {:?}", h.plan.fired());
        }
    }
}

/// Snapshots keep the same promise: a snapshot whose ready write failed is finished by the
/// retry (same id); deleting it leaves no image and no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_ready_write_fails_then_retry() {
    let plan = FaultPlan::new(3).at_object("execute", SNAPSHOTS_OBJECT, Trigger::Nth(2), Effect::Timeout);
    let h = Harness::new(plan);
    let vol = ok(h.create(&req("pvc-s", 8 * MIB)).await, "create");
    let sreq = pb::CreateSnapshotRequest {
        name: "snap-s".into(),
        source_volume_id: vol.volume_id.clone(),
        ..Default::default()
    };
    failed(h.ctl.create_snapshot(sreq.clone()).await, Code::Unavailable, "snapshot with the ready write failing");
    let snap = ok(h.ctl.create_snapshot(sreq.clone()).await, "retry");
    let recs = h.records(SNAPSHOTS_OBJECT).await;
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].id.as_str(), recs[0].state), (snap.snapshot_id.as_str(), State::Ready));
    let snap_file = format!("csi-snap-{}.img", recs[0].uuid);
    assert!(h.files().contains(&snap_file));
    ok(h.ctl.delete_snapshot(&snap.snapshot_id).await, "delete snapshot");
    assert!(h.omap_keys(SNAPSHOTS_OBJECT).await.is_empty());
    assert!(!h.files().contains(&snap_file));
    h.assert_consistent(&["pvc-s"]).await;
}
