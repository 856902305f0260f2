//! Parsing a `/predict` body into checked hourly rows, and the rows into the
//! Arrow batch that the library's scoring code reads.
//!
//! The body is read in two passes. `serde` checks the request's own shape
//! (which keys exist, their JSON types) and `serde_path_to_error` names the
//! path of any mismatch. The observations are then checked against the
//! column schema: each key must be an input column, each value a number in
//! the column's range or `null`, and every required column present.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
use sepsis_ews::schema::{ColumnSpec, DType, Schema};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::ApiError;

/// Longest accepted patient id, in characters.
const MAX_PATIENT_ID_CHARS: usize = 256;

/// The body of `POST /predict`, before the observations are checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    #[serde(default)]
    rows: Option<Vec<Observation>>,
    #[serde(default)]
    patients: Option<Vec<ObjectOnly<RawPatient>>>,
    /// `Some` whenever the key is present, even as `null`, because a
    /// request with `rows` must not have the key at all.
    #[serde(default, deserialize_with = "present")]
    all_hours: Option<Option<bool>>,
    #[serde(default)]
    explain: Option<bool>,
    #[serde(default)]
    top_k: Option<u32>,
}

/// Deserializes a key that is present, whatever its value, as `Some`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPatient {
    patient_id: String,
    observations: Vec<Observation>,
}

/// A struct that is accepted only as a JSON object. serde's derived code
/// also reads a struct from a JSON array, field by field in declaration
/// order, so without this wrapper `["p1", [...]]` would pass as a patient.
#[derive(Debug)]
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = ObjectOnly<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ObjectOnly<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(ObjectOnly)
            }
        }

        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

/// One JSON object of hourly values, its entries in the order sent, so that
/// a key sent twice is seen and rejected rather than silently overwritten.
#[derive(Debug)]
struct Observation(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Observation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObservationVisitor;

        impl<'de> Visitor<'de> for ObservationVisitor {
            type Value = Observation;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of column names and values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Observation, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    entries.push((key, value));
                }
                Ok(Observation(entries))
            }
        }

        deserializer.deserialize_map(ObservationVisitor)
    }
}

/// The subjects a request sends to be scored.
#[derive(Debug)]
pub enum Subjects {
    /// Independent rows, each scored as a stay of one hour.
    Rows(usize),
    /// Patient histories, by id, each with its number of hours.
    Patients(Vec<(String, usize)>),
}

/// A checked prediction request.
#[derive(Debug)]
pub struct PredictRequest {
    pub subjects: Subjects,
    /// Return every hour of each history, not only the last.
    pub all_hours: bool,
    /// Feature contributions per result, when an explanation was asked for.
    pub explain_top_k: Option<usize>,
    /// The rows in the column schema's layout, ready to score.
    pub batch: RecordBatch,
}

/// The columns a request may send: every schema column except the patient
/// id, which the request gives per patient, and the label and outcome
/// columns, which are not model inputs.
#[derive(Debug)]
pub struct InputColumns {
    id_column: String,
    time_column: String,
    columns: Vec<ColumnSpec>,
    index: HashMap<String, usize>,
}

impl InputColumns {
    pub fn new(schema: &Schema) -> InputColumns {
        let columns: Vec<ColumnSpec> = schema
            .columns
            .iter()
            .filter(|c| {
                c.name != schema.id_column
                    && c.name != schema.label_column
                    && schema.outcome_column.as_deref() != Some(c.name.as_str())
            })
            .cloned()
            .collect();
        let index = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        InputColumns {
            id_column: schema.id_column.clone(),
            time_column: schema.time_column.clone(),
            columns,
            index,
        }
    }

    pub fn columns(&self) -> &[ColumnSpec] {
        &self.columns
    }

    pub fn time_column(&self) -> &str {
        &self.time_column
    }

