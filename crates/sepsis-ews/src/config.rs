//! Pipeline configuration: `config/config.yaml`, then `SEPSIS__SECTION__KEY`
//! environment variables, then command-line overrides, each layer winning over
//! the one before it.
//!
//! Loading goes through two stages. [`RawConfig`] mirrors the YAML file and is
//! what `figment` deserialises into, with unknown keys rejected so a typo fails
//! loudly. [`Config::check`] then turns it into a checked [`Config`], so a bad
//! value (a negative learning rate, a validation fraction of 1.5) never reaches
//! training. Every error names the dotted key it is about.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Yaml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The configuration file shipped in the repository, embedded so that the
/// binary works from any directory.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../../../config/config.yaml");

/// The schema path the embedded configuration names.
const DEFAULT_SCHEMA_PATH: &str = "config/schema.yaml";

/// Prefix of the environment variables that override configuration keys, as
/// in `SEPSIS__TRAINING__LEARNING_RATE=0.1`.
pub const ENV_PREFIX: &str = "SEPSIS__";

/// The maximum feature window or delta: one week.
const MAX_WINDOW_HOURS: u32 = 168;

/// The largest request body the service may be configured to accept: 1 GiB.
const MAX_SERVE_BODY_BYTES: u64 = 1 << 30;

/// The shortest interval between two reads of the production pointer.
const MIN_POLL_INTERVAL_MS: u64 = 100;

/// The largest drift window: about 45 bytes per row, so 45 MB at most.
const MAX_DRIFT_WINDOW_ROWS: u32 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} could not be read")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A key has the wrong type or is unknown; `figment` names the key and the
    /// source (file or environment variable) in its message.
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: {key} = {value}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("invalid command-line override {0:?}: expected KEY=VALUE, for example training.num_leaves=63")]
    Override(String),
}

/// The configuration as written in YAML, before any value is checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub storage: StorageConfig,
    pub layout: LayoutConfig,
    pub data: DataConfig,
    pub split: SplitConfig,
    pub features: FeatureConfig,
    pub training: TrainingConfig,
    pub alert: AlertConfig,
    pub registry: RegistryConfig,
    pub logging: LoggingConfig,
    pub serve: ServeConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `file:///abs/dir`, a plain directory path, `s3://bucket/prefix` or `memory://`.
    pub uri: String,
    /// Use `https://bucket.host/` addressing instead of path-style `https://host/bucket/`.
    #[serde(default)]
    pub s3_virtual_hosted_style: bool,
}

/// Names of the five top-level folders of the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LayoutConfig {
    pub raw_data: String,
    pub processed_data: String,
    pub feature_store: String,
    pub artifacts: String,
    pub model_registry: String,
}

