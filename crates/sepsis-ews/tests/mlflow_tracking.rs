//! MLflow tracking against real MLflow servers, read back with MLflow's own
//! Python client (`scripts/check_mlflow.py`).
//!
//! `scripts/test` starts two servers on 127.0.0.1 (`scripts/lib/mlflow.sh`)
//! and exports `SEPSIS_TEST_MLFLOW_URI`, `SEPSIS_TEST_MLFLOW_AUTH_URI` with
//! `SEPSIS_TEST_MLFLOW_USERNAME` and `SEPSIS_TEST_MLFLOW_PASSWORD`, and
//! `SEPSIS_TEST_MLFLOW_BIN`, which the outage test uses to run a server of
//! its own that it can stop and restart.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};

use sepsis_ews::storage::{Area, Store};
use sepsis_ews::tracking::{
    self, Credentials, RetryPolicy, RunState, RunStatus, Secret, SyncMode, Tracker,
    TrackingOutcome, TrackingSettings, ERROR_TAG, LOCAL_RUN_ID_TAG,
};

const MODEL_TEXT: &[u8] = b"tree\nversion=v4\nnum_class=1\n";

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests through scripts/test, \
             which starts local MLflow servers"
        )
    })
}

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Short retries, so tests that meet a stopped server stay fast.
fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
    }
}

fn plain_settings(uri: &str, experiment: &str) -> TrackingSettings {
    TrackingSettings::new(Some(uri), experiment, Credentials::None).unwrap()
}

fn auth_settings(experiment: &str, password: &str) -> TrackingSettings {
    let credentials = Credentials::Basic {
        username: required_env("SEPSIS_TEST_MLFLOW_USERNAME"),
        password: Secret::new(password),
    };
    TrackingSettings::new(
        Some(&required_env("SEPSIS_TEST_MLFLOW_AUTH_URI")),
        experiment,
        credentials,
    )
    .unwrap()
}

/// Arguments of `scripts/check_mlflow.py` besides the run id.
#[derive(Default)]
struct CheckOptions<'a> {
    experiment: Option<&'a str>,
    model: Option<&'a str>,
}