    /// Parses and checks a request body. `max_rows` caps the hourly rows of
    /// the request and `default_top_k` is the explanation size when the
    /// request sets `explain` without `top_k`.
    pub fn parse(
        &self,
        body: &[u8],
        max_rows: usize,
        default_top_k: usize,
    ) -> Result<PredictRequest, ApiError> {
        let raw: RawRequest = parse_json_object(body)?;
        if raw.top_k == Some(0) {
            return Err(ApiError::invalid("top_k", "must be at least 1"));
        }
        // top_k sizes an explanation, so without "explain": true it has no effect.
        let top_k = match raw.explain {
            Some(true) => Some(raw.top_k.map_or(default_top_k, |k| k as usize)),
            _ => None,
        };

        let mut rows = RowsBuilder::new(self);
        let subjects = match (raw.rows, raw.patients) {
            (Some(_), Some(_)) => {
                return Err(ApiError::InvalidInput {
                    field: None,
                    detail: "send either \"rows\" or \"patients\", not both".into(),
                })
            }
            (None, None) => {
                return Err(ApiError::InvalidInput {
                    field: None,
                    detail: "the request needs \"rows\" (independent hourly rows) or \
                             \"patients\" (hourly histories)"
                        .into(),
                })
            }
            (Some(list), None) => {
                if raw.all_hours.is_some() {
                    return Err(ApiError::invalid(
                        "all_hours",
                        "applies only to \"patients\"; each of \"rows\" is one hour",
                    ));
                }
                check_batch(list.len(), max_rows, "rows")?;
                for (i, observation) in list.iter().enumerate() {
                    let path = format!("rows[{i}]");
                    rows.push(&i.to_string(), observation, &path, None)?;
                }
                Subjects::Rows(list.len())
            }
            (None, Some(patients)) => {
                let patients: Vec<RawPatient> = patients.into_iter().map(|p| p.0).collect();
                if patients.is_empty() {
                    return Err(ApiError::invalid(
                        "patients",
                        "must list at least one patient",
                    ));
                }
                let total: usize = patients.iter().map(|p| p.observations.len()).sum();
                if total > max_rows {
                    return Err(ApiError::BatchTooLarge {
                        field: "patients",
                        rows: total,
                        limit: max_rows,
                    });
                }
                let mut seen = HashMap::new();
                let mut subjects = Vec::with_capacity(patients.len());
                for (p, patient) in patients.iter().enumerate() {
                    let path = format!("patients[{p}]");
                    check_patient_id(&patient.patient_id, &path, p, &mut seen)?;
                    if patient.observations.is_empty() {
                        return Err(ApiError::invalid(
                            format!("{path}.observations"),
                            "must list at least one hourly observation",
                        ));
                    }
                    let mut previous = None;
                    for (h, observation) in patient.observations.iter().enumerate() {
                        let path = format!("{path}.observations[{h}]");
                        let hour = rows.push(&patient.patient_id, observation, &path, previous)?;
                        previous = Some(hour);
                    }
                    subjects.push((patient.patient_id.clone(), patient.observations.len()));
                }
                Subjects::Patients(subjects)
            }
        };
        Ok(PredictRequest {
            subjects,
            all_hours: raw.all_hours.flatten().unwrap_or(false),
            explain_top_k: top_k,
            batch: rows.finish()?,
        })
    }
}

/// Parses a request body as one JSON object of type `T`. A value that does
/// not fit `T` is invalid input (422) naming its path, and text that is not
/// JSON is malformed (400).
///
/// serde reads a struct from a JSON array too, field by field in declaration
/// order, so `[null]` would pass as an object, while the request schemas
/// allow objects only. A body that is a JSON array is therefore rejected
/// before `T` is read.
///
/// Below the top level, nested structs are read through `ObjectOnly`, and
/// hourly rows are read as maps.
pub(crate) fn parse_json_object<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<T, ApiError> {
    let malformed = |error: serde_json::Error| ApiError::MalformedJson {
        detail: format!("the body is not valid JSON: {error}"),
    };
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(malformed)?;
        return Err(ApiError::InvalidInput {
            field: None,
            detail: "the body is a JSON array, but the request must be a JSON object".into(),
        });
    }

    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    let value = parsed.map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ApiError::InvalidInput {
                field: (path != ".").then_some(path),
                detail: inner.to_string(),
            },
            _ => malformed(inner),
        }
    })?;
    deserializer.end().map_err(malformed)?;
    Ok(value)
}

fn check_batch(rows: usize, limit: usize, field: &'static str) -> Result<(), ApiError> {
    if rows == 0 {
        return Err(ApiError::invalid(field, "must list at least one row"));
    }
    if rows > limit {
        return Err(ApiError::BatchTooLarge { field, rows, limit });
    }
    Ok(())
}

fn check_patient_id(
    id: &str,
    path: &str,
    index: usize,
    seen: &mut HashMap<String, usize>,
) -> Result<(), ApiError> {
    let field = format!("{path}.patient_id");
    if id.is_empty() || id.chars().count() > MAX_PATIENT_ID_CHARS {
        return Err(ApiError::invalid(
            field,
            format!("must be between 1 and {MAX_PATIENT_ID_CHARS} characters long"),
        ));
    }
    // The data files reject a blank id as missing, and so does the service.
    if id.trim().is_empty() {
        return Err(ApiError::invalid(field, "must not be blank"));
    }
    if let Some(first) = seen.insert(id.to_string(), index) {
        return Err(ApiError::invalid(
            field,
            format!("the same patient id is already used by patients[{first}]; send each patient's hours together"),
        ));
    }
    Ok(())
}

/// One column being filled, in the schema's dtype.
enum ColumnBuilder {
    Float(Float64Builder),
    Int(Int64Builder),
    Text(StringBuilder),
}

/// Builds the Arrow batch row by row, checking each value as it goes.
struct RowsBuilder<'a> {
    inputs: &'a InputColumns,
    ids: StringBuilder,
    columns: Vec<ColumnBuilder>,
    /// Scratch: for each column, the entry of the observation being read
    /// that gives its value.
    entries: Vec<Option<usize>>,
}

