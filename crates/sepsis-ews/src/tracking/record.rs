//! The local run store: one `run.json` per run, plus the run's artifact
//! files, under `artifacts/tracking/<local run id>/` in the project's store.
//!
//! The record keeps everything that was logged, with the original names and
//! values, so a run can be sent to MLflow again at any time.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::wire::float_json;
use super::TrackingError;
use crate::storage::{Area, StorageError, Store};

/// Folder of the local run store inside [`Area::Artifacts`].
pub const RUNS_PREFIX: &str = "tracking/";
const RECORD_FILE: &str = "run.json";
const FORMAT_VERSION: u32 = 1;

/// Lifecycle of a run, named as MLflow names run statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    Running,
    Finished,
    Failed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "RUNNING",
            RunState::Finished => "FINISHED",
            RunState::Failed => "FAILED",
        }
    }
}

/// Whether a run still has to be sent to the tracking server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// No tracking URI was set when the run was logged, and `sync` leaves it alone.
    LocalOnly,
    /// Not yet complete on the server, so `sync` sends it.
    Pending,
    /// Complete on the server, model registration included.
    Synced,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::LocalOnly => "local_only",
            SyncMode::Pending => "pending",
            SyncMode::Synced => "synced",
        }
    }
}

/// One logged value of a metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    pub key: String,
    #[serde(with = "float_json")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub step: i64,
}

/// An artifact file kept at `tracking/<local run id>/artifacts/<path>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactEntry {
    /// Path relative to the run's artifact root, such as `model/model.txt`.
    pub path: String,
    pub size: u64,
    /// Hex SHA-256 of the file.
    pub sha256: String,
}

/// A request to register the run's model in the MLflow model registry when
/// the run finishes successfully.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRegistration {
    /// Registered model name.
    pub name: String,
    /// Artifact folder of the model in the run, the model version's source.
    pub artifact_path: String,
    /// Alias set on the new version.
    pub alias: String,
}

/// Progress of sending a run to the tracking server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    pub mode: SyncMode,
    /// The server the run was sent to, without credentials.
    #[serde(default)]
    pub tracking_uri: Option<String>,
    #[serde(default)]
    pub experiment_id: Option<String>,
    #[serde(default)]
    pub mlflow_run_id: Option<String>,
    /// The run's artifact root on the server, as in `mlflow-artifacts:/1/<run id>/artifacts`.
    #[serde(default)]
    pub artifact_uri: Option<String>,
    /// Set before `runs/create` is sent. If the response was lost, the next
    /// sync first looks for a run tagged with this run's local id, so it
    /// never creates a second run.
    #[serde(default)]
    pub run_create_sent: bool,
    /// Artifact paths whose upload the server confirmed.
    #[serde(default)]
    pub uploaded_artifacts: Vec<String>,
    /// Version created by the model registration.
    #[serde(default)]
    pub model_version: Option<String>,
    /// Error message of the last failed attempt to reach the server.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Attempts to complete the run on the server that failed.
    #[serde(default)]
    pub failed_attempts: u32,
}

/// Everything about one tracked run, as kept in `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub format_version: u32,
    pub local_run_id: String,
    pub name: String,
    pub experiment: String,
    pub status: RunState,
    /// The error of a failed run.
    #[serde(default)]
    pub error: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub start_time_ms: i64,
    #[serde(default)]
    pub end_time_ms: Option<i64>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub metrics: Vec<MetricPoint>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub artifacts: Vec<ArtifactEntry>,
    #[serde(default)]
    pub model_registration: Option<ModelRegistration>,
    pub sync: SyncState,
}

impl RunRecord {
    pub(crate) fn new(
        local_run_id: String,
        name: &str,
        experiment: &str,
        start_time_ms: i64,
        mode: SyncMode,
    ) -> RunRecord {
        RunRecord {
            format_version: FORMAT_VERSION,
            local_run_id,
            name: name.to_string(),
            experiment: experiment.to_string(),
            status: RunState::Running,
            error: None,
            start_time_ms,
            end_time_ms: None,
            params: BTreeMap::new(),
            metrics: Vec::new(),
            tags: BTreeMap::new(),
            artifacts: Vec::new(),
            model_registration: None,
            sync: SyncState {
                mode,
                tracking_uri: None,
                experiment_id: None,
                mlflow_run_id: None,
                artifact_uri: None,
                run_create_sent: false,
                uploaded_artifacts: Vec::new(),
                model_version: None,
                last_error: None,
                failed_attempts: 0,
            },
        }
    }
}

fn record_key(local_run_id: &str) -> String {
    format!("{RUNS_PREFIX}{local_run_id}/{RECORD_FILE}")
}

pub(crate) fn artifact_key(local_run_id: &str, path: &str) -> String {
    format!("{RUNS_PREFIX}{local_run_id}/artifacts/{path}")
}

