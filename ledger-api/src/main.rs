//! `carbon-ledger`: the service (`serve`) and the tools around it.
//!
//! ```text
//! carbon-ledger serve  [--data DIR] [--store postgres://USER@HOST:PORT/DB] [--listen ADDR] [--origin ORIGIN] [limits...]
//! carbon-ledger keygen --out FILE
//! carbon-ledger sign   --key FILE --signer ID [--key FILE --signer ID ...] [--ledger ORIGIN] BODY.json
//! carbon-ledger submit [--url URL] [--ca-cert PEM] FILE.json     (default URL http://127.0.0.1:8080)
//! carbon-ledger verify --export FILE --checkpoint FILE --operator-key KEY
//! carbon-ledger verify-pledge --bundle FILE --operator-key KEY
//! carbon-ledger demo   [--url URL --operator-key FILE [--keys DIR] [--ca-cert PEM]]
//! carbon-ledger restore --data DIR --operator-key-file FILE [--export FILE --checkpoint FILE] [--mirror URL|DIR]... [--floor FILE|URL]... [--witness URL]...
//! carbon-ledger mirror --url URL --data DIR [--operator-key KEY] [--listen ADDR] [--once]
//! ```
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ledger_api::cli;
use ledger_api::demo::{self, DemoOptions};
use ledger_api::keys::DataDirOptions;
use ledger_api::server::{self, ServeOptions};
use ledger_api::Limits;

