//! `carbon-ledger bench`: a bounded load tool.
//!
//! It measures, in one run on this machine: the signature-verification ceiling (strict one by one,
//! and in batches, on every core); then pre-signs N two-signature trades among many holders and
//! drives (a) the library in process with C threads and (b) the HTTP service over loopback with C
//! clients on kept-alive connections, each on a fresh ledger in a temporary folder (sled, durable
//! writes). It reports durable entries per second, latency percentiles, the mean group-commit
//! size, and the ratios the performance targets are stated in. It stops by itself.
//!
//! The HTTP clients run in the same process, on the same cores as the service. So that they take
//! as little of them as they can, each speaks HTTP/1.1 on its own kept-alive socket directly, as
//! load generators such as `wrk` do, rather than through a general client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_core::ledger::{Ledger, WriteStats};
pub use ledger_core::load::{measure_ceiling, Ceiling, Market};
use serde::Serialize;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::routes::{app, AppState, Limits};

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Trades to submit in each mode.
    pub entries: usize,
    /// Concurrent submitters.
    pub clients: usize,
    /// Holders the trades move sink among.
    pub holders: usize,
    /// How long to measure each signature rate.
    pub ceiling_seconds: f64,
    /// Drive the library in process.
    pub in_process: bool,
    /// Drive the HTTP service over loopback.
    pub http: bool,
    /// Also run on PostgreSQL (a URL whose user may create databases): in process, over HTTP
    /// with one instance, and over HTTP with two instances sharing the database, each on a
    /// scratch database created beside the named one and dropped after.
    pub store: Option<String>,
}

/// One mode's result.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// "in-process" or "http" (sled), or the same on PostgreSQL ("postgres in-process",
    /// "postgres http", "postgres http ×2" for two instances).
    pub mode: &'static str,
    /// Trades acknowledged (each durable).
    pub entries: usize,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Durable entries per second.
    pub per_second: f64,
    /// Latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Slowest, milliseconds.
    pub max_ms: f64,
    /// Mean entries per durable write.
    pub mean_group: f64,
}

/// Everything measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Signature ceiling.
    pub ceiling: Ceiling,
    /// The runs.
    pub runs: Vec<Run>,
}

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
#[error("bench: {0}")]
pub struct BenchError(pub String);

fn fail(e: impl std::fmt::Display) -> BenchError {
    BenchError(e.to_string())
}

impl From<ledger_core::load::LoadError> for BenchError {
    fn from(e: ledger_core::load::LoadError) -> Self {
        BenchError(e.0)
    }
}

fn summarize(
    mode: &'static str,
    mut latencies: Vec<Duration>,
    wall: Duration,
    writes: WriteStats,
) -> Run {
    latencies.sort_unstable();
    let at = |per_mille: usize| -> f64 {
        let count = latencies.len();
        let index = (count * per_mille).div_ceil(1000).clamp(1, count.max(1)) - 1;
        latencies
            .get(index)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Run {
        mode,
        entries: latencies.len(),
        seconds: wall.as_secs_f64(),
        per_second: latencies.len() as f64 / wall.as_secs_f64(),
        p50_ms: at(500),
        p99_ms: at(990),
        max_ms: at(1000),
        mean_group: writes.entries as f64 / writes.durable_writes.max(1) as f64,
    }
}

fn fresh_ledger(market: &Market, dir: &std::path::Path) -> Result<Arc<Ledger>, BenchError> {
    let ledger = Ledger::open_dir(dir, market.config()?).map_err(fail)?;
    market.setup(&ledger)?;
    Ok(Arc::new(ledger))
}

fn since(before: WriteStats, after: WriteStats) -> WriteStats {
    WriteStats {
        durable_writes: after.durable_writes - before.durable_writes,
        entries: after.entries - before.entries,
    }
}

/// C threads submitting through the library.
fn run_in_process(
    ledger: &Arc<Ledger>,
    trades: &[Vec<u8>],
    clients: usize,
) -> Result<Run, BenchError> {
    let next = AtomicUsize::new(0);
    let before = ledger.write_stats();
    let start = Instant::now();
    let latencies = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| -> Result<Vec<Duration>, BenchError> {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(bytes) = trades.get(i) else {
                            return Ok(mine);
                        };
                        let t0 = Instant::now();
                        ledger.submit_bytes(bytes).map_err(fail)?;
                        mine.push(t0.elapsed());
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for worker in workers {
            all.extend(
                worker
                    .join()
                    .map_err(|_| BenchError("a submitter panicked".into()))??,
            );
        }
        Ok::<_, BenchError>(all)
    })?;
    let wall = start.elapsed();
    Ok(summarize(
        "in-process",
        latencies,
        wall,
        since(before, ledger.write_stats()),
    ))
}

