//! fio job files, so that `cyvault perf compare-fio JOB` runs each job of a file through our
//! engine and through fio alike; and the mapping between a [`FioJob`] and our [`JobSpec`]s,
//! both ways.
//!
//! The format is fio's: `[section]` headers, `key=value` or bare `key` lines, `#` and `;`
//! comments, `${VAR}` replaced by the environment variable (an unset one is an error, as in
//! fio). Options of a `[global]` section apply to the jobs that follow it. Only options whose
//! meaning both engines share are accepted; any other is refused by name and line, never
//! ignored, so the two runs of a comparison cannot silently differ. The accepted options are
//! listed in [`OPTIONS`] and in docs/perf.md.

use std::fmt;
use std::time::Duration;

use crate::fio::{FioJob, RbdTarget};
use crate::io::{CephLogin, JobSpec, RegionLayout, RingOptions, Rw, TargetSpec};

/// Every option a job file may use, with what it means here.
pub const OPTIONS: &[(&str, &str)] = &[
    ("filename", "the file or block device (io_uring engine)"),
    ("ioengine", "io_uring (files and block devices) or rbd (an RBD image through librbd)"),
    ("rw, readwrite", "read, write, randread, randwrite or randrw"),
    ("rwmixread, rwmixwrite", "the read (or write) percentage of randrw"),
    ("bs, blocksize", "bytes per operation: 4k, 64k, 1m (k = 1024, as fio counts)"),
    ("iodepth", "operations in flight per job"),
    ("iodepth_batch_submit, iodepth_batch", "submit after this many new operations"),
    ("size", "bytes of the region each job uses"),
    ("offset", "start of the region"),
    ("runtime", "seconds to measure (with time_based); units s, m, h"),
    ("time_based", "run for runtime, going round the region as often as needed"),
    ("ramp_time", "seconds at the start that are not counted"),
    ("numjobs", "copies of the job, in parallel, on the same region"),
    ("direct", "1: O_DIRECT"),
    ("fdatasync", "1: every write is followed by an fdatasync (the acknowledged write)"),
    ("hipri", "polled completions (IOPOLL)"),
    ("sqthread_poll", "a kernel thread polls the submission queue (SQPOLL)"),
    ("fixedbufs", "registered buffers"),
    ("registerfiles", "registered files"),
    ("pool, rbdname, clientname", "the RBD image of the rbd engine and the cephx id"),
    ("norandommap", "random offsets with replacement: always on, since our engine draws them so"),
    ("name, description, group_reporting, stonewall, thread, randrepeat", "accepted; they change nothing measured"),
];

/// A problem in a job file, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFileError {
    /// 1-based; 0 when the problem is the file as a whole.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for JobFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 { f.write_str(&self.message) } else { write!(f, "line {}: {}", self.line, self.message) }
    }
}

impl std::error::Error for JobFileError {}

/// One `key[=value]` line of a job file: (line, key in lower case, value with `${VAR}`s replaced).
type JobOption = (usize, String, Option<String>);

fn err(line: usize, message: impl Into<String>) -> JobFileError {
    JobFileError { line, message: message.into() }
}

/// Reads a job file into one [`FioJob`] per job section, in file order. `env` looks up the
/// `${VAR}`s.
pub fn parse_job_file(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<FioJob>, JobFileError> {
    let mut global: Vec<JobOption> = Vec::new();
    let mut sections: Vec<(usize, String, Vec<JobOption>)> = Vec::new();
    let mut in_global = false;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| err(line_no, format!("{line:?}: a section header ends with ]")))?;
            let name = name.trim();
            if name.is_empty() {
                return Err(err(line_no, "a section needs a name"));
            }
            in_global = name == "global";
            if !in_global {
                sections.push((line_no, name.to_string(), global.clone()));
            }
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(expand(v.trim(), line_no, env)?)),
            None => (line, None),
        };
        let key = key.to_ascii_lowercase();
        if in_global {
            global.push((line_no, key, value));
        } else if let Some((_, _, opts)) = sections.last_mut() {
            opts.push((line_no, key, value));
        } else {
            return Err(err(line_no, format!("option {key:?} before any [section]")));
        }
    }
    if sections.is_empty() {
        return Err(err(0, "the job file has no job section (only [global] or nothing)"));
    }
    sections.into_iter().map(|(line, name, opts)| job_from(line, &name, &opts)).collect()
}

