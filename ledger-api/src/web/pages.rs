//! The pages: each handler parses its query, reads the core, and renders a template. Lists build
//! a [`Table`], which the page shows and the `.csv` route exports as it is.

use std::str::FromStr;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ledger_core::entry::TradeKind;
use ledger_core::ids::{BatchId, Date, EntryId, ParticipantId, PledgeId, ProjectId, Timestamp};
use ledger_core::ledger::Ledger;
use ledger_core::num::{Money, Tonnes};
use ledger_core::state::{
    Batch, Certificate, CertificateFilter, PageRequest, PledgeRecord, PledgeStatus, Price,
    State as LedgerState, TradeFilter, TradeRecord,
};
use ledger_core::{checkpoint, merkle};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chart::{PriceChart, Supply};
use super::format::{self, Label};
use super::table::{figure, text, Cell, Table};
use super::{html, PagePath, PageQuery, WebError};
use crate::problem::ApiError;
use crate::routes::AppState;

/// Rows on a page when none is asked for.
const PAGE_ROWS: usize = 50;
/// Rows of the "latest" tables of the overview.
const LATEST_ROWS: usize = 5;

fn render(page: &impl Template) -> Result<Response, WebError> {
    Ok(html(StatusCode::OK, page.render()?))
}

/// A query value: blank (as an empty form field sends it) reads as absent; anything else must
/// parse, or the page is a 400.
/// The two handlers of a list page: `$html` answers the page, `$csv` the same rows as CSV.
macro_rules! list_handlers {
    ($html:ident, $csv:ident, $list:ident, $query:ty) => {
        pub async fn $html(
            State(state): State<AppState>,
            PageQuery(query): PageQuery<$query>,
        ) -> Result<Response, WebError> {
            $list(state, query, Form::Html).await
        }

        pub async fn $csv(
            State(state): State<AppState>,
            PageQuery(query): PageQuery<$query>,
        ) -> Result<Response, WebError> {
            $list(state, query, Form::Csv).await
        }
    };
}

fn parsed<T: FromStr>(name: &str, value: &Option<String>) -> Result<Option<T>, WebError>
where
    T::Err: std::fmt::Display,
{
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|e| {
            WebError::bad_request(format!("The parameter {name}=“{text}” is not valid: {e}"))
        }),
    }
}

/// How many rows: 1 to the service's largest page.
fn rows(state: &AppState, limit: Option<usize>) -> Result<usize, WebError> {
    match limit {
        None => Ok(PAGE_ROWS.min(state.limits().page_max)),
        Some(0) => Err(WebError::bad_request(format!(
            "limit must be 1 to {}",
            state.limits().page_max
        ))),
        Some(n) => Ok(n.min(state.limits().page_max)),
    }
}

/// A link to `path` with the query `query` (blank fields left out).
fn link(path: &str, query: &impl Serialize) -> String {
    let text = serde_urlencoded::to_string(query).unwrap_or_default();
    let text: Vec<&str> = text
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.ends_with('='))
        .collect();
    if text.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", text.join("&"))
    }
}

/// Pages through rows sorted by `key`: those after the cursor, at most `limit`, and the cursor
/// of the next page.
fn page_by<T, K>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
    after: Option<&K>,
    limit: usize,
) -> (Vec<T>, Option<K>)
where
    K: PartialOrd,
{
    let mut items: Vec<T> = items
        .into_iter()
        .filter(|item| after.is_none_or(|a| key(item) > *a))
        .take(limit.saturating_add(1))
        .collect();
    if items.len() > limit {
        items.truncate(limit);
        let next = items.last().map(&key);
        (items, next)
    } else {
        (items, None)
    }
}

fn participant_cell(id: &ParticipantId) -> Cell {
    Cell::plain(id).link(format!("/participants/{id}"))
}

fn batch_cell(id: &BatchId) -> Cell {
    Cell::plain(id).link(format!("/batches/{id}"))
}

fn project_cell(id: &ProjectId) -> Cell {
    Cell::plain(id).link(format!("/projects/{id}"))
}

fn tonnes_cell(value: Tonnes) -> Cell {
    Cell::figure(format::tonnes(value), value)
}

fn money_cell(value: Money) -> Cell {
    Cell::figure(format::number(value), value)
}

