//! Real IRC clients end to end: irssi and WeeChat, each run in a tmux pane
//! of a private tmux server, connect to chatd's IRC listener, join `#rust`,
//! talk with a native chatd client that owns the room, and are kicked by
//! it. Assertions read the clients' screens (`tmux capture-pane -p`) and the
//! native client's TCP stream, every wait bounded by [`WAIT`].
//!
//! `irssi_and_weechat_talk_with_a_native_owner_through_chatd` is the real
//! test. `harness_mechanics_against_ngircd` plays the very same scenario
//! against ngIRCd, with a raw IRC connection as the room owner; it proves
//! the harness itself and is run by hand:
//!
//! ```sh
//! apt-get install -y ngircd irssi weechat-curses tmux
//! cargo test -p chatd-tests --test irc_clients -- --ignored --nocapture
//! ```
//!
//! Without irssi, weechat or tmux the test says loudly that it was SKIPPED
//! and returns; with `CHATD_REQUIRE_IRC_CLIENTS=1` (as in CI) it fails.

use std::ffi::OsString;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chatd_tests::child::{KillOnDrop, free_port, wait_listening};
use chatd_tests::client::LineClient;
use chatd_tests::driver::Received;
use chatd_tests::process::native_chatd_binary;

/// The longest any one thing may take to show up.
const WAIT: Duration = Duration::from_secs(10);
/// How often a pane is read while waiting.
const POLL: Duration = Duration::from_millis(100);
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The room everyone meets in, on both sides.
const ROOM: &str = "#rust";
/// The native owner's nick.
const OWNER: &str = "alice";
/// The IRC clients' nicks (at most nine characters, ngIRCd's limit).
const IRSSI_NICK: &str = "irssiuser";
const WEECHAT_NICK: &str = "weeuser";
/// What a machine without the clients needs.
const APT_CLIENTS: &str = "apt-get install -y irssi weechat-curses tmux";

#[test]
fn irssi_and_weechat_talk_with_a_native_owner_through_chatd() {
    if !tools_present(&["irssi", "weechat", "tmux"], APT_CLIENTS) {
        return;
    }
    let chatd = Chatd::start();
    let mut owner = NativeOwner::connect(chatd.native);
    scenario(chatd.irc, &mut owner);
}

#[test]
#[ignore = "harness check against ngIRCd, run by hand (see the file's header)"]
fn harness_mechanics_against_ngircd() {
    let apt = "apt-get install -y ngircd irssi weechat-curses tmux";
    if !tools_present(&["ngircd", "irssi", "weechat", "tmux"], apt) {
        panic!("the ngIRCd mechanics check needs ngircd, irssi, weechat and tmux: {apt}");
    }
    let ngircd = Ngircd::start();
    let mut owner = IrcOwner::connect(ngircd.addr);
    scenario(ngircd.addr, &mut owner);
}

/// One scenario for both servers: each IRC client joins, hears the owner
/// and is heard by the owner and by the other IRC client, then is kicked.
fn scenario(irc: SocketAddr, owner: &mut dyn Owner) {
    let tmux = Tmux::start();

    tmux.run("irssi", irssi_command(tmux.dir(), irc));
    tmux.wait_for("irssi", &[IRSSI_NICK, &format!("has joined {ROOM}")]);
    owner.expect_joined(IRSSI_NICK);
    owner.say("hi irssi, from the owner");
    tmux.wait_for("irssi", &[OWNER, "hi irssi, from the owner"]);
    tmux.type_line("irssi", "hello from irssi");
    owner.expect_said(IRSSI_NICK, "hello from irssi");

    tmux.run("weechat", weechat_command(tmux.dir(), irc));
    tmux.wait_for("weechat", &[WEECHAT_NICK, &format!("has joined {ROOM}")]);
    owner.expect_joined(WEECHAT_NICK);
    tmux.wait_for("irssi", &[WEECHAT_NICK, &format!("has joined {ROOM}")]);
    owner.say("hi weechat, from the owner");
    tmux.wait_for("weechat", &[OWNER, "hi weechat, from the owner"]);
    tmux.type_line("weechat", "hello from weechat");
    owner.expect_said(WEECHAT_NICK, "hello from weechat");
    tmux.wait_for("irssi", &[WEECHAT_NICK, "hello from weechat"]);

    owner.kick(IRSSI_NICK, "be nice");
    owner.expect_kicked(IRSSI_NICK, "be nice");
    tmux.wait_for(
        "irssi",
        &[
            &format!("{IRSSI_NICK} was kicked from {ROOM} by {OWNER}"),
            "be nice",
        ],
    );
    tmux.wait_for(
        "weechat",
        &[&format!("{OWNER} has kicked {IRSSI_NICK}"), "be nice"],
    );
    owner.kick(WEECHAT_NICK, "you too");
    owner.expect_kicked(WEECHAT_NICK, "you too");
    tmux.wait_for(
        "weechat",
        &[&format!("{OWNER} has kicked {WEECHAT_NICK}"), "you too"],
    );
}

