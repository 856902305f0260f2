//! The `sepsis` command: a thin layer that parses flags, sets up logging and
//! maps library errors to exit codes. All work happens in the `sepsis_ews`
//! library.

mod logging;
mod progress;
mod runs;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use sepsis_ews::config::{parse_override, Config, ConfigSources, LogFormat};
use sepsis_ews::evaluate::Evaluation;
use sepsis_ews::experiment::{self, run_pipeline_tracked, ChampionAlias};
use sepsis_ews::pipeline::{self, Context, PipelineOutcome};
use sepsis_ews::policy::{number, percent, BaselineResult};
use sepsis_ews::registry::{parse_version, Production, Registry};
use sepsis_ews::scoring::{self, ScoringModel};
use sepsis_ews::tracking::TrackingSettings;

/// Sepsis early-warning system: train and evaluate a 12-hour sepsis risk
/// model on hourly ICU data.
#[derive(Debug, Parser)]
#[command(name = "sepsis", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Configuration file [default: config/config.yaml if it exists, else the built-in defaults].
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Storage URI, overriding storage.uri: a directory, file:///abs/dir, s3://bucket/prefix or memory://.
    #[arg(long, global = true, value_name = "URI")]
    store: Option<String>,
    /// Override any configuration key, as in --set training.num_leaves=63 (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Log format on the console and in the log file, overriding logging.format.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,
    /// Print exactly one JSON object on stdout; logs go to stderr.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every step: import, ingest, validate, transform, train and evaluate.
    Pipeline {
        /// Input data [default: data.default_input, the bundled PhysioNet sample].
        #[arg(long, value_name = "PATH")]
        data: Option<PathBuf>,
    },
    /// Data import commands.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Parse the imported CSV into a typed Parquet snapshot.
    Ingest,
    /// Check the snapshot against the schema and write the validation report.
    Validate,
    /// Compute the feature table into a new feature-store version.
    Transform,
    /// Train a LightGBM model on a feature version.
    Train {
        /// Feature-store version [default: the newest for the imported data].
        #[arg(long, value_name = "VERSION")]
        features: Option<String>,
    },
    /// Evaluate a model: a run on its own validation patients, or any labelled data file.
    Evaluate {
        /// Run id [default: the newest run]; cannot be combined with --data.
        #[arg(long, value_name = "RUN_ID", conflicts_with = "data")]
        run: Option<String>,
        /// A labelled data file or .psv folder to score, in any format `sepsis data import` reads.
        #[arg(long, value_name = "PATH")]
        data: Option<PathBuf>,
        /// With --data: a model folder or model.txt, a run id, a registry version (v3) or `production` [default: production, else the newest run].
        #[arg(long, value_name = "MODEL", requires = "data")]
        model: Option<String>,
    },
    /// Write batch predictions (patient_id, hour, probability, alert) as CSV.
    Predict {
        /// Data file or .psv folder, in any format `sepsis data import` reads; labels are optional.
        #[arg(long, value_name = "PATH")]
        data: PathBuf,
        /// Output CSV file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// A model folder or model.txt, a run id, a registry version (v3) or `production` [default: production, else the newest run].
        #[arg(long, value_name = "MODEL")]
        model: Option<String>,
    },
    /// The model registry: versions and the production pointer.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Tracked runs: the local run store and its sync to MLflow.
    Runs {
        #[command(subcommand)]
        command: runs::RunsCommand,
    },
    /// Serve predictions of the production model over HTTP until SIGTERM or Ctrl-C.
    Serve {
        /// Address and port to listen on, overriding serve.addr [default: 127.0.0.1:8080].
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<std::net::SocketAddr>,
    },
}

