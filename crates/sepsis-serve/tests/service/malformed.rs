//! Malformed `/predict` requests: each gets a 4xx with the JSON error body,
//! never a 5xx, and the input errors name the field.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

/// A body and the headers it is sent with.
struct Case {
    name: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: StatusCode,
    /// The expected `field`, when the error is about one value.
    field: Option<&'static str>,
}

fn json_case(
    name: &'static str,
    body: Value,
    status: StatusCode,
    field: Option<&'static str>,
) -> Case {
    Case {
        name,
        content_type: Some("application/json"),
        body: body.to_string().into_bytes(),
        status,
        field,
    }
}

fn raw_case(name: &'static str, body: &[u8], status: StatusCode) -> Case {
    Case {
        name,
        content_type: Some("application/json"),
        body: body.to_vec(),
        status,
        field: None,
    }
}

fn row_with(key: &str, value: Value) -> Value {
    let mut row = valid_row();
    row[key] = value;
    json!({ "rows": [row] })
}

fn row_without(key: &str) -> Value {
    let mut row = valid_row();
    row.as_object_mut().unwrap().remove(key);
    json!({ "rows": [row] })
}

fn history(observations: Vec<Value>) -> Value {
    json!({"patients": [{"patient_id": "p1", "observations": observations}]})
}

fn at_hour(hour: f64) -> Value {
    let mut row = valid_row();
    row["ICULOS"] = json!(hour);
    row
}

