//! Scoring hourly data with a trained model: `sepsis predict`, `sepsis
//! evaluate --data`, and the service.
//!
//! A model is a folder with `model.txt` (LightGBM's text format),
//! `model.json` (the feature definitions it was trained on) and
//! `model_card.json` (the calibration map and the alert threshold). Scoring
//! computes the features with [`FeatureSpec::compute`], the same code as
//! training, runs the trees with the crate's own evaluator, calibrates, and
//! alerts at the card's threshold.

use std::ops::Range;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float32Type, Float64Type, Int64Type};
use bytes::Bytes;

use crate::drift::{DriftReference, DRIFT_REFERENCE_FILE};
use crate::evaluate::Cohort;
use crate::features::{FeatureError, FeatureSpec};
use crate::import::ImportError;
use crate::ingest::IngestError;
use crate::model::{ModelError, TreeModel};
use crate::policy::ModelCard;
use crate::schema::Schema;
use crate::storage::{Area, StorageError, Store};
use crate::table::TableError;
use crate::train::ModelSidecar;
use crate::validate::ValidateError;

pub const MODEL_FILE: &str = "model.txt";
pub const SIDECAR_FILE: &str = "model.json";
pub const CARD_FILE: &str = "model_card.json";
pub const CARD_MARKDOWN_FILE: &str = "model_card.md";
pub const CLOCK_MODEL_FILE: &str = "clock_model.txt";

/// Checks that `text` can be a run id: letters, digits, '-', '_' and '.',
/// not starting with '.', so it names one folder under `artifacts/runs/`.
pub fn is_run_id(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with('.')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    #[error("{location}: {message}")]
    Model { location: String, message: String },
    #[error(
        "model {reference:?} not found: it is neither a model folder or file nor a run in {runs}"
    )]
    ModelNotFound { reference: String, runs: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error("the data failed validation with {count} error(s); first: {first}")]
    Invalid { count: usize, first: String },
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("computing features failed: {0}")]
    Features(#[from] FeatureError),
}

/// A model ready to score.
#[derive(Debug, Clone)]
pub struct ScoringModel {
    pub trees: TreeModel,
    /// The clock baseline stored beside the model, when the folder has one.
    pub clock: Option<TreeModel>,
    pub sidecar: ModelSidecar,
    pub card: ModelCard,
    /// The location the model was read from.
    pub location: String,
    /// The reference distributions for drift monitoring, loaded with a
    /// registry version that has them.
    pub drift: Option<DriftReference>,
}

/// The scores of a batch of rows.
#[derive(Debug, Default, Clone)]
pub struct Scores {
    pub probability: Vec<f64>,
    pub alert: Vec<bool>,
}

/// Scores with the features they came from, for evaluation.
pub struct ScoredBatch {
    pub scores: Scores,
    pub features: Vec<arrow::array::ArrayRef>,
    /// The clock baseline's calibrated probabilities, when the model has one.
    pub clock: Option<Vec<f64>>,
}