// jemalloc rather than the C library's allocator: sled copies a page of its tree on every insert,
// and the submitting threads allocate and free across threads; with glibc's malloc, a fifth of the
// service's CPU time under load went to the allocator (docs/performance.md, "The allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The carbon-sink finance ledger: an append-only, signed, tamper-evident ledger of a wetland
/// carbon-sink market.
#[derive(Debug, Parser)]
#[command(name = "carbon-ledger", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the HTTP service on the embedded store (sled) in DIR, or on PostgreSQL with --store;
    /// creates the operator key and the ledger's origin on first start and reuses them after.
    Serve(Serve),
    /// Writes a new secret key file (mode 0600) and prints its public key (base64).
    Keygen {
        /// The key file to create (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Signs a body file and prints the submission; given a submission, adds signatures to it.
    Sign {
        /// A key file (from `keygen`); repeat with --signer for each party.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// The participant id each --key signs for, in the same order.
        #[arg(long = "signer", required = true)]
        signers: Vec<String>,
        /// The ledger's origin, for a body that does not name it.
        #[arg(long, env = "CARBON_LEDGER_ORIGIN")]
        ledger: Option<String>,
        /// The body (or submission) file.
        input: PathBuf,
    },
    /// Submits a signed file (one submission, or a group {"entries": [...]}) and prints the
    /// receipt. Without --url (or CARBON_LEDGER_URL) it posts to http://127.0.0.1:8080; it says on
    /// standard error where it posted.
    Submit {
        /// The service: without this flag, CARBON_LEDGER_URL, else http://127.0.0.1:8080.
        #[arg(
            long,
            env = "CARBON_LEDGER_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        url: String,
        /// The signed submission.
        file: PathBuf,
        /// A CA certificate (PEM) to trust for an https:// service, besides the platform's roots.
        #[arg(long, env = "CARBON_LEDGER_CA_CERT")]
        ca_cert: Option<PathBuf>,
    },
    /// Checks an export against a checkpoint and the operator's public key, offline.
    ///
    /// Its progress goes to standard error: a bar on a terminal, otherwise a line at each tenth
    /// of the way (and at least every 10 s); standard output carries the result alone.
    Verify {
        /// The NDJSON export (GET /v1/export).
        #[arg(long)]
        export: PathBuf,
        /// The checkpoint (GET /v1/checkpoint).
        #[arg(long)]
        checkpoint: PathBuf,
        /// The operator's public key: base64, a C2SP verifier key, or a file holding one.
        #[arg(long)]
        operator_key: String,
    },
    /// A bank's offline check of a pledge bundle (GET /v1/pledges/{id}/bundle).
    VerifyPledge {
        /// The bundle file.
        #[arg(long)]
        bundle: PathBuf,
        /// The operator's public key: base64, a C2SP verifier key, or a file holding one.
        #[arg(long)]
        operator_key: String,
        /// A witness the bank trusts: its verifier key (C2SP vkey, as `carbon-ledger witness`
        /// prints it), or a file holding one. Repeat for each.
        #[arg(long = "witness")]
        witnesses: Vec<String>,
        /// How many of those witnesses must have cosigned the checkpoint (default: all given).
        #[arg(long)]
        quorum: Option<usize>,
        /// A file keeping the last checkpoint the bank accepted: the bundle's must extend it
        /// (fetch the bundle with ?old_size=N for the proof), and then replaces it.
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Runs a validating witness: it cosigns a ledger's checkpoints (C2SP tlog-witness,
    /// cosignature/v1) only after replaying every new entry under the market's rules.
    Witness {
        /// Its folder: key, name, and a verified copy of each ledger it witnesses.
        #[arg(long, env = "CARBON_LEDGER_WITNESS_DATA", default_value = "./witness")]
        data: PathBuf,
        /// Its key name, for a new witness (such as witness.bank.example/w1).
        #[arg(long)]
        name: Option<String>,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// A ledger to witness: its URL and its checkpoint verifier key (GET /v1/ledger,
        /// checkpoint_verifier_key), as URL=VKEY. Repeat for each.
        #[arg(long = "log", required = true)]
        logs: Vec<String>,
        /// A CA certificate (PEM) to trust for https:// ledgers, besides the platform's roots.
        #[arg(long, env = "CARBON_LEDGER_CA_CERT")]
        ca_cert: Option<PathBuf>,
    },
    /// Re-verifies a stopped ledger from its data folder: every signature, the chain, the tree
    /// and the state.
    ///
    /// Its progress goes to standard error: a bar on a terminal, otherwise a line at each tenth
    /// of the way (and at least every 10 s); standard output carries the result alone.
    Check {
        /// The data folder.
        #[arg(long, env = "CARBON_LEDGER_DATA", default_value = "./data")]
        data: PathBuf,
        /// The PostgreSQL database the entries live in, if not sled in the data folder.
        #[arg(long, env = "CARBON_LEDGER_STORE")]
        store: Option<String>,
    },
    /// Restores a ledger from copies of its log — a backup's export, mirrors — checked against
    /// the newest checkpoint its key signed that you can find (the floor). A new folder is built
    /// apart and moved into place only once complete and checked; a folder holding a ledger
    /// behind its floor is completed in place.
    ///
    /// Its progress (entries held after each durable write) goes to standard error: a bar on a
    /// terminal, otherwise plain lines; standard output carries the result alone.
    Restore {
        /// The data folder to create (or to complete, if it holds a ledger behind its floor).
        #[arg(long)]
        data: PathBuf,
        /// The operator's secret key file (the old DIR/operator.key).
        #[arg(long)]
        operator_key_file: PathBuf,
        /// A backup's NDJSON export (GET /v1/export).
        #[arg(long)]
        export: Option<PathBuf>,
        /// The backup's checkpoint (GET /v1/checkpoint): a floor.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// A copy of the log to take the leaves from, after the export: a mirror's URL or
        /// folder (stopped), a witness's folder, a ledger's URL. Its checkpoint is a floor too.
        /// Repeat for each.
        #[arg(long = "mirror")]
        mirrors: Vec<String>,
        /// A checkpoint the operator key signed, as a file (a bank's --state file, another
        /// backup's) or a URL: the newest of all is the floor. Repeat for each.
        #[arg(long = "floor")]
        floors: Vec<String>,
        /// A witness's URL: the checkpoint it last cosigned is a floor. Repeat for each.
        #[arg(long = "witness")]
        witnesses: Vec<String>,
        /// Restore into this PostgreSQL database (empty) instead of sled in the data folder:
        /// postgres://USER@HOST:PORT/DB. The copy goes in in one transaction.
        #[arg(long)]
        store: Option<String>,
        /// A CA certificate (PEM) to trust for https:// sources, besides the platform's roots.
        #[arg(long, env = "CARBON_LEDGER_CA_CERT")]
        ca_cert: Option<PathBuf>,
    },
    /// Follows a ledger and keeps every leaf, verified against its checkpoints, durably in DIR:
    /// the copy `restore --mirror` recovers from. Run it on another machine than the ledger.
    Mirror {
        /// The ledger's URL.
        #[arg(long)]
        url: String,
        /// The mirror's folder.
        #[arg(long, env = "CARBON_LEDGER_MIRROR_DATA", default_value = "./mirror")]
        data: PathBuf,
        /// The operator's public key (base64, a C2SP verifier key, or a file holding one);
        /// without it a new mirror trusts the one GET /v1/ledger states, and says so.
        #[arg(long)]
        operator_key: Option<String>,
        /// Serve the copy (GET /v1/checkpoint, /v1/entries, /v1/ledger, /healthz) here.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// How often to fetch the ledger's checkpoint, milliseconds.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
        interval_ms: u64,
        /// One round, then exit (for cron).
        #[arg(long)]
        once: bool,
        /// A CA certificate (PEM) to trust for an https:// ledger, besides the platform's roots.
        #[arg(long, env = "CARBON_LEDGER_CA_CERT")]
        ca_cert: Option<PathBuf>,
    },
    /// A bounded load test on this machine: the signature-verification ceiling, then pre-signed
    /// trades through the library and over HTTP on loopback, each on a fresh temporary ledger.
    Bench {
        /// Trades to submit in each mode.
        #[arg(long, default_value_t = 20_000)]
        entries: usize,
        /// Concurrent submitters.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Holders the trades move sink among.
        #[arg(long, default_value_t = 1000)]
        holders: usize,
        /// Seconds to measure each signature rate.
        #[arg(long, default_value_t = 2.0)]
        ceiling_seconds: f64,
        /// Only in process, or only over HTTP.
        #[arg(long, value_parser = ["both", "in-process", "http"], default_value = "both")]
        mode: String,
        /// Also print the figures as JSON.
        #[arg(long)]
        json: bool,
        /// Also run on PostgreSQL, one instance and two sharing a database:
        /// postgres://USER@HOST:PORT/DB (a scratch database is created beside it, then dropped).
        #[arg(long)]
        store: Option<String>,
    },
    /// Replays the reference case (Xiazhu Lake wetland, 2022) and prints a readable report.
    Demo {
        /// A running service; without it the demo starts one on a temporary folder.
        #[arg(long, env = "CARBON_LEDGER_URL")]
        url: Option<String>,
        /// With --url: the service's operator key file (DIR/operator.key).
        #[arg(long)]
        operator_key: Option<PathBuf>,
        /// A CA certificate (PEM) to trust for an https:// service, besides the platform's roots.
        #[arg(long, env = "CARBON_LEDGER_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// With --url: a folder to write the participants' secret keys to (one file
        /// PARTICIPANT.key each), to sign more entries for them after the demo.
        #[arg(long)]
        keys: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct Serve {
    /// The data folder: operator key, origin and (without --store) the sled store.
    #[arg(long, env = "CARBON_LEDGER_DATA", default_value = "./data")]
    data: PathBuf,
    /// Keep the entries in PostgreSQL instead of sled in the data folder:
    /// postgres://USER@HOST:PORT/DB. Several instances, each with a copy of the data folder's
    /// operator.key and ledger.json, may serve one database at once.
    #[arg(long, env = "CARBON_LEDGER_STORE")]
    store: Option<String>,
    /// The address to listen on.
    #[arg(long, env = "CARBON_LEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The ledger's origin, for a new ledger (default carbon-sink-ledger.local/HOSTNAME);
    /// for an existing one it must match.
    #[arg(long, env = "CARBON_LEDGER_ORIGIN")]
    origin: Option<String>,
    /// The operator's participant id, for a new ledger.
    #[arg(long, env = "CARBON_LEDGER_OPERATOR_ID", default_value = "operator")]
    operator_id: String,
    /// The operator's display name, for a new ledger.
    #[arg(
        long,
        env = "CARBON_LEDGER_OPERATOR_NAME",
        default_value = "Ledger operator"
    )]
    operator_name: String,
    /// Largest request body, bytes.
    #[arg(long, env = "CARBON_LEDGER_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Most entries in one atomic group (at most 1024).
    #[arg(long, env = "CARBON_LEDGER_MAX_GROUP_ENTRIES", default_value_t = 256,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    max_group_entries: u16,
    /// Largest page of a list.
    #[arg(long, env = "CARBON_LEDGER_MAX_PAGE", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_page: u32,
    /// Page size when none is asked for.
    #[arg(long, env = "CARBON_LEDGER_DEFAULT_PAGE", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    default_page: u32,
    /// Longest time to answer a request, seconds.
    #[arg(long, env = "CARBON_LEDGER_REQUEST_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_secs: u64,
    /// Most requests answered at once; more are refused with 503 at once.
    #[arg(long, env = "CARBON_LEDGER_MAX_IN_FLIGHT", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight: u32,
    /// A witness to submit each new checkpoint to, as URL=VKEY (its submission prefix and its
    /// verifier key). Repeat for each.
    #[arg(
        long = "witness",
        env = "CARBON_LEDGER_WITNESSES",
        value_delimiter = ','
    )]
    witnesses: Vec<String>,
    /// How often, at most, a new checkpoint goes to the witnesses, milliseconds.
    #[arg(long, env = "CARBON_LEDGER_COSIGN_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..))]
    cosign_interval_ms: u64,
    /// Longest time a connection may take to send a request head (from its opening, or from
    /// the first byte of a later request), seconds; then it is closed.
    #[arg(long, env = "CARBON_LEDGER_HEADER_READ_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_secs: u64,
    /// Longest time a kept-alive connection may wait for its next request (and a response for
    /// its client to read on), seconds; then it is closed.
    #[arg(long, env = "CARBON_LEDGER_IDLE_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_secs: u64,
    /// Most connections open at once; one more closes the quietest connection not being
    /// answered. Keep it below the open-file limit (ulimit -n).
    #[arg(long, env = "CARBON_LEDGER_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// On SIGTERM or Ctrl-C, longest time to wait for the requests being answered (and
    /// downloads whose clients stopped reading), seconds; then their connections are cut and
    /// the service exits. Keep it below the orchestrator's grace period (30 s in Kubernetes).
    #[arg(long, env = "CARBON_LEDGER_SHUTDOWN_TIMEOUT_SECS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    shutdown_timeout_secs: u64,
    /// Disk space the store holds back (in DATA/store/reserve), MiB: released when the disk
    /// fills so that the ledger can still open its store and answer reads; writes resume once
    /// there is room to take it back. 0: none.
    #[arg(long, env = "CARBON_LEDGER_STORE_RESERVE_MIB", default_value_t = 16)]
    store_reserve_mib: u64,
    /// Signed entries expire: one signed (its created_at) longer ago than this when it first
    /// arrives is refused with entry-expired. Seconds.
    #[arg(long, env = "CARBON_LEDGER_ENTRY_MAX_AGE_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..))]
    entry_max_age_secs: u64,
}

