//! Tests of segments: rotation and sealing, reading backwards, fast
//! start, migration of old directories, retention.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatd_core::history::{self, Record, RecordKind};
use chatd_core::{MessageId, Nick, RoomName};

use super::index::SegmentIndex;
use super::retention::{HistoryLimits, Retention, RetentionSummary};
use super::segment::{BackLine, BackLines, CHUNK, index_path};
use super::sim::{Faults, Image, Rng, SimDisk};
use super::storage::{Entry, Opened, Storage};
use super::writer::{Layout, Writer};
use super::*;

fn message(id: u64, room: &str, ts: u64) -> Arc<Record> {
    Arc::new(Record {
        id: MessageId::new(id),
        room: RoomName::parse(room).unwrap(),
        ts,
        from: Nick::parse("alice").unwrap(),
        kind: RecordKind::Msg,
        text: format!("message {id}"),
        to: None,
        private: false,
    })
}

fn whisper(id: u64) -> Record {
    Record {
        kind: RecordKind::Whisper,
        to: Some(Nick::parse("bob").unwrap()),
        private: true,
        ..(*message(id, "general", id)).clone()
    }
}

fn ids(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.id.get()).collect()
}

/// Every record in the `.log` files of an image, by id (each once).
fn records_in(image: &Image) -> BTreeMap<u64, Record> {
    let mut all = BTreeMap::new();
    for (name, bytes) in image.iter().filter(|(name, _)| name.ends_with(".log")) {
        for record in history::recover(bytes).records {
            let id = record.id.get();
            assert!(all.insert(id, record).is_none(), "{id} twice ({name})");
        }
    }
    all
}

fn layout(segment_bytes: u64, retention: Retention) -> Layout {
    Layout {
        segment_bytes,
        retention,
        max_record: 1 << 20,
        index_every: super::writer::INDEX_EVERY,
    }
}

#[test]
fn backwards_lines_are_the_forward_lines_reversed_whatever_the_bytes() {
    let mut rng = Rng::new(11);
    for round in 0..300 {
        let mut bytes = Vec::new();
        for _ in 0..rng.below(12) {
            match rng.below(4) {
                0 => bytes.push(b'\n'),
                1 => bytes.extend(std::iter::repeat_n(b'y', rng.below(40) as usize)),
                _ => bytes.extend(history::encode(&message(1 + rng.below(99), "general", 5))),
            }
        }
        let max_line = 1 + rng.below(120) as usize;
        // Forward: each line with its offset; too long ones as overlong.
        let mut expected = Vec::new();
        let mut offset = 0;
        while offset < bytes.len() {
            let rest = &bytes[offset..];
            let (len, terminated) = match memchr::memchr(b'\n', rest) {
                Some(end) => (end, true),
                None => (rest.len(), false),
            };
            let total = len + usize::from(terminated);
            expected.push(if len > max_line {
                BackLine::Overlong {
                    offset: offset as u64,
                    len: total as u64,
                }
            } else {
                BackLine::Line {
                    offset: offset as u64,
                    bytes: rest[..len].to_vec(),
                    terminated,
                }
            });
            offset += total;
        }
        expected.reverse();
        let mut image = Image::new();
        image.insert("f.log".into(), bytes.clone());
        let mut disk = SimDisk::from_image(&image, 1);
        let chunk = 1 + rng.below(70) as usize;
        let mut lines = BackLines::with_chunk("f.log", bytes.len() as u64, max_line, chunk);
        let mut got = Vec::new();
        while let Some(line) = lines.prev(&mut disk).unwrap() {
            got.push(line);
        }
        // A line at most `max_line + chunk` long may come whole: what
        // matters is that offsets and whole lines agree.
        let normal = |lines: &[BackLine]| -> Vec<(u64, u64, Option<Vec<u8>>)> {
            lines
                .iter()
                .map(|line| match line {
                    BackLine::Line { bytes, .. } if bytes.len() <= max_line => {
                        (line.offset(), line.end(), Some(bytes.clone()))
                    }
                    _ => (line.offset(), line.end(), None),
                })
                .collect()
        };
        assert_eq!(
            normal(&got),
            normal(&expected),
            "round {round}, chunk {chunk}, max {max_line}"
        );
        assert!(lines.bytes_read <= bytes.len() as u64);
    }
}

