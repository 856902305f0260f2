//! Confidence intervals of a model's measures by the patient bootstrap.
//!
//! The hours of one stay are not independent of each other, so the
//! resampled unit is the patient. Each resample draws as many patients as
//! the cohort has, with replacement, and measures the drawn stays; a stay
//! drawn twice counts twice. The interval is the middle 95 % of the
//! resampled values (the percentile bootstrap).
//!
//! A resample does not copy rows. The rows are sorted by score once, and
//! each resample weighs every row by how often its patient was drawn, so one
//! resample costs one pass over the rows.

use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::GateMetric;
use crate::evaluate::{evaluate, AlertRule, Cohort, Evaluation, StayAlerts};
use crate::utility::UtilityScore;

/// Resamples per interval.
pub const RESAMPLES: usize = 1000;
/// The share of the resampled values that an interval holds.
pub const LEVEL: f64 = 0.95;
/// Fixed, so that the intervals of a run can be reproduced.
const SEED: u64 = 2019;
/// Fewer patients than this give no intervals: the draws would repeat the
/// same few stays and suggest a certainty that the data does not have.
pub const MIN_PATIENTS: usize = 10;
/// Fewer septic patients than this give no interval of the measures that
/// need them (AUROC, AUPRC and utility).
pub const MIN_SEPTIC_PATIENTS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// The intervals of the measures that the targets and the gate use. A
/// resample that cannot compute a measure (one that drew no septic patient)
/// is left out of that measure's interval. A measure is `None` when the
/// cohort is below the minimums above or when fewer than half of the
/// resamples could compute it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intervals {
    pub level: f64,
    pub resamples: usize,
    pub auroc_sepsis_label: Option<Interval>,
    pub auprc_sepsis_label: Option<Interval>,
    pub utility: Option<Interval>,
    pub alerts_per_patient_day: Option<Interval>,
}

impl Intervals {
    /// Describes the intervals in one sentence, for the summaries people read.
    pub fn sentence(&self) -> String {
        let parts: Vec<String> = [
            ("AUROC on SepsisLabel", self.auroc_sepsis_label),
            ("AUPRC on SepsisLabel", self.auprc_sepsis_label),
            ("utility", self.utility),
            ("alerts per patient-day", self.alerts_per_patient_day),
        ]
        .into_iter()
        .filter_map(|(name, interval)| {
            interval.map(|i| format!("{name} {:.3} to {:.3}", i.low, i.high))
        })
        .collect();
        let needs =
            format!("at least {MIN_PATIENTS} patients, {MIN_SEPTIC_PATIENTS} of them septic");
        let measures = match parts.len() {
            0 => format!("none could be computed, as they need {needs}"),
            4 => parts.join(", "),
            _ => format!("{}; the others need {needs}", parts.join(", ")),
        };
        format!(
            "{} % intervals from {} resamples of the patients: {measures}",
            (self.level * 100.0).round(),
            thousands(self.resamples)
        )
    }
}

/// Evaluates a model's probabilities as `evaluate::evaluate` does, with
/// the intervals.
pub fn evaluate_with_intervals(
    cohort: &Cohort,
    probabilities: &[f64],
    rule: AlertRule,
) -> Evaluation {
    Evaluation {
        intervals: Some(patient_bootstrap(cohort, probabilities, rule)),
        ..evaluate(cohort, probabilities, rule, true)
    }
}

/// Computes the intervals of `scores` on `cohort`, alerting by `rule`.
pub fn patient_bootstrap(cohort: &Cohort, scores: &[f64], rule: AlertRule) -> Intervals {
    let mut intervals = Intervals {
        level: LEVEL,
        resamples: RESAMPLES,
        auroc_sepsis_label: None,
        auprc_sepsis_label: None,
        utility: None,
        alerts_per_patient_day: None,
    };
    if cohort.patients.len() < MIN_PATIENTS || scores.len() != cohort.rows() {
        return intervals;
    }

    let enough_septic = septic_patients(cohort) >= MIN_SEPTIC_PATIENTS;
    let stays = Stays::of(cohort, scores, rule);
    let ranking = Ranking::of(&cohort.outcome, scores, &cohort.patients);

    let ranking = ranking.as_ref().filter(|_| enough_septic);
    let mut samples: [Vec<f64>; 4] = Default::default();
    resample(cohort.patients.len(), |draws| {
        let measures = [
            ranking.and_then(|r| r.auroc(draws)),
            ranking.and_then(|r| r.auprc(draws)),
            stays.utility(draws).filter(|_| enough_septic),
            stays.alerts_per_patient_day(draws),
        ];
        for (sample, value) in samples.iter_mut().zip(measures) {
            sample.extend(value);
        }
    });

    let [auroc, auprc, utility, alerts] =
        samples.map(|mut sample| percentile_interval(&mut sample));
    intervals.auroc_sepsis_label = auroc;
    intervals.auprc_sepsis_label = auprc;
    intervals.utility = utility;
    intervals.alerts_per_patient_day = alerts;
    intervals
}