impl Serve {
    fn options(self) -> ServeOptions {
        let usize_of = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        ServeOptions {
            data: DataDirOptions {
                dir: self.data,
                origin: self.origin,
                operator: self.operator_id,
                operator_name: self.operator_name,
            },
            listen: self.listen,
            limits: Limits {
                body_bytes: self.max_body_bytes,
                group_entries: usize::from(self.max_group_entries),
                page_default: usize_of(self.default_page),
                page_max: usize_of(self.max_page),
                request_timeout: Duration::from_secs(self.request_timeout_secs),
                in_flight: usize_of(self.max_in_flight),
                header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
                idle_timeout: Duration::from_secs(self.idle_timeout_secs),
                max_connections: usize_of(self.max_connections),
                store_reserve_bytes: self.store_reserve_mib.saturating_mul(1 << 20),
                shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            },
            entry_max_age: Duration::from_secs(self.entry_max_age_secs),
            witnesses: self.witnesses,
            cosign_interval: Duration::from_millis(self.cosign_interval_ms),
            store: self.store,
        }
    }
}

/// Writes a command's output to stdout; a closed pipe or a full disk is an error to report, not
/// a panic (as `println!` would make it).
fn out(text: &str) -> Result<(), cli::CliError> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| cli::CliError(format!("cannot write to standard output: {e}")))
}

