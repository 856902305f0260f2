//! The `sepsis` command: a thin layer that parses flags, sets up logging and
//! maps library errors to exit codes. All work happens in the `sepsis_ews`
//! library.

mod logging;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use sepsis_ews::config::{parse_override, Config, ConfigSources, LogFormat};
use sepsis_ews::pipeline::{self, Context, PipelineOutcome};

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
    /// Evaluate a trained run on its validation patients.
    Evaluate {
        /// Run id [default: the newest run].
        #[arg(long, value_name = "RUN_ID")]
        run: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Import a directory of .psv files, a CSV or CSV.gz in PhysioNet long format, or a ready sepsis-data.csv.
    Import {
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
    // An unusable store URI or schema file is a configuration error too.
    let ctx = match runtime.block_on(async { Context::open(config, progress) }) {
        Ok(ctx) => ctx,
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
        overrides.push(("storage.uri".to_string(), store.clone()));
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
            let outcome = pipeline::run_pipeline(&ctx, &input)
                .await
                .with_context(|| format!("pipeline on {} failed", input.display()))?;
            if json {
                print_json(&outcome);
            } else {
                print_summary(&outcome);
            }
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
            });
        }
        Command::Ingest => {
            let manifest = pipeline::run_ingest(&ctx).await?;
            report(json, &manifest, || {
                format!(
                    "snapshot of {} rows for data {}",
                    manifest.rows, manifest.data_digest
                )
            });
        }
        Command::Validate => {
            let report_value = pipeline::run_validate(&ctx).await?;
            report(json, &report_value, || {
                format!(
                    "validation passed: {} rows, {} patients",
                    report_value.rows, report_value.patients
                )
            });
        }
        Command::Transform => {
            let (manifest, reused) = pipeline::run_transform(&ctx).await?;
            report(json, &manifest, || {
                let verb = if reused { "reused" } else { "created" };
                format!(
                    "{verb} feature version {} ({} rows)",
                    manifest.version, manifest.rows
                )
            });
        }
        Command::Train { features } => {
            let (outcome, _, _) = pipeline::run_train(&ctx, features.as_deref()).await?;
            report(json, &outcome, || {
                format!("trained run {}: {}", outcome.run_id, outcome.model_path)
            });
        }
        Command::Evaluate { run } => {
            let (run_id, metrics) = pipeline::run_evaluate_stored(&ctx, run.as_deref()).await?;
            let value = serde_json::json!({ "run_id": run_id, "metrics": metrics });
            report(json, &value, || {
                format!(
                    "run {run_id}: AUROC {} AUPRC {} utility {}",
                    show(metrics.auroc),
                    show(metrics.auprc),
                    show(metrics.utility)
                )
            });
        }
    }
    Ok(())
}

fn report<T: serde::Serialize>(json: bool, value: &T, summary: impl FnOnce() -> String) {
    if json {
        print_json(value);
    } else {
        println!("{}", summary());
    }
}

fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string(value).expect("command output serialises")
    );
}

fn show(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"))
}

fn print_summary(outcome: &PipelineOutcome) {
    let m = &outcome.metrics;
    let reused = if outcome.feature_reused {
        " (reused)"
    } else {
        ""
    };
    println!("Pipeline finished: run {}", outcome.run_id);
    println!(
        "  data        {} rows, {} patients, digest {}",
        outcome.rows, outcome.patients, outcome.data_digest
    );
    println!("  features    version {}{reused}", outcome.feature_version);
    println!(
        "  split       {} training / {} validation patients",
        outcome.train_patients, outcome.validation_patients
    );
    println!("  model       {}", outcome.model_path);
    println!(
        "  validation  AUROC {}  AUPRC {}  utility {}",
        show(m.auroc),
        show(m.auprc),
        show(m.utility)
    );
    println!(
        "  at p >= {}  precision {}  recall {}  F1 {}  specificity {}",
        m.threshold,
        show(m.precision),
        show(m.recall),
        show(m.f1),
        show(m.specificity)
    );
}
