//! The stream index against a real log on a temporary directory: the file format (round
//! trip, every check), and start-up (damaged, truncated, foreign, missing and surplus
//! files), each compared with what the log itself says. Most tests go through `Fixture`
//! and `check`.

use std::path::PathBuf;
use std::sync::Arc;

use swarmlog_log::{Log, LogOptions, RecordInput, SyncPolicy};
use swarmlog_projections::{Envelope, GENESIS_HASH};
use tempfile::TempDir;

use super::file::{self, Chain, IndexFile, Window};
use super::{StreamIndex, StreamMap, StreamSeqs};
use crate::hub::Committed;

/// A data directory with a log of events whose `(branch, stream)` the test chooses.
struct Fixture {
    dir: TempDir,
    log: Log,
    /// `(branch, stream)` of seq `index + 1`.
    events: Vec<(String, String)>,
    previous: [u8; 32],
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = Fixture::open_log(&dir);
        Fixture {
            dir,
            log,
            events: Vec::new(),
            previous: GENESIS_HASH,
        }
    }

    fn open_log(dir: &TempDir) -> Log {
        let options = LogOptions {
            sync: SyncPolicy::Never,
            preallocate: false,
            ..LogOptions::default()
        };
        Log::open(&dir.path().join("log"), options).expect("the log opens")
    }

    /// Appends events as one batch; returns them as the commit thread publishes them.
    fn append(&mut self, events: &[(&str, &str)]) -> Vec<Arc<Committed>> {
        let mut committed = Vec::new();
        for (branch, stream) in events {
            let mut envelope = Envelope {
                seq: self.events.len() as u64 + 1,
                ts_ms: 1_000,
                branch: (*branch).into(),
                event_type: "note.added".into(),
                stream: (*stream).into(),
                actor: "tester".into(),
                session: None,
                correlation: None,
                meta: None,
                data: "{}".into(),
                hash: GENESIS_HASH,
                idempotency: None,
            };
            self.previous = envelope.seal(&self.previous);
            self.events.push(((*branch).into(), (*stream).into()));
            committed.push(Arc::new(Committed::new(envelope)));
        }
        let payloads: Vec<Vec<u8>> = committed
            .iter()
            .map(|event| event.envelope.encode())
            .collect();
        let inputs: Vec<RecordInput<'_>> = payloads
            .iter()
            .map(|payload| RecordInput {
                timestamp_ms: 1_000,
                payload,
            })
            .collect();
        self.log.append_batch(&inputs).expect("append");
        committed
    }

    /// `count` events spread over three streams on `main` and one on `side`.
    fn append_mixed(&mut self, count: usize) -> Vec<Arc<Committed>> {
        let keys = [
            ("main", "a"),
            ("main", "b"),
            ("main", "a"),
            ("side", "a"),
            ("main", "c/1"),
        ];
        let start = self.events.len();
        let events: Vec<(&str, &str)> = (start..start + count)
            .map(|index| keys[index % keys.len()])
            .collect();
        self.append(&events)
    }

    /// The index of this data directory with ranges of `range` events, opened.
    fn open(&self, range: u32) -> StreamIndex {
        let index = StreamIndex::new(self.dir.path(), range).expect("the writer starts");
        index.open(&self.log.reader()).expect("the index opens");
        index
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("streams"))
            .expect("the index directory exists")
            .map(|entry| entry.expect("entry").path())
            .collect();
        files.sort();
        files
    }

    /// The names of the index files, in order.
    fn file_names(&self) -> Vec<PathBuf> {
        self.files()
            .iter()
            .map(|path| PathBuf::from(path.file_name().expect("a file name")))
            .collect()
    }

    /// What the log says: the seqs of `(branch, stream)` from `from` to `until`.
    fn expected(&self, branch: &str, stream: &str, from: u64, until: u64) -> Vec<u64> {
        self.events
            .iter()
            .zip(1u64..)
            .filter(|((b, s), seq)| b == branch && s == stream && (from..=until).contains(seq))
            .map(|(_, seq)| seq)
            .collect()
    }
}

