//! Verification that needs no storage and no network: replaying an export against a signed
//! checkpoint ([`replay`]), and a bank's check of a pledge bundle ([`bundle`]).
//!
//! A verifier trusts one thing, the operator's public key. Everything else — the entries, their
//! signatures, the keys that made them, the tree — is recomputed from bytes. Every refusal has a
//! typed error with a stable `kind()`.

mod ahead;
pub mod bundle;
pub mod replay;

pub use ahead::helper_threads;

pub use bundle::{
    verify_pledge_bundle, verify_pledge_bundle_with, BankPolicy, BundleConsistency, BundleError,
    BundleState, PledgeBundle, PledgeFinding, ProvedEntry, StateFinding,
};
pub use replay::{
    replay_export, replay_leaf, verify_export, verify_export_with, ExportReport, LeafSink,
    ReplayError, ReplayFault, Replayed, Replayer,
};
