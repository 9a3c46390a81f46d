//! Storage probe for chatd issue 14: SQLite (with and without FTS5) against
//! segmented per-room append logs, on the same synthetic records.
//!
//! See README.md beside this crate for how to run it and what it measures.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chatd_core::history::{decode, encode};
use chatd_core::history_query::words_of;
use chatd_core::{MessageId, Nick, Record, RecordKind, RoomName};
use rusqlite::{Connection, params};

/// The word planted in a few records for the rare-word search.
const RARE: &str = "zyzzogeton";
/// How many records carry the rare word.
const RARE_COUNT: u64 = 20;
/// Records a start-up reads per room.
const START_TAIL: usize = 100;
/// Records a `before ID` query returns.
const PAGE: usize = 50;
/// Search results kept.
const SEARCH_LIMIT: usize = 20;
/// A block of the sparse index closes once it holds this many bytes.
const BLOCK_BYTES: u64 = 16 * 1024;
/// Mixed into the seed for the stream of `before` queries.
const QUERY_SEED: u64 = 0xbef0_e000;
/// First timestamp (2026-11-18).
const TS0: u64 = 1_795_000_000_000;

// ---------------------------------------------------------------- options

#[derive(Clone)]
struct Options {
    records: u64,
    rooms: usize,
    batch: usize,
    text_bytes: usize,
    queries: usize,
    segment_bytes: u64,
    dir: PathBuf,
    sync: bool,
    stores: Vec<String>,
    keep: bool,
    seed: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: storage-probe [--records N] [--rooms N] [--batch N] [--text-bytes N] \
         [--queries N] [--segment-bytes N] [--dir DIR] [--sync full|off] \
         [--stores sqlite,sqlite-fts,segmented] [--seed N] [--keep]"
    );
    std::process::exit(2)
}

fn parse_options() -> Options {
    let mut options = Options {
        records: 1_000_000,
        rooms: 1_000,
        batch: 256,
        text_bytes: 120,
        queries: 10_000,
        segment_bytes: 4 * 1024 * 1024,
        dir: PathBuf::from("/work/probe-data"),
        sync: true,
        stores: vec!["sqlite".into(), "sqlite-fts".into(), "segmented".into()],
        keep: false,
        seed: 14,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--records" => options.records = number(&value()),
            "--rooms" => options.rooms = number(&value()) as usize,
            "--batch" => options.batch = number(&value()) as usize,
            "--text-bytes" => options.text_bytes = number(&value()) as usize,
            "--queries" => options.queries = number(&value()) as usize,
            "--segment-bytes" => options.segment_bytes = number(&value()),
            "--dir" => options.dir = PathBuf::from(value()),
            "--sync" => {
                options.sync = match value().as_str() {
                    "full" => true,
                    "off" => false,
                    _ => usage(),
                }
            }
            "--stores" => options.stores = value().split(',').map(str::to_owned).collect(),
            "--seed" => options.seed = number(&value()),
            "--keep" => options.keep = true,
            _ => usage(),
        }
    }
    if options.records == 0 || options.rooms == 0 || options.batch == 0 {
        usage();
    }
    options
}

/// Accepts `1000000`, `1_000_000`, `1M`, `10M`, `500k`.
fn number(text: &str) -> u64 {
    let text = text.replace('_', "");
    let (digits, scale) = match text.chars().last() {
        Some('M' | 'm') => (&text[..text.len() - 1], 1_000_000),
        Some('k' | 'K') => (&text[..text.len() - 1], 1_000),
        _ => (text.as_str(), 1),
    };
    digits
        .parse::<u64>()
        .map(|n| n * scale)
        .unwrap_or_else(|_| usage())
}

// ---------------------------------------------------------------- records

/// splitmix64: deterministic, so every store gets the same records.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Makes the synthetic records: uniform over the rooms, ~`text_bytes` of
/// words from a 5,000-word vocabulary (Zipf-ish: low indexes are common).
struct Generator {
    rng: Rng,
    rooms: Vec<RoomName>,
    nicks: Vec<Nick>,
    vocab: Vec<String>,
    text_bytes: usize,
    next_id: u64,
    total: u64,
    /// Every id per room (for picking `before` targets).
    ids: Vec<Vec<u64>>,
}

impl Generator {
    fn new(options: &Options) -> Self {
        let mut rng = Rng(options.seed);
        let syllables = [
            "ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "pi", "da", "ge", "ho", "ju", "be",
            "fi", "co", "wa", "xe", "ny", "tr", "st", "an", "or", "el", "is",
        ];
        let mut vocab = Vec::new();
        let mut seen = HashSet::new();
        while vocab.len() < 5_000 {
            let parts = 1 + rng.below(4);
            let word: String = (0..parts)
                .map(|_| syllables[rng.below(syllables.len() as u64) as usize])
                .collect();
            if seen.insert(word.clone()) {
                vocab.push(word);
            }
        }
        let rooms = (0..options.rooms)
            .map(|i| RoomName::parse(&format!("room{i:04}")).expect("valid room name"))
            .collect();
        let nicks = (0..500)
            .map(|i| Nick::parse(&format!("user{i}")).expect("valid nick"))
            .collect();
        Self {
            rng,
            rooms,
            nicks,
            vocab,
            text_bytes: options.text_bytes,
            next_id: 1,
            total: options.records,
            ids: vec![Vec::new(); options.rooms],
        }
    }

