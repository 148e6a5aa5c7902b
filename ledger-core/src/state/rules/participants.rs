//! Participants: the operator's own registration (genesis), everyone else's, and key rotations.

use std::collections::BTreeSet;

use crate::entry;
use crate::error::{RuleError, Thing};
use crate::ids::{PublicKey, Role};

use super::super::{Context, Participant, State};
use super::exists;

impl State {
    /// Entry 0: the operator registers itself, signed with its own key, with the `operator` role
    /// and no other — an operator that also verified or managed projects could issue to itself
    /// alone.
    pub(in crate::state) fn genesis(
        &mut self,
        ctx: &Context,
        r: &entry::RegisterParticipant,
    ) -> Result<(), RuleError> {
        let roles = Self::check_roles(&r.roles)?;
        if roles != BTreeSet::from([Role::Operator]) {
            return Err(RuleError::GenesisRoles {
                roles: r.roles.iter().map(ToString::to_string).collect(),
            });
        }
        Self::require_signers(ctx, "register_participant", &[], true)?;
        self.operator.put((), r.participant.clone());
        self.add_participant(ctx, r, roles);
        Ok(())
    }

    /// Any later participant: signed by the operator and with the new key (proof of possession).
    pub(in crate::state) fn register_participant(
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

    /// A new key, signed with the current one and with the new one.
    pub(in crate::state) fn rotate_key(
        &mut self,
        ctx: &Context,
        r: &entry::RotateKey,
    ) -> Result<(), RuleError> {
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
}
