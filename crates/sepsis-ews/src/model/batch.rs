//! The batch evaluator behind [`TreeModel::predict_rows`] and
//! [`TreeModel::predict_columns`].
//!
//! A walk down one tree is a chain of dependent loads: the node, then the
//! row's value of the node's feature, then the next node. One row at a time,
//! the CPU waits on each load and mispredicts many of the turns. This
//! evaluator walks [`LANES`] rows through the same tree in lockstep, so their
//! chains overlap, and picks each child with arithmetic instead of a branch.
//! It reads the rows column by column, a block of [`BLOCK_ROWS`] rows at a
//! time, so the few columns that one tree reads stay in the L1 cache while the
//! tree runs over the block.
//!
//! The decision rule is [`super::decide_left`] in single precision, which
//! chooses the same child for every input value (see [`threshold_f32`]).
//!
//! [`TreeModel::predict_rows`]: super::TreeModel::predict_rows
//! [`TreeModel::predict_columns`]: super::TreeModel::predict_columns

use super::{ModelError, Tree, ZERO_THRESHOLD};

/// Rows walked through a tree in lockstep.
const LANES: usize = 8;
/// Rows per block.
pub(super) const BLOCK_ROWS: usize = 256;

/// [`ZERO_THRESHOLD`] in single precision. LightGBM's `kZeroThreshold` is the
/// float `1e-35f`, so this is exact, and for every f32 `v`,
/// `(-ZERO_THRESHOLD..=ZERO_THRESHOLD).contains(&f64::from(v))` is true
/// exactly when `v.abs() <= ZERO_THRESHOLD_F32` is, because widening is exact
/// and keeps the order.
const ZERO_THRESHOLD_F32: f32 = ZERO_THRESHOLD as f32;

/// Bits of [`FlatNode::input`] above the input index.
const MISSING_LEFT: u32 = 1 << 31;
const ZERO_IS_MISSING: u32 = 1 << 30;
const INPUT_MASK: u32 = ZERO_IS_MISSING - 1;

/// A node in 16 bytes. A leaf is a node whose children are itself, whose
/// threshold is +∞ and whose missing values go left, so a lane that has
/// reached its leaf stays there while the other lanes walk on.
#[derive(Debug, Clone, Copy)]
struct FlatNode {
    /// The largest f32 at most the split's f64 threshold.
    threshold: f32,
    /// The position of the split feature in [`Forest::inputs`], with the
    /// [`MISSING_LEFT`] and [`ZERO_IS_MISSING`] flags in the top bits.
    input: u32,
    left: u32,
    right: u32,
}

impl FlatNode {
    /// Returns the child that `value` goes to, as [`super::decide_left`]
    /// decides, without a branch. A missing value is a NaN, and under
    /// zero-as-missing also a value within ±1e-35. It follows
    /// [`MISSING_LEFT`], which the parser resolved from LightGBM's missing
    /// type: the default direction, or NaN compared as 0.0 when the split has
    /// no missing type. `ZERO_AS_MISSING` false skips the zero test, for
    /// forests without such splits.
    #[inline(always)]
    fn next<const ZERO_AS_MISSING: bool>(&self, value: f32) -> u32 {
        let missing_left = self.input & MISSING_LEFT != 0;
        // `value <= threshold` is false for NaN, which goes by the flag.
        let mut left = (value <= self.threshold) | (missing_left & value.is_nan());
        if ZERO_AS_MISSING {
            let zero = (self.input & ZERO_IS_MISSING != 0) & (value.abs() <= ZERO_THRESHOLD_F32);
            left = (left & !zero) | (zero & missing_left);
        }
        if left {
            self.left
        } else {
            self.right
        }
    }

    fn input(&self) -> usize {
        (self.input & INPUT_MASK) as usize
    }
}

