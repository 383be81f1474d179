//! [`NatsCluster`]: a real nats-server cluster with JetStream on loopback, started by the test
//! that needs it, for the cluster mode (several `swarmlog serve` sharing one history in a
//! JetStream stream).
//!
//! Each node is a `nats-server` child process with a config file, a JetStream store and a
//! log file of its own in the cluster's temporary directory. Nodes are numbered from 0 in
//! the methods and named `n1`, `n2`, ... in NATS (server names, stream leaders, replicas).

#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::hash::BuildHasher as _;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use tempfile::TempDir;

use crate::binary::nats_server_binary;

/// How long the nodes get to listen and JetStream to become usable cluster-wide.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a node gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many lines of a node's log a panic message shows.
const LOG_TAIL_LINES: usize = 30;

/// A running nats-server cluster; dropping it kills every node and removes its files (kept,
/// with their path printed, when the test is panicking, for the node logs).
pub struct NatsCluster {
    nodes: Vec<Node>,
    /// Configs, JetStream stores and logs of all the nodes.
    dir: TempDir,
    /// Held while the cluster lives: one cluster at a time per test process, so that the
    /// timings the tests rely on (leases of a second, NATS elections) do not stretch with
    /// several 3-node clusters and their swarmlog nodes sharing two cores.
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

/// Whose turn it is to run a cluster (see [`NatsCluster`]).
static TURN: std::sync::OnceLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
    std::sync::OnceLock::new();

/// One nats-server of the cluster.
struct Node {
    /// The server name, `n1`, `n2`, ...
    name: String,
    /// The port of its client listener on 127.0.0.1.
    client_port: u16,
    /// Its config file: the same on every start, so a restart keeps its identity and data.
    config: PathBuf,
    /// Where its stdout and stderr go, appended to across restarts.
    log: PathBuf,
    /// The running process, if any.
    process: Option<Child>,
}

impl NatsCluster {
    /// Starts a cluster of `size` nodes on free loopback ports, configured as swarmlog's
    /// README says (`sync_interval: always`, `max_payload: 8MB`), and returns once
    /// JetStream accepts a stream replicated on every node.
    pub async fn start(size: usize) -> NatsCluster {
        NatsCluster::start_with(size, "max_payload: 8MB\n").await
    }

    /// Like [`NatsCluster::start`], with `extra` (lines of NATS configuration) in place of
    /// the `max_payload` setting.
    pub async fn start_with(size: usize, extra: &str) -> NatsCluster {
        assert!(size > 0, "a NATS cluster needs at least one node");
        let turn = TURN
            .get_or_init(Default::default)
            .clone()
            .lock_owned()
            .await;
        let binary = nats_server_binary();
        let dir = tempfile::Builder::new()
            .prefix("swarmlog-nats-")
            .tempdir()
            .expect("a temporary directory for the NATS cluster");
        let ports = free_ports(2 * size);
        let (client_ports, route_ports) = ports.split_at(size);
        let nodes = (0..size)
            .map(|i| Node::configure(dir.path(), i, client_ports[i], route_ports, extra))
            .collect();
        let mut cluster = NatsCluster {
            nodes,
            dir,
            _turn: turn,
        };
        for node in &mut cluster.nodes {
            node.spawn(&binary);
        }
        cluster.wait_until_ready().await;
        cluster
    }

    /// The client URL of every node, comma-separated, to name the whole cluster in one
    /// command-line argument: `nats://127.0.0.1:a,nats://127.0.0.1:b,nats://127.0.0.1:c`.
    pub fn urls(&self) -> String {
        self.url_list().join(",")
    }

    /// The client URL of every node, as async-nats connects to a list of servers.
    pub fn url_list(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// The client URL of node `i`: `nats://127.0.0.1:PORT`.
    pub fn url(&self, i: usize) -> String {
        self.node(i).url()
    }

    /// The server name of node `i` (`n{i+1}`), as JetStream reports leaders and replicas.
    pub fn name(&self, i: usize) -> &str {
        &self.node(i).name
    }

    /// The index of the node with server name `name`, e.g. of a stream's leader.
    pub fn index_of(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|node| node.name == name)
            .unwrap_or_else(|| panic!("the NATS cluster has no node named {name:?}"))
    }

