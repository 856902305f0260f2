//! Utility score of the PhysioNet/Computing in Cardiology Challenge 2019
//! ("Early Prediction of Sepsis from Clinical Data").
//!
//! This follows `compute_prediction_utility` and the cohort normalisation in
//! the challenge's official scorer, `evaluate_sepsis_score.py` in the GitHub
//! repository physionetchallenges/evaluation-2019.
//!
//! Each hourly alarm for a septic patient earns a reward that rises from 0 at
//! 12 hours before onset to `max_u_tp` at 6 hours before, then falls back to
//! 0 at 3 hours after onset. A missed alarm costs nothing up to 6 hours
//! before onset and up to `min_u_fn` at 3 hours after. Every alarm for a
//! non-septic patient costs `u_fp`. Hours later than 3 hours after onset
//! score 0.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Time offsets (hours relative to sepsis onset) and utilities of the score.
///
/// `Default` gives the challenge values. When deserialised, missing fields
/// take their default values and unknown fields are rejected.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UtilityParams {
    /// Earliest offset at which an alarm earns a reward: −12 hours.
    pub dt_early: i32,
    /// Offset at which an alarm earns `max_u_tp`: −6 hours. The scorer also
    /// uses it to locate onset, as `first positive label − dt_optimal`.
    pub dt_optimal: i32,
    /// Last offset that is scored at all: +3 hours.
    pub dt_late: i32,
    /// Reward of an alarm at `dt_optimal`: 1.
    pub max_u_tp: f64,
    /// Cost of a missed alarm at `dt_late`: −2.
    pub min_u_fn: f64,
    /// Cost of an alarm for a non-septic patient, and the floor of the reward
    /// for an alarm before `dt_early`: −0.05.
    pub u_fp: f64,
    /// Utility of a correct non-alarm for a non-septic patient: 0.
    pub u_tn: f64,
}

impl Default for UtilityParams {
    fn default() -> Self {
        UtilityParams {
            dt_early: -12,
            dt_optimal: -6,
            dt_late: 3,
            max_u_tp: 1.0,
            min_u_fn: -2.0,
            u_fp: -0.05,
            u_tn: 0.0,
        }
    }
}

impl UtilityParams {
    /// Checks that the offsets are strictly increasing and all utilities are
    /// finite.
    ///
    /// The scoring functions do not call this and do not panic on invalid
    /// parameters, but the slopes then divide by zero or change sign, so
    /// scores may be infinite, NaN or meaningless.
    pub fn validate(&self) -> Result<(), InvalidUtilityParams> {
        if !(self.dt_early < self.dt_optimal && self.dt_optimal < self.dt_late) {
            return Err(InvalidUtilityParams::OffsetsNotIncreasing {
                dt_early: self.dt_early,
                dt_optimal: self.dt_optimal,
                dt_late: self.dt_late,
            });
        }

        let utilities = [
            ("max_u_tp", self.max_u_tp),
            ("min_u_fn", self.min_u_fn),
            ("u_fp", self.u_fp),
            ("u_tn", self.u_tn),
        ];
        for (field, value) in utilities {
            if !value.is_finite() {
                return Err(InvalidUtilityParams::NotFinite { field, value });
            }
        }
        Ok(())
    }
}

/// Error returned by [`UtilityParams::validate`].
#[derive(Debug, Clone, PartialEq)]
pub enum InvalidUtilityParams {
    /// `dt_early < dt_optimal < dt_late` does not hold.
    OffsetsNotIncreasing {
        dt_early: i32,
        dt_optimal: i32,
        dt_late: i32,
    },
    /// A utility is NaN or infinite.
    NotFinite { field: &'static str, value: f64 },
}

impl fmt::Display for InvalidUtilityParams {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidUtilityParams::OffsetsNotIncreasing {
                dt_early,
                dt_optimal,
                dt_late,
            } => write!(
                formatter,
                "invalid utility parameters: dt_early ({dt_early}), dt_optimal ({dt_optimal}) \
                 and dt_late ({dt_late}) must be strictly increasing"
            ),
            InvalidUtilityParams::NotFinite { field, value } => write!(
                formatter,
                "invalid utility parameters: {field} is {value}, expected a finite number"
            ),
        }
    }
}

impl std::error::Error for InvalidUtilityParams {}

