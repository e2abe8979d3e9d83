//! `auditlake serve`: the long-lived service. The kube-apiserver audit webhook receiver (HTTP or
//! HTTPS, optional mTLS and bearer tokens), the Kafka consumer and the object-storage sources
//! feed the durable WAL pipeline; beside them run scheduled detections with their alert sinks,
//! scheduled reports, retention, the read-only PostgreSQL endpoint, and `/healthz`, `/readyz`
//! and `/metrics`. One shutdown signal stops every task: stop accepting, finish in-flight
//! requests, stop the sources, flush the pipeline into the lake, return.

pub mod alerting;
pub mod auth;
pub mod error;
pub mod kafka;
pub mod log;
pub mod metrics;
pub mod objects;
pub mod pg;
pub mod reports;
pub mod scram;
pub mod sinks;
pub mod tls;
pub mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use auditlake_ingest::error::chain;
use auditlake_ingest::{DecodeOptions, Lake, Pipeline, PipelineOptions};
use auditlake_query::SessionOptions;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

pub use auth::{AuthPolicy, ConnInfo, TokenTable};
pub use error::ServerError;
pub use metrics::Metrics;
pub use tls::TlsFiles;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub lake: Lake,
    pub listen: String,
    pub tls: Option<TlsFiles>,
    pub tokens_file: Option<std::path::PathBuf>,
    /// Refuse requests without a valid token/client certificate (default: true when either is
    /// configured).
    pub require_auth: Option<bool>,
    pub cert_binds_cluster: bool,
    pub default_cluster: String,
    /// Serve a non-loopback address with no authentication (`webhook.allow_unauthenticated`):
    /// anyone who reaches the port could write any cluster's evidence.
    pub allow_unauthenticated: bool,
    pub max_body_bytes: usize,
    /// Connection guards (`webhook.max_connections`, `header_timeout_secs`, `body_timeout_secs`).
    pub limits: ConnectionLimits,
    /// How long shutdown waits for in-flight requests before closing their connections.
    pub shutdown_grace: Duration,
    pub retry_after_secs: u32,
    pub pipeline: PipelineOptions,
    pub decode: DecodeOptions,
    /// Scheduled detections and their sinks (`[scheduler]`, `[[sinks]]`), when enabled.
    pub alerting: Option<alerting::AlertingOptions>,
    /// The Kafka consumer (`[kafka]`), when configured.
    pub kafka: Option<kafka::KafkaOptions>,
    /// Object-storage sources (`[[sources.object_store]]`), polled.
    pub object_sources: Vec<objects::ObjectSourceConfig>,
    /// The read-only PostgreSQL endpoint (`[postgres]`), when configured.
    pub postgres: Option<pg::PgOptions>,
    /// Scheduled reports (`[[reports]]`).
    pub reports: Option<reports::ReportOptions>,
    /// Retention (`[retention]`) and how often it runs.
    pub retention: Option<(auditlake_ingest::lake::retention::RetentionPolicy, Duration)>,
    /// How long one renewal of the scheduler's lease holds it on an object-store lake
    /// (`[scheduler] lease_ttl`): replicas take over from a dead holder after this.
    pub lease_ttl: Duration,
}

/// What one client may hold of the webhook: a slow or silent sender costs a bounded amount.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// A connection with no request in progress (silent after connecting or after a TLS
    /// handshake, idle between requests, or sending its headers slowly) is closed after this.
    pub header_timeout: Duration,
    /// Reading one request body may take this long (then 408).
    pub body_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(20),
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// What a finished `serve` did.
#[derive(Debug, Clone)]
pub struct ServeReport {
    pub wal_last_seq: u64,
}

