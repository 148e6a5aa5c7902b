//! `carbon-ledger bench`: a bounded load tool.
//!
//! It measures, in one run on this machine: the signature-verification ceiling (strict one by one,
//! and in batches, on every core); then pre-signs N two-signature trades among many holders and
//! drives (a) the library in process with C threads and (b) the HTTP service over loopback with C
//! clients on kept-alive connections, each on a fresh ledger in a temporary folder (sled, durable
//! writes). It reports durable entries per second, latency percentiles, the mean group-commit
//! size, and the ratios the performance targets are stated in. It stops by itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_core::ledger::{Ledger, WriteStats};
pub use ledger_core::load::{measure_ceiling, Ceiling, Market};
use serde::Serialize;

use crate::client::Client;
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
    let mut urls = Vec::new();
    let mut servers = Vec::new();
    for ledger in &ledgers {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(fail)?;
        urls.push(format!("http://{}", listener.local_addr().map_err(fail)?));
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
        let client = Client::new(&urls[c % urls.len()]).map_err(fail)?;
        let mut connection = client.connect().await.map_err(fail)?;
        let (next, trades) = (Arc::clone(&next), Arc::clone(&trades));
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(bytes) = trades.get(i) else {
                    return Ok(mine);
                };
                let t0 = Instant::now();
                let answer = connection
                    .post("/v1/entries", bytes.clone())
                    .await
                    .map_err(fail)?;
                if answer.status.as_u16() != 201 {
                    return Err(BenchError(format!(
                        "trade {i}: {} {}",
                        answer.status,
                        answer.text()
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