#[test]
fn full_segments_are_sealed_with_an_index_and_the_next_is_named_after_its_first_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::with_layout(
        DirStorage::new(dir.path()),
        FsyncPolicy::Always,
        4,
        layout(500, Retention::default()),
    );
    let now = Instant::now();
    for id in 1..=60 {
        writer.write_batch(now, &[message(id, "general", id)]);
        writer.sync();
    }
    let mut storage = DirStorage::new(dir.path());
    let segments = list_segments(&mut storage, "general").unwrap();
    assert!(segments.len() >= 4, "{segments:?}");
    let mut all = Vec::new();
    for (at, segment) in segments.iter().enumerate() {
        let bytes = std::fs::read(dir.path().join(&segment.path)).unwrap();
        let records = history::recover(&bytes).records;
        assert_eq!(
            records[0].id.get(),
            segment.first_id,
            "named after its first record"
        );
        let index = std::fs::read(dir.path().join(index_path(&segment.path)));
        if at + 1 < segments.len() {
            assert!(segment.len >= 500, "sealed only when full");
            let index = SegmentIndex::parse(&index.unwrap()).expect("a valid index");
            let indexed: u32 = index.blocks.iter().map(|block| block.records).sum();
            assert_eq!(indexed as usize, records.len());
            assert_eq!(index.blocks[0].first_id.get(), segment.first_id);
        } else {
            assert!(index.is_err(), "the open segment has no index yet");
        }
        all.extend(records);
    }
    assert_eq!(ids(&all), (1..=60).collect::<Vec<u64>>());
    let names: Vec<String> = std::fs::read_dir(dir.path().join("general"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.iter().any(|name| name.ends_with(".tmp")),
        "{names:?}"
    );
    // Appends after a restart go on in the newest segment.
    drop(writer);
    let recovered = recover_dir(dir.path(), &RecoveryLimits::unlimited()).unwrap();
    assert_eq!(ids(&recovered.records), (1..=60).collect::<Vec<u64>>());
    assert!(recovered.incomplete.is_empty());
}

/// Segment files made up as they are read: `rooms` rooms of `per_room`
/// records each, every line `LINE` bytes, ids interleaved across rooms,
/// `PER_SEGMENT` records (512 KiB) per segment. Nothing is held; reads are counted.
struct Generated {
    rooms: u64,
    per_room: u64,
    bytes_read: u64,
    largest_read: usize,
}

const LINE: u64 = 128;
const PER_SEGMENT: u64 = 4096;

impl Generated {
    fn id(&self, room: u64, index: u64) -> u64 {
        index * self.rooms + room + 1
    }

    fn line(&self, room: u64, index: u64) -> Vec<u8> {
        let id = self.id(room, index);
        let mut record = (*message(id, &format!("room{room}"), id)).clone();
        record.text.clear();
        let bare = history::encode(&record).len() as u64;
        record.text = "x".repeat((LINE - bare) as usize);
        let line = history::encode(&record);
        assert_eq!(line.len() as u64, LINE);
        line
    }

    /// Room and first record index of a segment path.
    fn parse(&self, name: &str) -> io::Result<(u64, u64)> {
        let bad = || io::Error::from(io::ErrorKind::NotFound);
        let (room, file) = name.split_once('/').ok_or_else(bad)?;
        let room: u64 = room
            .strip_prefix("room")
            .ok_or_else(bad)?
            .parse()
            .map_err(|_| bad())?;
        let first = parse_segment_name(file).ok_or_else(bad)?;
        Ok((room, (first - room - 1) / self.rooms))
    }

    fn segment_records(&self, first: u64) -> u64 {
        PER_SEGMENT.min(self.per_room - first)
    }
}

impl Storage for Generated {
    type Log = <SimDisk as Storage>::Log;
    type Reader = io::Empty;

    fn open(&mut self, _: &str) -> io::Result<Opened<Self::Log>> {
        Err(io::Error::other("read-only"))
    }
    fn create_dir(&mut self, _: &str) -> io::Result<bool> {
        Err(io::Error::other("read-only"))
    }
    fn sync_dir(&mut self, _: &str) -> io::Result<()> {
        Ok(())
    }
    fn list(&mut self, dir: &str) -> io::Result<Vec<Entry>> {
        if dir.is_empty() {
            return Ok((0..self.rooms)
                .map(|room| Entry {
                    name: format!("room{room}"),
                    dir: true,
                    len: 0,
                })
                .collect());
        }
        let room: u64 = dir
            .trim_start_matches("room")
            .parse()
            .map_err(io::Error::other)?;
        Ok((0..self.per_room)
            .step_by(PER_SEGMENT as usize)
            .map(|first| Entry {
                name: segment_name(self.id(room, first)),
                dir: false,
                len: self.segment_records(first) * LINE,
            })
            .collect())
    }
    fn read(&mut self, _: &str) -> io::Result<io::Empty> {
        Err(io::Error::other("not read whole"))
    }
    fn read_at(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let (room, first) = self.parse(name)?;
        let len = self.segment_records(first) * LINE;
        let end = len.min(offset + buf.len() as u64);
        let mut at = offset;
        while at < end {
            let line = self.line(room, first + at / LINE);
            let from = (at % LINE) as usize;
            let n = (LINE as usize - from).min((end - at) as usize);
            let to = (at - offset) as usize;
            buf[to..to + n].copy_from_slice(&line[from..from + n]);
            at += n as u64;
        }
        let read = end.saturating_sub(offset);
        self.bytes_read += read;
        self.largest_read = self.largest_read.max(read as usize);
        Ok(read as usize)
    }
    fn len(&mut self, name: &str) -> io::Result<u64> {
        let (_, first) = self.parse(name)?;
        Ok(self.segment_records(first) * LINE)
    }
    fn remove(&mut self, _: &str) -> io::Result<()> {
        Err(io::Error::other("read-only"))
    }
    fn rename(&mut self, _: &str, _: &str) -> io::Result<()> {
        Err(io::Error::other("read-only"))
    }
    fn write_file(&mut self, _: &str, _: &[u8]) -> io::Result<()> {
        Err(io::Error::other("read-only"))
    }
}