/// Computes one patient's utility: the sum of the utilities of its hours.
///
/// `sepsis_labels` is the challenge's `SepsisLabel` column and `predictions`
/// the hourly alarms, both in record order. Hour `t` is the row's position in
/// the record, not a clock value. The labels are already shifted: a septic
/// patient's label turns true 6 hours before onset (`−dt_optimal`) and stays
/// true. Onset is therefore taken as the first true label's index minus
/// `dt_optimal`, and a patient with no true label is not septic.
///
/// The slices must have equal lengths. Debug builds panic on a mismatch.
/// Release builds do not panic but score the record as if it ended with the
/// shorter slice.
pub fn patient_utility(
    sepsis_labels: &[bool],
    predictions: &[bool],
    params: &UtilityParams,
) -> f64 {
    let (sepsis_labels, predictions) = truncate_to_shorter(sepsis_labels, predictions);
    let curves = UtilityCurves::new(params);
    let onset = sepsis_onset(sepsis_labels, params);

    let mut total = 0.0;
    for (hour, &predicted) in predictions.iter().enumerate() {
        total += curves.hour_utility(hour as i64, onset, predicted);
    }
    total
}

/// Builds the predictions that earn a patient's maximum utility.
///
/// For a septic patient these are alarms from `dt_early` through `dt_late`
/// hours around onset, clipped to the record. A non-septic patient gets no
/// alarm. This matches the scorer's `best_predictions`.
pub fn best_predictions(sepsis_labels: &[bool], params: &UtilityParams) -> Vec<bool> {
    let length = sepsis_labels.len();
    let mut predictions = vec![false; length];
    let Some(onset) = sepsis_onset(sepsis_labels, params) else {
        return predictions;
    };

    let start = (onset + i64::from(params.dt_early)).clamp(0, length as i64) as usize;
    let end = (onset + i64::from(params.dt_late) + 1).clamp(0, length as i64) as usize;
    if start < end {
        predictions[start..end].fill(true);
    }
    predictions
}

/// Utility totals over a set of patients, for the challenge's normalised
/// score.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct UtilityScore {
    /// Sum of the utilities of the predictions that were made.
    pub observed: f64,
    /// Sum of the utilities of [`best_predictions`].
    pub best: f64,
    /// Sum of the utilities of predicting no alarm at all.
    pub inaction: f64,
}

impl UtilityScore {
    /// Adds one patient's observed, best and inaction utilities to the totals.
    ///
    /// The slices must have equal lengths, as for [`patient_utility`]. In
    /// release builds all three utilities are computed on the record cut to
    /// the shorter slice.
    pub fn add_patient(
        &mut self,
        sepsis_labels: &[bool],
        predictions: &[bool],
        params: &UtilityParams,
    ) {
        let (sepsis_labels, predictions) = truncate_to_shorter(sepsis_labels, predictions);
        let best = best_predictions(sepsis_labels, params);
        let no_alarms = vec![false; sepsis_labels.len()];

        self.observed += patient_utility(sepsis_labels, predictions, params);
        self.best += patient_utility(sepsis_labels, &best, params);
        self.inaction += patient_utility(sepsis_labels, &no_alarms, params);
    }

    /// Adds `times` copies of another set of totals, for example one
    /// patient's, to these totals.
    pub fn add(&mut self, other: &UtilityScore, times: f64) {
        self.observed += times * other.observed;
        self.best += times * other.best;
        self.inaction += times * other.inaction;
    }

    /// Computes the normalised utility, `(observed − inaction) / (best − inaction)`.
    ///
    /// This is 1 for the best predictions and 0 for no alarms, and it is
    /// negative when the predictions score below no alarms. Returns `None`
    /// when `best` equals `inaction`, which with the default parameters
    /// happens exactly when no septic patient has been added.
    pub fn normalized(&self) -> Option<f64> {
        let range = self.best - self.inaction;
        if range == 0.0 {
            None
        } else {
            Some((self.observed - self.inaction) / range)
        }
    }
}

/// Slopes and intercepts of the lines `u = m · (t − onset) + b`, computed as
/// the official scorer does.
struct UtilityCurves {
    params: UtilityParams,
    /// Rising reward of an early alarm, 0 at `dt_early` and `max_u_tp` at `dt_optimal`.
    early_slope: f64,
    early_intercept: f64,
    /// Falling reward of a late alarm, `max_u_tp` at `dt_optimal` and 0 at `dt_late`.
    late_slope: f64,
    late_intercept: f64,
    /// Falling cost of a missed alarm, 0 at `dt_optimal` and `min_u_fn` at `dt_late`.
    missed_slope: f64,
    missed_intercept: f64,
}

