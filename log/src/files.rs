//! The log directory's files: listing them, and creating segments and index files so that
//! a crash at any point leaves either the old state or the new one.
//!
//! A new file is written under a temporary name, synced, and only then renamed into place,
//! so a file with a final name is always complete; leftovers of an interrupted creation keep
//! their `.tmp` suffix and are removed by the next open. Recovery and `verify` share the
//! listing and its structural checks, so they agree on what a valid directory is.
//!
//! Creating a file can meet a full disk. Up to the rename nothing a reader or recovery
//! relies on has changed, so such a failure is `Error::NoSpace` (the temporary file is
//! removed and the log goes on); a failed sync is always `Error::Io`, which poisons.
//! `allocate` extends a file in steps that shrink near the end of the disk.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use crate::error::Error;
use crate::format::{
    classify, decode_segment_header, encode_segment_header, index_name, segment_name,
    temporary_name, FileKind, SEGMENT_HEADER_BYTES,
};
use crate::index::IndexFile;
use crate::limits::ALLOCATE_STEP_BYTES_MIN;
use crate::storage::{is_no_space, Access, Storage, StorageFile};

/// The log's files in a directory, by kind.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Segment names by first seq.
    pub segments: BTreeMap<u64, String>,
    /// First seqs of the segments that have an index file.
    pub index_files: BTreeSet<u64>,
    /// Leftovers of interrupted file creations.
    pub temporaries: Vec<String>,
}

impl Listing {
    /// Lists and classifies the directory.
    pub fn read<S: Storage>(storage: &S) -> Result<Listing, Error> {
        let names = storage.list().map_err(|source| {
            Error::io(
                format!("cannot list the log directory {}", storage.describe("")),
                source,
            )
        })?;
        let mut listing = Listing::default();
        for name in names {
            match classify(&name) {
                FileKind::Segment(first_seq) => {
                    listing.segments.insert(first_seq, name);
                }
                FileKind::Index(first_seq) => {
                    listing.index_files.insert(first_seq);
                }
                FileKind::Temporary => listing.temporaries.push(name),
                FileKind::Lock | FileKind::Other => {}
            }
        }
        listing.temporaries.sort();
        Ok(listing)
    }

    /// Checks what the names alone can tell: the log starts at seq 1 (nothing is ever
    /// deleted), and every index file belongs to a segment. An index without its segment
    /// means a segment went missing, and starting a fresh log over it would silently
    /// reuse its seqs.
    pub fn check(&self) -> Result<(), Error> {
        if let Some(orphan) = self
            .index_files
            .iter()
            .find(|first_seq| !self.segments.contains_key(first_seq))
        {
            return Err(Error::corrupt(
                &index_name(*orphan),
                0,
                format!("index file without its segment {}", segment_name(*orphan)),
            ));
        }
        if let Some((first_seq, name)) = self.segments.iter().next() {
            if *first_seq != 1 {
                return Err(Error::corrupt(
                    name,
                    0,
                    format!("the oldest segment starts at seq {first_seq}, so seqs 1..{first_seq} are missing"),
                ));
            }
        }
        Ok(())
    }
}

/// Opens a segment read-only and maps it, after checking it is at least a header long
/// (mapping an empty file is not portable) and that its header is valid and matches the
/// first seq in its name.
pub(crate) fn map_segment<S: Storage>(
    storage: &S,
    name: &str,
    first_seq: u64,
) -> Result<S::Map, Error> {
    let location = storage.describe(name);
    let length = storage
        .open(name, Access::ReadOnly)
        .and_then(|file| file.len())
        .map_err(|source| Error::io(format!("cannot open segment {location}"), source))?;
    if length < SEGMENT_HEADER_BYTES {
        return Err(Error::corrupt(
            name,
            0,
            format!("the file has {length} bytes, fewer than the {SEGMENT_HEADER_BYTES}-byte segment header"),
        ));
    }
    let map = storage
        .map(name)
        .map_err(|source| Error::io(format!("cannot map segment {location}"), source))?;
    check_header(&map, name, first_seq)?;
    Ok(map)
}

