//! HTTP service of the carbon-sink ledger.
