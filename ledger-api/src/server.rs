//! Running the service: open the data folder and the ledger, bind, serve until told to stop, then
//! finish what is in flight and close the store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_core::ledger::{Ledger, LedgerError, WriteHealth};
use ledger_core::store::SledStore;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::connections;
use crate::cosigner::{Cosigner, WitnessPeer};
use crate::keys::{open_data_dir, DataDir, DataDirOptions, KeyError};
use crate::routes::{app, AppState, Limits};

/// Why the service could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The data folder or the operator key.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The ledger could not be opened.
    #[error("the ledger in {path} cannot be opened: {source}")]
    Ledger {
        /// The store's folder.
        path: PathBuf,
        /// Why.
        source: Box<LedgerError>,
    },
    /// The address could not be bound, or serving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How long a stop waits, after the connections are closed, for handlers on blocking threads
/// to let go of the ledger so that the store closes before the process exits.
pub const STORE_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How long the process waits at its exit for blocking threads that are still running (see
/// [`STORE_CLOSE_WAIT`]); then it exits without them.
pub const BLOCKING_EXIT_WAIT: Duration = Duration::from_secs(5);

/// How often, at most, a new checkpoint goes to the witnesses unless configured otherwise.
pub const DEFAULT_COSIGN_INTERVAL: Duration = Duration::from_secs(1);

/// How long a signed entry may take to reach the ledger unless configured otherwise: 24 h.
pub const DEFAULT_ENTRY_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Everything `serve` needs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The data folder and what to create in it on first start.
    pub data: DataDirOptions,
    /// Where to listen (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// The request limits.
    pub limits: Limits,
    /// How long a signed entry may take to reach the ledger (see
    /// [`ledger_core::ledger::LedgerConfig::entry_max_age`]).
    pub entry_max_age: Duration,
    /// The witnesses to submit checkpoints to, as `URL=VKEY`.
    pub witnesses: Vec<String>,
    /// How often, at most, a new checkpoint goes to the witnesses.
    pub cosign_interval: Duration,
    /// Where the entries live: `None` for sled in the data folder, or the URL of a PostgreSQL
    /// database (`postgres://USER@HOST:PORT/DB`) that several instances may share.
    pub store: Option<String>,
}

/// A service running on this process's runtime.
#[derive(Debug)]
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The data folder.
    pub data_dir: PathBuf,
    /// The origin of its ledger.
    pub origin: String,
    /// The operator key file.
    pub operator_key_path: PathBuf,
    ledger: Arc<Ledger>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    /// The store's watcher, the cosigner's rounds and the shared store's follower, stopped with
    /// the service.
    background: Vec<JoinHandle<()>>,
}

/// Opens the ledger of a data folder: on sled in `DIR/store` (holding back `reserve` bytes of
/// disk, see [`SledStore::with_reserve`]), or in the PostgreSQL database at `store` (the last
/// signed checkpoint is then also kept in `DIR/last-checkpoint`).
pub fn open_ledger(
    dir: &DataDir,
    config: ledger_core::ledger::LedgerConfig,
    store: Option<&str>,
    reserve: u64,
) -> Result<Ledger, ServeError> {
    let failed = |path: String| {
        move |source: LedgerError| ServeError::Ledger {
            path: PathBuf::from(path),
            source: Box::new(source),
        }
    };
    match store {
        None => {
            let path = dir.store_path.display().to_string();
            let store = SledStore::with_reserve(&dir.store_path, reserve)
                .map_err(|e| failed(path.clone())(e.into()))?;
            Ledger::open(Box::new(store), config).map_err(failed(path))
        }
        Some(url) => {
            let target = describe_store(url);
            let store = ledger_postgres::PgStore::connect(url)
                .map_err(|e| failed(target.clone())(LedgerError::Store(e)))?
                .with_witness(&dir.dir);
            Ledger::open(Box::new(store), config).map_err(failed(target))
        }
    }
}

/// A store URL as it may be logged: without a password.
pub fn describe_store(url: &str) -> String {
    match url.parse::<ledger_postgres::postgres::Config>() {
        Ok(config) => {
            let host = match config.get_hosts().first() {
                Some(ledger_postgres::postgres::config::Host::Tcp(name)) => name.clone(),
                _ => "localhost".to_owned(),
            };
            format!(
                "postgres://{}@{host}:{}/{}",
                config.get_user().unwrap_or(""),
                config.get_ports().first().copied().unwrap_or(5432),
                config.get_dbname().unwrap_or("")
            )
        }
        Err(_) => "an invalid store URL".to_owned(),
    }
}

