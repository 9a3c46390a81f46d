//! The interactive client: messages scroll above an input line that is
//! never overwritten, with a status line between them.

use std::collections::VecDeque;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::{DefaultTerminal, Frame};

use super::input::LineEditor;
use super::link::{Link, LinkEvent};
use super::session::Session;
use super::view::Theme;

/// Lines kept for scrolling back.
const SCROLLBACK: usize = 5_000;

/// Where the connection stands, for the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Connecting,
    Connected,
    Reconnecting(Duration),
}

pub(crate) struct App {
    addr: String,
    theme: Theme,
    lines: VecDeque<Line<'static>>,
    editor: LineEditor,
    /// Nick, room, ids and catching up after a reconnect.
    session: Session,
    state: State,
    /// Lines scrolled back from the bottom.
    scroll: usize,
    /// The user asked to leave; stop once the server has closed.
    quitting: bool,
    done: bool,
}

impl App {
    pub(crate) fn new(addr: String, wanted_nick: Option<String>, theme: Theme) -> Self {
        Self {
            addr,
            theme,
            lines: VecDeque::new(),
            editor: LineEditor::default(),
            session: Session::new(wanted_nick),
            state: State::Connecting,
            scroll: 0,
            quitting: false,
            done: false,
        }
    }

    pub(crate) fn run(mut self, terminal: &mut DefaultTerminal, link: &Link) -> anyhow::Result<()> {
        while !self.done {
            terminal.draw(|frame| self.draw(frame))?;
            if event::poll(Duration::from_millis(30))? {
                match event::read()? {
                    Event::Key(key) if key.kind != KeyEventKind::Release => self.key(key, link),
                    _ => {}
                }
            }
            while let Ok(event) = link.events.try_recv() {
                self.link_event(event, link);
            }
        }
        Ok(())
    }

    fn push(&mut self, line: Line<'static>) {
        self.lines.push_back(line);
        if self.lines.len() > SCROLLBACK {
            self.lines.pop_front();
        }
        if self.scroll > 0 {
            self.scroll += 1;
        }
    }

    pub(crate) fn link_event(&mut self, event: LinkEvent, link: &Link) {
        match event {
            LinkEvent::Connected => {
                self.state = State::Connected;
                let note = format!("connected to {}", self.addr);
                self.push(self.theme.local(&note));
                for line in self.session.connected() {
                    link.send(&line);
                }
            }
            LinkEvent::Line(line) => {
                let step = self.session.line(&line);
                for shown in step.show {
                    let styled = self.theme.server_line(&shown);
                    self.push(styled);
                }
                for line in step.send {
                    link.send(&line);
                }
            }
            LinkEvent::Lost { reason, retry_in } => {
                if self.quitting {
                    self.done = true;
                    return;
                }
                self.session.lost();
                self.state = State::Reconnecting(retry_in);
                let note = format!(
                    "{reason}; reconnecting in {}",
                    chatd_core::duration::format(retry_in)
                );
                self.push(self.theme.local(&note));
            }
            // On the screen, since stderr is the screen here.
            LinkEvent::Warning(warning) => self.push(self.theme.local(&warning)),
        }
    }

