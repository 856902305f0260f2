//! The steps of `sepsis pipeline`, each also callable on its own, and the
//! run that chains them: import → ingest → validate → transform → train →
//! evaluate. Each step runs in its own `tracing` span carrying its row count
//! and elapsed time.
//!
//! A step reads only what the step before it stored, keyed by the digest of
//! the imported data, so running the subcommands one by one gives the same
//! result as the pipeline.

use std::future::Future;
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::assess::{self, SubgroupResult};
use crate::config::{Config, GateMetric};
use crate::drift::{DriftReference, DRIFT_REFERENCE_FILE};
use crate::evaluate::{AlertRule, Cohort, Evaluation};
use crate::failpoint::{self, InjectedFailure};
use crate::feature_store::{self, FeatureManifest, FeatureStoreError};
use crate::features::FeatureSpec;
use crate::gate::{self, GateDecision};
use crate::import::{self, ImportError, ImportManifest};
use crate::ingest::{self, IngestError, SnapshotManifest};
use crate::interval::Interval;
use crate::policy::{AlertPolicy, BaselineResult, CardData, ModelCard};
use crate::progress::SharedProgress;
use crate::registry::{Registry, RegistryError, VersionRecord};
use crate::report;
use crate::schema::{Schema, SchemaError};
use crate::scoring::{self, ScoringError, ScoringModel};
use crate::stays;
use crate::storage::{Area, StorageError, Store};
use crate::train::{self, ModelSidecar, SplitPlan, TrainError, TrainingData};
use crate::validate::{self, ValidateError, ValidationReport};

pub use crate::scoring::MODEL_FILE;
pub const METRICS_FILE: &str = "metrics.json";
pub const CONFIG_FILE: &str = "config.json";
pub const REPORT_FILE: &str = "report.html";
/// The gate's decision on a run, written to the run folder.
pub const GATE_FILE: &str = "gate.json";
/// The schema the model's input table was built with, in a registry version.
pub const TRANSFORMER_FILE: &str = "transformer.json";
pub use crate::scoring::CLOCK_MODEL_FILE;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error(transparent)]
    FeatureStore(#[from] FeatureStoreError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Scoring(#[from] ScoringError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Injected(#[from] InjectedFailure),
    #[error("{location}: {message}")]
    Run { location: String, message: String },
}

impl PipelineError {
    /// Returns the message to store with a failed run in tracking, which is
    /// sent to the tracking server. The messages of import and validation
    /// name patient ids and values for the user at the terminal, so here
    /// they keep the file, line and column and drop the rest.
    pub fn tracking_message(&self) -> String {
        const KEPT_OUT: &str = "the command's error output gives the details, which are kept \
                                out of tracking because they may contain patient data";
        // A .psv file is named after its patient, so only its folder is kept.
        let redact = |file: &str| -> String {
            let path = Path::new(file);
            let is_psv = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("psv"));
            match (is_psv, path.parent()) {
                (true, Some(folder)) => format!("a .psv file in {}", folder.display()),
                _ => file.to_string(),
            }
        };
        match self {
            PipelineError::Import(ImportError::Input { file, .. }) => {
                let file = redact(file);
                format!("{file}: the input could not be imported; {KEPT_OUT}")
            }
            PipelineError::Import(ImportError::Read { file, line, .. }) => {
                let file = redact(file);
                format!("{file}: line {line} could not be read; {KEPT_OUT}")
            }
            PipelineError::Import(ImportError::Value {
                file, line, column, ..
            }) => {
                let file = redact(file);
                format!("{file}: line {line}, column {column:?} has an invalid value; {KEPT_OUT}")
            }
            PipelineError::Validate(ValidateError::Failed { count, report, .. }) => format!(
                "validation failed with {count} error(s); full report: {report}; {KEPT_OUT}"
            ),
            other => {
                let mut text = other.to_string();
                let mut source = std::error::Error::source(other);
                while let Some(cause) = source {
                    text.push_str(": ");
                    text.push_str(&cause.to_string());
                    source = cause.source();
                }
                text
            }
        }
    }
}

/// The shared state of every step: configuration, schema, store and progress sink.
#[derive(Clone)]
pub struct Context {
    pub config: Config,
    pub schema: Schema,
    pub store: Store,
    pub progress: SharedProgress,
    /// The commit of the code, recorded in registry versions when known.
    pub git_commit: Option<String>,
}

impl Context {
    /// Opens the schema and the store that the configuration names.
    pub fn open(config: Config, progress: SharedProgress) -> Result<Context, PipelineError> {
        Context::open_with(config, progress, true)
    }

