//! The request handlers.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{json_response, ApiError, ErrorBody};
use crate::predict::{AlertRuleBody, PredictResponse};
use crate::train::{self, Job, TrainRequest};
use crate::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthBody {
    /// `ok` whenever the process responds.
    pub status: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReadyBody {
    /// `ready`.
    pub status: String,
    /// The registry version being served.
    pub version: u32,
}

/// The served model, as `GET /model` returns it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelBody {
    pub model_name: String,
    pub version: u32,
    pub run_id: String,
    /// The location the version's files were read from.
    pub location: String,
    /// When this service loaded the version, RFC 3339.
    pub loaded_at: String,
    pub alert_rule: AlertRuleBody,
    /// The input columns `/predict` accepts, in schema order.
    pub inputs: Vec<InputField>,
    /// The model card: intended use, calibration, alert policy, validation
    /// results beside the baselines, limitations.
    #[schema(value_type = Object)]
    pub card: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InputField {
    pub name: String,
    /// Every row needs a value.
    pub required: bool,
    /// The allowed values, as `[0, 300]` or `one of 0, 1`.
    pub allowed: String,
    pub unit: Option<String>,
    pub description: Option<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, description = "The process responds", body = HealthBody)))]
pub async fn health() -> Response {
    json_response(
        StatusCode::OK,
        &HealthBody {
            status: "ok".into(),
        },
    )
}

/// Reports whether a model is loaded, so that `/predict` can score requests.
#[utoipa::path(get, path = "/ready", tag = "service",
    responses(
        (status = 200, description = "A production model is loaded", body = ReadyBody),
        (status = 503, description = "No model is loaded yet; `detail` gives the reason", body = ErrorBody),
    ))]
pub async fn ready(State(state): State<AppState>) -> Result<Response, ApiError> {
    match state.model() {
        Some(model) => Ok(json_response(
            StatusCode::OK,
            &ReadyBody {
                status: "ready".into(),
                version: model.version,
            },
        )),
        None => Err(ApiError::NotReady {
            reason: state
                .not_ready_reason()
                .unwrap_or_else(|| "no model loaded yet".into()),
        }),
    }
}

/// The model being served: its registry version and model card.
#[utoipa::path(get, path = "/model", tag = "model",
    responses(
        (status = 200, description = "The served model", body = ModelBody),
        (status = 503, description = "No model is loaded yet", body = ErrorBody),
    ))]
pub async fn model(State(state): State<AppState>) -> Result<Response, ApiError> {
    let loaded = state.model().ok_or_else(|| not_ready(&state))?;
    let card = serde_json::to_value(&loaded.model.card).map_err(|e| ApiError::Internal {
        context: "serialising the model card failed",
        message: e.to_string(),
    })?;
    let rule = loaded.model.card.policy.rule;
    let inputs = state
        .inputs()
        .columns()
        .iter()
        .map(|c| InputField {
            name: c.name.clone(),
            required: c.required,
            allowed: c.allowed_description(),
            unit: c.unit.clone().filter(|u| !u.is_empty()),
            description: c.description.clone(),
        })
        .collect();
    let body = ModelBody {
        model_name: state.registry().model_name().to_string(),
        version: loaded.version,
        run_id: loaded.run_id.clone(),
        location: loaded.model.location.clone(),
        loaded_at: loaded.loaded_at.clone(),
        alert_rule: AlertRuleBody {
            threshold: rule.threshold,
            hold_hours: rule.hold_hours,
        },
        inputs,
        card,
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// Scores hourly rows or patient histories with the production model.
///
/// The body has either `rows`, independent hourly rows each scored as a stay
/// of one hour, or `patients`, each an id and its hourly observations in
/// order of strictly increasing `ICULOS`, scored like `sepsis predict`
/// scores a file. A history returns its last hour, or every hour with
/// `"all_hours": true`. `"explain": true` adds the `top_k` largest feature
/// contributions (TreeSHAP, in units of the raw score). A missing value is `null` or an
/// absent key.
#[utoipa::path(post, path = "/predict", tag = "model",
    request_body(content = crate::openapi::PredictRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One result per row, or per patient (per hour with all_hours)", body = PredictResponse),
        (status = 400, description = "The body is not valid JSON", body = ErrorBody),
        (status = 413, description = "The body is larger than serve.max_body_bytes", body = ErrorBody),
        (status = 415, description = "The content type is not application/json", body = ErrorBody),
        (status = 422, description = "The JSON does not fit the request or column schema; `field` names the value", body = ErrorBody),
        (status = 503, description = "No model is loaded yet", body = ErrorBody),
    ))]
