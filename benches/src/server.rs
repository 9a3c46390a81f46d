//! A `chatd serve` child process under measurement.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use chatd_core::Dialect;
use chatd_engine::listener::parse_listening;

/// A running server process.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Where the measurement connects: chatd's listener of the dialect it
    /// was started for ([`ServerProcess::launch_dialect`]), or a peer's port.
    pub addr: SocketAddr,
    /// What the start-up line said after `chatd listening on ` (empty
    /// for peers).
    listening: String,
    /// A data directory made for this run, removed at the end.
    scratch: Option<PathBuf>,
}

/// How to start a server for a measurement (command-line flags shared by
/// the measurement binaries).
#[derive(Debug, Clone, clap::Args)]
pub struct Launch {
    /// The chatd binary [default: next to this one].
    #[arg(long)]
    pub chatd: Option<PathBuf>,
    /// Config file for the server (the bench profile).
    #[arg(long, default_value = "benches/bench.toml")]
    pub config: PathBuf,
    /// Backend to measure: poll or iocp.
    #[arg(long, default_value = "poll")]
    pub backend: String,
    /// I/O threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Pin the server to these CPUs (taskset list, e.g. 0 or 0-1); run the
    /// generator under `taskset -c` on the others to keep them apart.
    #[arg(long, value_name = "CPUS")]
    pub server_cpus: Option<String>,
}

impl ServerProcess {
    /// Starts a server as `launch` says, on a fresh scratch data directory.
    pub fn launch(launch: &Launch) -> anyhow::Result<Self> {
        Self::launch_backend(launch, &launch.backend, &[])
    }

    /// Starts a server as `launch` says but with `backend` and `extra`
    /// flags, on a fresh scratch data directory.
    pub fn launch_backend(launch: &Launch, backend: &str, extra: &[&str]) -> anyhow::Result<Self> {
        Self::launch_dialect(launch, backend, extra, Dialect::Native)
    }

