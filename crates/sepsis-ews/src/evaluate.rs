//! How good a model's alerts are, at three levels:
//!
//! - per hour: AUROC and AUPRC against the 12-hour training label and
//!   against the challenge's `SepsisLabel`, the PhysioNet 2019 utility, and
//!   the confusion rates at the alert threshold;
//! - per patient: the share of septic patients alerted in time (within the
//!   12 hours before onset), the median hours of warning, and the share of
//!   alerted patients who are septic;
//! - burden and calibration: alerts per patient-day, where an alert counts
//!   when the alert state switches on, and how well the probabilities match
//!   outcome rates.
//!
//! Onset is t_sepsis, six hours after the first hour whose `SepsisLabel` is 1.
//! An alert more than 12 hours before onset counts as a false alarm, as in
//! the challenge utility. Baselines and subgroups go through the same code.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::calibration::{calibration_report, CalibrationReport};
use crate::interval::Intervals;
use crate::metrics::{self, Confusion};
use crate::train::PatientSet;
use crate::utility::{UtilityParams, UtilityScore};

/// Hours from the first positive `SepsisLabel` to onset.
pub const OUTCOME_TO_ONSET_HOURS: f64 = 6.0;
/// How long before onset an alert counts as a warning.
pub const WARNING_HORIZON_HOURS: f64 = 12.0;

/// The outcomes of a group of patients, without their features.
#[derive(Debug, Default, Clone)]
pub struct Cohort {
    /// The 12-hour label of each row, the model's target.
    pub labels: Vec<bool>,
    /// The challenge outcome (`SepsisLabel`) of each row.
    pub outcome: Vec<bool>,
    pub hours: Vec<f64>,
    pub patients: Vec<Range<usize>>,
}

impl Cohort {
    pub fn of(set: &PatientSet) -> Cohort {
        Cohort {
            labels: set.matrix.labels.iter().map(|l| *l > 0.5).collect(),
            outcome: set.outcome.clone(),
            hours: set.hours.clone(),
            patients: set.patients.clone(),
        }
    }

    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    pub fn alert_states(&self, scores: &[f64], rule: AlertRule) -> Vec<bool> {
        rule.states(&self.hours, &self.patients, scores)
    }

    /// Selects the patients for which `keep(patient index)` is true, with
    /// their scores.
    pub fn select(&self, scores: &[f64], keep: impl Fn(usize) -> bool) -> (Cohort, Vec<f64>) {
        let mut cohort = Cohort::default();
        let mut kept = Vec::new();
        for (index, range) in self.patients.iter().enumerate() {
            if !keep(index) {
                continue;
            }
            let start = cohort.labels.len();
            cohort.labels.extend_from_slice(&self.labels[range.clone()]);
            cohort
                .outcome
                .extend_from_slice(&self.outcome[range.clone()]);
            cohort.hours.extend_from_slice(&self.hours[range.clone()]);
            cohort.patients.push(start..start + range.len());
            kept.extend_from_slice(&scores[range.clone()]);
        }
        (cohort, kept)
    }

    /// Returns the onset hour of each patient, `None` for patients without sepsis.
    fn onsets(&self) -> Vec<Option<f64>> {
        self.patients
            .iter()
            .map(|range| {
                let first = self.outcome[range.clone()].iter().position(|o| *o)?;
                Some(self.hours[range.start + first] + OUTCOME_TO_ONSET_HOURS)
            })
            .collect()
    }
}

/// When an hour is in alert: its score, or a score of the `hold_hours`
/// before it in the same stay, reached the threshold. Holding the alert on
/// keeps a score that wavers around the threshold from raising a new alert
/// each time it crosses. Without a threshold nothing alerts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    pub threshold: Option<f64>,
    pub hold_hours: f64,
}

impl AlertRule {
    /// Alerts at a threshold with no hold, as the bedside scores are used.
    pub fn at(threshold: f64) -> AlertRule {
        AlertRule {
            threshold: Some(threshold),
            hold_hours: 0.0,
        }
    }

