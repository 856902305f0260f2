//! Shared set-up: two model versions trained once per test binary on the
//! bundled sample, copied into a fresh registry for each test.

use std::path::PathBuf;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use sepsis_ews::config::{Config, ConfigSources};
use sepsis_ews::pipeline::{self, Context};
use sepsis_ews::registry::Registry;
use sepsis_ews::schema::Schema;
use sepsis_ews::storage::Store;
use sepsis_serve::{AppState, ServeSettings, TrainSettings};
use serde_json::{json, Map, Value};
use tokio::sync::OnceCell;
use tower::ServiceExt;

pub const MODEL_NAME: &str = "sepsis-lightgbm";

pub struct Fixture {
    /// A registry holding v1 and v2, neither in production.
    pub source: Registry,
    pub schema: Schema,
    /// The sample's rows, patient by patient, as the snapshot parsed them.
    pub sample: RecordBatch,
}

static FIXTURE: OnceCell<Fixture> = OnceCell::const_new();

pub fn sample_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/sample/physionet2019-setA-sample.csv.gz")
}

fn config(num_iterations: u32) -> Config {
    let overrides = [
        ("storage.uri", "memory://".to_string()),
        ("training.num_iterations", num_iterations.to_string()),
        ("training.num_threads", "1".to_string()),
        ("logging.dir", String::new()),
    ];
    Config::load(&ConfigSources {
        file: None,
        read_env: false,
        overrides: overrides
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    })
    .unwrap()
}

/// Trains two different models (20 and 40 trees) into one memory store, on
/// the first call only.
pub async fn fixture() -> &'static Fixture {
    FIXTURE
        .get_or_init(|| async {
            let first = Context::open(config(20), sepsis_ews::progress::silent()).unwrap();
            pipeline::run_pipeline(&first, &sample_path())
                .await
                .unwrap();
            let mut second = first.clone();
            second.config = config(40);
            pipeline::run_pipeline(&second, &sample_path())
                .await
                .unwrap();

            let schema = first.schema.clone();
            let (_, _, snapshot) =
                sepsis_ews::scoring::import_to_memory(&schema.for_scoring(false), &sample_path())
                    .await
                    .unwrap();
            let batches: Vec<RecordBatch> = sepsis_ews::table::read_batches(snapshot, "sample")
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let sample = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
            Fixture {
                source: first.registry(),
                schema,
                sample,
            }
        })
        .await
}

/// Copies v1 and v2 into a new memory store and makes `production` production.
pub async fn registry_with(production: Option<u32>) -> Registry {
    let fixture = fixture().await;
    let registry = Registry::new(Store::in_memory(), MODEL_NAME);
    for record in fixture.source.versions().await.unwrap() {
        let mut files = Vec::new();
        for file in &record.files {
            let bytes = fixture
                .source
                .read_file(record.version, &file.name)
                .await
                .unwrap();
            files.push((file.name.as_str(), bytes));
        }
        let copied = registry
            .create_version(record.clone(), &files)
            .await
            .unwrap();
        assert_eq!(copied.version, record.version);
    }
    if let Some(version) = production {
        registry.promote(version, None, "test").await.unwrap();
    }
    registry
}

pub fn settings() -> ServeSettings {
    ServeSettings {
        max_body_bytes: 1 << 20,
        max_batch: 1000,
        request_timeout: Duration::from_secs(60),
        poll_interval: Duration::from_millis(100),
        top_k: 5,
        drift_window_rows: 10_000,
        drift_min_rows: 1000,
    }
}

/// A state serving `production`, loaded before it returns.
pub async fn state_with(production: Option<u32>) -> AppState {
    state_with_settings(production, settings(), TrainSettings::disabled()).await
}

pub async fn state_with_settings(
    production: Option<u32>,
    settings: ServeSettings,
    training: TrainSettings,
) -> AppState {
    let registry = registry_with(production).await;
    let state = AppState::new(registry, fixture().await.schema.clone(), settings, training);
    state.refresh_model().await.unwrap();
    state
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// Parses the body, which every endpoint but /metrics and /docs sends as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: the body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

pub async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn get(app: &Router, path: &str) -> Reply {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

pub fn post_json(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

pub async fn predict(app: &Router, body: &Value) -> Reply {
    send(app, post_json("/predict", body.to_string())).await
}

/// Returns a complete, valid hourly row.
pub fn valid_row() -> Value {
    json!({
        "HR": 97.0, "O2Sat": 95.0, "Temp": 38.2, "SBP": 110.0, "MAP": 75.0, "DBP": 60.0,
        "Resp": 24.0, "FiO2": 0.4, "WBC": 14.5, "Lactate": 2.5, "Creatinine": 1.4,
        "Platelets": 120.0, "Age": 67.0, "Gender": 1.0, "Unit1": 1.0, "Unit2": 0.0,
        "HospAdmTime": -12.5, "ICULOS": 5.0
    })
}

/// Lists the distinct patient ids of the sample, in order.
pub fn sample_patients() -> Vec<String> {
    let ids = fixture_sample()
        .column_by_name("patient_id")
        .unwrap()
        .as_string::<i32>();
    let mut patients: Vec<String> = Vec::new();
    for row in 0..ids.len() {
        let id = ids.value(row);
        if patients.last().map(String::as_str) != Some(id) {
            patients.push(id.to_string());
        }
    }
    patients
}

fn fixture_sample() -> &'static RecordBatch {
    &FIXTURE.get().expect("fixture() ran first").sample
}

/// Builds a `patients` request from the sample's rows of these patients,
/// leaving missing values out as absent keys.
pub fn patients_request(ids: &[String]) -> Value {
    let sample = fixture_sample();
    let schema = &FIXTURE.get().unwrap().schema;
    let id_column = sample
        .column_by_name("patient_id")
        .unwrap()
        .as_string::<i32>();
    let excluded = [
        schema.id_column.as_str(),
        schema.label_column.as_str(),
        schema.outcome_column.as_deref().unwrap_or(""),
    ];
    let mut patients = Vec::new();
    for id in ids {
        let mut observations = Vec::new();
        for row in 0..sample.num_rows() {
            if id_column.value(row) != id {
                continue;
            }
            let mut observation = Map::new();
            for (field, column) in sample.schema().fields().iter().zip(sample.columns()) {
                if excluded.contains(&field.name().as_str()) || column.is_null(row) {
                    continue;
                }
                let value = match column.data_type() {
                    DataType::Float64 => column.as_primitive::<Float64Type>().value(row),
                    other => panic!("unexpected input column type {other}"),
                };
                if value.is_nan() {
                    continue;
                }
                observation.insert(field.name().clone(), json!(value));
            }
            observations.push(Value::Object(observation));
        }
        assert!(!observations.is_empty(), "patient {id} is in the sample");
        patients.push(json!({"patient_id": id, "observations": observations}));
    }
    json!({ "patients": patients })
}
