//! The sparse index of one segment, in memory and as a persisted `.idx` file.
//!
//! Every `INDEX_INTERVAL_BYTES` the index remembers which seq starts at which byte
//! position, so a read by seq jumps close to its record and scans the rest. The index is
//! derived data: it is built while scanning a segment, extended on every append, written
//! beside a segment when the segment is sealed, and rebuilt from the segment whenever the
//! file is missing or fails its checks. Entries are two `u32`s relative to the segment
//! (limits.rs checks at compile time that they fit), which halves the memory of a large log.

use crate::format::{read_u32, read_u64, FORMAT_VERSION, SEGMENT_HEADER_BYTES};
use crate::limits::{INDEX_ENTRIES_MAX, INDEX_INTERVAL_BYTES, SEGMENT_BYTES_MAX};

/// First bytes of every index file.
const INDEX_MAGIC: [u8; 8] = *b"SWLOGIDX";

/// Size of the index file header; entries follow it, then a 4-byte checksum.
pub(crate) const INDEX_HEADER_BYTES: usize = 48;

/// Size of one encoded entry.
pub(crate) const INDEX_ENTRY_BYTES: usize = 8;

/// One index entry: the record `first_seq + seq_offset` starts at `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// Seq relative to the segment's first seq.
    pub seq_offset: u32,
    /// Byte position in the segment file.
    pub position: u32,
}

/// The sparse index of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    first_seq: u64,
    entries: Vec<IndexEntry>,
}

impl Index {
    /// An empty index for the segment starting at `first_seq`.
    pub fn new(first_seq: u64) -> Index {
        Index {
            first_seq,
            entries: Vec::new(),
        }
    }

    /// The position from which the next record gets an entry. The first record always does.
    pub fn next_entry_position(&self) -> u64 {
        match self.entries.last() {
            None => SEGMENT_HEADER_BYTES,
            Some(last) => u64::from(last.position) + INDEX_INTERVAL_BYTES,
        }
    }

    /// Adds an entry for the record `seq` at `position`.
    pub fn push(&mut self, seq: u64, position: u64) {
        assert!(seq >= self.first_seq, "seq {seq} belongs to this segment");
        assert!(
            position >= SEGMENT_HEADER_BYTES,
            "records follow the header"
        );
        let seq_offset =
            u32::try_from(seq - self.first_seq).expect("seq offset fits u32 (limits.rs)");
        let position = u32::try_from(position).expect("position fits u32 (limits.rs)");
        if let Some(last) = self.entries.last() {
            assert!(seq_offset > last.seq_offset, "index seqs increase");
            assert!(position > last.position, "index positions increase");
        }
        self.entries.push(IndexEntry {
            seq_offset,
            position,
        });
    }

    /// Adds an entry for the record `seq` at `position` if the interval says so.
    pub fn observe(&mut self, seq: u64, position: u64) {
        if position >= self.next_entry_position() {
            self.push(seq, position);
        }
    }

    /// The indexed record closest before (or at) `seq`: where a scan for `seq` starts.
    pub fn lookup(&self, seq: u64) -> (u64, u64) {
        assert!(seq >= self.first_seq, "seq {seq} belongs to this segment");
        let offset = seq - self.first_seq;
        let after = self
            .entries
            .partition_point(|entry| u64::from(entry.seq_offset) <= offset);
        match after.checked_sub(1) {
            None => (self.first_seq, SEGMENT_HEADER_BYTES),
            Some(found) => {
                let entry = self.entries[found];
                (
                    self.first_seq + u64::from(entry.seq_offset),
                    u64::from(entry.position),
                )
            }
        }
    }

    /// Drops the entries of records at or after `position` (recovery cut a torn tail there).
    pub fn truncate(&mut self, position: u64) {
        let keep = self
            .entries
            .partition_point(|entry| u64::from(entry.position) < position);
        self.entries.truncate(keep);
    }

    /// The entries, in seq order.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }
}

/// A persisted index, decoded and checked against itself (not yet against its segment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexFile {
    /// The sparse entries.
    pub index: Index,
    /// The last seq in the segment.
    pub last_seq: u64,
    /// Where the last record starts, so opening can check it without a scan.
    pub last_record_position: u64,
    /// The sealed segment's length.
    pub segment_bytes: u64,
}