    /// Returns the alert state of each row. `patients` are the rows of each
    /// stay and `hours` their hours. The state at an hour reads no later hour.
    pub fn states(&self, hours: &[f64], patients: &[Range<usize>], scores: &[f64]) -> Vec<bool> {
        let mut states = vec![false; scores.len()];
        let Some(threshold) = self.threshold else {
            return states;
        };
        for range in patients {
            let mut last_crossing: Option<f64> = None;
            for row in range.clone() {
                if scores[row] >= threshold {
                    last_crossing = Some(hours[row]);
                }
                states[row] = last_crossing.is_some_and(|h| hours[row] - h <= self.hold_hours);
            }
        }
        states
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourlyMetrics {
    /// Against the 12-hour label the model is trained on.
    pub auroc: Option<f64>,
    pub auprc: Option<f64>,
    /// Against the challenge's `SepsisLabel` (1 from 6 h before onset).
    pub auroc_sepsis_label: Option<f64>,
    pub auprc_sepsis_label: Option<f64>,
    /// PhysioNet 2019 normalised utility: 1 is optimal, 0 is never alerting.
    pub utility: Option<f64>,
    /// Confusion rates of the alert state against the 12-hour label.
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub specificity: Option<f64>,
    pub f1: Option<f64>,
    pub rows: usize,
    pub positive_rows: usize,
    pub confusion: Confusion,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PatientMetrics {
    pub patients: usize,
    pub septic_patients: usize,
    /// Septic patients with an alert in the 12 hours up to onset.
    pub septic_alerted_in_time: usize,
    /// Their share of the septic patients.
    pub alerted_in_time_share: Option<f64>,
    /// Median hours from the switch-on of the first alert that is on in time
    /// to onset.
    pub median_lead_hours: Option<f64>,
    /// Patients with at least one alert.
    pub alerted_patients: usize,
    /// The share of alerted patients who are septic.
    pub precision: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BurdenMetrics {
    /// Times an alert state switched on.
    pub alerts: usize,
    pub patient_days: f64,
    pub alerts_per_patient_day: Option<f64>,
    /// The share of hours spent in alert.
    pub alert_hour_share: Option<f64>,
}

/// Every measure of one set of scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    #[serde(flatten)]
    pub rule: AlertRule,
    pub hourly: HourlyMetrics,
    pub patients: PatientMetrics,
    pub burden: BurdenMetrics,
    /// Only for scores that are probabilities.
    pub calibration: Option<CalibrationReport>,
    /// Hours of warning of each septic patient alerted in time.
    pub lead_times_hours: Vec<f64>,
    /// Patient-bootstrap confidence intervals; computed for the model on the
    /// validation patients and by `sepsis evaluate`, not for the baselines
    /// and subgroups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Intervals>,
}

/// The alert-level measures that the threshold search needs, computed
/// without the ranking metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlertOutcome {
    pub alerts_per_patient_day: Option<f64>,
    pub patient_precision: Option<f64>,
    pub utility: Option<f64>,
    pub alerted_in_time_share: Option<f64>,
}

struct AlertCounts {
    alerts: usize,
    alerted_patients: usize,
    alerted_septic_patients: usize,
    septic_patients: usize,
    septic_alerted_in_time: usize,
    lead_times: Vec<f64>,
    utility: UtilityScore,
}

/// One stay's alerts, the parts of the cohort's alert measures that each
/// stay adds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StayAlerts {
    /// Times the alert switched on.
    pub switch_ons: usize,
    pub alerted: bool,
    pub utility: UtilityScore,
    pub septic: bool,
    /// For a septic stay alerted within the warning horizon before onset,
    /// the hours from that alert's switch-on to onset.
    pub lead_hours: Option<f64>,
}

impl Cohort {
    /// Returns each stay's alerts, given the alert state of every row.
    pub(crate) fn stay_alerts<'a>(
        &'a self,
        alerts: &'a [bool],
    ) -> impl Iterator<Item = StayAlerts> + 'a {
        let params = UtilityParams::default();
        self.patients
            .iter()
            .zip(self.onsets())
            .map(move |(range, onset)| {
                let states = &alerts[range.clone()];
                let hours = &self.hours[range.clone()];
                let mut utility = UtilityScore::default();
                utility.add_patient(&self.outcome[range.clone()], states, &params);
                StayAlerts {
                    switch_ons: states
                        .iter()
                        .enumerate()
                        .filter(|(i, on)| **on && (*i == 0 || !states[i - 1]))
                        .count(),
                    alerted: states.iter().any(|on| *on),
                    utility,
                    septic: onset.is_some(),
                    lead_hours: onset.and_then(|onset| lead_hours(hours, states, onset)),
                }
            })
    }
}

