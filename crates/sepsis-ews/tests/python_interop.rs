//! A model trained here must predict the same probabilities in LightGBM's
//! own predictor, in this crate's tree evaluator, and in Python LightGBM.
//! `scripts/test` points `SEPSIS_TEST_PYTHON` at a venv with the pinned
//! `lightgbm` package.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use lightgbm3::Booster;
use sepsis_ews::config::{Config, ConfigSources};
use sepsis_ews::model::TreeModel;
use sepsis_ews::pipeline::{self, Context};
use sepsis_ews::progress::silent;
use sepsis_ews::scoring::{self, ScoringModel};
use sepsis_ews::storage::Area;

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// The default model: two boosters of `patient_and_onset` summed, whose
/// Poisson objective turns the raw score into a probability with `exp`.
#[tokio::test(flavor = "multi_thread")]
async fn model_predicts_identically_everywhere() {
    predicts_identically_everywhere(&[]).await;
}

/// The same checks for five cross-fitted pairs of boosters, which the crate
/// writes as one merged LightGBM text model.
#[tokio::test(flavor = "multi_thread")]
async fn cross_fitted_model_predicts_identically_everywhere() {
    predicts_identically_everywhere(&[("training.folds", "5"), ("training.num_iterations", "60")])
        .await;
}

/// The same checks for one booster with the binary objective, whose link is
/// the sigmoid.
#[tokio::test(flavor = "multi_thread")]
async fn one_booster_model_predicts_identically_everywhere() {
    predicts_identically_everywhere(&[("training.shape", "one_booster")]).await;
}

/// The same checks for the mean of five cross-fitted single boosters.
#[tokio::test(flavor = "multi_thread")]
async fn cross_fitted_one_booster_predicts_identically_everywhere() {
    predicts_identically_everywhere(&[
        ("training.shape", "one_booster"),
        ("training.folds", "5"),
        ("training.num_iterations", "60"),
    ])
    .await;
}

async fn predicts_identically_everywhere(settings: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let mut overrides = vec![
        (
            "storage.uri".to_string(),
            dir.path().join("store").display().to_string(),
        ),
        (
            "data.schema".to_string(),
            repo_path("config/schema.yaml").display().to_string(),
        ),
    ];
    overrides.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::load(&ConfigSources {
        file: Some(repo_path("config/config.yaml")),
        read_env: false,
        overrides,
    })
    .unwrap();
    let ctx = Context::open(config, silent()).unwrap();
    let sample = repo_path("data/sample/physionet2019-setA-sample.csv.gz");

    pipeline::run_import(&ctx, &sample).await.unwrap();
    pipeline::run_ingest(&ctx).await.unwrap();
    pipeline::run_validate(&ctx).await.unwrap();
    let (features, _) = pipeline::run_transform(&ctx).await.unwrap();
    let (trained, _) = pipeline::run_train(&ctx, Some(&features.version))
        .await
        .unwrap();
    let data = pipeline::run_data(&ctx, &trained.sidecar).await.unwrap();

    // Reload the stored text model, as a user of the artifacts would.
    let model_key = format!("runs/{}/model.txt", trained.run_id);
    let model_text = ctx.store.get(Area::Artifacts, &model_key).await.unwrap();
    let model_path = dir.path().join("model.txt");
    std::fs::write(&model_path, &model_text).unwrap();
    let booster = Booster::from_string(std::str::from_utf8(&model_text).unwrap()).unwrap();
    let folds = trained.sidecar.split.folds;
    let iterations =
        u32::try_from(trained.sidecar.params["num_iterations"].as_u64().unwrap()).unwrap();
    let pair = trained.sidecar.params["shape"] == "patient_and_onset";
    let boosters_per_fold = if pair { 2 } else { 1 };
    assert_eq!(
        TreeModel::parse(std::str::from_utf8(&model_text).unwrap())
            .unwrap()
            .num_trees(),
        (folds * boosters_per_fold * iterations) as usize
    );
    let objective = if pair { "poisson" } else { "binary" };
    assert!(std::str::from_utf8(&model_text)
        .unwrap()
        .contains(&format!("\nobjective={objective}")));

    let validation = &data.validation.matrix;
    let width = validation.width;
    let probabilities = booster
        .predict(&validation.values, width as i32, true)
        .unwrap();
    assert_eq!(probabilities.len(), validation.rows());

    // The crate's own tree evaluator, used for scoring, must agree with
    // LightGBM's predictor exactly on every real validation row.
    let model = TreeModel::parse(std::str::from_utf8(&model_text).unwrap()).unwrap();
    let own = model.predict(validation).unwrap();
    let differing = own
        .iter()
        .zip(&probabilities)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(
        differing, 0,
        "rows where the evaluator differs from LightGBM"
    );
    // Both links spread the scores: some hours score far above the others.
    let highest = probabilities.iter().copied().fold(0.0, f64::max);
    let lowest = probabilities.iter().copied().fold(1.0, f64::min);
    assert!(
        highest > 0.2 && highest > 20.0 * lowest,
        "{lowest} to {highest}"
    );
    assert!(validation.values.iter().any(|v| v.is_nan()));

    // Scoring the raw file computes the features with the same code as the
    // feature table: every validation hour gets the same probability.
    let scoring_model = ScoringModel::load(&ctx.store, &trained.run_id)
        .await
        .unwrap();
    let scored = scoring::score_file(
        &ctx.schema,
        &sample,
        &scoring_model,
        scoring::Purpose::Evaluate,
    )
    .await
    .unwrap();
    let from_table = scoring_model
        .finish(&own, &data.validation.hours, &data.validation.patients)
        .probability;
    let mut compared = 0;
    for (patient, range) in data
        .validation
        .patient_ids
        .iter()
        .zip(&data.validation.patients)
    {
        let start = scored
            .patient_ids
            .iter()
            .position(|id| id == patient)
            .unwrap();
        for (offset, row) in range.clone().enumerate() {
            assert_eq!(
                scored.scores.probability[start + offset].to_bits(),
                from_table[row].to_bits(),
                "hour {offset} of a validation patient"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, validation.rows());

    let matrix_path = dir.path().join("matrix.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&matrix_path).unwrap());
    let mut header = trained.sidecar.feature_names.clone();
    header.push("rust_probability".into());
    writeln!(out, "{}", header.join(",")).unwrap();
    for (row, probability) in probabilities.iter().enumerate() {
        let fields: Vec<String> = validation.values[row * width..(row + 1) * width]
            .iter()
            .map(|v| {
                if v.is_nan() {
                    String::new()
                } else {
                    v.to_string()
                }
            })
            .collect();
        writeln!(out, "{},{probability:?}", fields.join(",")).unwrap();
    }
    drop(out);

    let python = std::env::var("SEPSIS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .arg(repo_path("scripts/check_model.py"))
        .arg(&model_path)
        .arg(&matrix_path)
        .output()
        .unwrap_or_else(|e| panic!("{python} could not be started: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Python LightGBM disagrees or failed (run through scripts/test for the pinned venv):\n{stdout}\n{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["rows"], validation.rows());
    assert!(report["max_abs_difference"].as_f64().unwrap() <= 1e-12);
}
