//! Runs `rados bench` (from ceph-common) as the baseline and reads its summary.

use std::process::Command;
use std::time::Duration;

use serde::Serialize;

/// The numbers we take from a `rados bench` summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RadosBenchResult {
    pub mode: String,
    pub ops_per_sec: f64,
    pub avg_latency_us: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum RadosBenchError {
    #[error("run `rados bench` (is ceph-common installed?): {0}")]
    Spawn(#[from] std::io::Error),
    #[error("`rados bench {mode}` failed with {status}: {stderr}")]
    Failed { mode: String, status: String, stderr: String },
    #[error("`rados bench {mode}` printed no `Average IOPS` line")]
    Unparsable { mode: String },
}

/// How to reach the pool.
#[derive(Clone, Debug)]
pub struct RadosTarget {
    pub conf: String,
    pub id: String,
    pub pool: String,
}

fn rados(t: &RadosTarget) -> Command {
    let mut c = Command::new("rados");
    c.env_remove("CEPH_ARGS").args(["-c", &t.conf, "--id", &t.id, "-p", &t.pool]);
    c
}

/// `rados bench SECS write -b SIZE -t CONCURRENCY --no-cleanup`, then the same for `rand`
/// reads over those objects, then cleanup. Returns (write, read).
pub fn run(
    t: &RadosTarget,
    duration: Duration,
    size: usize,
    concurrency: usize,
    run_name: &str,
) -> Result<(RadosBenchResult, RadosBenchResult), RadosBenchError> {
    let secs = duration.as_secs().max(1).to_string();
    let (size, conc) = (size.to_string(), concurrency.to_string());
    let write = bench(
        t,
        &["bench", &secs, "write", "-b", &size, "-t", &conc, "--no-cleanup", "--run-name", run_name],
        "write",
    )?;
    let read = bench(t, &["bench", &secs, "rand", "-t", &conc, "--run-name", run_name], "rand");
    let cleanup = rados(t).args(["cleanup", "--run-name", run_name]).output();
    if let Err(e) = &cleanup {
        tracing::warn!(error = %e, "rados cleanup after the benchmark failed");
    }
    Ok((write, read?))
}

fn bench(t: &RadosTarget, args: &[&str], mode: &str) -> Result<RadosBenchResult, RadosBenchError> {
    let out = rados(t).args(args).output()?;
    if !out.status.success() {
        return Err(RadosBenchError::Failed {
            mode: mode.into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().chars().take(2000).collect(),
        });
    }
    parse(&String::from_utf8_lossy(&out.stdout), mode).ok_or(RadosBenchError::Unparsable { mode: mode.into() })
}

/// Reads `Average IOPS:` and `Average Latency(s):` from a `rados bench` summary.
pub fn parse(stdout: &str, mode: &str) -> Option<RadosBenchResult> {
    let field = |name: &str| {
        stdout.lines().find_map(|l| l.trim().strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok()))
    };
    Some(RadosBenchResult {
        mode: mode.into(),
        ops_per_sec: field("Average IOPS:")?,
        avg_latency_us: field("Average Latency(s):").map_or(0.0, |s| s * 1e6),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_write_summary() {
        let out = "Total time run:         2.00193\nTotal writes made:      19564\nWrite size:             4096\n\
                   Average IOPS:           9772\nStddev IOPS:            1423.41\nAverage Latency(s):     0.00163617\n";
        let r = parse(out, "write");
        assert_eq!(r.as_ref().map(|r| (r.mode.as_str(), r.ops_per_sec)), Some(("write", 9772.0)));
        let lat = r.map_or(0.0, |r| r.avg_latency_us);
        assert!((lat - 1636.17).abs() < 1e-6, "latency in microseconds: {lat}");
    }

    #[test]
    fn rejects_output_without_a_summary() {
        assert_eq!(parse("error opening pool foo: (2) No such file or directory\n", "rand"), None);
    }
}
