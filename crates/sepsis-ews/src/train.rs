//! `sepsis train`: a LightGBM binary classifier on a feature version.
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
use arrow::datatypes::{Float32Type, Int64Type};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Histogram, Imbalance, SplitConfig, TrainingConfig};
use crate::feature_store::{FeatureManifest, ID_COLUMN, LABEL_COLUMN, OUTCOME_COLUMN};
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

/// The validation side, with what the evaluation needs beyond the matrix.
#[derive(Debug, Default, Clone)]
pub struct ValidationSet {
    pub matrix: Matrix,
    /// The challenge outcome (`SepsisLabel`) of each row.
    pub outcome: Vec<bool>,
    /// Each patient's rows, in order.
    pub patients: Vec<Range<usize>>,
}

#[derive(Debug, Default, Clone)]
pub struct TrainingData {
    pub train: Matrix,
    pub train_patients: usize,
    pub validation: ValidationSet,
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

/// Reads a feature table into training and validation matrices.
pub fn load_training_data(
    features: Bytes,
    location: &str,
    manifest: &FeatureManifest,
    split: &SplitConfig,
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
    let validation_ids = split_patients(&patients, split.seed, split.fraction_checked());
    let train_patients = patients.len() - validation_ids.len();
    if train_patients == 0 || validation_ids.is_empty() {
        return Err(TrainError::Data {
            location: location.to_string(),
            message: format!(
                "{} patient(s) cannot be split into non-empty training and validation sides",
                patients.len()
            ),
        });
    }
    let validation_rows: usize = validation_ids.iter().map(|id| by_patient[id].1).sum();
    let total_rows: usize = by_patient.values().map(|(_, rows)| rows).sum();
    // Second pass: the matrices, allocated at their exact size up front, so
    // no doubling reallocation raises the peak memory.
    let width = manifest.feature_names.len();
    let matrix = |rows: usize| Matrix {
        values: Vec::with_capacity(rows * width),
        labels: Vec::with_capacity(rows),
        width,
    };
    let mut data = TrainingData {
        train: matrix(total_rows - validation_rows),
        train_patients,
        validation: ValidationSet {
            matrix: matrix(validation_rows),
            outcome: Vec::with_capacity(validation_rows),
            patients: Vec::with_capacity(validation_ids.len()),
        },
    };
    let mut last_validation_patient: Option<String> = None;
    let mut columns: Vec<&str> = vec![ID_COLUMN, LABEL_COLUMN, OUTCOME_COLUMN];
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
        let labels = column(LABEL_COLUMN).as_primitive::<Int64Type>();
        let outcomes = column(OUTCOME_COLUMN).as_primitive::<Int64Type>();
        let feature_columns: Vec<&[f32]> = manifest
            .feature_names
            .iter()
            .map(|name| column(name).as_primitive::<Float32Type>().values().as_ref())
            .collect();

        for row in 0..batch.num_rows() {
            let id = ids.value(row);
            let is_validation = validation_ids.contains(id);
            let matrix = if is_validation {
                &mut data.validation.matrix
            } else {
                &mut data.train
            };
            matrix
                .values
                .extend(feature_columns.iter().map(|column| column[row]));
            matrix.labels.push(labels.value(row) as f32);

            if is_validation {
                let index = data.validation.matrix.labels.len() - 1;
                if last_validation_patient.as_deref() != Some(id) {
                    data.validation.patients.push(index..index + 1);
                    last_validation_patient = Some(id.to_string());
                } else if let Some(range) = data.validation.patients.last_mut() {
                    range.end = index + 1;
                }
                let outcome = (!outcomes.is_null(row)).then(|| outcomes.value(row) == 1);
                data.validation.outcome.push(outcome.unwrap_or(false));
            }
        }
    }
    let no_outcome = outcomes_missing(&data.validation);
    derive_missing_outcomes(&mut data.validation, &no_outcome);
    Ok(data)
}

/// Flags the patients without any positive outcome. The outcome column is
/// empty when the input was a ready file without `SepsisLabel`.
fn outcomes_missing(validation: &ValidationSet) -> Vec<bool> {
    validation
        .patients
        .iter()
        .map(|range| validation.outcome[range.clone()].iter().all(|o| !o))
        .collect()
}

/// For a patient without any positive outcome but with positive labels, the
/// outcome is the label shifted six rows later.
///
/// NOTE: this matches the challenge outcome only when the record does not
/// start inside the 6 h between label and outcome onset.
fn derive_missing_outcomes(validation: &mut ValidationSet, no_outcome: &[bool]) {
    for (range, missing) in validation.patients.clone().iter().zip(no_outcome) {
        if !missing {
            continue;
        }
        let labels = &validation.matrix.labels[range.clone()];
        if let Some(first) = labels.iter().position(|l| *l > 0.5) {
            for offset in (first + OUTCOME_LAG_ROWS)..labels.len() {
                validation.outcome[range.start + offset] = true;
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
    if train.positives() == 0 || train.positives() == train.rows() {
        return Err(TrainError::Data {
            location: "the training split".into(),
            message: format!(
                "{} of {} training rows are positive; LightGBM needs both classes",
                train.positives(),
                train.rows()
            ),
        });
    }
    let weight = balancing_weight(&train);
    let params = lightgbm_params(config, weight);
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
    pub feature_version: String,
    pub feature_set_version: String,
    pub data_digest: String,
    pub schema_digest: String,
    pub params: serde_json::Value,
    /// The split the model was trained with; evaluation reuses it.
    pub split: SplitConfig,
    pub train_rows: usize,
    pub train_patients: usize,
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
        let mut validation = ValidationSet {
            matrix: Matrix {
                values: vec![0.0; 10],
                labels: [0, 0, 1, 1, 1, 1, 1, 1, 1, 1].map(|l| l as f32).to_vec(),
                width: 1,
            },
            outcome: vec![false; 10],
            patients: std::iter::once(0..10).collect(),
        };
        derive_missing_outcomes(&mut validation, &[true]);
        let expected: Vec<bool> = (0..10).map(|i| i >= 8).collect();
        assert_eq!(validation.outcome, expected);
    }
}
