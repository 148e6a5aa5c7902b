//! `carbon-ledger witness`: a validating witness anyone can run — a bank, the county's financial
//! office, an auditor.
//!
//! ```text
//! POST /add-checkpoint             C2SP tlog-witness: old size, consistency proof, checkpoint →
//!                                  Ed25519 cosignature/v1 line (after replaying every new entry)
//! GET  /<sha256(origin)>/checkpoint  the last checkpoint it cosigned, with its cosignature
//! GET  /                           its name, its verifier key (C2SP vkey) and the logs it follows
//! ```
//!
//! Its folder holds its key (`witness.key`, mode 0600), its name (`witness.json`) and, per log,
//! a verified copy of the ledger with the last checkpoint it cosigned (`logs/<sha256(origin)>/`).
//! The logic is [`ledger_core::witness`]; this module serves it over HTTP and fetches the
//! ledger's entries (`GET /v1/entries`) for it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ledger_core::checkpoint;
use ledger_core::ids::Origin;
use ledger_core::ledger::Replica;
use ledger_core::store::SledStore;
use ledger_core::witness::{origin_hash, Witness, WitnessError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::client::Client;
use crate::keys;

/// Everything `witness` needs.
#[derive(Clone, Debug)]
pub struct WitnessOptions {
    /// Its folder.
    pub data: PathBuf,
    /// Its key name, for a new witness (an existing one keeps its own).
    pub name: Option<String>,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The logs it witnesses: each ledger's URL and its checkpoint verifier key (`URL=VKEY`).
    pub logs: Vec<String>,
}

/// What `witness.json` keeps.
#[derive(Debug, Serialize, Deserialize)]
struct WitnessFile {
    name: String,
}

/// A log the witness follows: where to fetch its entries.
#[derive(Debug)]
struct Followed {
    origin: String,
    url: String,
    client: Client,
}

struct Inner {
    witness: Witness,
    logs: Vec<Followed>,
}

/// The witness service's state.
#[derive(Clone)]
pub struct WitnessState(Arc<Inner>);

impl std::fmt::Debug for WitnessState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WitnessState")
            .field("name", &self.0.witness.name())
            .finish_non_exhaustive()
    }
}

/// A witness running on this process's runtime.
#[derive(Debug)]
pub struct RunningWitness {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its verifier key (C2SP vkey, type 0x04): what banks and the ledger configure.
    pub verifier_key: String,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RunningWitness {
    /// Its base URL, `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.map_err(std::io::Error::other)?
    }
}

/// Why the witness could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WitnessStartError(pub String);

/// Opens the witness's folder (creating its key and name on first start) and its copies of the
/// logs, without serving.
pub fn open(options: &WitnessOptions) -> Result<WitnessState, WitnessStartError> {
    let fail = |e: &dyn std::fmt::Display| WitnessStartError(e.to_string());
    std::fs::create_dir_all(&options.data).map_err(|e| fail(&e))?;
    let key_path = options.data.join("witness.key");
    let key = if key_path.exists() {
        keys::read_key_file(&key_path).map_err(|e| fail(&e))?
    } else {
        let key = keys::generate_key();
        keys::write_key_file(&key_path, &key).map_err(|e| fail(&e))?;
        key
    };
    let name_path = options.data.join("witness.json");
    let name = if name_path.exists() {
        let text = std::fs::read_to_string(&name_path).map_err(|e| fail(&e))?;
        let file: WitnessFile = serde_json::from_str(&text).map_err(|e| fail(&e))?;
        if let Some(asked) = options.name.as_ref().filter(|n| **n != file.name) {
            return Err(WitnessStartError(format!(
                "{} is the witness {}, not {asked}: a witness keeps its name",
                options.data.display(),
                file.name
            )));
        }
        file.name
    } else {
        let name = options.name.clone().ok_or_else(|| {
            WitnessStartError(
                "a new witness needs --name (its key name, such as witness.bank.example/w1)"
                    .to_owned(),
            )
        })?;
        checkpoint::validate_key_name(&name).map_err(|e| fail(&e))?;
        let text = serde_json::to_string_pretty(&WitnessFile { name: name.clone() })
            .map_err(|e| fail(&e))?;
        std::fs::write(&name_path, text + "\n").map_err(|e| fail(&e))?;
        name
    };
    let mut witness = Witness::new(&name, key).map_err(|e| fail(&e))?;
    let mut logs = Vec::new();
    for spec in &options.logs {
        let (url, vkey) = spec
            .split_once('=')
            .ok_or_else(|| WitnessStartError(format!("--log \"{spec}\" is not URL=VKEY")))?;
        let (origin, key) = checkpoint::parse_verifier_key(vkey).map_err(|e| fail(&e))?;
        let parsed: Origin = origin.parse().map_err(|e| fail(&e))?;
        let dir = options.data.join("logs").join(origin_hash(&origin));
        let store = SledStore::open(&dir).map_err(|e| fail(&e))?;
        let replica = Replica::open(Box::new(store), parsed, key).map_err(|e| fail(&e))?;
        witness.add_log(replica);
        logs.push(Followed {
            origin,
            url: url.to_owned(),
            client: Client::new(url).map_err(|e| fail(&e.0))?,
        });
    }
    Ok(WitnessState(Arc::new(Inner { witness, logs })))
}

