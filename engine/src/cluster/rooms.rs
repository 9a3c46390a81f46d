//! Followed rooms and their order: the core's [`Sequencer`] plus what the
//! bus needs around it, and reading a room's stream to fill a gap or catch
//! up after a reconnect.
//!
//! Both bus threads deliver lines (the subscriber what arrives on the
//! channel, the command thread what a follow or a reconnect reads from
//! the streams), so this state sits behind one mutex and lines are handed
//! to the sink while it is held: the order they are sequenced in is the
//! order the core hears them in.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chatd_core::MessageId;
use chatd_core::cluster::{BusEvent, BusLine, Sequencer, Verdict, keys};
use chatd_core::ids::RoomName;

use super::Sink;
use super::link::Link;

/// Stream entries read per XRANGE while filling a gap or catching up.
const READ_BATCH: usize = 512;

/// A line that arrived for a room whose follow has not finished (its tail
/// is not known yet): held until it has.
type Held = (MessageId, u64, BusLine);

/// A follow sent to Redis and not yet answered.
#[derive(Debug)]
struct Pending {
    /// Which follow: a later follow of the same room supersedes it.
    generation: u64,
    held: Vec<Held>,
}

/// The rooms this node follows and the order of each.
#[derive(Debug, Default)]
pub(crate) struct Rooms {
    sequencer: Sequencer,
    /// The rooms the core wants: re-followed after every reconnect.
    followed: BTreeSet<RoomName>,
    pending: HashMap<RoomName, Pending>,
    generations: u64,
}

/// How a finished follow positions its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// A new follow: lines up to the tail are history.
    Tail(MessageId),
    /// A re-follow after a reconnect: read the stream after what was
    /// shown (lines published while away were lost with the connection).
    /// The tail is the room's newest line now.
    CatchUp(MessageId),
}

impl Rooms {
    /// The core wants the room: remembered, and its lines held until
    /// [`Rooms::finish_follow`] with the generation returned.
    pub(crate) fn begin_follow(&mut self, room: &RoomName) -> u64 {
        self.followed.insert(room.clone());
        self.generations += 1;
        self.pending.insert(
            room.clone(),
            Pending {
                generation: self.generations,
                held: Vec::new(),
            },
        );
        self.generations
    }

    /// The core wants the room (while the bus is down): re-followed on
    /// reconnect.
    pub(crate) fn remember(&mut self, room: &RoomName) {
        self.followed.insert(room.clone());
    }

    /// Whether the core wants the room now.
    pub(crate) fn wants(&self, room: &RoomName) -> bool {
        self.followed.contains(room)
    }

    /// The core no longer wants the room.
    pub(crate) fn unfollow(&mut self, room: &RoomName) {
        self.followed.remove(room);
        self.pending.remove(room);
        self.sequencer.unfollow(room);
    }

    /// Every room the core wants, each marked pending (for a reconnect),
    /// with how its follow will start: a room the sequencer already
    /// follows catches up, a room followed while down starts at its tail.
    pub(crate) fn begin_refollow(&mut self) -> Vec<(RoomName, u64, bool)> {
        let rooms: Vec<RoomName> = self.followed.iter().cloned().collect();
        rooms
            .into_iter()
            .map(|room| {
                let known = self.sequencer.follows(&room);
                let generation = self.begin_follow(&room);
                (room, generation, known)
            })
            .collect()
    }

    /// Drops every pending follow (the connection failed before they were
    /// answered); the rooms stay wanted.
    pub(crate) fn abandon_pending(&mut self) {
        self.pending.clear();
    }

    /// The follow `generation` of `room` was answered: position the room,
    /// then offer what was held meanwhile. A superseded or cancelled
    /// follow does nothing.
    pub(crate) fn finish_follow(
        &mut self,
        conn: &mut redis::Connection,
        room: &RoomName,
        generation: u64,
        start: Start,
        sink: &Sink,
    ) -> redis::RedisResult<()> {
        if self
            .pending
            .get(room)
            .is_none_or(|pending| pending.generation != generation)
        {
            return Ok(());
        }
        match start {
            Start::Tail(tail) => self.sequencer.follow_from(room.clone(), tail),
            Start::CatchUp(tail) => {
                // Still pending while reading: what the subscriber gets
                // meanwhile is held, and offered after.
                let after = self
                    .sequencer
                    .positions()
                    .into_iter()
                    .find(|(r, _)| r == room)
                    .map_or(MessageId::new(0), |(_, last)| last);
                if tail < after {
                    // The room's stream is behind what this node showed:
                    // Redis lost lines. Go on from what it has.
                    tracing::warn!(%room, shown = %after, tail = %tail, "cluster: Redis lost lines of a room (restarted without its append-only file?); following from its tail");
                    self.sequencer.restart_from(room.clone(), tail);
                } else {
                    self.fill(conn, room, after, None, sink)?;
                }
            }
        }
        let held = self
            .pending
            .remove(room)
            .map(|pending| pending.held)
            .unwrap_or_default();
        for (id, prev, line) in held {
            self.offer(conn, room, id, prev, line, sink)?;
        }
        Ok(())
    }

