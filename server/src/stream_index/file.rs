//! The byte layout of one stream index file, and reading a stream's entries from it.
//!
//! A file covers a fixed range of durable seqs, `first..=last`, one entry per event (seqs
//! are gap-free, so every seq of the range is in exactly one key's entries). Its events
//! are grouped by key, the `(branch, stream)` they belong to; the keys are sorted by
//! `hash64(branch, stream)` and then by name, so a reader finds a key by binary search on a
//! fixed-width table, and then compares the name stored with it: a hash collision costs a
//! second comparison, never a wrong answer. Each key's seqs are in order.
//!
//! All integers are little-endian; nothing on disk is a `usize`.
//!
//! ```text
//! header (120 bytes)
//!   0  magic             8 bytes  "SWLSTIDX"
//!   8  format version    u32      1
//!  12  key count         u32      K
//!  16  first seq         u64
//!  24  last seq          u64      (entry count E = last - first + 1)
//!  32  names bytes       u32      N
//!  36  reserved          u32      0
//!  40  previous hash     32 bytes the hash chain at `first - 1` (the genesis hash for seq 1)
//!  72  last hash         32 bytes the hash chain at `last`
//! 104  reserved          u64      0
//! 112  body crc32        u32      CRC32 (crc32fast) of every byte after the header
//! 116  header crc32      u32      CRC32 of header bytes 0..116
//! keys (K × 32 bytes, sorted by hash, then branch, then stream)
//!   0  hash              u64      first 8 bytes of SHA-256(u32 branch length, branch, stream)
//!   8  name offset       u32      into the names
//!  12  branch bytes      u32
//!  16  stream bytes      u32
//!  20  first entry       u32      index of the key's first entry
//!  24  entry count       u32      the key's events in this range
//!  28  reserved          u32      0
//! names (N bytes): each key's branch then stream, UTF-8, in key order
//! entries (E × u32): seq - first, grouped by key in key order, ascending within a key
//! ```
//!
//! A file is written by [`encode`] and checked whole by [`IndexFile::load`] (both CRCs,
//! every size and offset, every entry exactly once) before it is used; reads after that
//! still check every offset they follow, so bytes changed on disk later come back as
//! `Corrupt`, never as a panic.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use swarmlog_projections::limits::ID_BYTES_MAX;

use super::{StreamIndexError, StreamMap};

/// First bytes of every stream index file.
pub(crate) const MAGIC: [u8; 8] = *b"SWLSTIDX";

/// Version of the layout this code writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Size of the header.
pub(crate) const HEADER_BYTES: usize = 120;

/// Size of one key record.
pub(crate) const KEY_BYTES: usize = 32;

/// Size of one entry.
pub(crate) const ENTRY_BYTES: usize = 4;

/// Keys between two fences kept in memory: a lookup reads one block of this many keys
/// (2 KiB) around the hash it looks for, and a file of K keys costs K / 64 × 8 bytes of
/// memory (16 bytes for 1,000 streams).
pub(crate) const FENCE_KEYS: usize = 64;

/// Suffix of an index file's name.
pub(crate) const SUFFIX: &str = ".idx";

/// Suffix of a file still being written; such files are removed at start-up.
pub(crate) const TEMPORARY_SUFFIX: &str = ".tmp";

/// Where the header's fields are.
mod at {
    pub const VERSION: usize = 8;
    pub const KEY_COUNT: usize = 12;
    pub const FIRST: usize = 16;
    pub const LAST: usize = 24;
    pub const NAMES_BYTES: usize = 32;
    pub const PREVIOUS_HASH: usize = 40;
    pub const LAST_HASH: usize = 72;
    pub const BODY_CRC: usize = 112;
    pub const HEADER_CRC: usize = 116;
}

const _: () = assert!(at::HEADER_CRC + 4 == HEADER_BYTES);
const _: () = assert!(KEY_BYTES == 8 + 6 * 4);

/// The file name of the index file whose range starts at `first`: zero-padded, so the
/// files sort in seq order.
pub(crate) fn file_name(first: u64) -> String {
    format!("{first:020}{SUFFIX}")
}

