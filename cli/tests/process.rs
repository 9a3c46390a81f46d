//! The real `chatd` binary as a process: start-up failures, operator
//! entries, SIGTERM and SIGKILL. Signals are Unix-only, so the signal tests
//! are compiled only there.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use chatd_core::{Dialect, history};
use chatd_engine::listener::{Listening, parse_listening};
use chatd_tests::client::LineClient;
use chatd_tests::driver::Received;

const CHATD: &str = env!("CARGO_BIN_EXE_chatd");
const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A running `chatd serve`, its addresses read from the start-up log line.
struct Server {
    child: Child,
    /// The native listener.
    addr: SocketAddr,
    /// Every listener, native first.
    listening: Vec<Listening>,
    /// Everything it logged so far.
    log: Printed,
}

impl Server {
    fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_on("127.0.0.1:0", data_dir, extra)
    }

    fn start_on(bind: &str, data_dir: &Path, extra: &[&str]) -> Self {
        Self::spawn(&[], bind, data_dir, extra, Stdio::null())
    }

    /// On the hidden manual clock, controlled through a piped stdin.
    fn start_controlled(data_dir: &Path, extra: &[&str]) -> Self {
        let mut args = vec!["--manual-clock", "1795000000000"];
        args.extend_from_slice(extra);
        Self::spawn(&[], "127.0.0.1:0", data_dir, &args, Stdio::piped())
    }

    /// Started through `wrapper` (a command that execs the rest, such as
    /// `prlimit`): the child is then chatd itself.
    fn spawn(wrapper: &[&str], bind: &str, data_dir: &Path, extra: &[&str], stdin: Stdio) -> Self {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(CHATD);
                command
            }
            None => Command::new(CHATD),
        };
        let mut child = command
            .args(["serve", "--bind", bind, "--threads", "2", "--data-dir"])
            .arg(data_dir)
            // An ephemeral IRC port (read back from the start-up line), so
            // parallel tests never fight over 6667.
            .args(["--irc-bind", "127.0.0.1:0"])
            .args(["--http-bind", "127.0.0.1:0"])
            .args(extra)
            // As deployed: a backtrace is opt-in, and symbolising one from
            // a debug build on a loaded machine can outlast the exit limit.
            .env_remove("RUST_BACKTRACE")
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chatd starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (found, address) = mpsc::channel();
        let log = Printed::keep_each(stderr, move |line| {
            if let Some(rest) = line.split("chatd listening on ").nth(1) {
                let _ = found.send(parse_listening(rest));
            }
        });
        let listening = address
            .recv_timeout(Duration::from_secs(10))
            .expect("start-up line");
        let addr = listening
            .iter()
            .find(|l| l.dialect == Dialect::Native)
            .expect("a native listener in the start-up line")
            .address;
        Self {
            child,
            addr,
            listening,
            log,
        }
    }

    /// Sends one control line (manual-clock mode only).
    fn control(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        writeln!(stdin, "{line}").expect("control line written");
        stdin.flush().expect("control line flushed");
    }

    fn log_text(&self) -> String {
        self.log.lines().join("\n")
    }

    /// Waits until a logged line satisfies `wanted`; fails after `limit`.
    fn wait_for_log(&self, limit: Duration, wanted: impl Fn(&str) -> bool) {
        self.log.wait_for("that log line", limit, wanted);
    }

    #[cfg(unix)]
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    #[cfg(unix)]
    fn wait(mut self, limit: Duration) -> ExitStatus {
        self.wait_for_exit(limit)
    }

    /// Waits for the process to end; one that does not within `limit`
    /// fails the test.
    fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "chatd did not exit within {limit:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines a child process prints, kept as they come, with a signal for each.
