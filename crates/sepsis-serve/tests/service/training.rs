//! `/train`: the token, one job at a time, and the job's report. Small
//! shell scripts that print what `sepsis pipeline --json` prints stand in
//! for the pipeline, so these tests check the job handling only.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use sepsis_serve::{router, ApiToken, TrainSettings};
use serde_json::{json, Value};

use crate::common::*;

const TOKEN: &str = "test-token-5f2a";

/// Writes an executable script that records its arguments, waits, then
/// runs `tail`.
fn script(dir: &Path, name: &str, tail: &str) -> PathBuf {
    let path = dir.join(name);
    let args = dir.join(format!("{name}.args"));
    let text = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nsleep 0.5\n{tail}\n",
        args.display()
    );
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

async fn app_with(program: PathBuf, token: Option<&str>) -> Router {
    let training = TrainSettings {
        program,
        args: vec!["--store".into(), "memory://".into()],
        token: token.map(ApiToken::new),
    };
    router(state_with_settings(None, settings(), training).await)
}

fn train_request(token: Option<&str>, body: &str) -> Request<Body> {
    let mut request = Request::post("/train");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if !body.is_empty() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    request.body(Body::from(body.to_string())).unwrap()
}

fn status_request(location: &str) -> Request<Body> {
    Request::get(location)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap()
}

/// Polls the job until it is no longer running.
async fn finished(app: &Router, location: &str) -> Value {
    for _ in 0..200 {
        let job = send(app, status_request(location)).await.json();
        if job["status"] != "running" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the job did not finish");
}

#[tokio::test(flavor = "multi_thread")]
async fn training_disabled_without_token() {
    let app = app_with(PathBuf::from("/bin/false"), None).await;
    let reply = send(&app, train_request(Some("anything"), "")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let body = reply.json();
    assert_eq!(body["error"], "training_disabled");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("SEPSIS_API_TOKEN"));
    let reply = send(&app, status_request("/train/x")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn training_rejects_wrong_token() {
    let app = app_with(PathBuf::from("/bin/false"), Some(TOKEN)).await;
    for token in [None, Some("wrong"), Some(&TOKEN[..TOKEN.len() - 1])] {
        let reply = send(&app, train_request(token, "")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(reply.json()["error"], "unauthorized");
        assert_eq!(reply.headers[header::WWW_AUTHENTICATE], "Bearer");
    }
    let basic = Request::post("/train")
        .header(header::AUTHORIZATION, format!("Basic {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, basic).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn training_job_reports_gate_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let output = json!({
        "run_id": "20261205T000000.000Z-abcd",
        "registry_version": 3,
        "gate": {"promoted": true, "reasons": ["better"]},
        "metrics": {"model": {"hourly": {"auroc": 0.8}}},
        "data_digest": "d",
    });
    let program = script(dir.path(), "pipeline.sh", &format!("echo '{output}'"));
    let app = app_with(program, Some(TOKEN)).await;

    let reply = send(
        &app,
        train_request(Some(TOKEN), r#"{"data": "-input.csv"}"#),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.json());
    let job = reply.json();
    let location = reply.headers[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(location, format!("/train/{}", job["id"].as_str().unwrap()));
    assert_eq!(job["status"], "running");

    // A second job while the first runs is refused.
    let second = send(&app, train_request(Some(TOKEN), "")).await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert_eq!(second.json()["error"], "training_running");

    let job = finished(&app, &location).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["registry_version"], 3);
    assert_eq!(job["run_id"], "20261205T000000.000Z-abcd");
    assert_eq!(job["gate"]["promoted"], true);
    assert_eq!(job["metrics"]["model"]["hourly"]["auroc"], 0.8);
    assert_eq!(job["exit_code"], 0);

    let args = std::fs::read_to_string(dir.path().join("pipeline.sh.args")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(
        args,
        [
            "--store",
            "memory://",
            "pipeline",
            "--json",
            "--data=-input.csv"
        ]
    );

    // Once it has finished, another job may start.
    let third = send(&app, train_request(Some(TOKEN), "{}")).await;
    assert_eq!(third.status, StatusCode::ACCEPTED);
    let location = third.headers[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    finished(&app, &location).await;

    let metrics = String::from_utf8(get(&app, "/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains(r#"training_jobs_total{event="started"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"training_jobs_total{event="succeeded"} 2"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_training_job_reports_error() {
    let dir = tempfile::tempdir().unwrap();
    let program = script(
        dir.path(),
        "failing.sh",
        "echo 'INFO step started' >&2\necho 'error: pipeline on x.csv failed: line 3: bad value' >&2\nexit 1",
    );
    let app = app_with(program, Some(TOKEN)).await;
    let reply = send(&app, train_request(Some(TOKEN), "")).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let location = reply.headers[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    let job = finished(&app, &location).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["exit_code"], 1);
    assert_eq!(job["error"], "pipeline on x.csv failed: line 3: bad value");
    assert_eq!(job["gate"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn training_request_is_checked() {
    let app = app_with(PathBuf::from("/bin/false"), Some(TOKEN)).await;
    let reply = send(&app, train_request(Some(TOKEN), r#"{"datum": "x"}"#)).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = send(&app, train_request(Some(TOKEN), "{not json")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    // serde would read the struct from an array by field order.
    let reply = send(&app, train_request(Some(TOKEN), "[null]")).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.json()["error"], "invalid_input");
    let reply = send(&app, train_request(Some(TOKEN), "[\"data.csv\"]")).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = send(&app, train_request(Some(TOKEN), "[null")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    // A path no process can take, or one that clap would read as missing.
    for body in [
        r#"{"data": ""}"#,
        r#"{"data": "a\u0000b"}"#,
        r#"{"data": "a\nb"}"#,
    ] {
        let reply = send(&app, train_request(Some(TOKEN), body)).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(reply.json()["field"], "data", "{body}");
    }
    let reply = send(&app, status_request("/train/unknown-id")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["error"], "not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_kills_running_job() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("job.pid");
    let program = script(
        dir.path(),
        "slow.sh",
        &format!("echo $$ > '{}'\nexec sleep 300", pid_file.display()),
    );
    let training = TrainSettings {
        program,
        args: vec!["--store".into(), "memory://".into()],
        token: Some(ApiToken::new(TOKEN)),
    };
    let state = state_with_settings(None, settings(), training).await;
    let app = router(state.clone());
    let server = crate::socket::spawn_server(state).await;
    let reply = crate::socket::client()
        .post(server.url("/train"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 202);
    let location = reply.headers()["location"].to_str().unwrap().to_string();
    let mut pid = String::new();
    for _ in 0..200 {
        pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        if pid.ends_with('\n') {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let process = PathBuf::from(format!("/proc/{}", pid.trim()));
    assert!(process.exists(), "the job's process {pid:?} runs");

    server.shut_down().await;
    let job = send(&app, status_request(&location)).await.json();
    assert_eq!(job["status"], "failed");
    assert_eq!(
        job["error"],
        "stopped: the service shut down while the job ran"
    );
    assert!(!process.exists(), "the job's process was killed and reaped");
}
