//! chatd-engine: everything a chatd backend needs besides its own I/O.
//!
//! A backend only supplies I/O threads (see [`Backend`]): a listener,
//! sockets, per-connection write queues, read buffers. The engine runs the
//! rest: the thread that owns the sans-IO [`chatd_core::Server`]
//! ([`hub`]), the history writer with group commit ([`persist`]), the
//! clock ([`clock`]) and the settings ([`settings`]). Both backends share
//! this code, so persistence, ACK rules and shutdown behave the same.
//!
//! With a `[cluster]` table the server is one node of several sharing
//! rooms, nicknames and history through Redis: [`cluster::ClusterBus`]
//! carries the core's bus requests and events (docs/CLUSTER.md).
//!
//! # Lifecycle
//!
//! [`launch`] recovers history from the data directory, binds every
//! listener in the settings (one per dialect: native, IRC), starts the writer, the backend's I/O threads and the hub, and returns a
//! [`Running`] server. [`Running::shutdown`] (or SIGINT/SIGTERM in the CLI)
//! tells every client, flushes their queues for a bounded time, syncs the
//! history and lets [`Running::wait`] return.

pub mod accept;
pub mod accounts;
pub mod auth;
pub mod clock;
pub mod closing;
pub mod cluster;
pub mod hub;
pub mod listener;
mod metrics;
pub mod out_queue;
pub mod persist;
pub mod settings;
pub mod tls;
pub mod transport;
pub mod web;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use chatd_core::{Dialect, Server};

use crate::clock::Clock;
use crate::hub::{Event, Hub, Inbox, InboxStats, Mailbox, PanicSite};
use crate::listener::{Listener, Listening};
use crate::persist::{HistoryReader, HistoryWriter, RecoveryLimits, WriterOptions, recover_dir};
use crate::settings::{ListenAddressError, Settings};

/// How long I/O threads keep flushing queued output after a shutdown.
pub const SHUTDOWN_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A way of doing socket I/O: readiness (poll) or completion (iocp).
pub trait Backend {
    /// `poll` or `iocp`.
    fn name(&self) -> &'static str;

    /// The operating system mechanism in use (`epoll`, `kqueue`, ...).
    fn mechanism(&self) -> String;

    /// Starts `threads` I/O threads and accepts on every one of
    /// `listeners`, handing new sockets to the hub as [`Event::Accepted`]
    /// with the listener's dialect; a failing accept pauses that listener
    /// only ([`accept::AcceptBackoff`], one per listener). Thread `i` owns
    /// connections whose id modulo `threads` is `i`.
    fn start(
        &self,
        listeners: Vec<Listener>,
        threads: usize,
        max_outbound_bytes: usize,
        inbox: Arc<Inbox>,
    ) -> io::Result<Vec<IoThread>>;
}

