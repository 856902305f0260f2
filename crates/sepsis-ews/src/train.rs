//! `sepsis train`: a LightGBM model of sepsis risk on a feature version,
//! either one binary booster or the two log-link boosters of
//! `patient_and_onset` summed into one model ([`train_shaped`]).
//!
//! The split is by patient, so no patient has hours on both sides, and
//! stratified by septic patients so both sides keep the same share of them.
//! It is reproducible in any language. Each patient's key is the hex SHA-256
//! of `"<seed>:<patient id>"`. Within each stratum, the round(n × fraction)
//! patients with the smallest keys form the validation side, but at least
//! one and at most n − 1 when the stratum has two patients or more.
//!
//! Class imbalance (about 2 % positive hours) is handled by LightGBM's
//! `scale_pos_weight` or by per-row weights, both set to negative / positive
//! training rows. Training is deterministic for a given seed and thread count.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use crate::lightgbm;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float32Type, Float64Type, Int64Type};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Histogram, Imbalance, ModelShape, SplitConfig, TrainingConfig};
use crate::feature_store::{FeatureManifest, HOUR_COLUMN, ID_COLUMN, LABEL_COLUMN, OUTCOME_COLUMN};
use crate::table::{self, TableError};

/// Rows by which the challenge outcome trails the 12-hour label: the label
/// turns 1 twelve hours before onset, the outcome six hours before.
const OUTCOME_LAG_ROWS: usize = 6;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("{location}: {message}")]
    Data { location: String, message: String },
    #[error("LightGBM training failed")]
    LightGbm(#[from] crate::lightgbm::LightGbmError),
    #[error("scoring with the trained model failed")]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Ensemble(#[from] crate::ensemble::EnsembleError),
}

/// A dense row-major float32 matrix with one label per row.
#[derive(Debug, Default, Clone)]
pub struct Matrix {
    pub values: Vec<f32>,
    pub labels: Vec<f32>,
    pub width: usize,
}

impl Matrix {
    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    pub fn positives(&self) -> usize {
        self.labels.iter().filter(|l| **l > 0.5).count()
    }
}

/// The rows of a group of patients, with what evaluation needs beyond the
/// matrix: each row's hour and challenge outcome, and each patient's rows.
#[derive(Debug, Default, Clone)]
pub struct PatientSet {
    pub matrix: Matrix,
    /// The challenge outcome (`SepsisLabel`) of each row.
    pub outcome: Vec<bool>,
    /// The hour of each row.
    pub hours: Vec<f64>,
    /// Each patient's rows, in order.
    pub patients: Vec<Range<usize>>,
    /// Each patient's id, in the same order.
    pub patient_ids: Vec<String>,
}

impl PatientSet {
    fn with_capacity(rows: usize, width: usize) -> PatientSet {
        PatientSet {
            matrix: Matrix {
                values: Vec::with_capacity(rows * width),
                labels: Vec::with_capacity(rows),
                width,
            },
            outcome: Vec::with_capacity(rows),
            hours: Vec::with_capacity(rows),
            patients: Vec::new(),
            patient_ids: Vec::new(),
        }
    }

    /// Appends one row; `new_patient` starts the next patient's range.
    pub fn push_row(
        &mut self,
        patient_id: &str,
        new_patient: bool,
        features: impl IntoIterator<Item = f32>,
        label: f32,
        outcome: Option<bool>,
        hour: f64,
    ) {
        self.matrix.values.extend(features);
        self.matrix.labels.push(label);
        self.outcome.push(outcome.unwrap_or(false));
        self.hours.push(hour);
        let index = self.matrix.labels.len() - 1;
        match self.patients.last_mut() {
            Some(range) if !new_patient => range.end = index + 1,
            _ => {
                self.patients.push(index..index + 1);
                self.patient_ids.push(patient_id.to_string());
            }
        }
    }

    pub fn rows(&self) -> usize {
        self.matrix.rows()
    }

    /// Fills in the outcome of patients that have none, from their labels.
    /// The outcome column is empty when the input was a ready file without
    /// `SepsisLabel`.
    pub fn finish_outcomes(&mut self) {
        let labels = &self.matrix.labels;
        fill_missing_outcomes(|row| labels[row] > 0.5, &mut self.outcome, &self.patients);
    }

