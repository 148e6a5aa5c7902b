//! End-to-end tests and examples of the carbon-sink ledger live in `tests/` and `examples/`.