/// Every read and count of the index equals the log's answer: each stream (and some that
/// do not exist), over windows that start and end inside, on and across range boundaries,
/// whole and in pages.
fn check(fixture: &Fixture, index: &StreamIndex) {
    let head = fixture.events.len() as u64;
    assert_eq!(index.head(), head);
    let keys = [
        ("main", "a"),
        ("main", "b"),
        ("side", "a"),
        ("main", "c/1"),
        ("main", "z"),
        ("main", "missing"),
        ("other", "a"),
    ];
    for (branch, stream) in keys {
        for until in [0, 1, head / 2, head.saturating_sub(1), head, head + 10] {
            let expected = fixture.expected(branch, stream, 0, until);
            let what = format!("({branch}, {stream}) until {until}");
            assert_eq!(
                index.count(branch, stream, until).expect("count"),
                expected.len() as u64,
                "{what}"
            );
            for from in [0, 2, head / 3, head] {
                let expected = fixture.expected(branch, stream, from, until);
                let whole = index.read(branch, stream, from, until, None).expect("read");
                assert_eq!(
                    whole,
                    StreamSeqs {
                        seqs: expected.clone(),
                        next: None
                    },
                    "{what} from {from}"
                );
                for limit in [1, 2, 7] {
                    let mut paged = Vec::new();
                    let mut next = Some(from);
                    while let Some(start) = next {
                        let page = index
                            .read(branch, stream, start, until, Some(limit))
                            .expect("read a page");
                        assert!(page.seqs.len() <= limit, "{what}: {page:?}");
                        paged.extend(page.seqs);
                        next = page.next;
                    }
                    assert_eq!(paged, expected, "{what} from {from} in pages of {limit}");
                }
            }
        }
    }
}

#[test]
fn a_file_round_trips_and_finds_every_key() {
    let mut streams = StreamMap::default();
    // More keys than one fence block, one with many events, on two branches.
    let first = 101u64;
    let mut seq = first;
    for round in 0..3 {
        for key in 0..300 {
            if round > 0 && key % 3 != 0 {
                continue;
            }
            streams.push(
                if key % 2 == 0 { "main" } else { "b" },
                &format!("s/{key}"),
                seq,
            );
            seq += 1;
        }
    }
    for _ in 0..500 {
        streams.push("main", "hot", seq);
        seq += 1;
    }
    let last = seq - 1;
    let hash = [7u8; 32];
    let chain = Chain {
        previous: [6u8; 32],
        last: hash,
    };
    let bytes = file::encode(first, last, &chain, &streams);
    let directory = tempfile::tempdir().expect("dir");
    let path = directory.path().join(file::file_name(first));
    std::fs::write(&path, &bytes).expect("write");
    let loaded = IndexFile::load(&path, first, last, &hash, &mut Vec::new()).expect("loads");
    assert_eq!(
        (*loaded.previous_hash(), loaded.last_hash()),
        (chain.previous, chain.last)
    );
    let all = Window {
        from: first,
        until: last,
    };
    for (branch, stream, seqs) in streams.iter() {
        assert_eq!(
            loaded.seqs(branch, stream, all).expect("seqs"),
            seqs,
            "{branch} {stream}"
        );
        assert_eq!(
            loaded.count_until(branch, stream, last).expect("count"),
            seqs.len() as u64
        );
        let middle = seqs[seqs.len() / 2];
        let window = Window {
            from: middle,
            until: middle,
        };
        assert_eq!(loaded.seqs(branch, stream, window).expect("seqs"), [middle]);
        let before: Vec<u64> = seqs.iter().copied().filter(|seq| *seq <= middle).collect();
        assert_eq!(
            loaded.count_until(branch, stream, middle).expect("count"),
            before.len() as u64
        );
    }
    for (branch, stream) in [
        ("main", "s/1"),
        ("b", "s/0"),
        ("c", "hot"),
        ("main", "hot2"),
    ] {
        assert!(
            loaded.seqs(branch, stream, all).expect("seqs").is_empty(),
            "{branch} {stream}"
        );
    }
    assert_eq!(file::parse_name(&file::file_name(first)), Some(first));
    assert_eq!(file::parse_name("101.idx"), None);
}

