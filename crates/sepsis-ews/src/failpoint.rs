//! Named points where a run can be made to fail on purpose, so tests can
//! show that a failure at any of them leaves the store consistent and
//! production unchanged. Setting `SEPSIS_FAIL_AT=<point>` arms one point for
//! the process; unset, every check passes.

/// The environment variable that arms a point.
pub const ENV: &str = "SEPSIS_FAIL_AT";

/// Every point, in the order a pipeline run reaches them. Moving the
/// production pointer is the run's last write that can fail it.
pub const POINTS: [&str; 6] = [
    "pipeline.after-ingest",
    "pipeline.after-transform",
    "pipeline.after-train",
    "registry.before-version-record",
    "pipeline.after-register",
    "registry.before-pointer",
];

#[derive(Debug, thiserror::Error)]
#[error("failure injected at {point} by {ENV}")]
pub struct InjectedFailure {
    pub point: &'static str,
}

/// Fails when `point` is the one armed.
pub fn check(point: &'static str) -> Result<(), InjectedFailure> {
    debug_assert!(POINTS.contains(&point), "unknown fail point {point}");
    match std::env::var(ENV) {
        Ok(armed) if armed == point => {
            tracing::warn!(point, "injected failure");
            Err(InjectedFailure { point })
        }
        _ => Ok(()),
    }
}
