//! Fitting, calibrating and judging a model on the patient groups of a run,
//! with its baselines beside it:
//!
//! 1. by default one booster fits the fit patients. With `training.folds`
//!    of 2 or more, the fit and calibration patients are cross-fitted: a
//!    booster fitted without each fold scores that fold, and the model is
//!    the boosters' mean;
//! 2. an isotonic map, fitted on the calibration patients (or on the
//!    out-of-fold scores), makes the output a probability, and the alert
//!    threshold is chosen there too;
//! 3. the validation patients, which neither step saw, measure the model,
//!    the bedside-score baselines and a "clock" model whose only inputs are
//!    the time in the ICU and the time since hospital admission.

use serde::{Deserialize, Serialize};

use crate::calibration::IsotonicMap;
use crate::config::{AlertConfig, ModelShape, TrainingConfig};
use crate::evaluate::{evaluate, AlertRule, Cohort, Evaluation};
use crate::features::{FeatureSpec, HOURS_SINCE_ADMISSION};
use crate::interval;
use crate::model::TreeModel;
use crate::policy::{choose_threshold, AlertPolicy, BaselineResult};
use crate::train::{self, Matrix, PatientSet, RowTargets, TrainError, TrainingData};

/// The bedside scores used as baselines, with the alert threshold each is
/// used at in practice.
pub const SCORE_BASELINES: [(&str, f64, &str); 3] = [
    (
        "sirs",
        2.0,
        "SIRS ≥ 2: two or more systemic inflammatory response criteria",
    ),
    (
        "qsofa",
        2.0,
        "qSOFA ≥ 2 (respiration and systolic pressure; mental status is not recorded)",
    ),
    (
        "news2",
        5.0,
        "NEWS2 ≥ 5 (without consciousness), the usual urgent-review trigger",
    ),
];

/// A booster with its calibration and alert policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibratedModel {
    pub calibration: IsotonicMap,
    pub policy: AlertPolicy,
}

/// The "clock" baseline, stored beside the model so that other data can be
/// scored against it too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClockBaseline {
    /// Its input features, a subset of the model's.
    pub feature_names: Vec<String>,
    pub calibration: IsotonicMap,
    pub policy: AlertPolicy,
}

/// The ranking measures of the out-of-fold scores of cross-fitting: each
/// training patient scored by the booster that did not fit it. They are
/// held-out measures over more patients than the validation group has. The
/// calibration and alert rule were chosen on these scores, so only measures
/// of ranking, which neither changes, are given.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutOfFold {
    pub folds: u32,
    pub patients: usize,
    pub rows: usize,
    pub auroc: Option<f64>,
    pub auprc: Option<f64>,
    pub auroc_sepsis_label: Option<f64>,
    pub auprc_sepsis_label: Option<f64>,
}

impl OutOfFold {
    fn of(cohort: &Cohort, scores: &[f64], folds: u32) -> OutOfFold {
        OutOfFold {
            folds,
            patients: cohort.patients.len(),
            rows: cohort.rows(),
            auroc: crate::metrics::auroc(&cohort.labels, scores),
            auprc: crate::metrics::auprc(&cohort.labels, scores),
            auroc_sepsis_label: crate::metrics::auroc(&cohort.outcome, scores),
            auprc_sepsis_label: crate::metrics::auprc(&cohort.outcome, scores),
        }
    }
}

/// One row of the subgroup table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubgroupResult {
    /// `ICU unit` or `age band`.
    pub group: String,
    pub level: String,
    pub evaluation: Evaluation,
}

/// Each patient's ICU unit and age, for the subgroup table.
#[derive(Debug, Default, Clone)]
pub struct PatientGroups {
    pub unit: Vec<String>,
    pub age: Vec<f64>,
}

impl PatientGroups {
    /// Reads the unit one-hot and the age from each patient's first row.
    pub fn of(set: &PatientSet, spec: &FeatureSpec) -> PatientGroups {
        let width = set.matrix.width;
        let mut groups = PatientGroups::default();
        for range in &set.patients {
            let row = &set.matrix.values[range.start * width..(range.start + 1) * width];
            groups.push(spec, |index| row[index]);
        }
        groups
    }