/// Computes the interval of the gain of `candidate` over `production` in
/// the gate's measure, both scored on the same cohort. The same draws
/// measure both models (the paired bootstrap), so what the two share, which
/// patients were drawn, drops out of the gain. Each side is a model's
/// probabilities and its alert rule. Returns `None` under the same minimums
/// as [`patient_bootstrap`], or when the scores do not fit the cohort.
pub fn paired_gain(
    cohort: &Cohort,
    candidate: (&[f64], AlertRule),
    production: (&[f64], AlertRule),
    metric: GateMetric,
) -> Option<Interval> {
    let rows = cohort.rows();
    if candidate.0.len() != rows || production.0.len() != rows {
        return None;
    }
    if cohort.patients.len() < MIN_PATIENTS || septic_patients(cohort) < MIN_SEPTIC_PATIENTS {
        return None;
    }
    let sides =
        [candidate, production].map(|(scores, rule)| Side::of(cohort, scores, rule, metric));

    let mut gains = Vec::with_capacity(RESAMPLES);
    resample(cohort.patients.len(), |draws| {
        let [candidate, production] = [&sides[0], &sides[1]].map(|side| side.measure(draws));
        if let (Some(candidate), Some(production)) = (candidate, production) {
            gains.push(candidate - production);
        }
    });
    percentile_interval(&mut gains)
}

/// Calls `measure` with each of the `RESAMPLES` draws of `patients`
/// patients with replacement, given as the times each patient was drawn.
/// The seed is fixed, so every caller sees the same draws.
fn resample(patients: usize, mut measure: impl FnMut(&[f64])) {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut draws = vec![0.0; patients];
    for _ in 0..RESAMPLES {
        draws.fill(0.0);
        for _ in 0..patients {
            draws[rng.random_range(0..patients)] += 1.0;
        }
        measure(&draws);
    }
}

/// One model's stays and the ranking that the gate's measure needs.
struct Side {
    metric: GateMetric,
    stays: Stays,
    ranking: Option<Ranking>,
}

impl Side {
    fn of(cohort: &Cohort, scores: &[f64], rule: AlertRule, metric: GateMetric) -> Side {
        let labels = match metric {
            GateMetric::Auroc | GateMetric::Auprc => Some(&cohort.labels),
            GateMetric::AurocSepsisLabel | GateMetric::AuprcSepsisLabel => Some(&cohort.outcome),
            GateMetric::Utility | GateMetric::SepticAlertedInTime => None,
        };
        Side {
            metric,
            stays: Stays::of(cohort, scores, rule),
            ranking: labels.and_then(|labels| Ranking::of(labels, scores, &cohort.patients)),
        }
    }

    fn measure(&self, draws: &[f64]) -> Option<f64> {
        match self.metric {
            GateMetric::Utility => self.stays.utility(draws),
            GateMetric::Auroc | GateMetric::AurocSepsisLabel => self.ranking.as_ref()?.auroc(draws),
            GateMetric::Auprc | GateMetric::AuprcSepsisLabel => self.ranking.as_ref()?.auprc(draws),
            GateMetric::SepticAlertedInTime => self.stays.alerted_in_time_share(draws),
        }
    }
}

/// Counts the patients with at least one `SepsisLabel` hour.
fn septic_patients(cohort: &Cohort) -> usize {
    cohort
        .patients
        .iter()
        .filter(|range| cohort.outcome[(*range).clone()].contains(&true))
        .count()
}

