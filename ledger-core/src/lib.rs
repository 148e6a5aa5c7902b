//! # ledger-core: the carbon-sink finance ledger
//!
//! The books of a wetland carbon-sink market — pricing, trading (acquisition 收储 and ecological
//! compensation 生态补偿) and drawdown (retirement, and loans drawn against pledged sink) — as an
//! append-only, Ed25519-signed, Merkle-proved ledger.
//!
//! ```text
//!  body ──sign──▶ submission ──decode──▶ Prepared ──verify signatures──▶ sequencer
//!                 (JCS, Ed25519)        (strict)     (keys current now)     │
//!                                                                            ▼
//!  checkpoint ◀──sign── tree root ◀── leaf = JCS(envelope) ◀── state.apply ─┘
//!  (C2SP note)          (RFC 9162)    {seq, prev, accepted_at, entry}   (rules of the market)
//!                                            │
//!                                            ▼
//!                          store: one atomic, durable batch per group
//! ```
//!
//! This crate does no network I/O and runs no async runtime: it takes bytes and returns bytes,
//! decisions and proofs. Only [`store`] touches the disk.
//!
//! - [`num`], [`ids`]: exact numbers and identifiers, built only through parsers; computed
//!   figures are [`num::Tonnes`] and [`num::Money`], which do not add up with each other.
//! - [`entry`]: the entry types of the wire contract.
//! - [`state`]: the market as a deterministic state machine — one rule file per part of the PTD
//!   loop under `state/rules/` — its tables, records and queries; [`error`]: why it refuses an
//!   entry.
//! - [`canonical`] (RFC 8785), [`wire`] (strict decoding, envelopes), [`sign`] (Ed25519).
//! - [`merkle`] (RFC 9162 tree and proofs), [`checkpoint`] (C2SP checkpoints and signed notes).
//! - [`store`]: the storage trait, sled and memory stores.
//! - [`tiles`]: the log as C2SP tlog tiles: tile paths, which tiles a tree holds, entry bundles.
//! - [`ledger`]: the ledger a program embeds: open, the sequencer, proofs, full audit, restore.
//! - [`verify`]: checks that need no storage: an export against a checkpoint, a bank's pledge
//!   bundle.
//! - [`progress`]: how far a long pass (a full verification, a replay, a restore) has got,
//!   told to a hook the program shows as it likes.
//! - [`witness`]: a validating witness (C2SP tlog-witness and cosignature/v1) that replays every
//!   entry before it cosigns.
//! - [`reference`](mod@reference): the reference case of 2022 (Xiazhu Lake wetland) as signed entries; [`load`]:
//!   synthetic markets for benchmarks.
//!
//! ```no_run
//! use ledger_core::ledger::{Ledger, LedgerConfig};
//!
//! let operator_key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
//! let ledger = Ledger::open_dir(
//!     std::path::Path::new("data"),
//!     LedgerConfig::new(
//!         "registry.example/xiazhuhu".parse()?,
//!         "deqing-registry".parse()?,
//!         "德清县生态资源登记中心".parse()?,
//!         operator_key,
//!     ),
//! )?;
//! println!("{} entries, checkpoint:\n{}", ledger.size(), ledger.checkpoint()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod canonical;
pub mod checkpoint;
pub mod entry;
pub mod error;
pub mod ids;
pub mod ledger;
pub mod load;
pub mod merkle;
pub mod num;
pub mod progress;
pub mod reference;
pub mod sign;
pub mod state;
pub mod store;
pub mod tiles;
pub mod verify;
pub mod wire;
pub mod witness;

/// The Ed25519 implementation the ledger signs and verifies with, so that embedding programs use
/// the very same version.
pub use ed25519_dalek;
