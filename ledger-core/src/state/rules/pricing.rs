//! P — pricing: a pricing authority publishes signed reference prices. A price is in force from
//! its `effective_at` on (see [`State::price_in_force`]); a price published ahead of time waits.

use crate::entry;
use crate::error::{RuleError, Thing};
use crate::ids::Role;

use super::super::{Context, Price, State, MAX_PRICE_INPUTS};
use super::exists;

impl State {
    /// Signed by one pricing authority.
    pub(in crate::state) fn publish_price(
        &mut self,
        ctx: &Context,
        r: &entry::PublishPrice,
    ) -> Result<(), RuleError> {
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

    /// A price an entry cites: it must exist and be in force when the entry is accepted.
    pub(in crate::state) fn cited_price(
        &self,
        ctx: &Context,
        id: &crate::ids::PriceId,
    ) -> Result<&Price, RuleError> {
        let price = self
            .prices
            .get(id)
            .ok_or_else(|| super::unknown(Thing::Price, id))?;
        if price.effective_at > ctx.accepted_at {
            return Err(RuleError::PriceNotYetEffective {
                price: price.id.to_string(),
                effective_at: price.effective_at.clone(),
                accepted_at: ctx.accepted_at.clone(),
            });
        }
        Ok(price)
    }
}