    /// Appends one patient's unit and age; `feature(index)` reads the
    /// patient's first row by feature position.
    pub fn push(&mut self, spec: &FeatureSpec, feature: impl Fn(usize) -> f32) {
        let value = |name: &str| {
            let index = spec.feature_names.iter().position(|n| n == name);
            index.map_or(f64::NAN, |index| f64::from(feature(index)))
        };
        let unit = spec
            .categoricals
            .iter()
            .filter(|c| c.name == "unit")
            .flat_map(|c| c.output_names())
            .find(|name| value(name) == 1.0);
        let unit = unit
            .as_deref()
            .map_or("unknown", |name| name.trim_start_matches("unit_"));
        self.unit.push(unit.to_string());
        self.age.push(value("Age"));
    }
}

/// Names the age band of the subgroup table that `age` falls in.
pub fn age_band(age: f64) -> &'static str {
    match age {
        a if a < 45.0 => "under 45",
        a if a < 65.0 => "45 to 64",
        a if a < 80.0 => "65 to 79",
        a if a >= 80.0 => "80 and over",
        _ => "unknown",
    }
}

/// Measures the scores in each ICU unit and each age band.
pub fn subgroups(
    cohort: &Cohort,
    probabilities: &[f64],
    rule: AlertRule,
    groups: &PatientGroups,
) -> Vec<SubgroupResult> {
    let mut results = Vec::new();
    let mut units: Vec<&String> = groups.unit.iter().collect();
    units.sort();
    units.dedup();
    for unit in units {
        let (sub, scores) = cohort.select(probabilities, |p| &groups.unit[p] == unit);
        results.push(SubgroupResult {
            group: "ICU unit".into(),
            level: unit.clone(),
            evaluation: evaluate(&sub, &scores, rule, true),
        });
    }
    for band in ["under 45", "45 to 64", "65 to 79", "80 and over", "unknown"] {
        let (sub, scores) = cohort.select(probabilities, |p| age_band(groups.age[p]) == band);
        if sub.patients.is_empty() {
            continue;
        }
        results.push(SubgroupResult {
            group: "age band".into(),
            level: band.into(),
            evaluation: evaluate(&sub, &scores, rule, true),
        });
    }
    results
}

/// Calibrates raw output on the calibration patients and chooses the threshold.
pub fn calibrate(cohort: &Cohort, raw: &[f64], alert: &AlertConfig) -> CalibratedModel {
    let calibration = IsotonicMap::fit(raw, &cohort.labels);
    let probabilities: Vec<f64> = raw.iter().map(|r| calibration.apply(*r)).collect();
    let policy = choose_threshold(cohort, &probabilities, alert);
    CalibratedModel {
        calibration,
        policy,
    }
}

/// Copies the columns of a matrix named in `selected`, in that order.
pub fn select_columns(matrix: &Matrix, names: &[String], selected: &[String]) -> Matrix {
    let indices: Vec<usize> = selected
        .iter()
        .map(|w| {
            names
                .iter()
                .position(|n| n == w)
                .expect("selected columns exist")
        })
        .collect();
    let mut values = Vec::with_capacity(matrix.rows() * indices.len());
    for row in matrix.values.chunks_exact(matrix.width.max(1)) {
        values.extend(indices.iter().map(|i| row[*i]));
    }
    Matrix {
        values,
        labels: matrix.labels.clone(),
        width: indices.len(),
    }
}

/// Lists the clock baseline's inputs: the hour of the stay and, when the
/// data has it, the hours since hospital admission.
pub fn clock_features(spec: &FeatureSpec) -> Vec<String> {
    let mut names = vec![spec.time_column.clone()];
    if spec.hours_since_admission {
        names.push(HOURS_SINCE_ADMISSION.to_string());
    }
    names
}

/// The fitted and calibrated models, with the validation patients that
/// will measure them.
pub struct Fitted {
    pub model_text: String,
    pub params: serde_json::Value,
    pub model: CalibratedModel,
    pub clock_text: String,
    pub clock: ClockBaseline,
    pub validation: PatientSet,
    pub fit_rows: usize,
    pub calibration_rows: usize,
    /// Present when the model was cross-fitted.
    pub out_of_fold: Option<OutOfFold>,
}

/// The measures taken on the validation patients.
pub struct Assessment {
    pub validation: Evaluation,
    pub validation_probabilities: Vec<f64>,
    pub validation_cohort: Cohort,
    pub baselines: Vec<BaselineResult>,
    pub subgroups: Vec<SubgroupResult>,
}

