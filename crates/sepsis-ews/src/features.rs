//! The model's input features, computed by this one module; every path that
//! turns hourly rows into model input must call it.
//!
//! The current feature set is flat: each hour's own values, with nothing
//! carried over from other hours, so a feature at hour t depends on row t
//! alone. Numeric columns pass through as float32 with missing values kept as
//! NaN, which LightGBM routes down its learned missing-value branch. Each
//! categorical is one-hot encoded with a fixed width: one output per level
//! plus an explicit `unknown` level for rows where no level indicator is 1.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float32Array, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use serde::{Deserialize, Serialize};

use crate::schema::{CategoricalSpec, Schema};

/// Version of the feature code; it changes whenever a feature's definition does.
pub const FEATURE_SET_VERSION: &str = "flat-1";

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("input column {column:?} is missing")]
    MissingColumn { column: String },
    #[error("input column {column:?} has type {found}, expected a number")]
    ColumnType { column: String, found: DataType },
}

/// The fitted transformer: which columns feed the model and in what order.
/// It is stored as JSON under `artifacts/transform/<feature version>/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub feature_set_version: String,
    pub schema_digest: String,
    /// Columns passed through as they are.
    pub numeric: Vec<String>,
    pub categoricals: Vec<CategoricalSpec>,
    /// Every output column in model order: numeric first, then each
    /// categorical's levels and its unknown level.
    pub feature_names: Vec<String>,
}

impl FeatureSpec {
    pub fn from_schema(schema: &Schema) -> FeatureSpec {
        let numeric: Vec<String> = schema
            .numeric_features()
            .iter()
            .map(|c| c.name.clone())
            .collect();
        let mut feature_names = numeric.clone();
        for categorical in &schema.categoricals {
            feature_names.extend(categorical.output_names());
        }
        FeatureSpec {
            feature_set_version: FEATURE_SET_VERSION.to_string(),
            schema_digest: schema.digest.clone(),
            numeric,
            categoricals: schema.categoricals.clone(),
            feature_names,
        }
    }

    pub fn width(&self) -> usize {
        self.feature_names.len()
    }

    /// Computes the feature columns, in [`FeatureSpec::feature_names`] order,
    /// for a batch of hourly rows whose columns are named as in the schema.
    pub fn compute(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>, FeatureError> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.width());
        for name in &self.numeric {
            columns.push(Arc::new(numeric_column(batch, name)?));
        }
        for categorical in &self.categoricals {
            columns.extend(one_hot(batch, categorical)?);
        }
        Ok(columns)
    }
}

/// Reads a numeric column as float32, nulls becoming NaN.
fn numeric_column(batch: &RecordBatch, name: &str) -> Result<Float32Array, FeatureError> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| FeatureError::MissingColumn {
            column: name.to_string(),
        })?;
    let values: Float32Array = match array.data_type() {
        DataType::Float64 => array
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| Some(v.map_or(f32::NAN, |v| v as f32)))
            .collect(),
        DataType::Int64 => array
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| Some(v.map_or(f32::NAN, |v| v as f32)))
            .collect(),
        DataType::Float32 => array
            .as_primitive::<arrow::datatypes::Float32Type>()
            .iter()
            .map(|v| Some(v.unwrap_or(f32::NAN)))
            .collect(),
        other => {
            return Err(FeatureError::ColumnType {
                column: name.to_string(),
                found: other.clone(),
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
        let indicator = numeric_column(batch, &level.indicator)?;
        for (row, value) in indicator.values().iter().enumerate() {
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
mod tests {
    use super::*;
    use arrow::array::Float64Array;
    use arrow::datatypes::{Field, Schema as ArrowSchema};

    fn unit_batch(unit1: Vec<Option<f64>>, unit2: Vec<Option<f64>>) -> RecordBatch {
        let schema = ArrowSchema::new(vec![
            Field::new("Unit1", DataType::Float64, true),
            Field::new("Unit2", DataType::Float64, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Float64Array::from(unit1)),
                Arc::new(Float64Array::from(unit2)),
            ],
        )
        .unwrap()
    }

    fn column_values(array: &ArrayRef) -> Vec<f32> {
        array
            .as_primitive::<arrow::datatypes::Float32Type>()
            .values()
            .to_vec()
    }

    #[test]
    fn unit_one_hot_has_unknown_level() {
        let spec = FeatureSpec::from_schema(&Schema::embedded());
        let batch = unit_batch(
            vec![Some(1.0), Some(0.0), None, Some(0.0)],
            vec![Some(0.0), Some(1.0), None, Some(0.0)],
        );
        let columns = one_hot(&batch, &spec.categoricals[0]).unwrap();
        assert_eq!(columns.len(), 3);
        assert_eq!(column_values(&columns[0]), [1.0, 0.0, 0.0, 0.0]);
        assert_eq!(column_values(&columns[1]), [0.0, 1.0, 0.0, 0.0]);
        assert_eq!(column_values(&columns[2]), [0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn missing_numeric_becomes_nan_not_zero() {
        let batch = unit_batch(vec![None, Some(0.0)], vec![Some(1.0), Some(1.0)]);
        let values = numeric_column(&batch, "Unit1").unwrap();
        assert!(values.value(0).is_nan());
        assert_eq!(values.value(1), 0.0);
    }

    #[test]
    fn feature_names_are_fixed_width() {
        let spec = FeatureSpec::from_schema(&Schema::embedded());
        assert_eq!(spec.width(), 41);
        assert_eq!(spec.feature_names[0], "HR");
        assert_eq!(spec.feature_names[40], "unit_unknown");
        assert!(!spec.feature_names.iter().any(|n| n == "Unit1"));
    }
}
