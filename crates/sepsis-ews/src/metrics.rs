//! Binary classification metrics: AUROC, average precision (AUPRC) and
//! confusion-matrix rates.
//!
//! `auroc` and `auprc` match scikit-learn's `roc_auc_score` and
//! `average_precision_score` (checked against scikit-learn 1.9.1), including
//! how tied scores are treated. Both sort once, so they run in O(n log n).
//! The PhysioNet 2019 challenge scorer computes its own AUROC and AUPRC over a
//! different set of thresholds, so its values can differ slightly from these.

use serde::{Deserialize, Serialize};

/// Computes the area under the ROC curve.
///
/// The value is the Mann-Whitney U statistic divided by `P · N`: the fraction
/// of (positive, negative) pairs in which the positive scores higher, with a
/// tie counted as half a pair. This equals scikit-learn's `roc_auc_score`,
/// which integrates the ROC curve with the trapezoidal rule. The pair count is
/// summed in exact integer arithmetic and divided once at the end.
///
/// Returns `None` when the input is empty, when only one class is present,
/// when `labels` and `scores` differ in length, or when any score is NaN
/// (scikit-learn raises an error on NaN). Infinite scores, which scikit-learn
/// also rejects, are ranked like any other value, and `-0.0` ties with `0.0`.
pub fn auroc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    let ranked = sort_by_score(labels, scores)?;
    let (positives, negatives) = count_classes(labels);
    if positives == 0 || negatives == 0 {
        return None;
    }

    // Scanning in ascending score order, each positive beats every negative
    // already passed and ties with the negatives in its own tie group.
    // Counting in halves keeps the tie term an integer.
    let mut negatives_below: u128 = 0;
    let mut twice_pairs_won: u128 = 0;
    for group in ranked.chunk_by(|a, b| a.0 == b.0) {
        let (group_positives, group_negatives) = count_group(group);
        twice_pairs_won +=
            2 * group_positives * negatives_below + group_positives * group_negatives;
        negatives_below += group_negatives;
    }

    let twice_pairs_total = 2 * u128::from(positives) * u128::from(negatives);
    Some(twice_pairs_won as f64 / twice_pairs_total as f64)
}

/// Computes average precision, the step-wise area under the precision-recall
/// curve, as scikit-learn's `average_precision_score` does.
///
/// Each distinct score, taken from the highest down, is a threshold `n` with
/// precision `P_n` and recall `R_n` over the rows scoring at least that value.
/// The result is `Σ (R_n − R_{n−1}) · P_n` with `R_0 = 0`. Rows with tied
/// scores enter together, so no interpolation between them takes place.
///
/// Returns `None` when there are no positive labels (this includes empty
/// input), when `labels` and `scores` differ in length, or when any score is
/// NaN. scikit-learn warns and returns 0.0 for the first case and raises an
/// error for the other two. With positives but no negatives the result is 1.0.
pub fn auprc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    let ranked = sort_by_score(labels, scores)?;
    let (positives, _) = count_classes(labels);
    if positives == 0 {
        return None;
    }

    let positives = positives as f64;
    let mut true_positives: u128 = 0;
    let mut false_positives: u128 = 0;
    let mut previous_recall = 0.0;
    let mut average_precision = 0.0;
    for group in ranked.chunk_by(|a, b| a.0 == b.0).rev() {
        let (group_positives, group_negatives) = count_group(group);
        true_positives += group_positives;
        false_positives += group_negatives;
        if group_positives == 0 {
            // Recall is unchanged, so this threshold adds nothing.
            continue;
        }

        let recall = true_positives as f64 / positives;
        let precision = true_positives as f64 / (true_positives + false_positives) as f64;
        average_precision += (recall - previous_recall) * precision;
        previous_recall = recall;
    }

    Some(average_precision)
}

/// Pairs each score with its label, sorted by ascending score.
///
/// Returns `None` when the slices differ in length or a score is NaN. After
/// the NaN check, `total_cmp` gives a total order that puts `-0.0` right
/// before `0.0`, so grouping neighbours with `==` still ties them.
fn sort_by_score(labels: &[bool], scores: &[f64]) -> Option<Vec<(f64, bool)>> {
    if labels.len() != scores.len() || scores.iter().any(|score| score.is_nan()) {
        return None;
    }

    let mut ranked: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    ranked.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    Some(ranked)
}

/// Counts positive and negative labels.
fn count_classes(labels: &[bool]) -> (u64, u64) {
    let positives = labels.iter().filter(|&&label| label).count() as u64;
    (positives, labels.len() as u64 - positives)
}

/// Counts positive and negative labels in one group of tied scores.
fn count_group(group: &[(f64, bool)]) -> (u128, u128) {
    let positives = group.iter().filter(|(_, label)| *label).count() as u128;
    (positives, group.len() as u128 - positives)
}

