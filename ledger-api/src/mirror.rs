//! `carbon-ledger mirror`: a copy of a ledger's leaves, kept off the ledger's machine, verified
//! against the operator's checkpoints.
//!
//! ```text
//! every --interval-ms: GET <ledger>/v1/checkpoint ─▶ signed by the operator key?
//!     GET <ledger>/v1/entries?from=<held> ─▶ replayed (chain, signatures, rules) and kept durably
//!     ─▶ the copy's root and state at the checkpoint's size are the checkpoint's ─▶ checkpoint kept
//! ```
//!
//! Its folder holds `mirror.json` (the ledger's URL, origin and operator key, pinned at the first
//! start) and `store/`, a [`Replica`] on sled with the last checkpoint it verified. A checkpoint
//! that contradicts the copy (a fork: another root at a size it holds, or leaves that do not reach
//! the signed root) is refused and kept as evidence in `refused-checkpoint`, and the mirror stops
//! following: what it holds is the history the operator key signed first.
//!
//! With `--listen` it serves what `restore --mirror URL` reads:
//!
//! ```text
//! GET /v1/checkpoint   the last checkpoint it verified its copy against
//! GET /v1/entries      ?from=&limit=: the leaves up to that checkpoint, as the ledger serves them
//! GET /v1/ledger       origin, operator key, size and root of the verified copy
//! GET /healthz         200 while it follows; 503 with the reason when it cannot or refused
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ed25519_dalek::VerifyingKey;
use ledger_core::checkpoint;
use ledger_core::ids::{Origin, PublicKey};
use ledger_core::ledger::Replica;
use ledger_core::state::StateCommitment;
use ledger_core::store::SledStore;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cli::{operator_key, CliError};
use crate::client::{Client, ClientOptions};

/// Most leaves asked for in one request (the ledger's default page limit).
pub const FETCH_PAGE: u64 = 1000;

/// Everything `mirror` needs.
#[derive(Clone, Debug)]
pub struct MirrorOptions {
    /// The ledger's URL.
    pub url: String,
    /// The mirror's folder.
    pub data: PathBuf,
    /// The operator's public key (base64, a C2SP verifier key, or a file holding one). Without
    /// it a new mirror takes the key `GET /v1/ledger` states, and says so.
    pub operator_key: Option<String>,
    /// Where to serve the copy, if anywhere.
    pub listen: Option<SocketAddr>,
    /// How long to wait between two rounds.
    pub interval: Duration,
    /// A CA certificate (PEM) to trust for an `https://` ledger, besides the platform's roots.
    pub ca_cert: Option<PathBuf>,
}

/// What `mirror.json` pins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MirrorFile {
    url: String,
    origin: String,
    operator_key: String,
}

/// The file that keeps a checkpoint the mirror refused, as evidence.
const REFUSED_FILE: &str = "refused-checkpoint";

/// A mirror: its verified copy and where it follows from.
pub struct Mirror {
    replica: Mutex<Replica>,
    client: Client,
    dir: PathBuf,
    status: Mutex<Status>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// How the mirror is doing.
#[derive(Clone, Debug, Default)]
struct Status {
    /// Why the last round failed (the ledger unreachable...), if it did.
    failing: Option<String>,
    /// Why it stopped following: a checkpoint that contradicts the copy.
    refused: Option<String>,
}

/// What one round did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    /// Leaves held after it.
    pub size: u64,
    /// Leaves it added.
    pub added: u64,
}

