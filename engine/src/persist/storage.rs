//! The file operations the history writer and recovery need, behind a
//! trait, so a simulated disk can stand in for the real one in tests
//! (`sim.rs`): the crash test must see which writes were synced.
//!
//! Names are paths relative to the data directory with `/` between their
//! parts (`general/00000000000000000001.log`); `""` is the data directory
//! itself.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A directory tree of append-only logs and small files.
pub trait Storage: Send + 'static {
    /// An open log.
    type Log: LogFile;
    /// A file being read from its start.
    type Reader: Read;

    /// Opens the log `name` for appending, creating it if missing (its
    /// directory must exist).
    fn open(&mut self, name: &str) -> io::Result<Opened<Self::Log>>;

    /// Creates the directory `dir` (its parent must exist); true if this
    /// call created it (its entry is not durable until the parent's
    /// [`Storage::sync_dir`]).
    fn create_dir(&mut self, dir: &str) -> io::Result<bool>;

    /// Makes the entries of directory `dir` (created, renamed, removed
    /// files) durable.
    fn sync_dir(&mut self, dir: &str) -> io::Result<()>;

    /// The entries of directory `dir`, in any order; a missing directory
    /// has none.
    fn list(&mut self, dir: &str) -> io::Result<Vec<Entry>>;

    /// Reads a file from its start.
    fn read(&mut self, name: &str) -> io::Result<Self::Reader>;

    /// Reads up to `buf.len()` bytes of `name` at `offset`; fewer only at
    /// the end of the file.
    fn read_at(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// The length of the file `name`.
    fn len(&mut self, name: &str) -> io::Result<u64>;

    /// Removes the file `name`.
    fn remove(&mut self, name: &str) -> io::Result<()>;

    /// Renames a file, replacing `to` if it exists.
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()>;

    /// Writes a whole small file (replacing it), without syncing it.
    fn write_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name within the directory.
    pub name: String,
    /// Whether it is a directory (otherwise a regular file).
    pub dir: bool,
    /// A file's length in bytes (0 for a directory).
    pub len: u64,
}

/// `dir/name`, or `name` in the data directory itself.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// The directory a name is in (`""` for the data directory).
#[cfg(test)]
pub(crate) fn parent(name: &str) -> &str {
    name.rsplit_once('/').map_or("", |(dir, _)| dir)
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

/// Logs as files in a directory tree, on [`std::fs`].
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

    fn path(&self, name: &str) -> PathBuf {
        if name.is_empty() {
            return self.dir.clone();
        }
        name.split('/')
            .fold(self.dir.clone(), |path, part| path.join(part))
    }
}

impl Storage for DirStorage {
    type Log = FileLog;
    type Reader = File;

    fn open(&mut self, name: &str) -> io::Result<Opened<FileLog>> {
        let path = self.path(name);
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

    fn create_dir(&mut self, dir: &str) -> io::Result<bool> {
        match std::fs::create_dir(self.path(dir)) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                if self.path(dir).is_dir() {
                    Ok(false)
                } else {
                    Err(error)
                }
            }
            Err(error) => Err(error),
        }
    }

    fn sync_dir(&mut self, dir: &str) -> io::Result<()> {
        sync_dir(&self.path(dir))
    }

    fn list(&mut self, dir: &str) -> io::Result<Vec<Entry>> {
        let entries = match std::fs::read_dir(self.path(dir)) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut listed = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                listed.push(Entry {
                    name,
                    dir: true,
                    len: 0,
                });
            } else if kind.is_file() {
                let len = entry.metadata()?.len();
                listed.push(Entry {
                    name,
                    dir: false,
                    len,
                });
            } else {
                tracing::warn!(path = %entry.path().display(), "not a regular file or directory; skipped");
            }
        }
        Ok(listed)
    }

    fn read(&mut self, name: &str) -> io::Result<File> {
        File::open(self.path(name))
    }

    fn read_at(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let mut file = File::open(self.path(name))?;
        file.seek(SeekFrom::Start(offset))?;
        let mut done = 0;
        while done < buf.len() {
            match file.read(&mut buf[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(done)
    }

    fn len(&mut self, name: &str) -> io::Result<u64> {
        Ok(std::fs::metadata(self.path(name))?.len())
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.path(name))
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.path(from), self.path(to))
    }

    fn write_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        std::fs::write(self.path(name), bytes)
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
