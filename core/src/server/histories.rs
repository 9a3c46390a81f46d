//! Every room's recent history in memory, within two bounds: at most
//! `history_size` lines per room, and at most `history_bytes` for all rooms
//! together.
//!
//! The byte budget is what keeps memory flat whatever people do: without
//! it, 150 rooms each left behind with 100 lines of 4 KiB held 64 MiB that
//! nothing ever freed. When a push takes the total over the budget, the
//! store trims down to nine tenths of it in one pass, so the work is paid
//! once per tenth of the budget, not on every line:
//!
//! 1. histories of rooms that no longer exist go first, the one whose last
//!    line is oldest first (nobody is reading them);
//! 2. then every live room above a common cap loses its oldest lines, the
//!    cap chosen as high as the budget allows ("water filling"): small
//!    rooms keep everything, the biggest give up the most.
//!
//! The same bound applies to the number of histories kept: never more than
//! `max_rooms`; past it, the same dead rooms go first, down to nine tenths
//! of it (as far as dead rooms allow).
//!
//! Each room's history also knows whether it is *complete*: whether it
//! holds every chat line the room ever had (then `#history` is answered
//! from memory alone, whatever it asks). A room is complete until it loses
//! a line to trimming, its history is dropped, or the driver marks it
//! incomplete after a restore ([`Histories::mark_incomplete`]). Rooms with
//! no history in memory are complete unless remembered as incomplete; that
//! memory is bounded too: past [`REMEMBERED_INCOMPLETE`] names, every room
//! without a history in memory counts as incomplete.

use std::collections::VecDeque;
use std::mem::size_of;
use std::sync::Arc;

use ahash::{AHashMap, AHashSet};

use crate::history::Record;
use crate::ids::RoomName;

/// All rooms' recent lines, with their memory accounted for.
#[derive(Debug, Default)]
pub(crate) struct Histories {
    rooms: AHashMap<RoomName, RoomHistory>,
    /// What every kept record costs, by [`footprint`].
    bytes: usize,
    /// Rooms without a history in memory that have (or may have) stored
    /// lines: their next history starts incomplete.
    incomplete: AHashSet<RoomName>,
    /// Too many names were remembered in `incomplete`: every room without
    /// a history in memory counts as incomplete.
    all_absent_incomplete: bool,
}

/// How many rooms without a history in memory are remembered as
/// incomplete by name; past it, all of them count as incomplete.
pub(crate) const REMEMBERED_INCOMPLETE: usize = 65_536;

/// One room's recent lines, oldest first.
#[derive(Debug)]
struct RoomHistory {
    entries: VecDeque<Arc<Record>>,
    bytes: usize,
    /// Holds every line the room ever had.
    complete: bool,
}

/// The limits a [`Histories`] keeps to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HistoryBounds {
    /// Bytes for all rooms together.
    pub(crate) total_bytes: usize,
    /// Histories kept at most.
    pub(crate) rooms: usize,
}

impl Histories {
    /// Adds a line to its room's history, dropping that room's oldest line
    /// beyond `per_room`. Does not enforce the other bounds: call
    /// [`Histories::enforce`] after.
    pub(crate) fn push(&mut self, record: Arc<Record>, per_room: usize) {
        let size = footprint(&record);
        let (incomplete, all_absent) = (&mut self.incomplete, self.all_absent_incomplete);
        let room = self
            .rooms
            .entry(record.room.clone())
            .or_insert_with(|| RoomHistory {
                entries: VecDeque::new(),
                bytes: 0,
                complete: !(incomplete.remove(&record.room) || all_absent),
            });
        while room.entries.len() >= per_room.max(1) {
            let Some(oldest) = room.entries.pop_front() else {
                break;
            };
            let freed = footprint(&oldest);
            room.bytes -= freed;
            self.bytes -= freed;
            room.complete = false;
        }
        room.entries.push_back(record);
        room.bytes += size;
        self.bytes += size;
    }

    /// The last `count` lines of a room, oldest first.
    pub(crate) fn last(&self, room: &RoomName, count: usize) -> impl Iterator<Item = &Arc<Record>> {
        self.rooms.get(room).into_iter().flat_map(move |history| {
            let skip = history.entries.len().saturating_sub(count);
            history.entries.iter().skip(skip)
        })
    }

