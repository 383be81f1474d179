//! The accept loop when the process has no file descriptor left (issue #9, defect 1):
//! `accept` fails with EMFILE while the listener stays readable, and the loop must back
//! off instead of spinning or giving up, then serve the waiting client once a descriptor
//! is free. A test binary of its own, because it exhausts the descriptors of its whole
//! process, which would break any test running beside it.

use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use swarmlog_server::net::{serve_connections, NetworkStats};
use swarmlog_server::NetworkConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Lowers this process's soft descriptor limit, so that filling it is quick.
fn lower_descriptor_limit(soft: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write one rlimit struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = soft.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn accept_backs_off_while_descriptors_are_exhausted_and_recovers() {
    lower_descriptor_limit(256);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a listener");
    let address = listener.local_addr().expect("its address");
    let router = Router::new().route("/healthz", get(|| async { "ok" }));
    let stats = Arc::new(NetworkStats::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_connections(
        listener,
        router,
        NetworkConfig::default(),
        NonZeroUsize::new(16).expect("not zero"),
        stats.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    // Fill the descriptor table, then free one for the client's socket: the server's
    // accept of that client finds none.
    let mut hogs = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => hogs.push(file),
            Err(error) => {
                assert_eq!(error.raw_os_error(), Some(libc::EMFILE), "{error}");
                break;
            }
        }
    }
    drop(hogs.pop());
    let mut client = tokio::net::TcpStream::connect(address)
        .await
        .expect("the kernel completes the handshake before accept");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let failures = stats.accept_errors.load(Ordering::Relaxed);
    assert!(failures >= 1, "accept ran out of descriptors");
    // A loop that spins retries thousands of times a second; the back-off doubles from
    // 10 ms, so it retries about seven times in the first second.
    assert!(
        failures <= 20,
        "accept failed {failures} times in one second: it spins"
    );
    drop(hogs);
    client
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("the request is sent");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut answer))
        .await
        .expect("answered once descriptors are free")
        .expect("read");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(stats.accepted.load(Ordering::Relaxed), 1);
    let _ = stop.send(());
    server.await.expect("the accept loop ends cleanly");
}