    /// Opens the schema and the store like [`Context::open`], unless the
    /// store is a local folder that does not exist, for commands that only read.
    pub fn open_existing(
        config: Config,
        progress: SharedProgress,
    ) -> Result<Context, PipelineError> {
        Context::open_with(config, progress, false)
    }

    fn open_with(
        config: Config,
        progress: SharedProgress,
        create: bool,
    ) -> Result<Context, PipelineError> {
        let schema = match config.schema_path() {
            Some(path) => Schema::load(path)?,
            None => Schema::embedded(),
        };
        let store = match create {
            true => Store::open(&config.storage, &config.layout)?,
            false => Store::open_existing(&config.storage, &config.layout)?,
        };
        Ok(Context {
            config,
            schema,
            store,
            progress,
            git_commit: None,
        })
    }

    /// Opens the registry of the configured model name.
    pub fn registry(&self) -> Registry {
        Registry::new(self.store.clone(), &self.config.registry.model_name)
    }

    /// Builds the features that the configuration and schema define.
    pub fn feature_spec(&self) -> FeatureSpec {
        FeatureSpec::new(&self.schema, &self.config.features)
    }
}

/// Runs one step inside a span that records its rows and elapsed time.
async fn step<T, E, F>(name: &'static str, rows_of: impl Fn(&T) -> u64, work: F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let span = tracing::info_span!(
        "step",
        step = name,
        rows = tracing::field::Empty,
        elapsed_ms = tracing::field::Empty
    );
    let started = Instant::now();
    let result = work.instrument(span.clone()).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    span.record("elapsed_ms", elapsed_ms);
    release_freed_memory();
    let _entered = span.enter();
    match &result {
        Ok(value) => {
            let rows = rows_of(value);
            span.record("rows", rows);
            tracing::info!(rows, elapsed_ms, "step finished");
        }
        Err(_) => tracing::warn!(elapsed_ms, "step failed"),
    }
    result
}

/// Gives the heap memory that a finished step freed back to the operating
/// system. glibc keeps freed memory of its per-thread arenas for reuse, so
/// without this each step's buffers stay resident into the next step and raise
/// the peak memory of training.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

pub async fn run_import(ctx: &Context, input: &Path) -> Result<ImportManifest, PipelineError> {
    let work = import::import(&ctx.store, &ctx.schema, input, ctx.progress.clone());
    Ok(step("import", |m: &ImportManifest| m.rows, work).await?)
}

/// Imports `input` and ingests it at the same time: the parser reads the raw
/// CSV bytes as the import writes them, so the two steps share the wall time.
/// The snapshot is stored only after the import has succeeded and its digest
/// matches the bytes parsed.
pub async fn run_import_and_ingest(
    ctx: &Context,
    input: &Path,
) -> Result<(ImportManifest, SnapshotManifest), PipelineError> {
    let (sender, receiver) = tokio::sync::mpsc::channel(8);
    let location = ctx.store.uri(Area::RawData, import::RAW_DATA_KEY);
    let parser = ingest::parse_tapped(&ctx.schema, location, receiver);
    let importing = import::import_with_tap(
        &ctx.store,
        &ctx.schema,
        input,
        ctx.progress.clone(),
        Some(sender),
    );
    let imported = step("import", |m: &ImportManifest| m.rows, importing).await;
    let parsed = parser.await.expect("the ingest thread does not panic");
    let imported = imported?;

    let storing = async {
        let (manifest, _) =
            ingest::store_tapped(&ctx.store, &ctx.schema, &imported.digest, parsed?).await?;
        Ok::<_, IngestError>(manifest)
    };
    let snapshot = step("ingest", |m: &SnapshotManifest| m.rows, storing).await?;
    Ok((imported, snapshot))
}

pub async fn run_ingest(ctx: &Context) -> Result<SnapshotManifest, PipelineError> {
    let work = async {
        ingest::ingest(&ctx.store, &ctx.schema, ctx.progress.clone())
            .await
            .map(|(manifest, _)| manifest)
    };
    Ok(step("ingest", |m: &SnapshotManifest| m.rows, work).await?)
}

pub async fn run_validate(ctx: &Context) -> Result<ValidationReport, PipelineError> {
    let work = validate::validate(&ctx.store, &ctx.schema);
    Ok(step("validate", |r: &ValidationReport| r.rows, work).await?)
}

pub async fn run_transform(ctx: &Context) -> Result<(FeatureManifest, bool), PipelineError> {
    let spec = ctx.feature_spec();
    let work = feature_store::transform(&ctx.store, &ctx.schema, &spec, ctx.progress.clone());
    Ok(step("transform", |(m, _): &(FeatureManifest, bool)| m.rows, work).await?)
}

