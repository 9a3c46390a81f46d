//! Log output through tracing: `--log-level` wins over `RUST_LOG`, which
//! wins over the default (`info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber, writing to stderr.
pub(crate) fn init(level: Option<&str>) -> anyhow::Result<()> {
    let filter = match level {
        Some(level) => EnvFilter::try_new(level)
            .map_err(|error| anyhow::anyhow!("invalid --log-level {level:?}: {error}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        // A log line that cannot be written is lost, not fatal: by default
        // tracing reports it with `eprintln!`, which panics when stderr is
        // a closed pipe (a log collector that died), and a panic ends the
        // server (crash.rs).
        .log_internal_errors(false)
        .try_init()
        .map_err(|error| anyhow::anyhow!("cannot set up logging: {error}"))
}
