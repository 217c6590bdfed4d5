//! The placement engine on the Cyberun topology (deploy/placement/cyberun.toml): each case runs
//! requests through one `Placement` and compares the rendered decision tables with a snapshot.
//! Regenerate with `UPDATE_EXPECT=1 cargo test -p cyvault-placement --test cyberun`, then read
//! the diff: a snapshot is only as right as the person who accepted it.

use cyvault_placement::{
    Decision, Placement, Refusal, RefusalCode, Report, Request, RequestKind, Rtt, Topology, choose_pool,
};
use expect_test::{Expect, expect};

const CYBERUN: &str = include_str!("../../deploy/placement/cyberun.toml");

const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

fn cyberun() -> Topology {
    Topology::from_toml(CYBERUN).unwrap_or_else(|e| panic!("cyberun.toml does not validate:\n{e}"))
}

/// The Cyberun topology with each `(from, to)` edit applied (each `from` must occur exactly
/// once) and `append` added at the end (more `[[pool]]`, `[[policy]]`, … tables).
#[track_caller]
fn patched(edits: &[(&str, &str)], append: &str) -> Topology {
    let mut text = CYBERUN.to_owned();
    for (from, to) in edits {
        assert_eq!(text.matches(from).count(), 1, "the edit {from:?} must match cyberun.toml exactly once");
        text = text.replace(from, to);
    }
    text.push('\n');
    text.push_str(append);
    Topology::from_toml(&text).unwrap_or_else(|e| panic!("the patched topology does not validate:\n{e}"))
}

fn volume(consumer: &str, size: u64) -> Request {
    Request::new(consumer, RequestKind::Volume, size)
}

fn bucket(consumer: &str) -> Request {
    Request::new(consumer, RequestKind::Bucket, 0)
}

/// Runs `requests` as one batch on `topo` and compares the rendered reports with `expect`.
/// Returns the reports so that a case can also assert on codes and pools.
#[track_caller]
fn check_on(topo: &Topology, requests: &[Request], expect: Expect) -> Vec<Report> {
    let mut batch = Placement::new(topo);
    let reports: Vec<Report> = requests.iter().map(|r| Report::of(topo, &batch.choose_pool(r))).collect();
    let rendered: Vec<String> = reports.iter().map(Report::render).collect();
    expect.assert_eq(&rendered.join("\n"));
    reports
}

/// [`check_on`] on the Cyberun topology as written.
#[track_caller]
fn check(requests: &[Request], expect: Expect) -> Vec<Report> {
    check_on(&cyberun(), requests, expect)
}

#[track_caller]
fn placed_on(report: &Report, pool: &str) {
    assert!(report.placed, "expected a placement on {pool}, got {:?} {:?}", report.code, report.message);
    assert_eq!(report.pool.as_deref(), Some(pool));
    assert_eq!(report.code, None);
}

#[track_caller]
fn refused_with(report: &Report, code: RefusalCode) {
    assert!(!report.placed, "expected {code}, got a placement on {:?}", report.pool);
    assert_eq!(report.code, Some(code.as_str()));
    assert_eq!(report.pool, None);
    assert_eq!(report.permanent, Some(code.is_permanent()));
}

#[track_caller]
fn refusal(result: Result<Decision, Refusal>) -> Refusal {
    match result {
        Ok(d) => panic!("expected a refusal, got pool index {}", d.pool),
        Err(r) => r,
    }
}

