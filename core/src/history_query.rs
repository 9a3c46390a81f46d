//! History queries: what a client asked for (`#history`, `#search`), the
//! rules that say which stored records answer it, and the collector that
//! keeps the answer bounded whatever order records are offered in.
//!
//! The core answers from memory when its ring of recent lines provably
//! holds the whole answer; otherwise it emits [`crate::Output::QueryHistory`]
//! and the driver reads the stored records (the engine from its segments,
//! the memory driver from its byte logs), offers each one that
//! [`HistoryQuery::admits`] to a [`Collector`], and hands back a
//! [`HistoryAnswer`]. The core then merges in what its ring holds at or
//! above [`HistoryQuery::below`] with a second collector, so the answer is
//! the same as if every record had been read from one place.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::history::{Record, RecordKind};
use crate::ids::{ConnId, MessageId, Nick, RoomName};

/// Identifies one query between the core and its driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// Where in a history a query looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The newest records (`#history [N]`).
    Latest,
    /// The newest records with an id below this one (`#history before ID`).
    Before(MessageId),
    /// The oldest records with an id above this one (`#history since ID`).
    Since(MessageId),
    /// Records on both sides of this id, itself included when it exists
    /// (`#history around ID`): half the count at or before it, the rest
    /// after it.
    Around(MessageId),
}

/// Which records a query may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One room's chat lines. Records of a private room are readable only
    /// when `private_ok` (the asker is a member of it now).
    Room {
        /// The room.
        room: RoomName,
        /// Whether records said in a private room are readable.
        private_ok: bool,
    },
    /// Whispers between two people, either way (`#history @NAME`).
    Whispers {
        /// The asker.
        me: Nick,
        /// The other party.
        other: Nick,
    },
    /// Chat lines matching every search term (`#search TEXT [in ROOM]`),
    /// in one room or in every room the asker may read.
    Search {
        /// What to look for.
        terms: SearchTerms,
        /// Only this room, if given.
        room: Option<RoomName>,
        /// Private rooms whose records the asker may read (the private
        /// rooms it is a member of now), sorted.
        private_rooms: Vec<RoomName>,
    },
}

/// One question for the stored history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Hand back with the answer.
    pub request: QueryId,
    /// Who asked (the answer goes there).
    pub conn: ConnId,
    /// Which records are visible.
    pub scope: Scope,
    /// Where to look.
    pub position: Position,
    /// Most records in the answer.
    pub limit: usize,
    /// Only records with an id below this one: the core holds every
    /// visible record at or above it in memory and merges them in itself.
    /// `None`: the core holds none, read everything.
    pub below: Option<MessageId>,
}

impl HistoryQuery {
    /// Whether `record` is visible to this query (scope and `below`; the
    /// position is the collector's business).
    pub fn admits(&self, record: &Record) -> bool {
        if self.below.is_some_and(|below| record.id >= below) {
            return false;
        }
        self.scope.admits(record)
    }

    /// A collector for this query's position and limit.
    pub fn collector(&self) -> Collector {
        Collector::new(self.position, self.limit)
    }
}

impl Scope {
    /// Whether `record` is visible in this scope.
    pub fn admits(&self, record: &Record) -> bool {
        match self {
            Self::Room { room, private_ok } => {
                is_chat(record.kind) && record.room == *room && (*private_ok || !record.private)
            }
            Self::Whispers { me, other } => {
                record.kind == RecordKind::Whisper
                    && record.to.as_ref().is_some_and(|to| {
                        (same_nick(&record.from, me) && same_nick(to, other))
                            || (same_nick(&record.from, other) && same_nick(to, me))
                    })
            }
            Self::Search {
                terms,
                room,
                private_rooms,
            } => {
                is_chat(record.kind)
                    && room.as_ref().is_none_or(|room| record.room == *room)
                    && (!record.private || private_rooms.binary_search(&record.room).is_ok())
                    && terms.matches(&record.text)
            }
        }
    }
}

fn is_chat(kind: RecordKind) -> bool {
    matches!(
        kind,
        RecordKind::Msg | RecordKind::Action | RecordKind::Urgent
    )
}

fn same_nick(a: &Nick, b: &Nick) -> bool {
    a.folded() == b.folded()
}

/// The driver's answer to a [`HistoryQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryAnswer {
    /// The query's id.
    pub request: QueryId,
    /// What the collector kept, oldest first ([`Collector::finish`]).
    pub records: Vec<Arc<Record>>,
    /// Why the answer may be incomplete, if it may be.
    pub shortfall: Option<Shortfall>,
}

/// Why an answer may lack records that exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// The search stopped at its time bound; the records found so far are
    /// returned.
    TimeBound,
    /// The stored history could not be read (the driver logged why).
    Unreadable,
    /// Too many queries are waiting; this one was not run.
    Busy,
}

