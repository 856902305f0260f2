//! The model registry: numbered, immutable model versions and the pointer
//! that names the production version, in the store's `model-registry/` area.
//!
//! ```text
//! model-registry/<model>/v<N>/claim.json       reserves the number, written first
//! model-registry/<model>/v<N>/<files>          the model and what it needs to score
//! model-registry/<model>/v<N>/version.json     written last: the version exists
//! model-registry/<model>/production.json       the pointer (S3, memory)
//! model-registry/<model>/production/<seq>.json the pointer (local folder)
//! ```
//!
//! Every object of a version is written create-only, so nothing ever
//! replaces part of a version. A version whose `version.json` is missing was
//! cut short and is ignored; its number stays used.
//!
//! The pointer moves by compare-and-swap. Where the backend can replace an
//! object conditionally (S3 with `If-Match`, memory), the pointer is one
//! object replaced only if it is unchanged since it was read. A local folder
//! cannot do that, so there each move creates the next numbered record,
//! create-only, and the newest record is the pointer. In both designs two
//! writers that read the same pointer cannot both move it: one wins, the
//! other gets [`RegistryError::Conflict`] and nothing is written.

use std::collections::BTreeSet;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::storage::{Area, ObjectTag, StorageError, Store};

pub const VERSION_FILE: &str = "version.json";
const CLAIM_FILE: &str = "claim.json";
const POINTER_FILE: &str = "production.json";
const POINTER_RECORDS: &str = "production";
/// How many taken numbers a new version skips before giving up.
const MAX_CLAIM_ATTEMPTS: u32 = 1000;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Injected(#[from] crate::failpoint::InjectedFailure),
    #[error(
        "{location}: version v{version} does not exist; `sepsis registry list` shows the versions"
    )]
    NoSuchVersion { location: String, version: u32 },
    #[error("{text:?} is not a version: write it as v3 or 3")]
    BadVersion { text: String },
    #[error("{location}: the production pointer changed while this change was being made (now {now}); nothing was written, read the registry again and retry")]
    Conflict { location: String, now: String },
    #[error("{location}: {message}")]
    Corrupt { location: String, message: String },
    #[error("{location}: there is no production version yet")]
    NoProduction { location: String },
    #[error("{location}: production v{version} has no earlier production version to roll back to")]
    NothingToRollBack { location: String, version: u32 },
}

/// The record of one version, stored as `version.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub model_name: String,
    pub version: u32,
    /// The training run the model came from (`artifacts/runs/<run_id>/`).
    pub run_id: String,
    pub created_at: String,
    /// The commit of the code that trained the model, when known.
    pub git_commit: Option<String>,
    pub data_digest: String,
    pub feature_version: String,
    pub feature_set_version: String,
    pub schema_digest: String,
    /// The headline measures on the validation patients.
    pub metrics: std::collections::BTreeMap<String, Option<f64>>,
    pub files: Vec<VersionFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionFile {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The production pointer's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Production {
    /// Counts every move of the pointer, from 1.
    pub sequence: u64,
    pub version: u32,
    /// The earlier production versions, oldest first; rollback returns to the last.
    pub history: Vec<u32>,
    pub action: PointerAction,
    pub reason: String,
    pub changed_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PointerAction {
    Promote,
    Rollback,
}

/// The state of the pointer when read, so a write can check it is unchanged.
#[derive(Debug, Clone)]
enum PointerToken {
    Missing,
    Tagged(ObjectTag),
    /// The newest numbered record; the next move creates the one after it.
    Record,
}

/// The registry of one model name in a store.
#[derive(Debug, Clone)]
pub struct Registry {
    store: Store,
    name: String,
}

/// Parses `v3` or `3`.
pub fn parse_version(text: &str) -> Result<u32, RegistryError> {
    let digits = text.trim().strip_prefix('v').unwrap_or(text.trim());
    digits
        .parse::<u32>()
        .ok()
        .filter(|v| *v >= 1 && !digits.starts_with('+'))
        .ok_or_else(|| RegistryError::BadVersion {
            text: text.to_string(),
        })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn to_json<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(value).expect("registry records serialise"))
}

impl Registry {
    pub fn new(store: Store, model_name: &str) -> Registry {
        Registry {
            store,
            name: model_name.to_string(),
        }
    }

    pub fn model_name(&self) -> &str {
        &self.name
    }

    /// Returns the key of a version's folder, relative to the registry area.
    pub fn version_prefix(&self, version: u32) -> String {
        format!("{}/v{version}", self.name)
    }

    fn location(&self, key: &str) -> String {
        self.store.uri(Area::ModelRegistry, key)
    }

    /// Returns the full location of a version's folder, for messages.
    pub fn version_location(&self, version: u32) -> String {
        self.location(&self.version_prefix(version))
    }