/// The leaves `[from, from + limit)` a ledger (or a mirror) serves with `GET /v1/entries`, byte
/// for byte; fewer at its end.
pub async fn fetch_leaves(client: &Client, from: u64, limit: u64) -> Result<Vec<Vec<u8>>, String> {
    #[derive(Deserialize)]
    struct Page {
        entries: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        seq: u64,
        envelope: Box<serde_json::value::RawValue>,
    }
    let path = format!(
        "/v1/entries?from={from}&limit={}",
        limit.clamp(1, FETCH_PAGE)
    );
    let answer = client
        .get(&path)
        .await
        .map_err(|e| format!("{}: {}", client.url(), e.0))?;
    let page: Page = answer
        .ok_json()
        .map_err(|e| format!("{}{path}: {}", client.url(), e.0))?;
    let mut leaves = Vec::with_capacity(page.entries.len());
    for (i, entry) in page.entries.into_iter().enumerate() {
        if entry.seq != from + i as u64 {
            return Err(format!(
                "{} served entry {} out of order",
                client.url(),
                entry.seq
            ));
        }
        leaves.push(entry.envelope.get().as_bytes().to_vec());
    }
    Ok(leaves)
}

/// The checkpoint a ledger, a mirror or a witness serves at `path`, as text.
pub async fn fetch_note(client: &Client, path: &str) -> Result<String, String> {
    let answer = client
        .get(path)
        .await
        .map_err(|e| format!("{}{path}: {}", client.url(), e.0))?;
    if !answer.status.is_success() {
        return Err(format!(
            "{}{path} answered {}: {}",
            client.url(),
            answer.status,
            answer.text().trim()
        ));
    }
    Ok(answer.text())
}

impl Mirror {
    /// Opens the mirror's folder, creating it on first start (the ledger's origin and operator
    /// key are then pinned: from `--operator-key` if given, or as `GET /v1/ledger` states them).
    pub async fn open(options: &MirrorOptions) -> Result<Self, CliError> {
        let client = Client::with_options(
            &options.url,
            ClientOptions {
                ca_cert: options.ca_cert.clone(),
            },
        )?;
        let dir = options.data.clone();
        std::fs::create_dir_all(&dir).map_err(|e| CliError(format!("{}: {e}", dir.display())))?;
        let pinned = dir.join("mirror.json");
        let asked = options
            .operator_key
            .as_deref()
            .map(operator_key)
            .transpose()?;
        let file = if pinned.exists() {
            let text = std::fs::read_to_string(&pinned)
                .map_err(|e| CliError(format!("{}: {e}", pinned.display())))?;
            let mut file: MirrorFile = serde_json::from_str(&text)
                .map_err(|e| CliError(format!("{}: {e}", pinned.display())))?;
            if let Some(key) = asked {
                if PublicKey::from(key).to_string() != file.operator_key {
                    return Err(CliError(format!(
                        "{} mirrors the ledger whose operator key is {}; --operator-key names another",
                        dir.display(),
                        file.operator_key
                    )));
                }
            }
            if file.url != options.url {
                // The ledger may move; its origin and key may not.
                file.url = options.url.clone();
                write_file(&pinned, &file)?;
            }
            file
        } else {
            let info: Value = client.get("/v1/ledger").await?.ok_json()?;
            let origin = info["origin"].as_str().unwrap_or_default().to_owned();
            let stated = info["operator_public_key"].as_str().unwrap_or_default();
            let key = match asked {
                Some(key) => {
                    if PublicKey::from(key).to_string() != stated {
                        return Err(CliError(format!(
                            "{} states the operator key {stated}, not the one given with --operator-key: refusing to mirror it",
                            options.url
                        )));
                    }
                    key
                }
                None => {
                    let key = operator_key(stated)?;
                    tracing::warn!(operator_key = %stated, origin = %origin, "a new mirror trusts the operator key the ledger states: compare it with the one the operator published");
                    key
                }
            };
            let file = MirrorFile {
                url: options.url.clone(),
                origin,
                operator_key: PublicKey::from(key).to_string(),
            };
            write_file(&pinned, &file)?;
            file
        };
        let origin: Origin = file
            .origin
            .parse()
            .map_err(|e| CliError(format!("{}: origin: {e}", pinned.display())))?;
        let key = operator_key(&file.operator_key)?;
        let store = SledStore::open(&dir.join("store")).map_err(|e| {
            CliError(format!(
                "{}: {e} (is another mirror running on this folder?)",
                dir.display()
            ))
        })?;
        let replica =
            Replica::open(Box::new(store), origin, key).map_err(|e| CliError(e.to_string()))?;
        let refused = std::fs::read_to_string(dir.join(REFUSED_FILE))
            .ok()
            .map(|_| {
                format!(
                    "a checkpoint that contradicts the copy was refused (kept in {}): this mirror no longer follows the ledger",
                    dir.join(REFUSED_FILE).display()
                )
            });
        Ok(Self {
            replica: Mutex::new(replica),
            client,
            dir,
            status: Mutex::new(Status {
                failing: None,
                refused,
            }),
        })
    }