/// Each check a file must pass at start-up refuses what it should, with a reason naming
/// the values.
#[test]
fn a_damaged_truncated_or_foreign_file_is_refused() {
    let mut streams = StreamMap::default();
    for seq in 1..=64 {
        streams.push("main", &format!("s/{}", seq % 5), seq);
    }
    let hash = [3u8; 32];
    let chain = Chain {
        previous: GENESIS_HASH,
        last: hash,
    };
    let bytes = file::encode(1, 64, &chain, &streams);
    let path = PathBuf::from("streams/00000000000000000001.idx");
    let check = |bytes: &[u8], first: u64, last: u64, hash: &[u8; 32]| {
        IndexFile::check(&path, bytes, first, last, hash).map(|_| ())
    };
    assert_eq!(check(&bytes, 1, 64, &hash), Ok(()));
    // Every single flipped bit is caught, in the header and in the body.
    for position in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[position] ^= 0x10;
        assert!(check(&damaged, 1, 64, &hash).is_err(), "byte {position}");
    }
    let mut damaged = bytes.clone();
    let last_byte = damaged.len() - 1;
    damaged[last_byte] ^= 1;
    let reason = check(&damaged, 1, 64, &hash).expect_err("damaged");
    assert!(reason.contains("body checksum mismatch"), "{reason}");
    for length in [0, 10, file::HEADER_BYTES, bytes.len() - 1] {
        assert!(
            check(&bytes[..length], 1, 64, &hash).is_err(),
            "{length} bytes"
        );
    }
    let reason = check(&bytes, 1, 65, &hash).expect_err("another range");
    assert!(
        reason.contains("covers seqs 1..=64, expected 1..=65"),
        "{reason}"
    );
    let reason = check(&bytes, 1, 64, &[4u8; 32]).expect_err("another history");
    assert!(reason.contains("is not the log's"), "{reason}");
}

#[test]
fn reads_cross_ranges_in_memory_and_on_disk_and_survive_a_reopen() {
    let mut fixture = Fixture::new();
    let index = fixture.open(4);
    check(&fixture, &index);
    // Batches that end inside, on and past range boundaries.
    for count in [3, 1, 6, 4, 9] {
        let events = fixture.append_mixed(count);
        index.push(events.iter());
        check(&fixture, &index);
    }
    index.flush();
    assert_eq!(index.ranges(), (5, 0), "every full range is on disk");
    check(&fixture, &index);
    assert_eq!(fixture.files().len(), 5);
    drop(index);
    let reopened = fixture.open(4);
    assert_eq!(reopened.ranges(), (5, 0));
    check(&fixture, &reopened);
}

#[test]
fn damaged_truncated_and_missing_files_are_rebuilt_from_the_log() {
    let mut fixture = Fixture::new();
    let index = fixture.open(8);
    let events = fixture.append_mixed(45);
    index.push(events.iter());
    index.flush();
    drop(index);
    let files = fixture.files();
    assert_eq!(files.len(), 5);
    let originals: Vec<Vec<u8>> = files
        .iter()
        .map(|path| std::fs::read(path).expect("read"))
        .collect();
    let mut damaged = originals[1].clone();
    damaged[file::HEADER_BYTES + 3] ^= 0x40;
    std::fs::write(&files[1], damaged).expect("damage");
    std::fs::write(&files[2], &originals[2][..originals[2].len() / 2]).expect("truncate");
    std::fs::remove_file(&files[3]).expect("remove");
    std::fs::write(files[0].with_extension("idx.tmp"), b"half").expect("leftover");

    let index = fixture.open(8);
    assert_eq!(index.ranges(), (5, 0));
    check(&fixture, &index);
    assert_eq!(
        fixture.files(),
        files,
        "rebuilt in place; the leftover is gone"
    );
    for (path, original) in files.iter().zip(&originals) {
        assert_eq!(
            &std::fs::read(path).expect("read"),
            original,
            "{}",
            path.display()
        );
    }
}