    /// Iterates over one feature's values, by its position in the matrix.
    pub fn column(&self, index: usize) -> impl Iterator<Item = f32> + '_ {
        self.matrix
            .values
            .iter()
            .skip(index)
            .step_by(self.matrix.width.max(1))
            .copied()
    }
}

/// The three groups of patients a run uses: the model is fitted on the first,
/// its probabilities calibrated and its alert threshold chosen on the second,
/// and everything is measured on the third, which nothing else has seen.
/// When the plan cross-fits, the calibration group is empty: the fit
/// patients' out-of-fold scores calibrate the model.
#[derive(Debug, Default, Clone)]
pub struct TrainingData {
    pub fit: PatientSet,
    pub fit_patients: usize,
    pub calibration: PatientSet,
    pub validation: PatientSet,
}

/// The division of the patients into fit, calibration and validation groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitPlan {
    /// Validation patients, drawn from all patients.
    pub split: SplitConfig,
    /// Calibration patients, drawn from the rest with the seed plus one.
    pub calibration_fraction: f64,
    /// Cross-fitting folds. With 2 or more, there are no separate calibration
    /// patients.
    #[serde(default = "one_fold")]
    pub folds: u32,
}

fn one_fold() -> u32 {
    1
}

/// Assigns each patient one of `folds` folds, stratified by sepsis: the
/// septic patients, then the others, each in the order of a seeded hash of
/// the id, take the folds in turn. The turn carries on from one stratum to
/// the next, so fold sizes differ by at most one.
pub fn assign_folds(patients: &[(String, bool)], seed: u64, folds: usize) -> Vec<usize> {
    let key = |id: &str| hex::encode(Sha256::digest(format!("{seed}:fold:{id}").as_bytes()));
    let mut assigned = vec![0; patients.len()];
    let mut turn = 0;
    for septic in [true, false] {
        let mut stratum: Vec<(String, usize)> = patients
            .iter()
            .enumerate()
            .filter(|(_, (_, s))| *s == septic)
            .map(|(index, (id, _))| (key(id), index))
            .collect();
        stratum.sort();
        for (_, index) in stratum {
            assigned[index] = turn % folds.max(1);
            turn += 1;
        }
    }
    assigned
}

/// Returns the validation patients of a seeded, stratified split.
pub fn split_patients(patients: &[(String, bool)], seed: u64, fraction: f64) -> HashSet<String> {
    let key = |id: &str| hex::encode(Sha256::digest(format!("{seed}:{id}").as_bytes()));
    let mut validation = HashSet::new();
    for septic in [true, false] {
        let mut stratum: Vec<(String, &str)> = patients
            .iter()
            .filter(|(_, s)| *s == septic)
            .map(|(id, _)| (key(id), id.as_str()))
            .collect();
        stratum.sort();
        let mut take = (stratum.len() as f64 * fraction).round() as usize;
        // A stratum of two or more patients keeps at least one on each side,
        // so a few septic patients cannot all round into one side.
        if stratum.len() >= 2 {
            take = take.clamp(1, stratum.len() - 1);
        }
        validation.extend(stratum.into_iter().take(take).map(|(_, id)| id.to_string()));
    }
    validation
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Fit,
    Calibration,
    Validation,
}

