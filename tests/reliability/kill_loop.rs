//! kill -9 cycles under load: 8 writers append single events and atomic batches while the
//! server is killed, again and again, on one data directory. Afterwards every acknowledged
//! event is present with its content, exactly once; every write is all there or not at all;
//! the sequence has no gap; each writer's writes are a prefix of what it sent; and
//! `swarmlog verify` accepts the whole log.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::count_from_env;
use crate::support::{cli, data_dir, Server};

const WRITERS: usize = 8;
/// Cycles per run; CI runs this many, RELIABILITY.md documents a longer run.
const CYCLES_DEFAULT: usize = 100;

/// One write a writer sent: which cycle and writer, its index among the writer's writes in
/// that cycle, and how many events it carried (1, or a batch of 2 to 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Write {
    cycle: usize,
    writer: usize,
    index: usize,
}

/// What an event says about the write it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    write: Write,
    part: usize,
    parts: usize,
}

impl Part {
    fn data(&self) -> Value {
        json!({
            "cycle": self.write.cycle,
            "writer": self.write.writer,
            "index": self.write.index,
            "part": self.part,
            "parts": self.parts,
        })
    }

    fn from_event(event: &Value) -> Part {
        let field = |name: &str| -> usize {
            event["data"][name]
                .as_u64()
                .unwrap_or_else(|| panic!("event {event} has a numeric data.{name}"))
                as usize
        };
        Part {
            write: Write {
                cycle: field("cycle"),
                writer: field("writer"),
                index: field("index"),
            },
            part: field("part"),
            parts: field("parts"),
        }
    }
}

/// A tiny deterministic generator (xorshift64*), so a run's shape depends on its cycle only.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

type Acknowledged = Arc<Mutex<BTreeMap<u64, Part>>>;

