//! The service's errors and their JSON bodies.
//!
//! Every error response, including those that axum and the tower-http layers
//! produce, has the body `{"error": CODE, "detail": TEXT, "field": PATH}`,
//! where `field` is the JSON path of the offending input or `null`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An error returned to the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is not JSON, or not valid UTF-8.
    #[error("{detail}")]
    MalformedJson { detail: String },
    /// The JSON does not fit the request schema or the column schema.
    #[error("{detail}")]
    InvalidInput {
        field: Option<String>,
        detail: String,
    },
    #[error("the request has {rows} hourly rows; at most {limit} are accepted in one request (serve.max_batch)")]
    BatchTooLarge {
        field: &'static str,
        rows: usize,
        limit: usize,
    },
    #[error("expected content type application/json, found {found}")]
    UnsupportedMediaType { found: String },
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("{reason}")]
    NotReady { reason: String },
    #[error("a valid bearer token is required: send the header `Authorization: Bearer <token>`")]
    Unauthorized,
    #[error("training over the API is disabled: start the service with SEPSIS_API_TOKEN set to enable it")]
    TrainingDisabled,
    #[error("training job {running} is still running; start another once it has finished")]
    TrainingRunning { running: String },
    #[error("no training job {id}; the service keeps the most recent jobs since it started")]
    JobNotFound { id: String },
    /// A fault of the service, not of the request. The detail sent to the
    /// client is generic; the error itself is logged once.
    #[error("{context}: {message}")]
    Internal {
        context: &'static str,
        message: String,
    },
}

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code such as `invalid_input`.
    pub error: String,
    /// A description of the error, for a person.
    pub detail: String,
    /// The JSON path of the offending input, such as `rows[2].HR`.
    pub field: Option<String>,
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> ApiError {
        ApiError::InvalidInput {
            field: Some(field.into()),
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson { .. } => StatusCode::BAD_REQUEST,
            ApiError::InvalidInput { .. } | ApiError::BatchTooLarge { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotReady { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::TrainingDisabled => StatusCode::FORBIDDEN,
            ApiError::TrainingRunning { .. } => StatusCode::CONFLICT,
            ApiError::JobNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson { .. } => "malformed_json",
            ApiError::InvalidInput { .. } => "invalid_input",
            ApiError::BatchTooLarge { .. } => "batch_too_large",
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::NotReady { .. } => "not_ready",
            ApiError::Unauthorized => "unauthorized",
            ApiError::TrainingDisabled => "training_disabled",
            ApiError::TrainingRunning { .. } => "training_running",
            ApiError::JobNotFound { .. } => "not_found",
            ApiError::Internal { .. } => "internal_error",
        }
    }

    fn body(&self) -> ErrorBody {
        let detail = match self {
            ApiError::Internal { .. } => {
                "the service failed to answer this request; the error is in its log".to_string()
            }
            other => other.to_string(),
        };
        let field = match self {
            ApiError::InvalidInput { field, .. } => field.clone(),
            ApiError::BatchTooLarge { field, .. } => Some(field.to_string()),
            _ => None,
        };
        ErrorBody {
            error: self.code().to_string(),
            detail,
            field,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Client errors are the client's to read, and their messages may
        // quote patient values, so only internal faults are logged.
        if let ApiError::Internal { .. } = &self {
            tracing::error!(error = %self, "request failed");
        }
        let status = self.status();
        let mut response = json_response(status, &self.body());
        if let ApiError::Unauthorized = self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Builds a JSON response. The bodies are structs with string keys, which
/// `serde_json` always serialises.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).expect("response bodies serialise to JSON");
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Describes an error status that a layer returned without a body of ours,
/// such as 404 for an unknown path or 408 for a timeout.
pub fn describe_status(status: StatusCode, limit: usize) -> ErrorBody {
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => (
            "not_found",
            "no such endpoint; GET /openapi.json lists them".to_string(),
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this endpoint does not accept the request method; GET /openapi.json lists the methods"
                .to_string(),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "timeout",
            "the request did not finish within the configured serve.request_timeout_ms".to_string(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "body_too_large",
            ApiError::BodyTooLarge { limit }.to_string(),
        ),
        StatusCode::INTERNAL_SERVER_ERROR => (
            "internal_error",
            "the service failed to answer this request; the error is in its log".to_string(),
        ),
        other => (
            "http_error",
            other
                .canonical_reason()
                .unwrap_or("the request failed")
                .to_string(),
        ),
    };
    ErrorBody {
        error: code.to_string(),
        detail,
        field: None,
    }
}