#[test]
fn start_up_reads_only_the_tails_of_ten_million_records_in_200_rooms() {
    let mut storage = Generated {
        rooms: 200,
        per_room: 50_000,
        bytes_read: 0,
        largest_read: 0,
    };
    let on_disk = storage.rooms * storage.per_room * LINE;
    let limits = RecoveryLimits {
        max_rooms: 10_000,
        history_size: 100,
        history_bytes: 64 << 20,
        max_record_bytes: 6 * 4096 + 4096,
    };
    let recovered = recover(&mut storage, &limits).unwrap();
    let rooms = storage.rooms;
    assert_eq!(recovered.records.len() as u64, rooms * 100);
    for room in 0..rooms {
        let kept: Vec<u64> = recovered
            .records
            .iter()
            .filter(|r| r.room.as_str() == format!("room{room}"))
            .map(|r| r.id.get())
            .collect();
        let expected: Vec<u64> = (storage.per_room - 100..storage.per_room)
            .map(|index| storage.id(room, index))
            .collect();
        assert_eq!(kept, expected, "room{room}");
    }
    // Every room has older records on disk only.
    assert_eq!(recovered.incomplete.len() as u64, rooms);
    assert_eq!(recovered.next_id, rooms * storage.per_room + 1);
    // The bytes read: a few chunks per room, not what is on disk.
    assert!(
        storage.bytes_read <= rooms * 2 * CHUNK as u64,
        "read {} of {on_disk} bytes",
        storage.bytes_read
    );
    assert_eq!(recovered.bytes_read, storage.bytes_read);
    assert!(storage.largest_read <= CHUNK, "reads in bounded chunks");
}

/// Writes records through the writer on a simulated disk.
fn written(records: &[Arc<Record>], segment_bytes: u64) -> SimDisk {
    let disk = SimDisk::new(5, Faults::default());
    let mut writer = Writer::with_layout(
        disk.clone(),
        FsyncPolicy::Always,
        8,
        layout(segment_bytes, Retention::default()),
    );
    for record in records {
        writer.write_batch(Instant::now(), std::slice::from_ref(record));
    }
    writer.sync();
    disk
}

#[test]
fn start_up_keeps_the_newest_rooms_within_the_memory_budget_and_lists_the_rest() {
    // Room "a" written first, "d" last; "e" has two records only.
    let mut records = Vec::new();
    let mut id = 0;
    for room in ["a", "b", "c", "d"] {
        for _ in 0..30 {
            id += 1;
            records.push(message(id, room, id));
        }
    }
    records.push(message(200, "e", 200));
    records.push(message(201, "e", 201));
    let mut disk = written(&records, 1000);
    let one = footprint(&message(100, "d", 100));
    let limits = RecoveryLimits {
        max_rooms: 100,
        history_size: 20,
        // "e" whole, 20 of "d", and part of "c".
        history_bytes: 2 * one + 20 * one + 5 * one + one / 2,
        max_record_bytes: 1 << 20,
    };
    let recovered = recover(&mut disk, &limits).unwrap();
    let per_room = |name: &str| -> Vec<u64> {
        recovered
            .records
            .iter()
            .filter(|r| r.room.as_str() == name)
            .map(|r| r.id.get())
            .collect()
    };
    assert_eq!(per_room("e"), [200, 201]);
    assert_eq!(per_room("d"), (101..=120).collect::<Vec<u64>>());
    assert_eq!(per_room("c"), (86..=90).collect::<Vec<u64>>());
    assert!(per_room("b").is_empty() && per_room("a").is_empty());
    let incomplete: Vec<&str> = recovered.incomplete.iter().map(RoomName::as_str).collect();
    assert_eq!(incomplete, ["a", "b", "c", "d"]);
    assert_eq!(recovered.next_id, 202);
}

/// An old data directory: flat logs, one with a torn tail, whispers, one
/// log with nothing good in it, and id reservations.
fn old_directory() -> (Image, BTreeSet<u64>) {
    let mut image = Image::new();
    let mut good = BTreeSet::new();
    let mut general = Vec::new();
    for id in [3, 5, 8] {
        general.extend(history::encode(&message(id, "general", id)));
        good.insert(id);
    }
    general.extend_from_slice(&history::encode(&message(9, "general", 9))[..30]);
    image.insert("general.log".into(), general);
    let rust: Vec<u8> = [4, 6]
        .into_iter()
        .flat_map(|id| {
            good.insert(id);
            history::encode(&message(id, "rust", id))
        })
        .collect();
    image.insert("rust.log".into(), rust);
    image.insert("_whispers.log".into(), history::encode(&whisper(7)));
    good.insert(7);
    image.insert("empty.log".into(), b"garbage without a record\n".to_vec());
    image.insert(
        IDS_LOG.into(),
        history::encode(&Record::reservation(MessageId::new(1025), 0)),
    );
    (image, good)
}

