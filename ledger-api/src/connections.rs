//! Serving connections, bounded: a header-read timeout, an idle keep-alive timeout and a cap on
//! open connections, each set in [`Limits`].
//!
//! `axum::serve` keeps a connection as long as its client does; this accept loop serves each
//! connection with hyper's HTTP/1.1 server and watches it:
//!
//! ```text
//!  accept ──▶ awaiting head ──(head read)──▶ in request ──(answer)──▶ responding ──(body sent)──▶ idle
//!               │ header_read_timeout                                    │ idle_timeout without     │ idle_timeout
//!               ▼                                                        ▼ a byte written           ▼
//!             closed                                                   closed                     closed
//!                                      (the first byte of the next request: awaiting head again)
//! ```
//!
//! A new connection must send a whole request head within `header_read_timeout` (a client that
//! connects and sends nothing, or sends a byte at a time, is closed); a kept-alive connection
//! may wait `idle_timeout` for its next request; a response whose client stops reading is cut
//! after `idle_timeout` without progress. A request being answered is bounded by the request
//! timeout of the routes, not here.
//!
//! At most `max_connections` are open. When one more arrives, the connection that has been
//! quiet longest among those not being answered (idle, or still sending its head) is closed to
//! make room, so that an operator's `GET /healthz` gets through even when idle or slow clients
//! hold every slot; if every connection is being answered, the new one gets `503 overloaded`
//! and is closed.
//!
//! On shutdown the listener closes, every connection finishes the request it is answering (idle
//! ones close at once; an event stream ends: see [`crate::events`]), and those still open after
//! the drain deadline ([`Limits::shutdown_timeout`]) are cut — a response whose client stopped
//! reading among them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use crate::routes::{AppState, Limits};

/// Where a connection is in its life (see the module's picture).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    AwaitingHead = 0,
    InRequest = 1,
    Responding = 2,
    Idle = 3,
}

impl Phase {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Phase::AwaitingHead,
            1 => Phase::InRequest,
            2 => Phase::Responding,
            _ => Phase::Idle,
        }
    }

    /// Whether the connection may be closed to make room: no request of it is being answered.
    fn evictable(self) -> bool {
        matches!(self, Phase::AwaitingHead | Phase::Idle)
    }
}

/// One connection's state, shared by its I/O, its service and its watchdog.
#[derive(Debug)]
struct Watch {
    epoch: Instant,
    phase: AtomicU8,
    /// When the phase began, ms since `epoch`.
    since_ms: AtomicU64,
    /// The last byte read or written, ms since `epoch`.
    last_io_ms: AtomicU64,
    /// Chosen to make room: close.
    evict: Notify,
    evicting: std::sync::atomic::AtomicBool,
}

impl Watch {
    fn new(epoch: Instant) -> Self {
        let now = ms_since(epoch);
        Self {
            epoch,
            phase: AtomicU8::new(Phase::AwaitingHead as u8),
            since_ms: AtomicU64::new(now),
            last_io_ms: AtomicU64::new(now),
            evict: Notify::new(),
            evicting: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        ms_since(self.epoch)
    }

    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    fn enter(&self, phase: Phase) {
        self.since_ms.store(self.now(), Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
    }

    fn read_some(&self) {
        self.last_io_ms.store(self.now(), Ordering::Release);
        // The first byte of the next request on a kept-alive connection.
        if self
            .phase
            .compare_exchange(
                Phase::Idle as u8,
                Phase::AwaitingHead as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            self.since_ms.store(self.now(), Ordering::Release);
        }
    }

    fn wrote_some(&self) {
        self.last_io_ms.store(self.now(), Ordering::Release);
    }

    /// Since when the connection has been quiet, for choosing whom to close to make room.
    fn quiet_since(&self) -> u64 {
        self.since_ms
            .load(Ordering::Acquire)
            .max(self.last_io_ms.load(Ordering::Acquire))
    }

    /// Why the connection should be closed now, if it should.
    fn expired(&self, limits: &Limits) -> Option<&'static str> {
        let now = self.now();
        let waited = |from: u64| Duration::from_millis(now.saturating_sub(from));
        match self.phase() {
            Phase::AwaitingHead
                if waited(self.since_ms.load(Ordering::Acquire)) >= limits.header_read_timeout =>
            {
                Some("header_timeout")
            }
            Phase::Idle if waited(self.since_ms.load(Ordering::Acquire)) >= limits.idle_timeout => {
                Some("idle_timeout")
            }
            Phase::Responding if waited(self.quiet_since()) >= limits.idle_timeout => {
                Some("stalled")
            }
            _ => None,
        }
    }
}

fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The TCP stream, noting when bytes move.
struct Watched {
    stream: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.read_some();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, bytes);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.wrote_some();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.wrote_some();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A response body that marks the connection idle once it is sent (or dropped).
struct TrackedBody {
    inner: Body,
    watch: Arc<Watch>,
}

impl HttpBody for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.watch.enter(Phase::Idle);
    }
}

