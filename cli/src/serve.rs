//! `chatd serve`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use chatd_backend_iocp::IocpBackend;
use chatd_backend_poll::PollBackend;
use chatd_engine::clock::SystemClock;
use chatd_engine::persist::FsyncPolicy;
use chatd_engine::settings::Settings;
use chatd_engine::{Backend, launch};
use clap::Args;

use crate::logging;

/// What clients are told when the operator stops the server.
const STOP_REASON: &str = "stopped by the operator";

/// Settings given on the command line win over the config file, which wins
/// over the built-in defaults.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// I/O backend: poll (epoll/kqueue) or iocp (io_uring/IOCP).
    #[arg(long, value_parser = ["poll", "iocp"])]
    backend: Option<String>,
    /// Address to listen on [default: 127.0.0.1:9090].
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// I/O threads; 0 = one per core [default: 0].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Directory for the per-room history logs [default: ./chat_logs].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// When history is forced to disk: always, never, or an interval such as 10ms [default: 10ms].
    #[arg(long, value_name = "POLICY", value_parser = FsyncPolicy::parse)]
    fsync: Option<FsyncPolicy>,
    /// TOML config file with every setting (see docs/CONFIG.md).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter, e.g. info, debug, chatd_engine=debug [default: $RUST_LOG or info].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    logging::init(args.log_level.as_deref())?;
    let mut settings = match &args.config {
        Some(path) => Settings::load(path)?,
        None => Settings::default(),
    };
    let server = &mut settings.server;
    if let Some(backend) = args.backend {
        server.backend = backend;
    }
    if let Some(bind) = args.bind {
        server.bind = bind;
    }
    if let Some(threads) = args.threads {
        server.threads = threads;
    }
    if let Some(dir) = args.data_dir {
        server.data_dir = dir;
    }
    if let Some(fsync) = args.fsync {
        server.fsync = fsync;
    }
    let backend: Box<dyn Backend> = match server.backend.as_str() {
        "poll" => Box::new(PollBackend),
        "iocp" => Box::new(IocpBackend::default()),
        other => bail!("unknown backend {other:?} in the config file (poll or iocp)"),
    };
    let running = launch(&settings, backend.as_ref(), Arc::new(SystemClock))?;
    let info = running.info();
    tracing::info!(
        "chatd listening on {}: backend {} ({}), {} I/O threads, data dir {}, fsync {}, {} history records from {} logs",
        info.local_addr,
        backend.name(),
        backend.mechanism(),
        info.threads,
        settings.server.data_dir.display(),
        settings.server.fsync,
        info.recovered_records,
        info.recovered_logs,
    );
    let handle = running.shutdown_handle();
    let signalled = AtomicBool::new(false);
    ctrlc::set_handler(move || {
        if signalled.swap(true, Ordering::SeqCst) {
            // A second signal: the operator does not want to wait.
            eprintln!("chatd: stopping now without flushing");
            std::process::exit(130);
        }
        tracing::info!("signal received; shutting down");
        handle.shutdown(STOP_REASON);
    })
    .context("cannot install the SIGINT/SIGTERM handler")?;
    running.wait();
    tracing::info!("stopped");
    Ok(())
}
