//! The transcript format (docs/TRANSCRIPTS.md).
//!
//! ```text
//! # comments and blank lines are ignored
//! config max_line_bytes = 64          # TOML, as in the config file; before any other step
//! connect alice                       # from 127.0.0.1, native dialect
//! connect bob from 127.0.0.2          # from another loopback address
//! connect carol irc from 127.0.0.3    # an IRC client (`native` is the default)
//! alice < * welcome, you are guest1 in #general; type #help for commands
//! alice > #nick alice                 # sends the text and LF (CR LF for IRC clients)
//! alice >raw "caf\xc3\r\n"            # sends exact bytes (escapes: \xNN \r \n \t \\ \")
//! alice < * you are now alice         # the exact next line alice receives (CR stripped for IRC)
//! bob closed                          # the server closed bob's connection, nothing unread
//! bob close                           # bob hangs up
//! advance 61s                         # virtual time moves on
//! quiet alice bob                     # barrier: nothing else is pending for them
//! restart                             # the server shuts down and starts on its records
//! ```
//!
//! A cluster transcript (under `tests/transcripts/cluster/`) declares its
//! nodes first and places every client on one:
//!
//! ```text
//! nodes n1 n2 n3                      # three nodes on one bus; before any step
//! connect alice on n1                 # alice's connection goes to node n1
//! connect bob irc on n2 from 127.0.0.2
//! cut n2                              # n2 loses the bus (Redis unreachable)
//! cut n2 unnoticed                    # the same, noticed at n2's next request
//! heal n2                             # n2 reaches it again and catches up
//! kill n3                             # n3 dies: its clients are gone, its lease lapses
//! stop n1                             # n1 shuts down gracefully and leaves the cluster
//! start n4                            # a node starts (a new one, or a killed one again)
//! ```
//!
//! (The notes on the right are for this page only: in a file, a comment is
//! a whole line starting with `#`.) At the end, every client still
//! connected gets an implicit `quiet`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use chatd_core::cluster::NodeName;
use chatd_core::{Config, Dialect};

use crate::driver::NodeStep;

/// One parsed transcript.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// File name, for messages.
    pub name: String,
    /// The server's config (defaults plus the `config` lines).
    pub config: Config,
    /// The nodes of a cluster transcript, started with it (the `nodes`
    /// line); empty for one server.
    pub nodes: Vec<NodeName>,
    /// The steps in order.
    pub steps: Vec<Step>,
}

/// One step and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based line number in the file.
    pub line: usize,
    /// The step's source text, for failure messages.
    pub source: String,
    /// What to do.
    pub action: Action,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a connection for a client, from an address, to the listener
    /// of a dialect.
    Connect {
        /// The client's name in the script.
        client: String,
        /// The source address.
        from: IpAddr,
        /// What the client speaks: which listener it connects to (socket
        /// drivers) or how the core accepts it (memory driver).
        dialect: Dialect,
        /// The node whose server it connects to (cluster transcripts).
        node: Option<NodeName>,
    },
    /// Do something to one node of a cluster.
    Node {
        /// What.
        step: NodeStep,
        /// To which node.
        node: NodeName,
    },
    /// Send bytes (a `>` line already ends as the client's dialect
    /// ends lines).
    Send {
        /// Who sends.
        client: String,
        /// Exactly what.
        bytes: Vec<u8>,
    },
    /// Expect the next line.
    Expect {
        /// Who receives.
        client: String,
        /// The line, without its LF (nor, for an IRC client, its CR).
        line: String,
    },
    /// Read lines until one is exactly this (the others are not checked):
    /// for long bursts tested elsewhere, such as IRC's registration.
    SkipTo {
        /// Who receives.
        client: String,
        /// The line to stop after, without its ending.
        line: String,
    },
    /// Expect the server to have closed the connection.
    ExpectClosed {
        /// Whose.
        client: String,
    },
    /// Hang up.
    Close {
        /// Who.
        client: String,
    },
    /// Advance virtual time.
    Advance(Duration),
    /// Barrier: ping each client and expect its pong next.
    Quiet(Vec<String>),
    /// Shut the server down and start a new one on the persisted records.
    Restart,
}

