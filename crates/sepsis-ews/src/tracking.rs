//! Experiment tracking with MLflow that loses no run.
//!
//! A [`Tracker`] starts a [`TrackedRun`], which buffers params, metrics and
//! tags, keeps artifact files, and at [`TrackedRun::finish`] sends everything
//! to an MLflow tracking server through its REST API, optionally registering
//! the model with the alias `champion`.
//!
//! Every run is first written to the local run store, in the project's
//! [`Store`] under `artifacts/tracking/<local run id>/`: `run.json` at start
//! and at finish, and each artifact file when it is added. The server only
//! gets copies. When it cannot be reached or fails after retries, the run is
//! marked pending and [`sync`] sends it later, creating the MLflow run or
//! completing the one created before the outage. A tracking outage is never
//! an error: [`TrackedRun::finish`] returns a [`TrackingOutcome`], and only a
//! failure of the local run store is a [`TrackingError`].
//!
//! Without a tracking URI the local run store is all there is, and
//! [`list_runs`] and [`show_run`] read it.
//!
//! ```no_run
//! # async fn example(store: sepsis_ews::storage::Store) -> Result<(), sepsis_ews::tracking::TrackingError> {
//! use sepsis_ews::tracking::{RunStatus, Tracker, TrackingSettings};
//!
//! let settings = TrackingSettings::from_env()?;
//! let mut run = Tracker::new(settings, store).start("train", &[("data", "set A")]).await?;
//! run.log_params(&[("num_leaves", "31")]);
//! run.log_metrics(&[("auroc", 0.81)]);
//! run.add_artifact("model/model.txt", bytes::Bytes::from_static(b"tree")).await?;
//! run.register_model("sepsis-lightgbm");
//! let outcome = run.finish(RunStatus::Finished).await?;
//! # Ok(()) }
//! ```

mod alias;
mod client;
mod limits;
mod push;
mod record;
mod settings;
mod wire;

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::storage::{StorageError, Store};
use client::{ApiError, MlflowClient};
use push::PushError;

pub use alias::{point_alias, AliasOutcome};
pub use limits::{
    sanitize_key, MAX_ENTITIES_PER_BATCH, MAX_KEY_CHARS, MAX_METRICS_PER_BATCH,
    MAX_PARAMS_PER_BATCH, MAX_PARAM_VALUE_CHARS, MAX_TAGS_PER_BATCH, MAX_TAG_VALUE_CHARS,
};
pub use push::{ERROR_TAG, LOCAL_RUN_ID_TAG};
pub use record::{
    ArtifactEntry, MetricPoint, ModelRegistration, RunRecord, RunState, SyncMode, SyncState,
    RUNS_PREFIX,
};
pub use settings::{Credentials, RetryPolicy, Secret, TrackingSettings, DEFAULT_EXPERIMENT};

/// Alias that [`TrackedRun::register_model`] sets on the new model version.
pub const CHAMPION_ALIAS: &str = "champion";
/// Artifact folder that [`TrackedRun::register_model`] registers.
pub const MODEL_ARTIFACT_PATH: &str = "model";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackingError {
    #[error("invalid {name}: {reason}")]
    InvalidSetting { name: &'static str, reason: String },
    #[error("the HTTP client for the tracking server could not be built")]
    HttpClient {
        #[source]
        source: reqwest::Error,
    },
    #[error("the local run store failed on {key}")]
    Store {
        key: String,
        #[source]
        source: StorageError,
    },
    #[error("the run record {key} could not be encoded")]
    Encode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the run record {location} could not be parsed: fix or delete it")]
    CorruptRecord {
        location: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("run {id:?} not found in the local run store (`sepsis runs list` lists the runs)")]
    RunNotFound { id: String },
    #[error("invalid artifact path {path:?}: {reason}")]
    InvalidArtifactPath { path: String, reason: &'static str },
    #[error("no tracking server is set: set MLFLOW_TRACKING_URI to an http:// or https:// MLflow server")]
    NotConfigured,
}

/// Terminal status of a run, passed to [`TrackedRun::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStatus {
    Finished,
    /// A failed run, with the error message stored in the tag `sepsis.error`.
    /// The message is sent to the tracking server, so it must not contain
    /// patient data; the pipeline passes `PipelineError::tracking_message`.
    Failed(String),
}

/// Result of [`TrackedRun::finish`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TrackingOutcome {
    /// The run is complete on the tracking server.
    Logged {
        local_run_id: String,
        mlflow_run_id: String,
        /// The run's page in the MLflow web UI.
        url: String,
    },
    /// The server failed or could not be reached. The run is complete in the
    /// local run store, and [`sync`] sends it later.
    SavedForSync {
        local_run_id: String,
        reason: String,
    },
    /// No tracking URI is set, so the run is in the local run store only.
    LocalOnly { local_run_id: String },
}

