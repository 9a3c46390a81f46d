//! A simulated disk for the crash test (test builds only).
//!
//! Each file has what reads see (the page cache) and what is durable.
//! Writes and length changes since a file's last sync are kept apart, in
//! order; a sync applies them to the durable copy. Directory entries work
//! the same way: creating, renaming and removing a name is durable once
//! its directory is synced (with the earlier changes it depends on). At a
//! power cut (before a chosen operation) the image of the disk is: the
//! durable names, plus any subset of the unsynced name changes (each
//! rename whole), each file with its durable copy plus any subset of its
//! unsynced operations in any order, each write possibly torn to any
//! piece of itself. Faults can be injected: a write that stops part way
//! (disk full), a failed length change, a failed sync that loses some
//! unsynced writes for good (as Linux does after a writeback error), a
//! failed directory sync, a failed open.

use std::collections::BTreeMap;
use std::io::{self, Cursor};
use std::sync::{Arc, Mutex, MutexGuard};

use super::storage::{Entry, LogFile, Opened, Storage, parent};

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

/// A file's contents (an inode: names point at it).
#[derive(Debug, Clone, Default)]
struct SimFile {
    /// What reads see.
    data: Vec<u8>,
    /// What survives a power cut for sure.
    durable: Vec<u8>,
    /// Changes since the last sync, in order.
    pending: Vec<Op>,
}

/// What a name points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    File(usize),
}

/// An unsynced change to the names.
#[derive(Debug, Clone)]
enum NameOp {
    Link(String, Node),
    Unlink(String),
    Rename(String, String),
}

impl NameOp {
    fn paths(&self) -> Vec<&str> {
        match self {
            Self::Link(path, _) | Self::Unlink(path) => vec![path],
            Self::Rename(from, to) => vec![from, to],
        }
    }

    /// Whether syncing directory `dir` makes this change durable.
    fn in_dir(&self, dir: &str) -> bool {
        self.paths().iter().any(|path| parent(path) == dir)
    }

    /// Whether this change must be durable before `later` can be: they
    /// touch the same name, or this one makes a directory `later` uses.
    fn needed_by(&self, later: &NameOp) -> bool {
        self.paths().iter().any(|mine| {
            later
                .paths()
                .iter()
                .any(|theirs| mine == theirs || theirs.starts_with(&format!("{mine}/")))
        })
    }

    /// Applies the change to `names` if it can be (its source exists,
    /// its directory exists).
    fn apply(&self, names: &mut BTreeMap<String, Node>) {
        let dir_exists = |names: &BTreeMap<String, Node>, path: &str| {
            let dir = parent(path);
            dir.is_empty() || names.get(dir) == Some(&Node::Dir)
        };
        match self {
            Self::Link(path, node) => {
                if dir_exists(names, path) && !names.contains_key(path) {
                    names.insert(path.clone(), *node);
                }
            }
            Self::Unlink(path) => {
                names.remove(path);
            }
            Self::Rename(from, to) => {
                if dir_exists(names, to)
                    && let Some(node) = names.remove(from)
                {
                    names.insert(to.clone(), node);
                }
            }
        }
    }
}

/// Files after a power cut, by path; a directory is a path ending in `/`
/// with no bytes.
pub(crate) type Image = BTreeMap<String, Vec<u8>>;

#[derive(Debug)]
struct Disk {
    files: Vec<SimFile>,
    /// The names reads see.
    names: BTreeMap<String, Node>,
    /// The names that survive a power cut for sure.
    durable_names: BTreeMap<String, Node>,
    /// Name changes not yet durable, in order.
    pending_names: Vec<NameOp>,
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
    /// Bytes of `.log` files read.
    log_bytes_read: u64,
}

/// A shared simulated disk; clones see the same files.
#[derive(Debug, Clone)]
pub(crate) struct SimDisk(Arc<Mutex<Disk>>);

impl SimDisk {
    /// An empty disk.
    pub(crate) fn new(seed: u64, faults: Faults) -> Self {
        Self(Arc::new(Mutex::new(Disk {
            files: Vec::new(),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            pending_names: Vec::new(),
            ops: 0,
            cut_before: None,
            image: None,
            drop_all_unsynced: false,
            rng: Rng::new(seed),
            faults,
            open_handles: 0,
            most_open_handles: 0,
            log_bytes_read: 0,
        })))
    }

