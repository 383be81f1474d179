//! The free-space guard: writes are refused with 507 `insufficient_storage` while the file
//! system that holds the log has less free space than `--min-free-bytes`, so that the disk
//! never fills up under the log (issue #9, defect 5).
//!
//! The engine asks once per group commit, before it decides any write or runs any timer,
//! so a refused write costs no decision and nothing has to be undone. A reading of
//! `statvfs` (about 2 µs here) is reused for up to [`SPACE_READING_AGE_MAX`], minus the bytes
//! the engine has handed to the log since, so a busy server does not pay a syscall per
//! group; a write is refused only on a fresh reading.
//!
//! When the disk fills anyway (another process took the space, or the threshold is 0) the
//! log refuses the group it could not allocate for (`swarmlog_log::Error::NoSpace`), and
//! the committer `block`s the guard: writes are then refused until the free space is back
//! above the threshold plus what that group needed. That re-check on each write is how the
//! server notices that space returned.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use swarmlog_log::file_system_space;

use crate::limits::{
    FREE_BYTES_MIN_DEFAULT, FREE_BYTES_MIN_DEFAULT_PERCENT, SPACE_READING_AGE_MAX,
};
use crate::refusal::Refusal;

/// Decides whether writes may go ahead; shared by the engine and the commit thread.
#[derive(Debug)]
pub struct SpaceGuard {
    /// A directory on the log's file system.
    dir: PathBuf,
    /// `--min-free-bytes`, resolved.
    free_bytes_min: u64,
    state: Mutex<GuardState>,
}

#[derive(Debug, Default)]
struct GuardState {
    /// The last `statvfs` reading: when, and the bytes available then.
    reading: Option<(Instant, u64)>,
    /// Bytes handed to the log since that reading.
    written_since_reading: u64,
    /// After a full disk refused a group: the free bytes writes wait for.
    blocked_until_free_bytes: Option<u64>,
    /// Whether the last check refused, so that only changes are logged.
    refusing: bool,
}

impl SpaceGuard {
    /// A guard for the log in `dir`. `free_bytes_min` is `--min-free-bytes`; `None` takes the
    /// default: [`FREE_BYTES_MIN_DEFAULT`], or [`FREE_BYTES_MIN_DEFAULT_PERCENT`] of the file
    /// system if that is smaller.
    pub fn new(dir: &Path, free_bytes_min: Option<u64>) -> SpaceGuard {
        let free_bytes_min = free_bytes_min.unwrap_or_else(|| {
            // The log directory may not exist yet; its nearest existing ancestor is on
            // the same file system unless a mount point comes between.
            let existing = dir.ancestors().find(|path| path.exists()).unwrap_or(dir);
            let total_bytes =
                file_system_space(existing).map_or(u64::MAX, |space| space.total_bytes);
            default_free_bytes_min(total_bytes)
        });
        SpaceGuard {
            dir: dir.to_path_buf(),
            free_bytes_min,
            state: Mutex::new(GuardState::default()),
        }
    }

    /// The threshold in force.
    pub fn free_bytes_min(&self) -> u64 {
        self.free_bytes_min
    }

    /// Whether writes may go ahead now; else the refusal to answer them with.
    pub fn check(&self) -> Result<(), Refusal> {
        let mut state = self.lock();
        let required_bytes = self.required_bytes(&state);
        if required_bytes == 0 {
            return Ok(());
        }
        if let Some((read_at, available_bytes)) = state.reading {
            let estimate = available_bytes.saturating_sub(state.written_since_reading);
            if read_at.elapsed() < SPACE_READING_AGE_MAX && estimate >= required_bytes {
                return Ok(());
            }
        }
        let free_bytes = match file_system_space(&self.dir) {
            Ok(space) => space.available_bytes,
            Err(error) => {
                // Without a reading the log's own ENOSPC handling is the only guard left.
                tracing::warn!(%error, dir = %self.dir.display(), "cannot read the free space; not refusing writes for it");
                return Ok(());
            }
        };
        state.reading = Some((Instant::now(), free_bytes));
        state.written_since_reading = 0;
        if free_bytes >= required_bytes {
            if std::mem::take(&mut state.refusing) {
                tracing::info!(free_bytes, "free space is back; accepting writes again");
            }
            state.blocked_until_free_bytes = None;
            return Ok(());
        }
        if !std::mem::replace(&mut state.refusing, true) {
            tracing::warn!(
                free_bytes,
                required_bytes,
                "the disk holding the log is nearly full; refusing writes with 507 until space is freed"
            );
        }
        Err(Refusal::InsufficientStorage {
            free_bytes,
            required_bytes,
        })
    }