/// Reads a feature table into the fit, calibration and validation groups.
pub fn load_training_data(
    features: Bytes,
    location: &str,
    manifest: &FeatureManifest,
    plan: &SplitPlan,
) -> Result<TrainingData, TrainError> {
    // First pass, over two columns only: each patient's row count and whether
    // the patient is septic.
    let mut by_patient: HashMap<String, (bool, usize)> = HashMap::new();
    let mut order = Vec::new();
    for batch in table::read_columns(features.clone(), location, &[ID_COLUMN, LABEL_COLUMN])? {
        let batch = batch?;
        let ids = batch
            .column_by_name(ID_COLUMN)
            .expect("the projection contains the id column")
            .as_string::<i32>();
        let labels = batch
            .column_by_name(LABEL_COLUMN)
            .expect("the projection contains the label column")
            .as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let positive = labels.value(row) == 1;
            match by_patient.get_mut(ids.value(row)) {
                Some((septic, rows)) => {
                    *septic |= positive;
                    *rows += 1;
                }
                None => {
                    by_patient.insert(ids.value(row).to_string(), (positive, 1));
                    order.push(ids.value(row).to_string());
                }
            }
        }
    }
    let patients: Vec<(String, bool)> = order
        .into_iter()
        .map(|id| {
            let septic = by_patient[&id].0;
            (id, septic)
        })
        .collect();
    let split = &plan.split;
    let validation_ids = split_patients(&patients, split.seed, split.fraction_checked());
    let rest: Vec<(String, bool)> = patients
        .iter()
        .filter(|(id, _)| !validation_ids.contains(id))
        .cloned()
        .collect();
    let cross_fit = plan.folds >= 2;
    let calibration_ids = if cross_fit {
        HashSet::new()
    } else {
        split_patients(
            &rest,
            split.seed.wrapping_add(1),
            plan.calibration_fraction.clamp(f64::MIN_POSITIVE, 1.0),
        )
    };
    let fit_patients = rest.len() - calibration_ids.len();
    if cross_fit && fit_patients < plan.folds as usize {
        return Err(TrainError::Data {
            location: location.to_string(),
            message: format!(
                "{fit_patients} training patient(s) cannot be cut into training.folds = {} folds",
                plan.folds
            ),
        });
    }
    if fit_patients == 0 || validation_ids.is_empty() || (calibration_ids.is_empty() && !cross_fit)
    {
        return Err(TrainError::Data {
            location: location.to_string(),
            message: format!(
                "{} patient(s) cannot be split into non-empty fit, calibration and validation \
                 groups",
                patients.len()
            ),
        });
    }
    let side_of = |id: &str| {
        if validation_ids.contains(id) {
            Side::Validation
        } else if calibration_ids.contains(id) {
            Side::Calibration
        } else {
            Side::Fit
        }
    };
    let rows_of = |ids: &HashSet<String>| -> usize { ids.iter().map(|id| by_patient[id].1).sum() };
    let validation_rows = rows_of(&validation_ids);
    let calibration_rows = rows_of(&calibration_ids);
    let total_rows: usize = by_patient.values().map(|(_, rows)| rows).sum();
    // Second pass: the matrices, allocated at their exact size up front, so
    // no doubling reallocation raises the peak memory.
    let width = manifest.feature_names.len();
    let fit_rows = total_rows - validation_rows - calibration_rows;
    let mut data = TrainingData {
        fit: PatientSet::with_capacity(fit_rows, width),
        fit_patients,
        calibration: PatientSet::with_capacity(calibration_rows, width),
        validation: PatientSet::with_capacity(validation_rows, width),
    };
    let mut last_patient: Option<String> = None;
    let mut columns: Vec<&str> = vec![ID_COLUMN, HOUR_COLUMN, LABEL_COLUMN, OUTCOME_COLUMN];
    columns.extend(manifest.feature_names.iter().map(String::as_str));
    for batch in table::read_columns(features, location, &columns)? {
        let batch: RecordBatch = batch?;
        // Projected columns come back in file order, so look them up by name.
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .expect("the projection contains every requested column")
        };
        let ids = column(ID_COLUMN).as_string::<i32>();
        let hours = column(HOUR_COLUMN).as_primitive::<Float64Type>();
        let labels = column(LABEL_COLUMN).as_primitive::<Int64Type>();
        let outcomes = column(OUTCOME_COLUMN).as_primitive::<Int64Type>();
        let feature_columns: Vec<&[f32]> = manifest
            .feature_names
            .iter()
            .map(|name| column(name).as_primitive::<Float32Type>().values().as_ref())
            .collect();

        for row in 0..batch.num_rows() {
            let id = ids.value(row);
            let new_patient = last_patient.as_deref() != Some(id);
            if new_patient {
                last_patient = Some(id.to_string());
            }
            let values = feature_columns.iter().map(|column| column[row]);
            let label = labels.value(row) as f32;
            let set = match side_of(id) {
                Side::Fit => &mut data.fit,
                Side::Calibration => &mut data.calibration,
                Side::Validation => &mut data.validation,
            };
            let outcome = (!outcomes.is_null(row)).then(|| outcomes.value(row) == 1);
            set.push_row(id, new_patient, values, label, outcome, hours.value(row));
        }
    }
    data.fit.finish_outcomes();
    data.calibration.finish_outcomes();
    data.validation.finish_outcomes();
    Ok(data)
}

