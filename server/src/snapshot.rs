//! Projection snapshots: the state (with the stream index and the idempotency window)
//! written atomically next to the log, so that start-up loads the newest valid snapshot
//! and replays only the tail.
//!
//! A snapshot file is one header line, `swarmlog-snapshot 1 <sha256 of the body>\n`,
//! followed by the JSON body. It is written to a temporary name, fsynced, renamed, and
//! the directory fsynced, so a crash leaves either the old set of snapshots or the new
//! one. A snapshot whose checksum fails, that does not parse, or whose head does not
//! match the log (another log, or a log cut shorter) is skipped, never trusted.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use swarmlog_projections::State;

/// The snapshot format written by this version.
pub const SNAPSHOT_FORMAT: u32 = 1;

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
    /// Seqs of each `(branch, stream)`.
    pub stream_index: Vec<(String, String, Vec<u64>)>,
    /// Idempotency keys inside their window: `(key, request sha256 hex, seq, ts_ms)`.
    pub idempotency: Vec<(String, String, u64, i64)>,
    /// The newest event timestamp seen, so timestamps never go backwards.
    pub last_ts_ms: i64,
}

/// Why a snapshot could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write snapshot {path}: {source}")]
pub struct SnapshotError {
    path: String,
    source: std::io::Error,
}

/// The snapshot directory of a data directory.
pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

fn file_name(head: u64) -> String {
    format!("snapshot-{head:020}.json")
}

/// Writes `snapshot` atomically and removes all but the newest [`SNAPSHOTS_KEPT_MAX`].
/// Returns the path and size written.
pub fn write(data_dir: &Path, snapshot: &Snapshot) -> Result<(PathBuf, u64), SnapshotError> {
    let dir = snapshot_dir(data_dir);
    let path = dir.join(file_name(snapshot.state.head));
    let fail = |source| SnapshotError {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(fail)?;
    let body = serde_json::to_vec(snapshot).map_err(|error| fail(std::io::Error::other(error)))?;
    let digest = hex::encode(Sha256::digest(&body));
    let temporary = dir.join(format!("{}.tmp", file_name(snapshot.state.head)));
    {
        let mut file = std::fs::File::create(&temporary).map_err(fail)?;
        file.write_all(format!("{HEADER_PREFIX} {SNAPSHOT_FORMAT} {digest}\n").as_bytes())
            .map_err(fail)?;
        file.write_all(&body).map_err(fail)?;
        file.sync_all().map_err(fail)?;
    }
    std::fs::rename(&temporary, &path).map_err(fail)?;
    std::fs::File::open(&dir)
        .and_then(|directory| directory.sync_all())
        .map_err(fail)?;
    for old in list(&dir).into_iter().skip(SNAPSHOTS_KEPT_MAX) {
        let _ = std::fs::remove_file(old.1);
    }
    let size = std::fs::metadata(&path).map(|meta| meta.len()).unwrap_or(0);
    Ok((path, size))
}

/// Snapshot files, newest first, as `(head, path)`.
fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let head = name
                .strip_prefix("snapshot-")?
                .strip_suffix(".json")?
                .parse()
                .ok()?;
            Some((head, entry.path()))
        })
        .collect();
    found.sort_by_key(|(head, _)| std::cmp::Reverse(*head));
    found
}

/// Reads and checks one snapshot file.
fn read(path: &Path) -> Result<Snapshot, String> {
    let bytes = std::fs::read(path).map_err(|error| error.to_string())?;
    let newline = bytes
        .iter()
        .position(|byte| *byte == b'\n')
        .ok_or("no header line")?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| "the header is not text")?;
    let mut parts = header.split(' ');
    if parts.next() != Some(HEADER_PREFIX) {
        return Err("not a swarmlog snapshot".into());
    }
    if parts.next() != Some(&SNAPSHOT_FORMAT.to_string()) {
        return Err("an unknown snapshot format".into());
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

/// The newest snapshot that passes its checks and that `matches_log(head, head_hash)`
/// confirms (the log has that event with that hash); damaged ones are logged and skipped.
pub fn load_newest(
    data_dir: &Path,
    matches_log: &mut dyn FnMut(u64, &[u8; 32]) -> bool,
) -> Option<Snapshot> {
    for (head, path) in list(&snapshot_dir(data_dir)) {
        match read(&path) {
            Ok(snapshot)
                if snapshot.state.head == head && matches_log(head, &snapshot.state.head_hash) =>
            {
                return Some(snapshot)
            }
            Ok(_) => {
                tracing::warn!(path = %path.display(), "skipping a snapshot that does not match the log")
            }
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "skipping a damaged snapshot")
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
            stream_index: vec![("main".into(), "s".into(), vec![1, 2])],
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
        assert_eq!(
            loaded.stream_index,
            vec![("main".to_owned(), "s".to_owned(), vec![1, 2])]
        );

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

    #[test]
    fn only_the_newest_are_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        for head in [1, 2, 3, 4] {
            write(dir.path(), &sample(head)).expect("write");
        }
        let heads: Vec<u64> = list(&snapshot_dir(dir.path()))
            .into_iter()
            .map(|(head, _)| head)
            .collect();
        assert_eq!(heads, vec![4, 3]);
    }
}
