//! The alert policy and the model card that records it.
//!
//! The threshold is chosen on the calibration patients, never on the
//! validation patients. The candidates are the thresholds whose alerts stay
//! within the configured budget (alerts per patient-day) and whose alerted
//! patients are septic often enough (the precision floor). Of those, the one
//! with the best utility wins.
//! When no threshold keeps both promises, the policy states that and the
//! model raises no alert, rather than quietly break a promise.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::calibration::IsotonicMap;
use crate::config::{AlertConfig, ModelShape};
use crate::evaluate::{alert_outcome, AlertOutcome, AlertRule, Cohort, Evaluation};

/// Thresholds tried per hold: this many quantiles of the calibration probabilities.
const CANDIDATES: usize = 200;

/// The chosen threshold and the promise it keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertPolicy {
    /// The calibrated probability at or above which an hour alerts, and the
    /// hours the alert then stays on. The threshold is `None` when no rule
    /// keeps the promises, and then the model does not alert.
    #[serde(flatten)]
    pub rule: AlertRule,
    pub max_alerts_per_patient_day: f64,
    pub min_patient_precision: f64,
    /// The measures of the rule on the calibration patients.
    pub on_calibration: Option<AlertOutcome>,
    /// The policy in one sentence.
    pub statement: String,
}

/// Chooses the threshold on calibration patients and their calibrated
/// probabilities.
pub fn choose_threshold(
    cohort: &Cohort,
    probabilities: &[f64],
    config: &AlertConfig,
) -> AlertPolicy {
    let mut best: Option<(AlertRule, AlertOutcome)> = None;
    let thresholds = candidates(probabilities);
    let rules = config.hold_hours.iter().flat_map(|hold| {
        thresholds.iter().map(move |threshold| AlertRule {
            threshold: Some(*threshold),
            hold_hours: f64::from(*hold),
        })
    });
    for rule in rules {
        let outcome = alert_outcome(cohort, probabilities, rule);
        let within_budget = outcome
            .alerts_per_patient_day
            .is_some_and(|a| a <= config.max_alerts_per_patient_day);
        let precise = outcome
            .patient_precision
            .is_some_and(|p| p >= config.min_patient_precision);
        if !(within_budget && precise) {
            continue;
        }
        let utility = outcome.utility.unwrap_or(f64::NEG_INFINITY);
        let better = best
            .as_ref()
            .is_none_or(|(_, b)| utility > b.utility.unwrap_or(f64::NEG_INFINITY));
        if better {
            best = Some((rule, outcome));
        }
    }
    let budget = config.max_alerts_per_patient_day;
    let floor = config.min_patient_precision;
    match best {
        Some((rule, outcome)) => AlertPolicy {
            rule,
            max_alerts_per_patient_day: budget,
            min_patient_precision: floor,
            on_calibration: Some(outcome),
            statement: format!(
                "Alert when the calibrated probability reaches {:.4}, and keep the alert on \
                 for {} h after the last such hour. On the held-out scores it was chosen on, \
                 this gave {:.3} alerts per patient-day (budget {budget}) and {:.1} % of \
                 alerted patients were septic (floor {:.1} %).",
                rule.threshold.unwrap_or(f64::NAN),
                rule.hold_hours,
                outcome.alerts_per_patient_day.unwrap_or(0.0),
                outcome.patient_precision.unwrap_or(0.0) * 100.0,
                floor * 100.0
            ),
        },
        None => AlertPolicy {
            rule: AlertRule {
                threshold: None,
                hold_hours: 0.0,
            },
            max_alerts_per_patient_day: budget,
            min_patient_precision: floor,
            on_calibration: None,
            statement: format!(
                "No threshold keeps both promises on the held-out scores (at most \
                 {budget} alerts per patient-day with at least {:.1} % of alerted patients \
                 septic), so this model raises no alerts.",
                floor * 100.0
            ),
        },
    }
}

