//! The thread that writes full ranges of the stream index to their files, off the commit
//! thread: a range stays readable in memory until its file is in place, then readers are
//! switched to the file and the memory is freed.
//!
//! A file that cannot be written (a full disk, an I/O error) is logged and tried again
//! with the next range and at every flush; until then its range stays in memory. That
//! memory is bounded by how long writes go on: a full disk also refuses the writes
//! (`space.rs`), so no range fills while the disk is full.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, RwLock, Weak};

use super::file::{self, IndexFile};
use super::{Inner, MemoryRange, Range, StreamIndexError};

enum Message {
    /// Write this full range's file.
    Write(Arc<MemoryRange>),
    /// Try the ranges not written yet again, then answer.
    Flush(mpsc::SyncSender<()>),
}

/// The handle to the writer thread. Dropping it ends the thread once it has written what
/// it was handed.
#[derive(Debug)]
pub(super) struct Writer {
    sender: mpsc::Sender<Message>,
}

impl Writer {
    /// Starts the thread that writes into `dir` and tells `inner` when a file is in place.
    pub fn start(dir: PathBuf, inner: Weak<RwLock<Inner>>) -> std::io::Result<Writer> {
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("swarmlog-streams".into())
            .spawn(move || run(&dir, &inner, &receiver))?;
        Ok(Writer { sender })
    }

    /// Hands a full range over.
    pub fn write(&self, range: Arc<MemoryRange>) {
        // The thread only stops when this handle is dropped (or if it panicked, which
        // leaves the range in memory and to the next start's rebuild).
        let _ = self.sender.send(Message::Write(range));
    }

    /// Waits until every range handed over is written or failed.
    pub fn flush(&self) {
        let (done, finished) = mpsc::sync_channel(1);
        if self.sender.send(Message::Flush(done)).is_ok() {
            let _ = finished.recv();
        }
    }
}

fn run(dir: &Path, inner: &Weak<RwLock<Inner>>, receiver: &mpsc::Receiver<Message>) {
    let mut unwritten: Vec<Arc<MemoryRange>> = Vec::new();
    while let Ok(message) = receiver.recv() {
        let done = match message {
            Message::Write(range) => {
                unwritten.push(range);
                None
            }
            Message::Flush(done) => Some(done),
        };
        unwritten.retain(|range| match write_file(dir, range) {
            Ok(file) => {
                publish(inner, file);
                false
            }
            Err(error) => {
                tracing::warn!(%error, first = range.first, last = range.last, "cannot write a stream index file; its range stays in memory and is tried again");
                true
            }
        });
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
}

/// Replaces the range in memory with its file.
fn publish(inner: &Weak<RwLock<Inner>>, file: IndexFile) {
    let Some(inner) = inner.upgrade() else {
        return;
    };
    let mut inner = inner
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let first = file.first();
    let in_memory = matches!(inner.ranges.get(&first), Some(Range::Memory(memory)) if memory.last == file.last());
    if in_memory {
        inner.ranges.insert(first, Range::File(Arc::new(file)));
    }
}

/// Writes the file of a full range: checked as a reader will check it, written to a
/// temporary name and renamed into place. No fsync: see the module documentation of
/// `stream_index` for why a crash can only cost a rebuild.
///
/// # Panics
/// If the encoded bytes fail the reader's checks: the encoder and the checks disagree.
pub(super) fn write_file(dir: &Path, range: &MemoryRange) -> Result<IndexFile, StreamIndexError> {
    let bytes = file::encode(range.first, range.last, &range.chain, &range.streams);
    let name = file::file_name(range.first);
    let path = dir.join(&name);
    let checked = IndexFile::check(&path, &bytes, range.first, range.last, &range.chain.last)
        .unwrap_or_else(|reason| {
            panic!("a freshly encoded stream index file fails its check: {reason}")
        });
    let temporary = dir.join(format!("{name}{}", file::TEMPORARY_SUFFIX));
    let io = |context: &'static str| {
        let path = path.display().to_string();
        move |source| StreamIndexError::Io {
            path,
            context,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("cannot create the directory"))?;
    let written = std::fs::write(&temporary, &bytes)
        .map_err(io("cannot write its temporary file"))
        .and_then(|()| {
            std::fs::rename(&temporary, &path).map_err(io("cannot rename it into place"))
        });
    if written.is_err() {
        // Gives a full disk its space back.
        let _ = std::fs::remove_file(&temporary);
    }
    written.map(|()| checked)
}
