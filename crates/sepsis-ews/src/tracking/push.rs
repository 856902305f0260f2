//! Sends a run record to the tracking server, from whatever point an earlier
//! attempt reached. Every step can be repeated without creating anything
//! twice, so `finish` and `sync` share this code.

use std::collections::BTreeMap;

use super::client::{ApiError, MlflowClient};
use super::limits::{
    plan_batches, truncate_chars, KeyNamer, MAX_PARAM_VALUE_CHARS, MAX_TAG_VALUE_CHARS,
};
use super::record::{self, RunRecord, RunState, SyncMode};
use super::wire::{MetricBody, ParamBody, TagBody};
use super::TrackingError;
use crate::storage::Store;

/// Tag that links an MLflow run to its local run id.
pub const LOCAL_RUN_ID_TAG: &str = "sepsis.local_run_id";
/// Tag that carries the error message of a failed run.
pub const ERROR_TAG: &str = "sepsis.error";

/// Failure of a push.
#[derive(Debug)]
pub enum PushError {
    /// The server failed or could not be reached, so the run stays pending.
    Server(ApiError),
    /// The local run store failed.
    Store(TrackingError),
}

impl From<ApiError> for PushError {
    fn from(error: ApiError) -> PushError {
        PushError::Server(error)
    }
}

impl From<TrackingError> for PushError {
    fn from(error: TrackingError) -> PushError {
        PushError::Store(error)
    }
}

/// Creates the record's MLflow run with status RUNNING unless it exists, and
/// returns its run id and artifact URI.
pub async fn ensure_run(
    client: &MlflowClient,
    store: &Store,
    record: &mut RunRecord,
) -> Result<(String, String), PushError> {
    match (&record.sync.mlflow_run_id, &record.sync.artifact_uri) {
        (Some(run_id), Some(artifact_uri)) => return Ok((run_id.clone(), artifact_uri.clone())),
        (Some(run_id), None) => {
            let info = client.get_run(run_id).await?;
            record.sync.artifact_uri = Some(info.artifact_uri.clone());
            record::save(store, record).await?;
            return Ok((info.run_id, info.artifact_uri));
        }
        (None, _) => {}
    }
    record.sync.tracking_uri = Some(client.tracking_uri());

    let experiment_id = match &record.sync.experiment_id {
        Some(id) => id.clone(),
        None => client.ensure_experiment(&record.experiment).await?,
    };
    record.sync.experiment_id = Some(experiment_id.clone());

    if record.sync.run_create_sent {
        let found = client
            .find_run_by_tag(&experiment_id, LOCAL_RUN_ID_TAG, &record.local_run_id)
            .await?;
        if let Some(info) = found {
            tracing::info!(mlflow_run_id = %info.run_id, "found the MLflow run of an earlier attempt");
            record.sync.mlflow_run_id = Some(info.run_id.clone());
            record.sync.artifact_uri = Some(info.artifact_uri.clone());
            record::save(store, record).await?;
            return Ok((info.run_id, info.artifact_uri));
        }
    }

    // Saved before the request, so a lost response leads the next attempt
    // to the search above.
    record.sync.run_create_sent = true;
    record::save(store, record).await?;
    let (tags, _) = server_tags(record);
    let info = client
        .create_run(&experiment_id, &record.name, record.start_time_ms, &tags)
        .await?;
    tracing::info!(mlflow_run_id = %info.run_id, experiment_id = %info.experiment_id, "created MLflow run");
    record.sync.mlflow_run_id = Some(info.run_id.clone());
    record.sync.artifact_uri = Some(info.artifact_uri.clone());
    record::save(store, record).await?;
    Ok((info.run_id, info.artifact_uri))
}

/// Sends a finished or failed record in full: params, metrics and tags in
/// batches, the artifacts, the terminal status and, for a finished run, the
/// model registration with its alias. Marks the record synced and saves it.
pub async fn push_completed(
    client: &MlflowClient,
    store: &Store,
    record: &mut RunRecord,
) -> Result<(), PushError> {
    let (run_id, artifact_uri) = ensure_run(client, store, record).await?;

    let (params, truncated_params) = server_params(record);
    let (tags, truncated_tags) = server_tags(record);
    let (metrics, renamed_metrics) = server_metrics(record);
    let batches = plan_batches(params, tags, metrics);
    for batch in &batches {
        client.log_batch(&run_id, batch).await?;
    }
    tracing::info!(
        batches = batches.len(),
        params = record.params.len(),
        metrics = record.metrics.len(),
        tags = record.tags.len(),
        truncated_values = truncated_params + truncated_tags,
        renamed_metric_keys = renamed_metrics,
        "logged run data"
    );

    let pending: Vec<String> = record
        .artifacts
        .iter()
        .map(|artifact| artifact.path.clone())
        .filter(|path| !record.sync.uploaded_artifacts.contains(path))
        .collect();
    for path in pending {
        let data = record::get_artifact(store, &record.local_run_id, &path).await?;
        client.upload_artifact(&artifact_uri, &path, data).await?;
        record.sync.uploaded_artifacts.push(path);
    }

    let end_time_ms = record.end_time_ms.unwrap_or(record.start_time_ms);
    client
        .update_run(&run_id, record.status.as_str(), end_time_ms)
        .await?;

    if record.status == RunState::Finished {
        register_model(client, store, record, &run_id, &artifact_uri).await?;
    }

    record.sync.mode = SyncMode::Synced;
    record.sync.last_error = None;
    record::save(store, record).await?;
    Ok(())
}

