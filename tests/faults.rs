//! Faults a registry meets in production, met by the real binary (`carbon-ledger serve` as a
//! child process, real sled, real kernel errors):
//!
//! - its log is a full disk (`/dev/full`: every write fails with `ENOSPC`), or a pipe whose
//!   reader is gone (`EPIPE`): it starts, serves, answers every request, counts the lines it
//!   dropped, and stops cleanly;
//! - its store's disk fills up: submissions get `507 storage-full` with `Retry-After`,
//!   `/healthz` answers 503 with the reason, `/metrics` shows it, reads go on; once there is
//!   room it recovers by itself, with nothing acknowledged lost and `carbon-ledger check`
//!   passing. The disk is a small tmpfs where the test may mount one (root with
//!   `CAP_SYS_ADMIN`); elsewhere a file-size limit (`RLIMIT_FSIZE`, which makes the kernel
//!   answer `EFBIG` instead of `ENOSPC`, with `SIGXFSZ` ignored), lifted with `prlimit` to
//!   make room. The test prints which it used;
//! - hundreds of idle and slow clients: they are closed by the header-read and idle timeouts,
//!   the connection cap makes room by closing the quietest, and a normal client is served.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ledger_api::client::Client;
use ledger_core::ledger::Receipt;
use serde_json::Value;
use support::{bin, Launch, Market, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn json_of(client: &Client, path: &str) -> Value {
    client
        .get(path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .ok_json()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The value of one metric line (`name{labels} value`) of `/metrics`, if present.
async fn metric(client: &Client, line_start: &str) -> Option<f64> {
    let text = client.get("/metrics").await.unwrap().text();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The market of the crash test: its participants, and the platform's sink to sell.
async fn market_on(client: &Client, data: &Path, enterprises: usize) -> (Market, Vec<String>) {
    let info = json_of(client, "/v1/ledger").await;
    let origin = info["origin"].as_str().unwrap().to_owned();
    let operator = info["operator"].as_str().unwrap().to_owned();
    let key = ledger_api::keys::read_key_file(&data.join("operator.key")).unwrap();
    let mut market = Market::new(&origin, &operator, key);
    let names: Vec<String> = (0..enterprises).map(|i| format!("ent-{i:02}")).collect();
    support::populate_over_http(client, &mut market, &names).await;
    (market, names)
}

/// Requests that each write log lines (at `debug`), all answered.
async fn requests_that_log(client: &Client) {
    for path in [
        "/v1/ledger",
        "/v1/participants",
        "/v1/no-such-route",
        "/healthz",
    ] {
        let answer = client.get(path).await.unwrap();
        assert!(
            answer.status.as_u16() < 500,
            "GET {path}: {}",
            answer.status
        );
    }
    let refused = client
        .post("/v1/entries", b"{\"body\": ".to_vec())
        .await
        .unwrap();
    assert_eq!(refused.status.as_u16(), 400);
    assert_eq!(refused.problem().unwrap().kind, "malformed-json");
}

/// Regression: with its output on a full disk, `serve` exited at start with status 101 (a panic
/// in tracing-subscriber's `eprintln!` of its own write error); when the disk filled while it
/// ran, a request whose log line could not be written lost its connection. Now it starts,
/// answers, counts the dropped lines, and exits 0 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_goes_on_when_its_log_is_a_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let full = || {
        Stdio::from(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .expect("/dev/full: a device whose every write fails with ENOSPC"),
        )
    };
    let service = tokio::task::block_in_place(|| {
        Service::launch(
            &data,
            Launch {
                log_filter: "debug".to_owned(),
                stdout: full(),
                stderr: full(),
                ..Launch::default()
            },
        )
    });
    let client = Client::new(&service.url).unwrap();
    market_on(&client, &data, 2).await;
    requests_that_log(&client).await;
    let dropped = metric(&client, "log_lines_dropped_total{reason=\"write_failed\"}")
        .await
        .unwrap();
    assert!(dropped > 10.0, "{dropped} log lines counted as dropped");
    let status = tokio::task::block_in_place(|| service.terminate());
    assert!(status.success(), "serve exited with {status}");
}

/// `carbon-ledger serve | head`: once the reader is gone, every write to the pipe fails with
/// EPIPE (Rust programs ignore SIGPIPE). The service goes on serving and exits 0 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_goes_on_when_its_log_pipe_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = tokio::task::block_in_place(|| {
        Service::launch(
            &data,
            Launch {
                log_filter: "debug".to_owned(),
                stdout: Stdio::piped(),
                stderr: Stdio::piped(),
                close_pipes: true,
                ..Launch::default()
            },
        )
    });
    let client = Client::new(&service.url).unwrap();
    market_on(&client, &data, 2).await;
    requests_that_log(&client).await;
    let dropped = metric(&client, "log_lines_dropped_total{reason=\"write_failed\"}")
        .await
        .unwrap();
    assert!(dropped > 10.0, "{dropped} log lines counted as dropped");
    let status = tokio::task::block_in_place(|| service.terminate());
    assert!(status.success(), "serve exited with {status}");
}

