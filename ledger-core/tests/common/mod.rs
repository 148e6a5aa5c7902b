//! Builders shared by the state-machine tests: bodies from JSON, contexts with given signers.
#![allow(dead_code)]

pub mod stores;

use ledger_core::entry::Body;
use ledger_core::error::RuleError;
use ledger_core::ids::{ParticipantId, Timestamp};
use ledger_core::merkle::{Hash, NodeId};
use ledger_core::state::{ApplyError, Context, Signers, State};
use ledger_core::store::{Append, LeafVisitor, Meta, RowRange, RowVisitor, Store, StoreError};
use serde_json::{json, Value};

pub const LEDGER: &str = "deqing.example/wetland-sink";

/// A deterministic signing key for a participant name (tests only).
pub fn signing_key(name: &str) -> ed25519_dalek::SigningKey {
    let mut seed = [0u8; 32];
    for (i, b) in name.bytes().enumerate() {
        seed[i % 32] ^= b.wrapping_add(u8::try_from(i % 251).unwrap());
    }
    seed[31] ^= u8::try_from(name.len() % 251).unwrap();
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

/// The base64 public key of [`signing_key`].
pub fn key_of(name: &str) -> String {
    use base64::Engine as _;
    let key = signing_key(name).verifying_key();
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

pub fn pid(s: &str) -> ParticipantId {
    s.parse().unwrap()
}

/// Half an hour before the test process started, RFC 3339, the same at every call: when the
/// tests' entries say they were signed (a ledger refuses entries signed longer ago than its
/// expiry window, 24 h by default, and the same body built twice must be the same entry).
pub fn recent() -> String {
    static RECENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RECENT
        .get_or_init(|| {
            let then = time::OffsetDateTime::now_utc() - time::Duration::minutes(30);
            Timestamp::from_instant(then.replace_nanosecond(0).unwrap_or(then)).to_string()
        })
        .clone()
}

/// The date `days` from today (UTC), `YYYY-MM-DD`.
pub fn date_in(days: i64) -> String {
    Timestamp::now().date().plus_days(days).unwrap().to_string()
}

/// A body from its type-specific fields; id, ledger and created_at (half an hour ago, unless
/// given) are added.
pub fn body(id: &str, fields: Value) -> Body {
    let mut value = fields;
    let map = value.as_object_mut().unwrap();
    map.insert("id".into(), json!(id));
    map.insert("ledger".into(), json!(LEDGER));
    map.entry("created_at").or_insert(json!(recent()));
    serde_json::from_value(value).unwrap_or_else(|e| panic!("test body {id}: {e}"))
}

/// A distinct digest per sequence number (the state machine only compares them).
fn sha2_like(seq: u64) -> [u8; 32] {
    let mut digest = [0u8; 32];
    digest[..8].copy_from_slice(&seq.to_be_bytes());
    digest
}

/// A small driver that numbers entries and hands the state machine the signers. Its clock
/// starts now and moves a day per accepted entry, so that maturities can pass.
pub struct Market {
    pub state: State,
    pub seq: u64,
    pub start: time::OffsetDateTime,
}

impl Default for Market {
    fn default() -> Self {
        Self {
            state: State::new(),
            seq: 0,
            start: time::OffsetDateTime::now_utc(),
        }
    }
}

impl Market {
    /// When the next entry is accepted: a day after the previous one.
    pub fn accepted_at(&self) -> Timestamp {
        let days = i64::try_from(self.seq).unwrap();
        Timestamp::from_instant(self.start + time::Duration::days(days))
    }

    /// The day (UTC) the next entry is accepted on.
    pub fn today(&self) -> ledger_core::ids::Date {
        self.accepted_at().date()
    }

    pub fn apply(&mut self, body: &Body, signers: Signers) -> Result<(), RuleError> {
        let ctx = Context {
            seq: self.seq,
            accepted_at: self.accepted_at(),
            signers,
            body_digest: sha2_like(self.seq),
        };
        let result = self.state.apply(&ctx, body).map_err(|e| match e {
            ApplyError::Rule(rule) => rule,
            other => panic!("a state in memory failed to read its history: {other}"),
        });
        if result.is_ok() {
            self.seq += 1;
            self.state.settle();
        }
        result
    }

    pub fn ok(&mut self, body: Body, signers: &[&str]) {
        let signers = Signers::of(signers.iter().map(|s| pid(s)).collect::<Vec<_>>().iter());
        let id = body.id.clone();
        self.apply(&body, signers)
            .unwrap_or_else(|e| panic!("entry {id} refused: {e}"));
    }

    pub fn ok_with_new_key(&mut self, body: Body, signers: &[&str]) {
        let signers =
            Signers::of(signers.iter().map(|s| pid(s)).collect::<Vec<_>>().iter()).with_new_key();
        let id = body.id.clone();
        self.apply(&body, signers)
            .unwrap_or_else(|e| panic!("entry {id} refused: {e}"));
    }

    pub fn refused(&mut self, body: Body, signers: &[&str]) -> RuleError {
        let before = self.state.clone();
        let signers = Signers::of(signers.iter().map(|s| pid(s)).collect::<Vec<_>>().iter());
        let err = self
            .apply(&body, signers)
            .expect_err("entry should be refused");
        assert_eq!(self.state, before, "a refused entry changed the state");
        err
    }

    pub fn register(&mut self, id: &str, name: &str, roles: &[&str]) {
        let b = registration(id, name, roles);
        if self.state.operator().is_none() {
            self.ok_with_new_key(b, &[]);
        } else {
            let op = self.state.operator().unwrap().to_string();
            self.ok_with_new_key(b, &[&op]);
        }
    }
}

/// The participants of the reference case: id, name, roles. The operator comes first.
pub const REFERENCE_PARTICIPANTS: &[(&str, &str, &[&str])] = &[
    (
        "deqing-registry",
        "德清县生态资源登记中心 (illustrative operator)",
        &["operator"],
    ),
    ("zj-forestry-academy", "浙江省林业科学研究院", &["verifier"]),
    (
        "deqing-pricing",
        "德清县碳汇定价小组 (illustrative)",
        &["pricing_authority"],
    ),
    ("xiazhuhu-wetland", "下渚湖湿地管理委员会", &["proponent"]),
    ("two-mountains-bank", "德清两山银行", &["platform"]),
    (
        "enterprise-a",
        "Enterprise A (illustrative)",
        &["enterprise"],
    ),
    (
        "enterprise-b",
        "Enterprise B (illustrative)",
        &["enterprise"],
    ),
    (
        "deqing-rural-bank",
        "Deqing rural commercial bank (illustrative)",
        &["bank"],
    ),
];

/// The reference case after registration: methodology, project, the 17,000 t report, the
/// issuance and the benchmark price. Each step: entry id, type fields, signers.
pub fn reference_setup() -> Vec<(&'static str, Value, Vec<&'static str>)> {
    vec![
        (
            "meth-1",
            json!({"type": "register_methodology", "methodology": "wetland-sink",
            "name": "Wetland carbon sink accounting", "version": "1.0", "buffer_rate": "0.10"}),
            vec!["deqing-registry"],
        ),
        (
            "proj-1",
            json!({"type": "register_project", "project": "XZH", "name": "下渚湖湿地",
            "proponent": "xiazhuhu-wetland", "methodology": "wetland-sink",
            "region": "浙江省湖州市德清县", "area_ha": "593.3"}),
            vec!["deqing-registry", "xiazhuhu-wetland"],
        ),
        (
            "mon-1",
            json!({"type": "record_monitoring", "report": "XZH-MR-2021", "project": "XZH",
            "period_start": "2021-01-01", "period_end": "2021-12-31", "quantity": "17000",
            "evidence_sha256": "9f".repeat(32)}),
            vec!["zj-forestry-academy"],
        ),
        (
            "iss-1",
            json!({"type": "issue_batch", "batch": "XZH-2021", "report": "XZH-MR-2021",
            "quantity": "17000", "vintage": 2021}),
            vec!["deqing-registry"],
        ),
        (
            "price-1",
            json!({"type": "publish_price", "price": "BM-2022-06", "basis": "benchmark",
            "unit_price": "58.83", "currency": "CNY", "effective_at": "2022-06-01T00:00:00Z",
            "inputs": {"method": "cost of restoration per tonne"}}),
            vec!["deqing-pricing"],
        ),
    ]
}

/// The registration body of a reference participant.
pub fn registration(id: &str, name: &str, roles: &[&str]) -> Body {
    body(
        &format!("reg-{id}"),
        json!({"type": "register_participant", "participant": id, "name": name,
               "roles": roles, "public_key": key_of(id)}),
    )
}

/// The base64 form of a public key.
pub fn encode_key(key: &ed25519_dalek::VerifyingKey) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

/// A store that runs `hook` before each append, then does what the store it wraps does: a
/// slow disk, or a store that fails or panics on purpose. It counts the state rows read.
///
/// Built with [`HookedStore::with_faults`] over a store whose durable write runs in steps
/// ([`SteppedStore`]: sled), it also fails a step on purpose when a [`Faults`] plan says so —
/// the atomic write, the flush, the `fdatasync`, or a write that stops half-way — with the real
/// store underneath.
pub struct HookedStore<S> {
    inner: S,
    hook: Box<dyn Fn(&Append<'_>) + Send + Sync>,
    /// The append step by step, with faults (see [`HookedStore::with_faults`]).
    stepped: Option<SteppedAppend<S>>,
    /// Runs before each reopen (a disk that lost writes, put in place on purpose).
    before_reopen: Option<Box<dyn Fn() + Send + Sync>>,
    /// State rows read since the store was made (one by key, or visited by a scan).
    pub rows_read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

type SteppedAppend<S> = Box<dyn Fn(&S, Append<'_>) -> Result<(), StoreError> + Send + Sync>;

impl<S> HookedStore<S> {
    pub fn new(inner: S, hook: impl Fn(&Append<'_>) + Send + Sync + 'static) -> Self {
        Self {
            inner,
            hook: Box::new(hook),
            stepped: None,
            before_reopen: None,
            rows_read: Default::default(),
        }
    }

    /// Runs `before` at each reopen, before the store it wraps reopens.
    pub fn before_reopen(mut self, before: impl Fn() + Send + Sync + 'static) -> Self {
        self.before_reopen = Some(Box::new(before));
        self
    }

    fn count(&self) {
        self.rows_read
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A store whose durable write runs in steps that a test can fail one by one.
pub trait SteppedStore: Store {
    /// The group in the store's memory (one atomic batch).
    fn write_group(&self, group: Append<'_>) -> Result<(), StoreError>;
    /// The store's own flush to its file.
    fn flush(&self) -> Result<(), StoreError>;
    /// `fdatasync`.
    fn sync(&self) -> Result<(), StoreError>;
    /// The file a write that stops half-way is torn in.
    fn data_file(&self) -> std::path::PathBuf;
}

impl SteppedStore for ledger_core::store::SledStore {
    fn write_group(&self, group: Append<'_>) -> Result<(), StoreError> {
        ledger_core::store::SledStore::write_group(self, group)
    }
    fn flush(&self) -> Result<(), StoreError> {
        ledger_core::store::SledStore::flush(self)
    }
    fn sync(&self) -> Result<(), StoreError> {
        ledger_core::store::SledStore::sync(self)
    }
    fn data_file(&self) -> std::path::PathBuf {
        self.path().join("db")
    }
}

/// Which step of a durable write fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The atomic write itself, before anything reaches the store: a full disk.
    Append,
    /// The flush: the group is in the store's memory, not in its file.
    Flush,
    /// The `fdatasync`: the group is in the file, not known to be on the disk.
    Sync,
    /// The write stops half-way: the first half of the bytes it changed in the data file are
    /// there, the rest are as they were (or zeros where the file grew): a torn write.
    HalfWay,
}

/// When appends fail: the next one, or every one until disarmed.
#[derive(Debug, Default)]
pub struct Faults {
    plan: std::sync::Mutex<Option<(Fault, bool)>>,
    /// Faults injected so far.
    pub fired: std::sync::atomic::AtomicU64,
}

impl Faults {
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::default()
    }

    /// The next append fails at `fault`.
    pub fn once(&self, fault: Fault) {
        *self.plan.lock().unwrap() = Some((fault, false));
    }

    /// Every append fails at `fault` until [`Faults::disarm`].
    pub fn always(&self, fault: Fault) {
        *self.plan.lock().unwrap() = Some((fault, true));
    }

    /// Appends succeed again.
    pub fn disarm(&self) {
        *self.plan.lock().unwrap() = None;
    }

    fn take(&self) -> Option<Fault> {
        let mut plan = self.plan.lock().unwrap();
        let fault = plan.map(|(fault, _)| fault);
        if plan.is_some_and(|(_, always)| !always) {
            *plan = None;
        }
        if fault.is_some() {
            self.fired.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        fault
    }
}

impl<S: SteppedStore + 'static> HookedStore<S> {
    /// A store over `inner` whose appends fail as `faults` says.
    pub fn with_faults(inner: S, faults: std::sync::Arc<Faults>) -> Self {
        let mut store = Self::new(inner, |_| {});
        store.stepped = Some(Box::new(move |inner: &S, group: Append<'_>| {
            let injected = |what: &str| StoreError::Io(format!("{what} (injected by the test)"));
            match faults.take() {
                None => {
                    inner.write_group(group)?;
                    inner.flush()?;
                    inner.sync()
                }
                Some(Fault::Append) => Err(StoreError::Full(
                    "No space left on device (os error 28), injected by the test".to_owned(),
                )),
                Some(Fault::Flush) => {
                    inner.write_group(group)?;
                    Err(injected("the flush failed"))
                }
                Some(Fault::Sync) => {
                    inner.write_group(group)?;
                    inner.flush()?;
                    Err(injected("fdatasync failed"))
                }
                Some(Fault::HalfWay) => {
                    let file = inner.data_file();
                    let before = std::fs::read(&file).unwrap();
                    inner.write_group(group)?;
                    inner.flush()?;
                    inner.sync()?;
                    tear(&file, &before);
                    Err(injected("the write stopped half-way"))
                }
            }
        }));
        store
    }
}

/// Puts back, in `file`, the second half of the bytes that differ from `before` (zeros where
/// the file grew), as a disk would leave a write that stopped half-way; then syncs it.
fn tear(file: &std::path::Path, before: &[u8]) {
    let mut after = std::fs::read(file).unwrap();
    let changed: Vec<usize> = (0..after.len())
        .filter(|&i| before.get(i) != Some(&after[i]))
        .collect();
    assert!(
        !changed.is_empty(),
        "the write changed nothing in {}",
        file.display()
    );
    for &i in &changed[changed.len() / 2..] {
        after[i] = before.get(i).copied().unwrap_or(0);
    }
    use std::io::{Seek, Write};
    let mut handle = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    handle.seek(std::io::SeekFrom::Start(0)).unwrap();
    handle.write_all(&after).unwrap();
    handle.sync_all().unwrap();
}

impl<S: std::fmt::Debug> std::fmt::Debug for HookedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HookedStore").field(&self.inner).finish()
    }
}

impl<S: Store> Store for HookedStore<S> {
    fn reopen(&self) -> Result<(), StoreError> {
        if let Some(before) = &self.before_reopen {
            before();
        }
        self.inner.reopen()
    }
    fn writable(&self) -> Result<(), StoreError> {
        self.inner.writable()
    }
    fn meta(&self) -> Result<Option<Meta>, StoreError> {
        self.inner.meta()
    }
    fn append(&self, group: Append<'_>) -> Result<(), StoreError> {
        (self.hook)(&group);
        match &self.stepped {
            Some(stepped) => stepped(&self.inner, group),
            None => self.inner.append(group),
        }
    }
    fn put_checkpoint(&self, note: &str) -> Result<(), StoreError> {
        self.inner.put_checkpoint(note)
    }
    fn checkpoint(&self) -> Result<Option<String>, StoreError> {
        self.inner.checkpoint()
    }
    fn checkpoint_witness(&self) -> Result<Option<String>, StoreError> {
        self.inner.checkpoint_witness()
    }
    fn leaf(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.leaf(seq)
    }
    fn scan_leaves(&self, from: u64, visit: &mut LeafVisitor<'_>) -> Result<(), StoreError> {
        self.inner.scan_leaves(from, visit)
    }
    fn node(&self, id: NodeId) -> Result<Option<Hash>, StoreError> {
        self.inner.node(id)
    }
    fn scan_state(
        &self,
        table: Option<&str>,
        range: RowRange<'_>,
        visit: &mut RowVisitor<'_>,
    ) -> Result<(), StoreError> {
        self.inner
            .scan_state(table, range, &mut |table, key, value| {
                self.count();
                visit(table, key, value)
            })
    }
    fn state_row(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.count();
        self.inner.state_row(table, key)
    }
    fn shared(&self) -> bool {
        self.inner.shared()
    }
    fn lock_head(&self) -> Result<Option<u64>, StoreError> {
        self.inner.lock_head()
    }
    fn unlock_head(&self) {
        self.inner.unlock_head()
    }
}
