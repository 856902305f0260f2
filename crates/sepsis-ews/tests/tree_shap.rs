//! The crate's TreeSHAP must give LightGBM's own feature contributions
//! (`predict_contrib`) for a model trained on real data.

use std::path::PathBuf;

use lightgbm3::Booster;
use sepsis_ews::config::{Config, ConfigSources};
use sepsis_ews::model::TreeModel;
use sepsis_ews::pipeline::{self, Context};
use sepsis_ews::progress::silent;
use sepsis_ews::storage::Area;

/// Validation rows compared; enough to reach every tree's leaves many times.
const ROWS: usize = 3000;

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// The default model: the two summed Poisson boosters of `patient_and_onset`.
#[tokio::test(flavor = "multi_thread")]
async fn contributions_equal_lightgbm() {
    contributions_equal_lightgbm_for("patient_and_onset").await;
}

/// One binary booster, whose raw score is a log-odds.
#[tokio::test(flavor = "multi_thread")]
async fn one_booster_contributions_equal_lightgbm() {
    contributions_equal_lightgbm_for("one_booster").await;
}

async fn contributions_equal_lightgbm_for(shape: &str) {
    let config = Config::load(&ConfigSources {
        file: None,
        read_env: false,
        overrides: vec![
            ("storage.uri".into(), "memory://".into()),
            (
                "data.schema".into(),
                repo_path("config/schema.yaml").display().to_string(),
            ),
            ("training.num_iterations".into(), "60".into()),
            ("training.num_threads".into(), "1".into()),
            ("training.shape".into(), shape.into()),
        ],
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

    let model_key = format!("runs/{}/model.txt", trained.run_id);
    let model_text = ctx.store.get(Area::Artifacts, &model_key).await.unwrap();
    let model_text = std::str::from_utf8(&model_text).unwrap();
    let objective = if shape == "one_booster" {
        "binary"
    } else {
        "poisson"
    };
    assert!(model_text.contains(&format!("\nobjective={objective}")));
    let booster = Booster::from_string(model_text).unwrap();
    let model = TreeModel::parse(model_text).unwrap();

    let validation = &data.validation.matrix;
    let width = validation.width;
    let rows = validation.rows().min(ROWS);
    let values = &validation.values[..rows * width];
    let expected = booster.predict_contrib(values, width as i32, true).unwrap();
    assert_eq!(expected.len(), rows * (width + 1));

    let mut differing = 0;
    let mut largest_difference: f64 = 0.0;
    for row in 0..rows {
        let features = &values[row * width..(row + 1) * width];
        let own = model.contributions(features).unwrap();
        let theirs = &expected[row * (width + 1)..(row + 1) * (width + 1)];
        for (a, b) in own.iter().zip(theirs) {
            if a.to_bits() != b.to_bits() {
                differing += 1;
                largest_difference = largest_difference.max((a - b).abs());
            }
        }
        // The contributions and the expected value add up to the raw score.
        let total: f64 = own.iter().sum();
        let raw = model.raw_score(features);
        assert!(
            (total - raw).abs() < 1e-9,
            "row {row}: contributions sum to {total}, raw score {raw}"
        );
    }
    assert_eq!(
        differing, 0,
        "contributions differing from LightGBM's (largest difference {largest_difference:e})"
    );
    // The rows exercise missing values and many features.
    assert!(values.iter().any(|v| v.is_nan()));
    let used = (0..width)
        .filter(|f| (0..rows).any(|r| expected[r * (width + 1) + f] != 0.0))
        .count();
    assert!(used > 20, "only {used} features contribute");
}

#[test]
fn model_without_counts_cannot_explain() {
    // A one-split model written without internal_count and leaf_count.
    let text = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
        max_feature_idx=1\nobjective=binary sigmoid:1\nfeature_names=a b\n\nTree=0\n\
        num_leaves=2\nnum_cat=0\nsplit_feature=0\nsplit_gain=1\nthreshold=0.5\n\
        decision_type=10\nleft_child=-1\nright_child=-2\nleaf_value=-1 2\nshrinkage=1\n\n\n\
        end of trees\n";
    let model = TreeModel::parse(text).unwrap();
    assert!(model.contributions(&[0.0, 0.0]).is_err());
    let with_counts = text.replace(
        "shrinkage=1",
        "leaf_count=30 10\ninternal_count=40\nshrinkage=1",
    );
    let model = TreeModel::parse(&with_counts).unwrap();
    // Expected value: 0.75 * -1 + 0.25 * 2 = -0.25; the row goes left (-1),
    // so feature a contributes -0.75.
    let phi = model.contributions(&[0.0, 0.0]).unwrap();
    assert_eq!(phi, vec![-0.75, 0.0, -0.25]);
}
