//! Pictures drawn on the server as inline SVG: the supply equation of batches as one bar, and
//! each price basis's history as a line. Geometry is computed here; the templates only place
//! it, with classes the stylesheet colours (no inline style, which the page's CSP forbids).

use askama::Template;
use ledger_core::ids::Timestamp;
use ledger_core::num::Tonnes;
use ledger_core::state::{Batch, Price};
use rust_decimal::prelude::ToPrimitive as _;
use rust_decimal::Decimal;

use super::format;

/// Width of the supply bar's view box.
const BAR_WIDTH: f64 = 1000.0;

/// One part of the supply: where some of the issued tonnes are.
#[derive(Debug)]
pub struct SupplyPart {
    /// CSS class (its colour).
    pub class: &'static str,
    /// Chinese name.
    pub zh: &'static str,
    /// English name.
    pub en: &'static str,
    /// Tonnes, as shown.
    pub tonnes: String,
    /// Share of the issued tonnes, as shown.
    pub share: String,
    /// Left edge in the view box.
    pub x: String,
    /// Width in the view box.
    pub width: String,
    /// Whether it has any tonnes (a legend entry still shows zero parts).
    pub visible: bool,
}

/// The supply equation of some batches: issued = available + pledged + buffer + retired +
/// reversed, as numbers and as one bar.
#[derive(Debug, Template)]
#[template(path = "_supply.html")]
pub struct Supply {
    /// Issued, as shown.
    pub issued: String,
    /// The parts, in the equation's order.
    pub parts: Vec<SupplyPart>,
    /// Whether every tonne is accounted for (it always is: the ledger checks it after every
    /// entry; the page says so only when the sums agree).
    pub balanced: bool,
}

impl askama::filters::HtmlSafe for Supply {}

impl Supply {
    /// The supply of these batches together.
    pub fn of(batches: &[&Batch]) -> Self {
        let sum = |f: fn(&Batch) -> Tonnes| -> Tonnes { batches.iter().map(|b| f(b)).sum() };
        let issued = sum(|b| b.issued);
        let parts = [
            ("available", "可用", "available", sum(|b| b.available)),
            ("pledged", "质押", "pledged", sum(|b| b.pledged)),
            ("buffer", "缓冲池", "buffer", sum(|b| b.buffer)),
            ("retired", "已注销", "retired", sum(|b| b.retired)),
            ("reversed", "已逆转", "reversed", sum(|b| b.reversed)),
        ];
        let total: Tonnes = parts.iter().map(|p| p.3).sum();
        let whole = issued.value().to_f64().unwrap_or(0.0);
        let mut x = 0.0;
        let parts = parts
            .into_iter()
            .map(|(class, zh, en, tonnes)| {
                let value = tonnes.value().to_f64().unwrap_or(0.0);
                let width = if whole > 0.0 {
                    value / whole * BAR_WIDTH
                } else {
                    0.0
                };
                let part = SupplyPart {
                    class,
                    zh,
                    en,
                    tonnes: format::tonnes(tonnes),
                    share: share(tonnes.value(), issued.value()),
                    x: format!("{x:.2}"),
                    width: format!("{width:.2}"),
                    visible: width > 0.0,
                };
                x += width;
                part
            })
            .collect();
        Self {
            issued: format::tonnes(issued),
            parts,
            balanced: total == issued,
        }
    }
}

fn share(part: Decimal, whole: Decimal) -> String {
    if whole.is_zero() {
        return "—".to_owned();
    }
    let percent = (part / whole * Decimal::from(100)).round_dp(1);
    format!("{}%", percent.normalize())
}

/// One point of a price line.
#[derive(Debug)]
pub struct Point {
    /// x in the view box.
    pub x: String,
    /// y in the view box.
    pub y: String,
    /// What the point's title says.
    pub title: String,
}

/// One basis's line.
#[derive(Debug)]
pub struct Line {
    /// CSS class (its colour).
    pub class: &'static str,
    /// Basis name, Chinese.
    pub zh: String,
    /// Basis name, English.
    pub en: String,
    /// The polyline's points attribute.
    pub points: String,
    /// Its points.
    pub dots: Vec<Point>,
}

/// A tick on an axis.
#[derive(Debug)]
pub struct Tick {
    /// Position in the view box (y for prices, x for dates).
    pub at: String,
    /// Its label.
    pub label: String,
}

/// Price history by basis, as lines over effective time.
#[derive(Debug, Template)]
#[template(path = "_price_chart.html")]
pub struct PriceChart {
    /// One line per basis.
    pub lines: Vec<Line>,
    /// Price ticks.
    pub y_ticks: Vec<Tick>,
    /// Date ticks.
    pub x_ticks: Vec<Tick>,
    /// The currency, when all prices share one.
    pub currency: String,
}

impl askama::filters::HtmlSafe for PriceChart {}

