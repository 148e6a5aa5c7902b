//! A small, bounded pool of connections, each with its prepared statements.
//!
//! A connection that failed in a way that may have broken it is dropped instead of returned, so
//! that a restarted database costs each instance one failed request per idle connection at most
//! (reads retry once on a fresh connection; see the store).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls, Statement};

/// How long a caller waits for a free connection before the store says it is unavailable.
const WAIT_FOR_CONNECTION: Duration = Duration::from_secs(10);

/// One connection and the statements prepared on it.
pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    /// The statement for `sql`, prepared once per connection.
    pub(crate) fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

/// A connection outside the pool (the one that holds the head lock).
pub(crate) fn fresh(client: Client) -> Conn {
    Conn {
        client,
        statements: HashMap::new(),
    }
}

struct State {
    idle: Vec<Conn>,
    open: usize,
}

pub(crate) struct Pool {
    config: postgres::Config,
    max: usize,
    state: Mutex<State>,
    freed: Condvar,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// A connection taken from the pool; it goes back when dropped, unless marked broken.
pub(crate) struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    broken: bool,
}

impl Pool {
    pub(crate) fn new(config: postgres::Config, max: usize) -> Self {
        Self {
            config,
            max: max.max(1),
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// A new connection, outside the pool's count (migrations at start).
    pub(crate) fn connect(&self) -> Result<Client, postgres::Error> {
        let mut client = self.config.connect(NoTls)?;
        // A session that holds the head lock and then hangs must not block every other instance
        // for ever: the server ends a transaction left idle this long. (Not every database
        // knows the setting; it is a safety net, not a requirement.)
        let _ = client.batch_execute("SET idle_in_transaction_session_timeout = 60000");
        Ok(client)
    }

    pub(crate) fn get(&self) -> Result<Pooled<'_>, postgres::Error> {
        let deadline = Instant::now() + WAIT_FOR_CONNECTION;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(self.pooled(conn));
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(client) => Ok(self.pooled(Conn {
                        client,
                        statements: HashMap::new(),
                    })),
                    Err(error) => {
                        self.release_slot();
                        Err(error)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                drop(state);
                // Connect anyway, outside the count: a caller holding one connection and asking
                // for another (a scan that reads rows per item) must not wait for itself.
                let client = self.connect()?;
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state.open += 1;
                drop(state);
                return Ok(self.pooled(Conn {
                    client,
                    statements: HashMap::new(),
                }));
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn pooled(&self, conn: Conn) -> Pooled<'_> {
        Pooled {
            pool: self,
            conn: Some(conn),
            broken: false,
        }
    }

    fn release_slot(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.open = state.open.saturating_sub(1);
        self.freed.notify_one();
    }

    /// Drops every idle connection (after the database went away, they are all broken).
    pub(crate) fn clear(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = state.idle.len();
        state.idle.clear();
        state.open = state.open.saturating_sub(dropped);
        self.freed.notify_all();
    }
}

/// Closing a connection blocks on its own runtime, which panics on a thread that is running an
/// async runtime already (a store dropped inside an async task): connections are closed on a
/// thread of their own.
pub(crate) fn close_apart(conns: Vec<Conn>) {
    if conns.is_empty() {
        return;
    }
    let closing = std::thread::Builder::new()
        .name("pg-close".to_owned())
        .spawn(move || drop(conns));
    if let Ok(closing) = closing {
        let _ = closing.join();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle =
            std::mem::take(&mut self.state.get_mut().unwrap_or_else(|e| e.into_inner()).idle);
        close_apart(idle);
    }
}

impl Pooled<'_> {
    pub(crate) fn conn(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("a pooled connection is present until dropped"))
    }

    /// Marks the connection as unusable: it is closed instead of returned.
    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.broken || conn.client.is_closed() {
            close_apart(vec![conn]);
            self.pool.release_slot();
            return;
        }
        let mut state = self.pool.state.lock().unwrap_or_else(|e| e.into_inner());
        state.idle.push(conn);
        self.pool.freed.notify_one();
    }
}