/// The first seq a file name stands for, if it is an index file's name.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The hash a key is sorted and looked up by. SHA-256 keeps it stable across builds and
/// platforms (it is on disk) and spreads names evenly, which keeps the fences useful; the
/// branch's length comes first so that no two `(branch, stream)` pairs hash the same bytes.
pub(crate) fn hash64(branch: &str, stream: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update((branch.len() as u32).to_le_bytes());
    hasher.update(branch.as_bytes());
    hasher.update(stream.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// The hash chain around a range: the hashes of the event before its first and of its
/// last. A file whose last hash is the log's at that seq was built from this very history
/// (SHA-256 chains every event before it), and then its previous hash is the log's too,
/// which is what the file before it must end with: so one read of the log checks them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chain {
    /// The hash of event `first - 1` (the genesis hash when `first` is 1).
    pub previous: [u8; 32],
    /// The hash of event `last`.
    pub last: [u8; 32],
}

/// The bytes of the index file for the events `first..=last` that `streams` holds (every
/// one of them), with the hashes around them.
///
/// # Panics
/// If `streams` does not hold exactly the seqs `first..=last`: the stream index hands over
/// a range only once it is full.
pub(crate) fn encode(first: u64, last: u64, chain: &Chain, streams: &StreamMap) -> Vec<u8> {
    assert!(first >= 1 && first <= last, "a range {first}..={last}");
    let entry_count = last - first + 1;
    assert_eq!(streams.events(), entry_count, "a full range is encoded");
    assert!(
        entry_count <= u64::from(u32::MAX),
        "entries fit a u32 offset"
    );
    let mut keys: Vec<(u64, &str, &str, &[u64])> = streams
        .iter()
        .map(|(branch, stream, seqs)| (hash64(branch, stream), branch, stream, seqs))
        .collect();
    keys.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    let names_bytes: usize = keys.iter().map(|key| key.1.len() + key.2.len()).sum();
    let body_bytes = keys.len() * KEY_BYTES + names_bytes + entry_count as usize * ENTRY_BYTES;
    let mut bytes = vec![0u8; HEADER_BYTES];
    bytes.reserve(body_bytes);
    let mut name_offset = 0usize;
    let mut entry_index = 0usize;
    for (hash, branch, stream, seqs) in &keys {
        bytes.extend_from_slice(&hash.to_le_bytes());
        for field in [
            name_offset,
            branch.len(),
            stream.len(),
            entry_index,
            seqs.len(),
            0,
        ] {
            bytes.extend_from_slice(&(field as u32).to_le_bytes());
        }
        name_offset += branch.len() + stream.len();
        entry_index += seqs.len();
    }
    for (_, branch, stream, _) in &keys {
        bytes.extend_from_slice(branch.as_bytes());
        bytes.extend_from_slice(stream.as_bytes());
    }
    for (_, _, _, seqs) in &keys {
        for seq in seqs.iter() {
            assert!(
                (first..=last).contains(seq),
                "seq {seq} in {first}..={last}"
            );
            bytes.extend_from_slice(&((seq - first) as u32).to_le_bytes());
        }
    }
    assert_eq!(bytes.len(), HEADER_BYTES + body_bytes);
    bytes[..8].copy_from_slice(&MAGIC);
    put_u32(&mut bytes, at::VERSION, FORMAT_VERSION);
    put_u32(&mut bytes, at::KEY_COUNT, keys.len() as u32);
    put_u64(&mut bytes, at::FIRST, first);
    put_u64(&mut bytes, at::LAST, last);
    put_u32(&mut bytes, at::NAMES_BYTES, names_bytes as u32);
    bytes[at::PREVIOUS_HASH..at::PREVIOUS_HASH + 32].copy_from_slice(&chain.previous);
    bytes[at::LAST_HASH..at::LAST_HASH + 32].copy_from_slice(&chain.last);
    let body_crc = crc32fast::hash(&bytes[HEADER_BYTES..]);
    put_u32(&mut bytes, at::BODY_CRC, body_crc);
    let header_crc = crc32fast::hash(&bytes[..at::HEADER_CRC]);
    put_u32(&mut bytes, at::HEADER_CRC, header_crc);
    bytes
}

/// One key record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    hash: u64,
    name_offset: u32,
    branch_bytes: u32,
    stream_bytes: u32,
    first_entry: u32,
    entry_count: u32,
}

impl Key {
    fn read(bytes: &[u8]) -> Key {
        Key {
            hash: read_u64(bytes, 0),
            name_offset: read_u32(bytes, 8),
            branch_bytes: read_u32(bytes, 12),
            stream_bytes: read_u32(bytes, 16),
            first_entry: read_u32(bytes, 20),
            entry_count: read_u32(bytes, 24),
        }
    }

    fn name_bytes(&self) -> u64 {
        u64::from(self.branch_bytes) + u64::from(self.stream_bytes)
    }
}