/// Distinct quantiles of the probabilities, from the top 0.05 % of hours to
/// the top half, spaced evenly in log rank.
fn candidates(probabilities: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = probabilities
        .iter()
        .copied()
        .filter(|p| p.is_finite())
        .collect();
    if sorted.is_empty() {
        return Vec::new();
    }
    sorted.sort_by(|a, b| b.total_cmp(a));
    let n = sorted.len() as f64;
    let (low, high) = ((n * 0.0005).max(1.0).ln(), (n * 0.5).max(1.0).ln());
    let mut thresholds: Vec<f64> = (0..CANDIDATES)
        .map(|i| {
            let rank = (low + (high - low) * i as f64 / (CANDIDATES - 1) as f64).exp();
            sorted[(rank as usize).min(sorted.len() - 1)]
        })
        .collect();
    thresholds.sort_by(f64::total_cmp);
    thresholds.dedup();
    thresholds
}

/// Everything a user of a model needs to know to trust it, stored beside
/// the model as `model_card.json` and `model_card.md`. Scoring reads the
/// calibration and the threshold from here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCard {
    pub run_id: String,
    pub created_at: String,
    pub intended_use: String,
    /// The patients and rows each group had.
    pub data: CardData,
    pub calibration: IsotonicMap,
    pub policy: AlertPolicy,
    /// The model on the validation patients, at the policy's threshold.
    pub validation: Evaluation,
    /// The same measures of the baselines on the same patients.
    pub baselines: Vec<BaselineResult>,
    /// The clock baseline's calibration and threshold, for scoring other data.
    #[serde(default)]
    pub clock: Option<crate::assess::ClockBaseline>,
    pub limitations: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CardData {
    pub data_digest: String,
    pub feature_version: String,
    pub feature_set_version: String,
    pub features: usize,
    pub fit_patients: usize,
    pub calibration_patients: usize,
    pub validation_patients: usize,
    /// The cross-fitting folds, or 1 when the model was not cross-fitted.
    #[serde(default = "one_fold")]
    pub folds: u32,
    /// The model's shape. Cards written before the setting existed describe
    /// one booster.
    #[serde(default)]
    pub shape: ModelShape,
}

fn one_fold() -> u32 {
    1
}

impl CardData {
    /// Describes what the model is.
    pub fn model_sentence(&self) -> &'static str {
        match self.shape {
            ModelShape::OneBooster => {
                "one LightGBM booster with the binary objective, trained on the 12-hour label; \
                 its raw score is a log-odds"
            }
            ModelShape::PatientAndOnset => {
                "two LightGBM boosters with the Poisson objective, their trees summed into one \
                 model. One learned from every hour whether the patient becomes septic, the \
                 other learned SepsisLabel from the septic patients' hours; the model's output \
                 is the product of the two probabilities and its raw score the log of that \
                 product"
            }
        }
    }

    /// Describes which patients fitted, calibrated and measured the model.
    pub fn patients_sentence(&self) -> String {
        if self.folds >= 2 {
            format!(
                "{} fitted the model in {} folds and, through the scores of the fold \
                 booster that did not see them, calibrated it and chose the threshold; \
                 {} measured it",
                self.fit_patients, self.folds, self.validation_patients
            )
        } else {
            format!(
                "{} fitted the model, {} calibrated it and chose the threshold, {} measured it",
                self.fit_patients, self.calibration_patients, self.validation_patients
            )
        }
    }
}

/// A baseline scored like the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineResult {
    pub name: String,
    pub description: String,
    pub evaluation: Evaluation,
}

impl ModelCard {
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Model card: run {}\n", self.run_id);
        let _ = writeln!(md, "Created {}.\n", self.created_at);
        let _ = writeln!(md, "## Intended use\n\n{}\n", self.intended_use);
        let _ = writeln!(md, "## Alert policy\n\n{}\n", self.policy.statement);

        let d = &self.data;
        let _ = writeln!(
            md,
            "## Data\n\nModel: {}.\n\
             Feature set {} ({} features, version {}), data digest `{}`.\n\
             Patients: {} and took no part in either.\n",
            d.model_sentence(),
            d.feature_set_version,
            d.features,
            d.feature_version,
            d.data_digest,
            d.patients_sentence()
        );

        let _ = writeln!(md, "## Validation patients\n");
        md.push_str(&comparison_table(&self.validation, &self.baselines));
        if let Some(calibration) = &self.validation.calibration {
            let _ = writeln!(
                md,
                "\nCalibration: Brier score {:.4}, expected calibration error {:.4} (ten \
                 equal-width bins) and {:.4} (ten equal-count bins).",
                calibration.brier, calibration.ece, calibration.ece_equal_mass
            );
        }
        if let Some(intervals) = &self.validation.intervals {
            let _ = writeln!(md, "\nFor the model, {}.", intervals.sentence());
        }

