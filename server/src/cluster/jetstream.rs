//! The shared history on NATS JetStream: one stream holds the events (one message per
//! event, the stream sequence is the event's seq), a key-value bucket holds the writer's
//! lease.
//!
//! A message's payload is the event's record payload, exactly as the local log stores it;
//! its timestamp travels in the `Swarmlog-Ts` header. An append of several events is one
//! atomic batch (ADR-50: `Nats-Batch-Id`, `Nats-Batch-Sequence`, `Nats-Batch-Commit`), its
//! first message conditional on `Nats-Expected-Last-Sequence`, so a batch is stored whole
//! right after the sequence its writer's state reflects, or not at all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::kv;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::{HeaderMap, ServerAddr};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use swarmlog_log::{Record, RecordInput, Seq};

use super::history::{AppendError, History, HistoryError, Lease, Member};

/// The header holding an event's timestamp (milliseconds since the epoch).
const TIMESTAMP_HEADER: &str = "Swarmlog-Ts";
/// The lease's key in its bucket.
const LEASE_KEY: &str = "writer";
/// How long a publish waits for JetStream's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the history is and how it must be kept.
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// The NATS servers (`nats://HOST:PORT`).
    pub servers: Vec<String>,
    /// The stream's name (its subject is `swarmlog.<name>`, its lease bucket
    /// `<name>_writer`).
    pub stream: String,
    /// Replicas of the stream and the lease bucket; an existing stream with fewer is
    /// refused.
    pub replicas: usize,
    /// How long the writer's lease lasts without a renewal.
    pub lease_ttl: Duration,
}

/// The stream, its lease bucket and the connection to them.
pub struct JetStream {
    jetstream: async_nats::jetstream::Context,
    client: async_nats::Client,
    stream: String,
    subject: String,
    lease: kv::Store,
    /// Makes batch ids unique within the process.
    batches: AtomicU64,
    /// Makes batch ids unique across processes.
    nonce: u64,
}

impl JetStream {
    /// Connects, creates the stream and the lease bucket when missing, and refuses a
    /// stream whose configuration could lose acknowledged events.
    pub async fn open(config: &JetStreamConfig, name: &str) -> Result<JetStream, HistoryError> {
        let client = connect(&config.servers, name).await?;
        let mut jetstream = async_nats::jetstream::new(client.clone());
        jetstream.set_timeout(ACK_TIMEOUT);
        let subject = format!("swarmlog.{}", config.stream);
        // NATS may be starting with this node (JetStream answers a few seconds after its
        // servers): what fails for want of an answer is tried again for a while.
        patiently(|| ensure_stream(&jetstream, config, &subject)).await?;
        wait_until_stream_listens(&client, &subject).await?;
        // Connected by now: the server has told its limits.
        check_max_payload(&client)?;
        let lease = patiently(|| ensure_lease_bucket(&jetstream, config)).await?;
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 32;
        Ok(JetStream {
            jetstream,
            client,
            stream: config.stream.clone(),
            subject,
            lease,
            batches: AtomicU64::new(0),
            nonce,
        })
    }

