//! `ledger-postgres`: the carbon-sink ledger's store on PostgreSQL, for deployments that outgrow
//! one machine. Several `carbon-ledger serve` instances share one database, all accepting
//! submissions and answering reads.
//!
//! ```text
//! instance A ─┐  group commit: BEGIN; SELECT size FROM ledger_head FOR UPDATE;
//! instance B ─┼─▶ size = first seq? leaves, nodes, state rows, head; COMMIT
//! instance C ─┘  size ahead?       ROLLBACK → StoreError::Behind: catch up, sequence again
//! ```
//!
//! The core ([`ledger_core`]) never opens a socket: it sees this crate only through its
//! [`Store`] trait. [`PgStore`] keeps what `SledStore` keeps — leaves, Merkle nodes, state rows
//! and one metadata row — in four tables (see [`schema`]), and writes each group in one
//! transaction that locks the single head row and checks that the head's size is the group's
//! first sequence number. If another instance appended meanwhile, it writes nothing and returns
//! [`StoreError::Behind`]; the sequencer then locks the head ([`Store::lock_head`]), catches up
//! and sequences again. Sequence numbers stay gap-free and totally ordered without sequences or
//! advisory locks. Serialization failures and deadlocks (SQLSTATE 40001, 40P01) are retried.
//!
//! Nothing is acknowledged before the transaction commits: with PostgreSQL's default
//! `synchronous_commit = on` that is after the commit record is flushed to the WAL (and, with a
//! synchronous standby, received by it). See docs/operations.md.
//!
//! The last checkpoint signed is kept in the head row, and replaced only by a larger one (a
//! compare-and-set on its size), so two instances signing at once cannot move it back. A copy is
//! also kept apart from the database, in a file of the instance's data folder
//! ([`PgStore::with_witness`]): a database restored from an old backup, or failed over to a
//! replica that lost the last transactions, then refuses to open rather than serve less than the
//! instance once signed.
//!
//! With the `testing` feature, `testing::TestCluster` starts a throwaway PostgreSQL cluster for
//! tests.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ledger_core::merkle::{Hash, NodeId};
use ledger_core::store::{Append, LeafVisitor, Meta, RowRange, RowVisitor, Store, StoreError};
use postgres::error::SqlState;

mod pool;
pub mod schema;
pub mod scratch;
#[cfg(feature = "testing")]
pub mod testing;

use pool::{Conn, Pool, Pooled};

/// The PostgreSQL client this store uses, for callers that parse a URL as it does.
pub use postgres;

/// Most connections one instance opens (the sequencer's, the head lock's, and readers').
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

/// Rows fetched per round trip when scanning leaves or state rows.
const CHUNK: i64 = 512;

/// How many times a transaction that failed on a serialization failure or a deadlock is tried.
const TRANSACTION_ATTEMPTS: usize = 5;

/// The file, in the instance's data folder, that keeps a copy of the last checkpoint signed.
pub const WITNESS_FILE: &str = "last-checkpoint";

/// The ledger's store in a PostgreSQL database.
#[derive(Debug)]
pub struct PgStore {
    pool: Pool,
    /// The connection that takes the head lock ([`Store::lock_head`]), and the size it read
    /// while it holds the lock in an open transaction.
    held: Mutex<HeadSlot>,
    witness_dir: Option<PathBuf>,
    /// Where the database is, without the password.
    target: String,
}

#[derive(Default)]
struct HeadSlot {
    conn: Option<Conn>,
    locked: Option<u64>,
}

impl std::fmt::Debug for HeadSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadSlot")
            .field("locked", &self.locked)
            .finish_non_exhaustive()
    }
}

/// Whether an error means the database cannot be reached now (its connection is gone, it is
/// shutting down or starting), rather than a refused statement.
fn unreachable_now(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        let code = code.code();
        return code.starts_with("08") // connection exception
            || code.starts_with("57P") // admin shutdown, crash shutdown, cannot connect now
            || code == SqlState::TOO_MANY_CONNECTIONS.code();
    }
    // Not a database error: a socket that failed, a connection refused or timed out.
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    error.to_string().starts_with("error connecting")
}

fn retryable(error: &postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
    })
}