/// Writes a count with a comma between groups of three digits.
pub(crate) fn thousands(count: usize) -> String {
    let digits = count.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Each patient's part of the alert measures, computed once for all
/// resamples.
struct Stays {
    alerts: Vec<StayAlerts>,
    rows: Vec<f64>,
}

impl Stays {
    fn of(cohort: &Cohort, scores: &[f64], rule: AlertRule) -> Stays {
        let states = cohort.alert_states(scores, rule);
        Stays {
            alerts: cohort.stay_alerts(&states).collect(),
            rows: cohort.patients.iter().map(|r| r.len() as f64).collect(),
        }
    }

    fn alerted_in_time_share(&self, draws: &[f64]) -> Option<f64> {
        let (mut septic, mut in_time) = (0.0, 0.0);
        for (stay, &times) in self.alerts.iter().zip(draws) {
            if stay.septic {
                septic += times;
                in_time += if stay.lead_hours.is_some() {
                    times
                } else {
                    0.0
                };
            }
        }
        (septic > 0.0).then(|| in_time / septic)
    }

    fn utility(&self, draws: &[f64]) -> Option<f64> {
        let mut total = UtilityScore::default();
        for (stay, &times) in self.alerts.iter().zip(draws) {
            total.add(&stay.utility, times);
        }
        total.normalized()
    }

    fn alerts_per_patient_day(&self, draws: &[f64]) -> Option<f64> {
        let days = self.rows.iter().zip(draws).map(|(r, d)| r * d).sum::<f64>() / 24.0;
        let alerts = self
            .alerts
            .iter()
            .zip(draws)
            .map(|(stay, d)| stay.switch_ons as f64 * d)
            .sum::<f64>();
        (days > 0.0).then(|| alerts / days)
    }
}

/// The rows sorted by ascending score, cut into groups of tied scores.
struct Ranking {
    /// Per sorted row: its patient and whether it is positive.
    rows: Vec<(u32, bool)>,
    ties: Vec<Range<usize>>,
}

impl Ranking {
    fn of(labels: &[bool], scores: &[f64], patients: &[Range<usize>]) -> Option<Ranking> {
        if scores.len() != labels.len() || scores.iter().any(|s| s.is_nan()) {
            return None;
        }
        let mut patient_of = vec![0u32; labels.len()];
        for (patient, range) in patients.iter().enumerate() {
            patient_of[range.clone()].fill(patient as u32);
        }
        let mut order: Vec<usize> = (0..labels.len()).collect();
        order.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let mut ties = Vec::new();
        let mut start = 0;
        for i in 1..=order.len() {
            if i == order.len() || scores[order[i]] != scores[order[start]] {
                ties.push(start..i);
                start = i;
            }
        }
        let rows = order.iter().map(|&r| (patient_of[r], labels[r])).collect();
        Some(Ranking { rows, ties })
    }

    /// Sums the drawn positive and negative rows of one tie group.
    fn group(&self, range: &Range<usize>, draws: &[f64]) -> (f64, f64) {
        self.rows[range.clone()].iter().fold(
            (0.0, 0.0),
            |(positives, negatives), &(patient, positive)| {
                let times = draws[patient as usize];
                if positive {
                    (positives + times, negatives)
                } else {
                    (positives, negatives + times)
                }
            },
        )
    }

    /// Computes the AUROC of the drawn rows, a tie counting half, as `metrics::auroc` does.
    fn auroc(&self, draws: &[f64]) -> Option<f64> {
        let (mut won, mut positives, mut negatives) = (0.0, 0.0, 0.0);
        for range in &self.ties {
            let (p, n) = self.group(range, draws);
            won += p * (negatives + n / 2.0);
            positives += p;
            negatives += n;
        }
        (positives > 0.0 && negatives > 0.0).then(|| won / (positives * negatives))
    }

    /// Computes the average precision of the drawn rows, as `metrics::auprc` does.
    fn auprc(&self, draws: &[f64]) -> Option<f64> {
        let groups: Vec<(f64, f64)> = self.ties.iter().map(|r| self.group(r, draws)).collect();
        let positives: f64 = groups.iter().map(|g| g.0).sum();
        if positives == 0.0 {
            return None;
        }
        let (mut true_positives, mut false_positives) = (0.0, 0.0);
        let (mut previous_recall, mut average_precision) = (0.0, 0.0);
        for &(p, n) in groups.iter().rev() {
            true_positives += p;
            false_positives += n;
            if p == 0.0 {
                continue;
            }
            let recall = true_positives / positives;
            average_precision +=
                (recall - previous_recall) * true_positives / (true_positives + false_positives);
            previous_recall = recall;
        }
        Some(average_precision)
    }
}

/// Returns the central `LEVEL` interval of the values, interpolating
/// between neighbours as numpy's default percentile does.
fn percentile_interval(values: &mut [f64]) -> Option<Interval> {
    if values.len() * 2 < RESAMPLES {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    let at = |q: f64| {
        let position = q * (values.len() - 1) as f64;
        let below = position.floor() as usize;
        let above = (below + 1).min(values.len() - 1);
        values[below] + (values[above] - values[below]) * (position - below as f64)
    };
    let tail = (1.0 - LEVEL) / 2.0;
    Some(Interval {
        low: at(tail),
        high: at(1.0 - tail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics;

    /// Builds `count` stays of 3 to 40 hours, about one in five septic, with
    /// tied scores that rank the septic hours higher on average.
    fn cohort(count: usize, seed: u64) -> (Cohort, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut cohort = Cohort::default();
        let mut scores = Vec::new();
        for _ in 0..count {
            let start = cohort.rows();
            let hours = rng.random_range(3..40);
            let onset = rng.random_bool(0.2).then(|| rng.random_range(0..hours));
            for hour in 0..hours {
                let septic = onset.is_some_and(|o| hour >= o);
                cohort.hours.push(hour as f64);
                cohort.outcome.push(septic);
                cohort.labels.push(septic);
                let noise: f64 = rng.random();
                let score = if septic { 0.3 + noise } else { noise };
                scores.push((score * 20.0).round() / 20.0);
            }
            cohort.patients.push(start..cohort.rows());
        }
        (cohort, scores)
    }

    /// Copies the cohort with each patient repeated `draws[patient]` times.
    fn repeated(cohort: &Cohort, scores: &[f64], draws: &[f64]) -> (Cohort, Vec<f64>) {
        let mut out = Cohort::default();
        let mut out_scores = Vec::new();
        for (range, &times) in cohort.patients.iter().zip(draws) {
            for _ in 0..times as usize {
                let start = out.rows();
                out.labels.extend(&cohort.labels[range.clone()]);
                out.outcome.extend(&cohort.outcome[range.clone()]);
                out.hours.extend(&cohort.hours[range.clone()]);
                out_scores.extend(&scores[range.clone()]);
                out.patients.push(start..out.rows());
            }
        }
        (out, out_scores)
    }

    #[test]
    fn weighted_rows_measure_as_repeated_stays() {
        let (cohort, scores) = cohort(60, 1);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let draws: Vec<f64> = (0..60)
            .map(|_| f64::from(rng.random_range(0u8..4)))
            .collect();
        let (copy, copy_scores) = repeated(&cohort, &scores, &draws);

        let rule = AlertRule {
            threshold: Some(0.6),
            hold_hours: 2.0,
        };
        let stays = Stays::of(&cohort, &scores, rule);
        let ranking = Ranking::of(&cohort.outcome, &scores, &cohort.patients).unwrap();
        let close = |a: Option<f64>, b: Option<f64>| (a.unwrap() - b.unwrap()).abs() < 1e-12;
        assert!(close(
            ranking.auroc(&draws),
            metrics::auroc(&copy.outcome, &copy_scores)
        ));
        assert!(close(
            ranking.auprc(&draws),
            metrics::auprc(&copy.outcome, &copy_scores)
        ));
        let expected = crate::evaluate::alert_outcome(&copy, &copy_scores, rule);
        assert!(close(stays.utility(&draws), expected.utility));
        assert!(close(
            stays.alerts_per_patient_day(&draws),
            expected.alerts_per_patient_day
        ));
        assert!(close(
            stays.alerted_in_time_share(&draws),
            expected.alerted_in_time_share
        ));
    }

    #[test]
    fn paired_gain_of_equal_models_is_zero() {
        let (cohort, scores) = cohort(200, 8);
        let rule = AlertRule::at(0.7);
        for metric in GateMetric::ALL {
            let gain = paired_gain(&cohort, (&scores, rule), (&scores, rule), metric).unwrap();
            assert_eq!(
                gain,
                Interval {
                    low: 0.0,
                    high: 0.0
                },
                "{metric}"
            );
        }
    }

    #[test]
    fn paired_gain_holds_the_measured_gain() {
        let (cohort, production) = cohort(300, 9);
        // The candidate ranks septic hours higher still.
        let candidate: Vec<f64> = production
            .iter()
            .zip(&cohort.outcome)
            .map(|(score, septic)| if *septic { score + 0.2 } else { *score })
            .collect();
        let rule = AlertRule::at(0.8);

        let measured = |scores: &[f64], metric| {
            crate::gate::measure(&evaluate(&cohort, scores, rule, true), metric).unwrap()
        };
        for metric in GateMetric::ALL {
            let gain = measured(&candidate, metric) - measured(&production, metric);
            let interval =
                paired_gain(&cohort, (&candidate, rule), (&production, rule), metric).unwrap();
            assert!(
                interval.low <= gain && gain <= interval.high,
                "{metric}: {interval:?} {gain}"
            );
        }

        // On the same draws the gain is far surer than either model's value.
        let gain = paired_gain(
            &cohort,
            (&candidate, rule),
            (&production, rule),
            GateMetric::AurocSepsisLabel,
        )
        .unwrap();
        let alone = patient_bootstrap(&cohort, &production, rule)
            .auroc_sepsis_label
            .unwrap();
        assert!(gain.low > 0.0, "{gain:?}");
        assert!(
            gain.high - gain.low < alone.high - alone.low,
            "{gain:?} {alone:?}"
        );
    }

    #[test]
    fn paired_gain_rejects_misfit_scores() {
        let (cohort, scores) = cohort(50, 10);
        let rule = AlertRule::at(0.5);
        let short = &scores[1..];
        assert_eq!(
            paired_gain(&cohort, (&scores, rule), (short, rule), GateMetric::Utility),
            None
        );
    }

    #[test]
    fn intervals_hold_the_measure_and_repeat() {
        let (cohort, scores) = cohort(300, 3);
        let rule = AlertRule::at(0.8);
        let intervals = patient_bootstrap(&cohort, &scores, rule);
        assert_eq!(intervals, patient_bootstrap(&cohort, &scores, rule));
        let auroc = metrics::auroc(&cohort.outcome, &scores).unwrap();
        let interval = intervals.auroc_sepsis_label.unwrap();
        assert!(
            interval.low < auroc && auroc < interval.high,
            "{interval:?} {auroc}"
        );
        assert!(interval.high - interval.low > 0.005, "{interval:?}");
        let utility = crate::evaluate::alert_outcome(&cohort, &scores, rule)
            .utility
            .unwrap();
        let interval = intervals.utility.unwrap();
        assert!(
            interval.low < utility && utility < interval.high,
            "{interval:?} {utility}"
        );
    }

    #[test]
    fn intervals_need_septic_patients() {
        let (mut cohort, scores) = cohort(50, 4);
        cohort.outcome.fill(false);
        let intervals = patient_bootstrap(&cohort, &scores, AlertRule::at(0.5));
        assert_eq!(intervals.auroc_sepsis_label, None);
        assert_eq!(intervals.auprc_sepsis_label, None);
        assert_eq!(intervals.utility, None);
        assert!(intervals.alerts_per_patient_day.is_some());
    }

    #[test]
    fn intervals_need_enough_patients() {
        let (cohort, scores) = cohort(MIN_PATIENTS - 1, 6);
        let intervals = patient_bootstrap(&cohort, &scores, AlertRule::at(0.5));
        assert_eq!(intervals.alerts_per_patient_day, None);
        assert_eq!(intervals.auroc_sepsis_label, None);
        assert!(intervals.sentence().contains("none could be computed"));
    }

    #[test]
    fn intervals_need_two_septic_patients() {
        let (mut cohort, scores) = cohort(50, 7);
        let septic: Vec<usize> = (0..50)
            .filter(|&p| cohort.outcome[cohort.patients[p].clone()].contains(&true))
            .collect();
        assert!(septic.len() >= 2);
        for &p in &septic[1..] {
            let range = cohort.patients[p].clone();
            cohort.outcome[range].fill(false);
        }
        let intervals = patient_bootstrap(&cohort, &scores, AlertRule::at(0.5));
        assert_eq!(intervals.auroc_sepsis_label, None);
        assert_eq!(intervals.utility, None);
        assert!(intervals.alerts_per_patient_day.is_some());
        assert!(intervals.sentence().contains("the others need"));
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn nan_scores_have_no_ranking_interval() {
        let (cohort, mut scores) = cohort(50, 5);
        scores[3] = f64::NAN;
        let intervals = patient_bootstrap(&cohort, &scores, AlertRule::at(0.5));
        assert_eq!(intervals.auroc_sepsis_label, None);
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        let mut values: Vec<f64> = (0..RESAMPLES).map(|v| v as f64).collect();
        let interval = percentile_interval(&mut values).unwrap();
        // numpy.percentile(range(1000), [2.5, 97.5]) is [24.975, 974.025].
        assert!((interval.low - 24.975).abs() < 1e-9, "{interval:?}");
        assert!((interval.high - 974.025).abs() < 1e-9, "{interval:?}");
    }
}
