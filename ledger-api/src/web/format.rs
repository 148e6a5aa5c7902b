//! How figures read on the pages: digits grouped by thousands, tonnes without trailing zeros,
//! money with its 2 places and currency, times in UTC, and the domain's words in Chinese and
//! English (docs/glossary.md).

use ledger_core::entry::TradeKind;
use ledger_core::ids::{Role, Timestamp};
use ledger_core::num::{Currency, Money, Tonnes};
use ledger_core::state::PledgeStatus;
use rust_decimal::Decimal;

use crate::demo::thousands;

/// Tonnes as people read them: `10,000`, `1,700`, `0.5` (the CSV keeps every place).
pub fn tonnes_text(value: Decimal) -> String {
    thousands(&value.normalize().to_string())
}

/// A tonnage the ledger keeps.
pub fn tonnes(value: Tonnes) -> String {
    tonnes_text(value.value())
}

/// Money with its places and currency: `588,300.00 CNY`.
pub fn money(value: Money, currency: &Currency) -> String {
    format!("{} {currency}", thousands(&value.to_string()))
}

/// A decimal with grouped digits, as written (`58.83`, `164,724.00`).
pub fn number(value: impl std::fmt::Display) -> String {
    thousands(&value.to_string())
}

/// A time, to the minute, in UTC: `2022-06-01 00:00 UTC`.
pub fn time(at: &Timestamp) -> String {
    let text = at.as_str();
    match (text.get(..10), text.get(11..16)) {
        (Some(date), Some(clock)) => format!("{date} {clock} UTC"),
        _ => text.to_owned(),
    }
}

/// A share as a percentage: `0.30` → `30%`.
pub fn percent(value: Decimal) -> String {
    format!("{}%", (value * Decimal::from(100)).normalize())
}

/// A label in both languages, Chinese first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label {
    /// 中文.
    pub zh: &'static str,
    /// English.
    pub en: &'static str,
}

const fn label(zh: &'static str, en: &'static str) -> Label {
    Label { zh, en }
}

/// A trade's kind in words.
pub fn trade_kind(kind: TradeKind) -> Label {
    match kind {
        TradeKind::Acquisition => label("收储", "acquisition"),
        TradeKind::EcoCompensation => label("生态补偿", "eco-compensation"),
        TradeKind::Transfer => label("转让", "transfer"),
    }
}

/// A pledge's status in words.
pub fn pledge_status(status: PledgeStatus) -> Label {
    match status {
        PledgeStatus::Active => label("质押中", "active"),
        PledgeStatus::Released => label("已解除", "released"),
        PledgeStatus::Enforced => label("已处置", "enforced"),
    }
}

/// A role in words.
pub fn role(role: Role) -> Label {
    match role {
        Role::Operator => label("登记机构", "operator"),
        Role::Verifier => label("核查机构", "verifier"),
        Role::PricingAuthority => label("定价机构", "pricing authority"),
        Role::Proponent => label("项目业主", "proponent"),
        Role::Platform => label("两山银行平台", "platform"),
        Role::Enterprise => label("企业", "enterprise"),
        Role::Bank => label("银行", "bank"),
    }
}

/// A price basis in words (the two the glossary names; any other as written).
pub fn basis(basis: &str) -> (String, String) {
    match basis {
        "benchmark" => ("基准价".to_owned(), "benchmark".to_owned()),
        "cost" => ("成本价".to_owned(), "cost".to_owned()),
        other => (other.to_owned(), other.to_owned()),
    }
}

/// An entry type in words.
pub fn entry_type(name: &str) -> Label {
    match name {
        "register_participant" => label("登记参与方", "participant registered"),
        "rotate_key" => label("更换密钥", "key rotated"),
        "register_methodology" => label("登记方法学", "methodology registered"),
        "register_project" => label("登记项目", "project registered"),
        "record_monitoring" => label("监测报告", "monitoring report"),
        "issue_batch" => label("签发", "issuance"),
        "publish_price" => label("定价", "price published"),
        "trade" => label("交易", "trade"),
        "retire" => label("注销", "retirement"),
        "pledge" => label("质押", "pledge"),
        "drawdown" => label("放款", "loan drawdown"),
        "repay" => label("还款", "repayment"),
        "release_pledge" => label("解除质押", "pledge released"),
        "enforce_pledge" => label("质权实现", "pledge enforced"),
        "reversal" => label("逆转", "reversal"),
        _ => label("条目", "entry"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_as_people_write_them() {
        let t: Tonnes = "10000.000".parse().unwrap();
        assert_eq!(tonnes(t), "10,000");
        let m: Money = "588300.00".parse().unwrap();
        assert_eq!(money(m, &"CNY".parse().unwrap()), "588,300.00 CNY");
        assert_eq!(percent("0.30".parse().unwrap()), "30%");
        let at: Timestamp = "2022-06-01T00:00:00Z".parse().unwrap();
        assert_eq!(time(&at), "2022-06-01 00:00 UTC");
    }
}