fn store_error(error: postgres::Error) -> StoreError {
    if unreachable_now(&error) {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Io(format!("PostgreSQL: {error}"))
    }
}

fn seq_sql(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq)
        .map_err(|_| StoreError::Encode(format!("sequence number {seq} is too large")))
}

fn seq_of(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is negative")))
}

fn meta_from(bytes: &[u8]) -> Result<Meta, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Decode {
        what: "the metadata row".to_owned(),
        reason: e.to_string(),
    })
}

fn hash_from(bytes: &[u8]) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("a Merkle node is not 32 bytes".to_owned()))
}

/// The size line of a checkpoint note (its second line).
fn note_size(note: &str) -> Result<u64, StoreError> {
    note.lines()
        .nth(1)
        .and_then(|line| line.parse().ok())
        .ok_or_else(|| StoreError::Encode("a checkpoint without a size line".to_owned()))
}

/// The first key after every key that starts with `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The state changes of a group, last write of each row winning: rows to remove, rows to write.
type Changes<'a> = (Vec<(&'a str, &'a [u8])>, Vec<(&'a str, &'a [u8], &'a [u8])>);

fn collapse<'a>(changes: &'a [ledger_core::state::StateChange]) -> Changes<'a> {
    let mut last: std::collections::BTreeMap<(&str, &[u8]), Option<&[u8]>> = Default::default();
    for change in changes {
        last.insert(
            (change.table, change.key.as_slice()),
            change.value.as_deref(),
        );
    }
    let mut removals = Vec::new();
    let mut writes = Vec::new();
    for ((table, key), value) in last {
        match value {
            Some(value) => writes.push((table, key, value)),
            None => removals.push((table, key)),
        }
    }
    (removals, writes)
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://USER@HOST:PORT/DB`, or key=value
    /// settings), brings its schema to this program's version, and returns the store. A
    /// database whose schema is newer than this program is refused.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, DEFAULT_MAX_CONNECTIONS)
    }

    /// [`PgStore::connect`] with at most `max_connections` connections.
    pub fn connect_with(url: &str, max_connections: usize) -> Result<Self, StoreError> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Io(format!("the store URL is not valid: {e}")))?;
        Self::connect_config(config, max_connections)
    }

    /// [`PgStore::connect_with`] from parsed settings.
    pub fn connect_config(
        mut config: postgres::Config,
        max_connections: usize,
    ) -> Result<Self, StoreError> {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("carbon-ledger");
        }
        let target = describe(&config);
        let pool = Pool::new(config, max_connections);
        let mut client = pool.connect().map_err(store_error)?;
        // Concurrent first starts may race to create the version table; the loser tries again.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match schema::migrate(&mut client) {
                Ok(_) => break,
                Err(schema::MigrateError::Newer(version)) => {
                    return Err(StoreError::Corrupt(format!(
                        "the database {target} has schema version {version}, newer than this program's {}: run a newer carbon-ledger",
                        schema::latest()
                    )))
                }
                Err(schema::MigrateError::Db(error))
                    if attempt < 3
                        && (retryable(&error)
                            || error.code() == Some(&SqlState::UNIQUE_VIOLATION)
                            || error.code() == Some(&SqlState::DUPLICATE_TABLE)) =>
                {
                    continue
                }
                Err(schema::MigrateError::Db(error)) => return Err(store_error(error)),
            }
        }
        Ok(Self {
            pool,
            held: Mutex::new(HeadSlot::default()),
            witness_dir: None,
            target,
        })
    }

    /// Also keeps the last signed checkpoint in `dir/last-checkpoint`, apart from the database
    /// (see the crate documentation).
    pub fn with_witness(mut self, dir: &Path) -> Self {
        self.witness_dir = Some(dir.to_owned());
        self
    }

    /// Where the database is (host, port, database, user), without the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs `f` on a pooled connection. A read that fails because its connection broke (the
    /// database restarted since the connection was opened) is tried once more on a new one.
    fn read<R>(
        &self,
        mut f: impl FnMut(&mut Conn) -> Result<R, postgres::Error>,
    ) -> Result<R, StoreError> {
        for attempt in 0..2 {
            let mut pooled = self.pool.get().map_err(store_error)?;
            match f(pooled.conn()) {
                Ok(value) => return Ok(value),
                Err(error) if unreachable_now(&error) => {
                    pooled.mark_broken();
                    drop(pooled);
                    self.pool.clear();
                    if attempt == 1 {
                        return Err(store_error(error));
                    }
                }
                Err(error) => return Err(store_error(error)),
            }
        }
        Err(StoreError::Unavailable("no connection".to_owned()))
    }

    /// Begins a transaction and locks the head row; returns its size.
    fn begin_locked(conn: &mut Conn) -> Result<u64, postgres::Error> {
        conn.client.batch_execute("BEGIN")?;
        let lock = conn.statement("SELECT size FROM ledger_head WHERE id = 1 FOR UPDATE")?;
        let size: i64 = conn.client.query_one(&lock, &[])?.get(0);
        Ok(u64::try_from(size).unwrap_or(0))
    }

    /// Writes a group's rows and the head inside an open transaction.
    fn write_group(conn: &mut Conn, group: &Append<'_>) -> Result<(), StoreError> {
        let db = store_error;
        if !group.leaves.is_empty() {
            let seqs: Vec<i64> = (0..group.leaves.len() as u64)
                .map(|i| seq_sql(group.first_seq + i))
                .collect::<Result<_, _>>()?;
            let leaves: Vec<&[u8]> = group.leaves.iter().map(Vec::as_slice).collect();
            let insert = conn
                .statement(
                    "INSERT INTO ledger_leaves (seq, leaf)
                     SELECT * FROM unnest($1::BIGINT[], $2::BYTEA[])",
                )
                .map_err(db)?;
            conn.client
                .execute(&insert, &[&seqs, &leaves])
                .map_err(db)?;
        }
        if !group.nodes.is_empty() {
            let levels: Vec<i16> = group
                .nodes
                .iter()
                .map(|(id, _)| i16::from(id.level))
                .collect();
            let indexes: Vec<i64> = group
                .nodes
                .iter()
                .map(|(id, _)| seq_sql(id.index))
                .collect::<Result<_, _>>()?;
            let hashes: Vec<&[u8]> = group.nodes.iter().map(|(_, h)| h.as_slice()).collect();
            let insert = conn
                .statement(
                    "INSERT INTO ledger_nodes (node_level, node_index, hash)
                     SELECT * FROM unnest($1::SMALLINT[], $2::BIGINT[], $3::BYTEA[])",
                )
                .map_err(db)?;
            conn.client
                .execute(&insert, &[&levels, &indexes, &hashes])
                .map_err(db)?;
        }
        let (removals, writes) = collapse(group.state);
        if !removals.is_empty() {
            let tables: Vec<&str> = removals.iter().map(|(t, _)| *t).collect();
            let keys: Vec<&[u8]> = removals.iter().map(|(_, k)| *k).collect();
            let delete = conn
                .statement(
                    "DELETE FROM ledger_state WHERE (table_name, row_key) IN
                     (SELECT * FROM unnest($1::TEXT[], $2::BYTEA[]))",
                )
                .map_err(db)?;
            conn.client
                .execute(&delete, &[&tables, &keys])
                .map_err(db)?;
        }
        if !writes.is_empty() {
            let tables: Vec<&str> = writes.iter().map(|(t, _, _)| *t).collect();
            let keys: Vec<&[u8]> = writes.iter().map(|(_, k, _)| *k).collect();
            let values: Vec<&[u8]> = writes.iter().map(|(_, _, v)| *v).collect();
            let upsert = conn
                .statement(
                    "INSERT INTO ledger_state (table_name, row_key, row_value)
                     SELECT * FROM unnest($1::TEXT[], $2::BYTEA[], $3::BYTEA[])
                     ON CONFLICT (table_name, row_key) DO UPDATE SET row_value = EXCLUDED.row_value",
                )
                .map_err(db)?;
            conn.client
                .execute(&upsert, &[&tables, &keys, &values])
                .map_err(db)?;
        }
        if let Some(meta) = group.meta {
            let bytes = serde_json::to_vec(meta).map_err(|e| StoreError::Encode(e.to_string()))?;
            let size = seq_sql(meta.size)?;
            let update = conn
                .statement("UPDATE ledger_head SET size = $1, meta = $2 WHERE id = 1")
                .map_err(db)?;
            conn.client.execute(&update, &[&size, &bytes]).map_err(db)?;
        }
        Ok(())
    }

    /// One attempt of an append on a connection of the pool: `Ok(Err(e))` is an error worth
    /// another attempt (a serialization failure or a deadlock).
    fn append_once(
        &self,
        pooled: &mut Pooled<'_>,
        group: &Append<'_>,
    ) -> Result<Result<(), postgres::Error>, StoreError> {
        let conn = pooled.conn();
        let outcome = (|| -> Result<Result<(), StoreError>, postgres::Error> {
            if group.meta.is_some() {
                let size = Self::begin_locked(conn)?;
                if size != group.first_seq {
                    conn.client.batch_execute("ROLLBACK")?;
                    return Ok(Err(StoreError::Behind { durable: size }));
                }
            } else {
                // A restore writes leaves in chunks before there is a head: nothing to lock.
                conn.client.batch_execute("BEGIN")?;
            }
            if let Err(error) = Self::write_group(conn, group) {
                conn.client.batch_execute("ROLLBACK")?;
                return Ok(Err(error));
            }
            conn.client.batch_execute("COMMIT")?;
            Ok(Ok(()))
        })();
        match outcome {
            Ok(result) => result.map(Ok),
            Err(error) => {
                // The transaction is over on the server's side if the connection failed; if not,
                // end it so that the connection can be used again.
                if conn.client.batch_execute("ROLLBACK").is_err() {
                    pooled.mark_broken();
                }
                if retryable(&error) {
                    Ok(Err(error))
                } else {
                    if unreachable_now(&error) {
                        pooled.mark_broken();
                        self.pool.clear();
                    }
                    Err(store_error(error))
                }
            }
        }
    }

    /// Copies the ledger held in `source` (a restore's verified copy) into this database in
    /// **one transaction**: leaves, Merkle nodes (recomputed from the leaves, and checked against
    /// the source's tree head), state rows, the metadata row and the last checkpoint signed. The
    /// database must hold no ledger, no leaf and no checkpoint. If anything fails the transaction
    /// is rolled back and the database is as it was: a restore into PostgreSQL is all or nothing.
    /// Returns the number of entries copied.
    pub fn import(&self, source: &dyn Store) -> Result<u64, StoreError> {
        let meta = source
            .meta()?
            .ok_or_else(|| StoreError::Corrupt("the copy to import holds no ledger".to_owned()))?;
        let note = source.checkpoint()?;
        let mut pooled = self.pool.get().map_err(store_error)?;
        let conn = pooled.conn();
        conn.client.batch_execute("BEGIN").map_err(store_error)?;
        let outcome = Self::import_in(conn, source, &meta, note.as_deref());
        let ended = match &outcome {
            Ok(_) => conn.client.batch_execute("COMMIT"),
            Err(_) => conn.client.batch_execute("ROLLBACK"),
        };
        if ended.is_err() {
            pooled.mark_broken();
        }
        let size = outcome?;
        ended.map_err(store_error)?;
        if let Some(note) = note {
            self.keep_witness(&note)?;
        }
        Ok(size)
    }

    /// The body of [`PgStore::import`], inside its transaction.
    fn import_in(
        conn: &mut Conn,
        source: &dyn Store,
        meta: &Meta,
        note: Option<&str>,
    ) -> Result<u64, StoreError> {
        const IMPORT_CHUNK: usize = 1024;
        let db = store_error;
        let head = conn
            .client
            .query_one(
                "SELECT size, meta IS NULL, checkpoint IS NULL,
                        NOT EXISTS (SELECT 1 FROM ledger_leaves)
                 FROM ledger_head WHERE id = 1 FOR UPDATE",
                &[],
            )
            .map_err(db)?;
        let empty = head.get::<_, i64>(0) == 0
            && head.get::<_, bool>(1)
            && head.get::<_, bool>(2)
            && head.get::<_, bool>(3);
        if !empty {
            return Err(StoreError::Corrupt(
                "the database already holds a ledger (or part of one): restore into an empty database".to_owned(),
            ));
        }
        let mut tree = ledger_core::merkle::CompactTree::new();
        let mut leaves: Vec<Vec<u8>> = Vec::with_capacity(IMPORT_CHUNK);
        let mut nodes = Vec::new();
        let mut first_seq = 0;
        let flush = |conn: &mut Conn,
                     first_seq: &mut u64,
                     leaves: &mut Vec<Vec<u8>>,
                     nodes: &mut Vec<(NodeId, Hash)>|
         -> Result<(), StoreError> {
            Self::write_group(
                conn,
                &Append {
                    first_seq: *first_seq,
                    leaves,
                    nodes,
                    state: &[],
                    meta: None,
                },
            )?;
            *first_seq += leaves.len() as u64;
            leaves.clear();
            nodes.clear();
            Ok(())
        };
        source.scan_leaves(0, &mut |seq, leaf| {
            if seq >= meta.size {
                return Ok(false);
            }
            if seq != tree.size() {
                return Err(StoreError::Corrupt(format!(
                    "the copy to import lacks leaf {}",
                    tree.size()
                )));
            }
            let completed = tree
                .append(ledger_core::merkle::leaf_hash(leaf))
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            nodes.extend(completed);
            leaves.push(leaf.to_vec());
            if leaves.len() >= IMPORT_CHUNK {
                flush(conn, &mut first_seq, &mut leaves, &mut nodes)?;
            }
            Ok(true)
        })?;
        flush(conn, &mut first_seq, &mut leaves, &mut nodes)?;
        let peaks: Vec<String> = tree.peaks().iter().map(hex::encode).collect();
        if tree.size() != meta.size || peaks != meta.peaks {
            return Err(StoreError::Corrupt(format!(
                "the copy to import holds {} leaves whose tree is not its stated head ({} entries)",
                tree.size(),
                meta.size
            )));
        }
        let tables = ledger_core::state::State::TABLES;
        let mut rows: Vec<ledger_core::state::StateChange> = Vec::with_capacity(IMPORT_CHUNK);
        let write_rows = |conn: &mut Conn, rows: &mut Vec<ledger_core::state::StateChange>| {
            Self::write_group(
                conn,
                &Append {
                    first_seq: meta.size,
                    leaves: &[],
                    nodes: &[],
                    state: rows,
                    meta: None,
                },
            )?;
            rows.clear();
            Ok::<(), StoreError>(())
        };
        source.scan_state(None, RowRange::default(), &mut |table, key, value| {
            let table = tables
                .iter()
                .copied()
                .find(|t| *t == table)
                .ok_or_else(|| StoreError::Corrupt(format!("an unknown state table {table}")))?;
            rows.push(ledger_core::state::StateChange {
                table,
                key: key.to_vec(),
                value: Some(value.to_vec()),
            });
            if rows.len() >= IMPORT_CHUNK {
                write_rows(conn, &mut rows)?;
            }
            Ok(true)
        })?;
        write_rows(conn, &mut rows)?;
        Self::write_group(
            conn,
            &Append {
                first_seq: meta.size,
                leaves: &[],
                nodes: &[],
                state: &[],
                meta: Some(meta),
            },
        )?;
        if let Some(note) = note {
            let size = seq_sql(note_size(note)?)?;
            conn.client
                .execute(
                    "UPDATE ledger_head SET checkpoint = $1, checkpoint_size = $2 WHERE id = 1",
                    &[&note, &size],
                )
                .map_err(db)?;
        }
        Ok(meta.size)
    }

    fn keep_witness(&self, note: &str) -> Result<(), StoreError> {
        let Some(dir) = &self.witness_dir else {
            return Ok(());
        };
        use std::io::Write as _;
        let temporary = dir.join(format!("{WITNESS_FILE}.tmp"));
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(note.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, dir.join(WITNESS_FILE))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    fn scan_table(
        &self,
        table: &str,
        range: RowRange<'_>,
        visit: &mut RowVisitor<'_>,
    ) -> Result<(), StoreError> {
        // Bounds on the key: the prefix's range, narrowed by the cursor.
        if range
            .after
            .is_some_and(|after| !after.starts_with(range.prefix))
        {
            return Ok(());
        }
        let end = prefix_end(range.prefix);
        let mut low: (Vec<u8>, bool) = (range.prefix.to_vec(), true); // (key, inclusive)
        let mut high: Option<Vec<u8>> = end; // exclusive
        if let Some(after) = range.after {
            if range.reverse {
                high = Some(after.to_vec());
            } else {
                low = (after.to_vec(), false);
            }
        }
        loop {
            let sql = format!(
                "SELECT row_key, row_value FROM ledger_state
                 WHERE table_name = $1 AND row_key {} $2{}
                 ORDER BY row_key{} LIMIT $4",
                if low.1 { ">=" } else { ">" },
                if high.is_some() {
                    " AND row_key < $3"
                } else {
                    " AND $3::BYTEA IS NULL"
                },
                if range.reverse { " DESC" } else { "" },
            );
            let rows = self.read(|conn| {
                let statement = conn.statement(&sql)?;
                conn.client
                    .query(&statement, &[&table, &low.0, &high, &CHUNK])
            })?;
            let count = rows.len();
            let mut last: Option<Vec<u8>> = None;
            for row in rows {
                let key: Vec<u8> = row.get(0);
                let value: Vec<u8> = row.get(1);
                if !visit(table, &key, &value)? {
                    return Ok(());
                }
                last = Some(key);
            }
            let Some(last) = last.filter(|_| count as i64 == CHUNK) else {
                return Ok(());
            };
            if range.reverse {
                high = Some(last);
            } else {
                low = (last, false);
            }
        }
    }

    fn scan_all_tables(
        &self,
        range: RowRange<'_>,
        visit: &mut RowVisitor<'_>,
    ) -> Result<(), StoreError> {
        // Every table in (table, key) order; the prefix and the cursor apply to the key as the
        // embedded stores see it, `table \0 key`. Only full scans (an audit) use this.
        let mut cursor: Option<(String, Vec<u8>)> = None;
        let full = |table: &str, key: &[u8]| [table.as_bytes(), &[0], key].concat();
        loop {
            let rows = self.read(|conn| match &cursor {
                None => {
                    let statement = conn.statement(
                        "SELECT table_name, row_key, row_value FROM ledger_state
                         ORDER BY table_name, row_key LIMIT $1",
                    )?;
                    conn.client.query(&statement, &[&CHUNK])
                }
                Some((table, key)) => {
                    let statement = conn.statement(
                        "SELECT table_name, row_key, row_value FROM ledger_state
                         WHERE (table_name, row_key) > ($1, $2)
                         ORDER BY table_name, row_key LIMIT $3",
                    )?;
                    conn.client.query(&statement, &[table, key, &CHUNK])
                }
            })?;
            let count = rows.len();
            for row in rows {
                let table: String = row.get(0);
                let key: Vec<u8> = row.get(1);
                let value: Vec<u8> = row.get(2);
                let whole = full(&table, &key);
                let wanted = whole.starts_with(range.prefix)
                    && range.after.is_none_or(|after| {
                        if range.reverse {
                            whole.as_slice() < after
                        } else {
                            whole.as_slice() > after
                        }
                    });
                if wanted && !visit(&table, &key, &value)? {
                    return Ok(());
                }
                cursor = Some((table, key));
            }
            if count as i64 != CHUNK {
                return Ok(());
            }
        }
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        let slot = self.held.get_mut().unwrap_or_else(|e| e.into_inner());
        pool::close_apart(slot.conn.take().into_iter().collect());
    }
}