/// A transcript that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line does not fit the format.
    #[error("{name}:{line}: {message}")]
    Syntax {
        /// The file name.
        name: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl Transcript {
    /// Reads and parses a transcript file.
    pub fn load(path: &Path) -> Result<Self, TranscriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| TranscriptError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self::parse(&name, &text)
    }

    /// Parses transcript text.
    pub fn parse(name: &str, text: &str) -> Result<Self, TranscriptError> {
        let syntax = |line: usize, message: String| TranscriptError::Syntax {
            name: name.to_owned(),
            line,
            message,
        };
        let mut config_toml = String::new();
        let mut steps = Vec::new();
        let mut nodes: Vec<NodeName> = Vec::new();
        // Every node named so far (`nodes`, then `start`).
        let mut known: Vec<NodeName> = Vec::new();
        // What each client was last connected as: a `>` line ends with
        // the line ending of its dialect.
        let mut dialects = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if let Some(setting) = trimmed.strip_prefix("config ") {
                if !steps.is_empty() {
                    return Err(syntax(
                        number,
                        "config lines must come before any step".into(),
                    ));
                }
                config_toml.push_str(setting);
                config_toml.push('\n');
                continue;
            }
            if let Some(names) = trimmed.strip_prefix("nodes ") {
                if !steps.is_empty() || !nodes.is_empty() {
                    return Err(syntax(number, "one nodes line, before any step".into()));
                }
                for name in names.split_whitespace() {
                    let node = NodeName::parse(name)
                        .map_err(|error| syntax(number, format!("{name:?}: {error}")))?;
                    if nodes.contains(&node) {
                        return Err(syntax(number, format!("node {node} named twice")));
                    }
                    nodes.push(node);
                }
                known.clone_from(&nodes);
                continue;
            }
            let action =
                parse_action(trimmed, &dialects).map_err(|message| syntax(number, message))?;
            check_nodes(&action, &nodes, &mut known).map_err(|message| syntax(number, message))?;
            if let Action::Connect {
                client, dialect, ..
            } = &action
            {
                dialects.insert(client.clone(), *dialect);
            }
            steps.push(Step {
                line: number,
                source: trimmed.to_owned(),
                action,
            });
        }
        let config: Config =
            toml::from_str(&config_toml).map_err(|error| syntax(1, format!("config: {error}")))?;
        config
            .validate()
            .map_err(|error| syntax(1, format!("config: {error}")))?;
        Ok(Self {
            name: name.to_owned(),
            config,
            nodes,
            steps,
        })
    }

    /// Whether this is a cluster transcript (it has a `nodes` line).
    pub fn is_cluster(&self) -> bool {
        !self.nodes.is_empty()
    }
}

/// In a cluster transcript every client connects to a node named before,
/// and node steps name a node (`start` may name a new one); in any other,
/// neither appears.
fn check_nodes(
    action: &Action,
    nodes: &[NodeName],
    known: &mut Vec<NodeName>,
) -> Result<(), String> {
    let cluster = !nodes.is_empty();
    match action {
        Action::Connect { node: None, .. } if cluster => {
            Err("in a cluster transcript, connect NAME on NODE".into())
        }
        Action::Connect { node: Some(_), .. } | Action::Node { .. } if !cluster => {
            Err("nodes are for cluster transcripts: declare them first (nodes n1 n2 ...)".into())
        }
        Action::Connect {
            node: Some(node), ..
        }
        | Action::Node { node, .. }
            if !known.contains(node) =>
        {
            if matches!(
                action,
                Action::Node {
                    step: NodeStep::Start,
                    ..
                }
            ) {
                known.push(node.clone());
                Ok(())
            } else {
                Err(format!(
                    "no node {node} (nodes are named by `nodes` or `start`)"
                ))
            }
        }
        _ => Ok(()),
    }
}

