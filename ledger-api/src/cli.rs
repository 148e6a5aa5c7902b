//! The commands of `carbon-ledger` for people without a Rust program: make a key, sign a body,
//! submit it, and check an export or a bank's pledge bundle offline.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use ledger_core::entry::{Body, Submission};
use ledger_core::ids::{ParticipantId, PublicKey, Timestamp};
use ledger_core::verify::{self, PledgeBundle};
use ledger_core::{checkpoint, sign, wire};
use serde_json::Value;

use crate::client::Client;
use crate::keys;

/// Why a command failed, in words for the person who ran it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

impl CliError {
    fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

impl From<keys::KeyError> for CliError {
    fn from(e: keys::KeyError) -> Self {
        Self(e.to_string())
    }
}

impl From<crate::client::ClientError> for CliError {
    fn from(e: crate::client::ClientError) -> Self {
        Self(e.0)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError(format!("{}: {e}", path.display())))
}

fn read_text(path: &Path) -> Result<String, CliError> {
    String::from_utf8(read(path)?)
        .map_err(|_| CliError(format!("{}: not UTF-8 text", path.display())))
}

/// `keygen --out FILE`: writes a new secret key file (mode 0600) and returns the public key,
/// base64, as `register_participant` takes it.
pub fn keygen(out: &Path) -> Result<String, CliError> {
    let key = keys::generate_key();
    keys::write_key_file(out, &key)?;
    Ok(keys::public_key_base64(&key))
}

/// `sign`: signs a body (or adds signatures to a submission) with each (key file, signer id).
///
/// A body without `created_at` gets the current time; one without `ledger` gets `ledger` if given.
/// A submission's body is left exactly as it is, so that parties can sign one after another.
pub fn sign(
    input: &Path,
    signers: &[(PathBuf, String)],
    ledger: Option<&str>,
) -> Result<String, CliError> {
    if signers.is_empty() {
        return Err(CliError::new("give at least one --key FILE --signer ID"));
    }
    let value = wire::parse_strict(&read(input)?)
        .map_err(|e| CliError(format!("{}: {e}", input.display())))?;
    let is_submission = value.get("body").is_some() && value.get("signatures").is_some();
    let mut submission: Submission = if is_submission {
        serde_json::from_value(value)
            .map_err(|e| CliError(format!("{}: not a submission: {e}", input.display())))?
    } else {
        let Value::Object(mut map) = value else {
            return Err(CliError(format!(
                "{}: expected a body (a JSON object with \"type\" and \"id\") or a submission",
                input.display()
            )));
        };
        if !map.contains_key("ledger") {
            let origin = ledger.ok_or_else(|| {
                CliError::new("the body has no \"ledger\": add it, or give --ledger ORIGIN (GET /v1/ledger tells the origin)")
            })?;
            map.insert("ledger".into(), Value::String(origin.to_owned()));
        }
        map.entry("created_at")
            .or_insert_with(|| Value::String(Timestamp::now().to_string()));
        let body: Body = serde_json::from_value(Value::Object(map))
            .map_err(|e| CliError(format!("{}: not a valid body: {e}", input.display())))?;
        Submission {
            body,
            signatures: Vec::new(),
        }
    };
    let prepared = wire::Prepared::new(submission.clone())
        .map_err(|e| CliError(format!("the body cannot be encoded: {e}")))?;
    for (key_path, signer) in signers {
        let id: ParticipantId = signer
            .parse()
            .map_err(|e| CliError(format!("--signer {signer}: {e}")))?;
        let key = keys::read_key_file(key_path)?;
        let line = sign::sign_line(prepared.canonical_body(), &id, &key);
        // Signing again with the same key replaces the earlier line rather than doubling it.
        submission
            .signatures
            .retain(|l| !(l.signer == id && l.sig == line.sig));
        submission.signatures.push(line);
    }
    serde_json::to_string_pretty(&submission).map_err(|e| CliError(e.to_string()))
}

/// `submit --url URL FILE`: posts a submission (or a group `{"entries": [...]}`) and returns the
/// receipt(s) as JSON.
pub async fn submit(url: &str, file: &Path) -> Result<String, CliError> {
    Ok(submit_to(&Client::new(url)?, file).await?.answer)
}

/// What `submit` did: the route it posted to, and the service's answer.
#[derive(Clone, Debug)]
pub struct Submitted {
    /// `/v1/entries`, or `/v1/entries/group` for a group.
    pub path: &'static str,
    /// The receipt (or the group's receipts), as pretty JSON.
    pub answer: String,
}

/// `submit`, through a client set up with options (`--ca-cert` for a service with a private
/// certificate).
pub async fn submit_to(client: &Client, file: &Path) -> Result<Submitted, CliError> {
    let bytes = read(file)?;
    let is_group = wire::parse_strict(&bytes)
        .ok()
        .is_some_and(|v| v.get("entries").is_some());
    let path = if is_group {
        "/v1/entries/group"
    } else {
        "/v1/entries"
    };
    // A connection error names the URL already; a refusal is told where it came from.
    let response = client.post(path, bytes).await?;
    let value: Value = response
        .ok_json()
        .map_err(|e| CliError(format!("{e} (answered by {}{path})", client.url())))?;
    let answer = serde_json::to_string_pretty(&value).map_err(|e| CliError(e.to_string()))?;
    Ok(Submitted { path, answer })
}

/// Reads an operator key given as base64 (as `GET /v1/ledger` shows it), as a C2SP verifier key
/// (`name+hash+base64`), or as the path of a file holding either (or a secret key file).
pub fn operator_key(text: &str) -> Result<VerifyingKey, CliError> {
    let text = text.trim();
    if let Ok(key) = text.parse::<PublicKey>() {
        return Ok(*key.verifying_key());
    }
    if let Ok((_, key)) = checkpoint::parse_verifier_key(text) {
        return Ok(key);
    }
    let path = Path::new(text);
    if path.is_file() {
        let content = read_text(path)?;
        let content = content.trim();
        if content.starts_with(keys::SECRET_KEY_LABEL) {
            return Ok(keys::read_key_file(path)?.verifying_key());
        }
        if let Ok(key) = content.parse::<PublicKey>() {
            return Ok(*key.verifying_key());
        }
        if let Ok((_, key)) = checkpoint::parse_verifier_key(content) {
            return Ok(key);
        }
    }
    Err(CliError(format!(
        "--operator-key \"{text}\" is neither a base64 public key, a note verifier key, nor a key file"
    )))
}

/// `verify`: replays an export against a checkpoint signed by the operator key, offline. Its
/// progress goes to standard error (see [`crate::progress`]).
pub fn verify(export: &Path, checkpoint_file: &Path, key: &str) -> Result<String, CliError> {
    let key = operator_key(key)?;
    let note = read_text(checkpoint_file)?;
    let file =
        std::fs::File::open(export).map_err(|e| CliError(format!("{}: {e}", export.display())))?;
    let progress = crate::progress::Reporter::new("verify");
    let report = verify::verify_export_with(std::io::BufReader::new(file), &note, &key, &progress)
        .map_err(|e| CliError(format!("the export does NOT verify: {e}")))?;
    progress.finish();
    Ok(format!(
        "OK: the export of ledger \"{}\" verifies against the checkpoint.\n\
         entries replayed: {}\nsignatures checked: {}\ncheckpoint size: {}\ncheckpoint root: {}\n",
        report.origin,
        report.entries,
        report.signatures,
        report.checkpoint_size,
        report.checkpoint_root
    ))
}

/// What a bank requires of a bundle: its witnesses (C2SP vkeys of type 0x04, or files holding
/// one), how many must have cosigned, and a file keeping the last checkpoint it accepted.
#[derive(Clone, Debug, Default)]
pub struct BankOptions {
    /// `--witness VKEY`, repeatable.
    pub witnesses: Vec<String>,
    /// `--quorum K`; by default every witness given must have cosigned.
    pub quorum: Option<usize>,
    /// `--state FILE`.
    pub state: Option<PathBuf>,
}

/// `verify-pledge --bundle FILE --operator-key KEY [--witness VKEY]... [--quorum K] [--state FILE]`:
/// a bank's offline check of a pledge bundle, trusting only the operator's public key and the
/// witnesses it chose. With `--state`, the bundle's checkpoint must extend the last one accepted,
/// which it then replaces.
pub fn verify_pledge(bundle: &Path, key: &str, bank: &BankOptions) -> Result<String, CliError> {
    let operator = operator_key(key)?;
    let bundle: PledgeBundle = serde_json::from_slice(&read(bundle)?)
        .map_err(|e| CliError(format!("{}: not a pledge bundle: {e}", bundle.display())))?;
    let witnesses = bank
        .witnesses
        .iter()
        .map(|w| {
            let text = match Path::new(w).is_file() {
                true => read_text(Path::new(w))?,
                false => w.clone(),
            };
            checkpoint::parse_cosigner_key(text.trim()).map_err(|e| {
                CliError(format!(
                    "--witness \"{w}\" is not a witness's verifier key: {e}"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let accepted = match &bank.state {
        Some(path) if path.exists() => {
            let note = read_text(path)?;
            let origin = note.lines().next().unwrap_or_default().to_owned();
            Some(
                checkpoint::open_checkpoint(&note, &origin, &operator).map_err(|e| {
                    CliError(format!(
                        "{}: not a checkpoint of this operator: {e}",
                        path.display()
                    ))
                })?,
            )
        }
        _ => None,
    };
    let policy = verify::BankPolicy {
        quorum: bank.quorum.unwrap_or(witnesses.len()),
        witnesses,
        accepted,
    };
    let f = verify::verify_pledge_bundle_with(&bundle, &operator, &policy)
        .map_err(|e| CliError(e.to_string()))?;
    if let Some(path) = &bank.state {
        write_atomically(path, bundle.checkpoint.as_bytes())?;
    }
    let mut out = format!(
        "OK: pledge {} verifies under the checkpoint of size {} (root {}).\n",
        f.pledge, f.checkpoint_size, f.checkpoint_root
    );
    if policy.quorum > 0 || !f.cosigned_by.is_empty() {
        out.push_str(&format!(
            "cosigned by {} of the {} witnesses given (quorum {}): {}\n",
            f.cosigned_by.len(),
            policy.witnesses.len(),
            policy.quorum,
            f.cosigned_by.join(", ")
        ));
    }
    out.push_str(&f.describe());
    if let Some(path) = &bank.state {
        out.push_str(&format!(
            "the checkpoint is kept in {} as the last one accepted\n",
            path.display()
        ));
    }
    Ok(out)
}

/// Replaces `path` with `bytes`: a temporary file beside it, synced, renamed over it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write as _;
    let io = |e: std::io::Error| CliError(format!("{}: {e}", path.display()));
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

/// `check --data DIR [--store URL]`: re-verifies a stopped ledger from its own store — every signature, the
/// chain, the tree and the state — and names the first bad entry. Its progress goes to standard
/// error (see [`crate::progress`]).
pub fn check(dir: &Path, store: Option<&str>) -> Result<String, CliError> {
    let data = existing_data_dir(dir)?;
    let config = data.config.clone();
    let ledger = crate::server::open_ledger(
        &data,
        config,
        store,
        ledger_core::store::DEFAULT_RESERVE_BYTES,
    ).map_err(|e| match &e {
        crate::server::ServeError::Ledger { source, .. }
            if matches!(
                **source,
                ledger_core::ledger::LedgerError::Store(ledger_core::store::StoreError::InUse(_))
            ) =>
        {
            CliError(format!(
                "the ledger in {} is open in a running service (its store is locked): stop the service first, then check again; check re-verifies a stopped ledger",
                dir.display()
            ))
        }
        _ => CliError(format!("{e}")),
    })?;
    let progress = crate::progress::Reporter::new("check");
    let report = ledger.verify_full_with(&progress).map_err(|e| {
        CliError(format!(
            "the ledger in {} does NOT verify: {e}",
            dir.display()
        ))
    })?;
    progress.finish();
    if let Some(behind) = ledger.behind_floor() {
        return Err(CliError(format!(
            "the {} entries of the ledger in {} verify (root {}), but it is not whole: {behind}",
            report.entries,
            dir.display(),
            report.root
        )));
    }
    Ok(format!(
        "ledger {} verifies: {} entries, {} signatures, root {}\n",
        ledger.origin(),
        report.entries,
        report.signatures,
        report.root
    ))
}

/// Opens the data folder of an existing ledger (never creates one).
fn existing_data_dir(dir: &Path) -> Result<keys::DataDir, CliError> {
    keys::refuse_unfinished_restore(dir)?;
    if !dir.join("ledger.json").is_file() || !dir.join("operator.key").is_file() {
        return Err(CliError(format!(
            "{} is not a ledger's data folder (no ledger.json and operator.key)",
            dir.display()
        )));
    }
    Ok(keys::open_data_dir(&keys::DataDirOptions {
        dir: dir.to_owned(),
        origin: None,
        operator: String::new(),
        operator_name: String::new(),
    })?)
}
