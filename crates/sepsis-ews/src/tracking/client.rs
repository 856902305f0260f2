//! A small REST client for the MLflow tracking server: the endpoints that
//! log a run, upload its artifacts through the artifact proxy, and register
//! a model with an alias.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use url::Url;

use super::limits::Batch;
use super::settings::{Credentials, RetryPolicy, TrackingSettings};
use super::wire::{
    CreateExperimentResponse, ErrorBody, GetExperimentResponse, ModelVersionBody,
    ModelVersionResponse, RunInfoBody, RunResponse, SearchModelVersionsResponse,
    SearchRunsResponse, TagBody,
};
use super::TrackingError;

/// Characters of a non-JSON error body kept in a message.
const MAX_ERROR_TEXT: usize = 300;

/// A failed request to the tracking server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// The server responded with a non-success status.
    Status {
        endpoint: String,
        status: u16,
        /// MLflow's `error_code`, such as `RESOURCE_ALREADY_EXISTS`, or empty
        /// when the body was not an MLflow error.
        error_code: String,
        message: String,
    },
    /// No usable response: the connection failed, timed out or broke.
    Transport { endpoint: String, detail: String },
    /// A success status with a body that is not the expected JSON.
    InvalidResponse { endpoint: String, detail: String },
    /// The run's artifact URI is not served through the MLflow artifact proxy.
    UnsupportedArtifactUri { artifact_uri: String },
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Status {
                endpoint,
                status,
                error_code,
                message,
            } => {
                let reason = StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                write!(f, "{endpoint} failed with HTTP {status} {reason}")?;
                if !error_code.is_empty() {
                    write!(f, " ({error_code})")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            ApiError::Transport { endpoint, detail } => write!(f, "{endpoint} failed: {detail}"),
            ApiError::InvalidResponse { endpoint, detail } => {
                write!(f, "{endpoint} returned an invalid response: {detail}")
            }
            ApiError::UnsupportedArtifactUri { artifact_uri } => write!(
                f,
                "the run's artifact URI {artifact_uri} is not served through the tracking \
                 server's artifact proxy (start the MLflow server with --serve-artifacts)"
            ),
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Returns whether no response came back at all, as when the server is down.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ApiError::Transport { .. })
    }

    fn error_code(&self) -> &str {
        match self {
            ApiError::Status { error_code, .. } => error_code,
            _ => "",
        }
    }
}

/// Whether a request may be sent again after a failure whose outcome on the
/// server is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Sending twice has the same effect as once (reads, log-batch, status
    /// updates, artifact uploads, aliases, creates of unique names).
    Safe,
    /// A second copy would create a second object (a run, a model version),
    /// so the request is repeated only when the server never processed it:
    /// a refused connection or HTTP 429.
    OnlyIfNotReceived,
}

pub struct MlflowClient {
    http: reqwest::Client,
    base: Url,
    credentials: Credentials,
    retry: RetryPolicy,
}

