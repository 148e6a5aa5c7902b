//! The market as a deterministic state machine.
//!
//! [`State::apply`] takes an entry, the context the sequencer gives it (its sequence number, when
//! it was accepted, and which participants' signatures were already verified) and either changes
//! the state or returns a [`RuleError`] and changes nothing. It is a dispatcher: each entry type's
//! rule is a small function in `state/rules/`, in a file named after the part of the PTD loop it keeps —
//!
//! ```text
//!  participants    register_participant, rotate_key
//!  issuance        register_methodology, register_project, record_monitoring, issue_batch, reversal
//!  pricing (P)     publish_price
//!  trading (T)     trade: acquisition 收储, eco-compensation 生态补偿, transfer
//!  retirement (D)  retire
//!  pledges (D)     pledge, drawdown, repay, release_pledge, enforce_pledge
//! ```
//!
//! and each rule first checks everything, then writes. After every entry the invariants are
//! checked on the rows it touched, in every build: a ledger that computed a wrong balance stops.
//!
//! The state is a set of tables ([`table`]). Every write keeps what it replaced, so that a group of
//! entries can be undone as a whole ([`State::revert`]) and the rows changed since the last
//! durable write can be handed to storage ([`State::pending_changes`], then [`State::settle`]).
//! The records in the tables are in [`records`]; the queries in [`queries`].

use std::collections::BTreeSet;

use crate::entry::{Body, EntryKind, TradeKind};
use crate::error::RuleError;
use crate::ids::{
    BatchId, EntryId, MethodologyId, ParticipantId, PledgeId, PriceId, ProjectId, ReportId,
    Timestamp,
};
use crate::num::Currency;
use crate::store::StoreError;

pub mod commitment;
pub mod queries;
pub mod records;
mod rules;
pub mod table;

pub use commitment::{
    verify_proved_row, verify_row_proof, ProvedRow, RowProof, RowProofError, StateCommitment,
    StateRow,
};
pub use queries::{
    certificate_page, trade_page, CertificateFilter, HistoryPage, PageRequest, TradeFilter,
};
pub use records::{
    Balance, Batch, Certificate, Coverage, EntryRecord, Methodology, Participant, PledgeRecord,
    PledgeStatus, Price, Proceeds, Project, Report, TradeRecord,
};
pub use table::{History, HistoryVisitor, LoadError, SeqKey, StateChange};

use table::{tables, HistoryHandle, Table};

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

/// Why [`State::apply`] did not apply an entry. Either way, nothing changed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The entry breaks a rule of the market.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// The ledger's history could not be read from its store.
    #[error("the ledger's history could not be read ({0}); nothing was changed")]
    Store(#[from] StoreError),
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
    trades: SeqKey => TradeRecord,
    trades_by_party: (ParticipantId, SeqKey) => (),
    trades_by_batch: (BatchId, SeqKey) => (),
    trades_by_kind: (TradeKind, SeqKey) => (),
    certificates: SeqKey => Certificate,
    certificates_by_holder: (ParticipantId, SeqKey) => (),
    pledges: PledgeId => PledgeRecord,
    proceeds: (ProjectId, Currency) => Proceeds,
}

/// The tables whose rows a [`History`] keeps: one row (or a few index rows) per entry, read back
/// from the store when asked for, and paged by key range.
pub const HISTORY_TABLES: &[&str] = &[
    "entries",
    "trades",
    "trades_by_party",
    "trades_by_batch",
    "trades_by_kind",
    "certificates",
    "certificates_by_holder",
];

/// How far in the future of its acceptance an entry may say it was made (signers' clocks drift).
pub const MAX_CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

/// Most inputs a price may list.
pub const MAX_PRICE_INPUTS: usize = 32;