/// An index file that passed [`IndexFile::load`]: where it is, what it covers, and the
/// fences that find a key with one read.
#[derive(Debug)]
pub(crate) struct IndexFile {
    path: PathBuf,
    first: u64,
    last: u64,
    /// The hash of event `first - 1`, which the file before this one must end with.
    previous_hash: [u8; 32],
    /// The hash of event `last`.
    last_hash: [u8; 32],
    key_count: u32,
    names_bytes: u32,
    /// The hash of every [`FENCE_KEYS`]th key, from key 0.
    fences: Vec<u64>,
}

/// Which entries of a key a read wants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// The first seq wanted.
    pub from: u64,
    /// The last seq wanted.
    pub until: u64,
}

impl IndexFile {
    /// Checks the whole file at `path` (read into `buffer`): it must cover `first..=last`,
    /// end at an event whose hash is `last_hash`, and pass every check of
    /// [`IndexFile::check`]. The error is the reason it does not.
    pub fn load(
        path: &Path,
        first: u64,
        last: u64,
        last_hash: &[u8; 32],
        buffer: &mut Vec<u8>,
    ) -> Result<IndexFile, String> {
        let file = File::open(path).map_err(|error| format!("cannot open it: {error}"))?;
        let length = file
            .metadata()
            .map_err(|error| format!("cannot read its size: {error}"))?
            .len();
        let most = file_bytes_max(last.saturating_sub(first) + 1);
        if length > most {
            return Err(format!(
                "{length} bytes, more than the {most} a range of its size can take"
            ));
        }
        buffer.clear();
        buffer.resize(length as usize, 0);
        file.read_exact_at(buffer, 0)
            .map_err(|error| format!("cannot read it: {error}"))?;
        IndexFile::check(path, buffer, first, last, last_hash)
    }

    /// Checks the bytes of a whole file: magic, version, both CRCs, the range and last
    /// hash it claims, every size and offset, sorted keys, ascending entries, and every seq
    /// of the range in exactly one key. Builds the fences.
    pub fn check(
        path: &Path,
        bytes: &[u8],
        first: u64,
        last: u64,
        last_hash: &[u8; 32],
    ) -> Result<IndexFile, String> {
        if bytes.len() < HEADER_BYTES {
            return Err(format!(
                "{} bytes, shorter than the {HEADER_BYTES}-byte header",
                bytes.len()
            ));
        }
        if bytes[..8] != MAGIC {
            return Err("not a stream index file (bad magic)".into());
        }
        let header_crc = crc32fast::hash(&bytes[..at::HEADER_CRC]);
        let stored = read_u32(bytes, at::HEADER_CRC);
        if stored != header_crc {
            return Err(format!(
                "header checksum mismatch: stored {stored:#010x}, computed {header_crc:#010x}"
            ));
        }
        let version = read_u32(bytes, at::VERSION);
        if version != FORMAT_VERSION {
            return Err(format!(
                "format version {version}, this build reads {FORMAT_VERSION}"
            ));
        }
        let (file_first, file_last) = (read_u64(bytes, at::FIRST), read_u64(bytes, at::LAST));
        if (file_first, file_last) != (first, last) {
            return Err(format!(
                "covers seqs {file_first}..={file_last}, expected {first}..={last}"
            ));
        }
        if bytes[at::LAST_HASH..at::LAST_HASH + 32] != last_hash[..] {
            return Err(format!(
                "its last event's hash {} is not the log's {} at seq {last}",
                hex::encode(&bytes[at::LAST_HASH..at::LAST_HASH + 32]),
                hex::encode(last_hash)
            ));
        }
        let key_count = read_u32(bytes, at::KEY_COUNT);
        let names_bytes = read_u32(bytes, at::NAMES_BYTES);
        let entry_count = last - first + 1;
        let expected = HEADER_BYTES as u64
            + u64::from(key_count) * KEY_BYTES as u64
            + u64::from(names_bytes)
            + entry_count * ENTRY_BYTES as u64;
        if bytes.len() as u64 != expected {
            return Err(format!(
                "{} bytes, but its header describes {expected} ({key_count} keys, \
                 {names_bytes} bytes of names, {entry_count} entries)",
                bytes.len()
            ));
        }
        let body_crc = crc32fast::hash(&bytes[HEADER_BYTES..]);
        let stored = read_u32(bytes, at::BODY_CRC);
        if stored != body_crc {
            return Err(format!(
                "body checksum mismatch: stored {stored:#010x}, computed {body_crc:#010x}"
            ));
        }
        let fences = check_keys(bytes, key_count, names_bytes, entry_count)?;
        let mut previous_hash = [0u8; 32];
        previous_hash.copy_from_slice(&bytes[at::PREVIOUS_HASH..at::PREVIOUS_HASH + 32]);
        Ok(IndexFile {
            path: path.to_path_buf(),
            first,
            last,
            previous_hash,
            last_hash: *last_hash,
            key_count,
            names_bytes,
            fences,
        })
    }

