//! `chatd connect`: the terminal client.
//!
//! On a terminal it is an interactive client ([`tui`]); with stdin or
//! stdout redirected it passes lines through ([`plain`]), so it works in
//! pipes and scripts. It speaks only the documented protocol
//! (docs/PROTOCOL.md).

mod input;
mod link;
mod plain;
mod protocol;
mod session;
mod tls;
mod tui;
mod view;

use std::io::{self, IsTerminal};
use std::path::PathBuf;

use clap::Args;

/// Talk to a chatd server.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// Server address.
    #[arg(default_value = "127.0.0.1:9090", value_name = "HOST:PORT")]
    addr: String,
    /// Nickname to take on connecting (and after each reconnect).
    #[arg(long)]
    nick: Option<String>,
    /// Connect over TLS, checking the server's certificate against
    /// Mozilla's roots (and --ca).
    #[arg(long)]
    tls: bool,
    /// A PEM file of CA certificates to trust as well (a private CA).
    #[arg(long, value_name = "FILE", requires = "tls")]
    ca: Option<PathBuf>,
    /// Do not check the server's certificate at all (testing only; a
    /// warning is printed at every connection).
    #[arg(long, requires = "tls", conflicts_with = "ca")]
    insecure: bool,
}

pub(crate) fn run(args: ConnectArgs) -> anyhow::Result<()> {
    let connector = tls::Connector::new(&args.addr, args.tls, args.ca.as_deref(), args.insecure)?;
    if !io::stdin().is_terminal() || !io::stdout().is_terminal() {
        return plain::run(&args.addr, connector, args.nick.as_deref());
    }
    let link = link::Link::spawn(args.addr.clone(), connector);
    let app = tui::App::new(args.addr, args.nick, view::Theme::from_env());
    let mut terminal = ratatui::init();
    let result = app.run(&mut terminal, &link);
    ratatui::restore();
    result
}
