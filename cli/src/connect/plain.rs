//! The client without a terminal: stdin's lines go to the server, the
//! server's lines go to stdout (without the message ids the client asks
//! for). When the server goes away it reconnects like the terminal UI and
//! catches up ([`Session`]); notes about the connection go to stderr. When
//! stdin ends, a `#ping` barrier makes sure everything sent was answered
//! before exiting.

use std::io::{self, BufRead, Write};
use std::sync::mpsc;
use std::thread;

use super::link::{self, LinkEvent};
use super::session::Session;

/// The barrier token; its pong is not printed.
const BARRIER: &str = "chatd-connect-end-of-input";

/// What the client waits for.
enum Event {
    Link(LinkEvent),
    Stdin(String),
    EndOfInput,
}

pub(crate) fn run(addr: &str, nick: Option<&str>) -> anyhow::Result<()> {
    let (events, next) = mpsc::channel();
    let from_link = events.clone();
    let link = link::spawn_reporting(addr.to_owned(), move |event| {
        from_link.send(Event::Link(event)).is_ok()
    });
    thread::spawn(move || {
        for line in io::stdin().lock().lines().map_while(Result::ok) {
            if events.send(Event::Stdin(line)).is_err() {
                return;
            }
        }
        let _ = events.send(Event::EndOfInput);
    });

    let mut session = Session::new(nick.map(str::to_owned));
    let barrier = format!("+ pong {BARRIER}");
    let mut connected_once = false;
    let mut input_ended = false;
    let mut quitting = false;
    let stdout = io::stdout();
    for event in next {
        match event {
            Event::Link(LinkEvent::Connected) => {
                if connected_once {
                    eprintln!("chatd connect: reconnected to {addr}");
                }
                connected_once = true;
                for line in session.connected() {
                    link.send(&line);
                }
            }
            Event::Link(LinkEvent::Line(line)) => {
                if line == barrier {
                    return Ok(());
                }
                let step = session.line(&line);
                let mut out = stdout.lock();
                for shown in step.show {
                    let _ = writeln!(out, "{shown}");
                }
                let _ = out.flush();
                for line in step.send {
                    link.send(&line);
                }
            }
            Event::Link(LinkEvent::Lost { reason, retry_in }) => {
                if !connected_once {
                    anyhow::bail!("{reason}");
                }
                // After #quit, or with nothing more to send: what the
                // server sent is printed.
                if quitting || input_ended {
                    return Ok(());
                }
                session.lost();
                eprintln!(
                    "chatd connect: {reason}; reconnecting in {}",
                    chatd_core::duration::format(retry_in)
                );
            }
            Event::Stdin(line) => {
                if line.trim_start().to_ascii_lowercase().starts_with("#quit") {
                    quitting = true;
                }
                for line in session.user_line(line) {
                    link.send(&line);
                }
            }
            Event::EndOfInput => {
                input_ended = true;
                for line in session.user_line(format!("#ping {BARRIER}")) {
                    link.send(&line);
                }
            }
        }
    }
    Ok(())
}