    fn replica(&self) -> std::sync::MutexGuard<'_, Replica> {
        self.replica.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The origin and operator key of the ledger mirrored.
    pub fn ledger(&self) -> (Origin, VerifyingKey) {
        let replica = self.replica();
        (replica.origin().clone(), *replica.operator_key())
    }

    /// The last checkpoint the copy was verified against.
    pub fn kept_checkpoint(&self) -> Option<String> {
        self.replica().kept_checkpoint().ok().flatten()
    }

    /// One round: the ledger's latest checkpoint, the leaves up to it, verified and kept. A
    /// checkpoint that contradicts the copy is refused for good (see the module documentation).
    pub async fn sync(&self) -> Result<Round, String> {
        if let Some(refused) = self.status().refused.clone() {
            return Err(refused);
        }
        let outcome = self.sync_round().await;
        let mut status = self.status();
        match &outcome {
            Ok(_) => status.failing = None,
            Err(Fault::Unavailable(reason)) => status.failing = Some(reason.clone()),
            Err(Fault::Refused { reason, note }) => {
                let _ = std::fs::write(self.dir.join(REFUSED_FILE), note);
                tracing::error!(%reason, "refused a checkpoint: this mirror stops following the ledger");
                status.refused = Some(reason.clone());
            }
        }
        outcome.map_err(|fault| match fault {
            Fault::Unavailable(reason) | Fault::Refused { reason, .. } => reason,
        })
    }

    async fn sync_round(&self) -> Result<Round, Fault> {
        let note = fetch_note(&self.client, "/v1/checkpoint")
            .await
            .map_err(Fault::Unavailable)?;
        let (origin, key) = self.ledger();
        let refuse = |reason: String| Fault::Refused {
            reason,
            note: note.clone(),
        };
        let signed = checkpoint::open_checkpoint(&note, origin.as_str(), &key).map_err(|e| {
            refuse(format!(
                "the ledger's checkpoint is not signed by its operator key: {e}"
            ))
        })?;
        let held = self.replica().size();
        if signed.size <= held {
            let root = self
                .replica()
                .root_at(signed.size)
                .map_err(|e| Fault::Unavailable(format!("the mirror's own store failed: {e}")))?;
            if root != signed.root {
                return Err(refuse(format!(
                    "the ledger signed a checkpoint of size {} whose root is not that of the leaves this mirror holds: two histories under one key",
                    signed.size
                )));
            }
            return Ok(Round {
                size: held,
                added: 0,
            });
        }
        let mut size = held;
        while size < signed.size {
            let leaves = fetch_leaves(&self.client, size, signed.size - size)
                .await
                .map_err(Fault::Unavailable)?;
            if leaves.is_empty() {
                return Err(Fault::Unavailable(format!(
                    "the ledger served no entry from {size} on, yet its checkpoint counts {}",
                    signed.size
                )));
            }
            let leaves: Vec<Vec<u8>> = leaves
                .into_iter()
                .take(usize::try_from(signed.size - size).unwrap_or(usize::MAX))
                .collect();
            let mut replica = self.replica();
            replica.append(&leaves).map_err(|e| match e.kind() {
                "storage" | "store-unavailable" => {
                    Fault::Unavailable(format!("the mirror's own store failed: {e}"))
                }
                _ => refuse(format!(
                    "the ledger served an entry that does not verify: {e}"
                )),
            })?;
            size = replica.size();
        }
        let replica = self.replica();
        if replica.root() != signed.root {
            return Err(refuse(format!(
                "the leaves the ledger served do not reach the root of its checkpoint of size {}: it signed a history it does not serve",
                signed.size
            )));
        }
        if let Ok(Some(claimed)) = StateCommitment::from_checkpoint(&signed) {
            let replayed = replica
                .state_commitment()
                .map_err(|e| Fault::Unavailable(format!("the mirror's own store failed: {e}")))?;
            if claimed != replayed {
                return Err(refuse(format!(
                    "the checkpoint of size {} commits to another market state than its entries produce",
                    signed.size
                )));
            }
        }
        replica
            .keep_checkpoint(&note)
            .map_err(|e| Fault::Unavailable(format!("the mirror's own store failed: {e}")))?;
        Ok(Round {
            size,
            added: size - held,
        })
    }
}

