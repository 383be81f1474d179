//! Projection snapshots: the state (with the idempotency window) written atomically next
//! to the log, so that start-up loads the newest valid snapshot and replays only the tail.
//! The stream index is not in them: it lives in its own files (`stream_index`).
//!
//! # Files
//!
//! A snapshot file is one header line, `swarmlog-snapshot <format> <sha256 of the body>\n`
//! (the format in decimal, the SHA-256 in lowercase hex), followed by the body:
//! - Format 3, written by this version as `snapshot-<head>.snap`: the [`Snapshot`] in
//!   postcard. The state's JSON values travel inside it as their JSON text, since postcard
//!   is not self-describing (see the projections crate's `binary_serde`).
//! - Format 2, `snapshot-<head>.json`: the same [`Snapshot`] in JSON. It still loads.
//! - Format 1, `snapshot-<head>.json`: format 2 plus the stream index (every seq of every
//!   stream). It still loads, its `stream_index` field skipped unread, since format 2 only
//!   dropped that field.
//!
//! `<head>` is the state's head seq, 20 digits. Every format has the same header, so the
//! reader tells them apart by it (the extension only lists the files), and `head -1` shows
//! what a file is. The header keeps SHA-256 rather than a binary header with a CRC-32:
//! the log's hash chain already uses it, so it adds no dependency, it covers everything
//! after the header line (a truncated or extended file fails it, so no length field is
//! needed), and with the CPU's SHA extensions it hashes about 1.6 GB/s, 5 % of loading a
//! snapshot (`benches/README.md`, "Snapshots in postcard"); a CRC-32 would save little.
//!
//! A file is written to a temporary name, fsynced, renamed, and the directory fsynced, so
//! a crash leaves either the old set of snapshots or the new one. The newest
//! [`SNAPSHOTS_KEPT_MAX`] heads are kept, whatever their format; where two files have the
//! same head (a JSON one left by an earlier version and a postcard one), the postcard one
//! is loaded first and the other removed at the next write. A snapshot whose checksum
//! fails, that does not decode, or whose head does not match the log (another log, or a
//! log cut shorter) is skipped, never trusted.
//!
//! The snapshot directory is written through the log's `Storage` trait, like the log
//! itself, so the same simulated disk (`SimStorage`) can crash it or fail any of its
//! operations with EIO or ENOSPC in tests. A failure is returned (the engine logs it and
//! replays more at the next start); a failed sync is never retried, and a temporary file
//! left by a failure is removed so that a full disk gets its space back.

use std::cmp::Reverse;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use swarmlog_log::{Access, FsStorage, Storage, StorageFile};
use swarmlog_projections::State;

/// The snapshot format written by this version: postcard.
pub const SNAPSHOT_FORMAT: u32 = 3;

/// The snapshot formats this version loads: 1 and 2 are JSON (1 is 2 plus the stream
/// index, which is ignored), 3 is postcard.
pub const SNAPSHOT_FORMATS_READ: [u32; 3] = [1, 2, SNAPSHOT_FORMAT];

/// How many snapshots are kept; older ones are removed after a new one is durable.
pub const SNAPSHOTS_KEPT_MAX: usize = 2;

const HEADER_PREFIX: &str = "swarmlog-snapshot";

/// The extension of the files this version writes (format 3).
const EXTENSION: &str = "snap";

/// The extension of the JSON files earlier versions wrote (formats 1 and 2).
const JSON_EXTENSION: &str = "json";

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The format version.
    pub format: u32,
    /// The projected state (its `head` and `head_hash` say where it stands).
    pub state: State,
    /// Idempotency keys inside their window: `(key, request sha256 hex, seq, ts_ms)`.
    pub idempotency: Vec<(String, String, u64, i64)>,
    /// The newest event timestamp seen, so timestamps never go backwards.
    pub last_ts_ms: i64,
}

/// Why a snapshot could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write snapshot {path}: {context}: {source}")]
pub struct SnapshotError {
    path: String,
    context: &'static str,
    source: io::Error,
}

