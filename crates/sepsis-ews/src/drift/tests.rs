use arrow::array::{Array, AsArray};
use arrow::datatypes::Float32Type;

use super::*;
use crate::config::FeatureConfig;
use crate::schema::Schema;
use crate::test_support;

fn spec() -> FeatureSpec {
    let config = FeatureConfig {
        windows_hours: vec![6, 24],
        delta_hours: 6,
    };
    FeatureSpec::new(&Schema::embedded(), &config)
}

/// Computes the sample's feature matrix, row-major, as training keeps it.
async fn sample_features(spec: &FeatureSpec) -> (Vec<f32>, usize) {
    let batch = test_support::sample_rows(&Schema::embedded()).await;
    let columns = spec.compute(&batch).unwrap();
    let rows = batch.num_rows();
    let width = columns.len();
    let mut values = vec![0.0; rows * width];
    for (column, array) in columns.iter().enumerate() {
        let array = array.as_primitive::<Float32Type>();
        assert_eq!(array.null_count(), 0);
        for row in 0..rows {
            values[row * width + column] = array.value(row);
        }
    }
    (values, rows)
}

fn window_of(profile: &Arc<DriftProfile>, rows: impl Iterator<Item = Vec<u8>>) -> DriftWindow {
    let mut window = DriftWindow::new(profile.clone(), 100_000);
    for bins in rows {
        window.push(&bins);
    }
    window
}

#[test]
fn psi_zero_then_growing() {
    let expected = [0.25, 0.25, 0.25, 0.25];
    assert_eq!(psi(&[10, 10, 10, 10], &expected), 0.0);
    let small = psi(&[12, 10, 10, 8], &expected);
    let large = psi(&[30, 5, 3, 2], &expected);
    assert!(small > 0.0, "{small}");
    assert!(small < 0.1, "{small}");
    assert!(large > 0.25, "{large}");
    // By hand: shares [1, 0] against [0.5, 0.5], the empty bin floored.
    let by_hand = (1.0 - 0.5) * (1.0f64 / 0.5).ln() + (PSI_FLOOR - 0.5) * (PSI_FLOOR / 0.5).ln();
    assert!((psi(&[7, 0], &[0.5, 0.5]) - by_hand).abs() < 1e-12);
    assert_eq!(psi(&[0, 0], &[0.5, 0.5]), 0.0);
}

#[test]
fn decile_edges_distinct() {
    let values: Vec<f32> = (0..1000).map(|v| v as f32).collect();
    let edges = decile_edges(values);
    assert_eq!(edges.len(), REFERENCE_BINS - 1);
    assert_eq!(edges[0], 100.0);
    assert_eq!(edges[8], 900.0);

    // Two levels, as a 0/1 column gives: one bound between them.
    let binary: Vec<f32> = (0..100).map(|v| (v % 2) as f32).collect();
    assert_eq!(decile_edges(binary), vec![0.0]);
    assert_eq!(decile_edges(vec![5.0; 40]), Vec::<f64>::new());
    assert_eq!(decile_edges(Vec::new()), Vec::<f64>::new());
}

#[tokio::test]
async fn reference_rows_no_drift() {
    let spec = spec();
    let (values, rows) = sample_features(&spec).await;
    let (counted, inputs) = DriftReference::inputs_of(&spec, &values);
    assert_eq!(counted, rows);
    let probabilities: Vec<f64> = (0..rows).map(|r| (r % 97) as f64 / 100.0).collect();
    let reference =
        DriftReference::new(rows, inputs, DriftReference::prediction_of(&probabilities));

    let expected_inputs = spec.series.len() + spec.statics.len() + spec.categoricals.len();
    assert_eq!(reference.inputs.len(), expected_inputs);
    for input in &reference.inputs {
        let total: f64 = input.shares.iter().sum();
        assert!((total - 1.0).abs() < 1e-9, "{}: {total}", input.feature);
    }
    let hr = reference.inputs.iter().find(|i| i.feature == "HR").unwrap();
    assert_eq!(hr.edges.len(), REFERENCE_BINS - 1);
    let age = reference
        .inputs
        .iter()
        .find(|i| i.feature == "Age")
        .unwrap();
    assert_eq!(*age.shares.last().unwrap(), 0.0, "age is never missing");

    let profile = Arc::new(reference.resolve(&spec.feature_names).unwrap());
    let width = spec.feature_names.len();
    let window = window_of(
        &profile,
        (0..rows).map(|row| {
            let mut bins = Vec::new();
            profile.bin_row(|c| values[row * width + c], probabilities[row], &mut bins);
            bins
        }),
    );
    let report = window.report();
    assert_eq!(report.rows, rows);
    for (feature, psi) in &report.inputs {
        assert!(psi.abs() < 1e-12, "{feature}: {psi}");
    }
    assert!(report.prediction.abs() < 1e-12);
}