    /// A client connected to the cluster: it knows every node and fails over between them.
    pub async fn connect(&self) -> async_nats::Client {
        async_nats::connect(self.url_list())
            .await
            .unwrap_or_else(|error| panic!("could not connect to {}: {error}", self.urls()))
    }

    /// Kills node `i` with SIGKILL, as a crash would, and reaps it.
    pub fn kill9(&mut self, i: usize) {
        self.node_mut(i).kill();
    }

    /// Starts node `i` again, after [`NatsCluster::kill9`] or [`NatsCluster::stop_all`],
    /// with the same config and JetStream store, and returns once it answers clients. It
    /// rejoins the cluster and catches up by itself: callers wait for what they need, e.g.
    /// [`NatsCluster::wait_until_ready`] or a stream replica reported current.
    pub async fn restart(&mut self, i: usize) {
        let binary = nats_server_binary();
        let node = self.node_mut(i);
        assert!(
            node.process.is_none(),
            "node {} is still running: kill or stop it before restarting it",
            node.name
        );
        node.spawn(&binary);
        node.wait_answering(Instant::now() + READY_TIMEOUT).await;
    }

    /// Stops every running node the orderly way (SIGTERM, then SIGKILL after
    /// [`STOP_TIMEOUT`]); their stores stay for [`NatsCluster::restart`].
    pub fn stop_all(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
    }

    /// Waits until every node answers clients and JetStream can create and delete a stream
    /// replicated on all of them (so a meta leader is elected and every node is a current
    /// peer), or panics with the node logs after [`READY_TIMEOUT`].
    pub async fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        for node in &mut self.nodes {
            node.wait_answering(deadline).await;
        }
        let mut context = jetstream::new(self.connect().await);
        context.set_timeout(Duration::from_secs(1));
        let probe = stream::Config {
            name: "SWARMLOG_TEST_READY_PROBE".to_owned(),
            num_replicas: self.nodes.len(),
            storage: stream::StorageType::Memory,
            ..Default::default()
        };
        loop {
            for node in &mut self.nodes {
                node.check_running();
            }
            let outcome = match context.create_stream(probe.clone()).await {
                Ok(_) => context
                    .delete_stream(&probe.name)
                    .await
                    .map(|_| ())
                    .map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match outcome {
                Ok(()) => return,
                Err(error) if Instant::now() > deadline => panic!(
                    "JetStream did not become usable on all {} nodes within {READY_TIMEOUT:?} \
                     (last error: {error})\n{}",
                    self.nodes.len(),
                    self.log_tails()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// The end of every node's log, for panic messages.
    pub fn log_tails(&self) -> String {
        self.nodes.iter().map(Node::log_tail).collect()
    }

    fn node(&self, i: usize) -> &Node {
        let size = self.nodes.len();
        self.nodes
            .get(i)
            .unwrap_or_else(|| panic!("node {i} of a NATS cluster of {size}"))
    }

    fn node_mut(&mut self, i: usize) -> &mut Node {
        let size = self.nodes.len();
        self.nodes
            .get_mut(i)
            .unwrap_or_else(|| panic!("node {i} of a NATS cluster of {size}"))
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "the NATS cluster's configs, stores and logs are kept in {:?}",
                self.dir.path()
            );
        }
    }
}

impl Node {
    /// Writes the config of node `i` in `dir`: its client port, its route port among
    /// `route_ports` (every node's, all of them routes) and a JetStream store of its own that
    /// syncs every write to disk, so a kill -9 loses nothing the node acknowledged.
    fn configure(dir: &Path, i: usize, client_port: u16, route_ports: &[u16], extra: &str) -> Node {
        let name = format!("n{}", i + 1);
        let store = dir.join(&name);
        let routes: Vec<String> = route_ports
            .iter()
            .map(|port| format!("    nats-route://127.0.0.1:{port}"))
            .collect();
        let config_text = format!(
            "server_name: {name}\n\
             listen: 127.0.0.1:{client_port}\n\
             cluster {{\n  name: swarmlog-test\n  listen: 127.0.0.1:{route_port}\n  \
             routes: [\n{routes}\n  ]\n}}\n\
             jetstream {{\n  store_dir: {store:?}\n  sync_interval: always\n}}\n\
             {extra}",
            route_port = route_ports[i],
            routes = routes.join("\n"),
        );
        let config = dir.join(format!("{name}.conf"));
        fs::write(&config, config_text)
            .unwrap_or_else(|error| panic!("could not write {config:?}: {error}"));
        Node {
            log: dir.join(format!("{name}.log")),
            name,
            client_port,
            config,
            process: None,
        }
    }

    /// Starts the nats-server process, its output appended to the node's log.
    fn spawn(&mut self, binary: &Path) {
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|error| panic!("could not open {:?}: {error}", self.log));
        writeln!(log, "==== swarmlog test: starting {}", self.name).ok();
        let stderr = log
            .try_clone()
            .unwrap_or_else(|error| panic!("could not share {:?}: {error}", self.log));
        let process = Command::new(binary)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("could not start {binary:?} for {}: {error}", self.name)
            });
        self.process = Some(process);
    }