struct Printed(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Printed {
    /// Keeps every line `from` prints until it closes.
    fn keep(from: impl std::io::Read + Send + 'static) -> Self {
        Self::keep_each(from, |_| {})
    }

    /// Keeps every line `from` prints until it closes (reading it all the
    /// while, so the child never blocks on it), showing each to `each`.
    fn keep_each(
        from: impl std::io::Read + Send + 'static,
        mut each: impl FnMut(&str) + Send + 'static,
    ) -> Self {
        let printed = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let kept = printed.clone();
        thread::spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                each(&line);
                kept.0.lock().expect("printed lock").push(line);
                kept.1.notify_all();
            }
        });
        Self(printed)
    }

    fn lines(&self) -> Vec<String> {
        self.0.0.lock().expect("printed lock").clone()
    }

    /// Waits until a printed line satisfies `wanted`; fails after `limit`.
    fn wait_for(&self, what: &str, limit: Duration, wanted: impl Fn(&str) -> bool) {
        let (lines, printed) = &*self.0;
        let (lines, timeout) = printed
            .wait_timeout_while(lines.lock().expect("printed lock"), limit, |lines| {
                !lines.iter().any(|line| wanted(line))
            })
            .expect("printed lock");
        assert!(
            !timeout.timed_out(),
            "never printed {what} within {limit:?}:\n{}",
            lines.join("\n")
        );
    }
}

fn client(addr: SocketAddr) -> LineClient {
    let mut client = LineClient::connect(addr, LOCAL).expect("connects");
    client
        .wait_for(|line| line.starts_with("* welcome"))
        .expect("welcome");
    client
}

/// Runs chatd to completion; a run that does not end within 10 s (say, a
/// server that started when it should have failed) is killed and fails.
fn run_chatd(args: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(CHATD)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chatd runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("chatd {args:?} did not exit within 10 s");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn start_up_failures_are_one_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad_config = dir.path().join("bad.toml");
    std::fs::write(&bad_config, "max_line_bytes = \"lots\"\n").expect("write");
    let bad_config = bad_config.to_string_lossy().into_owned();
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = blocker.local_addr().expect("addr").to_string();
    let data = dir.path().join("data").to_string_lossy().into_owned();
    for (args, expected) in [
        (vec!["serve", "--threads", "many"], "invalid value 'many'"),
        (
            vec!["serve", "--config", "/no/such/file.toml"],
            "cannot read config file",
        ),
        (
            vec!["serve", "--config", bad_config.as_str()],
            "invalid config file",
        ),
        (
            vec![
                "serve",
                "--bind",
                taken.as_str(),
                "--irc-bind",
                "none",
                "--http-bind",
                "none",
                "--data-dir",
                data.as_str(),
            ],
            "for the native listener",
        ),
        (
            vec![
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--irc-bind",
                taken.as_str(),
                "--http-bind",
                "none",
                "--data-dir",
                data.as_str(),
            ],
            "for the irc listener",
        ),
        (
            vec![
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--irc-bind",
                "none",
                "--http-bind",
                taken.as_str(),
                "--data-dir",
                data.as_str(),
            ],
            "for the http listener",
        ),
        (
            vec![
                "serve",
                "--irc-bind",
                "everywhere",
                "--http-bind",
                "none",
                "--data-dir",
                data.as_str(),
            ],
            "irc_bind = \"everywhere\" is not a listen address for the irc listener",
        ),
        (
            vec!["serve", "--backend", "kqueue"],
            "invalid value 'kqueue'",
        ),
    ] {
        let (status, stderr) = run_chatd(&args);
        assert!(!status.success(), "{args:?} succeeded");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("chatd: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
    }
}

#[test]
fn the_start_up_line_names_every_listener_and_each_accepts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &[]);
    let kinds: Vec<(Dialect, bool)> = server
        .listening
        .iter()
        .map(|l| (l.dialect, l.http))
        .collect();
    assert_eq!(
        kinds,
        [
            (Dialect::Native, false),
            (Dialect::Irc, false),
            (Dialect::Native, true)
        ]
    );
    for listening in &server.listening {
        assert!(
            std::net::TcpStream::connect(listening.address).is_ok(),
            "{listening:?} accepts"
        );
    }
}