/// Validates the snapshot and computes its features at the same time, on
/// both cores. The features are stored only if the validation passed, so a
/// failed validation still leaves nothing downstream. A stored version of the
/// same data is reused instead of computed.
pub async fn run_validate_and_transform(
    ctx: &Context,
    data_digest: &str,
) -> Result<(ValidationReport, FeatureManifest, bool), PipelineError> {
    let spec = ctx.feature_spec();
    let reusable = feature_store::find_reusable(&ctx.store, &spec, data_digest).await?;
    let snapshot = ingest::read_snapshot(&ctx.store, &ctx.schema, data_digest).await?;

    let validating =
        validate::validate_snapshot(&ctx.store, &ctx.schema, data_digest, snapshot.clone());
    let validating = step("validate", |r: &ValidationReport| r.rows, validating);
    let computing = async {
        if reusable.is_some() {
            return Ok(None);
        }
        let table = feature_store::compute(
            &ctx.store,
            &ctx.schema,
            &spec,
            data_digest,
            snapshot,
            ctx.progress.clone(),
        )
        .await?;
        Ok::<_, FeatureStoreError>(Some(table))
    };
    let (report, computed) = tokio::join!(validating, computing);
    let report = report?;

    if let Some(existing) = reusable {
        return Ok((report, existing, true));
    }
    let storing = async {
        let table = computed?.expect("computed unless reusable");
        feature_store::store_version(&ctx.store, &ctx.schema, &spec, data_digest, table).await
    };
    let manifest = step("transform", |m: &FeatureManifest| m.rows, storing).await?;
    Ok((report, manifest, false))
}

/// A trained model, saved under `artifacts/runs/<run_id>/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOutcome {
    pub run_id: String,
    pub model_path: String,
    pub sidecar: ModelSidecar,
}

/// The measures of a run, stored as `metrics.json` and printed by `sepsis
/// pipeline --json` and `sepsis train --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMetrics {
    pub run_id: String,
    /// The model on the validation patients, at the policy's threshold.
    pub model: Evaluation,
    pub policy: AlertPolicy,
    pub baselines: Vec<BaselineResult>,
    pub subgroups: Vec<SubgroupResult>,
    /// The features with the largest total split gain.
    pub top_features: Vec<(String, f64)>,
    /// Ranking measures of the training patients' out-of-fold scores, when
    /// the model was cross-fitted.
    #[serde(default)]
    pub out_of_fold: Option<assess::OutOfFold>,
}

/// Features listed in the importance table and chart.
const TOP_FEATURES: usize = 20;