/// Counts of a 2×2 confusion matrix, with `true` as the positive class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub true_positives: u64,
    pub false_positives: u64,
    pub true_negatives: u64,
    pub false_negatives: u64,
}

impl Confusion {
    /// Counts each (label, prediction) pair into its cell.
    ///
    /// The slices must have equal lengths. Debug builds panic on a mismatch.
    /// Release builds do not panic but pair the slices with `zip`, so rows
    /// past the end of the shorter slice are left out of the counts.
    pub fn from_predictions(labels: &[bool], predicted: &[bool]) -> Confusion {
        debug_assert_eq!(
            labels.len(),
            predicted.len(),
            "labels and predictions must have the same length"
        );

        let mut confusion = Confusion {
            true_positives: 0,
            false_positives: 0,
            true_negatives: 0,
            false_negatives: 0,
        };
        for (&label, &prediction) in labels.iter().zip(predicted) {
            match (label, prediction) {
                (true, true) => confusion.true_positives += 1,
                (false, true) => confusion.false_positives += 1,
                (false, false) => confusion.true_negatives += 1,
                (true, false) => confusion.false_negatives += 1,
            }
        }
        confusion
    }

    /// Precision, TP / (TP + FP), or `None` when nothing was predicted positive.
    pub fn precision(&self) -> Option<f64> {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    /// Recall (sensitivity), TP / (TP + FN), or `None` when no label is positive.
    pub fn recall(&self) -> Option<f64> {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }

    /// F1 score, 2·TP / (2·TP + FP + FN).
    ///
    /// This is the harmonic mean of precision and recall whenever both exist,
    /// and it is 0.0 when TP = 0 but FP + FN > 0, as in scikit-learn's
    /// `f1_score` since version 1.3. Returns `None` only when TP, FP and FN
    /// are all 0.
    pub fn f1(&self) -> Option<f64> {
        ratio(
            2 * self.true_positives,
            2 * self.true_positives + self.false_positives + self.false_negatives,
        )
    }

    /// Specificity, TN / (TN + FP), or `None` when no label is negative.
    pub fn specificity(&self) -> Option<f64> {
        ratio(
            self.true_negatives,
            self.true_negatives + self.false_positives,
        )
    }
}

fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    if denominator == 0 {
        None
    } else {
        Some(numerator as f64 / denominator as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOLERANCE: f64 = 1e-12;

    fn assert_close(actual: Option<f64>, expected: f64) {
        let actual = actual.expect("metric should be defined");
        assert!(
            (actual - expected).abs() <= TOLERANCE,
            "expected {expected}, got {actual}"
        );
    }

    /// Counts (positive, negative) pairs directly in O(n²), with ties as half.
    fn auroc_by_pairs(labels: &[bool], scores: &[f64]) -> f64 {
        let mut won = 0.0;
        let mut pairs = 0.0;
        for (i, &positive_score) in scores.iter().enumerate() {
            if !labels[i] {
                continue;
            }
            for (j, &negative_score) in scores.iter().enumerate() {
                if labels[j] {
                    continue;
                }
                pairs += 1.0;
                if positive_score > negative_score {
                    won += 1.0;
                } else if positive_score == negative_score {
                    won += 0.5;
                }
            }
        }
        won / pairs
    }

    /// Builds a 1000-row data set with many ties from integer arithmetic
    /// that a Python script can reproduce exactly:
    /// `label = (i * 7919) % 13 < 4 or i % 97 == 0`,
    /// `score = ((i * 104729) % 1000 // 10 + (30 if label else 0)) / 100`.
    fn tied_thousand_rows() -> (Vec<bool>, Vec<f64>) {
        let mut labels = Vec::new();
        let mut scores = Vec::new();
        for i in 0u64..1000 {
            let label = (i * 7919) % 13 < 4 || i % 97 == 0;
            let bonus = if label { 30 } else { 0 };
            labels.push(label);
            scores.push((((i * 104_729) % 1000) / 10 + bonus) as f64 / 100.0);
        }
        (labels, scores)
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

    #[test]
    fn auroc_tiny_hand_computed() {
        // Positives 0.35 and 0.8, negatives 0.1 and 0.4. Of the four
        // (positive, negative) pairs only (0.35, 0.4) is lost, so 3/4.
        let labels = [false, false, true, true];
        let scores = [0.1, 0.4, 0.35, 0.8];
        assert_close(auroc(&labels, &scores), 0.75);
    }

    #[test]
    fn auroc_tied_scores_match_sklearn() {
        // Positives 0.5, 0.5, 0.9 and negatives 0.1, 0.5, 0.5, 0.7.
        // Wins: each 0.5 positive beats 0.1 (1) and ties two 0.5s (1), and
        // 0.9 beats all four, so (2 + 2 + 4) / 12 = 2/3.
        // sklearn roc_auc_score: 0.6666666666666666.
        let labels = [false, true, false, true, false, true, false];
        let scores = [0.1, 0.5, 0.5, 0.5, 0.5, 0.9, 0.7];
        assert_close(auroc(&labels, &scores), 0.6666666666666666);
    }

    #[test]
    fn auroc_thousand_rows_match_sklearn() {
        let (labels, scores) = tied_thousand_rows();
        // sklearn roc_auc_score on the same data.
        assert_close(auroc(&labels, &scores), 0.7539062680418085);
    }

    #[test]
    fn auroc_matches_pair_count() {
        let mut rng = Lcg(42);
        for length in [2usize, 3, 10, 57, 200] {
            // Few distinct scores, so many ties.
            let labels: Vec<bool> = (0..length).map(|_| rng.next_below(3) == 0).collect();
            let scores: Vec<f64> = (0..length).map(|_| rng.next_below(7) as f64).collect();
            let positives = labels.iter().filter(|&&label| label).count();
            if positives == 0 || positives == length {
                assert_eq!(auroc(&labels, &scores), None);
                continue;
            }
            assert_close(auroc(&labels, &scores), auroc_by_pairs(&labels, &scores));
        }
    }

    #[test]
    fn auroc_perfect_and_reversed() {
        let labels = [false, false, true, true];
        assert_close(auroc(&labels, &[0.1, 0.2, 0.3, 0.4]), 1.0);
        assert_close(auroc(&labels, &[0.4, 0.3, 0.2, 0.1]), 0.0);
    }

    #[test]
    fn auroc_all_tied_is_half() {
        let labels = [true, false, false, true, false];
        assert_close(auroc(&labels, &[0.3; 5]), 0.5);
    }

    #[test]
    fn auroc_negative_zero_ties_zero() {
        let labels = [true, false];
        assert_close(auroc(&labels, &[-0.0, 0.0]), 0.5);
        assert_close(auroc(&labels, &[0.0, -0.0]), 0.5);
    }

    #[test]
    fn auroc_infinite_scores_are_ranked() {
        let labels = [true, false, true, false];
        let scores = [f64::INFINITY, f64::NEG_INFINITY, 0.0, 1.0];
        // Pairs: inf beats both negatives, 0.0 beats -inf only: 3/4.
        assert_close(auroc(&labels, &scores), 0.75);
    }

    #[test]
    fn auroc_undefined_inputs() {
        assert_eq!(auroc(&[], &[]), None);
        assert_eq!(auroc(&[true, true], &[0.1, 0.2]), None);
        assert_eq!(auroc(&[false, false], &[0.1, 0.2]), None);
        assert_eq!(auroc(&[true, false], &[0.1]), None);
        assert_eq!(auroc(&[true, false], &[f64::NAN, 0.2]), None);
    }

    #[test]
    fn auroc_large_input() {
        // 160,000 rows with score = index, positive when the index is a
        // multiple of 4 or at least 150,000. Scores are distinct and rise
        // with the index, so each positive beats exactly the negatives
        // before it, which a single pass counts.
        let length = 160_000u64;
        let labels: Vec<bool> = (0..length).map(|i| i % 4 == 0 || i >= 150_000).collect();
        let scores: Vec<f64> = (0..length).map(|i| i as f64).collect();
        let mut negatives_below = 0u64;
        let mut won = 0u64;
        for &label in &labels {
            if label {
                won += negatives_below;
            } else {
                negatives_below += 1;
            }
        }
        let positives = labels.iter().filter(|&&label| label).count() as u64;
        let expected = won as f64 / (positives * (length - positives)) as f64;
        assert_close(auroc(&labels, &scores), expected);
    }

    #[test]
    fn auprc_tiny_hand_computed() {
        // Descending: 0.8 (pos) gives P = 1, R = 1/2. Then 0.4 (neg) leaves
        // R unchanged, and 0.35 (pos) gives P = 2/3, R = 1.
        // AP = 1/2 · 1 + 1/2 · 2/3 = 5/6.
        let labels = [false, false, true, true];
        let scores = [0.1, 0.4, 0.35, 0.8];
        // sklearn average_precision_score: 0.8333333333333333.
        assert_close(auprc(&labels, &scores), 0.8333333333333333);
    }

    #[test]
    fn auprc_tied_scores_match_sklearn() {
        // Descending thresholds: 0.9 (1 pos) gives P = 1, R = 1/3. Then 0.7
        // (1 neg) adds nothing, and 0.5 (2 pos, 2 neg together) gives
        // P = 3/6, R = 1.
        // AP = 1/3 · 1 + 2/3 · 1/2 = 2/3.
        // sklearn average_precision_score: 0.6666666666666667.
        let labels = [false, true, false, true, false, true, false];
        let scores = [0.1, 0.5, 0.5, 0.5, 0.5, 0.9, 0.7];
        assert_close(auprc(&labels, &scores), 0.6666666666666667);
    }

    #[test]
    fn auprc_thousand_rows_match_sklearn() {
        let (labels, scores) = tied_thousand_rows();
        // sklearn average_precision_score on the same data.
        assert_close(auprc(&labels, &scores), 0.656379676079085);
    }

    #[test]
    fn auprc_all_tied_is_prevalence() {
        let labels = [true, false, false, true, false];
        assert_close(auprc(&labels, &[0.3; 5]), 0.4);
    }

    #[test]
    fn auprc_perfect_ranking_is_one() {
        let labels = [false, true, false, true];
        assert_close(auprc(&labels, &[0.1, 0.9, 0.2, 0.8]), 1.0);
    }

    #[test]
    fn auprc_only_positives_is_one() {
        assert_close(auprc(&[true, true, true], &[0.1, 0.5, 0.5]), 1.0);
    }

    #[test]
    fn auprc_undefined_inputs() {
        assert_eq!(auprc(&[], &[]), None);
        assert_eq!(auprc(&[false, false], &[0.1, 0.2]), None);
        assert_eq!(auprc(&[true, false], &[0.1]), None);
        assert_eq!(auprc(&[true, false], &[0.1, f64::NAN]), None);
    }

    #[test]
    fn confusion_counts_each_cell() {
        let labels = [true, true, true, false, false, false, false, true];
        let predicted = [true, true, false, true, false, false, false, false];
        let confusion = Confusion::from_predictions(&labels, &predicted);
        assert_eq!(confusion.true_positives, 2);
        assert_eq!(confusion.false_positives, 1);
        assert_eq!(confusion.true_negatives, 3);
        assert_eq!(confusion.false_negatives, 2);
    }

    #[test]
    fn confusion_rates_match_sklearn() {
        // Same data as confusion_counts_each_cell. sklearn gives
        // precision_score 2/3, recall_score 1/2 and f1_score 4/7.
        // Specificity is TN / (TN + FP) = 3/4.
        let labels = [true, true, true, false, false, false, false, true];
        let predicted = [true, true, false, true, false, false, false, false];
        let confusion = Confusion::from_predictions(&labels, &predicted);
        assert_close(confusion.precision(), 0.6666666666666666);
        assert_close(confusion.recall(), 0.5);
        assert_close(confusion.f1(), 0.5714285714285714);
        assert_close(confusion.specificity(), 0.75);
    }

    #[test]
    fn confusion_empty_has_no_rates() {
        let confusion = Confusion::from_predictions(&[], &[]);
        assert_eq!(confusion.precision(), None);
        assert_eq!(confusion.recall(), None);
        assert_eq!(confusion.f1(), None);
        assert_eq!(confusion.specificity(), None);
    }

    #[test]
    fn confusion_no_true_positives() {
        // One missed positive and one false alarm: precision and recall are
        // 0.0, and F1 is 0.0 as well, not undefined.
        let confusion = Confusion::from_predictions(&[true, false], &[false, true]);
        assert_eq!(confusion.precision(), Some(0.0));
        assert_eq!(confusion.recall(), Some(0.0));
        assert_eq!(confusion.f1(), Some(0.0));
        assert_eq!(confusion.specificity(), Some(0.0));
    }

    #[test]
    fn confusion_single_class_rates() {
        // All negative and none predicted: only specificity is defined.
        let confusion = Confusion::from_predictions(&[false, false], &[false, false]);
        assert_eq!(confusion.precision(), None);
        assert_eq!(confusion.recall(), None);
        assert_eq!(confusion.f1(), None);
        assert_eq!(confusion.specificity(), Some(1.0));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "labels and predictions must have the same length")]
    fn confusion_length_mismatch_panics_in_debug() {
        Confusion::from_predictions(&[true, false], &[true]);
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn confusion_length_mismatch_counts_shorter() {
        let confusion = Confusion::from_predictions(&[true, false, true], &[true]);
        assert_eq!(confusion.true_positives, 1);
        assert_eq!(confusion.false_positives, 0);
        assert_eq!(confusion.true_negatives, 0);
        assert_eq!(confusion.false_negatives, 0);
    }

    #[test]
    fn confusion_serde_round_trip() {
        let confusion = Confusion {
            true_positives: 5,
            false_positives: 3,
            true_negatives: 90,
            false_negatives: 2,
        };
        let json = serde_json::to_string(&confusion).unwrap();
        assert_eq!(
            json,
            r#"{"true_positives":5,"false_positives":3,"true_negatives":90,"false_negatives":2}"#
        );
        let parsed: Confusion = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, confusion);
    }
}
