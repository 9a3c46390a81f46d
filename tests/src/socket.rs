//! The socket driver: a real backend over TCP on 127.0.0.1, with a manual
//! clock and a temporary data directory.
//!
//! Clients are plain blocking sockets bound to the transcript's source
//! address ([`LineClient`]). Reads wait at most
//! [`crate::client::LINE_TIMEOUT`]: that limit only fails a hung step; it
//! never orders anything.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chatd_core::{Config, Dialect};
use chatd_engine::clock::ManualClock;
use chatd_engine::persist::FsyncPolicy;
use chatd_engine::settings::{ServerSettings, Settings};
use chatd_engine::{Backend, Running, launch};

use crate::client::Clients;
use crate::driver::{Driver, DriverError, RESTART_REASON, Received};
use crate::memory::VIRTUAL_UNIX_START_MS;
use crate::tls::TestTls;

/// Runs transcripts against a backend over real sockets.
pub struct SocketDriver<B: Backend> {
    backend: B,
    name: String,
    clock: ManualClock,
    data_dir: tempfile::TempDir,
    settings: Settings,
    running: Option<Running>,
    clients: Clients,
}

impl<B: Backend> SocketDriver<B> {
    /// A driver for `backend` with `threads` I/O threads.
    pub fn new(backend: B, threads: usize) -> io::Result<Self> {
        let data_dir = tempfile::tempdir()?;
        let name = format!("{} ({} threads)", backend.name(), threads);
        let settings = Settings {
            server: ServerSettings {
                bind: "127.0.0.1:0".into(),
                // Ephemeral, so parallel tests never fight over 6667.
                irc_bind: "127.0.0.1:0".into(),
                http_bind: "127.0.0.1:0".into(),
                threads,
                data_dir: data_dir.path().to_path_buf(),
                fsync: FsyncPolicy::Always,
                persist: true,
                backend: backend.name().into(),
                ..ServerSettings::default()
            },
            chat: Config::default(),
            history: Default::default(),
            tls: Default::default(),
            http: Default::default(),
            cluster: None,
        };
        Ok(Self {
            backend,
            name,
            clock: ManualClock::new(VIRTUAL_UNIX_START_MS),
            data_dir,
            settings,
            running: None,
            clients: Clients::default(),
        })
    }

    /// Like [`SocketDriver::new`], in the TLS mode: the server listens on
    /// TLS listeners too (a certificate made for the run) and every client
    /// connects over TLS to the TLS listener of its dialect.
    pub fn new_tls(backend: B, threads: usize) -> io::Result<Self> {
        let mut driver = Self::new(backend, threads)?;
        let tls = TestTls::create(driver.data_dir.path()).map_err(io::Error::other)?;
        driver.name = format!("{} over TLS", driver.name);
        driver.settings.server.tls_bind = "127.0.0.1:0".into();
        driver.settings.server.irc_tls_bind = "127.0.0.1:0".into();
        driver.settings.tls.cert = Some(tls.cert);
        driver.settings.tls.key = Some(tls.key);
        driver.clients = Clients::over_tls(tls.client);
        Ok(driver)
    }

    /// Like [`SocketDriver::new`], in the WebSocket mode: every client
    /// connects through the HTTP listener, at `/ws` or `/irc` by dialect.
    pub fn new_web(backend: B, threads: usize) -> io::Result<Self> {
        let mut driver = Self::new(backend, threads)?;
        driver.name = format!("{} over WebSocket", driver.name);
        driver.clients = Clients::over_web();
        Ok(driver)
    }

    /// The data directory the server writes its logs to.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    fn boot(&mut self) -> Result<(), DriverError> {
        let running = launch(&self.settings, &self.backend, Arc::new(self.clock.clone()))
            .map_err(|error| DriverError(format!("cannot start the server: {error}")))?;
        self.running = Some(running);
        Ok(())
    }

    /// Where the listener of `dialect` listens.
    fn address(&self, dialect: Dialect) -> Result<SocketAddr, DriverError> {
        let running = self
            .running
            .as_ref()
            .ok_or_else(|| DriverError("the server is not running".into()))?;
        if self.clients.web() {
            return running
                .http_addr(false)
                .ok_or_else(|| DriverError("the server has no HTTP listener".into()));
        }
        let tls = self.clients.tls();
        running.listener_of(dialect, tls).ok_or_else(|| {
            DriverError(format!("the server has no {dialect} listener (TLS: {tls})"))
        })
    }
}

impl<B: Backend> Driver for SocketDriver<B> {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self, config: &Config) -> Result<(), DriverError> {
        self.settings.chat = config.clone();
        self.boot()
    }

    fn connect(&mut self, client: &str, from: IpAddr, dialect: Dialect) -> Result<(), DriverError> {
        let server = self.address(dialect)?;
        self.clients.connect(client, server, from, dialect)
    }

    fn send(&mut self, client: &str, bytes: &[u8]) -> Result<(), DriverError> {
        self.clients.send(client, bytes)
    }

    fn next_line(&mut self, client: &str) -> Result<Received, DriverError> {
        self.clients.next_line(client)
    }

    fn close(&mut self, client: &str) -> Result<(), DriverError> {
        self.clients.close(client)
    }

    fn advance(&mut self, by: Duration) -> Result<(), DriverError> {
        self.clock.advance(by);
        Ok(())
    }

    fn restart(&mut self) -> Result<(), DriverError> {
        let running = self
            .running
            .take()
            .ok_or_else(|| DriverError("the server is not running".into()))?;
        running.shutdown(RESTART_REASON);
        running.wait();
        self.boot()
    }

    fn stop(&mut self) {
        self.clients.clear();
        if let Some(running) = self.running.take() {
            running.shutdown("test over");
            running.wait();
        }
    }
}
