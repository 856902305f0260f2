use super::*;
use arrow::array::{Float64Array, StringArray};
use arrow::datatypes::{Field, Schema as ArrowSchema};

use crate::config::FeatureConfig;
use crate::test_support;

fn default_config() -> FeatureConfig {
    FeatureConfig {
        windows_hours: vec![6, 24],
        delta_hours: 6,
    }
}

fn spec() -> FeatureSpec {
    FeatureSpec::new(&Schema::embedded(), &default_config())
}

/// Builds a batch with every schema column: the given patients, hours and
/// values of a few columns by name, and every other value missing.
fn rows(ids: &[&str], hours: &[f64], columns: &[(&str, Vec<Option<f64>>)]) -> RecordBatch {
    let schema = Schema::embedded();
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for column in &schema.columns {
        if column.name == schema.id_column {
            fields.push(Field::new(&column.name, DataType::Utf8, true));
            arrays.push(Arc::new(StringArray::from(ids.to_vec())));
            continue;
        }
        let values: Vec<Option<f64>> = if column.name == schema.time_column {
            hours.iter().map(|h| Some(*h)).collect()
        } else {
            match columns.iter().find(|(name, _)| *name == column.name) {
                Some((_, values)) => values.clone(),
                None => vec![None; ids.len()],
            }
        };
        fields.push(Field::new(&column.name, DataType::Float64, true));
        arrays.push(Arc::new(Float64Array::from(values)));
    }
    RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), arrays).unwrap()
}

/// Returns the values of one output feature.
fn feature(spec: &FeatureSpec, columns: &[ArrayRef], name: &str) -> Vec<f32> {
    let index = spec
        .feature_names
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no feature {name}"));
    columns[index]
        .as_primitive::<Float32Type>()
        .values()
        .to_vec()
}

/// Compares floats bit for bit, so NaN equals NaN and -0 differs from 0.
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn assert_nan(values: &[f32]) {
    assert!(
        values.iter().all(|v| v.is_nan()),
        "expected NaN: {values:?}"
    );
}

#[test]
fn feature_names_are_unique_and_fixed_width() {
    let spec = spec();
    // 34 measurements × 13, 4 passed through, the admission clock, 7 scores
    // and the unit's 3 levels.
    assert_eq!(spec.width(), 34 * 13 + 4 + 1 + 7 + 3);
    let unique: HashSet<&String> = spec.feature_names.iter().collect();
    assert_eq!(unique.len(), spec.width());
    assert_eq!(spec.feature_names[0], "HR");
    assert_eq!(spec.feature_names[12], "HR_delta_6h");
    assert_eq!(spec.feature_names.last().unwrap(), "unit_unknown");
    assert!(!spec.feature_names.iter().any(|n| n == "Unit1"));
    let columns = spec.compute(&rows(&["a"], &[1.0], &[])).unwrap();
    assert_eq!(columns.len(), spec.width());
}

#[test]
fn history_features_follow_their_definitions() {
    let spec = spec();
    let hours: Vec<f64> = (1..=9).map(f64::from).collect();
    let hr = vec![
        Some(80.0),
        None,
        Some(90.0),
        None,
        None,
        None,
        None,
        Some(100.0),
        None,
    ];
    let batch = rows(&["a"; 9], &hours, &[("HR", hr)]);
    let columns = spec.compute(&batch).unwrap();
    let f = |name: &str| feature(&spec, &columns, name);

    assert_eq!(
        f("HR"),
        [80.0, 80.0, 90.0, 90.0, 90.0, 90.0, 90.0, 100.0, 100.0]
    );
    assert_eq!(
        f("HR_missing"),
        [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0]
    );
    assert_eq!(
        f("HR_hours_since"),
        [0.0, 1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 1.0]
    );
    assert_eq!(f("HR_count"), [1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0]);
    // The 6 h window at hour 7 contains hours 2..=7, so the 80 of hour 1 is out.
    assert_eq!(f("HR_mean_6h")[6], 90.0);
    assert_eq!(f("HR_mean_6h")[5], 85.0);
    // At hour 9 the window contains hours 4..=9: only the 100 of hour 8.
    assert_eq!(f("HR_mean_6h")[8], 100.0);
    assert!(f("HR_std_6h")[8].is_nan());
    assert_eq!(f("HR_min_24h")[8], 80.0);
    assert_eq!(f("HR_max_24h")[8], 100.0);
    assert_eq!(f("HR_mean_24h")[8], 90.0);
    assert_eq!(f("HR_std_24h")[8], 10.0);
    assert!(f("HR_std_24h")[0].is_nan());
    // Delta: the value now minus the value as it stood 6 h earlier.
    let delta = f("HR_delta_6h");
    assert_nan(&delta[..6]);
    assert_eq!(delta[6], 10.0); // hour 7: 90 − 80 (hour 1)
    assert_eq!(delta[7], 20.0); // hour 8: 100 − 80 (hour 2 carries 80)
    assert_eq!(delta[8], 10.0); // hour 9: 100 − 90 (hour 3)
}

