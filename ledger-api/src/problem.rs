//! Errors as RFC 9457 `application/problem+json`: one [`ApiError`], one stable `type` per kind.
//!
//! Every error the service sends — a rule of the market refusing an entry, a bad signature, a
//! malformed body, an unknown route, a body over the size limit, an overloaded server — comes out
//! in the same shape:
//!
//! ```json
//! {"type": "/problems/insufficient-sink", "title": "Not enough available sink", "status": 422,
//!  "detail": "two-mountains-bank holds 1000.000 t of batch XZH-2021 available; ...",
//!  "kind": "insufficient-sink"}
//! ```
//!
//! `type` is a URI reference relative to the service (RFC 9457 §3.1.1); `GET /problems/<kind>`
//! on the service describes it. `kind` repeats its last segment for clients that prefer a plain
//! string. `detail` is the core's clerk-readable message, except for 5xx answers, whose detail is
//! generic: the log has the real error.

use axum::extract::path::ErrorKind;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ledger_core::ledger::LedgerError;
use ledger_core::merkle::ProofError;
use ledger_core::store::StoreError;
use serde::Serialize;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Where problem types live, relative to the service.
pub const PROBLEM_BASE: &str = "/problems/";

/// One problem type: its kind, the status it is sent with, and a short title.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ProblemType {
    /// The stable machine-readable kind, such as `insufficient-sink`.
    pub kind: &'static str,
    /// The HTTP status every problem of this kind is sent with.
    pub status: u16,
    /// A short, human-readable summary that does not change between occurrences.
    pub title: &'static str,
}

const fn p(kind: &'static str, status: u16, title: &'static str) -> ProblemType {
    ProblemType {
        kind,
        status,
        title,
    }
}

