//! Drift of the inputs and the predictions: reference distributions taken
//! when a model is trained, and the population stability index (PSI) of a
//! window of recent rows against them.
//!
//! The reference is stored beside the model as [`DRIFT_REFERENCE_FILE`]. It
//! covers every input column the features are computed from. An hourly
//! measurement counts its value at the hour, or missing when it was not
//! measured then. A number passed through as it is (age, hours in the unit)
//! counts its value, and a one-hot category its hot level. Numbers are cut
//! into [`REFERENCE_BINS`] bins at the deciles of the training values, plus
//! one bin for missing values, so a change in how often a lab is measured
//! shows as drift too. The predictions are cut at the deciles of the
//! calibrated probabilities of the validation patients, which the model
//! never saw while fitting.
//!
//! Both sides read a row through [`DriftProfile::bin_row`] from the model's
//! feature columns, so training and serving bin the same values with the
//! same code.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::features::FeatureSpec;

/// The file of a model folder and registry version that holds the reference.
pub const DRIFT_REFERENCE_FILE: &str = "drift_reference.json";

/// Value bins per numeric input and for the predictions, before the bin
/// for missing values.
pub const REFERENCE_BINS: usize = 10;

/// The smallest share a bin counts with in the PSI, so that an empty bin on
/// one side gives a large but finite term instead of an infinite one.
pub const PSI_FLOOR: f64 = 1e-4;

/// The format of the reference file; a reader refuses other formats.
const FORMAT: u32 = 1;

/// The model feature columns that an input column is read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputSource {
    /// An hourly measurement: the carried-forward value `column`, counted
    /// only when `missing_column` marks it as measured at this hour.
    Measured {
        column: String,
        missing_column: String,
    },
    /// A number passed through as it is; NaN is missing.
    Number { column: String },
    /// A one-hot category: one bin per output column, and missing when none
    /// is hot.
    Category { columns: Vec<String> },
}

/// The reference distribution of one input column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputReference {
    /// The input column, as a request names it.
    pub feature: String,
    pub source: InputSource,
    /// Upper bounds of the value bins but the last: a value falls in the
    /// first bin whose bound is at least the value. Empty for categories.
    pub edges: Vec<f64>,
    /// The share of reference rows in each bin; the last bin is missing.
    pub shares: Vec<f64>,
}

/// The reference distribution of the calibrated probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionReference {
    pub edges: Vec<f64>,
    pub shares: Vec<f64>,
    /// Validation rows the shares were counted on.
    pub rows: usize,
}

/// The contents of [`DRIFT_REFERENCE_FILE`] in a model folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReference {
    pub format: u32,
    /// Training rows the input shares were counted on.
    pub rows: usize,
    pub inputs: Vec<InputReference>,
    pub prediction: PredictionReference,
}

/// A problem with a stored reference.
#[derive(Debug, thiserror::Error)]
#[error("invalid drift reference: {0}")]
pub struct DriftError(String);

impl DriftReference {
    /// Counts the input distributions over the rows of a row-major feature
    /// matrix whose columns are `spec.feature_names`.
    pub fn inputs_of(spec: &FeatureSpec, values: &[f32]) -> (usize, Vec<InputReference>) {
        let names = &spec.feature_names;
        let width = names.len();
        let rows = values.len().checked_div(width).unwrap_or(0);
        let sources = input_sources(spec);
        let index = |name: &str| names.iter().position(|n| n == name);
        let mut inputs = Vec::with_capacity(sources.len());
        for (feature, source) in sources {
            let Some(resolved) = ResolvedSource::new(&source, index) else {
                continue;
            };
            let read = |row: usize| {
                let start = row * width;
                resolved.read(|column| values[start + column])
            };
            let edges = match resolved {
                ResolvedSource::Category(_) => Vec::new(),
                _ => {
                    let present: Vec<f32> = (0..rows)
                        .filter_map(|row| match read(row) {
                            Reading::Value(v) => Some(v),
                            _ => None,
                        })
                        .collect();
                    decile_edges(present)
                }
            };
            let bins = match &resolved {
                ResolvedSource::Category(columns) => columns.len() + 1,
                _ => edges.len() + 2,
            };
            let mut counts = vec![0u64; bins];
            for row in 0..rows {
                counts[bin_of(read(row), &edges, bins)] += 1;
            }
            inputs.push(InputReference {
                feature,
                source,
                edges,
                shares: shares(&counts, rows),
            });
        }
        (rows, inputs)
    }

