//! The log directory's files: listing them, and creating segments and index files so that
//! a crash at any point leaves either the old state or the new one.
//!
//! A new file is written under a temporary name, synced, and only then renamed into place,
//! so a file with a final name is always complete; leftovers of an interrupted creation keep
//! their `.tmp` suffix and are removed by the next open. Recovery and `verify` share the
//! listing and its structural checks, so they agree on what a valid directory is.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Error;
use crate::format::{
    classify, decode_segment_header, encode_segment_header, index_name, segment_name,
    temporary_name, FileKind, SEGMENT_HEADER_BYTES,
};
use crate::index::IndexFile;
use crate::storage::{Access, Storage, StorageFile};

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

/// Creates the segment starting at `first_seq`: header written, space preallocated (when
/// `preallocate_bytes` is given), synced, renamed into place, and the directory synced.
/// Returns the open file.
pub(crate) fn create_segment<S: Storage>(
    storage: &S,
    first_seq: u64,
    preallocate_bytes: Option<u64>,
) -> Result<S::File, Error> {
    let name = segment_name(first_seq);
    let temporary = temporary_name(&name);
    let location = storage.describe(&temporary);
    let file = storage
        .create(&temporary)
        .map_err(|source| Error::io(format!("cannot create segment {location}"), source))?;
    file.write_at(&encode_segment_header(first_seq), 0)
        .map_err(|source| {
            Error::io(
                format!("cannot write the header of segment {location}"),
                source,
            )
        })?;
    if let Some(length) = preallocate_bytes {
        file.preallocate(length).map_err(|source| {
            Error::io(
                format!("cannot preallocate {length} bytes for segment {location}"),
                source,
            )
        })?;
    }
    file.sync_all()
        .map_err(|source| Error::io(format!("cannot sync new segment {location}"), source))?;
    storage
        .rename(&temporary, &name)
        .map_err(|source| Error::io(format!("cannot rename {location} into place"), source))?;
    storage.sync_dir().map_err(|source| {
        Error::io(
            format!("cannot sync the log directory after creating {name}"),
            source,
        )
    })?;
    Ok(file)
}

/// Writes the index file of a sealed segment under a temporary name, syncs it and renames
/// it into place. The caller syncs the directory (an index that vanishes in a crash is
/// simply rebuilt).
pub(crate) fn write_index<S: Storage>(
    storage: &S,
    index_file: &IndexFile,
    first_seq: u64,
) -> Result<(), Error> {
    let name = index_name(first_seq);
    let temporary = temporary_name(&name);
    let location = storage.describe(&temporary);
    let bytes = index_file.encode();
    let file = storage
        .create(&temporary)
        .map_err(|source| Error::io(format!("cannot create index file {location}"), source))?;
    file.write_at(&bytes, 0)
        .map_err(|source| Error::io(format!("cannot write index file {location}"), source))?;
    file.sync_all()
        .map_err(|source| Error::io(format!("cannot sync index file {location}"), source))?;
    storage
        .rename(&temporary, &name)
        .map_err(|source| Error::io(format!("cannot rename {location} into place"), source))
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