impl State {
    /// An empty ledger's state: its first entry must register the operator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one entry. On success the state has changed (and the change is pending until
    /// [`State::settle`]); on error nothing has changed.
    ///
    /// # Panics
    ///
    /// If the entry leaves a touched row breaking an invariant of the market (a programming
    /// error in a rule): the ledger stops rather than go on with a wrong balance.
    pub fn apply(&mut self, ctx: &Context, body: &Body) -> Result<(), ApplyError> {
        let mark = self.mark();
        let result = self.dispatch(ctx, body);
        if result.is_err() {
            self.rollback(mark);
        }
        if let Err(broken) = self.touched_invariants(mark) {
            self.rollback(mark);
            panic!(
                "entry {} broke an invariant of the market: {broken}",
                body.id
            );
        }
        result
    }

    fn dispatch(&mut self, ctx: &Context, body: &Body) -> Result<(), ApplyError> {
        if body.created_at.instant() > ctx.accepted_at.instant() + MAX_CLOCK_SKEW {
            return Err(RuleError::CreatedInFuture {
                created_at: body.created_at.clone(),
                accepted_at: ctx.accepted_at.clone(),
            }
            .into());
        }
        // The entry's own record, found at its own position, is itself and not a conflict: an
        // instance catching up on a shared store finds the rows another instance wrote for it.
        if let Some(first) = self
            .entry(&body.id)?
            .filter(|first| first.seq != ctx.seq || first.body_digest != ctx.body_digest)
        {
            return Err(RuleError::EntryIdUsed {
                id: body.id.to_string(),
                seq: first.seq,
            }
            .into());
        }
        let genesis = self.operator.get(&()).is_none();
        match (&body.kind, genesis) {
            (EntryKind::RegisterParticipant(r), true) => self.genesis(ctx, r)?,
            (_, true) => {
                return Err(RuleError::Genesis(
                    "the ledger's first entry must register its operator",
                )
                .into())
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

    /// Checks the invariants on the rows written since `mark`: cheap, so it runs after every
    /// entry in every build. Returns the first broken one in words.
    fn touched_invariants(&self, mark: Mark) -> Result<(), String> {
        if let Some(batch) = self
            .batches
            .touched_since(mark.batches)
            .find(|b| !b.balanced())
        {
            return Err(format!(
                "batch {} does not add up: issued {} ≠ available {} + pledged {} + buffer {} + retired {} + reversed {}",
                batch.id, batch.issued, batch.available, batch.pledged, batch.buffer, batch.retired, batch.reversed
            ));
        }
        if self
            .balances
            .touched_since(mark.balances)
            .any(|b| !b.non_negative())
        {
            return Err("a balance went negative".to_owned());
        }
        if let Some(pledge) = self
            .pledges
            .touched_since(mark.pledges)
            .find(|p| !p.within_limit())
        {
            return Err(format!(
                "pledge {} has {} outstanding against a limit of {}",
                pledge.id, pledge.outstanding, pledge.limit
            ));
        }
        if let Some(report) = self
            .reports
            .touched_since(mark.reports)
            .find(|r| r.issued > r.verified.tonnes())
        {
            return Err(format!("report {} is over-issued", report.id));
        }
        Ok(())
    }

    /// Checks every invariant of the market over the whole state; returns the first broken one
    /// in words. Runs in time proportional to the state.
    pub fn check_invariants(&self) -> Result<(), String> {
        use crate::num::Tonnes;
        use std::collections::BTreeMap;
        let mut held: BTreeMap<&BatchId, Balance> = BTreeMap::new();
        for ((holder, batch), balance) in &self.balances.rows {
            if !balance.non_negative() {
                return Err(format!("{holder} has a negative balance of batch {batch}"));
            }
            let sum = held.entry(batch).or_default();
            sum.available += balance.available;
            sum.pledged += balance.pledged;
        }
        let mut locked: BTreeMap<(&ParticipantId, &BatchId), Tonnes> = BTreeMap::new();
        for pledge in self.pledges.rows.values() {
            if !pledge.within_limit() {
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
            if report.issued > report.verified.tonnes() {
                return Err(format!("report {} is over-issued", report.id));
            }
        }
        Ok(())
    }
}
