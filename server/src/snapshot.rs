//! Projection snapshots: the state (with the idempotency window) written atomically next
//! to the log, so that start-up loads the newest valid snapshot and replays only the tail.
//! The stream index is not in them: it lives in its own files (`stream_index`).
//!
//! A snapshot file is one header line, `swarmlog-snapshot 2 <sha256 of the body>\n`,
//! followed by the JSON body. Format 1 also carried the stream index (every seq of every
//! stream); it still loads, its `stream_index` field skipped unread, since format 2 only
//! dropped that field. It is written to a temporary name, fsynced, renamed, and
//! the directory fsynced, so a crash leaves either the old set of snapshots or the new
//! one. A snapshot whose checksum fails, that does not parse, or whose head does not
//! match the log (another log, or a log cut shorter) is skipped, never trusted.
//!
//! The snapshot directory is written through the log's `Storage` trait, like the log
//! itself, so the same simulated disk (`SimStorage`) can crash it or fail any of its
//! operations with EIO or ENOSPC in tests. A failure is returned (the engine logs it and
//! replays more at the next start); a failed sync is never retried, and a temporary file
//! left by a failure is removed so that a full disk gets its space back.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use swarmlog_log::{Access, FsStorage, Storage, StorageFile};
use swarmlog_projections::State;

/// The snapshot format written by this version.
pub const SNAPSHOT_FORMAT: u32 = 2;

/// The snapshot formats this version loads: 1 is 2 plus the stream index, which is
/// ignored.
pub const SNAPSHOT_FORMATS_READ: [u32; 2] = [1, SNAPSHOT_FORMAT];

/// How many snapshots are kept; older ones are removed after a new one is durable.
pub const SNAPSHOTS_KEPT_MAX: usize = 2;

const HEADER_PREFIX: &str = "swarmlog-snapshot";

/// What a snapshot holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// The snapshot directory of a data directory.
pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

fn file_name(head: u64) -> String {
    format!("snapshot-{head:020}.json")
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
/// renamed, the directory synced; then removes the older snapshots beyond
/// [`SNAPSHOTS_KEPT_MAX`]. Returns the file name and size written.
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
    let body = serde_json::to_vec(snapshot)
        .map_err(|error| fail("cannot encode it")(io::Error::other(error)))?;
    let digest = hex::encode(Sha256::digest(&body));
    let mut bytes = format!("{HEADER_PREFIX} {SNAPSHOT_FORMAT} {digest}\n").into_bytes();
    bytes.extend_from_slice(&body);
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
    for (_, old) in list(storage).into_iter().skip(SNAPSHOTS_KEPT_MAX) {
        if let Err(error) = storage.remove(&old) {
            tracing::warn!(%error, snapshot = %storage.describe(&old), "cannot remove an old snapshot");
        }
    }
    Ok((name, bytes.len() as u64))
}

/// Snapshot files, newest first, as `(head, name)`.
fn list<S: Storage>(storage: &S) -> Vec<(u64, String)> {
    let Ok(names) = storage.list() else {
        return Vec::new();
    };
    let mut found: Vec<(u64, String)> = names
        .into_iter()
        .filter_map(|name| {
            let head = name
                .strip_prefix("snapshot-")?
                .strip_suffix(".json")?
                .parse()
                .ok()?;
            Some((head, name))
        })
        .collect();
    found.sort_by_key(|(head, _)| std::cmp::Reverse(*head));
    found
}

/// Reads and checks one snapshot file.
fn read<S: Storage>(storage: &S, name: &str) -> Result<Snapshot, String> {
    let file = storage
        .open(name, Access::ReadOnly)
        .map_err(|error| error.to_string())?;
    let length = file.len().map_err(|error| error.to_string())?;
    let length = usize::try_from(length).map_err(|_| "too large to read")?;
    let mut bytes = vec![0u8; length];
    file.read_at(&mut bytes, 0)
        .map_err(|error| error.to_string())?;
    let newline = bytes
        .iter()
        .position(|byte| *byte == b'\n')
        .ok_or("no header line")?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| "the header is not text")?;
    let mut parts = header.split(' ');
    if parts.next() != Some(HEADER_PREFIX) {
        return Err("not a swarmlog snapshot".into());
    }
    let format = parts.next().ok_or("no format")?;
    if !SNAPSHOT_FORMATS_READ
        .iter()
        .any(|known| format == known.to_string())
    {
        return Err(format!("an unknown snapshot format {format}"));
    }
    let stored = parts.next().ok_or("no checksum")?;
    let body = &bytes[newline + 1..];
    let computed = hex::encode(Sha256::digest(body));
    if stored != computed {
        return Err(format!(
            "checksum mismatch: stored {stored}, computed {computed}"
        ));
    }
    serde_json::from_slice(body).map_err(|error| format!("does not parse: {error}"))
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
        let body = serde_json::to_vec(&body).expect("encodes");
        let mut bytes =
            format!("{HEADER_PREFIX} 1 {}\n", hex::encode(Sha256::digest(&body))).into_bytes();
        bytes.extend_from_slice(&body);
        let snapshots = snapshot_dir(dir.path());
        std::fs::create_dir_all(&snapshots).expect("mkdir");
        std::fs::write(snapshots.join(file_name(4)), &bytes).expect("write");
        let loaded = load_newest(dir.path(), &mut |_, _| true).expect("loads");
        assert_eq!(identity(&loaded), identity(&sample(4)));
        assert_eq!(loaded.format, 1);

        let unknown = String::from_utf8(bytes)
            .expect("text")
            .replacen(" 1 ", " 3 ", 1);
        std::fs::write(snapshots.join(file_name(4)), unknown).expect("write");
        assert!(
            load_newest(dir.path(), &mut |_, _| true).is_none(),
            "an unknown format is skipped"
        );
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
