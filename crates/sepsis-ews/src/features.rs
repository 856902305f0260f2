//! The model's input features, computed by this one module; training, batch
//! scoring and the HTTP service all call [`FeatureSpec::compute`].
//!
//! Every feature is causal: the value at hour t is a function of the
//! patient's rows at hours ≤ t only. A test cuts real stays at several hours
//! and checks that the features up to the cut are identical to those of the
//! whole stay.
//!
//! For each hourly measurement (a schema column with `series: true`), with t
//! the hour of the row:
//! - `v`: the last measured value at or before t, carried forward;
//! - `v_missing`: 1 when v was not measured at t;
//! - `v_hours_since`: hours since the last measurement (NaN before the first);
//! - `v_count`: measurements so far;
//! - `v_{mean,min,max,std}_{w}h`: statistics of the measurements in the
//!   window (t − w, t] for each configured window w. The standard deviation
//!   is the sample one, so it needs two measurements;
//! - `v_delta_{d}h`: `v` now minus `v` as it stood at hour t − d.
//!
//! The other numeric columns (age, sex, the hour itself) pass through. Then
//! come the hours since hospital admission and bedside scores from the
//! carried values: SIRS, qSOFA, NEWS2, shock index and others, each with the
//! parts the data has, where a part without a value scores 0. Last, each
//! categorical is one-hot encoded with an explicit unknown level. Missing values stay NaN,
//! which LightGBM routes down its learned missing-value branch.
//!
//! Rows must come patient by patient, hours strictly increasing. Validation
//! enforces that for stored data, and [`FeatureSpec::compute`] checks it again:
//! it rejects rows out of order rather than compute a wrong feature.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float32Array, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int64Type};
use serde::{Deserialize, Serialize};

use crate::config::FeatureConfig;
use crate::schema::{CategoricalSpec, Schema};

/// Version of the feature code; it changes whenever a feature's definition does.
pub const FEATURE_SET_VERSION: &str = "causal-1";

/// Name of the derived feature with the hours since hospital admission.
pub const HOURS_SINCE_ADMISSION: &str = "hours_since_hospital_admission";
/// The schema column with the hours from hospital to ICU admission.
const HOSPITAL_ADMISSION_COLUMN: &str = "HospAdmTime";

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("input column {column:?} is missing")]
    MissingColumn { column: String },
    #[error("input column {column:?} has type {found}, expected {expected}")]
    ColumnType {
        column: String,
        found: DataType,
        expected: &'static str,
    },
    #[error("row {row}: column {column:?} has no value, but the features need one in every row")]
    MissingValue { row: usize, column: String },
    #[error(
        "row {row}: hour {hour} does not come after hour {previous} of the same patient; \
         each patient's rows must have strictly increasing hours"
    )]
    HourOrder {
        row: usize,
        hour: f64,
        previous: f64,
    },
    #[error(
        "row {row}: a patient's rows continue after another patient's rows; \
         each patient's rows must be contiguous"
    )]
    NotContiguous { row: usize },
    #[error("joining row batches failed")]
    Concat(#[from] arrow::error::ArrowError),
}

/// A bedside score computed from the carried-forward values of the hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BedsideScore {
    /// Systemic inflammatory response criteria met, 0–4 (temperature, heart
    /// rate, respiration or PaCO2, white cells; band forms are not recorded).
    Sirs,
    /// Quick SOFA without mental status, 0–2 (respiration, systolic pressure).
    Qsofa,
    /// National Early Warning Score 2 without consciousness: respiration,
    /// SpO2 (scale 1), supplemental oxygen, temperature, systolic pressure and
    /// heart rate.
    News2,
    /// Heart rate over systolic pressure; above 1 suggests shock.
    ShockIndex,
    /// Systolic minus diastolic pressure.
    PulsePressure,
    /// Urea over creatinine, which separates pre-renal from renal injury.
    BunCreatinine,
    /// The SOFA parts the hourly data has: platelets, bilirubin, creatinine
    /// and mean arterial pressure below 70 mm Hg.
    SofaPartial,
}