impl UtilityCurves {
    fn new(params: &UtilityParams) -> Self {
        let dt_early = f64::from(params.dt_early);
        let dt_optimal = f64::from(params.dt_optimal);
        let dt_late = f64::from(params.dt_late);

        let early_slope = params.max_u_tp / (dt_optimal - dt_early);
        let late_slope = -params.max_u_tp / (dt_late - dt_optimal);
        let missed_slope = params.min_u_fn / (dt_late - dt_optimal);
        UtilityCurves {
            params: *params,
            early_slope,
            early_intercept: -early_slope * dt_early,
            late_slope,
            late_intercept: -late_slope * dt_late,
            missed_slope,
            missed_intercept: -missed_slope * dt_optimal,
        }
    }

    /// Computes the utility of one hour, given the onset hour of a septic
    /// patient or `None` for a non-septic patient.
    fn hour_utility(&self, hour: i64, onset: Option<i64>, predicted: bool) -> f64 {
        let params = &self.params;
        let Some(onset) = onset else {
            return if predicted { params.u_fp } else { params.u_tn };
        };

        let offset = hour - onset;
        if offset > i64::from(params.dt_late) {
            return 0.0;
        }

        let offset_hours = offset as f64;
        let at_or_before_optimal = offset <= i64::from(params.dt_optimal);
        match (predicted, at_or_before_optimal) {
            // An alarm before dt_early would score below zero on the line, and
            // the scorer caps that cost at u_fp.
            (true, true) => {
                (self.early_slope * offset_hours + self.early_intercept).max(params.u_fp)
            }
            (true, false) => self.late_slope * offset_hours + self.late_intercept,
            (false, true) => 0.0,
            (false, false) => self.missed_slope * offset_hours + self.missed_intercept,
        }
    }
}

/// Returns the onset hour of a septic patient, or `None` when no label is
/// true.
fn sepsis_onset(sepsis_labels: &[bool], params: &UtilityParams) -> Option<i64> {
    let first_positive = sepsis_labels.iter().position(|&label| label)?;
    Some(first_positive as i64 - i64::from(params.dt_optimal))
}

