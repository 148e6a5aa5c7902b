//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary folder, `pg_ctl start` on
//! a free loopback port, a fresh database per test, and everything removed afterwards. No mock.
//!
//! The server binaries are looked for in `CARBON_LEDGER_PG_BIN`, then in
//! `/usr/lib/postgresql/<version>/bin` (the newest). `initdb` and `pg_ctl` refuse to run as root:
//! as root, the cluster is made and run as the `postgres` user (`runuser`), in a folder it owns.
//!
//! Without the binaries, [`TestCluster::start`] prints that the test was **skipped** and returns
//! `None` — unless `CARBON_LEDGER_REQUIRE_POSTGRES=1`, when it panics, so that CI cannot pass by
//! skipping. A watcher process stops the server and removes its folder when the test process
//! ends, however it ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The variable that makes a missing PostgreSQL a failure rather than a skip.
pub const REQUIRE_VAR: &str = "CARBON_LEDGER_REQUIRE_POSTGRES";

/// A PostgreSQL cluster of its own, in a temporary folder, on a free loopback port.
#[derive(Debug)]
pub struct TestCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// The folder of the server binaries, if there is one.
pub fn server_binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CARBON_LEDGER_PG_BIN") {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").is_file().then_some(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

static NEXT_DATABASE: AtomicU64 = AtomicU64::new(0);

impl TestCluster {
    /// Starts a cluster of its own for the test `test`, or says the test was skipped and
    /// returns `None` when this machine has no PostgreSQL server (a panic instead when
    /// `CARBON_LEDGER_REQUIRE_POSTGRES=1`).
    pub fn start(test: &str) -> Option<Self> {
        let Some(bin) = server_binaries() else {
            if required() {
                panic!(
                    "{test}: PostgreSQL server binaries not found (set CARBON_LEDGER_PG_BIN or install Debian's postgresql package), and {REQUIRE_VAR}=1 requires them"
                );
            }
            eprintln!(
                "SKIPPED {test}: no PostgreSQL server binaries on this machine (set CARBON_LEDGER_PG_BIN or install postgresql; {REQUIRE_VAR}=1 makes this a failure)"
            );
            return None;
        };
        Some(Self::start_with(bin))
    }

    /// One cluster shared by every test of this process that asks for it (each test takes a
    /// database of its own with [`TestCluster::database`]); `None` as for [`TestCluster::start`].
    pub fn shared(test: &str) -> Option<&'static Self> {
        static SHARED: OnceLock<Option<TestCluster>> = OnceLock::new();
        let cluster = SHARED.get_or_init(|| Self::start("the shared test cluster"));
        if cluster.is_none() {
            eprintln!("SKIPPED {test}: no PostgreSQL server on this machine");
        }
        cluster.as_ref()
    }

    fn start_with(bin: PathBuf) -> Self {
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("carbon-ledger-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("a temporary folder: {e}"))
            .keep();
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres", dir.to_str().unwrap_or_default()])
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "chown of {} to postgres failed",
                dir.display()
            );
        }
        let mut cluster = Self {
            bin,
            dir,
            port: 0,
            as_postgres,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        cluster.watch();
        // A port found free may be taken before the server binds it: try a few.
        for attempt in 0..5 {
            cluster.port = free_port();
            if cluster.try_start() {
                return cluster;
            }
            eprintln!(
                "the test cluster did not start on port {} (attempt {attempt})",
                cluster.port
            );
        }
        panic!(
            "the test cluster in {} does not start; its log:\n{}",
            cluster.dir.display(),
            std::fs::read_to_string(cluster.dir.join("log")).unwrap_or_default()
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A process that stops the server and removes the folder once this test process is gone.
    fn watch(&self) {
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; \"{pg_ctl}\" -D \"{data}\" stop -m immediate >/dev/null 2>&1; rm -rf \"{dir}\"",
            pid = std::process::id(),
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.data().display(),
            dir = self.dir.display()
        );
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", &script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        };
        let watcher = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("the cluster's watcher: {e}"));
        // It outlives this process on purpose; a thread reaps it should it end first.
        std::thread::spawn(move || {
            let mut watcher = watcher;
            let _ = watcher.wait();
        });
    }

    fn try_start(&self) -> bool {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.display()
        );
        self.command("pg_ctl")
            .args(["-D", &self.data().display().to_string()])
            .args(["-l", &self.dir.join("log").display().to_string()])
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder of its data and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The URL of the database `name` (which must exist).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database of its own; returns its URL.
    pub fn database(&self) -> String {
        let name = format!(
            "ledger_{}_{}",
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
        );
        let admin = self.url("postgres");
        // On a thread of its own: the blocking client cannot run on an async runtime's thread,
        // and tests call this from async tests too.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut client = postgres::Client::connect(&admin, postgres::NoTls)
                        .unwrap_or_else(|e| panic!("connecting to the test cluster: {e}"));
                    client
                        .batch_execute(&format!("CREATE DATABASE {name}"))
                        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
                })
                .join()
                .unwrap_or_else(|_| panic!("creating the database {name} failed"));
        });
        self.url(&name)
    }

    /// Stops the server (`pg_ctl stop -m fast`: open connections are closed).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "stop",
                "-m",
                "fast",
                "-w",
            ],
        );
    }

    /// Starts the server again on the same port.
    pub fn restart(&self) {
        assert!(self.try_start(), "the test cluster did not start again");
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                &self.data().display().to_string(),
                "stop",
                "-m",
                "immediate",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--", "rm", "-rf"])
                .arg(&self.dir)
                .status()
        } else {
            Command::new("rm").arg("-rf").arg(&self.dir).status()
        };
    }
}