/// C clients over loopback, each on one kept-alive connection, spread over one service per
/// ledger (several ledgers are instances sharing one store).
async fn run_http(
    mode: &'static str,
    ledgers: Vec<Arc<Ledger>>,
    trades: Arc<Vec<Vec<u8>>>,
    clients: usize,
) -> Result<Run, BenchError> {
    let mut addrs = Vec::new();
    let mut servers = Vec::new();
    for ledger in &ledgers {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(fail)?;
        addrs.push(listener.local_addr().map_err(fail)?);
        let limits = Limits {
            in_flight: clients * 4 + 16,
            ..Limits::default()
        };
        let state = AppState::new(Arc::clone(ledger), limits);
        let router = app(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // The service's own accept loop, with its connection limits.
        let server = tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.await;
            };
            crate::connections::serve(listener, router, state, stopped, Duration::from_secs(30))
                .await
        });
        servers.push((stop, server));
    }
    let stats = |ledgers: &[Arc<Ledger>]| {
        ledgers.iter().fold(
            WriteStats {
                durable_writes: 0,
                entries: 0,
            },
            |sum, l| {
                let w = l.write_stats();
                WriteStats {
                    durable_writes: sum.durable_writes + w.durable_writes,
                    entries: sum.entries + w.entries,
                }
            },
        )
    };
    let next = Arc::new(AtomicUsize::new(0));
    let before = stats(&ledgers);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut connection = RawConnection::connect(addrs[c % addrs.len()]).await?;
        let (next, trades) = (Arc::clone(&next), Arc::clone(&trades));
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(bytes) = trades.get(i) else {
                    return Ok(mine);
                };
                let t0 = Instant::now();
                let (status, body) = connection.post("/v1/entries", bytes).await?;
                if status != 201 {
                    return Err(BenchError(format!(
                        "trade {i}: {status} {}",
                        String::from_utf8_lossy(&body)
                    )));
                }
                mine.push(t0.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.map_err(fail)??);
    }
    let wall = start.elapsed();
    let writes = since(before, stats(&ledgers));
    for (stop, server) in servers {
        let _ = stop.send(());
        let _ = server.await;
    }
    Ok(summarize(mode, latencies, wall, writes))
}

/// A kept-alive HTTP/1.1 connection to a service on loopback, spoken directly: a request is its
/// head and body in one write; an answer is read by its status line, its `Content-Length` and
/// that many bytes of body (the service answers a submission with a length, never in chunks).
struct RawConnection {
    stream: tokio::io::BufStream<tokio::net::TcpStream>,
    host: String,
    request: Vec<u8>,
    line: String,
}

impl RawConnection {
    async fn connect(addr: std::net::SocketAddr) -> Result<Self, BenchError> {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(fail)?;
        stream.set_nodelay(true).map_err(fail)?;
        Ok(Self {
            stream: tokio::io::BufStream::new(stream),
            host: addr.to_string(),
            request: Vec::new(),
            line: String::new(),
        })
    }

