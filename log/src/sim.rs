//! `SimStorage`: an in-memory `Storage` for tests that simulates crashes and power loss.
//!
//! It is compiled into the crate (not only under `cfg(test)`) so that integration tests,
//! here and in other crates, can drive a real `Log` through it; production code has no use
//! for it. Each file keeps the bytes that were durable at its last sync apart from the
//! operations issued since, and the directory keeps its durable entries apart from the
//! creates, renames and removes since the last directory sync. `crash` then builds the disk
//! a restarted process would find: everything unsynced kept (a process crash), dropped, or
//! partly kept (a torn prefix, or a random subset of sectors, which models reordering).
//! `fail_after_mutations` makes the simulated process die at an exact operation, so a test
//! can crash at every point of an append, a roll or a recovery.
//!
//! `fail_nth` instead makes one operation of a kind (the Nth write, sync, resize, rename,
//! remove, create or directory sync) return EIO or ENOSPC while the process lives on, the
//! way SQLite's I/O error tests fail the Nth operation; `set_capacity` makes the disk
//! small enough to fill. A failed sync behaves as on Linux ("fsyncgate"): the unsynced
//! writes are dropped from what can reach the disk while the process still reads them,
//! and a later sync reports success without bringing them back, so a writer that retried
//! the sync would wrongly believe them durable.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::storage::{Access, LockMode, Space, Storage, StorageFile};

/// A small deterministic random number generator (SplitMix64), so that a failing seed
/// reproduces a run exactly, independent of any crate's version.
#[derive(Debug, Clone)]
pub struct SimRng {
    state: u64,
}

impl SimRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SimRng {
        SimRng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// A number in `0..bound`; `bound` must not be zero.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "an empty range has no numbers");
        self.next_u64() % bound
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "{low}..={high} is empty");
        low + self.below(high - low + 1)
    }

    /// True with probability 1/2.
    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// Fills `bytes` with random bytes.
    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let random = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&random[..chunk.len()]);
        }
    }
}

/// What survives a simulated crash of the operations issued since the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// The process died but the machine did not: every completed write survives, as it
    /// would in the page cache.
    ProcessCrash,
    /// Power loss that keeps nothing unsynced.
    DropUnsynced,
    /// Power loss that keeps the unsynced operations in order up to a random one, and a
    /// random prefix of that one (a torn write).
    TornPrefix,
    /// Power loss that keeps a random subset of the unsynced writes' sectors (of a random
    /// size from 1 to 512 bytes) and of the unsynced length changes: writes reach the disk
    /// out of order and partly.
    Reordered,
}

impl CrashMode {
    /// Every mode, for picking one at random.
    pub const ALL: [CrashMode; 4] = [
        CrashMode::ProcessCrash,
        CrashMode::DropUnsynced,
        CrashMode::TornPrefix,
        CrashMode::Reordered,
    ];
}

/// A kind of storage operation that `SimStorage::fail_nth` can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `Storage::create`.
    Create,
    /// `StorageFile::write_at`.
    Write,
    /// `StorageFile::sync_data` and `sync_all`.
    Sync,
    /// `StorageFile::set_len` and `preallocate`.
    Resize,
    /// `Storage::rename`.
    Rename,
    /// `Storage::remove`.
    Remove,
    /// `Storage::sync_dir`.
    SyncDir,
}

impl Operation {
    /// Every kind, for iterating over all of them.
    pub const ALL: [Operation; 7] = [
        Operation::Create,
        Operation::Write,
        Operation::Sync,
        Operation::Resize,
        Operation::Rename,
        Operation::Remove,
        Operation::SyncDir,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// The error an injected failure returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `EIO`: the device failed.
    Eio,
    /// `ENOSPC`: the file system is full.
    Enospc,
}

impl Fault {
    /// Both faults.
    pub const ALL: [Fault; 2] = [Fault::Eio, Fault::Enospc];