impl ScoringModel {
    /// Loads a model from a folder or a `model.txt` on the local disk, or
    /// from the run with that id in the store's `artifacts/runs/`.
    pub async fn load(store: &Store, reference: &str) -> Result<ScoringModel, ScoringError> {
        let path = Path::new(reference);
        if path.exists() {
            return ScoringModel::load_folder(path);
        }

        let key = |file: &str| format!("runs/{reference}/{file}");
        if !is_run_id(reference) || !store.exists(Area::Artifacts, &key(MODEL_FILE)).await? {
            return Err(ScoringError::ModelNotFound {
                reference: reference.to_string(),
                runs: store.uri(Area::Artifacts, "runs/"),
            });
        }

        let get = |file: &'static str| {
            let key = key(file);
            async move {
                let bytes = store.get(Area::Artifacts, &key).await?;
                Ok::<_, ScoringError>((store.uri(Area::Artifacts, &key), bytes))
            }
        };
        let has_clock = store
            .exists(Area::Artifacts, &key(CLOCK_MODEL_FILE))
            .await?;
        let clock = match has_clock {
            true => Some(get(CLOCK_MODEL_FILE).await?),
            false => None,
        };
        ScoringModel::assemble(
            get(MODEL_FILE).await?,
            get(SIDECAR_FILE).await?,
            get(CARD_FILE).await?,
            clock,
        )
    }

    /// Builds a model from its files, each with the location it was read from.
    fn assemble(
        (model_location, model): (String, Bytes),
        sidecar: (String, Bytes),
        card: (String, Bytes),
        clock: Option<(String, Bytes)>,
    ) -> Result<ScoringModel, ScoringError> {
        let mut model = ScoringModel::from_parts(model_location, model, sidecar, card)?;
        model.add_clock(clock)?;
        Ok(model)
    }

    /// Loads a version of the model registry, checking each file against
    /// the digest its version record holds.
    pub async fn load_version(
        registry: &crate::registry::Registry,
        version: u32,
    ) -> Result<ScoringModel, ScoringError> {
        let folder = registry.version_location(version);
        // One read of the version record serves every file's digest check.
        let record = registry.version(version).await?;
        let get = |file: &'static str| {
            let location = format!("{folder}/{file}");
            let record = &record;
            async move {
                let bytes = registry.read_checked(record, file).await?;
                Ok::<_, ScoringError>((location, bytes))
            }
        };
        let clock = match record.files.iter().any(|f| f.name == CLOCK_MODEL_FILE) {
            true => Some(get(CLOCK_MODEL_FILE).await?),
            false => None,
        };
        let mut model = ScoringModel::assemble(
            get(MODEL_FILE).await?,
            get(SIDECAR_FILE).await?,
            get(CARD_FILE).await?,
            clock,
        )?;
        if record.files.iter().any(|f| f.name == DRIFT_REFERENCE_FILE) {
            let (location, bytes) = get(DRIFT_REFERENCE_FILE).await?;
            let reference = DriftReference::from_json(&bytes).map_err(|e| ScoringError::Model {
                location,
                message: e.to_string(),
            })?;
            model.drift = Some(reference);
        }
        Ok(model)
    }

    /// Loads a model folder, or the folder of a `model.txt`, from the local disk.
    fn load_folder(path: &Path) -> Result<ScoringModel, ScoringError> {
        let (folder, model_path) = if path.is_dir() {
            (path, path.join(MODEL_FILE))
        } else {
            (path.parent().unwrap_or(Path::new(".")), path.to_path_buf())
        };
        let read = |file: &Path| {
            let location = file.display().to_string();
            match std::fs::read(file) {
                Ok(bytes) => Ok((location, Bytes::from(bytes))),
                Err(e) => Err(ScoringError::Model {
                    location,
                    message: format!(
                        "cannot read it ({e}); a model folder contains {MODEL_FILE}, \
                         {SIDECAR_FILE} and {CARD_FILE}, as in artifacts/runs/<run id>/"
                    ),
                }),
            }
        };

        let clock_path = folder.join(CLOCK_MODEL_FILE);
        let clock = match clock_path.exists() {
            true => Some(read(&clock_path)?),
            false => None,
        };
        ScoringModel::assemble(
            read(&model_path)?,
            read(&folder.join(SIDECAR_FILE))?,
            read(&folder.join(CARD_FILE))?,
            clock,
        )
    }

    /// Adds the clock baseline when its file exists and the card describes it.
    fn add_clock(&mut self, file: Option<(String, Bytes)>) -> Result<(), ScoringError> {
        let (Some((location, bytes)), Some(card)) = (file, &self.card.clock) else {
            return Ok(());
        };
        let invalid = |message: String| ScoringError::Model {
            location: location.clone(),
            message,
        };
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| invalid("the clock model file is not UTF-8 text".into()))?;
        let trees = TreeModel::parse(text).map_err(|e| invalid(e.to_string()))?;
        let known = card
            .feature_names
            .iter()
            .all(|name| self.sidecar.features.feature_names.contains(name));
        if trees.feature_names() != card.feature_names.as_slice() || !known {
            return Err(invalid(
                "the clock model's inputs differ from those its model card names".into(),
            ));
        }
        self.clock = Some(trees);
        Ok(())
    }

    fn from_parts(
        location: String,
        model: Bytes,
        (sidecar_location, sidecar): (String, Bytes),
        (card_location, card): (String, Bytes),
    ) -> Result<ScoringModel, ScoringError> {
        let invalid = |location: &str, message: String| ScoringError::Model {
            location: location.to_string(),
            message,
        };
        let text = std::str::from_utf8(&model)
            .map_err(|_| invalid(&location, "the model file is not UTF-8 text".into()))?;
        let trees =
            TreeModel::parse(text).map_err(|e: ModelError| invalid(&location, e.to_string()))?;
        let sidecar: ModelSidecar = serde_json::from_slice(&sidecar)
            .map_err(|e| invalid(&sidecar_location, format!("invalid model sidecar: {e}")))?;
        let card: ModelCard = serde_json::from_slice(&card)
            .map_err(|e| invalid(&card_location, format!("invalid model card: {e}")))?;
        if trees.feature_names() != sidecar.features.feature_names.as_slice() {
            return Err(invalid(
                &location,
                format!(
                    "the model's {} input features differ from the {} features its sidecar defines",
                    trees.feature_names().len(),
                    sidecar.features.feature_names.len()
                ),
            ));
        }
        Ok(ScoringModel {
            trees,
            clock: None,
            sidecar,
            card,
            location,
            drift: None,
        })
    }

    pub fn spec(&self) -> &FeatureSpec {
        &self.sidecar.features
    }

    /// Turns the raw model output of whole stays into calibrated
    /// probabilities and alerts; `patients` are the rows of each stay.
    pub fn finish(&self, raw: &[f64], hours: &[f64], patients: &[Range<usize>]) -> Scores {
        let probability: Vec<f64> = raw
            .iter()
            .map(|r| self.card.calibration.apply(*r))
            .collect();
        let alert = self.card.policy.rule.states(hours, patients, &probability);
        Scores { probability, alert }
    }

    /// Scores hourly rows holding whole patient histories.
    pub fn score(&self, batch: &RecordBatch) -> Result<Scores, ScoringError> {
        Ok(self.score_with_features(batch)?.scores)
    }

    /// Scores rows like [`ScoringModel::score`] and keeps their features.
    pub fn score_with_features(&self, batch: &RecordBatch) -> Result<ScoredBatch, ScoringError> {
        self.score_features(batch, true)
    }

    /// Scores rows and keeps their features, and runs the clock baseline
    /// too when `with_clock` is set.
    fn score_features(
        &self,
        batch: &RecordBatch,
        with_clock: bool,
    ) -> Result<ScoredBatch, ScoringError> {
        let columns = self.spec().compute(batch)?;
        let values: Vec<&[f32]> = columns
            .iter()
            .map(|c| c.as_primitive::<Float32Type>().values().as_ref())
            .collect();
        let mut raw = vec![0.0; batch.num_rows()];
        self.trees.predict_columns(&values, &mut raw);
        let (hours, patients) = crate::features::patient_rows(batch, self.spec())?;
        let clock = match with_clock {
            true => self.score_clock(&values, batch.num_rows()),
            false => None,
        };
        Ok(ScoredBatch {
            scores: self.finish(&raw, &hours, &patients),
            features: columns,
            clock,
        })
    }

    /// Runs the clock baseline on its columns of the computed features.
    fn score_clock(&self, values: &[&[f32]], rows: usize) -> Option<Vec<f64>> {
        let (trees, card) = (self.clock.as_ref()?, self.card.clock.as_ref()?);
        let names = &self.spec().feature_names;
        let columns: Vec<&[f32]> = card
            .feature_names
            .iter()
            .map(|name| names.iter().position(|n| n == name).map(|i| values[i]))
            .collect::<Option<_>>()?;
        let mut raw = vec![0.0; rows];
        trees.predict_columns(&columns, &mut raw);
        Some(raw.into_iter().map(|r| card.calibration.apply(r)).collect())
    }
}