    /// A room's lines in memory, oldest first.
    pub(crate) fn entries(&self, room: &RoomName) -> impl Iterator<Item = &Arc<Record>> {
        self.rooms
            .get(room)
            .into_iter()
            .flat_map(|history| history.entries.iter())
    }

    /// The id of a room's oldest line in memory, if it has any.
    pub(crate) fn oldest(&self, room: &RoomName) -> Option<crate::ids::MessageId> {
        self.rooms
            .get(room)
            .and_then(|history| history.entries.front())
            .map(|record| record.id)
    }

    /// Whether memory holds every line the room ever had.
    pub(crate) fn is_complete(&self, room: &RoomName) -> bool {
        match self.rooms.get(room) {
            Some(history) => history.complete,
            None => !(self.all_absent_incomplete || self.incomplete.contains(room)),
        }
    }

    /// Notes that these rooms have stored lines memory does not hold
    /// (after a restore that kept only their tails, or none of them).
    pub(crate) fn mark_incomplete<'a>(&mut self, rooms: impl IntoIterator<Item = &'a RoomName>) {
        for room in rooms {
            match self.rooms.get_mut(room) {
                Some(history) => history.complete = false,
                None => self.remember_incomplete(room.clone()),
            }
        }
    }

    /// Notes that every room, now and later, may have stored lines memory
    /// does not hold: a node of a cluster, whose rooms' streams hold what
    /// was said before it started or while it followed them elsewhere.
    pub(crate) fn mark_all_incomplete(&mut self) {
        for history in self.rooms.values_mut() {
            history.complete = false;
        }
        self.incomplete = AHashSet::new();
        self.all_absent_incomplete = true;
    }

    /// Remembers a room without a history in memory as incomplete, within
    /// [`REMEMBERED_INCOMPLETE`] names.
    fn remember_incomplete(&mut self, room: RoomName) {
        if self.all_absent_incomplete {
            return;
        }
        if self.incomplete.len() >= REMEMBERED_INCOMPLETE {
            self.incomplete = AHashSet::new();
            self.all_absent_incomplete = true;
            return;
        }
        self.incomplete.insert(room);
    }

    /// Forgets a room's history; its stored lines are then beyond memory.
    pub(crate) fn remove(&mut self, room: &RoomName) {
        if let Some(history) = self.rooms.remove(room) {
            self.bytes -= history.bytes;
            self.remember_incomplete(room.clone());
        }
    }

    /// Bytes accounted to the kept lines.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Histories kept.
    pub(crate) fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Trims to within `bounds` if they are exceeded; `is_live` says which
    /// rooms exist (their histories are dropped last).
    pub(crate) fn enforce(&mut self, bounds: HistoryBounds, is_live: impl Fn(&RoomName) -> bool) {
        if self.bytes <= bounds.total_bytes && self.rooms.len() <= bounds.rooms {
            return;
        }
        let low_water = bounds.total_bytes / 10 * 9;
        // The room count gets the same slack, so a stream of new rooms
        // beyond the limit pays for one scan per tenth of it, not per room.
        let rooms_low_water = bounds.rooms - bounds.rooms / 10;
        self.drop_dead_rooms(low_water, rooms_low_water, &is_live);
        if self.bytes > low_water {
            self.trim_to(low_water);
        }
    }

    /// Drops whole histories of rooms that do not exist, stalest first,
    /// until within both limits or none is left.
    fn drop_dead_rooms(
        &mut self,
        bytes: usize,
        rooms: usize,
        is_live: &impl Fn(&RoomName) -> bool,
    ) {
        let mut dead: Vec<(u64, RoomName)> = self
            .rooms
            .iter()
            .filter(|(name, _)| !is_live(name))
            .map(|(name, history)| {
                let newest = history.entries.back().map_or(0, |r| r.id.get());
                (newest, name.clone())
            })
            .collect();
        dead.sort_unstable();
        for (_, name) in dead {
            if self.bytes <= bytes && self.rooms.len() <= rooms {
                break;
            }
            self.remove(&name);
        }
    }

    /// Lowers every room above a common cap to it, the cap being the
    /// highest that brings the total to at most `target`.
    fn trim_to(&mut self, target: usize) {
        let mut sizes: Vec<usize> = self.rooms.values().map(|h| h.bytes).collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let cap = water_level(&sizes, target);
        let mut freed = 0;
        for history in self.rooms.values_mut() {
            while history.bytes > cap {
                let Some(oldest) = history.entries.pop_front() else {
                    break;
                };
                let size = footprint(&oldest);
                history.bytes -= size;
                history.complete = false;
                freed += size;
            }
        }
        self.bytes -= freed;
        let emptied: Vec<RoomName> = self
            .rooms
            .iter()
            .filter(|(_, history)| history.entries.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for name in emptied {
            self.rooms.remove(&name);
            self.remember_incomplete(name);
        }
    }
}

