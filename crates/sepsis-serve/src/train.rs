//! Training over the API: `POST /train` runs `sepsis pipeline --json` as a
//! child process, one job at a time, and `GET /train/{id}` reports it.
//!
//! The pipeline registers its model and runs the gate itself, so a job that
//! wins the gate moves the production pointer, and the model watcher then
//! serves the new version. The job table lives in memory: a restarted
//! service loses earlier jobs, while their runs stay in the store.
//!
//! When the service shuts down, it kills a running job's process and
//! waits for it to exit, and the job ends as failed. The killed run leaves
//! a partial run folder under `artifacts/runs/` and, when tracking is on,
//! an MLflow run that stays open. A job killed before its register step
//! leaves the registry alone; one killed during the tracking step after it
//! has already registered its version.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::io::AsyncReadExt;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::AppState;

/// The environment variable holding the bearer token of `/train`.
pub const TOKEN_VARIABLE: &str = "SEPSIS_API_TOKEN";

/// Finished jobs kept for `GET /train/{id}`; older ones are forgotten.
const KEPT_JOBS: usize = 50;
/// The most of a job's standard output read, in bytes.
const MAX_STDOUT_BYTES: u64 = 64 << 20;
/// The most of a job's standard error kept, in bytes, to find its error.
const MAX_STDERR_BYTES: usize = 64 << 10;

/// The bearer token that authorises training. Its `Debug` output hides it.
#[derive(Clone)]
pub struct ApiToken {
    digest: [u8; 32],
}

impl ApiToken {
    pub fn new(token: &str) -> ApiToken {
        ApiToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Reads the token from `SEPSIS_API_TOKEN`; unset or empty disables training.
    pub fn from_env() -> Option<ApiToken> {
        std::env::var(TOKEN_VARIABLE)
            .ok()
            .filter(|t| !t.is_empty())
            .map(|t| ApiToken::new(&t))
    }

    /// Compares in constant time. Both sides are hashed first, so the time
    /// depends on neither the token's content nor its length.
    pub fn matches(&self, candidate: &str) -> bool {
        let candidate: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        self.digest.ct_eq(&candidate).into()
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<hidden>)")
    }
}

/// The command that starts a training run.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    /// The `sepsis` executable; `sepsis serve` passes its own path.
    pub program: PathBuf,
    /// Global flags placed before `pipeline --json`, such as `--store URI`,
    /// so the job uses the service's store and configuration.
    pub args: Vec<OsString>,
    /// `None` disables `/train`.
    pub token: Option<ApiToken>,
}

impl TrainSettings {
    /// Training disabled.
    pub fn disabled() -> TrainSettings {
        TrainSettings {
            program: PathBuf::from("sepsis"),
            args: Vec::new(),
            token: None,
        }
    }
}

/// The body of `POST /train`; an empty body is the same as `{}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    /// Input data on the service's machine, in any format `sepsis data
    /// import` reads [default: the configured data.default_input].
    pub data: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Running,
    Succeeded,
    Failed,
}

/// A training job, as `GET /train/{id}` returns it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: String,
    pub status: JobStatus,
    /// RFC 3339 times.
    pub started_at: String,
    pub finished_at: Option<String>,
    /// The input given in the request, if any.
    pub data: Option<String>,
    /// The pipeline's run id, once it succeeded.
    pub run_id: Option<String>,
    /// The registry version the run became.
    pub registry_version: Option<u32>,
    /// The gate's decision, as `sepsis pipeline --json` prints it.
    #[schema(value_type = Option<Object>)]
    pub gate: Option<serde_json::Value>,
    /// The run's measures, as `sepsis pipeline --json` prints them.
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<serde_json::Value>,
    /// The pipeline's error message, when it failed.
    pub error: Option<String>,
    pub exit_code: Option<i32>,
}

