//! Helpers shared by the hostile-input, crash and CLI tests: signing bodies for the reference
//! case's parties and for extra enterprises the tests register, a seeded random source, and the
//! service run as a child process.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::{SigningKey, VerifyingKey};
use ledger_api::client::Client;
use ledger_api::demo::{self, ReferenceCase};
use ledger_api::keys;
use ledger_core::checkpoint;
use ledger_core::entry::{Body, Submission};
use ledger_core::ids::ParticipantId;
use ledger_core::ledger::Receipt;
use ledger_core::merkle::{self, CompactTree, Hash};
use ledger_core::sign;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// The reference case's parties plus enterprises the test registers itself.
#[derive(Debug)]
pub struct Market {
    /// The reference case (its origin, operator and parties).
    pub case: ReferenceCase,
    /// Keys of the extra participants, by id.
    pub extra: BTreeMap<String, SigningKey>,
}

impl Market {
    /// A market for the ledger `origin` run by `operator` with `operator_key`.
    pub fn new(origin: &str, operator: &str, operator_key: SigningKey) -> Self {
        Self {
            case: ReferenceCase::new(origin, operator, operator_key),
            extra: BTreeMap::new(),
        }
    }

    /// A participant's key: an extra one, a party of the case, or the operator.
    pub fn key(&self, id: &str) -> &SigningKey {
        self.extra.get(id).unwrap_or_else(|| self.case.key(id))
    }

    /// A body of this ledger (panics if the fields do not make a valid body).
    pub fn body(&self, id: &str, created_at: &str, fields: Value) -> Body {
        self.case.body(id, created_at, fields)
    }

    /// `body` signed by `signers`, in order, with their own keys.
    pub fn sign(&self, body: Body, signers: &[&str]) -> Submission {
        self.sign_with(body, &signers.iter().map(|s| (*s, *s)).collect::<Vec<_>>())
    }

    /// `body` signed by the lines `(signer named, key of)`: lets a test sign for one party with
    /// another party's key.
    pub fn sign_with(&self, body: Body, lines: &[(&str, &str)]) -> Submission {
        let ids: Vec<ParticipantId> = lines.iter().map(|(s, _)| s.parse().unwrap()).collect();
        let pairs: Vec<(&ParticipantId, &SigningKey)> = ids
            .iter()
            .zip(lines)
            .map(|(id, (_, key_of))| (id, self.key(key_of)))
            .collect();
        sign::sign_body(body, &pairs).unwrap()
    }

    /// A signed submission in one call.
    pub fn signed(
        &self,
        id: &str,
        created_at: &str,
        fields: Value,
        signers: &[&str],
    ) -> Submission {
        self.sign(self.body(id, created_at, fields), signers)
    }

    /// The time of the case's `n`th minute (see [`ReferenceCase::at`]): entries the tests add
    /// come after the case's own, from minute 15 on.
    pub fn at(&self, n: i64) -> String {
        self.case.at(n)
    }

    /// Generates a key for a new enterprise `id` and returns its registration, signed by the
    /// operator and by the new key.
    pub fn register_enterprise(&mut self, id: &str) -> Submission {
        let key = keys::generate_key();
        let body = self.body(
            &format!("reg-{id}"),
            &self.at(15),
            json!({"type": "register_participant", "participant": id,
                   "name": format!("{id} (test enterprise)"), "roles": ["enterprise"],
                   "public_key": keys::public_key_base64(&key)}),
        );
        self.extra.insert(id.to_owned(), key);
        let operator = self.case.operator.clone();
        self.sign(body, &[&operator, id])
    }

    /// An unpriced transfer of `quantity` t of the reference batch, signed by both parties.
    pub fn transfer(&self, id: &str, seller: &str, buyer: &str, quantity: &str) -> Submission {
        self.signed(
            id,
            &self.at(20),
            json!({"type": "trade", "kind": "transfer", "seller": seller, "buyer": buyer,
                   "batch": demo::BATCH, "quantity": quantity}),
            &[seller, buyer],
        )
    }

