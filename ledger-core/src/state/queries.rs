//! Queries over the state: the market as it stands, and pages of its history.
//!
//! The market (participants, batches, balances, prices, pledges...) is in memory. The history
//! (entry ids, trades, retirement certificates) is in the store once durable: a row by id is one
//! or two reads, and a page of a list ([`trade_page`], [`certificate_page`]) reads an index by key
//! range — it costs O(page), not O(history), and needs no lock on the ledger, since the store
//! holds only what is durable.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::entry::TradeKind;
use crate::ids::{
    Basis, BatchId, Date, EntryId, MethodologyId, ParticipantId, PledgeId, PriceId, ProjectId,
    ReportId, Timestamp,
};
use crate::num::{Ratio, UnitPrice};
use crate::store::{RowRange, StoreError};

use super::table::{decode, key_bytes, seq_in_key, SEQ_KEY_TAIL};
use super::{
    Balance, Batch, Certificate, Coverage, EntryRecord, History, Methodology, Participant,
    PledgeRecord, Price, Proceeds, Project, Report, SeqKey, State, TradeRecord,
};

/// Filters for trades; `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TradeFilter {
    /// Only this batch.
    pub batch: Option<BatchId>,
    /// Only trades where this participant is seller or buyer.
    pub party: Option<ParticipantId>,
    /// Only this kind.
    pub kind: Option<TradeKind>,
    /// Only trades made (`created_at`, UTC) on this day or later.
    pub since: Option<Date>,
    /// Only trades made on this day or earlier.
    pub until: Option<Date>,
}

impl TradeFilter {
    /// Whether a trade passes the filter.
    pub fn matches(&self, trade: &TradeRecord) -> bool {
        self.batch.as_ref().is_none_or(|b| *b == trade.batch)
            && self
                .party
                .as_ref()
                .is_none_or(|p| *p == trade.seller || *p == trade.buyer)
            && self.kind.is_none_or(|k| k == trade.kind)
            && self.since.is_none_or(|d| trade.created_at.date() >= d)
            && self.until.is_none_or(|d| trade.created_at.date() <= d)
    }
}

/// Filters for retirement certificates; `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateFilter {
    /// Only those of this holder.
    pub holder: Option<ParticipantId>,
}

/// One page of a history list.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryPage<T> {
    /// The rows, in ledger order (newest first if asked so).
    pub items: Vec<T>,
    /// The cursor for the next page (the last row's seq), if there is one.
    pub next: Option<u64>,
}

/// Where to start a page and which way to go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows after this seq (before it, newest first).
    pub after: Option<u64>,
    /// At most this many rows.
    pub limit: usize,
    /// Newest first.
    pub newest_first: bool,
}

/// A page of trades read from the history: through the index of the party, the batch or the
/// kind (in that order of preference), or through the trades themselves; the other filters are
/// applied to the rows the index gives. No index holds dates: a page filtered by date reads the
/// trades it passes over on its way to `limit` matches.
pub fn trade_page(
    history: &dyn History,
    filter: &TradeFilter,
    request: PageRequest,
) -> Result<HistoryPage<TradeRecord>, StoreError> {
    let keep = |t: &TradeRecord| filter.matches(t);
    if let Some(party) = &filter.party {
        indexed_page(history, "trades_by_party", party, "trades", request, &keep)
    } else if let Some(batch) = &filter.batch {
        indexed_page(history, "trades_by_batch", batch, "trades", request, &keep)
    } else if let Some(kind) = &filter.kind {
        indexed_page(history, "trades_by_kind", kind, "trades", request, &keep)
    } else {
        direct_page(history, "trades", request, &keep)
    }
}

/// A page of retirement certificates read from the history.
pub fn certificate_page(
    history: &dyn History,
    filter: &CertificateFilter,
    request: PageRequest,
) -> Result<HistoryPage<Certificate>, StoreError> {
    match &filter.holder {
        Some(holder) => indexed_page(
            history,
            "certificates_by_holder",
            holder,
            "certificates",
            request,
            &|_| true,
        ),
        None => direct_page(history, "certificates", request, &|_| true),
    }
}

