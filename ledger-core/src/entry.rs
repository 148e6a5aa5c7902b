//! The entry types of the wire contract (v1), exactly as `docs/ledger-format.md` names them.
//!
//! A [`Submission`] is a [`Body`] plus the signatures of the parties who agreed to it. Bodies are
//! tagged by `type`, carry `id`, `ledger` and `created_at`, and the fields of their type; unknown
//! fields, JSON numbers where decimal strings belong and duplicate member names are refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::ids::{
    Basis, BatchId, Date, EntryId, MethodologyId, Origin, ParticipantId, PledgeId, PriceId,
    ProjectId, PublicKey, ReportId, Role, Sha256Hex, SignatureBytes, Text, Timestamp,
};
use crate::num::{Amount, Currency, Hectares, Quantity, Rate, Ratio, UnitPrice};

/// A signed submission: `{"body": {...}, "signatures": [{"signer", "sig"}]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// What the signers agreed to.
    pub body: Body,
    /// One line per signature.
    pub signatures: Vec<SignatureLine>,
}

/// One signature over the body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureLine {
    /// The participant who signed.
    pub signer: ParticipantId,
    /// The Ed25519 signature, base64.
    pub sig: SignatureBytes,
}

/// An entry's body: the fields every entry has, and those of its type.
#[derive(Clone, Debug, PartialEq)]
pub struct Body {
    /// The entry's own id, unique in the ledger (a trade id, a certificate number...).
    pub id: EntryId,
    /// The origin of the ledger this entry is meant for.
    pub ledger: Origin,
    /// When the signers made it.
    pub created_at: Timestamp,
    /// The type and its fields.
    pub kind: EntryKind,
}

impl Body {
    /// The wire name of the entry's type, such as `trade`.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
}

/// The entry types and their fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EntryKind {
    /// Registers a participant with its roles and public key.
    RegisterParticipant(RegisterParticipant),
    /// Replaces a participant's public key.
    RotateKey(RotateKey),
    /// Registers a methodology with its buffer rate.
    RegisterMethodology(RegisterMethodology),
    /// Registers a wetland project.
    RegisterProject(RegisterProject),
    /// A verifier's statement that a project sequestered a quantity over a period.
    RecordMonitoring(RecordMonitoring),
    /// Issues a batch (vintage) of sink from a verified report.
    IssueBatch(IssueBatch),
    /// Publishes a reference price.
    PublishPrice(PublishPrice),
    /// Moves sink from a seller to a buyer.
    Trade(Trade),
    /// Retires sink against a claim, for good.
    Retire(Retire),
    /// Locks sink in a bank's favour as collateral for a loan facility.
    Pledge(Pledge),
    /// Draws an amount of the loan against a pledge.
    Drawdown(LoanMovement),
    /// Repays an amount of the loan drawn against a pledge.
    Repay(LoanMovement),
    /// Releases a pledge with nothing outstanding.
    ReleasePledge(PledgeAction),
    /// Enforces a pledge: the locked sink moves to the bank.
    EnforcePledge(PledgeAction),
    /// Cancels units from a batch's buffer pool after a loss of stored carbon.
    Reversal(Reversal),
}

impl EntryKind {
    /// The wire name of the type.
    pub fn type_name(&self) -> &'static str {
        match self {
            EntryKind::RegisterParticipant(_) => "register_participant",
            EntryKind::RotateKey(_) => "rotate_key",
            EntryKind::RegisterMethodology(_) => "register_methodology",
            EntryKind::RegisterProject(_) => "register_project",
            EntryKind::RecordMonitoring(_) => "record_monitoring",
            EntryKind::IssueBatch(_) => "issue_batch",
            EntryKind::PublishPrice(_) => "publish_price",
            EntryKind::Trade(_) => "trade",
            EntryKind::Retire(_) => "retire",
            EntryKind::Pledge(_) => "pledge",
            EntryKind::Drawdown(_) => "drawdown",
            EntryKind::Repay(_) => "repay",
            EntryKind::ReleasePledge(_) => "release_pledge",
            EntryKind::EnforcePledge(_) => "enforce_pledge",
            EntryKind::Reversal(_) => "reversal",
        }
    }
}

