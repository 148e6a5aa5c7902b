//! The routes: thin handlers that parse, call the core on a blocking thread, and map the result.
//!
//! Every call into [`Ledger`] runs under [`tokio::task::spawn_blocking`]: the ledger is sync, and
//! a submission waits for a durable write. Concurrent submissions from many clients meet in the
//! core's sequencer, which writes everything queued in one atomic write and one `fdatasync`, then
//! answers all of them (group commit). No answer leaves before its entry is durable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use ledger_core::entry::TradeKind;
use ledger_core::error::{RuleError, Thing};
use ledger_core::ids::{
    Basis, BatchId, EntryId, MethodologyId, ParticipantId, PledgeId, PriceId, ProjectId, ReportId,
};
use ledger_core::ids::{Date, Timestamp};
use ledger_core::ledger::{Ledger, LedgerError, Receipt, WriteHealth};
use ledger_core::num::{Money, Tonnes};
use ledger_core::state::{
    CertificateFilter, Coverage, HistoryPage, PageRequest, PledgeRecord, Proceeds,
    State as LedgerState, TradeFilter,
};
use ledger_core::store::StoreError;
use ledger_core::{checkpoint, merkle, wire};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::{watch, Semaphore};

use crate::cosigner::Cosigner;
use crate::metrics::Metrics;
use crate::problem::{problem_type, problemize, ApiError, NotAProblem, ProblemType, PROBLEM_TYPES};

/// The service's limits: on every request and connection, and the disk space its store holds
/// back. Each has a flag and a `CARBON_LEDGER_*` variable in `serve`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body, bytes.
    pub body_bytes: usize,
    /// Most entries in one atomic group (at most the core's [`ledger_core::ledger::MAX_GROUP`]).
    pub group_entries: usize,
    /// Page size when none is asked for.
    pub page_default: usize,
    /// Largest page.
    pub page_max: usize,
    /// Longest time to the response head.
    pub request_timeout: Duration,
    /// Most requests answered at once; beyond it, 503 `overloaded` at once rather than a queue.
    pub in_flight: usize,
    /// Longest time a connection may take to send a request head: from its opening, or from
    /// the first byte of a later request (see [`crate::connections`]).
    pub header_read_timeout: Duration,
    /// Longest time a kept-alive connection may wait for its next request, and a response may
    /// wait for its client to read.
    pub idle_timeout: Duration,
    /// Most connections open at once; beyond it the quietest one not being answered is closed
    /// to make room.
    pub max_connections: usize,
    /// Disk space the store holds back, so that it can still be opened and read when its disk
    /// fills up (see [`ledger_core::store::SledStore`]); 0: none.
    pub store_reserve_bytes: u64,
    /// Longest time a shutdown waits for the connections being answered (a download its client
    /// stopped reading, a request still running); then they are cut and the service exits.
    pub shutdown_timeout: Duration,
}

/// How long a shutdown waits for connections unless configured otherwise: below the 30 s an
/// orchestrator such as Kubernetes gives a process between SIGTERM and SIGKILL.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 1 << 20,
            group_entries: 256,
            page_default: 100,
            page_max: 1000,
            request_timeout: Duration::from_secs(30),
            in_flight: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            store_reserve_bytes: ledger_core::store::DEFAULT_RESERVE_BYTES,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

struct Inner {
    ledger: Arc<Ledger>,
    limits: Limits,
    metrics: Metrics,
    in_flight: Arc<Semaphore>,
    /// The witnesses the ledger's checkpoints go to, if any (`serve --witness`).
    cosigner: Option<Arc<Cosigner>>,
    /// `true` once the service is stopping: connections finish what they answer, and event
    /// streams end.
    stopping: watch::Sender<bool>,
    /// The ledger's size, watched for the event streams by one task.
    size_watch: crate::events::SizeWatch,
}

/// What every handler shares: the ledger, the limits and the metrics.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("ledger", &self.0.ledger)
            .field("limits", &self.0.limits)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State over an open ledger.
    pub fn new(ledger: Arc<Ledger>, limits: Limits) -> Self {
        Self::with_witnesses(ledger, limits, None)
    }

    /// State over an open ledger whose checkpoints go to witnesses for cosigning.
    pub fn with_witnesses(
        ledger: Arc<Ledger>,
        limits: Limits,
        cosigner: Option<Arc<Cosigner>>,
    ) -> Self {
        let limits = Limits {
            group_entries: limits
                .group_entries
                .clamp(1, ledger_core::ledger::MAX_GROUP),
            page_max: limits.page_max.max(1),
            page_default: limits.page_default.clamp(1, limits.page_max.max(1)),
            ..limits
        };
        let in_flight = Arc::new(Semaphore::new(limits.in_flight.min(Semaphore::MAX_PERMITS)));
        Self(Arc::new(Inner {
            ledger,
            limits,
            metrics: Metrics::new(),
            in_flight,
            cosigner,
            stopping: watch::Sender::new(false),
            size_watch: crate::events::SizeWatch::default(),
        }))
    }

    /// The ledger's size as the event streams follow it.
    pub(crate) fn size_watch(&self) -> &crate::events::SizeWatch {
        &self.0.size_watch
    }

    /// Says that the service is stopping (see [`AppState::stopping`]).
    pub(crate) fn stop(&self) {
        self.0.stopping.send_replace(true);
    }

    /// Whether the service is stopping, watched: connections then finish the request they are
    /// answering and close, and event streams end, so that a stop does not wait for them.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.0.stopping.subscribe()
    }

    /// The witnesses' cosigner, if the service has witnesses.
    pub fn cosigner(&self) -> Option<&Arc<Cosigner>> {
        self.0.cosigner.as_ref()
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.0.ledger
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }

    /// The service's metrics (the server counts connections in them, the cosigner the
    /// witnesses' answers).
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Runs `f` over the ledger on a blocking thread.
    pub(crate) async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger) -> Result<R, ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        let ledger = self.0.ledger.clone();
        tokio::task::spawn_blocking(move || f(&ledger))
            .await
            .map_err(|e| ApiError::internal("internal", e))?
    }

    /// Runs a query over the ledger's state on a blocking thread.
    pub(crate) async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&LedgerState) -> Result<R, ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        self.blocking(move |ledger| ledger.read(f)).await
    }

    /// [`AppState::blocking`] for a read that names something (an entry by seq or id, a pledge,
    /// a participant...): if it is not found, the ledger first catches up with what other
    /// instances sharing its store appended, and the read runs again. So an instance never
    /// answers 404 for something any instance has acknowledged.
    pub(crate) async fn blocking_fresh<R: Send + 'static>(
        &self,
        f: impl Fn(&Ledger) -> Result<R, ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        self.blocking(move |ledger| match f(ledger) {
            Err(error) if error.status() == StatusCode::NOT_FOUND && ledger.shared_store() => {
                ledger.refresh()?;
                f(ledger)
            }
            other => other,
        })
        .await
    }

    /// [`AppState::read`] that catches up before it answers "not found" (see
    /// [`AppState::blocking_fresh`]).
    pub(crate) async fn read_fresh<R: Send + 'static>(
        &self,
        f: impl Fn(&LedgerState) -> Result<R, ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        self.blocking_fresh(move |ledger| ledger.read(&f)).await
    }
}