impl BedsideScore {
    pub const ALL: [BedsideScore; 7] = [
        BedsideScore::Sirs,
        BedsideScore::Qsofa,
        BedsideScore::News2,
        BedsideScore::ShockIndex,
        BedsideScore::PulsePressure,
        BedsideScore::BunCreatinine,
        BedsideScore::SofaPartial,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BedsideScore::Sirs => "sirs",
            BedsideScore::Qsofa => "qsofa",
            BedsideScore::News2 => "news2",
            BedsideScore::ShockIndex => "shock_index",
            BedsideScore::PulsePressure => "pulse_pressure",
            BedsideScore::BunCreatinine => "bun_creatinine",
            BedsideScore::SofaPartial => "sofa_partial",
        }
    }

    /// Lists the measurements the score reads, as schema column names.
    pub fn inputs(self) -> &'static [&'static str] {
        match self {
            BedsideScore::Sirs => &["Temp", "HR", "Resp", "PaCO2", "WBC"],
            BedsideScore::Qsofa => &["Resp", "SBP"],
            BedsideScore::News2 => &["Resp", "O2Sat", "FiO2", "Temp", "SBP", "HR"],
            BedsideScore::ShockIndex => &["HR", "SBP"],
            BedsideScore::PulsePressure => &["SBP", "DBP"],
            BedsideScore::BunCreatinine => &["BUN", "Creatinine"],
            BedsideScore::SofaPartial => &["Platelets", "Bilirubin_total", "Creatinine", "MAP"],
        }
    }

    /// Scores one hour; `value(name)` is the carried-forward value or NaN.
    fn score(self, value: impl Fn(&str) -> f64) -> f64 {
        // A part whose input has no value adds nothing, as at the bedside.
        let points = |x: f64, rule: &dyn Fn(f64) -> f64| if x.is_nan() { 0.0 } else { rule(x) };
        let flag = |condition: bool| if condition { 1.0 } else { 0.0 };
        let ratio = |a: f64, b: f64| if b == 0.0 { f64::NAN } else { a / b };
        match self {
            BedsideScore::Sirs => {
                let breathing = flag(value("Resp") > 20.0 || value("PaCO2") < 32.0);
                points(value("Temp"), &|t| flag(!(36.0..=38.0).contains(&t)))
                    + points(value("HR"), &|h| flag(h > 90.0))
                    + breathing
                    + points(value("WBC"), &|w| flag(!(4.0..=12.0).contains(&w)))
            }
            BedsideScore::Qsofa => {
                points(value("Resp"), &|r| flag(r >= 22.0))
                    + points(value("SBP"), &|s| flag(s <= 100.0))
            }
            BedsideScore::News2 => {
                points(value("Resp"), &news2_respiration)
                    + points(value("O2Sat"), &news2_saturation)
                    + points(value("FiO2"), &news2_oxygen)
                    + points(value("Temp"), &news2_temperature)
                    + points(value("SBP"), &news2_systolic)
                    + points(value("HR"), &news2_heart_rate)
            }
            BedsideScore::ShockIndex => ratio(value("HR"), value("SBP")),
            BedsideScore::PulsePressure => value("SBP") - value("DBP"),
            BedsideScore::BunCreatinine => ratio(value("BUN"), value("Creatinine")),
            BedsideScore::SofaPartial => {
                points(value("Platelets"), &sofa_platelets)
                    + points(value("Bilirubin_total"), &sofa_bilirubin)
                    + points(value("Creatinine"), &sofa_creatinine)
                    + points(value("MAP"), &|m| flag(m < 70.0))
            }
        }
    }
}

/// Maps a value to points by ascending upper bounds: the first bound the
/// value does not exceed gives its points, and `above` is for values past all.
fn banded(value: f64, bands: &[(f64, f64)], above: f64) -> f64 {
    bands
        .iter()
        .find(|(bound, _)| value <= *bound)
        .map_or(above, |(_, points)| *points)
}

fn news2_respiration(r: f64) -> f64 {
    banded(r, &[(8.0, 3.0), (11.0, 1.0), (20.0, 0.0), (24.0, 2.0)], 3.0)
}

fn news2_saturation(s: f64) -> f64 {
    banded(s, &[(91.0, 3.0), (93.0, 2.0), (95.0, 1.0)], 0.0)
}

/// Supplemental oxygen: an inspired fraction above room air. A few sites
/// record FiO2 in percent, so values above 1 are read as percent.
fn news2_oxygen(fio2: f64) -> f64 {
    let fraction = if fio2 > 1.0 { fio2 / 100.0 } else { fio2 };
    if fraction > 0.21 {
        2.0
    } else {
        0.0
    }
}

