//! `sepsis data import`: turns hourly ICU data into `raw-data/sepsis-data.csv`.
//!
//! Three inputs are accepted, recognised by their content rather than by a flag:
//! - a directory of PhysioNet `.psv` files (or one `.psv` file), one patient per
//!   file, the patient id being the file name without `.psv`;
//! - a CSV, plain or gzip-compressed, in PhysioNet long format: `patient_id`
//!   plus the challenge columns, one row per patient-hour;
//! - a ready `sepsis-data.csv` that already has the label column.
//!
//! Values are copied as text, so `83.14` stays `83.14`, after a check that each
//! one parses as its schema dtype. An empty field or `NaN` becomes an empty
//! field, meaning missing. When the label is absent it is derived per patient:
//! onset = hour of the first `SepsisLabel` = 1 plus 6 h, and `label_12h` = 1 for
//! hours t ≥ onset − 12.
//!
//! The output streams to the store and appears only when complete, so a bad
//! input leaves the previous import in place.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::progress::SharedProgress;
use crate::schema::{DType, Schema};
use crate::storage::{Area, StorageError, Store};
use crate::table::ColumnBuilder;

/// Key of the imported data inside `raw-data/`.
///
/// NOTE: there is one current import per store, and the last import wins.
/// `sepsis pipeline` carries its own data digest through every step, but the
/// single-step subcommands act on whatever the store's latest import is.
pub const RAW_DATA_KEY: &str = "sepsis-data.csv";
/// Key of the import record (digest, counts) inside `raw-data/`.
pub const RAW_MANIFEST_KEY: &str = "sepsis-data.json";

/// Hours between the first positive challenge label and sepsis onset: the
/// challenge labels are shifted 6 h ahead of onset.
const LABEL_SHIFT_HOURS: f64 = 6.0;
/// The prediction horizon: the target is positive from this many hours before onset.
const HORIZON_HOURS: f64 = 12.0;
/// Output is sent to storage in chunks of about this size.
const CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: {message}")]
    Input { file: String, message: String },
    #[error("{file}: line {line}: {message}")]
    Read {
        file: String,
        line: u64,
        message: String,
    },
    #[error("{file}: line {line}, column {column:?}: {message}")]
    Value {
        file: String,
        line: u64,
        column: String,
        message: String,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The kind of input recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    PsvDirectory,
    LongCsv,
    Ready,
}

/// The import record, stored next to the data as `raw-data/sepsis-data.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportManifest {
    /// SHA-256 of `raw-data/sepsis-data.csv`, hex.
    pub digest: String,
    pub rows: u64,
    pub patients: u64,
    /// Patients with at least one positive label.
    pub septic_patients: u64,
    pub format: InputFormat,
    /// File name of the input, without its folder.
    pub source: String,
    pub imported_at: String,
    /// The input file and line of each raw CSV line, so that later errors can
    /// name a line the user can open.
    #[serde(default)]
    pub line_map: LineMap,
}

/// Maps lines of `raw-data/sepsis-data.csv` to input files and lines, as
/// runs of consecutive lines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LineMap {
    /// Input file names, without their folders.
    pub files: Vec<String>,
    pub runs: Vec<LineRun>,
}

/// Lines `raw_line .. raw_line + count` of the raw CSV are lines
/// `source_line ..` of `files[file]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRun {
    pub raw_line: u64,
    pub file: usize,
    pub source_line: u64,
    pub count: u64,
}

impl LineMap {
    fn record(&mut self, raw_line: u64, file: usize, source_line: u64) {
        if let Some(last) = self.runs.last_mut() {
            let continues = last.file == file
                && last.raw_line + last.count == raw_line
                && last.source_line + last.count == source_line;
            if continues {
                last.count += 1;
                return;
            }
        }
        self.runs.push(LineRun {
            raw_line,
            file,
            source_line,
            count: 1,
        });
    }

    /// Returns the input file and line of a raw CSV line, if it is a data line.
    pub fn source_of(&self, raw_line: u64) -> Option<(&str, u64)> {
        let index = self.runs.partition_point(|run| run.raw_line <= raw_line);
        let run = self.runs.get(index.checked_sub(1)?)?;
        let offset = raw_line - run.raw_line;
        (offset < run.count).then(|| (self.files[run.file].as_str(), run.source_line + offset))
    }
}

/// Imports `input` into `raw-data/`.
pub async fn import(
    store: &Store,
    schema: &Schema,
    input: &Path,
    progress: SharedProgress,
) -> Result<ImportManifest, ImportError> {
    import_with_tap(store, schema, input, progress, None).await
}