fn optional<T>(value: Option<T>, cell: impl FnOnce(T) -> Cell) -> Cell {
    value.map_or_else(Cell::none, cell)
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

fn trades_table(trades: &[TradeRecord]) -> Table {
    let mut table = Table::new(
        "trades",
        vec![
            text("序号", "Seq", "seq"),
            text("交易编号", "Trade", "id"),
            text("日期", "Date", "created_at"),
            text("类型", "Kind", "kind"),
            text("卖方", "Seller", "seller"),
            text("买方", "Buyer", "buyer"),
            text("批次", "Batch", "batch"),
            figure("数量 (吨)", "Quantity (t)", "quantity"),
            figure("单价", "Unit price", "unit_price"),
            figure("金额", "Amount", "amount"),
            text("币种", "Currency", "currency"),
            text("参考价", "Reference price", "price_ref"),
        ],
    );
    for t in trades {
        let kind = format::trade_kind(t.kind);
        table.push(vec![
            Cell::seq(t.seq),
            Cell::plain(&t.id).link(format!("/entries/{}", t.seq)),
            Cell::plain(t.created_at.date()),
            Cell::word(kind.zh, kind.en, t.kind),
            participant_cell(&t.seller),
            participant_cell(&t.buyer),
            batch_cell(&t.batch),
            Cell::figure(format::tonnes_text(t.quantity.value()), t.quantity),
            optional(t.unit_price, |p| Cell::figure(format::number(p), p)),
            optional(t.amount, money_cell),
            optional(t.currency.as_ref(), Cell::plain),
            optional(t.price_ref.as_ref(), |p| {
                Cell::plain(p).link(format!("/prices#price-{p}"))
            }),
        ]);
    }
    table
}

fn certificates_table(certificates: &[Certificate]) -> Table {
    let mut table = Table::new(
        "certificates",
        vec![
            text("序号", "Seq", "seq"),
            text("证书编号", "Certificate", "id"),
            text("注销日期", "Retired", "retired_at"),
            text("持有方", "Holder", "holder"),
            text("受益方", "Beneficiary", "beneficiary"),
            text("用途", "Purpose", "purpose"),
            text("批次", "Batch", "batch"),
            text("项目", "Project", "project"),
            text("年份", "Vintage", "vintage"),
            figure("数量 (吨)", "Quantity (t)", "quantity"),
        ],
    );
    for c in certificates {
        table.push(vec![
            Cell::seq(c.seq),
            Cell::plain(&c.id).link(format!("/certificates/{}", c.id)),
            Cell::plain(format::time(&c.retired_at)),
            participant_cell(&c.holder),
            Cell::plain(&c.beneficiary),
            Cell::plain(&c.purpose),
            batch_cell(&c.batch),
            project_cell(&c.project),
            Cell::plain(c.vintage),
            Cell::figure(format::tonnes_text(c.quantity.value()), c.quantity),
        ]);
    }
    table
}

/// A pledge's collateral valued at the price in force now of its reference price's basis (and
/// currency); the reference price if none is newer.
struct Valuation {
    price: Price,
    collateral: Money,
    ratio: Option<rust_decimal::Decimal>,
}

fn valuation(s: &LedgerState, pledge: &PledgeRecord, now: &Timestamp) -> Option<Valuation> {
    let reference = s.price(&pledge.price_ref)?;
    let latest = s
        .price_in_force(&reference.basis, now)
        .filter(|p| p.currency == pledge.currency)
        .unwrap_or(reference);
    let coverage = LedgerState::coverage(pledge, latest.unit_price);
    Some(Valuation {
        price: latest.clone(),
        collateral: coverage.collateral_value,
        ratio: coverage.coverage_ratio,
    })
}

fn pledges_table(s: &LedgerState, pledges: &[&PledgeRecord]) -> Table {
    let now = Timestamp::now();
    let mut table = Table::new(
        "pledges",
        vec![
            text("序号", "Seq", "seq"),
            text("质押编号", "Pledge", "id"),
            text("状态", "Status", "status"),
            text("出质人", "Pledgor", "pledgor"),
            text("质权银行", "Bank", "bank"),
            text("批次", "Batch", "batch"),
            figure("质押数量 (吨)", "Quantity (t)", "quantity"),
            figure("授信额度", "Facility limit", "limit"),
            figure("未偿余额", "Outstanding", "outstanding"),
            text("币种", "Currency", "currency"),
            text("现行价格", "Price in force", "coverage_price"),
            figure("押品价值", "Collateral value", "collateral_value"),
            figure("覆盖率", "Coverage", "coverage_ratio"),
            text("到期日", "Maturity", "maturity"),
        ],
    );
    for p in pledges {
        let status = format::pledge_status(p.status);
        let value = valuation(s, p, &now);
        table.push(vec![
            Cell::seq(p.seq),
            Cell::plain(&p.id).link(format!("/pledges/{}", p.id)),
            Cell::word(status.zh, status.en, p.status.word()),
            participant_cell(&p.pledgor),
            participant_cell(&p.bank),
            batch_cell(&p.batch),
            Cell::figure(format::tonnes_text(p.quantity.value()), p.quantity),
            money_cell(p.limit),
            money_cell(p.outstanding),
            Cell::plain(&p.currency),
            optional(value.as_ref(), |v| {
                Cell::plain(format!(
                    "{} · {}",
                    v.price.id,
                    format::number(v.price.unit_price)
                ))
                .link(format!("/prices#price-{}", v.price.id))
            }),
            optional(value.as_ref(), |v| money_cell(v.collateral)),
            optional(value.as_ref().and_then(|v| v.ratio), |r| {
                Cell::figure(r.to_string(), r)
            }),
            optional(p.maturity, Cell::plain),
        ]);
    }
    table
}

fn batches_table(batches: &[&Batch]) -> Table {
    let mut table = Table::new(
        "batches",
        vec![
            text("序号", "Seq", "seq"),
            text("批次", "Batch", "id"),
            text("项目", "Project", "project"),
            text("年份", "Vintage", "vintage"),
            text("监测报告", "Report", "report"),
            figure("签发", "Issued (t)", "issued"),
            figure("可用", "Available", "available"),
            figure("质押", "Pledged", "pledged"),
            figure("缓冲池", "Buffer", "buffer"),
            figure("已注销", "Retired", "retired"),
            figure("已逆转", "Reversed", "reversed"),
        ],
    );
    for b in batches {
        table.push(vec![
            Cell::seq(b.seq),
            batch_cell(&b.id),
            project_cell(&b.project),
            Cell::plain(b.vintage),
            Cell::plain(&b.report),
            tonnes_cell(b.issued),
            tonnes_cell(b.available),
            tonnes_cell(b.pledged),
            tonnes_cell(b.buffer),
            tonnes_cell(b.retired),
            tonnes_cell(b.reversed),
        ]);
    }
    table
}

fn prices_table(prices: &[&Price], in_force: &[PriceIdText]) -> Table {
    let mut table = Table::new(
        "prices",
        vec![
            text("序号", "Seq", "seq"),
            text("价格编号", "Price", "id"),
            text("价格类型", "Basis", "basis"),
            text("生效时间", "Effective", "effective_at"),
            figure("单价 (每吨)", "Unit price (per t)", "unit_price"),
            text("币种", "Currency", "currency"),
            text("定价机构", "Publisher", "publisher"),
            text("现行", "In force", "in_force"),
        ],
    );
    for p in prices {
        let (zh, en) = format::basis(p.basis.as_str());
        let now = in_force.iter().any(|id| id.0 == p.id.as_str());
        table.push(vec![
            Cell::seq(p.seq),
            Cell::plain(&p.id),
            Cell {
                text: zh,
                raw: p.basis.to_string(),
                href: None,
                en: Some(en),
                numeric: false,
            },
            Cell::plain(format::time(&p.effective_at)),
            Cell::figure(format::number(p.unit_price), p.unit_price),
            Cell::plain(&p.currency),
            participant_cell(&p.publisher),
            if now {
                Cell::word("现行", "in force", "true")
            } else {
                Cell::word("—", "", "false")
            },
        ]);
    }
    table
}

/// A price id, for "in force" marks.
struct PriceIdText(String);

// ---------------------------------------------------------------------------------------------
// The overview
// ---------------------------------------------------------------------------------------------

/// The latest checkpoint as the overview shows it.
pub struct CheckpointView {
    /// The note as served.
    pub note: String,
    /// Tree size.
    pub size: u64,
    /// Root, hex.
    pub root_hex: String,
    /// Root, base64 (as in the note).
    pub root_base64: String,
    /// The signature line.
    pub signature: String,
    /// When its last entry was accepted.
    pub last_entry_at: String,
}

/// The operator's key as visitors compare it with the published one.
pub struct KeyView {
    /// The C2SP verifier key.
    pub verifier_key: String,
    /// SHA-256 of the 32-byte key, hex in groups of four.
    pub fingerprint: String,
    /// The key, base64.
    pub base64: String,
}

fn key_view(ledger: &Ledger) -> KeyView {
    use sha2::Digest as _;
    let key = ledger.operator_key();
    let digest = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    KeyView {
        verifier_key: checkpoint::verifier_key(ledger.origin().as_str(), &key),
        fingerprint: group4(&digest),
        base64: ledger_core::ids::PublicKey::from(key).to_string(),
    }
}

/// `abcd1234…` → `abcd 1234 …`.
fn group4(hex: &str) -> String {
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn checkpoint_view(ledger: &Ledger) -> Result<CheckpointView, ApiError> {
    let note = ledger.checkpoint()?;
    let mut lines = note.lines();
    let _origin = lines.next();
    let size: u64 = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    let root_base64 = lines.next().unwrap_or_default().to_owned();
    let signature = note
        .lines()
        .rev()
        .find(|l| l.starts_with('\u{2014}'))
        .unwrap_or_default()
        .to_owned();
    let root = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&root_base64)
            .map(hex::encode)
            .unwrap_or_default()
    };
    let last_entry_at = match size.checked_sub(1) {
        Some(last) => format::time(&ledger.envelope(last)?.accepted_at),
        None => "—".to_owned(),
    };
    Ok(CheckpointView {
        note,
        size,
        root_hex: root,
        root_base64,
        signature,
        last_entry_at,
    })
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct Overview {
    origin: String,
    checkpoint: CheckpointView,
    key: KeyView,
    supply: Supply,
    batches: usize,
    prices: Vec<PriceInForce>,
    chart: PriceChart,
    proceeds: Table,
    trades: Table,
    certificates: Table,
    pledges: Table,
}

/// A price in force, for the overview.
pub struct PriceInForce {
    id: String,
    basis_zh: String,
    basis_en: String,
    unit_price: String,
    currency: String,
    effective: String,
    seq: u64,
}

fn prices_in_force(s: &LedgerState) -> Vec<PriceInForce> {
    s.prices_in_force(&Timestamp::now())
        .into_iter()
        .map(|p| {
            let (basis_zh, basis_en) = format::basis(p.basis.as_str());
            PriceInForce {
                id: p.id.to_string(),
                basis_zh,
                basis_en,
                unit_price: format::number(p.unit_price),
                currency: p.currency.to_string(),
                effective: format::time(&p.effective_at),
                seq: p.seq,
            }
        })
        .collect()
}

pub async fn overview(State(state): State<AppState>) -> Result<Response, WebError> {
    let page = state
        .blocking(|ledger| {
            let checkpoint = checkpoint_view(ledger)?;
            let newest = PageRequest {
                after: None,
                limit: LATEST_ROWS,
                newest_first: true,
            };
            let trades = ledger.trade_page(&TradeFilter::default(), newest)?;
            let certificates = ledger.certificate_page(&CertificateFilter::default(), newest)?;
            let (supply, batches, prices, chart, proceeds, pledges) = ledger.read(|s| {
                let all: Vec<&Batch> = s.batches().collect();
                let supply = Supply::of(&all);
                let history = s.price_history(None);
                let mut pledges: Vec<&PledgeRecord> = s.pledges().collect();
                pledges.sort_by_key(|p| std::cmp::Reverse(p.seq));
                pledges.truncate(LATEST_ROWS);
                (
                    supply,
                    all.len(),
                    prices_in_force(s),
                    PriceChart::of(&history),
                    embed(
                        proceeds_page(s, None, None, PAGE_ROWS),
                        "/proceeds",
                        &ProjectListQuery::default(),
                        |q, a| q.after = a,
                    ),
                    pledges_table(s, &pledges),
                )
            });
            let mut trades_table = trades_table(&trades.items);
            trades_table.csv = Some(format!("/trades.csv?limit={LATEST_ROWS}"));
            trades_table.next = Some("/trades".to_owned());
            let mut certificates_table = certificates_table(&certificates.items);
            certificates_table.csv = Some(format!("/certificates.csv?limit={LATEST_ROWS}"));
            certificates_table.next = Some("/certificates".to_owned());
            let mut pledges = pledges;
            pledges.csv = Some("/pledges.csv".to_owned());
            pledges.next = Some("/pledges".to_owned());
            Ok(Overview {
                origin: ledger.origin().to_string(),
                checkpoint,
                key: key_view(ledger),
                supply,
                batches,
                prices,
                chart,
                proceeds,
                trades: trades_table,
                certificates: certificates_table,
                pledges,
            })
        })
        .await?;
    render(&page)
}

// ---------------------------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------------------------

/// A list page: a heading, an introduction, optional filters, and one table.
#[derive(Template)]
#[template(path = "list.html")]
pub struct ListPage {
    zh: &'static str,
    en: &'static str,
    intro: &'static str,
    filters: Option<TradeFilters>,
    chart: Option<PriceChart>,
    table: Table,
}

/// The trade filter form, with what is selected.
pub struct TradeFilters {
    kind: String,
    party: String,
    batch: String,
    since: String,
    until: String,
    order: String,
}

impl TradeFilters {
    fn kinds(&self) -> Vec<(&'static str, &'static str, &'static str, bool)> {
        [
            ("acquisition", "收储", "acquisition"),
            ("eco_compensation", "生态补偿", "eco-compensation"),
            ("transfer", "转让", "transfer"),
        ]
        .into_iter()
        .map(|(value, zh, en)| (value, zh, en, self.kind == value))
        .collect()
    }

    fn newest(&self) -> bool {
        self.order != "oldest"
    }
}

/// What a list answers: the page (HTML) or the same rows (CSV).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Html,
    Csv,
}