fn news2_temperature(t: f64) -> f64 {
    banded(
        t,
        &[(35.0, 3.0), (36.0, 1.0), (38.0, 0.0), (39.0, 1.0)],
        2.0,
    )
}

fn news2_systolic(s: f64) -> f64 {
    banded(
        s,
        &[(90.0, 3.0), (100.0, 2.0), (110.0, 1.0), (219.0, 0.0)],
        3.0,
    )
}

fn news2_heart_rate(h: f64) -> f64 {
    banded(
        h,
        &[
            (40.0, 3.0),
            (50.0, 1.0),
            (90.0, 0.0),
            (110.0, 1.0),
            (130.0, 2.0),
        ],
        3.0,
    )
}

fn sofa_platelets(p: f64) -> f64 {
    match p {
        p if p < 20.0 => 4.0,
        p if p < 50.0 => 3.0,
        p if p < 100.0 => 2.0,
        p if p < 150.0 => 1.0,
        _ => 0.0,
    }
}

fn sofa_bilirubin(b: f64) -> f64 {
    match b {
        b if b >= 12.0 => 4.0,
        b if b >= 6.0 => 3.0,
        b if b >= 2.0 => 2.0,
        b if b >= 1.2 => 1.0,
        _ => 0.0,
    }
}

fn sofa_creatinine(c: f64) -> f64 {
    match c {
        c if c >= 5.0 => 4.0,
        c if c >= 3.5 => 3.0,
        c if c >= 2.0 => 2.0,
        c if c >= 1.2 => 1.0,
        _ => 0.0,
    }
}

/// Outputs per measurement besides the window statistics: the value,
/// missing flag, hours since, count and delta.
const SERIES_FIXED_OUTPUTS: usize = 5;
/// Statistics per window: mean, min, max, standard deviation.
const WINDOW_STATS: [&str; 4] = ["mean", "min", "max", "std"];

/// The fitted transformer: which columns feed the model and in what order.
/// It is stored with every feature version and every model, so scoring
/// computes exactly the features a model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub feature_set_version: String,
    pub schema_digest: String,
    pub id_column: String,
    pub time_column: String,
    /// Hourly measurements that get the history features.
    pub series: Vec<String>,
    /// Numeric columns passed through as they are.
    pub statics: Vec<String>,
    pub windows_hours: Vec<u32>,
    pub delta_hours: u32,
    /// Whether the hours since hospital admission are computed.
    pub hours_since_admission: bool,
    pub scores: Vec<BedsideScore>,
    pub categoricals: Vec<CategoricalSpec>,
    /// Every output column in model order.
    pub feature_names: Vec<String>,
}

impl FeatureSpec {
    pub fn new(schema: &Schema, config: &FeatureConfig) -> FeatureSpec {
        let numeric = schema.numeric_features();
        let series: Vec<String> = numeric
            .iter()
            .filter(|c| c.series)
            .map(|c| c.name.clone())
            .collect();
        let statics: Vec<String> = numeric
            .iter()
            .filter(|c| !c.series)
            .map(|c| c.name.clone())
            .collect();
        let hours_since_admission = schema.column(HOSPITAL_ADMISSION_COLUMN).is_some();
        let scores: Vec<BedsideScore> = BedsideScore::ALL
            .into_iter()
            .filter(|s| s.inputs().iter().all(|i| series.iter().any(|n| n == i)))
            .collect();

        let mut feature_names = Vec::new();
        for name in &series {
            feature_names.push(name.clone());
            feature_names.push(format!("{name}_missing"));
            feature_names.push(format!("{name}_hours_since"));
            feature_names.push(format!("{name}_count"));
            for window in &config.windows_hours {
                for stat in WINDOW_STATS {
                    feature_names.push(format!("{name}_{stat}_{window}h"));
                }
            }
            feature_names.push(format!("{name}_delta_{}h", config.delta_hours));
        }
        feature_names.extend(statics.iter().cloned());
        if hours_since_admission {
            feature_names.push(HOURS_SINCE_ADMISSION.to_string());
        }
        feature_names.extend(scores.iter().map(|s| s.name().to_string()));
        for categorical in &schema.categoricals {
            feature_names.extend(categorical.output_names());
        }
        FeatureSpec {
            feature_set_version: FEATURE_SET_VERSION.to_string(),
            schema_digest: schema.digest.clone(),
            id_column: schema.id_column.clone(),
            time_column: schema.time_column.clone(),
            series,
            statics,
            windows_hours: config.windows_hours.clone(),
            delta_hours: config.delta_hours,
            hours_since_admission,
            scores,
            categoricals: schema.categoricals.clone(),
            feature_names,
        }
    }