    /// A disk holding `image`, all of it durable (a machine restarted).
    /// Directories of the files in it exist.
    pub(crate) fn from_image(image: &Image, seed: u64) -> Self {
        let disk = Self::new(seed, Faults::default());
        {
            let mut guard = disk.lock();
            let inner = &mut *guard;
            for (path, data) in image {
                let mut dir = parent(path.trim_end_matches('/'));
                while !dir.is_empty() {
                    inner.names.insert(dir.to_owned(), Node::Dir);
                    dir = parent(dir);
                }
                if let Some(dir) = path.strip_suffix('/') {
                    inner.names.insert(dir.to_owned(), Node::Dir);
                } else {
                    inner.files.push(SimFile {
                        data: data.clone(),
                        durable: data.clone(),
                        pending: Vec::new(),
                    });
                    inner
                        .names
                        .insert(path.clone(), Node::File(inner.files.len() - 1));
                }
            }
            inner.durable_names = inner.names.clone();
        }
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

    /// What reads see now, as an image (no power cut).
    pub(crate) fn snapshot(&self) -> Image {
        let disk = self.lock();
        disk.names
            .iter()
            .map(|(path, node)| match node {
                Node::Dir => (format!("{path}/"), Vec::new()),
                Node::File(file) => (path.clone(), disk.files[*file].data.clone()),
            })
            .collect()
    }

    /// Bytes of `.log` files read so far (a whole-file read counts the
    /// file's length).
    pub(crate) fn log_bytes_read(&self) -> u64 {
        self.lock().log_bytes_read
    }

    /// Changes the fault rates from now on.
    pub(crate) fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
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
        let mut names = self.durable_names.clone();
        if !self.drop_all_unsynced {
            // Any subset of the unsynced name changes, as long as a change
            // that reached the disk has every earlier one on the same names
            // with it: filesystems commit a directory's changes in order
            // (the same rule as `sync_names`). Without it a rename could
            // land while the unlink of its source name before it did not,
            // moving a file that name no longer meant.
            let pending = self.pending_names.clone();
            let mut applied = vec![false; pending.len()];
            for (at, op) in pending.iter().enumerate() {
                let needs_missing =
                    (0..at).any(|earlier| !applied[earlier] && pending[earlier].needed_by(op));
                if !needs_missing && self.rng.chance(500) {
                    op.apply(&mut names);
                    applied[at] = true;
                }
            }
        }
        let mut image = Image::new();
        for (path, node) in names {
            let Node::File(file) = node else {
                image.insert(format!("{path}/"), Vec::new());
                continue;
            };
            let file = &self.files[file];
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
            image.insert(path, data);
        }
        image
    }

    fn fault(&mut self, per_mille: u64) -> bool {
        per_mille > 0 && self.rng.chance(per_mille)
    }