/// Every problem type the service sends, kind → status → title. `docs/api.md` carries the same
/// table; a test keeps the two equal.
pub const PROBLEM_TYPES: &[ProblemType] = &[
    // The request itself.
    p("malformed-json", 400, "The body is not well-formed JSON"),
    p(
        "malformed-entry",
        400,
        "The submission does not fit the ledger format",
    ),
    p(
        "malformed-request",
        400,
        "A path or query parameter is not valid",
    ),
    p("bad-proof-request", 400, "No such proof can be made"),
    p("no-such-route", 404, "No such route"),
    p(
        "method-not-allowed",
        405,
        "Method not allowed on this route",
    ),
    p("body-too-large", 413, "The body is larger than the limit"),
    p("group-size", 413, "The group holds too many entries"),
    // Signatures and authority.
    p("unsigned", 401, "The entry carries no signature"),
    p("bad-signature", 401, "A signature does not verify"),
    p("unknown-signer", 401, "A signer is not a participant"),
    p("duplicate-signature", 401, "A signer signed twice"),
    p(
        "wrong-signers",
        403,
        "Not signed by exactly the parties required",
    ),
    p("missing-role", 403, "A participant lacks the role required"),
    p("wrong-ledger", 403, "The entry was made for another ledger"),
    // Things that do not exist.
    p("not-found", 404, "Not in the ledger"),
    p(
        "leaf-too-large-for-bundle",
        404,
        "An entry is too long for an entry bundle",
    ),
    p("unknown-participant", 404, "Unknown participant"),
    p("unknown-methodology", 404, "Unknown methodology"),
    p("unknown-project", 404, "Unknown project"),
    p("unknown-report", 404, "Unknown monitoring report"),
    p("unknown-batch", 404, "Unknown batch"),
    p("unknown-price", 404, "Unknown reference price"),
    p("unknown-pledge", 404, "Unknown pledge"),
    p("unknown-certificate", 404, "Unknown retirement certificate"),
    p("unknown-trade", 404, "Unknown trade"),
    // Ids already taken.
    p(
        "entry-id-conflict",
        409,
        "The entry id is used by another entry",
    ),
    p("already-exists", 409, "The id is already registered"),
    // Rules of the market.
    p(
        "genesis",
        422,
        "Only the operator's registration may open a ledger",
    ),
    p(
        "operator-role-reserved",
        422,
        "The operator role is reserved",
    ),
    p(
        "bad-roles",
        422,
        "The roles list is empty or repeats a role",
    ),
    p("key-in-use", 422, "The public key is already registered"),
    p("insufficient-sink", 422, "Not enough available sink"),
    p(
        "exceeds-verified",
        422,
        "Issuance beyond the verified quantity",
    ),
    p(
        "period-reversed",
        422,
        "The monitoring period ends before it starts",
    ),
    p(
        "period-overlap",
        422,
        "The monitoring period overlaps another report",
    ),
    p(
        "vintage-outside-period",
        422,
        "The vintage is outside the report's period",
    ),
    p("self-trade", 422, "A participant cannot trade with itself"),
    p("trade-terms", 422, "The trade's fields do not fit its kind"),
    p(
        "amount-mismatch",
        422,
        "The amount is not quantity × unit price",
    ),
    p(
        "amount-rounds-to-zero",
        422,
        "The priced trade is worth less than 0.01",
    ),
    p(
        "currency-mismatch",
        422,
        "Currencies that must agree do not",
    ),
    p(
        "limit-mismatch",
        422,
        "The facility limit is not quantity × price × (1 − haircut)",
    ),
    p(
        "limit-exceeded",
        422,
        "The drawdown would exceed the facility limit",
    ),
    p(
        "repayment-exceeds-outstanding",
        422,
        "The repayment is more than is outstanding",
    ),
    p("pledge-closed", 422, "The pledge is no longer active"),
    p(
        "pledge-outstanding",
        422,
        "The pledge still has a loan outstanding",
    ),
    p(
        "price-not-yet-effective",
        422,
        "The reference price is not yet in effect",
    ),
    p(
        "nothing-outstanding",
        422,
        "The pledge has no loan outstanding to enforce",
    ),
    p(
        "created-in-future",
        422,
        "The entry is dated after the ledger received it",
    ),
    p(
        "entry-expired",
        422,
        "The signed entry is older than the ledger accepts",
    ),
    p(
        "genesis-roles",
        422,
        "The operator's registration gives roles besides operator",
    ),
    p(
        "period-not-ended",
        422,
        "The monitoring period is not over yet",
    ),
    p(
        "maturity-passed",
        422,
        "The pledge's maturity is already past",
    ),
    p(
        "pledge-matured",
        422,
        "The pledge has matured: no more drawdowns",
    ),
    p(
        "not-in-default",
        422,
        "The loan is not in default: the bank alone cannot enforce",
    ),
    p(
        "insufficient-buffer",
        422,
        "Not enough sink in the buffer pool",
    ),
    p("key-unchanged", 422, "The new key is the current key"),
    p("bad-price-inputs", 422, "Too many or too long price inputs"),
    // The service.
    p("internal", 500, "Internal error"),
    p("storage", 500, "The store failed"),
    p(
        "storage-full",
        507,
        "The store has no room left on its disk",
    ),
    p("integrity", 500, "The stored ledger contradicts itself"),
    p("checkpoint", 500, "The checkpoint could not be made"),
    p(
        "store-unavailable",
        503,
        "The store cannot be reached; nothing was acknowledged",
    ),
    p(
        "not-caught-up",
        503,
        "This instance has not applied the entries asked for yet",
    ),
    p(
        "behind-floor",
        503,
        "The ledger holds fewer entries than a checkpoint its key signed; restore the missing ones",
    ),
    p("overloaded", 503, "Too many requests in flight"),
    p("timeout", 503, "The request took longer than the limit"),
];

/// The problem type of a kind; an unknown kind (a rule the core added since this table was
/// written) is a 422 refusal.
pub fn problem_type(kind: &str) -> ProblemType {
    PROBLEM_TYPES
        .iter()
        .copied()
        .find(|t| t.kind == kind)
        .unwrap_or(p("refused", 422, "Refused by a rule of the market"))
}

/// The detail of every 5xx answer: what went wrong is in the log, not in the answer.
const INTERNAL_DETAIL: &str =
    "the ledger could not complete the request; nothing unacknowledged was lost, and the operator's log has the details";

/// The detail of a `storage-full` answer.
const FULL_DETAIL: &str = "the disk of the ledger's store is full, so this entry was not acknowledged; the ledger takes writes again by itself once the operator makes room. Resubmit the same signed entry after the Retry-After delay: you get its receipt if it was appended, and it is appended otherwise";