    pub fn width(&self) -> usize {
        self.feature_names.len()
    }

    fn series_width(&self) -> usize {
        SERIES_FIXED_OUTPUTS + WINDOW_STATS.len() * self.windows_hours.len()
    }

    /// Computes the feature columns, in [`FeatureSpec::feature_names`] order,
    /// for hourly rows named as in the schema. The batch must contain whole
    /// patient histories, each contiguous with strictly increasing hours. A
    /// patient cut by the end of the batch gets the features of the rows seen.
    pub fn compute(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>, FeatureError> {
        let rows = batch.num_rows();
        let ids = string_column(batch, &self.id_column)?;
        let hours = float64_column(batch, &self.time_column)?;
        if let Some(row) = hours.iter().position(|h| h.is_nan()) {
            return Err(FeatureError::MissingValue {
                row,
                column: self.time_column.clone(),
            });
        }
        let patients = patient_runs(&ids, &hours)?;
        let series: Vec<Vec<f64>> = self
            .series
            .iter()
            .map(|name| float64_column(batch, name))
            .collect::<Result<_, _>>()?;

        let mut outputs: Vec<Vec<f32>> = (0..self.width())
            .map(|_| Vec::with_capacity(rows))
            .collect();
        let series_width = self.series_width();
        let windows: Vec<f64> = self.windows_hours.iter().map(|w| f64::from(*w)).collect();
        let delta = f64::from(self.delta_hours);
        // The carried-forward values of every measurement, which the scores read.
        let mut carried: Vec<Vec<f64>> = vec![Vec::with_capacity(rows); self.series.len()];
        let mut scratch = SeriesScratch::default();
        for patient in &patients {
            let patient_hours = &hours[patient.clone()];
            for (index, values) in series.iter().enumerate() {
                let block = &mut outputs[index * series_width..(index + 1) * series_width];
                series_features(
                    patient_hours,
                    &values[patient.clone()],
                    &windows,
                    delta,
                    block,
                    &mut carried[index],
                    &mut scratch,
                );
            }
        }

        let mut next = self.series.len() * series_width;
        for name in &self.statics {
            outputs[next] = float64_column(batch, name)?
                .iter()
                .map(|v| *v as f32)
                .collect();
            next += 1;
        }
        if self.hours_since_admission {
            let admission = float64_column(batch, HOSPITAL_ADMISSION_COLUMN)?;
            outputs[next] = hours
                .iter()
                .zip(&admission)
                .map(|(hour, admitted)| (hour - admitted) as f32)
                .collect();
            next += 1;
        }
        for score in &self.scores {
            let inputs: Vec<(&str, &[f64])> = score
                .inputs()
                .iter()
                .map(|name| {
                    let index = self
                        .series
                        .iter()
                        .position(|s| s == name)
                        .expect("a score is in the spec only when its inputs are");
                    (*name, carried[index].as_slice())
                })
                .collect();
            outputs[next] = (0..rows)
                .map(|row| {
                    let value = |name: &str| {
                        inputs
                            .iter()
                            .find(|(input, _)| *input == name)
                            .map_or(f64::NAN, |(_, values)| values[row])
                    };
                    score.score(value) as f32
                })
                .collect();
            next += 1;
        }
        let mut columns: Vec<ArrayRef> = outputs
            .into_iter()
            .take(next)
            .map(|values| Arc::new(Float32Array::from(values)) as ArrayRef)
            .collect();
        for categorical in &self.categoricals {
            columns.extend(one_hot(batch, categorical)?);
        }
        debug_assert_eq!(columns.len(), self.width());
        Ok(columns)
    }
}

/// Reusable buffers of one measurement's history within a patient.
#[derive(Default)]
struct SeriesScratch {
    hours: Vec<f64>,
    values: Vec<f64>,
    window_starts: Vec<usize>,
}

/// Computes one measurement's history features for one patient's rows,
/// appending one value per row to each output of `block`, and the carried
/// value to `carried`.
fn series_features(
    hours: &[f64],
    values: &[f64],
    windows: &[f64],
    delta: f64,
    block: &mut [Vec<f32>],
    carried: &mut Vec<f64>,
    scratch: &mut SeriesScratch,
) {
    let SeriesScratch {
        hours: measured_hours,
        values: measured,
        window_starts,
    } = scratch;
    measured_hours.clear();
    measured.clear();
    window_starts.clear();
    window_starts.resize(windows.len(), 0);
    // Measurements at or before t − delta: the prefix that the delta reads.
    let mut before_delta = 0;
    let (fixed, window_block) = block.split_at_mut(SERIES_FIXED_OUTPUTS - 1);
    let (window_block, delta_output) = window_block.split_at_mut(window_block.len() - 1);

    for (&t, &x) in hours.iter().zip(values) {
        let is_measured = !x.is_nan();
        if is_measured {
            measured_hours.push(t);
            measured.push(x);
        }
        let count = measured.len();
        let last = measured.last().copied().unwrap_or(f64::NAN);
        let since = measured_hours.last().map_or(f64::NAN, |h| t - h);
        fixed[0].push(last as f32);
        fixed[1].push(if is_measured { 0.0 } else { 1.0 });
        fixed[2].push(since as f32);
        fixed[3].push(count as f32);
        carried.push(last);

        for (k, window) in windows.iter().enumerate() {
            let start = &mut window_starts[k];
            while *start < count && measured_hours[*start] <= t - window {
                *start += 1;
            }
            let stats = WindowStats::of(&measured[*start..]);
            let outputs = &mut window_block[k * WINDOW_STATS.len()..(k + 1) * WINDOW_STATS.len()];
            outputs[0].push(stats.mean as f32);
            outputs[1].push(stats.min as f32);
            outputs[2].push(stats.max as f32);
            outputs[3].push(stats.std as f32);
        }

        while before_delta < count && measured_hours[before_delta] <= t - delta {
            before_delta += 1;
        }
        let earlier = if before_delta > 0 {
            measured[before_delta - 1]
        } else {
            f64::NAN
        };
        delta_output[0].push((last - earlier) as f32);
    }
}

/// Mean, min, max and sample standard deviation of a window; NaN when the
/// window is empty, and the deviation NaN below two values.
struct WindowStats {
    mean: f64,
    min: f64,
    max: f64,
    std: f64,
}

impl WindowStats {
    fn of(values: &[f64]) -> WindowStats {
        if values.is_empty() {
            return WindowStats {
                mean: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                std: f64::NAN,
            };
        }
        let n = values.len() as f64;
        let mut sum = 0.0;
        let mut min = f64::INFINITY;
        let mut max = f64::NEG_INFINITY;
        for &v in values {
            sum += v;
            min = min.min(v);
            max = max.max(v);
        }
        let mean = sum / n;
        let std = if values.len() < 2 {
            f64::NAN
        } else {
            // Two passes: the deviations from the mean, not the difference of
            // large sums, so a constant window gives exactly 0.
            let squares: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
            (squares / (n - 1.0)).sqrt()
        };
        WindowStats {
            mean,
            min,
            max,
            std,
        }
    }
}

/// Returns each row's hour and the rows of each patient, checked as
/// [`FeatureSpec::compute`] checks them.
pub fn patient_rows(
    batch: &RecordBatch,
    spec: &FeatureSpec,
) -> Result<(Vec<f64>, Vec<std::ops::Range<usize>>), FeatureError> {
    let ids = string_column(batch, &spec.id_column)?;
    let hours = float64_column(batch, &spec.time_column)?;
    let runs = patient_runs(&ids, &hours)?;
    Ok((hours, runs))
}

/// Splits the rows into one range per patient, checking that each patient's
/// rows are contiguous and their hours strictly increasing.
fn patient_runs(
    ids: &[Option<&str>],
    hours: &[f64],
) -> Result<Vec<std::ops::Range<usize>>, FeatureError> {
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for (row, id) in ids.iter().enumerate() {
        let id = id.unwrap_or("");
        match runs.last_mut() {
            Some(run) if ids[run.start].unwrap_or("") == id => {
                let previous = hours[row - 1];
                if hours[row] <= previous {
                    return Err(FeatureError::HourOrder {
                        row,
                        hour: hours[row],
                        previous,
                    });
                }
                run.end = row + 1;
            }
            _ => {
                if !seen.insert(id) {
                    return Err(FeatureError::NotContiguous { row });
                }
                runs.push(row..row + 1);
            }
        }
    }
    Ok(runs)
}

/// An iterator that splits a stream of row batches at patient boundaries, so
/// each batch passed on contains whole patients. The rows of the last patient
/// of a batch wait for the next batch, since they may continue there.
pub struct PatientBatches<I> {
    inner: I,
    id_column: String,
    pending: Option<RecordBatch>,
}

impl<I, E> PatientBatches<I>
where
    I: Iterator<Item = Result<RecordBatch, E>>,
{
    pub fn new(inner: I, id_column: &str) -> Self {
        PatientBatches {
            inner,
            id_column: id_column.to_string(),
            pending: None,
        }
    }
}

impl<I, E> Iterator for PatientBatches<I>
where
    I: Iterator<Item = Result<RecordBatch, E>>,
    E: From<FeatureError>,
{
    type Item = Result<RecordBatch, E>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let batch = match self.inner.next() {
                Some(Ok(batch)) => batch,
                Some(Err(error)) => return Some(Err(error)),
                None => return self.pending.take().map(Ok),
            };
            let combined = match self.pending.take() {
                Some(pending) => {
                    match arrow::compute::concat_batches(&batch.schema(), [&pending, &batch]) {
                        Ok(combined) => combined,
                        Err(error) => return Some(Err(FeatureError::from(error).into())),
                    }
                }
                None => batch,
            };
            let start = match last_patient_start(&combined, &self.id_column) {
                Ok(start) => start,
                Err(error) => return Some(Err(error.into())),
            };
            self.pending = Some(combined.slice(start, combined.num_rows() - start));
            if start > 0 {
                return Some(Ok(combined.slice(0, start)));
            }
        }
    }
}

