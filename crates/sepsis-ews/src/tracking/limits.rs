//! MLflow's limits on names, values and `runs/log-batch` requests, and the
//! code that fits a run's data into them.
//!
//! The numbers are those of `mlflow/utils/validation.py` in MLflow 3.17 and
//! of the REST API reference of `runs/log-batch`. The local run store keeps
//! the original names and values, and only what is sent to the server changes.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use super::wire::{MetricBody, ParamBody, TagBody};

pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_PER_BATCH: usize = 100;
pub const MAX_TAGS_PER_BATCH: usize = 100;
/// Metrics, params and tags together in one `runs/log-batch` request.
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
/// Size of one `runs/log-batch` request body in bytes.
pub const MAX_BATCH_BYTES: usize = 1_000_000;
pub const MAX_PARAM_VALUE_CHARS: usize = 6000;
pub const MAX_TAG_VALUE_CHARS: usize = 8000;
/// Length of a metric, param or tag key.
pub const MAX_KEY_CHARS: usize = 250;

/// Bytes kept free in each batch for the request envelope (`run_id` and the
/// three array names).
const ENVELOPE_BYTES: usize = 200;

/// Rewrites a metric, param or tag key into one that MLflow accepts.
///
/// MLflow allows ASCII letters and digits, `_`, `-`, `.`, space, `:` and `/`
/// (its server also accepts non-ASCII letters, which are replaced here all the
/// same). Every other character becomes `_`, so `auroc(setB)` is sent as
/// `auroc_setB_` and `recall@0.5` as `recall_0.5`. MLflow also rejects keys
/// that change under path normalisation, so empty segments and `.` segments
/// are dropped and `..` segments become `__`. An empty result becomes `_`,
/// and a key longer than 250 characters is cut.
pub fn sanitize_key(key: &str) -> String {
    let mapped: String = key
        .chars()
        .map(|c| {
            let allowed =
                c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | ':' | '/');
            if allowed {
                c
            } else {
                '_'
            }
        })
        .collect();

    // Every character is ASCII now, so bytes and characters agree. Cutting
    // first is safe because the path clean-up below never lengthens a key.
    let mut mapped = mapped;
    mapped.truncate(MAX_KEY_CHARS);

    let segments: Vec<&str> = mapped
        .split('/')
        .filter(|segment| !segment.is_empty() && *segment != ".")
        .map(|segment| if segment == ".." { "__" } else { segment })
        .collect();
    let sanitized = segments.join("/");
    if sanitized.is_empty() {
        return "_".to_string();
    }
    sanitized
}

/// Cuts `value` to at most `max_chars` characters and reports whether it did.
pub fn truncate_chars(value: &str, max_chars: usize) -> (String, bool) {
    match value.char_indices().nth(max_chars) {
        Some((end, _)) => (value[..end].to_string(), true),
        None => (value.to_string(), false),
    }
}

/// Assigns server keys to original keys: [`sanitize_key`], plus a numeric
/// suffix when two different original keys would become the same key.
///
/// The same original key always gets the same server key, and the order of
/// first use decides which of two colliding keys gets the suffix, so a run
/// sent again gets the same keys.
#[derive(Debug, Default)]
pub struct KeyNamer {
    by_original: HashMap<String, String>,
    by_sanitized: HashMap<String, String>,
    renamed: usize,
}

impl KeyNamer {
    pub fn server_key(&mut self, original: &str) -> String {
        if let Some(known) = self.by_original.get(original) {
            return known.clone();
        }

        let base = sanitize_key(original);
        let mut candidate = base.clone();
        let mut suffix = 2;
        while self.by_sanitized.contains_key(&candidate) {
            let tail = format!("_{suffix}");
            let mut head = base.clone();
            head.truncate(MAX_KEY_CHARS - tail.len());
            candidate = format!("{head}{tail}");
            suffix += 1;
        }

        if candidate != original {
            self.renamed += 1;
        }
        self.by_sanitized
            .insert(candidate.clone(), original.to_string());
        self.by_original
            .insert(original.to_string(), candidate.clone());
        candidate
    }