    /// Writes a new version holding `files` and returns its record. The
    /// number is the next free one; the record is filled in with it and
    /// with the files' digests.
    pub async fn create_version(
        &self,
        mut record: VersionRecord,
        files: &[(&str, Bytes)],
    ) -> Result<VersionRecord, RegistryError> {
        let taken = self.numbers_taken().await?;
        let mut version = taken.last().map_or(1, |v| v + 1);
        let claim = serde_json::json!({
            "run_id": record.run_id,
            "claimed_at": chrono::Utc::now().to_rfc3339(),
        });
        let mut attempts = 0;
        loop {
            let key = format!("{}/{CLAIM_FILE}", self.version_prefix(version));
            match self
                .store
                .put_if_absent(Area::ModelRegistry, &key, to_json(&claim))
                .await
            {
                Ok(()) => break,
                Err(StorageError::AlreadyExists { .. }) if attempts < MAX_CLAIM_ATTEMPTS => {
                    attempts += 1;
                    version += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }

        record.model_name = self.name.clone();
        record.version = version;
        record.files.clear();
        for (name, bytes) in files {
            let key = format!("{}/{name}", self.version_prefix(version));
            self.store
                .put_if_absent(Area::ModelRegistry, &key, bytes.clone())
                .await?;
            record.files.push(VersionFile {
                name: name.to_string(),
                bytes: bytes.len() as u64,
                sha256: sha256_hex(bytes),
            });
        }
        crate::failpoint::check("registry.before-version-record")?;
        let key = format!("{}/{VERSION_FILE}", self.version_prefix(version));
        self.store
            .put_if_absent(Area::ModelRegistry, &key, to_json(&record))
            .await?;
        tracing::info!(model = %self.name, version, run_id = %record.run_id, "model version registered");
        Ok(record)
    }

    /// Every version number in use, complete or not, ascending.
    async fn numbers_taken(&self) -> Result<BTreeSet<u32>, RegistryError> {
        let listed = self
            .store
            .list(Area::ModelRegistry, &format!("{}/", self.name))
            .await?;
        Ok(listed
            .iter()
            .filter_map(|o| {
                let rest = o.key.strip_prefix(&format!("{}/v", self.name))?;
                let (number, _) = rest.split_once('/')?;
                number.parse::<u32>().ok()
            })
            .collect())
    }

    /// Lists the complete versions, oldest first.
    pub async fn versions(&self) -> Result<Vec<VersionRecord>, RegistryError> {
        let listed = self
            .store
            .list(Area::ModelRegistry, &format!("{}/", self.name))
            .await?;
        let mut numbers: Vec<u32> = listed
            .iter()
            .filter_map(|o| {
                let rest = o.key.strip_prefix(&format!("{}/v", self.name))?;
                let number = rest.strip_suffix(&format!("/{VERSION_FILE}"))?;
                number.parse::<u32>().ok()
            })
            .collect();
        numbers.sort_unstable();
        let mut records = Vec::with_capacity(numbers.len());
        for number in numbers {
            records.push(self.version(number).await?);
        }
        Ok(records)
    }

    /// Reads one complete version's record.
    pub async fn version(&self, version: u32) -> Result<VersionRecord, RegistryError> {
        let key = format!("{}/{VERSION_FILE}", self.version_prefix(version));
        let bytes = match self.store.get(Area::ModelRegistry, &key).await {
            Ok(bytes) => bytes,
            Err(StorageError::NotFound { .. }) => {
                return Err(RegistryError::NoSuchVersion {
                    location: self.location(&self.name),
                    version,
                })
            }
            Err(e) => return Err(e.into()),
        };
        let record: VersionRecord =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::Corrupt {
                location: self.location(&key),
                message: format!("not a version record: {e}"),
            })?;
        if record.version != version {
            return Err(RegistryError::Corrupt {
                location: self.location(&key),
                message: format!("the record names version {}", record.version),
            });
        }
        Ok(record)
    }

    /// Reads a file of a complete version and checks its digest.
    pub async fn read_file(&self, version: u32, name: &str) -> Result<Bytes, RegistryError> {
        let record = self.version(version).await?;
        self.read_checked(&record, name).await
    }

    /// Reads a file of the version that `record` describes, as read with
    /// [`Registry::version`], and checks its digest against the record.
    pub async fn read_checked(
        &self,
        record: &VersionRecord,
        name: &str,
    ) -> Result<Bytes, RegistryError> {
        let key = format!("{}/{name}", self.version_prefix(record.version));
        let bytes = self.store.get(Area::ModelRegistry, &key).await?;
        if let Some(file) = record.files.iter().find(|f| f.name == name) {
            if file.sha256 != sha256_hex(&bytes) {
                return Err(RegistryError::Corrupt {
                    location: self.location(&key),
                    message: "its SHA-256 differs from the one recorded in version.json".into(),
                });
            }
        }
        Ok(bytes)
    }

    /// Reads the production pointer, or `None` before the first promotion.
    pub async fn production(&self) -> Result<Option<Production>, RegistryError> {
        Ok(self.read_pointer().await?.0)
    }

    /// Makes `version` production, provided production is still
    /// `expected` (`None`: no production yet). This is the compare-and-swap
    /// of the gate: when another change came first, it fails with
    /// [`RegistryError::Conflict`] and writes nothing.
    pub async fn promote(
        &self,
        version: u32,
        expected: Option<u32>,
        reason: &str,
    ) -> Result<Production, RegistryError> {
        self.version(version).await?;
        let (current, token) = self.read_pointer().await?;
        let now = current.as_ref().map(|p| p.version);
        if now != expected {
            return Err(self.conflict(now));
        }
        let (sequence, mut history) = match current {
            Some(p) => {
                let mut history = p.history;
                history.push(p.version);
                (p.sequence + 1, history)
            }
            None => (1, Vec::new()),
        };
        history.retain(|v| *v != version);
        let next = Production {
            sequence,
            version,
            history,
            action: PointerAction::Promote,
            reason: reason.to_string(),
            changed_at: chrono::Utc::now().to_rfc3339(),
        };
        self.write_pointer(&next, &token).await?;
        tracing::info!(model = %self.name, version, sequence, "production pointer moved");
        Ok(next)
    }

    /// Makes the previous production version production again.
    pub async fn rollback(&self, reason: &str) -> Result<Production, RegistryError> {
        let (current, token) = self.read_pointer().await?;
        let Some(current) = current else {
            return Err(RegistryError::NoProduction {
                location: self.location(&self.name),
            });
        };
        let mut history = current.history.clone();
        let Some(previous) = history.pop() else {
            return Err(RegistryError::NothingToRollBack {
                location: self.location(&self.name),
                version: current.version,
            });
        };
        let next = Production {
            sequence: current.sequence + 1,
            version: previous,
            history,
            action: PointerAction::Rollback,
            reason: reason.to_string(),
            changed_at: chrono::Utc::now().to_rfc3339(),
        };
        self.write_pointer(&next, &token).await?;
        tracing::info!(model = %self.name, version = previous, sequence = next.sequence, "production rolled back");
        Ok(next)
    }

    fn conflict(&self, now: Option<u32>) -> RegistryError {
        RegistryError::Conflict {
            location: self.location(&self.name),
            now: now.map_or("no production".into(), |v| format!("production is v{v}")),
        }
    }

    fn parse_pointer(&self, key: &str, bytes: &[u8]) -> Result<Production, RegistryError> {
        serde_json::from_slice(bytes).map_err(|e| RegistryError::Corrupt {
            location: self.location(key),
            message: format!("not a production pointer: {e}"),
        })
    }

    async fn read_pointer(&self) -> Result<(Option<Production>, PointerToken), RegistryError> {
        if self.store.has_conditional_update() {
            let key = format!("{}/{POINTER_FILE}", self.name);
            return match self.store.get_tagged(Area::ModelRegistry, &key).await? {
                None => Ok((None, PointerToken::Missing)),
                Some((bytes, tag)) => Ok((
                    Some(self.parse_pointer(&key, &bytes)?),
                    PointerToken::Tagged(tag),
                )),
            };
        }
        let prefix = format!("{}/{POINTER_RECORDS}/", self.name);
        let listed = self.store.list(Area::ModelRegistry, &prefix).await?;
        let newest = listed
            .iter()
            .filter_map(|o| {
                let number = o.key.strip_prefix(&prefix)?.strip_suffix(".json")?;
                Some((number.parse::<u64>().ok()?, o.key.clone()))
            })
            .max();
        let Some((sequence, key)) = newest else {
            return Ok((None, PointerToken::Missing));
        };
        let bytes = self.store.get(Area::ModelRegistry, &key).await?;
        let pointer = self.parse_pointer(&key, &bytes)?;
        if pointer.sequence != sequence {
            return Err(RegistryError::Corrupt {
                location: self.location(&key),
                message: format!(
                    "invalid record: its file name says sequence {sequence}, its content {}",
                    pointer.sequence
                ),
            });
        }
        Ok((Some(pointer), PointerToken::Record))
    }

    async fn write_pointer(
        &self,
        next: &Production,
        token: &PointerToken,
    ) -> Result<(), RegistryError> {
        crate::failpoint::check("registry.before-pointer")?;
        let result = match token {
            PointerToken::Missing | PointerToken::Tagged(_)
                if self.store.has_conditional_update() =>
            {
                let key = format!("{}/{POINTER_FILE}", self.name);
                let tag = match token {
                    PointerToken::Tagged(tag) => Some(tag),
                    _ => None,
                };
                self.store
                    .put_if_unchanged(Area::ModelRegistry, &key, to_json(next), tag)
                    .await
            }
            _ => {
                // Record numbers are zero-padded so they sort as numbers.
                let key = format!("{}/{POINTER_RECORDS}/{:020}.json", self.name, next.sequence);
                self.store
                    .put_if_absent(Area::ModelRegistry, &key, to_json(next))
                    .await
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(StorageError::AlreadyExists { .. } | StorageError::Changed { .. }) => {
                let now = self.production().await?.map(|p| p.version);
                Err(self.conflict(now))
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests;
