//! Parsing native-dialect lines into [`Command`]s.
//!
//! A line starting with `#` is a command; `##` starts chat text whose first
//! character is a literal `#`; anything else is chat to the current room.
//! Command names ignore case. Arguments are separated by spaces or tabs;
//! the last text argument (message, reason, topic) takes the rest of the line.

use std::net::IpAddr;

use crate::command::{BanTarget, Command, HistoryArgs, HistoryTarget};
use crate::duration;
use crate::error::ErrorCode;
use crate::history_query::{Position, SearchTerms};
use crate::ids::{MessageId, NameError, Nick, RoomName};
use crate::native::help::{self, CommandSpec};

/// A line that is not a valid command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No command of that name.
    #[error("#{0} is not a command; type #help for the list")]
    UnknownCommand(String),
    /// Arguments missing, extra or malformed.
    #[error("usage: {}", .0.usage)]
    Usage(&'static CommandSpec),
    /// A nickname argument is not a valid nickname.
    #[error("invalid nickname {name:?}: {reason}")]
    BadNick {
        /// The text given.
        name: String,
        /// What is wrong with it.
        reason: NameError,
    },
    /// A room argument is not a valid room name.
    #[error("invalid room name {name:?}: {reason} (letters, digits, _ - . up to 32)")]
    BadRoom {
        /// The text given.
        name: String,
        /// What is wrong with it.
        reason: NameError,
    },
    /// A duration argument did not parse, or is longer than the maximum.
    #[error("{0}")]
    BadDuration(duration::DurationError),
    /// A well-formed argument outside its range (a duration of zero or
    /// below, a count below one).
    #[error("{0}")]
    OutOfRange(String),
    /// An argument that must be an IP address is not one.
    #[error("{0:?} is not an IP address")]
    BadIp(String),
}

impl ParseError {
    /// The stable error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownCommand(_) => ErrorCode::UnknownCommand,
            Self::BadDuration(duration::DurationError::TooLong(_)) | Self::OutOfRange(_) => {
                ErrorCode::BadArgument
            }
            Self::Usage(_) | Self::BadDuration(_) | Self::BadIp(_) => ErrorCode::BadSyntax,
            Self::BadNick { .. } => ErrorCode::BadNick,
            Self::BadRoom { .. } => ErrorCode::BadRoom,
        }
    }
}