/// Derives the outcome of each patient without any positive outcome but with
/// positive labels: the label shifted six rows later. `is_positive(row)`
/// reads the label of a row.
///
/// NOTE: this matches the challenge outcome only when the record does not
/// start inside the 6 h between label and outcome onset.
pub fn fill_missing_outcomes(
    is_positive: impl Fn(usize) -> bool,
    outcome: &mut [bool],
    patients: &[Range<usize>],
) {
    for range in patients {
        if outcome[range.clone()].iter().any(|o| *o) {
            continue;
        }
        if let Some(first) = range.clone().find(|row| is_positive(*row)) {
            for flag in outcome[first..range.end].iter_mut().skip(OUTCOME_LAG_ROWS) {
                *flag = true;
            }
        }
    }
}

impl SplitConfig {
    fn fraction_checked(&self) -> f64 {
        self.validation_fraction.clamp(f64::MIN_POSITIVE, 1.0)
    }
}

/// Builds the LightGBM parameters for a training configuration.
pub fn lightgbm_params(config: &TrainingConfig, positive_weight: f64) -> serde_json::Value {
    let mut params = serde_json::json!({
        "objective": "binary",
        "num_iterations": config.num_iterations,
        "num_leaves": config.num_leaves,
        "learning_rate": config.learning_rate,
        "max_bin": config.max_bin,
        "min_data_in_leaf": config.min_data_in_leaf,
        "feature_fraction": config.feature_fraction,
        "bagging_fraction": config.bagging_fraction,
        "bagging_freq": config.bagging_freq,
        "lambda_l2": config.lambda_l2,
        "extra_trees": config.extra_trees,
        "seed": config.seed,
        "deterministic": true,
        "num_threads": config.num_threads,
        "verbosity": -1,
    });
    let histogram = match config.histogram {
        Histogram::RowWise => "force_row_wise",
        Histogram::ColWise => "force_col_wise",
    };
    params[histogram] = serde_json::json!(true);
    if config.imbalance == Imbalance::ScalePosWeight {
        params["scale_pos_weight"] = serde_json::json!(positive_weight);
    }
    params
}

/// Negative rows per positive row, the weight that balances the classes.
pub fn balancing_weight(matrix: &Matrix) -> f64 {
    let positives = matrix.positives();
    let negatives = matrix.rows() - positives;
    if positives == 0 {
        1.0
    } else {
        negatives as f64 / positives as f64
    }
}

/// Trains a booster on the training matrix and returns it in LightGBM's text
/// format, with the parameters used.
///
/// The matrix is taken by value and freed once LightGBM has binned it into its
/// own dataset, which lowers the peak memory of training by the matrix size.
pub fn train_model(
    train: Matrix,
    config: &TrainingConfig,
    feature_names: &[String],
) -> Result<(String, serde_json::Value), TrainError> {
    let params = lightgbm_params(config, balancing_weight(&train));
    train_booster(train, params, "the training split", config, feature_names)
}

/// The targets of each training row beside its 12-hour label: its
/// `SepsisLabel`, and whether its patient becomes septic. The `patient_and_onset` shape
/// trains on these.
#[derive(Debug, Default, Clone)]
pub struct RowTargets {
    pub outcome: Vec<bool>,
    pub septic_patient: Vec<bool>,
}

impl RowTargets {
    /// Returns the targets of a group's rows. A patient is septic when any of
    /// the patient's hours has a positive `SepsisLabel`.
    pub fn of(set: &PatientSet) -> RowTargets {
        let mut septic_patient = vec![false; set.rows()];
        for rows in &set.patients {
            let septic = set.outcome[rows.clone()].iter().any(|o| *o);
            septic_patient[rows.clone()].fill(septic);
        }
        RowTargets {
            outcome: set.outcome.clone(),
            septic_patient,
        }
    }

    /// Returns the targets of the given rows, in that order.
    pub fn select(&self, rows: &[usize]) -> RowTargets {
        RowTargets {
            outcome: rows.iter().map(|row| self.outcome[*row]).collect(),
            septic_patient: rows.iter().map(|row| self.septic_patient[*row]).collect(),
        }
    }
}

