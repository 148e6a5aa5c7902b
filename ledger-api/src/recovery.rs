//! `carbon-ledger restore`: a ledger rebuilt from copies of its log, never behind a checkpoint its
//! key signed without saying so, and never half-built where it can be opened.
//!
//! ```text
//! checkpoints found ── backup's --checkpoint, --floor FILE|URL, --witness URL, each mirror's ──▶ floor (newest)
//! leaves ── --export FILE, then each --mirror DIR|URL from where the copy ends ──▶ Restore (verified)
//!     new folder: built in DIR's sibling .NAME.restore-PID (marked RESTORE-INCOMPLETE), checked by
//!                 opening it, then renamed to DIR; on PostgreSQL copied in one transaction first
//!     DIR behind its floor: the missing leaves appended in place, each chunk one durable write
//! ```
//!
//! The logic is [`ledger_core::ledger::Restore`]; this module finds the sources and the folder.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use ledger_core::ids::Origin;
use ledger_core::ledger::{Ledger, Restore, Restored};
use ledger_core::store::{SledStore, Store};
use ledger_core::witness::origin_hash;

use crate::cli::CliError;
use crate::client::{Client, ClientOptions};
use crate::keys::{self, LedgerFile, RESTORE_MARKER};
use crate::mirror::{fetch_leaves, fetch_note, FETCH_PAGE};

/// Everything `restore` needs.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// The data folder to create, or to complete if it holds a ledger behind its floor.
    pub data: PathBuf,
    /// The operator's secret key file.
    pub operator_key_file: PathBuf,
    /// A backup's export (NDJSON).
    pub export: Option<PathBuf>,
    /// The backup's checkpoint.
    pub checkpoint: Option<PathBuf>,
    /// Copies of the log: a mirror's (or a witness's, or an old data) folder, or the URL of a
    /// mirror or a ledger.
    pub mirrors: Vec<String>,
    /// More checkpoints the operator key signed: files (a bank's copy, an older backup's) or URLs.
    pub floors: Vec<String>,
    /// Witnesses whose latest cosigned checkpoint is a floor: their base URLs.
    pub witnesses: Vec<String>,
    /// Restore into this PostgreSQL database (empty) instead of sled in the data folder.
    pub store: Option<String>,
    /// A CA certificate (PEM) for `https://` sources.
    pub ca_cert: Option<PathBuf>,
}

/// Leaves read per chunk from a file or a folder.
const CHUNK: usize = 1024;

/// A copy of the log to read leaves from.
enum Source {
    /// A store on disk (a stopped mirror's, a witness's, an old data folder's).
    Folder { path: PathBuf, store: SledStore },
    /// A mirror's or a ledger's service.
    Url(Client),
}

impl Source {
    fn name(&self) -> String {
        match self {
            Source::Folder { path, .. } => path.display().to_string(),
            Source::Url(client) => client.url().to_owned(),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError(format!("cannot start the runtime: {e}")))
}

fn is_url(text: &str) -> bool {
    text.starts_with("http://") || text.starts_with("https://")
}

fn read_text(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| CliError(format!("{}: {e}", path.display())))
}

/// Where the store of a copy of the log lives in `path`: a mirror's folder, an old data folder, a
/// witness's folder (its copy of the ledger `origin`, when known), or a sled store itself.
fn store_path(path: &Path, origin: Option<&str>) -> Result<PathBuf, CliError> {
    if path.join("mirror.json").is_file() || path.join("ledger.json").is_file() {
        return Ok(path.join("store"));
    }
    if path.join("witness.json").is_file() {
        let origin = origin.ok_or_else(|| {
            CliError(format!(
                "{}: a witness's folder holds copies of several ledgers; give the backup's --checkpoint so that its origin is known",
                path.display()
            ))
        })?;
        return Ok(path.join("logs").join(origin_hash(origin)));
    }
    if path.join("db").is_file() {
        return Ok(path.to_owned());
    }
    Err(CliError(format!(
        "{} is neither a mirror's folder, a witness's, a data folder nor a store",
        path.display()
    )))
}

/// The checkpoints found, `(note, where)`, and the copies of the log to read.
struct Found {
    notes: Vec<(String, String)>,
    sources: Vec<Source>,
}