    /// Counts the distribution of calibrated probabilities.
    pub fn prediction_of(probabilities: &[f64]) -> PredictionReference {
        let finite: Vec<f32> = probabilities
            .iter()
            .filter(|p| p.is_finite())
            .map(|&p| p as f32)
            .collect();
        let edges = decile_edges(finite);
        let bins = edges.len() + 2;
        let mut counts = vec![0u64; bins];
        for &p in probabilities {
            counts[probability_bin(p, &edges)] += 1;
        }
        PredictionReference {
            shares: shares(&counts, probabilities.len()),
            edges,
            rows: probabilities.len(),
        }
    }

    pub fn new(
        rows: usize,
        inputs: Vec<InputReference>,
        prediction: PredictionReference,
    ) -> DriftReference {
        DriftReference {
            format: FORMAT,
            rows,
            inputs,
            prediction,
        }
    }

    /// Parses a stored reference.
    pub fn from_json(bytes: &[u8]) -> Result<DriftReference, DriftError> {
        let reference: DriftReference =
            serde_json::from_slice(bytes).map_err(|e| DriftError(e.to_string()))?;
        if reference.format != FORMAT {
            return Err(DriftError(format!(
                "format {} is not the supported format {FORMAT}",
                reference.format
            )));
        }
        Ok(reference)
    }

    /// Finds each input's columns among a model's features, ready to bin
    /// rows of that model.
    pub fn resolve(&self, feature_names: &[String]) -> Result<DriftProfile, DriftError> {
        let index = |name: &str| feature_names.iter().position(|n| n == name);
        let mut inputs = Vec::with_capacity(self.inputs.len());
        for input in &self.inputs {
            let source = ResolvedSource::new(&input.source, index).ok_or_else(|| {
                DriftError(format!(
                    "input {} reads a column the model does not have",
                    input.feature
                ))
            })?;
            let bins = match &source {
                ResolvedSource::Category(columns) => columns.len() + 1,
                _ => input.edges.len() + 2,
            };
            if input.shares.len() != bins || bins > usize::from(u8::MAX) {
                return Err(DriftError(format!(
                    "input {} has {} shares for {bins} bins",
                    input.feature,
                    input.shares.len()
                )));
            }
            inputs.push(ResolvedInput {
                feature: input.feature.clone(),
                source,
                edges: input.edges.clone(),
                shares: input.shares.clone(),
            });
        }
        let prediction = &self.prediction;
        if prediction.shares.len() != prediction.edges.len() + 2 {
            return Err(DriftError(format!(
                "the predictions have {} shares for {} bins",
                prediction.shares.len(),
                prediction.edges.len() + 2
            )));
        }
        Ok(DriftProfile {
            inputs,
            prediction: prediction.clone(),
        })
    }
}

/// Lists the input columns of a feature specification and how to read each.
fn input_sources(spec: &FeatureSpec) -> Vec<(String, InputSource)> {
    let mut sources = Vec::new();
    for name in &spec.series {
        sources.push((
            name.clone(),
            InputSource::Measured {
                column: name.clone(),
                missing_column: format!("{name}_missing"),
            },
        ));
    }
    for name in &spec.statics {
        sources.push((
            name.clone(),
            InputSource::Number {
                column: name.clone(),
            },
        ));
    }
    for categorical in &spec.categoricals {
        sources.push((
            categorical.name.clone(),
            InputSource::Category {
                columns: categorical.output_names(),
            },
        ));
    }
    sources
}

