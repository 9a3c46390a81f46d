//! What the client does with the server's lines across connections, the
//! same for the terminal UI and the plain mode: turning message ids on,
//! putting a new connection back where the old one was, and catching up on
//! what was said while it was down, showing every message exactly once.
//!
//! It is pure: the front ends feed it what happens (a connection is up, a
//! line arrived, the connection is gone, the user typed a line) and do what
//! it answers (show these lines, send those).
//!
//! Message ids are one server-wide sequence that never goes back, not even
//! across a crash (docs/HISTORY.md, "Message ids"), and a connection gets
//! its room's messages in id order. So after a reconnect, everything said in
//! our room since the last id we saw there is exactly what we missed:
//! `#history #ROOM since LAST 100`, again from the newest id of each page
//! until a page comes back empty (not merely short: a server may answer
//! fewer per page than asked, its `history_page`). Lines that arrive live meanwhile are
//! merged in by id, and an id already shown is never shown again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::protocol::{LineKind, Tracker, chat_tag, classify, history_header, take_id};

/// Entries asked for per catch-up page (the server's default `history_page`).
pub(crate) const CATCH_UP_PAGE: usize = 100;
/// Ids remembered for spotting a message shown already.
const SEEN_WINDOW: usize = 4_096;
/// Own lines remembered (the terminal UI shows them as sent; the server
/// does not send them back, but a catch-up's history does).
const ECHOES_KEPT: usize = 256;

/// What to do after one event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// Lines to show, in order, without their ids.
    pub(crate) show: Vec<String>,
    /// Lines to send to the server, in order.
    pub(crate) send: Vec<String>,
}

/// How far the answer to one of our `#history` requests has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Waiting for `+ history #ROOM N`.
    Header,
    /// `left` of the `count` entries announced are still to come.
    Entries { left: usize, count: usize },
}

/// Where the connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// No connection.
    Down,
    /// `#ids on` sent; a catch-up of `room` after the id `since` follows.
    Handshake { catch_up: Option<(String, u64)> },
    /// Our `#history #ROOM 1` (what was last said in our room when we
    /// know no id at all) is being answered; nothing of it is shown.
    Baseline { room: String, answer: Answer },
    /// Our `#history #ROOM since ID` pages are being answered. Entries and
    /// live lines of the room wait in `pending` (by id) until a page is
    /// complete, then everything up to its newest id is shown in order.
    CatchUp {
        room: String,
        answer: Answer,
        /// The id the page being answered starts after.
        page_since: u64,
        /// The newest id asked for or received so far.
        newest: u64,
        pending: BTreeMap<u64, String>,
    },
    /// Lines pass.
    Live,
}

/// One own chat line the terminal UI showed as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Echo {
    room: String,
    nick: String,
    text: String,
}

/// The client's state across connections.
#[derive(Debug)]
pub(crate) struct Session {
    /// Who and where we are.
    pub(crate) tracker: Tracker,
    /// `--nick`, sent on the first connection.
    wanted_nick: Option<String>,
    /// A connection has been up before: the next one restores and catches up.
    connected_before: bool,
    phase: Phase,
    /// The newest id seen on any line.
    newest: Option<u64>,
    /// Per room (without `#`), the newest id seen there (or, after joining
    /// it, the newest id seen anywhere by then).
    last: BTreeMap<String, u64>,
    /// Ids shown lately; ids at or below `forgotten` count as shown.
    seen: BTreeSet<u64>,
    forgotten: u64,
    /// The user's lines, held while a connection is being set up and
    /// caught up (so every answer until then is ours).
    held: VecDeque<String>,
    echoes: VecDeque<Echo>,
}