/// Files of another history or range size, or beyond the log's head (the log was cut
/// shorter, or the index directory came from elsewhere), are never trusted.
#[test]
fn files_beyond_the_head_or_from_another_log_are_removed_or_rebuilt() {
    let mut longer = Fixture::new();
    let index = longer.open(8);
    index.push(longer.append_mixed(40).iter());
    index.flush();
    drop(index);

    // The same first 12 events, then 9 others: file 1 fits, file 2 is another history's,
    // files 3 to 5 are beyond the head (21).
    let mut shorter = Fixture::new();
    shorter.append_mixed(12);
    shorter.append(&[("main", "z"); 9]);
    let source = longer.dir.path().join("streams");
    let target = shorter.dir.path().join("streams");
    std::fs::create_dir_all(&target).expect("mkdir");
    for path in longer.files() {
        let name = path.file_name().expect("a name");
        std::fs::copy(&path, target.join(name)).expect("copy");
    }
    let index = shorter.open(8);
    check(&shorter, &index);
    let names = shorter.file_names();
    assert_eq!(
        names,
        [file::file_name(1), file::file_name(9)].map(PathBuf::from)
    );
    assert_eq!(
        std::fs::read(target.join(file::file_name(1))).expect("read"),
        std::fs::read(source.join(file::file_name(1))).expect("read"),
        "the file that fits is kept as it was"
    );
    drop(index);

    // Another range size: every file is rebuilt or removed.
    let index = shorter.open(5);
    check(&shorter, &index);
    let names = shorter.file_names();
    let expected: Vec<PathBuf> = [1, 6, 11, 16]
        .map(|first| PathBuf::from(file::file_name(first)))
        .to_vec();
    assert_eq!(names, expected);
}

/// An older file of another history is caught without reading the log for it: its last
/// hash is not the previous hash of the newer file, which the log vouches for.
#[test]
fn an_older_file_of_another_history_breaks_the_chain_and_is_rebuilt() {
    let mut fixture = Fixture::new();
    let index = fixture.open(8);
    index.push(fixture.append_mixed(20).iter());
    index.flush();
    drop(index);
    let mut other = Fixture::new();
    let index = other.open(8);
    index.push(other.append(&[("main", "q"); 8]).iter());
    index.flush();
    drop(index);
    let ours = fixture.dir.path().join("streams").join(file::file_name(1));
    let original = std::fs::read(&ours).expect("read");
    let theirs = other.dir.path().join("streams").join(file::file_name(1));
    std::fs::copy(&theirs, &ours).expect("swap in another history's file");

    let index = fixture.open(8);
    check(&fixture, &index);
    assert_eq!(std::fs::read(&ours).expect("read"), original, "rebuilt");
}

/// When the index's files cannot be written (here the directory's name is taken by a
/// file; a full disk does the same), start-up keeps the ranges in memory and reads stay
/// right; the writer writes them once it can.
#[test]
fn ranges_stay_in_memory_while_their_files_cannot_be_written() {
    let mut fixture = Fixture::new();
    fixture.append_mixed(20);
    let blocker = fixture.dir.path().join("streams");
    std::fs::write(&blocker, b"not a directory").expect("block the directory");
    let index = fixture.open(8);
    assert_eq!(index.ranges(), (0, 2));
    check(&fixture, &index);

    std::fs::remove_file(&blocker).expect("unblock");
    index.push(fixture.append_mixed(4).iter());
    index.flush();
    assert_eq!(index.ranges(), (3, 0), "written with the next full range");
    check(&fixture, &index);
}