    /// [`Self::launch_backend`] for clients speaking `dialect`: with IRC
    /// the server also listens for IRC on a free loopback port, and
    /// [`Self::addr`] is that listener.
    pub fn launch_dialect(
        launch: &Launch,
        backend: &str,
        extra: &[&str],
        dialect: Dialect,
    ) -> anyhow::Result<Self> {
        let scratch = std::env::temp_dir().join(format!("chatd-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        let mut server = Self::launch_in(launch, backend, extra, dialect, &scratch)?;
        server.scratch = Some(scratch);
        Ok(server)
    }

    /// [`Self::launch_dialect`] on the data directory `data`, which is
    /// left in place when the server stops.
    pub fn launch_in(
        launch: &Launch,
        backend: &str,
        extra: &[&str],
        dialect: Dialect,
        data: &Path,
    ) -> anyhow::Result<Self> {
        let binary = launch.chatd_binary()?;
        let mut args = vec![
            "--config".into(),
            launch.config.display().to_string(),
            "--backend".into(),
            backend.to_owned(),
            "--threads".into(),
            launch.threads.to_string(),
            "--data-dir".into(),
            data.display().to_string(),
        ];
        args.extend(extra.iter().map(|flag| (*flag).to_owned()));
        match &launch.server_cpus {
            Some(cpus) => {
                let pinned = ["-c".to_owned(), cpus.clone(), binary.display().to_string()];
                Self::start_via(Path::new("taskset"), &pinned, &binary, &args, dialect)
            }
            None => Self::start_via(&binary, &[], &binary, &args, dialect),
        }
    }

    /// Starts any server from its command line (`argv[0]` is the program)
    /// and waits up to 10 s until `addr` accepts connections. `scratch` is
    /// removed when it stops.
    pub fn start_peer(argv: &[String], addr: SocketAddr, scratch: PathBuf) -> anyhow::Result<Self> {
        let (program, args) = argv.split_first().context("an empty start command")?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(error).with_context(|| format!("cannot start {program}"));
            }
        };
        // From here on, dropping it kills the process and removes `scratch`.
        let mut server = Self {
            child,
            addr,
            listening: String::new(),
            scratch: Some(scratch),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("{program} exited at start ({status})");
            }
            if std::time::Instant::now() >= deadline {
                bail!("{program} did not accept connections on {addr} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// Starts `chatd serve` with `args` (plus `--bind 127.0.0.1:0` and
    /// `--irc-bind none`: measurements speak native, and two runs must
    /// not fight over the IRC port) and waits for its start-up line.
    pub fn start(binary: &Path, args: &[String]) -> anyhow::Result<Self> {
        Self::start_via(binary, &[], binary, args, Dialect::Native)
    }

    /// [`Self::start`] through a launcher: runs `program launcher_args...
    /// serve ...`, e.g. `taskset -c 0 /path/chatd serve ...`, where
    /// `binary` is the chatd that ends up running. For [`Dialect::Irc`]
    /// the IRC listener takes a free loopback port and becomes
    /// [`Self::addr`].
    fn start_via(
        program: &Path,
        launcher_args: &[String],
        binary: &Path,
        args: &[String],
        dialect: Dialect,
    ) -> anyhow::Result<Self> {
        let mut listeners = unused_listeners_off(binary, dialect == Dialect::Irc);
        if dialect == Dialect::Irc {
            listeners.extend(["--irc-bind".to_string(), "127.0.0.1:0".to_string()]);
        }
        // A measurement that wants the HTTP listener names it in `args`.
        if args.iter().any(|arg| arg == "--http-bind")
            && let Some(at) = listeners.iter().position(|arg| arg == "--http-bind")
        {
            listeners.drain(at..at + 2);
        }
        let mut child = Command::new(program)
            .args(launcher_args)
            .arg("serve")
            .args(["--bind", "127.0.0.1:0"])
            .args(&listeners)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (found, address) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("chatd listening on ").nth(1) {
                    // `ADDR (native)[, ADDR (irc)]: backend ...`; builds
                    // from before the IRC listener print a bare `ADDR:`.
                    let listening = parse_listening(rest);
                    let address = match listening.iter().find(|l| l.dialect == dialect) {
                        Some(wanted) => Some(wanted.address.to_string()),
                        None if listening.is_empty() && dialect == Dialect::Native => {
                            let first = rest.split([' ', ',']).next().unwrap_or_default();
                            Some(first.trim_end_matches(':').to_owned())
                        }
                        None => None,
                    };
                    let _ = found.send(address.map(|address| (address, rest.to_owned())));
                } else if ["ERROR", "WARN", "panicked"]
                    .iter()
                    .any(|w| line.contains(w))
                    || line.starts_with("chatd:")
                {
                    eprintln!("server: {line}");
                }
            }
        });
        let Ok(addr) = address.recv_timeout(Duration::from_secs(10)) else {
            let _ = child.kill();
            bail!("the server printed no start-up line within 10 s");
        };
        let Some((addr, listening)) = addr else {
            let _ = child.kill();
            bail!("the server's start-up line names no {dialect} listener");
        };
        Ok(Self {
            addr: addr.parse().context("start-up line address")?,
            listening,
            child,
            scratch: None,
        })
    }

    /// The address of the server's native TLS listener (started with
    /// `--tls-bind`).
    pub fn tls_addr(&self) -> anyhow::Result<SocketAddr> {
        parse_listening(&self.listening)
            .iter()
            .find(|l| l.dialect == Dialect::Native && l.tls)
            .map(|l| l.address)
            .context("the server's start-up line names no native TLS listener")
    }

    /// The address of the server's HTTP listener (started with
    /// `--http-bind`).
    pub fn http_addr(&self) -> anyhow::Result<SocketAddr> {
        parse_listening(&self.listening)
            .iter()
            .find(|l| l.http && !l.tls)
            .map(|l| l.address)
            .context("the server's start-up line names no HTTP listener")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User plus system CPU time the server has used, from /proc/PID/stat.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        cpu_time_of(&self.pid().to_string())
    }