/// Starts tracked runs with one set of settings and one local run store.
#[derive(Debug, Clone)]
pub struct Tracker {
    settings: TrackingSettings,
    store: Store,
}

impl Tracker {
    pub fn new(settings: TrackingSettings, store: Store) -> Tracker {
        Tracker { settings, store }
    }

    /// Starts a run: writes its record to the local run store, then creates
    /// the MLflow run with status RUNNING, so a crash leaves a visible run.
    ///
    /// When the server fails, the run goes on offline and `finish` tries the
    /// server again. Only a failure of the local run store is an error.
    pub async fn start<K: AsRef<str>, V: AsRef<str>>(
        &self,
        name: &str,
        tags: &[(K, V)],
    ) -> Result<TrackedRun, TrackingError> {
        let client = MlflowClient::new(&self.settings)?;
        let mode = if client.is_some() {
            SyncMode::Pending
        } else {
            SyncMode::LocalOnly
        };
        let now = chrono::Utc::now();
        let mut record = record::RunRecord::new(
            new_local_run_id(now),
            name,
            self.settings.experiment_name(),
            now.timestamp_millis(),
            mode,
        );
        for (key, value) in tags {
            record
                .tags
                .insert(key.as_ref().to_string(), value.as_ref().to_string());
        }
        let span = tracing::info_span!("tracking_start", local_run_id = %record.local_run_id);

        async {
            record::create(&self.store, &record).await?;
            if let Some(client) = &client {
                match push::ensure_run(client, &self.store, &mut record).await {
                    Ok(_) => {}
                    Err(PushError::Server(error)) => {
                        tracing::warn!(error = %error, "tracking server failed, so the run goes on offline");
                        record.sync.last_error = Some(error.to_string());
                        record::save(&self.store, &record).await?;
                    }
                    Err(PushError::Store(error)) => return Err(error),
                }
            }
            tracing::info!(mode = record.sync.mode.as_str(), "started tracked run");
            Ok(())
        }
        .instrument(span)
        .await?;

        Ok(TrackedRun {
            record,
            store: self.store.clone(),
            client,
        })
    }
}

/// A run in progress. Params, metrics and tags are buffered and sent at
/// [`finish`](Self::finish). Artifacts are written to the local run store
/// when added. Dropping the run without `finish` leaves it RUNNING, locally
/// and on the server.
pub struct TrackedRun {
    record: RunRecord,
    store: Store,
    client: Option<MlflowClient>,
}

impl TrackedRun {
    pub fn local_run_id(&self) -> &str {
        &self.record.local_run_id
    }

    /// Returns the MLflow run id, once the server has created the run.
    pub fn mlflow_run_id(&self) -> Option<&str> {
        self.record.sync.mlflow_run_id.as_deref()
    }

    /// Returns the record as it would be saved now.
    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    /// Records params. MLflow params cannot change once logged, so a key
    /// logged twice keeps its last value, and that value is the one sent.
    pub fn log_params<K: AsRef<str>, V: AsRef<str>>(&mut self, params: &[(K, V)]) {
        for (key, value) in params {
            self.record
                .params
                .insert(key.as_ref().to_string(), value.as_ref().to_string());
        }
    }