impl WitnessState {
    /// Its verifier key.
    pub fn verifier_key(&self) -> String {
        self.0.witness.verifier_key()
    }

    /// The leaves `[from, to)` of a log, fetched from its service.
    fn fetch(&self, origin: &Origin, from: u64, to: u64) -> Result<Vec<Vec<u8>>, String> {
        #[derive(Deserialize)]
        struct Page {
            entries: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            seq: u64,
            envelope: Box<serde_json::value::RawValue>,
        }
        let log = self
            .0
            .logs
            .iter()
            .find(|l| l.origin == origin.as_str())
            .ok_or_else(|| format!("no URL for {origin}"))?;
        let path = format!("/v1/entries?from={from}&limit={}", (to - from).min(1000));
        let answer = tokio::runtime::Handle::current()
            .block_on(log.client.get(&path))
            .map_err(|e| format!("{}: {}", log.url, e.0))?;
        let page: Page = answer
            .ok_json()
            .map_err(|e| format!("{}: {}", log.url, e.0))?;
        let mut leaves = Vec::with_capacity(page.entries.len());
        for (i, entry) in page.entries.into_iter().enumerate() {
            if entry.seq != from + i as u64 {
                return Err(format!(
                    "{} served entry {} out of order",
                    log.url, entry.seq
                ));
            }
            leaves.push(entry.envelope.get().as_bytes().to_vec());
        }
        Ok(leaves)
    }
}

/// The router of the witness service.
pub fn app(state: WitnessState) -> Router {
    Router::new()
        .route("/", get(info))
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/{origin_hash}/checkpoint", get(latest))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn add_checkpoint(State(state): State<WitnessState>, body: Bytes) -> Response {
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "the request is not UTF-8 text\n".to_owned(),
        );
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let outcome = tokio::task::spawn_blocking(move || {
        let mut fetch = |origin: &Origin, from: u64, to: u64| state.fetch(origin, from, to);
        state.0.witness.add_checkpoint(&body, &mut fetch, now)
    })
    .await;
    match outcome {
        Ok(Ok(line)) => text(StatusCode::OK, "text/plain; charset=utf-8", line),
        Ok(Err(WitnessError::Conflict { size })) => text(
            StatusCode::CONFLICT,
            "text/x.tlog.size",
            format!("{size}\n"),
        ),
        Ok(Err(error)) => {
            let status =
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            tracing::warn!(%error, "refused to cosign");
            text(status, "text/plain; charset=utf-8", format!("{error}\n"))
        }
        Err(error) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("{error}\n"),
        ),
    }
}

async fn latest(State(state): State<WitnessState>, UrlPath(hash): UrlPath<String>) -> Response {
    let outcome = tokio::task::spawn_blocking(move || state.0.witness.latest(&hash)).await;
    match outcome {
        Ok(Ok(Some(note))) => text(StatusCode::OK, "text/plain; charset=utf-8", note),
        Ok(Ok(None)) => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "this witness has not cosigned a checkpoint of that log yet\n".to_owned(),
        ),
        Ok(Err(error)) => text(
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "text/plain; charset=utf-8",
            format!("{error}\n"),
        ),
        Err(error) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("{error}\n"),
        ),
    }
}

async fn info(State(state): State<WitnessState>) -> Json<Value> {
    let logs: Vec<Value> = state
        .0
        .logs
        .iter()
        .map(|l| serde_json::json!({"origin": l.origin, "url": l.url, "origin_hash": origin_hash(&l.origin)}))
        .collect();
    Json(serde_json::json!({
        "name": state.0.witness.name(),
        "verifier_key": state.0.witness.verifier_key(),
        "statement": "cosignature/v1; and every entry up to the cosigned size replays under the rules of the market, and the checkpoint's state line commits to the state they produce",
        "logs": logs,
    }))
}

/// Opens the witness and serves it in the background.
pub async fn start(options: WitnessOptions) -> Result<RunningWitness, WitnessStartError> {
    let opened = options.clone();
    let state = tokio::task::spawn_blocking(move || open(&opened))
        .await
        .map_err(|e| WitnessStartError(e.to_string()))??;
    let verifier_key = state.verifier_key();
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|e| WitnessStartError(format!("cannot listen on {}: {e}", options.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| WitnessStartError(e.to_string()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = app(state);
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(%addr, vkey = %verifier_key, "witness listening");
    Ok(RunningWitness {
        addr,
        verifier_key,
        task,
        stop: Some(stop),
    })
}