fn truncate_to_shorter<'a>(
    sepsis_labels: &'a [bool],
    predictions: &'a [bool],
) -> (&'a [bool], &'a [bool]) {
    debug_assert_eq!(
        sepsis_labels.len(),
        predictions.len(),
        "sepsis labels and predictions must have the same length"
    );
    let length = sepsis_labels.len().min(predictions.len());
    (&sepsis_labels[..length], &predictions[..length])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOLERANCE: f64 = 1e-9;

    fn assert_close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() <= TOLERANCE,
            "expected {expected}, got {actual}"
        );
    }

    fn alarms(length: usize, alarm_hours: impl Fn(usize) -> bool) -> Vec<bool> {
        (0..length).map(alarm_hours).collect()
    }

    /// Builds the labels of a 20-hour record that turn true at hour 8, so
    /// onset is hour 14. With default parameters and d = hour − 14, an hour
    /// scores as follows.
    /// - Alarm, d ≤ −6: max(d/6 + 2, −0.05), so 0 at d = −12 and 1 at d = −6.
    /// - Alarm, −6 < d ≤ 3: (3 − d)/9, so 8/9 at d = −5 and 0 at d = 3.
    /// - No alarm, d ≤ −6: 0.
    /// - No alarm, −6 < d ≤ 3: −2(d + 6)/9, so −2/9 at d = −5 and −2 at d = 3.
    /// - Any prediction, d > 3 (hours 18 and 19): 0.
    fn septic_at_hour_8() -> Vec<bool> {
        alarms(20, |hour| hour >= 8)
    }

    /// Deterministic pseudo-random generator (64-bit LCG, high bits).
    struct Lcg(u64);

    impl Lcg {
        fn next_below(&mut self, bound: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % bound
        }
    }

    /// Builds 50 synthetic patients of 1 to 60 hours. Each is septic with
    /// probability 2/5, with the label turning true at a uniform hour, and
    /// raises alarms independently each hour with a per-patient probability
    /// of 0, 0.1, 0.2, 0.3 or 0.4. The draws are in the order written, so a
    /// script with the same generator reproduces the cohort.
    fn synthetic_cohort() -> Vec<(Vec<bool>, Vec<bool>)> {
        let mut rng = Lcg(2019);
        let mut patients = Vec::new();
        for _ in 0..50 {
            let length = 1 + rng.next_below(60);
            let septic = rng.next_below(5) < 2;
            let labels: Vec<bool> = if septic {
                let first_positive = rng.next_below(length);
                (0..length).map(|hour| hour >= first_positive).collect()
            } else {
                vec![false; length as usize]
            };
            let alarm_tenths = rng.next_below(5);
            let predictions: Vec<bool> = (0..length)
                .map(|_| rng.next_below(10) < alarm_tenths)
                .collect();
            patients.push((labels, predictions));
        }
        patients
    }

    #[test]
    fn default_params_are_challenge_values() {
        let params = UtilityParams::default();
        assert_eq!(params.dt_early, -12);
        assert_eq!(params.dt_optimal, -6);
        assert_eq!(params.dt_late, 3);
        assert_eq!(params.max_u_tp, 1.0);
        assert_eq!(params.min_u_fn, -2.0);
        assert_eq!(params.u_fp, -0.05);
        assert_eq!(params.u_tn, 0.0);
        assert_eq!(params.validate(), Ok(()));
    }

    #[test]
    fn validate_rejects_unordered_offsets() {
        let params = UtilityParams {
            dt_optimal: -12,
            ..UtilityParams::default()
        };
        let error = params.validate().unwrap_err();
        assert_eq!(
            error,
            InvalidUtilityParams::OffsetsNotIncreasing {
                dt_early: -12,
                dt_optimal: -12,
                dt_late: 3,
            }
        );
        assert_eq!(
            error.to_string(),
            "invalid utility parameters: dt_early (-12), dt_optimal (-12) and dt_late (3) \
             must be strictly increasing"
        );
    }

    #[test]
    fn validate_rejects_non_finite_utility() {
        let params = UtilityParams {
            u_fp: f64::NAN,
            ..UtilityParams::default()
        };
        let error = params.validate().unwrap_err();
        assert!(matches!(
            error,
            InvalidUtilityParams::NotFinite { field: "u_fp", .. }
        ));
        assert_eq!(
            error.to_string(),
            "invalid utility parameters: u_fp is NaN, expected a finite number"
        );
    }

    #[test]
    fn params_deserialize_with_defaults() {
        let params: UtilityParams = serde_json::from_str(r#"{"u_fp": -0.1}"#).unwrap();
        assert_eq!(
            params,
            UtilityParams {
                u_fp: -0.1,
                ..UtilityParams::default()
            }
        );
        let unknown = serde_json::from_str::<UtilityParams>(r#"{"u_false_positive": -0.1}"#);
        assert!(unknown.is_err());
    }

    #[test]
    fn non_septic_two_false_alarms() {
        // Two alarms at −0.05 each and three correct non-alarms at 0.
        let labels = [false; 5];
        let predictions = [false, true, false, true, false];
        let utility = patient_utility(&labels, &predictions, &UtilityParams::default());
        assert_close(utility, -0.10);
    }

    #[test]
    fn non_septic_no_alarms_is_zero() {
        let utility = patient_utility(&[false; 30], &[false; 30], &UtilityParams::default());
        assert_eq!(utility, 0.0);
    }

    #[test]
    fn non_septic_uses_u_tn() {
        let params = UtilityParams {
            u_tn: 0.25,
            ..UtilityParams::default()
        };
        let utility = patient_utility(&[false; 4], &[false, true, false, false], &params);
        assert_close(utility, 3.0 * 0.25 - 0.05);
    }

    #[test]
    fn septic_single_alarm_at_optimal() {
        // The alarm at hour 8 (d = −6) earns 1. Hours 9..=17 (d = −5..3)
        // are missed: −(2/9)(1 + 2 + … + 9) = −10. Total −9.
        let predictions = alarms(20, |hour| hour == 8);
        let utility = patient_utility(&septic_at_hour_8(), &predictions, &UtilityParams::default());
        assert_close(utility, -9.0);
    }

    #[test]
    fn septic_alarms_from_optimal_to_late() {
        // Hour 8 (d = −6) earns 1, hours 9..=17 (d = −5..3) earn
        // (8 + 7 + … + 0)/9 = 4. Total 5.
        let predictions = alarms(20, |hour| (8..=17).contains(&hour));
        let utility = patient_utility(&septic_at_hour_8(), &predictions, &UtilityParams::default());
        assert_close(utility, 5.0);
    }

    #[test]
    fn septic_best_window_is_optimal() {
        // Hours 2..=7 (d = −12..−7) add (0 + 1 + … + 5)/6 = 2.5 to the 5 of
        // hours 8..=17, so 7.5.
        let labels = septic_at_hour_8();
        let best = best_predictions(&labels, &UtilityParams::default());
        assert_eq!(best, alarms(20, |hour| (2..=17).contains(&hour)));
        assert_close(
            patient_utility(&labels, &best, &UtilityParams::default()),
            7.5,
        );
    }

    #[test]
    fn hour_utility_at_key_offsets() {
        let curves = UtilityCurves::new(&UtilityParams::default());
        let onset = Some(14);
        let alarm = |offset: i64| curves.hour_utility(14 + offset, onset, true);
        let missed = |offset: i64| curves.hour_utility(14 + offset, onset, false);

        assert_close(alarm(-14), -0.05); // below the line, capped at u_fp
        assert_close(alarm(-12), 0.0);
        assert_close(alarm(-9), 0.5);
        assert_close(alarm(-6), 1.0);
        assert_close(alarm(-5), 8.0 / 9.0);
        assert_close(alarm(3), 0.0);
        assert_eq!(alarm(4), 0.0); // not scored

        assert_eq!(missed(-14), 0.0);
        assert_eq!(missed(-6), 0.0);
        assert_close(missed(-5), -2.0 / 9.0);
        assert_close(missed(0), -12.0 / 9.0);
        assert_close(missed(3), -2.0);
        assert_eq!(missed(4), 0.0); // not scored

        assert_close(curves.hour_utility(3, None, true), -0.05);
        assert_eq!(curves.hour_utility(3, None, false), 0.0);
    }

    #[test]
    fn septic_scorer_docstring_example() {
        // The example in the official scorer's compute_prediction_utility
        // docstring, which gives 3.388888888888889. Onset is hour 10, and the
        // alarms at hours 2..=5 (d = −8..−5) earn 2/3 + 5/6 + 1 + 8/9.
        let labels = [false, false, false, false, true, true];
        let predictions = [false, false, true, true, true, true];
        let utility = patient_utility(&labels, &predictions, &UtilityParams::default());
        assert_close(utility, 3.388888888888889);
    }

    #[test]
    fn septic_late_alarms() {
        // Alarms from hour 15 (d = 1) on. Hours 15..=17 earn (2 + 1 + 0)/9,
        // hours 9..=14 (d = −5..0) are missed, −(2/9)(1 + … + 6) = −42/9,
        // hours 18 and 19 are not scored. Total −39/9 = −13/3.
        let predictions = alarms(20, |hour| hour >= 15);
        let utility = patient_utility(&septic_at_hour_8(), &predictions, &UtilityParams::default());
        assert_close(utility, -13.0 / 3.0);
    }

    #[test]
    fn septic_no_alarms_is_missed_cost() {
        // Hours 9..=17 missed: −10.
        let utility = patient_utility(&septic_at_hour_8(), &[false; 20], &UtilityParams::default());
        assert_close(utility, -10.0);
    }

    #[test]
    fn septic_all_alarms() {
        // Hours 0 and 1 (d = −14, −13) cost 0.05 each, hours 2..=7 earn 2.5,
        // hour 8 earns 1, hours 9..=17 earn 4, hours 18 and 19 are not
        // scored: 7.4.
        let utility = patient_utility(&septic_at_hour_8(), &[true; 20], &UtilityParams::default());
        assert_close(utility, 7.4);
    }

    #[test]
    fn septic_from_first_row() {
        // Label true from hour 0, so onset is hour 6 and the 5 hours are
        // d = −6..−2. No alarms: −(2/9)(1 + 2 + 3 + 4) = −20/9. All alarms:
        // 1 + (8 + 7 + 6 + 5)/9 = 35/9, which is also the best possible.
        let params = UtilityParams::default();
        let labels = [true; 5];
        assert_close(patient_utility(&labels, &[false; 5], &params), -20.0 / 9.0);
        assert_close(patient_utility(&labels, &[true; 5], &params), 35.0 / 9.0);
        assert_eq!(best_predictions(&labels, &params), vec![true; 5]);
    }

    #[test]
    fn empty_record_is_zero() {
        assert_eq!(patient_utility(&[], &[], &UtilityParams::default()), 0.0);
        assert!(best_predictions(&[], &UtilityParams::default()).is_empty());
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "sepsis labels and predictions must have the same length")]
    fn length_mismatch_panics_in_debug() {
        patient_utility(&[false, false], &[true], &UtilityParams::default());
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn length_mismatch_scores_shorter() {
        // Only hour 0 is scored: one false alarm for a non-septic record.
        let params = UtilityParams::default();
        assert_close(patient_utility(&[false, false], &[true], &params), -0.05);

        // Cut to 2 hours, the label never turns true, so the patient counts
        // as non-septic and adds nothing to best or inaction.
        let mut score = UtilityScore::default();
        score.add_patient(&[false, false, true], &[true, true], &params);
        assert_close(score.observed, -0.10);
        assert_eq!(score.best, 0.0);
        assert_eq!(score.inaction, 0.0);
    }

    #[test]
    fn best_predictions_non_septic_empty() {
        let best = best_predictions(&[false; 10], &UtilityParams::default());
        assert_eq!(best, vec![false; 10]);
    }

    #[test]
    fn best_predictions_clipped_to_record() {
        // Label true from hour 3, onset hour 9: the window −12..3 is hours
        // −3..=12, clipped to 0..=6 for a 7-hour record.
        let labels = alarms(7, |hour| hour >= 3);
        let best = best_predictions(&labels, &UtilityParams::default());
        assert_eq!(best, vec![true; 7]);
    }

    #[test]
    fn normalized_perfect_is_one() {
        let params = UtilityParams::default();
        let mut score = UtilityScore::default();
        for (labels, _) in synthetic_cohort() {
            let best = best_predictions(&labels, &params);
            score.add_patient(&labels, &best, &params);
        }
        assert_eq!(score.observed, score.best);
        assert_eq!(score.normalized(), Some(1.0));
    }

    #[test]
    fn normalized_no_alarms_is_zero() {
        let params = UtilityParams::default();
        let mut score = UtilityScore::default();
        for (labels, _) in synthetic_cohort() {
            let no_alarms = vec![false; labels.len()];
            score.add_patient(&labels, &no_alarms, &params);
        }
        assert_eq!(score.observed, score.inaction);
        assert_eq!(score.normalized(), Some(0.0));
    }

    #[test]
    fn normalized_all_alarms() {
        // A non-septic 10-hour patient with 10 false alarms (−0.5) and the
        // septic patient of septic_all_alarms (7.4, best 7.5, inaction −10).
        // Totals: observed 6.9, best 7.5, inaction −10, so (6.9 + 10) / 17.5.
        let params = UtilityParams::default();
        let mut score = UtilityScore::default();
        score.add_patient(&[false; 10], &[true; 10], &params);
        score.add_patient(&septic_at_hour_8(), &[true; 20], &params);
        assert_close(score.observed, 6.9);
        assert_close(score.best, 7.5);
        assert_close(score.inaction, -10.0);
        assert_close(score.normalized().unwrap(), 16.9 / 17.5);
    }

    #[test]
    fn normalized_undefined_without_septic() {
        let params = UtilityParams::default();
        let mut score = UtilityScore::default();
        assert_eq!(score.normalized(), None);
        score.add_patient(&[false; 10], &[true; 10], &params);
        score.add_patient(&[false; 3], &[false; 3], &params);
        assert_close(score.observed, -0.5);
        assert_eq!(score.normalized(), None);
    }

    #[test]
    fn synthetic_cohort_matches_reference() {
        // Reference: a Python transcription of the official scorer's
        // compute_prediction_utility and cohort normalisation, run on the
        // same 50 patients (26 septic, 1652 hours, 358 alarms).
        let params = UtilityParams::default();
        let mut score = UtilityScore::default();
        for (labels, predictions) in synthetic_cohort() {
            score.add_patient(&labels, &predictions, &params);
        }
        assert_close(score.observed, -120.7222222222222);
        assert_close(score.best, 175.0);
        assert_close(score.inaction, -186.0);
        assert_close(score.normalized().unwrap(), 0.1808248691905202);
    }

    #[test]
    fn score_serializes_totals() {
        let score = UtilityScore {
            observed: 1.5,
            best: 2.0,
            inaction: -1.0,
        };
        let json = serde_json::to_string(&score).unwrap();
        assert_eq!(json, r#"{"observed":1.5,"best":2.0,"inaction":-1.0}"#);
    }
}
