//! `sepsis validate`: checks the snapshot against the schema and writes a JSON
//! and a Markdown report to `artifacts/validation/<data digest>/`.
//!
//! The checks:
//! - the dataset is not empty;
//! - required columns have a value in every row;
//! - values lie in their physiological range or levels, which also makes the label 0/1;
//! - no two rows share a (patient, hour);
//! - hours increase within each patient, and each patient's rows are contiguous.
//!
//! Line numbers in the report are those of `raw-data/sepsis-data.csv`, where
//! the header is line 1.
//!
//! A failed validation is an error, and the transformation refuses to run on
//! data whose report did not pass.

use std::collections::HashSet;
use std::fmt::Write as _;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ingest::{self, IngestError};
use crate::schema::{DType, Schema};
use crate::storage::{Area, StorageError, Store};
use crate::table::{self, TableError};

pub const REPORT_JSON: &str = "validation-report.json";
pub const REPORT_MARKDOWN: &str = "validation-report.md";
/// Septic patients needed: at least one for training and one for validation.
const MIN_POSITIVE_PATIENTS: u64 = 2;
/// How many example lines a finding keeps.
const MAX_EXAMPLES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("validation failed with {count} error(s); first: {first}; full report: {report}")]
    Failed {
        count: usize,
        first: String,
        report: String,
    },
    #[error("{location}: {message}")]
    Report { location: String, message: String },
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `empty`, `required`, `range`, `label`, `duplicate`, `order` or `contiguity`.
    pub check: String,
    pub column: Option<String>,
    /// Rows that fail the check.
    pub count: u64,
    /// The first few failing lines of `raw-data/sepsis-data.csv`.
    pub lines: Vec<u64>,
    /// The failing values on those lines, where a value is at fault.
    pub values: Vec<String>,
    /// The same lines in the input file, as `file line N`, when known.
    #[serde(default)]
    pub source_lines: Vec<String>,
    pub message: String,
}