    /// A line arrived on the channel: shown, dropped as a duplicate, held
    /// (its room's follow is not finished), or shown after the lines
    /// before it that were missed, read from the stream.
    pub(crate) fn arrived(
        &mut self,
        link: &mut Link,
        id: MessageId,
        prev: u64,
        line: BusLine,
        sink: &Sink,
    ) -> redis::RedisResult<()> {
        let room = line.record.room.clone();
        if let Some(pending) = self.pending.get_mut(&room) {
            pending.held.push((id, prev, line));
            return Ok(());
        }
        match self.sequencer.offer(&room, id, prev) {
            Verdict::Show => {
                show(id, line, sink);
                Ok(())
            }
            Verdict::Duplicate => Ok(()),
            Verdict::Gap { after } => {
                self.fill(link.get()?, &room, after, Some((id, prev, line)), sink)
            }
        }
    }

    /// Offers a line (held during a follow) with the stream at hand for a
    /// gap.
    fn offer(
        &mut self,
        conn: &mut redis::Connection,
        room: &RoomName,
        id: MessageId,
        prev: u64,
        line: BusLine,
        sink: &Sink,
    ) -> redis::RedisResult<()> {
        match self.sequencer.offer(room, id, prev) {
            Verdict::Show => {
                show(id, line, sink);
                Ok(())
            }
            Verdict::Duplicate => Ok(()),
            Verdict::Gap { after } => self.fill(conn, room, after, Some((id, prev, line)), sink),
        }
    }

    /// Shows the room's stream after `after`, up to `until`'s id (or to
    /// its end), in order; then `until` itself if the stream did not hold
    /// it.
    ///
    /// The stream is the room's order, so its entries are offered chained
    /// (each one's `prev` is the entry before): if the oldest were trimmed
    /// away (`MAXLEN`), what remains is shown rather than asked for again.
    fn fill(
        &mut self,
        conn: &mut redis::Connection,
        room: &RoomName,
        after: MessageId,
        until: Option<Held>,
        sink: &Sink,
    ) -> redis::RedisResult<()> {
        let end = until
            .as_ref()
            .map_or_else(|| "+".to_owned(), |(id, _, _)| format!("{id}-0"));
        let mut prev = after.get();
        loop {
            let entries = read_stream(conn, room, prev, &end, READ_BATCH)?;
            let count = entries.len();
            for (id, line) in entries {
                if self.sequencer.offer(room, id, prev) == Verdict::Show {
                    show(id, line, sink);
                }
                prev = id.get();
            }
            if count < READ_BATCH {
                break;
            }
        }
        if let Some((id, line_prev, line)) = until
            && id.get() > prev
        {
            // The stream no longer holds it (trimmed in between): the
            // line itself is still the room's next one now.
            self.sequencer
                .follow_from(room.clone(), MessageId::new(line_prev));
            if self.sequencer.offer(room, id, line_prev) == Verdict::Show {
                show(id, line, sink);
            }
        }
        Ok(())
    }
}

/// Hands a line to the core with its real id (the JSON in Redis says 0).
fn show(id: MessageId, mut line: BusLine, sink: &Sink) {
    line.record.id = id;
    sink(super::Delivery::Event(BusEvent::Line {
        id,
        line: Arc::new(line),
    }));
}

/// Up to `count` entries of a room's stream with ids above `after`, up to
/// `end` (an entry id or `+`), oldest first. Entries that do not decode
/// are skipped (logged): nothing but the bus writes there.
pub(crate) fn read_stream(
    conn: &mut redis::Connection,
    room: &RoomName,
    after: u64,
    end: &str,
    count: usize,
) -> redis::RedisResult<Vec<(MessageId, BusLine)>> {
    let start = if after == 0 {
        "-".to_owned()
    } else {
        format!("({after}-0")
    };
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(keys::room(room))
        .arg(start)
        .arg(end)
        .arg("COUNT")
        .arg(count)
        .query(conn)?;
    Ok(entries.into_iter().filter_map(decode_entry).collect())
}

/// A stream entry (`{id}-0`, field `m` = the line's JSON) as a line.
pub(crate) fn decode_entry((entry, fields): (String, Vec<String>)) -> Option<(MessageId, BusLine)> {
    let id = entry
        .split_once('-')
        .and_then(|(id, _)| id.parse::<u64>().ok())
        .filter(|&id| id > 0)?;
    let json = fields
        .chunks(2)
        .find(|pair| pair.first().map(String::as_str) == Some("m"))
        .and_then(|pair| pair.get(1))?;
    match serde_json::from_str::<BusLine>(json) {
        Ok(mut line) => {
            line.record.id = MessageId::new(id);
            Some((MessageId::new(id), line))
        }
        Err(error) => {
            tracing::warn!(%entry, %error, "skipped a stream entry that does not decode");
            None
        }
    }
}
