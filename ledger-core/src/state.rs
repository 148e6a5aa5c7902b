//! The market as a deterministic state machine.
//!
//! [`State::apply`] takes an entry, the context the sequencer gives it (its sequence number, when
//! it was accepted, and which participants' signatures were already verified) and either changes
//! the state or returns a [`RuleError`] and changes nothing. Each entry type's rule is a small
//! function that first checks everything, then writes.
//!
//! The state is a set of tables. Every write keeps what it replaced, so that a group of entries can
//! be undone as a whole ([`State::revert`]) and the rows changed since the last durable write can be
//! handed to storage ([`State::pending_changes`], then [`State::settle`]).

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::entry::{self, Body, EntryKind, TradeKind};
use crate::error::{RuleError, Thing};
use crate::ids::{
    Basis, BatchId, Date, EntryId, MethodologyId, ParticipantId, PledgeId, PriceId, ProjectId,
    PublicKey, ReportId, Role, Sha256Hex, Text, Timestamp,
};
use crate::num::{
    facility_limit, money, round_tonnes, tonnes, trade_amount, zero_money, zero_tonnes, Currency,
    Hectares, Quantity, Rate, UnitPrice,
};

/// Who signed an entry, as established by signature verification before the state machine runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signers {
    /// Participants whose current key made a valid signature.
    pub current: BTreeSet<ParticipantId>,
    /// Whether the key named in the body (`public_key` of a registration, `new_public_key` of a
    /// rotation) made a valid signature: proof that its owner holds it.
    pub new_key: bool,
}

impl Signers {
    /// Signed by these participants' current keys.
    pub fn of<'a>(ids: impl IntoIterator<Item = &'a ParticipantId>) -> Self {
        Self {
            current: ids.into_iter().cloned().collect(),
            new_key: false,
        }
    }

    /// Also signed with the key named in the body.
    pub fn with_new_key(mut self) -> Self {
        self.new_key = true;
        self
    }

    fn describe(&self) -> String {
        let mut parts: Vec<String> = self.current.iter().map(ToString::to_string).collect();
        if self.new_key {
            parts.push("the key named in the entry".to_owned());
        }
        if parts.is_empty() {
            "nobody".to_owned()
        } else {
            parts.join(" and ")
        }
    }
}

/// What the sequencer knows about an entry when it applies it.
#[derive(Clone, Debug)]
pub struct Context {
    /// The entry's sequence number in the ledger.
    pub seq: u64,
    /// When the ledger accepted it.
    pub accepted_at: Timestamp,
    /// Who signed it.
    pub signers: Signers,
    /// SHA-256 of the canonical body, so that a resubmission can be told from a conflict.
    pub body_digest: [u8; 32],
}

/// A registered participant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    /// Its id.
    pub id: ParticipantId,
    /// Display name.
    pub name: Text,
    /// Its roles.
    pub roles: BTreeSet<Role>,
    /// The key that signs for it now.
    pub public_key: PublicKey,
    /// Entry that registered it.
    pub registered_seq: u64,
    /// Entry from which the current key signs.
    pub key_since_seq: u64,
    /// Entries that rotated its key, oldest first.
    pub rotations: Vec<u64>,
}

impl Participant {
    /// Whether it holds the role.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// A registered methodology.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Methodology {
    /// Its id.
    pub id: MethodologyId,
    /// Name.
    pub name: Text,
    /// Version.
    pub version: Text,
    /// Buffer share of each issuance.
    pub buffer_rate: Rate,
}

/// A wetland project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Project {
    /// Its id.
    pub id: ProjectId,
    /// Name.
    pub name: Text,
    /// Wetland manager.
    pub proponent: ParticipantId,
    /// Methodology.
    pub methodology: MethodologyId,
    /// Region.
    pub region: Text,
    /// Area in hectares.
    pub area_ha: Hectares,
    /// Entry that registered it.
    pub registered_seq: u64,
}

/// A verified monitoring report, with how much has been issued from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Its id.
    pub id: ReportId,
    /// The project.
    pub project: ProjectId,
    /// First day.
    pub period_start: Date,
    /// Last day.
    pub period_end: Date,
    /// Verified quantity, tCO2e.
    pub verified: Quantity,
    /// Issued from it so far, tCO2e.
    #[serde(with = "crate::num::serde_tonnes")]
    pub issued: Decimal,
    /// SHA-256 of the evidence.
    pub evidence_sha256: Sha256Hex,
    /// The verifier who signed it.
    pub verifier: ParticipantId,
    /// Entry that recorded it.
    pub seq: u64,
}

/// A batch (vintage): the unit of fungibility, with where all its tonnes are.
///
/// Always: `issued = available + pledged + buffer + retired + reversed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Its id.
    pub id: BatchId,
    /// The report it was issued from.
    pub report: ReportId,
    /// The project.
    pub project: ProjectId,
    /// Vintage year.
    pub vintage: u16,
    /// Issued in total.
    #[serde(with = "crate::num::serde_tonnes")]
    pub issued: Decimal,
    /// Held back in the buffer pool at issuance.
    #[serde(with = "crate::num::serde_tonnes")]
    pub buffer_initial: Decimal,
    /// Left in the buffer pool.
    #[serde(with = "crate::num::serde_tonnes")]
    pub buffer: Decimal,
    /// Retired for good.
    #[serde(with = "crate::num::serde_tonnes")]
    pub retired: Decimal,
    /// Cancelled from the buffer after reversals.
    #[serde(with = "crate::num::serde_tonnes")]
    pub reversed: Decimal,
    /// Held by participants, available.
    #[serde(with = "crate::num::serde_tonnes")]
    pub available: Decimal,
    /// Held by participants, locked in pledges.
    #[serde(with = "crate::num::serde_tonnes")]
    pub pledged: Decimal,
    /// Entry that issued it.
    pub seq: u64,
}

impl Batch {
    /// Whether every tonne is accounted for and nothing is negative (invariants 1 and 2).
    pub fn balanced(&self) -> bool {
        let parts = [
            self.available,
            self.pledged,
            self.buffer,
            self.retired,
            self.reversed,
        ];
        parts.iter().all(|p| *p >= Decimal::ZERO)
            && parts.iter().copied().sum::<Decimal>() == self.issued
    }
}

/// What a holder has of one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Free to trade, retire or pledge.
    #[serde(with = "crate::num::serde_tonnes")]
    pub available: Decimal,
    /// Locked in pledges.
    #[serde(with = "crate::num::serde_tonnes")]
    pub pledged: Decimal,
}

impl Default for Balance {
    fn default() -> Self {
        Self {
            available: zero_tonnes(),
            pledged: zero_tonnes(),
        }
    }
}

/// A published reference price.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Its id.
    pub id: PriceId,
    /// Basis.
    pub basis: Basis,
    /// Price of a tonne.
    pub unit_price: UnitPrice,
    /// Currency.
    pub currency: Currency,
    /// From when it applies.
    pub effective_at: Timestamp,
    /// What it was computed from.
    pub inputs: BTreeMap<String, String>,
    /// The pricing authority that signed it.
    pub publisher: ParticipantId,
    /// Entry that published it.
    pub seq: u64,
}

/// A recorded trade.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TradeRecord {
    /// The trade id (the entry id).
    pub id: EntryId,
    /// Entry.
    pub seq: u64,
    /// Kind.
    pub kind: TradeKind,
    /// Seller.
    pub seller: ParticipantId,
    /// Buyer.
    pub buyer: ParticipantId,
    /// Batch.
    pub batch: BatchId,
    /// The batch's project.
    pub project: ProjectId,
    /// Tonnes.
    pub quantity: Quantity,
    /// Unit price (priced kinds).
    pub unit_price: Option<UnitPrice>,
    /// Currency (priced kinds).
    pub currency: Option<Currency>,
    /// Amount (priced kinds).
    #[serde(with = "crate::num::serde_money::option")]
    pub amount: Option<Decimal>,
    /// Reference price relied on.
    pub price_ref: Option<PriceId>,
    /// When the parties made it.
    pub created_at: Timestamp,
}