/// Fits the model and the clock baseline, calibrates both and chooses their
/// thresholds. With `training.folds` of 2 or more they are cross-fitted and
/// calibrated on the out-of-fold scores. Otherwise the fit patients fit them
/// and the calibration patients calibrate them.
pub fn fit(
    data: TrainingData,
    spec: &FeatureSpec,
    training: &TrainingConfig,
    alert: &AlertConfig,
) -> Result<Fitted, TrainError> {
    let TrainingData {
        fit,
        calibration,
        validation,
        ..
    } = data;
    let names = &spec.feature_names;
    let clock_names = clock_features(spec);
    let fit_rows = fit.rows();
    let clock_fit = select_columns(&fit.matrix, names, &clock_names);
    let targets = RowTargets::of(&fit);
    // The clock baseline is one booster whatever the model's shape.
    let clock_training = TrainingConfig {
        shape: ModelShape::OneBooster,
        ..training.clone()
    };
    let (model_text, params, model, clock_text, clock, calibration_rows, out_of_fold) =
        if training.folds >= 2 {
            let row_folds = row_folds(&fit, training.seed, training.folds as usize);
            let cohort = Cohort::of(&fit);
            let (model_text, params, scores) =
                cross_fit("model", fit.matrix, &targets, &row_folds, training, names)?;
            let (clock_text, _, clock_scores) = cross_fit(
                "clock",
                clock_fit,
                &targets,
                &row_folds,
                &clock_training,
                &clock_names,
            )?;
            let out_of_fold = OutOfFold::of(&cohort, &scores, training.folds);
            (
                model_text,
                params,
                calibrate(&cohort, &scores, alert),
                clock_text,
                calibrate(&cohort, &clock_scores, alert),
                fit_rows,
                Some(out_of_fold),
            )
        } else {
            let (model_text, params) = train::train_shaped(fit.matrix, &targets, training, names)?;
            let (clock_text, _) = train::train_model(clock_fit, &clock_training, &clock_names)?;
            let trees = TreeModel::parse(&model_text)?;
            let clock_trees = TreeModel::parse(&clock_text)?;
            let cohort = Cohort::of(&calibration);
            let model = calibrate(&cohort, &trees.predict(&calibration.matrix)?, alert);
            let clock_matrix = select_columns(&calibration.matrix, names, &clock_names);
            let clock = calibrate(&cohort, &clock_trees.predict(&clock_matrix)?, alert);
            (
                model_text,
                params,
                model,
                clock_text,
                clock,
                calibration.rows(),
                None,
            )
        };
    Ok(Fitted {
        model_text,
        params,
        model,
        clock_text,
        clock: ClockBaseline {
            feature_names: clock_names,
            calibration: clock.calibration,
            policy: clock.policy,
        },
        validation,
        fit_rows,
        calibration_rows,
        out_of_fold,
    })
}

/// Returns each row's fold: the fold of its patient, from [`train::assign_folds`].
fn row_folds(set: &PatientSet, seed: u64, folds: usize) -> Vec<usize> {
    let patients: Vec<(String, bool)> = set
        .patient_ids
        .iter()
        .zip(&set.patients)
        .map(|(id, rows)| {
            let septic = set.matrix.labels[rows.clone()].iter().any(|l| *l > 0.5);
            (id.clone(), septic)
        })
        .collect();
    let assigned = train::assign_folds(&patients, seed, folds);
    let mut row_folds = vec![0; set.rows()];
    for (rows, fold) in set.patients.iter().zip(assigned) {
        row_folds[rows.clone()].fill(fold);
    }
    row_folds
}