#[test]
fn windows_follow_the_hours_not_the_rows() {
    let spec = spec();
    // Hours 1, 2 and 30: at hour 30 the 24 h window (6, 30] holds only hour 30.
    let batch = rows(
        &["a"; 3],
        &[1.0, 2.0, 30.0],
        &[("HR", vec![Some(60.0), Some(70.0), Some(110.0)])],
    );
    let columns = spec.compute(&batch).unwrap();
    assert_eq!(feature(&spec, &columns, "HR_mean_24h")[2], 110.0);
    assert_eq!(feature(&spec, &columns, "HR_count")[2], 3.0);
    assert_eq!(feature(&spec, &columns, "HR_delta_6h")[2], 40.0);
}

#[test]
fn single_hour_stay_has_defined_features() {
    let spec = spec();
    let batch = rows(&["a"], &[1.0], &[("HR", vec![Some(88.0)])]);
    let columns = spec.compute(&batch).unwrap();
    let f = |name: &str| feature(&spec, &columns, name);
    assert_eq!(f("HR"), [88.0]);
    assert_eq!(f("HR_count"), [1.0]);
    assert_eq!(f("HR_mean_6h"), [88.0]);
    assert_nan(&f("HR_std_6h"));
    assert_nan(&f("HR_delta_6h"));
    assert_eq!(f("ICULOS"), [1.0]);
}

#[test]
fn patient_without_labs_gets_missing_not_zero() {
    let spec = spec();
    let vitals = vec![
        ("HR", vec![Some(120.0), Some(125.0)]),
        ("SBP", vec![Some(95.0), Some(90.0)]),
        ("Resp", vec![Some(24.0), Some(26.0)]),
        ("Temp", vec![Some(38.5), None]),
    ];
    let batch = rows(&["a", "a"], &[1.0, 2.0], &vitals);
    let columns = spec.compute(&batch).unwrap();
    let f = |name: &str| feature(&spec, &columns, name);
    for lab in ["Lactate", "WBC", "Creatinine", "Platelets"] {
        assert_nan(&f(lab));
        assert_eq!(f(&format!("{lab}_missing")), [1.0, 1.0]);
        assert_eq!(f(&format!("{lab}_count")), [0.0, 0.0]);
        assert_nan(&f(&format!("{lab}_hours_since")));
        assert_nan(&f(&format!("{lab}_mean_24h")));
    }
    // The scores use the vitals; the missing labs add nothing.
    assert_eq!(f("sirs"), [3.0, 3.0]); // temperature (carried), heart rate, breathing
    assert_eq!(f("qsofa"), [2.0, 2.0]);
    assert_eq!(f("sofa_partial"), [0.0, 0.0]);
    assert_nan(&f("bun_creatinine"));
    assert_eq!(f("shock_index")[0], (120.0f64 / 95.0) as f32);
}

#[test]
fn news2_adds_the_available_parts() {
    let spec = spec();
    let batch = rows(
        &["a", "b"],
        &[1.0, 1.0],
        &[
            ("Resp", vec![Some(26.0), Some(16.0)]),  // 3, 0
            ("O2Sat", vec![Some(92.0), Some(97.0)]), // 2, 0
            ("FiO2", vec![Some(0.5), Some(21.0)]),   // 2 (oxygen), 0 (21 % is room air)
            ("Temp", vec![Some(39.5), Some(36.5)]),  // 2, 0
            ("SBP", vec![Some(88.0), Some(120.0)]),  // 3, 0
            ("HR", vec![Some(135.0), Some(72.0)]),   // 3, 0
        ],
    );
    let columns = spec.compute(&batch).unwrap();
    assert_eq!(feature(&spec, &columns, "news2"), [15.0, 0.0]);
}

#[test]
fn rows_out_of_order_are_refused() {
    let spec = spec();
    let error = spec
        .compute(&rows(&["a", "a", "a"], &[1.0, 3.0, 2.0], &[]))
        .unwrap_err();
    assert!(
        matches!(error, FeatureError::HourOrder { row: 2, .. }),
        "{error}"
    );
    let duplicate = spec
        .compute(&rows(&["a", "a"], &[4.0, 4.0], &[]))
        .unwrap_err();
    assert!(matches!(duplicate, FeatureError::HourOrder { row: 1, .. }));
    let split = spec
        .compute(&rows(&["a", "b", "a"], &[1.0, 1.0, 2.0], &[]))
        .unwrap_err();
    assert!(matches!(split, FeatureError::NotContiguous { row: 2 }));
}

#[test]
fn missing_hour_is_refused() {
    let spec = spec();
    let mut batch = rows(&["a"], &[1.0], &[]);
    let index = batch.schema().index_of("ICULOS").unwrap();
    let mut columns = batch.columns().to_vec();
    columns[index] = Arc::new(Float64Array::from(vec![None::<f64>]));
    batch = RecordBatch::try_new(batch.schema(), columns).unwrap();
    let error = spec.compute(&batch).unwrap_err();
    assert!(matches!(error, FeatureError::MissingValue { row: 0, .. }));
}

