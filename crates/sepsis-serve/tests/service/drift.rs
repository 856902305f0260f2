//! Drift gauges: the population stability index of the served model's
//! recent inputs and probabilities against its training reference.

use axum::http::StatusCode;
use sepsis_serve::{router, TrainSettings};
use serde_json::Value;

use crate::common::*;

/// Reads one gauge from the Prometheus text; `None` when it is absent.
fn gauge(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(match value {
            "NaN" => f64::NAN,
            value => value.parse().unwrap(),
        })
    })
}

fn input_psi(metrics: &str, feature: &str) -> f64 {
    gauge(
        metrics,
        &format!("input_drift_psi{{feature=\"{feature}\"}}"),
    )
    .unwrap_or_else(|| panic!("no input_drift_psi for {feature}:\n{metrics}"))
}

/// Builds a `patients` request of the sample's first `count` patients, every hour
/// scored, with `change` applied to each hourly observation.
fn histories(count: usize, change: impl Fn(&mut serde_json::Map<String, Value>)) -> Value {
    let mut request = patients_request(&sample_patients()[..count]);
    for patient in request["patients"].as_array_mut().unwrap() {
        for observation in patient["observations"].as_array_mut().unwrap() {
            change(observation.as_object_mut().unwrap());
        }
    }
    request["all_hours"] = Value::Bool(true);
    request
}

async fn drift_app() -> axum::Router {
    let settings = sepsis_serve::ServeSettings {
        max_body_bytes: 64 << 20,
        max_batch: 100_000,
        drift_window_rows: 100_000,
        drift_min_rows: 2000,
        ..settings()
    };
    router(state_with_settings(Some(1), settings, TrainSettings::disabled()).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_gauges_wait_for_enough_rows() {
    let app = drift_app().await;
    let metrics = String::from_utf8(get(&app, "/metrics").await.body.to_vec()).unwrap();
    assert_eq!(gauge(&metrics, "model_ready"), Some(1.0));
    assert_eq!(gauge(&metrics, "drift_window_rows"), Some(0.0));
    assert!(input_psi(&metrics, "HR").is_nan());

    let reply = predict(&app, &histories(3, |_| {})).await;
    assert_eq!(reply.status, StatusCode::OK);
    let scored = reply.json()["results"].as_array().unwrap().len();
    let metrics = String::from_utf8(get(&app, "/metrics").await.body.to_vec()).unwrap();
    assert_eq!(gauge(&metrics, "drift_window_rows"), Some(scored as f64));
    assert!(scored < 2000);
    assert!(input_psi(&metrics, "HR").is_nan());
    assert!(gauge(&metrics, "prediction_drift_psi").unwrap().is_nan());
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_gauges_sample_then_shifted() {
    let app = drift_app().await;
    let reply = predict(&app, &histories(600, |_| {})).await;
    assert_eq!(reply.status, StatusCode::OK);
    let metrics = String::from_utf8(get(&app, "/metrics").await.body.to_vec()).unwrap();
    let rows = gauge(&metrics, "drift_window_rows").unwrap();
    assert!(rows >= 2000.0, "{rows} rows");
    for feature in ["HR", "Resp", "Temp", "Lactate", "Age", "ICULOS", "unit"] {
        let psi = input_psi(&metrics, feature);
        assert!(
            psi < 0.1,
            "{feature}: PSI {psi} on the training sample's own rows"
        );
    }

    // The same patients again with every heart rate 40 beats faster and no
    // lactate measured: the window now contains both halves.
    let shifted = histories(600, |observation| {
        if let Some(Value::Number(hr)) = observation.get("HR") {
            let faster = (hr.as_f64().unwrap() + 40.0).min(280.0);
            observation.insert("HR".into(), faster.into());
        }
        observation.remove("Lactate");
    });
    let reply = predict(&app, &shifted).await;
    assert_eq!(reply.status, StatusCode::OK);
    let metrics = String::from_utf8(get(&app, "/metrics").await.body.to_vec()).unwrap();
    assert_eq!(gauge(&metrics, "drift_window_rows"), Some(2.0 * rows));
    assert!(input_psi(&metrics, "HR") > 0.25, "{metrics}");
    assert!(input_psi(&metrics, "Resp") < 0.1);
    assert!(gauge(&metrics, "prediction_drift_psi").unwrap().is_finite());
}

#[tokio::test(flavor = "multi_thread")]
async fn model_ready_zero_without_model() {
    let app = router(state_with(None).await);
    let metrics = String::from_utf8(get(&app, "/metrics").await.body.to_vec()).unwrap();
    assert_eq!(gauge(&metrics, "model_ready"), Some(0.0));
    assert_eq!(gauge(&metrics, "drift_window_rows"), None);
}