/// One running I/O thread.
#[derive(Debug)]
pub struct IoThread {
    /// Where the hub sends its commands.
    pub mailbox: Arc<Mailbox>,
    /// The thread, joined at the end.
    pub thread: JoinHandle<()>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The settings are invalid.
    #[error("invalid settings: {0}")]
    Settings(#[from] chatd_core::ConfigError),
    /// The data directory could not be read or prepared.
    #[error("cannot use data directory {path}: {cause}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        cause: io::Error,
    },
    /// The account store could not be opened (damaged, unreadable).
    #[error("cannot use the account store in {path}: {cause}")]
    Accounts {
        /// The data directory.
        path: PathBuf,
        /// Why.
        cause: accounts::AccountStoreError,
    },
    /// A listen address in the settings is not valid.
    #[error(transparent)]
    BadAddress(#[from] ListenAddressError),
    /// Binding a listener failed (port in use, permission, ...).
    #[error("cannot listen on {address} for the {listener} listener: {cause}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The listener (`native`, `irc`, `http`).
        listener: &'static str,
        /// Why.
        cause: io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start threads: {0}")]
    Threads(io::Error),
    /// A TLS listener has no usable certificate.
    #[error("TLS: {0}")]
    Tls(String),
    /// The cluster bus could not start (its name is taken by a live node,
    /// or its URL is bad).
    #[error(transparent)]
    Cluster(#[from] cluster::BusError),
}

/// What start-up found and chose, for the start-up log line.
#[derive(Debug, Clone)]
pub struct StartInfo {
    /// Every listener, as bound, native first.
    pub listening: Vec<Listening>,
    /// I/O threads.
    pub threads: usize,
    /// Records recovered from history.
    pub recovered_records: usize,
    /// Histories found (rooms, whispers, id reservations).
    pub recovered_logs: usize,
    /// Rooms whose older history is on disk only (not all of it restored).
    pub incomplete_rooms: usize,
    /// The SHA-256 fingerprint of the certificate `--tls-self-signed` made.
    pub tls_fingerprint: Option<String>,
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    info: StartInfo,
    inbox: Arc<Inbox>,
    hub: JoinHandle<()>,
    io_threads: Vec<JoinHandle<()>>,
    tls: Option<tls::TlsAcceptor>,
}

/// Something that can ask a running server to stop (for signal handlers).
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    inbox: Arc<Inbox>,
}

impl ShutdownHandle {
    /// Starts a graceful shutdown; every client is told `reason`.
    pub fn shutdown(&self, reason: &str) {
        self.inbox.send(Event::Shutdown {
            reason: reason.to_owned(),
        });
    }
}

/// The test harness's control over a running server: what
/// [`ShutdownHandle`] can do, plus fault injection. Only the `chatd`
/// binary's manual-clock mode hands one to anything, and only to the
/// process's own stdin (ARCHITECTURE.md, decisions 16 and 21): nothing on
/// the network reaches it.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    inbox: Arc<Inbox>,
}

impl ControlHandle {
    /// Starts a graceful shutdown; every client is told `reason`.
    pub fn shutdown(&self, reason: &str) {
        ShutdownHandle {
            inbox: self.inbox.clone(),
        }
        .shutdown(reason);
    }

    /// Makes a thread of the server panic, as a bug would.
    pub fn inject_panic(&self, site: PanicSite) {
        self.inbox.send(Event::InjectPanic(site));
    }
}

impl Running {
    /// What start-up found and chose.
    pub fn info(&self) -> &StartInfo {
        &self.info
    }

    /// The address the native listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        // The native listener has no "none": launch fails without it.
        self.address_of(Dialect::Native)
            .expect("the native listener is always bound")
    }

    /// The address the plain-text listener of `dialect` is bound to, if
    /// it has one.
    pub fn address_of(&self, dialect: Dialect) -> Option<SocketAddr> {
        self.listener_of(dialect, false)
    }

    /// The address the listener of `dialect` (over TLS or not) is bound
    /// to, if it has one.
    pub fn listener_of(&self, dialect: Dialect, tls: bool) -> Option<SocketAddr> {
        self.info
            .listening
            .iter()
            .find(|listening| {
                listening.dialect == dialect && listening.tls == tls && !listening.http
            })
            .map(|listening| listening.address)
    }

    /// The address the HTTP listener (`tls`: the HTTPS one) is bound to,
    /// if it has one.
    pub fn http_addr(&self, tls: bool) -> Option<SocketAddr> {
        self.info
            .listening
            .iter()
            .find(|listening| listening.http && listening.tls == tls)
            .map(|listening| listening.address)
    }

    /// The TLS listeners' shared config, to reload it (SIGHUP); `None`
    /// without TLS listeners.
    pub fn tls(&self) -> Option<&tls::TlsAcceptor> {
        self.tls.as_ref()
    }

    /// A handle that can stop the server from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            inbox: self.inbox.clone(),
        }
    }

    /// What the hub's inbox went through (backpressure).
    pub fn inbox_stats(&self) -> InboxStats {
        self.inbox.stats()
    }

    /// The test harness's control handle (fault injection included).
    pub fn control_handle(&self) -> ControlHandle {
        ControlHandle {
            inbox: self.inbox.clone(),
        }
    }

    /// Starts a graceful shutdown.
    pub fn shutdown(&self, reason: &str) {
        self.shutdown_handle().shutdown(reason);
    }

    /// Waits until the server has stopped: clients told and closed, their
    /// queues flushed (for at most [`SHUTDOWN_FLUSH_LIMIT`]), history synced.
    pub fn wait(self) {
        if self.hub.join().is_err() {
            tracing::error!("the core's thread panicked");
        }
        for thread in self.io_threads {
            if thread.join().is_err() {
                tracing::error!("an I/O thread panicked");
            }
        }
    }
}

