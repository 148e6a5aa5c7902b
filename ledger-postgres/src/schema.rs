//! The schema, as embedded migrations: each one a version and plain SQL, run in order on start in
//! one transaction. A database whose schema is newer than this program is refused.
//!
//! The SQL keeps to what PostgreSQL, CockroachDB and YugabyteDB all accept (BIGINT, BYTEA,
//! TEXT, composite primary keys, `INSERT … ON CONFLICT`, `SELECT … FOR UPDATE`, `unnest` of
//! arrays); only PostgreSQL 15 is tested (see docs/operations.md).

use postgres::Client;

/// One migration: the version it brings the schema to, and its SQL.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// The schema version after it.
    pub version: i32,
    /// What it does, in a few words.
    pub summary: &'static str,
    /// Its statements.
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    summary: "the head row, leaves, Merkle nodes and state rows",
    sql: "
        -- One row: the number of entries, the metadata row of the ledger (JSON, as the core
        -- writes it), and the last signed checkpoint with its size. Every group commit locks it.
        CREATE TABLE ledger_head (
            id SMALLINT PRIMARY KEY CHECK (id = 1),
            size BIGINT NOT NULL,
            meta BYTEA,
            checkpoint TEXT,
            checkpoint_size BIGINT
        );
        INSERT INTO ledger_head (id, size) VALUES (1, 0);
        -- The leaves: each envelope's bytes (JCS), by sequence number.
        CREATE TABLE ledger_leaves (
            seq BIGINT PRIMARY KEY,
            leaf BYTEA NOT NULL
        );
        -- The hashes of perfect Merkle subtrees, by level and index.
        CREATE TABLE ledger_nodes (
            node_level SMALLINT NOT NULL,
            node_index BIGINT NOT NULL,
            hash BYTEA NOT NULL,
            PRIMARY KEY (node_level, node_index)
        );
        -- The state tables: keys and values as the core encodes them; keys compare bytewise, so a
        -- page of history is a range of the primary key.
        CREATE TABLE ledger_state (
            table_name TEXT NOT NULL,
            row_key BYTEA NOT NULL,
            row_value BYTEA NOT NULL,
            PRIMARY KEY (table_name, row_key)
        );
    ",
}];

/// The schema version this program writes.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Why the schema could not be brought to the latest version.
#[derive(Debug)]
pub(crate) enum MigrateError {
    /// The database's schema is newer than this program's.
    Newer(i32),
    /// The database failed.
    Db(postgres::Error),
}

impl From<postgres::Error> for MigrateError {
    fn from(e: postgres::Error) -> Self {
        MigrateError::Db(e)
    }
}

/// Brings the schema to the latest version, in one transaction. Concurrent starts serialize on
/// the version row; the first creates it.
pub(crate) fn migrate(client: &mut Client) -> Result<i32, MigrateError> {
    let mut tx = client.transaction()?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS ledger_schema (
             id SMALLINT PRIMARY KEY CHECK (id = 1),
             version INTEGER NOT NULL
         );
         INSERT INTO ledger_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
    )?;
    let version: i32 = tx
        .query_one(
            "SELECT version FROM ledger_schema WHERE id = 1 FOR UPDATE",
            &[],
        )?
        .get(0);
    if version > latest() {
        return Err(MigrateError::Newer(version));
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > version) {
        tx.batch_execute(migration.sql)?;
        tx.execute(
            "UPDATE ledger_schema SET version = $1 WHERE id = 1",
            &[&migration.version],
        )?;
    }
    tx.commit()?;
    Ok(latest())
}