fn respond(form: Form, page: ListPage, next_csv: Option<String>) -> Result<Response, WebError> {
    match form {
        Form::Html => render(&page),
        Form::Csv => page.table.csv_response(next_csv),
    }
}

/// The cursor and size of a list, as every list takes them.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
}

/// Links of a list: the next page and its CSV, the CSV of this page, the first page.
fn paging_links<Q: Serialize + Clone>(
    table: &mut Table,
    path: &str,
    query: &Q,
    after: Option<String>,
    next: Option<String>,
    set_after: impl Fn(&mut Q, Option<String>),
) -> Option<String> {
    let mut q = query.clone();
    set_after(&mut q, after.clone());
    table.csv = Some(link(&format!("{path}.csv"), &q));
    if after.is_some() {
        let mut first = query.clone();
        set_after(&mut first, None);
        table.first = Some(link(path, &first));
    }
    next.map(|n| {
        let mut q = query.clone();
        set_after(&mut q, Some(n));
        table.next = Some(link(path, &q));
        link(&format!("{path}.csv"), &q)
    })
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TradesQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    party: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    order: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
}

fn trade_kind_of(value: &Option<String>) -> Result<Option<TradeKind>, WebError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some("acquisition") => Ok(Some(TradeKind::Acquisition)),
        Some("eco_compensation") => Ok(Some(TradeKind::EcoCompensation)),
        Some("transfer") => Ok(Some(TradeKind::Transfer)),
        Some(other) => Err(WebError::bad_request(format!(
            "The parameter kind=“{other}” is not valid: it is acquisition, eco_compensation or transfer"
        ))),
    }
}

fn newest_first(order: &Option<String>) -> Result<bool, WebError> {
    match order.as_deref().map(str::trim) {
        None | Some("") | Some("newest") => Ok(true),
        Some("oldest") => Ok(false),
        Some(other) => Err(WebError::bad_request(format!(
            "The parameter order=“{other}” is not valid: it is newest or oldest"
        ))),
    }
}

async fn trades_list(
    state: AppState,
    query: TradesQuery,
    form: Form,
) -> Result<Response, WebError> {
    let filter = TradeFilter {
        kind: trade_kind_of(&query.kind)?,
        party: parsed::<ParticipantId>("party", &query.party)?,
        batch: parsed::<BatchId>("batch", &query.batch)?,
        since: parsed::<Date>("since", &query.since)?,
        until: parsed::<Date>("until", &query.until)?,
    };
    let request = PageRequest {
        after: parsed::<u64>("after", &query.after)?,
        limit: rows(&state, query.limit)?,
        newest_first: newest_first(&query.order)?,
    };
    let page = state
        .blocking(move |ledger| Ok(ledger.trade_page(&filter, request)?))
        .await?;
    let mut table = trades_table(&page.items);
    let next_csv = paging_links(
        &mut table,
        "/trades",
        &query,
        query.after.clone(),
        page.next.map(|s| s.to_string()),
        |q, a| q.after = a,
    );
    let show = |v: &Option<String>| v.clone().unwrap_or_default();
    let filters = TradeFilters {
        kind: show(&query.kind),
        party: show(&query.party),
        batch: show(&query.batch),
        since: show(&query.since),
        until: show(&query.until),
        order: show(&query.order),
    };
    let page = ListPage {
        zh: "交易",
        en: "Trades",
        intro: "Every trade in the ledger: acquisitions (收储) by the ecological-asset platform, ecological compensation (生态补偿) by enterprises and public bodies, and transfers, with their prices and amounts.",
        filters: Some(filters),
        chart: None,
        table,
    };
    respond(form, page, next_csv)
}

list_handlers!(trades, trades_csv, trades_list, TradesQuery);

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertificatesQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    holder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    order: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
}