/// Seconds a client is asked to wait before retrying a `storage-full` refusal: the longest time
/// between two of the ledger's own attempts to recover its store.
pub const STORAGE_FULL_RETRY_AFTER_SECS: u32 = 5;

/// An error answer: a kind, its status, and a detail for the reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    kind: String,
    status: StatusCode,
    detail: String,
    /// For a refused atomic group: the position of the entry that was refused.
    index: Option<usize>,
}

/// The body of a problem answer.
#[derive(Debug, Serialize, serde::Deserialize, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `/problems/<kind>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// The kind's title.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// The kind, as a plain string.
    pub kind: String,
    /// For a refused atomic group: which entry, from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

impl ApiError {
    /// An error of a kind listed in [`PROBLEM_TYPES`], with its detail.
    pub fn new(kind: &str, detail: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(problem_type(kind).status)
            .unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
        Self {
            kind: kind.to_owned(),
            status,
            detail: detail.into(),
            index: None,
        }
    }

    /// An internal error: the detail is logged, the answer says nothing internal.
    pub fn internal(kind: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(kind, %error, "internal error");
        Self::new(kind, INTERNAL_DETAIL)
    }

    /// A path or query parameter that does not parse.
    pub fn malformed_request(detail: impl Into<String>) -> Self {
        Self::new("malformed-request", detail)
    }

