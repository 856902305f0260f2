//! `sepsis runs`: lists and shows the tracked runs of the local run store,
//! and sends pending runs to the MLflow tracking server.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context as _;
use clap::Subcommand;
use sepsis_ews::experiment::{self, ChampionAlias};
use sepsis_ews::registry::Registry;
use sepsis_ews::storage::Store;
use sepsis_ews::tracking::{self, AliasOutcome, RunRecord, SyncReport, TrackingSettings};
use serde::Serialize;

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List the tracked runs of the local run store, newest first.
    List,
    /// Show one tracked run in full: params, metrics, tags, artifacts and sync state.
    Show {
        /// Local run id, or the MLflow run id of a synced run.
        id: String,
    },
    /// Send pending runs to the MLflow server named by MLFLOW_TRACKING_URI.
    ///
    /// Credentials come from MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD,
    /// or MLFLOW_TRACKING_TOKEN. Running it again is safe: synced runs are skipped.
    /// Then the alias `champion` is moved to the registry's production version.
    Sync,
}

/// One line of `sepsis runs list --json`.
#[derive(Debug, Serialize)]
struct RunSummary<'a> {
    local_run_id: &'a str,
    name: &'a str,
    experiment: &'a str,
    status: &'a str,
    sync: &'a str,
    mlflow_run_id: Option<&'a str>,
    start_time_ms: i64,
    end_time_ms: Option<i64>,
    error: Option<&'a str>,
    last_sync_error: Option<&'a str>,
}

impl<'a> RunSummary<'a> {
    fn of(record: &'a RunRecord) -> RunSummary<'a> {
        RunSummary {
            local_run_id: &record.local_run_id,
            name: &record.name,
            experiment: &record.experiment,
            status: record.status.as_str(),
            sync: record.sync.mode.as_str(),
            mlflow_run_id: record.sync.mlflow_run_id.as_deref(),
            start_time_ms: record.start_time_ms,
            end_time_ms: record.end_time_ms,
            error: record.error.as_deref(),
            last_sync_error: record.sync.last_error.as_deref(),
        }
    }
}

/// Runs a `sepsis runs` subcommand and prints its result: a table or text,
/// or with `json` one JSON value on stdout.
pub async fn run(
    command: RunsCommand,
    store: &Store,
    registry: &Registry,
    json: bool,
) -> anyhow::Result<()> {
    match command {
        RunsCommand::List => {
            let runs = tracking::list_runs(store)
                .await
                .context("listing the tracked runs failed")?;
            if json {
                let summaries: Vec<RunSummary> = runs.iter().map(RunSummary::of).collect();
                print_json(&summaries)
            } else {
                print_text(&runs_table(&runs))
            }
        }
        RunsCommand::Show { id } => {
            let record = tracking::show_run(store, &id).await?;
            if json {
                print_json(&record)
            } else {
                print_text(&describe_run(&record))
            }
        }
        RunsCommand::Sync => {
            let settings = TrackingSettings::from_env()?;
            let report = tracking::sync(&settings, store).await?;
            // Runs sent now may include the production model's, and a pointer
            // moved while the server was away has to reach the alias.
            let champion = experiment::align_champion(&settings, store, registry)
                .await
                .context("aligning MLflow's alias with the production version failed")?;
            if json {
                let mut value = serde_json::to_value(&report).expect("the sync report serialises");
                value["mlflow_champion"] =
                    serde_json::to_value(&champion).expect("the alias outcome serialises");
                print_json(&value)?;
            } else {
                let mut text = describe_sync(&report);
                if let Some(line) = champion.summary() {
                    text.push('\n');
                    text.push_str(&line);
                }
                print_text(&text)?;
            }
            if !report.failed.is_empty() {
                anyhow::bail!(
                    "{} run(s) could not be synced; they stay pending for the next sync",
                    report.failed.len()
                );
            }
            if let ChampionAlias::Production {
                mlflow: AliasOutcome::Failed { error, .. },
                ..
            } = &champion
            {
                anyhow::bail!("MLflow's alias could not be aligned with production: {error}");
            }
            Ok(())
        }
    }
}

fn runs_table(runs: &[RunRecord]) -> String {
    if runs.is_empty() {
        return "no tracked runs in the local run store".to_string();
    }
    let header = ["LOCAL RUN ID", "NAME", "STATUS", "SYNC", "MLFLOW RUN ID"];
    let rows: Vec<[String; 5]> = runs
        .iter()
        .map(|run| {
            [
                run.local_run_id.clone(),
                run.name.clone(),
                run.status.as_str().to_string(),
                run.sync.mode.as_str().to_string(),
                run.sync.mlflow_run_id.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();

    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let format_row = |cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };

    let mut lines = vec![format_row(&header)];
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        lines.push(format_row(&cells));
    }
    lines.join("\n")
}

fn describe_run(record: &RunRecord) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "run {} ({})", record.local_run_id, record.name);
    let _ = writeln!(text, "experiment: {}", record.experiment);
    let _ = writeln!(text, "status: {}", record.status.as_str());
    if let Some(error) = &record.error {
        let _ = writeln!(text, "error: {error}");
    }
    let _ = writeln!(text, "start_time_ms: {}", record.start_time_ms);
    if let Some(end) = record.end_time_ms {
        let _ = writeln!(text, "end_time_ms: {end}");
    }