/// Fits the model of `training.shape` without each fold and lets it score
/// that fold. Returns the mean of the fold models as one text model, the
/// parameters, and every row's out-of-fold probability.
fn cross_fit(
    booster: &str,
    matrix: Matrix,
    targets: &RowTargets,
    row_folds: &[usize],
    training: &TrainingConfig,
    names: &[String],
) -> Result<(String, serde_json::Value, Vec<f64>), TrainError> {
    let folds = training.folds as usize;
    let width = matrix.width;
    let mut out_of_fold = vec![f64::NAN; matrix.rows()];
    let mut texts = Vec::with_capacity(folds);
    let mut params = serde_json::Value::Null;
    for fold in 0..folds {
        let in_training = |row: &usize| row_folds[*row] != fold;
        let rows: Vec<usize> = (0..matrix.rows()).filter(in_training).collect();
        let values = gather_rows(&matrix, &rows);
        let labels = rows.iter().map(|row| matrix.labels[*row]).collect();
        let subset = Matrix {
            values,
            labels,
            width,
        };
        if subset.positives() == 0 {
            return Err(TrainError::Data {
                location: format!(
                    "cross-fitting fold {} of training.folds = {folds}",
                    fold + 1
                ),
                message: "the other folds hold no septic patient, and each fold booster needs \
                          one; add septic patients or lower training.folds (1 does not \
                          cross-fit)"
                    .into(),
            });
        }
        let started = std::time::Instant::now();
        let (text, used) = train::train_shaped(subset, &targets.select(&rows), training, names)
            .map_err(|error| match error {
                TrainError::Data { location, message } => TrainError::Data {
                    location: format!(
                        "cross-fitting fold {} of training.folds = {folds}, {location}",
                        fold + 1
                    ),
                    message,
                },
                other => other,
            })?;
        tracing::info!(
            booster,
            fold,
            folds,
            rows = rows.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "fold booster trained"
        );
        let trees = TreeModel::parse(&text)?;
        let held_out: Vec<usize> = (0..matrix.rows()).filter(|r| !in_training(r)).collect();
        let values = gather_rows(&matrix, &held_out);
        for (row, probability) in held_out.iter().zip(trees.predict_rows(&values)) {
            out_of_fold[*row] = probability;
        }
        texts.push(text);
        params = used;
    }
    let text = crate::ensemble::average(&texts)?;
    Ok((text, params, out_of_fold))
}

/// Copies the given rows of a matrix, in that order, into row-major values.
fn gather_rows(matrix: &Matrix, rows: &[usize]) -> Vec<f32> {
    let width = matrix.width;
    let mut values = Vec::with_capacity(rows.len() * width);
    for row in rows {
        values.extend_from_slice(&matrix.values[row * width..(row + 1) * width]);
    }
    values
}

/// Measures the model, its baselines and its subgroups on the validation
/// patients.
pub fn assess(fitted: &Fitted, spec: &FeatureSpec) -> Result<Assessment, TrainError> {
    let names = &spec.feature_names;
    let validation = &fitted.validation;
    let trees = TreeModel::parse(&fitted.model_text)?;
    let clock_trees = TreeModel::parse(&fitted.clock_text)?;
    let cohort = Cohort::of(validation);
    let calibration = &fitted.model.calibration;
    let rule = fitted.model.policy.rule;
    let probabilities: Vec<f64> = trees
        .predict(&validation.matrix)?
        .into_iter()
        .map(|r| calibration.apply(r))
        .collect();
    let evaluation = interval::evaluate_with_intervals(&cohort, &probabilities, rule);

    let clock = &fitted.clock;
    let clock_matrix = select_columns(&validation.matrix, names, &clock.feature_names);
    let clock_probabilities: Vec<f64> = clock_trees
        .predict(&clock_matrix)?
        .into_iter()
        .map(|r| clock.calibration.apply(r))
        .collect();
    let mut baselines = vec![BaselineResult {
        name: "clock".into(),
        description: format!(
            "LightGBM on {} only, calibrated and thresholded like the model",
            clock.feature_names.join(" and ")
        ),
        evaluation: evaluate(&cohort, &clock_probabilities, clock.policy.rule, true),
    }];
    baselines.extend(score_baselines(validation, names, &cohort));

    let groups = PatientGroups::of(validation, spec);
    let subgroups = subgroups(&cohort, &probabilities, rule, &groups);
    Ok(Assessment {
        validation: evaluation,
        validation_probabilities: probabilities,
        validation_cohort: cohort,
        baselines,
        subgroups,
    })
}

/// Measures the bedside scores of a set, each alerting at its usual threshold.
pub fn score_baselines(set: &PatientSet, names: &[String], cohort: &Cohort) -> Vec<BaselineResult> {
    SCORE_BASELINES
        .iter()
        .filter_map(|(name, threshold, description)| {
            let index = names.iter().position(|n| n == name)?;
            let scores: Vec<f64> = set.column(index).map(f64::from).collect();
            Some(BaselineResult {
                name: (*name).into(),
                description: (*description).into(),
                evaluation: evaluate(cohort, &scores, AlertRule::at(*threshold), false),
            })
        })
        .collect()
}

