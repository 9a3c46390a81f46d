//! `#history` and `#search`: answered from the rooms' recent lines in
//! memory when they provably hold the whole answer, otherwise through
//! [`Output::QueryHistory`] and [`Server::handle_history_answer`].
//!
//! A connection has at most one query at the driver; later requests wait
//! in order (at most [`MAX_WAITING`]; beyond, `! try-later`), so answers
//! come back in the order asked, even those memory answers at once. The
//! part of an answer memory holds (lines at or above the query's `below`)
//! is taken when the query is sent and merged with the driver's answer by
//! a second [`Collector`], so lines trimmed from memory meanwhile are not
//! lost and the answer is the one a single reader of everything would give.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use ahash::AHashMap;

use crate::command::{HistoryArgs, HistoryTarget};
use crate::error::ErrorCode;
use crate::history::Record;
use crate::history_query::{
    Collector, HistoryAnswer, HistoryQuery, Position, QueryId, Scope, SearchTerms, Shortfall,
};
use crate::ids::{ConnId, MessageId, Nick, RoomName};
use crate::io::Output;
use crate::reply::{HistoryOf, Reply};

use super::Server;

/// Requests one connection may have waiting behind the one at the driver.
pub(crate) const MAX_WAITING: usize = 4;

/// Every connection's history requests.
#[derive(Debug, Default)]
pub(crate) struct Queries {
    /// The next query id.
    next: u64,
    by_conn: AHashMap<ConnId, ConnQueries>,
    /// Who asked each query at the driver.
    owners: AHashMap<QueryId, ConnId>,
}

/// One connection's requests: one at the driver, the rest waiting.
#[derive(Debug, Default)]
struct ConnQueries {
    in_flight: Option<InFlight>,
    waiting: VecDeque<Ask>,
}

/// A query at the driver, with the part memory held when it was sent.
#[derive(Debug)]
struct InFlight {
    request: QueryId,
    ask: Ask,
    ring: Vec<Arc<Record>>,
}

/// One request, checked and ready to run.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    /// The query (its `request`, `conn` and `below` are set when sent).
    query: HistoryQuery,
    /// How the answer is headed.
    header: Header,
    /// Private rooms whose lines the asker may read, each with the first
    /// id of the room as it exists now: lines below it were said in an
    /// earlier room of the same name.
    floors: Vec<(RoomName, u64)>,
    /// Rooms whose lines the asker may not read though they are not
    /// private (a key, `+s`, a ban), sorted: a search leaves them out.
    closed: Vec<RoomName>,
}

#[derive(Debug, Clone)]
enum Header {
    Room(RoomName),
    Whispers(Nick),
    Search,
    /// An IRC CHATHISTORY batch of this room.
    Irc(RoomName),
}

impl Ask {
    /// Whether a line (from memory or from the driver) belongs in the
    /// answer: the query's scope, the private rooms' floors, retention.
    fn admits(&self, record: &Record, cutoff_ms: Option<u64>) -> bool {
        self.query.admits(record)
            && cutoff_ms.is_none_or(|cutoff| record.ts >= cutoff)
            && (record.to.is_some() || self.closed.binary_search(&record.room).is_err())
            && (!record.private
                || record.to.is_some()
                || self
                    .floors
                    .iter()
                    .any(|(room, floor)| *room == record.room && record.id.get() >= *floor))
    }
}

impl Queries {
    /// Forgets a connection that is gone: an answer still to come for it
    /// is dropped.
    pub(crate) fn forget(&mut self, conn: ConnId) {
        if let Some(state) = self.by_conn.remove(&conn)
            && let Some(flight) = state.in_flight
        {
            self.owners.remove(&flight.request);
        }
    }

    /// Forgets everything (shutdown).
    pub(crate) fn clear(&mut self) {
        self.by_conn.clear();
        self.owners.clear();
    }

    /// Whether only live connections have requests (invariants).
    pub(crate) fn only_for(&self, live: impl Fn(ConnId) -> bool) -> bool {
        self.by_conn.keys().all(|&conn| live(conn)) && self.owners.values().all(|&conn| live(conn))
    }
}