/// `${VAR}` → the variable's value.
fn expand(value: &str, line: usize, env: &dyn Fn(&str) -> Option<String>) -> Result<String, JobFileError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| err(line, format!("unclosed ${{ in {value:?}")))?;
        let var = &after[..end];
        let v = env(var).ok_or_else(|| err(line, format!("environment variable {var} is not set")))?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// fio's sizes: a number with an optional k, m, g, t suffix (also KiB, KB, …), all powers of
/// 1024 as fio counts them by default.
pub fn fio_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let n: u64 = number.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("{s:?}: unknown size unit (use k, m, g or t)")),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

/// fio's times: seconds by default, or with s, m, h suffixes; whole seconds only.
pub fn fio_seconds(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let n: u64 = number.parse().map_err(|_| format!("{s:?} is not a time"))?;
    let mul = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("{s:?}: use whole seconds, or the suffixes s, m, h")),
    };
    Ok(n * mul)
}

fn flag(value: &Option<String>) -> Result<bool, String> {
    match value.as_deref().map(str::trim) {
        None | Some("1") | Some("true") => Ok(true),
        Some("0") | Some("false") => Ok(false),
        Some(v) => Err(format!("{v:?} is not 0 or 1")),
    }
}

fn job_from(line: usize, name: &str, opts: &[JobOption]) -> Result<FioJob, JobFileError> {
    let mut job = FioJob::new(name, "", Rw::Read);
    let mut rw_seen = false;
    let mut time_based = false;
    let mut rbd = (None::<String>, None::<String>, "admin".to_string());
    for (l, key, value) in opts {
        let l = *l;
        let need = |what: &str| value.as_deref().ok_or_else(|| err(l, format!("{key} needs a value ({what})")));
        let num = |what: &str| -> Result<u64, JobFileError> {
            need(what)?.trim().parse::<u64>().map_err(|_| err(l, format!("{key}: {:?} is not a number", value)))
        };
        let at = |e: String| err(l, format!("{key}: {e}"));
        match key.as_str() {
            "filename" => job.filename = need("a path")?.to_string(),
            "ioengine" => {
                let e = need("io_uring or rbd")?;
                if e != "io_uring" && e != "rbd" {
                    return Err(err(
                        l,
                        format!("ioengine={e}: compare-fio runs io_uring (files, block devices) or rbd (librbd) jobs"),
                    ));
                }
                job.ioengine = e.to_string();
            }
            "rw" | "readwrite" => {
                job.rw = need("randread, …")?.parse::<Rw>().map_err(at)?;
                rw_seen = true;
            }
            "rwmixread" => job.rwmixread = Some(percent(num("a percentage")?, l)?),
            "rwmixwrite" => job.rwmixread = Some(100 - percent(num("a percentage")?, l)?),
            "bs" | "blocksize" => job.bs = fio_size(need("a size")?).map_err(at)?,
            "iodepth" => job.iodepth = u32::try_from(num("a number")?).map_err(|_| err(l, "iodepth is too large"))?,
            "iodepth_batch_submit" | "iodepth_batch" => {
                job.extra.push(("iodepth_batch_submit".into(), num("a number")?.to_string()));
            }
            "size" => job.size = Some(fio_size(need("a size")?).map_err(at)?),
            "offset" => job.offset = fio_size(need("a size")?).map_err(at)?,
            "runtime" => job.runtime_secs = Some(fio_seconds(need("seconds")?).map_err(at)?),
            "time_based" => time_based = flag(value).map_err(at)?,
            "ramp_time" => job.ramp_secs = Some(fio_seconds(need("seconds")?).map_err(at)?).filter(|&s| s > 0),
            "numjobs" => {
                job.numjobs = u32::try_from(num("a number")?).map_err(|_| err(l, "numjobs is too large"))?;
            }
            "direct" => job.direct = flag(value).map_err(at)?,
            "fdatasync" => match num("1")? {
                0 => job.fsync = false,
                1 => job.fsync = true,
                n => return Err(err(l, format!("fdatasync={n}: only 1 (after every write) is supported"))),
            },
            "fsync" => {
                return Err(err(l, "fsync: use fdatasync=1 (the engine links an fdatasync to every write)"));
            }
            "hipri" => job.uring.hipri = flag(value).map_err(at)?,
            "sqthread_poll" => job.uring.sqthread_poll = flag(value).map_err(at)?,
            "fixedbufs" => job.uring.fixedbufs = flag(value).map_err(at)?,
            "registerfiles" => job.uring.registerfiles = flag(value).map_err(at)?,
            "pool" => rbd.0 = Some(need("a pool")?.to_string()),
            "rbdname" => rbd.1 = Some(need("an image")?.to_string()),
            "clientname" => rbd.2 = need("a cephx id")?.to_string(),
            "norandommap" => {
                if !flag(value).map_err(at)? {
                    return Err(err(l, "norandommap=0: our engine draws random offsets with replacement"));
                }
            }
            "name" | "description" | "group_reporting" | "stonewall" | "thread" | "randrepeat" => {}
            other => {
                return Err(err(
                    l,
                    format!(
                        "option {other:?} is not supported by compare-fio (it would run differently in the two \
                         engines); see docs/perf.md for the options it takes"
                    ),
                ));
            }
        }
    }
    if !rw_seen {
        return Err(err(line, format!("[{name}] has no rw=")));
    }
    if job.runtime_secs.is_some() && !time_based {
        return Err(err(
            line,
            format!(
                "[{name}] has runtime without time_based: fio would stop at whichever of size and runtime comes first; \
                 add time_based, or drop runtime for a size-based run"
            ),
        ));
    }
    if time_based && job.runtime_secs.is_none() {
        return Err(err(line, format!("[{name}] is time_based without a runtime")));
    }
    if job.rwmixread.is_some() && job.rw != Rw::RandRw {
        job.rwmixread = None;
    }
    job.norandommap = true;
    if job.ioengine == "rbd" {
        let (Some(pool), Some(image)) = (rbd.0, rbd.1) else {
            return Err(err(line, format!("[{name}] uses ioengine=rbd: give pool= and rbdname=")));
        };
        if !job.filename.is_empty() {
            return Err(err(line, format!("[{name}] uses ioengine=rbd: it takes pool= and rbdname=, not filename=")));
        }
        job.rbd = Some(RbdTarget { pool, image, client_name: rbd.2, conf: None });
    } else if job.filename.is_empty() {
        return Err(err(line, format!("[{name}] has no filename=")));
    }
    Ok(job)
}

