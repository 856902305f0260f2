//! `sepsis ingest`: `raw-data/sepsis-data.csv` → a typed Parquet snapshot in
//! `processed-data/<data digest>/`.
//!
//! The CSV is streamed from the store and parsed with the dtypes of the
//! schema, never inferred: a float64 column that is empty in every row is
//! still float64, and `86` followed by `86.5` parses. The digest of the bytes
//! read must match the one recorded at import, so a snapshot always belongs to
//! exactly the data its folder names.

use std::io::Read;

use arrow::array::RecordBatch;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::import::{self, ImportError, RAW_DATA_KEY};
use crate::progress::SharedProgress;
use crate::schema::Schema;
use crate::storage::{Area, StorageError, Store};
use crate::table::{self, ColumnBuilder, ParquetBuffer, TableError, BATCH_ROWS};

pub const SNAPSHOT_FILE: &str = "snapshot.parquet";
pub const SNAPSHOT_MANIFEST: &str = "snapshot.json";
/// Bytes fetched per storage request while streaming the raw CSV.
const READ_CHUNK_BYTES: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("{location}: line {line}: {message}")]
    Row {
        location: String,
        line: u64,
        message: String,
    },
    #[error("{location}: line {line}, column {column:?}: {message}")]
    Value {
        location: String,
        line: u64,
        column: String,
        message: String,
    },
    #[error(
        "{location} changed since it was imported (digest {actual}, import recorded {expected}); \
         run `sepsis data import` again"
    )]
    DigestMismatch {
        location: String,
        expected: String,
        actual: String,
    },
    #[error("{location}: {message}")]
    Manifest { location: String, message: String },
}

/// The snapshot record, stored as `processed-data/<digest>/snapshot.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    /// Digest of the raw CSV the snapshot was parsed from.
    pub data_digest: String,
    /// SHA-256 of `snapshot.parquet`.
    pub snapshot_digest: String,
    pub schema_digest: String,
    pub rows: u64,
    pub created_at: String,
}

/// Key of a snapshot file inside `processed-data/`.
pub fn snapshot_key(data_digest: &str, file: &str) -> String {
    format!("{data_digest}/{file}")
}

/// Parses the imported CSV into a Parquet snapshot, or reuses the snapshot of
/// the same data and schema when one exists.
pub async fn ingest(
    store: &Store,
    schema: &Schema,
    progress: SharedProgress,
) -> Result<(SnapshotManifest, bool), IngestError> {
    let imported = import::read_manifest(store).await?;
    if let Some(existing) = reusable_snapshot(store, schema, &imported.digest).await? {
        return Ok((existing, true));
    }

    let location = store.uri(Area::RawData, RAW_DATA_KEY);
    let reader = store
        .blocking_reader(Area::RawData, RAW_DATA_KEY, READ_CHUNK_BYTES)
        .await?;
    let schema_for_parse = schema.clone();
    let location_for_parse = location.clone();
    let parse_progress = progress.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        parse_csv(
            std::io::BufReader::with_capacity(1 << 16, reader),
            &schema_for_parse,
            &location_for_parse,
            parse_progress.as_ref(),
        )
    })
    .await
    .expect("the ingest thread does not panic")?;
    progress.end();

    store_snapshot(store, schema, &imported.digest, location, parsed).await
}

/// Returns the stored snapshot of `data_digest` if it was parsed with this schema.
async fn reusable_snapshot(
    store: &Store,
    schema: &Schema,
    data_digest: &str,
) -> Result<Option<SnapshotManifest>, IngestError> {
    let existing = read_snapshot_manifest(store, data_digest).await?;
    let reusable = existing.filter(|m| m.schema_digest == schema.digest);
    if let Some(manifest) = &reusable {
        tracing::info!(
            rows = manifest.rows,
            "snapshot of this data exists, reusing it"
        );
    }
    Ok(reusable)
}

/// A parsed raw CSV: the Parquet snapshot, the digest of the bytes read and
/// the row count.
pub struct ParsedCsv {
    parquet: Bytes,
    digest: String,
    rows: u64,
}