impl Server {
    /// `#history [#ROOM|@NAME] [before ID|since ID|around ID] [N]`.
    pub(super) fn history(
        &mut self,
        now: Instant,
        conn: ConnId,
        current: &RoomName,
        args: HistoryArgs,
    ) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let limit = args
            .count
            .unwrap_or(self.config.history_default)
            .min(self.config.history_page);
        if matches!(args.target, Some(HistoryTarget::Whispers(_))) && session.nick.is_guest_name() {
            // Guest names are handed out again from guest1 after every
            // restart: a guest's whispers are not the new guest's.
            return self.out.error(
                conn,
                ErrorCode::PermissionDenied,
                "guest names are given to someone new after a restart: choose a nickname with #nick to read your whispers",
            );
        }
        if matches!(args.target, Some(HistoryTarget::Whispers(_)))
            && self.accounts.is_registered(&session.nick)
            && session
                .account()
                .is_none_or(|account| account.folded() != session.nick.folded())
        {
            // Whisper history is kept by nickname: holding a registered
            // one without its password (the grace period) must not read
            // the account's private messages.
            let text = format!(
                "{} is a registered nickname: log in to it to read its whispers",
                session.nick
            );
            return self.out.error(conn, ErrorCode::PermissionDenied, &text);
        }
        let ask = match args.target {
            Some(HistoryTarget::Whispers(other)) => Ask {
                query: query(
                    Scope::Whispers {
                        me: session.nick,
                        other,
                    },
                    args.position,
                    limit,
                ),
                header: Header::Whispers(other),
                floors: Vec::new(),
                closed: Vec::new(),
            },
            target => {
                let room = match target {
                    Some(HistoryTarget::Room(room)) => room,
                    _ => current.clone(),
                };
                let mut floors = Vec::new();
                if let Some(text) = self.closed_to(now, conn, &room) {
                    let subject = format!("#{room}");
                    return self.out.error_about(
                        conn,
                        ErrorCode::PermissionDenied,
                        Some(&subject),
                        &format!("{text}: only its members read its history"),
                    );
                }
                if let Some(private) = self.rooms.get(&room).filter(|r| r.private) {
                    floors.push((room.clone(), private.first_id));
                }
                Ask {
                    query: query(
                        Scope::Room {
                            room: room.clone(),
                            private_ok: !floors.is_empty(),
                        },
                        args.position,
                        limit,
                    ),
                    header: Header::Room(room),
                    floors,
                    closed: Vec::new(),
                }
            }
        };
        self.ask(now, conn, ask);
    }

    /// `#search TEXT [in #ROOM]`: always read from the stored history.
    pub(super) fn search(
        &mut self,
        now: Instant,
        conn: ConnId,
        terms: SearchTerms,
        room: Option<RoomName>,
    ) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        if let Some(name) = &room
            && let Some(text) = self.closed_to(now, conn, name)
        {
            let text = format!("{text}: only its members search it");
            let subject = format!("#{name}");
            return self
                .out
                .error_about(conn, ErrorCode::PermissionDenied, Some(&subject), &text);
        }
        let closed: Vec<RoomName> = match &room {
            Some(_) => Vec::new(),
            None => self
                .rooms
                .keys()
                .filter(|name| {
                    self.rooms.get(*name).is_some_and(|r| !r.private)
                        && self.closed_to(now, conn, name).is_some()
                })
                .cloned()
                .collect(),
        };
        let mut floors: Vec<(RoomName, u64)> = session
            .rooms
            .iter()
            .filter_map(|name| {
                let room = self.rooms.get(name).filter(|r| r.private)?;
                Some((name.clone(), room.first_id))
            })
            .collect();
        floors.sort();
        let private_rooms = floors.iter().map(|(name, _)| name.clone()).collect();
        let ask = Ask {
            query: query(
                Scope::Search {
                    terms,
                    room,
                    private_rooms,
                },
                Position::Latest,
                self.config.limits.search_results,
            ),
            header: Header::Search,
            floors,
            closed,
        };
        self.ask(now, conn, ask);
    }

    /// IRC `CHATHISTORY` by message id, already checked: the asker is in
    /// the room (or an operator).
    pub(super) fn irc_history_query(
        &mut self,
        now: Instant,
        conn: ConnId,
        room: RoomName,
        position: Position,
        limit: usize,
    ) {
        let floors: Vec<(RoomName, u64)> = self
            .rooms
            .get(&room)
            .filter(|r| r.private)
            .map(|r| (room.clone(), r.first_id))
            .into_iter()
            .collect();
        let ask = Ask {
            query: query(
                Scope::Room {
                    room: room.clone(),
                    private_ok: !floors.is_empty(),
                },
                position,
                limit,
            ),
            header: Header::Irc(room),
            floors,
            closed: Vec::new(),
        };
        self.ask(now, conn, ask);
    }

    /// Why `conn` may not read a room's lines, if it may not: a private
    /// room, a key (IRC `+k`), a secret room (`+s`) or a ban keep them to
    /// its members (and server operators, except for private rooms,
    /// whose lines are for their members alone). Rooms that no longer
    /// exist are open (their private lines stay hidden by the scope).
    fn closed_to(&self, now: Instant, conn: ConnId, name: &RoomName) -> Option<String> {
        let session = self.sessions.get(&conn)?;
        if self.private_elsewhere(name) {
            return Some(format!("#{name} is private"));
        }
        let Some(room) = self.rooms.get(name) else {
            return self.closed_elsewhere(now, session, name);
        };
        if session.is_in(name) {
            return None;
        }
        if room.private {
            return Some(format!("#{name} is private"));
        }
        if session.is_operator() {
            return None;
        }
        if room.modes.key.is_some() || room.modes.secret {
            return Some(format!("#{name} is closed"));
        }
        if room.active_ban(session.peer, now).is_some() || super::rooms::mask_banned(room, session)
        {
            return Some(format!("you are banned from #{name}"));
        }
        None
    }

    /// Runs a request now, or queues it behind the one at the driver.
    fn ask(&mut self, now: Instant, conn: ConnId, ask: Ask) {
        let state = self.queries.by_conn.entry(conn).or_default();
        if state.in_flight.is_some() {
            if state.waiting.len() >= MAX_WAITING {
                let text = format!(
                    "{} of your history requests are already pending; ask again once they are answered",
                    MAX_WAITING + 1
                );
                return self.refuse(conn, &ask, ErrorCode::TryLater, &text);
            }
            state.waiting.push_back(ask);
            return;
        }
        self.run(now, conn, ask);
    }

    /// Answers from memory, or sends the query to the driver; then runs
    /// what waits, until one request is at the driver or none is left.
    fn run(&mut self, now: Instant, conn: ConnId, first: Ask) {
        let mut next = Some(first);
        while let Some(ask) = next.take() {
            if self.start(now, conn, ask) {
                return;
            }
            next = self
                .queries
                .by_conn
                .get_mut(&conn)
                .and_then(|state| state.waiting.pop_front());
        }
        if let Some(state) = self.queries.by_conn.get(&conn)
            && state.in_flight.is_none()
            && state.waiting.is_empty()
        {
            self.queries.by_conn.remove(&conn);
        }
    }

    /// Starts one request: `true` if it went to the driver.
    fn start(&mut self, now: Instant, conn: ConnId, ask: Ask) -> bool {
        let cutoff = self.retention_cutoff(now);
        let mut below = None;
        let mut ring = Vec::new();
        if let Scope::Room { room, .. } = &ask.query.scope {
            let mut collector = ask.query.collector();
            for record in self.histories.entries(room) {
                if ask.admits(record, cutoff) {
                    collector.offer(record.clone());
                }
            }
            let oldest = self.histories.oldest(room);
            let whole = self.histories.is_complete(room)
                || oldest.is_some_and(|oldest| {
                    oldest.get() <= 1
                        || !collector.wants(MessageId::new(0), MessageId::new(oldest.get() - 1))
                });
            if whole {
                self.answer(conn, &ask, &collector.finish(), false);
                return false;
            }
            below = oldest;
            ring = collector.finish();
        }
        let request = QueryId(self.queries.next);
        self.queries.next += 1;
        let mut query = ask.query.clone();
        query.request = request;
        query.conn = conn;
        query.below = below;
        self.queries.owners.insert(request, conn);
        let state = self.queries.by_conn.entry(conn).or_default();
        state.in_flight = Some(InFlight { request, ask, ring });
        self.out.push(Output::QueryHistory(Box::new(query)));
        true
    }

    /// The driver's answer to a query from [`Output::QueryHistory`]: the
    /// asker gets the answer merged with what memory held, then its next
    /// waiting request runs. Answers for connections that are gone, or
    /// that were never asked, are dropped.
    pub fn handle_history_answer(&mut self, now: Instant, answer: HistoryAnswer) {
        self.out.scene.unix_ms = self.wall.unix_ms(now);
        let Some(conn) = self.queries.owners.remove(&answer.request) else {
            return;
        };
        let Some(flight) = self
            .queries
            .by_conn
            .get_mut(&conn)
            .and_then(|state| state.in_flight.take())
        else {
            return;
        };
        match answer.shortfall {
            Some(Shortfall::Busy) => self.refuse(
                conn,
                &flight.ask,
                ErrorCode::TryLater,
                "the stored history is busy; ask again in a moment",
            ),
            Some(Shortfall::Unreadable) => self.refuse(
                conn,
                &flight.ask,
                ErrorCode::HistoryUnavailable,
                "the stored history could not be read",
            ),
            // Only a search may show what it found in time: a history page
            // cut short would look complete, and a client catching up with
            // `since` would skip what it did not get.
            Some(Shortfall::TimeBound) if !matches!(flight.ask.header, Header::Search) => self
                .refuse(
                    conn,
                    &flight.ask,
                    ErrorCode::HistoryUnavailable,
                    "reading the stored history took too long; ask again",
                ),
            shortfall @ (None | Some(Shortfall::TimeBound)) => {
                let cutoff = self.retention_cutoff(now);
                let mut collector: Collector = flight.ask.query.collector();
                for record in answer.records.into_iter().chain(flight.ring) {
                    if flight.ask.admits(&record, cutoff) {
                        collector.offer(record);
                    }
                }
                let partial = shortfall == Some(Shortfall::TimeBound);
                self.answer(conn, &flight.ask, &collector.finish(), partial);
            }
        }
        let next = self
            .queries
            .by_conn
            .get_mut(&conn)
            .and_then(|state| state.waiting.pop_front());
        match next {
            Some(ask) => self.run(now, conn, ask),
            None => {
                self.queries.by_conn.remove(&conn);
            }
        }
    }

    /// Notes rooms whose stored lines reach further back than memory
    /// holds (a restore that kept only their tails, or none of them):
    /// their `#history` goes to the driver beyond what memory holds. Call
    /// after [`Server::restore`], before accepting connections.
    pub fn mark_history_incomplete<I>(&mut self, rooms: I)
    where
        I: IntoIterator,
        I::Item: std::borrow::Borrow<RoomName>,
    {
        let rooms: Vec<I::Item> = rooms.into_iter().collect();
        self.histories
            .mark_incomplete(rooms.iter().map(std::borrow::Borrow::borrow));
    }

    /// A request that gets no answer: an error line, or for IRC's
    /// CHATHISTORY a `FAIL` (draft/chathistory: `MESSAGE_ERROR`).
    fn refuse(&mut self, conn: ConnId, ask: &Ask, code: ErrorCode, text: &str) {
        match ask.header {
            Header::Irc(_) => {
                let line = crate::irc::render::server_line(
                    &self.out.scene,
                    "FAIL",
                    &["CHATHISTORY", "MESSAGE_ERROR", text],
                );
                self.send_text(conn, line);
            }
            _ => self.out.error(conn, code, text),
        }
    }

    /// Lines with an earlier wall-clock time than this are past retention.
    fn retention_cutoff(&self, now: Instant) -> Option<u64> {
        let retention = self.config.history_retention?;
        let ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        Some(self.wall.unix_ms(now).saturating_sub(ms))
    }

    /// Sends an answer: its header, then its entries oldest first.
    fn answer(&mut self, conn: ConnId, ask: &Ask, records: &[Arc<Record>], partial: bool) {
        let count = records.len();
        let header = match &ask.header {
            Header::Irc(room) => return self.irc_history_batch(conn, room, records),
            Header::Room(room) => Reply::HistoryHeader {
                of: HistoryOf::Room(room),
                count,
            },
            Header::Whispers(nick) => Reply::HistoryHeader {
                of: HistoryOf::Whispers(nick),
                count,
            },
            Header::Search => Reply::SearchHeader { count, partial },
        };
        let me = match &ask.query.scope {
            Scope::Whispers { me, .. } => Some(me.folded()),
            _ => None,
        };
        let entries = records.iter().map(|record| match &me {
            Some(me) => Reply::WhisperEntry {
                record,
                sent: record.from.folded() == *me,
            },
            None => Reply::HistoryEntry(record),
        });
        self.out
            .send_block(conn, std::iter::once(header).chain(entries));
    }
}