fn parse_action(line: &str, dialects: &HashMap<String, Dialect>) -> Result<Action, String> {
    const CONNECT_USAGE: &str = "usage: connect NAME [native|irc] [on NODE] [from IP]";
    let (first, rest) = split_word(line);
    match first {
        "connect" => {
            let (client, mut rest) = split_word(rest);
            let mut dialect = Dialect::Native;
            let (word, after) = split_word(rest);
            if let Some(named) = dialect_named(word) {
                dialect = named;
                rest = after;
            }
            let mut node = None;
            if let ("on", after) = split_word(rest) {
                let (name, after) = split_word(after);
                node = Some(NodeName::parse(name).map_err(|error| format!("{name:?}: {error}"))?);
                rest = after;
            }
            let from = match split_word(rest) {
                ("", _) => IpAddr::from([127, 0, 0, 1]),
                ("from", address) => address
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad address {address:?}"))?,
                _ => return Err(CONNECT_USAGE.into()),
            };
            Ok(Action::Connect {
                client: client_name(client)?,
                from,
                dialect,
                node,
            })
        }
        "cut"
            if rest
                .strip_suffix(" unnoticed")
                .is_some_and(|n| !n.contains(' ')) =>
        {
            let name = rest.trim_end_matches(" unnoticed");
            let node = NodeName::parse(name).map_err(|error| format!("{name:?}: {error}"))?;
            Ok(Action::Node {
                step: NodeStep::CutUnnoticed,
                node,
            })
        }
        "cut" | "heal" | "kill" | "stop" | "start"
            if !rest.is_empty() && !rest.contains(char::is_whitespace) =>
        {
            let step = [
                NodeStep::Cut,
                NodeStep::Heal,
                NodeStep::Kill,
                NodeStep::Stop,
                NodeStep::Start,
            ]
            .into_iter()
            .find(|step| step.word() == first)
            .ok_or("unknown node step")?;
            let node = NodeName::parse(rest).map_err(|error| format!("{rest:?}: {error}"))?;
            Ok(Action::Node { step, node })
        }
        "advance" => chatd_core::duration::parse(rest.trim())
            .map(Action::Advance)
            .map_err(|error| error.to_string()),
        "quiet" => {
            let clients: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
            if clients.is_empty() {
                return Err("usage: quiet NAME...".into());
            }
            Ok(Action::Quiet(clients))
        }
        "restart" if rest.is_empty() => Ok(Action::Restart),
        client => {
            let client = client_name(client)?;
            let (op, text) = split_op(rest);
            match op {
                ">" => {
                    let mut bytes = text.as_bytes().to_vec();
                    match dialects.get(&client) {
                        Some(Dialect::Irc) => bytes.extend_from_slice(b"\r\n"),
                        _ => bytes.push(b'\n'),
                    }
                    Ok(Action::Send { client, bytes })
                }
                ">raw" => Ok(Action::Send {
                    client,
                    bytes: unescape(text)?,
                }),
                "<" => Ok(Action::Expect {
                    client,
                    line: text.to_owned(),
                }),
                "<raw" => Ok(Action::Expect {
                    client,
                    line: String::from_utf8(unescape(text)?)
                        .map_err(|_| "an expected line must be UTF-8".to_owned())?,
                }),
                "<..." => Ok(Action::SkipTo {
                    client,
                    line: text.to_owned(),
                }),
                "closed" if text.is_empty() => Ok(Action::ExpectClosed { client }),
                "close" if text.is_empty() => Ok(Action::Close { client }),
                _ => Err(format!("unknown step {line:?}")),
            }
        }
    }
}

/// `native` or `irc`, as a `connect` step names the dialect.
fn dialect_named(word: &str) -> Option<Dialect> {
    [Dialect::Native, Dialect::Irc]
        .into_iter()
        .find(|dialect| dialect.name() == word)
}

fn client_name(name: &str) -> Result<String, String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("bad client name {name:?}"));
    }
    Ok(name.to_owned())
}

fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => (&text[..end], text[end..].trim_start()),
        None => (text, ""),
    }
}

/// Splits "< text" / "> text" / ">raw text" / "closed": exactly one space
/// separates the operator from text, so leading spaces in text are kept.
fn split_op(rest: &str) -> (&str, &str) {
    let end = rest.find(' ').unwrap_or(rest.len());
    let (op, after) = rest.split_at(end);
    (op, after.strip_prefix(' ').unwrap_or(after))
}

fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or("raw bytes go in double quotes")?;
    let mut out = Vec::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some('t') => out.push(b'\t'),
            Some('\\') => out.push(b'\\'),
            Some('"') => out.push(b'"'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte =
                    u8::from_str_radix(&hex, 16).map_err(|_| format!("bad escape \\x{hex}"))?;
                out.push(byte);
            }
            Some('*') => {
                // \*N{c}: c repeated N times, for over-long lines.
                let spec: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let (count, what) = spec.split_once('{').ok_or("usage: \\*N{c}")?;
                let count: usize = count.parse().map_err(|_| "bad repeat count")?;
                out.extend(what.as_bytes().repeat(count));
            }
            other => {
                return Err(format!(
                    "bad escape \\{}",
                    other.map(String::from).unwrap_or_default()
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_step_kind() {
        let text = "config max_line_bytes = 64\nconnect a\nconnect b from 127.0.0.2\na > hi\na >raw \"x\\xff\\*3{ab}\\n\"\nb <  two spaces\nb closed\na close\nadvance 1m\nquiet a b\nrestart\n";
        let transcript = Transcript::parse("t", text).unwrap();
        assert_eq!(transcript.config.max_line_bytes, 64);
        let actions: Vec<Action> = transcript.steps.into_iter().map(|s| s.action).collect();
        assert_eq!(
            actions[2],
            Action::Send {
                client: "a".into(),
                bytes: b"hi\n".to_vec()
            }
        );
        assert_eq!(
            actions[3],
            Action::Send {
                client: "a".into(),
                bytes: b"x\xffababab\n".to_vec()
            }
        );
        assert_eq!(
            actions[4],
            Action::Expect {
                client: "b".into(),
                line: " two spaces".into()
            }
        );
        assert_eq!(actions[7], Action::Advance(Duration::from_secs(60)));
        assert_eq!(actions.len(), 10);
    }

    #[test]
    fn irc_clients_send_crlf_and_native_ones_lf() {
        let text = "connect a irc\nconnect b native from 127.0.0.2\nconnect c irc from 127.0.0.3\nconnect d\na > NICK a\nb > hi\n";
        let transcript = Transcript::parse("t", text).unwrap();
        let actions: Vec<Action> = transcript.steps.into_iter().map(|s| s.action).collect();
        let connect = |client: &str, from: [u8; 4], dialect| Action::Connect {
            client: client.into(),
            from: IpAddr::from(from),
            dialect,
            node: None,
        };
        assert_eq!(actions[0], connect("a", [127, 0, 0, 1], Dialect::Irc));
        assert_eq!(actions[1], connect("b", [127, 0, 0, 2], Dialect::Native));
        assert_eq!(actions[2], connect("c", [127, 0, 0, 3], Dialect::Irc));
        assert_eq!(actions[3], connect("d", [127, 0, 0, 1], Dialect::Native));
        let send = |client: &str, bytes: &[u8]| Action::Send {
            client: client.into(),
            bytes: bytes.to_vec(),
        };
        assert_eq!(actions[4], send("a", b"NICK a\r\n"));
        assert_eq!(actions[5], send("b", b"hi\n"));
        assert!(Transcript::parse("t", "connect a klingon\n").is_err());
    }

    #[test]
    fn cluster_transcripts_name_their_nodes_and_place_every_client() {
        let text = "nodes n1 n2\nconnect a on n1\nconnect b irc on n2 from 127.0.0.2\ncut n2\nheal n2\nkill n1\nstart n3\nconnect c on n3\ncut n3 unnoticed\nstop n3\n";
        let transcript = Transcript::parse("t", text).unwrap();
        assert!(transcript.is_cluster());
        let node = |name: &str| NodeName::parse(name).unwrap();
        assert_eq!(transcript.nodes, [node("n1"), node("n2")]);
        let actions: Vec<Action> = transcript.steps.into_iter().map(|s| s.action).collect();
        assert_eq!(
            actions[1],
            Action::Connect {
                client: "b".into(),
                from: IpAddr::from([127, 0, 0, 2]),
                dialect: Dialect::Irc,
                node: Some(node("n2")),
            }
        );
        assert_eq!(
            actions[2],
            Action::Node {
                step: NodeStep::Cut,
                node: node("n2")
            }
        );
        assert_eq!(
            actions[7],
            Action::Node {
                step: NodeStep::CutUnnoticed,
                node: node("n3")
            }
        );
        assert_eq!(
            actions[8],
            Action::Node {
                step: NodeStep::Stop,
                node: node("n3")
            }
        );
        assert_eq!(actions.len(), 9);
        for bad in [
            "nodes n1\nconnect a\n",
            "nodes n1\nconnect a on n2\n",
            "nodes n1\ncut n2\n",
            "connect a on n1\n",
            "kill n1\n",
            "nodes n1 n1\n",
            "nodes n1\ncut n1 quietly\n",
            "nodes N1\n",
            "connect a\nnodes n1\n",
        ] {
            assert!(Transcript::parse("t", bad).is_err(), "{bad:?}");
        }
        // A client may still be called `start`: a step with an operator is
        // the client's.
        assert!(Transcript::parse("t", "connect start\nstart > hi\n").is_ok());
    }

    #[test]
    fn config_after_a_step_is_an_error() {
        assert!(Transcript::parse("t", "connect a\nconfig history_size = 1\n").is_err());
        assert!(Transcript::parse("t", "config no_such_setting = 1\n").is_err());
    }
}