    /// `POST path` with a JSON body: the answer's status and body.
    async fn post(&mut self, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), BenchError> {
        use std::io::Write as _;
        self.request.clear();
        write!(
            self.request,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )
        .map_err(fail)?;
        self.request.extend_from_slice(body);
        self.stream.write_all(&self.request).await.map_err(fail)?;
        self.stream.flush().await.map_err(fail)?;

        let status = {
            let line = self.read_line().await?;
            line.strip_prefix("HTTP/1.1 ")
                .and_then(|rest| rest.get(..3))
                .and_then(|code| code.parse::<u16>().ok())
                .ok_or_else(|| BenchError(format!("not an HTTP/1.1 status line: {line:?}")))?
        };
        let mut length = None;
        loop {
            let line = self.read_line().await?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(BenchError(format!(
                    "the service answered with Transfer-Encoding {}; this load tool reads answers with a Content-Length",
                    value.trim()
                )));
            }
        }
        let length =
            length.ok_or_else(|| BenchError("an answer without Content-Length".to_owned()))?;
        let mut answer = vec![0; length];
        self.stream.read_exact(&mut answer).await.map_err(fail)?;
        Ok((status, answer))
    }

    /// The next line of the answer's head, without its CRLF.
    async fn read_line(&mut self) -> Result<&str, BenchError> {
        self.line.clear();
        if self.stream.read_line(&mut self.line).await.map_err(fail)? == 0 {
            return Err(BenchError(
                "the service closed the connection mid-answer".to_owned(),
            ));
        }
        Ok(self.line.trim_end_matches(['\r', '\n']))
    }
}

/// A fresh ledger on a scratch PostgreSQL database beside `url`, set up for the trades; and a
/// second instance on it when `instances` is 2.
fn postgres_ledgers(
    market: &Market,
    scratch: &ledger_postgres::scratch::ScratchDatabase,
    instances: usize,
) -> Result<Vec<Arc<Ledger>>, BenchError> {
    let mut ledgers = Vec::new();
    for i in 0..instances {
        let store = scratch
            .store(ledger_postgres::DEFAULT_MAX_CONNECTIONS)
            .map_err(fail)?;
        let ledger = Ledger::open(Box::new(store), market.config()?).map_err(fail)?;
        if i == 0 {
            market.setup(&ledger)?;
        }
        ledgers.push(Arc::new(ledger));
    }
    Ok(ledgers)
}