/// Creates a run id: the UTC time, then four random hex digits against clashes.
pub fn new_run_id() -> String {
    let suffix: u16 = rand::random();
    format!(
        "{}-{suffix:04x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    )
}

fn run_key(run_id: &str, file: &str) -> String {
    format!("runs/{run_id}/{file}")
}

/// Loads the feature version and builds the patient groups.
async fn load_data(
    ctx: &Context,
    manifest: &FeatureManifest,
    plan: &SplitPlan,
) -> Result<TrainingData, PipelineError> {
    let bytes = feature_store::read_features(&ctx.store, manifest).await?;
    let location = ctx.store.uri(
        Area::FeatureStore,
        &format!("{}/{}", manifest.version, feature_store::FEATURES_FILE),
    );
    let manifest = manifest.clone();
    let plan = plan.clone();
    let data = tokio::task::spawn_blocking(move || {
        train::load_training_data(bytes, &location, &manifest, &plan)
    })
    .await
    .expect("the loading thread does not panic")?;
    Ok(data)
}

/// Trains on a feature version (the newest of the imported data by default),
/// calibrates, chooses the alert threshold, measures the model and its
/// baselines on the validation patients, and saves it all under
/// `artifacts/runs/<run_id>/`.
pub async fn run_train(
    ctx: &Context,
    feature_version: Option<&str>,
) -> Result<(TrainOutcome, RunMetrics), PipelineError> {
    let imported = import::read_manifest(&ctx.store).await?;
    if feature_version.is_none() {
        validate::require_passed(&ctx.store, &ctx.schema, &imported.digest).await?;
    }
    let manifest =
        feature_store::resolve_version(&ctx.store, feature_version, &imported.digest).await?;
    let spec = ctx.feature_spec();
    if manifest.schema_digest != ctx.schema.digest || manifest.feature_names != spec.feature_names {
        return Err(PipelineError::Run {
            location: ctx.store.uri(Area::FeatureStore, &manifest.version),
            message: "the feature version was computed with another schema or feature \
                      configuration; run `sepsis transform` again"
                .into(),
        });
    }
    let plan = SplitPlan {
        split: ctx.config.split.clone(),
        calibration_fraction: ctx.config.alert.calibration_fraction,
        folds: ctx.config.training.folds,
    };
    let work = async {
        let loading = Instant::now();
        let data = load_data(ctx, &manifest, &plan).await?;
        let fit_patients = data.fit_patients;
        // Cross-fitting calibrates on every fit patient's out-of-fold score.
        let calibration_patients = if plan.folds >= 2 {
            fit_patients
        } else {
            data.calibration.patients.len()
        };
        let validation_patients = data.validation.patients.len();
        let validation_rows = data.validation.rows();
        let late_stays = stays::late_septic_stays(&[&data.fit, &data.calibration]);
        if let Some(late) = &late_stays {
            tracing::warn!(
                cut_hour = late.cut_hour,
                septic_stays_past_cut = late.septic_stays_past_cut,
                septic_stays = late.septic_stays,
                "septic training stays last past nearly all others; the model card names the risk"
            );
        }
        tracing::info!(
            fit_rows = data.fit.rows(),
            calibration_rows = data.calibration.rows(),
            validation_rows,
            elapsed_ms = loading.elapsed().as_millis() as u64,
            "training data loaded"
        );
        ctx.progress.begin("train", None);
        let training = ctx.config.training.clone();
        let alert = ctx.config.alert.clone();
        let fit_spec = spec.clone();
        let (fitted, drift_inputs) = tokio::task::spawn_blocking(move || {
            // The inputs' reference distributions, from the rows the trees fit.
            let drift_inputs = DriftReference::inputs_of(&fit_spec, &data.fit.matrix.values);
            (
                assess::fit(data, &fit_spec, &training, &alert),
                drift_inputs,
            )
        })
        .await
        .expect("the training thread does not panic");
        ctx.progress.end();
        Ok::<_, PipelineError>((
            fitted?,
            drift_inputs,
            (fit_patients, calibration_patients),
            (validation_patients, validation_rows),
            late_stays,
        ))
    };
    let rows = |fitted: &(assess::Fitted, _, _, _, _)| fitted.0.fit_rows as u64;
    let (
        fitted,
        (drift_rows, drift_inputs),
        (fit_patients, calibration_patients),
        (validation_patients, validation_rows),
        late_stays,
    ) = step("train", rows, work).await?;

    let work = async {
        let assess_spec = spec.clone();
        let (fitted, assessed) = tokio::task::spawn_blocking(move || {
            let assessed = assess::assess(&fitted, &assess_spec);
            (fitted, assessed)
        })
        .await
        .expect("the evaluation thread does not panic");
        let assessed = assessed?;

        let run_id = new_run_id();
        let sidecar = ModelSidecar {
            run_id: run_id.clone(),
            format: "lightgbm-text".into(),
            feature_names: manifest.feature_names.clone(),
            features: spec.clone(),
            feature_version: manifest.version.clone(),
            feature_set_version: manifest.feature_set_version.clone(),
            data_digest: manifest.input_digest.clone(),
            schema_digest: manifest.schema_digest.clone(),
            params: fitted.params.clone(),
            split: plan.clone(),
            fit_rows: fitted.fit_rows,
            fit_patients,
            calibration_rows: fitted.calibration_rows,
            calibration_patients,
            validation_rows,
            validation_patients,
            created_at: chrono::Utc::now().to_rfc3339(),
        };
        let card = ModelCard {
            run_id: run_id.clone(),
            created_at: sidecar.created_at.clone(),
            intended_use: INTENDED_USE.into(),
            data: CardData {
                data_digest: sidecar.data_digest.clone(),
                feature_version: sidecar.feature_version.clone(),
                feature_set_version: sidecar.feature_set_version.clone(),
                features: sidecar.feature_names.len(),
                fit_patients,
                calibration_patients,
                validation_patients,
                folds: plan.folds,
                shape: ctx.config.training.shape,
            },
            calibration: fitted.model.calibration.clone(),
            policy: fitted.model.policy.clone(),
            validation: assessed.validation.clone(),
            baselines: assessed.baselines.clone(),
            clock: Some(fitted.clock.clone()),
            limitations: LIMITATIONS
                .iter()
                .map(|l| l.to_string())
                .chain(late_stays.as_ref().map(stays::LateSepticStays::limitation))
                .collect(),
        };
        let mut top_features = assess::gain_importance(&fitted.model_text, &sidecar.feature_names);
        top_features.truncate(TOP_FEATURES);
        let metrics = RunMetrics {
            run_id: run_id.clone(),
            model: assessed.validation.clone(),
            policy: fitted.model.policy.clone(),
            baselines: assessed.baselines.clone(),
            subgroups: assessed.subgroups.clone(),
            top_features,
            out_of_fold: fitted.out_of_fold.clone(),
        };
        let report = report::run_report(&metrics, &card, &assessed);
        let drift = DriftReference::new(
            drift_rows,
            drift_inputs,
            DriftReference::prediction_of(&assessed.validation_probabilities),
        );

        let store = &ctx.store;
        let put = |file: &'static str, bytes: Bytes| {
            let key = run_key(&run_id, file);
            async move { store.put(Area::Artifacts, &key, bytes).await }
        };
        put(CONFIG_FILE, to_json(&ctx.config)).await?;
        put(scoring::SIDECAR_FILE, to_json(&sidecar)).await?;
        put(scoring::CARD_FILE, to_json(&card)).await?;
        put(scoring::CARD_MARKDOWN_FILE, Bytes::from(card.to_markdown())).await?;
        put(CLOCK_MODEL_FILE, Bytes::from(fitted.clock_text.clone())).await?;
        put(DRIFT_REFERENCE_FILE, to_json(&drift)).await?;
        put(METRICS_FILE, to_json(&metrics)).await?;
        put(REPORT_FILE, Bytes::from(report)).await?;
        // The model file last: a run folder with a model is complete.
        put(MODEL_FILE, Bytes::from(fitted.model_text.clone())).await?;
        let outcome = TrainOutcome {
            model_path: store.uri(Area::Artifacts, &run_key(&run_id, MODEL_FILE)),
            run_id,
            sidecar,
        };
        Ok::<_, PipelineError>((outcome, metrics))
    };
    let rows = |(_, m): &(TrainOutcome, RunMetrics)| m.model.hourly.rows as u64;
    step("evaluate", rows, work).await
}