impl Finding {
    fn describe(&self) -> String {
        let mut text = String::new();
        if let Some(column) = &self.column {
            let _ = write!(text, "column {column:?}: ");
        }
        let _ = write!(text, "{} ({} row(s)", self.message, self.count);
        if !self.source_lines.is_empty() {
            let _ = write!(text, ", first at {}", self.source_lines.join(", "));
        } else if !self.lines.is_empty() {
            let lines: Vec<String> = self.lines.iter().map(u64::to_string).collect();
            let _ = write!(
                text,
                ", first at line {} of raw-data/sepsis-data.csv",
                lines.join(", ")
            );
        }
        if !self.values.is_empty() {
            let _ = write!(text, "; values {}", self.values.join(", "));
        }
        text.push(')');
        text
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    pub name: String,
    pub missing: u64,
    pub missing_fraction: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub data_digest: String,
    pub schema_digest: String,
    pub rows: u64,
    pub patients: u64,
    pub passed: bool,
    pub errors: Vec<Finding>,
    pub columns: Vec<ColumnStats>,
    pub created_at: String,
}

pub fn report_key(data_digest: &str, file: &str) -> String {
    format!("validation/{data_digest}/{file}")
}

/// Validates the snapshot of the imported data and stores the report.
/// Returns the report when it passed, and [`ValidateError::Failed`] otherwise.
pub async fn validate(store: &Store, schema: &Schema) -> Result<ValidationReport, ValidateError> {
    let imported = crate::import::read_manifest(store)
        .await
        .map_err(IngestError::from)?;
    let snapshot = ingest::read_snapshot(store, schema, &imported.digest).await?;
    validate_snapshot(store, schema, &imported.digest, snapshot).await
}

/// Validates an already loaded snapshot of `data_digest` and stores the
/// report, with the same result as [`validate`].
pub async fn validate_snapshot(
    store: &Store,
    schema: &Schema,
    data_digest: &str,
    snapshot: Bytes,
) -> Result<ValidationReport, ValidateError> {
    let location = store.uri(
        Area::ProcessedData,
        &ingest::snapshot_key(data_digest, ingest::SNAPSHOT_FILE),
    );
    let schema_for_check = schema.clone();
    let digest = data_digest.to_string();
    let report = tokio::task::spawn_blocking(move || {
        let batches = table::read_batches(snapshot, &location)?;
        check_batches(batches, &schema_for_check, &digest)
    })
    .await
    .expect("the validation thread does not panic")?;
    store_report(store, data_digest, report).await
}

/// Validates rows held in memory, batches in the snapshot's layout in row
/// order, without storing a report. Pass the report to [`require_valid`].
/// Blocks.
pub fn validate_in_memory(
    schema: &Schema,
    batches: impl Iterator<Item = RecordBatch>,
) -> Result<ValidationReport, ValidateError> {
    // The report is not stored, so it needs no data digest.
    check_batches(batches.map(Ok), schema, "")
}

/// Names the input lines of each finding of a report from
/// [`validate_in_memory`] through `line_map`. Returns the report when it
/// passed, and [`ValidateError::Failed`] otherwise.
pub fn require_valid(
    mut report: ValidationReport,
    line_map: &crate::import::LineMap,
) -> Result<ValidationReport, ValidateError> {
    name_source_lines(&mut report, line_map);
    if report.passed {
        return Ok(report);
    }
    Err(ValidateError::Failed {
        count: report.errors.len(),
        first: report.errors[0].describe(),
        report: "(not stored)".into(),
    })
}

/// Adds the source lines to a report and stores it. Returns the report when
/// it passed, and [`ValidateError::Failed`] otherwise.
async fn store_report(
    store: &Store,
    data_digest: &str,
    mut report: ValidationReport,
) -> Result<ValidationReport, ValidateError> {
    add_source_lines(store, data_digest, &mut report).await;

    let json = serde_json::to_vec_pretty(&report).expect("report serialises");
    let json_key = report_key(&report.data_digest, REPORT_JSON);
    store
        .put(Area::Artifacts, &json_key, Bytes::from(json))
        .await?;
    store
        .put(
            Area::Artifacts,
            &report_key(&report.data_digest, REPORT_MARKDOWN),
            Bytes::from(render_markdown(&report)),
        )
        .await?;

    if report.passed {
        return Ok(report);
    }
    Err(ValidateError::Failed {
        count: report.errors.len(),
        first: report.errors[0].describe(),
        report: store.uri(Area::Artifacts, &json_key),
    })
}

/// Adds the input file and line of each reported raw CSV line, using the
/// import record when it still describes this data.
async fn add_source_lines(store: &Store, data_digest: &str, report: &mut ValidationReport) {
    let Ok(imported) = crate::import::read_manifest(store).await else {
        return;
    };
    if imported.digest != data_digest {
        return;
    }
    name_source_lines(report, &imported.line_map);
}

fn name_source_lines(report: &mut ValidationReport, line_map: &crate::import::LineMap) {
    for finding in &mut report.errors {
        finding.source_lines = finding
            .lines
            .iter()
            .filter_map(|line| line_map.source_of(*line))
            .map(|(file, line)| format!("{file} line {line}"))
            .collect();
    }
}

/// Reads the stored report for `data_digest` and fails unless it passed
/// against this schema.
pub async fn require_passed(
    store: &Store,
    schema: &Schema,
    data_digest: &str,
) -> Result<ValidationReport, ValidateError> {
    let key = report_key(data_digest, REPORT_JSON);
    let location = store.uri(Area::Artifacts, &key);
    let bytes = match store.get(Area::Artifacts, &key).await {
        Ok(bytes) => bytes,
        Err(StorageError::NotFound { .. }) => {
            return Err(ValidateError::Report {
                location,
                message: "the imported data has not been validated; run `sepsis validate` first"
                    .into(),
            })
        }
        Err(error) => return Err(error.into()),
    };
    let report: ValidationReport =
        serde_json::from_slice(&bytes).map_err(|e| ValidateError::Report {
            location: location.clone(),
            message: format!("invalid report: {e}"),
        })?;
    if !report.passed {
        return Err(ValidateError::Report {
            location,
            message: "the imported data failed validation; fix the input and import it again"
                .into(),
        });
    }
    if report.schema_digest != schema.digest {
        return Err(ValidateError::Report {
            location,
            message: "the data was validated against another schema; run `sepsis validate` again"
                .into(),
        });
    }
    Ok(report)
}

#[derive(Default)]
struct Tally {
    count: u64,
    lines: Vec<u64>,
    values: Vec<String>,
}

impl Tally {
    fn add(&mut self, line: u64, value: Option<String>) {
        self.count += 1;
        if self.lines.len() < MAX_EXAMPLES {
            self.lines.push(line);
            if let Some(value) = value {
                self.values.push(value);
            }
        }
    }