fn find(
    options: &RestoreOptions,
    rt: &tokio::runtime::Runtime,
    known_origin: Option<String>,
) -> Result<(Origin, Found), CliError> {
    let client = |url: &str| {
        Client::with_options(
            url,
            ClientOptions {
                ca_cert: options.ca_cert.clone(),
            },
        )
        .map_err(CliError::from)
    };
    let mut notes = Vec::new();
    if let Some(path) = &options.checkpoint {
        notes.push((read_text(path)?, path.display().to_string()));
    }
    for floor in &options.floors {
        let note = if is_url(floor) {
            let at = client(floor)?;
            rt.block_on(fetch_note(&at, "")).map_err(CliError)?
        } else {
            read_text(Path::new(floor))?
        };
        notes.push((note, floor.clone()));
    }
    let origin_of = |notes: &[(String, String)]| {
        known_origin.clone().or_else(|| {
            notes
                .first()
                .and_then(|(n, _)| n.lines().next().map(str::to_owned))
        })
    };
    let mut sources = Vec::new();
    for mirror in &options.mirrors {
        if is_url(mirror) {
            let at = client(mirror)?;
            match rt.block_on(fetch_note(&at, "/v1/checkpoint")) {
                Ok(note) => notes.push((note, format!("{mirror}/v1/checkpoint"))),
                Err(error) => eprintln!("note: no checkpoint from {mirror}: {error}"),
            }
            sources.push(Source::Url(at));
        } else {
            let path = PathBuf::from(mirror);
            let at = store_path(&path, origin_of(&notes).as_deref())?;
            if !at.join("db").is_file() {
                return Err(CliError(format!(
                    "{}: no store in this folder",
                    at.display()
                )));
            }
            let store = SledStore::open(&at).map_err(|e| {
                CliError(format!(
                    "{}: {e} (stop the mirror or witness using it, or give its URL)",
                    at.display()
                ))
            })?;
            for (note, kept) in [
                (store.checkpoint(), "checkpoint row"),
                (store.checkpoint_witness(), "last-checkpoint file"),
            ] {
                if let Some(note) = note.map_err(|e| CliError(format!("{}: {e}", at.display())))? {
                    notes.push((note, format!("{} ({kept})", path.display())));
                }
            }
            sources.push(Source::Folder { path, store });
        }
    }
    let origin = origin_of(&notes).ok_or_else(|| {
        CliError(
            "a restore needs a checkpoint signed by the operator key: give the backup's --checkpoint, a --floor, or a --mirror that has one"
                .to_owned(),
        )
    })?;
    for witness in &options.witnesses {
        let at = client(witness)?;
        let path = format!("/{}/checkpoint", origin_hash(&origin));
        let note = rt.block_on(fetch_note(&at, &path)).map_err(|e| {
            CliError(format!(
                "the witness {witness} has no checkpoint of this ledger to give: {e}"
            ))
        })?;
        notes.push((note, format!("the witness {witness}")));
    }
    let origin: Origin = origin.parse().map_err(|e| {
        CliError(format!(
            "the checkpoints' origin \"{origin}\" is not valid: {e}"
        ))
    })?;
    Ok((origin, Found { notes, sources }))
}

/// Feeds the export, then every copy of the log from where the restore has got to; its progress
/// goes to standard error (see [`crate::progress`]).
fn feed(
    restore: &mut Restore,
    export: Option<&Path>,
    sources: &[Source],
    rt: &tokio::runtime::Runtime,
) -> Result<(), CliError> {
    let fail = |source: &str, e: &dyn std::fmt::Display| CliError(format!("{e} (in {source})"));
    // Entries held after each durable write, on standard error.
    let progress = &crate::progress::Reporter::new("restore");
    if let Some(path) = export {
        let file = std::fs::File::open(path).map_err(|e| fail(&path.display().to_string(), &e))?;
        let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(CHUNK);
        // Completing a ledger: the lines it holds already are passed over.
        let mut held = restore.size();
        for line in std::io::BufRead::split(std::io::BufReader::new(file), b'\n') {
            let line = line.map_err(|e| fail(&path.display().to_string(), &e))?;
            if line.is_empty() {
                continue;
            }
            if held > 0 {
                held -= 1;
                continue;
            }
            chunk.push(line);
            if chunk.len() >= CHUNK {
                restore
                    .append_with(&chunk, progress)
                    .map_err(|e| fail("the export", &e))?;
                chunk.clear();
            }
        }
        restore
            .append_with(&chunk, progress)
            .map_err(|e| fail("the export", &e))?;
    }
    for source in sources {
        let name = source.name();
        match source {
            Source::Folder { store, .. } => {
                let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(CHUNK);
                let mut failure = None;
                let mut next = restore.size();
                store
                    .scan_leaves(next, &mut |seq, leaf| {
                        if seq != next {
                            return Ok(false);
                        }
                        next += 1;
                        chunk.push(leaf.to_vec());
                        if chunk.len() >= CHUNK {
                            if let Err(e) = restore.append_with(&chunk, progress) {
                                failure = Some(e);
                                return Ok(false);
                            }
                            chunk.clear();
                        }
                        Ok(true)
                    })
                    .map_err(|e| fail(&name, &e))?;
                if let Some(e) = failure {
                    return Err(fail(&name, &e));
                }
                restore
                    .append_with(&chunk, progress)
                    .map_err(|e| fail(&name, &e))?;
            }
            Source::Url(client) => loop {
                let leaves = rt
                    .block_on(fetch_leaves(client, restore.size(), FETCH_PAGE))
                    .map_err(CliError)?;
                if leaves.is_empty() {
                    break;
                }
                restore
                    .append_with(&leaves, progress)
                    .map_err(|e| fail(&name, &e))?;
            },
        }
    }
    progress.finish();
    Ok(())
}