impl Default for LayoutConfig {
    fn default() -> Self {
        LayoutConfig {
            raw_data: "raw-data".into(),
            processed_data: "processed-data".into(),
            feature_store: "feature-store".into(),
            artifacts: "artifacts".into(),
            model_registry: "model-registry".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Column schema; when absent, the schema embedded in the binary is used.
    #[serde(default)]
    pub schema: Option<PathBuf>,
    /// Input used by `sepsis pipeline` when `--data` is not given.
    pub default_input: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    pub seed: u64,
    pub validation_fraction: f64,
}

/// The method that up-weights the rare positive class during training.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Imbalance {
    /// LightGBM's `scale_pos_weight` = negative rows / positive rows.
    ScalePosWeight,
    /// Per-row weights: positives get negative rows / positive rows, negatives 1.
    SampleWeights,
    /// No re-weighting.
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    pub num_iterations: u32,
    pub num_leaves: u32,
    pub learning_rate: f64,
    pub max_bin: u32,
    pub min_data_in_leaf: u32,
    pub feature_fraction: f64,
    pub bagging_fraction: f64,
    pub bagging_freq: u32,
    pub lambda_l2: f64,
    /// LightGBM's `extra_trees`: each split tries one random threshold per
    /// feature, which regularises the trees.
    #[serde(default)]
    pub extra_trees: bool,
    /// Cross-fitting folds. With 2 or more, the fit and calibration patients
    /// together are cut into this many folds, and one booster is fitted
    /// without each fold and scores it. The calibration and the alert rule are
    /// chosen on those out-of-fold scores, and the model is the boosters' mean.
    /// With 1, the booster is fitted on the fit patients and calibrated on
    /// the calibration patients.
    #[serde(default = "one_fold")]
    pub folds: u32,
    /// The boosters and what each learns.
    #[serde(default)]
    pub shape: ModelShape,
    /// The tree size of the onset booster of `patient_and_onset`. Its other
    /// settings are the patient booster's.
    #[serde(default)]
    pub onset: OnsetConfig,
    pub seed: u64,
    /// OpenMP threads for LightGBM; 0 lets LightGBM use every core.
    pub num_threads: u32,
    pub imbalance: Imbalance,
    /// The LightGBM histogram mode. A fixed mode keeps training deterministic,
    /// which LightGBM's automatic choice does not promise.
    pub histogram: Histogram,
}

fn one_fold() -> u32 {
    1
}

/// The model's shape: the boosters and what each learns. Either way the
/// saved model is one LightGBM text model. The shipped configuration chooses
/// `patient_and_onset`. `Default` gives `one_booster`, the shape of every
/// model trained before the setting existed, so that their model cards read.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ModelShape {
    /// One binary booster learns the 12-hour label on every hour. Its raw
    /// score is a log-odds.
    #[default]
    OneBooster,
    /// Two boosters with a log link, whose trees are summed into one model.
    /// The patient booster learns, from every hour, whether the patient
    /// becomes septic. The onset booster learns `SepsisLabel` from the septic
    /// patients' hours alone. The raw score is the sum of their logs, the log
    /// of the product of the two probabilities, and LightGBM's output for it is
    /// that product.
    PatientAndOnset,
}

/// The tree size of the onset booster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnsetConfig {
    pub num_leaves: u32,
    pub min_data_in_leaf: u32,
}

impl Default for OnsetConfig {
    fn default() -> OnsetConfig {
        OnsetConfig {
            num_leaves: 7,
            min_data_in_leaf: 200,
        }
    }
}

/// The maximum of `training.folds`.
pub const MAX_FOLDS: u32 = 20;

/// LightGBM 4's largest `num_leaves`.
const MAX_LEAVES: u32 = 131_072;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Histogram {
    /// `force_row_wise`: faster with many rows and few features.
    RowWise,
    /// `force_col_wise`: faster with many features or many threads.
    ColWise,
}

/// The history features of each hourly measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureConfig {
    /// Rolling windows, in hours, for the mean, min, max and standard deviation.
    pub windows_hours: Vec<u32>,
    /// Hours back for the change of the last value.
    pub delta_hours: u32,
}

/// The alert policy: the threshold is chosen on calibration patients held out
/// of training, as the one with the best utility that keeps both promises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// Maximum alerts per patient-day, where an alert counts when it switches on.
    pub max_alerts_per_patient_day: f64,
    /// Minimum share of alerted patients who are septic.
    pub min_patient_precision: f64,
    /// Share of the training patients held out to calibrate the probabilities
    /// and choose the threshold.
    pub calibration_fraction: f64,
    /// Hours an alert stays on after the last hour at or above the threshold;
    /// the policy tries each and keeps the best.
    pub hold_hours: Vec<u32>,
}

/// The model registry and the gate that decides whether a new model
/// replaces production.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The registered model: versions live under `model-registry/<name>/`.
    pub model_name: String,
    pub gate: GateConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// The measure compared with production, on the validation patients.
    pub metric: GateMetric,
    /// Minimum gain of the candidate over production for a promotion.
    pub min_improvement: f64,
    /// Least values the first model must reach to become production.
    #[serde(default)]
    pub minimums: std::collections::BTreeMap<GateMetric, f64>,
}

/// A validation measure the gate can compare; higher is better for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateMetric {
    /// PhysioNet 2019 normalised utility.
    Utility,
    /// AUROC against the 12-hour training label.
    Auroc,
    Auprc,
    /// AUROC against the challenge's `SepsisLabel`.
    AurocSepsisLabel,
    AuprcSepsisLabel,
    /// Share of septic patients alerted in the 12 hours before onset.
    SepticAlertedInTime,
}