/// Trains the model of `config.shape` and returns it as one LightGBM text
/// model, with the parameters used. `targets` belongs to the matrix's rows.
///
/// `one_booster` is [`train_model`]. `patient_and_onset` trains two boosters
/// with LightGBM's Poisson objective, whose raw score is the log of the
/// predicted rate, here a probability. The patient booster learns from every
/// row whether the row's patient becomes septic. The onset booster learns
/// `SepsisLabel` from the septic patients' rows alone, with the tree size of
/// `config.onset`. Their trees summed give the log of P(septic patient) ×
/// P(positive hour | septic patient), which ranks the hours of one septic
/// patient as well as the patients.
pub fn train_shaped(
    train: Matrix,
    targets: &RowTargets,
    config: &TrainingConfig,
    feature_names: &[String],
) -> Result<(String, serde_json::Value), TrainError> {
    if config.shape == ModelShape::OneBooster {
        return train_model(train, config, feature_names);
    }
    let septic_rows: Vec<usize> = (0..train.rows())
        .filter(|row| targets.septic_patient[*row])
        .collect();
    let onset = Matrix {
        values: septic_rows
            .iter()
            .flat_map(|row| &train.values[row * train.width..(row + 1) * train.width])
            .copied()
            .collect(),
        labels: septic_rows
            .iter()
            .map(|row| f32::from(u8::from(targets.outcome[*row])))
            .collect(),
        width: train.width,
    };
    let patient = Matrix {
        labels: (targets.septic_patient.iter())
            .map(|septic| f32::from(u8::from(*septic)))
            .collect(),
        ..train
    };

    let mut patient_params = lightgbm_params(config, balancing_weight(&patient));
    patient_params["objective"] = serde_json::json!("poisson");
    let mut onset_params = lightgbm_params(config, balancing_weight(&onset));
    onset_params["objective"] = serde_json::json!("poisson");
    onset_params["num_leaves"] = serde_json::json!(config.onset.num_leaves);
    onset_params["min_data_in_leaf"] = serde_json::json!(config.onset.min_data_in_leaf);

    let (onset_text, onset_params) = train_booster(
        onset,
        onset_params,
        "the septic patients' hours (onset booster)",
        config,
        feature_names,
    )?;
    let split_trees = onset_text
        .lines()
        .filter(|line| line.starts_with("num_leaves=") && *line != "num_leaves=1")
        .count();
    if split_trees == 0 {
        tracing::warn!(
            rows = septic_rows.len(),
            min_data_in_leaf = config.onset.min_data_in_leaf,
            "the onset booster has no split, so the model ranks patients only; lower \
             training.onset.min_data_in_leaf"
        );
    }
    let (patient_text, mut params) = train_booster(
        patient,
        patient_params,
        "the training split (patient booster)",
        config,
        feature_names,
    )?;
    let text = crate::ensemble::sum(&[patient_text, onset_text])?;
    params["shape"] = serde_json::json!("patient_and_onset");
    params["onset"] = onset_params;
    Ok((text, params))
}

/// Trains one booster with the given parameters. `rows` names the rows in
/// the error when they hold one class only.
fn train_booster(
    train: Matrix,
    params: serde_json::Value,
    rows: &str,
    config: &TrainingConfig,
    feature_names: &[String],
) -> Result<(String, serde_json::Value), TrainError> {
    if train.positives() == 0 || train.positives() == train.rows() {
        return Err(TrainError::Data {
            location: rows.into(),
            message: format!(
                "{} of {} training rows are positive; LightGBM needs both classes",
                train.positives(),
                train.rows()
            ),
        });
    }
    let weight = balancing_weight(&train);
    let weights = (config.imbalance == Imbalance::SampleWeights).then(|| {
        train
            .labels
            .iter()
            .map(|l| if *l > 0.5 { weight as f32 } else { 1.0 })
            .collect()
    });
    let Matrix {
        values,
        labels,
        width,
    } = train;
    let set = lightgbm::TrainingSet {
        values,
        labels,
        weights,
        width,
        feature_names,
    };
    let model_text = lightgbm::train(set, &params, config.num_iterations)?;
    Ok((model_text, params))
}

/// Predicts probabilities for a row-major matrix with a text model, using
/// this crate's evaluator of LightGBM trees.
pub fn predict(model_text: &str, matrix: &Matrix) -> Result<Vec<f64>, TrainError> {
    let model = crate::model::TreeModel::parse(model_text)?;
    Ok(model.predict(matrix)?)
}