/// The open connections, for the cap.
#[derive(Default)]
struct Registry {
    open: Mutex<HashMap<u64, Arc<Watch>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Watch>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes room for one more connection under `max`: closes the quietest connection not being
    /// answered. Returns `false` if every connection is being answered.
    fn make_room(&self, max: usize) -> bool {
        let open = self.lock();
        let counted = open
            .values()
            .filter(|w| !w.evicting.load(Ordering::Acquire))
            .count();
        if counted < max {
            return true;
        }
        let victim = open
            .values()
            .filter(|w| !w.evicting.load(Ordering::Acquire) && w.phase().evictable())
            .min_by_key(|w| w.quiet_since());
        match victim {
            Some(victim) => {
                victim.evicting.store(true, Ordering::Release);
                victim.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// What a connection refused at the cap is told before it is closed: `503 overloaded`.
fn overloaded_answer() -> Vec<u8> {
    let problem = crate::problem::ApiError::new(
        "overloaded",
        "every connection the service allows is being answered; retry shortly",
    )
    .problem();
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {}\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        crate::problem::PROBLEM_JSON,
        body.len()
    )
    .into_bytes();
    answer.extend(body);
    answer
}

/// Serves `router` on `listener` until `stop` resolves, then drains within `drain`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    state: AppState,
    stop: impl std::future::Future<Output = ()> + Send,
    drain: Duration,
) -> std::io::Result<()> {
    let limits = state.limits().clone();
    let epoch = Instant::now();
    let registry = Arc::new(Registry::default());
    let shutting_down = state.stopping();
    let mut tasks = JoinSet::new();
    let mut next_id: u64 = 0;
    let mut accept_errors_logged: Option<Instant> = None;
    let overloaded = overloaded_answer();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
            // Reap finished connection tasks as they end.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, a connection reset before it was accepted...: wait a
                // moment and go on; never stop serving.
                if accept_errors_logged.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(%error, "accepting a connection failed");
                    accept_errors_logged = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !registry.make_room(limits.max_connections) {
            state.metrics().connection_closed("refused");
            // A fresh socket's send buffer is empty: the answer fits without waiting.
            let _ = stream.try_write(&overloaded);
            continue;
        }
        next_id += 1;
        let id = next_id;
        let watch = Arc::new(Watch::new(epoch));
        registry.lock().insert(id, Arc::clone(&watch));
        state.metrics().connection_open(1);
        let connection = Connection {
            router: router.clone(),
            limits: limits.clone(),
            watch,
            shutting_down: shutting_down.clone(),
        };
        let open = Open {
            id,
            registry: Arc::clone(&registry),
            state: state.clone(),
            reason: std::cell::Cell::new("aborted"),
        };
        tasks.spawn(async move {
            let reason = connection.run(stream).await;
            open.reason.set(reason);
        });
    }
    drop(listener);
    state.stop();
    let drained =
        tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "connections still open after the drain deadline are closed"
        );
        tasks.shutdown().await;
    }
    Ok(())
}

/// A connection's place in the registry and the metrics, given back when its task ends (even by
/// a panic in a handler, or an abort at the drain deadline).
struct Open {
    id: u64,
    registry: Arc<Registry>,
    state: AppState,
    /// Why it closed; `aborted` unless the task ran to its end.
    reason: std::cell::Cell<&'static str>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
        self.state.metrics().connection_open(-1);
        self.state.metrics().connection_closed(self.reason.get());
    }
}

struct Connection {
    router: Router,
    limits: Limits,
    watch: Arc<Watch>,
    shutting_down: watch::Receiver<bool>,
}

impl Connection {
    /// Serves one connection to its end; returns why it ended.
    async fn run(mut self, stream: TcpStream) -> &'static str {
        let watch = Arc::clone(&self.watch);
        let io = TokioIo::new(Watched {
            stream,
            watch: Arc::clone(&watch),
        });
        let router = self.router.clone();
        let service_watch = Arc::clone(&watch);
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let (router, watch) = (router.clone(), Arc::clone(&service_watch));
            async move {
                watch.enter(Phase::InRequest);
                let response = router
                    .oneshot(request.map(Body::new))
                    .await
                    .unwrap_or_else(|never| match never {});
                watch.enter(Phase::Responding);
                let (parts, body) = response.into_parts();
                let body = TrackedBody { inner: body, watch };
                Ok::<_, Infallible>(hyper::Response::from_parts(parts, body))
            }
        });
        // No hyper timer: the timeouts are this loop's, so that each has its own setting.
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.keep_alive(true);
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        let tick = (self
            .limits
            .header_read_timeout
            .min(self.limits.idle_timeout)
            / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut draining = *self.shutting_down.borrow();
        if draining {
            connection.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                _ = connection.as_mut() => return if draining { "shutdown" } else { "done" },
                () = tokio::time::sleep(tick) => {
                    if let Some(reason) = watch.expired(&self.limits) {
                        return reason;
                    }
                }
                () = watch.evict.notified() => return "evicted",
                changed = self.shutting_down.changed(), if !draining => {
                    if changed.is_err() || *self.shutting_down.borrow() {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}
