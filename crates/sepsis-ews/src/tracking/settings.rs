//! Tracking settings: where runs go, which credentials to send, and how often
//! to retry.

use std::fmt;
use std::time::Duration;

use url::Url;

use super::TrackingError;

/// Experiment name used when `MLFLOW_EXPERIMENT_NAME` is unset or empty.
pub const DEFAULT_EXPERIMENT: &str = "sepsis-ews";

/// A secret string (password or token) whose `Debug` output is redacted, so
/// it never reaches a log line or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// Returns the secret itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Credentials sent with every request to the tracking server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    /// HTTP basic authentication, as MLflow's `basic-auth` app and DagsHub use.
    Basic {
        username: String,
        password: Secret,
    },
    /// An `Authorization: Bearer` token.
    Bearer(Secret),
}

/// Retry schedule for requests that fail with a connection error, a timeout,
/// HTTP 429 or HTTP 5xx. Other 4xx responses are never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first one included. 0 counts as 1.
    pub max_attempts: u32,
    /// Delay before the second attempt. Each later delay doubles.
    pub initial_delay: Duration,
    /// Upper bound of one delay, also for a server's `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Four attempts with delays of 200, 400 and 800 ms, so an unreachable
    /// server costs about 1.4 s per request before the run is saved for sync.
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Returns the delay after failed attempt `attempt` (1-based), or `None`
    /// when no attempt is left.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts.max(1) {
            return None;
        }
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        let delay = self.initial_delay.saturating_mul(factor);
        Some(delay.min(self.max_delay))
    }
}

/// Tracking configuration: the server, the experiment, the credentials and
/// the request limits.
///
/// Only an `http://` or `https://` tracking URI sends runs to a server. An
/// unset or empty `MLFLOW_TRACKING_URI`, a `file:` URI and a plain path all
/// mean local only: runs are kept in the project's local run store and
/// nothing is sent, because this crate has no writer for MLflow's file store.
#[derive(Debug, Clone)]
pub struct TrackingSettings {
    tracking_uri: Option<Url>,
    experiment_name: String,
    credentials: Credentials,
    /// Retry schedule of every request.
    pub retry: RetryPolicy,
    /// Maximum time of one HTTP request, the upload of an artifact included
    /// [default: 30 s]. A server that accepts connections but never responds
    /// costs this much per attempt before the run is saved for sync.
    pub request_timeout: Duration,
    /// Maximum time to open a connection.
    pub connect_timeout: Duration,
}

impl TrackingSettings {
    /// Builds settings from explicit values, checked like [`from_env`](Self::from_env).
    ///
    /// `tracking_uri` follows the rules of `MLFLOW_TRACKING_URI`, and an empty
    /// `experiment_name` means [`DEFAULT_EXPERIMENT`].
    pub fn new(
        tracking_uri: Option<&str>,
        experiment_name: &str,
        credentials: Credentials,
    ) -> Result<TrackingSettings, TrackingError> {
        let tracking_uri = parse_tracking_uri(tracking_uri.unwrap_or(""))?;
        let experiment_name = match experiment_name.trim() {
            "" => DEFAULT_EXPERIMENT.to_string(),
            name => name.to_string(),
        };
        Ok(TrackingSettings {
            tracking_uri,
            experiment_name,
            credentials,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        })
    }