#[derive(Debug)]
pub struct Jobs {
    settings: TrainSettings,
    table: Mutex<VecDeque<Job>>,
    /// A flag that turns true when the service shuts down, which stops a
    /// running job.
    stopping: tokio::sync::watch::Sender<bool>,
    /// The task that waits for the running job's process.
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Jobs {
    pub fn new(settings: TrainSettings) -> Jobs {
        Jobs {
            settings,
            table: Mutex::new(VecDeque::new()),
            stopping: tokio::sync::watch::Sender::new(false),
            watcher: Mutex::new(None),
        }
    }

    /// Kills the running job's process, if any, and waits until the job is
    /// recorded as failed. Call it once no request can start another job.
    pub async fn stop(&self) {
        self.stopping.send_replace(true);
        let watcher = self
            .watcher
            .lock()
            .expect("the lock is not poisoned")
            .take();
        if let Some(watcher) = watcher {
            let _ = watcher.await;
        }
    }

    /// Checks the `Authorization` header against the token.
    pub fn authorize(&self, header: Option<&str>) -> Result<(), ApiError> {
        let Some(token) = &self.settings.token else {
            return Err(ApiError::TrainingDisabled);
        };
        let presented = header.and_then(|value| {
            let (scheme, credentials) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(credentials.trim())
        });
        match presented {
            Some(candidate) if token.matches(candidate) => Ok(()),
            _ => Err(ApiError::Unauthorized),
        }
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        let table = self.table.lock().expect("the lock is not poisoned");
        table.iter().find(|job| job.id == id).cloned()
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Job)) {
        let mut table = self.table.lock().expect("the lock is not poisoned");
        if let Some(job) = table.iter_mut().find(|job| job.id == id) {
            change(job);
        }
    }
}

/// Checks the `data` of a training request before it becomes an argument of
/// the pipeline. An empty path, or one with a control character such as a
/// NUL byte that no process argument can hold, is invalid input.
fn check_data_path(data: &str) -> Result<(), ApiError> {
    if data.is_empty() {
        return Err(ApiError::invalid(
            "data",
            "must not be empty; omit the key to train on the configured data.default_input",
        ));
    }
    if let Some(c) = data.chars().find(|c| c.is_control()) {
        return Err(ApiError::invalid(
            "data",
            format!(
                "contains the control character {c:?}; send a file path on the service's machine"
            ),
        ));
    }
    Ok(())
}

/// Starts a pipeline run unless one is running, and returns its job.
pub fn start(state: &AppState, request: TrainRequest) -> Result<Job, ApiError> {
    if let Some(data) = &request.data {
        check_data_path(data)?;
    }
    let jobs = state.jobs();
    let settings = &jobs.settings;
    let mut command = tokio::process::Command::new(&settings.program);
    command
        .args(&settings.args)
        .arg("pipeline")
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(data) = &request.data {
        // One argument, so a path that starts with '-' is not read as a flag.
        let mut flag = OsString::from("--data=");
        flag.push(data);
        command.arg(flag);
    }

    // Checking for a running job and registering the new one happen under
    // one lock, so two requests cannot both start a job.
    let mut table = jobs.table.lock().expect("the lock is not poisoned");
    if let Some(running) = table.iter().find(|j| j.status == JobStatus::Running) {
        return Err(ApiError::TrainingRunning {
            running: running.id.clone(),
        });
    }
    let child = command.spawn().map_err(|e| ApiError::Internal {
        context: "starting the training pipeline failed",
        message: format!("{}: {e}", settings.program.display()),
    })?;
    let job = Job {
        id: uuid::Uuid::new_v4().to_string(),
        status: JobStatus::Running,
        started_at: chrono::Utc::now().to_rfc3339(),
        finished_at: None,
        data: request.data,
        run_id: None,
        registry_version: None,
        gate: None,
        metrics: None,
        error: None,
        exit_code: None,
    };
    while table.len() >= KEPT_JOBS {
        table.pop_front();
    }
    table.push_back(job.clone());

    state.metrics().training_job("started");
    tracing::info!(job_id = %job.id, "training job started");
    let id = job.id.clone();
    let stopping = jobs.stopping.subscribe();
    let watcher = tokio::spawn(watch(state.clone(), id, child, stopping));
    *jobs.watcher.lock().expect("the lock is not poisoned") = Some(watcher);
    drop(table);
    Ok(job)
}

