//! Shared helpers of the unit tests: the bundled sample.

use std::path::PathBuf;

use arrow::array::RecordBatch;

use crate::schema::Schema;

/// Returns the path of the real PhysioNet sample shipped in the repository.
pub fn sample_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/sample/physionet2019-setA-sample.csv.gz")
}

/// Imports and parses the bundled sample, returning its snapshot rows in
/// one batch, patient by patient.
pub async fn sample_rows(schema: &Schema) -> RecordBatch {
    let (_, _, snapshot) = crate::scoring::import_to_memory(schema, &sample_path())
        .await
        .unwrap();
    let batches: Vec<RecordBatch> = crate::table::read_batches(snapshot, "sample")
        .unwrap()
        .map(Result::unwrap)
        .collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}