    /// Counts bytes handed to the log, so that a cached reading is not trusted past them.
    pub fn note_written(&self, bytes: u64) {
        let mut state = self.lock();
        state.written_since_reading = state.written_since_reading.saturating_add(bytes);
    }

    /// A full disk refused a group that needed `bytes_needed` more: refuse writes until
    /// that much is free above the threshold. Returns the refusal for the group.
    pub fn block(&self, bytes_needed: u64) -> Refusal {
        let mut state = self.lock();
        let required_bytes = self.free_bytes_min.saturating_add(bytes_needed.max(1));
        state.blocked_until_free_bytes = Some(required_bytes);
        state.reading = None;
        state.refusing = true;
        let free_bytes = file_system_space(&self.dir).map_or(0, |space| space.available_bytes);
        Refusal::InsufficientStorage {
            free_bytes,
            required_bytes,
        }
    }

    fn required_bytes(&self, state: &GuardState) -> u64 {
        state
            .blocked_until_free_bytes
            .unwrap_or(0)
            .max(self.free_bytes_min)
    }

    fn lock(&self) -> MutexGuard<'_, GuardState> {
        // Every change under this lock is a few assignments that cannot panic halfway.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The default threshold for a file system of `total_bytes`.
pub fn default_free_bytes_min(total_bytes: u64) -> u64 {
    let percent = u128::from(total_bytes) * u128::from(FREE_BYTES_MIN_DEFAULT_PERCENT) / 100;
    FREE_BYTES_MIN_DEFAULT.min(u64::try_from(percent).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_64_mib_or_5_percent_of_a_small_disk() {
        assert_eq!(default_free_bytes_min(1 << 40), 64 * 1024 * 1024);
        assert_eq!(default_free_bytes_min(10 * 1024 * 1024), 524_288);
        assert_eq!(default_free_bytes_min(0), 0);
    }

    #[test]
    fn the_default_comes_from_the_file_system_of_a_log_directory_not_created_yet() {
        let dir = tempfile::tempdir().expect("temp dir");
        let total_bytes = file_system_space(dir.path()).expect("statvfs").total_bytes;
        let guard = SpaceGuard::new(&dir.path().join("data/log"), None);
        assert_eq!(guard.free_bytes_min(), default_free_bytes_min(total_bytes));
    }

    #[test]
    fn writes_are_refused_below_the_threshold_and_after_a_block() {
        let dir = tempfile::tempdir().expect("temp dir");
        let free = file_system_space(dir.path())
            .expect("statvfs")
            .available_bytes;
        assert!(SpaceGuard::new(dir.path(), Some(0)).check().is_ok());
        let guard = SpaceGuard::new(dir.path(), Some(free + (1 << 40)));
        match guard.check() {
            Err(Refusal::InsufficientStorage { required_bytes, .. }) => {
                assert_eq!(required_bytes, free + (1 << 40))
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let guard = SpaceGuard::new(dir.path(), Some(1));
        assert!(guard.check().is_ok());
        let refusal = guard.block(1 << 50);
        assert_eq!(refusal.code(), "insufficient_storage");
        assert!(guard.check().is_err(), "blocked until 1 PiB is free");
    }
}