    fn text(&mut self, rare: bool) -> String {
        let mut text = String::with_capacity(self.text_bytes + 16);
        if rare {
            text.push_str("Look: ");
            text.push_str(RARE);
        }
        while text.len() < self.text_bytes {
            // Squaring a uniform number favours the first words (Zipf-ish).
            let u = self.rng.below(1 << 16) as f64 / 65536.0;
            let word = &self.vocab[(u * u * self.vocab.len() as f64) as usize];
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(word);
        }
        text
    }

    /// The next batch of up to `n` records (empty when all are made).
    fn batch(&mut self, n: usize) -> Vec<Record> {
        let mut out = Vec::with_capacity(n);
        let spacing = (self.total / RARE_COUNT).max(1);
        while out.len() < n && self.next_id <= self.total {
            let id = self.next_id;
            self.next_id += 1;
            let room = self.rng.below(self.rooms.len() as u64) as usize;
            let rare = id % spacing == spacing / 2;
            let text = self.text(rare);
            let kind = match self.rng.below(50) {
                0 => RecordKind::Action,
                _ => RecordKind::Msg,
            };
            let from = self.nicks[self.rng.below(self.nicks.len() as u64) as usize];
            self.ids[room].push(id);
            out.push(Record {
                id: MessageId::new(id),
                room: self.rooms[room].clone(),
                ts: TS0 + id * 10,
                from,
                kind,
                text,
                to: None,
                private: false,
            });
        }
        out
    }
}

// ---------------------------------------------------------------- measuring

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we pass and nothing else.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Drops the page cache of every file under `path` (after syncing it, so
/// the pages are clean and can go): the next read comes from the disk.
fn drop_cache(path: &Path) -> io::Result<()> {
    let meta = fs::metadata(path)?;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            drop_cache(&entry?.path())?;
        }
    } else {
        let file = File::open(path)?;
        file.sync_all()?;
        // SAFETY: plain syscall on a descriptor we own.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
    Ok(())
}