    /// Records metric values at step 0, timestamped now. NaN and infinite
    /// values are kept and sent. MLflow 3.17 stores NaN, and replaces ±∞ by
    /// the largest finite double of that sign.
    pub fn log_metrics<K: AsRef<str>>(&mut self, metrics: &[(K, f64)]) {
        for (key, value) in metrics {
            self.log_metric(key.as_ref(), *value, 0);
        }
    }

    /// Records one metric value at `step`, timestamped now.
    pub fn log_metric(&mut self, key: &str, value: f64, step: i64) {
        self.record.metrics.push(MetricPoint {
            key: key.to_string(),
            value,
            timestamp_ms: chrono::Utc::now().timestamp_millis(),
            step,
        });
    }

    /// Records tags. A key set twice keeps its last value.
    pub fn set_tags<K: AsRef<str>, V: AsRef<str>>(&mut self, tags: &[(K, V)]) {
        for (key, value) in tags {
            self.record
                .tags
                .insert(key.as_ref().to_string(), value.as_ref().to_string());
        }
    }

    /// Writes an artifact file to the local run store at once, to be uploaded
    /// at `finish`. `path` is relative to the run's artifact root, as in
    /// `model/model.txt`. Adding a path again replaces the file.
    pub async fn add_artifact(&mut self, path: &str, data: Bytes) -> Result<(), TrackingError> {
        validate_artifact_path(path)?;
        let entry = ArtifactEntry {
            path: path.to_string(),
            size: data.len() as u64,
            sha256: hex::encode(Sha256::digest(&data)),
        };
        record::put_artifact(&self.store, &self.record.local_run_id, path, data).await?;

        self.record
            .artifacts
            .retain(|artifact| artifact.path != path);
        self.record.artifacts.push(entry);
        self.record
            .sync
            .uploaded_artifacts
            .retain(|uploaded| uploaded != path);
        Ok(())
    }

    /// Requests that a successful `finish` registers the artifact folder
    /// `model` as a new version of the registered model `name` and sets the
    /// alias `champion` on it. A failed run registers nothing.
    pub fn register_model(&mut self, name: &str) {
        self.request_registration(ModelRegistration {
            name: name.to_string(),
            artifact_path: MODEL_ARTIFACT_PATH.to_string(),
            alias: CHAMPION_ALIAS.to_string(),
        });
    }

    /// Requests a model registration with another artifact folder or alias.
    pub fn request_registration(&mut self, registration: ModelRegistration) {
        self.record.model_registration = Some(registration);
    }

    /// Ends the run: saves the complete record to the local run store, then
    /// sends it to the tracking server.
    ///
    /// A server failure is not an error: the outcome is
    /// [`TrackingOutcome::SavedForSync`] with the reason, and the record is
    /// marked pending. Only a failure of the local run store is an error.
    pub async fn finish(mut self, status: RunStatus) -> Result<TrackingOutcome, TrackingError> {
        match status {
            RunStatus::Finished => self.record.status = RunState::Finished,
            RunStatus::Failed(message) => {
                self.record.status = RunState::Failed;
                self.record.error = Some(message);
            }
        }
        self.record.end_time_ms = Some(chrono::Utc::now().timestamp_millis());
        let span = tracing::info_span!(
            "tracking_finish",
            local_run_id = %self.record.local_run_id,
            status = self.record.status.as_str(),
        );

        async move {
            record::save(&self.store, &self.record).await?;
            let Some(client) = &self.client else {
                tracing::info!("run saved in the local run store");
                return Ok(TrackingOutcome::LocalOnly {
                    local_run_id: self.record.local_run_id.clone(),
                });
            };
            let outcome = match try_push(client, &self.store, &mut self.record).await? {
                Ok(()) => TrackingOutcome::Logged {
                    local_run_id: self.record.local_run_id.clone(),
                    mlflow_run_id: self.record.sync.mlflow_run_id.clone().unwrap_or_default(),
                    url: run_url(client, &self.record),
                },
                Err(error) => TrackingOutcome::SavedForSync {
                    local_run_id: self.record.local_run_id.clone(),
                    reason: error.to_string(),
                },
            };
            Ok(outcome)
        }
        .instrument(span)
        .await
    }
}

