//! D — retirement: a holder retires sink against an emissions claim. It leaves circulation for
//! good, and the entry is its certificate.

use crate::entry::{self, Body};
use crate::error::{RuleError, Thing};

use super::super::{Certificate, Context, SeqKey, State};
use super::unknown;

impl State {
    /// Signed by the holder, from its available (not pledged) sink.
    pub(in crate::state) fn retire(
        &mut self,
        ctx: &Context,
        body: &Body,
        r: &entry::Retire,
    ) -> Result<(), RuleError> {
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
        batch.retired += quantity;
        self.batches.put(r.batch.clone(), batch.clone());
        let seq = SeqKey(ctx.seq);
        self.certificates_by_holder.put((r.holder.clone(), seq), ());
        self.certificates.put(
            seq,
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
}
