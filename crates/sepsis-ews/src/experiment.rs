//! Records a pipeline run with the experiment tracker: the configuration as
//! params, every validation measure as metrics, the data, feature and code
//! versions and the gate's decision as tags, and the model, report, validation
//! report and model card as artifacts. A promoted model is registered in
//! MLflow with the alias `champion`, and [`align_champion`] moves that alias
//! whenever production changes in another way.
//!
//! Tracking never fails the pipeline. A server outage leaves the run in the
//! local run store for `sepsis runs sync`, and even a failing local run store
//! only turns into a warning in the result.

use std::path::Path;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::drift::DRIFT_REFERENCE_FILE;
use crate::pipeline::{self, Context, PipelineError, PipelineOutcome};
use crate::registry::{Registry, RegistryError};
use crate::scoring;
use crate::storage::{Area, Store};
use crate::tracking::{
    point_alias, AliasOutcome, RunStatus, TrackedRun, Tracker, TrackingOutcome, TrackingSettings,
    CHAMPION_ALIAS,
};
use crate::validate;

/// Tag that names the pipeline run, and so the registry version made from it.
pub const RUN_ID_TAG: &str = "sepsis.run_id";

/// The configuration sections logged as params.
const PARAM_SECTIONS: [&str; 6] = ["split", "features", "training", "alert", "registry", "data"];

/// The outcome of the run's tracking.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TrackingReport {
    Recorded(TrackingOutcome),
    /// The local run store failed; the pipeline's own outputs are intact.
    Failed {
        error: String,
    },
}

impl TrackingReport {
    /// Describes the outcome in one line for the command's summary.
    pub fn summary(&self) -> String {
        match self {
            TrackingReport::Recorded(TrackingOutcome::Logged { url, .. }) => {
                format!("logged to MLflow: {url}")
            }
            TrackingReport::Recorded(TrackingOutcome::SavedForSync {
                local_run_id,
                reason,
            }) => format!(
                "NOT logged to MLflow ({reason}); saved as {local_run_id} in the local run \
                 store, send it later with `sepsis runs sync`"
            ),
            TrackingReport::Recorded(TrackingOutcome::LocalOnly { local_run_id }) => format!(
                "saved as {local_run_id} in the local run store (MLFLOW_TRACKING_URI is not set)"
            ),
            TrackingReport::Failed { error } => format!("not recorded: {error}"),
        }
    }
}

/// Runs the pipeline on `input` and records it with the tracker.
pub async fn run_pipeline_tracked(
    ctx: &Context,
    input: &Path,
    settings: TrackingSettings,
) -> (Result<PipelineOutcome, PipelineError>, TrackingReport) {
    let tracker = Tracker::new(settings, ctx.store.clone());
    let source = input
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tags = vec![("sepsis.input", source)];
    if let Some(commit) = &ctx.git_commit {
        tags.push(("mlflow.source.git.commit", commit.clone()));
        tags.push(("sepsis.git_commit", commit.clone()));
    }
    let started = tracker.start("pipeline", &tags).await;
    let outcome = pipeline::run_pipeline(ctx, input).await;
    let report = match started {
        Ok(run) => match finish(ctx, run, &outcome).await {
            Ok(outcome) => TrackingReport::Recorded(outcome),
            Err(error) => TrackingReport::Failed {
                error: format!("{error:#}"),
            },
        },
        Err(error) => TrackingReport::Failed {
            error: error.to_string(),
        },
    };
    if let TrackingReport::Failed { error } = &report {
        tracing::warn!(error = error.as_str(), "the run was not tracked");
    }
    (outcome, report)
}

/// The state of MLflow's alias `champion` after [`align_champion`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ChampionAlias {
    /// No tracking server is set.
    NotConfigured,
    /// The registry has no production version, so the alias was left alone.
    NoProduction,
    /// The alias was aligned with production, or removed, or could not be.
    Production {
        registry_version: u32,
        mlflow: AliasOutcome,
    },
}