fn cases() -> Vec<Case> {
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let bad = StatusCode::BAD_REQUEST;
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_row = format!(
        "{{\"rows\":[{{\"HR\":{}1{}}}]}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let too_many: Vec<Value> = (0..1001).map(|_| valid_row()).collect();
    let too_many_hours: Vec<Value> = (0..1001).map(|h| at_hour(f64::from(h))).collect();
    let ten_megabytes = format!(
        "{{\"rows\":[{}]}}",
        std::iter::repeat_n(valid_row().to_string(), 50_000)
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(ten_megabytes.len() > 10 << 20);
    let mut invalid_utf8 = b"{\"patients\":[{\"patient_id\":\"".to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
    invalid_utf8
        .extend_from_slice(b"\",\"observations\":[{\"Age\":50,\"Gender\":1,\"ICULOS\":1}]}]}");

    vec![
        json_case(
            "string NaN in a number",
            row_with("HR", json!("NaN")),
            unprocessable,
            Some("rows[0].HR"),
        ),
        json_case(
            "text in a number",
            row_with("Temp", json!("abc")),
            unprocessable,
            Some("rows[0].Temp"),
        ),
        json_case(
            "number as string",
            row_with("Age", json!("67")),
            unprocessable,
            Some("rows[0].Age"),
        ),
        json_case(
            "boolean in a number",
            row_with("HR", json!(true)),
            unprocessable,
            Some("rows[0].HR"),
        ),
        json_case(
            "array in a number",
            row_with("HR", json!([97])),
            unprocessable,
            Some("rows[0].HR"),
        ),
        json_case(
            "object in a number",
            row_with("HR", json!({"value": 97})),
            unprocessable,
            Some("rows[0].HR"),
        ),
        json_case(
            "null in required Age",
            row_with("Age", Value::Null),
            unprocessable,
            Some("rows[0].Age"),
        ),
        json_case(
            "missing required Age",
            row_without("Age"),
            unprocessable,
            Some("rows[0].Age"),
        ),
        json_case(
            "missing required hour",
            row_without("ICULOS"),
            unprocessable,
            Some("rows[0].ICULOS"),
        ),
        json_case(
            "unknown column",
            row_with("HeartRate", json!(90)),
            unprocessable,
            Some("rows[0].HeartRate"),
        ),
        json_case(
            "label is not an input",
            row_with("SepsisLabel", json!(0)),
            unprocessable,
            Some("rows[0].SepsisLabel"),
        ),
        json_case(
            "patient id inside a row",
            row_with("patient_id", json!("p1")),
            unprocessable,
            Some("rows[0].patient_id"),
        ),
        json_case(
            "out of range",
            row_with("HR", json!(500)),
            unprocessable,
            Some("rows[0].HR"),
        ),
        json_case(
            "negative out of range",
            row_with("Age", json!(-1)),
            unprocessable,
            Some("rows[0].Age"),
        ),
        json_case(
            "not a level",
            row_with("Gender", json!(2)),
            unprocessable,
            Some("rows[0].Gender"),
        ),
        json_case(
            "unknown top-level field",
            json!({"rows": [valid_row()], "extra": 1}),
            unprocessable,
            None,
        ),
        json_case(
            "empty batch",
            json!({"rows": []}),
            unprocessable,
            Some("rows"),
        ),
        json_case(
            "no patients",
            json!({"patients": []}),
            unprocessable,
            Some("patients"),
        ),
        json_case("neither rows nor patients", json!({}), unprocessable, None),
        json_case(
            "both rows and patients",
            json!({"rows": [valid_row()], "patients": []}),
            unprocessable,
            None,
        ),
        json_case(
            "rows not an array",
            json!({"rows": valid_row()}),
            unprocessable,
            Some("rows"),
        ),
        json_case(
            "row not an object",
            json!({"rows": [[1, 2]]}),
            unprocessable,
            Some("rows[0]"),
        ),
        json_case(
            "patient as an array",
            json!({"patients": [["p1", [valid_row()]]]}),
            unprocessable,
            Some("patients[0]"),
        ),
        json_case(
            "body is an array",
            json!([valid_row()]),
            unprocessable,
            None,
        ),
        json_case("body is a number", json!(42), unprocessable, None),
        json_case(
            "oversized batch",
            json!({"rows": too_many}),
            unprocessable,
            Some("rows"),
        ),
        json_case(
            "oversized history",
            history(too_many_hours),
            unprocessable,
            Some("patients"),
        ),
        json_case(
            "hours out of order",
            history(vec![at_hour(3.0), at_hour(2.0)]),
            unprocessable,
            Some("patients[0].observations[1].ICULOS"),
        ),
        json_case(
            "duplicate hour",
            history(vec![at_hour(3.0), at_hour(3.0)]),
            unprocessable,
            Some("patients[0].observations[1].ICULOS"),
        ),
        json_case(
            "empty history",
            history(vec![]),
            unprocessable,
            Some("patients[0].observations"),
        ),
        json_case(
            "duplicate patient",
            json!({"patients": [
                {"patient_id": "p1", "observations": [at_hour(1.0)]},
                {"patient_id": "p1", "observations": [at_hour(2.0)]}
            ]}),
            unprocessable,
            Some("patients[1].patient_id"),
        ),
        json_case(
            "empty patient id",
            json!({"patients": [{"patient_id": "", "observations": [at_hour(1.0)]}]}),
            unprocessable,
            Some("patients[0].patient_id"),
        ),
        json_case(
            "numeric patient id",
            json!({"patients": [{"patient_id": 7, "observations": [at_hour(1.0)]}]}),
            unprocessable,
            Some("patients[0].patient_id"),
        ),
        json_case(
            "blank patient id",
            json!({"patients": [{"patient_id": "   ", "observations": [at_hour(1.0)]}]}),
            unprocessable,
            Some("patients[0].patient_id"),
        ),
        json_case(
            "missing patient id",
            json!({"patients": [{"observations": [at_hour(1.0)]}]}),
            unprocessable,
            Some("patients[0]"),
        ),
        json_case(
            "unknown patient field",
            json!({"patients": [{"patient_id": "p", "age": 3, "observations": [at_hour(1.0)]}]}),
            unprocessable,
            Some("patients[0].age"),
        ),
        json_case(
            "all_hours with rows",
            json!({"rows": [valid_row()], "all_hours": true}),
            unprocessable,
            Some("all_hours"),
        ),
        json_case(
            "null all_hours with rows",
            json!({"rows": [valid_row()], "all_hours": null}),
            unprocessable,
            Some("all_hours"),
        ),
        json_case(
            "explain not a boolean",
            json!({"rows": [valid_row()], "explain": "yes"}),
            unprocessable,
            Some("explain"),
        ),
        json_case(
            "top_k zero",
            json!({"rows": [valid_row()], "explain": true, "top_k": 0}),
            unprocessable,
            Some("top_k"),
        ),
        json_case(
            "top_k negative",
            json!({"rows": [valid_row()], "explain": true, "top_k": -3}),
            unprocessable,
            Some("top_k"),
        ),
        raw_case(
            "duplicate key in a row",
            br#"{"rows":[{"Age":50,"Gender":1,"ICULOS":1,"HR":80,"HR":90}]}"#,
            unprocessable,
        ),
        raw_case(
            "number beyond float range",
            br#"{"rows":[{"Age":50,"Gender":1,"ICULOS":1,"HR":1e999}]}"#,
            bad,
        ),
        raw_case(
            "NaN literal",
            br#"{"rows":[{"Age":50,"Gender":1,"ICULOS":1,"HR":NaN}]}"#,
            bad,
        ),
        raw_case(
            "Infinity literal",
            br#"{"rows":[{"Age":50,"Gender":1,"ICULOS":1,"HR":Infinity}]}"#,
            bad,
        ),
        raw_case("truncated JSON", br#"{"rows":[{"Age":50"#, bad),
        raw_case(
            "trailing garbage",
            br#"{"rows":[{"Age":50,"Gender":1,"ICULOS":1}]} x"#,
            bad,
        ),
        raw_case("empty body", b"", bad),
        raw_case("not JSON", b"HR=97&Age=50", bad),
        // serde reads a struct from an array too, so this fails at the
        // second level as a wrong type, before the recursion limit.
        raw_case("deep nesting", deep.as_bytes(), unprocessable),
        raw_case("array instead of an object", b"[null]", unprocessable),
        raw_case(
            "array of rows as the body",
            b"[[{\"HR\": 97}]]",
            unprocessable,
        ),
        raw_case("malformed array", b"[null", bad),
        raw_case("deep nesting in a value", deep_row.as_bytes(), bad),
        raw_case("invalid UTF-8", &invalid_utf8, bad),
        raw_case(
            "10 MB body",
            ten_megabytes.as_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        Case {
            name: "wrong content type",
            content_type: Some("text/plain"),
            body: json!({"rows": [valid_row()]}).to_string().into_bytes(),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            field: None,
        },
        Case {
            name: "form content type",
            content_type: Some("application/x-www-form-urlencoded"),
            body: b"rows=1".to_vec(),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            field: None,
        },
        Case {
            name: "no content type",
            content_type: None,
            body: json!({"rows": [valid_row()]}).to_string().into_bytes(),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            field: None,
        },
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_get_json_4xx() {
    let app = axum_app().await;
    let cases = cases();
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for case in cases {
        let mut request = Request::post("/predict");
        if let Some(content_type) = case.content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let reply = send(&app, request.body(Body::from(case.body)).unwrap()).await;
        let body: Option<Value> = serde_json::from_slice(&reply.body).ok();
        let problem = match &body {
            _ if reply.status != case.status => Some(format!(
                "status {} instead of {}: {}",
                reply.status,
                case.status,
                String::from_utf8_lossy(&reply.body)
            )),
            None => Some("the body is not JSON".to_string()),
            Some(body) if !body["error"].is_string() || !body["detail"].is_string() => {
                Some(format!("not the error shape: {body}"))
            }
            Some(body) if case.field.is_some() && body["field"] != json!(case.field) => {
                Some(format!(
                    "field {} instead of {:?}: {body}",
                    body["field"], case.field
                ))
            }
            Some(body) if body.as_object().is_some_and(|o| !o.contains_key("field")) => {
                Some(format!("no field key: {body}"))
            }
            _ => None,
        };
        if let Some(problem) = problem {
            failures.push(format!("{}: {problem}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The detail of a type error names the field and what was found.
#[tokio::test(flavor = "multi_thread")]
async fn nan_string_error_names_field() {
    let app = axum_app().await;
    let reply = predict(&app, &row_with("HR", json!("NaN"))).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = reply.json();
    assert_eq!(body["error"], "invalid_input");
    assert_eq!(body["field"], "rows[0].HR");
    assert!(
        body["detail"].as_str().unwrap().contains("\"NaN\""),
        "{body}"
    );
}

async fn axum_app() -> axum::Router {
    sepsis_serve::router(state_with(Some(1)).await)
}
