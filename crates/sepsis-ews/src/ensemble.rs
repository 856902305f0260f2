//! Sums or averages LightGBM text models into one text model.
//!
//! Cross-fitting trains one booster per fold. Their mean raw score is again a
//! sum of trees: every tree of every booster, with its leaf values divided by
//! the number of boosters. The `patient_and_onset` shape adds the raw scores
//! of its two boosters, which keeps the leaf values as they are. The result
//! is an ordinary LightGBM text model, so Python LightGBM, the service and
//! this crate's evaluator load it as they load any other.

use std::fmt::Write as _;

#[derive(Debug, thiserror::Error)]
#[error("cannot merge LightGBM models: {0}")]
pub struct EnsembleError(String);

/// One model text, cut into the parts that averaging treats differently.
struct Parts<'a> {
    /// The lines before the first tree, without `tree_sizes`.
    header: Vec<&'a str>,
    feature_infos: Vec<&'a str>,
    /// Each tree's lines after its `Tree=` line, up to the blank lines.
    trees: Vec<Vec<&'a str>>,
    importances: Vec<(&'a str, u64)>,
    /// From `parameters:` to the end.
    parameters: &'a str,
}

fn parts(text: &str, index: usize) -> Result<Parts<'_>, EnsembleError> {
    let invalid = |message: &str| EnsembleError(format!("model {index}: {message}"));
    let trees_end = text
        .find("\nend of trees")
        .ok_or_else(|| invalid("no `end of trees` line"))?;
    let first_tree = text[..trees_end]
        .find("\nTree=")
        .ok_or_else(|| invalid("no trees"))?;

    let mut header = Vec::new();
    let mut feature_infos = Vec::new();
    for line in text[..first_tree].lines() {
        if let Some(infos) = line.strip_prefix("feature_infos=") {
            feature_infos = infos.split(' ').collect();
        }
        if !line.starts_with("tree_sizes=") && !line.is_empty() {
            header.push(line);
        }
    }

    let mut trees: Vec<Vec<&str>> = Vec::new();
    for line in text[first_tree..trees_end].lines() {
        if line.starts_with("Tree=") {
            trees.push(Vec::new());
        } else if !line.is_empty() {
            trees
                .last_mut()
                .expect("the block starts at a Tree= line")
                .push(line);
        }
    }

    let tail = &text[trees_end..];
    let parameters_start = tail.find("\nparameters:").map_or(tail.len(), |p| p + 1);
    let mut importances = Vec::new();
    let mut in_importances = false;
    for line in tail[..parameters_start].lines() {
        if line == "feature_importances:" {
            in_importances = true;
        } else if in_importances {
            if let Some((name, count)) = line.split_once('=') {
                let count = count
                    .parse()
                    .map_err(|_| invalid(&format!("invalid feature importance {line:?}")))?;
                importances.push((name, count));
            }
        }
    }

    Ok(Parts {
        header,
        feature_infos,
        trees,
        importances,
        parameters: &tail[parameters_start..],
    })
}

/// Returns one model text whose raw score is the mean of the models' raw
/// scores. The models must have the same header lines (objective, feature
/// names and so on), apart from `feature_infos` and `tree_sizes`.
pub fn average(models: &[String]) -> Result<String, EnsembleError> {
    combine(models, 1.0 / models.len().max(1) as f64)
}

/// Returns one model text whose raw score is the sum of the models' raw
/// scores, under the same conditions as [`average`]. The parameters section
/// is the first model's.
pub fn sum(models: &[String]) -> Result<String, EnsembleError> {
    combine(models, 1.0)
}

