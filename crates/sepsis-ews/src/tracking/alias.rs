//! Points an alias of a registered model at the model of one tracked run,
//! the run found by a tag.
//!
//! A run registers its model when it finishes, if it asked to. An alias that
//! must follow a decision made later, such as a production pointer moved by
//! hand, needs this instead: the alias goes to the version made from the run,
//! made now if the run has none. When the run never reached this server, the
//! alias is removed rather than left on a model that the decision no longer
//! names.

use serde::Serialize;

use super::client::MlflowClient;
use super::push::{self, PushError};
use super::record::{self, ModelRegistration, RunRecord, RunState, SyncMode};
use super::{TrackingError, TrackingSettings, MODEL_ARTIFACT_PATH};
use crate::storage::Store;

/// The state of an alias after [`point_alias`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AliasOutcome {
    /// No tracking server is set, so nothing was sent.
    NotConfigured,
    /// The alias names the model version made from the run.
    Set {
        model: String,
        alias: String,
        version: String,
        mlflow_run_id: String,
        local_run_id: String,
    },
    /// The run is not on this tracking server, so the alias was removed.
    Removed {
        model: String,
        alias: String,
        reason: String,
    },
    /// The server failed or could not be reached: the alias may still name
    /// another model.
    Failed {
        model: String,
        alias: String,
        error: String,
    },
}

/// Points `alias` of the registered model `model` at the artifact folder
/// `model` of the finished run tagged `tag.0` = `tag.1`, registering that
/// folder as a new version when the run has none.
///
/// Server failures come back as [`AliasOutcome::Failed`]. The error cases
/// are a failing local run store and invalid settings.
pub async fn point_alias(
    settings: &TrackingSettings,
    store: &Store,
    tag: (&str, &str),
    model: &str,
    alias: &str,
) -> Result<AliasOutcome, TrackingError> {
    let Some(client) = MlflowClient::new(settings)? else {
        return Ok(AliasOutcome::NotConfigured);
    };
    let (key, value) = tag;
    let mut found = None;
    for id in record::list_ids(store).await? {
        let record = match record::load(store, &id).await {
            Ok(record) => record,
            // `sepsis runs sync` reports unreadable records.
            Err(TrackingError::CorruptRecord { .. }) => continue,
            Err(error) => return Err(error),
        };
        if record.status == RunState::Finished && record.tags.get(key).is_some_and(|v| v == value) {
            found = Some(record);
            break;
        }
    }

    let failed = |error: String| AliasOutcome::Failed {
        model: model.to_string(),
        alias: alias.to_string(),
        error,
    };
    let mut record = match run_on_server(found, &client.tracking_uri(), tag) {
        Ok(record) => record,
        Err(reason) => {
            return Ok(match client.delete_alias(model, alias).await {
                Ok(()) => {
                    tracing::info!(
                        model,
                        alias,
                        "removed the alias: its run is not on the server"
                    );
                    AliasOutcome::Removed {
                        model: model.to_string(),
                        alias: alias.to_string(),
                        reason,
                    }
                }
                Err(error) => failed(error.to_string()),
            })
        }
    };

    let (Some(run_id), Some(artifact_uri)) = (
        record.sync.mlflow_run_id.clone(),
        record.sync.artifact_uri.clone(),
    ) else {
        return Ok(failed(format!(
            "run {} is marked as sent but has no MLflow run id or artifact URI",
            record.local_run_id
        )));
    };
    record.model_registration = Some(ModelRegistration {
        name: model.to_string(),
        artifact_path: MODEL_ARTIFACT_PATH.to_string(),
        alias: alias.to_string(),
    });
    // The version noted in the record is not trusted, because the registered
    // model may have been deleted or created again since, with its numbers on
    // other runs' models. Without it, the server is asked for the run's
    // version, and one is created when there is none.
    record.sync.model_version = None;
    match push::register_model(&client, store, &mut record, &run_id, &artifact_uri).await {
        Ok(()) => Ok(AliasOutcome::Set {
            model: model.to_string(),
            alias: alias.to_string(),
            version: record.sync.model_version.clone().unwrap_or_default(),
            mlflow_run_id: run_id,
            local_run_id: record.local_run_id,
        }),
        Err(PushError::Server(error)) => Ok(failed(error.to_string())),
        Err(PushError::Store(error)) => Err(error),
    }
}

/// Returns the run when it is complete on `server`, else why it is not.
fn run_on_server(
    found: Option<RunRecord>,
    server: &str,
    (key, value): (&str, &str),
) -> Result<RunRecord, String> {
    let Some(record) = found else {
        return Err(format!(
            "no finished tracked run has the tag {key} = {value}"
        ));
    };
    let id = &record.local_run_id;
    match (record.sync.mode, record.sync.tracking_uri.as_deref()) {
        (SyncMode::Synced, Some(uri)) if uri == server => Ok(record),
        (SyncMode::Synced, uri) => Err(format!(
            "run {id} was sent to another tracking server, {}",
            uri.unwrap_or("unknown")
        )),
        (SyncMode::LocalOnly, _) => Err(format!("run {id} was recorded without a tracking server")),
        (SyncMode::Pending, _) => Err(format!(
            "run {id} has not been sent to {server} yet (`sepsis runs sync` sends it)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "http://127.0.0.1:5000";
    const TAG: (&str, &str) = ("sepsis.run_id", "r1");

    fn record(mode: SyncMode, server: Option<&str>) -> RunRecord {
        let mut record = RunRecord::new("local-1".into(), "pipeline", "e", 0, mode);
        record.sync.tracking_uri = server.map(str::to_string);
        record
    }

    #[test]
    fn synced_run_on_server_is_used() {
        let found = record(SyncMode::Synced, Some(SERVER));
        assert!(run_on_server(Some(found), SERVER, TAG).is_ok());
    }

    #[test]
    fn other_runs_give_reasons() {
        let cases = [
            (
                None,
                "no finished tracked run has the tag sepsis.run_id = r1",
            ),
            (
                Some(record(SyncMode::Synced, Some("http://other:5000"))),
                "run local-1 was sent to another tracking server, http://other:5000",
            ),
            (
                Some(record(SyncMode::LocalOnly, None)),
                "run local-1 was recorded without a tracking server",
            ),
            (
                Some(record(SyncMode::Pending, Some(SERVER))),
                "run local-1 has not been sent to http://127.0.0.1:5000 yet",
            ),
        ];
        for (found, expected) in cases {
            let reason = run_on_server(found, SERVER, TAG).unwrap_err();
            assert!(reason.starts_with(expected), "{reason}");
        }
    }
}