impl Session {
    /// A session that takes `wanted_nick` on its first connection.
    pub(crate) fn new(wanted_nick: Option<String>) -> Self {
        Self {
            tracker: Tracker::default(),
            wanted_nick,
            connected_before: false,
            phase: Phase::Down,
            newest: None,
            last: BTreeMap::new(),
            seen: BTreeSet::new(),
            forgotten: 0,
            held: VecDeque::new(),
            echoes: VecDeque::new(),
        }
    }

    /// How many typed lines wait for the connection to be ready.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// Whether a new connection is still being set up or caught up.
    pub(crate) fn catching_up(&self) -> bool {
        !matches!(self.phase, Phase::Live | Phase::Down)
    }

    /// The id after which a catch-up of `room` starts, if we know one.
    fn since(&self, room: &str) -> Option<u64> {
        self.last.get(room).copied().or(self.newest)
    }

    /// A connection is up: the lines to send first. `#ids on` comes last,
    /// so the answers to the others come before its `* ids on`, and after
    /// it only the answer to our `#history` request.
    pub(crate) fn connected(&mut self) -> Vec<String> {
        let (mut send, catch_up) = if self.connected_before {
            let catch_up = self
                .tracker
                .room
                .clone()
                .and_then(|room| self.since(&room).map(|since| (room, since)));
            (self.tracker.restore_lines(), catch_up)
        } else {
            let nick = self.wanted_nick.iter().map(|nick| format!("#nick {nick}"));
            (nick.collect(), None)
        };
        send.push("#ids on".to_owned());
        self.connected_before = true;
        self.phase = Phase::Handshake { catch_up };
        send
    }

    /// The connection is gone. What was being caught up is dropped (the
    /// next connection asks again from the same id).
    pub(crate) fn lost(&mut self) {
        self.phase = Phase::Down;
    }

    /// A line the user typed: what to send now (nothing while a connection
    /// is being caught up or is down; it is sent once the catch-up is over).
    pub(crate) fn user_line(&mut self, line: String) -> Vec<String> {
        if self.phase == Phase::Live {
            vec![line]
        } else {
            self.held.push_back(line);
            Vec::new()
        }
    }

    /// How a chat line the user typed looks once sent (`[#room] nick:
    /// text`), for a front end that shows it; `None` for commands. The
    /// session remembers it, so a catch-up does not show it a second time.
    pub(crate) fn echo(&mut self, line: &str) -> Option<String> {
        if line.starts_with('#') && !line.starts_with("##") {
            return None;
        }
        let text = line.strip_prefix('#').unwrap_or(line);
        let room = self
            .tracker
            .room
            .clone()
            .unwrap_or_else(|| "general".into());
        let nick = self.tracker.nick.clone().unwrap_or_else(|| "you".into());
        let shown = format!("[#{room}] {nick}: {text}");
        self.echoes.push_back(Echo {
            room,
            nick,
            text: text.to_owned(),
        });
        if self.echoes.len() > ECHOES_KEPT {
            self.echoes.pop_front();
        }
        Some(shown)
    }

    /// One line from the server.
    pub(crate) fn line(&mut self, line: &str) -> Step {
        let (id, text) = take_id(line);
        let text = text.into_owned();
        let room_before = self.tracker.room.clone();
        self.tracker.observe(&text);
        let mut step = Step::default();
        let phase = std::mem::replace(&mut self.phase, Phase::Live);
        self.phase = match phase {
            Phase::Handshake { catch_up } => self.handshake(catch_up, id, text, &mut step),
            Phase::Baseline { room, answer } => self.baseline(room, answer, id, text, &mut step),
            Phase::CatchUp {
                room,
                answer,
                page_since,
                newest,
                pending,
            } => {
                let catch_up = CatchUpState {
                    room,
                    answer,
                    page_since,
                    newest,
                    pending,
                };
                self.catch_up(catch_up, id, text, &mut step)
            }
            phase @ (Phase::Live | Phase::Down) => {
                self.pass(id, text, &mut step);
                phase
            }
        };
        if self.phase == Phase::Live {
            if self.tracker.room != room_before
                && let (Some(room), Some(newest)) = (&self.tracker.room, self.newest)
            {
                // Joined: what was said here before is not ours to catch up.
                let last = self.last.entry(room.clone()).or_insert(newest);
                *last = (*last).max(newest);
            }
            step.send.extend(self.held.drain(..));
        }
        step
    }