    /// Peak resident set size in bytes (VmHWM), from /proc/PID/status.
    pub fn peak_rss_bytes(&self) -> anyhow::Result<u64> {
        status_field(self.pid(), "VmHWM:")
    }

    /// Resident set size in bytes, from /proc/PID/status.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        status_field(self.pid(), "VmRSS:")
    }
}

impl Launch {
    /// The chatd binary to start.
    pub fn chatd_binary(&self) -> anyhow::Result<PathBuf> {
        match &self.chatd {
            Some(path) => Ok(path.clone()),
            None => sibling_chatd(),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(scratch) = &self.scratch {
            let _ = std::fs::remove_dir_all(scratch);
        }
    }
}

/// Reads a dialect's name (`native` or `irc`) from the command line.
pub fn parse_dialect(text: &str) -> Result<Dialect, String> {
    [Dialect::Native, Dialect::Irc]
        .into_iter()
        .find(|dialect| dialect.name() == text)
        .ok_or_else(|| format!("unknown dialect {text:?} (native or irc)"))
}

/// How the load generator speaks to chatd in `dialect`.
pub fn chatd_peer(dialect: Dialect) -> crate::fanout::Peer {
    match dialect {
        Dialect::Native => crate::fanout::Peer::Chatd,
        Dialect::Irc => crate::fanout::Peer::Lines(crate::fanout::LineTemplates::chatd_irc()),
    }
}

/// Whether `binary serve` takes `flag` (its `--help` lists it).
fn knows_flag(binary: &Path, flag: &str) -> bool {
    Command::new(binary)
        .args(["serve", "--help"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| memchr::memmem::find(&out.stdout, flag.as_bytes()).is_some())
}

/// The flags that turn off the listeners a measurement does not use (IRC,
/// HTTP), so two runs never fight over their default ports. Builds from
/// before a listener existed (such as 256227d, run to measure what a
/// change costs) refuse its flag, and have no port to fight over.
pub(crate) fn unused_listeners_off(binary: &Path, irc: bool) -> Vec<String> {
    let mut args = Vec::new();
    if !irc && knows_flag(binary, "--irc-bind") {
        args.extend(["--irc-bind".to_string(), "none".to_string()]);
    }
    if knows_flag(binary, "--http-bind") {
        args.extend(["--http-bind".to_string(), "none".to_string()]);
    }
    args
}

/// The `chatd` binary next to the running executable (same target dir), or
/// the running executable itself when it is chatd (`chatd bench`).
pub fn sibling_chatd() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find the running executable")?;
    let dir = me.parent().context("executable has no directory")?;
    let candidate = dir.join(if cfg!(windows) { "chatd.exe" } else { "chatd" });
    if candidate.exists() {
        return Ok(candidate);
    }
    bail!(
        "no chatd binary at {}; build it first (cargo build --release --bin chatd)",
        candidate.display()
    )
}

/// This process's own CPU time (user plus system).
pub fn self_cpu_time() -> anyhow::Result<Duration> {
    cpu_time_of("self")
}

/// CPU time (user plus system) of process `pid`.
pub(crate) fn cpu_time_of_pid(pid: u32) -> anyhow::Result<Duration> {
    cpu_time_of(&pid.to_string())
}

fn cpu_time_of(pid: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .context("cannot read /proc (Linux only)")?;
    // Fields after the command name (which may hold spaces) start at ")".
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    // utime and stime are fields 14 and 15 (1-based), 12 and 13 here.
    let (Some(user), Some(system)) = (ticks(11), ticks(12)) else {
        bail!("unexpected /proc stat format");
    };
    // Linux reports clock ticks of 1/100 s (USER_HZ) to user space.
    Ok(Duration::from_millis((user + system) * 10))
}

fn status_field(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("cannot read /proc (Linux only)")?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no {field} in /proc status"))?;
    Ok(kib * 1024)
}
