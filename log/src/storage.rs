//! The storage trait the log writes through, and `FsStorage`, the real file system.
//!
//! The log does all its I/O through `Storage` so that a test implementation (`SimStorage`)
//! can keep what was written since the last sync apart from what is durable and simulate
//! power loss. The trait is deliberately small and file-shaped: a flat directory of named
//! files, positional reads and writes, `fdatasync`/`fsync`, truncation, preallocation,
//! read-only maps, renames and a directory sync. Everything is `io::Result`; the log adds
//! the context (which file, which position) when it turns a failure into its `Error`.
//!
//! The trait also reports the file system's free space, so that the log can keep its
//! preallocation out of a reserve the server wants to keep free, and `is_no_space` tells a
//! full disk (which the log can refuse a batch for, writing nothing) from other failures.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::format::LOCK_FILE_NAME;

/// How a `Log` treats another process holding its directory's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Fail at once with `Error::Locked`.
    Fail,
    /// Block until the other process releases the lock.
    Wait,
}

/// Whether a file is opened for reading only or also for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only (verify, recovery checks of sealed segments).
    ReadOnly,
    /// Read and write (the active segment).
    ReadWrite,
}

/// A flat directory of named files: what the log needs from a file system.
///
/// Implementations must give the usual POSIX meaning to each operation; in particular a
/// write is durable only after `sync_data`/`sync_all` of its file returns, and a
/// create, rename or remove only after `sync_dir` returns.
pub trait Storage: Send + Sync + 'static {
    /// An open file.
    type File: StorageFile;
    /// A read-only view of a whole file that is not written while mapped.
    type Map: Deref<Target = [u8]> + Send + Sync + 'static;
    /// Proof that this process holds the directory's lock; dropping it releases the lock.
    type Lock: Send + 'static;

    /// A human-readable location of `name` (a path), for error messages.
    fn describe(&self, name: &str) -> String;

    /// Takes the directory's exclusive lock. Returns `None` if another process holds it
    /// and `mode` is `Fail`; with `Wait` it blocks until the lock is free.
    fn lock(&self, mode: LockMode) -> io::Result<Option<Self::Lock>>;

    /// The names of all files in the directory, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;

    /// Creates a new, empty file opened for reading and writing; fails if `name` exists.
    fn create(&self, name: &str) -> io::Result<Self::File>;

    /// Opens an existing file.
    fn open(&self, name: &str, access: Access) -> io::Result<Self::File>;

    /// Maps an existing file read-only. The caller guarantees nobody writes or truncates
    /// the file while the map lives (the log maps only sealed segments, and the newest
    /// segment during recovery while it holds the lock and before it writes).
    fn map(&self, name: &str) -> io::Result<Self::Map>;

    /// Renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;

    /// Removes a file.
    fn remove(&self, name: &str) -> io::Result<()>;

    /// Makes creates, renames and removes in the directory durable.
    fn sync_dir(&self) -> io::Result<()>;

    /// The free and total space of the file system that holds the directory, or `None`
    /// where that is unknown (then the log preallocates without looking at free space).
    fn space(&self) -> io::Result<Option<Space>>;
}

/// A file system's size and free space, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes an unprivileged process may still allocate (`statvfs` `f_bavail`).
    pub available_bytes: u64,
    /// The file system's size (`f_blocks`).
    pub total_bytes: u64,
}

/// The free and total space of the file system that holds `path` (`statvfs`).
pub fn file_system_space(path: &Path) -> io::Result<Space> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a path with a NUL byte has no file system",
        )
    })?;
    // SAFETY: statvfs is plain old data, for which all-zero bytes are a valid value.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stats` a valid place to write to;
    // both outlive the call.
    let result = unsafe { libc::statvfs(path.as_ptr(), &mut stats) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    // The field widths differ between platforms; none is wider than 64 bits.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let (block_bytes, available_blocks, total_blocks) = (
        u64::from(stats.f_frsize as u64),
        u64::from(stats.f_bavail as u64),
        u64::from(stats.f_blocks as u64),
    );
    Ok(Space {
        available_bytes: available_blocks.saturating_mul(block_bytes),
        total_bytes: total_blocks.saturating_mul(block_bytes),
    })
}

