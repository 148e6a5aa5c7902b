//! The rules of the market, one file per part of the PTD loop. Each rule is a method of
//! [`State`] that checks everything first and only then writes; what they share (who signed,
//! roles, available sink, moving tonnes) is here.

use std::collections::BTreeSet;

use crate::error::{RuleError, Thing};
use crate::ids::{BatchId, ParticipantId, Role};
use crate::num::{Quantity, Tonnes};

use super::{Balance, Context, Participant, Signers, State};

mod issuance;
mod participants;
mod pledges;
mod pricing;
mod retirement;
mod trading;

pub(super) fn unknown(thing: Thing, id: &impl ToString) -> RuleError {
    RuleError::Unknown {
        thing,
        id: id.to_string(),
    }
}

pub(super) fn exists(thing: Thing, id: &impl ToString) -> RuleError {
    RuleError::AlreadyExists {
        thing,
        id: id.to_string(),
    }
}

impl State {
    /// The entry must be signed by exactly `parties` (and, if `new_key`, the key it names).
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

    /// The holder must have `quantity` of the batch available (pledged sink excluded).
    fn check_available(
        &self,
        holder: &ParticipantId,
        batch: &BatchId,
        quantity: Quantity,
        action: &'static str,
    ) -> Result<(), RuleError> {
        let available = self.balance(holder, batch).available;
        if available < quantity.tonnes() {
            return Err(RuleError::InsufficientSink {
                holder: holder.to_string(),
                batch: batch.to_string(),
                available,
                needed: quantity.tonnes(),
                action,
            });
        }
        Ok(())
    }

    /// Moves tonnes of a batch in a holder's balance and the batch's totals: `available` and
    /// `pledged` are added (negative to take away).
    fn adjust(
        &mut self,
        holder: &ParticipantId,
        batch: &BatchId,
        available: Tonnes,
        pledged: Tonnes,
    ) {
        let key = (holder.clone(), batch.clone());
        let mut balance: Balance = self.balances.get(&key).copied().unwrap_or_default();
        balance.available += available;
        balance.pledged += pledged;
        self.balances.put(key, balance);
        if let Some(mut totals) = self.batches.get(batch).cloned() {
            totals.available += available;
            totals.pledged += pledged;
            self.batches.put(batch.clone(), totals);
        }
    }

    fn credit(&mut self, holder: &ParticipantId, batch: &BatchId, quantity: Tonnes) {
        self.adjust(holder, batch, quantity, Tonnes::zero());
    }

    fn debit(&mut self, holder: &ParticipantId, batch: &BatchId, quantity: Tonnes) {
        self.adjust(holder, batch, -quantity, Tonnes::zero());
    }
}
