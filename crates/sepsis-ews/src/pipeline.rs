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

use crate::config::{Config, SplitConfig};
use crate::evaluate::{self, Metrics};
use crate::feature_store::{self, FeatureManifest, FeatureStoreError};
use crate::import::{self, ImportError, ImportManifest};
use crate::ingest::{self, IngestError, SnapshotManifest};
use crate::progress::SharedProgress;
use crate::schema::{Schema, SchemaError};
use crate::storage::{Area, StorageError, Store};
use crate::train::{self, ModelSidecar, TrainError, TrainingData};
use crate::validate::{self, ValidateError, ValidationReport};

pub const MODEL_FILE: &str = "model.txt";
pub const SIDECAR_FILE: &str = "model.json";
pub const METRICS_FILE: &str = "metrics.json";
pub const CONFIG_FILE: &str = "config.json";

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
    #[error("{location}: {message}")]
    Run { location: String, message: String },
}

/// The shared state of every step: configuration, schema, store and progress sink.
#[derive(Clone)]
pub struct Context {
    pub config: Config,
    pub schema: Schema,
    pub store: Store,
    pub progress: SharedProgress,
}

impl Context {
    /// Opens the schema and the store that the configuration names.
    pub fn open(config: Config, progress: SharedProgress) -> Result<Context, PipelineError> {
        let schema = match config.schema_path() {
            Some(path) => Schema::load(path)?,
            None => Schema::embedded(),
        };
        let store = Store::open(&config.storage, &config.layout)?;
        Ok(Context {
            config,
            schema,
            store,
            progress,
        })
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
    let work = feature_store::transform(&ctx.store, &ctx.schema, ctx.progress.clone());
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
    let reusable = feature_store::find_reusable(&ctx.store, &ctx.schema, data_digest).await?;
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
        feature_store::store_version(&ctx.store, &ctx.schema, data_digest, table).await
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

/// Loads the feature version and builds the matrices.
async fn load_data(
    ctx: &Context,
    manifest: &FeatureManifest,
    split: &SplitConfig,
) -> Result<TrainingData, PipelineError> {
    let bytes = feature_store::read_features(&ctx.store, manifest).await?;
    let location = ctx.store.uri(
        Area::FeatureStore,
        &format!("{}/{}", manifest.version, feature_store::FEATURES_FILE),
    );
    let manifest = manifest.clone();
    let split = split.clone();
    let data = tokio::task::spawn_blocking(move || {
        train::load_training_data(bytes, &location, &manifest, &split)
    })
    .await
    .expect("the loading thread does not panic")?;
    Ok(data)
}

/// Trains on a feature version (the newest of the imported data by default)
/// and saves the model with its sidecar. Returns the data for evaluation.
pub async fn run_train(
    ctx: &Context,
    feature_version: Option<&str>,
) -> Result<(TrainOutcome, TrainingData, String), PipelineError> {
    let imported = import::read_manifest(&ctx.store).await?;
    if feature_version.is_none() {
        validate::require_passed(&ctx.store, &ctx.schema, &imported.digest).await?;
    }
    let manifest =
        feature_store::resolve_version(&ctx.store, feature_version, &imported.digest).await?;
    if manifest.schema_digest != ctx.schema.digest {
        return Err(PipelineError::Run {
            location: ctx.store.uri(Area::FeatureStore, &manifest.version),
            message: "the feature version was computed with another schema; run `sepsis \
                      transform` again"
                .into(),
        });
    }
    let work = async {
        let loading = Instant::now();
        let mut data = load_data(ctx, &manifest, &ctx.config.split).await?;
        let train_rows = data.train.rows();
        tracing::info!(
            train_rows,
            validation_rows = data.validation.matrix.rows(),
            elapsed_ms = loading.elapsed().as_millis() as u64,
            "training data loaded"
        );
        ctx.progress.begin("train", None);
        let train_matrix = std::mem::take(&mut data.train);
        let training = ctx.config.training.clone();
        let names = manifest.feature_names.clone();
        let trained = tokio::task::spawn_blocking(move || {
            train::train_model(train_matrix, &training, &names)
        })
        .await
        .expect("the training thread does not panic");
        ctx.progress.end();
        let (model_text, params) = trained?;

        let run_id = new_run_id();
        let sidecar = ModelSidecar {
            run_id: run_id.clone(),
            format: "lightgbm-text".into(),
            feature_names: manifest.feature_names.clone(),
            feature_version: manifest.version.clone(),
            feature_set_version: manifest.feature_set_version.clone(),
            data_digest: manifest.input_digest.clone(),
            schema_digest: manifest.schema_digest.clone(),
            params,
            split: ctx.config.split.clone(),
            train_rows,
            train_patients: data.train_patients,
            validation_rows: data.validation.matrix.rows(),
            validation_patients: data.validation.patients.len(),
            created_at: chrono::Utc::now().to_rfc3339(),
        };
        let store = &ctx.store;
        store
            .put(
                Area::Artifacts,
                &run_key(&run_id, CONFIG_FILE),
                to_json(&ctx.config),
            )
            .await?;
        store
            .put(
                Area::Artifacts,
                &run_key(&run_id, SIDECAR_FILE),
                to_json(&sidecar),
            )
            .await?;
        store
            .put(
                Area::Artifacts,
                &run_key(&run_id, MODEL_FILE),
                Bytes::from(model_text.clone()),
            )
            .await?;
        let outcome = TrainOutcome {
            model_path: store.uri(Area::Artifacts, &run_key(&run_id, MODEL_FILE)),
            run_id,
            sidecar,
        };
        Ok::<_, PipelineError>((outcome, data, model_text))
    };
    let rows = |(o, _, _): &(TrainOutcome, TrainingData, String)| o.sidecar.train_rows as u64;
    step("train", rows, work).await
}

/// Scores the validation side and stores `metrics.json` with the run.
pub async fn run_evaluate_trained(
    ctx: &Context,
    run_id: &str,
    data: TrainingData,
    model_text: String,
) -> Result<Metrics, PipelineError> {
    let threshold = ctx.config.evaluation.threshold;
    let work = async {
        let (metrics, _data) = tokio::task::spawn_blocking(move || {
            let validation = &data.validation;
            let probabilities = train::predict(&model_text, &validation.matrix);
            let metrics = probabilities.map(|p| evaluate::evaluate(validation, &p, threshold));
            (metrics, data)
        })
        .await
        .expect("the evaluation thread does not panic");
        let metrics = metrics?;
        ctx.store
            .put(
                Area::Artifacts,
                &run_key(run_id, METRICS_FILE),
                to_json(&metrics),
            )
            .await?;
        Ok::<_, PipelineError>(metrics)
    };
    step("evaluate", |m: &Metrics| m.rows as u64, work).await
}

/// Re-evaluates a stored run (the newest by default) on its validation side.
pub async fn run_evaluate_stored(
    ctx: &Context,
    run_id: Option<&str>,
) -> Result<(String, Metrics), PipelineError> {
    let run_id = match run_id {
        Some(id) => id.to_string(),
        None => newest_run(&ctx.store).await?,
    };
    let sidecar_key = run_key(&run_id, SIDECAR_FILE);
    let sidecar_bytes = ctx.store.get(Area::Artifacts, &sidecar_key).await?;
    let sidecar: ModelSidecar =
        serde_json::from_slice(&sidecar_bytes).map_err(|e| PipelineError::Run {
            location: ctx.store.uri(Area::Artifacts, &sidecar_key),
            message: format!("invalid model sidecar: {e}"),
        })?;
    let model_key = run_key(&run_id, MODEL_FILE);
    let model_bytes = ctx.store.get(Area::Artifacts, &model_key).await?;
    let model_text = String::from_utf8(model_bytes.to_vec()).map_err(|_| PipelineError::Run {
        location: ctx.store.uri(Area::Artifacts, &model_key),
        message: "the model file is not UTF-8 text".into(),
    })?;
    let manifest = feature_store::resolve_version(
        &ctx.store,
        Some(&sidecar.feature_version),
        &sidecar.data_digest,
    )
    .await?;
    // The run's own split, so evaluation never scores training patients even
    // when the configured seed or fraction has changed since.
    let data = load_data(ctx, &manifest, &sidecar.split).await?;
    let metrics = run_evaluate_trained(ctx, &run_id, data, model_text).await?;
    Ok((run_id, metrics))
}

async fn newest_run(store: &Store) -> Result<String, PipelineError> {
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
    pub metrics: Metrics,
    pub rows: u64,
    pub patients: u64,
    pub train_patients: usize,
    pub validation_patients: usize,
}

/// Runs every step on `input`.
pub async fn run_pipeline(ctx: &Context, input: &Path) -> Result<PipelineOutcome, PipelineError> {
    let (imported, _) = run_import_and_ingest(ctx, input).await?;
    let (_, features, feature_reused) = run_validate_and_transform(ctx, &imported.digest).await?;
    let (trained, data, model_text) = run_train(ctx, Some(&features.version)).await?;
    let metrics = run_evaluate_trained(ctx, &trained.run_id, data, model_text).await?;
    Ok(PipelineOutcome {
        run_id: trained.run_id,
        data_digest: imported.digest,
        feature_version: features.version,
        feature_reused,
        model_path: trained.model_path,
        metrics,
        rows: imported.rows,
        patients: imported.patients,
        train_patients: trained.sidecar.train_patients,
        validation_patients: trained.sidecar.validation_patients,
    })
}
