//! An evaluator of LightGBM text models (`model.txt`), in plain Rust.
//!
//! It is `Send + Sync`, unlike `lightgbm3::Booster`, so one parsed model can
//! serve many threads. It is also faster: batches go through the evaluator in
//! [`batch`], which walks several rows through each tree at once.
//!
//! It reproduces LightGBM 4's numerical decision rule (missing-value types,
//! default directions, `fval <= threshold`), sums the trees in model order in
//! f64 and turns the sum into the model's output with LightGBM's formula: the
//! sigmoid of the binary objective, or the exponential of the Poisson
//! objective, whose log link the `patient_and_onset` shape uses. Tests check
//! that its outputs equal LightGBM's bit for bit on real data. Categorical
//! splits, linear trees, multiclass models and other objectives are rejected
//! when parsing.

use crate::train::Matrix;

mod batch;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid LightGBM model text: {0}")]
    Invalid(String),
    #[error("unsupported LightGBM model: {0}")]
    Unsupported(String),
    #[error("the model expects {expected} features, the input has {actual}")]
    Width { expected: usize, actual: usize },
}

/// LightGBM treats values with magnitude at most this as zero. Its
/// `kZeroThreshold` is the float `1e-35f`, widened to double when compared.
const ZERO_THRESHOLD: f64 = 1e-35_f32 as f64;
const DEFAULT_LEFT_MASK: u8 = 2;
const CATEGORICAL_MASK: u8 = 1;

#[derive(Debug, Clone)]
struct Node {
    threshold: f64,
    feature: u32,
    /// A child index; a negative value `c` is leaf `!c`.
    left: i32,
    right: i32,
    /// The direction of a NaN value, resolved at parse time from the
    /// missing type: NaN-as-missing follows the default direction, and
    /// otherwise NaN is compared as 0.0.
    nan_left: bool,
    /// Zero-as-missing: values within ±1e-35 follow the default direction.
    zero_is_missing: bool,
    default_left: bool,
}

#[derive(Debug, Clone)]
struct Tree {
    nodes: Vec<Node>,
    leaf_values: Vec<f64>,
    /// Training rows that reached each split node and each leaf, which
    /// TreeSHAP weighs the branches by; empty when the model text has none.
    internal_counts: Vec<f64>,
    leaf_counts: Vec<f64>,
}

impl Tree {
    fn predict(&self, row: &[f32]) -> f64 {
        if self.nodes.is_empty() {
            return self.leaf_values[0];
        }
        let mut index = 0i32;
        while index >= 0 {
            let node = &self.nodes[index as usize];
            let go_left = decide_left(node, row[node.feature as usize]);
            index = if go_left { node.left } else { node.right };
        }
        self.leaf_values[!index as usize]
    }
}

/// LightGBM's `Tree::NumericalDecision`, with its NaN handling resolved
/// ahead of time into `nan_left`.
#[inline]
fn decide_left(node: &Node, value: f32) -> bool {
    if value.is_nan() {
        return node.nan_left;
    }
    let value = f64::from(value);
    if node.zero_is_missing && (-ZERO_THRESHOLD..=ZERO_THRESHOLD).contains(&value) {
        return node.default_left;
    }
    value <= node.threshold
}

/// The link of a model: the function from its raw score to its output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Link {
    /// The binary objective: `1 / (1 + exp(-sigmoid * raw))`.
    Logistic { sigmoid: f64 },
    /// The Poisson objective: `exp(raw)`. A model trained on 0/1 labels with
    /// it estimates a probability on the log scale.
    Log,
}

impl Link {
    /// Turns a raw score into the model's output with LightGBM's formula.
    pub fn apply(self, raw_score: f64) -> f64 {
        match self {
            Link::Logistic { sigmoid } => 1.0 / (1.0 + (-sigmoid * raw_score).exp()),
            Link::Log => raw_score.exp(),
        }
    }
}

/// A parsed LightGBM model with one output per row.
#[derive(Debug, Clone)]
pub struct TreeModel {
    trees: Vec<Tree>,
    /// The same trees laid out for batch evaluation.
    forest: batch::Forest,
    link: Link,
    feature_names: Vec<String>,
}