/// The key range of a page over keys that end in a [`SeqKey`]: `prefix` is the bytes of the key
/// before the seq, `cursor` the whole key of the row the page starts after.
fn page_range<'a>(prefix: &'a [u8], cursor: Option<&'a [u8]>, newest_first: bool) -> RowRange<'a> {
    RowRange {
        prefix,
        after: cursor,
        reverse: newest_first,
    }
}

fn direct_page<V: DeserializeOwned>(
    history: &dyn History,
    table: &str,
    request: PageRequest,
    keep: &dyn Fn(&V) -> bool,
) -> Result<HistoryPage<V>, StoreError> {
    let cursor = request.after.map(|s| key_bytes(&SeqKey(s))).transpose()?;
    let mut rows: Vec<(u64, V)> = Vec::new();
    history.scan(
        table,
        page_range(&[], cursor.as_deref(), request.newest_first),
        &mut |key, value| {
            let SeqKey(seq) = decode(table, key)?;
            let row: V = decode(table, value)?;
            if keep(&row) {
                rows.push((seq, row));
            }
            Ok(rows.len() <= request.limit)
        },
    )?;
    Ok(finish_page(rows, request.limit))
}

fn indexed_page<X: Serialize, V: DeserializeOwned>(
    history: &dyn History,
    index: &str,
    value: &X,
    table: &str,
    request: PageRequest,
    keep: &dyn Fn(&V) -> bool,
) -> Result<HistoryPage<V>, StoreError> {
    let mut prefix = key_bytes(&(value, SeqKey(0)))?;
    prefix.truncate(prefix.len() - SEQ_KEY_TAIL);
    let cursor = request
        .after
        .map(|s| key_bytes(&(value, SeqKey(s))))
        .transpose()?;
    let mut rows: Vec<(u64, V)> = Vec::new();
    history.scan(
        index,
        page_range(&prefix, cursor.as_deref(), request.newest_first),
        &mut |key, _| {
            let seq = seq_in_key(index, key)?;
            let bytes = history
                .row(table, &key_bytes(&SeqKey(seq))?)?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "{index} names entry {seq}, which has no row in {table}"
                    ))
                })?;
            let row: V = decode(table, &bytes)?;
            if keep(&row) {
                rows.push((seq, row));
            }
            Ok(rows.len() <= request.limit)
        },
    )?;
    Ok(finish_page(rows, request.limit))
}

fn finish_page<V>(mut rows: Vec<(u64, V)>, limit: usize) -> HistoryPage<V> {
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(seq, _)| *seq)
    } else {
        None
    };
    HistoryPage {
        items: rows.into_iter().map(|(_, v)| v).collect(),
        next,
    }
}

impl State {
    /// The ledger's operator, once the first entry is in.
    pub fn operator(&self) -> Option<&ParticipantId> {
        self.operator.get(&())
    }

    /// Where an entry id was used.
    pub fn entry(&self, id: &EntryId) -> Result<Option<EntryRecord>, StoreError> {
        self.entries.lookup("entries", id, &self.history)
    }

    /// A participant.
    pub fn participant(&self, id: &ParticipantId) -> Option<&Participant> {
        self.participants.get(id)
    }

    /// The keys a participant held before its current one (rotated away), in no order. Only a
    /// refused signature asks, so a scan of the key table is enough.
    pub fn former_keys(&self, id: &ParticipantId) -> Vec<crate::ids::PublicKey> {
        let Some(current) = self.participant(id).map(|p| p.public_key.to_bytes()) else {
            return Vec::new();
        };
        self.keys
            .rows
            .iter()
            .filter(|(bytes, holder)| *holder == id && **bytes != current)
            .filter_map(|(bytes, _)| ed25519_dalek::VerifyingKey::from_bytes(bytes).ok())
            .map(crate::ids::PublicKey::from)
            .collect()
    }