    /// The case's registrations, as one group body `{"entries": [...]}`.
    pub fn registrations_group(&self) -> Value {
        let entries: Vec<Submission> = self
            .case
            .registrations()
            .into_iter()
            .map(|s| s.submission)
            .collect();
        json!({ "entries": entries })
    }

    /// The case's market steps up to and including the acquisition: afterwards the platform
    /// holds 10,000 t and the wetland 5,300 t of the batch.
    pub fn up_to_acquisition(&self) -> Vec<Submission> {
        self.case
            .market()
            .into_iter()
            .take(6)
            .map(|s| s.submission)
            .collect()
    }
}

/// SplitMix64: a small seeded generator, so that a failing run can be repeated with its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..high` (`high > low`).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low)
    }
}

/// Hex to a 32-byte hash.
pub fn unhex(text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).unwrap_or_else(|e| panic!("{text}: {e}"));
    out
}

/// The binary under test, `carbon-ledger` of the ledger-api package, in the profile these tests
/// were built with. The root package cannot name another package's binary at compile time, so
/// the first call builds it (a no-op when `cargo test --workspace` already has) and finds it
/// beside the test executable. `CARBON_LEDGER_TEST_BIN` names another binary to test instead (a
/// release artifact, or an older build to show that a regression test fails on it).
pub fn bin() -> &'static Path {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(given) = std::env::var_os("CARBON_LEDGER_TEST_BIN") {
            return given.into();
        }
        // target/<profile>/deps/<this test> → target/<profile>
        let exe = std::env::current_exe().expect("the test's own path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test runs from target/<profile>/deps");
        let target_dir = profile_dir.parent().expect("a target folder");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        build.args([
            "build",
            "--quiet",
            "--locked",
            "-p",
            "ledger-api",
            "--bin",
            "carbon-ledger",
        ]);
        build.arg("--target-dir").arg(target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building carbon-ledger failed");
        let bin = profile_dir.join(format!("carbon-ledger{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
}

/// `carbon-ledger serve` in a child process; killed (SIGKILL) when dropped.
pub struct Service {
    child: Child,
    /// Where it listens, `http://ADDR`.
    pub url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts the service on `data` and waits for the line saying where it listens.
    pub fn start(data: &Path) -> Self {
        Self::start_with(data, &[])
    }

    /// Starts the service on `data` with the entries in the PostgreSQL database at `store`.
    pub fn start_on(data: &Path, store: &str) -> Self {
        Self::start_with(data, &["--store", store])
    }

    /// Starts the service on `data` with more arguments of `serve`.
    pub fn start_with(data: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(bin())
            .args([
                "serve",
                "--data",
                data.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut service = Self {
            child,
            url: String::new(),
            log: log.clone(),
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
            let Ok(line) = line else {
                let status = service.child.try_wait().ok().flatten();
                panic!(
                    "serve did not say where it listens (exit status {status:?}); its log:\n{}",
                    service.log.lock().unwrap().join("\n")
                );
            };
            if let Some(at) = line.find("listening on http://") {
                let rest = &line[at + "listening on ".len()..];
                service.url = rest.split_whitespace().next().unwrap().to_owned();
                return service;
            }
        }
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Starts `carbon-ledger serve` on `data` as `launch` says, on a port chosen here, and waits
    /// until it answers `GET /healthz` (whatever the status). Its stderr is not read: a test that
    /// gives it a broken stderr still learns where it listens.
    pub fn launch(data: &Path, launch: Launch) -> Self {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}");
        let mut command = match launch.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(bin());
                command
            }
            None => Command::new(bin()),
        };
        command
            .args(["serve", "--data", data.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(&launch.args)
            .env("RUST_LOG", launch.log_filter)
            .stdin(Stdio::null())
            .stdout(launch.stdout)
            .stderr(launch.stderr);
        let child = command.spawn().unwrap();
        let mut service = Self {
            child,
            url,
            log: Arc::new(Mutex::new(Vec::new())),
        };
        if launch.close_pipes {
            // The reading ends close now: every later write of the service gets EPIPE.
            drop(service.child.stdout.take());
            drop(service.child.stderr.take());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = service.child.try_wait().unwrap() {
                panic!("serve exited with {status} before it answered");
            }
            let answered = std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .and_then(|mut stream| {
                    use std::io::{Read, Write};
                    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                    stream
                        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .ok()?;
                    let mut head = [0u8; 12];
                    stream.read_exact(&mut head).ok()?;
                    head.starts_with(b"HTTP/1.1 ").then_some(())
                });
            if answered.is_some() {
                return service;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not answer within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// [`Service::terminate`], with what the service logged until it exited.
    pub fn terminate_with_log(self) -> (std::process::ExitStatus, String) {
        let log = Arc::clone(&self.log);
        let status = self.terminate();
        let text = log.lock().unwrap().join("\n");
        (status, text)
    }

    /// SIGTERM, and the exit status within a bound.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// How [`Service::launch`] starts the service.
#[derive(Debug)]
pub struct Launch {
    /// More arguments of `serve`.
    pub args: Vec<String>,
    /// `RUST_LOG`.
    pub log_filter: String,
    /// A command that runs the binary (`prlimit --fsize=...`), with its arguments.
    pub wrapper: Vec<String>,
    /// Where its standard output goes.
    pub stdout: Stdio,
    /// Where its standard error goes.
    pub stderr: Stdio,
    /// With `Stdio::piped()` above: close the reading ends at once.
    pub close_pipes: bool,
}

impl Default for Launch {
    fn default() -> Self {
        Self {
            args: Vec::new(),
            log_filter: "info".to_owned(),
            wrapper: Vec::new(),
            stdout: Stdio::null(),
            stderr: Stdio::null(),
            close_pipes: false,
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Over HTTP: the reference case's participants and `enterprises` more (two atomic groups), then
/// the market up to the acquisition, every entry answered 201.
pub async fn populate_over_http(
    client: &ledger_api::client::Client,
    market: &mut Market,
    enterprises: &[String],
) {
    let registrations: Vec<Submission> = enterprises
        .iter()
        .map(|e| market.register_enterprise(e))
        .collect();
    for group in [
        market.registrations_group(),
        json!({ "entries": registrations }),
    ] {
        let r = client
            .post("/v1/entries/group", serde_json::to_vec(&group).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    }
    for s in market.up_to_acquisition() {
        let r = client
            .post("/v1/entries", serde_json::to_vec(&s).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    }
}

/// A second instance's data folder: the operator key and the ledger's origin of `from`, copied.
pub fn copy_data_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for file in ["operator.key", "ledger.json"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
}

/// A page of `/v1/entries`, each envelope as the service sent its bytes.
#[derive(Deserialize)]
struct EntriesPage {
    size: u64,
    entries: Vec<EntryRow>,
}

#[derive(Deserialize)]
struct EntryRow {
    seq: u64,
    leaf_hash: String,
    envelope: Box<RawValue>,
}

/// What a test knows of a service's log, read as it grows: every leaf, and the roots.
pub struct Log {
    /// Leaf hashes, by sequence number.
    pub leaves: Vec<Hash>,
    /// `roots[n]` is the root of the first `n` leaves.
    pub roots: Vec<Hash>,
    pub tree: CompactTree,
    /// Entry id → sequence number.
    pub ids: HashMap<String, u64>,
    /// Signed checkpoints seen (size, root), deduplicated.
    pub checkpoints: BTreeMap<u64, Hash>,
}

impl Log {
    pub fn new() -> Self {
        Self {
            leaves: Vec::new(),
            roots: vec![merkle::empty_root()],
            tree: CompactTree::new(),
            ids: HashMap::new(),
            checkpoints: BTreeMap::new(),
        }
    }

    pub fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// Reads the entries after those read so far, up to `size`, from `client`'s service (which
    /// must hold exactly `size` then; it may still be catching up). Each leaf's hash is
    /// recomputed from the envelope's bytes and must be the one served; the log must be
    /// gap-free (each envelope's seq its position, its prev the previous leaf's hash) and hold
    /// each id once. `each` sees every new entry's seq and id. Reading only what is new keeps a
    /// long crash run linear in its entries.
    pub async fn read_to(&mut self, client: &Client, size: u64, each: &mut dyn FnMut(u64, &str)) {
        while self.size() < size {
            let page: EntriesPage = client
                .get(&format!(
                    "/v1/entries?from={}&limit=1000&min_size={size}",
                    self.size()
                ))
                .await
                .unwrap()
                .ok_json()
                .unwrap();
            assert_eq!(page.size, size);
            assert!(
                !page.entries.is_empty(),
                "entry {} of {size} cannot be read",
                self.size()
            );
            for row in page.entries {
                let seq = self.size();
                assert_eq!(row.seq, seq, "a gap: expected entry {seq}, got {}", row.seq);
                let leaf = row.envelope.get().as_bytes();
                let hash = merkle::leaf_hash(leaf);
                assert_eq!(hex::encode(hash), row.leaf_hash, "entry {seq}'s leaf hash");
                let envelope: Value = serde_json::from_slice(leaf).unwrap();
                assert_eq!(
                    envelope["seq"].as_u64(),
                    Some(seq),
                    "entry {seq}'s envelope"
                );
                let prev = self
                    .leaves
                    .last()
                    .map_or_else(|| "0".repeat(64), hex::encode);
                assert_eq!(
                    envelope["prev"].as_str(),
                    Some(prev.as_str()),
                    "entry {seq}'s prev"
                );
                let id = envelope["entry"]["body"]["id"].as_str().unwrap().to_owned();
                each(seq, &id);
                if let Some(first) = self.ids.insert(id.clone(), seq) {
                    panic!("{id} is in the log twice, at {first} and {seq}");
                }
                self.tree.append(hash).unwrap();
                self.leaves.push(hash);
                self.roots.push(self.tree.root());
            }
        }
    }

    /// Checks that `receipt`'s entry is in the log where the receipt says, with its leaf hash.
    pub fn holds(&self, receipt: &Receipt) {
        assert_eq!(
            self.ids.get(&receipt.id),
            Some(&receipt.seq),
            "acknowledged entry {} is not where its receipt says",
            receipt.id
        );
        let at = usize::try_from(receipt.seq).unwrap();
        assert_eq!(
            hex::encode(self.leaves[at]),
            receipt.leaf_hash,
            "acknowledged entry {}: leaf hash",
            receipt.id
        );
    }

    /// Records a checkpoint note after checking its signature; a root that differs from one
    /// recorded for the same size is a fork.
    pub fn checkpoint(&mut self, note: &str, origin: &str, key: &VerifyingKey) {
        record_checkpoint(&mut self.checkpoints, note, origin, key);
    }
}

/// Opens a checkpoint note (its signature must verify) and records its root by size in `roots`:
/// a root that differs from one recorded for the same size is a fork.
pub fn record_checkpoint(
    roots: &mut BTreeMap<u64, Hash>,
    note: &str,
    origin: &str,
    key: &VerifyingKey,
) -> checkpoint::Checkpoint {
    let cp = checkpoint::open_checkpoint(note, origin, key)
        .unwrap_or_else(|e| panic!("a checkpoint does not verify: {e}\n{note}"));
    if let Some(root) = roots.insert(cp.size, cp.root) {
        assert_eq!(root, cp.root, "two checkpoints of size {} differ", cp.size);
    }
    cp
}
