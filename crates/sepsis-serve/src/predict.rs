//! Scoring a checked `/predict` request with the served model, and the
//! response it returns.
//!
//! The rows go through [`ScoringModel::score_with_features`], the library's
//! scoring path: the features come from `FeatureSpec::compute`, the code
//! that computed the training features, then the trees, the calibration map
//! and the alert rule of the model card.
//!
//! [`ScoringModel::score_with_features`]: sepsis_ews::scoring::ScoringModel::score_with_features

use arrow::array::AsArray;
use arrow::datatypes::{Float32Type, Float64Type};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::input::{PredictRequest, Subjects};
use crate::state::LoadedModel;

/// The model that scored a request. One request is always scored by one
/// model, even while a new production version is being swapped in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelRef {
    pub name: String,
    /// The registry version.
    pub version: u32,
    /// The training run the version came from.
    pub run_id: String,
}

/// The model card's alert rule: alert when the probability reaches the
/// threshold, and keep alerting for `hold_hours` after the last such hour.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertRuleBody {
    /// `null` when the policy found no rule that keeps its promises; the
    /// model then never alerts.
    pub threshold: Option<f64>,
    pub hold_hours: f64,
}

/// The body of a successful `POST /predict`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PredictResponse {
    pub model: ModelRef,
    pub alert_rule: AlertRuleBody,
    /// For `rows`, one result per row in request order. For `patients`, one
    /// result per patient (its last hour), or one per hour with `all_hours`.
    pub results: Vec<PredictionResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PredictionResult {
    /// The index of the row in `rows`, for a request with rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
    /// The patient, for a request with patients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<String>,
    /// The hour of the result, the row's ICU hour.
    pub hour: f64,
    /// The calibrated probability of sepsis within the next 12 hours.
    pub probability: f64,
    /// The alert rule's decision at this hour, holding earlier alerts of the
    /// same history.
    pub alert: bool,
    /// The model card's alert threshold, the same as `alert_rule.threshold`.
    pub threshold: Option<f64>,
    /// The registry version that scored the item, the same as `model.version`.
    pub model_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

/// The features that moved the raw score most, by TreeSHAP. The raw score
/// comes before calibration: a log-odds for a `one_booster` model, the log of
/// the probability for a `patient_and_onset` model. `base_value` plus the contributions of all features
/// equals `raw_score`; only the `top_k` largest by magnitude are listed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Explanation {
    /// The model's expected raw score over its training rows.
    pub base_value: f64,
    pub raw_score: f64,
    pub contributions: Vec<Contribution>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Contribution {
    /// The computed feature, as named in the model card.
    pub feature: String,
    /// The feature's value; `null` when missing.
    pub value: Option<f64>,
    /// The feature's share of the raw score, in its units.
    pub contribution: f64,
}

/// Scores a checked request with one model.
pub fn score(
    request: &PredictRequest,
    loaded: &LoadedModel,
    model_name: &str,
) -> Result<PredictResponse, ApiError> {
    let model = &loaded.model;
    let internal = |message: String| ApiError::Internal {
        context: "scoring failed",
        message,
    };
    let scored = model
        .score_with_features(&request.batch)
        .map_err(|e| internal(e.to_string()))?;
    let time_column = &model.spec().time_column;
    let hours = request
        .batch
        .column_by_name(time_column)
        .ok_or_else(|| internal(format!("the batch has no {time_column} column")))?
        .as_primitive::<Float64Type>();

    let mut picked: Vec<(usize, Option<usize>, Option<&str>)> = Vec::new();
    match &request.subjects {
        Subjects::Rows(count) => picked.extend((0..*count).map(|row| (row, Some(row), None))),
        Subjects::Patients(patients) => {
            let mut start = 0;
            for (id, hours) in patients {
                let end = start + hours;
                let first = if request.all_hours { start } else { end - 1 };
                picked.extend((first..end).map(|row| (row, None, Some(id.as_str()))));
                start = end;
            }
        }
    }

    if let Some(drift) = &loaded.drift {
        let columns: Vec<_> = scored
            .features
            .iter()
            .map(|array| array.as_primitive::<Float32Type>())
            .collect();
        let probability = &scored.scores.probability;
        drift.observe(
            picked.iter().map(|&(row, ..)| (row, probability[row])),
            |row, column| columns[column].value(row),
        );
    }

    let rule = model.card.policy.rule;
    let mut results = Vec::with_capacity(picked.len());
    for (row, index, patient_id) in picked {
        let explanation = match request.explain_top_k {
            Some(k) => Some(explain(loaded, &scored.features, row, k)?),
            None => None,
        };
        results.push(PredictionResult {
            row: index,
            patient_id: patient_id.map(str::to_string),
            hour: hours.value(row),
            probability: scored.scores.probability[row],
            alert: scored.scores.alert[row],
            threshold: rule.threshold,
            model_version: loaded.version,
            explanation,
        });
    }
    Ok(PredictResponse {
        model: ModelRef {
            name: model_name.to_string(),
            version: loaded.version,
            run_id: loaded.run_id.clone(),
        },
        alert_rule: AlertRuleBody {
            threshold: rule.threshold,
            hold_hours: rule.hold_hours,
        },
        results,
    })
}

/// Lists the `top_k` largest contributions of one row, largest first; ties
/// keep the model's feature order.
fn explain(
    loaded: &LoadedModel,
    features: &[arrow::array::ArrayRef],
    row: usize,
    top_k: usize,
) -> Result<Explanation, ApiError> {
    let model = &loaded.model;
    let phi = model.contributions(features, row).map_err(|e| {
        ApiError::invalid(
            "explain",
            format!("the served model cannot explain its scores: {e}"),
        )
    })?;
    let (base_value, per_feature) = phi
        .split_last()
        .expect("contributions end with the base value");
    let mut order: Vec<usize> = (0..per_feature.len()).collect();
    order.sort_by(|a, b| per_feature[*b].abs().total_cmp(&per_feature[*a].abs()));
    let names = &model.spec().feature_names;
    let contributions = order
        .into_iter()
        .take(top_k)
        .map(|index| {
            let value = features[index].as_primitive::<Float32Type>().value(row);
            Contribution {
                feature: names[index].clone(),
                value: (!value.is_nan()).then_some(f64::from(value)),
                contribution: per_feature[index],
            }
        })
        .collect();
    Ok(Explanation {
        base_value: *base_value,
        raw_score: phi.iter().sum(),
        contributions,
    })
}
