//! The crash test: the writer on a simulated disk (`sim.rs`), the power cut
//! at any operation, recovery from what survived.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatd_core::history::{MessageIds, Record, RecordKind};
use chatd_core::{ConnId, MessageId, Nick, RoomName};
use quickcheck::{QuickCheck, TestResult};

use super::retention::{HistoryLimits, Retention};
use super::sim::{Faults, Image, Rng, SimDisk};
use super::writer::{Layout, Writer};
use super::{FsyncPolicy, PersistReport, RecoveryLimits, recover};

/// One random workload, as the core would produce it: chat in several
/// rooms, whispers written or not, id reservations, in batches, with time
/// passing; the writer run under a policy; the power cut before a chosen
/// operation.
#[derive(Debug, Clone)]
struct Workload {
    seed: u64,
    policy: FsyncPolicy,
    rooms: u64,
    steps: u64,
    open_limit: usize,
    faults: Faults,
    /// Small, so that segments are sealed and new ones begun often.
    segment_bytes: u64,
    retention: Retention,
    /// Small, so that open segments' indexes are written often.
    index_every: u64,
    cut: u64,
}

/// What the writer promised, and when (in disk operations done).
#[derive(Debug, Default)]
struct Promises {
    /// Every record handed to the writer, by id.
    written: BTreeMap<u64, Record>,
    /// Record ids reported stored, with the operation count at the report.
    stored: Vec<(u64, u64)>,
    /// Ids acknowledged to a client: stored records, and unwritten
    /// whispers once a reservation covered them.
    acked: Vec<(u64, u64)>,
    /// Segments retention deleted: history directory, id range, and the
    /// operation count when the pass began.
    deleted: Vec<(String, u64, Option<u64>, u64)>,
}

impl Promises {
    /// Whether retention may have deleted record `id` of history `dir`
    /// before the power cut.
    fn deleted_before(&self, dir: &str, id: u64, cut: u64) -> bool {
        self.deleted.iter().any(|(deleted, first, next, at)| {
            deleted == dir && *first <= id && next.is_none_or(|next| id < next) && *at < cut
        })
    }
}

/// Connection ids come only from the core.
fn a_conn_id() -> ConnId {
    let now = Instant::now();
    let mut server =
        chatd_core::Server::new(chatd_core::Config::default(), now, 0).expect("defaults are valid");
    server
        .accept(now, "127.0.0.1:1".parse().expect("valid address"))
        .expect("an empty server admits")
}

fn nick() -> Nick {
    Nick::parse("alice").expect("valid nick")
}

fn room(index: u64) -> RoomName {
    RoomName::parse(&format!("room{index}")).expect("valid room name")
}

