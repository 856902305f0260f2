//! The promotion gate: whether a newly registered model replaces production.
//!
//! The candidate and production are measured on the same validation
//! patients by the same evaluation code. The candidate is promoted only if
//! its gain on the configured measure is at least the configured margin, and
//! strictly positive, so a tie keeps production. With no production yet, the
//! candidate must reach the configured minimums. This module contains
//! the decision alone, and `pipeline` gathers the measurements and moves the pointer.

use serde::{Deserialize, Serialize};

use crate::config::{GateConfig, GateMetric};
use crate::evaluate::Evaluation;
use crate::interval::Interval;

/// Reads one gate measure from an evaluation.
pub fn measure(evaluation: &Evaluation, metric: GateMetric) -> Option<f64> {
    let hourly = &evaluation.hourly;
    let value = match metric {
        GateMetric::Utility => hourly.utility,
        GateMetric::Auroc => hourly.auroc,
        GateMetric::Auprc => hourly.auprc,
        GateMetric::AurocSepsisLabel => hourly.auroc_sepsis_label,
        GateMetric::AuprcSepsisLabel => hourly.auprc_sepsis_label,
        GateMetric::SepticAlertedInTime => evaluation.patients.alerted_in_time_share,
    };
    value.filter(|v| v.is_finite())
}

/// The state of production when the gate runs.
#[derive(Debug, Clone)]
pub enum Production {
    /// No version is production yet.
    None,
    /// Production, measured on the candidate's validation patients, with
    /// the paired-bootstrap interval of the candidate's gain, or the reason
    /// it was not computed.
    Measured {
        version: u32,
        evaluation: Box<Evaluation>,
        gain: Result<Interval, String>,
    },
    /// Production cannot be measured on the candidate's patients.
    Incomparable { version: u32, reason: String },
}

/// The gate's decision and its reasons, for the log, the run record and
/// `--json` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateDecision {
    pub promoted: bool,
    pub model_name: String,
    pub candidate_version: u32,
    /// Production when the gate ran.
    pub production_version: Option<u32>,
    pub metric: GateMetric,
    pub candidate_value: Option<f64>,
    pub production_value: Option<f64>,
    pub min_improvement: f64,
    /// The 95 % interval of the candidate's gain over production on the same
    /// patients (paired bootstrap). It is reported, and it does not decide.
    #[serde(default)]
    pub gain_interval: Option<Interval>,
    pub reasons: Vec<String>,
}