impl GateMetric {
    /// Every measure, in the order of the configuration's documentation.
    pub const ALL: [GateMetric; 6] = [
        GateMetric::Utility,
        GateMetric::Auroc,
        GateMetric::Auprc,
        GateMetric::AurocSepsisLabel,
        GateMetric::AuprcSepsisLabel,
        GateMetric::SepticAlertedInTime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GateMetric::Utility => "utility",
            GateMetric::Auroc => "auroc",
            GateMetric::Auprc => "auprc",
            GateMetric::AurocSepsisLabel => "auroc_sepsis_label",
            GateMetric::AuprcSepsisLabel => "auprc_sepsis_label",
            GateMetric::SepticAlertedInTime => "septic_alerted_in_time",
        }
    }
}

impl std::fmt::Display for GateMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// Folder of the daily rolling log file; an empty string disables the file.
    pub dir: PathBuf,
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info` or `sepsis_ews=debug`.
    pub level: String,
}

/// The prediction service, `sepsis serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// The address and port the service listens on.
    pub addr: std::net::SocketAddr,
    /// Largest request body, in bytes.
    pub max_body_bytes: u64,
    /// Most hourly rows in one prediction request: flat rows, or the
    /// observations of all patients together.
    pub max_batch: u32,
    /// Time a request may take, in milliseconds, before the service returns 408.
    pub request_timeout_ms: u64,
    /// How often the service reads the production pointer, in milliseconds.
    pub poll_interval_ms: u64,
    /// Feature contributions returned per result when a request sets
    /// `explain` without `top_k`.
    pub top_k: u32,
    /// Most recent scored rows the drift gauges are computed over.
    pub drift_window_rows: u32,
    /// Rows the drift window needs before the service reports a PSI.
    pub drift_min_rows: u32,
}

/// The checked configuration. Construct it with [`Config::load`].
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub storage: StorageConfig,
    pub layout: LayoutConfig,
    pub data: DataConfig,
    pub split: SplitConfig,
    pub features: FeatureConfig,
    pub training: TrainingConfig,
    pub alert: AlertConfig,
    pub registry: RegistryConfig,
    pub logging: LoggingConfig,
    pub serve: ServeConfig,
}

/// The configuration sources, in increasing precedence.
#[derive(Debug, Default, Clone)]
pub struct ConfigSources {
    /// A YAML file; `None` means the embedded default configuration.
    pub file: Option<PathBuf>,
    /// Whether `SEPSIS__…` environment variables apply (tests turn this off).
    pub read_env: bool,
    /// `KEY=VALUE` pairs with dotted keys, from command-line flags.
    pub overrides: Vec<(String, String)>,
}