/// Checks a segment's header against the first seq its name promises.
pub(crate) fn check_header(bytes: &[u8], name: &str, first_seq: u64) -> Result<(), Error> {
    let header_first_seq =
        decode_segment_header(bytes).map_err(|reason| Error::corrupt(name, 0, reason))?;
    if header_first_seq != first_seq {
        return Err(Error::corrupt(
            name,
            16,
            format!("the header says the first seq is {header_first_seq}, the file name says {first_seq}"),
        ));
    }
    Ok(())
}

/// How far to extend a file: to at least `needed` bytes (what must be written next) and,
/// room permitting, to `wanted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Allocation {
    /// The length the next write needs.
    pub needed: u64,
    /// The length to preallocate to when there is room (at least `needed`).
    pub wanted: u64,
    /// Preallocation beyond `needed` never takes the file system's free space below this.
    pub free_bytes_min: u64,
}

/// Extends `file`, allocated to `allocated` bytes, as `allocation` asks; returns the new
/// allocated length.
///
/// Near the end of the disk the step shrinks: first to what the file system has free
/// above `free_bytes_min`, then, on each `ENOSPC`, to half the extension, down to
/// `ALLOCATE_STEP_BYTES_MIN` and then to exactly `needed`. Only when even that fails is the
/// error returned (`is_no_space` tells a full disk). When `needed` is already allocated,
/// a full disk is no error: the file simply keeps its length.
pub(crate) fn allocate<S: Storage>(
    storage: &S,
    file: &S::File,
    allocated: u64,
    allocation: Allocation,
) -> io::Result<u64> {
    let Allocation {
        needed,
        wanted,
        free_bytes_min,
    } = allocation;
    debug_assert!(needed <= wanted, "wanted {wanted} < needed {needed}");
    let floor = needed.max(allocated);
    let mut target = wanted.max(floor);
    // Without a reading (statvfs failed, or the storage does not know) the step is
    // simply tried; ENOSPC still shrinks it.
    if let Ok(Some(space)) = storage.space() {
        let spare = space.available_bytes.saturating_sub(free_bytes_min);
        target = target.min(allocated.saturating_add(spare)).max(floor);
    }
    loop {
        if target <= allocated {
            return Ok(allocated);
        }
        match file.preallocate(target) {
            Ok(()) => return Ok(target),
            Err(error) if is_no_space(&error) && target > floor => {
                let half = (target - allocated) / 2;
                target = if half < ALLOCATE_STEP_BYTES_MIN {
                    floor
                } else {
                    (allocated + half).max(floor)
                };
            }
            Err(error) => return Err(error),
        }
    }
}

/// Removes what an earlier, failed creation of `temporary` left in this process (recovery
/// removes what a crash left), so that `create` finds the name free.
fn remove_stale<S: Storage>(storage: &S, temporary: &str, bytes_needed: u64) -> Result<(), Error> {
    match storage.remove(temporary) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::io_or_no_space(
            format!("cannot remove the leftover {}", storage.describe(temporary)),
            source,
            bytes_needed,
        )),
    }
}