impl TreeModel {
    /// Parses LightGBM's text format, as written by `save_model` 4.x.
    pub fn parse(text: &str) -> Result<TreeModel, ModelError> {
        let invalid = |message: String| ModelError::Invalid(message);
        let mut lines = text.lines();
        let mut link = None;
        let mut feature_names = Vec::new();
        let mut num_class = 1;
        let mut listed_trees = None;

        for line in lines.by_ref() {
            if line.starts_with("Tree=") {
                break;
            }
            if let Some(objective) = line.strip_prefix("objective=") {
                let mut parts = objective.split_whitespace();
                link = Some(match parts.next() {
                    Some("binary") => {
                        let value = parts
                            .find_map(|p| p.strip_prefix("sigmoid:"))
                            .unwrap_or("1");
                        let sigmoid = value
                            .parse::<f64>()
                            .map_err(|_| invalid(format!("sigmoid {value:?} is not a number")))?;
                        Link::Logistic { sigmoid }
                    }
                    Some("poisson") => Link::Log,
                    _ => return Err(ModelError::Unsupported(format!("objective {objective:?}"))),
                });
            } else if let Some(names) = line.strip_prefix("feature_names=") {
                feature_names = names.split(' ').map(str::to_string).collect();
            } else if let Some(sizes) = line.strip_prefix("tree_sizes=") {
                listed_trees = Some(sizes.split_whitespace().count());
            } else if let Some(value) = line.strip_prefix("num_class=") {
                num_class = value.trim().parse::<usize>().unwrap_or(0);
            } else if line.starts_with("average_output") {
                return Err(ModelError::Unsupported("random-forest averaging".into()));
            }
        }
        if num_class != 1 {
            return Err(ModelError::Unsupported(format!("{num_class} classes")));
        }
        let link = link.ok_or_else(|| invalid("no objective line".into()))?;

        let mut trees = Vec::new();
        let mut fields: Vec<(&str, &str)> = Vec::new();
        let mut complete = false;
        for line in lines {
            let block_ends = line.starts_with("Tree=") || line.starts_with("end of trees");
            if block_ends {
                trees.push(parse_tree(&fields, trees.len(), feature_names.len())?);
                fields.clear();
                if line.starts_with("end of trees") {
                    complete = true;
                    break;
                }
            } else if let Some((key, value)) = line.split_once('=') {
                fields.push((key, value));
            }
        }
        if !complete {
            return Err(invalid(
                "the text ends before the `end of trees` line: the file is truncated".into(),
            ));
        }
        if trees.is_empty() {
            return Err(invalid("no trees".into()));
        }
        if let Some(listed) = listed_trees.filter(|listed| *listed != trees.len()) {
            return Err(invalid(format!(
                "the file holds {} trees but its tree_sizes line lists {listed}: the file is \
                 truncated or was edited",
                trees.len()
            )));
        }
        let forest = batch::Forest::new(&trees, feature_names.len())?;
        Ok(TreeModel {
            trees,
            forest,
            link,
            feature_names,
        })
    }

    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    pub fn num_trees(&self) -> usize {
        self.trees.len()
    }

    /// Returns the function from the model's raw score to its output.
    pub fn link(&self) -> Link {
        self.link
    }

    /// Computes the raw score of one row: a log-odds under the binary
    /// objective, a log-probability under the Poisson objective.
    pub fn raw_score(&self, row: &[f32]) -> f64 {
        let mut score = 0.0;
        for tree in &self.trees {
            score += tree.predict(row);
        }
        score
    }

    /// Computes the uncalibrated probability of one row, the output that
    /// LightGBM's `predict` gives. Under the Poisson objective it is an
    /// estimate on the log scale and can exceed 1 by a little, and the
    /// isotonic calibration maps it into [0, 1].
    pub fn probability(&self, row: &[f32]) -> f64 {
        self.to_probability(self.raw_score(row))
    }

    /// Turns a raw score into the model's output with LightGBM's formula.
    fn to_probability(&self, raw_score: f64) -> f64 {
        self.link.apply(raw_score)
    }

    /// Computes the probability of every row of a matrix, on all cores.
    pub fn predict(&self, matrix: &Matrix) -> Result<Vec<f64>, ModelError> {
        let width = self.feature_names.len();
        if matrix.width != width {
            return Err(ModelError::Width {
                expected: width,
                actual: matrix.width,
            });
        }
        Ok(self.predict_rows(&matrix.values[..matrix.rows() * width]))
    }