/// Runs retention at start and then every `every` until `stop` turns true. Replicas may all
/// run it: a run whose removal was overtaken by another's re-plans, so each partition is
/// removed once.
async fn retention_job(
    lake: auditlake_ingest::Lake,
    policy: auditlake_ingest::lake::retention::RetentionPolicy,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (lake2, policy2) = (lake.clone(), policy.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            auditlake_ingest::lake::retention::run(&lake2, &policy2, false, chrono::Utc::now())
        })
        .await;
        match outcome {
            Ok(Ok(report)) => {
                if !report.expired.is_empty()
                    || !report.vacuumed.is_empty()
                    || !report.recovered.is_empty()
                {
                    log::emit(&log::RetentionRun { report: &report });
                }
            }
            Ok(Err(e)) => log::emit(&log::RetentionFailed { error: &chain(&e) }),
            Err(e) => log::emit(&log::RetentionFailed { error: &chain(&e) }),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Runs the service until `shutdown` resolves, then drains and flushes.
pub async fn serve(
    opts: ServeOptions,
    shutdown: impl Future<Output = &'static str> + Send,
) -> Result<ServeReport, ServerError> {
    let tls = opts.tls.as_ref().map(tls::server_config).transpose()?;
    let auth = auth_policy(&opts, tls.is_some())?;
    let (listener, local) = bind(&opts, auth.require).await?;

    // Replay what a previous run acknowledged before accepting anything new.
    let (metrics, pipeline, stream_rx) = open_pipeline(&opts).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let background = start_background(&opts, &metrics, stream_rx, &stop_rx).await?;
    let sources_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kafka_thread = match opts.kafka.clone() {
        Some(k) => Some(kafka::start(
            k,
            pipeline.clone(),
            opts.decode.clone(),
            metrics.clone(),
            sources_stop.clone(),
        )?),
        None => None,
    };
    let object_threads = objects::start(
        opts.object_sources.clone(),
        &opts.lake,
        pipeline.clone(),
        metrics.clone(),
        sources_stop.clone(),
    )
    .map_err(|source| ServerError::SpawnThread {
        thread: "object-storage source",
        source,
    })?;
    let state = Arc::new(webhook::AppState {
        pipeline: pipeline.clone(),
        auth: auth.clone(),
        metrics,
        max_body_bytes: opts.max_body_bytes,
        body_timeout: opts.limits.body_timeout,
        decode: opts.decode.clone(),
        retry_after_secs: opts.retry_after_secs,
    });
    let app = webhook::router(state.clone());
    log_listening(&auth, tls.is_some(), local);

    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let limits = opts.limits;
    let signal = accept_loop(
        &listener,
        &app,
        acceptor,
        &graceful,
        limits,
        &state.metrics,
        shutdown,
    )
    .await;
    log::emit(&log::ShutdownStarted { signal });
    drop(listener);
    let mut dropped = 0;
    if tokio::time::timeout(opts.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        dropped = 1;
    }
    // The consumer flushes what it read and commits its offsets before the pipeline stops.
    sources_stop.store(true, std::sync::atomic::Ordering::Release);
    if let Some(t) = kafka_thread {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    for t in object_threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    let last = tokio::task::spawn_blocking(move || pipeline.shutdown())
        .await
        .map_err(|source| ServerError::Task {
            what: "pipeline shutdown",
            source,
        })??;
    // The scheduler finishes its current pass; sinks stop between deliveries (the outbox keeps
    // the rest for the next start).
    let _ = stop_tx.send(true);
    for task in background {
        let _ = task.await;
    }
    log::emit(&log::ShutdownFinished {
        last_seq: last,
        open_connections_dropped: dropped,
    });
    Ok(ServeReport { wal_last_seq: last })
}

/// Who may send events: tokens and/or client certificates, and whether a credential is required.
fn auth_policy(opts: &ServeOptions, tls: bool) -> Result<AuthPolicy, ServerError> {
    let tokens = opts
        .tokens_file
        .as_deref()
        .map(TokenTable::load)
        .transpose()?;
    if opts
        .tls
        .as_ref()
        .and_then(|t| t.client_ca.as_ref())
        .is_some()
        && !tls
    {
        return Err(ServerError::TlsConfig(
            "client_ca needs tls_cert and tls_key".into(),
        ));
    }
    let client_certs = opts.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    let require = opts
        .require_auth
        .unwrap_or(tokens.is_some() || client_certs);
    if require && tokens.is_none() && !client_certs {
        return Err(ServerError::TlsConfig(
            "require_auth = true needs tokens_file or client_ca".into(),
        ));
    }
    auditlake_ingest::validate_cluster_name(&opts.default_cluster)?;
    Ok(AuthPolicy {
        tokens,
        client_certs,
        require,
        cert_binds_cluster: opts.cert_binds_cluster,
        default_cluster: Arc::from(opts.default_cluster.as_str()),
    })
}

/// Binds the webhook's address; refuses a non-loopback one that needs no credential (unless
/// allowed).
async fn bind(
    opts: &ServeOptions,
    require: bool,
) -> Result<(TcpListener, std::net::SocketAddr), ServerError> {
    let listener = TcpListener::bind(&opts.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: opts.listen.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: opts.listen.clone(),
        source,
    })?;
    if !require && !local.ip().is_loopback() && !opts.allow_unauthenticated {
        return Err(ServerError::TlsConfig(format!(
            "webhook.listen = {local} is not a loopback address and requests need no credential: \
             set webhook.tokens_file or webhook.client_ca, or webhook.allow_unauthenticated = true \
             if the network in front of it really is the only guard"
        )));
    }
    Ok((listener, local))
}

/// The metrics, and the pipeline opened (what a previous run acknowledged replayed); with
/// streaming rules, the receiver of the batches it commits.
async fn open_pipeline(
    opts: &ServeOptions,
) -> Result<
    (
        Arc<Metrics>,
        Arc<Pipeline>,
        Option<tokio::sync::mpsc::Receiver<Vec<arrow::record_batch::RecordBatch>>>,
    ),
    ServerError,
> {
    let metrics = Arc::new(Metrics::new());
    metrics
        .wal_max_bytes
        .set(i64::try_from(opts.pipeline.wal_max_bytes).unwrap_or(i64::MAX));
    let streaming = opts
        .alerting
        .as_ref()
        .is_some_and(|a| a.rules.iter().any(|(r, _)| r.streaming));
    let (stream_tx, stream_rx) = match streaming {
        true => {
            let (tx, rx) = tokio::sync::mpsc::channel(256);
            (Some(tx), Some(rx))
        }
        false => (None, None),
    };
    let pipeline = {
        let lake = opts.lake.clone();
        let popts = opts.pipeline.clone();
        let observer: Arc<dyn auditlake_ingest::PipelineObserver> =
            Arc::new(alerting::PipelineHooks {
                metrics: metrics.clone(),
                stream: stream_tx,
            });
        tokio::task::spawn_blocking(move || Pipeline::open(&lake, popts, observer))
            .await
            .map_err(|source| ServerError::Task {
                what: "pipeline start",
                source,
            })??
    };
    let (pipeline, replayed) = pipeline;
    if replayed.records > 0 || replayed.damaged > 0 {
        log::emit(&log::WalReplayed { report: &replayed });
    }
    let pipeline = Arc::new(pipeline);
    Ok((metrics, pipeline, stream_rx))
}

/// Starts the background services: the scheduler's lease, alerting, the PostgreSQL endpoint,
/// scheduled reports and retention. Each stops when `stop_rx` turns true.
async fn start_background(
    opts: &ServeOptions,
    metrics: &Arc<Metrics>,
    stream_rx: Option<tokio::sync::mpsc::Receiver<Vec<arrow::record_batch::RecordBatch>>>,
    stop_rx: &tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, ServerError> {
    // The scheduler, its alert delivery and the scheduled reports run in one replica of those
    // sharing an object-store lake: the one holding this lease (always this process locally).
    let lease = Arc::new(auditlake_ingest::lake::Lease::new(
        &opts.lake,
        alerting::LEASE_NAME,
        opts.lease_ttl,
    ));
    let mut background = Vec::new();
    if opts.lake.is_remote() && (opts.alerting.is_some() || opts.reports.is_some()) {
        // A first attempt now, so a replica that gets the lease runs its rules at once.
        let l = lease.clone();
        let _ = tokio::task::spawn_blocking(move || l.refresh()).await;
        background.extend(alerting::keep_lease(
            &opts.lake,
            lease.clone(),
            stop_rx.clone(),
        ));
    }
    if let Some(a) = opts.alerting.clone() {
        background.extend(
            alerting::start(
                &opts.lake,
                a,
                metrics.clone(),
                stream_rx,
                stop_rx.clone(),
                lease.clone(),
            )
            .await?,
        );
    }
    if let Some(pg_opts) = &opts.postgres {
        background.push(start_postgres(opts, pg_opts, stop_rx).await?);
    }
    if let Some(r) = opts.reports.clone() {
        background.push(tokio::spawn(reports::run(
            opts.lake.clone(),
            r,
            lease.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some((policy, every)) = opts.retention.clone() {
        background.push(tokio::spawn(retention_job(
            opts.lake.clone(),
            policy,
            every,
            stop_rx.clone(),
        )));
    }
    Ok(background)
}

/// Binds the read-only PostgreSQL endpoint and runs it until `stop_rx` turns true.
async fn start_postgres(
    opts: &ServeOptions,
    pg_opts: &pg::PgOptions,
    stop_rx: &tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ServerError> {
    let ctx = auditlake_query::open_lake_at(&opts.lake, &SessionOptions::default())
        .await
        .map_err(|source| ServerError::Query {
            what: "the postgres endpoint",
            source,
        })?;
    let server = pg::PgServer::bind(ctx, pg_opts).await?;
    log::emit(&log::PgListening {
        addr: server.local_addr().map_err(|source| ServerError::Bind {
            addr: pg_opts.listen.clone(),
            source,
        })?,
        tls: pg_opts.tls.is_some(),
        auth: server.auth_description(),
    });
    let mut stop = stop_rx.clone();
    Ok(tokio::spawn(server.run(async move {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                break;
            }
        }
    })))
}

/// The `listening` line: URL, TLS and what authenticates a request.
fn log_listening(auth: &AuthPolicy, tls: bool, local: std::net::SocketAddr) {
    let scheme = if tls { "https" } else { "http" };
    let auth_desc = match (&auth.tokens, auth.client_certs, auth.require) {
        (_, _, false) => "none",
        (Some(_), true, true) => "token|client-cert",
        (Some(_), false, true) => "token",
        (None, _, true) => "client-cert",
    };
    log::emit(&log::Listening {
        url: &format!("{scheme}://{local}"),
        tls: if auth.client_certs {
            "mtls"
        } else if tls {
            "server"
        } else {
            "off"
        },
        auth: auth_desc,
    });
}

/// Accepts connections until `shutdown` resolves (returning its signal), each served on a task
/// of its own; over `limits.max_connections`, a connection is closed at once.
async fn accept_loop(
    listener: &TcpListener,
    app: &axum::Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    graceful: &GracefulShutdown,
    limits: ConnectionLimits,
    metrics: &Metrics,
    shutdown: impl Future<Output = &'static str> + Send,
) -> &'static str {
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(_) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Over the limit: close at once rather than queue; the sender retries.
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    metrics.refused("connection_limit");
                    log::emit(&log::ConnectionRefused { peer, reason: "connection limit reached" });
                    drop(tcp);
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let app = app.clone();
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _permit = permit;
                    match acceptor {
                        None => {
                            let info = ConnInfo { peer: Some(peer), ..ConnInfo::default() };
                            serve_connection(TokioIo::new(tcp), info, app, watcher, limits).await;
                        }
                        Some(acceptor) => {
                            let handshake = tokio::time::timeout(limits.header_timeout.min(Duration::from_secs(10)), acceptor.accept(tcp)).await;
                            match handshake {
                                Ok(Ok(stream)) => {
                                    let certs = stream.get_ref().1.peer_certificates();
                                    let info = ConnInfo {
                                        peer: Some(peer),
                                        client_cn: certs.and_then(|c| c.first()).and_then(tls::subject_cn),
                                        client_verified: certs.is_some_and(|c| !c.is_empty()),
                                    };
                                    serve_connection(TokioIo::new(stream), info, app, watcher, limits).await;
                                }
                                Ok(Err(e)) => log::emit(&log::TlsHandshakeFailed { peer, error: &e.to_string() }),
                                Err(_) => log::emit(&log::TlsHandshakeFailed { peer, error: "timed out" }),
                            }
                        }
                    }
                });
            }
            signal = &mut shutdown => break signal,
        }
    }
}

