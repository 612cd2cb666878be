//! Logging for every Switchyard binary: `tracing` to standard output, JSON lines or text.

use crate::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`.
/// Fails with a message naming `log.level` when the filter does not parse.
pub fn init(format: LogFormat, level: &str) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| format!("RUST_LOG {v:?}: {e}"))?
        }
        _ => EnvFilter::try_new(level).map_err(|e| format!("config log.level {level:?}: {e}"))?,
    };
    let json = match format {
        LogFormat::Auto => !std::io::stdout().is_terminal(),
        LogFormat::Json => true,
        LogFormat::Text => false,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}