/// What a restore says when it is done.
fn report(origin: &Origin, dir: &Path, restored: &Restored) -> Result<String, CliError> {
    let mut out = format!(
        "restored ledger {origin} into {}: {} entries, root {}\nfloor: the checkpoint of {} entries from {}\n",
        dir.display(),
        restored.size,
        hex::encode(restored.root),
        restored.floor.checkpoint.size,
        restored.floor.source
    );
    if restored.missing() > 0 {
        out.push_str(&format!(
            "the ledger in {} is BEHIND ITS FLOOR by {} entries: it answers reads but accepts no entry and signs no checkpoint until they are restored from a copy of the log that verifies against that checkpoint — carbon-ledger restore --data {} --operator-key-file KEY --mirror MIRROR (a mirror's URL or folder); submitting them again cannot recreate them",
            dir.display(),
            restored.missing(),
            dir.display()
        ));
        return Err(CliError(out));
    }
    Ok(out)
}

/// `restore`: see the module documentation.
pub fn restore(options: &RestoreOptions) -> Result<String, CliError> {
    let dir = &options.data;
    let key = keys::read_key_file(&options.operator_key_file)?;
    let existing = dir.join("ledger.json").is_file();
    if dir.exists() && !existing {
        let empty = std::fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(CliError(format!(
                "{} exists and is not empty: restore into a new folder",
                dir.display()
            )));
        }
    }
    let rt = runtime()?;
    if existing {
        return resume(options, &key.verifying_key(), &rt);
    }
    let (origin, found) = find(options, &rt, None)?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = dir
        .file_name()
        .ok_or_else(|| CliError(format!("{}: not a folder name", dir.display())))?;
    std::fs::create_dir_all(&parent).map_err(|e| CliError(format!("{}: {e}", parent.display())))?;
    let building = parent.join(format!(
        ".{}.restore-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let outcome = build(options, &key, &origin, found, &building, &rt);
    match outcome {
        Ok(restored) => {
            finish_folder(&building, dir)?;
            report(&origin, dir, &restored)
        }
        Err(error) => {
            let _ = std::fs::remove_dir_all(&building);
            Err(CliError(format!(
                "the backup does NOT restore: {error}; nothing was restored into {} (it was built apart and discarded)",
                dir.display()
            )))
        }
    }
}

/// Builds the ledger in `building`, checks that it opens, and leaves it ready to move.
fn build(
    options: &RestoreOptions,
    key: &ed25519_dalek::SigningKey,
    origin: &Origin,
    found: Found,
    building: &Path,
    rt: &tokio::runtime::Runtime,
) -> Result<Restored, CliError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |e: std::io::Error| CliError(format!("{}: {e}", path.display()))
    };
    std::fs::create_dir(building).map_err(io(building))?;
    std::fs::write(
        building.join(RESTORE_MARKER),
        b"a restore is building this folder\n",
    )
    .map_err(io(building))?;
    let store_dir = building.join("store");
    let (restored, operator) = {
        let store = SledStore::open(&store_dir).map_err(|e| CliError(e.to_string()))?;
        let mut restore = Restore::begin(
            Box::new(store),
            origin.clone(),
            key.verifying_key(),
            found.notes,
        )
        .map_err(|e| CliError(e.to_string()))?;
        feed(&mut restore, options.export.as_deref(), &found.sources, rt)?;
        let operator = restore
            .operator()
            .ok_or_else(|| CliError("no entry was restored".to_owned()))?;
        (restore.finish(), operator)
    };
    drop(found.sources);
    keys::write_key_file(&building.join("operator.key"), key)?;
    let file = LedgerFile {
        origin: origin.to_string(),
        operator: operator.0.to_string(),
        operator_name: operator.1.to_string(),
    };
    let text = serde_json::to_string_pretty(&file).unwrap_or_default() + "\n";
    let ledger_json = building.join("ledger.json");
    std::fs::write(&ledger_json, text)
        .and_then(|()| std::fs::File::open(&ledger_json)?.sync_all())
        .map_err(io(building))?;
    if let Some(url) = &options.store {
        // Into PostgreSQL in one transaction, from the verified copy; then the copy goes.
        let scratch = SledStore::open(&store_dir).map_err(|e| CliError(e.to_string()))?;
        let target = ledger_postgres::PgStore::connect(url)
            .map_err(|e| CliError(format!("{}: {e}", crate::server::describe_store(url))))?
            .with_witness(building);
        target.import(&scratch).map_err(|e| {
            CliError(format!(
                "{}: {e} (the transaction was rolled back: the database is as it was)",
                crate::server::describe_store(url)
            ))
        })?;
        drop(scratch);
        std::fs::remove_dir_all(&store_dir).map_err(io(&store_dir))?;
    }
    // The check: the folder opens as a ledger, with the tree restored (behind its floor if short
    // of it). The marker stays until this is done.
    let opened = open_built(building, options.store.as_deref())?;
    if (opened.size(), opened.root()) != (restored.size, restored.root) {
        return Err(CliError(format!(
            "the restored folder opens with {} entries, not the {} restored",
            opened.size(),
            restored.size
        )));
    }
    drop(opened);
    Ok(restored)
}