    fn error(self, operation: Operation) -> io::Error {
        let errno = match self {
            Fault::Eio => libc::EIO,
            Fault::Enospc => libc::ENOSPC,
        };
        let cause = io::Error::from_raw_os_error(errno);
        io::Error::new(
            cause.kind(),
            format!("sim: injected {operation:?}: {cause}"),
        )
    }
}

/// An in-memory directory that tracks durability; clones share the same disk.
#[derive(Debug, Clone, Default)]
pub struct SimStorage {
    state: Arc<Mutex<SimState>>,
}

#[derive(Debug, Default)]
struct SimState {
    inodes: HashMap<u64, Inode>,
    inode_next: u64,
    /// The directory as the running process sees it.
    names: BTreeMap<String, u64>,
    /// The directory as of the last `sync_dir`.
    durable_names: BTreeMap<String, u64>,
    /// Directory operations since the last `sync_dir`, in order.
    dir_ops: Vec<DirOp>,
    locked: bool,
    /// Mutating operations attempted so far.
    mutations: u64,
    /// Mutating operations allowed before the simulated process dies.
    mutations_max: Option<u64>,
    /// Whether the simulated process has died; every later mutation fails.
    dead: bool,
    /// Operations attempted so far, by `Operation::index`.
    operations: [u64; Operation::ALL.len()],
    /// Injected failures still to fire: the kind, the count of that kind at which it fires,
    /// and the error.
    faults: Vec<(Operation, u64, Fault)>,
    /// Injected failures that have fired.
    faults_fired: u64,
    /// `mutations` right after the last injected failure fired.
    last_fault_at: Option<u64>,
    /// Most bytes all files may hold together; `None` is unlimited.
    capacity_bytes: Option<u64>,
}

#[derive(Debug, Default, Clone)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<FileOp>,
}

#[derive(Debug, Clone)]
enum FileOp {
    Write { position: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone)]
enum DirOp {
    Link { name: String, inode: u64 },
    Unlink { name: String },
    Rename { from: String, to: String },
}

impl DirOp {
    fn apply(&self, names: &mut BTreeMap<String, u64>) {
        match self {
            DirOp::Link { name, inode } => {
                names.insert(name.clone(), *inode);
            }
            DirOp::Unlink { name } => {
                names.remove(name);
            }
            DirOp::Rename { from, to } => {
                if let Some(inode) = names.remove(from) {
                    names.insert(to.clone(), inode);
                }
            }
        }
    }
}

fn apply_write(content: &mut Vec<u8>, position: u64, bytes: &[u8]) {
    let start = position as usize;
    let end = start + bytes.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[start..end].copy_from_slice(bytes);
}

fn apply_op(content: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { position, bytes } => apply_write(content, *position, bytes),
        FileOp::SetLen(length) => content.resize(*length as usize, 0),
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("sim: no file {name}"))
}

impl SimState {
    /// Counts a mutating operation of kind `operation` and fails it if the simulated
    /// process is dead or dies now, or if a failure was injected into it.
    fn mutate(&mut self, operation: Operation) -> io::Result<()> {
        if self.dead {
            return Err(io::Error::other("sim: the process has crashed"));
        }
        self.mutations += 1;
        if self.mutations_max.is_some_and(|max| self.mutations > max) {
            self.dead = true;
            return Err(io::Error::other("sim: the process crashes here"));
        }
        let count = &mut self.operations[operation.index()];
        let number = *count;
        *count += 1;
        if let Some(found) = self
            .faults
            .iter()
            .position(|(kind, at, _)| *kind == operation && *at == number)
        {
            let (_, _, fault) = self.faults.swap_remove(found);
            self.faults_fired += 1;
            self.last_fault_at = Some(self.mutations);
            return Err(fault.error(operation));
        }
        Ok(())
    }

    /// Bytes held by the files that have names.
    fn used_bytes(&self) -> u64 {
        self.names
            .values()
            .map(|inode| self.inodes[inode].current.len() as u64)
            .sum()
    }