/// One tree's place in [`Forest::nodes`]: its split nodes come first, from
/// the root, then its leaves.
#[derive(Debug, Clone, Copy)]
struct FlatTree {
    root: u32,
    /// The index of the first leaf.
    first_leaf: u32,
    /// The depth of the shallowest leaf: every lane walks at least this many
    /// steps before any can have reached its leaf.
    min_depth: u32,
}

/// Every tree of a model laid out for batch evaluation.
#[derive(Debug, Clone, Default)]
pub(super) struct Forest {
    trees: Vec<FlatTree>,
    nodes: Vec<FlatNode>,
    /// The output of each node; 0 for split nodes.
    values: Vec<f64>,
    /// The model inputs that some split reads, ascending. A node's input
    /// index points into this list, so a block holds only these columns.
    inputs: Vec<usize>,
    /// Whether any split treats zero as missing.
    zero_as_missing: bool,
}

impl Forest {
    /// Lays out the trees. Fails when the model needs more than 2^30 inputs
    /// or 2^32 nodes, which the 16-byte node cannot address.
    pub(super) fn new(trees: &[Tree], width: usize) -> Result<Forest, ModelError> {
        let mut used = vec![false; width];
        for node in trees.iter().flat_map(|t| &t.nodes) {
            used[node.feature as usize] = true;
        }
        let inputs: Vec<usize> = (0..width).filter(|f| used[*f]).collect();
        if inputs.len() > INPUT_MASK as usize {
            return Err(ModelError::Unsupported(format!(
                "{} features used by splits; at most {INPUT_MASK} are supported",
                inputs.len()
            )));
        }
        let mut position = vec![0u32; width];
        for (index, feature) in inputs.iter().enumerate() {
            position[*feature] = index as u32;
        }

        let mut forest = Forest {
            inputs,
            ..Forest::default()
        };
        for tree in trees {
            forest.push_tree(tree, &position)?;
        }
        Ok(forest)
    }

    fn push_tree(&mut self, tree: &Tree, position: &[u32]) -> Result<(), ModelError> {
        let total = self.nodes.len() + tree.nodes.len() + tree.leaf_values.len();
        if u32::try_from(total).is_err() {
            return Err(ModelError::Unsupported(format!(
                "{total} tree nodes; at most {} are supported",
                u32::MAX
            )));
        }
        let root = self.nodes.len() as u32;
        let first_leaf = root + tree.nodes.len() as u32;
        // Children in the parsed tree: `c >= 0` is split node `c`, and a
        // negative `c` is leaf `!c`.
        let flat_index = |child: i32| match child {
            c if c >= 0 => root + c as u32,
            c => first_leaf + !c as u32,
        };
        for node in &tree.nodes {
            let mut input = position[node.feature as usize];
            if node.nan_left {
                input |= MISSING_LEFT;
            }
            if node.zero_is_missing {
                input |= ZERO_IS_MISSING;
                self.zero_as_missing = true;
            }
            self.nodes.push(FlatNode {
                threshold: threshold_f32(node.threshold),
                input,
                left: flat_index(node.left),
                right: flat_index(node.right),
            });
            self.values.push(0.0);
        }
        for (leaf, value) in tree.leaf_values.iter().enumerate() {
            let index = first_leaf + leaf as u32;
            self.nodes.push(FlatNode {
                threshold: f32::INFINITY,
                input: MISSING_LEFT,
                left: index,
                right: index,
            });
            self.values.push(*value);
        }
        self.trees.push(FlatTree {
            root: if tree.nodes.is_empty() {
                first_leaf
            } else {
                root
            },
            first_leaf,
            min_depth: tree.min_depth() as u32,
        });
        Ok(())
    }