const INTENDED_USE: &str = "Hourly screening of adult ICU patients for sepsis in the next 12 \
    hours, as a prompt for clinical review. Not a diagnosis, and not for use on its own to \
    start or withhold treatment.";

const LIMITATIONS: [&str; 4] = [
    "Trained and measured on patients of one data source; performance at another hospital is \
     unknown until measured there with `sepsis evaluate --data`.",
    "The labels follow the PhysioNet 2019 Sepsis-3 definition, which is derived from charted \
     data and misses or misdates some cases.",
    "Mental status, lactate trends outside the record and treatments are not inputs, so the \
     bedside scores are partial.",
    "Patients who are septic at their first recorded hour cannot be warned in advance.",
];

/// Loads the patient groups of a trained run from its feature version. The
/// run's own split is used, so evaluation never scores training patients
/// even when the configured seed or fraction has changed since.
pub async fn run_data(
    ctx: &Context,
    sidecar: &ModelSidecar,
) -> Result<TrainingData, PipelineError> {
    let manifest = feature_store::resolve_version(
        &ctx.store,
        Some(&sidecar.feature_version),
        &sidecar.data_digest,
    )
    .await?;
    load_data(ctx, &manifest, &sidecar.split).await
}

/// Re-evaluates a stored run (the newest by default) on its validation patients.
pub async fn run_evaluate_stored(
    ctx: &Context,
    run_id: Option<&str>,
) -> Result<(String, Evaluation), PipelineError> {
    let run_id = match run_id {
        Some(id) => id.to_string(),
        None => newest_run(&ctx.store).await?,
    };
    let model = ScoringModel::load(&ctx.store, &run_id).await?;
    let evaluation = evaluate_model(ctx, model).await?;
    Ok((run_id, evaluation))
}

/// Measures a model on the validation patients of its own run, with its
/// own alert rule.
async fn evaluate_model(ctx: &Context, model: ScoringModel) -> Result<Evaluation, PipelineError> {
    let scored = score_validation(ctx, model, true).await?;
    Ok(scored.evaluation)
}

/// A model's probabilities on its run's validation patients, and their
/// evaluation.
struct ValidationScores {
    cohort: Cohort,
    probabilities: Vec<f64>,
    rule: AlertRule,
    evaluation: Evaluation,
}