    fn into_finding(self, check: &str, column: Option<&str>, message: String) -> Option<Finding> {
        (self.count > 0).then(|| Finding {
            check: check.to_string(),
            column: column.map(str::to_string),
            count: self.count,
            lines: self.lines,
            values: self.values,
            source_lines: Vec::new(),
            message,
        })
    }
}

struct ColumnTally {
    missing: u64,
    min: f64,
    max: f64,
    required: Tally,
    range: Tally,
}

/// Checks the snapshot's rows, batch by batch in row order.
fn check_batches(
    batches: impl Iterator<Item = Result<RecordBatch, TableError>>,
    schema: &Schema,
    data_digest: &str,
) -> Result<ValidationReport, ValidateError> {
    let id_index = schema.index_of(&schema.id_column).expect("checked schema");
    let label_index = schema
        .index_of(&schema.label_column)
        .expect("checked schema");
    let mut positive_patients = 0u64;
    let mut current_positive = false;
    let mut positive_rows = 0u64;
    let time_index = schema
        .index_of(&schema.time_column)
        .expect("checked schema");
    let mut tallies: Vec<ColumnTally> = schema
        .columns
        .iter()
        .map(|_| ColumnTally {
            missing: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            required: Tally::default(),
            range: Tally::default(),
        })
        .collect();
    let mut duplicates = Tally::default();
    let mut disorder = Tally::default();
    let mut scattered = Tally::default();
    let mut finished_patients: HashSet<String> = HashSet::new();
    let mut current: Option<(String, f64)> = None;
    let mut rows = 0u64;

    for batch in batches {
        let batch: RecordBatch = batch?;
        let first_line = rows + 2;
        for (index, column) in schema.columns.iter().enumerate() {
            let array = batch.column(index);
            let tally = &mut tallies[index];
            tally.missing += array.null_count() as u64;
            if column.required && array.null_count() > 0 {
                for row in 0..array.len() {
                    if array.is_null(row) {
                        tally.required.add(first_line + row as u64, None);
                    }
                }
            }
            let values: Vec<Option<f64>> = match column.dtype {
                DType::String => continue,
                DType::Float64 => array.as_primitive::<Float64Type>().iter().collect(),
                DType::Int64 => array
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|v| v.map(|v| v as f64))
                    .collect(),
            };
            for (row, value) in values.into_iter().enumerate() {
                let Some(value) = value else { continue };
                tally.min = tally.min.min(value);
                tally.max = tally.max.max(value);
                if !column.allows(value) {
                    tally
                        .range
                        .add(first_line + row as u64, Some(value.to_string()));
                }
            }
        }

        let ids = batch.column(id_index).as_string::<i32>();
        let hours = batch.column(time_index).as_primitive::<Float64Type>();
        let labels = batch.column(label_index).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let line = first_line + row as u64;
            if ids.is_null(row) || hours.is_null(row) {
                continue;
            }
            let id = ids.value(row);
            let hour = hours.value(row);
            let positive = !labels.is_null(row) && labels.value(row) == 1;
            positive_rows += u64::from(positive);
            match &mut current {
                Some((current_id, last_hour)) if current_id == id => {
                    if hour == *last_hour {
                        duplicates.add(line, Some(hour.to_string()));
                    } else if hour < *last_hour {
                        disorder.add(line, Some(hour.to_string()));
                    }
                    *last_hour = hour;
                    current_positive |= positive;
                }
                _ => {
                    if let Some((done, _)) = current.take() {
                        finished_patients.insert(done);
                        positive_patients += u64::from(current_positive);
                    }
                    current_positive = positive;
                    if finished_patients.contains(id) {
                        scattered.add(line, None);
                    }
                    current = Some((id.to_string(), hour));
                }
            }
        }
        rows += batch.num_rows() as u64;
    }
    if let Some((done, _)) = current.take() {
        finished_patients.insert(done);
        positive_patients += u64::from(current_positive);
    }

    let mut errors = Vec::new();
    let mut columns = Vec::with_capacity(schema.columns.len());
    for (column, tally) in schema.columns.iter().zip(tallies) {
        let name = Some(column.name.as_str());
        errors.extend(tally.required.into_finding(
            "required",
            name,
            "missing value in a required column".into(),
        ));
        errors.extend(tally.range.into_finding(
            "range",
            name,
            format!("value outside the allowed {}", column.allowed_description()),
        ));
        let seen = tally.min <= tally.max;
        columns.push(ColumnStats {
            name: column.name.clone(),
            missing: tally.missing,
            missing_fraction: if rows == 0 {
                0.0
            } else {
                tally.missing as f64 / rows as f64
            },
            min: seen.then_some(tally.min),
            max: seen.then_some(tally.max),
        });
    }
    let time = Some(schema.time_column.as_str());
    errors.extend(duplicates.into_finding(
        "duplicate",
        time,
        "duplicate (patient, hour): the same hour appears twice for one patient".into(),
    ));
    errors.extend(disorder.into_finding(
        "order",
        time,
        "hours decrease within a patient; sort each patient's rows by hour".into(),
    ));
    errors.extend(scattered.into_finding(
        "contiguity",
        Some(schema.id_column.as_str()),
        "a patient's rows are split by another patient's rows".into(),
    ));

    // Training and validation each need a patient with a positive label, and
    // the training side needs negative rows.
    let unbalanced = positive_patients < MIN_POSITIVE_PATIENTS || positive_rows == rows;
    if rows > 0 && !schema.scoring && unbalanced {
        errors.push(Finding {
            check: "label".into(),
            column: Some(schema.label_column.clone()),
            count: positive_patients,
            lines: vec![],
            values: vec![],
            source_lines: vec![],
            message: format!(
                "{positive_patients} patient(s) have a positive label and {} of {rows} rows are \
                 negative; training needs at least {MIN_POSITIVE_PATIENTS} patients with a \
                 positive label and some negative rows",
                rows - positive_rows
            ),
        });
    }
    if rows == 0 {
        errors.push(Finding {
            check: "empty".into(),
            column: None,
            count: 0,
            lines: vec![],
            values: vec![],
            source_lines: vec![],
            message: "the dataset has no rows".into(),
        });
    }

    Ok(ValidationReport {
        data_digest: data_digest.to_string(),
        schema_digest: schema.digest.clone(),
        rows,
        patients: finished_patients.len() as u64,
        passed: errors.is_empty(),
        errors,
        columns,
        created_at: chrono::Utc::now().to_rfc3339(),
    })
}