    /// Sends one batch; the returned future gives JetStream's acknowledgement of it.
    async fn send(
        &self,
        expected_last: u64,
        batch: &[RecordInput<'_>],
    ) -> Result<PublishAckFuture, AppendError> {
        let Some((last, first)) = batch.split_last() else {
            return Err(AppendError::Refused("an empty batch".into()));
        };
        let batch_id = (!first.is_empty()).then(|| {
            let number = self.batches.fetch_add(1, Ordering::Relaxed);
            format!("{:x}-{number:x}", self.nonce)
        });
        for (index, record) in first.iter().enumerate() {
            let mut headers = record_headers(record);
            if index == 0 {
                headers.insert("Nats-Expected-Last-Sequence", expected_last.to_string());
            }
            add_batch_headers(&mut headers, batch_id.as_deref(), index + 1, false);
            self.client
                .publish_with_headers(
                    self.subject.clone(),
                    headers,
                    Bytes::copy_from_slice(record.payload),
                )
                .await
                .map_err(|error| AppendError::Unconfirmed(error.to_string()))?;
        }
        let mut headers = record_headers(last);
        if first.is_empty() {
            headers.insert("Nats-Expected-Last-Sequence", expected_last.to_string());
        }
        add_batch_headers(&mut headers, batch_id.as_deref(), batch.len(), true);
        let message = PublishMessage::build()
            .headers(headers)
            .payload(Bytes::copy_from_slice(last.payload));
        self.jetstream
            .send_publish(self.subject.clone(), message)
            .await
            .map_err(|error| publish_error(expected_last, error))
    }
}

impl History for JetStream {
    async fn append(
        &self,
        expected_last: u64,
        batches: &[&[RecordInput<'_>]],
    ) -> Result<(), (usize, AppendError)> {
        // Every batch is sent before any acknowledgement is awaited: JetStream takes them
        // in order, and each one expects the sequence the previous one ends at, so a
        // refused batch refuses every batch after it too.
        let mut pending = Vec::with_capacity(batches.len());
        let mut last = expected_last;
        let mut failure = None;
        for (index, batch) in batches.iter().enumerate() {
            match self.send(last, batch).await {
                Ok(ack) => pending.push((ack, last, last + batch.len() as u64)),
                Err(error) => {
                    failure = Some((index, error));
                    break;
                }
            }
            last += batch.len() as u64;
        }
        for (index, (ack, expected, end)) in pending.into_iter().enumerate() {
            match ack.await {
                Ok(ack) if ack.sequence == end => {}
                Ok(ack) => {
                    // JetStream checked the expected sequence, so this cannot happen
                    // unless the stream is not the one this node mirrors.
                    return Err((
                        index,
                        AppendError::Unconfirmed(format!(
                            "the batch ending at {end} was stored ending at {}",
                            ack.sequence
                        )),
                    ));
                }
                Err(error) => return Err((index, publish_error(expected, error))),
            }
        }
        failure.map_or(Ok(()), Err)
    }

    async fn last_seq(&self) -> Result<u64, HistoryError> {
        last_sequence(&self.jetstream, &self.stream).await
    }

    fn follow(&self, from: u64) -> BoxStream<'static, Result<Record, HistoryError>> {
        follow_stream(self.jetstream.clone(), self.stream.clone(), from)
    }

    async fn lease(&self) -> Result<Option<Lease>, HistoryError> {
        let entry = self
            .lease
            .entry(LEASE_KEY)
            .await
            .map_err(|error| HistoryError::new("cannot read the writer's lease", error))?;
        Ok(entry
            .filter(|entry| entry.operation == kv::Operation::Put)
            .and_then(|entry| {
                let holder = serde_json::from_slice(&entry.value).ok()?;
                Some(Lease {
                    holder,
                    revision: entry.revision,
                })
            }))
    }

    async fn claim(&self, me: &Member) -> Result<Option<u64>, HistoryError> {
        match self.lease.create(LEASE_KEY, member_value(me)).await {
            Ok(revision) => Ok(Some(revision)),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(error) => Err(HistoryError::new("cannot claim the writer's lease", error)),
        }
    }

    async fn renew(&self, me: &Member, revision: u64) -> Result<Option<u64>, HistoryError> {
        match self
            .lease
            .update(LEASE_KEY, member_value(me), revision)
            .await
        {
            Ok(revision) => Ok(Some(revision)),
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(error) => Err(HistoryError::new("cannot renew the writer's lease", error)),
        }
    }

    async fn release(&self, _me: &Member, revision: u64) {
        if let Err(error) = self
            .lease
            .delete_expect_revision(LEASE_KEY, Some(revision))
            .await
        {
            tracing::debug!(%error, "the writer's lease was not released (it ran out or moved on)");
        }
    }
}

/// The last sequence of the stream `name` (0 when it is empty).
async fn last_sequence(
    jetstream: &async_nats::jetstream::Context,
    name: &str,
) -> Result<u64, HistoryError> {
    let stream = jetstream
        .get_stream(name)
        .await
        .map_err(|error| HistoryError::new(&format!("cannot open the stream '{name}'"), error))?;
    let info = stream
        .get_info()
        .await
        .map_err(|error| HistoryError::new("cannot read the stream's state", error))?;
    Ok(info.state.last_sequence)
}

/// Every record of the stream `name` from sequence `from` on, through an ordered consumer;
/// ends with an error when the stream cannot be read.
fn follow_stream(
    jetstream: async_nats::jetstream::Context,
    name: String,
    from: u64,
) -> BoxStream<'static, Result<Record, HistoryError>> {
    let messages = async move {
        let stream = jetstream
            .get_stream(&name)
            .await
            .map_err(|error| HistoryError::new("cannot open the stream", error))?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: from.max(1),
                },
                ..Default::default()
            })
            .await
            .map_err(|error| HistoryError::new("cannot follow the stream", error))?;
        consumer
            .messages()
            .await
            .map_err(|error| HistoryError::new("cannot follow the stream", error))
    };
    futures::stream::once(messages)
        .map(|opened| match opened {
            Ok(messages) => messages
                .map(|message| {
                    let message = message.map_err(|error| {
                        HistoryError::new("the stream's consumer failed", error)
                    })?;
                    record_of(&message)
                })
                .boxed(),
            Err(error) => futures::stream::once(async move { Err(error) }).boxed(),
        })
        .flatten()
        .boxed()
}

