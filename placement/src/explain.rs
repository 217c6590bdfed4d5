//! Decisions for people (a table) and for machines (a serializable [`Report`]).

use std::fmt::Write as _;

use serde::Serialize;

use crate::engine::*;
use crate::model::*;
use crate::size::format_size;

/// One decision or refusal with every name spelled out: what `--json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub placed: bool,
    /// `cluster/pool` when placed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The refusal's code (`VAULT-PL-001`) when refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// The refusal's message when refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Whether a retry could succeed without a change to the topology or the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permanent: Option<bool>,
    pub request: Request,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// The candidates, best first.
    pub candidates: Vec<CandidateReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CandidateReport {
    pub pool: String,
    pub device_class: String,
    pub redundancy: String,
    pub copies: u32,
    pub failure_domain: FailureDomain,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_source: Option<LatencySource>,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    /// Fill ratio if the request landed here (`null` for a pool of capacity 0).
    pub fill_after: Option<f64>,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The verdict in words.
    pub reason: String,
}

/// Orders candidates best first: furthest through the checks, then nearest band, emptiest, name.
fn ordered(topo: &Topology, candidates: &[Candidate]) -> Vec<Candidate> {
    let band = topo.defaults.latency_band_ms;
    let mut v = candidates.to_vec();
    // Within a stage, the order the engine used: eligible pools by band then fill; pools that
    // missed headroom emptiest first; the rest nearest first. So the first row of the refusing
    // stage is the "nearest" the refusal names.
    let rtt = |c: &Candidate| c.rtt.map_or(f64::INFINITY, |(r, _)| r.p99_ms);
    let rank = |c: &Candidate| topo.pool_rank[c.pool as usize];
    v.sort_by(|a, b| {
        let (sa, sb) = (a.verdict.stage(), b.verdict.stage());
        sb.cmp(&sa).then_with(|| match sa {
            7 | 8 => {
                let band_of = |c: &Candidate| c.rtt.map_or(u64::MAX, |(r, _)| (r.p99_ms / band) as u64);
                band_of(a).cmp(&band_of(b)).then(a.fill_after.total_cmp(&b.fill_after)).then(rank(a).cmp(&rank(b)))
            }
            6 => a.fill_after.total_cmp(&b.fill_after).then(rank(a).cmp(&rank(b))),
            _ => rtt(a).total_cmp(&rtt(b)).then(rank(a).cmp(&rank(b))),
        })
    });
    v
}

fn ms(v: f64) -> String {
    if v < 0.1 { format!("{v:.2} ms") } else { format!("{v:.1} ms") }
}

fn reason(v: Verdict, policy: Option<&Policy>, pool: &Pool) -> String {
    match v {
        Verdict::Chosen => "chosen".into(),
        Verdict::Eligible { lost_on: Tiebreak::Farther } => "eligible, but in a farther latency band".into(),
        Verdict::Eligible { lost_on: Tiebreak::Fuller } => "eligible, but would be fuller".into(),
        Verdict::Eligible { lost_on: Tiebreak::Name } => "eligible, tie broken by name".into(),
        Verdict::WrongClass => format!(
            "class {} is not {}",
            pool.device_class,
            policy.and_then(|p| p.device_class.as_deref()).unwrap_or("the required one")
        ),
        Verdict::TooFewCopies { have, want } => format!("{have} copies, needs {want}"),
        Verdict::WeakFailureDomain { have, want } => format!("copies across {have}s, needs {want}s"),
        Verdict::Unreachable => "no link from the consumer".into(),
        Verdict::TooFar { over_ms } => format!("{} over the latency budget", ms(over_ms)),
        Verdict::NoHeadroom { max_fill } => format!("would pass the {:.1}% fill limit", max_fill * 100.0),
    }
}

