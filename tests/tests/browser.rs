//! The web client in a real browser: Debian's Chromium, driven through
//! chromedriver (WebDriver) by fantoccini, against a real `chatd serve`
//! with its HTTP listener. Two browser pages and one TCP native client
//! talk in one room; the pages switch rooms, whisper, count unread lines,
//! show a line full of markup as text, and come back after the server is
//! killed and restarted with what they missed, each line once. The pages'
//! JavaScript console must stay free of errors, and screenshots of the
//! main views (desktop and phone widths, light and dark) are saved under
//! `target/screenshots/` for a person to look at.
//!
//! Every wait is bounded by [`WAIT`]. Without chromium or chromedriver the
//! test says loudly that it was SKIPPED and returns; with
//! `CHATD_REQUIRE_BROWSER=1` (as in CI) it fails instead.
//!
//! ```sh
//! apt-get install -y chromium chromium-driver
//! cargo test -p chatd-tests --test browser -- --nocapture
//! ```

// Debian's Chromium and chromedriver, and process groups to end them.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use chatd_tests::child::{KillOnDrop, free_port, wait_listening};
use chatd_tests::client::LineClient;
use chatd_tests::driver::Received;
use chatd_tests::process::native_chatd_binary;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// The server's settings for the test.
const CONFIG: &str = r#"
# Pages of 5 history entries: a few lines make several pages, so catching
# up pages and merges.
history_page = 5

[rate_limit]
# Both pages and the TCP client come from 127.0.0.1, which real users do
# not share; each connection keeps its own default limit, which the page
# paces itself under.
ip_messages = 1000
"#;

/// The longest any one thing may take to show up.
const WAIT: Duration = Duration::from_secs(10);
/// How often a page is looked at while waiting.
const POLL: Duration = Duration::from_millis(100);
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// What a machine without the browser needs.
const APT_BROWSER: &str = "apt-get install -y chromium chromium-driver";
/// WebDriver's Enter and Tab keys.
const ENTER: &str = "\u{e007}";
const TAB: &str = "\u{e004}";
const ESCAPE: &str = "\u{e00c}";
/// A line that would run script and make elements if it were ever put in
/// the page as HTML.
const MARKUP: &str = "<img src=x onerror=alert(1)><script>window.pwned=1</script><b>bold</b>";

