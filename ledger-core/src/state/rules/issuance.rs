//! Issuance: methodologies, projects, verified monitoring reports, batches issued from them, and
//! reversals that cancel units from a batch's buffer pool.

use crate::entry;
use crate::error::{RuleError, Thing};
use crate::ids::Role;
use crate::num::Tonnes;

use super::super::{Batch, Context, Methodology, Project, Report, State};
use super::{exists, unknown};

impl State {
    /// Signed by the operator.
    pub(in crate::state) fn register_methodology(
        &mut self,
        ctx: &Context,
        r: &entry::RegisterMethodology,
    ) -> Result<(), RuleError> {
        Self::require_signers(ctx, "register_methodology", &[&self.operator_id()?], false)?;
        if self.methodologies.get(&r.methodology).is_some() {
            return Err(exists(Thing::Methodology, &r.methodology));
        }
        self.methodologies.put(
            r.methodology.clone(),
            Methodology {
                id: r.methodology.clone(),
                name: r.name.clone(),
                version: r.version.clone(),
                buffer_rate: r.buffer_rate,
            },
        );
        Ok(())
    }

    /// Signed by the operator and the project's proponent.
    pub(in crate::state) fn register_project(
        &mut self,
        ctx: &Context,
        r: &entry::RegisterProject,
    ) -> Result<(), RuleError> {
        self.require_role(&r.proponent, Role::Proponent, "manage a project")?;
        Self::require_signers(
            ctx,
            "register_project",
            &[&self.operator_id()?, &r.proponent],
            false,
        )?;
        if self.methodologies.get(&r.methodology).is_none() {
            return Err(unknown(Thing::Methodology, &r.methodology));
        }
        if self.projects.get(&r.project).is_some() {
            return Err(exists(Thing::Project, &r.project));
        }
        self.projects.put(
            r.project.clone(),
            Project {
                id: r.project.clone(),
                name: r.name.clone(),
                proponent: r.proponent.clone(),
                methodology: r.methodology.clone(),
                region: r.region.clone(),
                area_ha: r.area_ha,
                registered_seq: ctx.seq,
            },
        );
        Ok(())
    }

    /// Signed by one verifier, for a period that is over and overlaps no other of the project.
    pub(in crate::state) fn record_monitoring(
        &mut self,
        ctx: &Context,
        r: &entry::RecordMonitoring,
    ) -> Result<(), RuleError> {
        let verifier = self.sole_signer_with(
            ctx,
            "record_monitoring",
            Role::Verifier,
            "verify a monitoring report",
        )?;
        if self.projects.get(&r.project).is_none() {
            return Err(unknown(Thing::Project, &r.project));
        }
        if self.reports.get(&r.report).is_some() {
            return Err(exists(Thing::Report, &r.report));
        }
        if r.period_end < r.period_start {
            return Err(RuleError::PeriodReversed {
                start: r.period_start.to_string(),
                end: r.period_end.to_string(),
            });
        }
        // Sink can only be verified for a period that has happened: its last day is over.
        let today = ctx.accepted_at.date();
        if r.period_end >= today {
            return Err(RuleError::PeriodNotEnded {
                end: r.period_end.to_string(),
                accepted_on: today.to_string(),
            });
        }
        let overlap = self.reports.rows.values().find(|other| {
            other.project == r.project
                && other.period_start <= r.period_end
                && r.period_start <= other.period_end
        });
        if let Some(other) = overlap {
            return Err(RuleError::PeriodOverlap {
                project: r.project.to_string(),
                other: other.id.to_string(),
                other_start: other.period_start.to_string(),
                other_end: other.period_end.to_string(),
            });
        }
        self.reports.put(
            r.report.clone(),
            Report {
                id: r.report.clone(),
                project: r.project.clone(),
                period_start: r.period_start,
                period_end: r.period_end,
                verified: r.quantity,
                issued: Tonnes::zero(),
                evidence_sha256: r.evidence_sha256,
                verifier,
                seq: ctx.seq,
            },
        );
        Ok(())
    }