#[test]
fn unit_one_hot_has_unknown_level() {
    let spec = spec();
    let batch = rows(
        &["a", "b", "c", "d"],
        &[1.0; 4],
        &[
            ("Unit1", vec![Some(1.0), Some(0.0), None, Some(0.0)]),
            ("Unit2", vec![Some(0.0), Some(1.0), None, Some(0.0)]),
        ],
    );
    let columns = spec.compute(&batch).unwrap();
    assert_eq!(feature(&spec, &columns, "unit_MICU"), [1.0, 0.0, 0.0, 0.0]);
    assert_eq!(feature(&spec, &columns, "unit_SICU"), [0.0, 1.0, 0.0, 0.0]);
    assert_eq!(
        feature(&spec, &columns, "unit_unknown"),
        [0.0, 0.0, 1.0, 1.0]
    );
}

/// Computes the features of `batch` and returns them row by row.
fn feature_rows(spec: &FeatureSpec, batch: &RecordBatch) -> Vec<Vec<f32>> {
    let columns = spec.compute(batch).unwrap();
    (0..batch.num_rows())
        .map(|row| {
            columns
                .iter()
                .map(|c| c.as_primitive::<Float32Type>().value(row))
                .collect()
        })
        .collect()
}

/// Returns the row ranges of each patient in a batch ordered patient by patient.
fn patient_ranges(batch: &RecordBatch) -> Vec<std::ops::Range<usize>> {
    let ids = batch
        .column_by_name("patient_id")
        .unwrap()
        .as_string::<i32>();
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    for row in 0..batch.num_rows() {
        match ranges.last_mut() {
            Some(range) if ids.value(range.start) == ids.value(row) => range.end = row + 1,
            _ => ranges.push(row..row + 1),
        }
    }
    ranges
}

/// The guard of the whole module: for real stays, cutting the history at
/// hour t leaves every feature of the hours up to t unchanged, so no
/// feature reads a later row.
#[tokio::test]
async fn features_never_read_later_hours() {
    let schema = Schema::embedded();
    let spec = FeatureSpec::new(&schema, &default_config());
    let sample = test_support::sample_rows(&schema).await;
    let ranges = patient_ranges(&sample);
    // Long stays and septic ones, where windows and deltas fill up.
    let patients: Vec<_> = ranges.iter().filter(|r| r.len() >= 30).take(40).collect();
    assert_eq!(patients.len(), 40);
    let mut cuts_checked = 0;
    for range in patients {
        let stay = sample.slice(range.start, range.len());
        let full = feature_rows(&spec, &stay);
        let n = range.len();
        for cut in [1, 2, 5, 7, 13, 24, 25, n / 2, n - 1] {
            let prefix = feature_rows(&spec, &stay.slice(0, cut));
            for (hour, (cut_row, full_row)) in prefix.iter().zip(&full).enumerate() {
                assert!(
                    same_bits(cut_row, full_row),
                    "hour index {hour} changed when the stay was cut after {cut} rows: {}",
                    first_difference(&spec, cut_row, full_row)
                );
            }
            cuts_checked += 1;
        }
    }
    assert_eq!(cuts_checked, 40 * 9);
}

fn first_difference(spec: &FeatureSpec, a: &[f32], b: &[f32]) -> String {
    a.iter()
        .zip(b)
        .zip(&spec.feature_names)
        .find(|((x, y), _)| x.to_bits() != y.to_bits())
        .map(|((x, y), name)| format!("{name}: {x} against {y}"))
        .unwrap_or_default()
}

/// Patients in one batch do not see each other: the features of a batch of
/// many patients equal those of each patient alone, and batches regrouped at
/// patient boundaries give the same result as one batch.
#[tokio::test]
async fn patients_are_independent_and_batching_does_not_matter() {
    let schema = Schema::embedded();
    let spec = FeatureSpec::new(&schema, &default_config());
    let sample = test_support::sample_rows(&schema).await;
    let ranges = patient_ranges(&sample);
    let first = sample.slice(0, ranges[59].end);
    let together = feature_rows(&spec, &first);
    for range in &ranges[..60] {
        let alone = feature_rows(&spec, &first.slice(range.start, range.len()));
        for (offset, row) in alone.iter().enumerate() {
            assert!(same_bits(row, &together[range.start + offset]));
        }
    }

    // Cut the rows into batches of 7, which split patients everywhere.
    let pieces: Vec<Result<RecordBatch, FeatureError>> = (0..first.num_rows())
        .step_by(7)
        .map(|start| Ok(first.slice(start, 7.min(first.num_rows() - start))))
        .collect();
    let mut regrouped = Vec::new();
    for batch in PatientBatches::new(pieces.into_iter(), "patient_id") {
        regrouped.extend(feature_rows(&spec, &batch.unwrap()));
    }
    assert_eq!(regrouped.len(), together.len());
    for (a, b) in regrouped.iter().zip(&together) {
        assert!(same_bits(a, b));
    }
}