    /// Returns how many distinct keys were changed.
    pub fn renamed(&self) -> usize {
        self.renamed
    }
}

/// The body of one `runs/log-batch` request, without `run_id`.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Batch {
    pub metrics: Vec<MetricBody>,
    pub params: Vec<ParamBody>,
    pub tags: Vec<TagBody>,
}

impl Batch {
    fn entities(&self) -> usize {
        self.metrics.len() + self.params.len() + self.tags.len()
    }
}

/// Splits params, tags and metrics into `runs/log-batch` bodies that keep
/// within MLflow's count and size limits, each kind in its original order.
///
/// Every batch takes params, then tags, then metrics until a limit is
/// reached, so the three kinds share batches and few requests are needed.
pub fn plan_batches(
    params: Vec<ParamBody>,
    tags: Vec<TagBody>,
    metrics: Vec<MetricBody>,
) -> Vec<Batch> {
    let mut params = VecDeque::from(params);
    let mut tags = VecDeque::from(tags);
    let mut metrics = VecDeque::from(metrics);

    let mut batches = Vec::new();
    while !(params.is_empty() && tags.is_empty() && metrics.is_empty()) {
        let mut batch = Batch::default();
        let mut bytes = 0;
        fill(
            &mut params,
            &mut batch.params,
            MAX_PARAMS_PER_BATCH,
            &mut bytes,
            0,
        );
        let entities = batch.entities();
        fill(
            &mut tags,
            &mut batch.tags,
            MAX_TAGS_PER_BATCH,
            &mut bytes,
            entities,
        );
        let entities = batch.entities();
        fill(
            &mut metrics,
            &mut batch.metrics,
            MAX_METRICS_PER_BATCH,
            &mut bytes,
            entities,
        );
        batches.push(batch);
    }
    batches
}

/// Moves items from the front of `queue` into `target` while the per-kind
/// limit, the entity limit (with `entities` already in the batch) and the
/// byte budget allow. An item too large for any batch goes alone into an
/// empty one, so the server reports it instead of the loop never ending.
fn fill<T: Serialize>(
    queue: &mut VecDeque<T>,
    target: &mut Vec<T>,
    kind_limit: usize,
    bytes: &mut usize,
    entities: usize,
) {
    while let Some(item) = queue.front() {
        let size = json_len(item);
        let in_batch = entities + target.len();
        let fits = target.len() < kind_limit
            && in_batch < MAX_ENTITIES_PER_BATCH
            && *bytes + size <= MAX_BATCH_BYTES - ENVELOPE_BYTES;
        if !fits && in_batch > 0 {
            return;
        }
        if let Some(item) = queue.pop_front() {
            target.push(item);
            *bytes += size;
        }
    }
}

