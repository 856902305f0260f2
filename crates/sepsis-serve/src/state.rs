//! The service's shared state: the model being served, the settings, the
//! metrics and the training jobs.
//!
//! The model sits behind an [`ArcSwapOption`]. A request takes one
//! reference to the current model when it starts and scores everything with
//! it, so a swap never changes the model under a request, and the old model
//! is freed when the last request using it ends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use sepsis_ews::config::ServeConfig;
use sepsis_ews::drift::{DriftProfile, DriftReport, DriftWindow};
use sepsis_ews::registry::Registry;
use sepsis_ews::schema::Schema;
use sepsis_ews::scoring::{ScoringError, ScoringModel};
use tokio::sync::Notify;

use crate::input::InputColumns;
use crate::metrics::Metrics;
use crate::train::{Jobs, TrainSettings};

/// The limits and defaults of the service, from the `serve` section of the
/// configuration.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub request_timeout: Duration,
    pub poll_interval: Duration,
    pub top_k: usize,
    pub drift_window_rows: usize,
    pub drift_min_rows: usize,
}

impl From<&ServeConfig> for ServeSettings {
    fn from(config: &ServeConfig) -> ServeSettings {
        ServeSettings {
            max_body_bytes: usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX),
            max_batch: config.max_batch as usize,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            poll_interval: Duration::from_millis(config.poll_interval_ms),
            top_k: config.top_k as usize,
            drift_window_rows: config.drift_window_rows as usize,
            drift_min_rows: config.drift_min_rows as usize,
        }
    }
}

/// A registry version loaded and ready to score.
#[derive(Debug)]
pub struct LoadedModel {
    pub model: ScoringModel,
    pub version: u32,
    pub run_id: String,
    /// When this service loaded it, RFC 3339.
    pub loaded_at: String,
    /// The rows this model scored most recently, when its version has a
    /// drift reference.
    pub drift: Option<DriftMonitor>,
}

/// A model's drift reference and the bins of its recent rows.
#[derive(Debug)]
pub struct DriftMonitor {
    profile: Arc<DriftProfile>,
    window: Mutex<DriftWindow>,
}

impl DriftMonitor {
    fn new(profile: DriftProfile, window_rows: usize) -> DriftMonitor {
        let profile = Arc::new(profile);
        DriftMonitor {
            window: Mutex::new(DriftWindow::new(profile.clone(), window_rows)),
            profile,
        }
    }

    /// Adds the inputs and probabilities of scored rows to the window.
    /// `value(row, column)` reads a model feature of a row. The rows are
    /// binned before the window is locked.
    pub fn observe(
        &self,
        rows: impl Iterator<Item = (usize, f64)>,
        value: impl Fn(usize, usize) -> f32,
    ) {
        let mut bins = Vec::new();
        for (row, probability) in rows {
            self.profile
                .bin_row(|column| value(row, column), probability, &mut bins);
        }
        let mut window = self.window.lock().expect("the lock is not poisoned");
        for row in bins.chunks_exact(self.profile.width()) {
            window.push(row);
        }
    }

    /// Computes the PSI of every input and of the probabilities over the window.
    pub fn report(&self) -> DriftReport {
        self.window
            .lock()
            .expect("the lock is not poisoned")
            .report()
    }
}

/// The outcome of one read of the production pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// No version is in production yet.
    NoProduction,
    /// Production is the version already served.
    Unchanged(u32),
    /// Production moved, and the service now serves this version.
    Loaded(u32),
}

/// An error that keeps a production version from being served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Scoring(#[from] ScoringError),
    #[error(transparent)]
    Registry(#[from] sepsis_ews::registry::RegistryError),
    #[error(
        "production v{version} was trained with another column schema (digest {model}) than the \
         configured one ({configured}); serve it with the schema it was trained with"
    )]
    SchemaMismatch {
        version: u32,
        model: String,
        configured: String,
    },
}

/// The state shared by every request. Cloning it is cheap.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    schema: Schema,
    inputs: InputColumns,
    settings: ServeSettings,
    model: ArcSwapOption<LoadedModel>,
    /// The reason the service is not ready, or the last failed load, for `/ready`.
    problem: Mutex<Option<String>>,
    metrics: Metrics,
    jobs: Jobs,
    /// Wakes the model watcher before its next poll.
    refresh_now: Notify,
}

impl AppState {
    /// Creates the state with no model loaded; [`AppState::refresh_model`]
    /// or the watcher that [`crate::serve`] starts loads production.
    pub fn new(
        registry: Registry,
        schema: Schema,
        settings: ServeSettings,
        training: TrainSettings,
    ) -> AppState {
        let inputs = InputColumns::new(&schema);
        let problem = format!("no version of {} loaded yet", registry.model_name());
        AppState {
            inner: Arc::new(Inner {
                registry,
                schema,
                inputs,
                settings,
                model: ArcSwapOption::empty(),
                problem: Mutex::new(Some(problem)),
                metrics: Metrics::new(),
                jobs: Jobs::new(training),
                refresh_now: Notify::new(),
            }),
        }
    }