fn percent(n: u64, line: usize) -> Result<u8, JobFileError> {
    u8::try_from(n).ok().filter(|&p| p <= 100).ok_or_else(|| err(line, format!("{n} is not a percentage")))
}

/// Our jobs for a fio job: `numjobs` copies on the same region (fio's default). `ceph` is
/// where an rbd job's cluster is (fio's rbd engine reads `CEPH_CONF`).
pub fn to_specs(job: &FioJob, ceph: Option<&CephLogin>) -> Result<Vec<JobSpec>, String> {
    let target = match &job.rbd {
        Some(r) => {
            let mut login = ceph.cloned().ok_or_else(|| {
                format!("[{}] is an rbd job: give --ceph-conf (or CYVAULT_CEPH_CONF) for its cluster", job.name)
            })?;
            login.id = r.client_name.clone();
            TargetSpec::Rbd { ceph: login, pool: r.pool.clone(), image: r.image.clone() }
        }
        None => TargetSpec::Path(job.filename.clone().into()),
    };
    let mut spec = JobSpec::new(target, job.rw);
    spec.name = job.name.clone();
    spec.rwmixread = job.rwmixread.unwrap_or(50);
    spec.fsync = job.fsync;
    spec.block_size = usize::try_from(job.bs).map_err(|_| format!("bs={} is too large", job.bs))?;
    spec.iodepth = job.iodepth as usize;
    spec.offset = job.offset;
    spec.size = job.size;
    spec.runtime = job.runtime_secs.map(Duration::from_secs);
    spec.ramp = Duration::from_secs(job.ramp_secs.unwrap_or(0));
    spec.direct = job.direct;
    let batch = job.extra.iter().rev().find(|(k, _)| k == "iodepth_batch_submit").map(|(_, v)| v.as_str());
    spec.ring = RingOptions {
        sqpoll: job.uring.sqthread_poll,
        iopoll: job.uring.hipri,
        fixed_bufs: job.uring.fixedbufs,
        fixed_files: job.uring.registerfiles,
        // fio's default is 1: submit each operation as it is queued.
        submit_batch: batch
            .map_or(Ok(1), str::parse)
            .map_err(|_| "iodepth_batch_submit is not a number".to_string())?,
        ..RingOptions::default()
    };
    let specs = spec.replicate(job.numjobs.max(1) as usize, RegionLayout::Shared).map_err(|e| e.to_string())?;
    for s in &specs {
        s.validate().map_err(|e| e.to_string())?;
    }
    Ok(specs)
}