/// With `intervals` false the evaluation has no intervals, which the gate
/// does not need.
async fn score_validation(
    ctx: &Context,
    model: ScoringModel,
    intervals: bool,
) -> Result<ValidationScores, PipelineError> {
    let data = run_data(ctx, &model.sidecar).await?;
    // The gate scores two models in turn, so the span names the run of each.
    let span = tracing::info_span!("score_validation", run_id = %model.sidecar.run_id);
    let work = async {
        let scored = tokio::task::spawn_blocking(move || {
            let cohort = Cohort::of(&data.validation);
            let raw = model.trees.predict(&data.validation.matrix)?;
            let scores = model.finish(&raw, &cohort.hours, &cohort.patients);
            let rule = model.card.policy.rule;
            let evaluation = if intervals {
                crate::interval::evaluate_with_intervals(&cohort, &scores.probability, rule)
            } else {
                crate::evaluate::evaluate(&cohort, &scores.probability, rule, true)
            };
            Ok::<_, TrainError>(ValidationScores {
                cohort,
                probabilities: scores.probability,
                rule,
                evaluation,
            })
        })
        .await
        .expect("the evaluation thread does not panic")?;
        Ok::<_, PipelineError>(scored)
    };
    step(
        "evaluate",
        |s: &ValidationScores| s.evaluation.hourly.rows as u64,
        work,
    )
    .instrument(span)
    .await
}

/// The files of a run folder that a registry version keeps.
const VERSION_FILES: [&str; 6] = [
    MODEL_FILE,
    scoring::SIDECAR_FILE,
    scoring::CARD_FILE,
    scoring::CARD_MARKDOWN_FILE,
    CLOCK_MODEL_FILE,
    METRICS_FILE,
];

/// Registers a trained run as the next version of the configured model.
pub async fn register_run(ctx: &Context, run_id: &str) -> Result<VersionRecord, PipelineError> {
    let run_missing = || PipelineError::Run {
        location: ctx.store.uri(Area::Artifacts, &run_key(run_id, "")),
        message: "no complete run with this id; `sepsis train` makes one".into(),
    };
    if !scoring::is_run_id(run_id)
        || !ctx
            .store
            .exists(Area::Artifacts, &run_key(run_id, MODEL_FILE))
            .await?
    {
        return Err(run_missing());
    }
    let mut files = Vec::with_capacity(VERSION_FILES.len() + 1);
    for file in VERSION_FILES {
        let bytes = ctx
            .store
            .get(Area::Artifacts, &run_key(run_id, file))
            .await?;
        files.push((file, bytes));
    }
    let sidecar: ModelSidecar =
        serde_json::from_slice(&files[1].1).map_err(|e| PipelineError::Run {
            location: ctx
                .store
                .uri(Area::Artifacts, &run_key(run_id, scoring::SIDECAR_FILE)),
            message: format!("invalid model sidecar: {e}"),
        })?;
    let metrics: RunMetrics =
        serde_json::from_slice(&files[5].1).map_err(|e| PipelineError::Run {
            location: ctx
                .store
                .uri(Area::Artifacts, &run_key(run_id, METRICS_FILE)),
            message: format!("invalid metrics: {e}"),
        })?;
    if sidecar.schema_digest != ctx.schema.digest {
        return Err(PipelineError::Run {
            location: ctx.store.uri(Area::Artifacts, &run_key(run_id, "")),
            message: "the run was trained with another schema than the configured one, \
                      so its transformer cannot be recorded"
                .into(),
        });
    }
    files.push((TRANSFORMER_FILE, to_json(&ctx.schema)));
    // Runs trained before drift monitoring have no reference; their
    // versions are served without drift gauges.
    let drift_key = run_key(run_id, DRIFT_REFERENCE_FILE);
    if ctx.store.exists(Area::Artifacts, &drift_key).await? {
        let bytes = ctx.store.get(Area::Artifacts, &drift_key).await?;
        files.push((DRIFT_REFERENCE_FILE, bytes));
    }

    let mut summary = std::collections::BTreeMap::new();
    for metric in GateMetric::ALL {
        summary.insert(
            metric.name().to_string(),
            gate::measure(&metrics.model, metric),
        );
    }
    summary.insert(
        "alerts_per_patient_day".into(),
        metrics.model.burden.alerts_per_patient_day,
    );
    summary.insert(
        "expected_calibration_error".into(),
        metrics.model.calibration.as_ref().map(|c| c.ece),
    );
    let record = VersionRecord {
        model_name: String::new(),
        version: 0,
        run_id: run_id.to_string(),
        created_at: chrono::Utc::now().to_rfc3339(),
        git_commit: ctx.git_commit.clone(),
        data_digest: sidecar.data_digest.clone(),
        feature_version: sidecar.feature_version.clone(),
        feature_set_version: sidecar.feature_set_version.clone(),
        schema_digest: sidecar.schema_digest.clone(),
        metrics: summary,
        files: Vec::new(),
    };
    let registry = ctx.registry();
    Ok(registry.create_version(record, &files).await?)
}