/// A scored input file.
#[derive(Debug, Default, Clone)]
pub struct ScoredData {
    pub patient_ids: Vec<String>,
    pub scores: Scores,
    /// The rows' hours, labels and outcomes. A file scored without labels
    /// gets label 0 in every row, so only `sepsis evaluate`, which requires
    /// labels, reads them.
    pub cohort: Cohort,
    /// The bedside-score baselines of each row, by name; empty unless the
    /// data was scored for [`Purpose::Evaluate`].
    pub baseline_scores: Vec<(String, Vec<f64>)>,
    /// The clock baseline's probability of each row, when the model has one
    /// and the data was scored for [`Purpose::Evaluate`].
    pub clock_probabilities: Option<Vec<f64>>,
    /// Each patient's ICU unit and age; empty unless the data was scored for
    /// [`Purpose::Evaluate`].
    pub groups: crate::assess::PatientGroups,
}

/// What a file is scored for, which decides what [`score_file`] requires of
/// it and collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Predictions alone, as `sepsis predict` writes: rows need no label.
    Predict,
    /// Evaluation, as `sepsis evaluate --data` does: every row needs a label,
    /// and the baselines and patient groups are collected too.
    Evaluate,
}

/// Imports, validates and scores a data file of any format that `sepsis data
/// import` reads. The rows stay in memory, so the configured store's data is
/// left alone.
pub async fn score_file(
    schema: &Schema,
    input: &Path,
    model: &ScoringModel,
    purpose: Purpose,
) -> Result<ScoredData, ScoringError> {
    let schema = schema.for_scoring(purpose == Purpose::Evaluate);
    let model = model.clone();
    let input = input.to_path_buf();
    tokio::task::spawn_blocking(move || score_file_blocking(&schema, &input, &model, purpose))
        .await
        .expect("the scoring thread does not panic")
}

