//! `cyvault perf store`: small-object write_full and read throughput through the storage API,
//! at a fixed concurrency, with completion-latency histograms.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cyvault_store::{ObjectRef, ObjectStore, ReadRange, StoreError};
use hdrhistogram::Histogram;
use serde::Serialize;

/// What to run.
#[derive(Clone, Debug)]
pub struct StoreBenchConfig {
    pub pool: String,
    /// Objects go to this namespace and are removed afterwards.
    pub namespace: String,
    pub object_size: usize,
    pub concurrency: usize,
    pub duration: Duration,
}

/// The result of one phase.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseReport {
    pub op: String,
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub mib_per_sec: f64,
    pub lat_p50_us: u64,
    pub lat_p99_us: u64,
    pub lat_max_us: u64,
    pub errors: u64,
    /// CPU time (user + system) this whole process spent per completed op during the phase:
    /// on a small machine, client CPU is taken from the OSDs, so it bounds throughput too.
    pub client_cpu_us_per_op: f64,
}

/// User + system CPU time of this process so far, in microseconds, from `/proc/self/stat`
/// (fields 14 and 15, in USER_HZ ticks: 100 per second on Linux). 0 where it cannot be read.
fn process_cpu_us() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may contain spaces; the fields after its closing paren don't.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After ")" the first field is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    (ticks(11) + ticks(12)) * 10_000.0
}

fn object(cfg: &StoreBenchConfig, worker: usize, i: u64) -> ObjectRef {
    ObjectRef::new(&cfg.pool, &cfg.namespace, format!("bench-{worker}-{i}"))
}

/// Runs `op` from `concurrency` workers until `duration` passes; each worker numbers its ops.
async fn phase<F, Fut>(
    name: &str,
    cfg: &StoreBenchConfig,
    tick: &(dyn Fn(u64) + Sync),
    op: F,
) -> (PhaseReport, Vec<u64>)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), StoreError>> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let cpu_start = process_cpu_us();
    let mut workers = Vec::new();
    for w in 0..cfg.concurrency {
        let (op, stop, done) = (Arc::clone(&op), Arc::clone(&stop), Arc::clone(&done));
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok();
            let (mut n, mut errors) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match op(w, n).await {
                    Ok(()) => {
                        if let Some(h) = hist.as_mut() {
                            let _ = h.record((t.elapsed().as_micros() as u64).max(1));
                        }
                        n += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => errors += 1,
                }
            }
            (hist, n, errors)
        }));
    }
    while start.elapsed() < cfg.duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tick(done.load(Ordering::Relaxed));
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok();
    let (mut ops, mut errors, mut per_worker) = (0, 0, Vec::new());
    for w in workers {
        if let Ok((hist, n, e)) = w.await {
            if let (Some(t), Some(h)) = (total.as_mut(), hist.as_ref()) {
                let _ = t.add(h);
            }
            ops += n;
            errors += e;
            per_worker.push(n);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = process_cpu_us() - cpu_start;
    let q = |p: f64| total.as_ref().map_or(0, |h| h.value_at_quantile(p));
    let report = PhaseReport {
        op: name.to_owned(),
        ops,
        seconds,
        ops_per_sec: ops as f64 / seconds,
        mib_per_sec: ops as f64 * cfg.object_size as f64 / seconds / (1024.0 * 1024.0),
        lat_p50_us: q(0.5),
        lat_p99_us: q(0.99),
        lat_max_us: total.as_ref().map_or(0, |h| h.max()),
        errors,
        client_cpu_us_per_op: if ops > 0 { cpu / ops as f64 } else { 0.0 },
    };
    (report, per_worker)
}

/// The `n`-th written object overall (mod the total), as (worker, index of that worker).
fn pick(written: &[u64], n: u64) -> (usize, u64) {
    let total: u64 = written.iter().sum();
    let mut n = n % total.max(1);
    for (w, count) in written.iter().enumerate() {
        if n < *count {
            return (w, n);
        }
        n -= count;
    }
    (0, 0)
}

/// splitmix64: a well-spread, deterministic hash of an op number.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Write phase, then read phase over what was written, then cleanup. `tick(phase, ops)` is
/// called about ten times a second for progress display.
pub async fn run(
    store: Arc<dyn ObjectStore>,
    cfg: &StoreBenchConfig,
    tick: &(dyn Fn(&str, u64) + Sync),
) -> Result<Vec<PhaseReport>, StoreError> {
    let payload = Bytes::from((0..cfg.object_size).map(|i| (i * 7) as u8).collect::<Vec<_>>());
    let (write, written) = {
        let (s, c, p) = (Arc::clone(&store), cfg.clone(), payload.clone());
        phase("write_full", cfg, &|n| tick("write_full", n), move |w, i| {
            let (s, c, p) = (Arc::clone(&s), c.clone(), p.clone());
            async move { s.write_full(&object(&c, w, i), p).await.map(|_| ()) }
        })
        .await
    };
    if written.iter().all(|n| *n == 0) {
        return Err(StoreError::Unavailable("the write phase completed no operation".into()));
    }
    let written = Arc::new(written);
    let (read, _) = {
        let (s, c, written) = (Arc::clone(&store), cfg.clone(), Arc::clone(&written));
        phase("read", cfg, &|n| tick("read", n), move |w, i| {
            let (s, c) = (Arc::clone(&s), c.clone());
            // Like `rados bench rand`: each op reads a random object of the write phase (seeded by
            // worker and op number, so runs are repeatable). Reading them in write order instead
            // would start with the objects least likely to still be in the OSD's cache.
            let (worker, idx) = pick(&written, mix(((w as u64) << 40) ^ i));
            async move {
                // Like `rados bench rand`, read the known object size.
                let r =
                    s.read(&object(&c, worker, idx), ReadRange::Range { offset: 0, len: c.object_size as u64 }).await?;
                if r.data.len() == c.object_size {
                    Ok(())
                } else {
                    Err(StoreError::corrupt("bench object", "wrong size"))
                }
            }
        })
        .await
    };
    // Remove what was written, one task per writer, so cleanup is as parallel as the writes.
    let total: u64 = written.iter().sum();
    let removed = Arc::new(AtomicU64::new(0));
    let mut cleaners = Vec::new();
    for (w, n) in written.iter().copied().enumerate() {
        let (s, c, removed) = (Arc::clone(&store), cfg.clone(), Arc::clone(&removed));
        cleaners.push(tokio::spawn(async move {
            for i in 0..n {
                let _ = s.remove(&object(&c, w, i)).await;
                removed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for c in cleaners {
        let _ = c.await;
        tick("cleanup", removed.load(Ordering::Relaxed));
    }
    tracing::debug!(objects = total, "benchmark objects removed");
    Ok(vec![write, read])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_cover_every_written_object_and_only_those() {
        let written = [3, 0, 2];
        let got: Vec<_> = (0..5).map(|n| pick(&written, n)).collect();
        assert_eq!(got, vec![(0, 0), (0, 1), (0, 2), (2, 0), (2, 1)]);
        assert_eq!(pick(&written, 5), (0, 0), "wraps around");
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..1000 {
            seen.insert(pick(&written, mix(i)));
        }
        assert_eq!(seen.len(), 5, "random picks reach every object");
    }
}