/// Runs the gate on a registered version: measures production on the
/// candidate's validation patients, decides, moves the production pointer
/// if the candidate wins, and writes the decision to the run folder.
pub async fn run_gate(
    ctx: &Context,
    candidate: &VersionRecord,
    evaluation: &Evaluation,
) -> Result<GateDecision, PipelineError> {
    let registry = ctx.registry();
    let current = registry.production().await?;
    let production = match &current {
        None => gate::Production::None,
        Some(pointer) => {
            measure_production(ctx, &registry, pointer.version, candidate, evaluation).await?
        }
    };
    let config = &ctx.config.registry.gate;
    let mut decision = gate::decide(
        config,
        registry.model_name(),
        candidate.version,
        evaluation,
        &production,
    );
    if decision.promoted {
        let reason = decision.reasons.join("; ");
        let expected = current.as_ref().map(|p| p.version);
        match registry.promote(candidate.version, expected, &reason).await {
            Ok(_) => {}
            Err(error @ RegistryError::Conflict { .. }) => {
                decision.promoted = false;
                decision.reasons.push(error.to_string());
            }
            Err(error) => return Err(error.into()),
        }
    }
    tracing::info!(
        model = registry.model_name(),
        candidate_version = decision.candidate_version,
        production_version = decision.production_version,
        metric = %decision.metric,
        candidate_value = decision.candidate_value,
        production_value = decision.production_value,
        promoted = decision.promoted,
        "gate decided"
    );
    for reason in &decision.reasons {
        tracing::info!(reason = reason.as_str(), "gate reason");
    }
    ctx.store
        .put(
            Area::Artifacts,
            &run_key(&candidate.run_id, GATE_FILE),
            to_json(&decision),
        )
        .await?;
    Ok(decision)
}

/// Measures production on the candidate's validation patients, or returns
/// the reason it cannot be measured there.
async fn measure_production(
    ctx: &Context,
    registry: &Registry,
    version: u32,
    candidate: &VersionRecord,
    candidate_evaluation: &Evaluation,
) -> Result<gate::Production, PipelineError> {
    let incomparable = |reason: String| Ok(gate::Production::Incomparable { version, reason });
    let record = registry.version(version).await?;
    if record.data_digest != candidate.data_digest {
        return incomparable(format!(
            "production was validated on data {} and the candidate on data {}, so they \
             would not be measured on the same patients",
            short(&record.data_digest),
            short(&candidate.data_digest)
        ));
    }
    let model = ScoringModel::load_version(registry, version).await?;
    let candidate_sidecar = ctx
        .store
        .get(
            Area::Artifacts,
            &run_key(&candidate.run_id, scoring::SIDECAR_FILE),
        )
        .await?;
    let candidate_sidecar: ModelSidecar =
        serde_json::from_slice(&candidate_sidecar).map_err(|e| PipelineError::Run {
            location: ctx.store.uri(
                Area::Artifacts,
                &run_key(&candidate.run_id, scoring::SIDECAR_FILE),
            ),
            message: format!("invalid model sidecar: {e}"),
        })?;
    // The validation patients depend on the seed and the validation fraction
    // alone. The calibration fraction and the folds divide the other patients.
    if model.sidecar.split.split != candidate_sidecar.split.split {
        return incomparable(
            "production and the candidate split the patients differently (split seed or \
             validation fraction), so their validation patients differ"
                .into(),
        );
    }
    let production = score_validation(ctx, model, false).await?;
    let gain = match paired_gain(ctx, candidate, &production, candidate_evaluation).await {
        Ok(gain) => gain,
        Err(error) => {
            // The interval only informs the decision, so a failure to
            // compute it does not stop the gate.
            tracing::warn!(run_id = %candidate.run_id, error = %error, "the gate's gain interval failed");
            Err(format!("scoring the candidate again failed: {error}"))
        }
    };
    Ok(gate::Production::Measured {
        version,
        evaluation: Box::new(production.evaluation),
        gain,
    })
}