/// One writer of one cycle: appends until the server dies (a refused connection, a reset,
/// or an answer that is not 201 ends it).
async fn write_until_killed(
    url: String,
    write: Write,
    acknowledged: Acknowledged,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::new();
    let mut rng = Rng(0x9e37_79b9 ^ ((write.cycle as u64) << 8) ^ write.writer as u64 | 1);
    let mut index = 0;
    while !stop.load(Ordering::Relaxed) {
        let write = Write { index, ..write };
        let parts = if rng.below(3) == 0 {
            2 + rng.below(3) as usize
        } else {
            1
        };
        let events: Vec<Value> = (0..parts)
            .map(|part| {
                json!({
                    "type": "reliability.tick",
                    "stream": format!("writer/{}", write.writer),
                    "data": Part { write, part, parts }.data(),
                })
            })
            .collect();
        let body = if parts == 1 {
            events[0].clone()
        } else {
            json!({ "events": events })
        };
        let Ok(response) = http
            .post(format!("{url}/v1/events"))
            .json(&body)
            .send()
            .await
        else {
            return;
        };
        if response.status().as_u16() != 201 {
            return;
        }
        let Ok(answer) = response.json::<Value>().await else {
            return;
        };
        let envelopes = answer["events"]
            .as_array()
            .expect("an acknowledged append lists its events");
        assert_eq!(
            envelopes.len(),
            parts,
            "the answer lists every event of the write"
        );
        let mut acknowledged = acknowledged.lock().expect("not poisoned");
        for envelope in envelopes {
            let seq = envelope["seq"].as_u64().expect("an envelope has a seq");
            let part = Part::from_event(envelope);
            assert!(
                acknowledged.insert(seq, part).is_none(),
                "seq {seq} acknowledged twice"
            );
        }
        index += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_cycles_under_8_writers_lose_no_acknowledged_event() {
    let cycles = count_from_env("SWARMLOG_KILL_CYCLES", CYCLES_DEFAULT);
    let dir = data_dir();
    let acknowledged: Acknowledged = Arc::default();
    for cycle in 0..cycles {
        let mut server = Server::start(dir.path(), &[]).await;
        let before = acknowledged.lock().expect("not poisoned").len();
        let highest = acknowledged
            .lock()
            .expect("not poisoned")
            .keys()
            .last()
            .copied();
        if let Some(highest) = highest {
            let head = server.head().await;
            assert!(
                head >= highest,
                "cycle {cycle}: the recovered head {head} is below the acknowledged seq {highest}"
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                tokio::spawn(write_until_killed(
                    server.url.clone(),
                    Write {
                        cycle,
                        writer,
                        index: 0,
                    },
                    acknowledged.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        // Let some writes through, then pull the plug at a point that differs per cycle,
        // with requests in flight.
        while acknowledged.lock().expect("not poisoned").len() == before {
            assert!(
                !writers.iter().all(|writer| writer.is_finished()),
                "cycle {cycle}: every writer stopped before one write was acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut rng = Rng(cycle as u64 * 0x2545_f491 + 17);
        tokio::time::sleep(Duration::from_millis(10 + rng.below(150))).await;
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.await.expect("a writer does not panic");
        }
        if cycle % 10 == 9 {
            eprintln!(
                "kill loop: {} of {cycles} cycles, {} events acknowledged",
                cycle + 1,
                acknowledged.lock().expect("not poisoned").len()
            );
        }
    }

    let mut server = Server::start(dir.path(), &[]).await;
    let events = server.replay("").await;
    server.stop();
    let acknowledged = acknowledged.lock().expect("not poisoned").clone();
    check_history(&events, &acknowledged, cycles);

    let (code, stdout, stderr) = cli(&[
        "--db",
        &dir.path().display().to_string(),
        "--json",
        "verify",
    ]);
    assert_eq!(code, 0, "swarmlog verify accepts the log: {stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("verify prints JSON");
    assert_eq!(
        report["last"].as_u64(),
        Some(events.len() as u64),
        "verify read every event: {report}"
    );
    eprintln!(
        "kill loop: {cycles} kill -9 cycles, {} events acknowledged, {} recovered, 0 lost",
        acknowledged.len(),
        events.len()
    );
}

/// Checks the recovered history against what was acknowledged.
fn check_history(events: &[Value], acknowledged: &BTreeMap<u64, Part>, cycles: usize) {
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert!(
        seqs.iter().copied().eq(1..=seqs.len() as u64),
        "the recovered seqs run from 1 with no gap and no duplicate"
    );
    let recovered: HashMap<u64, Part> = events
        .iter()
        .map(|event| (event["seq"].as_u64().expect("seq"), Part::from_event(event)))
        .collect();
    for (seq, part) in acknowledged {
        assert_eq!(
            recovered.get(seq),
            Some(part),
            "acknowledged seq {seq} survived with its content"
        );
    }
    // Each write is whole (its parts at consecutive seqs) and each writer's writes in a
    // cycle are 0, 1, 2, ... once each: nothing lost in the middle, nothing invented or doubled.
    let mut writes: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    let mut event = 0;
    while event < events.len() {
        let first = Part::from_event(&events[event]);
        assert_eq!(first.part, 0, "seq {} starts a write", event + 1);
        for part in 1..first.parts {
            let next = events
                .get(event + part)
                .map(Part::from_event)
                .unwrap_or_else(|| panic!("the write at seq {} is cut short", event + 1));
            assert_eq!(
                (next.write, next.part),
                (first.write, part),
                "the batch at seq {} is whole and not interleaved",
                event + 1
            );
        }
        assert!(
            first.write.cycle < cycles,
            "no write from a cycle that never ran"
        );
        writes
            .entry((first.write.cycle, first.write.writer))
            .or_default()
            .push(first.write.index);
        event += first.parts;
    }
    for ((cycle, writer), indexes) in writes {
        assert!(
            indexes.iter().copied().eq(0..indexes.len()),
            "cycle {cycle}, writer {writer}: its writes are a prefix of what it sent, once each: {indexes:?}"
        );
    }
}