/// Words a search looks for: every one must occur in a line, as a whole
/// word, ignoring case.
///
/// Words are runs of letters and digits (Unicode), lowercased; shorter
/// ones than [`SearchTerms::MIN_WORD`] characters are ignored, at most
/// [`SearchTerms::MAX_WORDS`] are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTerms {
    words: Vec<String>,
}

impl SearchTerms {
    /// Shortest word searched for, in characters.
    pub const MIN_WORD: usize = 2;
    /// Most words in one search.
    pub const MAX_WORDS: usize = 8;

    /// The words of `text`, or `None` when it has none worth searching.
    pub fn parse(text: &str) -> Option<Self> {
        let mut words: Vec<String> = Vec::new();
        for word in words_of(text) {
            if !words.contains(&word) && words.len() < Self::MAX_WORDS {
                words.push(word);
            }
        }
        (!words.is_empty()).then_some(Self { words })
    }

    /// The words, lowercased, in the order first written.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Whether every word occurs in `text` as a whole word.
    pub fn matches(&self, text: &str) -> bool {
        let found: Vec<String> = words_of(text).collect();
        self.words.iter().all(|word| found.contains(word))
    }
}

/// The searchable words of a text, lowercased, in order (repeats kept).
/// The same function builds search indexes, so an index and a match never
/// disagree on what a word is.
pub fn words_of(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| word.chars().count() >= SearchTerms::MIN_WORD)
        .map(str::to_lowercase)
}

/// Keeps the records that answer a position and limit, offered in any
/// order, in bounded memory (at most `limit` records).
#[derive(Debug, Clone)]
pub struct Collector {
    position: Position,
    limit: usize,
    /// The largest ids below the position's id (min-heap: the smallest
    /// kept leaves first).
    low: BinaryHeap<Reverse<Keyed>>,
    /// The smallest ids above (or, for `Around`, at) the position's id
    /// (max-heap: the largest kept leaves first).
    high: BinaryHeap<Keyed>,
}

/// A record ordered by its id.
#[derive(Debug, Clone)]
struct Keyed(Arc<Record>);

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}
impl Eq for Keyed {}
impl PartialOrd for Keyed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Keyed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.id.cmp(&other.0.id)
    }
}

impl Collector {
    /// An empty collector.
    pub fn new(position: Position, limit: usize) -> Self {
        Self {
            position,
            limit,
            low: BinaryHeap::new(),
            high: BinaryHeap::new(),
        }
    }

    /// How many of the limit go below the position's id, and how many at
    /// or above it.
    fn split(&self) -> (usize, usize) {
        match self.position {
            Position::Latest | Position::Before(_) => (self.limit, 0),
            Position::Since(_) => (0, self.limit),
            Position::Around(_) => {
                let low = self.limit.saturating_sub(1) / 2;
                (low, self.limit - low)
            }
        }
    }

    /// Which side of the position `id` falls on: `Some(true)` below,
    /// `Some(false)` above (or at, for `Around`), `None` outside.
    fn side(&self, id: MessageId) -> Option<bool> {
        match self.position {
            Position::Latest => Some(true),
            Position::Before(at) => (id < at).then_some(true),
            Position::Since(at) => (id > at).then_some(false),
            Position::Around(at) => Some(id < at),
        }
    }

    /// Offers one record (already admitted by the query's scope). Offering
    /// the same id twice keeps it once.
    pub fn offer(&mut self, record: Arc<Record>) {
        let (low_cap, high_cap) = self.split();
        match self.side(record.id) {
            Some(true) if low_cap > 0 => {
                if self.low.iter().any(|Reverse(k)| k.0.id == record.id) {
                    return;
                }
                self.low.push(Reverse(Keyed(record)));
                if self.low.len() > low_cap {
                    self.low.pop();
                }
            }
            Some(false) if high_cap > 0 => {
                if self.high.iter().any(|k| k.0.id == record.id) {
                    return;
                }
                self.high.push(Keyed(record));
                if self.high.len() > high_cap {
                    self.high.pop();
                }
            }
            _ => {}
        }
    }

    /// Whether a record whose id lies in `first..=last` could still change
    /// the answer: lets a reader skip whole segments.
    pub fn wants(&self, first: MessageId, last: MessageId) -> bool {
        let (low_cap, high_cap) = self.split();
        let low_wants = low_cap > 0
            && match self.position {
                Position::Latest => true,
                Position::Before(at) | Position::Around(at) => first < at,
                Position::Since(_) => false,
            }
            && (self.low.len() < low_cap
                || self.low.peek().is_some_and(|Reverse(k)| last > k.0.id));
        let high_wants = high_cap > 0
            && match self.position {
                Position::Since(at) => last > at,
                Position::Around(at) => last >= at,
                Position::Latest | Position::Before(_) => false,
            }
            && (self.high.len() < high_cap || self.high.peek().is_some_and(|k| first < k.0.id));
        low_wants || high_wants
    }

