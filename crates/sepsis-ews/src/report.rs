//! The run report, `artifacts/runs/<run_id>/report.html`: one page that a
//! clinician or data scientist reads without opening any JSON. This module
//! gathers the numbers; `render` draws the page.

mod render;

pub use render::{render_html, ReliabilityBin, ReportData, Table};

use crate::assess::Assessment;
use crate::evaluate::{curves, Evaluation};
use crate::pipeline::RunMetrics;
use crate::policy::{number, percent, BaselineResult, ModelCard};

/// Points per curve in the charts.
const CURVE_POINTS: usize = 1500;

/// Builds the report of a trained run.
pub fn run_report(metrics: &RunMetrics, card: &ModelCard, assessed: &Assessment) -> String {
    let cohort = &assessed.validation_cohort;
    let (roc, pr) = curves(
        &cohort.outcome,
        &assessed.validation_probabilities,
        CURVE_POINTS,
    );
    let model = &metrics.model;
    let positives = cohort.outcome.iter().filter(|o| **o).count();
    let d = &card.data;
    let mut facts = vec![
        ("Run".into(), card.run_id.clone()),
        ("Created".into(), card.created_at.clone()),
        (
            "Features".into(),
            format!("{} (feature set {})", d.features, d.feature_set_version),
        ),
        ("Feature version".into(), d.feature_version.clone()),
        ("Patients".into(), d.patients_sentence()),
        (
            "Alert threshold".into(),
            card.policy.rule.threshold.map_or_else(
                || "none: the model does not alert".into(),
                |t| format!("{t:.4}, held on for {} h", card.policy.rule.hold_hours),
            ),
        ),
        ("Alert policy".into(), card.policy.statement.clone()),
    ];
    if let Some(intervals) = &model.intervals {
        facts.push(("Uncertainty".into(), intervals.sentence()));
    }
    if let Some(o) = &metrics.out_of_fold {
        let show = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"));
        facts.push((
            "Out of fold".into(),
            format!(
                "AUROC on SepsisLabel {}, AUPRC {}, over the {} training patients, each scored by \
                 the one of the {} fold boosters that did not fit it",
                show(o.auroc_sepsis_label),
                show(o.auprc_sepsis_label),
                o.patients,
                o.folds
            ),
        ));
    }
    let data = ReportData {
        title: format!("Sepsis early warning: evaluation of run {}", card.run_id),
        summary: summary(model, &metrics.baselines),
        facts,
        tables: level_tables(model),
        roc,
        roc_auc: model.hourly.auroc_sepsis_label,
        pr,
        pr_auc: model.hourly.auprc_sepsis_label,
        positive_rate: (cohort.rows() > 0).then(|| positives as f64 / cohort.rows() as f64),
        reliability: model
            .calibration
            .iter()
            .flat_map(|c| &c.reliability)
            .map(|bin| ReliabilityBin {
                mean_predicted: bin.mean_predicted,
                observed_rate: bin.observed_rate,
                count: bin.count,
            })
            .collect(),
        lead_times_hours: model.lead_times_hours.clone(),
        importances: metrics.top_features.clone(),
        comparison: vec![
            baseline_table(model, &metrics.baselines),
            subgroup_table(metrics),
        ],
        notes: NOTES
            .iter()
            .map(|n| n.to_string())
            .chain(
                metrics
                    .baselines
                    .iter()
                    .map(|b| format!("Baseline {}: {}.", b.name, b.description)),
            )
            .collect(),
    };
    render_html(&data)
}

const NOTES: [&str; 5] = [
    "Onset is t_sepsis, six hours after the first hour whose SepsisLabel is 1. A septic patient \
     is alerted in time when an alert is on within the 12 hours up to onset. The warning lasts \
     from the switch-on of that alert to onset. An alert that is off again before those 12 hours \
     is a false alarm, as in the PhysioNet 2019 utility.",
    "An alert is counted once, when the alert state switches on, not once per hour it stays on.",
    "AUROC and AUPRC are per hour, against the challenge label SepsisLabel unless marked \
     otherwise; the model is trained on a 12-hour label.",
    "Expected calibration error: the row-weighted mean gap between mean probability and \
     observed rate, over ten equal-width bins; the reliability chart uses ten bins of equal row \
     count.",
    "Data: PhysioNet/CinC Challenge 2019, Reyna et al., Early Prediction of Sepsis from Clinical \
     Data, Critical Care Medicine 48(2):210-217, 2020, under the Open Data Commons Attribution \
     License v1.0.",
];