impl ChampionAlias {
    /// Describes the alias in one line, or `None` when nothing was sent.
    pub fn summary(&self) -> Option<String> {
        let ChampionAlias::Production {
            registry_version,
            mlflow,
        } = self
        else {
            return None;
        };
        Some(match mlflow {
            AliasOutcome::NotConfigured => return None,
            AliasOutcome::Set {
                model,
                alias,
                version,
                mlflow_run_id,
                ..
            } => format!(
                "MLflow: {model}@{alias} is version {version}, the model of run {mlflow_run_id} \
                 (registry v{registry_version})"
            ),
            AliasOutcome::Removed {
                model,
                alias,
                reason,
            } => format!(
                "MLflow: {model}@{alias} removed: registry v{registry_version} has no model \
                 there ({reason})"
            ),
            AliasOutcome::Failed {
                model,
                alias,
                error,
            } => format!(
                "MLflow: {model}@{alias} NOT moved to registry v{registry_version} ({error}); \
                 `sepsis runs sync` tries again"
            ),
        })
    }
}

/// Failure of [`align_champion`] outside the tracking server.
#[derive(Debug, thiserror::Error)]
pub enum ChampionError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Tracking(#[from] crate::tracking::TrackingError),
}

/// Points MLflow's alias `champion` of the registry's model at the
/// production version: at the model of the tracked pipeline run that stored
/// that version. The registry decides what production is, and the alias
/// follows it, so this runs after every change of the pointer by hand and
/// after `sepsis runs sync`.
pub async fn align_champion(
    settings: &TrackingSettings,
    store: &Store,
    registry: &Registry,
) -> Result<ChampionAlias, ChampionError> {
    if settings.tracking_uri().is_none() {
        return Ok(ChampionAlias::NotConfigured);
    }
    let Some(production) = registry.production().await? else {
        return Ok(ChampionAlias::NoProduction);
    };
    let version = registry.version(production.version).await?;
    let mlflow = point_alias(
        settings,
        store,
        (RUN_ID_TAG, &version.run_id),
        registry.model_name(),
        CHAMPION_ALIAS,
    )
    .await?;
    if let AliasOutcome::Failed { error, .. } = &mlflow {
        tracing::warn!(
            registry_version = production.version,
            error = error.as_str(),
            "MLflow's alias champion was not moved"
        );
    }
    Ok(ChampionAlias::Production {
        registry_version: production.version,
        mlflow,
    })
}

async fn finish(
    ctx: &Context,
    mut run: TrackedRun,
    outcome: &Result<PipelineOutcome, PipelineError>,
) -> Result<TrackingOutcome, crate::tracking::TrackingError> {
    let config = serde_json::to_value(&ctx.config).unwrap_or(Value::Null);
    let mut params = Vec::new();
    for section in PARAM_SECTIONS {
        flatten(section, &config[section], &mut params_sink(&mut params));
    }
    run.log_params(&params);

    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            return run
                .finish(RunStatus::Failed(error.tracking_message()))
                .await
        }
    };

    let mut metrics = Vec::new();
    let model = serde_json::to_value(&outcome.metrics.model).unwrap_or(Value::Null);
    flatten_numbers("validation", &model, &mut metrics);
    if let Some(out_of_fold) = &outcome.metrics.out_of_fold {
        let value = serde_json::to_value(out_of_fold).unwrap_or(Value::Null);
        flatten_numbers("out_of_fold", &value, &mut metrics);
    }
    for baseline in &outcome.metrics.baselines {
        let value = serde_json::to_value(&baseline.evaluation).unwrap_or(Value::Null);
        flatten_numbers(&format!("baseline.{}", baseline.name), &value, &mut metrics);
    }
    let gate = &outcome.gate;
    for (name, value) in [
        ("gate.candidate_value", gate.candidate_value),
        ("gate.production_value", gate.production_value),
        ("gate.gain_low", gate.gain_interval.map(|i| i.low)),
        ("gate.gain_high", gate.gain_interval.map(|i| i.high)),
    ] {
        if let Some(value) = value {
            metrics.push((name.to_string(), value));
        }
    }
    metrics.push(("gate.promoted".into(), f64::from(u8::from(gate.promoted))));
    run.log_metrics(&metrics);

    run.set_tags(&[
        (RUN_ID_TAG, outcome.run_id.clone()),
        ("sepsis.data_digest", outcome.data_digest.clone()),
        ("sepsis.feature_version", outcome.feature_version.clone()),
        (
            "sepsis.feature_set_version",
            crate::features::FEATURE_SET_VERSION.to_string(),
        ),
        ("sepsis.model_name", gate.model_name.clone()),
        (
            "sepsis.registry_version",
            outcome.registry_version.to_string(),
        ),
        ("sepsis.gate.promoted", gate.promoted.to_string()),
        ("sepsis.gate.metric", gate.metric.to_string()),
        ("sepsis.gate.reasons", gate.reasons.join("\n")),
        ("sepsis.policy", outcome.metrics.policy.statement.clone()),
    ]);

    let run_files = [
        (pipeline::MODEL_FILE, "model/model.txt"),
        (scoring::SIDECAR_FILE, "model/model.json"),
        (scoring::CARD_FILE, "model/model_card.json"),
        (scoring::CARD_MARKDOWN_FILE, "model/model_card.md"),
        (pipeline::CLOCK_MODEL_FILE, "model/clock_model.txt"),
        (DRIFT_REFERENCE_FILE, "model/drift_reference.json"),
        (pipeline::REPORT_FILE, "report.html"),
        (pipeline::METRICS_FILE, "metrics.json"),
        (pipeline::GATE_FILE, "gate.json"),
    ];
    for (file, artifact) in run_files {
        let key = format!("runs/{}/{file}", outcome.run_id);
        let bytes = read_artifact(ctx, Area::Artifacts, &key).await?;
        run.add_artifact(artifact, bytes).await?;
    }
    for file in [validate::REPORT_JSON, validate::REPORT_MARKDOWN] {
        let key = validate::report_key(&outcome.data_digest, file);
        let bytes = read_artifact(ctx, Area::Artifacts, &key).await?;
        run.add_artifact(&format!("validation/{file}"), bytes)
            .await?;
    }
    if gate.promoted {
        run.register_model(&gate.model_name);
    }
    run.finish(RunStatus::Finished).await
}