    /// Returns the model inputs that some split reads, ascending: the
    /// columns that [`Forest::add_block`] reads.
    pub(super) fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    /// Adds the raw output of every tree to the score of each row of a
    /// block, tree by tree in model order, so each row's sum adds the trees
    /// in the order LightGBM does. `columns` holds the block's values of each
    /// of [`Forest::inputs`], one per score.
    pub(super) fn add_block(&self, columns: &[&[f32]], scores: &mut [f64]) {
        assert_eq!(columns.len(), self.inputs.len(), "one column per input");
        assert!(
            columns.iter().all(|c| c.len() == scores.len()),
            "every column has one value per row"
        );
        if self.zero_as_missing {
            self.add_trees::<true>(columns, scores);
        } else {
            self.add_trees::<false>(columns, scores);
        }
    }

    fn add_trees<const ZERO_AS_MISSING: bool>(&self, columns: &[&[f32]], scores: &mut [f64]) {
        let rows = scores.len();
        for tree in &self.trees {
            let mut start = 0;
            while start + LANES <= rows {
                let leaves = self.walk::<LANES, ZERO_AS_MISSING>(tree, columns, start);
                for (score, leaf) in scores[start..start + LANES].iter_mut().zip(leaves) {
                    *score += self.values[leaf as usize];
                }
                start += LANES;
            }
            for (row, score) in scores.iter_mut().enumerate().skip(start) {
                let [leaf] = self.walk::<1, ZERO_AS_MISSING>(tree, columns, row);
                *score += self.values[leaf as usize];
            }
        }
    }

    /// Walks rows `start..start + N` of the block down one tree and returns
    /// the node index of each row's leaf.
    #[inline(always)]
    fn walk<const N: usize, const ZERO_AS_MISSING: bool>(
        &self,
        tree: &FlatTree,
        columns: &[&[f32]],
        start: usize,
    ) -> [u32; N] {
        let mut index = [tree.root; N];
        for _ in 0..tree.min_depth {
            self.step::<N, ZERO_AS_MISSING>(columns, start, &mut index);
        }
        while index.iter().any(|i| *i < tree.first_leaf) {
            self.step::<N, ZERO_AS_MISSING>(columns, start, &mut index);
        }
        index
    }

    /// Moves each lane one node down.
    #[inline(always)]
    fn step<const N: usize, const ZERO_AS_MISSING: bool>(
        &self,
        columns: &[&[f32]],
        start: usize,
        index: &mut [u32; N],
    ) {
        for (lane, index) in index.iter_mut().enumerate() {
            // SAFETY: `push_tree` stores only roots and children below
            // `nodes.len()`, and input indices below `inputs.len()`, which
            // `add_block` checked equals `columns.len()`. `start + lane` is a
            // row of the block, and `add_block` checked that every column is
            // `scores.len()` long.
            let (node, value) = unsafe {
                let node = self.nodes.get_unchecked(*index as usize);
                let column = columns.get_unchecked(node.input());
                (node, *column.get_unchecked(start + lane))
            };
            *index = node.next::<ZERO_AS_MISSING>(value);
        }
    }

    /// Gathers a block of row-major `values` into `scratch`, one column per
    /// input of [`Forest::inputs`], each `rows` long.
    pub(super) fn transpose(
        &self,
        values: &[f32],
        width: usize,
        rows: usize,
        scratch: &mut Vec<f32>,
    ) {
        scratch.clear();
        scratch.resize(self.inputs.len() * rows, 0.0);
        for (row, values) in values.chunks_exact(width).take(rows).enumerate() {
            for (index, feature) in self.inputs.iter().enumerate() {
                scratch[index * rows + row] = values[*feature];
            }
        }
    }
}