/// Creates the segment starting at `first_seq`: header written, space allocated (when
/// `allocation` is given; `needed` counts the header), synced, renamed into place, and the
/// directory synced. Returns the open file and its allocated length.
///
/// A full disk before the rename is `Error::NoSpace`, with the temporary file removed;
/// the directory is then as it was.
pub(crate) fn create_segment<S: Storage>(
    storage: &S,
    first_seq: u64,
    allocation: Option<Allocation>,
) -> Result<(S::File, u64), Error> {
    let name = segment_name(first_seq);
    let temporary = temporary_name(&name);
    let location = storage.describe(&temporary);
    let bytes_needed = allocation.map_or(SEGMENT_HEADER_BYTES, |allocation| allocation.needed);
    remove_stale(storage, &temporary, bytes_needed)?;
    let file = storage.create(&temporary).map_err(|source| {
        Error::io_or_no_space(
            format!("cannot create segment {location}"),
            source,
            bytes_needed,
        )
    })?;
    let prepared =
        file.write_at(&encode_segment_header(first_seq), 0)
            .map_err(|source| {
                Error::io_or_no_space(
                    format!("cannot write the header of segment {location}"),
                    source,
                    bytes_needed,
                )
            })
            .and_then(|()| match allocation {
                Some(allocation) => allocate(storage, &file, SEGMENT_HEADER_BYTES, allocation)
                    .map_err(|source| {
                        Error::io_or_no_space(
                            format!(
                                "cannot allocate {} bytes for segment {location}",
                                allocation.needed
                            ),
                            source,
                            bytes_needed,
                        )
                    }),
                None => Ok(SEGMENT_HEADER_BYTES),
            });
    let allocated_bytes = match prepared {
        Ok(allocated_bytes) => allocated_bytes,
        Err(error) => {
            // Best effort: a leftover is removed by the next attempt or the next open.
            let _ = storage.remove(&temporary);
            return Err(error);
        }
    };
    file.sync_all()
        .map_err(|source| Error::io(format!("cannot sync new segment {location}"), source))?;
    if let Err(source) = storage.rename(&temporary, &name) {
        let _ = storage.remove(&temporary);
        return Err(Error::io_or_no_space(
            format!("cannot rename {location} into place"),
            source,
            bytes_needed,
        ));
    }
    storage.sync_dir().map_err(|source| {
        Error::io(
            format!("cannot sync the log directory after creating {name}"),
            source,
        )
    })?;
    Ok((file, allocated_bytes))
}

/// Writes the index file of a sealed segment under a temporary name, syncs it and renames
/// it into place. The caller syncs the directory (an index that vanishes in a crash is
/// simply rebuilt). A full disk before the rename is `Error::NoSpace`, with the temporary
/// file removed.
pub(crate) fn write_index<S: Storage>(
    storage: &S,
    index_file: &IndexFile,
    first_seq: u64,
) -> Result<(), Error> {
    let name = index_name(first_seq);
    let temporary = temporary_name(&name);
    let location = storage.describe(&temporary);
    let bytes = index_file.encode();
    let bytes_needed = bytes.len() as u64;
    remove_stale(storage, &temporary, bytes_needed)?;
    let file = storage.create(&temporary).map_err(|source| {
        Error::io_or_no_space(
            format!("cannot create index file {location}"),
            source,
            bytes_needed,
        )
    })?;
    if let Err(source) = file.write_at(&bytes, 0) {
        let _ = storage.remove(&temporary);
        return Err(Error::io_or_no_space(
            format!("cannot write index file {location}"),
            source,
            bytes_needed,
        ));
    }
    file.sync_all()
        .map_err(|source| Error::io(format!("cannot sync index file {location}"), source))?;
    if let Err(source) = storage.rename(&temporary, &name) {
        let _ = storage.remove(&temporary);
        return Err(Error::io_or_no_space(
            format!("cannot rename {location} into place"),
            source,
            bytes_needed,
        ));
    }
    Ok(())
}

/// Reads a whole file into memory with positional reads (for files another process might
/// still be writing, where a map would not be safe).
pub(crate) fn read_whole<S: Storage>(storage: &S, name: &str) -> Result<Vec<u8>, Error> {
    let location = storage.describe(name);
    let file = storage
        .open(name, Access::ReadOnly)
        .map_err(|source| Error::io(format!("cannot open {location}"), source))?;
    let length = file
        .len()
        .map_err(|source| Error::io(format!("cannot read the length of {location}"), source))?;
    let length = usize::try_from(length).expect("a segment fits in memory on a 64-bit host");
    let mut bytes = vec![0u8; length];
    file.read_at(&mut bytes, 0)
        .map_err(|source| Error::io(format!("cannot read {location}"), source))?;
    Ok(bytes)
}