/// A line to stderr, dropped if stderr cannot be written (`eprintln!` would panic).
fn note(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn runtime() -> Result<tokio::runtime::Runtime, cli::CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| cli::CliError(format!("cannot start the runtime: {e}")))
}

fn run(command: Command) -> Result<(), cli::CliError> {
    match command {
        Command::Serve(serve) => {
            // Logging never takes the service down (see `logging`); the guard writes what is
            // queued when `serve` returns.
            let _log = ledger_api::logging::init("info");
            let options = serve.options();
            let runtime = runtime()?;
            let served = runtime.block_on(server::serve(options));
            // A blocking thread still running (a handler stuck on a hung disk) does not hold
            // the exit: nothing it would write was acknowledged.
            runtime.shutdown_timeout(server::BLOCKING_EXIT_WAIT);
            served.map_err(|e| cli::CliError(e.to_string()))
        }
        Command::Keygen { out: out_path } => {
            let public = cli::keygen(&out_path)?;
            out(&format!("{public}\n"))?;
            note(&format!(
                "secret key written to {} (mode 0600); the line above is its public key",
                out_path.display()
            ));
            Ok(())
        }
        Command::Sign {
            keys,
            signers,
            ledger,
            input,
        } => {
            if keys.len() != signers.len() {
                return Err(cli::CliError(format!(
                    "give one --signer per --key ({} keys, {} signers)",
                    keys.len(),
                    signers.len()
                )));
            }
            let pairs: Vec<_> = keys.into_iter().zip(signers).collect();
            out(&format!(
                "{}\n",
                cli::sign(&input, &pairs, ledger.as_deref())?
            ))
        }
        Command::Submit { url, file, ca_cert } => {
            let client = ledger_api::client::Client::with_options(
                &url,
                ledger_api::client::ClientOptions { ca_cert },
            )
            .map_err(|e| cli::CliError(e.0))?;
            let submitted = runtime()?.block_on(cli::submit_to(&client, &file))?;
            // Where it went is a note for the person at the terminal; the answer is the output.
            note(&format!("submitted to {}{}", client.url(), submitted.path));
            out(&format!("{}\n", submitted.answer))
        }
        Command::Verify {
            export,
            checkpoint,
            operator_key,
        } => out(&cli::verify(&export, &checkpoint, &operator_key)?),
        Command::VerifyPledge {
            bundle,
            operator_key,
            witnesses,
            quorum,
            state,
        } => {
            let bank = cli::BankOptions {
                witnesses,
                quorum,
                state,
            };
            out(&cli::verify_pledge(&bundle, &operator_key, &bank)?)
        }
        Command::Witness {
            data,
            name,
            listen,
            logs,
            ca_cert,
        } => {
            let _log = ledger_api::logging::init("info");
            let options = ledger_api::witness::WitnessOptions {
                data,
                name,
                listen,
                logs,
                ca_cert,
            };
            runtime()?.block_on(async {
                let running = ledger_api::witness::start(options)
                    .await
                    .map_err(|e| cli::CliError(e.to_string()))?;
                out(&format!("{}\n", running.verifier_key))?;
                server::shutdown_signal().await;
                running
                    .stop()
                    .await
                    .map_err(|e| cli::CliError(e.to_string()))
            })
        }
        Command::Check { data, store } => out(&cli::check(&data, store.as_deref())?),
        Command::Restore {
            data,
            operator_key_file,
            export,
            checkpoint,
            mirrors,
            floors,
            witnesses,
            store,
            ca_cert,
        } => {
            let options = ledger_api::recovery::RestoreOptions {
                data,
                operator_key_file,
                export,
                checkpoint,
                mirrors,
                floors,
                witnesses,
                store,
                ca_cert,
            };
            out(&ledger_api::recovery::restore(&options)?)
        }
        Command::Mirror {
            url,
            data,
            operator_key,
            listen,
            interval_ms,
            once,
            ca_cert,
        } => {
            let _log = ledger_api::logging::init("info");
            let options = ledger_api::mirror::MirrorOptions {
                url,
                data,
                operator_key,
                listen,
                interval: Duration::from_millis(interval_ms),
                ca_cert,
            };
            let runtime = runtime()?;
            if once {
                out(&runtime.block_on(ledger_api::mirror::once(options))?)
            } else {
                runtime.block_on(ledger_api::mirror::run(options, server::shutdown_signal()))
            }
        }
        Command::Bench {
            entries,
            clients,
            holders,
            ceiling_seconds,
            mode,
            json,
            store,
        } => {
            let _log = ledger_api::logging::init("warn");
            let options = ledger_api::bench::BenchOptions {
                entries,
                clients: clients.max(1),
                holders,
                ceiling_seconds,
                in_process: mode != "http",
                http: mode != "in-process",
                store,
            };
            let report = ledger_api::bench::run(&options, &mut std::io::stdout())
                .map_err(|e| cli::CliError(e.to_string()))?;
            if json {
                let text =
                    serde_json::to_string(&report).map_err(|e| cli::CliError(e.to_string()))?;
                out(&format!("{text}\n"))?;
            }
            Ok(())
        }
        Command::Demo {
            url,
            operator_key,
            ca_cert,
            keys,
        } => {
            let _log = ledger_api::logging::init("warn");
            let mut out = std::io::stdout();
            let options = DemoOptions {
                url,
                operator_key,
                ca_cert,
                keys,
            };
            runtime()?
                .block_on(demo::run(options, &mut out))
                .map_err(|e| cli::CliError(e.0))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            note(&format!("carbon-ledger: {error}"));
            ExitCode::FAILURE
        }
    }
}