/// Starts a server with `settings` on `backend`, timed by `clock`.
pub fn launch(
    settings: &Settings,
    backend: &dyn Backend,
    clock: Arc<dyn Clock>,
) -> Result<Running, LaunchError> {
    let anchored = clock.now();
    let mut chat = settings.chat.clone();
    // #history does not show what retention is about to delete.
    chat.history_retention = settings.history.retention;
    chat.cluster = settings
        .cluster
        .as_ref()
        .map(|cluster| chatd_core::cluster::ClusterConfig {
            node: cluster.node.clone(),
        });
    let mut server = Server::new(chat, anchored, clock.unix_ms())?;
    let wall_clock = clock::WallClockSync::new(clock.as_ref(), anchored);
    let data_dir = settings.server.data_dir.clone();
    let data_error = |cause| LaunchError::DataDir {
        path: data_dir.clone(),
        cause,
    };
    let persist = settings.server.persist;
    let (mut recovered_records, mut recovered_logs) = (0, 0);
    let mut incomplete_rooms = 0;
    if persist {
        std::fs::create_dir_all(&data_dir).map_err(data_error)?;
        let limits = RecoveryLimits::for_config(&settings.chat);
        let mut recovered = recover_dir(&data_dir, &limits).map_err(data_error)?;
        (recovered_records, recovered_logs) = (recovered.records.len(), recovered.logs);
        let incomplete = std::mem::take(&mut recovered.incomplete);
        incomplete_rooms = incomplete.len();
        server.restore(recovered.into_restore());
        // Rooms whose older history is on disk only: #history reads it.
        server.mark_history_incomplete(incomplete);
    }
    let wants_tls = settings
        .server
        .listeners()?
        .iter()
        .any(|listener| listener.tls);
    let (tls, tls_fingerprint) = if wants_tls {
        let source = settings.tls.source().map_err(LaunchError::Tls)?;
        let (acceptor, fingerprint) = tls::TlsAcceptor::new(source, settings.tls.handshake_timeout)
            .map_err(|error| LaunchError::Tls(error.to_string()))?;
        (Some(acceptor), fingerprint)
    } else {
        (None, None)
    };
    let refuser = match &tls {
        Some(_) => Some(tls::refuse::Refuser::start().map_err(LaunchError::Threads)?),
        None => None,
    };
    let (listeners, listening) = bind_all(settings, tls.as_ref())?;
    let inbox = Arc::new(Inbox::with_limit(settings.server.max_inbox_bytes));
    // Before any thread serves clients: a node name in use is refused
    // here. Its events wait in the inbox for the hub.
    let bus = match &settings.cluster {
        Some(cluster) => {
            let deliveries = inbox.clone();
            let bus = cluster::ClusterBus::start(
                cluster::BusSettings {
                    url: cluster.redis.clone(),
                    node: cluster.node.clone(),
                    history_size: settings.chat.history_size,
                },
                move |delivery| {
                    deliveries.send(match delivery {
                        cluster::Delivery::Event(event) => Event::Bus(event),
                        cluster::Delivery::History(answer) => Event::HistoryAnswered(answer),
                    });
                },
            )?;
            Some(bus)
        }
        None => None,
    };
    let writer = if persist {
        let reports = inbox.clone();
        let options = WriterOptions {
            policy: settings.server.fsync,
            open_files: settings.server.open_log_files,
            queue: settings.server.history_queue,
            segment_bytes: settings.history.segment_bytes,
            retention: settings.history.retention(),
        };
        let writer = HistoryWriter::start(&data_dir, options, move |report| {
            reports.send(Event::Persisted(report));
        })
        .map_err(data_error)?;
        Some(writer)
    } else {
        None
    };
    let reader = if persist {
        let answers = inbox.clone();
        let reader = HistoryReader::start(&data_dir, move |answer| {
            answers.send(Event::HistoryAnswered(answer));
        })
        .map_err(LaunchError::Threads)?;
        Some(reader)
    } else {
        None
    };
    let threads = settings.server.resolved_threads();
    let io = backend
        .start(
            listeners,
            threads,
            settings.chat.max_outbound_bytes,
            inbox.clone(),
        )
        .map_err(LaunchError::Threads)?;
    let (mailboxes, io_threads): (Vec<_>, Vec<_>) =
        io.into_iter().map(|t| (t.mailbox, t.thread)).unzip();
    let auth = auth::PasswordChecker::start(auth::default_workers(), inbox.clone())
        .map_err(LaunchError::Threads)?;
    // Without persistence accounts live in memory only, as history does.
    let account_store = if persist {
        let (store, stored) =
            accounts::AccountStore::open(&data_dir).map_err(|cause| LaunchError::Accounts {
                path: data_dir.clone(),
                cause,
            })?;
        server.load_accounts(stored);
        Some(store)
    } else {
        None
    };
    let accounts = accounts::AccountWorker::start(account_store, inbox.clone())
        .map_err(LaunchError::Threads)?;
    let hub = Hub {
        server,
        clock,
        inbox: inbox.clone(),
        mailboxes,
        writer,
        wall_clock,
        auth,
        accounts,
        reader,
        appended: 0,
        settled: 0,
        held: std::collections::VecDeque::new(),
        refuser,
        turns: Default::default(),
        bus,
        bus_up: false,
    };
    let hub = std::thread::Builder::new()
        .name("chatd-core".into())
        .spawn(move || hub.run())
        .map_err(LaunchError::Threads)?;
    Ok(Running {
        info: StartInfo {
            listening,
            threads,
            recovered_records,
            recovered_logs,
            incomplete_rooms,
            tls_fingerprint,
        },
        inbox,
        hub,
        io_threads,
        tls,
    })
}

