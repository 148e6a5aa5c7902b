//! Why the state machine refused an entry.
//!
//! Every variant has a stable machine-readable [`RuleError::kind`] (the HTTP service turns it into
//! a problem `type`) and a message a desk clerk understands, with the figures in it.

use crate::ids::{Role, Timestamp};
use crate::num::{show_tonnes, Currency, Money, Rate, Tonnes, UnitPrice};

/// What kind of thing an id names, for "unknown" and "already exists" errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Thing {
    /// A participant.
    Participant,
    /// A methodology.
    Methodology,
    /// A project.
    Project,
    /// A monitoring report.
    Report,
    /// A batch.
    Batch,
    /// A reference price.
    Price,
    /// A pledge.
    Pledge,
    /// A retirement certificate.
    Certificate,
    /// A trade.
    Trade,
}

impl Thing {
    /// The thing's name in kinds and messages (`batch`, `price`...).
    pub fn name(self) -> &'static str {
        match self {
            Thing::Participant => "participant",
            Thing::Methodology => "methodology",
            Thing::Project => "project",
            Thing::Report => "report",
            Thing::Batch => "batch",
            Thing::Price => "price",
            Thing::Pledge => "pledge",
            Thing::Certificate => "certificate",
            Thing::Trade => "trade",
        }
    }
}