/// Decides on a candidate. The caller moves the pointer if `promoted`.
pub fn decide(
    config: &GateConfig,
    model_name: &str,
    candidate_version: u32,
    candidate: &Evaluation,
    production: &Production,
) -> GateDecision {
    let metric = config.metric;
    let candidate_value = measure(candidate, metric);
    let mut decision = GateDecision {
        promoted: false,
        model_name: model_name.to_string(),
        candidate_version,
        production_version: None,
        metric,
        candidate_value,
        production_value: None,
        min_improvement: config.min_improvement,
        gain_interval: None,
        reasons: Vec::new(),
    };
    let Some(candidate_value) = candidate_value else {
        decision.reasons.push(format!(
            "the candidate's {metric} could not be measured on the validation patients"
        ));
        return decision;
    };

    match production {
        Production::None => {
            let mut passed = true;
            for (&minimum_metric, &minimum) in &config.minimums {
                match measure(candidate, minimum_metric) {
                    Some(value) if value >= minimum => decision.reasons.push(format!(
                        "{minimum_metric} {value:.4} reaches the minimum {minimum}"
                    )),
                    Some(value) => {
                        passed = false;
                        decision.reasons.push(format!(
                            "{minimum_metric} {value:.4} is below the minimum {minimum}"
                        ));
                    }
                    None => {
                        passed = false;
                        decision.reasons.push(format!(
                            "{minimum_metric} could not be measured, and the minimum is {minimum}"
                        ));
                    }
                }
            }
            decision.promoted = passed;
            decision.reasons.insert(
                0,
                match passed {
                    true => "there is no production model; the first model reaches every minimum"
                        .to_string(),
                    false => "there is no production model, and the first model must reach \
                              every minimum to become production"
                        .to_string(),
                },
            );
        }
        Production::Incomparable { version, reason } => {
            decision.production_version = Some(*version);
            decision.reasons.push(format!(
                "production v{version} cannot be compared with the candidate: {reason}; \
                 production is kept (`sepsis registry promote` overrides the gate)"
            ));
        }
        Production::Measured {
            version,
            evaluation,
            gain: interval,
        } => {
            decision.production_version = Some(*version);
            let Some(production_value) = measure(evaluation, metric) else {
                decision.reasons.push(format!(
                    "production v{version}'s {metric} could not be measured; production is kept"
                ));
                return decision;
            };
            decision.production_value = Some(production_value);
            let gain = candidate_value - production_value;
            let margin = config.min_improvement;
            decision.promoted = gain > 0.0 && gain >= margin;
            decision.reasons.push(match decision.promoted {
                true => format!(
                    "{metric} {candidate_value:.4} beats production v{version}'s \
                     {production_value:.4} by {gain:.4}, at least the required {margin}"
                ),
                false => format!(
                    "{metric} {candidate_value:.4} against production v{version}'s \
                     {production_value:.4} is a gain of {gain:.4}, short of the required \
                     {margin} (a tie keeps production)"
                ),
            });
            decision.gain_interval = interval.as_ref().ok().copied();
            decision.reasons.push(match interval {
                Ok(interval) => format!(
                    "on the same patients, the gain's {} % interval is {:.4} to {:.4} \
                     (paired bootstrap)",
                    (crate::interval::LEVEL * 100.0).round(),
                    interval.low,
                    interval.high
                ),
                Err(reason) => format!("the gain's interval was not computed: {reason}"),
            });
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{AlertRule, BurdenMetrics, HourlyMetrics, PatientMetrics};
    use crate::metrics::Confusion;

    fn evaluation(utility: f64, auroc: f64) -> Evaluation {
        Evaluation {
            rule: AlertRule {
                threshold: Some(0.1),
                hold_hours: 0.0,
            },
            hourly: HourlyMetrics {
                auroc: Some(auroc),
                auprc: Some(0.1),
                auroc_sepsis_label: Some(auroc),
                auprc_sepsis_label: Some(0.1),
                utility: Some(utility),
                precision: None,
                recall: None,
                specificity: None,
                f1: None,
                rows: 10,
                positive_rows: 1,
                confusion: Confusion::default(),
            },
            patients: PatientMetrics::default(),
            burden: BurdenMetrics::default(),
            calibration: None,
            lead_times_hours: Vec::new(),
            intervals: None,
        }
    }

    fn config(metric: GateMetric, margin: f64) -> GateConfig {
        GateConfig {
            metric,
            min_improvement: margin,
            minimums: [
                (GateMetric::Utility, 0.2),
                (GateMetric::AurocSepsisLabel, 0.7),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn measured(version: u32, utility: f64, auroc: f64) -> Production {
        Production::Measured {
            version,
            evaluation: Box::new(evaluation(utility, auroc)),
            gain: Err("not measured in this test".into()),
        }
    }

    #[test]
    fn gate_first_model_needs_minimums() {
        let gate = config(GateMetric::Utility, 0.01);
        let good = decide(&gate, "m", 1, &evaluation(0.3, 0.8), &Production::None);
        assert!(good.promoted, "{:?}", good.reasons);
        let weak = decide(&gate, "m", 1, &evaluation(0.3, 0.6), &Production::None);
        assert!(!weak.promoted);
        assert!(weak
            .reasons
            .iter()
            .any(|r| r.contains("below the minimum 0.7")));
    }

    #[test]
    fn gate_margin_and_tie() {
        let gate = config(GateMetric::Utility, 0.01);
        let better = decide(
            &gate,
            "m",
            2,
            &evaluation(0.32, 0.8),
            &measured(1, 0.30, 0.8),
        );
        assert!(better.promoted, "{:?}", better.reasons);
        let short = decide(
            &gate,
            "m",
            2,
            &evaluation(0.305, 0.8),
            &measured(1, 0.30, 0.8),
        );
        assert!(!short.promoted);
        let tie = decide(&gate, "m", 2, &evaluation(0.3, 0.8), &measured(1, 0.3, 0.8));
        assert!(!tie.promoted);
        // With no margin a tie still keeps production.
        let gate = config(GateMetric::Utility, 0.0);
        let tie = decide(&gate, "m", 2, &evaluation(0.3, 0.8), &measured(1, 0.3, 0.8));
        assert!(!tie.promoted);
        assert_eq!(tie.production_value, Some(0.3));
    }

    #[test]
    fn gate_reports_gain_interval() {
        let gate = config(GateMetric::Utility, 0.01);
        let interval = Interval {
            low: -0.01,
            high: 0.05,
        };
        let production = Production::Measured {
            version: 1,
            evaluation: Box::new(evaluation(0.30, 0.8)),
            gain: Ok(interval),
        };
        let decision = decide(&gate, "m", 2, &evaluation(0.32, 0.8), &production);
        // The interval is reported, and the margin alone decides.
        assert!(decision.promoted);
        assert_eq!(decision.gain_interval, Some(interval));
        assert!(
            decision.reasons[1].contains("-0.0100 to 0.0500"),
            "{:?}",
            decision.reasons
        );
    }

    #[test]
    fn gate_says_why_gain_interval_is_missing() {
        let gate = config(GateMetric::Utility, 0.01);
        let decision = decide(
            &gate,
            "m",
            2,
            &evaluation(0.32, 0.8),
            &measured(1, 0.30, 0.8),
        );
        assert_eq!(decision.gain_interval, None);
        assert!(decision.reasons[1].contains("not computed: not measured in this test"));
    }

    #[test]
    fn gate_metric_is_configurable() {
        let gate = config(GateMetric::AurocSepsisLabel, 0.005);
        // Better AUROC, worse utility: the AUROC gate promotes.
        let decision = decide(
            &gate,
            "m",
            2,
            &evaluation(0.2, 0.82),
            &measured(1, 0.3, 0.80),
        );
        assert!(decision.promoted);
        assert_eq!(decision.metric, GateMetric::AurocSepsisLabel);
    }

    #[test]
    fn incomparable_production_is_kept() {
        let gate = config(GateMetric::Utility, 0.0);
        let production = Production::Incomparable {
            version: 1,
            reason: "validated on other data".into(),
        };
        let decision = decide(&gate, "m", 2, &evaluation(0.9, 0.9), &production);
        assert!(!decision.promoted);
        assert!(decision.reasons[0].contains("other data"));
    }

    #[test]
    fn gate_unmeasured_candidate_is_kept_out() {
        let gate = config(GateMetric::Utility, 0.0);
        let mut candidate = evaluation(0.3, 0.8);
        candidate.hourly.utility = None;
        let decision = decide(&gate, "m", 1, &candidate, &Production::None);
        assert!(!decision.promoted);
    }
}