#[test]
fn destroyer_volume_goes_to_new_york_nvme() {
    let reports = check(
        &[volume("destroyer", 100 * GIB)],
        expect![[r#"
            100 GiB volume for destroyer under policy destroyer-volumes: p99 RTT <= 2.0 ms, class nvme, >= 3 copies across hosts, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99        FILL AFTER  VERDICT
            auxiliary/rbd-nvme  nvme   3x/host     1.6 ms (link)  30.2%       chosen
            auxiliary/rbd-ssd   ssd    3x/host     1.6 ms (link)  25.1%       class ssd is not nvme
            placed on auxiliary/rbd-nvme
        "#]],
    );
    placed_on(&reports[0], "auxiliary/rbd-nvme");

    let topo = cyberun();
    let d = choose_pool(&topo, &volume("destroyer", 100 * GIB)).unwrap_or_else(|r| panic!("{r}"));
    let pool = d.pool(&topo);
    assert_eq!(pool.id(), "auxiliary/rbd-nvme");
    let site = topo.cluster(&pool.cluster).map(|c| c.site.as_str());
    assert_eq!(site, Some("new-york"));
    assert_eq!(d.policy.name, "destroyer-volumes");
}

#[test]
fn aegis_volume_is_refused_across_the_atlantic() {
    let reports = check(
        &[volume("aegis", 100 * GIB)],
        expect![[r#"
            100 GiB volume for aegis under policy default-volume: p99 RTT <= 2.0 ms, >= 2 copies, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99         FILL AFTER  VERDICT
            auxiliary/rbd-nvme  nvme   3x/host     88.4 ms (link)  30.2%       86.4 ms over the latency budget
            auxiliary/rbd-ssd   ssd    3x/host     88.4 ms (link)  25.1%       86.4 ms over the latency budget
            refused: VAULT-PL-001 no rbd pool within 2.0 ms of aegis; nearest auxiliary/rbd-nvme at 88.4 ms (86.4 ms over budget)
        "#]],
    );
    refused_with(&reports[0], RefusalCode::NoPoolWithinBudget);
    let message = reports[0].message.as_deref().unwrap_or_default();
    assert!(message.contains("auxiliary/rbd-nvme") && message.contains("88.4 ms"), "{message}");

    let topo = cyberun();
    let r = refusal(choose_pool(&topo, &volume("aegis", 100 * GIB)));
    assert_eq!(r.code, RefusalCode::NoPoolWithinBudget);
    assert_eq!(r.nearest, topo.pools().iter().position(|p| p.id() == "auxiliary/rbd-nvme").map(|i| i as u32));
    assert!(r.code.is_permanent());
}

#[test]
fn aegis_bucket_tolerates_the_wan() {
    let reports = check(
        &[bucket("aegis")],
        expect![[r#"
            bucket for aegis under policy buckets: p99 RTT <= 250.0 ms, >= 3 copies across hosts, fill <= 85%
            POOL                 CLASS  REDUNDANCY  RTT P99         FILL AFTER  VERDICT
            auxiliary/s3-nvme    nvme   3x/host     88.4 ms (link)  10.0%       chosen
            auxiliary/s3-hdd-ec  hdd    ec4+2/host  88.4 ms (link)  26.2%       eligible, but would be fuller
            placed on auxiliary/s3-nvme
        "#]],
    );
    placed_on(&reports[0], "auxiliary/s3-nvme");
}

#[test]
fn carrier_bucket_is_within_the_wan_budget_too() {
    // 176 ms from Tokyo: the farthest consumer still fits the 250 ms bucket budget.
    let reports = check(
        &[Request::new("carrier", RequestKind::Bucket, 19 * TIB)],
        expect![[r#"
            19 TiB bucket for carrier under policy buckets: p99 RTT <= 250.0 ms, >= 3 copies across hosts, fill <= 85%
            POOL                 CLASS  REDUNDANCY  RTT P99          FILL AFTER  VERDICT
            auxiliary/s3-hdd-ec  hdd    ec4+2/host  176.0 ms (link)  28.6%       chosen
            auxiliary/s3-nvme    nvme   3x/host     176.0 ms (link)  105.0%      would pass the 85.0% fill limit
            placed on auxiliary/s3-hdd-ec
        "#]],
    );
    placed_on(&reports[0], "auxiliary/s3-hdd-ec");
}

/// A volume policy that takes any device class, named by the requests below. Its consumer is
/// `*`: a second policy for destroyer volumes would not validate (one policy per consumer and
/// kind), and a named policy applies to whoever names it.
const ANY_CLASS: &str = r#"
[[policy]]
name = "any-class"
consumer = "*"
kind = "volume"
latency_budget_ms = 2.0
min_replicas = 3
failure_domain = "host"
max_fill = 0.85
"#;

#[test]
fn a_full_pool_sends_the_volume_to_the_next() {
    let mut topo = patched(&[], ANY_CLASS);
    // Without the class requirement the emptier SSD pool wins while both have room.
    let reports = check_on(
        &topo,
        &[volume("destroyer", 100 * GIB).with_policy("any-class")],
        expect![[r#"
            100 GiB volume for destroyer under policy any-class: p99 RTT <= 2.0 ms, >= 3 copies across hosts, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99        FILL AFTER  VERDICT
            auxiliary/rbd-ssd   ssd    3x/host     1.6 ms (link)  25.1%       chosen
            auxiliary/rbd-nvme  nvme   3x/host     1.6 ms (link)  30.2%       eligible, but would be fuller
            placed on auxiliary/rbd-ssd
        "#]],
    );
    placed_on(&reports[0], "auxiliary/rbd-ssd");

    // rbd-ssd nearly full: 100 GiB more would pass 85 %, so the volume moves to rbd-nvme.
    topo.set_usage("auxiliary", "rbd-ssd", 120 * TIB, 102 * TIB - 50 * GIB).unwrap_or_else(|e| panic!("{e}"));
    let reports = check_on(
        &topo,
        &[volume("destroyer", 100 * GIB).with_policy("any-class")],
        expect![[r#"
            100 GiB volume for destroyer under policy any-class: p99 RTT <= 2.0 ms, >= 3 copies across hosts, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99        FILL AFTER  VERDICT
            auxiliary/rbd-nvme  nvme   3x/host     1.6 ms (link)  30.2%       chosen
            auxiliary/rbd-ssd   ssd    3x/host     1.6 ms (link)  85.0%       would pass the 85.0% fill limit
            placed on auxiliary/rbd-nvme
        "#]],
    );
    placed_on(&reports[0], "auxiliary/rbd-nvme");

    // Both full: VAULT-PL-003 naming the emptiest, and worth a retry later.
    topo.set_usage("auxiliary", "rbd-nvme", 40 * TIB, 39 * TIB).unwrap_or_else(|e| panic!("{e}"));
    let reports = check_on(
        &topo,
        &[volume("destroyer", 100 * GIB).with_policy("any-class")],
        expect![[r#"
            100 GiB volume for destroyer under policy any-class: p99 RTT <= 2.0 ms, >= 3 copies across hosts, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99        FILL AFTER  VERDICT
            auxiliary/rbd-ssd   ssd    3x/host     1.6 ms (link)  85.0%       would pass the 85.0% fill limit
            auxiliary/rbd-nvme  nvme   3x/host     1.6 ms (link)  97.7%       would pass the 85.0% fill limit
            refused: VAULT-PL-003 no rbd pool within 2.0 ms of destroyer has room for 100 GiB under the 85.0% fill limit; emptiest auxiliary/rbd-ssd would be 85.0% full
        "#]],
    );
    refused_with(&reports[0], RefusalCode::NoHeadroom);
    assert_eq!(reports[0].permanent, Some(false));
}

#[test]
fn a_full_nvme_pool_refuses_the_nvme_policy() {
    // The default destroyer policy wants NVMe: with rbd-nvme full there is no next pool, and
    // the SSD pool's room does not help.
    let mut topo = cyberun();
    topo.set_usage("auxiliary", "rbd-nvme", 40 * TIB, 34 * TIB).unwrap_or_else(|e| panic!("{e}"));
    let reports = check_on(
        &topo,
        &[volume("destroyer", 100 * GIB), volume("destroyer", 100 * GIB).with_class("ssd")],
        expect![[r#"
            100 GiB volume for destroyer under policy destroyer-volumes: p99 RTT <= 2.0 ms, class nvme, >= 3 copies across hosts, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99        FILL AFTER  VERDICT
            auxiliary/rbd-nvme  nvme   3x/host     1.6 ms (link)  85.2%       would pass the 85.0% fill limit
            auxiliary/rbd-ssd   ssd    3x/host     1.6 ms (link)  25.1%       class ssd is not nvme
            refused: VAULT-PL-003 no nvme rbd pool within 2.0 ms of destroyer has room for 100 GiB under the 85.0% fill limit; emptiest auxiliary/rbd-nvme would be 85.2% full

            100 GiB volume for destroyer under policy destroyer-volumes: p99 RTT <= 2.0 ms, class ssd, >= 3 copies across hosts, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99        FILL AFTER  VERDICT
            auxiliary/rbd-ssd   ssd    3x/host     1.6 ms (link)  25.1%       chosen
            auxiliary/rbd-nvme  nvme   3x/host     1.6 ms (link)  85.2%       class nvme is not ssd
            placed on auxiliary/rbd-ssd
        "#]],
    );
    refused_with(&reports[0], RefusalCode::NoHeadroom);
    placed_on(&reports[1], "auxiliary/rbd-ssd");
}

#[test]
fn a_batch_reserves_what_it_placed() {
    // rbd-nvme has 40 TiB with 12 used: one 20 TiB volume fits (80 %), a second would be 130 %.
    let reports = check(
        &[volume("destroyer", 20 * TIB), volume("destroyer", 20 * TIB)],
        expect![[r#"
            20 TiB volume for destroyer under policy destroyer-volumes: p99 RTT <= 2.0 ms, class nvme, >= 3 copies across hosts, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99        FILL AFTER  VERDICT
            auxiliary/rbd-nvme  nvme   3x/host     1.6 ms (link)  80.0%       chosen
            auxiliary/rbd-ssd   ssd    3x/host     1.6 ms (link)  41.7%       class ssd is not nvme
            placed on auxiliary/rbd-nvme

            20 TiB volume for destroyer under policy destroyer-volumes: p99 RTT <= 2.0 ms, class nvme, >= 3 copies across hosts, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99        FILL AFTER  VERDICT
            auxiliary/rbd-nvme  nvme   3x/host     1.6 ms (link)  130.0%      would pass the 85.0% fill limit
            auxiliary/rbd-ssd   ssd    3x/host     1.6 ms (link)  41.7%       class ssd is not nvme
            refused: VAULT-PL-003 no nvme rbd pool within 2.0 ms of destroyer has room for 20 TiB under the 85.0% fill limit; emptiest auxiliary/rbd-nvme would be 130.0% full
        "#]],
    );
    placed_on(&reports[0], "auxiliary/rbd-nvme");
    refused_with(&reports[1], RefusalCode::NoHeadroom);

    // Each request alone fits: only the batch's reservation refuses the second.
    let topo = cyberun();
    for _ in 0..2 {
        let d = choose_pool(&topo, &volume("destroyer", 20 * TIB)).unwrap_or_else(|r| panic!("{r}"));
        assert_eq!(d.pool(&topo).id(), "auxiliary/rbd-nvme");
    }
    let mut batch = Placement::new(&topo);
    let d = batch.choose_pool(&volume("destroyer", 20 * TIB)).unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(batch.reserved(d.pool), 20 * TIB);
    let r = refusal(batch.choose_pool(&volume("destroyer", 20 * TIB)));
    assert_eq!(r.code, RefusalCode::NoHeadroom);
    assert_eq!(batch.reserved(d.pool), 20 * TIB, "a refusal reserves nothing");
}

#[test]
fn a_batch_spills_to_the_next_pool() {
    // Without the class requirement 20 TiB volumes go to the emptier SSD pool (30 of 120 TiB)
    // until the batch's own reservations fill it: the fourth would take it to 91.7 %, so it
    // goes to rbd-nvme (12 of 40 TiB, 80 % after).
    let topo = patched(&[], ANY_CLASS);
    let req = volume("destroyer", 20 * TIB).with_policy("any-class");
    let reports = check_on(
        &topo,
        &[req.clone(), req.clone(), req.clone(), req],
        expect![[r#"
            20 TiB volume for destroyer under policy any-class: p99 RTT <= 2.0 ms, >= 3 copies across hosts, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99        FILL AFTER  VERDICT
            auxiliary/rbd-ssd   ssd    3x/host     1.6 ms (link)  41.7%       chosen
            auxiliary/rbd-nvme  nvme   3x/host     1.6 ms (link)  80.0%       eligible, but would be fuller
            placed on auxiliary/rbd-ssd

            20 TiB volume for destroyer under policy any-class: p99 RTT <= 2.0 ms, >= 3 copies across hosts, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99        FILL AFTER  VERDICT
            auxiliary/rbd-ssd   ssd    3x/host     1.6 ms (link)  58.3%       chosen
            auxiliary/rbd-nvme  nvme   3x/host     1.6 ms (link)  80.0%       eligible, but would be fuller
            placed on auxiliary/rbd-ssd

            20 TiB volume for destroyer under policy any-class: p99 RTT <= 2.0 ms, >= 3 copies across hosts, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99        FILL AFTER  VERDICT
            auxiliary/rbd-ssd   ssd    3x/host     1.6 ms (link)  75.0%       chosen
            auxiliary/rbd-nvme  nvme   3x/host     1.6 ms (link)  80.0%       eligible, but would be fuller
            placed on auxiliary/rbd-ssd

            20 TiB volume for destroyer under policy any-class: p99 RTT <= 2.0 ms, >= 3 copies across hosts, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99        FILL AFTER  VERDICT
            auxiliary/rbd-nvme  nvme   3x/host     1.6 ms (link)  80.0%       chosen
            auxiliary/rbd-ssd   ssd    3x/host     1.6 ms (link)  91.7%       would pass the 85.0% fill limit
            placed on auxiliary/rbd-nvme
        "#]],
    );
    for r in &reports[..3] {
        placed_on(r, "auxiliary/rbd-ssd");
    }
    placed_on(&reports[3], "auxiliary/rbd-nvme");
}

#[test]
fn unknown_consumer() {
    let reports = check(
        &[volume("enterprise", GIB)],
        expect![[r#"
            1 GiB volume for enterprise
            refused: VAULT-PL-006 "enterprise" is not a cluster of the topology (clusters: aegis, auxiliary, carrier, destroyer)
        "#]],
    );
    refused_with(&reports[0], RefusalCode::UnknownConsumer);
}

#[test]
fn unknown_policy() {
    let reports = check(
        &[volume("destroyer", GIB).with_policy("gold")],
        expect![[r#"
            1 GiB volume for destroyer
            refused: VAULT-PL-007 no placement policy is named "gold" (policies: buckets, destroyer-volumes)
        "#]],
    );
    refused_with(&reports[0], RefusalCode::UnknownPolicy);
}

#[test]
fn policy_of_the_other_kind() {
    let reports = check(
        &[volume("destroyer", GIB).with_policy("buckets")],
        expect![[r#"
            1 GiB volume for destroyer under policy buckets: p99 RTT <= 250.0 ms, >= 3 copies across hosts, fill <= 85%
            refused: VAULT-PL-008 policy buckets places buckets, not volumes
        "#]],
    );
    refused_with(&reports[0], RefusalCode::PolicyKindMismatch);
}

#[test]
fn class_with_no_pool() {
    let reports = check(
        &[volume("destroyer", GIB).with_class("hdd")],
        expect![[r#"
            1 GiB volume for destroyer under policy destroyer-volumes: p99 RTT <= 2.0 ms, class hdd, >= 3 copies across hosts, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99        FILL AFTER  VERDICT
            auxiliary/rbd-nvme  nvme   3x/host     1.6 ms (link)  30.0%       class nvme is not hdd
            auxiliary/rbd-ssd   ssd    3x/host     1.6 ms (link)  25.0%       class ssd is not hdd
            refused: VAULT-PL-002 no hdd rbd pool exists; nearest rbd pool auxiliary/rbd-nvme is nvme at 1.6 ms
        "#]],
    );
    refused_with(&reports[0], RefusalCode::NoPoolOfClass);
}

#[test]
fn durability_miss() {
    // The only RBD pool keeps two copies; destroyer's policy wants three across hosts.
    let topo = patched(
        &[
            (
                "replicas = 3\nfailure_domain = \"host\"\ncapacity = \"40TiB\"",
                "replicas = 2\nfailure_domain = \"host\"\ncapacity = \"40TiB\"",
            ),
            (
                "name = \"rbd-ssd\"\ncluster = \"auxiliary\"\nkind = \"rbd\"",
                "name = \"rbd-ssd\"\ncluster = \"auxiliary\"\nkind = \"s3-data\"",
            ),
        ],
        "",
    );
    assert_eq!(topo.pools().iter().filter(|p| p.kind == cyvault_placement::PoolKind::Rbd).count(), 1);
    let reports = check_on(
        &topo,
        &[volume("destroyer", GIB)],
        expect![[r#"
            1 GiB volume for destroyer under policy destroyer-volumes: p99 RTT <= 2.0 ms, class nvme, >= 3 copies across hosts, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99        FILL AFTER  VERDICT
            auxiliary/rbd-nvme  nvme   2x/host     1.6 ms (link)  30.0%       2 copies, needs 3
            refused: VAULT-PL-004 no nvme rbd pool keeps 3 copies across hosts; nearest auxiliary/rbd-nvme keeps 2 copies across hosts (2x)
        "#]],
    );
    refused_with(&reports[0], RefusalCode::NotDurableEnough);
}

#[test]
fn weak_failure_domain() {
    let topo = patched(&[], &ANY_CLASS.replace("\"host\"", "\"rack\""));
    let reports = check_on(
        &topo,
        &[volume("destroyer", GIB).with_policy("any-class")],
        expect![[r#"
            1 GiB volume for destroyer under policy any-class: p99 RTT <= 2.0 ms, >= 3 copies across racks, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99        FILL AFTER  VERDICT
            auxiliary/rbd-nvme  nvme   3x/host     1.6 ms (link)  30.0%       copies across hosts, needs racks
            auxiliary/rbd-ssd   ssd    3x/host     1.6 ms (link)  25.0%       copies across hosts, needs racks
            refused: VAULT-PL-004 no rbd pool keeps 3 copies across racks; nearest auxiliary/rbd-nvme keeps 3 copies across hosts (3x)
        "#]],
    );
    refused_with(&reports[0], RefusalCode::NotDurableEnough);
}

#[test]
fn no_pool_of_kind() {
    // Turn both S3 data pools into RBD pools: nothing can hold a bucket.
    let topo = patched(
        &[
            (
                "name = \"s3-nvme\"\ncluster = \"auxiliary\"\nkind = \"s3-data\"",
                "name = \"s3-nvme\"\ncluster = \"auxiliary\"\nkind = \"rbd\"",
            ),
            (
                "name = \"s3-hdd-ec\"\ncluster = \"auxiliary\"\nkind = \"s3-data\"",
                "name = \"s3-hdd-ec\"\ncluster = \"auxiliary\"\nkind = \"rbd\"",
            ),
        ],
        "",
    );
    let reports = check_on(
        &topo,
        &[bucket("destroyer")],
        expect![[r#"
            bucket for destroyer under policy buckets: p99 RTT <= 250.0 ms, >= 3 copies across hosts, fill <= 85%
            refused: VAULT-PL-005 the topology has no s3-data pool for buckets
        "#]],
    );
    refused_with(&reports[0], RefusalCode::NoPoolOfKind);
    assert!(reports[0].candidates.is_empty());
}

#[test]
fn measured_rtt_overrides_the_link() {
    let mut topo = cyberun();
    // A congested metro link as seen from destroyer: rbd-nvme now measures past the budget.
    topo.observe_rtt("destroyer", "auxiliary", "rbd-nvme", Rtt { p50_ms: 1.8, p99_ms: 2.7 })
        .unwrap_or_else(|e| panic!("{e}"));
    let reports = check_on(
        &topo,
        &[volume("destroyer", GIB), volume("destroyer", GIB).with_class("ssd")],
        expect![[r#"
            1 GiB volume for destroyer under policy destroyer-volumes: p99 RTT <= 2.0 ms, class nvme, >= 3 copies across hosts, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99            FILL AFTER  VERDICT
            auxiliary/rbd-nvme  nvme   3x/host     2.7 ms (measured)  30.0%       0.7 ms over the latency budget
            auxiliary/rbd-ssd   ssd    3x/host     1.6 ms (link)      25.0%       class ssd is not nvme
            refused: VAULT-PL-001 no nvme rbd pool within 2.0 ms of destroyer; nearest auxiliary/rbd-nvme at 2.7 ms (0.7 ms over budget)

            1 GiB volume for destroyer under policy destroyer-volumes: p99 RTT <= 2.0 ms, class ssd, >= 3 copies across hosts, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99            FILL AFTER  VERDICT
            auxiliary/rbd-ssd   ssd    3x/host     1.6 ms (link)      25.0%       chosen
            auxiliary/rbd-nvme  nvme   3x/host     2.7 ms (measured)  30.0%       class nvme is not ssd
            placed on auxiliary/rbd-ssd
        "#]],
    );
    refused_with(&reports[0], RefusalCode::NoPoolWithinBudget);
    placed_on(&reports[1], "auxiliary/rbd-ssd");
    let nvme = reports[0].candidates.iter().find(|c| c.pool == "auxiliary/rbd-nvme");
    assert_eq!(nvme.and_then(|c| c.rtt_p99_ms), Some(2.7));

    // The measurement is the vantage point's own: aegis still goes by the link.
    let reports = check_on(
        &topo,
        &[volume("aegis", GIB)],
        expect![[r#"
            1 GiB volume for aegis under policy default-volume: p99 RTT <= 2.0 ms, >= 2 copies, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99         FILL AFTER  VERDICT
            auxiliary/rbd-nvme  nvme   3x/host     88.4 ms (link)  30.0%       86.4 ms over the latency budget
            auxiliary/rbd-ssd   ssd    3x/host     88.4 ms (link)  25.0%       86.4 ms over the latency budget
            refused: VAULT-PL-001 no rbd pool within 2.0 ms of aegis; nearest auxiliary/rbd-nvme at 88.4 ms (86.4 ms over budget)
        "#]],
    );
    refused_with(&reports[0], RefusalCode::NoPoolWithinBudget);
}

#[test]
fn a_measured_shortcut_admits_a_far_pool() {
    // A measurement from aegis to one auxiliary pool below the budget admits that pool
    // although the link says 88.4 ms; the other pool still goes by the link.
    let mut topo = cyberun();
    topo.observe_rtt("aegis", "auxiliary", "rbd-ssd", Rtt { p50_ms: 0.4, p99_ms: 0.9 })
        .unwrap_or_else(|e| panic!("{e}"));
    let reports = check_on(
        &topo,
        &[volume("aegis", GIB)],
        expect![[r#"
            1 GiB volume for aegis under policy default-volume: p99 RTT <= 2.0 ms, >= 2 copies, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99            FILL AFTER  VERDICT
            auxiliary/rbd-ssd   ssd    3x/host     0.9 ms (measured)  25.0%       chosen
            auxiliary/rbd-nvme  nvme   3x/host     88.4 ms (link)     30.0%       86.4 ms over the latency budget
            placed on auxiliary/rbd-ssd
        "#]],
    );
    placed_on(&reports[0], "auxiliary/rbd-ssd");

    assert!(topo.observe_rtt("aegis", "auxiliary", "rbd-hdd", Rtt { p50_ms: 1.0, p99_ms: 1.0 }).is_err());
    assert!(topo.observe_rtt("enterprise", "auxiliary", "rbd-ssd", Rtt { p50_ms: 1.0, p99_ms: 1.0 }).is_err());
    assert!(topo.set_usage("auxiliary", "rbd-hdd", 1, 0).is_err());
}

#[test]
fn local_pools_use_the_intra_cluster_rtt() {
    // A pool on aegis itself is local to aegis (0.3 ms p99 by default) and within budget.
    let topo = patched(
        &[],
        r#"
[[pool]]
name = "rbd-local"
cluster = "aegis"
kind = "rbd"
device_class = "nvme"
replicas = 2
failure_domain = "host"
capacity = "10TiB"
"#,
    );
    let reports = check_on(
        &topo,
        &[volume("aegis", 100 * GIB), volume("destroyer", 100 * GIB)],
        expect![[r#"
            100 GiB volume for aegis under policy default-volume: p99 RTT <= 2.0 ms, >= 2 copies, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99         FILL AFTER  VERDICT
            aegis/rbd-local     nvme   2x/host     0.3 ms (local)  1.0%        chosen
            auxiliary/rbd-nvme  nvme   3x/host     88.4 ms (link)  30.2%       86.4 ms over the latency budget
            auxiliary/rbd-ssd   ssd    3x/host     88.4 ms (link)  25.1%       86.4 ms over the latency budget
            placed on aegis/rbd-local

            100 GiB volume for destroyer under policy destroyer-volumes: p99 RTT <= 2.0 ms, class nvme, >= 3 copies across hosts, fill <= 85%
            POOL                CLASS  REDUNDANCY  RTT P99         FILL AFTER  VERDICT
            auxiliary/rbd-nvme  nvme   3x/host     1.6 ms (link)   30.2%       chosen
            aegis/rbd-local     nvme   2x/host     88.4 ms (link)  2.0%        2 copies, needs 3
            auxiliary/rbd-ssd   ssd    3x/host     1.6 ms (link)   25.1%       class ssd is not nvme
            placed on auxiliary/rbd-nvme
        "#]],
    );
    placed_on(&reports[0], "aegis/rbd-local");
    placed_on(&reports[1], "auxiliary/rbd-nvme");
}

#[test]
fn json_report_of_a_refusal() {
    let topo = cyberun();
    let report = Report::of(&topo, &choose_pool(&topo, &volume("aegis", 100 * GIB)));
    let compact = serde_json::to_string(&report).unwrap_or_else(|e| panic!("{e}"));
    assert!(compact.contains(r#""code":"VAULT-PL-001""#), "{compact}");
    assert!(compact.contains(r#""placed":false"#), "{compact}");
    assert!(!compact.contains(r#""pool":null"#), "an absent pool is left out, not null: {compact}");

    let value: serde_json::Value = serde_json::from_str(&compact).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(value["code"], "VAULT-PL-001");
    assert_eq!(value["permanent"], true);
    assert_eq!(value["candidates"][0]["verdict"], "too-far");

    let pretty = serde_json::to_string_pretty(&report).unwrap_or_else(|e| panic!("{e}"));
    expect![[r#"
        {
          "placed": false,
          "code": "VAULT-PL-001",
          "message": "no rbd pool within 2.0 ms of aegis; nearest auxiliary/rbd-nvme at 88.4 ms (86.4 ms over budget)",
          "permanent": true,
          "request": {
            "consumer": "aegis",
            "kind": "volume",
            "size": 107374182400
          },
          "policy": {
            "name": "default-volume",
            "consumer": "*",
            "kind": "volume",
            "latency_budget_ms": 2.0,
            "device_class": null,
            "min_replicas": 2,
            "failure_domain": null,
            "max_fill": 0.85
          },
          "candidates": [
            {
              "pool": "auxiliary/rbd-nvme",
              "device_class": "nvme",
              "redundancy": "3x",
              "copies": 3,
              "failure_domain": "host",
              "rtt_p50_ms": 86.0,
              "rtt_p99_ms": 88.4,
              "latency_source": "link",
              "capacity_bytes": 43980465111040,
              "used_bytes": 13194139533312,
              "fill_after": 0.30244140625,
              "verdict": "too-far",
              "over_ms": 86.4,
              "reason": "86.4 ms over the latency budget"
            },
            {
              "pool": "auxiliary/rbd-ssd",
              "device_class": "ssd",
              "redundancy": "3x",
              "copies": 3,
              "failure_domain": "host",
              "rtt_p50_ms": 86.0,
              "rtt_p99_ms": 88.4,
              "latency_source": "link",
              "capacity_bytes": 131941395333120,
              "used_bytes": 32985348833280,
              "fill_after": 0.2508138020833333,
              "verdict": "too-far",
              "over_ms": 86.4,
              "reason": "86.4 ms over the latency budget"
            }
          ]
        }"#]]
    .assert_eq(&pretty);
}

#[test]
fn json_report_of_a_placement() {
    let topo = cyberun();
    let report = Report::of(&topo, &choose_pool(&topo, &bucket("aegis")));
    let value = serde_json::to_value(&report).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(value["placed"], true);
    assert_eq!(value["pool"], "auxiliary/s3-nvme");
    assert!(value.get("code").is_none(), "{value}");
    assert_eq!(value["candidates"][0]["verdict"], "chosen");
    assert_eq!(value["candidates"][1]["verdict"], "eligible");
    assert_eq!(value["candidates"][1]["lost_on"], "fuller");
}

// ---------------------------------------------------------------------------------------------
// Topology validation.

#[track_caller]
fn check_topology(toml_text: &str, expect: Expect) {
    let err = match Topology::from_toml(toml_text) {
        Ok(_) => panic!("the topology validated, but a problem was expected"),
        Err(e) => e,
    };
    assert!(!err.0.is_empty());
    expect.assert_eq(&err.to_string());
}

/// Two clusters on one site, for cases to add to.
const BASE: &str = r#"
[[site]]
name = "ny"

[[cluster]]
name = "compute"
site = "ny"
role = "compute"

[[cluster]]
name = "storage"
site = "ny"
role = "storage"
"#;

fn base(extra: &str) -> String {
    format!("{BASE}\n{extra}")
}

#[test]
fn cyberun_validates() {
    let topo = cyberun();
    assert_eq!(topo.sites().len(), 3);
    assert_eq!(topo.clusters().len(), 4);
    assert_eq!(topo.pools().len(), 4);
    assert_eq!(topo.links().len(), 6);
    assert_eq!(topo.policies().len(), 2);
    let nvme = topo.pool("auxiliary", "rbd-nvme").unwrap_or_else(|| panic!("no rbd-nvme"));
    assert_eq!((nvme.capacity, nvme.used), (40 * TIB, 12 * TIB));
    let ec = topo.pool("auxiliary", "s3-hdd-ec").unwrap_or_else(|| panic!("no s3-hdd-ec"));
    assert_eq!(ec.redundancy.copies(), 3, "EC 4+2 survives two failures, like three replicas");
    assert_eq!(topo.defaults().max_fill, 0.85);
    // Every cluster reaches every other: the links cover all pairs.
    let n = topo.clusters().len();
    assert_eq!(topo.links().len(), n * (n - 1) / 2);
}

#[test]
fn topology_link_to_an_unknown_cluster() {
    check_topology(
        &base(
            r#"
[[link]]
from = "compute"
to = "stroage"
rtt_p50_ms = 1.0
"#,
        ),
        expect![[r#"
            1 problem in the topology
              VAULT-PL-102: link compute<->stroage: unknown cluster "stroage" (defined: compute, storage)"#]],
    );
}

#[test]
fn topology_negative_capacity() {
    check_topology(
        &base(
            r#"
[[pool]]
name = "rbd"
cluster = "storage"
kind = "rbd"
device_class = "ssd"
replicas = 3
failure_domain = "host"
capacity = -5
"#,
        ),
        expect![[r#"
            1 problem in the topology
              VAULT-PL-103: pool storage/rbd: capacity must not be negative, got -5"#]],
    );
}

#[test]
fn topology_negative_size_with_a_unit() {
    check_topology(
        &base(
            r#"
[[pool]]
name = "rbd"
cluster = "storage"
kind = "rbd"
device_class = "ssd"
replicas = 3
failure_domain = "host"
capacity = "10TiB"
used = "-1GiB"
"#,
        ),
        expect![[r#"
            1 problem in the topology
              VAULT-PL-103: pool storage/rbd: used must not be negative, got -1073741824"#]],
    );
}

#[test]
fn topology_duplicate_pool() {
    let pool = r#"
[[pool]]
name = "rbd"
cluster = "storage"
kind = "rbd"
device_class = "ssd"
replicas = 3
failure_domain = "host"
capacity = "10TiB"
"#;
    check_topology(
        &base(&format!("{pool}{pool}")),
        expect![[r#"
            1 problem in the topology
              VAULT-PL-101: pool storage/rbd: defined twice in the same cluster"#]],
    );
}

#[test]
fn topology_used_over_capacity() {
    check_topology(
        &base(
            r#"
[[pool]]
name = "rbd"
cluster = "storage"
kind = "rbd"
device_class = "ssd"
replicas = 3
failure_domain = "host"
capacity = "10TiB"
used = "11TiB"
"#,
        ),
        expect![[r#"
            1 problem in the topology
              VAULT-PL-104: pool storage/rbd: used (11 TiB) exceeds capacity (10 TiB)"#]],
    );
}

#[test]
fn topology_replicas_and_erasure() {
    check_topology(
        &base(
            r#"
[[pool]]
name = "rbd"
cluster = "storage"
kind = "rbd"
device_class = "ssd"
replicas = 3
erasure = { k = 4, m = 2 }
failure_domain = "host"
capacity = "10TiB"
"#,
        ),
        expect![[r#"
            1 problem in the topology
              VAULT-PL-104: pool storage/rbd: give either replicas or erasure, not both"#]],
    );
}

#[test]
fn topology_p99_below_p50() {
    check_topology(
        &base(
            r#"
[[link]]
from = "compute"
to = "storage"
rtt_p50_ms = 2.0
rtt_p99_ms = 1.0
"#,
        ),
        expect![[r#"
            1 problem in the topology
              VAULT-PL-104: link compute<->storage: rtt_p99_ms (1) is below rtt_p50_ms (2)"#]],
    );
}

#[test]
fn topology_bad_size_unit() {
    check_topology(
        &base(
            r#"
[[pool]]
name = "rbd"
cluster = "storage"
kind = "rbd"
device_class = "ssd"
replicas = 3
failure_domain = "host"
capacity = "10 bananas"
"#,
        ),
        expect![[r#"
            1 problem in the topology
              VAULT-PL-100: file: TOML parse error at line 23, column 12
                   |
                23 | capacity = "10 bananas"
                   |            ^^^^^^^^^^^^
                "10 bananas" has an unknown unit "bananas" (use B, KiB, MiB, GiB, TiB, PiB or kB, MB, GB, TB, PB)"#]],
    );
}

#[test]
fn topology_unknown_field() {
    check_topology(
        &base(
            r#"
[[pool]]
name = "rbd"
cluster = "storage"
kind = "rbd"
device_class = "ssd"
replica = 3
failure_domain = "host"
capacity = "10TiB"
"#,
        ),
        expect![[r#"
            1 problem in the topology
              VAULT-PL-100: file: TOML parse error at line 21, column 1
                   |
                21 | replica = 3
                   | ^^^^^^^
                unknown field `replica`, expected one of `name`, `cluster`, `kind`, `device_class`, `replicas`, `erasure`, `failure_domain`, `capacity`, `used`"#]],
    );
}

#[test]
fn topology_policy_for_an_unknown_consumer() {
    check_topology(
        &base(
            r#"
[[policy]]
name = "gpu-volumes"
consumer = "aegis"
kind = "volume"
latency_budget_ms = 2.0
"#,
        ),
        expect![[r#"
            1 problem in the topology
              VAULT-PL-102: policy gpu-volumes: unknown consumer cluster "aegis" (defined: compute, storage, or *)"#]],
    );
}

#[test]
fn topology_reports_every_problem_at_once() {
    check_topology(
        r#"
[defaults]
max_fill = 1.5

[[site]]
name = "ny"

[[cluster]]
name = "storage"
site = "nj"
role = "storage"

[[pool]]
name = "rbd"
cluster = "storage"
kind = "rbd"
device_class = "ssd"
replicas = 0
failure_domain = "host"
capacity = "1TiB"
used = "2TiB"

[[pool]]
name = "ec"
cluster = "compute"
kind = "s3-data"
device_class = "hdd"
erasure = { k = 4, m = 0 }
failure_domain = "host"
capacity = "1TiB"

[[link]]
from = "storage"
to = "storage"
rtt_p50_ms = -1.0

[[policy]]
name = "fast"
consumer = "*"
kind = "volume"
latency_budget_ms = 2.0
device_class = "optane"
max_fill = 0.0
"#,
        expect![[r#"
            10 problems in the topology
              VAULT-PL-103: defaults: max_fill must be in (0, 1], got 1.5
              VAULT-PL-102: cluster storage: unknown site "nj" (defined: ny)
              VAULT-PL-103: pool storage/rbd: replicas must be at least 1
              VAULT-PL-104: pool storage/rbd: used (2 TiB) exceeds capacity (1 TiB)
              VAULT-PL-102: pool compute/ec: unknown cluster "compute" (defined: storage)
              VAULT-PL-103: pool compute/ec: erasure k and m must be at least 1, got k=4 m=0
              VAULT-PL-104: link storage<->storage: a link joins two different clusters (use defaults.intra_cluster_rtt_* within one)
              VAULT-PL-103: link storage<->storage: RTTs must be non-negative milliseconds, got p50 -1 p99 -1
              VAULT-PL-103: policy fast: max_fill must be in (0, 1], got 0
              VAULT-PL-102: policy fast: no rbd pool has device class "optane" (defined: ssd)"#]],
    );
}

#[test]
fn topology_errors_carry_codes() {
    let err = match Topology::from_toml(&base("[[link]]\nfrom = \"compute\"\nto = \"nowhere\"\nrtt_p50_ms = 1.0\n")) {
        Ok(_) => panic!("validated"),
        Err(e) => e,
    };
    assert_eq!(err.0.len(), 1);
    assert_eq!(err.0[0].kind, cyvault_placement::TopologyErrorKind::UnknownReference);
    assert_eq!(err.0[0].kind.code(), "VAULT-PL-102");
    assert_eq!(err.0[0].subject, "link compute<->nowhere");
}
