//! One table, two forms: the HTML a person reads and the CSV a spreadsheet reads, built from the
//! same rows so that they cannot disagree.

use askama::Template;
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

use super::WebError;

/// A column: its heading in both languages, and its CSV name.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// Heading, Chinese.
    pub zh: &'static str,
    /// Heading, English.
    pub en: &'static str,
    /// The CSV header (a machine name, as the API names the field).
    pub key: &'static str,
    /// Figures are right-aligned.
    pub numeric: bool,
}

/// A text column.
pub const fn text(zh: &'static str, en: &'static str, key: &'static str) -> Column {
    Column {
        zh,
        en,
        key,
        numeric: false,
    }
}

/// A figure column.
pub const fn figure(zh: &'static str, en: &'static str, key: &'static str) -> Column {
    Column {
        zh,
        en,
        key,
        numeric: true,
    }
}

/// One cell: what the page shows, what the CSV holds, and where it links.
#[derive(Clone, Debug)]
pub struct Cell {
    /// As shown (grouped digits, units).
    pub text: String,
    /// As exported (the exact value, as the API writes it).
    pub raw: String,
    /// A link, for the page.
    pub href: Option<String>,
    /// A second line in English under a Chinese word (kinds, statuses).
    pub en: Option<String>,
    /// Right-aligned.
    pub numeric: bool,
}

impl Cell {
    /// A cell shown as exported.
    pub fn plain(value: impl ToString) -> Self {
        let text = value.to_string();
        Self {
            raw: text.clone(),
            text,
            href: None,
            en: None,
            numeric: false,
        }
    }

    /// A figure: shown one way, exported exactly.
    pub fn figure(shown: String, raw: impl ToString) -> Self {
        Self {
            text: shown,
            raw: raw.to_string(),
            href: None,
            en: None,
            numeric: true,
        }
    }

    /// A word in both languages; the CSV holds the machine name.
    pub fn word(zh: &str, en: &'static str, raw: impl ToString) -> Self {
        Self {
            text: zh.to_owned(),
            raw: raw.to_string(),
            href: None,
            en: Some(en.to_owned()),
            numeric: false,
        }
    }

    /// The same cell, linking to `href`.
    pub fn link(mut self, href: impl Into<String>) -> Self {
        self.href = Some(href.into());
        self
    }

    /// The cell of an entry's seq, linking to its entry page.
    pub fn seq(seq: u64) -> Self {
        Self::plain(seq).link(format!("/entries/{seq}"))
    }

    /// An empty cell (`—` on the page, nothing in the CSV).
    pub fn none() -> Self {
        Self {
            text: "—".to_owned(),
            raw: String::new(),
            href: None,
            en: None,
            numeric: false,
        }
    }
}

/// Rows under columns, with the links of the page around them.
#[derive(Debug, Template)]
#[template(path = "_table.html")]
pub struct Table {
    /// The columns.
    pub columns: Vec<Column>,
    /// The rows.
    pub rows: Vec<Vec<Cell>>,
    /// The CSV of these same rows.
    pub csv: Option<String>,
    /// The next page, if there is one.
    pub next: Option<String>,
    /// The first page, when this is not it.
    pub first: Option<String>,
    /// What an empty table says.
    pub empty: &'static str,
    /// The file name the CSV is saved under.
    pub name: &'static str,
}

/// The table renders its own escaped HTML; a page embeds it as it is.
impl askama::filters::HtmlSafe for Table {}

impl Table {
    /// A table without links around it yet.
    pub fn new(name: &'static str, columns: Vec<Column>) -> Self {
        Self {
            columns,
            rows: Vec::new(),
            csv: None,
            next: None,
            first: None,
            empty: "无记录 · nothing recorded",
            name,
        }
    }

    /// Adds a row (as many cells as columns).
    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len(), "a row of {}", self.name);
        self.rows.push(row);
    }

    /// The same rows as CSV (RFC 4180, UTF-8 with a byte-order mark so that spreadsheets read
    /// Chinese right), with a `Link` header to the next page's CSV.
    pub fn csv_response(&self, next_csv: Option<String>) -> Result<Response, WebError> {
        let mut writer = csv::Writer::from_writer(vec![0xEF, 0xBB, 0xBF]);
        let write = |e: csv::Error| WebError::from(crate::ApiError::internal("internal", e));
        writer
            .write_record(self.columns.iter().map(|c| c.key))
            .map_err(write)?;
        for row in &self.rows {
            writer
                .write_record(
                    row.iter()
                        .map(|cell| csv_escape_formula(&cell.raw).into_owned()),
                )
                .map_err(write)?;
        }
        let bytes = writer
            .into_inner()
            .map_err(|e| WebError::from(crate::ApiError::internal("internal", e)))?;
        let mut response = Response::new(Body::from(bytes));
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        if let Ok(value) =
            HeaderValue::from_str(&format!("attachment; filename=\"{}.csv\"", self.name))
        {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if let Some(next) =
            next_csv.and_then(|n| HeaderValue::from_str(&format!("<{n}>; rel=\"next\"")).ok())
        {
            headers.insert(header::LINK, next);
        }
        Ok(response)
    }
}

/// A cell that a spreadsheet would take for a formula (`=`, `+`, `-`, `@`, a tab or a carriage
/// return first) is written with a leading apostrophe, so that a participant's name cannot run
/// in the visitor's spreadsheet. The ledger's own figures are never negative, so no figure is
/// touched.
pub fn csv_escape_formula(value: &str) -> std::borrow::Cow<'_, str> {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}").into(),
        _ => value.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused_and_figures_kept() {
        assert_eq!(
            csv_escape_formula("=HYPERLINK(\"x\")"),
            "'=HYPERLINK(\"x\")"
        );
        assert_eq!(csv_escape_formula("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_escape_formula("588300.00"), "588300.00");
        assert_eq!(csv_escape_formula("下渚湖湿地"), "下渚湖湿地");
    }
}
