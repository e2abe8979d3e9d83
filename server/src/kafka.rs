//! The Kafka source of `serve`: a consumer group over one or more topics whose offsets follow
//! durability.
//!
//! `enable.auto.offset.store = false`: a message's offset is stored only when the lake flush that
//! holds its events (or its quarantine record) has committed — the pipeline calls back — and the
//! stored offsets are committed right after that flush (and every `auto.commit.interval.ms`),
//! and before a partition is given up the rebalance callback flushes the lake and tries a
//! synchronous commit (brokers may refuse it mid-rebalance: then the partition's next owner
//! re-reads what was flushed since the last commit — nothing is lost; within one lake the dedup
//! key drops re-reads, across replicas' lakes they can repeat). After a crash the
//! group re-reads from the last committed offset; the writer's dedup key (cluster, audit_id,
//! stage) drops what was already in the lake. A message that does not decode is quarantined
//! with topic, partition and offset, and the partition moves on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auditlake_ingest::{DecodeOptions, Decoder, Pipeline, SourcePosition, SubmitError};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, ClientContext};

use crate::error::ServerError;
use crate::log;
use crate::metrics::{Metrics, PartitionLabel, TopicLabel};

#[derive(Debug, Clone)]
pub struct KafkaOptions {
    pub brokers: String,
    pub group_id: String,
    pub topics: Vec<String>,
    /// Cluster of a topic's events (default: `default_cluster`), unless the message carries the
    /// `cluster_header` header.
    pub topic_clusters: HashMap<String, String>,
    pub cluster_header: Option<String>,
    pub default_cluster: String,
    /// `kafka.cluster` was set: envelopes do not override it (see `DecodeOptions::envelope_cluster`).
    pub default_cluster_explicit: bool,
    /// librdkafka properties (TLS, SASL, …), passed through.
    pub properties: Vec<(String, String)>,
    /// One-shot (`auditlake ingest --kafka`): stop once every assigned partition has been read up
    /// to the high watermark it had when first assigned, then flush and commit.
    pub until_caught_up: bool,
}

/// For a one-shot read: where each assigned partition must get to, and where it is. A partition
/// is done when it has reached the high watermark it had when assigned *and* librdkafka has
/// reported reaching its end (partition EOF, from the fetch responses). Both, because some
/// Kafka-protocol brokers answer ListOffsets with a stale high watermark (tansu 0.6 counts
/// record batches there) while their fetch responses are right.
#[derive(Default)]
struct CatchUp {
    /// Partition numbers librdkafka reported EOF for (its event carries no topic).
    eof: std::collections::HashSet<i32>,
    /// High watermark when the partition was first assigned.
    target: HashMap<(String, i32), i64>,
    /// Next offset to read.
    position: HashMap<(String, i32), i64>,
}

impl CatchUp {
    /// Learns targets and start positions of newly assigned partitions; true when every
    /// assigned partition has reached its target.
    fn caught_up(&mut self, consumer: &BaseConsumer<Ctx>) -> bool {
        let Ok(assignment) = consumer.assignment() else {
            return false;
        };
        if assignment.count() == 0 {
            return false;
        }
        let new: Vec<(String, i32)> = assignment
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .filter(|k| !self.target.contains_key(k))
            .collect();
        if !new.is_empty() {
            // Broker round trips: only when the assignment grew.
            let committed = consumer.committed(Duration::from_secs(10)).ok();
            for key in new {
                let Ok((low, high)) =
                    consumer.fetch_watermarks(&key.0, key.1, Duration::from_secs(10))
                else {
                    return false;
                };
                let start = committed
                    .as_ref()
                    .and_then(|c| c.find_partition(&key.0, key.1))
                    .and_then(|p| p.offset().to_raw())
                    .filter(|o| *o >= 0)
                    .unwrap_or(low);
                self.target.insert(key.clone(), high);
                self.position.entry(key).or_insert(start);
            }
        }
        assignment.elements().iter().all(|e| {
            let key = (e.topic().to_owned(), e.partition());
            self.eof.contains(&e.partition())
                && self.position.get(&key).copied().unwrap_or(0) >= self.target[&key]
        })
    }

    fn consumed(&mut self, topic: &str, partition: i32, offset: i64) {
        self.position
            .insert((topic.to_owned(), partition), offset + 1);
    }
}

/// What the pipeline reported about submitted messages, waiting for the consumer thread.
#[derive(Default)]
struct Outcomes {
    /// (topic, partition, offset, epoch) of messages now in committed Parquet.
    durable: Vec<(String, i32, i64, u64)>,
    /// (topic, partition, offset, epoch) of messages lost from memory (the lake writer failed).
    lost: Vec<(String, i32, i64, u64)>,
}

