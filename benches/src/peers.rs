//! Peers: other servers run on the same workload in the same comparison,
//! described in a TOML file (`benches/peers.toml`).
//!
//! ```toml
//! [[peer]]
//! name = "redis"
//! protocol = "redis"              # or "lines"
//! start = ["redis-server", "--port", "{port}", "--save", ""]
//! install = "apt-get install redis-server"
//! # protocol = "lines" also needs: hello, join, say (see fanout::LineTemplates)
//! # and settle (how long to wait after joining, e.g. "1s"); registered
//! # (optional) is text of the line to wait for between hello and join.
//! ```
//!
//! `{port}` in `start` is a free loopback port chosen for the run and
//! `{chatd}` the chatd binary. A server that takes its port only from a
//! config file gets `config`: its text, with `{port}` and `{dir}` filled
//! in, is written to a scratch directory for the run, and `{config}` in
//! `start` is that file (`{dir}` the directory, for pid files and logs).

use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::fanout::{LineTemplates, Peer};
use crate::server::ServerProcess;

/// The peers file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersFile {
    #[serde(default)]
    peer: Vec<PeerSpec>,
}

/// One peer server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSpec {
    /// Its name in the table.
    pub name: String,
    /// `redis` or `lines`.
    pub protocol: String,
    /// Its command line.
    pub start: Vec<String>,
    /// How to install it, shown when it is missing.
    #[serde(default)]
    pub install: Option<String>,
    /// Line protocol: first line(s).
    #[serde(default)]
    pub hello: String,
    /// Line protocol: wait for a line containing this after `hello`
    /// before joining.
    #[serde(default)]
    pub registered: Option<String>,
    /// Line protocol: join a room.
    #[serde(default)]
    pub join: String,
    /// Line protocol: say a payload.
    #[serde(default)]
    pub say: String,
    /// Line protocol: wait after joining, e.g. "1s".
    #[serde(default)]
    pub settle: Option<String>,
    /// A config file to write for each start (`{port}`, `{dir}` filled in).
    #[serde(default)]
    pub config: Option<String>,
}

impl PeerSpec {
    /// How the load generator speaks to it.
    pub fn protocol(&self) -> anyhow::Result<Peer> {
        match self.protocol.as_str() {
            "redis" => Ok(Peer::Redis),
            "lines" => {
                if self.join.is_empty() || self.say.is_empty() {
                    bail!("peer {}: a line protocol needs join and say", self.name);
                }
                let settle = match &self.settle {
                    Some(text) => chatd_core::duration::parse(text)
                        .map_err(|e| anyhow::anyhow!("peer {}: settle: {e}", self.name))?,
                    None => std::time::Duration::from_secs(1),
                };
                Ok(Peer::Lines(LineTemplates {
                    hello: self.hello.clone(),
                    registered: self.registered.clone(),
                    join: self.join.clone(),
                    say: self.say.clone(),
                    settle,
                }))
            }
            other => bail!(
                "peer {}: unknown protocol {other:?} (redis or lines)",
                self.name
            ),
        }
    }

    /// Starts it on a free loopback port.
    pub fn start(&self, chatd: &Path) -> anyhow::Result<ServerProcess> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!(
            "chatd-peer-{}-{}-{port}",
            self.name,
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot make {}", dir.display()))?;
        let fill = |text: &str| {
            text.replace("{port}", &port.to_string())
                .replace("{dir}", &dir.display().to_string())
                .replace("{chatd}", &chatd.display().to_string())
        };
        let config = dir.join(format!("{}.conf", self.name));
        if let Some(text) = &self.config {
            std::fs::write(&config, fill(text))
                .with_context(|| format!("cannot write {}", config.display()))?;
        }
        let argv: Vec<String> = self
            .start
            .iter()
            .map(|arg| fill(arg).replace("{config}", &config.display().to_string()))
            .collect();
        ServerProcess::start_peer(&argv, SocketAddr::from(([127, 0, 0, 1], port)), dir)
    }

    /// Why it cannot run here, if its program is missing.
    pub fn missing(&self, chatd: &Path) -> Option<String> {
        let program = self
            .start
            .first()?
            .replace("{chatd}", &chatd.display().to_string());
        if Path::new(&program).is_file() || on_path(&program) {
            return None;
        }
        Some(match &self.install {
            Some(install) => format!("{program} not found (install: {install})"),
            None => format!("{program} not found"),
        })
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Reads a peers file.
pub fn load(path: &Path) -> anyhow::Result<Vec<PeerSpec>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: PeersFile =
        toml::from_str(&text).with_context(|| format!("invalid peers file {}", path.display()))?;
    for peer in &file.peer {
        peer.protocol()?;
    }
    Ok(file.peer)
}