/// Finds the first row of the batch's last patient.
fn last_patient_start(batch: &RecordBatch, id_column: &str) -> Result<usize, FeatureError> {
    let ids = string_column(batch, id_column)?;
    let Some(last) = ids.last() else {
        return Ok(0);
    };
    let start = ids
        .iter()
        .rposition(|id| id != last)
        .map_or(0, |row| row + 1);
    Ok(start)
}

fn string_column<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<Vec<Option<&'a str>>, FeatureError> {
    let array = column(batch, name)?;
    match array.data_type() {
        DataType::Utf8 => Ok(array.as_string::<i32>().iter().collect()),
        DataType::LargeUtf8 => Ok(array.as_string::<i64>().iter().collect()),
        other => Err(FeatureError::ColumnType {
            column: name.to_string(),
            found: other.clone(),
            expected: "text",
        }),
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, FeatureError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| FeatureError::MissingColumn {
            column: name.to_string(),
        })
}

/// Reads a numeric column as float64, nulls becoming NaN.
fn float64_column(batch: &RecordBatch, name: &str) -> Result<Vec<f64>, FeatureError> {
    let array = column(batch, name)?;
    let values = match array.data_type() {
        DataType::Float64 => array
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect(),
        DataType::Int64 => array
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.map_or(f64::NAN, |v| v as f64))
            .collect(),
        DataType::Float32 => array
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| v.map_or(f64::NAN, f64::from))
            .collect(),
        other => {
            return Err(FeatureError::ColumnType {
                column: name.to_string(),
                found: other.clone(),
                expected: "a number",
            })
        }
    };
    Ok(values)
}

/// One-hot encodes a categorical from its indicator columns. The first level
/// whose indicator is 1 wins; a row with none gets the unknown level.
fn one_hot(batch: &RecordBatch, spec: &CategoricalSpec) -> Result<Vec<ArrayRef>, FeatureError> {
    let rows = batch.num_rows();
    let unknown = spec.levels.len();
    let mut chosen = vec![unknown; rows];
    for (level_index, level) in spec.levels.iter().enumerate().rev() {
        let indicator = float64_column(batch, &level.indicator)?;
        for (row, value) in indicator.iter().enumerate() {
            if *value == 1.0 {
                chosen[row] = level_index;
            }
        }
    }
    let columns = (0..=unknown)
        .map(|level_index| {
            let values: Float32Array = chosen
                .iter()
                .map(|c| Some(if *c == level_index { 1.0 } else { 0.0 }))
                .collect();
            Arc::new(values) as ArrayRef
        })
        .collect();
    Ok(columns)
}

#[cfg(test)]
mod tests;