    fn handshake(
        &mut self,
        catch_up: Option<(String, u64)>,
        id: Option<u64>,
        text: String,
        step: &mut Step,
    ) -> Phase {
        if text == "* ids on" {
            if let Some((room, since)) = catch_up {
                step.send.push(since_request(&room, since));
                return Phase::CatchUp {
                    room,
                    answer: Answer::Header,
                    page_since: since,
                    newest: since,
                    pending: BTreeMap::new(),
                };
            }
            return match self.tracker.room.clone() {
                Some(room) if self.since(&room).is_none() => {
                    step.send.push(format!("#history #{room} 1"));
                    Phase::Baseline {
                        room,
                        answer: Answer::Header,
                    }
                }
                _ => Phase::Live,
            };
        }
        if let LineKind::Error { code, text: why } = classify(&text)
            && code == "unknown-command"
            && why.starts_with("#ids ")
        {
            // A server without ids: no catch-up is possible.
            return Phase::Live;
        }
        if let Some((room, _)) = &catch_up
            && id.is_none()
            && live_room(&text) == Some(room.as_str())
        {
            // Said before ids were on, after the history asked for below
            // begins: the catch-up brings it, with its id.
            return Phase::Handshake { catch_up };
        }
        self.pass(id, text, step);
        Phase::Handshake { catch_up }
    }

    fn baseline(
        &mut self,
        room: String,
        answer: Answer,
        id: Option<u64>,
        text: String,
        step: &mut Step,
    ) -> Phase {
        match answer {
            Answer::Header => {
                if let Some((answered, count)) = history_header(&text)
                    && answered == room
                {
                    if count == 0 {
                        // Nothing said there yet: everything is new.
                        self.last.entry(room).or_insert(0);
                        return Phase::Live;
                    }
                    return Phase::Baseline {
                        room,
                        answer: Answer::Entries { left: count, count },
                    };
                }
                if matches!(classify(&text), LineKind::Error { .. }) {
                    // Our own question, refused: nothing for the user.
                    return Phase::Live;
                }
            }
            Answer::Entries { left, count } => {
                if history_room(&text) == Some(room.as_str()) {
                    if let Some(id) = id {
                        self.note(&room, id);
                    }
                    if left <= 1 {
                        return Phase::Live;
                    }
                    return Phase::Baseline {
                        room,
                        answer: Answer::Entries {
                            left: left - 1,
                            count,
                        },
                    };
                }
            }
        }
        self.pass(id, text, step);
        Phase::Baseline { room, answer }
    }

    fn catch_up(
        &mut self,
        mut state: CatchUpState,
        id: Option<u64>,
        text: String,
        step: &mut Step,
    ) -> Phase {
        match state.answer {
            Answer::Header => {
                if let Some((answered, count)) = history_header(&text)
                    && answered == state.room
                {
                    if count == 0 {
                        return self.finish(state, step);
                    }
                    state.answer = Answer::Entries { left: count, count };
                    return state.into_phase();
                }
                if matches!(classify(&text), LineKind::Error { .. }) {
                    // Refused (a private room we are no longer in, say):
                    // what arrived is shown, the error too.
                    let phase = self.finish(state, step);
                    step.show.push(text);
                    return phase;
                }
            }
            Answer::Entries { left, count } => {
                if history_room(&text) == Some(state.room.as_str()) {
                    if let Some(id) = id {
                        state.newest = state.newest.max(id);
                        self.keep(&mut state.pending, id, text);
                    } else {
                        step.show.push(text);
                    }
                    if left > 1 {
                        state.answer = Answer::Entries {
                            left: left - 1,
                            count,
                        };
                        return state.into_phase();
                    }
                    // A page is complete: all up to its newest id is known.
                    let newest = state.newest;
                    let later = state.pending.split_off(&(newest + 1));
                    let done = std::mem::replace(&mut state.pending, later);
                    self.show_pending(done, &state.room, step);
                    if newest == state.page_since {
                        return self.finish(state, step);
                    }
                    state.page_since = newest;
                    step.send.push(since_request(&state.room, newest));
                    state.answer = Answer::Header;
                    return state.into_phase();
                }
            }
        }
        if live_room(&text) == Some(state.room.as_str()) {
            // Live while catching up: shown in its place among the history
            // entries, once. Without an id it came before ids were on, and
            // the catch-up brings it.
            if let Some(id) = id {
                self.keep(&mut state.pending, id, text);
            }
            return state.into_phase();
        }
        self.pass(id, text, step);
        state.into_phase()
    }