/// Sends a completed record. A server failure marks the record pending,
/// saves the reason in it and is returned as the inner error.
async fn try_push(
    client: &MlflowClient,
    store: &Store,
    record: &mut RunRecord,
) -> Result<Result<(), ApiError>, TrackingError> {
    let started = std::time::Instant::now();
    match push::push_completed(client, store, record).await {
        Ok(()) => {
            tracing::info!(
                mlflow_run_id = record.sync.mlflow_run_id.as_deref().unwrap_or_default(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "run logged to MLflow"
            );
            Ok(Ok(()))
        }
        Err(PushError::Server(error)) => {
            tracing::warn!(error = %error, "tracking server failed, so the run is saved for sync");
            record.sync.mode = SyncMode::Pending;
            record.sync.last_error = Some(error.to_string());
            record.sync.failed_attempts += 1;
            record::save(store, record).await?;
            Ok(Err(error))
        }
        Err(PushError::Store(error)) => Err(error),
    }
}

/// Returns the address of a synced record's run in the MLflow web UI.
fn run_url(client: &MlflowClient, record: &RunRecord) -> String {
    client.run_url(
        record.sync.experiment_id.as_deref().unwrap_or_default(),
        record.sync.mlflow_run_id.as_deref().unwrap_or_default(),
    )
}

/// A run that `sync` completed on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncedRun {
    pub local_run_id: String,
    pub mlflow_run_id: String,
    pub url: String,
}

/// A run that `sync` could not complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedRun {
    pub local_run_id: String,
    pub reason: String,
}

/// Result of [`sync`]: the runs of the local run store, by what happened to them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// The tracking server the runs were sent to.
    pub tracking_uri: String,
    pub synced: Vec<SyncedRun>,
    pub failed: Vec<FailedRun>,
    /// Pending runs not tried because the server was unreachable.
    pub not_attempted: Vec<String>,
    /// Pending runs still RUNNING: in progress elsewhere, or from a process
    /// that ended without `finish`.
    pub still_running: Vec<String>,
    /// Pending runs whose MLflow run is on another tracking server.
    pub other_server: Vec<String>,
    pub already_synced: usize,
    /// Runs logged without a tracking URI, which `sync` does not send.
    pub local_only: usize,
}

/// Sends every pending, completed run of the local run store to the tracking
/// server of `settings`.
///
/// Repeating it is safe: a run that is already synced is skipped, and a run
/// whose MLflow run was created before an outage is completed, not created
/// again. Server failures are reported per run in the [`SyncReport`]. The
/// error cases are a missing tracking URI and a failing local run store.
///
/// NOTE: nothing locks a run record, so two syncs at the same time, or a sync
/// while the same run is finishing, can register a second model version.
pub async fn sync(settings: &TrackingSettings, store: &Store) -> Result<SyncReport, TrackingError> {
    let client = MlflowClient::new(settings)?.ok_or(TrackingError::NotConfigured)?;
    let mut report = SyncReport {
        tracking_uri: client.tracking_uri(),
        ..SyncReport::default()
    };
    let span = tracing::info_span!("tracking_sync");

    async {
        let ids = record::list_ids(store).await?;
        let mut unreachable = false;
        for id in ids {
            let mut record = match record::load(store, &id).await {
                Ok(record) => record,
                Err(error @ TrackingError::CorruptRecord { .. }) => {
                    tracing::warn!(local_run_id = %id, error = %error, "skipping an unreadable run record");
                    report.failed.push(FailedRun {
                        local_run_id: id,
                        reason: error.to_string(),
                    });
                    continue;
                }
                Err(error) => return Err(error),
            };

            match record.sync.mode {
                SyncMode::Synced => {
                    report.already_synced += 1;
                    continue;
                }
                SyncMode::LocalOnly => {
                    report.local_only += 1;
                    continue;
                }
                SyncMode::Pending => {}
            }
            if record.status == RunState::Running {
                report.still_running.push(id);
                continue;
            }
            let recorded_server = record.sync.tracking_uri.as_deref();
            if recorded_server.is_some_and(|uri| uri != report.tracking_uri) {
                if record.sync.mlflow_run_id.is_some() {
                    report.other_server.push(id);
                    continue;
                }
                // Nothing was created there, so the run can go to this server.
                record.sync.experiment_id = None;
                record.sync.run_create_sent = false;
                record.sync.uploaded_artifacts.clear();
            }
            if unreachable {
                report.not_attempted.push(id);
                continue;
            }

            let span = tracing::info_span!("tracking_sync_run", local_run_id = %id);
            match try_push(&client, store, &mut record).instrument(span).await? {
                Ok(()) => report.synced.push(SyncedRun {
                    local_run_id: id,
                    mlflow_run_id: record.sync.mlflow_run_id.clone().unwrap_or_default(),
                    url: run_url(&client, &record),
                }),
                Err(error) => {
                    // Every other pending run would wait for the same retries.
                    unreachable = error.is_unreachable();
                    report.failed.push(FailedRun {
                        local_run_id: id,
                        reason: error.to_string(),
                    });
                }
            }
        }
        tracing::info!(
            synced = report.synced.len(),
            failed = report.failed.len(),
            not_attempted = report.not_attempted.len(),
            still_running = report.still_running.len(),
            already_synced = report.already_synced,
            "sync finished"
        );
        Ok(())
    }
    .instrument(span)
    .await?;

    Ok(report)
}

