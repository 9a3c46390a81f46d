//! The process driver: a `chatd` binary run as a separate process (natively,
//! or a Windows build under Wine), timed by its hidden manual clock.
//!
//! The server is started as `COMMAND serve --manual-clock UNIX_MS ...` with
//! a config file written from the transcript's settings; `advance` becomes
//! an `advance` line on the process's stdin, answered by `advanced` on its
//! stdout before the step completes; `restart` sends `shutdown restarting`,
//! waits for the process to exit and starts a new one on the same data
//! directory, its clock standing where the old one stopped.

use std::io::{BufRead, BufReader, Lines, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chatd_core::{Config, Dialect};
use chatd_engine::listener::{Listening, parse_listening};

use crate::client::Clients;
use crate::driver::{Driver, DriverError, RESTART_REASON, Received};
use crate::memory::VIRTUAL_UNIX_START_MS;
use crate::tls::TestTls;

/// How long a server may take to start (Wine's first start is slow).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a server may take to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The native `chatd` binary of this build, for tests that start it as a
/// process: `CHATD_BIN` if set, else `chatd` beside the running test's
/// profile directory (`target/debug/chatd` for `target/debug/deps/TEST`),
/// first brought up to date with `cargo build -p chatd-cli --bin chatd`
/// (the tests crate cannot name another package's binary at compile time).
pub fn native_chatd_binary() -> Result<PathBuf, DriverError> {
    if let Some(path) = std::env::var_os("CHATD_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|error| DriverError(error.to_string()))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| DriverError(format!("no profile directory above {}", exe.display())))?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| DriverError("no workspace above the tests crate".into()))?;
    let mut build = Command::new(env!("CARGO"));
    build
        .current_dir(workspace)
        .args(["build", "--quiet", "-p", "chatd-cli", "--bin", "chatd"]);
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        build.arg("--release");
    }
    let status = build
        .status()
        .map_err(|error| DriverError(format!("cannot run cargo build: {error}")))?;
    if !status.success() {
        return Err(DriverError(format!(
            "cargo build of chatd failed: {status}"
        )));
    }
    let binary = profile_dir.join(format!("chatd{}", std::env::consts::EXE_SUFFIX));
    if !binary.is_file() {
        return Err(DriverError(format!(
            "no chatd binary at {}",
            binary.display()
        )));
    }
    Ok(binary)
}

/// Runs transcripts against a server process.
pub struct ProcessDriver {
    command: Vec<String>,
    backend: String,
    threads: usize,
    name: String,
    data_dir: tempfile::TempDir,
    elapsed: Duration,
    server: Option<ServerProcess>,
    clients: Clients,
    startup_lines: Vec<String>,
    /// TLS mode: the certificate the server is given.
    tls: Option<TestTls>,
}

struct ServerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Every listener, from the start-up line.
    listening: Vec<Listening>,
}

impl ProcessDriver {
    /// A driver that starts servers with `command` (program and leading
    /// arguments, e.g. `["wine", "chatd.exe"]`) on `backend`.
    pub fn new(command: Vec<String>, backend: &str, threads: usize) -> std::io::Result<Self> {
        Ok(Self {
            name: format!("process {} --backend {backend}", command.join(" ")),
            command,
            backend: backend.to_owned(),
            threads,
            data_dir: tempfile::tempdir()?,
            elapsed: Duration::ZERO,
            server: None,
            clients: Clients::default(),
            startup_lines: Vec::new(),
            tls: None,
        })
    }

    /// Like [`ProcessDriver::new`], in the TLS mode: the server also
    /// listens over TLS (a certificate made for the run, given with
    /// `--tls-cert`/`--tls-key`) and every client connects over TLS to the
    /// TLS listener of its dialect.
    pub fn new_tls(command: Vec<String>, backend: &str, threads: usize) -> std::io::Result<Self> {
        let mut driver = Self::new(command, backend, threads)?;
        let tls = TestTls::create(driver.data_dir.path()).map_err(std::io::Error::other)?;
        driver.name = format!("{} over TLS", driver.name);
        driver.clients = Clients::over_tls(tls.client.clone());
        driver.tls = Some(tls);
        Ok(driver)
    }

    /// The start-up log line of every server started so far.
    pub fn startup_lines(&self) -> &[String] {
        &self.startup_lines
    }

