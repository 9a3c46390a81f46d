//! Reading the server's lines as docs/PROTOCOL.md describes them, and
//! keeping track of who and where we are.
//!
//! Only the documented line shapes are used: the marker at the start of a
//! line, and the fixed sentences for welcome, nick changes and joins.

use std::collections::BTreeSet;

/// What a server line is, for colouring and for the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineKind<'a> {
    /// `[#room] nick: text`, `[#room] * nick action`, `[#room] URGENT ...`,
    /// or a history entry `[#room time] ...`.
    Room {
        /// The bracketed part, e.g. `#rust` or `#rust 2026-11-22 10:00:05`.
        tag: &'a str,
        /// The sender, when the line names one.
        nick: Option<&'a str>,
        /// Everything after the bracket.
        rest: &'a str,
        /// `URGENT` messages.
        urgent: bool,
    },
    /// `[whisper] nick: text` or `[whisper to nick] text`.
    Whisper {
        /// The other party.
        nick: &'a str,
        /// Whether we sent it.
        outgoing: bool,
        /// The text.
        text: &'a str,
    },
    /// `* ...`.
    Notice(&'a str),
    /// `+ ...`.
    Answer(&'a str),
    /// `! code: text`.
    Error {
        /// The stable code.
        code: &'a str,
        /// The sentence.
        text: &'a str,
    },
    /// Anything else (a newer server, say).
    Other(&'a str),
}

/// Classifies one line (without its LF).
pub(crate) fn classify(line: &str) -> LineKind<'_> {
    if let Some(rest) = line.strip_prefix("! ") {
        let (code, text) = rest.split_once(": ").unwrap_or((rest, ""));
        return LineKind::Error { code, text };
    }
    if let Some(rest) = line.strip_prefix("* ") {
        return LineKind::Notice(rest);
    }
    if let Some(rest) = line.strip_prefix("+ ") {
        return LineKind::Answer(rest);
    }
    if let Some(rest) = line.strip_prefix("[whisper to ")
        && let Some((nick, text)) = rest.split_once("] ")
    {
        return LineKind::Whisper {
            nick,
            outgoing: true,
            text,
        };
    }
    if let Some(rest) = line.strip_prefix("[whisper] ")
        && let Some((nick, text)) = rest.split_once(": ")
    {
        return LineKind::Whisper {
            nick,
            outgoing: false,
            text,
        };
    }
    if let Some(rest) = line.strip_prefix('[')
        && let Some((tag, rest)) = rest.split_once("] ")
        && tag.starts_with('#')
    {
        return room_line(tag, rest);
    }
    LineKind::Other(line)
}

fn room_line<'a>(tag: &'a str, rest: &'a str) -> LineKind<'a> {
    let (urgent, body) = match rest.strip_prefix("URGENT ") {
        Some(body) => (true, body),
        None => (false, rest),
    };
    let nick = match body.strip_prefix("* ") {
        Some(action) => action.split(' ').next(),
        None => body.split_once(": ").map(|(nick, _)| nick),
    };
    LineKind::Room {
        tag,
        nick,
        rest,
        urgent,
    }
}

/// Who we are, where we are, and whom we have seen (for completion).
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker {
    /// Our nickname.
    pub(crate) nick: Option<String>,
    /// Our room, without `#`.
    pub(crate) room: Option<String>,
    /// Nicknames seen lately, for Tab completion.
    pub(crate) nicks: BTreeSet<String>,
}

impl Tracker {
    /// Learns from one server line.
    pub(crate) fn observe(&mut self, line: &str) {
        match classify(line) {
            LineKind::Notice(text) => self.notice(text),
            LineKind::Room {
                nick: Some(nick), ..
            } => self.saw(nick),
            LineKind::Whisper { nick, .. } => self.saw(nick),
            LineKind::Answer(text) => {
                if let Some(list) = text.strip_prefix("who ").and_then(|t| t.split_once(": ")) {
                    for nick in list.1.split(' ') {
                        self.saw(nick.trim_start_matches('@'));
                    }
                }
            }
            _ => {}
        }
    }

    fn notice(&mut self, text: &str) {
        if let Some(rest) = text.strip_prefix("welcome, you are ") {
            if let Some((nick, rest)) = rest.split_once(" in #") {
                self.nick = Some(nick.to_owned());
                self.room = rest.split(';').next().map(str::to_owned);
            }
        } else if let Some(nick) = text.strip_prefix("you are now ") {
            self.nick = Some(nick.to_owned());
        } else if let Some(room) = text.strip_prefix("you joined #") {
            self.room = Some(room.to_owned());
        } else if let Some(rest) = text
            .strip_prefix("you created #")
            .or_else(|| text.strip_prefix("you created private room #"))
        {
            self.room = rest.split(';').next().map(str::to_owned);
        } else if let Some((nick, _)) = text.split_once(" joined #") {
            self.saw(nick);
        } else if let Some((old, new)) = text.split_once(" is now known as ") {
            self.nicks.remove(old);
            self.saw(new);
        } else if let Some((nick, _)) = text.split_once(" quit") {
            self.nicks.remove(nick);
        }
    }

    fn saw(&mut self, nick: &str) {
        if !nick.is_empty() && Some(nick) != self.nick.as_deref() {
            self.nicks.insert(nick.to_owned());
        }
    }

    /// The lines that put a fresh connection back where we were: our
    /// nickname (unless it was a guest name) and our room (unless #general).
    pub(crate) fn restore_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(nick) = &self.nick
            && !is_guest(nick)
        {
            lines.push(format!("#nick {nick}"));
        }
        if let Some(room) = &self.room
            && room != "general"
        {
            lines.push(format!("#join #{room}"));
        }
        lines
    }
}