/// Runs the bench and writes a readable report to `out`.
pub fn run(options: &BenchOptions, out: &mut dyn std::io::Write) -> Result<Report, BenchError> {
    let say = |out: &mut dyn std::io::Write, text: String| {
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    };
    say(
        out,
        format!(
            "measuring signature verification on every core ({:.1} s each)…",
            options.ceiling_seconds
        ),
    );
    let ceiling = measure_ceiling(options.ceiling_seconds);
    say(out, format!(
        "  {} threads: strict {:.0} sig/s, batch(64) {:.0} sig/s → two-signature trade ceiling {:.0}/s (batch), {:.0}/s (strict)",
        ceiling.threads, ceiling.strict_per_second, ceiling.batch64_per_second,
        ceiling.trade_ceiling_batch, ceiling.trade_ceiling_strict
    ));
    let market = Market::new(options.holders.max(2));
    say(
        out,
        format!(
            "pre-signing {} trades among {} holders…",
            options.entries,
            options.holders.max(2)
        ),
    );
    let trades = Arc::new(market.trades(options.entries)?);
    let mut runs = Vec::new();
    if options.in_process {
        let dir = tempfile::tempdir().map_err(fail)?;
        let ledger = fresh_ledger(&market, dir.path())?;
        let run = run_in_process(&ledger, &trades, options.clients)?;
        say(out, describe(&run, &ceiling, None));
        runs.push(run);
    }
    if options.http {
        let dir = tempfile::tempdir().map_err(fail)?;
        let ledger = fresh_ledger(&market, dir.path())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(fail)?;
        let run = runtime.block_on(run_http(
            "http",
            vec![ledger],
            Arc::clone(&trades),
            options.clients,
        ))?;
        let in_process = runs.first().map(|r| r.per_second);
        say(out, describe(&run, &ceiling, in_process));
        runs.push(run);
    }
    if let Some(url) = &options.store {
        let sled_rate = |mode: &str| runs.iter().find(|r| r.mode == mode).map(|r| r.per_second);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(fail)?;
        let mut postgres_runs = Vec::new();
        if options.in_process {
            let scratch = ledger_postgres::scratch::ScratchDatabase::create(url).map_err(fail)?;
            let ledger = postgres_ledgers(&market, &scratch, 1)?.remove(0);
            let run = run_in_process(&ledger, &trades, options.clients)?;
            drop(ledger);
            let run = Run {
                mode: "postgres in-process",
                ..run
            };
            say(out, describe_store_run(&run, sled_rate("in-process")));
            postgres_runs.push(run);
        }
        if options.http {
            for (instances, mode) in [(1, "postgres http"), (2, "postgres http ×2")] {
                let scratch =
                    ledger_postgres::scratch::ScratchDatabase::create(url).map_err(fail)?;
                let ledgers = postgres_ledgers(&market, &scratch, instances)?;
                let run = runtime.block_on(run_http(
                    mode,
                    ledgers,
                    Arc::clone(&trades),
                    options.clients,
                ))?;
                say(out, describe_store_run(&run, sled_rate("http")));
                postgres_runs.push(run);
            }
        }
        runs.extend(postgres_runs);
    }
    Ok(Report { ceiling, runs })
}

fn describe_store_run(run: &Run, sled: Option<f64>) -> String {
    let mut text = format!(
        "{}: {} durable trades in {:.2} s = {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.1} entries per durable write",
        run.mode, run.entries, run.seconds, run.per_second, run.p50_ms, run.p99_ms, run.max_ms,
        run.mean_group
    );
    if let Some(sled) = sled {
        text.push_str(&format!(
            "; {:.1} % of the sled rate in the same mode",
            100.0 * run.per_second / sled
        ));
    }
    text
}

fn describe(run: &Run, ceiling: &Ceiling, in_process: Option<f64>) -> String {
    let mut text = format!(
        "{}: {} durable trades in {:.2} s = {:.0}/s ({:.1} % of the batch-verify ceiling, {:.1} % of the strict one); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.1} entries per durable write",
        run.mode, run.entries, run.seconds, run.per_second,
        100.0 * run.per_second / ceiling.trade_ceiling_batch,
        100.0 * run.per_second / ceiling.trade_ceiling_strict,
        run.p50_ms, run.p99_ms, run.max_ms, run.mean_group
    );
    if let Some(base) = in_process {
        text.push_str(&format!(
            "; {:.1} % of the in-process rate",
            100.0 * run.per_second / base
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The load tool's connection reads answers one after another on one kept-alive socket:
    /// a refusal (its problem body whole), then an acceptance, then the same entry again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_raw_connection_reads_each_answer_whole_on_one_socket() {
        let dir = tempfile::tempdir().unwrap();
        let market = Market::new(4);
        let ledger = fresh_ledger(&market, dir.path()).unwrap();
        let trade = market.trades(1).unwrap().remove(0);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = app(AppState::new(ledger, Limits::default()));
        let server = tokio::spawn(async move { axum::serve(listener, router).await });

        let mut connection = RawConnection::connect(addr).await.unwrap();
        let (status, body) = connection.post("/v1/entries", b"{}").await.unwrap();
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(problem["type"].as_str().is_some(), "{problem}");

        let (status, body) = connection.post("/v1/entries", &trade).await.unwrap();
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        let receipt: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let (status, body) = connection.post("/v1/entries", &trade).await.unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let again: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(again["seq"], receipt["seq"]);
        server.abort();
    }
}