impl Report {
    pub fn of(topo: &Topology, result: &Result<Decision, Refusal>) -> Report {
        let (request, policy, candidates) = match result {
            Ok(d) => (&d.request, Some(&d.policy), &d.candidates),
            Err(r) => (&r.request, r.policy.as_ref(), &r.candidates),
        };
        let candidates = ordered(topo, candidates)
            .into_iter()
            .map(|c| {
                let p = &topo.pools[c.pool as usize];
                CandidateReport {
                    pool: p.id(),
                    device_class: p.device_class.clone(),
                    redundancy: p.redundancy.to_string(),
                    copies: p.redundancy.copies(),
                    failure_domain: p.failure_domain,
                    rtt_p50_ms: c.rtt.map(|(r, _)| r.p50_ms),
                    rtt_p99_ms: c.rtt.map(|(r, _)| r.p99_ms),
                    latency_source: c.rtt.map(|(_, s)| s),
                    capacity_bytes: p.capacity,
                    used_bytes: p.used,
                    fill_after: c.fill_after.is_finite().then_some(c.fill_after),
                    verdict: c.verdict,
                    reason: reason(c.verdict, policy, p),
                }
            })
            .collect();
        match result {
            Ok(d) => Report {
                placed: true,
                pool: Some(d.pool(topo).id()),
                code: None,
                message: None,
                permanent: None,
                request: request.clone(),
                policy: policy.cloned(),
                candidates,
            },
            Err(r) => Report {
                placed: false,
                pool: None,
                code: Some(r.code.as_str()),
                message: Some(r.message.clone()),
                permanent: Some(r.code.is_permanent()),
                request: request.clone(),
                policy: policy.cloned(),
                candidates,
            },
        }
    }

    /// The decision table and its conclusion, as `cyvault placement explain` prints it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let r = &self.request;
        let size = if r.size > 0 { format!("{} ", format_size(r.size)) } else { String::new() };
        let _ = write!(out, "{size}{} for {}", r.kind, r.consumer);
        if let Some(p) = &self.policy {
            let _ = write!(out, " under policy {}: p99 RTT <= {}", p.name, ms(p.latency_budget_ms));
            if let Some(c) = &p.device_class {
                let _ = write!(out, ", class {c}");
            }
            let _ = write!(out, ", >= {} copies", p.min_replicas);
            if let Some(fd) = p.failure_domain {
                let _ = write!(out, " across {fd}s");
            }
            let _ = write!(out, ", fill <= {:.0}%", p.max_fill * 100.0);
        }
        out.push('\n');
        if !self.candidates.is_empty() {
            let rows: Vec<[String; 6]> = self
                .candidates
                .iter()
                .map(|c| {
                    [
                        c.pool.clone(),
                        c.device_class.clone(),
                        format!("{}/{}", c.redundancy, c.failure_domain),
                        match (c.rtt_p99_ms, c.latency_source) {
                            (Some(v), Some(s)) => format!("{} ({})", ms(v), serde_plain(s)),
                            _ => "-".into(),
                        },
                        c.fill_after.map_or("-".into(), |f| format!("{:.1}%", f * 100.0)),
                        c.reason.clone(),
                    ]
                })
                .collect();
            let head = ["POOL", "CLASS", "REDUNDANCY", "RTT P99", "FILL AFTER", "VERDICT"];
            let mut width = head.map(str::len);
            for row in &rows {
                for (w, cell) in width.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            let mut line = |cells: &[String]| {
                let mut l = String::new();
                for (i, cell) in cells.iter().enumerate() {
                    if i + 1 == cells.len() {
                        l.push_str(cell);
                    } else {
                        let _ = write!(l, "{cell:<w$}  ", w = width[i]);
                    }
                }
                out.push_str(l.trim_end());
                out.push('\n');
            };
            line(&head.map(String::from));
            for row in &rows {
                line(row);
            }
        }
        match (&self.pool, self.code, &self.message) {
            (Some(pool), _, _) => {
                let _ = writeln!(out, "placed on {pool}");
            }
            (None, Some(code), Some(message)) => {
                let _ = writeln!(out, "refused: {code} {message}");
            }
            _ => {}
        }
        out
    }
}

fn serde_plain(s: LatencySource) -> &'static str {
    match s {
        LatencySource::Measured => "measured",
        LatencySource::Link => "link",
        LatencySource::Local => "local",
    }
}