    /// Keeps a line of the room being caught up, unless it was shown or
    /// is kept already (live and in history: the first to come is shown).
    fn keep(&self, pending: &mut BTreeMap<u64, String>, id: u64, text: String) {
        if !self.was_seen(id) {
            pending.entry(id).or_insert(text);
        }
    }

    fn finish(&mut self, state: CatchUpState, step: &mut Step) -> Phase {
        self.show_pending(state.pending, &state.room, step);
        Phase::Live
    }

    fn show_pending(&mut self, pending: BTreeMap<u64, String>, room: &str, step: &mut Step) {
        for (id, text) in pending {
            self.note(room, id);
            self.mark_seen(id);
            if !self.own_echo(room, &text) {
                step.show.push(text);
            }
        }
    }

    /// Whether `text` (a history entry) is one of our own lines the
    /// terminal UI already showed as sent; if so it is forgotten.
    fn own_echo(&mut self, room: &str, text: &str) -> bool {
        let LineKind::Room {
            nick: Some(nick),
            rest,
            urgent: false,
            ..
        } = classify(text)
        else {
            return false;
        };
        let Some(said) = rest.strip_prefix(nick).and_then(|r| r.strip_prefix(": ")) else {
            return false;
        };
        match self
            .echoes
            .iter()
            .position(|e| e.room == room && e.nick == nick && e.text == said)
        {
            Some(at) => {
                self.echoes.remove(at);
                true
            }
            None => false,
        }
    }

    /// A line outside any catch-up.
    fn pass(&mut self, id: Option<u64>, text: String, step: &mut Step) {
        let Some(id) = id else {
            step.show.push(text);
            return;
        };
        let Some(tag) = chat_tag(&text) else {
            step.show.push(text);
            return;
        };
        if tag.history {
            // History the user asked for is shown as asked.
            if let Some(room) = tag.room {
                let room = room.to_owned();
                self.note(&room, id);
            }
            step.show.push(text);
            return;
        }
        if self.was_seen(id) {
            return;
        }
        match tag.room {
            Some(room) => {
                let room = room.to_owned();
                self.note(&room, id);
            }
            None => self.newest = Some(self.newest.map_or(id, |n| n.max(id))),
        }
        self.mark_seen(id);
        step.show.push(text);
    }

    /// Remembers `id` as the newest in `room` and anywhere, if it is.
    fn note(&mut self, room: &str, id: u64) {
        self.newest = Some(self.newest.map_or(id, |n| n.max(id)));
        let last = self.last.entry(room.to_owned()).or_insert(id);
        *last = (*last).max(id);
    }

    fn was_seen(&self, id: u64) -> bool {
        id <= self.forgotten || self.seen.contains(&id)
    }

    fn mark_seen(&mut self, id: u64) {
        self.seen.insert(id);
        while self.seen.len() > SEEN_WINDOW {
            if let Some(oldest) = self.seen.pop_first() {
                self.forgotten = self.forgotten.max(oldest);
            }
        }
    }
}

