//! Prometheus metrics: requests by operation and outcome, latency, bytes, storage op latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub operation: String,
    /// `ok` or the S3 error code.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

fn latency() -> Histogram {
    // 50 µs … ~13 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 19))
}

pub struct Metrics {
    registry: Registry,
    placement: Arc<PlacementMetrics>,
    requests: Family<OpLabels, Counter>,
    latency: Family<OpLabels, Histogram, fn() -> Histogram>,
    http: Family<StatusLabels, Counter>,
    bytes_in: Counter,
    bytes_out: Counter,
    store_ops: Family<StoreLabels, Histogram, fn() -> Histogram>,
    store_errors: Family<StoreLabels, Counter>,
    in_flight: Gauge,
    in_flight_raw: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut root = Registry::default();
        let placement = Arc::new(PlacementMetrics::register(root.sub_registry_with_prefix("cyvault_placement")));
        let registry = root.sub_registry_with_prefix("cyvault_s3");
        let requests = Family::<OpLabels, Counter>::default();
        let op_latency = Family::<OpLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        let http = Family::<StatusLabels, Counter>::default();
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let store_ops = Family::<StoreLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        let store_errors = Family::<StoreLabels, Counter>::default();
        let in_flight = Gauge::default();
        registry.register("requests", "S3 operations by operation and outcome", requests.clone());
        registry.register("request_duration_seconds", "S3 operation latency", op_latency.clone());
        registry.register("http_responses", "HTTP responses by status (including auth failures)", http.clone());
        registry.register("received_bytes", "object bytes received (PUT, UploadPart)", bytes_in.clone());
        registry.register("sent_bytes", "object bytes sent (GET)", bytes_out.clone());
        registry.register("store_op_duration_seconds", "storage backend (RADOS) op latency", store_ops.clone());
        registry.register("store_op_errors", "storage backend ops that failed", store_errors.clone());
        registry.register("requests_in_flight", "HTTP requests being served", in_flight.clone());
        Metrics {
            registry: root,
            placement,
            requests,
            latency: op_latency,
            http,
            bytes_in,
            bytes_out,
            store_ops,
            store_errors,
            in_flight,
            in_flight_raw: AtomicU64::new(0),
        }
    }

    pub fn observe_op(&self, operation: &'static str, outcome: &str, took: Duration) {
        let l = OpLabels { operation: operation.to_string(), outcome: outcome.to_string() };
        self.requests.get_or_create(&l).inc();
        self.latency.get_or_create(&l).observe(took.as_secs_f64());
    }

    pub fn observe_http(&self, status: u16) {
        self.http.get_or_create(&StatusLabels { status: status.to_string() }).inc();
    }

    pub fn bytes_in(&self, n: u64) {
        self.bytes_in.inc_by(n);
    }

    pub fn bytes_out(&self, n: u64) {
        self.bytes_out.inc_by(n);
    }

    pub fn observe_store(&self, op: &'static str, took: Duration, ok: bool) {
        let l = StoreLabels { op: op.to_string() };
        self.store_ops.get_or_create(&l).observe(took.as_secs_f64());
        if !ok {
            self.store_errors.get_or_create(&l).inc();
        }
    }

    pub fn request_started(&self) {
        self.in_flight_raw.fetch_add(1, Ordering::Relaxed);
        self.in_flight.inc();
    }

    pub fn request_finished(&self) {
        self.in_flight_raw.fetch_sub(1, Ordering::Relaxed);
        self.in_flight.dec();
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight_raw.load(Ordering::Relaxed)
    }

    /// The placement engine's gauges and counters (`cyvault_placement_*`).
    pub fn placement(&self) -> &Arc<PlacementMetrics> {
        &self.placement
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RttLabels {
    pub pool: String,
    pub quantile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `placed` or the refusal code.
    pub outcome: String,
}

/// What the placement engine decides on, as measured, and what it decided.
#[derive(Debug)]
pub struct PlacementMetrics {
    rtt: Family<RttLabels, Gauge<f64, AtomicU64>>,
    capacity: Family<PoolLabels, Gauge>,
    used: Family<PoolLabels, Gauge>,
    probe_failures: Family<PoolLabels, Counter>,
    refreshes: Family<DecisionLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
}

impl PlacementMetrics {
    fn register(r: &mut Registry) -> PlacementMetrics {
        let m = PlacementMetrics {
            rtt: Family::default(),
            capacity: Family::default(),
            used: Family::default(),
            probe_failures: Family::default(),
            refreshes: Family::default(),
            decisions: Family::default(),
        };
        r.register(
            "pool_rtt_seconds",
            "round trip of a small RADOS op from this host to the pool (quantile 0.5 and 0.99 of the last probe)",
            m.rtt.clone(),
        );
        r.register(
            "pool_capacity_bytes",
            "usable bytes of the pool (stored + max avail, as ceph df)",
            m.capacity.clone(),
        );
        r.register("pool_used_bytes", "bytes stored in the pool (ceph df STORED)", m.used.clone());
        r.register("pool_probe_failures", "latency probes or capacity reads that failed", m.probe_failures.clone());
        r.register(
            "refreshes",
            "topology refreshes from the cluster by outcome (ok, partial, failed)",
            m.refreshes.clone(),
        );
        r.register("decisions", "bucket placements by outcome (placed or the VAULT-PL code)", m.decisions.clone());
        m
    }

    pub fn set_rtt(&self, pool: &str, p50: Duration, p99: Duration) {
        for (q, v) in [("0.5", p50), ("0.99", p99)] {
            self.rtt.get_or_create(&RttLabels { pool: pool.into(), quantile: q.into() }).set(v.as_secs_f64());
        }
    }

    pub fn set_usage(&self, pool: &str, capacity: u64, used: u64) {
        let l = PoolLabels { pool: pool.into() };
        self.capacity.get_or_create(&l).set(i64::try_from(capacity).unwrap_or(i64::MAX));
        self.used.get_or_create(&l).set(i64::try_from(used).unwrap_or(i64::MAX));
    }

    pub fn probe_failed(&self, pool: &str) {
        self.probe_failures.get_or_create(&PoolLabels { pool: pool.into() }).inc();
    }

    pub fn refreshed(&self, outcome: &str) {
        self.refreshes.get_or_create(&DecisionLabels { outcome: outcome.into() }).inc();
    }

    pub fn decision(&self, outcome: &str) {
        self.decisions.get_or_create(&DecisionLabels { outcome: outcome.into() }).inc();
    }
}
