//! State reads while others write: a read answers durable state that holds every write
//! answered before it was sent, and most reads take the state the engine published at a
//! durable point instead of queueing behind the writes (`swarmlog_reads_total{path}`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{data_dir, Server};

const PUBLISHED: &str = "swarmlog_reads_total{path=\"published\"}";
const ENGINE: &str = "swarmlog_reads_total{path=\"engine\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_reads_its_answered_writes_while_others_write_and_read() {
    const WRITERS: usize = 16;
    const WRITES: u64 = 15;
    let dir = data_dir();
    let server = Arc::new(Server::start(dir.path(), &[]).await);
    let writing = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let server = server.clone();
            tokio::spawn(async move {
                for n in 1..=WRITES {
                    let cell = format!("/v1/state/rw-{writer}");
                    let (status, put) = server
                        .post(
                            &format!("{cell}/cas"),
                            &json!({
                                "expected_version": n - 1, "value": n
                            }),
                        )
                        .await;
                    assert!(status == 200 || status == 201, "{status} {put}");
                    let (status, read) = server.get(&cell).await;
                    assert_eq!(status, 200, "{read}");
                    assert_eq!(
                        (&read["value"], &read["version"]),
                        (&json!(n), &json!(n)),
                        "writer {writer} reads the cell it was answered for"
                    );
                    let task = format!("rw-{writer}-{n}");
                    let (status, created) = server
                        .post("/v1/tasks", &json!({"id": task, "type": "rw"}))
                        .await;
                    assert_eq!(status, 201, "{created}");
                    let (status, read) = server.get(&format!("/v1/tasks/{task}")).await;
                    assert_eq!(
                        status, 200,
                        "writer {writer} reads the task it created: {read}"
                    );
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..4)
        .map(|reader| {
            let (server, writing) = (server.clone(), writing.clone());
            tokio::spawn(async move {
                let mut last = 0;
                while writing.load(Ordering::Relaxed) {
                    let (status, read) = server.get(&format!("/v1/state/rw-{reader}")).await;
                    let version = match status {
                        200 => read["version"].as_u64().expect("a version"),
                        404 => 0,
                        other => panic!("reading a cell answered {other}: {read}"),
                    };
                    assert!(version >= last, "reads never go back in time");
                    last = version;
                    let (status, read) = server.get("/v1/tasks").await;
                    assert_eq!(status, 200, "{read}");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("every writer read its writes");
    }
    writing.store(false, Ordering::Relaxed);
    for reader in readers {
        reader.await.expect("the readers' reads went forward");
    }

    // Once the writes stop, the engine publishes its durable state and reads take it.
    let published = server.metric(PUBLISHED).await;
    let start = Instant::now();
    while server.metric(PUBLISHED).await == published {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no read took the published state"
        );
        let (status, read) = server.get("/v1/state/rw-0").await;
        assert_eq!((status, &read["version"]), (200, &json!(WRITES)), "{read}");
    }
    assert!(server.metric(ENGINE).await > 0.0);
    assert!(server.metric("swarmlog_state_publications_total").await > 0.0);
}
