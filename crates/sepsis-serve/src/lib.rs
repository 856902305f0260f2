//! The prediction service behind `sepsis serve`: an HTTP API that scores
//! hourly ICU data with the production model of the registry.
//!
//! [`router`] builds the axum [`Router`] from an [`AppState`], so tests can
//! drive it without a socket; [`serve`] runs it on a listener with the model
//! watcher and graceful shutdown. The endpoints:
//!
//! | endpoint | what it does |
//! | --- | --- |
//! | `POST /predict` | scores `rows` or `patients` (see [`routes::predict`]) |
//! | `GET /model` | the served version and its model card |
//! | `GET /health`, `GET /ready` | liveness, and whether a model is loaded |
//! | `GET /metrics` | Prometheus metrics |
//! | `POST /train`, `GET /train/{id}` | a pipeline run as a background job |
//! | `GET /openapi.json`, `GET /docs` | the OpenAPI document and Swagger UI |
//!
//! Every response carries an `x-request-id` header, the client's or a new
//! UUID, and every error has the JSON body of [`error::ErrorBody`]. Each
//! request is logged once, with its method, route template, status, latency
//! and request id; bodies, and so patient data, are never logged.

pub mod error;
mod input;
pub mod metrics;
mod openapi;
pub mod predict;
pub mod routes;
mod state;
pub mod train;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderName, Response as HttpResponse, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;
use utoipa_swagger_ui::SwaggerUi;

pub use crate::error::ApiError;
pub use crate::state::{AppState, LoadError, LoadedModel, Refresh, ServeSettings};
pub use crate::train::{ApiToken, TrainSettings};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route label of requests that matched no route, so unknown paths
/// cannot add labels without bound.
const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the server failed")]
    Serve(#[source] std::io::Error),
}

/// Builds the service's router over `state`.
pub fn router(state: AppState) -> Router {
    let settings = state.settings().clone();
    let document = openapi::document(state.inputs(), &settings);

    let routes = Router::new()
        .route("/health", get(routes::health))
        .route("/ready", get(routes::ready))
        .route("/model", get(routes::model))
        .route("/predict", post(routes::predict))
        .route("/metrics", get(routes::metrics))
        .route("/train", post(routes::start_training))
        .route("/train/{id}", get(routes::training_status))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", document))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state.clone());

    // Each layer wraps the ones added before it, so the last one added sees
    // the request first and the response last.
    routes
        .layer(RequestBodyLimitLayer::new(settings.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            settings.request_timeout,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(
            settings.max_body_bytes,
            json_errors,
        ))
        .layer(middleware::from_fn_with_state(state, record_metrics))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(log_response)
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        // The body limit above applies to every route; axum's own default
        // limit of 2 MB would otherwise cap a larger configured one.
        .layer(DefaultBodyLimit::disable())
}

/// Serves `state` on `listener` until `shutdown` completes, then lets the
/// requests in flight finish. The model watcher runs meanwhile, so the
/// service starts without a production model and becomes ready once one
/// appears.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(ServeError::Serve)?;
    let watcher = state.spawn_model_watcher();
    tracing::info!(%addr, model = state.registry().model_name(), "listening");
    // NOTE: axum's serve sets no HTTP/1 header read timeout, so a client that
    // never completes its request headers keeps its connection open. The
    // README says to run the service behind a proxy that bounds this.
    let result = axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    watcher.abort();
    state.jobs().stop().await;
    tracing::info!(%addr, "stopped");
    result.map_err(ServeError::Serve)
}

/// Binds `addr` and serves until SIGTERM or Ctrl-C.
pub async fn run(addr: SocketAddr, state: AppState) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    serve(listener, state, shutdown_signal()).await
}

/// Completes on Ctrl-C or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "listening for Ctrl-C failed");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "listening for SIGTERM failed");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested; finishing the requests in flight");
}

/// Returns the route template the request matched, such as `/train/{id}`.
fn route_of<B>(request: &axum::http::Request<B>) -> &str {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
}

fn request_span<B>(request: &axum::http::Request<B>) -> Span {
    let route = route_of(request);
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = method_label(request.method()),
        route,
        request_id,
    )
}

/// Returns the method's name for logs and metric labels. A client may send
/// any token as the method, and every new name would add metric series, so
/// a method outside the standard set is labelled `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ];
    STANDARD
        .iter()
        .find(|m| *m == method)
        .map_or("other", |m| m.as_str())
}

fn log_response<B>(response: &HttpResponse<B>, latency: Duration, span: &Span) {
    tracing::info!(
        parent: span,
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "request finished"
    );
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = route_of(&request).to_string();
    let response = next.run(request).await;
    state.metrics().observe_request(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Gives a JSON body to error responses that a layer or axum produced
/// without one: unknown paths, wrong methods, timeouts, oversized bodies.
async fn json_errors(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_error = status.is_client_error() || status.is_server_error();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !is_error || is_json {
        return response;
    }
    let (parts, _) = response.into_parts();
    let mut replaced = error::json_response(status, &error::describe_status(status, limit));
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            replaced.headers_mut().insert(name, value.clone());
        }
    }
    replaced
}

/// Returns 500 for a handler that panicked; the error is logged by
/// [`ApiError`]'s response.
fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal {
        context: "a request handler panicked",
        message: String::new(),
    }
    .into_response()
}