/// Waits for the child, or kills it when the service stops, then records
/// its outcome.
async fn watch(
    state: AppState,
    id: String,
    mut child: tokio::process::Child,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let started = std::time::Instant::now();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let read_stdout = async {
        let mut text = Vec::new();
        if let Some(stdout) = stdout {
            let _ = stdout.take(MAX_STDOUT_BYTES).read_to_end(&mut text).await;
        }
        text
    };
    let read_stderr = async {
        let mut tail = Vec::new();
        if let Some(mut stderr) = stderr {
            let mut chunk = vec![0u8; 8192];
            while let Ok(n) = stderr.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > MAX_STDERR_BYTES {
                    tail.drain(..tail.len() - MAX_STDERR_BYTES);
                }
            }
        }
        tail
    };
    let mut stopped = false;
    let stop_requested = async move {
        if stopping.wait_for(|stop| *stop).await.is_err() {
            // The job table is gone, so nothing can ask for a stop.
            std::future::pending::<()>().await;
        }
    };
    let exited = async {
        tokio::select! {
            status = child.wait() => status,
            () = stop_requested => {
                stopped = true;
                // A failed kill is ignored: the wait below reports how the process
                // ended either way.
                let _ = child.start_kill();
                child.wait().await
            }
        }
    };
    let (stdout, stderr, status) = tokio::join!(read_stdout, read_stderr, exited);

    let finished_at = chrono::Utc::now().to_rfc3339();
    let exit_code = status.as_ref().ok().and_then(|s| s.code());
    let outcome = match status {
        _ if stopped => Err("stopped: the service shut down while the job ran".to_string()),
        Ok(status) if status.success() => parse_outcome(&stdout),
        Ok(_) => Err(error_line(&stderr)),
        Err(e) => Err(format!("waiting for the pipeline failed: {e}")),
    };
    let succeeded = outcome.is_ok();
    state.jobs().update(&id, |job| {
        job.finished_at = Some(finished_at);
        job.exit_code = exit_code;
        match outcome {
            Ok(result) => {
                job.status = JobStatus::Succeeded;
                job.run_id = result.run_id;
                job.registry_version = result.registry_version;
                job.gate = result.gate;
                job.metrics = result.metrics;
            }
            Err(message) => {
                job.status = JobStatus::Failed;
                job.error = Some(message);
            }
        }
    });
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if succeeded {
        state.metrics().training_job("succeeded");
        tracing::info!(job_id = %id, elapsed_ms, "training job succeeded");
        // A promotion is served at once rather than at the next poll.
        state.request_refresh();
    } else {
        state.metrics().training_job("failed");
        tracing::warn!(job_id = %id, exit_code, elapsed_ms, "training job failed");
    }
}

/// The fields of `sepsis pipeline --json` that a job reports.
#[derive(Debug, Deserialize)]
struct PipelineOutput {
    run_id: Option<String>,
    registry_version: Option<u32>,
    gate: Option<serde_json::Value>,
    metrics: Option<serde_json::Value>,
}

fn parse_outcome(stdout: &[u8]) -> Result<PipelineOutput, String> {
    serde_json::from_slice(stdout)
        .map_err(|e| format!("the pipeline succeeded but its JSON output could not be read: {e}"))
}

/// Finds the `error: …` line that `sepsis` prints last when a command fails.
fn error_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .rev()
        .find_map(|line| line.strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| "the pipeline failed without an error message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matches_only_itself() {
        let token = ApiToken::new("s3cret");
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches("s3cret "));
        assert!(!token.matches(""));
        assert_eq!(format!("{token:?}"), "ApiToken(<hidden>)");
    }

    #[test]
    fn error_line_is_last_error() {
        let stderr = b"2026 INFO step\nerror: first\nerror: pipeline on x failed: bad value\n";
        assert_eq!(error_line(stderr), "pipeline on x failed: bad value");
        assert!(error_line(b"no message").contains("without an error message"));
    }
}