/// Whether `error` says the file system (or the user's quota) is full: the one failure
/// after which the log may refuse a batch and stay usable, if no byte of it was written.
pub fn is_no_space(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(
        error.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT)
    )
}

/// An open file of a `Storage`.
pub trait StorageFile: Send + Sync + 'static {
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Fills `buffer` from `position`; fails if the file ends before the buffer is full.
    fn read_at(&self, buffer: &mut [u8], position: u64) -> io::Result<()>;

    /// Writes all of `bytes` at `position`, extending the file if needed.
    fn write_at(&self, bytes: &[u8], position: u64) -> io::Result<()>;

    /// Makes written data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;

    /// Makes written data and all metadata, such as a changed length, durable (`fsync`).
    fn sync_all(&self) -> io::Result<()>;

    /// Truncates or extends (with zeros) the file to `length` bytes.
    fn set_len(&self, length: u64) -> io::Result<()>;

    /// Reserves space so the file is at least `length` bytes, reading as zeros where
    /// nothing was written; never shrinks the file.
    fn preallocate(&self, length: u64) -> io::Result<()>;
}

/// The real file system: a directory of files.
#[derive(Debug)]
pub struct FsStorage {
    dir: PathBuf,
    /// The directory itself, opened once so `sync_dir` is one `fsync`.
    dir_handle: File,
}

impl FsStorage {
    /// Opens an existing directory.
    pub fn open(dir: &Path) -> io::Result<FsStorage> {
        let dir_handle = File::open(dir)?;
        if !dir_handle.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(FsStorage {
            dir: dir.to_path_buf(),
            dir_handle,
        })
    }

    /// Opens a directory, creating it (and its parents) if missing; a new directory's
    /// entry is made durable by syncing its parent.
    pub fn create(dir: &Path) -> io::Result<FsStorage> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                File::open(parent)?.sync_all()?;
            }
        }
        FsStorage::open(dir)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        debug_assert!(!name.contains('/'), "file names are flat: {name}");
        self.dir.join(name)
    }
}

/// A file of `FsStorage`.
#[derive(Debug)]
pub struct FsFile {
    file: File,
}

/// The held lock of an `FsStorage` directory: an open `LOCK` file with an exclusive
/// `flock`, released when this is dropped (or the process dies).
#[derive(Debug)]
pub struct FsLock {
    _file: File,
}

impl Storage for FsStorage {
    type File = FsFile;
    type Map = memmap2::Mmap;
    type Lock = FsLock;

    fn describe(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn lock(&self, mode: LockMode) -> io::Result<Option<FsLock>> {
        use std::os::fd::AsRawFd;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.path(LOCK_FILE_NAME))?;
        let operation = match mode {
            LockMode::Fail => libc::LOCK_EX | libc::LOCK_NB,
            LockMode::Wait => libc::LOCK_EX,
        };
        loop {
            // SAFETY: flock only reads the descriptor number, which `file` keeps open.
            let result = unsafe { libc::flock(file.as_raw_fd(), operation) };
            if result == 0 {
                return Ok(Some(FsLock { _file: file }));
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(error),
            }
        }
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            // Names that are not UTF-8 are not the log's files.
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn create(&self, name: &str) -> io::Result<FsFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.path(name))?;
        Ok(FsFile { file })
    }

    fn open(&self, name: &str, access: Access) -> io::Result<FsFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(access == Access::ReadWrite)
            .open(self.path(name))?;
        Ok(FsFile { file })
    }

    fn map(&self, name: &str) -> io::Result<memmap2::Mmap> {
        let file = File::open(self.path(name))?;
        // SAFETY: the map is read-only and the log maps only files that nothing writes or
        // truncates while the map lives: sealed segments (never written again), the
        // newest segment during recovery (under the directory lock, dropped before any
        // write), and index files. Another process modifying these files behind the
        // log's back is outside its contract, like any other on-disk tampering.
        unsafe { memmap2::Mmap::map(&file) }
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.path(from), self.path(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.path(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.dir_handle.sync_all()
    }

    fn space(&self) -> io::Result<Option<Space>> {
        file_system_space(&self.dir).map(Some)
    }
}

impl StorageFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_at(&self, buffer: &mut [u8], position: u64) -> io::Result<()> {
        self.file.read_exact_at(buffer, position)
    }

    fn write_at(&self, bytes: &[u8], position: u64) -> io::Result<()> {
        self.file.write_all_at(bytes, position)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn set_len(&self, length: u64) -> io::Result<()> {
        self.file.set_len(length)
    }

    fn preallocate(&self, length: u64) -> io::Result<()> {
        if self.len()? >= length {
            return Ok(());
        }
        allocate(&self.file, length)
    }
}

/// Allocates blocks up to `length` so later writes need no allocation (and cannot hit a
/// full disk halfway through a batch). Falls back to extending the file where the file
/// system has no `fallocate`.
#[cfg(target_os = "linux")]
fn allocate(file: &File, length: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let length = libc::off_t::try_from(length).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "preallocation length too large",
        )
    })?;
    loop {
        // SAFETY: fallocate only reads the descriptor number, which `file` keeps open.
        let result = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, length) };
        if result == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => return file.set_len(length as u64),
            _ => return Err(error),
        }
    }
}