    let sync = &record.sync;
    let _ = writeln!(text, "sync: {}", sync.mode.as_str());
    if let Some(uri) = &sync.tracking_uri {
        let _ = writeln!(text, "tracking_uri: {uri}");
    }
    if let Some(run_id) = &sync.mlflow_run_id {
        let _ = writeln!(text, "mlflow_run_id: {run_id}");
    }
    if let Some(error) = &sync.last_error {
        let _ = writeln!(
            text,
            "last_sync_error: {error} (after {} failed attempt(s))",
            sync.failed_attempts
        );
    }

    if !record.params.is_empty() {
        let _ = writeln!(text, "params:");
        for (key, value) in &record.params {
            let _ = writeln!(text, "  {key} = {}", shorten(value, 120));
        }
    }

    // The latest value of each metric, with the number of values logged.
    let mut metrics: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for point in &record.metrics {
        let entry = metrics.entry(&point.key).or_insert((point.value, 0));
        entry.0 = point.value;
        entry.1 += 1;
    }
    if !metrics.is_empty() {
        let _ = writeln!(text, "metrics:");
        for (key, (value, count)) in metrics {
            if count > 1 {
                let _ = writeln!(text, "  {key} = {value} (last of {count} values)");
            } else {
                let _ = writeln!(text, "  {key} = {value}");
            }
        }
    }

    if !record.tags.is_empty() {
        let _ = writeln!(text, "tags:");
        for (key, value) in &record.tags {
            let _ = writeln!(text, "  {key} = {}", shorten(value, 120));
        }
    }
    if !record.artifacts.is_empty() {
        let _ = writeln!(text, "artifacts:");
        for artifact in &record.artifacts {
            let _ = writeln!(text, "  {} ({} bytes)", artifact.path, artifact.size);
        }
    }
    if let Some(registration) = &record.model_registration {
        let version = sync
            .model_version
            .as_deref()
            .unwrap_or("not registered yet");
        let _ = writeln!(
            text,
            "model: {} from {}, alias {}, version {version}",
            registration.name, registration.artifact_path, registration.alias
        );
    }
    text.trim_end().to_string()
}

fn describe_sync(report: &SyncReport) -> String {
    let mut lines = vec![format!(
        "synced {} run(s) to {}",
        report.synced.len(),
        report.tracking_uri
    )];
    for run in &report.synced {
        lines.push(format!("  {} -> {}", run.local_run_id, run.url));
    }
    for run in &report.failed {
        lines.push(format!("  {} failed: {}", run.local_run_id, run.reason));
    }
    if !report.not_attempted.is_empty() {
        lines.push(format!(
            "{} run(s) not tried because the server is unreachable",
            report.not_attempted.len()
        ));
    }
    if !report.still_running.is_empty() {
        lines.push(format!(
            "{} run(s) still RUNNING, not sent: {}",
            report.still_running.len(),
            report.still_running.join(", ")
        ));
    }
    if !report.other_server.is_empty() {
        lines.push(format!(
            "{} run(s) belong to another tracking server, not sent: {}",
            report.other_server.len(),
            report.other_server.join(", ")
        ));
    }
    lines.push(format!(
        "{} run(s) already synced, {} local-only run(s) left alone",
        report.already_synced, report.local_only
    ));
    lines.join("\n")
}

/// Cuts a long value for display; `show --json` prints it whole.
fn shorten(value: &str, max_chars: usize) -> String {
    match value.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}… ({} characters)", &value[..end], value.chars().count()),
        None => value.to_string(),
    }
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string(value).context("encoding the output as JSON failed")?;
    print_text(&text)
}

/// Writes one result to stdout. A closed pipe is an error, not a panic.
fn print_text(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .context("writing to stdout failed")
}