/// Lists the runs of the local run store, newest first.
pub async fn list_runs(store: &Store) -> Result<Vec<RunRecord>, TrackingError> {
    let ids = record::list_ids(store).await?;
    let mut runs = Vec::with_capacity(ids.len());
    for id in ids {
        runs.push(record::load(store, &id).await?);
    }
    runs.sort_by(|a, b| {
        b.start_time_ms
            .cmp(&a.start_time_ms)
            .then_with(|| b.local_run_id.cmp(&a.local_run_id))
    });
    Ok(runs)
}

/// Reads one run of the local run store by its local run id or its MLflow
/// run id.
pub async fn show_run(store: &Store, id: &str) -> Result<RunRecord, TrackingError> {
    match record::load(store, id).await {
        Err(TrackingError::RunNotFound { .. }) => {}
        other => return other,
    }
    for local_id in record::list_ids(store).await? {
        let record = record::load(store, &local_id).await?;
        if record.sync.mlflow_run_id.as_deref() == Some(id) {
            return Ok(record);
        }
    }
    Err(TrackingError::RunNotFound { id: id.to_string() })
}

/// Returns a new local run id: the UTC start time, then 8 random hex digits,
/// as in `20260105T143000Z-1a2b3c4d`, so ids sort by start time.
fn new_local_run_id(now: chrono::DateTime<chrono::Utc>) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", now.format("%Y%m%dT%H%M%SZ"), &random[..8])
}