/// Why a snapshot file cannot be loaded (it is then skipped).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
    /// The file is larger than this machine can address.
    #[error("too large to read: {0} bytes")]
    TooLarge(u64),
    /// There is no newline, so no header.
    #[error("no header line")]
    NoHeader,
    /// The first line does not start with `swarmlog-snapshot`.
    #[error("not a swarmlog snapshot")]
    NotASnapshot,
    /// The header names no format, or one this version does not read.
    #[error("an unknown snapshot format {0:?}")]
    UnknownFormat(String),
    /// The header has no checksum.
    #[error("no checksum in the header")]
    NoChecksum,
    /// The body's SHA-256 is not the header's.
    #[error("checksum mismatch: stored {stored}, computed {computed}")]
    ChecksumMismatch {
        /// The header's.
        stored: String,
        /// The body's.
        computed: String,
    },
    /// A format 1 or 2 body that is not the JSON of a [`Snapshot`].
    #[error("the JSON body does not parse: {0}")]
    Json(#[from] serde_json::Error),
    /// A format 3 body that is not the postcard of a [`Snapshot`].
    #[error("the postcard body does not decode: {0}")]
    Postcard(#[from] postcard::Error),
    /// A format 3 body with bytes after the [`Snapshot`].
    #[error("{0} bytes after the postcard body")]
    TrailingBytes(usize),
}

/// The snapshot directory of a data directory.
pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

fn file_name(head: u64) -> String {
    format!("snapshot-{head:020}.{EXTENSION}")
}

/// The header line of a snapshot file, newline included.
fn header(format: u32, body: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(body));
    format!("{HEADER_PREFIX} {format} {digest}\n")
}

/// The bytes of a snapshot file in the current format: the header, then the postcard body.
pub fn encode(snapshot: &Snapshot) -> Result<Vec<u8>, postcard::Error> {
    let body = postcard::to_allocvec(snapshot)?;
    let mut bytes = header(SNAPSHOT_FORMAT, &body).into_bytes();
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// Checks and decodes the bytes of a snapshot file of any format this version reads.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, LoadError> {
    let newline = bytes
        .iter()
        .position(|byte| *byte == b'\n')
        .ok_or(LoadError::NoHeader)?;
    let line = std::str::from_utf8(&bytes[..newline]).map_err(|_| LoadError::NotASnapshot)?;
    let mut parts = line.split(' ');
    if parts.next() != Some(HEADER_PREFIX) {
        return Err(LoadError::NotASnapshot);
    }
    let format_text = parts.next().unwrap_or_default();
    let format = format_text
        .parse::<u32>()
        .ok()
        .filter(|format| SNAPSHOT_FORMATS_READ.contains(format))
        .ok_or_else(|| LoadError::UnknownFormat(format_text.to_owned()))?;
    let stored = parts.next().ok_or(LoadError::NoChecksum)?;
    let body = &bytes[newline + 1..];
    let computed = hex::encode(Sha256::digest(body));
    if stored != computed {
        return Err(LoadError::ChecksumMismatch {
            stored: stored.to_owned(),
            computed,
        });
    }
    if format != SNAPSHOT_FORMAT {
        // Formats 1 and 2.
        return Ok(serde_json::from_slice(body)?);
    }
    match postcard::take_from_bytes(body)? {
        (snapshot, []) => Ok(snapshot),
        (_, rest) => Err(LoadError::TrailingBytes(rest.len())),
    }
}

/// Writes `snapshot` atomically into the data directory's snapshot directory and removes
/// all but the newest [`SNAPSHOTS_KEPT_MAX`]. Returns the path and size written.
pub fn write(data_dir: &Path, snapshot: &Snapshot) -> Result<(PathBuf, u64), SnapshotError> {
    let dir = snapshot_dir(data_dir);
    let storage = FsStorage::create(&dir).map_err(|source| SnapshotError {
        path: dir.display().to_string(),
        context: "cannot open the snapshot directory",
        source,
    })?;
    let (name, size) = write_to(&storage, snapshot)?;
    Ok((dir.join(name), size))
}