async fn certificates_list(
    state: AppState,
    query: CertificatesQuery,
    form: Form,
) -> Result<Response, WebError> {
    let filter = CertificateFilter {
        holder: parsed::<ParticipantId>("holder", &query.holder)?,
    };
    let request = PageRequest {
        after: parsed::<u64>("after", &query.after)?,
        limit: rows(&state, query.limit)?,
        newest_first: newest_first(&query.order)?,
    };
    let page = state
        .blocking(move |ledger| Ok(ledger.certificate_page(&filter, request)?))
        .await?;
    let mut table = certificates_table(&page.items);
    let next_csv = paging_links(
        &mut table,
        "/certificates",
        &query,
        query.after.clone(),
        page.next.map(|s| s.to_string()),
        |q, a| q.after = a,
    );
    let page = ListPage {
        zh: "注销证明",
        en: "Retirement certificates",
        intro: "Sink retired for good against an emissions claim (消纳 / 抵消). Each certificate is numbered by its entry id and can be printed; its page checks its proof in your browser.",
        filters: None,
        chart: None,
        table,
    };
    respond(form, page, next_csv)
}

list_handlers!(
    certificates,
    certificates_csv,
    certificates_list,
    CertificatesQuery
);

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PledgesQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bank: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pledgor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
}

fn pledge_status_of(value: &Option<String>) -> Result<Option<PledgeStatus>, WebError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some("active") => Ok(Some(PledgeStatus::Active)),
        Some("released") => Ok(Some(PledgeStatus::Released)),
        Some("enforced") => Ok(Some(PledgeStatus::Enforced)),
        Some(other) => Err(WebError::bad_request(format!(
            "The parameter status=“{other}” is not valid: it is active, released or enforced"
        ))),
    }
}

async fn pledges_list(
    state: AppState,
    query: PledgesQuery,
    form: Form,
) -> Result<Response, WebError> {
    let bank = parsed::<ParticipantId>("bank", &query.bank)?;
    let pledgor = parsed::<ParticipantId>("pledgor", &query.pledgor)?;
    let status = pledge_status_of(&query.status)?;
    let after = parsed::<PledgeId>("after", &query.after)?;
    let limit = rows(&state, query.limit)?;
    let (mut table, next) = state
        .read(move |s| {
            let matching = s.pledges().filter(|p| {
                bank.as_ref().is_none_or(|b| *b == p.bank)
                    && pledgor.as_ref().is_none_or(|o| *o == p.pledgor)
                    && status.is_none_or(|st| st == p.status)
            });
            let (items, next) = page_by(matching, |p| p.id.clone(), after.as_ref(), limit);
            Ok((pledges_table(s, &items), next.map(|n| n.to_string())))
        })
        .await?;
    let next_csv = paging_links(
        &mut table,
        "/pledges",
        &query,
        query.after.clone(),
        next,
        |q, a| q.after = a,
    );
    let page = ListPage {
        zh: "质押",
        en: "Pledges",
        intro: "Sink locked in a bank's favour as collateral (质押), with its facility limit (授信额度), the loan outstanding, and its coverage: the locked tonnes valued at the price in force now.",
        filters: None,
        chart: None,
        table,
    };
    respond(form, page, next_csv)
}

list_handlers!(pledges, pledges_csv, pledges_list, PledgesQuery);

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PricesQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    basis: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
}

async fn prices_list(
    state: AppState,
    query: PricesQuery,
    form: Form,
) -> Result<Response, WebError> {
    let basis = parsed::<ledger_core::ids::Basis>("basis", &query.basis)?;
    let after = parsed::<usize>("after", &query.after)?;
    let limit = rows(&state, query.limit)?;
    let (chart, mut table, next) = state
        .read(move |s| {
            let history = s.price_history(basis.as_ref());
            let in_force: Vec<PriceIdText> = s
                .prices_in_force(&Timestamp::now())
                .iter()
                .map(|p| PriceIdText(p.id.to_string()))
                .collect();
            let chart = PriceChart::of(&history);
            let (items, next) = page_by(
                history.into_iter().enumerate(),
                |(i, _)| *i,
                after.as_ref(),
                limit,
            );
            let items: Vec<&Price> = items.into_iter().map(|(_, p)| p).collect();
            Ok((
                chart,
                prices_table(&items, &in_force),
                next.map(|n| n.to_string()),
            ))
        })
        .await?;
    let next_csv = paging_links(
        &mut table,
        "/prices",
        &query,
        query.after.clone(),
        next,
        |q, a| q.after = a,
    );
    let page = ListPage {
        zh: "定价",
        en: "Reference prices",
        intro: "Reference prices signed by the pricing authority (定价): each basis's history by effective time. A price published to take effect later is not in force before then.",
        filters: None,
        chart: Some(chart),
        table,
    };
    respond(form, page, next_csv)
}

list_handlers!(prices, prices_csv, prices_list, PricesQuery);

fn projects_table(s: &LedgerState, projects: &[&ledger_core::state::Project]) -> Table {
    let mut table = Table::new(
        "projects",
        vec![
            text("序号", "Seq", "seq"),
            text("项目", "Project", "id"),
            text("名称", "Name", "name"),
            text("地区", "Region", "region"),
            figure("面积 (公顷)", "Area (ha)", "area_ha"),
            figure("面积 (亩)", "Area (mu)", "area_mu"),
            text("项目业主", "Proponent", "proponent"),
            text("方法学", "Methodology", "methodology"),
            figure("签发 (吨)", "Issued (t)", "issued"),
        ],
    );
    for p in projects {
        let issued: Tonnes = s
            .batches()
            .filter(|b| b.project == p.id)
            .map(|b| b.issued)
            .sum();
        table.push(vec![
            Cell::seq(p.registered_seq),
            project_cell(&p.id),
            Cell::plain(&p.name).link(format!("/projects/{}", p.id)),
            Cell::plain(&p.region),
            Cell::figure(format::number(p.area_ha), p.area_ha),
            Cell::figure(
                format::number(p.area_ha.mu().round()),
                p.area_ha.mu().normalize(),
            ),
            participant_cell(&p.proponent),
            Cell::plain(&p.methodology),
            tonnes_cell(issued),
        ]);
    }
    table
}

/// A list page's path and headings.
struct Heading {
    path: &'static str,
    zh: &'static str,
    en: &'static str,
    intro: &'static str,
}

/// One page of a registry of things listed by id, without filters (projects, batches,
/// participants): `rows` makes the page's table and the next page's cursor from the state, the
/// cursor asked for and the page size.
async fn registry_list<K>(
    state: AppState,
    query: Paging,
    form: Form,
    heading: Heading,
    rows_of: impl FnOnce(&LedgerState, Option<K>, usize) -> (Table, Option<String>) + Send + 'static,
) -> Result<Response, WebError>
where
    K: FromStr + Send + 'static,
    K::Err: std::fmt::Display,
{
    let after = parsed::<K>("after", &query.after)?;
    let limit = rows(&state, query.limit)?;
    let (mut table, next) = state.read(move |s| Ok(rows_of(s, after, limit))).await?;
    let next_csv = paging_links(
        &mut table,
        heading.path,
        &query,
        query.after.clone(),
        next,
        |q, a| q.after = a,
    );
    let page = ListPage {
        zh: heading.zh,
        en: heading.en,
        intro: heading.intro,
        filters: None,
        chart: None,
        table,
    };
    respond(form, page, next_csv)
}

async fn projects_list(state: AppState, query: Paging, form: Form) -> Result<Response, WebError> {
    let heading = Heading {
        path: "/projects",
        zh: "项目",
        en: "Projects",
        intro: "Wetland projects, their proponents (项目业主) and the sink issued from their verified monitoring reports.",
    };
    registry_list(
        state,
        query,
        form,
        heading,
        |s, after: Option<ProjectId>, limit| {
            let (items, next) = page_by(s.projects(), |p| p.id.clone(), after.as_ref(), limit);
            (projects_table(s, &items), next.map(|n| n.to_string()))
        },
    )
    .await
}

list_handlers!(projects, projects_csv, projects_list, Paging);