/// Whether every tool is on PATH. If not: a failure naming the apt command
/// when `CHATD_REQUIRE_IRC_CLIENTS=1`, else a loud warning and `false`.
fn tools_present(tools: &[&str], apt: &str) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| !on_path(tool))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!("{} not installed ({apt})", missing.join(", "));
    if std::env::var("CHATD_REQUIRE_IRC_CLIENTS").as_deref() == Ok("1") {
        panic!("CHATD_REQUIRE_IRC_CLIENTS=1 but {message}");
    }
    // Straight to the process's stderr: the test harness captures eprintln!
    // and would hide the warning of a test that passes.
    let _ = writeln!(
        std::io::stderr().lock(),
        "!!!!!!!! SKIPPED: install irssi weechat tmux: {message}: the IRC client test did NOT run !!!!!!!!"
    );
    false
}

fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(tool).is_file())
}

/// `chatd serve` with a native and an IRC listener on free ports.
struct Chatd {
    native: SocketAddr,
    irc: SocketAddr,
    _process: KillOnDrop,
    _data: tempfile::TempDir,
}

impl Chatd {
    fn start() -> Self {
        let binary = native_chatd_binary().unwrap_or_else(|error| panic!("{error}"));
        let data = tempfile::tempdir().expect("temp dir");
        let native = SocketAddr::new(LOCAL, free_port());
        let irc = SocketAddr::new(LOCAL, free_port());
        let child = Command::new(&binary)
            .args(["serve", "--threads", "2", "--no-persist"])
            .arg("--bind")
            .arg(native.to_string())
            .arg("--irc-bind")
            .arg(irc.to_string())
            .args(["--http-bind", "none"])
            .arg("--data-dir")
            .arg(data.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let mut process = KillOnDrop(child);
        wait_listening(&mut process, native, "chatd (native listener)", WAIT);
        wait_listening(&mut process, irc, "chatd (IRC listener)", WAIT);
        Self {
            native,
            irc,
            _process: process,
            _data: data,
        }
    }
}

/// ngIRCd in the foreground on a free port, with a throwaway config.
struct Ngircd {
    addr: SocketAddr,
    _process: KillOnDrop,
    _dir: tempfile::TempDir,
}

impl Ngircd {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let addr = SocketAddr::new(LOCAL, free_port());
        let config = dir.path().join("ngircd.conf");
        let text = format!(
            "[Global]\nName = irc.test\nInfo = chatd harness check\nListen = 127.0.0.1\n\
             Ports = {}\nMotdPhrase = harness\nPidFile = {}\n\
             [Options]\nPAM = no\nIdent = no\nDNS = no\n",
            addr.port(),
            dir.path().join("ngircd.pid").display(),
        );
        std::fs::write(&config, text).expect("write ngircd.conf");
        let child = Command::new("ngircd")
            .arg("--nodaemon")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ngircd starts");
        let mut process = KillOnDrop(child);
        wait_listening(&mut process, addr, "ngircd", WAIT);
        Self {
            addr,
            _process: process,
            _dir: dir,
        }
    }
}

/// The room's owner, on whichever side of the server it lives.
trait Owner {
    /// Waits until `nick` has joined the room.
    fn expect_joined(&mut self, nick: &str);
    /// Says `text` in the room.
    fn say(&mut self, text: &str);
    /// Waits until `nick` has said `text` in the room.
    fn expect_said(&mut self, nick: &str, text: &str);
    /// Kicks `nick` out of the room.
    fn kick(&mut self, nick: &str, reason: &str);
    /// Waits until the kick of `nick` is announced.
    fn expect_kicked(&mut self, nick: &str, reason: &str);
}

/// Reads lines until one is `wanted`, failing after [`WAIT`] with all
/// lines seen. `reply` may answer a line (e.g. an IRC PING) first.
fn read_until(
    client: &mut LineClient,
    what: &str,
    wanted: impl Fn(&str) -> bool,
    reply: impl Fn(&str) -> Option<String>,
) -> String {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match client.next_line() {
            Ok(Received::Line(line)) => {
                let line = line.trim_end_matches('\r').to_owned();
                if let Some(answer) = reply(&line) {
                    client.say(&answer).expect("send");
                }
                if wanted(&line) {
                    return line;
                }
                seen.push(line);
            }
            Ok(Received::Nothing) => {}
            Ok(Received::Closed) => panic!("connection closed waiting for {what}; saw {seen:#?}"),
            Err(error) => panic!("{error} waiting for {what}; saw {seen:#?}"),
        }
    }
    panic!("no {what} within {WAIT:?}; saw {seen:#?}")
}