    /// The kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The problem body.
    pub fn problem(&self) -> Problem {
        // The type is that of the table, so that every type sent is described at its URI: a kind
        // the table does not list yet goes out as `refused`, with the kind itself beside it.
        let listed = problem_type(&self.kind);
        Problem {
            type_uri: format!("{PROBLEM_BASE}{}", listed.kind),
            title: listed.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            kind: self.kind.clone(),
            index: self.index,
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(error: LedgerError) -> Self {
        let index = match &error {
            LedgerError::Group { index, .. } => Some(*index),
            _ => None,
        };
        let mut api = match innermost(&error) {
            LedgerError::Store(StoreError::Full(_)) => {
                // Every refusal while the disk is full would be a line in a log that cannot be
                // written either: the service logs the store's state when it changes instead.
                tracing::debug!(%error, "refused: the store is full");
                ApiError::new("storage-full", FULL_DETAIL)
            }
            LedgerError::Store(_) | LedgerError::Integrity(_) | LedgerError::Replay(_) => {
                ApiError::internal(error.kind(), &error)
            }
            LedgerError::Checkpoint(_) => ApiError::internal("checkpoint", &error),
            LedgerError::Proof(proof) => match proof {
                ProofError::IndexOutOfRange { .. }
                | ProofError::OldSizeExceedsNew { .. }
                | ProofError::SizeUnavailable { .. } => {
                    ApiError::new("bad-proof-request", error.to_string())
                }
                _ => ApiError::internal(error.kind(), &error),
            },
            _ => ApiError::new(error.kind(), error.to_string()),
        };
        api.index = index;
        api
    }
}

fn innermost(error: &LedgerError) -> &LedgerError {
    match error {
        LedgerError::Group { error, .. } => innermost(error),
        other => other,
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new("body-too-large", rejection.body_text())
        } else {
            ApiError::new("malformed-request", rejection.body_text())
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::malformed_request(path_refusal(&rejection))
    }
}

/// What is wrong with a path parameter, in plain words that name it.
pub fn path_refusal(rejection: &PathRejection) -> String {
    let PathRejection::FailedToDeserializePathParams(failed) = rejection else {
        return rejection.body_text();
    };
    let plain = |expected_type: &str| match expected_type {
        "u64" | "u32" | "usize" | "u16" => "it must be a whole number (digits only)".to_owned(),
        other => format!("it must be a {other}"),
    };
    match failed.kind() {
        ErrorKind::ParseErrorAtKey {
            key,
            value,
            expected_type,
        } => format!(
            "the path's {key} \"{value}\" is not valid: {}",
            plain(expected_type)
        ),
        ErrorKind::ParseError {
            value,
            expected_type,
        } => format!(
            "\"{value}\" in the path is not valid: {}",
            plain(expected_type)
        ),
        ErrorKind::DeserializeError {
            key,
            value,
            message,
        } => format!("the path's {key} \"{value}\" is not valid: {message}"),
        ErrorKind::InvalidUtf8InPathParam { key } => {
            format!("the path's {key} is not UTF-8 text")
        }
        ErrorKind::Message(message) => format!("the path is not valid: {message}"),
        _ => failed.body_text(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110 §15.5.2: a 401 names how to authenticate. Here: sign the entry's body.
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("CarbonLedgerEd25519 realm=\"entry body\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::INSUFFICIENT_STORAGE {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(STORAGE_FULL_RETRY_AFTER_SECS),
            );
        }
        response.extensions_mut().insert(RejectedKind(self.kind));
        response
    }
}

/// Put on every error response, so that the metrics layer can count refusals by kind.
#[derive(Clone, Debug)]
pub struct RejectedKind(pub String);

/// Put on an error response whose body is already what its client reads (the health check's
/// 503), so that [`problemize`] leaves it as it is.
#[derive(Clone, Copy, Debug)]
pub struct NotAProblem;

/// Turns an error answer that is not yet a problem (axum's own 405, a 413 from a body limit...)
/// into one, so that clients see a single error format.
pub async fn problemize(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<NotAProblem>().is_some()
    {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    // The registry's own error pages (404, 400) are HTML, and stay so.
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if is_problem || is_page {
        return response;
    }
    let (kind, detail) = match status {
        StatusCode::NOT_FOUND => (
            "no-such-route",
            "there is no such route; see /v1/openapi.json",
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method-not-allowed",
            "this route does not take this method; see /v1/openapi.json",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("body-too-large", "the body is larger than the limit"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took longer than the limit"),
        StatusCode::SERVICE_UNAVAILABLE => ("overloaded", "too many requests in flight"),
        s if s.is_server_error() => ("internal", INTERNAL_DETAIL),
        _ => ("malformed-request", "the request is not valid"),
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut problem = ApiError::new(kind, detail).into_response();
    if let Some(allow) = allow {
        problem.headers_mut().insert(header::ALLOW, allow);
    }
    problem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_unique_and_statuses_valid() {
        let mut kinds: Vec<_> = PROBLEM_TYPES.iter().map(|t| t.kind).collect();
        kinds.sort_unstable();
        let before = kinds.len();
        kinds.dedup();
        assert_eq!(before, kinds.len(), "a kind is listed twice");
        for t in PROBLEM_TYPES {
            assert!(StatusCode::from_u16(t.status).is_ok(), "{}", t.kind);
            assert!(t.status >= 400, "{}", t.kind);
        }
    }

    #[test]
    fn a_5xx_detail_says_nothing_internal() {
        let error = LedgerError::Integrity("leaf 7 is missing from /srv/secret/path".to_owned());
        let api = ApiError::from(error);
        assert_eq!(api.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(api.kind(), "integrity");
        assert!(!api.detail().contains("/srv"), "{}", api.detail());
    }

    #[test]
    fn a_full_disk_is_507_with_retry_after_and_says_what_to_do() {
        let error = LedgerError::Store(StoreError::Full(
            "No space left on device (os error 28) in /srv/secret/path".to_owned(),
        ));
        let api = ApiError::from(error);
        assert_eq!(api.kind(), "storage-full");
        assert_eq!(api.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert!(!api.detail().contains("/srv"), "{}", api.detail());
        assert!(
            api.detail().contains("same signed entry"),
            "{}",
            api.detail()
        );
        let response = api.into_response();
        assert_eq!(
            response.headers().get(header::RETRY_AFTER).unwrap(),
            &STORAGE_FULL_RETRY_AFTER_SECS.to_string()
        );
        // Other store failures stay 500 storage.
        let other = ApiError::from(LedgerError::Store(StoreError::Io("EIO".to_owned())));
        assert_eq!((other.kind(), other.status().as_u16()), ("storage", 500));
    }

    #[test]
    fn a_group_refusal_keeps_the_inner_kind_and_the_index() {
        let inner = LedgerError::Signature(ledger_core::sign::SignatureError::Unsigned);
        let api = ApiError::from(LedgerError::Group {
            index: 3,
            error: Box::new(inner),
        });
        assert_eq!(api.kind(), "unsigned");
        assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(api.problem().index, Some(3));
    }
}
