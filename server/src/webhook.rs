//! The HTTP routes: the audit webhook (`POST /audit`, `POST /audit/<cluster>`), `/healthz`,
//! `/readyz` and `/metrics`.
//!
//! A webhook request is answered 200 only after its body is durable in the write-ahead log
//! (see `auditlake_ingest::pipeline`). Every other answer stores nothing it acknowledges:
//! 401/403 (credential), 413 (body over the limit), 503 + Retry-After (over the WAL/disk/memory
//! limit: the API server retries), 400 (the body as a whole is not an Event, EventList or array
//! — it is still quarantined, byte-exact, so the evidence is kept). A malformed *item* of an
//! EventList is quarantined and the rest of the batch lands with a 200.

use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use auditlake_ingest::{
    BodyFraming, DecodeOptions, Pipeline, Submission, SubmitError, decode_body,
};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use crate::auth::{AuthError, AuthPolicy, ConnInfo};
use crate::metrics::{ClusterLabel, CodeLabel, Metrics, SourceLabel};

mod refusal;
use refusal::WebhookError;

pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub auth: AuthPolicy,
    pub metrics: Arc<Metrics>,
    /// Largest accepted body, after gzip decoding as well as before.
    pub max_body_bytes: usize,
    /// How long reading one body may take (a sender trickling bytes holds a connection).
    pub body_timeout: std::time::Duration,
    pub decode: DecodeOptions,
    /// Seconds for the Retry-After header of a 503.
    pub retry_after_secs: u32,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/audit", post(receive_default))
        .route("/audit/{cluster}", post(receive_named))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn ready(State(st): State<Arc<AppState>>) -> Response {
    match st.pipeline.refusal() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let body = st.metrics.encode(st.pipeline.wal_bytes());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn receive_default(
    State(st): State<Arc<AppState>>,
    conn: Option<Extension<ConnInfo>>,
    req: Request,
) -> Response {
    receive(st, None, conn.map(|c| c.0).unwrap_or_default(), req).await
}

async fn receive_named(
    State(st): State<Arc<AppState>>,
    Path(cluster): Path<String>,
    conn: Option<Extension<ConnInfo>>,
    req: Request,
) -> Response {
    receive(
        st,
        Some(cluster),
        conn.map(|c| c.0).unwrap_or_default(),
        req,
    )
    .await
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

async fn receive(
    st: Arc<AppState>,
    path_cluster: Option<String>,
    conn: ConnInfo,
    req: Request,
) -> Response {
    let started = Instant::now();
    let response = match receive_inner(&st, path_cluster.as_deref(), &conn, req, started).await {
        Ok(response) => response,
        Err(refusal) => {
            if let Some(reason) = refusal.reason() {
                st.metrics.refused(reason);
            }
            refusal.into_response()
        }
    };
    st.metrics
        .requests
        .get_or_create(&CodeLabel {
            code: response.status().as_u16(),
        })
        .inc();
    response
}

async fn receive_inner(
    st: &AppState,
    path_cluster: Option<&str>,
    conn: &ConnInfo,
    req: Request,
    started: Instant,
) -> Result<Response, WebhookError> {
    // Authenticate before reading the body: an unauthenticated sender costs no body buffering.
    let (cluster, bound) = authenticate(st, path_cluster, conn, &req)?;
    if let Some(refusal) = st.pipeline.refusal() {
        return Err(refuse(st, &refusal));
    }
    let (parts, body) = req.into_parts();
    let body = read_request_body(st, body, &parts.headers).await?;
    let framing = framing(&parts.headers);
    let request_id = ulid::Ulid::generate().to_string();
    let source: Arc<str> = Arc::from(format!("webhook:{request_id}"));
    let received_at = auditlake_ingest::decode::now_micros();
    // Decoding is CPU work of a few ms per 400-event batch: keep it off the async workers.
    let mut decode_opts = st.decode.clone();
    // Only `POST /audit` with no cluster-binding credential lets an envelope name the cluster.
    decode_opts.envelope_cluster = decode_opts.envelope_cluster && !bound;
    let (body, decoded) = {
        let cluster = cluster.clone();
        let source = source.clone();
        tokio::task::spawn_blocking(move || {
            let d = decode_body(&decode_opts, &cluster, &source, received_at, &body, framing);
            (body, d)
        })
        .await
        .map_err(|e| WebhookError::DecoderPanicked(e.to_string()))?
    };
    if decoded.cluster_conflicts > 0 {
        return Err(refuse_cluster_mismatch(st, &decoded, &source, &cluster));
    }
    let events = decoded.events;
    let quarantined = decoded.rejects.len() as u64;
    let body_reject = decoded.body_rejected().map(str::to_owned);
    if events == 0 && quarantined == 0 {
        return Ok((
            StatusCode::OK,
            axum::Json(json!({"events": 0, "quarantined": 0})),
        )
            .into_response());
    }
    let label = ClusterLabel {
        cluster: cluster.to_string(),
    };
    let body_len = body.len() as u64;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let submitted = st.pipeline.submit(
        Submission {
            cluster,
            source,
            framing,
            received_at,
            body,
            decoded,
        },
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    if let Err(refusal) = submitted {
        return Err(refuse(st, &refusal));
    }
    let durable = match rx.await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            return Err(retry_later(
                st,
                "unavailable",
                auditlake_ingest::error::chain(&e),
            ));
        }
        Err(_) => {
            return Err(retry_later(
                st,
                "unavailable",
                "the write-ahead log stopped".into(),
            ));
        }
    };
    record_durable(st, &label, started, body_len, events, quarantined);
    if let Some(reason) = body_reject {
        return Err(WebhookError::NotAudit { reason, request_id });
    }
    Ok((
        StatusCode::OK,
        axum::Json(json!({
            "request_id": request_id,
            "events": events,
            "quarantined": quarantined,
            "wal_seq": durable.seq,
        })),
    )
        .into_response())
}

/// Who sends: the cluster the request writes and whether its credential binds it, or the
/// refusal (401, 403, 400).
fn authenticate(
    st: &AppState,
    path_cluster: Option<&str>,
    conn: &ConnInfo,
    req: &Request,
) -> Result<(Arc<str>, bool), WebhookError> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    st.auth
        .resolve_binding(path_cluster, conn, authorization)
        .map_err(|e| match e {
            AuthError::Unauthenticated(m) => WebhookError::Unauthenticated(m),
            AuthError::Forbidden(m) => WebhookError::Forbidden(m),
            AuthError::BadCluster(m) => WebhookError::BadCluster(m),
        })
}

