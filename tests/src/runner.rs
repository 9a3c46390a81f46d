//! Runs a transcript against a driver and reports the first mismatch.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chatd_core::Dialect;
use chatd_core::cluster::NodeName;

use crate::driver::{Driver, DriverError, NodeStep, Received};
use crate::transcript::{Action, Step, Transcript};

/// A transcript that did not go as written.
#[derive(Debug)]
pub struct Failure {
    /// The transcript's file name.
    pub transcript: String,
    /// The driver that ran it.
    pub driver: String,
    /// 1-based line of the failing step (0: the implicit end-of-script barrier).
    pub line: usize,
    /// The failing step as written.
    pub step: String,
    /// What went wrong: expected and actual.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} [{} driver] step `{}`: {}",
            self.transcript, self.line, self.driver, self.step, self.message
        )
    }
}

impl std::error::Error for Failure {}

/// Runs every step; at the end, checks that each client still connected
/// has nothing unread (by a barrier), then stops the driver.
pub fn run(transcript: &Transcript, driver: &mut dyn Driver) -> Result<(), Failure> {
    let mut run = Run {
        transcript,
        driver,
        connected: BTreeSet::new(),
        dialects: BTreeMap::new(),
        nodes: BTreeMap::new(),
        barriers: 0,
    };
    let result = run.all_steps();
    run.driver.stop();
    result
}

struct Run<'a> {
    transcript: &'a Transcript,
    driver: &'a mut dyn Driver,
    connected: BTreeSet<String>,
    /// What each client connected as: how its lines end, how it pings.
    dialects: BTreeMap<String, Dialect>,
    /// The node each client connected to (cluster transcripts).
    nodes: BTreeMap<String, NodeName>,
    barriers: usize,
}