/// The largest cap `c` with `sum(min(size, c)) <= target`, for sizes in
/// descending order.
fn water_level(descending: &[usize], target: usize) -> usize {
    // With the k largest rooms capped at c and the rest whole, the total is
    // k * c + rest; walk k upwards until the cap fits above the next size.
    let mut rest: usize = descending.iter().sum();
    for (k, &size) in descending.iter().enumerate() {
        rest -= size;
        let capped = k + 1;
        let cap = target.saturating_sub(rest) / capped;
        let next = descending.get(k + 1).copied().unwrap_or(0);
        if cap >= next {
            return cap.min(size);
        }
    }
    0
}

/// What one kept record costs in memory: the record, its text, the `Arc`
/// counts, and its slot in the deque.
pub(crate) fn footprint(record: &Record) -> usize {
    size_of::<Record>() + record.text.len() + 2 * size_of::<usize>() + size_of::<Arc<Record>>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::RecordKind;
    use crate::ids::{MessageId, Nick};

    fn record(id: u64, room: &str, text_len: usize) -> Arc<Record> {
        Arc::new(Record {
            id: MessageId::new(id),
            room: RoomName::parse(room).unwrap(),
            ts: 0,
            from: Nick::parse("alice").unwrap(),
            kind: RecordKind::Msg,
            text: "x".repeat(text_len),
            to: None,
            private: false,
        })
    }

    fn bounds(total_bytes: usize) -> HistoryBounds {
        HistoryBounds {
            total_bytes,
            rooms: 10_000,
        }
    }

    #[test]
    fn rooms_left_behind_count_against_the_budget_and_go_first() {
        let mut histories = Histories::default();
        let mut id = 0;
        // 150 rooms, each left with 100 lines of 4 KiB (the case).
        for room in 0..150 {
            for _ in 0..100 {
                id += 1;
                histories.push(record(id, &format!("r{room}"), 4096), 100);
            }
        }
        let live = RoomName::parse("r149").unwrap();
        let budget = 8 << 20;
        histories.enforce(bounds(budget), |name| *name == live);
        assert!(histories.bytes() <= budget, "{}", histories.bytes());
        // The live room kept all it had; dead rooms were dropped whole.
        assert_eq!(histories.last(&live, 1_000).count(), 100);
        let kept_dead = histories.len() - 1;
        assert!(kept_dead < 149);
        // The dead rooms kept are the most recently written ones.
        let stale = RoomName::parse("r0").unwrap();
        assert_eq!(histories.last(&stale, 1).count(), 0);
    }

    #[test]
    fn live_rooms_are_trimmed_biggest_first_to_a_common_cap() {
        let mut histories = Histories::default();
        for id in 0..50 {
            histories.push(record(id, "big", 1000), 100);
        }
        for id in 50..55 {
            histories.push(record(id, "small", 10), 100);
        }
        let small_bytes: usize = histories
            .last(&RoomName::parse("small").unwrap(), 100)
            .map(|r| footprint(r))
            .sum();
        let budget = 20_000;
        histories.enforce(bounds(budget), |_| true);
        assert!(histories.bytes() <= budget / 10 * 9);
        assert_eq!(
            histories
                .last(&RoomName::parse("small").unwrap(), 100)
                .count(),
            5
        );
        let big: Vec<u64> = histories
            .last(&RoomName::parse("big").unwrap(), 100)
            .map(|r| r.id.get())
            .collect();
        assert!(!big.is_empty() && big.len() < 50);
        // What is kept is the newest lines.
        assert_eq!(big.last(), Some(&49));
        assert_eq!(
            histories.bytes(),
            small_bytes + big.len() * footprint(&record(0, "big", 1000))
        );
    }

    #[test]
    fn the_number_of_histories_is_bounded_too() {
        let mut histories = Histories::default();
        for id in 0..30 {
            histories.push(record(id, &format!("r{id}"), 10), 100);
        }
        let rooms = HistoryBounds {
            rooms: 10,
            ..bounds(usize::MAX)
        };
        histories.enforce(rooms, |_| false);
        assert_eq!(histories.len(), 9);
        assert_eq!(
            histories.last(&RoomName::parse("r29").unwrap(), 1).count(),
            1
        );
    }

    #[test]
    fn per_room_lines_and_accounting_stay_exact() {
        let mut histories = Histories::default();
        for id in 0..10 {
            histories.push(record(id, "a", id as usize), 3);
        }
        let kept: Vec<u64> = histories
            .last(&RoomName::parse("a").unwrap(), 10)
            .map(|r| r.id.get())
            .collect();
        assert_eq!(kept, [7, 8, 9]);
        let expected: usize = [7, 8, 9]
            .iter()
            .map(|&i| footprint(&record(i, "a", i as usize)))
            .sum();
        assert_eq!(histories.bytes(), expected);
        histories.remove(&RoomName::parse("a").unwrap());
        assert_eq!(histories.bytes(), 0);
    }

    #[test]
    fn a_room_is_complete_until_trimmed_dropped_or_marked() {
        let name = |n: &str| RoomName::parse(n).unwrap();
        let mut histories = Histories::default();
        // Never written: nothing stored, complete.
        assert!(histories.is_complete(&name("a")));
        for id in 1..=3 {
            histories.push(record(id, "a", 1), 3);
        }
        assert!(histories.is_complete(&name("a")));
        assert_eq!(histories.oldest(&name("a")).map(MessageId::get), Some(1));
        // The fourth line pushes the first out.
        histories.push(record(4, "a", 1), 3);
        assert!(!histories.is_complete(&name("a")));
        // A dropped history stays incomplete when the room writes again.
        histories.push(record(5, "b", 1), 3);
        assert!(histories.is_complete(&name("b")));
        histories.remove(&name("b"));
        assert!(!histories.is_complete(&name("b")));
        histories.push(record(6, "b", 1), 3);
        assert!(!histories.is_complete(&name("b")));
        // Marked after a restore, with or without lines in memory.
        histories.push(record(7, "c", 1), 3);
        histories.mark_incomplete([&name("c"), &name("d")]);
        assert!(!histories.is_complete(&name("c")));
        assert!(!histories.is_complete(&name("d")));
        histories.push(record(8, "d", 1), 3);
        assert!(!histories.is_complete(&name("d")));
        // Trimmed to the budget: incomplete, even when emptied.
        let mut histories = Histories::default();
        for id in 0..50 {
            histories.push(record(id, "big", 1000), 100);
        }
        histories.push(record(50, "small", 10), 100);
        histories.enforce(bounds(20_000), |_| true);
        assert!(!histories.is_complete(&name("big")));
        assert!(histories.is_complete(&name("small")));
    }

    #[test]
    fn names_remembered_as_incomplete_are_bounded() {
        let mut histories = Histories::default();
        let names: Vec<RoomName> = (0..=REMEMBERED_INCOMPLETE)
            .map(|n| RoomName::parse(&format!("r{n}")).unwrap())
            .collect();
        histories.mark_incomplete(&names);
        assert!(histories.incomplete.len() <= REMEMBERED_INCOMPLETE);
        // Past the bound every room without lines in memory is incomplete.
        assert!(!histories.is_complete(&RoomName::parse("never").unwrap()));
    }

    #[test]
    fn water_level_is_the_highest_cap_that_fits() {
        assert_eq!(water_level(&[100, 50, 10], 160), 100);
        assert_eq!(water_level(&[100, 50, 10], 110), 50);
        assert_eq!(water_level(&[100, 50, 10], 70), 30);
        assert_eq!(water_level(&[100, 50, 10], 3), 1);
        assert_eq!(water_level(&[], 3), 0);
    }
}