/// The request body, read within `body_timeout` and `max_body_bytes`, or the refusal (408, 413,
/// 400).
async fn read_request_body(
    st: &AppState,
    body: Body,
    headers: &HeaderMap,
) -> Result<Vec<u8>, WebhookError> {
    let read = read_body(body, headers, st.max_body_bytes);
    tokio::time::timeout(st.body_timeout, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut))
        .map_err(|e| match e {
            BodyError::TimedOut => WebhookError::BodyTimeout(st.body_timeout.as_secs()),
            BodyError::TooLarge => WebhookError::TooLarge(st.max_body_bytes),
            BodyError::Bad(m) => WebhookError::BadBody(m),
        })
}

/// Evidence for one cluster never lands in another: refuses the whole request (403), stores
/// nothing of it.
fn refuse_cluster_mismatch(
    st: &AppState,
    decoded: &auditlake_ingest::decode::Decoded,
    source: &Arc<str>,
    cluster: &Arc<str>,
) -> WebhookError {
    let named = decoded.conflicting_cluster.as_deref().unwrap_or("?");
    st.metrics
        .cluster_mismatch
        .get_or_create(&SourceLabel { source: "webhook" })
        .inc_by(decoded.cluster_conflicts);
    crate::log::emit(&crate::log::ClusterMismatch {
        source,
        bound: cluster,
        named,
        events: decoded.cluster_conflicts,
    });
    WebhookError::ClusterMismatch {
        named: named.to_owned(),
        bound: cluster.to_string(),
    }
}

/// Counts a durable request: the time to its acknowledgement, its bytes, events and quarantined
/// records.
fn record_durable(
    st: &AppState,
    label: &ClusterLabel,
    started: Instant,
    body_len: u64,
    events: u64,
    quarantined: u64,
) {
    st.metrics
        .ack_seconds
        .observe(started.elapsed().as_secs_f64());
    st.metrics
        .bytes_received
        .get_or_create(label)
        .inc_by(body_len);
    st.metrics
        .events_received
        .get_or_create(label)
        .inc_by(events);
    if quarantined > 0 {
        st.metrics
            .events_quarantined
            .get_or_create(label)
            .inc_by(quarantined);
    }
}

fn refuse(st: &AppState, refusal: &SubmitError) -> WebhookError {
    let reason = match refusal {
        SubmitError::Overloaded(_) => "overloaded",
        SubmitError::Unavailable(_) => "unavailable",
    };
    retry_later(st, reason, refusal.to_string())
}

fn retry_later(st: &AppState, reason: &'static str, message: String) -> WebhookError {
    WebhookError::RetryLater {
        reason,
        message,
        after_secs: st.retry_after_secs,
    }
}

enum BodyError {
    TooLarge,
    TimedOut,
    Bad(String),
}

fn framing(headers: &HeaderMap) -> BodyFraming {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.contains("ndjson") || ct.contains("jsonl") || ct.contains("json-seq") {
        BodyFraming::Lines
    } else {
        BodyFraming::Document
    }
}

/// Reads the body up to `max` bytes, gunzipping `Content-Encoding: gzip` (also up to `max`).
async fn read_body(body: Body, headers: &HeaderMap, max: usize) -> Result<Vec<u8>, BodyError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max as u64
    {
        return Err(BodyError::TooLarge);
    }
    let bytes: Bytes = match Limited::new(body, max).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(BodyError::TooLarge);
        }
        Err(e) => return Err(BodyError::Bad(format!("reading the body: {e}"))),
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(bytes.to_vec()),
        "gzip" | "x-gzip" => {
            let mut out = Vec::with_capacity(bytes.len() * 4);
            let mut dec = flate2::read::MultiGzDecoder::new(&bytes[..]).take(max as u64 + 1);
            dec.read_to_end(&mut out)
                .map_err(|e| BodyError::Bad(format!("gzip body: {e}")))?;
            if out.len() > max {
                return Err(BodyError::TooLarge);
            }
            Ok(out)
        }
        other => Err(BodyError::Bad(format!(
            "Content-Encoding {other:?} is not supported (use gzip or none)"
        ))),
    }
}

#[cfg(test)]
mod tests;