#[tokio::test]
async fn shifted_input_drifts_alone() {
    let spec = spec();
    let (values, rows) = sample_features(&spec).await;
    let (_, inputs) = DriftReference::inputs_of(&spec, &values);
    let probabilities: Vec<f64> = (0..rows).map(|r| (r % 50) as f64 / 100.0).collect();
    let reference =
        DriftReference::new(rows, inputs, DriftReference::prediction_of(&probabilities));
    let profile = Arc::new(reference.resolve(&spec.feature_names).unwrap());

    let width = spec.feature_names.len();
    let hr = spec.feature_names.iter().position(|n| n == "HR").unwrap();
    let lactate_missing = spec
        .feature_names
        .iter()
        .position(|n| n == "Lactate_missing")
        .unwrap();
    // Every heart rate 40 beats faster, lactate never measured, and every
    // probability higher than any reference one.
    let window = window_of(
        &profile,
        (0..rows).map(|row| {
            let mut bins = Vec::new();
            let value = |c: usize| match c {
                c if c == hr => values[row * width + c] + 40.0,
                c if c == lactate_missing => 1.0,
                c => values[row * width + c],
            };
            profile.bin_row(value, 0.9, &mut bins);
            bins
        }),
    );
    let report = window.report();
    let psi_of = |name: &str| report.inputs.iter().find(|(f, _)| f == name).unwrap().1;
    assert!(psi_of("HR") > 0.25, "HR: {}", psi_of("HR"));
    // Lactate is measured in few hours, so even never measuring it moves
    // only a small share of rows: a moderate shift, not a major one.
    assert!(psi_of("Lactate") > 0.1, "Lactate: {}", psi_of("Lactate"));
    assert!(psi_of("Resp").abs() < 1e-12);
    assert!(report.prediction > 0.25);
}

#[test]
fn window_forgets_oldest_rows() {
    let reference = DriftReference::new(
        4,
        Vec::new(),
        DriftReference::prediction_of(&[0.1, 0.2, 0.3, 0.4]),
    );
    let profile = Arc::new(reference.resolve(&[]).unwrap());
    let mut window = DriftWindow::new(profile.clone(), 3);
    let push = |window: &mut DriftWindow, p: f64| {
        let mut bins = Vec::new();
        profile.bin_row(|_| 0.0, p, &mut bins);
        window.push(&bins);
    };
    for p in [0.9, 0.9, 0.9] {
        push(&mut window, p);
    }
    let all_high = window.report().prediction;
    assert!(all_high > 0.25);
    for p in [0.1, 0.2, 0.3] {
        push(&mut window, p);
    }
    let report = window.report();
    assert_eq!(report.rows, 3);
    assert!(report.prediction < all_high);
    // Only the last three rows count: 0.1, 0.2 and 0.3 against four
    // reference bins that include 0.4.
    let by_hand = psi(&[1, 1, 1, 0, 0], &profile.prediction.shares);
    assert_eq!(report.prediction, by_hand);
}

#[test]
fn reference_unknown_column_refused() {
    let reference = DriftReference::new(
        1,
        vec![InputReference {
            feature: "HR".into(),
            source: InputSource::Number {
                column: "HR".into(),
            },
            edges: vec![80.0],
            shares: vec![0.5, 0.5, 0.0],
        }],
        DriftReference::prediction_of(&[0.1]),
    );
    let error = reference.resolve(&["Temp".to_string()]).unwrap_err();
    assert!(error.to_string().contains("input HR"), "{error}");
    let bytes = serde_json::to_vec(&DriftReference {
        format: 99,
        ..reference.clone()
    })
    .unwrap();
    let error = DriftReference::from_json(&bytes).unwrap_err();
    assert!(error.to_string().contains("format 99"), "{error}");
    let back = DriftReference::from_json(&serde_json::to_vec(&reference).unwrap()).unwrap();
    assert_eq!(back, reference);
}

#[test]
fn missing_probabilities_fall_in_the_last_bin() {
    let prediction = DriftReference::prediction_of(&[0.1, f64::NAN]);
    assert_eq!(prediction.shares.last(), Some(&0.5));
}