type Durable = Arc<Mutex<Outcomes>>;

/// Per partition: bumped each time the partition is rewound after a loss; outcomes of messages
/// read before the rewind are ignored, so no offset is stored past a message not yet durable.
type Epochs = Arc<Mutex<HashMap<(String, i32), u64>>>;

struct Ctx {
    pipeline: Arc<Pipeline>,
    durable: Durable,
    epochs: Epochs,
    metrics: Arc<Metrics>,
    /// When the offsets handed to the last commit became durable.
    committing_since: Mutex<Option<std::time::Instant>>,
    /// Client and consumer errors, logged without their repeats.
    errors: Throttle,
}

/// librdkafka repeats an error for as long as its cause lasts (`AllBrokersDown` about 20 times
/// a second, both to the client's error callback and from `poll`, while no broker answers): each
/// distinct error is logged when first seen, then at most once a minute with how often it
/// recurred in between.
#[derive(Default)]
struct Throttle(Mutex<HashMap<String, (std::time::Instant, u64)>>);

impl Throttle {
    const EVERY: Duration = Duration::from_secs(60);
    /// Distinct errors remembered; past that the memory starts over (a few lines more, never
    /// unbounded growth from errors that carry offsets or addresses).
    const KEPT: usize = 64;

    /// `Some(repeats since the last line)` when this error is to be logged now.
    fn admit(&self, error: &str, now: std::time::Instant) -> Option<u64> {
        let mut seen = self.0.lock().expect("error throttle");
        match seen.get_mut(error) {
            Some((last, repeats)) if now.duration_since(*last) < Self::EVERY => {
                *repeats += 1;
                None
            }
            Some((last, repeats)) => {
                *last = now;
                Some(std::mem::take(repeats))
            }
            None => {
                if seen.len() >= Self::KEPT {
                    seen.clear();
                }
                seen.insert(error.to_owned(), (now, 0));
                Some(0)
            }
        }
    }

    fn log(&self, what: &str, detail: &str) {
        if let Some(repeated) = self.admit(detail, std::time::Instant::now()) {
            log::emit(&log::KafkaEvent {
                what,
                detail,
                repeated,
            });
        }
    }
}

impl ClientContext for Ctx {
    /// rdkafka's default writes every occurrence to the `log` crate; see [`Throttle`].
    /// librdkafka's own log lines (`FAIL` on an unreachable broker…) keep the default
    /// `ClientContext::log`: the `log` bridge gives them the `librdkafka` target, and librdkafka
    /// folds identical ones itself ("1 identical error(s) suppressed").
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.errors
            .log("client error", &format!("{error}: {reason}"));
    }

    fn stats(&self, stats: rdkafka::Statistics) {
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .kafka_consumer_lag
                        .get_or_create(&PartitionLabel {
                            topic: topic.clone(),
                            partition: *partition,
                        })
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &rdkafka::TopicPartitionList,
    ) {
        if result.is_ok()
            && let Some(since) = self.committing_since.lock().expect("commit clock").take()
        {
            self.metrics
                .kafka_flush_to_commit_seconds
                .observe(since.elapsed().as_secs_f64());
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            // Before another consumer takes these partitions: everything read is made durable
            // and its offsets committed, so the next owner starts exactly after it.
            flush_and_commit(
                consumer,
                &self.pipeline,
                &self.durable,
                &self.epochs,
                "revoke",
            );
        }
    }
}

/// Flushes the lake, stores the offsets of what is now durable and commits them synchronously
/// (before a revoke, and at shutdown). Failures are logged: only durable offsets are ever stored.
fn flush_and_commit(
    consumer: &BaseConsumer<Ctx>,
    pipeline: &Pipeline,
    durable: &Durable,
    epochs: &Epochs,
    when: &str,
) {
    if let Err(e) = pipeline.flush_now() {
        log::emit(&log::KafkaEvent {
            what: &format!("flush before {when} failed"),
            detail: &auditlake_ingest::error::chain(&e),
            repeated: 0,
        });
    }
    store_durable(consumer, durable, epochs);
    // NoOffset: nothing was read since the last commit — nothing to do, not a failure.
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync)
        && e.rdkafka_error_code() != Some(rdkafka::types::RDKafkaErrorCode::NoOffset)
    {
        log::emit(&log::KafkaEvent {
            what: &format!("commit before {when} failed"),
            detail: &e.to_string(),
            repeated: 0,
        });
    }
}