/// Why a round failed.
#[derive(Debug)]
enum Fault {
    /// The ledger could not be reached or read; the next round tries again.
    Unavailable(String),
    /// The ledger contradicted the copy or its own checkpoint.
    Refused { reason: String, note: String },
}

fn write_file(path: &Path, file: &MirrorFile) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(file).unwrap_or_default() + "\n";
    std::fs::write(path, text).map_err(|e| CliError(format!("{}: {e}", path.display())))
}

// ---------------------------------------------------------------------------------------------
// Serving the copy
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct EntriesQuery {
    from: Option<u64>,
    limit: Option<u64>,
}

/// The router of the mirror's service.
pub fn app(mirror: Arc<Mirror>) -> Router {
    Router::new()
        .route("/v1/checkpoint", get(checkpoint_note))
        .route("/v1/entries", get(entries))
        .route("/v1/ledger", get(ledger_info))
        .route("/healthz", get(healthz))
        .with_state(mirror)
}

fn plain(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The size of the checkpoint kept: what the mirror serves up to.
fn verified_size(note: Option<&str>) -> u64 {
    note.and_then(|n| n.lines().nth(1))
        .and_then(|l| l.parse().ok())
        .unwrap_or(0)
}

async fn checkpoint_note(State(mirror): State<Arc<Mirror>>) -> Response {
    match tokio::task::spawn_blocking(move || mirror.kept_checkpoint()).await {
        Ok(Some(note)) => plain(StatusCode::OK, note),
        _ => plain(
            StatusCode::NOT_FOUND,
            "this mirror has not verified a checkpoint yet\n".to_owned(),
        ),
    }
}

async fn entries(State(mirror): State<Arc<Mirror>>, Query(query): Query<EntriesQuery>) -> Response {
    let from = query.from.unwrap_or(0);
    let limit = query.limit.unwrap_or(100).clamp(1, FETCH_PAGE);
    let page = tokio::task::spawn_blocking(move || -> Result<Value, String> {
        let size = verified_size(mirror.kept_checkpoint().as_deref());
        let replica = mirror.replica();
        let mut items = Vec::new();
        let end = size.min(from.saturating_add(limit));
        replica
            .store()
            .scan_leaves(from, &mut |seq, leaf| {
                if seq >= end {
                    return Ok(false);
                }
                items.push((seq, leaf.to_vec()));
                Ok(true)
            })
            .map_err(|e| e.to_string())?;
        let mut entries = Vec::with_capacity(items.len());
        for (seq, leaf) in items {
            let text = String::from_utf8(leaf).map_err(|_| format!("leaf {seq} is not UTF-8"))?;
            let envelope = serde_json::value::RawValue::from_string(text)
                .map_err(|e| format!("leaf {seq}: {e}"))?;
            entries.push(serde_json::json!({ "seq": seq, "envelope": envelope }));
        }
        let next = entries
            .last()
            .and_then(|e| e["seq"].as_u64())
            .map(|seq| seq + 1)
            .filter(|next| *next < size);
        Ok(serde_json::json!({ "size": size, "entries": entries, "next": next }))
    })
    .await;
    match page {
        Ok(Ok(page)) => Json(page).into_response(),
        Ok(Err(error)) => {
            tracing::error!(%error, "could not read the copy");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the mirror could not read its copy\n".to_owned(),
            )
        }
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error\n".to_owned(),
        ),
    }
}

