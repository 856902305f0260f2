//! `sepsis transform`: the validated snapshot → a versioned feature table in
//! `feature-store/<UTC timestamp>/`.
//!
//! A version contains `features.parquet` (patient id, hour, label, challenge
//! outcome and the feature columns) and `manifest.json`. The manifest is
//! written last and create-only, so a version without one is incomplete and
//! never read. A rerun on data with the same digest, schema and feature set
//! reuses the existing version instead of computing it again.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::features::{FeatureError, FeatureSpec, PatientBatches};
use crate::ingest::{self, IngestError};
use crate::progress::SharedProgress;
use crate::schema::Schema;
use crate::storage::{Area, StorageError, Store};
use crate::table::{self, ParquetBuffer, TableError};
use crate::validate::{self, ValidateError};

pub const FEATURES_FILE: &str = "features.parquet";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const TRANSFORMER_FILE: &str = "transformer.json";

/// Version of the table layout around the features (key columns, file names).
pub const TRANSFORM_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum FeatureStoreError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("computing features failed")]
    Features(#[from] FeatureError),
    #[error("{location}: {message}")]
    Manifest { location: String, message: String },
    #[error("feature version {version:?} not found in {location}")]
    VersionNotFound { version: String, location: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureManifest {
    /// The folder name: a UTC timestamp and four random hex digits.
    pub version: String,
    /// Digest of the raw data the features were computed from.
    pub input_digest: String,
    pub schema_digest: String,
    pub schema_version: u32,
    pub feature_set_version: String,
    pub transform_version: u32,
    pub feature_names: Vec<String>,
    pub rows: u64,
    /// SHA-256 of `features.parquet`.
    pub features_digest: String,
    pub created_at: String,
}

/// The key columns that precede the features in every feature table.
pub const ID_COLUMN: &str = "patient_id";
pub const HOUR_COLUMN: &str = "hour";
pub const LABEL_COLUMN: &str = "label";
pub const OUTCOME_COLUMN: &str = "outcome";

fn feature_table_schema(spec: &FeatureSpec) -> SchemaRef {
    let mut fields = vec![
        Field::new(ID_COLUMN, DataType::Utf8, false),
        Field::new(HOUR_COLUMN, DataType::Float64, false),
        Field::new(LABEL_COLUMN, DataType::Int64, false),
        Field::new(OUTCOME_COLUMN, DataType::Int64, true),
    ];
    fields.extend(
        spec.feature_names
            .iter()
            .map(|name| Field::new(name, DataType::Float32, false)),
    );
    Arc::new(ArrowSchema::new(fields))
}

/// Computes the feature table of the imported data, or reuses a stored one.
/// Returns the manifest and whether it was reused.
pub async fn transform(
    store: &Store,
    schema: &Schema,
    spec: &FeatureSpec,
    progress: SharedProgress,
) -> Result<(FeatureManifest, bool), FeatureStoreError> {
    let imported = crate::import::read_manifest(store)
        .await
        .map_err(IngestError::from)?;
    validate::require_passed(store, schema, &imported.digest).await?;

    if let Some(existing) = find_reusable(store, spec, &imported.digest).await? {
        return Ok((existing, true));
    }

    let snapshot = ingest::read_snapshot(store, schema, &imported.digest).await?;
    let table = compute(store, schema, spec, &imported.digest, snapshot, progress).await?;
    let manifest = store_version(store, schema, spec, &imported.digest, table).await?;
    Ok((manifest, false))
}

/// A computed feature table, not yet stored.
pub struct ComputedTable {
    parquet: Bytes,
    rows: u64,
}

/// Computes the feature table of a snapshot of `data_digest` in memory.
pub async fn compute(
    store: &Store,
    schema: &Schema,
    spec: &FeatureSpec,
    data_digest: &str,
    snapshot: Bytes,
    progress: SharedProgress,
) -> Result<ComputedTable, FeatureStoreError> {
    let location = store.uri(
        Area::ProcessedData,
        &ingest::snapshot_key(data_digest, ingest::SNAPSHOT_FILE),
    );
    let spec = spec.clone();
    let schema = schema.clone();
    let compute_progress = progress.clone();
    let (parquet, rows) = tokio::task::spawn_blocking(move || {
        compute_table(
            snapshot,
            &location,
            &schema,
            &spec,
            compute_progress.as_ref(),
        )
    })
    .await
    .expect("the transform thread does not panic")?;
    progress.end();
    Ok(ComputedTable { parquet, rows })
}

/// Stores a computed table as a new version: the table, the transformer, and
/// last the create-only manifest that makes the version visible.
pub async fn store_version(
    store: &Store,
    schema: &Schema,
    spec: &FeatureSpec,
    data_digest: &str,
    table: ComputedTable,
) -> Result<FeatureManifest, FeatureStoreError> {
    let ComputedTable { parquet, rows } = table;
    // The random suffix keeps two runs that transform in the same millisecond
    // apart, and every file is written create-only, so a clash fails loudly.
    let suffix: u16 = rand::random();
    let version = format!(
        "{}-{suffix:04x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    );
    let manifest = FeatureManifest {
        version: version.clone(),
        input_digest: data_digest.to_string(),
        schema_digest: schema.digest.clone(),
        schema_version: schema.version,
        feature_set_version: spec.feature_set_version.clone(),
        transform_version: TRANSFORM_VERSION,
        feature_names: spec.feature_names.clone(),
        rows,
        features_digest: hex::encode(Sha256::digest(&parquet)),
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    let spec_json = serde_json::to_vec_pretty(spec).expect("spec serialises");
    store
        .put_if_absent(
            Area::FeatureStore,
            &format!("{version}/{FEATURES_FILE}"),
            parquet,
        )
        .await?;
    store
        .put_if_absent(
            Area::Artifacts,
            &format!("transform/{version}/{TRANSFORMER_FILE}"),
            Bytes::from(spec_json),
        )
        .await?;
    let manifest_json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    store
        .put_if_absent(
            Area::FeatureStore,
            &format!("{version}/{MANIFEST_FILE}"),
            Bytes::from(manifest_json),
        )
        .await?;
    Ok(manifest)
}

fn compute_table(
    snapshot: Bytes,
    location: &str,
    schema: &Schema,
    spec: &FeatureSpec,
    progress: &dyn crate::progress::Progress,
) -> Result<(Bytes, u64), FeatureStoreError> {
    let table_schema = feature_table_schema(spec);
    let mut parquet = ParquetBuffer::new(table_schema.clone(), false)?;
    let mut rows = 0u64;
    progress.begin("transform", None);

    let batches =
        table::read_batches(snapshot, location)?.map(|b| b.map_err(FeatureStoreError::from));
    for batch in PatientBatches::new(batches, &schema.id_column) {
        let batch = batch?;
        let key_column = |name: &str| -> ArrayRef {
            batch
                .column_by_name(name)
                .expect("the snapshot has every schema column")
                .clone()
        };
        let outcome = match &schema.outcome_column {
            Some(name) => key_column(name),
            None => arrow::array::new_null_array(&DataType::Int64, batch.num_rows()),
        };
        let mut columns = vec![
            key_column(&schema.id_column),
            key_column(&schema.time_column),
            key_column(&schema.label_column),
            outcome,
        ];
        columns.extend(spec.compute(&batch)?);
        let out = RecordBatch::try_new(table_schema.clone(), columns)
            .expect("columns follow the feature table schema");
        parquet.write(&out)?;
        rows += batch.num_rows() as u64;
        progress.advance(batch.num_rows() as u64);
    }
    Ok((parquet.finish()?, rows))
}

/// Lists every complete feature version, oldest first.
pub async fn list_versions(store: &Store) -> Result<Vec<FeatureManifest>, FeatureStoreError> {
    let objects = store.list(Area::FeatureStore, "").await?;
    let mut manifests = Vec::new();
    for object in objects {
        if !object.key.ends_with(&format!("/{MANIFEST_FILE}")) {
            continue;
        }
        let bytes = store.get(Area::FeatureStore, &object.key).await?;
        let manifest: FeatureManifest =
            serde_json::from_slice(&bytes).map_err(|e| FeatureStoreError::Manifest {
                location: store.uri(Area::FeatureStore, &object.key),
                message: format!("invalid feature manifest: {e}"),
            })?;
        manifests.push(manifest);
    }
    manifests.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(manifests)
}

/// Finds a stored version computed from the same data, schema and feature
/// set, and logs that it is reused.
pub async fn find_reusable(
    store: &Store,
    spec: &FeatureSpec,
    input_digest: &str,
) -> Result<Option<FeatureManifest>, FeatureStoreError> {
    let versions = list_versions(store).await?;
    let found = versions.into_iter().rev().find(|m| {
        m.input_digest == input_digest
            && m.schema_digest == spec.schema_digest
            && m.feature_set_version == spec.feature_set_version
            && m.feature_names == spec.feature_names
            && m.transform_version == TRANSFORM_VERSION
    });
    if let Some(existing) = &found {
        tracing::info!(
            feature_version = %existing.version,
            rows = existing.rows,
            "features of this data digest exist, reusing them"
        );
    }
    Ok(found)
}

/// Finds the newest version computed from `input_digest`, or the named version.
pub async fn resolve_version(
    store: &Store,
    requested: Option<&str>,
    input_digest: &str,
) -> Result<FeatureManifest, FeatureStoreError> {
    let versions = list_versions(store).await?;
    let found = match requested {
        Some(version) => versions.into_iter().find(|m| m.version == version),
        None => versions
            .into_iter()
            .rev()
            .find(|m| m.input_digest == input_digest),
    };
    found.ok_or_else(|| FeatureStoreError::VersionNotFound {
        version: requested
            .unwrap_or("(newest for the imported data)")
            .to_string(),
        location: store.uri(Area::FeatureStore, ""),
    })
}

/// Loads the feature table of a version.
pub async fn read_features(
    store: &Store,
    manifest: &FeatureManifest,
) -> Result<Bytes, FeatureStoreError> {
    Ok(store
        .get(
            Area::FeatureStore,
            &format!("{}/{FEATURES_FILE}", manifest.version),
        )
        .await?)
}