/// The chart's view box and margins.
const CHART_W: f64 = 640.0;
const CHART_H: f64 = 240.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 32.0;
/// At most this many points per line (the latest).
const MAX_POINTS: usize = 200;

fn seconds(at: &Timestamp) -> f64 {
    // Whole seconds suffice to place a point.
    #[allow(clippy::cast_precision_loss)]
    let s = at.instant().unix_timestamp() as f64;
    s
}

impl PriceChart {
    /// The chart of a price history (oldest first by effective time, as the state gives it).
    pub fn of(history: &[&Price]) -> Self {
        let mut bases: Vec<&str> = history.iter().map(|p| p.basis.as_str()).collect();
        bases.sort_unstable();
        bases.dedup();
        let shown: Vec<&Price> = {
            let mut shown = Vec::new();
            for basis in &bases {
                let of_basis: Vec<&Price> = history
                    .iter()
                    .copied()
                    .filter(|p| p.basis.as_str() == *basis)
                    .collect();
                let skip = of_basis.len().saturating_sub(MAX_POINTS);
                shown.extend(of_basis.into_iter().skip(skip));
            }
            shown
        };
        let prices: Vec<f64> = shown
            .iter()
            .map(|p| p.unit_price.value().to_f64().unwrap_or(0.0))
            .collect();
        let times: Vec<f64> = shown.iter().map(|p| seconds(&p.effective_at)).collect();
        // Prices are drawn from zero up, so that a line's height reads as its price.
        let low = 0.0;
        let (_, high) = bounds(&prices);
        let high = if high > low { high * 1.1 } else { 1.0 };
        let (t0, mut t1) = bounds(&times);
        if t1 <= t0 {
            t1 = t0 + 86_400.0;
        }
        let x_of = |t: f64| LEFT + (t - t0) / (t1 - t0) * (CHART_W - LEFT - RIGHT);
        let y_of = |v: f64| TOP + (1.0 - (v - low) / (high - low)) * (CHART_H - TOP - BOTTOM);
        let single_time = times.iter().all(|t| (*t - times[0]).abs() < f64::EPSILON);
        let classes = ["line-a", "line-b", "line-c", "line-d"];
        let lines = bases
            .iter()
            .enumerate()
            .map(|(i, basis)| {
                let dots: Vec<Point> = shown
                    .iter()
                    .zip(times.iter().zip(&prices))
                    .filter(|(p, _)| p.basis.as_str() == *basis)
                    .map(|(p, (t, v))| {
                        let x = if single_time {
                            (LEFT + CHART_W - RIGHT) / 2.0
                        } else {
                            x_of(*t)
                        };
                        Point {
                            x: format!("{x:.1}"),
                            y: format!("{:.1}", y_of(*v)),
                            title: format!(
                                "{} · {} {} · {}",
                                p.id,
                                format::number(p.unit_price),
                                p.currency,
                                format::time(&p.effective_at)
                            ),
                        }
                    })
                    .collect();
                let points = dots
                    .iter()
                    .map(|d| format!("{},{}", d.x, d.y))
                    .collect::<Vec<_>>()
                    .join(" ");
                let (zh, en) = format::basis(basis);
                Line {
                    class: classes[i % classes.len()],
                    zh,
                    en,
                    points,
                    dots,
                }
            })
            .collect();
        let y_ticks = (0..=4)
            .map(|i| {
                let v = low + (high - low) * f64::from(i) / 4.0;
                Tick {
                    at: format!("{:.1}", y_of(v)),
                    label: format!("{v:.2}"),
                }
            })
            .collect();
        let x_ticks = if shown.is_empty() {
            Vec::new()
        } else if single_time {
            vec![Tick {
                at: format!("{:.1}", (LEFT + CHART_W - RIGHT) / 2.0),
                label: date_of(&shown[0].effective_at),
            }]
        } else {
            let first = shown
                .iter()
                .min_by(|a, b| a.effective_at.cmp(&b.effective_at));
            let last = shown
                .iter()
                .max_by(|a, b| a.effective_at.cmp(&b.effective_at));
            [first, last]
                .into_iter()
                .flatten()
                .map(|p| Tick {
                    at: format!("{:.1}", x_of(seconds(&p.effective_at))),
                    label: date_of(&p.effective_at),
                })
                .collect()
        };
        let mut currencies: Vec<String> = shown.iter().map(|p| p.currency.to_string()).collect();
        currencies.dedup();
        Self {
            lines,
            y_ticks,
            x_ticks,
            currency: if currencies.len() == 1 {
                currencies.remove(0)
            } else {
                String::new()
            },
        }
    }
}

fn date_of(at: &Timestamp) -> String {
    at.date().to_string()
}

/// The least and greatest of some values; (0, 1) for none.
fn bounds(values: &[f64]) -> (f64, f64) {
    let (low, high) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    if low.is_finite() {
        (low, high)
    } else {
        (0.0, 1.0)
    }
}
