//! T — trading: acquisition (收储: a platform buys from the project's proponent), ecological
//! compensation (生态补偿: an enterprise pays for sink), and transfers without consideration.
//!
//! Restoration proceeds (生态反哺) count the money that reaches the wetland's side of the loop,
//! once: what a platform pays the proponent in an acquisition, and what an enterprise pays in an
//! eco-compensation bought from the proponent or from a platform. A resale between enterprises
//! is not restoration money, so the same tonnes are never counted twice on their way down.

use crate::entry::{self, Body, TradeKind};
use crate::error::{RuleError, Thing};
use crate::ids::{ParticipantId, ProjectId, Role};
use crate::num::{trade_amount, Money, Tonnes};

use super::super::{Context, Proceeds, SeqKey, State, TradeRecord};
use super::unknown;

impl State {
    /// Signed by seller and buyer; the seller must have the tonnes available.
    pub(in crate::state) fn record_trade(
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
        let proponent = self.projects.get(&project).map(|p| p.proponent.clone());
        match r.kind {
            TradeKind::Acquisition => {
                self.require_role(&r.buyer, Role::Platform, "acquire sink (收储)")?;
                if proponent.as_ref() != Some(&r.seller) {
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
        let amount = self.check_consideration(ctx, r)?;
        self.check_available(&r.seller, &r.batch, r.quantity, "trade")?;

        let quantity = r.quantity.tonnes();
        self.debit(&r.seller, &r.batch, quantity);
        self.credit(&r.buyer, &r.batch, quantity);
        if let (Some(amount), Some(currency)) = (amount, &r.currency) {
            if self.reaches_restoration(r, proponent.as_ref()) {
                self.add_proceeds(&project, currency, r.kind, amount, quantity);
            }
        }
        let seq = SeqKey(ctx.seq);
        self.trades_by_party.put((r.seller.clone(), seq), ());
        self.trades_by_party.put((r.buyer.clone(), seq), ());
        self.trades_by_batch.put((r.batch.clone(), seq), ());
        self.trades_by_kind.put((r.kind, seq), ());
        self.trades.put(
            seq,
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

    /// Whether a priced trade's money reaches the wetland's side of the loop: an acquisition
    /// from the proponent, or an eco-compensation sold by the proponent or by a platform.
    fn reaches_restoration(&self, r: &entry::Trade, proponent: Option<&ParticipantId>) -> bool {
        match r.kind {
            TradeKind::Acquisition => true,
            TradeKind::EcoCompensation => {
                proponent == Some(&r.seller)
                    || self
                        .participants
                        .get(&r.seller)
                        .is_some_and(|p| p.has(Role::Platform))
            }
            TradeKind::Transfer => false,
        }
    }

    fn add_proceeds(
        &mut self,
        project: &ProjectId,
        currency: &crate::num::Currency,
        kind: TradeKind,
        amount: Money,
        quantity: Tonnes,
    ) {
        let key = (project.clone(), currency.clone());
        let mut proceeds = self.proceeds.get(&key).cloned().unwrap_or(Proceeds {
            project: project.clone(),
            currency: currency.clone(),
            acquisition: Money::zero(),
            eco_compensation: Money::zero(),
            quantity: Tonnes::zero(),
            trades: 0,
        });
        match kind {
            TradeKind::Acquisition => proceeds.acquisition += amount,
            _ => proceeds.eco_compensation += amount,
        }
        proceeds.quantity += quantity;
        proceeds.trades += 1;
        self.proceeds.put(key, proceeds);
    }

    /// Checks a trade's price, currency and amount; returns the amount of a priced trade.
    fn check_consideration(
        &self,
        ctx: &Context,
        r: &entry::Trade,
    ) -> Result<Option<Money>, RuleError> {
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
            let price = self.cited_price(ctx, price_ref)?;
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
                unit_price,
            });
        }
        if computed != stated.money() {
            return Err(RuleError::AmountMismatch {
                stated: stated.money(),
                quantity: r.quantity.tonnes(),
                unit_price,
                computed,
            });
        }
        Ok(Some(computed))
    }
}