#[test]
fn an_old_flat_directory_is_migrated_to_segments_once() {
    let dir = tempfile::tempdir().unwrap();
    let (image, good) = old_directory();
    for (name, bytes) in &image {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let migration = migrate(&mut DirStorage::new(dir.path()), 1 << 20).unwrap();
    assert_eq!(
        migration,
        Migration {
            logs: 3,
            records: 6,
            empty: 1,
        }
    );
    // The torn tail was cut before the move.
    let general = read_history(dir.path(), "general").unwrap();
    assert!(history::recover(&general).torn_tail.is_none());
    // Migrated at the next start otherwise; nothing left to do now.
    let recovered = recover_dir(dir.path(), &RecoveryLimits::unlimited()).unwrap();
    assert_eq!((recovered.migrated, recovered.torn), (0, 0));
    assert_eq!(ids(&recovered.records), [3, 5, 8, 4, 6]);
    assert_eq!(recovered.next_id, 1026);
    let exists = |name: &str| dir.path().join(name).exists();
    for old in ["general.log", "rust.log", "_whispers.log", "empty.log"] {
        assert!(!exists(old), "{old}");
    }
    assert!(exists(IDS_LOG));
    for segment in [
        "general/00000000000000000003",
        "rust/00000000000000000004",
        "_whispers/00000000000000000007",
    ] {
        assert!(exists(&format!("{segment}.log")), "{segment}");
        let index = std::fs::read(dir.path().join(format!("{segment}.idx"))).unwrap();
        assert!(SegmentIndex::parse(&index).is_some(), "{segment}");
    }
    assert_eq!(
        read_history(dir.path(), WHISPERS_DIR).unwrap(),
        history::encode(&whisper(7))
    );
    // Recovery migrates too, with its one info line.
    let mut disk = SimDisk::from_image(&image, 1);
    let recovered = recover(&mut disk, &RecoveryLimits::unlimited()).unwrap();
    assert_eq!(recovered.migrated, 3);
    assert_eq!(
        records_in(&disk.snapshot())
            .keys()
            .copied()
            .collect::<BTreeSet<u64>>(),
        good.iter().copied().chain([1025]).collect()
    );
}

#[test]
fn a_crash_at_any_point_of_a_migration_is_finished_by_the_next_start() {
    let (image, good) = old_directory();
    let everything: BTreeSet<u64> = good.iter().copied().chain([1025]).collect();
    let probe = SimDisk::from_image(&image, 1);
    migrate(&mut probe.clone(), 1 << 20).unwrap();
    let total = probe.ops();
    let mut both_present = 0;
    for cut in 0..=total {
        for seed in 1..=4 {
            let disk = SimDisk::from_image(&image, seed);
            disk.cut_before(cut);
            migrate(&mut disk.clone(), 1 << 20).unwrap();
            let crashed = disk.image();
            both_present += usize::from(
                crashed.contains_key("general.log") && crashed.contains_key("general/"),
            );
            let mut restarted = SimDisk::from_image(&crashed, seed);
            let recovered = recover(&mut restarted, &RecoveryLimits::unlimited()).unwrap();
            assert_eq!(ids(&recovered.records), [3, 5, 8, 4, 6], "cut {cut}");
            let after = restarted.snapshot();
            let found: BTreeSet<u64> = records_in(&after).keys().copied().collect();
            assert_eq!(found, everything, "cut {cut}");
            let flat: Vec<&String> = after
                .keys()
                .filter(|name| !name.contains('/') && *name != IDS_LOG)
                .collect();
            assert!(flat.is_empty(), "cut {cut}: {flat:?}");
        }
    }
    assert!(
        both_present > 0,
        "some cut leaves the old file beside the new directory"
    );
}

/// A disk with `rooms` rooms of records (ts = id * 1000), small segments,
/// and a reservation above every id.
fn retention_disk(records: &[Arc<Record>]) -> SimDisk {
    let mut all = records.to_vec();
    all.push(Arc::new(Record::reservation(MessageId::new(1_000_000), 0)));
    written(&all, 400)
}

fn retain(disk: &SimDisk, retention: Retention, now_ms: u64) -> RetentionSummary {
    let mut writer =
        Writer::with_layout(disk.clone(), FsyncPolicy::Always, 8, layout(400, retention));
    writer.enforce_retention(Instant::now(), now_ms)
}

fn segments_of(disk: &SimDisk, room: &str) -> Vec<u64> {
    list_segments(&mut disk.clone(), room)
        .unwrap()
        .iter()
        .map(|s| s.first_id)
        .collect()
}

fn kept_ids(disk: &SimDisk, room: &str) -> Vec<u64> {
    let image = disk.snapshot();
    let mut ids: Vec<u64> = records_in(&image)
        .into_values()
        .filter(|r| r.room.as_str() == room && r.kind == RecordKind::Msg)
        .map(|r| r.id.get())
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn retention_by_age_deletes_expired_segments_but_not_a_newest_one_with_live_records() {
    let records: Vec<Arc<Record>> = (1..=40)
        .map(|id| message(id, "general", id * 1000))
        .collect();
    let disk = retention_disk(&records);
    let segments = segments_of(&disk, "general");
    assert!(segments.len() >= 4, "{segments:?}");
    let newest = *segments.last().unwrap();
    // Everything up to record 39 has expired; 40, in the newest segment, not.
    let age = Duration::from_secs(10);
    let retention = Retention {
        default: HistoryLimits {
            max_age: Some(age),
            max_bytes: None,
        },
        ..Retention::default()
    };
    let summary = retain(&disk, retention.clone(), 49_500);
    assert_eq!(summary.by_age, segments.len() - 1);
    assert_eq!(segments_of(&disk, "general"), [newest]);
    assert!(kept_ids(&disk, "general").contains(&40));
    // Once all of it has expired, the newest segment goes too.
    let summary = retain(&disk, retention, 50_001);
    assert_eq!(summary.by_age, 1);
    assert!(segments_of(&disk, "general").is_empty());
    assert!(
        disk.snapshot().keys().all(|name| !name.ends_with(".idx")),
        "indexes go with their segments"
    );
}

#[test]
fn a_room_over_its_size_deletes_its_oldest_segments_never_its_newest() {
    let mut records = Vec::new();
    for id in 1..=60 {
        let room = if id % 3 == 0 { "rust" } else { "general" };
        records.push(message(id, room, id));
    }
    let disk = retention_disk(&records);
    let general = segments_of(&disk, "general");
    let rust = segments_of(&disk, "rust");
    let retention = Retention {
        default: HistoryLimits {
            max_age: None,
            max_bytes: Some(1),
        },
        // Rust may keep everything.
        overrides: [(
            "rust".to_owned(),
            HistoryLimits {
                max_age: None,
                max_bytes: Some(1 << 30),
            },
        )]
        .into(),
        ..Retention::default()
    };
    let plan = super::retention::plan(&mut disk.clone(), &retention, u64::MAX, 1 << 20).unwrap();
    assert!(
        plan.iter().all(|deletion| deletion.next_first_id.is_some()),
        "never a newest segment: {plan:?}"
    );
    let summary = retain(&disk, retention, u64::MAX);
    assert_eq!(summary.by_room_size, general.len() - 1);
    assert_eq!(segments_of(&disk, "general"), [*general.last().unwrap()]);
    assert_eq!(segments_of(&disk, "rust"), rust);
    // Oldest first: what is left is the newest records.
    let kept = kept_ids(&disk, "general");
    assert!(kept.contains(&59) && !kept.contains(&1), "{kept:?}");
}

#[test]
fn over_the_total_size_the_oldest_segments_of_all_rooms_go_first() {
    let mut records = Vec::new();
    for id in 1..=80 {
        let room = if id <= 40 { "old" } else { "new" };
        records.push(message(id, room, id));
    }
    let disk = retention_disk(&records);
    let old = segments_of(&disk, "old");
    let new = segments_of(&disk, "new");
    let total: u64 = disk
        .snapshot()
        .iter()
        .filter(|(name, _)| name.starts_with("old/") || name.starts_with("new/"))
        .map(|(_, bytes)| bytes.len() as u64)
        .sum::<u64>()
        + disk.snapshot()[IDS_LOG].len() as u64;
    // Room for about half of it: every older segment of "old" goes (its
    // newest stays), then "new" keeps more than "old".
    let retention = Retention {
        max_bytes: Some(total / 2),
        ..Retention::default()
    };
    let summary = retain(&disk, retention, u64::MAX);
    assert!(summary.by_total_size >= old.len() - 1, "{summary:?}");
    assert_eq!(segments_of(&disk, "old"), [*old.last().unwrap()]);
    let left = segments_of(&disk, "new");
    assert!(left.ends_with(&[*new.last().unwrap()]));
    assert!(
        summary
            .deleted
            .windows(2)
            .all(|w| w[0].first_id < w[1].first_id),
        "oldest first"
    );
}

#[test]
fn retention_deletes_nothing_not_yet_under_a_durable_id_reservation() {
    // No reservation at all (an old directory without _ids.log).
    let records: Vec<Arc<Record>> = (1..=40).map(|id| message(id, "general", id)).collect();
    let disk = written(&records, 400);
    let before = segments_of(&disk, "general");
    let retention = Retention {
        default: HistoryLimits {
            max_age: Some(Duration::from_millis(1)),
            max_bytes: Some(1),
        },
        max_bytes: Some(1),
        ..Retention::default()
    };
    let summary = retain(&disk, retention, u64::MAX);
    assert_eq!(summary.segments, 0);
    assert_eq!(segments_of(&disk, "general"), before);
}

#[test]
fn retention_runs_on_the_writer_thread() {
    let dir = tempfile::tempdir().unwrap();
    let old: Vec<Arc<Record>> = (1..=40).map(|id| message(id, "general", id)).collect();
    let reports = Arc::new(Mutex::new(Vec::new()));
    let write = |records: &[Arc<Record>], options: WriterOptions| {
        let sink = reports.clone();
        let writer = HistoryWriter::start(dir.path(), options, move |report| {
            sink.lock().unwrap().push(report)
        })
        .unwrap();
        for record in records {
            writer.append(record.clone());
        }
        writer
    };
    let options = |retention: Retention| WriterOptions {
        segment_bytes: 400,
        retention,
        ..WriterOptions::new(FsyncPolicy::Always)
    };
    // One writer per ten records, so that each finds the segment before
    // full and seals it.
    for ten in old.chunks(10) {
        write(ten, options(Retention::default())).finish();
    }
    let reservation = Arc::new(Record::reservation(MessageId::new(1025), 0));
    write(&[reservation], options(Retention::default())).finish();
    let count = |dir: &Path| {
        list_segments(&mut DirStorage::new(dir), "general")
            .unwrap()
            .len()
    };
    assert!(count(dir.path()) > 2);
    // Records from 1970 are older than a day: the writer deletes them
    // when it starts, without being asked.
    let writer = write(
        &[],
        options(Retention {
            default: HistoryLimits {
                max_age: Some(Duration::from_secs(86_400)),
                max_bytes: None,
            },
            ..Retention::default()
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(dir.path()) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    writer.finish();
    assert_eq!(count(dir.path()), 0);
}

#[test]
fn index_files_a_crash_left_behind_are_removed_at_start() {
    let mut image = Image::new();
    let segment = "general/00000000000000000001.log";
    image.insert(segment.into(), history::encode(&message(1, "general", 1)));
    image.insert("general/00000000000000000001.idx".into(), vec![1, 2, 3]);
    image.insert("general/00000000000000000001.idx.tmp".into(), vec![4]);
    image.insert("general/00000000000000000005.idx".into(), vec![5]);
    image.insert("general/notes.txt".into(), vec![6]);
    let mut disk = SimDisk::from_image(&image, 1);
    let recovered = recover(&mut disk, &RecoveryLimits::unlimited()).unwrap();
    assert_eq!(ids(&recovered.records), [1]);
    let left: Vec<String> = disk
        .snapshot()
        .into_keys()
        .filter(|name| name.starts_with("general/") && name != "general/")
        .collect();
    assert_eq!(
        left,
        [
            "general/00000000000000000001.idx",
            "general/00000000000000000001.log",
            "general/notes.txt",
        ]
    );
}

/// A record of `room` with a few words of a small vocabulary (and `extra`).
fn worded(id: u64, room: &str, extra: &str) -> Arc<Record> {
    const WORDS: [&str; 12] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliet", "kilo", "lima",
    ];
    let mut text: Vec<&str> = (0..5)
        .map(|n| WORDS[((id * 7 + n * 5) % WORDS.len() as u64) as usize])
        .collect();
    if !extra.is_empty() {
        text.push(extra);
    }
    Arc::new(Record {
        text: text.join(" "),
        ..(*message(id, room, 1_795_000_000_000 + id)).clone()
    })
}

/// The index of a segment on a simulated disk, if there is a valid one.
fn index_of(disk: &mut SimDisk, segment: &str) -> Option<SegmentIndex> {
    let len = disk.len(&index_path(segment)).ok()?;
    let mut bytes = vec![0; len as usize];
    disk.read_at(&index_path(segment), 0, &mut bytes).ok()?;
    SegmentIndex::parse(&bytes)
}

/// The bytes of a file on a simulated disk.
fn bytes_of(disk: &SimDisk, name: &str) -> Vec<u8> {
    disk.snapshot().get(name).cloned().unwrap_or_default()
}

fn covered(index: &SegmentIndex) -> u64 {
    index
        .blocks
        .last()
        .map_or(0, |block| block.offset + block.len)
}

fn sim_layout(segment_bytes: u64) -> Layout {
    Layout {
        segment_bytes,
        ..Layout::default()
    }
}

#[test]
fn a_room_that_goes_quiet_has_its_open_segment_indexed_soon_after() {
    let disk = SimDisk::new(1, Faults::default());
    let mut writer = Writer::with_layout(disk.clone(), FsyncPolicy::Always, 4, sim_layout(4 << 20));
    let start = Instant::now();
    let segment = "general/00000000000000000001.log";
    let batch: Vec<Arc<Record>> = (1..=3).map(|id| worded(id, "general", "")).collect();
    writer.write_batch(start, &batch);
    writer.sync();
    let mut storage = disk.clone();
    assert!(
        index_of(&mut storage, segment).is_none(),
        "far below 256 KiB"
    );
    assert!(!writer.index_due(start + writer::INDEX_AFTER / 2));
    assert!(
        writer
            .wait_time(start)
            .is_some_and(|wait| wait <= writer::INDEX_AFTER),
        "the writer wakes up for it"
    );
    assert!(writer.index_due(start + writer::INDEX_AFTER));
    writer.write_outdated_indexes();
    let index = index_of(&mut storage, segment).expect("indexed once due");
    assert_eq!(covered(&index), bytes_of(&disk, segment).len() as u64);
    assert!(
        !writer.index_due(start + writer::INDEX_AFTER * 2),
        "nothing new since"
    );
}

#[test]
fn the_open_segment_gets_an_index_every_256_kib_and_at_shutdown() {
    let disk = SimDisk::new(1, Faults::default());
    let mut writer = Writer::with_layout(disk.clone(), FsyncPolicy::Always, 4, sim_layout(4 << 20));
    let now = Instant::now();
    let segment = "general/00000000000000000001.log";
    let mut id = 0;
    let mut last_covered = 0;
    let mut writes = 0;
    while bytes_of(&disk, segment).len() < 700 * 1024 {
        let batch: Vec<Arc<Record>> = (0..20)
            .map(|_| {
                id += 1;
                worded(id, "general", "")
            })
            .collect();
        writer.write_batch(now, &batch);
        writer.sync();
        let len = bytes_of(&disk, segment).len() as u64;
        let mut storage = disk.clone();
        match index_of(&mut storage, segment) {
            None => assert!(len < writer::INDEX_EVERY, "no index at {len} bytes"),
            Some(index) => {
                let end = covered(&index);
                assert!(end <= len, "only written bytes are described");
                assert!(len - end < writer::INDEX_EVERY + 4096, "{end} of {len}");
                assert!(end >= last_covered);
                if end > last_covered {
                    writes += 1;
                }
                last_covered = end;
                let bytes = bytes_of(&disk, segment);
                assert_eq!(
                    super::index::hidden_records(&bytes, &index),
                    Vec::<u64>::new()
                );
            }
        }
    }
    assert_eq!(writes, 2, "written at 256 KiB and 512 KiB");
    assert!(last_covered < bytes_of(&disk, segment).len() as u64);
    writer.finish();
    let mut storage = disk.clone();
    let index = index_of(&mut storage, segment).expect("an index at shutdown");
    let bytes = bytes_of(&disk, segment);
    assert_eq!(covered(&index), bytes.len() as u64, "all of it at shutdown");
    let records: u32 = index.blocks.iter().map(|block| block.records).sum();
    assert_eq!(u64::from(records), id);
    assert_eq!(
        super::index::hidden_records(&bytes, &index),
        Vec::<u64>::new()
    );
}

#[test]
fn sealing_writes_the_index_built_while_appending_without_reading_the_segment() {
    let disk = SimDisk::new(1, Faults::default());
    let mut writer = Writer::with_layout(disk.clone(), FsyncPolicy::Always, 4, sim_layout(100_000));
    let now = Instant::now();
    let mut id = 0;
    let mut storage = disk.clone();
    while list_segments(&mut storage, "general").unwrap().len() < 3 {
        id += 1;
        writer.write_batch(now, &[worded(id, "general", "")]);
        writer.sync();
    }
    assert_eq!(disk.log_bytes_read(), 0, "no segment read back");
    let segments = list_segments(&mut storage, "general").unwrap();
    for sealed in &segments[..2] {
        let bytes = bytes_of(&disk, &sealed.path);
        let written = bytes_of(&disk, &index_path(&sealed.path));
        assert_eq!(
            written,
            super::index::build_for_segment(&bytes),
            "{}",
            sealed.path
        );
    }
}

#[test]
fn a_segment_opened_again_seeds_its_index_from_the_idx_and_reads_only_the_rest() {
    for damage in ["none", "garbage", "past the end"] {
        let disk = SimDisk::new(1, Faults::default());
        let layout = Layout {
            index_every: 64 * 1024,
            ..sim_layout(4 << 20)
        };
        let mut writer = Writer::with_layout(disk.clone(), FsyncPolicy::Always, 1, layout);
        let now = Instant::now();
        let segment = "general/00000000000000000001.log";
        let mut id = 0;
        while bytes_of(&disk, segment).len() < 300 * 1024 {
            id += 1;
            writer.write_batch(now, &[worded(id, "general", "")]);
            writer.sync();
        }
        // Another room: the LRU (one open log) closes general, writing its index.
        id += 1;
        writer.write_batch(now, &[worded(id, "other", "")]);
        writer.sync();
        let mut storage = disk.clone();
        let before = index_of(&mut storage, segment).expect("written at close");
        let len = bytes_of(&disk, segment).len() as u64;
        assert_eq!(covered(&before), len);
        match damage {
            "garbage" => storage
                .write_file(&index_path(segment), b"CHATDIX1 not really")
                .unwrap(),
            "past the end" => {
                let mut longer = bytes_of(&disk, segment);
                longer.extend_from_slice(&history::encode(&worded(999_999, "general", "")));
                storage
                    .write_file(
                        &index_path(segment),
                        &super::index::build_for_segment(&longer),
                    )
                    .unwrap();
            }
            _ => {}
        }
        let read_before = disk.log_bytes_read();
        id += 1;
        writer.write_batch(now, &[worded(id, "general", "zulu")]);
        writer.sync();
        let read = disk.log_bytes_read() - read_before;
        if damage == "none" {
            assert_eq!(read, 0, "nothing after the index to read");
        } else {
            assert!(read >= len, "{damage}: scanned whole ({read} of {len})");
            // Replaced at once (more than `index_every` undescribed).
            let fresh = index_of(&mut storage, segment).expect("a fresh index");
            assert_eq!(covered(&fresh), bytes_of(&disk, segment).len() as u64);
        }
        writer.finish();
        let after = index_of(&mut storage, segment).expect("an index at shutdown");
        let bytes = bytes_of(&disk, segment);
        assert_eq!(covered(&after), bytes.len() as u64, "{damage}");
        assert_eq!(
            super::index::hidden_records(&bytes, &after),
            Vec::<u64>::new()
        );
        if damage == "none" {
            assert_eq!(after.blocks[..before.blocks.len()], before.blocks[..]);
            let last = after.blocks.last().unwrap();
            assert_eq!(
                (last.offset, last.records),
                (len, 1),
                "a new block at the end"
            );
            assert!(last.may_contain_all(&["zulu".into()]));
        }
    }
}

/// A search over rooms whose newest (open) segments hold everything reads
/// the blocks whose bloom may match and the bytes no index describes yet,
/// not the segments whole.
#[test]
fn a_search_over_open_segments_reads_only_the_blocks_that_may_match() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::with_layout(
        DirStorage::new(dir.path()),
        FsyncPolicy::Never,
        64,
        layout(4 << 20, Retention::default()),
    );
    let now = Instant::now();
    let rooms = 12;
    let mut id = 0;
    let mut total = 0;
    let mut needles = Vec::new();
    for round in 0..2600 {
        let batch: Vec<Arc<Record>> = (0..rooms)
            .map(|room| {
                id += 1;
                let needle = (room == 3 && round == 700) || (room == 7 && round == 2590);
                if needle {
                    needles.push(id);
                }
                let record = worded(
                    id,
                    &format!("room{room}"),
                    if needle { "needle" } else { "" },
                );
                total += history::encode(&record).len() as u64;
                record
            })
            .collect();
        writer.write_batch(now, &batch);
    }
    writer.sync();
    let search = || chatd_core::history_query::HistoryQuery {
        request: chatd_core::history_query::QueryId(1),
        conn: {
            let now = Instant::now();
            let mut server =
                chatd_core::Server::new(chatd_core::Config::default(), now, 0).unwrap();
            server.accept(now, "127.0.0.1:1".parse().unwrap()).unwrap()
        },
        scope: chatd_core::history_query::Scope::Search {
            terms: chatd_core::history_query::SearchTerms::parse("needle").unwrap(),
            room: None,
            private_rooms: Vec::new(),
        },
        position: chatd_core::history_query::Position::Latest,
        limit: 10,
        below: None,
    };
    let found = |dir: &Path| {
        let (answer, read) = reader::answer_counted(dir, &search(), None, reader::Limits::DEFAULT);
        let mut ids: Vec<u64> = answer.records.iter().map(|r| r.id.get()).collect();
        ids.sort_unstable();
        (ids, read)
    };
    // Each room's segment is past 256 KiB: indexed but for its tail.
    assert!(total / rooms > writer::INDEX_EVERY + 20_000, "{total}");
    let (ids, read) = found(dir.path());
    assert_eq!(ids, needles);
    // The tails after each index, and a few blocks.
    let tails = total - rooms * writer::INDEX_EVERY;
    assert!(
        read < tails + total / 20,
        "read {read} of {total} before shutdown (tails {tails})"
    );
    writer.finish();
    let (ids, read) = found(dir.path());
    assert_eq!(ids, needles);
    assert!(read < total / 20, "read {read} of {total} after shutdown");
}

/// A failed sync cuts the segment back below what its `.idx` (written
/// for the open segment) describes; the records appended after the cut
/// land where that index describes others. The index is removed, and the
/// removal made durable, before they are appended: no power cut brings it
/// back over them.
#[test]
fn an_index_describing_bytes_cut_off_never_comes_back_over_later_records() {
    let mut lost = 0;
    for seed in 1..=64 {
        let disk = SimDisk::new(seed, Faults::default());
        let layout = Layout {
            index_every: 1,
            ..sim_layout(1 << 20)
        };
        let mut writer = Writer::with_layout(disk.clone(), FsyncPolicy::Always, 4, layout);
        let now = Instant::now();
        let batch = |ids: std::ops::RangeInclusive<u64>, word: &str| -> Vec<Arc<Record>> {
            ids.map(|id| worded(id, "general", word)).collect()
        };
        writer.write_batch(now, &batch(1..=5, ""));
        writer.sync();
        // Indexed, then cut off by a failed sync.
        disk.set_faults(Faults {
            sync: 1000,
            ..Faults::default()
        });
        writer.write_batch(now, &batch(6..=8, "lost"));
        writer.sync();
        disk.set_faults(Faults::default());
        writer.write_batch(now, &batch(41..=80, "needle"));
        writer.sync();
        let stored: BTreeSet<u64> = writer
            .take_reports()
            .into_iter()
            .filter_map(|report| match report {
                PersistReport::Stored(ids) => Some(ids),
                PersistReport::Failed(_) | PersistReport::Spent(_) => None,
            })
            .flatten()
            .map(MessageId::get)
            .collect();
        assert!(stored.contains(&80) && !stored.contains(&6), "{stored:?}");
        let image = disk.image();
        let segment = "general/00000000000000000001.log";
        let Some(index) = image
            .get(&index_path(segment))
            .and_then(|bytes| SegmentIndex::parse(bytes))
        else {
            continue;
        };
        let log = &image[segment];
        if covered(&index) > log.len() as u64 {
            continue;
        }
        let hidden: Vec<u64> = super::index::hidden_records(log, &index)
            .into_iter()
            .filter(|id| stored.contains(id))
            .collect();
        lost += usize::from(!hidden.is_empty());
        assert_eq!(hidden, Vec::<u64>::new(), "seed {seed}");
    }
    assert_eq!(lost, 0);
}
