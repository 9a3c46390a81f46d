//! How lines look: colours for rooms, nicknames (a stable colour per nick),
//! whispers, notices and errors. With `NO_COLOR` set, only bold, dim and
//! italic remain. The palette avoids yellow, white and black so it reads on
//! light and dark terminals alike.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use super::protocol::{LineKind, classify};

const NICK_COLORS: [Color; 5] = [
    Color::Blue,
    Color::Magenta,
    Color::Cyan,
    Color::Green,
    Color::Red,
];

/// Colour choices.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Theme {
    /// Whether colours are used at all.
    pub(crate) color: bool,
}

impl Theme {
    /// Colours unless `NO_COLOR` is set to anything non-empty.
    pub(crate) fn from_env() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self { color: !no_color }
    }

    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    /// A stable colour for a nickname.
    pub(crate) fn nick(self, nick: &str) -> Style {
        let hash = nick
            .to_ascii_lowercase()
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        self.fg(NICK_COLORS[hash as usize % NICK_COLORS.len()])
            .add_modifier(Modifier::BOLD)
    }

    /// A server line, styled by what it is.
    pub(crate) fn server_line(self, line: &str) -> Line<'static> {
        match classify(line) {
            LineKind::Room {
                tag,
                nick,
                rest,
                urgent,
            } => {
                let mut spans = vec![Span::styled(format!("[{tag}] "), self.fg(Color::Cyan))];
                let body = if urgent {
                    spans.push(Span::styled(
                        "URGENT ",
                        self.fg(Color::Red).add_modifier(Modifier::BOLD),
                    ));
                    rest.trim_start_matches("URGENT ")
                } else {
                    rest
                };
                match nick {
                    Some(nick) if body.starts_with("* ") => {
                        spans.push(Span::styled(
                            "* ",
                            Style::new().add_modifier(Modifier::ITALIC),
                        ));
                        spans.push(Span::styled(nick.to_owned(), self.nick(nick)));
                        spans.push(Span::styled(
                            body[2 + nick.len()..].to_owned(),
                            Style::new().add_modifier(Modifier::ITALIC),
                        ));
                    }
                    Some(nick) => {
                        spans.push(Span::styled(nick.to_owned(), self.nick(nick)));
                        spans.push(Span::raw(body[nick.len()..].to_owned()));
                    }
                    None => spans.push(Span::raw(body.to_owned())),
                }
                Line::from(spans)
            }
            LineKind::Whisper {
                nick,
                outgoing,
                text,
            } => {
                // The bracket as sent: a history entry's holds its time.
                let tag = line
                    .split_once("] ")
                    .map_or_else(String::new, |(tag, _)| format!("{tag}] "));
                let mut spans = vec![Span::styled(
                    tag,
                    self.fg(Color::Magenta).add_modifier(Modifier::ITALIC),
                )];
                if !outgoing {
                    spans.push(Span::styled(nick.to_owned(), self.nick(nick)));
                    spans.push(Span::raw(": "));
                }
                spans.push(Span::styled(
                    text.to_owned(),
                    Style::new().add_modifier(Modifier::ITALIC),
                ));
                Line::from(spans)
            }
            LineKind::Notice(_) => {
                Line::styled(line.to_owned(), Style::new().add_modifier(Modifier::DIM))
            }
            LineKind::Error { .. } => Line::styled(
                line.to_owned(),
                self.fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
            LineKind::Answer(_) | LineKind::Other(_) => Line::raw(line.to_owned()),
        }
    }

    /// A note from the client itself (connection state), set apart.
    pub(crate) fn local(self, text: &str) -> Line<'static> {
        Line::styled(
            format!("-- {text}"),
            self.fg(Color::Blue).add_modifier(Modifier::ITALIC),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(line: &Line<'_>) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    #[test]
    fn styling_keeps_the_text_and_colours_nicks_stably() {
        let theme = Theme { color: true };
        for raw in [
            "[#rust] bob: hi",
            "[#rust] * bob waves",
            "[#ops] URGENT al: go",
            "[whisper] bob: psst",
            "[whisper to bob] ok",
            "[whisper 2026-11-22 10:00:05] bob: psst",
            "[whisper to bob 2026-11-22 10:00:05] ok",
            "! muted: no",
            "* x joined #y",
        ] {
            assert_eq!(text(&theme.server_line(raw)), raw);
        }
        assert_eq!(theme.nick("Bob"), theme.nick("bob"));
        let line = theme.server_line("[#rust] bob: hi");
        assert_eq!(line.spans[1].style.fg, theme.nick("bob").fg);
    }

    #[test]
    fn no_color_drops_colours_but_keeps_emphasis() {
        let theme = Theme { color: false };
        let line = theme.server_line("! nick-taken: bob is taken");
        assert_eq!(line.style.fg, None);
        assert!(line.style.add_modifier.contains(Modifier::BOLD));
        assert_eq!(theme.nick("bob").fg, None);
    }
}