/// A retirement certificate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    /// Certificate number (the entry id).
    pub id: EntryId,
    /// Entry.
    pub seq: u64,
    /// Who retired.
    pub holder: ParticipantId,
    /// Batch.
    pub batch: BatchId,
    /// The batch's project.
    pub project: ProjectId,
    /// The batch's vintage.
    pub vintage: u16,
    /// Tonnes retired.
    pub quantity: Quantity,
    /// On whose behalf.
    pub beneficiary: Text,
    /// The claim it backs.
    pub purpose: Text,
    /// When the ledger accepted it.
    pub retired_at: Timestamp,
}

/// Where a pledge stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PledgeStatus {
    /// Sink locked, loans may be drawn.
    Active,
    /// Released by the bank; the sink is back with the pledgor.
    Released,
    /// Enforced by the bank; the sink moved to the bank.
    Enforced,
}

impl PledgeStatus {
    fn word(self) -> &'static str {
        match self {
            PledgeStatus::Active => "active",
            PledgeStatus::Released => "released",
            PledgeStatus::Enforced => "enforced",
        }
    }
}

/// A pledge of sink to a bank, with its loan facility.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PledgeRecord {
    /// Its id.
    pub id: PledgeId,
    /// Entry that created it.
    pub seq: u64,
    /// Who pledged.
    pub pledgor: ParticipantId,
    /// In whose favour.
    pub bank: ParticipantId,
    /// Batch.
    pub batch: BatchId,
    /// Tonnes locked.
    pub quantity: Quantity,
    /// Reference price.
    pub price_ref: PriceId,
    /// Its unit price when pledged.
    pub unit_price: UnitPrice,
    /// Haircut.
    pub haircut: Rate,
    /// Facility limit.
    #[serde(with = "crate::num::serde_money")]
    pub limit: Decimal,
    /// Currency.
    pub currency: Currency,
    /// Maturity.
    pub maturity: Option<Date>,
    /// Drawn and not repaid.
    #[serde(with = "crate::num::serde_money")]
    pub outstanding: Decimal,
    /// Drawn in total.
    #[serde(with = "crate::num::serde_money")]
    pub drawn: Decimal,
    /// Repaid in total.
    #[serde(with = "crate::num::serde_money")]
    pub repaid: Decimal,
    /// Status.
    pub status: PledgeStatus,
    /// Entry that released or enforced it.
    pub closed_seq: Option<u64>,
}

/// A pledge's collateral valued at a price.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// Unit price used.
    pub unit_price: UnitPrice,
    /// Quantity × unit price, to the fen.
    #[serde(with = "crate::num::serde_money")]
    pub collateral_value: Decimal,
    /// Outstanding loan.
    #[serde(with = "crate::num::serde_money")]
    pub outstanding: Decimal,
    /// Facility limit.
    #[serde(with = "crate::num::serde_money")]
    pub limit: Decimal,
    /// Collateral value ÷ outstanding, to 4 places; none when nothing is outstanding.
    pub coverage_ratio: Option<Decimal>,
}

/// What a project's acquisition and eco-compensation trades have raised for its restoration
/// (生态反哺), in one currency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proceeds {
    /// The project.
    pub project: ProjectId,
    /// Currency.
    pub currency: Currency,
    /// Raised by acquisitions.
    #[serde(with = "crate::num::serde_money")]
    pub acquisition: Decimal,
    /// Raised by eco-compensation.
    #[serde(with = "crate::num::serde_money")]
    pub eco_compensation: Decimal,
    /// Tonnes sold by these trades.
    #[serde(with = "crate::num::serde_tonnes")]
    pub quantity: Decimal,
    /// How many trades.
    pub trades: u64,
}

impl Proceeds {
    /// Raised in total.
    pub fn total(&self) -> Decimal {
        self.acquisition + self.eco_compensation
    }
}

/// Where an entry id was used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecord {
    /// Sequence number.
    pub seq: u64,
    /// SHA-256 of its canonical body.
    #[serde(with = "hex_digest")]
    pub body_digest: [u8; 32],
}

mod hex_digest {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// Filters for [`State::trades`]; `None` matches everything.
#[derive(Clone, Debug, Default)]
pub struct TradeFilter {
    /// Only this batch.
    pub batch: Option<BatchId>,
    /// Only trades where this participant is seller or buyer.
    pub party: Option<ParticipantId>,
    /// Only this kind.
    pub kind: Option<TradeKind>,
}

impl TradeFilter {
    fn matches(&self, trade: &TradeRecord) -> bool {
        self.batch.as_ref().is_none_or(|b| *b == trade.batch)
            && self
                .party
                .as_ref()
                .is_none_or(|p| *p == trade.seller || *p == trade.buyer)
            && self.kind.is_none_or(|k| k == trade.kind)
    }
}

/// One row changed since the last [`State::settle`], for storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// The table's name.
    pub table: &'static str,
    /// The row's key (JSON).
    pub key: Vec<u8>,
    /// The row's new value (JSON), or `None` if it was removed.
    pub value: Option<Vec<u8>>,
}

/// A stored row that could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("stored state row in table {table} cannot be read: {reason}")]
pub struct LoadError {
    /// The table.
    pub table: String,
    /// Why.
    pub reason: String,
}

/// Where the history tables (`entries`, `trades`, `certificates`: one row per entry of their
/// kind) are read back from once they are durable. A ledger keeps them in its store rather than
/// in memory, so that memory grows with the market (participants, batches, holdings) and not with
/// its history; a state without a history source keeps every row in memory.
pub trait History: Send + Sync + std::fmt::Debug {
    /// The value of one row (JSON), as [`StateChange`] gave it.
    fn row(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
    /// Every row of a table, in key order, until `visit` returns `false`.
    fn scan(&self, table: &str, visit: &mut HistoryVisitor<'_>) -> Result<(), String>;
}

/// Visits rows of a history table: key and value (JSON); returns `false` to stop.
pub type HistoryVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool, String> + 'a;

/// The tables whose rows a [`History`] keeps.
pub const HISTORY_TABLES: &[&str] = &["entries", "trades", "certificates"];

/// The state's history source, if any (states compare equal whatever it is).
#[derive(Clone, Default)]
struct HistoryHandle(Option<std::sync::Arc<dyn History>>);

impl PartialEq for HistoryHandle {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for HistoryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "History(store)"
        } else {
            "History(memory)"
        })
    }
}

/// One table of the state: rows, and what each write since the last settle replaced. A table
/// whose rows are kept in a [`History`] holds in memory only the rows written since the last
/// settle.
#[derive(Clone, Debug)]
struct Table<K, V> {
    rows: BTreeMap<K, V>,
    undo: Vec<(K, Option<V>)>,
    in_history: bool,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Self {
            rows: BTreeMap::new(),
            undo: Vec::new(),
            in_history: false,
        }
    }
}

impl<K: PartialEq, V: PartialEq> PartialEq for Table<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.rows == other.rows
    }
}