/// Parses one line (without its ending; never empty).
pub fn parse(line: &str) -> Result<Command<'_>, ParseError> {
    if line.starts_with("##") {
        return Ok(Command::Say(&line[1..]));
    }
    let Some(body) = line.strip_prefix('#') else {
        return Ok(Command::Say(line));
    };
    let (name, args) = split_word(body);
    let Some(spec) = help::find(name) else {
        return Err(ParseError::UnknownCommand(name.to_owned()));
    };
    let usage = || ParseError::Usage(spec);
    let command = match spec.name {
        "help" => Command::Help(optional(args)),
        "nick" => Command::Nick(chosen_nick(single(args).ok_or_else(usage)?)?),
        "join" => {
            let (name, key) = split_word(args);
            if name.is_empty() || key.contains([' ', '\t']) {
                return Err(usage());
            }
            Command::Join {
                room: room(name)?,
                key: (!key.is_empty()).then_some(key),
            }
        }
        "create" => {
            let (name, rest) = split_word(args);
            if name.is_empty() {
                return Err(usage());
            }
            let private = match rest {
                "" => false,
                flag if flag.eq_ignore_ascii_case("private") => true,
                _ => return Err(usage()),
            };
            Command::Create {
                room: room(name)?,
                private,
            }
        }
        "invite" => Command::Invite(nick(single(args).ok_or_else(usage)?)?),
        "leave" => none(args, Command::Leave).ok_or_else(usage)?,
        "rooms" | "who" => {
            let page = match single(args) {
                None if trimmed(args).is_empty() => None,
                None => return Err(usage()),
                Some(page) => Some(positive_count(page).map_err(|error| match error {
                    ParseError::Usage(_) => usage(),
                    other => other,
                })?),
            };
            if spec.name == "who" {
                Command::Who(page)
            } else {
                Command::Rooms(page)
            }
        }
        "msg" => {
            let (to, text) = split_word(args);
            if to.is_empty() || text.is_empty() {
                return Err(usage());
            }
            Command::Msg {
                to: nick(to)?,
                text,
            }
        }
        "me" => Command::Me(required(args).ok_or_else(usage)?),
        "topic" => Command::Topic(optional(args)),
        "history" => Command::History(parse_history(args).map_err(|error| match error {
            ParseError::Usage(_) => usage(),
            other => other,
        })?),
        "search" => {
            let text = trimmed(args);
            let (text, room) = match text.rsplit_once([' ', '\t']) {
                Some((before, name)) if name.starts_with('#') => {
                    match before
                        .trim_end_matches([' ', '\t'])
                        .rsplit_once([' ', '\t'])
                    {
                        Some((words, word)) if word.eq_ignore_ascii_case("in") => {
                            (words, Some(room(name)?))
                        }
                        _ => (text, None),
                    }
                }
                _ => (text, None),
            };
            let terms = SearchTerms::parse(text).ok_or_else(usage)?;
            Command::Search { terms, room }
        }
        "ack" | "ids" => {
            let on = match single(args) {
                Some(flag) if flag.eq_ignore_ascii_case("on") => true,
                Some(flag) if flag.eq_ignore_ascii_case("off") => false,
                _ => return Err(usage()),
            };
            if spec.name == "ack" {
                Command::Ack(on)
            } else {
                Command::Ids(on)
            }
        }
        "urgent" => Command::Urgent(required(args).ok_or_else(usage)?),
        "ping" => Command::Ping(optional(args)),
        "pong" => Command::Pong,
        "oper" => {
            let (name, password) = split_word(args);
            if name.is_empty() || password.is_empty() {
                return Err(usage());
            }
            Command::Oper { name, password }
        }
        "kick" => {
            let (target, reason) = split_word(args);
            if target.is_empty() {
                return Err(usage());
            }
            Command::Kick {
                target: nick(target)?,
                reason: optional(reason),
            }
        }
        "ban" => parse_ban(args).map_err(|error| match error {
            ParseError::Usage(_) => usage(),
            other => other,
        })?,
        "unban" => Command::Unban(ip(single(args).ok_or_else(usage)?)?),
        "mute" => {
            let (target, rest) = split_word(args);
            let (length, extra) = split_word(rest);
            if target.is_empty() || length.is_empty() || !extra.is_empty() {
                return Err(usage());
            }
            Command::Mute {
                target: nick(target)?,
                duration: positive_duration(length)?,
            }
        }
        "unmute" => Command::Unmute(nick(single(args).ok_or_else(usage)?)?),
        "quit" => Command::Quit(optional(args)),
        // Passwords are one word each: `#password OLD NEW` could not
        // tell where a spaced one ends.
        "register" => Command::Register(single(args).ok_or_else(usage)?),
        "login" => {
            let (name, rest) = split_word(args);
            let password = single(rest).ok_or_else(usage)?;
            Command::Login {
                name: nick(name)?,
                password,
            }
        }
        "logout" => none(args, Command::Logout).ok_or_else(usage)?,
        "password" => {
            let (old, rest) = split_word(args);
            let new = single(rest).ok_or_else(usage)?;
            Command::ChangePassword { old, new }
        }
        "unregister" => Command::Unregister(single(args).ok_or_else(usage)?),
        "whois" => Command::Whois(nick(single(args).ok_or_else(usage)?)?),
        "oper-grant" | "oper-revoke" => Command::OperatorAccount {
            name: nick(single(args).ok_or_else(usage)?)?,
            operator: spec.name == "oper-grant",
        },
        other => {
            debug_assert!(false, "command {other} is in the table but not parsed");
            return Err(ParseError::UnknownCommand(other.to_owned()));
        }
    };
    Ok(command)
}

/// `[#ROOM|@NAME] [before ID|since ID|around ID] [N]`, each part optional
/// but in this order.
fn parse_history(args: &str) -> Result<HistoryArgs, ParseError> {
    let usage = || ParseError::Usage(&help::COMMANDS[0]);
    let mut words = args.split([' ', '\t']).filter(|w| !w.is_empty()).peekable();
    let target = match words.peek() {
        Some(word) if word.starts_with('#') => {
            let target = HistoryTarget::Room(room(word)?);
            words.next();
            Some(target)
        }
        Some(word) if word.starts_with('@') => {
            let target = HistoryTarget::Whispers(nick(&word[1..])?);
            words.next();
            Some(target)
        }
        _ => None,
    };
    let mut position = Position::Latest;
    if let Some(word) = words.peek() {
        let make: Option<fn(MessageId) -> Position> = match word.to_ascii_lowercase().as_str() {
            "before" => Some(Position::Before),
            "since" => Some(Position::Since),
            "around" => Some(Position::Around),
            _ => None,
        };
        if let Some(make) = make {
            words.next();
            let id = words.next().ok_or_else(usage)?;
            position = make(message_id(id)?);
        }
    }
    let count = match words.next() {
        Some(count) => Some(positive_count(count)?),
        None => None,
    };
    if words.next().is_some() {
        return Err(usage());
    }
    Ok(HistoryArgs {
        target,
        position,
        count,
    })
}

/// A message id as `#ids on` shows it.
fn message_id(text: &str) -> Result<MessageId, ParseError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Usage(&help::COMMANDS[0]));
    }
    text.parse::<u64>()
        .map(MessageId::new)
        .map_err(|_| ParseError::OutOfRange(format!("{text}: no message has such an id")))
}

