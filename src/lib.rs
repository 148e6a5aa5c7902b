//! The root package of the carbon-sink ledger's workspace: it hosts the runnable programs in
//! `examples/` (the reference case, embedding the ledger, a bank's offline check, history at
//! scale). The library is `ledger-core`; the service and CLI are `ledger-api`.