async fn serve_connection<I>(
    io: TokioIo<I>,
    info: ConnInfo,
    app: axum::Router,
    watcher: hyper_util::server::graceful::Watcher,
    limits: ConnectionLimits,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(info.clone());
        let guard = InFlight::start(tracked.clone());
        let call = app.clone().oneshot(req);
        async move {
            let response = call.await;
            drop(guard);
            response
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // hyper cuts an HTTP/1 request whose headers are not complete in time; the watchdog below
    // covers the rest (a client silent before its first byte, idle keep-alive, HTTP/2).
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection_with_upgrades(io, service);
    let conn = watcher.watch(conn.into_owned());
    tokio::pin!(conn);
    let tick = (limits.header_timeout / 4).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            // Errors here are the peer's (reset, bad HTTP): nothing to do but drop the connection.
            _ = &mut conn => return,
            _ = tokio::time::sleep(tick) => {
                if activity.idle_for() >= limits.header_timeout {
                    // Dropping the connection future closes the socket.
                    return;
                }
            }
        }
    }
}

/// When a connection last did something, and how many of its requests are in progress.
#[derive(Debug)]
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    since: std::sync::Mutex<std::time::Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            since: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }
}

impl Activity {
    /// How long the connection has had no request in progress (zero while one is).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(std::sync::atomic::Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        self.since.lock().expect("not poisoned").elapsed()
    }
}

/// Marks one request in progress for its lifetime.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(a: Arc<Activity>) -> InFlight {
        a.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        InFlight(a)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.since.lock().expect("not poisoned") = std::time::Instant::now();
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A future that resolves on SIGTERM or SIGINT with the signal's name. The handlers are
/// installed now, not when the future is first polled: a signal that arrives while the server
/// is still replaying its WAL, or right after it says `listening`, is then a graceful shutdown
/// instead of the default action (the process killed). Call it inside the runtime.
pub fn shutdown_signal()
-> Result<impl std::future::Future<Output = &'static str> + Send + 'static, ServerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let installed = |source| ServerError::SignalHandler { source };
    let mut term = signal(SignalKind::terminate()).map_err(installed)?;
    let mut int = signal(SignalKind::interrupt()).map_err(installed)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}