/// Connects to the first server that answers, retrying for a while: the cluster may be
/// starting at the same time.
async fn connect(servers: &[String], name: &str) -> Result<async_nats::Client, HistoryError> {
    let addresses = servers
        .iter()
        .map(|server| server.parse::<ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| HistoryError::new("a --store address is not a NATS URL", error))?;
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(addresses)
        .await
        .map_err(|error| HistoryError::new("cannot connect to NATS", error))
}

/// The room an event needs in a message beyond the request body it came in: its envelope's
/// other fields (type, stream, actor, meta, hash, ...) and the message's headers.
const EVENT_OVERHEAD_BYTES: usize = 64 * 1024;

/// Refuses a NATS whose `max_payload` cannot hold the largest event a request may write.
fn check_max_payload(client: &async_nats::Client) -> Result<(), HistoryError> {
    let body = swarmlog_projections::limits::current().request_body_bytes_max;
    let needed = body + EVENT_OVERHEAD_BYTES;
    let max_payload = client.server_info().max_payload;
    if max_payload < needed {
        return Err(HistoryError(format!(
            "NATS takes messages of at most {max_payload} bytes (max_payload), and an event can take {needed} \
             (a {body}-byte body and its envelope): set `max_payload: 8MB` on every NATS server, or lower --max-body-bytes"
        )));
    }
    Ok(())
}

/// How long a new stream may take to listen on its subject from every server.
const STREAM_LISTENS_WITHIN: Duration = Duration::from_secs(15);