    /// Signed by the operator; never more than the report verified. The buffer share
    /// (`round(quantity × buffer_rate, 3)`) goes to the pool, the rest to the proponent.
    pub(in crate::state) fn issue_batch(
        &mut self,
        ctx: &Context,
        r: &entry::IssueBatch,
    ) -> Result<(), RuleError> {
        Self::require_signers(ctx, "issue_batch", &[&self.operator_id()?], false)?;
        if self.batches.get(&r.batch).is_some() {
            return Err(exists(Thing::Batch, &r.batch));
        }
        let mut report = self
            .reports
            .get(&r.report)
            .cloned()
            .ok_or_else(|| unknown(Thing::Report, &r.report))?;
        let (start_year, end_year) = (report.period_start.year(), report.period_end.year());
        if !(start_year..=end_year).contains(&i32::from(r.vintage)) {
            return Err(RuleError::VintageOutsidePeriod {
                vintage: r.vintage,
                report: r.report.to_string(),
                start_year,
                end_year,
            });
        }
        let quantity = r.quantity.tonnes();
        if report.issued + quantity > report.verified.tonnes() {
            return Err(RuleError::ExceedsVerified {
                report: r.report.to_string(),
                verified: report.verified.tonnes(),
                issued: report.issued,
                requested: quantity,
            });
        }
        let project = self
            .projects
            .get(&report.project)
            .cloned()
            .ok_or_else(|| unknown(Thing::Project, &report.project))?;
        let rate = self
            .methodologies
            .get(&project.methodology)
            .map(|m| m.buffer_rate)
            .ok_or_else(|| unknown(Thing::Methodology, &project.methodology))?;
        let buffer = Tonnes::round(quantity.value() * rate.value());
        let to_proponent = quantity - buffer;

        report.issued += quantity;
        self.reports.put(r.report.clone(), report);
        self.batches.put(
            r.batch.clone(),
            Batch {
                id: r.batch.clone(),
                report: r.report.clone(),
                project: project.id.clone(),
                vintage: r.vintage,
                issued: quantity,
                buffer_initial: buffer,
                buffer,
                retired: Tonnes::zero(),
                reversed: Tonnes::zero(),
                available: Tonnes::zero(),
                pledged: Tonnes::zero(),
                seq: ctx.seq,
            },
        );
        self.credit(&project.proponent, &r.batch, to_proponent);
        Ok(())
    }

    /// Signed by the operator and one verifier: units leave the batch's buffer pool for good.
    pub(in crate::state) fn reversal(
        &mut self,
        ctx: &Context,
        r: &entry::Reversal,
    ) -> Result<(), RuleError> {
        let operator = self.operator_id()?;
        let verifier = ctx
            .signers
            .current
            .iter()
            .find(|s| **s != operator)
            .cloned();
        let signed_right = ctx.signers.current.len() == 2
            && ctx.signers.current.contains(&operator)
            && !ctx.signers.new_key;
        let Some(verifier) = verifier.filter(|_| signed_right) else {
            return Err(RuleError::WrongSigners {
                entry_type: "reversal",
                expected: format!("the operator ({operator}) and one verifier"),
                found: ctx.signers.describe(),
            });
        };
        self.require_role(&verifier, Role::Verifier, "co-sign a reversal")?;
        let mut batch = self
            .batches
            .get(&r.batch)
            .cloned()
            .ok_or_else(|| unknown(Thing::Batch, &r.batch))?;
        let quantity = r.quantity.tonnes();
        if quantity > batch.buffer {
            return Err(RuleError::InsufficientBuffer {
                batch: r.batch.to_string(),
                buffer: batch.buffer,
                requested: quantity,
            });
        }
        batch.buffer -= quantity;
        batch.reversed += quantity;
        self.batches.put(r.batch.clone(), batch);
        Ok(())
    }
}
