//! `chatd serve`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use chatd_backend_iocp::IocpBackend;
use chatd_backend_poll::PollBackend;
use chatd_engine::clock::{Clock, ManualClock, SystemClock};
use chatd_engine::persist::FsyncPolicy;
use chatd_engine::settings::{ClusterSettings, Settings};
use std::io::{BufRead, Write};

use chatd_engine::hub::PanicSite;
use chatd_engine::listener::describe_listening;
use chatd_engine::{Backend, ControlHandle, launch};
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
    /// Address of the native listener [default: 127.0.0.1:9090].
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// Address of the IRC listener, or `none` for no IRC listener
    /// [default: 127.0.0.1:6667].
    #[arg(long, value_name = "ADDR")]
    irc_bind: Option<String>,
    /// I/O threads; 0 = one per core [default: 0].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Directory for the per-room history logs [default: ./chat_logs].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// When history is forced to disk: always, never, or an interval such as 10ms [default: 10ms].
    #[arg(long, value_name = "POLICY", value_parser = FsyncPolicy::parse)]
    fsync: Option<FsyncPolicy>,
    /// Keep history in memory only: no log files, nothing recovered, all
    /// history lost at exit.
    #[arg(long)]
    no_persist: bool,
    /// Address of a native-dialect listener over TLS, or `none` [default: none].
    #[arg(long, value_name = "ADDR")]
    tls_bind: Option<String>,
    /// Address of an IRC listener over TLS (usually port 6697), or `none`
    /// [default: none].
    #[arg(long, value_name = "ADDR")]
    irc_tls_bind: Option<String>,
    /// Address of the HTTP listener: the web client at /, WebSocket at /ws
    /// (native) and /irc, /metrics, /healthz, /readyz; or `none`
    /// [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    http_bind: Option<String>,
    /// Address of the same HTTP listener over TLS (https, wss), or `none`
    /// [default: none].
    #[arg(long, value_name = "ADDR")]
    https_bind: Option<String>,
    /// The TLS certificate chain (PEM, leaf first); re-read on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM); re-read on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Make a TLS certificate for localhost in memory (for a first try;
    /// its SHA-256 fingerprint is logged).
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    tls_self_signed: bool,
    /// Run as one node of a cluster sharing rooms, nicknames and history
    /// through this Redis, e.g. redis://127.0.0.1:6379/0 (docs/CLUSTER.md);
    /// needs --node-name.
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
    /// This node's name in the cluster: 1 to 8 characters, a lowercase
    /// letter then lowercase letters and digits; unique among live nodes.
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
    /// TOML config file with every setting (see docs/CONFIG.md).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter, e.g. info, debug, chatd_engine=debug [default: $RUST_LOG or info].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// For the transcript harness only: run on a manual clock standing at
    /// UNIX_MS, moved by `advance DURATION` lines on stdin (each answered
    /// with `advanced` on stdout); `shutdown REASON` stops the server;
    /// `panic hub` and `panic io N` make that thread panic.
    #[arg(long, value_name = "UNIX_MS", hide = true)]
    manual_clock: Option<u64>,
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    logging::init(args.log_level.as_deref())?;
    crate::crash::exit_on_panic();
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
    if let Some(irc_bind) = args.irc_bind {
        server.irc_bind = irc_bind;
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
    if args.no_persist {
        server.persist = false;
    }
    if let Some(tls_bind) = args.tls_bind {
        server.tls_bind = tls_bind;
    }
    if let Some(irc_tls_bind) = args.irc_tls_bind {
        server.irc_tls_bind = irc_tls_bind;
    }
    if let Some(http_bind) = args.http_bind {
        server.http_bind = http_bind;
    }
    if let Some(https_bind) = args.https_bind {
        server.https_bind = https_bind;
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        settings.tls.cert = Some(cert);
        settings.tls.key = Some(key);
        settings.tls.self_signed = false;
    }
    if args.tls_self_signed {
        settings.tls.self_signed = true;
        settings.tls.cert = None;
        settings.tls.key = None;
    }
    match (args.cluster, args.node_name) {
        (Some(url), Some(name)) => {
            settings.cluster = Some(
                ClusterSettings::new(&url, &name)
                    .map_err(|error| anyhow::anyhow!("--cluster/--node-name: {error}"))?,
            );
        }
        // A name alone renames the node of the config file's cluster.
        (None, Some(name)) => match &settings.cluster {
            Some(cluster) => {
                settings.cluster = Some(
                    ClusterSettings::new(&cluster.redis, &name)
                        .map_err(|error| anyhow::anyhow!("--node-name: {error}"))?,
                );
            }
            None => bail!("--node-name needs --cluster (or a [cluster] table in the config file)"),
        },
        (Some(_), None) => {
            bail!(
                "--cluster needs --node-name: this node's name in the cluster, e.g. --node-name n1"
            )
        }
        (None, None) => {}
    }
    let server = &settings.server;
    let backend: Box<dyn Backend> = match server.backend.as_str() {
        "poll" => Box::new(PollBackend),
        "iocp" => Box::new(IocpBackend::default()),
        other => bail!("unknown backend {other:?} in the config file (poll or iocp)"),
    };
    let manual = args.manual_clock.map(ManualClock::new);
    let clock: Arc<dyn Clock> = match &manual {
        Some(manual) => Arc::new(manual.clone()),
        None => Arc::new(SystemClock),
    };
    // Before the listeners: the handlers need a descriptor of their own,
    // and clients accepted at once could take the last one (the process
    // limit reached is a state the server survives, not a start-up error).
    let signals = prepare_signals()?;
    let running = launch(&settings, backend.as_ref(), clock)?;
    let info = running.info();
    let history = if settings.server.persist {
        format!(
            "data dir {}, fsync {}, {} history records from {} logs ({} rooms with older history on disk only)",
            settings.server.data_dir.display(),
            settings.server.fsync,
            info.recovered_records,
            info.recovered_logs,
            info.incomplete_rooms,
        )
    } else {
        "history in memory only (persist off)".to_owned()
    };
    let cluster = match &settings.cluster {
        Some(cluster) => format!(", cluster {} as {}", cluster.redis, cluster.node),
        None => String::new(),
    };
    tracing::info!(
        "chatd listening on {}: backend {} ({}), {} I/O threads, {history}{cluster}",
        describe_listening(&info.listening),
        backend.name(),
        backend.mechanism(),
        info.threads,
    );
    if let Some(fingerprint) = &info.tls_fingerprint {
        tracing::info!("self-signed TLS certificate, SHA-256 fingerprint {fingerprint}");
    }
    let handle = running.shutdown_handle();
    let signalled = AtomicBool::new(false);
    let stop = move || {
        if signalled.swap(true, Ordering::SeqCst) {
            // A second signal: the operator does not want to wait.
            eprintln!("chatd: stopping now without flushing");
            std::process::exit(130);
        }
        tracing::info!("signal received; shutting down");
        handle.shutdown(STOP_REASON);
    };
    handle_signals(signals, stop, running.tls().cloned())?;
    if let Some(manual) = manual {
        control_from_stdin(manual, running.control_handle());
    }
    running.wait();
    tracing::info!("stopped");
    Ok(())
}

