//! The config file parser (`chatd_engine::settings::Settings::parse`, which
//! ends in `chatd_core::Config::validate`) over arbitrary text. Checked:
//!
//! 1. nothing panics, whatever the text;
//! 2. an accepted config builds a `Server` (validation and `Server::new`
//!    agree), and that server survives a short session at its limits:
//!    connections from one address up to its per-IP limit, a line at
//!    exactly its line limit, one just over, commands whose answers scale
//!    with the settings (`#history`, `#rooms`, `#create`), and its idle
//!    timers run to their deadlines; its invariants hold after every step;
//! 3. the core settings, written back out as TOML, are accepted again.

#![no_main]

use std::sync::LazyLock;
use std::time::Instant;

use chatd_core::{Output, Server};
use chatd_engine::settings::Settings;
use libfuzzer_sys::fuzz_target;

/// One instant for the whole run; only differences matter to the core.
static START: LazyLock<Instant> = LazyLock::new(Instant::now);

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let Ok(settings) = Settings::parse(&text) else {
        return;
    };
    let config = settings.chat;
    let written = toml::to_string(&config)
        .unwrap_or_else(|error| panic!("{config:?} does not serialise: {error}"));
    if let Err(error) = Settings::parse(&written) {
        panic!("written back as {written:?}, the config is refused: {error}");
    }

    let now = *START;
    let max_line = config.max_line_bytes;
    let per_ip = config.max_connections_per_ip;
    let mut server = Server::new(config, now, 1_795_000_000_000)
        .unwrap_or_else(|error| panic!("validated settings refused by Server::new: {error}"));
    let peer = "127.0.0.1:40000".parse().expect("a valid address");
    let mut conns = Vec::new();
    // One over the per-IP limit (0 = none; then a few) to reach the refusal.
    for _ in 0..=per_ip.clamp(1, 4) {
        if let Ok(conn) = server.accept(now, peer) {
            conns.push(conn);
        }
        check(&mut server);
    }
    let Some(&first) = conns.first() else {
        return;
    };
    let mut exact = vec![b'x'; max_line];
    exact.push(b'\n');
    let mut over = vec![b'y'; max_line + 1];
    over.push(b'\n');
    for input in [
        &exact[..],
        &over[..],
        b"#nick alice\n#create den\n#history\n#history 99999999999999999999\n#rooms\n#who\n",
        b"#leave\n#create den2\n#create den3\n#join den\n#quit bye\n",
    ] {
        server.handle(now, first, input);
        check(&mut server);
    }
    let mut at = now;
    for _ in 0..4 {
        let Some(deadline) = server.poll_timeout() else {
            break;
        };
        at = at.max(deadline);
        server.handle_timeout(at);
        check(&mut server);
    }
});

/// Drains the outputs (every line whole UTF-8) and checks the invariants.
fn check(server: &mut Server) {
    while let Some(output) = server.poll_output() {
        if let Output::Send { bytes, .. } | Output::Broadcast { bytes, .. } = output {
            let text = std::str::from_utf8(&bytes).expect("output is UTF-8");
            assert!(text.ends_with('\n'), "output is not whole lines: {text:?}");
        }
    }
    if let Err(broken) = server.check_invariants() {
        panic!("invariant broken: {broken}");
    }
}