fn parse_ban(args: &str) -> Result<Command<'_>, ParseError> {
    let (target, rest) = split_word(args);
    if target.is_empty() {
        return Err(ParseError::Usage(&help::COMMANDS[0]));
    }
    let target = match target.parse::<IpAddr>() {
        Ok(address) => BanTarget::Ip(address.to_canonical()),
        Err(_) => BanTarget::Nick(nick(target)?),
    };
    // The second word is a duration if it starts like a number; otherwise
    // it starts the reason ("#ban bob spamming links"). A word that starts
    // like a number but is no valid duration ("-1s", "0s", "2x") is an
    // error: read as a reason it would silently make the ban permanent.
    let (word, after) = split_word(rest);
    let (duration, reason) = if starts_like_a_number(word) {
        (Some(positive_duration(word)?), after)
    } else {
        (None, rest)
    };
    Ok(Command::Ban {
        target,
        duration,
        reason: optional(reason),
    })
}

/// Splits off the first word; the rest has its leading blanks removed.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start_matches([' ', '\t']);
    match text.find([' ', '\t']) {
        Some(end) => (&text[..end], text[end..].trim_start_matches([' ', '\t'])),
        None => (text, ""),
    }
}

fn trimmed(text: &str) -> &str {
    text.trim_matches([' ', '\t'])
}

fn optional(text: &str) -> Option<&str> {
    Some(trimmed(text)).filter(|t| !t.is_empty())
}

fn required(text: &str) -> Option<&str> {
    optional(text)
}

fn single(text: &str) -> Option<&str> {
    let (word, rest) = split_word(text);
    (!word.is_empty() && trimmed(rest).is_empty()).then_some(word)
}

fn none<'a>(text: &str, command: Command<'a>) -> Option<Command<'a>> {
    trimmed(text).is_empty().then_some(command)
}

fn nick(text: &str) -> Result<Nick, ParseError> {
    Nick::parse(text).map_err(|reason| ParseError::BadNick {
        name: text.to_owned(),
        reason,
    })
}

fn chosen_nick(text: &str) -> Result<Nick, ParseError> {
    Nick::parse_chosen(text).map_err(|reason| ParseError::BadNick {
        name: text.to_owned(),
        reason,
    })
}

fn room(text: &str) -> Result<RoomName, ParseError> {
    let bare = text.strip_prefix('#').unwrap_or(text);
    RoomName::parse(bare).map_err(|reason| ParseError::BadRoom {
        name: text.to_owned(),
        reason,
    })
}

/// An address as bans and limits see it: IPv4-mapped IPv6 addresses
/// (`::ffff:127.0.0.2`) are the IPv4 address they carry.
fn ip(text: &str) -> Result<IpAddr, ParseError> {
    text.parse::<IpAddr>()
        .map(|address| address.to_canonical())
        .map_err(|_| ParseError::BadIp(text.to_owned()))
}

/// Whether a word reads as an attempt at a number: a digit, or a sign or
/// point before a digit.
fn starts_like_a_number(word: &str) -> bool {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) if first.is_ascii_digit() => true,
        Some('-' | '+' | '.') => chars.next().is_some_and(|c| c.is_ascii_digit() || c == '.'),
        _ => false,
    }
}

/// A duration for a ban or a mute: longer than zero and at most
/// [`duration::MAX`].
fn positive_duration(text: &str) -> Result<std::time::Duration, ParseError> {
    if text.starts_with('-') {
        return Err(ParseError::OutOfRange(format!(
            "{text:?}: a duration cannot be negative"
        )));
    }
    let length = duration::parse(text).map_err(ParseError::BadDuration)?;
    if length.is_zero() {
        return Err(ParseError::OutOfRange(format!(
            "{text:?}: a duration must be longer than zero"
        )));
    }
    Ok(length)
}