/// Extends the file where `fallocate` does not exist.
#[cfg(not(target_os = "linux"))]
fn allocate(file: &File, length: u64) -> io::Result<()> {
    file.set_len(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_operations_round_trip() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = FsStorage::create(&dir.path().join("nested/log")).expect("create");
        let file = storage.create("a.tmp").expect("create file");
        assert!(
            storage.create("a.tmp").is_err(),
            "create refuses an existing name"
        );
        file.write_at(b"hello", 3).expect("write");
        assert_eq!(file.len().expect("len"), 8);
        let mut buffer = [0u8; 8];
        file.read_at(&mut buffer, 0).expect("read");
        assert_eq!(&buffer, b"\0\0\0hello");
        assert!(file.read_at(&mut [0u8; 2], 7).is_err(), "short reads fail");
        file.preallocate(4096).expect("preallocate");
        assert_eq!(file.len().expect("len"), 4096);
        file.preallocate(100).expect("preallocate never shrinks");
        assert_eq!(file.len().expect("len"), 4096);
        file.sync_all().expect("sync");
        file.set_len(8).expect("truncate");
        file.sync_data().expect("sync");
        storage.rename("a.tmp", "a").expect("rename");
        storage.sync_dir().expect("sync dir");
        assert_eq!(&*storage.map("a").expect("map"), b"\0\0\0hello");
        let mut names = storage.list().expect("list");
        names.sort();
        assert_eq!(names, vec!["a".to_owned()]);
        storage.remove("a").expect("remove");
        assert!(storage.open("a", Access::ReadOnly).is_err());
    }

    #[test]
    fn space_is_reported_and_full_disks_are_recognised() {
        let dir = tempfile::tempdir().expect("temp dir");
        let space = FsStorage::open(dir.path())
            .expect("open")
            .space()
            .expect("statvfs")
            .expect("a real file system knows its space");
        assert!(space.total_bytes > 0);
        assert!(space.available_bytes <= space.total_bytes);
        assert!(file_system_space(&dir.path().join("missing")).is_err());
        assert!(is_no_space(&io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(is_no_space(&io::Error::from_raw_os_error(libc::EDQUOT)));
        assert!(!is_no_space(&io::Error::from_raw_os_error(libc::EIO)));
    }

    #[test]
    fn lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = FsStorage::open(dir.path()).expect("open");
        let held = storage.lock(LockMode::Fail).expect("lock").expect("free");
        let other = FsStorage::open(dir.path()).expect("open");
        assert!(other.lock(LockMode::Fail).expect("lock").is_none());
        drop(held);
        assert!(other.lock(LockMode::Wait).expect("lock").is_some());
    }

    #[test]
    fn open_refuses_a_missing_directory_or_a_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(FsStorage::open(&dir.path().join("missing")).is_err());
        std::fs::write(dir.path().join("file"), b"x").expect("write");
        assert!(FsStorage::open(&dir.path().join("file")).is_err());
    }
}
