//! The rows of the state's tables: what the market holds, and what its history recorded.
//!
//! Tonnages are [`Tonnes`] and sums of money [`Money`]: each keeps its scale (3 and 2 places), and
//! the one cannot be added to the other.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::entry::TradeKind;
use crate::ids::{
    Basis, BatchId, Date, EntryId, MethodologyId, ParticipantId, PledgeId, PriceId, ProjectId,
    PublicKey, ReportId, Role, Sha256Hex, Text, Timestamp,
};
use crate::num::{Currency, Hectares, Money, Quantity, Rate, Ratio, Tonnes, UnitPrice};

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
    /// Issued from it so far.
    pub issued: Tonnes,
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
    pub issued: Tonnes,
    /// Held back in the buffer pool at issuance.
    pub buffer_initial: Tonnes,
    /// Left in the buffer pool.
    pub buffer: Tonnes,
    /// Retired for good.
    pub retired: Tonnes,
    /// Cancelled from the buffer after reversals.
    pub reversed: Tonnes,
    /// Held by participants, available.
    pub available: Tonnes,
    /// Held by participants, locked in pledges.
    pub pledged: Tonnes,
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
        parts.iter().all(|p| !p.is_negative())
            && parts.iter().copied().sum::<Tonnes>() == self.issued
    }
}

/// What a holder has of one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Free to trade, retire or pledge.
    pub available: Tonnes,
    /// Locked in pledges.
    pub pledged: Tonnes,
}

impl Balance {
    /// Whether neither part is negative (invariant 2).
    pub fn non_negative(&self) -> bool {
        !self.available.is_negative() && !self.pledged.is_negative()
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
    pub amount: Option<Money>,
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
    /// The status in words.
    pub fn word(self) -> &'static str {
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
    pub limit: Money,
    /// Currency.
    pub currency: Currency,
    /// Maturity.
    pub maturity: Option<Date>,
    /// Drawn and not repaid.
    pub outstanding: Money,
    /// Drawn in total.
    pub drawn: Money,
    /// Repaid in total.
    pub repaid: Money,
    /// Status.
    pub status: PledgeStatus,
    /// Entry that released or enforced it.
    pub closed_seq: Option<u64>,
    /// What enforcement settled: the outstanding loan the collateral paid off when the bank
    /// took it (the outstanding is 0.00 after).
    #[serde(default)]
    pub settled: Option<Money>,
    /// The coverage below which the bank wants to hear of it (format v2).
    #[serde(default)]
    pub margin_threshold: Option<Ratio>,
}

impl PledgeRecord {
    /// Whether the loan is within its limit and not negative (invariant 3).
    pub fn within_limit(&self) -> bool {
        !self.outstanding.is_negative() && self.outstanding <= self.limit
    }

    /// Whether the loan is in default at `date`: past its maturity with money outstanding.
    pub fn in_default(&self, date: Date) -> bool {
        self.maturity.is_some_and(|m| date > m) && !self.outstanding.is_zero()
    }
}

/// A pledge's collateral valued at a price.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// Unit price used.
    pub unit_price: UnitPrice,
    /// Quantity × unit price, to the fen.
    pub collateral_value: Money,
    /// Outstanding loan.
    pub outstanding: Money,
    /// Facility limit.
    pub limit: Money,
    /// Collateral value ÷ outstanding, to 4 places; none when nothing is outstanding.
    pub coverage_ratio: Option<Decimal>,
    /// The pledge's margin threshold, if it has one.
    pub margin_threshold: Option<Ratio>,
    /// Whether the coverage is below the margin threshold.
    pub below_threshold: bool,
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
    pub acquisition: Money,
    /// Raised by eco-compensation.
    pub eco_compensation: Money,
    /// Tonnes sold by these trades.
    pub quantity: Tonnes,
    /// How many trades.
    pub trades: u64,
}

impl Proceeds {
    /// Raised in total.
    pub fn total(&self) -> Money {
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
        s.serialize_str(&crate::ids::hex32(d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}