impl IndexFile {
    /// Encodes the index file of a sealed segment.
    ///
    /// ```text
    /// 0       8           12            16          24         32                   40              48
    /// | magic | version u32 | entry_count | first_seq | last_seq | last_record_position | segment_bytes |
    /// | entries: (seq_offset u32, position u32) x entry_count | crc32 of everything before |
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let bytes = self.encode_bytes();
        debug_assert_eq!(
            IndexFile::decode(&bytes, self.index.first_seq).as_ref(),
            Ok(self)
        );
        bytes
    }

    /// The encoding, without the paired check that it decodes back.
    fn encode_bytes(&self) -> Vec<u8> {
        let entries = self.index.entries();
        let mut bytes =
            Vec::with_capacity(INDEX_HEADER_BYTES + entries.len() * INDEX_ENTRY_BYTES + 4);
        bytes.extend_from_slice(&INDEX_MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let entry_count = u32::try_from(entries.len()).expect("entry count fits u32 (limits.rs)");
        bytes.extend_from_slice(&entry_count.to_le_bytes());
        bytes.extend_from_slice(&self.index.first_seq.to_le_bytes());
        bytes.extend_from_slice(&self.last_seq.to_le_bytes());
        bytes.extend_from_slice(&self.last_record_position.to_le_bytes());
        bytes.extend_from_slice(&self.segment_bytes.to_le_bytes());
        for entry in entries {
            bytes.extend_from_slice(&entry.seq_offset.to_le_bytes());
            bytes.extend_from_slice(&entry.position.to_le_bytes());
        }
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Decodes an index file and checks everything that does not need the segment:
    /// checksum, version, the segment it claims to index, and that entries increase and
    /// stay inside the segment. Returns why it is unusable otherwise.
    pub fn decode(bytes: &[u8], first_seq: u64) -> Result<IndexFile, String> {
        if bytes.len() < INDEX_HEADER_BYTES + 4 {
            return Err(format!(
                "index file of {} bytes is shorter than its header",
                bytes.len()
            ));
        }
        if bytes[0..8] != INDEX_MAGIC {
            return Err("bad index magic".to_owned());
        }
        let body = &bytes[..bytes.len() - 4];
        let stored = read_u32(bytes, bytes.len() - 4);
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(format!(
                "index crc mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ));
        }
        let version = read_u32(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(format!(
                "index format version {version} is not {FORMAT_VERSION}"
            ));
        }
        let entry_count = u64::from(read_u32(bytes, 12));
        if entry_count > INDEX_ENTRIES_MAX {
            return Err(format!(
                "{entry_count} index entries exceed the limit of {INDEX_ENTRIES_MAX}"
            ));
        }
        let expected_bytes = INDEX_HEADER_BYTES as u64 + entry_count * INDEX_ENTRY_BYTES as u64 + 4;
        if bytes.len() as u64 != expected_bytes {
            return Err(format!(
                "index file has {} bytes, {entry_count} entries need {expected_bytes}",
                bytes.len()
            ));
        }
        let stored_first_seq = read_u64(bytes, 16);
        if stored_first_seq != first_seq {
            return Err(format!(
                "index is for the segment at seq {stored_first_seq}, not {first_seq}"
            ));
        }
        let last_seq = read_u64(bytes, 24);
        let last_record_position = read_u64(bytes, 32);
        let segment_bytes = read_u64(bytes, 40);
        if last_seq < first_seq
            || segment_bytes > SEGMENT_BYTES_MAX
            || last_record_position < SEGMENT_HEADER_BYTES
            || last_record_position >= segment_bytes
        {
            return Err(format!(
                "impossible index fields: last seq {last_seq}, last record at {last_record_position}, \
                 segment of {segment_bytes} bytes"
            ));
        }
        let mut index = Index::new(first_seq);
        for number in 0..entry_count as usize {
            let at = INDEX_HEADER_BYTES + number * INDEX_ENTRY_BYTES;
            let entry = IndexEntry {
                seq_offset: read_u32(bytes, at),
                position: read_u32(bytes, at + 4),
            };
            let well_placed = match index.entries.last() {
                None => entry.seq_offset == 0 && u64::from(entry.position) == SEGMENT_HEADER_BYTES,
                Some(previous) => {
                    entry.seq_offset > previous.seq_offset && entry.position > previous.position
                }
            };
            if !well_placed
                || first_seq + u64::from(entry.seq_offset) > last_seq
                || u64::from(entry.position) > last_record_position
            {
                return Err(format!(
                    "index entry {number} (seq offset {}, position {}) is out of order or outside the segment",
                    entry.seq_offset, entry.position
                ));
            }
            index.entries.push(entry);
        }
        Ok(IndexFile {
            index,
            last_seq,
            last_record_position,
            segment_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index for a segment starting at seq 100 whose records are `sizes` bytes long,
    /// built the way a scan builds it.
    fn build(sizes: &[u64]) -> (Index, Vec<u64>) {
        let mut index = Index::new(100);
        let mut positions = Vec::new();
        let mut position = SEGMENT_HEADER_BYTES;
        for (number, size) in sizes.iter().enumerate() {
            index.observe(100 + number as u64, position);
            positions.push(position);
            position += size;
        }
        (index, positions)
    }

    /// Every lookup lands on an indexed record at or before the target, at most one
    /// interval (plus one record) of bytes before it.
    fn check(sizes: &[u64]) {
        let (index, positions) = build(sizes);
        for (number, position) in positions.iter().enumerate() {
            let seq = 100 + number as u64;
            let (found_seq, found_position) = index.lookup(seq);
            assert!(found_seq <= seq);
            assert_eq!(positions[(found_seq - 100) as usize], found_position);
            let record_bytes_max = sizes.iter().copied().max().unwrap_or(0);
            assert!(position - found_position < INDEX_INTERVAL_BYTES + record_bytes_max);
        }
    }

    #[test]
    fn lookups_land_on_or_before_the_record() {
        check(&[]);
        check(&[40]);
        check(&vec![100; 500]);
        check(&[5000; 20]);
        check(&(0..300).map(|n| 32 + (n * 37) % 900).collect::<Vec<_>>());
    }

    #[test]
    fn first_record_is_always_indexed_and_entries_are_sparse() {
        let (index, _) = build(&vec![100; 1000]);
        assert_eq!(
            index.entries()[0],
            IndexEntry {
                seq_offset: 0,
                position: SEGMENT_HEADER_BYTES as u32
            }
        );
        let expected_entries = (1000 * 100) / INDEX_INTERVAL_BYTES as usize;
        assert!(index.entries().len() <= expected_entries + 1);
        assert!(index.entries().len() >= expected_entries - 1);
    }

    #[test]
    fn truncate_drops_entries_at_and_after_the_cut() {
        let (mut index, positions) = build(&vec![1000; 40]);
        let cut = positions[20];
        index.truncate(cut);
        assert!(index
            .entries()
            .iter()
            .all(|entry| u64::from(entry.position) < cut));
        let (seq, _) = index.lookup(139);
        assert!(seq < 120);
    }

    fn sealed(sizes: &[u64]) -> IndexFile {
        let (index, positions) = build(sizes);
        let last_record_position = *positions.last().expect("at least one record");
        IndexFile {
            index,
            last_seq: 100 + sizes.len() as u64 - 1,
            last_record_position,
            segment_bytes: last_record_position + sizes.last().expect("at least one record"),
        }
    }

    #[test]
    fn index_file_round_trips() {
        for sizes in [vec![40], vec![100; 500], vec![5000; 7]] {
            let file = sealed(&sizes);
            assert_eq!(IndexFile::decode(&file.encode(), 100), Ok(file));
        }
    }

    #[test]
    fn every_single_bit_flip_in_an_index_file_is_detected() {
        let bytes = sealed(&vec![700; 30]).encode();
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                IndexFile::decode(&damaged, 100).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn index_file_of_another_segment_or_truncated_is_rejected() {
        let bytes = sealed(&[40, 40]).encode();
        assert!(IndexFile::decode(&bytes, 101)
            .unwrap_err()
            .contains("not 101"));
        for length in 0..bytes.len() {
            assert!(
                IndexFile::decode(&bytes[..length], 100).is_err(),
                "length {length}"
            );
        }
    }

    #[test]
    fn index_file_with_misplaced_entries_is_rejected_despite_a_valid_checksum() {
        let mut file = sealed(&[1000; 20]);
        file.index.entries.swap(1, 2);
        // `encode` would trip its own debug check on the misplaced entries.
        let bytes = file.encode_bytes();
        assert!(IndexFile::decode(&bytes, 100)
            .unwrap_err()
            .contains("out of order"));
    }
}