impl MlflowClient {
    /// Builds a client for the settings' server, or `None` in local-only mode.
    pub fn new(settings: &TrackingSettings) -> Result<Option<MlflowClient>, TrackingError> {
        let Some(base) = settings.tracking_uri() else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.connect_timeout)
            .user_agent(concat!("sepsis-ews/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| TrackingError::HttpClient { source })?;
        Ok(Some(MlflowClient {
            http,
            base: base.clone(),
            credentials: settings.credentials().clone(),
            retry: settings.retry,
        }))
    }

    /// Returns the tracking URI without a trailing slash, as stored in run records.
    pub fn tracking_uri(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    /// Returns the address of a run in the MLflow web UI.
    pub fn run_url(&self, experiment_id: &str, run_id: &str) -> String {
        format!(
            "{}/#/experiments/{experiment_id}/runs/{run_id}",
            self.tracking_uri()
        )
    }

    /// Returns the id of the named experiment, creating it if it is missing.
    pub async fn ensure_experiment(&self, name: &str) -> Result<String, ApiError> {
        if let Some(id) = self.experiment_id(name).await? {
            return Ok(id);
        }
        let created: Result<CreateExperimentResponse, ApiError> = self
            .post_json("experiments/create", &json!({ "name": name }), Repeat::Safe)
            .await;
        match created {
            Ok(response) => Ok(response.experiment_id),
            // Another client created it between the two requests.
            Err(error) if error.error_code() == "RESOURCE_ALREADY_EXISTS" => {
                self.experiment_id(name).await?.ok_or(error)
            }
            Err(error) => Err(error),
        }
    }

    async fn experiment_id(&self, name: &str) -> Result<Option<String>, ApiError> {
        let found: Result<GetExperimentResponse, ApiError> = self
            .get_json("experiments/get-by-name", &[("experiment_name", name)])
            .await;
        match found {
            Ok(response) => Ok(Some(response.experiment.experiment_id)),
            Err(error) if error.error_code() == "RESOURCE_DOES_NOT_EXIST" => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Finds the run of an experiment that carries tag `key` = `value`.
    pub async fn find_run_by_tag(
        &self,
        experiment_id: &str,
        key: &str,
        value: &str,
    ) -> Result<Option<RunInfoBody>, ApiError> {
        let body = json!({
            "experiment_ids": [experiment_id],
            "filter": format!("tags.`{key}` = '{value}'"),
            "max_results": 1,
        });
        let response: SearchRunsResponse =
            self.post_json("runs/search", &body, Repeat::Safe).await?;
        Ok(response.runs.into_iter().next().map(|run| run.info))
    }

    pub async fn get_run(&self, run_id: &str) -> Result<RunInfoBody, ApiError> {
        let response: RunResponse = self.get_json("runs/get", &[("run_id", run_id)]).await?;
        Ok(response.run.info)
    }

    /// Creates a run with status RUNNING.
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_time_ms: i64,
        tags: &[TagBody],
    ) -> Result<RunInfoBody, ApiError> {
        let body = json!({
            "experiment_id": experiment_id,
            "run_name": run_name,
            "start_time": start_time_ms,
            "tags": tags,
        });
        let response: RunResponse = self
            .post_json("runs/create", &body, Repeat::OnlyIfNotReceived)
            .await?;
        Ok(response.run.info)
    }

    pub async fn log_batch(&self, run_id: &str, batch: &Batch) -> Result<(), ApiError> {
        let body = json!({
            "run_id": run_id,
            "metrics": batch.metrics,
            "params": batch.params,
            "tags": batch.tags,
        });
        let _: serde_json::Value = self
            .post_json("runs/log-batch", &body, Repeat::Safe)
            .await?;
        Ok(())
    }

    /// Sets a run's terminal status (`FINISHED` or `FAILED`) and end time.
    pub async fn update_run(
        &self,
        run_id: &str,
        status: &str,
        end_time_ms: i64,
    ) -> Result<(), ApiError> {
        let body = json!({ "run_id": run_id, "status": status, "end_time": end_time_ms });
        let _: serde_json::Value = self.post_json("runs/update", &body, Repeat::Safe).await?;
        Ok(())
    }

    /// Uploads one artifact file to `relative_path` under the run's artifact
    /// URI, through the server's `mlflow-artifacts` proxy.
    pub async fn upload_artifact(
        &self,
        artifact_uri: &str,
        relative_path: &str,
        data: Bytes,
    ) -> Result<(), ApiError> {
        let url = self.artifact_url(artifact_uri, relative_path)?;
        let endpoint = format!("PUT {}", url.path());
        self.send(Method::PUT, url, endpoint, Some(data), None, Repeat::Safe)
            .await
            .map(|_| ())
    }

    /// Creates a registered model, keeping one that already exists.
    pub async fn ensure_registered_model(&self, name: &str) -> Result<(), ApiError> {
        let created: Result<serde_json::Value, ApiError> = self
            .post_json(
                "registered-models/create",
                &json!({ "name": name }),
                Repeat::Safe,
            )
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(error) if error.error_code() == "RESOURCE_ALREADY_EXISTS" => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Lists the versions of a registered model that were made from a run.
    pub async fn model_versions_of_run(
        &self,
        name: &str,
        run_id: &str,
    ) -> Result<Vec<ModelVersionBody>, ApiError> {
        // Filtering by name happens here, so a name never needs quoting in
        // the filter. Run ids are hex.
        let filter = format!("run_id = '{run_id}'");
        let response: SearchModelVersionsResponse = self
            .get_json("model-versions/search", &[("filter", filter.as_str())])
            .await?;
        let mut versions: Vec<ModelVersionBody> = Vec::new();
        for version in response.model_versions {
            if version.run_id == run_id && name_matches(&version, name) {
                versions.push(version);
            }
        }
        Ok(versions)
    }

    pub async fn create_model_version(
        &self,
        name: &str,
        source: &str,
        run_id: &str,
    ) -> Result<ModelVersionBody, ApiError> {
        let body = json!({ "name": name, "source": source, "run_id": run_id });
        let response: ModelVersionResponse = self
            .post_json("model-versions/create", &body, Repeat::OnlyIfNotReceived)
            .await?;
        Ok(response.model_version)
    }

    /// Points `alias` of a registered model at `version`, moving it from any
    /// other version.
    pub async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<(), ApiError> {
        let body = json!({ "name": name, "alias": alias, "version": version });
        let _: serde_json::Value = self
            .post_json("registered-models/alias", &body, Repeat::Safe)
            .await?;
        Ok(())
    }

    /// Removes `alias` from a registered model. An alias or model that does
    /// not exist counts as removed.
    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<(), ApiError> {
        // The server reads the parameters of this DELETE from a JSON body,
        // not from the query.
        let body = json!({ "name": name, "alias": alias });
        let deleted: Result<serde_json::Value, ApiError> = self
            .send_json(
                Method::DELETE,
                "registered-models/alias",
                &body,
                Repeat::Safe,
            )
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(error) if error.error_code() == "RESOURCE_DOES_NOT_EXIST" => Ok(()),
            Err(error) => Err(error),
        }
    }

    fn api_url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn artifact_url(&self, artifact_uri: &str, relative_path: &str) -> Result<Url, ApiError> {
        let relative: Vec<&str> = relative_path.split('/').collect();

        // A server started with an http(s) artifact root hands out the full
        // upload address.
        let lower = artifact_uri.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let mut url =
                Url::parse(artifact_uri).map_err(|_| ApiError::UnsupportedArtifactUri {
                    artifact_uri: artifact_uri.to_string(),
                })?;
            if let Ok(mut path) = url.path_segments_mut() {
                path.pop_if_empty().extend(&relative);
            }
            return Ok(url);
        }

        let proxied =
            artifact_proxy_path(artifact_uri).ok_or_else(|| ApiError::UnsupportedArtifactUri {
                artifact_uri: artifact_uri.to_string(),
            })?;
        let mut segments = vec!["api", "2.0", "mlflow-artifacts", "artifacts"];
        segments.extend(proxied.split('/').filter(|s| !s.is_empty()));
        segments.extend(relative);
        Ok(self.api_url(&segments))
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ApiError> {
        let segments: Vec<&str> = ["api", "2.0", "mlflow"]
            .into_iter()
            .chain(endpoint.split('/'))
            .collect();
        let mut url = self.api_url(&segments);
        url.query_pairs_mut().extend_pairs(query);
        let name = format!("GET /api/2.0/mlflow/{endpoint}");
        let body = self
            .send(Method::GET, url, name.clone(), None, None, Repeat::Safe)
            .await?;
        parse_json(&name, &body)
    }

    async fn post_json<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &impl Serialize,
        repeat: Repeat,
    ) -> Result<T, ApiError> {
        self.send_json(Method::POST, endpoint, body, repeat).await
    }

    /// Sends `body` as JSON to an MLflow REST endpoint and parses the JSON
    /// response.
    async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        body: &impl Serialize,
        repeat: Repeat,
    ) -> Result<T, ApiError> {
        let segments: Vec<&str> = ["api", "2.0", "mlflow"]
            .into_iter()
            .chain(endpoint.split('/'))
            .collect();
        let url = self.api_url(&segments);
        let name = format!("{method} /api/2.0/mlflow/{endpoint}");
        let payload = serde_json::to_vec(body).map_err(|error| ApiError::InvalidResponse {
            endpoint: name.clone(),
            detail: format!("the request body could not be encoded: {error}"),
        })?;
        let content_type = HeaderValue::from_static("application/json");
        let response = self
            .send(
                method,
                url,
                name.clone(),
                Some(Bytes::from(payload)),
                Some(content_type),
                repeat,
            )
            .await?;
        parse_json(&name, &response)
    }

    /// Sends one request with retries and returns the body of a success
    /// response.
    async fn send(
        &self,
        method: Method,
        url: Url,
        endpoint: String,
        body: Option<Bytes>,
        content_type: Option<HeaderValue>,
        repeat: Repeat,
    ) -> Result<Bytes, ApiError> {
        let mut attempt = 1;
        loop {
            let mut request = self.http.request(method.clone(), url.clone());
            request = match &self.credentials {
                Credentials::None => request,
                Credentials::Basic { username, password } => {
                    request.basic_auth(username, Some(password.expose()))
                }
                Credentials::Bearer(token) => {
                    request.header(AUTHORIZATION, format!("Bearer {}", token.expose()))
                }
            };
            if let Some(content_type) = &content_type {
                request = request.header(CONTENT_TYPE, content_type.clone());
            }
            if let Some(body) = &body {
                request = request.body(body.clone());
            }

            let (error, retryable, retry_after) = match request.send().await {
                Ok(response) if response.status().is_success() => match response.bytes().await {
                    Ok(bytes) => return Ok(bytes),
                    Err(error) => {
                        let retryable = repeat == Repeat::Safe;
                        (transport_error(&endpoint, &error), retryable, None)
                    }
                },
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(response.headers().get(RETRY_AFTER));
                    let text = response.bytes().await.unwrap_or_default();
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS
                        || (status.is_server_error() && repeat == Repeat::Safe);
                    (
                        status_error(&endpoint, status, &text),
                        retryable,
                        retry_after,
                    )
                }
                Err(error) => {
                    let retryable = error.is_connect() || repeat == Repeat::Safe;
                    (transport_error(&endpoint, &error), retryable, None)
                }
            };

            let delay = match self.retry.delay_after(attempt) {
                Some(delay) if retryable => delay,
                _ => return Err(error),
            };
            let delay = retry_after
                .map_or(delay, |server| server.max(delay))
                .min(self.retry.max_delay);
            tracing::warn!(
                endpoint = %endpoint,
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "MLflow request failed, retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

fn name_matches(version: &ModelVersionBody, name: &str) -> bool {
    // The search response of MLflow 3.17 carries the name in every version.
    // A server that omits it is trusted, because the filter was by run id.
    version.name.as_deref().is_none_or(|found| found == name)
}

/// Returns the path of an `mlflow-artifacts:` URI relative to the proxy root,
/// as in `1/<run id>/artifacts` for `mlflow-artifacts:/1/<run id>/artifacts`.
///
/// NOTE: a URI with an authority (`mlflow-artifacts://host:port/...`) is sent
/// to the tracking URI's host all the same.
fn artifact_proxy_path(artifact_uri: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    let path = match rest.strip_prefix("//") {
        Some(with_authority) => with_authority
            .find('/')
            .map_or("", |i| &with_authority[i..]),
        None => rest,
    };
    Some(path.trim_matches('/').to_string())
}

fn parse_json<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<T, ApiError> {
    // Some endpoints return an empty body where an empty object is meant.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|error| ApiError::InvalidResponse {
        endpoint: endpoint.to_string(),
        detail: error.to_string(),
    })
}

fn status_error(endpoint: &str, status: StatusCode, body: &[u8]) -> ApiError {
    let (error_code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => (parsed.error_code, parsed.message),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let shortened: String = text.chars().take(MAX_ERROR_TEXT).collect();
            (String::new(), shortened)
        }
    };
    ApiError::Status {
        endpoint: endpoint.to_string(),
        status: status.as_u16(),
        error_code,
        message,
    }
}

/// Describes a transport error by its chain of causes, without the URL that
/// reqwest puts in its own message.
fn transport_error(endpoint: &str, error: &reqwest::Error) -> ApiError {
    let mut parts: Vec<String> = Vec::new();
    if error.is_timeout() {
        parts.push("timed out".to_string());
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() {
        let summary = if error.is_connect() {
            "connection failed"
        } else if error.is_body() || error.is_decode() {
            "reading the response failed"
        } else {
            "sending the request failed"
        };
        parts.push(summary.to_string());
    }
    ApiError::Transport {
        endpoint: endpoint.to_string(),
        detail: parts.join(": "),
    }
}

/// Reads a `Retry-After` header given in seconds.
fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let seconds: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn proxy_path_of_artifact_uri() {
        assert_eq!(
            artifact_proxy_path("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            artifact_proxy_path("mlflow-artifacts://host:5000/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(artifact_proxy_path("s3://bucket/1/abc/artifacts"), None);
    }

    fn client(uri: &str) -> MlflowClient {
        let settings = TrackingSettings::new(Some(uri), "", Credentials::None).unwrap();
        MlflowClient::new(&settings).unwrap().unwrap()
    }

    #[test]
    fn artifact_url_goes_through_proxy() {
        let client = client("https://dagshub.com/user/repo.mlflow");
        let url = client
            .artifact_url("mlflow-artifacts:/7/abc/artifacts", "model/model file.txt")
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://dagshub.com/user/repo.mlflow/api/2.0/mlflow-artifacts/artifacts/7/abc/artifacts/model/model%20file.txt"
        );
    }

    #[test]
    fn artifact_url_rejects_unproxied_uri() {
        let client = client("http://127.0.0.1:5000/");
        let error = client
            .artifact_url("s3://bucket/7/abc/artifacts", "model.txt")
            .unwrap_err();
        assert!(error.to_string().contains("--serve-artifacts"), "{error}");
    }

    #[test]
    fn api_url_keeps_base_path() {
        let client = client("http://127.0.0.1:5000/mlflow/");
        let url = client.api_url(&["api", "2.0", "mlflow", "runs", "create"]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5000/mlflow/api/2.0/mlflow/runs/create"
        );
    }

    #[test]
    fn status_error_reads_mlflow_body() {
        let error = status_error(
            "POST /api/2.0/mlflow/runs/create",
            StatusCode::BAD_REQUEST,
            br#"{"error_code": "INVALID_PARAMETER_VALUE", "message": "bad key"}"#,
        );
        assert_eq!(error.error_code(), "INVALID_PARAMETER_VALUE");
        assert_eq!(
            error.to_string(),
            "POST /api/2.0/mlflow/runs/create failed with HTTP 400 Bad Request (INVALID_PARAMETER_VALUE): bad key"
        );
    }

    #[test]
    fn status_error_keeps_plain_text_short() {
        let body = "x".repeat(1000);
        let error = status_error("GET /x", StatusCode::UNAUTHORIZED, body.as_bytes());
        let text = error.to_string();
        assert!(text.contains("HTTP 401 Unauthorized"), "{text}");
        assert!(text.len() < 400, "{} characters", text.len());
    }

    /// Serves one canned HTTP response per connection on 127.0.0.1, in
    /// order, repeating the last one, and counts the requests.
    fn canned_server(responses: &[(u16, &str)]) -> (String, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let served = Arc::clone(&count);
        let responses: Vec<(u16, String)> = responses
            .iter()
            .map(|(status, body)| (*status, body.to_string()))
            .collect();

        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                read_request(&mut stream);
                let index = served
                    .fetch_add(1, Ordering::SeqCst)
                    .min(responses.len() - 1);
                let (status, body) = &responses[index];
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        (address, count)
    }

    /// Reads one request, its body included, so closing the socket does not
    /// reset the connection under the client.
    fn read_request(stream: &mut std::net::TcpStream) {
        let mut data = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let Ok(read) = stream.read(&mut buffer) else {
                return;
            };
            if read == 0 {
                return;
            }
            data.extend_from_slice(&buffer[..read]);
            let text = String::from_utf8_lossy(&data);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if data.len() >= end + 4 + length {
                    return;
                }
            }
        }
    }

