//! Shared helpers of the unit tests: a memory store and the bundled sample.

use std::path::PathBuf;

use arrow::array::RecordBatch;

use crate::schema::Schema;
use crate::storage::Store;

pub fn memory_store() -> Store {
    Store::in_memory()
}

/// Returns the path of the real PhysioNet sample shipped in the repository.
pub fn sample_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/sample/physionet2019-setA-sample.csv.gz")
}

/// Imports and parses the bundled sample, returning its snapshot rows in
/// one batch, patient by patient.
pub async fn sample_rows(schema: &Schema) -> RecordBatch {
    let store = memory_store();
    let progress = crate::progress::silent();
    let imported = crate::import::import(&store, schema, &sample_path(), progress.clone())
        .await
        .unwrap();
    crate::ingest::ingest(&store, schema, progress)
        .await
        .unwrap();
    let snapshot = crate::ingest::read_snapshot(&store, schema, &imported.digest)
        .await
        .unwrap();
    let batches: Vec<RecordBatch> = crate::table::read_batches(snapshot, "sample")
        .unwrap()
        .map(Result::unwrap)
        .collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}