#[derive(Debug, Subcommand)]
enum RegistryCommand {
    /// List the versions, marking production.
    List,
    /// Show one version's record: files, digests, metrics, data and code.
    Show {
        /// A version, as v3 or 3, or `production`.
        #[arg(value_name = "VERSION")]
        id: String,
    },
    /// Make a version production, bypassing the gate.
    Promote {
        /// A version, as v3 or 3.
        #[arg(value_name = "VERSION")]
        id: String,
        /// Why, recorded with the pointer.
        #[arg(long, default_value = "promoted by hand")]
        reason: String,
    },
    /// Make the previous production version production again.
    Rollback {
        /// Why, recorded with the pointer.
        #[arg(long, default_value = "rolled back by hand")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Import a directory of .psv files, a CSV or CSV.gz in PhysioNet long format, or a ready sepsis-data.csv.
    Import {
        /// Data file or .psv folder to import into raw-data/ of the store.
        #[arg(long, value_name = "PATH")]
        data: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load_config(&cli.global) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    let _log_guard = match logging::init(&config.logging) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let progress =
        progress::for_terminal(cli.global.json || config.logging.format == LogFormat::Json);
    // Scoring only reads the store, so it does not create a mistyped local
    // folder. With a model given as a local path it does not use the store.
    let (read_only, model_reference) = match &cli.command {
        Command::Predict { model, .. } | Command::Evaluate { model, .. } => (true, model.clone()),
        Command::Registry { .. } | Command::Runs { .. } | Command::Serve { .. } => (true, None),
        _ => (false, None),
    };
    let model_is_path = model_reference
        .as_deref()
        .is_some_and(|m| Path::new(m.strip_prefix("file://").unwrap_or(m)).exists());
    let mut config = config;
    if read_only && model_is_path {
        config.storage.uri = "memory://".into();
    }
    // An unusable store URI or schema file is a configuration error too.
    let opened = runtime.block_on(async {
        match read_only {
            true => Context::open_existing(config, progress),
            false => Context::open(config, progress),
        }
    });
    let ctx = match opened {
        Ok(mut ctx) => {
            ctx.git_commit = option_env!("SEPSIS_GIT_COMMIT").map(str::to_string);
            ctx
        }
        Err(error) => {
            eprintln!("error: {:#}", anyhow::Error::from(error));
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli, ctx)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("command failed");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(global: &GlobalArgs) -> anyhow::Result<Config> {
    let default_file = PathBuf::from("config/config.yaml");
    let file = match &global.config {
        Some(path) => Some(path.clone()),
        None if default_file.exists() => Some(default_file),
        None => None,
    };
    // clap has already checked the flags; the raw arguments give every
    // `--set` in order (see `set_flags_in_order`).
    debug_assert!(global.overrides.len() <= set_flags_in_order().len());
    let mut overrides = Vec::new();
    for text in set_flags_in_order() {
        overrides.push(parse_override(&text)?);
    }
    if let Some(store) = &global.store {
        // An override is read as YAML, where a folder named `123` or `true`
        // would not be a string. A JSON string is read as the same string.
        let quoted = serde_json::Value::String(store.clone()).to_string();
        overrides.push(("storage.uri".to_string(), quoted));
    }
    if let Some(format) = global.log_format {
        let name = match format {
            LogFormatArg::Text => "text",
            LogFormatArg::Json => "json",
        };
        overrides.push(("logging.format".to_string(), name.to_string()));
    }
    let config = Config::load(&ConfigSources {
        file,
        read_env: true,
        overrides,
    })?;
    Ok(config)
}

/// Collects every `--set KEY=VALUE` of the command line, in order. When the
/// global flag appears both before and after the subcommand, clap keeps only
/// the later occurrences, which would drop settings silently.
fn set_flags_in_order() -> Vec<String> {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut values = Vec::new();
    let mut index = 0;
    while index < args.len() {
        let arg = &args[index];
        if arg == "--" {
            break;
        }
        if arg == "--set" {
            if let Some(value) = args.get(index + 1) {
                values.push(value.clone());
            }
            index += 2;
            continue;
        }
        if let Some(value) = arg.strip_prefix("--set=") {
            values.push(value.to_string());
        }
        index += 1;
    }
    values
}

async fn run(cli: Cli, ctx: Context) -> anyhow::Result<()> {
    let json = cli.global.json;
    let default_input = ctx.config.data.default_input.clone();
    tracing::info!(store = ctx.store.root_uri(), "store opened");

    match cli.command {
        Command::Pipeline { data } => {
            let input = data.unwrap_or(default_input);
            let settings = TrackingSettings::from_env()?;
            let (outcome, tracking) = run_pipeline_tracked(&ctx, &input, settings).await;
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(error) => {
                    eprintln!("tracking: {}", tracking.summary());
                    return Err(anyhow::Error::from(error)
                        .context(format!("pipeline on {} failed", input.display())));
                }
            };
            let mut value = serde_json::to_value(&outcome)?;
            value["tracking"] = serde_json::to_value(&tracking)?;
            report(json, &value, || {
                format!(
                    "{}\n  tracking    {}",
                    pipeline_summary(&outcome),
                    tracking.summary()
                )
            })?;
        }
        Command::Data {
            command: DataCommand::Import { data },
        } => {
            let manifest = pipeline::run_import(&ctx, &data).await?;
            report(json, &manifest, || {
                format!(
                    "imported {} rows of {} patients ({} septic), digest {}",
                    manifest.rows, manifest.patients, manifest.septic_patients, manifest.digest
                )
            })?;
        }
        Command::Ingest => {
            let manifest = pipeline::run_ingest(&ctx).await?;
            report(json, &manifest, || {
                format!(
                    "snapshot of {} rows for data {}",
                    manifest.rows, manifest.data_digest
                )
            })?;
        }
        Command::Validate => {
            let report_value = pipeline::run_validate(&ctx).await?;
            report(json, &report_value, || {
                format!(
                    "validation passed: {} rows, {} patients",
                    report_value.rows, report_value.patients
                )
            })?;
        }
        Command::Transform => {
            let (manifest, reused) = pipeline::run_transform(&ctx).await?;
            report(json, &manifest, || {
                let verb = if reused { "reused" } else { "created" };
                format!(
                    "{verb} feature version {} ({} rows)",
                    manifest.version, manifest.rows
                )
            })?;
        }
        Command::Train { features } => {
            let (outcome, metrics) = pipeline::run_train(&ctx, features.as_deref()).await?;
            let value = serde_json::json!({
                "run_id": outcome.run_id,
                "model_path": outcome.model_path,
                "sidecar": outcome.sidecar,
                "metrics": metrics,
            });
            report(json, &value, || {
                format!(
                    "trained run {}: {}\n{}",
                    outcome.run_id,
                    outcome.model_path,
                    describe(&metrics.model)
                )
            })?;
        }
        Command::Evaluate {
            run, data: None, ..
        } => {
            let (run_id, evaluation) = pipeline::run_evaluate_stored(&ctx, run.as_deref()).await?;
            let value = serde_json::json!({ "run_id": run_id, "evaluation": evaluation });
            report(json, &value, || {
                format!("run {run_id}\n{}", describe(&evaluation))
            })?;
        }
        Command::Evaluate {
            data: Some(data),
            model,
            ..
        } => {
            let model = load_model(&ctx, model).await?;
            let scored =
                scoring::score_file(&ctx.schema, &data, &model, scoring::Purpose::Evaluate)
                    .await
                    .with_context(|| format!("scoring {} failed", data.display()))?;
            let source = data.display().to_string();
            let evaluation = scoring::evaluate_scored(&model, &scored, &source);
            report(json, &evaluation, || {
                let mut lines = vec![
                    format!("model {} on {source}", evaluation.run_id),
                    describe(&evaluation.evaluation),
                ];
                lines.extend(baseline_lines(&evaluation.baselines));
                lines.join("\n")
            })?;
        }
        Command::Registry { command } => registry_command(&ctx, command, json).await?,
        Command::Runs { command } => runs::run(command, &ctx.store, &ctx.registry(), json).await?,
        Command::Serve { addr } => serve(&cli.global, &ctx, addr).await?,
        Command::Predict { data, out, model } => {
            check_output(&data, &out)?;
            let model = load_model(&ctx, model).await?;
            check_output_outside_store(&out, &ctx.store, &model.location)?;
            let scored = scoring::score_file(&ctx.schema, &data, &model, scoring::Purpose::Predict)
                .await
                .with_context(|| format!("scoring {} failed", data.display()))?;
            write_predictions(&out, &scored)
                .with_context(|| format!("writing {} failed", out.display()))?;
            let alerts = scored.scores.alert.iter().filter(|a| **a).count();
            let value = serde_json::json!({
                "out": out.display().to_string(),
                "rows": scored.patient_ids.len(),
                "patients": scored.cohort.patients.len(),
                "alert_hours": alerts,
                "run_id": model.sidecar.run_id,
                "threshold": model.card.policy.rule.threshold,
                "hold_hours": model.card.policy.rule.hold_hours,
            });
            report(json, &value, || {
                format!(
                    "wrote predictions for {} rows of {} patient(s), {alerts} of them in alert, to {}",
                    scored.patient_ids.len(),
                    scored.cohort.patients.len(),
                    out.display()
                )
            })?;
        }
    }
    Ok(())
}

/// Runs the prediction service. A training job started over the API runs
/// this executable with the service's configuration file, `--set` flags and
/// store.
async fn serve(
    global: &GlobalArgs,
    ctx: &Context,
    addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    if let Some(config) = &global.config {
        args.extend(["--config".into(), config.into()]);
    }
    for text in set_flags_in_order() {
        args.extend(["--set".into(), text.into()]);
    }
    args.extend(["--store".into(), ctx.config.storage.uri.clone().into()]);
    let training = sepsis_serve::TrainSettings {
        program: std::env::current_exe().context("cannot find the sepsis executable")?,
        args,
        token: sepsis_serve::ApiToken::from_env(),
    };
    let state = sepsis_serve::AppState::new(
        ctx.registry(),
        ctx.schema.clone(),
        (&ctx.config.serve).into(),
        training,
    );
    let addr = addr.unwrap_or(ctx.config.serve.addr);
    sepsis_serve::run(addr, state).await?;
    Ok(())
}

/// Loads the named model; without a name, production, or the store's newest
/// run while nothing is in production.
async fn load_model(ctx: &Context, reference: Option<String>) -> anyhow::Result<ScoringModel> {
    let registry = ctx.registry();
    let reference = match reference {
        // The pipeline prints model paths as file:// URIs; accept them back.
        Some(reference) => match reference.strip_prefix("file://") {
            Some(path) => path.to_string(),
            None => reference,
        },
        None => match registry.production().await? {
            Some(production) => format!("v{}", production.version),
            None => pipeline::newest_run(&ctx.store).await?,
        },
    };
    if let Some(version) = registry_version(&registry, &reference).await? {
        return Ok(ScoringModel::load_version(&registry, version).await?);
    }
    Ok(ScoringModel::load(&ctx.store, &reference).await?)
}

/// Reads `production`, `v3` or `3` as a registry version; other text is not one.
async fn registry_version(registry: &Registry, text: &str) -> anyhow::Result<Option<u32>> {
    if text == "production" {
        let production = registry.production().await?;
        return match production {
            Some(p) => Ok(Some(p.version)),
            None => anyhow::bail!(
                "there is no production version of {} yet",
                registry.model_name()
            ),
        };
    }
    let looks_like_version = text
        .strip_prefix('v')
        .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
    match looks_like_version && !Path::new(text).exists() {
        true => Ok(Some(parse_version(text)?)),
        false => Ok(None),
    }
}

async fn registry_command(
    ctx: &Context,
    command: RegistryCommand,
    json: bool,
) -> anyhow::Result<()> {
    let registry = ctx.registry();
    match command {
        RegistryCommand::List => {
            let production = registry.production().await?;
            let versions = registry.versions().await?;
            let current = production.as_ref().map(|p| p.version);
            let value = serde_json::json!({
                "model_name": registry.model_name(),
                "production": production,
                "versions": versions,
            });
            report(json, &value, || {
                if versions.is_empty() {
                    return format!("no versions of {} yet", registry.model_name());
                }
                let mut lines = vec![format!(
                    "{:<12} {:<26} {:>8} {:>8} {:<26}",
                    "version", "run", "utility", "AUROC", "created"
                )];
                for v in &versions {
                    let mark = if Some(v.version) == current { " *" } else { "" };
                    lines.push(format!(
                        "{:<12} {:<26} {:>8} {:>8} {:<26}",
                        format!("v{}{mark}", v.version),
                        v.run_id,
                        number(v.metrics.get("utility").copied().flatten(), 3),
                        number(v.metrics.get("auroc_sepsis_label").copied().flatten(), 3),
                        v.created_at
                    ));
                }
                lines.push(match current {
                    Some(version) => format!("* production: v{version}"),
                    None => "no version is in production".into(),
                });
                lines.join("\n")
            })?;
        }
        RegistryCommand::Show { id: version } => {
            let wanted = match registry_version(&registry, &version).await? {
                Some(wanted) => wanted,
                None => parse_version(&version)?,
            };
            let record = registry.version(wanted).await?;
            let production = registry.production().await?;
            let is_production = production.as_ref().is_some_and(|p| p.version == wanted);
            let value = serde_json::json!({
                "location": registry.version_location(wanted),
                "production": is_production,
                "version": record,
            });
            report(json, &value, || {
                let mut lines = vec![
                    format!(
                        "{} v{}{}",
                        record.model_name,
                        record.version,
                        if is_production { " (production)" } else { "" }
                    ),
                    format!("  location     {}", registry.version_location(wanted)),
                    format!("  run          {}", record.run_id),
                    format!("  created      {}", record.created_at),
                    format!(
                        "  git commit   {}",
                        record.git_commit.as_deref().unwrap_or("unknown")
                    ),
                    format!("  data         {}", record.data_digest),
                    format!(
                        "  features     {} (feature set {})",
                        record.feature_version, record.feature_set_version
                    ),
                ];
                for (name, value) in &record.metrics {
                    lines.push(format!("  {name:<28} {}", number(*value, 4)));
                }
                for file in &record.files {
                    lines.push(format!(
                        "  file {:<20} {:>10} bytes  sha256 {}",
                        file.name, file.bytes, file.sha256
                    ));
                }
                lines.join("\n")
            })?;
        }
        RegistryCommand::Promote {
            id: version,
            reason,
        } => {
            let wanted = parse_version(&version)?;
            let settings = TrackingSettings::from_env()?;
            let current = registry.production().await?.map(|p| p.version);
            let production = registry.promote(wanted, current, &reason).await?;
            let champion = follow_production(&settings, ctx, &registry).await;
            let headline = format!(
                "v{} of {} is production{}",
                production.version,
                registry.model_name(),
                match current {
                    Some(previous) => format!(" (was v{previous})"),
                    None => String::new(),
                }
            );
            report_pointer(json, &production, &champion, headline)?;
        }
        RegistryCommand::Rollback { reason } => {
            let settings = TrackingSettings::from_env()?;
            let before = registry.production().await?.map(|p| p.version);
            let production = registry.rollback(&reason).await?;
            let champion = follow_production(&settings, ctx, &registry).await;
            let headline = format!(
                "rolled back {} to v{} (was v{})",
                registry.model_name(),
                production.version,
                before.unwrap_or_default()
            );
            report_pointer(json, &production, &champion, headline)?;
        }
    }
    Ok(())
}

/// Moves MLflow's alias `champion` after the production pointer moved. The
/// pointer is the decision, so a failure here is reported, not returned.
async fn follow_production(
    settings: &TrackingSettings,
    ctx: &Context,
    registry: &Registry,
) -> Result<ChampionAlias, String> {
    experiment::align_champion(settings, &ctx.store, registry)
        .await
        .map_err(|error| format!("{:#}", anyhow::Error::new(error)))
}

/// Prints the new production pointer and where MLflow's alias now points:
/// with `json`, the pointer's record with the field `mlflow_champion` added.
fn report_pointer(
    json: bool,
    production: &Production,
    champion: &Result<ChampionAlias, String>,
    headline: String,
) -> anyhow::Result<()> {
    if let Err(error) = champion {
        tracing::warn!(error = error.as_str(), "the MLflow alias was not moved");
    }
    if json {
        let mut value = serde_json::to_value(production).expect("the pointer serialises");
        value["mlflow_champion"] = match champion {
            Ok(alias) => serde_json::to_value(alias).expect("the alias outcome serialises"),
            Err(error) => serde_json::json!({ "state": "failed", "error": error }),
        };
        return print_json(&value);
    }
    let line = match champion {
        Ok(alias) => alias.summary(),
        Err(error) => Some(format!(
            "MLflow: the alias was not moved ({error}); `sepsis runs sync` tries again"
        )),
    };
    match line {
        Some(line) => print_text(&format!("{headline}\n{line}")),
        None => print_text(&headline),
    }
}

/// Rejects an `--out` that names the input `data`, one of its `.psv` files
/// when `data` is a folder, or a read-only file, before any scoring.
fn check_output(data: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    if let (Ok(input), Ok(output)) = (std::fs::canonicalize(data), std::fs::canonicalize(out)) {
        let psv_in_folder = input.is_dir()
            && output.parent() == Some(input.as_path())
            && output.extension().is_some_and(|e| e == "psv");
        if output == input || psv_in_folder {
            anyhow::bail!(
                "--out {} is an input file, which the predictions would replace; give another \
                 path",
                out.display()
            );
        }
    }
    // The predictions replace the file by a rename, which a read-only mode
    // would not stop.
    let read_only =
        std::fs::metadata(out).is_ok_and(|meta| meta.is_file() && meta.permissions().readonly());
    if read_only {
        anyhow::bail!(
            "--out {} is read-only; make it writable or give another path",
            out.display()
        );
    }
    Ok(())
}

/// Rejects an `--out` inside a local store or inside the folder of the model
/// read from a path: the predictions would replace a stored file, such as a
/// registry version's model, whose digest its record keeps.
fn check_output_outside_store(
    out: &std::path::Path,
    store: &sepsis_ews::storage::Store,
    model_location: &str,
) -> anyhow::Result<()> {
    // `out` may not exist yet, so its folder is resolved instead.
    let folder = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    let Ok(out_folder) = std::fs::canonicalize(folder) else {
        return Ok(());
    };
    if let Some(root) = store
        .local_root()
        .filter(|root| out_folder.starts_with(root))
    {
        anyhow::bail!(
            "--out {} is inside the store {}, whose files the predictions must not replace; \
             give a path outside it",
            out.display(),
            root.display()
        );
    }
    let model_folder = std::path::Path::new(model_location)
        .parent()
        .and_then(|folder| std::fs::canonicalize(folder).ok());
    if model_folder.is_some_and(|model_folder| out_folder == model_folder) {
        anyhow::bail!(
            "--out {} is in the folder of the model {}, whose files the predictions must not \
             replace; give a path outside it",
            out.display(),
            model_location
        );
    }
    Ok(())
}

/// Writes the predictions. A regular or new file is written to a temporary
/// file beside it and renamed into place, so a failed run leaves no
/// half-written file. An existing file keeps its permissions. A symbolic link
/// is followed, and a device or pipe such as `/dev/stdout` is written directly.
fn write_predictions(out: &std::path::Path, scored: &scoring::ScoredData) -> anyhow::Result<()> {
    use std::io::Write as _;
    // The metadata of what `out` names, following symbolic links.
    let existing = std::fs::metadata(out).ok();
    if existing.as_ref().is_some_and(|m| m.is_dir()) {
        anyhow::bail!("--out {} is a folder; give a file path", out.display());
    }
    if existing.as_ref().is_some_and(|m| !m.is_file()) {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(out)
            .with_context(|| format!("cannot open {}", out.display()))?;
        let mut writer = std::io::BufWriter::new(file);
        write_rows(&mut writer, scored)?;
        writer.flush()?;
        return Ok(());
    }
    let is_link = std::fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_symlink());
    let target = match is_link {
        true => std::fs::canonicalize(out)
            .with_context(|| format!("--out {} is a broken symbolic link", out.display()))?,
        false => out.to_path_buf(),
    };

    let folder = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    if !folder.is_dir() {
        anyhow::bail!(
            "the folder of --out {} does not exist; create it first",
            out.display()
        );
    }
    let permissions = match &existing {
        Some(meta) => meta.permissions(),
        None => new_file_permissions(),
    };
    let file = tempfile::Builder::new()
        .prefix(".sepsis-predictions-")
        .permissions(permissions.clone())
        .tempfile_in(folder)
        .with_context(|| format!("cannot create a file in {}", folder.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    write_rows(&mut writer, scored)?;
    let file = writer.into_inner().map_err(|e| e.into_error())?;
    if existing.is_some() {
        // The mode given at creation is narrowed by the umask; an existing
        // file keeps exactly the mode it had.
        std::fs::set_permissions(file.path(), permissions)?;
    }
    file.persist(&target)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace {}", target.display()))?;
    Ok(())
}

/// Returns the mode of a new output file: readable by all, narrowed by the
/// umask as for any file a command creates.
fn new_file_permissions() -> std::fs::Permissions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::Permissions::from_mode(0o666)
    }
    #[cfg(not(unix))]
    {
        tempfile::tempfile()
            .and_then(|f| f.metadata())
            .map(|m| m.permissions())
            .expect("a temporary file can be created")
    }
}

/// Rows formatted per thread and round by [`write_rows`].
const WRITE_ROUND_ROWS: usize = 1 << 16;

/// Writes the header and one line per row. The lines are formatted on all
/// cores, a round of rows at a time, and written in row order.
fn write_rows(
    writer: &mut impl std::io::Write,
    scored: &scoring::ScoredData,
) -> anyhow::Result<()> {
    writeln!(writer, "patient_id,hour,probability,alert")?;
    let rows = scored.patient_ids.len();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut texts = vec![Vec::new(); threads];
    for round in (0..rows).step_by(WRITE_ROUND_ROWS * threads) {
        std::thread::scope(|scope| {
            for (index, text) in texts.iter_mut().enumerate() {
                let start = (round + index * WRITE_ROUND_ROWS).min(rows);
                let end = (start + WRITE_ROUND_ROWS).min(rows);
                scope.spawn(move || format_rows(text, scored, start..end));
            }
        });
        for text in &texts {
            writer.write_all(text)?;
        }
    }
    Ok(())
}

/// Formats the output lines of `rows` into `text`, replacing its contents.
fn format_rows(text: &mut Vec<u8>, scored: &scoring::ScoredData, rows: std::ops::Range<usize>) {
    use std::io::Write as _;
    text.clear();
    let scores = &scored.scores;
    for row in rows {
        writeln!(
            text,
            "{},{},{},{}",
            csv_field(&scored.patient_ids[row]),
            scored.cohort.hours[row],
            scores.probability[row],
            u8::from(scores.alert[row])
        )
        .expect("writing to memory does not fail");
    }
}

/// Quotes a CSV field when it contains a comma, quote or line break.
fn csv_field(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\"")).into()
    } else {
        text.into()
    }
}