fn summary(model: &Evaluation, baselines: &[BaselineResult]) -> String {
    let clock = baselines.iter().find(|b| b.name == "clock");
    let added = match (
        model.hourly.utility,
        clock.and_then(|c| c.evaluation.hourly.utility),
    ) {
        (Some(m), Some(c)) => format!(
            " A model that sees only the clock (hours in the ICU and since hospital admission) \
             reaches a utility of {c:.3}, so the patient data adds {:.3}.",
            m - c
        ),
        _ => String::new(),
    };
    format!(
        "On {} validation patients that took no part in training or in choosing the threshold, \
         the model alerted {} of the septic patients within the 12 hours before onset, with a \
         median warning of {} hours. {} of the alerted patients were septic, and it raised {} \
         alerts per patient-day. The PhysioNet utility is {}.{added}",
        model.patients.patients,
        percent(model.patients.alerted_in_time_share),
        number(model.patients.median_lead_hours, 1),
        percent(model.patients.precision),
        number(model.burden.alerts_per_patient_day, 3),
        number(model.hourly.utility, 3),
    )
}

fn level_tables(e: &Evaluation) -> Vec<Table> {
    let row = |name: &str, value: String| vec![name.to_string(), value];
    let table = |caption: &str, rows: Vec<Vec<String>>| Table {
        caption: caption.into(),
        headers: vec!["measure".into(), "value".into()],
        rows,
    };
    let h = &e.hourly;
    let p = &e.patients;
    let b = &e.burden;
    let mut burden = vec![
        row("alerts (switch-ons)", b.alerts.to_string()),
        row("patient-days", format!("{:.1}", b.patient_days)),
        row(
            "alerts per patient-day",
            number(b.alerts_per_patient_day, 3),
        ),
        row("hours in alert", percent(b.alert_hour_share)),
    ];
    if let Some(c) = &e.calibration {
        burden.push(row("Brier score", format!("{:.4}", c.brier)));
        burden.push(row("expected calibration error", format!("{:.4}", c.ece)));
        burden.push(row(
            "calibration error, equal-count bins",
            format!("{:.4}", c.ece_equal_mass),
        ));
    }
    vec![
        table(
            "Per hour",
            vec![
                row("AUROC, SepsisLabel", number(h.auroc_sepsis_label, 4)),
                row("AUPRC, SepsisLabel", number(h.auprc_sepsis_label, 4)),
                row("AUROC, 12-hour label", number(h.auroc, 4)),
                row("AUPRC, 12-hour label", number(h.auprc, 4)),
                row("PhysioNet utility", number(h.utility, 4)),
                row("precision of alert hours", percent(h.precision)),
                row("recall of label hours", percent(h.recall)),
                row("hours", h.rows.to_string()),
            ],
        ),
        table(
            "Per patient",
            vec![
                row("patients", p.patients.to_string()),
                row("septic patients", p.septic_patients.to_string()),
                row(
                    "septic patients alerted in time",
                    percent(p.alerted_in_time_share),
                ),
                row("median warning (hours)", number(p.median_lead_hours, 1)),
                row("alerted patients", p.alerted_patients.to_string()),
                row("alerted patients who were septic", percent(p.precision)),
            ],
        ),
        table("Alert burden and calibration", burden),
    ]
}

fn comparison_headers() -> Vec<String> {
    [
        "AUROC (SepsisLabel)",
        "utility",
        "septic alerted in time",
        "median warning (h)",
        "alerted who were septic",
        "alerts per patient-day",
    ]
    .iter()
    .map(|h| h.to_string())
    .collect()
}

fn comparison_cells(e: &Evaluation) -> Vec<String> {
    vec![
        number(e.hourly.auroc_sepsis_label, 4),
        number(e.hourly.utility, 4),
        percent(e.patients.alerted_in_time_share),
        number(e.patients.median_lead_hours, 1),
        percent(e.patients.precision),
        number(e.burden.alerts_per_patient_day, 3),
    ]
}

fn baseline_table(model: &Evaluation, baselines: &[BaselineResult]) -> Table {
    let mut headers = vec!["scores".to_string()];
    headers.extend(comparison_headers());
    let mut rows = vec![std::iter::once("model".to_string())
        .chain(comparison_cells(model))
        .collect()];
    for baseline in baselines {
        rows.push(
            std::iter::once(baseline.name.clone())
                .chain(comparison_cells(&baseline.evaluation))
                .collect(),
        );
    }
    Table {
        caption: "The model beside its baselines, on the same validation patients".into(),
        headers,
        rows,
    }
}

fn subgroup_table(metrics: &RunMetrics) -> Table {
    let mut headers = vec!["group".to_string(), "patients".into(), "septic".into()];
    headers.extend(comparison_headers());
    let rows = metrics
        .subgroups
        .iter()
        .map(|s| {
            let e = &s.evaluation;
            vec![
                format!("{}: {}", s.group, s.level),
                e.patients.patients.to_string(),
                e.patients.septic_patients.to_string(),
            ]
            .into_iter()
            .chain(comparison_cells(e))
            .collect()
        })
        .collect();
    Table {
        caption: "The model by ICU unit and age band".into(),
        headers,
        rows,
    }
}
