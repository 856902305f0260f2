//! Times the feature computation on a dataset, for `bench/features`.
//!
//! Usage: feature_bench DATA [--out FEATURES.parquet]
//!
//! DATA is read, parsed and decoded into memory first, untimed, as the
//! Python reference reads its CSV with pandas before its clock starts. Then
//! every feature of every row is computed, timed, batch by batch as the
//! transform does, and kept only with --out. The last line on stdout is
//! a JSON object with the row, patient and feature counts and the seconds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
use sepsis_ews::config::{Config, ConfigSources};
use sepsis_ews::features::{FeatureError, FeatureSpec, PatientBatches};
use sepsis_ews::schema::Schema;
use sepsis_ews::{import, scoring, table};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let data = PathBuf::from(
        args.next()
            .context("usage: feature_bench DATA [--out FILE]")?,
    );
    let out = match (args.next().as_deref(), args.next()) {
        (None, _) => None,
        (Some("--out"), Some(path)) => Some(PathBuf::from(path)),
        _ => bail!("usage: feature_bench DATA [--out FILE]"),
    };

    let config = Config::load(&ConfigSources::default())?;
    let schema = Schema::embedded();
    let spec = FeatureSpec::new(&schema, &config.features);
    let (store, _, snapshot) = scoring::import_to_memory(&schema, &data).await?;
    let imported = import::read_manifest(&store).await?;
    let batches: Vec<RecordBatch> =
        table::read_batches(snapshot, "snapshot")?.collect::<Result<_, _>>()?;

    // Like `sepsis transform`, the features of each batch of patients are
    // computed and then handed on; only --out keeps them all.
    let keep = out.is_some();
    let started = Instant::now();
    let mut computed: Vec<(RecordBatch, Vec<ArrayRef>)> = Vec::new();
    let whole = PatientBatches::new(batches.into_iter().map(Ok::<_, FeatureError>), "patient_id");
    for batch in whole {
        let batch = batch?;
        let columns = spec.compute(&batch)?;
        if keep {
            computed.push((batch, columns));
        }
    }
    let seconds = started.elapsed().as_secs_f64();

    if let Some(path) = out {
        write_features(&path, &schema, &spec, &computed)?;
    }
    println!(
        "{}",
        serde_json::json!({
            "rows": imported.rows,
            "patients": imported.patients,
            "features": spec.width(),
            "compute_seconds": seconds,
        })
    );
    Ok(())
}

/// Writes patient id, hour and every feature, for the equality check.
fn write_features(
    path: &PathBuf,
    schema: &Schema,
    spec: &FeatureSpec,
    computed: &[(RecordBatch, Vec<ArrayRef>)],
) -> anyhow::Result<()> {
    let mut fields = vec![
        Field::new("patient_id", DataType::Utf8, true),
        Field::new("hour", DataType::Float64, true),
    ];
    fields.extend(
        spec.feature_names
            .iter()
            .map(|n| Field::new(n, DataType::Float32, false)),
    );
    let out_schema = Arc::new(ArrowSchema::new(fields));
    let mut parquet = table::ParquetBuffer::new(out_schema.clone(), false)?;
    for (batch, columns) in computed {
        let mut all = vec![
            batch
                .column_by_name(&schema.id_column)
                .context("id column")?
                .clone(),
            batch
                .column_by_name(&schema.time_column)
                .context("hour column")?
                .clone(),
        ];
        all.extend(columns.iter().cloned());
        parquet.write(&RecordBatch::try_new(out_schema.clone(), all)?)?;
    }
    std::fs::write(path, parquet.finish()?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