async fn read_artifact(
    ctx: &Context,
    area: Area,
    key: &str,
) -> Result<Bytes, crate::tracking::TrackingError> {
    ctx.store
        .get(area, key)
        .await
        .map_err(|source| crate::tracking::TrackingError::Store {
            key: ctx.store.uri(area, key),
            source,
        })
}

fn params_sink(params: &mut Vec<(String, String)>) -> impl FnMut(String, String) + '_ {
    move |key, value| params.push((key, value))
}

/// Walks a JSON value and emits each scalar leaf under its dotted path;
/// arrays are emitted whole, as JSON text.
fn flatten(prefix: &str, value: &Value, sink: &mut impl FnMut(String, String)) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                flatten(&format!("{prefix}.{key}"), inner, sink);
            }
        }
        Value::String(text) => sink(prefix.to_string(), text.clone()),
        Value::Null => sink(prefix.to_string(), "null".into()),
        other => sink(prefix.to_string(), other.to_string()),
    }
}

/// Walks a JSON value and collects each number under its dotted path.
/// Arrays (curves, lead times) are left out: they are in the artifacts.
fn flatten_numbers(prefix: &str, value: &Value, metrics: &mut Vec<(String, f64)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                flatten_numbers(&format!("{prefix}.{key}"), inner, metrics);
            }
        }
        Value::Number(number) => {
            if let Some(number) = number.as_f64() {
                metrics.push((prefix.to_string(), number));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_numbers_skips_arrays_and_text() {
        let value = serde_json::json!({
            "hourly": {"auroc": 0.8, "rows": 10, "curve": [1, 2]},
            "rule": "x",
            "none": null
        });
        let mut metrics = Vec::new();
        flatten_numbers("validation", &value, &mut metrics);
        assert_eq!(
            metrics,
            vec![
                ("validation.hourly.auroc".to_string(), 0.8),
                ("validation.hourly.rows".to_string(), 10.0),
            ]
        );
    }

    #[test]
    fn flatten_keeps_every_leaf_as_text() {
        let value = serde_json::json!({"a": {"b": 1, "c": [6, 24]}, "d": "text", "e": null});
        let mut params = Vec::new();
        flatten("training", &value, &mut params_sink(&mut params));
        assert_eq!(
            params,
            vec![
                ("training.a.b".to_string(), "1".to_string()),
                ("training.a.c".to_string(), "[6,24]".to_string()),
                ("training.d".to_string(), "text".to_string()),
                ("training.e".to_string(), "null".to_string()),
            ]
        );
    }
}