/// A small file system to fill: tmpfs, where this process may mount one.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `CARBON_LEDGER_TEST_NO_MOUNT=1` makes the test take the other way, as where it may not
    /// mount.
    fn mount(bytes: u64) -> Option<Self> {
        if std::env::var_os("CARBON_LEDGER_TEST_NO_MOUNT").is_some() {
            return None;
        }
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills what is left with a ballast file; returns it (delete it to make room).
    fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let ballast = self.path().join("ballast");
        let mut file = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0u8; 64 << 10];
        while file.write_all(&chunk).is_ok() {}
        for _ in 0..64 {
            if file.write_all(&[0u8; 512]).is_err() {
                break;
            }
        }
        ballast
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

/// What fills the store's disk in this run.
enum Room {
    /// A tmpfs filled with a ballast file: deleting it makes room.
    Tmpfs { _disk: SmallDisk, ballast: PathBuf },
    /// A file-size limit on the service: `prlimit --pid` lifts it.
    FileSizeLimit,
}

/// The full-disk story, from outside. Regression: `/healthz` said ok while every write failed,
/// and when the space came back the service refused every entry until a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_507_health_says_so_and_the_service_recovers_when_there_is_room() {
    let disk = SmallDisk::mount(48 << 20);
    let scratch = tempfile::tempdir().unwrap();
    let data = match &disk {
        Some(disk) => disk.path().join("data"),
        None => scratch.path().join("data"),
    };
    // Set up the market (with room), and stop.
    let service = tokio::task::block_in_place(|| Service::launch(&data, Launch::default()));
    let client = Client::new(&service.url).unwrap();
    let (market, enterprises) = market_on(&client, &data, 4).await;
    assert!(tokio::task::block_in_place(|| service.terminate()).success());

    // Run again, on a disk with no room left.
    let (service, room) = match disk {
        Some(disk) => {
            let service = tokio::task::block_in_place(|| Service::launch(&data, Launch::default()));
            let ballast = disk.fill();
            (
                service,
                Room::Tmpfs {
                    _disk: disk,
                    ballast,
                },
            )
        }
        None => {
            // Room for a megabyte more in sled's data file (it grows by segments of 512 KiB).
            // No disk reserve: under a limit on each file's size, a file of reserve frees
            // nothing for sled's.
            let db = std::fs::metadata(data.join("store").join("db"))
                .unwrap()
                .len();
            let limit = db + (1 << 20);
            let service = tokio::task::block_in_place(|| {
                Service::launch(
                    &data,
                    Launch {
                        wrapper: vec![
                            "prlimit".to_owned(),
                            format!("--fsize={limit}:unlimited"),
                            "sh".to_owned(),
                            "-c".to_owned(),
                            "trap '' XFSZ; exec \"$0\" \"$@\"".to_owned(),
                        ],
                        args: vec!["--store-reserve-mib".to_owned(), "0".to_owned()],
                        ..Launch::default()
                    },
                )
            });
            (service, Room::FileSizeLimit)
        }
    };
    eprintln!(
        "full disk test: the store's disk is {}",
        match &room {
            Room::Tmpfs { .. } => "a 48 MiB tmpfs filled with a ballast file (ENOSPC)",
            Room::FileSizeLimit =>
                "a file-size limit on the service (EFBIG; no permission to mount a tmpfs here)",
        }
    );
    let client = Client::new(&service.url).unwrap();

    // Submit until the disk refuses.
    let mut acked: BTreeMap<String, Receipt> = BTreeMap::new();
    let mut refusal = None;
    for i in 0..20_000 {
        let id = format!("FD-{i:05}");
        let buyer = &enterprises[i % enterprises.len()];
        let body =
            serde_json::to_vec(&market.transfer(&id, ledger_api::demo::PLATFORM, buyer, "0.001"))
                .unwrap();
        let answer = client.post("/v1/entries", body).await.unwrap();
        if answer.status.as_u16() == 201 {
            acked.insert(id, answer.json().unwrap());
            continue;
        }
        refusal = Some((id, answer));
        break;
    }
    let (refused_id, refusal) = refusal.expect("the disk filled up");
    if std::env::var("FD_KEEP").is_ok() {
        let _ = Command::new("rm").args(["-rf", "/tmp/fd-keep"]).status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("cp")
            .args(["-a"])
            .arg(&data)
            .arg("/tmp/fd-keep")
            .status();
    }
    assert_eq!(refusal.status.as_u16(), 507, "{}", refusal.text());
    assert_eq!(refusal.problem().unwrap().kind, "storage-full");
    assert!(refusal.headers.contains_key("retry-after"));
    eprintln!(
        "full disk test: {} entries acknowledged before the disk refused",
        acked.len()
    );

    // Health and metrics tell the truth; writes are refused at once; reads go on.
    let health = client.get("/healthz").await.unwrap();
    assert_eq!(health.status.as_u16(), 503, "{}", health.text());
    let health: Value = health.json().unwrap();
    assert_eq!(health["kind"], "storage-full", "{health}");
    assert!(
        health["reason"].as_str().unwrap().contains("full"),
        "{health}"
    );
    assert_eq!(metric(&client, "ledger_store_writable ").await, Some(0.0));
    assert!(metric(&client, "ledger_store_failed_writes_total ").await >= Some(1.0));
    let again = client
        .post(
            "/v1/entries",
            serde_json::to_vec(&market.transfer(
                "FD-again",
                ledger_api::demo::PLATFORM,
                &enterprises[0],
                "0.001",
            ))
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(again.status.as_u16(), 507, "{}", again.text());
    let size = json_of(&client, "/v1/ledger").await["size"]
        .as_u64()
        .unwrap();
    let last = client
        .get(&format!("/v1/entries/{}", size - 1))
        .await
        .unwrap();
    match &room {
        // The store gave its reserve up to reopen: reads go on from the reopened store.
        Room::Tmpfs { .. } => assert_eq!(last.status.as_u16(), 200, "{}", last.text()),
        // A file-size limit leaves sled no room to reopen its data file, reserve or not: the
        // store is closed until the limit is lifted, and reads say why.
        Room::FileSizeLimit => assert!(
            [200, 507].contains(&last.status.as_u16()),
            "{}",
            last.text()
        ),
    }
    eprintln!(
        "full disk test: a read while the disk is full: {}",
        last.status
    );

    // Make room; the service recovers by itself, with no submission.
    match &room {
        Room::Tmpfs { ballast, .. } => std::fs::remove_file(ballast).unwrap(),
        Room::FileSizeLimit => {
            let lifted = Command::new("prlimit")
                .args(["--pid", &service.pid().to_string(), "--fsize=unlimited"])
                .status()
                .unwrap();
            assert!(lifted.success());
        }
    }
    let made_room = Instant::now();
    loop {
        let health = client.get("/healthz").await.unwrap();
        if health.status.as_u16() == 200 {
            break;
        }
        assert!(
            made_room.elapsed() < Duration::from_secs(60),
            "still unhealthy a minute after there was room: {}",
            health.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "full disk test: healthy again {:.1} s after room was made",
        made_room.elapsed().as_secs_f64()
    );
    assert_eq!(metric(&client, "ledger_store_writable ").await, Some(1.0));
    assert!(metric(&client, "ledger_store_recoveries_total ").await >= Some(1.0));

    // Writes go on: the refused entry, submitted again, is appended (or was, and answers with
    // its receipt), and so is a new one.
    for id in [refused_id.as_str(), "FD-after"] {
        let body = serde_json::to_vec(&market.transfer(
            id,
            ledger_api::demo::PLATFORM,
            &enterprises[1],
            "0.001",
        ))
        .unwrap();
        let answer = client.post("/v1/entries", body).await.unwrap();
        assert!(answer.status.is_success(), "{id}: {}", answer.text());
        acked.insert(id.to_owned(), answer.json().unwrap());
    }
    // Every acknowledged entry is where its receipt says.
    for (id, receipt) in &acked {
        let entry = json_of(&client, &format!("/v1/entries/{}", receipt.seq)).await;
        assert_eq!(entry["leaf_hash"], receipt.leaf_hash.as_str(), "{id}");
    }
    let status = tokio::task::block_in_place(|| service.terminate());
    assert!(status.success(), "serve exited with {status}");
    let check = Command::new(bin())
        .args(["check", "--data", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "carbon-ledger check:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    drop(room);
}

/// One request on a fresh connection; its status and how long it took.
async fn one_request(addr: &str, path: &str) -> (u16, Duration) {
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    let status = String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, started.elapsed())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

/// Reads until the server closes the connection (or `within` passes); whether it did.
async fn closed_by_server(mut stream: tokio::net::TcpStream, within: Duration) -> bool {
    let mut sink = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// Regression: a connection that sent nothing was still open after 70 s, and nothing bounded
/// how many were open. With 300 idle and 150 slow clients against a cap of 256 connections:
/// a normal client is served every time, about as fast as alone; the silent and the slow are
/// closed by the header-read timeout, a kept-alive one by the idle timeout; the cap made room by
/// closing the quietest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_and_slow_clients_are_closed_and_a_normal_client_is_still_served() {
    const IDLE: usize = 300;
    const SLOW: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let service = tokio::task::block_in_place(|| {
        Service::launch(
            &data,
            Launch {
                args: [
                    "--max-connections",
                    "256",
                    "--header-read-timeout-secs",
                    "3",
                    "--idle-timeout-secs",
                    "4",
                ]
                .map(str::to_owned)
                .to_vec(),
                log_filter: "warn".to_owned(),
                ..Launch::default()
            },
        )
    });
    let addr = service.url.trim_start_matches("http://").to_owned();
    let client = Client::new(&service.url).unwrap();

    // Alone.
    let mut alone = Vec::new();
    for _ in 0..20 {
        let (status, took) = one_request(&addr, "/v1/ledger").await;
        assert_eq!(status, 200);
        alone.push(took);
    }

    // Hundreds of clients that connect and send nothing, and slow ones that send their head a
    // byte at a time.
    let opened = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let slow: Vec<_> = (0..SLOW)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
                let started = Instant::now();
                for byte in b"GET /v1/ledger HTTP/1.1\r\nHost: slow\r\nX-Padding: "
                    .iter()
                    .cycle()
                {
                    if stream.write_all(&[*byte]).await.is_err() {
                        // Closed by the server.
                        return Some(started.elapsed());
                    }
                    if started.elapsed() > Duration::from_secs(20) {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None
            })
        })
        .collect();
    // A kept-alive client: one request, then quiet.
    let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: kept\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).await.unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200"));
    let kept_answered = Instant::now();

    // Among them, a normal client is served every time.
    let mut crowded = Vec::new();
    for _ in 0..20 {
        let (status, took) = one_request(&addr, "/v1/ledger").await;
        assert_eq!(status, 200, "a normal client among the idle and slow");
        crowded.push(took);
    }
    let (alone, crowded) = (median(alone), median(crowded));
    eprintln!("connections test: median request alone {alone:?}, among {IDLE} idle and {SLOW} slow clients {crowded:?}");
    assert!(
        crowded < alone * 20 + Duration::from_millis(500),
        "served, but slowly: {crowded:?} among the crowd, {alone:?} alone"
    );
    // Health answers too.
    let (status, _) = one_request(&addr, "/healthz").await;
    assert_eq!(status, 200);

    // The silent ones are closed by the header-read timeout (3 s), the kept-alive one by the
    // idle timeout (4 s), the slow ones although they keep sending.
    let mut closed = 0;
    for stream in idle {
        if closed_by_server(stream, Duration::from_secs(10)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, IDLE, "silent connections closed by the server");
    assert!(
        opened.elapsed() < Duration::from_secs(20),
        "closed within the header-read timeout and a margin"
    );
    for task in slow {
        let lasted = task.await.unwrap().expect("a slow client was closed");
        assert!(
            lasted < Duration::from_secs(10),
            "a slow client lasted {lasted:?}"
        );
    }
    assert!(closed_by_server(kept, Duration::from_secs(10)).await);
    assert!(kept_answered.elapsed() >= Duration::from_secs(3));

    let count = |reason: &'static str| {
        let client = client.clone();
        async move {
            metric(
                &client,
                &format!("http_connections_closed_total{{reason=\"{reason}\"}}"),
            )
            .await
            .unwrap_or(0.0)
        }
    };
    assert!(count("header_timeout").await > 0.0);
    assert!(count("evicted").await > 0.0, "the cap made room");
    assert!(count("idle_timeout").await >= 1.0);
    let open = metric(&client, "http_connections_open ").await.unwrap();
    assert!(open <= 2.0, "{open} connections still open");
    let status = tokio::task::block_in_place(|| service.terminate());
    assert!(status.success());
}

