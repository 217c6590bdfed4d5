//! The placement engine's inputs from the real world: the topology file, pool capacity from
//! `ceph df`, and RTTs from timed RADOS round trips from this host. The engine itself stays pure;
//! this is the only place that measures.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cyvault_gateway::metrics::PlacementMetrics;
use cyvault_placement::{Rtt, Topology};
use cyvault_store::{Cluster, DynStore, ObjectRef, StoreError};
use serde::Serialize;
use tracing::{debug, warn};

/// Reads and validates a topology file; errors list every problem with its code.
pub fn load_topology(path: &Path) -> Result<Topology> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read the topology {}", path.display()))?;
    Topology::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// What to refresh and from where.
#[derive(Clone, Debug)]
pub struct Refresher {
    pub cluster: Arc<Cluster>,
    pub store: DynStore,
    pub namespace: String,
    /// The topology's name for the cluster `cluster` reaches.
    pub storage_cluster: String,
    /// The topology's cluster this host is in (probes measure from here).
    pub vantage: String,
    pub samples: u32,
    pub metrics: Option<Arc<PlacementMetrics>>,
}

/// One pool's refreshed numbers.
#[derive(Clone, Debug, Serialize)]
pub struct PoolObservation {
    pub pool: String,
    pub capacity_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
    pub rtt_p50_ms: Option<f64>,
    pub rtt_p99_ms: Option<f64>,
    /// Why a number is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// p50 and p99 (nearest rank) of samples, in milliseconds.
fn quantiles(mut samples: Vec<Duration>) -> Option<(Duration, Duration)> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = |q: f64| samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    Some((rank(0.5), rank(0.99)))
}

impl Refresher {
    /// Times `samples` stat round trips to a pool's primary OSDs (a missing probe object still
    /// costs a full round trip to the OSD, and writes nothing).
    async fn probe(&self, pool: &str) -> Result<(Duration, Duration), StoreError> {
        let mut took = Vec::with_capacity(self.samples as usize);
        for i in 0..self.samples.max(1) {
            // Different names land in different PGs, so the probe sees more than one OSD.
            let obj = ObjectRef::new(pool, self.namespace.clone(), format!("cyv.probe.{i}"));
            let t = Instant::now();
            match self.store.stat(&obj).await {
                Ok(_) | Err(StoreError::NotFound(_)) => took.push(t.elapsed()),
                Err(e) => return Err(e),
            }
        }
        Ok(quantiles(took).unwrap_or_default())
    }

    /// Refreshes capacity and RTT of every pool of the storage cluster in `topology`. A pool
    /// that cannot be measured keeps its previous numbers and is reported.
    pub async fn refresh(&self, topology: &RwLock<Topology>) -> Result<Vec<PoolObservation>> {
        let df = self.cluster.df().await.context("read pool usage (ceph df)")?;
        let pools: Vec<String> = {
            let topo = topology.read().map_err(|_| anyhow::anyhow!("topology lock poisoned"))?;
            topo.pools().iter().filter(|p| p.cluster == self.storage_cluster).map(|p| p.name.clone()).collect()
        };
        let mut out = Vec::new();
        for name in pools {
            let mut obs = PoolObservation {
                pool: name.clone(),
                capacity_bytes: None,
                used_bytes: None,
                rtt_p50_ms: None,
                rtt_p99_ms: None,
                problem: None,
            };
            let Some(d) = df.iter().find(|d| d.name == name) else {
                obs.problem = Some(format!("pool {name} is in the topology but not in the cluster"));
                if let Some(m) = &self.metrics {
                    m.probe_failed(&name);
                }
                out.push(obs);
                continue;
            };
            let probe = self.probe(&name).await;
            let mut topo = topology.write().map_err(|_| anyhow::anyhow!("topology lock poisoned"))?;
            topo.set_usage(&self.storage_cluster, &name, d.capacity_bytes(), d.stored_bytes)?;
            obs.capacity_bytes = Some(d.capacity_bytes());
            obs.used_bytes = Some(d.stored_bytes);
            if let Some(m) = &self.metrics {
                m.set_usage(&name, d.capacity_bytes(), d.stored_bytes);
            }
            match probe {
                Ok((p50, p99)) => {
                    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                    let rtt = Rtt { p50_ms: ms(p50), p99_ms: ms(p99) };
                    topo.observe_rtt(&self.vantage, &self.storage_cluster, &name, rtt)?;
                    obs.rtt_p50_ms = Some(rtt.p50_ms);
                    obs.rtt_p99_ms = Some(rtt.p99_ms);
                    if let Some(m) = &self.metrics {
                        m.set_rtt(&name, p50, p99);
                    }
                }
                Err(e) => {
                    obs.problem = Some(format!("probe failed: {e}"));
                    if let Some(m) = &self.metrics {
                        m.probe_failed(&name);
                    }
                }
            }
            out.push(obs);
        }
        Ok(out)
    }

    /// Refreshes every `every`, forever (spawn it). Failures are logged and retried next time.
    pub async fn run(self, topology: Arc<RwLock<Topology>>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let outcome = match self.refresh(&topology).await {
                Ok(obs) => {
                    let problems: Vec<&str> = obs.iter().filter_map(|o| o.problem.as_deref()).collect();
                    if problems.is_empty() {
                        debug!(pools = obs.len(), "placement: refreshed capacity and RTTs");
                        "ok"
                    } else {
                        warn!(problems = ?problems, "placement: refresh left some pools with old numbers");
                        "partial"
                    }
                }
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "placement: refresh failed; decisions use the previous numbers");
                    "failed"
                }
            };
            if let Some(m) = &self.metrics {
                m.refreshed(outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        assert_eq!(quantiles(vec![]), None);
        assert_eq!(quantiles(vec![ms(3)]), Some((ms(3), ms(3))));
        let hundred: Vec<Duration> = (1..=100).rev().map(ms).collect();
        assert_eq!(quantiles(hundred), Some((ms(50), ms(99))));
        assert_eq!(quantiles(vec![ms(1), ms(2), ms(9)]), Some((ms(2), ms(9))));
    }
}
