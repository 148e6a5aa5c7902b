//! A scratch database beside the one a URL names, for tools that need an empty ledger (the
//! bench): created with `CREATE DATABASE`, dropped when done. It never touches the named
//! database's own tables.

use std::sync::atomic::{AtomicU64, Ordering};

use ledger_core::store::StoreError;
use postgres::NoTls;

use crate::{store_error, PgStore};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// An empty database of its own on the server a URL names; dropped with it.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin: postgres::Config,
    name: String,
    config: postgres::Config,
}

impl ScratchDatabase {
    /// Creates `carbon_ledger_scratch_<pid>_<n>` on the server of `url` (its user needs the
    /// CREATEDB privilege).
    pub fn create(url: &str) -> Result<Self, StoreError> {
        let admin: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Io(format!("the store URL is not valid: {e}")))?;
        let name = format!(
            "carbon_ledger_scratch_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut client = admin.connect(NoTls).map_err(store_error)?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(store_error)?;
        let mut config = admin.clone();
        config.dbname(&name);
        Ok(Self {
            admin,
            name,
            config,
        })
    }

    /// A store on the scratch database, with at most `max_connections` connections.
    pub fn store(&self, max_connections: usize) -> Result<PgStore, StoreError> {
        PgStore::connect_config(self.config.clone(), max_connections)
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = self.admin.connect(NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {}", self.name));
        }
    }
}