#[tokio::test(flavor = "current_thread")]
async fn two_pages_and_a_tcp_client_chat_reconnect_and_stay_inert() {
    let Some(tools) = Browser::find() else {
        return;
    };
    let mut chatd = Chatd::start();
    let driver = Chromedriver::start(&tools);
    let url = format!("http://{}/", chatd.http);

    // ---- Everyone in #lobby: each sees the others' lines. ----
    let mut carol = Native::connect(chatd.native, "carol");
    carol.join("lobby");
    carol.say("#topic the lobby");
    carol.expect("topic of #lobby");

    let alice = Page::open(&driver, &tools, "alice", &url).await;
    let bob = Page::open(&driver, &tools, "bob", &url).await;
    for page in [&alice, &bob] {
        page.set_nick(page.name).await;
        page.join("lobby").await;
        carol.expect(&format!("{} joined #lobby", page.name));
    }
    alice.wait_text("#topic", "the lobby").await;

    alice.type_line("hello from alice").await;
    bob.wait_line("alice: hello from alice").await;
    carol.expect("[#lobby] alice: hello from alice");
    bob.type_line("hi from bob").await;
    alice.wait_line("bob: hi from bob").await;
    carol.expect("[#lobby] bob: hi from bob");
    carol.say("hey from carol");
    alice.wait_line("carol: hey from carol").await;
    bob.wait_line("carol: hey from carol").await;
    // The page shows its own line at once and learns its id from the ack.
    alice
        .wait_js(
            "alice's own line has its message id",
            "return [...document.querySelectorAll('.log:not([hidden]) .line.own')].some(l => l.dataset.id && l.textContent.includes('hello from alice'))",
        )
        .await;

    // ---- An action, a whisper each way, a topic change. ----
    bob.type_line("#me waves").await;
    alice.wait_line("* bob waves").await;
    carol.expect("[#lobby] * bob waves");
    bob.type_line("#msg alice psst from bob").await;
    alice.wait_line("bob: psst from bob").await;
    bob.wait_line("psst from bob").await; // the server's echo, "whisper to alice"
    alice
        .wait_js(
            "the whisper is marked as one",
            "return [...document.querySelectorAll('.log:not([hidden]) .line.whisper')].some(l => l.textContent.includes('bob: psst from bob'))",
        )
        .await;
    carol.say("#msg alice and one from carol");
    alice.wait_line("carol: and one from carol").await;
    carol.say("#topic lobby, now with a new topic");
    bob.wait_text("#topic", "lobby, now with a new topic").await;

    // ---- Switching rooms; unread lines counted while away. ----
    alice.join("den").await;
    alice.wait_line("you created #den").await;
    alice.type_line("alone in the den").await;
    // Stored once acknowledged; then a first visit shows it from history.
    alice
        .wait_js(
            "alice's line in the den is acknowledged",
            "return [...document.querySelectorAll('.log:not([hidden]) .line.own')].some(l => l.dataset.id && l.textContent.includes('alone in the den'))",
        )
        .await;
    bob.join("den").await;
    bob.wait_line("alice: alone in the den").await;
    bob.click("#room-list button[data-room=\"#lobby\"]").await;
    bob.wait_text("#room-title", "#lobby").await;
    carol.say("said while alice was in the den");
    carol.say("and a second one");
    // The room list refreshes (and counts unread lines) when the tab gets
    // focus and every 20 s; focus is the quick way in a test.
    alice
        .script("window.dispatchEvent(new Event('focus'))")
        .await;
    alice
        .wait_js(
            "#lobby shows 2 unread lines",
            "const u = document.querySelector('#room-list button[data-room=\"#lobby\"] .unread'); return u && u.textContent === '2'",
        )
        .await;
    alice.click("#room-list button[data-room=\"#lobby\"]").await;
    alice.wait_text("#room-title", "#lobby").await;
    alice
        .wait_line("carol: said while alice was in the den")
        .await;
    alice.wait_line("carol: and a second one").await;
    for line in [
        "alice: hello from alice",
        "carol: hey from carol",
        "carol: said while alice was in the den",
    ] {
        alice.expect_once(line).await;
    }
    alice
        .wait_js(
            "the unread count is gone",
            "return !document.querySelector('#room-list .unread')",
        )
        .await;

    // ---- A reload catches up from the id it remembered, page by page. ----
    // The server's history_page is 5 (see CONFIG): the newest page on
    // join and the pages forward from the remembered id overlap, and the
    // merge by id must show each line once.
    // From the keyboard: Enter on the room's button.
    alice
        .keys("#room-list button[data-room=\"#den\"]", ENTER)
        .await;
    alice.wait_text("#room-title", "#den").await;
    for n in 1..=8 {
        carol.say(&format!("backlog {n}"));
    }
    alice.step("reload", alice.client.refresh()).await;
    alice
        .wait_js(
            "the reloaded page is back as alice in #den",
            "return document.getElementById('status').textContent === 'connected as alice' && document.getElementById('room-title').textContent === '#den'",
        )
        .await;
    alice.click("#room-list button[data-room=\"#lobby\"]").await;
    alice.wait_text("#room-title", "#lobby").await;
    alice.wait_line("carol: backlog 1").await;
    alice.wait_line("carol: backlog 8").await;
    for n in 1..=8 {
        alice.expect_once(&format!("carol: backlog {n}")).await;
    }
    alice
        .wait_js(
            "the backlog is in order",
            "const t = [...document.querySelectorAll('.log:not([hidden]) .line .text')].map(e => e.textContent).filter(t => t.startsWith('backlog')); return t.join(',') === [1,2,3,4,5,6,7,8].map(n => 'backlog ' + n).join(',')",
        )
        .await;

    // ---- Commands: completion, help, a clear error. ----
    alice.keys("#input", &format!("#jo{TAB}")).await;
    alice
        .wait_js(
            "Tab completes #jo, and the focus stays in the box",
            "return document.getElementById('input').value === '#join ' && document.activeElement.id === 'input'",
        )
        .await;
    alice.clear("#input").await;
    alice.click("#help-open").await;
    alice
        .wait_js(
            "the help panel lists the server's commands",
            "const d = document.getElementById('help'); return d.open && d.textContent.includes('#msg NAME TEXT')",
        )
        .await;
    alice.keys("#help-close", ESCAPE).await;
    alice
        .wait_js(
            "Escape closes the help panel",
            "return !document.getElementById('help').open",
        )
        .await;
    // A command chosen in the help panel, by keyboard, goes to the box.
    alice.click("#help-open").await;
    let msg = alice
        .step(
            "find #msg in the help panel",
            alice.client.find(Locator::XPath(
                "//ul[@id='help-list']//button[contains(., '#msg NAME TEXT')]",
            )),
        )
        .await;
    alice.step("Enter on #msg", msg.send_keys(ENTER)).await;
    alice
        .wait_js(
            "the help panel closes with #msg in the box, focused",
            "return !document.getElementById('help').open && document.getElementById('input').value === '#msg ' && document.activeElement.id === 'input'",
        )
        .await;
    alice.clear("#input").await;
    alice.type_line("#nick carol").await;
    alice
        .wait_js(
            "nick-taken is an error line and an alert",
            "return [...document.querySelectorAll('.log:not([hidden]) .line.error')].some(l => l.textContent.includes('nick-taken')) && !document.getElementById('alert').hidden && document.getElementById('alert').textContent.includes('nick-taken')",
        )
        .await;

    // ---- Markup stays text, from the TCP client and from a page. ----
    carol.say(MARKUP);
    bob.type_line(&format!("page says {MARKUP}")).await;
    for page in [&alice, &bob] {
        page.wait_line(&format!("carol: {MARKUP}")).await;
        page.wait_line(&format!("page says {MARKUP}")).await;
        page.expect_inert().await;
    }
    carol.expect(&format!("bob: page says {MARKUP}"));

    // ---- Screenshots of the main views. ----
    screenshots(&alice).await;

    alice.expect_no_console_errors(&[]).await;
    bob.expect_no_console_errors(&[]).await;

    // ---- The server dies and comes back: the pages catch up. ----
    chatd.kill();
    drop(carol);
    alice
        .wait_js(
            "alice's page saw the server go and has retried twice",
            "const s = document.getElementById('status'); return s.dataset.state === 'offline' && /attempt [3-9]/.test(s.textContent)",
        )
        .await;
    alice.screenshot("desktop-light-offline").await;
    chatd.restart();
    let mut carol = Native::connect(chatd.native, "carol");
    carol.join("lobby");
    // Said before the pages are back (they retry on a backoff of a second
    // or more by now): they can only learn of it from the history.
    carol.say("said while the pages were away");
    for page in [&alice, &bob] {
        page.wait_js(
            "the page is connected again",
            "return document.getElementById('status').dataset.state === 'online'",
        )
        .await;
        page.wait_text("#room-title", "#lobby").await;
        page.wait_line("carol: said while the pages were away")
            .await;
    }
    alice.type_line("back again").await;
    carol.expect("[#lobby] alice: back again");
    bob.wait_line("alice: back again").await;
    // Alice's page was reloaded since the first lines: it shows from the
    // backlog on.
    let before_restart = [
        (
            &alice,
            ["carol: backlog 1", "carol: backlog 8", "bob: page says"],
        ),
        (
            &bob,
            [
                "alice: hello from alice",
                "carol: hey from carol",
                "bob: page says",
            ],
        ),
    ];
    for (page, earlier) in before_restart {
        for line in earlier {
            page.expect_once(line).await;
        }
        for line in ["carol: said while the pages were away", "alice: back again"] {
            page.expect_once(line).await;
        }
        page.expect_inert().await;
        // Its own attempts to reach the dead server are the browser's
        // network errors, not the page's.
        page.expect_no_console_errors(&["WebSocket connection to"])
            .await;
    }
    desktop(&alice).await;
    alice.screenshot("desktop-light-after-restart").await;

    alice.close().await;
    bob.close().await;
}