/// Returns the largest f32 that is at most `threshold`, so that a split can
/// compare in single precision.
///
/// For every f32 `v`, `f64::from(v) <= threshold` is true exactly when
/// `v <= threshold_f32(threshold)` is. Let `t` be the result. If
/// `v <= t`, then `f64::from(v) <= f64::from(t) <= threshold`, because
/// widening is exact and keeps the order. If `f64::from(v) <= threshold`,
/// then `v` is an f32 at most `threshold`, and `t` is the largest of those,
/// so `v <= t`. A NaN `v` fails both comparisons. The largest such f32
/// exists for every threshold: below `-f32::MAX` it is -∞, and from
/// `f32::MAX` up to but excluding +∞ it is `f32::MAX`. A NaN threshold gives
/// NaN, which fails every comparison on both sides as well.
pub(super) fn threshold_f32(threshold: f64) -> f32 {
    // Rounding to nearest lands on the largest f32 below or the smallest
    // above, and `as` rounds an out-of-range value to ±∞.
    let rounded = threshold as f32;
    if f64::from(rounded) > threshold {
        rounded.next_down()
    } else {
        rounded
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::model::{TreeModel, PARALLEL_ROWS};

    /// Single-precision values around `x`: itself, its neighbours and the
    /// neighbours' neighbours.
    fn around(x: f32) -> [f32; 5] {
        [
            x,
            x.next_up(),
            x.next_down(),
            x.next_up().next_up(),
            x.next_down().next_down(),
        ]
    }

    #[test]
    fn threshold_f32_keeps_every_comparison() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let tiny = f64::from(f32::from_bits(1));
        let mut thresholds = vec![
            0.0,
            -0.0,
            ZERO_THRESHOLD,
            -ZERO_THRESHOLD,
            1e-35,
            tiny,
            tiny / 2.0,
            -tiny / 2.0,
            f64::from(f32::MIN_POSITIVE),
            0.1,
            1.0 / 3.0,
            -2.5,
            f64::from(f32::MAX),
            f64::from(f32::MAX) * 1.5,
            -f64::from(f32::MAX) * 1.5,
            f64::MAX,
            f64::MIN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ];
        for _ in 0..2000 {
            // Thresholds at, just above and just below an f32, and anywhere.
            let base = f64::from(f32::from_bits(rng.random::<u32>()));
            thresholds.extend([base, base.next_up(), base.next_down()]);
            thresholds.push(f64::from_bits(rng.random::<u64>()));
        }
        for threshold in thresholds {
            let narrow = threshold_f32(threshold);
            let mut values = vec![
                0.0,
                -0.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
                f32::MAX,
                f32::MIN,
            ];
            values.extend(around(narrow));
            values.extend(around(threshold as f32));
            values.extend(around(ZERO_THRESHOLD_F32));
            values.extend(around(-ZERO_THRESHOLD_F32));
            values.extend((0..20).map(|_| f32::from_bits(rng.random::<u32>())));
            for value in values {
                assert_eq!(
                    f64::from(value) <= threshold,
                    value <= narrow,
                    "value {value:e} against threshold {threshold:e} (narrowed {narrow:e})"
                );
            }
        }
    }

    /// Builds a random tree in LightGBM's text layout. Leaves are split in
    /// random order as LightGBM grows them: the new split node takes the
    /// leaf's place, its left child keeps the leaf's number and its right
    /// child is a new leaf.
    fn random_tree(rng: &mut ChaCha8Rng, index: usize, width: usize, pool: &[f64]) -> String {
        let leaves = rng.random_range(1..=20);

        // The split node each leaf hangs from, and whether it is the left
        // child. The root leaf hangs from none.
        let mut parents: Vec<Option<(usize, bool)>> = vec![None];
        let mut lefts: Vec<i64> = Vec::new();
        let mut rights: Vec<i64> = Vec::new();
        for new_leaf in 1..leaves {
            let leaf = rng.random_range(0..new_leaf);
            let node = lefts.len();
            if let Some((parent, is_left)) = parents[leaf] {
                let slot = if is_left { &mut lefts } else { &mut rights };
                slot[parent] = node as i64;
            }
            lefts.push(!(leaf as i64));
            rights.push(!(new_leaf as i64));
            parents[leaf] = Some((node, true));
            parents.push(Some((node, false)));
        }

        let splits = lefts.len();
        let join = |values: Vec<String>| values.join(" ");
        let leaf_values = join(
            (0..leaves)
                .map(|_| format!("{:e}", rng.random_range(-1.0..1.0)))
                .collect(),
        );
        if splits == 0 {
            return format!("Tree={index}\nnum_leaves=1\nnum_cat=0\nleaf_value={leaf_values}\nshrinkage=1\n\n\n");
        }

        // Missing types none, zero and NaN, each with both default directions.
        let decision_types = [0, 2, 4, 6, 8, 10];
        format!(
            "Tree={index}\nnum_leaves={leaves}\nnum_cat=0\nsplit_feature={}\nsplit_gain={}\n\
             threshold={}\ndecision_type={}\nleft_child={}\nright_child={}\nleaf_value={}\n\
             shrinkage=1\n\n\n",
            join(
                (0..splits)
                    .map(|_| rng.random_range(0..width).to_string())
                    .collect()
            ),
            join((0..splits).map(|_| "1".to_string()).collect()),
            join(
                (0..splits)
                    .map(|_| format!("{:e}", pool[rng.random_range(0..pool.len())]))
                    .collect()
            ),
            join(
                (0..splits)
                    .map(|_| decision_types[rng.random_range(0..decision_types.len())].to_string())
                    .collect()
            ),
            join(lefts.iter().map(i64::to_string).collect()),
            join(rights.iter().map(i64::to_string).collect()),
            leaf_values,
        )
    }

    #[test]
    fn batch_matches_rows_on_random_forests() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let width = 6;
        // Thresholds that f32 cannot hold, ones it can, zero and the edges
        // of LightGBM's zero band.
        let mut thresholds: Vec<f64> = (0..40).map(|_| rng.random_range(-3.0..3.0)).collect();
        thresholds.extend((0..20).map(|_| f64::from(rng.random_range(-3.0f32..3.0))));
        thresholds.extend([0.0, 1e-35, -1e-35, ZERO_THRESHOLD, 1e-40, -1e-40]);
        let mut values: Vec<f32> = vec![f32::NAN, 0.0, -0.0, 1e-36, -1e-36, 1e-30];
        for threshold in &thresholds {
            values.extend(around(threshold_f32(*threshold)));
        }
        values.extend(around(ZERO_THRESHOLD_F32));
        values.extend(around(-ZERO_THRESHOLD_F32));

        let names: Vec<String> = (0..width).map(|i| format!("f{i}")).collect();
        let mut text = format!(
            "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
             max_feature_idx={}\nobjective=binary sigmoid:1\nfeature_names={}\n\n",
            width - 1,
            names.join(" ")
        );
        for index in 0..60 {
            text.push_str(&random_tree(&mut rng, index, width, &thresholds));
        }
        text.push_str("end of trees\n");
        let model = TreeModel::parse(&text).unwrap();

        // More rows than the threading threshold, and not a whole number of
        // blocks or lanes.
        let rows = PARALLEL_ROWS + 3 * BLOCK_ROWS + LANES / 2 + 1;
        let matrix: Vec<f32> = (0..rows * width)
            .map(|_| values[rng.random_range(0..values.len())])
            .collect();
        let batch = model.predict_rows(&matrix);
        let columns: Vec<Vec<f32>> = (0..width)
            .map(|feature| {
                matrix
                    .iter()
                    .skip(feature)
                    .step_by(width)
                    .copied()
                    .collect()
            })
            .collect();
        let column_refs: Vec<&[f32]> = columns.iter().map(Vec::as_slice).collect();
        let mut from_columns = vec![0.0; rows];
        model.predict_columns(&column_refs, &mut from_columns);
        for (row, values) in matrix.chunks_exact(width).enumerate() {
            let single = model.probability(values);
            assert_eq!(batch[row].to_bits(), single.to_bits(), "row {row}, rows");
            assert_eq!(
                from_columns[row].to_bits(),
                single.to_bits(),
                "row {row}, columns"
            );
        }
    }
}