pub async fn predict(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    require_json(request.headers())?;
    let body = read_body(request, &state).await?;
    let loaded = state.model().ok_or_else(|| not_ready(&state))?;

    // Parsing and scoring are CPU work, kept off the threads that run I/O.
    let worker = state.clone();
    let scored = tokio::task::spawn_blocking(move || -> Result<PredictResponse, ApiError> {
        let settings = worker.settings();
        let request = worker
            .inputs()
            .parse(&body, settings.max_batch, settings.top_k)?;
        crate::predict::score(&request, &loaded, worker.registry().model_name())
    })
    .await
    .map_err(|e| ApiError::Internal {
        context: "the scoring task failed",
        message: e.to_string(),
    })??;

    state.metrics().observe_predictions(
        scored
            .results
            .iter()
            .map(|result| (result.probability, result.alert)),
    );
    Ok(json_response(StatusCode::OK, &scored))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Metrics with HELP and TYPE lines", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let model = state.model();
    let drift = model
        .as_ref()
        .and_then(|m| m.drift.as_ref())
        .map(|d| d.report());
    state
        .metrics()
        .observe_drift(drift.as_ref(), state.settings().drift_min_rows);
    let mut response = state.metrics().render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Starts `sepsis pipeline` on the service's store as a background job.
///
/// Needs `Authorization: Bearer <SEPSIS_API_TOKEN>`. One job runs at a time.
/// The pipeline registers its model and runs the gate, which may promote it;
/// the service then serves the new production version.
#[utoipa::path(post, path = "/train", tag = "training",
    request_body(content = Option<TrainRequest>, content_type = "application/json",
        description = "Optional; an empty body trains on data.default_input"),
    responses(
        (status = 202, description = "The job started; `Location` is its status URL", body = Job,
            headers(("Location" = String, description = "/train/{id}"))),
        (status = 400, description = "The body is not valid JSON", body = ErrorBody),
        (status = 401, description = "The bearer token is missing or wrong", body = ErrorBody),
        (status = 403, description = "Training is disabled: SEPSIS_API_TOKEN was not set", body = ErrorBody),
        (status = 409, description = "A job is already running", body = ErrorBody),
        (status = 415, description = "A body was sent that is not application/json", body = ErrorBody),
        (status = 422, description = "The JSON does not fit the request schema", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn start_training(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    authorize(&state, request.headers())?;
    let headers = request.headers().clone();
    let body = read_body(request, &state).await?;
    let train_request = if body.iter().all(u8::is_ascii_whitespace) {
        TrainRequest::default()
    } else {
        require_json(&headers)?;
        crate::input::parse_json_object::<TrainRequest>(&body)?
    };
    let job = train::start(&state, train_request)?;
    let mut response = json_response(StatusCode::ACCEPTED, &job);
    let location = HeaderValue::from_str(&format!("/train/{}", job.id))
        .expect("a UUID is a valid header value");
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

/// The status of a training job, with the gate's decision and the run's
/// measures once it has finished.
#[utoipa::path(get, path = "/train/{id}", tag = "training",
    params(("id" = String, Path, description = "The job id from POST /train")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 401, description = "The bearer token is missing or wrong", body = ErrorBody),
        (status = 403, description = "Training is disabled", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn training_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let job = state.jobs().get(&id).ok_or(ApiError::JobNotFound { id })?;
    Ok(json_response(StatusCode::OK, &job))
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state.jobs().authorize(header)
}

fn not_ready(state: &AppState) -> ApiError {
    ApiError::NotReady {
        reason: state
            .not_ready_reason()
            .unwrap_or_else(|| "no model loaded yet".into()),
    }
}

/// Accepts `application/json`, with parameters such as a charset, and any
/// `application/*+json` type, as axum's own JSON extractor does.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let found = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let is_json = found.as_deref().is_some_and(|value| {
        let essence = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"))
    });
    match (is_json, found) {
        (true, _) => Ok(()),
        (false, Some(found)) => Err(ApiError::UnsupportedMediaType {
            found: format!("{found:?}"),
        }),
        (false, None) => Err(ApiError::UnsupportedMediaType {
            found: "no Content-Type header".into(),
        }),
    }
}

async fn read_body(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| match rejection {
            BytesRejection::FailedToBufferBody(failure)
                if failure.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                ApiError::BodyTooLarge {
                    limit: state.settings().max_body_bytes,
                }
            }
            other => ApiError::MalformedJson {
                detail: format!("reading the request body failed: {}", other.body_text()),
            },
        })
}