/// Runs a workload to its end, returning the promises and the image of
/// the disk at the cut.
fn run(workload: &Workload) -> (Promises, Image) {
    let disk = SimDisk::new(workload.seed, workload.faults);
    disk.cut_before(workload.cut);
    let layout = Layout {
        segment_bytes: workload.segment_bytes,
        retention: workload.retention.clone(),
        max_record: 1 << 20,
        index_every: workload.index_every,
    };
    let mut writer =
        Writer::with_layout(disk.clone(), workload.policy, workload.open_limit, layout);
    let mut rng = Rng::new(workload.seed ^ 0x9e37_79b9);
    let mut ids = MessageIds::new(1 + rng.below(3000));
    let mut promises = Promises::default();
    let start = Instant::now();
    let mut now = start;
    let conn = a_conn_id();
    for _ in 0..workload.steps {
        if rng.chance(200) {
            now += Duration::from_millis(rng.below(15));
        }
        let mut batch = Vec::new();
        for _ in 0..1 + rng.below(12) {
            let allocation = ids.allocate();
            if let Some(reserved) = allocation.reservation {
                batch.push(Arc::new(Record::reservation(reserved, 0)));
            }
            let id = allocation.id;
            let kind = match rng.below(10) {
                0 => RecordKind::Whisper,
                1 => {
                    // A whisper that is not written: its ACK waits for a
                    // durable reservation.
                    if ids.is_durable(id) {
                        promises.acked.push((id.get(), disk.ops()));
                    } else {
                        ids.defer_ack(id, conn);
                    }
                    continue;
                }
                2 => RecordKind::Action,
                _ => RecordKind::Msg,
            };
            let text_len = rng.below(40) as usize;
            batch.push(Arc::new(Record {
                id,
                room: room(rng.below(workload.rooms)),
                ts: id.get(),
                from: nick(),
                kind,
                text: "x".repeat(text_len) + &id.to_string(),
                to: (kind == RecordKind::Whisper).then(nick),
                private: rng.chance(100),
            }));
        }
        for record in &batch {
            promises.written.insert(record.id.get(), (**record).clone());
        }
        writer.write_batch(now, &batch);
        if writer.sync_due(now) {
            writer.sync();
        }
        settle(&mut writer, &disk, &mut ids, &mut promises);
        if writer.retention_due(now) || rng.chance(100) {
            // Wall-clock time in this workload is the newest message's id
            // (ts = id; reservations run ahead of it).
            let now_ms = promises
                .written
                .values()
                .filter(|record| record.kind != RecordKind::Reserve)
                .map(|record| record.ts)
                .max()
                .unwrap_or(0);
            let at = disk.ops();
            for deletion in writer.enforce_retention(now, now_ms).deleted {
                promises.deleted.push((
                    deletion.dir,
                    deletion.first_id,
                    deletion.next_first_id,
                    at,
                ));
            }
            settle(&mut writer, &disk, &mut ids, &mut promises);
        }
    }
    writer.sync();
    settle(&mut writer, &disk, &mut ids, &mut promises);
    (promises, disk.image())
}

/// Feeds the writer's reports to the id allocator, as the hub and the core
/// would, and notes what was promised when.
fn settle(
    writer: &mut Writer<SimDisk>,
    disk: &SimDisk,
    ids: &mut MessageIds,
    promises: &mut Promises,
) {
    let at = disk.ops();
    for report in writer.take_reports() {
        match report {
            PersistReport::Stored(stored) => {
                for id in stored {
                    match ids.confirm(id) {
                        Some(released) => promises
                            .acked
                            .extend(released.acked.iter().map(|(id, _)| (id.get(), at))),
                        None => promises.acked.push((id.get(), at)),
                    }
                    promises.stored.push((id.get(), at));
                }
            }
            PersistReport::Failed(failed) => {
                for id in failed {
                    ids.fail(id);
                }
            }
            PersistReport::Spent(_) => {}
        }
    }
}