impl<'a> RowsBuilder<'a> {
    fn new(inputs: &'a InputColumns) -> RowsBuilder<'a> {
        let columns = inputs
            .columns
            .iter()
            .map(|c| match c.dtype {
                DType::Float64 => ColumnBuilder::Float(Float64Builder::new()),
                DType::Int64 => ColumnBuilder::Int(Int64Builder::new()),
                DType::String => ColumnBuilder::Text(StringBuilder::new()),
            })
            .collect();
        RowsBuilder {
            inputs,
            ids: StringBuilder::new(),
            columns,
            entries: vec![None; inputs.columns.len()],
        }
    }

    /// Checks one observation and appends it. Returns its hour, which must
    /// come after `previous`, the hour of the patient's previous row.
    fn push(
        &mut self,
        id: &str,
        observation: &Observation,
        path: &str,
        previous: Option<f64>,
    ) -> Result<f64, ApiError> {
        self.entries.iter_mut().for_each(|e| *e = None);
        for (entry, (key, _)) in observation.0.iter().enumerate() {
            let Some(&index) = self.inputs.index.get(key) else {
                return Err(self.unknown_field(key, path));
            };
            if self.entries[index].is_some() {
                return Err(ApiError::invalid(
                    format!("{path}.{key}"),
                    "is given twice in the same object",
                ));
            }
            self.entries[index] = Some(entry);
        }

        let mut hour = f64::NAN;
        for (index, column) in self.inputs.columns.iter().enumerate() {
            let field = || format!("{path}.{}", column.name);
            let value = self.entries[index]
                .map(|entry| &observation.0[entry].1)
                .filter(|v| !v.is_null());
            if value.is_none() && column.required {
                return Err(ApiError::invalid(
                    field(),
                    "is required and must have a value in every row",
                ));
            }
            match (&mut self.columns[index], value) {
                (ColumnBuilder::Float(builder), value) => {
                    let number = value.map(|v| number(v, column, &field)).transpose()?;
                    if column.name == self.inputs.time_column {
                        hour = number.unwrap_or(f64::NAN);
                    }
                    builder.append_option(number);
                }
                (ColumnBuilder::Int(builder), value) => {
                    let number = value.map(|v| number(v, column, &field)).transpose()?;
                    if number.is_some_and(|n| n.fract() != 0.0) {
                        return Err(ApiError::invalid(field(), "must be a whole number"));
                    }
                    builder.append_option(number.map(|n| n as i64));
                }
                (ColumnBuilder::Text(builder), None) => builder.append_null(),
                (ColumnBuilder::Text(builder), Some(Value::String(text))) => {
                    builder.append_value(text)
                }
                (ColumnBuilder::Text(_), Some(other)) => {
                    return Err(ApiError::invalid(
                        field(),
                        format!("expected a string or null, found {}", kind(other)),
                    ))
                }
            }
        }

        if let Some(previous) = previous {
            // The hour column is required, so both hours are numbers.
            if hour <= previous {
                return Err(ApiError::invalid(
                    format!("{path}.{}", self.inputs.time_column),
                    format!(
                        "hour {hour} does not come after the previous hour {previous}; a \
                         patient's observations must be in order of strictly increasing hours"
                    ),
                ));
            }
        }
        self.ids.append_value(id);
        Ok(hour)
    }

    fn unknown_field(&self, key: &str, path: &str) -> ApiError {
        let known: Vec<&str> = self
            .inputs
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        ApiError::invalid(
            format!("{path}.{key}"),
            format!(
                "unknown field {key:?}; the fields are the input columns of the schema: {}",
                known.join(", ")
            ),
        )
    }

    fn finish(mut self) -> Result<RecordBatch, ApiError> {
        let mut fields = vec![Field::new(&self.inputs.id_column, DataType::Utf8, false)];
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(self.ids.finish())];
        for (column, builder) in self.inputs.columns.iter().zip(&mut self.columns) {
            let (data_type, array): (DataType, ArrayRef) = match builder {
                ColumnBuilder::Float(b) => (DataType::Float64, Arc::new(b.finish())),
                ColumnBuilder::Int(b) => (DataType::Int64, Arc::new(b.finish())),
                ColumnBuilder::Text(b) => (DataType::Utf8, Arc::new(b.finish())),
            };
            fields.push(Field::new(&column.name, data_type, true));
            arrays.push(array);
        }
        RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), arrays).map_err(|e| {
            ApiError::Internal {
                context: "building the row batch failed",
                message: e.to_string(),
            }
        })
    }
}

/// Reads a JSON value as a number the column allows.
fn number(value: &Value, column: &ColumnSpec, field: &dyn Fn() -> String) -> Result<f64, ApiError> {
    let Value::Number(number) = value else {
        return Err(ApiError::invalid(
            field(),
            format!(
                "expected a number or null, found {}; a missing value is null or an absent key",
                kind(value)
            ),
        ));
    };
    // serde_json only produces finite numbers; a u64 or i64 beyond 2^53
    // loses digits here, as any such value outside every range would.
    let Some(number) = number.as_f64().filter(|n| n.is_finite()) else {
        return Err(ApiError::invalid(field(), "is not a finite number"));
    };
    if !column.allows(number) {
        return Err(ApiError::invalid(
            field(),
            format!(
                "{number} is not allowed: the value must be {}",
                column.allowed_description()
            ),
        ));
    }
    Ok(number)
}

fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::String(text) if text.len() <= 20 => format!("the string {text:?}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}