    fn config_path(&self) -> PathBuf {
        self.data_dir.path().join("chatd.toml")
    }

    fn boot(&mut self) -> Result<(), DriverError> {
        let start_ms = VIRTUAL_UNIX_START_MS + self.elapsed.as_millis() as u64;
        let logs = self.data_dir.path().join("logs");
        let (program, leading) = self
            .command
            .split_first()
            .ok_or_else(|| DriverError("empty server command".into()))?;
        let mut command = Command::new(program);
        command
            .args(leading)
            .arg("serve")
            // Ephemeral ports for every listener, read back from the
            // start-up line, so parallel runs never fight over a port.
            .args(["--bind", "127.0.0.1:0", "--irc-bind", "127.0.0.1:0"])
            .args(["--http-bind", "127.0.0.1:0"])
            .args(["--backend", &self.backend])
            .args(["--threads", &self.threads.to_string(), "--fsync", "always"])
            .arg("--config")
            .arg(self.config_path())
            .arg("--data-dir")
            .arg(&logs)
            .args(["--manual-clock", &start_ms.to_string()]);
        if let Some(tls) = &self.tls {
            command
                .args(["--tls-bind", "127.0.0.1:0", "--irc-tls-bind", "127.0.0.1:0"])
                .arg("--tls-cert")
                .arg(&tls.cert)
                .arg("--tls-key")
                .arg(&tls.key);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| DriverError(format!("cannot start {program}: {error}")))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| DriverError("no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| DriverError("no stdout".into()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| DriverError("no stderr".into()))?;
        let (found, startup) = mpsc::channel();
        std::thread::spawn(move || {
            // Drain stderr for the whole run so the server never blocks.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("chatd listening on ") {
                    let _ = found.send(line);
                }
            }
        });
        let line = match startup.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                return Err(DriverError(format!("{program} printed no start-up line")));
            }
        };
        let listening = line
            .split("chatd listening on ")
            .nth(1)
            .map(parse_listening)
            .unwrap_or_default();
        if listening.is_empty() {
            let _ = child.kill();
            return Err(DriverError(format!("no listener in {line:?}")));
        }
        self.startup_lines.push(line);
        self.server = Some(ServerProcess {
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
            listening,
        });
        Ok(())
    }

    fn server(&mut self) -> Result<&mut ServerProcess, DriverError> {
        self.server
            .as_mut()
            .ok_or_else(|| DriverError("the server is not running".into()))
    }

    fn shut_down(&mut self, reason: &str) -> Result<(), DriverError> {
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        let _ = writeln!(server.stdin, "shutdown {reason}");
        let _ = server.stdin.flush();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match server.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(DriverError(format!("server exited with {status}")));
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = server.child.kill();
                    return Err(DriverError("server did not stop in time".into()));
                }
            }
        }
    }
}

impl Driver for ProcessDriver {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self, config: &Config) -> Result<(), DriverError> {
        let text =
            toml::to_string(config).map_err(|error| DriverError(format!("config: {error}")))?;
        std::fs::write(self.config_path(), text).map_err(|error| DriverError(error.to_string()))?;
        self.boot()
    }

    fn connect(&mut self, client: &str, from: IpAddr, dialect: Dialect) -> Result<(), DriverError> {
        let tls = self.clients.tls();
        let server = self
            .server()?
            .listening
            .iter()
            .find(|listening| listening.dialect == dialect && listening.tls == tls)
            .map(|listening| listening.address)
            .ok_or_else(|| {
                DriverError(format!("the server has no {dialect} listener (TLS: {tls})"))
            })?;
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
        let server = self.server()?;
        let command = format!("advance {}ms\n", by.as_millis());
        server
            .stdin
            .write_all(command.as_bytes())
            .and_then(|()| server.stdin.flush())
            .map_err(|error| DriverError(format!("cannot advance the clock: {error}")))?;
        match server.stdout.next() {
            Some(Ok(line)) if line == "advanced" => {}
            other => return Err(DriverError(format!("clock did not advance: {other:?}"))),
        }
        self.elapsed += by;
        Ok(())
    }

    fn restart(&mut self) -> Result<(), DriverError> {
        self.shut_down(RESTART_REASON)?;
        self.boot()
    }

    fn stop(&mut self) {
        self.clients.clear();
        if let Err(error) = self.shut_down("test over") {
            eprintln!("{}: {error}", self.name);
        }
    }
}