/// A count of at least one. Counts beyond `usize` are clamped to its
/// maximum (the server clamps again to what it keeps); words that are
/// not numbers are a usage error.
fn positive_count(text: &str) -> Result<usize, ParseError> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    if let Some(negative) = text.strip_prefix('-')
        && !negative.is_empty()
        && negative.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ParseError::OutOfRange(format!(
            "{text}: a count must be at least 1"
        )));
    }
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Usage(&help::COMMANDS[0]));
    }
    match digits.parse::<usize>() {
        Ok(0) => Err(ParseError::OutOfRange(format!(
            "{text}: a count must be at least 1"
        ))),
        Ok(count) => Ok(count),
        // All digits, so the only failure is overflow.
        Err(_) => Ok(usize::MAX),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn plain_and_double_hash_lines_are_chat() {
        assert_eq!(parse("hello"), Ok(Command::Say("hello")));
        assert_eq!(parse("##tag"), Ok(Command::Say("#tag")));
    }

    #[test]
    fn command_names_ignore_case_and_w_is_msg() {
        let expected = Command::Msg {
            to: Nick::parse("bob").unwrap(),
            text: "hi  there",
        };
        assert_eq!(parse("#MSG bob hi  there"), Ok(expected.clone()));
        assert_eq!(parse("#w\tbob hi  there"), Ok(expected));
    }

    #[test]
    fn join_accepts_a_leading_hash_and_folds_case() {
        assert_eq!(
            parse("#join #Rust"),
            Ok(Command::Join {
                room: RoomName::parse("rust").unwrap(),
                key: None
            })
        );
    }

    #[test]
    fn ban_reads_an_optional_duration_then_a_reason() {
        assert_eq!(
            parse("#ban 10.0.0.1 1h spam"),
            Ok(Command::Ban {
                target: BanTarget::Ip("10.0.0.1".parse().unwrap()),
                duration: Some(Duration::from_secs(3600)),
                reason: Some("spam"),
            })
        );
        assert_eq!(
            parse("#ban bob spamming links"),
            Ok(Command::Ban {
                target: BanTarget::Nick(Nick::parse("bob").unwrap()),
                duration: None,
                reason: Some("spamming links"),
            })
        );
    }

    #[test]
    fn ban_durations_out_of_range_are_errors_never_permanent_bans() {
        for word in [
            "-1s",
            "0s",
            "0",
            "2x",
            "18446744073709551615",
            "3651d",
            "-5",
            ".5x",
        ] {
            let line = format!("#ban 1.2.3.4 {word} reason");
            let error = parse(&line).expect_err(&line);
            assert!(
                matches!(error.code(), ErrorCode::BadArgument | ErrorCode::BadSyntax),
                "{line}: {error:?}"
            );
        }
        assert_eq!(
            parse("#ban 1.2.3.4 18446744073709551615")
                .unwrap_err()
                .code(),
            ErrorCode::BadArgument
        );
        assert_eq!(
            parse("#ban bob 2w"),
            Ok(Command::Ban {
                target: BanTarget::Nick(Nick::parse("bob").unwrap()),
                duration: Some(Duration::from_secs(14 * 86_400)),
                reason: None,
            })
        );
    }

    #[test]
    fn mute_durations_must_be_positive_and_bounded() {
        for word in ["0s", "-1m", "99999999999999999999d", "3651d"] {
            let line = format!("#mute bob {word}");
            assert_eq!(
                parse(&line).unwrap_err().code(),
                ErrorCode::BadArgument,
                "{line}"
            );
        }
    }

    #[test]
    fn history_counts_are_clamped_not_refused_when_huge() {
        assert_eq!(
            parse("#history 99999999999999999999999999"),
            Ok(Command::History(HistoryArgs {
                target: None,
                position: Position::Latest,
                count: Some(usize::MAX)
            }))
        );
        assert_eq!(
            parse("#history -3").unwrap_err().code(),
            ErrorCode::BadArgument
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4_address() {
        assert_eq!(
            parse("#unban ::ffff:127.0.0.2"),
            Ok(Command::Unban("127.0.0.2".parse().unwrap()))
        );
        assert_eq!(
            parse("#ban ::ffff:10.0.0.1"),
            Ok(Command::Ban {
                target: BanTarget::Ip("10.0.0.1".parse().unwrap()),
                duration: None,
                reason: None,
            })
        );
    }

    #[test]
    fn bad_arguments_name_the_usage() {
        assert_eq!(
            parse("#msg bob").unwrap_err().to_string(),
            "usage: #msg NAME TEXT"
        );
        assert_eq!(
            parse("#ban").unwrap_err().to_string(),
            "usage: #ban NAME|IP [DURATION] [REASON]"
        );
        assert_eq!(
            parse("#who extra").unwrap_err().code(),
            ErrorCode::BadSyntax
        );
        assert_eq!(parse("#who 2"), Ok(Command::Who(Some(2))));
        assert_eq!(parse("#rooms"), Ok(Command::Rooms(None)));
        assert_eq!(
            parse("#history 0").unwrap_err().code(),
            ErrorCode::BadArgument
        );
        assert_eq!(
            parse("#history many").unwrap_err().code(),
            ErrorCode::BadSyntax
        );
        assert_eq!(
            parse("#mute bob soon").unwrap_err().code(),
            ErrorCode::BadSyntax
        );
        assert_eq!(
            parse("#nick 9lives").unwrap_err().code(),
            ErrorCode::BadNick
        );
        assert_eq!(
            parse("#join bad/room").unwrap_err().code(),
            ErrorCode::BadRoom
        );
        assert_eq!(
            parse("#dance").unwrap_err().code(),
            ErrorCode::UnknownCommand
        );
    }
}