fn disk_bytes(path: &Path, filter: &dyn Fn(&Path) -> bool) -> u64 {
    let Ok(meta) = fs::metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| disk_bytes(&entry.path(), filter))
                    .sum()
            })
            .unwrap_or(0)
    } else if filter(path) {
        meta.len()
    } else {
        0
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// One row of the result table.
#[derive(Default)]
struct Row {
    store: String,
    records: u64,
    insert_wall: Duration,
    insert_cpu: Duration,
    index_cpu: Option<Duration>,
    syncs: u64,
    bytes: u64,
    index_bytes: u64,
    start_cold: Duration,
    start_warm: Duration,
    before_p50: Duration,
    before_p99: Duration,
    search_cold: Duration,
    search_warm: Duration,
    search_hits: usize,
    note: String,
}

/// Everything a store must do for the probe.
trait Store {
    fn insert(&mut self, batch: &[Record]) -> io::Result<()>;
    /// Called once after the last batch (checkpoint, close files).
    fn finish(&mut self) -> io::Result<()>;
    /// Opens the store afresh and reads the last records of every room;
    /// returns the number of records read.
    fn start(&self) -> io::Result<usize>;
    /// The `PAGE` records of `room` before `id`, oldest first.
    fn before(&mut self, room: &RoomName, id: u64) -> io::Result<Vec<Record>>;
    /// The newest `SEARCH_LIMIT` records containing `word`.
    fn search(&mut self, word: &str) -> io::Result<Vec<Record>>;
    fn root(&self) -> &Path;
}

/// Writes every record through `store`, timing only the store's work.
fn load(
    options: &Options,
    name: &str,
    store: &mut dyn Store,
    row: &mut Row,
) -> io::Result<Generator> {
    let mut generator = Generator::new(options);
    let mut wall = Duration::ZERO;
    let mut cpu = Duration::ZERO;
    let progress_every = (options.records / 10).max(1);
    let mut next_progress = progress_every;
    loop {
        let batch = generator.batch(options.batch);
        if batch.is_empty() {
            break;
        }
        let (cpu0, t0) = (cpu_time(), Instant::now());
        store.insert(&batch)?;
        wall += t0.elapsed();
        cpu += cpu_time() - cpu0;
        if generator.next_id > next_progress {
            eprintln!(
                "  {name}: {} records, {:.1} s",
                generator.next_id - 1,
                wall.as_secs_f64()
            );
            next_progress += progress_every;
        }
    }
    let (cpu0, t0) = (cpu_time(), Instant::now());
    store.finish()?;
    wall += t0.elapsed();
    cpu += cpu_time() - cpu0;
    row.records = options.records;
    row.insert_wall = wall;
    row.insert_cpu = cpu;
    Ok(generator)
}

/// Start, `before ID` and search measurements on a loaded store.
fn queries(
    options: &Options,
    generator: &Generator,
    store: &mut dyn Store,
    row: &mut Row,
) -> io::Result<()> {
    let name = row.store.clone();
    // Start: cold (pages dropped) then warm.
    drop_cache(store.root())?;
    let t0 = Instant::now();
    let read = store.start()?;
    row.start_cold = t0.elapsed();
    let t0 = Instant::now();
    store.start()?;
    row.start_warm = t0.elapsed();
    eprintln!("  {name}: start read {read} records");

    // `before ID` queries, the same ones for every store (warm cache).
    let mut rng = Rng(options.seed ^ QUERY_SEED);
    let mut times = Vec::with_capacity(options.queries);
    for _ in 0..options.queries {
        let room = rng.below(options.rooms as u64) as usize;
        let ids = &generator.ids[room];
        if ids.is_empty() {
            continue;
        }
        let id = ids[rng.below(ids.len() as u64) as usize];
        let room_name = &generator.rooms[room];
        let t0 = Instant::now();
        let page = store.before(room_name, id)?;
        times.push(t0.elapsed());
        // Check the answer: the page ends just below `id`.
        let position = ids.partition_point(|&x| x < id);
        let expected = &ids[position.saturating_sub(PAGE)..position];
        let got: Vec<u64> = page.iter().map(|r| r.id.get()).collect();
        if got != expected {
            return Err(io::Error::other(format!(
                "{name}: before {id} in {room_name} gave {} records, expected {}",
                got.len(),
                expected.len()
            )));
        }
    }
    times.sort();
    row.before_p50 = percentile(&times, 0.50);
    row.before_p99 = percentile(&times, 0.99);

    drop_cache(store.root())?;
    let t0 = Instant::now();
    let hits = store.search(RARE)?;
    row.search_cold = t0.elapsed();
    let t0 = Instant::now();
    let again = store.search(RARE)?;
    row.search_warm = t0.elapsed();
    row.search_hits = hits.len();
    let expected = RARE_COUNT.min(SEARCH_LIMIT as u64) as usize;
    if hits.len() != expected || again.len() != expected {
        row.note.push_str(&format!(
            " search found {} (expected {expected})",
            hits.len()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- SQLite

/// One table with an index on (room, id); optionally an FTS5 table with
/// external content, kept in sync in the same transaction.
struct Sqlite {
    dir: PathBuf,
    path: PathBuf,
    fts: bool,
    sync: bool,
    conn: Option<Connection>,
}

fn sql(error: rusqlite::Error) -> io::Error {
    io::Error::other(error)
}

impl Sqlite {
    fn create(dir: &Path, fts: bool, sync: bool) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let path = dir.join("history.db");
        let conn = Self::connect(&path, sync)?;
        conn.execute_batch(
            "CREATE TABLE msgs (
                 id INTEGER PRIMARY KEY,
                 room TEXT NOT NULL,
                 ts INTEGER NOT NULL,
                 \"from\" TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 text TEXT NOT NULL,
                 \"to\" TEXT,
                 private INTEGER NOT NULL DEFAULT 0
             );
             CREATE INDEX msgs_room_id ON msgs (room, id);",
        )
        .map_err(sql)?;
        if fts {
            conn.execute_batch(
                "CREATE VIRTUAL TABLE fts USING fts5(text, content='msgs', content_rowid='id');",
            )
            .map_err(sql)?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            path,
            fts,
            sync,
            conn: Some(conn),
        })
    }

    fn connect(path: &Path, sync: bool) -> io::Result<Connection> {
        let conn = Connection::open(path).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", if sync { "FULL" } else { "OFF" })
            .map_err(sql)?;
        Ok(conn)
    }

    fn conn(&mut self) -> io::Result<&mut Connection> {
        if self.conn.is_none() {
            self.conn = Some(Self::connect(&self.path, self.sync)?);
        }
        Ok(self.conn.as_mut().expect("just opened"))
    }

    fn row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
        let kind: String = row.get(4)?;
        let to: Option<String> = row.get(6)?;
        let bad = |what: &str| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                what.to_owned().into(),
            )
        };
        Ok(Record {
            id: MessageId::new(row.get::<_, i64>(0)? as u64),
            room: RoomName::parse(&row.get::<_, String>(1)?).map_err(|_| bad("room"))?,
            ts: row.get::<_, i64>(2)? as u64,
            from: Nick::parse(&row.get::<_, String>(3)?).map_err(|_| bad("from"))?,
            kind: match kind.as_str() {
                "msg" => RecordKind::Msg,
                "action" => RecordKind::Action,
                "urgent" => RecordKind::Urgent,
                "whisper" => RecordKind::Whisper,
                _ => RecordKind::Reserve,
            },
            text: row.get(5)?,
            to: to
                .map(|to| Nick::parse(&to))
                .transpose()
                .map_err(|_| bad("to"))?,
            private: row.get::<_, i64>(7)? != 0,
        })
    }
}