/// Imports `input` like [`import`], and also sends every byte of the raw CSV,
/// in order, to `tap`, so that a parser can ingest it while it is written.
/// The tap closes when the import ends, whether it succeeded or not.
pub async fn import_with_tap(
    store: &Store,
    schema: &Schema,
    input: &Path,
    progress: SharedProgress,
    mut tap: Option<mpsc::Sender<Bytes>>,
) -> Result<ImportManifest, ImportError> {
    let sources = list_sources(input)?;
    let (sender, mut receiver) = mpsc::channel::<Vec<u8>>(4);
    let schema = schema.clone();
    let producer_sources = sources.clone();
    let producer_progress = Arc::clone(&progress);
    let producer = tokio::task::spawn_blocking(move || {
        let sink = ChannelSink {
            buffer: Vec::with_capacity(CHUNK_BYTES),
            sender,
        };
        let mut out = CsvSink::new(&schema, sink)?;
        let counts = convert(
            &schema,
            &producer_sources,
            &mut out,
            producer_progress.as_ref(),
        )?;
        out.finish()?;
        Ok(counts)
    });

    let mut writer = store.writer(Area::RawData, RAW_DATA_KEY);
    let mut hasher = Sha256::new();
    let mut write_error = None;
    while let Some(chunk) = receiver.recv().await {
        hasher.update(&chunk);
        if let Err(error) = writer.write_all(&chunk).await {
            write_error = Some(error);
            break;
        }
        if let Some(sender) = &tap {
            if sender.send(Bytes::from(chunk)).await.is_err() {
                // The parser stopped early; it reports its own error.
                tap = None;
            }
        }
    }
    drop(receiver);
    drop(tap);
    let converted = producer.await.expect("the import thread does not panic");
    progress.end();

    // A storage failure comes first: the converter then only reports that
    // its output channel closed.
    let counts = match (converted, write_error) {
        (Ok(counts), None) => counts,
        (_, Some(error)) => {
            let _ = writer.abort().await;
            return Err(error.into());
        }
        (Err(error), None) => {
            let _ = writer.abort().await;
            return Err(error);
        }
    };
    writer.finish().await?;

    let manifest = ImportManifest {
        digest: hex::encode(hasher.finalize()),
        rows: counts.rows,
        patients: counts.patients,
        septic_patients: counts.septic_patients,
        format: counts.format,
        source: input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        imported_at: chrono::Utc::now().to_rfc3339(),
        line_map: counts.line_map,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    store
        .put(Area::RawData, RAW_MANIFEST_KEY, Bytes::from(json))
        .await?;
    Ok(manifest)
}

/// The counts and line map of an import by [`import_to_batches`].
pub struct ImportedCounts {
    pub rows: u64,
    pub patients: u64,
    /// Lines of the raw CSV that [`import`] would write, mapped to input lines.
    pub line_map: LineMap,
}

/// Imports `input` straight into row batches in the snapshot's layout, for
/// data that is scored and not stored, and passes each batch to `on_batch`
/// as soon as it is complete. The rows pass the same checks as [`import`],
/// and the batches hold the values that ingesting the raw CSV would give,
/// without writing and parsing that CSV. Each batch ends at the end of the
/// first patient that brings it to at least `batch_rows` rows, so batches
/// hold whole patients. Blocks.
pub fn import_to_batches(
    schema: &Schema,
    input: &Path,
    batch_rows: usize,
    on_batch: &mut dyn FnMut(RecordBatch),
) -> Result<ImportedCounts, ImportError> {
    let sources = list_sources(input)?;
    let mut out = BatchSink::new(schema, batch_rows, on_batch);
    let counts = convert(schema, &sources, &mut out, &crate::progress::NoProgress)?;
    out.finish();
    Ok(ImportedCounts {
        rows: counts.rows,
        patients: counts.patients,
        line_map: counts.line_map,
    })
}

/// Reads the record of the last import.
pub async fn read_manifest(store: &Store) -> Result<ImportManifest, ImportError> {
    let bytes = match store.get(Area::RawData, RAW_MANIFEST_KEY).await {
        Ok(bytes) => bytes,
        Err(StorageError::NotFound { location }) => {
            return Err(ImportError::Input {
                file: location,
                message: "no imported data; run `sepsis data import --data PATH` first".into(),
            })
        }
        Err(error) => return Err(error.into()),
    };
    serde_json::from_slice(&bytes).map_err(|e| ImportError::Input {
        file: store.uri(Area::RawData, RAW_MANIFEST_KEY),
        message: format!("invalid import record: {e}"),
    })
}

/// One input file and, for `.psv` files, the patient id it implies.
#[derive(Debug, Clone)]
struct Source {
    path: PathBuf,
    patient_id: Option<String>,
    size: u64,
}

fn list_sources(input: &Path) -> Result<Vec<Source>, ImportError> {
    let input_error = |message: String| ImportError::Input {
        file: input.display().to_string(),
        message,
    };
    let metadata =
        std::fs::metadata(input).map_err(|e| input_error(format!("cannot open: {e}")))?;

    if metadata.is_dir() {
        let entries =
            std::fs::read_dir(input).map_err(|e| input_error(format!("cannot list: {e}")))?;
        let mut sources = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| input_error(format!("cannot list: {e}")))?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "psv") {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                sources.push(psv_source(path, size));
            }
        }
        if sources.is_empty() {
            return Err(input_error("the directory holds no .psv files".into()));
        }
        sources.sort_by(|a, b| a.path.cmp(&b.path));
        return Ok(sources);
    }

    if input.extension().is_some_and(|e| e == "psv") {
        return Ok(vec![psv_source(input.to_path_buf(), metadata.len())]);
    }
    Ok(vec![Source {
        path: input.to_path_buf(),
        patient_id: None,
        size: metadata.len(),
    }])
}

fn psv_source(path: PathBuf, size: u64) -> Source {
    let patient_id = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Source {
        path,
        patient_id: Some(patient_id),
        size,
    }
}

struct Counts {
    rows: u64,
    patients: u64,
    septic_patients: u64,
    format: InputFormat,
    line_map: LineMap,
}

/// Buffers output and hands it to the async side in chunks.
struct ChannelSink {
    buffer: Vec<u8>,
    sender: mpsc::Sender<Vec<u8>>,
}

impl std::io::Write for ChannelSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
        self.sender
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::other("the storage writer stopped"))
    }
}

/// Counts the compressed or plain bytes read, for the progress bar.
struct CountingReader<'a, R> {
    inner: R,
    progress: &'a dyn crate::progress::Progress,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// The maximum line length accepted. It is far above any real row, and it
/// bounds memory when the input is not a CSV at all (a binary file, a gzip bomb).
const MAX_LINE_BYTES: usize = 1 << 20;

/// Fails a read once a line grows past [`MAX_LINE_BYTES`].
struct LineLimit<R> {
    inner: R,
    line_bytes: usize,
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        // A carriage return alone also ends a line, as the CSV reader reads it.
        match buf[..n].iter().rposition(|b| *b == b'\n' || *b == b'\r') {
            Some(last) => self.line_bytes = n - last - 1,
            None => self.line_bytes += n,
        }
        if self.line_bytes > MAX_LINE_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "a line is longer than {} MiB; the input does not look like a CSV file",
                    MAX_LINE_BYTES >> 20
                ),
            ));
        }
        Ok(n)
    }
}

