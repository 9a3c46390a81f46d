//! `chatd`: the chat server's command line.
//!
//! - `chatd serve` runs the server (see `chatd serve --help`);
//! - `chatd connect` is the terminal client;
//! - `chatd hash-password` prints an operator entry for the config file;
//! - `chatd history export` prints a room's stored history.
//!
//! Any failure at start is one line on stderr and a non-zero exit.

mod connect;
mod crash;
mod hash_password;
mod history;
mod logging;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A fast, lean, multi-threaded chat server.
#[derive(Debug, Parser)]
#[command(name = "chatd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Chat: an interactive terminal client, or lines in and out in a pipe.
    Connect(connect::ConnectArgs),
    /// Hash an operator password (read from the terminal or stdin) and print
    /// the config entry.
    HashPassword(hash_password::HashPasswordArgs),
    /// Read stored history: `chatd history export ROOM` prints a room's
    /// history (read-only; works while the server runs).
    #[command(subcommand)]
    History(history::HistoryCommand),
    /// Measure: both backends and peers side by side, fan-out, idle
    /// connections, round trips, the core alone (loopback only; see
    /// BENCHMARKS.md).
    #[command(subcommand)]
    Bench(chatd_benches::commands::BenchCommand),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return clap_exit(&error),
    };
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Connect(args) => connect::run(args),
        Command::HashPassword(args) => hash_password::run(&args),
        Command::History(command) => history::run(command).map_err(Into::into),
        Command::Bench(command) => command.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chatd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Help and version go out whole; a usage error is one line.
fn clap_exit(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("chatd: {first} (see chatd --help)");
    ExitCode::from(2)
}
