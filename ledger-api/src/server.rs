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
use crate::keys::{open_data_dir, DataDirOptions, KeyError};
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
    watcher: JoinHandle<()>,
}

/// Opens the data folder (creating key and origin on first start), opens the ledger, binds and
/// starts serving in the background.
pub async fn start(options: ServeOptions) -> Result<Running, ServeError> {
    let data = options.data.clone();
    let entry_max_age = options.entry_max_age;
    let store_reserve = options.limits.store_reserve_bytes;
    let (dir, ledger) = tokio::task::spawn_blocking(move || -> Result<_, ServeError> {
        let dir = open_data_dir(&data)?;
        let mut config = dir.config.clone();
        config.entry_max_age =
            time::Duration::try_from(entry_max_age).unwrap_or(time::Duration::MAX);
        let failed = |source: LedgerError| ServeError::Ledger {
            path: dir.store_path.clone(),
            source: Box::new(source),
        };
        let store = SledStore::with_reserve(&dir.store_path, store_reserve)
            .map_err(|e| failed(e.into()))?;
        let ledger = Ledger::open(Box::new(store), config).map_err(failed)?;
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
    let state = AppState::new(ledger.clone(), options.limits.clone());
    let router = app(state.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    // Requests in flight at a stop get the request timeout to finish, and a little more.
    let drain = options.limits.request_timeout + Duration::from_secs(5);
    let task = tokio::spawn(async move {
        let stopped = async move {
            let _ = stopped.await;
        };
        connections::serve(listener, router, state, stopped, drain).await
    });
    let watcher = tokio::spawn(watch_store(ledger.clone()));
    tracing::info!(
        "listening on http://{addr} — data in {} — ledger \"{}\", entries: {}",
        dir.dir.display(),
        dir.config.origin,
        ledger.size()
    );
    Ok(Running {
        addr,
        data_dir: dir.dir.clone(),
        origin: dir.config.origin.to_string(),
        operator_key_path: dir.key_path.clone(),
        ledger,
        stop: Some(stop),
        task,
        watcher,
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

    /// Stops accepting connections, lets in-flight requests finish, then closes the store.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.watcher.abort();
        let _ = (&mut self.watcher).await;
        let served = (&mut self.task)
            .await
            .map_err(|e| ServeError::Io(std::io::Error::other(e)))?;
        // Handlers that ran on blocking threads may still hold the ledger for a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&self.ledger) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let size = self.ledger.size();
        drop(self.ledger);
        tracing::info!(entries = size, "stopped; the store is closed");
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