impl<
        K: Ord + Clone + Serialize + DeserializeOwned,
        V: Clone + PartialEq + Serialize + DeserializeOwned,
    > Table<K, V>
{
    fn get(&self, key: &K) -> Option<&V> {
        self.rows.get(key)
    }

    fn put(&mut self, key: K, value: V) {
        let old = self.rows.insert(key.clone(), value);
        self.undo.push((key, old));
    }

    fn rollback_to(&mut self, len: usize) {
        while self.undo.len() > len {
            let Some((key, old)) = self.undo.pop() else {
                break;
            };
            match old {
                Some(value) => self.rows.insert(key, value),
                None => self.rows.remove(&key),
            };
        }
    }

    fn changes(
        &self,
        table: &'static str,
        out: &mut Vec<StateChange>,
    ) -> Result<(), serde_json::Error> {
        // The value each touched row had before its first write since the last settle: a row
        // written back to that value (a transfer's debit and credit of the same batch totals)
        // need not be written at all.
        let mut before: BTreeMap<&K, Option<&V>> = BTreeMap::new();
        for (key, old) in &self.undo {
            before.entry(key).or_insert(old.as_ref());
        }
        for (key, old) in before {
            let now = self.rows.get(key);
            if now == old {
                continue;
            }
            out.push(StateChange {
                table,
                key: serde_json::to_vec(key)?,
                value: now.map(serde_json::to_vec).transpose()?,
            });
        }
        Ok(())
    }

    fn all_rows(
        &self,
        table: &'static str,
        out: &mut Vec<StateChange>,
    ) -> Result<(), serde_json::Error> {
        for (key, value) in &self.rows {
            out.push(StateChange {
                table,
                key: serde_json::to_vec(key)?,
                value: Some(serde_json::to_vec(value)?),
            });
        }
        Ok(())
    }

    /// Forgets what the writes since the last settle replaced; a table kept in a history also
    /// drops the rows themselves, which are durable now.
    fn settle(&mut self) {
        if self.in_history {
            for (key, _) in self.undo.drain(..) {
                self.rows.remove(&key);
            }
        } else {
            self.undo.clear();
        }
    }

    /// One row, from memory or else from the history.
    fn lookup(
        &self,
        table: &'static str,
        key: &K,
        history: &HistoryHandle,
    ) -> Result<Option<V>, RuleError> {
        if let Some(value) = self.rows.get(key) {
            return Ok(Some(value.clone()));
        }
        let (true, Some(source)) = (self.in_history, &history.0) else {
            return Ok(None);
        };
        let unreadable = |e: String| RuleError::History(format!("table {table}: {e}"));
        let key = serde_json::to_vec(key).map_err(|e| unreadable(e.to_string()))?;
        source
            .row(table, &key)
            .map_err(unreadable)?
            .map(|bytes| serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string())))
            .transpose()
    }

    /// The rows that pass `keep`, from the history and memory, in key order.
    fn select(
        &self,
        table: &'static str,
        history: &HistoryHandle,
        keep: &dyn Fn(&V) -> bool,
    ) -> Result<Vec<V>, RuleError> {
        let mut out: BTreeMap<K, V> = BTreeMap::new();
        if let (true, Some(source)) = (self.in_history, &history.0) {
            source
                .scan(table, &mut |key, value| {
                    let value: V = serde_json::from_slice(value).map_err(|e| e.to_string())?;
                    if keep(&value) {
                        out.insert(
                            serde_json::from_slice(key).map_err(|e| e.to_string())?,
                            value,
                        );
                    }
                    Ok(true)
                })
                .map_err(|e| RuleError::History(format!("table {table}: {e}")))?;
        }
        for (key, value) in &self.rows {
            if keep(value) {
                out.insert(key.clone(), value.clone());
            }
        }
        Ok(out.into_values().collect())
    }

    fn load(&mut self, key: &[u8], value: &[u8]) -> Result<(), serde_json::Error> {
        self.rows
            .insert(serde_json::from_slice(key)?, serde_json::from_slice(value)?);
        Ok(())
    }
}

macro_rules! tables {
    ($($field:ident : $key:ty => $value:ty),* $(,)?) => {
        /// The whole state of the market. See the module documentation.
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct State {
            $($field: Table<$key, $value>,)*
            history: HistoryHandle,
        }

        /// A point among the pending writes (see [`State::savepoint`]).
        #[derive(Clone, Copy, Debug)]
        pub struct Savepoint(Mark);

        #[derive(Clone, Copy, Debug)]
        struct Mark {
            $($field: usize,)*
        }

        impl State {
            /// The names of the state's tables, as [`StateChange::table`] gives them.
            pub const TABLES: &'static [&'static str] = &[$(stringify!($field)),*];

            /// A point among the pending writes to roll back to.
            pub fn savepoint(&self) -> Savepoint {
                Savepoint(self.mark())
            }

            /// Undoes the writes made since the savepoint.
            pub fn rollback_to(&mut self, savepoint: Savepoint) {
                self.rollback(savepoint.0);
            }

            fn mark(&self) -> Mark {
                Mark { $($field: self.$field.undo.len(),)* }
            }

            fn rollback(&mut self, mark: Mark) {
                $(self.$field.rollback_to(mark.$field);)*
            }

            /// The rows changed since the last [`State::settle`], with their new values.
            pub fn pending_changes(&self) -> Result<Vec<StateChange>, serde_json::Error> {
                let mut out = Vec::new();
                $(self.$field.changes(stringify!($field), &mut out)?;)*
                Ok(out)
            }

            /// Every row of every table, as [`State::pending_changes`] would give them had each
            /// been written since the last settle (a restore writes a whole state at once).
            pub fn all_rows(&self) -> Result<Vec<StateChange>, serde_json::Error> {
                let mut out = Vec::new();
                $(self.$field.all_rows(stringify!($field), &mut out)?;)*
                Ok(out)
            }

            /// Forgets what the writes since the last settle replaced: they are durable now.
            pub fn settle(&mut self) {
                $(self.$field.settle();)*
            }

            /// Keeps the history tables' rows in `history` from now on: rows already settled
            /// are dropped from memory (they must be durable in `history`), and rows settled later
            /// too. Reads of those tables then go to `history`.
            pub fn keep_history_in(&mut self, history: std::sync::Arc<dyn History>) {
                $(
                    if HISTORY_TABLES.contains(&stringify!($field)) {
                        let table = &mut self.$field;
                        table.in_history = true;
                        let pending: BTreeSet<_> = table.undo.iter().map(|(k, _)| k.clone()).collect();
                        table.rows.retain(|k, _| pending.contains(k));
                    }
                )*
                self.history = HistoryHandle(Some(history));
            }

            /// Whether table `name` is kept in a history rather than in memory.
            pub fn in_history(&self, name: &str) -> bool {
                match name {
                    $(stringify!($field) => self.$field.in_history,)*
                    _ => false,
                }
            }

            /// Undoes every write since the last settle.
            pub fn revert(&mut self) {
                $(self.$field.rollback_to(0);)*
            }

            /// Puts back one stored row (opening a store), as [`State::pending_changes`] gave it.
            pub fn load_row(&mut self, table: &str, key: &[u8], value: &[u8]) -> Result<(), LoadError> {
                let result = match table {
                    $(stringify!($field) => self.$field.load(key, value),)*
                    _ => return Err(LoadError { table: table.to_owned(), reason: "unknown table".to_owned() }),
                };
                result.map_err(|e| LoadError { table: table.to_owned(), reason: e.to_string() })
            }
        }
    };
}

tables! {
    entries: EntryId => EntryRecord,
    operator: () => ParticipantId,
    participants: ParticipantId => Participant,
    keys: [u8; 32] => ParticipantId,
    methodologies: MethodologyId => Methodology,
    projects: ProjectId => Project,
    reports: ReportId => Report,
    batches: BatchId => Batch,
    balances: (ParticipantId, BatchId) => Balance,
    prices: PriceId => Price,
    latest_prices: Basis => PriceId,
    trades: EntryId => TradeRecord,
    certificates: EntryId => Certificate,
    pledges: PledgeId => PledgeRecord,
    proceeds: (ProjectId, Currency) => Proceeds,
}

/// How far in the future of its acceptance an entry may say it was made (signers' clocks drift).
pub const MAX_CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

/// Most inputs a price may list.
pub const MAX_PRICE_INPUTS: usize = 32;

fn unknown(thing: Thing, id: &impl ToString) -> RuleError {
    RuleError::Unknown {
        thing,
        id: id.to_string(),
    }
}