/// Checks that a local run id, which becomes part of a store key, has only
/// the characters that [`super::new_local_run_id`] uses.
fn validate_local_run_id(id: &str) -> Result<(), TrackingError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(TrackingError::RunNotFound { id: id.to_string() })
    }
}

/// Writes the record, replacing the previous version atomically.
pub(crate) async fn save(store: &Store, record: &RunRecord) -> Result<(), TrackingError> {
    let key = record_key(&record.local_run_id);
    let json = serde_json::to_vec_pretty(record).map_err(|source| TrackingError::Encode {
        key: key.clone(),
        source,
    })?;
    store
        .put(Area::Artifacts, &key, Bytes::from(json))
        .await
        .map_err(|source| TrackingError::Store { key, source })
}

/// Writes the first version of a record, failing if the id is taken.
pub(crate) async fn create(store: &Store, record: &RunRecord) -> Result<(), TrackingError> {
    let key = record_key(&record.local_run_id);
    let json = serde_json::to_vec_pretty(record).map_err(|source| TrackingError::Encode {
        key: key.clone(),
        source,
    })?;
    store
        .put_if_absent(Area::Artifacts, &key, Bytes::from(json))
        .await
        .map_err(|source| TrackingError::Store { key, source })
}

pub(crate) async fn load(store: &Store, local_run_id: &str) -> Result<RunRecord, TrackingError> {
    validate_local_run_id(local_run_id)?;
    let key = record_key(local_run_id);
    let bytes = match store.get(Area::Artifacts, &key).await {
        Ok(bytes) => bytes,
        Err(StorageError::NotFound { .. }) => {
            return Err(TrackingError::RunNotFound {
                id: local_run_id.to_string(),
            })
        }
        Err(source) => return Err(TrackingError::Store { key, source }),
    };
    serde_json::from_slice(&bytes).map_err(|source| TrackingError::CorruptRecord {
        location: store.uri(Area::Artifacts, &key),
        source,
    })
}

/// Lists the local run ids in the store, oldest first (ids start with their
/// UTC start time).
pub(crate) async fn list_ids(store: &Store) -> Result<Vec<String>, TrackingError> {
    let objects = store
        .list(Area::Artifacts, RUNS_PREFIX)
        .await
        .map_err(|source| TrackingError::Store {
            key: RUNS_PREFIX.to_string(),
            source,
        })?;
    let ids = objects
        .iter()
        .filter_map(|object| {
            let rest = object.key.strip_prefix(RUNS_PREFIX)?;
            let (id, file) = rest.split_once('/')?;
            (file == RECORD_FILE).then(|| id.to_string())
        })
        .collect();
    Ok(ids)
}

pub(crate) async fn put_artifact(
    store: &Store,
    local_run_id: &str,
    path: &str,
    data: Bytes,
) -> Result<(), TrackingError> {
    let key = artifact_key(local_run_id, path);
    store
        .put(Area::Artifacts, &key, data)
        .await
        .map_err(|source| TrackingError::Store { key, source })
}

pub(crate) async fn get_artifact(
    store: &Store,
    local_run_id: &str,
    path: &str,
) -> Result<Bytes, TrackingError> {
    let key = artifact_key(local_run_id, path);
    store
        .get(Area::Artifacts, &key)
        .await
        .map_err(|source| TrackingError::Store { key, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn record_round_trips_with_non_finite_metrics() {
        let store = Store::in_memory();
        let mut record = RunRecord::new(
            "20260101T000000Z-abcdef01".into(),
            "run",
            "exp",
            1,
            SyncMode::Pending,
        );
        for value in [f64::NAN, f64::INFINITY, 0.5] {
            record.metrics.push(MetricPoint {
                key: "m".into(),
                value,
                timestamp_ms: 2,
                step: 0,
            });
        }
        create(&store, &record).await.unwrap();

        let loaded = load(&store, &record.local_run_id).await.unwrap();
        assert!(loaded.metrics[0].value.is_nan());
        assert_eq!(loaded.metrics[1].value, f64::INFINITY);
        assert_eq!(loaded.metrics[2].value, 0.5);
        assert_eq!(
            list_ids(&store).await.unwrap(),
            [record.local_run_id.clone()]
        );
    }

    #[tokio::test]
    async fn create_rejects_taken_id() {
        let store = Store::in_memory();
        let record = RunRecord::new("id-1".into(), "run", "exp", 1, SyncMode::LocalOnly);
        create(&store, &record).await.unwrap();
        assert!(create(&store, &record).await.is_err());
    }

    #[tokio::test]
    async fn load_rejects_path_like_ids() {
        let store = Store::in_memory();
        for id in ["../x", "a/b", ""] {
            let error = load(&store, id).await.unwrap_err();
            assert!(
                matches!(error, TrackingError::RunNotFound { .. }),
                "{id:?}: {error}"
            );
        }
    }
}
