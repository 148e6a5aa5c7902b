//! Key files and the service's data folder.
//!
//! A key file holds the base64 of a 32-byte Ed25519 seed and a newline, and is created with mode
//! 0600. The data folder of `carbon-ledger serve` holds:
//!
//! ```text
//! DIR/operator.key   the operator's key (signs the genesis entry and every checkpoint)
//! DIR/ledger.json    {"origin", "operator", "operator_name"}: what the ledger was created as
//! DIR/store/         the sled store
//! ```
//!
//! On first start the key and `ledger.json` are created; after that they are reused, and a
//! different `--origin` is refused rather than silently ignored.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use ledger_core::ids::{Origin, ParticipantId, Text};
use ledger_core::ledger::LedgerConfig;
use serde::{Deserialize, Serialize};

/// Why a key file or the data folder could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A key file is not `ed25519-seed:` and the base64 of 32 bytes.
    #[error("{0}: not a secret key file (expected a line \"ed25519-seed:\" and the base64 of a 32-byte Ed25519 seed, as `carbon-ledger keygen` writes)")]
    BadKeyFile(PathBuf),
    /// `ledger.json` cannot be read.
    #[error("{path}: {reason}")]
    BadLedgerFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The folder holds another ledger than the one asked for.
    #[error("the folder {dir} holds the ledger \"{found}\"; --origin \"{asked}\" names another (leave --origin out to reuse the folder's)")]
    OriginMismatch {
        /// The data folder.
        dir: PathBuf,
        /// What `ledger.json` says.
        found: String,
        /// What was asked for.
        asked: String,
    },
    /// A value given on the command line is not valid.
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A fresh key from the operating system's random source.
pub fn generate_key() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

/// What a secret key file starts with: a 32-byte Ed25519 seed in base64 follows. The label keeps
/// a secret key from ever being read as a public key (both are 32 bytes of base64).
pub const SECRET_KEY_LABEL: &str = "ed25519-seed:";

/// Writes a new key file (`ed25519-seed:<base64>`), mode 0600. Refuses to overwrite an existing
/// file.
pub fn write_key_file(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io(path))?;
    let text = format!("{SECRET_KEY_LABEL}{}\n", B64.encode(key.to_bytes()));
    file.write_all(text.as_bytes()).map_err(io(path))?;
    file.sync_all().map_err(io(path))?;
    Ok(())
}

/// Reads a key file.
pub fn read_key_file(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let encoded = text
        .trim()
        .strip_prefix(SECRET_KEY_LABEL)
        .ok_or_else(|| KeyError::BadKeyFile(path.to_owned()))?;
    let bytes = B64
        .decode(encoded)
        .map_err(|_| KeyError::BadKeyFile(path.to_owned()))?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| KeyError::BadKeyFile(path.to_owned()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the key file can be read by others; chmod 600 it");
            }
        }
    }
    Ok(SigningKey::from_bytes(&seed))
}

/// The base64 of a key's public half, as `register_participant` takes it.
pub fn public_key_base64(key: &SigningKey) -> String {
    B64.encode(key.verifying_key().as_bytes())
}

/// What `ledger.json` records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerFile {
    /// The ledger's origin.
    pub origin: String,
    /// The operator's participant id.
    pub operator: String,
    /// The operator's display name.
    pub operator_name: String,
}

/// How to open (or create) a data folder.
#[derive(Clone, Debug)]
pub struct DataDirOptions {
    /// The folder.
    pub dir: PathBuf,
    /// The origin for a new ledger (or the one expected of an existing folder).
    pub origin: Option<String>,
    /// The operator's participant id for a new ledger.
    pub operator: String,
    /// The operator's display name for a new ledger.
    pub operator_name: String,
}

/// A data folder, opened: where things are and the config to open the ledger with.
#[derive(Debug)]
pub struct DataDir {
    /// The folder.
    pub dir: PathBuf,
    /// The operator key file.
    pub key_path: PathBuf,
    /// The sled store's folder.
    pub store_path: PathBuf,
    /// Whether the key and `ledger.json` were created now.
    pub created: bool,
    /// What to open the ledger with.
    pub config: LedgerConfig,
}

/// The default origin: `carbon-sink-ledger.local/<host name>`, or `/default` without one.
pub fn default_origin() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(64)
        .collect();
    let host = if host.is_empty() { "default" } else { &host };
    format!("carbon-sink-ledger.local/{host}")
}

