//! D — drawdown against pledged sink: a holder pledges sink to a bank, which lends against it up
//! to the facility limit `round(quantity × price × (1 − haircut), 2)`.
//!
//! The loan rules a bank relies on:
//! - a pledge is made, and drawn on, only up to its maturity (the day itself included);
//! - repayments are the bank's to record, and never exceed what is outstanding;
//! - the bank alone releases a pledge, once nothing is outstanding;
//! - the bank alone enforces a pledge in default — after maturity with money outstanding; before
//!   that, enforcement is a voluntary surrender signed by the pledgor too. Enforcement moves the
//!   locked tonnes to the bank and closes the loan: the outstanding amount is recorded as settled
//!   by the collateral, and the outstanding becomes 0.00.

use std::collections::BTreeSet;

use crate::entry;
use crate::error::{RuleError, Thing};
use crate::ids::{PledgeId, Role};
use crate::num::{facility_limit, Money, Tonnes};

use super::super::{Context, PledgeRecord, PledgeStatus, State};
use super::{exists, unknown};

impl State {
    /// Signed by pledgor and bank; locks available sink at a price in force.
    pub(in crate::state) fn record_pledge(
        &mut self,
        ctx: &Context,
        r: &entry::Pledge,
    ) -> Result<(), RuleError> {
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
        let today = ctx.accepted_at.date();
        if let Some(maturity) = r.maturity.filter(|m| *m < today) {
            return Err(RuleError::MaturityPassed {
                pledge: r.pledge.to_string(),
                maturity: maturity.to_string(),
                today: today.to_string(),
            });
        }
        let price = self.cited_price(ctx, &r.price_ref)?;
        if price.currency != r.currency {
            return Err(RuleError::CurrencyMismatch {
                what: "pledge",
                expected: price.currency.clone(),
                found: r.currency.clone(),
            });
        }
        let unit_price = price.unit_price;
        let computed = facility_limit(r.quantity, unit_price, r.haircut);
        if computed != r.limit.money() {
            return Err(RuleError::LimitMismatch {
                stated: r.limit.money(),
                quantity: r.quantity.tonnes(),
                unit_price,
                haircut: r.haircut,
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
                outstanding: Money::zero(),
                drawn: Money::zero(),
                repaid: Money::zero(),
                status: PledgeStatus::Active,
                closed_seq: None,
                settled: None,
                margin_threshold: r.margin_threshold,
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

    /// Signed by bank and pledgor; up to the limit, and not after maturity.
    pub(in crate::state) fn drawdown(
        &mut self,
        ctx: &Context,
        r: &entry::LoanMovement,
    ) -> Result<(), RuleError> {
        let mut pledge = self.active_pledge(&r.pledge, "drawn against")?;
        Self::require_signers(ctx, "drawdown", &[&pledge.bank, &pledge.pledgor], false)?;
        let today = ctx.accepted_at.date();
        if let Some(maturity) = pledge.maturity.filter(|m| today > *m) {
            return Err(RuleError::PledgeMatured {
                pledge: r.pledge.to_string(),
                maturity: maturity.to_string(),
                today: today.to_string(),
            });
        }
        let amount = r.amount.money();
        if pledge.outstanding + amount > pledge.limit {
            return Err(RuleError::LimitExceeded {
                pledge: r.pledge.to_string(),
                limit: pledge.limit,
                outstanding: pledge.outstanding,
                requested: amount,
            });
        }
        pledge.outstanding += amount;
        pledge.drawn += amount;
        self.pledges.put(r.pledge.clone(), pledge);
        Ok(())
    }

    /// Signed by the bank; never more than what is outstanding.
    pub(in crate::state) fn repay(
        &mut self,
        ctx: &Context,
        r: &entry::LoanMovement,
    ) -> Result<(), RuleError> {
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
        pledge.outstanding -= amount;
        pledge.repaid += amount;
        self.pledges.put(r.pledge.clone(), pledge);
        Ok(())
    }

    /// Signed by the bank, once nothing is outstanding: the sink is the pledgor's again.
    pub(in crate::state) fn release_pledge(
        &mut self,
        ctx: &Context,
        r: &entry::PledgeAction,
    ) -> Result<(), RuleError> {
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

    /// Signed by the bank alone when the loan is in default, or by bank and pledgor (a voluntary
    /// surrender) before; the locked sink moves to the bank and the loan closes.
    pub(in crate::state) fn enforce_pledge(
        &mut self,
        ctx: &Context,
        r: &entry::PledgeAction,
    ) -> Result<(), RuleError> {
        let mut pledge = self.active_pledge(&r.pledge, "enforced")?;
        let bank_alone = BTreeSet::from([pledge.bank.clone()]);
        let surrender = BTreeSet::from([pledge.bank.clone(), pledge.pledgor.clone()]);
        if ctx.signers.current != surrender {
            Self::require_signers(ctx, "enforce_pledge", &[&pledge.bank], false).map_err(|_| {
                RuleError::WrongSigners {
                    entry_type: "enforce_pledge",
                    expected: format!(
                        "{} alone (a loan in default) or {} and {} (a voluntary surrender)",
                        pledge.bank, pledge.bank, pledge.pledgor
                    ),
                    found: ctx.signers.describe(),
                }
            })?;
        }
        if pledge.outstanding.is_zero() {
            return Err(RuleError::NothingOutstanding(r.pledge.to_string()));
        }
        let today = ctx.accepted_at.date();
        if ctx.signers.current == bank_alone && !pledge.in_default(today) {
            return Err(RuleError::NotInDefault {
                pledge: r.pledge.to_string(),
                maturity: pledge.maturity.map(|m| m.to_string()),
                today: today.to_string(),
                pledgor: pledge.pledgor.to_string(),
            });
        }
        let quantity = pledge.quantity.tonnes();
        self.adjust(&pledge.pledgor, &pledge.batch, Tonnes::zero(), -quantity);
        self.adjust(&pledge.bank, &pledge.batch, quantity, Tonnes::zero());
        pledge.settled = Some(pledge.outstanding);
        pledge.outstanding = Money::zero();
        pledge.status = PledgeStatus::Enforced;
        pledge.closed_seq = Some(ctx.seq);
        self.pledges.put(r.pledge.clone(), pledge);
        Ok(())
    }
}
