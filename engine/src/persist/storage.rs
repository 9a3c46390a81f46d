//! The file operations the history writer and recovery need, behind a
//! trait, so a simulated disk can stand in for the real one in tests
//! (`sim.rs`): the crash test must see which writes were synced.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A directory of append-only logs.
pub trait Storage: Send + 'static {
    /// An open log.
    type Log: LogFile;
    /// A log being read back.
    type Reader: Read;

    /// Opens the log `name` for appending, creating it if missing.
    fn open(&mut self, name: &str) -> io::Result<Opened<Self::Log>>;

    /// Makes the directory's entries (newly created logs) durable.
    fn sync_dir(&mut self) -> io::Result<()>;

    /// The names of the logs (files ending in `.log`), in any order.
    fn list(&mut self) -> io::Result<Vec<String>>;

    /// Reads a log from its start.
    fn read(&mut self, name: &str) -> io::Result<Self::Reader>;
}

/// A log opened by [`Storage::open`].
#[derive(Debug)]
pub struct Opened<L> {
    /// The handle; appends go to its end.
    pub log: L,
    /// Its length when opened.
    pub len: u64,
    /// Whether this call created it (its directory entry is not durable
    /// until [`Storage::sync_dir`]).
    pub created: bool,
}

/// One open log.
pub trait LogFile: Send {
    /// Appends bytes at the current end. On error, any prefix of them may
    /// have been written: call [`LogFile::set_len`] before appending again.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// Cuts (or extends) the log to `len` bytes; the next append goes there.
    fn set_len(&mut self, len: u64) -> io::Result<()>;

    /// Makes the log's data and length durable.
    fn sync(&mut self) -> io::Result<()>;
}

/// Logs as files in a directory, on [`std::fs`].
#[derive(Debug, Clone)]
pub struct DirStorage {
    dir: PathBuf,
}

impl DirStorage {
    /// Logs under `dir` (which must exist to write).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }
}

impl Storage for DirStorage {
    type Log = FileLog;
    type Reader = File;

    fn open(&mut self, name: &str) -> io::Result<Opened<FileLog>> {
        let path = self.dir.join(name);
        // Not `append` mode: on Windows an append-only handle may not
        // change the file's length, and cutting a fragment off needs that.
        // The handle's position is kept at the end instead.
        let (mut file, created) = match OpenOptions::new().write(true).create_new(true).open(&path)
        {
            Ok(file) => (file, true),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                (OpenOptions::new().write(true).open(&path)?, false)
            }
            Err(error) => return Err(error),
        };
        let len = file.seek(SeekFrom::End(0))?;
        Ok(Opened {
            log: FileLog { file },
            len,
            created,
        })
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        sync_dir(&self.dir)
    }

    fn list(&mut self) -> io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !name.ends_with(".log") {
                continue;
            }
            if !entry.file_type()?.is_file() {
                tracing::warn!(log = %entry.path().display(), "not a regular file; skipped");
                continue;
            }
            names.push(name);
        }
        Ok(names)
    }

    fn read(&mut self, name: &str) -> io::Result<File> {
        File::open(self.dir.join(name))
    }
}

/// Syncs a directory, so the files created in it survive a power cut.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Windows cannot open a directory for syncing through std (it needs
/// `FILE_FLAG_BACKUP_SEMANTICS`), and NTFS journals the directory entry
/// of a new file with its metadata, so there is nothing to do.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// A log file on disk.
#[derive(Debug)]
pub struct FileLog {
    file: File,
}

impl LogFile for FileLog {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.seek(SeekFrom::Start(len))?;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}
