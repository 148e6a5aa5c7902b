//! Carbon-sink finance ledger core.
#![warn(missing_docs)]

pub mod entry;
pub mod error;
pub mod ids;
pub mod num;
pub mod state;