impl Config {
    /// Loads and checks the configuration from its layered sources.
    pub fn load(sources: &ConfigSources) -> Result<Config, ConfigError> {
        // The embedded defaults come first, so a file needs only the keys it changes.
        let mut figment = Figment::from(Yaml::string(DEFAULT_CONFIG_YAML));
        figment = match &sources.file {
            Some(path) => {
                // Check first that the file exists, because figment alone
                // treats a missing file as empty.
                let metadata = std::fs::metadata(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                // figment reads a folder as an empty file too.
                if metadata.is_dir() {
                    return Err(ConfigError::Read {
                        path: path.clone(),
                        source: std::io::Error::other("it is a folder; give a YAML file"),
                    });
                }
                figment.merge(Yaml::file(path))
            }
            None => figment,
        };
        if sources.read_env {
            figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        }
        for (key, value) in &sources.overrides {
            // An override is YAML, so numbers and booleans keep their types;
            // an empty value is the empty string rather than YAML's null.
            let value: serde_yaml::Value = match value.as_str() {
                "" => serde_yaml::Value::String(String::new()),
                text => serde_yaml::from_str(text)
                    .unwrap_or_else(|_| serde_yaml::Value::String(text.to_string())),
            };
            figment = figment.merge(CommandLine(Serialized::default(key.as_str(), value)));
        }
        let raw: RawConfig = figment
            .extract()
            .map_err(|error| ConfigError::Parse(describe_figment_error(error)))?;
        let mut config = Config::check(raw)?;
        // The embedded configuration names the repository's schema file; away
        // from a checkout, the identical schema embedded in the binary is used.
        let default_schema = Path::new(DEFAULT_SCHEMA_PATH);
        let schema_is_default = config.data.schema.as_deref() == Some(default_schema);
        if sources.file.is_none() && schema_is_default && !default_schema.exists() {
            config.data.schema = None;
        }
        Ok(config)
    }

    /// Checks every value that has a valid range.
    pub fn check(raw: RawConfig) -> Result<Config, ConfigError> {
        let t = &raw.training;
        ensure(
            (1..=MAX_FOLDS).contains(&t.folds),
            "training.folds",
            t.folds,
            "must be between 1 and 20",
        )?;
        ensure(
            t.num_iterations >= 1,
            "training.num_iterations",
            t.num_iterations,
            "must be at least 1",
        )?;
        ensure(
            (2..=MAX_LEAVES).contains(&t.num_leaves),
            "training.num_leaves",
            t.num_leaves,
            "must be between 2 and 131072",
        )?;
        ensure(
            (2..=MAX_LEAVES).contains(&t.onset.num_leaves),
            "training.onset.num_leaves",
            t.onset.num_leaves,
            "must be between 2 and 131072",
        )?;
        ensure(
            t.shape == ModelShape::OneBooster || t.imbalance != Imbalance::ScalePosWeight,
            "training.imbalance",
            "scale_pos_weight",
            "is a setting of the binary objective and applies to training.shape one_booster \
             only; use sample_weights or none",
        )?;
        ensure(
            t.learning_rate > 0.0 && t.learning_rate <= 1.0,
            "training.learning_rate",
            t.learning_rate,
            "must be greater than 0 and at most 1: it shrinks each tree's contribution",
        )?;
        ensure(
            t.max_bin >= 2,
            "training.max_bin",
            t.max_bin,
            "must be at least 2",
        )?;
        ensure(
            t.feature_fraction > 0.0 && t.feature_fraction <= 1.0,
            "training.feature_fraction",
            t.feature_fraction,
            "must be in (0, 1]",
        )?;
        ensure(
            t.bagging_fraction > 0.0 && t.bagging_fraction <= 1.0,
            "training.bagging_fraction",
            t.bagging_fraction,
            "must be in (0, 1]",
        )?;
        ensure(
            t.lambda_l2 >= 0.0 && t.lambda_l2.is_finite(),
            "training.lambda_l2",
            t.lambda_l2,
            "must be zero or positive",
        )?;
        let fraction = raw.split.validation_fraction;
        ensure(
            fraction > 0.0 && fraction < 1.0,
            "split.validation_fraction",
            fraction,
            "must be strictly between 0 and 1",
        )?;
        let features = &raw.features;
        ensure(
            !features.windows_hours.is_empty(),
            "features.windows_hours",
            "[]",
            "must list at least one window",
        )?;
        for window in &features.windows_hours {
            ensure(
                (1..=MAX_WINDOW_HOURS).contains(window),
                "features.windows_hours",
                window,
                "each window must be between 1 and 168 hours",
            )?;
        }
        let mut distinct = features.windows_hours.clone();
        distinct.sort_unstable();
        distinct.dedup();
        ensure(
            distinct.len() == features.windows_hours.len(),
            "features.windows_hours",
            format!("{:?}", features.windows_hours),
            "must not list a window twice",
        )?;
        ensure(
            (1..=MAX_WINDOW_HOURS).contains(&features.delta_hours),
            "features.delta_hours",
            features.delta_hours,
            "must be between 1 and 168 hours",
        )?;
        let alert = &raw.alert;
        ensure(
            alert.max_alerts_per_patient_day > 0.0 && alert.max_alerts_per_patient_day.is_finite(),
            "alert.max_alerts_per_patient_day",
            alert.max_alerts_per_patient_day,
            "must be a positive number",
        )?;
        ensure(
            (0.0..=1.0).contains(&alert.min_patient_precision),
            "alert.min_patient_precision",
            alert.min_patient_precision,
            "must be between 0 and 1",
        )?;
        ensure(
            !alert.hold_hours.is_empty() && alert.hold_hours.iter().all(|h| *h <= 168),
            "alert.hold_hours",
            format!("{:?}", alert.hold_hours),
            "must list at least one hold, each at most 168 hours",
        )?;
        ensure(
            alert.calibration_fraction > 0.0 && alert.calibration_fraction < 1.0,
            "alert.calibration_fraction",
            alert.calibration_fraction,
            "must be strictly between 0 and 1",
        )?;
        ensure(
            !raw.storage.uri.trim().is_empty(),
            "storage.uri",
            "\"\"",
            "must not be empty",
        )?;
        let gate = &raw.registry.gate;
        ensure(
            gate.min_improvement >= 0.0 && gate.min_improvement.is_finite(),
            "registry.gate.min_improvement",
            gate.min_improvement,
            "must be zero or a positive number",
        )?;
        ensure(
            gate.minimums.values().all(|v| v.is_finite()),
            "registry.gate.minimums",
            format!("{:?}", gate.minimums),
            "must be finite numbers",
        )?;
        // Every gate metric is at most 1. All but the utility are at least 0,
        // and the utility of a model that alerts badly can fall below 0. A
        // minimum outside that range could never be met, or always would be.
        for (metric, minimum) in &gate.minimums {
            let lowest = match metric {
                GateMetric::Utility => f64::NEG_INFINITY,
                _ => 0.0,
            };
            ensure(
                (lowest..=1.0).contains(minimum),
                "registry.gate.minimums",
                format!("{}: {minimum}", metric.name()),
                match metric {
                    GateMetric::Utility => "must be at most 1, the utility of a perfect model",
                    _ => "must be between 0 and 1",
                },
            )?;
        }
        let name = &raw.registry.model_name;
        ensure(
            !name.is_empty()
                && name.len() <= 100
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                && !name.starts_with('.'),
            "registry.model_name",
            format!("{name:?}"),
            "must be letters, digits, '-', '_' or '.', not starting with '.'",
        )?;
        let layout = &raw.layout;
        for (key, name) in [
            ("layout.raw_data", &layout.raw_data),
            ("layout.processed_data", &layout.processed_data),
            ("layout.feature_store", &layout.feature_store),
            ("layout.artifacts", &layout.artifacts),
            ("layout.model_registry", &layout.model_registry),
        ] {
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            ensure(
                valid,
                key,
                format!("{name:?}"),
                "must be one folder name of letters, digits, '-' or '_'",
            )?;
        }

        let serve = &raw.serve;
        ensure(
            (1..=MAX_SERVE_BODY_BYTES).contains(&serve.max_body_bytes),
            "serve.max_body_bytes",
            serve.max_body_bytes,
            "must be between 1 and 1073741824 bytes (1 GiB)",
        )?;
        ensure(
            serve.max_batch >= 1,
            "serve.max_batch",
            serve.max_batch,
            "must be at least 1",
        )?;
        ensure(
            serve.request_timeout_ms >= 1,
            "serve.request_timeout_ms",
            serve.request_timeout_ms,
            "must be at least 1 millisecond",
        )?;
        ensure(
            serve.poll_interval_ms >= MIN_POLL_INTERVAL_MS,
            "serve.poll_interval_ms",
            serve.poll_interval_ms,
            "must be at least 100 milliseconds",
        )?;
        ensure(
            serve.top_k >= 1,
            "serve.top_k",
            serve.top_k,
            "must be at least 1",
        )?;
        ensure(
            (1..=MAX_DRIFT_WINDOW_ROWS).contains(&serve.drift_window_rows),
            "serve.drift_window_rows",
            serve.drift_window_rows,
            "must be between 1 and 1000000 rows",
        )?;
        ensure(
            (1..=serve.drift_window_rows).contains(&serve.drift_min_rows),
            "serve.drift_min_rows",
            serve.drift_min_rows,
            "must be at least 1 and at most serve.drift_window_rows",
        )?;

        Ok(Config {
            storage: raw.storage,
            layout: raw.layout,
            data: raw.data,
            split: raw.split,
            features: raw.features,
            training: raw.training,
            alert: raw.alert,
            registry: raw.registry,
            logging: raw.logging,
            serve: raw.serve,
        })
    }

    /// Resolves the schema path, if the configuration names one.
    pub fn schema_path(&self) -> Option<&Path> {
        self.data.schema.as_deref()
    }
}

/// Parses a command-line `KEY=VALUE` override.
pub fn parse_override(text: &str) -> Result<(String, String), ConfigError> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(ConfigError::Override(text.to_string())),
    }
}