/// `register_participant`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterParticipant {
    /// The new participant's id.
    pub participant: ParticipantId,
    /// Display name, any Unicode.
    pub name: Text,
    /// What it may do.
    pub roles: Vec<Role>,
    /// Its Ed25519 public key.
    pub public_key: PublicKey,
}

/// `rotate_key`: signed by the participant with the current key and with the new one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// Whose key changes.
    pub participant: ParticipantId,
    /// The key that signs from now on.
    pub new_public_key: PublicKey,
}

/// `register_methodology`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterMethodology {
    /// Its id.
    pub methodology: MethodologyId,
    /// Its name.
    pub name: Text,
    /// Its version, as published.
    pub version: Text,
    /// The share of each issuance held back in the buffer pool against reversal.
    pub buffer_rate: Rate,
}

/// `register_project`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterProject {
    /// Its id.
    pub project: ProjectId,
    /// Its name, such as 下渚湖湿地.
    pub name: Text,
    /// The wetland manager.
    pub proponent: ParticipantId,
    /// The methodology its reports follow.
    pub methodology: MethodologyId,
    /// Where it is.
    pub region: Text,
    /// Its area in hectares.
    pub area_ha: Hectares,
}

/// `record_monitoring`: signed by one verifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordMonitoring {
    /// The report's id.
    pub report: ReportId,
    /// The project monitored.
    pub project: ProjectId,
    /// First day of the period.
    pub period_start: Date,
    /// Last day of the period.
    pub period_end: Date,
    /// Verified sequestration, tCO2e.
    pub quantity: Quantity,
    /// SHA-256 of the evidence document.
    pub evidence_sha256: Sha256Hex,
}

/// `issue_batch`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueBatch {
    /// The new batch's id.
    pub batch: BatchId,
    /// The verified report it is issued from.
    pub report: ReportId,
    /// Quantity issued, buffer included.
    pub quantity: Quantity,
    /// The vintage year.
    pub vintage: u16,
}

/// `publish_price`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishPrice {
    /// The price's id.
    pub price: PriceId,
    /// Its basis, such as `benchmark` or `cost`.
    pub basis: Basis,
    /// Price of one tonne.
    pub unit_price: UnitPrice,
    /// Currency of the price.
    pub currency: Currency,
    /// From when it applies.
    pub effective_at: Timestamp,
    /// What it was computed from, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<BTreeMap<String, String>>,
}

/// The kind of a trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TradeKind {
    /// 收储: a platform buys sink from the project's proponent and stores it.
    Acquisition,
    /// 生态补偿: an enterprise or public body pays for sink to compensate for its impact.
    EcoCompensation,
    /// A movement between holders with no consideration recorded.
    Transfer,
}

impl TradeKind {
    /// Whether the trade carries a price and an amount.
    pub fn is_priced(self) -> bool {
        !matches!(self, TradeKind::Transfer)
    }
}

impl std::fmt::Display for TradeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TradeKind::Acquisition => "acquisition",
            TradeKind::EcoCompensation => "eco_compensation",
            TradeKind::Transfer => "transfer",
        })
    }
}

/// `trade`: signed by seller and buyer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trade {
    /// Acquisition, eco-compensation or transfer.
    pub kind: TradeKind,
    /// Who gives the sink.
    pub seller: ParticipantId,
    /// Who receives it.
    pub buyer: ParticipantId,
    /// The batch traded.
    pub batch: BatchId,
    /// Tonnes traded.
    pub quantity: Quantity,
    /// Price of one tonne (priced kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<UnitPrice>,
    /// Currency (priced kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    /// quantity × unit price, rounded half away from zero to the fen (priced kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    /// The reference price relied on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_ref: Option<PriceId>,
}

/// `retire`: signed by the holder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retire {
    /// Who retires.
    pub holder: ParticipantId,
    /// From which batch.
    pub batch: BatchId,
    /// Tonnes retired.
    pub quantity: Quantity,
    /// On whose behalf.
    pub beneficiary: Text,
    /// The claim it backs.
    pub purpose: Text,
}