#[test]
fn hash_password_prints_an_operator_entry_the_server_accepts() {
    let mut child = Command::new(CHATD)
        .args(["hash-password", "--name", "root"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("chatd runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"s3cret\n")
        .expect("write");
    let output = child.wait_with_output().expect("output");
    assert!(output.status.success());
    let entry = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        entry.starts_with("[[operators]]\nname = \"root\"\npassword_hash = \"$argon2id$"),
        "{entry}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("chatd.toml");
    std::fs::write(&config, &entry).expect("write config");
    let config = config.to_string_lossy().into_owned();
    let server = Server::start(&dir.path().join("data"), &["--config", &config]);
    let mut alice = client(server.addr);
    // The right password first: after a wrong one, the name must wait.
    alice.say("#oper root s3cret").expect("send");
    alice
        .wait_for(|l| l == "* you are now a server operator")
        .expect("accepted");
    alice.say("#oper root wrong").expect("send");
    alice
        .wait_for(|l| l.starts_with("! bad-credentials"))
        .expect("refused");
}

#[test]
fn without_persistence_acks_come_at_once_and_no_log_is_written() {
    for backend in ["poll", "iocp"] {
        let dir = tempfile::tempdir().expect("temp dir");
        // With persistence on, fsync once an hour would hold the ACK back.
        let server = Server::start(
            dir.path(),
            &["--no-persist", "--fsync", "1h", "--backend", backend],
        );
        let mut alice = client(server.addr);
        alice.say("#ack on").expect("send");
        alice
            .wait_for(|l| l == "* acknowledgements on")
            .expect("acks on");
        alice.say("kept in memory").expect("send");
        alice
            .wait_for(|l| l.starts_with("+ ack "))
            .unwrap_or_else(|e| panic!("{backend}: no ACK without persistence: {e}"));
        alice.say("#history").expect("send");
        alice
            .wait_for(|l| l.ends_with("kept in memory"))
            .unwrap_or_else(|e| panic!("{backend}: history in memory: {e}"));
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .map(|entries| entries.map_while(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(files.is_empty(), "{backend}: files written: {files:?}");
    }
}

#[cfg(unix)]
#[test]
fn sigterm_tells_clients_flushes_history_and_exits_zero() {
    for backend in ["poll", "iocp"] {
        stop_with_sigterm(backend);
    }
}

#[cfg(unix)]
fn stop_with_sigterm(backend: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    // fsync once an hour: only the shutdown path can have synced these.
    let server = Server::start(dir.path(), &["--fsync", "1h", "--backend", backend]);
    let mut alice = client(server.addr);
    for i in 0..15 {
        alice.say(&format!("message {i}")).expect("send");
    }
    alice.say("#ping sent").expect("send");
    alice.wait_for(|l| l == "+ pong sent").expect("all handled");
    server.signal("TERM");
    assert_eq!(
        alice.next_line().expect("read"),
        Received::Line("* server shutting down: stopped by the operator".into())
    );
    assert_eq!(alice.next_line().expect("read"), Received::Closed);
    let status = server.wait(Duration::from_secs(10));
    assert!(status.success(), "{backend}: exit status {status:?}");
    let bytes = chatd_engine::persist::read_history(dir.path(), "general").expect("log exists");
    let texts: Vec<String> = history::recover(&bytes)
        .records
        .into_iter()
        .map(|r| r.text)
        .collect();
    let expected: Vec<String> = (0..15).map(|i| format!("message {i}")).collect();
    assert_eq!(texts, expected);
}

#[cfg(unix)]
#[test]
fn sigkill_during_an_acknowledged_stream_loses_no_acknowledged_message() {
    // "always" keeps records waiting behind each fsync, the widest window
    // for an early ACK to show; 10ms is the default.
    for backend in ["poll", "iocp"] {
        for policy in ["always", "10ms"] {
            kill_mid_stream_and_recover(backend, policy);
        }
    }
}

#[cfg(unix)]
fn kill_mid_stream_and_recover(backend: &str, policy: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("chatd.toml");
    std::fs::write(&config, "[rate_limit]\nenabled = false\n").expect("write config");
    let config = config.to_string_lossy().into_owned();
    let data = dir.path().join("data");
    let server = Server::start(
        &data,
        &["--config", &config, "--fsync", policy, "--backend", backend],
    );
    let mut writer = client(server.addr);
    writer.say("#ack on").expect("send");
    writer
        .wait_for(|l| l == "* acknowledgements on")
        .expect("ack mode");

    // One thread streams messages; this one collects ACKs and kills the
    // server after 300 of them, mid-stream.
    let mut sender = writer.try_clone_sender().expect("clone");
    let streaming = thread::spawn(move || {
        for i in 0..100_000 {
            if sender.say(&format!("durable {i}")).is_err() {
                return i;
            }
        }
        100_000
    });
    let mut acked = Vec::new();
    loop {
        match writer.next_line().expect("read") {
            Received::Line(line) => {
                if let Some(id) = line.strip_prefix("+ ack ") {
                    acked.push(id.parse::<u64>().expect("numeric id"));
                    if acked.len() == 300 {
                        server.signal("KILL");
                    }
                }
            }
            Received::Closed => break,
            Received::Nothing => panic!("the stream stalled after {} acks", acked.len()),
        }
    }
    let sent = streaming.join().expect("streamer");
    assert!(
        acked.len() >= 300 && sent > acked.len(),
        "sent {sent}, acked {}",
        acked.len()
    );
    drop(server);

    // Every acknowledged message is in the log after the crash ...
    let bytes = chatd_engine::persist::read_history(&data, "general").expect("log exists");
    let stored: std::collections::BTreeSet<u64> = history::recover(&bytes)
        .records
        .iter()
        .map(|r| r.id.get())
        .collect();
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|id| !stored.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{backend}, fsync {policy}: acknowledged but lost: {lost:?}"
    );
    // ... and a restarted server recovers it and carries on.
    let server = Server::start(&data, &["--config", &config, "--backend", backend]);
    let mut reader = client(server.addr);
    reader.say("#history 1").expect("send");
    reader
        .wait_for(|l| l.starts_with("+ history #general 1"))
        .expect("history is back");
}

#[test]
fn a_panic_on_any_thread_ends_the_process_and_frees_its_port() {
    for backend in ["poll", "iocp"] {
        for site in ["hub", "io 0", "io 1"] {
            panic_and_exit(backend, site);
        }
    }
}

fn panic_and_exit(backend: &str, site: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start_controlled(dir.path(), &["--backend", backend]);
    // Serving: one client on each I/O thread (ids 1 and 2 of 2 threads).
    let mut first = client(server.addr);
    let _second = client(server.addr);
    server.control(&format!("panic {site}"));
    let injected = Instant::now();
    // Generous for a loaded machine; a zombie never exits at all.
    let status = server.wait_for_exit(Duration::from_secs(1));
    let took = injected.elapsed();
    assert_eq!(
        status.code(),
        Some(70),
        "{backend}, panic {site}: exit status {status:?} after {took:?}"
    );
    // The process is gone, so is its listener, and its clients see the end.
    let refused = std::net::TcpStream::connect(server.addr);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
        "{backend}, panic {site}: the port still answers: {refused:?}"
    );
    loop {
        match first.next_line().expect("read") {
            Received::Line(_) => {}
            Received::Closed => break,
            Received::Nothing => panic!("{backend}, panic {site}: the client was left hanging"),
        }
    }
    let log = server.log_text();
    assert!(
        log.contains("injected panic") && log.contains("a thread panicked; exiting with status 70"),
        "{backend}, panic {site}: {log}"
    );
}

/// Out of descriptors, accepting backs off: the listener stays readable
/// with connections queued, and retrying at once spins (poll used to burn
/// a core and log 170,000 warnings a second).
#[cfg(target_os = "linux")]
#[test]
fn out_of_descriptors_accepts_back_off_without_spinning_or_flooding_the_log() {
    for backend in ["poll", "iocp"] {
        run_out_of_descriptors(backend);
    }
}

#[cfg(target_os = "linux")]
fn run_out_of_descriptors(backend: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::spawn(
        &["prlimit", "--nofile=64:64", "--"],
        "127.0.0.1:0",
        dir.path(),
        &["--no-persist", "--backend", backend],
        Stdio::null(),
    );
    // The first ones take the server's last descriptors; the rest wait in
    // the listener's queue.
    let mut clients: Vec<LineClient> = (0..90)
        .map(|_| LineClient::connect(server.addr, LOCAL).expect("connects"))
        .collect();
    server.wait_for_log(Duration::from_secs(10), |line| {
        line.contains("accept failed")
    });
    // The measurement: CPU used over a second while accepts keep failing.
    let pid = server.child.id();
    let (cpu_before, wall_before) = (cpu_time(pid), Instant::now());
    thread::sleep(Duration::from_secs(1));
    let (cpu, wall) = (cpu_time(pid) - cpu_before, wall_before.elapsed());
    let warnings = server
        .log_text()
        .lines()
        .filter(|line| line.contains("accept failed"))
        .count();
    eprintln!("{backend}: {cpu:?} CPU in {wall:?}, {warnings} accept warnings");
    assert!(
        cpu < wall / 10,
        "{backend}: {cpu:?} of CPU in {wall:?} while out of descriptors"
    );
    assert_eq!(warnings, 1, "{backend}: {}", server.log_text());
    // Descriptors freed, the waiting connections get in.
    clients.drain(..60);
    let last = clients.last_mut().expect("a waiting client");
    last.wait_for(|line| line.starts_with("* welcome"))
        .unwrap_or_else(|error| {
            panic!(
                "{backend}: never accepted: {error}\nLOG:\n{}",
                server.log_text()
            )
        });
    server.wait_for_log(Duration::from_secs(10), |line| {
        line.contains("accepting again")
    });
}

/// User plus system CPU time of a process so far (Linux).
#[cfg(target_os = "linux")]
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name, which ends with the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a command name")
        .1
        .split_whitespace()
        .collect();
    // utime and stime (fields 14 and 15), in ticks of 1/100 s (USER_HZ).
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

/// A free port on 127.0.0.1 (so a restarted server can take the same one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn connect_in_a_pipe_sends_stdin_and_prints_what_arrives() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &[]);
    let mut child = Command::new(CHATD)
        .args(["connect", &server.addr.to_string(), "--nick", "carol"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("chatd connect runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"#who\n#nick carol2\n")
        .expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "chatd connect did not exit at the end of input"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(
        printed,
        "* welcome, you are guest1 in #general; type #help for commands\n\
         * you are now carol\n\
         + who #general 1: carol\n\
         * you are now carol2\n"
    );
}

#[cfg(unix)]
mod terminal {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    use std::thread;
    use std::time::{Duration, Instant};

    use portable_pty::{CommandBuilder, PtySize, native_pty_system};

    use super::{CHATD, Server, client, free_port};

    const ROWS: u16 = 24;
    const COLS: u16 = 80;

    /// The client in a pseudo-terminal, its screen kept by a terminal emulator.
    struct Terminal {
        screen: Arc<Mutex<vt100::Parser>>,
        keys: Box<dyn Write + Send>,
        child: Box<dyn portable_pty::Child + Send + Sync>,
    }

    impl Terminal {
        fn start(args: &[&str]) -> Self {
            let pty = native_pty_system()
                .openpty(PtySize {
                    rows: ROWS,
                    cols: COLS,
                    pixel_width: 0,
                    pixel_height: 0,
                })
                .expect("a pty");
            let mut command = CommandBuilder::new(CHATD);
            command.args(args);
            command.env("TERM", "xterm-256color");
            let child = pty.slave.spawn_command(command).expect("client starts");
            drop(pty.slave);
            let mut output = pty.master.try_clone_reader().expect("pty reader");
            let keys = pty.master.take_writer().expect("pty writer");
            let screen = Arc::new(Mutex::new(vt100::Parser::new(
                std::num::NonZeroU16::new(ROWS).expect("rows"),
                std::num::NonZeroU16::new(COLS).expect("cols"),
                0,
            )));
            let feed = screen.clone();
            thread::spawn(move || {
                let _master = pty.master;
                let mut buffer = [0u8; 4096];
                while let Ok(n) = output.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    feed.lock().expect("screen").process(&buffer[..n]);
                }
            });
            Self {
                screen,
                keys,
                child,
            }
        }

        fn rows(&self) -> Vec<String> {
            let parser = self.screen.lock().expect("screen");
            parser
                .screen()
                .rows(0, COLS)
                .map(|row| row.trim_end().to_owned())
                .collect()
        }

        /// Waits (at most 10 s) until the screen satisfies `ready`.
        fn wait_for(&self, what: &str, ready: impl Fn(&[String]) -> bool) -> Vec<String> {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let rows = self.rows();
                if ready(&rows) {
                    return rows;
                }
                assert!(
                    Instant::now() < deadline,
                    "screen never showed {what}:\n{}",
                    rows.join("\n")
                );
                thread::sleep(Duration::from_millis(20));
            }
        }

        fn type_keys(&mut self, keys: &str) {
            self.keys.write_all(keys.as_bytes()).expect("typing");
            self.keys.flush().expect("typing");
        }
    }

    impl Drop for Terminal {
        fn drop(&mut self) {
            let _ = self.child.kill();
        }
    }

    fn count(rows: &[String], text: &str) -> usize {
        rows.iter().filter(|row| row.contains(text)).count()
    }

    #[test]
    fn messages_appear_above_a_half_typed_line_and_the_client_reconnects() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bind = format!("127.0.0.1:{}", free_port());
        let server = Server::start_on(&bind, dir.path(), &[]);
        let addr = server.addr.to_string();
        let mut alice = Terminal::start(&["connect", &addr, "--nick", "alice"]);
        alice.wait_for("the nickname taken", |rows| {
            count(rows, "* you are now alice") == 1
        });

        alice.type_keys("hello wor");
        // The keys reach the client through the pty in their own time; on a
        // loaded machine bob's line could otherwise overtake them.
        alice.wait_for("the half-typed line", |rows| {
            rows[usize::from(ROWS) - 1] == "> hello wor"
        });
        let mut bob = client(server.addr);
        bob.say("#nick bob").expect("bob renames");
        bob.wait_for(|line| line == "* you are now bob")
            .expect("renamed");
        bob.say("hi alice, from bob").expect("bob sends");
        let rows = alice.wait_for("bob's message", |rows| {
            count(rows, "[#general] bob: hi alice, from bob") == 1
        });
        let message = rows
            .iter()
            .position(|r| r.contains("bob: hi alice"))
            .expect("shown");
        let status = rows
            .iter()
            .position(|r| r.contains("| alice | #general | connected"))
            .expect("status line");
        assert!(
            message < status,
            "message above the status line:\n{}",
            rows.join("\n")
        );
        assert_eq!(
            rows[usize::from(ROWS) - 1],
            "> hello wor",
            "the half-typed line is kept"
        );

        alice.type_keys("ld\r");
        bob.wait_for(|line| line == "[#general] alice: hello world")
            .expect("alice's line arrives");

        // Kill the server, start it again on the same port: the client says
        // so, reconnects and takes its nickname back.
        drop(server);
        alice.wait_for("the lost connection", |rows| {
            rows.iter().any(|r| r.contains("reconnecting in"))
        });
        let server = Server::start_on(&bind, dir.path(), &[]);
        alice.wait_for("the nickname restored", |rows| {
            count(rows, "* you are now alice") == 2
        });
        let mut carol = client(server.addr);
        carol.say("#who").expect("carol asks");
        carol
            .wait_for(|line| line == "+ who #general 2: alice guest2")
            .expect("alice is back");
    }
}

/// A client that says `line N` for N from `first`, at most `window` ahead
/// of its acknowledgements, until `last` (exclusive) or until the server is
/// gone; gives back the line numbers acknowledged (in order) and the next
/// number it had not yet sent. `on_ack` sees each count of acks so far.
fn say_numbered_lines(
    addr: SocketAddr,
    first: usize,
    last: usize,
    window: usize,
    on_ack: impl Fn(usize),
) -> (Vec<usize>, usize) {
    let mut writer = client(addr);
    writer.say("#nick sender").expect("send");
    writer.say("#ack on").expect("send");
    writer
        .wait_for(|l| l == "* acknowledgements on")
        .expect("ack mode");
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let acked = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    let (progress, gone) = (acked.clone(), closed.clone());
    let mut sender = writer.try_clone_sender().expect("clone");
    let streaming = thread::spawn(move || {
        for n in first..last {
            while n - first >= progress.load(Ordering::Acquire) + window {
                if gone.load(Ordering::Acquire) {
                    return n;
                }
                thread::sleep(Duration::from_millis(1));
            }
            if sender.say(&format!("line {n}")).is_err() {
                return n;
            }
        }
        last
    });
    let mut numbers = Vec::new();
    while numbers.len() < last - first {
        match writer.next_line().expect("read") {
            Received::Line(line) if line.starts_with("+ ack ") => {
                numbers.push(first + numbers.len());
                acked.store(numbers.len(), Ordering::Release);
                on_ack(numbers.len());
            }
            Received::Line(line) => assert!(!line.starts_with('!'), "refused: {line}"),
            Received::Closed => break,
            Received::Nothing => panic!("no ack for 5 s after {} acks", numbers.len()),
        }
    }
    closed.store(true, Ordering::Release);
    let next = streaming.join().expect("streamer");
    (numbers, next)
}

/// The client in a pipe, the server killed while a conversation flows and
/// started again on the same port and data: the client reconnects, asks for
/// what it missed, and prints every acknowledged line exactly once, in
/// order (lines not acknowledged before the kill may be missing).
#[cfg(unix)]
#[test]
fn connect_in_a_pipe_catches_up_after_the_server_is_killed_mid_conversation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("chatd.toml");
    std::fs::write(&config, "[rate_limit]\nenabled = false\n").expect("write config");
    let config = config.to_string_lossy().into_owned();
    let data = dir.path().join("data");
    let bind = format!("127.0.0.1:{}", free_port());
    let args = ["--config", config.as_str(), "--fsync", "always"];
    let server = Server::start_on(&bind, &data, &args);

    let mut reader = Command::new(CHATD)
        .args(["connect", &bind, "--nick", "reader"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chatd connect runs");
    let printed = Printed::keep(reader.stdout.take().expect("stdout"));
    let notes = Printed::keep(reader.stderr.take().expect("stderr"));
    let limit = Duration::from_secs(30);
    printed.wait_for("the nickname", limit, |l| l == "* you are now reader");

    // Killed after 150 acknowledgements, lines still flowing.
    let (mut acked, next) = say_numbered_lines(server.addr, 0, 100_000, 50, |acks| {
        if acks == 150 {
            let _ = Command::new("kill")
                .args(["-KILL", &server.child.id().to_string()])
                .status();
        }
    });
    assert!(
        acked.len() >= 150 && next < 100_000,
        "{} acked",
        acked.len()
    );
    drop(server);

    // Back once the client waits longer to retry: what is said now, it
    // can only learn by asking.
    notes.wait_for("a second failed reconnect", limit, |l| {
        l.contains("reconnecting in 2s")
    });
    let server = Server::start_on(&bind, &data, &args);
    let (missed, next) = say_numbered_lines(server.addr, next, next + 20, 20, |_| {});
    assert_eq!(missed.len(), 20);
    acked.extend(missed);
    // And more while it catches up.
    notes.wait_for("the reconnection", limit, |l| l.contains("reconnected to"));
    let (live, next) = say_numbered_lines(server.addr, next, next + 200, 20, |_| {});
    assert_eq!(live.len(), 200);
    acked.extend(live);
    let last = format!("sender: line {}", next - 1);
    printed.wait_for("the last line", limit, |l| l.ends_with(&last));

    drop(reader.stdin.take());
    let deadline = Instant::now() + limit;
    while reader.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "chatd connect did not exit");
        thread::sleep(Duration::from_millis(20));
    }
    let lines = printed.lines();
    let numbers: Vec<usize> = lines
        .iter()
        .filter_map(|l| l.split_once("] sender: line ")?.1.parse().ok())
        .collect();
    let replayed = lines
        .iter()
        .filter(|l| l.starts_with("[#general 2") && l.contains("] sender: line "))
        .count();
    eprintln!(
        "{} lines printed, {replayed} of them caught up from history",
        numbers.len()
    );
    let shown: std::collections::BTreeSet<usize> = numbers.iter().copied().collect();
    let missing: Vec<usize> = acked
        .iter()
        .copied()
        .filter(|n| !shown.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never printed: {missing:?}\n{}",
        lines.join("\n")
    );
    assert!(
        numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "printed twice or out of order:\n{}",
        lines.join("\n")
    );
    assert!(
        replayed >= 20,
        "the lines said while it was away came live?\n{}",
        lines.join("\n")
    );
}
