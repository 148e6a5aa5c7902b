//! Carbon-sink finance ledger core.
#![warn(missing_docs)]

pub mod canonical;
pub mod checkpoint;
pub mod entry;
pub mod error;
pub mod ids;
pub mod ledger;
pub mod merkle;
pub mod num;
pub mod sign;
pub mod state;
pub mod store;
pub mod verify;
pub mod wire;