/// The source of one output column in the current input file.
#[derive(Debug, Clone, Copy)]
enum FieldSource {
    Input(usize),
    PatientFromFileName,
    Missing,
    DerivedLabel,
}

/// The per-file plan: which input field feeds each schema column.
struct Plan {
    fields: Vec<FieldSource>,
    label_present: bool,
    /// The role of each schema column in [`build_row`], so that rows
    /// compare no column names.
    roles: Vec<ColumnRole>,
}

/// The parts a schema column plays in [`build_row`].
#[derive(Debug, Clone, Copy)]
struct ColumnRole {
    is_id: bool,
    is_time: bool,
    is_outcome: bool,
    /// A value is required in every row: the id, hour and label columns,
    /// and the outcome column when the schema requires it.
    required: bool,
}

impl ColumnRole {
    fn of(schema: &Schema, name: &str) -> ColumnRole {
        let is_id = name == schema.id_column;
        let is_time = name == schema.time_column;
        let is_outcome = schema.outcome_column.as_deref() == Some(name);
        ColumnRole {
            is_id,
            is_time,
            is_outcome,
            required: is_id
                || is_time
                || name == schema.label_column
                || (schema.outcome_required && is_outcome),
        }
    }
}

fn convert(
    schema: &Schema,
    sources: &[Source],
    out: &mut dyn RowSink,
    progress: &dyn crate::progress::Progress,
) -> Result<Counts, ImportError> {
    let total: u64 = sources.iter().map(|s| s.size).sum();
    progress.begin("import", Some(total));

    let mut state = PatientBuffer::new(schema);
    let mut line_map = LineMap::default();
    // Rows are written in the order they are read, after the header line.
    let mut next_raw_line = 2u64;
    let mut finished_patients: HashSet<String> = HashSet::new();
    let mut format = None;
    let mut empty_files = 0u64;

    for (file_index, source) in sources.iter().enumerate() {
        let file_name = source.path.display().to_string();
        line_map.files.push(
            source
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let file = File::open(&source.path).map_err(|e| ImportError::Input {
            file: file_name.clone(),
            message: format!("cannot open: {e}"),
        })?;
        let reader = open_maybe_gzip(CountingReader {
            inner: file,
            progress,
        })
        .map(|reader| LineLimit {
            inner: reader,
            line_bytes: 0,
        })
        .map_err(|e| ImportError::Input {
            file: file_name.clone(),
            message: format!("cannot read: {e}"),
        })?;
        let delimiter = if source.patient_id.is_some() {
            b'|'
        } else {
            b','
        };
        let mut csv_reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(true)
            .flexible(false)
            .from_reader(reader);

        let input_header = csv_reader
            .byte_headers()
            .map_err(|e| read_error(&file_name, &e, 1))?
            .clone();
        if input_header.is_empty() || (input_header.len() == 1 && input_header[0].is_empty()) {
            return Err(ImportError::Read {
                file: file_name,
                line: 1,
                message: "the file is empty; expected a header row naming the columns".into(),
            });
        }
        let plan = plan_columns(schema, &input_header, source, &file_name)?;
        let file_format = match (source.patient_id.is_some(), plan.label_present) {
            (true, _) => InputFormat::PsvDirectory,
            (false, true) => InputFormat::Ready,
            (false, false) => InputFormat::LongCsv,
        };
        format.get_or_insert(file_format);

        let mut record = csv::ByteRecord::new();
        let mut data_rows = 0u64;
        // Lines are counted here rather than taken from the reader's
        // positions, which are one line early in files with CRLF line ends.
        // A quoted field may span lines, so its line breaks count.
        let mut next_line = 2 + line_breaks(&input_header);
        loop {
            match csv_reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(read_error(&file_name, &e, next_line)),
            }
            let line = next_line;
            next_line += 1 + line_breaks(&record);
            data_rows += 1;
            let row = build_row(schema, &plan, &record, source, &file_name, line)?;

            if state.current_id.as_deref() != Some(row.patient_id.as_str()) {
                if let Some(done) = state.flush(out)? {
                    finished_patients.insert(done);
                }
                if finished_patients.contains(&row.patient_id) {
                    return Err(ImportError::Value {
                        file: file_name,
                        line,
                        column: schema.id_column.clone(),
                        message: format!(
                            "the rows of patient {:?} are not contiguous: the same id appeared \
                             earlier, separated by another patient's rows; sort the file by \
                             patient id, then hour",
                            row.patient_id
                        ),
                    });
                }
                state.current_id = Some(row.patient_id.clone());
            }
            state.push(row);
            line_map.record(next_raw_line, file_index, line);
            next_raw_line += 1;
        }
        if data_rows == 0 && sources.len() == 1 {
            return Err(ImportError::Read {
                file: file_name,
                line: 2,
                message: "the file has a header but no data rows".into(),
            });
        }
        empty_files += u64::from(data_rows == 0);
    }
    if empty_files > 0 {
        // File names are patient ids, so only the count is logged.
        tracing::warn!(
            empty_files,
            "input files with a header but no rows were skipped; their patients have no rows"
        );
    }
    state.flush(out)?;
    if state.rows == 0 {
        return Err(ImportError::Input {
            file: sources[0].path.display().to_string(),
            message: "no data rows".into(),
        });
    }
    Ok(Counts {
        rows: state.rows,
        patients: state.patients,
        septic_patients: state.septic_patients,
        format: format.unwrap_or(InputFormat::LongCsv),
        line_map,
    })
}

fn write_failed(error: &dyn std::fmt::Display) -> ImportError {
    ImportError::Input {
        file: RAW_DATA_KEY.into(),
        message: format!("writing the imported data failed: {error}"),
    }
}

