//! Opening a store written by an earlier version: its state rows are rewritten, once, in the
//! layout this code reads. Leaves, nodes and checkpoints never change.
//!
//! Layout 1 → 2: trades and retirement certificates were keyed by entry id, and listing them read
//! and sorted the whole history. Layout 2 keys them by sequence number and adds indexes (trades by
//! party, batch and kind; certificates by holder), so that a page is a key range. The table of
//! latest prices goes: the price in force is now found by time.
//!
//! How a store keeps these rows underneath is not a layout of the ledger: sled's Merkle nodes,
//! once a row each and now in blocks of four levels, are converted by the sled store itself when
//! it opens (`crate::store`), and PostgreSQL's rows do not change, so instances of the previous
//! version and of this one can share a database during an upgrade.

use crate::state::{SeqKey, StateChange};
use crate::store::{Append, Meta, RowRange, Store, StoreError, LAYOUT};

use super::LedgerError;

/// The metadata of the store once it is in the current layout (migrated if it was older).
pub(super) fn to_current_layout(store: &dyn Store, meta: Meta) -> Result<Meta, LedgerError> {
    match meta.layout {
        1 => from_layout_1(store, meta),
        _ => Ok(meta),
    }
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Encode(e.to_string()))
}

fn read<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Decode {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

fn from_layout_1(store: &dyn Store, mut meta: Meta) -> Result<Meta, LedgerError> {
    let mut changes: Vec<StateChange> = Vec::new();
    let put = |table: &'static str, key: Vec<u8>, value: Vec<u8>| StateChange {
        table,
        key,
        value: Some(value),
    };
    let mut removals: Vec<StateChange> = Vec::new();
    let remove = |table: &'static str, key: &[u8]| StateChange {
        table,
        key: key.to_vec(),
        value: None,
    };
    store.scan_state(Some("trades"), RowRange::default(), &mut |_, key, value| {
        let trade: crate::state::TradeRecord = read("a layout-1 trade row", value)?;
        let seq = SeqKey(trade.seq);
        removals.push(remove("trades", key));
        changes.push(put("trades", json(&seq)?, json(&trade)?));
        for party in [&trade.seller, &trade.buyer] {
            changes.push(put("trades_by_party", json(&(party, seq))?, json(&())?));
        }
        changes.push(put(
            "trades_by_batch",
            json(&(&trade.batch, seq))?,
            json(&())?,
        ));
        changes.push(put("trades_by_kind", json(&(trade.kind, seq))?, json(&())?));
        Ok(true)
    })?;
    store.scan_state(
        Some("certificates"),
        RowRange::default(),
        &mut |_, key, value| {
            let certificate: crate::state::Certificate = read("a layout-1 certificate row", value)?;
            let seq = SeqKey(certificate.seq);
            removals.push(remove("certificates", key));
            changes.push(put("certificates", json(&seq)?, json(&certificate)?));
            changes.push(put(
                "certificates_by_holder",
                json(&(&certificate.holder, seq))?,
                json(&())?,
            ));
            Ok(true)
        },
    )?;
    store.scan_state(
        Some("latest_prices"),
        RowRange::default(),
        &mut |_, key, _| {
            removals.push(remove("latest_prices", key));
            Ok(true)
        },
    )?;
    // Removals first, so that a layout-2 key equal to a layout-1 one (an entry id of 20 digits)
    // is written, not removed.
    removals.append(&mut changes);
    meta.layout = LAYOUT;
    store.append(Append {
        first_seq: meta.size,
        leaves: &[],
        nodes: &[],
        state: &removals,
        meta: Some(&meta),
    })?;
    Ok(meta)
}
