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
//! | `ledger_durable_writes_total` | counter | — durable store writes since start (brought up to date at each scrape) |
//! | `ledger_entries_written_total` | counter | — entries those writes appended; ÷ writes = mean group size |
//! | `http_request_duration_seconds` | histogram | `method`, `route`, `status` |
//! | `http_requests_in_flight` | gauge | — |
//! | `ledger_witness_cosigned_size` | gauge | `witness` — size of the last checkpoint it cosigned |
//! | `ledger_witness_failures_total` | counter | `witness` — rounds it did not cosign (down, refused) |
//! | `ledger_store_writable` | gauge | — 1 while writes succeed, 0 while they fail or are halted |
//! | `ledger_store_halted` | gauge | — 1 once writing stopped for good (the operator must act) |
//! | `ledger_store_failed_writes_total` | counter | — writes that failed (nothing of them acknowledged) |
//! | `ledger_store_recoveries_total` | counter | — recoveries from a reopened store |
//! | `ledger_store_adopted_entries_total` | counter | — entries of failed writes found durable on reopening |
//! | `log_lines_dropped_total` | counter | `reason`: `write_failed` (stderr refused it), `queue_full` |
//! | `http_connections_open` | gauge | — |
//! | `http_connections_closed_total` | counter | `reason`: `done`, `header_timeout`, `idle_timeout`, `stalled`, `evicted`, `refused`, `shutdown`, `aborted` (a handler panicked, or the drain deadline passed) |

use std::sync::atomic::AtomicI64;
use std::sync::Mutex;
use std::time::Duration;

use ledger_core::ledger::{FailureStats, WriteHealth};

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
struct ReasonLabel {
    reason: String,
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

/// One request counted in `http_requests_in_flight` (see [`Metrics::request_in_flight`]).
#[derive(Debug)]
#[must_use = "the request is counted only while the guard lives"]
pub struct InFlight {
    gauge: Gauge<i64, AtomicI64>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// The service's metrics and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    accepted: Family<EntryTypeLabel, Counter>,
    rejected: Family<KindLabel, Counter>,
    size: Gauge<i64, AtomicI64>,
    durable_writes: Counter,
    entries_written: Counter,
    latency: HistogramFamily,
    in_flight: Gauge<i64, AtomicI64>,
    witness_cosigned: Family<WitnessLabel, Gauge<i64, AtomicI64>>,
    witness_failures: Family<WitnessLabel, Counter>,
    store_writable: Gauge<i64, AtomicI64>,
    store_halted: Gauge<i64, AtomicI64>,
    failed_writes: Counter,
    recoveries: Counter,
    adopted_entries: Counter,
    log_lines_dropped: Family<ReasonLabel, Counter>,
    connections_open: Gauge<i64, AtomicI64>,
    connections_closed: Family<ReasonLabel, Counter>,
    /// Counters kept elsewhere (the ledger, the log writer) are brought up to date at a scrape,
    /// one scrape at a time.
    catching_up: Mutex<()>,
}

/// Moves `counter` up to `value`, a count kept elsewhere that only grows.
fn catch_up(counter: &Counter, value: u64) {
    let current = counter.get();
    if value > current {
        counter.inc_by(value - current);
    }
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
        // Counts since the start that only grow: counters (`_total`), so that `rate()` and
        // `increase()` read them right across a restart.
        let durable_writes = Counter::default();
        let entries_written = Counter::default();
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
        let store_writable = Gauge::<i64, AtomicI64>::default();
        let store_halted = Gauge::<i64, AtomicI64>::default();
        let failed_writes = Counter::default();
        let recoveries = Counter::default();
        let adopted_entries = Counter::default();
        let log_lines_dropped = Family::<ReasonLabel, Counter>::default();
        let connections_open = Gauge::<i64, AtomicI64>::default();
        let connections_closed = Family::<ReasonLabel, Counter>::default();
        store_writable.set(1);
        registry.register(
            "ledger_store_writable",
            "1 while the store takes writes, 0 while writes fail or are halted",
            store_writable.clone(),
        );
        registry.register(
            "ledger_store_halted",
            "1 once writing stopped for good: the operator must act",
            store_halted.clone(),
        );
        registry.register(
            "ledger_store_failed_writes",
            "Store writes that failed; nothing of them was acknowledged",
            failed_writes.clone(),
        );
        registry.register(
            "ledger_store_recoveries",
            "Recoveries from a reopened store after failed writes",
            recoveries.clone(),
        );
        registry.register(
            "ledger_store_adopted_entries",
            "Entries whose write reported a failure but which the reopened store held",
            adopted_entries.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines not written: stderr refused them, or its queue was full",
            log_lines_dropped.clone(),
        );
        registry.register(
            "http_connections_open",
            "Client connections open",
            connections_open.clone(),
        );
        registry.register(
            "http_connections_closed",
            "Client connections closed, by why",
            connections_closed.clone(),
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
            store_writable,
            store_halted,
            failed_writes,
            recoveries,
            adopted_entries,
            log_lines_dropped,
            connections_open,
            connections_closed,
            catching_up: Mutex::new(()),
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

    /// The store's write health and failure counts, as the ledger reports them.
    pub fn store(&self, health: &WriteHealth, failures: FailureStats) {
        self.store_writable.set(i64::from(health.is_accepting()));
        self.store_halted
            .set(i64::from(matches!(health, WriteHealth::Halted { .. })));
        let _one_at_a_time = self.catching_up.lock().unwrap_or_else(|e| e.into_inner());
        catch_up(&self.failed_writes, failures.failed_writes);
        catch_up(&self.recoveries, failures.recoveries);
        catch_up(&self.adopted_entries, failures.adopted_entries);
        let dropped = crate::logging::dropped_lines();
        for (reason, count) in [
            ("write_failed", dropped.write_failed),
            ("queue_full", dropped.queue_full),
        ] {
            catch_up(
                &self.log_lines_dropped.get_or_create(&ReasonLabel {
                    reason: reason.to_owned(),
                }),
                count,
            );
        }
    }

    /// A connection opened (+1) or closed (−1).
    pub fn connection_open(&self, delta: i64) {
        self.connections_open.inc_by(delta);
    }

    /// A connection closed, and why.
    pub fn connection_closed(&self, reason: &str) {
        self.connections_closed
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
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

    /// Counts a request in flight for as long as the guard lives. The guard lowers the gauge
    /// when it is dropped, so a request whose client went away (hyper then drops the handler's
    /// future, which never reaches the code after its `await`) is not counted for ever.
    pub fn request_in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight {
            gauge: self.in_flight.clone(),
        }
    }

    /// The text exposition, with the ledger's size and write statistics as given.
    pub fn encode(&self, ledger_size: u64, writes: ledger_core::ledger::WriteStats) -> String {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.size.set(gauge(ledger_size));
        {
            let _one_at_a_time = self.catching_up.lock().unwrap_or_else(|e| e.into_inner());
            catch_up(&self.durable_writes, writes.durable_writes);
            catch_up(&self.entries_written, writes.entries);
        }
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "metrics could not be encoded");
        }
        out
    }
}