/// Wraps the reader in a gzip decoder when the data starts with the gzip magic bytes.
fn open_maybe_gzip<'a, R: Read + 'a>(reader: R) -> std::io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(1 << 16, reader);
    let start = buffered.fill_buf()?;
    if start.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(buffered),
        )))
    } else {
        Ok(Box::new(buffered))
    }
}

/// Counts the line breaks inside the fields of a record.
fn line_breaks(record: &csv::ByteRecord) -> u64 {
    record.as_slice().iter().filter(|b| **b == b'\n').count() as u64
}

/// Describes a read failure at `line`, the line where the record being read
/// starts.
fn read_error(file: &str, error: &csv::Error, line: u64) -> ImportError {
    let message = match error.kind() {
        csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file ends unexpectedly: truncated or corrupt gzip data".to_string()
        }
        csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => io.to_string(),
        csv::ErrorKind::Io(io) => format!("read failed: {io}"),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("the row has {len} fields but the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "the row is not valid UTF-8".to_string(),
        _ => error.to_string(),
    };
    ImportError::Read {
        file: file.to_string(),
        line,
        message,
    }
}

fn plan_columns(
    schema: &Schema,
    header: &csv::ByteRecord,
    source: &Source,
    file: &str,
) -> Result<Plan, ImportError> {
    let names: Vec<String> = header
        .iter()
        .map(|f| String::from_utf8_lossy(f).trim().to_string())
        .collect();
    let header_error = |column: &str, message: String| ImportError::Value {
        file: file.to_string(),
        line: 1,
        column: column.to_string(),
        message,
    };

    let mut seen = HashSet::new();
    for name in &names {
        if schema.column(name).is_none() {
            // Cut a garbage header (a binary file) to keep the message readable.
            let truncated_name: String = name.chars().take(80).collect();
            return Err(header_error(
                &truncated_name,
                "unknown column: it is not in the schema (config/schema.yaml)".into(),
            ));
        }
        if !seen.insert(name.as_str()) {
            return Err(header_error(
                name,
                "the column appears twice in the header".into(),
            ));
        }
    }

    let position = |name: &str| names.iter().position(|n| n == name);
    let label_present = position(&schema.label_column).is_some();
    let outcome_present = schema
        .outcome_column
        .as_deref()
        .is_some_and(|o| position(o).is_some());
    let mut fields = Vec::with_capacity(schema.columns.len());
    for column in &schema.columns {
        let field = match position(&column.name) {
            Some(index) => FieldSource::Input(index),
            None if column.name == schema.id_column && source.patient_id.is_some() => {
                FieldSource::PatientFromFileName
            }
            None if column.name == schema.label_column && outcome_present => {
                FieldSource::DerivedLabel
            }
            None if column.name == schema.label_column && column.may_be_absent => {
                FieldSource::Missing
            }
            None if column.name == schema.label_column => {
                let outcome = schema.outcome_column.as_deref().unwrap_or("(none)");
                return Err(header_error(
                    &column.name,
                    format!(
                        "missing label: the file has neither {:?} nor {outcome:?} to derive it from",
                        column.name
                    ),
                ));
            }
            None if column.may_be_absent => FieldSource::Missing,
            None => {
                return Err(header_error(
                    &column.name,
                    "missing column: the schema requires it in the header".into(),
                ))
            }
        };
        fields.push(field);
    }
    Ok(Plan {
        fields,
        label_present,
        roles: (schema.columns.iter())
            .map(|c| ColumnRole::of(schema, &c.name))
            .collect(),
    })
}

/// One output row, before the label of its patient is known.
struct Row {
    patient_id: String,
    hour: f64,
    positive_outcome: bool,
    /// Output fields in schema order, as text; a derived label is filled in
    /// later.
    fields: csv::ByteRecord,
    /// The same fields parsed as their schema dtypes.
    values: Vec<Value>,
}

/// A field of a [`Row`] parsed as its schema dtype.
#[derive(Debug, Clone, Copy)]
enum Value {
    Missing,
    Float(f64),
    Integer(i64),
    /// Text, held in the row's `fields`.
    Text,
}

const MISSING: &[u8] = b"";

fn is_missing(text: &[u8]) -> bool {
    text.is_empty() || text.eq_ignore_ascii_case(b"nan")
}

fn build_row(
    schema: &Schema,
    plan: &Plan,
    record: &csv::ByteRecord,
    source: &Source,
    file: &str,
    line: u64,
) -> Result<Row, ImportError> {
    let mut fields = csv::ByteRecord::with_capacity(256, plan.fields.len());
    let mut values = Vec::with_capacity(plan.fields.len());
    let mut patient_id = String::new();
    let mut hour = None;
    let mut positive_outcome = false;

    for ((column, field), role) in schema.columns.iter().zip(&plan.fields).zip(&plan.roles) {
        let value_error = |message: String| ImportError::Value {
            file: file.to_string(),
            line,
            column: column.name.clone(),
            message,
        };
        let text: &[u8] = match *field {
            FieldSource::Input(index) => trim(&record[index]),
            FieldSource::PatientFromFileName => {
                source.patient_id.as_deref().unwrap_or_default().as_bytes()
            }
            FieldSource::Missing | FieldSource::DerivedLabel => MISSING,
        };
        let text = if is_missing(text) { MISSING } else { text };

        if text.is_empty() {
            // A label the file does not have is derived per patient later:
            // from the outcome, or 0 for data that is only scored.
            let derived = matches!(field, FieldSource::DerivedLabel | FieldSource::Missing);
            if role.required && !derived {
                return Err(value_error(
                    "missing value: this column is required in every row".into(),
                ));
            }
            fields.push_field(MISSING);
            values.push(Value::Missing);
            continue;
        }

        let as_str = std::str::from_utf8(text)
            .map_err(|_| value_error("the value is not valid UTF-8".into()))?;
        let value = match column.dtype {
            DType::String => Value::Text,
            DType::Float64 => {
                let value: f64 = as_str.parse().map_err(|_| {
                    value_error(format!("invalid number {as_str:?}: expected a float64"))
                })?;
                if value.is_nan() {
                    // Spellings such as "-nan" or "+NaN" are missing values too.
                    fields.push_field(MISSING);
                    values.push(Value::Missing);
                    continue;
                }
                if role.is_time {
                    if !value.is_finite() {
                        return Err(value_error(format!("invalid hour {as_str:?}")));
                    }
                    hour = Some(value);
                }
                Value::Float(value)
            }
            DType::Int64 => {
                let value: i64 = as_str.parse().map_err(|_| {
                    value_error(format!("invalid integer {as_str:?}: expected an int64"))
                })?;
                if role.is_outcome {
                    positive_outcome = value == 1;
                }
                Value::Integer(value)
            }
        };
        if role.is_id {
            patient_id = as_str.to_string();
        }
        fields.push_field(text);
        values.push(value);
    }

    Ok(Row {
        patient_id,
        hour: hour.unwrap_or(f64::NAN),
        positive_outcome,
        fields,
        values,
    })
}