/// A command-line override, named as such in error messages.
struct CommandLine(Serialized<serde_yaml::Value>);

impl figment::Provider for CommandLine {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("a command-line flag")
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        self.0.data()
    }
}

fn ensure(
    condition: bool,
    key: &'static str,
    value: impl ToString,
    reason: &'static str,
) -> Result<(), ConfigError> {
    if condition {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key,
            value: value.to_string(),
            reason,
        })
    }
}

/// Describes every error `figment` collected, each with its dotted key and
/// where the bad value came from: the file, the environment variable or a flag.
fn describe_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".").to_lowercase();
            let origin = match &e.metadata {
                Some(meta) if meta.name.contains("environment") => format!(
                    "environment variable {ENV_PREFIX}{}",
                    e.path.join("__").to_uppercase()
                ),
                Some(meta) => match &meta.source {
                    Some(source) => source.to_string(),
                    None => meta.name.to_string(),
                },
                None => "the configuration".to_string(),
            };
            let kind = describe_error_kind(&e.kind);
            if key.is_empty() {
                format!("{kind} in {origin}")
            } else {
                format!("{kind} for key {key} in {origin}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Describes one figment error kind. figment's own text of an unknown
/// variant quotes the list of choices and each choice, which doubles the
/// backticks, so that kind lists the choices here.
fn describe_error_kind(kind: &figment::error::Kind) -> String {
    match kind {
        figment::error::Kind::UnknownVariant(found, expected) => {
            let choices: Vec<String> = expected.iter().map(|v| format!("`{v}`")).collect();
            format!(
                "unknown variant `{found}`, expected one of {}",
                choices.join(", ")
            )
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_with(overrides: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(&ConfigSources {
            file: None,
            read_env: false,
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    #[test]
    fn embedded_default_loads() {
        let config = load_with(&[]).unwrap();
        assert_eq!(config.training.num_iterations, 300);
        assert_eq!(config.layout, LayoutConfig::default());
    }

    #[test]
    fn config_folder_is_rejected() {
        let folder = tempfile::tempdir().unwrap();
        let error = Config::load(&ConfigSources {
            file: Some(folder.path().to_path_buf()),
            read_env: false,
            overrides: Vec::new(),
        })
        .unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }), "{error}");
        let source = std::error::Error::source(&error).unwrap().to_string();
        assert!(source.contains("it is a folder"), "{source}");
    }

    #[test]
    fn unknown_variant_lists_choices() {
        let message = load_with(&[("training.shape", "bogus")])
            .unwrap_err()
            .to_string();
        assert!(message.contains("training.shape"), "{message}");
        assert!(message.contains("`bogus`"), "{message}");
        assert!(
            message.contains("expected one of `one_booster`, `patient_and_onset`"),
            "{message}"
        );
        assert!(!message.contains("``"), "{message}");
    }

    #[test]
    fn folds_default_to_one_and_are_checked() {
        assert_eq!(load_with(&[]).unwrap().training.folds, 1);
        assert_eq!(
            load_with(&[("training.folds", "5")])
                .unwrap()
                .training
                .folds,
            5
        );
        for bad in ["0", "21"] {
            let message = load_with(&[("training.folds", bad)])
                .unwrap_err()
                .to_string();
            assert!(message.contains("training.folds"), "{message}");
            assert!(message.contains(bad), "{message}");
        }
    }

    #[test]
    fn model_shape_is_read_and_checked() {
        let config = load_with(&[
            ("training.shape", "patient_and_onset"),
            ("training.onset.num_leaves", "5"),
        ])
        .unwrap();
        assert_eq!(config.training.shape, ModelShape::PatientAndOnset);
        assert_eq!(config.training.onset.num_leaves, 5);
        assert_eq!(config.training.onset.min_data_in_leaf, 200);

        let unknown = load_with(&[("training.shape", "three_boosters")])
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("training.shape"), "{unknown}");
        assert!(unknown.contains("three_boosters"), "{unknown}");

        for leaves in ["1", "131073"] {
            let invalid = load_with(&[
                ("training.shape", "patient_and_onset"),
                ("training.onset.num_leaves", leaves),
            ])
            .unwrap_err()
            .to_string();
            assert!(invalid.contains("training.onset.num_leaves"), "{invalid}");
            assert!(invalid.contains(leaves), "{invalid}");
        }

        let weighted = load_with(&[
            ("training.shape", "patient_and_onset"),
            ("training.imbalance", "scale_pos_weight"),
        ])
        .unwrap_err()
        .to_string();
        assert!(weighted.contains("training.imbalance"), "{weighted}");
        assert!(weighted.contains("sample_weights or none"), "{weighted}");
    }

    #[test]
    fn override_replaces_nested_value() {
        let config = load_with(&[("training.num_leaves", "63")]).unwrap();
        assert_eq!(config.training.num_leaves, 63);
    }

    #[test]
    fn negative_learning_rate_names_key() {
        let error = load_with(&[("training.learning_rate", "-0.1")]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("training.learning_rate"), "{message}");
        assert!(message.contains("-0.1"), "{message}");
    }

    #[test]
    fn out_of_range_rates_rejected() {
        for (key, value, expected) in [
            ("training.learning_rate", "2", "training.learning_rate = 2"),
            ("training.learning_rate", "0", "training.learning_rate = 0"),
            (
                "registry.gate.minimums.utility",
                "5",
                "minimums = utility: 5",
            ),
            ("registry.gate.minimums.auroc", "-1", "minimums = auroc: -1"),
            (
                "registry.gate.minimums.auroc_sepsis_label",
                "1.5",
                "minimums = auroc_sepsis_label: 1.5",
            ),
        ] {
            let message = load_with(&[(key, value)]).unwrap_err().to_string();
            assert!(message.contains(expected), "{key}: {message}");
        }
        // A utility minimum below 0 is a real choice: a model may score below doing nothing.
        assert!(load_with(&[("registry.gate.minimums.utility", "-0.5")]).is_ok());
        assert!(load_with(&[("training.learning_rate", "1")]).is_ok());
    }

    #[test]
    fn wrong_type_names_key() {
        let error = load_with(&[("split.seed", "abc")]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("split.seed"), "{message}");
    }

    #[test]
    fn unknown_key_is_rejected() {
        let error = load_with(&[("training.learnig_rate", "0.1")]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("learnig_rate"), "{message}");
    }

    #[test]
    fn validation_fraction_out_of_range() {
        let error = load_with(&[("split.validation_fraction", "1.5")]).unwrap_err();
        assert!(error.to_string().contains("split.validation_fraction"));
    }

    #[test]
    fn serve_defaults_load() {
        let config = load_with(&[]).unwrap();
        assert_eq!(config.serve.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.serve.max_body_bytes, 1 << 20);
        assert_eq!(config.serve.max_batch, 1000);
    }

    #[test]
    fn serve_values_are_checked() {
        let error = load_with(&[("serve.poll_interval_ms", "10")]).unwrap_err();
        assert!(
            error.to_string().contains("serve.poll_interval_ms"),
            "{error}"
        );
        let error = load_with(&[("serve.max_batch", "0")]).unwrap_err();
        assert!(error.to_string().contains("serve.max_batch"), "{error}");
        let error = load_with(&[("serve.addr", "localhost")]).unwrap_err();
        assert!(error.to_string().contains("serve.addr"), "{error}");
    }

    #[test]
    fn override_without_equals_is_rejected() {
        assert!(parse_override("training.num_leaves").is_err());
        assert_eq!(
            parse_override("a.b=c=d").unwrap(),
            ("a.b".to_string(), "c=d".to_string())
        );
    }
}