/// Returns the serialised size of one array element, its comma included.
fn json_len(value: &impl Serialize) -> usize {
    serde_json::to_vec(value).map_or(0, |bytes| bytes.len()) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_key_replaces_forbidden_characters() {
        let cases = [
            ("auroc(setB)", "auroc_setB_"),
            ("recall@0.5", "recall_0.5"),
            ("auroc", "auroc"),
            ("eval/set A:auroc-1.0_x", "eval/set A:auroc-1.0_x"),
            ("utilité", "utilit_"),
            ("a+b=c", "a_b_c"),
        ];
        for (original, expected) in cases {
            assert_eq!(sanitize_key(original), expected, "{original}");
        }
    }

    #[test]
    fn sanitize_key_normalises_paths() {
        let cases = [
            ("/auroc", "auroc"),
            ("auroc/", "auroc"),
            ("a//b", "a/b"),
            ("a/./b", "a/b"),
            ("../secret", "__/secret"),
            (".", "_"),
            ("", "_"),
            ("///", "_"),
        ];
        for (original, expected) in cases {
            assert_eq!(sanitize_key(original), expected, "{original:?}");
        }
    }

    #[test]
    fn sanitize_key_cuts_long_keys() {
        let long = "k".repeat(400);
        assert_eq!(sanitize_key(&long).len(), MAX_KEY_CHARS);

        let slash_at_cut = format!("{}/{}", "a".repeat(MAX_KEY_CHARS - 1), "b".repeat(10));
        let sanitized = sanitize_key(&slash_at_cut);
        assert!(!sanitized.ends_with('/'), "{sanitized}");
    }

    #[test]
    fn key_namer_separates_colliding_keys() {
        let mut namer = KeyNamer::default();
        assert_eq!(namer.server_key("a(b)"), "a_b_");
        assert_eq!(namer.server_key("a_b_"), "a_b__2");
        assert_eq!(namer.server_key("a[b]"), "a_b__3");
        assert_eq!(namer.server_key("a(b)"), "a_b_");
        assert_eq!(namer.renamed(), 3);
    }

    #[test]
    fn truncate_chars_counts_characters() {
        assert_eq!(truncate_chars("abc", 5), ("abc".to_string(), false));
        assert_eq!(truncate_chars("abcdef", 3), ("abc".to_string(), true));
        assert_eq!(truncate_chars("ééé", 2), ("éé".to_string(), true));
    }

    fn params(count: usize, value_len: usize) -> Vec<ParamBody> {
        (0..count)
            .map(|i| ParamBody {
                key: format!("p{i}"),
                value: "v".repeat(value_len),
            })
            .collect()
    }

    fn tags(count: usize, value_len: usize) -> Vec<TagBody> {
        (0..count)
            .map(|i| TagBody {
                key: format!("t{i}"),
                value: "v".repeat(value_len),
            })
            .collect()
    }

    fn metrics(count: usize) -> Vec<MetricBody> {
        (0..count)
            .map(|i| MetricBody {
                key: format!("m{i}"),
                value: i as f64,
                timestamp: 1,
                step: 0,
            })
            .collect()
    }

    #[test]
    fn batches_respect_count_limits() {
        let batches = plan_batches(params(250, 1), tags(150, 1), metrics(2500));

        for batch in &batches {
            assert!(batch.params.len() <= MAX_PARAMS_PER_BATCH);
            assert!(batch.tags.len() <= MAX_TAGS_PER_BATCH);
            assert!(batch.metrics.len() <= MAX_METRICS_PER_BATCH);
            assert!(batch.entities() <= MAX_ENTITIES_PER_BATCH);
        }
        let total_params: usize = batches.iter().map(|b| b.params.len()).sum();
        let total_tags: usize = batches.iter().map(|b| b.tags.len()).sum();
        let total_metrics: usize = batches.iter().map(|b| b.metrics.len()).sum();
        assert_eq!(total_params, 250);
        assert_eq!(total_tags, 150);
        assert_eq!(total_metrics, 2500);
        // Three batches are the minimum for 250 params. Each contains 100 or
        // 50 params, up to 100 tags, and metrics up to 1000 entities.
        let sizes: Vec<(usize, usize, usize)> = batches
            .iter()
            .map(|b| (b.params.len(), b.tags.len(), b.metrics.len()))
            .collect();
        assert_eq!(sizes, [(100, 100, 800), (100, 50, 850), (50, 0, 850)]);
    }

    #[test]
    fn batches_respect_size_limit() {
        let batches = plan_batches(
            params(100, MAX_PARAM_VALUE_CHARS),
            tags(100, MAX_TAG_VALUE_CHARS),
            Vec::new(),
        );

        for batch in &batches {
            let body = serde_json::to_vec(batch).unwrap();
            assert!(body.len() + 64 <= MAX_BATCH_BYTES, "{} bytes", body.len());
        }
        let total: usize = batches.iter().map(Batch::entities).sum();
        assert_eq!(total, 200);
        assert!(batches.len() >= 2);
    }

    #[test]
    fn batches_keep_order_and_skip_empty() {
        assert!(plan_batches(Vec::new(), Vec::new(), Vec::new()).is_empty());

        let batches = plan_batches(params(3, 1), Vec::new(), metrics(2));
        assert_eq!(batches.len(), 1);
        let keys: Vec<&str> = batches[0].params.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["p0", "p1", "p2"]);
    }
}
