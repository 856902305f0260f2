//! The router in process: endpoints, scoring, and the input rules.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use sepsis_ews::scoring::{self, ScoringModel};
use sepsis_serve::{router, AppState, Refresh, TrainSettings};
use serde_json::{json, Value};

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn health_is_ok() {
    let app = router(state_with(None).await);
    let reply = get(&app, "/health").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!({"status": "ok"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn not_ready_without_production() {
    let registry = registry_with(None).await;
    let state = AppState::new(
        registry.clone(),
        fixture().await.schema.clone(),
        settings(),
        TrainSettings::disabled(),
    );
    assert_eq!(state.refresh_model().await.unwrap(), Refresh::NoProduction);
    let app = router(state.clone());

    let reply = get(&app, "/ready").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = reply.json();
    assert_eq!(body["error"], "not_ready");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("no production version"),
        "{body}"
    );
    let reply = predict(&app, &json!({"rows": [valid_row()]})).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        get(&app, "/model").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Production appears: the next read of the pointer makes it ready.
    registry.promote(1, None, "test").await.unwrap();
    assert_eq!(state.refresh_model().await.unwrap(), Refresh::Loaded(1));
    let reply = get(&app, "/ready").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!({"status": "ready", "version": 1}));
}

#[tokio::test(flavor = "multi_thread")]
async fn predict_row_returns_probability_and_alert() {
    let state = state_with(Some(2)).await;
    let loaded = state.model().unwrap();
    let app = router(state);
    let reply = predict(&app, &json!({"rows": [valid_row(), valid_row()]})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
    let body = reply.json();
    assert_eq!(body["model"]["name"], MODEL_NAME);
    assert_eq!(body["model"]["version"], 2);
    assert_eq!(body["model"]["run_id"], loaded.run_id.as_str());
    let rule = loaded.model.card.policy.rule;
    assert_eq!(body["alert_rule"]["hold_hours"], json!(rule.hold_hours));
    assert_eq!(body["alert_rule"]["threshold"], json!(rule.threshold));

    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for (index, result) in results.iter().enumerate() {
        assert_eq!(result["row"], index);
        assert_eq!(result["hour"], 5.0);
        let probability = result["probability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&probability));
        let expected_alert = rule.threshold.is_some_and(|t| probability >= t);
        assert_eq!(result["alert"], expected_alert);
        assert!(result.get("explanation").is_none());
        assert!(result.get("patient_id").is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn flat_row_equals_one_hour_history() {
    let app = router(state_with(Some(1)).await);
    let rows = predict(&app, &json!({"rows": [valid_row()]})).await.json();
    let history = predict(
        &app,
        &json!({"patients": [{"patient_id": "p", "observations": [valid_row()]}]}),
    )
    .await
    .json();
    assert_eq!(
        rows["results"][0]["probability"],
        history["results"][0]["probability"]
    );
    assert_eq!(history["results"][0]["patient_id"], "p");
}

/// The service and `sepsis predict`'s scoring of a file give the same
/// probability and alert, to the bit, at every hour of real stays.
#[tokio::test(flavor = "multi_thread")]
async fn histories_match_file_scoring() {
    let state = state_with(Some(2)).await;
    let app = router(state.clone());
    let fixture = fixture().await;
    let patients: Vec<String> = sample_patients().into_iter().take(12).collect();
    let mut request = patients_request(&patients);
    request["all_hours"] = json!(true);
    let reply = predict(&app, &request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
    let results = reply.json()["results"].as_array().unwrap().clone();

    let model = ScoringModel::load_version(state.registry(), 2)
        .await
        .unwrap();
    let scored = scoring::score_file(
        &fixture.schema,
        &sample_path(),
        &model,
        scoring::Purpose::Predict,
    )
    .await
    .unwrap();
    let mut compared = 0;
    for result in &results {
        let id = result["patient_id"].as_str().unwrap();
        let hour = result["hour"].as_f64().unwrap();
        let row = scored
            .patient_ids
            .iter()
            .zip(&scored.cohort.hours)
            .position(|(p, h)| p == id && *h == hour)
            .unwrap();
        let probability = result["probability"].as_f64().unwrap();
        assert_eq!(
            probability.to_bits(),
            scored.scores.probability[row].to_bits(),
            "patient {id} hour {hour}"
        );
        assert_eq!(
            result["alert"], scored.scores.alert[row],
            "patient {id} hour {hour}"
        );
        compared += 1;
    }
    assert!(compared > 100, "only {compared} hours compared");

    // Without all_hours each patient gets its last hour, the same result.
    request["all_hours"] = json!(false);
    let last = predict(&app, &request).await.json();
    let last = last["results"].as_array().unwrap();
    assert_eq!(last.len(), patients.len());
    for result in last {
        let id = result["patient_id"].as_str().unwrap();
        let expected = results.iter().rfind(|r| r["patient_id"] == id).unwrap();
        assert_eq!(result, expected);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn key_order_does_not_change_score() {
    let app = router(state_with(Some(1)).await);
    let row = valid_row();
    let object = row.as_object().unwrap();
    let forward: Vec<String> = object
        .iter()
        .map(|(k, v)| format!("{}:{v}", json!(k)))
        .collect();
    let mut backward = forward.clone();
    backward.reverse();
    let mut rotated = forward.clone();
    rotated.rotate_left(7);
    let mut probabilities = Vec::new();
    for order in [forward, backward, rotated] {
        let body = format!("{{\"rows\":[{{{}}}]}}", order.join(","));
        let reply = send(&app, post_json("/predict", body)).await;
        assert_eq!(reply.status, StatusCode::OK);
        probabilities.push(
            reply.json()["results"][0]["probability"]
                .as_f64()
                .unwrap()
                .to_bits(),
        );
    }
    assert!(
        probabilities.windows(2).all(|p| p[0] == p[1]),
        "{probabilities:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn null_and_absent_key_are_missing() {
    let app = router(state_with(Some(1)).await);
    let mut with_null = valid_row();
    with_null["Lactate"] = Value::Null;
    with_null["Temp"] = Value::Null;
    let mut absent = valid_row();
    absent.as_object_mut().unwrap().remove("Lactate");
    absent.as_object_mut().unwrap().remove("Temp");
    let first = predict(&app, &json!({"rows": [with_null]})).await.json();
    let second = predict(&app, &json!({"rows": [absent]})).await.json();
    assert_eq!(first["results"], second["results"]);
    // And a missing value is not a zero.
    let mut zero = valid_row();
    zero["Lactate"] = json!(0.0);
    zero["Temp"] = json!(36.0);
    let third = predict(&app, &json!({"rows": [zero]})).await.json();
    assert_ne!(
        first["results"][0]["probability"],
        third["results"][0]["probability"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn explanation_lists_top_contributions() {
    let state = state_with(Some(2)).await;
    let loaded = state.model().unwrap();
    let app = router(state);
    let width = loaded.model.spec().feature_names.len();

    let default = predict(&app, &json!({"rows": [valid_row()], "explain": true})).await;
    assert_eq!(default.status, StatusCode::OK, "{}", default.json());
    let explanation = &default.json()["results"][0]["explanation"];
    assert_eq!(explanation["contributions"].as_array().unwrap().len(), 5);

    // With every feature listed, the contributions add up to the raw score,
    // which the calibration map turns into the returned probability.
    let all = predict(
        &app,
        &json!({"rows": [valid_row()], "explain": true, "top_k": width + 10}),
    )
    .await
    .json();
    let result = &all["results"][0];
    let explanation = &result["explanation"];
    let contributions = explanation["contributions"].as_array().unwrap();
    assert_eq!(contributions.len(), width);
    let magnitudes: Vec<f64> = contributions
        .iter()
        .map(|c| c["contribution"].as_f64().unwrap().abs())
        .collect();
    assert!(
        magnitudes.windows(2).all(|m| m[0] >= m[1]),
        "sorted by magnitude"
    );
    let sum: f64 = contributions
        .iter()
        .map(|c| c["contribution"].as_f64().unwrap())
        .sum::<f64>()
        + explanation["base_value"].as_f64().unwrap();
    let raw = explanation["raw_score"].as_f64().unwrap();
    assert!((sum - raw).abs() < 1e-9, "{sum} vs {raw}");
    let uncalibrated = loaded.model.trees.link().apply(raw);
    let calibrated = loaded.model.card.calibration.apply(uncalibrated);
    assert!((calibrated - result["probability"].as_f64().unwrap()).abs() < 1e-12);
    // HR was sent, so its carried value is listed with it.
    let hr = contributions.iter().find(|c| c["feature"] == "HR").unwrap();
    assert_eq!(hr["value"], 97.0);
    // A feature of a column that was not sent has no value.
    let troponin = contributions
        .iter()
        .find(|c| c["feature"] == "TroponinI")
        .unwrap();
    assert_eq!(troponin["value"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn model_endpoint_returns_card() {
    let app = router(state_with(Some(1)).await);
    let reply = get(&app, "/model").await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["version"], 1);
    assert_eq!(body["model_name"], MODEL_NAME);
    assert!(body["card"]["policy"]["statement"].is_string(), "{body}");
    assert!(body["card"]["intended_use"].is_string());
    let inputs = body["inputs"].as_array().unwrap();
    let age = inputs.iter().find(|i| i["name"] == "Age").unwrap();
    assert_eq!(age["required"], true);
    assert!(!inputs
        .iter()
        .any(|i| i["name"] == "patient_id" || i["name"] == "SepsisLabel"));
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_use_route_templates() {
    let app = router(state_with(Some(1)).await);
    predict(&app, &json!({"rows": [valid_row()]})).await;
    get(&app, "/train/some-job-id").await;
    get(&app, "/no/such/path").await;
    let made_up = Request::builder()
        .method("MADEUP")
        .uri("/predict")
        .body(Body::empty())
        .unwrap();
    send(&app, made_up).await;
    let reply = get(&app, "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    for name in [
        "http_requests_total",
        "http_request_duration_seconds",
        "predicted_probability",
        "predictions_total",
        "model_info",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{text}"
        );
    }
    assert!(text.contains(r#"route="/predict""#), "{text}");
    assert!(text.contains(r#"route="/train/{id}""#), "{text}");
    assert!(text.contains(r#"route="unmatched""#), "{text}");
    assert!(!text.contains("some-job-id"), "{text}");
    assert!(!text.contains("/no/such/path"), "{text}");
    // A method outside the standard set is counted, but not by its name.
    assert!(!text.contains("MADEUP"), "{text}");
    assert!(text.contains(r#"method="other""#), "{text}");
    assert!(text.contains(r#"model_info{version="1"} 1"#), "{text}");
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("predicted_probability_bucket"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_id_is_echoed_or_generated() {
    let app = router(state_with(None).await);
    let reply = send(
        &app,
        Request::get("/health")
            .header("x-request-id", "abc-123")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.headers["x-request-id"], "abc-123");
    let first = get(&app, "/health").await.headers["x-request-id"].clone();
    let second = get(&app, "/no/such/path").await.headers["x-request-id"].clone();
    assert_eq!(first.len(), 36, "a UUID");
    assert_ne!(first, second);
    // Errors carry it too.
    let reply = predict(&app, &json!({"rows": []})).await;
    assert!(reply.headers.contains_key("x-request-id"));
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_documents_the_inputs() {
    let app = router(state_with(None).await);
    let reply = get(&app, "/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = reply.json();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["PredictRequest"]["oneOf"].as_array().unwrap().len(),
        2
    );
    let hr = &schemas["Observation"]["properties"]["HR"];
    assert_eq!(hr["maximum"], 300.0);
    assert_eq!(schemas["Observation"]["additionalProperties"], false);
    let required = schemas["Observation"]["required"].as_array().unwrap();
    assert!(required.contains(&json!("Age")));
    assert_eq!(
        schemas["RowsRequest"]["properties"]["rows"]["maxItems"],
        1000
    );
    for path in [
        "/predict",
        "/health",
        "/ready",
        "/model",
        "/metrics",
        "/train",
        "/train/{id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }

    let docs = get(&app, "/docs/").await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&docs.body).contains("swagger"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_path_and_method_are_json() {
    let app = router(state_with(None).await);
    let reply = get(&app, "/nope").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["error"], "not_found");
    let reply = get(&app, "/predict").await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.json()["error"], "method_not_allowed");
    assert!(reply.headers.contains_key(header::ALLOW));
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_request_times_out_as_json() {
    let mut settings = settings();
    settings.request_timeout = std::time::Duration::from_millis(1);
    let state = state_with_settings(Some(1), settings, TrainSettings::disabled()).await;
    let app = router(state);
    let rows: Vec<Value> = (0..1000).map(|_| valid_row()).collect();
    let reply = predict(&app, &json!({"rows": rows, "explain": true, "top_k": 50})).await;
    assert_eq!(reply.status, StatusCode::REQUEST_TIMEOUT);
    let body = reply.json();
    assert_eq!(body["error"], "timeout");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("request_timeout_ms"));
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_body_is_413_json() {
    let app = router(state_with(Some(1)).await);
    let big = vec![b' '; 2 << 20];
    // With a Content-Length the limit applies before the body is read.
    let request = Request::post("/predict")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, big.len())
        .body(Body::from(big.clone()))
        .unwrap();
    let reply = send(&app, request).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["error"], "body_too_large");
    // Without one, it applies while the body streams in.
    let stream = futures::stream::iter(
        big.chunks(64 << 10)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let request = Request::post("/predict")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap();
    let reply = send(&app, request).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["error"], "body_too_large");
}
