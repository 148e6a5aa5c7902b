//! The public registry: read-only HTML pages over the same ledger as `/v1`, rendered on the
//! server with askama (templates checked at compile time, every value escaped).
//!
//! ```text
//! GET /, /projects, /batches, /trades, /certificates, /pledges, /prices, /participants, /entries,
//!     /holdings, /reports, /proceeds, and a page per project, batch, certificate, pledge,
//!     participant and entry
//!   └─ handler: parse the query (a bad one is a 400 page) ─▶ read the core ─▶ a Table or a page
//!        ├─ HTML: templates/*.html, bilingual labels (Chinese first, docs/glossary.md)
//!        └─ CSV:  the same rows (`/trades.csv?...` takes the same query as `/trades?...`)
//! GET /static/registry.css, /static/verify.js   (compiled into the binary)
//! ```
//!
//! Every table pages with a cursor, links each row to its entry (`/entries/{seq}`), and offers the
//! same rows as CSV. Lists of history (trades, certificates) read a page from the store's indexes
//! ([`Ledger::trade_page`](ledger_core::ledger::Ledger::trade_page)), never the whole history.
//!
//! Safety: askama escapes every value; every page is sent with a Content-Security-Policy that
//! allows only the page's own script and style files (no inline script, style or event
//! handler), `X-Content-Type-Options: nosniff`, and no form that writes (the one form, the trade
//! filter, is a GET). The in-browser check (`static/verify.js`) verifies the checkpoint's
//! signature and the entry's inclusion proof with Web Crypto; see [`verify`](self#the-in-browser-check).
//!
//! # The in-browser check
//!
//! Certificate, pledge and entry pages carry `<section id="verify" data-seq=...>`. The script
//! fetches `/v1/ledger` (the operator key, shown with its fingerprint for the visitor to compare
//! with the published one), `/v1/checkpoint`, `/v1/entries/{seq}` and
//! `/v1/proofs/inclusion?seq=&tree_size=`; it verifies the note's Ed25519 signature, recomputes
//! the leaf hash from the envelope (JCS) and the RFC 9162 root from the proof, compares the
//! entry's fields with the figures on the page, and sets `data-verified="true"` or `"false"` with
//! what failed.

mod chart;
mod format;
mod pages;
mod table;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;
use crate::routes::AppState;

/// The Content-Security-Policy of every page: the page's own script and style files only, data
/// fetched from the same service, no frames, no plugins, forms only to this service.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The registry's stylesheet (screen and print).
const STYLESHEET: &str = include_str!("../../static/registry.css");
/// The in-browser check.
const VERIFY_SCRIPT: &str = include_str!("../../static/verify.js");

/// The registry's routes, to be merged into the service's router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/projects", get(pages::projects))
        .route("/projects.csv", get(pages::projects_csv))
        .route("/projects/{id}", get(pages::project))
        .route("/batches", get(pages::batches))
        .route("/batches.csv", get(pages::batches_csv))
        .route("/batches/{id}", get(pages::batch))
        .route("/trades", get(pages::trades))
        .route("/trades.csv", get(pages::trades_csv))
        .route("/certificates", get(pages::certificates))
        .route("/certificates.csv", get(pages::certificates_csv))
        .route("/certificates/{id}", get(pages::certificate))
        .route("/pledges", get(pages::pledges))
        .route("/pledges.csv", get(pages::pledges_csv))
        .route("/pledges/{id}", get(pages::pledge))
        .route("/prices", get(pages::prices))
        .route("/prices.csv", get(pages::prices_csv))
        .route("/participants", get(pages::participants))
        .route("/participants.csv", get(pages::participants_csv))
        .route("/participants/{id}", get(pages::participant))
        .route("/holdings", get(pages::holdings))
        .route("/holdings.csv", get(pages::holdings_csv))
        .route("/reports", get(pages::reports))
        .route("/reports.csv", get(pages::reports_csv))
        .route("/proceeds", get(pages::proceeds))
        .route("/proceeds.csv", get(pages::proceeds_csv))
        .route("/entries", get(pages::entries))
        .route("/entries.csv", get(pages::entries_csv))
        .route("/entries/{seq}", get(pages::entry))
        .route("/static/registry.css", get(stylesheet))
        .route("/static/verify.js", get(script))
}

/// Whether a path that no route serves belongs to the registry's pages (answered with the 404
/// page) rather than to the API and operations routes (answered with a problem).
pub fn is_page_path(path: &str) -> bool {
    !(path.starts_with("/v1/")
        || path == "/v1"
        || path.starts_with("/problems/")
        || path.starts_with("/tile/")
        || path == "/tile"
        || path == "/checkpoint"
        || path == "/healthz"
        || path == "/metrics")
}

/// The 404 page for a path no route serves.
pub fn no_such_page(path: &str) -> Response {
    WebError::not_found(format!("There is no page at {path}.")).into_response()
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", VERIFY_SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// An HTML answer with the registry's security headers.
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Why a page could not be shown: a 400 page (a query or path parameter that is not valid), a
/// 404 page, or a 500 page that says nothing internal (the log says what).
#[derive(Debug)]
pub struct WebError {
    status: StatusCode,
    detail: String,
}

impl WebError {
    /// A 400: the request names something in a form the registry cannot read.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            detail: detail.into(),
        }
    }

    /// A 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            detail: detail.into(),
        }
    }
}

impl From<ApiError> for WebError {
    fn from(error: ApiError) -> Self {
        let status = error.status();
        if status.is_server_error() {
            tracing::error!(
                kind = error.kind(),
                detail = error.detail(),
                "a registry page failed"
            );
            return Self {
                status,
                detail: "Something failed inside the service; its log says what.".to_owned(),
            };
        }
        Self {
            status: match status.as_u16() {
                404 => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_REQUEST,
            },
            detail: error.detail().to_owned(),
        }
    }
}

impl From<ledger_core::ledger::LedgerError> for WebError {
    fn from(error: ledger_core::ledger::LedgerError) -> Self {
        ApiError::from(error).into()
    }
}

impl From<askama::Error> for WebError {
    fn from(error: askama::Error) -> Self {
        tracing::error!(%error, "a registry template failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            detail: "Something failed inside the service; its log says what.".to_owned(),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let page = pages::ErrorPage::new(self.status, self.detail);
        match askama::Template::render(&page) {
            Ok(body) => html(self.status, body),
            Err(_) => html(
                self.status,
                "<!doctype html><title>Error</title>".to_owned(),
            ),
        }
    }
}

/// A query string whose rejection is a 400 page.
#[derive(Debug)]
pub struct PageQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for PageQuery<T> {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, WebError> {
        crate::query::parse(parts.uri.query().unwrap_or_default())
            .map(PageQuery)
            .map_err(|e| WebError::bad_request(format!("The query is not valid: {e}")))
    }
}

/// A path parameter whose rejection is a 400 page.
#[derive(Debug)]
pub struct PagePath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PagePath<T> {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, WebError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| PagePath(p))
            .map_err(|e: PathRejection| {
                WebError::bad_request(format!(
                    "The address is not valid: {}",
                    crate::problem::path_refusal(&e)
                ))
            })
    }
}