/// A native chatd client (the line protocol) that creates and owns the room.
struct NativeOwner(LineClient);

impl NativeOwner {
    fn connect(addr: SocketAddr) -> Self {
        let mut owner = Self(LineClient::connect(addr, LOCAL).expect("native client connects"));
        owner.expect("the welcome", |line| line.starts_with("* welcome"));
        owner.send(&format!("#nick {OWNER}"));
        owner.expect_line(&format!("* you are now {OWNER}"));
        owner.send(&format!("#join {ROOM}"));
        owner.expect_line(&format!("* you created {ROOM}; you own it"));
        owner
    }

    fn send(&mut self, line: &str) {
        self.0.say(line).expect("native send");
    }

    fn expect(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        read_until(&mut self.0, what, wanted, |_| None)
    }

    fn expect_line(&mut self, wanted: &str) {
        self.expect(&format!("{wanted:?} on the native client"), |line| {
            line == wanted
        });
    }
}

impl Owner for NativeOwner {
    fn expect_joined(&mut self, nick: &str) {
        self.expect_line(&format!("* {nick} joined {ROOM}"));
    }

    fn say(&mut self, text: &str) {
        self.send(text);
    }

    fn expect_said(&mut self, nick: &str, text: &str) {
        self.expect_line(&format!("[{ROOM}] {nick}: {text}"));
    }

    fn kick(&mut self, nick: &str, reason: &str) {
        self.send(&format!("#kick {nick} {reason}"));
    }

    fn expect_kicked(&mut self, nick: &str, reason: &str) {
        self.expect_line(&format!(
            "* {nick} was kicked from {ROOM} by {OWNER}: {reason}"
        ));
    }
}

/// A raw IRC connection that creates (and so operates) the channel: the
/// owner's part when the server is ngIRCd.
struct IrcOwner(LineClient);

impl IrcOwner {
    fn connect(addr: SocketAddr) -> Self {
        let mut owner = Self(LineClient::connect(addr, LOCAL).expect("IRC client connects"));
        owner.send(&format!("NICK {OWNER}"));
        owner.send(&format!("USER {OWNER} 0 * :{OWNER}"));
        owner.expect("RPL_WELCOME", |line| line.split(' ').nth(1) == Some("001"));
        owner.send(&format!("JOIN {ROOM}"));
        owner.expect("RPL_ENDOFNAMES", |line| {
            line.split(' ').nth(1) == Some("366")
        });
        owner
    }

    fn send(&mut self, line: &str) {
        self.0
            .send(format!("{line}\r\n").as_bytes())
            .expect("IRC send");
    }

    fn expect(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        read_until(&mut self.0, what, wanted, |line| {
            line.strip_prefix("PING ")
                .map(|token| format!("PONG {token}\r"))
        })
    }

    /// A message from `nick` with `command` and exactly `rest` after it.
    fn expect_from(&mut self, nick: &str, command: &str, rest: &str) {
        let prefix = format!(":{nick}!");
        let tail = format!(" {command} {rest}");
        self.expect(&format!("{prefix}...{tail}"), |line| {
            line.starts_with(&prefix) && line.ends_with(&tail)
        });
    }
}

impl Owner for IrcOwner {
    fn expect_joined(&mut self, nick: &str) {
        let prefix = format!(":{nick}!");
        self.expect(&format!("{nick}'s JOIN"), |line| {
            line.starts_with(&prefix)
                && line.split(' ').nth(1) == Some("JOIN")
                && line.trim_end().ends_with(ROOM)
        });
    }

    fn say(&mut self, text: &str) {
        self.send(&format!("PRIVMSG {ROOM} :{text}"));
    }

    fn expect_said(&mut self, nick: &str, text: &str) {
        self.expect_from(nick, "PRIVMSG", &format!("{ROOM} :{text}"));
    }

    fn kick(&mut self, nick: &str, reason: &str) {
        self.send(&format!("KICK {ROOM} {nick} :{reason}"));
    }

    fn expect_kicked(&mut self, nick: &str, reason: &str) {
        self.expect_from(OWNER, "KICK", &format!("{ROOM} {nick} :{reason}"));
    }
}