fn is_guest(nick: &str) -> bool {
    nick.strip_prefix("guest")
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_documented_shape() {
        assert_eq!(
            classify("[#rust] bob: hi"),
            LineKind::Room {
                tag: "#rust",
                nick: Some("bob"),
                rest: "bob: hi",
                urgent: false
            }
        );
        assert_eq!(
            classify("[#rust] * bob waves"),
            LineKind::Room {
                tag: "#rust",
                nick: Some("bob"),
                rest: "* bob waves",
                urgent: false
            }
        );
        assert!(matches!(
            classify("[#ops] URGENT al: go"),
            LineKind::Room {
                urgent: true,
                nick: Some("al"),
                ..
            }
        ));
        assert!(matches!(
            classify("[#rust 2026-11-22 10:00:05] bob: old"),
            LineKind::Room {
                nick: Some("bob"),
                ..
            }
        ));
        assert_eq!(
            classify("[whisper] bob: psst"),
            LineKind::Whisper {
                nick: "bob",
                outgoing: false,
                text: "psst"
            }
        );
        assert_eq!(
            classify("[whisper to bob] ok"),
            LineKind::Whisper {
                nick: "bob",
                outgoing: true,
                text: "ok"
            }
        );
        assert_eq!(
            classify("! nick-taken: bob is taken"),
            LineKind::Error {
                code: "nick-taken",
                text: "bob is taken"
            }
        );
        assert_eq!(classify("+ pong x"), LineKind::Answer("pong x"));
        assert_eq!(
            classify("* bob joined #rust"),
            LineKind::Notice("bob joined #rust")
        );
        assert_eq!(classify("garbage"), LineKind::Other("garbage"));
    }

    #[test]
    fn tracker_follows_welcome_nick_and_room_and_restores_them() {
        let mut tracker = Tracker::default();
        tracker.observe("* welcome, you are guest3 in #general; type #help for commands");
        assert_eq!(tracker.restore_lines(), Vec::<String>::new());
        tracker.observe("* you are now alice");
        tracker.observe(
            "* you created private room #den; you own it; invite others with #invite NAME",
        );
        tracker.observe("* bob joined #den");
        tracker.observe("+ who #den 2: @alice carol");
        assert_eq!(tracker.nick.as_deref(), Some("alice"));
        assert_eq!(tracker.room.as_deref(), Some("den"));
        assert_eq!(tracker.restore_lines(), ["#nick alice", "#join #den"]);
        let seen: Vec<&str> = tracker.nicks.iter().map(String::as_str).collect();
        assert_eq!(seen, ["bob", "carol"]);
        tracker.observe("* bob quit: bye");
        assert!(!tracker.nicks.contains("bob"));
    }
}