fn trim(field: &[u8]) -> &[u8] {
    field.trim_ascii()
}

/// Holds one patient's rows until the patient ends, because the label at an
/// hour depends on the first positive hour, which may come later.
struct PatientBuffer {
    current_id: Option<String>,
    rows_of_patient: Vec<Row>,
    label_index: usize,
    rows: u64,
    patients: u64,
    septic_patients: u64,
}

impl PatientBuffer {
    fn new(schema: &Schema) -> Self {
        PatientBuffer {
            current_id: None,
            rows_of_patient: Vec::new(),
            label_index: label_index(schema),
            rows: 0,
            patients: 0,
            septic_patients: 0,
        }
    }

    fn push(&mut self, row: Row) {
        self.rows_of_patient.push(row);
    }

    /// Writes the buffered patient, filling in a derived label, and returns its id.
    fn flush(&mut self, out: &mut dyn RowSink) -> Result<Option<String>, ImportError> {
        if self.rows_of_patient.is_empty() {
            return Ok(None);
        }
        let first_positive_hour = self
            .rows_of_patient
            .iter()
            .find(|r| r.positive_outcome)
            .map(|r| r.hour);
        let label_start = first_positive_hour.map(|hour| hour + LABEL_SHIFT_HOURS - HORIZON_HOURS);

        let mut septic = false;
        for row in &self.rows_of_patient {
            let label_field = &row.fields[self.label_index];
            if label_field.is_empty() {
                let positive = label_start.is_some_and(|start| row.hour >= start);
                septic |= positive;
                out.row(row, Some(positive))?;
            } else {
                septic |= label_field == b"1";
                out.row(row, None)?;
            }
        }
        out.end_patient();

        self.rows += self.rows_of_patient.len() as u64;
        self.patients += 1;
        self.septic_patients += u64::from(septic);
        self.rows_of_patient.clear();
        Ok(self.current_id.take())
    }
}

/// A destination of the rows of [`convert`], which arrive patient by patient.
trait RowSink {
    /// Takes one row. `derived_label` is the label derived for a row whose
    /// label field is empty.
    fn row(&mut self, row: &Row, derived_label: Option<bool>) -> Result<(), ImportError>;
    /// Marks the end of a patient's rows.
    fn end_patient(&mut self);
}

/// Writes rows as the raw CSV.
struct CsvSink {
    out: csv::Writer<ChannelSink>,
    label_index: usize,
}

impl CsvSink {
    /// Starts the CSV with the header line.
    fn new(schema: &Schema, sink: ChannelSink) -> Result<CsvSink, ImportError> {
        let mut out = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(sink);
        let header: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
        out.write_record(&header).map_err(|e| write_failed(&e))?;
        Ok(CsvSink {
            out,
            label_index: label_index(schema),
        })
    }

    /// Sends the rest of the CSV on.
    fn finish(self) -> Result<(), ImportError> {
        let mut sink = self
            .out
            .into_inner()
            .map_err(|e| write_failed(&std::io::Error::other(e.to_string())))?;
        std::io::Write::flush(&mut sink).map_err(|e| write_failed(&e))
    }
}

impl RowSink for CsvSink {
    fn row(&mut self, row: &Row, derived_label: Option<bool>) -> Result<(), ImportError> {
        let written = match derived_label {
            Some(positive) => {
                let label: &[u8] = if positive { b"1" } else { b"0" };
                (self.out).write_record(row.fields.iter().enumerate().map(|(i, f)| {
                    if i == self.label_index {
                        label
                    } else {
                        f
                    }
                }))
            }
            None => self.out.write_byte_record(&row.fields),
        };
        written.map_err(|e| write_failed(&e))
    }

    fn end_patient(&mut self) {}
}

fn label_index(schema: &Schema) -> usize {
    schema
        .index_of(&schema.label_column)
        .expect("the schema check guarantees the label column")
}

/// Builds row batches in the snapshot's layout, each of whole patients.
struct BatchSink<'a> {
    builders: Vec<ColumnBuilder>,
    arrow_schema: arrow::datatypes::SchemaRef,
    label_index: usize,
    /// A batch ends with the first patient that brings it to this many rows.
    batch_rows: usize,
    rows_in_batch: usize,
    on_batch: &'a mut dyn FnMut(RecordBatch),
}

impl<'a> BatchSink<'a> {
    fn new(
        schema: &Schema,
        batch_rows: usize,
        on_batch: &'a mut dyn FnMut(RecordBatch),
    ) -> BatchSink<'a> {
        BatchSink {
            builders: (schema.columns.iter())
                .map(|c| ColumnBuilder::new(c.dtype, batch_rows))
                .collect(),
            arrow_schema: crate::table::snapshot_schema(schema),
            label_index: label_index(schema),
            batch_rows: batch_rows.max(1),
            rows_in_batch: 0,
            on_batch,
        }
    }

    fn cut(&mut self) {
        let batch = crate::table::finish_batch(&mut self.builders, &self.arrow_schema);
        (self.on_batch)(batch);
        self.rows_in_batch = 0;
    }

    fn finish(mut self) {
        if self.rows_in_batch > 0 {
            self.cut();
        }
    }
}