    /// Settings that keep every run in the local run store.
    pub fn local_only() -> TrackingSettings {
        TrackingSettings {
            tracking_uri: None,
            experiment_name: DEFAULT_EXPERIMENT.to_string(),
            credentials: Credentials::None,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Reads the standard MLflow environment variables.
    ///
    /// - `MLFLOW_TRACKING_URI`: the server, as the type's documentation describes.
    /// - `MLFLOW_EXPERIMENT_NAME`: the experiment [default: `sepsis-ews`].
    /// - `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`: HTTP basic
    ///   authentication. They take precedence over a token, as in MLflow's
    ///   Python client.
    /// - `MLFLOW_TRACKING_TOKEN`: a bearer token.
    pub fn from_env() -> Result<TrackingSettings, TrackingError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables of [`from_env`](Self::from_env) through `lookup`,
    /// so tests need not change the process environment.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<TrackingSettings, TrackingError> {
        let non_empty = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let username = non_empty("MLFLOW_TRACKING_USERNAME");
        let password = non_empty("MLFLOW_TRACKING_PASSWORD");
        let token = non_empty("MLFLOW_TRACKING_TOKEN");

        let credentials = match (username, password, token) {
            (Some(username), Some(password), _) => Credentials::Basic {
                username,
                password: Secret::new(password),
            },
            (Some(_), None, _) => {
                return Err(TrackingError::InvalidSetting {
                    name: "MLFLOW_TRACKING_PASSWORD",
                    reason: "MLFLOW_TRACKING_USERNAME is set but the password is missing".into(),
                })
            }
            (None, Some(_), _) => {
                return Err(TrackingError::InvalidSetting {
                    name: "MLFLOW_TRACKING_USERNAME",
                    reason: "MLFLOW_TRACKING_PASSWORD is set but the username is missing".into(),
                })
            }
            (None, None, Some(token)) => Credentials::Bearer(Secret::new(token)),
            (None, None, None) => Credentials::None,
        };

        let uri = lookup("MLFLOW_TRACKING_URI");
        let experiment = lookup("MLFLOW_EXPERIMENT_NAME").unwrap_or_default();
        TrackingSettings::new(uri.as_deref(), &experiment, credentials)
    }

    /// Returns the tracking server, or `None` when runs stay local.
    pub fn tracking_uri(&self) -> Option<&Url> {
        self.tracking_uri.as_ref()
    }

    pub fn experiment_name(&self) -> &str {
        &self.experiment_name
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Returns the settings with another retry schedule.
    pub fn with_retry(mut self, retry: RetryPolicy) -> TrackingSettings {
        self.retry = retry;
        self
    }
}

/// Parses `MLFLOW_TRACKING_URI`, returning `None` for local only.
fn parse_tracking_uri(raw: &str) -> Result<Option<Url>, TrackingError> {
    let raw = raw.trim();
    let invalid = |reason: String| TrackingError::InvalidSetting {
        name: "MLFLOW_TRACKING_URI",
        reason,
    };

    let lower = raw.to_ascii_lowercase();
    let is_http = lower.starts_with("http://") || lower.starts_with("https://");
    if !is_http {
        let is_local = raw.is_empty() || lower.starts_with("file:") || !raw.contains("://");
        if is_local {
            return Ok(None);
        }
        let scheme = raw.split("://").next().unwrap_or_default();
        return Err(invalid(format!(
            "the scheme {scheme:?} is not supported: use an http:// or https:// server, \
             or leave the variable unset to keep runs in the local run store"
        )));
    }

    let url = Url::parse(raw).map_err(|error| invalid(format!("not a valid URL: {error}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        // The URI appears in the run store and in messages, so it must not
        // carry a secret.
        return Err(invalid(
            "the URI contains credentials: set MLFLOW_TRACKING_USERNAME and \
             MLFLOW_TRACKING_PASSWORD instead"
                .into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "the URI must not have a query or a fragment".into(),
        ));
    }
    Ok(Some(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<TrackingSettings, TrackingError> {
        TrackingSettings::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
    }

    #[test]
    fn backoff_schedule_doubles_until_attempts_run_out() {
        let policy = RetryPolicy::default();
        let delays: Vec<Option<Duration>> = (1..=5).map(|a| policy.delay_after(a)).collect();
        assert_eq!(
            delays,
            [
                Some(Duration::from_millis(200)),
                Some(Duration::from_millis(400)),
                Some(Duration::from_millis(800)),
                None,
                None,
            ]
        );
    }

    #[test]
    fn backoff_delay_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 20,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
        };
        assert_eq!(policy.delay_after(3), Some(Duration::from_secs(4)));
        assert_eq!(policy.delay_after(4), Some(Duration::from_secs(5)));
        assert_eq!(policy.delay_after(19), Some(Duration::from_secs(5)));
        assert_eq!(policy.delay_after(20), None);
    }

    #[test]
    fn single_attempt_policy_never_retries() {
        let policy = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.delay_after(1), None);
    }

    #[test]
    fn missing_uri_means_local_only() {
        for uri in [
            None,
            Some(""),
            Some("  "),
            Some("mlruns"),
            Some("file:///tmp/mlruns"),
        ] {
            let vars: Vec<(&str, &str)> = uri
                .map(|u| vec![("MLFLOW_TRACKING_URI", u)])
                .unwrap_or_default();
            let settings = settings(&vars).unwrap();
            assert!(settings.tracking_uri().is_none(), "{uri:?}");
            assert_eq!(settings.experiment_name(), DEFAULT_EXPERIMENT);
        }
    }

    #[test]
    fn http_uri_is_remote() {
        let settings = settings(&[
            (
                "MLFLOW_TRACKING_URI",
                "https://dagshub.com/user/repo.mlflow",
            ),
            ("MLFLOW_EXPERIMENT_NAME", "nightly"),
        ])
        .unwrap();
        assert_eq!(
            settings.tracking_uri().map(Url::as_str),
            Some("https://dagshub.com/user/repo.mlflow")
        );
        assert_eq!(settings.experiment_name(), "nightly");
    }

    #[test]
    fn unsupported_scheme_is_rejected() {
        let error = settings(&[("MLFLOW_TRACKING_URI", "databricks://profile")]).unwrap_err();
        assert!(error.to_string().contains("databricks"), "{error}");
    }

    #[test]
    fn credentials_in_uri_are_rejected() {
        let error =
            settings(&[("MLFLOW_TRACKING_URI", "https://user:secret@example.org")]).unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn basic_auth_takes_precedence_over_token() {
        let settings = settings(&[
            ("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"),
            ("MLFLOW_TRACKING_USERNAME", "alice"),
            ("MLFLOW_TRACKING_PASSWORD", "pw"),
            ("MLFLOW_TRACKING_TOKEN", "token"),
        ])
        .unwrap();
        assert_eq!(
            settings.credentials(),
            &Credentials::Basic {
                username: "alice".into(),
                password: Secret::new("pw"),
            }
        );
    }

    #[test]
    fn token_alone_is_bearer() {
        let settings = settings(&[("MLFLOW_TRACKING_TOKEN", "token")]).unwrap();
        assert_eq!(
            settings.credentials(),
            &Credentials::Bearer(Secret::new("token"))
        );
    }

    #[test]
    fn username_without_password_is_rejected() {
        let error = settings(&[("MLFLOW_TRACKING_USERNAME", "alice")]).unwrap_err();
        assert!(error.to_string().contains("password"), "{error}");
    }

    #[test]
    fn secret_debug_is_redacted() {
        let credentials = Credentials::Basic {
            username: "alice".into(),
            password: Secret::new("hunter2"),
        };
        let printed = format!("{credentials:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
