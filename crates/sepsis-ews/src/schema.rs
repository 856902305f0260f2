//! The column schema (`config/schema.yaml`): every column's name, dtype,
//! whether a value is required, its allowed range or levels, and which
//! columns are the patient id, the hour, the label and the challenge outcome.
//!
//! Import, ingest, validation and the feature code all read the columns from
//! here; nothing infers a dtype from the data.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The schema shipped in the repository, embedded in the binary.
pub const DEFAULT_SCHEMA_YAML: &str = include_str!("../../../config/schema.yaml");

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema file {path} could not be read")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("schema {origin} is not valid YAML for a schema: {message}")]
    Parse { origin: String, message: String },
    #[error("schema {origin}: {message}")]
    Invalid { origin: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    String,
    Float64,
    Int64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    pub name: String,
    pub dtype: DType,
    /// Every row must have a value.
    #[serde(default)]
    pub required: bool,
    /// Inclusive `[min, max]`.
    #[serde(default)]
    pub range: Option<[f64; 2]>,
    /// The only allowed values, for coded columns.
    #[serde(default)]
    pub levels: Option<Vec<f64>>,
    /// Whether the column is a model input; defaults to true for float64 columns.
    #[serde(default)]
    pub feature: Option<bool>,
    /// An input file may leave this column out; it is then missing in every row.
    #[serde(default)]
    pub may_be_absent: bool,
    /// An hourly measurement: the features add its history (last value,
    /// hours since measured, rolling statistics) instead of passing it through.
    #[serde(default)]
    pub series: bool,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

impl ColumnSpec {
    /// Returns whether `value` lies in the column's range and, if it has
    /// levels, is one of them.
    pub fn allows(&self, value: f64) -> bool {
        if !value.is_finite() {
            return false;
        }
        if let Some([min, max]) = self.range {
            if value < min || value > max {
                return false;
            }
        }
        if let Some(levels) = &self.levels {
            return levels.contains(&value);
        }
        true
    }

    /// Describes the allowed values for error messages, as `[0, 300]` or `one of 0, 1`.
    pub fn allowed_description(&self) -> String {
        match (&self.range, &self.levels) {
            (_, Some(levels)) => format!(
                "one of {}",
                levels
                    .iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (Some([min, max]), None) => format!("[{min}, {max}]"),
            (None, None) => "any number".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoricalLevel {
    pub level: String,
    /// Column whose value 1 marks this level.
    pub indicator: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoricalSpec {
    pub name: String,
    pub levels: Vec<CategoricalLevel>,
}

impl CategoricalSpec {
    /// One-hot output names: one per level, then `<name>_unknown`.
    pub fn output_names(&self) -> Vec<String> {
        self.levels
            .iter()
            .map(|l| format!("{}_{}", self.name, l.level))
            .chain(std::iter::once(format!("{}_unknown", self.name)))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    version: u32,
    id_column: String,
    time_column: String,
    label_column: String,
    #[serde(default)]
    outcome_column: Option<String>,
    columns: Vec<ColumnSpec>,
    #[serde(default)]
    categoricals: Vec<CategoricalSpec>,
}

/// A checked schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schema {
    pub version: u32,
    pub id_column: String,
    pub time_column: String,
    pub label_column: String,
    pub outcome_column: Option<String>,
    pub columns: Vec<ColumnSpec>,
    pub categoricals: Vec<CategoricalSpec>,
    /// SHA-256 of the schema text, recorded in manifests.
    pub digest: String,
    /// Set for data that a model scores rather than trains on: validation
    /// then does not ask for septic patients.
    #[serde(skip)]
    pub scoring: bool,
    /// Set for data to evaluate on: an outcome column in the file must have
    /// a value in every row, since an empty one would read as "not septic".
    #[serde(skip)]
    pub outcome_required: bool,
}

impl Schema {
    /// Loads the schema embedded in the binary.
    pub fn embedded() -> Schema {
        Schema::parse(DEFAULT_SCHEMA_YAML, "(embedded)")
            .expect("the embedded schema is checked by a unit test")
    }

    pub fn load(path: &Path) -> Result<Schema, SchemaError> {
        let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Schema::parse(&text, &path.display().to_string())
    }

    /// Parses and checks schema YAML; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Schema, SchemaError> {
        let file: SchemaFile = serde_yaml::from_str(text).map_err(|e| SchemaError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| SchemaError::Invalid {
            origin: origin.to_string(),
            message,
        };

        let mut seen = std::collections::HashSet::new();
        for column in &file.columns {
            if !seen.insert(column.name.as_str()) {
                return Err(invalid(format!("column {:?} is listed twice", column.name)));
            }
            if let Some([min, max]) = column.range {
                let ordered = matches!(
                    min.partial_cmp(&max),
                    Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
                );
                if !ordered {
                    return Err(invalid(format!(
                        "column {:?}: range [{min}, {max}] has min above max",
                        column.name
                    )));
                }
            }
            if column.series && (column.dtype != DType::Float64 || column.feature == Some(false)) {
                return Err(invalid(format!(
                    "column {:?}: series: true needs a float64 model input",
                    column.name
                )));
            }
            if column.dtype == DType::String && (column.range.is_some() || column.levels.is_some())
            {
                return Err(invalid(format!(
                    "column {:?}: a string column cannot have a range or levels",
                    column.name
                )));
            }
        }
        let find = |name: &str| file.columns.iter().find(|c| c.name == name);
        let expect_column = |role: &str, name: &str, dtypes: &[DType]| match find(name) {
            None => Err(invalid(format!("{role} {name:?} is not among the columns"))),
            Some(c) if !dtypes.contains(&c.dtype) => Err(invalid(format!(
                "{role} {name:?} must have dtype {dtypes:?}, not {:?}",
                c.dtype
            ))),
            Some(_) => Ok(()),
        };
        expect_column("id_column", &file.id_column, &[DType::String])?;
        expect_column("time_column", &file.time_column, &[DType::Float64])?;
        // The feature table puts these key columns before the features, so a
        // feature may not take one of their names.
        for column in &file.columns {
            let key_name = ["hour", "label", "outcome"].contains(&column.name.as_str());
            if key_name {
                return Err(invalid(format!(
                    "column {:?}: the name is reserved for the feature table's key columns",
                    column.name
                )));
            }
        }
        expect_column("label_column", &file.label_column, &[DType::Int64])?;
        if let Some(outcome) = &file.outcome_column {
            expect_column("outcome_column", outcome, &[DType::Int64])?;
        }
        if find(&file.time_column).is_some_and(|c| c.series) {
            return Err(invalid(format!(
                "time_column {:?} cannot be a series: it is the hour of the row",
                file.time_column
            )));
        }
        for key in [&file.id_column, &file.time_column, &file.label_column] {
            if find(key).is_some_and(|c| !c.required) {
                return Err(invalid(format!("column {key:?} must be required: true")));
            }
        }
        for categorical in &file.categoricals {
            if categorical.levels.is_empty() {
                return Err(invalid(format!(
                    "categorical {:?} has no levels",
                    categorical.name
                )));
            }
            for level in &categorical.levels {
                expect_column(
                    &format!("indicator of {}={}", categorical.name, level.level),
                    &level.indicator,
                    &[DType::Float64, DType::Int64],
                )?;
            }
        }

        Ok(Schema {
            version: file.version,
            id_column: file.id_column,
            time_column: file.time_column,
            label_column: file.label_column,
            outcome_column: file.outcome_column,
            columns: file.columns,
            categoricals: file.categoricals,
            digest: hex::encode(Sha256::digest(text.as_bytes())),
            scoring: false,
            outcome_required: false,
        })
    }

    /// Returns the schema of data to score. Validation then does not ask for
    /// septic patients, and unless `labels_required`, the label and outcome
    /// columns may be absent.
    pub fn for_scoring(&self, labels_required: bool) -> Schema {
        let mut schema = self.clone();
        schema.scoring = true;
        schema.outcome_required = labels_required;
        if !labels_required {
            for column in &mut schema.columns {
                let is_label = column.name == schema.label_column
                    || schema.outcome_column.as_deref() == Some(column.name.as_str());
                if is_label {
                    column.required = false;
                    column.may_be_absent = true;
                }
            }
        }
        schema
    }

    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Returns whether a column is one of the id, hour, label or outcome columns.
    fn is_key_column(&self, name: &str) -> bool {
        name == self.id_column
            || name == self.label_column
            || self.outcome_column.as_deref() == Some(name)
    }

    /// Returns the numeric columns passed to the model unchanged, in schema order.
    pub fn numeric_features(&self) -> Vec<&ColumnSpec> {
        self.columns
            .iter()
            .filter(|c| c.dtype != DType::String && !self.is_key_column(&c.name))
            .filter(|c| c.feature.unwrap_or(c.dtype == DType::Float64))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schema_is_valid() {
        let schema = Schema::parse(DEFAULT_SCHEMA_YAML, "embedded").unwrap();
        assert_eq!(schema.columns.len(), 43);
        assert_eq!(schema.numeric_features().len(), 38);
        assert_eq!(
            schema.categoricals[0].output_names(),
            ["unit_MICU", "unit_SICU", "unit_unknown"]
        );
    }

    #[test]
    fn label_is_not_a_feature() {
        let schema = Schema::embedded();
        let names: Vec<_> = schema.numeric_features().iter().map(|c| &c.name).collect();
        assert!(!names
            .iter()
            .any(|n| *n == "label_12h" || *n == "SepsisLabel"));
        assert!(names.iter().any(|n| *n == "ICULOS"));
    }

    #[test]
    fn duplicate_column_is_rejected() {
        let text = DEFAULT_SCHEMA_YAML.replace("name: O2Sat", "name: HR");
        let error = Schema::parse(&text, "test").unwrap_err();
        assert!(
            error.to_string().contains("\"HR\" is listed twice"),
            "{error}"
        );
    }

    #[test]
    fn reserved_feature_name_is_rejected() {
        let text = DEFAULT_SCHEMA_YAML.replace("name: HR", "name: hour");
        let error = Schema::parse(&text, "test").unwrap_err();
        assert!(error.to_string().contains("reserved"), "{error}");
    }

    #[test]
    fn integer_hour_column_is_rejected() {
        let text = DEFAULT_SCHEMA_YAML.replace(
            "  - name: ICULOS\n    dtype: float64",
            "  - name: ICULOS\n    dtype: int64",
        );
        let error = Schema::parse(&text, "test").unwrap_err();
        assert!(error.to_string().contains("time_column"), "{error}");
    }

    #[test]
    fn allows_rejects_non_finite() {
        let schema = Schema::embedded();
        let hr = schema.column("HR").unwrap();
        assert!(!hr.allows(f64::NAN));
        assert!(!hr.allows(f64::INFINITY));
    }

    #[test]
    fn allows_checks_range_and_levels() {
        let schema = Schema::embedded();
        let hr = schema.column("HR").unwrap();
        assert!(hr.allows(86.5));
        assert!(!hr.allows(301.0));
        let gender = schema.column("Gender").unwrap();
        assert!(gender.allows(1.0));
        assert!(!gender.allows(2.0));
    }
}
