//! Prometheus metrics, served at `GET /metrics`.
//!
//! Built on `prometheus-client`, the Prometheus project's own Rust client: it is small (no HTTP
//! server, no global recorder, no background thread), encodes the OpenMetrics text format that
//! Prometheus scrapes, and keeps each metric in the service's state rather than in a global, so
//! that the tests' many services in one process do not share counters.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `ledger_entries_accepted_total` | counter | `entry_type` |
//! | `ledger_entries_rejected_total` | counter | `kind` (the problem kind) |
//! | `ledger_size_entries` | gauge | — (set at each scrape) |
//! | `ledger_durable_writes` | gauge | — durable store writes since start (set at each scrape) |
//! | `ledger_entries_written` | gauge | — entries those writes appended; ÷ writes = mean group size |
//! | `http_request_duration_seconds` | histogram | `method`, `route`, `status` |
//! | `http_requests_in_flight` | gauge | — |
//! | `ledger_witness_cosigned_size` | gauge | `witness` — size of the last checkpoint it cosigned |
//! | `ledger_witness_failures_total` | counter | `witness` — rounds it did not cosign (down, refused) |

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EntryTypeLabel {
    entry_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WitnessLabel {
    witness: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

type HistogramFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The service's metrics and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    accepted: Family<EntryTypeLabel, Counter>,
    rejected: Family<KindLabel, Counter>,
    size: Gauge<i64, AtomicI64>,
    durable_writes: Gauge<i64, AtomicI64>,
    entries_written: Gauge<i64, AtomicI64>,
    latency: HistogramFamily,
    in_flight: Gauge<i64, AtomicI64>,
    witness_cosigned: Family<WitnessLabel, Gauge<i64, AtomicI64>>,
    witness_failures: Family<WitnessLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let accepted = Family::<EntryTypeLabel, Counter>::default();
        let rejected = Family::<KindLabel, Counter>::default();
        let size = Gauge::<i64, AtomicI64>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let in_flight = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "ledger_entries_accepted",
            "Entries appended to the ledger, by entry type",
            accepted.clone(),
        );
        registry.register(
            "ledger_entries_rejected",
            "Submissions refused, by problem kind",
            rejected.clone(),
        );
        registry.register("ledger_size_entries", "Entries in the ledger", size.clone());
        let durable_writes = Gauge::<i64, AtomicI64>::default();
        let entries_written = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "ledger_durable_writes",
            "Atomic, durable store writes (flush and fdatasync) since the service started",
            durable_writes.clone(),
        );
        registry.register(
            "ledger_entries_written",
            "Entries appended by those writes (concurrent submissions share writes)",
            entries_written.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (to the response head)",
            latency.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being answered",
            in_flight.clone(),
        );
        let witness_cosigned = Family::<WitnessLabel, Gauge<i64, AtomicI64>>::default();
        let witness_failures = Family::<WitnessLabel, Counter>::default();
        registry.register(
            "ledger_witness_cosigned_size",
            "Size of the last checkpoint each witness cosigned",
            witness_cosigned.clone(),
        );
        registry.register(
            "ledger_witness_failures",
            "Rounds in which a witness did not cosign (down, or refused)",
            witness_failures.clone(),
        );
        Self {
            registry,
            accepted,
            rejected,
            size,
            durable_writes,
            entries_written,
            latency,
            in_flight,
            witness_cosigned,
            witness_failures,
        }
    }

    /// A witness cosigned a checkpoint of `size`.
    pub fn witness_cosigned(&self, witness: &str, size: u64) {
        self.witness_cosigned
            .get_or_create(&WitnessLabel {
                witness: witness.to_owned(),
            })
            .set(i64::try_from(size).unwrap_or(i64::MAX));
    }

    /// A witness did not cosign in a round.
    pub fn witness_failed(&self, witness: &str) {
        self.witness_failures
            .get_or_create(&WitnessLabel {
                witness: witness.to_owned(),
            })
            .inc();
    }

    /// An entry was appended.
    pub fn accepted(&self, entry_type: &str) {
        self.accepted
            .get_or_create(&EntryTypeLabel {
                entry_type: entry_type.to_owned(),
            })
            .inc();
    }

    /// A submission was refused.
    pub fn rejected(&self, kind: &str) {
        self.rejected
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// A request was answered.
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.latency
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A request started (+1) or ended (−1).
    pub fn in_flight(&self, delta: i64) {
        self.in_flight.inc_by(delta);
    }

    /// The text exposition, with the ledger's size and write statistics as given.
    pub fn encode(&self, ledger_size: u64, writes: ledger_core::ledger::WriteStats) -> String {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.size.set(gauge(ledger_size));
        self.durable_writes.set(gauge(writes.durable_writes));
        self.entries_written.set(gauge(writes.entries));
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "metrics could not be encoded");
        }
        out
    }
}
