//! How far a long pass over the history has got: a full verification
//! ([`Ledger::verify_full_with`](crate::ledger::Ledger::verify_full_with)), the replay of an
//! export ([`verify_export_with`](crate::verify::verify_export_with)) and a restore
//! ([`Restore::append_with`](crate::ledger::Restore::append_with),
//! [`Ledger::restore_with`](crate::ledger::Ledger::restore_with)) take minutes at a million
//! entries, and tell a [`Progress`] after each entry (a restore after each durable write).
//!
//! The core only counts. Showing the count — a bar on a terminal, a line in a log — is the
//! program's business: `carbon-ledger` does it on standard error, and a library user may pass
//! any closure `Fn(done, total)`, or [`Silent`].

/// Told how far a long pass has got.
pub trait Progress {
    /// `done` entries of about `total` have been processed. Called after every entry, so an
    /// implementation must be cheap and decide itself how often to show anything. `done` may
    /// pass `total` (an export longer than its checkpoint, a copy of the log longer than the
    /// floor).
    fn entries(&self, done: u64, total: u64);
}

/// A [`Progress`] that shows nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn entries(&self, _done: u64, _total: u64) {}
}

impl<F: Fn(u64, u64)> Progress for F {
    fn entries(&self, done: u64, total: u64) {
        self(done, total);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use crate::ledger::Ledger;
    use crate::load::Market;

    /// Every long pass tells its hook after each entry, counts that grow to the total.
    #[test]
    fn the_long_passes_tell_their_progress_up_to_the_total() {
        let market = Market::new(2);
        let ledger = Ledger::in_memory(market.config().unwrap()).unwrap();
        market.setup(&ledger).unwrap();
        let trades: Vec<_> = (0..5).map(|k| market.trade(k).unwrap()).collect();
        ledger.submit_group(trades).unwrap();
        let size = ledger.size();
        let told = RefCell::new(Vec::new());
        let hook = |done: u64, total: u64| told.borrow_mut().push((done, total));
        let every_entry: Vec<(u64, u64)> = (1..=size).map(|done| (done, size)).collect();

        ledger.verify_full_with(&hook).unwrap();
        assert_eq!(told.take(), every_entry);

        let note = ledger.checkpoint().unwrap();
        let mut export = Vec::new();
        ledger.export(&mut export, Some(size)).unwrap();
        crate::verify::verify_export_with(export.as_slice(), &note, &ledger.operator_key(), &hook)
            .unwrap();
        assert_eq!(told.take(), every_entry);

        let store = Box::new(crate::store::MemoryStore::default());
        let restored = Ledger::restore_with(
            store,
            market.config().unwrap(),
            export.as_slice(),
            &note,
            &hook,
        )
        .unwrap();
        assert_eq!(restored.size(), size);
        // A restore tells after each durable write, up to the checkpoint's size.
        let restoring = told.take();
        assert_eq!(restoring.last(), Some(&(size, size)));
        assert!(
            restoring.windows(2).all(|w| w[0].0 < w[1].0),
            "{restoring:?}"
        );
    }
}