    /// Fails with ENOSPC if growing a file from `from` to `to` bytes would pass the capacity.
    fn check_capacity(&self, from: u64, to: u64) -> io::Result<()> {
        let Some(capacity) = self.capacity_bytes else {
            return Ok(());
        };
        if to > from && self.used_bytes() + (to - from) > capacity {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    fn inode(&mut self, inode: u64) -> &mut Inode {
        self.inodes
            .get_mut(&inode)
            .expect("open files keep their inode")
    }
}

impl SimStorage {
    /// An empty disk.
    pub fn new() -> SimStorage {
        SimStorage::default()
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        // A test that panicked while holding the lock has already failed; keep going so
        // its report is not buried under poison errors.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Lets `count` more mutating operations (writes, syncs, length changes, creates,
    /// renames, removes) succeed; from the next one on, the simulated process is dead and
    /// every mutation fails.
    pub fn fail_after_mutations(&self, count: u64) {
        let mut state = self.state();
        state.mutations_max = Some(state.mutations + count);
    }

    /// Mutating operations attempted so far (including failed ones).
    pub fn mutations(&self) -> u64 {
        self.state().mutations
    }

    /// Makes the operation of kind `operation` that comes `nth` from now (0 is the next
    /// one) fail with `fault`, once. Unlike `fail_after_mutations` the process lives on:
    /// the caller sees the error and may go on. A failed write leaves the first half of its
    /// bytes (a short write); a failed sync drops the unsynced writes from what can reach
    /// the disk (see the module comment); any other failed operation has no effect.
    pub fn fail_nth(&self, operation: Operation, nth: u64, fault: Fault) {
        let mut state = self.state();
        let at = state.operations[operation.index()] + nth;
        state.faults.push((operation, at, fault));
    }

    /// Operations of kind `operation` attempted so far (including failed ones).
    pub fn operations(&self, operation: Operation) -> u64 {
        self.state().operations[operation.index()]
    }

    /// How many injected failures have fired.
    pub fn faults_fired(&self) -> u64 {
        self.state().faults_fired
    }

    /// The count of `mutations` right after the last injected failure fired: equal to
    /// `mutations()` as long as nothing was attempted since (no sync was retried).
    pub fn last_fault_at(&self) -> Option<u64> {
        self.state().last_fault_at
    }

    /// Limits the bytes all files may hold together (`None`: unlimited). An operation that
    /// would grow past it fails with ENOSPC and has no effect, and `space` reports what is
    /// left, like a small disk.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.state().capacity_bytes = bytes;
    }

    /// Whether the simulated process has died (a mutation failed because of
    /// `fail_after_mutations`).
    pub fn is_dead(&self) -> bool {
        self.state().dead
    }

    /// Whether some process holds the directory's lock.
    pub fn is_locked(&self) -> bool {
        self.state().locked
    }

    /// The current contents of `name`, as the running process would read them.
    pub fn read_file(&self, name: &str) -> Option<Vec<u8>> {
        let state = self.state();
        let inode = state.names.get(name)?;
        Some(state.inodes[inode].current.clone())
    }

    /// Replaces the contents of an existing file, durably (to plant damage).
    pub fn write_file(&self, name: &str, bytes: &[u8]) {
        let mut state = self.state();
        let inode = *state
            .names
            .get(name)
            .expect("write_file needs an existing file");
        let file = state.inode(inode);
        file.current = bytes.to_vec();
        file.durable = bytes.to_vec();
        file.pending.clear();
    }

    /// Removes a file, durably (to plant damage).
    pub fn delete_file(&self, name: &str) {
        let mut state = self.state();
        state.names.remove(name);
        state.durable_names.remove(name);
    }

    /// The disk a restarted process finds after a crash of the given kind, with `seed`
    /// choosing what survives. The new storage is independent of this one, unlocked, and
    /// has no failure scheduled; it keeps the capacity (it is the same disk).
    pub fn crash(&self, mode: CrashMode, seed: u64) -> SimStorage {
        let state = self.state();
        let mut rng = SimRng::new(seed);
        let dir_ops_kept = match mode {
            CrashMode::ProcessCrash => state.dir_ops.len(),
            CrashMode::DropUnsynced => 0,
            CrashMode::TornPrefix | CrashMode::Reordered => {
                rng.below(state.dir_ops.len() as u64 + 1) as usize
            }
        };
        // A process crash keeps the directory as the kernel sees it, even entries whose
        // directory sync failed.
        let names = match mode {
            CrashMode::ProcessCrash => state.names.clone(),
            _ => {
                let mut names = state.durable_names.clone();
                for op in &state.dir_ops[..dir_ops_kept] {
                    op.apply(&mut names);
                }
                names
            }
        };
        let sector_bytes = [1u64, 16, 64, 512][rng.below(4) as usize];
        let mut inodes = HashMap::new();
        for inode in names.values() {
            let file = &state.inodes[inode];
            let content = match mode {
                CrashMode::ProcessCrash => file.current.clone(),
                CrashMode::DropUnsynced => file.durable.clone(),
                CrashMode::TornPrefix => torn_prefix(file, &mut rng),
                CrashMode::Reordered => reordered(file, sector_bytes, &mut rng),
            };
            inodes.insert(
                *inode,
                Inode {
                    current: content.clone(),
                    durable: content,
                    pending: Vec::new(),
                },
            );
        }
        SimStorage {
            state: Arc::new(Mutex::new(SimState {
                inodes,
                inode_next: state.inode_next,
                names: names.clone(),
                durable_names: names,
                capacity_bytes: state.capacity_bytes,
                ..SimState::default()
            })),
        }
    }
}

/// The durable content plus the pending operations up to a random one, of which a random
/// prefix (of a write) is kept.
fn torn_prefix(file: &Inode, rng: &mut SimRng) -> Vec<u8> {
    let mut content = file.durable.clone();
    let kept = rng.below(file.pending.len() as u64 + 1) as usize;
    for op in &file.pending[..kept] {
        apply_op(&mut content, op);
    }
    if let Some(op) = file.pending.get(kept) {
        match op {
            FileOp::Write { position, bytes } => {
                let length = rng.below(bytes.len() as u64 + 1) as usize;
                apply_write(&mut content, *position, &bytes[..length]);
            }
            FileOp::SetLen(_) => {
                if rng.coin() {
                    apply_op(&mut content, op);
                }
            }
        }
    }
    content
}

/// The durable content plus a random subset of the pending writes' sectors and of the
/// pending length changes; a write whose data is lost may still have extended the file.
fn reordered(file: &Inode, sector_bytes: u64, rng: &mut SimRng) -> Vec<u8> {
    let mut content = file.durable.clone();
    for op in &file.pending {
        match op {
            FileOp::Write { position, bytes } => {
                let end = position + bytes.len() as u64;
                if rng.coin() && (content.len() as u64) < end {
                    content.resize(end as usize, 0);
                }
                let mut start = *position;
                while start < end {
                    let sector_end = ((start / sector_bytes) + 1) * sector_bytes;
                    let piece_end = sector_end.min(end);
                    if rng.coin() {
                        let from = (start - position) as usize;
                        let to = (piece_end - position) as usize;
                        apply_write(&mut content, start, &bytes[from..to]);
                    }
                    start = piece_end;
                }
            }
            FileOp::SetLen(_) => {
                if rng.coin() {
                    apply_op(&mut content, op);
                }
            }
        }
    }
    content
}

/// An open file of a `SimStorage`.
#[derive(Debug)]
pub struct SimFile {
    state: Arc<Mutex<SimState>>,
    inode: u64,
    access: Access,
}

impl SimFile {
    fn state(&self) -> MutexGuard<'_, SimState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn writable(&self) -> io::Result<()> {
        match self.access {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "sim: file opened read-only",
            )),
        }
    }

    fn push(&self, op: FileOp) -> io::Result<()> {
        self.writable()?;
        let mut state = self.state();
        let operation = match op {
            FileOp::Write { .. } => Operation::Write,
            FileOp::SetLen(_) => Operation::Resize,
        };
        if let Err(error) = state.mutate(operation) {
            if let FileOp::Write { position, bytes } = &op {
                // A write that fails part-way leaves what it wrote (not after a crash,
                // which the dead process never observes).
                if !state.dead {
                    let half = FileOp::Write {
                        position: *position,
                        bytes: bytes[..bytes.len() / 2].to_vec(),
                    };
                    let file = state.inode(self.inode);
                    apply_op(&mut file.current, &half);
                    file.pending.push(half);
                }
            }
            return Err(error);
        }
        let length = state.inode(self.inode).current.len() as u64;
        let grown = match &op {
            FileOp::Write { position, bytes } => length.max(position + bytes.len() as u64),
            FileOp::SetLen(new_length) => *new_length,
        };
        state.check_capacity(length, grown)?;
        let file = state.inode(self.inode);
        apply_op(&mut file.current, &op);
        file.pending.push(op);
        Ok(())
    }

    /// Makes the pending operations durable. When the sync fails they are dropped instead
    /// (the kernel marked the pages clean), so no later sync brings them to the disk.
    fn sync(&self) -> io::Result<()> {
        let mut state = self.state();
        let synced = state.mutate(Operation::Sync);
        if state.dead {
            // What a crash keeps of the pending writes is `crash`'s to decide.
            return synced;
        }
        let file = state.inode(self.inode);
        let pending = std::mem::take(&mut file.pending);
        if synced.is_ok() {
            for op in &pending {
                apply_op(&mut file.durable, op);
            }
        }
        synced
    }
}

