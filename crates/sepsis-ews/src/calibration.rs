//! Probability calibration and its measures.
//!
//! Training up-weights the rare septic hours, so the booster's raw output
//! overstates the risk. An isotonic map, fitted on calibration patients that
//! the booster never saw, turns it into a calibrated probability: of the
//! hours given 0.2, about one in five is followed by sepsis within the
//! horizon. The map is monotone, so it keeps the ranking (AUROC
//! and AUPRC) of the raw output.

use serde::{Deserialize, Serialize};

/// A monotone piecewise-linear map from raw model output to probability,
/// fitted by isotonic regression (pool adjacent violators).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsotonicMap {
    /// Knots `(raw, probability)`, both non-decreasing. Between knots the map
    /// interpolates linearly; outside them it is flat.
    pub knots: Vec<(f64, f64)>,
}

impl IsotonicMap {
    /// Fits the map to raw scores and 0/1 outcomes. Each pooled block of the
    /// regression becomes one knot at the mean raw score of its rows.
    pub fn fit(raw: &[f64], outcomes: &[bool]) -> IsotonicMap {
        let mut pairs: Vec<(f64, bool)> = raw
            .iter()
            .copied()
            .zip(outcomes.iter().copied())
            .filter(|(r, _)| r.is_finite())
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Blocks of (sum of raw, sum of outcomes, rows), merged while a block's
        // mean outcome is not above the one before it.
        let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
        for group in pairs.chunk_by(|a, b| a.0 == b.0) {
            let rows = group.len() as f64;
            let positives = group.iter().filter(|(_, o)| *o).count() as f64;
            blocks.push((group[0].0 * rows, positives, rows));
            while blocks.len() >= 2 {
                let (r2, p2, n2) = blocks[blocks.len() - 1];
                let (r1, p1, n1) = blocks[blocks.len() - 2];
                if p1 / n1 < p2 / n2 {
                    break;
                }
                blocks.truncate(blocks.len() - 2);
                blocks.push((r1 + r2, p1 + p2, n1 + n2));
            }
        }
        let knots = blocks
            .into_iter()
            .map(|(raw_sum, positives, rows)| (raw_sum / rows, positives / rows))
            .collect();
        IsotonicMap { knots }
    }

    /// Maps a raw score to a probability. An empty map returns the input.
    pub fn apply(&self, raw: f64) -> f64 {
        let knots = &self.knots;
        let (Some(first), Some(last)) = (knots.first(), knots.last()) else {
            return raw;
        };
        if raw.is_nan() {
            return f64::NAN;
        }
        if raw <= first.0 {
            return first.1;
        }
        if raw >= last.0 {
            return last.1;
        }
        let upper = knots.partition_point(|(x, _)| *x <= raw);
        let (x0, y0) = knots[upper - 1];
        let (x1, y1) = knots[upper];
        if x1 == x0 {
            return y1;
        }
        y0 + (y1 - y0) * (raw - x0) / (x1 - x0)
    }
}

/// One bin of a reliability curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

/// The agreement of probabilities with outcome rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationReport {
    /// Mean squared difference of probability and outcome.
    pub brier: f64,
    /// Expected calibration error over ten equal-width bins of [0, 1]: the
    /// row-weighted mean gap between mean probability and outcome rate.
    pub ece: f64,
    /// The same over ten bins of equal row count, which looks closely at the
    /// low probabilities where most hours lie.
    pub ece_equal_mass: f64,
    /// The reliability curve, over the equal-row-count bins.
    pub reliability: Vec<ReliabilityBin>,
}

const BINS: usize = 10;

/// Measures calibration; `None` without rows.
pub fn calibration_report(probabilities: &[f64], outcomes: &[bool]) -> Option<CalibrationReport> {
    let mut pairs: Vec<(f64, bool)> = probabilities
        .iter()
        .copied()
        .zip(outcomes.iter().copied())
        .filter(|(p, _)| p.is_finite())
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let brier = pairs
        .iter()
        .map(|(p, o)| (p - f64::from(u8::from(*o))).powi(2))
        .sum::<f64>()
        / n;

    let mut width_bins = vec![(0.0, 0.0, 0u64); BINS];
    for (p, o) in &pairs {
        let index = ((p.clamp(0.0, 1.0) * BINS as f64) as usize).min(BINS - 1);
        let bin = &mut width_bins[index];
        bin.0 += p;
        bin.1 += f64::from(u8::from(*o));
        bin.2 += 1;
    }
    let ece = width_bins
        .iter()
        .filter(|(_, _, count)| *count > 0)
        .map(|(sum, positives, _)| (sum - positives).abs())
        .sum::<f64>()
        / n;

    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut reliability = Vec::new();
    let mut gap = 0.0;
    for bin in 0..BINS {
        let start = bin * pairs.len() / BINS;
        let end = (bin + 1) * pairs.len() / BINS;
        let rows = &pairs[start..end];
        if rows.is_empty() {
            continue;
        }
        let sum: f64 = rows.iter().map(|(p, _)| p).sum();
        let positives = rows.iter().filter(|(_, o)| *o).count() as f64;
        gap += (sum - positives).abs();
        let count = rows.len() as f64;
        reliability.push(ReliabilityBin {
            lower: rows[0].0,
            upper: rows[rows.len() - 1].0,
            count: rows.len() as u64,
            mean_predicted: sum / count,
            observed_rate: positives / count,
        });
    }
    Some(CalibrationReport {
        brier,
        ece,
        ece_equal_mass: gap / n,
        reliability,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotonic_pools_violators_and_stays_monotone() {
        let raw = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
        let outcomes = [false, true, false, false, true, true];
        let map = IsotonicMap::fit(&raw, &outcomes);
        // 0.2 (1) and 0.3, 0.4 (0, 0) pool into one block of rate 1/3.
        let probabilities: Vec<f64> = map.knots.iter().map(|k| k.1).collect();
        assert_eq!(probabilities, [0.0, 1.0 / 3.0, 1.0]);
        let mut previous = f64::NEG_INFINITY;
        for step in 0..=100 {
            let p = map.apply(f64::from(step) / 100.0);
            assert!(p >= previous);
            previous = p;
        }
        assert_eq!(map.apply(-1.0), 0.0);
        assert_eq!(map.apply(2.0), 1.0);
        assert!(map.apply(f64::NAN).is_nan());
    }

    #[test]
    fn calibrated_scores_have_small_error() {
        // Hours whose rate of positives equals their score.
        let mut probabilities = Vec::new();
        let mut outcomes = Vec::new();
        for decile in 0..10 {
            let p = f64::from(decile) / 10.0 + 0.05;
            for i in 0..100 {
                probabilities.push(p);
                outcomes.push(i < decile * 10 + 5);
            }
        }
        let report = calibration_report(&probabilities, &outcomes).unwrap();
        assert!(report.ece < 1e-9, "{}", report.ece);
        assert_eq!(report.reliability.len(), 10);
        // Scores that are all too high by 0.05 have an error of 0.05.
        let shifted: Vec<f64> = probabilities.iter().map(|p| p + 0.04).collect();
        let report = calibration_report(&shifted, &outcomes).unwrap();
        assert!((report.ece - 0.04).abs() < 1e-9);
        assert!(calibration_report(&[], &[]).is_none());
    }
}