    pub fn settings(&self) -> &ServeSettings {
        &self.inner.settings
    }

    pub fn schema(&self) -> &Schema {
        &self.inner.schema
    }

    pub fn inputs(&self) -> &InputColumns {
        &self.inner.inputs
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn jobs(&self) -> &Jobs {
        &self.inner.jobs
    }

    /// Returns the model being served, if one is loaded.
    pub fn model(&self) -> Option<Arc<LoadedModel>> {
        self.inner.model.load_full()
    }

    /// Returns the reason the service is not ready, while no model is loaded.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.inner.model.load().is_some() {
            return None;
        }
        let problem = self.inner.problem.lock().expect("the lock is not poisoned");
        Some(
            problem
                .clone()
                .unwrap_or_else(|| "no model loaded yet".into()),
        )
    }

    /// Asks the model watcher to read the production pointer now.
    pub fn request_refresh(&self) {
        self.inner.refresh_now.notify_one();
    }

    /// Reads the production pointer once and, when it names another version
    /// than the one served, loads that version and swaps it in. On an error
    /// the model served so far stays.
    pub async fn refresh_model(&self) -> Result<Refresh, LoadError> {
        let result = self.load_production().await;
        let mut problem = self.inner.problem.lock().expect("the lock is not poisoned");
        match &result {
            Ok(Refresh::NoProduction) => {
                *problem = Some(format!(
                    "there is no production version of {} in the registry yet",
                    self.inner.registry.model_name()
                ));
            }
            Ok(_) => *problem = None,
            Err(error) => {
                self.inner.metrics.model_load_failed();
                *problem = Some(format!("loading the production model failed: {error}"));
            }
        }
        result
    }

    async fn load_production(&self) -> Result<Refresh, LoadError> {
        let registry = &self.inner.registry;
        let Some(production) = registry.production().await? else {
            return Ok(Refresh::NoProduction);
        };
        let current = self.inner.model.load_full();
        let previous = current.as_ref().map(|m| m.version);
        if previous == Some(production.version) {
            return Ok(Refresh::Unchanged(production.version));
        }

        let started = std::time::Instant::now();
        let model = ScoringModel::load_version(registry, production.version).await?;
        if model.spec().schema_digest != self.inner.schema.digest {
            return Err(LoadError::SchemaMismatch {
                version: production.version,
                model: model.spec().schema_digest.clone(),
                configured: self.inner.schema.digest.clone(),
            });
        }
        let drift = self.drift_monitor(&model, production.version);
        let loaded = LoadedModel {
            run_id: model.sidecar.run_id.clone(),
            model,
            version: production.version,
            loaded_at: chrono::Utc::now().to_rfc3339(),
            drift,
        };
        tracing::info!(
            model = registry.model_name(),
            version = loaded.version,
            run_id = %loaded.run_id,
            previous_version = previous,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "serving production model"
        );
        self.inner.model.store(Some(Arc::new(loaded)));
        self.inner
            .metrics
            .model_changed(previous, production.version);
        Ok(Refresh::Loaded(production.version))
    }

    /// A drift monitor for a model, or none when its version has no usable
    /// reference: the model is then served without drift gauges.
    fn drift_monitor(&self, model: &ScoringModel, version: u32) -> Option<DriftMonitor> {
        let Some(reference) = &model.drift else {
            tracing::info!(
                version,
                "the version has no drift reference; drift is not monitored"
            );
            return None;
        };
        match reference.resolve(&model.spec().feature_names) {
            Ok(profile) => Some(DriftMonitor::new(
                profile,
                self.inner.settings.drift_window_rows,
            )),
            Err(error) => {
                tracing::warn!(version, error = %error, "drift is not monitored");
                None
            }
        }
    }

    /// Polls the production pointer every `poll_interval`, or sooner when
    /// asked, until the task is aborted. A failure is logged when it first
    /// occurs and when its message changes, not at every poll.
    pub fn spawn_model_watcher(&self) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let mut last_error: Option<String> = None;
            loop {
                match state.refresh_model().await {
                    Ok(_) => {
                        if last_error.take().is_some() {
                            tracing::info!("production model readable again");
                        }
                    }
                    Err(error) => {
                        let message = error.to_string();
                        if last_error.as_deref() != Some(message.as_str()) {
                            tracing::warn!(error = %message, "reading the production model failed; serving the previous one");
                            last_error = Some(message);
                        }
                    }
                }
                state.inner.metrics.run_upkeep();
                tokio::select! {
                    () = tokio::time::sleep(state.inner.settings.poll_interval) => {}
                    () = state.inner.refresh_now.notified() => {}
                }
            }
        })
    }
}