async fn ledger_info(State(mirror): State<Arc<Mirror>>) -> Response {
    let info = tokio::task::spawn_blocking(move || {
        let note = mirror.kept_checkpoint();
        let size = verified_size(note.as_deref());
        let replica = mirror.replica();
        let root = replica.root_at(size).map(hex::encode).unwrap_or_default();
        serde_json::json!({
            "origin": replica.origin().as_str(),
            "operator_public_key": PublicKey::from(*replica.operator_key()).to_string(),
            "size": size,
            "root": root,
            "mirror": true,
        })
    })
    .await;
    match info {
        Ok(info) => Json(info).into_response(),
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error\n".to_owned(),
        ),
    }
}

async fn healthz(State(mirror): State<Arc<Mirror>>) -> Response {
    let status = mirror.status().clone();
    let size = verified_size(mirror.kept_checkpoint().as_deref());
    match (status.refused, status.failing) {
        (Some(reason), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "refused", "size": size, "detail": reason})),
        )
            .into_response(),
        (None, Some(reason)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "size": size, "detail": reason})),
        )
            .into_response(),
        (None, None) => Json(serde_json::json!({"status": "ok", "size": size})).into_response(),
    }
}

/// `carbon-ledger mirror`: follows the ledger every `interval` (serving the copy with
/// `--listen`) until `stop` resolves.
pub async fn run(
    options: MirrorOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), CliError> {
    let mirror = Arc::new(Mirror::open(&options).await?);
    let stopping = Arc::new(AtomicBool::new(false));
    let server = match options.listen {
        Some(listen) => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| CliError(format!("cannot listen on {listen}: {e}")))?;
            let addr = listener.local_addr().map_err(|e| CliError(e.to_string()))?;
            tracing::info!(
                "mirror listening on http://{addr} — data in {}",
                options.data.display()
            );
            let router = app(Arc::clone(&mirror));
            Some(tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            }))
        }
        None => None,
    };
    let follower = {
        let mirror = Arc::clone(&mirror);
        let stopping = Arc::clone(&stopping);
        let interval = options.interval;
        tokio::spawn(async move {
            let mut failing = false;
            while !stopping.load(Ordering::Relaxed) {
                match mirror.sync().await {
                    Ok(round) => {
                        if round.added > 0 {
                            tracing::info!(
                                size = round.size,
                                added = round.added,
                                "verified and kept"
                            );
                        }
                        if failing {
                            tracing::info!("following the ledger again");
                        }
                        failing = false;
                    }
                    Err(reason) if !failing => {
                        tracing::warn!(%reason, "this round failed");
                        failing = true;
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(interval).await;
            }
        })
    };
    stop.await;
    stopping.store(true, Ordering::Relaxed);
    follower.abort();
    let _ = follower.await;
    if let Some(server) = server {
        server.abort();
        let _ = server.await;
    }
    Ok(())
}

/// `carbon-ledger mirror --once`: one round, and what it did.
pub async fn once(options: MirrorOptions) -> Result<String, CliError> {
    let mirror = Mirror::open(&options).await?;
    let round = mirror.sync().await.map_err(CliError)?;
    Ok(format!(
        "the mirror in {} holds {} entries of {}, verified against its checkpoint ({} new)\n",
        options.data.display(),
        round.size,
        mirror.ledger().0,
        round.added
    ))
}