const COLUMNS: &str = "id, room, ts, \"from\", kind, text, \"to\", private";

fn kind_name(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Msg => "msg",
        RecordKind::Action => "action",
        RecordKind::Urgent => "urgent",
        RecordKind::Whisper => "whisper",
        RecordKind::Reserve => "reserve",
    }
}

impl Store for Sqlite {
    fn insert(&mut self, batch: &[Record]) -> io::Result<()> {
        let fts = self.fts;
        let conn = self.conn()?;
        let tx = conn.transaction().map_err(sql)?;
        {
            let mut insert = tx
                .prepare_cached(&format!(
                    "INSERT INTO msgs ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ))
                .map_err(sql)?;
            for r in batch {
                insert
                    .execute(params![
                        r.id.get() as i64,
                        r.room.as_str(),
                        r.ts as i64,
                        r.from.as_str(),
                        kind_name(r.kind),
                        r.text,
                        r.to.as_ref().map(Nick::as_str),
                        r.private as i64,
                    ])
                    .map_err(sql)?;
            }
            if fts {
                let mut index = tx
                    .prepare_cached("INSERT INTO fts (rowid, text) VALUES (?1, ?2)")
                    .map_err(sql)?;
                for r in batch {
                    index
                        .execute(params![r.id.get() as i64, r.text])
                        .map_err(sql)?;
                }
            }
        }
        tx.commit().map_err(sql)
    }

    fn finish(&mut self) -> io::Result<()> {
        let conn = self.conn()?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(sql)?;
        self.conn = None;
        Ok(())
    }

    fn start(&self) -> io::Result<usize> {
        let conn = Self::connect(&self.path, self.sync)?;
        let _floor: Option<i64> = conn
            .query_row("SELECT max(id) FROM msgs", [], |row| row.get(0))
            .map_err(sql)?;
        let mut next_room = conn
            .prepare("SELECT room FROM msgs WHERE room > ?1 ORDER BY room LIMIT 1")
            .map_err(sql)?;
        let mut tail = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM msgs WHERE room = ?1 ORDER BY id DESC LIMIT {START_TAIL}"
            ))
            .map_err(sql)?;
        let mut room = String::new();
        let mut read = 0;
        loop {
            let next: Option<String> = next_room
                .query_row([&room], |row| row.get(0))
                .map(Some)
                .or_else(|error| match error {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    error => Err(error),
                })
                .map_err(sql)?;
            let Some(next) = next else { break };
            let records: Vec<Record> = tail
                .query_map([&next], Self::row)
                .map_err(sql)?
                .collect::<Result<_, _>>()
                .map_err(sql)?;
            read += records.len();
            room = next;
        }
        Ok(read)
    }

