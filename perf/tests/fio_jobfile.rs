//! fio job files: what `cyvault perf compare-fio JOB` understands of a file, shown as the fio
//! command it renders and the jobs our engine runs; and the refusals, each with its line.

use cyvault_perf::fio::FioJob;
use cyvault_perf::fio_jobfile::{fio_seconds, fio_size, from_specs, parse_job_file, to_specs};
use cyvault_perf::io::{CephLogin, JobSpec, TargetSpec};
use expect_test::{Expect, expect};

fn env(var: &str) -> Option<String> {
    match var {
        "DEV" => Some("/dev/loop7".into()),
        "POOL" => Some("rbd".into()),
        _ => None,
    }
}

fn login() -> CephLogin {
    CephLogin { conf: "/tmp/dev/ceph.conf".into(), id: "admin".into() }
}

/// One line per job: fio's command, then what our engine runs.
fn render(text: &str) -> String {
    match parse_job_file(text, &env) {
        Err(e) => format!("error: {e}"),
        Ok(jobs) => jobs
            .iter()
            .map(|f| {
                let ours = match to_specs(f, Some(&login())) {
                    Ok(specs) => ours_line(&specs),
                    Err(e) => format!("error: {e}"),
                };
                format!("{}\nours: {ours}", f.command_line())
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn ours_line(specs: &[JobSpec]) -> String {
    let j = &specs[0];
    let target = match &j.target {
        TargetSpec::Rbd { ceph, .. } => format!("{} as client.{} ({})", j.target, ceph.id, ceph.conf),
        t => t.to_string(),
    };
    format!(
        "{} x{} on {target}: {} bs={} qd={} offset={} size={:?} runtime={:?} ramp={:?} direct={} fsync={} mix={} ring[fixed_bufs={} fixed_files={} sqpoll={} iopoll={} batch={}]",
        j.name,
        specs.len(),
        j.rw,
        j.block_size,
        j.iodepth,
        j.offset,
        j.size,
        j.runtime,
        j.ramp,
        j.direct,
        j.fsync,
        j.rwmixread,
        j.ring.fixed_bufs,
        j.ring.fixed_files,
        j.ring.sqpoll,
        j.ring.iopoll,
        j.ring.submit_batch
    )
}

#[track_caller]
fn check(text: &str, expect: Expect) {
    expect.assert_eq(&render(text));
}

#[test]
fn global_options_apply_to_the_jobs_after_them() {
    check(
        "
; the NVMe-path pair on one loop device
[global]
ioengine=io_uring
filename=${DEV}
direct=1
bs=4k
time_based
runtime=10
ramp_time=2
fixedbufs
registerfiles

[qd1]
rw=randread
iodepth=1

[qd32]
rw=randread
iodepth=32
numjobs=2
",
        expect![[r#"
            fio --name=qd1 --ioengine=io_uring --filename=/dev/loop7 --rw=randread --bs=4096 --iodepth=1 --direct=1 --fixedbufs --registerfiles --time_based --runtime=10 --ramp_time=2 --numjobs=1 --norandommap --group_reporting --output-format=json
            ours: qd1 x1 on /dev/loop7: randread bs=4096 qd=1 offset=0 size=None runtime=Some(10s) ramp=2s direct=true fsync=false mix=50 ring[fixed_bufs=true fixed_files=true sqpoll=false iopoll=false batch=1]
            fio --name=qd32 --ioengine=io_uring --filename=/dev/loop7 --rw=randread --bs=4096 --iodepth=32 --direct=1 --fixedbufs --registerfiles --time_based --runtime=10 --ramp_time=2 --numjobs=2 --norandommap --group_reporting --output-format=json
            ours: qd32.0 x2 on /dev/loop7: randread bs=4096 qd=32 offset=0 size=None runtime=Some(10s) ramp=2s direct=true fsync=false mix=50 ring[fixed_bufs=true fixed_files=true sqpoll=false iopoll=false batch=1]"#]],
    );
}

#[test]
fn mixed_sized_synced_and_batched() {
    check(
        "
[mixed]
filename=/var/tmp/f
rw=randrw
rwmixwrite=30
bs=16k
size=1g
offset=64m
iodepth=8
iodepth_batch_submit=4
fdatasync=1
",
        expect![[r#"
            fio --name=mixed --ioengine=io_uring --filename=/var/tmp/f --rw=randrw --rwmixread=70 --bs=16384 --iodepth=8 --size=1073741824 --offset=67108864 --direct=0 --fdatasync=1 --numjobs=1 --norandommap --group_reporting --output-format=json --iodepth_batch_submit=4
            ours: mixed x1 on /var/tmp/f: randrw bs=16384 qd=8 offset=67108864 size=Some(1073741824) runtime=None ramp=0ns direct=false fsync=true mix=70 ring[fixed_bufs=false fixed_files=false sqpoll=false iopoll=false batch=4]"#]],
    );
}

#[test]
fn rbd_jobs_name_pool_image_and_client() {
    check(
        "
[rbd-randwrite]
ioengine=rbd
pool=${POOL}
rbdname=bench
clientname=admin
rw=randwrite
bs=4k
iodepth=16
time_based
runtime=1m
",
        expect![[r#"
            CEPH_ARGS=--rbd_cache=false fio --name=rbd-randwrite --ioengine=rbd --pool=rbd --rbdname=bench --clientname=admin --rw=randwrite --bs=4096 --iodepth=16 --direct=0 --time_based --runtime=60 --numjobs=1 --norandommap --group_reporting --output-format=json
            ours: rbd-randwrite x1 on rbd:rbd/bench as client.admin (/tmp/dev/ceph.conf): randwrite bs=4096 qd=16 offset=0 size=None runtime=Some(60s) ramp=0ns direct=false fsync=false mix=50 ring[fixed_bufs=false fixed_files=false sqpoll=false iopoll=false batch=1]"#]],
    );
    // Without a cluster to reach, an rbd job cannot be ours.
    let jobs = parse_job_file("[r]\nioengine=rbd\npool=p\nrbdname=i\nrw=read\n", &env).unwrap_or_default();
    let e = to_specs(&jobs[0], None).err().unwrap_or_default();
    assert!(e.contains("--ceph-conf"), "{e}");
}

#[test]
fn refusals_name_the_line_and_the_reason() {
    let cases: &[(&str, Expect)] = &[
        (
            "[a]\nfilename=/f\nrw=randread\nverify=crc32c\n",
            expect![[
                r#"error: line 4: option "verify" is not supported by compare-fio (it would run differently in the two engines); see docs/perf.md for the options it takes"#
            ]],
        ),
        (
            "[a]\nfilename=/f\nrw=randread\nioengine=libaio\n",
            expect![
                "error: line 4: ioengine=libaio: compare-fio runs io_uring (files, block devices) or rbd (librbd) jobs"
            ],
        ),
        ("[a]\nfilename=${NOPE}\nrw=read\n", expect!["error: line 2: environment variable NOPE is not set"]),
        (
            "[a]\nfilename=/f\nrw=randread\nruntime=10\n",
            expect![
                "error: line 1: [a] has runtime without time_based: fio would stop at whichever of size and runtime comes first; add time_based, or drop runtime for a size-based run"
            ],
        ),
        (
            "[a]\nfilename=/f\nrw=trim\n",
            expect![[r#"error: line 3: rw: unknown rw "trim": use randread, randwrite, read, write or randrw"#]],
        ),
        (
            "[a]\nfilename=/f\nrw=write\nfsync=1\n",
            expect!["error: line 4: fsync: use fdatasync=1 (the engine links an fdatasync to every write)"],
        ),
        (
            "[a]\nfilename=/f\nrw=write\nfdatasync=8\n",
            expect!["error: line 4: fdatasync=8: only 1 (after every write) is supported"],
        ),
        (
            "[a]\nfilename=/f\nrw=write\nbs=4q\n",
            expect![[r#"error: line 4: bs: "4q": unknown size unit (use k, m, g or t)"#]],
        ),
        ("[a]\nrw=write\n", expect!["error: line 1: [a] has no filename="]),
        ("[a]\nfilename=/f\n", expect!["error: line 1: [a] has no rw="]),
        ("[global]\nbs=4k\n", expect!["error: the job file has no job section (only [global] or nothing)"]),
        ("bs=4k\n[a]\n", expect![[r#"error: line 1: option "bs" before any [section]"#]]),
        ("[a\n", expect![[r#"error: line 1: "[a": a section header ends with ]"#]]),
        ("[r]\nioengine=rbd\nrw=read\n", expect!["error: line 1: [r] uses ioengine=rbd: give pool= and rbdname="]),
        (
            "[a]\nfilename=/f\nrw=read\nnorandommap=0\n",
            expect!["error: line 4: norandommap=0: our engine draws random offsets with replacement"],
        ),
        ("[a]\nfilename=/f\nrw=read\ndirect=yes\n", expect![[r#"error: line 4: direct: "yes" is not 0 or 1"#]]),
        (
            "[a]\nfilename=/f\nrw=read\nbs=0\n",
            expect!["error: line 1: invalid I/O job: a: block size 0 must be a multiple of 512 up to 67108864"],
        ),
    ];
    for (text, expect) in cases {
        let got = match parse_job_file(text, &env) {
            Err(e) => format!("error: {e}"),
            Ok(jobs) => match to_specs(&jobs[0], None) {
                Err(e) => format!("error: line 1: {e}"),
                Ok(_) => "accepted".into(),
            },
        };
        expect.assert_eq(&got);
    }
}

#[test]
fn sizes_and_times_count_as_fio_does() {
    assert_eq!(fio_size("4k"), Ok(4096));
    assert_eq!(fio_size("4KiB"), Ok(4096));
    assert_eq!(fio_size("4KB"), Ok(4096), "fio's kb_base is 1024 unless told otherwise");
    assert_eq!(fio_size("1g"), Ok(1 << 30));
    assert_eq!(fio_size("512"), Ok(512));
    assert!(fio_size("k").is_err());
    assert_eq!(fio_seconds("30"), Ok(30));
    assert_eq!(fio_seconds("2m"), Ok(120));
    assert!(fio_seconds("500ms").is_err());
}

/// Our jobs rendered for fio and read back give the same jobs: the two directions agree.
#[test]
fn specs_round_trip_through_fio() {
    let mut j = JobSpec::new("/var/tmp/x", cyvault_perf::io::Rw::RandRw);
    j.rwmixread = 70;
    j.block_size = 8192;
    j.iodepth = 4;
    j.size = Some(1 << 28);
    j.offset = 1 << 20;
    j.runtime = Some(std::time::Duration::from_secs(3));
    j.ramp = std::time::Duration::from_secs(1);
    j.fsync = true;
    let specs = j.replicate(2, cyvault_perf::io::RegionLayout::Shared).unwrap_or_default();
    let f: FioJob = from_specs(&specs).unwrap_or_else(|e| panic!("{e}"));
    let back = to_specs(&f, None).unwrap_or_default();
    assert_eq!(back.len(), 2);
    for (a, b) in specs.iter().zip(&back) {
        let mut b = b.clone();
        b.name = a.name.clone();
        assert_eq!(a, &b);
    }
    // An RBD job goes to fio's rbd engine with the same cluster.
    let rbd = TargetSpec::Rbd { ceph: login(), pool: "rbd".into(), image: "img".into() };
    let f = from_specs(&[JobSpec::new(rbd, cyvault_perf::io::Rw::RandWrite)]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        f.env(),
        vec![
            ("CEPH_CONF".to_string(), "/tmp/dev/ceph.conf".to_string()),
            ("CEPH_ARGS".to_string(), "--rbd_cache=false".to_string())
        ]
    );
    assert!(f.args().contains(&"--rbdname=img".to_string()), "{:?}", f.args());
}