/// Formats the headline measures in a few lines.
fn describe(e: &Evaluation) -> String {
    let intervals = e.intervals.as_ref().map_or(String::new(), |i| {
        format!("\n  uncertainty  {}", i.sentence())
    });
    format!(
        "  per hour     AUROC {} (SepsisLabel {})  AUPRC {} (SepsisLabel {})  utility {}\n  \
         per patient  {} of septic patients alerted in time, median warning {} h, {} of alerted \
         patients septic\n  burden       {} alerts per patient-day at threshold {}; expected \
         calibration error {}{intervals}",
        show(e.hourly.auroc),
        show(e.hourly.auroc_sepsis_label),
        show(e.hourly.auprc),
        show(e.hourly.auprc_sepsis_label),
        show(e.hourly.utility),
        percent(e.patients.alerted_in_time_share),
        number(e.patients.median_lead_hours, 1),
        percent(e.patients.precision),
        number(e.burden.alerts_per_patient_day, 3),
        e.rule.threshold.map_or("none".to_string(), |t| format!(
            "{t:.4} (held {} h)",
            e.rule.hold_hours
        )),
        e.calibration
            .as_ref()
            .map_or("n/a".to_string(), |c| format!("{:.4}", c.ece)),
    )
}

fn report<T: serde::Serialize>(
    json: bool,
    value: &T,
    summary: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        print_json(value)
    } else {
        print_text(&summary())
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    print_text(&serde_json::to_string(value).expect("command output serialises"))
}