impl std::fmt::Display for Thing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A rule of the market that an entry breaks. Applying such an entry changes nothing.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The entry refers to something the ledger does not know.
    #[error("there is no {thing} \"{id}\" in this ledger")]
    Unknown {
        /// What kind of thing.
        thing: Thing,
        /// The id given.
        id: String,
    },
    /// The entry would register something whose id is taken.
    #[error("a {thing} \"{id}\" is already registered")]
    AlreadyExists {
        /// What kind of thing.
        thing: Thing,
        /// The id given.
        id: String,
    },
    /// Another entry already used this entry id.
    #[error(
        "the entry id \"{id}\" is already used by entry {seq}; give this entry an id of its own"
    )]
    EntryIdUsed {
        /// The id.
        id: String,
        /// Where it was used.
        seq: u64,
    },
    /// The signatures are not exactly those the entry needs.
    #[error("a {entry_type} entry must be signed by {expected}; it was signed by {found}")]
    WrongSigners {
        /// The entry's type.
        entry_type: &'static str,
        /// Who must sign, in words.
        expected: String,
        /// Who signed, in words.
        found: String,
    },
    /// A participant lacks the role its part in the entry needs.
    #[error("{participant} is not registered as a {role}, so it cannot {action}")]
    MissingRole {
        /// Who.
        participant: String,
        /// The role needed.
        role: Role,
        /// What it tried to do.
        action: &'static str,
    },
    /// The first entry of a ledger must register its operator, and only it may.
    #[error("{0}")]
    Genesis(&'static str),
    /// The operator role is given once, in the ledger's first entry.
    #[error("the operator role can only be held by the participant registered in the ledger's first entry")]
    OperatorRoleReserved,
    /// A roles list with nothing or with repeats.
    #[error("the roles list must name at least one role, each once")]
    BadRoles,
    /// The public key is already registered, to this or another participant.
    #[error("this public key is already registered to {holder}; every participant needs a key of its own")]
    KeyInUse {
        /// Who holds it.
        holder: String,
    },
    /// Not enough available sink for a trade, retirement or pledge.
    #[error("{holder} holds {} of batch {batch} available; the {action} needs {}", show_tonnes(*available), show_tonnes(*needed))]
    InsufficientSink {
        /// The holder.
        holder: String,
        /// The batch.
        batch: String,
        /// What is available (pledged sink excluded).
        available: Tonnes,
        /// What the entry needs.
        needed: Tonnes,
        /// trade, retirement, pledge.
        action: &'static str,
    },
    /// An issuance beyond what the report verified.
    #[error("report {report} verified {}, of which {} is already issued; issuing {} more would exceed it", show_tonnes(*verified), show_tonnes(*issued), show_tonnes(*requested))]
    ExceedsVerified {
        /// The report.
        report: String,
        /// What it verified.
        verified: Tonnes,
        /// Already issued from it.
        issued: Tonnes,
        /// Asked for.
        requested: Tonnes,
    },
    /// A monitoring period that ends before it starts.
    #[error("the monitoring period ends ({end}) before it starts ({start})")]
    PeriodReversed {
        /// First day.
        start: String,
        /// Last day.
        end: String,
    },
    /// A monitoring period overlapping one already reported for the project.
    #[error("project {project} already has report {other} for {other_start} to {other_end}; periods must not overlap, or the same carbon would be counted twice")]
    PeriodOverlap {
        /// The project.
        project: String,
        /// The earlier report.
        other: String,
        /// Its first day.
        other_start: String,
        /// Its last day.
        other_end: String,
    },
    /// A vintage year outside the report's period.
    #[error(
        "vintage {vintage} is outside the period of report {report} ({start_year} to {end_year})"
    )]
    VintageOutsidePeriod {
        /// The vintage.
        vintage: u16,
        /// The report.
        report: String,
        /// First year of the period.
        start_year: i32,
        /// Last year of the period.
        end_year: i32,
    },
    /// A trade with the same participant on both sides.
    #[error("{0} cannot trade with itself")]
    SelfTrade(String),
    /// Fields a trade of its kind must or must not have.
    #[error("{0}")]
    TradeTerms(String),
    /// The stated amount does not equal quantity × unit price rounded to the fen.
    #[error("the amount stated is {stated} but {quantity} t × {unit_price} = {computed} (rounded half away from zero to the fen)")]
    AmountMismatch {
        /// What the signers stated.
        stated: Money,
        /// Quantity.
        quantity: Tonnes,
        /// Unit price.
        unit_price: UnitPrice,
        /// What the ledger computes.
        computed: Money,
    },
    /// A priced trade worth less than half a fen.
    #[error(
        "{quantity} t × {unit_price} rounds to 0.00; a priced trade must be worth at least 0.01"
    )]
    AmountRoundsToZero {
        /// Quantity.
        quantity: Tonnes,
        /// Unit price.
        unit_price: UnitPrice,
    },
    /// Currencies that must agree do not.
    #[error("the {what} is in {found} but must be in {expected}")]
    CurrencyMismatch {
        /// What is in the wrong currency.
        what: &'static str,
        /// Expected currency.
        expected: Currency,
        /// Found currency.
        found: Currency,
    },
    /// The stated facility limit does not equal quantity × price × (1 − haircut).
    #[error("the limit stated is {stated} but {quantity} t × {unit_price} × (1 − {haircut}) = {computed} (rounded half away from zero to the fen)")]
    LimitMismatch {
        /// What the signers stated.
        stated: Money,
        /// Quantity locked.
        quantity: Tonnes,
        /// Reference unit price.
        unit_price: UnitPrice,
        /// Haircut.
        haircut: Rate,
        /// What the ledger computes.
        computed: Money,
    },
    /// A drawdown past the facility limit.
    #[error("pledge {pledge} has a limit of {limit} with {outstanding} outstanding; drawing {requested} more would exceed the limit")]
    LimitExceeded {
        /// The pledge.
        pledge: String,
        /// Facility limit.
        limit: Money,
        /// Outstanding now.
        outstanding: Money,
        /// Asked for.
        requested: Money,
    },
    /// A repayment larger than what is outstanding.
    #[error("pledge {pledge} has {outstanding} outstanding; a repayment of {requested} is more than that")]
    RepaymentExceedsOutstanding {
        /// The pledge.
        pledge: String,
        /// Outstanding now.
        outstanding: Money,
        /// Offered.
        requested: Money,
    },
    /// The pledge was already released or enforced.
    #[error("pledge {pledge} is {status}; only an active pledge can be {action}")]
    PledgeClosed {
        /// The pledge.
        pledge: String,
        /// Its status.
        status: &'static str,
        /// What was attempted.
        action: &'static str,
    },
    /// A release while a loan is outstanding.
    #[error("pledge {pledge} still has {outstanding} outstanding; it can be released only when nothing is outstanding")]
    PledgeOutstanding {
        /// The pledge.
        pledge: String,
        /// Outstanding now.
        outstanding: Money,
    },
    /// An enforcement with no loan outstanding: there is nothing to recover.
    #[error("pledge {0} has nothing outstanding, so there is nothing to enforce; the bank can release it instead")]
    NothingOutstanding(String),
    /// A pledge valued at a price that is not yet in effect.
    #[error("price {price} takes effect at {effective_at}, after this entry was accepted ({accepted_at})")]
    PriceNotYetEffective {
        /// The price.
        price: String,
        /// When it takes effect.
        effective_at: Timestamp,
        /// When the ledger accepted the entry.
        accepted_at: Timestamp,
    },
    /// An entry that says it was made later than the ledger received it.
    #[error("the entry says it was made at {created_at}, but the ledger received it at {accepted_at}; check the signing computer's clock")]
    CreatedInFuture {
        /// What the entry says.
        created_at: Timestamp,
        /// When the ledger received it.
        accepted_at: Timestamp,
    },
    /// A reversal larger than the batch's buffer pool.
    #[error("batch {batch} has {} left in its buffer pool; a reversal of {} exceeds it", show_tonnes(*buffer), show_tonnes(*requested))]
    InsufficientBuffer {
        /// The batch.
        batch: String,
        /// What the pool holds.
        buffer: Tonnes,
        /// Asked for.
        requested: Tonnes,
    },
    /// A key rotation to the key already in use.
    #[error("the new key is the key {0} already uses")]
    KeyUnchanged(String),
    /// The ledger's first entry gives its operator roles besides `operator`.
    #[error("the ledger's first entry must register its operator with the operator role and no other; it asks for {}", roles.join(", "))]
    GenesisRoles {
        /// The roles asked for.
        roles: Vec<String>,
    },
    /// A monitoring report for a period that is not over when the ledger receives it.
    #[error("the monitoring period ends on {end}, but the ledger received the report on {accepted_on}: sink can only be verified for a period that is over")]
    PeriodNotEnded {
        /// The period's last day.
        end: String,
        /// The day (UTC) the ledger received the report.
        accepted_on: String,
    },
    /// A pledge whose maturity is already past when it is made.
    #[error("pledge {pledge} matures on {maturity}, which is already past (today is {today}); a pledge must mature today or later")]
    MaturityPassed {
        /// The pledge.
        pledge: String,
        /// Its maturity.
        maturity: String,
        /// The day (UTC) the ledger received the entry.
        today: String,
    },
    /// A drawdown after the pledge's maturity.
    #[error("pledge {pledge} matured on {maturity} (today is {today}); no loan can be drawn against it any more")]
    PledgeMatured {
        /// The pledge.
        pledge: String,
        /// Its maturity.
        maturity: String,
        /// The day (UTC) the ledger received the entry.
        today: String,
    },
    /// An enforcement by the bank alone of a loan that is not in default.
    #[error("pledge {pledge} is not in default (maturity {}, today {today}): the bank alone can enforce it only after maturity with money outstanding; before that, enforcement is a voluntary surrender that {pledgor} must sign as well", maturity.as_deref().unwrap_or("none"))]
    NotInDefault {
        /// The pledge.
        pledge: String,
        /// Its maturity, if it has one.
        maturity: Option<String>,
        /// The day (UTC) the ledger received the entry.
        today: String,
        /// The pledgor, whose signature a surrender needs.
        pledgor: String,
    },
    /// A signed entry that arrives later than the ledger accepts signed entries.
    #[error("the entry was signed at {created_at} and arrived at {arrived_at}, more than {window} later; signed entries expire after {window}: sign it again")]
    EntryExpired {
        /// What the entry says.
        created_at: Timestamp,
        /// When it arrived.
        arrived_at: Timestamp,
        /// The window, in words (`24 h`).
        window: String,
    },
    /// Price inputs beyond the allowed size.
    #[error("a price may list at most {max} inputs, each name 1 to 64 and each value 1 to 256 characters")]
    BadPriceInputs {
        /// How many inputs are allowed.
        max: usize,
    },
}