/// Checks what recovery finds in the image against the promises.
fn check(workload: &Workload, promises: &Promises, image: &Image) -> Result<(), String> {
    let mut disk = SimDisk::from_image(image, workload.seed);
    let recovered = recover(&mut disk, &RecoveryLimits::unlimited())
        .map_err(|error| format!("recovery failed: {error}"))?;
    // Recovery keeps only restorable records; read everything for the check.
    // Recovery cut every torn tail: each history's newest segment (and
    // `_ids.log`) ends in a whole record.
    let after = disk.snapshot();
    let mut newest: BTreeMap<&str, &str> = BTreeMap::new();
    for name in after.keys().filter(|name| name.ends_with(".log")) {
        newest.insert(super::storage::parent(name), name);
    }
    for name in newest.values() {
        let recovery = chatd_core::history::recover(&after[*name]);
        // An empty `_ids.log` is whole; an empty segment would have been removed.
        let empty_segment = recovery.records.is_empty() && *name != super::IDS_LOG;
        if recovery.torn_tail.is_some() || empty_segment {
            return Err(format!(
                "{name} has a torn tail or no record after recovery"
            ));
        }
    }
    let mut all = BTreeMap::new();
    for (name, bytes) in image {
        if !name.ends_with(".log") {
            continue;
        }
        let scan = super::scan(&bytes[..], 1 << 20, |record| {
            let id = record.id.get();
            if let Some(previous) = all.insert(id, record.clone())
                && previous.kind != RecordKind::Reserve
                && record.kind != RecordKind::Reserve
            {
                panic!("record {id} recovered twice");
            }
        });
        scan.map_err(|error| format!("scan failed: {error}"))?;
    }
    for (id, record) in &all {
        match promises.written.get(id) {
            Some(original) if original == record => {}
            // The same id as a reservation and a record cannot happen in
            // this workload (no shutdown marks), so any difference is garbage.
            _ => {
                return Err(format!(
                    "recovered record {id} was never written as {record:?}"
                ));
            }
        }
    }
    let durable_policy = workload.policy != FsyncPolicy::Never;
    for &(id, at) in &promises.stored {
        if !durable_policy || at > workload.cut {
            continue;
        }
        let written = &promises.written[&id];
        if written.kind == RecordKind::Reserve {
            if recovered.next_id <= id {
                return Err(format!(
                    "reservation {id} stored at op {at} (cut at {}) but ids restart at {}",
                    workload.cut, recovered.next_id
                ));
            }
        } else if all.get(&id) != Some(written)
            && !promises.deleted_before(
                &super::history_dir(written).unwrap_or_default(),
                id,
                workload.cut,
            )
        {
            return Err(format!(
                "record {id} stored at op {at} (cut at {}) is lost",
                workload.cut
            ));
        }
    }
    for &(id, at) in &promises.acked {
        if durable_policy && at <= workload.cut && recovered.next_id <= id {
            return Err(format!(
                "id {id} acknowledged at op {at} (cut at {}) but ids restart at {}",
                workload.cut, recovered.next_id
            ));
        }
    }
    // No index a reader would use hides a stored record: neither one that
    // survived the cut, nor one written after the restart (segments opened
    // again seed their index from what they find).
    let stored: BTreeSet<u64> = promises.stored.iter().map(|(id, _)| *id).collect();
    hidden_stored(&after, &stored, "after recovery")?;
    let mut writer = Writer::with_layout(
        disk.clone(),
        workload.policy,
        workload.open_limit,
        Layout {
            segment_bytes: workload.segment_bytes,
            index_every: workload.index_every,
            ..Layout::default()
        },
    );
    let mut later = stored.clone();
    let mut rng = Rng::new(workload.seed ^ 0x00a1_1ce5);
    let now = Instant::now();
    let mut next = recovered.next_id;
    for _ in 0..1 + rng.below(8) {
        let batch: Vec<Arc<Record>> = (0..1 + rng.below(6))
            .map(|_| {
                let record = message(next, rng.below(workload.rooms));
                later.insert(next);
                next += 1;
                record
            })
            .collect();
        writer.write_batch(now, &batch);
        writer.sync();
    }
    writer.finish();
    hidden_stored(&disk.snapshot(), &later, "after writing on")?;
    // After the restart, new ids go on above everything acknowledged.
    let mut restarted = MessageIds::new(recovered.next_id);
    let next = restarted.allocate().id.get();
    if let Some(&(largest, _)) = promises
        .acked
        .iter()
        .filter(|(_, at)| durable_policy && *at <= workload.cut)
        .max()
        && next <= largest
    {
        return Err(format!("id {next} handed out again after a restart"));
    }
    Ok(())
}

/// Checks that every index in `image` that a reader would use (intact,
/// no block past its segment's end) describes each record of `ids` in its
/// segment (see `index::hidden_records`).
fn hidden_stored(image: &Image, ids: &BTreeSet<u64>, when: &str) -> Result<(), String> {
    for (name, bytes) in image.iter().filter(|(name, _)| name.ends_with(".idx")) {
        let segment = format!("{}.log", name.trim_end_matches(".idx"));
        let (Some(index), Some(log)) = (
            super::index::SegmentIndex::parse(bytes),
            image.get(&segment),
        ) else {
            continue;
        };
        if index
            .blocks
            .iter()
            .any(|block| block.offset + block.len > log.len() as u64)
        {
            continue;
        }
        let hidden: Vec<u64> = super::index::hidden_records(log, &index)
            .into_iter()
            .filter(|id| ids.contains(id))
            .collect();
        if !hidden.is_empty() {
            return Err(format!("{when}: {name} hides records {hidden:?}"));
        }
    }
    Ok(())
}

