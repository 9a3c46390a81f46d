//! A simulated disk for the crash test (test builds only).
//!
//! Each file has what reads see (the page cache) and what is durable.
//! Writes and length changes since a file's last sync are kept apart, in
//! order; a sync applies them to the durable copy. A new file's directory
//! entry is durable only after a directory sync. At a power cut (before a
//! chosen operation) the image of the disk is: each file's durable copy,
//! plus any subset of its unsynced operations in any order, each write
//! possibly torn to any piece of itself; a file whose entry was never
//! synced may be gone. Faults can be injected: a write that stops part
//! way (disk full), a failed length change, a failed sync that loses some
//! unsynced writes for good (as Linux does after a writeback error), a
//! failed directory sync, a failed open.

use std::collections::BTreeMap;
use std::io::{self, Cursor};
use std::sync::{Arc, Mutex, MutexGuard};

use super::storage::{LogFile, Opened, Storage};

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `per_mille` / 1000.
    pub(crate) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// Fault rates, per thousand operations of each kind.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Faults {
    pub(crate) write: u64,
    pub(crate) set_len: u64,
    pub(crate) sync: u64,
    pub(crate) sync_dir: u64,
    pub(crate) open: u64,
}

/// An unsynced change to a file.
#[derive(Debug, Clone)]
enum Op {
    Write { at: usize, bytes: Vec<u8> },
    SetLen(usize),
}