    fn fast_client(uri: &str) -> MlflowClient {
        let settings = TrackingSettings::new(Some(uri), "", Credentials::None)
            .unwrap()
            .with_retry(RetryPolicy {
                max_attempts: 3,
                initial_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
            });
        MlflowClient::new(&settings).unwrap().unwrap()
    }

    const RUN_JSON: &str = r#"{"run": {"info": {"run_id": "r1", "experiment_id": "1", "artifact_uri": "mlflow-artifacts:/1/r1/artifacts"}}}"#;

    #[tokio::test]
    async fn server_errors_are_retried() {
        let (uri, count) = canned_server(&[(503, "{}")]);
        let error = fast_client(&uri).get_run("r1").await.unwrap_err();
        assert!(error.to_string().contains("HTTP 503"), "{error}");
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn rate_limit_is_retried_until_success() {
        let (uri, count) = canned_server(&[(429, "{}"), (200, RUN_JSON)]);
        let info = fast_client(&uri).get_run("r1").await.unwrap();
        assert_eq!(info.run_id, "r1");
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        for status in [400, 401, 403, 404] {
            let (uri, count) =
                canned_server(&[(status, r#"{"error_code": "X", "message": "no"}"#)]);
            let error = fast_client(&uri).get_run("r1").await.unwrap_err();
            assert!(
                error.to_string().contains(&format!("HTTP {status}")),
                "{error}"
            );
            assert_eq!(count.load(Ordering::SeqCst), 1, "HTTP {status}");
        }
    }

    #[tokio::test]
    async fn run_creation_is_not_repeated_after_server_error() {
        let (uri, count) = canned_server(&[(503, "{}"), (200, RUN_JSON)]);
        let error = fast_client(&uri)
            .create_run("1", "train", 0, &[])
            .await
            .unwrap_err();
        assert!(error.to_string().contains("HTTP 503"), "{error}");
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refused_connection_is_unreachable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = fast_client(&format!("http://127.0.0.1:{port}"))
            .create_run("1", "train", 0, &[])
            .await
            .unwrap_err();
        assert!(error.is_unreachable(), "{error}");
    }

    #[test]
    fn retry_after_reads_seconds() {
        let header = HeaderValue::from_static("3");
        assert_eq!(retry_after(Some(&header)), Some(Duration::from_secs(3)));
        let date = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(retry_after(Some(&date)), None);
    }
}