    /// The first seq the file covers.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The last seq the file covers.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The hash of event `first - 1`.
    pub fn previous_hash(&self) -> &[u8; 32] {
        &self.previous_hash
    }

    /// The hash of event `last`.
    pub fn last_hash(&self) -> [u8; 32] {
        self.last_hash
    }

    /// The seqs of `(branch, stream)` in `window`, in order.
    pub fn seqs(
        &self,
        branch: &str,
        stream: &str,
        window: Window,
    ) -> Result<Vec<u64>, StreamIndexError> {
        let file = self.open()?;
        let Some(key) = self.find(&file, branch, stream)? else {
            return Ok(Vec::new());
        };
        let entry_end = u64::from(key.first_entry) + u64::from(key.entry_count);
        if entry_end > self.last - self.first + 1 {
            return Err(self.corrupt(
                0,
                format!(
                    "a key's entries end at {entry_end}, past the file's {}",
                    self.last - self.first + 1
                ),
            ));
        }
        let mut entries = vec![0u8; key.entry_count as usize * ENTRY_BYTES];
        let position = self.entries_start() + u64::from(key.first_entry) * ENTRY_BYTES as u64;
        self.read_at(&file, &mut entries, position)?;
        let mut seqs = Vec::with_capacity(key.entry_count as usize);
        for entry in entries.chunks_exact(ENTRY_BYTES) {
            let seq = self.first + u64::from(read_u32(entry, 0));
            if seq > self.last {
                return Err(self.corrupt(position, format!("entry for seq {seq}")));
            }
            if (window.from..=window.until).contains(&seq) {
                seqs.push(seq);
            }
        }
        Ok(seqs)
    }

    /// How many events of `(branch, stream)` in the file are at or before `until`.
    pub fn count_until(
        &self,
        branch: &str,
        stream: &str,
        until: u64,
    ) -> Result<u64, StreamIndexError> {
        if until >= self.last {
            let file = self.open()?;
            return Ok(self
                .find(&file, branch, stream)?
                .map_or(0, |key| u64::from(key.entry_count)));
        }
        let window = Window {
            from: self.first,
            until,
        };
        Ok(self.seqs(branch, stream, window)?.len() as u64)
    }

    fn open(&self) -> Result<File, StreamIndexError> {
        File::open(&self.path).map_err(|source| StreamIndexError::Io {
            path: self.path.display().to_string(),
            context: "cannot open it",
            source,
        })
    }

    fn entries_start(&self) -> u64 {
        HEADER_BYTES as u64
            + u64::from(self.key_count) * KEY_BYTES as u64
            + u64::from(self.names_bytes)
    }

    /// The key record of `(branch, stream)`, if the file has one: from the fence before
    /// its hash, read the keys block by block while their hash is not past it, and compare
    /// the names of those with its hash.
    fn find(
        &self,
        file: &File,
        branch: &str,
        stream: &str,
    ) -> Result<Option<Key>, StreamIndexError> {
        let hash = hash64(branch, stream);
        let fence = self.fences.partition_point(|fence| *fence < hash);
        let mut index = fence.saturating_sub(1) * FENCE_KEYS;
        let mut block = vec![0u8; FENCE_KEYS * KEY_BYTES];
        let key_count = self.key_count as usize;
        while index < key_count {
            let keys = (key_count - index).min(FENCE_KEYS);
            let bytes = &mut block[..keys * KEY_BYTES];
            let position = HEADER_BYTES as u64 + (index * KEY_BYTES) as u64;
            self.read_at(file, bytes, position)?;
            for record in bytes.chunks_exact(KEY_BYTES) {
                let key = Key::read(record);
                if key.hash > hash {
                    return Ok(None);
                }
                if key.hash == hash && self.name_is(file, &key, branch, stream)? {
                    return Ok(Some(key));
                }
            }
            index += keys;
        }
        Ok(None)
    }

    /// Whether `key` names `(branch, stream)`.
    fn name_is(
        &self,
        file: &File,
        key: &Key,
        branch: &str,
        stream: &str,
    ) -> Result<bool, StreamIndexError> {
        if key.branch_bytes as usize != branch.len() || key.stream_bytes as usize != stream.len() {
            return Ok(false);
        }
        let end = u64::from(key.name_offset) + key.name_bytes();
        if end > u64::from(self.names_bytes) {
            return Err(self.corrupt(
                0,
                format!(
                    "a key's name ends at {end}, past the {} bytes of names",
                    self.names_bytes
                ),
            ));
        }
        let mut name = vec![0u8; key.name_bytes() as usize];
        let position = HEADER_BYTES as u64
            + u64::from(self.key_count) * KEY_BYTES as u64
            + u64::from(key.name_offset);
        self.read_at(file, &mut name, position)?;
        let (stored_branch, stored_stream) = name.split_at(branch.len());
        Ok(stored_branch == branch.as_bytes() && stored_stream == stream.as_bytes())
    }

