//! The test fixture: a `swarmlog serve` child process on a temporary data directory, and
//! small HTTP helpers around it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_swarmlog"))
}

/// A running server.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The data directory.
    pub dir: PathBuf,
    /// The HTTP client.
    pub http: reqwest::Client,
}

impl Server {
    /// Starts a server on `dir` with extra `serve` flags, and waits until it answers.
    pub async fn start(dir: &Path, extra: &[&str]) -> Server {
        Server::start_configured(dir, extra, |_| {}).await
    }

    /// Starts a server like [`Server::start`], after `configure` adjusted its command
    /// (resource limits, environment).
    pub async fn start_configured(
        dir: &Path,
        extra: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        let address_file = dir.join("server.addr");
        let _ = std::fs::remove_file(&address_file);
        let mut command = Command::new(binary());
        command
            .arg("--db")
            .arg(dir)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("SWARMLOG_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        configure(&mut command);
        let child = command.spawn().expect("the swarmlog binary starts");
        let mut server = Server {
            child: Some(child),
            url: String::new(),
            dir: dir.to_path_buf(),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                panic!("swarmlog serve exited early with {status}");
            }
            if let Ok(text) = std::fs::read_to_string(&address_file) {
                if let Some(url) = text
                    .lines()
                    .next()
                    .filter(|line| line.starts_with("http://"))
                {
                    server.url = url.trim().to_owned();
                    if server
                        .http
                        .get(format!("{}/healthz", server.url))
                        .send()
                        .await
                        .is_ok()
                    {
                        return server;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "swarmlog serve did not come up within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts a server like `start`, but finds its address in the line it prints on stdout,
    /// for a data directory where it cannot write `server.addr` (a full disk).
    pub async fn start_from_stdout(dir: &Path, extra: &[&str]) -> Server {
        use std::io::BufRead;
        let mut child = Command::new(binary())
            .arg("--db")
            .arg(dir)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("SWARMLOG_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the swarmlog binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Reads to the end, so the server never writes into a closed pipe.
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(at) = line.find("http://") {
                    let url = line[at..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    let _ = sender.send(url);
                }
            }
        });
        let url = receiver
            .recv_timeout(Duration::from_secs(30))
            .expect("swarmlog serve prints its address within 30 s");
        let server = Server {
            child: Some(child),
            url,
            dir: dir.to_path_buf(),
            http: reqwest::Client::new(),
        };
        let (status, _) = server.get("/healthz").await;
        assert_eq!(status, 200, "the server answers");
        server
    }

    /// Starts the server expecting it to refuse to start; returns its stderr.
    pub fn start_expecting_failure(dir: &Path) -> (i32, String) {
        let output = Command::new(binary())
            .arg("--db")
            .arg(dir)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .env("SWARMLOG_LOG", "warn")
            .output()
            .expect("the swarmlog binary runs");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// `POST path` with a JSON body; returns status and JSON.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_with(path, body, &[]).await
    }

    /// `POST path` with extra headers.
    pub async fn post_with(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.url)).json(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `POST path` with a raw body.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `GET path`; returns status and JSON.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The NDJSON replay of `query` as parsed events.
    pub async fn replay(&self, query: &str) -> Vec<Value> {
        let response = self
            .http
            .get(format!("{}/v1/events{query}", self.url))
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status().as_u16(), 200, "replay answers 200");
        let text = response.text().await.expect("a body");
        text.lines()
            .map(|line| serde_json::from_str(line).expect("each NDJSON line is JSON"))
            .collect()
    }

    /// The value of a metric as `GET /metrics` exports it: `name` with its labels, if any
    /// (`swarmlog_reads_total{path="published"}`).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .find_map(|line| {
                let (metric, value) = line.split_once(' ')?;
                (metric == name)
                    .then(|| value.trim().parse().ok())
                    .flatten()
            })
            .unwrap_or_else(|| panic!("{name} is exported: {text}"))
    }

    /// The committed head seq.
    pub async fn head(&self) -> u64 {
        self.get("/v1/audit/head").await.1["seq"]
            .as_u64()
            .expect("head has a seq")
    }

    /// Appends one custom event and returns its seq.
    pub async fn append(&self, stream: &str, data: Value) -> u64 {
        let (status, body) = self
            .post(
                "/v1/events",
                &serde_json::json!({"type": "test.event", "stream": stream, "data": data}),
            )
            .await;
        assert_eq!(status, 201, "append answers 201: {body}");
        body["seq"].as_u64().expect("append returns a seq")
    }

    /// SIGKILL: no shutdown, no flush, like a power cut for the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        child.wait().ok().and_then(|status| status.code())
    }
}

impl Server {
    /// The process id of the server, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `HOST:PORT` of the server, for raw sockets.
    pub fn address(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
    }

    /// Waits up to `limit` for the server to exit and returns its exit code; `None` (after
    /// killing it) when it is still running then, or was killed by a signal.
    pub fn wait_within(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            if Instant::now() >= deadline {
                self.kill9();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then [`Server::wait_within`] `limit`.
    pub fn stop_within(&mut self, limit: Duration) -> Option<i32> {
        self.terminate();
        self.wait_within(limit)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A fresh temporary data directory.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// Runs the CLI with `args`; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    cli_in(&std::env::current_dir().expect("a working directory"), args)
}

/// Runs the CLI with `args` in the working directory `dir` (where the default `./data`
/// is); returns (exit code, stdout, stderr).
pub fn cli_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env_remove("SWARMLOG_URL")
        .env_remove("SWARMLOG_DB")
        .output()
        .expect("the swarmlog binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The segment files of a data directory, in order.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .expect("the log directory exists")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    files.sort();
    files
}

impl Server {
    /// Sends `signal` to the server process (SIGHUP to reload its tokens, for instance).
    pub fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("the server is running");
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        let sent = unsafe { libc::kill(child.id() as i32, signal) };
        assert_eq!(sent, 0, "the signal was sent");
    }
}