/// Stores the offsets of durable messages; rewinds partitions that lost messages to the first
/// lost offset (they are read again; dedup drops what is already in the lake).
fn store_durable(consumer: &BaseConsumer<Ctx>, durable: &Durable, epochs: &Epochs) -> bool {
    let Outcomes {
        durable: ready,
        lost,
    } = std::mem::take(&mut *durable.lock().expect("outcomes"));
    let mut epochs = epochs.lock().expect("epochs");
    let mut rewind: HashMap<(String, i32), i64> = HashMap::new();
    for (topic, partition, offset, epoch) in lost {
        let key = (topic, partition);
        if epochs.get(&key).copied().unwrap_or(0) == epoch {
            let first = rewind.entry(key).or_insert(offset);
            *first = (*first).min(offset);
        }
    }
    for ((topic, partition), offset) in &rewind {
        *epochs.entry((topic.clone(), *partition)).or_insert(0) += 1;
        let _ = consumer.seek(
            topic,
            *partition,
            rdkafka::Offset::Offset(*offset),
            Duration::from_secs(5),
        );
        log::emit(&log::KafkaEvent {
            what: "rewound after the lake lost unflushed data",
            detail: &format!("{topic}/{partition} to offset {offset}"),
            repeated: 0,
        });
    }
    let mut stored = false;
    for (topic, partition, offset, epoch) in ready {
        if epochs
            .get(&(topic.clone(), partition))
            .copied()
            .unwrap_or(0)
            != epoch
        {
            continue;
        }
        // Stores offset + 1 (the next to read); fails only for a partition no longer assigned,
        // whose new owner re-reads it (dedup keeps that harmless).
        stored |= consumer.store_offset(&topic, partition, offset).is_ok();
    }
    stored
}

/// What a consumer read before it stopped (what `auditlake ingest --kafka` reports).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KafkaSummary {
    pub messages: u64,
    pub events: u64,
    pub quarantined: u64,
}

/// Runs the consumer on its own thread until `stop` is set (or, with `until_caught_up`, until
/// it has read every partition to its end); the thread returns what it read.
pub fn start(
    opts: KafkaOptions,
    pipeline: Arc<Pipeline>,
    decode: DecodeOptions,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<KafkaSummary>, ServerError> {
    let durable: Durable = Arc::default();
    let epochs: Epochs = Arc::default();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &opts.brokers)
        .set("group.id", &opts.group_id)
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000");
    if opts.until_caught_up {
        config.set("enable.partition.eof", "true");
    }
    for (k, v) in &opts.properties {
        config.set(k, v);
    }
    let consumer: BaseConsumer<Ctx> = config
        .create_with_context(Ctx {
            pipeline: pipeline.clone(),
            durable: durable.clone(),
            epochs: epochs.clone(),
            metrics: metrics.clone(),
            committing_since: Mutex::new(None),
            errors: Throttle::default(),
        })
        .map_err(|source| ServerError::Kafka {
            what: "consumer".into(),
            source,
        })?;
    let topics: Vec<&str> = opts.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|source| ServerError::Kafka {
            what: format!("subscribe {topics:?}"),
            source,
        })?;
    std::thread::Builder::new()
        .name("kafka".into())
        .spawn(move || {
            run(ConsumerLoop {
                consumer,
                opts,
                pipeline,
                decode,
                durable,
                epochs,
                metrics,
                stop,
            })
        })
        .map_err(|source| ServerError::SpawnThread {
            thread: "Kafka",
            source,
        })
}

/// The message's cluster, and whether configuration named it (header, topic, `kafka.cluster`)
/// rather than defaulting, in which case a cloud envelope's own cluster name is used.
fn cluster_of(opts: &KafkaOptions, msg: &rdkafka::message::BorrowedMessage<'_>) -> (String, bool) {
    if let (Some(name), Some(headers)) = (&opts.cluster_header, msg.headers()) {
        for h in headers.iter() {
            if h.key == name
                && let Some(v) = h.value.and_then(|v| std::str::from_utf8(v).ok())
                && auditlake_ingest::validate_cluster_name(v).is_ok()
            {
                return (v.to_owned(), true);
            }
        }
    }
    match opts.topic_clusters.get(msg.topic()) {
        Some(c) => (c.clone(), true),
        None => (opts.default_cluster.clone(), opts.default_cluster_explicit),
    }
}

/// Messages read but not yet handed to the pipeline: their offsets, and the decoders (one per
/// cluster) holding their rows; plus how far a one-shot read has got.
#[derive(Default)]
struct Pending {
    /// (topic, partition, offset, epoch) in read order.
    messages: Vec<(String, i32, i64, u64)>,
    bytes: usize,
    since: Option<std::time::Instant>,
    /// By (cluster, whether configuration named it).
    decoders: HashMap<(String, bool), Decoder>,
    catch_up: CatchUp,
    /// (events, quarantined records) of the last message decoded.
    last_counts: (u64, u64),
}