/// An input source with its columns found in a model's features.
#[derive(Debug, Clone)]
enum ResolvedSource {
    Measured { column: usize, missing: usize },
    Number(usize),
    Category(Vec<usize>),
}

/// One input of one row.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reading {
    Value(f32),
    Level(usize),
    Missing,
}

impl ResolvedSource {
    fn new(source: &InputSource, index: impl Fn(&str) -> Option<usize>) -> Option<ResolvedSource> {
        Some(match source {
            InputSource::Measured {
                column,
                missing_column,
            } => ResolvedSource::Measured {
                column: index(column)?,
                missing: index(missing_column)?,
            },
            InputSource::Number { column } => ResolvedSource::Number(index(column)?),
            InputSource::Category { columns } => ResolvedSource::Category(
                columns
                    .iter()
                    .map(|c| index(c))
                    .collect::<Option<Vec<_>>>()?,
            ),
        })
    }

    fn read(&self, value: impl Fn(usize) -> f32) -> Reading {
        let number = |v: f32| match v.is_nan() {
            true => Reading::Missing,
            false => Reading::Value(v),
        };
        match self {
            ResolvedSource::Measured { column, missing } => match value(*missing) == 0.0 {
                true => number(value(*column)),
                false => Reading::Missing,
            },
            ResolvedSource::Number(column) => number(value(*column)),
            ResolvedSource::Category(columns) => columns
                .iter()
                .position(|&c| value(c) == 1.0)
                .map_or(Reading::Missing, Reading::Level),
        }
    }
}

/// Returns the bin of a reading among `bins`, the last of which is missing.
fn bin_of(reading: Reading, edges: &[f64], bins: usize) -> usize {
    match reading {
        Reading::Value(v) => {
            let v = f64::from(v);
            edges.partition_point(|&edge| edge < v)
        }
        Reading::Level(level) => level,
        Reading::Missing => bins - 1,
    }
}

fn probability_bin(probability: f64, edges: &[f64]) -> usize {
    match probability.is_finite() {
        true => edges.partition_point(|&edge| edge < probability as f32 as f64),
        false => edges.len() + 1,
    }
}

/// Returns the distinct deciles of `values`, as bin bounds.
fn decile_edges(mut values: Vec<f32>) -> Vec<f64> {
    values.sort_unstable_by(f32::total_cmp);
    let n = values.len();
    let mut edges: Vec<f64> = Vec::with_capacity(REFERENCE_BINS - 1);
    if n == 0 {
        return edges;
    }
    for q in 1..REFERENCE_BINS {
        let edge = f64::from(values[(q * n / REFERENCE_BINS).min(n - 1)]);
        if edges.last().is_none_or(|&last| last < edge) {
            edges.push(edge);
        }
    }
    // A bound at the maximum would leave the last value bin empty forever.
    if edges.last() == Some(&f64::from(values[n - 1])) {
        edges.pop();
    }
    edges
}

fn shares(counts: &[u64], total: usize) -> Vec<f64> {
    counts
        .iter()
        .map(|&c| match total {
            0 => 0.0,
            _ => c as f64 / total as f64,
        })
        .collect()
}

/// Computes the population stability index of `counts` (a window's bins) against
/// the reference `expected` shares: the sum over bins of
/// (actual − expected) × ln(actual / expected), each share at least
/// [`PSI_FLOOR`]. Zero when the distributions are equal.
pub fn psi(counts: &[u32], expected: &[f64]) -> f64 {
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    if total == 0 {
        return 0.0;
    }
    counts
        .iter()
        .zip(expected)
        .map(|(&count, &expected)| {
            let actual = (f64::from(count) / total as f64).max(PSI_FLOOR);
            let expected = expected.max(PSI_FLOOR);
            (actual - expected) * (actual / expected).ln()
        })
        .sum()
}

#[derive(Debug, Clone)]
struct ResolvedInput {
    feature: String,
    source: ResolvedSource,
    edges: Vec<f64>,
    shares: Vec<f64>,
}