    /// Computes the probability of every row of row-major `values`, whose
    /// rows are as wide as the model's inputs. Batches of at least
    /// [`PARALLEL_ROWS`] rows are split over all cores. Smaller ones, such as
    /// the service's requests, run on the calling thread and start no thread.
    ///
    /// # Panics
    /// When `values` is not a whole number of rows.
    pub fn predict_rows(&self, values: &[f32]) -> Vec<f64> {
        let width = self.feature_names.len();
        assert_eq!(values.len() % width.max(1), 0, "values hold whole rows");
        let rows = values.len().checked_div(width).unwrap_or(0);
        let mut output = vec![0.0; rows];
        if rows < PARALLEL_ROWS {
            self.predict_row_block(values, width, &mut output);
            return output;
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let rows_per_thread = rows.div_ceil(threads);
        std::thread::scope(|scope| {
            for (chunk_index, chunk) in output.chunks_mut(rows_per_thread).enumerate() {
                let first = chunk_index * rows_per_thread;
                scope.spawn(move || {
                    let values = &values[first * width..(first + chunk.len()) * width];
                    self.predict_row_block(values, width, chunk);
                });
            }
        });
        output
    }

    /// Computes the probability of every row of feature columns, one column
    /// per model input in model order, each `output.len()` long. It runs on
    /// the calling thread.
    ///
    /// # Panics
    /// When the number of columns differs from the model's inputs, or a
    /// column's length from `output`'s.
    pub fn predict_columns(&self, columns: &[&[f32]], output: &mut [f64]) {
        assert_eq!(
            columns.len(),
            self.feature_names.len(),
            "one column per model input"
        );
        for (block, scores) in output.chunks_mut(batch::BLOCK_ROWS).enumerate() {
            let rows = block * batch::BLOCK_ROWS..block * batch::BLOCK_ROWS + scores.len();
            let inputs: Vec<&[f32]> = (self.forest.inputs().iter())
                .map(|feature| &columns[*feature][rows.clone()])
                .collect();
            scores.fill(0.0);
            self.forest.add_block(&inputs, scores);
            for score in scores.iter_mut() {
                *score = self.to_probability(*score);
            }
        }
    }
}

/// The batch size from which [`TreeModel::predict_rows`] uses every core.
/// Below it, starting threads costs more than it saves.
pub const PARALLEL_ROWS: usize = 4096;

impl TreeModel {
    /// Scores row-major rows on the calling thread, block by block: each
    /// block's columns are gathered first, as the batch evaluator reads them.
    fn predict_row_block(&self, values: &[f32], width: usize, out: &mut [f64]) {
        let mut scratch = Vec::new();
        for (block, scores) in out.chunks_mut(batch::BLOCK_ROWS).enumerate() {
            let rows = scores.len();
            let block_values = &values[block * batch::BLOCK_ROWS * width..];
            self.forest
                .transpose(block_values, width, rows, &mut scratch);
            let inputs: Vec<&[f32]> = scratch.chunks_exact(rows).collect();
            scores.fill(0.0);
            self.forest.add_block(&inputs, scores);
            for score in scores.iter_mut() {
                *score = self.to_probability(*score);
            }
        }
    }
}

fn parse_tree(fields: &[(&str, &str)], index: usize, width: usize) -> Result<Tree, ModelError> {
    let invalid = |message: String| ModelError::Invalid(format!("tree {index}: {message}"));
    let field = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let numbers = |name: &str| -> Result<Vec<f64>, ModelError> {
        let Some(text) = field(name) else {
            return Err(invalid(format!("missing {name}")));
        };
        text.split(' ')
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|_| invalid(format!("{name} has a non-number {v:?}")))
            })
            .collect()
    };

    if field("is_linear").is_some_and(|v| v != "0") {
        return Err(ModelError::Unsupported("linear trees".into()));
    }
    if field("num_cat").is_some_and(|v| v != "0") {
        return Err(ModelError::Unsupported("categorical splits".into()));
    }
    let leaf_values = numbers("leaf_value")?;
    let num_leaves: usize = field("num_leaves")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| invalid("missing num_leaves".into()))?;
    if leaf_values.len() != num_leaves || num_leaves == 0 {
        return Err(invalid("leaf_value does not match num_leaves".into()));
    }
    if num_leaves == 1 {
        return Ok(Tree {
            nodes: Vec::new(),
            leaf_values,
            internal_counts: Vec::new(),
            leaf_counts: Vec::new(),
        });
    }

    let features = numbers("split_feature")?;
    let thresholds = numbers("threshold")?;
    let decision_types = numbers("decision_type")?;
    let lefts = numbers("left_child")?;
    let rights = numbers("right_child")?;
    let splits = num_leaves - 1;
    for (name, values) in [
        ("split_feature", &features),
        ("threshold", &thresholds),
        ("decision_type", &decision_types),
        ("left_child", &lefts),
        ("right_child", &rights),
    ] {
        if values.len() != splits {
            return Err(invalid(format!(
                "{name} has {} values, expected {splits}",
                values.len()
            )));
        }
    }

    // LightGBM numbers split nodes in creation order, so an internal child
    // always has a larger index than its parent. Requiring that rules out
    // cycles, which would make prediction loop forever.
    let child = |parent: usize, value: f64| -> Result<i32, ModelError> {
        let child = value as i32;
        let valid = if child >= 0 {
            (child as usize) < splits && child as usize > parent
        } else {
            ((!child) as usize) < num_leaves
        };
        if valid {
            Ok(child)
        } else {
            Err(invalid(format!("child {value} out of range")))
        }
    };
    let mut nodes = Vec::with_capacity(splits);
    for i in 0..splits {
        let decision = decision_types[i] as u8;
        if decision & CATEGORICAL_MASK != 0 {
            return Err(ModelError::Unsupported("categorical splits".into()));
        }
        let default_left = decision & DEFAULT_LEFT_MASK != 0;
        // LightGBM's missing types: 0 none, 1 zero, 2 NaN. Without the NaN
        // type a NaN becomes 0.0, which under the zero type is missing too.
        let (nan_left, zero_is_missing) = match (decision >> 2) & 3 {
            0 => (0.0 <= thresholds[i], false),
            1 => (default_left, true),
            2 => (default_left, false),
            other => return Err(invalid(format!("unknown missing type {other}"))),
        };
        let feature = features[i] as usize;
        if feature >= width {
            return Err(invalid(format!("split on feature {feature} of {width}")));
        }
        nodes.push(Node {
            threshold: thresholds[i],
            feature: feature as u32,
            left: child(i, lefts[i])?,
            right: child(i, rights[i])?,
            nan_left,
            zero_is_missing,
            default_left,
        });
    }
    // The counts only weigh explanations, so a model without them still
    // scores; `TreeModel::contributions` reports their absence.
    let counts = |name: &str, expected: usize| {
        numbers(name)
            .ok()
            .filter(|values| values.len() == expected)
            .unwrap_or_default()
    };
    let internal_counts = counts("internal_count", splits);
    let leaf_counts = counts("leaf_count", num_leaves);
    Ok(Tree {
        nodes,
        leaf_values,
        internal_counts,
        leaf_counts,
    })
}

