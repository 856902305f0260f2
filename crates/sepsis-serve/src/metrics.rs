//! Prometheus metrics of the service, rendered by `GET /metrics`.
//!
//! Each [`AppState`](crate::AppState) owns its own recorder instead of
//! installing a process-wide one, so several services in one process (as in
//! the tests) keep separate counts. Updates run the `metrics` macros with
//! that recorder as the local recorder of the calling thread.

use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use sepsis_ews::drift::DriftReport;

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
pub const PREDICTED_PROBABILITY: &str = "predicted_probability";
pub const PREDICTIONS: &str = "predictions_total";
pub const ALERTS: &str = "alerts_total";
pub const MODEL_INFO: &str = "model_info";
pub const MODEL_LOADS: &str = "model_loads_total";
pub const TRAINING_JOBS: &str = "training_jobs_total";
pub const MODEL_READY: &str = "model_ready";
pub const INPUT_DRIFT: &str = "input_drift_psi";
pub const PREDICTION_DRIFT: &str = "prediction_drift_psi";
pub const DRIFT_WINDOW_ROWS: &str = "drift_window_rows";

/// Request latency buckets, in seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Probability buckets: fine at the low end, where the alert thresholds of
/// a rare outcome lie.
const PROBABILITY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
];

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// The features of the input drift gauges set at the last scrape.
    drift_features: std::sync::Mutex<Vec<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &DURATION_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(PREDICTED_PROBABILITY.into()),
                    &PROBABILITY_BUCKETS,
                )
            })
            .expect("the bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        let metrics = Metrics {
            recorder,
            handle,
            drift_features: std::sync::Mutex::new(Vec::new()),
        };
        metrics.record(|| {
            describe();
            metrics::gauge!(MODEL_READY).set(0.0);
        });
        metrics
    }

    /// Runs `update` with this service's recorder as the thread's recorder.
    pub fn record<T>(&self, update: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, update)
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains the histograms' recent samples into their buckets, which
    /// otherwise grow until the next scrape.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.record(|| {
            let labels = [
                ("method", method.to_string()),
                ("route", route.to_string()),
                ("status", status.to_string()),
            ];
            metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
            let labels = [("method", method.to_string()), ("route", route.to_string())];
            metrics::histogram!(HTTP_DURATION, &labels).record(elapsed.as_secs_f64());
        });
    }

    pub fn observe_predictions(&self, probabilities: impl Iterator<Item = (f64, bool)>) {
        self.record(|| {
            let histogram = metrics::histogram!(PREDICTED_PROBABILITY);
            let mut count = 0;
            let mut alerts = 0;
            for (probability, alert) in probabilities {
                histogram.record(probability);
                count += 1;
                alerts += u64::from(alert);
            }
            metrics::counter!(PREDICTIONS).increment(count);
            metrics::counter!(ALERTS).increment(alerts);
        });
    }

    /// Marks `version` as the model being served and any earlier one as not.
    pub fn model_changed(&self, previous: Option<u32>, version: u32) {
        self.record(|| {
            if let Some(previous) = previous {
                metrics::gauge!(MODEL_INFO, "version" => previous.to_string()).set(0.0);
            }
            metrics::gauge!(MODEL_INFO, "version" => version.to_string()).set(1.0);
            metrics::gauge!(MODEL_READY).set(1.0);
            metrics::counter!(MODEL_LOADS, "outcome" => "loaded").increment(1);
        });
    }

    pub fn model_load_failed(&self) {
        self.record(|| metrics::counter!(MODEL_LOADS, "outcome" => "failed").increment(1));
    }

    /// Sets the drift gauges from the served model's window. Below
    /// `min_rows` rows, and after a swap to a model with a new window, the
    /// PSI gauges read NaN, which no threshold comparison matches. After a
    /// swap to a model without a drift reference, or with other input
    /// columns, the gauges of the columns it does not report read NaN too.
    pub fn observe_drift(&self, report: Option<&DriftReport>, min_rows: usize) {
        let mut previous_features = self
            .drift_features
            .lock()
            .expect("the lock is not poisoned");
        let reported: Vec<String> = report
            .map(|r| {
                r.inputs
                    .iter()
                    .map(|(feature, _)| feature.clone())
                    .collect()
            })
            .unwrap_or_default();
        self.record(|| {
            for stale in previous_features.iter().filter(|f| !reported.contains(f)) {
                metrics::gauge!(INPUT_DRIFT, "feature" => stale.clone()).set(f64::NAN);
            }
            match report {
                Some(report) => {
                    metrics::gauge!(DRIFT_WINDOW_ROWS).set(report.rows as f64);
                    let enough = report.rows >= min_rows;
                    let value = |psi: f64| if enough { psi } else { f64::NAN };
                    for (feature, psi) in &report.inputs {
                        metrics::gauge!(INPUT_DRIFT, "feature" => feature.clone()).set(value(*psi));
                    }
                    metrics::gauge!(PREDICTION_DRIFT).set(value(report.prediction));
                }
                None if !previous_features.is_empty() => {
                    metrics::gauge!(DRIFT_WINDOW_ROWS).set(0.0);
                    metrics::gauge!(PREDICTION_DRIFT).set(f64::NAN);
                }
                None => {}
            }
        });
        *previous_features = reported;
    }

    /// Counts a training job event: `started`, `succeeded` or `failed`.
    pub fn training_job(&self, event: &'static str) {
        self.record(|| metrics::counter!(TRAINING_JOBS, "event" => event).increment(1));
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests answered, by method, route template and status code."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time from receiving a request to sending its response headers, by method and route template."
    );
    describe_histogram!(
        PREDICTED_PROBABILITY,
        "Calibrated sepsis probabilities returned by /predict."
    );
    describe_counter!(
        PREDICTIONS,
        Unit::Count,
        "Probabilities returned by /predict."
    );
    describe_counter!(
        ALERTS,
        Unit::Count,
        "Results of /predict whose alert decision was on."
    );
    describe_gauge!(
        MODEL_INFO,
        "1 for the registry version being served, 0 for versions served earlier."
    );
    describe_counter!(
        MODEL_LOADS,
        Unit::Count,
        "Loads of a production model version, by outcome (loaded or failed)."
    );
    describe_gauge!(
        MODEL_READY,
        "1 once a production model is loaded and served, 0 before."
    );
    describe_gauge!(
        INPUT_DRIFT,
        "Population stability index of each input column over the drift window, against the served model's training reference; NaN until the window holds serve.drift_min_rows rows."
    );
    describe_gauge!(
        PREDICTION_DRIFT,
        "Population stability index of the predicted probabilities over the drift window, against the served model's validation probabilities; NaN until the window holds serve.drift_min_rows rows."
    );
    describe_gauge!(
        DRIFT_WINDOW_ROWS,
        Unit::Count,
        "Scored rows in the drift window of the served model."
    );
    describe_counter!(
        TRAINING_JOBS,
        Unit::Count,
        "Training jobs started over the API, and how they ended (started, succeeded, failed)."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge_line<'a>(text: &'a str, name: &str) -> &'a str {
        text.lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    #[test]
    fn drift_gauges_turn_nan_without_reference() {
        let metrics = Metrics::new();
        let report = DriftReport {
            rows: 2000,
            inputs: vec![("HR".into(), 0.3), ("Temp".into(), 0.01)],
            prediction: 0.05,
        };
        metrics.observe_drift(Some(&report), 1000);
        let text = metrics.render();
        assert_eq!(
            gauge_line(&text, "input_drift_psi{feature=\"HR\"}"),
            "input_drift_psi{feature=\"HR\"} 0.3"
        );
        assert_eq!(
            gauge_line(&text, "prediction_drift_psi"),
            "prediction_drift_psi 0.05"
        );

        // A model with other input columns: the old column's gauge is NaN.
        let other = DriftReport {
            rows: 2000,
            inputs: vec![("Temp".into(), 0.02)],
            prediction: 0.04,
        };
        metrics.observe_drift(Some(&other), 1000);
        let text = metrics.render();
        assert_eq!(
            gauge_line(&text, "input_drift_psi{feature=\"HR\"}"),
            "input_drift_psi{feature=\"HR\"} NaN"
        );
        assert_eq!(
            gauge_line(&text, "input_drift_psi{feature=\"Temp\"}"),
            "input_drift_psi{feature=\"Temp\"} 0.02"
        );

        // A model without a reference: every drift gauge is NaN.
        metrics.observe_drift(None, 1000);
        let text = metrics.render();
        assert_eq!(
            gauge_line(&text, "input_drift_psi{feature=\"Temp\"}"),
            "input_drift_psi{feature=\"Temp\"} NaN"
        );
        assert_eq!(
            gauge_line(&text, "prediction_drift_psi"),
            "prediction_drift_psi NaN"
        );
        assert_eq!(
            gauge_line(&text, "drift_window_rows"),
            "drift_window_rows 0"
        );
    }
}