impl Op {
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            Self::Write { at, bytes } => {
                if data.len() < at + bytes.len() {
                    data.resize(at + bytes.len(), 0);
                }
                data[*at..at + bytes.len()].copy_from_slice(bytes);
            }
            Self::SetLen(len) => data.resize(*len, 0),
        }
    }

    /// Applies a random piece of a write (a torn write), or a length
    /// change whole.
    fn apply_torn(&self, data: &mut Vec<u8>, rng: &mut Rng) {
        match self {
            Self::Write { at, bytes } if !bytes.is_empty() => {
                let start = rng.below(bytes.len() as u64) as usize;
                let end = start + 1 + rng.below((bytes.len() - start) as u64) as usize;
                Self::Write {
                    at: at + start,
                    bytes: bytes[start..end].to_vec(),
                }
                .apply(data);
            }
            other => other.apply(data),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct SimFile {
    /// What reads see.
    data: Vec<u8>,
    /// What survives a power cut for sure.
    durable: Vec<u8>,
    /// Changes since the last sync, in order.
    pending: Vec<Op>,
    /// Whether the directory entry is durable.
    entry_durable: bool,
}

/// Files after a power cut.
pub(crate) type Image = BTreeMap<String, Vec<u8>>;

#[derive(Debug)]
struct Disk {
    files: BTreeMap<String, SimFile>,
    /// Operations done so far.
    ops: u64,
    /// Cut the power before this operation.
    cut_before: Option<u64>,
    image: Option<Image>,
    /// At the cut, drop every unsynced operation (the least forgiving
    /// disk) instead of keeping a random subset.
    drop_all_unsynced: bool,
    rng: Rng,
    faults: Faults,
    open_handles: usize,
    most_open_handles: usize,
}

/// A shared simulated disk; clones see the same files.
#[derive(Debug, Clone)]
pub(crate) struct SimDisk(Arc<Mutex<Disk>>);

impl SimDisk {
    /// An empty disk.
    pub(crate) fn new(seed: u64, faults: Faults) -> Self {
        Self(Arc::new(Mutex::new(Disk {
            files: BTreeMap::new(),
            ops: 0,
            cut_before: None,
            image: None,
            drop_all_unsynced: false,
            rng: Rng::new(seed),
            faults,
            open_handles: 0,
            most_open_handles: 0,
        })))
    }

    /// A disk holding `image`, all of it durable (a machine restarted).
    pub(crate) fn from_image(image: &Image, seed: u64) -> Self {
        let disk = Self::new(seed, Faults::default());
        disk.lock().files = image
            .iter()
            .map(|(name, data)| {
                let file = SimFile {
                    data: data.clone(),
                    durable: data.clone(),
                    pending: Vec::new(),
                    entry_durable: true,
                };
                (name.clone(), file)
            })
            .collect();
        disk
    }

    /// Cut the power just before operation `op` (0-based).
    pub(crate) fn cut_before(&self, op: u64) {
        self.lock().cut_before = Some(op);
    }

    /// At the cut, lose every unsynced operation.
    pub(crate) fn drop_all_unsynced(&self) {
        self.lock().drop_all_unsynced = true;
    }

    /// Operations done so far.
    pub(crate) fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// The image taken at the cut, or a power cut now if it has not come.
    pub(crate) fn image(&self) -> Image {
        let mut disk = self.lock();
        match disk.image.clone() {
            Some(image) => image,
            None => disk.crash(),
        }
    }

    /// The most log handles open at once so far.
    pub(crate) fn most_open_handles(&self) -> usize {
        self.lock().most_open_handles
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        // Test code: a panic while holding the lock already failed the test.
        self.0.lock().expect("sim disk lock")
    }
}

impl Disk {
    /// Counts one operation, taking the power-cut image first if it is due.
    fn step(&mut self) {
        if self.cut_before == Some(self.ops) && self.image.is_none() {
            self.image = Some(self.crash());
        }
        self.ops += 1;
    }

    fn crash(&mut self) -> Image {
        let mut image = Image::new();
        let names: Vec<String> = self.files.keys().cloned().collect();
        for name in names {
            let file = &self.files[&name];
            if !file.entry_durable && self.rng.chance(500) {
                continue;
            }
            let mut data = file.durable.clone();
            let mut pending = file.pending.clone();
            if !self.drop_all_unsynced {
                // Any subset, in any order, each possibly torn.
                while !pending.is_empty() {
                    let op = pending.remove(self.rng.below(pending.len() as u64) as usize);
                    match self.rng.below(4) {
                        0 => {}
                        1 => op.apply_torn(&mut data, &mut self.rng),
                        _ => op.apply(&mut data),
                    }
                }
            }
            image.insert(name, data);
        }
        image
    }

    fn fault(&mut self, per_mille: u64) -> bool {
        per_mille > 0 && self.rng.chance(per_mille)
    }

    fn file(&mut self, name: &str) -> io::Result<&mut SimFile> {
        self.files
            .get_mut(name)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected fault: {what}"))
}

impl Storage for SimDisk {
    type Log = SimLog;
    type Reader = Cursor<Vec<u8>>;

    fn open(&mut self, name: &str) -> io::Result<Opened<SimLog>> {
        let mut disk = self.lock();
        disk.step();
        let rate = disk.faults.open;
        if disk.fault(rate) {
            return Err(injected("open"));
        }
        let created = !disk.files.contains_key(name);
        let len = disk.files.entry(name.to_owned()).or_default().data.len() as u64;
        disk.open_handles += 1;
        disk.most_open_handles = disk.most_open_handles.max(disk.open_handles);
        drop(disk);
        Ok(Opened {
            log: SimLog {
                disk: self.clone(),
                name: name.to_owned(),
            },
            len,
            created,
        })
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        let mut disk = self.lock();
        disk.step();
        let rate = disk.faults.sync_dir;
        if disk.fault(rate) {
            return Err(injected("sync_dir"));
        }
        for file in disk.files.values_mut() {
            file.entry_durable = true;
        }
        Ok(())
    }

    fn list(&mut self) -> io::Result<Vec<String>> {
        Ok(self.lock().files.keys().cloned().collect())
    }

    fn read(&mut self, name: &str) -> io::Result<Cursor<Vec<u8>>> {
        let mut disk = self.lock();
        Ok(Cursor::new(disk.file(name)?.data.clone()))
    }
}

/// An open file on the simulated disk.
#[derive(Debug)]
pub(crate) struct SimLog {
    disk: SimDisk,
    name: String,
}

impl Drop for SimLog {
    fn drop(&mut self) {
        self.disk.lock().open_handles -= 1;
    }
}

impl LogFile for SimLog {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.step();
        let (faults, partial) = (disk.faults.write, disk.rng.below(bytes.len() as u64 + 1));
        let failed = disk.fault(faults);
        let file = disk.file(&self.name)?;
        let at = file.data.len();
        let written = if failed {
            &bytes[..partial as usize]
        } else {
            bytes
        };
        let op = Op::Write {
            at,
            bytes: written.to_vec(),
        };
        op.apply(&mut file.data);
        file.pending.push(op);
        if failed {
            return Err(injected("write (disk full)"));
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.step();
        let rate = disk.faults.set_len;
        if disk.fault(rate) {
            return Err(injected("set_len"));
        }
        let file = disk.file(&self.name)?;
        let op = Op::SetLen(len as usize);
        op.apply(&mut file.data);
        file.pending.push(op);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.step();
        let rate = disk.faults.sync;
        let failed = disk.fault(rate);
        let Disk { files, rng, .. } = &mut *disk;
        let file = files
            .get_mut(&self.name)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let pending = std::mem::take(&mut file.pending);
        if failed {
            // Some unsynced writes reached the disk, some never will
            // (reads still show them).
            for op in pending {
                match rng.below(3) {
                    0 => {}
                    1 => op.apply_torn(&mut file.durable, rng),
                    _ => op.apply(&mut file.durable),
                }
            }
            return Err(injected("sync"));
        }
        for op in pending {
            op.apply(&mut file.durable);
        }
        Ok(())
    }
}