/// Reads a run with MLflow's Python client and returns the checker's JSON.
fn read_with_python(settings: &TrackingSettings, run_id: &str, options: CheckOptions) -> Value {
    let python = required_env("SEPSIS_TEST_PYTHON");
    let uri = settings
        .tracking_uri()
        .expect("a remote server")
        .to_string();
    let mut command = Command::new(&python);
    command
        .arg(repo_path("scripts/check_mlflow.py"))
        .arg(run_id)
        .env("MLFLOW_TRACKING_URI", uri)
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .env("DO_NOT_TRACK", "true")
        .env_remove("MLFLOW_TRACKING_USERNAME")
        .env_remove("MLFLOW_TRACKING_PASSWORD")
        .env_remove("MLFLOW_TRACKING_TOKEN");
    if let Credentials::Basic { username, password } = settings.credentials() {
        command
            .env("MLFLOW_TRACKING_USERNAME", username)
            .env("MLFLOW_TRACKING_PASSWORD", password.expose());
    }
    if let Some(experiment) = options.experiment {
        command.args(["--experiment", experiment]);
    }
    if let Some(model) = options.model {
        command.args(["--model", model]);
    }

    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{python} could not be started: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "check_mlflow.py failed:\n{stderr}\n{stdout}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("invalid checker output {e}: {stdout}"))
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Logs a complete training run: params past one batch, a metric history,
/// names MLflow rejects, non-finite values, artifacts and a model
/// registration.
async fn log_training_run(run: &mut tracking::TrackedRun) {
    let mut params: Vec<(String, String)> = (0..150)
        .map(|i| (format!("feature_{i:03}"), format!("{i}")))
        .collect();
    params.push(("num_leaves".into(), "31".into()));
    params.push(("objective(binary)".into(), "binary".into()));
    params.push(("long_value".into(), "x".repeat(7000)));
    run.log_params(&params);

    run.log_metrics(&[
        ("auroc", 0.81),
        ("auroc(setB)", 0.77),
        ("recall@0.5", 0.6),
        ("brier_nan", f64::NAN),
        ("ratio_inf", f64::INFINITY),
    ]);
    for step in 0..1200 {
        run.log_metric("train/loss", 1.0 / (step as f64 + 1.0), step);
    }

    run.set_tags(&[("data.version", "v3"), ("owner(team)", "icu")]);
    run.add_artifact("model/model.txt", Bytes::from_static(MODEL_TEXT))
        .await
        .unwrap();
    run.add_artifact(
        "reports/evaluation report.md",
        Bytes::from_static(b"# Report\n"),
    )
    .await
    .unwrap();
}

/// Checks a run logged by [`log_training_run`], as read by Python.
fn assert_training_run(checked: &Value, local_run_id: &str) {
    let run = &checked["run"];
    assert_eq!(run["status"], "FINISHED");
    assert_eq!(run["name"], "train");

    let params = &run["params"];
    assert_eq!(params.as_object().unwrap().len(), 153);
    assert_eq!(params["num_leaves"], "31");
    assert_eq!(params["feature_149"], "149");
    assert_eq!(params["objective_binary_"], "binary");
    assert_eq!(params["long_value"].as_str().unwrap().len(), 6000);

    let metrics = &run["metrics"];
    assert_eq!(metrics["auroc"], 0.81);
    assert_eq!(metrics["auroc_setB_"], 0.77);
    assert_eq!(metrics["recall_0.5"], 0.6);
    assert_eq!(metrics["brier_nan"], "NaN");
    assert_eq!(metrics["ratio_inf"], f64::MAX);
    assert_eq!(metrics["train/loss"], 1.0 / 1200.0);
    assert_eq!(run["metric_history_lengths"]["train/loss"], 1200);
    assert_eq!(run["metric_history_lengths"]["auroc"], 1);

    let tags = &run["tags"];
    assert_eq!(tags["data.version"], "v3");
    assert_eq!(tags["owner_team_"], "icu");
    assert_eq!(tags[LOCAL_RUN_ID_TAG], local_run_id);

    let artifacts: Vec<&str> = run["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        artifacts,
        ["model/model.txt", "reports/evaluation report.md"]
    );
}

/// Checks that `models:/<name>@champion` resolves to the run's model.
fn assert_champion(checked: &Value, run_id: &str, version: &str) {
    let model = &checked["model"];
    assert_eq!(model["version"], version);
    assert_eq!(model["run_id"], run_id);
    assert_eq!(model["aliases"], serde_json::json!(["champion"]));
    assert!(
        model["source"]
            .as_str()
            .unwrap()
            .ends_with("/artifacts/model"),
        "{}",
        model["source"]
    );
    assert_eq!(model["files"]["model.txt"], sha256_hex(MODEL_TEXT));
}

async fn log_and_check(settings: TrackingSettings) {
    let store = Store::in_memory();
    let model_name = unique("sepsis-lightgbm");
    let tracker = Tracker::new(settings.clone(), store.clone());

    let mut run = tracker.start("train", &[("stage", "test")]).await.unwrap();
    let run_id = run
        .mlflow_run_id()
        .expect("the MLflow run is created at start")
        .to_string();
    let local_run_id = run.local_run_id().to_string();
    log_training_run(&mut run).await;
    run.register_model(&model_name);
    let outcome = run.finish(RunStatus::Finished).await.unwrap();

    let TrackingOutcome::Logged {
        mlflow_run_id, url, ..
    } = &outcome
    else {
        panic!("expected a logged run, got {outcome:?}");
    };
    assert_eq!(mlflow_run_id, &run_id);
    assert!(url.contains(&run_id), "{url}");

    let checked = read_with_python(
        &settings,
        &run_id,
        CheckOptions {
            model: Some(&model_name),
            ..CheckOptions::default()
        },
    );
    assert_training_run(&checked, &local_run_id);
    assert_champion(&checked, &run_id, "1");

    let record = tracking::show_run(&store, &local_run_id).await.unwrap();
    assert_eq!(record.sync.mode, SyncMode::Synced);
    assert_eq!(record.sync.model_version.as_deref(), Some("1"));
    assert_eq!(record.params["long_value"].len(), 7000);
    assert_eq!(record.metrics[1].key, "auroc(setB)");
}

#[tokio::test]
async fn plain_server_run_reads_back() {
    let uri = required_env("SEPSIS_TEST_MLFLOW_URI");
    log_and_check(plain_settings(&uri, &unique("plain"))).await;
}

#[tokio::test]
async fn basic_auth_run_reads_back() {
    let password = required_env("SEPSIS_TEST_MLFLOW_PASSWORD");
    log_and_check(auth_settings(&unique("auth"), &password)).await;
}

#[tokio::test]
async fn failed_run_carries_error() {
    let uri = required_env("SEPSIS_TEST_MLFLOW_URI");
    let settings = plain_settings(&uri, &unique("failed"));
    let store = Store::in_memory();
    let tracker = Tracker::new(settings.clone(), store.clone());

    let mut run = tracker
        .start("train", &[] as &[(&str, &str)])
        .await
        .unwrap();
    run.log_params(&[("num_leaves", "31")]);
    run.register_model(&unique("never-registered"));
    let local_run_id = run.local_run_id().to_string();
    let outcome = run
        .finish(RunStatus::Failed("feature table is empty".into()))
        .await
        .unwrap();
    let TrackingOutcome::Logged { mlflow_run_id, .. } = &outcome else {
        panic!("expected a logged run, got {outcome:?}");
    };

    let checked = read_with_python(&settings, mlflow_run_id, CheckOptions::default());
    assert_eq!(checked["run"]["status"], "FAILED");
    assert_eq!(checked["run"]["tags"][ERROR_TAG], "feature table is empty");
    assert_eq!(checked["run"]["params"]["num_leaves"], "31");

    let record = tracking::show_run(&store, &local_run_id).await.unwrap();
    assert_eq!(record.status, RunState::Failed);
    assert_eq!(record.sync.mode, SyncMode::Synced);
    assert_eq!(record.sync.model_version, None);
}

#[tokio::test]
async fn wrong_password_saves_for_sync() {
    let settings = auth_settings(&unique("denied"), "not-the-password");
    let store = Store::in_memory();
    let tracker = Tracker::new(settings, store.clone());

    let mut run = tracker
        .start("train", &[] as &[(&str, &str)])
        .await
        .unwrap();
    assert_eq!(run.mlflow_run_id(), None);
    run.log_metrics(&[("auroc", 0.8)]);
    let local_run_id = run.local_run_id().to_string();
    let outcome = run.finish(RunStatus::Finished).await.unwrap();

    let TrackingOutcome::SavedForSync { reason, .. } = &outcome else {
        panic!("expected a run saved for sync, got {outcome:?}");
    };
    assert!(reason.contains("401"), "{reason}");
    assert!(!reason.contains("not-the-password"), "{reason}");

    let record = tracking::show_run(&store, &local_run_id).await.unwrap();
    assert_eq!(record.sync.mode, SyncMode::Pending);
    assert_eq!(record.status, RunState::Finished);
    assert_eq!(record.metrics.len(), 1);
    assert!(
        record.sync.last_error.as_deref().unwrap().contains("401"),
        "{:?}",
        record.sync.last_error
    );
}

/// An MLflow server run by a test, on a fixed port and SQLite file, so it can
/// be stopped and started again. Dropping it stops it.
struct OwnServer {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl OwnServer {
    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(dir: &Path, port: u16) -> OwnServer {
        let mut server = OwnServer {
            dir: dir.to_path_buf(),
            port,
            child: None,
        };
        server.restart();
        server
    }

    fn restart(&mut self) {
        let binary = required_env("SEPSIS_TEST_MLFLOW_BIN");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        // `mlflow server` runs uvicorn as a child process, so the server gets
        // its own process group and `stop` ends the whole group.
        let child = Command::new(&binary)
            .arg("server")
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}/mlflow.db", self.dir.display()))
            .arg("--serve-artifacts")
            .arg("--artifacts-destination")
            .arg(self.dir.join("artifacts"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--workers", "1"])
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .env("DO_NOT_TRACK", "true")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{binary} could not be started: {e}"));
        self.child = Some(child);
        self.wait_until_healthy();
    }

    fn wait_until_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if health_check_passes(self.port) {
                return;
            }
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    let log =
                        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                    panic!("the MLflow server exited with {status}; its log:\n{log}");
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "the MLflow server on {} did not start within 120 s",
            self.uri()
        );
    }

    /// Kills the server's process group at once, as a crash or a network
    /// outage would end it.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals the process group that
        // `process_group(0)` created for this child; it touches no memory.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = child.wait();
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `GET /health` over a plain socket and checks for HTTP 200.
fn health_check_passes(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

/// Removes the MLflow run id and artifact URI from a stored run record,
/// keeping `run_create_sent`.
async fn forget_mlflow_run(store: &Store, local_run_id: &str) {
    let key = format!("{}{local_run_id}/run.json", tracking::RUNS_PREFIX);
    let bytes = store.get(Area::Artifacts, &key).await.unwrap();
    let mut record: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(record["sync"]["run_create_sent"], true);
    record["sync"]["mlflow_run_id"] = Value::Null;
    record["sync"]["artifact_uri"] = Value::Null;
    let bytes = serde_json::to_vec(&record).unwrap();
    store
        .put(Area::Artifacts, &key, Bytes::from(bytes))
        .await
        .unwrap();
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread")]
async fn outage_run_is_synced_later() {
    // Fails early, with the message, when scripts/test did not run this.
    required_env("SEPSIS_TEST_MLFLOW_BIN");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = OwnServer::start(dir.path(), port);
    let experiment = unique("outage");
    let model_name = unique("sepsis-lightgbm");
    let settings = plain_settings(&server.uri(), &experiment).with_retry(fast_retry());
    let store = Store::in_memory();
    let tracker = Tracker::new(settings.clone(), store.clone());

    // A run created on the server, which then goes down mid-run.
    let mut interrupted = tracker.start("train", &[("stage", "test")]).await.unwrap();
    let interrupted_run_id = interrupted
        .mlflow_run_id()
        .expect("the MLflow run is created at start")
        .to_string();
    let interrupted_local_id = interrupted.local_run_id().to_string();
    log_training_run(&mut interrupted).await;
    interrupted.register_model(&model_name);
    server.stop();
    let outcome = interrupted.finish(RunStatus::Finished).await.unwrap();
    let TrackingOutcome::SavedForSync { reason, .. } = &outcome else {
        panic!("expected a run saved for sync, got {outcome:?}");
    };
    assert!(reason.contains("runs/log-batch"), "{reason}");

    // The interrupted run's record loses its MLflow run id, as if the
    // response of runs/create had been lost in the outage: sync must find
    // the run by its local id tag and not create a second one.
    forget_mlflow_run(&store, &interrupted_local_id).await;

    // A run started and finished while the server is down.
    let mut offline = tracker
        .start("evaluate", &[] as &[(&str, &str)])
        .await
        .unwrap();
    assert_eq!(offline.mlflow_run_id(), None);
    offline.log_metrics(&[("auroc", 0.79)]);
    let offline_local_id = offline.local_run_id().to_string();
    let outcome = offline.finish(RunStatus::Finished).await.unwrap();
    assert!(
        matches!(outcome, TrackingOutcome::SavedForSync { .. }),
        "{outcome:?}"
    );

    // Sync while the server is still down reaches it once and leaves both
    // runs pending.
    let report = tracking::sync(&settings, &store).await.unwrap();
    assert!(report.synced.is_empty(), "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.not_attempted.len(), 1, "{report:?}");

    server.restart();
    let report = tracking::sync(&settings, &store).await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.synced.len(), 2, "{report:?}");
    let synced_interrupted = report
        .synced
        .iter()
        .find(|run| run.local_run_id == interrupted_local_id)
        .expect("the interrupted run is synced");
    assert_eq!(synced_interrupted.mlflow_run_id, interrupted_run_id);
    let offline_run_id = report
        .synced
        .iter()
        .find(|run| run.local_run_id == offline_local_id)
        .expect("the offline run is synced")
        .mlflow_run_id
        .clone();

    let checked = read_with_python(
        &settings,
        &interrupted_run_id,
        CheckOptions {
            experiment: Some(&experiment),
            model: Some(&model_name),
        },
    );
    assert_training_run(&checked, &interrupted_local_id);
    assert_champion(&checked, &interrupted_run_id, "1");
    let mut expected_runs = vec![interrupted_run_id.clone(), offline_run_id.clone()];
    expected_runs.sort();
    assert_eq!(
        checked["experiment_run_ids"],
        serde_json::json!(expected_runs)
    );

    // A second sync finds nothing to do and creates nothing.
    let report = tracking::sync(&settings, &store).await.unwrap();
    assert!(report.synced.is_empty(), "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.already_synced, 2, "{report:?}");
    let checked = read_with_python(
        &settings,
        &interrupted_run_id,
        CheckOptions {
            experiment: Some(&experiment),
            model: Some(&model_name),
        },
    );
    assert_eq!(
        checked["experiment_run_ids"],
        serde_json::json!(expected_runs)
    );
    assert_eq!(checked["model"]["all_versions"], serde_json::json!(["1"]));
    assert_eq!(checked["run"]["metric_history_lengths"]["train/loss"], 1200);

    let offline_checked = read_with_python(&settings, &offline_run_id, CheckOptions::default());
    assert_eq!(offline_checked["run"]["status"], "FINISHED");
    assert_eq!(offline_checked["run"]["metrics"]["auroc"], 0.79);
    assert_eq!(offline_checked["run"]["name"], "evaluate");
}