    /// All participants, by id.
    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.participants.rows.values()
    }

    /// A methodology.
    pub fn methodology(&self, id: &MethodologyId) -> Option<&Methodology> {
        self.methodologies.get(id)
    }

    /// All methodologies, by id.
    pub fn methodologies(&self) -> impl Iterator<Item = &Methodology> {
        self.methodologies.rows.values()
    }

    /// A project.
    pub fn project(&self, id: &ProjectId) -> Option<&Project> {
        self.projects.get(id)
    }

    /// All projects, by id.
    pub fn projects(&self) -> impl Iterator<Item = &Project> {
        self.projects.rows.values()
    }

    /// A monitoring report, with verified and issued quantities.
    pub fn report(&self, id: &ReportId) -> Option<&Report> {
        self.reports.get(id)
    }

    /// All monitoring reports, by id.
    pub fn reports(&self) -> impl Iterator<Item = &Report> {
        self.reports.rows.values()
    }

    /// A batch.
    pub fn batch(&self, id: &BatchId) -> Option<&Batch> {
        self.batches.get(id)
    }

    /// All batches, by id.
    pub fn batches(&self) -> impl Iterator<Item = &Batch> {
        self.batches.rows.values()
    }

    /// What a holder has of a batch (zero if nothing).
    pub fn balance(&self, holder: &ParticipantId, batch: &BatchId) -> Balance {
        self.balances
            .get(&(holder.clone(), batch.clone()))
            .copied()
            .unwrap_or_default()
    }

    /// Everything a holder has, by batch (batches it no longer holds included, at zero).
    pub fn balances_of<'a>(
        &'a self,
        holder: &'a ParticipantId,
    ) -> impl Iterator<Item = (&'a BatchId, &'a Balance)> + 'a {
        self.balances
            .rows
            .range((holder.clone(), BatchId::lowest())..)
            .take_while(move |((h, _), _)| h == holder)
            .map(|((_, batch), balance)| (batch, balance))
    }

    /// Every holding of a batch: holder and balance, by holder.
    pub fn holders_of<'a>(
        &'a self,
        batch: &'a BatchId,
    ) -> impl Iterator<Item = (&'a ParticipantId, &'a Balance)> + 'a {
        self.balances
            .rows
            .iter()
            .filter(move |((_, b), _)| b == batch)
            .map(|((holder, _), balance)| (holder, balance))
    }

    /// A reference price.
    pub fn price(&self, id: &PriceId) -> Option<&Price> {
        self.prices.get(id)
    }

    /// The price of a basis in force at `at`: of those already effective then, the one that took
    /// effect last (the later published, if two took effect at once). A price published to take
    /// effect later is not in force before its `effective_at`.
    pub fn price_in_force(&self, basis: &Basis, at: &Timestamp) -> Option<&Price> {
        self.prices
            .rows
            .values()
            .filter(|p| p.basis == *basis && p.effective_at <= *at)
            .max_by(|a, b| a.effective_at.cmp(&b.effective_at).then(a.seq.cmp(&b.seq)))
    }

    /// The price in force at `at` of each basis that has one, by basis.
    pub fn prices_in_force(&self, at: &Timestamp) -> Vec<&Price> {
        let bases: std::collections::BTreeSet<&Basis> =
            self.prices.rows.values().map(|p| &p.basis).collect();
        bases
            .into_iter()
            .filter_map(|basis| self.price_in_force(basis, at))
            .collect()
    }

    /// Price history, oldest first by effective time, of one basis or all (prices published to
    /// take effect later included).
    pub fn price_history(&self, basis: Option<&Basis>) -> Vec<&Price> {
        let mut prices: Vec<&Price> = self
            .prices
            .rows
            .values()
            .filter(|p| basis.is_none_or(|b| *b == p.basis))
            .collect();
        prices.sort_by(|a, b| a.effective_at.cmp(&b.effective_at).then(a.seq.cmp(&b.seq)));
        prices
    }

    /// A trade, by its id.
    pub fn trade(&self, id: &EntryId) -> Result<Option<TradeRecord>, StoreError> {
        match self.entry(id)? {
            Some(entry) => self.trade_at(entry.seq),
            None => Ok(None),
        }
    }

    /// The trade of entry `seq`, if that entry is a trade.
    pub fn trade_at(&self, seq: u64) -> Result<Option<TradeRecord>, StoreError> {
        self.trades.lookup("trades", &SeqKey(seq), &self.history)
    }

    /// Every trade matching the filter, in ledger order. Reads the whole history of trades: a
    /// service pages with [`trade_page`] instead.
    pub fn trades(&self, filter: &TradeFilter) -> Result<Vec<TradeRecord>, StoreError> {
        self.trades
            .select("trades", &self.history, &|t| filter.matches(t))
    }

    /// A retirement certificate, by its number (the entry id).
    pub fn certificate(&self, id: &EntryId) -> Result<Option<Certificate>, StoreError> {
        match self.entry(id)? {
            Some(entry) => {
                self.certificates
                    .lookup("certificates", &SeqKey(entry.seq), &self.history)
            }
            None => Ok(None),
        }
    }

    /// Every retirement certificate, in ledger order, of one holder or all. Reads the whole
    /// history of retirements: a service pages with [`certificate_page`] instead.
    pub fn certificates(
        &self,
        holder: Option<&ParticipantId>,
    ) -> Result<Vec<Certificate>, StoreError> {
        self.certificates
            .select("certificates", &self.history, &|c| {
                holder.is_none_or(|h| *h == c.holder)
            })
    }

    /// A pledge.
    pub fn pledge(&self, id: &PledgeId) -> Option<&PledgeRecord> {
        self.pledges.get(id)
    }

    /// All pledges, by id.
    pub fn pledges(&self) -> impl Iterator<Item = &PledgeRecord> {
        self.pledges.rows.values()
    }

    /// A pledge's collateral valued at a unit price: the locked tonnes × the price, and that
    /// value ÷ the outstanding loan.
    pub fn coverage(pledge: &PledgeRecord, unit_price: UnitPrice) -> Coverage {
        let collateral_value = pledge.quantity.tonnes().at(unit_price);
        let coverage_ratio = collateral_value.ratio_to(pledge.outstanding);
        Coverage {
            unit_price,
            collateral_value,
            outstanding: pledge.outstanding,
            limit: pledge.limit,
            below_threshold: match (coverage_ratio, pledge.margin_threshold) {
                (Some(ratio), Some(threshold)) => ratio < threshold.value(),
                _ => false,
            },
            coverage_ratio,
            margin_threshold: pledge.margin_threshold,
        }
    }

    /// A pledge's coverage at the price in force at `at` of its reference price's basis (and
    /// currency) — the reference price itself if none of them is in force — with that price.
    pub fn coverage_at(&self, pledge: &PledgeRecord, at: &Timestamp) -> Option<(&Price, Coverage)> {
        let reference = self.price(&pledge.price_ref)?;
        let price = self
            .price_in_force(&reference.basis, at)
            .filter(|p| p.currency == pledge.currency)
            .unwrap_or(reference);
        Some((price, Self::coverage(pledge, price.unit_price)))
    }

    /// Whether a pledge is active and its coverage at `at` is below `ratio` (a pledge with
    /// nothing outstanding has no coverage ratio, and is not).
    pub fn covered_below(&self, pledge: &PledgeRecord, ratio: Ratio, at: &Timestamp) -> bool {
        pledge.status == super::PledgeStatus::Active
            && self
                .coverage_at(pledge, at)
                .and_then(|(_, c)| c.coverage_ratio)
                .is_some_and(|r| r < ratio.value())
    }

    /// What each project has raised for its restoration, by project and currency.
    pub fn proceeds(&self) -> impl Iterator<Item = &Proceeds> {
        self.proceeds.rows.values()
    }

    /// What one project has raised, by currency.
    pub fn proceeds_of<'a>(&'a self, project: &'a ProjectId) -> impl Iterator<Item = &'a Proceeds> {
        self.proceeds
            .rows
            .values()
            .filter(move |p| p.project == *project)
    }
}