fn render_markdown(report: &ValidationReport) -> String {
    let mut md = String::new();
    let verdict = if report.passed { "passed" } else { "FAILED" };
    let _ = writeln!(md, "# Validation report: {verdict}\n");
    let _ = writeln!(md, "- data digest: `{}`", report.data_digest);
    let _ = writeln!(md, "- schema digest: `{}`", report.schema_digest);
    let _ = writeln!(md, "- rows: {}, patients: {}", report.rows, report.patients);
    let _ = writeln!(md, "- created: {}\n", report.created_at);
    if !report.errors.is_empty() {
        let _ = writeln!(md, "## Errors\n");
        let _ = writeln!(
            md,
            "| check | column | rows | first lines | input lines | values | message |"
        );
        let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- |");
        for e in &report.errors {
            let lines: Vec<String> = e.lines.iter().map(u64::to_string).collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                e.check,
                e.column.as_deref().unwrap_or(""),
                e.count,
                lines.join(", "),
                e.source_lines.join(", "),
                e.values.join(", "),
                e.message
            );
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## Columns\n");
    let _ = writeln!(md, "| column | missing | missing % | min | max |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    let show = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for c in &report.columns {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {} | {} |",
            c.name,
            c.missing,
            c.missing_fraction * 100.0,
            show(c.min),
            show(c.max)
        );
    }
    md
}