/// A private tmux server (its own socket in a temp dir) with a fixed
/// 200x50 window per client; killed when dropped, panic or not.
struct Tmux {
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Tmux {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // No status line: the pane is the client's screen alone. A client
        // that dies leaves its last screen for the failure message.
        std::fs::write(
            dir.path().join("tmux.conf"),
            "set -g status off\nset -g remain-on-exit on\n",
        )
        .expect("write tmux.conf");
        Self {
            socket: dir.path().join("tmux.sock"),
            dir,
        }
    }

    /// The temp dir: HOME of every client, and the parent of their own
    /// config directories.
    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn tmux(&self) -> Command {
        let mut command = Command::new("tmux");
        command
            .arg("-f")
            .arg(self.dir().join("tmux.conf"))
            .arg("-S")
            .arg(&self.socket)
            .env("HOME", self.dir())
            .env("TERM", "xterm-256color")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null());
        command
    }

    fn check(&self, command: &mut Command) -> String {
        let output = command.output().expect("tmux runs");
        assert!(
            output.status.success(),
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts `argv` in a new session named `session`.
    fn run(&self, session: &str, argv: Vec<OsString>) {
        self.check(
            self.tmux()
                .args([
                    "new-session",
                    "-d",
                    "-s",
                    session,
                    "-x",
                    "200",
                    "-y",
                    "50",
                    "--",
                ])
                .args(argv),
        );
    }

    /// Types `text` and Enter, as a person would.
    fn type_line(&self, session: &str, text: &str) {
        self.check(self.tmux().args(["send-keys", "-t", session, "-l", text]));
        self.check(self.tmux().args(["send-keys", "-t", session, "Enter"]));
    }

    /// The visible screen, wrapped lines joined, trailing blanks cut.
    fn capture(&self, session: &str) -> String {
        let screen = self.check(
            self.tmux()
                .args(["capture-pane", "-p", "-J", "-t", session]),
        );
        let lines: Vec<&str> = screen.lines().map(str::trim_end).collect();
        let used = lines
            .iter()
            .rposition(|line| !line.is_empty())
            .map_or(0, |i| i + 1);
        lines[..used].join("\n")
    }

    /// Waits until one line of the screen holds every fragment; fails after
    /// [`WAIT`] showing the screen.
    fn wait_for(&self, session: &str, fragments: &[&str]) {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.capture(session);
            let found = screen
                .lines()
                .any(|line| fragments.iter().all(|fragment| line.contains(fragment)));
            if found {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{session} did not show a line with {fragments:?} within {WAIT:?}; its screen:\n\
                     ----------\n{screen}\n----------"
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .tmux()
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// irssi with its own home and config: one server, autoconnected, `#rust`
/// autojoined, every channel in the one window so the pane shows it.
fn irssi_command(dir: &Path, irc: SocketAddr) -> Vec<OsString> {
    let home = dir.join("irssi");
    std::fs::create_dir_all(&home).expect("irssi home");
    let config = format!(
        r#"servers = (
  {{ address = "{ip}"; port = "{port}"; chatnet = "test"; use_tls = "no"; tls_verify = "no"; autoconnect = "yes"; }}
);
chatnets = {{ test = {{ type = "IRC"; }}; }};
channels = ( {{ name = "{ROOM}"; chatnet = "test"; autojoin = "yes"; }} );
settings = {{
  core = {{ real_name = "{IRSSI_NICK}"; user_name = "{IRSSI_NICK}"; nick = "{IRSSI_NICK}"; settings_autosave = "no"; }};
  "fe-common/core" = {{ autocreate_windows = "no"; }};
}};
"#,
        ip = irc.ip(),
        port = irc.port(),
    );
    std::fs::write(home.join("config"), config).expect("irssi config");
    let mut home_arg = OsString::from("--home=");
    home_arg.push(&home);
    vec!["irssi".into(), home_arg]
}

/// WeeChat with its own directory, only the irc plugin loaded, one plain
/// TCP server added, connected and `#rust` autojoined from the command line.
fn weechat_command(dir: &Path, irc: SocketAddr) -> Vec<OsString> {
    let home = dir.join("weechat");
    std::fs::create_dir_all(&home).expect("weechat dir");
    std::fs::write(home.join("weechat.conf"), "[plugin]\nautoload = \"irc\"\n")
        .expect("weechat.conf");
    let commands = format!(
        "/server add test {ip}/{port} -notls -nicks={WEECHAT_NICK} -username={WEECHAT_NICK} \
         -realname={WEECHAT_NICK} -autojoin={ROOM};/connect test",
        ip = irc.ip(),
        port = irc.port(),
    );
    vec![
        "weechat".into(),
        "--dir".into(),
        home.into_os_string(),
        "--run-command".into(),
        commands.into(),
    ]
}
