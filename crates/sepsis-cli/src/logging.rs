//! Logging: human-readable or JSON lines on stderr, and the same lines in a
//! daily rolling file under `logging.dir`. Stdout stays free for `--json`.
//!
//! One formatting layer writes to both destinations. Two layers would each
//! append recorded span fields to one shared per-span cache, which prints
//! every field recorded after span creation (`rows`, `elapsed_ms`) twice.

use std::io::IsTerminal;

use anyhow::Context as _;
use sepsis_ews::config::{LogFormat, LoggingConfig};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Installs the global subscriber. Keep the returned guard alive until exit:
/// dropping it flushes the log file.
pub fn init(config: &LoggingConfig) -> anyhow::Result<Option<WorkerGuard>> {
    let level = config.level.trim();
    let is_level = ["trace", "debug", "info", "warn", "error", "off"]
        .contains(&level.to_ascii_lowercase().as_str());
    // Any other word would parse as a target name and silence every log line.
    if !is_level && !level.contains('=') {
        anyhow::bail!(
            "invalid configuration: logging.level = {level:?}: expected trace, debug, info, \
             warn, error, off, or directives such as sepsis_ews=debug"
        );
    }
    let filter = EnvFilter::try_new(level)
        .with_context(|| format!("invalid configuration: logging.level = {level:?}"))?;
    let json = config.format == LogFormat::Json;

    let (layer, guard) = if config.dir.as_os_str().is_empty() {
        let layer = if json {
            fmt::layer()
                .json()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .boxed()
        } else {
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false)
                .boxed()
        };
        (layer, None)
    } else {
        std::fs::create_dir_all(&config.dir).with_context(|| {
            format!(
                "log folder {} could not be created (logging.dir)",
                config.dir.display()
            )
        })?;
        let appender = tracing_appender::rolling::RollingFileAppender::builder()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("sepsis.log")
            .build(&config.dir)
            .with_context(|| {
                format!(
                    "cannot write the log file in {} (logging.dir); choose a writable folder, \
                     or set logging.dir to \"\" to log to stderr only",
                    config.dir.display()
                )
            })?;
        let (file, guard) = tracing_appender::non_blocking(appender);
        let writer = std::io::stderr.and(file);
        // No colour codes, because the same bytes go to the file.
        let layer = if json {
            fmt::layer()
                .json()
                .with_writer(writer)
                .with_ansi(false)
                .boxed()
        } else {
            fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_target(false)
                .boxed()
        };
        (layer, Some(guard))
    };

    tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init()
        .context("the logger could not be installed")?;
    Ok(guard)
}
