//! Reading the server's lines as docs/PROTOCOL.md describes them, and
//! keeping track of who and where we are.
//!
//! Only the documented line shapes are used: the marker at the start of a
//! line, and the fixed sentences for welcome, nick changes and joins.

use std::borrow::Cow;
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
        // A history entry has the time after the nickname.
        let nick = nick.split(' ').next().unwrap_or(nick);
        return LineKind::Whisper {
            nick,
            outgoing: true,
            text,
        };
    }
    if let Some(rest) = line.strip_prefix("[whisper")
        && let Some((time, rest)) = rest.split_once("] ")
        && (time.is_empty() || time.starts_with(' '))
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

/// Takes the message id out of a chat line (` id=N` at the end of the
/// bracket, sent once `#ids on`): `[#general id=42] alice: hi` gives 42 and
/// `[#general] alice: hi`, the line as a server without ids would send it.
/// Room lines, history entries and whispers carry ids; any other line comes
/// back unchanged, without an id.
pub(crate) fn take_id(line: &str) -> (Option<u64>, Cow<'_, str>) {
    let Some(inner) = line.strip_prefix('[') else {
        return (None, Cow::Borrowed(line));
    };
    let Some(end) = inner.find("] ") else {
        return (None, Cow::Borrowed(line));
    };
    let tag = &inner[..end];
    if !(tag.starts_with('#') || tag.starts_with("whisper")) {
        return (None, Cow::Borrowed(line));
    }
    let Some((head, digits)) = tag.rsplit_once(" id=") else {
        return (None, Cow::Borrowed(line));
    };
    match digits.parse::<u64>() {
        Ok(id) if digits.bytes().all(|b| b.is_ascii_digit()) => {
            (Some(id), Cow::Owned(format!("[{head}{}", &inner[end..])))
        }
        _ => (None, Cow::Borrowed(line)),
    }
}

/// The bracket of a chat line: whose line it is and whether it is a history
/// entry (the bracket holds a time as well).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChatTag<'a> {
    /// The room, without `#`; `None` for a whisper.
    pub(crate) room: Option<&'a str>,
    /// A history entry, not a live line.
    pub(crate) history: bool,
}

/// The bracket of a room line or whisper (ids taken out): `[#rust]`,
/// `[#rust 2026-11-22 10:00:05]`, `[whisper]`, `[whisper to bob]`,
/// `[whisper 2026-11-22 10:00:05]`, `[whisper to bob 2026-11-22 10:00:05]`.
pub(crate) fn chat_tag(line: &str) -> Option<ChatTag<'_>> {
    let (tag, _) = line.strip_prefix('[')?.split_once("] ")?;
    let words = tag.split(' ').count();
    if let Some(room) = tag.strip_prefix('#') {
        let (room, history) = match room.split_once(' ') {
            Some((room, _)) => (room, true),
            None => (room, false),
        };
        return Some(ChatTag {
            room: Some(room),
            history,
        });
    }
    if tag == "whisper" || tag.starts_with("whisper ") {
        let live_words = if tag.starts_with("whisper to ") { 3 } else { 1 };
        return Some(ChatTag {
            room: None,
            history: words > live_words,
        });
    }
    None
}

/// The header of a history answer for a room: `+ history #ROOM N` gives the
/// room (without `#`) and N.
pub(crate) fn history_header(line: &str) -> Option<(&str, usize)> {
    let rest = line.strip_prefix("+ history #")?;
    let (room, count) = rest.split_once(' ')?;
    Some((room, count.parse().ok()?))
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
            classify("[whisper to bob 2026-11-22 10:00:05] ok"),
            LineKind::Whisper {
                nick: "bob",
                outgoing: true,
                text: "ok"
            }
        );
        assert_eq!(
            classify("[whisper 2026-11-22 10:00:05] bob: psst"),
            LineKind::Whisper {
                nick: "bob",
                outgoing: false,
                text: "psst"
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
    fn ids_come_out_of_every_chat_line_form() {
        for (with, without, id) in [
            (
                "[#general id=42] alice: hello",
                "[#general] alice: hello",
                42,
            ),
            (
                "[#general id=42] * alice waves",
                "[#general] * alice waves",
                42,
            ),
            (
                "[#general id=42] URGENT alice: fire",
                "[#general] URGENT alice: fire",
                42,
            ),
            ("[whisper id=43] bob: hi", "[whisper] bob: hi", 43),
            ("[whisper to bob id=43] hi", "[whisper to bob] hi", 43),
            (
                "[#general 2026-11-18 11:06:40 id=42] alice: hi ] id=7",
                "[#general 2026-11-18 11:06:40] alice: hi ] id=7",
                42,
            ),
            (
                "[whisper 2026-11-18 11:06:40 id=9] bob: hi",
                "[whisper 2026-11-18 11:06:40] bob: hi",
                9,
            ),
            (
                "[whisper to bob 2026-11-18 11:06:40 id=18446744073709551615] hi",
                "[whisper to bob 2026-11-18 11:06:40] hi",
                u64::MAX,
            ),
        ] {
            assert_eq!(take_id(with), (Some(id), Cow::Borrowed(without)), "{with}");
        }
        for unchanged in [
            "[#general] alice: id=3",
            "[#general id=] alice: hi",
            "[#general id=+4] alice: hi",
            "[#general id=99999999999999999999] alice: hi",
            "[other id=4] x",
            "* bob joined #general",
            "+ history #general 2",
            "[#general id=4]",
        ] {
            assert_eq!(take_id(unchanged), (None, Cow::Borrowed(unchanged)));
        }
        let tag = |room, history| Some(ChatTag { room, history });
        for (line, expected) in [
            ("[#rust] a: b", tag(Some("rust"), false)),
            ("[#rust 2026-11-22 10:00:05] a: b", tag(Some("rust"), true)),
            ("[whisper] a: b", tag(None, false)),
            ("[whisper to bob] b", tag(None, false)),
            ("[whisper 2026-11-22 10:00:05] a: b", tag(None, true)),
            ("[whisper to bob 2026-11-22 10:00:05] b", tag(None, true)),
            ("[whisperer] b", None),
            ("* x", None),
        ] {
            assert_eq!(chat_tag(line), expected, "{line}");
        }
        assert_eq!(history_header("+ history #rust 12"), Some(("rust", 12)));
        assert_eq!(history_header("+ history @bob 12"), None);
        assert_eq!(history_header("+ history #rust many"), None);
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