/// Scores the candidate again on the validation rows and computes the
/// paired interval of its gain over production. The candidate's rows may
/// come from another feature version of the same data, so they must match
/// production's rows, and its measure must equal the one the gate compares.
async fn paired_gain(
    ctx: &Context,
    candidate: &VersionRecord,
    production: &ValidationScores,
    candidate_evaluation: &Evaluation,
) -> Result<Result<Interval, String>, PipelineError> {
    let model = ScoringModel::load(&ctx.store, &candidate.run_id).await?;
    let rescored = score_validation(ctx, model, false).await?;
    let metric = ctx.config.registry.gate.metric;
    let same_rows = rescored.cohort.patients == production.cohort.patients
        && rescored.cohort.hours == production.cohort.hours
        && rescored.cohort.outcome == production.cohort.outcome;
    if !same_rows {
        return Ok(Err("the two models' validation rows differ".into()));
    }
    let expected = gate::measure(candidate_evaluation, metric);
    if gate::measure(&rescored.evaluation, metric) != expected {
        return Ok(Err(format!(
            "the candidate's {metric} scored again differs from its measured value"
        )));
    }
    Ok(crate::interval::paired_gain(
        &production.cohort,
        (&rescored.probabilities, rescored.rule),
        (&production.probabilities, production.rule),
        metric,
    )
    .ok_or_else(|| {
        format!(
            "it needs at least {} validation patients, {} of them septic",
            crate::interval::MIN_PATIENTS,
            crate::interval::MIN_SEPTIC_PATIENTS
        )
    }))
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// Finds the id of the newest complete run.
pub async fn newest_run(store: &Store) -> Result<String, PipelineError> {
    let objects = store.list(Area::Artifacts, "runs/").await?;
    objects
        .iter()
        .filter_map(|o| {
            o.key
                .strip_prefix("runs/")?
                .strip_suffix(&format!("/{MODEL_FILE}"))
        })
        .max()
        .map(str::to_string)
        .ok_or_else(|| PipelineError::Run {
            location: store.uri(Area::Artifacts, "runs/"),
            message: "no trained model; run `sepsis train` first".into(),
        })
}

fn to_json<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(value).expect("value serialises"))
}

/// The result of a whole pipeline run, printed by `sepsis pipeline --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineOutcome {
    pub run_id: String,
    pub data_digest: String,
    pub feature_version: String,
    pub feature_reused: bool,
    pub model_path: String,
    pub report_path: String,
    pub metrics: RunMetrics,
    pub rows: u64,
    pub patients: u64,
    pub fit_patients: usize,
    pub calibration_patients: usize,
    pub validation_patients: usize,
    /// The cross-fitting folds, or 1 when the model was not cross-fitted.
    pub folds: u32,
    /// The registry version the run became.
    pub registry_version: u32,
    pub gate: GateDecision,
}

/// Runs every step on `input`, registers the model and ends with the gate.
pub async fn run_pipeline(ctx: &Context, input: &Path) -> Result<PipelineOutcome, PipelineError> {
    let (imported, _) = run_import_and_ingest(ctx, input).await?;
    failpoint::check("pipeline.after-ingest")?;
    let (_, features, feature_reused) = run_validate_and_transform(ctx, &imported.digest).await?;
    failpoint::check("pipeline.after-transform")?;
    let (trained, metrics) = run_train(ctx, Some(&features.version)).await?;
    failpoint::check("pipeline.after-train")?;
    let version = register_run(ctx, &trained.run_id).await?;
    failpoint::check("pipeline.after-register")?;
    let gate = run_gate(ctx, &version, &metrics.model).await?;
    Ok(PipelineOutcome {
        registry_version: version.version,
        gate,
        report_path: ctx
            .store
            .uri(Area::Artifacts, &run_key(&trained.run_id, REPORT_FILE)),
        run_id: trained.run_id,
        data_digest: imported.digest,
        feature_version: features.version,
        feature_reused,
        model_path: trained.model_path,
        metrics,
        rows: imported.rows,
        patients: imported.patients,
        fit_patients: trained.sidecar.fit_patients,
        calibration_patients: trained.sidecar.calibration_patients,
        validation_patients: trained.sidecar.validation_patients,
        folds: trained.sidecar.split.folds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_message_drops_patient_data() {
        let error = PipelineError::Import(ImportError::Value {
            file: "/data/setA/p000123.psv".into(),
            line: 4,
            column: "HR".into(),
            message: "invalid number \"abc\"".into(),
        });
        let message = error.tracking_message();
        assert!(message.contains("line 4"), "{message}");
        assert!(message.contains("\"HR\""), "{message}");
        assert!(message.contains("/data/setA"), "{message}");
        assert!(!message.contains("p000123"), "{message}");
        assert!(!message.contains("abc"), "{message}");
    }
}