/// Waits until publishes to `subject` reach the stream: right after a stream is created,
/// the server this client is connected to may not know yet that the stream listens, and
/// answers "no responders" (a plain publish would be dropped without a word). The probe
/// expects the stream's last sequence to be `u64::MAX`, which the stream refuses without
/// storing anything.
async fn wait_until_stream_listens(
    client: &async_nats::Client,
    subject: &str,
) -> Result<(), HistoryError> {
    let started = std::time::Instant::now();
    loop {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Expected-Last-Sequence", u64::MAX.to_string());
        match client
            .request_with_headers(subject.to_owned(), headers, Bytes::new())
            .await
        {
            Ok(_) => return Ok(()),
            Err(error) if started.elapsed() >= STREAM_LISTENS_WITHIN => {
                return Err(HistoryError::new(
                    &format!("the stream does not answer on {subject}"),
                    error,
                ))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// How long a node waits at start-up for JetStream to answer.
const STARTUP_PATIENCE: Duration = Duration::from_secs(30);

/// Runs `attempt` until it succeeds, fails for good ([`Setup::Unsafe`]), or
/// [`STARTUP_PATIENCE`] has passed: NATS may be starting, or a server that just restarted
/// may not answer for JetStream yet.
async fn patiently<T, E, F, A>(mut attempt: A) -> Result<T, HistoryError>
where
    A: FnMut() -> F,
    F: std::future::Future<Output = Result<T, E>>,
    E: Into<Setup>,
{
    let deadline = std::time::Instant::now() + STARTUP_PATIENCE;
    loop {
        match attempt().await.map_err(Into::into) {
            Ok(value) => return Ok(value),
            Err(Setup::Unavailable(error)) if std::time::Instant::now() < deadline => {
                tracing::warn!(%error, "JetStream does not answer yet; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(Setup::Unavailable(error) | Setup::Unsafe(error)) => return Err(error),
        }
    }
}

/// Why JetStream could not be set up or read.
enum Setup {
    /// It cannot keep the history safely: final.
    Unsafe(HistoryError),
    /// JetStream did not answer (yet).
    Unavailable(HistoryError),
}

impl From<HistoryError> for Setup {
    /// A plain failure to set up or read is JetStream not answering (yet).
    fn from(error: HistoryError) -> Self {
        Setup::Unavailable(error)
    }
}

/// Creates the stream when missing; checks an existing one.
async fn ensure_stream(
    jetstream: &async_nats::jetstream::Context,
    config: &JetStreamConfig,
    subject: &str,
) -> Result<(), Setup> {
    let wanted = stream::Config {
        name: config.stream.clone(),
        subjects: vec![subject.to_owned()],
        storage: StorageType::File,
        num_replicas: config.replicas,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::New,
        allow_atomic_publish: true,
        deny_delete: true,
        deny_purge: true,
        description: Some("swarmlog's shared history: one message per event".into()),
        ..Default::default()
    };
    // Several nodes may start at once: creating an identical stream is idempotent, and
    // a stream that exists is checked below either way.
    let mut stream = match jetstream.get_stream(&config.stream).await {
        Ok(stream) => stream,
        Err(_) => jetstream.create_stream(wanted).await.map_err(|error| {
            Setup::Unavailable(HistoryError::new(
                &format!("cannot create the stream '{}'", config.stream),
                error,
            ))
        })?,
    };
    let info = stream
        .info()
        .await
        .map_err(|error| Setup::Unavailable(HistoryError::new("cannot read the stream", error)))?;
    match unsafe_setting(info, config, subject) {
        Some(setting) => Err(Setup::Unsafe(HistoryError(format!(
            "refusing the stream '{}': {setting}",
            config.stream
        )))),
        None => Ok(()),
    }
}

/// The first setting of an existing stream that could lose or reorder acknowledged
/// events, as a sentence; `None` when the stream is safe to keep the history in.
pub fn unsafe_setting(
    info: &stream::Info,
    config: &JetStreamConfig,
    subject: &str,
) -> Option<String> {
    let stream = &info.config;
    if stream.storage != StorageType::File {
        return Some("its storage is memory, which a restart of NATS empties; the history needs `storage: file`".into());
    }
    if stream.num_replicas < config.replicas {
        return Some(format!(
            "it has {} replica(s), fewer than the {} asked for (--nats-replicas); one server's loss could lose acknowledged events",
            stream.num_replicas, config.replicas
        ));
    }
    if stream.retention != RetentionPolicy::Limits {
        return Some(
            "its retention is not `limits`: it deletes messages once they are consumed".into(),
        );
    }
    let limited = stream.max_messages > 0
        || stream.max_bytes > 0
        || stream.max_age > Duration::ZERO
        || stream.max_messages_per_subject > 0;
    if limited && stream.discard == DiscardPolicy::Old {
        return Some("it has a limit (max_msgs, max_bytes, max_age or max_msgs_per_subject) with `discard: old`, which deletes the oldest events".into());
    }
    if !stream.allow_atomic_publish {
        return Some(
            "it does not allow atomic batch publishing (`allow_atomic: true`, NATS 2.12 or newer)"
                .into(),
        );
    }
    if stream.mirror.is_some()
        || stream
            .sources
            .as_ref()
            .is_some_and(|sources| !sources.is_empty())
    {
        return Some("it is a mirror or sources other streams, so others write into it".into());
    }
    if !stream.subjects.iter().any(|bound| bound == subject) {
        return Some(format!("it does not take the subject `{subject}`"));
    }
    let state = &info.state;
    if state.messages > 0 && (state.first_sequence != 1 || state.messages != state.last_sequence) {
        return Some(format!(
            "its messages are not sequences 1 to {} without gaps (first {}, {} messages): events were deleted",
            state.last_sequence, state.first_sequence, state.messages
        ));
    }
    None
}

/// Creates the lease bucket when missing.
async fn ensure_lease_bucket(
    jetstream: &async_nats::jetstream::Context,
    config: &JetStreamConfig,
) -> Result<kv::Store, HistoryError> {
    let bucket = format!("{}_writer", config.stream);
    if let Ok(store) = jetstream.get_key_value(&bucket).await {
        return Ok(store);
    }
    jetstream
        .create_key_value(kv::Config {
            bucket: bucket.clone(),
            description: "the swarmlog writer's lease".into(),
            history: 1,
            max_age: config.lease_ttl,
            storage: StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        })
        .await
        .map_err(|error| {
            HistoryError::new(&format!("cannot create the lease bucket '{bucket}'"), error)
        })
}

/// The headers every event's message carries.
fn record_headers(record: &RecordInput<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(TIMESTAMP_HEADER, record.timestamp_ms.to_string());
    headers
}

/// The atomic batch headers of the message at `position` (from 1), if the batch has more
/// than one message.
fn add_batch_headers(
    headers: &mut HeaderMap,
    batch_id: Option<&str>,
    position: usize,
    commit: bool,
) {
    if let Some(batch_id) = batch_id {
        headers.insert("Nats-Batch-Id", batch_id);
        headers.insert("Nats-Batch-Sequence", position.to_string());
        if commit {
            headers.insert("Nats-Batch-Commit", "1");
        }
    }
}

/// What a failed publish means for the batch.
fn publish_error(
    expected: u64,
    error: async_nats::jetstream::context::PublishError,
) -> AppendError {
    match error.kind() {
        PublishErrorKind::WrongLastSequence => AppendError::Conflict { expected },
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
            AppendError::Unconfirmed(error.to_string())
        }
        _ => AppendError::Refused(error.to_string()),
    }
}

/// The value of the lease key: the holder.
fn member_value(me: &Member) -> Bytes {
    Bytes::from(serde_json::to_vec(me).expect("a member of two strings always serializes"))
}

/// A stream message as a record of the history.
fn record_of(message: &async_nats::jetstream::Message) -> Result<Record, HistoryError> {
    let info = message
        .info()
        .map_err(|error| HistoryError::new("a stream message has no metadata", error))?;
    if info.stream_sequence == 0 {
        return Err(HistoryError("a stream message has sequence 0".into()));
    }
    let seq = Seq(info.stream_sequence);
    let timestamp_ms = message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(TIMESTAMP_HEADER))
        .and_then(|value| value.as_str().parse::<i64>().ok())
        .ok_or_else(|| {
            HistoryError(format!(
                "stream message {} has no {TIMESTAMP_HEADER} header: it was not written by swarmlog",
                info.stream_sequence
            ))
        })?;
    Ok(Record {
        seq,
        timestamp_ms,
        payload: message.payload.to_vec(),
    })
}

/// What `verify --store` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReport {
    /// Events checked.
    pub records: u64,
    /// The first seq (`None` when the stream is empty).
    pub first: Option<u64>,
    /// The last seq.
    pub last: Option<u64>,
    /// The hash of the last event (the genesis hash when empty), hex.
    pub head_hash: String,
}

/// Reads every event of the stream and checks it: sequences 1 to the last without a gap,
/// each message a decodable event, each hash chained to the one before. `progress` gets
/// (checked, total) now and then.
pub async fn verify(
    servers: &[String],
    stream: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<StreamReport, HistoryError> {
    use swarmlog_projections::{Envelope, GENESIS_HASH};
    let client = connect(servers, "swarmlog-verify").await?;
    let jetstream = async_nats::jetstream::new(client);
    let last = patiently(|| last_sequence(&jetstream, stream)).await?;
    let mut previous = GENESIS_HASH;
    let mut checked = 0u64;
    progress(0, last);
    // A server that just restarted may not answer for a while: reading starts again
    // after the last event checked, for as long as start-up would wait.
    let deadline = std::time::Instant::now() + STARTUP_PATIENCE;
    while checked < last {
        let mut records = follow_stream(jetstream.clone(), stream.to_owned(), checked + 1);
        while checked < last {
            let record = match records.next().await {
                Some(Ok(record)) => record,
                failure => {
                    let error = match failure {
                        Some(Err(error)) => error,
                        _ => HistoryError(format!(
                            "the stream ended after {checked} of {last} events"
                        )),
                    };
                    if std::time::Instant::now() >= deadline {
                        return Err(error);
                    }
                    tracing::warn!(%error, checked, "reading the stream again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            };
            let seq = record.seq.get();
            if seq != checked + 1 {
                return Err(HistoryError(format!(
                    "the stream has sequence {seq} after {checked}: events are missing"
                )));
            }
            let envelope = Envelope::decode(seq, record.timestamp_ms, &record.payload)
                .map_err(|error| HistoryError(format!("event {seq} does not decode: {error}")))?;
            let computed = envelope.compute_hash(&previous);
            if computed != envelope.hash {
                return Err(HistoryError(format!(
                    "event {seq}'s hash is {} but its content and the previous hash give {}: the chain is broken",
                    envelope.hash_hex(),
                    hex::encode(computed)
                )));
            }
            previous = envelope.hash;
            checked = seq;
            if checked.is_multiple_of(1024) || checked == last {
                progress(checked, last);
            }
        }
    }
    Ok(StreamReport {
        records: checked,
        first: (checked > 0).then_some(1),
        last: (checked > 0).then_some(checked),
        head_hash: hex::encode(previous),
    })
}
