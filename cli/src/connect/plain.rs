//! The client without a terminal: stdin's lines go to the server, the
//! server's lines go to stdout (without the message ids the client asks
//! for). When the server goes away it reconnects like the terminal UI and
//! catches up ([`Session`]); notes about the connection go to stderr. When
//! stdin ends, a `#ping` barrier makes sure everything sent was answered
//! before exiting.

use std::io::{self, BufRead, Write};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;

use super::link::{self, LinkEvent};
use super::session::Session;
use super::tls::Connector;

/// The barrier token; its pong is not printed.
const BARRIER: &str = "chatd-connect-end-of-input";

/// Most typed lines held while the connection is down or catching up;
/// past it stdin is not read until they are sent, so a large input piped
/// in while the server is away waits in the pipe, not in memory.
const HELD_LINES: usize = 1_000;

/// Whether the stdin thread may read another line: shut while the session
/// holds [`HELD_LINES`] lines.
#[derive(Default)]
struct Gate {
    shut: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn set_shut(&self, shut: bool) {
        let mut state = self
            .shut
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *state != shut {
            *state = shut;
            self.opened.notify_all();
        }
    }

    /// Waits while the gate is shut.
    fn pass(&self) {
        let mut shut = self
            .shut
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *shut {
            shut = self
                .opened
                .wait(shut)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// What the client waits for.
enum Event {
    Link(LinkEvent),
    Stdin(String),
    EndOfInput,
}

pub(crate) fn run(addr: &str, connector: Connector, nick: Option<&str>) -> anyhow::Result<()> {
    let (events, next) = mpsc::channel();
    let from_link = events.clone();
    let link = link::spawn_reporting(addr.to_owned(), connector, move |event| {
        from_link.send(Event::Link(event)).is_ok()
    });
    let gate = Arc::new(Gate::default());
    let reader_gate = gate.clone();
    thread::spawn(move || {
        let stdin = io::stdin();
        let mut lines = stdin.lock().lines();
        loop {
            reader_gate.pass();
            let Some(Ok(line)) = lines.next() else {
                break;
            };
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
            Event::Link(LinkEvent::Warning(warning)) => {
                eprintln!("chatd connect: {warning}");
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
        gate.set_shut(session.held() >= HELD_LINES);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_shut_gate_holds_the_reader_until_it_opens() {
        let gate = Arc::new(Gate::default());
        gate.set_shut(true);
        let passed = Arc::new(AtomicBool::new(false));
        let reader = {
            let (gate, passed) = (gate.clone(), passed.clone());
            thread::spawn(move || {
                gate.pass();
                passed.store(true, Ordering::SeqCst);
            })
        };
        thread::sleep(Duration::from_millis(100));
        assert!(!passed.load(Ordering::SeqCst), "passed a shut gate");
        gate.set_shut(false);
        reader.join().unwrap();
        assert!(passed.load(Ordering::SeqCst));
        // An open gate lets through at once.
        gate.pass();
    }

    #[test]
    fn lines_typed_while_down_are_counted_until_sent() {
        let mut session = Session::new(None);
        for n in 0..3 {
            assert!(session.user_line(format!("line {n}")).is_empty());
        }
        assert_eq!(session.held(), 3);
    }
}