/// The held lock of a `SimStorage`; released on drop.
#[derive(Debug)]
pub struct SimLock {
    state: Arc<Mutex<SimState>>,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.locked = false;
    }
}

impl Storage for SimStorage {
    type File = SimFile;
    type Map = Vec<u8>;
    type Lock = SimLock;

    fn describe(&self, name: &str) -> String {
        format!("sim:{name}")
    }

    fn lock(&self, mode: LockMode) -> io::Result<Option<SimLock>> {
        loop {
            {
                let mut state = self.state();
                if !state.locked {
                    state.locked = true;
                    return Ok(Some(SimLock {
                        state: self.state.clone(),
                    }));
                }
                if mode == LockMode::Fail {
                    return Ok(None);
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.state().names.keys().cloned().collect())
    }

    fn create(&self, name: &str) -> io::Result<SimFile> {
        let mut state = self.state();
        if state.names.contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("sim: {name} exists"),
            ));
        }
        state.mutate(Operation::Create)?;
        let inode = state.inode_next;
        state.inode_next += 1;
        state.inodes.insert(inode, Inode::default());
        state.names.insert(name.to_owned(), inode);
        state.dir_ops.push(DirOp::Link {
            name: name.to_owned(),
            inode,
        });
        Ok(SimFile {
            state: self.state.clone(),
            inode,
            access: Access::ReadWrite,
        })
    }

    fn open(&self, name: &str, access: Access) -> io::Result<SimFile> {
        let state = self.state();
        let inode = *state.names.get(name).ok_or_else(|| not_found(name))?;
        Ok(SimFile {
            state: self.state.clone(),
            inode,
            access,
        })
    }

    fn map(&self, name: &str) -> io::Result<Vec<u8>> {
        self.read_file(name).ok_or_else(|| not_found(name))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut state = self.state();
        if !state.names.contains_key(from) {
            return Err(not_found(from));
        }
        state.mutate(Operation::Rename)?;
        let op = DirOp::Rename {
            from: from.to_owned(),
            to: to.to_owned(),
        };
        op.apply(&mut state.names);
        state.dir_ops.push(op);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut state = self.state();
        if !state.names.contains_key(name) {
            return Err(not_found(name));
        }
        state.mutate(Operation::Remove)?;
        let op = DirOp::Unlink {
            name: name.to_owned(),
        };
        op.apply(&mut state.names);
        state.dir_ops.push(op);
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut state = self.state();
        let synced = state.mutate(Operation::SyncDir);
        if state.dead {
            return synced;
        }
        // Like a file's sync: on failure the pending entries never become durable.
        let dir_ops = std::mem::take(&mut state.dir_ops);
        if synced.is_ok() {
            let mut durable_names = std::mem::take(&mut state.durable_names);
            for op in &dir_ops {
                op.apply(&mut durable_names);
            }
            state.durable_names = durable_names;
        }
        synced
    }

    fn space(&self) -> io::Result<Option<Space>> {
        let state = self.state();
        Ok(state.capacity_bytes.map(|capacity| Space {
            available_bytes: capacity.saturating_sub(state.used_bytes()),
            total_bytes: capacity,
        }))
    }
}

