//! `GET /v1/events?from=SEQ`: the ledger's entries as server-sent events, from `SEQ` on, then
//! each new one as it is accepted — so that a bank's system follows the ledger, and the coverage
//! of the pledges it lends against, without polling.
//!
//! Each event is one `data:` line of JSON, with the entry's seq as the event id:
//!
//! ```json
//! {"seq": 23, "type": "publish_price", "id": "price-7", "accepted_at": "…",
//!  "coverage": [{"pledge": "PL-2022-001", "price": "BM-2022-09", "coverage_ratio": "1.2142",
//!                "margin_threshold": "1.25", "below_threshold": true}],
//!  "below_threshold": ["PL-2022-001"]}
//! ```
//!
//! `coverage` lists the pledges whose coverage the entry changed: a new price of their reference
//! basis, or a pledge, drawdown, repayment, release or enforcement of theirs. Their figures are
//! those of the state when the event is sent — for an event sent as its entry is accepted, the
//! coverage right after it. `below_threshold` names those now under their margin threshold.
//!
//! When the service stops, the stream ends at once rather than holding the stop until its drain
//! deadline; a client reconnects with `from` set to the seq after the last event it received.
//!
//! A stream that has sent every entry waits for the ledger to grow. The ledger's size is read
//! for all the service's streams by one task, every 200 ms while any stream is open
//! (`SizeWatch`), so that a thousand quiet streams cost what one does.
//!
//! While no entry arrives, the stream sends a comment line as a keep-alive, more often than the
//! service's idle timeout (which cuts a response its client has not read from for as long: see
//! [`crate::connections`]), so that a quiet stream stays open whatever that timeout is set to.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use ledger_core::entry::EntryKind;
use ledger_core::ids::{PledgeId, Timestamp};
use ledger_core::ledger::Ledger;
use ledger_core::state::{PledgeStatus, State as LedgerState};
use ledger_core::wire::Envelope;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::problem::ApiError;
use crate::routes::{AppState, QueryParams};

/// How often the ledger's size is read while streams wait for new entries.
const POLL: Duration = Duration::from_millis(200);

/// The longest interval between two keep-alive comments, when the idle timeout allows it.
const KEEP_ALIVE_MAX: Duration = Duration::from_secs(15);

/// How often an idle stream sends a keep-alive comment: a third of the idle timeout (so that a
/// late one still comes in time), at most [`KEEP_ALIVE_MAX`], at least every 100 ms.
fn keep_alive_interval(idle_timeout: Duration) -> Duration {
    (idle_timeout / 3).clamp(Duration::from_millis(100), KEEP_ALIVE_MAX)
}

/// Entries read at a time.
const CHUNK: usize = 100;

/// The ledger's size as the event streams follow it: while any stream is open, one task reads it
/// every [`POLL`] and every stream waits on that, instead of each stream reading the ledger.
/// The task starts with the first stream, and ends after the last one or when the service stops.
#[derive(Debug, Default)]
pub(crate) struct SizeWatch(std::sync::Mutex<Option<watch::Sender<u64>>>);