/// The signal handlers, installed before anything is served.
#[cfg(unix)]
type Signals = signal_hook::iterator::Signals;

/// Installs the handlers for SIGINT, SIGTERM and SIGHUP (signals that
/// arrive before [`handle_signals`] wait for it).
#[cfg(unix)]
fn prepare_signals() -> anyhow::Result<Signals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("cannot install the SIGINT/SIGTERM/SIGHUP handlers")
}

/// SIGINT and SIGTERM stop the server; SIGHUP re-reads the TLS
/// certificate and key for new handshakes (a broken file is logged and
/// the old certificate stays).
#[cfg(unix)]
fn handle_signals(
    mut signals: Signals,
    stop: impl Fn() + Send + 'static,
    tls: Option<chatd_engine::tls::TlsAcceptor>,
) -> anyhow::Result<()> {
    use signal_hook::consts::SIGHUP;
    std::thread::Builder::new()
        .name("chatd-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal != SIGHUP {
                    stop();
                    continue;
                }
                match &tls {
                    Some(tls) => tls.reload_logged(),
                    None => tracing::info!("SIGHUP: no TLS listener, nothing to reload"),
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Nothing is installed ahead on Windows.
#[cfg(not(unix))]
struct Signals;

/// Nothing to install ahead on Windows: the console handler takes no
/// descriptor.
#[cfg(not(unix))]
fn prepare_signals() -> anyhow::Result<Signals> {
    Ok(Signals)
}

/// Ctrl-C and console close stop the server. Windows has no SIGHUP: a new
/// TLS certificate takes a restart there.
#[cfg(not(unix))]
fn handle_signals(
    _signals: Signals,
    stop: impl Fn() + Send + 'static,
    _tls: Option<chatd_engine::tls::TlsAcceptor>,
) -> anyhow::Result<()> {
    ctrlc::set_handler(stop).context("cannot install the Ctrl-C handler")
}

/// The manual clock's control channel: the process's own stdin, so only
/// whoever started the process can move its time or inject a fault.
fn control_from_stdin(clock: ManualClock, handle: ControlHandle) {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut stdout = std::io::stdout();
        for line in stdin.lock().lines().map_while(Result::ok) {
            let (verb, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            match verb {
                "advance" => match chatd_core::duration::parse(rest.trim()) {
                    Ok(by) => {
                        clock.advance(by);
                        let _ = writeln!(stdout, "advanced");
                        let _ = stdout.flush();
                    }
                    Err(error) => tracing::error!(%error, "bad advance command"),
                },
                "shutdown" => handle.shutdown(rest.trim()),
                "panic" => match panic_site(rest.trim()) {
                    Some(site) => handle.inject_panic(site),
                    None => tracing::error!(site = rest.trim(), "bad panic command"),
                },
                other => tracing::error!(command = other, "unknown clock command"),
            }
        }
    });
}

/// `hub` or `io N`.
fn panic_site(text: &str) -> Option<PanicSite> {
    match text.split_once(' ') {
        None if text == "hub" => Some(PanicSite::Hub),
        Some(("io", n)) => n.trim().parse().ok().map(PanicSite::Io),
        _ => None,
    }
}