/// `pledge`: signed by pledgor and bank.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pledge {
    /// The pledge's id.
    pub pledge: PledgeId,
    /// Who locks sink.
    pub pledgor: ParticipantId,
    /// In whose favour.
    pub bank: ParticipantId,
    /// From which batch.
    pub batch: BatchId,
    /// Tonnes locked.
    pub quantity: Quantity,
    /// The reference price the collateral is valued at.
    pub price_ref: PriceId,
    /// The bank's haircut.
    pub haircut: Rate,
    /// quantity × price × (1 − haircut), rounded half away from zero to the fen.
    pub limit: Amount,
    /// Currency of the facility (that of the reference price).
    pub currency: Currency,
    /// When the facility matures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maturity: Option<Date>,
    /// Format v2: the coverage (collateral value at the price in force ÷ outstanding) below
    /// which the bank wants to hear of it, such as `1.25`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin_threshold: Option<Ratio>,
}

/// `drawdown` (signed by bank and pledgor) and `repay` (signed by the bank).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoanMovement {
    /// The pledge the loan is drawn against.
    pub pledge: PledgeId,
    /// How much, in the pledge's currency.
    pub amount: Amount,
}

/// `release_pledge` and `enforce_pledge`: signed by the bank.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PledgeAction {
    /// The pledge.
    pub pledge: PledgeId,
}

/// `reversal`: signed by the operator and a verifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reversal {
    /// The batch whose stored carbon was lost.
    pub batch: BatchId,
    /// Tonnes cancelled from its buffer pool.
    pub quantity: Quantity,
    /// What happened.
    pub reason: Text,
}

const HEADER: [&str; 3] = ["id", "ledger", "created_at"];

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = match serde_json::to_value(&self.kind).map_err(serde::ser::Error::custom)? {
            Value::Object(map) => map,
            _ => return Err(serde::ser::Error::custom("an entry body must be an object")),
        };
        map.insert("id".into(), Value::String(self.id.to_string()));
        map.insert("ledger".into(), Value::String(self.ledger.to_string()));
        map.insert(
            "created_at".into(),
            Value::String(self.created_at.to_string()),
        );
        map.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut map = Map::<String, Value>::deserialize(d)?;
        let mut header = |name: &'static str| {
            map.remove(name)
                .ok_or_else(|| D::Error::custom(format!("missing field `{name}`")))
        };
        let id = header(HEADER[0])?;
        let ledger = header(HEADER[1])?;
        let created_at = header(HEADER[2])?;
        if !map.contains_key("type") {
            return Err(D::Error::custom("missing field `type`"));
        }
        Ok(Body {
            id: EntryId::deserialize(id).map_err(D::Error::custom)?,
            ledger: Origin::deserialize(ledger).map_err(D::Error::custom)?,
            created_at: Timestamp::deserialize(created_at).map_err(D::Error::custom)?,
            kind: EntryKind::deserialize(Value::Object(map)).map_err(D::Error::custom)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade_json() -> Value {
        serde_json::json!({
            "type": "trade", "id": "T-2022-0001", "ledger": "deqing.example/wetland",
            "created_at": "2022-06-01T09:30:00Z", "kind": "acquisition",
            "seller": "xiazhuhu-wetland", "buyer": "two-mountains-bank", "batch": "XZH-2022-01",
            "quantity": "10000", "unit_price": "58.83", "currency": "CNY", "amount": "588300.00"
        })
    }

    #[test]
    fn a_trade_round_trips_exactly() {
        let body: Body = serde_json::from_value(trade_json()).unwrap();
        assert_eq!(body.type_name(), "trade");
        assert_eq!(serde_json::to_value(&body).unwrap(), trade_json());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut json = trade_json();
        json["discount"] = "0.1".into();
        let err = serde_json::from_value::<Body>(json).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `discount`"),
            "{err}"
        );
    }

    #[test]
    fn numbers_where_strings_belong_are_refused() {
        let mut json = trade_json();
        json["quantity"] = serde_json::json!(10000);
        let err = serde_json::from_value::<Body>(json).unwrap_err();
        assert!(err.to_string().contains("decimal string"), "{err}");
    }

    #[test]
    fn unknown_types_and_missing_headers_are_refused() {
        let mut json = trade_json();
        json["type"] = "gift".into();
        assert!(serde_json::from_value::<Body>(json).is_err());
        let mut json = trade_json();
        json.as_object_mut().unwrap().remove("ledger");
        let err = serde_json::from_value::<Body>(json).unwrap_err();
        assert!(err.to_string().contains("`ledger`"), "{err}");
    }
}