    fn before(&mut self, room: &RoomName, id: u64) -> io::Result<Vec<Record>> {
        let conn = self.conn()?;
        let mut query = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM msgs WHERE room = ?1 AND id < ?2 ORDER BY id DESC LIMIT {PAGE}"
            ))
            .map_err(sql)?;
        let mut page: Vec<Record> = query
            .query_map(params![room.as_str(), id as i64], Self::row)
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?;
        page.reverse();
        Ok(page)
    }

    fn search(&mut self, word: &str) -> io::Result<Vec<Record>> {
        let fts = self.fts;
        let conn = self.conn()?;
        let text = if fts {
            format!(
                "SELECT {} FROM fts JOIN msgs m ON m.id = fts.rowid WHERE fts MATCH ?1 \
                 ORDER BY fts.rowid DESC LIMIT {SEARCH_LIMIT}",
                COLUMNS
                    .split(", ")
                    .map(|c| format!("m.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            // No index: a scan of the whole table (LIKE is case-insensitive for ASCII).
            format!(
                "SELECT {COLUMNS} FROM msgs WHERE text LIKE '%' || ?1 || '%' \
                 ORDER BY id DESC LIMIT {SEARCH_LIMIT}"
            )
        };
        let mut query = conn.prepare_cached(&text).map_err(sql)?;
        let hits: Vec<Record> = query
            .query_map([word], Self::row)
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?;
        // Same rule as the server: whole words only.
        Ok(hits
            .into_iter()
            .filter(|r| words_of(&r.text).any(|w| w == word))
            .collect())
    }

    fn root(&self) -> &Path {
        &self.dir
    }
}

// ---------------------------------------------------------------- segmented logs

/// FNV-1a 64-bit, the spec's word hash.
fn fnv1a(word: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in word.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn bloom_bits(hash: u64, bits: u64) -> impl Iterator<Item = u64> {
    let h1 = hash & 0xffff_ffff;
    let h2 = (hash >> 32) | 1;
    (0..4u64).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
}

fn bloom_build(hashes: &HashSet<u64>) -> Vec<u8> {
    let len = (hashes.len() * 10).div_ceil(8).div_ceil(8) * 8;
    let mut bloom = vec![0u8; len.max(32)];
    let bits = bloom.len() as u64 * 8;
    for &hash in hashes {
        for bit in bloom_bits(hash, bits) {
            bloom[(bit / 8) as usize] |= 1 << (bit % 8);
        }
    }
    bloom
}

fn bloom_may(bloom: &[u8], hash: u64) -> bool {
    let bits = bloom.len() as u64 * 8;
    bits > 0 && bloom_bits(hash, bits).all(|bit| bloom[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
}

/// One block of the sparse index (the spec's `.idx` layout).
#[derive(Clone, Default)]
struct Block {
    offset: u64,
    len: u64,
    first_id: u64,
    last_id: u64,
    first_ts: u64,
    last_ts: u64,
    records: u32,
    bloom: Vec<u8>,
}

/// Builds a segment's `.idx` as its records are appended.
#[derive(Default)]
struct IndexBuilder {
    blocks: Vec<Block>,
    current: Option<(Block, HashSet<u64>)>,
}

impl IndexBuilder {
    fn add(&mut self, offset: u64, line_len: u64, record: &Record) {
        let (block, words) = self.current.get_or_insert_with(|| {
            (
                Block {
                    offset,
                    first_id: record.id.get(),
                    first_ts: record.ts,
                    last_ts: record.ts,
                    ..Block::default()
                },
                HashSet::new(),
            )
        });
        block.len += line_len;
        block.last_id = record.id.get();
        block.first_ts = block.first_ts.min(record.ts);
        block.last_ts = block.last_ts.max(record.ts);
        block.records += 1;
        if matches!(
            record.kind,
            RecordKind::Msg | RecordKind::Action | RecordKind::Urgent | RecordKind::Whisper
        ) {
            words.extend(words_of(&record.text).map(|w| fnv1a(&w)));
        }
        if block.len >= BLOCK_BYTES {
            self.close();
        }
    }

    fn close(&mut self) {
        if let Some((mut block, words)) = self.current.take() {
            block.bloom = bloom_build(&words);
            self.blocks.push(block);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.close();
        let mut out = b"CHATDIX1".to_vec();
        out.extend_from_slice(&(self.blocks.len() as u32).to_le_bytes());
        for b in &self.blocks {
            for v in [
                b.offset, b.len, b.first_id, b.last_id, b.first_ts, b.last_ts,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&b.records.to_le_bytes());
            out.extend_from_slice(&(b.bloom.len() as u32).to_le_bytes());
            out.extend_from_slice(&b.bloom);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

fn parse_idx(bytes: &[u8]) -> Option<Vec<Block>> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let rest = body.strip_prefix(b"CHATDIX1")?;
    let u64_at =
        |b: &[u8], at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
    let u32_at =
        |b: &[u8], at: usize| Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
    let count = u32_at(rest, 0)? as usize;
    let mut at = 4;
    let mut blocks = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let mut v = [0u64; 6];
        for (i, slot) in v.iter_mut().enumerate() {
            *slot = u64_at(rest, at + i * 8)?;
        }
        let records = u32_at(rest, at + 48)?;
        let bloom_len = u32_at(rest, at + 52)? as usize;
        let bloom = rest.get(at + 56..at + 56 + bloom_len)?.to_vec();
        at += 56 + bloom_len;
        blocks.push(Block {
            offset: v[0],
            len: v[1],
            first_id: v[2],
            last_id: v[3],
            first_ts: v[4],
            last_ts: v[5],
            records,
            bloom,
        });
    }
    Some(blocks)
}

/// The id of a record line without decoding it (`CRC {"id":N,...`).
fn quick_id(line: &[u8]) -> Option<u64> {
    let rest = line.get(9..)?.strip_prefix(b"{\"id\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Calls `each` with every whole LF-terminated line of `file[..len]`,
/// last first, reading backwards in 64 KiB chunks; an unterminated last
/// line (a torn tail) is skipped. Stops when `each` returns false.
fn read_back(file: &File, len: u64, mut each: impl FnMut(&[u8]) -> bool) -> io::Result<()> {
    const CHUNK: u64 = 64 * 1024;
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    let mut terminated = false;
    loop {
        if terminated {
            while let Some(last) = buf.len().checked_sub(1) {
                match memchr::memrchr(b'\n', &buf[..last]) {
                    Some(i) => {
                        if !each(&buf[i + 1..last]) {
                            return Ok(());
                        }
                        buf.truncate(i + 1);
                    }
                    None if start == 0 => {
                        each(&buf[..last]);
                        return Ok(());
                    }
                    None => break,
                }
            }
        }
        if start == 0 {
            return Ok(());
        }
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0; (start - from) as usize];
        file.read_exact_at(&mut chunk, from)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        start = from;
        if !terminated {
            match memchr::memrchr(b'\n', &buf) {
                Some(i) => {
                    buf.truncate(i + 1);
                    terminated = true;
                }
                None => buf.clear(),
            }
        }
    }
}

/// A room's open (newest) segment.
struct RoomLog {
    dir: PathBuf,
    file: File,
    first_id: u64,
    len: u64,
    index: IndexBuilder,
}

fn segment_name(first_id: u64) -> String {
    format!("{first_id:020}")
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Per-room append logs as in the spec: `<data>/<room>/<FIRSTID>.log`.
struct Segmented {
    dir: PathBuf,
    sync: bool,
    segment_bytes: u64,
    rooms: HashMap<RoomName, RoomLog>,
    ids_log: Option<File>,
    reserved: u64,
    /// Use the `.idx` files for queries (else: scan segments).
    use_index: bool,
    syncs: u64,
    index_cpu: Duration,
}

impl Segmented {
    fn create(dir: &Path, sync: bool, segment_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            sync,
            segment_bytes,
            rooms: HashMap::new(),
            ids_log: None,
            reserved: 0,
            use_index: false,
            syncs: 0,
            index_cpu: Duration::ZERO,
        })
    }

    fn open_segment(&mut self, room: &RoomName, first_id: u64) -> io::Result<RoomLog> {
        let dir = self.dir.join(room.as_str());
        let fresh = !dir.exists();
        if fresh {
            fs::create_dir(&dir)?;
        }
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(dir.join(format!("{}.log", segment_name(first_id))))?;
        if self.sync {
            sync_dir(&dir)?;
            self.syncs += 1;
            if fresh {
                sync_dir(&self.dir)?;
                self.syncs += 1;
            }
        }
        Ok(RoomLog {
            dir,
            file,
            first_id,
            len: 0,
            index: IndexBuilder::default(),
        })
    }

    fn seal(&mut self, log: &mut RoomLog, next_id: u64, room: &RoomName) -> io::Result<()> {
        if self.sync {
            log.file.sync_data()?;
            self.syncs += 1;
        }
        let t0 = thread_cpu();
        let idx = std::mem::take(&mut log.index).finish();
        self.index_cpu += thread_cpu().saturating_sub(t0);
        let name = segment_name(log.first_id);
        let tmp = log.dir.join(format!("{name}.idx.tmp"));
        fs::write(&tmp, idx)?;
        fs::rename(&tmp, log.dir.join(format!("{name}.idx")))?;
        *log = self.open_segment(room, next_id)?;
        Ok(())
    }

    fn segments(&self, room: &str) -> io::Result<Vec<u64>> {
        let mut ids: Vec<u64> = fs::read_dir(self.dir.join(room))?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn room_dirs(&self) -> io::Result<Vec<String>> {
        let mut rooms: Vec<String> = fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| !name.starts_with('_'))
            .collect();
        rooms.sort();
        Ok(rooms)
    }

    fn index_of(&self, room: &str, first_id: u64) -> Option<Vec<Block>> {
        if !self.use_index {
            return None;
        }
        let path = self
            .dir
            .join(room)
            .join(format!("{}.idx", segment_name(first_id)));
        parse_idx(&fs::read(path).ok()?)
    }

    /// Records of `bytes` (whole lines) that contain `word` as a word;
    /// a case-insensitive byte search first, decoding only the hits.
    fn grep(bytes: &[u8], word: &str, hits: &mut Vec<Record>) {
        let lower = bytes.to_ascii_lowercase();
        let finder = memchr::memmem::Finder::new(word.as_bytes());
        let mut from = 0;
        while let Some(at) = finder.find(&lower[from..]) {
            let at = from + at;
            let start = memchr::memrchr(b'\n', &bytes[..at]).map_or(0, |i| i + 1);
            let end = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |i| at + i);
            if end < bytes.len()
                && let Ok(record) = decode(&bytes[start..end])
                && words_of(&record.text).any(|w| w == word)
            {
                hits.push(record);
            }
            from = end.max(at + 1);
        }
    }
}

impl Store for Segmented {
    fn insert(&mut self, batch: &[Record]) -> io::Result<()> {
        // Group by room, in order of first appearance.
        let mut order: Vec<&RoomName> = Vec::new();
        let mut groups: HashMap<&RoomName, Vec<&Record>> = HashMap::new();
        for record in batch {
            groups
                .entry(&record.room)
                .or_insert_with(|| {
                    order.push(&record.room);
                    Vec::new()
                })
                .push(record);
        }
        // An id reservation every 1,024 ids, in `_ids.log`, as the core does.
        let last = batch.last().map_or(0, |r| r.id.get());
        if last + 512 > self.reserved {
            let log = match &mut self.ids_log {
                Some(log) => log,
                None => self.ids_log.insert(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(self.dir.join("_ids.log"))?,
                ),
            };
            self.reserved += 1024;
            log.write_all(&encode(&Record::reservation(
                MessageId::new(self.reserved),
                TS0 + last * 10,
            )))?;
            if self.sync {
                log.sync_data()?;
                self.syncs += 1;
            }
        }
        let mut buf = Vec::with_capacity(64 * 1024);
        // Where each record's line went: (offset, length), in batch order per room.
        let mut placed: Vec<Vec<(u64, u64)>> = Vec::with_capacity(order.len());
        for room in &order {
            let records = &groups[room];
            let mut log = match self.rooms.remove(*room) {
                Some(log) => log,
                None => self.open_segment(room, records[0].id.get())?,
            };
            if log.len >= self.segment_bytes {
                self.seal(&mut log, records[0].id.get(), room)?;
            }
            buf.clear();
            let mut lines = Vec::with_capacity(records.len());
            for record in records {
                let line = encode(record);
                lines.push((log.len + buf.len() as u64, line.len() as u64));
                buf.extend_from_slice(&line);
            }
            placed.push(lines);
            log.file.write_all(&buf)?;
            log.len += buf.len() as u64;
            self.rooms.insert((*room).clone(), log);
        }
        // The index, timed on its own (thread CPU time, once per batch).
        let t0 = thread_cpu();
        for (room, lines) in order.iter().zip(&placed) {
            let log = self.rooms.get_mut(*room).expect("written above");
            for (record, &(offset, len)) in groups[room].iter().zip(lines) {
                log.index.add(offset, len, record);
            }
        }
        self.index_cpu += thread_cpu().saturating_sub(t0);
        if self.sync {
            for room in &order {
                self.rooms[*room].file.sync_data()?;
                self.syncs += 1;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        // Write every open segment's index as a seal would, so that the
        // indexed query runs can use it; then close everything.
        for (_, mut log) in std::mem::take(&mut self.rooms) {
            let t0 = thread_cpu();
            let idx = std::mem::take(&mut log.index).finish();
            self.index_cpu += thread_cpu().saturating_sub(t0);
            let name = segment_name(log.first_id);
            let tmp = log.dir.join(format!("{name}.idx.tmp"));
            fs::write(&tmp, idx)?;
            fs::rename(&tmp, log.dir.join(format!("{name}.idx")))?;
        }
        self.ids_log = None;
        Ok(())
    }

    fn start(&self) -> io::Result<usize> {
        let mut read = 0;
        let mut floor = 0u64;
        for room in self.room_dirs()? {
            let segments = self.segments(&room)?;
            // Newest segment backwards; older ones only while short of records.
            let mut tail: Vec<Record> = Vec::new();
            for &first in segments.iter().rev() {
                let path = self
                    .dir
                    .join(&room)
                    .join(format!("{}.log", segment_name(first)));
                let file = File::open(path)?;
                let len = file.metadata()?.len();
                read_back(&file, len, |line| {
                    if let Ok(record) = decode(line) {
                        floor = floor.max(record.id.get());
                        tail.push(record);
                    }
                    tail.len() < START_TAIL
                })?;
                if tail.len() >= START_TAIL {
                    break;
                }
            }
            read += tail.len();
        }
        if let Ok(file) = File::open(self.dir.join("_ids.log")) {
            let len = file.metadata()?.len();
            read_back(&file, len, |line| {
                if let Ok(record) = decode(line) {
                    floor = floor.max(record.id.get());
                    return false;
                }
                true
            })?;
        }
        Ok(read)
    }

    fn before(&mut self, room: &RoomName, id: u64) -> io::Result<Vec<Record>> {
        let mut page: Vec<Record> = Vec::with_capacity(PAGE);
        let segments = self.segments(room.as_str())?;
        for &first in segments.iter().rev() {
            if first >= id {
                continue;
            }
            let path = self
                .dir
                .join(room.as_str())
                .join(format!("{}.log", segment_name(first)));
            let file = File::open(path)?;
            if let Some(blocks) = self.index_of(room.as_str(), first) {
                let end = blocks.partition_point(|b| b.first_id < id);
                for block in blocks[..end].iter().rev() {
                    let mut bytes = vec![0; block.len as usize];
                    file.read_exact_at(&mut bytes, block.offset)?;
                    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
                    lines.pop();
                    for line in lines.into_iter().rev() {
                        if quick_id(line).is_some_and(|x| x < id)
                            && let Ok(record) = decode(line)
                        {
                            page.push(record);
                            if page.len() == PAGE {
                                break;
                            }
                        }
                    }
                    if page.len() == PAGE {
                        break;
                    }
                }
            } else {
                let len = file.metadata()?.len();
                read_back(&file, len, |line| {
                    if quick_id(line).is_some_and(|x| x < id)
                        && let Ok(record) = decode(line)
                    {
                        page.push(record);
                    }
                    page.len() < PAGE
                })?;
            }
            if page.len() == PAGE {
                break;
            }
        }
        page.reverse();
        Ok(page)
    }

    fn search(&mut self, word: &str) -> io::Result<Vec<Record>> {
        let hash = fnv1a(word);
        let mut hits = Vec::new();
        for room in self.room_dirs()? {
            for first in self.segments(&room)? {
                let path = self
                    .dir
                    .join(&room)
                    .join(format!("{}.log", segment_name(first)));
                match self.index_of(&room, first) {
                    Some(blocks) => {
                        let file = File::open(&path)?;
                        for block in blocks.iter().filter(|b| bloom_may(&b.bloom, hash)) {
                            let mut bytes = vec![0; block.len as usize];
                            file.read_exact_at(&mut bytes, block.offset)?;
                            Self::grep(&bytes, word, &mut hits);
                        }
                    }
                    None => Self::grep(&fs::read(&path)?, word, &mut hits),
                }
            }
        }
        hits.sort_by_key(|r| r.id);
        let keep = hits.len().saturating_sub(SEARCH_LIMIT);
        Ok(hits.split_off(keep))
    }

    fn root(&self) -> &Path {
        &self.dir
    }
}

// ---------------------------------------------------------------- main

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn print_table(options: &Options, rows: &[Row]) {
    println!(
        "\n{} records, {} rooms, batch {}, ~{}-byte texts, sync {}, {} `before` queries, segment {} bytes\n",
        options.records,
        options.rooms,
        options.batch,
        options.text_bytes,
        if options.sync { "full" } else { "off" },
        options.queries,
        options.segment_bytes
    );
    println!(
        "| store | insert rec/s | CPU s per 1M rec | syncs | bytes/rec | index bytes/rec | start cold ms | start warm ms | before p50 µs | before p99 µs | search cold ms | search warm ms | hits |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let per_million = 1e6 / row.records as f64;
        let cpu = match row.index_cpu {
            Some(index) => format!(
                "{:.2} (index {:.2})",
                row.insert_cpu.as_secs_f64() * per_million,
                index.as_secs_f64() * per_million
            ),
            None => format!("{:.2}", row.insert_cpu.as_secs_f64() * per_million),
        };
        println!(
            "| {} | {:.0} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {}{} |",
            row.store,
            row.records as f64 / row.insert_wall.as_secs_f64(),
            cpu,
            row.syncs,
            row.bytes as f64 / row.records as f64,
            if row.index_bytes > 0 {
                format!("{:.1}", row.index_bytes as f64 / row.records as f64)
            } else {
                "-".to_owned()
            },
            ms(row.start_cold),
            ms(row.start_warm),
            us(row.before_p50),
            us(row.before_p99),
            ms(row.search_cold),
            ms(row.search_warm),
            row.search_hits,
            row.note,
        );
    }
}

fn probe(options: &Options) -> io::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for name in &options.stores {
        let dir = options.dir.join(name);
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        eprintln!("{name}: loading {} records", options.records);
        match name.as_str() {
            "sqlite" | "sqlite-fts" => {
                let fts = name == "sqlite-fts";
                let mut store = Sqlite::create(&dir, fts, options.sync)?;
                let mut row = Row {
                    store: if fts {
                        "SQLite + FTS5".into()
                    } else {
                        "SQLite".into()
                    },
                    ..Row::default()
                };
                let generator = load(options, name, &mut store, &mut row)?;
                row.syncs = if options.sync {
                    // One WAL sync per commit, one commit per batch.
                    options.records.div_ceil(options.batch as u64)
                } else {
                    0
                };
                row.bytes = disk_bytes(&dir, &|p| !p.to_string_lossy().ends_with("-shm"));
                queries(options, &generator, &mut store, &mut row)?;
                rows.push(row);
            }
            "segmented" => {
                let mut store = Segmented::create(&dir, options.sync, options.segment_bytes)?;
                let mut row = Row {
                    store: "segmented, no index (scan)".into(),
                    ..Row::default()
                };
                let generator = load(options, name, &mut store, &mut row)?;
                row.syncs = store.syncs;
                row.index_cpu = Some(store.index_cpu);
                row.bytes = disk_bytes(&dir, &|p| p.to_string_lossy().ends_with(".log"));
                row.index_bytes = disk_bytes(&dir, &|p| p.to_string_lossy().ends_with(".idx"));
                queries(options, &generator, &mut store, &mut row)?;
                let mut indexed = Row {
                    store: "segmented + .idx (same load)".into(),
                    records: row.records,
                    insert_wall: row.insert_wall,
                    insert_cpu: row.insert_cpu,
                    index_cpu: row.index_cpu,
                    syncs: row.syncs,
                    bytes: row.bytes,
                    index_bytes: row.index_bytes,
                    ..Row::default()
                };
                rows.push(row);
                store.use_index = true;
                queries(options, &generator, &mut store, &mut indexed)?;
                rows.push(indexed);
            }
            _ => usage(),
        }
        if !options.keep {
            fs::remove_dir_all(&dir)?;
        }
    }
    Ok(rows)
}

fn main() {
    let options = parse_options();
    match probe(&options) {
        Ok(rows) => print_table(&options, &rows),
        Err(error) => {
            eprintln!("storage-probe: {error}");
            std::process::exit(1);
        }
    }
}