/// Stores a parsed snapshot after checking that it was parsed from exactly the
/// imported bytes.
async fn store_snapshot(
    store: &Store,
    schema: &Schema,
    imported_digest: &str,
    location: String,
    parsed: ParsedCsv,
) -> Result<(SnapshotManifest, bool), IngestError> {
    let ParsedCsv {
        parquet,
        digest,
        rows,
    } = parsed;
    if digest != imported_digest {
        return Err(IngestError::DigestMismatch {
            location,
            expected: imported_digest.to_string(),
            actual: digest,
        });
    }

    let manifest = SnapshotManifest {
        data_digest: digest.clone(),
        snapshot_digest: hex::encode(Sha256::digest(&parquet)),
        schema_digest: schema.digest.clone(),
        rows,
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    store
        .put(
            Area::ProcessedData,
            &snapshot_key(&digest, SNAPSHOT_FILE),
            parquet,
        )
        .await?;
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    store
        .put(
            Area::ProcessedData,
            &snapshot_key(&digest, SNAPSHOT_MANIFEST),
            Bytes::from(json),
        )
        .await?;
    Ok((manifest, false))
}

/// Wraps a channel of raw CSV chunks in a buffered reader.
fn buffered_chunks(chunks: tokio::sync::mpsc::Receiver<Bytes>) -> std::io::BufReader<ChunkReader> {
    let reader = ChunkReader {
        chunks,
        current: Bytes::new(),
    };
    std::io::BufReader::with_capacity(1 << 16, reader)
}

/// Parses raw CSV bytes as they arrive on `chunks`, on a blocking thread.
/// Await the returned handle after the import, then pass the result to
/// [`store_tapped`].
pub fn parse_tapped(
    schema: &Schema,
    location: String,
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
) -> tokio::task::JoinHandle<Result<ParsedCsv, IngestError>> {
    let schema = schema.clone();
    tokio::task::spawn_blocking(move || {
        let reader = buffered_chunks(chunks);
        parse_csv(reader, &schema, &location, &crate::progress::NoProgress)
    })
}

/// Stores the snapshot parsed by [`parse_tapped`] under the digest that the
/// import computed, unless a snapshot of the same data and schema exists.
/// It uses that digest rather than rereading the import record, which
/// another run on the same store may have replaced in the meantime.
pub async fn store_tapped(
    store: &Store,
    schema: &Schema,
    imported_digest: &str,
    parsed: ParsedCsv,
) -> Result<(SnapshotManifest, bool), IngestError> {
    if let Some(existing) = reusable_snapshot(store, schema, imported_digest).await? {
        return Ok((existing, true));
    }
    let location = store.uri(Area::RawData, RAW_DATA_KEY);
    store_snapshot(store, schema, imported_digest, location, parsed).await
}

/// Reads chunks from a channel as one byte stream.
struct ChunkReader {
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

/// Reads the manifest of the snapshot of `data_digest`, if there is one.
pub async fn read_snapshot_manifest(
    store: &Store,
    data_digest: &str,
) -> Result<Option<SnapshotManifest>, IngestError> {
    let key = snapshot_key(data_digest, SNAPSHOT_MANIFEST);
    match store.get(Area::ProcessedData, &key).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| IngestError::Manifest {
                location: store.uri(Area::ProcessedData, &key),
                message: format!("invalid snapshot record: {e}"),
            }),
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Hashes every byte that passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn parse_csv<R: Read>(
    reader: R,
    schema: &Schema,
    location: &str,
    progress: &dyn crate::progress::Progress,
) -> Result<ParsedCsv, IngestError> {
    let mut parquet = ParquetBuffer::new(table::snapshot_schema(schema), true)?;
    let (digest, rows) = parse_csv_batches(reader, schema, location, progress, |batch| {
        Ok(parquet.write(&batch)?)
    })?;
    Ok(ParsedCsv {
        parquet: parquet.finish()?,
        digest,
        rows,
    })
}

/// Parses the raw CSV into batches of [`BATCH_ROWS`] rows in the snapshot's
/// layout, and passes each to `on_batch`. Returns the digest of the bytes
/// read and the row count.
fn parse_csv_batches<R: Read>(
    reader: R,
    schema: &Schema,
    location: &str,
    progress: &dyn crate::progress::Progress,
    mut on_batch: impl FnMut(RecordBatch) -> Result<(), IngestError>,
) -> Result<(String, u64), IngestError> {
    progress.begin("ingest", None);
    let mut hashing = HashingReader {
        inner: reader,
        hasher: Sha256::new(),
    };
    let mut csv_reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(&mut hashing);
    let row_error = |line: u64, message: String| IngestError::Row {
        location: location.to_string(),
        line,
        message,
    };

    let header = csv_reader
        .byte_headers()
        .map_err(|e| row_error(1, e.to_string()))?
        .clone();
    let expected: Vec<&[u8]> = schema.columns.iter().map(|c| c.name.as_bytes()).collect();
    let actual: Vec<&[u8]> = header.iter().collect();
    if actual != expected {
        return Err(row_error(
            1,
            "the header does not match the schema's columns; run `sepsis data import` again".into(),
        ));
    }

    let arrow_schema = table::snapshot_schema(schema);
    let mut builders: Vec<ColumnBuilder> = schema
        .columns
        .iter()
        .map(|c| ColumnBuilder::new(c.dtype, BATCH_ROWS))
        .collect();
    let mut record = csv::ByteRecord::new();
    let mut rows = 0u64;
    let mut in_batch = 0usize;

    loop {
        match csv_reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                return Err(row_error(line, e.to_string()));
            }
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        for ((column, builder), field) in
            schema.columns.iter().zip(&mut builders).zip(record.iter())
        {
            append_field(builder, field).map_err(|message| IngestError::Value {
                location: location.to_string(),
                line,
                column: column.name.clone(),
                message,
            })?;
        }
        rows += 1;
        in_batch += 1;
        if in_batch == BATCH_ROWS {
            on_batch(table::finish_batch(&mut builders, &arrow_schema))?;
            in_batch = 0;
            progress.advance(BATCH_ROWS as u64);
        }
    }
    if in_batch > 0 {
        on_batch(table::finish_batch(&mut builders, &arrow_schema))?;
        progress.advance(in_batch as u64);
    }
    drop(csv_reader);

    // Drain anything after the last record so the digest covers every byte.
    std::io::copy(&mut hashing, &mut std::io::sink())
        .map_err(|e| row_error(rows + 1, e.to_string()))?;
    let digest = hex::encode(hashing.hasher.finalize());
    Ok((digest, rows))
}

fn append_field(builder: &mut ColumnBuilder, field: &[u8]) -> Result<(), String> {
    let missing = field.is_empty() || field.eq_ignore_ascii_case(b"nan");
    let text =
        || std::str::from_utf8(field).map_err(|_| "the value is not valid UTF-8".to_string());
    match builder {
        ColumnBuilder::Utf8(b) if missing => b.append_null(),
        ColumnBuilder::Utf8(b) => b.append_value(text()?),
        ColumnBuilder::Float64(b) if missing => b.append_null(),
        ColumnBuilder::Float64(b) => {
            let text = text()?;
            let value: f64 = text
                .parse()
                .map_err(|_| format!("invalid number {text:?}: expected a float64"))?;
            if value.is_nan() {
                b.append_null();
            } else {
                b.append_value(value);
            }
        }
        ColumnBuilder::Int64(b) if missing => b.append_null(),
        ColumnBuilder::Int64(b) => {
            let text = text()?;
            let value: i64 = text
                .parse()
                .map_err(|_| format!("invalid integer {text:?}: expected an int64"))?;
            b.append_value(value);
        }
    }
    Ok(())
}

/// Loads the snapshot Parquet bytes of `data_digest`, after checking that it
/// was parsed with this schema: a snapshot of another schema has other
/// columns, which the later steps would misread.
pub async fn read_snapshot(
    store: &Store,
    schema: &Schema,
    data_digest: &str,
) -> Result<Bytes, IngestError> {
    let missing = |location: String| IngestError::Manifest {
        location,
        message: "no snapshot of the imported data; run `sepsis ingest` first".into(),
    };
    let manifest = read_snapshot_manifest(store, data_digest)
        .await?
        .ok_or_else(|| missing(store.uri(Area::ProcessedData, data_digest)))?;
    if manifest.schema_digest != schema.digest {
        return Err(IngestError::Manifest {
            location: store.uri(Area::ProcessedData, data_digest),
            message: "the snapshot was parsed with another schema; run `sepsis ingest` again"
                .into(),
        });
    }
    let key = snapshot_key(data_digest, SNAPSHOT_FILE);
    match store.get(Area::ProcessedData, &key).await {
        Ok(bytes) => Ok(bytes),
        Err(StorageError::NotFound { location }) => Err(missing(location)),
        Err(error) => Err(error.into()),
    }
}