fn score_file_blocking(
    schema: &Schema,
    input: &Path,
    model: &ScoringModel,
    purpose: Purpose,
) -> Result<ScoredData, ScoringError> {
    let started = std::time::Instant::now();
    // The import hands over whole-patient batches as it reads them.
    // Validation checks them in row order and scoring scores them on all
    // cores at the same time. Scoring's result is used only when the
    // validation passed: rows that fail validation make scoring return an
    // error or wrong scores, both discarded. Scoring reads a null as NaN or
    // empty text, so such rows do not make it panic.
    let (to_validation, validation_input) = std::sync::mpsc::channel();
    let (to_scoring, scoring_input) = std::sync::mpsc::channel();
    let (imported, validated, scored) = std::thread::scope(|scope| {
        let importing = scope.spawn(move || {
            let imported = crate::import::import_to_batches(
                schema,
                input,
                TASK_ROWS,
                &mut |batch: RecordBatch| {
                    // A closed channel means its reader stopped early and
                    // reports its own error.
                    let _ = to_validation.send(batch.clone());
                    let _ = to_scoring.send(batch);
                },
            );
            if let Ok(counts) = &imported {
                tracing::info!(
                    rows = counts.rows,
                    patients = counts.patients,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "data imported"
                );
            }
            imported
        });
        let validating = scope.spawn(move || {
            crate::validate::validate_in_memory(schema, validation_input.into_iter())
        });
        let scored = score_batches(schema, scoring_input, model, purpose);
        let imported = importing.join().expect("the import thread does not panic");
        let validated = validating
            .join()
            .expect("the validation thread does not panic");
        (imported, validated, scored)
    });
    // An import error comes first: validation and scoring then saw only
    // part of the data.
    let imported = imported?;
    match validated.and_then(|report| crate::validate::require_valid(report, &imported.line_map)) {
        Ok(_) => {}
        Err(ValidateError::Failed { count, first, .. }) => {
            return Err(ScoringError::Invalid { count, first })
        }
        Err(error) => return Err(error.into()),
    }
    let scored = scored?;
    tracing::info!(
        rows = scored.patient_ids.len(),
        patients = scored.cohort.patients.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "data scored"
    );
    Ok(scored)
}

/// Imports and parses a data file into a new store in memory. Returns the
/// store, the data digest and the Parquet snapshot.
pub async fn import_to_memory(
    schema: &Schema,
    input: &Path,
) -> Result<(Store, String, Bytes), ScoringError> {
    let store = Store::in_memory();
    let progress = crate::progress::silent();
    let imported = crate::import::import(&store, schema, input, progress.clone()).await?;
    crate::ingest::ingest(&store, schema, progress).await?;
    let snapshot = crate::ingest::read_snapshot(&store, schema, &imported.digest).await?;
    Ok((store, imported.digest, snapshot))
}

/// Rows per scoring task: whole patients, cut after about this many rows. A
/// task's feature columns (457 float32 columns with the default
/// configuration, about 7 MiB) then stay in the shared cache while the trees
/// read them.
const TASK_ROWS: usize = 4096;