impl RowSink for BatchSink<'_> {
    fn row(&mut self, row: &Row, derived_label: Option<bool>) -> Result<(), ImportError> {
        for (index, (builder, value)) in self.builders.iter_mut().zip(&row.values).enumerate() {
            match (derived_label, index == self.label_index) {
                (Some(positive), true) => builder.append_flag(positive),
                _ => builder.append(*value, &row.fields[index]),
            }
        }
        self.rows_in_batch += 1;
        Ok(())
    }

    fn end_patient(&mut self) {
        if self.rows_in_batch >= self.batch_rows {
            self.cut();
        }
    }
}

/// The parts of a column that only [`BatchSink`] needs.
impl ColumnBuilder {
    /// Appends a value that [`build_row`] parsed as this column's dtype;
    /// `text` is its field.
    fn append(&mut self, value: Value, text: &[u8]) {
        match (self, value) {
            (ColumnBuilder::Float64(b), Value::Float(v)) => b.append_value(v),
            (ColumnBuilder::Int64(b), Value::Integer(v)) => b.append_value(v),
            (ColumnBuilder::Utf8(b), Value::Text) => {
                b.append_value(String::from_utf8_lossy(text).as_ref())
            }
            (builder, _) => builder.append_null(),
        }
    }

    /// Appends a derived label, as the text "1" or "0" would parse.
    fn append_flag(&mut self, positive: bool) {
        match self {
            ColumnBuilder::Float64(b) => b.append_value(f64::from(u8::from(positive))),
            ColumnBuilder::Int64(b) => b.append_value(i64::from(positive)),
            ColumnBuilder::Utf8(b) => b.append_value(if positive { "1" } else { "0" }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::silent;

    const CHALLENGE_HEADER: &str = "HR,O2Sat,Temp,SBP,MAP,DBP,Resp,EtCO2,BaseExcess,HCO3,FiO2,pH,PaCO2,SaO2,AST,BUN,Alkalinephos,Calcium,Chloride,Creatinine,Bilirubin_direct,Glucose,Lactate,Magnesium,Phosphate,Potassium,Bilirubin_total,TroponinI,Hct,Hgb,PTT,WBC,Fibrinogen,Platelets,Age,Gender,Unit1,Unit2,HospAdmTime,ICULOS,SepsisLabel";

    /// Builds a long-format row with HR, Age, Gender, ICULOS and SepsisLabel set.
    fn long_row(patient: &str, hour: u32, hr: &str, sepsis: u8) -> String {
        let mut fields = vec![String::new(); 41];
        fields[0] = hr.to_string();
        fields[34] = "60".into();
        fields[35] = "1".into();
        fields[39] = hour.to_string();
        fields[40] = sepsis.to_string();
        format!("{patient},{}", fields.join(","))
    }

    async fn import_text(text: &str, name: &str) -> Result<(Store, ImportManifest), ImportError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let store = Store::in_memory();
        let manifest = import(&store, &Schema::embedded(), &path, silent()).await?;
        Ok((store, manifest))
    }

    fn labels_of(csv_text: &str) -> Vec<String> {
        csv_text
            .lines()
            .skip(1)
            .map(|l| l.rsplit(',').next().unwrap().to_string())
            .collect()
    }

    #[tokio::test]
    async fn label_starts_six_hours_before_first_positive() {
        // First positive challenge label at hour 10: onset = 16, label from hour 4.
        let mut text = format!("patient_id,{CHALLENGE_HEADER}\n");
        for hour in 1..=12 {
            let sepsis = u8::from(hour >= 10);
            text.push_str(&long_row("p1", hour, "80", sepsis));
            text.push('\n');
        }
        let (store, manifest) = import_text(&text, "data.csv").await.unwrap();
        let data = store.get(Area::RawData, RAW_DATA_KEY).await.unwrap();
        let labels = labels_of(std::str::from_utf8(&data).unwrap());
        let expected: Vec<String> = (1..=12).map(|h| u8::from(h >= 4).to_string()).collect();
        assert_eq!(labels, expected);
        assert_eq!(manifest.septic_patients, 1);
        assert_eq!(manifest.format, InputFormat::LongCsv);
    }

    #[test]
    fn line_map_finds_source_lines() {
        let mut map = LineMap {
            files: vec!["a.psv".into(), "b.psv".into()],
            runs: Vec::new(),
        };
        for (raw, file, source) in [(2, 0, 2), (3, 0, 3), (4, 1, 2), (5, 1, 4)] {
            map.record(raw, file, source);
        }
        assert_eq!(map.runs.len(), 3);
        assert_eq!(map.source_of(3), Some(("a.psv", 3)));
        assert_eq!(map.source_of(4), Some(("b.psv", 2)));
        assert_eq!(map.source_of(5), Some(("b.psv", 4)));
        assert_eq!(map.source_of(1), None);
        assert_eq!(map.source_of(6), None);
    }

    #[tokio::test]
    async fn non_septic_patient_is_all_zero() {
        let mut text = format!("patient_id,{CHALLENGE_HEADER}\n");
        for hour in 1..=3 {
            text.push_str(&long_row("p2", hour, "", 0));
            text.push('\n');
        }
        let (store, manifest) = import_text(&text, "data.csv").await.unwrap();
        let data = store.get(Area::RawData, RAW_DATA_KEY).await.unwrap();
        assert_eq!(
            labels_of(std::str::from_utf8(&data).unwrap()),
            ["0", "0", "0"]
        );
        assert_eq!(manifest.rows, 3);
        assert_eq!(manifest.septic_patients, 0);
    }

    #[tokio::test]
    async fn values_are_copied_as_text() {
        let text = format!(
            "patient_id,{CHALLENGE_HEADER}\n{}\n",
            long_row("p1", 1, "83.140", 0)
        );
        let (store, _) = import_text(&text, "data.csv").await.unwrap();
        let data = store.get(Area::RawData, RAW_DATA_KEY).await.unwrap();
        assert!(std::str::from_utf8(&data).unwrap().contains("p1,83.140,"));
    }

    #[tokio::test]
    async fn text_in_numeric_column_names_line_and_column() {
        let text = format!(
            "patient_id,{CHALLENGE_HEADER}\n{}\n{}\n",
            long_row("p1", 1, "80", 0),
            long_row("p1", 2, "abc", 0)
        );
        let message = import_text(&text, "bad.csv").await.unwrap_err().to_string();
        assert!(message.contains("bad.csv"), "{message}");
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("\"HR\""), "{message}");
        assert!(message.contains("\"abc\""), "{message}");
    }

    #[tokio::test]
    async fn line_numbers_follow_any_line_end() {
        let rows: Vec<String> = (1..=5).map(|hour| long_row("p1", hour, "80", 0)).collect();
        for end in ["\n", "\r\n", "\r"] {
            let mut lines = vec![format!("patient_id,{CHALLENGE_HEADER}")];
            lines.extend(rows.iter().cloned());
            let good = lines.join(end) + end;
            let (_, manifest) = import_text(&good, "good.csv").await.unwrap();
            assert_eq!(manifest.rows, 5, "{end:?}");
            // The fourth data row is line 5 of the input.
            assert_eq!(
                manifest.line_map.source_of(5),
                Some(("good.csv", 5)),
                "{end:?}"
            );

            lines[4] = long_row("p1", 4, "abc", 0);
            let bad = lines.join(end) + end;
            let message = import_text(&bad, "bad.csv").await.unwrap_err().to_string();
            assert!(message.contains("line 5,"), "{end:?}: {message}");

            lines[4] = long_row("p1", 4, "80", 0);
            lines.push("p1,1,2".into());
            let short = lines.join(end) + end;
            let message = import_text(&short, "short.csv")
                .await
                .unwrap_err()
                .to_string();
            assert!(message.contains("line 7:"), "{end:?}: {message}");
        }
    }

    #[tokio::test]
    async fn split_patient_is_named() {
        let rows = [
            long_row("p1", 1, "80", 0),
            long_row("p2", 1, "80", 0),
            long_row("p1", 2, "80", 0),
        ];
        let text = format!("patient_id,{CHALLENGE_HEADER}\n{}\n", rows.join("\n"));
        let message = import_text(&text, "split.csv")
            .await
            .unwrap_err()
            .to_string();
        assert!(message.contains("line 4"), "{message}");
        assert!(message.contains("patient \"p1\""), "{message}");
        assert!(message.contains("not contiguous"), "{message}");
    }

    #[tokio::test]
    async fn quoted_line_break_counts_as_a_line() {
        let text = format!(
            "patient_id,{CHALLENGE_HEADER}\n\"p\n1\",{}\n{}\n",
            long_row("x", 1, "80", 0).split_once(',').unwrap().1,
            long_row("p2", 1, "abc", 0)
        );
        let message = import_text(&text, "quoted.csv")
            .await
            .unwrap_err()
            .to_string();
        assert!(message.contains("line 4,"), "{message}");
    }

    #[tokio::test]
    async fn long_file_with_carriage_returns_is_read() {
        // Over 1 MiB with no line feed at all.
        let rows: Vec<String> = (1..=25_000)
            .map(|hour| long_row("p1", hour, "80", 0))
            .collect();
        let text = format!("patient_id,{CHALLENGE_HEADER}\r{}\r", rows.join("\r"));
        assert!(text.len() > 1 << 20);
        let (_, manifest) = import_text(&text, "cr.csv").await.unwrap();
        assert_eq!(manifest.rows, 25_000);
    }

    #[tokio::test]
    async fn nan_text_is_missing() {
        let text = format!(
            "patient_id,{CHALLENGE_HEADER}\n{}\n",
            long_row("p1", 1, "NaN", 0)
        );
        let (store, _) = import_text(&text, "data.csv").await.unwrap();
        let data = store.get(Area::RawData, RAW_DATA_KEY).await.unwrap();
        assert!(std::str::from_utf8(&data).unwrap().contains("\np1,,"));
    }

    #[tokio::test]
    async fn signed_nan_text_is_missing() {
        let text = format!(
            "patient_id,{CHALLENGE_HEADER}\n{}\n",
            long_row("p1", 1, "-nan", 0)
        );
        let (store, _) = import_text(&text, "data.csv").await.unwrap();
        let data = store.get(Area::RawData, RAW_DATA_KEY).await.unwrap();
        assert!(std::str::from_utf8(&data).unwrap().contains("\np1,,"));
    }

    #[tokio::test]
    async fn failed_import_keeps_previous_data() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.csv");
        let bad = dir.path().join("bad.csv");
        std::fs::write(
            &good,
            format!(
                "patient_id,{CHALLENGE_HEADER}\n{}\n",
                long_row("p1", 1, "80", 0)
            ),
        )
        .unwrap();
        std::fs::write(
            &bad,
            format!(
                "patient_id,{CHALLENGE_HEADER}\n{}\n",
                long_row("p1", 1, "x", 0)
            ),
        )
        .unwrap();
        let store = Store::in_memory();
        let schema = Schema::embedded();
        let first = import(&store, &schema, &good, silent()).await.unwrap();
        assert!(import(&store, &schema, &bad, silent()).await.is_err());
        let kept = read_manifest(&store).await.unwrap();
        assert_eq!(kept, first);
    }