fn workload(
    seed: u64,
    policy: u8,
    rooms: u8,
    steps: u8,
    open: u8,
    faulty: bool,
    cut: u16,
) -> Workload {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut retention = Retention::default();
    match rng.below(5) {
        0 => retention.default.max_bytes = Some(300 + rng.below(3000)),
        1 => retention.max_bytes = Some(1000 + rng.below(6000)),
        2 => retention.default.max_age = Some(Duration::from_millis(50 + rng.below(400))),
        3 => {
            retention.overrides.insert(
                "room0".into(),
                HistoryLimits {
                    max_age: Some(Duration::from_millis(100)),
                    max_bytes: Some(500),
                },
            );
        }
        _ => {}
    }
    let policy = match policy % 4 {
        0 => FsyncPolicy::Always,
        1 => FsyncPolicy::Every(Duration::from_millis(5)),
        2 => FsyncPolicy::Every(Duration::from_millis(1 + u64::from(policy % 20))),
        _ => FsyncPolicy::Never,
    };
    let faults = if faulty {
        Faults {
            write: 60,
            set_len: 30,
            sync: 40,
            sync_dir: 40,
            open: 20,
        }
    } else {
        Faults::default()
    };
    Workload {
        seed,
        policy,
        rooms: 1 + u64::from(rooms % 6),
        steps: 1 + u64::from(steps % 40),
        open_limit: 1 + usize::from(open % 4),
        faults,
        segment_bytes: 100 + rng.below(1500),
        retention,
        index_every: 1 + rng.below(400),
        // Up to a little past the end, so some runs lose nothing.
        cut: u64::from(cut) % 600,
    }
}

fn crash_property(
    seed: u64,
    policy: u8,
    rooms: u8,
    steps: u8,
    open: u8,
    faulty: bool,
    cut: u16,
) -> TestResult {
    let workload = workload(seed, policy, rooms, steps, open, faulty, cut);
    let (promises, image) = run(&workload);
    match check(&workload, &promises, &image) {
        Ok(()) => TestResult::passed(),
        Err(error) => TestResult::error(format!("{workload:?}: {error}")),
    }
}

#[test]
fn every_record_reported_stored_survives_a_power_cut_at_any_point() {
    QuickCheck::new()
        .tests(3000)
        .max_tests(3000)
        .quickcheck(crash_property as fn(u64, u8, u8, u8, u8, bool, u16) -> TestResult);
}

#[test]
fn writing_to_a_thousand_rooms_keeps_at_most_the_open_file_limit() {
    for limit in [1, 8, 64] {
        let disk = SimDisk::new(1, Faults::default());
        let mut writer = Writer::new(
            disk.clone(),
            FsyncPolicy::Every(Duration::from_millis(10)),
            limit,
        );
        let now = Instant::now();
        for id in 1..=1000 {
            let record = Record {
                id: MessageId::new(id),
                room: room(id),
                ts: 0,
                from: nick(),
                kind: RecordKind::Msg,
                text: "hi".into(),
                to: None,
                private: false,
            };
            writer.write_batch(now, &[Arc::new(record)]);
            assert!(writer.open_logs() <= limit);
        }
        writer.sync();
        let stored: BTreeSet<u64> = writer
            .take_reports()
            .into_iter()
            .flat_map(|report| match report {
                PersistReport::Stored(ids) => ids,
                PersistReport::Failed(ids) => panic!("failed: {ids:?}"),
                PersistReport::Spent(_) => Vec::new(),
            })
            .map(MessageId::get)
            .collect();
        assert_eq!(stored.len(), 1000, "limit {limit}");
        assert_eq!(disk.most_open_handles(), limit, "limit {limit}");
        // Closed logs were synced before closing: a power cut now loses none.
        disk.drop_all_unsynced();
        let image = disk.image();
        let logs: Vec<&Vec<u8>> = image
            .iter()
            .filter(|(name, _)| name.ends_with(".log"))
            .map(|(_, bytes)| bytes)
            .collect();
        assert_eq!(logs.len(), 1000);
        assert!(logs.iter().all(|bytes| bytes.ends_with(b"\n")));
    }
}

