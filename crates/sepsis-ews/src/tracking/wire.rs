//! JSON bodies of the MLflow REST API (version 2.0 paths, as served by
//! MLflow 3.17), reduced to the fields this client sends and reads.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamBody {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagBody {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricBody {
    pub key: String,
    #[serde(with = "float_json")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub step: i64,
}

#[derive(Debug, Deserialize)]
pub struct GetExperimentResponse {
    pub experiment: ExperimentBody,
}

#[derive(Debug, Deserialize)]
pub struct ExperimentBody {
    pub experiment_id: String,
}

#[derive(Debug, Deserialize)]
pub struct CreateExperimentResponse {
    pub experiment_id: String,
}

#[derive(Debug, Deserialize)]
pub struct RunResponse {
    pub run: RunBody,
}

#[derive(Debug, Deserialize)]
pub struct RunBody {
    pub info: RunInfoBody,
}

#[derive(Debug, Deserialize)]
pub struct RunInfoBody {
    pub run_id: String,
    pub experiment_id: String,
    pub artifact_uri: String,
}

#[derive(Debug, Deserialize)]
pub struct SearchRunsResponse {
    /// Missing when nothing matches.
    #[serde(default)]
    pub runs: Vec<RunBody>,
}

#[derive(Debug, Deserialize)]
pub struct ModelVersionResponse {
    pub model_version: ModelVersionBody,
}

#[derive(Debug, Deserialize)]
pub struct ModelVersionBody {
    #[serde(default)]
    pub name: Option<String>,
    pub version: String,
    #[serde(default)]
    pub run_id: String,
}

#[derive(Debug, Deserialize)]
pub struct SearchModelVersionsResponse {
    /// Missing when nothing matches.
    #[serde(default)]
    pub model_versions: Vec<ModelVersionBody>,
}

/// The error body of every MLflow endpoint.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub error_code: String,
    #[serde(default)]
    pub message: String,
}

/// Serde helpers for an `f64` that may be NaN or infinite.
///
/// JSON has no such numbers, so they are written as the strings `"NaN"`,
/// `"Infinity"` and `"-Infinity"`, the form of the protobuf JSON mapping that
/// the MLflow server parses. Reading accepts a number or one of those strings.
pub mod float_json {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_nan() {
            serializer.serialize_str("NaN")
        } else if *value == f64::INFINITY {
            serializer.serialize_str("Infinity")
        } else if *value == f64::NEG_INFINITY {
            serializer.serialize_str("-Infinity")
        } else {
            serializer.serialize_f64(*value)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum NumberOrText {
            Number(f64),
            Text(String),
        }

        match NumberOrText::deserialize(deserializer)? {
            NumberOrText::Number(value) => Ok(value),
            NumberOrText::Text(text) => match text.as_str() {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!(
                    "invalid metric value {other:?}: expected a number, \"NaN\", \"Infinity\" or \"-Infinity\""
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_body_writes_non_finite_values_as_strings() {
        let cases = [
            (f64::NAN, r#""NaN""#),
            (f64::INFINITY, r#""Infinity""#),
            (f64::NEG_INFINITY, r#""-Infinity""#),
            (0.5, "0.5"),
        ];
        for (value, expected) in cases {
            let metric = MetricBody {
                key: "m".into(),
                value,
                timestamp: 1,
                step: 0,
            };
            let json = serde_json::to_string(&metric).unwrap();
            assert!(json.contains(&format!(r#""value":{expected}"#)), "{json}");
        }
    }

    #[test]
    fn float_json_reads_numbers_and_strings() {
        #[derive(Deserialize)]
        struct Holder {
            #[serde(with = "float_json")]
            value: f64,
        }
        let read = |json: &str| serde_json::from_str::<Holder>(json).map(|h| h.value);

        assert_eq!(read(r#"{"value": 0.25}"#).unwrap(), 0.25);
        assert!(read(r#"{"value": "NaN"}"#).unwrap().is_nan());
        assert_eq!(read(r#"{"value": "Infinity"}"#).unwrap(), f64::INFINITY);
        assert_eq!(
            read(r#"{"value": "-Infinity"}"#).unwrap(),
            f64::NEG_INFINITY
        );
        assert!(read(r#"{"value": "high"}"#).is_err());
    }
}