/// Writes `snapshot` into `storage` (a snapshot directory): to a temporary name, synced,
/// renamed, the directory synced; then removes the snapshots beyond the newest
/// [`SNAPSHOTS_KEPT_MAX`] heads, and any other file of the head just written. Returns the
/// file name and size written.
pub fn write_to<S: Storage>(
    storage: &S,
    snapshot: &Snapshot,
) -> Result<(String, u64), SnapshotError> {
    let name = file_name(snapshot.state.head);
    let temporary = format!("{name}.tmp");
    let fail = |context: &'static str| {
        let path = storage.describe(&name);
        move |source| SnapshotError {
            path,
            context,
            source,
        }
    };
    let bytes =
        encode(snapshot).map_err(|error| fail("cannot encode it")(io::Error::other(error)))?;
    match storage.remove(&temporary) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            return Err(fail("cannot remove a leftover temporary file")(error))
        }
        _ => {}
    }
    let file = storage
        .create(&temporary)
        .map_err(fail("cannot create the temporary file"))?;
    let written = file
        .write_at(&bytes, 0)
        .map_err(fail("cannot write it"))
        .and_then(|()| file.sync_all().map_err(fail("cannot sync it")))
        .and_then(|()| {
            storage
                .rename(&temporary, &name)
                .map_err(fail("cannot rename it into place"))
        });
    if let Err(error) = written {
        // Gives a full disk its space back; never a second sync.
        let _ = storage.remove(&temporary);
        return Err(error);
    }
    storage
        .sync_dir()
        .map_err(fail("cannot sync the snapshot directory"))?;
    for old in superseded(list(storage)) {
        if let Err(error) = storage.remove(&old) {
            tracing::warn!(%error, snapshot = %storage.describe(&old), "cannot remove an old snapshot");
        }
    }
    Ok((name, bytes.len() as u64))
}

/// Snapshot files of both kinds, newest head first, and at the same head the current
/// format first, as `(head, name)`.
fn list<S: Storage>(storage: &S) -> Vec<(u64, String)> {
    let Ok(names) = storage.list() else {
        return Vec::new();
    };
    let mut found: Vec<(u64, bool, String)> = names
        .into_iter()
        .filter_map(|name| {
            let (head, extension) = name.strip_prefix("snapshot-")?.split_once('.')?;
            let json = match extension {
                EXTENSION => false,
                JSON_EXTENSION => true,
                _ => return None,
            };
            Some((head.parse().ok()?, json, name))
        })
        .collect();
    found.sort_by_key(|(head, json, _)| (Reverse(*head), *json));
    found
        .into_iter()
        .map(|(head, _, name)| (head, name))
        .collect()
}

/// The files of [`list`] that are not kept: all but the first file of each of the newest
/// [`SNAPSHOTS_KEPT_MAX`] heads.
fn superseded(listed: Vec<(u64, String)>) -> Vec<String> {
    let mut heads_kept: Vec<u64> = Vec::with_capacity(SNAPSHOTS_KEPT_MAX);
    let mut old = Vec::new();
    for (head, name) in listed {
        if heads_kept.len() < SNAPSHOTS_KEPT_MAX && heads_kept.last() != Some(&head) {
            heads_kept.push(head);
        } else {
            old.push(name);
        }
    }
    old
}

/// Reads and checks one snapshot file.
fn read<S: Storage>(storage: &S, name: &str) -> Result<Snapshot, LoadError> {
    let file = storage.open(name, Access::ReadOnly)?;
    let length = file.len()?;
    let length = usize::try_from(length).map_err(|_| LoadError::TooLarge(length))?;
    let mut bytes = vec![0u8; length];
    file.read_at(&mut bytes, 0)?;
    decode(&bytes)
}

/// The newest snapshot of the data directory that passes its checks and that
/// `matches_log(head, head_hash)` confirms (the log has that event with that hash);
/// damaged ones are logged and skipped.
pub fn load_newest(
    data_dir: &Path,
    matches_log: &mut dyn FnMut(u64, &[u8; 32]) -> bool,
) -> Option<Snapshot> {
    let storage = FsStorage::open(&snapshot_dir(data_dir)).ok()?;
    load_newest_from(&storage, matches_log)
}