/// Returns the hours from the switch-on of the first alert that is on
/// within the warning horizon before `onset` to onset, or `None`.
fn lead_hours(hours: &[f64], states: &[bool], onset: f64) -> Option<f64> {
    let mut start = hours
        .iter()
        .zip(states)
        .position(|(hour, on)| *on && *hour <= onset && *hour >= onset - WARNING_HORIZON_HOURS)?;
    // The warning began when that alert switched on, which may be before
    // the horizon.
    while start > 0 && states[start - 1] {
        start -= 1;
    }
    Some(onset - hours[start])
}

fn count_alerts(cohort: &Cohort, alerts: &[bool]) -> AlertCounts {
    let mut counts = AlertCounts {
        alerts: 0,
        alerted_patients: 0,
        alerted_septic_patients: 0,
        septic_patients: 0,
        septic_alerted_in_time: 0,
        lead_times: Vec::new(),
        utility: UtilityScore::default(),
    };
    for stay in cohort.stay_alerts(alerts) {
        counts.alerts += stay.switch_ons;
        counts.alerted_patients += usize::from(stay.alerted);
        counts.utility.add(&stay.utility, 1.0);
        if !stay.septic {
            continue;
        }
        counts.septic_patients += 1;
        counts.alerted_septic_patients += usize::from(stay.alerted);
        if let Some(lead) = stay.lead_hours {
            counts.septic_alerted_in_time += 1;
            counts.lead_times.push(lead);
        }
    }
    counts
}

fn ratio(numerator: usize, denominator: usize) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

fn patient_days(cohort: &Cohort) -> f64 {
    cohort.rows() as f64 / 24.0
}

/// Computes the alert-level measures of `scores` under `rule`.
pub fn alert_outcome(cohort: &Cohort, scores: &[f64], rule: AlertRule) -> AlertOutcome {
    let counts = count_alerts(cohort, &cohort.alert_states(scores, rule));
    let days = patient_days(cohort);
    AlertOutcome {
        alerts_per_patient_day: (days > 0.0).then(|| counts.alerts as f64 / days),
        patient_precision: ratio(counts.alerted_septic_patients, counts.alerted_patients),
        utility: counts.utility.normalized(),
        alerted_in_time_share: ratio(counts.septic_alerted_in_time, counts.septic_patients),
    }
}

/// Measures `scores` (one per row) under `rule`. With `probabilities` set,
/// the scores are probabilities and the calibration measures are added.
pub fn evaluate(
    cohort: &Cohort,
    scores: &[f64],
    rule: AlertRule,
    probabilities: bool,
) -> Evaluation {
    let alerts = cohort.alert_states(scores, rule);
    let confusion = Confusion::from_predictions(&cohort.labels, &alerts);
    let counts = count_alerts(cohort, &alerts);
    let days = patient_days(cohort);
    let alert_hours = alerts.iter().filter(|on| **on).count();

    let hourly = HourlyMetrics {
        auroc: metrics::auroc(&cohort.labels, scores),
        auprc: metrics::auprc(&cohort.labels, scores),
        auroc_sepsis_label: metrics::auroc(&cohort.outcome, scores),
        auprc_sepsis_label: metrics::auprc(&cohort.outcome, scores),
        utility: counts.utility.normalized(),
        precision: confusion.precision(),
        recall: confusion.recall(),
        specificity: confusion.specificity(),
        f1: confusion.f1(),
        rows: cohort.rows(),
        positive_rows: cohort.labels.iter().filter(|l| **l).count(),
        confusion,
    };
    let patients = PatientMetrics {
        patients: cohort.patients.len(),
        septic_patients: counts.septic_patients,
        septic_alerted_in_time: counts.septic_alerted_in_time,
        alerted_in_time_share: ratio(counts.septic_alerted_in_time, counts.septic_patients),
        median_lead_hours: median(&counts.lead_times),
        alerted_patients: counts.alerted_patients,
        precision: ratio(counts.alerted_septic_patients, counts.alerted_patients),
    };
    let burden = BurdenMetrics {
        alerts: counts.alerts,
        patient_days: days,
        alerts_per_patient_day: (days > 0.0).then(|| counts.alerts as f64 / days),
        alert_hour_share: ratio(alert_hours, cohort.rows()),
    };
    let calibration = if probabilities {
        calibration_report(scores, &cohort.labels)
    } else {
        None
    };
    Evaluation {
        rule,
        hourly,
        patients,
        burden,
        calibration,
        lead_times_hours: counts.lead_times,
        intervals: None,
    }
}

pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    })
}

/// Points `(x, y)` of a curve.
pub type Curve = Vec<(f64, f64)>;

/// Returns the points of the ROC curve `(false positive rate, true positive
/// rate)` and of the precision-recall curve `(recall, precision)`, about
/// `max_points` each at most, for charts.
pub fn curves(labels: &[bool], scores: &[f64], max_points: usize) -> (Curve, Curve) {
    let mut ranked: Vec<(f64, bool)> = scores
        .iter()
        .copied()
        .zip(labels.iter().copied())
        .filter(|(s, _)| !s.is_nan())
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let positives = ranked.iter().filter(|(_, l)| *l).count();
    let negatives = ranked.len() - positives;
    if positives == 0 || negatives == 0 {
        return (Vec::new(), Vec::new());
    }
    let step = (ranked.len() / max_points.max(1)).max(1);
    let mut roc = vec![(0.0, 0.0)];
    let mut pr = Vec::new();
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut since_point = 0;
    for (i, group) in ranked.chunk_by(|a, b| a.0 == b.0).enumerate() {
        let group_tp = group.iter().filter(|(_, l)| *l).count();
        tp += group_tp;
        fp += group.len() - group_tp;
        since_point += group.len();
        let last = tp + fp == ranked.len();
        if since_point >= step || last || i == 0 {
            since_point = 0;
            let recall = tp as f64 / positives as f64;
            roc.push((fp as f64 / negatives as f64, recall));
            pr.push((recall, tp as f64 / (tp + fp) as f64));
        }
    }
    (roc, pr)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds one septic patient, hours 1–20, `SepsisLabel` from hour 15 (onset at
    /// 21), 12-hour label from hour 9; and one patient without sepsis.
    fn cohort() -> Cohort {
        let septic_hours: Vec<f64> = (1..=20).map(f64::from).collect();
        let other_hours: Vec<f64> = (1..=28).map(f64::from).collect();
        let mut cohort = Cohort::default();
        for hour in &septic_hours {
            cohort.labels.push(*hour >= 9.0);
            cohort.outcome.push(*hour >= 15.0);
        }
        for _ in &other_hours {
            cohort.labels.push(false);
            cohort.outcome.push(false);
        }
        cohort.hours = septic_hours.iter().chain(&other_hours).copied().collect();
        cohort.patients = vec![0..20, 20..48];
        cohort
    }

    #[test]
    fn alerts_count_when_they_switch_on() {
        let cohort = cohort();
        let mut scores = vec![0.0; 48];
        // The septic patient alerts from hour 12 on; the other twice, two hours each.
        for score in &mut scores[11..20] {
            *score = 0.9;
        }
        for row in [22, 23, 30, 31] {
            scores[row] = 0.8;
        }
        let result = evaluate(&cohort, &scores, AlertRule::at(0.5), true);
        assert_eq!(result.burden.alerts, 3);
        assert_eq!(result.burden.patient_days, 2.0);
        assert_eq!(result.burden.alerts_per_patient_day, Some(1.5));
        assert_eq!(result.patients.septic_alerted_in_time, 1);
        // Onset at hour 21, first alert at 12: nine hours of warning.
        assert_eq!(result.lead_times_hours, [9.0]);
        assert_eq!(result.patients.median_lead_hours, Some(9.0));
        assert_eq!(result.patients.alerted_patients, 2);
        assert_eq!(result.patients.precision, Some(0.5));
        assert!(result.calibration.is_some());
        assert!(result.hourly.utility.unwrap() > 0.0);
    }

    #[test]
    fn warning_starts_when_the_alert_switched_on() {
        let cohort = cohort();
        let mut scores = vec![0.0; 48];
        // On from hour 5 through hour 20: a warning of 16 h before onset at 21.
        for score in &mut scores[4..20] {
            *score = 0.9;
        }
        let result = evaluate(&cohort, &scores, AlertRule::at(0.5), false);
        assert_eq!(result.lead_times_hours, [16.0]);
    }

    #[test]
    fn alert_long_before_onset_is_no_warning() {
        let cohort = cohort();
        let mut scores = vec![0.0; 48];
        scores[2] = 0.9; // hour 3, 18 h before onset
        let result = evaluate(&cohort, &scores, AlertRule::at(0.5), false);
        assert_eq!(result.patients.septic_alerted_in_time, 0);
        assert_eq!(result.patients.alerted_patients, 1);
        assert!(result.calibration.is_none());
    }

    #[test]
    fn no_threshold_means_no_alerts() {
        let cohort = cohort();
        let scores = vec![1.0; 48];
        let no_threshold = AlertRule {
            threshold: None,
            hold_hours: 0.0,
        };
        let result = evaluate(&cohort, &scores, no_threshold, true);
        assert_eq!(result.burden.alerts, 0);
        assert_eq!(result.hourly.utility, Some(0.0));
        assert_eq!(result.patients.precision, None);
    }

    #[test]
    fn perfect_scores_rank_perfectly() {
        let cohort = cohort();
        let scores: Vec<f64> = cohort
            .labels
            .iter()
            .map(|l| f64::from(u8::from(*l)))
            .collect();
        let result = evaluate(&cohort, &scores, AlertRule::at(0.5), true);
        assert_eq!(result.hourly.auroc, Some(1.0));
        assert_eq!(result.hourly.precision, Some(1.0));
        assert_eq!(result.hourly.recall, Some(1.0));
        let (roc, pr) = curves(&cohort.labels, &scores, 100);
        assert_eq!(roc.first(), Some(&(0.0, 0.0)));
        assert_eq!(roc.last(), Some(&(1.0, 1.0)));
        assert_eq!(pr[0], (1.0, 1.0));
    }

    #[test]
    fn held_alerts_stay_on_and_count_once() {
        let cohort = cohort();
        let mut scores = vec![0.0; 48];
        // The patient without sepsis crosses at hours 3, 5 and 12.
        for row in [22, 24, 31] {
            scores[row] = 0.8;
        }
        let held = AlertRule {
            threshold: Some(0.5),
            hold_hours: 2.0,
        };
        let states = cohort.alert_states(&scores, held);
        let on: Vec<usize> = (20..48).filter(|r| states[*r]).map(|r| r - 19).collect();
        assert_eq!(on, [3, 4, 5, 6, 7, 12, 13, 14]);
        assert_eq!(evaluate(&cohort, &scores, held, false).burden.alerts, 2);
        assert_eq!(
            evaluate(&cohort, &scores, AlertRule::at(0.5), false)
                .burden
                .alerts,
            3
        );
        // The hold never reaches into the next stay.
        scores[19] = 0.9;
        assert!(!cohort.alert_states(&scores, held)[20]);
    }

    #[test]
    fn select_keeps_whole_patients() {
        let cohort = cohort();
        let scores: Vec<f64> = (0..48).map(f64::from).collect();
        let (other, kept) = cohort.select(&scores, |index| index == 1);
        assert_eq!(other.patients, vec![0..28]);
        assert_eq!(kept[0], 20.0);
        assert_eq!(other.hours[0], 1.0);
    }
}