#[test]
fn a_torn_tail_cut_at_recovery_stays_cut_after_another_power_cut() {
    let mut image = Image::new();
    let record = Record {
        id: MessageId::new(1),
        room: room(1),
        ts: 0,
        from: nick(),
        kind: RecordKind::Msg,
        text: "kept".into(),
        to: None,
        private: false,
    };
    let mut bytes = chatd_core::history::encode(&record);
    let good = bytes.len();
    bytes.extend_from_slice(b"0badc0de {\"id\":2,\"ro");
    let segment = "room1/00000000000000000001.log";
    image.insert(segment.into(), bytes);
    let mut disk = SimDisk::from_image(&image, 1);
    let recovered = recover(&mut disk, &RecoveryLimits::unlimited()).unwrap();
    assert_eq!((recovered.records.len(), recovered.torn), (1, 1));
    disk.drop_all_unsynced();
    assert_eq!(disk.image()[segment].len(), good);
}

fn message(id: u64, room_index: u64) -> Arc<Record> {
    Arc::new(Record {
        id: MessageId::new(id),
        room: room(room_index),
        ts: id,
        from: nick(),
        kind: RecordKind::Msg,
        text: format!("message {id}"),
        to: None,
        private: false,
    })
}

#[test]
fn a_crash_between_sealing_a_segment_and_the_first_record_of_the_next_loses_nothing() {
    let layout = || Layout {
        segment_bytes: 300,
        ..Layout::default()
    };
    let now = Instant::now();
    // Fill the first segment past its size and make it durable.
    let first: Vec<Arc<Record>> = (1..=5).map(|id| message(id, 0)).collect();
    let prepare = |seed: u64| {
        let disk = SimDisk::new(seed, Faults::default());
        let mut writer = Writer::with_layout(disk.clone(), FsyncPolicy::Always, 4, layout());
        writer.write_batch(now, &first);
        writer.sync();
        (disk, writer)
    };
    let (disk, mut writer) = prepare(1);
    let sealed_from = disk.ops();
    // The next record seals the first segment and begins the next.
    writer.write_batch(now, &[message(6, 0)]);
    let through = disk.ops();
    assert!(
        through > sealed_from + 3,
        "sealing takes several operations"
    );
    let mut cuts_with_an_empty_next_segment = 0;
    for cut in sealed_from..=through {
        for seed in 1..=8 {
            let (disk, mut writer) = prepare(seed);
            disk.cut_before(cut);
            writer.write_batch(now, &[message(6, 0)]);
            let image = disk.image();
            let empty_next = image
                .get("room0/00000000000000000006.log")
                .is_some_and(|bytes| !bytes.ends_with(b"\n"));
            cuts_with_an_empty_next_segment += usize::from(empty_next);
            let mut restarted = SimDisk::from_image(&image, seed);
            let recovered = recover(&mut restarted, &RecoveryLimits::unlimited()).unwrap();
            let ids: Vec<u64> = recovered.records.iter().map(|r| r.id.get()).collect();
            assert!(ids.starts_with(&[1, 2, 3, 4, 5]), "cut {cut}: {ids:?}");
            assert!(recovered.next_id >= 6, "cut {cut}");
            // Writing goes on after the restart, in order, on clean lines.
            let mut writer =
                Writer::with_layout(restarted.clone(), FsyncPolicy::Always, 4, layout());
            writer.write_batch(now, &[message(recovered.next_id, 0)]);
            writer.sync();
            let again = recover(&mut restarted, &RecoveryLimits::unlimited()).unwrap();
            let ids: Vec<u64> = again.records.iter().map(|r| r.id.get()).collect();
            assert_eq!(ids.last(), Some(&recovered.next_id), "cut {cut}");
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "cut {cut}: {ids:?}");
            assert_eq!(again.torn, 0, "cut {cut}");
        }
    }
    assert!(
        cuts_with_an_empty_next_segment > 0,
        "some cut leaves the new segment without a whole record"
    );
}