/// The JSON sidecar saved beside every model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSidecar {
    pub run_id: String,
    /// `lightgbm-text`: LightGBM's own text model format.
    pub format: String,
    /// The model's input columns, in order.
    pub feature_names: Vec<String>,
    /// The feature definitions, so scoring computes exactly these inputs.
    pub features: crate::features::FeatureSpec,
    pub feature_version: String,
    pub feature_set_version: String,
    pub data_digest: String,
    pub schema_digest: String,
    pub params: serde_json::Value,
    /// The split the model was trained with; evaluation reuses it.
    pub split: SplitPlan,
    pub fit_rows: usize,
    pub fit_patients: usize,
    pub calibration_rows: usize,
    pub calibration_patients: usize,
    pub validation_rows: usize,
    pub validation_patients: usize,
    pub created_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patients(septic: usize, other: usize) -> Vec<(String, bool)> {
        (0..septic)
            .map(|i| (format!("s{i}"), true))
            .chain((0..other).map(|i| (format!("n{i}"), false)))
            .collect()
    }

    #[test]
    fn split_is_stratified() {
        let validation = split_patients(&patients(10, 90), 42, 0.2);
        assert_eq!(validation.len(), 20);
        assert_eq!(
            validation.iter().filter(|id| id.starts_with('s')).count(),
            2
        );
    }

    #[test]
    fn split_keeps_a_septic_patient_on_each_side() {
        let validation = split_patients(&patients(2, 50), 42, 0.2);
        assert_eq!(
            validation.iter().filter(|id| id.starts_with('s')).count(),
            1
        );
        let validation = split_patients(&patients(1, 50), 42, 0.2);
        assert_eq!(
            validation.iter().filter(|id| id.starts_with('s')).count(),
            0
        );
    }

    #[test]
    fn split_depends_on_seed_only() {
        let all = patients(30, 300);
        assert_eq!(split_patients(&all, 7, 0.2), split_patients(&all, 7, 0.2));
        assert_ne!(split_patients(&all, 7, 0.2), split_patients(&all, 8, 0.2));
    }

    #[test]
    fn split_matches_cross_language_definition() {
        // sha256("42:p1"), sha256("42:p2"), sha256("42:p3") decide the order.
        let all: Vec<(String, bool)> = ["p1", "p2", "p3"]
            .iter()
            .map(|id| (id.to_string(), false))
            .collect();
        let mut keyed: Vec<(String, &str)> = ["p1", "p2", "p3"]
            .iter()
            .map(|id| (hex::encode(Sha256::digest(format!("42:{id}"))), *id))
            .collect();
        keyed.sort();
        let validation = split_patients(&all, 42, 0.34);
        assert_eq!(validation, HashSet::from([keyed[0].1.to_string()]));
    }

    #[test]
    fn extra_trees_setting_reaches_lightgbm() {
        let sources = |value: &str| crate::config::ConfigSources {
            file: None,
            read_env: false,
            overrides: vec![("training.extra_trees".into(), value.into())],
        };
        let names = vec!["x".to_string()];
        for (value, expected) in [("true", "[extra_trees: 1]"), ("false", "[extra_trees: 0]")] {
            let mut config = crate::config::Config::load(&sources(value))
                .unwrap()
                .training;
            config.num_iterations = 2;
            config.min_data_in_leaf = 5;
            let values: Vec<f32> = (0..200).map(|i| i as f32).collect();
            let labels = values.iter().map(|v| f32::from(*v >= 100.0)).collect();
            let matrix = Matrix {
                values,
                labels,
                width: 1,
            };
            let (text, params) = train_model(matrix, &config, &names).unwrap();
            assert_eq!(params["extra_trees"], value == "true");
            assert!(
                text.contains(expected),
                "{value}: no {expected} in the model"
            );
        }
    }

    #[test]
    fn balancing_weight_is_negative_over_positive() {
        let matrix = Matrix {
            values: vec![0.0; 5],
            labels: vec![1.0, 0.0, 0.0, 0.0, 0.0],
            width: 1,
        };
        assert_eq!(balancing_weight(&matrix), 4.0);
    }

    #[test]
    fn derived_outcome_trails_label_by_six_rows() {
        let mut validation = PatientSet {
            matrix: Matrix {
                values: vec![0.0; 10],
                labels: [0, 0, 1, 1, 1, 1, 1, 1, 1, 1].map(|l| l as f32).to_vec(),
                width: 1,
            },
            outcome: vec![false; 10],
            hours: (1..=10).map(f64::from).collect(),
            patients: std::iter::once(0..10).collect(),
            patient_ids: vec!["p1".into()],
        };
        validation.finish_outcomes();
        let expected: Vec<bool> = (0..10).map(|i| i >= 8).collect();
        assert_eq!(validation.outcome, expected);
    }
}