/// Opens the data folder (creating key and origin on first start), opens the ledger, binds and
/// starts serving in the background.
pub async fn start(options: ServeOptions) -> Result<Running, ServeError> {
    let data = options.data.clone();
    let entry_max_age = options.entry_max_age;
    let store = options.store.clone();
    let store_reserve = options.limits.store_reserve_bytes;
    let (dir, ledger) = tokio::task::spawn_blocking(move || -> Result<_, ServeError> {
        let dir = open_data_dir(&data)?;
        let mut config = dir.config.clone();
        config.entry_max_age =
            time::Duration::try_from(entry_max_age).unwrap_or(time::Duration::MAX);
        let ledger = open_ledger(&dir, config, store.as_deref(), store_reserve)?;
        Ok((dir, ledger))
    })
    .await
    .map_err(|e| ServeError::Io(std::io::Error::other(e)))??;
    let ledger = Arc::new(ledger);
    if dir.created {
        tracing::info!(key = %dir.key_path.display(), origin = %dir.config.origin, "created the operator key and the ledger's origin");
    }
    let listener = TcpListener::bind(options.listen).await?;
    let addr = listener.local_addr()?;
    let cosigner = if options.witnesses.is_empty() {
        None
    } else {
        let peers = options
            .witnesses
            .iter()
            .map(|spec| WitnessPeer::parse(spec))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServeError::Io(std::io::Error::other(format!("--witness: {e}"))))?;
        Some(Arc::new(Cosigner::new(peers)))
    };
    let state = AppState::with_witnesses(ledger.clone(), options.limits.clone(), cosigner.clone());
    let mut background = Vec::new();
    if let Some(cosigner) = &cosigner {
        background.push(cosigner.spawn(state.clone(), options.cosign_interval));
    }
    if ledger.shared_store() {
        background.push(spawn_follower(Arc::clone(&ledger)));
    }
    background.push(tokio::spawn(watch_store(Arc::clone(&ledger))));
    let router = app(state.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    // Connections being answered at a stop get the shutdown timeout to finish, whatever the
    // request timeout: a download its client stopped reading would hold the stop until then.
    let drain = options.limits.shutdown_timeout;
    let task = tokio::spawn(async move {
        let stopped = async move {
            let _ = stopped.await;
        };
        connections::serve(listener, router, state, stopped, drain).await
    });
    tracing::info!(
        "listening on http://{addr} — data in {} — ledger \"{}\", entries: {}",
        dir.dir.display(),
        dir.config.origin,
        ledger.size()
    );
    if let Some(url) = &options.store {
        tracing::info!(store = %describe_store(url), "the entries live in PostgreSQL");
    }
    Ok(Running {
        addr,
        data_dir: dir.dir.clone(),
        origin: dir.config.origin.to_string(),
        operator_key_path: dir.key_path.clone(),
        ledger,
        stop: Some(stop),
        task,
        background,
    })
}

/// How often an instance on a shared store catches up, by itself, with what other instances
/// appended: an instance that neither writes nor is asked for something it lacks is never more
/// than about this much behind the database.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// Catches the ledger up with its shared store every [`FOLLOW_INTERVAL`] (one read of the
/// store's head when nothing was missed), so that lists, pages and the registry of an idle
/// instance do not fall behind. A store that cannot be read is logged once until it can again.
fn spawn_follower(ledger: Arc<Ledger>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            tokio::time::sleep(FOLLOW_INTERVAL).await;
            let ledger = Arc::clone(&ledger);
            match tokio::task::spawn_blocking(move || ledger.refresh()).await {
                Ok(Ok(_)) if failing => {
                    tracing::info!("caught up with the shared store again");
                    failing = false;
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) if !failing => {
                    tracing::warn!(%error, "could not catch up with the shared store");
                    failing = true;
                }
                Ok(Err(_)) => {}
                Err(error) => tracing::warn!(%error, "the catch-up task failed"),
            }
        }
    })
}

/// How often the service looks at its store's write health.
const STORE_WATCH: Duration = Duration::from_secs(1);

/// While writes fail, lets the ledger retry its store every second (so that it recovers once
/// the disk has room, with no submission needed), and logs each change of the store's state.
async fn watch_store(ledger: Arc<Ledger>) {
    let mut interval = tokio::time::interval(STORE_WATCH);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut was = WriteHealth::Accepting;
    loop {
        interval.tick().await;
        let retrying = ledger.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || retrying.retry_store()).await else {
            continue;
        };
        match (&was, &now) {
            (WriteHealth::Accepting, WriteHealth::Failing { error, .. }) => tracing::error!(
                %error,
                "writes are failing: submissions are refused and /healthz answers 503 until the store takes writes again; the ledger retries on its own"
            ),
            (WriteHealth::Failing { .. }, WriteHealth::Accepting) => {
                let stats = ledger.failure_stats();
                tracing::warn!(
                    failed_writes = stats.failed_writes,
                    recoveries = stats.recoveries,
                    "the store recovered: it was reopened from disk and checked, and writes are accepted again"
                );
            }
            (WriteHealth::Halted { .. }, _) | (_, WriteHealth::Accepting) => {}
            (_, WriteHealth::Halted { reason, .. }) => {
                tracing::error!(%reason, "the ledger halted: it writes nothing more");
            }
            _ => {}
        }
        was = now;
    }
}

impl Running {
    /// The base URL, `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The ledger it serves (for tests that look behind the API).
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Stops accepting connections, lets the requests being answered finish within the shutdown
    /// timeout ([`Limits::shutdown_timeout`]; then their connections are cut), then closes the
    /// store.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for task in self.background.drain(..) {
            task.abort();
            let _ = task.await;
        }
        let served = (&mut self.task)
            .await
            .map_err(|e| ServeError::Io(std::io::Error::other(e)))?;
        // Handlers that ran on blocking threads may still hold the ledger for a moment (an
        // export whose connection was cut stops at its next chunk).
        let deadline = Instant::now() + STORE_CLOSE_WAIT;
        while Arc::strong_count(&self.ledger) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let size = self.ledger.size();
        let held = Arc::strong_count(&self.ledger) - 1;
        drop(self.ledger);
        if held == 0 {
            tracing::info!(entries = size, "stopped; the store is closed");
        } else {
            // Everything acknowledged is durable already: exiting loses nothing of it.
            tracing::warn!(
                entries = size,
                handlers = held,
                "stopped; handlers still running on blocking threads hold the store, which closes as the process exits"
            );
        }
        served.map_err(ServeError::from)
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C: finishing what is in flight"),
        () = terminate => tracing::info!("SIGTERM: finishing what is in flight"),
    }
}

/// `carbon-ledger serve`: runs until SIGTERM or Ctrl-C, then shuts down cleanly.
pub async fn serve(options: ServeOptions) -> Result<(), ServeError> {
    let running = start(options).await?;
    shutdown_signal().await;
    running.stop().await
}