impl SizeWatch {
    /// The watching task's channel, if it runs.
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<watch::Sender<u64>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A stream's view of the ledger's size, from the service's one watching task (started here if
/// no stream is open).
fn follow_size(state: &AppState) -> watch::Receiver<u64> {
    let mut slot = state.size_watch().slot();
    if let Some(sender) = slot.as_ref() {
        return sender.subscribe();
    }
    let (sender, receiver) = watch::channel(0);
    *slot = Some(sender.clone());
    tokio::spawn(watch_size(state.clone(), sender));
    receiver
}

/// The watching task: reads the ledger's size every [`POLL`] and tells the streams when it grew.
async fn watch_size(state: AppState, sender: watch::Sender<u64>) {
    let mut stopping = state.stopping();
    loop {
        {
            // Under the slot's lock, so that a stream opening now either joins this task or,
            // once it is gone, starts another.
            let mut slot = state.size_watch().slot();
            if sender.receiver_count() == 0 || *stopping.borrow() {
                *slot = None;
                return;
            }
        }
        let ledger = state.ledger().clone();
        if let Ok(size) = tokio::task::spawn_blocking(move || ledger.size()).await {
            sender.send_if_modified(|known| std::mem::replace(known, size) != size);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stopping.changed() => {}
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    from: Option<u64>,
}

/// A pledge's coverage in an event.
#[derive(Debug, Serialize)]
struct PledgeCoverage {
    pledge: PledgeId,
    status: PledgeStatus,
    price: Option<String>,
    coverage_ratio: Option<rust_decimal::Decimal>,
    margin_threshold: Option<ledger_core::num::Ratio>,
    below_threshold: bool,
}

/// One event.
#[derive(Debug, Serialize)]
struct LedgerEvent {
    seq: u64,
    #[serde(rename = "type")]
    entry_type: String,
    id: String,
    accepted_at: String,
    coverage: Vec<PledgeCoverage>,
    below_threshold: Vec<PledgeId>,
}

/// The pledges whose coverage an entry changes.
fn affected(state: &LedgerState, kind: &EntryKind) -> Vec<PledgeId> {
    match kind {
        EntryKind::PublishPrice(price) => state
            .pledges()
            .filter(|p| {
                p.status == PledgeStatus::Active
                    && state
                        .price(&p.price_ref)
                        .is_some_and(|r| r.basis == price.basis && r.currency == price.currency)
            })
            .map(|p| p.id.clone())
            .collect(),
        EntryKind::Pledge(p) => vec![p.pledge.clone()],
        EntryKind::Drawdown(m) | EntryKind::Repay(m) => vec![m.pledge.clone()],
        EntryKind::ReleasePledge(a) | EntryKind::EnforcePledge(a) => vec![a.pledge.clone()],
        _ => Vec::new(),
    }
}

/// The event of one leaf, with coverage figures from the state now.
fn event_of(state: &LedgerState, seq: u64, leaf: &[u8], now: &Timestamp) -> Option<LedgerEvent> {
    let envelope = Envelope::from_leaf(leaf).ok()?;
    let body = &envelope.entry.body;
    let coverage: Vec<PledgeCoverage> = affected(state, &body.kind)
        .into_iter()
        .filter_map(|id| {
            let pledge = state.pledge(&id)?;
            let found = state.coverage_at(pledge, now);
            Some(PledgeCoverage {
                pledge: id,
                status: pledge.status,
                price: found.as_ref().map(|(p, _)| p.id.to_string()),
                coverage_ratio: found.as_ref().and_then(|(_, c)| c.coverage_ratio),
                margin_threshold: pledge.margin_threshold,
                below_threshold: found.is_some_and(|(_, c)| c.below_threshold),
            })
        })
        .collect();
    Some(LedgerEvent {
        seq,
        entry_type: body.type_name().to_owned(),
        id: body.id.to_string(),
        accepted_at: envelope.accepted_at.to_string(),
        below_threshold: coverage
            .iter()
            .filter(|c| c.below_threshold)
            .map(|c| c.pledge.clone())
            .collect(),
        coverage,
    })
}

/// The events of entries `[from, from + CHUNK)` that exist.
fn read_events(ledger: &Ledger, from: u64) -> Result<Vec<(u64, String)>, String> {
    let leaves = ledger.leaves(from, CHUNK).map_err(|e| e.to_string())?;
    let now = Timestamp::now();
    ledger.read(|state| {
        leaves
            .iter()
            .map(|(seq, leaf)| {
                let event = event_of(state, *seq, leaf, &now)
                    .ok_or_else(|| format!("leaf {seq} cannot be read"))?;
                serde_json::to_string(&event)
                    .map(|json| (*seq, json))
                    .map_err(|e| e.to_string())
            })
            .collect()
    })
}

/// `GET /v1/events?from=SEQ`.
pub(crate) async fn events(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let from = query.from.unwrap_or(0);
    let ledger = state.ledger().clone();
    let keep_alive = KeepAlive::new().interval(keep_alive_interval(state.limits().idle_timeout));
    let stopping = state.stopping();
    let size = follow_size(&state);
    let events = stream::unfold(
        (
            ledger,
            from,
            std::collections::VecDeque::new(),
            stopping,
            size,
        ),
        |(ledger, mut next, mut queue, mut stopping, mut size)| async move {
            loop {
                // A stopping service ends the stream; the client resumes with `from`.
                if *stopping.borrow() {
                    return None;
                }
                if let Some((seq, json)) = queue.pop_front() {
                    let event = Event::default().id(format!("{seq}")).data(json);
                    return Some((Ok(event), (ledger, next, queue, stopping, size)));
                }
                let reader = ledger.clone();
                let read = tokio::task::spawn_blocking(move || read_events(&reader, next)).await;
                match read {
                    Ok(Ok(batch)) if !batch.is_empty() => {
                        next = batch.last().map_or(next, |(seq, _)| seq + 1);
                        queue.extend(batch);
                    }
                    // Every entry sent: wait for the ledger to grow past them, or for the stop.
                    Ok(Ok(_)) => {
                        let watched = tokio::select! {
                            grown = size.wait_for(|size| *size > next) => grown.is_ok(),
                            changed = stopping.changed() => changed.is_ok(),
                        };
                        // The watching task or the service's state is gone (it is stopping):
                        // look again after a poll rather than at once.
                        if !watched {
                            tokio::time::sleep(POLL).await;
                        }
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "the event stream stopped");
                        return None;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the event stream stopped");
                        return None;
                    }
                }
            }
        },
    );
    Ok(Sse::new(events).keep_alive(keep_alive))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Every open stream follows the ledger's size through one watching task: the streams share
    /// its channel, each sees the ledger grow, and the task ends with the last stream (the next
    /// stream starts another).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_streams_share_one_watch_of_the_ledger_s_size() {
        let dir = tempfile::tempdir().unwrap();
        let market = ledger_core::load::Market::new(4);
        let ledger = Arc::new(Ledger::open_dir(dir.path(), market.config().unwrap()).unwrap());
        market.setup(&ledger).unwrap();
        let state = AppState::new(Arc::clone(&ledger), crate::Limits::default());

        let mut first = follow_size(&state);
        let mut second = follow_size(&state);
        assert!(first.same_channel(&second), "the streams share one watch");
        let size = ledger.size();
        let within = Duration::from_secs(10);
        for follower in [&mut first, &mut second] {
            tokio::time::timeout(within, follower.wait_for(|s| *s == size))
                .await
                .expect("the watch reads the ledger's size")
                .unwrap();
        }
        let trade = market.trade(0).unwrap();
        let submitter = Arc::clone(&ledger);
        tokio::task::spawn_blocking(move || submitter.submit_prepared(trade))
            .await
            .unwrap()
            .unwrap();
        for follower in [&mut first, &mut second] {
            tokio::time::timeout(within, follower.wait_for(|s| *s == size + 1))
                .await
                .expect("each stream sees the ledger grow")
                .unwrap();
        }

        drop((first, second));
        let ended = async {
            while state.size_watch().slot().is_some() {
                tokio::time::sleep(POLL).await;
            }
        };
        tokio::time::timeout(within, ended)
            .await
            .expect("the watching task ends after the last stream");
        let mut third = follow_size(&state);
        assert!(state.size_watch().slot().is_some());
        tokio::time::timeout(within, third.wait_for(|s| *s == size + 1))
            .await
            .expect("a stream opened later is watched again")
            .unwrap();
    }

    #[test]
    fn the_keep_alive_comes_well_within_the_idle_timeout() {
        let secs = Duration::from_secs;
        assert_eq!(keep_alive_interval(secs(60)), KEEP_ALIVE_MAX);
        assert_eq!(keep_alive_interval(secs(45)), KEEP_ALIVE_MAX);
        assert_eq!(keep_alive_interval(secs(30)), secs(10));
        assert_eq!(
            keep_alive_interval(secs(2)),
            Duration::from_nanos(666_666_666)
        );
        assert_eq!(keep_alive_interval(secs(0)), Duration::from_millis(100));
    }
}