/// The file that marks a folder a restore is still building (or was building when it was
/// stopped): such a folder never opens. A restore that completes removes it just before it moves
/// the folder into place.
pub const RESTORE_MARKER: &str = "RESTORE-INCOMPLETE";

/// Refuses a folder that a restore left unfinished ([`RESTORE_MARKER`]).
pub fn refuse_unfinished_restore(dir: &Path) -> Result<(), KeyError> {
    if dir.join(RESTORE_MARKER).exists() {
        return Err(KeyError::Invalid(format!(
            "{} holds a restore that did not finish: it is not a ledger; delete it and restore again",
            dir.display()
        )));
    }
    Ok(())
}

/// Opens the data folder, creating the operator key and `ledger.json` on first start. A folder
/// that a restore left unfinished is refused.
pub fn open_data_dir(options: &DataDirOptions) -> Result<DataDir, KeyError> {
    let dir = &options.dir;
    refuse_unfinished_restore(dir)?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let key_path = dir.join("operator.key");
    let ledger_path = dir.join("ledger.json");
    let store_path = dir.join("store");
    let mut created = false;
    let file = if ledger_path.exists() {
        let text = std::fs::read_to_string(&ledger_path).map_err(io(&ledger_path))?;
        let file: LedgerFile =
            serde_json::from_str(&text).map_err(|e| KeyError::BadLedgerFile {
                path: ledger_path.clone(),
                reason: e.to_string(),
            })?;
        if let Some(asked) = &options.origin {
            if *asked != file.origin {
                return Err(KeyError::OriginMismatch {
                    dir: dir.clone(),
                    found: file.origin,
                    asked: asked.clone(),
                });
            }
        }
        file
    } else {
        created = true;
        let file = LedgerFile {
            origin: options.origin.clone().unwrap_or_else(default_origin),
            operator: options.operator.clone(),
            operator_name: options.operator_name.clone(),
        };
        // Check before writing anything.
        ledger_config(&file, generate_key())?;
        let text = serde_json::to_string_pretty(&file).unwrap_or_default() + "\n";
        std::fs::write(&ledger_path, text).map_err(io(&ledger_path))?;
        file
    };
    let key = if key_path.exists() {
        read_key_file(&key_path)?
    } else {
        created = true;
        let key = generate_key();
        write_key_file(&key_path, &key)?;
        key
    };
    Ok(DataDir {
        dir: dir.clone(),
        key_path,
        store_path,
        created,
        config: ledger_config(&file, key)?,
    })
}

fn ledger_config(file: &LedgerFile, key: SigningKey) -> Result<LedgerConfig, KeyError> {
    let origin: Origin = file
        .origin
        .parse()
        .map_err(|e| KeyError::Invalid(format!("origin: {e}")))?;
    let operator: ParticipantId = file
        .operator
        .parse()
        .map_err(|e| KeyError::Invalid(format!("operator id: {e}")))?;
    let operator_name: Text = file
        .operator_name
        .parse()
        .map_err(|e| KeyError::Invalid(format!("operator name: {e}")))?;
    Ok(LedgerConfig::new(origin, operator, operator_name, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_origin_is_valid() {
        assert!(
            default_origin().parse::<Origin>().is_ok(),
            "{}",
            default_origin()
        );
    }

    #[test]
    fn key_files_round_trip_with_mode_0600_and_are_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let key = generate_key();
        write_key_file(&path, &key).unwrap();
        assert_eq!(read_key_file(&path).unwrap().to_bytes(), key.to_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(write_key_file(&path, &generate_key()).is_err());
    }

    #[test]
    fn a_folder_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let options = DataDirOptions {
            dir: dir.path().to_owned(),
            origin: Some("test.example/ledger".into()),
            operator: "operator".into(),
            operator_name: "Operator".into(),
        };
        let first = open_data_dir(&options).unwrap();
        assert!(first.created);
        let again = open_data_dir(&DataDirOptions {
            origin: None,
            ..options.clone()
        })
        .unwrap();
        assert!(!again.created);
        assert_eq!(again.config.origin.as_str(), "test.example/ledger");
        assert_eq!(
            again.config.operator_key.to_bytes(),
            first.config.operator_key.to_bytes()
        );
        let other = open_data_dir(&DataDirOptions {
            origin: Some("other.example/ledger".into()),
            ..options
        });
        assert!(matches!(other, Err(KeyError::OriginMismatch { .. })));
    }
}