impl Pending {
    const MAX_MESSAGES: usize = 2000;
    const MAX_BYTES: usize = 8 << 20;
    const MAX_AGE: Duration = Duration::from_millis(50);

    fn add(&mut self, topic: String, partition: i32, offset: i64, epoch: u64, bytes: usize) {
        self.since.get_or_insert_with(std::time::Instant::now);
        self.messages.push((topic, partition, offset, epoch));
        self.bytes += bytes;
    }

    fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    fn full(&self) -> bool {
        self.messages.len() >= Self::MAX_MESSAGES || self.bytes >= Self::MAX_BYTES
    }

    fn due(&self) -> bool {
        self.full() || self.since.is_some_and(|t| t.elapsed() >= Self::MAX_AGE)
    }

    fn decoder(&mut self, cluster: String, explicit: bool, decode: &DecodeOptions) -> &mut Decoder {
        self.decoders
            .entry((cluster, explicit))
            .or_insert_with_key(|(cluster, explicit)| {
                let mut o = decode.clone();
                o.cluster = Arc::from(cluster.as_str());
                o.envelope_cluster = !explicit;
                Decoder::new(o)
            })
    }

    /// Hands everything decoded since the last call to the pipeline as one submission whose
    /// durability callback records every message's offset. Refused (the lake is full or failing):
    /// the decoded data is dropped and each partition is rewound to its first unsubmitted message.
    fn submit(&mut self, pipeline: &Pipeline, durable: &Durable, consumer: &BaseConsumer<Ctx>) {
        if self.is_empty() {
            return;
        }
        let messages = std::mem::take(&mut self.messages);
        self.bytes = 0;
        self.since = None;
        let mut decoded = auditlake_ingest::Decoded::default();
        for d in self.decoders.values_mut() {
            let part = d.take();
            decoded.batches.extend(part.batches);
            decoded.rejects.extend(part.rejects);
            decoded.events += part.events;
        }
        let outcomes = durable.clone();
        let offsets = messages.clone();
        let done = Box::new(move |ok: bool| {
            let mut o = outcomes.lock().expect("outcomes");
            if ok {
                o.durable.extend(offsets)
            } else {
                o.lost.extend(offsets)
            }
        });
        match pipeline.submit_direct(decoded, done) {
            Ok(()) => {
                for (topic, partition, offset, _) in &messages {
                    self.catch_up.consumed(topic, *partition, *offset);
                }
            }
            Err(SubmitError::Overloaded(_)) | Err(SubmitError::Unavailable(_)) => {
                // Not taken: read again from the first message of each partition once the lake
                // accepts data.
                let mut first: HashMap<(&str, i32), i64> = HashMap::new();
                for (topic, partition, offset, _) in &messages {
                    first.entry((topic.as_str(), *partition)).or_insert(*offset);
                }
                for ((topic, partition), offset) in first {
                    let _ = consumer.seek(
                        topic,
                        partition,
                        rdkafka::Offset::Offset(offset),
                        Duration::from_secs(5),
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// What the consumer thread owns.
struct ConsumerLoop {
    consumer: BaseConsumer<Ctx>,
    opts: KafkaOptions,
    pipeline: Arc<Pipeline>,
    decode: DecodeOptions,
    durable: Durable,
    epochs: Epochs,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
}

fn run(owned: ConsumerLoop) -> KafkaSummary {
    let ConsumerLoop {
        consumer,
        opts,
        pipeline,
        decode,
        durable,
        epochs,
        metrics,
        stop,
    } = owned;
    let mut summary = KafkaSummary::default();
    let mut pending = Pending::default();
    let mut paused = false;
    let mut checked = std::time::Instant::now();
    while !stop.load(Ordering::Acquire) {
        if opts.until_caught_up && checked.elapsed() >= Duration::from_millis(100) {
            checked = std::time::Instant::now();
            if pending.catch_up.caught_up(&consumer) {
                break;
            }
        }
        // Commit as soon as a flush made messages durable: the less is durable but uncommitted,
        // the less another group member re-reads after a rebalance (brokers refuse commits while
        // a rebalance is in progress, so the commit before a revoke can fail).
        if store_durable(&consumer, &durable, &epochs) {
            consumer
                .context()
                .committing_since
                .lock()
                .expect("commit clock")
                .get_or_insert_with(std::time::Instant::now);
            let _ = consumer.commit_consumer_state(CommitMode::Async);
        }
        // Hold back while the lake cannot take more (WAL/disk/memory limits, writer failing):
        // polling continues (group membership), consumption pauses.
        if pipeline.refusal().is_some() {
            let _ = consumer.pause(&consumer.assignment().unwrap_or_default());
            paused = true;
            std::thread::sleep(Duration::from_millis(100));
            let _ = consumer.poll(Duration::ZERO);
            continue;
        }
        if paused {
            let _ = consumer.resume(&consumer.assignment().unwrap_or_default());
            paused = false;
        }
        // Messages decoded so far go to the lake together once the batch is full, old, or the
        // topic is idle: one Arrow batch per message would cost more than decoding it.
        if pending.due() {
            pending.submit(&pipeline, &durable, &consumer);
        }
        let Some(result) = consumer.poll(if pending.is_empty() {
            Duration::from_millis(200)
        } else {
            Duration::from_millis(5)
        }) else {
            pending.submit(&pipeline, &durable, &consumer);
            continue;
        };
        let msg = match result {
            Ok(m) => m,
            Err(rdkafka::error::KafkaError::PartitionEOF(partition)) => {
                pending.catch_up.eof.insert(partition);
                continue;
            }
            Err(e) => {
                consumer
                    .context()
                    .errors
                    .log("consumer error", &e.to_string());
                continue;
            }
        };
        let payload_len = decode_message(&msg, &opts, &decode, &mut pending, &metrics);
        let (events, quarantined) = pending.last_counts;
        summary.messages += 1;
        summary.events += events;
        summary.quarantined += quarantined;
        let (topic, partition) = (msg.topic().to_owned(), msg.partition());
        let epoch = epochs
            .lock()
            .expect("epochs")
            .get(&(topic.clone(), partition))
            .copied()
            .unwrap_or(0);
        pending.add(topic, partition, msg.offset(), epoch, payload_len);
        if pending.full() {
            pending.submit(&pipeline, &durable, &consumer);
        }
    }
    pending.submit(&pipeline, &durable, &consumer);
    // Shutdown: make everything read durable, store and commit its offsets.
    flush_and_commit(&consumer, &pipeline, &durable, &epochs, "shutdown");
    summary
}

/// Decodes one message with the decoder of its cluster, counting its events, quarantined
/// records and cluster conflicts. Returns the payload's length.
fn decode_message(
    msg: &rdkafka::message::BorrowedMessage<'_>,
    opts: &KafkaOptions,
    decode: &DecodeOptions,
    pending: &mut Pending,
    metrics: &Metrics,
) -> usize {
    let (cluster, explicit) = cluster_of(opts, msg);
    let decoder = pending.decoder(cluster, explicit, decode);
    decoder.set_ingested_at(auditlake_ingest::decode::now_micros());
    let pos = SourcePosition {
        source: Arc::from(format!("kafka:{}/{}", msg.topic(), msg.partition())),
        byte_offset: Some(msg.offset() as u64),
        ..SourcePosition::default()
    };
    let (events_before, rejects_before) = decoder.pending_counts();
    let conflicts_before = decoder.pending_conflicts();
    let payload = msg.payload().unwrap_or_default();
    decoder.decode(payload, &pos);
    let (events_after, rejects_after) = decoder.pending_counts();
    let conflicts = decoder.pending_conflicts() - conflicts_before;
    if conflicts > 0 {
        // Quarantined with the reason by the decoder; said here so an operator sees it.
        metrics
            .cluster_mismatch
            .get_or_create(&crate::metrics::SourceLabel { source: "kafka" })
            .inc_by(conflicts);
        log::emit(&log::ClusterMismatch {
            source: &format!("kafka:{}/{}@{}", msg.topic(), msg.partition(), msg.offset()),
            bound: &decoder.options().cluster,
            named: decoder.last_conflict().unwrap_or("?"),
            events: conflicts,
        });
    }
    let topic_label = TopicLabel {
        topic: msg.topic().to_owned(),
    };
    let (events, quarantined) = (
        events_after - events_before,
        rejects_after.saturating_sub(rejects_before) as u64,
    );
    metrics.kafka_messages.get_or_create(&topic_label).inc();
    metrics
        .kafka_events
        .get_or_create(&topic_label)
        .inc_by(events);
    if quarantined > 0 {
        metrics
            .kafka_quarantined
            .get_or_create(&topic_label)
            .inc_by(quarantined);
    }
    pending.last_counts = (events, quarantined);
    payload.len()
}

#[cfg(test)]
mod tests;