        let _ = writeln!(md, "\n## Limitations\n");
        for limitation in &self.limitations {
            let _ = writeln!(md, "- {limitation}");
        }
        md
    }
}

/// Renders a Markdown table of the model beside its baselines.
pub fn comparison_table(model: &Evaluation, baselines: &[BaselineResult]) -> String {
    let mut md = String::from(
        "| scores | AUROC (SepsisLabel) | AUPRC (SepsisLabel) | utility | septic alerted in \
         time | median lead (h) | precision (patients) | alerts per patient-day |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let rows = std::iter::once(("model", model))
        .chain(baselines.iter().map(|b| (b.name.as_str(), &b.evaluation)));
    for (name, e) in rows {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            number(e.hourly.auroc_sepsis_label, 4),
            number(e.hourly.auprc_sepsis_label, 4),
            number(e.hourly.utility, 4),
            percent(e.patients.alerted_in_time_share),
            number(e.patients.median_lead_hours, 1),
            percent(e.patients.precision),
            number(e.burden.alerts_per_patient_day, 3),
        );
    }
    md
}

pub fn number(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.decimals$}"))
}

pub fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{:.1} %", v * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_data_names_the_model_shape() {
        // A card written before the shape was recorded describes one booster.
        let old: CardData = serde_json::from_value(serde_json::json!({
            "data_digest": "d", "feature_version": "v", "feature_set_version": "s",
            "features": 3, "fit_patients": 5, "calibration_patients": 2,
            "validation_patients": 2,
        }))
        .unwrap();
        assert_eq!(old.shape, ModelShape::OneBooster);
        assert!(old.model_sentence().contains("binary objective"));
        let pair = CardData {
            shape: ModelShape::PatientAndOnset,
            ..old
        };
        assert!(pair.model_sentence().contains("Poisson objective"));
        assert!(pair.model_sentence().contains("product"));
    }

    /// Forty patients of 24 hours; every fourth is septic with `SepsisLabel`
    /// from hour 16. Septic patients score 0.9 from hour 10, others 0.1,
    /// except that every fourth patient without sepsis spikes to 0.6 once.
    fn cohort_and_scores() -> (Cohort, Vec<f64>) {
        let mut cohort = Cohort::default();
        let mut scores = Vec::new();
        for patient in 0..40 {
            let septic = patient % 4 == 0;
            let start = cohort.labels.len();
            for hour in 1..=24 {
                cohort.labels.push(septic && hour >= 10);
                cohort.outcome.push(septic && hour >= 16);
                cohort.hours.push(f64::from(hour));
                let score = match (septic, hour) {
                    (true, h) if h >= 10 => 0.9,
                    (false, 5) if patient % 4 == 1 => 0.6,
                    _ => 0.1,
                };
                scores.push(score);
            }
            cohort.patients.push(start..start + 24);
        }
        (cohort, scores)
    }

    fn config(budget: f64, floor: f64) -> AlertConfig {
        AlertConfig {
            max_alerts_per_patient_day: budget,
            min_patient_precision: floor,
            calibration_fraction: 0.2,
            hold_hours: vec![0],
        }
    }

    #[test]
    fn threshold_keeps_budget_and_precision() {
        let (cohort, scores) = cohort_and_scores();
        let policy = choose_threshold(&cohort, &scores, &config(0.5, 0.9));
        let threshold = policy.rule.threshold.expect("0.9 keeps both promises");
        assert!(threshold > 0.6, "{threshold}");
        assert!(threshold <= 0.9, "{threshold}");
        let outcome = policy.on_calibration.unwrap();
        assert_eq!(outcome.patient_precision, Some(1.0));
        assert!(outcome.alerts_per_patient_day.unwrap() <= 0.5);
    }

    #[test]
    fn impossible_promises_mean_no_alerts() {
        let (cohort, scores) = cohort_and_scores();
        // Ten alerts in forty patient-days is 0.25 per day: above this budget.
        let policy = choose_threshold(&cohort, &scores, &config(0.2, 0.9));
        assert_eq!(policy.rule.threshold, None);
        assert!(policy.statement.contains("raises no alerts"));
    }
}