/// One step of the feature path that TreeSHAP follows from the root.
#[derive(Debug, Clone, Copy, Default)]
struct PathElement {
    /// The split feature, or -1 for the root's placeholder.
    feature: i64,
    /// The share of training rows that reach this point along the path.
    zero_fraction: f64,
    /// 1 when the row itself follows the path, else 0.
    one_fraction: f64,
    /// The permutation weight of the subsets of this size.
    weight: f64,
}

impl TreeModel {
    /// Computes each feature's contribution to the raw score of one row with
    /// TreeSHAP, as LightGBM's `predict_contrib` does. The
    /// result has one value per feature and then the expected raw score, so
    /// it sums to [`TreeModel::raw_score`].
    ///
    /// The code follows LightGBM 4's `Tree::PredictContrib` step by step, in
    /// the same order of floating-point operations; a test compares it with
    /// LightGBM on real rows. A model whose text lacks the node counts
    /// (`internal_count`, `leaf_count`) cannot be explained.
    pub fn contributions(&self, row: &[f32]) -> Result<Vec<f64>, ModelError> {
        let width = self.feature_names.len();
        if row.len() != width {
            return Err(ModelError::Width {
                expected: width,
                actual: row.len(),
            });
        }
        let mut phi = vec![0.0; width + 1];
        let mut path = Vec::new();
        for tree in &self.trees {
            phi[width] += tree.expected_value()?;
            if tree.nodes.is_empty() {
                continue;
            }
            let depth = tree.max_depth();
            path.clear();
            path.resize((depth + 1) * (depth + 2) / 2, PathElement::default());
            tree.shap(row, &mut phi, &mut path, 0, 0, 0, 1.0, 1.0, -1);
        }
        Ok(phi)
    }
}

