//! The crash test: the writer on a simulated disk (`sim.rs`), the power cut
//! at any operation, recovery from what survived.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatd_core::history::{MessageIds, Record, RecordKind};
use chatd_core::{ConnId, MessageId, Nick, RoomName};
use quickcheck::{QuickCheck, TestResult};

use super::sim::{Faults, Image, Rng, SimDisk};
use super::writer::Writer;
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
    let mut writer = Writer::new(disk.clone(), workload.policy, workload.open_limit);
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
        }
    }
}

/// Checks what recovery finds in the image against the promises.
fn check(workload: &Workload, promises: &Promises, image: &Image) -> Result<(), String> {
    let mut disk = SimDisk::from_image(image, workload.seed);
    let recovered = recover(&mut disk, &RecoveryLimits::unlimited())
        .map_err(|error| format!("recovery failed: {error}"))?;
    // Recovery keeps only restorable records; read everything for the check.
    let mut all = BTreeMap::new();
    for (name, bytes) in image {
        let _ = name;
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
        } else if all.get(&id) != Some(written) {
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

fn workload(
    seed: u64,
    policy: u8,
    rooms: u8,
    steps: u8,
    open: u8,
    faulty: bool,
    cut: u16,
) -> Workload {
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
        // Up to a little past the end, so some runs lose nothing.
        cut: u64::from(cut) % 400,
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
            })
            .map(MessageId::get)
            .collect();
        assert_eq!(stored.len(), 1000, "limit {limit}");
        assert_eq!(disk.most_open_handles(), limit, "limit {limit}");
        // Closed logs were synced before closing: a power cut now loses none.
        disk.drop_all_unsynced();
        let image = disk.image();
        assert_eq!(image.len(), 1000);
        assert!(image.values().all(|bytes| bytes.ends_with(b"\n")));
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
    image.insert("room1.log".into(), bytes);
    let mut disk = SimDisk::from_image(&image, 1);
    let recovered = recover(&mut disk, &RecoveryLimits::unlimited()).unwrap();
    assert_eq!((recovered.records.len(), recovered.torn), (1, 1));
    disk.drop_all_unsynced();
    assert_eq!(disk.image()["room1.log"].len(), good);
}