    #[tokio::test]
    async fn psv_directory_takes_ids_from_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let psv_header = CHALLENGE_HEADER.replace(',', "|");
        for (name, hr) in [("p000002.psv", "90"), ("p000001.psv", "NaN")] {
            let row = long_row("x", 1, hr, 0);
            let fields = row.split_once(',').unwrap().1.replace(',', "|");
            std::fs::write(dir.path().join(name), format!("{psv_header}\n{fields}\n")).unwrap();
        }
        let store = Store::in_memory();
        let manifest = import(&store, &Schema::embedded(), dir.path(), silent())
            .await
            .unwrap();
        assert_eq!(manifest.patients, 2);
        assert_eq!(manifest.format, InputFormat::PsvDirectory);
        let data = store.get(Area::RawData, RAW_DATA_KEY).await.unwrap();
        let text = std::str::from_utf8(&data).unwrap();
        let ids: Vec<&str> = text.lines().skip(1).map(|l| &l[..7]).collect();
        assert_eq!(ids, ["p000001", "p000002"]);
    }

    #[tokio::test]
    async fn psv_with_wrong_header_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let header = CHALLENGE_HEADER
            .replace(',', "|")
            .replace("HR|", "HeartRate|");
        std::fs::write(dir.path().join("p000001.psv"), format!("{header}\n")).unwrap();
        let store = Store::in_memory();
        let message = import(&store, &Schema::embedded(), dir.path(), silent())
            .await
            .unwrap_err()
            .to_string();
        assert!(message.contains("p000001.psv"), "{message}");
        assert!(message.contains("line 1"), "{message}");
        assert!(message.contains("HeartRate"), "{message}");
    }

    /// Imports `input` both ways: through the raw CSV and its snapshot, and
    /// straight into batches. Returns the snapshot rows and the batches.
    async fn both_ways(
        schema: &Schema,
        input: &Path,
        batch_rows: usize,
    ) -> (RecordBatch, Vec<RecordBatch>) {
        let (_, _, snapshot) = crate::scoring::import_to_memory(schema, input)
            .await
            .unwrap();
        let stored: Vec<RecordBatch> = crate::table::read_batches(snapshot, "snapshot")
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let stored = arrow::compute::concat_batches(&stored[0].schema(), &stored).unwrap();
        let mut batches = Vec::new();
        let counts =
            import_to_batches(schema, input, batch_rows, &mut |b| batches.push(b)).unwrap();
        assert_eq!(counts.rows as usize, stored.num_rows());
        (stored, batches)
    }

    fn ids(batch: &RecordBatch) -> Vec<String> {
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        column.iter().map(|id| id.unwrap().to_string()).collect()
    }

    #[tokio::test]
    async fn batches_equal_ingested_snapshot() {
        let sample = crate::test_support::sample_path();
        for schema in [Schema::embedded(), Schema::embedded().for_scoring(false)] {
            let (stored, batches) = both_ways(&schema, &sample, 4096).await;
            let joined = arrow::compute::concat_batches(&stored.schema(), &batches).unwrap();
            assert_eq!(joined, stored);
        }
    }

    #[tokio::test]
    async fn batches_hold_whole_patients() {
        let schema = Schema::embedded();
        let sample = crate::test_support::sample_path();
        let (_, batches) = both_ways(&schema, &sample, 1000).await;
        assert!(batches.len() > 10);
        for (batch, next) in batches.iter().zip(&batches[1..]) {
            assert!(batch.num_rows() >= 1000);
            let (ids, next_ids) = (ids(batch), ids(next));
            let last = ids.last().unwrap();
            assert_ne!(last, &next_ids[0]);
            // The cut comes at the first patient end after 1000 rows.
            let before_cut = ids[..ids.len() - 1]
                .iter()
                .rposition(|id| id != last)
                .map_or(0, |r| r + 1);
            assert!(
                before_cut < 1000,
                "a patient ended at row {before_cut}, after 1000 rows"
            );
        }
    }

    #[tokio::test]
    async fn psv_and_derived_label_batches_match() {
        let dir = tempfile::tempdir().unwrap();
        let psv_header = CHALLENGE_HEADER.replace(',', "|");
        for (name, sepsis) in [("p000002.psv", [0, 0, 1]), ("p000001.psv", [0, 0, 0])] {
            let rows: Vec<String> = (1..=3)
                .map(|hour| {
                    let row = long_row("x", hour, " 97.5 ", sepsis[hour as usize - 1]);
                    row.split_once(',').unwrap().1.replace(',', "|")
                })
                .collect();
            std::fs::write(
                dir.path().join(name),
                format!("{psv_header}\n{}\n", rows.join("\n")),
            )
            .unwrap();
        }
        let (stored, batches) = both_ways(&Schema::embedded(), dir.path(), 1).await;
        assert_eq!(batches.len(), 2);
        let joined = arrow::compute::concat_batches(&stored.schema(), &batches).unwrap();
        assert_eq!(joined, stored);

        let long = dir.path().join("long.csv");
        let text: Vec<String> = (1..=20)
            .map(|hour| long_row("p1", hour, "-nan", u8::from(hour > 15)))
            .collect();
        std::fs::write(
            &long,
            format!("patient_id,{CHALLENGE_HEADER}\n{}\n", text.join("\n")),
        )
        .unwrap();
        let (stored, batches) = both_ways(&Schema::embedded(), &long, 4096).await;
        assert_eq!(batches, [stored]);
    }

    #[test]
    fn batch_import_names_bad_value_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.csv");
        let rows = [long_row("p1", 1, "80", 0), long_row("p1", 2, "abc", 0)];
        std::fs::write(
            &path,
            format!("patient_id,{CHALLENGE_HEADER}\n{}\n", rows.join("\n")),
        )
        .unwrap();
        let mut batches = Vec::new();
        let error = import_to_batches(&Schema::embedded(), &path, 10, &mut |b| batches.push(b))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("\"HR\""), "{error}");
        assert!(error.contains("abc"), "{error}");
        assert!(batches.is_empty());
    }
}