    pub(crate) fn key(&mut self, key: KeyEvent, link: &Link) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => self.leave(link),
            KeyCode::Char('d') if ctrl && self.editor.text().is_empty() => self.leave(link),
            KeyCode::Char('a') if ctrl => self.editor.home(),
            KeyCode::Char('e') if ctrl => self.editor.end(),
            KeyCode::Char('u') if ctrl => self.editor.kill_to_start(),
            KeyCode::Char('w') if ctrl => self.editor.kill_word(),
            KeyCode::Char(c) => self.editor.insert(c),
            KeyCode::Backspace => self.editor.backspace(),
            KeyCode::Delete => self.editor.delete(),
            KeyCode::Left => self.editor.left(),
            KeyCode::Right => self.editor.right(),
            KeyCode::Home => self.editor.home(),
            KeyCode::End => self.editor.end(),
            KeyCode::Up => self.editor.older(),
            KeyCode::Down => self.editor.newer(),
            KeyCode::Tab => self.editor.complete(&self.session.tracker.nicks),
            KeyCode::PageUp => self.scroll = (self.scroll + 10).min(self.lines.len()),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(10),
            KeyCode::Enter => self.submit(link),
            _ => {}
        }
    }

    fn submit(&mut self, link: &Link) {
        let Some(line) = self.editor.submit() else {
            return;
        };
        if self.state != State::Connected {
            let note = "not connected; the line was not sent".to_owned();
            self.push(self.theme.local(&note));
            return;
        }
        if line.trim_start().to_ascii_lowercase().starts_with("#quit") {
            self.quitting = true;
        }
        // Your own chat is not echoed by the server; show it as sent.
        if let Some(echo) = self.session.echo(&line) {
            let echoed = self.theme.server_line(&echo);
            self.push(echoed);
        }
        self.scroll = 0;
        for line in self.session.user_line(line) {
            link.send(&line);
        }
    }

    fn leave(&mut self, link: &Link) {
        if self.state == State::Connected && !self.quitting {
            self.quitting = true;
            link.send("#quit");
        } else {
            self.done = true;
        }
    }

    fn draw(&self, frame: &mut Frame<'_>) {
        let [messages, status, input] = Layout::vertical([
            Constraint::Min(1),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        self.draw_messages(frame, messages);
        frame.render_widget(
            Paragraph::new(self.status_text()).style(Style::new().add_modifier(Modifier::REVERSED)),
            status,
        );
        self.draw_input(frame, input);
    }

    fn status_text(&self) -> String {
        let state = match &self.state {
            State::Connecting => "connecting".to_owned(),
            State::Connected if self.session.catching_up() => "catching up".to_owned(),
            State::Connected => "connected".to_owned(),
            State::Reconnecting(wait) => {
                format!("reconnecting in {}", chatd_core::duration::format(*wait))
            }
        };
        let nick = self.session.tracker.nick.as_deref().unwrap_or("-");
        let room = self
            .session
            .tracker
            .room
            .as_deref()
            .map_or_else(|| "-".to_owned(), |r| format!("#{r}"));
        let scrolled = if self.scroll > 0 {
            format!(" | scrolled back {}", self.scroll)
        } else {
            String::new()
        };
        format!(" chatd {} | {nick} | {room} | {state}{scrolled}", self.addr)
    }

    /// The newest lines that fit, wrapped, bottom-aligned.
    fn draw_messages(&self, frame: &mut Frame<'_>, area: Rect) {
        let width = usize::from(area.width.max(1));
        let height = usize::from(area.height);
        let end = self.lines.len() - self.scroll.min(self.lines.len());
        let mut shown = Vec::new();
        let mut used = 0;
        for line in self.lines.range(..end).rev() {
            used += line.width().max(1).div_ceil(width);
            shown.push(line.clone());
            if used >= height {
                break;
            }
        }
        shown.reverse();
        let skip = used.saturating_sub(height);
        let paragraph = Paragraph::new(shown)
            .wrap(Wrap { trim: false })
            .scroll((skip as u16, 0));
        // Bottom-align when the lines do not fill the area.
        let top = area.y + area.height.saturating_sub(used.min(height) as u16);
        let target = Rect {
            y: top,
            height: area.bottom() - top,
            ..area
        };
        frame.render_widget(paragraph, target);
    }

    fn draw_input(&self, frame: &mut Frame<'_>, area: Rect) {
        let prompt = "> ";
        let text = self.editor.text();
        let cursor = self.editor.cursor();
        let room = usize::from(area.width)
            .saturating_sub(prompt.len() + 1)
            .max(1);
        // Scroll horizontally so the cursor stays visible.
        let first = cursor.saturating_sub(room);
        let visible: String = text.chars().skip(first).take(room + 1).collect();
        frame.render_widget(Paragraph::new(format!("{prompt}{visible}")), area);
        let x = area.x + (prompt.len() + cursor - first) as u16;
        frame.set_cursor_position(Position::new(x.min(area.right().saturating_sub(1)), area.y));
    }
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::KeyEvent;

    use super::*;

    fn screen(app: &App) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(60, 6)).expect("test terminal");
        terminal.draw(|frame| app.draw(frame)).expect("draw");
        let buffer = terminal.backend().buffer().clone();
        (0..6)
            .map(|y| {
                (0..60)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn messages_scroll_above_a_kept_input_line_and_status() {
        let link = Link::spawn("127.0.0.1:1".into(), crate::connect::tls::Connector::Plain);
        let mut app = App::new("127.0.0.1:9090".into(), None, Theme { color: false });
        app.link_event(LinkEvent::Connected, &link);
        app.link_event(
            LinkEvent::Line(
                "* welcome, you are guest1 in #general; type #help for commands".into(),
            ),
            &link,
        );
        app.link_event(LinkEvent::Line("* ids on".into()), &link);
        app.link_event(LinkEvent::Line("+ history #general 0".into()), &link);
        for c in "half typed".chars() {
            app.key(KeyEvent::from(KeyCode::Char(c)), &link);
        }
        for i in 0..5 {
            app.link_event(LinkEvent::Line(format!("[#general] bob: line {i}")), &link);
        }
        let rows = screen(&app);
        assert_eq!(rows[3], "[#general] bob: line 4");
        assert_eq!(
            rows[4],
            " chatd 127.0.0.1:9090 | guest1 | #general | connected"
        );
        assert_eq!(rows[5], "> half typed");
    }

    #[test]
    fn after_a_reconnect_the_missed_lines_are_shown_once_in_order() {
        let link = Link::spawn("127.0.0.1:1".into(), crate::connect::tls::Connector::Plain);
        let mut app = App::new("127.0.0.1:9090".into(), None, Theme { color: false });
        let welcome = "* welcome, you are guest1 in #general; type #help for commands";
        let feed = |app: &mut App, lines: &[&str]| {
            for line in lines {
                app.link_event(LinkEvent::Line((*line).into()), &link);
            }
        };
        app.link_event(LinkEvent::Connected, &link);
        feed(
            &mut app,
            &[
                welcome,
                "* ids on",
                "+ history #general 0",
                "[#general id=1] bob: one",
            ],
        );
        app.link_event(
            LinkEvent::Lost {
                reason: "gone".into(),
                retry_in: Duration::from_millis(500),
            },
            &link,
        );
        app.link_event(LinkEvent::Connected, &link);
        feed(&mut app, &[welcome, "* ids on"]);
        assert!(
            screen(&app)[4].ends_with("| catching up"),
            "{:?}",
            screen(&app)
        );
        feed(
            &mut app,
            &[
                "[#general id=3] bob: three",
                "+ history #general 2",
                "[#general 2026-11-18 11:06:40 id=2] bob: two",
                "[#general 2026-11-18 11:06:41 id=3] bob: three",
                // Asked again after a page, until one comes back empty.
                "+ history #general 0",
                "[#general id=1] bob: one",
            ],
        );
        let rows = screen(&app);
        assert_eq!(
            rows[1..4],
            [
                "commands",
                "[#general 2026-11-18 11:06:40] bob: two",
                "[#general] bob: three",
            ]
        );
        assert!(rows[4].ends_with("| connected"), "{rows:?}");
    }

    #[test]
    fn lost_connection_is_shown_and_typing_is_refused() {
        let link = Link::spawn("127.0.0.1:1".into(), crate::connect::tls::Connector::Plain);
        let mut app = App::new("127.0.0.1:9090".into(), None, Theme { color: false });
        app.link_event(
            LinkEvent::Lost {
                reason: "the server closed the connection".into(),
                retry_in: Duration::from_secs(2),
            },
            &link,
        );
        for c in "hi".chars() {
            app.key(KeyEvent::from(KeyCode::Char(c)), &link);
        }
        app.key(KeyEvent::from(KeyCode::Enter), &link);
        let rows = screen(&app);
        assert!(
            rows.iter().any(|r| r.contains("reconnecting in 2s")),
            "{rows:?}"
        );
        assert!(
            rows.iter()
                .any(|r| r == "-- not connected; the line was not sent"),
            "{rows:?}"
        );
    }
}
