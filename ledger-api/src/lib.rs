//! `ledger-api`: the HTTP service and the command-line tool of the carbon-sink finance ledger.
//!
//! ```text
//! client ──HTTP/JSON──▶ axum router ─▶ thin handler ─▶ spawn_blocking ─▶ ledger_core::Ledger
//!                         │  limits: body size, in-flight (503), timeout     │ group commit:
//!                         │  errors: RFC 9457 problem+json                  │ one write, one
//!                         └─ /metrics, /healthz, /v1/openapi.json           ▼ fdatasync, answers
//! ```
//!
//! - [`routes`]: the router ([`app`]) and its handlers; `docs/api.md` describes every route.
//! - [`problem`]: the one error type, [`ApiError`], and the table of problem kinds.
//! - [`server`]: open the data folder, bind, serve, shut down cleanly; retry a failing store.
//! - [`connections`]: the accept loop: header-read and idle timeouts, a cap on connections.
//! - [`logging`]: log lines to stderr that are dropped and counted, never fatal, when stderr
//!   cannot be written.
//! - [`keys`]: key files (mode 0600) and the data folder (operator key, origin).
//! - [`client`]: a small HTTP client for the CLI, the demo and the tests.
//! - [`cosigner`]: submitting checkpoints to witnesses (`serve --witness`), collecting their
//!   cosignatures; [`witness`]: the witness service itself (`carbon-ledger witness`).
//! - [`cli`]: `keygen`, `sign`, `submit`, `verify`, `verify-pledge`.
//! - [`demo`]: the reference case (Xiazhu Lake wetland, 2022) replayed over HTTP, with a readable
//!   report.
//! - [`metrics`]: Prometheus metrics.
//! - [`progress`](mod@progress): how far `check`, `verify` and `restore` have got, on standard
//!   error (a bar on a terminal, plain lines otherwise).
//! - [`bench`](mod@bench): the bounded load tool behind `carbon-ledger bench`.
//! - [`web`]: the public registry's HTML pages at `/`, and the in-browser check.
#![forbid(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod client;
pub mod connections;
pub mod cosigner;
pub mod demo;
pub mod events;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod mirror;
pub mod problem;
pub mod progress;
pub mod query;
pub mod recovery;
pub mod routes;
pub mod server;
pub mod web;
pub mod witness;

pub use problem::ApiError;
pub use routes::{app, AppState, Limits};