/// Regressions: an event stream with nothing to send was cut by the idle timeout when it was
/// set below the stream's keep-alive interval (15 s); and an open event stream held every stop
/// until the drain deadline (20 s), which then cut it. Now the keep-alive comes more often than
/// the idle timeout — with a 2 s timeout, a quiet stream is still open after 7 s, and keep-alive
/// bytes kept arriving meanwhile — and a stop ends the stream properly and exits at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_event_stream_outlives_a_short_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let service = tokio::task::block_in_place(|| {
        Service::launch(
            &dir.path().join("data"),
            Launch {
                args: ["--idle-timeout-secs", "2"].map(str::to_owned).to_vec(),
                log_filter: "warn".to_owned(),
                ..Launch::default()
            },
        )
    });
    let addr = service.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"GET /v1/events?from=0 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The answer's head and the genesis entry's event, then nothing but keep-alives.
    let opened = Instant::now();
    let mut received = Vec::new();
    let mut quiet_bytes = 0;
    let mut buf = [0u8; 4096];
    while opened.elapsed() < Duration::from_secs(7) {
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
            Ok(Ok(0)) => panic!(
                "the server closed the quiet stream after {:?}: {}",
                opened.elapsed(),
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(n)) => {
                received.extend_from_slice(&buf[..n]);
                if opened.elapsed() > Duration::from_secs(3) {
                    quiet_bytes += n;
                }
            }
            Ok(Err(error)) => panic!("the stream failed: {error}"),
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("register_participant"), "{text}");
    assert!(quiet_bytes > 0, "no keep-alive in the last 4 s: {text}");

    // A stop ends the stream: its body ends properly (the last chunk of a chunked body), the
    // connection closes, and the service exits, without waiting for its drain deadline (which
    // would cut the stream instead).
    let stop_sent = Instant::now();
    let stopper = tokio::task::spawn_blocking(move || service.terminate_with_log());
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(_))),
        "the stream did not end: {read:?}"
    );
    assert!(
        rest.ends_with(b"0\r\n\r\n"),
        "the stream was cut, not ended: {}",
        String::from_utf8_lossy(&rest)
    );
    let (status, log) = stopper.await.unwrap();
    eprintln!(
        "event stream test: stopped {:?} after SIGTERM",
        stop_sent.elapsed()
    );
    assert!(status.success());
    assert!(
        !log.contains("after the drain deadline"),
        "the stop waited for the drain deadline: {log}"
    );
}