fn exists(thing: Thing, id: &impl ToString) -> RuleError {
    RuleError::AlreadyExists {
        thing,
        id: id.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Applying entries
// ---------------------------------------------------------------------------------------------

impl State {
    /// An empty ledger's state: its first entry must register the operator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one entry. On success the state has changed (and the change is pending until
    /// [`State::settle`]); on error nothing has changed.
    pub fn apply(&mut self, ctx: &Context, body: &Body) -> Result<(), RuleError> {
        let mark = self.mark();
        let result = self.dispatch(ctx, body);
        if result.is_err() {
            self.rollback(mark);
        }
        debug_assert!(
            self.touched_invariants_hold(mark),
            "invariant broken by entry {}",
            body.id
        );
        result
    }

    fn dispatch(&mut self, ctx: &Context, body: &Body) -> Result<(), RuleError> {
        if body.created_at.instant() > ctx.accepted_at.instant() + MAX_CLOCK_SKEW {
            return Err(RuleError::CreatedInFuture {
                created_at: body.created_at.clone(),
                accepted_at: ctx.accepted_at.clone(),
            });
        }
        if let Some(first) = self.entries.lookup("entries", &body.id, &self.history)? {
            return Err(RuleError::EntryIdUsed {
                id: body.id.to_string(),
                seq: first.seq,
            });
        }
        let genesis = self.operator.get(&()).is_none();
        match (&body.kind, genesis) {
            (EntryKind::RegisterParticipant(r), true) => self.genesis(ctx, r)?,
            (_, true) => {
                return Err(RuleError::Genesis(
                    "the ledger's first entry must register its operator",
                ))
            }
            (EntryKind::RegisterParticipant(r), false) => self.register_participant(ctx, r)?,
            (EntryKind::RotateKey(r), _) => self.rotate_key(ctx, r)?,
            (EntryKind::RegisterMethodology(r), _) => self.register_methodology(ctx, r)?,
            (EntryKind::RegisterProject(r), _) => self.register_project(ctx, r)?,
            (EntryKind::RecordMonitoring(r), _) => self.record_monitoring(ctx, r)?,
            (EntryKind::IssueBatch(r), _) => self.issue_batch(ctx, r)?,
            (EntryKind::PublishPrice(r), _) => self.publish_price(ctx, r)?,
            (EntryKind::Trade(r), _) => self.record_trade(ctx, body, r)?,
            (EntryKind::Retire(r), _) => self.retire(ctx, body, r)?,
            (EntryKind::Pledge(r), _) => self.record_pledge(ctx, r)?,
            (EntryKind::Drawdown(r), _) => self.drawdown(ctx, r)?,
            (EntryKind::Repay(r), _) => self.repay(ctx, r)?,
            (EntryKind::ReleasePledge(r), _) => self.release_pledge(ctx, r)?,
            (EntryKind::EnforcePledge(r), _) => self.enforce_pledge(ctx, r)?,
            (EntryKind::Reversal(r), _) => self.reversal(ctx, r)?,
        }
        self.entries.put(
            body.id.clone(),
            EntryRecord {
                seq: ctx.seq,
                body_digest: ctx.body_digest,
            },
        );
        Ok(())
    }

    // --- signers and roles ---------------------------------------------------------------

    fn require_signers(
        ctx: &Context,
        entry_type: &'static str,
        parties: &[&ParticipantId],
        new_key: bool,
    ) -> Result<(), RuleError> {
        let expected: BTreeSet<ParticipantId> = parties.iter().map(|p| (*p).clone()).collect();
        if ctx.signers.current == expected && ctx.signers.new_key == new_key {
            return Ok(());
        }
        let mut wanted = Signers::of(parties.iter().copied());
        wanted.new_key = new_key;
        Err(RuleError::WrongSigners {
            entry_type,
            expected: wanted.describe(),
            found: ctx.signers.describe(),
        })
    }

    /// The one signer of an entry that any holder of `role` may sign.
    fn sole_signer_with(
        &self,
        ctx: &Context,
        entry_type: &'static str,
        role: Role,
        action: &'static str,
    ) -> Result<ParticipantId, RuleError> {
        let signer = match (ctx.signers.current.len(), ctx.signers.new_key) {
            (1, false) => ctx.signers.current.iter().next().cloned(),
            _ => None,
        };
        let signer = signer.ok_or_else(|| RuleError::WrongSigners {
            entry_type,
            expected: format!("one {role}"),
            found: ctx.signers.describe(),
        })?;
        self.require_role(&signer, role, action)?;
        Ok(signer)
    }

    fn participant_or_unknown(&self, id: &ParticipantId) -> Result<&Participant, RuleError> {
        self.participants
            .get(id)
            .ok_or_else(|| unknown(Thing::Participant, id))
    }

    fn require_role(
        &self,
        id: &ParticipantId,
        role: Role,
        action: &'static str,
    ) -> Result<(), RuleError> {
        if self.participant_or_unknown(id)?.has(role) {
            Ok(())
        } else {
            Err(RuleError::MissingRole {
                participant: id.to_string(),
                role,
                action,
            })
        }
    }

    fn operator_id(&self) -> Result<ParticipantId, RuleError> {
        self.operator.get(&()).cloned().ok_or(RuleError::Genesis(
            "the ledger's first entry must register its operator",
        ))
    }

    fn check_roles(roles: &[Role]) -> Result<BTreeSet<Role>, RuleError> {
        let set: BTreeSet<Role> = roles.iter().copied().collect();
        if set.is_empty() || set.len() != roles.len() {
            return Err(RuleError::BadRoles);
        }
        Ok(set)
    }

    fn check_key_free(&self, key: &PublicKey) -> Result<(), RuleError> {
        match self.keys.get(&key.to_bytes()) {
            Some(holder) => Err(RuleError::KeyInUse {
                holder: holder.to_string(),
            }),
            None => Ok(()),
        }
    }

    // --- participants and reference data -------------------------------------------------

    fn genesis(&mut self, ctx: &Context, r: &entry::RegisterParticipant) -> Result<(), RuleError> {
        let roles = Self::check_roles(&r.roles)?;
        if !roles.contains(&Role::Operator) {
            return Err(RuleError::Genesis(
                "the ledger's first entry must register its operator, with the operator role",
            ));
        }
        Self::require_signers(ctx, "register_participant", &[], true)?;
        self.operator.put((), r.participant.clone());
        self.add_participant(ctx, r, roles);
        Ok(())
    }

    fn register_participant(
        &mut self,
        ctx: &Context,
        r: &entry::RegisterParticipant,
    ) -> Result<(), RuleError> {
        let roles = Self::check_roles(&r.roles)?;
        if roles.contains(&Role::Operator) {
            return Err(RuleError::OperatorRoleReserved);
        }
        if self.participants.get(&r.participant).is_some() {
            return Err(exists(Thing::Participant, &r.participant));
        }
        self.check_key_free(&r.public_key)?;
        let operator = self.operator_id()?;
        Self::require_signers(ctx, "register_participant", &[&operator], true)?;
        self.add_participant(ctx, r, roles);
        Ok(())
    }

    fn add_participant(
        &mut self,
        ctx: &Context,
        r: &entry::RegisterParticipant,
        roles: BTreeSet<Role>,
    ) {
        self.keys
            .put(r.public_key.to_bytes(), r.participant.clone());
        self.participants.put(
            r.participant.clone(),
            Participant {
                id: r.participant.clone(),
                name: r.name.clone(),
                roles,
                public_key: r.public_key,
                registered_seq: ctx.seq,
                key_since_seq: ctx.seq,
                rotations: Vec::new(),
            },
        );
    }

    fn rotate_key(&mut self, ctx: &Context, r: &entry::RotateKey) -> Result<(), RuleError> {
        let mut participant = self.participant_or_unknown(&r.participant)?.clone();
        if participant.public_key == r.new_public_key {
            return Err(RuleError::KeyUnchanged(r.participant.to_string()));
        }
        self.check_key_free(&r.new_public_key)?;
        Self::require_signers(ctx, "rotate_key", &[&r.participant], true)?;
        participant.public_key = r.new_public_key;
        participant.key_since_seq = ctx.seq;
        participant.rotations.push(ctx.seq);
        self.keys
            .put(r.new_public_key.to_bytes(), r.participant.clone());
        self.participants.put(r.participant.clone(), participant);
        Ok(())
    }

    fn register_methodology(
        &mut self,
        ctx: &Context,
        r: &entry::RegisterMethodology,
    ) -> Result<(), RuleError> {
        Self::require_signers(ctx, "register_methodology", &[&self.operator_id()?], false)?;
        if self.methodologies.get(&r.methodology).is_some() {
            return Err(exists(Thing::Methodology, &r.methodology));
        }
        self.methodologies.put(
            r.methodology.clone(),
            Methodology {
                id: r.methodology.clone(),
                name: r.name.clone(),
                version: r.version.clone(),
                buffer_rate: r.buffer_rate,
            },
        );
        Ok(())
    }

    fn register_project(
        &mut self,
        ctx: &Context,
        r: &entry::RegisterProject,
    ) -> Result<(), RuleError> {
        self.require_role(&r.proponent, Role::Proponent, "manage a project")?;
        Self::require_signers(
            ctx,
            "register_project",
            &[&self.operator_id()?, &r.proponent],
            false,
        )?;
        if self.methodologies.get(&r.methodology).is_none() {
            return Err(unknown(Thing::Methodology, &r.methodology));
        }
        if self.projects.get(&r.project).is_some() {
            return Err(exists(Thing::Project, &r.project));
        }
        self.projects.put(
            r.project.clone(),
            Project {
                id: r.project.clone(),
                name: r.name.clone(),
                proponent: r.proponent.clone(),
                methodology: r.methodology.clone(),
                region: r.region.clone(),
                area_ha: r.area_ha,
                registered_seq: ctx.seq,
            },
        );
        Ok(())
    }

    fn record_monitoring(
        &mut self,
        ctx: &Context,
        r: &entry::RecordMonitoring,
    ) -> Result<(), RuleError> {
        let verifier = self.sole_signer_with(
            ctx,
            "record_monitoring",
            Role::Verifier,
            "verify a monitoring report",
        )?;
        if self.projects.get(&r.project).is_none() {
            return Err(unknown(Thing::Project, &r.project));
        }
        if self.reports.get(&r.report).is_some() {
            return Err(exists(Thing::Report, &r.report));
        }
        if r.period_end < r.period_start {
            return Err(RuleError::PeriodReversed {
                start: r.period_start.to_string(),
                end: r.period_end.to_string(),
            });
        }
        let overlap = self.reports.rows.values().find(|other| {
            other.project == r.project
                && other.period_start <= r.period_end
                && r.period_start <= other.period_end
        });
        if let Some(other) = overlap {
            return Err(RuleError::PeriodOverlap {
                project: r.project.to_string(),
                other: other.id.to_string(),
                other_start: other.period_start.to_string(),
                other_end: other.period_end.to_string(),
            });
        }
        self.reports.put(
            r.report.clone(),
            Report {
                id: r.report.clone(),
                project: r.project.clone(),
                period_start: r.period_start,
                period_end: r.period_end,
                verified: r.quantity,
                issued: zero_tonnes(),
                evidence_sha256: r.evidence_sha256,
                verifier,
                seq: ctx.seq,
            },
        );
        Ok(())
    }

    fn issue_batch(&mut self, ctx: &Context, r: &entry::IssueBatch) -> Result<(), RuleError> {
        Self::require_signers(ctx, "issue_batch", &[&self.operator_id()?], false)?;
        if self.batches.get(&r.batch).is_some() {
            return Err(exists(Thing::Batch, &r.batch));
        }
        let mut report = self
            .reports
            .get(&r.report)
            .cloned()
            .ok_or_else(|| unknown(Thing::Report, &r.report))?;
        let (start_year, end_year) = (report.period_start.year(), report.period_end.year());
        if !(start_year..=end_year).contains(&i32::from(r.vintage)) {
            return Err(RuleError::VintageOutsidePeriod {
                vintage: r.vintage,
                report: r.report.to_string(),
                start_year,
                end_year,
            });
        }
        let quantity = r.quantity.tonnes();
        if report.issued + quantity > report.verified.value() {
            return Err(RuleError::ExceedsVerified {
                report: r.report.to_string(),
                verified: report.verified.value(),
                issued: report.issued,
                requested: quantity,
            });
        }
        let project = self
            .projects
            .get(&report.project)
            .cloned()
            .ok_or_else(|| unknown(Thing::Project, &report.project))?;
        let rate = self
            .methodologies
            .get(&project.methodology)
            .map(|m| m.buffer_rate)
            .ok_or_else(|| unknown(Thing::Methodology, &project.methodology))?;
        let buffer = round_tonnes(quantity * rate.value());
        let to_proponent = quantity - buffer;

        report.issued = tonnes(report.issued + quantity);
        self.reports.put(r.report.clone(), report);
        self.credit(&project.proponent, &r.batch, to_proponent);
        self.batches.put(
            r.batch.clone(),
            Batch {
                id: r.batch.clone(),
                report: r.report.clone(),
                project: project.id.clone(),
                vintage: r.vintage,
                issued: quantity,
                buffer_initial: buffer,
                buffer,
                retired: zero_tonnes(),
                reversed: zero_tonnes(),
                available: to_proponent,
                pledged: zero_tonnes(),
                seq: ctx.seq,
            },
        );
        Ok(())
    }

    fn publish_price(&mut self, ctx: &Context, r: &entry::PublishPrice) -> Result<(), RuleError> {
        let publisher = self.sole_signer_with(
            ctx,
            "publish_price",
            Role::PricingAuthority,
            "publish reference prices",
        )?;
        if self.prices.get(&r.price).is_some() {
            return Err(exists(Thing::Price, &r.price));
        }
        let inputs = r.inputs.clone().unwrap_or_default();
        let ok_text = |t: &str, max: usize| {
            let n = t.chars().count();
            n > 0 && n <= max && !t.chars().any(char::is_control)
        };
        if inputs.len() > MAX_PRICE_INPUTS
            || !inputs
                .iter()
                .all(|(k, v)| ok_text(k, 64) && ok_text(v, 256))
        {
            return Err(RuleError::BadPriceInputs {
                max: MAX_PRICE_INPUTS,
            });
        }
        let newer = match self.latest_prices.get(&r.basis) {
            Some(id) => self
                .prices
                .get(id)
                .is_none_or(|latest| r.effective_at >= latest.effective_at),
            None => true,
        };
        if newer {
            self.latest_prices.put(r.basis.clone(), r.price.clone());
        }
        self.prices.put(
            r.price.clone(),
            Price {
                id: r.price.clone(),
                basis: r.basis.clone(),
                unit_price: r.unit_price,
                currency: r.currency.clone(),
                effective_at: r.effective_at.clone(),
                inputs,
                publisher,
                seq: ctx.seq,
            },
        );
        Ok(())
    }

    // --- trading -------------------------------------------------------------------------

    fn record_trade(
        &mut self,
        ctx: &Context,
        body: &Body,
        r: &entry::Trade,
    ) -> Result<(), RuleError> {
        if r.seller == r.buyer {
            return Err(RuleError::SelfTrade(r.seller.to_string()));
        }
        self.participant_or_unknown(&r.seller)?;
        self.participant_or_unknown(&r.buyer)?;
        Self::require_signers(ctx, "trade", &[&r.seller, &r.buyer], false)?;
        let batch = self
            .batches
            .get(&r.batch)
            .ok_or_else(|| unknown(Thing::Batch, &r.batch))?;
        let project = batch.project.clone();
        match r.kind {
            TradeKind::Acquisition => {
                self.require_role(&r.buyer, Role::Platform, "acquire sink (收储)")?;
                let proponent = self.projects.get(&project).map(|p| &p.proponent);
                if proponent != Some(&r.seller) {
                    return Err(RuleError::TradeTerms(format!(
                        "in an acquisition the seller must be the proponent of project {project}, which batch {} comes from; {} is not",
                        r.batch, r.seller
                    )));
                }
            }
            TradeKind::EcoCompensation => {
                self.require_role(
                    &r.buyer,
                    Role::Enterprise,
                    "pay ecological compensation (生态补偿)",
                )?;
            }
            TradeKind::Transfer => {}
        }
        let amount = self.check_consideration(r)?;
        self.check_available(&r.seller, &r.batch, r.quantity, "trade")?;

        let quantity = r.quantity.tonnes();
        self.debit(&r.seller, &r.batch, quantity);
        self.credit(&r.buyer, &r.batch, quantity);
        if let (Some(amount), Some(currency)) = (amount, &r.currency) {
            let key = (project.clone(), currency.clone());
            let mut proceeds = self.proceeds.get(&key).cloned().unwrap_or(Proceeds {
                project: project.clone(),
                currency: currency.clone(),
                acquisition: zero_money(),
                eco_compensation: zero_money(),
                quantity: zero_tonnes(),
                trades: 0,
            });
            match r.kind {
                TradeKind::Acquisition => {
                    proceeds.acquisition = money(proceeds.acquisition + amount)
                }
                _ => proceeds.eco_compensation = money(proceeds.eco_compensation + amount),
            }
            proceeds.quantity = tonnes(proceeds.quantity + quantity);
            proceeds.trades += 1;
            self.proceeds.put(key, proceeds);
        }
        self.trades.put(
            body.id.clone(),
            TradeRecord {
                id: body.id.clone(),
                seq: ctx.seq,
                kind: r.kind,
                seller: r.seller.clone(),
                buyer: r.buyer.clone(),
                batch: r.batch.clone(),
                project,
                quantity: r.quantity,
                unit_price: r.unit_price,
                currency: r.currency.clone(),
                amount,
                price_ref: r.price_ref.clone(),
                created_at: body.created_at.clone(),
            },
        );
        Ok(())
    }

    /// Checks a trade's price, currency and amount; returns the amount of a priced trade.
    fn check_consideration(&self, r: &entry::Trade) -> Result<Option<Decimal>, RuleError> {
        if !r.kind.is_priced() {
            let priced = r.unit_price.is_some()
                || r.currency.is_some()
                || r.amount.is_some()
                || r.price_ref.is_some();
            if priced {
                return Err(RuleError::TradeTerms(
                    "a transfer records no consideration: leave out unit_price, currency, amount and price_ref, or record it as an acquisition or eco-compensation".to_owned(),
                ));
            }
            return Ok(None);
        }
        let (Some(unit_price), Some(currency), Some(stated)) =
            (r.unit_price, r.currency.as_ref(), r.amount)
        else {
            return Err(RuleError::TradeTerms(format!(
                "an {} trade must state unit_price, currency and amount",
                r.kind
            )));
        };
        if let Some(price_ref) = &r.price_ref {
            let price = self
                .prices
                .get(price_ref)
                .ok_or_else(|| unknown(Thing::Price, price_ref))?;
            if price.currency != *currency {
                return Err(RuleError::CurrencyMismatch {
                    what: "trade",
                    expected: price.currency.clone(),
                    found: currency.clone(),
                });
            }
        }
        let computed = trade_amount(r.quantity, unit_price);
        if computed.is_zero() {
            return Err(RuleError::AmountRoundsToZero {
                quantity: r.quantity.tonnes(),
                unit_price: unit_price.value(),
            });
        }
        if computed != stated.value() {
            return Err(RuleError::AmountMismatch {
                stated: stated.value(),
                quantity: r.quantity.tonnes(),
                unit_price: unit_price.value(),
                computed,
            });
        }
        Ok(Some(computed))
    }

    fn check_available(
        &self,
        holder: &ParticipantId,
        batch: &BatchId,
        quantity: Quantity,
        action: &'static str,
    ) -> Result<(), RuleError> {
        let available = self.balance(holder, batch).available;
        if available < quantity.value() {
            return Err(RuleError::InsufficientSink {
                holder: holder.to_string(),
                batch: batch.to_string(),
                available,
                needed: quantity.value(),
                action,
            });
        }
        Ok(())
    }

    /// Moves available tonnes of a batch: positive to a holder, negative from it.
    fn adjust(
        &mut self,
        holder: &ParticipantId,
        batch: &BatchId,
        available: Decimal,
        pledged: Decimal,
    ) {
        let key = (holder.clone(), batch.clone());
        let mut balance = self.balances.get(&key).copied().unwrap_or_default();
        balance.available = tonnes(balance.available + available);
        balance.pledged = tonnes(balance.pledged + pledged);
        self.balances.put(key, balance);
        if let Some(mut totals) = self.batches.get(batch).cloned() {
            totals.available = tonnes(totals.available + available);
            totals.pledged = tonnes(totals.pledged + pledged);
            self.batches.put(batch.clone(), totals);
        }
    }

    fn credit(&mut self, holder: &ParticipantId, batch: &BatchId, quantity: Decimal) {
        self.adjust(holder, batch, quantity, Decimal::ZERO);
    }

    fn debit(&mut self, holder: &ParticipantId, batch: &BatchId, quantity: Decimal) {
        self.adjust(holder, batch, -quantity, Decimal::ZERO);
    }

    // --- drawdown: retirement and pledges ------------------------------------------------

    fn retire(&mut self, ctx: &Context, body: &Body, r: &entry::Retire) -> Result<(), RuleError> {
        self.participant_or_unknown(&r.holder)?;
        Self::require_signers(ctx, "retire", &[&r.holder], false)?;
        if self.batches.get(&r.batch).is_none() {
            return Err(unknown(Thing::Batch, &r.batch));
        }
        self.check_available(&r.holder, &r.batch, r.quantity, "retirement")?;
        let quantity = r.quantity.tonnes();
        self.debit(&r.holder, &r.batch, quantity);
        let Some(mut batch) = self.batches.get(&r.batch).cloned() else {
            return Err(unknown(Thing::Batch, &r.batch));
        };
        batch.retired = tonnes(batch.retired + quantity);
        self.batches.put(r.batch.clone(), batch.clone());
        self.certificates.put(
            body.id.clone(),
            Certificate {
                id: body.id.clone(),
                seq: ctx.seq,
                holder: r.holder.clone(),
                batch: r.batch.clone(),
                project: batch.project,
                vintage: batch.vintage,
                quantity: r.quantity,
                beneficiary: r.beneficiary.clone(),
                purpose: r.purpose.clone(),
                retired_at: ctx.accepted_at.clone(),
            },
        );
        Ok(())
    }

    fn record_pledge(&mut self, ctx: &Context, r: &entry::Pledge) -> Result<(), RuleError> {
        if r.pledgor == r.bank {
            return Err(RuleError::SelfTrade(r.pledgor.to_string()));
        }
        self.participant_or_unknown(&r.pledgor)?;
        self.require_role(&r.bank, Role::Bank, "take sink in pledge")?;
        Self::require_signers(ctx, "pledge", &[&r.pledgor, &r.bank], false)?;
        if self.pledges.get(&r.pledge).is_some() {
            return Err(exists(Thing::Pledge, &r.pledge));
        }
        if self.batches.get(&r.batch).is_none() {
            return Err(unknown(Thing::Batch, &r.batch));
        }
        let price = self
            .prices
            .get(&r.price_ref)
            .ok_or_else(|| unknown(Thing::Price, &r.price_ref))?;
        if price.currency != r.currency {
            return Err(RuleError::CurrencyMismatch {
                what: "pledge",
                expected: price.currency.clone(),
                found: r.currency.clone(),
            });
        }
        if price.effective_at > ctx.accepted_at {
            return Err(RuleError::PriceNotYetEffective {
                price: price.id.to_string(),
                effective_at: price.effective_at.clone(),
                accepted_at: ctx.accepted_at.clone(),
            });
        }
        let unit_price = price.unit_price;
        let computed = facility_limit(r.quantity, unit_price, r.haircut);
        if computed != r.limit.value() {
            return Err(RuleError::LimitMismatch {
                stated: r.limit.value(),
                quantity: r.quantity.tonnes(),
                unit_price: unit_price.value(),
                haircut: r.haircut.value(),
                computed,
            });
        }
        self.check_available(&r.pledgor, &r.batch, r.quantity, "pledge")?;
        let quantity = r.quantity.tonnes();
        self.adjust(&r.pledgor, &r.batch, -quantity, quantity);
        self.pledges.put(
            r.pledge.clone(),
            PledgeRecord {
                id: r.pledge.clone(),
                seq: ctx.seq,
                pledgor: r.pledgor.clone(),
                bank: r.bank.clone(),
                batch: r.batch.clone(),
                quantity: r.quantity,
                price_ref: r.price_ref.clone(),
                unit_price,
                haircut: r.haircut,
                limit: computed,
                currency: r.currency.clone(),
                maturity: r.maturity,
                outstanding: zero_money(),
                drawn: zero_money(),
                repaid: zero_money(),
                status: PledgeStatus::Active,
                closed_seq: None,
            },
        );
        Ok(())
    }

    fn active_pledge(
        &self,
        id: &PledgeId,
        action: &'static str,
    ) -> Result<PledgeRecord, RuleError> {
        let pledge = self
            .pledges
            .get(id)
            .ok_or_else(|| unknown(Thing::Pledge, id))?;
        if pledge.status != PledgeStatus::Active {
            return Err(RuleError::PledgeClosed {
                pledge: id.to_string(),
                status: pledge.status.word(),
                action,
            });
        }
        Ok(pledge.clone())
    }

    fn drawdown(&mut self, ctx: &Context, r: &entry::LoanMovement) -> Result<(), RuleError> {
        let mut pledge = self.active_pledge(&r.pledge, "drawn against")?;
        Self::require_signers(ctx, "drawdown", &[&pledge.bank, &pledge.pledgor], false)?;
        let amount = r.amount.money();
        if pledge.outstanding + amount > pledge.limit {
            return Err(RuleError::LimitExceeded {
                pledge: r.pledge.to_string(),
                limit: pledge.limit,
                outstanding: pledge.outstanding,
                requested: amount,
            });
        }
        pledge.outstanding = money(pledge.outstanding + amount);
        pledge.drawn = money(pledge.drawn + amount);
        self.pledges.put(r.pledge.clone(), pledge);
        Ok(())
    }

    fn repay(&mut self, ctx: &Context, r: &entry::LoanMovement) -> Result<(), RuleError> {
        let mut pledge = self.active_pledge(&r.pledge, "repaid")?;
        Self::require_signers(ctx, "repay", &[&pledge.bank], false)?;
        let amount = r.amount.money();
        if amount > pledge.outstanding {
            return Err(RuleError::RepaymentExceedsOutstanding {
                pledge: r.pledge.to_string(),
                outstanding: pledge.outstanding,
                requested: amount,
            });
        }
        pledge.outstanding = money(pledge.outstanding - amount);
        pledge.repaid = money(pledge.repaid + amount);
        self.pledges.put(r.pledge.clone(), pledge);
        Ok(())
    }

    fn release_pledge(&mut self, ctx: &Context, r: &entry::PledgeAction) -> Result<(), RuleError> {
        let mut pledge = self.active_pledge(&r.pledge, "released")?;
        Self::require_signers(ctx, "release_pledge", &[&pledge.bank], false)?;
        if !pledge.outstanding.is_zero() {
            return Err(RuleError::PledgeOutstanding {
                pledge: r.pledge.to_string(),
                outstanding: pledge.outstanding,
            });
        }
        let quantity = pledge.quantity.tonnes();
        self.adjust(&pledge.pledgor, &pledge.batch, quantity, -quantity);
        pledge.status = PledgeStatus::Released;
        pledge.closed_seq = Some(ctx.seq);
        self.pledges.put(r.pledge.clone(), pledge);
        Ok(())
    }

    fn enforce_pledge(&mut self, ctx: &Context, r: &entry::PledgeAction) -> Result<(), RuleError> {
        let mut pledge = self.active_pledge(&r.pledge, "enforced")?;
        Self::require_signers(ctx, "enforce_pledge", &[&pledge.bank], false)?;
        if pledge.outstanding.is_zero() {
            return Err(RuleError::NothingOutstanding(r.pledge.to_string()));
        }
        let quantity = pledge.quantity.tonnes();
        self.adjust(&pledge.pledgor, &pledge.batch, Decimal::ZERO, -quantity);
        self.adjust(&pledge.bank, &pledge.batch, quantity, Decimal::ZERO);
        pledge.status = PledgeStatus::Enforced;
        pledge.closed_seq = Some(ctx.seq);
        self.pledges.put(r.pledge.clone(), pledge);
        Ok(())
    }

    fn reversal(&mut self, ctx: &Context, r: &entry::Reversal) -> Result<(), RuleError> {
        let operator = self.operator_id()?;
        let verifier = ctx
            .signers
            .current
            .iter()
            .find(|s| **s != operator)
            .cloned();
        let signed_right = ctx.signers.current.len() == 2
            && ctx.signers.current.contains(&operator)
            && !ctx.signers.new_key;
        let Some(verifier) = verifier.filter(|_| signed_right) else {
            return Err(RuleError::WrongSigners {
                entry_type: "reversal",
                expected: format!("the operator ({operator}) and one verifier"),
                found: ctx.signers.describe(),
            });
        };
        self.require_role(&verifier, Role::Verifier, "co-sign a reversal")?;
        let mut batch = self
            .batches
            .get(&r.batch)
            .cloned()
            .ok_or_else(|| unknown(Thing::Batch, &r.batch))?;
        let quantity = r.quantity.tonnes();
        if quantity > batch.buffer {
            return Err(RuleError::InsufficientBuffer {
                batch: r.batch.to_string(),
                buffer: batch.buffer,
                requested: quantity,
            });
        }
        batch.buffer = tonnes(batch.buffer - quantity);
        batch.reversed = tonnes(batch.reversed + quantity);
        self.batches.put(r.batch.clone(), batch);
        Ok(())
    }

    // --- invariants ----------------------------------------------------------------------

    /// Checks the invariants on the rows written since `mark` (cheap: used after every entry in
    /// debug builds).
    fn touched_invariants_hold(&self, mark: Mark) -> bool {
        let batches_ok = self.batches.undo[mark.batches..]
            .iter()
            .filter_map(|(id, _)| self.batches.get(id))
            .all(Batch::balanced);
        let balances_ok = self.balances.undo[mark.balances..]
            .iter()
            .filter_map(|(key, _)| self.balances.get(key))
            .all(|b| b.available >= Decimal::ZERO && b.pledged >= Decimal::ZERO);
        let pledges_ok = self.pledges.undo[mark.pledges..]
            .iter()
            .filter_map(|(id, _)| self.pledges.get(id))
            .all(|p| p.outstanding >= Decimal::ZERO && p.outstanding <= p.limit);
        batches_ok && balances_ok && pledges_ok
    }

    /// Checks every invariant of the market over the whole state; returns the first broken one
    /// in words. Runs in time proportional to the state.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut held: BTreeMap<&BatchId, Balance> = BTreeMap::new();
        for ((holder, batch), balance) in &self.balances.rows {
            if balance.available < Decimal::ZERO || balance.pledged < Decimal::ZERO {
                return Err(format!("{holder} has a negative balance of batch {batch}"));
            }
            let sum = held.entry(batch).or_default();
            sum.available += balance.available;
            sum.pledged += balance.pledged;
        }
        let mut locked: BTreeMap<(&ParticipantId, &BatchId), Decimal> = BTreeMap::new();
        for pledge in self.pledges.rows.values() {
            if pledge.outstanding < Decimal::ZERO || pledge.outstanding > pledge.limit {
                return Err(format!("pledge {} is outside its limit", pledge.id));
            }
            if pledge.status == PledgeStatus::Active {
                *locked.entry((&pledge.pledgor, &pledge.batch)).or_default() +=
                    pledge.quantity.tonnes();
            }
        }
        for ((holder, batch), balance) in &self.balances.rows {
            let expected = locked.remove(&(holder, batch)).unwrap_or_default();
            if balance.pledged != expected {
                return Err(format!(
                    "{holder} has {} of batch {batch} pledged but its active pledges lock {expected}",
                    balance.pledged
                ));
            }
        }
        if let Some(((holder, batch), _)) = locked.into_iter().next() {
            return Err(format!(
                "{holder} has active pledges of batch {batch} but no balance"
            ));
        }
        for batch in self.batches.rows.values() {
            let sum = held.remove(&batch.id).unwrap_or_default();
            if !batch.balanced() || sum.available != batch.available || sum.pledged != batch.pledged
            {
                return Err(format!("batch {} does not add up", batch.id));
            }
        }
        if let Some(batch) = held.keys().next() {
            return Err(format!("balances of batch {batch}, which was never issued"));
        }
        for report in self.reports.rows.values() {
            if report.issued > report.verified.value() {
                return Err(format!("report {} is over-issued", report.id));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

impl State {
    /// The ledger's operator, once the first entry is in.
    pub fn operator(&self) -> Option<&ParticipantId> {
        self.operator.get(&())
    }

    /// Where an entry id was used.
    pub fn entry(&self, id: &EntryId) -> Result<Option<EntryRecord>, RuleError> {
        self.entries.lookup("entries", id, &self.history)
    }

    /// A participant.
    pub fn participant(&self, id: &ParticipantId) -> Option<&Participant> {
        self.participants.get(id)
    }

    /// All participants, by id.
    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.participants.rows.values()
    }

    /// A methodology.
    pub fn methodology(&self, id: &MethodologyId) -> Option<&Methodology> {
        self.methodologies.get(id)
    }

    /// All methodologies, by id.
    pub fn methodologies(&self) -> impl Iterator<Item = &Methodology> {
        self.methodologies.rows.values()
    }

    /// A project.
    pub fn project(&self, id: &ProjectId) -> Option<&Project> {
        self.projects.get(id)
    }

    /// All projects, by id.
    pub fn projects(&self) -> impl Iterator<Item = &Project> {
        self.projects.rows.values()
    }

    /// A monitoring report, with verified and issued quantities.
    pub fn report(&self, id: &ReportId) -> Option<&Report> {
        self.reports.get(id)
    }

    /// All monitoring reports, by id.
    pub fn reports(&self) -> impl Iterator<Item = &Report> {
        self.reports.rows.values()
    }

    /// A batch.
    pub fn batch(&self, id: &BatchId) -> Option<&Batch> {
        self.batches.get(id)
    }

    /// All batches, by id.
    pub fn batches(&self) -> impl Iterator<Item = &Batch> {
        self.batches.rows.values()
    }

    /// What a holder has of a batch (zero if nothing).
    pub fn balance(&self, holder: &ParticipantId, batch: &BatchId) -> Balance {
        self.balances
            .get(&(holder.clone(), batch.clone()))
            .copied()
            .unwrap_or_default()
    }

    /// Everything a holder has, by batch (batches it no longer holds included, at zero).
    pub fn balances_of<'a>(
        &'a self,
        holder: &'a ParticipantId,
    ) -> impl Iterator<Item = (&'a BatchId, &'a Balance)> + 'a {
        self.balances
            .rows
            .range((holder.clone(), BatchId::lowest())..)
            .take_while(move |((h, _), _)| h == holder)
            .map(|((_, batch), balance)| (batch, balance))
    }

    /// A reference price.
    pub fn price(&self, id: &PriceId) -> Option<&Price> {
        self.prices.get(id)
    }

    /// The latest price of each basis (by effective time).
    pub fn latest_prices(&self) -> impl Iterator<Item = &Price> {
        self.latest_prices
            .rows
            .values()
            .filter_map(|id| self.prices.get(id))
    }

    /// The latest price of one basis.
    pub fn latest_price(&self, basis: &Basis) -> Option<&Price> {
        self.latest_prices
            .get(basis)
            .and_then(|id| self.prices.get(id))
    }

    /// Price history, oldest first by effective time, of one basis or all.
    pub fn price_history(&self, basis: Option<&Basis>) -> Vec<&Price> {
        let mut prices: Vec<&Price> = self
            .prices
            .rows
            .values()
            .filter(|p| basis.is_none_or(|b| *b == p.basis))
            .collect();
        prices.sort_by(|a, b| a.effective_at.cmp(&b.effective_at).then(a.seq.cmp(&b.seq)));
        prices
    }

    /// A trade.
    pub fn trade(&self, id: &EntryId) -> Result<Option<TradeRecord>, RuleError> {
        self.trades.lookup("trades", id, &self.history)
    }

    /// Trades matching the filter, in ledger order.
    pub fn trades(&self, filter: &TradeFilter) -> Result<Vec<TradeRecord>, RuleError> {
        let mut trades = self
            .trades
            .select("trades", &self.history, &|t| filter.matches(t))?;
        trades.sort_by_key(|t| t.seq);
        Ok(trades)
    }

    /// A retirement certificate.
    pub fn certificate(&self, id: &EntryId) -> Result<Option<Certificate>, RuleError> {
        self.certificates.lookup("certificates", id, &self.history)
    }

    /// Retirement certificates, in ledger order, of one holder or all.
    pub fn certificates(
        &self,
        holder: Option<&ParticipantId>,
    ) -> Result<Vec<Certificate>, RuleError> {
        let mut certificates = self
            .certificates
            .select("certificates", &self.history, &|c| {
                holder.is_none_or(|h| *h == c.holder)
            })?;
        certificates.sort_by_key(|c| c.seq);
        Ok(certificates)
    }

    /// A pledge.
    pub fn pledge(&self, id: &PledgeId) -> Option<&PledgeRecord> {
        self.pledges.get(id)
    }

    /// All pledges, by id.
    pub fn pledges(&self) -> impl Iterator<Item = &PledgeRecord> {
        self.pledges.rows.values()
    }

    /// A pledge's collateral valued at a unit price.
    pub fn coverage(pledge: &PledgeRecord, unit_price: UnitPrice) -> Coverage {
        let collateral_value =
            crate::num::round_money(pledge.quantity.tonnes() * unit_price.value());
        let coverage_ratio = (!pledge.outstanding.is_zero()).then(|| {
            (collateral_value / pledge.outstanding)
                .round_dp_with_strategy(4, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        });
        Coverage {
            unit_price,
            collateral_value,
            outstanding: pledge.outstanding,
            limit: pledge.limit,
            coverage_ratio,
        }
    }

    /// What each project has raised for its restoration, by project and currency.
    pub fn proceeds(&self) -> impl Iterator<Item = &Proceeds> {
        self.proceeds.rows.values()
    }

    /// What one project has raised, by currency.
    pub fn proceeds_of<'a>(&'a self, project: &'a ProjectId) -> impl Iterator<Item = &'a Proceeds> {
        self.proceeds
            .rows
            .values()
            .filter(move |p| p.project == *project)
    }
}