impl Tree {
    /// Computes the mean raw output over the training rows, LightGBM's `ExpectedValue`.
    fn expected_value(&self) -> Result<f64, ModelError> {
        if self.nodes.is_empty() {
            return Ok(self.leaf_values[0]);
        }
        if self.internal_counts.is_empty() || self.leaf_counts.is_empty() {
            return Err(ModelError::Unsupported(
                "the model text has no node counts (internal_count, leaf_count), \
                 which explanations need"
                    .into(),
            ));
        }
        let total = self.internal_counts[0];
        let mut expected = 0.0;
        for (count, value) in self.leaf_counts.iter().zip(&self.leaf_values) {
            expected += (count / total) * value;
        }
        Ok(expected)
    }

    /// Returns the depth of the shallowest leaf, the root being at depth 0.
    fn min_depth(&self) -> usize {
        // As in `max_depth`, one pass in index order visits every parent first.
        let mut depths = vec![0usize; self.nodes.len()];
        let mut shallowest = usize::MAX;
        for (index, node) in self.nodes.iter().enumerate() {
            let child_depth = depths[index] + 1;
            for child in [node.left, node.right] {
                if child >= 0 {
                    depths[child as usize] = child_depth;
                } else {
                    shallowest = shallowest.min(child_depth);
                }
            }
        }
        if shallowest == usize::MAX {
            0
        } else {
            shallowest
        }
    }

    /// Returns the depth of the deepest leaf, the root being at depth 0.
    fn max_depth(&self) -> usize {
        // A child always has a larger index than its parent, checked when
        // parsing, so one pass in index order visits every parent first.
        let mut depths = vec![0usize; self.nodes.len()];
        let mut deepest = 0;
        for (index, node) in self.nodes.iter().enumerate() {
            let child_depth = depths[index] + 1;
            deepest = deepest.max(child_depth);
            for child in [node.left, node.right] {
                if child >= 0 {
                    depths[child as usize] = child_depth;
                }
            }
        }
        deepest
    }

    fn count(&self, node: i32) -> f64 {
        if node >= 0 {
            self.internal_counts[node as usize]
        } else {
            self.leaf_counts[!node as usize]
        }
    }

    /// LightGBM's recursive `Tree::TreeSHAP`. The path of the current node
    /// lives at `path[start..]`, where `start` is the parent's start plus
    /// the parent's depth, so each level keeps its own copy of the path.
    #[allow(clippy::too_many_arguments)]
    fn shap(
        &self,
        row: &[f32],
        phi: &mut [f64],
        path: &mut [PathElement],
        parent_start: usize,
        node: i32,
        depth: usize,
        parent_zero_fraction: f64,
        parent_one_fraction: f64,
        parent_feature: i64,
    ) {
        let start = parent_start + depth;
        if depth > 0 {
            path.copy_within(parent_start..parent_start + depth, start);
        }
        let unique = &mut path[start..];
        extend_path(
            unique,
            depth,
            parent_zero_fraction,
            parent_one_fraction,
            parent_feature,
        );

        if node < 0 {
            let leaf_value = self.leaf_values[!node as usize];
            for i in 1..=depth {
                let weight = unwound_path_sum(unique, depth, i);
                let element = unique[i];
                phi[element.feature as usize] +=
                    weight * (element.one_fraction - element.zero_fraction) * leaf_value;
            }
            return;
        }

        let split = &self.nodes[node as usize];
        let hot = if decide_left(split, row[split.feature as usize]) {
            split.left
        } else {
            split.right
        };
        let cold = if hot == split.left {
            split.right
        } else {
            split.left
        };
        let reached = self.count(node);
        let hot_zero_fraction = self.count(hot) / reached;
        let cold_zero_fraction = self.count(cold) / reached;
        let mut incoming_zero_fraction = 1.0;
        let mut incoming_one_fraction = 1.0;

        // A feature already split on higher up is taken out of the path and
        // put back with this node's fractions.
        let feature = i64::from(split.feature);
        let mut depth = depth;
        if let Some(index) = (0..=depth).find(|i| unique[*i].feature == feature) {
            incoming_zero_fraction = unique[index].zero_fraction;
            incoming_one_fraction = unique[index].one_fraction;
            unwind_path(unique, depth, index);
            depth -= 1;
        }

        self.shap(
            row,
            phi,
            path,
            start,
            hot,
            depth + 1,
            hot_zero_fraction * incoming_zero_fraction,
            incoming_one_fraction,
            feature,
        );
        self.shap(
            row,
            phi,
            path,
            start,
            cold,
            depth + 1,
            cold_zero_fraction * incoming_zero_fraction,
            0.0,
            feature,
        );
    }
}