/// Total split gain of each feature in a LightGBM text model, largest first.
pub fn gain_importance(model_text: &str, names: &[String]) -> Vec<(String, f64)> {
    let mut gains = vec![0.0; names.len()];
    let mut features: Vec<usize> = Vec::new();
    for line in model_text.lines() {
        if let Some(list) = line.strip_prefix("split_feature=") {
            features = list.split(' ').filter_map(|f| f.parse().ok()).collect();
        } else if let Some(list) = line.strip_prefix("split_gain=") {
            for (feature, gain) in features.iter().zip(list.split(' ')) {
                if let (Some(total), Ok(gain)) = (gains.get_mut(*feature), gain.parse::<f64>()) {
                    *total += gain;
                }
            }
        }
    }
    let mut ranked: Vec<(String, f64)> = names.iter().cloned().zip(gains).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gain_importance_sums_split_gains() {
        let text = "Tree=0\nsplit_feature=1 0 1\nsplit_gain=2.5 1 0.5\n\nTree=1\nsplit_feature=0\nsplit_gain=4\n";
        let names = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            gain_importance(text, &names),
            [("a".to_string(), 5.0), ("b".to_string(), 3.0)]
        );
    }

    #[test]
    fn age_bands_cover_every_age() {
        assert_eq!(age_band(30.0), "under 45");
        assert_eq!(age_band(65.0), "65 to 79");
        assert_eq!(age_band(100.0), "80 and over");
        assert_eq!(age_band(f64::NAN), "unknown");
    }

    /// 120 patients of 8 hours with two noisy features; every fourth
    /// patient is septic in its last three hours.
    fn synthetic_patients() -> PatientSet {
        let mut set = PatientSet::default();
        set.matrix.width = 2;
        for patient in 0..120 {
            let septic = patient % 4 == 0;
            for hour in 0..8 {
                let positive = septic && hour >= 5;
                let noise = ((patient * 31 + hour * 17) % 13) as f32;
                let signal = if positive { 8.0 } else { 0.0 } + noise;
                set.push_row(
                    &format!("p{patient}"),
                    hour == 0,
                    [signal, hour as f32],
                    f32::from(positive),
                    Some(positive),
                    f64::from(hour as u32),
                );
            }
        }
        set
    }

    fn small_training(folds: u32) -> TrainingConfig {
        let mut config = crate::config::Config::load(&crate::config::ConfigSources::default())
            .unwrap()
            .training;
        config.folds = folds;
        config.shape = ModelShape::OneBooster;
        config.num_iterations = 5;
        config.min_data_in_leaf = 5;
        config.num_threads = 1;
        config
    }

    #[test]
    fn cross_fit_scores_each_fold_unseen() {
        let set = synthetic_patients();
        let training = small_training(3);
        let names = vec!["signal".to_string(), "hour".to_string()];
        let folds = row_folds(&set, training.seed, 3);
        let (text, _, out_of_fold) = cross_fit(
            "model",
            set.matrix.clone(),
            &RowTargets::of(&set),
            &folds,
            &training,
            &names,
        )
        .unwrap();

        let merged = TreeModel::parse(&text).unwrap();
        assert_eq!(merged.num_trees(), 3 * 5);
        let mut mean_log_odds = vec![0.0; set.rows()];
        for fold in 0..3 {
            // The booster fitted on the other folds alone, trained again.
            let kept: Vec<usize> = (0..set.rows()).filter(|r| folds[*r] != fold).collect();
            let subset = Matrix {
                values: kept
                    .iter()
                    .flat_map(|r| set.matrix.values[r * 2..r * 2 + 2].to_vec())
                    .collect(),
                labels: kept.iter().map(|r| set.matrix.labels[*r]).collect(),
                width: 2,
            };
            let (fold_text, _) = train::train_model(subset, &training, &names).unwrap();
            let booster = TreeModel::parse(&fold_text).unwrap();
            for row in 0..set.rows() {
                let values = &set.matrix.values[row * 2..row * 2 + 2];
                mean_log_odds[row] += booster.raw_score(values) / 3.0;
                if folds[row] == fold {
                    assert_eq!(out_of_fold[row], booster.probability(values), "row {row}");
                }
            }
        }
        for (row, expected) in mean_log_odds.iter().enumerate() {
            let values = &set.matrix.values[row * 2..row * 2 + 2];
            assert!(
                (merged.raw_score(values) - expected).abs() < 1e-12,
                "row {row}"
            );
        }
    }

    #[test]
    fn pair_sums_two_poisson_boosters() {
        // `SepsisLabel` turns on an hour after the 12-hour label, so the test
        // detects which of the two the onset booster learned.
        let mut set = synthetic_patients();
        for rows in set.patients.clone().iter().step_by(4) {
            set.outcome[rows.start + 5] = false;
        }
        let mut training = small_training(1);
        training.shape = ModelShape::PatientAndOnset;
        training.onset.num_leaves = 3;
        training.onset.min_data_in_leaf = 4;
        let names = vec!["signal".to_string(), "hour".to_string()];
        let targets = RowTargets::of(&set);
        let (text, params) =
            train::train_shaped(set.matrix.clone(), &targets, &training, &names).unwrap();

        // The same two boosters trained directly: the patient booster on every
        // row, labelled by whether the patient becomes septic, and the onset
        // booster on the septic patients' rows, labelled by `SepsisLabel`.
        let booster = |rows: Vec<usize>, labels: Vec<f32>, params: &serde_json::Value| {
            let set = crate::lightgbm::TrainingSet {
                values: (rows.iter())
                    .flat_map(|r| set.matrix.values[r * 2..r * 2 + 2].to_vec())
                    .collect(),
                labels,
                weights: None,
                width: 2,
                feature_names: &names,
            };
            crate::lightgbm::train(set, params, training.num_iterations).unwrap()
        };
        let mut patient_params = train::lightgbm_params(&training, 1.0);
        patient_params["objective"] = serde_json::json!("poisson");
        let patient = booster(
            (0..set.rows()).collect(),
            (0..set.rows()).map(|r| f32::from(r / 8 % 4 == 0)).collect(),
            &patient_params,
        );
        let septic_rows: Vec<usize> = (0..set.rows()).filter(|r| r / 8 % 4 == 0).collect();
        let mut onset_params = patient_params.clone();
        onset_params["num_leaves"] = serde_json::json!(3);
        onset_params["min_data_in_leaf"] = serde_json::json!(4);
        let onset = booster(
            septic_rows.clone(),
            septic_rows.iter().map(|r| f32::from(r % 8 >= 6)).collect(),
            &onset_params,
        );
        assert_eq!(text, crate::ensemble::sum(&[patient, onset]).unwrap());

        let model = TreeModel::parse(&text).unwrap();
        assert_eq!(model.link(), crate::model::Link::Log);
        assert_eq!(params["objective"], "poisson");
        assert_eq!(params["shape"], "patient_and_onset");
        assert_eq!(params["onset"]["num_leaves"], 3);
        // Among a septic patient's hours, the positive ones score higher.
        let septic_hour =
            |hour: usize| model.probability(&set.matrix.values[hour * 2..hour * 2 + 2]);
        assert!(septic_hour(6) > septic_hour(1));
    }

    #[test]
    fn pair_needs_both_septic_hour_kinds() {
        let mut set = synthetic_patients();
        // Every hour of every septic patient positive: the onset booster
        // would see one class only.
        for (index, rows) in set.patients.clone().iter().enumerate() {
            if index % 4 == 0 {
                set.outcome[rows.clone()].fill(true);
            }
        }
        let mut training = small_training(1);
        training.shape = ModelShape::PatientAndOnset;
        let names = vec!["signal".to_string(), "hour".to_string()];
        training.folds = 3;
        let folds = row_folds(&set, 42, 3);
        let targets = RowTargets::of(&set);
        let in_fold = cross_fit(
            "model",
            set.matrix.clone(),
            &targets,
            &folds,
            &training,
            &names,
        )
        .unwrap_err()
        .to_string();
        assert!(
            in_fold.contains("cross-fitting fold 1 of training.folds = 3"),
            "{in_fold}"
        );
        assert!(in_fold.contains("onset booster"), "{in_fold}");

        training.folds = 1;
        let error =
            train::train_shaped(set.matrix.clone(), &RowTargets::of(&set), &training, &names)
                .unwrap_err()
                .to_string();
        assert!(error.contains("onset booster"), "{error}");
        assert!(error.contains("needs both classes"), "{error}");
    }

    #[test]
    fn folds_keep_patients_whole_and_spread_the_septic() {
        let set = synthetic_patients();
        let folds = row_folds(&set, 42, 3);
        for rows in &set.patients {
            assert!(folds[rows.clone()].iter().all(|f| *f == folds[rows.start]));
        }
        let mut septic_per_fold = [0; 3];
        for rows in &set.patients {
            if set.matrix.labels[rows.clone()].iter().any(|l| *l > 0.5) {
                septic_per_fold[folds[rows.start]] += 1;
            }
        }
        assert_eq!(septic_per_fold, [10, 10, 10]);
        let mut patients_per_fold = [0; 3];
        for rows in &set.patients {
            patients_per_fold[folds[rows.start]] += 1;
        }
        assert_eq!(patients_per_fold, [40, 40, 40]);
    }

    #[test]
    fn fold_sizes_differ_by_one_at_most() {
        // 3 septic and 4 other patients in 5 folds: none may stay empty.
        let patients: Vec<(String, bool)> = (0..7).map(|i| (format!("p{i}"), i < 3)).collect();
        let folds = train::assign_folds(&patients, 7, 5);
        let mut sizes = [0; 5];
        for fold in folds {
            sizes[fold] += 1;
        }
        assert_eq!(sizes, [2, 2, 1, 1, 1]);
    }

    #[test]
    fn fold_without_septic_complement_is_rejected() {
        // One septic patient: the booster fitted without its fold has no septic rows.
        let mut set = synthetic_patients();
        for (index, rows) in set.patients.clone().iter().enumerate() {
            if index > 0 {
                set.matrix.labels[rows.clone()].fill(0.0);
            }
        }
        let folds = row_folds(&set, 42, 3);
        let names = vec!["signal".to_string(), "hour".to_string()];
        let error = cross_fit(
            "model",
            set.matrix.clone(),
            &RowTargets::of(&set),
            &folds,
            &small_training(3),
            &names,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("of training.folds = 3"), "{error}");
        assert!(error.contains("no septic patient"), "{error}");
    }

    #[test]
    fn cross_fit_calibrates_on_all_patients() {
        let set = synthetic_patients();
        let data = TrainingData {
            fit_patients: set.patients.len(),
            fit: set,
            calibration: PatientSet::default(),
            validation: synthetic_patients(),
        };

        let spec = FeatureSpec {
            feature_set_version: "test".into(),
            schema_digest: String::new(),
            id_column: "patient_id".into(),
            time_column: "ICULOS".into(),
            series: Vec::new(),
            statics: Vec::new(),
            windows_hours: Vec::new(),
            delta_hours: 6,
            hours_since_admission: false,
            scores: Vec::new(),
            categoricals: Vec::new(),
            feature_names: vec!["signal".into(), "ICULOS".into()],
        };

        let alert = crate::config::Config::load(&crate::config::ConfigSources::default())
            .unwrap()
            .alert;
        let fitted = fit(data, &spec, &small_training(4), &alert).unwrap();

        assert_eq!(fitted.calibration_rows, 960);
        let out_of_fold = fitted.out_of_fold.unwrap();
        assert_eq!(
            (out_of_fold.folds, out_of_fold.patients, out_of_fold.rows),
            (4, 120, 960)
        );
        // The signal separates the septic hours in every fold.
        assert!(
            out_of_fold.auroc_sepsis_label.unwrap() > 0.9,
            "{out_of_fold:?}"
        );
        assert_eq!(
            TreeModel::parse(&fitted.model_text).unwrap().num_trees(),
            20
        );
        assert_eq!(
            TreeModel::parse(&fitted.clock_text).unwrap().num_trees(),
            20
        );
    }

    #[test]
    fn select_columns_keeps_order_and_labels() {
        let matrix = Matrix {
            values: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            labels: vec![0.0, 1.0],
            width: 3,
        };
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let picked = select_columns(&matrix, &names, &["c".to_string(), "a".to_string()]);
        assert_eq!(picked.values, [3.0, 1.0, 6.0, 4.0]);
        assert_eq!(picked.labels, [0.0, 1.0]);
    }
}