/// Scores batches of whole patients as they arrive on `tasks`, one task
/// each, spread over all cores, and collects the results in row order.
/// Returns the first error in row order.
fn score_batches(
    schema: &Schema,
    tasks: std::sync::mpsc::Receiver<RecordBatch>,
    model: &ScoringModel,
    purpose: Purpose,
) -> Result<ScoredData, ScoringError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    // The next task and its index in row order.
    let source = Mutex::new((tasks, 0usize));
    let results: Mutex<Vec<Option<Result<ScoredData, ScoringError>>>> = Mutex::new(Vec::new());
    // Tasks after the first failed one are not needed: the first error in
    // row order is returned, and no later task can precede it.
    let first_failure = AtomicUsize::new(usize::MAX);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let (index, task) = {
                    let mut source = source.lock().expect("no scoring thread panics");
                    let Ok(task) = source.0.recv() else {
                        break;
                    };
                    source.1 += 1;
                    (source.1 - 1, task)
                };
                if index > first_failure.load(Ordering::Relaxed) {
                    break;
                }
                let result = score_task(schema, &task, model, purpose);
                if result.is_err() {
                    first_failure.fetch_min(index, Ordering::Relaxed);
                }
                let mut results = results.lock().expect("no scoring thread panics");
                if results.len() <= index {
                    results.resize_with(index + 1, || None);
                }
                results[index] = Some(result);
            });
        }
    });

    let results = results.into_inner().expect("no scoring thread panics");
    let mut scored = ScoredData::default();
    for result in results {
        let Some(result) = result else {
            break;
        };
        scored.append(result?);
    }
    // Patients without any positive outcome get it from their labels, as
    // training does.
    let cohort = &mut scored.cohort;
    let labels = &cohort.labels;
    crate::train::fill_missing_outcomes(|row| labels[row], &mut cohort.outcome, &cohort.patients);
    Ok(scored)
}

/// Scores one batch of whole patients.
fn score_task(
    schema: &Schema,
    batch: &RecordBatch,
    model: &ScoringModel,
    purpose: Purpose,
) -> Result<ScoredData, ScoringError> {
    let evaluate = purpose == Purpose::Evaluate;
    let mut scored = ScoredData::default();
    let ScoredBatch {
        scores,
        features,
        clock,
    } = model.score_features(batch, evaluate)?;
    scored.clock_probabilities = clock;
    if evaluate {
        collect_evaluation_inputs(model.spec(), &features, &mut scored);
    }

    let ids = batch
        .column_by_name(&schema.id_column)
        .expect("the snapshot has the id column")
        .as_string::<i32>();
    let hours = batch
        .column_by_name(&schema.time_column)
        .expect("the snapshot has the time column")
        .as_primitive::<Float64Type>();
    let labels = batch
        .column_by_name(&schema.label_column)
        .expect("the snapshot has the label column")
        .as_primitive::<Int64Type>();
    let outcomes = schema
        .outcome_column
        .as_ref()
        .and_then(|name| batch.column_by_name(name))
        .map(|c| c.as_primitive::<Int64Type>().clone());
    let cohort = &mut scored.cohort;
    for row in 0..batch.num_rows() {
        let id = ids.value(row);
        let new_patient = scored.patient_ids.last().map(String::as_str) != Some(id);
        if new_patient && evaluate {
            let feature = |index: usize| features[index].as_primitive::<Float32Type>().value(row);
            scored.groups.push(model.spec(), feature);
        }
        cohort
            .labels
            .push(!labels.is_null(row) && labels.value(row) == 1);
        let outcome = outcomes
            .as_ref()
            .is_some_and(|o| !o.is_null(row) && o.value(row) == 1);
        cohort.outcome.push(outcome);
        cohort.hours.push(hours.value(row));
        let index = cohort.labels.len() - 1;
        match cohort.patients.last_mut() {
            Some(range) if !new_patient => range.end = index + 1,
            _ => cohort.patients.push(index..index + 1),
        }
        scored.patient_ids.push(id.to_string());
    }
    scored.scores = scores;
    Ok(scored)
}

impl ScoredData {
    /// Appends the rows of `other`, which follow this data's rows and start
    /// with a new patient.
    fn append(&mut self, other: ScoredData) {
        let offset = self.patient_ids.len();
        self.patient_ids.extend(other.patient_ids);
        self.scores.probability.extend(other.scores.probability);
        self.scores.alert.extend(other.scores.alert);
        let cohort = &mut self.cohort;
        cohort.labels.extend(other.cohort.labels);
        cohort.outcome.extend(other.cohort.outcome);
        cohort.hours.extend(other.cohort.hours);
        (cohort.patients).extend(
            (other.cohort.patients)
                .into_iter()
                .map(|range| range.start + offset..range.end + offset),
        );
        for (name, scores) in other.baseline_scores {
            match self.baseline_scores.iter_mut().find(|(n, _)| *n == name) {
                Some((_, existing)) => existing.extend(scores),
                None => self.baseline_scores.push((name, scores)),
            }
        }
        if let Some(clock) = other.clock_probabilities {
            (self.clock_probabilities.get_or_insert_with(Vec::new)).extend(clock);
        }
        self.groups.unit.extend(other.groups.unit);
        self.groups.age.extend(other.groups.age);
    }
}