    /// The node's client URL.
    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    /// Waits until the node answers a NATS client under its own server name, or panics with
    /// its log if it exits, if another server answers on its port, or if `deadline` passes.
    async fn wait_answering(&mut self, deadline: Instant) {
        loop {
            self.check_running();
            if let Ok(client) = async_nats::connect(self.url()).await {
                let answering = client.server_info().server_name;
                assert!(
                    answering == self.name,
                    "{} answers as {answering:?}, not {}: another process has its port",
                    self.url(),
                    self.name
                );
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "node {} did not answer on {} within {READY_TIMEOUT:?}\n{}",
                    self.name,
                    self.url(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Panics with the node's log if its process is not running (it exited, e.g. because
    /// its port was taken).
    fn check_running(&mut self) {
        let exited = match self.process.as_mut() {
            Some(process) => process.try_wait().ok().flatten(),
            None => panic!("node {} is not running", self.name),
        };
        if let Some(status) = exited {
            self.process = None;
            panic!(
                "node {} exited with {status}\n{}",
                self.name,
                self.log_tail()
            );
        }
    }

    /// Kills the process with SIGKILL and reaps it; nothing if it is not running.
    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            // An error here means the process already exited, which is what we want.
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Asks the process to shut down with SIGTERM and reaps it, killing it if it takes longer
    /// than [`STOP_TIMEOUT`]; nothing if it is not running.
    fn stop(&mut self) {
        let Some(process) = self.process.as_mut() else {
            return;
        };
        let pid = libc::pid_t::try_from(process.id()).expect("a process id fits in pid_t");
        // SAFETY: kill only sends a signal to our own child, which is not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = process.try_wait() {
                self.process = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// The last [`LOG_TAIL_LINES`] lines of the node's log, under a heading.
    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        format!("---- end of {:?}:\n{}\n", self.log, tail.join("\n"))
    }
}

/// Where the nodes' ports are picked: below Linux's ephemeral range (32768 and up), from
/// which the kernel hands out the local ports of outgoing connections and of `bind` to port
/// 0. A node's port taken from there could be grabbed, between the pick and the node's
/// bind or between a kill and a restart, by any connection on the machine (other nodes'
/// routes among them), and was in a parallel run.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// `count` TCP ports free on 127.0.0.1, picked at random in [`PORTS`] and checked by binding
/// them; never the same port twice in this process, so concurrent clusters of the test
/// binary and restarted nodes keep theirs.
fn free_ports(count: usize) -> Vec<u16> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let random = RandomState::new();
    let span = u64::from(PORTS.end - PORTS.start);
    let mut ports = Vec::with_capacity(count);
    for draw in 0u64.. {
        if ports.len() == count {
            break;
        }
        assert!(
            draw < 100_000,
            "no {count} free ports in {PORTS:?} on 127.0.0.1"
        );
        let offset = u16::try_from(random.hash_one(draw) % span).expect("below the span");
        let port = PORTS.start + offset;
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            ports.push(port);
        }
    }
    ports
}