/// LightGBM's `Tree::ExtendPath`.
fn extend_path(
    path: &mut [PathElement],
    depth: usize,
    zero_fraction: f64,
    one_fraction: f64,
    feature: i64,
) {
    path[depth] = PathElement {
        feature,
        zero_fraction,
        one_fraction,
        weight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let size = (depth + 1) as f64;
    for i in (0..depth).rev() {
        path[i + 1].weight += one_fraction * path[i].weight * (i + 1) as f64 / size;
        path[i].weight = zero_fraction * path[i].weight * (depth - i) as f64 / size;
    }
}

/// LightGBM's `Tree::UnwindPath`: removes element `index` from the path.
fn unwind_path(path: &mut [PathElement], depth: usize, index: usize) {
    let one_fraction = path[index].one_fraction;
    let zero_fraction = path[index].zero_fraction;
    let mut next_one_portion = path[depth].weight;
    let size = (depth + 1) as f64;
    for i in (0..depth).rev() {
        if one_fraction != 0.0 {
            let kept = path[i].weight;
            path[i].weight = next_one_portion * size / ((i + 1) as f64 * one_fraction);
            next_one_portion = kept - path[i].weight * zero_fraction * (depth - i) as f64 / size;
        } else {
            path[i].weight = (path[i].weight * size) / (zero_fraction * (depth - i) as f64);
        }
    }
    for i in index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero_fraction = path[i + 1].zero_fraction;
        path[i].one_fraction = path[i + 1].one_fraction;
    }
}