/// Registers the run's model and points the alias at the new version, if the
/// record requests it. An earlier version made from the same run is reused.
pub(super) async fn register_model(
    client: &MlflowClient,
    store: &Store,
    record: &mut RunRecord,
    run_id: &str,
    artifact_uri: &str,
) -> Result<(), PushError> {
    let Some(registration) = record.model_registration.clone() else {
        return Ok(());
    };
    client.ensure_registered_model(&registration.name).await?;

    let version = match &record.sync.model_version {
        Some(version) => version.clone(),
        None => {
            let existing = client
                .model_versions_of_run(&registration.name, run_id)
                .await?;
            let version = match existing.into_iter().next() {
                Some(found) => found.version,
                None => {
                    let source = format!(
                        "{}/{}",
                        artifact_uri.trim_end_matches('/'),
                        registration.artifact_path.trim_matches('/')
                    );
                    client
                        .create_model_version(&registration.name, &source, run_id)
                        .await?
                        .version
                }
            };
            record.sync.model_version = Some(version.clone());
            record::save(store, record).await?;
            version
        }
    };

    client
        .set_alias(&registration.name, &registration.alias, &version)
        .await?;
    tracing::info!(
        model = %registration.name,
        version = %version,
        alias = %registration.alias,
        "registered model version"
    );
    Ok(())
}

/// Returns the params as sent, and how many values were cut to MLflow's limit.
fn server_params(record: &RunRecord) -> (Vec<ParamBody>, usize) {
    let mut namer = KeyNamer::default();
    let mut truncated = 0;
    let mut params = Vec::with_capacity(record.params.len());
    for (key, value) in &record.params {
        let (value, cut) = truncate_chars(value, MAX_PARAM_VALUE_CHARS);
        truncated += usize::from(cut);
        params.push(ParamBody {
            key: namer.server_key(key),
            value,
        });
    }
    (params, truncated)
}

/// Returns the tags as sent, the run's own tags included, and how many values
/// were cut to MLflow's limit.
fn server_tags(record: &RunRecord) -> (Vec<TagBody>, usize) {
    let mut all: BTreeMap<&str, &str> = record
        .tags
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    all.insert(LOCAL_RUN_ID_TAG, &record.local_run_id);
    if let Some(error) = &record.error {
        all.insert(ERROR_TAG, error);
    }

    let mut namer = KeyNamer::default();
    let mut truncated = 0;
    let mut tags = Vec::with_capacity(all.len());
    for (key, value) in all {
        let (value, cut) = truncate_chars(value, MAX_TAG_VALUE_CHARS);
        truncated += usize::from(cut);
        tags.push(TagBody {
            key: namer.server_key(key),
            value,
        });
    }
    (tags, truncated)
}

/// Returns the metric values as sent, and how many metric keys were renamed.
fn server_metrics(record: &RunRecord) -> (Vec<MetricBody>, usize) {
    let mut namer = KeyNamer::default();
    let metrics = record
        .metrics
        .iter()
        .map(|point| MetricBody {
            key: namer.server_key(&point.key),
            value: point.value,
            timestamp: point.timestamp_ms,
            step: point.step,
        })
        .collect();
    (metrics, namer.renamed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::record::MetricPoint;

    fn record() -> RunRecord {
        RunRecord::new("id-1".into(), "run", "exp", 1, SyncMode::Pending)
    }

    #[test]
    fn server_tags_add_local_id_and_error() {
        let mut record = record();
        record.tags.insert("data(set)".into(), "A".into());
        record.tags.insert(ERROR_TAG.into(), "user value".into());
        record.error = Some("training failed".into());

        let (tags, truncated) = server_tags(&record);
        let pairs: Vec<(&str, &str)> = tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("data_set_", "A"),
                (ERROR_TAG, "training failed"),
                (LOCAL_RUN_ID_TAG, "id-1"),
            ]
        );
        assert_eq!(truncated, 0);
    }

    #[test]
    fn server_params_cut_long_values() {
        let mut record = record();
        record
            .params
            .insert("features".into(), "x".repeat(MAX_PARAM_VALUE_CHARS + 10));
        let (params, truncated) = server_params(&record);
        assert_eq!(params[0].value.len(), MAX_PARAM_VALUE_CHARS);
        assert_eq!(truncated, 1);
    }

    #[test]
    fn server_metrics_keep_history_under_one_key() {
        let mut record = record();
        for (step, value) in [(0, 0.5), (1, 0.7)] {
            record.metrics.push(MetricPoint {
                key: "auroc(setB)".into(),
                value,
                timestamp_ms: 5,
                step,
            });
        }
        let (metrics, renamed) = server_metrics(&record);
        assert_eq!(metrics.len(), 2);
        assert!(metrics.iter().all(|m| m.key == "auroc_setB_"));
        assert_eq!(renamed, 1);
    }
}