/// Writes one result to stdout. A closed pipe or a full disk is an error
/// like any other, reported with exit status 1 rather than a panic.
fn print_text(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .context("writing the result to stdout failed")
}

fn show(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"))
}

fn pipeline_summary(outcome: &PipelineOutcome) -> String {
    let m = &outcome.metrics;
    let reused = if outcome.feature_reused {
        " (reused)"
    } else {
        ""
    };
    let mut lines = vec![
        format!("Pipeline finished: run {}", outcome.run_id),
        format!(
            "  data        {} rows, {} patients, digest {}",
            outcome.rows, outcome.patients, outcome.data_digest
        ),
        format!("  features    version {}{reused}", outcome.feature_version),
        if outcome.folds >= 2 {
            format!(
                "  patients    {} fit and calibration ({} folds, out of fold) / {} validation",
                outcome.fit_patients, outcome.folds, outcome.validation_patients
            )
        } else {
            format!(
                "  patients    {} fit / {} calibration / {} validation",
                outcome.fit_patients, outcome.calibration_patients, outcome.validation_patients
            )
        },
        format!("  model       {}", outcome.model_path),
        format!("  report      {}", outcome.report_path),
        format!("  policy      {}", m.policy.statement),
        describe(&m.model),
    ];
    if let Some(o) = &m.out_of_fold {
        lines.push(format!(
            "  out of fold  AUROC {} (SepsisLabel {}) on {} training patients, each scored by the \
             fold booster that did not fit it",
            show(o.auroc),
            show(o.auroc_sepsis_label),
            o.patients
        ));
    }
    lines.extend(baseline_lines(&m.baselines));
    let gate = &outcome.gate;
    lines.push(format!(
        "  registry    {} v{}: {}",
        gate.model_name,
        outcome.registry_version,
        match (gate.promoted, gate.production_version) {
            (true, _) => "promoted to production".to_string(),
            (false, Some(production)) => format!("not promoted; production stays v{production}"),
            (false, None) => "not promoted; there is no production version".to_string(),
        }
    ));
    for reason in &gate.reasons {
        lines.push(format!("              {reason}"));
    }
    lines.join("\n")
}

/// Formats one line per baseline.
fn baseline_lines(baselines: &[BaselineResult]) -> Vec<String> {
    baselines
        .iter()
        .map(|baseline| {
            let e = &baseline.evaluation;
            format!(
                "  baseline    {:<6} AUROC (SepsisLabel) {}  utility {}  {} alerts per patient-day",
                baseline.name,
                show(e.hourly.auroc_sepsis_label),
                show(e.hourly.utility),
                number(e.burden.alerts_per_patient_day, 3)
            )
        })
        .collect()
}