fn describe(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

impl Store for PgStore {
    fn meta(&self) -> Result<Option<Meta>, StoreError> {
        let bytes: Option<Vec<u8>> = self.read(|conn| {
            let statement = conn.statement("SELECT meta FROM ledger_head WHERE id = 1")?;
            Ok(conn
                .client
                .query_opt(&statement, &[])?
                .and_then(|row| row.get(0)))
        })?;
        bytes.map(|b| meta_from(&b)).transpose()
    }

    fn append(&self, group: Append<'_>) -> Result<(), StoreError> {
        {
            let mut slot = self.held.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(size) = slot.locked.take() {
                // The head is locked already (this instance caught up under the lock): write in
                // that transaction, which then commits and unlocks.
                let mut conn = slot.conn.take().ok_or_else(|| {
                    StoreError::Io("the head lock's connection is gone".to_owned())
                })?;
                if size != group.first_seq {
                    let _ = conn.client.batch_execute("ROLLBACK");
                    slot.conn = Some(conn);
                    return Err(StoreError::Behind { durable: size });
                }
                let result = match Self::write_group(&mut conn, &group) {
                    Ok(()) => conn.client.batch_execute("COMMIT").map_err(store_error),
                    Err(error) => {
                        let _ = conn.client.batch_execute("ROLLBACK");
                        Err(error)
                    }
                };
                if result.is_ok() {
                    slot.conn = Some(conn);
                } else {
                    pool::close_apart(vec![conn]);
                }
                return result;
            }
        }
        let mut last = None;
        for attempt in 0..TRANSACTION_ATTEMPTS {
            let mut pooled = self.pool.get().map_err(store_error)?;
            match self.append_once(&mut pooled, &group)? {
                Ok(()) => return Ok(()),
                Err(error) => last = Some(error),
            }
            drop(pooled);
            std::thread::sleep(std::time::Duration::from_millis(2 << attempt));
        }
        Err(last.map_or_else(|| StoreError::Io("append failed".to_owned()), store_error))
    }

    fn put_checkpoint(&self, note: &str) -> Result<(), StoreError> {
        let size = seq_sql(note_size(note)?)?;
        let stored: Option<i64> = self.read(|conn| {
            let statement = conn.statement(
                "UPDATE ledger_head SET checkpoint = $1, checkpoint_size = $2
                 WHERE id = 1 AND (checkpoint_size IS NULL OR checkpoint_size < $2)",
            )?;
            if conn.client.execute(&statement, &[&note, &size])? == 1 {
                return Ok(None);
            }
            let read = conn.statement("SELECT checkpoint_size FROM ledger_head WHERE id = 1")?;
            Ok(Some(
                conn.client
                    .query_one(&read, &[])?
                    .get::<_, Option<i64>>(0)
                    .unwrap_or(0),
            ))
        })?;
        match stored {
            None => self.keep_witness(note),
            Some(stored) => Err(StoreError::CheckpointSuperseded {
                stored_size: seq_of(stored, "the stored checkpoint's size")?,
            }),
        }
    }

    fn checkpoint(&self) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            let statement = conn.statement("SELECT checkpoint FROM ledger_head WHERE id = 1")?;
            Ok(conn
                .client
                .query_opt(&statement, &[])?
                .and_then(|row| row.get(0)))
        })
    }

    fn checkpoint_witness(&self) -> Result<Option<String>, StoreError> {
        let Some(dir) = &self.witness_dir else {
            return Ok(None);
        };
        match std::fs::read(dir.join(WITNESS_FILE)) {
            Ok(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| StoreError::Corrupt(format!("{WITNESS_FILE} is not UTF-8 text"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn leaf(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let seq = seq_sql(seq)?;
        self.read(|conn| {
            let statement = conn.statement("SELECT leaf FROM ledger_leaves WHERE seq = $1")?;
            Ok(conn
                .client
                .query_opt(&statement, &[&seq])?
                .map(|row| row.get(0)))
        })
    }

    fn scan_leaves(&self, from: u64, visit: &mut LeafVisitor<'_>) -> Result<(), StoreError> {
        let mut next = seq_sql(from)?;
        loop {
            // A chunk at a time, the connection back in the pool before `visit` runs (it may
            // read the store itself).
            let rows = self.read(|conn| {
                let statement = conn.statement(
                    "SELECT seq, leaf FROM ledger_leaves WHERE seq >= $1 ORDER BY seq LIMIT $2",
                )?;
                conn.client.query(&statement, &[&next, &CHUNK])
            })?;
            let count = rows.len();
            for row in rows {
                let seq: i64 = row.get(0);
                let leaf: Vec<u8> = row.get(1);
                if !visit(seq_of(seq, "a leaf's sequence number")?, &leaf)? {
                    return Ok(());
                }
                next = seq + 1;
            }
            if count as i64 != CHUNK {
                return Ok(());
            }
        }
    }

    fn node(&self, id: NodeId) -> Result<Option<Hash>, StoreError> {
        let level = i16::from(id.level);
        let index = seq_sql(id.index)?;
        let bytes: Option<Vec<u8>> = self.read(|conn| {
            let statement = conn.statement(
                "SELECT hash FROM ledger_nodes WHERE node_level = $1 AND node_index = $2",
            )?;
            Ok(conn
                .client
                .query_opt(&statement, &[&level, &index])?
                .map(|row| row.get(0)))
        })?;
        bytes.map(|b| hash_from(&b)).transpose()
    }

    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Option<Hash>>, StoreError> {
        let mut levels = Vec::with_capacity(ids.len());
        let mut indexes = Vec::with_capacity(ids.len());
        for id in ids {
            levels.push(i16::from(id.level));
            indexes.push(seq_sql(id.index)?);
        }
        let rows = self.read(|conn| {
            let statement = conn.statement(
                "SELECT node_level, node_index, hash FROM ledger_nodes
                 WHERE (node_level, node_index) IN
                       (SELECT * FROM unnest($1::SMALLINT[], $2::BIGINT[]))",
            )?;
            conn.client.query(&statement, &[&levels, &indexes])
        })?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let (level, index, hash): (i16, i64, Vec<u8>) = (row.get(0), row.get(1), row.get(2));
            found.insert((level, index), hash_from(&hash)?);
        }
        Ok(levels
            .into_iter()
            .zip(indexes)
            .map(|key| found.get(&key).copied())
            .collect())
    }

    fn node_run(&self, level: u8, first: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        let level_sql = i16::from(level);
        // Indexes are BIGINT: no node is stored beyond i64::MAX.
        let Ok(low) = i64::try_from(first) else {
            return Ok(Vec::new());
        };
        let high = i64::try_from(first.saturating_add(count)).unwrap_or(i64::MAX);
        let rows = self.read(|conn| {
            let statement = conn.statement(
                "SELECT node_index, hash FROM ledger_nodes
                 WHERE node_level = $1 AND node_index >= $2 AND node_index < $3
                 ORDER BY node_index",
            )?;
            conn.client.query(&statement, &[&level_sql, &low, &high])
        })?;
        let mut hashes = Vec::with_capacity(rows.len());
        for (expected, row) in (first..).zip(rows) {
            let index: i64 = row.get(0);
            if seq_of(index, "a Merkle node's index")? != expected {
                break;
            }
            let hash: Vec<u8> = row.get(1);
            hashes.push(hash_from(&hash)?);
        }
        Ok(hashes)
    }

    fn scan_state(
        &self,
        table: Option<&str>,
        range: RowRange<'_>,
        visit: &mut RowVisitor<'_>,
    ) -> Result<(), StoreError> {
        match table {
            Some(table) => self.scan_table(table, range, visit),
            None => self.scan_all_tables(range, visit),
        }
    }

    fn state_row(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|conn| {
            let statement = conn.statement(
                "SELECT row_value FROM ledger_state WHERE table_name = $1 AND row_key = $2",
            )?;
            Ok(conn
                .client
                .query_opt(&statement, &[&table, &key])?
                .map(|row| row.get(0)))
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn lock_head(&self) -> Result<Option<u64>, StoreError> {
        let mut slot = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(size) = slot.locked {
            return Ok(Some(size));
        }
        let mut conn = match slot.conn.take() {
            Some(conn) if !conn.client.is_closed() => conn,
            other => {
                pool::close_apart(other.into_iter().collect());
                pool::fresh(self.pool.connect().map_err(store_error)?)
            }
        };
        let size = match Self::begin_locked(&mut conn) {
            Ok(size) => size,
            Err(error) => {
                pool::close_apart(vec![conn]);
                return Err(store_error(error));
            }
        };
        slot.conn = Some(conn);
        slot.locked = Some(size);
        Ok(Some(size))
    }

    fn unlock_head(&self) {
        let mut slot = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if slot.locked.take().is_some() {
            let ended = slot
                .conn
                .as_mut()
                .is_some_and(|conn| conn.client.batch_execute("ROLLBACK").is_ok());
            if !ended {
                pool::close_apart(slot.conn.take().into_iter().collect());
            }
        }
    }
}