/// Opens the folder being built, past its marker, to check it.
fn open_built(building: &Path, store: Option<&str>) -> Result<Ledger, CliError> {
    let ledger_file: LedgerFile = serde_json::from_str(&read_text(&building.join("ledger.json"))?)
        .map_err(|e| CliError(e.to_string()))?;
    let key = keys::read_key_file(&building.join("operator.key"))?;
    let config = ledger_core::ledger::LedgerConfig::new(
        ledger_file
            .origin
            .parse()
            .map_err(|e| CliError(format!("{e}")))?,
        ledger_file
            .operator
            .parse()
            .map_err(|e| CliError(format!("{e}")))?,
        ledger_file
            .operator_name
            .parse()
            .map_err(|e| CliError(format!("{e}")))?,
        key,
    );
    let store: Box<dyn Store> = match store {
        None => {
            Box::new(SledStore::open(&building.join("store")).map_err(|e| CliError(e.to_string()))?)
        }
        Some(url) => Box::new(
            ledger_postgres::PgStore::connect(url)
                .map_err(|e| CliError(e.to_string()))?
                .with_witness(building),
        ),
    };
    Ledger::open(store, config)
        .map_err(|e| CliError(format!("the restored ledger does not open: {e}")))
}

/// Makes the built folder the data folder: marker removed, synced, renamed over `dir` (absent or
/// empty), the parent synced.
fn finish_folder(building: &Path, dir: &Path) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError(format!("{}: {e}", dir.display()));
    std::fs::remove_file(building.join(RESTORE_MARKER)).map_err(io)?;
    std::fs::File::open(building)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(building, dir).map_err(io)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

/// Completes a ledger that is behind its floor, in place.
fn resume(
    options: &RestoreOptions,
    operator: &VerifyingKey,
    rt: &tokio::runtime::Runtime,
) -> Result<String, CliError> {
    let dir = &options.data;
    let data = keys::open_data_dir(&keys::DataDirOptions {
        dir: dir.clone(),
        origin: None,
        operator: String::new(),
        operator_name: String::new(),
    })?;
    if data.config.operator_key.verifying_key() != *operator {
        return Err(CliError(format!(
            "{}: its operator key is not the one in {}",
            dir.display(),
            options.operator_key_file.display()
        )));
    }
    let (origin, found) = find(options, rt, Some(data.config.origin.to_string()))?;
    let store: Box<dyn Store> =
        match &options.store {
            None => Box::new(SledStore::open(&data.store_path).map_err(|e| {
                CliError(format!("{}: {e} (stop the service first)", dir.display()))
            })?),
            Some(url) => Box::new(
                ledger_postgres::PgStore::connect(url)
                    .map_err(|e| CliError(format!("{}: {e}", crate::server::describe_store(url))))?
                    .with_witness(dir),
            ),
        };
    let mut restore = Restore::resume(store, origin.clone(), *operator, found.notes)
        .map_err(|e| CliError(format!("{}: {e}", dir.display())))?;
    if restore.size() >= restore.floor().checkpoint.size {
        return Err(CliError(format!(
            "{} exists and is not empty: it holds a ledger of {} entries, not behind any checkpoint it keeps or was given; restore into a new folder",
            dir.display(),
            restore.size()
        )));
    }
    let before = restore.size();
    let fed = feed(&mut restore, options.export.as_deref(), &found.sources, rt);
    let restored = restore.finish();
    fed.map_err(|e| {
        CliError(format!(
            "the missing entries do NOT restore: {e}; {} still holds its {} entries and is behind its floor (of {})",
            dir.display(),
            restored.size,
            restored.floor.checkpoint.size
        ))
    })?;
    let mut out = report(&origin, dir, &restored)?;
    out.push_str(&format!(
        "{} entries were missing and are back; the ledger reaches its floor\n",
        restored.size - before
    ));
    Ok(out)
}