async fn batches_list(state: AppState, query: Paging, form: Form) -> Result<Response, WebError> {
    let heading = Heading {
        path: "/batches",
        zh: "签发批次",
        en: "Batches (issuances)",
        intro: "Every batch issued from a verified monitoring report, and where each of its tonnes is: issued = available + pledged + buffer + retired + reversed.",
    };
    registry_list(
        state,
        query,
        form,
        heading,
        |s, after: Option<BatchId>, limit| {
            let (items, next) = page_by(s.batches(), |b| b.id.clone(), after.as_ref(), limit);
            (batches_table(&items), next.map(|n| n.to_string()))
        },
    )
    .await
}

list_handlers!(batches, batches_csv, batches_list, Paging);

fn participants_table(participants: &[&ledger_core::state::Participant]) -> Table {
    let mut table = Table::new(
        "participants",
        vec![
            text("序号", "Seq", "seq"),
            text("参与方", "Participant", "id"),
            text("名称", "Name", "name"),
            text("角色", "Roles", "roles"),
            text("公钥", "Public key", "public_key"),
        ],
    );
    for p in participants {
        let roles: Vec<String> = p
            .roles
            .iter()
            .map(|r| format::role(*r).zh.to_owned())
            .collect();
        let raw: Vec<String> = p
            .roles
            .iter()
            .map(|r| {
                serde_json::to_value(r)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect();
        table.push(vec![
            Cell::seq(p.registered_seq),
            participant_cell(&p.id),
            Cell::plain(&p.name).link(format!("/participants/{}", p.id)),
            Cell {
                text: roles.join("、"),
                raw: raw.join(" "),
                href: None,
                en: None,
                numeric: false,
            },
            Cell::plain(p.public_key),
        ]);
    }
    table
}

async fn participants_list(
    state: AppState,
    query: Paging,
    form: Form,
) -> Result<Response, WebError> {
    let heading = Heading {
        path: "/participants",
        zh: "参与方",
        en: "Participants",
        intro: "Everyone who signs entries in this ledger, with their roles and the public key they sign with now.",
    };
    registry_list(
        state,
        query,
        form,
        heading,
        |s, after: Option<ParticipantId>, limit| {
            let (items, next) = page_by(s.participants(), |p| p.id.clone(), after.as_ref(), limit);
            (participants_table(&items), next.map(|n| n.to_string()))
        },
    )
    .await
}

list_handlers!(participants, participants_csv, participants_list, Paging);

// ---------------------------------------------------------------------------------------------
// Entries
// ---------------------------------------------------------------------------------------------

/// An entry read from its leaf, for lists and its page.
struct EntryRow {
    seq: u64,
    accepted_at: String,
    entry_type: String,
    id: String,
    signers: Vec<String>,
    leaf_hash: String,
}

fn entry_row(seq: u64, leaf: &[u8]) -> Result<(EntryRow, Value), ApiError> {
    let value: Value = serde_json::from_slice(leaf)
        .map_err(|e| ApiError::internal("integrity", format!("leaf {seq}: {e}")))?;
    let body = &value["entry"]["body"];
    let signers = value["entry"]["signatures"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .filter_map(|l| l["signer"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let accepted_at = value["accepted_at"]
        .as_str()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map_or_else(String::new, |t| format::time(&t));
    Ok((
        EntryRow {
            seq,
            accepted_at,
            entry_type: body["type"].as_str().unwrap_or_default().to_owned(),
            id: body["id"].as_str().unwrap_or_default().to_owned(),
            signers,
            leaf_hash: hex::encode(merkle::leaf_hash(leaf)),
        },
        value,
    ))
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EntriesQuery {
    /// Entries before this seq (newest first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
}

async fn entries_list(
    state: AppState,
    query: EntriesQuery,
    form: Form,
) -> Result<Response, WebError> {
    let before = parsed::<u64>("before", &query.before)?;
    let limit = rows(&state, query.limit)?;
    let (rows, next) = state
        .blocking(move |ledger| {
            let end = before.unwrap_or(u64::MAX).min(ledger.size());
            let count = u64::try_from(limit).unwrap_or(u64::MAX);
            let from = end.saturating_sub(count);
            let mut rows = Vec::new();
            for (seq, leaf) in ledger.leaves(from, limit)? {
                if seq < end {
                    rows.push(entry_row(seq, &leaf)?.0);
                }
            }
            rows.reverse();
            Ok((rows, (from > 0).then_some(from)))
        })
        .await?;
    let mut table = Table::new(
        "entries",
        vec![
            text("序号", "Seq", "seq"),
            text("接受时间", "Accepted", "accepted_at"),
            text("类型", "Type", "type"),
            text("编号", "Entry id", "id"),
            text("签名方", "Signed by", "signers"),
            text("叶哈希", "Leaf hash", "leaf_hash"),
        ],
    );
    for r in &rows {
        let label = format::entry_type(&r.entry_type);
        table.push(vec![
            Cell::seq(r.seq),
            Cell::plain(&r.accepted_at),
            Cell::word(label.zh, label.en, &r.entry_type),
            Cell::plain(&r.id).link(format!("/entries/{}", r.seq)),
            Cell::plain(r.signers.join(" ")),
            Cell {
                text: format!("{}…", r.leaf_hash.get(..16).unwrap_or_default()),
                raw: r.leaf_hash.clone(),
                href: None,
                en: None,
                numeric: false,
            },
        ]);
    }
    let next_csv = paging_links(
        &mut table,
        "/entries",
        &query,
        query.before.clone(),
        next.map(|n| n.to_string()),
        |q, a| q.before = a,
    );
    let page = ListPage {
        zh: "账本条目",
        en: "Ledger entries",
        intro: "The ledger itself, newest first: every signed entry as it was appended, each a leaf of the RFC 9162 Merkle tree whose checkpoints the operator signs.",
        filters: None,
        chart: None,
        table,
    };
    respond(form, page, next_csv)
}

list_handlers!(entries, entries_csv, entries_list, EntriesQuery);

/// One field of an entry's body, as its page lists them.
pub struct Field {
    name: String,
    value: String,
}

/// The in-browser check's section: the entry it proves, the figures on the page it compares
/// with the entry, and the key it trusts.
pub struct VerifyView {
    seq: u64,
    key: KeyView,
}

#[derive(Template)]
#[template(path = "entry.html")]
pub struct EntryPage {
    row: EntryRow,
    label: Label,
    prev: String,
    fields: Vec<Field>,
    envelope: String,
    verify: VerifyView,
}

fn field_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn entry(
    State(state): State<AppState>,
    PagePath(seq): PagePath<String>,
) -> Result<Response, WebError> {
    let seq: u64 = seq.parse().map_err(|_| {
        WebError::bad_request(format!(
            "“{seq}” is not an entry number (a sequence number from 0)."
        ))
    })?;
    let page = state
        .blocking_fresh(move |ledger| {
            if seq >= ledger.size() {
                return Err(ApiError::new(
                    "not-found",
                    format!(
                        "There is no entry {seq}; the ledger holds {} entries.",
                        ledger.size()
                    ),
                ));
            }
            let leaf = ledger.leaf(seq)?;
            let (row, value) = entry_row(seq, &leaf)?;
            let fields = value["entry"]["body"]
                .as_object()
                .map(|body| {
                    body.iter()
                        .filter(|(k, _)| !matches!(k.as_str(), "type" | "id" | "ledger"))
                        .map(|(k, v)| Field {
                            name: k.clone(),
                            value: field_text(v),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let envelope = serde_json::to_string_pretty(&value).unwrap_or_default();
            Ok(EntryPage {
                label: format::entry_type(&row.entry_type),
                prev: value["prev"].as_str().unwrap_or_default().to_owned(),
                row,
                fields,
                envelope,
                verify: VerifyView {
                    seq,
                    key: key_view(ledger),
                },
            })
        })
        .await?;
    render(&page)
}

// ---------------------------------------------------------------------------------------------
// Detail pages
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "certificate.html")]
pub struct CertificatePage {
    c: Certificate,
    retired_at: String,
    quantity: String,
    holder_name: String,
    project_name: String,
    region: String,
    origin: String,
    verify: VerifyView,
}

pub async fn certificate(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
) -> Result<Response, WebError> {
    let id: EntryId = id
        .parse()
        .map_err(|e| WebError::bad_request(format!("“{id}” is not a certificate number: {e}")))?;
    let page = state
        .blocking_fresh(move |ledger| {
            let found = ledger.read(|s| {
                s.certificate(&id).map(|c| {
                    c.map(|c| {
                        let holder_name = s
                            .participant(&c.holder)
                            .map(|p| p.name.to_string())
                            .unwrap_or_default();
                        let (project_name, region) = s
                            .project(&c.project)
                            .map(|p| (p.name.to_string(), p.region.to_string()))
                            .unwrap_or_default();
                        (c, holder_name, project_name, region)
                    })
                })
            });
            let Some((c, holder_name, project_name, region)) =
                found.map_err(|e| ApiError::from(ledger_core::ledger::LedgerError::Store(e)))?
            else {
                return Err(ApiError::new(
                    "not-found",
                    format!("注销证明 Retirement certificate “{id}” is not in this ledger."),
                ));
            };
            Ok(CertificatePage {
                retired_at: format::time(&c.retired_at),
                quantity: format::tonnes_text(c.quantity.value()),
                verify: VerifyView {
                    seq: c.seq,
                    key: key_view(ledger),
                },
                origin: ledger.origin().to_string(),
                c,
                holder_name,
                project_name,
                region,
            })
        })
        .await?;
    render(&page)
}

#[derive(Template)]
#[template(path = "pledge.html")]
pub struct PledgePage {
    p: PledgeRecord,
    status: Label,
    quantity: String,
    limit: String,
    outstanding: String,
    drawn: String,
    repaid: String,
    haircut: String,
    settled: Option<String>,
    valuation: Option<ValuationView>,
    pledgor_name: String,
    bank_name: String,
    verify: VerifyView,
}

/// Coverage at the price in force, as the pledge page shows it.
pub struct ValuationView {
    price: String,
    unit_price: String,
    effective: String,
    collateral: String,
    ratio: String,
}

pub async fn pledge(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
) -> Result<Response, WebError> {
    let id: PledgeId = id
        .parse()
        .map_err(|e| WebError::bad_request(format!("“{id}” is not a pledge id: {e}")))?;
    let page = state
        .blocking_fresh(move |ledger| {
            let key = key_view(ledger);
            ledger.read(|s| {
                let Some(p) = s.pledge(&id) else {
                    return Err(ApiError::new(
                        "not-found",
                        format!("质押 Pledge “{id}” is not in this ledger."),
                    ));
                };
                let name = |who: &ParticipantId| {
                    s.participant(who)
                        .map(|x| x.name.to_string())
                        .unwrap_or_default()
                };
                let money = |m: Money| format::money(m, &p.currency);
                let valuation = valuation(s, p, &Timestamp::now()).map(|v| ValuationView {
                    price: v.price.id.to_string(),
                    unit_price: format!(
                        "{} {}",
                        format::number(v.price.unit_price),
                        v.price.currency
                    ),
                    effective: format::time(&v.price.effective_at),
                    collateral: money(v.collateral),
                    ratio: v.ratio.map_or_else(|| "—".to_owned(), |r| r.to_string()),
                });
                Ok(PledgePage {
                    status: format::pledge_status(p.status),
                    quantity: format::tonnes_text(p.quantity.value()),
                    limit: money(p.limit),
                    outstanding: money(p.outstanding),
                    drawn: money(p.drawn),
                    repaid: money(p.repaid),
                    haircut: format::percent(p.haircut.value()),
                    settled: p.settled.map(money),
                    valuation,
                    pledgor_name: name(&p.pledgor),
                    bank_name: name(&p.bank),
                    verify: VerifyView { seq: p.seq, key },
                    p: p.clone(),
                })
            })
        })
        .await?;
    render(&page)
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DetailQuery {
    /// The cursor of the page's trade table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
}

#[derive(Template)]
#[template(path = "batch.html")]
pub struct BatchPage {
    b: Batch,
    buffer_initial: String,
    project_name: String,
    vintage: u16,
    report: ReportView,
    supply: Supply,
    holders: Table,
    chain: Table,
}

/// A monitoring report, as project and batch pages show it.
pub struct ReportView {
    id: String,
    seq: u64,
    period: String,
    verified: String,
    issued: String,
    verifier: String,
    evidence: String,
}

fn report_view(r: &ledger_core::state::Report) -> ReportView {
    ReportView {
        id: r.id.to_string(),
        seq: r.seq,
        period: format!("{} – {}", r.period_start, r.period_end),
        verified: format::tonnes_text(r.verified.value()),
        issued: format::tonnes(r.issued),
        verifier: r.verifier.to_string(),
        evidence: r.evidence_sha256.to_string(),
    }
}

pub async fn batch(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    PageQuery(query): PageQuery<DetailQuery>,
) -> Result<Response, WebError> {
    let id: BatchId = id
        .parse()
        .map_err(|e| WebError::bad_request(format!("“{id}” is not a batch id: {e}")))?;
    let request = PageRequest {
        after: parsed::<u64>("after", &query.after)?,
        limit: rows(&state, query.limit)?,
        newest_first: false,
    };
    let path = format!("/batches/{id}");
    let page = state
        .blocking_fresh(move |ledger| {
            let found = ledger.read(|s| {
                let b = s.batch(&id)?.clone();
                let project_name = s
                    .project(&b.project)
                    .map(|p| p.name.to_string())
                    .unwrap_or_default();
                let report = s.report(&b.report).map(report_view)?;
                let holders = embed(
                    holdings_page(s, None, Some(&id), None, PAGE_ROWS),
                    "/holdings",
                    &HoldingsQuery {
                        batch: Some(id.to_string()),
                        ..HoldingsQuery::default()
                    },
                    |q, a| q.after = a,
                );
                Some((b, project_name, report, holders))
            });
            let Some((b, project_name, report, holders)) = found else {
                return Err(ApiError::new(
                    "not-found",
                    format!("批次 Batch “{id}” is not in this ledger."),
                ));
            };
            let filter = TradeFilter {
                batch: Some(id.clone()),
                ..TradeFilter::default()
            };
            let trades = ledger.trade_page(&filter, request)?;
            let mut chain = trades_table(&trades.items);
            let next_csv = trades.next.map(|n| n.to_string());
            let q = TradesQuery {
                batch: Some(id.to_string()),
                order: Some("oldest".to_owned()),
                ..TradesQuery::default()
            };
            chain.csv = Some(link(
                "/trades.csv",
                &TradesQuery {
                    after: query.after.clone(),
                    ..q.clone()
                },
            ));
            if let Some(next) = next_csv {
                chain.next = Some(link(
                    &path,
                    &DetailQuery {
                        after: Some(next),
                        limit: query.limit,
                    },
                ));
            }
            if query.after.is_some() {
                chain.first = Some(path.clone());
            }
            chain.empty = "尚无交易 · no trade yet";
            let supply = Supply::of(&[&b]);
            Ok(BatchPage {
                buffer_initial: format::tonnes(b.buffer_initial),
                vintage: b.vintage,
                holders,
                b,
                project_name,
                report,
                supply,
                chain,
            })
        })
        .await?;
    render(&page)
}

#[derive(Template)]
#[template(path = "project.html")]
pub struct ProjectPage {
    p: ledger_core::state::Project,
    area_mu: String,
    proponent_name: String,
    methodology: String,
    buffer_rate: String,
    supply: Supply,
    proceeds: Table,
    reports: Table,
    batches: Table,
}

pub async fn project(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
) -> Result<Response, WebError> {
    let id: ProjectId = id
        .parse()
        .map_err(|e| WebError::bad_request(format!("“{id}” is not a project id: {e}")))?;
    let page = state
        .read_fresh(move |s| {
            let Some(p) = s.project(&id) else {
                return Err(ApiError::new(
                    "not-found",
                    format!("项目 Project “{id}” is not in this ledger."),
                ));
            };
            let batches: Vec<&Batch> = s.batches().filter(|b| b.project == id).collect();
            let for_project = ProjectListQuery {
                project: Some(id.to_string()),
                ..ProjectListQuery::default()
            };
            let reports = embed(
                reports_page(s, Some(&id), None, PAGE_ROWS),
                "/reports",
                &for_project,
                |q, a| q.after = a,
            );
            let methodology = s.methodology(&p.methodology);
            let mut table = batches_table(&batches);
            table.csv = Some("/batches.csv".to_owned());
            Ok(ProjectPage {
                area_mu: format::number(p.area_ha.mu().round()),
                proponent_name: s
                    .participant(&p.proponent)
                    .map(|x| x.name.to_string())
                    .unwrap_or_default(),
                methodology: methodology
                    .map(|m| format!("{} {} ({})", m.name, m.version, m.id))
                    .unwrap_or_else(|| p.methodology.to_string()),
                buffer_rate: methodology
                    .map(|m| format::percent(m.buffer_rate.value()))
                    .unwrap_or_default(),
                supply: Supply::of(&batches),
                proceeds: embed(
                    proceeds_page(s, Some(&id), None, PAGE_ROWS),
                    "/proceeds",
                    &for_project,
                    |q, a| q.after = a,
                ),
                reports,
                batches: table,
                p: p.clone(),
            })
        })
        .await?;
    render(&page)
}

#[derive(Template)]
#[template(path = "participant.html")]
pub struct ParticipantPage {
    p: ledger_core::state::Participant,
    roles: Vec<Label>,
    holdings: Table,
    trades: Table,
    certificates: Table,
}

pub async fn participant(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    PageQuery(query): PageQuery<DetailQuery>,
) -> Result<Response, WebError> {
    let id: ParticipantId = id
        .parse()
        .map_err(|e| WebError::bad_request(format!("“{id}” is not a participant id: {e}")))?;
    let request = PageRequest {
        after: parsed::<u64>("after", &query.after)?,
        limit: rows(&state, query.limit)?,
        newest_first: true,
    };
    let path = format!("/participants/{id}");
    let page = state
        .blocking_fresh(move |ledger| {
            let found = ledger.read(|s| {
                let p = s.participant(&id)?.clone();
                let holdings = embed(
                    holdings_page(s, Some(&id), None, None, PAGE_ROWS),
                    "/holdings",
                    &HoldingsQuery {
                        holder: Some(id.to_string()),
                        ..HoldingsQuery::default()
                    },
                    |q, a| q.after = a,
                );
                Some((p, holdings))
            });
            let Some((p, holdings)) = found else {
                return Err(ApiError::new(
                    "not-found",
                    format!("参与方 Participant “{id}” is not in this ledger."),
                ));
            };
            let filter = TradeFilter {
                party: Some(id.clone()),
                ..TradeFilter::default()
            };
            let trades = ledger.trade_page(&filter, request)?;
            let mut trades_table = trades_table(&trades.items);
            trades_table.csv = Some(link(
                "/trades.csv",
                &TradesQuery {
                    party: Some(id.to_string()),
                    after: query.after.clone(),
                    limit: query.limit,
                    ..TradesQuery::default()
                },
            ));
            if let Some(next) = trades.next {
                trades_table.next = Some(link(
                    &path,
                    &DetailQuery {
                        after: Some(next.to_string()),
                        limit: query.limit,
                    },
                ));
            }
            if query.after.is_some() {
                trades_table.first = Some(path.clone());
            }
            let certificates = ledger.certificate_page(
                &CertificateFilter {
                    holder: Some(id.clone()),
                },
                PageRequest {
                    after: None,
                    limit: LATEST_ROWS * 2,
                    newest_first: true,
                },
            )?;
            let mut certificates_table = certificates_table(&certificates.items);
            certificates_table.csv = Some(link(
                "/certificates.csv",
                &CertificatesQuery {
                    holder: Some(id.to_string()),
                    ..CertificatesQuery::default()
                },
            ));
            if certificates.next.is_some() {
                certificates_table.next = Some(link(
                    "/certificates",
                    &CertificatesQuery {
                        holder: Some(id.to_string()),
                        ..CertificatesQuery::default()
                    },
                ));
            }
            Ok(ParticipantPage {
                roles: p.roles.iter().map(|r| format::role(*r)).collect(),
                p,
                holdings,
                trades: trades_table,
                certificates: certificates_table,
            })
        })
        .await?;
    render(&page)
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    status: u16,
    zh: &'static str,
    en: &'static str,
    detail: String,
}

impl ErrorPage {
    /// The page for an error status.
    pub fn new(status: StatusCode, detail: String) -> Self {
        let (zh, en) = match status.as_u16() {
            400 => ("请求无效", "Bad request"),
            404 => ("未找到", "Not found"),
            _ => ("服务出错", "Something went wrong"),
        };
        Self {
            status: status.as_u16(),
            zh,
            en,
            detail,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Holdings, monitoring reports, restoration proceeds
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HoldingsQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    holder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch: Option<String>,
    /// `holder~batch` of the last row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
}

/// A holding cursor: `holder~batch` (ids never hold `~`).
fn holding_cursor(value: &Option<String>) -> Result<Option<(ParticipantId, BatchId)>, WebError> {
    let Some(text) = value.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let bad = || WebError::bad_request(format!("“{text}” is not a cursor of this list"));
    let (holder, batch) = text.split_once('~').ok_or_else(bad)?;
    Ok(Some((
        holder.parse().map_err(|_| bad())?,
        batch.parse().map_err(|_| bad())?,
    )))
}

/// Holdings (non-zero balances) by holder and batch, of one holder, of one batch, or all.
fn holdings_page(
    s: &LedgerState,
    holder: Option<&ParticipantId>,
    batch: Option<&BatchId>,
    after: Option<&(ParticipantId, BatchId)>,
    limit: usize,
) -> (Table, Option<String>) {
    let rows: Vec<(ParticipantId, BatchId, ledger_core::state::Balance)> = match (holder, batch) {
        (Some(h), _) => s
            .balances_of(h)
            .map(|(b, bal)| (h.clone(), b.clone(), *bal))
            .collect(),
        (None, Some(b)) => s
            .holders_of(b)
            .map(|(h, bal)| (h.clone(), b.clone(), *bal))
            .collect(),
        (None, None) => s
            .participants()
            .flat_map(|p| {
                s.balances_of(&p.id)
                    .map(|(b, bal)| (p.id.clone(), b.clone(), *bal))
            })
            .collect(),
    };
    let matching = rows.into_iter().filter(|(_, b, bal)| {
        batch.is_none_or(|want| want == b) && !(bal.available.is_zero() && bal.pledged.is_zero())
    });
    let (items, next) = page_by(matching, |(h, b, _)| (h.clone(), b.clone()), after, limit);
    let mut table = Table::new(
        "holdings",
        vec![
            text("持有方", "Holder", "holder"),
            text("名称", "Name", "name"),
            text("批次", "Batch", "batch"),
            text("项目", "Project", "project"),
            text("年份", "Vintage", "vintage"),
            figure("可用 (吨)", "Available (t)", "available"),
            figure("质押 (吨)", "Pledged (t)", "pledged"),
        ],
    );
    for (h, b, bal) in &items {
        let name = s
            .participant(h)
            .map(|p| p.name.to_string())
            .unwrap_or_default();
        let row = s.batch(b);
        table.push(vec![
            participant_cell(h),
            Cell::plain(name),
            batch_cell(b),
            optional(row.map(|r| &r.project), project_cell),
            optional(row.map(|r| r.vintage), Cell::plain),
            tonnes_cell(bal.available),
            tonnes_cell(bal.pledged),
        ]);
    }
    (table, next.map(|(h, b)| format!("{h}~{b}")))
}

async fn holdings_list(
    state: AppState,
    query: HoldingsQuery,
    form: Form,
) -> Result<Response, WebError> {
    let holder = parsed::<ParticipantId>("holder", &query.holder)?;
    let batch = parsed::<BatchId>("batch", &query.batch)?;
    let after = holding_cursor(&query.after)?;
    let limit = rows(&state, query.limit)?;
    let (mut table, next) = state
        .read(move |s| {
            Ok(holdings_page(
                s,
                holder.as_ref(),
                batch.as_ref(),
                after.as_ref(),
                limit,
            ))
        })
        .await?;
    let next_csv = paging_links(
        &mut table,
        "/holdings",
        &query,
        query.after.clone(),
        next,
        |q, a| q.after = a,
    );
    let page = ListPage {
        zh: "持有",
        en: "Holdings",
        intro: "Who holds which batch: tonnes available to trade, retire or pledge, and tonnes locked in pledges. Filter by holder or batch.",
        filters: None,
        chart: None,
        table,
    };
    respond(form, page, next_csv)
}

list_handlers!(holdings, holdings_csv, holdings_list, HoldingsQuery);

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
}

/// Monitoring reports, by id, of one project or all.
fn reports_page(
    s: &LedgerState,
    project: Option<&ProjectId>,
    after: Option<&ledger_core::ids::ReportId>,
    limit: usize,
) -> (Table, Option<String>) {
    let matching = s
        .reports()
        .filter(|r| project.is_none_or(|p| *p == r.project));
    let (items, next) = page_by(matching, |r| r.id.clone(), after, limit);
    let mut table = Table::new(
        "reports",
        vec![
            text("序号", "Seq", "seq"),
            text("报告", "Report", "id"),
            text("项目", "Project", "project"),
            text("监测期起", "Period start", "period_start"),
            text("监测期止", "Period end", "period_end"),
            figure("核证量 (吨)", "Verified (t)", "verified"),
            figure("已签发 (吨)", "Issued (t)", "issued"),
            text("核查机构", "Verifier", "verifier"),
            text("证据 SHA-256", "Evidence", "evidence_sha256"),
        ],
    );
    for r in &items {
        table.push(vec![
            Cell::seq(r.seq),
            Cell::plain(&r.id).link(format!("/entries/{}", r.seq)),
            project_cell(&r.project),
            Cell::plain(r.period_start),
            Cell::plain(r.period_end),
            Cell::figure(format::tonnes_text(r.verified.value()), r.verified),
            tonnes_cell(r.issued),
            participant_cell(&r.verifier),
            Cell::plain(r.evidence_sha256),
        ]);
    }
    (table, next.map(|n| n.to_string()))
}

async fn reports_list(
    state: AppState,
    query: ProjectListQuery,
    form: Form,
) -> Result<Response, WebError> {
    let project = parsed::<ProjectId>("project", &query.project)?;
    let after = parsed::<ledger_core::ids::ReportId>("after", &query.after)?;
    let limit = rows(&state, query.limit)?;
    let (mut table, next) = state
        .read(move |s| Ok(reports_page(s, project.as_ref(), after.as_ref(), limit)))
        .await?;
    let next_csv = paging_links(
        &mut table,
        "/reports",
        &query,
        query.after.clone(),
        next,
        |q, a| q.after = a,
    );
    let page = ListPage {
        zh: "监测报告",
        en: "Monitoring reports",
        intro: "A verifier's signed statement of what a wetland sequestered over a period, with the SHA-256 of its evidence; batches are issued from them, never beyond what was verified.",
        filters: None,
        chart: None,
        table,
    };
    respond(form, page, next_csv)
}

list_handlers!(reports, reports_csv, reports_list, ProjectListQuery);

/// Restoration proceeds by project and currency, of one project or all.
fn proceeds_page(
    s: &LedgerState,
    project: Option<&ProjectId>,
    after: Option<&usize>,
    limit: usize,
) -> (Table, Option<String>) {
    let matching = s
        .proceeds()
        .filter(|p| project.is_none_or(|want| *want == p.project))
        .enumerate();
    let (items, next) = page_by(matching, |(i, _)| *i, after, limit);
    let mut table = Table::new(
        "proceeds",
        vec![
            text("项目", "Project", "project"),
            text("名称", "Name", "name"),
            figure("收储", "Acquisition", "acquisition"),
            figure("生态补偿", "Eco-compensation", "eco_compensation"),
            figure("合计", "Total", "total"),
            text("币种", "Currency", "currency"),
            figure("数量 (吨)", "Tonnes sold", "quantity"),
            figure("笔数", "Trades", "trades"),
        ],
    );
    for (_, p) in &items {
        let name = s
            .project(&p.project)
            .map(|x| x.name.to_string())
            .unwrap_or_default();
        table.push(vec![
            project_cell(&p.project),
            Cell::plain(name).link(format!("/projects/{}", p.project)),
            money_cell(p.acquisition),
            money_cell(p.eco_compensation),
            money_cell(p.total()),
            Cell::plain(&p.currency),
            tonnes_cell(p.quantity),
            Cell::figure(p.trades.to_string(), p.trades),
        ]);
    }
    (table, next.map(|n| n.to_string()))
}

async fn proceeds_list(
    state: AppState,
    query: ProjectListQuery,
    form: Form,
) -> Result<Response, WebError> {
    let project = parsed::<ProjectId>("project", &query.project)?;
    let after = parsed::<usize>("after", &query.after)?;
    let limit = rows(&state, query.limit)?;
    let (mut table, next) = state
        .read(move |s| Ok(proceeds_page(s, project.as_ref(), after.as_ref(), limit)))
        .await?;
    let next_csv = paging_links(
        &mut table,
        "/proceeds",
        &query,
        query.after.clone(),
        next,
        |q, a| q.after = a,
    );
    let page = ListPage {
        zh: "生态反哺",
        en: "Restoration proceeds",
        intro: "What each wetland's sink has raised for its restoration: the amounts of acquisition (收储) and eco-compensation (生态补偿) trades of its batches, by currency.",
        filters: None,
        chart: None,
        table,
    };
    respond(form, page, next_csv)
}

list_handlers!(proceeds, proceeds_csv, proceeds_list, ProjectListQuery);

/// A table of a detail page, with the links of the list page it is the first page of.
fn embed<Q: Serialize + Clone>(
    (mut table, next): (Table, Option<String>),
    path: &str,
    query: &Q,
    set_after: impl Fn(&mut Q, Option<String>),
) -> Table {
    paging_links(&mut table, path, query, None, next, set_after);
    table
}