/// The parts of [`Phase::CatchUp`], while one line is handled.
struct CatchUpState {
    room: String,
    answer: Answer,
    page_since: u64,
    newest: u64,
    pending: BTreeMap<u64, String>,
}

impl CatchUpState {
    fn into_phase(self) -> Phase {
        Phase::CatchUp {
            room: self.room,
            answer: self.answer,
            page_since: self.page_since,
            newest: self.newest,
            pending: self.pending,
        }
    }
}

fn since_request(room: &str, since: u64) -> String {
    format!("#history #{room} since {since} {CATCH_UP_PAGE}")
}

/// The room of a live room line (not a history entry), without `#`.
fn live_room(text: &str) -> Option<&str> {
    chat_tag(text).filter(|tag| !tag.history)?.room
}

/// The room of a history entry, without `#`.
fn history_room(text: &str) -> Option<&str> {
    chat_tag(text).filter(|tag| tag.history)?.room
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds lines; returns everything shown and sent.
    fn feed(session: &mut Session, lines: &[&str]) -> (Vec<String>, Vec<String>) {
        let mut all = Step::default();
        for line in lines {
            let step = session.line(line);
            all.show.extend(step.show);
            all.send.extend(step.send);
        }
        (all.show, all.send)
    }

    const WELCOME: &str = "* welcome, you are guest1 in #general; type #help for commands";

    /// A session on its first connection, live, having seen id 8 in #general.
    fn live_alice() -> Session {
        let mut session = Session::new(Some("alice".into()));
        assert_eq!(session.connected(), ["#nick alice", "#ids on"]);
        let (shown, sent) = feed(&mut session, &[WELCOME, "* you are now alice"]);
        assert_eq!(shown, [WELCOME, "* you are now alice"]);
        assert!(sent.is_empty());
        // Typed before the connection is ready: held.
        assert!(session.user_line("early".into()).is_empty());
        assert!(session.catching_up());
        // Knowing no id yet, it asks what was said last, quietly.
        let (shown, sent) = feed(&mut session, &["* ids on"]);
        assert!(shown.is_empty(), "{shown:?}");
        assert_eq!(sent, ["#history #general 1"]);
        let (shown, sent) = feed(
            &mut session,
            &[
                "+ history #general 1",
                "[#general 2026-11-18 11:06:40 id=7] bob: before we came",
            ],
        );
        assert!(shown.is_empty(), "{shown:?}");
        assert_eq!(sent, ["early"]);
        assert!(!session.catching_up());
        let (shown, _) = feed(&mut session, &["[#general id=8] bob: live 8"]);
        assert_eq!(shown, ["[#general] bob: live 8"]);
        assert_eq!(session.user_line("now".into()), ["now"]);
        session
    }

    fn entry(id: u64) -> String {
        format!("[#general 2026-11-18 11:06:40 id={id}] bob: line {id}")
    }

    fn shown_entry(id: u64) -> String {
        format!("[#general 2026-11-18 11:06:40] bob: line {id}")
    }

    #[test]
    fn live_lines_lose_their_ids_and_show_once() {
        let mut session = live_alice();
        let (shown, _) = feed(
            &mut session,
            &[
                "[#general id=9] * bob waves",
                "[#general id=9] * bob waves",
                "[#general id=10] URGENT bob: fire",
                "[whisper id=11] bob: psst",
                "[whisper id=11] bob: psst",
                "[whisper to bob id=12] ok",
                "* carol joined #general",
                "+ history #general 1",
                "[#general 2026-11-18 11:06:40 id=9] * bob waves",
            ],
        );
        assert_eq!(
            shown,
            [
                "[#general] * bob waves",
                "[#general] URGENT bob: fire",
                "[whisper] bob: psst",
                "[whisper to bob] ok",
                "* carol joined #general",
                // History the user asked for is shown as asked.
                "+ history #general 1",
                "[#general 2026-11-18 11:06:40] * bob waves",
            ]
        );
    }

    #[test]
    fn a_reconnect_catches_up_page_by_page_merging_live_lines_once_in_order() {
        let mut session = live_alice();
        session.lost();
        assert!(session.user_line("while down".into()).is_empty());
        assert_eq!(session.connected(), ["#nick alice", "#ids on"]);
        let (shown, sent) = feed(
            &mut session,
            &[
                WELCOME,
                // Said before ids are on: the catch-up brings it with its id.
                "[#general] bob: line 9",
                "* you are now alice",
                "* ids on",
            ],
        );
        assert_eq!(shown, [WELCOME, "* you are now alice"]);
        assert_eq!(sent, ["#history #general since 8 100"]);
        // Live lines while the answer is on its way wait for their place.
        let mut lines = vec![
            "[#general id=12] bob: line 12".to_owned(),
            "[#general id=8] bob: live 8".to_owned(),
            "+ history #general 100".to_owned(),
        ];
        lines.extend((9..=108).map(entry));
        lines.push("[#general id=109] bob: line 109".into());
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (shown, sent) = feed(&mut session, &lines);
        let mut expected: Vec<String> = (9..=108).map(shown_entry).collect();
        expected[12 - 9] = "[#general] bob: line 12".into();
        assert_eq!(shown, expected);
        // A full page: the next one starts after its newest id.
        assert_eq!(sent, ["#history #general since 108 100"]);
        assert!(session.catching_up());
        let (shown, sent) = feed(
            &mut session,
            &[
                "+ history #general 2",
                &entry(109),
                "[#general id=111] bob: line 111",
                &entry(110),
            ],
        );
        assert_eq!(shown, ["[#general] bob: line 109", &shown_entry(110)]);
        // A short page may be the server's page size: ask until empty.
        // The live line above the page waits for its place until then.
        assert_eq!(sent, ["#history #general since 110 100"]);
        assert!(session.catching_up());
        let (shown, sent) = feed(&mut session, &["+ history #general 0"]);
        assert_eq!(shown, ["[#general] bob: line 111"]);
        // Typed while down or catching up: sent once caught up.
        assert_eq!(sent, ["while down"]);
        assert!(!session.catching_up());
        let (shown, _) = feed(
            &mut session,
            &[
                "[#general id=111] bob: line 111",
                "[#general id=112] bob: 112",
            ],
        );
        assert_eq!(shown, ["[#general] bob: 112"]);
        // The next loss starts from there.
        session.lost();
        session.connected();
        let (_, sent) = feed(&mut session, &[WELCOME, "* you are now alice", "* ids on"]);
        assert_eq!(sent, ["#history #general since 112 100"]);
        let (shown, sent) = feed(&mut session, &["+ history #general 0"]);
        assert!(shown.is_empty() && sent.is_empty());
        assert!(!session.catching_up());
    }

    #[test]
    fn a_reconnect_goes_back_to_its_room_and_catches_up_there() {
        let mut session = live_alice();
        let (shown, _) = feed(
            &mut session,
            &[
                "* you created #den; you own it",
                "[whisper id=20] bob: psst",
            ],
        );
        assert_eq!(shown.len(), 2);
        session.lost();
        assert_eq!(
            session.connected(),
            ["#nick alice", "#join #den", "#ids on"]
        );
        let (shown, sent) = feed(
            &mut session,
            &[
                WELCOME,
                "[#general] bob: not ours",
                "* you are now alice",
                "* you joined #den",
                "* ids on",
                "[#general id=21] bob: not ours either",
            ],
        );
        assert_eq!(
            shown,
            [
                WELCOME,
                "[#general] bob: not ours",
                "* you are now alice",
                "* you joined #den",
                "[#general] bob: not ours either",
            ]
        );
        // Created after id 8: what #den had before is not ours to catch up.
        assert_eq!(sent, ["#history #den since 8 100"]);
        let (shown, _) = feed(
            &mut session,
            &[
                "! permission-denied: #den is private",
                "[#den id=22] bob: after",
            ],
        );
        assert_eq!(
            shown,
            ["! permission-denied: #den is private", "[#den] bob: after"]
        );
    }

    #[test]
    fn own_lines_shown_as_sent_are_not_shown_again_by_a_catch_up() {
        let mut session = live_alice();
        assert_eq!(
            session.echo("hello").as_deref(),
            Some("[#general] alice: hello")
        );
        assert_eq!(
            session.echo("##tag").as_deref(),
            Some("[#general] alice: #tag")
        );
        assert_eq!(session.echo("#who"), None);
        session.lost();
        session.connected();
        feed(&mut session, &[WELCOME, "* you are now alice", "* ids on"]);
        let (shown, _) = feed(
            &mut session,
            &[
                "+ history #general 4",
                "[#general 2026-11-18 11:06:40 id=9] alice: hello",
                "[#general 2026-11-18 11:06:41 id=10] alice: #tag",
                "[#general 2026-11-18 11:06:42 id=11] alice: hello",
                "[#general 2026-11-18 11:06:43 id=12] bob: hello",
            ],
        );
        assert_eq!(
            shown,
            [
                // Sent twice, shown as sent once.
                "[#general 2026-11-18 11:06:42] alice: hello",
                "[#general 2026-11-18 11:06:43] bob: hello",
            ]
        );
    }

    #[test]
    fn a_server_without_ids_is_used_as_before() {
        let mut session = Session::new(None);
        assert_eq!(session.connected(), ["#ids on"]);
        assert!(session.user_line("#who".into()).is_empty());
        let (shown, sent) = feed(
            &mut session,
            &[
                WELCOME,
                "[#general] bob: hi",
                "! unknown-command: #ids is not a command; type #help for the list",
                "[#general] bob: hi",
            ],
        );
        assert_eq!(shown, [WELCOME, "[#general] bob: hi", "[#general] bob: hi"]);
        assert_eq!(sent, ["#who"]);
        // Without an id seen, a reconnect has nothing to ask after.
        session.lost();
        session.connected();
        let (_, sent) = feed(&mut session, &[WELCOME, "* ids on"]);
        assert_eq!(sent, ["#history #general 1"]);
        let (shown, sent) = feed(
            &mut session,
            &["+ history #general 0", "[#general id=3] x: y"],
        );
        assert_eq!(shown, ["[#general] x: y"]);
        assert!(sent.is_empty());
    }

    #[test]
    fn a_refused_question_of_our_own_is_not_shown() {
        let mut session = Session::new(None);
        session.connected();
        assert!(session.user_line("#who".into()).is_empty());
        let (_, sent) = feed(&mut session, &[WELCOME, "* ids on"]);
        assert_eq!(sent, ["#history #general 1"]);
        let (shown, sent) = feed(
            &mut session,
            &["! bad-syntax: usage: #history [N]", "[#general id=3] x: y"],
        );
        assert_eq!(shown, ["[#general] x: y"]);
        assert_eq!(sent, ["#who"]);
    }

    #[test]
    fn the_dedup_window_forgets_the_oldest_ids_as_seen() {
        let mut session = live_alice();
        for id in 100..100 + SEEN_WINDOW as u64 + 10 {
            let (shown, _) = feed(&mut session, &[&format!("[#general id={id}] bob: {id}")]);
            assert_eq!(shown.len(), 1);
        }
        assert!(session.seen.len() <= SEEN_WINDOW);
        for old in [8, 100, 105] {
            let (shown, _) = feed(&mut session, &[&format!("[#general id={old}] bob: {old}")]);
            assert!(shown.is_empty(), "{old} shown again");
        }
    }
}
