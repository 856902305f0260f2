//! Validation metrics of a model: ranking quality (AUROC, AUPRC), the
//! confusion-based rates at the configured threshold, and the PhysioNet 2019
//! normalised utility, which scores each hour's alert against sepsis onset.

use serde::{Deserialize, Serialize};

use crate::metrics::{self, Confusion};
use crate::train::ValidationSet;
use crate::utility::{UtilityParams, UtilityScore};

/// Every metric of one evaluation. A metric that is undefined on the data,
/// such as AUROC without a positive row, is `null` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub auroc: Option<f64>,
    pub auprc: Option<f64>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub specificity: Option<f64>,
    /// PhysioNet 2019 normalised utility: 1 is optimal, 0 is never alerting.
    pub utility: Option<f64>,
    pub threshold: f64,
    pub rows: usize,
    pub positive_rows: usize,
    pub patients: usize,
    pub septic_patients: usize,
    pub confusion: Confusion,
}

/// Scores `probabilities` (one per validation row) against the labels.
pub fn evaluate(validation: &ValidationSet, probabilities: &[f64], threshold: f64) -> Metrics {
    let labels: Vec<bool> = validation.matrix.labels.iter().map(|l| *l > 0.5).collect();
    let alerts: Vec<bool> = probabilities.iter().map(|p| *p >= threshold).collect();
    let confusion = Confusion::from_predictions(&labels, &alerts);

    let params = UtilityParams::default();
    let mut utility = UtilityScore::default();
    let mut septic_patients = 0;
    for range in &validation.patients {
        let outcome = &validation.outcome[range.clone()];
        septic_patients += usize::from(outcome.iter().any(|o| *o));
        utility.add_patient(outcome, &alerts[range.clone()], &params);
    }

    Metrics {
        auroc: metrics::auroc(&labels, probabilities),
        auprc: metrics::auprc(&labels, probabilities),
        precision: confusion.precision(),
        recall: confusion.recall(),
        f1: confusion.f1(),
        specificity: confusion.specificity(),
        utility: utility.normalized(),
        threshold,
        rows: labels.len(),
        positive_rows: labels.iter().filter(|l| **l).count(),
        patients: validation.patients.len(),
        septic_patients,
        confusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Matrix;

    #[test]
    fn perfect_scores_give_perfect_metrics() {
        // One septic patient (label from row 0, outcome from row 6) and one
        // non-septic patient.
        let labels: Vec<f32> = (0..10).map(|_| 1.0).chain((0..5).map(|_| 0.0)).collect();
        let outcome: Vec<bool> = (0..10)
            .map(|i| i >= 6)
            .chain((0..5).map(|_| false))
            .collect();
        let validation = ValidationSet {
            matrix: Matrix {
                values: vec![0.0; 15],
                labels: labels.clone(),
                width: 1,
            },
            outcome,
            patients: vec![0..10, 10..15],
        };
        let probabilities: Vec<f64> = labels.iter().map(|l| f64::from(*l)).collect();
        let result = evaluate(&validation, &probabilities, 0.5);
        assert_eq!(result.auroc, Some(1.0));
        assert_eq!(result.precision, Some(1.0));
        assert_eq!(result.recall, Some(1.0));
        assert_eq!(result.septic_patients, 1);
        assert_eq!(result.patients, 2);
        assert!(result.utility.unwrap() > 0.5);
    }
}
