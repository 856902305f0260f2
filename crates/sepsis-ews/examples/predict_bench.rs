//! Times the crate's tree evaluator on a stored feature table, for
//! `bench/predict`.
//!
//! Usage: predict_bench MODEL_TXT FEATURES_PARQUET REPEATS
//!
//! The feature table that `sepsis transform` wrote is read into one
//! row-major float32 matrix in the model's input order, untimed, as the
//! LightGBM side of the benchmark does. Then every row is scored REPEATS
//! times on all cores. The last line on stdout is a JSON object with the
//! rows, the seconds of each repeat and the median rows per second.

use std::time::Instant;

use anyhow::Context as _;
use arrow::array::AsArray;
use arrow::datatypes::Float32Type;
use sepsis_ews::model::TreeModel;
use sepsis_ews::table;

fn main() -> anyhow::Result<()> {
    let usage = "usage: predict_bench MODEL_TXT FEATURES_PARQUET REPEATS";
    let mut args = std::env::args().skip(1);
    let model_path = args.next().context(usage)?;
    let features_path = args.next().context(usage)?;
    let repeats: usize = args.next().context(usage)?.parse().context(usage)?;

    let text = std::fs::read_to_string(&model_path)
        .with_context(|| format!("cannot read {model_path}"))?;
    let trees = TreeModel::parse(&text)?;
    let names = trees.feature_names().to_vec();
    let bytes = bytes::Bytes::from(
        std::fs::read(&features_path).with_context(|| format!("cannot read {features_path}"))?,
    );
    let width = names.len();
    let mut values: Vec<f32> = Vec::new();
    for batch in table::read_batches(bytes, &features_path)? {
        let batch = batch?;
        let columns = names
            .iter()
            .map(|name| {
                batch
                    .column_by_name(name)
                    .with_context(|| format!("{features_path} has no column {name}"))
                    .map(|c| c.as_primitive::<Float32Type>().values().to_vec())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let start = values.len();
        values.resize(start + batch.num_rows() * width, 0.0);
        for (index, column) in columns.iter().enumerate() {
            for (row, value) in column.iter().enumerate() {
                values[start + row * width + index] = *value;
            }
        }
    }
    let rows = values.len() / width;

    let mut seconds = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let started = Instant::now();
        let scores = trees.predict_rows(&values);
        seconds.push(started.elapsed().as_secs_f64());
        std::hint::black_box(scores);
    }
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{}",
        serde_json::json!({
            "rows": rows,
            "features": width,
            "threads": threads,
            "seconds": seconds,
            "median_seconds": median,
            "rows_per_second": rows as f64 / median,
        })
    );
    Ok(())
}