/// LightGBM's `Tree::UnwoundPathSum`: the total weight of the path with
/// element `index` taken out, without changing it.
fn unwound_path_sum(path: &[PathElement], depth: usize, index: usize) -> f64 {
    let one_fraction = path[index].one_fraction;
    let zero_fraction = path[index].zero_fraction;
    let mut next_one_portion = path[depth].weight;
    let size = (depth + 1) as f64;
    let mut total = 0.0;
    for i in (0..depth).rev() {
        if one_fraction != 0.0 {
            let part = next_one_portion * size / ((i + 1) as f64 * one_fraction);
            total += part;
            next_one_portion = path[i].weight - part * zero_fraction * ((depth - i) as f64 / size);
        } else {
            total += (path[i].weight / zero_fraction) / ((depth - i) as f64 / size);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-leaf stump on feature 0 at 0.5 with NaN going left, and a
    /// constant tree, in LightGBM's text layout.
    const STUMP: &str = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\n\
        label_index=0\nmax_feature_idx=1\nobjective=binary sigmoid:1\n\
        feature_names=a b\n\nTree=0\nnum_leaves=2\nnum_cat=0\nsplit_feature=0\n\
        split_gain=1\nthreshold=0.5\ndecision_type=10\nleft_child=-1\nright_child=-2\n\
        leaf_value=-1 2\nshrinkage=1\n\n\nTree=1\nnum_leaves=1\nnum_cat=0\n\
        leaf_value=0.25\nshrinkage=1\n\n\nend of trees\n";

    #[test]
    fn stump_follows_threshold_and_missing() {
        let model = TreeModel::parse(STUMP).unwrap();
        assert_eq!(model.num_trees(), 2);
        assert_eq!(model.raw_score(&[0.5, 0.0]), -0.75);
        assert_eq!(model.raw_score(&[0.6, 0.0]), 2.25);
        // decision_type 10 = default left (2) + NaN missing type (2 << 2).
        assert_eq!(model.raw_score(&[f32::NAN, 0.0]), -0.75);
        let p = model.probability(&[0.6, 0.0]);
        assert_eq!(p, 1.0 / (1.0 + (-2.25f64).exp()));
    }

    #[test]
    fn poisson_output_is_exp_of_raw() {
        let model = TreeModel::parse(&STUMP.replace("binary sigmoid:1", "poisson")).unwrap();
        assert_eq!(model.link(), Link::Log);
        assert_eq!(model.probability(&[0.6, 0.0]), 2.25f64.exp());
        assert_eq!(model.predict_rows(&[0.5, 0.0]), vec![(-0.75f64).exp()]);
    }

    #[test]
    fn other_objectives_are_rejected() {
        for objective in ["regression", "cross_entropy", "multiclass num_class:3"] {
            let text = STUMP.replace("binary sigmoid:1", objective);
            assert!(
                matches!(TreeModel::parse(&text), Err(ModelError::Unsupported(_))),
                "{objective}"
            );
        }
    }

    #[test]
    fn nan_without_nan_type_is_zero() {
        // decision_type 0: no missing type, so NaN is treated as 0.0 <= 0.5.
        let text = STUMP.replace("decision_type=10", "decision_type=0");
        let model = TreeModel::parse(&text).unwrap();
        assert_eq!(model.raw_score(&[f32::NAN, 0.0]), -0.75);
    }

    #[test]
    fn cyclic_tree_is_rejected() {
        // Node 0 pointing to itself would loop forever in prediction.
        let text = STUMP.replace("left_child=-1", "left_child=0");
        assert!(matches!(
            TreeModel::parse(&text),
            Err(ModelError::Invalid(_))
        ));
    }

    #[test]
    fn truncated_model_is_rejected() {
        // Cut inside the second tree, and at a tree boundary.
        let cut = STUMP.find("leaf_value=0.25").unwrap();
        let boundary = STUMP.find("Tree=1").unwrap();
        for text in [&STUMP[..cut], &STUMP[..boundary]] {
            let error = TreeModel::parse(text).unwrap_err().to_string();
            assert!(error.contains("truncated"), "{error}");
        }
        // A tree_sizes line listing more trees than the file holds, as when a
        // whole tree block was cut out.
        let sized = STUMP.replace(
            "feature_names=a b\n",
            "feature_names=a b\ntree_sizes=10 10 10\n",
        );
        let error = TreeModel::parse(&sized).unwrap_err().to_string();
        assert!(error.contains("tree_sizes line lists 3"), "{error}");
        let listed = STUMP.replace(
            "feature_names=a b\n",
            "feature_names=a b\ntree_sizes=10 10\n",
        );
        assert_eq!(TreeModel::parse(&listed).unwrap().num_trees(), 2);
    }

    #[test]
    fn categorical_model_is_rejected() {
        let text = STUMP.replace("decision_type=10", "decision_type=1");
        assert!(matches!(
            TreeModel::parse(&text),
            Err(ModelError::Unsupported(_))
        ));
    }

    #[test]
    fn multiclass_model_is_rejected() {
        let text = STUMP
            .replace("num_class=1", "num_class=3")
            .replace("objective=binary sigmoid:1", "objective=binary");
        assert!(TreeModel::parse(&text).is_err());
    }

    #[test]
    fn batch_scores_equal_row_scores() {
        let model = TreeModel::parse(STUMP).unwrap();
        // One batch below the threading threshold and one above it.
        for rows in [3, PARALLEL_ROWS + 5] {
            let values: Vec<f32> = (0..rows * 2)
                .map(|i| match i % 7 {
                    0 => f32::NAN,
                    k => k as f32 / 6.0,
                })
                .collect();
            let batch = model.predict_rows(&values);
            assert_eq!(batch.len(), rows);
            for (row, score) in batch.iter().enumerate() {
                let single = model.probability(&values[row * 2..row * 2 + 2]);
                assert_eq!(score.to_bits(), single.to_bits(), "row {row} of {rows}");
            }
        }
    }

    #[test]
    fn width_mismatch_is_an_error() {
        let model = TreeModel::parse(STUMP).unwrap();
        let matrix = Matrix {
            values: vec![0.0; 3],
            labels: vec![0.0],
            width: 3,
        };
        assert!(matches!(
            model.predict(&matrix),
            Err(ModelError::Width {
                expected: 2,
                actual: 3
            })
        ));
    }
}