impl Run<'_> {
    fn all_steps(&mut self) -> Result<(), Failure> {
        let start = Step {
            line: 0,
            source: "(start)".into(),
            action: Action::Restart,
        };
        let config = self.transcript.config.clone();
        let started = if self.transcript.is_cluster() {
            self.driver.start_cluster(&config, &self.transcript.nodes)
        } else {
            self.driver.start(&config)
        };
        started.map_err(|error| self.failure(&start, error.to_string()))?;
        for step in &self.transcript.steps {
            self.step(step)?;
        }
        let end = Step {
            line: 0,
            source: "(end of transcript: nothing may be left unread)".into(),
            action: Action::Quiet(self.connected.iter().cloned().collect()),
        };
        self.step(&end)
    }

    fn step(&mut self, step: &Step) -> Result<(), Failure> {
        let fail = |run: &Self, error: DriverError| run.failure(step, error.to_string());
        match &step.action {
            Action::Connect {
                client,
                from,
                dialect,
                node,
            } => {
                match node {
                    Some(node) => self.driver.connect_on(client, node, *from, *dialect),
                    None => self.driver.connect(client, *from, *dialect),
                }
                .map_err(|e| fail(self, e))?;
                self.connected.insert(client.clone());
                self.dialects.insert(client.clone(), *dialect);
                match node {
                    Some(node) => self.nodes.insert(client.clone(), node.clone()),
                    None => self.nodes.remove(client),
                };
            }
            Action::Node { step: what, node } => {
                self.driver
                    .node_step(*what, node)
                    .map_err(|e| fail(self, e))?;
                if *what == NodeStep::Kill {
                    // Its clients are gone: no barrier for them at the end
                    // (`NAME closed` still checks that nothing is unread).
                    let nodes = &self.nodes;
                    self.connected
                        .retain(|client| nodes.get(client) != Some(node));
                }
            }
            Action::Send { client, bytes } => {
                self.driver.send(client, bytes).map_err(|e| fail(self, e))?;
            }
            Action::Expect { client, line } => {
                let got = self.next_line(client).map_err(|e| fail(self, e))?;
                if got != Received::Line(line.clone()) {
                    let message = format!("{client} expected {line:?}, got {}", describe(&got));
                    return Err(self.failure(step, message));
                }
            }
            Action::SkipTo { client, line } => loop {
                // Each read waits at most the driver's timeout, and a
                // close ends the search: the skip is bounded.
                match self.next_line(client).map_err(|e| fail(self, e))? {
                    Received::Line(got) if got == *line => break,
                    Received::Line(_) => {}
                    other => {
                        let message = format!(
                            "{client} expected a line {line:?} eventually, got {}",
                            describe(&other)
                        );
                        return Err(self.failure(step, message));
                    }
                }
            },
            Action::ExpectClosed { client } => {
                let got = self.next_line(client).map_err(|e| fail(self, e))?;
                if got != Received::Closed {
                    let message = format!(
                        "{client} expected the connection closed, got {}",
                        describe(&got)
                    );
                    return Err(self.failure(step, message));
                }
                self.connected.remove(client);
            }
            Action::Close { client } => {
                self.driver.close(client).map_err(|e| fail(self, e))?;
                self.connected.remove(client);
            }
            Action::Advance(by) => self.driver.advance(*by).map_err(|e| fail(self, e))?,
            Action::Quiet(clients) => {
                for client in clients {
                    self.barrier(step, client)?;
                }
            }
            Action::Restart => self.driver.restart().map_err(|e| fail(self, e))?,
        }
        Ok(())
    }

    /// The next line `client` received, without the CR an IRC line ends
    /// with (drivers strip only the LF).
    fn next_line(&mut self, client: &str) -> Result<Received, DriverError> {
        let got = self.driver.next_line(client)?;
        if self.dialect_of(client) != Dialect::Irc {
            return Ok(got);
        }
        Ok(match got {
            Received::Line(line) => match line.strip_suffix('\r') {
                Some(stripped) => Received::Line(stripped.to_owned()),
                None => Received::Line(line),
            },
            other => other,
        })
    }

    fn dialect_of(&self, client: &str) -> Dialect {
        self.dialects.get(client).copied().unwrap_or_default()
    }

    /// Sends a ping and expects its pong as the very next line: proof that
    /// nothing else was pending for the client. Each dialect pings its own
    /// way: `#ping TOKEN` answered `+ pong TOKEN`, or IRC's `PING TOKEN`
    /// answered `:SERVER PONG SERVER TOKEN` (SERVER the config's
    /// `irc.server_name`; the token may also come as the trailing
    /// `:TOKEN`, the same IRC message).
    fn barrier(&mut self, step: &Step, client: &str) -> Result<(), Failure> {
        self.barriers += 1;
        let token = format!("barrier-{}", self.barriers);
        let (ping, expected, also) = match self.dialect_of(client) {
            Dialect::Native => {
                let pong = format!("+ pong {token}");
                (format!("#ping {token}\n"), pong.clone(), pong)
            }
            Dialect::Irc => {
                let server = &self.transcript.config.irc.server_name;
                (
                    format!("PING {token}\r\n"),
                    format!(":{server} PONG {server} {token}"),
                    format!(":{server} PONG {server} :{token}"),
                )
            }
        };
        self.driver
            .send(client, ping.as_bytes())
            .map_err(|e| self.failure(step, e.to_string()))?;
        let got = self
            .next_line(client)
            .map_err(|e| self.failure(step, e.to_string()))?;
        if got != Received::Line(expected.clone()) && got != Received::Line(also) {
            let message = format!(
                "{client} had something unread: expected {expected:?}, got {}",
                describe(&got)
            );
            return Err(self.failure(step, message));
        }
        Ok(())
    }

    fn failure(&self, step: &Step, message: String) -> Failure {
        Failure {
            transcript: self.transcript.name.clone(),
            driver: self.driver.name().to_owned(),
            line: step.line,
            step: step.source.clone(),
            message,
        }
    }
}

fn describe(received: &Received) -> String {
    match received {
        Received::Line(line) => format!("{line:?}"),
        Received::Closed => "the connection closed".into(),
        Received::Nothing => "nothing".into(),
    }
}