    fn file_of(&self, name: &str) -> io::Result<usize> {
        match self.names.get(name) {
            Some(Node::File(file)) => Ok(*file),
            Some(Node::Dir) => Err(io::Error::other(format!("{name} is a directory"))),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn dir_exists(&self, dir: &str) -> bool {
        dir.is_empty() || self.names.get(dir) == Some(&Node::Dir)
    }

    /// Records a name change (already applied to `names`).
    fn name_op(&mut self, op: NameOp) {
        self.pending_names.push(op);
    }

    /// A new empty file named `name` (its directory exists).
    fn create(&mut self, name: &str) -> usize {
        self.files.push(SimFile::default());
        let file = self.files.len() - 1;
        self.names.insert(name.to_owned(), Node::File(file));
        self.name_op(NameOp::Link(name.to_owned(), Node::File(file)));
        file
    }

    fn sync_names(&mut self, dir: &str) {
        let mut commit = vec![false; self.pending_names.len()];
        for at in (0..self.pending_names.len()).rev() {
            let wanted = self.pending_names[at].in_dir(dir)
                || (at + 1..self.pending_names.len()).any(|later| {
                    commit[later] && self.pending_names[at].needed_by(&self.pending_names[later])
                });
            commit[at] = wanted;
        }
        let pending = std::mem::take(&mut self.pending_names);
        for (op, commit) in pending.into_iter().zip(commit) {
            if commit {
                op.apply(&mut self.durable_names);
            } else {
                self.pending_names.push(op);
            }
        }
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
        let (file, created) = match disk.names.get(name) {
            Some(Node::File(file)) => (*file, false),
            Some(Node::Dir) => return Err(io::Error::other(format!("{name} is a directory"))),
            None if disk.dir_exists(parent(name)) => (disk.create(name), true),
            None => return Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        let len = disk.files[file].data.len() as u64;
        disk.open_handles += 1;
        disk.most_open_handles = disk.most_open_handles.max(disk.open_handles);
        drop(disk);
        Ok(Opened {
            log: SimLog {
                disk: self.clone(),
                file,
            },
            len,
            created,
        })
    }

    fn create_dir(&mut self, dir: &str) -> io::Result<bool> {
        let mut disk = self.lock();
        disk.step();
        let rate = disk.faults.open;
        if disk.fault(rate) {
            return Err(injected("create_dir"));
        }
        match disk.names.get(dir) {
            Some(Node::Dir) => Ok(false),
            Some(Node::File(_)) => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
            None if disk.dir_exists(parent(dir)) => {
                disk.names.insert(dir.to_owned(), Node::Dir);
                disk.name_op(NameOp::Link(dir.to_owned(), Node::Dir));
                Ok(true)
            }
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn sync_dir(&mut self, dir: &str) -> io::Result<()> {
        let mut disk = self.lock();
        disk.step();
        let rate = disk.faults.sync_dir;
        if disk.fault(rate) {
            return Err(injected("sync_dir"));
        }
        disk.sync_names(dir);
        Ok(())
    }

    fn list(&mut self, dir: &str) -> io::Result<Vec<Entry>> {
        let disk = self.lock();
        Ok(disk
            .names
            .iter()
            .filter(|(path, _)| parent(path) == dir && !path.is_empty())
            .map(|(path, node)| {
                let name = path.rsplit('/').next().unwrap_or(path).to_owned();
                match node {
                    Node::Dir => Entry {
                        name,
                        dir: true,
                        len: 0,
                    },
                    Node::File(file) => Entry {
                        name,
                        dir: false,
                        len: disk.files[*file].data.len() as u64,
                    },
                }
            })
            .collect())
    }

    fn read(&mut self, name: &str) -> io::Result<Cursor<Vec<u8>>> {
        let mut disk = self.lock();
        let file = disk.file_of(name)?;
        let data = disk.files[file].data.clone();
        if name.ends_with(".log") {
            disk.log_bytes_read += data.len() as u64;
        }
        Ok(Cursor::new(data))
    }

    fn read_at(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut disk = self.lock();
        let data = &disk.files[disk.file_of(name)?].data;
        let start = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        if name.ends_with(".log") {
            disk.log_bytes_read += n as u64;
        }
        Ok(n)
    }

    fn len(&mut self, name: &str) -> io::Result<u64> {
        let disk = self.lock();
        Ok(disk.files[disk.file_of(name)?].data.len() as u64)
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        let mut disk = self.lock();
        disk.step();
        disk.file_of(name)?;
        disk.names.remove(name);
        disk.name_op(NameOp::Unlink(name.to_owned()));
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        let mut disk = self.lock();
        disk.step();
        let file = disk.file_of(from)?;
        if !disk.dir_exists(parent(to)) || disk.names.get(to) == Some(&Node::Dir) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        disk.names.remove(from);
        disk.names.insert(to.to_owned(), Node::File(file));
        disk.name_op(NameOp::Rename(from.to_owned(), to.to_owned()));
        Ok(())
    }

    fn write_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.lock();
        disk.step();
        let file = match disk.names.get(name) {
            Some(Node::File(file)) => *file,
            Some(Node::Dir) => return Err(io::Error::other(format!("{name} is a directory"))),
            None if disk.dir_exists(parent(name)) => disk.create(name),
            None => return Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        let file = &mut disk.files[file];
        for op in [
            Op::SetLen(0),
            Op::Write {
                at: 0,
                bytes: bytes.to_vec(),
            },
        ] {
            op.apply(&mut file.data);
            file.pending.push(op);
        }
        Ok(())
    }
}

/// An open file on the simulated disk.
#[derive(Debug)]
pub(crate) struct SimLog {
    disk: SimDisk,
    file: usize,
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
        let file = &mut disk.files[self.file];
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
        let file = &mut disk.files[self.file];
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
        let file = &mut files[self.file];
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