// ---------------------------------------------------------------------------------------------
// The route table
// ---------------------------------------------------------------------------------------------

/// One route: method, path (axum and OpenAPI share the `{param}` syntax; axum's `{*param}`,
/// which spans several segments, is `{param}` in the OpenAPI document), which layers apply, and
/// the handler.
struct Route {
    method: &'static str,
    path: &'static str,
    group: Group,
    handler: MethodRouter<AppState>,
}

/// Which of the service's layers a route is under.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    /// `/v1`: the request limits, and read-your-writes (`min_seq`, `X-Ledger-Size`).
    Versioned,
    /// The log as C2SP tlog tiles (`/checkpoint`, `/tile/…`): the in-flight limit and the
    /// request timeout, as the registry's pages. Unversioned: the paths are the spec's.
    Tiles,
    /// Operations: outside every limit, so that they answer when the service is saturated.
    Operations,
}

fn route(method: &'static str, path: &'static str, handler: MethodRouter<AppState>) -> Route {
    Route {
        method,
        path,
        group: Group::Versioned,
        handler,
    }
}

fn table() -> Vec<Route> {
    let mut routes = vec![
        route("POST", "/v1/entries", post(submit)),
        route("GET", "/v1/entries", get(entries)),
        route("POST", "/v1/entries/group", post(submit_group)),
        route("GET", "/v1/entries/{seq}", get(entry)),
        route("GET", "/v1/ledger", get(ledger_info)),
        route("GET", "/v1/participants", get(participants)),
        route("GET", "/v1/participants/{id}", get(participant)),
        route("GET", "/v1/participants/{id}/balances", get(balances)),
        route("GET", "/v1/methodologies", get(methodologies)),
        route("GET", "/v1/methodologies/{id}", get(methodology)),
        route("GET", "/v1/projects", get(projects)),
        route("GET", "/v1/projects/{id}", get(project)),
        route("GET", "/v1/projects/{id}/proceeds", get(project_proceeds)),
        route("GET", "/v1/proceeds", get(all_proceeds)),
        route("GET", "/v1/reports", get(reports)),
        route("GET", "/v1/reports/{id}", get(report)),
        route("GET", "/v1/batches", get(batches)),
        route("GET", "/v1/batches/{id}", get(batch)),
        route("GET", "/v1/prices", get(latest_prices)),
        route("GET", "/v1/prices/history", get(price_history)),
        route("GET", "/v1/prices/{id}", get(price)),
        route("GET", "/v1/trades", get(trades)),
        route("GET", "/v1/trades/{id}", get(trade)),
        route("GET", "/v1/certificates", get(certificates)),
        route("GET", "/v1/certificates/{id}", get(certificate)),
        route("GET", "/v1/pledges", get(pledges)),
        route("GET", "/v1/pledges/{id}", get(pledge)),
        route("GET", "/v1/pledges/{id}/bundle", get(pledge_bundle)),
        route("GET", "/v1/events", get(crate::events::events)),
        route("GET", "/v1/checkpoint", get(checkpoint_note)),
        route("GET", "/v1/proofs/inclusion", get(inclusion_proof)),
        route("GET", "/v1/proofs/consistency", get(consistency_proof)),
        route("GET", "/v1/export", get(export)),
        route("GET", "/v1/openapi.json", get(openapi)),
    ];
    // The log as the C2SP tlog-tiles spec lays it out, for transparency tools and witnesses.
    for (method, path, handler) in [
        ("GET", "/checkpoint", get(checkpoint_note)),
        ("GET", "/tile/{level}/{*index}", get(tile)),
        ("GET", "/tile/entries/{*index}", get(tile)),
    ] {
        routes.push(Route {
            method,
            path,
            group: Group::Tiles,
            handler,
        });
    }
    // Operations routes answer even when the service is saturated.
    for (method, path, handler) in [
        ("GET", "/healthz", get(healthz)),
        ("GET", "/metrics", get(metrics)),
        ("GET", "/problems/{kind}", get(problem_doc)),
    ] {
        routes.push(Route {
            method,
            path,
            group: Group::Operations,
            handler,
        });
    }
    routes
}

/// Every (method, path) the router serves, as the OpenAPI document writes them, for the OpenAPI
/// check.
pub fn route_list() -> Vec<(&'static str, String)> {
    table()
        .iter()
        .map(|r| (r.method, r.path.replace("{*", "{")))
        .collect()
}

/// The service's router.
pub fn app(state: AppState) -> Router {
    let limits = state.limits().clone();
    let mut limited = Router::new();
    let mut tiles = Router::new();
    let mut open = Router::new();
    for r in table() {
        match r.group {
            Group::Versioned => limited = limited.route(r.path, r.handler),
            Group::Tiles => tiles = tiles.route(r.path, r.handler),
            Group::Operations => open = open.route(r.path, r.handler),
        }
    }
    let limited = limited
        .layer(middleware::from_fn_with_state(state.clone(), consistency))
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(middleware::from_fn_with_state(state.clone(), admit))
        .layer(DefaultBodyLimit::max(limits.body_bytes));
    // The registry's pages are read like the API: within its limits.
    let pages = crate::web::router()
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(middleware::from_fn_with_state(state.clone(), admit));
    let tiles = tiles
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(middleware::from_fn_with_state(state.clone(), admit));
    Router::new()
        .merge(limited)
        .merge(tiles)
        .merge(open)
        .merge(pages)
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::map_response(problemize))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