/// A reference resolved against one model's feature columns.
#[derive(Debug, Clone)]
pub struct DriftProfile {
    inputs: Vec<ResolvedInput>,
    prediction: PredictionReference,
}

impl DriftProfile {
    /// Returns the input columns, in the order of [`DriftReport::inputs`].
    pub fn features(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|i| i.feature.as_str())
    }

    /// Bins per row: one per input, then the prediction.
    pub fn width(&self) -> usize {
        self.inputs.len() + 1
    }

    /// Appends the bin of each input of a row, then the bin of its
    /// probability, to `out`. `value(column)` reads the row's model feature
    /// in that column.
    pub fn bin_row(&self, value: impl Fn(usize) -> f32, probability: f64, out: &mut Vec<u8>) {
        for input in &self.inputs {
            let bin = bin_of(input.source.read(&value), &input.edges, input.shares.len());
            out.push(bin as u8);
        }
        out.push(probability_bin(probability, &self.prediction.edges) as u8);
    }

    fn bins(&self, slot: usize) -> usize {
        match self.inputs.get(slot) {
            Some(input) => input.shares.len(),
            None => self.prediction.shares.len(),
        }
    }

    fn expected(&self, slot: usize) -> &[f64] {
        match self.inputs.get(slot) {
            Some(input) => &input.shares,
            None => &self.prediction.shares,
        }
    }
}

/// The PSI of a window against its reference.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftReport {
    /// Rows in the window.
    pub rows: usize,
    /// Each input column and its PSI, in reference order.
    pub inputs: Vec<(String, f64)>,
    pub prediction: f64,
}

/// The bins of the most recent rows, at most `capacity` of them, with a
/// count per bin kept up to date as rows enter and leave.
#[derive(Debug, Clone)]
pub struct DriftWindow {
    profile: Arc<DriftProfile>,
    capacity: usize,
    /// `capacity` rows of `profile.width()` bins, used as a ring.
    slots: Vec<u8>,
    next: usize,
    len: usize,
    counts: Vec<Vec<u32>>,
}

impl DriftWindow {
    pub fn new(profile: Arc<DriftProfile>, capacity: usize) -> DriftWindow {
        let capacity = capacity.max(1);
        let counts = (0..profile.width())
            .map(|slot| vec![0; profile.bins(slot)])
            .collect();
        DriftWindow {
            slots: vec![0; capacity * profile.width()],
            profile,
            capacity,
            next: 0,
            len: 0,
            counts,
        }
    }

    pub fn profile(&self) -> &Arc<DriftProfile> {
        &self.profile
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds one row's bins, as [`DriftProfile::bin_row`] wrote them, and
    /// drops the oldest row when the window is full.
    ///
    /// # Panics
    /// When `bins` is not one row of this window's profile.
    pub fn push(&mut self, bins: &[u8]) {
        let width = self.profile.width();
        assert_eq!(bins.len(), width, "one row of bins");
        let slot = &mut self.slots[self.next * width..(self.next + 1) * width];
        if self.len == self.capacity {
            for (counts, &old) in self.counts.iter_mut().zip(slot.iter()) {
                counts[usize::from(old)] -= 1;
            }
        } else {
            self.len += 1;
        }
        for (counts, &new) in self.counts.iter_mut().zip(bins) {
            counts[usize::from(new)] += 1;
        }
        slot.copy_from_slice(bins);
        self.next = (self.next + 1) % self.capacity;
    }

    /// Computes the PSI of every input and of the predictions over the window.
    pub fn report(&self) -> DriftReport {
        let psi_of = |slot: usize| psi(&self.counts[slot], self.profile.expected(slot));
        DriftReport {
            rows: self.len,
            inputs: self
                .profile
                .inputs
                .iter()
                .enumerate()
                .map(|(slot, input)| (input.feature.clone(), psi_of(slot)))
                .collect(),
            prediction: psi_of(self.profile.inputs.len()),
        }
    }
}

#[cfg(test)]
mod tests;