/// Concatenates the models' trees, each leaf value multiplied by `scale`.
fn combine(models: &[String], scale: f64) -> Result<String, EnsembleError> {
    let split: Vec<Parts> = models
        .iter()
        .enumerate()
        .map(|(index, text)| parts(text, index))
        .collect::<Result<_, _>>()?;
    let Some(first) = split.first() else {
        return Err(EnsembleError("no models".into()));
    };
    let same_header = |p: &Parts| {
        let without_infos = |h: &[&str]| -> Vec<String> {
            h.iter()
                .filter(|l| !l.starts_with("feature_infos="))
                .map(|l| l.to_string())
                .collect()
        };
        without_infos(&p.header) == without_infos(&first.header)
            && p.feature_infos.len() == first.feature_infos.len()
    };
    if let Some(index) = split.iter().position(|p| !same_header(p)) {
        return Err(EnsembleError(format!(
            "model {index} has other header lines than model 0"
        )));
    }

    let mut blocks = Vec::new();
    for part in &split {
        for tree in &part.trees {
            let mut block = format!("Tree={}\n", blocks.len());
            for line in tree {
                match line.split_once('=') {
                    Some((key @ ("leaf_value" | "internal_value"), values)) if scale != 1.0 => {
                        let scaled = scale_numbers(values, scale)
                            .ok_or_else(|| EnsembleError(format!("invalid number in {key}")))?;
                        let _ = writeln!(block, "{key}={scaled}");
                    }
                    _ => {
                        block.push_str(line);
                        block.push('\n');
                    }
                }
            }
            block.push_str("\n\n");
            blocks.push(block);
        }
    }

    let mut text = String::new();
    for line in &first.header {
        if line.starts_with("feature_infos=") {
            let infos = merged_infos(&split)?;
            let _ = writeln!(text, "feature_infos={infos}");
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    let sizes: Vec<String> = blocks.iter().map(|b| b.len().to_string()).collect();
    let _ = writeln!(text, "tree_sizes={}\n", sizes.join(" "));
    for block in &blocks {
        text.push_str(block);
    }
    text.push_str("end of trees\n\nfeature_importances:\n");
    for (name, count) in merged_importances(&split) {
        let _ = writeln!(text, "{name}={count}");
    }
    text.push('\n');
    text.push_str(first.parameters);
    Ok(text)
}

fn scale_numbers(values: &str, scale: f64) -> Option<String> {
    // LightGBM writes `internal_value=` empty for a tree with one leaf.
    if values.is_empty() {
        return Some(String::new());
    }
    let scaled: Option<Vec<String>> = values
        .split(' ')
        .map(|v| v.parse::<f64>().ok().map(|x| format!("{:?}", x * scale)))
        .collect();
    scaled.map(|s| s.join(" "))
}

/// Merges each feature's value range over all the models into `[min:max]`,
/// or `none` when no model saw a value.
fn merged_infos(split: &[Parts]) -> Result<String, EnsembleError> {
    let width = split[0].feature_infos.len();
    let mut merged = Vec::with_capacity(width);
    for feature in 0..width {
        let mut range: Option<(f64, f64)> = None;
        for part in split {
            let info = part.feature_infos[feature];
            if info == "none" {
                continue;
            }
            let bounds = info
                .strip_prefix('[')
                .and_then(|i| i.strip_suffix(']'))
                .and_then(|i| i.split_once(':'))
                .and_then(|(lo, hi)| Some((lo.parse::<f64>().ok()?, hi.parse::<f64>().ok()?)))
                .ok_or_else(|| EnsembleError(format!("invalid feature_infos entry {info:?}")))?;
            range = Some(match range {
                None => bounds,
                Some((lo, hi)) => (lo.min(bounds.0), hi.max(bounds.1)),
            });
        }
        merged.push(match range {
            None => "none".to_string(),
            Some((lo, hi)) => format!("[{lo:?}:{hi:?}]"),
        });
    }
    Ok(merged.join(" "))
}

/// Sums the split counts over the models and sorts them, largest first, with
/// ties in the order the features first appear.
fn merged_importances<'a>(split: &[Parts<'a>]) -> Vec<(&'a str, u64)> {
    let mut totals: Vec<(&str, u64)> = Vec::new();
    for part in split {
        for (name, count) in &part.importances {
            match totals.iter_mut().find(|(n, _)| n == name) {
                Some((_, total)) => *total += count,
                None => totals.push((name, *count)),
            }
        }
    }
    totals.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    totals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TreeModel;

    fn stump(threshold: f64, left: f64, right: f64, infos: &str) -> String {
        format!(
            "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
             max_feature_idx=1\nobjective=binary sigmoid:1\nfeature_names=a b\n\
             feature_infos={infos}\ntree_sizes=1\n\nTree=0\nnum_leaves=2\nnum_cat=0\n\
             split_feature=0\nsplit_gain=1\nthreshold={threshold}\ndecision_type=2\n\
             left_child=-1\nright_child=-2\nleaf_value={left} {right}\nleaf_weight=1 1\n\
             leaf_count=5 5\ninternal_value=0.5\ninternal_weight=2\ninternal_count=10\n\
             is_linear=0\nshrinkage=1\n\n\nend of trees\n\nfeature_importances:\na=1\n\n\
             parameters:\n[boosting: gbdt]\nend of parameters\n\npandas_categorical:null\n"
        )
    }

    #[test]
    fn averaged_model_scores_the_mean_log_odds() {
        let models = vec![
            stump(1.0, -1.0, 2.0, "[0:3] none"),
            stump(2.0, 0.5, 1.5, "[-1:2] [4:5]"),
        ];
        let merged = average(&models).unwrap();
        let parsed = TreeModel::parse(&merged).unwrap();
        assert_eq!(parsed.num_trees(), 2);
        let singles: Vec<TreeModel> = models
            .iter()
            .map(|m| TreeModel::parse(m).unwrap())
            .collect();
        for x in [0.0_f32, 1.5, 3.0, f32::NAN] {
            let row = [x, 0.0];
            let mean = singles.iter().map(|m| m.raw_score(&row)).sum::<f64>() / 2.0;
            assert_eq!(parsed.raw_score(&row), mean, "x = {x}");
        }
        assert!(
            merged.contains("feature_infos=[-1.0:3.0] [4.0:5.0]\n"),
            "{merged}"
        );
        assert!(merged.contains("feature_importances:\na=2\n"), "{merged}");
        assert!(merged.contains("\nTree=1\n"), "{merged}");
    }

    #[test]
    fn sum_keeps_leaf_values() {
        let models = vec![
            stump(1.0, -1.0, 2.0, "[0:3] none"),
            stump(2.0, 0.5, 1.5, "[-1:2] [4:5]"),
        ];
        let merged = sum(&models).unwrap();
        let parsed = TreeModel::parse(&merged).unwrap();
        for x in [0.0_f32, 1.5, 3.0, f32::NAN] {
            let row = [x, 0.0];
            let total: f64 = models
                .iter()
                .map(|m| TreeModel::parse(m).unwrap().raw_score(&row))
                .sum();
            assert_eq!(parsed.raw_score(&row), total, "x = {x}");
        }
        assert!(merged.contains("leaf_value=-1 2\n"), "{merged}");
        assert!(merged.contains("leaf_value=0.5 1.5\n"), "{merged}");
    }

    #[test]
    fn one_leaf_trees_are_averaged() {
        // LightGBM writes a one-leaf tree with empty split and internal lists.
        let one_leaf = stump(1.0, 0.0, 0.0, "none none").replace(
            "num_leaves=2\nnum_cat=0\nsplit_feature=0\nsplit_gain=1\nthreshold=1\n\
             decision_type=2\nleft_child=-1\nright_child=-2\nleaf_value=0 0\n\
             leaf_weight=1 1\nleaf_count=5 5\ninternal_value=0.5\ninternal_weight=2\n\
             internal_count=10\n",
            "num_leaves=1\nnum_cat=0\nsplit_feature=\nsplit_gain=\nthreshold=\n\
             decision_type=\nleft_child=\nright_child=\nleaf_value=-3\nleaf_weight=\n\
             leaf_count=\ninternal_value=\ninternal_weight=\ninternal_count=\n",
        );
        assert!(one_leaf.contains("num_leaves=1"), "{one_leaf}");
        let merged = average(&[one_leaf, stump(1.0, -1.0, 1.0, "[0:3] none")]).unwrap();
        let parsed = TreeModel::parse(&merged).unwrap();
        assert_eq!(parsed.raw_score(&[0.0, 0.0]), -2.0);
        assert_eq!(parsed.raw_score(&[2.0, 0.0]), -1.0);
        assert!(merged.contains("leaf_value=-1.5\n"), "{merged}");
    }

    #[test]
    fn tree_sizes_measure_each_block() {
        let models = vec![stump(1.0, -1.0, 2.0, "[0:3] none"); 3];
        let merged = average(&models).unwrap();
        let sizes: Vec<usize> = merged
            .lines()
            .find_map(|l| l.strip_prefix("tree_sizes="))
            .unwrap()
            .split(' ')
            .map(|s| s.parse().unwrap())
            .collect();
        let mut start = merged.find("Tree=0").unwrap();
        for (index, size) in sizes.iter().enumerate() {
            assert!(merged[start..].starts_with(&format!("Tree={index}\n")));
            start += size;
        }
        assert!(merged[start..].starts_with("end of trees"));
    }

    #[test]
    fn other_feature_names_are_rejected() {
        let other =
            stump(1.0, 0.0, 0.0, "none none").replace("feature_names=a b", "feature_names=a c");
        let error = average(&[stump(1.0, 0.0, 0.0, "none none"), other])
            .unwrap_err()
            .to_string();
        assert!(error.contains("model 1 has other header lines"), "{error}");
    }
}