impl RuleError {
    /// A stable machine-readable kind, such as `insufficient-sink`.
    pub fn kind(&self) -> &'static str {
        match self {
            RuleError::Unknown { thing, .. } => match thing {
                Thing::Participant => "unknown-participant",
                Thing::Methodology => "unknown-methodology",
                Thing::Project => "unknown-project",
                Thing::Report => "unknown-report",
                Thing::Batch => "unknown-batch",
                Thing::Price => "unknown-price",
                Thing::Pledge => "unknown-pledge",
                Thing::Certificate => "unknown-certificate",
                Thing::Trade => "unknown-trade",
            },
            RuleError::AlreadyExists { .. } => "already-exists",
            RuleError::EntryIdUsed { .. } => "entry-id-conflict",
            RuleError::WrongSigners { .. } => "wrong-signers",
            RuleError::MissingRole { .. } => "missing-role",
            RuleError::Genesis(_) => "genesis",
            RuleError::OperatorRoleReserved => "operator-role-reserved",
            RuleError::BadRoles => "bad-roles",
            RuleError::KeyInUse { .. } => "key-in-use",
            RuleError::InsufficientSink { .. } => "insufficient-sink",
            RuleError::ExceedsVerified { .. } => "exceeds-verified",
            RuleError::PeriodReversed { .. } => "period-reversed",
            RuleError::PeriodOverlap { .. } => "period-overlap",
            RuleError::VintageOutsidePeriod { .. } => "vintage-outside-period",
            RuleError::SelfTrade(_) => "self-trade",
            RuleError::TradeTerms(_) => "trade-terms",
            RuleError::AmountMismatch { .. } => "amount-mismatch",
            RuleError::AmountRoundsToZero { .. } => "amount-rounds-to-zero",
            RuleError::CurrencyMismatch { .. } => "currency-mismatch",
            RuleError::LimitMismatch { .. } => "limit-mismatch",
            RuleError::LimitExceeded { .. } => "limit-exceeded",
            RuleError::RepaymentExceedsOutstanding { .. } => "repayment-exceeds-outstanding",
            RuleError::PledgeClosed { .. } => "pledge-closed",
            RuleError::PledgeOutstanding { .. } => "pledge-outstanding",
            RuleError::NothingOutstanding(_) => "nothing-outstanding",
            RuleError::PriceNotYetEffective { .. } => "price-not-yet-effective",
            RuleError::CreatedInFuture { .. } => "created-in-future",
            RuleError::InsufficientBuffer { .. } => "insufficient-buffer",
            RuleError::KeyUnchanged(_) => "key-unchanged",
            RuleError::BadPriceInputs { .. } => "bad-price-inputs",
            RuleError::GenesisRoles { .. } => "genesis-roles",
            RuleError::PeriodNotEnded { .. } => "period-not-ended",
            RuleError::MaturityPassed { .. } => "maturity-passed",
            RuleError::PledgeMatured { .. } => "pledge-matured",
            RuleError::NotInDefault { .. } => "not-in-default",
            RuleError::EntryExpired { .. } => "entry-expired",
        }
    }

    /// Whether the error is about who signed rather than what the entry says.
    pub fn is_authorization(&self) -> bool {
        matches!(
            self,
            RuleError::WrongSigners { .. } | RuleError::MissingRole { .. }
        )
    }
}