/// The fio job that runs what our `jobs` (copies of one job on one region) run.
pub fn from_specs(jobs: &[JobSpec]) -> Result<FioJob, String> {
    let j = jobs.first().ok_or("no jobs")?;
    if jobs.iter().any(|o| o.offset != j.offset) {
        return Err("fio's numjobs share one region: run with --region shared".into());
    }
    let mut f = match &j.target {
        TargetSpec::Path(p) => FioJob::new(j.name.clone(), p.display().to_string(), j.rw),
        TargetSpec::Rbd { ceph, pool, image } => {
            let mut f = FioJob::new(j.name.clone(), "", j.rw);
            f.ioengine = "rbd".into();
            f.rbd = Some(RbdTarget {
                pool: pool.clone(),
                image: image.clone(),
                client_name: ceph.id.clone(),
                conf: Some(ceph.conf.clone()),
            });
            f
        }
        TargetSpec::Rados { .. } => {
            return Err(
                "compare-fio compares files, block devices and RBD images (fio has no RADOS layout like ours)".into()
            );
        }
    };
    f.bs = j.block_size as u64;
    f.iodepth = u32::try_from(j.iodepth).map_err(|_| "iodepth is too large")?;
    f.size = j.size;
    f.offset = j.offset;
    f.runtime_secs = j.runtime.map(|r| r.as_secs().max(1));
    f.ramp_secs = Some(j.ramp.as_secs()).filter(|&s| s > 0);
    f.numjobs = u32::try_from(jobs.len()).map_err(|_| "too many jobs")?;
    f.norandommap = true;
    f.direct = j.direct;
    f.fsync = j.fsync;
    f.rwmixread = (j.rw == Rw::RandRw).then_some(j.rwmixread);
    if f.ioengine == "io_uring" {
        f.uring.fixedbufs = j.ring.fixed_bufs;
        f.uring.registerfiles = j.ring.fixed_files;
        f.uring.hipri = j.ring.iopoll;
        f.uring.sqthread_poll = j.ring.sqpoll;
        f.extra.push(("iodepth_batch_submit".into(), j.ring.submit_batch.max(1).to_string()));
    }
    Ok(f)
}