/// Appends the bedside scores of a batch to the baselines.
fn collect_evaluation_inputs(
    spec: &FeatureSpec,
    features: &[arrow::array::ArrayRef],
    scored: &mut ScoredData,
) {
    for (name, _, _) in crate::assess::SCORE_BASELINES {
        let Some(index) = spec.feature_names.iter().position(|n| n == name) else {
            continue;
        };
        let values = features[index].as_primitive::<Float32Type>().values();
        match scored.baseline_scores.iter_mut().find(|(n, _)| n == name) {
            Some((_, scores)) => scores.extend(values.iter().map(|v| f64::from(*v))),
            None => scored.baseline_scores.push((
                name.to_string(),
                values.iter().map(|v| f64::from(*v)).collect(),
            )),
        }
    }
}

/// The measures of a model on a labelled data file, printed by `sepsis
/// evaluate --data`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DataEvaluation {
    pub model: String,
    pub run_id: String,
    pub data: String,
    pub rows: usize,
    pub patients: usize,
    /// The model at its card's threshold.
    pub evaluation: crate::evaluate::Evaluation,
    /// The clock baseline at its card's rule and the bedside scores at their
    /// usual thresholds, on the same rows.
    pub baselines: Vec<crate::policy::BaselineResult>,
    pub subgroups: Vec<crate::assess::SubgroupResult>,
}

/// Measures the scores of a labelled file, with the baselines and subgroups.
pub fn evaluate_scored(model: &ScoringModel, data: &ScoredData, source: &str) -> DataEvaluation {
    let cohort = &data.cohort;
    let rule = model.card.policy.rule;
    let probabilities = &data.scores.probability;
    let clock = match (&data.clock_probabilities, &model.card.clock) {
        (Some(probabilities), Some(card)) => Some(crate::policy::BaselineResult {
            name: "clock".into(),
            description: format!(
                "LightGBM on {} only, calibrated and thresholded like the model",
                card.feature_names.join(" and ")
            ),
            evaluation: crate::evaluate::evaluate(cohort, probabilities, card.policy.rule, true),
        }),
        _ => None,
    };
    let baselines = clock
        .into_iter()
        .chain(
            crate::assess::SCORE_BASELINES
                .iter()
                .filter_map(|(name, at, description)| {
                    let (_, scores) = data.baseline_scores.iter().find(|(n, _)| n == name)?;
                    Some(crate::policy::BaselineResult {
                        name: (*name).into(),
                        description: (*description).into(),
                        evaluation: crate::evaluate::evaluate(
                            cohort,
                            scores,
                            crate::evaluate::AlertRule::at(*at),
                            false,
                        ),
                    })
                }),
        )
        .collect();
    DataEvaluation {
        model: location_uri(&model.location),
        run_id: model.sidecar.run_id.clone(),
        data: source.to_string(),
        rows: cohort.rows(),
        patients: cohort.patients.len(),
        evaluation: crate::interval::evaluate_with_intervals(cohort, probabilities, rule),
        baselines,
        subgroups: crate::assess::subgroups(cohort, probabilities, rule, &data.groups),
    }
}

/// Returns a model location as a URI. Store and registry locations are URIs
/// already, and a local path becomes the `file://` URI of its absolute path,
/// so that one model is named the same way however it was chosen.
fn location_uri(location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    match std::fs::canonicalize(location) {
        Ok(path) => format!("file://{}", path.display()),
        Err(_) => location.to_string(),
    }
}

impl ScoringModel {
    /// Computes the TreeSHAP contribution of each feature to the raw score
    /// (before calibration, in the units of [`crate::model::Link`]) of one row of computed features, as
    /// returned by [`ScoringModel::score_with_features`]. The result has one
    /// value per feature, in [`FeatureSpec::feature_names`] order, and then
    /// the model's expected raw score.
    pub fn contributions(
        &self,
        features: &[arrow::array::ArrayRef],
        row: usize,
    ) -> Result<Vec<f64>, ScoringError> {
        let values: Vec<f32> = features
            .iter()
            .map(|column| column.as_primitive::<Float32Type>().value(row))
            .collect();
        self.trees
            .contributions(&values)
            .map_err(|e| ScoringError::Model {
                location: self.location.clone(),
                message: e.to_string(),
            })
    }
}