// ---------------------------------------------------------------------------------------------
// Middleware
// ---------------------------------------------------------------------------------------------

/// The in-flight limit: a request beyond it is answered 503 at once (load shedding).
async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match state.0.in_flight.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::new(
            "overloaded",
            format!(
                "the service is answering {} requests, its limit; retry shortly",
                state.limits().in_flight
            ),
        )
        .into_response(),
    }
}

/// The request timeout, to the response head. A submission that times out may still be
/// appended: resubmit the same signed entry, which returns its first receipt.
async fn timeout(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.limits().request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            "timeout",
            format!(
                "no answer within {} ms; a submission may still be appended: resubmit the same signed entry to learn its receipt",
                limit.as_millis()
            ),
        )
        .into_response(),
    }
}

/// The header on every answer of a `/v1` route that says how many entries the answer reflects
/// at least: every entry below that sequence number is in it.
pub const LEDGER_SIZE_HEADER: &str = "x-ledger-size";

/// What a request asks to have been applied before it is answered: `?min_seq=N` (the entry `N`,
/// a receipt's `seq`) or `?min_size=S` (`S` entries, a checkpoint's or `X-Ledger-Size`'s size).
/// Both are taken off the query before the route's own parameters are read.
fn minimum_size(request: &mut Request) -> Result<Option<u64>, ApiError> {
    let Some(query) = request.uri().query() else {
        return Ok(None);
    };
    let mut wanted: Option<u64> = None;
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let size = match name {
            "min_seq" => value.parse::<u64>().ok().and_then(|seq| seq.checked_add(1)),
            "min_size" => value.parse::<u64>().ok(),
            _ => {
                kept.push(pair);
                continue;
            }
        };
        let size = size.ok_or_else(|| {
            ApiError::malformed_request(format!(
                "{name} must be a sequence number or a size, not \"{value}\""
            ))
        })?;
        wanted = Some(wanted.map_or(size, |w| w.max(size)));
    }
    if wanted.is_some() {
        let path = request.uri().path();
        let uri = if kept.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", kept.join("&"))
        };
        *request.uri_mut() = uri
            .parse()
            .map_err(|_| ApiError::malformed_request("the query cannot be read"))?;
    }
    Ok(wanted)
}

/// Read-your-writes across instances: a request with `?min_seq=N` (or `?min_size=S`) is answered
/// only once this instance has applied entry `N` (holds `S` entries), catching up with what
/// other instances sharing its store appended; if it cannot within the request timeout, it
/// answers 503 `not-caught-up` with `Retry-After`. Every answer says, in `X-Ledger-Size`, how
/// many entries it reflects at least.
async fn consistency(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let wanted = match minimum_size(&mut request) {
        Ok(wanted) => wanted,
        Err(error) => return error.into_response(),
    };
    // Answer before the request timeout does, with a problem that says what happened.
    let limit = state.limits().request_timeout;
    let deadline = Instant::now() + limit - (limit / 10).min(Duration::from_secs(1));
    let mut pause = Duration::from_millis(2);
    let mut waited = false;
    let size = loop {
        let wanted_now = wanted;
        let size = state
            .blocking(move |ledger| {
                let size = ledger.size();
                if wanted_now.is_some_and(|w| size < w) {
                    Ok(ledger.refresh()?)
                } else {
                    Ok(size)
                }
            })
            .await;
        let size = match size {
            Ok(size) => size,
            Err(error) => return error.into_response(),
        };
        match wanted {
            Some(w) if size < w => {}
            _ => break size,
        }
        // It waits at least once: a store that is about to answer gets its chance.
        if waited && Instant::now() + pause > deadline {
            return ApiError::new(
                "not-caught-up",
                format!(
                    "this instance holds {size} entries and did not reach {} within {} ms; retry, here or on another instance",
                    wanted.unwrap_or_default(),
                    limit.as_millis()
                ),
            )
            .into_response();
        }
        tokio::time::sleep(pause).await;
        waited = true;
        pause = (pause * 2).min(Duration::from_millis(100));
    };
    let is_read = request.method() == axum::http::Method::GET;
    let mut response = next.run(request).await;
    if is_read && !response.headers().contains_key(LEDGER_SIZE_HEADER) {
        response
            .headers_mut()
            .insert(LEDGER_SIZE_HEADER, HeaderValue::from(size));
    }
    response
}

/// Latency by route, and requests in flight.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let start = Instant::now();
    // A guard, not a decrement after the await: a request whose client disconnects is dropped
    // at that await, and must leave the gauge too.
    let in_flight = state.0.metrics.request_in_flight();
    let response = next.run(request).await;
    drop(in_flight);
    state
        .0
        .metrics
        .observe(&method, &route, response.status().as_u16(), start.elapsed());
    response
}

/// No route: the 404 page for a registry path, a problem for the API and operations routes.
async fn no_route(uri: axum::http::Uri) -> Response {
    if crate::web::is_page_path(uri.path()) {
        return crate::web::no_such_page(uri.path());
    }
    ApiError::new(
        "no-such-route",
        "there is no such route; GET /v1/openapi.json lists them",
    )
    .into_response()
}

// ---------------------------------------------------------------------------------------------
// Extractors whose rejections are problems
// ---------------------------------------------------------------------------------------------

/// The raw request body, within the body limit.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        Bytes::from_request(request, state)
            .await
            .map(RawBody)
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                    "body-too-large",
                    body_limit_words(state.limits().body_bytes),
                ),
                _ => ApiError::from(rejection),
            })
    }
}

