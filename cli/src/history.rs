//! `chatd history export`: a room's stored history on stdout.
//!
//! Reads the data directory with plain file reads and writes nothing, so it
//! works on a copy of a data directory and while the server runs (a record
//! being written at that moment is simply not shown yet).

use std::io::{self, Write};
use std::path::PathBuf;

use chatd_core::history::Record;
use chatd_core::reply::Reply;
use chatd_core::{NameError, RoomName};
use chatd_engine::persist::reader;
use chatd_engine::settings::{Settings, SettingsError};
use clap::{Args, Subcommand, ValueEnum};

/// Reading stored history.
#[derive(Debug, Subcommand)]
pub(crate) enum HistoryCommand {
    /// Print a room's stored history, oldest first, as JSON lines or as
    /// chat lines.
    Export(ExportArgs),
}

/// What to export and how.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The room, with or without its `#`.
    room: String,
    /// Only records from this time on: a UTC date (2026-11-18) or an RFC
    /// 3339 time (2026-11-18T09:30:00Z, 2026-11-18T10:30:00+01:00).
    #[arg(long, value_name = "DATE")]
    since: Option<String>,
    /// jsonl: each record's JSON as stored; text: `[#room YYYY-MM-DD
    /// HH:MM:SS] alice: hi` as `#history` shows it.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// The server's data directory [default: the config file's, else
    /// ./chat_logs].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The server's TOML config file, for its data directory.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// How records are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// One JSON object per line, exactly as stored (without the checksum).
    Jsonl,
    /// The native history entry of each record.
    Text,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    /// The room argument is not a room name.
    #[error("{text:?} is not a room name: {source}")]
    BadRoom {
        /// As given.
        text: String,
        /// Why not.
        source: NameError,
    },
    /// `--since` is neither a date nor an RFC 3339 time.
    #[error(
        "--since {text:?} is not a date: use YYYY-MM-DD (UTC) or an RFC 3339 time such as 2026-11-18T09:30:00Z"
    )]
    BadDate {
        /// As given.
        text: String,
    },
    /// `--since` is before 1970.
    #[error("--since {text:?} is before 1970")]
    DateBeforeEpoch {
        /// As given.
        text: String,
    },
    /// The config file could not be loaded.
    #[error(transparent)]
    Config(#[from] SettingsError),
    /// The data directory does not exist.
    #[error("no data directory at {}", dir.display())]
    NoDataDir {
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// The room has no stored history.
    #[error("unknown room #{room}: no history for it in {}", dir.display())]
    UnknownRoom {
        /// The room.
        room: RoomName,
        /// The data directory.
        dir: PathBuf,
    },
    /// The history could not be read.
    #[error("cannot read the history of #{room} in {}: {source}", dir.display())]
    Read {
        /// The room.
        room: RoomName,
        /// The data directory.
        dir: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// Standard output could not be written.
    #[error("cannot write the export: {0}")]
    Write(io::Error),
}

/// Runs `chatd history ...`.
pub(crate) fn run(command: HistoryCommand) -> Result<(), ExportError> {
    match command {
        HistoryCommand::Export(args) => export(&args, &mut io::stdout().lock()),
    }
}

/// Writes the export to `out`.
fn export(args: &ExportArgs, out: &mut impl Write) -> Result<(), ExportError> {
    let text = args.room.strip_prefix('#').unwrap_or(&args.room);
    let room = RoomName::parse(text).map_err(|source| ExportError::BadRoom {
        text: args.room.clone(),
        source,
    })?;
    let since_ms = args.since.as_deref().map(parse_since).transpose()?;
    let dir = match (&args.data_dir, &args.config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(config)) => Settings::load(config)?.server.data_dir,
        (None, None) => Settings::default().server.data_dir,
    };
    if !dir.is_dir() {
        return Err(ExportError::NoDataDir { dir });
    }
    let mut out = io::BufWriter::new(out);
    let mut write_error: Option<io::Error> = None;
    let result = reader::export(&dir, room.as_str(), since_ms, |record, json| {
        let written = match args.format {
            Format::Jsonl => writeln!(out, "{json}"),
            Format::Text => write_text(&mut out, record),
        };
        written.map_err(|error| {
            let stop = io::Error::new(error.kind(), "stopped: output failed");
            write_error = Some(error);
            stop
        })
    });
    if let Some(error) = write_error {
        return finish_write(Err(error));
    }
    match result {
        Ok(_) => finish_write(out.flush()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            Err(ExportError::UnknownRoom { room, dir })
        }
        Err(source) => Err(ExportError::Read { room, dir, source }),
    }
}

/// A closed pipe (`chatd history export general | head`) is not a failure.
fn finish_write(result: io::Result<()>) -> Result<(), ExportError> {
    match result {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => Err(ExportError::Write(error)),
        _ => Ok(()),
    }
}

/// One record as the native dialect shows a history entry.
fn write_text(out: &mut impl Write, record: &Record) -> io::Result<()> {
    out.write_all(&chatd_core::native::encode(&Reply::HistoryEntry(record)))
}

/// `--since`: a date (midnight UTC) or an RFC 3339 time, as Unix ms.
fn parse_since(text: &str) -> Result<u64, ExportError> {
    let bad = || ExportError::BadDate {
        text: text.to_owned(),
    };
    let timestamp = match text.parse::<jiff::Timestamp>() {
        Ok(timestamp) => timestamp,
        Err(_) => {
            let date: jiff::civil::Date = text.parse().map_err(|_| bad())?;
            jiff::tz::Offset::UTC
                .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
                .map_err(|_| bad())?
        }
    };
    u64::try_from(timestamp.as_millisecond()).map_err(|_| ExportError::DateBeforeEpoch {
        text: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_date_or_an_rfc3339_time() {
        assert_eq!(parse_since("1970-01-02").unwrap(), 86_400_000);
        assert_eq!(parse_since("2026-11-18").unwrap(), 1_794_960_000_000);
        assert_eq!(
            parse_since("2026-11-18T01:00:00+01:00").unwrap(),
            1_794_960_000_000
        );
        assert_eq!(
            parse_since("2026-11-18T00:00:01.5Z").unwrap(),
            1_794_960_001_500
        );
        assert!(matches!(
            parse_since("18/11/2026"),
            Err(ExportError::BadDate { .. })
        ));
        assert!(matches!(
            parse_since("2026-13-01"),
            Err(ExportError::BadDate { .. })
        ));
        assert!(matches!(
            parse_since("1969-12-31"),
            Err(ExportError::DateBeforeEpoch { .. })
        ));
    }
}