/// A query not yet sent.
fn query(scope: Scope, position: Position, limit: usize) -> HistoryQuery {
    HistoryQuery {
        request: QueryId(0),
        conn: ConnId::new(0),
        scope,
        position,
        limit,
        below: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::history::RecordKind;
    use crate::test_support::epoch;

    const START_MS: u64 = 1_795_000_000_000;

    struct Harness {
        server: Server,
        now: Instant,
        queries: Vec<HistoryQuery>,
    }

    impl Harness {
        fn new(config: Config) -> Self {
            let now = epoch();
            let mut config = config;
            config.rate_limit.enabled = false;
            Self {
                server: Server::new(config, now, START_MS).unwrap(),
                now,
                queries: Vec::new(),
            }
        }

        fn connect(&mut self) -> ConnId {
            let conn = self
                .server
                .accept(self.now, "127.0.0.1:5000".parse().unwrap())
                .unwrap();
            self.lines(conn);
            conn
        }

        /// Lines sent to `conn`; queries are kept in `self.queries`.
        fn lines(&mut self, conn: ConnId) -> Vec<String> {
            let mut lines = Vec::new();
            while let Some(output) = self.server.poll_output() {
                match output {
                    Output::Send { to, bytes, .. } if to == conn => {
                        lines.extend(String::from_utf8_lossy(&bytes).lines().map(str::to_owned));
                    }
                    Output::Persist(record) => self.server.handle_persisted(self.now, record.id),
                    Output::QueryHistory(query) => self.queries.push(*query),
                    _ => {}
                }
            }
            self.server.check_invariants().unwrap();
            lines
        }

        fn say(&mut self, conn: ConnId, line: &str) -> Vec<String> {
            self.server
                .handle(self.now, conn, format!("{line}\n").as_bytes());
            self.lines(conn)
        }

        fn answer(&mut self, conn: ConnId, answer: HistoryAnswer) -> Vec<String> {
            self.server.handle_history_answer(self.now, answer);
            self.lines(conn)
        }
    }

    fn stored(id: u64, text: &str) -> Arc<Record> {
        Arc::new(Record {
            id: MessageId::new(id),
            room: RoomName::general(),
            ts: START_MS,
            from: Nick::parse("old").unwrap(),
            kind: RecordKind::Msg,
            text: text.into(),
            to: None,
            private: false,
        })
    }

    fn small_ring() -> Config {
        Config {
            history_size: 3,
            ..Config::default()
        }
    }

    #[test]
    fn a_complete_ring_answers_alone() {
        let mut h = Harness::new(small_ring());
        let alice = h.connect();
        h.say(alice, "#join elsewhere");
        h.say(alice, "away");
        h.say(alice, "#leave");
        // #general's lines are 2 and 3: the ring knows nothing came before.
        h.say(alice, "one");
        h.say(alice, "two");
        let lines = h.say(alice, "#history 10");
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0], "+ history #general 2");
        assert!(h.queries.is_empty());
    }

    #[test]
    fn beyond_the_ring_the_driver_reads_below_its_oldest_line_and_memory_fills_in_the_rest() {
        let mut h = Harness::new(small_ring());
        let alice = h.connect();
        for text in ["one", "two", "three", "four", "five"] {
            h.say(alice, text);
        }
        // The ring holds 3, 4, 5: the last two alone it can answer.
        let lines = h.say(alice, "#history 2");
        assert_eq!(lines[0], "+ history #general 2");
        assert!(h.queries.is_empty());
        assert!(h.say(alice, "#history 4").is_empty());
        let query = h.queries.pop().unwrap();
        assert_eq!(query.below, Some(MessageId::new(3)));
        assert_eq!(query.limit, 4);
        assert_eq!(query.conn, alice);
        // Lines trimmed meanwhile do not matter: memory's part was taken
        // when the query was sent.
        for text in ["six", "seven", "eight"] {
            h.say(alice, text);
        }
        let lines = h.answer(
            alice,
            HistoryAnswer {
                request: query.request,
                records: vec![stored(1, "one"), stored(2, "two")],
                shortfall: None,
            },
        );
        let texts: Vec<&str> = lines
            .iter()
            .map(|l| l.rsplit(": ").next().unwrap())
            .collect();
        assert_eq!(lines[0], "+ history #general 4");
        assert_eq!(texts[1..], ["two", "three", "four", "five"]);
    }

    #[test]
    fn since_within_the_ring_needs_no_query() {
        let mut h = Harness::new(small_ring());
        let alice = h.connect();
        for text in ["one", "two", "three", "four", "five"] {
            h.say(alice, text);
        }
        let lines = h.say(alice, "#history since 3 10");
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(h.queries.is_empty());
        assert!(h.say(alice, "#history since 1 10").is_empty());
        assert_eq!(h.queries.len(), 1);
    }

    #[test]
    fn one_query_at_the_driver_four_waiting_then_try_later_and_answers_in_order() {
        let mut h = Harness::new(small_ring());
        let alice = h.connect();
        for text in ["one", "two", "three", "four"] {
            h.say(alice, text);
        }
        assert!(h.say(alice, "#search one").is_empty());
        for _ in 0..MAX_WAITING {
            assert!(h.say(alice, "#history 1").is_empty());
        }
        assert_eq!(
            h.say(alice, "#history 1"),
            [
                "! try-later: 5 of your history requests are already pending; ask again once they are answered"
            ]
        );
        assert_eq!(h.queries.len(), 1);
        let search = h.queries.remove(0);
        let lines = h.answer(
            alice,
            HistoryAnswer {
                request: search.request,
                records: vec![stored(1, "one")],
                shortfall: Some(Shortfall::TimeBound),
            },
        );
        // The search's answer, then the four waiting ones (memory holds
        // their answers) in order.
        assert_eq!(lines[0], "+ search 1 partial");
        assert_eq!(
            lines
                .iter()
                .filter(|l| *l == "+ history #general 1")
                .count(),
            MAX_WAITING
        );
        assert_eq!(lines.len(), 2 + 2 * MAX_WAITING);
        assert!(h.queries.is_empty());
    }

    #[test]
    fn busy_and_unreadable_answers_are_errors_and_a_closed_connection_gets_nothing() {
        let mut h = Harness::new(small_ring());
        let alice = h.connect();
        h.say(alice, "#search anything");
        let query = h.queries.pop().unwrap();
        let busy = HistoryAnswer {
            request: query.request,
            records: Vec::new(),
            shortfall: Some(Shortfall::Busy),
        };
        assert_eq!(
            h.answer(alice, busy.clone()),
            ["! try-later: the stored history is busy; ask again in a moment"]
        );
        // Answered once only.
        assert!(h.answer(alice, busy).is_empty());
        h.say(alice, "#search anything");
        let query = h.queries.pop().unwrap();
        let lines = h.answer(
            alice,
            HistoryAnswer {
                request: query.request,
                records: Vec::new(),
                shortfall: Some(Shortfall::Unreadable),
            },
        );
        assert_eq!(
            lines,
            ["! history-unavailable: the stored history could not be read"]
        );
        // A history page cut short by the time bound is no page: a client
        // catching up would take it for all there is.
        for text in ["one", "two", "three", "four", "five"] {
            h.say(alice, text);
        }
        h.say(alice, "#history since 1 10");
        let query = h.queries.pop().unwrap();
        let lines = h.answer(
            alice,
            HistoryAnswer {
                request: query.request,
                records: vec![stored(2, "partial")],
                shortfall: Some(Shortfall::TimeBound),
            },
        );
        assert_eq!(
            lines,
            ["! history-unavailable: reading the stored history took too long; ask again"]
        );
        h.say(alice, "#search anything");
        let query = h.queries.pop().unwrap();
        h.server.handle_closed(h.now, alice);
        h.lines(alice);
        let lines = h.answer(
            alice,
            HistoryAnswer {
                request: query.request,
                records: vec![stored(1, "anything")],
                shortfall: None,
            },
        );
        assert!(lines.is_empty());
    }

    #[test]
    fn marked_rooms_ask_the_driver_and_retention_hides_old_lines() {
        let config = Config {
            history_retention: Some(Duration::from_secs(60)),
            ..Config::default()
        };
        let mut h = Harness::new(config);
        let alice = h.connect();
        // Id 1 elsewhere: #general's oldest line is 2, so ids below it
        // may exist.
        h.say(alice, "#join elsewhere");
        h.say(alice, "away");
        h.say(alice, "#leave");
        h.say(alice, "old");
        h.now += Duration::from_secs(120);
        h.say(alice, "new");
        let lines = h.say(alice, "#history");
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[1].ends_with("guest1: new"));
        h.server.mark_history_incomplete([RoomName::general()]);
        assert!(h.say(alice, "#history").is_empty());
        let query = h.queries.pop().unwrap();
        assert_eq!(query.below, Some(MessageId::new(2)));
        let lines = h.answer(
            alice,
            HistoryAnswer {
                request: query.request,
                records: Vec::new(),
                shortfall: None,
            },
        );
        assert_eq!(lines.len(), 2, "{lines:?}");
    }

    #[test]
    fn irc_chathistory_by_msgid_reads_beyond_the_ring_through_the_same_path() {
        let mut h = Harness::new(small_ring());
        let alice = h
            .server
            .accept_as(
                h.now,
                "127.0.0.1:5001".parse().unwrap(),
                crate::dialect::Dialect::Irc,
            )
            .unwrap();
        h.say(
            alice,
            "CAP REQ :batch\r\nNICK alice\r\nUSER a 0 * :A\r\nCAP END\r\nJOIN #general\r",
        );
        for text in ["one", "two", "three", "four", "five"] {
            h.say(alice, &format!("PRIVMSG #general :{text}\r"));
        }
        assert!(
            h.say(alice, "CHATHISTORY BEFORE #general msgid=4 10\r")
                .is_empty()
        );
        let query = h.queries.pop().unwrap();
        assert_eq!(query.position, Position::Before(MessageId::new(4)));
        assert_eq!(query.below, Some(MessageId::new(3)));
        let lines = h.answer(
            alice,
            HistoryAnswer {
                request: query.request,
                records: vec![stored(1, "one"), stored(2, "two")],
                shortfall: None,
            },
        );
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert!(lines[0].contains("BATCH +"));
        assert!(lines[1].ends_with("PRIVMSG #general :one"));
        assert!(lines[3].ends_with("PRIVMSG #general :three"));
        // A busy reader is a FAIL, as CHATHISTORY reports errors.
        h.say(alice, "CHATHISTORY AFTER #general msgid=1 2\r");
        let query = h.queries.pop().unwrap();
        let lines = h.answer(
            alice,
            HistoryAnswer {
                request: query.request,
                records: Vec::new(),
                shortfall: Some(Shortfall::Busy),
            },
        );
        assert_eq!(
            lines,
            [
                ":chatd.local FAIL CHATHISTORY MESSAGE_ERROR :the stored history is busy; ask again in a moment"
            ]
        );
    }
}