/// Desktop 1280x800 and phone 390x844, each light and dark; the phone's
/// room panel open; the help panel.
async fn screenshots(page: &Page) {
    for (name, width, height, mobile) in [("desktop", 1280, 800, false), ("phone", 390, 844, true)]
    {
        page.devtools(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
        for scheme in ["light", "dark"] {
            // Chrome's own emulation of the media feature: the page's CSS
            // media query sees exactly what a system theme would give it.
            page.devtools(
                "Emulation.setEmulatedMedia",
                json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
            )
            .await;
            page.wait_js(
                "the colour scheme applies",
                &format!("return matchMedia('(prefers-color-scheme: {scheme})').matches"),
            )
            .await;
            page.script(
                "for (const l of document.querySelectorAll('.log')) l.scrollTop = l.scrollHeight",
            )
            .await;
            page.screenshot(&format!("{name}-{scheme}")).await;
            if mobile {
                page.click("#rooms-toggle").await;
                page.wait_js(
                    "the room panel opens",
                    "return getComputedStyle(document.getElementById('sidebar')).display !== 'none'",
                )
                .await;
                page.screenshot(&format!("{name}-{scheme}-rooms")).await;
                page.keys("#room-list button", ESCAPE).await;
                page.wait_js(
                    "Escape closes the room panel",
                    "return getComputedStyle(document.getElementById('sidebar')).display === 'none'",
                )
                .await;
            }
        }
    }
    desktop(page).await;
    page.devtools("Emulation.setEmulatedMedia", json!({"features": []}))
        .await;
    page.click("#help-open").await;
    page.screenshot("desktop-help").await;
    page.keys("#help-close", ESCAPE).await;
}

/// A 1280x800 view, whatever size the headless window has.
async fn desktop(page: &Page) {
    page.devtools(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
}

// ---- The browser ---------------------------------------------------------------

/// Where chromium and chromedriver are.
struct Browser {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

impl Browser {
    /// Both programs, or `None` after saying loudly that the test did not
    /// run; a failure instead when `CHATD_REQUIRE_BROWSER=1`.
    fn find() -> Option<Self> {
        let chromium = on_path("chromium");
        let chromedriver = on_path("chromedriver");
        if let (Some(chromium), Some(chromedriver)) = (&chromium, &chromedriver) {
            return Some(Self {
                chromium: chromium.clone(),
                chromedriver: chromedriver.clone(),
            });
        }
        let missing: Vec<&str> = [("chromium", &chromium), ("chromedriver", &chromedriver)]
            .into_iter()
            .filter(|(_, found)| found.is_none())
            .map(|(name, _)| name)
            .collect();
        let message = format!("{} not installed ({APT_BROWSER})", missing.join(", "));
        if std::env::var("CHATD_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("CHATD_REQUIRE_BROWSER=1 but {message}");
        }
        // Straight to the process's stderr: the test harness captures
        // eprintln! and would hide the warning of a test that passes.
        let _ = writeln!(
            std::io::stderr().lock(),
            "!!!!!!!! SKIPPED: {message}: the browser test did NOT run !!!!!!!!"
        );
        None
    }
}

fn on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// A chromedriver on a free loopback port, killed when dropped with the
/// browsers it started.
struct Chromedriver {
    url: String,
    process: KillOnDrop,
}

impl Drop for Chromedriver {
    /// A test that fails never closes its browser sessions, and browsers
    /// outlive a killed chromedriver: chromedriver runs in a process group
    /// of its own, which its browsers inherit, and the whole group goes.
    fn drop(&mut self) {
        let group = rustix::process::Pid::from_child(&self.process.0);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
}

impl Chromedriver {
    fn start(tools: &Browser) -> Self {
        let port = free_port();
        let child = Command::new(&tools.chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start {}: {error}", tools.chromedriver.display())
            });
        let mut process = KillOnDrop(child);
        wait_listening(
            &mut process,
            SocketAddr::new(LOCAL, port),
            "chromedriver",
            WAIT,
        );
        Self {
            url: format!("http://127.0.0.1:{port}"),
            process,
        }
    }
}

/// One browser session showing the page, with its own fresh profile.
struct Page {
    name: &'static str,
    client: Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Page {
    async fn open(driver: &Chromedriver, tools: &Browser, name: &'static str, url: &str) -> Self {
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut capabilities = Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": tools.chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    // No crash reporter: its handler leaves the process
                    // group (setsid) and would outlive a failed test.
                    "--disable-breakpad",
                    "--disable-crash-reporter",
                    "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        // Keeps the page's console (errors included) for the log endpoint.
        capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            WAIT,
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&driver.url),
        )
        .await
        .unwrap_or_else(|_| panic!("no browser session for {name} within {WAIT:?}"))
        .unwrap_or_else(|error| panic!("no browser session for {name}: {error}"));
        let session = client
            .session_id()
            .await
            .expect("a session id")
            .expect("a session id");
        let page = Self {
            name,
            client,
            session,
            _profile: profile,
        };
        page.step(&format!("open {url}"), page.client.goto(url))
            .await;
        page.wait_js(
            "the page connects",
            "return document.getElementById('status').dataset.state === 'online'",
        )
        .await;
        page
    }

    /// Runs one WebDriver command, bounded by [`WAIT`].
    async fn step<T, E: std::fmt::Display>(
        &self,
        what: &str,
        command: impl std::future::Future<Output = Result<T, E>>,
    ) -> T {
        match tokio::time::timeout(WAIT, command).await {
            Ok(Ok(value)) => value,
            Ok(Err(error)) => panic!("{}: {what}: {error}", self.name),
            Err(_) => panic!("{}: {what}: no answer within {WAIT:?}", self.name),
        }
    }

    async fn script(&self, script: &str) -> Value {
        self.step(script, self.client.execute(script, Vec::new()))
            .await
    }

    /// Waits until `script` returns something truthy.
    async fn wait_js(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.script(script).await;
            if !matches!(value, Value::Null | Value::Bool(false)) {
                return value;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: not within {WAIT:?}: {what}\nthe page shows:\n{}",
                    self.name,
                    self.visible_log().await.join("\n")
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Every line of the room on screen, as text.
    async fn visible_log(&self) -> Vec<String> {
        let lines = self
            .script("return [...document.querySelectorAll('.log:not([hidden]) .line')].map(l => l.textContent)")
            .await;
        lines
            .as_array()
            .map(|lines| {
                lines
                    .iter()
                    .filter_map(|l| l.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn wait_line(&self, needle: &str) {
        let script = format!(
            "return [...document.querySelectorAll('.log:not([hidden]) .line')].some(l => l.textContent.includes({}))",
            json!(needle)
        );
        self.wait_js(&format!("a line with {needle:?}"), &script)
            .await;
    }

    /// `needle` is in exactly one line of the room on screen.
    async fn expect_once(&self, needle: &str) {
        let count = self
            .visible_log()
            .await
            .iter()
            .filter(|line| line.contains(needle))
            .count();
        assert_eq!(
            count,
            1,
            "{}: {needle:?} should show once, shows {count} times:\n{}",
            self.name,
            self.visible_log().await.join("\n")
        );
    }

    async fn wait_text(&self, selector: &str, text: &str) {
        let script = format!(
            "const e = document.querySelector({}); return e && e.textContent === {}",
            json!(selector),
            json!(text)
        );
        self.wait_js(&format!("{selector} reads {text:?}"), &script)
            .await;
    }

    async fn find(&self, selector: &str) -> fantoccini::elements::Element {
        self.step(
            &format!("find {selector}"),
            self.client
                .wait()
                .at_most(WAIT)
                .for_element(Locator::Css(selector)),
        )
        .await
    }

    async fn keys(&self, selector: &str, keys: &str) {
        let element = self.find(selector).await;
        self.step(&format!("type into {selector}"), element.send_keys(keys))
            .await;
    }

    async fn click(&self, selector: &str) {
        let element = self.find(selector).await;
        self.step(&format!("click {selector}"), element.click())
            .await;
    }

    async fn clear(&self, selector: &str) {
        let element = self.find(selector).await;
        self.step(&format!("clear {selector}"), element.clear())
            .await;
    }

    /// Types a line in the message box and presses Enter.
    async fn type_line(&self, line: &str) {
        self.keys("#input", &format!("{line}{ENTER}")).await;
    }

    async fn set_nick(&self, nick: &str) {
        self.clear("#nick-input").await;
        self.keys("#nick-input", &format!("{nick}{ENTER}")).await;
        self.wait_text("#status", &format!("connected as {nick}"))
            .await;
    }

    async fn join(&self, room: &str) {
        self.keys("#join-input", &format!("{room}{ENTER}")).await;
        self.wait_text("#room-title", &format!("#{room}")).await;
    }

    /// Nothing the page shows came from markup: no element the markup
    /// would make, no script run.
    async fn expect_inert(&self) {
        let made = self
            .script(
                "return {
                    pwned: typeof window.pwned,
                    elements: document.querySelectorAll('#logs img, #logs script, #logs b, #alert img, #alert b').length,
                }",
            )
            .await;
        assert_eq!(
            made,
            json!({"pwned": "undefined", "elements": 0}),
            "{}: markup in a chat line became HTML",
            self.name
        );
    }

    /// The browser's console since the last look holds no error, other than
    /// messages containing one of `allowed`.
    async fn expect_no_console_errors(&self, allowed: &[&str]) {
        let entries = self
            .step(
                "read the browser log",
                self.client
                    .issue_cmd(SessionCommand::post("se/log", json!({"type": "browser"}))),
            )
            .await;
        let errors: Vec<&Value> = entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .filter(|entry| {
                let message = entry["message"].as_str().unwrap_or_default();
                !allowed.iter().any(|allowed| message.contains(allowed))
            })
            .collect();
        assert!(
            errors.is_empty(),
            "{}: the JavaScript console has errors: {errors:#?}",
            self.name
        );
    }

    /// A Chrome DevTools command through chromedriver.
    async fn devtools(&self, command: &str, params: Value) {
        self.step(
            command,
            self.client.issue_cmd(SessionCommand::post(
                "goog/cdp/execute",
                json!({"cmd": command, "params": params}),
            )),
        )
        .await;
    }

    async fn screenshot(&self, name: &str) {
        let png = self.step("screenshot", self.client.screenshot()).await;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
    }

    async fn close(self) {
        let _ = tokio::time::timeout(WAIT, self.client.close()).await;
        let _ = self.session;
    }
}

/// `target/screenshots/`, beside the profile directory this test runs from
/// (`target/debug/deps/browser-*`).
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    exe.ancestors()
        .nth(3)
        .map(|target| target.join("screenshots"))
        .expect("a target directory above the test")
}

/// A WebDriver command on the session that fantoccini has no method for:
/// chromedriver's `se/log` (the console) and `goog/cdp/execute` (DevTools).
#[derive(Debug)]
struct SessionCommand {
    path: &'static str,
    body: Value,
}

impl SessionCommand {
    fn post(path: &'static str, body: Value) -> Self {
        Self { path, body }
    }
}

impl WebDriverCompatibleCommand for SessionCommand {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/{}",
            session.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}

// ---- The server and the TCP client ----------------------------------------------

/// `chatd serve` with a native and an HTTP listener and a data directory
/// that outlives a restart.
struct Chatd {
    native: SocketAddr,
    http: SocketAddr,
    process: Option<KillOnDrop>,
    data: tempfile::TempDir,
    /// The server's log, read for its whole life: a server whose stderr
    /// pipe is closed dies at its next log line.
    _log: Receiver<String>,
}

impl Chatd {
    /// A new server on ephemeral ports.
    fn start() -> Self {
        let data = tempfile::tempdir().expect("a data directory");
        let (process, log, list) = Self::spawn(data.path(), "127.0.0.1:0", "127.0.0.1:0");
        Self {
            native: listener(&list, "native"),
            http: listener(&list, "http"),
            process: Some(process),
            data,
            _log: log,
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    fn kill(&mut self) {
        drop(self.process.take());
    }

    /// A new server on the same ports and data directory.
    fn restart(&mut self) {
        self.kill();
        let (process, log, list) = Self::spawn(
            self.data.path(),
            &self.native.to_string(),
            &self.http.to_string(),
        );
        assert_eq!(
            (listener(&list, "native"), listener(&list, "http")),
            (self.native, self.http),
            "the restarted server listens elsewhere"
        );
        self.process = Some(process);
        self._log = log;
    }

    /// Starts `chatd serve` and reads its start-up line's list of listeners.
    fn spawn(dir: &Path, native: &str, http: &str) -> (KillOnDrop, Receiver<String>, String) {
        let binary = native_chatd_binary().unwrap_or_else(|error| panic!("{error}"));
        let config = dir.join("chatd.toml");
        std::fs::write(&config, CONFIG)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", config.display()));
        let deadline = Instant::now() + WAIT;
        loop {
            let mut child = Command::new(&binary)
                .args(["serve", "--threads", "2", "--irc-bind", "none"])
                .args(["--bind", native, "--http-bind", http])
                .arg("--config")
                .arg(&config)
                .arg("--data-dir")
                .arg(dir.join("data"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
            let log = lines_of(child.stderr.take().expect("stderr is piped"));
            let mut process = KillOnDrop(child);
            let mut seen = Vec::new();
            let started = loop {
                match log.recv_timeout(POLL) {
                    Ok(line) => {
                        if let Some(list) = line.split("chatd listening on ").nth(1) {
                            break Some(list.to_owned());
                        }
                        seen.push(line);
                    }
                    Err(_) if Instant::now() >= deadline => {
                        panic!("chatd serve did not start within {WAIT:?}: {seen:#?}")
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    // Exited: on a restart the old ports may still be held
                    // for a moment, so try again until the deadline.
                    Err(mpsc::RecvTimeoutError::Disconnected) => break None,
                }
            };
            let Some(list) = started else {
                let _ = process.0.wait();
                assert!(
                    Instant::now() < deadline,
                    "chatd serve exited before listening: {seen:#?}"
                );
                std::thread::sleep(POLL);
                continue;
            };
            return (process, log, list);
        }
    }
}

/// The `ADDR (KIND)` entry of the start-up line's list, e.g.
/// `127.0.0.1:8080 (http)`.
fn listener(list: &str, kind: &str) -> SocketAddr {
    let tag = format!(" ({kind})");
    list.split(", ")
        .find_map(|entry| entry.split_once(&tag).map(|(address, _)| address.trim()))
        .and_then(|address| address.parse().ok())
        .unwrap_or_else(|| panic!("no {kind} listener in {list:?}"))
}

/// A native protocol client over TCP, every read bounded.
struct Native {
    client: LineClient,
    nick: &'static str,
}

impl Native {
    fn connect(server: SocketAddr, nick: &'static str) -> Self {
        let client = LineClient::connect(server, LOCAL)
            .unwrap_or_else(|error| panic!("{nick} cannot connect to {server}: {error}"));
        let mut native = Self { client, nick };
        native.expect("* welcome, you are");
        native.say(&format!("#nick {nick}"));
        native.expect(&format!("* you are now {nick}"));
        native
    }

    fn say(&mut self, line: &str) {
        self.client
            .say(line)
            .unwrap_or_else(|error| panic!("{}: cannot send {line:?}: {error}", self.nick));
    }

    fn join(&mut self, room: &str) {
        self.say(&format!("#join {room}"));
        self.expect(&format!("#{room}"));
    }

    /// Reads until a line containing `needle`, for at most [`WAIT`].
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            match self.client.next_line() {
                Ok(Received::Line(line)) if line.contains(needle) => return line,
                Ok(Received::Line(line)) => seen.push(line),
                Ok(Received::Nothing) if Instant::now() < deadline => {}
                other => panic!(
                    "{}: no line with {needle:?} ({other:?}) after {seen:#?}",
                    self.nick
                ),
            }
        }
    }
}

fn lines_of(from: impl Read + Send + 'static) -> Receiver<String> {
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            // The receiver is gone once the test is done with the server;
            // keep reading anyway so the server never writes to a closed pipe.
            let _ = send.send(line);
        }
    });
    lines
}