/// The refusal of a body over the limit, naming the limit.
pub fn body_limit_words(limit: usize) -> String {
    let size = match limit {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{n} bytes ({} MiB)", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{n} bytes ({} KiB)", n >> 10),
        n => format!("{n} bytes"),
    };
    format!(
        "the body is larger than this service's limit of {size} (serve --max-body-bytes); split a group into smaller groups"
    )
}

/// A path parameter whose rejection is a problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct PathParam<T>(pub T);

/// A query string whose rejection is a problem that names the parameter in plain words.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        crate::query::parse(parts.uri.query().unwrap_or_default())
            .map(QueryParams)
            .map_err(ApiError::malformed_request)
    }
}

// ---------------------------------------------------------------------------------------------
// Submitting
// ---------------------------------------------------------------------------------------------

fn receipt_response(receipt: Receipt) -> Response {
    let status = if receipt.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let location = format!("/v1/entries/{}", receipt.seq);
    let size = receipt.seq + 1;
    let mut response = (status, Json(receipt)).into_response();
    response
        .headers_mut()
        .insert(LEDGER_SIZE_HEADER, HeaderValue::from(size));
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

impl AppState {
    fn count(&self, result: &Result<Vec<Receipt>, ApiError>) {
        match result {
            Ok(receipts) => receipts
                .iter()
                .filter(|r| !r.duplicate)
                .for_each(|r| self.0.metrics.accepted(&r.entry_type)),
            Err(error) => self.0.metrics.rejected(error.kind()),
        }
    }
}

async fn submit(State(state): State<AppState>, body: Result<RawBody, ApiError>) -> Response {
    let result = match body {
        Ok(RawBody(bytes)) => {
            state
                .blocking(move |ledger| Ok(vec![ledger.submit_bytes(&bytes)?]))
                .await
        }
        Err(error) => Err(error),
    };
    state.count(&result);
    match result.map(|mut receipts| receipts.pop()) {
        Ok(Some(receipt)) => receipt_response(receipt),
        Ok(None) => {
            ApiError::internal("internal", "the ledger returned no receipt").into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// The answer to a group: one receipt per entry, in order.
#[derive(Debug, Serialize, Deserialize)]
pub struct GroupReceipts {
    /// The receipts.
    pub receipts: Vec<Receipt>,
}

fn decode_group(bytes: &[u8], max: usize) -> Result<Vec<wire::Prepared>, ApiError> {
    let shape = || {
        ApiError::new(
            "malformed-entry",
            "a group is an object {\"entries\": [submission, ...]} and nothing else",
        )
    };
    let Value::Object(mut map) = wire::parse_strict(bytes).map_err(LedgerError::from)? else {
        return Err(shape());
    };
    let entries = match map.remove("entries") {
        Some(Value::Array(entries)) if map.is_empty() => entries,
        _ => return Err(shape()),
    };
    if entries.is_empty() {
        return Err(ApiError::new(
            "malformed-entry",
            "a group must hold at least one entry",
        ));
    }
    if entries.len() > max {
        return Err(ApiError::new(
            "group-size",
            format!(
                "a group may hold at most {max} entries; this one holds {}",
                entries.len()
            ),
        ));
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            wire::decode_submission_value(value).map_err(|e| {
                ApiError::from(LedgerError::Group {
                    index,
                    error: Box::new(e.into()),
                })
            })
        })
        .collect()
}

async fn submit_group(State(state): State<AppState>, body: Result<RawBody, ApiError>) -> Response {
    let max = state.limits().group_entries;
    let result = match body {
        Ok(RawBody(bytes)) => {
            state
                .blocking(move |ledger| {
                    let group = decode_group(&bytes, max)?;
                    Ok(ledger.submit_group(group)?)
                })
                .await
        }
        Err(error) => Err(error),
    };
    state.count(&result);
    match result {
        Ok(receipts) => {
            let status = if receipts.iter().all(|r| r.duplicate) {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            let size = receipts.iter().map(|r| r.seq + 1).max().unwrap_or(0);
            let mut response = (status, Json(GroupReceipts { receipts })).into_response();
            response
                .headers_mut()
                .insert(LEDGER_SIZE_HEADER, HeaderValue::from(size));
            response
        }
        Err(error) => error.into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Entries
// ---------------------------------------------------------------------------------------------

/// One entry as the API shows it: its envelope exactly as stored (the leaf bytes), and its hash.
#[derive(Debug, Serialize)]
pub struct EntryView {
    /// Position.
    pub seq: u64,
    /// Hex leaf hash.
    pub leaf_hash: String,
    /// The envelope `{seq, prev, accepted_at, entry}`, byte for byte the leaf.
    pub envelope: Box<RawValue>,
}

fn entry_view(seq: u64, leaf: Vec<u8>) -> Result<EntryView, ApiError> {
    let leaf_hash = hex::encode(merkle::leaf_hash(&leaf));
    let text = String::from_utf8(leaf)
        .map_err(|_| ApiError::internal("integrity", format!("leaf {seq} is not UTF-8")))?;
    let envelope = RawValue::from_string(text)
        .map_err(|e| ApiError::internal("integrity", format!("leaf {seq}: {e}")))?;
    Ok(EntryView {
        seq,
        leaf_hash,
        envelope,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntriesQuery {
    from: Option<u64>,
    limit: Option<usize>,
}

/// A page of entries. Serialized directly (not through `Value`) so that each envelope stays
/// byte for byte its leaf.
#[derive(Debug, Serialize)]
struct EntriesPage {
    size: u64,
    entries: Vec<EntryView>,
    next: Option<u64>,
}

impl Limits {
    /// A page of history: its size, and where it starts (a cursor is a seq).
    fn page_request(
        &self,
        list: &'static str,
        asked: Option<usize>,
        after: Option<&str>,
    ) -> Result<PageRequest, ApiError> {
        let after = after.map(|a| cursor_key::<u64>(list, a)).transpose()?;
        Ok(PageRequest {
            after,
            limit: self.page(asked)?,
            newest_first: false,
        })
    }

    fn page(&self, asked: Option<usize>) -> Result<usize, ApiError> {
        match asked {
            None => Ok(self.page_default),
            Some(0) => Err(ApiError::malformed_request(format!(
                "limit must be 1 to {}",
                self.page_max
            ))),
            Some(n) => Ok(n.min(self.page_max)),
        }
    }
}

async fn entries(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<EntriesQuery>,
) -> Result<Json<EntriesPage>, ApiError> {
    let limit = state.limits().page(query.limit)?;
    let from = query.from.unwrap_or(0);
    let page = state
        .blocking(move |ledger| {
            // A page that starts past what this instance holds may start in what another
            // instance sharing its store appended.
            let size = if from >= ledger.size() {
                ledger.refresh()?
            } else {
                ledger.size()
            };
            let entries = ledger
                .leaves(from, limit)?
                .into_iter()
                .map(|(seq, leaf)| entry_view(seq, leaf))
                .collect::<Result<Vec<_>, _>>()?;
            let next = entries
                .last()
                .map(|e| e.seq + 1)
                .filter(|next| *next < size);
            Ok(EntriesPage {
                size,
                entries,
                next,
            })
        })
        .await?;
    Ok(Json(page))
}

async fn entry(
    State(state): State<AppState>,
    PathParam(seq): PathParam<u64>,
) -> Result<Response, ApiError> {
    let view = state
        .blocking_fresh(move |ledger| entry_view(seq, ledger.leaf(seq)?))
        .await?;
    Ok(Json(view).into_response())
}

// ---------------------------------------------------------------------------------------------
// The ledger, participants, projects...
// ---------------------------------------------------------------------------------------------

/// What `GET /v1/ledger` says.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct LedgerInfo {
    /// The origin: every body's `ledger`, every checkpoint's first line.
    pub origin: String,
    /// The operator's participant id.
    pub operator: Option<String>,
    /// The operator's public key, base64: what verifiers trust.
    pub operator_public_key: String,
    /// The same key as a C2SP note verifier key (`<name>+<hex key id>+<base64>`).
    pub checkpoint_verifier_key: String,
    /// Entries now.
    pub size: u64,
    /// Hex Merkle root now.
    pub root: String,
    /// The witnesses the service submits its checkpoints to: their verifier keys (C2SP vkeys of
    /// type 0x04). A bank chooses its own; these say where cosignatures come from.
    #[serde(default)]
    pub witnesses: Vec<String>,
}

async fn ledger_info(State(state): State<AppState>) -> Result<Json<LedgerInfo>, ApiError> {
    let witnesses: Vec<String> = state
        .cosigner()
        .map(|c| {
            c.witnesses()
                .iter()
                .map(|w| checkpoint::cosigner_verifier_key(&w.name, &w.key))
                .collect()
        })
        .unwrap_or_default();
    let info = state
        .blocking(|ledger| {
            let key = ledger.operator_key();
            let origin = ledger.origin().to_string();
            Ok(LedgerInfo {
                operator: ledger.read(|s| s.operator().map(ToString::to_string)),
                operator_public_key: ledger_core::ids::PublicKey::from(key).to_string(),
                checkpoint_verifier_key: checkpoint::verifier_key(&origin, &key),
                size: ledger.size(),
                root: hex::encode(ledger.root()),
                origin,
                witnesses,
            })
        })
        .await?;
    Ok(Json(info))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// A page of a list: the items, and the cursor to pass as `after` for the next page.
#[derive(Debug, Serialize)]
struct Page<T> {
    items: Vec<T>,
    next: Option<String>,
}

/// The lists that page with a cursor, by the name their cursors carry.
const CURSOR_LISTS: &[&str] = &[
    "participants",
    "methodologies",
    "projects",
    "reports",
    "batches",
    "proceeds",
    "price-history",
    "trades",
    "certificates",
    "pledges",
];

/// The cursor of list `list` after the row whose key is `key`: `<list>:<key>`. A cursor names
/// its list, so that every other list refuses it rather than read it as one of its own keys.
fn cursor(list: &'static str, key: impl std::fmt::Display) -> String {
    debug_assert!(CURSOR_LISTS.contains(&list), "{list}");
    format!("{list}:{key}")
}

/// The key a cursor of list `list` carries; a cursor of another list, or no cursor at all, is
/// refused, the same way on every list.
fn cursor_key<K: std::str::FromStr>(list: &'static str, after: &str) -> Result<K, ApiError> {
    let refused = |why: String| {
        ApiError::malformed_request(format!(
            "after=\"{after}\" {why}: pass the \"next\" of this list's previous page, as it was given"
        ))
    };
    match after.split_once(':') {
        Some((name, key)) if name == list => key
            .parse()
            .map_err(|_| refused(format!("is not a cursor of the {list} list"))),
        Some((name, _)) if CURSOR_LISTS.contains(&name) => Err(refused(format!(
            "is a cursor of the {name} list, not of the {list} list"
        ))),
        _ => Err(refused(format!("is not a cursor of the {list} list"))),
    }
}

/// Pages through items sorted by `key`: those after the cursor, at most `limit`.
fn page<T, K>(
    list: &'static str,
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
    after: Option<&str>,
    limit: usize,
) -> Result<Page<T>, ApiError>
where
    K: PartialOrd + std::str::FromStr + ToString,
{
    let after = after.map(|a| cursor_key::<K>(list, a)).transpose()?;
    let mut items: Vec<T> = items
        .into_iter()
        .filter(|item| after.as_ref().is_none_or(|a| key(item) > *a))
        .take(limit.saturating_add(1))
        .collect();
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|item| cursor(list, key(item).to_string()))
    } else {
        None
    };
    Ok(Page { items, next })
}

fn to_json<T: Serialize>(value: T) -> Result<Json<Value>, ApiError> {
    serde_json::to_value(value)
        .map(Json)
        .map_err(|e| ApiError::internal("internal", e))
}

fn unknown(thing: Thing, id: impl ToString) -> ApiError {
    ApiError::from(LedgerError::Rule(RuleError::Unknown {
        thing,
        id: id.to_string(),
    }))
}

/// A list route over an id-ordered table.
macro_rules! list_by_id {
    ($name:ident, $iter:ident, $id:ident) => {
        async fn $name(
            State(state): State<AppState>,
            QueryParams(query): QueryParams<PageQuery>,
        ) -> Result<Json<Value>, ApiError> {
            let limit = state.limits().page(query.limit)?;
            state
                .read(move |s| {
                    let page = page(
                        stringify!($iter),
                        s.$iter().cloned(),
                        |item| item.$id.to_string(),
                        query.after.as_deref(),
                        limit,
                    )?;
                    to_json(page)
                })
                .await
        }
    };
}

/// A row that a query found or not; rows of the history tables are read from the store, which
/// can fail.
trait Found<T> {
    fn found(self) -> Result<Option<T>, ApiError>;
}

impl<T> Found<T> for Option<T> {
    fn found(self) -> Result<Option<T>, ApiError> {
        Ok(self)
    }
}

impl<T> Found<T> for Result<Option<T>, StoreError> {
    fn found(self) -> Result<Option<T>, ApiError> {
        self.map_err(|e| ApiError::from(LedgerError::Store(e)))
    }
}

/// A route that reads one row by id.
macro_rules! one_by_id {
    ($name:ident, $id_type:ty, $getter:ident, $thing:expr) => {
        async fn $name(
            State(state): State<AppState>,
            PathParam(id): PathParam<$id_type>,
        ) -> Result<Json<Value>, ApiError> {
            state
                .read_fresh(move |s| match s.$getter(&id).found()? {
                    Some(row) => to_json(row),
                    None => Err(unknown($thing, &id)),
                })
                .await
        }
    };
}

list_by_id!(participants, participants, id);
one_by_id!(participant, ParticipantId, participant, Thing::Participant);
list_by_id!(methodologies, methodologies, id);
one_by_id!(methodology, MethodologyId, methodology, Thing::Methodology);
list_by_id!(projects, projects, id);
one_by_id!(project, ProjectId, project, Thing::Project);
list_by_id!(reports, reports, id);
one_by_id!(report, ReportId, report, Thing::Report);
list_by_id!(batches, batches, id);
one_by_id!(batch, BatchId, batch, Thing::Batch);
one_by_id!(price, PriceId, price, Thing::Price);
one_by_id!(trade, EntryId, trade, Thing::Trade);
one_by_id!(certificate, EntryId, certificate, Thing::Certificate);

#[derive(Debug, Serialize)]
struct BalanceRow {
    batch: BatchId,
    project: Option<ProjectId>,
    vintage: Option<u16>,
    available: Tonnes,
    pledged: Tonnes,
}

#[derive(Debug, Serialize)]
struct Balances {
    holder: ParticipantId,
    balances: Vec<BalanceRow>,
    total_available: Tonnes,
    total_pledged: Tonnes,
}

async fn balances(
    State(state): State<AppState>,
    PathParam(id): PathParam<ParticipantId>,
) -> Result<Json<Value>, ApiError> {
    state
        .read_fresh(move |s| {
            if s.participant(&id).is_none() {
                return Err(unknown(Thing::Participant, &id));
            }
            let balances: Vec<BalanceRow> = s
                .balances_of(&id)
                .filter(|(_, b)| !(b.available.is_zero() && b.pledged.is_zero()))
                .map(|(batch, b)| {
                    let row = s.batch(batch);
                    BalanceRow {
                        batch: batch.clone(),
                        project: row.map(|r| r.project.clone()),
                        vintage: row.map(|r| r.vintage),
                        available: b.available,
                        pledged: b.pledged,
                    }
                })
                .collect();
            to_json(Balances {
                total_available: balances.iter().map(|b| b.available).sum(),
                total_pledged: balances.iter().map(|b| b.pledged).sum(),
                holder: id.clone(),
                balances,
            })
        })
        .await
}

#[derive(Debug, Serialize)]
struct ProceedsView {
    #[serde(flatten)]
    proceeds: Proceeds,
    total: Money,
}

fn proceeds_view(p: &Proceeds) -> ProceedsView {
    ProceedsView {
        proceeds: p.clone(),
        total: p.total(),
    }
}

async fn project_proceeds(
    State(state): State<AppState>,
    PathParam(id): PathParam<ProjectId>,
) -> Result<Json<Value>, ApiError> {
    state
        .read_fresh(move |s| {
            if s.project(&id).is_none() {
                return Err(unknown(Thing::Project, &id));
            }
            let items: Vec<ProceedsView> = s.proceeds_of(&id).map(proceeds_view).collect();
            to_json(serde_json::json!({ "project": id, "items": items }))
        })
        .await
}

async fn all_proceeds(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = state.limits().page(query.limit)?;
    state
        .read(move |s| {
            let items: Vec<ProceedsView> = s.proceeds().map(proceeds_view).collect();
            to_json(
                page(
                    "proceeds",
                    items.into_iter().enumerate(),
                    |(i, _)| *i,
                    query.after.as_deref(),
                    limit,
                )
                .map(|p| Page {
                    items: p.items.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
                    next: p.next,
                })?,
            )
        })
        .await
}

// ---------------------------------------------------------------------------------------------
// Prices, trades, certificates, pledges
// ---------------------------------------------------------------------------------------------

/// The price in force now of each basis (a price published to take effect later is not).
async fn latest_prices(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state
        .read(|s| {
            let items: Vec<_> = s
                .prices_in_force(&Timestamp::now())
                .into_iter()
                .cloned()
                .collect();
            to_json(serde_json::json!({ "items": items }))
        })
        .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    basis: Option<Basis>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn price_history(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = state.limits().page(query.limit)?;
    state
        .read(move |s| {
            // Ordered by effective time; the cursor is a position in that order.
            let history = s.price_history(query.basis.as_ref());
            let p = page(
                "price-history",
                history.into_iter().cloned().enumerate(),
                |(i, _)| *i,
                query.after.as_deref(),
                limit,
            )?;
            to_json(Page {
                items: p.items.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
                next: p.next,
            })
        })
        .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TradesQuery {
    batch: Option<BatchId>,
    party: Option<ParticipantId>,
    kind: Option<TradeKind>,
    since: Option<Date>,
    until: Option<Date>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn trades(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<TradesQuery>,
) -> Result<Json<Value>, ApiError> {
    let request = state
        .limits()
        .page_request("trades", query.limit, query.after.as_deref())?;
    let filter = TradeFilter {
        batch: query.batch,
        party: query.party,
        kind: query.kind,
        since: query.since,
        until: query.until,
    };
    state
        .blocking(move |ledger| {
            to_json(history_page("trades", ledger.trade_page(&filter, request)?))
        })
        .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificatesQuery {
    holder: Option<ParticipantId>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn certificates(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<CertificatesQuery>,
) -> Result<Json<Value>, ApiError> {
    let request =
        state
            .limits()
            .page_request("certificates", query.limit, query.after.as_deref())?;
    let filter = CertificateFilter {
        holder: query.holder,
    };
    state
        .blocking(move |ledger| {
            to_json(history_page(
                "certificates",
                ledger.certificate_page(&filter, request)?,
            ))
        })
        .await
}

/// A page of history as the list routes answer it: the cursor carries the last row's seq.
fn history_page<T>(list: &'static str, page: HistoryPage<T>) -> Page<T> {
    Page {
        items: page.items,
        next: page.next.map(|seq| cursor(list, seq)),
    }
}

/// A pledge's coverage at the price in force now of the same basis as its reference price.
#[derive(Debug, Serialize)]
struct CoverageView {
    /// The price used.
    price: PriceId,
    basis: Basis,
    effective_at: String,
    #[serde(flatten)]
    coverage: Coverage,
}

#[derive(Debug, Serialize)]
struct PledgeView {
    #[serde(flatten)]
    pledge: PledgeRecord,
    coverage: Option<CoverageView>,
}

fn pledge_view(s: &LedgerState, pledge: &PledgeRecord) -> PledgeView {
    let coverage = s
        .coverage_at(pledge, &Timestamp::now())
        .map(|(price, coverage)| CoverageView {
            price: price.id.clone(),
            basis: price.basis.clone(),
            effective_at: price.effective_at.to_string(),
            coverage,
        });
    PledgeView {
        pledge: pledge.clone(),
        coverage,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PledgesQuery {
    bank: Option<ParticipantId>,
    pledgor: Option<ParticipantId>,
    /// Only active pledges whose coverage at the price in force is below this ratio.
    coverage_below: Option<ledger_core::num::Ratio>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn pledges(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<PledgesQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = state.limits().page(query.limit)?;
    state
        .read(move |s| {
            let now = Timestamp::now();
            let matching = s.pledges().filter(|p| {
                query.bank.as_ref().is_none_or(|b| *b == p.bank)
                    && query.pledgor.as_ref().is_none_or(|o| *o == p.pledgor)
                    && query
                        .coverage_below
                        .is_none_or(|ratio| s.covered_below(p, ratio, &now))
            });
            let p = page(
                "pledges",
                matching,
                |p| p.id.to_string(),
                query.after.as_deref(),
                limit,
            )?;
            to_json(Page {
                items: p
                    .items
                    .iter()
                    .map(|r| pledge_view(s, r))
                    .collect::<Vec<_>>(),
                next: p.next,
            })
        })
        .await
}

async fn pledge(
    State(state): State<AppState>,
    PathParam(id): PathParam<PledgeId>,
) -> Result<Json<Value>, ApiError> {
    state
        .read_fresh(move |s| match s.pledge(&id) {
            Some(p) => to_json(pledge_view(s, p)),
            None => Err(unknown(Thing::Pledge, &id)),
        })
        .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleQuery {
    /// The size of the last checkpoint the bank accepted: the bundle then carries a consistency
    /// proof from it.
    old_size: Option<u64>,
}

async fn pledge_bundle(
    State(state): State<AppState>,
    PathParam(id): PathParam<PledgeId>,
    QueryParams(query): QueryParams<BundleQuery>,
) -> Result<Json<Value>, ApiError> {
    let known = {
        let id = id.clone();
        // A pledge another instance acknowledged is found after catching up, never 404.
        state
            .blocking_fresh(move |ledger| {
                if ledger.read(|s| s.pledge(&id).is_some()) {
                    Ok(true)
                } else {
                    Err(unknown(Thing::Pledge, &id))
                }
            })
            .await
            .is_ok()
    };
    if !known {
        return Err(unknown(Thing::Pledge, &id));
    }
    let Some(cosigner) = state.cosigner() else {
        return state
            .blocking(move |ledger| to_json(ledger.pledge_bundle(&id, query.old_size)?))
            .await;
    };
    // With witnesses, the bundle's checkpoint is submitted to them before it is handed out.
    let (note, mut bundle) = cosigner
        .round(state.ledger(), state.metrics(), move |ledger| {
            ledger
                .pledge_bundle(&id, query.old_size)
                .map(|bundle| (bundle.checkpoint.clone(), bundle))
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| ApiError::internal("internal", e))?;
    bundle.checkpoint = note;
    to_json(bundle)
}

// ---------------------------------------------------------------------------------------------
// Checkpoint, proofs, export
// ---------------------------------------------------------------------------------------------

/// `GET /v1/checkpoint` and the tlog-tiles `GET /checkpoint`: the latest checkpoint, with the
/// witnesses' cosignatures. It changes as the ledger grows: not to be cached.
async fn checkpoint_note(State(state): State<AppState>) -> Result<Response, ApiError> {
    let note = state.blocking(|ledger| Ok(ledger.checkpoint()?)).await?;
    let note = match state.cosigner() {
        Some(cosigner) => cosigner.decorate(&note),
        None => note,
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        note,
    )
        .into_response())
}

/// How long a tile may be cached: a year, and never revalidated. A tile's content never changes
/// once the tree holds it, a partial tile's at its width included.
const TILE_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// `GET /tile/<L>/<N>[.p/<W>]` and `GET /tile/entries/<N>[.p/<W>]` (C2SP tlog-tiles): a hash tile
/// or an entry bundle, read from the store. A path the spec does not allow is 400; a tile the
/// tree does not hold yet is 404, and not cached, since it will exist.
async fn tile(State(state): State<AppState>, uri: axum::http::Uri) -> Response {
    let served = match uri
        .path()
        .strip_prefix("/tile/")
        .map(ledger_core::tiles::Tile::parse)
    {
        Some(Ok(tile)) => {
            state
                .blocking_fresh(move |ledger| Ok(ledger.tile(&tile)?))
                .await
        }
        Some(Err(error)) => Err(ApiError::malformed_request(error.to_string())),
        None => Err(ApiError::new(
            "no-such-route",
            "a tile path starts with /tile/",
        )),
    };
    match served {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::CACHE_CONTROL, TILE_CACHE_CONTROL),
            ],
            bytes,
        )
            .into_response(),
        Err(error) => {
            let mut response = error.into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionQuery {
    seq: Option<u64>,
    id: Option<EntryId>,
    tree_size: Option<u64>,
}

async fn inclusion_proof(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<InclusionQuery>,
) -> Result<Json<Value>, ApiError> {
    state
        .blocking_fresh(move |ledger| {
            let seq = match (query.seq, &query.id) {
                (Some(seq), None) => seq,
                (None, Some(id)) => ledger
                    .read(|s| s.entry(id).found())?
                    .map(|e| e.seq)
                    .ok_or_else(|| {
                        ApiError::new("not-found", format!("there is no entry with id \"{id}\""))
                    })?,
                _ => {
                    return Err(ApiError::malformed_request(
                        "give either seq (a sequence number) or id (an entry id)",
                    ))
                }
            };
            to_json(ledger.inclusion_proof(seq, query.tree_size)?)
        })
        .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    old_size: u64,
    new_size: Option<u64>,
}

async fn consistency_proof(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<ConsistencyQuery>,
) -> Result<Json<Value>, ApiError> {
    state
        .blocking_fresh(move |ledger| {
            to_json(ledger.consistency_proof(query.old_size, query.new_size)?)
        })
        .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    size: Option<u64>,
}

/// Hands the export's bytes to the response body in chunks, from a blocking thread.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buffer: Vec<u8>,
}

const EXPORT_CHUNK: usize = 64 * 1024;

impl std::io::Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= EXPORT_CHUNK {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

async fn export(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<ExportQuery>,
) -> Result<Response, ApiError> {
    let asked = query.size;
    let current = state
        .blocking(move |ledger| match asked {
            Some(size) if size > ledger.size() => Ok(ledger.refresh()?),
            _ => Ok(ledger.size()),
        })
        .await?;
    let size = match query.size {
        Some(size) if size > current => {
            return Err(ApiError::new(
                "not-found",
                format!("the ledger holds {current} entries, fewer than {size}"),
            ))
        }
        Some(size) => size,
        None => current,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let ledger = state.ledger().clone();
    tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter {
            tx: tx.clone(),
            buffer: Vec::with_capacity(EXPORT_CHUNK),
        };
        let result = ledger
            .export(&mut writer, Some(size))
            .map_err(|e| e.to_string())
            .and_then(|_| std::io::Write::flush(&mut writer).map_err(|e| e.to_string()));
        if let Err(error) = result {
            tracing::warn!(%error, "the export stopped");
            let _ = tx.blocking_send(Err(std::io::Error::other(error)));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert("ledger-tree-size", HeaderValue::from(size));
    Ok(response)
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// `200 {"status": "ok"}` while writes succeed; `503` with the reason while they cannot
/// (`failing`: the ledger retries by itself; `halted`: the operator must act), and the
/// `behind-floor` problem while the ledger holds fewer entries than a checkpoint its key signed
/// (a restore from an older copy).
async fn healthz(State(state): State<AppState>) -> Response {
    let checked = state
        .blocking(|ledger| Ok((ledger.size(), ledger.write_health(), ledger.behind_floor())))
        .await;
    match checked {
        Ok((_, _, Some(behind))) => ApiError::from(behind).into_response(),
        Ok((size, health, None)) => health_response(size, &health),
        Err(error) => error.into_response(),
    }
}

fn health_response(size: u64, health: &WriteHealth) -> Response {
    let (status, body) = match health {
        WriteHealth::Accepting => {
            return Json(serde_json::json!({ "status": "ok", "size": size })).into_response()
        }
        WriteHealth::Failing {
            error,
            since,
            attempts,
            retry_in,
        } => {
            let full = matches!(error, StoreError::Full(_));
            let reason = if full {
                format!(
                    "the disk holding the store is full ({error}): make room on it; the ledger retries on its own and takes writes again once a write succeeds"
                )
            } else {
                format!("the store failed ({error}); the ledger retries on its own")
            };
            let body = serde_json::json!({
                "status": "failing", "size": size, "writes": "refused",
                "kind": if full { "storage-full" } else { "storage" },
                "reason": reason, "since": since, "attempts": attempts,
                "retry_in_ms": u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
            });
            ("failing", body)
        }
        WriteHealth::Halted { reason, since } => {
            let body = serde_json::json!({
                "status": "halted", "size": size, "writes": "refused", "kind": "storage",
                "reason": reason, "since": since,
            });
            ("halted", body)
        }
        // A state this service does not know yet: say writes are refused.
        other => {
            let body = serde_json::json!({
                "status": "failing", "size": size, "writes": "refused", "kind": "storage",
                "reason": other.reason(),
            });
            ("failing", body)
        }
    };
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    let retry_after = if status == "halted" {
        HeaderValue::from_static("60")
    } else {
        HeaderValue::from(crate::problem::STORAGE_FULL_RETRY_AFTER_SECS)
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, retry_after);
    response.extensions_mut().insert(NotAProblem);
    response
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (size, writes, health, failures) = state
        .blocking(|ledger| {
            Ok((
                ledger.size(),
                ledger.write_stats(),
                ledger.write_health(),
                ledger.failure_stats(),
            ))
        })
        .await?;
    state.0.metrics.store(&health, failures);
    let text = state.0.metrics.encode(size, writes);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// The OpenAPI document, as kept in `ledger-api/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn problem_doc(PathParam(kind): PathParam<String>) -> Result<Json<ProblemType>, ApiError> {
    PROBLEM_TYPES
        .iter()
        .find(|t| t.kind == kind)
        .map(|_| Json(problem_type(&kind)))
        .ok_or_else(|| ApiError::new("not-found", format!("there is no problem type \"{kind}\"")))
}