/// The newest snapshot of the data directory at or before `at` that passes its checks
/// and that `matches_log` confirms, for a time-travel read that need not replay from seq 1.
pub fn load_newest_at_most(
    data_dir: &Path,
    at: u64,
    matches_log: &mut dyn FnMut(u64, &[u8; 32]) -> bool,
) -> Option<Snapshot> {
    let storage = FsStorage::open(&snapshot_dir(data_dir)).ok()?;
    load_newest_where(&storage, |head| head <= at, matches_log)
}

/// [`load_newest`] from a snapshot directory's storage.
pub fn load_newest_from<S: Storage>(
    storage: &S,
    matches_log: &mut dyn FnMut(u64, &[u8; 32]) -> bool,
) -> Option<Snapshot> {
    load_newest_where(storage, |_| true, matches_log)
}

/// The newest snapshot whose head `wanted` accepts, that passes its checks and that
/// `matches_log` confirms.
fn load_newest_where<S: Storage>(
    storage: &S,
    wanted: impl Fn(u64) -> bool,
    matches_log: &mut dyn FnMut(u64, &[u8; 32]) -> bool,
) -> Option<Snapshot> {
    for (head, name) in list(storage).into_iter().filter(|(head, _)| wanted(*head)) {
        match read(storage, &name) {
            Ok(snapshot)
                if snapshot.state.head == head && matches_log(head, &snapshot.state.head_hash) =>
            {
                return Some(snapshot)
            }
            Ok(_) => {
                tracing::warn!(snapshot = %storage.describe(&name), "skipping a snapshot that does not match the log")
            }
            Err(reason) => {
                tracing::warn!(snapshot = %storage.describe(&name), %reason, "skipping a damaged snapshot")
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(head: u64) -> Snapshot {
        let state = State {
            head,
            head_hash: [head as u8; 32],
            ..State::default()
        };
        Snapshot {
            format: SNAPSHOT_FORMAT,
            state,
            idempotency: vec![],
            last_ts_ms: 7,
        }
    }

    /// A file of format 1 or 2 as earlier versions wrote it: the header, then the JSON
    /// `body`.
    fn json_file(format: u32, body: &serde_json::Value) -> Vec<u8> {
        let body = serde_json::to_vec(body).expect("encodes");
        let mut bytes = header(format, &body).into_bytes();
        bytes.extend_from_slice(&body);
        bytes
    }

    fn json_name(head: u64) -> String {
        format!("snapshot-{head:020}.{JSON_EXTENSION}")
    }

    /// The names in a snapshot directory, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(snapshot_dir(dir))
            .expect("a snapshot directory")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .into_string()
                    .expect("utf-8")
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_newest_valid_snapshot_wins_and_damage_is_skipped() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), &sample(5)).expect("write 5");
        let (newest, _) = write(dir.path(), &sample(9)).expect("write 9");
        let loaded = load_newest(dir.path(), &mut |_, _| true).expect("a snapshot");
        assert_eq!(loaded.state.head, 9);
        assert_eq!(loaded.last_ts_ms, 7);

        let mut bytes = std::fs::read(&newest).expect("read");
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        std::fs::write(&newest, bytes).expect("damage");
        assert_eq!(
            load_newest(dir.path(), &mut |_, _| true).map(|s| s.state.head),
            Some(5),
            "a damaged snapshot is skipped"
        );
        assert!(
            load_newest(dir.path(), &mut |head, _| head != 5).is_none(),
            "a snapshot the log does not confirm is skipped"
        );
    }

    /// Format 3 is the header line with the body's SHA-256, then the snapshot in postcard,
    /// in a `.snap` file.
    #[test]
    fn format_3_is_postcard_behind_a_checksummed_header() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, size) = write(dir.path(), &sample(12)).expect("write");
        assert_eq!(
            path.file_name().and_then(|name| name.to_str()),
            Some("snapshot-00000000000000000012.snap")
        );
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(bytes.len() as u64, size);
        let newline = bytes
            .iter()
            .position(|byte| *byte == b'\n')
            .expect("a header");
        let (header_line, body) = (&bytes[..newline], &bytes[newline + 1..]);
        assert_eq!(
            std::str::from_utf8(header_line).expect("text"),
            format!("swarmlog-snapshot 3 {}", hex::encode(Sha256::digest(body)))
        );
        let decoded: Snapshot = postcard::from_bytes(body).expect("postcard");
        assert_eq!(decoded, sample(12));
        assert_eq!(decode(&bytes).expect("decodes"), sample(12));
    }

    /// A format-3 file whose checksum holds but whose body is not a snapshot, or whose name
    /// says another head than its state, is skipped like a damaged one.
    #[test]
    fn a_format_3_snapshot_that_does_not_decode_or_match_is_skipped() {
        let body = postcard::to_allocvec(&sample(6)).expect("encodes");
        let file = |body: &[u8]| {
            let mut bytes = header(SNAPSHOT_FORMAT, body).into_bytes();
            bytes.extend_from_slice(body);
            bytes
        };
        assert!(matches!(
            decode(&file(&body[..body.len() - 1])),
            Err(LoadError::Postcard(_))
        ));
        assert!(matches!(
            decode(&file(&[body.as_slice(), &[0, 0]].concat())),
            Err(LoadError::TrailingBytes(2))
        ));
        assert!(matches!(
            decode(&file(b"{\"format\":3}")),
            Err(LoadError::Postcard(_))
        ));
        let mut damaged = file(&body);
        let last = damaged.len() - 1;
        damaged[last] ^= 0x40;
        assert!(matches!(
            decode(&damaged),
            Err(LoadError::ChecksumMismatch { .. })
        ));

        let dir = tempfile::tempdir().expect("temp dir");
        let snapshots = snapshot_dir(dir.path());
        std::fs::create_dir_all(&snapshots).expect("mkdir");
        std::fs::write(snapshots.join(file_name(8)), file(&body)).expect("write");
        assert!(
            load_newest(dir.path(), &mut |_, _| true).is_none(),
            "a snapshot of head 6 named as head 8 is skipped"
        );
        std::fs::write(snapshots.join(file_name(6)), file(&body[..10])).expect("write");
        assert!(load_newest(dir.path(), &mut |_, _| true).is_none());
        std::fs::write(snapshots.join(file_name(6)), file(&body)).expect("write");
        assert_eq!(
            load_newest(dir.path(), &mut |_, _| true).map(|s| s.state.head),
            Some(6)
        );
    }

    /// The snapshot's head and hash, to tell which one was loaded.
    fn identity(snapshot: &Snapshot) -> (u64, [u8; 32]) {
        (snapshot.state.head, snapshot.state.head_hash)
    }

    // Issue #9, "injected I/O errors": EIO and ENOSPC at every operation of a snapshot
    // write. The failure is returned (only removing an older snapshot is cleanup, logged),
    // no sync follows a failed sync, no temporary file is left behind, and after any
    // crash the newest loadable snapshot is the old one or, once written, the new one.
    #[test]
    fn every_operation_of_a_snapshot_write_fails_cleanly() {
        use swarmlog_log::sim::{CrashMode, Fault, Operation, SimStorage};
        let base = SimStorage::new();
        write_to(&base, &sample(3)).expect("write 3");
        write_to(&base, &sample(5)).expect("write 5");
        let syncs = |storage: &SimStorage| {
            (
                storage.operations(Operation::Sync),
                storage.operations(Operation::SyncDir),
            )
        };
        let mut points = 0;
        for operation in Operation::ALL {
            for fault in Fault::ALL {
                for nth in 0.. {
                    let what = format!("{fault:?} at {operation:?} #{nth}");
                    let storage = base.crash(CrashMode::ProcessCrash, 0);
                    storage.fail_nth(operation, nth, fault);
                    let before = syncs(&storage);
                    let result = write_to(&storage, &sample(9));
                    if storage.faults_fired() == 0 {
                        assert!(result.is_ok(), "{what}: {result:?}");
                        break;
                    }
                    points += 1;
                    let after = syncs(&storage);
                    match operation {
                        Operation::Sync => assert_eq!(after.1, before.1, "{what}: synced on"),
                        Operation::SyncDir => assert_eq!(after, (before.0 + 1, before.1 + 1)),
                        _ => {}
                    }
                    match &result {
                        Ok(_) => assert_eq!(operation, Operation::Remove, "{what}: swallowed"),
                        Err(error) => {
                            assert!(error.to_string().contains("injected"), "{what}: {error}")
                        }
                    }
                    let names = storage.list().expect("list");
                    assert!(
                        names.iter().all(|name| !name.ends_with(".tmp"))
                            || operation == Operation::Remove,
                        "{what}: a temporary file was left: {names:?}"
                    );
                    for mode in CrashMode::ALL {
                        for seed in 0..3 {
                            let loaded =
                                load_newest_from(&storage.crash(mode, seed), &mut |_, _| true)
                                    .unwrap_or_else(|| panic!("{what}, {mode:?}: no snapshot"));
                            let head = loaded.state.head;
                            assert!(head == 5 || head == 9, "{what}, {mode:?}: head {head}");
                            assert_eq!(identity(&loaded), identity(&sample(head)));
                            if result.is_ok() {
                                assert_eq!(head, 9, "{what}, {mode:?}: a written snapshot");
                            }
                        }
                    }
                }
            }
        }
        assert!(points >= 12, "only {points} failure points");
    }

    /// A format-1 snapshot, written before the stream index moved to its own files, still
    /// loads: its stream index is skipped.
    #[test]
    fn a_format_1_snapshot_with_a_stream_index_still_loads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut body = serde_json::to_value(sample(4)).expect("encodes");
        body["format"] = 1.into();
        body["stream_index"] = serde_json::json!([["main", "s", [1, 2, 4]]]);
        let bytes = json_file(1, &body);
        let snapshots = snapshot_dir(dir.path());
        std::fs::create_dir_all(&snapshots).expect("mkdir");
        std::fs::write(snapshots.join(json_name(4)), &bytes).expect("write");
        let loaded = load_newest(dir.path(), &mut |_, _| true).expect("loads");
        assert_eq!(identity(&loaded), identity(&sample(4)));
        assert_eq!(loaded.format, 1);

        let unknown = String::from_utf8(bytes)
            .expect("text")
            .replacen(" 1 ", " 4 ", 1);
        std::fs::write(snapshots.join(json_name(4)), &unknown).expect("write");
        assert!(
            load_newest(dir.path(), &mut |_, _| true).is_none(),
            "an unknown format is skipped"
        );
        assert!(matches!(
            decode(unknown.as_bytes()),
            Err(LoadError::UnknownFormat(format)) if format == "4"
        ));
    }

    /// A format-2 snapshot that the last version to write JSON made
    /// (`testdata/snapshot-format-2.sh`: every kind of entity, absent options left out,
    /// a task completed without a result) still loads, and its state survives format 3
    /// unchanged.
    #[test]
    fn a_format_2_snapshot_written_by_an_earlier_version_still_loads() {
        let bytes = include_bytes!("../testdata/snapshot-format-2.json");
        let dir = tempfile::tempdir().expect("temp dir");
        let snapshots = snapshot_dir(dir.path());
        std::fs::create_dir_all(&snapshots).expect("mkdir");
        std::fs::write(snapshots.join(json_name(51)), bytes).expect("write");
        let loaded = load_newest(dir.path(), &mut |_, _| true).expect("loads");
        assert_eq!((loaded.format, loaded.state.head), (2, 51));
        assert_eq!(
            hex::encode(loaded.state.head_hash),
            "e6eadf05b3380a8fd410f3445352346301f5c93b15d18945953cb9c498183d15"
        );
        let main = loaded.state.branch("main").expect("main");
        let tasks = &main.work.tasks.by_id;
        assert_eq!(tasks.len(), 6);
        assert_eq!(tasks["a"].definition.title.as_deref(), Some("Build"));
        assert_eq!(
            tasks["a"].result,
            Some(serde_json::json!({"ok": true, "score": 0.75}))
        );
        assert_eq!(
            tasks["b"].progress.as_ref().map(|p| p.note.is_none()),
            Some(true)
        );
        assert_eq!(tasks["c"].definition.title, None);
        // JSON cannot tell `Some(null)` (completed without a result) from `None`; format 3
        // can, so only snapshots written from now on keep it.
        assert_eq!(tasks["d"].result, None);
        assert!(tasks["e"]
            .auction
            .as_ref()
            .is_some_and(|a| a.bids.len() == 2));
        assert_eq!(
            main.coordination.cells["config"].value["pi"],
            serde_json::json!(std::f64::consts::PI)
        );
        assert_eq!(main.work.blackboard.findings["F-1"].evidence.len(), 2);
        assert_eq!(main.work.consensus.proposals.len(), 2);
        assert_eq!(main.work.messages.by_id.len(), 2);
        assert_eq!(main.work.sessions.by_id.len(), 2);
        assert_eq!(main.coordination.locks.len(), 2);
        assert_eq!(
            loaded
                .state
                .branch("experiment")
                .expect("a branch")
                .coordination
                .cells["counter"]
                .value,
            serde_json::json!(100)
        );

        let mut current = loaded.clone();
        current.format = SNAPSHOT_FORMAT;
        write(dir.path(), &current).expect("write format 3");
        assert_eq!(
            names(dir.path()),
            [file_name(51)],
            "format 3 replaces the JSON file of the same head"
        );
        let reloaded = load_newest(dir.path(), &mut |_, _| true).expect("loads");
        assert_eq!(reloaded, current);
    }

    /// The newest heads are kept whatever their format, and a JSON file is removed once a
    /// postcard one of the same head is written; the postcard one is loaded first.
    #[test]
    fn old_and_new_snapshots_are_kept_and_pruned_together() {
        let dir = tempfile::tempdir().expect("temp dir");
        let snapshots = snapshot_dir(dir.path());
        std::fs::create_dir_all(&snapshots).expect("mkdir");
        for head in [1, 2, 3] {
            let mut body = serde_json::to_value(sample(head)).expect("encodes");
            body["format"] = 2.into();
            std::fs::write(snapshots.join(json_name(head)), json_file(2, &body)).expect("write");
        }
        let loaded = load_newest(dir.path(), &mut |_, _| true).expect("loads");
        assert_eq!((loaded.format, loaded.state.head), (2, 3));

        write(dir.path(), &sample(3)).expect("write 3");
        assert_eq!(names(dir.path()), [json_name(2), file_name(3)]);
        let loaded = load_newest(dir.path(), &mut |_, _| true).expect("loads");
        assert_eq!((loaded.format, loaded.state.head), (SNAPSHOT_FORMAT, 3));

        write(dir.path(), &sample(4)).expect("write 4");
        assert_eq!(names(dir.path()), [file_name(3), file_name(4)]);

        let storage = FsStorage::open(&snapshots).expect("open");
        std::fs::write(snapshots.join(json_name(4)), b"left by an earlier version").expect("write");
        assert_eq!(
            list(&storage),
            [(4, file_name(4)), (4, json_name(4)), (3, file_name(3))],
            "at the same head the current format comes first"
        );
        assert_eq!(superseded(list(&storage)), [json_name(4)]);
    }

    #[test]
    fn only_the_newest_are_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        for head in [1, 2, 3, 4] {
            write(dir.path(), &sample(head)).expect("write");
        }
        let storage = FsStorage::open(&snapshot_dir(dir.path())).expect("open");
        let heads: Vec<u64> = list(&storage).into_iter().map(|(head, _)| head).collect();
        assert_eq!(heads, vec![4, 3]);
    }
}