impl StorageFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        let mut state = self.state();
        Ok(state.inode(self.inode).current.len() as u64)
    }

    fn read_at(&self, buffer: &mut [u8], position: u64) -> io::Result<()> {
        let mut state = self.state();
        let content = &state.inode(self.inode).current;
        let start = position as usize;
        let end = start + buffer.len();
        if end > content.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "sim: read past the end",
            ));
        }
        buffer.copy_from_slice(&content[start..end]);
        Ok(())
    }

    fn write_at(&self, bytes: &[u8], position: u64) -> io::Result<()> {
        self.push(FileOp::Write {
            position,
            bytes: bytes.to_vec(),
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync()
    }

    fn set_len(&self, length: u64) -> io::Result<()> {
        self.push(FileOp::SetLen(length))
    }

    fn preallocate(&self, length: u64) -> io::Result<()> {
        let current = self.len()?;
        if current >= length {
            return Ok(());
        }
        self.push(FileOp::SetLen(length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes "durable" and syncs, then writes "pending" without a sync, crashes with
    /// `mode` and returns the file's surviving contents.
    fn check(mode: CrashMode, seed: u64) -> Vec<u8> {
        let storage = SimStorage::new();
        let file = storage.create("f").expect("create");
        storage.sync_dir().expect("sync dir");
        file.write_at(b"durable", 0).expect("write");
        file.sync_data().expect("sync");
        file.write_at(b"+pending", 7).expect("write");
        storage
            .crash(mode, seed)
            .read_file("f")
            .expect("file survives")
    }

    #[test]
    fn crash_keeps_exactly_what_the_mode_says() {
        assert_eq!(check(CrashMode::ProcessCrash, 1), b"durable+pending");
        assert_eq!(check(CrashMode::DropUnsynced, 1), b"durable");
        for seed in 0..200 {
            for mode in [CrashMode::TornPrefix, CrashMode::Reordered] {
                let content = check(mode, seed);
                assert!(
                    content.starts_with(b"durable"),
                    "{mode:?} seed {seed} lost synced bytes"
                );
                assert!(content.len() <= b"durable+pending".len());
                for (position, byte) in content.iter().enumerate().skip(7) {
                    assert!(
                        *byte == 0 || *byte == b"durable+pending"[position],
                        "{mode:?} invented a byte"
                    );
                }
            }
        }
    }

    #[test]
    fn unsynced_directory_entries_may_vanish() {
        let storage = SimStorage::new();
        storage.create("a").expect("create");
        assert!(storage
            .crash(CrashMode::DropUnsynced, 0)
            .read_file("a")
            .is_none());
        storage.sync_dir().expect("sync dir");
        storage.rename("a", "b").expect("rename");
        let after = storage.crash(CrashMode::DropUnsynced, 0);
        assert!(after.read_file("a").is_some() && after.read_file("b").is_none());
        let after = storage.crash(CrashMode::ProcessCrash, 0);
        assert!(after.read_file("a").is_none() && after.read_file("b").is_some());
    }

    #[test]
    fn process_dies_at_the_scheduled_mutation() {
        let storage = SimStorage::new();
        let file = storage.create("a").expect("create");
        storage.fail_after_mutations(2);
        file.write_at(b"1", 0).expect("first allowed");
        file.sync_data().expect("second allowed");
        assert!(file.write_at(b"2", 1).is_err());
        assert!(storage.is_dead());
        assert!(file.sync_data().is_err(), "a dead process stays dead");
        let mut buffer = [0u8; 1];
        file.read_at(&mut buffer, 0).expect("reads still work");
        assert_eq!(&buffer, b"1");
    }

    #[test]
    fn the_nth_operation_of_a_kind_fails_once_and_the_process_lives_on() {
        let storage = SimStorage::new();
        let file = storage.create("a").expect("create");
        storage.fail_nth(Operation::Write, 1, Fault::Enospc);
        file.write_at(b"12", 0)
            .expect("the 0th write from now succeeds");
        let error = file.write_at(b"3456", 2).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull, "{error}");
        assert!(crate::storage::is_no_space(&error));
        assert_eq!(
            storage.read_file("a").expect("file"),
            b"1234",
            "a failed write is short"
        );
        file.write_at(b"x", 4).expect("only one write fails");
        assert!(!storage.is_dead());
        assert_eq!(storage.faults_fired(), 1);
        assert_eq!(storage.operations(Operation::Write), 3);
        storage.fail_nth(Operation::Rename, 0, Fault::Eio);
        let error = storage.rename("a", "b").unwrap_err();
        assert_eq!(error.raw_os_error(), None, "wrapped with a message");
        assert!(error.to_string().contains("Input/output error"), "{error}");
        assert!(
            storage.read_file("a").is_some(),
            "a failed rename does nothing"
        );
    }

    #[test]
    fn a_failed_sync_loses_the_pending_writes_and_a_retry_does_not_bring_them_back() {
        let storage = SimStorage::new();
        let file = storage.create("f").expect("create");
        storage.sync_dir().expect("sync dir");
        file.write_at(b"durable", 0).expect("write");
        file.sync_data().expect("sync");
        file.write_at(b"+lost", 7).expect("write");
        storage.fail_nth(Operation::Sync, 0, Fault::Eio);
        assert!(file.sync_data().is_err());
        assert_eq!(
            storage.read_file("f").expect("file"),
            b"durable+lost",
            "the process still reads what it wrote"
        );
        file.sync_data().expect("the retried sync reports success");
        for mode in CrashMode::ALL {
            let content = storage.crash(mode, 3).read_file("f").expect("file");
            let expected: &[u8] = if mode == CrashMode::ProcessCrash {
                b"durable+lost"
            } else {
                b"durable"
            };
            assert_eq!(content, expected, "{mode:?}");
        }
    }

    #[test]
    fn a_failed_directory_sync_never_makes_its_entries_durable() {
        let storage = SimStorage::new();
        storage.create("a").expect("create");
        storage.fail_nth(Operation::SyncDir, 0, Fault::Eio);
        assert!(storage.sync_dir().is_err());
        storage.sync_dir().expect("a retry reports success");
        assert!(storage
            .crash(CrashMode::DropUnsynced, 0)
            .read_file("a")
            .is_none());
        assert!(storage
            .crash(CrashMode::ProcessCrash, 0)
            .read_file("a")
            .is_some());
    }

    #[test]
    fn a_small_disk_fills_up() {
        let storage = SimStorage::new();
        storage.set_capacity(Some(10));
        let file = storage.create("a").expect("create");
        file.write_at(b"123456", 0).expect("fits");
        let space = storage.space().expect("space").expect("known");
        assert_eq!(space.available_bytes, 4);
        assert_eq!(space.total_bytes, 10);
        let error = file.preallocate(11).unwrap_err();
        assert!(crate::storage::is_no_space(&error), "{error}");
        assert_eq!(file.len().expect("len"), 6, "nothing was allocated");
        file.preallocate(10).expect("fits exactly");
        assert!(file.write_at(b"x", 10).is_err());
        let crashed = storage.crash(CrashMode::ProcessCrash, 0);
        assert_eq!(
            crashed.space().expect("space").expect("same disk"),
            Space {
                available_bytes: 0,
                total_bytes: 10
            }
        );
    }

    #[test]
    fn lock_is_exclusive_until_dropped() {
        let storage = SimStorage::new();
        let held = storage.lock(LockMode::Fail).expect("lock").expect("free");
        assert!(storage.lock(LockMode::Fail).expect("lock").is_none());
        drop(held);
        assert!(storage.lock(LockMode::Fail).expect("lock").is_some());
    }

    #[test]
    fn rng_is_deterministic() {
        let mut first = SimRng::new(7);
        let mut second = SimRng::new(7);
        for _ in 0..100 {
            assert_eq!(first.next_u64(), second.next_u64());
        }
        assert!((0..1000).all(|_| first.between(3, 5) >= 3));
    }
}