    fn read_at(
        &self,
        file: &File,
        bytes: &mut [u8],
        position: u64,
    ) -> Result<(), StreamIndexError> {
        file.read_exact_at(bytes, position)
            .map_err(|source| StreamIndexError::Io {
                path: self.path.display().to_string(),
                context: "cannot read it",
                source,
            })
    }

    fn corrupt(&self, position: u64, reason: String) -> StreamIndexError {
        StreamIndexError::Corrupt {
            path: self.path.display().to_string(),
            position,
            reason,
        }
    }
}

/// More bytes than any file of a range of `entries` events takes: a key per event, with a
/// branch and a stream of up to [`ID_BYTES_MAX`] bytes each plus a prefix (`task/`,
/// `lock/`, ...), well within four times that. A larger file is refused before it is read
/// into memory.
fn file_bytes_max(entries: u64) -> u64 {
    HEADER_BYTES as u64 + entries * (KEY_BYTES + ENTRY_BYTES + 4 * ID_BYTES_MAX) as u64
}

/// Checks the key table, the names' offsets and the entries of a whole file; returns the
/// fences.
fn check_keys(
    bytes: &[u8],
    key_count: u32,
    names_bytes: u32,
    entry_count: u64,
) -> Result<Vec<u64>, String> {
    let keys_start = HEADER_BYTES;
    let entries_start = keys_start + key_count as usize * KEY_BYTES + names_bytes as usize;
    let mut seen = vec![false; entry_count as usize];
    let mut fences = Vec::with_capacity((key_count as usize).div_ceil(FENCE_KEYS));
    let mut previous_hash = 0u64;
    let mut next_entry = 0u64;
    let mut next_name = 0u64;
    for index in 0..key_count as usize {
        let key = Key::read(&bytes[keys_start + index * KEY_BYTES..]);
        if key.hash < previous_hash {
            return Err(format!("key {index} is out of hash order"));
        }
        previous_hash = key.hash;
        if index % FENCE_KEYS == 0 {
            fences.push(key.hash);
        }
        if u64::from(key.name_offset) != next_name {
            return Err(format!(
                "key {index}'s name starts at {}, expected {next_name}",
                key.name_offset
            ));
        }
        next_name += key.name_bytes();
        if u64::from(key.first_entry) != next_entry || key.entry_count == 0 {
            return Err(format!(
                "key {index} has entries {}+{}, expected a run from {next_entry}",
                key.first_entry, key.entry_count
            ));
        }
        let mut previous_offset = None;
        for entry in next_entry..next_entry + u64::from(key.entry_count) {
            if entry >= entry_count {
                return Err(format!("key {index}'s entries run past the {entry_count}"));
            }
            let offset = read_u32(bytes, entries_start + entry as usize * ENTRY_BYTES);
            if u64::from(offset) >= entry_count || previous_offset.is_some_and(|p| p >= offset) {
                return Err(format!(
                    "key {index}'s entry {entry} is offset {offset}, out of order or range"
                ));
            }
            if std::mem::replace(&mut seen[offset as usize], true) {
                return Err(format!("offset {offset} is listed twice"));
            }
            previous_offset = Some(offset);
        }
        next_entry += u64::from(key.entry_count);
    }
    if next_name != u64::from(names_bytes) || next_entry != entry_count {
        return Err(format!(
            "the keys name {next_name} of {names_bytes} name bytes and {next_entry} of \
             {entry_count} entries"
        ));
    }
    Ok(fences)
}

fn put_u32(bytes: &mut [u8], position: usize, value: u32) {
    bytes[position..position + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(bytes: &mut [u8], position: usize, value: u64) {
    bytes[position..position + 8].copy_from_slice(&value.to_le_bytes());
}

/// Reads a little-endian u32 at `position`; the caller has checked the length.
fn read_u32(bytes: &[u8], position: usize) -> u32 {
    let mut field = [0u8; 4];
    field.copy_from_slice(&bytes[position..position + 4]);
    u32::from_le_bytes(field)
}

/// Reads a little-endian u64 at `position`; the caller has checked the length.
fn read_u64(bytes: &[u8], position: usize) -> u64 {
    let mut field = [0u8; 8];
    field.copy_from_slice(&bytes[position..position + 8]);
    u64::from_le_bytes(field)
}