/// Binds every listener the settings name, in order; the first that fails
/// stops start-up, named with its dialect.
fn bind_all(
    settings: &Settings,
    tls: Option<&tls::TlsAcceptor>,
) -> Result<(Vec<Listener>, Vec<Listening>), LaunchError> {
    let wanted = settings.server.listeners()?;
    let web = Arc::new(web::WebSettings {
        request_timeout: settings.http.request_timeout,
        ..web::WebSettings::new(&settings.http.allowed_origins, settings.chat.max_line_bytes)
    });
    let mut listeners = Vec::with_capacity(wanted.len());
    let mut listening = Vec::with_capacity(wanted.len());
    for want in wanted {
        let bind_error = |cause| LaunchError::Bind {
            address: want.address,
            listener: want.name(),
            cause,
        };
        let socket = listener::listen(want.address).map_err(bind_error)?;
        let address = socket.local_addr().map_err(bind_error)?;
        listening.push(Listening {
            address,
            dialect: want.dialect,
            tls: want.tls,
            http: want.http,
        });
        listeners.push(Listener {
            socket,
            dialect: want.dialect,
            tls: if want.tls { tls.cloned() } else { None },
            web: want.http.then(|| {
                Arc::new(web::WebSettings {
                    loopback_only: address.ip().is_loopback(),
                    ..(*web).clone()
                })
            }),
        });
    }
    Ok((listeners, listening))
}