/// Checks that an artifact path is relative and stays inside the run's
/// artifact root.
fn validate_artifact_path(path: &str) -> Result<(), TrackingError> {
    let invalid = |reason| TrackingError::InvalidArtifactPath {
        path: path.to_string(),
        reason,
    };
    if path.is_empty() {
        return Err(invalid("the path is empty"));
    }
    if path.starts_with('/') {
        return Err(invalid("the path must be relative, as in model/model.txt"));
    }
    if path.contains('\\') || path.chars().any(char::is_control) {
        return Err(invalid(
            "the path contains a backslash or a control character",
        ));
    }
    let bad_segment = path
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..");
    if bad_segment {
        return Err(invalid("the path has an empty, '.' or '..' segment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_uri_keeps_run_local_only() {
        let store = Store::in_memory();
        let tracker = Tracker::new(TrackingSettings::local_only(), store.clone());

        let mut run = tracker.start("local", &[("data", "A")]).await.unwrap();
        run.log_params(&[("num_leaves", "31")]);
        run.log_metrics(&[("auroc(setB)", 0.81), ("nan", f64::NAN)]);
        run.add_artifact("model/model.txt", Bytes::from_static(b"tree"))
            .await
            .unwrap();
        run.register_model("sepsis-lightgbm");
        let id = run.local_run_id().to_string();
        let outcome = run.finish(RunStatus::Finished).await.unwrap();

        assert_eq!(
            outcome,
            TrackingOutcome::LocalOnly {
                local_run_id: id.clone()
            }
        );
        let record = show_run(&store, &id).await.unwrap();
        assert_eq!(record.status, RunState::Finished);
        assert_eq!(record.sync.mode, SyncMode::LocalOnly);
        assert_eq!(record.params["num_leaves"], "31");
        assert_eq!(record.metrics[0].key, "auroc(setB)");
        assert!(record.metrics[1].value.is_nan());
        assert_eq!(record.tags["data"], "A");
        assert_eq!(record.artifacts[0].path, "model/model.txt");
        assert_eq!(record.artifacts[0].size, 4);
        assert!(record.model_registration.is_some());
        let stored = record::get_artifact(&store, &id, "model/model.txt")
            .await
            .unwrap();
        assert_eq!(stored, "tree");
    }

    #[tokio::test]
    async fn started_run_is_recorded_as_running() {
        let store = Store::in_memory();
        let tracker = Tracker::new(TrackingSettings::local_only(), store.clone());
        let run = tracker
            .start("crash", &[] as &[(&str, &str)])
            .await
            .unwrap();

        let record = show_run(&store, run.local_run_id()).await.unwrap();
        assert_eq!(record.status, RunState::Running);
        assert_eq!(record.end_time_ms, None);
    }

    #[tokio::test]
    async fn failed_run_keeps_error() {
        let store = Store::in_memory();
        let tracker = Tracker::new(TrackingSettings::local_only(), store.clone());
        let run = tracker
            .start("fails", &[] as &[(&str, &str)])
            .await
            .unwrap();
        let id = run.local_run_id().to_string();
        run.finish(RunStatus::Failed("out of memory".into()))
            .await
            .unwrap();

        let record = show_run(&store, &id).await.unwrap();
        assert_eq!(record.status, RunState::Failed);
        assert_eq!(record.error.as_deref(), Some("out of memory"));
    }

    #[tokio::test]
    async fn list_runs_is_newest_first() {
        let store = Store::in_memory();
        let tracker = Tracker::new(TrackingSettings::local_only(), store.clone());
        let mut ids = Vec::new();
        for name in ["first", "second"] {
            let run = tracker.start(name, &[] as &[(&str, &str)]).await.unwrap();
            ids.push(run.local_run_id().to_string());
            run.finish(RunStatus::Finished).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }

        let listed: Vec<String> = list_runs(&store)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.local_run_id)
            .collect();
        assert_eq!(listed, [ids[1].clone(), ids[0].clone()]);
    }

    #[tokio::test]
    async fn sync_without_uri_is_an_error() {
        let store = Store::in_memory();
        let error = sync(&TrackingSettings::local_only(), &store)
            .await
            .unwrap_err();
        assert!(matches!(error, TrackingError::NotConfigured), "{error}");
    }

    #[tokio::test]
    async fn show_run_unknown_id_is_not_found() {
        let store = Store::in_memory();
        let error = show_run(&store, "nope").await.unwrap_err();
        assert!(
            matches!(error, TrackingError::RunNotFound { .. }),
            "{error}"
        );
    }

    #[test]
    fn artifact_paths_are_checked() {
        for good in ["model.txt", "model/model.txt", "reports/set A/report.md"] {
            assert!(validate_artifact_path(good).is_ok(), "{good}");
        }
        for bad in ["", "/etc/passwd", "../x", "a//b", "a/./b", "a\\b", "a/"] {
            assert!(validate_artifact_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn local_run_ids_sort_by_time() {
        let early = chrono::DateTime::parse_from_rfc3339("2026-01-05T14:30:00Z")
            .unwrap()
            .to_utc();
        let late = chrono::DateTime::parse_from_rfc3339("2026-01-05T14:30:01Z")
            .unwrap()
            .to_utc();
        let early_id = new_local_run_id(early);
        assert!(early_id.starts_with("20260105T143000Z-"), "{early_id}");
        assert_eq!(early_id.len(), "20260105T143000Z-".len() + 8);
        assert!(early_id < new_local_run_id(late));
    }
}