    /// How many records are kept now.
    pub fn len(&self) -> usize {
        self.low.len() + self.high.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The answer, oldest first.
    pub fn finish(self) -> Vec<Arc<Record>> {
        let mut records: Vec<Arc<Record>> = self
            .low
            .into_iter()
            .map(|Reverse(k)| k.0)
            .chain(self.high.into_iter().map(|k| k.0))
            .collect();
        records.sort_by_key(|record| record.id);
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, room: &str, text: &str) -> Arc<Record> {
        Arc::new(Record {
            id: MessageId::new(id),
            room: RoomName::parse(room).unwrap(),
            ts: 1_795_000_000_000 + id,
            from: Nick::parse("alice").unwrap(),
            kind: RecordKind::Msg,
            text: text.into(),
            to: None,
            private: false,
        })
    }

    fn ids(records: &[Arc<Record>]) -> Vec<u64> {
        records.iter().map(|r| r.id.get()).collect()
    }

    /// Offers ids 1..=20 in a scrambled order.
    fn collect(position: Position, limit: usize) -> Vec<u64> {
        let mut collector = Collector::new(position, limit);
        for id in (1..=20).map(|i| (i * 7) % 20 + 1) {
            collector.offer(record(id, "general", "x"));
        }
        ids(&collector.finish())
    }

    #[test]
    fn positions_pick_their_records_whatever_the_order_offered() {
        assert_eq!(collect(Position::Latest, 3), [18, 19, 20]);
        assert_eq!(collect(Position::Before(MessageId::new(10)), 3), [7, 8, 9]);
        assert_eq!(
            collect(Position::Since(MessageId::new(10)), 3),
            [11, 12, 13]
        );
        assert_eq!(
            collect(Position::Around(MessageId::new(10)), 5),
            [8, 9, 10, 11, 12]
        );
        assert_eq!(
            collect(Position::Around(MessageId::new(10)), 4),
            [9, 10, 11, 12]
        );
        assert_eq!(collect(Position::Since(MessageId::new(18)), 5), [19, 20]);
        assert_eq!(collect(Position::Before(MessageId::new(2)), 5), [1]);
    }

    #[test]
    fn an_id_offered_twice_is_kept_once() {
        let mut collector = Collector::new(Position::Latest, 5);
        collector.offer(record(3, "general", "x"));
        collector.offer(record(3, "general", "x"));
        assert_eq!(ids(&collector.finish()), [3]);
    }

    #[test]
    fn wants_says_when_a_range_can_no_longer_matter() {
        let mut collector = Collector::new(Position::Latest, 2);
        assert!(collector.wants(MessageId::new(1), MessageId::new(5)));
        collector.offer(record(10, "general", "x"));
        collector.offer(record(11, "general", "x"));
        assert!(!collector.wants(MessageId::new(1), MessageId::new(9)));
        assert!(collector.wants(MessageId::new(1), MessageId::new(12)));
        let since = Collector::new(Position::Since(MessageId::new(50)), 2);
        assert!(!since.wants(MessageId::new(1), MessageId::new(50)));
        assert!(since.wants(MessageId::new(40), MessageId::new(51)));
    }

    #[test]
    fn search_matches_whole_words_ignoring_case() {
        let terms = SearchTerms::parse("Rust  async!").unwrap();
        assert_eq!(terms.words(), ["rust", "async"]);
        assert!(terms.matches("I like ASYNC rust."));
        assert!(!terms.matches("I like rusty async"));
        assert!(SearchTerms::parse("a ! ?").is_none());
    }

    #[test]
    fn scopes_hide_what_the_asker_may_not_read() {
        let mut private = (*record(1, "secret", "hello there")).clone();
        private.private = true;
        let room = Scope::Room {
            room: RoomName::parse("secret").unwrap(),
            private_ok: false,
        };
        assert!(!room.admits(&private));
        let search = Scope::Search {
            terms: SearchTerms::parse("hello").unwrap(),
            room: None,
            private_rooms: vec![RoomName::parse("secret").unwrap()],
        };
        assert!(search.admits(&private));
        let mut whisper = (*record(2, "general", "psst")).clone();
        whisper.kind = RecordKind::Whisper;
        whisper.to = Some(Nick::parse("Bob").unwrap());
        let bob = Scope::Whispers {
            me: Nick::parse("bob").unwrap(),
            other: Nick::parse("ALICE").unwrap(),
        };
        assert!(bob.admits(&whisper));
        let carol = Scope::Whispers {
            me: Nick::parse("carol").unwrap(),
            other: Nick::parse("alice").unwrap(),
        };
        assert!(!carol.admits(&whisper));
        assert!(!room.admits(&whisper));
    }
}
